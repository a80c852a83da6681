"""Backends: where a graph runs.  ``create`` picks one by name, with fallback;
``auto_choice`` is how ``auto`` picks."""

from ..errors import DeviceNetError, warn

NAMES = ("cpu", "opencl")
OPENCL_MISSING = 'pyopencl is not installed (pip install pyopencl, or from a checkout: pip install -e ".[opencl]")'


def is_cpu_device(entry):
    """Whether an OpenCL device (an entry of ``opencl.list_devices``) is the
    host CPU itself, as pocl's CPU device is (type ``ALL | CPU``)."""
    return "CPU" in [part.strip() for part in entry["type"].split("|")]


def auto_choice(found):
    """Which OpenCL device ``--backend auto`` takes from ``found`` (entries of
    ``opencl.list_devices``): ``(entry or None, reason)``.

    A GPU first, then an accelerator; never a device that is the CPU: an
    OpenCL driver on the CPU (pocl, Debian's pocl-opencl-icd) runs the same
    cores as the CPU backend, through a less specialised compiler, and was
    measured over 20x slower on EfficientNet-Lite0.  None: the CPU backend.
    """
    if not found:
        return None, "no OpenCL device"
    for kind, why in (("GPU", "the first GPU"), ("ACCELERATOR", "the first accelerator (no GPU)")):
        for entry in found:
            if not is_cpu_device(entry) and kind in entry["type"]:
                return entry, why
    names = ", ".join(e["device"] for e in found)
    return None, (f"no GPU: {names} {'is' if len(found) == 1 else 'are'} the CPU itself, "
                  "where the CPU backend is faster")


def _auto_device(device):
    """The index of the OpenCL device ``auto`` takes (``device``: the user's
    choice, an index or part of a name), or None for the CPU backend."""
    try:
        from . import opencl
        found = opencl.list_devices()
        if device not in (None, ""):
            platform, dev = opencl.pick_device(device)
            found = [e for e, (_, d) in zip(found, opencl.devices()) if d == dev]
    except ImportError:
        return None
    except DeviceNetError:
        return None  # no platform, or no device by that name: the CPU, quietly, as auto promises
    entry, _ = auto_choice(found)
    return None if entry is None else str(entry["index"])


def create(graph, name="cpu", threads=None, residency="resident", device=None, fallback=True):
    """Create the backend ``name`` for ``graph``.

    ``auto`` takes OpenCL on a GPU (``auto_choice``) and quietly takes the
    CPU when there is none.  When OpenCL was chosen (by a port profile) but
    cannot be used, a one-line warning goes to stderr and the CPU backend
    is returned; when the user asked for it explicitly (``fallback=False``)
    the failure is a DeviceNetError.
    """
    if name not in NAMES + ("auto",):
        raise DeviceNetError(f"unknown backend {name!r}; use cpu, opencl or auto")
    if name == "auto":
        device = _auto_device(device)
    if name == "opencl" or (name == "auto" and device is not None):
        try:
            from .opencl import OpenCLBackend
            # A device failure during a run falls back too, unless the user
            # asked for OpenCL explicitly.
            return OpenCLBackend(graph, threads=threads, residency=residency, device=device,
                                 fallback=name == "auto" or fallback)
        except ImportError:
            reason = OPENCL_MISSING
        except DeviceNetError as e:
            reason = str(e)
        if name == "opencl" and not fallback:
            raise DeviceNetError(f"OpenCL backend unavailable: {reason}")
        if name == "opencl":
            warn(f"OpenCL unavailable, using the CPU backend: {reason}")
    from .cpu import CPUBackend
    return CPUBackend(graph, threads=threads, residency=residency)
