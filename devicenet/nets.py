"""Benchmark networks built at run time from deterministic pseudo-random weights.

``alexnet()`` has the shape of the ImageNet AlexNet (Krizhevsky et al. 2012,
in its Caffe form): a 227x227 input, five convolutions (two of them after
LRN and max pooling, three grouped), three fully connected layers and about
61 million 8-bit weights.  Its answers mean nothing; its cost is that of the
network the historical board timings were measured with, so a board can be
compared with them without downloading anything.
"""

import math

import numpy as np

from .convert.builder import Builder
from .graph import Graph, Tensor
from .quant import encode

#: the ImageNet AlexNet, as (op, attrs, output channels) per weighted layer,
#: with "lrn" and "maxpool" entries in between
ALEXNET = [
    ("conv", {"kernel": [11, 11], "stride": [4, 4], "activation": "relu"}, 96),
    ("lrn", {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}, None),
    ("maxpool", {"kernel": [3, 3], "stride": [2, 2]}, None),
    ("conv", {"kernel": [5, 5], "pads": [2, 2, 2, 2], "groups": 2, "activation": "relu"}, 256),
    ("lrn", {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}, None),
    ("maxpool", {"kernel": [3, 3], "stride": [2, 2]}, None),
    ("conv", {"kernel": [3, 3], "pads": [1, 1, 1, 1], "activation": "relu"}, 384),
    ("conv", {"kernel": [3, 3], "pads": [1, 1, 1, 1], "groups": 2, "activation": "relu"}, 384),
    ("conv", {"kernel": [3, 3], "pads": [1, 1, 1, 1], "groups": 2, "activation": "relu"}, 256),
    ("maxpool", {"kernel": [3, 3], "stride": [2, 2]}, None),
    ("flatten", {}, None),
    ("dense", {"activation": "relu"}, 4096),
    ("dense", {"activation": "relu"}, 4096),
    ("dense", {}, 1000),
]

#: values per generated chunk: bounds the float32 scratch memory (4 MB)
CHUNK = 1 << 20


def random_int8(rng, shape, std):
    """Gaussian weights of deviation ``std``, encoded int8 with per-channel
    scales, generated a few rows at a time so that the float32 tensor is
    never whole in memory.  Returns ``(data, scales)``."""
    rows, per_row = shape[0], math.prod(shape[1:])
    data = np.empty((rows, per_row), np.int8)
    scales = np.empty(rows, np.float32)
    step = max(1, CHUNK // per_row)
    for r in range(0, rows, step):
        chunk = rng.standard_normal((min(step, rows - r), per_row), dtype=np.float32)
        chunk *= np.float32(std)
        # Rows are output channels, so encoding a block of rows gives exactly
        # what encoding the whole tensor would.
        data[r:r + len(chunk)], scales[r:r + len(chunk)] = encode(chunk, "int8")
    return data.reshape(shape), scales


def alexnet(seed=0, width=1.0, size=227, classes=1000, progress=None):
    """The AlexNet-shaped benchmark Graph with int8 weights from ``seed``.

    ``width`` scales every layer's channels (1.0 is the real network; tests
    use a narrow one) and ``size`` the input resolution (at least 67).
    ``progress(phase, done, total)`` is called after each layer.
    """
    rng = np.random.default_rng(seed)
    b = Builder([1, size, size, 3])
    tensors = {}
    x, channels = b.input_name, 3
    layers = list(ALEXNET)
    layers[-1] = ("dense", {}, classes)
    for i, (op, attrs, out) in enumerate(layers):
        name = f"{op}{i}"
        if progress:
            progress("building alexnet", i + 1, len(layers))
        if out is None:
            x = b.add(op, x, attrs, name=name)
            continue
        out = out if i == len(layers) - 1 else max(2, int(round(out * width / 2)) * 2)
        if op == "conv":
            k = attrs["kernel"]
            wshape = (out, k[0], k[1], channels // attrs.get("groups", 1))
        else:
            wshape = (out, b.shapes[x][1])
        fan_in = math.prod(wshape[1:])
        weight, scales = random_int8(rng, wshape, np.sqrt(2.0 / fan_in))  # He initialisation
        bias = (0.01 * rng.standard_normal(out)).astype(np.float32)
        # np.zeros stands in for the float weights only so the Builder can
        # check shapes: its pages are never touched, so it costs no memory.
        x = b.add(op, x, attrs, params={"weight": np.zeros(wshape, np.float32), "bias": bias}, name=name)
        tensors[f"{name}.weight"] = Tensor(f"{name}.weight", "int8", wshape, weight, scales)
        tensors[f"{name}.bias"] = Tensor(f"{name}.bias", "float32", (out,), bias)
        channels = out
    meta = {"name": "alexnet-random-int8" if width == 1.0 else f"alexnet-random-int8-w{width:g}",
            "labels": [f"class {i}" for i in range(classes)],
            "description": f"AlexNet-shaped benchmark network, pseudo-random weights (seed {seed})",
            "preprocess": {"resize": max(size, round(size * 256 / 227)), "crop": size,
                           "interpolation": "bilinear", "mean": [123.0, 117.0, 104.0], "std": [58.0, 57.0, 57.0],
                           "channel_order": "RGB"},
            "input": {"name": b.input_name, "shape": b.input_shape, "layout": "NHWC"},
            "output": x}
    graph = Graph(meta, list(b.nodes), tensors)
    graph.shapes()  # check it as a loaded file would be
    return graph


NETS = {"alexnet": alexnet}
