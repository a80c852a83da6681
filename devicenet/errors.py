"""The one exception type every user-facing failure raises."""


class DeviceNetError(Exception):
    """A failure the user can act on: a bad file, a bad image, a missing device.

    The message is one line that says what went wrong and, where possible,
    what to do about it.  The command line prints it without a traceback.
    """
