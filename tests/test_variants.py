"""Every built variant of every compiled op against numpy.

The registry (native/registry.c) lists each op's variants; each one this
CPU can run is forced in turn and run over the op's cases (awkward shapes,
one to three threads) against the numpy reference.  An op without cases
fails, and so does a variant the forcing did not reach."""

import math

import numpy as np
import pytest

from devicenet.backends import cpu_kernels
from devicenet.backends.cpu import conv
from devicenet.graph import CURVES
from devicenet.quant import decode
from test_gemm import cases as f32_gemm
from test_q8_kernels import CASES as Q8_CASES

native = cpu_kernels.NATIVE
pytestmark = pytest.mark.skipif(native is None, reason="the compiled kernels are not built")
THREADS = (1, 2, 3)


def geometry(h, w, c, oh, ow, k, stride, pads, **more):
    return dict(h=h, w=w, c=c, row0=0, rows=h, oh=oh, ow=ow, kh=k[0], kw=k[1], sh=stride[0], sw=stride[1],
                pad_top=pads[0], pad_left=pads[1], **more)


def window(rng, case, cout=None):
    """A window op's arguments and the numpy reference for one case."""
    h, w, c, k, stride, pads = case
    x = rng.normal(size=(1, h, w, c)).astype(np.float32)
    attrs = {"kernel": list(k), "stride": list(stride), "pads": list(pads)}
    if cout is None:
        weight = rng.normal(size=(c, k[0], k[1], 1)).astype(np.float32)
        attrs["groups"] = c
        wt = weight[:, :, :, 0].transpose(1, 2, 0)
    else:
        weight = rng.normal(size=(cout, k[0], k[1], c)).astype(np.float32)
        wt = weight.transpose(1, 2, 3, 0)
    bias = rng.normal(size=weight.shape[0]).astype(np.float32)
    want = np.clip(conv(x, attrs, weight, bias)[0], 0.0, 6.0)
    oh, ow, co = want.shape
    out = np.full(want.shape, np.nan, np.float32)
    more = {} if cout is None else {"cout": cout}
    args = dict(x=x[0], weight=np.ascontiguousarray(wt), bias=bias, out=out,
                **geometry(h, w, c, oh, ow, k, stride, pads, **more), r0=0, r1=oh, lo=0.0, hi=6.0)
    return args, out, want


def depthwise(rng, threads):
    # channels that are and are not multiples of 16 (and more than 8 blocks
    # of them, split across channels); images narrower than the kernel; odd
    # strides, kernels and pads
    for case in [(12, 11, 32, (3, 3), (1, 1), (1, 1, 1, 1)), (13, 17, 48, (3, 3), (2, 2), (0, 0, 1, 1)),
                 (9, 10, 21, (5, 5), (1, 1), (2, 2, 2, 2)), (15, 14, 40, (5, 5), (2, 2), (1, 2, 2, 1)),
                 (7, 7, 200, (5, 5), (1, 1), (2, 2, 2, 2)), (3, 2, 17, (3, 3), (1, 1), (1, 1, 1, 1)),
                 (10, 9, 33, (3, 2), (1, 3), (0, 1, 2, 0)), (6, 6, 5, (7, 7), (1, 1), (3, 3, 3, 3))]:
        args, out, want = window(rng, case)
        native.depthwise(**args, threads=threads)
        yield out, want


def direct(rng, threads):
    for case, cout in [((16, 16, 3, (3, 3), (2, 2), (0, 0, 1, 1)), 32), ((11, 9, 3, (3, 3), (1, 1), (1, 1, 1, 1)), 21),
                       ((13, 12, 2, (5, 5), (2, 2), (2, 1, 2, 3)), 16), ((5, 4, 1, (3, 3), (1, 1), (1, 1, 1, 1)), 40),
                       ((9, 7, 4, (1, 1), (1, 1), (0, 0, 0, 0)), 8)]:
        args, out, want = window(rng, case, cout)
        native.direct(**args, threads=threads)
        yield out, want


def dense_q(dtype):
    def cases(rng, threads):
        for m, k, n in [(1, 1280, 1000), (2, 37, 5), (3, 100, 130), (1, 15, 1), (8, 16, 17)]:
            q = rng.integers(-127, 128, size=(n, k)).astype(dtype)
            scales = (rng.random(n) * 0.01).astype(np.float32)
            bias = rng.normal(size=n).astype(np.float32)
            x = rng.normal(size=(m, k)).astype(np.float32)
            y = np.full((m, n), np.nan, np.float32)
            native.dense_q(x=x, q=q, scales=scales, bias=bias, y=y, m=m, k=k, n=n, lo=0.0, hi=6.0, threads=threads)
            yield y, np.clip(x @ decode(q, scales).T + bias, 0, 6)
    return cases


def add(rng, threads):
    for shape in [(2, 7, 7, 40), (1, 3), (5, 13, 11, 3), (70000,)]:
        a, b = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
        y = np.full_like(a, np.nan)
        native.add(a=a, b=b, y=y, lo=0.0, hi=1.5, threads=threads)
        yield y, np.clip(a + b, 0.0, 1.5)
        want = a + b
        native.add(a=a, b=b, y=a, threads=threads)  # in place
        yield a, want


def mean_pool(rng, threads):
    for n, hw, c in [(2, 49, 40), (1, 1, 3), (3, 5, 1280), (1, 17, 13)]:
        x = rng.normal(size=(n, hw, c)).astype(np.float32)
        y = np.full((n, c), np.nan, np.float32)
        native.mean_pool(x=x, y=y, images=n, hw=hw, c=c, threads=threads)
        yield y, x.mean(axis=1)


def scale(rng, threads):
    for n, hw, c in [(1, 196, 672), (2, 5, 13), (1, 1, 1), (3, 49, 40)]:
        x = rng.normal(size=(n, hw, c)).astype(np.float32)
        s = rng.random(size=(n, c)).astype(np.float32)
        y = np.full_like(x, np.nan)
        native.scale(x=x, s=s, y=y, images=n, hw=hw, c=c, threads=threads)
        yield y, x * s[:, None, :]
        want = x * s[:, None, :]
        native.scale(x=x, s=s, y=x, images=n, hw=hw, c=c, threads=threads)  # in place
        yield x, want


def bias_act(rng, threads):
    for rows, n in [(1000, 77), (3, 8), (1, 1), (40, 1300)]:
        y = rng.normal(size=(rows, n)).astype(np.float32) * 5
        bias = rng.normal(size=n).astype(np.float32)
        want = np.clip(y + bias, 0.0, 6.0)
        native.bias_act(y=y, n=n, bias=bias, lo=0.0, hi=6.0, threads=threads)
        yield y, want
        want = np.clip(y, -1.0, 1.0)
        native.bias_act(y=y, n=n, lo=-1.0, hi=1.0, threads=threads)
        yield y, want
    # every curve, over the range where each changes, and far past it
    for curve, name in enumerate(CURVES):
        for rows, n in [(37, 61), (1, 3)]:
            y = (rng.normal(size=(rows, n)) * 6).astype(np.float32)
            y[0, 0], y[-1, -1] = -120.0, 95.0
            bias = rng.normal(size=n).astype(np.float32)
            want = CURVE_REFERENCE[name](y.astype(np.float64) + bias)
            native.bias_act(y=y, n=n, bias=bias, curve=curve, threads=threads)
            yield y, want


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _hardsigmoid(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


#: the curves in float64, exactly (GELU with math.erf): graph.CURVES's names
CURVE_REFERENCE = {
    "sigmoid": _sigmoid, "hardsigmoid": _hardsigmoid, "hardswish": lambda x: x * _hardsigmoid(x),
    "silu": lambda x: x * _sigmoid(x), "gelu": lambda x: x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0))) / 2.0,
}


def gemm(rng, threads):
    if not cpu_kernels.native_gemm():
        pytest.skip("numpy's BLAS functions were not found")
    for m, k, n in [(1, 7, 3), (1, 300, 1000), (49, 192, 1152), (5, 7, 3), (300, 24, 144), (2, 1, 130)]:
        a, b = rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(k, n)).astype(np.float32)
        bias = rng.normal(size=n).astype(np.float32)
        y = np.full((m, n), np.nan, np.float32)
        native.gemm(a=a, b=b, y=y, m=m, k=k, n=n, bias=bias, lo=0.0, hi=6.0, threads=threads)
        yield y, np.clip(a @ b + bias, 0, 6)


#: op (as the registry names it) -> cases(rng, threads): yields (got, want)
CASES = {
    "depthwise": depthwise,
    "direct": direct,
    "dense_q8": dense_q(np.int8),
    "dense_q16": dense_q(np.int16),
    "add": add,
    "mean_pool": mean_pool,
    "scale": scale,
    "bias_act": bias_act,
    "gemm": gemm,
    "f32_gemm": f32_gemm,
}


def built_variants():
    """(op, variant) for every variant built into the module."""
    if native is None:
        return []
    return [(op, v[0]) for op in native.ops() if op in CASES for v in native.variants(op)]


def calls(op, name):
    return next(v[4] for v in native.variants(op) if v[0] == name)


@pytest.mark.parametrize("op, name", built_variants())
def test_variant_matches_numpy(op, name):
    available = next(v[3] for v in native.variants(op) if v[0] == name)
    if not available:
        if op == "gemm":
            cpu_kernels.native_gemm()  # finds the BLAS
            available = next(v[3] for v in native.variants(op) if v[0] == name)
        if not available:
            pytest.skip(f"{name} cannot run on this CPU")
    before = calls(op, name)
    native.force(op, name)
    try:
        rng = np.random.default_rng(len(name))
        for threads in THREADS:
            for got, want in CASES[op](rng, threads):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{name}, {threads} threads")
    finally:
        native.force(op, None)
    # the cases ran on the forced variant
    assert calls(op, name) > before


def test_every_op_has_cases_and_every_variant_a_test():
    # (the eight-bit ops are compared bit for bit in test_q8_kernels.py)
    assert set(native.ops()) == set(CASES) | set(Q8_CASES)
    for op in CASES:
        variants = native.variants(op)
        assert variants and sum(v[2] for v in variants) == 1  # exactly one selected
        assert {(op, v[0]) for v in variants} <= set(built_variants())
        assert not variants[-1][1] or op == "gemm"  # the last one runs anywhere


def test_forcing_checks_its_arguments():
    with pytest.raises(ValueError, match="no op"):
        native.force("fft", None)
    with pytest.raises(ValueError, match="no variant"):
        native.force("add", "f32_add_nothing")
    with pytest.raises(ValueError, match="unknown instruction set"):
        native.limit_isa("mmx")


def test_limiting_the_instruction_sets_selects_the_portable_variants():
    try:
        native.limit_isa("scalar")
        for op in native.ops():
            chosen = [v for v in native.variants(op) if v[2]]
            assert chosen[0][1] == () and chosen[0][3], op
    finally:
        native.limit_isa("")
    best = native.variants("depthwise")[0]
    assert best[2] == best[3]  # the best variant is selected again wherever it can run


def _layer_calls(rng):
    """For every float op that takes an activation: run(curve) -> its
    output, one call of the op on fixed inputs."""
    calls = {}
    args, _, _ = window(rng, (9, 11, 40, (3, 3), (2, 2), (1, 1, 1, 1)))
    calls["depthwise"] = args
    args, _, _ = window(rng, (10, 9, 3, (3, 3), (1, 1), (1, 1, 1, 1)), cout=24)
    calls["direct"] = args
    m, k, n = 3, 50, 37
    calls["dense_q"] = dict(x=rng.normal(size=(m, k)).astype(np.float32),
                            q=rng.integers(-127, 128, size=(n, k)).astype(np.int8),
                            scales=(rng.random(n) * 0.05).astype(np.float32), bias=rng.normal(size=n).astype(np.float32),
                            y=np.zeros((m, n), np.float32), m=m, k=k, n=n)
    a = rng.normal(size=(3, 5, 7, 11)).astype(np.float32)
    calls["add"] = dict(a=a, b=rng.normal(size=a.shape).astype(np.float32), y=np.zeros_like(a))
    m, k, n = 29, 40, 35
    w = rng.normal(size=(k, n)).astype(np.float32)
    from devicenet.backends import cpu_gemm
    packed = cpu_gemm.Packed(w, rng.normal(size=n).astype(np.float32))
    calls["f32_gemm"] = packed.call(rng.normal(size=(m, k)).astype(np.float32), np.zeros((m, n), np.float32), "none")
    if cpu_kernels.native_gemm():
        calls["gemm"] = dict(a=rng.normal(size=(m, k)).astype(np.float32), b=w, y=np.zeros((m, n), np.float32),
                             m=m, k=k, n=n, bias=rng.normal(size=n).astype(np.float32))
    return calls


def _output(args):
    return next(args[key] for key in ("out", "y") if key in args)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("curve", CURVES)
def test_every_float_layer_applies_its_curve(curve, threads):
    """A layer with a curve gives the curve of its output without one, with
    every op's selected variant: the curve runs inside the layer's tasks."""
    for op, args in _layer_calls(np.random.default_rng(7)).items():
        plain = dict(args, lo=-np.inf, hi=np.inf)
        getattr(native, op)(**plain, threads=threads)
        want = CURVE_REFERENCE[curve](_output(plain).astype(np.float64))
        _output(args)[...] = np.nan
        getattr(native, op)(**dict(args, lo=-np.inf, hi=np.inf), curve=CURVES.index(curve), threads=threads)
        np.testing.assert_allclose(_output(args), want, rtol=2e-5, atol=2e-5, err_msg=f"{op} + {curve}")


def test_a_curve_out_of_range_is_refused():
    y = np.zeros((2, 3), np.float32)
    for bad in (len(CURVES), -2):
        with pytest.raises(ValueError, match="curve"):
            native.bias_act(y=y, n=3, curve=bad)
