"""The numpy backend: every op as a small function over NHWC float32 arrays,
and a planner that runs whole graphs fast.

The op functions (the ``OPS`` table) are the plain reference.  Convolution
is im2col + GEMM (numpy hands the matrix multiply to its BLAS, which is
NEON-optimised on ARM); a 1x1 convolution is a GEMM straight away; a
depthwise convolution is a sum of shifted, per-channel-scaled views of the
padded input.  No op loops in Python over pixels or channels.

``CPUBackend.run`` executes a plan made once per input shape instead
(``cpu_kernels``): kernels prepared for each node (weights decoded once
into the layout they are used in) write into the buffers of an arena
planned from the graph's liveness.  The kernels come from one of two
implementations: where the compiled kernels are built (``native/``,
``cpu_native``) they run depthwise and direct convolutions, dense layers
on the stored integers, and every GEMM through numpy's own BLAS, split
among their thread team, each op by the variant chosen for this CPU;
without them, numpy does all of it in cache-sized row bands shared among a
small thread pool (docs/PERFORMANCE.md).
"""

import math
import time

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import DeviceNetError
from ..graph import Tensor, fixed_batch, window
from . import cpu_kernels
from .base import Backend, is_depthwise
from .cpu_kernels import activate as _activate


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
    cout, kh, kw, _ = weight.shape
    groups = attrs.get("groups", 1)
    act = attrs.get("activation", "none")
    (sh, sw), pads = attrs.get("stride", [1, 1]), attrs.get("pads", [0, 0, 0, 0])
    if is_depthwise(groups, x.shape[3], weight.shape):
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
    return np.concatenate(xs, axis=attrs.get("axis", -1))


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


def mul(a, b, attrs):
    return np.multiply(a, b)


def curve(name):
    """A curve activation as an op (the function a fused one applies)."""
    return lambda x, attrs: cpu_kernels.activate(x.copy(), name)


def hardsigmoid(x, attrs):
    return cpu_kernels.hardsigmoid(x, np.empty_like(x), attrs.get("alpha", 1.0 / 6.0), attrs.get("beta", 0.5))


def slice_channels(x, attrs):
    return np.ascontiguousarray(x[..., attrs["start"]:attrs["stop"]])


def channel_shuffle(x, attrs):
    """Channel g * (C / groups) + j goes to j * groups + g."""
    g = attrs["groups"]
    return np.ascontiguousarray(x.reshape(x.shape[:-1] + (g, -1)).swapaxes(-1, -2).reshape(x.shape))


def reshape(x, attrs):
    return x.reshape(attrs["shape"])


def rearrange(x, attrs):
    """Gather the input's elements through the strided index space (see graph._rearrange)."""
    flat = x.reshape(-1)[attrs.get("offset", 0):]
    view = as_strided(flat, attrs["dims"], [s * flat.itemsize for s in attrs["strides"]], writeable=False)
    return np.ascontiguousarray(view).reshape(attrs["shape"])


def layernorm(x, attrs, scale=None, shift=None):
    d = x - x.mean(axis=-1, keepdims=True, dtype=np.float32)
    var = np.mean(d * d, axis=-1, keepdims=True, dtype=np.float32)
    y = d / np.sqrt(var + np.float32(attrs.get("epsilon", 1e-5)))
    return affine(y, attrs, scale, shift)


def matmul(a, b, attrs):
    return np.matmul(a, b.swapaxes(-1, -2) if attrs.get("transpose_b", False) else b)


def by_fixed_batch(backend, x, fixed, profile=None):
    """Run a batch through a graph whose ops fix its batch size
    (``graph.fixed_batch``), ``fixed`` images at a time."""
    if x.shape[0] % fixed:
        raise DeviceNetError(f"the model runs batches of {fixed} images, not {x.shape[0]}")
    return np.concatenate([backend.run(x[i:i + fixed], profile) for i in range(0, x.shape[0], fixed)])


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
    "mul": lambda inputs, attrs, params: mul(*inputs, attrs),
    "sigmoid": _unary(curve("sigmoid")),
    "hardsigmoid": _unary(hardsigmoid),
    "hardswish": _unary(curve("hardswish")),
    "silu": _unary(curve("silu")),
    "slice": _unary(slice_channels),
    "channel_shuffle": _unary(channel_shuffle),
    "gelu": _unary(curve("gelu")),
    "reshape": _unary(reshape),
    "rearrange": _unary(rearrange),
    "constant": lambda inputs, attrs, params: params["value"].copy(),
    "layernorm": _unary(layernorm),
    "matmul": lambda inputs, attrs, params: matmul(*inputs, attrs),
}


class CPUBackend(Backend):
    """Runs a graph with numpy.  Weights are decoded once, on the first run,
    into the layout each kernel wants (``resident``), or just before each
    layer runs, a block of output channels at a time (``streamed``).

    ``threads`` (default: every core) are this backend's own: BLAS is kept
    to one thread and the compiled kernels' team (or, without them, a
    thread pool) splits each layer instead.  ``native=False`` runs numpy
    alone.  A plan's buffers are reused by every run, so one backend runs
    one batch at a time (``Model`` holds a lock around it).
    """

    name = "cpu"

    #: plans kept (one per input shape: batch sizes differ between calls)
    PLANS = 2
    #: a 1x1 convolution's output at least this large (bytes) is computed
    #: band by band inside the depthwise layer that reads it
    FUSE_BYTES = 1 << 20
    #: float32 values of weights decoded at a time by a streamed layer
    STREAM_CHUNK = 1 << 20

    def __init__(self, graph, threads=None, residency="resident", native=True, **_):
        super().__init__(graph, threads, residency)
        self._decoded, self._prepared, self._plans = {}, {}, {}
        self._lowered, self._entries = None, {}
        self._fixed_batch = fixed_batch(graph)
        team = cpu_kernels.Threads(threads)  # None: every core, as BLAS would take
        module = cpu_kernels.NATIVE if native else None
        if module is not None:
            from .cpu_native import Compiled
            self._impl = Compiled(module, team)
        else:
            self._impl = cpu_kernels.Numpy(team)

    @property
    def kernels(self):
        """Which implementation's kernels run: "native" (compiled) or "numpy"."""
        return self._impl.name

    def variants(self):
        """Which code runs each kind of op of the plans made so far: {op:
        variant}, e.g. {"depthwise": "f32_dwconv_4x16_avx2fma"} ("numpy"
        where numpy does)."""
        ops = {s.kernel.op for steps, _, _ in self._plans.values() for s in steps
               if s.kernel is not None and s.kernel.op != "?"}
        return self._impl.variants(sorted(ops))

    def variant_of(self, node_name):
        """Which code ran a node in the last plan made (None: the plain op
        function)."""
        for steps, _, _ in reversed(list(self._plans.values())):
            for s in steps:
                if s.node.name == node_name:
                    op = getattr(s.kernel, "op", "?")
                    return None if op == "?" else self._impl.variant(op)
        return None

    def _param(self, tname):
        if self.residency == "streamed":
            return self.graph.tensors[tname].decode()
        if tname not in self._decoded:
            self._decoded[tname] = self.graph.tensors[tname].decode()
        return self._decoded[tname]

    def run_node(self, node, inputs):
        if self.residency == "streamed" and node.op in ("conv", "dense"):
            return self._streamed(node, inputs)
        params = {role: self._param(t) for role, t in node.params.items()}
        return OPS[node.op](inputs, node.attrs, params)

    def _streamed(self, node, inputs):
        """A weighted layer with its weights decoded a block of output
        channels at a time, so no whole float32 weight tensor is ever held."""
        t = self.graph.tensors[node.params["weight"]]
        bias = self._param(node.params["bias"]) if "bias" in node.params else None
        groups = node.attrs.get("groups", 1)
        per = max(1, math.prod(t.shape[1:]))
        step = max(1, self.STREAM_CHUNK // per)
        if groups > 1 or step >= t.shape[0]:
            return OPS[node.op](inputs, node.attrs, {"weight": t.decode(), "bias": bias})
        parts = []
        for r in range(0, t.shape[0], step):
            w = Tensor(t.name, t.encoding, None, t.data[r:r + step],
                       None if t.scales is None else t.scales[r:r + step]).decode()
            b = None if bias is None else bias[r:r + step]
            parts.append(OPS[node.op](inputs, node.attrs, {"weight": w, "bias": b}))
        return np.concatenate(parts, axis=-1)

    def _integer(self, shapes):
        """The model's integer nodes as Q8Nodes ({} for an all-float model),
        made once; and for every node, how it reads each input (``entry``)."""
        if self._lowered is None:
            from .. import integer
            self._lowered = integer.lower(self.graph, shapes)
            _, qparams = integer.spec_of(self.graph.meta)
            u8 = {n.outputs[0] for n in self.graph.nodes
                  if n.name in self._lowered and self._lowered[n.name].out is not None}
            self._entries = {}
            for n in self.graph.nodes:
                want = "u8" if n.name in self._lowered else "f32"
                conv = [(want, qparams[t]) if (t in u8) != (want == "u8") else None for t in n.inputs]
                if any(conv):
                    self._entries[n.name] = conv
            if self.graph.output_name in u8:
                self._entries["(output)"] = [("f32", qparams[self.graph.output_name])]
        return self._lowered

    def _plan_for(self, shape):
        plan = self._plans.get(shape)
        if plan is not None:
            return plan
        shapes = self.graph.shapes(shape[0])
        lowered = self._integer(shapes)
        kernels = []
        for node in self.graph.nodes:
            if node.name in lowered:
                kernels.append(self._impl.q8(lowered[node.name], shapes[node.inputs[0]], shapes[node.outputs[0]]))
                continue
            weight = node.params.get("weight")
            weight = weight and cpu_kernels.Weight(self.graph.tensors[weight], self._prepared)
            bias = self._param(node.params["bias"]) if "bias" in node.params else None
            in_shape = shapes[node.inputs[0]] if node.inputs else None
            # streamed: only a kernel that reads the stored weights as they are
            stored = self.residency == "streamed" and weight is not None
            kernels.append(cpu_kernels.kernel(node, in_shape, weight, bias, self._impl, stored=stored,
                                              inputs=[shapes[n] for n in node.inputs]))
        cpu_kernels.fuse(self.graph, shapes, kernels, self.FUSE_BYTES)
        from .cpu_integer import Converting
        for i, node in enumerate(self.graph.nodes):
            conv, k = self._entries.get(node.name), kernels[i]
            if conv and k is not None and not getattr(k, "alias", False):
                # the conversions of what it reads become its own first calls
                kernels[i] = Converting(k, conv, [shapes[n] for n in node.inputs], self._impl)
        steps, sizes = cpu_kernels.plan(self.graph, shapes, kernels)
        buffers = [np.empty(s, np.float32) for s in sizes]
        for s in steps:
            # the steps that do not convert what they read themselves do so from Python
            s.entry = None if isinstance(s.kernel, Converting) else self._entries.get(s.node.name)
            if s.out is not None:
                s.out = buffers[s.out][:math.prod(s.shape)].reshape(s.shape)
            elif s.node.outputs[0] == self.graph.output_name and s.kernel is not None \
                    and not getattr(s.kernel, "alias", False):
                # the graph's output gets a buffer of its own, so that the
                # last layer runs inside a program too; run() returns a copy
                s.out = np.empty(s.shape, np.float32)
            s.temps = [None if t is None else buffers[t] for t in s.temps]
        # Runs of compiled steps become programs that go from layer to layer
        # without coming back to Python (and without re-checking arguments).
        input_buffer = np.empty(shape, np.float32)
        programs = cpu_kernels.programs(self.graph, steps, input_buffer, self._impl.module)
        if len(self._plans) >= self.PLANS:
            self._plans.pop(next(iter(self._plans)))
        plan = self._plans[shape] = (steps, programs, input_buffer)
        return plan

    def prepare(self, shape):
        shape = tuple(shape)
        fixed = self._fixed_batch
        shape = shape if fixed is None else (fixed,) + shape[1:]
        if shape in self._plans or shape[1:] != tuple(self.graph.input_shape[1:]):
            return False
        self._plan_for(shape)
        return True

    def run(self, x, profile=None):
        """Run the graph on an input batch (see Backend.run) through the
        planned kernels and arena of this input shape."""
        g = self.graph
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._fixed_batch is not None and x.shape[0] != self._fixed_batch:
            return by_fixed_batch(self, x, self._fixed_batch, profile)
        if x.shape[1:] != self.graph.input_shape[1:]:
            return super().run(x, profile)
        values = {g.input_name: x}
        steps, programs, input_buffer = self._plan_for(x.shape)
        i = 0
        while i < len(steps):
            program = programs.get(i)
            if program is not None:
                if program.reads_input:
                    np.copyto(input_buffer, x)
                # a profile times each call inside the program, as it runs
                times = None if profile is None else np.empty(sum(program.calls))
                self._impl.run_program(program.program, times)
                values.update(program.keep)
                if profile is not None:
                    seconds = program.step_seconds(times)
                    profile.extend((s.node, s.shape, t) for s, t in zip(steps[i:program.last + 1], seconds))
                i = program.last + 1
                continue
            step = steps[i]
            i += 1
            t0 = time.perf_counter() if profile is not None else 0.0
            ins = [values[n] for n in step.node.inputs]
            if step.entry:  # a float value read by an integer node, or the other way round
                ins = [v if c is None else self._impl.entry(v, *c) for v, c in zip(ins, step.entry)]
            if step.kernel is None:
                out = self.run_node(step.node, ins)
            else:
                out = step.out
                if out is None and not getattr(step.kernel, "alias", False):
                    out = np.empty(step.shape, np.float32)  # the graph's output: the caller keeps it
                out = step.kernel(ins, out, step.temps)
            values[step.node.outputs[0]] = out
            if profile is not None:
                profile.append((step.node, step.shape, time.perf_counter() - t0))
            for n in step.drop:
                values.pop(n, None)
        out = values[g.output_name]
        conv = self._entries.get("(output)")
        if conv:
            return self._impl.entry(out, *conv[0])
        # the output's own buffer (see _plan_for) is written again by the next run
        last = next(s for s in reversed(steps) if s.node.outputs[0] == g.output_name)
        return out.copy() if last.out is not None and np.shares_memory(out, last.out) else out
