"""Hostile and unusual images, generated here with Pillow from the test photos.

Each one is either classified (and, where it shows the same picture as a
test photo, classified the same way) or refused with one line of
DeviceNetError; the command line keeps going through a batch and exits 1.
"""

import io
import json
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

import devicenet
from devicenet import DeviceNetError
from devicenet.cli import main
from devicenet.image import open_image
from conftest import data
from conftest import cli_runner as runner


@pytest.fixture(scope="module")
def model():
    return devicenet.load(backend="cpu")


@pytest.fixture(scope="module")
def coffee():
    return Image.open(data("coffee.png")).convert("RGB")


@pytest.fixture(scope="module")
def coffee_label(model):
    return model.classify(data("coffee.png")).predictions[0].label


def png_bomb(path, side=30000):
    """A 1-bit side x side PNG of zeros: about 110 KB on disk, 900 MB once decoded."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    z = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed pixels
    idat = b"".join(z.compress(row * 1000) for _ in range(side // 1000)) + z.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def save(img, path, **kw):
    img.save(path, **kw)
    return path


def truncated(src, path, fraction=0.5):
    with open(src, "rb") as f:
        blob = f.read()
    path.write_bytes(blob[:int(len(blob) * fraction)])
    return path


# name -> (builder(tmp_path, coffee image) -> path, expectation)
# expectation: "same" (top label is coffee's), "grey" (top label of coffee in
# greyscale), "classified" or a regex of the refusal
def corpus():
    def grey16(tmp, c):
        arr = np.asarray(c.convert("L"), np.uint16) * 257
        im = Image.fromarray(arr)
        assert im.mode.startswith("I")
        return save(im, tmp / "grey16.png")

    def float_tiff(tmp, c):
        # greyscale as 32-bit floats scaled 0-1, as scientific and HDR tools write it
        im = Image.fromarray(np.asarray(c.convert("L"), np.float32) / 255.0, "F")
        return save(im, tmp / "grey-float.tif")

    def palette(tmp, c):
        p = c.quantize(256)
        p.info["transparency"] = 0
        return save(p, tmp / "palette.png", transparency=0)

    def rgba(tmp, c):
        im = c.copy()
        im.putalpha(255)
        return save(im, tmp / "rgba.png")

    def animated(tmp, c):
        frames = [c, Image.open(data("rocket.jpg")).convert("RGB").resize(c.size)]
        return save(frames[0], tmp / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)

    return {
        "zero-byte": (lambda tmp, c: save_bytes(tmp / "empty.jpg", b""), "not an image"),
        "text named .jpg": (lambda tmp, c: save_bytes(tmp / "notes.jpg", b"hello\n" * 50), "not an image"),
        "truncated jpeg": (lambda tmp, c: truncated(data("rocket.jpg"), tmp / "cut.jpg"), "cannot decode"),
        "truncated png": (lambda tmp, c: truncated(data("coffee.png"), tmp / "cut.png"), "cannot decode"),
        "cmyk jpeg": (lambda tmp, c: save(c.convert("CMYK"), tmp / "cmyk.jpg", quality=95), "same"),
        "16-bit png": (grey16, "grey"),
        "float tiff scaled 0-1": (float_tiff, "grey"),
        "palette png with transparency": (palette, "same"),
        "la png": (lambda tmp, c: save(c.convert("LA"), tmp / "la.png"), "grey"),
        "rgba png": (rgba, "same"),
        "1-bit png": (lambda tmp, c: save(c.convert("1"), tmp / "bits.png"), "classified"),
        "animated gif": (animated, "same"),
        "1x1 image": (lambda tmp, c: save(c.resize((1, 1)), tmp / "dot.png"), "classified"),
        "1x5000 strip": (lambda tmp, c: save(c.resize((1, 5000)), tmp / "strip.png"), "classified"),
        "directory": (lambda tmp, c: tmp, "is a directory"),
        "character device": (lambda tmp, c: "/dev/null", "is a character device, not an image file"),
        "missing file": (lambda tmp, c: tmp / "nope.jpg", "no such image file"),
    }


def save_bytes(path, blob):
    path.write_bytes(blob)
    return path


CORPUS = corpus()


@pytest.mark.parametrize("case", list(CORPUS))
def test_every_image_is_classified_or_refused_in_one_line(tmp_path, model, coffee, coffee_label, case):
    build, expect = CORPUS[case]
    path = build(tmp_path, coffee)
    if expect in ("same", "grey", "classified"):
        res = model.classify(path)
        probs = [p.probability for p in res.predictions]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        if expect == "same":
            assert res.predictions[0].label == coffee_label
        if expect == "grey":
            grey = model.classify(coffee.convert("L").convert("RGB"))
            assert [p.label for p in res.predictions[:1]] == [grey.predictions[0].label]
    else:
        with pytest.raises(DeviceNetError, match=expect) as info:
            model.classify(path)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", [c for c in CORPUS if CORPUS[c][1] not in
                                  ("is a directory", "is a character device, not an image file", "no such image file")])
def test_bytes_and_file_objects_decode_as_the_file_does(tmp_path, model, coffee, case):
    # An upload (serve) and stdin (classify -) are decoded by the same code
    # as a file: the same pixels, or the same error without the path.
    build, expect = CORPUS[case]
    path = str(build(tmp_path, coffee))
    blob = open(path, "rb").read()
    named = io.BytesIO(blob)
    named.name = "-"
    try:
        want = np.asarray(open_image(path, (448, 448)))
    except DeviceNetError as e:
        assert str(e).startswith(f"{path}: ")
        message = str(e)[len(path) + 2:]
        for image, prefix in ((blob, ""), (bytearray(blob), ""), (named, "-: ")):
            with pytest.raises(DeviceNetError) as info:
                open_image(image, (448, 448))
            assert str(info.value) == prefix + message
        return
    for image in (blob, memoryview(blob), named):
        np.testing.assert_array_equal(np.asarray(open_image(image, (448, 448))), want)
    res = model.classify(named)
    assert res.image == "-" and res.predictions == model.classify(path).predictions
    assert model.classify(blob).image is None


def test_a_bomb_in_bytes_is_refused_before_decoding(tmp_path):
    blob = png_bomb(tmp_path / "bomb.png").read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(DeviceNetError, match="^(?:[0-9x]+ pixels is over the 64 megapixel limit|"
                                                 "image is too large)") as info:
            open_image(blob)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # the 900 MB of pixels were never allocated


def test_exif_rotated_photo_is_classified_upright(tmp_path, model, coffee):
    """Stored sideways with EXIF orientation 6 ("rotate 90 clockwise to view")."""
    upright = save(coffee, tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = save(coffee.transpose(Image.Transpose.ROTATE_90), tmp_path / "sideways.jpg",
                    quality=95, exif=exif.tobytes())
    a = np.asarray(open_image(upright), np.float32)
    b = np.asarray(open_image(sideways), np.float32)
    assert a.shape == b.shape and np.abs(a - b).mean() < 3  # same picture, up to JPEG noise
    p_up = model.classify(upright).predictions
    p_side = model.classify(sideways).predictions
    assert p_side[0].label == p_up[0].label
    assert p_side[0].probability == pytest.approx(p_up[0].probability, abs=0.05)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = png_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(DeviceNetError, match="megapixel|too large") as info:
            open_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value)
    assert peak < 16 << 20  # the 900 MB of pixels were never allocated


def test_cli_batch_keeps_going_and_exits_nonzero(tmp_path, coffee):
    bad = save_bytes(tmp_path / "bad.jpg", b"\xff\xd8\xff\xe0 not much of a JPEG")
    bomb = png_bomb(tmp_path / "bomb.png")
    # (--quiet: on a slow machine the progress display would print lines of its own)
    args = ["classify", "--json", "--quiet", data("coffee.png"), str(bad), str(tmp_path), str(bomb),
            data("rocket.jpg")]
    r = runner().invoke(main, args)
    assert r.exit_code == 1 and "Traceback" not in r.output
    doc = json.loads(r.stdout)
    # the folder holds bad.jpg and bomb.png: each is reported twice, as named and as found in it
    assert [("error" in res) for res in doc["results"]] == [False, True, True, True, True, False]
    errors = [line for line in r.stderr.splitlines() if line]
    assert len(errors) == 4 and all(line.startswith("Error: ") for line in errors)
