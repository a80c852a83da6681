"""The ARM check's own logic (scripts/arm_neon.py, scripts/arm_runtime.py):
instruction classes on objdump text of both ARM machines, the per-family
NEON rule, and the logits comparison.  The check itself runs in emulated
userlands (scripts/arm_check.sh, docs/ARM.md)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import arm_neon  # noqa: E402
import arm_runtime  # noqa: E402

ARMHF = """
native.so:     file format elf32-littlearm

Disassembly of section .text:

00001000 <f32_dwconv_3x3_neon>:
    1000:\tvld1.32\t{d16-d17}, [r1]!
    1004:\tvmla.f32\tq8, q9, q10
    1008:\tvfma.f32\td16, d17, d18
    100c:\tvmax.f32\tq8, q8, q11
    1010:\tvst1.32\t{d16-d17}, [r0]!
    1014:\tbx\tlr

00001020 <f32_dwconv_3x3_scalar>:
    1020:\tvldr\ts15, [r1]
    1024:\tvmla.f32\ts14, s15, s13
    1028:\tvadd.f64\td0, d0, d1
    102c:\tvmov\td0, r0, r1
    1030:\tvstr\ts14, [r0]
    1034:\tbx\tlr
"""

ARM64 = """
native.so:     file format elf64-littleaarch64

Disassembly of section .text:

0000000000001000 <f32_gemm_4x8_neon>:
    1000:\tldr\tq0, [x1]
    1004:\tfmla\tv16.4s, v0.4s, v1.s[0]
    1008:\tfmul\tv17.4s, v17.4s, v2.4s
    100c:\tfadd\ts0, s0, s1
    1010:\tfmadd\td0, d1, d2, d3
    1014:\tret
"""


def test_armhf_tells_neon_from_vfp():
    arch, t = arm_neon.count(ARMHF)
    assert arch == "arm"
    neon, scalar = t["f32_dwconv_3x3_neon"], t["f32_dwconv_3x3_scalar"]
    assert (neon["neon_float"], neon["scalar_float"], neon["neon"], neon["insns"]) == (3, 0, 5, 6)
    # s registers and f64 on d registers are VFP; vmov d0, r0, r1 is VFP too
    assert (scalar["neon_float"], scalar["scalar_float"], scalar["neon"]) == (0, 2, 0)


def test_arm64_tells_vector_from_scalar():
    arch, t = arm_neon.count(ARM64)
    assert arch == "aarch64"
    row = t["f32_gemm_4x8_neon"]
    assert (row["neon_float"], row["scalar_float"], row["neon"]) == (2, 2, 3)


def test_objdump_of_another_machine_is_refused():
    with pytest.raises(ValueError):
        arm_neon.count("x.so:     file format elf64-x86-64\n")


def test_rule_needs_neon_work_in_every_family():
    _, t = arm_neon.count(ARMHF)
    problems = arm_neon.check(t)
    fams = {fam for fam, _, _ in arm_neon.FAMILIES}
    # dwconv is covered; every other family that needs NEON is reported
    assert not any(p.startswith("dwconv") for p in problems)
    assert {p.split(":")[0] for p in problems} == fams - {"dwconv", "gemm-pack", "q8-pack"}
    # a kernel named NEON with only scalar work is reported by name
    t["f32_add_neon"] = dict(t["f32_dwconv_3x3_scalar"])
    assert any(p.startswith("f32_add_neon: named NEON") for p in arm_neon.check(t))
    # the same name does not fail when it is CPU detection, not a kernel
    t2 = {"dn_cpu_has_neon": dict(t["f32_dwconv_3x3_scalar"])}
    assert not any(p.startswith("dn_cpu_has_neon") for p in arm_neon.check(t2))


@pytest.mark.parametrize("name, fam", [
    ("f32_dwconv_3x3_neon", "dwconv"), ("dn_depthwise_rows", "dwconv"),
    ("f32_conv_direct_neon", "conv"), ("dn_direct_rows", "conv"),
    ("f32_gemm_pack_neon", "gemm-pack"), ("f32_gemm_6x8_neon", "gemm"),
    ("f32_dense_q8_neon", "dense"), ("f32_add_neon", "add"), ("dn_add", "add"),
    ("f32_meanpool_neon", "meanpool"), ("dn_mean_pool", "meanpool"), ("dn_epilogue", "bias-act"),
    ("f32_bias_act_neon", "bias-act"), ("dn_split_window", None),
    ("dn_q8_gemm_8x8c1_neon", "q8"), ("dn_q8_dwconv_neon", "q8"), ("dn_q8_gemm_pack", "q8-pack"),
])
def test_families_match_old_and_new_names(name, fam):
    assert arm_neon.family(name)[0] == fam


def test_logits_comparison():
    ref = {"a.png": [float(i % 7) - 3.0 for i in range(20)]}
    ref["a.png"][4] = 9.0
    same = {"a.png": [v * (1 + 1e-6) for v in ref["a.png"]]}
    assert arm_runtime.compare_logits(ref, same, 1e-4)[0] == []
    off = {"a.png": list(ref["a.png"])}
    off["a.png"][0] += 9.0 * 2e-4       # beyond 1e-4 of the largest |logit|
    assert any("logits differ" in p for p in arm_runtime.compare_logits(ref, off, 1e-4)[0])
    swapped = {"a.png": list(ref["a.png"])}
    swapped["a.png"][4] = -9.0          # the top class drops out
    assert any("top-5" in p for p in arm_runtime.compare_logits(ref, swapped, 1e-4)[0])
    assert arm_runtime.compare_logits(ref, {}, 1e-4)[0]

    # documents: a float model to rtol; an integer one to integer_rtol, and
    # the same file in float arithmetic to rtol
    assert arm_runtime.compare({"logits": ref}, {"logits": same}, 1e-4)[0] == []
    assert arm_runtime.compare({"logits": ref}, {"logits": off}, 1e-4)[0]
    both = {"integer": True, "logits": ref, "float_logits": ref}
    assert arm_runtime.compare(both, {"integer": True, "logits": off, "float_logits": same}, 1e-4, 1e-3)[0] == []
    far = {"a.png": list(ref["a.png"])}
    far["a.png"][0] += 9.0 * 2e-3       # beyond 1e-3 of the largest |logit|
    assert any("logits differ" in p for p in arm_runtime.compare(
        both, {"integer": True, "logits": far, "float_logits": same}, 1e-4, 1e-3)[0])
    assert any(p.startswith("float arithmetic") for p in arm_runtime.compare(
        both, {"integer": True, "logits": same, "float_logits": off}, 1e-4, 1e-3)[0])
    assert arm_runtime.compare(both, {"logits": ref}, 1e-4)[0]
    # a document of another form, or an integer one without its float twin, is a problem, not a crash
    assert arm_runtime.compare(ref, {"logits": ref}, 1e-4)[0]
    assert arm_runtime.compare({"integer": True, "logits": ref}, {"integer": True, "logits": ref}, 1e-4)[0]


def test_variant_listings_of_either_shape():
    # the registry's (name, features, selected, available, calls) tuples
    rows = arm_runtime._rows([("f32_add_neon", ("neon",), True, True, 3),
                              ("f32_add_scalar", (), False, True, 0)])
    assert rows == [("f32_add_neon", True), ("f32_add_scalar", False)]
    assert arm_runtime._rows([{"name": "a", "selected": True}]) == [("a", True)]


def test_selected_variant_rule():
    ops = {"dwconv": [{"name": "f32_dwconv_neon", "selected": True},
                      {"name": "f32_dwconv_scalar", "selected": False}]}
    assert arm_runtime.check_selected(ops, "neon") == []
    assert arm_runtime.check_selected(ops, "scalar")
    # a CPU without NEON: selecting a NEON variant is the failure
    assert arm_runtime.check_selected(ops, "neon", forbid=True)
    flipped = {"dwconv": [dict(r, selected=not r["selected"]) for r in ops["dwconv"]]}
    assert arm_runtime.check_selected(flipped, "neon", forbid=True) == []
    ops["gemm"] = [{"name": "f32_gemm_neon", "selected": False}]
    assert arm_runtime.check_selected(ops, "neon")
    # an op with no NEON variant built (numpy's BLAS) has nothing to select
    ops["gemm"] = [{"name": "f32_gemm_blas", "selected": True}]
    assert arm_runtime.check_selected(ops, "neon") == []
