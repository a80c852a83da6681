"""Which images a command was given: files, folders, glob patterns, stdin.

``expand`` turns a command's arguments into image paths in a stable order.
A file named is kept as it is (if it is not an image, classifying it says
so).  A folder is searched recursively for files whose first bytes are an
image format's, so ``photos/`` works whatever its file names are; a file
with a photo's extension is kept too, so that a damaged photo is reported
rather than passed over.  A pattern (``*``, ``?``, ``[``) that names no file
is expanded here, for shells that do not and for quoted patterns.  ``-`` is
one image read from stdin.  What a folder held besides images is counted
by reason.
"""

from collections import Counter
import glob
import io
import os
import re
import stat
import sys
from typing import NamedTuple

from .errors import DeviceNetError

STDIN = "-"
#: first bytes of the image formats Pillow decodes that photos come in
#: (a prefix, or (offset, bytes) for a marker after a size field)
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
              (8, b"WEBP"), b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51")
#: Netpbm (PBM, PGM, PPM): P1-P6 and whitespace
PNM = re.compile(rb"P[1-6]\s")
#: extensions of photos: such a file in a folder is used even when its
#: first bytes are not an image's, so that its error is seen
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
#: a stdin image larger than this is refused (the pixel limit is checked after)
MAX_STDIN_BYTES = 256 << 20
GLOB_CHARS = "*?["


class Inputs(NamedTuple):
    """What ``expand`` found: the paths in order, and (path, reason) for each
    file a folder held that is not used."""

    paths: list
    skipped: list

    def summary(self, verb="skipped", where="the folders given"):
        """One line counting what was skipped, by reason, with the first
        few names ("" when nothing was)."""
        if not self.skipped:
            return ""
        counts = Counter(reason for _, reason in self.skipped)
        n = len(self.skipped)
        first = ", ".join(p for p, _ in self.skipped[:3]) + (", ..." if n > 3 else "")
        return (f"{verb} {n} entr{'ies' if n != 1 else 'y'} in {where} ("
                + ", ".join(f"{reason}: {k}" for reason, k in counts.most_common()) + f"): {first}")


def looks_like_image(path):
    """Whether the regular file ``path`` starts like an image; None when it
    cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    for sig in SIGNATURES:
        offset, sig = sig if isinstance(sig, tuple) else (0, sig)
        if head[offset:offset + len(sig)] == sig:
            return True
    return bool(PNM.match(head))


def _kind(path):
    """Why a folder entry is not a candidate (None: a regular file)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "unreadable"
    if stat.S_ISREG(mode):
        return None
    return "not regular files"  # pipes, devices, sockets: reading could block


def image_files(folder, recursive=True):
    """``Inputs`` of the images under ``folder``: recursively, or (not
    ``recursive``) its own files, its sub-folders listed as skipped.  Hidden
    files and folders (the feature cache) are left out without a mention."""
    paths, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if not recursive:
            skipped += [(os.path.join(dirpath, d), "sub-folders") for d in dirnames]
            dirnames[:] = []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            reason = None
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                reason = _kind(path)  # only a regular file is opened to look at its first bytes
                if reason is None:
                    ok = looks_like_image(path)
                    reason = None if ok else "not images" if ok is False else "unreadable"
            if reason:
                skipped.append((path, reason))
            else:
                paths.append(path)
    return Inputs(paths, skipped)


def expand(args, stdin_ok=True):
    """The image paths named by ``args`` (files, folders, patterns, ``-``), as
    ``Inputs``.  A name that is nothing is kept, so that the command reports
    it in the same way as any other unreadable image."""
    paths, skipped = [], []
    for arg in args:
        arg = os.fspath(arg)
        if arg == STDIN:
            if not stdin_ok:
                raise DeviceNetError("- (stdin) cannot be used here; name the files")
            if STDIN in paths:
                raise DeviceNetError("- (stdin) can be given once")
            paths.append(STDIN)
            continue
        if os.path.isdir(arg):
            found = image_files(arg)
            paths += found.paths
            skipped += found.skipped
            continue
        matches = sorted(glob.glob(arg, recursive=True)) if any(c in arg for c in GLOB_CHARS) and \
            not os.path.lexists(arg) else []
        if not matches:
            paths.append(arg)
        for m in matches:
            found = image_files(m) if os.path.isdir(m) else Inputs([m], [])
            paths += found.paths
            skipped += found.skipped
    return Inputs(paths, skipped)


def read_stdin(stream=None):
    """One image from stdin, as a binary file named ``-`` (``STDIN``):
    ``image.open_image`` decodes it as any photo, with the same checks."""
    stream = stream if stream is not None else sys.stdin.buffer
    if hasattr(stream, "isatty") and stream.isatty():
        raise DeviceNetError("-: stdin is a terminal; pipe an image in (devicenet classify - < photo.jpg)")
    data = stream.read(MAX_STDIN_BYTES + 1)
    if not data:
        raise DeviceNetError("-: stdin is empty")
    if len(data) > MAX_STDIN_BYTES:
        raise DeviceNetError(f"-: more than {MAX_STDIN_BYTES >> 20} MB on stdin; that is not one photo")
    image = io.BytesIO(data)
    image.name = STDIN
    return image
