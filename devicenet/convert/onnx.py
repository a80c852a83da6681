"""Importer for ONNX models (via the ``onnx`` package).

ONNX activations are NCHW; devicenet's are NHWC, so weights are transposed
once here and every channel axis becomes the last one.  BatchNormalization
folds into the convolution before it, ReLU/Clip fuse into the op before
them (and so do sigmoid, hard sigmoid, and the SiLU and hard-swish spelt
``x * Sigmoid(x)`` and ``x * HardSigmoid(x)``), zero Pad folds into the
following convolution or pooling, and Dropout/Identity disappear.  Nodes
over constants are computed once (``fold``); a channel shuffle spelt as
Reshape -> Transpose -> Reshape becomes one op.

Tensors of other ranks and layouts (the tokens of a transformer, a
channels-last block) are views of activations (``layout``): moving ops
(Transpose, Reshape, Slice, Gather of one index, Squeeze, Unsqueeze) make
views, and data moves only when an op needs it laid out its way.  Layer
normalisation (``LayerNormalization``, or spelt out in ReduceMean, Sub, Pow,
Sqrt and Div before opset 17) and GELU (``x * (1 + Erf(x / sqrt 2)) / 2``)
become one op each, followed step by step as pending values.
"""

import math
import sys

import numpy as np

from ..errors import DeviceNetError
from .builder import Builder, crop_preprocess, fold_batchnorm
from .fold import FOLD, fold
from .layout import STANDARD, View, broadcast_shape, collapse, fit

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


#: the ONNX ops that may be steps of a layer normalisation or GELU spelt out (``Pending``)
PATTERN_OPS = ("ReduceMean", "Sub", "Pow", "Mul", "Add", "Sqrt", "Div", "Erf")

#: HardSigmoid's parameters as hard-swish uses them (and torch exports them)
HARD_SIGMOID = (1.0 / 6.0, 0.5)


class Pending:
    """A step of a layer normalisation or GELU spelt out in ONNX ops, kept
    until the pattern completes: ``kind`` names the step, ``x`` the ONNX
    tensor the pattern normalises or activates.  Used outside its pattern, a
    step is computed by ``fallback(importer, name)`` where it has one (a
    division by sqrt 2 is an ordinary affine), else refused."""

    def __init__(self, kind, x, eps=None, fallback=None):
        self.kind, self.x, self.eps, self.fallback = kind, x, eps, fallback

    def settle(self, imp, name):
        if self.fallback is None:
            what = "GELU" if self.kind.startswith(("erf", "gelu", "half")) else "layer normalisation"
            raise DeviceNetError(
                f"ONNX tensor {name!r} is a step ({self.kind}) of a {what} spelt out in ops, used by an op outside "
                f"it: devicenet converts the whole {what} only (or export LayerNormalization / Gelu ops)")
        self.fallback(imp, name)


def _scalar(value, target):
    """Whether a constant is one number close to ``target``."""
    v = np.asarray(value)
    return v.size == 1 and v.dtype.kind == "f" and abs(float(v.reshape(-1)[0]) - target) <= 1e-6 * abs(target)


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
        self.views = {}  # ONNX name -> (activation, View): a tensor not in its standard layout
        self.pending = {}  # ONNX name -> Pending: a step of a layer norm or GELU spelt out in ops
        self.arranged_cache = {}  # (activation, View, layout) -> activation holding it so
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
        """The activation holding ONNX tensor ``name`` in its standard layout
        (NHWC for 4-D, as is otherwise)."""
        self.settle(name)
        if name in self.grouped:
            raise DeviceNetError(f"ONNX tensor {name!r} is a 5-D regrouping of channels that is not a channel "
                                 "shuffle (Reshape to N x g x C/g x H x W, Transpose 0,2,1,3,4, Reshape back)")
        if name in self.views and name not in self.names:
            shape = self.views[name][1].shape
            if len(shape) not in STANDARD:
                raise DeviceNetError(f"ONNX tensor {name!r} has {len(shape)} axes where an op needs 2 to 4")
            self.names[name] = self.arranged(name, STANDARD[len(shape)])
        if name not in self.names:
            raise DeviceNetError(f"ONNX tensor {name!r} is used before it is computed")
        return self.names[name]

    def settle(self, name):
        """A pending step used by an op outside its pattern: computed by the
        ops it stands for, or refused (``Pending``)."""
        p = self.pending.pop(name, None)
        if p is not None:
            p.settle(self, name)

    def view(self, name):
        """(activation, View) of an ONNX tensor."""
        self.settle(name)
        if name in self.views:
            return self.views[name]
        act = self.act(name)
        shape = self.nchw(act)
        return act, View.laid_out(shape, STANDARD[len(shape)])

    def onnx_shape(self, name):
        return self.view(name)[1].shape

    def arranged(self, name, perm):
        """The activation that holds ONNX tensor ``name`` in layout ``perm``
        (see ``layout``): itself, or one reshape or rearrange of it."""
        act, v = self.view(name)
        return self.arrange(act, v, perm, name)

    def arrange(self, act, v, perm, name):
        """The activation that holds view ``v`` of ``act`` in layout ``perm``."""
        key = (act, v, tuple(perm))
        if key not in self.arranged_cache:
            target = fit([v.shape[p] for p in perm])
            if not v.is_layout(perm, math.prod(self.shape(act))):
                out = self.b.add("rearrange", act, v.gather(perm, f"ONNX tensor {name!r}"))
            elif self.shape(act) != target:
                out = self.b.add("reshape", act, {"shape": list(target)})
            else:
                out = act
            self.arranged_cache[key] = out
        return self.arranged_cache[key]

    def any_layout(self, name, last=None):
        """(activation, layout) holding ONNX tensor ``name`` in whatever
        layout costs least (with axis ``last`` last, when given)."""
        act, v = self.view(name)
        perm = v.layout(self.shape(act), last)
        if perm is None:
            perm = tuple(a for a in range(len(v.shape)) if a != last) + (() if last is None else (last,))
        return self.arranged(name, perm), perm

    def put(self, name, act, shape, perm):
        """Record ONNX tensor ``name`` (of ``shape``) as held by ``act`` in layout ``perm``."""
        return self.set_view(name, act, View.laid_out(tuple(shape), perm))

    def set_view(self, name, act, v):
        perm = STANDARD.get(len(v.shape))
        if perm and v.is_layout(perm, math.prod(self.shape(act))) and \
                self.shape(act) == tuple(v.shape[p] for p in perm):
            self.names[name] = act
        else:
            self.views[name] = (act, v)
        return act

    def is_act(self, name):
        return name in self.names or name in self.views or name in self.pending

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

    def fuse_activation(self, node, x, kind, uses=1, x_onnx=None, perm=None):
        """Fuse an activation into the op producing x when nothing else reads
        x (``uses``: how many ONNX nodes read it, this one's among them);
        ``perm``: x's layout (default the standard one)."""
        prod = self.producer(x)
        x_onnx = x_onnx or node.input[0]
        if (prod is not None and prod.op in ("conv", "dense", "add") and prod.attrs.get("activation", "none") == "none"
                and self.uses.get(x_onnx, 0) == uses and not self.b.consumers(x)):
            prod.attrs["activation"] = kind
            return self.elementwise_out(node, x, x_onnx, perm)
        return None

    def elementwise_out(self, node, act, x_onnx, perm=None):
        """The output of an elementwise op over ONNX tensor x_onnx, held by act in x's layout ``perm``."""
        if perm is None:
            return self.out(node, act)
        return self.put(node.output[0], act, self.onnx_shape(x_onnx), perm)

    def activation(self, node, kind, attrs=None, uses=1, x_onnx=None):
        """An activation of x: fused into the op before it, else an op of its own."""
        x_onnx = x_onnx or node.input[0]
        x, perm = self.any_layout(x_onnx)
        fused = not attrs and self.fuse_activation(node, x, kind, uses, x_onnx, perm)
        return fused or self.elementwise_out(node, self.b.add(kind, x, attrs or {}, name=node.name or None),
                                             x_onnx, perm)

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
                return self.activation(node, kind, uses=2, x_onnx=x_onnx)
        return None

    def _binary(self, node, sign, invert=False):
        """Add, Sub, Mul and Div (``sign`` mul with ``invert``) of a tensor and
        a constant, or of two tensors."""
        ins = list(node.input)
        if ins[0] in self.consts and ins[1] not in self.consts:
            if invert or sign == "sub":  # c / x has no op; c - x is x * -1 + c
                if invert:
                    raise _error(node, "division of a constant by a computed tensor is not supported")
                x = self.with_constant(node.output[0] + ".negated", ins[1], -1.0, "mul", node)
                return self.with_constant(node.output[0], node.output[0] + ".negated", self.consts[ins[0]],
                                          "add", node, name=node.name or None)
            ins.reverse()
        if ins[1] in self.consts:
            v = np.asarray(self.consts[ins[1]], np.float32)
            v = (1.0 / v if invert else v) if sign == "mul" else (v if sign == "add" else -v)
            return self.with_constant(node.output[0], ins[0], v, "mul" if sign == "mul" else "add", node,
                                      name=node.name or None)
        if invert:
            raise _error(node, "division by a computed tensor is not supported")
        if sign == "mul":
            gated = self._gated(node)
            if gated:
                return gated
        elif sign != "add":
            raise _error(node, f"{node.op_type} of two computed tensors is not supported "
                               "(only Add and Mul are; Sub and Div need a constant operand)")
        sa, sb = self.onnx_shape(ins[0]), self.onnx_shape(ins[1])
        shape = broadcast_shape(sa, sb, f"ONNX {node.op_type} node {_node_name(node)}")
        if shape != tuple(sa) and shape == tuple(sb):
            ins.reverse()  # the full-size operand first: its layout is the output's
        a_, perm = self.any_layout(ins[0])
        b_act, b_view = self.view(ins[1])
        b_view = b_view.unsqueeze(range(len(shape) - len(b_view.shape)))
        b_ = self.arrange(b_act, b_view, perm, ins[1])
        if sign == "mul":
            y = self.b.add("mul", [a_, b_], name=node.name or None)
        elif self.shape(a_) == self.shape(b_):
            y = self.b.add("add", [a_, b_], {"activation": "none"}, name=node.name or None)
        else:
            raise _error(node, "Add of computed tensors of different shapes is not supported (only Mul broadcasts)")
        return self.put(node.output[0], y, shape, perm)

    def with_constant(self, output, x_onnx, value, kind, node, name=None):
        """ONNX tensor ``output`` = x_onnx times (kind "mul") or plus (kind
        "add") a constant broadcast against it: an ``affine`` op in x's
        layout, or folded into the dense layer or layer norm before it."""
        x, perm = self.any_layout(x_onnx)
        xs = tuple(self.onnx_shape(x_onnx))
        v = np.asarray(value, np.float32)
        if broadcast_shape(xs, v.shape, f"ONNX {node.op_type} node {_node_name(node)}") != xs:
            raise _error(node, f"a constant of shape {v.shape} would enlarge the computed tensor {xs}")
        v = v.reshape((1,) * (len(xs) - v.ndim) + v.shape).transpose(perm)
        held = self.shape(x)
        if v.size == 1:
            v = v.reshape(1)
        elif all(d == 1 for d in v.shape[:-1]):
            v = v.reshape(-1)  # one value per channel: the activation's last axis
        elif v.ndim <= 4:
            v = v.reshape(fit(v.shape))
        else:
            merged = collapse([xs[p] for p in perm], v.shape)
            if merged is None:
                raise _error(node, f"a constant of shape {v.shape} broadcast over more than 4 axes")
            held, vshape = merged
            x = x if self.shape(x) == held else self.b.add("reshape", x, {"shape": list(held)})
            v = v.reshape(vshape)
        role = "scale" if kind == "mul" else "shift"
        prod = self.producer(x)
        if (prod is not None and v.ndim == 1 and v.size == held[-1] and self.single_use(x_onnx)
                and not self.b.consumers(x) and (
                    (prod.op == "dense" and role == "shift" and "bias" not in prod.params)
                    or (prod.op == "layernorm" and role not in prod.params
                        and (role == "shift" or "shift" not in prod.params)))):
            key = "bias" if prod.op == "dense" else role
            prod.params[key] = f"{prod.name}.{key}"
            self.b.params[prod.params[key]] = np.ascontiguousarray(v)
            y = x
        else:
            y = self.b.add("affine", x, {}, {role: v}, name=name)
        return self.put(output, y, xs, perm)

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
        shape = self.onnx_shape(node.input[0])
        axis = a.get("axis", 1) % max(1, len(shape))
        if axis == 1 and node.input[0] in self.names:
            return self._flatten(node)
        return self._reshape(node, [math.prod(shape[:axis]), math.prod(shape[axis:])])

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
        x = self.names.get(node.input[0])
        shape = self.shape(x) if x else ()
        if len(shape) == 4 and len(target) == 5:
            n, c, h, w = self.nchw(x)
            if target[0] in (0, n) and target[3:] in ([h, w], [0, 0]) and target[1] > 0 \
                    and c % target[1] == 0 and target[2] in (c // target[1], -1):
                self.grouped[node.output[0]] = (x, target[1], False)
                return None
        if x and len(target) == 2 and target[1] in (-1, math.prod(shape[1:])) and target[0] in (0, 1, -1, shape[0]):
            return self._flatten(node)
        return self._reshape(node, target, a.get("allowzero", 0))

    def _reshape(self, node, target, allowzero=0):
        """A reshape as a view: of the same activation where its strides
        allow, else of a copy in ONNX order."""
        act, v = self.view(node.input[0])
        target = [v.shape[i] if t == 0 and not allowzero else t for i, t in enumerate(target)]
        if target.count(-1) == 1:
            known = math.prod(t for t in target if t != -1)
            target[target.index(-1)] = v.size // known if known else 0
        if math.prod(target) != v.size or min(target, default=1) < 1:
            raise _error(node, f"cannot reshape {list(v.shape)} to {target}")
        new = v.reshape(target)
        if new is None:
            act = self.arranged(node.input[0], tuple(range(len(v.shape))))
            new = View.laid_out(v.shape, tuple(range(len(v.shape)))).reshape(target)
        return self.set_view(node.output[0], act, new)

    def Transpose(self, node, a):
        perm = list(a.get("perm", []))
        if node.input[0] in self.grouped and perm == [0, 2, 1, 3, 4]:
            x, g, _ = self.grouped[node.input[0]]
            self.grouped[node.output[0]] = (x, g, True)
            return None
        act, v = self.view(node.input[0])
        perm = perm or list(range(len(v.shape)))[::-1]
        if sorted(perm) != list(range(len(v.shape))):
            raise _error(node, f"perm {perm} is not a permutation of {len(v.shape)} axes")
        return self.set_view(node.output[0], act, v.transpose(perm))

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
        act, v = self.view(node.input[0])
        ins = [self.consts.get(i) if i else None for i in node.input]
        if any(v is None for v in ins[1:3]) and "starts" not in a:
            raise _error(node, "Slice bounds must be constants (or computed from constants and fixed shapes)")
        starts = list(a["starts"]) if "starts" in a else [int(v) for v in ins[1]]
        ends = list(a["ends"]) if "ends" in a else [int(v) for v in ins[2]]
        axes = list(a.get("axes", range(len(starts))))
        if len(ins) > 3 and ins[3] is not None:
            axes = [int(v) for v in ins[3]]
        steps = [int(v) for v in ins[4]] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        if node.input[0] in self.names and [ax % len(v.shape) for ax in axes] == [1] and steps == [1]:
            return self._channels(node, act, starts[0], min(ends[0], 1 << 30), node.output[0])
        for start, end, ax, step in zip(starts, ends, axes, steps):
            if step < 1:
                raise _error(node, f"a slice with step {step} is not supported (only positive steps)")
            v = v.slice(ax % len(v.shape), start, end, step)
        if min(v.shape, default=1) < 1:
            raise _error(node, "the slice is empty")
        return self.set_view(node.output[0], act, v)

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
        act, v = self.view(node.input[0])
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(i) for i in self.const(node.input[1], node).reshape(-1)]
        axes = [i for i, d in enumerate(v.shape) if d == 1] if axes is None else [i % len(v.shape) for i in axes]
        if node.input[0] in self.names and len(v.shape) == 4 and sorted(axes) == [2, 3]:
            return self._flatten(node)
        if any(v.shape[i] != 1 for i in axes):
            raise _error(node, f"cannot squeeze axes {axes} of shape {list(v.shape)}")
        return self.set_view(node.output[0], act, v.squeeze(axes))

    def Unsqueeze(self, node, a):
        act, v = self.view(node.input[0])
        axes = a.get("axes")
        if axes is None:
            axes = [int(i) for i in self.const(node.input[1], node).reshape(-1)]
        return self.set_view(node.output[0], act, v.unsqueeze(axes))

    def Gather(self, node, a):
        """Constant indices of a computed tensor that form a grid (one index:
        a class token; a run; torch's as_strided), as a view."""
        act, v = self.view(node.input[0])
        axis = a.get("axis", 0) % len(v.shape)
        picked = v.pick(axis, self.const(node.input[1], node))
        if picked is None:
            raise _error(node, "only Gather of indices in a regular grid (one index, a run, a stepped run) of a "
                               "computed tensor is supported")
        return self.set_view(node.output[0], act, picked)

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
        if node.input[1] not in self.consts:
            return self._matmul(node)
        w = self.const(node.input[1], node).astype(np.float32)
        xs = self.onnx_shape(node.input[0])
        if w.ndim != 2 or len(xs) < 2:
            raise _error(node, "only a computed tensor times a (K, M) matrix, or two computed tensors, "
                               "are supported")
        if len(xs) == 2 and node.input[0] in self.names:
            return self._dense(node, self.act(node.input[0]), w.T, None)
        # Over the last axis of tokens (a transformer's linear layers), in
        # whatever layout keeps that axis last.
        x, perm = self.any_layout(node.input[0], last=len(xs) - 1)
        y = self.b.add("dense", x, {"activation": "none"}, {"weight": w.T}, name=node.name or None)
        return self.put(node.output[0], y, tuple(xs[:-1]) + (w.shape[1],), perm)

    def _matmul(self, node):
        """Two computed tensors (attention): batches of matrices in ONNX
        order, the second read transposed where a view already holds it so."""
        (a_act, av), (b_act, bv) = self.view(node.input[0]), self.view(node.input[1])
        rank = max(len(av.shape), len(bv.shape))
        if min(len(av.shape), len(bv.shape)) < 2 or rank > 4:
            raise _error(node, "MatMul of computed tensors needs 2 to 4 axes each")
        av, bv = (v.unsqueeze(range(rank - len(v.shape))) for v in (av, bv))
        same = tuple(range(rank))
        swapped = same[:-2] + (rank - 1, rank - 2)
        a_ = self.arrange(a_act, av, same, node.input[0])
        size = math.prod(self.shape(b_act))
        flip = bv.is_layout(swapped, size) and not bv.is_layout(same, size)
        b_ = self.arrange(b_act, bv, swapped if flip else same, node.input[1])
        shape = broadcast_shape(av.shape[:-2], bv.shape[:-2], f"ONNX MatMul node {_node_name(node)}")
        shape = shape + (av.shape[-2], bv.shape[-1])
        y = self.b.add("matmul", [a_, b_], {"transpose_b": flip}, name=node.name or None)
        return self.put(node.output[0], y, shape, same)

    def _dense(self, node, x, w, bias):
        if x in self.flat_chw:
            # The ONNX weights expect features in C, H, W order; ours are H, W, C.
            c, h, wd = self.flat_chw[x]
            w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        return self.out(node, self.b.add("dense", x, {"activation": "none"}, {"weight": w, "bias": bias},
                                         name=node.name or None))

    def Concat(self, node, a):
        if all(i in self.names for i in node.input) and a["axis"] % len(self.nchw(self.names[node.input[0]])) == 1:
            xs = [self.act(i) for i in node.input]
            return self.out(node, self.b.add("concat", xs, {"axis": -1}, name=node.name or None))
        # Any axis, and constants among the inputs (a class token): every
        # input in the layout of the first computed one.
        first = next(i for i in node.input if i not in self.consts)
        _, perm = self.any_layout(first)
        shapes = [self.consts[i].shape if i in self.consts else self.onnx_shape(i) for i in node.input]
        rank = len(perm)
        axis = a["axis"] % rank
        if rank > 4 or any(len(s) != rank for s in shapes):
            raise _error(node, "Concat needs inputs of 2 to 4 axes, all of the same rank")
        parts = []
        for i in node.input:
            if i in self.consts:
                value = np.transpose(np.asarray(self.consts[i], np.float32), perm)
                parts.append(self.b.add("constant", [], {}, {"value": value.reshape(fit(value.shape))}))
            else:
                parts.append(self.arranged(i, perm))
        shape = list(shapes[0])
        shape[axis] = sum(s[axis] for s in shapes)
        dn_axis = perm.index(axis) + len(fit(shape)) - rank
        y = self.b.add("concat", parts, {"axis": dn_axis}, name=node.name or None)
        return self.put(node.output[0], y, shape, perm)

    def Softmax(self, node, a):
        shape = self.onnx_shape(node.input[0])
        rank = len(shape)
        # Before opset 13 Softmax flattened everything from its axis (default 1) on.
        axis = a.get("axis", 1 if self.opset < 13 else -1) % rank
        if self.opset < 13 and any(d != 1 for d in shape[axis + 1:]):
            raise _error(node, "softmax over several axes together is not supported")
        x, perm = self.any_layout(node.input[0], last=axis)
        return self.put(node.output[0], self.b.add("softmax", x, name=node.name or None), shape, perm)

    def LayerNormalization(self, node, a):
        shape = self.onnx_shape(node.input[0])
        if a.get("axis", -1) % len(shape) != len(shape) - 1:
            raise _error(node, "only normalisation over the last axis is supported")
        if any(node.output[1:]):
            raise _error(node, "the Mean and InvStdDev outputs are not supported")
        scale = self.const(node.input[1], node).reshape(-1)
        shift = self.const(node.input[2], node).reshape(-1) if len(node.input) > 2 and node.input[2] else None
        return self.layernorm(node, node.input[0], a.get("epsilon", 1e-5), scale, shift)

    def layernorm(self, node, x_onnx, eps, scale=None, shift=None):
        shape = self.onnx_shape(x_onnx)
        x, perm = self.any_layout(x_onnx, last=len(shape) - 1)
        y = self.b.add("layernorm", x, {"epsilon": float(eps)}, {"scale": scale, "shift": shift},
                       name=node.name or None)
        return self.put(node.output[0], y, shape, perm)

    def Gelu(self, node, a):
        approximate = a.get("approximate", b"none")
        if (approximate.decode() if isinstance(approximate, bytes) else approximate) != "none":
            raise _error(node, "only the exact GELU (approximate='none') is supported")
        return self.activation(node, "gelu")

    def Erf(self, node, a):
        raise _error(node, "Erf is supported only inside GELU, x * (1 + Erf(x / sqrt 2)) / 2")

    def LRN(self, node, a):
        attrs = {"size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)), "beta": float(a.get("beta", 0.75)),
                 "bias": float(a.get("bias", 1.0))}
        return self.out(node, self.b.add("lrn", self.act(node.input[0]), attrs, name=node.name or None))

    def Pad(self, node, a):
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
        if not any(pads):
            return self.Identity(node, a)
        if min(pads) < 0:
            raise _error(node, "negative pads (cropping) are not supported")
        if node.input[0] not in self.names or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
            return self._pad_any(node, pads, value)
        attrs = {"pads": [pads[2], pads[3], pads[6], pads[7]], "value": value, "_onnx_output": node.output[0]}
        return self.out(node, self.b.add("pad", self.act(node.input[0]), attrs, name=node.name or None))

    def _pad_any(self, node, pads, value):
        """Padding of any axes (Swin's windows at sizes they do not divide):
        the tensor concatenated between constant blocks, axis by axis."""
        shape = list(self.onnx_shape(node.input[0]))
        rank = len(shape)
        if len(pads) != 2 * rank or rank > 4:
            raise _error(node, f"{len(pads)} pads for a tensor of {rank} axes")
        x, perm = self.any_layout(node.input[0])
        for axis in range(rank):
            lo, hi = pads[axis], pads[axis + rank]
            if not lo and not hi:
                continue
            parts = []
            for size in (lo, None, hi):
                if size is None:
                    parts.append(x)
                elif size:
                    block = [size if a == axis else shape[a] for a in perm]
                    parts.append(self.b.add("constant", [], {}, {"value": np.full(fit(block), value, np.float32)}))
            shape[axis] += lo + hi
            x = self.b.add("concat", parts, {"axis": perm.index(axis) + len(fit(shape)) - rank})
        return self.put(node.output[0], x, shape, perm)

    def Shape(self, node, a):
        shape = self.onnx_shape(node.input[0])
        self.consts[node.output[0]] = fold("Shape", [np.empty(shape, np.uint8)], a, 1)[0]

    def Identity(self, node, a):
        act, v = self.view(node.input[0])
        return self.set_view(node.output[0], act, v)

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

    def pattern_step(self, node, a):
        """Follow a layer normalisation or GELU spelt out in ops (see
        ``Pending``); True where the node was one of its steps."""
        op, ins, out = node.op_type, list(node.input), node.output[0]
        steps = [self.pending.get(i) for i in ins]
        kinds = [p.kind if p else None for p in steps]
        const = [self.consts.get(i) for i in ins]

        def step(kind, x, eps=None, fallback=None):
            self.pending[out] = Pending(kind, x, eps, fallback)
            return True

        if op == "ReduceMean" and ins[0] not in self.consts:
            x = steps[0].x if steps[0] else ins[0]
            rank = len(self.onnx_shape(x))
            axes = a.get("axes")
            if axes is None and len(ins) > 1 and ins[1]:
                axes = self.const(ins[1], node).reshape(-1).tolist()
            if a.get("keepdims", 1) and axes is not None and [int(i) % rank for i in axes] == [rank - 1]:
                if steps[0] is None:
                    return step("mean", x)
                if kinds[0] == "square":
                    return step("var", x)
            return False
        if op == "Sub" and kinds == [None, "mean"] and steps[1].x == ins[0]:
            return step("centred", ins[0])
        if (op == "Pow" and kinds[0] == "centred" and const[1] is not None and _scalar(const[1], 2.0)) or \
                (op == "Mul" and kinds == ["centred", "centred"] and ins[0] == ins[1]):
            return step("square", steps[0].x)
        if op == "Add" and "var" in kinds and any(c is not None for c in const):
            eps = float(np.asarray(const[1 - kinds.index("var")]).reshape(-1)[0])
            return step("var_eps", steps[kinds.index("var")].x, eps) if eps > 0 else False
        if op == "Sqrt" and kinds[0] == "var_eps":
            return step("std", steps[0].x, steps[0].eps)
        if op == "Div" and kinds == ["centred", "std"] and steps[0].x == steps[1].x:
            self.layernorm(node, steps[0].x, steps[1].eps)
            return True
        # GELU: x / sqrt 2 (or x * (1 / sqrt 2)) -> Erf -> + 1 -> * x -> * 0.5 (or * 0.5 -> * x)
        if (op in ("Div", "Mul") and kinds[0] is None and ins[0] not in self.consts and const[1] is not None
                and _scalar(const[1], math.sqrt(2.0) if op == "Div" else math.sqrt(0.5))):
            return step("gelu_arg", ins[0], fallback=lambda imp, name: imp._binary(node, "mul", op == "Div"))
        if op == "Erf" and kinds[0] == "gelu_arg":
            return step("erf", steps[0].x)
        if op == "Add" and "erf" in kinds and any(c is not None and _scalar(c, 1.0) for c in const):
            return step("erf1", steps[kinds.index("erf")].x)
        if op == "Mul" and "erf1" in kinds and ins[1 - kinds.index("erf1")] == steps[kinds.index("erf1")].x:
            return step("gelu2", steps[kinds.index("erf1")].x)
        if op == "Mul" and "erf1" in kinds and any(c is not None and _scalar(c, 0.5) for c in const):
            return step("half_erf1", steps[kinds.index("erf1")].x)  # the dynamo exporter's order
        done = [k for k in ("gelu2", "half_erf1") if k in kinds]
        if op == "Mul" and done and (any(c is not None and _scalar(c, 0.5) for c in const) if done[0] == "gelu2"
                                     else ins[1 - kinds.index(done[0])] == steps[kinds.index(done[0])].x):
            self.activation(node, "gelu", uses=2, x_onnx=steps[kinds.index(done[0])].x)
            return True
        return False

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
            if node.domain in ("", "ai.onnx") and node.op_type in PATTERN_OPS and \
                    self.pattern_step(node, self.attrs(node)):
                continue
            if handler is None or node.domain not in ("", "ai.onnx"):
                raise DeviceNetError(
                    f"unsupported ONNX op {node.op_type} (node {_node_name(node)}): devicenet has no conversion "
                    "for it; replace it in the model with supported ops (see docs/CONVERT.md) or add it to "
                    "devicenet/convert/onnx.py")
            try:
                handler(node, self.attrs(node))
            except DeviceNetError as e:  # a tensor's own error: say which node met it
                if str(e).startswith("ONNX ") and " node " in str(e).split(":")[0]:
                    raise
                raise _error(node, str(e)) from None
        for node in self.b.nodes:
            node.attrs.pop("_onnx_output", None)
        out = self.graph.output[0].name
        for name in list(self.pending):  # the graph output may be a pending step
            if name == out:
                self.settle(name)
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
