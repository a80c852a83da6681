"""Running one (possibly hostile) model file on every backend path against the reference ops.

``check(blob)`` loads a file and, when it loads, runs it through the public
API (``Model.forward``) on every CPU path this machine has: compiled
kernels and numpy, 1 and 2 threads, resident and streamed weights.  Each
result is compared with the plain op table (``devicenet.backends.cpu.OPS``)
run node by node, with nothing planned, cached or fused.  Where the model
has preprocessing, ``Model.classify`` runs on a small image and its
probabilities are compared with the reference's too.

A case ends in one of these outcomes:

- ``refused at load`` / ``refused at run``: a ``DeviceNetError`` of one line;
- ``agreed``: every path gave a finite result within tolerance of the reference;
- ``over work limit``: the model loaded but would take more multiply-adds
  than ``WORK_LIMIT`` to run on every path (not run; counted apart);
- a finding, named by its symptom (``SYMPTOMS``); ``state`` is a run that
  changed the caller's input, or a result that the next run overwrote.

Time is bounded by work, not by the clock: the multiply-adds and the memory
a model needs are computed from its shapes before anything runs.  A model
whose peak memory (activations, padded copies, scratch, preprocessing)
exceeds ``MEMORY_LIMIT`` is not run: having loaded, it is a finding.  A
case that hangs is caught by ``watchdog``, a process timeout many times
longer than the case's work could take even on a slow board, which dumps
every thread's stack and ends the process (``scripts/fuzz_models.py``
runs cases in worker processes, so there it is one finding among many).
"""

from dataclasses import dataclass
import contextlib
import faulthandler
import math
import warnings

import numpy as np

from devicenet import DeviceNetError, format as dnet, integer
from devicenet.backends import cpu, cpu_kernels
from devicenet.backends.base import is_depthwise
from devicenet.features import feature_layer
from devicenet.graph import window
from devicenet.inspect import describe
from devicenet.model import Model, softmax

#: the loader refuses more than this of activations (format.MAX_ACTIVATION_BYTES);
#: a model that loads and then needs more than twice it at run time is a finding
MEMORY_LIMIT = 2 * dnet.MAX_ACTIVATION_BYTES
#: multiply-adds of one run (all images of the batch) beyond which a case
#: is counted but not run (EfficientNet-Lite0: 0.4 G per image)
WORK_LIMIT = 10**9
#: the slowest rate a path is assumed to manage, for the hang timeout: well
#: under an emulated ARM core running numpy's reference BLAS
SLOW_RATE = 2 * 10**6
#: seconds any case may take, however small, before it is taken for a hang
HANG_FLOOR = 300
RTOL = 1e-4
#: the same for a model's integer layers against their exact form: a float
#: value that ends within float rounding of a step's edge where it enters
#: an integer layer may land one step apart on another path (numpy's and
#: the compiled kernels' float sums differ in their last bits), and the
#: steps that differ carry through the layers after it
INTEGER_RTOL = 1e-2
#: findings, by symptom
SYMPTOMS = ("crash", "multi-line error", "non-finite", "disagree", "warning", "memory", "classes",
            "probabilities", "inconsistent", "state", "hang")


@dataclass(frozen=True)
class Path:
    native: bool
    threads: int
    residency: str
    backend: str = "cpu"

    def __str__(self):
        if self.backend != "cpu":
            return f"{self.backend}/{self.residency}"
        return f"{'native' if self.native else 'numpy'}/{self.threads}t/{self.residency}"

    def model(self, graph, name):
        """A Model of ``graph`` on this path."""
        from devicenet.backends import create
        from devicenet.backends.cpu import CPUBackend
        if self.backend == "cpu":
            be = CPUBackend(graph, threads=self.threads, residency=self.residency, native=self.native)
        else:
            be = create(graph, self.backend, threads=self.threads, residency=self.residency, fallback=False)
        return Model(graph, be, path=name)


def paths(opencl=False):
    """Every CPU path this machine runs: compiled kernels where they are
    built, and numpy; with ``opencl``, the OpenCL backend too."""
    kernels = [True, False] if cpu_kernels.NATIVE is not None else [False]
    cpu_paths = [Path(k, t, r) for k in kernels for t in (1, 2) for r in ("resident", "streamed")]
    return cpu_paths + ([Path(False, 1, r, "opencl") for r in ("resident", "streamed")] if opencl else [])


@dataclass
class Result:
    outcome: str  # an outcome above, or "finding"
    symptom: str = None
    detail: str = ""

    def __str__(self):
        return self.symptom or self.outcome


def _finding(symptom, detail):
    return Result("finding", symptom, detail[:400])


# --- the reference -------------------------------------------------------------------

def reference_values(graph, x):
    """Every activation of ``graph`` on ``x`` node by node: float nodes by
    the plain op table, a model's integer nodes (``meta["integer"]``) in
    their exact numpy form (integer.Q8Node, the integers every kernel must
    match), each value converted as the reading node takes it; every value
    returned as float32 (an integer node's uint8 output dequantised)."""
    lowered = integer.lower(graph, graph.shapes(x.shape[0]))
    _, qparams = integer.spec_of(graph.meta)
    values = {graph.input_name: x}
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            ins = [values[i] for i in node.inputs]
            if node.name in lowered:
                out = lowered[node.name].run([integer.entry(v, "u8", qparams[t]) for v, t in zip(ins, node.inputs)])
            else:
                ins = [integer.entry(v, "f32", qparams.get(t)) for v, t in zip(ins, node.inputs)]
                params = {role: graph.tensors[t].decode() for role, t in node.params.items()}
                out = cpu.OPS[node.op](ins, node.attrs, params)
            values[node.outputs[0]] = out
    return {t: integer.entry(v, "f32", qparams.get(t)) for t, v in values.items()}


def reference(graph, x):
    """The output of ``graph`` on ``x`` (``reference_values``)."""
    return reference_values(graph, x)[graph.output_name]


def cost(graph, shapes):
    """(multiply-adds, peak bytes) of one run at the batch of ``shapes``: every
    activation, plus the largest transient a node makes (a padded copy of
    its input, an im2col matrix, a decoded weight)."""
    macs, transient = 0, 0
    for node in graph.nodes:
        out = shapes[node.outputs[0]]
        n_out = math.prod(out)
        ins = [shapes[i] for i in node.inputs]
        weight = graph.tensors[node.params["weight"]].shape if "weight" in node.params else None
        extra = 4 * sum(math.prod(graph.tensors[t].shape) for t in node.params.values())
        if node.op in ("conv", "maxpool", "avgpool"):
            (kh, kw), _, (pt, pl, pb, pr), _ = window(node.attrs, node.name)
            n, h, w, c = ins[0]
            extra += 4 * n * (h + pt + pb) * (w + pl + pr) * c * (2 if node.op == "avgpool" else 1)
            per = kh * kw * (weight[3] if weight else 1)
            macs += n_out * per
            if node.op == "conv" and not is_depthwise(node.attrs.get("groups", 1), c, weight):
                extra += 4 * math.prod(out[:3]) * per * 2
        elif node.op == "dense":
            macs += n_out * weight[1]
        elif node.op == "lrn":
            macs += n_out * 4
        else:
            macs += n_out + sum(math.prod(s) for s in ins)
        transient = max(transient, extra + 4 * n_out)
    return macs, 4 * sum(math.prod(s) for s in shapes.values()) + transient


def preprocess_bytes(spec, image_shape):
    """Peak bytes of ``image.preprocess`` on an image of (h, w, 3): the
    resized image (Pillow RGB) and the float32 crop."""
    h, w = image_shape[:2]
    r, c = spec["resize"], spec["crop"]
    nh, nw = (r, max(1, round(w * r / h))) if h < w else (max(1, round(h * r / w)), r)
    nh, nw = max(nh, c), max(nw, c)
    return 4 * nh * nw + 3 * 4 * c * c


@contextlib.contextmanager
def watchdog(seconds):
    """End the process, dumping every thread's stack, if the block runs past ``seconds``."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def hang_seconds(macs, runs):
    return HANG_FLOOR + macs * runs / SLOW_RATE


# --- one case ------------------------------------------------------------------------

def _one_line(e, name):
    msg = str(e)
    return "\n" not in msg and msg.strip() != "" and (name is None or name in msg)


def _run(model, x, layer):
    """Model.forward on x, again on another input, once more with a profile
    (layer by layer, no compiled programs), and Model.features of ``layer``:
    ('ran', {what: output}) or ('refused', message) or a Result finding."""
    with warnings.catch_warnings(record=True) as caught:
        # Every RuntimeWarning a user would see, each time: after the
        # library's own filters, not before them.
        warnings.filterwarnings("always", category=RuntimeWarning, append=True)
        try:
            before = x.copy()
            out = model.forward(x)
            kept = out.copy()
            model.forward(-x)  # the same plan and buffers again
            if not np.array_equal(x, before):
                return _finding("state", "forward changed its input")
            if not np.array_equal(out, kept, equal_nan=True):
                return _finding("state", "a result was overwritten by the next run")
            outs = {"forward": out, "profiled": model.forward(x, profile=[])}
            if layer is not None:
                try:
                    outs[f"features of {layer}"] = model.features(x, layer)
                except DeviceNetError as e:
                    return _finding("inconsistent", f"forward ran, features of {layer} refused: {e}")
        except DeviceNetError as e:
            if not _one_line(e, None):
                return _finding("multi-line error", repr(str(e)))
            return "refused", str(e)
        except Exception as e:
            return _finding("crash", f"{e.__class__.__name__}: {e}")
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if runtime:
        return _finding("warning", f"{runtime[0].category.__name__}: {runtime[0].message}")
    return "ran", outs


def _agrees(out, ref, rtol=RTOL):
    ref = ref.reshape(out.shape) if ref.size == out.size else None
    if ref is None:
        return False
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return bool(np.all(np.abs(out - ref) <= rtol * (np.abs(ref) + scale) + 1e-6))


def check(blob, name="fuzz.dnet", runs=None, classify=True, batch=2, work_limit=WORK_LIMIT):
    """Load ``blob`` and run it on every path (on ``batch`` images): a Result.
    A model of more than ``work_limit`` multiply-adds per run is not run."""
    try:
        graph = dnet.from_buffer(blob, name)
    except DeviceNetError as e:
        if not _one_line(e, name):
            return _finding("multi-line error", repr(str(e)))
        return Result("refused at load", detail=str(e))
    except Exception as e:
        return _finding("crash", f"at load: {e.__class__.__name__}: {e}")
    try:
        shapes = graph.shapes()
        info = describe(graph)
    except Exception as e:
        return _finding("crash", f"after load: {e.__class__.__name__}: {e}")
    macs, need = cost(graph, shapes)
    if need > MEMORY_LIMIT:
        return _finding("memory", f"loaded, then needs {need / 2**20:.0f} MiB to run")
    macs *= batch
    if macs > work_limit:
        return Result("over work limit", detail=f"{macs / 1e9:.2f} G multiply-adds")
    x = np.random.default_rng(1).normal(size=(batch,) + graph.input_shape[1:]).astype(np.float32)
    try:
        layer = feature_layer(graph)
    except DeviceNetError:  # no dense layer: no default feature layer
        layer = None

    def references(g):
        try:
            values = reference_values(g, x)
        except Exception as e:  # the plain ops cannot run what the loader accepted
            return e
        refs = {"forward": values[g.output_name], "profiled": values[g.output_name]}
        if layer is not None:
            refs[f"features of {layer}"] = values[layer]
        return refs
    refs = references(graph)
    # the OpenCL backend runs a model's integer layers in float arithmetic
    # (their stored weights, no activation rounding): its reference is the
    # same file with the integer plan set aside
    float_refs = references(integer.float_arithmetic(graph)) if graph.meta.get("integer") else refs
    results = {}
    runs = runs or paths()
    with watchdog(hang_seconds(macs, 2 * len(runs) + 1)):
        for path in runs:
            got = _run(path.model(graph, name), x, layer)
            if isinstance(got, Result):
                got.detail = f"{path}: {got.detail}"
                return got
            results[path] = got
        refused = [p for p, (what, _) in results.items() if what == "refused"]
        if refused and len(refused) < len(results):
            return _finding("inconsistent", f"refused on {refused[0]} ({results[refused[0]][1]}) but ran elsewhere")
        if refused:
            return Result("refused at run", detail=results[refused[0]][1])
        for path, (_, outs) in results.items():
            path_refs = refs if path.backend == "cpu" else float_refs
            rtol = INTEGER_RTOL if path_refs is not float_refs else RTOL
            for what, out in outs.items():
                if not np.all(np.isfinite(out)):
                    return _finding("non-finite", f"{path} {what}: {np.sum(~np.isfinite(out))} of {out.size} values")
                if isinstance(path_refs, Exception):
                    return _finding("disagree", f"the reference ops fail ({path_refs.__class__.__name__}: "
                                                f"{path_refs}) but {path} ran")
                ref = path_refs[what].reshape(batch, -1)
                if not _agrees(out, ref, rtol):
                    err = np.max(np.abs(out - ref.reshape(out.shape))) if out.size == ref.size else "shape"
                    return _finding("disagree", f"{path} {what}: max error {err} "
                                                f"(reference max {np.max(np.abs(ref))})")
        scores = next(iter(results.values()))[1]["forward"].shape[-1]
        # (``classes`` None: the output is a feature map, not class scores)
        classes = info["classes"]
        if classes is not None and (classes != scores or (graph.labels and len(graph.labels) != scores)):
            return _finding("classes", f"info says {classes} classes, {len(graph.labels)} labels, "
                                       f"forward gives {scores} scores")
        if classify and graph.meta.get("preprocess"):
            return _classify(graph, name, classes is None)
    return Result("agreed")


def _classify(graph, name, feature_map=False):
    """Model.classify on a small photo-like image against the reference ops
    (for a ``feature_map`` output, classify must refuse)."""
    from devicenet.backends.cpu import CPUBackend
    from devicenet.image import preprocess
    from PIL import Image
    spec = graph.meta["preprocess"]
    img = np.random.default_rng(2).integers(0, 256, (37, 53, 3), np.uint8)
    need = preprocess_bytes(spec, img.shape)
    if need > MEMORY_LIMIT:
        return _finding("memory", f"preprocessing asks for {need / 2**20:.0f} MiB")
    model = Model(graph, CPUBackend(graph, threads=1), path=name)
    with warnings.catch_warnings(record=True) as caught:
        # Every RuntimeWarning a user would see, each time: after the
        # library's own filters, not before them.
        warnings.filterwarnings("always", category=RuntimeWarning, append=True)
        try:
            result = model.classify(img, top=10**6)
        except DeviceNetError as e:
            return Result("refused at run", detail=str(e)) if _one_line(e, None) else \
                _finding("multi-line error", repr(str(e)))
        except Exception as e:
            return _finding("crash", f"classify: {e.__class__.__name__}: {e}")
        if feature_map:
            return _finding("classes", f"info says the output is a feature map, classify gives "
                                       f"{len(result.predictions)} classes")
        with np.errstate(all="ignore"):
            ref = reference(graph, preprocess(Image.fromarray(img), spec)[None]).reshape(-1)
    if any(issubclass(w.category, RuntimeWarning) for w in caught):
        return _finding("warning", f"classify: {caught[0].message}")
    out_node = next(n for n in graph.nodes if n.outputs[0] == graph.output_name)
    want = ref if out_node.op == "softmax" else softmax(ref[None])[0]
    got = np.full(want.shape, np.nan)
    for p in result.predictions:
        if not 0 <= p.index < want.size or (graph.labels and p.label != graph.labels[p.index]):
            return _finding("classes", f"classify gives index {p.index} ({p.label!r}) of {want.size}")
        got[p.index] = p.probability
    # (an integer model: its steps may land apart, INTEGER_RTOL)
    rtol, atol = (INTEGER_RTOL, 1e-3) if graph.meta.get("integer") else (1e-3, 1e-5)
    if not np.all(np.isfinite(got)) or not np.allclose(got, want, rtol=rtol, atol=atol):
        return _finding("probabilities", f"classify says {np.nanmax(got):.4g} for the top class, "
                                         f"the reference {np.max(want):.4g}")
    return Result("agreed")
