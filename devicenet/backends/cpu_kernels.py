"""Planned kernels of the CPU backend: the fast path of ``CPUBackend.run``.

A kernel is made once per node and input shape: weights transposed or
tiled, padding and column layouts worked out.  Called with the node's
inputs, an output buffer and scratch buffers from the arena, it writes the
output in place.  ``temps`` lists the scratch sizes (float32 elements) it
needs.  ``plan`` assigns every output and scratch buffer a slot of one
arena, reused along the graph as values die (docs/PERFORMANCE.md).

Kernels come from one of two implementations behind the same selection
(``kernel``): ``Numpy`` here, numpy's work shared among a pool of threads,
and ``cpu_native.Compiled``, the compiled kernels (``native/``) and their
thread team.  Each maps kinds of kernel (``"gemm"``, ``"depthwise"``, ...)
to classes; a kind it lacks falls through to the next candidate.

A compiled kernel may also ``bind`` itself to fixed buffers:
``bind(inputs, out, temps)`` returns the compiled calls it makes, as
``(name, kwargs)`` pairs, or None.  ``programs`` turns runs of bound steps
into compiled programs that go from layer to layer without returning to
Python.
"""

import functools
import math
import os
import sys

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..graph import ACTIVATIONS, CURVES, window
from ..threads import busy_threads, cblas_address, default_threads, set_blas_threads
from .base import is_depthwise, is_pointwise, plan_buffers

try:
    from . import _native as NATIVE
except ImportError as e:  # built without a C compiler: numpy does all the work
    NATIVE = None
    if "DEVICENET_KERNEL_ISA" in str(e):  # built, but told to use an instruction set it does not know
        from . import warn
        warn(f"{e}; the CPU backend uses numpy alone")
if os.environ.get("DEVICENET_NATIVE", "1") == "0":
    NATIVE = None


@functools.lru_cache(maxsize=None)
def native_gemm():
    """Whether the compiled kernels run GEMMs themselves (through numpy's
    own BLAS, single-threaded inside their thread team): the BLAS functions
    were found and give the right answers on small products."""
    # Passing the BLAS's integers as long relies on how Linux's calling
    # conventions lay arguments out (native/f32_gemm_blas.c); elsewhere numpy's
    # matmul does the GEMMs.
    if NATIVE is None or not sys.platform.startswith("linux"):
        return False
    gemm, gemv = cblas_address("sgemm"), cblas_address("sgemv")
    if not gemm:
        return False
    NATIVE.use_blas(gemm, gemv or 0)
    # (numpy.random would add 15 ms to every cold start)
    b = np.cos(np.arange(21, dtype=np.float32)).reshape(7, 3)
    for m in (5, 1):  # sgemm, and sgemv for a single row
        a = np.sin(np.arange(7 * m, dtype=np.float32)).reshape(m, 7)
        y = np.empty((m, 3), np.float32)
        NATIVE.gemm(a=a, b=b, y=y, m=m, k=7, n=3)
        if not np.allclose(y, a @ b, rtol=1e-5, atol=1e-5):
            NATIVE.use_blas(0, 0)
            return False
    return True


def hardsigmoid(x, out, alpha=1.0 / 6.0, beta=0.5):
    """out = clip(alpha * x + beta, 0, 1) (out may be x)."""
    np.multiply(x, np.float32(alpha), out=out)
    out += np.float32(beta)
    return np.clip(out, 0.0, 1.0, out=out)


def sigmoid(x, out):
    """out = 1 / (1 + exp(-x)) (out may be x)."""
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88: sigmoid is then 0
        np.negative(x, out=out)
        np.exp(out, out=out)
    out += np.float32(1.0)
    return np.reciprocal(out, out=out)


def erf(x, out):
    """out = erf(x) within 1.5e-7 (Abramowitz and Stegun 7.1.26: numpy has no
    erf of its own); out may not be x."""
    a = np.abs(x)
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
        np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    np.multiply(a, a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    np.multiply(poly, a, out=out)
    np.subtract(np.float32(1.0), out, out=out)
    return np.copysign(out, x, out=out)


def gelu(y, scratch=None):
    """y = y * (1 + erf(y / sqrt 2)) / 2 in place (the exact GELU)."""
    t = erf(y * np.float32(1.0 / math.sqrt(2.0)), np.empty_like(y) if scratch is None else scratch)
    t += np.float32(1.0)
    t *= np.float32(0.5)
    y *= t
    return y


def _times_x(gate):
    def curve(y, scratch=None):
        t = gate(y, np.empty_like(y) if scratch is None else scratch)
        y *= t
        return y
    return curve


#: the curve activations, applied in place (names as in graph.CURVES);
#: ``scratch``, where given, is a buffer of y's shape they may use
CURVES_IN_PLACE = {"sigmoid": lambda y, scratch=None: sigmoid(y, y),
                   "hardsigmoid": lambda y, scratch=None: hardsigmoid(y, y),
                   "hardswish": _times_x(hardsigmoid), "silu": _times_x(sigmoid), "gelu": gelu}
assert set(CURVES_IN_PLACE) == set(CURVES)


def activate(y, name, scratch=None):
    """Apply a fused activation to y in place; return y."""
    if name in CURVES_IN_PLACE:
        return CURVES_IN_PLACE[name](y, scratch)
    lo, hi = ACTIVATIONS[name]
    if lo == 0.0 and hi is None:
        np.maximum(y, 0.0, out=y)  # faster than clip with one bound
    elif lo is not None or hi is not None:
        np.clip(y, lo, hi, out=y)
    return y


class Threads:
    """How many threads a backend's kernels use: the count it was given
    (every core by default), less, for the compiled kernels, the process's
    threads busy beside inference (``threads.working_alongside``: a
    folder's photo decoder keeps a core for itself).  The one place that
    count lives."""

    __slots__ = ("wanted",)

    def __init__(self, wanted=None):
        self.wanted = wanted or default_threads()

    @property
    def n(self):
        return max(1, self.wanted - busy_threads())


def bounds(act):
    """A fused activation as the compiled float kernels' arguments: a clip
    (``lo`` and ``hi``, infinite where open) or a curve (``curve``, its
    index in graph.CURVES), which they apply while the output is in cache."""
    if act in CURVES:
        return {"curve": CURVES.index(act)}
    lo, hi = ACTIVATIONS[act]
    return {"lo": -np.inf if lo is None else lo, "hi": np.inf if hi is None else hi}


class Kernel:
    """What every planned kernel has: the kind of op it computes (as the
    implementations' tables and the compiled registry name it) and, by
    default, no scratch buffers and no say in where it applies."""

    op = "?"
    temps = ()

    @classmethod
    def suits(cls, node, shape, weight):
        """Whether this kernel computes ``node`` (beyond its kind)."""
        return True


class Numpy:
    """The numpy implementation: numpy does every kernel's work, layers
    shared in bands of rows among a small pool of threads (BLAS kept to one
    thread)."""

    name = "numpy"
    module = None  # no compiled programs

    def __init__(self, threads):
        self.threads = threads
        set_blas_threads(1)
        self.pool = None
        if threads.wanted > 1:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(threads.wanted - 1, thread_name_prefix="devicenet-cpu")

    @property
    def width(self):
        """How many bands run at once: the pool's threads and the caller's."""
        return self.threads.wanted

    def gemm(self, a, wt, y, bias, act):
        """y = act(a @ wt + bias), in bands of rows shared among the pool's
        threads; each band adds bias and activation while it is still in
        cache."""
        def band(i, r0, r1):
            yb = y[r0:r1]
            np.matmul(a[r0:r1], wt, out=yb)
            if bias is not None:
                yb += bias
            activate(yb, act)
        _parallel(band, a.shape[0], self.pool, min_rows=16)

    def entry(self, value, want, q):
        """A value converted for its reader (integer.entry)."""
        from ..integer import entry
        return entry(value, want, q)

    def q8(self, qnode, in_shape, shape):
        """The kernel of an integer node (integer.Q8Node) with output shape ``shape``."""
        return Q8Numpy(qnode, shape)

    def variant(self, op):
        """Which code runs an op's kernels."""
        return "numpy"

    def variants(self, ops):
        return {op: self.variant(op) for op in ops}


def _parallel(fn, rows, pool, min_rows=1):
    """fn(i, r0, r1) for the i-th of the bands covering range(rows), one per
    thread (at least ``min_rows`` rows each)."""
    # numpy releases the GIL inside BLAS, einsum and ufunc loops, so the
    # bands run in parallel.  The pool's threads sleep when idle instead of
    # spinning, which keeps a loaded machine from stalling as a spinning
    # BLAS pool does.
    k = max(1, min(1 if pool is None else pool._max_workers + 1, rows // min_rows))
    edges = [rows * i // k for i in range(k + 1)]
    futures = [pool.submit(fn, i, a, b) for i, (a, b) in enumerate(zip(edges[1:-1], edges[2:]), 1)]
    fn(0, edges[0], edges[1])
    for f in futures:
        f.result()


class _Gemm(Kernel):
    """A 1x1 stride-1 convolution or a dense layer: one GEMM into the
    output, by the implementation's GEMM."""

    op = "gemm"

    def __init__(self, node, shape, weight, bias, impl):
        self.wt = weight.transposed()
        self.bias, self.act, self.impl = bias, node.attrs.get("activation", "none"), impl

    def __call__(self, inputs, out, temps):
        x = inputs[0].reshape(-1, self.wt.shape[0])
        self.impl.gemm(x, self.wt, out.reshape(-1, self.wt.shape[1]), self.bias, self.act)
        return out


class _Padded:
    """Where a windowed op's zero-padded input goes, split into column phases
    (with ``phases``, phase p holds padded columns p, p+sw, ...), so that
    every kernel tap reads whole contiguous rows of (columns x channels)."""

    def __init__(self, shape, attrs, phases=True):
        n, h, w, c = shape
        (self.kh, self.kw), (self.sh, self.sw), self.pads, _ = window(attrs, "")
        pt, pl, pb, pr = self.pads
        hp, wp = h + pt + pb, w + pl + pr
        self.oh = (hp - self.kh) // self.sh + 1
        self.ow = (wp - self.kw) // self.sw + 1
        self.phases = self.sw if phases else 1
        self.wq = -(-wp // self.phases)
        self.n, self.h, self.c, self.pt = n, h, c, pt
        self.copies = []  # (phase, first column, end column, first source column)
        for p in range(self.phases):
            q0 = max(0, -(-(pl - p) // self.phases))
            q1 = max(q0, (w - 1 + pl - p) // self.phases + 1)
            self.copies.append((p, q0, q1, q0 * self.phases + p - pl))

    def geometry(self, w):
        """The compiled window kernels' geometry arguments for a whole image
        ``w`` pixels wide."""
        return dict(h=self.h, w=w, c=self.c, row0=0, rows=self.h, oh=self.oh, ow=self.ow, kh=self.kh,
                    kw=self.kw, sh=self.sh, sw=self.sw, pad_top=self.pads[0], pad_left=self.pads[1])

    def rows(self, r0, r1):
        """Padded input rows under output rows [r0, r1)."""
        return (r1 - r0 - 1) * self.sh + self.kh

    def size(self, r0, r1):
        return self.phases * self.rows(r0, r1) * self.wq * self.c

    def fill(self, x, buf, b, r0, r1, produce=None):
        """The padded rows under output rows [r0, r1) of image b, copied into
        buf as (phases, rows, wq, C); borders are zeroed (buf is reused
        scratch).  ``produce(src, dst)``, when given, writes dst from x's
        pixels instead of copying them."""
        top, rows = r0 * self.sh, self.rows(r0, r1)
        ph = buf[:self.size(r0, r1)].reshape(self.phases, rows, self.wq, self.c)
        lo = min(max(self.pt - top, 0), rows)
        hi = max(min(self.pt + self.h - top, rows), lo)
        ph[:, :lo] = 0
        ph[:, hi:] = 0
        src = x[b, top + lo - self.pt:top + hi - self.pt]
        for p, q0, q1, s0 in self.copies:
            ph[p, lo:hi, :q0] = 0
            ph[p, lo:hi, q1:] = 0
            pixels = src[:, s0:s0 + (q1 - q0 - 1) * self.phases + 1:self.phases]
            if produce is None:
                ph[p, lo:hi, q0:q1] = pixels
            else:
                produce(pixels, ph[p, lo:hi, q0:q1])
        return ph

    def taps(self, ph, p, nrows):
        """Strided view (kh, taps of phase p, nrows, OW*C) of a filled band:
        entry [i, t, r] is the input row under kernel tap (i, p + t*sw) for
        the band's output row r."""
        img = ph[p].reshape(ph.shape[1], -1)
        rs, nj = img.strides[0], len(range(p, self.kw, self.sw))
        return as_strided(img, shape=(self.kh, nj, nrows, self.ow * self.c),
                          strides=(rs, self.c * 4, rs * self.sh, 4), writeable=False)


class _Depthwise(Kernel):
    """Depthwise convolution with numpy, by output rows shared among the
    threads, in cache-sized bands: a band's padded input is copied into
    scratch, then one einsum per column phase sums every tap's product in a
    single pass over long contiguous rows (the weights are tiled along the
    row once, here).

    With ``expand`` (the 1x1 convolution that made this layer's input, see
    ``fuse``), a band's input rows are computed from that convolution's
    input instead of read, so the wide expanded tensor never goes to
    memory."""

    op = "depthwise"

    #: bytes of output per band: the band's input, output and weights stay in L2
    BAND_BYTES = 1 << 18

    def __init__(self, node, shape, weight, bias, impl):
        self.pad = _Padded(shape, node.attrs)
        p, ow = self.pad, self.pad.ow
        self.act = node.attrs.get("activation", "none")
        self.impl, self.expand = impl, None
        self.band = max(1, min(p.oh, self.BAND_BYTES // (ow * p.c * 4)))

        def tile(weight):
            w = weight[:, :, :, 0]  # (C, KH, KW)
            return [np.ascontiguousarray(np.tile(w[:, :, q::p.sw].transpose(1, 2, 0)[:, :, None, :],
                                                 (1, 1, ow, 1)).reshape(p.kh, -1, ow * p.c))
                    for q in range(p.sw)]
        self.w = weight(tile, "tiles", p.sw, ow)
        self.bias = None if bias is None else np.tile(bias, ow)
        self.slot = p.size(0, self.band) + (self.band * ow * p.c if p.sw > 1 else 0)

    @property
    def temps(self):
        return (self.impl.width * self.slot,)

    def _produce(self, src, dst):
        e = self.expand
        np.matmul(src, e.wt, out=dst)
        if e.bias is not None:
            dst += e.bias
        activate(dst, e.act)

    def _bands(self, x, y, scratch, b, r0, r1):
        pad = self.pad
        for s0 in range(r0, r1, self.band):
            s1 = min(r1, s0 + self.band)
            ph = pad.fill(x, scratch, b, s0, s1, self.expand and self._produce)
            acc = y[b, s0:s1]
            np.einsum("itrl,itl->rl", pad.taps(ph, 0, s1 - s0), self.w[0], out=acc)
            if pad.sw > 1:
                t = scratch[ph.size:ph.size + acc.size].reshape(acc.shape)
                for q in range(1, pad.sw):
                    np.einsum("itrl,itl->rl", pad.taps(ph, q, s1 - s0), self.w[q], out=t)
                    acc += t
            if self.bias is not None:
                acc += self.bias
            activate(acc, self.act)

    def __call__(self, inputs, out, temps):
        pad = self.pad
        x = inputs[0]
        y = out.reshape(pad.n, pad.oh, -1)
        for b in range(pad.n):
            _parallel(lambda i, r0, r1: self._bands(x, y, temps[0][i * self.slot:], b, r0, r1),
                      pad.oh, self.impl.pool)
        return out


class _Deferred(Kernel):
    """The step of a 1x1 convolution fused into the depthwise layer after
    it: it passes its input on, and the depthwise layer does the work."""

    alias, temps = True, ()

    def __call__(self, inputs, out, temps):
        return inputs[0]


def fuse(graph, shapes, kernels, min_bytes):
    """Fuse each 1x1 convolution whose output (of at least min_bytes) only a
    numpy depthwise layer reads into that layer's bands (the compiled
    depthwise kernel, another class, gains nothing from it)."""
    readers = {}
    for node in graph.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    made_by = {node.outputs[0]: i for i, node in enumerate(graph.nodes)}
    for node, k in zip(graph.nodes, kernels):
        j = made_by.get(node.inputs[0]) if isinstance(k, _Depthwise) else None
        if (j is not None and isinstance(kernels[j], _Gemm) and graph.nodes[j].op == "conv"
                and readers[node.inputs[0]] == 1 and node.inputs[0] != graph.output_name
                and 4 * math.prod(shapes[node.inputs[0]]) >= min_bytes):
            k.expand, kernels[j] = kernels[j], _Deferred()


class _Im2col(Kernel):
    """Any other convolution without dilation: patches gathered from the
    padded input into a column scratch buffer (one strided copy: each kernel
    row's KW*C values are contiguous), then one GEMM per group."""

    op = "gemm"
    #: whether each group's GEMM writes its columns of the output itself
    #: (else through a scratch buffer)
    in_place = False

    def __init__(self, node, shape, weight, bias, impl):
        self.pad = _Padded(shape, node.attrs, phases=False)
        self.impl = impl
        p = self.pad
        self.groups = node.attrs.get("groups", 1)
        self.co = weight.shape[0] // self.groups
        self.wt = self.weights(node, weight, bias)
        self.bias, self.act = bias, node.attrs.get("activation", "none")
        self.m = p.n * p.oh * p.ow
        self.cols = self.m * p.kh * p.kw * p.c
        self.temps = (p.n * p.size(0, p.oh), self.cols, self.m * self.co if self.groups > 1 and not self.in_place else 0)

    def weights(self, node, weight, bias):
        """The GEMMs' weights: one (k, co) matrix per group."""
        return weight(lambda w: [np.ascontiguousarray(wg.T) for wg in w.reshape(self.groups, self.co, -1)],
                      "groups", self.groups)

    def gemm(self, g, a, y, part):
        """Group g's GEMM: a (m, k) into its columns of y (m, cout), through
        ``part`` (m, co) where there are several groups."""
        if self.groups == 1:
            self.impl.gemm(a, self.wt[0], y, self.bias, self.act)
            return
        co = self.co
        self.impl.gemm(a, self.wt[g], part, None if self.bias is None else self.bias[g * co:(g + 1) * co], self.act)
        y[:, g * co:(g + 1) * co] = part

    def __call__(self, inputs, out, temps):
        p = self.pad
        per = p.size(0, p.oh)
        for b in range(p.n):
            p.fill(inputs[0], temps[0][b * per:], b, 0, p.oh)
        xp = temps[0][:p.n * per].reshape(p.n, p.rows(0, p.oh), p.wq, p.c)
        sn, sh, sw, sc = xp.strides
        strides = (sn, sh * p.sh, sw * p.sw, sh, sw, sc)
        y = out.reshape(self.m, -1)
        if self.groups == 1:
            cols = temps[1][:self.cols].reshape(p.n, p.oh, p.ow, p.kh, p.kw, p.c)
            cols[...] = as_strided(xp, shape=cols.shape, strides=strides)
            self.gemm(0, cols.reshape(self.m, -1), y, None)
            return out
        cin = p.c // self.groups
        cols = temps[1][:self.cols // self.groups].reshape(p.n, p.oh, p.ow, p.kh, p.kw, cin)
        part = None if self.in_place else temps[2][:self.m * self.co].reshape(self.m, self.co)
        for g in range(self.groups):
            cols[...] = as_strided(xp[..., g * cin:], shape=cols.shape, strides=strides)
            self.gemm(g, cols.reshape(self.m, -1), y, part)
        return out


class _GlobalAvgPool(Kernel):
    op = "mean_pool"

    def __init__(self, node, shape, weight, bias, impl):
        self.hw, self.impl = shape[1] * shape[2], impl

    def __call__(self, inputs, out, temps):
        x = inputs[0]
        y = out.reshape(x.shape[0], x.shape[3])
        np.add.reduce(x.reshape(x.shape[0], self.hw, x.shape[3]), axis=1, out=y)
        y *= np.float32(1.0 / self.hw)
        return out


class _Add(Kernel):
    op = "add"

    def __init__(self, node, shape, weight, bias, impl):
        self.act, self.impl = node.attrs.get("activation", "none"), impl

    def __call__(self, inputs, out, temps):
        np.add(inputs[0], inputs[1], out=out)
        activate(out, self.act)
        return out


class _Scale(Kernel):
    """A feature map times a weight per channel (a squeeze-and-excitation
    gate), into the arena instead of a new array."""

    op = "scale"

    def __init__(self, node, shape, weight, bias, impl):
        self.impl = impl

    @staticmethod
    def operands(inputs):
        """(the feature map, the weights as (N, C)) of the two inputs."""
        x, s = inputs if inputs[1].shape[1:3] == (1, 1) else inputs[::-1]
        return x, s.reshape(s.shape[0], s.shape[3])

    def __call__(self, inputs, out, temps):
        x, s = self.operands(inputs)
        np.multiply(x, s[:, None, None, :], out=out)
        return out


#: the numpy implementation's kernels, by kind
Numpy.KERNELS = {"gemm": _Gemm, "depthwise": _Depthwise, "im2col": _Im2col, "add": _Add,
                 "global_avgpool": _GlobalAvgPool, "scale": _Scale}


def out_view(out, shape, dtype):
    """An arena buffer (float32) as the output of a kernel that writes
    ``dtype`` (a uint8 value takes a quarter of its buffer)."""
    if dtype == np.float32:
        return out
    return out.reshape(-1).view(dtype)[:math.prod(shape)].reshape(shape)


class Q8Numpy(Kernel):
    """An integer node computed by its exact numpy form (integer.Q8Node.run),
    the same integers the compiled kernels produce."""

    def __init__(self, qnode, shape):
        self.q, self.shape = qnode, shape
        self.op = "q8_" + qnode.kind
        self.dtype = np.float32 if qnode.out is None else np.uint8

    def __call__(self, inputs, out, temps):
        y = self.q.run(inputs).reshape(self.shape)
        if out is None:
            return y.astype(self.dtype, copy=False)
        view = out_view(out, self.shape, self.dtype)
        view[...] = y
        return view


def kinds(node, shape, weight, inputs=()):
    """The kinds of kernel that may compute a node, best first (an
    implementation uses the first it has that suits), or () when the plain
    op function should run it.  ``inputs``: the shapes of all its inputs."""
    a = node.attrs
    if node.op == "add":
        return ("add",)
    if node.op == "mul" and a.get("activation", "none") == "none" and _gates(*inputs):
        return ("scale",)
    if node.op == "global_avgpool":
        return ("global_avgpool",)
    if node.op == "dense":
        return ("dense_q", "f32_gemm", "gemm")
    if node.op != "conv" or a.get("dilation", [1, 1]) != [1, 1] or a.get("pad_value", 0.0) != 0.0:
        return ()
    if is_depthwise(a.get("groups", 1), shape[3], weight.shape):
        return ("depthwise",)
    if is_pointwise(a, weight.shape):
        return ("dense_q", "f32_gemm", "gemm")
    return ("direct", "f32_im2col", "im2col")


def _gates(*shapes):
    """Whether two shapes are a feature map (N, H, W, C) and a weight per
    channel (N, 1, 1, C), in either order."""
    return (len(shapes) == 2 and all(len(s) == 4 for s in shapes) and shapes[0][::3] == shapes[1][::3]
            and (1, 1) in (tuple(shapes[0][1:3]), tuple(shapes[1][1:3])))


def kernel(node, shape, weight, bias, impl, stored=False, inputs=()):
    """The planned kernel for a node with input shape ``shape``, or None when
    the plain op function should run it.  ``weight(prepare, *key)`` gives
    the weight as ``prepare`` lays it out (made once per node and key).
    ``impl``: the implementation (``Numpy`` or ``cpu_native.Compiled``).
    With ``stored``, only a kernel that reads the node's weights as stored,
    never decoding them (so a streamed layer need not stream).
    ``inputs``: the shapes of all the node's inputs."""
    for kind in kinds(node, shape, weight, inputs):
        cls = impl.KERNELS.get(kind)
        if cls is not None and (getattr(cls, "stored", False) or not stored) and cls.suits(node, shape, weight):
            return cls(node, shape, weight, bias, impl)
    return None


class Weight:
    """A node's weight tensor, decoded only to be laid out for a kernel; the
    layouts are kept (per node and key), the decoded tensor is not."""

    def __init__(self, tensor, cache):
        self.tensor, self.cache, self.shape = tensor, cache, tuple(tensor.shape)

    def _cached(self, key, make):
        k = (self.tensor.name,) + key
        if k not in self.cache:
            self.cache[k] = make()
        return self.cache[k]

    def __call__(self, prepare, *key):
        """``prepare(decoded weight)``, made once per key.  Nodes may share a
        weight tensor, so the key names everything besides the weight that
        the layout depends on (groups, strides, widths)."""
        return self._cached(key, lambda: prepare(self.tensor.decode()))

    def transposed(self):
        """The weight as a contiguous (inputs, outputs) matrix, decoded
        straight into that layout so that a large dense layer never exists
        twice in memory."""
        def make():
            t = self.tensor
            data = t.data.reshape(t.shape[0], -1).T
            out = np.empty(data.shape, np.float32)
            if t.scales is None:
                out[...] = data
            else:  # the stored axis 0 (output channel, one scale each) is axis 1 here
                np.multiply(data, t.scales, out=out, dtype=np.float32)
            return out
        return self._cached(("T",), make)


class Program:
    """Steps ``first`` to ``last`` of a plan as one compiled program;
    ``calls``: how many of its calls each step made (none for a view, such
    as a flatten); ``keep``: (value name, the buffer or view holding it)
    for the values the steps after it (or the caller: the graph's output)
    read; the rest never needs to reach Python."""

    def __init__(self, first, last, program, reads_input, calls, keep):
        self.first, self.last, self.program, self.reads_input = first, last, program, reads_input
        self.calls, self.keep = calls, keep

    def step_seconds(self, times):
        """Each step's seconds, from the program's per-call ``times``."""
        ends = np.cumsum(self.calls)
        return [float(times[end - n:end].sum()) for n, end in zip(self.calls, ends)]


def programs(graph, steps, input_buffer, native):
    """Compiled programs for the runs of steps (two or more) whose kernels
    bind to fixed buffers: the graph's input is read from ``input_buffer``
    (the caller copies each batch into it).  ``native``: the compiled
    module, or None (no programs).  Returns {first step: Program}."""
    if native is None:
        return {}
    where = {graph.input_name: input_buffer}  # value -> its fixed buffer
    found, run = {}, []

    def close():
        while run and not run[-1][1]:  # a program ends with a call
            run.pop()
        if sum(1 for _, c, _, _ in run if c) > 1:
            calls = [call for _, step_calls, _, _ in run for call in step_calls]
            last = run[-1][0]
            later = {n for s in steps[last + 1:] for n in s.node.inputs} | {graph.output_name}
            keep = [(steps[i].node.outputs[0], v) for i, _, _, v in run if steps[i].node.outputs[0] in later]
            found[run[0][0]] = Program(run[0][0], last, native.program(calls), any(reads for _, _, reads, _ in run),
                                       [len(c) for _, c, _, _ in run], keep)
        run.clear()

    for i, step in enumerate(steps):
        ins = [where.get(n) for n in step.node.inputs]
        if step.kernel is None and step.node.op in VIEWS and run and ins and ins[0] is not None:
            # a reshape of a value in a fixed buffer: a view of that buffer,
            # so the program runs on through it (a classifier after its pool)
            view = ins[0].reshape(step.shape)
            run.append((i, [], graph.input_name in step.node.inputs, view))
            where[step.node.outputs[0]] = view
            continue
        # a step that converts what it reads (float <-> uint8) runs from Python
        bind = None if step.entry else getattr(step.kernel, "bind", None)
        calls = None
        if bind is not None and step.out is not None and all(v is not None for v in ins):
            calls = bind(ins, step.out, step.temps)
        if calls:
            run.append((i, calls, graph.input_name in step.node.inputs, step.out))
            where[step.node.outputs[0]] = step.out
        else:
            close()
    close()
    return found


#: ops whose output is their input reshaped (a view of its buffer)
VIEWS = ("flatten",)


class _Step:
    """One node of a plan: kernel (or None), output slot and scratch slots."""

    def __init__(self, node, kernel, shape, out, temps, drop):
        self.node, self.kernel, self.shape = node, kernel, shape
        self.out, self.temps, self.drop = out, temps, drop
        self.entry = None  # how it converts its inputs (CPUBackend sets it)


def plan(graph, shapes, kernels):
    """Assign arena slots to every planned output and scratch buffer; list
    the values to drop after each step.  Returns (steps, slot sizes)."""
    # The plain op functions may return a view of their input (flatten, a
    # pad of zero), and so does a fused step.
    def aliased(i):
        return kernels[i] is None or getattr(kernels[i], "alias", False)
    buffers = plan_buffers(graph, shapes, aliased, lambda i: kernels[i].temps if kernels[i] else ())
    steps = [_Step(node, kernel, shapes[node.outputs[0]], out, temps, drop)
             for node, kernel, (out, temps, drop) in zip(graph.nodes, kernels, buffers.steps)]
    return steps, buffers.sizes
