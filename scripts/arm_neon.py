"""Counts NEON and scalar float instructions per function in an ARM build of
the compiled kernels, and checks that every hot kernel has a NEON variant.

Input is ``objdump -d`` text of ``devicenet/backends/_native*.so`` built for
armhf (ARMv7, Thumb-2 or ARM) or arm64; the machine is read from the file
format line objdump prints.  Used by ``scripts/arm_check.sh``; stdlib only,
so it runs with any ``python3``.

    python3 scripts/arm_neon.py native.dis               # table, then the checks
    python3 scripts/arm_neon.py native.dis --report-only # table, checks as warnings
"""

import argparse
import json
import re
import sys

# The op families every build must cover with NEON: (family, pattern over
# function names, what the NEON variant must contain).  "float" means NEON
# float arithmetic (the point of the variant); "vector" means any NEON
# instruction, for kernels that only move data; None: the family needs no
# NEON variant (the GEMM's packing is portable C, run once per model).
# Update this list when a family is added or renamed; a function belongs to
# the first family whose pattern it matches.
FAMILIES = [
    # the eight-bit kernels: integer NEON (and their packing, portable C)
    ("q8-pack", r"(^|dn_)q8_gemm_pack", None),
    ("q8", r"(^|dn_)q8_", "vector"),
    ("dwconv", r"dwconv|depthwise", "float"),
    ("conv", r"conv_direct|direct_rows|f32_conv", "float"),
    ("gemm-pack", r"gemm.*pack|pack.*gemm", None),
    ("gemm", r"gemm", "float"),
    ("dense", r"dense", "float"),
    ("add", r"(^|_)v?add(_|$)", "float"),
    ("meanpool", r"mean_?pool|gavgpool|avgpool", "float"),
    ("scale", r"(^|_)scale(_|$)", "float"),
    ("bias-act", r"bias_act|epilogue", "float"),
]
# Functions with "neon" in their names that are not kernels (CPU detection,
# variant tables) and so need no NEON instructions of their own.
NOT_KERNELS = r"cpu|hwcap|detect|regist|variant|select"

FLOAT_OPS = {
    # ARMv7 VFP / NEON mnemonics (before the .f32/.f64 suffix)
    "arm": {"vadd", "vsub", "vmul", "vmla", "vmls", "vfma", "vfms", "vnmul", "vnmla",
            "vnmls", "vdiv", "vsqrt", "vmax", "vmin", "vmaxnm", "vminnm", "vabs", "vneg",
            "vpadd", "vpmax", "vpmin", "vrecpe", "vrecps", "vrsqrte", "vrsqrts", "vabd"},
    # AArch64 FP / Advanced SIMD
    "aarch64": {"fadd", "fsub", "fmul", "fmla", "fmls", "fmadd", "fmsub", "fnmadd",
                "fnmsub", "fnmul", "fdiv", "fsqrt", "fmax", "fmin", "fmaxnm", "fminnm",
                "fabs", "fneg", "faddp", "fmaxp", "fminp", "fmaxnmp", "fminnmp", "fmulx",
                "frecpe", "frecps", "frsqrte", "frsqrts", "fabd", "fmaxv", "fminv"},
}
HEADER = re.compile(r"^[0-9a-f]+ <([^>]+)>:\s*$")
# "  1a2c:\tvmla.f32\tq8, q9, q10"; with raw bytes, "  1a2c:\tef42 0d50 \tvmla.f32..."
# (the bytes end in a space before the tab: "fadd\t" is a mnemonic, not bytes)
INSN = re.compile(r"^\s*[0-9a-f]+:\t(?:(?:[0-9a-f]{2,8} )+\s*\t)?([a-z][a-z0-9.]*)\s*(.*)$")
ARM_VEC = re.compile(r"\b[qd]\d+\b")
A64_VEC = re.compile(r"\bv\d+\.(?:\d+)?[bhsd]\b|\bq\d+\b")


def machine(text):
    """'arm' (32-bit) or 'aarch64', from objdump's "file format" line."""
    m = re.search(r"file format (\S+)", text)
    fmt = m.group(1) if m else ""
    if "aarch64" in fmt or "arm64" in fmt:
        return "aarch64"
    if "arm" in fmt:
        return "arm"
    raise ValueError(f"not an ARM disassembly (file format {fmt or 'unknown'})")


def classify(arch, mnemonic, operands):
    """(is_float, is_neon) for one instruction."""
    if arch == "arm":
        base, _, suffix = mnemonic.partition(".")
        is_float = base in FLOAT_OPS["arm"] and suffix in ("f32", "f64", "f16")
        # VFP works on s (single) or d (double) registers; NEON float work is
        # f32 on d or q registers.  Any q register, or a d register in an
        # integer/untyped data instruction (vld1, vdup, vmov.i32...) is NEON.
        if is_float:
            return True, suffix != "f64" and bool(ARM_VEC.search(operands))
        # A d register alone is ambiguous (VFP doubles live there too): count
        # it only in instructions that exist for NEON alone.
        neon_only = (re.match(r"v(ld|st)[1-4]$|vdup|vzip|vuzp|vtrn|vext|vbsl|vbit|vbif|vrev"
                              r"|vtbl|vand|vorr|veor|vbic|vmvn", base)
                     or (base == "vmov" and suffix.startswith("i")))
        neon = bool(re.search(r"\bq\d+\b", operands)) or (
            bool(neon_only) and bool(re.search(r"\bd\d+\b", operands)))
        return False, neon
    vec = bool(A64_VEC.search(operands))
    return mnemonic in FLOAT_OPS["aarch64"], vec


def count(text):
    """{function: {"neon_float": n, "scalar_float": n, "neon": n, "insns": n}}, and the arch."""
    arch = machine(text)
    table, fn = {}, None
    for line in text.splitlines():
        h = HEADER.match(line)
        if h:
            fn = h.group(1)
            table.setdefault(fn, {"neon_float": 0, "scalar_float": 0, "neon": 0, "insns": 0})
            continue
        if fn is None:
            continue
        m = INSN.match(line)
        if not m or m.group(1) in (".word", ".short", ".byte"):
            continue
        is_float, neon = classify(arch, m.group(1), m.group(2))
        row = table[fn]
        row["insns"] += 1
        row["neon"] += neon
        if is_float:
            row["neon_float" if neon else "scalar_float"] += 1
    return arch, table


def family(name):
    for fam, pattern, need in FAMILIES:
        if re.search(pattern, name):
            return fam, need
    return None, None


def kernels(table):
    """The rows that belong to an op family (hot kernels), name -> family."""
    return {name: family(name)[0] for name in table if family(name)[0]}


def check(table):
    """The problems with this build, as sentences; empty when every family
    has a NEON variant and every NEON-named kernel has NEON work."""
    problems = []
    for name, row in sorted(table.items()):
        if "neon" not in name.lower() or re.search(NOT_KERNELS, name, re.I):
            continue
        fam, need = family(name)
        got = row["neon_float"] if need != "vector" else row["neon"]
        if not got:
            what = "NEON float arithmetic" if need != "vector" else "NEON instructions"
            problems.append(f"{name}: named NEON but has no {what} "
                            f"({row['scalar_float']} scalar float ops)")
    for fam, _, need in FAMILIES:
        if need is None:
            continue
        named = [n for n in table if family(n)[0] == fam and "neon" in n.lower()]
        if not named:
            problems.append(f"{fam}: no function with 'neon' in its name")
    return problems


def render(arch, table, only_kernels=True):
    # kernels: functions of an op family that do float work (not the
    # argument parsers and splitters around them), and anything named NEON
    rows = sorted(table.items()) if not only_kernels else sorted(
        (n, r) for n, r in table.items()
        if (family(n)[0] and r["neon_float"] + r["scalar_float"]) or "neon" in n.lower())
    width = max([len(n) for n, _ in rows] + [8])
    lines = [f"{'function':<{width}}  {'family':<9} {'NEON f32':>8} {'scalar fp':>9} "
             f"{'NEON all':>8} {'insns':>6}   ({arch})"]
    for name, r in rows:
        lines.append(f"{name:<{width}}  {family(name)[0] or '-':<9} {r['neon_float']:>8} "
                     f"{r['scalar_float']:>9} {r['neon']:>8} {r['insns']:>6}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("disassembly", help="objdump -d output of the built module")
    ap.add_argument("--report-only", action="store_true",
                    help="print the problems but exit 0 (a build from before the NEON kernels)")
    ap.add_argument("--json", help="also write the counts here")
    args = ap.parse_args(argv)
    with open(args.disassembly) as f:
        arch, table = count(f.read())
    print(render(arch, table))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arch": arch, "functions": table}, f, indent=1, sort_keys=True)
    problems = check(table)
    for p in problems:
        print(("warning: " if args.report_only else "FAIL: ") + p)
    if not problems:
        print(f"NEON: every op family has a NEON kernel with NEON work ({arch})")
    return 1 if problems and not args.report_only else 0


if __name__ == "__main__":
    sys.exit(main())
