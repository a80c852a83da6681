"""``devicenet watch``: the newest frame is always the one classified, the
labels are those ``classify`` gives for the same frame, and the run ends
(end of file, Ctrl-C) with a summary."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import cli_runner
from devicenet import report
from devicenet.watch import Latencies, Latest, Watch
from test_frames import make_video

PHOTOS = ["coffee.png", "chelsea.png", "rocket.jpg"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model():
    import devicenet
    return devicenet.load(backend="cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """Three seconds at 10 frames a second: ten frames of each photo."""
    return make_video(tmp_path_factory.mktemp("video") / "three.mp4", PHOTOS, fps=10, per_photo=10)


def decoded_frames(path):
    from devicenet.frames import VideoFile
    got, source = [], VideoFile(path)
    with source:
        while (item := source.read()) is not None:
            got.append(item[0])
    return got


def test_latest_slot_keeps_only_the_newest_frame():
    slot = Latest()
    for i in range(3):
        slot.put(i)
    assert slot.take() == 2 and slot.dropped == 2
    slot.put(3)
    slot.close()
    assert slot.take() == 3  # what was put before the close is still taken
    assert slot.take() is None


def test_latest_slot_take_waits_for_a_frame():
    slot = Latest()
    got = []
    reader = threading.Thread(target=lambda: got.append(slot.take()))
    reader.start()
    slot.put("frame")
    reader.join(10)
    assert got == ["frame"] and slot.dropped == 0


def test_a_frame_is_converted_once_however_many_threads_ask():
    from devicenet.watch import Frame
    calls, inside = [], []

    def rgb(raw):  # notes whether another thread was converting at the same time
        inside.append(1)
        calls.append(len(inside))
        time.sleep(0.05)
        inside.pop()
        return np.full((2, 2, 3), raw, np.uint8)
    frame = Frame(7, rgb, 0, 0.0, time.monotonic())
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: frame.pixels, range(8)))
    assert calls == [1]  # once, and alone
    assert all(g is got[0] for g in got) and got[0][0, 0, 0] == 7


def test_latency_percentiles_within_one_percent_of_numpys():
    rng = np.random.default_rng(0)
    samples = rng.lognormal(np.log(40), 0.6, 5000)
    lat = Latencies()
    for s in samples:
        lat.add(s)
    for p in (50, 90, 99):
        want = np.percentile(samples, p, method="inverted_cdf")  # nearest rank, as Latencies
        assert abs(lat.percentile(p) - want) <= 0.01 * want
    assert Latencies().percentile(50) is None


def test_watch_jsonl_labels_match_classify_on_the_same_frame(model, video):
    result = cli_runner().invoke(_main(), ["watch", video, "--jsonl", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    records, summary = lines[:-1], lines[-1]["summary"]
    assert records and all("frame" in r for r in records)
    frames = decoded_frames(video)
    assert summary["frames_grabbed"] == len(frames) == 30
    assert summary["frames_classified"] == len(records)
    assert summary["frames_classified"] + summary["frames_dropped"] + summary["frames_skipped"] == 30
    indices = [r["frame"] for r in records]
    assert indices == sorted(set(indices))
    for r in records:
        want = model.classify(frames[r["frame"]], top=3)
        assert [p["label"] for p in r["predictions"]] == [p.label for p in want.predictions]
        np.testing.assert_allclose([p["probability"] for p in r["predictions"]],
                                   [p.probability for p in want.predictions], atol=1e-5)
        assert r["image"] == video and r["time_s"] == pytest.approx(r["frame"] / 10)
        # a classification as every command reports it, and the frame's own keys
        assert set(r) == set(report.result_json(want)) | {"frame", "time_s", "age_ms", "fps"}
        assert r["latency_ms"]["inference"] > 0 and r["age_ms"] > 0
    # and the frames are the photos: the coffee's are an espresso
    assert all(r["predictions"][0]["label"] == "espresso" for r in records if r["frame"] < 10)
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p90"] <= summary["latency_ms"]["p99"]


def test_watch_text_prints_the_labels_when_they_change_and_a_summary(video):
    result = cli_runner().invoke(_main(), ["watch", video, "--top", "1", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    shown = [line.split()[1] for line in lines[:-1]]
    assert shown[0] == "espresso"
    assert all(a != b for a, b in zip(shown, shown[1:]))  # only changes are printed
    assert len(lines) >= 3 and "frames/s" in lines[0] and " ms" in lines[0]
    assert lines[-1].startswith(f"{video}: 30 frames grabbed") and "p50" in lines[-1] and "p99" in lines[-1]


class Slow:
    """A model whose classify takes ``delay`` seconds more."""

    def __init__(self, model, delay):
        self.model, self.delay = model, delay

    def classify(self, pixels, top):
        time.sleep(self.delay)
        return self.model.classify(pixels, top=top)


def test_a_slow_network_gets_the_newest_frame_and_the_rest_are_dropped(model, video):
    from devicenet.frames import VideoFile
    slow = Slow(model, 0.25)
    source = VideoFile(video)
    grabbed, converted, behind = [], [], []
    grab, rgb = source.grab, source.rgb

    def noting_grab():  # which raw frame is which index
        item = grab()
        if item is not None:
            grabbed.append(item[0])
        return item

    def noting_rgb(raw):  # the frame the network just took: how many were grabbed after it?
        converted.append(next(i for i, r in enumerate(grabbed) if r is raw))
        behind.append(w.grabber.grabbed - 1 - converted[-1])  # (a file's next frame waits for its time)
        return rgb(raw)
    source.grab, source.rgb = noting_grab, noting_rgb
    w = Watch(Slow(model, 0.25), source, top=1)
    results = list(w)
    s = w.summary()
    assert s["frames_grabbed"] == 30 and s["frames_dropped"] > 0
    assert s["frames_classified"] + s["frames_dropped"] == 30
    assert len(results) == s["frames_classified"] < 30
    assert converted == [r.frame.index for r in results]  # only the frames classified were converted
    # The frame the network takes is the newest: none behind it, but for one
    # grabbed in the instant between (a queue would fall further behind with
    # every frame: 2.5 frames arrive while one is classified).
    assert max(behind) <= 2 and behind.count(0) >= 0.75 * len(behind), behind
    gaps = np.diff([r.frame.index for r in results])
    assert gaps.min() >= 1 and gaps.max() > 1


def test_every_n_classifies_every_nth_frame(video):
    result = cli_runner().invoke(_main(), ["watch", video, "--jsonl", "--every", "4", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(r["frame"] % 4 == 0 for r in lines[:-1])
    assert lines[-1]["summary"]["frames_skipped"] == 30 - len(range(0, 30, 4))


def test_fps_caps_the_frames_classified_a_second(video):
    result = cli_runner().invoke(_main(), ["watch", video, "--jsonl", "--fps", "2", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout.splitlines()[-1])["summary"]
    assert 1 <= s["frames_classified"] <= s["seconds"] * 2 + 1


def test_watch_missing_source_is_one_line(tmp_path):
    result = cli_runner().invoke(_main(), ["watch", str(tmp_path / "nothing.mp4")])
    assert result.exit_code == 1 and "nothing.mp4: no such video file or camera" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_in_watch_exits_130_with_the_summary(tmp_path):
    long = make_video(tmp_path / "long.mp4", PHOTOS * 4, fps=10, per_photo=10, size=(320, 240))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "devicenet", "watch", long, "--backend", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stdout.readline()  # the first labels: it is running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert first.split()[1] == "espresso"
    assert "Traceback" not in err and err.rstrip().endswith("Interrupted.")
    summary = out.splitlines()[-1]
    assert summary.startswith(f"{long}: ") and "classified" in summary and "frames grabbed" in summary
    assert int(summary.split(": ")[1].split()[0]) < 120  # cut short


def _main():
    from devicenet.cli import main
    return main
