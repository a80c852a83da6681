"""devicenet's own packed GEMM (native/gemm.h): every built variant against
numpy's float64 matmul over awkward shapes, and the CPU backend's use of it.

Each variant is forced in turn (the weights are packed for the variant
selected when they are packed) and run over sizes around its register
tile (1, tile - 1, tile, tile + 1, ...), with and without bias, with each
clamp, with row strides wider than the rows, on one to three threads.
"""

import numpy as np
import pytest

from devicenet.backends import cpu_gemm, cpu_kernels
from devicenet.backends.cpu import CPUBackend
from devicenet.graph import Graph, Node, Tensor

native = cpu_kernels.NATIVE
pytestmark = pytest.mark.skipif(native is None, reason="the compiled kernels are not built")

CLAMPS = ((-np.inf, np.inf), (0.0, np.inf), (0.0, 6.0))  # none, ReLU, ReLU6


def tile(name):
    """(mr, nr) from a variant's name: f32_gemm_<MR>x<NR>_<isa>."""
    mr, nr = name.split("_")[2].split("x")
    return int(mr), int(nr)


def own_variants():
    return [v[0] for v in native.variants("f32_gemm")] if native is not None else []


def run_gemm(a, w, bias, lo, hi, threads, lda_pad=0, ldc_pad=0):
    """C = clamp(a @ w + bias) through f32_gemm_pack and f32_gemm, with rows
    of a and of C lda_pad and ldc_pad values longer than they need; the
    result and the whole output buffer (its gaps must stay untouched)."""
    m, k = a.shape
    n = w.shape[1]
    ab = np.full((m, k + lda_pad), np.nan, np.float32)
    ab[:, :k] = a
    packed = cpu_gemm.Packed(w, bias)
    y = np.full((m, n + ldc_pad), -7.0, np.float32)
    native.f32_gemm(**packed.call(ab, y, "none", ldc=n + ldc_pad) | dict(lda=k + lda_pad, lo=lo, hi=hi),
                    threads=threads)
    return y[:, :n], y


def reference(a, w, bias, lo, hi):
    """The float64 result and a bound on float32's error for any order of
    summation: k units of rounding on the sum of the magnitudes."""
    a64, w64 = a.astype(np.float64), w.astype(np.float64)
    b = 0.0 if bias is None else bias.astype(np.float64)
    want = np.clip(a64 @ w64 + b, lo, hi)
    scale = np.abs(a64) @ np.abs(w64) + np.abs(b)
    return want, (a.shape[1] + 2) * 2.0 ** -23 * scale + 1e-30


def shapes(mr, nr):
    """(m, n, k): sizes around the tile, 1 and primes."""
    ms = sorted({1, 2, mr - 1, mr, mr + 1, 2 * mr + 1, 3 * mr + 2} - {0})
    ns = sorted({1, nr // 2, nr // 2 + 1, nr - 1, nr, nr + 1, 2 * nr + 3, 3 * nr - 1} - {0})
    ks = (1, 2, 3, 17, 130)
    return [(m, n, k) for i, m in enumerate(ms) for j, n in enumerate(ns) for k in (ks[(i + j) % len(ks)], 5)]


def cases(rng, threads):
    """The cases of op f32_gemm for tests/test_variants.py: (got, want)."""
    name = next(v[0] for v in native.variants("f32_gemm") if v[2])
    mr, nr = tile(name)
    for m, n, k in [(1, 1, 1), (mr + 1, nr + 1, 9), (3 * mr, 2 * nr - 1, 33), (50, 70, 70)]:
        a = rng.normal(size=(m, k)).astype(np.float32)
        w = rng.normal(size=(k, n)).astype(np.float32)
        bias = rng.normal(size=n).astype(np.float32)
        got, _ = run_gemm(a, w, bias, 0.0, 6.0, threads)
        yield got, reference(a, w, bias, 0.0, 6.0)[0]


@pytest.mark.parametrize("name", own_variants())
def test_every_variant_over_awkward_shapes(name):
    if not next(v[3] for v in native.variants("f32_gemm") if v[0] == name):
        pytest.skip(f"{name} cannot run on this CPU")
    rng = np.random.default_rng(sum(map(ord, name)))
    mr, nr = tile(name)
    native.force("f32_gemm", name)
    try:
        for i, (m, n, k) in enumerate(shapes(mr, nr)):
            a = rng.normal(size=(m, k)).astype(np.float32)
            w = rng.normal(size=(k, n)).astype(np.float32)
            bias = rng.normal(size=n).astype(np.float32) if i % 2 else None
            lo, hi = CLAMPS[i % 3]
            threads = 1 + i % 3
            got, whole = run_gemm(a, w, bias, lo, hi, threads, lda_pad=i % 4, ldc_pad=(i + 1) % 3)
            want, tol = reference(a, w, bias, lo, hi)
            err = np.abs(got - want)
            assert np.all(err <= tol), f"{name}: m={m} n={n} k={k}, worst {np.max(err / tol):.1f} x the bound"
            assert np.all(whole[:, n:] == -7.0), f"{name}: wrote past column n"
    finally:
        native.force("f32_gemm", None)


def test_blocks_and_threads_tile_the_output_exactly():
    # sizes that split into uneven bands of rows and (few rows, many
    # columns) of panels among three threads
    rng = np.random.default_rng(3)
    for m, n, k in [(97, 40, 24), (7, 1153, 19), (200, 640, 3), (13, 211, 300)]:
        a = rng.normal(size=(m, k)).astype(np.float32)
        w = rng.normal(size=(k, n)).astype(np.float32)
        bias = rng.normal(size=n).astype(np.float32)
        for threads in (1, 2, 3):
            got, _ = run_gemm(a, w, bias, -np.inf, np.inf, threads)
            want, tol = reference(a, w, bias, -np.inf, np.inf)
            assert np.all(np.abs(got - want) <= tol), (m, n, k, threads)


def test_the_weights_run_on_the_variant_they_were_packed_for():
    names = [v[0] for v in native.variants("f32_gemm") if v[3]]
    if len(names) < 2:
        pytest.skip("one variant runs on this CPU")
    rng = np.random.default_rng(5)
    a = rng.normal(size=(9, 20)).astype(np.float32)
    w = rng.normal(size=(20, 30)).astype(np.float32)
    native.force("f32_gemm", names[-1])
    try:
        packed = cpu_gemm.Packed(w, None)
    finally:
        native.force("f32_gemm", None)
    before = {v[0]: v[4] for v in native.variants("f32_gemm")}
    y = np.empty((9, 30), np.float32)
    native.f32_gemm(**packed.call(a, y, "none"))
    after = {v[0]: v[4] for v in native.variants("f32_gemm")}
    assert after[names[-1]] == before[names[-1]] + 1 and after[names[0]] == before[names[0]]
    np.testing.assert_allclose(y, a @ w, rtol=1e-4, atol=1e-4)


def test_weights_pack_the_same_from_either_layout():
    rng = np.random.default_rng(7)
    for k, n in [(1, 1), (5, 17), (33, 40), (130, 9)]:
        w = rng.normal(size=(k, n)).astype(np.float32)
        bias = rng.normal(size=n).astype(np.float32)
        a, b = cpu_gemm.Packed(w, bias), cpu_gemm.Packed(wt=np.ascontiguousarray(w.T), bias=bias)
        np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(TypeError):
        native.f32_gemm_pack(w=w, wt=w.T.copy(), bias=None, packed=a.data, k=k, n=n)


def test_bad_packed_weights_raise_instead_of_reading_out_of_bounds():
    w = np.ones((8, 10), np.float32)
    packed = cpu_gemm.Packed(w, None)
    a, y = np.ones((4, 8), np.float32), np.empty((4, 10), np.float32)
    good = packed.call(a, y, "none")
    for bad in (dict(k=7, lda=7), dict(n=11, ldc=11), dict(packed=packed.data[:40]),
                dict(packed=np.zeros(4000, np.float32)), dict(lda=7), dict(ldc=9), dict(m=5)):
        with pytest.raises(ValueError):
            native.f32_gemm(**good | bad)
    with pytest.raises(ValueError):
        native.f32_gemm_pack(w=w, bias=None, packed=np.empty(50, np.float32), k=8, n=10)
    with pytest.raises(ValueError):
        native.f32_gemm_pack(w=w, bias=np.ones(3, np.float32), packed=packed.data, k=8, n=10)


def small_net():
    """A 1x1 convolution, a grouped 3x3 one (im2col, a GEMM per group) and
    a dense layer, each with bias and a clamp, float32 weights."""
    rng = np.random.default_rng(11)

    def t(name, *shape):
        return Tensor(name, "float32", shape, rng.normal(size=shape).astype(np.float32) * 0.3)

    nodes = [
        Node("conv", "pw", ["x"], ["a"], {"kernel": [1, 1], "activation": "relu6"},
             {"weight": "pw.w", "bias": "pw.b"}),
        Node("conv", "grouped", ["a"], ["b"], {"kernel": [3, 3], "stride": [2, 2], "pads": [1, 1, 1, 1],
                                              "groups": 2, "activation": "relu"},
             {"weight": "g.w", "bias": "g.b"}),
        Node("flatten", "flat", ["b"], ["c"]),
        Node("dense", "fc", ["c"], ["y"], {}, {"weight": "fc.w", "bias": "fc.b"}),
    ]
    tensors = [t("pw.w", 22, 1, 1, 13), t("pw.b", 22), t("g.w", 18, 3, 3, 11), t("g.b", 18),
               t("fc.w", 10, 5 * 5 * 18), t("fc.b", 10)]
    meta = {"input": {"name": "x", "shape": [1, 9, 9, 13]}, "output": "y"}
    return Graph(meta, nodes, {x.name: x for x in tensors})


def test_cpu_backend_runs_its_gemms_on_the_own_gemm():
    graph = small_net()
    x = np.random.default_rng(1).normal(size=(3, 9, 9, 13)).astype(np.float32)
    want = CPUBackend(graph, native=False).run(x)
    for name in [v[0] for v in native.variants("f32_gemm") if v[3]]:
        native.force("f32_gemm", name)
        try:
            if not cpu_gemm.own_gemm():
                pytest.skip("numpy's BLAS runs the GEMMs here")
            before = next(v[4] for v in native.variants("f32_gemm") if v[0] == name)
            for threads in (1, 2):
                got = CPUBackend(graph, threads=threads).run(x)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name)
            # one GEMM for the 1x1 convolution, two for the groups, one for the dense layer
            assert next(v[4] for v in native.variants("f32_gemm") if v[0] == name) >= before + 8
        finally:
            native.force("f32_gemm", None)

