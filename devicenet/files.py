"""Opening the files a user names: regular files only.

A named pipe with no writer blocks a reader forever, a device can stream
without end and a directory cannot be read at all, so anything that is not
a regular file is refused, in one line, before it is read.
"""

import os
import stat

from .errors import DeviceNetError

_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]


def _check(path, mode, what):
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "something other than a file")
        raise DeviceNetError(f"{path}: is {kind}, not {'an' if what[0] in 'aeiou' else 'a'} {what}")


def open_regular(path, what="file"):
    """Open ``path`` for binary reading if it is a regular file; otherwise
    (missing, a pipe, a device, a directory, unreadable) raise DeviceNetError.
    ``what`` names the file expected, for the messages ("model file")."""
    path = os.fspath(path)
    try:
        _check(path, os.stat(path).st_mode, what)
        # Not blocking on open: a regular file swapped for a pipe between
        # the check and the open must not hang it either (checked again below).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DeviceNetError(f"{path}: no such {what}") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise DeviceNetError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    try:
        _check(path, os.fstat(fd).st_mode, what)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
