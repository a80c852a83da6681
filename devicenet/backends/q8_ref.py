"""Eight-bit integer arithmetic: the reference every integer kernel matches
bit for bit.

The scheme is gemmlowp's and TFLite's, written out once in numpy:

* an activation tensor is uint8 with one scale and zero point:
  ``real = scale * (q - zero_point)``;
* a weight is int8, symmetric, one scale per output channel (the file's
  ``int8`` encoding, quant.py): ``real = scale[c] * q``;
* products are summed exactly in int32, starting from an int32 bias that
  also carries the activation's zero point (``fold_bias``);
* each output is brought back to uint8 by a fixed-point multiply
  (``requantize``): a multiplier ``m`` in [2**30, 2**31) and a right shift
  ``e`` >= 0 per output channel stand for the real factor
  ``m * 2**-(31 + e)``.  The clamp of ReLU or ReLU6 is the clamp to
  ``[qmin, qmax]``.  An op may instead hand its sums to a float layer
  (``dequantize_acc``: ``float32(acc) * scale[c]``).

Rounding is defined exactly, so that SIMD code can match it: the multiply
rounds half up (``(acc * m + 2**30) >> 31``, what NEON's ``vqrdmulh`` and
a 64-bit multiply on x86 give), the shift rounds half up
(``(p + 2**(e - 1)) >> e``, NEON's ``vrshl``), and quantising a float
rounds half to even (``rint``, what ``cvtps2dq`` and ``vcvtn`` do).
Kernels may assume every int32 sum stays within 2**30 in magnitude; the
quantiser that writes a model guarantees it.
"""

import numpy as np

#: the range of an activation's integers
QMIN, QMAX = 0, 255
#: largest right shift of a requantisation
MAX_SHIFT = 30


def multiplier(real):
    """(m, e) per channel for real factors in (0, 1): ``real`` ~= m * 2**-(31 + e)
    with m in [2**30, 2**31) and 0 <= e <= MAX_SHIFT.  A factor too small
    for the shift range becomes (0, 0): its outputs are the zero point."""
    real = np.atleast_1d(np.asarray(real, np.float64))
    if np.any(real >= 1.0) or np.any(real < 0.0) or not np.all(np.isfinite(real)):
        raise ValueError("requantisation factors must lie in [0, 1)")
    frac, exp = np.frexp(real)              # real = frac * 2**exp, frac in [0.5, 1)
    m = np.round(frac * 2.0 ** 31).astype(np.int64)
    up = m == 2 ** 31                        # frac rounded up to 1.0
    m[up] //= 2
    exp = exp + up
    e = -exp
    tiny = (e > MAX_SHIFT) | (real == 0)
    m[tiny], e[tiny] = 0, 0
    return m.astype(np.int32), e.astype(np.int32)


def requantize(acc, m, e, zero_point, qmin=QMIN, qmax=QMAX):
    """uint8 outputs of int32 sums ``acc`` (..., C) with per-channel (or
    scalar) m and e."""
    acc = np.asarray(acc, np.int64)
    p = (acc * np.asarray(m, np.int64) + (1 << 30)) >> 31
    e = np.asarray(e, np.int64)
    half = np.where(e > 0, np.left_shift(1, np.maximum(e - 1, 0)), 0)
    p = (p + half) >> e
    return np.clip(p + zero_point, qmin, qmax).astype(np.uint8)


def dequantize_acc(acc, scale, lo=None, hi=None):
    """float32 outputs of int32 sums: ``float32(acc) * scale`` per channel,
    clamped to [lo, hi] where given."""
    y = np.asarray(acc, np.int32).astype(np.float32) * np.asarray(scale, np.float32)
    if lo is not None or hi is not None:
        np.clip(y, lo, hi, out=y)
    return y


def quantize(x, scale, zero_point):
    """uint8 of float32 x: ``clamp(rint(x * float32(1 / scale)) + zero_point)``."""
    inv = np.float32(1.0 / scale)
    q = np.rint(np.asarray(x, np.float32) * inv).astype(np.float64) + zero_point
    return np.clip(q, QMIN, QMAX).astype(np.uint8)


def dequantize(q, scale, zero_point):
    """float32 of uint8 q."""
    return ((np.asarray(q, np.int32) - zero_point).astype(np.float32) * np.float32(scale))


def fold_bias(bias, wt, a_zero_point):
    """The int32 bias a GEMM starts from: ``bias - zp_a * sum_k w[c, k]``
    (wt (n, k) int8, bias n int32 or None), so that the kernel sums the
    raw uint8 activations."""
    wsum = np.asarray(wt, np.int64).reshape(wt.shape[0], -1).sum(axis=1)
    b = np.zeros(wt.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
    return (b - a_zero_point * wsum).astype(np.int32)


def gemm_acc(a, wt, bias):
    """int32 sums ``bias[c] + sum_k a[r, k] * wt[c, k]`` of uint8 a (m, k)
    and int8 wt (n, k)."""
    return (np.asarray(a, np.int64) @ np.asarray(wt, np.int64).T + np.asarray(bias, np.int64)).astype(np.int32)


def gemm(a, wt, bias, m, e, zero_point, qmin=QMIN, qmax=QMAX):
    """uint8 (m, n): requantised ``gemm_acc``; ``bias`` already folded."""
    return requantize(gemm_acc(a, wt, bias), m, e, zero_point, qmin, qmax)


def pad(x, pads, zero_point):
    """NHWC uint8 x padded (top, left, bottom, right) with the zero point,
    the integer that stands for 0.0."""
    t, l, b, r = pads
    n, h, w, c = x.shape
    out = np.full((n, h + t + b, w + l + r, c), zero_point, np.uint8)
    out[:, t:t + h, l:l + w] = x
    return out


def _taps(x, kernel, stride, pads, zero_point):
    (kh, kw), (sh, sw) = kernel, stride
    xp = pad(x, pads, zero_point)
    oh = (xp.shape[1] - kh) // sh + 1
    ow = (xp.shape[2] - kw) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :]


def im2col(x, kernel, stride, pads, zero_point):
    """Patches of uint8 x as (N*OH*OW, KH*KW*C) in (KH, KW, C) order,
    padded with the zero point."""
    taps = list(_taps(x, kernel, stride, pads, zero_point))
    n, oh, ow, c = taps[0][2].shape
    cols = np.stack([v for _, _, v in taps], axis=3)  # (n, oh, ow, kh*kw, c)
    return cols.reshape(n * oh * ow, -1), (n, oh, ow)


def dwconv_acc(x, w, bias, stride, pads, zero_point):
    """int32 sums of a depthwise convolution: uint8 x (N, H, W, C), int8 w
    (C, KH, KW), int32 bias (C,) already folded (``fold_bias``) and the
    padding filled with the zero point."""
    acc = None
    for i, j, v in _taps(x, w.shape[1:], stride, pads, zero_point):
        t = v.astype(np.int64) * w[:, i, j].astype(np.int64)
        acc = t if acc is None else acc + t
    return (acc + np.asarray(bias, np.int64)).astype(np.int32)


def add_multipliers(a_scale, b_scale, out_scale, shift=16):
    """Integer factors (ma, mb) of the two inputs of ``add`` for a given
    shift: ``round(scale / out_scale * 2**shift)``."""
    return (int(round(a_scale / out_scale * 2 ** shift)), int(round(b_scale / out_scale * 2 ** shift)))


def add(a, b, a_zero_point, b_zero_point, ma, mb, shift, zero_point, qmin=QMIN, qmax=QMAX):
    """uint8 sum of two uint8 tensors of other scales:
    ``clamp(zp + ((a - zpa) * ma + (b - zpb) * mb + 2**(shift - 1)) >> shift)``."""
    s = ((np.asarray(a, np.int64) - a_zero_point) * ma + (np.asarray(b, np.int64) - b_zero_point) * mb
         + (1 << (shift - 1))) >> shift
    return np.clip(s + zero_point, qmin, qmax).astype(np.uint8)


def meanpool(x, zero_point, scale):
    """Global average pool of uint8 x (N, H, W, C) to float32 (N, C):
    ``float32(sum - H*W*zp) * scale`` (scale: the input's scale / (H*W))."""
    n, h, w, c = x.shape
    s = x.reshape(n, h * w, c).astype(np.int64).sum(axis=1) - h * w * zero_point
    return s.astype(np.int32).astype(np.float32) * np.float32(scale)
