"""The benchmark: load a model, time it on a photo, say where the board stands.

``run`` returns one JSON-ready dict (the keys are a stable schema, see
``KEYS``); ``report`` turns it into text and ``markdown_table`` turns saved
results from several boards into one comparison table.  Everything goes
through the public API (``devicenet.load``, ``Model.forward``), as a user's
program would.
"""

from collections import defaultdict
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np

from . import __version__, blas
from .backends.base import is_depthwise
from .errors import DeviceNetError
from .graph import multiply_adds as count_multiply_adds

#: keys every result has (``layers`` only when asked for)
KEYS = ("board", "port", "backend", "model", "threads", "runs", "warmup", "load_ms", "first_ms",
        "latency_ms", "images_per_s", "peak_rss_mb", "versions", "reference")
STATS = ("min", "median", "p90", "mean", "std")
#: the network the shipped model's reference timings are filed under
SHIPPED_NET = "efficientnet-lite0"


def sample_image():
    """The photo bundled with the package (CC0, an espresso)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "coffee.jpg")


def peak_rss_mb():
    """Peak resident memory of this process in MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def stats(times_ms):
    """min / median / p90 / mean / std of a list of milliseconds."""
    t = np.asarray(times_ms, np.float64)
    return {"min": float(t.min()), "median": float(np.median(t)), "p90": float(np.percentile(t, 90)),
            "mean": float(t.mean()), "std": float(t.std())}


def versions():
    """Versions of devicenet, numpy, Python and the operating system."""
    return {"devicenet": __version__, "numpy": np.__version__, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def _load(model, net, seed, progress, **kw):
    """Load the model to benchmark; return (Model, build ms, (load start,
    load end) as perf_counter times, model name)."""
    import devicenet
    if net is None:
        t0 = time.perf_counter()
        m = devicenet.load(model, **kw)
        return m, 0.0, (t0, time.perf_counter()), SHIPPED_NET if model is None else m.name
    from .nets import NETS
    from . import format as dnet
    if net not in NETS:
        raise DeviceNetError(f"unknown benchmark network {net!r}; use {', '.join(NETS)}")
    t0 = time.perf_counter()
    graph = NETS[net](seed=seed, progress=progress)
    build = time.perf_counter() - t0
    # Through a file, as a real model arrives: a streamed board then keeps
    # the 8-bit weights in the page cache, mapped, rather than in the heap.
    with tempfile.TemporaryDirectory(prefix="devicenet-bench-") as tmp:
        path = os.path.join(tmp, f"{net}.dnet")
        dnet.write(graph, path)
        del graph
        t0 = time.perf_counter()
        m = devicenet.load(path, **kw)
        t1 = time.perf_counter()
    return m, build * 1e3, (t0, t1), net


def _input(model, image):
    """The network input for a photo, per the model's preprocessing metadata."""
    from .image import draft_size, open_image, preprocess
    spec = model.preprocess
    if not spec:
        raise DeviceNetError(f"model {model.name} has no preprocessing metadata, so it cannot be benchmarked on a photo")
    return preprocess(open_image(image, draft_size(spec)), spec)[None]


def layer_kind(graph, node):
    """What a layer is in the by-kind summary: its op ("depthwise" for a
    convolution with one filter per channel) and its fused activation
    ("conv+silu")."""
    op = node.op
    if op == "conv" and node.attrs.get("groups", 1) > 1:
        w = graph.tensors[node.params["weight"]].shape
        if is_depthwise(node.attrs["groups"], w[3] * node.attrs["groups"], w):
            op = "depthwise"
    act = node.attrs.get("activation", "none")
    return op if act == "none" else f"{op}+{act}"


def multiply_adds(graph, node, shapes):
    """A node's multiply-adds (graph.multiply_adds, the weights' shapes from
    the graph's tensors)."""
    return count_multiply_adds(node, shapes, lambda name: graph.tensors[name].shape)


def _layer_table(profiles, graph, variant_of=None):
    """Per-node median ms over the timed runs, with % of the total, kind and
    multiply-adds (and, with ``variant_of(node name)``, which code ran the
    node)."""
    per_node = defaultdict(list)
    first = profiles[0]
    for prof in profiles:
        for node, shape, seconds in prof:
            per_node[node.name].append(seconds * 1e3)
    medians = [float(np.median(per_node[node.name])) for node, _, _ in first]
    total = sum(medians) or 1.0
    shapes = graph.shapes(first[0][1][0]) if first else {}
    rows = [{"name": node.name, "op": node.op, "kind": layer_kind(graph, node), "shape": list(shape), "ms": ms,
             "percent": 100.0 * ms / total, "macs": multiply_adds(graph, node, shapes)}
            for (node, shape, _), ms in zip(first, medians)]
    for row in rows if variant_of else ():
        row["variant"] = variant_of(row["name"])
    return rows


def standing(profiles_by_name, net, median_ms):
    """Every published timing for ``net`` on any board, with how this run compares."""
    out = []
    for prof in profiles_by_name.values():
        for r in prof.references_for(net):
            entry = r.to_json()
            entry.update(port=prof.name, board=prof.title, speedup=r.ms / median_ms if median_ms else None)
            out.append(entry)
    return out


def run(model=None, net=None, *, port=None, backend=None, threads=None, device=None, residency=None,
        runs=20, warmup=3, layers=False, image=None, seed=0, progress=None):
    """Benchmark a model (default: the shipped one; ``net="alexnet"``: the
    AlexNet-shaped network) on a photo; return the result dict."""
    from . import ports
    from .report import device_name
    from .threads import default_threads
    if not isinstance(runs, int) or runs < 1:
        raise DeviceNetError(f"runs must be a positive integer, got {runs!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise DeviceNetError(f"warmup must be zero or more, got {warmup!r}")
    if model is not None and net is not None:
        raise DeviceNetError("give a model or a benchmark network, not both")
    detection = ports.detect(name=port)
    profile = detection.profile
    tick = progress or (lambda *a: None)
    m, build_ms, (t0, t1), model_name = _load(model, net, seed, tick, backend=backend, threads=threads, port=port,
                                              device=device, residency=residency)
    x = _input(m, image or sample_image())
    t = time.perf_counter()
    logits = m.forward(x)
    first_ms = (time.perf_counter() - t) * 1e3
    for i in range(warmup):
        m.forward(x)
        tick("warm-up", i + 1, warmup)
    times, profiles = [], []
    for i in range(runs):
        prof = [] if layers else None
        t = time.perf_counter()
        m.forward(x, profile=prof)
        times.append((time.perf_counter() - t) * 1e3)
        if layers:
            profiles.append(prof)
        tick("run", i + 1, runs)
    lat = stats(times)
    best = m.top(m.probabilities(logits)[0], 1).predictions[0]
    variants = m._backend.variants() if hasattr(m._backend, "variants") else {}
    result = {
        "board": detection.facts.board,
        "port": profile.name,
        "backend": m.backend,
        "device": device_name(m),
        # the CPU backend's kernels: "native" (compiled) or "numpy"
        "kernels": getattr(m._backend, "kernels", m.backend),
        # and which variant of each op ran: {op: variant}
        "variants": variants,
        # numpy's BLAS, and whether the GEMMs of this run went through it
        "blas": blas.numpy_blas().to_json(),
        "gemm_on_blas": gemm_on_blas(m.backend, variants),
        "model": model_name,
        "threads": threads or profile.threads or default_threads(),
        "residency": residency or profile.residency,
        "runs": runs,
        "warmup": warmup,
        "load_ms": (t1 - t0) * 1e3,
        "build_ms": build_ms,
        "first_ms": first_ms,
        "latency_ms": lat,
        "images_per_s": 1e3 / lat["mean"],
        "peak_rss_mb": peak_rss_mb(),
        "versions": versions(),
        "reference": standing(ports.profiles(), net or model_name, lat["median"]),
        "prediction": {"label": best.label, "probability": best.probability},
        "note": detection.note,
    }
    if layers:
        result["layers"] = _layer_table(profiles, m.graph, getattr(m._backend, "variant_of", None))
    return result


def gemm_on_blas(backend, variants):
    """Whether a run's GEMMs went through numpy's BLAS rather than
    devicenet's own compiled GEMM (on the CPU backend: the numpy kernels, or
    the compiled ``gemm`` op, which calls the BLAS); ``variants`` is the
    backend's {op: variant} report."""
    return backend == "cpu" and "gemm" in variants and "f32_gemm" not in variants


# --- reporting -------------------------------------------------------------------

def report(r):
    """Human-readable lines for one result."""
    lat = r["latency_ms"]
    lines = [f"board      {r['board']}",
             f"port       {r['port']}" + (f"  ({r['note']})" if r.get("note") else ""),
             f"backend    {r['backend']}" + (f" ({r['kernels']} kernels)" if r.get("kernels", r["backend"]) != r["backend"] else "")
             + f", {r['threads']} threads, weights {r.get('residency', '?')}",
             *([f"device     {r['device']}"] if r.get("device") else []),
             *([f"kernels    " + ", ".join(f"{op} {v}" for op, v in r["variants"].items())] if r.get("variants") else []),
             *blas_lines(r),
             f"model      {r['model']}" + (f" (built in {r['build_ms']:.0f} ms)" if r.get("build_ms") else ""),
             f"load       {r['load_ms']:.1f} ms",
             f"first      {r['first_ms']:.1f} ms",
             f"latency    min {lat['min']:.1f}  median {lat['median']:.1f}  p90 {lat['p90']:.1f}  "
             f"mean {lat['mean']:.1f}  std {lat['std']:.1f} ms  ({r['runs']} runs after {r['warmup']} warm-up)",
             f"throughput {r['images_per_s']:.2f} images/s",
             f"memory     {r['peak_rss_mb']:.0f} MB peak resident",
             "versions   " + ", ".join(f"{k} {v}" for k, v in r["versions"].items())]
    pred = r.get("prediction")
    if pred:
        lines.append(f"answer     {pred['label']} ({pred['probability'] * 100:.1f}%)")
    refs = r.get("reference") or []
    if refs:
        lines.append("standing   published timings for this network:")
        for ref in refs:
            note = f", {ref['note']}" if ref.get("note") else ""
            cmp = ref["speedup"]
            where = f"{cmp:.1f}x faster" if cmp >= 1 else f"{1 / cmp:.1f}x slower"
            lines.append(f"  {ref['board']} ({ref['backend']}{note}): {ref['ms']:g} ms; this run is {where}"
                         f"  [{ref['source']}]")
    else:
        lines.append("standing   no published timings for this network; "
                     "`devicenet benchmark --net alexnet` compares with the historical ones")
    return lines


def blas_lines(r):
    """The BLAS line, and the warning when this run's GEMMs had to use a
    reference BLAS (with the compiled GEMM it does not matter)."""
    if not r.get("blas"):
        return []
    b = blas.Blas(**r["blas"])
    used = "the GEMMs ran on it" if r.get("gemm_on_blas") else "not used for the GEMMs"
    lines = [f"blas       numpy uses {blas.describe(b)}; {used}"]
    warning = blas.advice(b) if r.get("gemm_on_blas") else None
    return lines + ([f"           {warning}"] if warning else [])


def layer_lines(r):
    """The per-layer table, then the time per op kind."""
    rows = r.get("layers") or []
    ran = any(row.get("variant") for row in rows)  # which code ran each layer, where known
    lines = [f"{'layer':22s} {'op':8s} {'output':18s} {'ms':>9s} {'%':>6s}" + ("  variant" if ran else "")]
    by_op, by_kind, macs = defaultdict(float), defaultdict(float), defaultdict(int)
    for row in rows:
        by_op[row["op"]] += row["percent"]
        kind = row.get("kind", row["op"])  # (results saved before kinds were recorded)
        by_kind[kind] += row["percent"]
        macs[kind] += row.get("macs", 0)
        lines.append(f"{row['name'][:22]:22s} {row['op']:8s} {'x'.join(map(str, row['shape'])):18s} "
                     f"{row['ms']:9.3f} {row['percent']:6.1f}" + (f"  {row.get('variant') or '-'}" if ran else ""))
    total = sum(macs.values())
    # A kind whose share of the time is well above its share of the
    # arithmetic is where the time goes beyond the work itself.
    lines.append("by kind, % of the time (% of the multiply-adds): " + ", ".join(
        f"{kind} {p:.1f}%" + (f" ({100.0 * macs[kind] / total:.1f}%)" if total else "")
        for kind, p in sorted(by_kind.items(), key=lambda kv: -kv[1]) if p >= 0.05))
    gemm = by_op.get("conv", 0.0) + by_op.get("dense", 0.0)
    lines.append(f"conv + dense (GEMM): {gemm:.1f}% of the time")
    return lines


def read_result(path):
    """Load a result saved with ``--save``, checking it has the schema's keys."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise DeviceNetError(f"{path}: cannot read it: {e.strerror}") from None
    except ValueError as e:
        raise DeviceNetError(f"{path}: not a JSON document: {e}") from None
    if not isinstance(doc, dict):
        raise DeviceNetError(f"{path}: not a benchmark result")
    missing = [k for k in KEYS if k not in doc]
    if missing or not isinstance(doc.get("latency_ms"), dict) or any(s not in doc["latency_ms"] for s in STATS):
        raise DeviceNetError(f"{path}: not a benchmark result (missing {', '.join(missing) or 'latency_ms fields'})")
    return doc


def markdown_table(results):
    """One Markdown table comparing results (dicts as ``run`` returns)."""
    head = ["board", "port", "model", "backend", "threads", "median ms", "p90 ms", "min ms",
            "images/s", "load ms", "peak MB", "devicenet"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 4 else "---:" for i in range(len(head))) + "|"]
    for r in results:
        lat = r["latency_ms"]
        cells = [r["board"], r["port"], r["model"], r["backend"], r["threads"], f"{lat['median']:.1f}",
                 f"{lat['p90']:.1f}", f"{lat['min']:.1f}", f"{r['images_per_s']:.2f}", f"{r['load_ms']:.0f}",
                 f"{r['peak_rss_mb']:.0f}", r["versions"].get("devicenet", "?")]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return lines
