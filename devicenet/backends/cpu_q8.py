"""The eight-bit kernels of the compiled module (native/q8.h), numpy in and
numpy out.

The arithmetic is q8_ref's, bit for bit: uint8 activations with a scale
and zero point, int8 weights with one scale per output channel, int32
sums from a folded bias (``q8_ref.fold_bias``), and a float32
requantisation factor per output channel (``q8_ref.requant_scale``).  Weights are packed once (``PackedQ8``, ``DepthwiseQ8``); every call
then runs on the compiled module's thread team without the GIL.

Each wrapper's ``call`` (or ``args``) returns the op's keyword arguments,
which a compiled program can hold (``_native.program``); ``__call__`` and
the functions run the op at once and return the output.
"""

import numpy as np

from .cpu_kernels import NATIVE

#: the packed weights' header bytes, widest panel, deepest k padding and
#: per-column head bytes (native/q8.h)
HEADER, MAX_NR, MAX_KR, HEAD = 64, 16, 4, 8
#: bytes a packed weight takes at most (wide panels hold int16: q8.h)
MAX_WBYTES = 2


def _ints(x, dtype):
    return None if x is None else np.ascontiguousarray(x, dtype)


def variant(op):
    """The variant of a q8 op the registry selects now (``q8_gemm``, ...)."""
    return next(v[0] for v in NATIVE.variants(op) if v[2])


class PackedQ8:
    """Weights wt (n, k) int8 (as layers store them) packed for op q8_gemm,
    with their folded int32 bias (n, or None) and output stage: ``rscale``
    (float32, n) for uint8 outputs (q8_ref.requantize), or ``scale``
    (float32, n) for float32 outputs ``float32(acc) * scale``, handed to a
    float layer.

    Weights whose adjacent pairs could saturate the fastest x86 kernel
    (|w[2i]| + |w[2i+1]| > 128) are packed for an exact one instead
    (``kernel`` names it)."""

    def __init__(self, wt, bias=None, rscale=None, scale=None):
        wt = np.ascontiguousarray(wt, np.int8)
        self.n, self.k = wt.shape
        self.to_float = scale is not None
        size = HEADER + -(-self.n // MAX_NR) * MAX_NR * (HEAD + -(-self.k // MAX_KR) * MAX_KR * MAX_WBYTES)
        self.data = np.zeros(size, np.uint8)
        out = dict(scale=np.ascontiguousarray(scale, np.float32)) if self.to_float else \
            dict(rscale=_ints(rscale, np.float32))
        NATIVE.q8_gemm_pack(wt=wt, bias=_ints(bias, np.int32), **out, packed=self.data, k=self.k, n=self.n)
        self.kernel = NATIVE.variants("q8_gemm")[int(self.data[4:8].view(np.uint32)[0])][0]

    def call(self, a, y, zero_point=0, qmin=0, qmax=255, lo=None, hi=None, ldc=None):
        """q8_gemm's arguments for y = stage(a @ w + bias): a (m, k) uint8
        C-contiguous; y (uint8, or float32 where packed with ``scale``)
        C-contiguous from its first value, rows ``ldc`` apart (default n),
        so that groups or a concatenation can be written in place."""
        m = a.shape[0]
        args = dict(a=a, packed=self.data, y=y, m=m, k=self.k, n=self.n, lda=self.k,
                    ldc=self.n if ldc is None else ldc)
        if self.to_float:
            args.update(lo=-np.inf if lo is None else lo, hi=np.inf if hi is None else hi)
        else:
            args.update(zero_point=zero_point, qmin=qmin, qmax=qmax)
        return args

    def __call__(self, a, zero_point=0, qmin=0, qmax=255, lo=None, hi=None, threads=1):
        """The product of a (m, k) uint8 as a new (m, n) array."""
        a = np.ascontiguousarray(a, np.uint8).reshape(-1, self.k)
        y = np.empty((a.shape[0], self.n), np.float32 if self.to_float else np.uint8)
        NATIVE.q8_gemm(**self.call(a, y, zero_point, qmin, qmax, lo, hi), threads=threads)
        return y


class DepthwiseQ8:
    """A depthwise convolution's integer weights (C, KH, KW; int8, or int16
    within +-2047: integer.DEPTHWISE_QMAX), folded int32 bias
    (C; q8_ref.fold_bias with the input's zero point) and per-channel
    requantisation factors (float32, C: q8_ref.requantize), laid out once
    for op q8_dwconv."""

    def __init__(self, weight, bias, rscale, kernel=None):
        weight = np.asarray(weight)
        if weight.dtype not in (np.int8, np.int16):
            raise TypeError("depthwise weights must be int8 or int16")
        weight = weight.reshape(weight.shape[0], *(kernel or weight.shape[1:3]))
        self.c, self.kh, self.kw = weight.shape
        # pairs of taps (native/q8_dwconv.h): int16 (pairs, C, 2), an odd
        # last tap paired with zeros
        taps = weight.reshape(self.c, -1).T.astype(np.int16)  # (KH * KW, C)
        if len(taps) % 2:
            taps = np.concatenate([taps, np.zeros((1, self.c), np.int16)])
        self.w = np.ascontiguousarray(taps.reshape(-1, 2, self.c).transpose(0, 2, 1))
        self.bias, self.rscale = _ints(bias, np.int32), _ints(rscale, np.float32)

    def call(self, x, out, stride, pads, x_zero_point, zero_point, qmin=0, qmax=255):
        """q8_dwconv's arguments for one image: x (H, W, C) uint8, out
        (OH, OW, C) uint8; pads (top, left, bottom, right)."""
        h, w, c = x.shape
        oh, ow, _ = out.shape
        return dict(x=x, weight=self.w, bias=self.bias, rscale=self.rscale, out=out, h=h, w=w, c=c, row0=0,
                    rows=h, oh=oh, ow=ow, kh=self.kh, kw=self.kw, sh=stride[0], sw=stride[1], pad_top=pads[0],
                    pad_left=pads[1], r0=0, r1=oh, x_zero_point=x_zero_point, zero_point=zero_point,
                    qmin=qmin, qmax=qmax)

    def __call__(self, x, stride, pads, x_zero_point, zero_point, qmin=0, qmax=255, threads=1):
        """The convolution of x (N, H, W, C) uint8 as a new uint8 array."""
        x = np.ascontiguousarray(x, np.uint8)
        n, h, w, _ = x.shape
        oh = (h + pads[0] + pads[2] - self.kh) // stride[0] + 1
        ow = (w + pads[1] + pads[3] - self.kw) // stride[1] + 1
        y = np.empty((n, oh, ow, self.c), np.uint8)
        for b in range(n):
            NATIVE.q8_dwconv(**self.call(x[b], y[b], stride, pads, x_zero_point, zero_point, qmin, qmax),
                             threads=threads)
        return y


def _out(out, shape, dtype):
    return np.empty(shape, dtype) if out is None else out


def add(a, b, a_zero_point, b_zero_point, ma, mb, shift, zero_point, qmin=0, qmax=255, out=None, threads=1):
    """q8_ref.add of two uint8 arrays of one shape (``q8_ref.add_multipliers``
    gives ma and mb); out may be a or b."""
    a, b = np.ascontiguousarray(a, np.uint8), np.ascontiguousarray(b, np.uint8)
    y = _out(out, a.shape, np.uint8)
    NATIVE.q8_add(a=a, b=b, y=y, a_zero_point=a_zero_point, b_zero_point=b_zero_point, ma=ma, mb=mb,
                  shift=shift, zero_point=zero_point, qmin=qmin, qmax=qmax, threads=threads)
    return y


def meanpool(x, zero_point, scale, threads=1):
    """q8_ref.meanpool: x (N, H, W, C) uint8 to (N, C) float32; scale is the
    input's scale / (H * W)."""
    x = np.ascontiguousarray(x, np.uint8)
    n, h, w, c = x.shape
    y = np.empty((n, c), np.float32)
    NATIVE.q8_meanpool(x=x, y=y, images=n, hw=h * w, c=c, zero_point=zero_point, scale=float(np.float32(scale)),
                       threads=threads)
    return y


def quantize(x, scale, zero_point, out=None, threads=1):
    """q8_ref.quantize: float32 x to uint8."""
    x = np.ascontiguousarray(x, np.float32)
    y = _out(out, x.shape, np.uint8)
    NATIVE.q8_quantize(x=x, y=y, inv_scale=float(np.float32(1.0 / scale)), zero_point=zero_point,
                       threads=threads)
    return y


def dequantize(q, scale, zero_point, out=None, threads=1):
    """q8_ref.dequantize: uint8 q to float32."""
    q = np.ascontiguousarray(q, np.uint8)
    y = _out(out, q.shape, np.float32)
    NATIVE.q8_dequantize(x=q, y=y, scale=float(np.float32(scale)), zero_point=zero_point, threads=threads)
    return y
