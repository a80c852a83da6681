"""The benchmark: its JSON schema, the layer table, saved-result tables, and
the AlexNet-shaped network (streamed and resident weights give the same logits)."""

import json
import math
import re

from conftest import cli_runner
import numpy as np
import pytest

import devicenet
from devicenet import bench, nets
from devicenet import format as dnet
from devicenet.cli import main
from devicenet.errors import DeviceNetError


@pytest.fixture
def x86_env(tmp_path):
    """An x86_64 machine with nothing under its fake /proc but a CPU name."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU 3000\n")
    return {"DEVICENET_SYSROOT": str(tmp_path), "DEVICENET_MACHINE": "x86_64", "DEVICENET_PORT": None,
            "DEVICENET_MODEL": None}


def check_schema(doc, runs, warmup):
    for key in bench.KEYS:
        assert key in doc, key
    lat = doc["latency_ms"]
    assert set(bench.STATS) <= set(lat)
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] and lat["min"] <= lat["mean"] and lat["std"] >= 0
    # printed floats keep six significant digits (devicenet.report.rounded)
    assert math.isclose(doc["images_per_s"], 1e3 / lat["mean"], rel_tol=1e-5)
    assert doc["runs"] == runs and doc["warmup"] == warmup
    assert doc["load_ms"] > 0 and doc["first_ms"] > 0 and doc["peak_rss_mb"] > 10
    assert doc["versions"]["devicenet"] == devicenet.__version__
    assert doc["versions"]["numpy"] == np.__version__
    assert isinstance(doc["threads"], int) and doc["threads"] >= 1
    assert isinstance(doc["reference"], list)
    if doc["backend"] == "cpu":
        from devicenet.backends import cpu_kernels
        assert doc["kernels"] == ("numpy" if cpu_kernels.NATIVE is None else "native")
        # the device that ran: this CPU, with the kernels and threads of the run
        from devicenet import report
        assert doc["device"] == (f"{report.cpu_name()} ({doc['kernels']} kernels, {doc['threads']} "
                                 f"thread{'s' * (doc['threads'] != 1)})")


def test_benchmark_json_schema(x86_env):
    res = cli_runner().invoke(main, ["benchmark", "--runs", "3", "--json"], env=x86_env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    check_schema(doc, 3, 3)
    assert (doc["board"], doc["port"], doc["backend"], doc["model"]) == (
        "Test CPU 3000", "generic-x86_64", "cpu", "efficientnet-lite0")
    assert "layers" not in doc
    # The bundled photo is an espresso: the board gives the right answer.
    assert doc["prediction"]["label"] == "espresso"


def test_layers_save_and_table(x86_env, tmp_path):
    saved = tmp_path / "here.json"
    res = cli_runner().invoke(main, ["benchmark", "--runs", "1", "--warmup", "0", "--layers", "--threads", "1",
                                    "--save", str(saved)], env=x86_env)
    assert res.exit_code == 0, res.output
    assert "conv + dense (GEMM)" in res.output and "latency" in res.output
    doc = json.loads(saved.read_text())
    check_schema(doc, 1, 0)
    assert doc["threads"] == 1
    graph = dnet.load(devicenet.default_model_path())
    assert [row["name"] for row in doc["layers"]] == [n.name for n in graph.nodes]
    # each percentage is rounded to six significant digits (a relative error
    # of at most 5e-6), and so is their sum, within twice that
    assert math.isclose(sum(row["percent"] for row in doc["layers"]), 100.0, rel_tol=1e-5)
    assert doc["layers"][-1]["shape"] == [1, 1000]
    # multiply-adds: a convolution's output values times its kernel's taps
    # over its group's input channels (from the input's shape, not the weight's)
    shapes = graph.shapes(1)
    for node, row in zip(graph.nodes, doc["layers"]):
        if node.op == "conv":
            cin = shapes[node.inputs[0]][3] // node.attrs.get("groups", 1)
            assert row["macs"] == math.prod(row["shape"]) * math.prod(node.attrs["kernel"]) * cin, node.name
            assert row["kind"] == ("depthwise" if cin == 1 else "conv") + "+relu6" or row["kind"] == "conv"
        elif node.op not in ("dense", "matmul"):
            assert row["macs"] == 0 and row["kind"] == node.op
    line = next(ln for ln in res.output.splitlines() if ln.startswith("by kind, % of the time"))
    shares = {kind: float(m) for kind, m in re.findall(r"(\S+) [\d.]+% \(([\d.]+)%\)", line)}
    assert {"conv+relu6", "depthwise+relu6", "conv"} <= set(shares)
    assert math.isclose(sum(shares.values()), 100.0, abs_tol=0.5)  # (rounded, small kinds left out)

    other = dict(doc, board="Raspberry Pi 2 Model B Rev 1.1", port="raspberry-pi-2")
    (tmp_path / "pi.json").write_text(json.dumps(other))
    res = cli_runner().invoke(main, ["benchmark", "--table", str(saved), str(tmp_path / "pi.json")])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].startswith("| board | port |") and set(lines[1]) <= set("|-:")
    assert len(lines) == 4 and "Raspberry Pi 2 Model B" in lines[3] and "Test CPU 3000" in lines[2]


def test_table_rejects_files_that_are_not_results(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"board": "x"}))
    res = cli_runner().invoke(main, ["benchmark", "--table", str(bad)])
    assert res.exit_code == 1 and "bad.json: not a benchmark result" in res.stderr
    bad.write_text("{")
    with pytest.raises(DeviceNetError, match="not a JSON document"):
        bench.read_result(str(bad))


def test_bad_arguments_are_one_line(x86_env):
    res = cli_runner().invoke(main, ["benchmark", "--runs", "0"], env=x86_env)
    assert res.exit_code == 2
    res = cli_runner().invoke(main, ["benchmark", "--port", "nope"], env=x86_env)
    assert res.exit_code == 1 and res.stderr.startswith("Error: unknown port")
    with pytest.raises(DeviceNetError, match="runs must be"):
        bench.run(runs=0)


def test_standing_against_published_timings():
    refs = bench.standing(devicenet.ports.profiles(), "alexnet", 380.0)
    pi = [r for r in refs if r["port"] == "raspberry-pi-2" and r["ms"] == 3800]
    assert len(pi) == 1 and math.isclose(pi[0]["speedup"], 10.0) and "DeepBeliefSDK" in pi[0]["source"]
    assert bench.standing(devicenet.ports.profiles(), "no-such-net", 1.0) == []
    lines = bench.report({**json.loads(json.dumps(_fake_result())), "reference": refs})
    assert any("10.0x faster" in line for line in lines)


def _fake_result():
    lat = {"min": 1.0, "median": 380.0, "p90": 400.0, "mean": 390.0, "std": 5.0}
    return {"board": "b", "port": "p", "backend": "cpu", "model": "alexnet", "threads": 1, "runs": 1,
            "warmup": 0, "load_ms": 1.0, "first_ms": 1.0, "latency_ms": lat, "images_per_s": 1e3 / 390,
            "peak_rss_mb": 50.0, "versions": bench.versions(), "reference": []}


# --- the AlexNet-shaped network -------------------------------------------------------

def test_alexnet_has_the_alexnet_shape():
    g = nets.alexnet()
    ops = [n.op for n in g.nodes]
    assert ops.count("conv") == 5 and ops.count("dense") == 3
    assert ops.count("lrn") == 2 and ops.count("maxpool") == 3
    assert g.input_shape == (1, 227, 227, 3)
    weights = sum(math.prod(g.tensors[n.params["weight"]].shape) for n in g.weight_nodes())
    assert 60_000_000 < weights < 62_000_000
    assert {g.tensors[n.params["weight"]].encoding for n in g.weight_nodes()} == {"int8"}
    shapes = g.shapes()
    assert shapes[g.output_name] == (1, 1000)
    assert shapes[g.nodes[0].outputs[0]] == (1, 55, 55, 96)
    # its grouped convolutions (two groups) are convolutions, not depthwise;
    # 724 million multiply-adds in all (the published figure is about 0.72 G)
    kinds = {bench.layer_kind(g, n) for n in g.nodes if n.op == "conv"}
    assert kinds == {"conv+relu"}
    assert 700e6 < sum(bench.multiply_adds(g, n, shapes) for n in g.nodes) < 740e6


def test_alexnet_weights_are_deterministic_and_seeded():
    a, b, c = nets.alexnet(seed=3, width=0.125), nets.alexnet(seed=3, width=0.125), nets.alexnet(seed=4, width=0.125)
    for name, t in a.tensors.items():
        np.testing.assert_array_equal(t.data, b.tensors[name].data)
    assert not np.array_equal(a.tensors["dense11.weight"].data, c.tensors["dense11.weight"].data)
    w = a.tensors["conv0.weight"]
    assert np.abs(w.data).max() == 127 and w.scales.shape == (w.shape[0],)


def test_chunked_encoding_equals_whole_tensor_encoding(monkeypatch):
    from devicenet.quant import encode
    monkeypatch.setattr(nets, "CHUNK", 100)  # several rows per chunk, several chunks
    data, scales = nets.random_int8(np.random.default_rng(7), (37, 3, 3, 5), 0.1)
    whole = np.random.default_rng(7).standard_normal((37, 45), dtype=np.float32) * np.float32(0.1)
    want_data, want_scales = encode(whole, "int8")
    np.testing.assert_array_equal(data.reshape(37, 45), want_data)
    np.testing.assert_array_equal(scales, want_scales)


def test_alexnet_streamed_and_resident_give_the_same_logits(tmp_path):
    path = tmp_path / "alexnet-small.dnet"
    dnet.write(nets.alexnet(seed=1, width=0.25), str(path))
    x = np.random.default_rng(0).standard_normal((2, 227, 227, 3)).astype(np.float32)
    resident = devicenet.load(str(path), port="generic-x86_64", residency="resident")
    streamed = devicenet.load(str(path), port="generic-x86_64", residency="streamed")
    assert (resident._backend.residency, streamed._backend.residency) == ("resident", "streamed")
    a, b = resident.forward(x), streamed.forward(x)
    assert a.shape == (2, 1000) and np.all(np.isfinite(a)) and a.std() > 0.1
    # the two paths sum in different orders (compiled kernels, BLAS blocking)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)


def test_benchmark_alexnet_streamed_on_a_streaming_board(x86_env):
    """The full network through the command, on the BeagleBone's profile
    (streamed weights) and resident: the same answer both ways."""
    runner = cli_runner()
    docs = {}
    # The profile decides streamed; --residency overrides it.
    for mode, extra in (("streamed", []), ("resident", ["--residency", "resident"])):
        res = runner.invoke(main, ["benchmark", "--net", "alexnet", "--port", "beaglebone-black", "--runs", "1",
                                   "--warmup", "0", "--json"] + extra, env=x86_env)
        assert res.exit_code == 0, res.output
        docs[mode] = json.loads(res.stdout)
    s, r = docs["streamed"], docs["resident"]
    assert s["residency"] == "streamed" and r["residency"] == "resident"
    assert s["model"] == "alexnet" and s["port"] == "beaglebone-black" and s["threads"] == 1
    assert s["prediction"]["label"] == r["prediction"]["label"]
    # (streamed layers multiply through numpy's BLAS, resident ones through
    # the compiled GEMM: float32 sums in two orders)
    assert math.isclose(s["prediction"]["probability"], r["prediction"]["probability"], rel_tol=1e-4)
    assert {ref["port"] for ref in s["reference"]} >= {"raspberry-pi-2", "beaglebone-black", "jetson-tk1"}


def test_blas_line_warns_only_when_the_gemms_ran_on_a_reference_blas():
    """The benchmark names numpy's BLAS, and warns about a reference BLAS
    only for a run whose GEMMs went through it."""
    from devicenet import bench, blas
    ref = blas.Blas("reference BLAS", "/usr/lib/arm-linux-gnueabihf/blas/libblas.so.3", blas.REFERENCE, "maps")
    fast = blas.Blas("OpenBLAS", "/usr/lib/libopenblas.so.0", blas.OPTIMISED, "maps")
    on_ref = bench.blas_lines({"blas": ref.to_json(), "gemm_on_blas": True})
    assert len(on_ref) == 2 and "reference BLAS" in on_ref[0] and "ran on it" in on_ref[0]
    assert "libopenblas0-pthread" in on_ref[1]
    own_gemm = bench.blas_lines({"blas": ref.to_json(), "gemm_on_blas": False})
    assert len(own_gemm) == 1 and "not used" in own_gemm[0]
    assert len(bench.blas_lines({"blas": fast.to_json(), "gemm_on_blas": True})) == 1


def test_benchmark_reports_which_gemm_ran(x86_env, monkeypatch):
    """With the compiled kernels the own GEMM runs, else numpy's BLAS; the
    JSON says which, with the BLAS numpy uses."""
    from devicenet.backends import cpu_kernels
    res = cli_runner().invoke(main, ["benchmark", "--runs", "1", "--warmup", "0", "--json"], env=x86_env)
    doc = json.loads(res.stdout)
    assert doc["blas"]["kind"] in ("optimised", "reference", "unknown")
    assert doc["gemm_on_blas"] == ("f32_gemm" not in doc["variants"])
    assert doc["gemm_on_blas"] == (cpu_kernels.NATIVE is None)
