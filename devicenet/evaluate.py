"""How closely a converted model follows a float reference on real photos.

The reference is an ONNX file (run by onnxruntime) or another .dnet model
(e.g. a float32 conversion).  Both see the same preprocessed input, the one
the model's metadata asks for; the comparison is of labels (top-1
agreement, top-5 overlap) and of raw logits.
"""

from dataclasses import dataclass, field
import os

import numpy as np

from .errors import DeviceNetError
from .image import draft_size, open_image, preprocess
from .inputs import expand
from .model import softmax


@dataclass
class PhotoResult:
    """One photo: the model's and the reference's top-5 and the logit error."""

    image: str
    top5: list
    reference_top5: list
    max_error: float
    mean_error: float
    reference_lead: float = 0.0  # the reference's top-1 probability less its top-2's

    @property
    def agrees(self):
        return self.top5[0] == self.reference_top5[0]

    @property
    def overlap(self):
        return len(set(self.top5) & set(self.reference_top5)) / len(self.reference_top5)


@dataclass
class Report:
    """What ``evaluate`` returns; ``failed`` lists photos that could not be read."""

    photos: list
    labels: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    @property
    def top1_agreement(self):
        return float(np.mean([p.agrees for p in self.photos]))

    @property
    def top5_overlap(self):
        return float(np.mean([p.overlap for p in self.photos]))

    def confident_flips(self, lead=0.1):
        """Photos whose label changed although the reference's top-1 led its
        top-2 by at least ``lead`` in probability."""
        return [p for p in self.photos if not p.agrees and p.reference_lead >= lead]

    @property
    def mean_logit_error(self):
        return float(np.mean([p.mean_error for p in self.photos]))

    @property
    def max_logit_error(self):
        return float(max(p.max_error for p in self.photos))

    def label(self, index):
        return self.labels[index] if index < len(self.labels) else str(index)

    def worst(self, n=5):
        """The photos furthest from the reference: flipped labels first, then
        lower top-5 overlap, then larger logit error."""
        return sorted(self.photos, key=lambda p: (p.agrees, p.overlap, -p.max_error))[:n]

    def to_json(self, worst=5):
        return {"photos": len(self.photos), "failed": self.failed,
                "top1_agreement": self.top1_agreement, "top5_overlap": self.top5_overlap,
                "mean_logit_error": self.mean_logit_error, "max_logit_error": self.max_logit_error,
                "confident_flips": len(self.confident_flips()),
                "worst": [{"image": p.image, "label": self.label(p.top5[0]),
                           "reference_label": self.label(p.reference_top5[0]), "top5_overlap": p.overlap,
                           "max_logit_error": p.max_error} for p in self.worst(worst)]}


def reference_runner(path):
    """A function from an NHWC float32 batch to the reference's logits."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DeviceNetError(f"{path}: no such file")
    if path.lower().endswith(".onnx"):
        return _onnx_runner(path)
    from .model import load
    ref = load(path, backend="cpu")
    return ref.forward


def _onnx_runner(path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise DeviceNetError("an ONNX reference needs onnxruntime: pip install onnxruntime") from None
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise DeviceNetError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
    inp = session.get_inputs()[0]
    # ONNX vision models are usually NCHW; ours are NHWC.
    nchw = len(inp.shape) == 4 and inp.shape[1] == 3 and inp.shape[3] != 3
    # An export with a fixed batch of one takes the photos one at a time.
    step = 1 if inp.shape and inp.shape[0] == 1 else None

    def run(batch):
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2) if nchw else batch, dtype=np.float32)
        try:
            outs = [session.run(None, {inp.name: x[i:i + (step or len(x))]})[0]
                    for i in range(0, len(x), step or len(x))]
        except Exception as e:
            raise DeviceNetError(f"{path}: the reference failed on the input "
                                 f"({str(e).splitlines()[0][:200]})") from None
        return np.concatenate([np.asarray(o, np.float32).reshape(len(o), -1) for o in outs])
    return run


def _photos(images):
    paths = expand([images] if isinstance(images, (str, os.PathLike)) else images, stdin_ok=False).paths
    if not paths:
        raise DeviceNetError(f"no photos found in {images}")
    return paths


def evaluate(model, reference, images, batch=8, progress=None):
    """Compare ``model`` (a .dnet path or loaded Model) with ``reference`` (a
    path to .onnx or .dnet) on ``images`` (folders, files, patterns); return
    a Report.  ``progress(done, total, path)`` is told after each batch."""
    from .model import Model, load
    if not isinstance(model, Model):
        model = load(model, backend="cpu")
    spec = model.graph.meta.get("preprocess")
    if not spec:
        raise DeviceNetError(f"model {model.name} has no preprocessing metadata to prepare photos with")
    run_reference = reference_runner(reference)
    paths = _photos(images)
    photos, failed = [], []
    for start in range(0, len(paths), batch):
        xs, names = [], []
        for path in paths[start:start + batch]:
            try:
                xs.append(preprocess(open_image(path, draft_size(spec)), spec))
                names.append(path)
            except DeviceNetError as e:
                failed.append(str(e))
        if not xs:
            continue
        x = np.stack(xs)
        got, want = model.forward(x), run_reference(x)
        if got.shape != want.shape:
            raise DeviceNetError(f"the model gives {got.shape[1]} outputs, the reference {want.shape[1]}")
        for name, g, w in zip(names, got, want):
            err = np.abs(g - w)
            photos.append(PhotoResult(name, _top5(g), _top5(w), float(err.max()), float(err.mean()), lead(w)))
        if progress:
            done = min(start + batch, len(paths))
            progress(done, len(paths), paths[done - 1])
    if not photos:
        raise DeviceNetError("none of the photos could be read")
    return Report(photos, model.labels, failed)


def _top5(logits):
    return [int(i) for i in np.argsort(-logits, kind="stable")[:5]]


def lead(logits):
    """How far the top-1 probability is ahead of the top-2's."""
    p = np.sort(softmax(np.asarray(logits, np.float64)))
    return float(p[-1] - p[-2]) if len(p) > 1 else 1.0
