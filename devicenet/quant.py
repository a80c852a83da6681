"""Weight encodings: how a float32 tensor is stored in a .dnet file.

Every encoding keeps axis 0 as the output channel, so per-channel scales are
one float32 per row.  Integer encodings are symmetric (no zero point): a
weight is ``q * scale`` with ``q`` in ``[-qmax, qmax]``.
"""

import numpy as np

from .errors import DeviceNetError

#: encoding name -> numpy storage dtype (little-endian, as in the file)
STORAGE = {
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
}
#: largest magnitude an integer encoding uses; -128 is left out so that the
#: range is symmetric and negating a weight never overflows.
QMAX = {"int8": 127, "int16": 32767}
ENCODINGS = tuple(STORAGE)


def is_integer(encoding):
    return encoding in QMAX


def channel_absmax(w):
    """Largest |w| of every output channel (row of axis 0)."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim == 0:
        return np.abs(w).reshape(1)
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1) if w.size else np.zeros(w.shape[0], np.float32)


def encode(w, encoding, clip=None, qmax=None):
    """Encode float weights.  Returns ``(data, scales)``; ``scales`` is None
    for float encodings.

    ``clip`` (optional, one value per channel) is the magnitude mapped to
    ``qmax``; weights beyond it saturate.  By default it is the channel's
    largest magnitude, so nothing saturates.  A channel that is all zero gets
    scale 0 and decodes to exact zeros.  ``qmax`` narrows an integer
    encoding's range (an integer depthwise layer's int16 weights use
    twelve bits, devicenet/integer.py).
    """
    if encoding not in STORAGE:
        raise DeviceNetError(f"unknown weight encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    w = np.asarray(w, dtype=np.float32)
    if not is_integer(encoding):
        return w.astype(STORAGE[encoding]), None
    qmax = QMAX[encoding] if qmax is None else min(int(qmax), QMAX[encoding])
    limit = channel_absmax(w) if clip is None else np.asarray(clip, np.float32)
    scales = (limit / qmax).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
    rows = w.reshape(w.shape[0], -1) if w.ndim else w.reshape(1, 1)
    q = np.clip(np.rint(rows / safe[:, None]), -qmax, qmax)
    return q.astype(STORAGE[encoding]).reshape(w.shape), scales


def decode(data, scales, out=None):
    """Decode stored weights to float32 (into ``out`` when given)."""
    if scales is None:
        if out is None:
            return np.asarray(data, dtype=np.float32)
        out[...] = data
        return out
    shape = (data.shape[0],) + (1,) * (data.ndim - 1) if data.ndim else ()
    s = np.asarray(scales, np.float32).reshape(shape)
    if out is None:
        return np.multiply(data, s, dtype=np.float32)
    return np.multiply(data, s, out=out, dtype=np.float32)


def quantize(w, encoding, clip=None, qmax=None):
    """Round-trip ``w`` through an encoding: what the runtime will see."""
    return decode(*encode(w, encoding, clip, qmax))


def nbytes(shape, encoding):
    """Bytes a tensor of this shape takes in the file (data plus scales)."""
    n = int(np.prod(shape, dtype=object)) if len(shape) else 1
    size = n * STORAGE[encoding].itemsize
    if is_integer(encoding):
        size += (shape[0] if len(shape) else 1) * 4
    return size
