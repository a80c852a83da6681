"""The interface every backend implements."""

import time

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


def is_depthwise(groups, channels, weight_shape):
    """Whether a convolution with ``groups`` over ``channels`` input channels
    and weights (Cout, KH, KW, Cin/groups) is depthwise: one filter per channel."""
    cout, _, _, cin_g = weight_shape
    return groups == channels and cin_g == 1 and cout == groups


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
