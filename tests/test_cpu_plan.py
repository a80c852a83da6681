"""The CPU backend's planned kernels and arena against its plain op table."""

import numpy as np
import pytest

from devicenet import format as dnet, integer
from devicenet.features import truncate
from devicenet.backends import cpu_kernels
from devicenet.backends.base import Backend, is_depthwise, last_uses, plan_buffers
from devicenet.backends.cpu import CPUBackend
from devicenet.convert.builder import Builder
from differential import INTEGER_RTOL, reference


def plain(backend, x):
    """The same backend run node by node through the OPS table."""
    return Backend.run(backend, x)


def conv_net():
    """Every planned conv path: depthwise (strides 1, 2, uneven pads),
    grouped, strided im2col, 1x1, a residual add, flatten and dense."""
    rng = np.random.default_rng(3)
    b = Builder([1, 19, 17, 6])

    def w(*shape):
        return rng.normal(size=shape).astype(np.float32) * 0.3

    x = b.add("conv", b.input_name, {"kernel": [3, 3], "stride": [2, 2], "pads": [1, 1, 1, 1],
                                     "activation": "relu6"}, params={"weight": w(8, 3, 3, 6), "bias": w(8)})
    d = b.add("conv", x, {"kernel": [5, 5], "pads": [2, 1, 2, 3], "groups": 8, "activation": "relu"},
              params={"weight": w(8, 5, 5, 1), "bias": w(8)})
    e = b.add("conv", d, {"kernel": [1, 1], "activation": "relu6"}, params={"weight": w(8, 1, 1, 8), "bias": w(8)})
    d = b.add("conv", e, {"kernel": [3, 3], "stride": [2, 2], "pads": [0, 1, 1, 0], "groups": 8},
              params={"weight": w(8, 3, 3, 1)})
    g = b.add("conv", d, {"kernel": [3, 3], "pads": [1, 1, 1, 1], "groups": 2, "activation": "relu"},
              params={"weight": w(8, 3, 3, 4), "bias": w(8)})
    p = b.add("conv", g, {"kernel": [1, 1]}, params={"weight": w(8, 1, 1, 8), "bias": w(8)})
    s = b.add("add", [p, d], {"activation": "relu"})
    f = b.add("flatten", s, {})
    b.add("dense", f, {"activation": "relu"}, params={"weight": w(5, b.shapes[f][1]), "bias": w(5)})
    return b.graph({"name": "t"}, encodings={})  # all float32


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("kernels", ["native", "numpy", "numpy, fused"])
def test_planned_run_matches_op_table(threads, batch, kernels):
    if kernels == "native" and cpu_kernels.NATIVE is None:
        pytest.skip("the compiled kernels are not built")
    g = conv_net()
    be = CPUBackend(g, threads=threads, native=kernels == "native")
    assert be.kernels == kernels.split(",")[0]
    # without the compiled kernels, a 1x1 convolution may be fused into the depthwise after it
    be.FUSE_BYTES = 0 if "fused" in kernels else 1 << 40
    x = np.random.default_rng(batch).normal(size=(batch,) + g.input_shape[1:]).astype(np.float32)
    want = plain(be, x)
    for _ in range(2):  # the second run reuses the arena
        got = be.run(x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("native", [True, False])
def test_backend_says_which_variant_ran_each_op(native):
    if native and cpu_kernels.NATIVE is None:
        pytest.skip("the compiled kernels are not built")
    g = conv_net()
    be = CPUBackend(g, threads=2, native=native)
    assert be.variants() == {}  # no plan yet
    be.run(np.ones((1,) + g.input_shape[1:], np.float32))
    ran = be.variants()
    # GEMMs: devicenet's own (f32_gemm) or through numpy's BLAS (gemm)
    assert {"depthwise", "add"} <= set(ran) and {"gemm", "f32_gemm"} & set(ran)
    if not native:
        assert set(ran.values()) == {"numpy"}
        return
    lib = cpu_kernels.NATIVE
    for op, name in ran.items():
        if op != "gemm" or cpu_kernels.native_gemm():
            assert [v[0] for v in lib.variants(op) if v[2]] == [name]
    depthwise = next(n.name for n in g.nodes if n.attrs.get("groups", 1) > 2)
    assert be.variant_of(depthwise) == ran["depthwise"] and be.variant_of("no such node") is None


def test_plan_is_made_once_per_input_shape():
    g = conv_net()
    be = CPUBackend(g)
    x = np.ones((1,) + g.input_shape[1:], np.float32)
    assert be.prepare(x.shape) is True
    plan = be._plans[x.shape]
    be.run(x)
    assert be.prepare(x.shape) is False and be._plans[x.shape] is plan and len(be._plans) == 1


def test_output_is_not_overwritten_by_the_next_run():
    g = conv_net()
    be = CPUBackend(g)
    x = np.ones((1,) + g.input_shape[1:], np.float32)
    first = be.run(x)
    kept = first.copy()
    be.run(-x)
    np.testing.assert_array_equal(first, kept)


def test_output_viewing_a_planned_buffer_is_not_overwritten(shipped_model):
    # Cut at "features" (flatten, a view of the planned global pool's output).
    from devicenet.features import truncate
    g = truncate(dnet.load(shipped_model), "features")
    be = CPUBackend(g, threads=2)
    rng = np.random.default_rng(4)
    x1, x2 = (rng.normal(size=(1, 224, 224, 3)).astype(np.float32) for _ in range(2))
    first = be.run(x1)
    kept = first.copy()
    be.run(x2)
    np.testing.assert_array_equal(first, kept)


def shipped(path, arithmetic):
    """The shipped model as it is (``integer``: its integer layers too) or
    with its integer plan set aside (``float``)."""
    g = dnet.load(path)
    return g if arithmetic == "integer" else integer.float_arithmetic(g)


def matches_reference(got, g, x, be):
    """``got`` is the reference's output: to float rounding for float
    arithmetic.  For integer layers: every one ran on a compiled eight-bit
    kernel where the build has them, ``got`` is within the few steps that
    values on a step's edge may land apart (differential.INTEGER_RTOL) and
    well closer to the integer reference than to the same file in float
    arithmetic, with the same top class."""
    want = reference(g, x)
    if not g.meta.get("integer"):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        return
    names = g.meta["integer"]["nodes"]
    assert names
    if cpu_kernels.NATIVE is not None:
        ran = {n: be.variant_of(n) for n in names}
        assert all(v and v.startswith("q8_") for v in ran.values()), ran
    scale = np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= INTEGER_RTOL * scale, err / scale
    assert err < 0.75 * np.abs(got - reference(integer.float_arithmetic(g), x)).max()
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_shipped_models_integer_layers_compute_their_exact_integers(shipped_model):
    """Each integer layer of the shipped model that reads float values
    (every one but the head), given the input the backend computes for it,
    gives the output of its exact numpy form (integer.Q8Node) to float
    rounding: so the integer layers are exact in place, on the model's own
    shapes and values, and only the float layers before them differ
    between paths (which moves values on a step's edge)."""
    g = dnet.load(shipped_model)
    names = set(g.meta["integer"]["nodes"])
    _, qparams = integer.spec_of(g.meta)
    made_by = {n.outputs[0]: n for n in g.nodes}
    x = np.random.default_rng(2).normal(size=(1, 224, 224, 3)).astype(np.float32)
    checked = []
    for node in g.nodes:
        if node.name not in names or any(made_by[t].name in names for t in node.inputs if t in made_by):
            continue
        ins = [CPUBackend(truncate(g, t), threads=2).run(x) for t in node.inputs]
        part = truncate(g, node.outputs[0])
        got = CPUBackend(part, threads=2).run(x)
        exact = integer.lower(part, part.shapes(1))[node.name]
        want = exact.run([integer.entry(v, "u8", qparams[t]) for v, t in zip(ins, node.inputs)])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max(), err_msg=node.name)
        checked.append(node.name)
    assert len(checked) >= len(names) - 1, checked


@pytest.mark.parametrize("arithmetic", ["integer", "float"])
def test_shipped_model_planned_matches_op_table(shipped_model, arithmetic):
    g = shipped(shipped_model, arithmetic)
    be = CPUBackend(g, threads=2)
    x = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype(np.float32)
    profile = []
    got = be.run(x, profile=profile)
    matches_reference(got, g, x, be)
    assert [p[0].name for p in profile] == [n.name for n in g.nodes]


@pytest.mark.parametrize("arithmetic", ["integer", "float"])
def test_compiled_program_matches_step_by_step(shipped_model, arithmetic):
    """The run as one compiled program (stem to classifier, through the
    flatten between them) gives what the same kernels give step by step (a
    profiled run) and what the op table gives."""
    if cpu_kernels.NATIVE is None:
        pytest.skip("the compiled kernels are not built")
    g = shipped(shipped_model, arithmetic)
    be = CPUBackend(g, threads=2)
    x = np.random.default_rng(5).normal(size=(2, 224, 224, 3)).astype(np.float32)
    by_program = be.run(x)
    steps, programs, _ = be._plans[x.shape]
    assert [(p.first, p.last) for p in programs.values()] == [(0, len(steps) - 1)]
    # what the caller gets is its own: the next run writes the program's buffers again
    kept = by_program.copy()
    be.run(x[::-1].copy())
    np.testing.assert_array_equal(by_program, kept)
    np.testing.assert_allclose(by_program, be.run(x, profile=[]), rtol=1e-5, atol=1e-5)
    matches_reference(by_program, g, x, be)


def test_alexnet_shape_planned_and_streamed_match():
    nets = pytest.importorskip("devicenet.nets")
    g = nets.alexnet(width=0.25, size=67, classes=10)
    x = np.random.default_rng(1).normal(size=(1, 67, 67, 3)).astype(np.float32)
    want = plain(CPUBackend(g), x)
    np.testing.assert_allclose(CPUBackend(g).run(x), want, rtol=1e-4, atol=1e-4)
    streamed = CPUBackend(g, residency="streamed")
    streamed.STREAM_CHUNK = 1000  # force several blocks per layer
    np.testing.assert_allclose(streamed.run(x), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("groups, channels, weight_shape, want", [
    (8, 8, (8, 3, 3, 1), True),     # one filter per channel
    (1, 1, (1, 3, 3, 1), True),     # a single channel is its own group
    (4, 8, (4, 3, 3, 2), False),    # grouped, two channels per group
    (8, 8, (16, 3, 3, 1), False),   # a channel multiplier of two
    (1, 8, (8, 1, 1, 8), False),    # ordinary convolution
])
def test_is_depthwise(groups, channels, weight_shape, want):
    assert is_depthwise(groups, channels, weight_shape) is want


@pytest.mark.parametrize("own_ends", [False, True])
def test_shared_buffer_plan_never_gives_live_values_one_buffer(own_ends, shipped_model):
    """The planner the CPU and OpenCL backends share: two values whose
    lives overlap never share a buffer, views share their root's, and every
    buffer is big enough."""
    for g in (conv_net(), dnet.load(shipped_model)):
        shapes = g.shapes(2)
        aliased = {i for i, node in enumerate(g.nodes) if node.op == "flatten"}
        plan = plan_buffers(g, shapes, lambda i: i in aliased, own_ends=own_ends)
        born = {g.input_name: -1}
        born.update((node.outputs[0], i) for i, node in enumerate(g.nodes))
        root = {}
        for i in sorted(aliased):
            node = g.nodes[i]
            root[node.outputs[0]] = root.get(node.inputs[0], node.inputs[0])
        ends = last_uses(g.nodes)
        for name, r in root.items():
            ends[r] = max(ends.get(r, -1), ends.get(name, -1))
        ends[root.get(g.output_name, g.output_name)] = len(g.nodes)  # kept by the caller
        owners = [n for n in born if n not in root and n in plan.where]
        assert (g.input_name in plan.where) == own_ends and (g.output_name in plan.where) == own_ends
        for a in owners:
            assert plan.sizes[plan.where[a]] >= np.prod(shapes[a])
            for b in owners:
                overlap = born[a] <= ends.get(b, born[b]) and born[b] <= ends.get(a, born[a])
                assert a == b or not overlap or plan.where[a] != plan.where[b], (a, b)
        for name, r in root.items():
            assert plan.where.get(name) == plan.where.get(r)
