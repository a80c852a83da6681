"""The compiled kernels (devicenet/backends/native/) against numpy: every
kernel over awkward shapes, thread counts, bad arguments, and the thread
team under concurrent callers and fork()."""

import multiprocessing
import os
import sys
import threading

import numpy as np
import pytest

from devicenet.backends import cpu_kernels
from devicenet.backends.cpu import conv

native = cpu_kernels.NATIVE
pytestmark = pytest.mark.skipif(native is None, reason="the compiled kernels are not built")
INF = float("inf")


def test_built_where_ci_requires_it():
    # CI sets DEVICENET_REQUIRE_NATIVE so that a silently failed build of
    # the optional extension cannot pass for a numpy-only run.
    if os.environ.get("DEVICENET_REQUIRE_NATIVE") != "1":
        pytest.skip("DEVICENET_REQUIRE_NATIVE is not set")
    assert native is not None and cpu_kernels.native_gemm()


def window_case(rng, h, w, c, k, stride, pads, cout=None):
    x = rng.normal(size=(1, h, w, c)).astype(np.float32)
    if cout is None:
        weight = rng.normal(size=(c, k[0], k[1], 1)).astype(np.float32)
        attrs = {"kernel": list(k), "stride": list(stride), "pads": list(pads), "groups": c}
    else:
        weight = rng.normal(size=(cout, k[0], k[1], c)).astype(np.float32)
        attrs = {"kernel": list(k), "stride": list(stride), "pads": list(pads)}
    bias = rng.normal(size=weight.shape[0]).astype(np.float32)
    return x, weight, bias, attrs


def geometry(h, w, c, oh, ow, k, stride, pads, row0=0, rows=None, **more):
    """The window kernels' geometry arguments."""
    return dict(h=h, w=w, c=c, row0=row0, rows=h if rows is None else rows, oh=oh, ow=ow, kh=k[0], kw=k[1],
                sh=stride[0], sw=stride[1], pad_top=pads[0], pad_left=pads[1], **more)


# (H, W, C, kernel, stride, pads top/left/bottom/right): channels that are
# and are not multiples of 16, images narrower than the kernel, uneven pads
WINDOWS = [
    (12, 11, 32, (3, 3), (1, 1), (1, 1, 1, 1)),
    (13, 17, 48, (3, 3), (2, 2), (0, 0, 1, 1)),
    (9, 10, 21, (5, 5), (1, 1), (2, 2, 2, 2)),
    (15, 14, 40, (5, 5), (2, 2), (1, 2, 2, 1)),
    (7, 7, 200, (5, 5), (1, 1), (2, 2, 2, 2)),
    (3, 2, 17, (3, 3), (1, 1), (1, 1, 1, 1)),
    (10, 9, 33, (3, 2), (1, 3), (0, 1, 2, 0)),
    (6, 6, 5, (7, 7), (1, 1), (3, 3, 3, 3)),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", WINDOWS)
@pytest.mark.parametrize("act", [(-INF, INF), (0.0, 6.0)])
def test_depthwise_matches_numpy(case, threads, act):
    h, w, c, k, stride, pads = case
    x, weight, bias, attrs = window_case(np.random.default_rng(h * w + c), h, w, c, k, stride, pads)
    want = np.clip(conv(x, attrs, weight, bias)[0], *act)
    oh, ow = want.shape[:2]
    out = np.full((oh, ow, c), np.nan, np.float32)
    wt = np.ascontiguousarray(weight[:, :, :, 0].transpose(1, 2, 0))
    native.depthwise(x=x[0], weight=wt, bias=bias, out=out, **geometry(h, w, c, oh, ow, k, stride, pads),
                     r0=0, r1=oh, lo=act[0], hi=act[1], threads=threads)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_depthwise_row_range_from_a_band_of_input_rows():
    """Rows [r0, r1) computed from only the input rows they read, held in a
    buffer that starts at row0: the rest of the output is untouched."""
    h, w, c, k, stride, pads = 20, 9, 24, (5, 5), (2, 2), (2, 2, 2, 2)
    x, weight, bias, attrs = window_case(np.random.default_rng(0), h, w, c, k, stride, pads)
    want = conv(x, attrs, weight, bias)[0]
    oh, ow = want.shape[:2]
    wt = np.ascontiguousarray(weight[:, :, :, 0].transpose(1, 2, 0))
    r0, r1 = 3, 7
    first, last = r0 * 2 - 2, (r1 - 1) * 2 - 2 + 5
    band = np.ascontiguousarray(x[0, first:last])
    out = np.full((oh, ow, c), 7.0, np.float32)
    g = geometry(h, w, c, oh, ow, k, stride, pads, row0=first, rows=last - first)
    native.depthwise(x=band, weight=wt, bias=bias, out=out, **g, r0=r0, r1=r1, threads=2)
    np.testing.assert_allclose(out[r0:r1], want[r0:r1], rtol=1e-5, atol=1e-5)
    assert np.all(out[:r0] == 7.0) and np.all(out[r1:] == 7.0)
    # one row fewer than they read is refused, not read out of bounds
    with pytest.raises(ValueError, match="out of range"):
        native.depthwise(x=band[:-1], weight=wt, bias=bias, out=out, **dict(g, rows=last - first - 1),
                         r0=r0, r1=r1)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", [
    (16, 16, 3, 32, (3, 3), (2, 2), (0, 0, 1, 1)),
    (11, 9, 3, 21, (3, 3), (1, 1), (1, 1, 1, 1)),
    (13, 12, 2, 16, (5, 5), (2, 2), (2, 1, 2, 3)),
    (5, 4, 1, 40, (3, 3), (1, 1), (1, 1, 1, 1)),
])
def test_direct_matches_numpy(case, threads):
    h, w, c, cout, k, stride, pads = case
    x, weight, bias, attrs = window_case(np.random.default_rng(cout), h, w, c, k, stride, pads, cout)
    want = np.clip(conv(x, attrs, weight, bias)[0], 0.0, 6.0)
    oh, ow = want.shape[:2]
    out = np.full((oh, ow, cout), np.nan, np.float32)
    wt = np.ascontiguousarray(weight.transpose(1, 2, 3, 0))
    native.direct(x=x[0], weight=wt, bias=bias, out=out, **geometry(h, w, c, oh, ow, k, stride, pads, cout=cout),
                  r0=0, r1=oh, lo=0.0, hi=6.0, threads=threads)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("m, k, n", [(1, 7, 3), (1, 300, 1000), (49, 192, 1152), (5, 7, 3),
                                     (300, 24, 144), (2, 1, 130)])
def test_gemm_with_bias_and_clip_matches_numpy(m, k, n, threads):
    if not cpu_kernels.native_gemm():
        pytest.skip("numpy's BLAS functions were not found")
    rng = np.random.default_rng(m + k + n)
    a, b = rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(k, n)).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32)
    y = np.full((m, n), np.nan, np.float32)
    native.gemm(a=a, b=b, y=y, m=m, k=k, n=n, bias=bias, lo=0.0, hi=6.0, threads=threads)
    np.testing.assert_allclose(y, np.clip(a @ b + bias, 0, 6), rtol=1e-4, atol=1e-4)
    native.gemm(a=a, b=b, y=y, m=m, k=k, n=n, threads=threads)
    np.testing.assert_allclose(y, a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("m, k, n", [(1, 1280, 1000), (2, 37, 5), (3, 100, 130), (1, 15, 1)])
def test_dense_on_stored_integers_matches_decoded_weights(m, k, n, threads, dtype):
    from devicenet.quant import decode
    rng = np.random.default_rng(k)
    q = rng.integers(-127, 128, size=(n, k)).astype(dtype)
    scales = (rng.random(n) * 0.01).astype(np.float32)
    scales[0] = 0.0  # a channel of zeros
    bias = rng.normal(size=n).astype(np.float32)
    x = rng.normal(size=(m, k)).astype(np.float32)
    y = np.full((m, n), np.nan, np.float32)
    args = dict(x=x, q=q, scales=scales, bias=bias, y=y, m=m, k=k, n=n, lo=0.0, hi=6.0)
    native.dense_q(**args, threads=threads)
    want = np.clip(x @ decode(q, scales).T + bias, 0, 6)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(TypeError, match="int8 or int16"):
        native.dense_q(**dict(args, q=q.astype(np.int32)))
    with pytest.raises(ValueError, match="holds"):
        native.dense_q(**dict(args, q=q[:-1] if n > 1 else q[:, :-1]))


@pytest.mark.parametrize("threads", [1, 2])
def test_bias_act_matches_numpy(threads):
    rng = np.random.default_rng(5)
    y = rng.normal(size=(1000, 77)).astype(np.float32) * 5
    bias = rng.normal(size=77).astype(np.float32)
    want = np.clip(y + bias, 0.0, 6.0)
    native.bias_act(y=y, n=77, bias=bias, lo=0.0, hi=6.0, threads=threads)
    np.testing.assert_array_equal(y, want)


def test_bad_arguments_raise_instead_of_reading_out_of_bounds():
    x = np.zeros((4, 4, 8), np.float32)
    wt = np.zeros((3, 3, 8), np.float32)
    out = np.zeros((4, 4, 8), np.float32)
    good = dict(x=x, weight=wt, out=out, **geometry(4, 4, 8, 4, 4, (3, 3), (1, 1), (1, 1)), r0=0, r1=4)
    native.depthwise(**good)
    with pytest.raises(ValueError, match="holds"):  # x too small for the geometry
        native.depthwise(**dict(good, x=x[:2]))
    with pytest.raises(ValueError, match="geometry"):  # rows past the output
        native.depthwise(**dict(good, r1=5))
    # sizes whose products overflow (the largest that fits the platform's
    # Py_ssize_t, so that the kernel's own check is what is tested on 32
    # and 64 bits alike)
    for huge in (sys.maxsize, sys.maxsize // 4, int(sys.maxsize ** 0.5) + 1):
        with pytest.raises(ValueError, match="geometry"):
            native.depthwise(**dict(good, h=huge, w=huge, c=huge))
        with pytest.raises(ValueError, match="geometry"):
            native.depthwise(**dict(good, kh=huge, kw=huge))
    with pytest.raises(OverflowError):  # past Py_ssize_t: refused before the kernel sees it
        native.depthwise(**dict(good, h=sys.maxsize + 1))
    with pytest.raises(TypeError, match="float32"):
        native.depthwise(**dict(good, x=x.astype(np.float64)))
    with pytest.raises(ValueError, match="holds"):
        native.depthwise(**dict(good, bias=np.zeros(3, np.float32)))
    with pytest.raises((TypeError, ValueError, BufferError)):  # not writable
        native.depthwise(**dict(good, out=np.zeros((4, 4, 8), np.float32)[::-1]))
    with pytest.raises(TypeError, match="missing argument r1"):
        native.depthwise(**{k: v for k, v in good.items() if k != "r1"})
    with pytest.raises(TypeError, match="unexpected argument 'stride'"):
        native.depthwise(**good, stride=1)
    with pytest.raises(TypeError, match="keyword arguments only"):
        native.depthwise(x, **{k: v for k, v in good.items() if k != "x"})
    with pytest.raises(ValueError, match="whole rows"):
        native.bias_act(y=np.zeros(10, np.float32), n=3, lo=0.0, hi=6.0)
    if cpu_kernels.native_gemm():
        with pytest.raises(ValueError, match="holds"):
            native.gemm(a=np.zeros((2, 3), np.float32), b=np.zeros((3, 4), np.float32),
                        y=np.zeros((2, 3), np.float32), m=2, k=3, n=4)


def test_concurrent_callers_share_the_team_safely():
    """Threads calling at once: one gets the team, the others run alone;
    every result is the single-threaded one."""
    h, w, c, k, stride, pads = 28, 28, 96, (5, 5), (1, 1), (2, 2, 2, 2)
    x, weight, bias, attrs = window_case(np.random.default_rng(9), h, w, c, k, stride, pads)
    wt = np.ascontiguousarray(weight[:, :, :, 0].transpose(1, 2, 0))
    want = np.empty((h, w, c), np.float32)
    args = dict(x=x[0], weight=wt, bias=bias, **geometry(h, w, c, h, w, k, stride, pads), r0=0, r1=h, lo=0.0, hi=6.0)
    native.depthwise(**args, out=want, threads=1)
    failures = []

    def work():
        out = np.empty_like(want)
        for _ in range(30):
            out[...] = np.nan
            native.depthwise(**args, out=out, threads=2)
            if not np.array_equal(out, want):
                failures.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def _depthwise_in_child(queue):
    x = np.ones((8, 8, 32), np.float32)
    wt = np.ones((3, 3, 32), np.float32)
    out = np.zeros((8, 8, 32), np.float32)
    native.depthwise(x=x, weight=wt, out=out, **geometry(8, 8, 32, 8, 8, (3, 3), (1, 1), (1, 1)), r0=0, r1=8,
                     threads=2)
    queue.put(float(out[4, 4, 0]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork()")
def test_team_works_in_a_forked_child():
    # start the team in this process, then fork: the child has none of its threads
    x = np.ones((8, 8, 32), np.float32)
    native.depthwise(x=x, weight=np.ones((3, 3, 32), np.float32), out=np.zeros_like(x),
                     **geometry(8, 8, 32, 8, 8, (3, 3), (1, 1), (1, 1)), r0=0, r1=8, threads=2)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_depthwise_in_child, args=(queue,))
    child.start()
    child.join(30)
    assert child.exitcode == 0, "the child hung or crashed"
    assert queue.get(timeout=5) == 9.0


def test_a_busy_decoder_thread_takes_one_thread_from_the_kernels():
    from devicenet.threads import busy_threads, working_alongside
    team = cpu_kernels.Threads(3)
    assert team.n == 3 and busy_threads() == 0
    with working_alongside():
        assert team.n == 2
        with working_alongside():
            assert team.n == 1 and cpu_kernels.Threads(1).n == 1  # never below one
    assert team.n == 3 and busy_threads() == 0


@pytest.mark.parametrize("threads", [1, 2])
def test_add_and_mean_pool_match_numpy(threads):
    rng = np.random.default_rng(8)
    a, b = (rng.normal(size=(2, 7, 7, 40)).astype(np.float32) for _ in range(2))
    y = np.empty_like(a)
    native.add(a=a, b=b, y=y, lo=0.0, threads=threads)
    np.testing.assert_array_equal(y, np.maximum(a + b, 0))
    want = a + b
    native.add(a=a, b=b, y=a, threads=threads)  # in place
    np.testing.assert_array_equal(a, want)
    pooled = np.empty((2, 40), np.float32)
    native.mean_pool(x=b, y=pooled, images=2, hw=49, c=40)
    np.testing.assert_allclose(pooled, b.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="holds"):
        native.mean_pool(x=b[:1], y=pooled, images=2, hw=49, c=40)


def test_program_runs_its_calls_in_order_and_checks_them_first():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(6, 6, 16)).astype(np.float32)
    wt = rng.normal(size=(3, 3, 16)).astype(np.float32)
    mid, out = np.empty_like(x), np.empty_like(x)
    dw = dict(x=x, weight=wt, **geometry(6, 6, 16, 6, 6, (3, 3), (1, 1), (1, 1)), r0=0, r1=6, lo=0.0, hi=6.0)
    program = native.program([
        ("depthwise", dict(dw, out=mid)),
        ("add", dict(a=mid, b=x, y=out)),
    ])
    native.run_program(program, 2)
    want_mid = np.empty_like(x)
    native.depthwise(**dw, out=want_mid)
    np.testing.assert_array_equal(out, want_mid + x)
    with pytest.raises(ValueError, match="no kernel"):
        native.program([("fft", {})])
    with pytest.raises(ValueError, match="holds"):  # a bad call is refused when the program is made
        native.program([("add", dict(a=mid, b=x, y=out)), ("add", dict(a=mid[:2], b=x, y=out))])
    with pytest.raises(ValueError, match="PyCapsule"):
        native.run_program("not a program")
    # each call's seconds, for a profile; the buffer is checked
    times = np.full(2, -1.0)
    native.run_program(program, 1, times)
    assert np.all(times > 0) and np.all(times < 10)
    np.testing.assert_array_equal(out, want_mid + x)
    for bad in (np.zeros(1), np.zeros(2, np.float32), np.zeros(2)[::-1].copy()[:1]):
        with pytest.raises(ValueError, match="times"):
            native.run_program(program, 1, bad)
