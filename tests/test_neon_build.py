"""The NEON variants, cross-compiled with the distributions' default flags
(where the cross compilers are installed): every NEON variant holds NEON
float arithmetic, and on 32-bit ARM every other function holds none, so
that the module loads and runs on an ARMv6 board without NEON.

The kernel files include no Python header, so they compile for any target
without one; the real build and the tests on ARM run under emulation
(scripts/)."""

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parent.parent / "devicenet" / "backends" / "native"
# what Debian armhf's and Raspberry Pi OS's compilers target by default
ARMHF = ["-march=armv7-a+fp", "-mfpu=vfpv3-d16", "-mfloat-abi=hard"]
ARMV6 = ["-march=armv6+fp", "-mfpu=vfp", "-mfloat-abi=hard", "-marm"]

# NEON float arithmetic: on q registers (ARMv7) or on four lanes (AArch64)
ARM_NEON_MATH = re.compile(r"\tv(mla|fma|mul|add|sub)\.f32\tq\d")
AARCH64_NEON_MATH = re.compile(r"\tf(mla|mul|add|sub)\tv\d+\.4s")
# any NEON instruction at all: a q register, or a structure load or store
ARM_ANY_NEON = re.compile(r"\tv\S*\t.*\bq\d+\b|\tv(ld|st)[1-4]\.")
# integer work on vectors (the eight-bit kernels): any vector arrangement
AARCH64_ANY_NEON = re.compile(r"\tv\d+\.\d*[bhsd]\b|\bv\d+\.\d*[bhsd]\b")


def functions(objdump, objects):
    """{function: its instructions} in the objects."""
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", *map(str, objects)], capture_output=True,
                         text=True, check=True).stdout
    found, name = {}, None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            name = m.group(1)
            found[name] = []
        elif name and line.startswith(" "):
            found[name].append(line)
    return found


def build(tmp_path, compiler, flags, sources):
    def one(src):
        obj = tmp_path / (src.stem + ".o")
        subprocess.run([compiler, "-O3", "-fvisibility=hidden", *flags, "-c", str(src), "-o", str(obj)],
                       check=True, capture_output=True)
        return obj
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, sources))


def kernels():
    return sorted(NATIVE.glob("f32_*.c")) + sorted(NATIVE.glob("q8_*.c")) + \
        [NATIVE / n for n in ("cpu.c", "registry.c", "team.c")]


def neon_variants(found):
    return {name: insns for name, insns in found.items() if re.fullmatch(r"dn_(f32|q8)_\w+_neon(fma)?", name)}


def neon_work(name, insns, float_math, any_neon):
    """Whether a NEON variant does its work on NEON: float arithmetic, or
    for the eight-bit kernels (integer code) any NEON instruction."""
    pattern = any_neon if name.startswith("dn_q8_") else float_math
    return sum(bool(pattern.search(i)) for i in insns) > 0


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.mark.parametrize("flags", [ARMHF, ARMV6], ids=["armv7-debian", "armv6-raspberry-pi-os"])
def test_32_bit_arm_build_has_neon_variants_and_nothing_else_needs_neon(tmp_path, flags):
    need("arm-linux-gnueabihf-gcc", "arm-linux-gnueabihf-objdump")
    # (with ARMv7's VFPv3 flags the compiler itself emits no NEON: only the
    # NEON files need building; with ARMv6's, all of them are checked)
    sources = kernels() if flags is ARMV6 else sorted(NATIVE.glob("f32_*_neon*.c")) + sorted(NATIVE.glob("q8_*_neon*.c"))
    found = functions("arm-linux-gnueabihf-objdump", build(tmp_path, "arm-linux-gnueabihf-gcc", flags, sources))
    variants = neon_variants(found)
    # every op's NEON variant (the own GEMM's included, where built)
    ops = {f.stem[:-len("_scalar")] for f in NATIVE.glob("f32_*_scalar.c")}
    assert {re.sub(r"_\d+x\d+$", "", name[3:-len("_neon")]) for name in variants} >= \
        {re.sub(r"_\d+x\d+$", "", op) for op in ops}
    for name, insns in variants.items():
        assert neon_work(name, insns, ARM_NEON_MATH, ARM_ANY_NEON), name
    # the rest runs on ARMv6 CPUs without NEON (the NEON variants' own
    # helpers are inlined into them)
    for name, insns in found.items():
        if name not in variants:
            assert not [i for i in insns if ARM_ANY_NEON.search(i)], name


def test_aarch64_build_has_neon_variants(tmp_path):
    need("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-objdump")
    sources = sorted(NATIVE.glob("f32_*_neon*.c")) + sorted(NATIVE.glob("q8_*_neon*.c"))
    found = functions("aarch64-linux-gnu-objdump", build(tmp_path, "aarch64-linux-gnu-gcc", [], sources))
    variants = neon_variants(found)
    assert len(variants) >= len(list(NATIVE.glob("f32_*_scalar.c"))) + len(list(NATIVE.glob("q8_*_scalar.c")))
    for name, insns in variants.items():
        assert neon_work(name, insns, AARCH64_NEON_MATH, AARCH64_ANY_NEON), name
