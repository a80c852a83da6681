"""Hostile models that pass every checksum: each is a small graph built here,
written as a valid .dnet, and must give the reference answer or a one-line
DeviceNetError (docs/RELIABILITY.md, "Models that pass the checksums")."""

import numpy as np
import pytest

import devicenet
from devicenet import DeviceNetError, format as dnet
from devicenet.backends import cpu_kernels
from devicenet.backends.cpu import CPUBackend
from devicenet.convert.builder import Builder, weight_encodings

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
