"""Weight rounding that keeps a layer's outputs, not its weights.

Rounding every weight to its nearest integer makes each weight's error
small, but the errors of one output channel add up over its inputs, and
inputs that move together add them up coherently.  What matters is the
output error ``(W - Q) x`` over the inputs the layer really sees.

``round_to_outputs`` rounds the input columns one at a time and spreads
each column's rounding error over the columns not yet rounded, in
proportion to how the inputs co-vary (the inverse of their second-moment
matrix ``H = X^T X``): the optimal-brain-surgeon update that GPTQ
(Frantar et al., 2022) applies column by column.  Columns are taken in
order of decreasing input energy, so the loudest inputs are rounded while
the most columns are left to absorb their error.  The scales are given
(chosen by the caller), so the result is stored exactly as plain
rounding's would be.
"""

import numpy as np

#: diagonal added to H, as a fraction of its mean diagonal: keeps the
#: inverse well conditioned where the calibration inputs do not span every
#: direction (a 7x7 map on a few photos has fewer pixels than channels)
DAMP = 0.01


def second_moment(x_rows):
    """``X^T X / m`` of the rows of a layer's input patches (float64)."""
    x = np.asarray(x_rows, np.float64)
    return x.T @ x / max(len(x), 1)


def round_to_outputs(w_rows, scales, qmax, h):
    """Integers ``q`` in [-qmax, qmax] for ``w_rows`` (out, k) with
    per-row ``scales``, chosen so that ``q * scale`` keeps ``w_rows @ x``
    for inputs of second moment ``h`` (k, k).  Rows of scale 0 are 0."""
    w = np.array(w_rows, np.float64)
    s = np.asarray(scales, np.float64)
    live = s > 0
    safe = np.where(live, s, 1.0)
    h = np.array(h, np.float64)
    # an input never seen non-zero is rounded to nearest and passes no
    # error on (its row of H is zero): the photos it does light up on were
    # not in the batch, so its weights are kept as trained
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    k = h.shape[0]
    h[np.arange(k), np.arange(k)] += DAMP * float(np.mean(np.diag(h)))
    order = np.argsort(-np.diag(h), kind="stable")
    w, h = w[:, order], h[np.ix_(order, order)]
    # the upper Cholesky factor U of H^-1 (H^-1 = U^T U): row i of U is
    # how rounding column i moves the columns after it
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    q = np.zeros_like(w)
    for i in range(k):
        col = w[:, i]
        q[:, i] = np.clip(np.rint(col / safe), -qmax, qmax)
        err = (col - q[:, i] * safe) / u[i, i]
        w[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    q[~live] = 0
    out = np.empty_like(q)
    out[:, order] = q
    return out
