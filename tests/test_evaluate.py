"""Comparing a model with a float reference: the library and the command."""

import json

import pytest

from devicenet.cli import main
from devicenet.convert import convert
from devicenet.errors import DeviceNetError
from devicenet.evaluate import PhotoResult, Report, evaluate
from conftest import DATA, PHOTOS, cli_runner, data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small ONNX classifier and its float32 and int8 conversions."""
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx_graphs import _model, conv, n, W
    d = tmp_path_factory.mktemp("tiny")
    m = _model([conv("c", "x", "h", "w", "b", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
                n("Relu", ["h"], ["r"]), n("GlobalAveragePool", ["r"], ["p"]), n("Flatten", ["p"], ["f"]),
                n("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
               {"w": W(16, 3, 3, 3), "b": W(16), "fw": W(7, 16), "fb": W(7)}, [1, 3, 40, 40])
    onnx.save(m, str(d / "tiny.onnx"))
    for enc in ("float32", "int8"):
        convert(str(d / "tiny.onnx"), str(d / f"tiny-{enc}.dnet"), weights=enc)
    return d


def test_a_model_against_itself_agrees_fully(shipped_model):
    r = evaluate(shipped_model, shipped_model, DATA)
    assert len(r.photos) == len(PHOTOS) and not r.failed
    assert r.top1_agreement == 1.0 and r.top5_overlap == 1.0
    assert r.max_logit_error == 0.0 and r.mean_logit_error == 0.0


def test_float32_conversion_matches_its_onnx_source(tiny):
    r = evaluate(str(tiny / "tiny-float32.dnet"), str(tiny / "tiny.onnx"), DATA)
    assert r.top1_agreement == 1.0 and r.top5_overlap == 1.0
    assert r.max_logit_error < 1e-4


def test_int8_differs_measurably_but_little(tiny):
    r = evaluate(str(tiny / "tiny-int8.dnet"), str(tiny / "tiny-float32.dnet"), [data(p) for p in PHOTOS])
    assert 0 < r.mean_logit_error <= r.max_logit_error < 0.5


def test_metrics_and_worst_order():
    photos = [PhotoResult("same", [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], 0.1, 0.01),
              PhotoResult("flipped", [2, 1, 3, 4, 9], [1, 2, 3, 4, 5], 0.5, 0.05),
              PhotoResult("tail", [1, 2, 3, 8, 9], [1, 2, 3, 4, 5], 0.9, 0.02)]
    r = Report(photos, ["l%d" % i for i in range(10)])
    assert r.top1_agreement == pytest.approx(2 / 3)
    assert r.top5_overlap == pytest.approx((1 + 0.8 + 0.6) / 3)
    assert r.max_logit_error == 0.9 and r.mean_logit_error == pytest.approx(0.08 / 3)
    assert [p.image for p in r.worst(3)] == ["flipped", "tail", "same"]
    assert r.to_json(1)["worst"][0]["label"] == "l2"


def test_unreadable_photos_are_skipped_and_reported(shipped_model, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    r = evaluate(shipped_model, shipped_model, [str(tmp_path / "broken.jpg"), data("rocket.jpg")])
    assert len(r.photos) == 1 and len(r.failed) == 1 and "broken.jpg" in r.failed[0]
    with pytest.raises(DeviceNetError, match="none of the photos"):
        evaluate(shipped_model, shipped_model, [str(tmp_path / "broken.jpg")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeviceNetError, match="no photos"):
        evaluate(shipped_model, shipped_model, str(tmp_path / "empty"))


def test_cli_evaluate_text_and_json(shipped_model):
    run = cli_runner().invoke
    r = run(main, ["evaluate", shipped_model, "--reference", shipped_model, "--images", DATA])
    assert r.exit_code == 0, r.output
    assert "3 photos: top-1 agreement 100.0%, top-5 overlap 100.0%" in r.output
    r = run(main, ["evaluate", shipped_model, "--reference", shipped_model, "--images", DATA, "--json"])
    doc = json.loads(r.stdout)
    assert doc["photos"] == 3 and doc["top1_agreement"] == 1.0 and len(doc["worst"]) == 3


def test_cli_evaluate_bad_reference_is_one_line(shipped_model, tmp_path):
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    r = cli_runner().invoke(main, ["evaluate", shipped_model, "--reference", str(bad), "--images", DATA])
    assert r.exit_code == 1 and "Error:" in r.stderr and "onnxruntime cannot load it" in r.stderr
    assert isinstance(r.exception, SystemExit)
