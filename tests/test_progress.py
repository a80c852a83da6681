"""The one progress display (devicenet.progress): click's bar in place on a
terminal, plain lines elsewhere, nothing with quiet."""

import io

from devicenet.progress import Phases, Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_first_each_tenth_and_last():
    out = io.StringIO()
    with Progress("features", 100, stream=out) as bar:
        for i in range(1, 101):
            bar.update(i, f"/photos/{i}.jpg")
    lines = out.getvalue().splitlines()
    assert lines[0] == "features: 1/100" and lines[-1] == "features: 100/100"
    assert [int(line.split()[1].split("/")[0]) for line in lines] == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert "\r" not in out.getvalue()


def test_plain_lines_wait_when_asked_and_a_quick_job_says_nothing():
    out = io.StringIO()
    bar = Progress("classify", 3, stream=out, plain_after=60)
    for i in range(1, 4):
        bar.update(i)
    bar.close()
    assert out.getvalue() == ""


def test_quiet_says_nothing_anywhere():
    for stream in (io.StringIO(), Terminal()):
        with Progress("learn", 5, quiet=True, stream=stream, delay=0) as bar:
            for i in range(1, 6):
                bar.update(i)
        assert stream.getvalue() == ""


def test_a_terminal_gets_one_line_updated_in_place():
    out = Terminal()
    with Progress("features", 4, stream=out, delay=0) as bar:
        for i in range(1, 5):
            bar.update(i, f"/photos/photo-{i}.jpg")
    text = out.getvalue()
    # click redraws the line with carriage returns and ends it once
    assert text.count("\n") == 1 and text.count("\r") >= 4
    assert "4/4" in text and "photo-4.jpg" in text and "features" in text


def test_the_eta_counts_from_the_start_of_the_job():
    import time
    out = Terminal()
    bar = Progress("features", 100, stream=out, delay=0)
    bar.start -= 30  # the job began 30 s ago; the bar appears now
    bar.update(50)
    # click estimates from its start, in wall-clock time: 30 s for 50 steps
    assert abs(bar._bar.start - (time.time() - 30)) < 5
    bar._bar.last_eta = 0  # let click re-estimate now
    bar._bar.make_step(0)
    assert 20 < bar._bar.eta < 40
    bar.close()


def test_a_terminal_bar_waits_for_the_delay():
    out = Terminal()
    bar = Progress("run", 10, stream=out, delay=60)
    for i in range(1, 11):
        bar.update(i)
    bar.close()
    assert out.getvalue() == ""  # a job done within the delay leaves the terminal as it was


def test_phases_make_one_display_per_phase_and_read_text_counts():
    out = io.StringIO()
    phases = Phases(stream=out)
    for i in range(1, 4):
        phases("warm-up", i, 3)
    for i in range(1, 3):
        phases("run", i, 2)
    phases.message("calibrating on 12 built-in photo variants")
    phases.message("  measured 10/20 layers")
    phases.message("  measured 20/20 layers")
    phases.close()
    assert out.getvalue().splitlines() == ["warm-up: 1/3", "warm-up: 2/3", "warm-up: 3/3", "run: 1/2", "run: 2/2",
                                           "calibrating on 12 built-in photo variants",
                                           "measured layers: 10/20", "measured layers: 20/20"]


def devicenet_under_a_terminal(tmp_path, *args):
    """Run ``python -m devicenet ARGS`` with stderr on a pseudo-terminal;
    return (status, what the terminal showed)."""
    import os
    import pty
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), COLUMNS="100")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "devicenet", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=follower, env=env, cwd=tmp_path)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the command closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return proc.wait(timeout=300), shown.decode(errors="replace")


def test_features_on_a_terminal_draws_one_bar_in_place(tmp_path):
    import shutil
    import sys
    if sys.platform == "win32":
        import pytest
        pytest.skip("pseudo-terminals")
    from conftest import data
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        shutil.copy(data("coffee.png"), photos / f"{i:02d}.png")
    status, shown = devicenet_under_a_terminal(tmp_path, "features", photos, "-o", tmp_path / "f.npy")
    assert status == 0, shown
    bar = [part for part in shown.replace("\r\n", "\n").split("\n") if "features " in part and "[" in part]
    assert len(bar) == 1 and "\r" in bar[0] and "40/40" in bar[0], shown  # redrawn in place, then ended once
    assert "features: 1/40" not in shown  # no plain lines on a terminal
    status, shown = devicenet_under_a_terminal(tmp_path, "features", "-q", photos, "-o", tmp_path / "f.npy")
    assert status == 0 and "[" not in shown and shown.strip().startswith("wrote")
