"""Setting the number of BLAS threads at run time.

numpy has no public call for this.  threadpoolctl (if installed) knows every
BLAS build; without it we look up the OpenBLAS set-threads symbol in the
libraries this process has loaded, which covers numpy's wheels and Debian's
libopenblas.  Failing both, the environment variables (read at numpy import)
are the user's lever, and we say nothing.
"""

import ctypes
import os

_SYMBOLS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads", "openblas_set_num_threads64_")


def _loaded_blas():
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return []
    return sorted(paths)


def set_blas_threads(n):
    """Limit BLAS to ``n`` threads; return True if a BLAS accepted it."""
    if not n:
        return False
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n, user_api="blas")
        return True
    except ImportError:
        pass
    for path in _loaded_blas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in _SYMBOLS:
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn(ctypes.c_int(int(n)))
                return True
    return False


def default_threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
