"""Ctrl-C: the command exits with status 130 and one line, never a
traceback, and keeps what it had done (docs/RELIABILITY.md)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")


def devicenet(*args, **kw):
    """Start ``python -m devicenet ARGS`` (the command's entry point) from this checkout."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "devicenet", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def interrupt_after(proc, line_starts, stream="stderr", timeout=120):
    """Send SIGINT once ``stream`` shows a line starting with ``line_starts``;
    return (status, stdout, stderr)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = getattr(proc, stream).readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(line_starts):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=timeout)
    before = "".join(seen)
    return (proc.returncode, before + out, err) if stream == "stdout" else (proc.returncode, out, before + err)


def test_ctrl_c_during_start_up_imports_exits_130_without_traceback():
    # SIGINT arrives while numpy is being imported, before any devicenet code has run.
    code = ("import builtins, os, signal, sys\n"
            "real = builtins.__import__\n"
            "def imp(name, *a, **k):\n"
            "    if name == 'numpy':\n"
            "        builtins.__import__ = real\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = imp\n"
            "sys.argv = ['devicenet', 'info']\n"
            "from devicenet.__main__ import main\n"
            "main()\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip() == "Interrupted."


def test_ctrl_c_during_classify_json_prints_what_was_classified(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    photos = [bad] + [data("coffee.png")] * 300
    code, out, err = interrupt_after(devicenet("classify", "--json", "--top", "1", *photos), "Error:")
    assert code == 130, err
    assert "Traceback" not in err and "Aborted" not in err and err.rstrip().endswith("Interrupted.")
    doc = json.loads(out)  # the JSON document is complete, and says it was cut short
    assert doc["interrupted"] is True
    results = doc["results"]
    assert results[0]["image"] == str(bad) and "error" in results[0]
    assert 1 <= len(results) < len(photos)
    assert all(r["predictions"][0]["label"] == "espresso" for r in results[1:])


def test_ctrl_c_during_plain_classify_exits_130(tmp_path):
    code, out, err = interrupt_after(devicenet("classify", *[data("coffee.png")] * 300), "  latency", "stdout")
    assert code == 130 and "Traceback" not in err and err.strip() == "Interrupted."
    assert 1 <= out.count("espresso") < 300


def noise_photos(folder, n, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)).save(folder / f"{i}.png")


def test_ctrl_c_during_learn_keeps_the_features_computed(tmp_path):
    dataset = tmp_path / "photos"
    noise_photos(dataset / "a", 40, 1)
    noise_photos(dataset / "b", 40, 2)
    out = tmp_path / "mine.dnet"
    code, _, err = interrupt_after(devicenet("learn", dataset, "-o", out), "features: 1/")
    assert code == 130 and "Traceback" not in err, err
    assert not out.exists()
    caches = list((dataset / ".devicenet-cache").glob("features-*.npz"))
    assert len(caches) == 1
    with np.load(caches[0]) as z:
        kept = len(z["keys_centre"])
    assert 1 <= kept < 80
    # the re-run computes only what the first run had not
    done = devicenet("learn", dataset, "-o", out, "--json")
    stdout, stderr = done.communicate(timeout=600)
    assert done.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["features_reused"] == kept and report["features_computed"] == 80 - kept


def test_ctrl_c_during_features_keeps_the_rows_computed(tmp_path):
    noise_photos(tmp_path / "p", 60, 3)
    photos = sorted((tmp_path / "p").glob("*.png"))
    out = tmp_path / "f.npy"
    code, _, err = interrupt_after(devicenet("features", *photos, "-o", out), "features: 1/")
    assert code == 130 and "Traceback" not in err, err
    rows = np.load(out)
    assert 1 <= len(rows) < len(photos) and f"first {len(rows)} of {len(photos)} rows" in err
