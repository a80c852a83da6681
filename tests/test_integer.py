"""Integer layers: the plan chosen by measurement, stored in the file, and
run by every CPU implementation with the same integers."""

import contextlib

import numpy as np
import pytest

from devicenet import calibrate, calibrate_int, format as dnet, integer
from devicenet.backends import cpu, q8_ref
from devicenet.backends.cpu import CPUBackend
from devicenet.backends.cpu_kernels import NATIVE
from devicenet.convert.builder import Builder
from devicenet.errors import DeviceNetError

SPEC = {"resize": 36, "crop": 32, "mean": [127.5] * 3, "std": [64.0] * 3}


def block_net(seed=0):
    """An inverted-residual network in miniature: every kind of integer
    layer (im2col, depthwise, 1x1 GEMM, residual add, mean pool) and a float
    classifier."""
    rng = np.random.default_rng(seed)
    b = Builder([1, 32, 32, 3])

    def conv(x, name, shape, **attrs):
        cout = shape[0]
        return b.add("conv", x, attrs, {"weight": rng.normal(0, 0.4, shape) / np.sqrt(np.prod(shape[1:]) / 4),
                                        "bias": rng.normal(0, 0.1, cout)}, name=name)
    x = conv("input", "stem", (8, 3, 3, 3), kernel=[3, 3], stride=[2, 2], pads=[1] * 4, activation="relu6")
    y = conv(x, "expand", (24, 1, 1, 8), kernel=[1, 1], activation="relu6")
    y = conv(y, "depthwise", (24, 3, 3, 1), kernel=[3, 3], pads=[1] * 4, groups=24, activation="relu6")
    y = conv(y, "project", (8, 1, 1, 24), kernel=[1, 1])
    x = b.add("add", [x, y], name="residual")
    x = conv(x, "head", (32, 1, 1, 8), kernel=[1, 1], activation="relu6")
    x = b.add("global_avgpool", x, name="pool")
    x = b.add("flatten", x, name="features")
    b.add("dense", x, {}, {"weight": rng.normal(0, 0.3, (10, 32)), "bias": rng.normal(0, 0.1, 10)},
          name="classifier")
    return b


@contextlib.contextmanager
def free_conversions():
    """Plans that count no cost at integer regions' borders, and convolutions
    made of patches as faster in integers (a network this small would
    otherwise stay all float, and these tests want every kind of layer)."""
    planner = calibrate_int.IntegerPlanner
    saved = planner.CONVERT, planner.COST
    planner.CONVERT = (0, 0)
    planner.COST = {**planner.COST, "im2col": {"int8": 0.9}}
    try:
        yield
    finally:
        planner.CONVERT, planner.COST = saved


@pytest.fixture(scope="module")
def integer_model(tmp_path_factory):
    """(float Graph, integer Graph, report) of block_net, planned with a
    budget that keeps every layer in integers."""
    b = block_net()
    meta = {"preprocess": SPEC, "labels": []}
    plain = b.graph({**meta}, {t: "float32" for t in b.params})
    with free_conversions():
        encodings, clips, report = calibrate.choose_encodings(b, meta, arithmetic="auto", kl_budget=10.0)
    meta["integer"], qmax = report.pop("integer"), report.pop("qmax")
    meta["quantization"] = report
    path = tmp_path_factory.mktemp("integer") / "net.dnet"
    dnet.write(b.graph(meta, encodings, clips, qmax), path)
    return plain, dnet.load(path), meta["integer"]


def batch(seed=1, n=3):
    return np.random.default_rng(seed).normal(0, 1, (n, 32, 32, 3)).astype(np.float32)


def test_zero_is_exact_and_ranges_cover_their_values():
    for lo, hi in [(0.0, 6.0), (-3.2, 1.7), (0.5, 2.0), (-4.0, -1.0)]:
        q = integer.QParams.from_range(lo, hi)
        assert q8_ref.dequantize(np.uint8(q.zero_point), q.scale, q.zero_point) == 0.0
        v = np.linspace(lo, hi, 101, dtype=np.float32)
        back = q8_ref.dequantize(q8_ref.quantize(v, q.scale, q.zero_point), q.scale, q.zero_point)
        assert np.abs(back - v).max() <= q.scale * 0.5001


def test_requantisation_rounds_half_to_even_and_clamps():
    real = np.array([0.9999, 0.5, 0.3, 1e-3, 2.5, 2.5e-7])
    f = q8_ref.requant_scale(real)
    assert f.dtype == np.float32
    np.testing.assert_allclose(f, real, rtol=6e-8)
    half = np.float32(0.5)
    # 1.5 -> 2, 2.5 -> 2, -1.5 -> -2, -2.5 -> -2 (half to even), then the zero point
    got = q8_ref.requantize(np.array([3, 5, -3, -5, 0]), half, zero_point=128)
    np.testing.assert_array_equal(got, [130, 130, 126, 126, 128])
    # the clamp of the activation, and of the uint8 range
    got = q8_ref.requantize(np.array([40, -40, 1000, -1000]), half, zero_point=10, qmin=10, qmax=25)
    np.testing.assert_array_equal(got, [25, 10, 25, 10])
    got = q8_ref.requantize(np.array([1 << 30, -(1 << 30)]), np.float32(3.0), zero_point=0)
    np.testing.assert_array_equal(got, [255, 0])
    for bad in ([-1e-3], [np.inf], [np.nan], [1e39]):  # the last beyond float32
        with pytest.raises(ValueError):
            q8_ref.requant_scale(bad)


def test_plan_keeps_every_kind_of_layer_in_integers(integer_model):
    _, g, spec = integer_model
    assert set(spec["nodes"]) == {"stem", "expand", "depthwise", "project", "residual", "head", "pool"}
    kinds = {q.kind for q in integer.lower(g, g.shapes()).values()}
    assert kinds == {"im2col", "gemm", "depthwise", "add", "meanpool"}
    # stored GEMM weights take the whole int8 range, and the packed layers
    # run on a kernel that computes them exactly (x86's fastest only where
    # no pair of them could saturate it); the depthwise kernels multiply
    # int16 weights anyway, so a depthwise layer gets twelve bits
    for name in ("stem", "expand", "project", "head"):
        t = g.tensors[f"{name}.weight"]
        rows = np.abs(t.data.reshape(len(t.data), -1).astype(np.int32))
        assert t.encoding == "int8" and rows.max() == integer.WEIGHT_QMAX
        if NATIVE is not None:
            from devicenet.backends.cpu_q8 import PackedQ8
            rows = np.pad(rows, ((0, 0), (0, rows.shape[1] % 2)))
            wt = t.data.reshape(len(t.data), -1)
            kernel = PackedQ8(wt, scale=np.ones(len(wt), np.float32)).kernel
            assert (rows[:, 0::2] + rows[:, 1::2]).max() <= integer.PAIR_LIMIT or not kernel.endswith("c4_avx2")
    t = g.tensors["depthwise.weight"]
    assert t.encoding == "int16" and np.abs(t.data).max() == integer.DEPTHWISE_QMAX
    # and the report says what each layer stores
    layers = g.meta["quantization"]["layers"]
    assert layers["depthwise"] == "int16" and layers["expand"] == "int8"


def test_integer_network_stays_close_to_float(integer_model):
    plain, g, _ = integer_model
    x = batch()
    ref = CPUBackend(plain, native=False).run(x)
    got = CPUBackend(g, native=False).run(x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    # eight-bit activations everywhere: close, not equal
    assert np.abs(got - ref).max() <= 0.15 * np.abs(ref).max()
    assert not np.array_equal(got, ref)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 2 / 3


def test_integer_layers_match_their_exact_form(integer_model):
    """Each integer node's output equals q8_ref's integers on the same inputs."""
    _, g, spec = integer_model
    shapes = g.shapes(2)
    lowered = integer.lower(g, shapes)
    x = q8_ref.quantize(batch(2, 2), *integer.spec_of(g.meta)[1]["input"].to_json())
    stem = lowered["stem"]
    cols, (n, oh, ow) = q8_ref.im2col(x, (3, 3), (2, 2), (1, 1, 1, 1), stem.ins[0].zero_point)
    want = q8_ref.gemm(cols, stem.wt, stem.bias, stem.rscale, stem.out.zero_point, stem.qmin, stem.qmax)
    np.testing.assert_array_equal(stem.run([x]), want.reshape(n, oh, ow, -1))


@pytest.mark.skipif(NATIVE is None, reason="compiled kernels not built")
def test_compiled_and_numpy_compute_the_same_integers(integer_model):
    _, g, _ = integer_model
    # up to the float classifier, whose sums the two round in their own orders
    cut = dnet.Graph({**g.meta, "output": "features"}, g.nodes[:-1], g.tensors)
    x = batch(3, 4)
    a = CPUBackend(cut, native=True, threads=2).run(x)
    b = CPUBackend(cut, native=False, threads=1).run(x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(NATIVE is None, reason="compiled kernels not built")
def test_conversions_at_region_borders_run_inside_the_programs(integer_model):
    """A plan with float layers between integer ones: each value that
    crosses is converted by the compiled call ahead of its reader, inside
    the same program, and the answers match the numpy path's."""
    from devicenet.backends.cpu_integer import Converting
    _, g, spec = integer_model
    part = {**spec, "nodes": ["expand", "depthwise", "head"]}
    cut = dnet.Graph({**g.meta, "integer": part, "output": "features"}, g.nodes[:-1], g.tensors)
    x = batch(3, 4)
    compiled = CPUBackend(cut, native=True, threads=2)
    a = compiled.run(x)
    b = CPUBackend(cut, native=False, threads=1).run(x)
    # float layers round in their own orders, and a rounding that lands
    # elsewhere moves a uint8 by one step: close, not equal
    assert np.abs(a - b).max() <= 0.05 * np.abs(b).max()
    steps, programs, _ = compiled._plan_for(x.shape)
    inside = {i for p in programs.values() for i in range(p.first, p.last + 1)}
    borders = [i for i, s in enumerate(steps) if isinstance(s.kernel, Converting)]
    # float -> uint8 into expand and head, uint8 -> float out of depthwise and head
    assert len(borders) >= 3 and set(borders) <= inside
    assert all(s.entry is None for s in steps)


def test_file_records_version_and_integer_plan(integer_model, tmp_path):
    plain, g, spec = integer_model
    p = tmp_path / "plain.dnet"
    dnet.write(plain, p)
    assert open(p, "rb").read(8)[4:8] == bytes([1, 0, 0, 0])  # all-float files keep version 1.0
    q = tmp_path / "int.dnet"
    dnet.write(g, q)
    assert open(q, "rb").read(8)[4:8] == bytes([1, 0, 1, 0])
    assert dnet.load(q).meta["integer"]["nodes"] == spec["nodes"]


@pytest.mark.parametrize("change, message", [
    (lambda s: s["nodes"].append("nowhere"), "not in the graph"),
    (lambda s: s["activations"].pop("stem"), "no scale for"),
    (lambda s: s["activations"].__setitem__("stem", [-1.0, 3]), "scale > 0"),
    (lambda s: s["activations"].__setitem__("stem", [0.1, 300]), "zero point"),
    (lambda s: (s["nodes"].append("features"), s["activations"].__setitem__("features", [0.1, 0])),
     "does not run in integers"),
    # a factor between input and output scales beyond float32
    (lambda s: (s["activations"].__setitem__("stem", [9e29, 0]), s["activations"].__setitem__("expand", [2e-30, 0])),
     "too small"),
])
def test_malformed_integer_plans_are_refused(integer_model, tmp_path, change, message):
    _, g, spec = integer_model
    bad = {**spec, "nodes": list(spec["nodes"]), "activations": dict(spec["activations"])}
    change(bad)
    g2 = dnet.Graph({**g.meta, "integer": bad}, g.nodes, g.tensors)
    p = tmp_path / "bad.dnet"
    dnet.write(g2, p)
    with pytest.raises(DeviceNetError, match=message):
        dnet.load(p)


@pytest.mark.parametrize("tensor, data, message", [
    ("depthwise.weight", lambda d: np.where(d == d.max(), 3000, d).astype(np.int16), "within"),
    ("depthwise.weight", lambda d: np.where(d == d.max(), -32768, d).astype(np.int16), "within"),
    ("expand.weight", lambda d: d.astype(np.int16), "needs int8 weights"),
])
def test_integer_weights_beyond_what_the_kernels_take_are_refused(integer_model, tmp_path, tensor, data, message):
    from devicenet.graph import Tensor
    _, g, _ = integer_model
    t = g.tensors[tensor]
    tensors = {**g.tensors, tensor: Tensor(t.name, "int16", t.shape, data(np.asarray(t.data)), t.scales)}
    p = tmp_path / "bad.dnet"
    dnet.write(dnet.Graph(g.meta, g.nodes, tensors), p)
    with pytest.raises(DeviceNetError, match=message):
        dnet.load(p)


def test_float_arithmetic_plans_no_integer_layers():
    b = block_net()
    _, _, report = calibrate.choose_encodings(b, {"preprocess": SPEC})
    assert "integer" not in report


def test_tight_budget_sends_layers_back_to_float():
    b = block_net()
    with free_conversions():
        _, _, report = calibrate.choose_encodings(b, {"preprocess": SPEC}, arithmetic="auto", kl_budget=0.0)
        spec = report["integer"]
        loose = calibrate.choose_encodings(block_net(), {"preprocess": SPEC}, arithmetic="auto",
                                           kl_budget=10.0)[2]["integer"]
    assert len(spec["nodes"]) < len(loose["nodes"])
    assert set(spec["sensitivity"]) == set(loose["sensitivity"])


def test_layers_no_faster_in_integers_stay_float():
    """The stem's patches are made in numpy, 3.3x its float time: even with
    borders free and any budget, the plan leaves it float."""
    planner = calibrate_int.IntegerPlanner
    saved, planner.CONVERT = planner.CONVERT, (0, 0)
    try:
        spec = calibrate.choose_encodings(block_net(), {"preprocess": SPEC}, arithmetic="auto",
                                          kl_budget=10.0)[2]["integer"]
    finally:
        planner.CONVERT = saved
    assert "stem" not in spec["nodes"] and "stem" not in spec["sensitivity"]
    assert {"expand", "depthwise", "project"} <= set(spec["nodes"])


def test_regions_that_cannot_pay_for_their_conversions_stay_float():
    """Counted at their real cost, the conversions at the borders of this
    small network's integer region outweigh what its few multiply-adds
    save: the plan keeps it all float."""
    _, _, report = calibrate.choose_encodings(block_net(), {"preprocess": SPEC}, arithmetic="auto",
                                              kl_budget=10.0)
    assert report["integer"]["nodes"] == []
    assert report["integer"]["sensitivity"]  # measured all the same


def test_regions_are_the_integer_layers_joined_by_values():
    b = block_net()
    q = calibrate.Quantizer(b, calibrate.calibration_inputs(SPEC))
    planner = calibrate_int.IntegerPlanner(q, dict(b.params))
    regions = planner.islands({"stem": 64, "expand": 64, "head": 64, "pool": "int"})
    assert sorted(map(sorted, regions)) == [["expand", "stem"], ["head", "pool"]]


def test_convert_command_plans_integer_layers_only_with_auto_weights(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx_graphs import W, _model, conv, n
    from conftest import cli_runner
    from devicenet.cli import main
    rgb = _model([conv("c", "x", "t", "w", "b", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), n("Relu", ["t"], ["u"]),
                  conv("d", "u", "y", "v", "e", kernel_shape=[1, 1])],
                 {"w": W(8, 3, 3, 3), "b": W(8), "v": W(4, 8, 1, 1), "e": W(4)}, [1, 3, 16, 16])
    onnx.save(rgb, tmp_path / "m.onnx")
    r = cli_runner().invoke(main, ["convert", str(tmp_path / "m.onnx"), str(tmp_path / "a.dnet"),
                                   "--arithmetic", "auto"])
    assert r.exit_code == 1 and "--weights auto" in r.output and not (tmp_path / "a.dnet").exists()
    r = cli_runner().invoke(main, ["convert", str(tmp_path / "m.onnx"), str(tmp_path / "b.dnet"), "-q",
                                   "--weights", "auto", "--arithmetic", "auto", "--json"])
    assert r.exit_code == 0, r.output
    spec = dnet.load(tmp_path / "b.dnet").meta["integer"]
    assert "sensitivity" in spec and spec["budget_kl"] == calibrate_int.DEFAULT_KL_BUDGET


def test_gemm_weights_are_rounded_to_keep_their_outputs():
    """Each 1x1 layer's integer weights, against the same scales rounded
    to nearest: the layer's output on the calibration batch moves less,
    and each weight stays within a few steps of its (clipped) float value."""
    b = block_net()
    q = calibrate.Quantizer(b, calibrate.calibration_inputs(SPEC))
    planner = calibrate_int.IntegerPlanner(q, dict(b.params))
    gemms = [n for n in planner.candidates if planner.kind[n.name] == "gemm"]
    assert {n.name for n in gemms} == {"expand", "project", "head"}
    for node in gemms:
        w = b.params[node.params["weight"]]
        wi, scales, _, _, _ = planner.iweights[(node.name, "int8")]
        s = scales.reshape(-1, 1, 1, 1)
        clipped = np.clip(w / np.where(s > 0, s, 1), -integer.WEIGHT_QMAX, integer.WEIGHT_QMAX)
        nearest = np.rint(clipped)
        assert np.abs(wi).max() <= integer.WEIGHT_QMAX and np.abs(wi - clipped).max() <= 3
        assert not np.array_equal(wi, nearest)

        def moved(ints):
            return float((q._error(node, ints * s - w) ** 2).mean())
        assert moved(wi) < moved(nearest)


def test_the_plan_keeps_the_range_rule_that_moves_its_own_answers_least():
    """The rule is first chosen with every candidate in integers; the plan
    finally chosen keeps whichever rule moves its own answers least.  The
    divergences are offset by rule so that the two choices differ: every
    candidate in integers favours minmax (and is over budget), any smaller
    plan favours mse."""
    b = block_net()
    q = calibrate.Quantizer(b, calibrate.calibration_inputs(SPEC))
    with free_conversions():
        planner = calibrate_int.IntegerPlanner(q, dict(b.params))
        real = planner.measure

        def measure(plan, qp):
            kl, agree = real(plan, qp)
            # the rule whose (cached) parameters these are
            rule = next(r for r, params in planner._qparams.items() if params is qp)
            every = len(plan) == len(planner.candidates)
            offset = ({"minmax": 5, "percentile": 6, "mse": 7, "outputs": 8} if every
                      else {"minmax": 2, "percentile": 1, "mse": 0, "outputs": 3})
            return kl + offset[rule], agree
        planner.measure = measure
        report = planner.plan(budget=3.0)
    assert 0 < len(report["nodes"]) < len(planner.candidates)
    assert min(report["ranges"], key=lambda r: report["ranges"][r]["kl"]) == "minmax"
    assert report["rule"] == "mse" and "ranges by mse" in report["summary"]
    stored = {t: integer.QParams(*v) for t, v in report["activations"].items()}
    assert stored == {t: qp for t, qp in planner.qparams("mse").items() if t in stored}



def test_the_outputs_rule_takes_each_tensors_range_that_moves_its_readers_least():
    """The "outputs" rule gives each tensor one of the three rules' ranges:
    for a tensor that candidate convolutions read, the one whose rounding
    moves their outputs (bias and activation aside) least on the sample,
    recomputed here by the op table; for any other tensor the mse rule's."""
    b = block_net()
    q = calibrate.Quantizer(b, calibrate.calibration_inputs(SPEC))
    with free_conversions():
        planner = calibrate_int.IntegerPlanner(q, dict(b.params))
    rules = {r: planner.qparams(r) for r in calibrate_int.TENSOR_RULES}
    chosen = planner.qparams("outputs")
    assert set(chosen) == set(rules["mse"])
    read = {}
    for n in planner.candidates:
        if n.op == "conv":
            read.setdefault(n.inputs[0], []).append(n)
    assert read and set(read) < set(chosen)

    def error(t, qp):
        x = q.cache[t][:calibrate_int.OUTPUTS_SAMPLE]
        xq = q8_ref.dequantize(q8_ref.quantize(x, qp.scale, qp.zero_point), qp.scale, qp.zero_point)
        total = 0.0
        for n in read[t]:
            attrs = {**n.attrs, "activation": "none"}
            w = {"weight": b.params[n.params["weight"]]}
            total += float(((cpu.OPS["conv"]([xq], attrs, w) - cpu.OPS["conv"]([x], attrs, w)) ** 2).mean())
        return total
    for t, qp in chosen.items():
        if t not in read:
            assert qp == rules["mse"][t], t
            continue
        errs = {r: error(t, rules[r][t]) for r in rules}
        assert qp in [rules[r][t] for r in rules], t
        assert error(t, qp) <= min(errs.values()) * (1 + 1e-9), (t, errs)


def test_bias_correction_in_the_integer_network_leaves_no_mean_error():
    """After one pass, each integer convolution's sums (its inputs as the
    integer network computes them) have no mean error left per channel
    beyond the rounding of its int32 bias: a second pass shifts the biases
    by far less than the first."""
    b = block_net()
    q = calibrate.Quantizer(b, calibrate.calibration_inputs(SPEC))
    with free_conversions():
        planner = calibrate_int.IntegerPlanner(q, dict(b.params))
    plan = {n.name: planner.levels(n)[0] for n in planner.candidates}
    qp = planner.qparams("minmax")
    first = planner.correct(plan, qp)
    assert set(first) == {n for n in plan if planner.kind[n] in ("gemm", "im2col", "depthwise")}
    second = planner.correct(plan, qp)
    for name in first:
        assert np.abs(second[name]).max() < 0.2 * np.abs(first[name]).max() + 1e-6, name
