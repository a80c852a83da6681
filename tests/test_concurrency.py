"""One loaded Model shared by eight threads gives the results of sequential use."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import devicenet
from devicenet import format as dnet
from devicenet.convert.builder import Builder, weight_encodings
from conftest import PHOTOS, data

THREADS = 8


def together(fn, jobs):
    """Run ``fn(job)`` for every job on THREADS threads that all start at once."""
    barrier = threading.Barrier(min(THREADS, len(jobs)))

    def call(job):
        barrier.wait()
        return fn(job)
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(call, jobs))


@pytest.fixture(scope="module")
def small_model_path(tmp_path_factory):
    rng = np.random.default_rng(8)
    b = Builder([1, 16, 16, 3])
    x = b.add("conv", "input", {"kernel": [3, 3], "pads": [1, 1, 1, 1], "activation": "relu6"},
              {"weight": rng.normal(size=(8, 3, 3, 3)), "bias": rng.normal(size=8)})
    x = b.add("conv", x, {"kernel": [3, 3], "stride": [2, 2], "pads": [1, 1, 1, 1], "groups": 8},
              {"weight": rng.normal(size=(8, 3, 3, 1))})
    x = b.add("global_avgpool", x)
    x = b.add("flatten", x)
    b.add("dense", x, {}, {"weight": rng.normal(size=(10, 8)), "bias": rng.normal(size=10)}, output="logits")
    meta = {"name": "small", "labels": [f"class{i}" for i in range(10)],
            "preprocess": {"resize": 18, "crop": 16, "mean": [127.0] * 3, "std": [128.0] * 3}}
    path = tmp_path_factory.mktemp("small") / "small.dnet"
    dnet.write(b.graph(meta, weight_encodings(b.params, b.nodes, "int8")), path)
    return path


@pytest.mark.parametrize("residency", ["resident", "streamed"])
def test_forward_from_eight_threads_matches_sequential(small_model_path, residency):
    model = devicenet.load(small_model_path, backend="cpu", residency=residency)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(1 + i % 3, 16, 16, 3)).astype(np.float32) for i in range(64)]
    sequential = [model.forward(x) for x in batches]
    concurrent = together(model.forward, batches)
    for a, b in zip(sequential, concurrent):
        np.testing.assert_array_equal(a, b)


def test_classify_from_eight_threads_matches_sequential(small_model_path):
    model = devicenet.load(small_model_path, backend="cpu")
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (20 + i, 30 - i, 3), np.uint8) for i in range(24)]
    sequential = [model.classify(img).to_json()["predictions"] for img in images]
    concurrent = [r.to_json()["predictions"] for r in together(model.classify, images)]
    assert concurrent == sequential


def test_shipped_model_from_eight_threads_matches_sequential(shipped_model):
    model = devicenet.load(shipped_model, backend="cpu")
    photos = [data(p) for p in PHOTOS]
    sequential = {p: model.classify(p).to_json()["predictions"] for p in photos}
    jobs = [photos[i % len(photos)] for i in range(THREADS)]
    for photo, result in zip(jobs, together(model.classify, jobs)):
        assert result.to_json()["predictions"] == sequential[photo], photo


def test_classify_many_from_two_threads_matches_sequential(small_model_path):
    model = devicenet.load(small_model_path, backend="cpu")
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)) for _ in range(10)]

    def batch(_):
        return [r.to_json()["predictions"] for r in model.classify_many(images)]
    expected = batch(None)
    for got in together(batch, [0, 1]):
        assert got == expected
