"""Planned kernels of integer nodes (integer.Q8Node) in the compiled
implementation: the eight-bit ops of the compiled module (``cpu_q8``) where
it has them, the exact numpy form (``cpu_kernels.Q8Numpy``) where not.

Like the float kernels, each one writes into a buffer of the plan's arena
(a uint8 value takes a quarter of a float32 slot, ``out_view``) and those
that are single compiled calls ``bind`` into programs, so that a run of
integer layers goes from layer to layer without returning to Python.
"""

import functools
import math

import numpy as np

from . import q8_ref
from .cpu_kernels import Kernel, Q8Numpy, out_view


def as_u8(value, shape):
    """A uint8 value as its reader sees it: bound into a program, a value is
    the float32 arena slot it lives in."""
    return value if value.dtype == np.uint8 else out_view(value, shape, np.uint8)


class _Q8Call(Kernel):
    """An integer node computed by compiled calls (``bind``)."""

    def __init__(self, qnode, in_shape, shape, impl):
        self.q, self.in_shape, self.shape, self.impl = qnode, in_shape, shape, impl
        self.dtype = np.float32 if qnode.out is None else np.uint8

    def output(self, out):
        if out is None:  # the graph's output: the caller keeps it
            return np.empty(self.shape, self.dtype)
        return out_view(out, self.shape, self.dtype)

    def stage(self):
        """The output stage's arguments: zero point and clamp, or float bounds."""
        q = self.q
        if q.out is None:
            return dict(lo=q.lo, hi=q.hi)
        return dict(zero_point=q.out.zero_point, qmin=q.qmin, qmax=q.qmax)

    def __call__(self, inputs, out, temps):
        y = self.output(out)
        for name, args in self.bind(inputs, y, temps):
            getattr(self.impl.module, name)(**args, threads=self.impl.threads.n)
        return y


class Q8Gemm(_Q8Call):
    """A 1x1 stride-1 convolution: one eight-bit GEMM over the pixels."""

    op = "q8_gemm"

    def __init__(self, qnode, in_shape, shape, impl):
        super().__init__(qnode, in_shape, shape, impl)
        from .cpu_q8 import PackedQ8
        q = qnode
        self.packed = (PackedQ8(q.wt, q.bias, scale=q.fscale) if q.out is None else
                       PackedQ8(q.wt, q.bias, rscale=q.rscale))

    def bind(self, inputs, out, temps):
        a = as_u8(inputs[0], self.in_shape).reshape(-1, self.packed.k)
        y = out_view(out, self.shape, self.dtype).reshape(-1, self.packed.n)
        return [("q8_gemm", self.packed.call(a, y, **self.stage()))]


class Q8Im2col(Q8Gemm):
    """Any other dense convolution: the patches of the uint8 input (its
    zero point in the padding), then one eight-bit GEMM."""

    def __init__(self, qnode, in_shape, shape, impl):
        super().__init__(qnode, in_shape, shape, impl)
        from ..graph import window
        self.kernel, self.stride, self.pads, _ = window(qnode.attrs, qnode.name)

    def bind(self, inputs, out, temps):
        return None  # the patches are made in numpy, per call

    def __call__(self, inputs, out, temps):
        x = as_u8(inputs[0], self.in_shape)
        cols, _ = q8_ref.im2col(x, self.kernel, self.stride, self.pads, self.q.ins[0].zero_point)
        y = self.output(out)
        self.impl.module.q8_gemm(**self.packed.call(np.ascontiguousarray(cols), y.reshape(-1, self.packed.n),
                                                    **self.stage()), threads=self.impl.threads.n)
        return y


class Q8Depthwise(_Q8Call):
    """A depthwise convolution, image by image (the team splits each)."""

    op = "q8_dwconv"

    def __init__(self, qnode, in_shape, shape, impl):
        super().__init__(qnode, in_shape, shape, impl)
        from .cpu_q8 import DepthwiseQ8
        from ..graph import window
        _, self.stride, self.pads, _ = window(qnode.attrs, qnode.name)
        self.w = DepthwiseQ8(qnode.wt, qnode.bias, qnode.rscale)

    def bind(self, inputs, out, temps):
        x = as_u8(inputs[0], self.in_shape)
        y = out_view(out, self.shape, np.uint8)
        q = self.q
        return [("q8_dwconv", self.w.call(x[b], y[b], self.stride, self.pads, q.ins[0].zero_point,
                                          q.out.zero_point, q.qmin, q.qmax)) for b in range(x.shape[0])]


class Q8Add(_Q8Call):
    """A residual add of two uint8 values of other scales."""

    op = "q8_add"

    def bind(self, inputs, out, temps):
        a, b = (as_u8(v, self.shape) for v in inputs)
        (za, zb), (ma, mb, shift) = (q.zero_point for q in self.q.ins), self.q.add
        return [("q8_add", dict(a=a, b=b, y=out_view(out, self.shape, np.uint8), a_zero_point=za,
                                b_zero_point=zb, ma=ma, mb=mb, shift=shift, zero_point=self.q.out.zero_point,
                                qmin=self.q.qmin, qmax=self.q.qmax))]


class Q8Meanpool(_Q8Call):
    """A global average pool of a uint8 value to float32."""

    op = "q8_meanpool"

    def bind(self, inputs, out, temps):
        x = as_u8(inputs[0], self.in_shape)
        n, h, w, c = x.shape
        q = self.q.ins[0]
        return [("q8_meanpool", dict(x=x, y=out_view(out, self.shape, np.float32).reshape(n, c), images=n,
                                     hw=h * w, c=c, zero_point=q.zero_point,
                                     scale=float(np.float32(q.scale / (h * w)))))]


#: integer kinds -> the class computing them and the compiled op it needs
KERNELS = {"gemm": (Q8Gemm, "q8_gemm"), "im2col": (Q8Im2col, "q8_gemm"),
           "depthwise": (Q8Depthwise, "q8_dwconv"), "add": (Q8Add, "q8_add"),
           "meanpool": (Q8Meanpool, "q8_meanpool")}


def _slot(buf, shape, dtype):
    """The first values of an arena slot as an array of ``shape``."""
    if dtype == np.uint8:
        return out_view(buf, shape, np.uint8)
    return buf.reshape(-1)[:math.prod(shape)].reshape(shape)


class Converting(Kernel):
    """A kernel some of whose inputs cross between float32 and uint8 (a
    float layer reading an integer layer's output, or the other way round):
    each such input is converted into a scratch slot of the arena by a
    compiled call just ahead of the kernel's own calls, so that the
    conversion runs inside the program (a pass over a value the layer before
    has just written, still in cache) instead of as a step from Python.

    ``conv``: per input, None or (want, QParams) as integer.entry takes
    them; ``in_shapes``: the inputs' shapes."""

    def __init__(self, inner, conv, in_shapes, impl):
        self.inner, self.conv, self.in_shapes, self.impl = inner, conv, in_shapes, impl
        self.op = inner.op
        own = tuple(inner.temps)
        self.own = len(own)
        # a uint8 value takes a quarter of a float32 slot
        self.temps = own + tuple(
            (-(-math.prod(shape) // 4) if c[0] == "u8" else math.prod(shape))
            for c, shape in zip(conv, in_shapes) if c is not None)

    def _converted(self, inputs, temps):
        """(the inputs as the kernel reads them, the compiled calls that
        convert them)."""
        out, calls, slots = [], [], iter(temps[self.own:])
        for v, c, shape in zip(inputs, self.conv, self.in_shapes):
            if c is None:
                out.append(v)
                continue
            want, q = c
            if want == "u8":
                y = _slot(next(slots), shape, np.uint8)
                calls.append(("q8_quantize", dict(x=v.reshape(shape), y=y, zero_point=q.zero_point,
                                                  inv_scale=float(np.float32(1.0 / q.scale)))))
            else:
                y = _slot(next(slots), shape, np.float32)
                calls.append(("q8_dequantize", dict(x=as_u8(v, shape), y=y, zero_point=q.zero_point,
                                                    scale=float(np.float32(q.scale)))))
            out.append(y)
        return out, calls

    def bind(self, inputs, out, temps):
        bind = getattr(self.inner, "bind", None)
        if bind is None:
            return None
        ins, calls = self._converted(inputs, temps)
        inner = bind(ins, out, temps[:self.own])
        return None if inner is None else calls + list(inner)

    def __call__(self, inputs, out, temps):
        ins = [v if c is None else self.impl.entry(v, *c) for v, c in zip(inputs, self.conv)]
        return self.inner(ins, out, temps[:self.own])


def entry(value, want, q, threads):
    """integer.entry on the compiled module's team."""
    from . import cpu_q8
    from ..integer import entry as convert
    return convert(value, want, q, functools.partial(cpu_q8.quantize, threads=threads),
                   functools.partial(cpu_q8.dequantize, threads=threads))


def kernel(qnode, in_shape, shape, impl):
    """The planned kernel of an integer node."""
    cls, op = KERNELS.get(qnode.kind, (None, None))
    if cls is None or op not in impl.module.ops() or (qnode.kind == "depthwise" and qnode.out is None):
        return Q8Numpy(qnode, shape)
    return cls(qnode, in_shape, shape, impl)
