"""The OpenCL backend: the graph on any OpenCL 1.2 device through pyopencl.

Weights go to the device as stored (int8/int16 with float32 scales, or
float16/float32) and the kernels decode them in registers.  A run uploads
the input once, keeps every intermediate on the device in buffers planned
once per batch size, and downloads the output once.  Programs are built once
per device and source and their binaries cached on disk.  The kernels are
``kernels/*.cl``; ``OPS`` maps each op to the launches it needs.
"""

import hashlib
import math
import os
import warnings
from types import SimpleNamespace

import numpy as np
import pyopencl as cl
from pyopencl import cltypes

from ..errors import DeviceNetError
from ..graph import ACTIVATIONS, CURVES, OPS as SPECS, fixed_batch, window
from .base import Backend, is_depthwise, plan_buffers

KERNEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")

#: weight encoding -> (OpenCL storage type, how a kernel reads weight i of p as a float)
WEIGHT_TYPES = {
    "int8": ("char", "((float)(p)[i])"),
    "int16": ("short", "((float)(p)[i])"),
    "float16": ("half", "vload_half((i), (p))"),
    "float32": ("float", "((p)[i])"),
}
DENSE_WG = 64  # must match DENSE_WG in weighted.cl


def _one_line(e):
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --- devices -------------------------------------------------------------------

def devices():
    """Every (platform, device) pair pyopencl sees, in a stable order."""
    try:
        return [(p, d) for p in cl.get_platforms() for d in p.get_devices()]
    except cl.Error as e:
        raise DeviceNetError(f"no OpenCL platform found ({_one_line(e)}); install a driver or use --backend cpu")


def list_devices():
    """Platforms and devices as dicts, for ``devicenet info --devices``."""
    return [{"index": i, "platform": p.name.strip(), "device": d.name.strip(),
             "type": cl.device_type.to_string(d.type), "version": d.version.strip(),
             "compute_units": d.max_compute_units, "global_mem_mb": d.global_mem_size >> 20,
             "local_mem_kb": d.local_mem_size >> 10}
            for i, (p, d) in enumerate(devices())]


def pick_device(choice=None):
    """The device to use: ``choice`` (an index, or part of the device or
    platform name), else ``DEVICENET_OPENCL_DEVICE``, else the first GPU,
    else the first device."""
    found = devices()
    if not found:
        raise DeviceNetError("no OpenCL device found; install a driver or use --backend cpu")
    choice = choice if choice not in (None, "") else os.environ.get("DEVICENET_OPENCL_DEVICE") or None
    if choice is None:
        gpus = [pd for pd in found if pd[1].type & cl.device_type.GPU]
        return (gpus or found)[0]
    text = str(choice).strip()
    if text.isdigit():
        if int(text) < len(found):
            return found[int(text)]
    else:
        for p, d in found:
            if text.lower() in d.name.lower() or text.lower() in p.name.lower():
                return p, d
    names = "; ".join(f"{i}: {d.name.strip()}" for i, (_, d) in enumerate(found))
    raise DeviceNetError(f"no OpenCL device matches {text!r} (devices: {names})")


# --- programs and their cache --------------------------------------------------

def cache_dir():
    """Where built program binaries are kept (``DEVICENET_CACHE_DIR`` overrides)."""
    base = os.environ.get("DEVICENET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "devicenet")
    return os.path.join(base, "opencl")


def _compile(ctx, source):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyopencl warns with the whole build log
        return cl.Program(ctx, source).build()


def build(ctx, device, source):
    """Build ``source`` for ``device``, from the disk cache when it has it."""
    ident = "\0".join([device.platform.name, device.platform.version, device.name, device.version,
                       device.driver_version, source])
    path = os.path.join(cache_dir(), hashlib.sha256(ident.encode()).hexdigest() + ".bin")
    try:
        with open(path, "rb") as f:
            binary = f.read()
        return cl.Program(ctx, [device], [binary]).build()
    except (OSError, cl.Error):
        pass  # not cached yet, or a stale binary the driver refuses: build from source
    prg = _compile(ctx, source)
    try:
        binary = prg.get_info(cl.program_info.BINARIES)[0]
        if binary:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(binary)
            os.replace(tmp, path)
    except (OSError, cl.Error):
        pass  # a cache we cannot write only costs the next start a build
    return prg


def kernel_source(name, defines=()):
    """The text of kernels/NAME after the defines and the shared helpers."""
    parts = []
    for fname in ("common.cl", name):
        with open(os.path.join(KERNEL_DIR, fname)) as f:
            parts.append(f.read())
    return "".join(f"#define {k} {v}\n" for k, v in defines) + "\n".join(parts)


# --- ops: node -> launches -----------------------------------------------------

def _i(*vals):
    return [np.int32(v) for v in vals]


def _bounds(lo, hi):
    """A clamp's bounds as kernel arguments; None (no bound) becomes an infinity."""
    return [np.float32(-np.inf if lo is None else lo), np.float32(np.inf if hi is None else hi)]


def _clamp(node):
    """The kernel arguments of the node's fused activation: its clamp's
    bounds and its curve's index in CURVES (-1 for none)."""
    act = node.attrs.get("activation", "none")
    return _bounds(*ACTIVATIONS.get(act, (None, None))) + [np.int32(CURVES.index(act) if act in CURVES else -1)]


def _curve(be, node, ins, out, shapes):
    a = node.attrs
    k = be.kernel(None, "curve")
    k.set_args(ins[0], out, np.int32(CURVES.index(node.op)), np.float32(a.get("alpha", 1.0 / 6.0)),
               np.float32(a.get("beta", 0.5)))
    return [(k, (math.prod(shapes[-1]),), None)]


def _as4(shape):
    """A shape of up to 4 axes with leading 1s to make 4."""
    return (1,) * (4 - len(shape)) + tuple(shape)


def _broadcast_strides(shape):
    """Element strides per axis (0 where the size is 1) of a tensor
    broadcast against a 4-axis output, numpy's way (right-aligned)."""
    shape = _as4(shape)
    s = [math.prod(shape[i + 1:]) for i in range(4)]
    return cltypes.make_int4(*(0 if d == 1 else st for d, st in zip(shape, s)))


def _binary_launch(be, a, b, out, a_shape, b_shape, out_shape, op):
    """out = a + b (op 0) or a * b (op 1), broadcasting (layers.cl)."""
    k = be.kernel(None, "binary")
    k.set_args(a, b, out, *_i(*_as4(out_shape)[1:]), _broadcast_strides(a_shape), _broadcast_strides(b_shape),
               np.int32(op))
    return (k, (math.prod(out_shape),), None)


def _mul(be, node, ins, out, shapes):
    return [_binary_launch(be, *ins, out, *shapes, 1)]


def _slice_args(be, node, shapes):
    return _i(shapes[0][-1], shapes[-1][-1], node.attrs["start"])


def _shuffle_args(be, node, shapes):
    return _i(shapes[0][-1], node.attrs["groups"])


def _conv(be, node, ins, out, shapes):
    (n, h, w, c), (_, oh, ow, co) = shapes
    wt = be.graph.tensors[node.params["weight"]]
    _, kh, kw, cig = wt.shape
    groups = node.attrs.get("groups", 1)
    _, (sh, sw), (pt, pl, _, _), (dh, dw) = window(node.attrs, node.name)
    wbuf, sbuf, bbuf = be.weights(node)
    act = _clamp(node)
    geom = _i(kh, kw, sh, sw, pt, pl, dh, dw) + [np.float32(node.attrs.get("pad_value", 0.0))]
    if is_depthwise(groups, c, wt.shape):
        k = be.kernel(wt.encoding, "depthwise")
        k.set_args(ins[0], wbuf, sbuf, bbuf, out, *_i(h, w, c, oh, ow), *geom, *act)
        return [(k, (n * oh * ow * c,), None)]
    cog, m = co // groups, n * oh * ow
    k = be.kernel(wt.encoding, "conv_gemm")
    k.set_args(ins[0], wbuf, sbuf, bbuf, out, *_i(h, w, c, oh, ow, co), *geom, *_i(cig, cog, m), *act)
    # 8x8 work-items, each computing 4x4 of a 32x32 output tile (see weighted.cl)
    return [(k, (-(-cog // 32) * 8, -(-m // 32) * 8, groups), (8, 8, 1))]


def _dense(be, node, ins, out, shapes):
    n, k_in, o = math.prod(shapes[0][:-1]), shapes[0][-1], shapes[-1][-1]
    wt = be.graph.tensors[node.params["weight"]]
    wbuf, sbuf, bbuf = be.weights(node)
    k = be.kernel(wt.encoding, "dense")
    k.set_args(ins[0], wbuf, sbuf, bbuf, out, *_i(k_in, o), *_clamp(node))
    return [(k, (o * DENSE_WG, n), (DENSE_WG, 1))]


def _elementwise(name, extra):
    def launch(be, node, ins, out, shapes):
        k = be.kernel(None, name)
        k.set_args(*ins, out, *extra(be, node, shapes))
        return [(k, (math.prod(shapes[-1]),), None)]
    return launch


def _pool(is_max):
    def extra(be, node, shapes):
        (n, h, w, c), (_, oh, ow, _) = shapes
        (kh, kw), (sh, sw), (pt, pl, _, _), (dh, dw) = window(node.attrs, node.name)
        return _i(h, w, c, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, is_max,
                  bool(node.attrs.get("count_include_pad", False)))
    return _elementwise("pool", extra)


def _affine(be, node, ins, out, shapes):
    c = shapes[0][-1]
    params = {role: be.graph.tensors[t] for role, t in node.params.items()}
    if any(math.prod(t.shape[:-1]) != 1 or t.shape[-1] not in (1, c) for t in params.values()):
        # A constant of its own shape (a position embedding, an attention
        # bias): broadcast multiply, then broadcast add over the output.
        launches, src = [], ins[0]
        for role, op in (("scale", 1), ("shift", 0)):
            if role in params:
                launches.append(_binary_launch(be, src, be.tensor(node.params[role]), out, shapes[0],
                                               params[role].shape, shapes[0], op))
                src = out
        return launches or [_binary_launch(be, src, be.tensor(None), out, shapes[0], (1,), shapes[0], 1)]
    scale, shift = (be.vector(node, role, c, fill) for role, fill in (("scale", 1.0), ("shift", 0.0)))
    k = be.kernel(None, "affine")
    k.set_args(ins[0], scale, shift, out, np.int32(c))
    return [(k, (math.prod(shapes[0]),), None)]


def _global_avgpool(be, node, ins, out, shapes):
    n, h, w, c = shapes[0]
    k = be.kernel(None, "global_avgpool")
    k.set_args(ins[0], out, *_i(h * w, c))
    return [(k, (n * c,), None)]


def _concat(be, node, ins, out, shapes):
    # Along any axis: every input is (outer, its size * inner) rows of the output's.
    axis = node.attrs.get("axis", -1) % len(shapes[-1])
    inner = math.prod(shapes[-1][axis + 1:])
    cout, offset, launches = shapes[-1][axis] * inner, 0, []
    for buf, shape in zip(ins, shapes[:-1]):
        k = be.kernel(None, "concat_copy")
        k.set_args(buf, out, *_i(shape[axis] * inner, cout, offset))
        launches.append((k, (math.prod(shape),), None))
        offset += shape[axis] * inner
    return launches


def _constant(be, node, ins, out, shapes):
    size = math.prod(shapes[-1])
    k = be.kernel(None, "concat_copy")
    k.set_args(be.tensor(node.params["value"]), out, *_i(size, size, 0))
    return [(k, (size,), None)]


def _rearrange(be, node, ins, out, shapes):
    a = node.attrs
    pad = 6 - len(a["dims"])
    dims = cltypes.make_int8(*([1] * pad + a["dims"] + [1, 1]))
    strides = cltypes.make_int8(*([0] * pad + a["strides"] + [0, 0]))
    k = be.kernel(None, "rearrange")
    k.set_args(ins[0], out, dims, strides, np.int32(a.get("offset", 0)))
    return [(k, (math.prod(shapes[-1]),), None)]


def _layernorm(be, node, ins, out, shapes):
    c = shapes[0][-1]
    scale, shift = (be.vector(node, role, c, fill) for role, fill in (("scale", 1.0), ("shift", 0.0)))
    k = be.kernel(None, "layernorm")
    k.set_args(ins[0], scale, shift, out, np.int32(c), np.float32(node.attrs.get("epsilon", 1e-5)))
    return [(k, (math.prod(shapes[0][:-1]),), None)]


def _matmul(be, node, ins, out, shapes):
    a, b, y = (_as4(s) for s in shapes)
    tb = bool(node.attrs.get("transpose_b", False))
    m, kk, n = a[2], a[3], y[3]

    def batch(shape):
        return [0 if shape[i] == 1 else math.prod(shape[i + 1:]) for i in (0, 1)]
    k = be.kernel(None, "matmul")
    k.set_args(*ins, out, *_i(y[1], m, n, kk), cltypes.make_int4(*batch(a), *batch(b)), np.int32(tb))
    return [(k, (math.prod(y),), None)]


def _softmax(be, node, ins, out, shapes):
    k = be.kernel(None, "softmax")
    k.set_args(ins[0], out, np.int32(shapes[0][-1]))
    return [(k, (math.prod(shapes[0][:-1]),), None)]


def _clip_bounds(be, node, shapes):
    return _bounds(node.attrs.get("min"), node.attrs.get("max"))


def _lrn_args(be, node, shapes):
    a = node.attrs
    return [np.int32(shapes[0][-1]), np.int32(a["size"]),
            *(np.float32(a[key]) for key in ("alpha", "beta", "bias"))]


def _pad_args(be, node, shapes):
    (n, h, w, c), (_, oh, ow, _) = shapes
    t, l, _, _ = node.attrs["pads"]
    return _i(h, w, c, oh, ow, t, l) + [np.float32(node.attrs.get("value", 0.0))]


#: op name -> function(backend, node, input buffers, output buffer, [input shapes..., output shape])
#: returning [(kernel with its arguments set, global size, local size)].  ``flatten``
#: is not here: its output is its input's buffer under another shape.
OPS = {
    "conv": _conv,
    "dense": _dense,
    "add": _elementwise("add", lambda be, node, shapes: _clamp(node)),
    "affine": _affine,
    "clip": _elementwise("clip", _clip_bounds),
    "maxpool": _pool(True),
    "avgpool": _pool(False),
    "global_avgpool": _global_avgpool,
    "concat": _concat,
    "softmax": _softmax,
    "lrn": _elementwise("lrn", _lrn_args),
    "pad": _elementwise("pad", _pad_args),
    "mul": _mul,
    "sigmoid": _curve,
    "hardsigmoid": _curve,
    "hardswish": _curve,
    "silu": _curve,
    "slice": _elementwise("slice_channels", _slice_args),
    "channel_shuffle": _elementwise("channel_shuffle", _shuffle_args),
    "gelu": _curve,
    "rearrange": _rearrange,
    "constant": _constant,
    "layernorm": _layernorm,
    "matmul": _matmul,
}
ALIASES = {"flatten", "reshape"}


# --- the backend -----------------------------------------------------------------

class OpenCLBackend(Backend):
    """Runs a graph on an OpenCL device.

    Raises DeviceNetError when there is no usable device or a program does
    not build (ImportError when pyopencl is missing).  With ``fallback``, a
    device failure during a run (e.g. out of resources) prints a one-line
    warning and the run, and every later one, goes to the CPU backend.
    """

    name = "opencl"

    def __init__(self, graph, threads=None, residency="resident", device=None, fallback=False):
        super().__init__(graph, threads, residency)
        self.fallback = fallback
        self._cpu = None
        self._plans = {}
        try:
            self._open(device)
        except cl.Error as e:
            raise DeviceNetError(f"OpenCL device {self.device_name!r} failed: {_one_line(e)}")

    device_name = "?"

    def _open(self, device):
        self.platform, self.device = pick_device(device)
        self.device_name = self.device.name.strip()
        self.ctx = cl.Context([self.device])
        self.queue = cl.CommandQueue(self.ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
        self._programs = {None: self._program("layers.cl", ())}
        encodings = {self.graph.tensors[n.params["weight"]].encoding for n in self.graph.weight_nodes()}
        for enc in sorted(encodings):
            if enc not in WEIGHT_TYPES:
                raise DeviceNetError(f"the OpenCL backend cannot read {enc} weights")
            wtype, load = WEIGHT_TYPES[enc]
            self._programs[enc] = self._program("weighted.cl", (("WTYPE", wtype), ("LOADW(p, i)", load)))
        self._params = {}
        for node in self.graph.nodes:
            if node.op not in OPS and node.op not in ALIASES:
                raise DeviceNetError(f"node {node.name}: the OpenCL backend has no kernel for op {node.op!r}")
            if "weight" in node.params:
                self.weights(node)

    def _program(self, name, defines):
        try:
            return build(self.ctx, self.device, kernel_source(name, defines))
        except cl.Error as e:
            raise DeviceNetError(f"OpenCL kernels {name} failed to build on {self.device_name}: {_one_line(e)}")

    def kernel(self, encoding, name):
        """A fresh kernel object, so that every launch keeps its own arguments."""
        return cl.Kernel(self._programs[encoding], name)

    def _upload(self, array):
        array = np.ascontiguousarray(array)
        return cl.Buffer(self.ctx, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=array)

    def weights(self, node):
        """Device buffers (weights as stored, float32 scales, float32 bias) of a conv or dense node."""
        key = (node.params["weight"], node.params.get("bias"))
        if key not in self._params:
            wt = self.graph.tensors[node.params["weight"]]
            cout = wt.shape[0]
            scales = wt.scales if wt.scales is not None else np.ones(cout, np.float32)
            bias = self._small(node.params.get("bias"), cout, 0.0)
            self._params[key] = (self._upload(wt.data), self._upload(np.asarray(scales, np.float32)),
                                 self._upload(bias))
        return self._params[key]

    def _small(self, tname, size, fill):
        if tname is None:
            return np.full(size, fill, np.float32)
        return np.broadcast_to(self.graph.tensors[tname].decode().reshape(-1), (size,)).astype(np.float32)

    def tensor(self, tname):
        """A parameter tensor decoded to float32 on the device (a scalar 1 for None)."""
        if (tname,) not in self._params:
            data = np.ones(1, np.float32) if tname is None else self.graph.tensors[tname].decode()
            self._params[(tname,)] = self._upload(np.asarray(data, np.float32))
        return self._params[(tname,)]

    def vector(self, node, role, size, fill):
        """A per-channel float32 parameter (affine scale or shift) on the device."""
        key = (node.params.get(role), size, fill)
        if key not in self._params:
            self._params[key] = self._upload(self._small(node.params.get(role), size, fill))
        return self._params[key]

    # -- planning: buffers and launches, once per batch size -----------------------

    def _plan(self, batch):
        g = self.graph
        shapes = g.shapes(batch)
        buffers = plan_buffers(g, shapes, lambda i: g.nodes[i].op in ALIASES, own_ends=True)
        bufs = [cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE, 4 * max(1, size)) for size in buffers.sizes]
        steps = []
        for node, (out, _, _) in zip(g.nodes, buffers.steps):
            shape = shapes[node.outputs[0]]
            if node.op in ALIASES:
                steps.append((node, shape, []))
                continue
            ins = [bufs[buffers.where[n]] for n in node.inputs]
            node_shapes = [shapes[n] for n in node.inputs] + [shape]
            steps.append((node, shape, OPS[node.op](self, node, ins, bufs[out], node_shapes)))
        # The kernels hold the buffers only as OpenCL handles: keep the Python
        # objects alive with the plan.
        return SimpleNamespace(input=bufs[buffers.where[g.input_name]], output=bufs[buffers.where[g.output_name]],
                               buffers=bufs, out_shape=shapes[g.output_name], steps=steps)

    # -- running ------------------------------------------------------------------

    def run(self, x, profile=None):
        """Run a batch: one upload, every layer on the device, one download."""
        if self._cpu is not None:
            return self._cpu.run(x, profile)
        fixed = fixed_batch(self.graph)
        if fixed is not None and len(x) != fixed:
            from .cpu import by_fixed_batch
            return by_fixed_batch(self, np.asarray(x, np.float32), fixed, profile)
        try:
            return self._run(np.ascontiguousarray(x, dtype=np.float32), profile)
        except (cl.Error, MemoryError) as e:
            reason = f"OpenCL run failed on {self.device_name}: {_one_line(e)}"
            if not self.fallback:
                raise DeviceNetError(reason) from None
            from . import warn
            from .cpu import CPUBackend
            warn(f"{reason}; using the CPU backend")
            self._cpu = CPUBackend(self.graph, threads=self.threads, residency=self.residency)
            self.name = "cpu"
            self._plans.clear()
            return self._cpu.run(x, profile)

    def _run(self, x, profile):
        plan = self._plans.get(x.shape[0])
        if plan is None:
            plan = self._plans[x.shape[0]] = self._plan(x.shape[0])
        q = self.queue
        cl.enqueue_copy(q, plan.input, x, is_blocking=False)
        events = [[cl.enqueue_nd_range_kernel(q, k, gsize, lsize) for k, gsize, lsize in launches]
                  for _, _, launches in plan.steps]
        out = np.empty(plan.out_shape, np.float32)
        cl.enqueue_copy(q, out, plan.output, is_blocking=True)
        if profile is not None:
            for (node, shape, _), evs in zip(plan.steps, events):
                seconds = sum(e.profile.end - e.profile.start for e in evs) * 1e-9
                profile.append((node, tuple(shape), seconds))
        return out

    def run_node(self, node, inputs):
        """One node on its own (uploads its inputs, downloads its output)."""
        shapes = [tuple(a.shape) for a in inputs]
        bufs = [self._upload(np.ascontiguousarray(a, np.float32)) for a in inputs]
        ps = {r: tuple(self.graph.tensors[t].shape) for r, t in node.params.items()}
        out_shape = tuple(SPECS[node.op].shape(node, shapes, ps))
        if node.op in ALIASES:
            return inputs[0].reshape(out_shape)
        out = cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE, math.prod(out_shape) * 4)
        for k, gsize, lsize in OPS[node.op](self, node, bufs, out, shapes + [out_shape]):
            cl.enqueue_nd_range_kernel(self.queue, k, gsize, lsize)
        y = np.empty(out_shape, np.float32)
        cl.enqueue_copy(self.queue, y, out, is_blocking=True)
        return y
