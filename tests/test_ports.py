"""Board detection from fake sysroots, profile decisions, and malformed profiles."""

import os
import re
import sys

from conftest import cli_runner
import pytest

import devicenet
from devicenet import ports
from devicenet.cli import main
from devicenet.errors import DeviceNetError

ARMV7_FEATURES = "half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm"

BOARDS = {
    # name: (device-tree model, /proc/cpuinfo, machine)
    "raspberry-pi-2": ("Raspberry Pi 2 Model B Rev 1.1\x00",
                       f"processor\t: 0\nmodel name\t: ARMv7 Processor rev 5 (v7l)\nFeatures\t: {ARMV7_FEATURES}\n"
                       "CPU implementer\t: 0x41\nCPU part\t: 0xc07\n\nHardware\t: BCM2835\nRevision\t: a01041\n",
                       "armv7l"),
    "beaglebone-black": ("TI AM335x BeagleBone Black\x00",
                         "processor\t: 0\nmodel name\t: ARMv7 Processor rev 2 (v7l)\n"
                         "Features\t: half thumb fastmult vfp edsp thumbee neon vfpv3 tls vfpd32\n"
                         "CPU part\t: 0xc08\n\nHardware\t: Generic AM33XX (Flattened Device Tree)\n", "armv7l"),
    "jetson-tk1": ("NVIDIA Jetson TK1\x00",
                   f"processor\t: 0\nFeatures\t: {ARMV7_FEATURES}\nCPU part\t: 0xc0f\n"
                   "processor\t: 1\nCPU part\t: 0xc0f\n\nHardware\t: NVIDIA Tegra SoC (Flattened Device Tree)\n",
                   "armv7l"),
}

DECISIONS = {
    # name: (backends, threads, residency)
    "raspberry-pi-2": (["cpu"], 4, "resident"),
    "beaglebone-black": (["cpu"], 1, "streamed"),
    "jetson-tk1": (["opencl", "cpu"], 4, "resident"),
}


def make_sysroot(root, model=None, cpuinfo=""):
    """A directory that looks like / to detection."""
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(cpuinfo)
    if model is not None:
        (root / "proc" / "device-tree").mkdir(exist_ok=True)
        (root / "proc" / "device-tree" / "model").write_text(model)
    return str(root)


@pytest.fixture(autouse=True)
def no_user_overrides(monkeypatch):
    for var in ("DEVICENET_PORT", "DEVICENET_PORTS", "DEVICENET_SYSROOT", "DEVICENET_MACHINE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_each_board_is_detected_with_its_decisions(tmp_path, board):
    model, cpuinfo, machine = BOARDS[board]
    found = ports.detect(make_sysroot(tmp_path, model, cpuinfo), machine)
    p = found.profile
    assert p.name == board and not p.generic and not found.note
    assert (p.backends, p.threads, p.residency) == DECISIONS[board]
    assert p.path.endswith(f"{board}.toml")
    assert found.candidates[0][1] == board


def test_old_pi_kernel_without_device_tree_is_known_by_soc_and_revision(tmp_path):
    root = make_sysroot(tmp_path, None, "CPU part\t: 0xc07\nHardware\t: BCM2709\nRevision\t: a21041\n")
    assert ports.select(sysroot=root, machine="armv7l").name == "raspberry-pi-2"


def test_unknown_arm_board_gets_generic_armv7_with_a_note(tmp_path):
    # Same CPU core as a Pi 2 (0xc07), but nothing else matches: not a Pi 2.
    root = make_sysroot(tmp_path, "Acme Widget Board\x00",
                        f"Features\t: {ARMV7_FEATURES}\nCPU part\t: 0xc07\nHardware\t: Allwinner sun8i\n")
    found = ports.detect(root, "armv7l")
    assert found.profile.name == "generic-armv7"
    assert "Acme Widget Board" in found.note and "generic-armv7" in found.note
    assert found.profile.backends == ["cpu"] and found.profile.residency == "streamed"


@pytest.mark.parametrize("machine, name", [("x86_64", "generic-x86_64"), ("aarch64", "generic-aarch64"),
                                           ("AMD64", "generic-x86_64")])
def test_generic_profiles_by_architecture(tmp_path, machine, name):
    root = make_sysroot(tmp_path, None, "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse sse2 avx2\n")
    found = ports.detect(root, machine)
    assert found.profile.name == name and found.profile.generic
    assert found.facts.board == "Some CPU"
    assert found.profile.backends == ["cpu"] and found.profile.threads is None


def test_unknown_architecture_is_not_an_error(tmp_path):
    found = ports.detect(make_sysroot(tmp_path), "riscv64")
    assert found.profile.backends == ["cpu"] and found.profile.residency == "resident"
    assert "riscv64" in found.note


def test_environment_redirects_detection(tmp_path, monkeypatch):
    model, cpuinfo, machine = BOARDS["beaglebone-black"]
    monkeypatch.setenv("DEVICENET_SYSROOT", make_sysroot(tmp_path, model, cpuinfo))
    monkeypatch.setenv("DEVICENET_MACHINE", machine)
    assert ports.select().name == "beaglebone-black"
    monkeypatch.setenv("DEVICENET_PORT", "jetson-tk1")
    assert ports.select().name == "jetson-tk1"


def test_port_by_name_overrides_detection_and_unknown_names_fail(tmp_path):
    root = make_sysroot(tmp_path, *BOARDS["raspberry-pi-2"][:2])
    assert ports.select("beaglebone-black", sysroot=root, machine="armv7l").name == "beaglebone-black"
    with pytest.raises(DeviceNetError, match="unknown port 'pi9'.*raspberry-pi-2"):
        ports.select("pi9")


def test_shipped_profiles_have_sourced_references():
    table = ports.profiles()
    assert {"raspberry-pi-2", "beaglebone-black", "jetson-tk1", "generic-armv7", "generic-aarch64",
            "generic-x86_64", "raspberry-pi-1", "raspberry-pi-3", "raspberry-pi-4", "raspberry-pi-5",
            "raspberry-pi-zero-2-w", "jetson-nano", "jetson-orin-nano"} <= set(table)
    alexnet = {(p, r.backend, r.ms) for p in table for r in table[p].references_for("alexnet")}
    assert {("raspberry-pi-2", "cpu", 3800), ("raspberry-pi-2", "cpu", 3200), ("beaglebone-black", "cpu", 5500),
            ("jetson-tk1", "opencl", 34), ("jetson-tk1", "cpu", 585)} <= alexnet
    assert all(r.source for p in table.values() for r in p.references)


def test_load_follows_the_profile(tmp_path):
    pi = devicenet.load(port="raspberry-pi-2")
    bbb = devicenet.load(port="beaglebone-black")
    assert pi.port.name == "raspberry-pi-2" and pi.backend == "cpu"
    assert bbb._backend.residency == "streamed" and pi._backend.residency == "resident"


def test_opencl_profile_falls_back_to_cpu_without_opencl(monkeypatch, capsys):
    # None in sys.modules makes `import devicenet.backends.opencl` fail, as
    # on a board without pyopencl.
    monkeypatch.setitem(sys.modules, "devicenet.backends.opencl", None)
    model = devicenet.load(port="jetson-tk1")
    assert model.backend == "cpu"
    assert "OpenCL unavailable, using the CPU backend" in capsys.readouterr().err
    with pytest.raises(DeviceNetError, match="OpenCL backend unavailable"):
        devicenet.load(port="jetson-tk1", backend="opencl")


# --- captured boards (tests/data/sysroots) -------------------------------------

SYSROOTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sysroots")
SYSROOTS = {
    # folder: (uname -m on that board, the profile it must get)
    "raspberry-pi-1-b": ("armv6l", "raspberry-pi-1"),
    "raspberry-pi-zero-w": ("armv6l", "raspberry-pi-1"),
    "raspberry-pi-2-b": ("armv7l", "raspberry-pi-2"),
    "raspberry-pi-3-b": ("armv7l", "raspberry-pi-3"),
    "raspberry-pi-3-b-plus": ("aarch64", "raspberry-pi-3"),
    "raspberry-pi-4-b": ("aarch64", "raspberry-pi-4"),
    "raspberry-pi-400": ("armv7l", "raspberry-pi-4"),
    "raspberry-pi-5": ("aarch64", "raspberry-pi-5"),
    "raspberry-pi-zero-2-w": ("armv7l", "raspberry-pi-zero-2-w"),
    "jetson-nano": ("aarch64", "jetson-nano"),
    "jetson-orin-nano": ("aarch64", "jetson-orin-nano"),
    "jetson-tk1": ("armv7l", "jetson-tk1"),
    "beaglebone-black": ("armv7l", "beaglebone-black"),
    "rock64": ("aarch64", "generic-aarch64"),
    "orange-pi-pc": ("armv7l", "generic-armv7"),
    "x86-64-server": ("x86_64", "generic-x86_64"),
}

#: independent facts to check the profiles against: the core each CPU part
#: names (ARM's part numbers) and the GPU family of each SoC
CORE_OF_PART = {"0xb76": "ARM1176", "0xc07": "Cortex-A7", "0xc08": "Cortex-A8", "0xc0f": "Cortex-A15",
                "0xd03": "Cortex-A53", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76",
                "0xd42": "Cortex-A78AE"}
GPU_OF_SOC = {"brcm,bcm2835": "VideoCore IV", "brcm,bcm2836": "VideoCore IV", "brcm,bcm2837": "VideoCore IV",
              "brcm,bcm2711": "VideoCore VI", "brcm,bcm2712": "VideoCore VII", "nvidia,tegra124": "Kepler",
              "nvidia,tegra210": "Maxwell", "nvidia,tegra234": "Ampere", "ti,am33xx": "SGX530"}


def captured(folder):
    machine, expected = SYSROOTS[folder]
    return ports.detect(os.path.join(SYSROOTS_DIR, folder), machine), expected


def board_profiles():
    return {name: p for name, p in ports.profiles().items() if not p.generic}


def test_every_captured_sysroot_is_listed_and_every_board_has_one():
    folders = {e for e in os.listdir(SYSROOTS_DIR) if os.path.isdir(os.path.join(SYSROOTS_DIR, e))}
    assert folders == set(SYSROOTS)
    assert set(board_profiles()) <= {expected for _, expected in SYSROOTS.values()}


@pytest.mark.parametrize("folder", sorted(SYSROOTS))
def test_captured_board_gets_its_profile(folder):
    found, expected = captured(folder)
    assert found.profile.name == expected
    if found.profile.generic:
        assert expected in found.note
    else:
        assert not found.note and found.candidates[0][1] == expected


@pytest.mark.parametrize("folder", sorted(SYSROOTS))
def test_no_two_profiles_claim_one_board(folder):
    found, expected = captured(folder)
    table = ports.profiles()
    claims = [name for s, name, _ in found.candidates if not table[name].generic and s >= ports.BOARD_SCORE]
    assert claims == ([] if table[expected].generic else [expected])


@pytest.mark.parametrize("folder", sorted(f for f in SYSROOTS if not f.startswith(("rock64", "orange", "x86"))))
def test_profile_facts_agree_with_the_captured_cpuinfo(folder):
    found, _ = captured(folder)
    f, p = found.facts, found.profile
    hw = p.hardware
    assert hw["cores"] == f.cores
    assert ("neon" in hw["simd"]) == f.has_feature("neon")
    assert all(f.has_feature(s) for s in hw["simd"]), (hw["simd"], f.features)
    assert set(f.cpu_part) <= set(p.detect["cpu_part"])
    assert all(CORE_OF_PART[part] in hw["cpu"] for part in f.cpu_part), hw["cpu"]
    if f.compatible:  # (an old kernel without a device tree names no SoC)
        socs = [c for c in f.compatible if c in GPU_OF_SOC]
        assert socs and all(re.search(rf"\b{GPU_OF_SOC[c]}\b", hw["gpu"]) for c in socs), hw["gpu"]
    # A GPU without OpenCL: the CPU comes first.
    assert (p.backends[0] == "opencl") == (not re.search(r"\bno (vendor )?OpenCL\b", hw["gpu"]))


@pytest.mark.parametrize("name", sorted(board_profiles()))
def test_board_decisions_follow_the_hardware(name):
    p = ports.profiles()[name]
    memory = p.hardware["memory_mb"]
    smallest = min(memory) if isinstance(memory, list) else memory
    # Under 1 GB, weights stay 8-bit and are decoded per layer.
    assert p.residency == ("streamed" if smallest < 1024 else "resident")
    assert p.threads == p.hardware["cores"]
    assert p.env.get("OPENBLAS_NUM_THREADS") == str(p.threads)
    assert p.references or p.references_note.startswith("none published")
    assert ("neon" in p.hardware["simd"]) == (p.arch != "armv6")


def test_benchmark_finds_the_published_lite0_timing():
    from devicenet import bench
    refs = [r for r in bench.standing(ports.profiles(), "efficientnet-lite0", 49.0) if r["port"] == "raspberry-pi-4"]
    assert len(refs) == 1 and refs[0]["speedup"] == 1.0 and "dev.to" in refs[0]["source"]


def test_revision_codes_cannot_be_mistaken_for_another_boards():
    # Detection compares the end of the code (over-volted boards prefix it).
    codes = [(c, name) for name, p in ports.profiles().items() for c in p.detect.get("revision", [])]
    for code, name in codes:
        assert not [(c, n) for c, n in codes if n != name and c.endswith(code)], code


def test_device_tree_is_read_from_sys_firmware_when_proc_has_none():
    found, _ = captured("jetson-orin-nano")
    assert found.facts.compatible[0] == "nvidia,p3768-0000+p3767-0005"
    assert found.facts.model == "NVIDIA Orin Nano Developer Kit"


def test_cpuinfo_model_line_stands_in_for_a_missing_device_tree(tmp_path):
    with open(os.path.join(SYSROOTS_DIR, "raspberry-pi-4-b", "proc", "cpuinfo")) as f:
        root = make_sysroot(tmp_path, None, f.read())
    found = ports.detect(root, "aarch64")
    assert found.facts.model == "Raspberry Pi 4 Model B Rev 1.5" and found.facts.compatible == []
    assert found.profile.name == "raspberry-pi-4"


def test_x86_model_number_is_not_a_board_name():
    found, _ = captured("x86-64-server")
    assert found.facts.model == "" and found.facts.cores == 2
    assert found.facts.board.startswith("Intel(R) Xeon(R)")


def test_explain_names_the_device_tree_and_missing_references():
    lines = ports.explain(captured("raspberry-pi-zero-2-w")[0])
    text = "\n".join(lines)
    assert "raspberrypi,model-zero-2-w brcm,bcm2837" in text
    assert "reference: none published" in text
    assert "warning" not in text


# --- malformed profiles ---------------------------------------------------------

GOOD = """name = "my-board"
title = "My board"
arch = "armv7"
[detect]
model = ["My board"]
[run]
backends = ["cpu"]
threads = 2
residency = "streamed"
[[reference]]
net = "alexnet"
ms = 1000
source = "my lab notebook"
"""


@pytest.mark.parametrize("old, new, field", [
    ('residency = "streamed"', 'residency = "sometimes"', "run.residency"),
    ('backends = ["cpu"]', 'backends = ["gpu"]', "run.backends"),
    ('threads = 2', 'threads = "two"', "run.threads"),
    ('threads = 2', 'threads = 0', "run.threads"),
    ('name = "my-board"', 'name = "other"', "name"),
    ('arch = "armv7"\n', '', "arch"),
    ('model = ["My board"]', 'colour = ["red"]', "detect.colour"),
    ('model = ["My board"]', 'model = "My board"', "detect.model"),
    ('source = "my lab notebook"', '', "reference[0].source"),
    ('ms = 1000', 'ms = -5', "reference[0].ms"),
    ('title = "My board"', 'title = "My board"\nreferences_note = 3', "references_note"),
])
def test_malformed_profile_names_file_and_field(tmp_path, monkeypatch, old, new, field):
    path = tmp_path / "my-board.toml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new))
    monkeypatch.setenv("DEVICENET_PORTS", str(tmp_path))
    with pytest.raises(DeviceNetError) as e:
        ports.profiles()
    assert str(path) in str(e.value) and repr(field) in str(e.value)


def test_extra_profile_dir_adds_a_board(tmp_path, monkeypatch):
    (tmp_path / "my-board.toml").write_text(GOOD)
    monkeypatch.setenv("DEVICENET_PORTS", str(tmp_path))
    root = make_sysroot(tmp_path / "root", "My board rev 3\x00", "")
    p = ports.select(sysroot=root, machine="armv7l")
    assert (p.name, p.threads, p.residency) == ("my-board", 2, "streamed")


def test_invalid_toml_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "broken.toml").write_text("name = [unclosed\n")
    monkeypatch.setenv("DEVICENET_PORTS", str(tmp_path))
    with pytest.raises(DeviceNetError, match="broken.toml: not valid TOML"):
        ports.profiles()


# --- the command ------------------------------------------------------------------

def run_cli(*args, env=None):
    return cli_runner().invoke(main, list(args), env=env)


def test_ports_command_marks_the_detected_board(tmp_path):
    env = {"DEVICENET_SYSROOT": make_sysroot(tmp_path, *BOARDS["jetson-tk1"][:2]), "DEVICENET_MACHINE": "armv7l"}
    res = run_cli("ports", env=env)
    assert res.exit_code == 0, res.output
    marked = [line for line in res.output.splitlines() if line.startswith("*")]
    assert len(marked) == 1 and "jetson-tk1" in marked[0]
    assert "raspberry-pi-2" in res.output and "generic-x86_64" in res.output


def test_ports_explain_shows_facts_and_decisions(tmp_path):
    env = {"DEVICENET_SYSROOT": make_sysroot(tmp_path, *BOARDS["beaglebone-black"][:2]),
           "DEVICENET_MACHINE": "armv7l"}
    res = run_cli("ports", "--explain", env=env)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "TI AM335x BeagleBone Black" in out and "0xc08" in out
    assert "selected: beaglebone-black" in out and "detected" in out
    assert "streamed" in out and "5500 ms" in out and "DeepBeliefSDK" in out


def test_ports_command_errors_are_one_line(tmp_path):
    res = run_cli("ports", "--port", "nope")
    assert res.exit_code == 1 and res.stderr.startswith("Error: unknown port 'nope'")
    (tmp_path / "bad.toml").write_text(GOOD.replace('name = "my-board"', 'name = "bad"')
                                       .replace("threads = 2", "threads = -1"))
    res = run_cli("ports", env={"DEVICENET_PORTS": str(tmp_path)})
    assert res.exit_code == 1 and "'run.threads'" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_profiles_are_found_where_a_wheel_installs_them(tmp_path, monkeypatch):
    share = tmp_path / "share" / "devicenet" / "ports"
    share.mkdir(parents=True)
    (share / "wheel-board.toml").write_text(GOOD.replace("my-board", "wheel-board"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert str(share) in ports.port_dirs()
    table = ports.profiles()
    assert table["wheel-board"].path == str(share / "wheel-board.toml")
    assert "raspberry-pi-2" in table  # the checkout's own profiles still come first
