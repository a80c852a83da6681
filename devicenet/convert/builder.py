"""Building a graph from float weights, then encoding it.

Importers (ONNX, PyTorch checkpoints) describe a network to a Builder with
float32 parameters in devicenet's layout; ``Builder.graph`` encodes the
parameters (per a policy that names an encoding for each tensor) and returns
a Graph ready to run or write.
"""

import numpy as np

from ..errors import DeviceNetError
from ..graph import OPS, Graph, Node, Tensor
from ..quant import encode


def fold_batchnorm(weight, bias, gamma, beta, mean, var, eps):
    """Fold y = BN(conv(x)) into the conv's weight and bias (axis 0 = output channel)."""
    factor = (np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps))
    w = np.asarray(weight, np.float64) * factor.reshape((-1,) + (1,) * (np.ndim(weight) - 1))
    b = np.zeros(len(factor)) if bias is None else np.asarray(bias, np.float64)
    b = (b - mean) * factor + beta
    return w.astype(np.float32), b.astype(np.float32)


def crop_preprocess(size, mean, std):
    """Preprocessing metadata for a network trained on ``size`` crops: resize
    the shorter side to size / 0.875 (the usual ImageNet evaluation), centre
    crop ``size``, then ``(pixel - mean) / std`` in RGB order."""
    return {"resize": int(round(size / 0.875)), "crop": size, "interpolation": "bilinear",
            "mean": list(mean), "std": list(std), "channel_order": "RGB"}


def weight_encodings(graph_params, nodes, weights):
    """The plain policy: every conv and dense weight in ``weights``, the rest float32."""
    enc = {name: "float32" for name in graph_params}
    for node in nodes:
        if "weight" in node.params:
            enc[node.params["weight"]] = weights
    return enc


class Builder:
    """Collects nodes and float32 parameters in execution order."""

    def __init__(self, input_shape, input_name="input"):
        self.input_name = input_name
        self.input_shape = list(input_shape)
        self.nodes = []
        self.params = {}  # tensor name -> float32 array
        self.shapes = {input_name: tuple(input_shape)}  # activation name -> shape

    def add(self, op, inputs, attrs=None, params=None, name=None, output=None):
        """Append a node; return the name of its output."""
        name = name or f"{op}_{len(self.nodes)}"
        output = output or name
        roles = {}
        for role, arr in (params or {}).items():
            if arr is None:
                continue
            tname = f"{name}.{role}"
            self.params[tname] = np.ascontiguousarray(arr, dtype=np.float32)
            roles[role] = tname
        if isinstance(inputs, str):
            inputs = [inputs]
        node = Node(op, name, list(inputs), [output], dict(attrs or {}), roles)
        pshapes = {role: self.params[t].shape for role, t in roles.items()}
        self.shapes[output] = tuple(OPS[op].shape(node, [self.shapes[i] for i in inputs], pshapes))
        self.nodes.append(node)
        return output

    def remove(self, node):
        self.nodes.remove(node)
        for tname in node.params.values():
            del self.params[tname]

    def producer(self, tensor):
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None

    def consumers(self, tensor):
        return [n for n in self.nodes if tensor in n.inputs]

    def graph(self, meta, encodings=None, clips=None, qmax=None):
        """Encode parameters and return a Graph.  ``encodings`` maps tensor
        name -> encoding (default: int8 weights, float32 elsewhere); ``clips``
        optionally maps tensor name -> per-channel clip magnitudes, ``qmax``
        tensor name -> a narrower integer range."""
        if encodings is None:
            encodings = weight_encodings(self.params, self.nodes, "int8")
        tensors = {}
        for tname, arr in self.params.items():
            enc = encodings.get(tname, "float32")
            data, scales = encode(arr, enc, (clips or {}).get(tname), (qmax or {}).get(tname))
            tensors[tname] = Tensor(tname, enc, tuple(arr.shape), data, scales)
        meta = dict(meta)
        meta["input"] = {"name": self.input_name, "shape": self.input_shape, "layout": "NHWC"}
        if not self.nodes:
            raise DeviceNetError("the network has no ops")
        meta.setdefault("output", self.nodes[-1].outputs[0])
        return Graph(meta, list(self.nodes), tensors)
