"""Convert the popular image classifiers and check each against onnxruntime.

Every torchvision classification family (random weights, torchvision's own
initialisation) is exported with ``torch.onnx.export`` at each opset asked
for, converted with ``devicenet convert --weights float32`` and run on the
CPU backend beside onnxruntime on the same input; so are the model-zoo
networks that ship inside the ``onnx`` package's test data (their light
versions, their constant weights made random: the real ones are only
download pointers there).  A network
matches when max |difference| / max |reference| <= 1e-4 and the top-5
classes come in the same order.  Prints a markdown table (docs/CONVERT.md).

torchvision is an optional dependency, installed without its own
dependencies so that it keeps the CPU torch:

    pip install --no-deps torchvision==0.28.0

Usage: python scripts/convert_matrix.py [--opset 17 --opset 13] [--only resnet18,...] [--zoo-only]
"""

import contextlib
import glob
import os
import sys
import tempfile
import time
import warnings
from unittest import mock

import click
import numpy as np

TOLERANCE = 1e-4

#: family -> (torchvision constructor, input size)
FAMILIES = {
    "AlexNet": ("alexnet", 224), "VGG-11": ("vgg11", 224), "ResNet-18": ("resnet18", 224),
    "ResNet-50": ("resnet50", 224), "ResNeXt-50": ("resnext50_32x4d", 224), "Wide ResNet-50": ("wide_resnet50_2", 224),
    "SqueezeNet 1.1": ("squeezenet1_1", 224), "DenseNet-121": ("densenet121", 224), "GoogLeNet": ("googlenet", 224),
    "Inception v3": ("inception_v3", 299), "MobileNetV2": ("mobilenet_v2", 224),
    "MobileNetV3 small": ("mobilenet_v3_small", 224), "MobileNetV3 large": ("mobilenet_v3_large", 224),
    "ShuffleNetV2 x1.0": ("shufflenet_v2_x1_0", 224), "MNASNet 1.0": ("mnasnet1_0", 224),
    "EfficientNet-B0": ("efficientnet_b0", 224), "EfficientNet V2-S": ("efficientnet_v2_s", 224),
    "RegNetX-400MF": ("regnet_x_400mf", 224), "RegNetY-400MF": ("regnet_y_400mf", 224),
    "ConvNeXt-Tiny": ("convnext_tiny", 224), "ViT-B/16": ("vit_b_16", 224), "Swin-T": ("swin_t", 224),
}


def import_torchvision():
    """torchvision, or None where it is not installed.  Its compiled ops are
    built for another torch: their schemas are declared first so that the
    Python package imports (the classifiers never call them)."""
    try:
        import torch
    except ImportError:
        return None
    if "torchvision" not in sys.modules:
        for op in ("nms", "qnms"):
            try:
                torch.library.define(f"torchvision::{op}",
                                     "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except RuntimeError:
                pass  # already declared (by torchvision's own extension)
    try:
        import torchvision
    except (ImportError, RuntimeError):
        return None
    return torchvision


def _plain_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    """scaled_dot_product_attention in plain ops: the exporter has no
    symbolic for it before opset 14 (ViT at opset 13)."""
    weights = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if attn_mask is not None:
        weights = weights.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == bool else weights + attn_mask
    return weights.softmax(-1) @ v


def export(constructor, path, opset, size, dynamo=False, seed=0):
    """Export a torchvision classifier with random weights to ONNX; return its input (NCHW)."""
    import torch
    tv = import_torchvision()
    torch.manual_seed(seed)
    kwargs = {"aux_logits": False, "init_weights": True} if constructor in ("googlenet", "inception_v3") else {}
    model = getattr(tv.models, constructor)(weights=None, **kwargs).eval()
    with torch.no_grad():
        # ViT's own initialisation zeroes its classifier: every logit would be
        # 0 and a comparison would prove nothing.
        for layer in model.modules():
            if isinstance(layer, torch.nn.Linear) and not layer.weight.any():
                layer.weight.normal_(0, 0.02)
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(1, 3, size, size)).astype(np.float32))
    # The fused attention fast path (ViT) has no ONNX export: the plain ops do.
    torch.backends.mha.set_fastpath_enabled(False)
    # The exporter prints a whole graph when it fails: keep stdout for the table.
    plain = opset < 14 and not dynamo
    attention = mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", _plain_attention) \
        if plain else contextlib.nullcontext()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr), attention:
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (x,), path, opset_version=opset, dynamo=dynamo, input_names=["x"],
                          output_names=["y"])
    return x.numpy()


def compare(onnx_path, x, workdir):
    """Convert and run an ONNX file; return (relative error, same top-5, devicenet ms) or raise."""
    import onnxruntime as ort
    from devicenet import format as dnet
    from devicenet.backends import create
    from devicenet.convert import convert
    out = os.path.join(workdir, "m.dnet")
    convert(onnx_path, out, weights="float32", preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]})
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0].reshape(1, -1)
    be = create(dnet.load(out), "cpu", fallback=False)
    t0 = time.perf_counter()
    ours = be.run(x.transpose(0, 2, 3, 1)).reshape(1, -1)
    ms = (time.perf_counter() - t0) * 1e3
    rel = float(np.abs(ours - ref).max() / np.abs(ref).max())
    same = bool(np.array_equal(np.argsort(-ours[0])[:5], np.argsort(-ref[0])[:5]))
    return rel, same, ms


def _without_curves(graph):
    """The graph with every fused curve activation taken out (the layers
    then do the same work less the curve): what the curves cost is the
    difference in latency."""
    from devicenet.graph import CURVES
    for node in graph.nodes:
        if node.attrs.get("activation") in CURVES:
            node.attrs["activation"] = "none"
    return graph


#: the classes of layer both runtimes' time is split into
CLASSES = ("depthwise", "other conv and dense", "the rest")


def _class_of_kind(kind):
    op = kind.partition("+")[0]
    return CLASSES[0] if op == "depthwise" else CLASSES[1] if op in ("conv", "dense", "matmul") else CLASSES[2]


def ort_classes(onnx_path, feed, threads, runs=5):
    """onnxruntime's time by CLASSES, from its own profile (a session of its
    own: profiling slows it down): {class: share of the node time}."""
    import json
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(os.path.dirname(onnx_path), "ort-profile")
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, feed)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    by_class = dict.fromkeys(CLASSES, 0.0)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        op, shapes = e["args"]["op_name"], e["args"].get("input_type_shape") or []
        w = next(iter(shapes[1].values())) if len(shapes) > 1 else []
        if op in ("Conv", "FusedConv") and len(w) == 4 and w[1] == 1 and w[0] > 1:
            by_class[CLASSES[0]] += e["dur"]
        elif op in ("Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"):
            by_class[CLASSES[1]] += e["dur"]
        else:  # pools, gates, activations, NCHWc reorders
            by_class[CLASSES[2]] += e["dur"]
    total = sum(by_class.values()) or 1.0
    return {k: v / total for k, v in by_class.items()}


def speed(onnx_path, x, workdir, rounds=15, threads=2):
    """Latency of devicenet's CPU backend (float32 weights) beside
    onnxruntime's CPU provider on the same export and input, both on
    ``threads`` threads, best of ``rounds`` alternating runs; and
    devicenet's time by op kind (each node's best of the rounds) beside the
    kind's share of the multiply-adds.  Returns (devicenet ms, onnxruntime
    ms, [(kind, time share, multiply-add share)], devicenet ms with its
    fused curves taken out, {class: (devicenet's share, onnxruntime's)}
    over CLASSES)."""
    import collections
    import onnxruntime as ort
    from devicenet import format as dnet
    from devicenet.backends.cpu import CPUBackend
    from devicenet.bench import layer_kind, multiply_adds
    from devicenet.convert import convert
    out = os.path.join(workdir, "speed.dnet")
    convert(onnx_path, out, weights="float32", preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]})
    g = dnet.load(out)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    be = CPUBackend(g, threads=threads)
    plain = CPUBackend(_without_curves(dnet.load(out)), threads=threads)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    runs = {"ours": lambda: be.run(xh), "ort": lambda: sess.run(None, feed), "plain": lambda: plain.run(xh)}
    best = dict.fromkeys(runs, np.inf)
    node_best = collections.defaultdict(lambda: np.inf)
    for run in runs.values():
        run()
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
        profile = []
        be.run(xh, profile=profile)
        for node, _, sec in profile:
            node_best[node.name] = min(node_best[node.name], sec)
    shapes, by_time, by_macs = g.shapes(), collections.Counter(), collections.Counter()
    for node in g.nodes:
        by_time[layer_kind(g, node)] += node_best[node.name]
        by_macs[layer_kind(g, node)] += multiply_adds(g, node, shapes)
    total_t, total_m = sum(by_time.values()), sum(by_macs.values())
    kinds = [(k, t / total_t, by_macs[k] / total_m) for k, t in by_time.most_common()]
    ours = collections.Counter()
    for k, t, _ in kinds:
        ours[_class_of_kind(k)] += t
    theirs = ort_classes(onnx_path, feed, threads)
    classes = {c: (ours[c], theirs[c]) for c in CLASSES}
    return best["ours"] * 1e3, best["ort"] * 1e3, kinds, best["plain"] * 1e3, classes


def zoo_models():
    """The model-zoo networks inside the onnx package's test data: {name: path}."""
    import onnx
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    return {os.path.basename(p)[6:-5]: p for p in sorted(glob.glob(os.path.join(root, "light_*.onnx")))}


def randomise(model, seed=0):
    """The light zoo networks hold their weights as ConstantOfShape nodes
    (one value per tensor, so every class scores the same): give each a
    random tensor of its shape instead, scaled as a trained network's are
    (He-scaled weights, positive batch-norm scales and variances)."""
    from onnx import numpy_helper
    rng = np.random.default_rng(seed)
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    readers = {}
    for node in g.node:
        for k, name in enumerate(node.input):
            readers.setdefault(name, (node.op_type, k))
    keep = []
    for node in g.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in consts:
            keep.append(node)
            continue
        shape = [int(v) for v in consts[node.input[0]]]
        op, k = readers.get(node.output[0], (None, None))
        if op == "BatchNormalization" and k in (1, 4):
            value = rng.uniform(0.5, 1.5, shape)
        elif op in ("Conv", "Gemm") and k == 1:
            fan_in = int(np.prod(shape[1:])) if op == "Conv" else min(shape)
            value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        else:
            value = rng.normal(0, 0.1, shape)
        g.initializer.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
    del g.node[:]
    g.node.extend(keep)
    return model


def check(run):
    """(status, detail) of one check: run() -> (rel, same top-5, ms)."""
    try:
        rel, same, ms = run()
    except Exception as e:  # the table records why a network does not convert
        return "fails", f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
    ok = rel <= TOLERANCE and same
    return ("matches" if ok else "differs"), f"rel {rel:.1e}, top-5 {'same' if same else 'differs'}"


@click.command()
@click.option("--opset", "opsets", type=int, multiple=True, help="Opsets to export at (default 17 and 13).")
@click.option("--only", help="Comma-separated torchvision constructors (e.g. resnet18,mobilenet_v3_small).")
@click.option("--size", type=int, help="Input size instead of each family's own.")
@click.option("--dynamo", is_flag=True, help="Also export with the dynamo exporter (opset 18).")
@click.option("--zoo/--no-zoo", default=True, help="Also check the onnx package's model-zoo networks.")
@click.option("--torchvision/--no-torchvision", "with_tv", default=True, help="Check the torchvision families.")
@click.option("--install-torchvision", is_flag=True,
              help="First pip install --no-deps torchvision==0.28.0 (into this Python).")
@click.option("--speed", "speed_of", help="Instead: time these constructors (comma-separated, opset 17) "
                                           "beside onnxruntime, with devicenet's time by op kind.")
def main(opsets, only, size, dynamo, zoo, with_tv, install_torchvision, speed_of):
    if install_torchvision:
        import subprocess
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "torchvision==0.28.0"], check=True)
    opsets = opsets or (17, 13)
    if speed_of:
        return speed_table(speed_of.split(","), size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if with_tv:
            if import_torchvision() is None:
                sys.exit("torchvision is not installed: pip install --no-deps torchvision==0.28.0")
            wanted = set(only.split(",")) if only else None
            for family, (ctor, own_size) in FAMILIES.items():
                if wanted and ctor not in wanted:
                    continue
                exports = [(f"opset {o}", o, False) for o in opsets] + ([("dynamo", 18, True)] if dynamo else [])
                for label, opset, dyn in exports:
                    path = os.path.join(tmp, f"{ctor}.onnx")

                    def run():
                        x = export(ctor, path, opset, size or own_size, dynamo=dyn)
                        return compare(path, x, tmp)
                    status, detail = check(run)
                    rows.append((f"{family} (torchvision)", label, status, detail))
                    print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
        if zoo:
            for name, path in zoo_models().items():
                def run():
                    import onnx
                    model = randomise(onnx.load(path))
                    weights = {i.name for i in model.graph.initializer}
                    image = next(i for i in model.graph.input if i.name not in weights)
                    dims = [d.dim_value or 224 for d in image.type.tensor_type.shape.dim]
                    x = np.random.default_rng(0).normal(size=dims).astype(np.float32)
                    random_path = os.path.join(tmp, f"{name}.onnx")
                    onnx.save(model, random_path)
                    return compare(random_path, x, tmp)
                status, detail = check(run)
                rows.append((f"{name} (onnx model zoo, light)", "random weights", status, detail))
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print("| network | export | result | detail |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    bad = sum(1 for r in rows if r[2] != "matches")
    print(f"\n{len(rows) - bad} of {len(rows)} convert and match (max |diff| / max |ref| <= {TOLERANCE:g}, "
          "same ordered top-5)")


def speed_table(constructors, size):
    """Print the --speed table (markdown)."""
    names = {ctor: family for family, (ctor, _) in FAMILIES.items()}
    print("| network | devicenet cpu | onnxruntime | of which curves | devicenet time by op kind "
          "(share of multiply-adds) | share of the time (devicenet / onnxruntime): "
          + ", ".join(CLASSES) + " |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for ctor in constructors:
            path = os.path.join(tmp, f"{ctor}.onnx")
            x = export(ctor, path, 17, size or next((s for c, s in FAMILIES.values() if c == ctor), 224))
            ours, theirs, kinds, plain, classes = speed(path, x, tmp)
            shares = ", ".join(f"{k} {t:.0%} ({m:.0%})" for k, t, m in kinds if t >= 0.01)
            split = ", ".join(f"{a:.0%} / {b:.0%}" for a, b in classes.values())
            print(f"| {names.get(ctor, ctor)} | {ours:.1f} ms | {theirs:.1f} ms | {ours - plain:.1f} ms "
                  f"| {shares} | {split} |", flush=True)


if __name__ == "__main__":
    main()
