"""Decoding photos and turning them into network input.

Preprocessing follows the model's metadata: resize the shorter side (Pillow
bilinear), centre crop, ``(pixel - mean) / std`` per channel, RGB order.
"""

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DeviceNetError
from .files import open_regular

#: images with more pixels than this are refused before decoding
#: (a few-KB PNG can declare 30000x30000 pixels: a decompression bomb)
MAX_PIXELS = 64_000_000
#: a longer side than this many times the shorter is cropped to it before
#: resizing, so a 1x100000 strip cannot ask for a gigabyte-sized resize
MAX_ASPECT = 8


def open_image(image, draft_size=None):
    """Decode an image into an upright RGB PIL image.

    ``image`` is a path, an image file's bytes, a binary file object (such
    as an upload or stdin read into ``io.BytesIO``), a PIL image or an
    HxWx3 uint8 array.  Files, bytes and file objects are decoded the same
    way, with the same checks (the pixel limit, decompression bombs) and the
    same one-line errors, named by ``image_name``.

    ``draft_size`` lets a JPEG decoder downscale by 1/2, 1/4 or 1/8 while
    decoding when the image is far larger than needed, which is much faster.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise DeviceNetError(f"an image array must be HxWx3 uint8, got {image.dtype} {image.shape}")
        return Image.fromarray(image, "RGB")
    if isinstance(image, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(image), "image")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(image), None, draft_size)
    if hasattr(image, "read"):
        return _decode(image, image_name(image), draft_size)
    if not isinstance(image, (str, os.PathLike)):
        raise DeviceNetError(f"an image is a path, bytes, a binary file, a PIL image or an HxWx3 uint8 array, "
                             f"not {type(image).__name__}")
    path = os.fspath(image)
    with open_regular(path, "image file") as f:
        return _decode(f, path, draft_size)


def image_name(image):
    """What results and errors call ``image``: its path, or the ``name`` of
    a file object that has one (``-`` for stdin); None otherwise."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    name = getattr(image, "name", None)
    return name if isinstance(name, str) else None


def _decode(f, name, draft_size):
    """Decode the binary file ``f``; errors start with ``name:`` when there is one."""
    where = f"{name}: " if name else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(f)
            # Checked on the header, before a byte of pixels is decoded.
            if img.width * img.height > MAX_PIXELS:
                raise DeviceNetError(f"{where}{img.width}x{img.height} pixels is over the "
                                     f"{MAX_PIXELS // 1_000_000} megapixel limit")
            if draft_size and img.format == "JPEG":
                img.draft("RGB", draft_size)
            img.load()
            img = ImageOps.exif_transpose(img)
    except DeviceNetError:
        raise
    except UnidentifiedImageError:
        raise DeviceNetError(f"{where}not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DeviceNetError(f"{where}image is too large (decompression bomb?)") from None
    except Exception as e:  # Pillow's decoders raise many types (struct.error, ...) for bad files
        msg = " ".join(str(e).split())[:200] or e.__class__.__name__
        raise DeviceNetError(f"{where}cannot decode image ({msg})") from None
    return _to_rgb(img, name or "image")


def _to_rgb(img, path):
    try:
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            # 16-bit, 32-bit and float greyscale: scale to 8 bits rather than
            # letting Pillow clip at 255.  Float images are most often scaled
            # 0-1, which Pillow would round to black.
            arr = np.asarray(img, dtype=np.float64)
            arr = np.clip(np.where(np.isfinite(arr), arr, 0.0), 0, None)
            top = arr.max() if arr.size else 0.0
            peak = top if top > 255 else 1.0 if img.mode == "F" and top <= 1.0 else 255.0
            img = Image.fromarray((arr * (255.0 / peak)).round().astype(np.uint8), "L")
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            # Transparent pixels become white, as a viewer would show them.
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        return img.convert("RGB")
    except (OSError, ValueError, MemoryError) as e:
        raise DeviceNetError(f"{path}: cannot convert image to RGB ({' '.join(str(e).split())[:200]})") from None


def limit_aspect(img):
    """Centre-crop the longer side to MAX_ASPECT times the shorter one."""
    w, h = img.size
    if w > MAX_ASPECT * h:
        left = (w - MAX_ASPECT * h) // 2
        return img.crop((left, 0, left + MAX_ASPECT * h, h))
    if h > MAX_ASPECT * w:
        top = (h - MAX_ASPECT * w) // 2
        return img.crop((0, top, w, top + MAX_ASPECT * w))
    return img


def preprocess_bytes(spec):
    """The most memory preprocessing takes for one image: the photo resized
    (Pillow keeps 4 bytes a pixel), at the longest aspect ratio allowed."""
    side = max(spec["resize"], spec["crop"])
    return 4 * side * side * MAX_ASPECT


#: how much larger than the resize target a JPEG is decoded: the DCT-domain
#: downscale of a draft aliases where the antialiased resize does not.  On
#: 140 large photos, drafting to the target changed the float network's
#: top-1 on 18, to twice the target on 5, to three times on 2, to four
#: times on none, still decoding in 70% of a full decode's time
#: (docs/ACCURACY.md, "Decoding")
DRAFT_MARGIN = 4


def draft_size(spec):
    """The smallest size a JPEG may be decoded at: DRAFT_MARGIN times the resize target."""
    side = DRAFT_MARGIN * spec["resize"]
    return (side, side)


def resize_crop(img, spec):
    """Resize the shorter side to ``spec['resize']``, then centre crop ``spec['crop']``."""
    resize, crop = spec["resize"], spec["crop"]
    img = limit_aspect(img)
    w, h = img.size
    if w <= h:
        nw, nh = resize, max(1, int(round(h * resize / w)))
    else:
        nw, nh = max(1, int(round(w * resize / h))), resize
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - crop) // 2, (nh - crop) // 2
    if left < 0 or top < 0:  # resize < crop: pad by resizing up instead
        img = img.resize((max(nw, crop), max(nh, crop)), Image.BILINEAR)
        left, top = (img.width - crop) // 2, (img.height - crop) // 2
    return img.crop((left, top, left + crop, top + crop))


def normalize(pixels, spec, out=None):
    """uint8 HxWx3 -> float32 ``(pixels - mean) / std``."""
    mean = np.asarray(spec["mean"], np.float32)
    inv = np.float32(1.0) / np.asarray(spec["std"], np.float32)
    x = np.subtract(pixels, mean, out=out, dtype=np.float32)
    x *= inv
    if spec.get("channel_order", "RGB") == "BGR":
        x = x[..., ::-1]
    return x


def preprocess(img, spec):
    """An RGB PIL image -> HxWx3 float32 network input."""
    return normalize(np.asarray(resize_crop(img, spec)), spec)


def ten_crops(img, spec):
    """The ten-crop test-time scheme: four corners and the centre, and their mirrors."""
    resize, crop = spec["resize"], spec["crop"]
    img = limit_aspect(img)
    w, h = img.size
    scale = resize / min(w, h)
    img = img.resize((max(crop, int(round(w * scale))), max(crop, int(round(h * scale)))), Image.BILINEAR)
    w, h = img.size
    boxes = [(0, 0), (w - crop, 0), (0, h - crop), (w - crop, h - crop), ((w - crop) // 2, (h - crop) // 2)]
    crops = [np.asarray(img.crop((x, y, x + crop, y + crop))) for x, y in boxes]
    crops += [c[:, ::-1] for c in crops]
    return np.stack([normalize(c, spec) for c in crops])
