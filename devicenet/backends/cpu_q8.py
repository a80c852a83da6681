"""The eight-bit kernels of the compiled module (native/q8.h), numpy in and
numpy out.

The arithmetic is q8_ref's, bit for bit: uint8 activations with a scale
and zero point, int8 weights with one scale per output channel, int32
sums from a folded bias (``q8_ref.fold_bias``), and a fixed-point
requantisation per output channel (``q8_ref.multiplier`` gives its m and
e).  Weights are packed once (``PackedQ8``, ``DepthwiseQ8``); every call
then runs on the compiled module's thread team without the GIL.

Each wrapper's ``call`` (or ``args``) returns the op's keyword arguments,
which a compiled program can hold (``_native.program``); ``__call__`` and
the functions run the op at once and return the output.
"""

import numpy as np

from .cpu_kernels import NATIVE

#: the packed weights' header bytes, widest panel, deepest k padding and
#: per-column head bytes (native/q8.h)
HEADER, MAX_NR, MAX_KR, HEAD = 64, 16, 4, 16


def _ints(x, dtype):
    return None if x is None else np.ascontiguousarray(x, dtype)


def variant(op):
    """The variant of a q8 op the registry selects now (``q8_gemm``, ...)."""
    return next(v[0] for v in NATIVE.variants(op) if v[2])


class PackedQ8:
    """Weights wt (n, k) int8 (as layers store them) packed for op q8_gemm,
    with their folded int32 bias (n, or None) and output stage: ``m`` and
    ``e`` (int32, n) for uint8 outputs, or ``scale`` (float32, n) for
    float32 outputs ``float32(acc) * scale``, handed to a float layer.

    Weights whose adjacent pairs could saturate the fastest x86 kernel
    (|w[2i]| + |w[2i+1]| > 128) are packed for an exact one instead
    (``kernel`` names it)."""

    def __init__(self, wt, bias=None, m=None, e=None, scale=None):
        wt = np.ascontiguousarray(wt, np.int8)
        self.n, self.k = wt.shape
        self.to_float = scale is not None
        size = HEADER + -(-self.n // MAX_NR) * MAX_NR * (HEAD + -(-self.k // MAX_KR) * MAX_KR)
        self.data = np.zeros(size, np.uint8)
        out = dict(scale=np.ascontiguousarray(scale, np.float32)) if self.to_float else \
            dict(m=_ints(m, np.int32), e=_ints(e, np.int32))
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
