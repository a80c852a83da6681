"""Importer for ONNX models (via the ``onnx`` package).

ONNX activations are NCHW; devicenet's are NHWC, so weights are transposed
once here and every channel axis becomes the last one.  BatchNormalization
folds into the convolution before it, ReLU/Clip fuse into the op before
them (and so do sigmoid, hard sigmoid, and the SiLU and hard-swish spelt
``x * Sigmoid(x)`` and ``x * HardSigmoid(x)``), zero Pad folds into the
following convolution or pooling, and Dropout/Identity disappear.  Nodes
over constants are computed once (``fold``); a channel shuffle spelt as
Reshape -> Transpose -> Reshape becomes one op.
"""

import math
import sys

import numpy as np

from ..errors import DeviceNetError
from .builder import Builder, crop_preprocess, fold_batchnorm
from .fold import FOLD, fold

IMAGENET_PREPROCESS = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}


def _node_name(node):
    """A node by its name, or by its first output when unnamed."""
    return node.name or (f"computing {node.output[0]!r}" if node.output else node.op_type)


def _error(node, msg):
    """A DeviceNetError that names the ONNX op and node."""
    return DeviceNetError(f"ONNX {node.op_type} node {_node_name(node)}: {msg}")


def _note(msg):
    """An assumption the conversion makes, said on stderr."""
    print(f"devicenet: note: {msg}", file=sys.stderr)


#: HardSigmoid's parameters as hard-swish uses them (and torch exports them)
HARD_SIGMOID = (1.0 / 6.0, 0.5)


class _Importer:
    def __init__(self, model, input_size=None):
        from onnx import numpy_helper
        self.to_array = numpy_helper.to_array
        g = model.graph
        self.consts = {i.name: self.to_array(i) for i in g.initializer}
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise DeviceNetError(f"expected one image input, the ONNX graph has {len(inputs)}")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4:
            raise DeviceNetError(f"expected an NCHW image input, got {len(dims)} dimensions")
        c = dims[1] or 3
        h = input_size or dims[2] or 224
        w = input_size or dims[3] or 224
        if not input_size and not (dims[2] and dims[3]):
            _note(f"the ONNX input's size is not fixed; assuming {h}x{w} (set it with --input-size)")
        self.b = Builder([1, h, w, c])
        self.names = {inputs[0].name: "input"}  # ONNX name -> devicenet activation
        self.flat_chw = {}  # devicenet 2-D activation -> (C, H, W) it was flattened from
        self.grouped = {}  # ONNX name -> (activation, groups, transposed): a channel shuffle under way
        self.uses = {}
        for node in g.node:
            for i in node.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in g.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
        self.graph = g
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)

    # --- helpers ---
    def act(self, name):
        if name in self.grouped:
            raise DeviceNetError(f"ONNX tensor {name!r} is a 5-D regrouping of channels that is not a channel "
                                 "shuffle (Reshape to N x g x C/g x H x W, Transpose 0,2,1,3,4, Reshape back)")
        if name not in self.names:
            raise DeviceNetError(f"ONNX tensor {name!r} is used before it is computed")
        return self.names[name]

    def const(self, name, node):
        if name not in self.consts:
            raise _error(node, f"input {name!r} must be a constant")
        return self.consts[name]

    def attrs(self, node):
        from onnx import helper
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def shape(self, act):
        return self.b.shapes[act]

    def single_use(self, onnx_name):
        return self.uses.get(onnx_name, 0) == 1

    def producer(self, act):
        return self.b.producer(act)

    def out(self, node, act):
        self.names[node.output[0]] = act
        return act

    def channel_vector(self, value, act, node):
        """A constant broadcast against NCHW or NC data, as one value per channel."""
        shape = self.shape(act)
        c = shape[-1]
        v = np.asarray(value, np.float32)
        if v.size == 1:
            return np.full(c, v.item(), np.float32)
        fits = ((c, 1, 1), (1, c, 1, 1)) if len(shape) == 4 else ((c,), (1, c))
        if v.shape not in fits:
            raise _error(node, f"constant of shape {v.shape} does not broadcast per channel")
        return v.reshape(c).copy()

    def window_attrs(self, node, a, hw, kernel):
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * 4
            for ax in range(2):
                out = math.ceil(hw[ax] / strides[ax])
                total = max(0, (out - 1) * strides[ax] + (kernel[ax] - 1) * dil[ax] + 1 - hw[ax])
                small, big = total // 2, total - total // 2
                pads[ax], pads[ax + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
        else:
            pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or len(strides) != 2 or len(dil) != 2:
            raise _error(node, "only 2-D windows are supported")
        return {"kernel": list(kernel), "stride": strides, "pads": pads, "dilation": dil}

    def fold_pad(self, x, attrs, value):
        """If x comes from a single-use zero pad, absorb it into this op's pads."""
        node = self.producer(x)
        if node is None or node.op != "pad" or node.attrs.get("value", 0.0) != value:
            return x
        if len(self.b.consumers(x)) or not self.single_use(node.attrs.get("_onnx_output")):
            return x
        t, l, b_, r = node.attrs["pads"]
        p = attrs["pads"]
        attrs["pads"] = [p[0] + t, p[1] + l, p[2] + b_, p[3] + r]
        self.b.remove(node)
        return node.inputs[0]

    def fuse_activation(self, node, x, kind, uses=1, x_onnx=None):
        """Fuse an activation into the op producing x when nothing else reads
        x (``uses``: how many ONNX nodes read it, this one's among them)."""
        prod = self.producer(x)
        if (prod is not None and prod.op in ("conv", "dense", "add") and prod.attrs.get("activation", "none") == "none"
                and self.uses.get(x_onnx or node.input[0], 0) == uses and not self.b.consumers(x)):
            prod.attrs["activation"] = kind
            return self.out(node, x)
        return None

    def activation(self, node, kind, attrs=None, x=None, uses=1, x_onnx=None):
        """An activation of x: fused into the op before it, else an op of its own."""
        x = x or self.act(node.input[0])
        fused = not attrs and self.fuse_activation(node, x, kind, uses, x_onnx)
        return fused or self.out(node, self.b.add(kind, x, attrs or {}, name=node.name or None))

    # --- op handlers: each reads an ONNX node and adds devicenet nodes ---
    def Conv(self, node, a):
        x = self.act(node.input[0])
        w = self.const(node.input[1], node).astype(np.float32)
        bias = self.const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        if w.ndim != 4:
            raise _error(node, "only 2-D convolution is supported")
        attrs = self.window_attrs(node, a, self.shape(x)[1:3], w.shape[2:])
        attrs["groups"] = int(a.get("group", 1))
        attrs["activation"] = "none"
        x = self.fold_pad(x, attrs, 0.0)
        return self.out(node, self.b.add("conv", x, attrs, {"weight": w.transpose(0, 2, 3, 1), "bias": bias},
                                         name=node.name or None))

    def BatchNormalization(self, node, a):
        x = self.act(node.input[0])
        gamma, beta, mean, var = (self.const(n, node).astype(np.float64) for n in node.input[1:5])
        eps = a.get("epsilon", 1e-5)
        prod = self.producer(x)
        if prod is not None and prod.op == "conv" and prod.attrs["activation"] == "none" \
                and self.single_use(node.input[0]) and not self.b.consumers(x):
            w, bias = self.b.params[prod.params["weight"]], self.b.params.get(prod.params.get("bias"))
            w, bias = fold_batchnorm(w, bias, gamma, beta, mean, var, eps)
            self.b.params[prod.params["weight"]] = w
            prod.params["bias"] = prod.params.get("bias", f"{prod.name}.bias")
            self.b.params[prod.params["bias"]] = bias
            return self.out(node, x)
        scale = gamma / np.sqrt(var + eps)
        return self.out(node, self.b.add("affine", x, {}, {"scale": scale, "shift": beta - mean * scale},
                                         name=node.name or None))

    def Relu(self, node, a):
        x = self.act(node.input[0])
        return self.fuse_activation(node, x, "relu") or self.out(
            node, self.b.add("clip", x, {"min": 0.0, "max": None}, name=node.name or None))

    def Clip(self, node, a):
        x = self.act(node.input[0])
        lo, hi = a.get("min"), a.get("max")
        if len(node.input) > 1 and node.input[1]:
            lo = float(self.const(node.input[1], node))
        if len(node.input) > 2 and node.input[2]:
            hi = float(self.const(node.input[2], node))
        kind = {(0.0, 6.0): "relu6", (0.0, None): "relu"}.get((lo, hi))
        fused = kind and self.fuse_activation(node, x, kind)
        return fused or self.out(node, self.b.add("clip", x, {"min": lo, "max": hi}, name=node.name or None))

    def Sigmoid(self, node, a):
        return self.activation(node, "sigmoid")

    def HardSigmoid(self, node, a):
        ab = (a.get("alpha", 0.2), a.get("beta", 0.5))
        if np.allclose(ab, HARD_SIGMOID, rtol=1e-6, atol=0):
            return self.activation(node, "hardsigmoid")
        return self.activation(node, "hardsigmoid", {"alpha": float(ab[0]), "beta": float(ab[1])})

    def HardSwish(self, node, a):
        return self.activation(node, "hardswish")

    def _gated(self, node):
        """x * Sigmoid(x) as SiLU and x * HardSigmoid(x) as hard swish (the
        gate's op removed), fused where they can be; None for another Mul."""
        for i in (0, 1):
            x_onnx, gate_onnx = node.input[i], node.input[1 - i]
            if x_onnx not in self.names or gate_onnx not in self.names:
                continue
            x, gate = self.names[x_onnx], self.names[gate_onnx]
            prod = self.producer(gate)
            kind = {"sigmoid": "silu", "hardsigmoid": "hardswish"}.get(getattr(prod, "op", None))
            if (kind and prod.inputs == [x] and "alpha" not in prod.attrs and self.single_use(gate_onnx)
                    and not self.b.consumers(gate)):
                self.b.remove(prod)
                return self.activation(node, kind, x=x, uses=2, x_onnx=x_onnx)
        return None

    def _binary(self, node, sign, invert=False):
        ins = list(node.input)
        if ins[0] in self.consts and ins[1] not in self.consts and not invert:
            ins.reverse()
        if ins[1] in self.consts:
            x = self.act(ins[0])
            v = self.channel_vector(self.consts[ins[1]], x, node)
            if sign == "mul":
                params = {"scale": v if not invert else 1.0 / v}
            else:
                params = {"shift": v if sign == "add" else -v}
                prod = self.producer(x)
                if (sign == "add" and prod is not None and prod.op == "dense" and "bias" not in prod.params
                        and self.single_use(node.input[0]) and not self.b.consumers(x)):
                    prod.params["bias"] = f"{prod.name}.bias"
                    self.b.params[prod.params["bias"]] = v
                    return self.out(node, x)
            return self.out(node, self.b.add("affine", x, {}, params, name=node.name or None))
        a_, b_ = self.act(ins[0]), self.act(ins[1])
        if sign == "mul":
            gated = self._gated(node)
            if gated:
                return gated
            if len(self.shape(a_)) != len(self.shape(b_)):
                raise _error(node, "Mul of tensors of different ranks is not supported (give both the same rank)")
            return self.out(node, self.b.add("mul", [a_, b_], name=node.name or None))
        if sign != "add":
            raise _error(node, f"{node.op_type} of two computed tensors is not supported "
                               "(only Add and Mul are; Sub and Div need a constant operand)")
        return self.out(node, self.b.add("add", [a_, b_], {"activation": "none"}, name=node.name or None))

    def Add(self, node, a):
        return self._binary(node, "add")

    def Sum(self, node, a):
        if len(node.input) == 1:
            return self.Identity(node, a)
        if len(node.input) > 2:
            raise _error(node, "Sum of more than two computed tensors is not supported (use Add)")
        return self._binary(node, "add")

    def Sub(self, node, a):
        return self._binary(node, "sub")

    def Mul(self, node, a):
        return self._binary(node, "mul")

    def Div(self, node, a):
        if node.input[1] not in self.consts:
            raise _error(node, "division by a computed tensor is not supported")
        return self._binary(node, "mul", invert=True)

    def _pool(self, node, a, op):
        x = self.act(node.input[0])
        attrs = self.window_attrs(node, a, self.shape(x)[1:3], a["kernel_shape"])
        if op == "avgpool":
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        x = self.fold_pad(x, attrs, 0.0) if op == "avgpool" and attrs["count_include_pad"] else x
        if a.get("ceil_mode", 0):
            self._ceil_pads(x, attrs, node)
        return self.out(node, self.b.add(op, x, attrs, name=node.name or None))

    def _ceil_pads(self, x, attrs, node):
        """Emulate ceil_mode by padding the bottom/right edge (pooling ignores it)."""
        hw = self.shape(x)[1:3]
        for ax in range(2):
            k, s = attrs["kernel"][ax], attrs["stride"][ax]
            lo, hi = attrs["pads"][ax], attrs["pads"][ax + 2]
            out = math.ceil((hw[ax] + lo + hi - k) / s) + 1
            if (out - 1) * s >= hw[ax] + lo:  # the last window must start inside the image
                out -= 1
            extra = max(0, (out - 1) * s + k - (hw[ax] + lo + hi))
            if extra and attrs.get("count_include_pad") and any(attrs["pads"]):
                raise _error(node, "ceil_mode with count_include_pad and padding is not supported")
            attrs["pads"][ax + 2] += extra
            if extra:
                attrs["count_include_pad"] = False if "count_include_pad" in attrs else None
        if attrs.get("count_include_pad") is None:
            attrs.pop("count_include_pad", None)

    def MaxPool(self, node, a):
        if len(node.output) > 1 and node.output[1]:
            raise _error(node, "MaxPool indices output is not supported")
        return self._pool(node, a, "maxpool")

    def AveragePool(self, node, a):
        return self._pool(node, a, "avgpool")

    def GlobalAveragePool(self, node, a):
        return self.out(node, self.b.add("global_avgpool", self.act(node.input[0]), name=node.name or None))

    def ReduceMean(self, node, a):
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes = self.const(node.input[1], node).tolist()
        if sorted(int(i) % 4 for i in (axes or [])) != [2, 3]:
            raise _error(node, "only the mean over H and W is supported")
        y = self.b.add("global_avgpool", self.act(node.input[0]), name=node.name or None)
        if not a.get("keepdims", 1):
            y = self.b.add("flatten", y)
        return self.out(node, y)

    def _flatten(self, node):
        x = self.act(node.input[0])
        shape = self.shape(x)
        y = self.b.add("flatten", x, name=node.name or None)
        if len(shape) == 4 and shape[1] * shape[2] > 1:
            self.flat_chw[y] = (shape[3], shape[1], shape[2])
        return self.out(node, y)

    def Flatten(self, node, a):
        if a.get("axis", 1) != 1:
            raise _error(node, "only axis=1 is supported")
        return self._flatten(node)

    def nchw(self, act):
        """The ONNX (NCHW) shape of a devicenet activation."""
        shape = self.shape(act)
        return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape

    def Reshape(self, node, a):
        target = [int(v) for v in self.const(node.input[1], node).reshape(-1)]
        if node.input[0] in self.grouped:
            x, g, transposed = self.grouped[node.input[0]]
            n, c, h, w = self.nchw(x)
            if transposed and len(target) == 4 and target[0] in (0, n) and target[2:] in ([h, w], [0, 0]) \
                    and target[1] in (c, -1):
                return self.out(node, self.b.add("channel_shuffle", x, {"groups": g}, name=node.name or None))
            raise _error(node, "a regrouping of channels must end a channel shuffle, reshaped back to N x C x H x W")
        shape = self.shape(self.act(node.input[0]))
        if len(shape) == 4 and len(target) == 5:
            n, c, h, w = self.nchw(self.act(node.input[0]))
            if target[0] in (0, n) and target[3:] in ([h, w], [0, 0]) and target[1] > 0 \
                    and c % target[1] == 0 and target[2] in (c // target[1], -1):
                self.grouped[node.output[0]] = (self.act(node.input[0]), target[1], False)
                return None
        if len(target) == 2 and target[1] in (-1, math.prod(shape[1:])) and target[0] in (0, 1, -1, shape[0]):
            return self._flatten(node)
        raise _error(node, f"only reshape to (N, -1) and channel shuffles are supported, not to {target}")

    def Transpose(self, node, a):
        perm = list(a.get("perm", []))
        if node.input[0] in self.grouped and perm == [0, 2, 1, 3, 4]:
            x, g, _ = self.grouped[node.input[0]]
            self.grouped[node.output[0]] = (x, g, True)
            return None
        raise _error(node, f"Transpose {perm} of an activation is not supported (only the one of a channel "
                           "shuffle: Reshape to N x g x C/g x H x W, Transpose 0,2,1,3,4, Reshape back)")

    def _channels(self, node, x, start, stop, output):
        c = self.shape(x)[-1]
        start, stop = max(0, min(c, start + c if start < 0 else start)), max(0, min(c, stop + c if stop < 0 else stop))
        if start >= stop:
            raise _error(node, f"slice {start}:{stop} of {c} channels is empty")
        if (start, stop) == (0, c):
            self.names[output] = x
            return x
        name = node.name + f".{output}" if node.name else None
        self.names[output] = self.b.add("slice", x, {"start": start, "stop": stop}, name=name)
        return self.names[output]

    def Slice(self, node, a):
        x = self.act(node.input[0])
        ins = [self.consts.get(i) if i else None for i in node.input]
        if any(v is None for v in ins[1:3]) and "starts" not in a:
            raise _error(node, "Slice bounds must be constants (or computed from constants and fixed shapes)")
        starts = list(a["starts"]) if "starts" in a else [int(v) for v in ins[1]]
        ends = list(a["ends"]) if "ends" in a else [int(v) for v in ins[2]]
        axes = list(a.get("axes", range(len(starts))))
        if len(ins) > 3 and ins[3] is not None:
            axes = [int(v) for v in ins[3]]
        steps = [int(v) for v in ins[4]] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        rank = len(self.shape(x))
        if [ax % rank for ax in axes] != [1] or steps != [1]:
            raise _error(node, "only a slice of channels (axis 1, step 1) is supported")
        return self._channels(node, x, starts[0], min(ends[0], 1 << 30), node.output[0])

    def Split(self, node, a):
        x = self.act(node.input[0])
        rank = len(self.shape(x))
        if a.get("axis", 0) % rank != 1:
            raise _error(node, "only a split of channels (axis 1) is supported")
        c = self.shape(x)[-1]
        parts = a.get("split")
        if parts is None and len(node.input) > 1 and node.input[1]:
            parts = [int(v) for v in self.const(node.input[1], node)]
        if parts is None:
            parts = [-(-c // len(node.output))] * len(node.output)
        start = 0
        for out, size in zip(node.output, parts):
            self._channels(node, x, start, min(c, start + size), out)
            start += size
        return None

    def Squeeze(self, node, a):
        shape = self.shape(self.act(node.input[0]))
        if len(shape) == 4 and shape[1:3] == (1, 1):
            return self._flatten(node)
        raise _error(node, "only squeezing a 1x1 spatial map is supported")

    def Gemm(self, node, a):
        x = self.act(node.input[0])
        if a.get("transA", 0):
            raise _error(node, "transA is not supported")
        w = self.const(node.input[1], node).astype(np.float32)
        w = (w if a.get("transB", 0) else w.T) * np.float32(a.get("alpha", 1.0))
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(self.const(node.input[2], node).reshape(-1) * a.get("beta", 1.0), (w.shape[0],))
        return self._dense(node, x, w, bias)

    def MatMul(self, node, a):
        x = self.act(node.input[0])
        w = self.const(node.input[1], node).astype(np.float32)
        if w.ndim != 2 or len(self.shape(x)) != 2:
            raise _error(node, "only (N, K) x (K, M) is supported")
        return self._dense(node, x, w.T, None)

    def _dense(self, node, x, w, bias):
        if x in self.flat_chw:
            # The ONNX weights expect features in C, H, W order; ours are H, W, C.
            c, h, wd = self.flat_chw[x]
            w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        return self.out(node, self.b.add("dense", x, {"activation": "none"}, {"weight": w, "bias": bias},
                                         name=node.name or None))

    def Concat(self, node, a):
        xs = [self.act(i) for i in node.input]
        rank = len(self.shape(xs[0]))
        if a.get("axis") % rank != 1:
            raise _error(node, "only concatenation over channels is supported")
        return self.out(node, self.b.add("concat", xs, {"axis": -1}, name=node.name or None))

    def Softmax(self, node, a):
        x = self.act(node.input[0])
        shape = self.shape(x)
        rank = len(shape)
        # Before opset 13 Softmax flattened everything from its axis (default 1) on.
        axis = a.get("axis", 1 if self.opset < 13 else -1) % rank
        if self.opset < 13 and axis == 1 and rank == 4 and shape[1:3] != (1, 1):
            raise _error(node, "softmax over channels and pixels together is not supported")
        if axis != (1 if rank == 4 else rank - 1):
            raise _error(node, "only softmax over classes is supported")
        return self.out(node, self.b.add("softmax", x, name=node.name or None))

    def LRN(self, node, a):
        attrs = {"size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)), "beta": float(a.get("beta", 0.75)),
                 "bias": float(a.get("bias", 1.0))}
        return self.out(node, self.b.add("lrn", self.act(node.input[0]), attrs, name=node.name or None))

    def Pad(self, node, a):
        x = self.act(node.input[0])
        mode = a.get("mode", b"constant")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
            raise _error(node, "only constant padding is supported")
        pads = a.get("pads")
        if pads is None:
            pads = self.const(node.input[1], node).tolist()
        value = float(a.get("value", 0.0))
        if len(node.input) > 2 and node.input[2]:
            value = float(self.const(node.input[2], node))
        pads = [int(p) for p in pads]
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
            raise _error(node, "only spatial padding of NCHW data is supported")
        attrs = {"pads": [pads[2], pads[3], pads[6], pads[7]], "value": value, "_onnx_output": node.output[0]}
        return self.out(node, self.b.add("pad", x, attrs, name=node.name or None))

    def Shape(self, node, a):
        self.consts[node.output[0]] = fold("Shape", [np.empty(self.nchw(self.act(node.input[0])), np.uint8)], a, 1)[0]

    def Identity(self, node, a):
        return self.out(node, self.act(node.input[0]))

    Dropout = Identity

    def Constant(self, node, a):
        kinds = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}
        if "value" in a:
            self.consts[node.output[0]] = self.to_array(a["value"])
        elif len(a) == 1 and next(iter(a)) in kinds:
            key, value = next(iter(a.items()))
            self.consts[node.output[0]] = np.array(value, kinds[key])
        else:
            raise _error(node, "only tensor and number constants are supported (not sparse or string ones)")

    def foldable(self, node):
        """Whether every input of the node is a constant (omitted inputs aside)."""
        return node.op_type in FOLD and node.domain in ("", "ai.onnx") and all(
            not i or i in self.consts for i in node.input)

    def run(self):
        for node in self.graph.node:
            if self.foldable(node):
                ins = [self.consts[i] if i else None for i in node.input]
                for name, value in zip(node.output, fold(node.op_type, ins, self.attrs(node), len(node.output))):
                    self.consts[name] = value
                continue
            handler = getattr(self, node.op_type, None) if node.op_type[:1].isupper() else None
            if handler is None or node.domain not in ("", "ai.onnx"):
                raise DeviceNetError(
                    f"unsupported ONNX op {node.op_type} (node {_node_name(node)}): devicenet has no conversion "
                    "for it; replace it in the model with supported ops (see docs/CONVERT.md) or add it to "
                    "devicenet/convert/onnx.py")
            handler(node, self.attrs(node))
        for node in self.b.nodes:
            node.attrs.pop("_onnx_output", None)
        out = self.graph.output[0].name
        final = self.act(out)
        if final == "input":
            raise DeviceNetError("the ONNX graph computes nothing")
        return final


def build(path, input_size=None):
    """Read an ONNX file; return (Builder, metadata defaults)."""
    try:
        import onnx
    except ImportError:
        raise DeviceNetError("converting ONNX needs the onnx package: pip install onnx, or from a checkout: pip install -e '.[onnx]'") from None
    try:
        model = onnx.load(path)
    except Exception as e:  # protobuf raises its own DecodeError and others
        raise DeviceNetError(f"{path}: not a readable ONNX file ({e.__class__.__name__})") from None
    imp = _Importer(model, input_size)
    try:
        output = imp.run()
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise DeviceNetError(f"{path}: malformed ONNX graph ({e.__class__.__name__}: {e})") from None
    b = imp.b
    if b.nodes[-1].outputs[0] != output:
        raise DeviceNetError(f"{path}: the graph output is not computed by its last node")
    size = b.input_shape[1]
    meta = {"name": model.graph.name or "model", "output": output,
            "preprocess": crop_preprocess(size, IMAGENET_PREPROCESS["mean"], IMAGENET_PREPROCESS["std"]),
            "assumed": "the ONNX file does not say how to preprocess images; assuming ImageNet's mean and std "
                       "over RGB pixels 0-255 (give --mean and --std otherwise)"}
    return b, meta
