"""Which BLAS numpy runs on, and whether it is the slow reference one.

numpy hands its matrix products to whatever BLAS it was built or installed
with.  Wheels from the package index bundle OpenBLAS; Debian's and
Raspberry Pi OS's ``python3-numpy`` links ``libblas.so.3``, which the
alternatives system points at the reference BLAS (``libblas3``, unblocked
loops, about 10x slower for our GEMMs) unless an optimised one such as
``libopenblas0-pthread`` is installed.

On Linux the answer is read from ``/proc/self/maps`` after importing
numpy: the libraries really mapped, symlinks already resolved by the
kernel.  Elsewhere numpy's build configuration is the best we have.
"""

import contextlib
import io
import os
import re
import warnings
from typing import NamedTuple

OPTIMISED, REFERENCE, UNKNOWN = "optimised", "reference", "unknown"

#: (pattern on the library's path, name, kind), first match wins.  Debian
#: installs every implementation of ``libblas.so.3`` in a folder of its own
#: (``/usr/lib/<triplet>/openblas-pthread/``, ``blis-openmp/``, ``atlas/``,
#: ``blas/`` for the reference one) and points the alternative at one.
LIBRARIES = (
    (r"(^|/)lib(scipy_)?openblas[^/]*$", "OpenBLAS", OPTIMISED),
    (r"/openblas[^/]*/lib(c)?blas\.so[^/]*$", "OpenBLAS", OPTIMISED),
    (r"(^|/)libblis[^/]*$|/blis[^/]*/lib(c)?blas\.so[^/]*$", "BLIS", OPTIMISED),
    (r"(^|/)libmkl_(rt|core)[^/]*$", "MKL", OPTIMISED),
    (r"(^|/)lib[st]?atlas[^/]*$|/atlas[^/]*/lib(c)?blas\.so[^/]*$", "ATLAS", OPTIMISED),
    (r"(^|/)Accelerate\.framework/|(^|/)libvecLib[^/]*$", "Accelerate", OPTIMISED),
    (r"(^|/)libflexiblas[^/]*$", "FlexiBLAS", UNKNOWN),  # a switch; its backend is chosen at run time
    (r"/blas/lib(c)?blas\.so[^/]*$", "reference BLAS", REFERENCE),
    (r"(^|/)lib(c)?blas\.so[^/]*$", "libblas", UNKNOWN),  # no folder to tell which
)

#: how numpy's build configuration names a BLAS -> (name, kind)
CONFIG_NAMES = (
    ("openblas", "OpenBLAS", OPTIMISED), ("mkl", "MKL", OPTIMISED), ("accelerate", "Accelerate", OPTIMISED),
    ("blis", "BLIS", OPTIMISED), ("atlas", "ATLAS", OPTIMISED),
)

INSTALL_HINT = ("sudo apt install libopenblas0-pthread (Debian, Raspberry Pi OS), or build devicenet's compiled "
                "kernels: sudo apt install gcc python3-dev, then reinstall devicenet")


class Blas(NamedTuple):
    """The BLAS numpy uses: a name, the library's path ("" if unknown), its
    kind (optimised, reference or unknown) and how we know (maps or config)."""

    name: str
    path: str
    kind: str
    source: str

    def to_json(self):
        return self._asdict()


def classify(path):
    """(name, kind) of a library path, or None if it is not a BLAS."""
    for pattern, name, kind in LIBRARIES:
        if re.search(pattern, path):
            return name, kind
    return None


def mapped_paths(maps_text):
    """The file paths mapped in the text of a ``/proc/<pid>/maps``, each
    once, in the order they appear."""
    paths = {}
    for line in maps_text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue
        path = fields[5].strip()
        if path.endswith(" (deleted)"):
            path = path[:-len(" (deleted)")]
        paths.setdefault(path, None)
    return list(paths)


def from_maps(maps_text):
    """Every BLAS library in the text of a ``/proc/<pid>/maps``, each once,
    in the order they appear, as Blas records."""
    found = []
    for path in mapped_paths(maps_text):
        what = classify(path)
        if what:
            found.append(Blas(what[0], path, what[1], "maps"))
    return found


def pick(candidates, config_name="", numpy_dir=""):
    """Which of the mapped BLAS libraries is numpy's (another package, such
    as scipy, may have loaded its own): the one numpy's wheel bundles, else
    the kind its build configuration names, else the first."""
    if not candidates:
        return None
    if numpy_dir:
        # Wheels keep their BLAS beside the package, in numpy.libs.
        bundled = os.path.join(os.path.dirname(os.path.normpath(numpy_dir)), "numpy.libs") + os.sep
        for c in candidates:
            if c.path.startswith(bundled):
                return c
    hint = from_config_name(config_name)
    for c in candidates:
        if hint.kind != UNKNOWN and c.name == hint.name:
            return c
    return candidates[0]


def from_config_name(config_name):
    """A Blas record from the name numpy's build configuration gives."""
    low = (config_name or "").lower()
    for key, name, kind in CONFIG_NAMES:
        if key in low:
            return Blas(name, "", kind, "config")
    # "blas", "cblas" or nothing: a Debian-style build whose libblas.so.3
    # is chosen at run time, which the configuration cannot know.
    return Blas(config_name or "unknown", "", UNKNOWN, "config")


def numpy_config_name():
    """The BLAS named in numpy's build configuration, or ""."""
    import numpy
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:  # numpy >= 1.26 (meson builds)
            return str(numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"])
        except Exception:
            pass
        try:  # numpy 1.24-1.25 (distutils builds)
            for section in ("blas_ilp64_opt", "blas_opt", "openblas", "blas_mkl"):
                info = numpy.__config__.get_info(section)
                if info:
                    return " ".join(info.get("libraries", [])) or section
        except Exception:
            pass
    return ""


def numpy_blas(maps_path="/proc/self/maps"):
    """The BLAS numpy uses in this process (imports numpy)."""
    import numpy
    config_name = numpy_config_name()
    try:
        with open(maps_path) as f:
            candidates = from_maps(f.read())
    except OSError:
        candidates = []
    found = pick(candidates, config_name, os.path.dirname(numpy.__file__))
    return found or from_config_name(config_name)


def advice(blas):
    """One line for a slow BLAS (what it costs and what to install), or None."""
    if blas.kind != REFERENCE:
        return None
    return (f"warning: numpy uses the reference BLAS ({blas.path or blas.name}), about 10x slower than an "
            f"optimised one; devicenet's GEMMs run on it wherever its compiled kernels are not built. "
            f"Fix: {INSTALL_HINT}")


def describe(blas):
    """A one-line description for reports."""
    where = f" ({blas.path})" if blas.path else " (from numpy's build configuration)"
    return f"{blas.name}{where}, {blas.kind}"


def report(blas=None):
    """The lines a report prints (``ports --explain``, the benchmark): which
    BLAS numpy uses (found now unless given) and the warning, if any."""
    blas = blas or numpy_blas()
    warning = advice(blas)
    return [f"BLAS: numpy uses {describe(blas)}"] + ([warning] if warning else [])
