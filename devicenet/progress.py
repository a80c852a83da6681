"""The progress display of every long command, on stderr.

On a terminal it is click's progress bar, updated in place with the count
and an ETA, shown only once a job has run for ``delay`` seconds so quick
runs stay quiet.  Anywhere else (a log file, a pipe, CI) a bar drawn with
carriage returns is noise, so it becomes plain lines: the first step, one
line per tenth of the job or per ``every`` seconds, and the last step;
with ``plain_after``, none until the job has run that long (a job that
ends sooner says nothing).  ``quiet`` shows nothing.  stdout is never touched, so ``--json`` stays clean.
"""

import os
import re
import sys
import time

import click

#: label width on a terminal, so that the bar does not jump between phases
LABEL = 10
#: the current item's name is cut to this many characters on a terminal
ITEM = 24


def isatty(stream):
    """Whether ``stream`` is a terminal (False for anything that cannot say)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """One job of ``total`` steps.  ``update(done, item)`` says how far it is
    (``item``: what it is working on, e.g. a path); ``close()`` ends the line.
    A context manager."""

    def __init__(self, label, total, quiet=False, stream=None, delay=0.5, every=30.0, tty=None, plain_after=0.0):
        self.label, self.total, self.quiet = label, max(0, int(total)), quiet
        self.stream = stream or sys.stderr
        self.tty = isatty(self.stream) if tty is None else tty
        self.delay, self.every, self.plain_after = delay, every, plain_after
        self.start = time.monotonic()
        self.done, self._bar, self._last_line, self._tenth = 0, None, None, -1

    def update(self, done, item=None):
        self.done = done = min(int(done), self.total)
        if self.quiet or not self.total:
            return
        if self.tty:
            self._draw(done, item)
        else:
            self._line(done)

    def _draw(self, done, item):
        if self._bar is None:
            if time.monotonic() - self.start < self.delay:
                return
            self._bar = click.progressbar(length=self.total, label=self.label.ljust(LABEL), file=self.stream,
                                          show_pos=True, show_eta=True, width=20,
                                          item_show_func=lambda it: _short(it))
            self._bar.__enter__()
            # The ETA counts from the job's start, not the bar's (click keeps wall-clock time).
            self._bar.start = time.time() - (time.monotonic() - self.start)
        self._bar.update(done - self._bar.pos, item)

    def _line(self, done):
        now = time.monotonic()
        if self._last_line is None and now - self.start < self.plain_after:
            return
        tenth = done * 10 // self.total
        due = (self._last_line is None or done == self.total or tenth > self._tenth
               or now - self._last_line >= self.every)
        if not due:
            return
        self._last_line, self._tenth = now, tenth
        elapsed = now - self.start
        eta = f", about {_duration(elapsed * (self.total - done) / done)} left" if 0 < done < self.total \
            and elapsed >= 1 else ""
        self.stream.write(f"{self.label}: {done}/{self.total}{eta}\n")
        self.stream.flush()

    def close(self):
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Phases:
    """A progress callback for library functions that report steps of named
    phases: ``phases(phase, done, total, item=None)``, one ``Progress`` per
    phase.  ``message(text)`` takes the older text callbacks ("measured
    10/40 layers"): a count in the text drives a bar, other text is a line."""

    def __init__(self, quiet=False, stream=None, **options):
        self.quiet, self.stream, self.options = quiet, stream or sys.stderr, options
        self.current = None

    def __call__(self, phase, done, total, item=None):
        if self.current is None or self.current.label != phase or self.current.total != total:
            self.close()
            self.current = Progress(phase, total, self.quiet, self.stream, **self.options)
        self.current.update(done, item)
        if done >= total:
            self.close()

    def message(self, text):
        m = re.search(r"(\d+)/(\d+)", text)
        if m:
            phase = " ".join((text[:m.start()] + text[m.end():]).split())
            return self(phase, int(m.group(1)), int(m.group(2)))
        self.close()
        if not self.quiet:
            self.stream.write(text.strip() + "\n")
            self.stream.flush()

    def close(self):
        if self.current is not None:
            self.current.close()
            self.current = None


def _short(item):
    if item is None:
        return None
    name = os.path.basename(os.fspath(item)) if isinstance(item, (str, os.PathLike)) else str(item)
    return name if len(name) <= ITEM else name[:ITEM - 3] + "..."


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
