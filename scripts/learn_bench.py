"""Measure top-layer retraining on real, freely licensed photos.

The photos are the photographic stamps of Debian's ``tuxpaint-stamps-default``
package (GPL-2, Bill Kendrick and the Tux Paint contributors): cut-out photos
of birds, fruit, vegetables, flowers, cattle and fish, one folder per kind.
The script fetches the package with ``apt-get download`` (or takes ``--deb``),
extracts the photos into a cache folder (nothing is committed), and reports:

- held-out accuracy of a two-class problem (fruit vs vegetables) and a
  six-class one, over repeated stratified splits (the classes are small, so
  one split would be noisy), plain, with ``--augment`` and with ``--oversample``;
- the time per photo to compute features (decode + preprocess + network),
  for the centre crop and for the ten crops.

    python scripts/learn_bench.py [--cache DIR] [--deb FILE] [--splits 10] [--json]
"""

import argparse
import glob
import io
import json
import lzma
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

import devicenet
from devicenet import learn as learning
from devicenet.features import FeatureCache, feature_layer, file_digest

PACKAGE = "tuxpaint-stamps-default"
STAMPS = "usr/share/tuxpaint/stamps/"
# class name -> stamp folder; only the folder's own photos (its cartoon/
# sub-folder holds drawings, not photos)
MULTI = {"bird": "animals/birds", "fruit": "food/fruit", "vegetable": "food/vegetables",
         "flower": "plants/flowers", "cattle": "animals/mammals/bovines", "fish": "animals/fish"}
TWO = {"fruit": "food/fruit", "vegetable": "food/vegetables"}


def ar_members(path):
    """Yield (name, bytes) of each member of a Debian package (an ar archive)."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise SystemExit(f"{path}: not a Debian package")
        while True:
            header = f.read(60)
            if len(header) < 60:
                return
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            yield name, f.read(size)
            f.read(size % 2)  # members are padded to an even length


def fetch(cache, deb=None):
    """Extract the stamp photos under ``cache``/stamps; return that folder."""
    stamps = os.path.join(cache, "stamps")
    if os.path.isdir(stamps):
        return stamps
    os.makedirs(cache, exist_ok=True)
    if deb is None:
        found = glob.glob(os.path.join(cache, f"{PACKAGE}_*.deb"))
        if not found:
            print(f"fetching {PACKAGE} (160 MB) with apt-get download ...", file=sys.stderr)
            subprocess.run(["apt-get", "download", PACKAGE], cwd=cache, check=True)
            found = glob.glob(os.path.join(cache, f"{PACKAGE}_*.deb"))
        deb = sorted(found)[-1]
    wanted = {STAMPS + folder + "/" for folder in MULTI.values()}
    tmp = tempfile.mkdtemp(dir=cache)
    for name, blob in ar_members(deb):
        if not name.startswith("data.tar"):
            continue
        raw = lzma.decompress(blob) if name.endswith(".xz") else blob
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for m in tar.getmembers():
                path = m.name.lstrip("./")
                folder = path.rsplit("/", 1)[0] + "/"
                if m.isfile() and path.endswith(".png") and folder in wanted:
                    dest = os.path.join(tmp, path[len(STAMPS):])
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with open(dest, "wb") as out:
                        out.write(tar.extractfile(m).read())
    os.replace(tmp, stamps)
    return stamps


def make_dataset(stamps, classes, dest):
    """A dataset folder (one sub-folder of photo links per class)."""
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    for name, folder in classes.items():
        os.makedirs(os.path.join(dest, name))
        for src in sorted(glob.glob(os.path.join(stamps, folder, "*.png"))):
            os.symlink(os.path.abspath(src), os.path.join(dest, name, os.path.basename(src)))
    return dest


def features(model, dataset, cache_dir, views):
    """(labels, centre features, ten-crop features or None, computed, seconds)."""
    classes, items = learning.scan(dataset)
    cache = FeatureCache(cache_dir, file_digest(model.path), feature_layer(model.graph))
    paths = [p for p, _ in items]
    t0 = time.perf_counter()
    digests, computed = learning.compute_features(model, paths, views, feature_layer(model.graph), cache)
    seconds = time.perf_counter() - t0
    labels = np.array([k for _, k in items])
    centre = np.concatenate([cache.get(d, "centre") for d in digests])
    ten = np.stack([cache.get(d, "ten") for d in digests]) if "ten" in views else None
    return classes, labels, centre, ten, computed, seconds


def evaluate(labels, centre, ten, classes, splits, holdout, mode, l2):
    """Mean and spread of held-out accuracy over ``splits`` stratified splits."""
    accs = []
    for seed in range(splits):
        train, test = learning.stratified_split(labels, holdout, seed)
        x, y = centre[train], labels[train]
        if mode == "oversample":
            x = ten[train].mean(axis=1)
        if mode == "augment":
            x = np.concatenate([x, ten[train].reshape(-1, ten.shape[-1])])
            y = np.concatenate([y, np.repeat(y, 10)])
        clf = learning.Classifier(l2=l2).fit(x, y, len(classes))
        if mode == "oversample":
            probs = clf.probabilities(ten[test].reshape(-1, ten.shape[-1])).reshape(len(test), 10, -1).mean(axis=1)
        else:
            probs = clf.probabilities(centre[test])
        accs.append(float(np.mean(probs.argmax(axis=1) == labels[test])))
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "splits": splits}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "devicenet", "learn-bench"))
    ap.add_argument("--deb", help=f"an already downloaded {PACKAGE} .deb")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    stamps = fetch(args.cache, args.deb)
    model = devicenet.load(backend=args.backend)
    doc = {"machine": platform.machine(), "python": platform.python_version(), "backend": model.backend,
           "model": model.name, "holdout": args.holdout, "l2": args.l2, "problems": {}}
    # Time feature extraction on a fresh cache, so every photo is computed.
    with tempfile.TemporaryDirectory() as fresh:
        multi = make_dataset(stamps, MULTI, os.path.join(args.cache, "multi"))
        _, _, _, _, n, secs = features(model, multi, fresh, ("centre",))
        doc["ms_per_photo_centre"] = secs / n * 1e3
        # Ten crops cost ten network passes: time them on the smallest class.
        items = sorted(glob.glob(os.path.join(stamps, MULTI["fish"], "*.png")))
        cache = FeatureCache(fresh, "timing", feature_layer(model.graph))
        t0 = time.perf_counter()
        _, computed = learning.compute_features(model, items, ("ten",), feature_layer(model.graph), cache)
        doc["ms_per_photo_ten_crops"] = (time.perf_counter() - t0) / computed * 1e3
    cache_dir = os.path.join(args.cache, "features")
    for name, classes in (("two-class", TWO), ("multi-class", MULTI)):
        dataset = make_dataset(stamps, classes, os.path.join(args.cache, name))
        names, labels, centre, ten, _, _ = features(model, dataset, cache_dir, ("centre", "ten"))
        doc["problems"][name] = {
            "classes": {c: int(np.sum(labels == k)) for k, c in enumerate(names)},
            **{mode: evaluate(labels, centre, ten, names, args.splits, args.holdout, mode, args.l2)
               for mode in ("plain", "augment", "oversample")}}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{doc['model']} on {doc['backend']} ({doc['machine']}, Python {doc['python']})")
    print(f"feature extraction: {doc['ms_per_photo_centre']:.0f} ms per photo (centre crop), "
          f"{doc['ms_per_photo_ten_crops']:.0f} ms per photo (ten crops)")
    for name, p in doc["problems"].items():
        counts = ", ".join(f"{c} {n}" for c, n in p["classes"].items())
        print(f"{name} ({counts}); held-out {args.holdout:.0%}, {args.splits} splits:")
        for mode in ("plain", "augment", "oversample"):
            print(f"  {mode:<10} {p[mode]['mean'] * 100:5.1f}% +- {p[mode]['std'] * 100:.1f}")


if __name__ == "__main__":
    main()
