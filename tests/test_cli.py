"""The command line, through click's CliRunner, and the Python API."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import devicenet
from devicenet import report
from devicenet.cli import main
from conftest import PHOTOS, cli_runner, data


@pytest.fixture
def run():
    def invoke(*args):
        return cli_runner().invoke(main, [str(a) for a in args])
    return invoke


def test_every_command_has_help(run):
    result = run("--help")
    assert result.exit_code == 0
    commands = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert {"classify", "info", "convert"} <= set(commands)
    for cmd in commands:
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Usage:" in r.output and len(r.output) > 200, cmd


def test_classify_prints_top_labels_and_latency(run):
    r = run("classify", data("coffee.png"), "--top", "3")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    # the first line names the model, the backend and the device that ran
    assert lines[0].startswith("efficientnet-lite0 on cpu: ") and report.cpu_name() in lines[0]
    assert lines[1].endswith("coffee.png") and "espresso" in lines[2]
    assert len([l for l in lines if "%" in l]) == 3
    assert "inference" in lines[-1] and "total" in lines[-1]


def test_classify_json_schema(run):
    r = run("classify", "--json", *[data(p) for p in PHOTOS])
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["model"] == "efficientnet-lite0" and doc["backend"] == "cpu"
    assert [res["image"] for res in doc["results"]] == [data(p) for p in PHOTOS]
    for res in doc["results"]:
        assert len(res["predictions"]) == 5
        probs = [p["probability"] for p in res["predictions"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert set(res["latency_ms"]) == {"decode", "preprocess", "setup", "inference", "total"}
        lat = res["latency_ms"]
        assert lat["total"] >= lat["inference"] > 0 and lat["setup"] >= 0
    # the one-time setup falls on the first image only
    setups = [res["latency_ms"]["setup"] for res in doc["results"]]
    assert setups[0] > 0 and setups[1:] == [0, 0]


def test_bad_image_in_batch_others_still_classified(run, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("this is not a JPEG")
    r = run("classify", "--json", data("coffee.png"), bad, data("chelsea.png"))
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert [("error" in res) for res in doc["results"]] == [False, True, False]
    assert doc["results"][1]["image"] == str(bad)
    assert "Traceback" not in r.output
    assert r.stderr.count("\n") == 1 and "bad.jpg" in r.stderr


def test_missing_model_is_one_line(run, tmp_path):
    r = run("classify", "--model", tmp_path / "nope.dnet", data("coffee.png"))
    assert r.exit_code == 1 and r.stderr.startswith("Error:") and "no such model file" in r.stderr
    assert r.stderr.count("\n") == 1


def test_info_shows_metadata(run, shipped_model):
    r = run("info", "--json", shipped_model)
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["classes"] == 1000 and doc["input_shape"] == [1, 224, 224, 3]
    assert doc["ops"]["conv"] == 49 and doc["labels"] == 1000
    r = run("info", shipped_model)
    assert "efficientnet-lite0" in r.output and "licence" in r.output


def test_convert_refuses_to_overwrite_without_force(run, tmp_path, shipped_model):
    out = tmp_path / "m.dnet"
    shutil.copy(shipped_model, out)
    src = tmp_path / "x.onnx"
    src.write_bytes(b"junk")
    r = run("convert", src, out)
    assert r.exit_code == 1 and "--force" in r.stderr
    r = run("convert", src, out, "--force")
    assert r.exit_code == 1 and "ONNX" in r.stderr
    assert out.read_bytes() == open(shipped_model, "rb").read()


# --- the Python API ---

def test_api_classify_accepts_path_pil_and_array():
    model = devicenet.load()
    assert model.backend == "cpu" and len(model.labels) == 1000
    img = Image.open(data("chelsea.png")).convert("RGB")
    by_path = model.classify(data("chelsea.png"))
    by_pil = model.classify(img)
    by_array = model.classify(np.asarray(img))
    assert [p.index for p in by_path.predictions] == [p.index for p in by_pil.predictions] \
        == [p.index for p in by_array.predictions]
    assert set(by_path.latency_ms) == {"decode", "preprocess", "setup", "inference", "total"}


def test_api_forward_shapes_and_errors():
    model = devicenet.load()
    logits = model.forward(np.zeros((2, 224, 224, 3), np.float32))
    assert logits.shape == (2, 1000)
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-5, atol=1e-5)  # rows may take different GEMM paths
    with pytest.raises(devicenet.DeviceNetError, match="shape"):
        model.forward(np.zeros((1, 3, 224, 224), np.float32))


def test_api_threads_validated():
    with pytest.raises(devicenet.DeviceNetError):
        devicenet.load(threads=0)


def test_convert_script_from_a_checkout(tmp_path):
    import subprocess
    import sys
    onnx = pytest.importorskip("onnx")
    from onnx_graphs import CASES
    onnx.save(CASES["conv3x3"](), tmp_path / "m.onnx")
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "convert_model.py")
    done = subprocess.run([sys.executable, script, str(tmp_path / "m.onnx"), str(tmp_path / "m.dnet"),
                           "--weights", "int16", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["encodings"]["int16"] == 6 * 4 * 3 * 3
    assert devicenet.format.load(tmp_path / "m.dnet").meta["quantization"]["scheme"] == "int16"
