"""The OpenCL backend against the CPU backend, its device-side contracts,
and every way of falling back to the CPU.  Runs on any OpenCL device; CI
uses pocl, a CPU implementation."""

import json
import sys

import numpy as np
import pytest

import devicenet
from devicenet import DeviceNetError, format as dnet
from devicenet.backends import create
from devicenet.backends.cpu import CPUBackend
from devicenet.convert.builder import Builder
from conftest import PHOTOS, available_backends, cli_runner, data

cl = pytest.importorskip("pyopencl")
if "opencl" not in available_backends():
    pytest.skip("no OpenCL device", allow_module_level=True)
from devicenet.backends import opencl  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEVICENET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEVICENET_OPENCL_DEVICE", raising=False)


def cli(*args):
    """Invoke the command line with stderr kept apart from stdout (click 8.1 and 8.2+)."""
    from devicenet.cli import main
    return cli_runner().invoke(main, [str(a) for a in args])


def close(ours, ref, rel=1e-3):
    """Within ``rel`` of the reference, relative to its largest magnitude."""
    err = np.abs(ours - ref).max()
    assert err <= rel * max(np.abs(ref).max(), 1e-6), f"max error {err:.3g}"


def small_net(encoding):
    """Every weighted kernel path: strided 3x3, grouped, depthwise 5x5 with
    dilation, 1x1 stride 2, residual add, pooling, dense."""
    rng = np.random.default_rng(3)

    def w(*shape):
        return rng.normal(size=shape).astype(np.float32) * 0.3

    b = Builder([1, 13, 11, 6])
    x = b.add("conv", "input", {"kernel": [3, 3], "stride": [2, 1], "pads": [1, 0, 2, 1], "activation": "relu6"},
              {"weight": w(20, 3, 3, 6), "bias": w(20)})
    x = b.add("conv", x, {"kernel": [3, 1], "pads": [1, 0, 1, 0], "groups": 4}, {"weight": w(20, 3, 1, 5)})
    y = b.add("conv", x, {"kernel": [5, 5], "pads": [4, 4, 4, 4], "dilation": [2, 2], "groups": 20,
                          "activation": "relu"}, {"weight": w(20, 5, 5, 1), "bias": w(20)})
    x = b.add("add", [x, y], {"activation": "relu6"})
    x = b.add("conv", x, {"kernel": [1, 1], "stride": [2, 2]}, {"weight": w(33, 1, 1, 20), "bias": w(33)})
    x = b.add("maxpool", x, {"kernel": [2, 2], "pads": [0, 0, 1, 1]})
    x = b.add("flatten", x)
    x = b.add("dense", x, {}, {"weight": w(10, b.shapes[x][1]), "bias": w(10)})
    x = b.add("softmax", x)
    params = {t for n in b.nodes for t in n.params.values()}
    encodings = {t: encoding if t.endswith("weight") else "float32" for t in params}
    return b.graph({"name": "small"}, encodings)


@pytest.mark.parametrize("encoding", ["int8", "int16", "float16", "float32"])
def test_every_weight_encoding_matches_cpu(encoding):
    g = small_net(encoding)
    x = np.random.default_rng(1).normal(size=(3, 13, 11, 6)).astype(np.float32)
    # Compare the logits (before the softmax), which is where errors would show.
    g.meta["output"] = g.nodes[-2].outputs[0]
    close(create(g, "opencl", fallback=False).run(x), CPUBackend(g).run(x))


def test_weights_stay_encoded_on_the_device():
    g = small_net("int8")
    be = opencl.OpenCLBackend(g)
    for node in g.weight_nodes():
        t = g.tensors[node.params["weight"]]
        wbuf, sbuf, _ = be.weights(node)
        assert t.encoding == "int8" and wbuf.size == t.data.size  # one byte a weight
        assert sbuf.size == 4 * t.shape[0]


def test_buffers_are_planned_once_per_batch_and_reused():
    g = small_net("int8")
    be = opencl.OpenCLBackend(g)
    x = np.random.default_rng(2).normal(size=(2, 13, 11, 6)).astype(np.float32)
    first = be.run(x)
    plan = be._plans[2]
    np.testing.assert_array_equal(be.run(x), first)
    assert be._plans[2] is plan
    # Freed activations are reused: fewer buffers than activations.
    assert len({id(b) for b in plan.buffers}) < len(g.nodes)
    np.testing.assert_allclose(be.run(x[:1]), first[:1], rtol=1e-6, atol=1e-7)
    assert set(be._plans) == {1, 2}


def test_profile_has_kernel_times_for_every_node():
    g = small_net("int8")
    be = opencl.OpenCLBackend(g)
    profile = []
    be.run(np.zeros((1, 13, 11, 6), np.float32), profile=profile)
    shapes = g.shapes(1)
    assert [p[0] for p in profile] == g.nodes
    for node, shape, seconds in profile:
        assert shape == shapes[node.outputs[0]]
        # flatten is a view of its input's buffer: no kernel, no time
        assert (seconds == 0) if node.op == "flatten" else (0 < seconds < 10)


def test_run_node_matches_cpu():
    g = small_net("float16")
    be, cpu = opencl.OpenCLBackend(g), CPUBackend(g)
    x = np.random.default_rng(4).normal(size=(2, 13, 11, 6)).astype(np.float32)
    node = g.nodes[0]
    close(be.run_node(node, [x]), cpu.run_node(node, [x]))


def test_shipped_model_forward_matches_cpu(shipped_model):
    """The OpenCL backend runs the shipped model's integer layers in float
    arithmetic on their stored weights: the CPU backend's answers for the
    same file with its integer plan set aside, to float rounding."""
    from devicenet.integer import float_arithmetic
    from devicenet.model import Model
    ocl = devicenet.load(shipped_model, backend="opencl")
    assert ocl.backend == "opencl"
    g = float_arithmetic(dnet.load(shipped_model))
    cpu = Model(g, CPUBackend(g), path=shipped_model)
    x = np.random.default_rng(5).normal(size=(2,) + tuple(ocl.input_shape[1:])).astype(np.float32)
    close(ocl.forward(x), cpu.forward(x))


def test_classify_same_top5_as_cpu(shipped_model):
    def top5(backend):
        r = cli("classify", "--json", "--backend", backend, *(data(p) for p in PHOTOS))
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["backend"] == backend
        return [[p["index"] for p in res["predictions"]] for res in doc["results"]]

    assert top5("opencl") == top5("cpu")


def test_info_lists_devices():
    r = cli("info", "--devices", "--json")
    assert r.exit_code == 0
    found = json.loads(r.stdout)["devices"]
    assert found and found[0]["index"] == 0 and found[0]["device"]


# --- device choice and the program cache --------------------------------------

def test_device_by_index_name_and_environment(monkeypatch):
    g = small_net("int8")
    name = opencl.devices()[0][1].name.strip()
    assert opencl.OpenCLBackend(g, device=0).device_name == name
    assert opencl.OpenCLBackend(g, device=name[2:7].upper()).device_name == name
    monkeypatch.setenv("DEVICENET_OPENCL_DEVICE", "no such device")
    with pytest.raises(DeviceNetError, match="no OpenCL device matches 'no such device'"):
        opencl.OpenCLBackend(g)
    with pytest.raises(DeviceNetError, match="matches '99'"):
        opencl.OpenCLBackend(g, device="99")


def test_second_start_loads_binaries_from_the_cache(tmp_path, monkeypatch):
    g = small_net("int8")
    opencl.OpenCLBackend(g)
    cached = list((tmp_path / "cache" / "opencl").glob("*.bin"))
    assert len(cached) == 2  # the layer kernels and the int8 weighted kernels

    def no_compiling(ctx, source):
        raise AssertionError("compiled although cached")
    monkeypatch.setattr(opencl, "_compile", no_compiling)
    x = np.ones((1, 13, 11, 6), np.float32)
    close(opencl.OpenCLBackend(g).run(x), CPUBackend(g).run(x))


def test_a_corrupt_cache_entry_is_rebuilt(tmp_path):
    g = small_net("int8")
    opencl.OpenCLBackend(g)
    for f in (tmp_path / "cache" / "opencl").glob("*.bin"):
        f.write_bytes(b"not a binary")
    x = np.ones((1, 13, 11, 6), np.float32)
    close(opencl.OpenCLBackend(g).run(x), CPUBackend(g).run(x))


# --- fallback: warning and CPU when chosen implicitly, an error when asked for --

def assert_falls_back(g, capsys, reason):
    be = create(g, "opencl", fallback=True)
    assert be.name == "cpu"
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "using the CPU backend" in err and reason in err
    assert create(g, "auto").name == "cpu"
    with pytest.raises(DeviceNetError, match=reason):
        create(g, "opencl", fallback=False)


def test_pyopencl_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyopencl", None)
    monkeypatch.delitem(sys.modules, "devicenet.backends.opencl")
    assert_falls_back(small_net("int8"), capsys, "pyopencl is not installed")


def test_no_platform(monkeypatch, capsys):
    def none():
        raise cl.LogicError("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")
    monkeypatch.setattr(opencl.cl, "get_platforms", none)
    assert_falls_back(small_net("int8"), capsys, "no OpenCL platform")


def test_no_device(monkeypatch, capsys):
    monkeypatch.setattr(opencl.cl, "get_platforms", lambda: [])
    assert_falls_back(small_net("int8"), capsys, "no OpenCL device")


def test_kernel_build_failure(monkeypatch, capsys):
    real = opencl.kernel_source
    monkeypatch.setattr(opencl, "kernel_source", lambda *a: real(*a) + "\nthis is not OpenCL C;\n")
    assert_falls_back(small_net("int8"), capsys, "failed to build")


def test_out_of_resources_during_a_run(monkeypatch, capsys):
    g = small_net("int8")
    x = np.random.default_rng(6).normal(size=(1, 13, 11, 6)).astype(np.float32)

    def exhausted(self, batch):
        raise cl.MemoryError("clEnqueueNDRangeKernel failed: OUT_OF_RESOURCES")
    monkeypatch.setattr(opencl.OpenCLBackend, "_plan", exhausted)
    be = create(g, "opencl", fallback=True)
    assert be.name == "opencl"
    np.testing.assert_array_equal(be.run(x), CPUBackend(g).run(x))
    assert be.name == "cpu"
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "OUT_OF_RESOURCES; using the CPU backend" in err
    with pytest.raises(DeviceNetError, match="OpenCL run failed.*OUT_OF_RESOURCES"):
        create(g, "opencl", fallback=False).run(x)


def test_explicit_opencl_on_the_command_line_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(opencl.cl, "get_platforms", lambda: [])
    r = cli("classify", "--backend", "opencl", data(PHOTOS[0]))
    assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit)
    assert r.stderr.strip().splitlines() == ["Error: OpenCL backend unavailable: no OpenCL device found; "
                                             "install a driver or use --backend cpu"]



def test_integer_models_run_in_float_with_their_stored_weights(tmp_path):
    """A model with integer layers (twelve-bit depthwise weights included)
    runs on OpenCL in float arithmetic from the weights it stores: as the
    CPU backend computes the same file with the integer plan set aside
    (which differs from the CPU's integer answers by the activations'
    rounding)."""
    from devicenet import calibrate, format as dnet, integer
    from test_integer import SPEC, batch, block_net, free_conversions
    b = block_net()
    meta = {"preprocess": SPEC, "labels": []}
    with free_conversions():
        encodings, clips, report = calibrate.choose_encodings(b, meta, arithmetic="auto", kl_budget=10.0)
    meta["integer"], qmax = report.pop("integer"), report.pop("qmax")
    path = tmp_path / "int.dnet"
    dnet.write(b.graph(meta, encodings, clips, qmax), path)
    g = dnet.load(path)
    assert g.tensors["depthwise.weight"].encoding == "int16" and "depthwise" in meta["integer"]["nodes"]
    g.meta["output"] = g.nodes[-1].inputs[0]  # the logits
    plain = integer.float_arithmetic(g)
    x = batch(3, 2)
    ocl = create(g, "opencl", fallback=False).run(x)
    close(ocl, CPUBackend(plain).run(x))
    assert np.abs(ocl - CPUBackend(g).run(x)).max() > 1e-2 * np.abs(ocl).max()
