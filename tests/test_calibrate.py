"""Per-layer precision by measured sensitivity, on small networks."""

import hashlib

import numpy as np
import pytest

from devicenet import calibrate
from devicenet.backends.cpu import CPUBackend
from devicenet.convert.builder import Builder, weight_encodings
from devicenet.errors import DeviceNetError
from devicenet.quant import nbytes
from conftest import DATA

SPEC = {"resize": 36, "crop": 32, "mean": [127.5] * 3, "std": [64.0] * 3}


def small_net(sensitive=None, seed=0):
    """conv -> depthwise -> 1x1 conv -> pool -> dense.

    Channel 0 of the depthwise output and of the 1x1 conv's output are dead
    (always zero).  ``sensitive`` names a layer reading one of them
    (``pointwise`` or ``classifier``) whose every channel gets a huge weight
    on the dead input: the float network is unchanged, but the int8 step
    grows so much that the real weights lose most of their precision.
    """
    rng = np.random.default_rng(seed)
    b = Builder([1, 32, 32, 3])
    w = {"conv": rng.normal(0, 0.3, (16, 3, 3, 3)), "depthwise": rng.normal(0, 0.5, (16, 3, 3, 1)),
         "pointwise": rng.normal(0, 0.3, (24, 1, 1, 16)), "classifier": rng.normal(0, 0.3, (10, 24))}
    bias = {name: rng.normal(0, 0.1, v.shape[0]) for name, v in w.items()}
    w["depthwise"][0], bias["depthwise"][0] = 0.0, -1.0  # relu6 makes it exactly zero
    w["pointwise"][0], bias["pointwise"][0] = 0.0, 0.0
    if sensitive:
        w[sensitive].reshape(w[sensitive].shape[0], -1)[:, 0] = 40.0  # weight on the dead input
    x = b.add("conv", "input", {"kernel": [3, 3], "pads": [1] * 4, "activation": "relu6"},
              {"weight": w["conv"], "bias": bias["conv"]}, name="conv")
    x = b.add("conv", x, {"kernel": [3, 3], "pads": [1] * 4, "groups": 16, "activation": "relu6"},
              {"weight": w["depthwise"], "bias": bias["depthwise"]}, name="depthwise")
    x = b.add("conv", x, {"kernel": [1, 1]}, {"weight": w["pointwise"], "bias": bias["pointwise"]},
              name="pointwise")
    x = b.add("global_avgpool", x, name="pool")
    x = b.add("flatten", x, name="features")
    b.add("dense", x, {}, {"weight": w["classifier"], "bias": bias["classifier"]}, name="classifier")
    return b


def weight_bytes(b, encodings):
    return sum(nbytes(b.params[t].shape, e) for t, e in encodings.items())


def choose(b, budget):
    return calibrate.choose_encodings(b, {"preprocess": SPEC}, budget=budget)


@pytest.mark.parametrize("layer", ["pointwise", "classifier"])
def test_a_deliberately_sensitive_layer_gets_more_bits(layer):
    b = small_net(sensitive=layer)
    int8 = weight_bytes(b, weight_encodings(b.params, b.nodes, "int8"))
    extra = nbytes(b.params[f"{layer}.weight"].shape, "int16") - nbytes(b.params[f"{layer}.weight"].shape, "int8")
    # Enough budget for that one layer (and the reserve), not for all of them.
    _, _, report = choose(b, 1 + (extra + calibrate.reserve(int8) + 1) / int8)
    assert report["layers"][layer] == "int16"
    assert list(report["layers"].values()).count("int16") == 1
    assert report["sensitivity"][layer] == max(report["sensitivity"].values())


@pytest.mark.parametrize("budget", [1.0, 1.1, 1.3, 2.5])
def test_the_byte_budget_is_respected(budget):
    b = small_net()
    int8 = weight_bytes(b, weight_encodings(b.params, b.nodes, "int8"))
    encodings, clips, report = choose(b, budget)
    assert weight_bytes(b, encodings) <= budget * int8
    assert set(clips) == {t for t, e in encodings.items() if e == "int8"}
    if budget == 1.0:
        assert set(report["layers"].values()) == {"int8"}
    if budget == 2.5:  # room for everything: every layer measured as mattering gets 16 bits
        assert set(report["layers"].values()) == {"int16"}


def test_report_has_the_shape_info_prints():
    b = small_net()
    _, _, report = choose(b, None)
    assert report["scheme"] == "auto" and report["default"] == "int8" and report["budget"] == 1.2
    assert list(report["layers"]) == ["conv", "depthwise", "pointwise", "classifier"]
    assert set(report["layers"].values()) <= {"int8", "int16"} and report["summary"]
    # the batch's digest, for telling whether a rebuild decoded the same photos alike
    batch = calibrate.calibration_inputs(SPEC)
    assert report["calibration"] == {"source": "built-in", "inputs": calibrate.MAX_IMAGES,
                                     "sha256": hashlib.sha256(batch.tobytes()).hexdigest()}


def test_auto_is_closer_to_float_than_naive_int8():
    b = small_net(sensitive="pointwise")
    x = calibrate.calibration_inputs(SPEC)
    float_out = CPUBackend(b.graph({}, weight_encodings(b.params, b.nodes, "float32"))).run(x)
    naive = CPUBackend(b.graph({})).run(x)
    encodings, clips, _ = choose(b, 1.2)
    auto = CPUBackend(b.graph({}, encodings, clips)).run(x)
    assert np.abs(auto - float_out).mean() < 0.5 * np.abs(naive - float_out).mean()


def test_bias_correction_removes_the_mean_output_shift():
    b = small_net()
    q = calibrate.Quantizer(b, calibrate.calibration_inputs(SPEC))
    node = b.nodes[2]  # the 1x1 conv: no activation, so its output error is linear
    _, wq, bias, _ = q.int8_choice(node)
    x = q.cache[node.inputs[0]]
    ref = q.cache[node.outputs[0]]
    from devicenet.backends.cpu import conv
    plain = conv(x, node.attrs, wq, b.params[node.params["bias"]])
    corrected = conv(x, node.attrs, wq, bias)
    shift = lambda y: np.abs((y - ref).mean(axis=(0, 1, 2))).max()  # noqa: E731
    assert shift(corrected) < 1e-4 < shift(plain)


def test_clip_candidates_never_worse_than_absmax():
    rng = np.random.default_rng(3)
    w = rng.uniform(-1, 1, (3, 100_000)).astype(np.float32)
    w[0, 0] = 1.2  # one mild outlier among many: clipping it buys a finer step for all the rest
    absmax, mse = calibrate.clip_candidates(w)
    err = lambda c: ((calibrate.quantize(w, "int8", c) - w) ** 2).sum(1)  # noqa: E731
    assert np.all(err(mse) <= err(absmax)) and err(mse)[0] < 0.9 * err(absmax)[0]
    assert np.all(mse <= absmax) and mse[0] < 1.1


def test_spend_is_greedy_by_error_per_byte():
    layers = [("a", 1.0, 100), ("b", 0.5, 10), ("c", 0.0, 1), ("d", 2.0, 1000)]
    assert calibrate.spend(layers, 110) == {"a", "b"}
    assert calibrate.spend(layers, 1000) == {"a", "b"}  # d does not fit after a and b
    assert calibrate.spend(layers, 5) == set()


def test_user_photos_and_bad_folders(tmp_path):
    x = calibrate.calibration_inputs(SPEC, DATA)
    assert x.shape == (calibrate.MAX_IMAGES, 32, 32, 3) and np.isfinite(x).all()
    with pytest.raises(DeviceNetError, match="no photos"):
        calibrate.calibration_inputs(SPEC, str(tmp_path))
    with pytest.raises(DeviceNetError, match="budget"):
        choose(small_net(), 0.5)


def test_convert_auto_writes_choices_that_info_shows(tmp_path):
    pytest.importorskip("onnx")
    from conftest import cli_runner
    from devicenet.cli import main
    from devicenet.convert import convert
    from devicenet import format as dnet
    import onnx
    from onnx_graphs import _model, conv, n, W
    m = _model([conv("c", "x", "h", "w", "b", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), n("Relu", ["h"], ["r"]),
                n("GlobalAveragePool", ["r"], ["p"]), n("Flatten", ["p"], ["f"]),
                n("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
               {"w": W(8, 3, 3, 3), "b": W(8), "fw": W(5, 8), "fb": W(5)}, [1, 3, 32, 32])
    onnx.save(m, str(tmp_path / "tiny.onnx"))
    out = tmp_path / "tiny.dnet"
    convert(str(tmp_path / "tiny.onnx"), str(out), weights="auto", calibrate=DATA)
    q = dnet.load(str(out)).meta["quantization"]
    assert q["scheme"] == "auto" and q["calibration"]["source"] == "user" and len(q["layers"]) == 2
    result = cli_runner().invoke(main, ["info", str(out)])
    assert result.exit_code == 0 and "quantization auto" in result.output
    # how many calibration photos, from the command line
    more = tmp_path / "more.dnet"
    result = cli_runner().invoke(main, ["convert", str(tmp_path / "tiny.onnx"), str(more), "--weights", "auto",
                                        "--calibrate", DATA, "--calibrate-images", "5", "-q"])
    assert result.exit_code == 0, result.output
    assert dnet.load(str(more)).meta["quantization"]["calibration"]["inputs"] == 5
    result = cli_runner().invoke(main, ["convert", str(tmp_path / "tiny.onnx"), str(more), "--force",
                                        "--weights", "auto", "--calibrate-images", "0"])
    assert result.exit_code != 0 and "calibrate-images" in result.output
