"""The public API: load a model, classify photos, run batches."""

from dataclasses import dataclass, field
import os
import sys
import threading
import time

import numpy as np

from . import format as dnet
from .backends import create as create_backend
from .errors import DeviceNetError
from .image import open_image, preprocess, draft_size, ten_crops

DEFAULT_MODEL = "efficientnet-lite0.dnet"


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

    def to_json(self):
        return {"label": self.label, "index": self.index, "probability": round(self.probability, 6)}


@dataclass
class Classification:
    """What ``Model.classify`` returns: predictions (best first) and latency in ms."""

    predictions: list
    latency_ms: dict = field(default_factory=dict)
    image: str = None

    def to_json(self):
        return {"image": self.image, "predictions": [p.to_json() for p in self.predictions],
                "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()}}


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
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Model:
    """A loaded .dnet model bound to a backend.  Safe to share between threads."""

    def __init__(self, graph, backend, path=None, port=None):
        self.graph = graph
        self.path = path
        self.port = port
        self._backend = backend
        self._lock = threading.Lock()
        meta = graph.meta
        self.name = meta.get("name", os.path.basename(path or "model"))
        self.labels = list(meta.get("labels") or [])
        self.preprocess = meta.get("preprocess")
        last = graph.nodes[-1] if graph.nodes else None
        self._outputs_probabilities = last is not None and last.op == "softmax"
        self._cuts = {}  # feature layer -> Model of the graph cut there

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
        """Run an NHWC float32 batch (already preprocessed); return (N, classes) logits."""
        x = np.asarray(batch, dtype=np.float32)
        want = self.input_shape[1:]
        if x.ndim == len(want):
            x = x[None]
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
            raise DeviceNetError(f"input batch has shape {x.shape}, the model needs (N, {', '.join(map(str, want))})")
        if not np.all(np.isfinite(x)):
            raise DeviceNetError("input batch holds NaN or infinity")
        with self._lock:
            out = self._backend.run(x, profile=profile)
        return np.asarray(out, dtype=np.float32).reshape(x.shape[0], -1)

    def probabilities(self, logits):
        return logits if self._outputs_probabilities else softmax(logits)

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
        """Classify a path, PIL image or HxWx3 uint8 array; return a Classification.

        ``oversample`` averages the probabilities of ten crops (corners, centre
        and mirrors); the latency then counts all ten.
        """
        x, decode_ms, pre_ms = self.prepare(image, oversample)
        return self._finish(image, x, decode_ms, pre_ms, top)

    def _finish(self, image, x, decode_ms, pre_ms, top):
        t0 = time.perf_counter()
        # One-time work (the first image of a batch size): weights laid out
        # for the kernels, buffers planned.  Timed apart from inference so
        # that the first image reports the network's real latency.
        with self._lock:
            did_setup = self._backend.prepare(x.shape)
        t1 = time.perf_counter()
        probs = self.probabilities(self.forward(x)).mean(axis=0)
        t2 = time.perf_counter()
        setup_ms = (t1 - t0) * 1e3 if did_setup else 0.0
        infer_ms = (t2 - (t1 if did_setup else t0)) * 1e3
        result = self.top(probs, top)
        result.image = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
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
        for image, future in prefetched(lambda image: self.prepare(image, oversample), images):
            try:
                yield self._finish(image, *future.result(), top)
            except DeviceNetError as e:
                e.image = os.fspath(image)
                yield e

    def features(self, image, layer=None, oversample=False):
        """The activations of ``layer`` (default: the input of the last dense
        layer, i.e. the penultimate features) as an (N, D) float32 array.

        ``image`` is a path, PIL image or HxWx3 uint8 array (N = 1, or 10
        crops with ``oversample``), or an already preprocessed float NHWC batch.
        """
        from .features import feature_layer, truncate
        layer = layer or feature_layer(self.graph)
        with self._lock:  # one cut model per layer, however many threads ask at once
            cut = self._cuts.get(layer)
            if cut is None:
                graph = truncate(self.graph, layer)
                be = self._backend
                # The cut graph runs where the whole one does: same backend and device.
                cut = Model(graph, create_backend(graph, be.name, threads=be.threads, residency=be.residency,
                                                  device=getattr(be, "device_name", None), fallback=False),
                            self.path, self.port)
                self._cuts[layer] = cut
        if isinstance(image, np.ndarray) and image.dtype.kind == "f":
            return cut.forward(image)
        return cut.forward(self.prepare(image, oversample)[0])

    def top(self, probs, top=5):
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

    profile = select(port)
    path = os.fspath(model) if model is not None else default_model_path()
    graph = dnet.load(path, verify=verify)
    threads = threads if threads is not None else profile.threads
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise DeviceNetError(f"threads must be a positive integer, got {threads!r}")
    set_blas_threads(threads)
    explicit = backend is not None
    name = backend or profile.backends[0]
    be = create_backend(graph, name, threads=threads, residency=residency or profile.residency,
                        device=device or os.environ.get("DEVICENET_OPENCL_DEVICE") or profile.opencl_device,
                        fallback=not explicit)
    return Model(graph, be, path=path, port=profile)
