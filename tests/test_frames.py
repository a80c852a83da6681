"""Frame sources: video files decoded by PyAV, V4L2 devices and the Pi
camera behind the same interface, and one-line errors for what is missing."""

import sys
import types

import numpy as np
import pytest
from PIL import Image

from conftest import data
from devicenet.errors import DeviceNetError
from devicenet import frames


def make_video(path, photos, fps=10, per_photo=10, size=(640, 480)):
    """Write an MPEG-4 video of ``per_photo`` frames of each photo (in tests/data), resized to ``size``."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.bit_rate = 8_000_000  # near-lossless: the labels stay the photos'
        for photo in photos:
            pixels = np.asarray(Image.open(data(photo)).convert("RGB").resize(size, Image.BILINEAR))
            for _ in range(per_photo):
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


def read_all(source):
    got = []
    with source:
        while True:
            item = source.read()
            if item is None:
                return got
            got.append(item)


def test_video_file_gives_every_frame_as_rgb_with_its_time(tmp_path):
    path = make_video(tmp_path / "v.mp4", ["coffee.png", "chelsea.png"], fps=10, per_photo=5, size=(320, 240))
    source = frames.open_source(path)
    assert isinstance(source, frames.VideoFile) and not source.live
    got = read_all(source)
    assert len(got) == 10
    assert [round(t, 3) for _, t in got] == [i / 10 for i in range(10)]
    pixels = got[0][0]
    assert pixels.shape == (240, 320, 3) and pixels.dtype == np.uint8
    # RGB, not BGR: close to the photo the frames were made of
    want = np.asarray(Image.open(data("coffee.png")).convert("RGB").resize((320, 240)), np.float32)
    assert np.abs(pixels.astype(np.float32) - want).mean() < 8
    assert np.abs(pixels[..., ::-1].astype(np.float32) - want).mean() > 12


def test_missing_source_and_a_file_that_is_no_video_are_one_line_errors(tmp_path):
    pytest.importorskip("av")
    with pytest.raises(DeviceNetError, match="no such video file or camera"):
        frames.open_source(tmp_path / "absent.mp4")
    with pytest.raises(DeviceNetError, match=r"/dev/video97: no such video file or camera"):
        frames.open_source("97")  # a bare number is a V4L2 device's
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 10)
    with pytest.raises(DeviceNetError, match="notes.mp4: (cannot open|has no video stream)"):
        frames.open_source(text)
    with pytest.raises(DeviceNetError, match="neither a video file nor a camera"):
        frames.open_source(tmp_path)


def test_without_pyav_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0" * 100)
    with pytest.raises(DeviceNetError) as e:
        frames.open_source(video)
    assert "pip install av" in str(e.value) and "python3-av" in str(e.value) and ".[video]" in str(e.value)


def test_v4l2_device_is_opened_through_ffmpegs_v4l2_input(monkeypatch):
    av = pytest.importorskip("av")
    calls = []

    def fake_open(url, format=None, options=None):
        calls.append((url, format, options))
        raise av.error.FileNotFoundError(2, "No such file or directory", url)
    monkeypatch.setattr(av, "open", fake_open)
    with pytest.raises(DeviceNetError, match="/dev/video0: cannot open"):
        frames.V4L2Camera("/dev/video0", size=(640, 480), fps=15)
    assert calls == [("/dev/video0", "v4l2", {"video_size": "640x480", "framerate": "15"})]


def test_character_device_is_taken_for_a_camera(monkeypatch):
    opened = []
    monkeypatch.setattr(frames, "V4L2Camera", lambda *a: opened.append(a) or "camera")
    assert frames.open_source("/dev/null", (320, 240)) == "camera"  # /dev/null: a character device
    assert opened == [("/dev/null", (320, 240), None)]


class FakePicamera2:
    """What picamera2's Picamera2 does for us: configure, start, capture_array."""

    instances = []

    def __init__(self, index):
        self.index, self.config, self.started, self.closed = index, None, False, False
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main):
        return {"main": main}

    def configure(self, config):
        self.config = config

    def start(self):
        self.started = True

    def capture_array(self, name):
        # "BGR888" in picamera2's naming is R, G, B bytes per pixel
        w, h = self.config["main"]["size"]
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[..., 0] = 200
        return pixels

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


def test_pi_camera_through_picamera2(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    source = frames.open_source("picamera:1", (320, 240))
    cam = FakePicamera2.instances[-1]
    assert source.live and source.name == "picamera:1" and cam.index == 1 and cam.started
    assert cam.config["main"] == {"format": "BGR888", "size": (320, 240)}
    pixels, t = source.read()
    assert pixels.shape == (240, 320, 3) and pixels[0, 0].tolist() == [200, 0, 0] and t > 0
    source.close()
    assert cam.closed


def test_pi_camera_without_picamera2_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(DeviceNetError, match="sudo apt install python3-picamera2"):
        frames.open_source("picamera")


@pytest.mark.parametrize("text, want", [("640x480", (640, 480)), (" 1280 X 720 ", (1280, 720))])
def test_parse_size(text, want):
    assert frames.parse_size(text) == want


@pytest.mark.parametrize("text", ["640", "0x480", "axb", "640x480x3", ""])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(DeviceNetError, match="WIDTHxHEIGHT"):
        frames.parse_size(text)
