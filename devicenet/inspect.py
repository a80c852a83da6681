"""A model's description, for ``devicenet info``."""

import os

from .format import FLOAT_VERSION, VERSION


def describe(graph, path=None):
    """A JSON-ready summary of ``graph`` (and of its file at ``path``, if any):
    metadata, op counts, weights per encoding, size and compression.
    ``classes`` is None when the output is not one score per class;
    ``integer`` is None for a model that runs all in float."""
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
        "path": path, "name": meta.get("name"),
        "format_version": "%d.%d" % (VERSION if (meta.get("integer") or {}).get("nodes") else FLOAT_VERSION),
        "file_bytes": size, "input_shape": list(graph.input_shape),
        "output_shape": list(shapes[graph.output_name]), "classes": graph.classes(shapes),
        "labels": len(graph.labels), "preprocess": meta.get("preprocess"), "license": meta.get("license"),
        "provenance": meta.get("provenance"), "quantization": meta.get("quantization"),
        "integer": integer_summary(graph),
        "parameters": params, "float32_bytes": params * 4,
        "compression": round(params * 4 / size, 2) if size else None,
        "encodings": encodings, "ops": ops, "nodes": len(graph.nodes),
        "tensors": [{"name": t.name, "encoding": t.encoding, "shape": list(t.shape)} for t in graph.tensors.values()],
    }


def integer_summary(graph):
    """The integer layers of a model: their names, how many of its weighted
    layers they are, and the converter's own summary (None: all float)."""
    spec = graph.meta.get("integer")
    if not spec:
        return None
    weighted = [n.name for n in graph.nodes if "weight" in n.params]
    nodes = list(spec.get("nodes", []))
    return {"nodes": nodes, "weighted_layers": sum(n in set(nodes) for n in weighted),
            "of_weighted_layers": len(weighted), "summary": spec.get("summary")}
