"""The eight-bit kernels (native/q8.h) against q8_ref, bit for bit.

Every built variant of every q8 op is forced in turn and run over awkward
shapes (sizes around the register tiles, k = 1, long k), zero points 0,
128 and 255, clamps that saturate, requantisation factors that make
exact ties (rounded half to even), sums beyond 2**24 (whose conversion to
float32 rounds), zero and subnormal factors, and one to three threads; its outputs must equal the numpy
reference exactly.  An op without cases fails, and so does a variant the
forcing did not reach."""

import numpy as np
import pytest

from devicenet.backends import cpu_kernels, q8_ref as ref

native = cpu_kernels.NATIVE
pytestmark = pytest.mark.skipif(native is None, reason="the compiled kernels are not built")
if native is not None:
    from devicenet.backends import cpu_q8
    from devicenet.backends.cpu_q8 import PackedQ8

THREADS = (1, 2, 3)
ZERO_POINTS = (0, 128, 255)


#: factors whose products fall exactly between two integers (halves and
#: quarters of the sums), 1, 0, a subnormal and one that keeps only large sums
EDGE_FACTORS = np.array([0.5, 0.25, 1.0, 0.0, 1e-39, 2.0 ** -20, 0.75, 1.5], np.float32)


def factors(rng, n, case):
    """Requantisation factors per channel: typical ones, the edge cases, or
    ones so large that every output saturates (the clamps decide)."""
    if case == 0:
        return ref.requant_scale(rng.uniform(1e-4, 0.02, n))
    if case == 1:
        return EDGE_FACTORS[np.arange(n) % len(EDGE_FACTORS)]
    return ref.requant_scale(rng.uniform(10.0, 1e4, n))


def gemm_operands(rng, m, k, n, zp_a, wmax=127):
    a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    wt = rng.integers(-wmax, wmax + 1, (n, k)).astype(np.int8)
    bias = ref.fold_bias(rng.integers(-5000, 5000, n).astype(np.int32), wt, zp_a)
    return a, wt, bias


def run_q8_gemm(rng, m, k, n, i, threads, wmax=127, ldc_pad=0):
    """(got, want, packed) for one case: uint8 outputs on even i, float32 on odd."""
    zp = ZERO_POINTS[i % 3]
    a, wt, bias = gemm_operands(rng, m, k, n, zp, wmax)
    if i % 2 == 0:
        f = factors(rng, n, i // 2 % 3)
        qmin, qmax = ((0, 255), (zp // 2, 255), (3, 200))[i % 3]
        packed = PackedQ8(wt, bias, rscale=f)
        want = ref.gemm(a, wt, bias, f, zp, qmin, qmax)
        y = np.full((m, n + ldc_pad), 77, np.uint8)
        native.q8_gemm(**packed.call(a, y, zp, qmin, qmax, ldc=n + ldc_pad), threads=threads)
    else:
        scale = rng.uniform(1e-5, 1e-2, n).astype(np.float32)
        lo, hi = ((None, None), (0.0, None), (0.0, 6.0))[i % 3]
        packed = PackedQ8(wt, bias, scale=scale)
        want = ref.dequantize_acc(ref.gemm_acc(a, wt, bias), scale, lo, hi)
        y = np.full((m, n + ldc_pad), 77, np.float32)
        native.q8_gemm(**packed.call(a, y, lo=lo, hi=hi, ldc=n + ldc_pad), threads=threads)
    assert np.all(y[:, n:] == 77), "wrote past column n"
    return y[:, :n], want, packed


def tile(name):
    """(mr, nr) of q8_gemm_<MR>x<NR>c<KG>_<isa>."""
    mr, nr = name.split("_")[2].split("c")[0].split("x")
    return int(mr), int(nr)


def q8_gemm(rng, threads):
    mr, nr = tile(next(v[0] for v in native.variants("q8_gemm") if v[2]))
    ms = (1, mr - 1 or 1, mr + 1, 3 * mr + 2, 64 * mr + 3)
    ns = (1, nr - 1 or 1, nr + 1, 2 * nr + 3, 130)
    ks = (1, 2, 3, 5, 16, 17, 37, 300)
    for i in range(12):
        m, n, k = ms[i % 5], ns[(i * 2) % 5], ks[i % 8]
        got, want, _ = run_q8_gemm(rng, m, k, n, i, threads, wmax=64, ldc_pad=i % 3)
        yield got, want
    # long k (sums beyond 2**24, in the edge factors' case), and weights at the int8 extremes
    for i in (0, 2):
        got, want, _ = run_q8_gemm(rng, 9, 1000, 40, i, threads, wmax=64)
        yield got, want
    got, want, _ = run_q8_gemm(rng, 7, 33, 21, 1, threads, wmax=128)
    yield got, want
    # k so deep that a wide kernel's widened rows of A would pass its stack
    # budget: fewer rows at a time
    got, want, _ = run_q8_gemm(rng, 7, 30001, 17, 0, threads, wmax=64)
    yield got, want


def q8_dwconv(rng, threads):
    # (H, W, C, kernel, stride, pads top/left/bottom/right): channels that
    # are and are not multiples of 16, images narrower than the kernel,
    # uneven pads, more than 8 blocks of channels (split across channels)
    for i, (h, w, c, k, stride, pads) in enumerate([
            (12, 11, 32, 3, 1, (1, 1, 1, 1)), (13, 17, 48, 3, 2, (0, 0, 1, 1)), (9, 10, 21, 5, 1, (2, 2, 2, 2)),
            (15, 14, 40, 5, 2, (1, 2, 2, 1)), (7, 7, 200, 5, 1, (2, 2, 2, 2)), (3, 2, 17, 3, 1, (1, 1, 1, 1)),
            (6, 6, 5, 5, 2, (2, 2, 2, 2)), (8, 9, 3, 3, 2, (1, 1, 1, 1))]):
        zx, zp = ZERO_POINTS[i % 3], ZERO_POINTS[(i + 1) % 3]
        x = rng.integers(0, 256, (1, h, w, c)).astype(np.uint8)
        # int8 weights, or on odd cases twelve-bit ones stored int16 (integer.DEPTHWISE_QMAX)
        weight = (rng.integers(-127, 128, (c, k, k)).astype(np.int8) if i % 2 == 0 else
                  rng.integers(-2047, 2048, (c, k, k)).astype(np.int16))
        bias = ref.fold_bias(rng.integers(-3000, 3000, c).astype(np.int32), weight, zx)
        f = factors(rng, c, i % 3)
        qmin, qmax = ((0, 255), (zp // 2, 255), (3, 200))[i % 3]
        want = ref.requantize(ref.dwconv_acc(x, weight, bias, (stride, stride), pads, zx), f, zp, qmin, qmax)
        got = cpu_q8.DepthwiseQ8(weight, bias, f)(x, (stride, stride), pads, zx, zp, qmin, qmax, threads)
        yield got, want


def q8_add(rng, threads):
    for i, shape in enumerate([(2, 7, 7, 40), (1, 3), (5, 13, 11, 3), (300000,)]):
        a, b = (rng.integers(0, 256, shape).astype(np.uint8) for _ in range(2))
        za, zb, zp = ZERO_POINTS[i % 3], ZERO_POINTS[(i + 1) % 3], ZERO_POINTS[(i + 2) % 3]
        ma, mb = ref.add_multipliers(*rng.uniform(0.01, 0.2, 2), rng.uniform(0.02, 0.1))
        shift = (16, 1, 20, 9)[i]
        if shift < 16:
            ma, mb = ma >> (16 - shift), mb >> (16 - shift)
        qmin, qmax = ((0, 255), (zp // 2, 255), (3, 200))[i % 3]
        want = ref.add(a, b, za, zb, ma, mb, shift, zp, qmin, qmax)
        yield cpu_q8.add(a, b, za, zb, ma, mb, shift, zp, qmin, qmax, threads=threads), want
        # the largest multipliers allowed, in place
        want = ref.add(a, b, za, zb, 2 ** 21 - 1, -(2 ** 21 - 1), 31, zp)
        yield cpu_q8.add(a, b, za, zb, 2 ** 21 - 1, -(2 ** 21 - 1), 31, zp, out=a, threads=threads), want


def q8_meanpool(rng, threads):
    for i, (n, h, w, c) in enumerate([(2, 7, 7, 40), (1, 1, 1, 3), (3, 5, 1, 1280), (1, 17, 13, 13)]):
        x = rng.integers(0, 256, (n, h, w, c)).astype(np.uint8)
        zp, scale = ZERO_POINTS[i % 3], rng.uniform(0.01, 0.1) / (h * w)
        yield cpu_q8.meanpool(x, zp, scale, threads), ref.meanpool(x, zp, scale)


def q8_quantize(rng, threads):
    for i, shape in enumerate([(2, 7, 7, 40), (1, 3), (100003,)]):
        # a power of two on even cases, so that x / scale hits halves exactly
        scale, zp = (2.0 ** -5 if i % 2 == 0 else rng.uniform(0.005, 0.1)), ZERO_POINTS[i % 3]
        x = (rng.normal(size=shape) * 200 * scale).astype(np.float32)
        x.reshape(-1)[::3] = np.round(x.reshape(-1)[::3] / scale * 2) / 2 * scale
        # ties to even, huge values
        special = np.float32([0.5, 1.5, 2.5, -0.5, -1.5, 1e30, -1e30, 3e38]) * np.float32(scale)
        x.reshape(-1)[:8] = special[:x.size]
        yield cpu_q8.quantize(x, scale, zp, threads=threads), ref.quantize(x, scale, zp)


def q8_dequantize(rng, threads):
    for i, shape in enumerate([(2, 7, 7, 40), (1, 3), (100003,)]):
        q = rng.integers(0, 256, shape).astype(np.uint8)
        scale, zp = rng.uniform(0.005, 0.1), ZERO_POINTS[i % 3]
        yield cpu_q8.dequantize(q, scale, zp, threads=threads), ref.dequantize(q, scale, zp)


#: op -> cases(rng, threads), yielding (got, want)
CASES = {
    "q8_gemm": q8_gemm,
    "q8_dwconv": q8_dwconv,
    "q8_add": q8_add,
    "q8_meanpool": q8_meanpool,
    "q8_quantize": q8_quantize,
    "q8_dequantize": q8_dequantize,
}


def q8_variants():
    if native is None:
        return []
    return [(op, v[0]) for op in native.ops() if op.startswith("q8_") for v in native.variants(op)]


def calls(op, name):
    return next(v[4] for v in native.variants(op) if v[0] == name)


@pytest.mark.parametrize("op, name", q8_variants())
def test_variant_equals_the_reference(op, name):
    if not next(v[3] for v in native.variants(op) if v[0] == name):
        pytest.skip(f"{name} cannot run on this CPU")
    before = calls(op, name)
    native.force(op, name)
    try:
        rng = np.random.default_rng(sum(map(ord, name)))
        count = 0
        for threads in THREADS:
            for got, want in CASES[op](rng, threads):
                assert got.dtype == want.dtype and got.shape == want.shape
                bad = np.argwhere(got != want)
                assert bad.size == 0, f"{name}, {threads} threads: {len(bad)} differ, first at {bad[0]}"
                count += 1
        assert count > 0
    finally:
        native.force(op, None)
    assert calls(op, name) > before  # the cases ran on the forced variant


def test_every_q8_op_has_cases():
    assert {op for op in native.ops() if op.startswith("q8_")} == set(CASES)
    for op in CASES:
        variants = native.variants(op)
        assert variants and sum(v[2] for v in variants) == 1 and not variants[-1][1]


def test_weights_that_could_saturate_vpmaddubsw_are_packed_for_an_exact_kernel():
    rng = np.random.default_rng(5)
    m, k, n = 13, 64, 40
    a = np.full((m, k), 255, np.uint8)  # the largest products
    a[1::2] = rng.integers(0, 256, (m // 2, k))
    # pairs at the limit |w0| + |w1| = 128 in every sign, and beyond it
    edge = np.array([[-128, 0], [0, -128], [64, -64], [-64, -64], [100, 28], [-1, -127], [127, 1], [64, 64]],
                    np.int8)
    safe = np.tile(edge, (n, k // 16)).reshape(n, k)
    unsafe = safe.copy()
    unsafe[7, 10:12] = (-128, -1)  # one pair past the limit
    f = ref.requant_scale(np.full(n, 1e-4))
    for wt, exact in ((safe, False), (unsafe, True)):
        bias = ref.fold_bias(None, wt, 0)
        packed = PackedQ8(wt, bias, rscale=f)
        assert packed.kernel in cpu_q8_gemm_variants()
        if exact:  # never the kernel that could saturate
            assert not packed.kernel.endswith("c4_avx2")
        y = packed(a, zero_point=100)
        np.testing.assert_array_equal(y, ref.gemm(a, wt, bias, f, 100))
        yf = PackedQ8(wt, bias, scale=np.full(n, 1e-3, np.float32))(a)
        np.testing.assert_array_equal(yf, ref.dequantize_acc(ref.gemm_acc(a, wt, bias), np.full(n, 1e-3, np.float32)))
    # a k so deep that a wide kernel could not keep a row of A widened on
    # its stack: packed for an exact kernel that is not wide
    deep = rng.integers(-127, 128, (3, 32801)).astype(np.int8)
    a_deep = rng.integers(0, 256, (2, 32801)).astype(np.uint8)
    packed = PackedQ8(deep, np.zeros(3, np.int32), scale=np.ones(3, np.float32))
    assert packed.kernel != "q8_gemm_6x16c2_avx2"
    np.testing.assert_array_equal(packed(a_deep), ref.gemm_acc(a_deep, deep, np.zeros(3, np.int32)).astype(np.float32))
    # with the vpmaddubsw kernel selected, the safe weights use it and the unsafe ones do not
    if any(v[0] == "q8_gemm_6x16c4_avx2" and v[2] for v in native.variants("q8_gemm")):
        assert PackedQ8(safe, None, rscale=f).kernel == "q8_gemm_6x16c4_avx2"
        assert PackedQ8(unsafe, None, rscale=f).kernel == "q8_gemm_6x16c2_avx2"


def cpu_q8_gemm_variants():
    return [v[0] for v in native.variants("q8_gemm")]


def test_bad_arguments_are_refused():
    wt = np.zeros((3, 5), np.int8)
    f = ref.requant_scale(np.full(3, 0.01))
    with pytest.raises(TypeError, match="rscale"):
        native.q8_gemm_pack(wt=wt, packed=np.zeros(4096, np.uint8), k=5, n=3)
    with pytest.raises(TypeError, match="rscale"):
        native.q8_gemm_pack(wt=wt, rscale=f, scale=f, packed=np.zeros(4096, np.uint8), k=5, n=3)
    with pytest.raises(TypeError, match="int8"):
        native.q8_gemm_pack(wt=wt.astype(np.int16), rscale=f, packed=np.zeros(4096, np.uint8), k=5, n=3)
    for bad in (-0.5, np.inf, np.nan):
        with pytest.raises(ValueError, match="finite"):
            native.q8_gemm_pack(wt=wt, rscale=np.array([0.1, bad, 0.1], np.float32),
                                packed=np.zeros(4096, np.uint8), k=5, n=3)
    with pytest.raises(ValueError, match="values"):
        native.q8_gemm_pack(wt=wt, rscale=f, packed=np.zeros(16, np.uint8), k=5, n=3)
    packed = PackedQ8(wt, None, rscale=f)
    a, y = np.zeros((2, 5), np.uint8), np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match="zero_point"):
        native.q8_gemm(**packed.call(a, y, zero_point=256))
    with pytest.raises(ValueError, match="packed"):  # packed for uint8 outputs, asked for float32
        native.q8_gemm(**packed.call(a, np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="packed"):  # another k
        native.q8_gemm(**(packed.call(a, y) | dict(k=4, lda=5)))
    with pytest.raises(ValueError, match="holds"):
        native.q8_gemm(**packed.call(a, y[:1]))
    with pytest.raises(ValueError, match="shift"):
        cpu_q8.add(a, a, 0, 0, 1 << 21, 1, 16, 0)
