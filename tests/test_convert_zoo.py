"""Whole networks converted and compared with onnxruntime: the onnx package's
model-zoo networks (light versions, random weights) and a few torchvision
families at small input sizes (skipped where torchvision is not installed:
``pip install --no-deps torchvision==0.28.0``)."""

import importlib.util
import os

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

_spec = importlib.util.spec_from_file_location(
    "convert_matrix", os.path.join(os.path.dirname(__file__), "..", "scripts", "convert_matrix.py"))
matrix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(matrix)


def _assert_matches(onnx_path, x, tmp_path):
    rel, same_top5, _ = matrix.compare(str(onnx_path), x, str(tmp_path))
    assert rel <= matrix.TOLERANCE and same_top5, (rel, same_top5)


# The zoo networks whose constructs need folding or patterns (Sum, batch norm
# as Mul/Add by unsqueezed constants, a weight reshaped before its Gemm,
# channel shuffle); AlexNet, VGG-19 and ZFNet-512 (big dense layers, tens of
# seconds each) are left to scripts/convert_matrix.py.
@pytest.mark.parametrize("name", ["densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
                                  "squeezenet"])
def test_onnx_zoo_network_matches_onnxruntime(tmp_path, name):
    import numpy as np
    import onnx
    model = matrix.randomise(onnx.load(matrix.zoo_models()[name]))
    weights = {i.name for i in model.graph.initializer}
    image = next(i for i in model.graph.input if i.name not in weights)
    dims = [d.dim_value or 224 for d in image.type.tensor_type.shape.dim]
    onnx.save(model, tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=dims).astype(np.float32)
    _assert_matches(tmp_path / "m.onnx", x, tmp_path)


# The families whose constructs (hard swish, SiLU, squeeze-excitation,
# channel shuffle and split, channels-last blocks with layer norm spelt out
# and GELU) the converter learnt last, small enough to run in seconds;
# scripts/convert_matrix.py runs them all at full size, ViT-B/16 and Swin-T
# among them (their constructs are in tests/onnx_graphs.py).
@pytest.mark.parametrize("constructor, opset", [
    ("mobilenet_v3_small", 13), ("efficientnet_b0", 17), ("shufflenet_v2_x0_5", 17), ("convnext_tiny", 13)])
def test_torchvision_network_matches_onnxruntime(tmp_path, constructor, opset):
    if matrix.import_torchvision() is None:
        pytest.skip("torchvision is not installed (pip install --no-deps torchvision==0.28.0)")
    x = matrix.export(constructor, str(tmp_path / "m.onnx"), opset, 32)
    _assert_matches(tmp_path / "m.onnx", x, tmp_path)
