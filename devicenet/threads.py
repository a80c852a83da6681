"""Threads: numpy's BLAS reached at run time (its thread count and its
GEMM), and the process's threads busy with other work.

numpy has no public call for either.  threadpoolctl (if installed) knows
every BLAS build's thread setting; without it, and for the GEMM, we look up
OpenBLAS's symbols in the libraries this process has loaded, which covers
numpy's wheels (scipy-openblas, 64-bit integers, ``scipy_`` prefix and
``64_`` suffix) and Debian's libopenblas / libblas.  Failing that, the
environment variables (read at numpy import) are the user's lever, numpy's
matmul does every GEMM, and we say nothing.
"""

import contextlib
import ctypes
import functools
import os
import threading

_SET_THREADS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads", "openblas_set_num_threads64_")
_CBLAS = ("scipy_cblas_{}64_", "cblas_{}64_", "scipy_cblas_{}", "cblas_{}")


@functools.lru_cache(maxsize=None)
def _loaded_blas():
    """The BLAS libraries loaded in this process (numpy's among them), as
    ctypes handles."""
    import numpy  # noqa: F401  (loads its BLAS)
    from .blas import mapped_paths
    try:
        with open("/proc/self/maps") as f:
            paths = {p for p in mapped_paths(f.read()) if "blas" in p.lower()}
    except OSError:
        return ()
    libs = []
    for path in sorted(paths):
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return tuple(libs)


def _symbol(names):
    for lib in _loaded_blas():
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                return fn
    return None


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
    fn = _symbol(_SET_THREADS)
    if fn is None:
        return False
    fn(ctypes.c_int(int(n)))
    return True


def cblas_address(name):
    """The address of a CBLAS function (``sgemm``, ``sgemv``) in numpy's
    BLAS, or None."""
    fn = _symbol([pattern.format(name) for pattern in _CBLAS])
    return None if fn is None else ctypes.cast(fn, ctypes.c_void_p).value


def default_threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Busy:
    """Threads of this process busy with work beside inference (decoding
    the next photo of a folder)."""

    count = 0
    lock = threading.Lock()


def busy_threads():
    """How many threads of this process are marked busy (``working_alongside``)."""
    return _Busy.count


@contextlib.contextmanager
def working_alongside():
    """Mark one more thread busy with other work while the block runs: the
    CPU backend's compiled kernels then use one thread fewer, so that
    decoding and inference do not fight over the cores.  With two cores,
    inference on one and decoding on the other went at 54 photos/s where
    both fighting over two went at 45 (docs/PERFORMANCE.md)."""
    with _Busy.lock:
        _Busy.count += 1
    try:
        yield
    finally:
        with _Busy.lock:
            _Busy.count -= 1
