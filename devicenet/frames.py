"""Where live frames come from: a camera or a video file, behind one interface.

A source's ``read()`` returns the next frame as an HxWx3 uint8 RGB array
with its time in seconds, or None at the end (of a file).  PyAV (FFmpeg's
libraries) reads V4L2 cameras and video files; picamera2 reads the
Raspberry Pi camera.  Both are optional: ``classify`` never needs them
(docs/LIVE.md says why these two).
"""

import os
import re
import stat
import time

from .errors import DeviceNetError

INSTALL_AV = ('reading video needs PyAV: pip install av (from a checkout: pip install -e ".[video]"; '
              "on Raspberry Pi OS or Debian: sudo apt install python3-av)")
INSTALL_PICAMERA2 = ("the Raspberry Pi camera needs picamera2: sudo apt install python3-picamera2 "
                     "(in a venv made with --system-site-packages)")


class FrameSource:
    """One camera or video file: ``read()`` -> ``(pixels, seconds)`` or None.

    ``read()`` is ``grab()``, which takes the next frame in whatever form the
    library gives it, then ``rgb()``, which converts it: a reader that drops
    most frames (``watch``) converts only those it uses.
    """

    #: True when frames arrive at the camera's own pace; False for a file,
    #: which the reader paces by the frames' timestamps
    live = True
    name = "frames"

    def grab(self):
        """The next frame, unconverted, and its time: ``(raw, seconds)``, or None at the end."""
        raise NotImplementedError

    def rgb(self, raw):
        """A grabbed frame as an HxWx3 uint8 RGB array."""
        return raw

    def read(self):
        got = self.grab()
        return None if got is None else (self.rgb(got[0]), got[1])

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _av():
    try:
        import av
    except ImportError:
        raise DeviceNetError(INSTALL_AV) from None
    return av


class _PyAVSource(FrameSource):
    """Frames FFmpeg decodes (through PyAV) from a file or a V4L2 device."""

    def __init__(self, name, url, fmt=None, options=None):
        av = _av()
        self.name = name
        self._errors = (av.error.FFmpegError, OSError, ValueError)
        try:
            self._container = av.open(url, format=fmt, options=options or {})
        except self._errors as e:
            raise DeviceNetError(f"{name}: cannot open ({_one_line(e)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise DeviceNetError(f"{name}: has no video stream")
        self._frames = self._container.decode(self._container.streams.video[0])

    def grab(self):
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except self._errors as e:
            raise DeviceNetError(f"{self.name}: cannot read a frame ({_one_line(e)})") from None
        return frame, (float(frame.time) if frame.time is not None else None)

    def rgb(self, frame):
        # FFmpeg's own conversion from the decoder's YUV: 3.6 ms for a 640x480
        # frame here, as long again as decoding it
        return frame.to_ndarray(format="rgb24")

    def close(self):
        self._container.close()


class VideoFile(_PyAVSource):
    """A video file (MP4, MKV, AVI...), paced at its own frame rate."""

    live = False

    def __init__(self, path):
        super().__init__(path, path)


class V4L2Camera(_PyAVSource):
    """A V4L2 device such as /dev/video0 (USB webcams, the Pi camera through
    its V4L2 driver); ``size`` is ``(width, height)``, ``fps`` a rate to ask for."""

    def __init__(self, device, size=None, fps=None):
        options = {}
        if size:
            options["video_size"] = f"{size[0]}x{size[1]}"
        if fps:
            options["framerate"] = str(fps)
        super().__init__(device, device, "v4l2", options)


class PiCamera(FrameSource):
    """The Raspberry Pi camera through picamera2 (libcamera)."""

    def __init__(self, index=0, size=None):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise DeviceNetError(INSTALL_PICAMERA2) from None
        self.name = f"picamera:{index}"
        try:
            self._camera = Picamera2(index)
            # picamera2 names formats by the DRM convention: "BGR888" holds
            # each pixel as R, G, B bytes, the order the network wants.
            main = {"format": "BGR888", "size": tuple(size or (640, 480))}
            self._camera.configure(self._camera.create_video_configuration(main=main))
            self._camera.start()
        except Exception as e:  # libcamera reports a missing or busy camera in many ways
            raise DeviceNetError(f"{self.name}: cannot start the camera ({_one_line(e)})") from None

    def grab(self):
        return self._camera.capture_array("main"), time.monotonic()

    def rgb(self, pixels):
        return pixels[..., :3]

    def close(self):
        self._camera.stop()
        self._camera.close()


def _one_line(e):
    return " ".join(str(e).split())[:200] or type(e).__name__


def parse_size(text):
    """``"640x480"`` -> ``(640, 480)``."""
    m = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", text or "")
    if not m or min(int(m[1]), int(m[2])) < 1:
        raise DeviceNetError(f"a size is WIDTHxHEIGHT, e.g. 640x480, not {text!r}")
    return int(m[1]), int(m[2])


def open_source(spec, size=None, fps=None):
    """Open what the user named: ``picamera`` (or ``picamera:N``), a V4L2
    device (``/dev/video0``, or just ``0``), or a video file."""
    spec = os.fspath(spec)
    m = re.fullmatch(r"picamera(?::(\d+))?", spec)
    if m:
        return PiCamera(int(m[1] or 0), size)
    if spec.isdigit():
        spec = f"/dev/video{spec}"
    try:
        mode = os.stat(spec).st_mode
    except FileNotFoundError:
        raise DeviceNetError(f"{spec}: no such video file or camera") from None
    except (OSError, ValueError) as e:
        raise DeviceNetError(f"{spec}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISCHR(mode):
        return V4L2Camera(spec, size, fps)
    if stat.S_ISREG(mode):
        return VideoFile(spec)
    raise DeviceNetError(f"{spec}: is neither a video file nor a camera device")
