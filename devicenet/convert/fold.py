"""Constant folding for ONNX graphs: ops over constants, computed once with numpy.

Exporters leave arithmetic on constants in graphs: ``Identity`` of a shared
weight, ``Unsqueeze`` of a per-channel vector, ``Reshape`` of a weight
before its ``Gemm``, shape arithmetic (``Shape`` -> ``Gather`` -> ``Div``
-> ``Slice`` bounds).  The importer computes each node whose inputs are all
constants with the function in ``FOLD`` and keeps its outputs as constants,
so the op handlers only ever meet activations computed by the network.
"""

import math

import numpy as np


def _axes(ins, a, i=1):
    """An axes list given as attribute (older opsets) or as input i."""
    if len(ins) > i and ins[i] is not None:
        return [int(v) for v in ins[i].reshape(-1)]
    return list(a.get("axes", []))


def _unsqueeze(ins, a):
    x = ins[0]
    axes = sorted(ax % (x.ndim + len(_axes(ins, a))) for ax in _axes(ins, a))
    for ax in axes:
        x = np.expand_dims(x, ax)
    return x


def _squeeze(ins, a):
    axes = _axes(ins, a)
    return np.squeeze(ins[0], axis=tuple(axes) if axes else None)


def _reshape(ins, a):
    x, shape = ins[0], [int(v) for v in ins[1]]
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


def _slice(ins, a):
    x = ins[0]
    starts, ends = (list(a[k]) if k in a else [int(v) for v in ins[i]] for i, k in ((1, "starts"), (2, "ends")))
    axes = _axes(ins, a, 3) if len(ins) > 3 or "axes" in a else list(range(len(starts)))
    steps = [int(v) for v in ins[4]] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[ax] = slice(s, e, st)
    return x[tuple(index)]


def _div(ins, a):
    x, y = ins
    if x.dtype.kind in "iu" and y.dtype.kind in "iu":
        return (np.trunc(x / y)).astype(x.dtype)  # ONNX integer division truncates
    return x / y


def _cast(ins, a):
    from onnx import helper
    return ins[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))


def _constant_of_shape(ins, a):
    from onnx import numpy_helper
    value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    return np.full([int(v) for v in ins[0]], value.reshape(-1)[0], value.dtype)


def _split(ins, a, n_out):
    x, axis = ins[0], a.get("axis", 0)
    parts = a.get("split") or (list(ins[1]) if len(ins) > 1 and ins[1] is not None else None)
    if parts is None:
        parts = [-(-x.shape[axis] // n_out)] * n_out
    return np.split(x, np.cumsum(parts)[:-1], axis=axis)


def _scatter_nd(ins, a):
    """A copy of the data with the updates written at the index tuples
    (the shifted-window mask of Swin is built so)."""
    data, idx, updates = ins
    out = np.array(data)
    k = idx.shape[-1]
    flat_idx = idx.reshape(-1, k)
    flat_up = updates.reshape((flat_idx.shape[0],) + data.shape[k:])
    for i, u in zip(flat_idx, flat_up):
        out[tuple(i)] = u
    return out


def _same_type(f):
    """Elementwise arithmetic keeping the first operand's type (shape maths stays int64)."""
    return lambda ins, a: np.asarray(f(*ins)).astype(np.result_type(*ins))


#: ONNX op -> function(input arrays, attributes) -> output array (a list for several outputs)
FOLD = {
    "Identity": lambda ins, a: ins[0],
    "Dropout": lambda ins, a: ins[0],
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Flatten": lambda ins, a: ins[0].reshape(int(np.prod(ins[0].shape[:a.get("axis", 1)])), -1),
    "Transpose": lambda ins, a: np.transpose(ins[0], a.get("perm")),
    "Gather": lambda ins, a: np.take(ins[0], ins[1], axis=a.get("axis", 0)),
    "Concat": lambda ins, a: np.concatenate(ins, axis=a["axis"]),
    "Slice": _slice,
    "Split": None,  # several outputs: see fold
    "Shape": lambda ins, a: np.array(ins[0].shape[a.get("start", 0):a.get("end")], np.int64),
    "Cast": _cast,
    "ConstantOfShape": _constant_of_shape,
    "Add": _same_type(np.add),
    "Sub": _same_type(np.subtract),
    "Mul": _same_type(np.multiply),
    "Div": _div,
    "Sum": lambda ins, a: sum(ins[1:], ins[0]),
    "Neg": lambda ins, a: -ins[0],
    "Sqrt": lambda ins, a: np.sqrt(ins[0]),
    "Reciprocal": lambda ins, a: 1 / ins[0],
    "Pow": _same_type(np.power),
    "Floor": lambda ins, a: np.floor(ins[0]),
    "Ceil": lambda ins, a: np.ceil(ins[0]),
    "Min": lambda ins, a: np.minimum.reduce(ins),
    "Max": lambda ins, a: np.maximum.reduce(ins),
    "Equal": lambda ins, a: np.equal(*ins),
    "Where": lambda ins, a: np.where(*ins),
    "Expand": lambda ins, a: ins[0] * np.ones([int(v) for v in ins[1]], ins[0].dtype),
    "Range": lambda ins, a: np.arange(ins[0], ins[1], ins[2]).astype(ins[0].dtype),
    "Mod": lambda ins, a: (np.fmod if a.get("fmod", 0) else np.mod)(ins[0], ins[1]),
    "Not": lambda ins, a: np.logical_not(ins[0]),
    "And": lambda ins, a: np.logical_and(*ins),
    "Or": lambda ins, a: np.logical_or(*ins),
    "Less": lambda ins, a: np.less(*ins),
    "Greater": lambda ins, a: np.greater(*ins),
    "ScatterND": _scatter_nd,
    "Erf": lambda ins, a: np.vectorize(math.erf, otypes=[ins[0].dtype])(ins[0]),
}


def fold(op, ins, attrs, n_out):
    """The outputs (a list) of ONNX op ``op`` over constant inputs (None for
    an omitted optional input)."""
    if op == "Split":
        return _split(ins, attrs, n_out)
    return [np.asarray(FOLD[op](ins, attrs))]
