"""Every supported ONNX op, converted and run on every backend, against onnxruntime."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from devicenet import DeviceNetError  # noqa: E402
from devicenet.convert import convert  # noqa: E402
from devicenet import format as dnet  # noqa: E402
from onnx_graphs import CASES, _model, n  # noqa: E402
from conftest import run_graph  # noqa: E402


def ort_run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def to_nhwc(y):
    return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(tmp_path, case, backend_name):
    model = CASES[case]()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(7).normal(size=dims).astype(np.float32)
    convert(path, tmp_path / "m.dnet", weights="float32")
    g = dnet.load(tmp_path / "m.dnet")
    ours = run_graph(g, x.transpose(0, 2, 3, 1), backend_name)
    expected = to_nhwc(ort_run(model, x))
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_batchnorm_folds_into_conv_and_relu6_fuses(tmp_path):
    onnx.save(CASES["depthwise_bn_relu6"](), tmp_path / "m.onnx")
    convert(tmp_path / "m.onnx", tmp_path / "m.dnet", weights="float32")
    g = dnet.load(tmp_path / "m.dnet")
    assert [nd.op for nd in g.nodes] == ["conv"]
    assert g.nodes[0].attrs["activation"] == "relu6" and g.nodes[0].attrs["groups"] == 8


def test_pad_folds_into_conv(tmp_path):
    onnx.save(CASES["pad_then_conv"](), tmp_path / "m.onnx")
    convert(tmp_path / "m.onnx", tmp_path / "m.dnet", weights="float32")
    g = dnet.load(tmp_path / "m.dnet")
    assert [nd.op for nd in g.nodes] == ["conv"] and g.nodes[0].attrs["pads"] == [1, 2, 1, 0]


def test_unsupported_op_names_op_and_node_and_writes_nothing(tmp_path):
    m = _model([n("Tanh", ["x"], ["y"], name="squash")], {}, [1, 3, 4, 4])
    onnx.save(m, tmp_path / "m.onnx")
    out = tmp_path / "m.dnet"
    with pytest.raises(DeviceNetError, match="unsupported ONNX op Tanh.*squash"):
        convert(tmp_path / "m.onnx", out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "m.onnx"]


def test_malformed_onnx_is_one_clear_error(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07garbage that is not protobuf" * 10)
    with pytest.raises(DeviceNetError, match="ONNX"):
        convert(tmp_path / "m.onnx", tmp_path / "m.dnet")
    assert not (tmp_path / "m.dnet").exists()


def test_labels_must_match_the_outputs_and_source_is_hashed(tmp_path):
    import hashlib
    onnx.save(CASES["global_pool_flatten_gemm_softmax"](), tmp_path / "m.onnx")
    out = tmp_path / "m.dnet"
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(DeviceNetError, match="2 labels given but the model has"):
        convert(tmp_path / "m.onnx", out, labels=tmp_path / "labels.txt")
    assert not out.exists()
    convert(tmp_path / "m.onnx", out, weights="float32")
    digest = hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest()
    assert dnet.load(out).meta["provenance"]["source_sha256"] == digest


def _ops(tmp_path, case):
    onnx.save(CASES[case](), tmp_path / "m.onnx")
    convert(tmp_path / "m.onnx", tmp_path / "m.dnet", weights="float32")
    return [(nd.op, nd.attrs.get("activation")) for nd in dnet.load(tmp_path / "m.dnet").nodes]


@pytest.mark.parametrize("case, ops", [
    ("conv_hardswish_fused", [("conv", "hardswish")]),
    ("conv_silu_spelt_with_sigmoid", [("conv", "silu")]),
    ("depthwise_hardswish_spelt_with_hardsigmoid", [("conv", "hardswish")]),
    ("dense_silu", [("flatten", None), ("dense", "silu")]),
    ("squeeze_excitation_gate", [("conv", "relu"), ("global_avgpool", None), ("conv", "relu"),
                                 ("conv", "sigmoid"), ("mul", None)]),
    ("channel_shuffle_and_split", [("slice", None), ("slice", None), ("conv", "none"), ("concat", None),
                                   ("channel_shuffle", None)]),
])
def test_curves_fuse_and_patterns_become_one_op(tmp_path, case, ops):
    assert _ops(tmp_path, case) == ops


def test_constants_fold_away(tmp_path):
    # Identity of a weight, Unsqueeze of vectors, Reshape of a weight: no op of their own.
    assert [op for op, _ in _ops(tmp_path, "folded_constants")] == [
        "conv", "affine", "affine", "add", "global_avgpool", "flatten", "dense"]


def test_unsupported_node_without_name_is_named_by_its_output(tmp_path):
    m = _model([n("Tanh", ["x"], ["squashed"])], {}, [1, 3, 4, 4])
    onnx.save(m, tmp_path / "m.onnx")
    with pytest.raises(DeviceNetError) as e:
        convert(tmp_path / "m.onnx", tmp_path / "m.dnet")
    msg = str(e.value)
    assert "Tanh" in msg and "'squashed'" in msg and "?" not in msg and "\n" not in msg


def test_assumptions_are_said_on_stderr(tmp_path, capfd):
    from onnx import TensorProto, helper
    m = CASES["sigmoid_standalone"]()
    m.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"]))
    onnx.save(m, tmp_path / "m.onnx")
    convert(tmp_path / "m.onnx", tmp_path / "m.dnet", weights="float32")
    err = capfd.readouterr().err
    assert "not fixed; assuming 224x224" in err and "mean and std" in err
    convert(tmp_path / "m.onnx", tmp_path / "m.dnet", weights="float32", input_size=32,
            preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]})
    assert capfd.readouterr().err == ""
