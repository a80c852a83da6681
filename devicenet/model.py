"""The public API: load a model, classify photos, run batches."""

from dataclasses import dataclass, field
import os
import sys
import threading
import time
import warnings
import weakref

import numpy as np

from . import format as dnet
from .backends import create as create_backend
from .errors import DeviceNetError
from .image import image_name, open_image, preprocess, draft_size, ten_crops

DEFAULT_MODEL = "efficientnet-lite0.dnet"
#: more threads than this is a mistake, not a board
MAX_THREADS = 1024


def model_dirs():
    """Where shipped models are looked for: the source checkout's models/
    (also an editable install), then the data directory a wheel installs to."""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.path.join(os.path.dirname(here), "models")]
    for prefix in (sys.prefix, sys.base_prefix, getattr(sys, "exec_prefix", sys.prefix)):
        dirs.append(os.path.join(prefix, "share", "devicenet", "models"))
    try:
        import site
        dirs.append(os.path.join(site.getuserbase(), "share", "devicenet", "models"))
    except Exception:  # site may be stripped on small systems
        pass
    return list(dict.fromkeys(dirs))


def default_model_path():
    """The shipped default model (``DEVICENET_MODEL`` overrides it)."""
    env = os.environ.get("DEVICENET_MODEL")
    if env:
        return env
    for d in model_dirs():
        path = os.path.join(d, DEFAULT_MODEL)
        if os.path.isfile(path):
            return path
    raise DeviceNetError(f"the default model {DEFAULT_MODEL} was not found (looked in "
                         f"{', '.join(model_dirs())}); pass --model PATH or set DEVICENET_MODEL")


@dataclass
class Prediction:
    label: str
    index: int
    probability: float


@dataclass
class Classification:
    """What ``Model.classify`` returns: predictions (best first) and latency in ms."""

    predictions: list
    latency_ms: dict = field(default_factory=dict)
    image: str = None

    def to_json(self):
        """The dict ``classify --json`` prints for it (``report.result_json``)."""
        from .report import result_json
        return result_json(self)


def prefetched(func, items):
    """Yield ``(item, future of func(item))`` for each item in order.

    The next items' calls run on a worker thread while the caller works on
    the current one: decoding (Pillow) and inference (numpy) both release
    the GIL, so the two overlap.  While it decodes, the CPU backend leaves
    that thread a core (``threads.working_alongside``).
    """
    from concurrent.futures import ThreadPoolExecutor
    from .threads import working_alongside

    def work(item):
        with working_alongside():  # only while it works: nothing to leak
            return func(item)

    items = list(items)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Two items ahead: a decode that runs late (a large photo, a busy
        # core) eats into the lead instead of stalling the network.
        pending = [pool.submit(work, item) for item in items[:2]]
        for i, item in enumerate(items):
            future = pending.pop(0)
            if i + 2 < len(items):
                pending.append(pool.submit(work, items[i + 2]))
            yield item, future


def softmax(x):
    with np.errstate(over="ignore", under="ignore"):  # huge logits: checked by the caller
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


# A hostile model's arithmetic may overflow; forward checks its output and
# raises one error for it.  np.errstate (there) quiets numpy only in the
# calling thread, so the warnings of the backends' worker threads would
# still repeat it on stderr: they are ignored, for the backends' code alone.
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"devicenet\.backends\.")

#: every live Model, so that a forked child can make each usable again
_MODELS = weakref.WeakSet()


def _after_fork_in_child():
    # Only the forking thread exists in the child: a lock another thread
    # held (inside forward) would never be released, and the backend's
    # worker threads, buffers mid-run and device contexts are the parent's.
    # Each model gets a new lock and makes a new backend when next used.
    for model in list(_MODELS):
        model._lock = threading.Lock()
        model._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_top(top):
    if not isinstance(top, (int, np.integer)) or isinstance(top, bool):
        raise DeviceNetError(f"top must be an integer, got {top!r}")


def _same_backend(graph, be):
    """A new backend for ``graph`` where ``be`` runs: same backend, threads,
    residency and device."""
    return create_backend(graph, be.name, threads=be.threads, residency=be.residency,
                          device=getattr(be, "device_name", None), fallback=False)


class Model:
    """A loaded .dnet model bound to a backend.  Safe to share between
    threads, and usable in a child process after ``fork()``."""

    def __init__(self, graph, backend, path=None, port=None):
        self.graph = graph
        self.path = path
        self.port = port
        self._backend = backend
        self._lock = threading.Lock()
        self._forked = False
        meta = graph.meta
        self.name = meta.get("name", os.path.basename(path or "model"))
        self.labels = list(meta.get("labels") or [])
        self.preprocess = meta.get("preprocess")
        out = graph.output_node
        self._outputs_probabilities = out is not None and out.op == "softmax"
        #: class scores per image, or None when the output is a feature map
        self.classes = graph.classes()
        # Images run at once: the working memory a file may ask for is
        # limited per image, so a batch (ten crops, a user's array) is run
        # in parts that stay within the same limit.
        self._max_batch = max(1, dnet.MAX_ACTIVATION_BYTES // dnet.activation_bytes(graph, graph.shapes()))
        self._cuts = {}  # feature layer -> Model of the graph cut there
        _MODELS.add(self)

    def _run(self, fn, *args):
        """``fn(backend, *args)`` under the lock (after a fork, on a new backend)."""
        with self._lock:
            if self._forked:
                self._backend, self._cuts, self._forked = _same_backend(self.graph, self._backend), {}, False
            return fn(self._backend, *args)

    @property
    def backend(self):
        """Name of the backend in use (``cpu`` or ``opencl``)."""
        return self._backend.name

    @property
    def input_shape(self):
        return self.graph.input_shape

    def label(self, index):
        return self.labels[index] if index < len(self.labels) else str(index)

    def forward(self, batch, profile=None):
        """Run an NHWC float32 batch (already preprocessed); return (N, classes) logits.

        An output that is not finite (the model's arithmetic overflowed on
        this input) raises DeviceNetError rather than being returned.
        """
        try:
            x = np.asarray(batch, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise DeviceNetError(f"input batch must be an array of numbers ({e})") from None
        want = self.input_shape[1:]
        if x.ndim == len(want):
            x = x[None]
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
            raise DeviceNetError(f"input batch has shape {x.shape}, the model needs (N, {', '.join(map(str, want))})")
        if x.shape[0] == 0:
            raise DeviceNetError("input batch is empty: it needs one image or more")
        if not np.all(np.isfinite(x)):
            raise DeviceNetError("input batch holds NaN or infinity")
        # Overflow is found by the check below, not reported as numpy warnings.
        parts = [x[i:i + self._max_batch] for i in range(0, x.shape[0], self._max_batch)]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            outs = [np.asarray(self._run(lambda be: be.run(part, profile=profile)), np.float32)
                    .reshape(len(part), -1) for part in parts]
        out = outs[0] if len(outs) == 1 else np.concatenate(outs)
        if not np.all(np.isfinite(out)):
            raise DeviceNetError(f"model {self.name}: the output holds NaN or infinity for this input "
                                 "(the model's arithmetic overflows)")
        return out

    def probabilities(self, logits):
        return logits if self._outputs_probabilities else softmax(logits)

    def _need_classes(self):
        if self.classes is None:
            raise DeviceNetError(f"model {self.name}: its output (shape {self.graph.shapes()[self.graph.output_name]}) "
                                 "is not one score per class: use forward() or features()")

    def _spec(self):
        if not self.preprocess:
            raise DeviceNetError(f"model {self.name} has no preprocessing metadata: use forward() with a prepared batch")
        return self.preprocess

    def prepare(self, image, oversample=False):
        """Decode and preprocess one image into a network batch.

        Returns ``(batch, decode ms, preprocess ms)``; the batch holds one
        image, or ten crops with ``oversample``.
        """
        spec = self._spec()
        t0 = time.perf_counter()
        img = open_image(image, draft_size(spec))
        t1 = time.perf_counter()
        x = ten_crops(img, spec) if oversample else preprocess(img, spec)[None]
        return x, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3

    def classify(self, image, top=5, oversample=False):
        """Classify a path, image bytes, binary file, PIL image or HxWx3 uint8
        array; return a Classification.

        ``oversample`` averages the probabilities of ten crops (corners, centre
        and mirrors); the latency then counts all ten.
        """
        self._need_classes()
        _check_top(top)
        x, decode_ms, pre_ms = self.prepare(image, oversample)
        return self._finish(image, x, decode_ms, pre_ms, top)

    def _finish(self, image, x, decode_ms, pre_ms, top):
        t0 = time.perf_counter()
        # One-time work (the first image of a batch size): weights laid out
        # for the kernels, buffers planned.  Timed apart from inference so
        # that the first image reports the network's real latency.
        did_setup = self._run(lambda be: be.prepare((min(len(x), self._max_batch),) + x.shape[1:]))
        t1 = time.perf_counter()
        path = image_name(image)
        try:
            probs = self.probabilities(self.forward(x)).mean(axis=0)
            if not np.all(np.isfinite(probs)):
                raise DeviceNetError(f"model {self.name}: its class probabilities are not finite for this input")
        except DeviceNetError as e:
            if path is None:
                raise
            raise DeviceNetError(f"{path}: {e}") from None  # which photo, in a batch
        t2 = time.perf_counter()
        setup_ms = (t1 - t0) * 1e3 if did_setup else 0.0
        infer_ms = (t2 - (t1 if did_setup else t0)) * 1e3
        result = self.top(probs, top)
        result.image = path
        result.latency_ms = {"decode": decode_ms, "preprocess": pre_ms, "setup": setup_ms, "inference": infer_ms,
                             "total": decode_ms + pre_ms + setup_ms + infer_ms}
        return result

    def classify_many(self, images, top=5, oversample=False):
        """Classify images in order, yielding a Classification or, for an image
        that cannot be used, a DeviceNetError whose ``image`` names it.

        The next image is decoded and preprocessed on a worker thread while
        the current one runs through the network, so a folder goes at the
        speed of inference.
        """
        self._spec()
        self._need_classes()
        _check_top(top)
        for image, future in prefetched(lambda image: self.prepare(image, oversample), images):
            try:
                yield self._finish(image, *future.result(), top)
            except DeviceNetError as e:
                e.image = image_name(image)
                yield e

    def features(self, image, layer=None, oversample=False):
        """The activations of ``layer`` (default: the input of the last dense
        layer, i.e. the penultimate features) as an (N, D) float32 array.

        ``image`` is what ``classify`` takes (N = 1, or 10
        crops with ``oversample``), or an already preprocessed float NHWC batch.
        """
        from .features import feature_layer, truncate
        layer = layer or feature_layer(self.graph)

        def cut_at(be):  # one cut model per layer, however many threads ask at once
            cut = self._cuts.get(layer)
            if cut is None:
                graph = truncate(self.graph, layer)
                # The cut graph runs where the whole one does: same backend and device.
                cut = self._cuts[layer] = Model(graph, _same_backend(graph, be), self.path, self.port)
            return cut
        cut = self._run(cut_at)
        if isinstance(image, np.ndarray) and image.dtype.kind == "f":
            return cut.forward(image)
        return cut.forward(self.prepare(image, oversample)[0])

    def top(self, probs, top=5):
        _check_top(top)
        k = max(1, min(int(top), probs.shape[-1]))
        order = np.argsort(-probs, kind="stable")[:k]
        return Classification([Prediction(self.label(int(i)), int(i), float(probs[i])) for i in order])

    def __repr__(self):
        return f"<devicenet.Model {self.name} on {self.backend}>"


def load(model=None, *, backend=None, threads=None, port=None, device=None, residency=None, verify=True):
    """Load a .dnet model (default: the shipped one) onto a backend.

    ``backend`` (cpu, opencl, auto), ``threads`` and ``residency`` default to
    the port profile's choice for this board; ``port`` names a profile to use
    instead of detecting the board.
    """
    from .ports import select
    from .threads import set_blas_threads

    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise DeviceNetError(f"model must be a path to a .dnet file, not {type(model).__name__}")
    profile = select(port)
    threads = threads if threads is not None else profile.threads
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                or not 1 <= threads <= MAX_THREADS):
        raise DeviceNetError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    path = os.fspath(model) if model is not None else default_model_path()
    graph = dnet.load(path, verify=verify)
    set_blas_threads(threads)
    explicit = backend is not None
    name = backend or profile.backends[0]
    be = create_backend(graph, name, threads=threads, residency=residency or profile.residency,
                        device=device or os.environ.get("DEVICENET_OPENCL_DEVICE") or profile.opencl_device,
                        fallback=not explicit)
    return Model(graph, be, path=path, port=profile)
