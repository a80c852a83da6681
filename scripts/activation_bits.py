#!/usr/bin/env python3
"""How many bits EfficientNet-Lite's activations need: the answers' divergence
with every activation rounded, weights kept in float.

    pip install -e ".[test]"
    python scripts/activation_bits.py [--variant lite0] [--calibrate DIR] [--images 24]

Every input of every convolution and add is rounded to a uniform grid over
its whole observed range on the batch (one scale and zero point per
tensor, as the integer layers do, or one per channel), at 8, 10 and 12
bits, and the network runs on in float; printed is the KL divergence of
the class probabilities from the float network's and the top-1
agreement, on the calibration photos (default: the wallpaper views of
scripts/eval_photos.py).  Then eight bits everywhere but 12 on one kind of
tensor at a time, which shows where the bits matter, and the other way
round: twelve bits everywhere but eight (per tensor or per channel) on
one kind, which shows which tensors could be eight-bit maps in a network
whose others are sixteen-bit.  The weights stay float32 so that what is
measured is the activations alone.
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from build_default_model import checkpoint  # noqa: E402
from devicenet.backends.cpu import OPS  # noqa: E402
from devicenet.calibrate import Quantizer, calibration_inputs, default_spec, kl  # noqa: E402
from devicenet.convert import import_model  # noqa: E402


def rounded(v, lo, hi, bits):
    """v on a uniform grid of 2^bits levels over [lo, hi] (0 kept exact)."""
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    top = 2 ** bits - 1
    scale = np.maximum((hi - lo) / top, 1e-8)
    zero = np.clip(np.round(-lo / scale), 0, top)
    return ((np.clip(np.round(v / scale) + zero, 0, top) - zero) * scale).astype(np.float32)


def run(q, spec_of):
    """(KL, top-1 agreement) with each conv/add input t rounded as
    ``spec_of(t)`` says: (bits, per channel), or None for float."""
    values = {q.b.input_name: q.cache[q.b.input_name]}
    for node in q.nodes:
        ins = []
        for t in node.inputs:
            v, spec = values[t], spec_of(t) if node.op in ("conv", "add") else None
            if spec:
                bits, per_channel = spec
                ref = q.cache[t].reshape(-1, q.cache[t].shape[-1]) if per_channel else q.cache[t]
                axis = 0 if per_channel else None
                v = rounded(v, ref.min(axis=axis), ref.max(axis=axis), bits)
            ins.append(v)
        params = {role: q.b.params[name] for role, name in node.params.items()}
        values[node.outputs[0]] = OPS[node.op](ins, node.attrs, params)
    out = values[q.output]
    return kl(q.reference, out), float((out.argmax(-1) == q.reference.argmax(-1)).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="lite0")
    ap.add_argument("--calibrate", metavar="DIR", help="photos (default: the wallpaper views, fetched)")
    ap.add_argument("--images", type=int, default=24)
    args = ap.parse_args()
    photos = args.calibrate
    if photos is None:
        import eval_photos
        photos = eval_photos.large_folder(eval_photos.DEFAULT_CACHE)
    b, meta = import_model(checkpoint(args.variant))
    spec = meta.get("preprocess") or default_spec(b.input_shape[1])
    q = Quantizer(b, calibration_inputs(spec, photos, args.images))
    made_by = {n.outputs[0]: n for n in q.nodes}
    depthwise_in = {n.inputs[0] for n in q.nodes if n.op == "conv" and n.attrs.get("groups", 1) > 1}
    clamped = {t for t, n in made_by.items() if n.attrs.get("activation") in ("relu", "relu6")}
    depthwise_out = clamped - depthwise_in
    unclamped = set(made_by) - clamped
    image = q.b.input_name
    eight, eight_pc, twelve = (8, False), (8, True), (12, False)

    def mixed(kind, low, high):
        """``low`` on the tensors of ``kind``, ``high`` on the others."""
        return lambda t: low if t in kind else high

    rows = [(f"every tensor, {bits} bits{' per channel' if pc else ''}", lambda t, s=(bits, pc): s)
            for bits in (8, 10, 12, 16) for pc in (False, True) if not (pc and bits > 8)]
    rows += [
        ("8 bits, 12 on the depthwise layers' inputs", mixed(depthwise_in, twelve, eight)),
        ("8 bits, 12 on the depthwise layers' outputs", mixed(depthwise_out, twelve, eight)),
        ("8 bits, 12 on the unclamped tensors (projections, adds)", mixed(unclamped, twelve, eight)),
        ("12 bits, 8 on the depthwise layers' outputs and the image",
         mixed(depthwise_out | {image}, eight, twelve)),
        ("12 bits, 8 per channel on the depthwise layers' outputs", mixed(depthwise_out, eight_pc, twelve)),
        ("12 bits, 8 per channel on the depthwise layers' inputs", mixed(depthwise_in, eight_pc, twelve)),
        ("12 bits, 8 per channel on every ReLU6 output", mixed(clamped, eight_pc, twelve)),
    ]
    print(f"{args.variant}, {len(q.reference)} inputs, weights float32, activations rounded:")
    for label, spec_of in rows:
        d, agree = run(q, spec_of)
        print(f"  {label:58s} KL {d:.2g}  top-1 agreement {agree * 100:.0f}%", flush=True)


if __name__ == "__main__":
    main()
