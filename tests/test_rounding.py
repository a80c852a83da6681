"""Output-aware weight rounding (devicenet/rounding.py) against plain rounding."""

import numpy as np
import pytest

from devicenet import rounding


def _problem(seed, k=48, n=24, m=4000, correlated=True):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(k, k)) * 0.3 + np.eye(k) if correlated else np.eye(k)
    x = np.maximum(rng.normal(size=(m, k)) @ mix, 0.0)  # post-ReLU inputs: co-varying, non-negative
    w = (rng.normal(size=(n, k)) * 0.05).astype(np.float32)
    scales = (np.abs(w).max(axis=1) / 64).astype(np.float32)
    return x, w, scales


def _nearest(w, scales, qmax):
    return np.clip(np.rint(w / scales[:, None]), -qmax, qmax)


def _output_error(x, w, q, scales):
    return float(((x @ (w - q * scales[:, None]).T) ** 2).mean())


@pytest.mark.parametrize("seed", range(4))
def test_outputs_move_less_than_with_nearest_rounding(seed):
    x, w, s = _problem(seed)
    q = rounding.round_to_outputs(w, s, 64, rounding.second_moment(x))
    assert q.min() >= -64 and q.max() <= 64 and np.array_equal(q, np.rint(q))
    # the same scales, so the file stores it the same way; a clear gain on
    # inputs that move together
    assert _output_error(x, w, q, s) < 0.75 * _output_error(x, w, _nearest(w, s, 64), s)
    # and it stays a rounding: no weight moves further than the step a
    # neighbour's error can push it
    assert np.abs(q - w / s[:, None]).max() < 2


def test_inputs_that_never_move_together_get_nearest_rounding():
    # H diagonal: rounding one column tells nothing about another, so the
    # best each column can do is its own nearest integer
    rng = np.random.default_rng(7)
    w = rng.normal(size=(10, 16)).astype(np.float32)
    s = (np.abs(w).max(axis=1) / 100).astype(np.float32)
    h = np.diag(rng.uniform(0.5, 2.0, size=16))
    assert np.array_equal(rounding.round_to_outputs(w, s, 100, h), _nearest(w, s, 100))


def test_unseen_inputs_and_zero_rows_keep_their_plain_rounding():
    x, w, s = _problem(3, k=12, n=6)
    x[:, 5] = 0.0        # a channel the batch never lit up
    s[2] = 0.0           # a row of zeros (scale 0)
    q = rounding.round_to_outputs(w, s, 64, rounding.second_moment(x))
    assert not q[2].any()
    live = np.arange(6) != 2
    assert np.array_equal(q[live, 5], _nearest(w[live], s[live], 64)[:, 5])


def test_saturating_clip_is_respected():
    x, w, s = _problem(5)
    s = s * 0.5                      # a clip at half the largest weight: many saturate
    q = rounding.round_to_outputs(w, s, 64, rounding.second_moment(x))
    assert np.abs(q).max() == 64
    assert _output_error(x, w, q, s) < _output_error(x, w, _nearest(w, s, 64), s)
