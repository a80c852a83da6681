"""Which images a command was given (devicenet.inputs): folders by content,
patterns, stdin, and what is skipped and why."""

import io
import os
import shutil
import sys

import pytest
from PIL import Image

from devicenet.errors import DeviceNetError
from devicenet.inputs import STDIN, expand, image_files, looks_like_image, read_stdin
from conftest import data

FORMATS = ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_pillow_writes_is_recognised_by_its_bytes(tmp_path, fmt):
    path = tmp_path / "photo"  # no extension
    Image.new("RGB", (4, 4), (200, 10, 10)).save(path, format=fmt)
    assert looks_like_image(path) is True
    assert image_files(tmp_path).paths == [str(path)]


def test_a_folder_keeps_photos_by_extension_or_content_and_counts_the_rest(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    shutil.copy(data("coffee.png"), tmp_path / "a" / "b" / "z")
    (tmp_path / "a" / "damaged.jpg").write_bytes(b"\xff\xd8 truncated")  # kept: its error is shown later
    (tmp_path / "a" / "readme.md").write_text("# notes")
    (tmp_path / ".hidden" / "x.png").write_bytes(b"")
    (tmp_path / ".dotfile.png").write_bytes(b"")
    (tmp_path / "empty").write_bytes(b"")
    found = image_files(tmp_path)
    assert found.paths == [str(tmp_path / "a" / "damaged.jpg"), str(tmp_path / "a" / "b" / "z")]
    assert sorted(found.skipped) == [(str(tmp_path / "a" / "readme.md"), "not images"),
                                     (str(tmp_path / "empty"), "not images")]
    assert found.summary() == (f"skipped 2 entries in the folders given (not images: 2): {tmp_path / 'empty'}, "
                               f"{tmp_path / 'a' / 'readme.md'}")
    flat = image_files(tmp_path / "a", recursive=False)
    assert flat.paths == [str(tmp_path / "a" / "damaged.jpg")]
    assert (str(tmp_path / "a" / "b"), "sub-folders") in flat.skipped


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_pipe_in_a_folder_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe")  # opening it to read its first bytes would block for ever
    shutil.copy(data("rocket.jpg"), tmp_path / "r.jpg")
    found = image_files(tmp_path)
    assert found.paths == [str(tmp_path / "r.jpg")]
    assert found.skipped == [(str(tmp_path / "pipe"), "not regular files")]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads everything")
def test_an_unreadable_file_is_counted(tmp_path):
    path = tmp_path / "secret"
    shutil.copy(data("rocket.jpg"), path)
    path.chmod(0)
    assert image_files(tmp_path).skipped == [(str(path), "unreadable")]


def test_expand_files_folders_patterns_in_order(tmp_path):
    for name in ("b.png", "a.png", "c.txt"):
        shutil.copy(data("coffee.png"), tmp_path / name)
    (tmp_path / "sub").mkdir()
    shutil.copy(data("rocket.jpg"), tmp_path / "sub" / "r.jpg")
    found = expand([str(tmp_path / "*.png"), str(tmp_path / "sub"), "missing.jpg", STDIN])
    assert found.paths == [str(tmp_path / "a.png"), str(tmp_path / "b.png"), str(tmp_path / "sub" / "r.jpg"),
                           "missing.jpg", STDIN]
    # a pattern matching a folder takes the folder's images
    assert expand([str(tmp_path / "s*")]).paths == [str(tmp_path / "sub" / "r.jpg")]
    # ** reaches any depth; a pattern that matches nothing is kept to be reported
    assert expand([str(tmp_path / "**" / "*.jpg")]).paths == [str(tmp_path / "sub" / "r.jpg")]
    assert expand([str(tmp_path / "*.gif")]).paths == [str(tmp_path / "*.gif")]


def test_a_file_named_like_a_pattern_is_a_file(tmp_path):
    odd = tmp_path / "[1].png"
    shutil.copy(data("coffee.png"), odd)
    shutil.copy(data("coffee.png"), tmp_path / "1.png")
    assert expand([str(odd)]).paths == [str(odd)]


def test_stdin_once_and_only_where_allowed():
    with pytest.raises(DeviceNetError, match="once"):
        expand([STDIN, STDIN])
    with pytest.raises(DeviceNetError, match="cannot be used here"):
        expand([STDIN], stdin_ok=False)


def test_read_stdin_gives_the_bytes_named_dash_and_refuses_nothing_or_a_terminal():
    blob = open(data("rocket.jpg"), "rb").read()
    image = read_stdin(io.BytesIO(blob))
    assert image.read() == blob and image.name == STDIN
    with pytest.raises(DeviceNetError, match="empty"):
        read_stdin(io.BytesIO(b""))

    class Terminal(io.BytesIO):
        def isatty(self):
            return True
    with pytest.raises(DeviceNetError, match="terminal"):
        read_stdin(Terminal(blob))


def test_learn_lists_everything_it_ignores(tmp_path):
    from devicenet.learn import scan
    for cls in ("cat", "cup"):
        (tmp_path / cls / "more").mkdir(parents=True)
        shutil.copy(data("coffee.png"), tmp_path / cls / "1.png")
        shutil.copy(data("coffee.png"), tmp_path / cls / "more" / "2.png")  # one level too deep
    shutil.copy(data("rocket.jpg"), tmp_path / "stray.jpg")
    (tmp_path / "cat" / "labels.csv").write_text("a,b\n")
    (tmp_path / ".devicenet-cache").mkdir()
    ignored = []
    classes, items = scan(tmp_path, ignored)
    assert classes == ["cat", "cup"]
    assert items == [(str(tmp_path / "cat" / "1.png"), 0), (str(tmp_path / "cup" / "1.png"), 1)]
    assert sorted(ignored) == sorted([(str(tmp_path / "stray.jpg"), "files beside the class folders"),
                                      (str(tmp_path / "cat" / "more"), "sub-folders"),
                                      (str(tmp_path / "cup" / "more"), "sub-folders"),
                                      (str(tmp_path / "cat" / "labels.csv"), "not images")])


def test_text_that_starts_like_a_netpbm_header_is_not_an_image(tmp_path):
    (tmp_path / "notes").write_bytes(b"P3rd draft of the plan")
    (tmp_path / "grey").write_bytes(b"P5\n2 2\n255\n\x00\x01\x02\x03")
    assert looks_like_image(tmp_path / "notes") is False and looks_like_image(tmp_path / "grey") is True
