"""Board port profiles: how to recognise a board and how to run on it.

A profile is a TOML file in ``ports/`` (see ``ports/raspberry-pi-2.toml``):
the facts that identify the board, its hardware, the decisions devicenet
makes there (backend order, threads, weight residency, OpenCL device, BLAS
environment) and published reference timings with their sources.

Detection reads the device tree's ``model`` and ``compatible`` (under
``/proc/device-tree``, else ``/sys/firmware/devicetree/base``) and
``/proc/cpuinfo``, all under ``DEVICENET_SYSROOT`` (default ``/``), and
``platform.machine()`` (overridden by ``DEVICENET_MACHINE``), so tests can
describe any board.  A board no profile knows gets the generic profile of
its architecture, with a note.
"""

from dataclasses import dataclass, field
import os
import platform
import sys

from .errors import DeviceNetError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

BACKEND_NAMES = ("cpu", "opencl", "auto")
RESIDENCIES = ("resident", "streamed")

#: detect key -> weight.  A board profile is chosen only on strong evidence
#: (score >= BOARD_SCORE): the device-tree model or board compatible string,
#: the SoC name in cpuinfo or the revision code.  The SoC's compatible
#: string, the CPU part and the machine are shared by other boards (a Pi 3
#: has a Zero 2 W's SoC and a Rock64's Cortex-A53) and only break ties:
#: the three together stay under BOARD_SCORE.
WEIGHTS = {"model": 8, "compatible": 8, "hardware": 4, "revision": 4,
           "soc": 1, "features": 1, "cpu_part": 1, "machine": 1}
BOARD_SCORE = 4
#: where the kernel shows the device tree, first found wins
DEVICE_TREES = ("proc/device-tree", "sys/firmware/devicetree/base")
#: cpuinfo names for one SIMD unit: 64-bit kernels call NEON "asimd"
FEATURE_ALIASES = {"neon": ("neon", "asimd"), "asimd": ("asimd", "neon")}


@dataclass
class Reference:
    """A published timing for a network on this board, with its source."""

    net: str
    backend: str
    ms: float
    source: str
    note: str = ""

    def to_json(self):
        return {"net": self.net, "backend": self.backend, "ms": self.ms, "source": self.source, "note": self.note}


@dataclass
class Profile:
    """A board's profile: facts to detect it, hardware, and run decisions."""

    name: str = "generic"
    backends: list = field(default_factory=lambda: ["cpu"])
    threads: object = None  # None: let BLAS use every core
    residency: str = "resident"
    opencl_device: object = None
    title: str = "Generic computer"
    arch: str = ""
    generic: bool = True
    detect: dict = field(default_factory=dict)
    hardware: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    references: list = field(default_factory=list)
    references_note: str = ""  # why there are none, where none are published
    path: str = None

    def references_for(self, net):
        return [r for r in self.references if r.net == net]

    def to_json(self):
        return {"name": self.name, "title": self.title, "arch": self.arch, "generic": self.generic,
                "backends": list(self.backends), "threads": self.threads, "residency": self.residency,
                "opencl_device": self.opencl_device, "env": dict(self.env), "hardware": dict(self.hardware),
                "detect": {k: list(v) for k, v in self.detect.items()},
                "references": [r.to_json() for r in self.references],
                "references_note": self.references_note, "path": self.path}


# --- reading profile files ---------------------------------------------------

def port_dirs():
    """Where profiles are looked for, first wins: ``DEVICENET_PORTS``, the
    checkout's ports/ (also an editable install), then where a wheel puts them."""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.environ["DEVICENET_PORTS"]] if os.environ.get("DEVICENET_PORTS") else []
    dirs.append(os.path.join(os.path.dirname(here), "ports"))
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix):
        dirs.append(os.path.join(prefix, "share", "devicenet", "ports"))
    return list(dict.fromkeys(dirs))


class _Fields:
    """Typed access to a profile's TOML tables; errors name the file and field."""

    def __init__(self, path, doc):
        self.path, self.doc = path, doc

    def fail(self, key, msg):
        raise DeviceNetError(f"port profile {self.path}: field {key!r} {msg}")

    def get(self, key, kind, default=None, required=False):
        node = self.doc
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if required:
                    self.fail(key, "is missing")
                return default
            node = node[part]
        if kind is int and (isinstance(node, bool) or not isinstance(node, int)):
            self.fail(key, f"must be an integer, got {node!r}")
        if kind is float and (isinstance(node, bool) or not isinstance(node, (int, float))):
            self.fail(key, f"must be a number, got {node!r}")
        if kind in (str, bool, dict, list) and not isinstance(node, kind):
            self.fail(key, f"must be a {kind.__name__}, got {node!r}")
        return node

    def strings(self, key):
        vals = self.get(key, list, [])
        if not all(isinstance(v, str) and v for v in vals):
            self.fail(key, "must be a list of non-empty strings")
        return vals


def parse(path):
    """Read and check one profile file; return a Profile."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise DeviceNetError(f"port profile {path}: not valid TOML: {e}") from None
    except OSError as e:
        raise DeviceNetError(f"port profile {path}: cannot read it: {e.strerror}") from None
    f = _Fields(path, doc)
    name = f.get("name", str, required=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    if name != stem:
        f.fail("name", f"is {name!r} but the file is {stem}.toml; they must agree")
    backends = f.strings("run.backends")
    if not backends or any(b not in BACKEND_NAMES for b in backends):
        f.fail("run.backends", f"must list one or more of {', '.join(BACKEND_NAMES)}, got {backends!r}")
    threads = f.get("run.threads", int)
    if threads is not None and not 1 <= threads <= 256:
        f.fail("run.threads", f"must be between 1 and 256, got {threads}")
    residency = f.get("run.residency", str, "resident")
    if residency not in RESIDENCIES:
        f.fail("run.residency", f"must be resident or streamed, got {residency!r}")
    env = f.get("run.env", dict, {})
    if not all(isinstance(v, str) for v in env.values()):
        f.fail("run.env", "values must be strings")
    detect = f.get("detect", dict, {})
    unknown = sorted(set(detect) - set(WEIGHTS))
    if unknown:
        f.fail(f"detect.{unknown[0]}", f"is not a known fact (use {', '.join(WEIGHTS)})")
    refs = []
    for i, entry in enumerate(f.get("reference", list, [])):
        key = f"reference[{i}]"
        ref = _Fields(path, {key: entry})
        ms = ref.get(f"{key}.ms", float, required=True)
        if not ms > 0:
            ref.fail(f"{key}.ms", f"must be positive, got {ms}")
        source = ref.get(f"{key}.source", str, required=True)
        if not source.strip():
            ref.fail(f"{key}.source", "must say where the timing was published")
        refs.append(Reference(ref.get(f"{key}.net", str, required=True), ref.get(f"{key}.backend", str, "cpu"),
                              float(ms), source, ref.get(f"{key}.note", str, "")))
    return Profile(name=name, backends=backends, threads=threads, residency=residency,
                   opencl_device=f.get("run.opencl_device", str), title=f.get("title", str, name),
                   arch=f.get("arch", str, required=True), generic=f.get("generic", bool, False),
                   detect={k: f.strings(f"detect.{k}") for k in detect}, hardware=f.get("hardware", dict, {}),
                   env=dict(env), references=refs, references_note=f.get("references_note", str, ""),
                   path=os.fspath(path))


def profiles():
    """Every profile, by name (a profile in an earlier port dir wins)."""
    found = {}
    for d in port_dirs():
        if not os.path.isdir(d):
            continue
        for entry in sorted(os.listdir(d)):
            if entry.endswith(".toml") and entry[:-5] not in found:
                found[entry[:-5]] = parse(os.path.join(d, entry))
    return found


# --- detection -----------------------------------------------------------------

@dataclass
class Facts:
    """What this board says about itself."""

    model: str = ""
    compatible: list = field(default_factory=list)
    hardware: str = ""
    revision: str = ""
    cpu_part: list = field(default_factory=list)
    features: list = field(default_factory=list)
    cores: int = 0  # processors listed in cpuinfo
    machine: str = ""
    cpu_name: str = ""
    sysroot: str = "/"

    def has_feature(self, name):
        """Whether cpuinfo lists the CPU feature ``name`` (``neon`` is
        ``asimd`` on a 64-bit kernel)."""
        return any(a in self.features for a in FEATURE_ALIASES.get(name.lower(), (name.lower(),)))

    @property
    def board(self):
        """A one-line description of the board for reports."""
        return self.model or self.cpu_name or self.hardware or self.machine or "unknown"

    def to_json(self):
        return {"model": self.model, "compatible": self.compatible, "hardware": self.hardware,
                "revision": self.revision, "cpu_part": self.cpu_part, "features": self.features,
                "cores": self.cores, "machine": self.machine, "cpu_name": self.cpu_name, "sysroot": self.sysroot}


def _read(root, rel):
    try:
        with open(os.path.join(root, rel), "rb") as f:
            return f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return ""


def read_facts(sysroot=None, machine=None):
    """Collect the facts detection uses (``sysroot``/``machine`` default to
    ``DEVICENET_SYSROOT``/``DEVICENET_MACHINE``, then the real system)."""
    root = sysroot or os.environ.get("DEVICENET_SYSROOT") or "/"
    facts = Facts(sysroot=root)
    facts.machine = machine or os.environ.get("DEVICENET_MACHINE") or platform.machine()
    for tree in DEVICE_TREES:
        model, compatible = _read(root, f"{tree}/model"), _read(root, f"{tree}/compatible")
        if model or compatible:
            facts.model = model.replace("\x00", " ").strip()
            facts.compatible = [c.strip() for c in compatible.split("\x00") if c.strip()]
            break
    for line in _read(root, "proc/cpuinfo").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if key.strip() == "Model" and not facts.model:
            # Raspberry Pi kernels repeat the board's model here, which
            # helps where the device tree is not mounted (a container).
            # (x86's lower-case "model" is a number.)
            facts.model = value.strip()
        key, value = key.strip().lower(), value.strip()
        if key == "processor" and value.isdigit():
            facts.cores += 1
        elif key == "hardware":
            facts.hardware = value
        elif key == "revision":
            facts.revision = value.lower()
        elif key == "cpu part" and value.lower() not in facts.cpu_part:
            facts.cpu_part.append(value.lower())
        elif key in ("features", "flags") and not facts.features:
            facts.features = value.lower().split()
        elif key == "model name" and not facts.cpu_name:
            facts.cpu_name = value
    return facts


def _matches(key, wanted, facts):
    """Which of a profile's ``wanted`` strings the facts satisfy."""
    got = []
    for w in wanted:
        lw = w.lower()
        if key == "model":
            ok = bool(facts.model) and lw in facts.model.lower()
        elif key in ("compatible", "soc"):
            ok = lw in (c.lower() for c in facts.compatible)
        elif key == "hardware":
            ok = bool(facts.hardware) and lw in facts.hardware.lower()
        elif key == "revision":
            # Over-volted Pis prefix the code with flag digits; compare the end.
            ok = bool(facts.revision) and facts.revision.endswith(lw)
        elif key == "cpu_part":
            ok = lw in facts.cpu_part
        elif key == "features":
            ok = facts.has_feature(lw)
        else:
            ok = lw == facts.machine.lower()
        if ok:
            got.append(w)
    return got


def score(profile, facts):
    """(score, [(fact, matched strings)]) of a profile against the facts."""
    total, matched = 0, []
    for key, wanted in profile.detect.items():
        got = _matches(key, wanted, facts)
        if got:
            total += WEIGHTS[key]
            matched.append((key, got))
    return total, matched


@dataclass
class Detection:
    """The outcome of detection: the profile, the facts, every candidate's score, a note."""

    profile: Profile
    facts: Facts
    candidates: list  # (score, profile name, matched) for profiles with any match, best first
    note: str = ""
    forced: bool = False


def detect(sysroot=None, machine=None, name=None):
    """Pick the profile for this board (or the one named ``name``)."""
    facts = read_facts(sysroot, machine)
    table = profiles()
    candidates = []
    for prof in table.values():
        s, matched = score(prof, facts)
        if s:
            candidates.append((s, prof.name, matched))
    candidates.sort(key=lambda c: (-c[0], c[1]))
    if name:
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise DeviceNetError(f"unknown port {name!r}; known ports: {known} (see `devicenet ports`)")
        return Detection(table[name], facts, candidates, f"port {name} chosen by the user", True)
    boards = [c for c in candidates if not table[c[1]].generic and c[0] >= BOARD_SCORE]
    if boards:
        return Detection(table[boards[0][1]], facts, candidates)
    machine_l = facts.machine.lower()
    generic = [p for p in table.values() if p.generic and machine_l in (m.lower() for m in p.detect.get("machine", []))]
    what = f"board {facts.model!r}" if facts.model else "this board"
    if generic:
        return Detection(generic[0], facts, candidates,
                         f"no profile knows {what}; using {generic[0].name} for {facts.machine}")
    return Detection(Profile(arch=facts.machine), facts, candidates,
                     f"no profile knows {what} or the architecture {facts.machine!r}; "
                     f"using built-in defaults (CPU, resident weights)")


def select(name=None, sysroot=None, machine=None):
    """The profile to run with: ``name`` (or ``DEVICENET_PORT``) if given, else the detected board's."""
    return detect(sysroot, machine, name or os.environ.get("DEVICENET_PORT") or None).profile


def explain(detection):
    """Lines that say which facts were read, which matched, and what was decided."""
    f, p = detection.facts, detection.profile
    lines = [f"facts (read under {f.sysroot}):"]
    for label, value in (("device-tree model", f.model), ("compatible", " ".join(f.compatible)),
                         ("cpuinfo Hardware", f.hardware),
                         ("cpuinfo Revision", f.revision), ("cpuinfo CPU part", " ".join(f.cpu_part)),
                         ("cpuinfo Features", " ".join(f.features[:16]) + (" ..." if len(f.features) > 16 else "")),
                         ("cores", f.cores or ""), ("CPU", f.cpu_name), ("machine", f.machine)):
        lines.append(f"  {label:18s} {value or '-'}")
    lines.append("matches:")
    for s, name, matched in detection.candidates or []:
        detail = "; ".join(f"{k} {', '.join(repr(v) for v in vs)}" for k, vs in matched)
        lines.append(f"  {name:21s} score {s:2d}: {detail}")
    if not detection.candidates:
        lines.append("  (no profile matched any fact)")
    how = "chosen by name" if detection.forced else ("generic fallback" if p.generic else "detected")
    lines.append(f"selected: {p.name} ({p.title}), {how}")
    if detection.note:
        lines.append(f"note: {detection.note}")
    lines.append("decisions:")
    lines.append(f"  {'backends':18s} {' then '.join(p.backends)}")
    lines.append(f"  {'threads':18s} {p.threads or 'all cores (BLAS default)'}")
    lines.append(f"  {'weights':18s} {p.residency}"
                 + (" (8-bit in memory, decoded per layer)" if p.residency == "streamed" else " (decoded at load)"))
    lines.append(f"  {'OpenCL device':18s} {p.opencl_device or 'first available'}")
    if p.env:
        lines.append(f"  {'environment':18s} " + " ".join(f"{k}={v}" for k, v in p.env.items())
                     + " (export before starting Python)")
    missing = [s for s in p.hardware.get("simd", []) if f.features and not f.has_feature(s)]
    if missing and not detection.forced:
        lines.append(f"warning: the profile expects {', '.join(missing)} but the CPU does not report it")
    if p.hardware:
        lines.append("hardware: " + ", ".join(f"{k} {'/'.join(map(str, v)) if isinstance(v, list) else v}"
                                              for k, v in p.hardware.items()))
    for r in p.references:
        lines.append(f"reference: {r.net} on {r.backend} {r.ms:g} ms{' (' + r.note + ')' if r.note else ''}"
                     f" - {r.source}")
    if not p.references and p.references_note:
        lines.append(f"reference: {p.references_note}")
    return lines
