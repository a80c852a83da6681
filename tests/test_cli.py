"""The command line, through click's CliRunner, and the Python API."""

import json
import os
import shutil
import time

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
    assert {"classify", "info", "convert", "watch", "serve"} <= set(commands)
    for cmd in ("classify --demo", "benchmark", "watch /dev/video0", "serve --host 0.0.0.0"):
        assert f"devicenet {cmd}" in result.output  # an example of each kind of use
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
    # the shipped model's integer layers, and the batch they were measured on
    batch = doc["quantization"]["calibration"]
    assert f"calibrated on {batch['inputs']} photos from a folder (batch sha256 {batch['sha256'][:12]}" in r.output
    assert f"integer     {len(doc['integer']['nodes'])} layers in eight-bit arithmetic" in r.output


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


# --- inputs: folders, patterns, stdin, --demo ---

def photo_tree(root):
    """A folder as a user has one: photos under odd names and at depth, notes,
    a hidden folder."""
    (root / "trip" / "day2").mkdir(parents=True)
    (root / ".cache").mkdir()
    shutil.copy(data("coffee.png"), root / "trip" / "IMG_0001")  # no extension: found by its bytes
    shutil.copy(data("rocket.jpg"), root / "trip" / "day2" / "launch.JPG")
    shutil.copy(data("chelsea.png"), root / ".cache" / "cat.png")  # hidden: left out
    (root / "trip" / "notes.txt").write_text("not a photo")
    (root / "trip" / "day2" / "data.bin").write_bytes(b"\x00" * 64)
    return root


def labels_of(doc):
    return {res["image"]: res["predictions"][0]["label"] for res in doc["results"]}


def test_classify_a_folder_recursively_by_content(run, tmp_path):
    root = photo_tree(tmp_path / "photos")
    r = run("classify", "--json", "--quiet", "--top", "1", root)  # (no progress lines on a slow machine)
    assert r.exit_code == 0, r.output
    assert labels_of(json.loads(r.stdout)) == {str(root / "trip" / "IMG_0001"): "espresso",
                                               str(root / "trip" / "day2" / "launch.JPG"): "missile"}
    assert r.stderr.splitlines() == [
        f"Warning: skipped 2 entries in the folders given (not images: 2): {root / 'trip' / 'notes.txt'}, "
        f"{root / 'trip' / 'day2' / 'data.bin'}"]


def test_classify_expands_quoted_patterns(run, tmp_path):
    root = photo_tree(tmp_path / "photos")
    r = run("classify", "--json", "--top", "1", str(root / "**" / "*.JPG"), data("chelsea.png"))
    assert r.exit_code == 0, r.output
    assert list(labels_of(json.loads(r.stdout))) == [str(root / "trip" / "day2" / "launch.JPG"), data("chelsea.png")]
    r = run("classify", str(tmp_path / "nothing-*.png"))
    assert r.exit_code == 1 and "nothing-*.png: no such image file" in r.stderr


def test_classify_an_empty_folder_is_one_line(run, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("classify", tmp_path / "empty")
    assert r.exit_code == 1 and r.stderr == f"Error: no images in {tmp_path / 'empty'}\n"
    r = run("classify")
    assert r.exit_code == 2 and "--demo" in r.stderr


def test_classify_stdin_matches_the_file(run):
    with open(data("rocket.jpg"), "rb") as f:
        piped = cli_runner().invoke(main, ["classify", "--json", "-"], input=f.read())
    assert piped.exit_code == 0, piped.output
    direct = json.loads(run("classify", "--json", data("rocket.jpg")).stdout)["results"][0]
    res = json.loads(piped.stdout)["results"][0]
    assert res["image"] == "-" and res["predictions"] == direct["predictions"]
    bad = cli_runner().invoke(main, ["classify", "-"], input=b"not an image")
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: -: ") and "devicenet-stdin" not in bad.stderr
    empty = cli_runner().invoke(main, ["classify", "-"], input=b"")
    assert empty.exit_code == 1 and empty.stderr == "Error: -: stdin is empty\n"
    twice = cli_runner().invoke(main, ["classify", "-", "-"], input=b"x")
    assert twice.exit_code == 2 and "once" in twice.stderr


def test_demo_needs_no_file_of_the_user(run):
    r = run("classify", "--demo", "--top", "1")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert os.path.isfile(lines[1]) and "espresso" in lines[2]


# --- outputs: --jsonl, --csv, the header line ---

def test_jsonl_and_csv_say_what_json_says(run, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a JPEG")
    photos = [data(p) for p in PHOTOS]
    doc = json.loads(run("classify", "--json", "--top", "3", photos[0], bad, *photos[1:]).stdout)
    r = run("classify", "--jsonl", "--top", "3", photos[0], bad, *photos[1:])
    assert r.exit_code == 1 and r.stderr.count("Error:") == 1
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    strip = [{k: v for k, v in res.items() if k != "latency_ms"} for res in doc["results"]]
    assert [{k: v for k, v in res.items() if k != "latency_ms"} for res in lines] == strip
    assert all(set(res["latency_ms"]) == {"decode", "preprocess", "setup", "inference", "total"}
               for res in lines if "error" not in res)

    import csv
    r = run("classify", "--csv", "--top", "3", photos[0], bad, *photos[1:])
    assert r.exit_code == 1
    rows = list(csv.DictReader(r.stdout.splitlines()))
    assert list(rows[0]) == ["path", "rank", "index", "label", "probability", "latency_ms"]
    assert [row["path"] for row in rows] == [photos[0]] * 3 + [str(bad)] + [p for p in photos[1:] for _ in range(3)]
    assert rows[3]["label"] == ""
    good = [res for res in doc["results"] if "error" not in res]
    for res, group in zip(good, [rows[0:3], rows[4:7], rows[7:10]]):
        assert [int(row["rank"]) for row in group] == [1, 2, 3]
        assert [(int(row["index"]), row["label"], float(row["probability"])) for row in group] == \
            [(p["index"], p["label"], p["probability"]) for p in res["predictions"]]
        assert float(group[0]["latency_ms"]) > 0


def test_jsonl_lines_arrive_as_images_are_classified(tmp_path):
    # A reader of the pipe sees the first result while the rest are still
    # being classified: read one line, then stop the command.
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "devicenet", "classify", "--jsonl", "--top", "1",
                             *[data("coffee.png")] * 200], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["predictions"][0]["label"] == "espresso"
        assert proc.poll() is None  # still running: the line was not held back until the end
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("fmt", ["--jsonl", "--csv"])
def test_ctrl_c_keeps_the_lines_already_printed(fmt):
    import signal
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "devicenet", "classify", fmt, "--top", "1",
                             *[data("coffee.png")] * 300], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    first = [proc.stdout.readline() for _ in range(2)]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    lines = [line for line in (first + out.splitlines(keepends=True)) if line.strip()]
    assert proc.returncode == 130 and err.strip() == "Interrupted.", err
    assert 2 <= len(lines) < 301 and all(line.endswith("\n") for line in lines)  # whole lines only
    if fmt == "--jsonl":
        assert all(json.loads(line)["predictions"][0]["label"] == "espresso" for line in lines)
    else:
        assert lines[0].startswith("path,rank") and all(",espresso," in line for line in lines[1:])


def test_json_floats_are_rounded_alike(run):
    doc = json.loads(run("classify", "--json", data("coffee.png")).stdout)
    res = doc["results"][0]
    for value in [p["probability"] for p in res["predictions"]] + list(res["latency_ms"].values()):
        assert value == float(f"{value:.6g}")
    assert doc["schema"] == report.SCHEMA and doc["device"].startswith(report.cpu_name())


# --- backend auto, devices, layers, threads ---

def test_auto_never_takes_a_cpu_opencl_device():
    from devicenet.backends import auto_choice
    pocl = {"index": 0, "device": "pthread-cortex-a72", "type": "ALL | CPU"}
    gpu = {"index": 1, "device": "VideoCore VI", "type": "GPU"}
    acc = {"index": 2, "device": "an NPU", "type": "ACCELERATOR"}
    assert auto_choice([pocl])[0] is None and "CPU itself" in auto_choice([pocl])[1]
    assert auto_choice([pocl, acc])[0] is acc
    assert auto_choice([pocl, acc, gpu])[0] is gpu
    assert auto_choice([])[0] is None


def test_auto_hands_the_gpu_to_the_opencl_backend(monkeypatch):
    pytest.importorskip("pyopencl")
    from devicenet import backends
    from devicenet.backends import opencl
    listing = [{"index": 0, "device": "pthread-cpu", "type": "ALL | CPU"},
               {"index": 1, "device": "Mali-G610", "type": "GPU"}]
    made = []

    class Backend:
        name = "opencl"

        def __init__(self, graph, device=None, fallback=None, **kw):
            made.append((device, fallback))

    monkeypatch.setattr(opencl, "list_devices", lambda: listing)
    monkeypatch.setattr(opencl, "OpenCLBackend", Backend)
    from devicenet import format as dnet
    from devicenet.model import default_model_path
    graph = dnet.load(default_model_path())
    assert backends.create(graph, "auto").name == "opencl"
    assert made == [("1", True)]  # the GPU, and a device failure falls back to the CPU
    listing.pop()
    assert backends.create(graph, "auto").name == "cpu" and len(made) == 1  # only the CPU device: not tried


def test_auto_takes_the_cpu_backend_over_pocl(run):
    cl = pytest.importorskip("pyopencl")
    from devicenet.backends.opencl import list_devices
    found = list_devices()
    if not found or any("CPU" not in d["type"] for d in found):
        pytest.skip("needs an OpenCL platform whose devices are all CPUs (pocl)")
    assert devicenet.load(backend="auto").backend == "cpu"
    doc = json.loads(run("classify", "--json", "--backend", "auto", data("coffee.png")).stdout)
    assert doc["backend"] == "cpu"
    # --backend opencl still runs on pocl when asked for
    assert devicenet.load(backend="opencl").backend == "opencl" and cl is not None
    r = run("info", "--devices", "--json")
    devices = json.loads(r.stdout)
    assert devices["auto"]["backend"] == "cpu" and devices["auto"]["device"] is None
    assert not any(d["auto"] for d in devices["devices"]) and "CPU itself" in devices["auto"]["reason"]
    r = run("info", "--devices")
    assert "--backend auto: the CPU backend" in r.stdout


def test_info_layers_names_what_features_takes(run, tmp_path):
    r = run("info", "--layers", "--json")
    layers = json.loads(r.stdout)["layers"]
    assert [la["default_feature_layer"] for la in layers].count(True) == 1
    default = next(la for la in layers if la["default_feature_layer"])
    assert default["name"] == "features" and default["shape"] == [1, 1280]
    inner = layers[len(layers) // 2]
    r = run("features", data("coffee.png"), "--layer", inner["name"], "-o", tmp_path / "f.npy")
    assert r.exit_code == 0, r.output
    got = np.load(tmp_path / "f.npy")
    want = devicenet.load().features(data("coffee.png"), inner["name"])
    assert got.shape == (1, int(np.prod(inner["shape"][1:])))
    np.testing.assert_allclose(got[0], want.mean(axis=0), rtol=1e-5, atol=1e-5)
    text = run("info", "--layers").stdout
    assert f"* {default['name']}" in text and inner["name"] in text


def test_threads_above_the_cpus_warn(run, monkeypatch):
    from devicenet import threads
    monkeypatch.setattr(threads, "default_threads", lambda: 2)
    r = run("classify", "--threads", "8", "--top", "1", data("coffee.png"))
    assert r.exit_code == 0
    assert r.stderr.splitlines() == ["Warning: --threads 8 is more than the 2 CPUs here, which makes every "
                                     "layer slower; use --threads 2 or fewer"]
    r = run("classify", "--threads", "2", "--top", "1", data("coffee.png"))
    assert r.stderr == ""


def test_help_names_the_environment(run):
    import glob
    import re
    from devicenet.cli import ENVIRONMENT
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # every variable the package reads is listed, in --help and in docs/CLI.md
    read = set()
    for path in glob.glob(os.path.join(root, "devicenet", "**", "*.py"), recursive=True):
        read |= set(re.findall(r"[\"'](DEVICENET_[A-Z_]+)[\"']", open(path).read()))
    assert read and read <= {name for name, _ in ENVIRONMENT}
    text, doc = run("--help").stdout, open(os.path.join(root, "docs", "CLI.md")).read()
    for name, _ in ENVIRONMENT:
        assert re.search(rf"^ +{name} ", text, re.M) and f"| `{name}` |" in doc
    assert "DEVICENET_MODEL" in run("classify", "--help").stdout


def test_sizes_for_people():
    from devicenet.cli import ratio_text, size_text
    assert size_text(430) == "430 bytes" and size_text(43_000) == "43.0 kB" and size_text(5_779_808) == "5.78 MB"
    assert ratio_text(18_524_000, 5_779_808, "here") == "3.20x smaller here"
    assert ratio_text(432, 1000, "than float32") == "2.31x larger than float32"


def test_convert_of_a_tiny_model_says_larger(run, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx_graphs import CASES
    onnx.save(CASES["conv3x3"](), tmp_path / "m.onnx")
    r = run("convert", tmp_path / "m.onnx", tmp_path / "m.dnet")
    assert r.exit_code == 0, r.output
    size = os.path.getsize(tmp_path / "m.dnet")
    line = r.stdout.splitlines()[-1]
    assert f"{size} bytes" in line or f"{size / 1e3:.1f} kB" in line
    assert "larger than float32" in line and "0.00 MB" not in line


# --- every JSON document is the one docs/CLI.md describes ---

def documented(title):
    """Key paths of the table under ``### title`` in docs/CLI.md: (required, optional)."""
    import re
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "CLI.md")
    text = open(path).read()
    section = text.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]
    keys = re.findall(r"^\| `([^`]+)` \|", section, re.M)
    assert keys, title
    return [k for k in keys if not k.endswith("?")], [k.rstrip("?") for k in keys if k.endswith("?")]


def lookup(doc, path):
    """Every value at a documented key path (``a[].b``, ``a.b``); fails where one is missing."""
    values = [doc]
    for part in path.split("."):
        many = part.endswith("[]")
        part = part[:-2] if many else part
        values = [v[part] for v in values]
        if many:
            values = [item for v in values for item in v]
    return values


def check_documented(title, doc, optional_seen=()):
    required, optional = documented(title)
    for key in required:
        parent = key.rsplit(".", 1)[0] if "." in key else None
        if parent and parent.rstrip("[]") in optional and parent.rstrip("[]") not in doc:
            continue
        lookup(doc, key)  # KeyError names a documented key the command does not print
    top = {k.split(".")[0].split("[")[0] for k in required + optional}
    assert set(doc) <= top, f"{title}: undocumented keys {set(doc) - top}"
    for key in optional_seen:
        assert key in optional
        lookup(doc, key)


def test_every_json_document_is_documented(run, tmp_path, shipped_model):
    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    doc = json.loads(run("classify", "--json", data("coffee.png"), bad).stdout)
    good, failed = doc["results"]
    check_documented("classify --json", {**doc, "results": [good]}, ["results[].predictions", "results[].latency_ms"])
    assert set(failed) == {"image", "error"}
    check_documented("info --json", json.loads(run("info", "--json", "--layers").stdout), ["layers"])
    try:
        import pyopencl  # noqa: F401
        devices = json.loads(run("info", "--devices", "--json").stdout)
        check_documented("info --devices --json", devices)
    except ImportError:
        pass
    check_documented("evaluate --json", json.loads(run("evaluate", shipped_model, "--reference", shipped_model,
                                                       "--images", data("coffee.png"), "--json").stdout))
    check_documented("ports --json", json.loads(run("ports", "--json").stdout))
    r = run("benchmark", "--runs", "1", "--warmup", "0", "--json", "--layers")
    check_documented("benchmark --json", json.loads(r.stdout), ["layers"])
    from test_learn import make_dataset
    root = make_dataset(tmp_path / "set", per_class=3, classes={"cat": "chelsea.png", "cup": "coffee.png"})
    (root / "README.txt").write_text("two classes")
    r = run("learn", root, "-o", tmp_path / "l.dnet", "--json", "--holdout", "0.34")
    doc = json.loads(r.stdout)
    check_documented("learn --json", doc, ["held_out", "accuracy", "confusion"])
    assert doc["ignored"] == [{"path": str(root / "README.txt"), "reason": "not images"}]
    assert "Warning: ignored 1 entry" in r.stderr
    onnx = pytest.importorskip("onnx")
    from onnx_graphs import CASES
    onnx.save(CASES["conv3x3"](), tmp_path / "m.onnx")
    check_documented("convert --json", json.loads(run("convert", tmp_path / "m.onnx", tmp_path / "m.dnet",
                                                      "--json").stdout))


def test_watch_jsonl_is_documented(run, tmp_path):
    from test_frames import make_video
    video = make_video(tmp_path / "v.mp4", ["coffee.png"], fps=10, per_photo=5, size=(160, 120))
    r = run("watch", video, "--jsonl", "--backend", "cpu")
    assert r.exit_code == 0, r.output
    *frames, summary = [json.loads(line) for line in r.stdout.splitlines()]
    assert frames
    for doc in frames:
        check_documented("watch --jsonl", doc)
    check_documented("watch --jsonl summary", summary)


def test_serve_answers_are_documented():
    from test_serve import photo_bytes, post, request, serving
    with serving(devicenet.load(backend="cpu")) as port:
        status, doc = post(port, photo_bytes("coffee.png"), path="/classify?name=coffee.png")
        assert status == 200
        check_documented("classify --json", doc, ["results[].predictions", "results[].latency_ms"])
        status, doc = request(port, "GET", "/health")
        assert status == 200
        check_documented("serve GET /health", doc)
        status, doc = post(port, b"not an image")
        assert status == 400
        check_documented("serve errors", doc)


def test_serve_camera_view_is_documented(tmp_path):
    from test_frames import make_video
    from test_serve import request, serving
    from devicenet.frames import VideoFile
    video = make_video(tmp_path / "v.mp4", ["coffee.png"], fps=10, per_photo=50, size=(160, 120))
    with serving(devicenet.load(backend="cpu"), camera=VideoFile(video), camera_fps=20) as port:
        deadline = time.monotonic() + 60
        while "predictions" not in (doc := request(port, "GET", "/camera.json")[1]):
            assert time.monotonic() < deadline, doc
            time.sleep(0.1)
        check_documented("serve GET /camera.json", doc, ["image", "predictions", "latency_ms", "frame",
                                                          "time_s", "age_ms", "fps"])
