"""Top-layer retraining: learning separates classes, the model round-trips,
features are cached by content."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import devicenet
from devicenet import learn as learning
from devicenet.cli import main
from devicenet.features import feature_layer, truncate
from conftest import cli_runner, data

SOURCES = {"cat": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg"}


def variants(img, count):
    """Deterministic crops, mirrors and colour shifts of one photo."""
    w, h = img.size
    out = []
    for i in range(count):
        s = 0.55 + 0.07 * (i % 5)
        cw, ch = int(w * s), int(h * s)
        x, y = (w - cw) * (i % 3) // 2, (h - ch) * ((i // 3) % 3) // 2
        v = img.crop((x, y, x + cw, y + ch))
        if i % 2:
            v = v.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.asarray(v, np.int16) + (i * 7 % 21 - 10)
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return out


def make_dataset(root, per_class=6, classes=SOURCES):
    for name, photo in classes.items():
        os.makedirs(root / name, exist_ok=True)
        for i, v in enumerate(variants(Image.open(data(photo)).convert("RGB"), per_class)):
            v.save(root / name / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def base():
    return devicenet.load(backend="cpu")


@pytest.fixture(scope="module")
def learned(tmp_path_factory, base):
    root = make_dataset(tmp_path_factory.mktemp("photos"))
    out = root.parent / "mine.dnet"
    report = learning.learn(str(root), str(out), base, holdout=0.34)
    return root, out, report


def invoke(*args):
    return cli_runner().invoke(main, [str(a) for a in args])


def test_learning_separates_the_classes(learned):
    _, out, report = learned
    assert report["classes"] == ["cat", "coffee", "rocket"]
    assert report["counts"] == {"cat": 6, "coffee": 6, "rocket": 6}
    assert report["held_out"] == 6 and report["accuracy"] == 1.0
    m = np.array(report["confusion"])
    assert m.shape == (3, 3) and m.sum() == 6 and np.trace(m) == 6
    assert report["training_accuracy"] == 1.0


def test_learned_model_classifies_on_every_backend(learned, backend_name, monkeypatch):
    _, out, _ = learned
    if backend_name == "cpu-numpy":
        from devicenet.backends import cpu_kernels
        monkeypatch.setattr(cpu_kernels, "NATIVE", None)
        backend_name = "cpu"
    model = devicenet.load(out, backend=backend_name)
    assert model.labels == ["cat", "coffee", "rocket"]
    for label, photo in SOURCES.items():
        # The untouched originals were never in the training set.
        result = model.classify(data(photo), top=3)
        assert result.predictions[0].label == label and result.predictions[0].probability > 0.5
        over = model.classify(data(photo), oversample=True)
        assert over.predictions[0].label == label


def test_learned_model_matches_base_features_times_head(learned, base):
    _, out, _ = learned
    model = devicenet.load(out, backend="cpu")
    head = model.graph.nodes[-1]
    assert head.op == "dense" and model.graph.tensors[head.params["weight"]].shape == (3, 1280)
    assert model.graph.tensors[head.params["weight"]].encoding == "float32"
    x = model.prepare(data("coffee.png"))[0]
    w = model.graph.tensors[head.params["weight"]].decode()
    b = model.graph.tensors[head.params["bias"]].decode()
    np.testing.assert_allclose(model.forward(x), base.features(x) @ w.T + b, rtol=1e-4, atol=1e-4)


def test_info_and_classify_cli_read_the_learned_model(learned):
    _, out, _ = learned
    r = invoke("info", "--json", out)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["classes"] == 3 and doc["ops"]["dense"] == 1
    r = invoke("classify", "--model", out, "--json", "--oversample", data("rocket.jpg"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["results"][0]["predictions"][0]["label"] == "rocket"


def test_features_are_cached_by_content(tmp_path, base, monkeypatch):
    root = make_dataset(tmp_path / "photos", per_class=3, classes={"cat": "chelsea.png", "cup": "coffee.png"})
    calls = []
    real = type(base).features

    def counting(self, *args, **kw):
        calls.append(args)
        return real(self, *args, **kw)

    monkeypatch.setattr(type(base), "features", counting)
    first = learning.learn(str(root), str(tmp_path / "a.dnet"), base, holdout=0, warn=lambda m: None)
    assert first["features_computed"] == len(calls) == 6
    calls.clear()
    second = learning.learn(str(root), str(tmp_path / "b.dnet"), base, holdout=0, warn=lambda m: None)
    assert second["features_computed"] == 0 and calls == []
    # A renamed copy has the same content: still nothing to compute.
    os.rename(root / "cat" / "0.jpg", root / "cat" / "renamed.jpg")
    Image.open(data("chelsea.png")).convert("RGB").save(root / "cat" / "new.jpg")
    third = learning.learn(str(root), str(tmp_path / "c.dnet"), base, holdout=0, warn=lambda m: None)
    assert third["features_computed"] == len(calls) == 1
    assert third["photos"] == 7


def test_augment_and_oversample_use_ten_crops(tmp_path, base):
    root = make_dataset(tmp_path / "photos", per_class=5, classes={"cat": "chelsea.png", "rocket": "rocket.jpg"})
    report = learning.learn(str(root), str(tmp_path / "m.dnet"), base, holdout=0.4, augment=True,
                            oversample=True)
    assert report["accuracy"] == 1.0 and report["features_computed"] == 20  # centre + ten per photo


def test_classifier_balances_unequal_classes():
    rng = np.random.default_rng(1)
    big = rng.normal(0.0, 1.0, (200, 8))
    small = rng.normal(1.0, 1.0, (10, 8))
    x, y = np.vstack([big, small]), np.array([0] * 200 + [1] * 10)
    test = rng.normal(1.0, 1.0, (500, 8))
    plain = learning.Classifier(l2=1e-3, balanced=False).fit(x, y, 2)
    fair = learning.Classifier(l2=1e-3, balanced=True).fit(x, y, 2)
    recall = lambda clf: np.mean(clf.probabilities(test).argmax(axis=1) == 1)  # noqa: E731
    assert recall(fair) > recall(plain) + 0.2


def test_classifier_reaches_the_optimum():
    """At the solution the regularised loss's gradient vanishes."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 5)) * [1, 2, 3, 4, 5] + 3
    y = (x[:, 0] + 0.1 * x[:, 1] + rng.normal(size=60) > 3).astype(int) + (x[:, 2] > 6)
    clf = learning.Classifier(l2=0.05, balanced=False, tol=1e-9, max_iter=20000).fit(x, y, 3)
    mean, std = x.mean(axis=0), x.std(axis=0)
    xs = (x - mean) / std
    p = clf.probabilities(x)
    onehot = np.eye(3)[y]
    w_std = clf.weight.astype(np.float64) * std  # the weights in standardised units
    grad = xs.T @ (p - onehot) / len(x) + 0.05 * w_std.T
    assert np.abs(grad).max() < 1e-4
    assert np.abs((p - onehot).mean(axis=0)).max() < 1e-4  # the bias's gradient


def test_split_holds_out_from_every_class():
    labels = [0] * 10 + [1] * 3 + [2] * 2
    train, test = learning.stratified_split(labels, 0.2)
    assert sorted(np.concatenate([train, test])) == list(range(15))
    assert sorted(np.asarray(labels)[test]) == [0, 0, 1, 2]


def test_truncate_and_feature_layer(base):
    assert feature_layer(base.graph) == "features"
    cut = truncate(base.graph, "features")
    assert cut.output_name == "features" and cut.shapes()["features"] == (1, 1280)
    assert "classifier.weight" not in cut.tensors
    with pytest.raises(devicenet.DeviceNetError, match="no layer"):
        truncate(base.graph, "nope")


def test_learn_cli_reports_and_warns(tmp_path):
    root = make_dataset(tmp_path / "photos", per_class=3, classes={"cat": "chelsea.png", "_background": "coffee.png"})
    (root / "cat" / "broken.jpg").write_bytes(b"not a photo")
    out = tmp_path / "m.dnet"
    r = invoke("learn", root, "-o", out, "--json", "--holdout", "0.34")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["classes"] == ["_background", "cat"] and doc["held_out"] == 2
    assert doc["photos"] == 6 and doc["skipped"] == 1
    assert "only 3 photos" in r.stderr and "features: 7/7" in r.stderr
    assert "skipping" in r.stderr and "broken.jpg" in r.stderr and "Traceback" not in r.stderr
    r = invoke("learn", root, "-o", out)
    assert r.exit_code == 1 and "--force" in r.stderr
    r = invoke("learn", root, "-o", out, "--force")
    assert r.exit_code == 0 and "held-out accuracy" in r.stdout and "confusion" in r.stdout


def test_learn_cli_refuses_bad_datasets(tmp_path):
    (tmp_path / "only").mkdir()
    Image.open(data("coffee.png")).save(tmp_path / "only" / "a.png")
    r = invoke("learn", tmp_path, "-o", tmp_path / "m.dnet")
    assert r.exit_code == 1 and "two or more class" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / "empty").mkdir()
    r = invoke("learn", tmp_path, "-o", tmp_path / "m.dnet")
    assert r.exit_code == 1 and "no photos" in r.stderr and "Traceback" not in r.output
    r = invoke("learn", tmp_path, "-o", tmp_path / "no" / "m.dnet")
    assert r.exit_code == 1 and "folder does not exist" in r.stderr
    r = invoke("learn", tmp_path, "-o", tmp_path / "m.dnet", "--layer", "head")
    assert r.exit_code == 1 and "flat" in r.stderr and r.stderr.count("\n") == 1


def test_features_cli_saves_rows(tmp_path, base):
    out = tmp_path / "f.npy"
    r = invoke("features", data("chelsea.png"), data("rocket.jpg"), "-o", out)
    assert r.exit_code == 0, r.output
    feats = np.load(out)
    assert feats.shape == (2, 1280)
    np.testing.assert_allclose(feats[1], base.features(data("rocket.jpg"))[0], rtol=1e-5, atol=1e-6)
    r = invoke("features", data("chelsea.png"), "--layer", "pool", "-o", out)
    assert r.exit_code == 0 and np.load(out).shape == (1, 1280)
    r = invoke("features", data("chelsea.png"), "--layer", "nope", "-o", out)
    assert r.exit_code == 1 and "no layer" in r.stderr and r.stderr.count("\n") == 1


def test_feature_cache_is_keyed_by_model_and_survives_damage(tmp_path):
    from devicenet.features import FeatureCache
    a = FeatureCache(str(tmp_path), "a" * 64, "features")
    a.put("photo", "centre", np.ones((1, 4)))
    a.put("photo", "ten", np.zeros((10, 4)))
    a.save()
    again = FeatureCache(str(tmp_path), "a" * 64, "features")
    assert again.get("photo", "centre").tolist() == [[1, 1, 1, 1]] and again.get("photo", "ten").shape == (10, 4)
    assert FeatureCache(str(tmp_path), "b" * 64, "features").get("photo", "centre") is None
    assert FeatureCache(str(tmp_path), "a" * 64, "pool").get("photo", "centre") is None
    with open(a.path, "wb") as f:
        f.write(b"garbage")
    assert len(FeatureCache(str(tmp_path), "a" * 64, "features")) == 0
