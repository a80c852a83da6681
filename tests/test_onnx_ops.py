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


def _graph(tmp_path, case, model=None):
    onnx.save(model or CASES[case](), tmp_path / "m.onnx")
    convert(tmp_path / "m.onnx", tmp_path / "m.dnet", weights="float32")
    return dnet.load(tmp_path / "m.dnet")


def test_channels_last_block_moves_no_data_and_fuses_gelu(tmp_path):
    # Transpose to channels last and back are views of the NHWC activation;
    # GELU spelt with Erf fuses into the dense layer; the layer norm's scale
    # and shift (spelt as Mul and Add before opset 17) become its parameters.
    for case in ("convnext_block_channels_last", "convnext_block_layernorm_spelt_out"):
        g = _graph(tmp_path, case)
        assert [(nd.op, nd.attrs.get("activation")) for nd in g.nodes] == [
            ("conv", "none"), ("layernorm", None), ("dense", "gelu"), ("dense", "none"), ("affine", None),
            ("add", "none")], case
        assert sorted(g.nodes[1].params) == ["scale", "shift"]


def test_gelu_in_either_order_fuses_into_its_dense_layer(tmp_path):
    for case in ("gelu_spelt_dynamo_order", "gelu_op_opset20"):
        assert [(nd.op, nd.attrs.get("activation")) for nd in _graph(tmp_path, case).nodes][:1] == [
            ("dense", "gelu")], case


def test_attention_reads_keys_transposed_in_place(tmp_path):
    ops = [nd.op for nd in _graph(tmp_path, "vit_tokens_attention").nodes]
    assert {"constant", "concat", "layernorm", "matmul", "softmax", "rearrange"} <= set(ops)
    # Keys computed by a dense layer and transposed: read transposed, not copied.
    g = _graph(tmp_path, "swin_windows_roll_bias_mask")
    assert [nd.attrs["transpose_b"] for nd in g.nodes if nd.op == "matmul"] == [True, False]


@pytest.mark.parametrize("case", ["vit_tokens_attention", "swin_windows_roll_bias_mask"])
def test_fixed_batch_graph_runs_a_batch_image_by_image(tmp_path, case, backend_name):
    from devicenet.graph import fixed_batch
    model = CASES[case]()
    g = _graph(tmp_path, case, model)
    assert fixed_batch(g) == 1
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(3).normal(size=[2] + dims[1:]).astype(np.float32)
    ours = run_graph(g, x.transpose(0, 2, 3, 1), backend_name)
    expected = np.concatenate([to_nhwc(ort_run(model, x[i:i + 1])) for i in range(2)])
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(DeviceNetError, match="fix its batch size to 1"):
        g.shapes(2)


def test_erf_outside_gelu_and_a_broken_layer_norm_fail_in_one_line(tmp_path):
    m = _model([n("Erf", ["x"], ["y"], name="lonely")], {}, [1, 3, 4, 4])
    onnx.save(m, tmp_path / "m.onnx")
    with pytest.raises(DeviceNetError, match="ONNX Erf node lonely: .*GELU") as e:
        convert(tmp_path / "m.onnx", tmp_path / "m.dnet")
    assert "\n" not in str(e.value)
    # the mean of a layer norm also read by something else
    m = _model([n("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), n("ReduceMean", ["t"], ["mu"], axes=[-1]),
                n("Sub", ["t", "mu"], ["c"]), n("Add", ["mu", "c"], ["y"])], {}, [1, 3, 4, 4])
    onnx.save(m, tmp_path / "m.onnx")
    with pytest.raises(DeviceNetError, match="ONNX Add node computing 'y': .*'mu' is a step .* of a layer "
                                             "normalisation") as e:
        convert(tmp_path / "m.onnx", tmp_path / "m.dnet")
    assert "\n" not in str(e.value)


def test_views_read_the_elements_numpy_does():
    # Every view (transposes, reshapes, slices, one index) picks the same
    # elements as numpy's own arrays, and its rearrange copies them in order.
    from numpy.lib.stride_tricks import as_strided
    from devicenet.backends.cpu import rearrange
    from devicenet.convert.layout import View
    rng = np.random.default_rng(5)
    data = rng.normal(size=(2, 6, 4, 3)).astype(np.float32)
    ref, v = data.transpose(0, 3, 1, 2), View.laid_out((2, 3, 6, 4), (0, 2, 3, 1))
    steps = [lambda a, v: (a.transpose(0, 2, 3, 1), v.transpose((0, 2, 3, 1))),
             lambda a, v: (a.reshape(2, 3, 2, 4, 3), v.reshape((2, 3, 2, 4, 3))),
             lambda a, v: (a.transpose(0, 1, 3, 2, 4), v.transpose((0, 1, 3, 2, 4))),
             lambda a, v: (a[:, 1:, ::2], v.slice(2, 0, 4, 2).slice(1, 1, 3, 1)),
             lambda a, v: (a[:, :, :, 1], v.take(3, 1)),
             # a grid of indices (what torch's as_strided exports as Gather)
             lambda a, v: (np.take(a, [[0, 1], [1, 2]], axis=3), v.pick(3, np.array([[0, 1], [1, 2]])))]
    for step in steps:
        ref, v = step(ref, v)
        if v is None:
            break
        picked = as_strided(data.reshape(-1)[v.offset:], v.shape, [4 * s for s in v.strides])
        np.testing.assert_array_equal(picked, ref)
        for perm in ([*range(len(v.shape))], [*range(len(v.shape))][::-1]):
            out = rearrange(data, v.gather(perm, "test"))
            np.testing.assert_array_equal(out.reshape(-1), ref.transpose(perm).reshape(-1))
    assert View.laid_out((2, 3, 6, 4), (0, 2, 3, 1)).reshape((2, 72)) is None  # NHWC is not NCHW's order
    assert View.laid_out((8,), (0,)).pick(0, np.array([3, 1])) is None  # not a grid
