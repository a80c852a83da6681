"""Eight-bit integer arithmetic: the reference every integer kernel matches
bit for bit.

The scheme is gemmlowp's and TFLite's, written out once in numpy:

* an activation tensor is uint8 with one scale and zero point:
  ``real = scale * (q - zero_point)``;
* a weight is int8, symmetric, one scale per output channel (the file's
  ``int8`` encoding, quant.py): ``real = scale[c] * q``;
* products are summed exactly in int32, starting from an int32 bias that
  also carries the activation's zero point (``fold_bias``);
* each output is brought back to uint8 by one float32 multiply
  (``requantize``): ``float32(acc) * rscale[c]``, where ``rscale`` is the
  float32 of the real factor (input scale x weight scale / output scale),
  clamped to ``[qmin - zero_point, qmax - zero_point]``, rounded half to
  even, plus the zero point.  The clamp of ReLU or ReLU6 is the clamp to
  ``[qmin, qmax]``.  An op may instead hand its sums to a float layer
  (``dequantize_acc``: ``float32(acc) * scale[c]``).

Every step is an IEEE float32 operation with one rounding, so SIMD code
matches it exactly: ``cvtdq2ps``/``vcvtq_f32_s32`` (the int32 to float32
conversion rounds half to even beyond 2**24), ``mulps``/``vmulq_f32``,
the clamp by min and max, and the last rounding by ``cvtps2dq`` or
``vcvtnq`` (or, where NEON has no such conversion, by adding 1.5 x 2**23,
which leaves the rounded integer in the float's low bits: exact for the
clamped values).  Five instructions per 8 outputs (convert, multiply,
two clamps, convert back) where gemmlowp's fixed-point multiply, rounding
shift and clamps take about twelve (XNNPACK made the same move); the factor keeps 24 bits instead of 31,
a relative error of at most 6e-8, far inside the output's own rounding.
Quantising a float rounds half to even too (``rint``).  Kernels may
assume every int32 sum stays within 2**30 in magnitude; the quantiser that
writes a model guarantees it.
"""

import numpy as np

#: the range of an activation's integers
QMIN, QMAX = 0, 255


def requant_scale(real):
    """The float32 factors ``rscale`` of ``requantize`` for real factors
    (input scale x weight scale / output scale, per channel)."""
    real = np.atleast_1d(np.asarray(real, np.float64))
    if np.any(real < 0.0) or not np.all(np.isfinite(real)):
        raise ValueError("requantisation factors must be finite and >= 0")
    if np.any(real > np.finfo(np.float32).max):
        raise ValueError("a requantisation factor overflows float32: an output scale too small beside its "
                         "input's times its weight's")
    return real.astype(np.float32)


def requantize(acc, rscale, zero_point, qmin=QMIN, qmax=QMAX):
    """uint8 outputs of int32 sums ``acc`` (..., C) with per-channel (or
    scalar) float32 factors ``rscale``."""
    y = np.asarray(acc, np.int32).astype(np.float32) * np.asarray(rscale, np.float32)
    np.clip(y, np.float32(qmin - zero_point), np.float32(qmax - zero_point), out=y)
    return (np.rint(y).astype(np.int32) + zero_point).astype(np.uint8)


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


def gemm(a, wt, bias, rscale, zero_point, qmin=QMIN, qmax=QMAX):
    """uint8 (m, n): requantised ``gemm_acc``; ``bias`` already folded."""
    return requantize(gemm_acc(a, wt, bias), rscale, zero_point, qmin, qmax)


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
