"""Hostile models that pass every checksum: each is a small graph built here,
written as a valid .dnet, and must give the reference answer or a one-line
DeviceNetError (docs/RELIABILITY.md, "Models that pass the checksums")."""

import json
import tracemalloc
import warnings

import numpy as np
import pytest

import devicenet
from devicenet import DeviceNetError, format as dnet
from devicenet.backends import cpu_kernels
from devicenet.backends.cpu import CPUBackend
from devicenet.cli import main
from devicenet.convert.builder import Builder, weight_encodings
from conftest import cli_runner, data

rng = np.random.default_rng(13)

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
    return outs


# --- independent references ---------------------------------------------------------

def ref_conv(x, w, stride=(1, 1), pads=(0, 0, 0, 0), groups=1):
    """Direct grouped convolution, NHWC input, (Cout, KH, KW, Cin/groups) weights."""
    t, l, b, r = pads
    x = np.pad(x.astype(np.float64), ((0, 0), (t, b), (l, r), (0, 0)))
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
    not on dark ones (weights 1e36, finite in the file)."""
    b, meta = classifier(weight=np.full((4, 1, 1, 3), 1e36), size=2)
    meta["preprocess"]["std"] = [1, 1, 1]
    return write(tmp_path, b, meta)


@pytest.mark.parametrize("native", [n for n, _ in PATHS[::2]])
def test_an_overflowing_result_is_an_error_not_a_number(tmp_path, native):
    path = overflowing(tmp_path)
    model = devicenet.load(path, backend="cpu")
    model._backend = CPUBackend(model.graph, threads=2, native=native)
    dark, bright = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert model.classify(dark).predictions[0].probability > 0
        with pytest.raises(DeviceNetError, match="NaN or infinity"):
            model.classify(bright)
        with pytest.raises(DeviceNetError, match="NaN or infinity"):
            model.forward(np.full((1, 2, 2, 3), 255.0, np.float32))
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)]


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
        with pytest.raises(DeviceNetError, match=r"preprocessing \(resize \d+\) needs \d+ MiB per image, over"):
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
