"""How ONNX tensors live in devicenet activations: the one place that
decides layouts.

Every tensor the ONNX importer meets is a *view* of a devicenet activation:
its ONNX shape, the stride of each of its axes in the activation's
(contiguous) elements, and an offset.  A convolution's NCHW output is a view
of an NHWC activation (strides H*W*C, 1, W*C, C).  Transpose, Reshape (where
the strides allow), Slice, Gather of one index, Squeeze and Unsqueeze only
make new views; data moves when an op needs its input laid out its way, as
one ``rearrange`` (a strided copy) or, when the elements are already in
order, one ``reshape`` (free).

A *layout* is a permutation ``perm``: the activation holds the tensor
transposed by ``perm``, contiguous (``np.transpose(t, perm)``).  Images are
NHWC (``STANDARD[4]``), everything else is kept in its ONNX order unless a
view already holds it otherwise.
"""

import math
from typing import NamedTuple

import numpy as np

from ..errors import DeviceNetError
from ..graph import MAX_RANK

#: the layout a tensor of each rank gets when nothing says otherwise
STANDARD = {2: (0, 1), 3: (0, 1, 2), 4: (0, 2, 3, 1)}


def c_strides(shape):
    """Element strides of a C-ordered (row-major) array of this shape."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def fit(shape):
    """An activation shape (2 to 4 axes) for a tensor of this shape: leading
    axes merged, or a leading 1 added."""
    shape = tuple(shape)
    if len(shape) > 4:
        shape = (math.prod(shape[:-3]),) + shape[-3:]
    return (1,) * (2 - len(shape)) + shape


class View(NamedTuple):
    """An ONNX tensor as elements of an activation (see the module doc)."""

    shape: tuple
    strides: tuple
    offset: int = 0

    @classmethod
    def laid_out(cls, shape, perm):
        """The view of an activation holding a tensor of ``shape`` in layout ``perm``."""
        inner = c_strides([shape[p] for p in perm])
        strides = [0] * len(shape)
        for i, p in enumerate(perm):
            strides[p] = inner[i]
        return cls(tuple(shape), tuple(strides))

    @property
    def size(self):
        return math.prod(self.shape)

    def is_layout(self, perm, size):
        """Whether an activation of ``size`` elements holds this tensor in layout perm."""
        want = View.laid_out(self.shape, perm)
        return (self.offset == 0 and self.size == size and len(perm) == len(self.shape)
                and all(d == 1 or s == w for d, s, w in zip(self.shape, self.strides, want.strides)))

    def layout(self, held, last=None):
        """A layout in which an activation of shape ``held`` holds this view
        (with axis ``last`` last, when given), or None.  One that needs no
        reshape of the activation comes first."""
        rank, size = len(self.shape), math.prod(held)
        by_stride = sorted((a for a in range(rank) if self.shape[a] != 1 and a != last),
                           key=lambda a: (-self.strides[a], a))
        ones = [a for a in range(rank) if self.shape[a] == 1 and a != last]
        tail = [] if last is None else [last]
        found = [perm for perm in (tuple(range(rank)), STANDARD.get(rank), tuple(ones + by_stride + tail))
                 if perm and (last is None or perm[-1] == last) and self.is_layout(perm, size)]
        same = [perm for perm in found if fit([self.shape[p] for p in perm]) == tuple(held)]
        return (same or found or [None])[0]

    def transpose(self, perm):
        return View(tuple(self.shape[p] for p in perm), tuple(self.strides[p] for p in perm), self.offset)

    def reshape(self, shape):
        """The same elements in C order under another shape, without moving
        data; None where the strides do not allow it (numpy's rule)."""
        old = [(d, s) for d, s in zip(self.shape, self.strides) if d != 1]
        new, strides = list(shape), [0] * len(shape)
        oi, oj, ni, nj = 0, 1, 0, 1
        while ni < len(new) and oi < len(old):
            np_, op = new[ni], old[oi][0]
            while np_ != op:
                if np_ < op:
                    np_ *= new[nj]
                    nj += 1
                else:
                    op *= old[oj][0]
                    oj += 1
            if any(old[k][1] != old[k + 1][0] * old[k + 1][1] for k in range(oi, oj - 1)):
                return None
            strides[nj - 1] = old[oj - 1][1]
            for k in range(nj - 1, ni, -1):
                strides[k - 1] = strides[k] * new[k]
            ni, nj, oi, oj = nj, nj + 1, oj, oj + 1
        return View(tuple(new), tuple(strides), self.offset)

    def slice(self, axis, start, stop, step):
        """Elements start:stop:step along an axis (numpy's clamping); step > 0."""
        r = range(self.shape[axis])[start:stop:step]
        shape, strides = list(self.shape), list(self.strides)
        shape[axis], strides[axis] = len(r), strides[axis] * step
        return View(tuple(shape), tuple(strides), self.offset + (r.start if len(r) else 0) * self.strides[axis])

    def take(self, axis, index):
        """Index ``index`` of an axis, the axis dropped."""
        index %= self.shape[axis]
        return View(self.shape[:axis] + self.shape[axis + 1:], self.strides[:axis] + self.strides[axis + 1:],
                    self.offset + index * self.strides[axis])

    def pick(self, axis, indices):
        """Gather of a constant index array along an axis, as a view: the
        indices must form a grid (first + sum of i_k * step_k, steps >= 0:
        one index, a run, a stepped run, or what torch's as_strided exports);
        None otherwise."""
        idx = np.asarray(indices, np.int64) % self.shape[axis]
        if idx.size == 0:
            return None
        first = int(idx.reshape(-1)[0])
        steps = [int(idx[(0,) * k + (1,) + (0,) * (idx.ndim - k - 1)]) - first if idx.shape[k] > 1 else 0
                 for k in range(idx.ndim)]
        grid = first + sum(np.arange(d).reshape((-1,) + (1,) * (idx.ndim - k - 1)) * st
                           for k, (d, st) in enumerate(zip(idx.shape, steps)))
        if min(steps, default=0) < 0 or not np.array_equal(idx, np.broadcast_to(grid, idx.shape)):
            return None
        stride = self.strides[axis]
        return View(self.shape[:axis] + idx.shape + self.shape[axis + 1:],
                    self.strides[:axis] + tuple(st * stride for st in steps) + self.strides[axis + 1:],
                    self.offset + first * stride)

    def unsqueeze(self, axes):
        shape, strides = list(self.shape), list(self.strides)
        for a in sorted(a % (len(shape) + len(axes)) for a in axes):
            shape.insert(a, 1)
            strides.insert(a, 0)
        return View(tuple(shape), tuple(strides), self.offset)

    def squeeze(self, axes):
        axes = {a % len(self.shape) for a in axes}
        keep = [a for a in range(len(self.shape)) if a not in axes]
        return View(tuple(self.shape[a] for a in keep), tuple(self.strides[a] for a in keep), self.offset)

    def gather(self, perm, where):
        """The attributes of the ``rearrange`` that copies this view into
        layout ``perm`` (axes of size 1 dropped and runs of axes that are
        contiguous merged, so that at most MAX_RANK remain)."""
        dims, strides = [], []
        for p in perm:
            d, s = self.shape[p], self.strides[p]
            if d == 1:
                continue
            if dims and strides[-1] == d * s:
                dims[-1] *= d
                strides[-1] = s
            else:
                dims.append(d)
                strides.append(s)
        if len(dims) > MAX_RANK:
            raise DeviceNetError(f"{where}: a rearrangement over {len(dims)} axes (more than {MAX_RANK})")
        return {"dims": dims or [1], "strides": strides or [0], "offset": self.offset,
                "shape": list(fit([self.shape[p] for p in perm]))}


def broadcast_shape(a, b, where):
    """numpy's broadcast of two shapes."""
    rank = max(len(a), len(b))
    a, b = (1,) * (rank - len(a)) + tuple(a), (1,) * (rank - len(b)) + tuple(b)
    if any(i != j and 1 not in (i, j) for i, j in zip(a, b)):
        raise DeviceNetError(f"{where}: shapes {a} and {b} do not broadcast")
    return tuple(max(i, j) for i, j in zip(a, b))


def collapse(shape, other):
    """Merge neighbouring axes of ``shape`` where ``other`` (a shape of the
    same rank broadcast against it) is either whole or 1 on both, until at
    most 4 axes remain; returns the two merged shapes, or None."""
    groups = []
    for d, o in zip(shape, other):
        kind = o == d if d != 1 else None
        if groups and (kind is None or groups[-1][2] is None or groups[-1][2] == kind):
            g = groups[-1]
            groups[-1] = (g[0] * d, g[1] * o, g[2] if kind is None else kind)
        else:
            groups.append((d, o, kind))
    if len(groups) > 4:
        return None
    return fit([g[0] for g in groups]), fit([g[1] for g in groups])
