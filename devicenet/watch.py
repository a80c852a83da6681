"""Classifying a camera or a video continuously, always on the newest frame.

One thread grabs frames into a one-frame slot; the caller's thread takes
the newest frame from it and runs the network (whose backend has threads
of its own).  A frame that is replaced before it was taken is dropped,
never queued: a result is always about what the camera sees now, not
about a backlog.  A video file is read at its own frame rate, as a camera
would deliver it.
"""

from collections import deque
from dataclasses import dataclass
import math
import threading
import time

import numpy as np

from .errors import DeviceNetError
from .threads import working_alongside


def frame_latency(res):
    """A frame's latency in ms: from its pixels to its labels, without the
    one-time setup the first frame pays."""
    return res.latency_ms["total"] - res.latency_ms.get("setup", 0.0)


class Frame:
    """One grabbed frame; its pixels are converted to RGB when first asked for."""

    __slots__ = ("index", "time_s", "grabbed", "_raw", "_rgb", "_pixels", "_lock")

    def __init__(self, raw, rgb, index, time_s, grabbed):
        self._raw, self._rgb, self._pixels = raw, rgb, None
        self._lock = threading.Lock()
        #: counted from the source's first frame
        self.index = index
        #: seconds from the source's first frame, by the source's clock (a
        #: file's timestamps, a camera's); None where it has none
        self.time_s = time_s
        #: time.monotonic() when it was grabbed
        self.grabbed = grabbed

    @property
    def pixels(self):
        """HxWx3 uint8 RGB."""
        # Once, under a lock: the network and serve's live view may ask at
        # the same moment, and PyAV's converter of one frame is not safe to
        # run on two threads at once (it crashed the process).
        with self._lock:
            if self._pixels is None:
                self._pixels = self._rgb(self._raw)
            return self._pixels


class Latest:
    """A one-frame slot: ``put`` replaces, ``take`` waits for the newest."""

    def __init__(self):
        self._cond = threading.Condition()
        self._frame = None
        self._closed = False
        #: frames replaced before anyone took them
        self.dropped = 0

    def put(self, frame):
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def take(self):
        """The newest frame not yet taken; None once closed and empty."""
        with self._cond:
            while self._frame is None and not self._closed:
                self._cond.wait(0.5)  # in steps: Ctrl-C stays prompt
            frame, self._frame = self._frame, None
            return frame

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self):
        """Drop the frame waiting, if any (at the end of a run)."""
        with self._cond:
            if self._frame is not None:
                self._frame = None
                self.dropped += 1


class Grabber(threading.Thread):
    """Reads ``source`` into ``slot`` until it ends or ``stop()``; owns the
    source and closes it.  Every ``every``-th frame goes to the slot."""

    def __init__(self, source, slot, every=1):
        super().__init__(name=f"grab {source.name}", daemon=True)
        self.source, self.slot, self.every = source, slot, every
        self.grabbed = self.skipped = 0
        self.newest = None
        self.error = None
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()

    def run(self):
        start = first = None
        try:
            while not self._halt.is_set():
                with working_alongside():  # the network's kernels leave the decoder a core meanwhile
                    got = self.source.grab()
                if got is None:
                    break
                raw, t = got
                if t is not None:
                    # seconds from the first frame (a camera's clock starts anywhere)
                    first = t if first is None else first
                    t -= first
                if not self.source.live and t is not None:
                    # A file plays at its own rate; behind it (a slow
                    # decoder), frames follow at once.
                    now = time.monotonic()
                    start = now - t if start is None else start
                    if start + t > now and self._halt.wait(start + t - now):
                        break
                frame = Frame(raw, self.source.rgb, self.grabbed, t, time.monotonic())
                self.grabbed += 1
                self.newest = frame
                if frame.index % self.every:
                    self.skipped += 1
                else:
                    self.slot.put(frame)
        except DeviceNetError as e:
            self.error = e
        except Exception as e:  # a camera unplugged mid-run: report it, never hang the reader
            self.error = DeviceNetError(f"{self.source.name}: {type(e).__name__}: {e}")
        finally:
            self.slot.close()
            self.source.close()


class Latencies:
    """Latency percentiles in fixed memory, however long the run: counts in
    buckets 1% wide from 0.01 ms to 1000 s."""

    LOW, RATIO, BUCKETS = 0.01, 1.01, 1852

    def __init__(self):
        self.counts = np.zeros(self.BUCKETS, np.int64)
        self.count = 0

    def add(self, ms):
        i = int(math.log(max(ms, self.LOW) / self.LOW, self.RATIO))
        self.counts[min(i, self.BUCKETS - 1)] += 1
        self.count += 1

    def percentile(self, p):
        """The p-th percentile (0-100) within 1%; None before any sample."""
        if not self.count:
            return None
        i = int(np.searchsorted(np.cumsum(self.counts), math.ceil(p / 100 * self.count)))
        return self.LOW * self.RATIO ** (i + 0.5)


@dataclass
class Result:
    frame: Frame
    classification: object
    #: from grabbing the frame to its result, in ms
    age_ms: float
    #: frames classified a second, over the last two seconds
    fps: float


class Watch:
    """Iterate to classify ``source`` (a frames.FrameSource) continuously.

    Yields a Result for each classified frame until the source ends (a
    file) or ``close()``.  ``every`` classifies every N-th frame only;
    ``fps`` classifies at most that many frames a second.
    """

    def __init__(self, model, source, top=3, every=1, fps=None):
        self.model, self.source, self.top, self.fps = model, source, top, fps
        self.slot = Latest()
        self.grabber = Grabber(source, self.slot, every)
        self.latencies = Latencies()
        self.classified = 0
        self.started = self.finished = None
        self._recent = deque(maxlen=120)

    def __iter__(self):
        self.started = time.monotonic()
        self.grabber.start()
        last_start = None
        try:
            while True:
                if self.fps and last_start is not None:
                    time.sleep(max(0.0, last_start + 1 / self.fps - time.monotonic()))
                frame = self.slot.take()
                if frame is None:
                    break
                last_start = time.monotonic()
                t0 = time.perf_counter()
                pixels = frame.pixels
                convert_ms = (time.perf_counter() - t0) * 1e3
                res = self.model.classify(pixels, top=self.top)
                # Converting the frame to RGB is part of decoding it.
                res.latency_ms["decode"] += convert_ms
                res.latency_ms["total"] += convert_ms
                done = time.monotonic()
                self.classified += 1
                self.latencies.add(frame_latency(res))
                self._recent.append(done)
                yield Result(frame, res, (done - frame.grabbed) * 1e3, self.current_fps())
            if self.grabber.error:
                raise self.grabber.error
        finally:
            self.close()

    def current_fps(self):
        recent = [t for t in self._recent if t >= self._recent[-1] - 2.0]
        return (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0

    def close(self):
        """Stop grabbing (idempotent)."""
        if self.finished is None:
            self.finished = time.monotonic()
        self.grabber.stop()
        if self.grabber.is_alive():
            self.grabber.join(timeout=2.0)  # a camera read in progress ends within a frame
        self.slot.discard()

    def summary(self, interrupted=False):
        """Counts, rate and latency percentiles of the run so far."""
        end = self.finished or time.monotonic()
        seconds = end - self.started if self.started else 0.0
        pct = {f"p{p}": self.latencies.percentile(p) for p in (50, 90, 99)}
        doc = {"source": self.source.name, "frames_grabbed": self.grabber.grabbed,
               "frames_classified": self.classified, "frames_dropped": self.slot.dropped,
               "frames_skipped": self.grabber.skipped, "seconds": round(seconds, 3),
               "fps": round(self.classified / seconds, 3) if seconds > 0 else 0.0,
               "latency_ms": {k: None if v is None else round(v, 3) for k, v in pct.items()}}
        if interrupted:
            doc["interrupted"] = True
        return doc
