"""Hostile models that pass every checksum: each is a small graph built here,
written as a valid .dnet, and must give the reference answer or a one-line
DeviceNetError (docs/RELIABILITY.md, "Models that pass the checksums")."""

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from PIL import Image

import devicenet
from devicenet import DeviceNetError, format as dnet
from devicenet.backends import cpu_kernels
from devicenet.backends.cpu import CPUBackend
from devicenet.cli import main
from devicenet.convert.builder import Builder, weight_encodings
from devicenet.image import open_image
from devicenet.learn import learn
from conftest import available_backends, cli_runner, data, run_graph

rng = np.random.default_rng(13)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: every CPU path: compiled kernels (where built) or numpy, resident or streamed
PATHS = [(native, residency) for native in ([True] if cpu_kernels.NATIVE is not None else []) + [False]
         for residency in ("resident", "streamed")]
PATH_IDS = [f"{'native' if n else 'numpy'}-{r}" for n, r in PATHS]


def write(tmp_path, b, meta=None, encoding="float32", share=None, name="m.dnet"):
    """Write the Builder's graph; ``share`` maps a tensor to the one that
    replaces it in every node (two nodes then read one stored tensor)."""
    meta = {"name": "hostile", **(meta or {})}
    g = b.graph(meta, weight_encodings(b.params, b.nodes, encoding))
    for gone, kept in (share or {}).items():
        for node in g.nodes:
            node.params = {role: kept if t == gone else t for role, t in node.params.items()}
        del g.tensors[gone]
    path = tmp_path / name
    dnet.write(g, path)
    return path


def run_paths(path, x):
    """The model's output on every CPU path."""
    graph = dnet.load(path)
    outs = {}
    for (native, residency), label in zip(PATHS, PATH_IDS):
        outs[label] = CPUBackend(graph, residency=residency, native=native).run(x)
    outs["model"] = devicenet.load(path, backend="cpu").forward(x)
    if "opencl" in available_backends():
        outs["opencl"] = run_graph(graph, x, "opencl")
    return outs


# --- independent references ---------------------------------------------------------

def ref_conv(x, w, stride=(1, 1), pads=(0, 0, 0, 0), groups=1, pad_value=0.0):
    """Direct grouped convolution, NHWC input, (Cout, KH, KW, Cin/groups) weights."""
    t, l, b, r = pads
    x = np.pad(x.astype(np.float64), ((0, 0), (t, b), (l, r), (0, 0)), constant_values=pad_value)
    n, h, wd, c = x.shape
    cout, kh, kw, cg = w.shape
    oh, ow = (h - kh) // stride[0] + 1, (wd - kw) // stride[1] + 1
    y = np.zeros((n, oh, ow, cout))
    per = cout // groups
    for o in range(cout):
        g = o // per
        for i in range(kh):
            for j in range(kw):
                patch = x[:, i:i + (oh - 1) * stride[0] + 1:stride[0], j:j + (ow - 1) * stride[1] + 1:stride[1],
                          g * cg:(g + 1) * cg]
                y[..., o] += patch @ w[o, i, j].astype(np.float64)
    return y


# --- 1, 2: a weight shared by nodes whose kernels lay it out differently ------------

def test_weight_shared_by_convolutions_with_different_groups(tmp_path):
    w = rng.normal(size=(8, 3, 3, 2)).astype(np.float32)
    b = Builder([1, 6, 6, 4])
    x = b.add("conv", "input", {"kernel": [3, 3], "pads": [1, 1, 1, 1], "groups": 2}, {"weight": w}, name="a")
    b.add("conv", x, {"kernel": [3, 3], "pads": [1, 1, 1, 1], "groups": 4}, {"weight": w}, name="b")
    path = write(tmp_path, b, share={"b.weight": "a.weight"})
    x = rng.normal(size=(1, 6, 6, 4)).astype(np.float32)
    want = ref_conv(ref_conv(x, w, pads=(1, 1, 1, 1), groups=2), w, pads=(1, 1, 1, 1), groups=4)
    for label, got in run_paths(path, x).items():
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4, err_msg=label)


def test_depthwise_weight_shared_by_nodes_with_different_strides(tmp_path):
    """Same output width (4), strides 2 and 1: the numpy path's tiles of the
    weights along a row depend on the stride too."""
    w = rng.normal(size=(4, 3, 3, 1)).astype(np.float32)
    b = Builder([1, 8, 8, 4])
    x = b.add("conv", "input", {"kernel": [3, 3], "stride": [1, 2], "pads": [1, 1, 1, 1], "groups": 4},
              {"weight": w}, name="a")
    b.add("conv", x, {"kernel": [3, 3], "pads": [1, 1, 1, 1], "groups": 4}, {"weight": w}, name="b")
    path = write(tmp_path, b, share={"b.weight": "a.weight"})
    x = rng.normal(size=(1, 8, 8, 4)).astype(np.float32)
    want = ref_conv(ref_conv(x, w, (1, 2), (1, 1, 1, 1), 4), w, (1, 1), (1, 1, 1, 1), 4)
    for label, got in run_paths(path, x).items():
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4, err_msg=label)


def write_unchecked(tmp_path, g, name="m.dnet"):
    """Write a graph that ``format.write`` would refuse (it checks shapes
    first), with every checksum right: what a hostile tool can make."""
    path = tmp_path / name
    path.write_bytes(b"".join(dnet.serialize(g)))
    return path


def classifier(meta=None, output=None, extra=None, weight=None, size=4):
    """input (1, size, size, 3) -> 1x1 conv (4) -> global mean -> flatten -> dense (3 classes),
    then ``extra(builder, logits)`` may add nodes after it."""
    b = Builder([1, size, size, 3])
    w = rng.normal(size=(4, 1, 1, 3)) if weight is None else weight
    x = b.add("conv", "input", {"kernel": [1, 1], "activation": "relu"}, {"weight": w}, name="c")
    x = b.add("global_avgpool", x)
    x = b.add("flatten", x)
    logits = b.add("dense", x, {}, {"weight": rng.normal(size=(3, 4)), "bias": rng.normal(size=3)},
                   name="logits")
    if extra:
        extra(b, logits)
    meta = {"labels": ["a", "b", "c"], "preprocess": {"resize": size, "crop": size, "mean": [0, 0, 0],
                                                       "std": [255, 255, 255]}, **(meta or {})}
    if output:
        meta["output"] = output
    return b, meta


def logits_of(b, x):
    """The reference logits of a ``classifier`` graph, from its float weights."""
    h = np.maximum(ref_conv(x, b.params["c.weight"]), 0).mean(axis=(1, 2))
    return h @ b.params["logits.weight"].T.astype(np.float64) + b.params["logits.bias"]


def ref_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- 3: the output is the node that makes meta.output, wherever it stands ---------

@pytest.mark.parametrize("case", ["logits with an unused softmax after", "softmax with an unused node after"])
def test_probabilities_follow_the_output_node_not_the_last_node(tmp_path, case):
    if case.startswith("logits"):
        b, meta = classifier(output="logits", extra=lambda b, x: b.add("softmax", x, {"axis": -1}))
    else:
        b, meta = classifier(extra=lambda b, x: b.add("clip", b.add("softmax", x, {"axis": -1}, output="probs"),
                                                      {"min": 0.0, "max": 0.5}), output="probs")
    model = devicenet.load(write(tmp_path, b, meta), backend="cpu")
    img = rng.integers(0, 256, (4, 4, 3), np.uint8)
    want = ref_softmax(logits_of(b, img[None].astype(np.float32) / 255))[0]
    got = {p.index: p.probability for p in model.classify(img, top=3).predictions}
    np.testing.assert_allclose([got[i] for i in range(3)], want, rtol=1e-4, atol=1e-6)


# --- 4: non-finite results --------------------------------------------------------

def test_scales_that_overflow_when_decoded_are_refused(tmp_path):
    b, meta = classifier()
    g = b.graph({"name": "hostile", **meta})
    t = g.tensors["c.weight"]
    t.scales = np.full_like(t.scales, 3e38)  # finite, but 127 times it is not
    with pytest.raises(DeviceNetError, match="c.weight: scales .*finite weights"):
        dnet.load(write_unchecked(tmp_path, g))


@pytest.mark.parametrize("op,attrs", [
    ("maxpool", {"kernel": [2, 2], "pads": [0, 0, 3, 0]}),
    ("avgpool", {"kernel": [2, 2], "stride": [2, 2], "pads": [2, 0, 0, 0]}),
    # one pixel wide: taps 3 apart from 2 before it hit padding on both sides
    ("avgpool", {"kernel": [1, 2], "pads": [0, 2, 0, 2], "dilation": [1, 3]}),
])
def test_pools_with_a_window_wholly_in_padding_are_refused(tmp_path, op, attrs):
    b = Builder([1, 4, 1 if "dilation" in attrs else 4, 3])
    b.add(op, "input", {"kernel": [1, 1]})
    g = b.graph({"name": "hostile"})
    g.nodes[0].attrs = attrs
    with pytest.raises(DeviceNetError, match="wholly in the padding"):
        dnet.load(write_unchecked(tmp_path, g))


def test_pools_whose_windows_all_reach_the_image_still_load(tmp_path):
    # kernel 3, pads 2 (as ceil_mode makes), dilation 2 over 1 pixel: every window has a pixel
    for attrs in ({"kernel": [3, 3], "stride": [2, 2], "pads": [1, 1, 2, 2]},
                  {"kernel": [2, 2], "pads": [1, 1, 1, 1], "dilation": [2, 2]}):
        b = Builder([1, 5, 5, 3])
        b.add("maxpool", "input", attrs)
        b.add("avgpool", b.nodes[-1].outputs[0], attrs)
        x = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
        out = CPUBackend(dnet.load(write(tmp_path, b)), native=False).run(x)
        assert np.all(np.isfinite(out))


@pytest.mark.parametrize("alpha,bias", [(-1.0, 1.0), (1e-4, 0.0), (1e-4, -2.0)])
def test_lrn_whose_denominator_can_reach_zero_is_refused(tmp_path, alpha, bias):
    b = Builder([1, 4, 4, 3])
    b.add("lrn", "input", {"size": 3, "alpha": 1e-4, "beta": 0.75, "bias": 1.0})
    g = b.graph({"name": "hostile"})
    g.nodes[0].attrs.update(alpha=alpha, bias=bias)
    with pytest.raises(DeviceNetError, match="LRN needs alpha >= 0 and bias > 0"):
        dnet.load(write_unchecked(tmp_path, g))


def overflowing(tmp_path):
    """A classifier whose first layer overflows float32 on bright images and
    not on dark ones (weights 1e36, finite in the file); 8x8 pixels, so that
    its GEMM is shared among threads."""
    b, meta = classifier(weight=np.full((4, 1, 1, 3), 1e36), size=8)
    meta["preprocess"]["std"] = [1, 1, 1]
    return write(tmp_path, b, meta)


@pytest.mark.parametrize("native", [n for n, _ in PATHS[::2]])
def test_an_overflowing_result_is_an_error_not_a_number(tmp_path, native):
    model = devicenet.load(overflowing(tmp_path), backend="cpu")
    model._backend = CPUBackend(model.graph, threads=2, native=native)
    assert model.classify(np.zeros((8, 8, 3), np.uint8)).predictions[0].probability > 0
    with pytest.raises(DeviceNetError, match="NaN or infinity"):
        model.classify(np.full((8, 8, 3), 255, np.uint8))
    with pytest.raises(DeviceNetError, match="NaN or infinity"):
        model.forward(np.full((1, 8, 8, 3), 255.0, np.float32))


@pytest.mark.parametrize("native", ["1", "0"])
def test_classify_reports_an_overflowing_image_in_one_line_without_warnings(tmp_path, native):
    path = overflowing(tmp_path)
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    Image.new("RGB", (8, 8)).save(dark)
    Image.new("RGB", (8, 8), (255, 255, 255)).save(bright)
    for args in ([], ["--json"]):
        r = run_cli("classify", "--quiet", "--threads", "2", "--model", path, *args, dark, bright, dark,
                    env={"DEVICENET_NATIVE": native})
        assert r.returncode == 1
        # one line for the bad image, and no numpy RuntimeWarning from any thread
        assert r.stderr.splitlines() == [f"Error: {bright}: model hostile: the output holds NaN or infinity "
                                         "for this input (the model's arithmetic overflows)"]
        if args:
            doc = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"{c} in --json"))
            assert ["error" in res for res in doc["results"]] == [False, True, False]
        else:
            assert r.stdout.count("%") == 6 and "nan" not in r.stdout


# --- 5: sizes a file asks for are checked against memory first ----------------------

@pytest.mark.parametrize("key", ["resize", "crop"])
def test_preprocessing_sizes_are_limited_before_anything_is_allocated(tmp_path, key):
    b, meta = classifier()
    meta["preprocess"][key] = 20000
    g = b.graph({"name": "hostile", **meta})
    path = write_unchecked(tmp_path, g)
    assert path.stat().st_size < 16 << 10
    tracemalloc.start()
    try:
        with pytest.raises(DeviceNetError, match=r"\(resize \d+, crop \d+\) needs \d+ MiB per image, over"):
            devicenet.load(path, backend="cpu")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_preprocessing_of_an_ordinary_size_loads(tmp_path):
    b, meta = classifier()
    meta["preprocess"].update(resize=1200, crop=4)  # 1200 x 9600 x 4 bytes at 8:1: 44 MiB
    assert devicenet.load(write(tmp_path, b, meta), backend="cpu").classify(
        np.zeros((3, 3, 3), np.uint8)).predictions


# --- 6: the output must be one score per label --------------------------------------

def feature_map_model(tmp_path, labels):
    b = Builder([1, 4, 4, 3])
    b.add("conv", "input", {"kernel": [1, 1]}, {"weight": rng.normal(size=(16, 1, 1, 3))})
    meta = {"name": "map", "labels": labels,
            "preprocess": {"resize": 4, "crop": 4, "mean": [0, 0, 0], "std": [1, 1, 1]}}
    return write_unchecked(tmp_path, b.graph(meta))


def test_labels_for_a_feature_map_output_are_refused(tmp_path):
    with pytest.raises(DeviceNetError, match=r"16 labels for an output of shape \(1, 4, 4, 16\), which is not"):
        devicenet.load(feature_map_model(tmp_path, [str(i) for i in range(16)]))


def test_a_feature_map_output_is_not_classified_and_is_described_as_it_is(tmp_path):
    path = feature_map_model(tmp_path, [])
    model = devicenet.load(path, backend="cpu")
    assert model.classes is None
    assert model.forward(np.zeros((1, 4, 4, 3), np.float32)).shape == (1, 256)
    with pytest.raises(DeviceNetError, match="not one score per class"):
        model.classify(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DeviceNetError, match="not one score per class"):
        next(model.classify_many([np.zeros((4, 4, 3), np.uint8)]))
    r = cli_runner().invoke(main, ["info", "--json", str(path)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["classes"] is None and doc["output_shape"] == [1, 4, 4, 16]
    r = cli_runner().invoke(main, ["info", str(path)])
    assert "output 4x4x16 feature map (not class scores)" in r.stdout
    r = cli_runner().invoke(main, ["classify", "--model", str(path), data("coffee.png")])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "not one score per class" in r.stderr


def test_a_one_by_one_output_map_is_a_class_vector(tmp_path):
    b = Builder([1, 4, 4, 3])
    x = b.add("global_avgpool", "input")
    b.add("conv", x, {"kernel": [1, 1]}, {"weight": rng.normal(size=(5, 1, 1, 3))})
    meta = {"labels": list("abcde"), "preprocess": {"resize": 4, "crop": 4, "mean": [0] * 3, "std": [1] * 3}}
    model = devicenet.load(write(tmp_path, b, meta), backend="cpu")
    assert model.classes == 5 and len(model.classify(np.zeros((4, 4, 3), np.uint8), top=9).predictions) == 5


# --- 9: every failure a user can act on is a DeviceNetError -------------------------

@pytest.mark.parametrize("call,match", [
    (lambda m: m.forward(np.array([["a"]])), "array of numbers"),
    (lambda m: m.forward([[object()]]), "array of numbers"),
    (lambda m: m.forward(np.zeros((0, 4, 4, 3), np.float32)), "empty"),
    (lambda m: m.classify(12345), "not int"),
    (lambda m: m.classify(None), "not NoneType"),
    (lambda m: m.classify(np.zeros((4, 4, 3), np.uint8), top="3"), "top must be an integer"),
    (lambda m: devicenet.load(m.path, threads=2**31), "threads must be an integer from 1"),
    (lambda m: devicenet.load(m.path, threads=True), "threads must be an integer from 1"),
    (lambda m: devicenet.load(12345), "model must be a path"),
])
def test_misuse_of_the_api_raises_devicenet_error(tmp_path, call, match):
    b, meta = classifier()
    model = devicenet.load(write(tmp_path, b, meta), backend="cpu")
    with pytest.raises(DeviceNetError, match=match):
        call(model)


# --- 7: what is not a regular file is refused before it is read ---------------------

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")


def run_cli(*args, timeout=120, env=None):
    """The command in a subprocess, so that a hang is a failed test, not a stuck suite."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    return subprocess.run([sys.executable, "-m", "devicenet", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@needs_fifo
def test_a_named_pipe_is_refused_as_photo_model_and_dataset_photo(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    r = run_cli("classify", data("coffee.png"), fifo, data("coffee.png"))
    assert r.returncode == 1 and r.stdout.count("espresso") == 2, r.stderr
    assert r.stderr == f"Error: {fifo}: is a named pipe, not an image file\n"
    r = run_cli("classify", "--model", fifo, data("coffee.png"))
    assert r.returncode == 1 and r.stderr == f"Error: {fifo}: is a named pipe, not a model file\n"
    r = run_cli("info", fifo)
    assert r.returncode == 1 and "is a named pipe" in r.stderr and r.stderr.count("\n") == 1
    with pytest.raises(DeviceNetError, match="is a named pipe"):
        devicenet.load(fifo)


def test_a_device_is_refused_without_being_read(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with pytest.raises(DeviceNetError, match="is a character device, not an image file"):
        open_image("/dev/zero")
    with pytest.raises(DeviceNetError, match="is a character device, not a model file"):
        dnet.load("/dev/zero")
    with pytest.raises(DeviceNetError, match="is a directory, not a model file"):
        dnet.load(tmp_path)


@needs_fifo
def test_learn_skips_a_named_pipe_among_the_photos(tmp_path):
    for k, cls in enumerate("ab"):
        (tmp_path / "set" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(tmp_path / "set" / cls / f"{i}.png")
    os.mkfifo(tmp_path / "set" / "a" / "pipe.jpg")
    b, meta = classifier()
    model = devicenet.load(write(tmp_path, b, meta), backend="cpu")
    warned = []
    report = learn(tmp_path / "set", tmp_path / "out.dnet", model, holdout=0, layer="flatten_2", warn=warned.append)
    assert report["photos"] == 4 and report["skipped"] == 1
    assert any("pipe.jpg" in w and "named pipe" in w for w in warned)


# --- 8: fork() while another thread is inside forward -------------------------------

FORK_CHILD = r"""
import os, sys, threading, time
import numpy as np
import devicenet

model = devicenet.load(sys.argv[1], backend="cpu", residency=sys.argv[2])
img = np.full((4, 4, 3), 77, np.uint8)
before = model.classify(img).to_json()["predictions"]
inside, leave = threading.Event(), threading.Event()
run = model._backend.run

def held(x, profile=None):  # holds the model's lock until told to leave
    inside.set()
    leave.wait()
    return run(x, profile)
model._backend.run = held
worker = threading.Thread(target=model.forward, args=(np.zeros((1, 4, 4, 3), np.float32),))
worker.start()
inside.wait()
pid = os.fork()
if pid == 0:
    ok = model.classify(img).to_json()["predictions"] == before
    os._exit(0 if ok else 3)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    sys.exit("the child hung")
leave.set()
worker.join()
sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork()")
@pytest.mark.parametrize("native", ["1", "0"])
@pytest.mark.parametrize("residency", ["resident", "streamed"])
def test_a_child_forked_while_another_thread_is_inside_forward_classifies(tmp_path, native, residency):
    b, meta = classifier()
    path = write(tmp_path, b, meta)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), DEVICENET_NATIVE=native)
    r = subprocess.run([sys.executable, "-c", FORK_CHILD, str(path), residency], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr


# --- 11: convert --force replaces a model by renaming, never in place ---------------

def test_convert_force_replaces_a_mapped_model_by_rename_and_a_failure_changes_nothing(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx_graphs import CASES
    for name in ("conv3x3", "global_pool_flatten_gemm_softmax"):
        onnx.save(CASES[name](), tmp_path / f"{name}.onnx")
    out = tmp_path / "m.dnet"
    assert run_cli("convert", tmp_path / "conv3x3.onnx", out).returncode == 0
    old = devicenet.load(out, backend="cpu")  # maps the file
    x = rng.normal(size=(1, 9, 9, 4)).astype(np.float32)
    want = old.forward(x)
    inode = out.stat().st_ino
    r = run_cli("convert", "--force", tmp_path / "global_pool_flatten_gemm_softmax.onnx", out)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_ino != inode  # a new file renamed over the old one ...
    np.testing.assert_array_equal(old.forward(x), want)  # ... which the old mapping still reads whole
    assert devicenet.load(out).input_shape == (1, 5, 5, 6)
    before = out.read_bytes()
    labels = tmp_path / "labels.txt"
    labels.write_text("only\ntwo\n")
    r = run_cli("convert", "--force", "--labels", labels, tmp_path / "conv3x3.onnx", out)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_default_feature_layer_is_on_the_way_to_the_output(tmp_path):
    # a dead dense layer after the output must not be taken for the classifier
    b, meta = classifier(output="logits", extra=lambda b, x: b.add("dense", x, {}, {"weight": np.eye(3)}))
    model = devicenet.load(write(tmp_path, b, meta), backend="cpu")
    img = rng.integers(0, 256, (4, 4, 3), np.uint8)
    h = np.maximum(ref_conv(img[None].astype(np.float32) / 255, b.params["c.weight"]), 0).mean(axis=(1, 2))
    np.testing.assert_allclose(model.features(img), h, rtol=1e-4, atol=1e-6)


def test_a_batch_runs_in_parts_within_the_per_image_memory_limit(tmp_path, monkeypatch):
    # A model allowed 3 images' working memory at once runs ten crops in parts of 3, 3, 3, 1.
    b, meta = classifier()
    path = write(tmp_path, b, meta)
    graph = dnet.load(path)
    monkeypatch.setattr(dnet, "MAX_ACTIVATION_BYTES", 3 * dnet.activation_bytes(graph, graph.shapes()) + 1)
    model = devicenet.load(path, backend="cpu")
    seen = []
    run = model._backend.run
    model._backend.run = lambda x, profile=None: seen.append(len(x)) or run(x, profile)
    x = rng.normal(size=(10, 4, 4, 3)).astype(np.float32)
    want = logits_of(b, x)
    np.testing.assert_allclose(model.forward(x), want, rtol=1e-4, atol=1e-5)
    assert seen == [3, 3, 3, 1]


# --- found by the structured fuzzer (docs/RELIABILITY.md, "Found here") -------------

@pytest.mark.parametrize("op", ["conv", "avgpool"])
def test_a_padded_copy_over_the_memory_limit_is_refused_at_load(tmp_path, op):
    # Stride and pads of 65536 keep input and output at 4x4 (every activation
    # tiny) while the padded copy of the input would be 4 * 65540^2 * 3 bytes.
    b = Builder([1, 4, 4, 3])
    b.add(op, "input", {"kernel": [1, 1]}, {"weight": rng.normal(size=(4, 1, 1, 3))} if op == "conv" else None)
    g = b.graph({"name": "hostile"})
    g.nodes[0].attrs.update(stride=[65536, 65536], pads=[0, 0, 65536, 65536])
    if op == "avgpool":
        g.nodes[0].attrs["count_include_pad"] = True  # else its padded windows are refused
    assert dnet.infer_shapes(g)[g.output_name][1:3] == (2, 2)
    with pytest.raises(DeviceNetError, match=r"needs \d+ MiB of activations per image, over"):
        devicenet.load(write_unchecked(tmp_path, g), backend="cpu")


def test_duplicate_node_names_are_refused_at_load(tmp_path):
    b, meta = classifier()
    g = b.graph({"name": "hostile", **meta})
    g.nodes[1].name = g.nodes[2].name
    with pytest.raises(DeviceNetError, match=f"node name '{g.nodes[2].name}' appears twice"):
        devicenet.load(write_unchecked(tmp_path, g), backend="cpu")


@pytest.mark.parametrize("pads", [(0, 0, 1, 0), (0, 0, 0, 2), (0, 0, 100, 100), (1, 1, 1, 1)])
@pytest.mark.parametrize("pad_value", [0.0, -3.0])
def test_a_pointwise_convolution_padded_on_any_side_matches_the_reference(tmp_path, pads, pad_value):
    """OpenCL's pointwise fast path read past its input with bottom or right
    pads only, and every OpenCL convolution padded with 0 whatever pad_value said."""
    w = rng.normal(size=(5, 1, 1, 3)).astype(np.float32)
    b = Builder([1, 4, 6, 3])
    b.add("conv", "input", {"kernel": [1, 1], "pads": list(pads), "pad_value": pad_value}, {"weight": w})
    x = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
    want = ref_conv(x, w, pads=pads, pad_value=pad_value)
    for label, got in run_paths(write(tmp_path, b), x).items():
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4, err_msg=label)


@pytest.mark.parametrize("groups", [1, 3])
def test_a_convolution_pads_with_its_pad_value_on_every_backend(tmp_path, groups):
    w = rng.normal(size=(3, 3, 3, 3 // groups)).astype(np.float32)
    b = Builder([1, 5, 5, 3])
    b.add("conv", "input", {"kernel": [3, 3], "stride": [2, 2], "pads": [1, 2, 2, 1], "groups": groups,
                            "pad_value": 7.5}, {"weight": w})
    x = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    want = ref_conv(x, w, (2, 2), (1, 2, 2, 1), groups, pad_value=7.5)
    for label, got in run_paths(write(tmp_path, b), x).items():
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4, err_msg=label)

