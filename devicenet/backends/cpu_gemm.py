"""devicenet's own GEMM (native/gemm.h) in the compiled implementation.

Weights are packed once, when a plan is made, for the variant of op
``f32_gemm`` selected then (``Packed``), bias included; the calls then run
on the thread team.  Two kinds of kernel use it, ahead of the ones that
call numpy's BLAS: 1x1 convolutions and dense layers (``PackedGemm``) and
im2col convolutions (``PackedIm2col``).  The BLAS runs GEMMs only where
this GEMM has no vector variant for the CPU and loses to it on a trial
product (``own_gemm``).
"""

import functools
import time

import numpy as np

from .cpu_kernels import NATIVE, Kernel, _Im2col, bounds, native_gemm


def own_gemm_variant():
    """The variant of f32_gemm that weights packed now are packed for."""
    return next(v[0] for v in NATIVE.variants("f32_gemm") if v[2])


@functools.lru_cache(maxsize=None)
def own_gemm():
    """Whether GEMMs run on devicenet's own GEMM rather than numpy's BLAS:
    wherever it has a vector variant for this CPU (faster than OpenBLAS on
    every GEMM of Lite0 and of the AlexNet-shaped network,
    docs/PERFORMANCE.md); with only its portable variant, where that beats
    the BLAS on a trial product."""
    if NATIVE is None:
        return False
    if not own_gemm_variant().endswith("_scalar") or not native_gemm():
        return True
    m = k = n = 96
    a = np.cos(np.arange(m * k, dtype=np.float32)).reshape(m, k)
    w = np.sin(np.arange(k * n, dtype=np.float32)).reshape(k, n)
    y = np.empty((m, n), np.float32)
    trial = {"own": (NATIVE.f32_gemm, Packed(w, None).call(a, y, "none")),
             "blas": (NATIVE.gemm, dict(a=a, b=w, y=y, m=m, k=k, n=n))}
    best = {}
    for _ in range(2):
        for name, (call, kwargs) in trial.items():
            t = time.perf_counter()
            call(**kwargs)
            best[name] = min(best.get(name, np.inf), time.perf_counter() - t)
    return best["own"] <= best["blas"]


class Packed:
    """Weights (k, n) and a bias (n values, or None) packed for the selected
    f32_gemm variant (``f32_gemm_pack``): given as w (k, n), or as wt
    (n, k), the transpose, which is how layers store them."""

    #: the header's floats and the widest panel of any variant (native/gemm.h)
    HEADER, MAX_NR = 16, 16

    def __init__(self, w=None, bias=None, wt=None):
        given = dict(w=w) if wt is None else dict(wt=wt)
        (name, m), = given.items()
        m = np.ascontiguousarray(m, np.float32)
        self.k, self.n = m.shape if wt is None else m.shape[::-1]
        self.data = np.zeros(self.HEADER + (self.k + 1) * -(-self.n // self.MAX_NR) * self.MAX_NR, np.float32)
        NATIVE.f32_gemm_pack(**{name: m}, bias=bias, packed=self.data, k=self.k, n=self.n)

    def call(self, a, y, act, ldc=None):
        """f32_gemm's arguments for y = act(a @ w + bias): a (m, k)
        C-contiguous; y C-contiguous from its first value, rows ``ldc``
        apart (default n)."""
        return dict(a=a, packed=self.data, y=y, m=a.shape[0], k=self.k, n=self.n, lda=self.k,
                    ldc=self.n if ldc is None else ldc, **bounds(act))


def packed(weight, node, split):
    """The node's GEMM weights as ``Packed`` (a list), made once per plan
    cache: ``split(w)`` cuts the decoded weight into transposed (n, k)
    matrices, each with its bias (so the key names the groups and the bias
    as well as the packing variant)."""
    return weight(lambda w: [Packed(wt=m, bias=b) for m, b in split(w)], "packed", own_gemm_variant(),
                  node.attrs.get("groups", 1), node.params.get("bias"))


class PackedGemm(Kernel):
    """A 1x1 stride-1 convolution or a dense layer: one GEMM into the
    output."""

    op = "f32_gemm"

    def __init__(self, node, shape, weight, bias, impl):
        self.wt = packed(weight, node, lambda w: [(w.reshape(w.shape[0], -1), bias)])[0]
        self.act, self.impl = node.attrs.get("activation", "none"), impl

    @classmethod
    def suits(cls, node, shape, weight):
        return own_gemm()

    def __call__(self, inputs, out, temps):
        (name, args), = self.bind(inputs, out, temps)
        self.impl.module.f32_gemm(**args, threads=self.impl.threads.n)
        return out

    def bind(self, inputs, out, temps):
        return [("f32_gemm", self.wt.call(inputs[0].reshape(-1, self.wt.k), out.reshape(-1, self.wt.n), self.act))]


class PackedIm2col(_Im2col):
    """An im2col convolution whose GEMMs write each group's columns of the
    output in place (no scratch copy)."""

    op = "f32_gemm"
    in_place = True

    @classmethod
    def suits(cls, node, shape, weight):
        return own_gemm()

    def weights(self, node, weight, bias):
        co = self.co
        return packed(weight, node, lambda w: [(wg, None if bias is None else bias[g * co:(g + 1) * co])
                                               for g, wg in enumerate(w.reshape(self.groups, co, -1))])

    def gemm(self, g, a, y, part):
        # y (m, cout) is contiguous: group g's columns start g * co values in
        self.impl.module.f32_gemm(**self.wt[g].call(a, y.reshape(-1)[g * self.co:], self.act, ldc=y.shape[1]),
                                  threads=self.impl.threads.n)

