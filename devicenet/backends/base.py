"""The interface every backend implements, and the buffer planning the
backends that run whole graphs share."""

import math
import time
from typing import NamedTuple

import numpy as np

from ..errors import DeviceNetError


def last_uses(nodes, start=0):
    """Activation name -> index of the last node (counted from ``start``)
    that reads it."""
    last = {}
    for i, node in enumerate(nodes[start:], start):
        for name in node.inputs:
            last[name] = i
    return last


class Arena:
    """Buffers handed out and taken back in plan order, by size (in
    elements): a buffer is reused by a later value once every reader of its
    value has run.  Only sizes are planned; the backend makes the buffers."""

    def __init__(self):
        self.sizes, self.free = [], []

    def take(self, size):
        fits = [i for i in self.free if self.sizes[i] >= size]
        if fits:
            i = min(fits, key=lambda k: self.sizes[k])
            self.free.remove(i)
        elif self.free:  # grow the largest free buffer rather than add one
            i = max(self.free, key=lambda k: self.sizes[k])
            self.free.remove(i)
            self.sizes[i] = size
        else:
            i = len(self.sizes)
            self.sizes.append(size)
        return i

    def give(self, i):
        self.free.append(i)


class BufferPlan(NamedTuple):
    """Where a graph's values live (``plan_buffers``)."""

    #: per node: (output slot or None, scratch slots, values to drop after it)
    steps: list
    #: value -> slot of the buffer it lives in (a view's: its root's)
    where: dict
    #: slot sizes, in elements
    sizes: list


def plan_buffers(graph, shapes, aliased, temps=lambda i: (), own_ends=False):
    """One arena for a graph's values, each buffer reused once its value is
    dead.  ``aliased(i)``: node i's output is a view of its first input, so
    that input's buffer lives as long as the view.  ``temps(i)``: the sizes
    of node i's scratch buffers (0 for none), free again after it.  With
    ``own_ends`` the graph's input and output get buffers of the arena too
    (a device uploads into and downloads from them); without, the caller
    holds them."""
    nodes = graph.nodes
    last = last_uses(nodes)
    root = {}  # value -> the value whose buffer it views
    for i, node in enumerate(nodes):
        if aliased(i) and node.inputs:
            root[node.outputs[0]] = root.get(node.inputs[0], node.inputs[0])
    live = dict(last)  # a buffer lives until the last use of any view of it
    for name, r in root.items():
        live[r] = max(live.get(r, -1), live.get(name, -1))
    # The caller keeps the graph's output, and so whatever buffer it views.
    kept = {graph.output_name, root.get(graph.output_name, graph.output_name)}
    arena, where, steps = Arena(), {}, []
    if own_ends:
        where[graph.input_name] = arena.take(math.prod(shapes[graph.input_name]))
    for i, node in enumerate(nodes):
        name = node.outputs[0]
        out = None
        if not aliased(i) and (own_ends or name not in kept):
            out = where[name] = arena.take(math.prod(shapes[name]))
        scratch = [arena.take(t) if t else None for t in temps(i)]
        for t in scratch:
            if t is not None:
                arena.give(t)
        drop = [n for n in node.inputs if last.get(n) == i and n != graph.output_name]
        for r in set(root.get(n, n) for n in drop):
            if live.get(r) == i and r in where and r not in kept:
                arena.give(where[r])
        steps.append((out, scratch, drop))
    where.update((name, where[r]) for name, r in root.items() if r in where)
    return BufferPlan(steps, where, arena.sizes)


def is_depthwise(groups, channels, weight_shape):
    """Whether a convolution with ``groups`` over ``channels`` input channels
    and weights (Cout, KH, KW, Cin/groups) is depthwise: one filter per channel."""
    cout, _, _, cin_g = weight_shape
    return groups == channels and cin_g == 1 and cout == groups


def is_pointwise(attrs, weight_shape):
    """Whether a convolution (attributes ``attrs``, weights (Cout, KH, KW,
    Cin/groups)) is 1x1, stride 1, unpadded and ungrouped: one GEMM over
    the pixels."""
    return (tuple(weight_shape[1:3]) == (1, 1) and attrs.get("groups", 1) == 1
            and attrs.get("stride", [1, 1]) == [1, 1] and not any(attrs.get("pads", [0] * 4)))


class Backend:
    """Runs one loaded graph.  Subclasses implement ``run_node`` (and may
    override ``run`` when they keep activations somewhere else, e.g. on a GPU)."""

    name = "?"

    def __init__(self, graph, threads=None, residency="resident"):
        if residency not in ("resident", "streamed"):
            raise DeviceNetError(f"unknown weight residency {residency!r}; use resident or streamed")
        self.graph = graph
        self.threads = threads
        self.residency = residency

    def run_node(self, node, inputs):
        raise NotImplementedError

    def prepare(self, shape):
        """Do the one-time work for input batches of ``shape`` (weights laid
        out, buffers planned) that the first ``run`` would otherwise do;
        return whether there was any."""
        return False

    def run(self, x, profile=None):
        """Run the graph on an input batch; return the output array.

        With ``profile`` (a list), append ``(node, output shape, seconds)`` for
        every node.
        """
        g = self.graph
        values = {g.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        # Free each activation after its last use, so memory stays at the
        # working set of a layer rather than the whole network.
        last = last_uses(g.nodes)
        for i, node in enumerate(g.nodes):
            t0 = time.perf_counter() if profile is not None else 0.0
            out = self.run_node(node, [values[n] for n in node.inputs])
            values[node.outputs[0]] = out
            if profile is not None:
                profile.append((node, tuple(out.shape), time.perf_counter() - t0))
            for name in node.inputs:
                if last.get(name) == i and name != g.output_name:
                    values.pop(name, None)  # a node may take one input twice (x + x)
        return values[g.output_name]
