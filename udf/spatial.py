"""The spatial filter of the forecast maps: a width per pixel, chosen by hindcast, that skips missing cells.

Each member's forecast is estimated pixel by pixel from that pixel's own series, so it carries
noise that its neighbours, on ground that moves alike at 100 m, do not share. The filter replaces
each valid cell by a weighted mean of the valid cells around it, renormalised over the valid ones:
a cell beside a gap or the region's edge averages only what exists. Invalid cells stay NaN; nothing
is filled. The kernels (:data:`WIDTHS`): the 3 x 3 binomial one, weights ``outer(b, b)``, ``b = (1, 2,
1) / 4`` (a Gaussian of standard deviation 1/sqrt(2) cells truncated at one cell), and Gaussians of 1,
1.5, 2 and 3 cells truncated at two standard deviations.

Which width: where the ground varies faster than the forecast's noise a narrow kernel is best, where
the noise dominates a wide one, and neither is known in advance. :func:`filter_widths` decides as
the reference decides its curve (:mod:`insarcast.baselines`), out of sample on the pixel's recent
past: each width filters the maps the reference forecast at its hindcast origins, is scored against
the change then observed, and the width with the smallest squared error over the :data:`CHOICE_BOX`
box around the pixel is kept. Measured (README, "The spatial filter"): the reference at F against
the noise-free truth 0.3 to 11 % lower than with the binomial kernel alone on all sixteen scenarios
tried, of both simulators; the ensemble of ``bench/skill.py`` and ``bench/outside.py`` 0 to 8 % lower
on 21 of 22, 0.5 % higher on one.

A cell's filtered value reads its neighbours within :data:`RADIUS` cells and its width the series
within :data:`CHOICE_RADIUS`: a tiled computation needs that many cells around its core
(:func:`halo`, :mod:`insarcast.udf.tiling`). numpy only: the openEO UDF's environment has no scipy.
"""

from __future__ import annotations

import numpy as np

#: The filter's widths, from narrowest: the binomial kernel, then Gaussians of these standard deviations
#: (cells), truncated at two of them and renormalised over the valid cells like the binomial one.
WIDTHS: tuple[str | float, ...] = ("binomial", 1.0, 1.5, 2.0, 3.0)
CHOICE_BOX = 31                                 # cells a side of the box whose hindcast error chooses a width
RADIUS = 6                                      # cells a filtered value reads on each side (the widest kernel)
BINOMIAL_RADIUS = 1                             # ... where every width is the binomial kernel's (no hindcast)
#: Cells a pixel's width reads on each side: the box, and the filter of the hindcast maps within it.
CHOICE_RADIUS = CHOICE_BOX // 2 + RADIUS


def halo(patch: int) -> int:
    """Cells of context around a tile for which the filtered forecast of its core equals the whole region's:
    the model tiles meeting the core and the filter's ring (``P - 1 + RADIUS``), and the cells a pixel's width
    reads (:data:`CHOICE_RADIUS`)."""
    return max(int(patch) - 1 + RADIUS, CHOICE_RADIUS)


BINOMIAL_NAME = "binomial 3x3, weights outer((1, 2, 1), (1, 2, 1)) / 16 over the valid cells"
#: What the products record of the filter of formulations with a hindcast (the others: BINOMIAL_NAME, their
#: only width, :func:`insarcast.udf.inputs.reference_fit`).
FILTER_NAME = ("hindcast-chosen width: per pixel, of the binomial 3x3 kernel and Gaussians of 1, 1.5, 2 and 3 "
               "cells (truncated at 2 sigma), the one whose filtered hindcast maps of the reference forecast "
               "the observed change best over a 31 x 31-cell box; over the valid cells")


def binomial_filter(a: np.ndarray) -> np.ndarray:
    """``a (..., y, x)`` filtered over its last two axes (module docstring); NaN stays NaN; float32."""
    return _over_valid(a, _smooth)


def _over_valid(a: np.ndarray, smooth) -> np.ndarray:
    """``a (..., y, x)`` through the linear filter ``smooth`` (zero beyond the edges), renormalised over the
    valid cells: ``smooth(a, 0 where NaN) / smooth(valid)``; NaN stays NaN; float32."""
    a = np.asarray(a, np.float32)
    ok = np.isfinite(a)
    flat = ok.reshape(-1, *ok.shape[-2:])
    # the members and steps of a forecast share one mask (the valid pixels): its weights once
    mask = flat[0] if (flat == flat[:1]).all() else ok
    num, den = smooth(np.where(ok, a, np.float32(0))), smooth(mask.astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, num / den, np.float32(np.nan)).astype(np.float32)


def _smooth(a: np.ndarray) -> np.ndarray:
    """Separable (1, 2, 1) / 4 along y then x, zero beyond the edges (numpy only: the openEO UDF's
    environment has no scipy)."""
    rows = 2 * a
    rows[..., 1:, :] += a[..., :-1, :]
    rows[..., :-1, :] += a[..., 1:, :]
    out = 2 * rows
    out[..., 1:] += rows[..., :-1]
    out[..., :-1] += rows[..., 1:]
    return out / np.float32(16)


def gaussian_filter(a: np.ndarray, sigma: float) -> np.ndarray:
    """``a (..., y, x)`` filtered with a Gaussian of ``sigma`` cells truncated at ``2 sigma``, renormalised
    over the valid cells like :func:`binomial_filter` (numpy only); NaN stays NaN; float32."""
    r = int(np.ceil(2 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    return _over_valid(a, lambda x: _separable(x, k))


def _separable(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``a`` convolved with the symmetric ``k`` (odd length) along y then x, zero beyond the edges."""
    r = len(k) // 2
    for axis in (-2, -1):
        n = a.shape[axis]
        out = a * k[r]
        for shift in range(1, min(r, n - 1) + 1):
            lo, hi = [slice(None)] * a.ndim, [slice(None)] * a.ndim
            lo[axis], hi[axis] = slice(0, n - shift), slice(shift, n)
            out[tuple(lo)] += k[r + shift] * a[tuple(hi)]      # the cell ``shift`` after
            out[tuple(hi)] += k[r - shift] * a[tuple(lo)]      # the cell ``shift`` before
        a = out
    return a


def width_filter(a: np.ndarray, width: str | float) -> np.ndarray:
    """``a`` through one of the :data:`WIDTHS`."""
    return binomial_filter(a) if width == "binomial" else gaussian_filter(a, float(width))


def filter_widths(hindcast: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``(y, x)`` int8: the index in :data:`WIDTHS` of each pixel's filter width.

    ``hindcast (J, y, x)``: the maps the reference forecast at J past origins, ``R(b+F) - R(b)`` (NaN at
    invalid cells); ``observed (J, y, x)``: the change then observed, ``d(b+F) - d(b)``. Each width filters
    the J maps; its squared error against the observations, summed over the origins, is averaged over
    the valid cells of the :data:`CHOICE_BOX` box around the pixel (zero beyond the region), and the
    width with the smallest is kept, the narrowest on a tie or where the box holds no score. The same
    out-of-sample competition as the reference's curve (:mod:`insarcast.baselines`), in space: where
    the ground varies faster than the forecast's noise a narrow kernel wins, where the noise dominates
    a wide one."""
    hindcast = np.asarray(hindcast, np.float32)
    ny, nx = hindcast.shape[-2:]
    if hindcast.shape[0] == 0:
        return np.zeros((ny, nx), np.int8)
    scores = []
    for width in WIDTHS:
        err = (width_filter(hindcast, width) - np.asarray(observed, np.float32)) ** 2
        ok = np.isfinite(err)
        total = _box(np.where(ok, err, 0).sum(axis=0, dtype=np.float64))
        count = _box(ok.sum(axis=0).astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            scores.append(np.where(count > 0, total / count, np.inf))
    return np.argmin(np.stack(scores), axis=0).astype(np.int8)


def _box(a: np.ndarray) -> np.ndarray:
    """Sums of ``a (y, x)`` over the :data:`CHOICE_BOX` box around each cell (zero beyond the edges), from
    an integral image."""
    h = CHOICE_BOX // 2
    table = np.pad(np.cumsum(np.cumsum(np.pad(a, h), axis=0), axis=1), ((1, 0), (1, 0)))
    n = CHOICE_BOX
    return table[n:, n:] - table[:-n, n:] - table[n:, :-n] + table[:-n, :-n]


def adaptive_filter(a: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """``a (..., y, x)`` filtered at each pixel with its width ``widths (y, x)`` (:func:`filter_widths`);
    NaN stays NaN; float32."""
    widths = np.nan_to_num(np.asarray(widths, np.float32)).astype(np.int8)    # NaN (beyond a region): 0
    present = np.unique(widths)
    out = width_filter(a, WIDTHS[present[0]]) if len(present) else np.full(np.shape(a), np.nan, np.float32)
    for i in present[1:]:
        out = np.where(widths == i, width_filter(a, WIDTHS[i]), out)
    return out
