"""What the commands print for scripts: JSON documents, JSON lines, CSV.

Every JSON document a command prints carries ``schema`` (``SCHEMA``, raised
when a key changes meaning or goes away) and has its floats rounded the
same way (``rounded``).  ``result_json`` is the one shape of a
classification, for ``classify --json``, ``--jsonl``, ``watch --jsonl``,
``serve`` and any other client of the API that answers in JSON.  docs/CLI.md documents every key.
"""

import math
import platform

#: version of the JSON documents' layout
SCHEMA = 1
#: significant digits kept of every float in a JSON document
DIGITS = 6
#: the columns of ``classify --csv``
CSV_FIELDS = ("path", "rank", "index", "label", "probability", "latency_ms")


def rounded(value, digits=DIGITS):
    """``value`` with every float (in dicts and lists, too) rounded to
    ``digits`` significant digits: enough for a probability or a latency,
    and the same in every command."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def document(doc):
    """A command's JSON document: ``schema`` first, floats rounded."""
    return rounded({"schema": SCHEMA, **doc})


def result_json(res):
    """One classification as a JSON-ready dict.

    ``res`` is a ``devicenet.Classification`` (from ``Model.classify`` or
    ``classify_many``), giving ``{"image", "predictions": [{"label",
    "index", "probability"}...], "latency_ms": {"decode", "preprocess",
    "setup", "inference", "total"}}``, or the ``DeviceNetError`` that
    ``classify_many`` yields for an image it could not use, giving
    ``{"image", "error"}``.  Floats are rounded as in every document.
    """
    if isinstance(res, Exception):
        return {"image": getattr(res, "image", None), "error": str(res)}
    return rounded({"image": res.image,
                    "predictions": [{"label": p.label, "index": p.index, "probability": p.probability}
                                    for p in res.predictions],
                    "latency_ms": dict(res.latency_ms)})


def frame_json(result, source):
    """One classified frame of ``watch --jsonl`` and serve's camera view:
    ``result_json`` of its classification (``image`` is the source's name),
    then ``frame``, ``time_s``, ``age_ms`` and ``fps``.  ``result`` is a
    ``watch.Result``."""
    return rounded({**result_json(result.classification), "image": source, "frame": result.frame.index,
                    "time_s": result.frame.time_s, "age_ms": result.age_ms, "fps": result.fps})


def run_json(model):
    """Where a model runs: ``{"model", "backend", "device"}``."""
    return {"model": model.name, "backend": model.backend, "device": device_name(model)}


def classify_document(model, results, interrupted=False):
    """The document of ``classify --json``: the run, then one ``result_json``
    per image in order (``results`` are already dicts)."""
    doc = {**run_json(model), "results": list(results)}
    if interrupted:
        doc["interrupted"] = True
    return document(doc)


def csv_rows(res):
    """``classify --csv`` rows of one result: one per prediction (rank 1 is
    the best), or one row with only the path for an image that failed."""
    if isinstance(res, Exception):
        return [[getattr(res, "image", ""), "", "", "", "", ""]]
    total = rounded(res.latency_ms.get("total", 0.0))
    return [[res.image, rank, p.index, p.label, rounded(p.probability), total]
            for rank, p in enumerate(res.predictions, 1)]


def device_name(model):
    """What ran the model, in words: the OpenCL device's name, or the CPU's
    (with the kernels and threads the CPU backend uses)."""
    be = model._backend
    name = getattr(be, "device_name", None)
    if name:
        return name
    from .threads import default_threads
    kernels = getattr(be, "kernels", None)
    threads = getattr(be, "threads", None) or default_threads()
    extra = [f"{kernels} kernels"] if kernels else []
    extra += [f"{threads} thread{'s' * (threads != 1)}"] if threads else []
    return cpu_name() + (f" ({', '.join(extra)})" if extra else "")


def cpu_name():
    """The CPU's model name from /proc/cpuinfo, else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.machine() or "CPU"
