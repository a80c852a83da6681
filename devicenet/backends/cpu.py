"""The numpy backend: every op as a small function over NHWC float32 arrays.

Convolution is im2col + GEMM (numpy hands the matrix multiply to its BLAS,
which is NEON-optimised on ARM); a 1x1 convolution is a GEMM straight away;
a depthwise convolution is a sum of shifted, per-channel-scaled views of the
padded input.  No op loops in Python over pixels or channels.
"""

import numpy as np

from ..graph import ACTIVATIONS, window
from .base import Backend


def _activate(y, name):
    lo, hi = ACTIVATIONS[name]
    if lo is not None or hi is not None:
        np.clip(y, lo, hi, out=y)
    return y


def _pad(x, pads, value=0.0):
    t, l, b, r = pads
    if not (t or l or b or r):
        return x
    n, h, w, c = x.shape
    out = np.full((n, h + t + b, w + l + r, c), value, dtype=np.float32)
    out[:, t:t + h, l:l + w, :] = x
    return out


def _taps(x, attrs):
    """Pad x and yield (i, j, view) for every kernel tap: view[n, oy, ox, c]
    is the input pixel under tap (i, j) of output pixel (oy, ox)."""
    (kh, kw), (sh, sw), pads, (dh, dw) = window(attrs, "")
    xp = _pad(x, pads, attrs.get("pad_value", 0.0))
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw, :]


def im2col(x, attrs):
    """Patches of x as a (N*OH*OW, KH*KW*C) matrix, in the weights' (KH, KW, C) order."""
    kh, kw = attrs["kernel"]
    cols = None
    for i, j, v in _taps(x, attrs):
        if cols is None:
            n, oh, ow, c = v.shape
            cols = np.empty((n, oh, ow, kh, kw, c), np.float32)
        cols[:, :, :, i, j, :] = v
    n, oh, ow = cols.shape[:3]
    return cols.reshape(n * oh * ow, -1), (n, oh, ow)


def conv(x, attrs, weight, bias=None):
    cout, kh, kw, cin_g = weight.shape
    groups = attrs.get("groups", 1)
    act = attrs.get("activation", "none")
    (sh, sw), pads = attrs.get("stride", [1, 1]), attrs.get("pads", [0, 0, 0, 0])
    if groups == x.shape[3] and cin_g == 1 and cout == groups:
        return _activate(depthwise(x, attrs, weight, bias), act)
    w2 = weight.reshape(cout, -1)
    if kh == kw == 1 and not any(pads) and groups == 1:
        xs = x[:, ::sh, ::sw, :] if sh > 1 or sw > 1 else x
        n, oh, ow, c = xs.shape
        y = np.matmul(xs.reshape(-1, c), w2.T)
    elif groups == 1:
        cols, (n, oh, ow) = im2col(x, attrs)
        y = np.matmul(cols, w2.T)
    else:
        cin = x.shape[3] // groups
        co = cout // groups
        parts = []
        for g in range(groups):
            cols, (n, oh, ow) = im2col(x[..., g * cin:(g + 1) * cin], attrs)
            parts.append(np.matmul(cols, w2[g * co:(g + 1) * co].T))
        y = np.concatenate(parts, axis=1)
    if bias is not None:
        y += bias
    return _activate(y.reshape(n, oh, ow, cout), act)


def depthwise(x, attrs, weight, bias=None):
    """Per-channel convolution: the sum over taps of a view times the tap's weights."""
    w = weight[:, :, :, 0]  # (C, KH, KW)
    y = None
    for i, j, v in _taps(x, attrs):
        if y is None:
            y = v * w[:, i, j]
            if bias is not None:
                y += bias
        else:
            y += v * w[:, i, j]
    return y


def dense(x, attrs, weight, bias=None):
    y = np.matmul(x, weight.T)
    if bias is not None:
        y += bias
    return _activate(y, attrs.get("activation", "none"))


def add(a, b, attrs):
    return _activate(np.add(a, b), attrs.get("activation", "none"))


def affine(x, attrs, scale=None, shift=None):
    y = x * scale if scale is not None else x.copy()
    if shift is not None:
        y += shift
    return y


def clip(x, attrs):
    return np.clip(x, attrs.get("min"), attrs.get("max"))


def maxpool(x, attrs):
    y = None
    for _, _, v in _taps(x, {**attrs, "pad_value": -np.inf}):
        y = v.copy() if y is None else np.maximum(y, v, out=y)
    return y


def avgpool(x, attrs):
    y = None
    for _, _, v in _taps(x, attrs):
        y = v.copy() if y is None else np.add(y, v, out=y)
    if attrs.get("count_include_pad", False) or not any(attrs.get("pads", [0] * 4)):
        return y / np.float32(attrs["kernel"][0] * attrs["kernel"][1])
    # Divide each output by how many real (unpadded) pixels its window covered.
    ones = np.ones((1,) + x.shape[1:3] + (1,), np.float32)
    count = None
    for _, _, v in _taps(ones, attrs):
        count = v.copy() if count is None else count + v
    return y / count


def global_avgpool(x, attrs):
    return x.mean(axis=(1, 2), keepdims=True, dtype=np.float32)


def flatten(x, attrs):
    return x.reshape(x.shape[0], -1)


def concat(*xs, attrs):
    return np.concatenate(xs, axis=-1)


def softmax(x, attrs):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def lrn(x, attrs):
    """Local response normalisation across channels (the AlexNet/GoogLeNet kind)."""
    size = attrs["size"]
    c = x.shape[-1]
    sq = np.zeros(x.shape[:-1] + (c + size,), np.float32)
    sq[..., (size - 1) // 2 + 1:(size - 1) // 2 + 1 + c] = x * x
    csum = np.cumsum(sq, axis=-1)
    window_sum = csum[..., size:size + c] - csum[..., 0:c]
    return x / (attrs["bias"] + attrs["alpha"] / size * window_sum) ** attrs["beta"]


def pad(x, attrs):
    return _pad(x, attrs["pads"], attrs.get("value", 0.0))


def _unary(f):
    return lambda inputs, attrs, params: f(inputs[0], attrs, **params)


#: op name -> function(inputs, attrs, decoded params) -> output
OPS = {
    "conv": _unary(conv),
    "dense": _unary(dense),
    "add": lambda inputs, attrs, params: add(*inputs, attrs),
    "affine": _unary(affine),
    "clip": _unary(clip),
    "maxpool": _unary(maxpool),
    "avgpool": _unary(avgpool),
    "global_avgpool": _unary(global_avgpool),
    "flatten": _unary(flatten),
    "concat": lambda inputs, attrs, params: concat(*inputs, attrs=attrs),
    "softmax": _unary(softmax),
    "lrn": _unary(lrn),
    "pad": _unary(pad),
}


class CPUBackend(Backend):
    """Runs a graph with numpy.  Weights are decoded once at load
    (``resident``) or just before each layer runs (``streamed``)."""

    name = "cpu"

    def __init__(self, graph, threads=None, residency="resident", **_):
        super().__init__(graph, threads, residency)
        self._decoded = {}
        if residency == "resident":
            for t in graph.tensors.values():
                self._decoded[t.name] = t.decode()

    def _param(self, tname):
        got = self._decoded.get(tname)
        return got if got is not None else self.graph.tensors[tname].decode()

    def run_node(self, node, inputs):
        params = {role: self._param(t) for role, t in node.params.items()}
        return OPS[node.op](inputs, node.attrs, params)
