"""Planned kernels of the CPU backend: the fast path of ``CPUBackend.run``.

A kernel is made once per node and input shape: weights transposed or
tiled, padding and column layouts worked out.  Called with the node's
inputs, an output buffer and scratch buffers from the arena, it writes the
output in place.  ``temps`` lists the scratch sizes (float32 elements) it
needs.  ``plan`` assigns every output and scratch buffer a slot of one
arena, reused along the graph as values die (docs/PERFORMANCE.md).

A kernel of the compiled path may also ``bind`` itself to fixed buffers:
``bind(inputs, out, temps)`` returns the compiled calls it makes, as
``(name, args)`` pairs, or None.  ``programs`` turns runs of bound steps
into compiled programs that go from layer to layer without returning to
Python.
"""

import functools
import math
import os
import sys

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..graph import ACTIVATIONS, window
from ..threads import busy_threads, cblas_address
from .base import is_depthwise, last_uses

try:
    from . import _native as NATIVE
except ImportError:  # built without a C compiler: numpy does all the work
    NATIVE = None
if os.environ.get("DEVICENET_NATIVE", "1") == "0":
    NATIVE = None


@functools.lru_cache(maxsize=None)
def native_gemm():
    """Whether the compiled kernels run GEMMs themselves (through numpy's
    own BLAS, single-threaded inside their thread team): the BLAS functions
    were found and give the right answers on small products."""
    # Passing the BLAS's integers as long relies on how Linux's calling
    # conventions lay arguments out (native/dense.c); elsewhere numpy's
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
        NATIVE.gemm(a, b, y, m, 7, 3, None, -np.inf, np.inf)
        if not np.allclose(y, a @ b, rtol=1e-5, atol=1e-5):
            NATIVE.use_blas(0, 0)
            return False
    return True


def activate(y, name):
    """Apply a fused activation to y in place; return y."""
    lo, hi = ACTIVATIONS[name]
    if lo == 0.0 and hi is None:
        np.maximum(y, 0.0, out=y)  # faster than clip with one bound
    elif lo is not None or hi is not None:
        np.clip(y, lo, hi, out=y)
    return y


def _width(pool):
    """How many bands run at once: the pool's threads and the caller's."""
    return 1 if pool is None else pool._max_workers + 1


class Threads:
    """How many threads the compiled kernels use: the backend's count, less
    the process's threads busy beside inference (``threads.working_alongside``:
    a folder's photo decoder keeps a core for itself)."""

    __slots__ = ("wanted",)

    def __init__(self, wanted=1):
        self.wanted = wanted

    @property
    def n(self):
        return max(1, self.wanted - busy_threads())


def bounds(act):
    """An activation's clipping bounds as two floats (infinite where open)."""
    lo, hi = ACTIVATIONS[act]
    return (-np.inf if lo is None else lo, np.inf if hi is None else hi)


def _gemm(a, wt, y, bias, act, pool, native=None, threads=None):
    """y = act(a @ wt + bias).  With the compiled kernels, they run the
    GEMM in their thread team with bias and activation added by each
    thread to its share (or, where they cannot reach the BLAS, BLAS
    threads the GEMM and one compiled pass adds the rest).  Without them, in
    bands of rows shared among the pool's threads; each band adds bias and
    activation while it is still in cache."""
    if native is not None:
        if native_gemm():
            native.gemm(a, wt, y, a.shape[0], a.shape[1], wt.shape[1], bias, *bounds(act), threads.n)
            return
        np.matmul(a, wt, out=y)
        if bias is not None or act != "none":
            native.bias_act(y, y.shape[1], bias, *bounds(act), threads.n)
        return

    def band(i, r0, r1):
        yb = y[r0:r1]
        np.matmul(a[r0:r1], wt, out=yb)
        if bias is not None:
            yb += bias
        activate(yb, act)
    _parallel(band, a.shape[0], pool, min_rows=16)


def _parallel(fn, rows, pool, min_rows=1):
    """fn(i, r0, r1) for the i-th of the bands covering range(rows), one per
    thread (at least ``min_rows`` rows each)."""
    # numpy releases the GIL inside BLAS, einsum and ufunc loops, so the
    # bands run in parallel.  The pool's threads sleep when idle instead of
    # spinning, which keeps a loaded machine from stalling as a spinning
    # BLAS pool does.
    k = max(1, min(_width(pool), rows // min_rows))
    edges = [rows * i // k for i in range(k + 1)]
    futures = [pool.submit(fn, i, a, b) for i, (a, b) in enumerate(zip(edges[1:-1], edges[2:]), 1)]
    fn(0, edges[0], edges[1])
    for f in futures:
        f.result()


class _Gemm:
    """A 1x1 stride-1 convolution or a dense layer: one GEMM into the output."""

    def __init__(self, node, shape, weight, bias, pool=None, native=None, threads=None):
        self.wt = weight.transposed()
        self.bias, self.act, self.pool = bias, node.attrs.get("activation", "none"), pool
        self.native, self.threads = native, threads
        self.temps = ()

    def __call__(self, inputs, out, temps):
        x = inputs[0].reshape(-1, self.wt.shape[0])
        _gemm(x, self.wt, out.reshape(-1, self.wt.shape[1]), self.bias, self.act, self.pool,
              self.native, self.threads)
        return out

    def bind(self, inputs, out, temps):
        if self.native is None or not native_gemm():
            return None
        (k, n), x = self.wt.shape, inputs[0].reshape(-1, self.wt.shape[0])
        return [("gemm", (x, self.wt, out.reshape(-1, n), x.shape[0], k, n, self.bias, *bounds(self.act)))]


class _DenseQ:
    """A dense layer (or 1x1 convolution) over a few rows, batch 1 above
    all, computed by the compiled kernel straight from its stored int8 or
    int16 weights: a matrix-vector product streams every weight once, and
    int8 streams a quarter of float32's bytes.  Nothing is decoded, so the
    layer holds no float32 copy of its weights (resident or streamed)."""

    #: most input rows (batch x pixels) for which this beats a float32 GEMM
    MAX_ROWS = 8

    def __init__(self, node, shape, weight, bias, native, threads):
        t = weight.tensor
        self.q = t.data.reshape(t.shape[0], -1)
        self.scales = np.ascontiguousarray(t.scales, np.float32)
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
        self.bounds = bounds(node.attrs.get("activation", "none"))
        self.native, self.threads, self.temps = native, threads, ()

    @classmethod
    def suits(cls, node, shape, weight, native):
        a = node.attrs
        pointwise = node.op == "dense" or (
            node.op == "conv" and a.get("kernel") == [1, 1] and a.get("groups", 1) == 1
            and a.get("stride", [1, 1]) == [1, 1] and not any(a.get("pads", [0] * 4)))
        return (native is not None and pointwise and weight is not None
                and weight.tensor.data.dtype in (np.int8, np.int16)
                and math.prod(shape[:-1]) <= cls.MAX_ROWS)

    def __call__(self, inputs, out, temps):
        self.native.dense_q(*self.bind(inputs, out, temps)[0][1], self.threads.n)
        return out

    def bind(self, inputs, out, temps):
        n, k = self.q.shape
        x = inputs[0].reshape(-1, k)
        return [("dense_q", (x, self.q, self.scales, self.bias, out.reshape(-1, n), x.shape[0], k, n,
                             *self.bounds))]


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


class _Depthwise:
    """Depthwise convolution, by output rows shared among the threads.

    With the compiled kernels (``NATIVE``) each output pixel sums every tap
    in registers, reading the unpadded input.  Without them, the layer runs
    in cache-sized bands of output rows: a band's padded input is copied
    into scratch, then one einsum per column phase sums every tap's product
    in a single pass over long contiguous rows (the weights are tiled along
    the row once, here).

    Without them, with ``expand`` (the 1x1 convolution that made this
    layer's input, see ``fuse``), a band's input rows are computed from
    that convolution's input instead of read, so the wide expanded tensor
    never goes to memory."""

    #: bytes of output per band: the band's input, output and weights stay in L2
    BAND_BYTES = 1 << 18

    def __init__(self, node, shape, weight, bias, pool=None, native=None, threads=None):
        self.pad = _Padded(shape, node.attrs)
        p, ow = self.pad, self.pad.ow
        self.act = node.attrs.get("activation", "none")
        self.pool, self.native, self.threads, self.expand = pool, native, threads, None
        self.band = max(1, min(p.oh, self.BAND_BYTES // (ow * p.c * 4)))
        if native is not None:
            self.w = weight(lambda w: np.ascontiguousarray(w[:, :, :, 0].transpose(1, 2, 0)), "khwc")
            self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
            self.bounds = bounds(self.act)
            (pt, pl), w = p.pads[:2], shape[2]
            self.geometry = (p.h, w, p.c, 0, p.h, p.oh, ow, p.kh, p.kw, p.sh, p.sw, pt, pl)
            return

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
        return () if self.native is not None else (_width(self.pool) * self.slot,)

    def _produce(self, src, dst):
        e = self.expand
        np.matmul(src, e.wt, out=dst)
        if e.bias is not None:
            dst += e.bias
        activate(dst, e.act)

    def bind(self, inputs, out, temps):
        if self.native is None:
            return None
        p = self.pad
        y = out.reshape(p.n, p.oh, p.ow, p.c)
        return [("depthwise", (inputs[0][b], self.w, self.bias, y[b], self.geometry, 0, p.oh, *self.bounds))
                for b in range(p.n)]

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
        if self.native is not None:  # the compiled kernel shares the rows among its own threads
            for _, args in self.bind(inputs, out, temps):
                self.native.depthwise(*args, self.threads.n)
            return out
        y = out.reshape(pad.n, pad.oh, -1)
        for b in range(pad.n):
            _parallel(lambda i, r0, r1: self._bands(x, y, temps[0][i * self.slot:], b, r0, r1),
                      pad.oh, self.pool)
        return out


class _Deferred:
    """The step of a 1x1 convolution fused into the depthwise layer after
    it: it passes its input on, and the depthwise layer does the work."""

    alias, temps = True, ()

    def __call__(self, inputs, out, temps):
        return inputs[0]


def fuse(graph, shapes, kernels, min_bytes):
    """Fuse each 1x1 convolution whose output (of at least min_bytes) only a
    numpy depthwise layer reads into that layer's bands (the compiled
    depthwise kernel gains nothing from it)."""
    readers = {}
    for node in graph.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    made_by = {node.outputs[0]: i for i, node in enumerate(graph.nodes)}
    for node, k in zip(graph.nodes, kernels):
        j = made_by.get(node.inputs[0]) if isinstance(k, _Depthwise) and k.native is None else None
        if (j is not None and isinstance(kernels[j], _Gemm) and graph.nodes[j].op == "conv"
                and readers[node.inputs[0]] == 1 and node.inputs[0] != graph.output_name
                and 4 * math.prod(shapes[node.inputs[0]]) >= min_bytes):
            k.expand, kernels[j] = kernels[j], _Deferred()


class _Im2col:
    """Any other convolution without dilation: patches gathered from the
    padded input into a column scratch buffer (one strided copy: each kernel
    row's KW*C values are contiguous), then one GEMM per group."""

    def __init__(self, node, shape, weight, bias, pool=None, native=None, threads=None):
        self.pad = _Padded(shape, node.attrs, phases=False)
        self.native, self.threads = native, threads
        p = self.pad
        self.groups = node.attrs.get("groups", 1)
        self.wt = weight(lambda w: [np.ascontiguousarray(wg.T) for wg in
                                    w.reshape(self.groups, w.shape[0] // self.groups, -1)],
                         "groups", self.groups)
        cout = self.wt[0].shape[1] * self.groups
        self.bias, self.act, self.pool = bias, node.attrs.get("activation", "none"), pool
        self.m = p.n * p.oh * p.ow
        self.cols = self.m * p.kh * p.kw * p.c
        self.temps = (p.n * p.size(0, p.oh), self.cols, self.m * (cout // self.groups) if self.groups > 1 else 0)

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
            _gemm(cols.reshape(self.m, -1), self.wt[0], y, self.bias, self.act, self.pool,
                  self.native, self.threads)
            return out
        cin, co = p.c // self.groups, self.wt[0].shape[1]
        cols = temps[1][:self.cols // self.groups].reshape(p.n, p.oh, p.ow, p.kh, p.kw, cin)
        part = temps[2][:self.m * co].reshape(self.m, co)
        for g, wt in enumerate(self.wt):
            cols[...] = as_strided(xp[..., g * cin:], shape=cols.shape, strides=strides)
            bias = None if self.bias is None else self.bias[g * co:(g + 1) * co]
            _gemm(cols.reshape(self.m, -1), wt, part, bias, self.act, self.pool, self.native, self.threads)
            y[:, g * co:(g + 1) * co] = part
        return out


class _Direct:
    """A convolution of few input channels (a network's first layer) with
    the compiled kernel: no im2col copy, every output pixel summed in
    registers."""

    #: im2col rows shorter than this (KH*KW*Cin values) make a poor GEMM
    MAX_K = 64

    def __init__(self, node, shape, weight, bias, native, threads):
        p = self.pad = _Padded(shape, node.attrs, phases=False)
        cout = weight.shape[0]
        self.w = weight(lambda w: np.ascontiguousarray(w.transpose(1, 2, 3, 0)), "hwio")
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
        self.bounds = bounds(node.attrs.get("activation", "none"))
        self.native, self.threads, self.temps = native, threads, ()
        self.geometry = (p.h, shape[2], p.c, 0, p.h, p.oh, p.ow, p.kh, p.kw, p.sh, p.sw,
                         p.pads[0], p.pads[1], cout)

    def __call__(self, inputs, out, temps):
        for _, args in self.bind(inputs, out, temps):
            self.native.direct(*args, self.threads.n)
        return out

    def bind(self, inputs, out, temps):
        p, x = self.pad, inputs[0]
        y = out.reshape(p.n, p.oh, p.ow, -1)
        return [("direct", (x[b], self.w, self.bias, y[b], self.geometry, 0, p.oh, *self.bounds))
                for b in range(p.n)]


class _GlobalAvgPool:
    def __init__(self, node, shape, native=None):
        self.hw, self.temps, self.native = shape[1] * shape[2], (), native

    def bind(self, inputs, out, temps):
        if self.native is None:
            return None
        n, _, _, c = inputs[0].shape
        return [("mean_pool", (inputs[0], out.reshape(n, c), n, self.hw, c))]

    def __call__(self, inputs, out, temps):
        x = inputs[0]
        y = out.reshape(x.shape[0], x.shape[3])
        np.add.reduce(x.reshape(x.shape[0], self.hw, x.shape[3]), axis=1, out=y)
        y *= np.float32(1.0 / self.hw)
        return out


class _Add:
    def __init__(self, node, shape, native=None):
        self.act, self.temps, self.native = node.attrs.get("activation", "none"), (), native

    def bind(self, inputs, out, temps):
        if self.native is None:
            return None
        return [("add", (inputs[0], inputs[1], out, *bounds(self.act)))]

    def __call__(self, inputs, out, temps):
        np.add(inputs[0], inputs[1], out=out)
        activate(out, self.act)
        return out


def stored_kernel(node, shape, weight, bias, native, threads):
    """A kernel that reads the node's weights as stored, never decoding
    them (so a streamed layer need not stream), or None."""
    if _DenseQ.suits(node, shape, weight, native):
        return _DenseQ(node, shape, weight, bias, native, threads)
    return None


def kernel(node, shape, weight, bias, pool, native=None, threads=None):
    """The planned kernel for a node with input shape ``shape``, or None when
    the plain op function should run it.  ``weight(prepare, *key)`` gives
    the weight as ``prepare`` lays it out (made once per node and key).
    ``pool``: threads to share numpy work among, or None.  ``native``: the
    compiled kernels (``NATIVE``), or None for numpy alone, and
    ``threads`` (a ``Threads``), how many threads they use."""
    a = node.attrs
    stored = stored_kernel(node, shape, weight, bias, native, threads)
    if stored is not None:
        return stored
    if node.op == "add":
        return _Add(node, shape, native)
    if node.op == "global_avgpool":
        return _GlobalAvgPool(node, shape, native)
    if node.op == "dense":
        return _Gemm(node, shape, weight, bias, pool, native, threads)
    if node.op != "conv" or a.get("dilation", [1, 1]) != [1, 1] or a.get("pad_value", 0.0) != 0.0:
        return None
    _, kh, kw, _ = weight.shape
    groups = a.get("groups", 1)
    if is_depthwise(groups, shape[3], weight.shape):
        return _Depthwise(node, shape, weight, bias, pool, native, threads)
    if (kh, kw) == (1, 1) and groups == 1 and a.get("stride", [1, 1]) == [1, 1] and not any(a.get("pads", [0] * 4)):
        return _Gemm(node, shape, weight, bias, pool, native, threads)
    if native is not None and groups == 1 and kh * kw * shape[3] < _Direct.MAX_K:
        return _Direct(node, shape, weight, bias, native, threads)
    return _Im2col(node, shape, weight, bias, pool, native, threads)


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
    """Steps ``first`` to ``last`` of a plan as one compiled program."""

    def __init__(self, first, last, program, reads_input):
        self.first, self.last, self.program, self.reads_input = first, last, program, reads_input


def programs(graph, steps, input_buffer, native):
    """Compiled programs for the runs of steps (two or more) whose kernels
    bind to fixed buffers: the graph's input is read from ``input_buffer``
    (the caller copies each batch into it).  Returns {first step: Program}."""
    if native is None:
        return {}
    where = {graph.input_name: input_buffer}  # value -> its fixed buffer
    found, run = {}, []

    def close():
        if len(run) > 1:
            calls = [call for _, step_calls, _ in run for call in step_calls]
            found[run[0][0]] = Program(run[0][0], run[-1][0], native.program(calls),
                                       any(reads for _, _, reads in run))
        run.clear()

    for i, step in enumerate(steps):
        ins = [where.get(n) for n in step.node.inputs]
        bind = getattr(step.kernel, "bind", None)
        calls = None
        if bind is not None and step.out is not None and all(v is not None for v in ins):
            calls = bind(ins, step.out, step.temps)
        if calls:
            run.append((i, calls, graph.input_name in step.node.inputs))
            where[step.node.outputs[0]] = step.out
        else:
            close()
    close()
    return found


class _Arena:
    """Float32 buffers handed out and taken back in plan order: a buffer is
    reused by a later value once every reader of its value has run."""

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


class _Step:
    """One node of a plan: kernel (or None), output slot and scratch slots."""

    def __init__(self, node, kernel, shape, out, temps, drop):
        self.node, self.kernel, self.shape = node, kernel, shape
        self.out, self.temps, self.drop = out, temps, drop


def plan(graph, shapes, kernels):
    """Assign arena slots to every planned output and scratch buffer; list
    the values to drop after each step.  Returns (steps, slot sizes)."""
    last = last_uses(graph.nodes)
    # The plain op functions may return a view of their input (flatten, a
    # pad of zero): such an input's buffer lives as long as the output does.
    root = {}
    for node, kernel in zip(graph.nodes, kernels):
        if (kernel is None or getattr(kernel, "alias", False)) and node.inputs:
            root[node.outputs[0]] = root.get(node.inputs[0], node.inputs[0])
    for name, r in root.items():
        last[r] = max(last.get(r, -1), last.get(name, -1))
    # The caller keeps the graph's output, and so whatever buffer it views.
    kept = {graph.output_name, root.get(graph.output_name, graph.output_name)}
    arena, owner, steps = _Arena(), {}, []
    for i, node in enumerate(graph.nodes):
        name, kernel = node.outputs[0], kernels[i]
        out = None
        if kernel is not None and not getattr(kernel, "alias", False) and name not in kept:
            out = owner[name] = arena.take(math.prod(shapes[name]))
        temps = [arena.take(t) if t else None for t in (kernel.temps if kernel else ())]
        for t in temps:
            if t is not None:
                arena.give(t)
        drop = [n for n in node.inputs if last.get(n) == i and n != graph.output_name]
        for r in set(root.get(n, n) for n in drop):
            if last.get(r) == i and r in owner:
                arena.give(owner.pop(r))
        steps.append(_Step(node, kernel, shapes[name], out, temps, drop))
    return steps, arena.sizes
