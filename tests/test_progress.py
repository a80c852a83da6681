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
