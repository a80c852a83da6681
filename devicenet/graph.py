"""The graph: ops, their attributes, and shape inference.

A model is an ordered list of :class:`Node` records over named activation
tensors, plus named parameter tensors.  Activations are float32 tensors of
rank 2 to 4: images are NHWC, class scores NC, and the token tensors of
transformers whatever their source made them (the importer decides every
layout, ``convert/layout.py``).  ``OPS`` is the one table of what an op is: which parameters
it takes, which attributes, and how it maps input shapes to an output shape.
Every backend is a table keyed by the same op names.
"""

from dataclasses import dataclass, field
import math

import numpy as np

from .errors import DeviceNetError

#: fused activations: name -> (low, high) clamp; None means unbounded
ACTIVATIONS = {"none": (None, None), "relu": (0.0, None), "relu6": (0.0, 6.0)}
#: fused activations that are curves, not clamps (see backends.cpu_kernels.CURVES):
#: sigmoid, hard sigmoid (relu6(x + 3) / 6), hard swish (x * hard sigmoid), SiLU (x * sigmoid)
#: and GELU (x * (1 + erf(x / sqrt 2)) / 2, the exact one)
CURVES = ("sigmoid", "hardsigmoid", "hardswish", "silu", "gelu")

# Largest dimension and element count a graph may declare.  They keep a
# hostile file from asking for absurd activation buffers.
MAX_DIM = 1 << 16
MAX_ELEMENTS = 1 << 28

# Attribute kinds: a type name, "N integers", None (the value null), or a
# tuple of alternatives.  Each op lists the kinds of its attributes in OPS.
INT, NUM, BOOL, STR = "integer", "number", "boolean", "string"
#: a list of 1 to MAX_RANK sizes (1..MAX_ELEMENTS), and of as many element strides (0..MAX_ELEMENTS)
DIMS, STRIDES = "list of sizes", "list of strides"
#: the most axes a rearrange's index space may have (a window partition needs 6)
MAX_RANK = 6


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    """A finite number of sane size (JSON allows 1e308, arithmetic on it overflows)."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and abs(v) < 1e30)


def is_kind(v, kind):
    """Whether attribute value v is of the given kind."""
    if isinstance(kind, tuple):
        return any(is_kind(v, k) for k in kind)
    if kind is None:
        return v is None
    if kind == INT:
        return is_int(v)
    if kind == NUM:
        return is_num(v)
    if kind == BOOL:
        return isinstance(v, bool)
    if kind == STR:
        return isinstance(v, str)
    if kind in (DIMS, STRIDES):
        low, high = (1 if kind == DIMS else 0), MAX_ELEMENTS
        return (isinstance(v, list) and 1 <= len(v) <= MAX_RANK
                and all(is_int(i) and low <= i <= high for i in v))
    n = int(kind.split()[0])  # "N integers"
    return isinstance(v, list) and len(v) == n and all(is_int(i) and abs(i) <= MAX_DIM for i in v)


@dataclass
class Node:
    """One op: ``outputs[0] = op(inputs, params, attrs)``."""

    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)  # role -> tensor name

    def to_json(self):
        return {"op": self.op, "name": self.name, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "attrs": dict(self.attrs), "params": dict(self.params)}


@dataclass
class Tensor:
    """A parameter tensor as stored: encoded data and per-channel scales."""

    name: str
    encoding: str
    shape: tuple
    data: object  # numpy array in the storage dtype (often a view of the mapped file)
    scales: object = None  # float32 per output channel, for integer encodings

    def decode(self, out=None):
        from .quant import decode
        return decode(self.data, self.scales, out)

    @property
    def nbytes(self):
        return self.data.nbytes + (0 if self.scales is None else self.scales.nbytes)


@dataclass
class Graph:
    """A whole model in memory: metadata, nodes, parameter tensors."""

    meta: dict
    nodes: list
    tensors: dict  # name -> Tensor
    source: object = None  # what keeps mapped tensor data alive

    @property
    def input_name(self):
        return self.meta["input"]["name"]

    @property
    def input_shape(self):
        return tuple(self.meta["input"]["shape"])

    @property
    def output_name(self):
        return self.meta["output"]

    @property
    def output_node(self):
        """The node that produces the model's output (None when the output
        is the input).  Nodes may follow it in the list: they do not count."""
        return next((n for n in self.nodes if self.output_name in n.outputs), None)

    def classes(self, shapes=None):
        """How many class scores the output holds: C for an (N, C) or
        (N, 1, 1, C) output, None for an output that is not one vector per
        image (a feature map)."""
        shape = (shapes or self.shapes())[self.output_name]
        return shape[-1] if all(d == 1 for d in shape[1:-1]) else None

    @property
    def labels(self):
        return self.meta.get("labels", [])

    def shapes(self, batch=1):
        """Every activation's shape for a batch size, checked (see infer_shapes)."""
        return infer_shapes(self, batch)

    def weight_nodes(self):
        return [n for n in self.nodes if "weight" in n.params]


# --- attribute readers -------------------------------------------------------

def _ints(attrs, key, n, default=None, node=None):
    v = attrs.get(key, default)
    if not isinstance(v, list) or len(v) != n or not all(map(is_int, v)):
        raise DeviceNetError(f"node {node}: attribute {key!r} must be a list of {n} integers, got {v!r}")
    return v


def _num(attrs, key, default=None, node=None, allow_none=False):
    v = attrs.get(key, default)
    if v is None and allow_none:
        return None
    if not is_num(v):
        raise DeviceNetError(f"node {node}: attribute {key!r} must be a finite number, got {v!r}")
    return v


def window(attrs, node):
    """Kernel, stride, pads (top, left, bottom, right) and dilation of a windowed op."""
    k = _ints(attrs, "kernel", 2, node=node)
    s = _ints(attrs, "stride", 2, [1, 1], node)
    p = _ints(attrs, "pads", 4, [0, 0, 0, 0], node)
    d = _ints(attrs, "dilation", 2, [1, 1], node)
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0 or max(k + s + d + p) > MAX_DIM:
        raise DeviceNetError(f"node {node}: kernel, stride, dilation and pads must be positive and small")
    return k, s, p, d


def window_out(h, w, attrs, node):
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = window(attrs, node)
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    oh = (h + pt + pb - eh) // sh + 1
    ow = (w + pl + pr - ew) // sw + 1
    if oh < 1 or ow < 1:
        raise DeviceNetError(f"node {node}: window larger than its {h}x{w} input")
    return oh, ow


def activation(attrs, node):
    a = attrs.get("activation", "none")
    if a not in ACTIVATIONS and a not in CURVES:
        raise DeviceNetError(f"node {node}: unknown activation {a!r}")
    return a


# --- shape functions: (node, input shapes, param shapes) -> output shape ---------

def _need4(shape, node):
    if len(shape) != 4:
        raise DeviceNetError(f"node {node}: expects an NHWC input, got shape {shape}")


def _conv(node, ins, ps):
    (n, h, w, c), = ins
    wshape = ps["weight"]
    g = node.attrs.get("groups", 1)
    if not isinstance(g, int) or g < 1 or c % g:
        raise DeviceNetError(f"node {node.name}: groups {g!r} does not divide {c} input channels")
    kh, kw = _ints(node.attrs, "kernel", 2, node=node.name)
    if len(wshape) != 4 or tuple(wshape[1:]) != (kh, kw, c // g) or wshape[0] % g:
        raise DeviceNetError(f"node {node.name}: weight shape {wshape} does not fit kernel {kh}x{kw}, "
                             f"{c} channels, {g} groups")
    _bias(node, ps, wshape[0])
    activation(node.attrs, node.name)
    return (n,) + window_out(h, w, node.attrs, node.name) + (wshape[0],)


def _bias(node, ps, cout):
    if "bias" in ps and tuple(ps["bias"]) != (cout,):
        raise DeviceNetError(f"node {node.name}: bias shape {ps['bias']} should be ({cout},)")


def _dense(node, ins, ps):
    """Over the last axis of a tensor of any rank (the tokens of a transformer)."""
    (shape,) = ins
    wshape = ps["weight"]
    if len(wshape) != 2 or wshape[1] != shape[-1]:
        raise DeviceNetError(f"node {node.name}: weight {wshape} does not fit input {shape}")
    _bias(node, ps, wshape[0])
    activation(node.attrs, node.name)
    return shape[:-1] + (wshape[0],)


def _same(node, ins, ps):
    return ins[0]


def _add(node, ins, ps):
    a, b = ins
    if a != b:
        raise DeviceNetError(f"node {node.name}: cannot add shapes {a} and {b}")
    activation(node.attrs, node.name)
    return a


def _affine(node, ins, ps):
    """Scale and shift broadcast against the input, numpy's way: one value,
    one per channel (the last axis), or any shape whose axes are 1 or the
    input's (a position embedding, an attention bias)."""
    x = ins[0]
    for role in ("scale", "shift"):
        p = tuple(ps.get(role, (1,)))
        if len(p) > len(x) or any(i not in (1, j) for i, j in zip(p[::-1], x[::-1])):
            raise DeviceNetError(f"node {node.name}: {role} shape {p} does not broadcast to {x}")
    return x


def _broadcast(node, ins, ps):
    """Elementwise over two inputs of equal rank, numpy broadcasting (the
    squeeze-excitation gate: (N, H, W, C) times (N, 1, 1, C))."""
    a, b = ins
    if len(a) != len(b) or any(i != j and 1 not in (i, j) for i, j in zip(a, b)):
        raise DeviceNetError(f"node {node.name}: shapes {a} and {b} do not broadcast")
    return tuple(max(i, j) for i, j in zip(a, b))


def multiply_adds(node, shapes, weight_shape):
    """A node's multiply-adds: each output value times the weights it reads
    (a product of two activations: times their shared dimension); 0 for the
    ops without either.  ``weight_shape(tensor name)`` gives a weight's
    shape."""
    out = math.prod(shapes[node.outputs[0]])
    if "weight" in node.params:
        return out * math.prod(weight_shape(node.params["weight"])[1:])
    if node.op == "matmul":
        return out * shapes[node.inputs[0]][-1]
    return 0


def _curve(node, ins, ps):
    for key in ("alpha", "beta"):
        if key in node.attrs:
            _num(node.attrs, key, None, node.name)
    return ins[0]


def _slice(node, ins, ps):
    """Channels start:stop of the input (its last axis)."""
    c = ins[0][-1]
    start, stop = node.attrs.get("start"), node.attrs.get("stop")
    if not (is_int(start) and is_int(stop) and 0 <= start < stop <= c):
        raise DeviceNetError(f"node {node.name}: channels {start!r}:{stop!r} do not lie in 0:{c}")
    return ins[0][:-1] + (stop - start,)


def _shuffle(node, ins, ps):
    g, c = node.attrs.get("groups"), ins[0][-1]
    if not is_int(g) or g < 1 or c % g:
        raise DeviceNetError(f"node {node.name}: {g!r} groups do not divide {c} channels")
    return ins[0]


def _clip(node, ins, ps):
    _num(node.attrs, "min", None, node.name, allow_none=True)
    _num(node.attrs, "max", None, node.name, allow_none=True)
    return ins[0]


def _covered(size, k, s, p, d, out):
    """Whether every one of ``out`` windows (kernel k, stride s, leading pad
    p, dilation d) along an axis of ``size`` pixels has a tap on a pixel."""
    start = np.arange(out, dtype=np.int64) * s - p  # first tap of each window
    first = np.maximum(0, -(start // d))  # index of its first tap at or after pixel 0
    return bool(np.all((first < k) & (start + first * d < size)))


def _pool(node, ins, ps):
    (n, h, w, c), = ins
    oh, ow = window_out(h, w, node.attrs, node.name)
    if node.op == "maxpool" or not node.attrs.get("count_include_pad", False):
        # A window wholly in the padding has no pixel to take the maximum or
        # the mean of: the answer would be -inf or 0/0.
        (kh, kw), (sh, sw), (pt, pl, _, _), (dh, dw) = window(node.attrs, node.name)
        if not (_covered(h, kh, sh, pt, dh, oh) and _covered(w, kw, sw, pl, dw, ow)):
            raise DeviceNetError(f"node {node.name}: a pooling window lies wholly in the padding")
    return (n, oh, ow, c)


def _global_pool(node, ins, ps):
    (n, h, w, c), = ins
    return (n, 1, 1, c)


def _flatten(node, ins, ps):
    (shape,) = ins
    return (shape[0], math.prod(shape[1:]))


def _concat(node, ins, ps):
    """Along ``axis`` (default the last; older writers always wrote -1)."""
    first = ins[0]
    axis = node.attrs.get("axis", -1)
    if not is_int(axis) or not -len(first) <= axis < len(first):
        raise DeviceNetError(f"node {node.name}: axis {axis!r} is not an axis of {first}")
    axis %= len(first)
    for s in ins[1:]:
        if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise DeviceNetError(f"node {node.name}: cannot concatenate shapes {first} and {s}")
    return first[:axis] + (sum(s[axis] for s in ins),) + first[axis + 1:]


def _lrn(node, ins, ps):
    size = node.attrs.get("size")
    if not isinstance(size, int) or not 1 <= size <= 1024:
        raise DeviceNetError(f"node {node.name}: LRN size must be a small positive integer")
    for key in ("alpha", "beta", "bias"):
        _num(node.attrs, key, None, node.name)
    if node.attrs["alpha"] < 0 or node.attrs["bias"] <= 0:
        # (bias + alpha/size * sum of squares) ** beta must stay positive
        raise DeviceNetError(f"node {node.name}: LRN needs alpha >= 0 and bias > 0")
    return ins[0]


def _pad(node, ins, ps):
    (n, h, w, c), = ins
    t, l, b, r = _ints(node.attrs, "pads", 4, node=node.name)
    if min(t, l, b, r) < 0 or max(t, l, b, r) > MAX_DIM:
        raise DeviceNetError(f"node {node.name}: pads must be non-negative")
    _num(node.attrs, "value", 0.0, node.name)
    return (n, h + t + b, w + l + r, c)


def _rank(shape, node):
    if not 2 <= len(shape) <= 4:
        raise DeviceNetError(f"node {node.name}: activations have 2 to 4 axes, not {len(shape)}")
    return shape


def _reshape(node, ins, ps):
    """The input's elements in order under another shape (no data moves)."""
    target = tuple(_rank(node.attrs.get("shape") or (), node))
    if not is_kind(list(target), DIMS) or math.prod(target) != math.prod(ins[0]):
        raise DeviceNetError(f"node {node.name}: cannot reshape {ins[0]} to {list(target)}")
    return target


def _rearrange(node, ins, ps):
    """Output element i (in order) is input element ``offset + sum(index_k *
    strides[k])``, index the position of i in the index space ``dims``: any
    transpose, slice with steps, picked index or window partition of the
    input, at once."""
    a = node.attrs
    dims, strides, offset = a.get("dims"), a.get("strides"), a.get("offset", 0)
    out = tuple(_rank(a.get("shape") or (), node))
    if not (is_kind(dims, DIMS) and is_kind(strides, STRIDES) and len(dims) == len(strides)
            and is_kind(list(out), DIMS) and is_int(offset) and 0 <= offset <= MAX_ELEMENTS):
        raise DeviceNetError(f"node {node.name}: rearrange needs dims and strides of equal length, an offset "
                             "and an output shape")
    last = offset + sum((d - 1) * s for d, s in zip(dims, strides))
    if math.prod(out) != math.prod(dims) or last >= math.prod(ins[0]):
        raise DeviceNetError(f"node {node.name}: index space {dims} (strides {strides}, offset {offset}) "
                             f"does not fit input {ins[0]} and output {list(out)}")
    return out


def _constant(node, ins, ps):
    return _rank(tuple(ps["value"]), node)


def _layernorm(node, ins, ps):
    """Normalised over the last axis, then scaled and shifted per channel."""
    c = ins[0][-1]
    for role in ("scale", "shift"):
        if role in ps and tuple(ps[role]) != (c,):
            raise DeviceNetError(f"node {node.name}: {role} shape {ps[role]} should be ({c},)")
    if _num(node.attrs, "epsilon", 1e-5, node.name) <= 0:
        raise DeviceNetError(f"node {node.name}: epsilon must be positive")
    return ins[0]


def _matmul(node, ins, ps):
    """a @ b (b transposed in its last two axes with transpose_b) over
    batches of matrices; batch axes of size 1 broadcast."""
    a, b = ins
    if node.attrs.get("transpose_b", False):
        b = b[:-2] + (b[-1], b[-2])
    if len(a) != len(b) or a[-1] != b[-2] or any(i != j and 1 not in (i, j) for i, j in zip(a[:-2], b[:-2])):
        raise DeviceNetError(f"node {node.name}: cannot multiply matrices of shapes {ins[0]} and {ins[1]}")
    return tuple(max(i, j) for i, j in zip(a[:-2], b[:-2])) + (a[-2], b[-1])


@dataclass(frozen=True)
class OpSpec:
    shape: object  # shape function
    params: tuple = ()  # required parameter roles
    optional: tuple = ()  # optional parameter roles
    arity: object = 1  # number of activation inputs; None = one or more
    nhwc: bool = False  # needs 4-D input
    attrs: dict = field(default_factory=dict)  # attribute -> kind (see is_kind)
    #: its attributes name whole shapes, batch included: the graph runs the
    #: batch size it was made for (backends run larger batches image by image)
    fixed_batch: bool = False


_WINDOW = {"kernel": "2 integers", "stride": "2 integers", "pads": "4 integers", "dilation": "2 integers"}

OPS = {
    "conv": OpSpec(_conv, ("weight",), ("bias",), nhwc=True,
                   attrs={**_WINDOW, "groups": INT, "activation": STR, "pad_value": NUM}),
    "dense": OpSpec(_dense, ("weight",), ("bias",), attrs={"activation": STR}),
    "add": OpSpec(_add, arity=2, attrs={"activation": STR}),
    "affine": OpSpec(_affine, (), ("scale", "shift")),
    "clip": OpSpec(_clip, attrs={"min": (NUM, None), "max": (NUM, None)}),
    "maxpool": OpSpec(_pool, nhwc=True, attrs=_WINDOW),
    "avgpool": OpSpec(_pool, nhwc=True, attrs={**_WINDOW, "count_include_pad": (BOOL, None), "pad_value": NUM}),
    "global_avgpool": OpSpec(_global_pool, nhwc=True),
    "flatten": OpSpec(_flatten),
    "concat": OpSpec(_concat, arity=None, attrs={"axis": INT}),
    "softmax": OpSpec(_same, attrs={"axis": INT}),
    "lrn": OpSpec(_lrn, nhwc=True, attrs={"size": INT, "alpha": NUM, "beta": NUM, "bias": NUM}),
    "pad": OpSpec(_pad, nhwc=True, attrs={"pads": "4 integers", "value": NUM}),
    "mul": OpSpec(_broadcast, arity=2),
    "sigmoid": OpSpec(_curve),
    "hardsigmoid": OpSpec(_curve, attrs={"alpha": NUM, "beta": NUM}),
    "hardswish": OpSpec(_curve),
    "silu": OpSpec(_curve),
    "slice": OpSpec(_slice, attrs={"start": INT, "stop": INT}),
    "channel_shuffle": OpSpec(_shuffle, attrs={"groups": INT}),
    "gelu": OpSpec(_curve),
    "reshape": OpSpec(_reshape, attrs={"shape": DIMS}, fixed_batch=True),
    "rearrange": OpSpec(_rearrange, attrs={"dims": DIMS, "strides": STRIDES, "offset": INT, "shape": DIMS},
                        fixed_batch=True),
    "constant": OpSpec(_constant, ("value",), arity=0, fixed_batch=True),
    "layernorm": OpSpec(_layernorm, (), ("scale", "shift"), attrs={"epsilon": NUM}),
    "matmul": OpSpec(_matmul, arity=2, attrs={"transpose_b": BOOL}),
}


def fixed_batch(graph):
    """The batch size the graph's ops fix (that of its declared input), or
    None when it runs any batch."""
    if any(OPS[n.op].fixed_batch for n in graph.nodes if n.op in OPS):
        return graph.meta["input"]["shape"][0]
    return None


def infer_shapes(graph, batch=1):
    """Check the graph and return ``{activation name: shape}``.

    Raises DeviceNetError for an unknown op, a dangling input, a parameter of
    the wrong shape, or activations larger than MAX_ELEMENTS.
    """
    meta_shape = graph.meta["input"]["shape"]
    fixed = fixed_batch(graph)
    if fixed is not None and batch != fixed:
        raise DeviceNetError(f"the model's ops fix its batch size to {fixed}: run {batch} images "
                             f"{fixed} at a time")
    shapes = {graph.input_name: (batch,) + tuple(meta_shape[1:])}
    for node in graph.nodes:
        spec = OPS.get(node.op)
        if spec is None:
            raise DeviceNetError(f"node {node.name}: unknown op {node.op!r} (the model may need a newer devicenet)")
        if len(node.outputs) != 1:
            raise DeviceNetError(f"node {node.name}: expects exactly one output")
        if (spec.arity is None and not node.inputs) or (spec.arity is not None and len(node.inputs) != spec.arity):
            raise DeviceNetError(f"node {node.name}: wrong number of inputs ({len(node.inputs)})")
        missing = [i for i in node.inputs if i not in shapes]
        if missing:
            raise DeviceNetError(f"node {node.name}: input {missing[0]!r} is not produced before it")
        roles = set(node.params)
        if not set(spec.params) <= roles or not roles <= set(spec.params + spec.optional):
            raise DeviceNetError(f"node {node.name}: parameters {sorted(roles)} do not match op {node.op}")
        ps = {}
        for role, tname in node.params.items():
            if tname not in graph.tensors:
                raise DeviceNetError(f"node {node.name}: parameter tensor {tname!r} is missing")
            ps[role] = tuple(graph.tensors[tname].shape)
        ins = [shapes[i] for i in node.inputs]
        if spec.nhwc:
            _need4(ins[0], node.name)
        out = tuple(spec.shape(node, ins, ps))
        if math.prod(out) > MAX_ELEMENTS or min(out) < 1:
            raise DeviceNetError(f"node {node.name}: output shape {out} is out of range")
        if node.outputs[0] in shapes:
            raise DeviceNetError(f"node {node.name}: output {node.outputs[0]!r} is produced twice")
        shapes[node.outputs[0]] = out
    if graph.output_name not in shapes:
        raise DeviceNetError(f"the model's output {graph.output_name!r} is not produced by any node")
    return shapes
