"""Reading and writing .dnet files (specified in docs/FORMAT.md).

Layout: a 40-byte fixed header, a UTF-8 JSON header, zero padding, then the
data section.  Every tensor region starts on a 64-byte boundary so the loader
maps the file and views tensors in place with ``np.frombuffer``.

The reader trusts nothing: every size is checked against the file before
anything is allocated, every checksum is verified, and every failure is a
DeviceNetError with one line of explanation.
"""

import json
import math
import mmap
import os
import struct
import tempfile
import zlib

import numpy as np

from .errors import DeviceNetError
from .files import open_regular
from .graph import OPS, Graph, Node, Tensor, infer_shapes, is_int, is_kind, is_num, window, MAX_DIM
from .quant import QMAX, STORAGE, is_integer

MAGIC = b"DNET"
VERSION = (1, 1)
#: the version written for a model without integer layers (readable by
#: every devicenet since 1.0, and so written byte for byte as before)
FLOAT_VERSION = (1, 0)
ALIGN = 64
FIXED = struct.Struct("<4sHHIIQQI4x")  # magic, major, minor, json len, json crc, data offset, data len, fixed crc
MAX_HEADER = 16 << 20  # a JSON header larger than this is refused unread (Lite0: 53 KB)
MAX_TENSORS = 1 << 16
MAX_NODES = 1 << 16
#: Activations (and the largest im2col scratch) a model may need at batch 1:
#: a few-KB file must not be able to ask for gigabytes at run time.
MAX_ACTIVATION_BYTES = 1 << 30
#: The largest image preprocessing may make (the photo resized, before the
#: crop): the same rule for the ``resize`` a file asks for.
MAX_IMAGE_BYTES = 1 << 28

def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _crc(buf):
    return zlib.crc32(buf) & 0xFFFFFFFF


# --- writing ------------------------------------------------------------------

def serialize(graph):
    """Yield the bytes of a .dnet file for ``graph`` in order."""
    entries, blobs, offset = [], [], 0

    def region(arr):
        nonlocal offset
        buf = np.ascontiguousarray(arr).tobytes()
        entry = {"offset": offset, "length": len(buf), "crc32": _crc(buf)}
        blobs.append((offset, buf))
        offset = _align(offset + len(buf))
        return entry

    for name, t in graph.tensors.items():
        data = np.asarray(t.data, dtype=STORAGE[t.encoding])
        if tuple(data.shape) != tuple(t.shape):
            raise DeviceNetError(f"tensor {name}: data shape {data.shape} is not its declared {t.shape}")
        entry = {"name": name, "encoding": t.encoding, "shape": list(t.shape), **region(data)}
        if is_integer(t.encoding):
            entry["scales"] = region(np.asarray(t.scales, "<f4"))
        entries.append(entry)
    header = {"meta": graph.meta, "graph": [n.to_json() for n in graph.nodes], "tensors": entries}
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    data_offset = _align(FIXED.size + len(text))
    data_length = offset if not blobs else blobs[-1][0] + len(blobs[-1][1])
    version = VERSION if (graph.meta.get("integer") or {}).get("nodes") else FLOAT_VERSION
    fixed = FIXED.pack(MAGIC, *version, len(text), _crc(text), data_offset, data_length, 0)
    fixed = fixed[:32] + struct.pack("<I", _crc(fixed[:32])) + fixed[36:]
    yield fixed
    yield text
    yield b"\0" * (data_offset - FIXED.size - len(text))
    pos = data_offset
    for off, buf in blobs:
        yield b"\0" * (data_offset + off - pos)
        yield buf
        pos = data_offset + off + len(buf)


def write(graph, path):
    """Write ``graph`` to ``path`` atomically: a temporary file, then a rename.

    An interrupted or failed write leaves whatever was at ``path`` untouched.
    """
    path = os.fspath(path)
    infer_shapes(graph)  # never write a model that cannot be loaded
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dnet-", suffix=".part", dir=folder)
    except OSError as e:
        raise DeviceNetError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in serialize(graph):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
            # mkstemp makes the file private (0600); a model is ordinary data,
            # so give it the permissions any new file would get.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise DeviceNetError(f"{path}: cannot write ({e.strerror or e})") from None
        raise
    return os.path.getsize(path)


# --- reading ------------------------------------------------------------------

def _fail(path, msg):
    raise DeviceNetError(f"{path}: {msg}")


def _check_region(path, what, entry, data_length, expected):
    if not isinstance(entry, dict):
        _fail(path, f"{what}: malformed tensor record")
    vals = [entry.get(k) for k in ("offset", "length", "crc32")]
    if not all(is_int(v) and v >= 0 for v in vals):
        _fail(path, f"{what}: offset, length and crc32 must be non-negative integers")
    off, length, _ = vals
    if off % ALIGN:
        _fail(path, f"{what}: data offset {off} is not {ALIGN}-byte aligned")
    if length != expected:
        _fail(path, f"{what}: {length} bytes stored but its shape needs {expected}")
    if off + length > data_length:
        _fail(path, f"{what}: data runs past the end of the file (truncated?)")
    return off, length, vals[2]


def _claim(buf, path, what, data_off, end, off, length, verify):
    """Regions come in file order without overlap; the gap before each (alignment
    padding) must be zero.  Returns the new end of the claimed data."""
    if off < end:
        _fail(path, f"{what}: overlaps the data before it")
    if verify and any(bytes(buf[data_off + end:data_off + off])):
        _fail(path, f"{what}: padding before it is not zero: the file is corrupt")
    return off + length


def parse_header(buf, path="model"):
    """Check the fixed header of a mapped file; return (json dict, data offset, data length)."""
    size = len(buf)
    if size < FIXED.size:
        _fail(path, f"only {size} bytes: too short to be a .dnet model")
    magic, major, minor, hlen, hcrc, data_off, data_len, fcrc = FIXED.unpack_from(buf, 0)
    if magic != MAGIC:
        _fail(path, "not a .dnet model (bad magic number)")
    if _crc(bytes(buf[:32])) != fcrc:
        _fail(path, "fixed header checksum mismatch: the file is corrupt")
    if major > VERSION[0]:
        _fail(path, f"format version {major}.{minor} is newer than this devicenet reads "
                    f"({VERSION[0]}.x): upgrade devicenet")
    if major < 1:
        _fail(path, f"unknown format version {major}.{minor}")
    if hlen > MAX_HEADER or FIXED.size + hlen > size:
        _fail(path, f"header length {hlen} does not fit the {size}-byte file (truncated?)")
    if data_off != _align(FIXED.size + hlen) or data_off + data_len != size:
        _fail(path, f"data section ({data_off}+{data_len}) does not match the {size}-byte file (truncated?)")
    if any(bytes(buf[36:40])) or any(bytes(buf[FIXED.size + hlen:data_off])):
        # Bytes no checksum covers must be zero, so that no flipped bit goes unnoticed.
        _fail(path, "reserved or padding bytes are not zero: the file is corrupt")
    text = bytes(buf[FIXED.size:FIXED.size + hlen])
    if _crc(text) != hcrc:
        _fail(path, "header checksum mismatch: the file is corrupt")
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        _fail(path, f"header is not valid JSON ({e.__class__.__name__})")
    if not isinstance(header, dict):
        _fail(path, "header is not a JSON object")
    return header, data_off, data_len


def _check_preprocess(path, spec):
    """The preprocessing metadata must be usable as is by devicenet.image
    and need a bounded amount of memory."""
    if spec is None:
        return
    ok = (isinstance(spec, dict)
          and all(is_int(spec.get(k)) and 1 <= spec[k] <= MAX_DIM for k in ("resize", "crop"))
          and all(isinstance(spec.get(k), list) and len(spec[k]) == 3 and all(map(is_num, spec[k]))
                  for k in ("mean", "std"))
          and spec.get("channel_order", "RGB") in ("RGB", "BGR")
          and isinstance(spec.get("interpolation", "bilinear"), str))
    if not ok or min(abs(v) for v in spec["std"]) < 1e-6:
        _fail(path, "metadata 'preprocess' needs integer resize and crop, three-number mean and "
                    "non-zero std, and channel_order RGB or BGR")
    from .image import preprocess_bytes
    need = preprocess_bytes(spec)
    if need > MAX_IMAGE_BYTES:
        _fail(path, f"preprocessing (resize {spec['resize']}, crop {spec['crop']}) needs {need / 2**20:.0f} MiB "
                    f"per image, over the {MAX_IMAGE_BYTES >> 20} MiB limit")


def _check_meta(path, meta):
    if not isinstance(meta, dict):
        _fail(path, "metadata is not an object")
    for key in ("name", "license"):
        if not isinstance(meta.get(key, ""), str):
            _fail(path, f"metadata {key!r} must be a string")
    for key in ("provenance", "quantization", "integer"):
        if not isinstance(meta.get(key, {}), dict):
            _fail(path, f"metadata {key!r} must be an object")
    inp = meta.get("input")
    if (not isinstance(inp, dict) or not isinstance(inp.get("name"), str)
            or not isinstance(inp.get("shape"), list) or len(inp["shape"]) not in (2, 4)
            or not all(is_int(d) and 1 <= d <= MAX_DIM for d in inp["shape"])):
        _fail(path, "metadata 'input' must give a name and a 2-D or 4-D shape of positive sizes")
    _check_preprocess(path, meta.get("preprocess"))
    if not isinstance(meta.get("output"), str):
        _fail(path, "metadata 'output' must name the output tensor")
    labels = meta.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(s, str) for s in labels):
        _fail(path, "metadata 'labels' must be a list of strings")


def _check_node(path, i, rec):
    if not isinstance(rec, dict):
        _fail(path, f"graph node {i} is not an object")
    op, name = rec.get("op"), rec.get("name", f"#{i}")
    ins, outs = rec.get("inputs"), rec.get("outputs")
    attrs, params = rec.get("attrs", {}), rec.get("params", {})
    if (not isinstance(op, str) or not isinstance(name, str)
            or not isinstance(ins, list) or not all(isinstance(s, str) for s in ins)
            or not isinstance(outs, list) or not all(isinstance(s, str) for s in outs)
            or not isinstance(attrs, dict)
            or not isinstance(params, dict) or not all(isinstance(s, str) for s in params.values())):
        _fail(path, f"graph node {i} ({name}) is malformed")
    spec = OPS.get(op)
    for key, kind in (spec.attrs if spec else {}).items():
        if key in attrs and not is_kind(attrs[key], kind):
            want = " or ".join(map(str, kind)) if isinstance(kind, tuple) else kind
            _fail(path, f"graph node {i} ({name}): attribute {key!r} must be {want}, got {attrs[key]!r:.60}")
    return Node(op, name, ins, outs, attrs, params)


def activation_bytes(graph, shapes):
    """Bytes of every activation at batch 1 plus the largest scratch a node
    makes (the padded copy of a windowed op's input and the im2col matrix
    built from it): an upper bound on the working memory a backend needs
    for one image."""
    total, scratch = sum(4 * math.prod(s) for s in shapes.values()), 0
    for node in graph.nodes:
        need = 0
        if node.op in ("conv", "maxpool", "avgpool"):
            # Pads (up to MAX_DIM) can make the padded copy far larger than
            # the input or the output, both of which stay small.
            _, _, (pt, pl, pb, pr), _ = window(node.attrs, node.name)
            n, h, w, c = shapes[node.inputs[0]]
            # avgpool also pads a map of counts, as large as its input.
            need = 4 * n * (h + pt + pb) * (w + pl + pr) * c * (2 if node.op == "avgpool" else 1)
        if node.op == "conv":
            n, oh, ow, _ = shapes[node.outputs[0]]
            w = graph.tensors[node.params["weight"]].shape
            need += 4 * n * oh * ow * math.prod(w[1:])
        scratch = max(scratch, need)
    return total + scratch


def load(path, verify=True):
    """Map a .dnet file and return its Graph; tensors are views of the mapping.

    ``verify`` checks every tensor's CRC32 (a few ms for a 5 MB model).
    """
    path = os.fspath(path)
    try:
        with open_regular(path, "model file") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                _fail(path, "the file is empty")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        _fail(path, f"cannot read: {e}")
    return from_buffer(buf, path, verify)


def _check_integer(path, graph, shapes):
    """The integer layers (FORMAT.md 3.4): named nodes of ops that can run
    in integers, every activation they touch given a scale and zero point,
    and integers that lower without overflow (integer.lower refuses what
    cannot run exactly)."""
    spec = graph.meta.get("integer")
    if not spec:
        return
    nodes, acts = spec.get("nodes"), spec.get("activations")
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes) or not isinstance(acts, dict):
        _fail(path, "metadata 'integer' must list node names and map activations to [scale, zero point]")
    for t, v in acts.items():
        if (not isinstance(v, list) or len(v) != 2 or not is_num(v[0]) or not v[0] > 1e-30
                or not is_int(v[1]) or not 0 <= v[1] <= 255):
            _fail(path, f"integer activation {t!r:.60}: needs [scale > 0, zero point 0-255], got {v!r:.60}")
    by_name = {n.name: n for n in graph.nodes}
    from . import integer
    for name in nodes:
        node = by_name.get(name)
        if node is None:
            _fail(path, f"integer node {name!r:.60} is not in the graph")
        missing = [t for t in node.inputs + node.outputs if t not in acts]
        if missing:
            _fail(path, f"integer node {name!r:.60}: no scale for {missing[0]!r:.60}")
        wshape = graph.tensors[node.params["weight"]].shape if "weight" in node.params else None
        if node.op not in integer.OPS or not integer.supported(node, shapes[node.inputs[0]], wshape):
            _fail(path, f"integer node {name!r:.60}: {node.op} with these attributes does not run in integers")
    try:
        integer.lower(graph, shapes)
    except (DeviceNetError, ValueError) as e:
        _fail(path, str(e))


def from_buffer(buf, path="model", verify=True):
    """Parse a .dnet image held in ``buf`` (bytes or mmap)."""
    header, data_off, data_len = parse_header(buf, path)
    meta, nodes, records = header.get("meta"), header.get("graph"), header.get("tensors")
    _check_meta(path, meta)
    if not isinstance(nodes, list) or len(nodes) > MAX_NODES:
        _fail(path, "'graph' must be a list of nodes")
    if not isinstance(records, list) or len(records) > MAX_TENSORS:
        _fail(path, "'tensors' must be a list of tensor records")
    tensors, end = {}, 0
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str):
            _fail(path, f"tensor record {i} is malformed")
        name, enc, shape = rec["name"], rec.get("encoding"), rec.get("shape")
        if not isinstance(enc, str) or enc not in STORAGE:
            _fail(path, f"tensor {name}: unknown encoding {enc!r}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(is_int(d) and 0 <= d <= 1 << 31 for d in shape)):
            _fail(path, f"tensor {name}: bad shape {shape!r}")
        if name in tensors:
            _fail(path, f"tensor {name} appears twice")
        count = math.prod(shape)  # Python ints: no overflow
        dtype = STORAGE[enc]
        off, length, crc = _check_region(path, f"tensor {name}", rec, data_len, count * dtype.itemsize)
        end = _claim(buf, path, f"tensor {name}", data_off, end, off, length, verify)
        data = np.frombuffer(buf, dtype, count, data_off + off).reshape(shape)
        if verify and _crc(data) != crc:
            _fail(path, f"tensor {name}: checksum mismatch, the file is corrupt")
        scales = None
        if is_integer(enc):
            if len(shape) < 1:
                _fail(path, f"tensor {name}: an integer encoding needs an output-channel axis")
            off, length, crc = _check_region(path, f"tensor {name} scales", rec.get("scales"),
                                              data_len, shape[0] * 4)
            end = _claim(buf, path, f"tensor {name} scales", data_off, end, off, length, verify)
            scales = np.frombuffer(buf, "<f4", shape[0], data_off + off)
            if verify and _crc(scales) != crc:
                _fail(path, f"tensor {name}: scale checksum mismatch, the file is corrupt")
            # Decoded, the largest stored integer times its scale must be a
            # float32 too: 3e38 is finite, 127 times it is not.
            top = float(np.max(scales, initial=0.0)) * (QMAX[enc] + 1)
            if not np.all(np.isfinite(scales)) or np.any(scales < 0) or top > float(np.finfo(np.float32).max):
                _fail(path, f"tensor {name}: scales must be finite, non-negative and decode to finite weights")
        elif verify and enc != "int8" and not np.all(np.isfinite(data)):
            _fail(path, f"tensor {name}: holds NaN or infinity")
        tensors[name] = Tensor(name, enc, tuple(shape), data, scales)
    if end != data_len:
        _fail(path, f"{data_len - end} bytes after the last tensor belong to nothing: the file is corrupt")
    graph = Graph(meta, [_check_node(path, i, r) for i, r in enumerate(nodes)], tensors, source=buf)
    names = set()
    for node in graph.nodes:  # FORMAT.md 3.2; Model.features cuts the graph by name
        if node.name in names:
            _fail(path, f"node name {node.name!r:.60} appears twice")
        names.add(node.name)
    try:
        shapes = infer_shapes(graph)
    except DeviceNetError as e:
        _fail(path, str(e))
    need = activation_bytes(graph, shapes)
    if need > MAX_ACTIVATION_BYTES:
        _fail(path, f"the model needs {need / 2**20:.0f} MiB of activations per image, over the "
                    f"{MAX_ACTIVATION_BYTES >> 20} MiB limit")
    _check_integer(path, graph, shapes)
    classes = graph.classes(shapes)
    if graph.labels and len(graph.labels) != classes:
        out = shapes[graph.output_name]
        _fail(path, f"{len(graph.labels)} labels for " + (f"{classes} outputs" if classes else
                    f"an output of shape {out}, which is not one score per class"))
    return graph
