"""A front that travels: the displacement field carried along the shift it moved by, where it arrives.

A tunnel's or a longwall's face advancing at kilometres a year drags its settlement trough across the
ground: a cell ahead of the face is still, then settles within weeks. No curve fitted to the cell's own
past forecasts that (its past is still), and on the other simulator's ground of ``bench/outside.py`` such
cells carried 57 to 87 % of the reference's squared error while being 0.2 to 0.5 % of the map
(``bench/floors.py``). Their neighbours upstream have already settled, and a trough that travels keeps
its shape: the field F epochs ahead is the field now, shifted by the distance the face travels in F
epochs, which is the shift that maps the field F epochs ago onto the field now.

:func:`carried`, per anchor ``a`` (the last epoch of the series), from the series through the 3 x 3
binomial kernel (:func:`insarcast.udf.spatial.binomial_filter`) and averaged over three epochs:

- the levels ``L_now = L(a)`` and ``L_then = L(a - F)``; for each shift ``s`` of up to :data:`REACH` cells
  along each axis, the misfit ``e(s)``: the variance of ``L_now(p) - L_then(p - s)`` over the
  :data:`BOX` x :data:`BOX` box around the cell (its mean, an offset common to the box such as the
  season's, does not count);
- at the best shift ``s*``, the carried change over the next F epochs is ``L_now(p - s*) - L_now(p)`` plus
  the box's offset, taken a k-th of it at step k (the face moves on steadily);
- it is taken where all of: the shift fits at least :data:`RATIO` times better than none, ``e(0) / e(s*)``;
  the misfit it removes exceeds :data:`GAIN` x the variance that the noise of one epoch gives a level
  difference (``2 sigma^2 / 3``, sigma the reference's noise estimate), so that a shift that matches
  noise or an atmosphere is not taken; and the reference's own forecast at F (through the products'
  filter) is under :data:`ARRIVE` x the carried change: a front arriving at still ground, not a trough
  that deepens in place, which the cell's own curves already follow.

The products then set the ensemble's median at those cells to the carried change and keep each member's
departure from the median (:func:`insarcast.udf.tiling.forecast_block`); the products' error scale counts
the carried change's departure from the cell's own curve as one standard error of its own size
(:func:`insarcast.udf.inputs.forecast_scale`).

The constants were chosen on seeds 404 and 808 of ``bench/outside.py`` (a tunnel), ``demo`` and
``other-physics`` (mine faces that deepen in place), the shift ratio and box first with the change over
F epochs instead of the level, then the gain from 0, 1 and 4 (session 35, README "Forecast skill");
seed 909 (a tunnel) and every other scenario were measured after the choice. The carry reads
``REACH + BOX // 2 + 1`` = 8 cells around a pixel, within what the filter's width already reads
(:data:`insarcast.udf.spatial.CHOICE_RADIUS`), so a tile with the products' halo gets the whole region's
values.

numpy only (the UDF never imports torch or scipy).
"""

from __future__ import annotations

import numpy as np

from insarcast import baselines as bl

from .correction import box_means
from .spatial import adaptive_filter, binomial_filter

REACH = 4        # cells: the largest shift looked at along each axis (400 m per F epochs at 100 m cells)
BOX = 7          # cells a side of the box over which a shift is matched
RATIO = 4.0      # the best shift's misfit is at most this much smaller than no shift's ...
GAIN = 1.0       # ... and smaller by more than this x the noise's variance of a level difference
ARRIVE = 0.25    # the reference's own forecast at F is below this x the carried change
LEVEL_EPOCHS = 3  # epochs averaged into a level
#: What the products record of the carry (their ``front_carry`` attribute; ``none`` where it does not apply).
FRONT_NAME = ("where a front that travels reaches still ground, the median is the level field carried along the "
              "shift (up to 4 cells) that maps it F epochs back onto now over a 7 x 7 box, taken where that shift "
              "fits 4 x better than none, by more than the noise, and the pixel's own reference forecasts under a "
              "quarter of it (insarcast.udf.fronts)")
#: Cells the carried change of a pixel reads on each side (the shift, the box, the 3 x 3 kernel).
FRONT_RADIUS = REACH + BOX // 2 + 1


def carried(series: np.ndarray, reference: np.ndarray, *, horizon: int, history: int) -> np.ndarray:
    """``(F, y, x)`` float32: the carried change ``k / F x C`` at step k where a front arrives (module
    docstring), NaN elsewhere.

    ``series (t, y, x)``: the displacement up to the anchor (its last epoch), NaN where not valid;
    ``reference (y, x)``: the reference's forecast change at F through the products' filter (NaN where
    none). Epochs ``a - F - 2 .. a`` and the noise's ``4T`` are read; a series too short for them carries
    nothing."""
    series = np.asarray(series)
    a = series.shape[0] - 1
    shape = series.shape[1:]
    out = np.full((horizon,) + shape, np.nan, np.float32)
    first = a - horizon - (LEVEL_EPOCHS - 1)
    if first < 0 or series.ndim != 3:
        return out
    recent = series[first:]
    valid = np.isfinite(recent).all(axis=0)
    if not valid.any():
        return out
    smooth = binomial_filter(np.where(valid, recent, np.nan)).astype(np.float64)
    now = smooth[-LEVEL_EPOCHS:].mean(axis=0)
    then = smooth[:LEVEL_EPOCHS].mean(axis=0)
    noise = bl.epoch_noise(series, a, history=history)
    level_variance = 2.0 * noise ** 2 / LEVEL_EPOCHS

    e0, _ = _misfit(now - then)
    with np.errstate(invalid="ignore"):
        moved = e0 > GAIN * level_variance                   # a front needs this (the gain is at most e0)
    if not moved.any():
        return out
    # the shifts are matched only around the cells that moved: a cell's value reads the levels within
    # REACH + BOX // 2 cells, so the crop gives the whole block's values there
    rows, cols = np.flatnonzero(moved.any(axis=1)), np.flatnonzero(moved.any(axis=0))
    m = REACH + BOX // 2
    crop = (slice(max(rows[0] - m, 0), rows[-1] + m + 1), slice(max(cols[0] - m, 0), cols[-1] + m + 1))
    inside = _carried_crop(now[crop], then[crop], e0[crop], level_variance[crop], valid[crop],
                          np.asarray(reference)[crop], horizon=horizon)
    out[(slice(None),) + crop] = inside
    return out


def _misfit(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The variance and the mean of ``diff (..., y, x)`` over the valid cells of the BOX x BOX box around each
    cell."""
    ok = np.isfinite(diff)
    values = np.where(ok, diff, 0.0)
    mean, square = np.moveaxis(box_means(np.stack([values, values ** 2], axis=-3), ok[..., None, :, :], (BOX,))[0], -3, 0)
    return square - mean ** 2, mean


def _carried_crop(now: np.ndarray, then: np.ndarray, e0: np.ndarray, level_variance: np.ndarray, valid: np.ndarray,
                 reference: np.ndarray, *, horizon: int) -> np.ndarray:
    """:func:`carried` over a window of the levels ``now`` and ``then`` (y, x), given no shift's misfit ``e0``."""
    ny, nx = shape = now.shape
    best, change = np.full(shape, np.inf), np.full(shape, np.nan)
    pad = ((REACH, REACH), (REACH, REACH))
    then_p, now_p = np.pad(then, pad, constant_values=np.nan), np.pad(now, pad, constant_values=np.nan)
    for dy in range(-REACH, REACH + 1):       # a row of shifts at a time: (2 REACH + 1, y, x) arrays
        dxs = [dx for dx in range(-REACH, REACH + 1) if (dy, dx) != (0, 0)]
        # b(p) = a(p - s): the padded array read from (REACH - dy, REACH - dx)
        rows = slice(REACH - dy, REACH - dy + ny)
        moved_then = np.stack([then_p[rows, REACH - dx: REACH - dx + nx] for dx in dxs])
        moved_now = np.stack([now_p[rows, REACH - dx: REACH - dx + nx] for dx in dxs])
        e, offset = _misfit(now - moved_then)
        k = np.argmin(np.where(np.isfinite(e), e, np.inf), axis=0)
        e_k = np.take_along_axis(e, k[None], 0)[0]
        better = e_k < best
        best = np.where(better, e_k, best)
        candidate = np.take_along_axis(moved_now + offset, k[None], 0)[0] - now
        change = np.where(better, candidate, change)
    with np.errstate(invalid="ignore", divide="ignore"):
        take = (valid & np.isfinite(change) & (e0 >= RATIO * best) & (e0 - best > GAIN * level_variance)
                & (np.abs(np.nan_to_num(reference, nan=np.inf)) < ARRIVE * np.abs(change)))
    steps = (np.arange(1, horizon + 1) / horizon).reshape(-1, 1, 1)
    return np.where(take, steps * change, np.nan).astype(np.float32)


def carry_of(series: np.ndarray, fitted: np.ndarray, *, history: int) -> np.ndarray:
    """:func:`carried` of ``series (t, y, x)`` (anchor: its last epoch, NaN where not valid) with the reference of
    :func:`insarcast.udf.inputs.reference_fit` ``fitted (2F + 1, y, x)``, its change at F through the products'
    filter at its widths."""
    steps = np.shape(fitted)[0] // 2
    reference = adaptive_filter(fitted[steps:2 * steps], fitted[2 * steps])[-1]
    return carried(series, reference, horizon=steps, history=history)


def apply(members: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """``members (K, F, y, x)`` with their median moved to ``carry (F, y, x)`` where it is finite, each
    member keeping its departure from the median; unchanged elsewhere."""
    take = np.isfinite(carry)
    if not take.any():
        return members
    with np.errstate(invalid="ignore"):
        median = np.median(members, axis=0)
    return np.where(take, members + (carry - median), members).astype(members.dtype)
