"""The one exception type every user-facing failure raises."""


class DeviceNetError(Exception):
    """A failure the user can act on: a bad file, a bad image, a missing device.

    The message is one line that says what went wrong and, where possible,
    what to do about it.  The command line prints it without a traceback.
    """


#: the command's exit status after Ctrl-C, as a shell reports a command
#: killed by SIGINT (1 means "an input failed")
INTERRUPTED = 130


def warn(msg):
    """Tell the user something is off but the work goes on: one line on
    stderr, ``Warning: ...``, the one format every part of devicenet uses
    (stdout stays clean for ``--json``)."""
    import sys
    print(f"Warning: {msg}", file=sys.stderr, flush=True)
