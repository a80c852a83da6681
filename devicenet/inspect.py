"""A model's description, for ``devicenet info``."""

import os

from .format import VERSION


def describe(graph, path=None):
    """A JSON-ready summary of ``graph`` (and of its file at ``path``, if any):
    metadata, op counts, weights per encoding, size and compression.
    ``classes`` is None when the output is not one score per class."""
    meta = graph.meta
    ops = {}
    for n in graph.nodes:
        ops[n.op] = ops.get(n.op, 0) + 1
    encodings = {}
    for t in graph.tensors.values():
        encodings[t.encoding] = encodings.get(t.encoding, 0) + int(t.data.size)
    params = sum(encodings.values())
    size = os.path.getsize(path) if path and os.path.exists(path) else None
    shapes = graph.shapes()
    return {
        "path": path, "name": meta.get("name"), "format_version": "%d.%d" % VERSION,
        "file_bytes": size, "input_shape": list(graph.input_shape),
        "output_shape": list(shapes[graph.output_name]), "classes": graph.classes(shapes),
        "labels": len(graph.labels), "preprocess": meta.get("preprocess"), "license": meta.get("license"),
        "provenance": meta.get("provenance"), "quantization": meta.get("quantization"),
        "parameters": params, "float32_bytes": params * 4,
        "compression": round(params * 4 / size, 2) if size else None,
        "encodings": encodings, "ops": ops, "nodes": len(graph.nodes),
        "tensors": [{"name": t.name, "encoding": t.encoding, "shape": list(t.shape)} for t in graph.tensors.values()],
    }
