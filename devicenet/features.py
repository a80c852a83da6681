"""Feature extraction: a model cut at an inner layer, and a cache of what it gave.

A good ImageNet network is a general-purpose feature extractor: the
activations just before its classifier describe a photo well enough for a
linear classifier trained on a few dozen examples.  ``truncate`` cuts a graph
at a named activation; ``FeatureCache`` remembers the features of each photo,
keyed by the photo's content hash, so re-running on a growing folder only
computes the new photos.
"""

import hashlib
import os
import zipfile

import numpy as np

from .errors import DeviceNetError
from .files import open_regular
from .graph import Graph

#: views of a photo that have features: the centre crop, or the ten crops
#: (corners, centre and their mirrors) of ``image.ten_crops``
VIEWS = ("centre", "ten")
CACHE_DIR = ".devicenet-cache"


def needed(graph, layer):
    """The nodes that activation ``layer`` depends on, in graph order."""
    producers = {n.outputs[0]: n for n in graph.nodes}
    names, stack = set(), [layer]
    while stack:
        node = producers.get(stack.pop())
        if node is not None and node.name not in names:
            names.add(node.name)
            stack.extend(node.inputs)
    return [n for n in graph.nodes if n.name in names]


def feature_layer(graph):
    """The default feature layer: the input of the last dense node on the
    way to the output (for EfficientNet-Lite0 the 1280-d activation named
    ``features``).  Nodes after the output do not count."""
    dense = [n for n in needed(graph, graph.output_name) if n.op == "dense"]
    if not dense:
        raise DeviceNetError("the model has no dense layer: name the feature layer with --layer")
    return dense[-1].inputs[0]


def truncate(graph, layer):
    """A Graph that ends at activation ``layer`` (keeping only the nodes and
    tensors it needs)."""
    if layer != graph.input_name and not any(layer in n.outputs for n in graph.nodes):
        names = ", ".join(n.outputs[0] for n in graph.nodes[-5:])
        raise DeviceNetError(f"the model has no layer {layer!r} (its last layers are {names})")
    nodes = needed(graph, layer)
    if not nodes:
        raise DeviceNetError(f"layer {layer!r} is the model's input, not a feature layer")
    used = {t for n in nodes for t in n.params.values()}
    meta = dict(graph.meta, output=layer)
    tensors = {k: t for k, t in graph.tensors.items() if k in used}
    return Graph(meta, nodes, tensors, source=graph.source)


def file_digest(path, chunk=1 << 20):
    """SHA-256 of a file's content, in hex."""
    h = hashlib.sha256()
    try:
        with open_regular(path) as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
    except OSError as e:
        raise DeviceNetError(f"{path}: cannot read ({e.strerror or e})") from None
    return h.hexdigest()


class FeatureCache:
    """Features per (photo content hash, view) for one model and layer, in an
    .npz file.  The file name carries the model's hash and the layer, so a
    different base model never reuses another's features."""

    def __init__(self, folder, model_digest, layer):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in layer)
        self.path = os.path.join(folder, f"features-{model_digest[:16]}-{safe}.npz")
        self._items = {}
        self._dirty = False
        if os.path.isfile(self.path):
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    for view in VIEWS:
                        if f"keys_{view}" in z:
                            for key, value in zip(z[f"keys_{view}"], z[f"values_{view}"]):
                                self._items[f"{key}:{view}"] = value
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                # A damaged cache only costs a recomputation; start afresh.
                self._items = {}

    def get(self, digest, view):
        return self._items.get(f"{digest}:{view}")

    def put(self, digest, view, value):
        self._items[f"{digest}:{view}"] = np.asarray(value, np.float32)
        self._dirty = True

    def __len__(self):
        return len(self._items)

    def save(self):
        """Write the cache (atomically) if anything was added."""
        if not self._dirty:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        arrays = {}
        for view in VIEWS:
            keys = sorted(k for k in self._items if k.endswith(":" + view))
            if keys:
                arrays[f"keys_{view}"] = np.array([k.rsplit(":", 1)[0] for k in keys])
                arrays[f"values_{view}"] = np.stack([self._items[k] for k in keys])
        tmp = self.path + ".part.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.path)
        self._dirty = False
