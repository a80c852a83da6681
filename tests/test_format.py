"""The .dnet format: round trips for every encoding and refusal of bad headers."""

import struct

import numpy as np
import pytest

from devicenet import DeviceNetError, format as dnet
from devicenet.convert.builder import Builder, weight_encodings
from devicenet.quant import ENCODINGS, decode, encode, QMAX


def tiny_graph(encoding="int8", zero_channel=False):
    rng = np.random.default_rng(0)
    b = Builder([1, 8, 8, 3])
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    if zero_channel:
        w[2] = 0
    x = b.add("conv", "input", {"kernel": [3, 3], "pads": [1, 1, 1, 1], "activation": "relu"},
              {"weight": w, "bias": rng.normal(size=4)})
    x = b.add("global_avgpool", x)
    x = b.add("flatten", x)
    b.add("dense", x, {}, {"weight": rng.normal(size=(5, 4)), "bias": np.zeros(5)}, output="logits")
    meta = {"name": "tiny", "labels": list("abcde"), "preprocess": {"resize": 8, "crop": 8,
            "mean": [0, 0, 0], "std": [1, 1, 1]}}
    return b, b.graph(meta, weight_encodings(b.params, b.nodes, encoding))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_round_trip_every_encoding(tmp_path, encoding):
    b, g = tiny_graph(encoding)
    path = tmp_path / "m.dnet"
    dnet.write(g, path)
    back = dnet.load(path)
    assert back.meta["labels"] == list("abcde")
    assert [n.to_json() for n in back.nodes] == [n.to_json() for n in g.nodes]
    for name, t in g.tensors.items():
        u = back.tensors[name]
        assert u.encoding == t.encoding and u.shape == t.shape
        np.testing.assert_array_equal(u.data, t.data)
        # data is mapped, not copied, and 64-byte aligned in the file
        assert u.data.ctypes.data % 64 == 0 or u.data.size == 0
    for name, w in b.params.items():
        err = np.abs(back.tensors[name].decode() - w).max()
        bound = {"int8": np.abs(w).max() / 127, "int16": np.abs(w).max() / 32767,
                 "float16": np.abs(w).max() / 1000, "float32": 0}[g.tensors[name].encoding]
        assert err <= bound + 1e-7


def test_zero_channel_round_trips_without_nan(tmp_path):
    _, g = tiny_graph("int8", zero_channel=True)
    dnet.write(g, tmp_path / "z.dnet")
    t = dnet.load(tmp_path / "z.dnet").tensors["conv_0.weight"]
    assert t.scales[2] == 0
    w = t.decode()
    assert np.all(np.isfinite(w)) and not w[2].any()


def test_encode_is_symmetric_and_saturates_at_clip():
    w = np.array([[1.0, -1.0, 0.5], [2.0, 0.0, -4.0]], np.float32)
    q, s = encode(w, "int8")
    assert q.dtype == np.int8 and q.max() == 127 and q.min() == -127
    np.testing.assert_allclose(s, [1 / 127, 4 / 127], rtol=1e-6)
    q, s = encode(w, "int8", clip=np.array([0.5, 4.0]))
    assert decode(q, s)[0, 0] == pytest.approx(0.5)
    assert QMAX["int16"] == 32767


def test_writes_are_deterministic(tmp_path):
    _, g = tiny_graph()
    dnet.write(g, tmp_path / "a.dnet")
    dnet.write(g, tmp_path / "b.dnet")
    assert (tmp_path / "a.dnet").read_bytes() == (tmp_path / "b.dnet").read_bytes()


@pytest.fixture
def good_bytes(tmp_path):
    _, g = tiny_graph()
    dnet.write(g, tmp_path / "m.dnet")
    return bytearray((tmp_path / "m.dnet").read_bytes())


def refuse(tmp_path, blob, match):
    p = tmp_path / "bad.dnet"
    p.write_bytes(bytes(blob))
    with pytest.raises(DeviceNetError, match=match):
        dnet.load(p)


def refix(blob):
    """Recompute the fixed header's checksum after editing it."""
    import zlib
    blob[32:36] = struct.pack("<I", zlib.crc32(bytes(blob[:32])) & 0xFFFFFFFF)
    return blob


def test_refuses_bad_magic(tmp_path, good_bytes):
    good_bytes[:4] = b"NOPE"
    refuse(tmp_path, good_bytes, "not a .dnet model")


def test_refuses_newer_major_version(tmp_path, good_bytes):
    good_bytes[4:6] = struct.pack("<H", 2)
    refuse(tmp_path, refix(good_bytes), "newer than this devicenet reads.*upgrade")


def test_accepts_newer_minor_version(tmp_path, good_bytes):
    good_bytes[6:8] = struct.pack("<H", 7)
    p = tmp_path / "minor.dnet"
    p.write_bytes(bytes(refix(good_bytes)))
    assert dnet.load(p).meta["name"] == "tiny"


def test_refuses_corrupt_fixed_header(tmp_path, good_bytes):
    good_bytes[8] ^= 1
    refuse(tmp_path, good_bytes, "checksum")


def test_refuses_huge_header_length(tmp_path, good_bytes):
    good_bytes[8:12] = struct.pack("<I", 0xFFFFFFF0)
    refuse(tmp_path, refix(good_bytes), "header length")


def test_refuses_truncation(tmp_path, good_bytes):
    refuse(tmp_path, good_bytes[:-10], "truncated")
    refuse(tmp_path, good_bytes[:20], "too short")
    refuse(tmp_path, b"", "empty")


def test_refuses_flipped_json_and_tensor_bytes(tmp_path, good_bytes):
    flipped = bytearray(good_bytes)
    flipped[60] ^= 0x20
    refuse(tmp_path, flipped, "checksum")
    flipped = bytearray(good_bytes)
    flipped[-3] ^= 0x01
    refuse(tmp_path, flipped, "checksum")


def test_refuses_directory_and_missing_file(tmp_path):
    with pytest.raises(DeviceNetError, match="directory"):
        dnet.load(tmp_path)
    with pytest.raises(DeviceNetError, match="no such"):
        dnet.load(tmp_path / "missing.dnet")


def test_failed_write_leaves_existing_file(tmp_path):
    _, g = tiny_graph()
    path = tmp_path / "m.dnet"
    dnet.write(g, path)
    before = path.read_bytes()
    g.nodes[0].inputs = ["nowhere"]
    with pytest.raises(DeviceNetError):
        dnet.write(g, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.dnet"]


def test_written_model_has_ordinary_permissions(tmp_path):
    import os
    _, g = tiny_graph()
    dnet.write(g, tmp_path / "m.dnet")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.dnet").stat().st_mode & 0o777 == 0o666 & ~umask
