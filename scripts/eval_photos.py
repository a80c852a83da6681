#!/usr/bin/env python3
"""Gather the accuracy evaluation set: freely licensed photographs from
Debian's wallpaper packages (all in Debian main, so DFSG-free; each
package's licence is in its usr/share/doc/PACKAGE/copyright).

    python scripts/eval_photos.py [--cache DIR]

Downloads the packages with ``apt-get download`` (run ``apt-get update``
once first), extracts them with ``dpkg-deb``, keeps one copy of every
distinct picture, and writes four views of each (the whole picture, the
left and right squares, a 2x zoom on the centre) as JPEGs with a 480-pixel
shorter side into CACHE/photos.  Nothing here is committed: the photos stay
in the cache.
"""

import argparse
import hashlib
import os
import subprocess
import sys

from PIL import Image

PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds",
            "plasma-workspace-wallpapers", "ukui-wallpapers")
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "devicenet", "eval")
MIN_SIDE = 1000  # smaller files are icons, previews or lower-resolution copies
SIDE = 480
Image.MAX_IMAGE_PIXELS = 40_000_000


def fetch(cache):
    """Download and extract the packages once; return the extraction folders."""
    debs, roots = os.path.join(cache, "debs"), []
    os.makedirs(debs, exist_ok=True)
    os.makedirs(os.path.join(cache, "extract"), exist_ok=True)
    for pkg in PACKAGES:
        root = os.path.join(cache, "extract", pkg)
        if not os.path.isdir(root):
            have = [f for f in os.listdir(debs) if f.startswith(pkg + "_")]
            if not have:
                run(["apt-get", "download", pkg], debs)
                have = [f for f in os.listdir(debs) if f.startswith(pkg + "_")]
            run(["dpkg-deb", "-x", os.path.join(debs, sorted(have)[-1]), root + ".tmp"], debs)
            os.rename(root + ".tmp", root)
        roots.append(root)
    return roots


def run(cmd, cwd):
    try:
        subprocess.run(cmd, cwd=cwd, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"error: {' '.join(cmd)} failed ({e}); on Debian or Ubuntu run `apt-get update` first")


def pictures(root):
    """(key, path) of the largest file of each picture in an extracted package.

    Plasma wallpapers ship one picture in many sizes under NAME/contents/;
    the key groups them.
    """
    best = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for f in sorted(files):
            if not f.lower().endswith((".jpg", ".jpeg", ".png")):
                continue
            path = os.path.join(dirpath, f)
            parts = path.split(os.sep)
            key = os.sep.join(parts[:parts.index("contents")]) if "contents" in parts else path
            size = os.path.getsize(path)
            if key not in best or size > best[key][0]:
                best[key] = (size, path)
    return sorted((k, p) for k, (_, p) in best.items())


def thumbprint(img):
    """A coarse fingerprint, so that the same picture shipped twice counts once."""
    small = img.convert("L").resize((8, 8), Image.BILINEAR)
    return hashlib.sha1(bytes(v // 32 for v in small.tobytes())).hexdigest()


def views(img):
    """The whole picture, its left and right squares, and the centre zoomed 2x."""
    w, h = img.size
    s = min(w, h)
    return {"full": img, "left": img.crop((0, 0, s, s)), "right": img.crop((w - s, h - s, w, h)),
            "zoom": img.crop((w // 4, h // 4, w - w // 4, h - h // 4))}


def build(cache):
    out = os.path.join(cache, "photos")
    os.makedirs(out, exist_ok=True)
    seen, written = set(), 0
    for root in fetch(cache):
        pkg = os.path.basename(root)
        for key, path in pictures(root):
            with Image.open(path) as img:
                if min(img.size) < MIN_SIDE:
                    continue
                img = img.convert("RGB")
            mark = thumbprint(img)
            if mark in seen:
                continue
            seen.add(mark)
            name = os.path.splitext(os.path.basename(key))[0].replace(" ", "_")
            for view, v in views(img).items():
                target = os.path.join(out, f"{pkg}-{name}-{view}.jpg")
                if not os.path.exists(target):
                    scale = SIDE / min(v.size)
                    v = v.resize((round(v.width * scale), round(v.height * scale)), Image.BICUBIC)
                    v.save(target, quality=92)
                written += 1
    print(f"{len(seen)} distinct pictures, {written} views in {out}", file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="where packages and photos go (default: %(default)s)")
    print(build(ap.parse_args().cache))


if __name__ == "__main__":
    main()
