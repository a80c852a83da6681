"""The compiled implementation of the CPU backend's kernels.

The compiled module (``native/``, loaded as ``cpu_kernels.NATIVE``) runs
each kernel's work on its own thread team, the variant of each op chosen
for this CPU when it loads (``variants``).  The kinds of kernel it has no
code for (im2col) fall through to the numpy ones, which reach it through
``Compiled.gemm``.
"""

import math

import numpy as np

from .cpu_gemm import PackedGemm, PackedIm2col
from .cpu_kernels import (Kernel, _Add, _Gemm, _GlobalAvgPool, _Im2col, _Padded, _Scale, bounds, native_gemm)
from ..threads import set_blas_threads


class Compiled:
    """The compiled implementation: ``module`` is the compiled module and
    ``threads`` (a ``cpu_kernels.Threads``) how many threads its team uses."""

    name = "native"

    def __init__(self, module, threads):
        self.module, self.threads = module, threads
        # The team splits every layer, GEMMs included, with BLAS
        # single-threaded inside; where it cannot call the BLAS, BLAS
        # threads its GEMMs itself.  Either waits for work spinning
        # briefly, where handing work to a Python pool costs as much as a
        # small layer takes.
        set_blas_threads(1 if native_gemm() else threads.wanted)

    def q8(self, qnode, in_shape, shape):
        """The kernel of an integer node (integer.Q8Node) with input shape
        ``in_shape`` (its first input's) and output shape ``shape``."""
        from .cpu_integer import kernel
        return kernel(qnode, in_shape, shape, self)

    def entry(self, value, want, q):
        """integer.entry (a value converted for its reader) on the team."""
        from .cpu_integer import entry
        return entry(value, want, q, self.threads.n)

    def gemm(self, a, wt, y, bias, act):
        """y = act(a @ wt + bias): on the team, bias and activation added by
        each thread to its share; where the BLAS cannot be reached, BLAS
        threads the GEMM and one compiled pass adds the rest."""
        call = self.gemm_call(a, wt, y, bias, act)
        if call is not None:
            self.module.gemm(**call, threads=self.threads.n)
            return
        np.matmul(a, wt, out=y)
        if bias is not None or act != "none":
            self.module.bias_act(y=y, n=y.shape[1], bias=bias, **bounds(act), threads=self.threads.n)

    def gemm_call(self, a, wt, y, bias, act):
        """The compiled GEMM's arguments, or None where it cannot run."""
        if not native_gemm():
            return None
        return dict(a=a, b=wt, y=y, m=a.shape[0], k=a.shape[1], n=wt.shape[1], bias=bias, **bounds(act))

    def run_program(self, program, times=None):
        """Run a compiled program; ``times``: None, or float64 seconds per call."""
        self.module.run_program(program, self.threads.n, times)

    def variant(self, op):
        """The variant that runs an op (as the registry names ops), or where
        none can, what does instead."""
        if op == "gemm" and not native_gemm():
            return "numpy + " + self.variant("bias_act")
        if op not in self.module.ops():
            return "numpy"  # a kind the compiled kernels lack runs its numpy form
        return next(v[0] for v in self.module.variants(op) if v[2])

    def variants(self, ops):
        return {op: self.variant(op) for op in ops}


class _NativeGemm(_Gemm):
    """A GEMM layer that can join a compiled program."""

    def bind(self, inputs, out, temps):
        x = inputs[0].reshape(-1, self.wt.shape[0])
        call = self.impl.gemm_call(x, self.wt, out.reshape(-1, self.wt.shape[1]), self.bias, self.act)
        return None if call is None else [("gemm", call)]


class _Call(Kernel):
    """A kernel that is one or more calls of a compiled op: run now, or
    bound into a program."""

    def __call__(self, inputs, out, temps):
        for name, args in self.bind(inputs, out, temps):
            getattr(self.impl.module, name)(**args, threads=self.impl.threads.n)
        return out


class _DenseQ(_Call):
    """A dense layer (or 1x1 convolution) over a few rows, batch 1 above
    all, computed straight from its stored int8 or int16 weights: a
    matrix-vector product streams every weight once, and int8 streams a
    quarter of float32's bytes.  Nothing is decoded, so the layer holds no
    float32 copy of its weights (resident or streamed)."""

    #: most input rows (batch x pixels) for which this beats a float32 GEMM
    MAX_ROWS = 8
    stored = True

    def __init__(self, node, shape, weight, bias, impl):
        t = weight.tensor
        self.q = t.data.reshape(t.shape[0], -1)
        self.op = "dense_q8" if self.q.dtype == np.int8 else "dense_q16"
        self.scales = np.ascontiguousarray(t.scales, np.float32)
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
        self.bounds = bounds(node.attrs.get("activation", "none"))
        self.impl = impl

    @classmethod
    def suits(cls, node, shape, weight):
        return (weight is not None and weight.tensor.data.dtype in (np.int8, np.int16)
                and math.prod(shape[:-1]) <= cls.MAX_ROWS)

    def bind(self, inputs, out, temps):
        n, k = self.q.shape
        x = inputs[0].reshape(-1, k)
        return [("dense_q", dict(x=x, q=self.q, scales=self.scales, bias=self.bias, y=out.reshape(-1, n),
                                 m=x.shape[0], k=k, n=n, **self.bounds))]


class _Window(_Call):
    """A window op on each image of the batch, the whole image at once (the
    team splits it): every output pixel summed in registers, reading the
    unpadded input."""

    def __init__(self, node, shape, weight, bias, impl):
        self.pad = _Padded(shape, node.attrs, phases=False)
        self.w = weight(self.layout, self.op)
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
        self.bounds = bounds(node.attrs.get("activation", "none"))
        self.geometry = self.pad.geometry(shape[2])
        self.impl = impl

    def bind(self, inputs, out, temps):
        p = self.pad
        y = out.reshape(p.n, p.oh, p.ow, -1)
        return [(self.op, dict(x=inputs[0][b], weight=self.w, bias=self.bias, out=y[b], **self.geometry,
                               r0=0, r1=p.oh, **self.bounds))
                for b in range(p.n)]


class _Depthwise(_Window):
    op = "depthwise"

    @staticmethod
    def layout(w):
        return np.ascontiguousarray(w[:, :, :, 0].transpose(1, 2, 0))  # (KH, KW, C)


class _Direct(_Window):
    """A convolution of few input channels (a network's first layer): no
    im2col copy."""

    op = "direct"
    #: im2col rows shorter than this (KH*KW*Cin values) make a poor GEMM
    MAX_K = 64

    def __init__(self, node, shape, weight, bias, impl):
        super().__init__(node, shape, weight, bias, impl)
        self.geometry["cout"] = weight.shape[0]

    @staticmethod
    def layout(w):
        return np.ascontiguousarray(w.transpose(1, 2, 3, 0))  # (KH, KW, Cin, Cout)

    @classmethod
    def suits(cls, node, shape, weight):
        _, kh, kw, _ = weight.shape
        return node.attrs.get("groups", 1) == 1 and kh * kw * shape[3] < cls.MAX_K


class _GlobalAvgPoolCall(_Call, _GlobalAvgPool):
    def bind(self, inputs, out, temps):
        n, _, _, c = inputs[0].shape
        return [("mean_pool", dict(x=inputs[0], y=out.reshape(n, c), images=n, hw=self.hw, c=c))]


class _AddCall(_Call, _Add):
    def bind(self, inputs, out, temps):
        return [("add", dict(a=inputs[0], b=inputs[1], y=out, **bounds(self.act)))]


class _ScaleCall(_Call, _Scale):
    def bind(self, inputs, out, temps):
        x, s = self.operands(inputs)
        n, h, w, c = x.shape
        return [("scale", dict(x=x, s=s, y=out, images=n, hw=h * w, c=c))]


#: the compiled implementation's kernels, by kind
Compiled.KERNELS = {"dense_q": _DenseQ, "f32_gemm": PackedGemm, "gemm": _NativeGemm, "depthwise": _Depthwise,
                    "direct": _Direct, "f32_im2col": PackedIm2col, "im2col": _Im2col, "add": _AddCall,
                    "global_avgpool": _GlobalAvgPoolCall, "scale": _ScaleCall}
