"""Teaching a model new objects: retrain only the top layer on your photos.

The base network (default: the shipped EfficientNet-Lite0) is kept as a
fixed feature extractor.  ``learn`` computes the penultimate features of
every photo in a folder of class folders (cached by content hash), trains an
L2-regularised multinomial logistic regression on them, measures it on a
held-out split, and writes a new .dnet: the base graph up to its features
plus the learned dense layer, labelled with the folder names.
"""

import os

import numpy as np

from . import format as dnet
from .errors import DeviceNetError
from .features import CACHE_DIR, FeatureCache, feature_layer, file_digest, truncate
from .graph import Graph, Node, Tensor
from .inputs import Inputs, image_files
from .model import prefetched

FEW_PHOTOS = 5


def scan(folder, ignored=None):
    """The classes (sub-folder names, sorted) and ``[(path, class index)]``
    of a dataset folder.  Hidden entries (the feature cache) are passed
    over; every other entry that is not used (a file beside the class
    folders, a folder inside one, a file that is not a photo) is appended
    to ``ignored`` as ``(path, reason)``."""
    if not os.path.isdir(folder):
        raise DeviceNetError(f"{folder}: not a folder of class folders")
    top = image_files(folder, recursive=False)
    classes = sorted(os.path.basename(p) for p, why in top.skipped if why == "sub-folders")
    if len(classes) < 2:
        raise DeviceNetError(f"{folder}: needs two or more class sub-folders, found {len(classes)}")
    skipped = [(p, "files beside the class folders") for p in top.paths]
    skipped += [(p, why) for p, why in top.skipped if why != "sub-folders"]
    items = []
    for k, name in enumerate(classes):
        sub = os.path.join(folder, name)
        found = image_files(sub, recursive=False)
        if not found.paths:
            raise DeviceNetError(f"{sub}: no photos")
        items += [(p, k) for p in found.paths]
        skipped += found.skipped
    if ignored is not None:
        ignored += skipped
    return classes, items


# --- features -------------------------------------------------------------------

def compute_features(model, paths, views, layer, cache, progress=None, warn=None):
    """Fill ``cache`` with the features of every path and view it lacks.

    Returns ``(digests, computed)``: ``digests[i]`` is the content hash of
    ``paths[i]`` (None for a photo that could not be read, after ``warn``
    was told) and ``computed`` counts the (photo, view) network passes run.
    """
    digests = []
    for p in paths:
        try:
            digests.append(file_digest(p))
        except DeviceNetError as e:  # unreadable, or not a file (a pipe named .jpg)
            if warn:
                warn(f"skipping {p}: {e}")
            digests.append(None)
    todo, seen = [], set()
    for i, digest in enumerate(digests):
        for view in views if digest is not None else ():
            if cache.get(digest, view) is None and (digest, view) not in seen:
                seen.add((digest, view))
                todo.append((i, view))

    def prepare(job):
        i, view = job
        return model.prepare(paths[i], oversample=view == "ten")[0]

    computed, failed = 0, set()
    try:
        for n, ((i, view), future) in enumerate(prefetched(prepare, todo)):
            try:
                if digests[i] not in failed:
                    cache.put(digests[i], view, model.features(future.result(), layer))
                    computed += 1
            except DeviceNetError as e:
                if warn:
                    warn(f"skipping {paths[i]}: {e}")
                failed.add(digests[i])
            if progress:
                progress(n + 1, len(todo), paths[i])
            if (n + 1) % 50 == 0:
                cache.save()  # a run that is killed keeps most of its work
    finally:
        cache.save()  # ... and one that is interrupted (Ctrl-C) or fails keeps all of it
    return [None if d in failed else d for d in digests], computed


# --- the classifier -----------------------------------------------------------------
#
# Multinomial logistic regression is written here in numpy rather than taken
# from scikit-learn: scikit-learn and SciPy are far heavier than the whole
# runtime on a Pi (and not installed there), and on a few hundred 1280-d
# feature vectors a plain accelerated gradient method converges in a second.

def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Classifier:
    """Multinomial logistic regression with L2 and balanced class weights.

    Features are standardised before training (so one L2 strength suits
    every layer); ``weight`` and ``bias`` fold the standardisation back in,
    so ``x @ weight.T + bias`` are the logits of raw features.
    """

    def __init__(self, l2=1e-2, balanced=True, max_iter=2000, tol=1e-5):
        self.l2, self.balanced, self.max_iter, self.tol = l2, balanced, max_iter, tol

    def fit(self, x, y, classes):
        x = np.asarray(x, np.float64)
        y = np.asarray(y)
        n, d = x.shape
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std < 1e-6] = 1.0  # a feature that never changes carries nothing
        xs = np.hstack([(x - mean) / std, np.ones((n, 1))])
        onehot = np.eye(classes)[y]
        counts = np.bincount(y, minlength=classes).astype(np.float64)
        # Balanced weights: every class counts as much as every other, however
        # many photos its folder holds.
        w = n / (classes * counts[y]) if self.balanced else np.ones(n)
        w /= w.sum()
        reg = np.full((d + 1, 1), self.l2)
        reg[-1] = 0.0  # the bias is not shrunk

        def grad(theta):
            p = _softmax(xs @ theta)
            return xs.T @ ((p - onehot) * w[:, None]) + reg * theta

        # The softmax loss's curvature is at most half that of least squares,
        # which bounds the step; the largest eigenvalue by power iteration.
        v = np.ones(d + 1) / np.sqrt(d + 1)
        for _ in range(50):
            v = xs.T @ (w * (xs @ v))
            v /= np.linalg.norm(v)
        lipschitz = 0.5 * v @ (xs.T @ (w * (xs @ v))) + self.l2
        momentum = (np.sqrt(lipschitz) - np.sqrt(self.l2)) / (np.sqrt(lipschitz) + np.sqrt(self.l2))
        theta = prev = np.zeros((d + 1, classes))
        for self.iterations in range(1, self.max_iter + 1):
            ahead = theta + momentum * (theta - prev)
            g = grad(ahead)
            prev, theta = theta, ahead - g / lipschitz
            if np.abs(g).max() < self.tol:
                break
        weight = (theta[:-1] / std[:, None]).T
        self.weight = weight.astype(np.float32)
        self.bias = (theta[-1] - weight @ mean).astype(np.float32)
        return self

    def logits(self, x):
        return np.asarray(x, np.float32) @ self.weight.T + self.bias

    def probabilities(self, x):
        return _softmax(self.logits(x).astype(np.float64))


def stratified_split(labels, holdout, seed=0):
    """Indices (train, test): ``holdout`` of each class's photos held out,
    at least one from every class with two or more photos."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, test = [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        n_test = min(len(idx) - 1, max(1, int(round(holdout * len(idx))))) if holdout > 0 else 0
        test += list(idx[:n_test])
        train += list(idx[n_test:])
    return np.array(sorted(train), int), np.array(sorted(test), int)


def confusion_matrix(truth, predicted, classes):
    """``m[i, j]``: photos of class i predicted as class j."""
    m = np.zeros((classes, classes), int)
    np.add.at(m, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    return m


# --- the output model ------------------------------------------------------------

def feature_graph(graph, layer):
    """The graph cut at ``layer``, which must be a flat (N, D) activation."""
    base = truncate(graph, layer)
    shape = base.shapes()[layer]
    if len(shape) != 2:
        raise DeviceNetError(f"layer {layer!r} has shape {shape}: the head needs a flat (N, D) feature layer")
    return base


def with_head(graph, layer, classifier, labels, name, extra_meta=None):
    """The base graph cut at ``layer`` plus a dense head from ``classifier``.

    The head is stored in float32: it is only classes x 1280 numbers (5 KB a
    class, against the 4.8 MB int8 backbone), and full precision keeps the
    learned decision boundaries exactly where training put them.
    """
    base = feature_graph(graph, layer)
    taken = {n.name for n in base.nodes} | {o for n in base.nodes for o in n.outputs} | set(base.tensors)
    head = "learned"
    while head in taken or head + ".weight" in taken:
        head += "_"
    weight = np.ascontiguousarray(classifier.weight, np.float32)
    bias = np.ascontiguousarray(classifier.bias, np.float32)
    tensors = dict(base.tensors)
    tensors[head + ".weight"] = Tensor(head + ".weight", "float32", weight.shape, weight)
    tensors[head + ".bias"] = Tensor(head + ".bias", "float32", bias.shape, bias)
    node = Node("dense", head, [layer], [head], {"activation": "none"},
                {"weight": head + ".weight", "bias": head + ".bias"})
    meta = dict(graph.meta, name=name, labels=list(labels), output=head, **(extra_meta or {}))
    return Graph(meta, base.nodes + [node], tensors, source=graph.source)


# --- the whole job ----------------------------------------------------------------

def learn(dataset, output, model, holdout=0.2, augment=False, oversample=False, l2=1e-2,
          layer=None, cache_dir=None, seed=0, progress=None, warn=None):
    """Train a new head for ``model`` (a loaded Model) on the photos in
    ``dataset`` (one sub-folder per class) and write it to ``output``.

    Training uses each photo's centre crop (``oversample``: the mean of its
    ten crops' features; ``augment``: also each of its ten crops as an extra
    example).  The held-out photos are scored the way ``classify`` will
    score them (``oversample``: probabilities averaged over ten crops).  The
    written model is trained on every photo.  Returns a report dict.
    """
    layer = layer or feature_layer(model.graph)
    feature_graph(model.graph, layer)  # fail before minutes of feature extraction
    ignored = []
    classes, items = scan(dataset, ignored)
    if ignored and warn:
        warn(Inputs(items, ignored).summary("ignored", os.fspath(dataset)))
    views = ("centre", "ten") if (augment or oversample) else ("centre",)
    base_digest = file_digest(model.path)
    cache = FeatureCache(cache_dir or os.path.join(dataset, CACHE_DIR), base_digest, layer)
    paths = [p for p, _ in items]
    digests, computed = compute_features(model, paths, views, layer, cache, progress, warn)
    keep = [i for i, d in enumerate(digests) if d is not None]
    labels = np.array([items[i][1] for i in keep], int)
    counts = {c: int(np.sum(labels == k)) for k, c in enumerate(classes)}
    for c, n in counts.items():
        if n == 0:
            raise DeviceNetError(f"class {c!r} has no photo that could be read")
        if n < FEW_PHOTOS and warn:
            warn(f"class {c!r} has only {n} photo{'s' * (n != 1)}: {FEW_PHOTOS} or more make a steadier classifier")
    centre = np.concatenate([cache.get(digests[i], "centre") for i in keep])
    ten = np.stack([cache.get(digests[i], "ten") for i in keep]) if len(views) > 1 else None

    def fit(idx):
        x = ten[idx].mean(axis=1) if oversample else centre[idx]
        y = labels[idx]
        if augment:
            x = np.concatenate([x, ten[idx].reshape(-1, ten.shape[-1])])
            y = np.concatenate([y, np.repeat(y, ten.shape[1])])
        return Classifier(l2=l2).fit(x, y, len(classes))

    def score(clf, idx):
        if oversample:
            return clf.probabilities(ten[idx].reshape(-1, ten.shape[-1])).reshape(len(idx), 10, -1).mean(axis=1)
        return clf.probabilities(centre[idx])

    report = {"classes": classes, "counts": counts, "photos": len(keep), "skipped": len(items) - len(keep),
              "ignored": [{"path": p, "reason": why} for p, why in ignored],
              "features_computed": computed, "features_reused": max(0, len(keep) * len(views) - computed),
              "layer": layer, "augment": augment, "oversample": oversample, "l2": l2, "holdout": holdout}
    train, test = stratified_split(labels, holdout, seed)
    if len(test):
        predicted = score(fit(train), test).argmax(axis=1)
        m = confusion_matrix(labels[test], predicted, len(classes))
        report.update(held_out=len(test), accuracy=float(np.trace(m) / m.sum()), confusion=m.tolist())
    clf = fit(np.arange(len(keep)))
    report["training_accuracy"] = float(np.mean(score(clf, np.arange(len(keep))).argmax(axis=1) == labels))
    name = os.path.splitext(os.path.basename(output))[0]
    extra = {"learned": {"base": model.name, "base_sha256": base_digest, "layer": layer,
                         "photos": counts, "held_out_accuracy": report.get("accuracy")}}
    graph = with_head(model.graph, layer, clf, classes, name, extra)
    report["output"] = os.fspath(output)
    report["file_bytes"] = dnet.write(graph, output)
    return report
