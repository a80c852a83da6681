"""Integer layers: which nodes of a model run in eight-bit arithmetic, and
the integers they run with.

A model may name some of its nodes as integer (``meta["integer"]``, written
by the converter, docs/FORMAT.md) and give the scale and zero point of the
activations around them.  ``lower`` turns each such node into a ``Q8Node``:
its weights as stored (int8; int16 within +-2047 for a depthwise layer),
its bias as int32 at the scale of its sums (activation zero point folded
in), and the float32 factors that bring the sums back to eight bits, all
derived
from the file with the same float64 arithmetic everywhere, so that every
machine and every kernel computes the same integers (backends/q8_ref.py).

Where an integer node's output feeds only float layers it writes float32
(the sums times a float scale, in the same pass); a float value read by an
integer node is quantised as the node reads it, and a uint8 value read by a
float node is dequantised as that node reads it (``entry``).
"""

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .backends import q8_ref
from .backends.base import is_depthwise, is_pointwise
from .errors import DeviceNetError
from .graph import ACTIVATIONS, window

#: largest |weight integer| of an integer layer's int8 weights
WEIGHT_QMAX = 127
#: largest |w[2j]| + |w[2j + 1]| of a GEMM's int8 weights along k: x86's
#: fastest kernel (vpmaddubsw) sums uint8 x int8 products in pairs into
#: int16, exact only within this (255 x 128 < 2^15); weights beyond it run
#: on the exact kernel, about 0.8x its speed (q8_gemm_pairs_safe)
PAIR_LIMIT = 128
#: largest |weight integer| of an integer depthwise layer's weights, stored
#: int16: its kernels multiply int16 weights anyway (pairs of taps through
#: vpmaddwd, vmlal_s16), so twelve bits cost no time, and the sums stay far
#: inside int32 (255 x 2047 x the taps)
DEPTHWISE_QMAX = 2047
#: ops that may run integer
OPS = ("conv", "add", "global_avgpool")
#: integer sums are kept within this magnitude (q8_ref's promise to kernels)
ACC_LIMIT = 1 << 30


@dataclass(frozen=True)
class QParams:
    """How a uint8 tensor stands for real values: ``scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def to_json(self):
        return [float(self.scale), int(self.zero_point)]

    @classmethod
    def from_range(cls, lo, hi):
        """The parameters that cover [lo, hi] (widened to hold 0, which must
        be exact: padding and ReLU's floor are zero)."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo < 1e-8:
            hi = lo + 1e-8
        scale = np.float32((hi - lo) / 255.0)
        zp = int(np.clip(round(-lo / float(scale)), 0, 255))
        return cls(float(scale), zp)


def clamp_bounds(act, q):
    """[qmin, qmax] of a uint8 output with parameters q under a clamp activation."""
    lo, hi = ACTIVATIONS[act]
    qmin = 0 if lo is None else int(np.clip(q.zero_point + round(lo / q.scale), 0, 255))
    qmax = 255 if hi is None else int(np.clip(q.zero_point + round(hi / q.scale), 0, 255))
    return qmin, qmax


def integer_weight(w_float, clip=None, qmax=WEIGHT_QMAX):
    """(integers, per-channel scales) of a float weight for an integer layer:
    int8, or int16 for a range beyond 127."""
    from .quant import encode
    return encode(w_float, "int8" if qmax <= 127 else "int16", clip, qmax)


@dataclass
class Q8Node:
    """One node in integer form (see the module docstring).

    kind: "gemm" (1x1 stride-1 convolution), "im2col" (other dense
    convolutions), "depthwise", "add" or "meanpool".  ``ins`` are the
    parameters of the uint8 inputs; ``out`` those of the uint8 output, or
    None for a float32 output (``fscale``, ``lo``, ``hi``)."""

    kind: str
    name: str
    ins: list
    out: object = None
    attrs: dict = field(default_factory=dict)
    wt: object = None          # int8 (n, k) for GEMMs, (C, KH, KW) for depthwise
    bias: object = None        # int32 (n,), zero point folded in
    rscale: object = None      # float32 per channel (uint8 output: q8_ref.requantize)
    fscale: object = None      # float32 per channel (float output)
    qmin: int = 0
    qmax: int = 255
    lo: object = None
    hi: object = None
    add: tuple = ()            # (ma, mb, shift)

    # ---- the exact numpy form of every kind (the reference the compiled
    # kernels match) ----

    def run(self, inputs):
        """Outputs of uint8 inputs (already converted by ``entry``)."""
        return getattr(self, "_" + self.kind)(*inputs)

    def _finish(self, acc):
        if self.out is None:
            return q8_ref.dequantize_acc(acc, self.fscale, self.lo, self.hi)
        return q8_ref.requantize(acc, self.rscale, self.out.zero_point, self.qmin, self.qmax)

    def _gemm_acc(self, a):
        # float64 products of 8-bit integers are exact (|sum| < 2**53): BLAS speed, integer answers
        acc = a.astype(np.float64) @ self.wt.astype(np.float64).T
        return (acc + self.bias).astype(np.int32)

    def _gemm(self, x):
        n, h, w, c = x.shape
        return self._finish(self._gemm_acc(x.reshape(-1, c))).reshape(n, h, w, -1)

    def _im2col(self, x):
        (kh, kw), stride, pads, _ = window(self.attrs, self.name)
        cols, (n, oh, ow) = q8_ref.im2col(x, (kh, kw), stride, pads, self.ins[0].zero_point)
        return self._finish(self._gemm_acc(cols)).reshape(n, oh, ow, -1)

    def _depthwise(self, x):
        _, stride, pads, _ = window(self.attrs, self.name)
        return self._finish(q8_ref.dwconv_acc(x, self.wt, self.bias, stride, pads, self.ins[0].zero_point))

    def _add(self, a, b):
        ma, mb, shift = self.add
        return q8_ref.add(a, b, self.ins[0].zero_point, self.ins[1].zero_point, ma, mb, shift,
                          self.out.zero_point, self.qmin, self.qmax)

    def _meanpool(self, x):
        n, h, w, c = x.shape
        y = q8_ref.meanpool(x, self.ins[0].zero_point, self.ins[0].scale / (h * w))
        return y.reshape(n, 1, 1, c)


def _weighted(node, kind, x_q, out_q, w_int, w_scales, bias_f):
    """A convolution's Q8Node from its int8 weight (cout, kh, kw, cin) and scales."""
    act = node.attrs.get("activation", "none")
    w_scales = np.asarray(w_scales, np.float64)
    n = w_int.shape[0]
    wt = w_int.reshape(n, -1) if kind != "depthwise" else w_int[:, :, :, 0]
    if wt.dtype not in (np.int8, np.int16):
        raise DeviceNetError(f"node {node.name}: integer weights must be int8 or int16")
    # A channel of zero weights (scale 0) still outputs its bias: give it a
    # scale that keeps its factor in range (its weights are 0 whatever it is).
    ref = out_q.scale if out_q is not None else 1.0
    w_scales = np.where(w_scales > 0, w_scales, 0.5 * ref / x_q.scale)
    sum_scale = x_q.scale * w_scales                       # the real value of one unit of a sum
    b = np.zeros(n) if bias_f is None else np.asarray(bias_f, np.float64)
    bias = np.rint(b / sum_scale)
    wsum = wt.reshape(n, -1).astype(np.int64)
    bound = np.abs(bias) + np.abs(x_q.zero_point * wsum.sum(axis=1)) + 255 * np.abs(wsum).sum(axis=1)
    if np.any(bound >= ACC_LIMIT):
        raise DeviceNetError(f"node {node.name}: its integer sums could overflow")
    folded = q8_ref.fold_bias(bias.astype(np.int64), wt, x_q.zero_point)
    q = Q8Node(kind, node.name, [x_q], out_q, dict(node.attrs), wt=np.ascontiguousarray(wt),
               bias=folded)
    if out_q is None:
        q.fscale = sum_scale.astype(np.float32)
        q.lo, q.hi = ACTIVATIONS[act]
    else:
        try:
            q.rscale = q8_ref.requant_scale(sum_scale / out_q.scale)
        except ValueError as e:
            raise DeviceNetError(f"node {node.name}: {e}") from None
        q.qmin, q.qmax = clamp_bounds(act, out_q)
    return q


def conv_kind(node, in_shape, w_shape):
    """Which integer kernel computes a convolution, or None when none can."""
    a = node.attrs
    if a.get("activation", "none") not in ACTIVATIONS or a.get("dilation", [1, 1]) != [1, 1] \
            or a.get("pad_value", 0.0) != 0.0:
        return None
    if a.get("groups", 1) > 1:
        return "depthwise" if is_depthwise(a["groups"], in_shape[3], w_shape) else None
    return "gemm" if is_pointwise(a, w_shape) else "im2col"


def supported(node, in_shape, w_shape=None):
    """Whether a node can run in integers at all."""
    if node.op == "conv":
        return conv_kind(node, in_shape, w_shape) is not None
    if node.op == "add":
        return node.attrs.get("activation", "none") in ACTIVATIONS and len(node.inputs) == 2
    return node.op == "global_avgpool" and len(in_shape) == 4


def lower_node(node, in_shapes, qparams, float_out, weight=None, bias=None):
    """The Q8Node of one node.  ``qparams``: tensor name -> QParams (its
    inputs', and its output's unless ``float_out``); ``weight``: (int8
    integers, scales) for a convolution; ``bias`` float."""
    ins = [qparams[t] for t in node.inputs]
    out = None if float_out else qparams[node.outputs[0]]
    if node.op == "conv":
        kind = conv_kind(node, in_shapes[0], weight[0].shape)
        return _weighted(node, kind, ins[0], out, weight[0], weight[1], bias)
    if node.op == "global_avgpool":
        return Q8Node("meanpool", node.name, ins, None)
    if node.op == "add":
        if out is None:
            raise DeviceNetError(f"node {node.name}: an integer add writes uint8")
        def fits(ma, mb):  # the sums fit int32, the factors what the kernels take
            return 255 * (abs(ma) + abs(mb)) + (1 << shift) < (1 << 31) and max(abs(ma), abs(mb)) < (1 << 21)
        shift = 20
        while True:  # the largest shift that fits
            ma, mb = q8_ref.add_multipliers(ins[0].scale, ins[1].scale, out.scale, shift)
            if fits(ma, mb) or shift <= 8:
                break
            shift -= 1
        if not fits(ma, mb):
            raise DeviceNetError(f"node {node.name}: input scales too far apart for an integer add")
        q = Q8Node("add", node.name, ins, out, dict(node.attrs), add=(ma, mb, shift))
        q.qmin, q.qmax = clamp_bounds(node.attrs.get("activation", "none"), out)
        return q
    raise DeviceNetError(f"node {node.name}: op {node.op} does not run in integers")


def float_outputs(nodes, integer, output_name):
    """Names of the integer nodes that write float32: the dense
    convolutions whose every reader is a float node (or that are the
    model's output), and the mean pools (whose output is a vector for the
    float classifier)."""
    readers = {}
    for n in nodes:
        for t in n.inputs:
            readers.setdefault(t, []).append(n.name)
    found = set()
    for n in nodes:
        if n.name not in integer:
            continue
        if n.op == "global_avgpool":
            found.add(n.name)
            continue
        rs = readers.get(n.outputs[0], [])
        # (a depthwise layer writes uint8 always: its readers convert)
        if n.op == "conv" and n.attrs.get("groups", 1) == 1 \
                and (n.outputs[0] == output_name or all(r not in integer for r in rs)):
            found.add(n.name)
    return found


def float_arithmetic(graph):
    """The same model with its integer plan set aside: every layer in float
    arithmetic on its stored weights, as a backend without integer kernels
    (OpenCL) runs it."""
    return dataclasses.replace(graph, meta={k: v for k, v in graph.meta.items() if k != "integer"})


def spec_of(meta):
    """(integer node names, tensor name -> QParams) from a model's metadata
    (empty when the model is all float)."""
    spec = meta.get("integer")
    if not spec:
        return set(), {}
    return set(spec.get("nodes", [])), {t: QParams(float(s), int(z)) for t, (s, z) in spec["activations"].items()}


def lower(graph, shapes):
    """Every integer node of a Graph as a Q8Node: {node name: Q8Node}.  The
    file's integer nodes must have int8 weights and parameters for every
    activation they read or write (format.py checks the metadata's form)."""
    names, qparams = spec_of(graph.meta)
    if not names:
        return {}
    floats = float_outputs(graph.nodes, names, graph.output_name)
    lowered = {}
    for node in graph.nodes:
        if node.name not in names:
            continue
        weight = bias = None
        if node.op == "conv":
            t = graph.tensors[node.params["weight"]]
            wide = conv_kind(node, shapes[node.inputs[0]], t.shape) == "depthwise" and t.encoding == "int16"
            if t.encoding != "int8" and not wide:
                raise DeviceNetError(f"node {node.name}: an integer layer needs int8 weights (int16 for a "
                                     f"depthwise one), not {t.encoding}")
            if wide and np.abs(np.asarray(t.data, np.int32)).max(initial=0) > DEPTHWISE_QMAX:
                raise DeviceNetError(f"node {node.name}: integer depthwise weights must lie within "
                                     f"+-{DEPTHWISE_QMAX}")
            weight = (np.asarray(t.data), t.scales)
            if "bias" in node.params:
                bias = graph.tensors[node.params["bias"]].decode()
        lowered[node.name] = lower_node(node, [shapes[i] for i in node.inputs], qparams,
                                        node.name in floats, weight, bias)
    return lowered


def entry(value, want, q, quantize=q8_ref.quantize, dequantize=q8_ref.dequantize):
    """A value as a node reads it: ``want`` "u8" quantises a float32 value
    with q, "f32" dequantises a uint8 one (by the functions given: numpy's
    by default, the compiled ones in cpu_integer)."""
    if want == "u8":
        return value if value.dtype == np.uint8 else quantize(value, q.scale, q.zero_point)
    return value if value.dtype != np.uint8 else dequantize(value, q.scale, q.zero_point)
