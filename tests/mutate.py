"""A structured, checksum-valid mutator of .dnet files, and the models it mutates.

``Dnet.parse`` takes a file apart (docs/FORMAT.md): the fixed header's
fields, the JSON header, and the bytes of every tensor and scale region,
kept with the tensor record they belong to.  A mutation edits one or a few
fields of the header, the tensor table or the graph; ``Dnet.build`` lays
the regions out again and recomputes every offset, length and checksum, so
that the edited file reaches the graph checks, the planner and the kernels
instead of being stopped by a checksum.  A mutation that is about the
layout itself (an offset, a length, a checksum) pins that field, and the
build writes the pinned value in place of the computed one.

``MUTATIONS`` maps each mutation kind to a function ``(rng, dnet)`` that
edits the file in place and returns a one-line description of the edit, or
None when the model has nothing it applies to.  ``mutate`` makes case
``index`` of a seeded run: the kind comes round in turn and every random
choice comes from the seed, model and index, so one case reproduces alone.
"""

import copy
import json
import math
import random
import struct
from typing import NamedTuple
import zlib

import numpy as np

from devicenet import format as dnet
from devicenet.convert.builder import Builder
from devicenet.quant import QMAX, STORAGE, decode, encode, is_integer

FIXED = struct.Struct("<4sHHIIQQI4x")
ALIGN = 64
WINDOWED = ("conv", "maxpool", "avgpool")


def _crc(buf):
    return zlib.crc32(buf) & 0xFFFFFFFF


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


# --- taking a file apart and putting it together ------------------------------------

class Dnet:
    """A .dnet file as its header fields, JSON header and region bytes.

    Each tensor record carries its bytes under ``_data`` (and ``_scales``),
    and optionally ``_pin``: record fields (``offset``, ``scales.crc32``...)
    to write as given instead of as laid out.  ``fixed`` overrides fields of
    the fixed header (``major``, ``minor``, ``reserved``).
    """

    def __init__(self, header, fixed=None):
        self.header = header
        self.fixed = dict(fixed or {})

    @classmethod
    def parse(cls, blob):
        _, major, minor, hlen, _, data_off, _, _ = FIXED.unpack_from(blob, 0)
        header = json.loads(bytes(blob[40:40 + hlen]))
        data = memoryview(blob)[data_off:]
        for rec in header["tensors"]:
            rec["_data"] = bytes(data[rec["offset"]:rec["offset"] + rec["length"]])
            if "scales" in rec:
                s = rec["scales"]
                rec["_scales"] = bytes(data[s["offset"]:s["offset"] + s["length"]])
        return cls(header, {"major": major, "minor": minor})

    def copy(self):
        return Dnet(copy.deepcopy(self.header), self.fixed)

    # the parts a mutation edits
    @property
    def meta(self):
        return self.header["meta"]

    @property
    def nodes(self):
        return self.header["graph"]

    @property
    def records(self):
        return self.header["tensors"]

    def record(self, name):
        return next((r for r in self.records if r.get("name") == name), None)

    def activations(self):
        """Every activation name: the input, then each node's output in order."""
        return [self.meta["input"]["name"]] + [n["outputs"][0] for n in self.nodes if n.get("outputs")]

    def decoded(self, rec):
        """A record's values as float32, from its bytes."""
        dtype = STORAGE[rec["encoding"]]
        data = np.frombuffer(rec["_data"], dtype).reshape(rec["shape"])
        scales = np.frombuffer(rec["_scales"], "<f4") if "_scales" in rec else None
        return decode(data, scales)

    def store(self, rec, values, encoding=None):
        """Encode float ``values`` into ``rec`` (its shape, encoding and bytes)."""
        encoding = encoding or rec["encoding"]
        values = np.asarray(values, np.float32)
        if values.size:
            data, scales = encode(values, encoding)
        else:  # an empty tensor: nothing to scale
            data = values.astype(STORAGE[encoding])
            scales = np.zeros(values.shape[0], np.float32) if is_integer(encoding) else None
        rec["encoding"], rec["shape"], rec["_data"] = encoding, list(data.shape), data.tobytes()
        rec.pop("_scales", None)
        rec.pop("scales", None)
        if scales is not None:
            rec["_scales"] = scales.astype("<f4").tobytes()
            rec["scales"] = {}

    def build(self):
        """The file's bytes, every offset, length and checksum recomputed
        (except pinned ones)."""
        header = copy.deepcopy(self.header)
        blobs, cursor = [], 0
        for rec in header["tensors"] if isinstance(header.get("tensors"), list) else []:
            if not isinstance(rec, dict):
                continue
            pin = rec.pop("_pin", {})
            for part, key in (("_data", None), ("_scales", "scales")):
                buf = rec.pop(part, None)
                if buf is None:
                    continue
                entry = {"offset": cursor, "length": len(buf), "crc32": _crc(buf)}
                if key is None:
                    rec.update(entry)
                else:
                    rec[key] = entry
                blobs.append((cursor, buf))
                cursor = _align(cursor + len(buf))
            for field, value in pin.items():
                target = rec
                *path, last = field.split(".")
                for p in path:
                    target = target.setdefault(p, {})
                target[last] = value
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        data_off = _align(40 + len(text))
        data_len = blobs[-1][0] + len(blobs[-1][1]) if blobs else 0
        fixed = FIXED.pack(b"DNET", self.fixed.get("major", 1), self.fixed.get("minor", 0),
                           len(text), _crc(text), data_off, data_len, 0)
        fixed = fixed[:32] + struct.pack("<I", _crc(fixed[:32])) + self.fixed.get("reserved", bytes(4))
        out = bytearray(fixed + text + bytes(data_off - 40 - len(text)))
        out += bytes(data_len)
        for off, buf in blobs:
            out[data_off + off:data_off + off + len(buf)] = buf
        return bytes(out)


# --- the models mutated ---------------------------------------------------------------

def _weights(rng, shape, gain=1.0):
    fan_in = max(1, math.prod(shape[1:]))
    return rng.normal(0, gain / math.sqrt(fan_in), size=shape).astype(np.float32)


def _meta(name, classes, size):
    return {"name": name, "output": None, "labels": [f"class {i}" for i in range(classes)],
            "preprocess": {"resize": size + 2, "crop": size, "mean": [120.0, 115.0, 100.0],
                           "std": [60.0, 60.0, 60.0], "channel_order": "RGB"}}


def _file(b, meta, encodings):
    meta["output"] = b.nodes[-1].outputs[0]
    return b"".join(dnet.serialize(b.graph(meta, encodings)))


def small_model():
    """A small converted-style network (stem, depthwise, 1x1 and residual,
    pooling, classifier, softmax) in int8, int16 and float32."""
    rng = np.random.default_rng(13)
    b = Builder([1, 12, 12, 3], "image")
    w = _weights
    stem = b.add("conv", "image", {"kernel": [3, 3], "stride": [2, 2], "pads": [1, 1, 1, 1],
                                   "activation": "relu6"}, {"weight": w(rng, (8, 3, 3, 3)), "bias": w(rng, (8,))},
                 name="stem")
    dw = b.add("conv", stem, {"kernel": [3, 3], "pads": [1, 1, 1, 1], "groups": 8, "activation": "relu"},
               {"weight": w(rng, (8, 3, 3, 1)), "bias": w(rng, (8,))}, name="dw")
    pw = b.add("conv", dw, {"kernel": [1, 1]}, {"weight": w(rng, (8, 1, 1, 8))}, name="pw")
    res = b.add("add", [pw, stem], name="res")
    pw2 = b.add("conv", res, {"kernel": [1, 1], "activation": "relu"}, {"weight": w(rng, (16, 1, 1, 8))},
                name="expand")
    gap = b.add("global_avgpool", pw2, name="pool")
    flat = b.add("flatten", gap, name="flat")
    fc = b.add("dense", flat, {}, {"weight": w(rng, (10, 16), 3.0), "bias": w(rng, (10,))}, name="fc")
    b.add("softmax", fc, name="prob")
    enc = {t: "int8" for t in b.params}
    enc.update({"stem.bias": "float32", "dw.bias": "float32", "fc.bias": "float32", "expand.weight": "int16"})
    return _file(b, _meta("small", 10, 12), enc)


def every_op_model():
    """One network with every op of docs/FORMAT.md section 4 and every kind of
    planned convolution (direct, grouped, depthwise at two strides, 1x1,
    dilated), weights in all four encodings.  Pairs of weights have the same
    shape on purpose, so that sharing one between two nodes is a legal edit:
    g1 and g2 (groups 2 and 1), dw1 and dw2 (strides 2 and 1, the same
    output width), fc2 and fc3."""
    rng = np.random.default_rng(14)
    w = _weights
    b = Builder([1, 10, 10, 3], "x")
    p0 = b.add("pad", "x", {"pads": [1, 0, 1, 2], "value": 0.5}, name="pad0")
    c1 = b.add("conv", p0, {"kernel": [3, 3], "activation": "relu"},
               {"weight": w(rng, (8, 3, 3, 3)), "bias": w(rng, (8,))}, name="c1")
    g1 = b.add("conv", c1, {"kernel": [3, 3], "pads": [1, 1, 1, 1], "groups": 2},
               {"weight": w(rng, (8, 3, 3, 4)), "bias": w(rng, (8,))}, name="g1")
    dw1 = b.add("conv", g1, {"kernel": [3, 3], "stride": [2, 2], "pads": [1, 1, 1, 1], "groups": 8,
                             "activation": "relu6"}, {"weight": w(rng, (8, 3, 3, 1))}, name="dw1")
    dw2 = b.add("conv", dw1, {"kernel": [3, 3], "pads": [1, 1, 1, 1], "groups": 8},
                {"weight": w(rng, (8, 3, 3, 1)), "bias": w(rng, (8,))}, name="dw2")
    dil = b.add("conv", dw2, {"kernel": [3, 3], "dilation": [2, 2], "pads": [2, 2, 2, 2]},
                {"weight": w(rng, (8, 3, 3, 8))}, name="dil")
    mp = b.add("maxpool", dil, {"kernel": [3, 3], "pads": [1, 1, 1, 1]}, name="mp")
    ap = b.add("avgpool", dw1, {"kernel": [2, 2], "pads": [0, 0, 1, 1]}, name="ap")
    q = b.add("conv", p0, {"kernel": [1, 1], "stride": [2, 2]}, {"weight": w(rng, (4, 1, 1, 3))}, name="q")
    g2 = b.add("conv", q, {"kernel": [3, 3], "pads": [1, 0, 0, 1]}, {"weight": w(rng, (8, 3, 3, 4))}, name="g2")
    pw = b.add("conv", g2, {"kernel": [1, 1], "activation": "relu"}, {"weight": w(rng, (8, 1, 1, 8))}, name="pw")
    cat = b.add("concat", [mp, ap, pw], {"axis": 3}, name="cat")
    aff = b.add("affine", cat, {}, {"scale": 1 + 0.1 * w(rng, (24,)), "shift": w(rng, (1,))}, name="aff")
    clp = b.add("clip", aff, {"min": -1.0, "max": 2.0}, name="clip")
    lrn = b.add("lrn", clp, {"size": 5, "alpha": 0.01, "beta": 0.75, "bias": 2.0}, name="lrn")
    ap2 = b.add("avgpool", lrn, {"kernel": [3, 3], "stride": [2, 2], "pads": [1, 1, 1, 1],
                                 "count_include_pad": True}, name="ap2")
    gap = b.add("global_avgpool", ap2, name="gap")
    flat = b.add("flatten", gap, name="flat")
    fc1 = b.add("dense", flat, {"activation": "relu"}, {"weight": w(rng, (12, 24), 2.0)}, name="fc1")
    fc2 = b.add("dense", fc1, {}, {"weight": w(rng, (6, 12), 2.0), "bias": w(rng, (6,))}, name="fc2")
    fc3 = b.add("dense", fc1, {}, {"weight": w(rng, (6, 12), 2.0)}, name="fc3")
    s = b.add("add", [fc2, fc3], name="sum")
    twice = b.add("add", [s, s], name="twice")
    b.add("softmax", twice, name="prob")
    enc = {t: "float32" for t in b.params}
    enc.update({"c1.weight": "float16", "g1.weight": "int8", "dw1.weight": "int8", "dw2.weight": "int16",
                "g2.weight": "int16", "pw.weight": "int8", "dil.weight": "float16", "fc1.weight": "int16",
                "fc2.weight": "int8", "fc3.weight": "int8", "aff.scale": "float16"})
    return _file(b, _meta("every op", 6, 10), enc)


# --- mutations ---------------------------------------------------------------------------

# Values an integer field is set to: edges of the ranges the format allows
# and the sizes one off them.
INTS = [0, 1, 2, 3, 5, 7, 8, 16, 64, 1000, 65535, 65536, 65537, 2**31 - 1, 2**31, -1, -2]
NUMBERS = [0.0, -0.0, 1e-30, 1e-6, -1.0, -0.5, 0.5, 1.0, 6.0, 100.0, 1e10, 1e29, -1e29, 3e38, None]


def _new_int(rng, old):
    if isinstance(old, int) and rng.random() < 0.5:
        return rng.choice([old + 1, old - 1, old * 2, old // 2, -old, old + 64])
    return rng.choice(INTS)


def _pick(rng, items):
    items = list(items)
    return rng.choice(items) if items else None


def _nodes_with(d, pred):
    return [n for n in d.nodes if pred(n)]


def m_version(rng, d):
    field = rng.choice(["minor", "minor", "major", "reserved"])
    if field == "reserved":
        d.fixed["reserved"] = struct.pack("<I", rng.choice([1, 1 << 31]))
        return "reserved bytes set"
    d.fixed[field] = rng.choice([0, 2, 255, 65535] if field == "major" else [1, 7, 65535])
    return f"{field} version = {d.fixed[field]}"


def m_unknown_keys(rng, d):
    """Unknown keys anywhere must be ignored: the model must still agree."""
    where = rng.choice(["top", "meta", "node", "attrs", "record", "input"])
    value = rng.choice([None, 1, "x", [1, 2], {"a": [None]}, 1e300])
    target = {"top": d.header, "meta": d.meta, "input": d.meta["input"]}.get(where)
    if where == "node" or where == "attrs":
        node = rng.choice(d.nodes)
        target = node if where == "node" else node.setdefault("attrs", {})
    elif where == "record":
        target = rng.choice(d.records)
    target["future_" + where] = value
    return f"unknown key in {where}"


def m_input_shape(rng, d):
    shape = d.meta["input"]["shape"]
    if rng.random() < 0.15:
        d.meta["input"]["shape"] = rng.choice([shape[:2], shape + [1], shape[:3], [1, 4, 4, 3]])
        return f"input shape = {d.meta['input']['shape']}"
    i = rng.randrange(len(shape))
    shape[i] = rng.choice([1, 2, 3, shape[i] - 1, shape[i] + 1, shape[i] * 2, max(1, shape[i] // 2), 65536])
    return f"input shape[{i}] = {shape[i]}"


def m_input_name(rng, d):
    d.meta["input"]["name"] = rng.choice(d.activations()[1:] + ["nothing", ""])
    return f"input name = {d.meta['input']['name']!r}"


def m_output_name(rng, d):
    choices = [a for a in d.activations() if a != d.meta["output"]]
    d.meta["output"] = rng.choice(choices + ["nothing"])
    return f"output = {d.meta['output']!r}"


def m_labels(rng, d):
    labels = d.meta.setdefault("labels", [])
    how = rng.choice(["drop", "add", "empty", "rename"])
    if how == "drop" and labels:
        labels.pop(rng.randrange(len(labels)))
    elif how == "add":
        labels.append("extra")
    elif how == "empty":
        labels.clear()
    elif labels:
        labels[rng.randrange(len(labels))] = rng.choice(["", "\u00e9\u2603", "x" * 1000, "%s\n"])
    return f"labels: {how} ({len(labels)} now)"


def m_preprocess_size(rng, d):
    spec = d.meta.get("preprocess")
    if not spec:
        return None
    keys = rng.choice([["resize"], ["crop"], ["resize", "crop"]])
    value = rng.choice([1, 2, 7, spec["crop"] - 1, spec["crop"] + 1, 255, 1024, 4096, 20000, 65536])
    for k in keys:
        spec[k] = value
    return f"preprocess {'+'.join(keys)} = {value}"


def m_preprocess_norm(rng, d):
    spec = d.meta.get("preprocess")
    if not spec:
        return None
    if rng.random() < 0.2:
        spec["channel_order"] = rng.choice(["BGR", "bgr", "RGBA"])
        return f"channel order = {spec['channel_order']}"
    key, i = rng.choice(["mean", "std"]), rng.randrange(3)
    spec[key][i] = rng.choice([0.0, 1e-7, 1e-6, -1e-6, 1e-3, -60.0, 255.0, 1e20, 1e29, -1e29])
    return f"preprocess {key}[{i}] = {spec[key][i]}"


def m_tensor_shape(rng, d):
    """A dimension of a parameter changed, its data regenerated to fit."""
    rec = rng.choice(d.records)
    shape = list(rec["shape"])
    if not shape or rng.random() < 0.15:
        shape = rng.choice([shape + [1], shape[:-1], [1] + shape, [0] + shape[1:] if shape else [0]])
    else:
        i = rng.randrange(len(shape))
        shape[i] = rng.choice([0, 1, shape[i] + 1, max(0, shape[i] - 1), shape[i] * 2])
    if is_integer(rec["encoding"]) and not shape:
        shape = [1]
    values = np.random.default_rng(rng.getrandbits(32)).normal(0, 0.3, shape).astype(np.float32)
    d.store(rec, values)
    return f"tensor {rec['name']} shape = {shape}"


def m_tensor_shape_stale(rng, d):
    """The declared shape changed, the bytes left as they were."""
    rec = rng.choice(d.records)
    if not rec["shape"]:
        return None
    i = rng.randrange(len(rec["shape"]))
    rec["shape"][i] = _new_int(rng, rec["shape"][i])
    return f"tensor {rec['name']} shape[{i}] = {rec['shape'][i]}, bytes unchanged"


def m_tensor_encoding(rng, d):
    """The same values re-encoded in another encoding: the model must agree with itself."""
    rec = rng.choice(d.records)
    enc = rng.choice([e for e in STORAGE if e != rec["encoding"]])
    if is_integer(enc) and not rec["shape"]:
        return None
    d.store(rec, d.decoded(rec), enc)
    return f"tensor {rec['name']} re-encoded as {enc}"


def m_tensor_relabel(rng, d):
    """The encoding's name changed, the bytes kept (int16 <-> float16)."""
    recs = [r for r in d.records if r["encoding"] in ("int16", "float16")]
    rec = _pick(rng, recs)
    if rec is None:
        return None
    if rec["encoding"] == "int16":
        rec["encoding"] = "float16"
        rec.pop("_scales")
        rec.pop("scales")
    else:
        rec["encoding"] = "int16"
        rec["_scales"] = np.full(rec["shape"][0], rng.choice([1e-4, 1.0, 0.0]), "<f4").tobytes()
        rec["scales"] = {}
    return f"tensor {rec['name']} relabelled {rec['encoding']}"


def m_tensor_layout(rng, d):
    """An offset, length or checksum of a region pinned to a wrong value."""
    rec = rng.choice(d.records)
    fields = ["offset", "length", "crc32"] + (["scales.offset", "scales.length", "scales.crc32"]
                                               if "_scales" in rec else [])
    field = rng.choice(fields)
    value = rng.choice([0, 1, 63, 64, 128, 2**32, 2**63, -64, len(rec["_data"]) + 64, rng.getrandbits(32)])
    rec.setdefault("_pin", {})[field] = value
    return f"tensor {rec['name']} {field} = {value}"


def m_tensor_scales(rng, d):
    """Per-channel scales set to edge values (still finite and non-negative)."""
    rec = _pick(rng, [r for r in d.records if "_scales" in r])
    if rec is None:
        return None
    scales = np.frombuffer(rec["_scales"], "<f4").copy()
    value = rng.choice([0.0, 1e-45, 1e-38, 1.0, 65504.0, 1e20, 1e30, 3e38])
    idx = rng.sample(range(len(scales)), rng.randint(1, len(scales)))
    scales[idx] = value
    rec["_scales"] = scales.tobytes()
    return f"tensor {rec['name']} scales[{len(idx)} channels] = {value}"


def m_tensor_values(rng, d):
    """Stored values set to the edges of their encoding."""
    rec = _pick(rng, [r for r in d.records if r["_data"]])
    if rec is None:
        return None
    dtype = STORAGE[rec["encoding"]]
    data = np.frombuffer(rec["_data"], dtype).copy()
    if is_integer(rec["encoding"]):
        q = QMAX[rec["encoding"]]
        value = rng.choice([q, -q, -q - 1, 0])
    elif dtype.itemsize == 2:
        value = rng.choice([65504.0, -65504.0, 6e-8, 0.0])
    else:
        value = rng.choice([3e38, -3e38, 1e30, 1e-45, 0.0])
    idx = rng.sample(range(data.size), rng.randint(1, min(data.size, 64)))
    data[idx] = value
    rec["_data"] = data.tobytes()
    return f"tensor {rec['name']} {len(idx)} values = {value}"


def m_tensor_table(rng, d):
    """Records reordered, renamed, dropped or duplicated."""
    how = rng.choice(["shuffle", "rename", "drop", "duplicate", "swap names"])
    recs = d.records
    rec = rng.choice(recs)
    if how == "shuffle":
        rng.shuffle(recs)
    elif how == "rename":
        rec["name"] = rng.choice([rec["name"] + "'", "", recs[0]["name"]])
    elif how == "drop":
        recs.remove(rec)
    elif how == "duplicate":
        recs.insert(rng.randrange(len(recs) + 1), copy.deepcopy(rec))
    else:
        other = rng.choice(recs)
        rec["name"], other["name"] = other["name"], rec["name"]
    return f"tensor table: {how} {rec['name']}"


def m_window(rng, d):
    """A stride, pad, dilation or kernel of a windowed op changed; a conv's
    weight is usually regenerated to fit a new kernel."""
    node = _pick(rng, _nodes_with(d, lambda n: n["op"] in WINDOWED))
    if node is None:
        return None
    attrs = node.setdefault("attrs", {})
    key = rng.choice(["stride", "pads", "dilation", "kernel"])
    size = 4 if key == "pads" else 2
    old = list(attrs.get(key, [0] * 4 if key == "pads" else [1, 1]))
    i = rng.randrange(size)
    if rng.random() < 0.3:
        old = [old[i]] * size
    old[i] = rng.choice([0, 1, 2, 3, 4, 7, 13, old[i] + 1, -1, 100, 65536])
    attrs[key] = old
    if key == "kernel" and node["op"] == "conv" and rng.random() < 0.7:
        rec = d.record(node["params"]["weight"])
        shape = [rec["shape"][0]] + old[:2] + [rec["shape"][3]]
        if all(0 < s <= 64 for s in shape):
            d.store(rec, np.random.default_rng(rng.getrandbits(32)).normal(0, 0.2, shape))
    return f"node {node['name']} {key} = {old}"


def m_window_extremes(rng, d):
    """Several window fields of one node pushed to the format's limits at
    once (a stride as large as the pads, a kernel as large as the input)."""
    node = _pick(rng, _nodes_with(d, lambda n: n["op"] in WINDOWED + ("pad",)))
    attrs = node.setdefault("attrs", {})
    big = rng.choice([1000, 4096, 32768, 65536])
    attrs["pads"] = [rng.choice([0, big]) for _ in range(4)]
    if node["op"] != "pad":
        attrs["stride"] = [rng.choice([1, big]), rng.choice([1, big])]
        if rng.random() < 0.5:
            attrs["dilation"] = [rng.choice([1, big // 2]), rng.choice([1, big // 2])]
        if node["op"] != "conv" and rng.random() < 0.5:
            attrs["kernel"] = [rng.choice([1, 3, big]), rng.choice([1, 3, big])]
    return f"node {node['name']} " + ", ".join(f"{k} {attrs[k]}" for k in ("kernel", "stride", "pads", "dilation")
                                               if k in attrs)


def _divisors(n):
    return [g for g in range(1, n + 1) if n % g == 0]


def m_groups(rng, d):
    """A conv's groups changed; its weight usually regenerated to fit."""
    node = _pick(rng, _nodes_with(d, lambda n: n["op"] == "conv"))
    if node is None:
        return None
    rec = d.record(node["params"]["weight"])
    cout, kh, kw, cin_g = rec["shape"]
    cin = cin_g * node.get("attrs", {}).get("groups", 1)
    g = rng.choice(_divisors(cin) if rng.random() < 0.75 else [0, -1, cin * 2, 3])
    node.setdefault("attrs", {})["groups"] = g
    if g >= 1 and cin % g == 0 and rng.random() < 0.8:
        cout = cout if cout % g == 0 else g
        d.store(rec, np.random.default_rng(rng.getrandbits(32)).normal(0, 0.3, (cout, kh, kw, cin // g)))
    return f"node {node['name']} groups = {g}"


def m_activation(rng, d):
    node = _pick(rng, _nodes_with(d, lambda n: n["op"] in ("conv", "dense", "add")))
    if node is None:
        return None
    node.setdefault("attrs", {})["activation"] = rng.choice(["none", "relu", "relu6", "RELU", "sigmoid", ""])
    return f"node {node['name']} activation = {node['attrs']['activation']!r}"


NUMERIC_ATTRS = {"clip": ["min", "max"], "lrn": ["alpha", "beta", "bias", "size"], "pad": ["value", "pads"],
                 "conv": ["pad_value"], "avgpool": ["count_include_pad", "pad_value"],
                 "concat": ["axis"], "softmax": ["axis"]}


def m_numbers(rng, d):
    """A numeric attribute (clip bounds, LRN constants, pad values...) changed."""
    node = _pick(rng, _nodes_with(d, lambda n: n["op"] in NUMERIC_ATTRS))
    if node is None:
        return None
    key = rng.choice(NUMERIC_ATTRS[node["op"]])
    attrs = node.setdefault("attrs", {})
    if key == "pads":
        attrs[key] = [rng.choice([0, 1, 3, 100, 65536]) for _ in range(4)]
    elif key == "count_include_pad":
        attrs[key] = rng.choice([True, False, None])
    elif key in ("size", "axis"):
        attrs[key] = rng.choice([0, 1, 2, 3, 4, 7, 1024, 1025, -1])
    else:
        attrs[key] = rng.choice(NUMBERS)
    return f"node {node['name']} {key} = {attrs[key]!r}"


def m_inputs(rng, d):
    """A node reads another activation (earlier, later or missing)."""
    node = _pick(rng, _nodes_with(d, lambda n: n.get("inputs")))
    i = rng.randrange(len(node["inputs"]))
    node["inputs"][i] = rng.choice(d.activations() + ["missing"])
    if rng.random() < 0.1:
        node["inputs"].append(rng.choice(d.activations()))
    return f"node {node['name']} inputs = {node['inputs']}"


def m_outputs(rng, d):
    node = rng.choice(d.nodes)
    how = rng.choice(["rename", "existing", "two", "none"])
    if how == "rename":
        node["outputs"] = [node["outputs"][0] + "'"]
    elif how == "existing":
        node["outputs"] = [rng.choice(d.activations())]
    elif how == "two":
        node["outputs"] = node["outputs"] + ["extra"]
    else:
        node["outputs"] = []
    return f"node {node['name']} outputs = {node['outputs']}"


def m_name(rng, d):
    """A node's name made another node's, empty or odd (names are for
    messages, profiles and cutting a model at a layer)."""
    node = rng.choice(d.nodes)
    node["name"] = rng.choice([n["name"] for n in d.nodes] + ["", "x" * 1000, "\u00e9 \n", "#0"])
    return f"node {node['outputs'][0] if node.get('outputs') else '?'} name = {node['name'][:20]!r}"


def m_op(rng, d):
    """A node's op changed to another (its attributes and parameters kept)."""
    node = rng.choice(d.nodes)
    node["op"] = rng.choice(["conv", "dense", "add", "affine", "clip", "maxpool", "avgpool", "global_avgpool",
                             "flatten", "concat", "softmax", "lrn", "pad", "relu", "Conv"])
    return f"node {node['name']} op = {node['op']}"


def m_order(rng, d):
    """Nodes reordered, dropped (its readers rewired to its input), or duplicated."""
    nodes = d.nodes
    how = rng.choice(["swap", "drop", "duplicate", "append copy"])
    i = rng.randrange(len(nodes))
    node = nodes[i]
    if how == "swap" and len(nodes) > 1:
        j = rng.randrange(len(nodes))
        nodes[i], nodes[j] = nodes[j], nodes[i]
    elif how == "drop":
        del nodes[i]
        for n in nodes:
            n["inputs"] = [node["inputs"][0] if x == node["outputs"][0] and node["inputs"] else x
                           for x in n["inputs"]]
        if d.meta["output"] == node["outputs"][0] and node["inputs"]:
            d.meta["output"] = node["inputs"][0]
    else:
        twin = copy.deepcopy(node)
        twin["name"] += "'"
        twin["outputs"] = [twin["outputs"][0] + "'"]
        if how == "duplicate":
            nodes.insert(i + 1, twin)
        else:  # a node after the output: dead code the runtime must ignore
            twin["inputs"] = [d.meta["output"]] * len(twin["inputs"])
            nodes.append(twin)
    return f"nodes: {how} {node['name']}"


def m_shared(rng, d):
    """A node's parameter pointed at another tensor of the same shape (shared
    weights), or at one of another shape."""
    node = _pick(rng, _nodes_with(d, lambda n: n.get("params")))
    if node is None:
        return None
    role = rng.choice(sorted(node["params"]))
    own = d.record(node["params"][role])
    same = [r["name"] for r in d.records if r["shape"] == own["shape"] and r["name"] != own["name"]]
    if same and rng.random() < 0.85:
        node["params"][role] = rng.choice(same)
    else:
        node["params"][role] = rng.choice(d.records)["name"]
    return f"node {node['name']} {role} = tensor {node['params'][role]}"


def m_params(rng, d):
    """A parameter role dropped, added or renamed."""
    node = rng.choice(d.nodes)
    params = node.setdefault("params", {})
    how = rng.choice(["drop", "add", "rename"]) if params else "add"
    if how == "drop":
        del params[rng.choice(sorted(params))]
    elif how == "add":
        params[rng.choice(["bias", "scale", "shift", "weight", "gamma"])] = rng.choice(d.records)["name"]
    else:
        role = rng.choice(sorted(params))
        params[role + "s"] = params.pop(role)
    return f"node {node['name']} params: {how}"


#: mutation kind -> function(rng, Dnet) -> description or None (not applicable)
MUTATIONS = {
    "version": m_version, "unknown keys": m_unknown_keys,
    "input shape": m_input_shape, "input name": m_input_name, "output name": m_output_name,
    "labels": m_labels, "preprocess size": m_preprocess_size, "preprocess norm": m_preprocess_norm,
    "tensor shape": m_tensor_shape, "tensor shape stale": m_tensor_shape_stale,
    "tensor encoding": m_tensor_encoding, "tensor relabel": m_tensor_relabel, "tensor layout": m_tensor_layout,
    "tensor scales": m_tensor_scales, "tensor values": m_tensor_values, "tensor table": m_tensor_table,
    "window": m_window, "window extremes": m_window_extremes, "groups": m_groups,
    "activation": m_activation, "numbers": m_numbers,
    "node inputs": m_inputs, "node outputs": m_outputs, "node name": m_name, "op": m_op, "node order": m_order,
    "shared weights": m_shared, "params": m_params,
}
KINDS = list(MUTATIONS)


def case_rng(seed, model, index):
    return random.Random(f"{seed}/{model}/{index}")


class Case(NamedTuple):
    kind: str  # the first edit's kind
    kinds: tuple  # every edit's kind
    what: str  # the edits, in words
    blob: bytes  # the mutated file


def mutate(base, seed, model, index, kinds=KINDS):
    """Case ``index`` of a seeded run on ``base`` (a Dnet), as a Case.  The
    kind comes round in turn (from ``kinds``); one case in five adds a
    second or third edit of any kind."""
    rng = case_rng(seed, model, index)
    kind = kinds[index % len(kinds)]
    d = base.copy()
    what = MUTATIONS[kind](rng, d)
    while what is None:  # not applicable to this model: the next kind
        kind = KINDS[(KINDS.index(kind) + 1) % len(KINDS)]
        what = MUTATIONS[kind](rng, d)
    done = [kind]
    for _ in range(0 if rng.random() < 0.8 else rng.choice([1, 2])):
        extra_kind = rng.choice(KINDS)
        try:
            extra = MUTATIONS[extra_kind](rng, d)
        except (KeyError, ValueError, TypeError, AttributeError, IndexError):
            extra = None  # the first edit left nothing this one applies to
        if extra:
            what += "; " + extra
            done.append(extra_kind)
    return Case(kind, tuple(done), what, d.build())
