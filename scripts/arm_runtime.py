"""What a build of devicenet does at run time, as JSON, for comparing an ARM
build with the x86 one (``scripts/arm_check.sh`` runs it on both sides).

    python3 scripts/arm_runtime.py variants              # kernel variants, selected one per op
    python3 scripts/arm_runtime.py logits OUT.json        # shipped model on the three test photos
    python3 scripts/arm_runtime.py compare X86.json ARM.json [--rtol 1e-4] [--integer-rtol 1e-2]

``variants`` needs ``_native.variants`` (the kernel registry); where the
build has none it says so and exits 0 with ``{"registry": false}``.
``compare`` needs nothing but the standard library.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg"]
#: logits of integer layers against x86's, relative to the largest (compare)
INTEGER_RTOL = 1e-2


def _rows(listing):
    """Normalise one op's variant listing to [(name, selected)]: the registry
    may list dicts, (name, selected, ...) tuples or plain names."""
    rows = []
    for v in listing:
        if isinstance(v, dict):
            rows.append((str(v.get("name")), bool(v.get("selected"))))
        elif isinstance(v, (tuple, list)):
            # (name, features, selected, available, calls): the first bool
            rows.append((str(v[0]), next((x for x in v[1:] if isinstance(x, bool)), False)))
        else:
            rows.append((str(v), False))
    return rows


def variants():
    from devicenet.backends import _native
    fn = getattr(_native, "variants", None)
    if fn is None:
        return {"registry": False}
    try:
        listing = fn()
    except TypeError:
        ops = getattr(_native, "ops", None)
        ops = ops() if callable(ops) else ops
        listing = {op: fn(op) for op in (ops or [])}
    if not isinstance(listing, dict):
        # a flat listing of (op, name, selected) rows
        by_op = {}
        for row in listing:
            row = dict(row) if isinstance(row, dict) else {"op": row[0], "name": row[1],
                                                           "selected": row[2]}
            by_op.setdefault(row["op"], []).append(row)
        listing = by_op
    features = getattr(_native, "cpu_features", None)
    return {"registry": True,
            "cpu_features": list(features()) if callable(features) else None,
            "ops": {op: [{"name": n, "selected": s} for n, s in _rows(v)]
                    for op, v in listing.items()}}


def render_variants(found):
    """One line per op: the selected variant, then what else was built."""
    lines = []
    if found.get("cpu_features") is not None:
        lines.append("CPU features: " + (" ".join(found["cpu_features"]) or "(none)"))
    width = max([len(op) for op in found["ops"]] + [2])
    for op, rows in sorted(found["ops"].items()):
        chosen = [r["name"] for r in rows if r["selected"]] or ["(none)"]
        others = [r["name"] for r in rows if not r["selected"]]
        lines.append(f"{op:<{width}}  {', '.join(chosen)}"
                     + (f"   (also built: {', '.join(others)})" if others else ""))
    return "\n".join(lines)


def check_selected(ops, isa, forbid=False):
    """Problems (sentences) where an op's selected variant is not for isa
    (or, with forbid, is for isa: a CPU without it must not run it)."""
    problems = []
    for op, rows in sorted(ops.items()):
        chosen = [r["name"] for r in rows if r["selected"]]
        if not forbid and not any(isa.lower() in r["name"].lower() for r in rows):
            # nothing of ours to select (numpy's BLAS): whether every op
            # family has a variant for isa is arm_neon.py's check
            continue
        if len(chosen) != 1:
            problems.append(f"{op}: {len(chosen)} variants selected, expected one")
        elif (isa.lower() in chosen[0].lower()) == forbid:
            problems.append(f"{op}: {chosen[0]} is selected, {'a' if forbid else 'not a'} {isa} "
                            f"variant (built: {', '.join(r['name'] for r in rows)})")
    if not ops:
        problems.append("the registry lists no ops")
    return problems


def logits():
    """The compiled CPU backend's logits for the shipped model on each photo:
    ``{"logits": {photo: [...]}}``; for a model with integer layers also
    ``"integer": true`` and the logits of the same file with its integer
    plan set aside (``"float_logits"``), which must agree to float
    rounding."""
    import numpy as np
    import devicenet
    from devicenet import format as dnet
    from devicenet.backends import create
    from devicenet.integer import float_arithmetic
    from devicenet.image import open_image, preprocess

    g = dnet.load(devicenet.default_model_path())
    data = os.path.join(ROOT, "tests", "data")
    x = np.stack([preprocess(open_image(os.path.join(data, p)), g.meta["preprocess"])
                  for p in PHOTOS])

    def run(graph):
        y = create(graph, "cpu", fallback=False).run(np.asarray(x, np.float32))
        return {p: [float(v) for v in y[i]] for i, p in enumerate(PHOTOS)}
    doc = {"logits": run(g)}
    if (g.meta.get("integer") or {}).get("nodes"):
        doc["integer"] = True
        doc["float_logits"] = run(float_arithmetic(g))
    return doc


def top(values, k=5):
    return sorted(range(len(values)), key=lambda i: -values[i])[:k]


def compare_logits(want, got, rtol):
    """Problems (sentences) between two {photo: logits}: the same top-5 in
    the same order, and every logit within rtol of the photo's largest
    |logit| (relative to the scale of the output, so that logits near zero
    are not held to a tighter bound than the arithmetic allows)."""
    problems, lines = [], []
    for photo, ref in want.items():
        ours = got.get(photo)
        if ours is None or len(ours) != len(ref):
            problems.append(f"{photo}: missing or wrong length")
            continue
        scale = max(abs(v) for v in ref)
        diff = max(abs(a - b) for a, b in zip(ours, ref))
        lines.append(f"{photo}: top-5 {top(ours)} (x86 {top(ref)}), "
                     f"max |diff| {diff:.2e} = {diff / scale:.2e} of max |logit|")
        if top(ours) != top(ref):
            problems.append(f"{photo}: top-5 {top(ours)} differs from x86's {top(ref)}")
        if diff > rtol * scale:
            problems.append(f"{photo}: logits differ by {diff:.3g}, more than {rtol:g} x {scale:.3g}")
    return problems, lines


def compare(want, got, rtol, integer_rtol=INTEGER_RTOL):
    """Problems and report lines between two ``logits`` documents.  A model
    with integer layers is held to ``integer_rtol``: its integers are the
    same on every machine, but a float value that ends within float
    rounding of a step's edge where it enters an integer layer may land one
    step apart, and that step carries on; the same file in float arithmetic
    is held to ``rtol``."""
    if "logits" not in want or "logits" not in got:
        return ["a logits document without logits (written by another version?)"], []
    if want.get("integer") != got.get("integer"):
        return ["one side ran integer layers, the other did not"], []
    problems, lines = compare_logits(want["logits"], got["logits"], integer_rtol if want.get("integer") else rtol)
    if want.get("integer"):
        p, l = compare_logits(want.get("float_logits", {}), got.get("float_logits", {}), rtol)
        if not want.get("float_logits"):
            p.append("no float-arithmetic logits to compare")
        problems += [f"float arithmetic: {x}" for x in p]
        lines += [f"float arithmetic: {x}" for x in l]
    return problems, lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    va = sub.add_parser("variants")
    va.add_argument("--expect", metavar="ISA",
                    help="fail unless every op's selected variant has ISA in its name")
    va.add_argument("--forbid", metavar="ISA",
                    help="fail if any op's selected variant has ISA in its name")
    lo = sub.add_parser("logits")
    lo.add_argument("out")
    co = sub.add_parser("compare")
    co.add_argument("want")
    co.add_argument("got")
    co.add_argument("--rtol", type=float, default=1e-4)
    co.add_argument("--integer-rtol", type=float, default=INTEGER_RTOL)
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    if args.cmd == "variants":
        found = variants()
        if found["registry"]:
            print(render_variants(found))
        else:
            print("variants: this build has no kernel registry (_native.variants); not checked")
            return 0
        problems = check_selected(found["ops"], args.expect) if args.expect else []
        if args.forbid:
            problems += check_selected(found["ops"], args.forbid, forbid=True)
        for p in problems:
            print("FAIL: " + p)
        return 1 if problems else 0
    elif args.cmd == "logits":
        with open(args.out, "w") as f:
            json.dump(logits(), f)
    else:
        with open(args.want) as f, open(args.got) as g:
            problems, lines = compare(json.load(f), json.load(g), args.rtol, args.integer_rtol)
        print("\n".join(lines))
        for p in problems:
            print("FAIL: " + p)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
