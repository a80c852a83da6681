"""Backends: where a graph runs.  ``create`` picks one by name, with fallback."""

import sys

from ..errors import DeviceNetError

NAMES = ("cpu", "opencl")


def warn(msg):
    print(f"devicenet: warning: {msg}", file=sys.stderr)


def create(graph, name="cpu", threads=None, residency="resident", device=None, fallback=True):
    """Create the backend ``name`` for ``graph``.

    ``auto`` tries OpenCL and quietly takes the CPU when it is not there.
    When OpenCL was chosen (by a port profile) but cannot be used, a one-line
    warning goes to stderr and the CPU backend is returned; when the user
    asked for it explicitly (``fallback=False``) the failure is a
    DeviceNetError.
    """
    if name not in NAMES + ("auto",):
        raise DeviceNetError(f"unknown backend {name!r}; use cpu, opencl or auto")
    if name in ("opencl", "auto"):
        try:
            from .opencl import OpenCLBackend
            # A device failure during a run falls back too, unless the user
            # asked for OpenCL explicitly.
            return OpenCLBackend(graph, threads=threads, residency=residency, device=device,
                                 fallback=name == "auto" or fallback)
        except ImportError:
            reason = 'pyopencl is not installed (pip install pyopencl, or from a checkout: pip install -e ".[opencl]")'
        except DeviceNetError as e:
            reason = str(e)
        if name == "opencl" and not fallback:
            raise DeviceNetError(f"OpenCL backend unavailable: {reason}")
        if name == "opencl":
            warn(f"OpenCL unavailable, using the CPU backend: {reason}")
    from .cpu import CPUBackend
    return CPUBackend(graph, threads=threads, residency=residency)
