"""Per-layer weight precision chosen by measurement on calibration photos.

Every conv and dense weight starts as per-channel int8.  For each layer the
converter picks the int8 clipping (the channel's largest magnitude, or the
one that minimises the weight's squared rounding error) that gives the
smaller error at the layer's output, shifts the bias by the mean error that
rounding introduces there (bias correction), then measures the layer's
sensitivity: how far the network's answers move (KL divergence of the
class probabilities from the float network's) when only that layer is
quantized.  A byte budget is then spent greedily on the layers whose
upgrade to 16 bits removes the most error per extra byte.
"""

import hashlib
import os

import numpy as np
from PIL import ImageEnhance, ImageOps

from .backends.base import last_uses
from .backends.cpu import OPS as CPU_OPS
from .errors import DeviceNetError
from .image import open_image, preprocess
from .quant import channel_absmax, nbytes, quantize

#: the file may grow to this multiple of the all-int8 file by default
DEFAULT_BUDGET = 1.2
#: the encoding a sensitive layer is upgraded to
UPGRADE = "int16"
#: calibration inputs used at most (more cost time, roughly linearly)
MAX_IMAGES = 12
#: the same when the integer layers are chosen too: their divergences are
#: a few 1e-4 each, and 12 inputs rank them by noise as much as by effect
#: (docs/ACCURACY.md)
INTEGER_IMAGES = 48
#: clip candidates, as fractions of a channel's largest magnitude (down to 0.21)
CLIP_RATIOS = 0.95 ** np.arange(31)
BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "calibration")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# The budget is for the whole file; keep a little back for the metadata
# (this report grows the JSON header) and alignment padding.
HEADER_RESERVE = 16 * 1024


def reserve(int8_bytes):
    """Bytes of the budget held back for metadata growth."""
    return min(HEADER_RESERVE, int8_bytes // 50)


def image_files(directory):
    """Image files under ``directory`` (recursively), in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def augment(img):
    """Four deterministic variants of a photo: as is, mirrored and cropped,
    darker and cropped, brighter with less contrast."""
    w, h = img.size
    crop = img.crop((w // 8, h // 8, w - w // 16, h - h // 16))
    return [img, ImageOps.mirror(crop),
            ImageEnhance.Brightness(img.crop((0, 0, w * 7 // 8, h * 7 // 8))).enhance(0.6),
            ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(1.3)).enhance(0.7)]


def calibration_inputs(spec, directory=None, limit=None):
    """Preprocessed calibration batch (N, H, W, 3): the user's photos in
    ``directory``, or the built-in photos and their augmentations."""
    limit = limit or MAX_IMAGES
    if directory is None:
        imgs = [v for path in image_files(BUILTIN_DIR) for v in augment(open_image(path))]
    else:
        paths = image_files(directory)
        if not paths:
            raise DeviceNetError(f"{directory}: no photos to calibrate with (looked for {', '.join(IMAGE_EXTENSIONS)})")
        if len(paths) > limit:  # spread the picks over the whole folder
            paths = [paths[i * len(paths) // limit] for i in range(limit)]
        imgs = [open_image(p) for p in paths]
        if len(imgs) < limit:  # few photos: add variants of them
            imgs += [v for img in imgs for v in augment(img)[1:]]
    return np.stack([preprocess(img, spec) for img in imgs[:limit]])


def default_spec(size):
    """Preprocessing for a model whose source did not say: centre crop, [-1, 1]."""
    return {"resize": int(round(size / 0.875)), "crop": size, "mean": [127.5] * 3, "std": [127.5] * 3}


def clip_candidates(w, encoding="int8", qmax=None):
    """Per-channel clip magnitudes: ``(absmax, mse)`` where ``mse`` minimises
    each channel's squared rounding error over CLIP_RATIOS (for integers
    up to ``qmax``, default the encoding's whole range)."""
    absmax = channel_absmax(w)
    rows = w.reshape(w.shape[0], -1)
    best_err = np.full(w.shape[0], np.inf)
    best = absmax.copy()
    for r in CLIP_RATIOS:
        clip = (absmax * np.float32(r)).astype(np.float32)
        err = ((quantize(w, encoding, clip, qmax).reshape(rows.shape) - rows) ** 2).sum(axis=1)
        better = err < best_err
        best_err[better], best[better] = err[better], clip[better]
    return absmax, best


def _run(nodes, cache, start, params, output):
    """Run ``nodes[start:]`` with ``params``, reading earlier activations
    from ``cache``; return ``output``.  New activations are freed after
    their last use, so memory stays at one layer's working set."""
    last = last_uses(nodes, start)
    values = {}
    for i, node in enumerate(nodes[start:], start):
        ins = [values[n] if n in values else cache[n] for n in node.inputs]
        ps = {role: params[t] for role, t in node.params.items()}
        values[node.outputs[0]] = CPU_OPS[node.op](ins, node.attrs, ps)
        for name in node.inputs:
            if last.get(name) == i and name != output:
                values.pop(name, None)
    return values[output] if output in values else cache[output]


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def kl(ref_logits, logits):
    """Mean KL divergence of softmax(logits) from softmax(ref_logits)."""
    lp, lq = _log_softmax(ref_logits.astype(np.float64)), _log_softmax(logits.astype(np.float64))
    return float((np.exp(lp) * (lp - lq)).sum(axis=-1).mean())


class Quantizer:
    """Float activations of a Builder's network on a calibration batch, and
    the per-layer int8 choices measured against them."""

    def __init__(self, builder, x):
        self.b = builder
        self.nodes = builder.nodes
        self.output = builder.nodes[-1].outputs[0]
        self.cache = {builder.input_name: np.asarray(x, np.float32)}
        for node in self.nodes:
            ins = [self.cache[n] for n in node.inputs]
            ps = {role: builder.params[t] for role, t in node.params.items()}
            self.cache[node.outputs[0]] = CPU_OPS[node.op](ins, node.attrs, ps)
        self.reference = self.cache[self.output]

    def _error(self, node, dw):
        """Pre-activation output error of ``node`` when its weight moves by ``dw``."""
        x = self.cache[node.inputs[0]]
        e = CPU_OPS[node.op]([x], {**node.attrs, "activation": "none"}, {"weight": dw})
        return e.reshape(-1, e.shape[-1]).astype(np.float64)

    def int8_choice(self, node):
        """(clip, quantized weight, corrected bias, clip kind) for one layer."""
        w = self.b.params[node.params["weight"]]
        bias_name = node.params.get("bias")
        best = None
        for kind, clip in zip(("absmax", "mse"), clip_candidates(w)):
            wq = quantize(w, "int8", clip)
            e = self._error(node, wq - w)
            shift = e.mean(axis=0) if bias_name else 0.0
            err = float(((e - shift) ** 2).mean())
            if best is None or err < best[0]:
                bias = None
                if bias_name:
                    bias = (self.b.params[bias_name] - shift).astype(np.float32)
                best = (err, clip, wq, bias, kind)
        return best[1:]

    def sensitivity(self, index, wq, bias):
        """KL divergence of the network's answers when only node ``index``
        uses ``wq`` (and ``bias``)."""
        node = self.nodes[index]
        params = dict(self.b.params)
        params[node.params["weight"]] = wq
        if bias is not None:
            params[node.params["bias"]] = bias
        return kl(self.reference, _run(self.nodes, self.cache, index, params, self.output))

    def evaluate(self, params):
        """(KL, top-1 agreement) of the network with ``params`` on the batch."""
        out = _run(self.nodes, self.cache, 0, params, self.output)
        agree = float((out.argmax(-1) == self.reference.argmax(-1)).mean())
        return kl(self.reference, out), agree


def spend(layers, budget_bytes):
    """Greedy knapsack: upgrade the layers with the most error removed per
    extra byte while the budget lasts.  ``layers`` is a list of
    ``(name, error, extra_bytes)``; returns the set of upgraded names."""
    order = sorted(layers, key=lambda l: (-l[1] / max(l[2], 1), l[0]))
    chosen, left = set(), budget_bytes
    for name, err, cost in order:
        if err > 0 and cost <= left:
            chosen.add(name)
            left -= cost
    return chosen


def choose_encodings(builder, meta, calibrate=None, budget=None, progress=None, arithmetic="float",
                     kl_budget=None, images=None):
    """Pick every conv and dense weight's encoding for a Builder's network.

    Returns ``(encodings, clips, report)``: tensor name -> encoding, tensor
    name -> per-channel int8 clip, and the report stored as the model's
    ``quantization`` metadata.  Bias corrections are written into the
    Builder's (float) biases.  With ``arithmetic="auto"`` the layers that
    run in integers are chosen too (calibrate_int.py, within ``kl_budget``):
    the report then holds them under ``integer`` and the integer layers'
    weight ranges under ``qmax``.
    """
    budget = DEFAULT_BUDGET if budget is None else float(budget)
    if not 1.0 <= budget <= 4.0:
        raise DeviceNetError(f"budget {budget} must be between 1 (all int8) and 4 times the all-int8 size")
    say = progress or (lambda msg: None)
    size = builder.input_shape[1]
    spec = meta.get("preprocess") or default_spec(size)
    if images is None and arithmetic == "auto":
        images = INTEGER_IMAGES
    x = calibration_inputs(spec, calibrate, images)
    if tuple(x.shape[1:]) != tuple(builder.input_shape[1:]):
        raise DeviceNetError(f"calibration inputs are {x.shape[1:]}, the model needs {tuple(builder.input_shape[1:])}")
    say(f"calibrating on {len(x)} {'photos' if calibrate else 'built-in photo variants'}")
    if arithmetic == "auto" and len(x) < INTEGER_IMAGES:
        say(f"  note: {len(x)} calibration inputs rank the integer layers roughly; "
            f"{INTEGER_IMAGES} or more of your photos (--calibrate DIR) rank them better")
    q = Quantizer(builder, x)

    encodings = {name: "float32" for name in builder.params}
    clips, layers, sens, kinds, corrected = {}, [], {}, {}, {}
    int8_bytes = sum(nbytes(a.shape, "float32") for a in builder.params.values())
    weight_nodes = [(i, n) for i, n in enumerate(builder.nodes) if "weight" in n.params]
    for count, (i, node) in enumerate(weight_nodes, 1):
        wname = node.params["weight"]
        shape = builder.params[wname].shape
        int8_bytes += nbytes(shape, "int8") - nbytes(shape, "float32")
        clip, wq, bias, kind = q.int8_choice(node)
        err = q.sensitivity(i, wq, bias)
        encodings[wname], clips[wname] = "int8", clip
        if bias is not None:
            corrected[node.params["bias"]] = bias
        sens[node.name], kinds[node.name] = err, kind
        layers.append((node.name, round(err, 9), nbytes(shape, UPGRADE) - nbytes(shape, "int8")))
        if count % 10 == 0 or count == len(weight_nodes):
            say(f"  measured {count}/{len(weight_nodes)} layers")

    chosen = spend(layers, int(budget * int8_bytes) - int8_bytes - reserve(int8_bytes))
    params = dict(builder.params)
    for i, node in weight_nodes:
        wname = node.params["weight"]
        if node.name in chosen:
            encodings[wname] = UPGRADE
            del clips[wname]
            corrected.pop(node.params.get("bias"), None)
            params[wname] = quantize(builder.params[wname], UPGRADE)
        else:
            params[wname] = quantize(builder.params[wname], "int8", clips[wname])
    plain_biases = {t: builder.params[t] for t in corrected}
    params.update(corrected)
    builder.params.update(corrected)
    integer_report = None
    if arithmetic == "auto":
        from .calibrate_int import choose_arithmetic
        say("choosing the layers that run in integers")
        integer_report, qmax = choose_arithmetic(q, params, encodings, clips, plain_biases, kl_budget,
                                                 progress)
        for node in q.nodes:
            if node.name in integer_report["nodes"] and "weight" in node.params:
                chosen.discard(node.name)
    total_kl, agree = q.evaluate(params)
    total = sum(nbytes(builder.params[t].shape, e) for t, e in encodings.items())
    summary = (f"{len(chosen)} of {len(weight_nodes)} layers {UPGRADE}, the rest int8 with bias correction; "
               f"weights {total / int8_bytes:.3f}x all-int8; on {len(x)} calibration inputs "
               f"top-1 agreement {agree * 100:.0f}%, KL {total_kl:.2g}")
    say("  " + summary)
    report = {
        "scheme": "auto",
        "default": "int8",
        "summary": summary,
        "method": "per-layer sensitivity (KL of class probabilities vs float), greedy byte budget, "
                  "per-channel clip choice, bias correction",
        "budget": budget,
        # the batch's digest tells whether a rebuild decoded the same photos alike
        "calibration": {"source": "user" if calibrate else "built-in", "inputs": int(len(x)),
                        "sha256": hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest()},
        "layers": {n.name: (UPGRADE if n.name in chosen else "int8") for _, n in weight_nodes},
        "clipping": {name: kind for name, kind in kinds.items() if kind != "absmax" and name not in chosen},
        "sensitivity": {name: float(f"{v:.3g}") for name, v in sens.items()},
    }
    if integer_report is not None:
        wnames = {n.name: n.params["weight"] for _, n in weight_nodes}
        # integer layers store int8 weights (int16 twelve-bit ones if depthwise)
        report["layers"].update({n: encodings[wnames[n]] for n in integer_report["nodes"] if n in wnames})
        report["integer"], report["qmax"] = integer_report, qmax
    return encodings, clips, report
