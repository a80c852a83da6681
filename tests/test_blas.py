"""Which BLAS numpy uses: library paths classified, /proc/self/maps read,
the real answer on this machine, and the warning `ports --explain` prints."""

import ctypes.util
import json
import os
import subprocess
import sys

from conftest import cli_runner
import pytest

from devicenet import blas
from devicenet.cli import main

PATHS = [
    # Debian and Raspberry Pi OS: one folder per implementation of libblas.so.3
    ("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0", "reference BLAS", "reference"),
    ("/usr/lib/arm-linux-gnueabihf/blas/libblas.so.3", "reference BLAS", "reference"),
    ("/usr/lib/aarch64-linux-gnu/blas/libcblas.so.3", "reference BLAS", "reference"),
    ("/usr/lib/arm-linux-gnueabihf/openblas-pthread/libblas.so.3", "OpenBLAS", "optimised"),
    ("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0", "OpenBLAS", "optimised"),
    ("/usr/lib/aarch64-linux-gnu/libopenblas.so.0", "OpenBLAS", "optimised"),
    ("/usr/lib/x86_64-linux-gnu/blis-pthread/libblas.so.3", "BLIS", "optimised"),
    ("/usr/lib/x86_64-linux-gnu/atlas/libblas.so.3", "ATLAS", "optimised"),
    # wheels
    ("/venv/lib/python3.11/site-packages/numpy.libs/libscipy_openblas64_-32a4b2a6.so", "OpenBLAS", "optimised"),
    ("/venv/lib/python3.9/site-packages/numpy.libs/libopenblas64_p-r0-15028c96.3.21.so", "OpenBLAS", "optimised"),
    ("/opt/conda/lib/libmkl_rt.so.2", "MKL", "optimised"),
    ("/opt/conda/lib/libblis.so.4", "BLIS", "optimised"),
    # a switch, or a libblas.so.3 with no folder to tell which
    ("/usr/lib64/libflexiblas.so.3", "FlexiBLAS", "unknown"),
    ("/usr/lib64/libblas.so.3", "libblas", "unknown"),
]

NOT_BLAS = ["/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3", "/usr/lib/x86_64-linux-gnu/libgfortran.so.5.0.0",
            "/usr/lib/python3/dist-packages/scipy/linalg/_fblas.cpython-311-x86_64-linux-gnu.so",
            "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/blasphemy/libfoo.so"]


@pytest.mark.parametrize("path, name, kind", PATHS)
def test_library_paths_are_classified(path, name, kind):
    assert blas.classify(path) == (name, kind)


@pytest.mark.parametrize("path", NOT_BLAS)
def test_other_libraries_are_not_blas(path):
    assert blas.classify(path) is None


def maps(*paths):
    """Lines as the kernel writes them: each library mapped several times."""
    lines = ["55d0c0a2b000-55d0c0a4c000 rw-p 00000000 00:00 0                          [heap]",
             "7f3a10000000-7f3a10021000 rw-p 00000000 00:00 0 "]
    for i, path in enumerate(paths):
        for perms in ("r--p", "r-xp", "rw-p"):
            lines.append(f"7f3a{i:02x}400000-7f3a{i:02x}420000 {perms} 00000000 b3:02 {1000 + i:<12d}{path}")
    lines.append("7ffd4a1f3000-7ffd4a214000 rw-p 00000000 00:00 0                          [stack]")
    return "\n".join(lines) + "\n"


def test_stock_raspberry_pi_os_is_the_reference_blas():
    # python3-numpy on bookworm armhf without libopenblas0 (issue 12)
    text = maps("/usr/lib/arm-linux-gnueabihf/libgfortran.so.5.0.0",
                "/usr/lib/arm-linux-gnueabihf/blas/libblas.so.3.11.0",
                "/usr/lib/arm-linux-gnueabihf/lapack/liblapack.so.3.11.0",
                "/usr/lib/python3/dist-packages/numpy/core/_multiarray_umath.cpython-311-arm-linux-gnueabihf.so")
    found = blas.from_maps(text)
    assert found == [blas.Blas("reference BLAS", "/usr/lib/arm-linux-gnueabihf/blas/libblas.so.3.11.0",
                               "reference", "maps")]
    chosen = blas.pick(found, "blas", "/usr/lib/python3/dist-packages/numpy")
    line = blas.advice(chosen)
    assert "\n" not in line and "/usr/lib/arm-linux-gnueabihf/blas/libblas.so.3.11.0" in line
    assert "sudo apt install libopenblas0-pthread" in line and "sudo apt install gcc python3-dev" in line
    assert "compiled kernels are not built" in line


def test_after_installing_openblas_the_same_numpy_is_optimised():
    text = maps("/usr/lib/arm-linux-gnueabihf/openblas-pthread/libblas.so.3",
                "/usr/lib/arm-linux-gnueabihf/openblas-pthread/liblapack.so.3")
    (found,) = blas.from_maps(text)
    assert (found.name, found.kind) == ("OpenBLAS", "optimised") and blas.advice(found) is None


def test_numpys_own_wheel_blas_wins_over_another_packages():
    site = "/venv/lib/python3.11/site-packages"
    text = maps(f"{site}/scipy.libs/libscipy_openblas-a1b2c3.so", "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3",
                f"{site}/numpy.libs/libscipy_openblas64_-32a4b2a6.so")
    found = blas.from_maps(text)
    assert len(found) == 3
    assert blas.pick(found, "scipy-openblas", f"{site}/numpy").path.startswith(f"{site}/numpy.libs/")
    # Without the wheel's folder, the configuration's name decides.
    assert blas.pick(found[1:2] + found[:1], "scipy-openblas", "/elsewhere/numpy").name == "OpenBLAS"
    assert blas.pick([], "openblas") is None


def test_deleted_and_anonymous_mappings_are_handled():
    text = maps("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3 (deleted)")
    assert [b.path for b in blas.from_maps(text)] == ["/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"]
    assert blas.from_maps("") == [] and blas.from_maps("garbage\n\n1 2 3\n") == []


@pytest.mark.parametrize("name, expect", [("scipy-openblas", ("OpenBLAS", "optimised")),
                                          ("openblas64_ openblas64_", ("OpenBLAS", "optimised")),
                                          ("accelerate", ("Accelerate", "optimised")),
                                          ("mkl_rt", ("MKL", "optimised")),
                                          ("blas", ("blas", "unknown")), ("", ("unknown", "unknown"))])
def test_build_configuration_names(name, expect):
    b = blas.from_config_name(name)
    assert (b.name, b.kind, b.path, b.source) == expect + ("", "config")


def test_without_proc_maps_numpys_configuration_answers(tmp_path):
    found = blas.numpy_blas(maps_path=str(tmp_path / "no-such-maps"))
    assert found.source == "config" and found.path == ""
    assert found == blas.from_config_name(blas.numpy_config_name())


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's /proc/self/maps")
def test_the_real_blas_of_this_numpy():
    import numpy
    found = blas.numpy_blas()
    assert found.source == "maps" and os.path.isfile(found.path)
    with open("/proc/self/maps") as f:
        assert found.path in f.read()
    assert found.kind != "reference" or blas.advice(found)
    # The wheel's configuration names the library that is mapped.
    if "openblas" in blas.numpy_config_name().lower():
        assert found.name == "OpenBLAS" and found.kind == "optimised"
        assert os.path.dirname(found.path).endswith("numpy.libs") or "numpy" not in numpy.__file__


def test_the_systems_libblas_alternative_is_resolved_and_classified():
    # Load the system's libblas.so.3 as Debian's numpy does (through the
    # /etc/alternatives symlinks) and read that process's maps.
    if not ctypes.util.find_library("blas"):
        pytest.skip("no system libblas.so.3")
    code = ("import ctypes, json; ctypes.CDLL('libblas.so.3'); from devicenet import blas; "
            "print(json.dumps([b.to_json() for b in blas.from_maps(open('/proc/self/maps').read())]))")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(blas.__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    found = [b for b in json.loads(out) if "numpy.libs" not in b["path"]]
    assert len(found) == 1, out
    (b,) = found
    assert not os.path.islink(b["path"])  # the kernel shows the file the links lead to
    assert (b["name"], b["kind"]) == blas.classify(b["path"])
    if "/blas/" in b["path"]:  # Debian's libblas3 (this machine's)
        assert b["kind"] == "reference" and blas.advice(blas.Blas(**b))


# --- the command -------------------------------------------------------------

def test_ports_explain_names_numpys_blas():
    res = cli_runner().invoke(main, ["ports", "--explain"])
    assert res.exit_code == 0, res.output
    line = [l for l in res.output.splitlines() if l.startswith("BLAS: numpy uses ")]
    assert len(line) == 1 and blas.numpy_blas().name in line[0]


def test_ports_explain_warns_about_the_reference_blas(monkeypatch):
    slow = blas.Blas("reference BLAS", "/usr/lib/arm-linux-gnueabihf/blas/libblas.so.3", "reference", "maps")
    monkeypatch.setattr(blas, "numpy_blas", lambda: slow)
    res = cli_runner().invoke(main, ["ports", "--explain"])
    assert res.exit_code == 0, res.output
    warnings = [l for l in res.output.splitlines() if l.startswith("warning: numpy uses the reference BLAS")]
    assert len(warnings) == 1 and "libopenblas0-pthread" in warnings[0]
    res = cli_runner().invoke(main, ["ports", "--json"])
    assert '"kind": "reference"' in res.output


def test_report_is_one_line_and_a_warning_only_for_the_reference_blas():
    fast = blas.Blas("OpenBLAS", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3", "optimised", "maps")
    slow = fast._replace(name="reference BLAS", path="/usr/lib/x86_64-linux-gnu/blas/libblas.so.3",
                         kind="reference")
    assert blas.report(fast) == [f"BLAS: numpy uses OpenBLAS ({fast.path}), optimised"]
    lines = blas.report(slow)
    assert len(lines) == 2 and lines[1] == blas.advice(slow)
    assert blas.report(blas.from_config_name("blas")) == [
        "BLAS: numpy uses blas (from numpy's build configuration), unknown"]
