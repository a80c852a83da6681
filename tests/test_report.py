"""The result documents (devicenet.report): one shape of a classification,
rounding, CSV rows, the device named."""

import json

import pytest

import devicenet
from devicenet import report
from devicenet.errors import DeviceNetError
from conftest import data


@pytest.fixture(scope="module")
def model():
    return devicenet.load(backend="cpu")


def test_rounded_keeps_six_significant_digits_everywhere():
    doc = report.rounded({"a": 0.123456789, "b": [1234.56789, {"c": 1.23456789e-7}], "n": 3, "s": "x",
                          "t": (2.0 / 3.0,)})
    assert doc == {"a": 0.123457, "b": [1234.57, {"c": 1.23457e-7}], "n": 3, "s": "x", "t": [0.666667]}
    assert report.rounded(float("nan")) != report.rounded(float("nan"))  # left for the printer to refuse


def test_result_json_is_the_classification(model):
    res = model.classify(data("chelsea.png"), top=3)
    doc = report.result_json(res)
    assert doc["image"] == data("chelsea.png")
    assert [(p["label"], p["index"]) for p in doc["predictions"]] == [(p.label, p.index) for p in res.predictions]
    for got, p in zip(doc["predictions"], res.predictions):
        assert got["probability"] == pytest.approx(p.probability, rel=1e-5)
    assert set(doc["latency_ms"]) == set(res.latency_ms)
    json.dumps(doc, allow_nan=False)


def test_result_json_of_a_failed_image(model, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    (err,) = list(model.classify_many([str(bad)]))
    assert isinstance(err, DeviceNetError)
    assert report.result_json(err) == {"image": str(bad), "error": str(err)}
    assert report.csv_rows(err) == [[str(bad), "", "", "", "", ""]]


def test_csv_rows_rank_every_prediction(model):
    res = model.classify(data("coffee.png"), top=2)
    rows = report.csv_rows(res)
    assert [r[:4] for r in rows] == [[data("coffee.png"), k + 1, p.index, p.label]
                                     for k, p in enumerate(res.predictions)]
    assert len(report.CSV_FIELDS) == len(rows[0])


def test_the_classify_document_names_where_it_ran(model):
    doc = report.classify_document(model, [], interrupted=True)
    assert doc["schema"] == report.SCHEMA and doc["backend"] == "cpu" and doc["interrupted"] is True
    assert doc["device"].startswith(report.cpu_name())
    assert list(doc)[0] == "schema"
