#!/usr/bin/env python3
"""What JPEG draft decoding costs in answers and saves in time, on large photos.

    pip install -e ".[accuracy]"
    python scripts/decode_bench.py [--cache DIR]

Pillow's ``draft()`` lets the JPEG decoder downscale by 1/2, 1/4 or 1/8 in
the DCT domain, which is much faster than decoding every pixel but aliases
where an antialiased resize does not.  For every large photo this decodes
several ways -- in full, and drafted down to 1, 2, 3 and 4 times the
resize target (devicenet's image.DRAFT_MARGIN is marked) -- applies the
same preprocessing, runs the float32 EfficientNet-Lite0 on each, and
prints how often the drafted decodes change the top-1 of the full decode,
and the median decode times.  The photos are the photographic wallpapers
of scripts/eval_photos.py at their original resolution (1080 to 4000
pixels on the shorter side) and three full-resolution crops of each (left
and right squares, the centre zoomed 2x), written as JPEGs in CACHE/large.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import eval_photos  # noqa: E402
from build_default_model import checkpoint  # noqa: E402
from devicenet.convert import convert  # noqa: E402
from devicenet.image import DRAFT_MARGIN, open_image, preprocess  # noqa: E402
from devicenet.model import load  # noqa: E402


def decode(path, spec, draft):
    """(preprocessed input, decode seconds: the best of three)."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        img = open_image(path, draft)
        best = min(best, time.perf_counter() - t)
    return preprocess(img, spec), best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=eval_photos.DEFAULT_CACHE)
    ap.add_argument("--margins", default="1,2,3,4",
                    help="draft down to these multiples of the resize target (default: %(default)s)")
    args = ap.parse_args()
    paths = eval_photos.large_photos(args.cache)
    net = os.path.join(args.cache, "efficientnet-lite0-float32.dnet")
    if not os.path.exists(net):
        convert(checkpoint("lite0"), net, weights="float32")
    model = load(net, backend="cpu")
    spec = model.graph.meta["preprocess"]
    ways = {"full": None}
    for k in map(int, args.margins.split(",")):
        mark = " (devicenet)" if k == DRAFT_MARGIN else ""
        ways[f"draft to {k}x the target{mark}"] = (k * spec["resize"],) * 2
    probs, times = {w: [] for w in ways}, {w: [] for w in ways}
    for i, path in enumerate(paths, 1):
        for way, draft in ways.items():
            x, seconds = decode(path, spec, draft)
            z = model.forward(x[None])[0].astype(np.float64)
            p = np.exp(z - z.max())
            probs[way].append(p / p.sum())
            times[way].append(seconds)
        if i % 20 == 0:
            print(f"  {i}/{len(paths)} photos", file=sys.stderr)
    full = np.array(probs["full"])
    top = full.argmax(1)
    ranked = np.sort(full, 1)
    lead = ranked[:, -1] - ranked[:, -2]
    sizes = [min(Image.open(p).size) for p in paths]
    print(f"{len(paths)} photos, shorter side {min(sizes)} to {max(sizes)} pixels (median "
          f"{int(statistics.median(sizes))}); resize target {spec['resize']}\n")
    print("| decode | top-1 as full decode | changed with lead >= 0.1 | median decode time |")
    print("|---|---:|---:|---:|")
    for way in ways:
        got = np.array(probs[way]).argmax(1)
        changed = got != top
        print(f"| {way} | {(~changed).mean() * 100:.1f}% ({changed.sum()} of {len(paths)} differ) | "
              f"{(changed & (lead >= 0.1)).sum()} | {statistics.median(times[way]) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
