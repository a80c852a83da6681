#!/usr/bin/env python3
"""Gather the accuracy evaluation set: distinct, freely licensed real
photographs from Debian packages (all in Debian main, so DFSG-free; each
package's licence is in its usr/share/doc/PACKAGE/copyright).

    python scripts/eval_photos.py [--cache DIR] [--views]

Downloads the packages with ``apt-get download`` (run ``apt-get update``
once first) and extracts them with ``dpkg-deb``.  Two kinds of photograph:

- the photographic wallpapers of four wallpaper packages (a hand-kept list:
  abstract and rendered wallpapers are left out);
- the photographic stamps of ``tuxpaint-stamps-default`` (animals, food,
  plants, objects, vehicles: cut-outs with an alpha channel; drawn stamps
  are left out), each composited onto a background chosen by its index:
  a plain colour with a soft gradient, or a blurred patch of a wallpaper.

One JPEG per distinct picture goes to CACHE/photos (a 480-pixel shorter
side); ``--views`` also writes three crops of each wallpaper (left and right
squares, a 2x zoom on the centre) to CACHE/views, an extra harder set.
Nothing here is committed: the photos stay in the cache.
"""

import argparse
import hashlib
import os
import subprocess
import sys

import numpy as np
from PIL import Image, ImageFilter

WALLPAPERS = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds",
              "plasma-workspace-wallpapers")
STAMPS = "tuxpaint-stamps-default"
# The wallpapers that are photographs (looked at one by one); the others in
# these packages are abstract or rendered.
PHOTO_WALLPAPERS = {
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
    "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
    "friends_by_Aitzol_Berasategi", "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
    "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi", "Kleiber_by_Lukas_Baubkus",
    "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
    "TwoWings", "Wood", "YellowFlower", "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow",
    "FallenLeaf", "Grey", "OneStandsOut", "Path", "Volna", "summer_1am",
}
# Stamps that are drawings or renderings, not photographs (folders, then
# single stamps, looked at one by one), and mirrored copies of other stamps.
DRAWN = ("cartoon", "symbols", "toys", "roadsigns", "planets", "hats", "clothes/button", "Santa",
         "easter/bunny", "easter/butterfly", "easter/chick", "jackolantern", "soccer", "_mirror")
MIN_STAMP_PIXELS = 6000   # smaller cut-outs are icons
MIN_STAMP_COLOURS = 300   # drawings use few colours; photographs many
BACKGROUNDS = ((236, 236, 230), (120, 150, 90), (70, 110, 160), (200, 180, 150), (40, 40, 45),
               (180, 200, 220), (150, 90, 70), (245, 225, 170))
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "devicenet", "eval")
MIN_SIDE = 1000  # smaller wallpaper files are previews or lower-resolution copies
SIDE = 480
Image.MAX_IMAGE_PIXELS = 40_000_000


def fetch(cache, packages):
    """Download and extract the packages once; return the extraction folders."""
    debs, roots = os.path.join(cache, "debs"), []
    os.makedirs(debs, exist_ok=True)
    os.makedirs(os.path.join(cache, "extract"), exist_ok=True)
    for pkg in packages:
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


def files(root, extensions):
    for dirpath, dirnames, names in os.walk(root):
        dirnames.sort()
        yield from (os.path.join(dirpath, f) for f in sorted(names) if f.lower().endswith(extensions))


def wallpapers(root):
    """(name, path) of the largest file of each photographic wallpaper.

    Plasma wallpapers ship one picture in many sizes under NAME/contents/;
    the name groups them.
    """
    best = {}
    for path in files(root, (".jpg", ".jpeg", ".png")):
        parts = path.split(os.sep)
        key = parts[parts.index("contents") - 1] if "contents" in parts else os.path.basename(path)
        name = os.path.splitext(key)[0]
        size = os.path.getsize(path)
        if name in PHOTO_WALLPAPERS and (name not in best or size > best[name][0]):
            best[name] = (size, path)
    return sorted((k, p) for k, (_, p) in best.items())


def photo_stamps(root):
    """(name, RGBA image) of every stamp that is a photograph cut-out."""
    for path in files(os.path.join(root, "usr", "share", "tuxpaint", "stamps"), (".png",)):
        if any(word in path for word in DRAWN):
            continue
        with Image.open(path) as img:
            img = img.convert("RGBA")
        a = np.asarray(img)
        rgb = a[..., :3][a[..., 3] > 200] // 8  # 5 bits per channel
        if len(rgb) < MIN_STAMP_PIXELS:
            continue
        if len(np.unique(rgb[:, 0].astype(np.int32) * 1024 + rgb[:, 1] * 32 + rgb[:, 2])) < MIN_STAMP_COLOURS:
            continue
        name = os.path.relpath(path, root).split("stamps" + os.sep, 1)[1]
        yield os.path.splitext(name)[0].replace(os.sep, "_"), img


def background(index, photos):
    """A SIDE x SIDE background: a soft gradient of a palette colour, or
    (every third stamp) a blurred patch of one of the wallpaper photos."""
    if index % 3 == 2 and photos:
        img = photos[index % len(photos)]
        s = min(img.size)
        x = (index * 97) % (img.width - s + 1)
        return img.crop((x, 0, x + s, s)).resize((SIDE, SIDE), Image.BILINEAR).filter(
            ImageFilter.GaussianBlur(6))
    colour = np.array(BACKGROUNDS[index % len(BACKGROUNDS)], np.float32)
    ramp = np.linspace(0.85, 1.1, SIDE, dtype=np.float32)[:, None, None]
    return Image.fromarray(np.clip(colour * ramp * np.ones((1, SIDE, 1), np.float32), 0, 255).astype(np.uint8))


def composite(stamp, index, photos):
    """The stamp scaled to fill 60 to 85% of the frame, placed on a background."""
    img = background(index, photos)
    fill = 0.6 + 0.05 * (index % 6)
    scale = fill * SIDE / max(stamp.size)
    stamp = stamp.resize((max(1, round(stamp.width * scale)), max(1, round(stamp.height * scale))),
                         Image.BICUBIC)
    img.paste(stamp, ((SIDE - stamp.width) // 2, (SIDE - stamp.height) // 2), stamp)
    return img


def thumbprint(img):
    """A coarse fingerprint, so that the same picture shipped twice counts once."""
    small = img.convert("L").resize((8, 8), Image.BILINEAR)
    return hashlib.sha1(bytes(v // 32 for v in small.tobytes())).hexdigest()


def views(img):
    """The left and right squares of a picture, and its centre zoomed 2x."""
    w, h = img.size
    s = min(w, h)
    return {"left": img.crop((0, 0, s, s)), "right": img.crop((w - s, h - s, w, h)),
            "zoom": img.crop((w // 4, h // 4, w - w // 4, h - h // 4))}


def save(img, target):
    if not os.path.exists(target):
        scale = SIDE / min(img.size)
        img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC).save(target, quality=92)


def distinct_wallpapers(cache, seen):
    """(package, name, RGB image) of each photographic wallpaper at full
    size, each picture once (``seen``: the thumbprints met so far)."""
    for root in fetch(cache, WALLPAPERS):
        for name, path in wallpapers(root):
            with Image.open(path) as img:
                if min(img.size) < MIN_SIDE:
                    continue
                img = img.convert("RGB")
            mark = thumbprint(img)
            if mark not in seen:
                seen.add(mark)
                yield os.path.basename(root), name, img


def build(cache, with_views=False):
    """Write the photos (and optionally the views); return the photo folder."""
    out, extra = os.path.join(cache, "photos"), os.path.join(cache, "views")
    os.makedirs(out, exist_ok=True)
    seen, photos, count = set(), [], {"wallpaper": 0, "stamp": 0}
    for pkg, name, img in distinct_wallpapers(cache, seen):
        img.thumbnail((2 * SIDE * img.width // min(img.size),) * 2)
        photos.append(img)
        save(img, os.path.join(out, f"{pkg}-{name}.jpg"))
        count["wallpaper"] += 1
        if with_views:
            os.makedirs(extra, exist_ok=True)
            for view, v in views(img).items():
                save(v, os.path.join(extra, f"{pkg}-{name}-{view}.jpg"))
    (root,) = fetch(cache, (STAMPS,))
    for index, (name, stamp) in enumerate(photo_stamps(root)):
        img = composite(stamp, index, photos)
        mark = thumbprint(img)
        if mark not in seen:
            seen.add(mark)
            save(img, os.path.join(out, f"stamp-{name}.jpg"))
            count["stamp"] += 1
    print(f"{len(seen)} distinct photographs ({count['wallpaper']} wallpapers, {count['stamp']} stamps) "
          f"in {out}", file=sys.stderr)
    return out


def large_photos(cache):
    """The wallpapers at full size and three full-resolution crops of each."""
    out = os.path.join(cache, "large")
    os.makedirs(out, exist_ok=True)
    paths = []
    for pkg, name, img in distinct_wallpapers(cache, set()):
        for view, v in {"full": img, **views(img)}.items():
            target = os.path.join(out, f"{pkg}-{name}-{view}.jpg")
            if not os.path.exists(target):
                v.save(target, quality=92)
            paths.append(target)
    if not paths:
        sys.exit(f"error: no photographic wallpapers found in {', '.join(WALLPAPERS)}")
    # the folder is a calibration set: nothing else may be in it (views of
    # wallpapers an older package shipped)
    for name in os.listdir(out):
        if os.path.join(out, name) not in paths:
            os.remove(os.path.join(out, name))
    return paths


def large_folder(cache):
    """The folder of ``large_photos`` (written first): the calibration set
    of the shipped model."""
    return os.path.dirname(large_photos(cache)[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="where packages and photos go (default: %(default)s)")
    ap.add_argument("--views", action="store_true", help="also write crops of the wallpapers to CACHE/views")
    args = ap.parse_args()
    print(build(args.cache, args.views))


if __name__ == "__main__":
    main()
