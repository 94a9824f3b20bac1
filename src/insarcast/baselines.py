"""What a practitioner would forecast without a network: the baselines every evaluation reports.

Each function takes a displacement series ``d`` of shape (t, ...) in mm, the epoch times in
decimal years, the anchor epoch ``a`` (last observed) and the horizon F, and returns the forecast
change over the next F epochs, shape (F, ...). They read no epoch after the anchor: the future
epochs are placed at ``years[a] + k * step`` with ``step`` the median spacing of the epochs up to
the anchor, so that a forecast beyond the cube's last epoch and a hindcast inside it are the same
computation.

The fitted baselines forecast the change of their fitted curve ``R``: ``R(a+k) - R(a)``, the motion
of the ground from its current (fitted) level, so the noise of the single observation ``d(a)`` does
not enter the forecast of the change.

- ``persistence``: no further change.
- ``linear``: the least-squares line of the last ``history`` = T epochs, continued.
- ``trend_annual``: least squares of offset + trend + annual sinusoid over all epochs up to the
  anchor (MintPy style); the sinusoid is fitted only when those epochs span at least one year
  (:data:`ANNUAL_MIN_SPAN`), else offset + trend.
- ``adaptive``: per pixel, one of four curves: the long ``trend_annual`` fit where the ground keeps
  its long-term habit, the ``local`` line of the last 2T epochs (less the long fit's annual cycle)
  where the rate drifts slowly (an accelerating fault, a rebound), the window's ``linear`` trend (an
  advancing trough), the ``quadratic`` through the last 2.5T epochs (less the annual cycle) where the
  ground accelerates faster than any line follows (a mine face that reaches the pixel). The choice is a forecast competition on the pixel's own recent past
  (:func:`hindcast_errors`): each curve, fitted at the :data:`HINDCAST_ORIGINS` origins
  ``a-F, a-F-1, ...`` (so that its F-epoch forecasts end at the anchor at the latest), is scored by its
  mean squared error against the observations it forecast, and the smoothest curve whose error is at
  most :data:`HINDCAST_MARGIN` times the smallest is kept (smoother curves average more epochs, so
  their forecast carries less noise, and the margin keeps a noisy score from trading that away); the
  quadratic only where its error is below half of every other's (:data:`QUADRATIC_MARGIN`).
  Where no origin is available (a short history) the older rule decides: the smoothest curve whose
  RMS misfit over the last T epochs is at most :data:`ADAPTIVE_RATIO` times the window line's own
  (the rule of the ``residual`` model inputs, :meth:`Fits.choice` without hindcast errors).

  Measured over 6 origins of the test period against the noise-free truth (``bench/skill.py``
  scenarios, RMSE of the change in mm, overall / inside the zones), the misfit rule against the
  hindcast rule: demo 0.395 / 0.925 against 0.355 / 0.776, fast-mine 0.878 / 2.021 against
  0.746 / 1.690, accelerating-fault 0.560 / 0.996 against 0.546 / 0.827, noisy 0.374 / 0.799 against
  0.387 / 0.714. The margin 1.25 and 6 origins were chosen on these four scenarios from margins 1,
  1.1, 1.25 and 6 or 12 origins. The quadratic (span 2.5T, margin 2, chosen on the same four from
  spans 2T, 2.5T, 3T, 4T and margins 1.25, 1.5, 2) then: fast-mine 0.651 / 1.465 (the window's line
  1.860 in the zones), demo 0.350 / 0.762, accelerating-fault 0.556 / 0.839, noisy 0.386 / 0.712;
  on the held-out onset, demo-seed7 and rebound within 0.005 mm of the three-curve rule.
  The margin was then widened from 1.25 to 1.5, measured on twenty scenarios: the fourteen of
  ``bench/skill.py`` and six of ``bench/outside.py``, ground of another simulator (the filtered
  adaptive baseline's change at F against the truth, 6 origins, overall / zones, 1.25 -> 1.5):
  outside seeds 101, 202, 303, 404, 505, 606 0.292 / 0.508 -> 0.281 / 0.500, 0.326 / 0.456 -> 0.293
  / 0.414, 0.317 / 0.617 -> 0.298 / 0.605, 0.417 / 0.808 -> 0.395 / 0.788, 0.276 / 0.372 -> 0.258 /
  0.361, 0.279 / 0.446 -> 0.256 / 0.428 (the last three looked at only after 1.5 was picked on the
  first three); on this simulator's scenarios 2 to 18 % lower overall but on onset (+1.7 %) and
  fast-mine (+0.2 %), and in the zones from -9 % (far-beyond) to +1.6 % (demo). Where ground is
  still, a noisy hindcast score otherwise traded the long fit's averaging away for a shorter curve.
  Margin 2 gained more beyond the family and lost 3 to 4 % in the demo family's zones.
  Steps: a series that jumps (a collapse, a fault's coseismic slip, an unwrapping error, the point
  set behind a cell changing) makes every line through the jump a false rate, and the adaptive
  curve extrapolates it. :func:`find_steps` looks for a step in each pixel's last :data:`STEP_SPAN`
  x T epochs: offset + rate + a change of rate + a step at the best-fitting break, against offset +
  rate + a change of rate at its own best break (an onset, a mine face reaching the pixel: a change
  of rate, not a step), in units of the noise. Where the step passes :data:`STEP_THRESHOLD`,
  :func:`with_steps` fits the curves again to the series with the epochs before the break moved by
  the step, and keeps the refit where it takes the pixel's smallest hindcast error to
  :data:`STEP_HINDCAST` of what it was or below. On the other simulator's ground (``bench/outside.py``
  seed 707) with a -15 mm step added in a 1.5 km disc, the filtered adaptive baseline at F against
  the truth, 6 origins, overall / zones: step 40 epochs before the end 0.507 / 1.067 -> 0.377 /
  0.733 mm, 25 epochs (inside the test origins) 1.192 / 2.696 -> 1.148 / 2.593, 60 epochs 0.320 /
  0.575 -> 0.316 / 0.561; on demo, beyond-family, far-beyond, fast-mine and seed 404 (no step) within
  0.1 % (0 to 20 pixels of a map kept per origin). The threshold 4 was chosen from 4 and 6 on these
  (6 found few of the disc's pixels: 0.507 -> 0.485). Only the adaptive curve (the reference) uses
  it; the practitioner's ``linear`` and ``trend_annual`` stay plain least squares.
  An annual sinusoid the data cannot tell from noise: least squares always fits one, and where the
  ground has no annual cycle it is the noise's, which the long, local and quadratic curves then
  carry into the forecast (about 0.15 mm over 36 days for 3 mm of noise and five years). The
  reference shrinks the long fit's sine and cosine by ``max(0, 1 - ANNUAL_SHRINK / z^2)``, ``z^2``
  their Wald statistic in units of the pixel's noise (:func:`_long_coefficients`): 2 is the mean of
  z^2 without a cycle, so most pixels without one lose it and a cycle the data show (z^2 in the
  hundreds for 4 mm in 3 mm of noise over five years) stays within a percent. The constant was set
  at that mean, not tuned; 4 was measured beside it (below). On the other simulator's ground, whose
  pixels have no annual cycle but for the dome and the landslide, the filtered adaptive baseline at
  F against the truth (6 origins, overall / zones) went from 0.281 / 0.500 to 0.261 / 0.495 (seed
  101), 0.293 / 0.413 -> 0.276 / 0.402 (202), 0.298 / 0.605 -> 0.272 / 0.591 (303), 0.395 / 0.787
  -> 0.383 / 0.774 (404), 0.258 / 0.361 -> 0.233 / 0.346 (505), 0.256 / 0.428 -> 0.235 / 0.409 (606),
  0.303 / 0.549 -> 0.265 / 0.523 (707): 3 to 13 % overall, 1 to 5 % in the zones. On this
  project's scenarios, which all have a cycle, within -0.0 to +0.7 % (short-record, 2.5 years, the
  most: its cycle is the least determined); 4 gained 4 to 15 % there but cost up to 2.1 %
  (short-record) and 1.6 % (noisy) here.
- ``seasonal_naive``: the change over the same horizon one year earlier.

:func:`fits` returns the curves and misfits behind them; the model inputs of
:mod:`insarcast.udf.inputs` are built from it, so the networks see exactly what the baselines know.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

BASELINES = ("persistence", "linear", "trend_annual", "adaptive", "seasonal_naive")
# The single-method baselines a practitioner would pick among; ``adaptive`` combines two of them.
SIMPLE_BASELINES = ("persistence", "linear", "trend_annual")
ANNUAL_MIN_SPAN = 1.0         # years of history before an annual sinusoid is fitted
ADAPTIVE_RATIO = 1.5          # a smoother curve is kept where its RMS misfit over the window <= this x the line's
HINDCAST_ORIGINS = 6          # past forecast origins whose errors choose the adaptive curve
HINDCAST_MARGIN = 1.5         # a smoother curve is kept where its hindcast error <= this x the smallest
QUADRATIC_SPAN = 2.5          # x T epochs: the quadratic (accelerating) curve's fit
QUADRATIC_MARGIN = 2.0        # the quadratic is taken only where its hindcast error x this < every other's
STEP_SPAN = 4                 # x T epochs: where a step is looked for (the noise's span)
STEP_THRESHOLD = 4.0          # a step lowers the misfit by more than this^2 noise variances (find_steps)
STEP_MARGIN = 3               # epochs on each side of a step, at least
STEP_MIN = 1.0                # mm: smaller steps are not looked at (noise-free series have no noise scale)
STEP_BLOCK = 8192             # pixels per pass of find_steps (memory)
STEP_HINDCAST = 0.5           # the refit is kept where it takes the smallest hindcast error to this x or below
ANNUAL_SHRINK = 2.0           # the reference's sinusoid x max(0, 1 - this / z^2), z^2 its Wald statistic (2 dof)
# mm^2: hindcast errors below this are ties (float32 displacements of 100 mm carry 1e-5 mm of rounding,
# and the fits' own arithmetic 1e-12 mm): a series that a smoother curve fits exactly keeps it.
HINDCAST_RESOLUTION = 1e-12


def reference_rule() -> dict[str, float]:
    """The constants that decide the adaptive curve: what a residual model's reference was built with.
    A training run records it and an ensemble's manifest carries it, so that a forecast refuses members
    that learnt on another rule (:meth:`insarcast.udf.manifest.Manifest.check_reference_rule`)."""
    return {"adaptive_ratio": ADAPTIVE_RATIO, "hindcast_origins": HINDCAST_ORIGINS,
            "hindcast_margin": HINDCAST_MARGIN, "quadratic_span": QUADRATIC_SPAN,
            "quadratic_margin": QUADRATIC_MARGIN, "step_span": STEP_SPAN, "step_threshold": STEP_THRESHOLD,
            "step_margin": STEP_MARGIN, "step_min": STEP_MIN, "step_hindcast": STEP_HINDCAST,
            "annual_shrink": ANNUAL_SHRINK}
EPOCH_BLOCK = 64              # epochs cast to float64 at a time by the long fit (:func:`_long_coefficients`)
CURVES = ("linear", "local", "long", "quadratic")   # the order of :attr:`Fits.hindcast`


class Fits(NamedTuple):
    """Least-squares curves of one anchor, float64, over the epochs ``a-T+1 .. a+F`` (T + F, ...)."""

    linear: np.ndarray            # the line through the last T epochs
    long: np.ndarray              # offset + trend (+ annual) over all epochs up to the anchor
    local: np.ndarray             # the line through the last 2T epochs, less the long fit's annual cycle
    quadratic: np.ndarray         # a parabola through the last 2.5T epochs, less the long fit's annual cycle
    window_misfit: np.ndarray     # (...) RMS of d - linear over the T window
    long_misfit: np.ndarray       # (...) RMS of d - long over the T window
    local_misfit: np.ndarray      # (...) RMS of d - local over the T window
    quadratic_misfit: np.ndarray  # (...) RMS of d - quadratic over the T window
    noise: np.ndarray             # (...) noise of one epoch: 1.4826 MAD(second differences) / sqrt(6)
    history: int                  # T
    factors: np.ndarray           # (4, F) g_k' (X'X)^+ g_k of the linear, local, long, quadratic designs
    hindcast: np.ndarray | None = None   # (4, ...) mean squared hindcast error of the :data:`CURVES`
    level_factors: np.ndarray | None = None   # (4, F) x_k' (X'X)^+ x_k: the same for the level R(a+k) itself
    step: np.ndarray | None = None   # (...) mm: the step removed before the curves were fitted (with_steps), 0 if none
    step_first: np.ndarray | None = None   # (...) int: the first epoch after that step (0 where none)
    hindcast_change: np.ndarray | None = None   # (origins, 4, ...) each curve's R(b+F) - R(b) at the hindcast origins

    def without_step(self, series: np.ndarray, anchor: int) -> np.ndarray:
        """``series (n, ...)``, the epochs ``anchor-n+1 .. anchor``, as the curves were fitted to it: the
        epochs before a removed step moved by the step (:func:`with_steps`), float64. A residual to the
        curves is taken from this; from the observed series it would carry the step itself."""
        series = np.asarray(series, np.float64)
        if self.step is None or not np.any(self.step):
            return series
        return _move_before(series, anchor - len(series) + 1, self.step_first, self.step)

    def choice(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where :meth:`adaptive` takes the long fit, where (not long) the local line and where the
        quadratic: three bool (...), the window's line elsewhere.

        With :attr:`hindcast` errors: the quadratic where its error times :data:`QUADRATIC_MARGIN` is
        below every other curve's (an accelerating trough, which every line lags; a parabola
        extrapolates noise fastest, hence the stricter margin); else the smoothest of the three
        others whose error is at most :data:`HINDCAST_MARGIN` times their smallest (a curve without a
        finite error, e.g. the long fit of a pixel with a gap before the window, is not taken; the
        window's line is the last resort); errors below :data:`HINDCAST_RESOLUTION` are ties. Without
        them (or where no origin was available), the misfit rule, which never takes the quadratic: a
        curve "fits" where its RMS misfit over the window is at most :data:`ADAPTIVE_RATIO` times the line's own, the
        line's floored at what the noise alone gives it (``noise * sqrt((T - 2) / T)``), so that a
        window that happens to lie close to its line does not reject the smoother curves."""
        with np.errstate(invalid="ignore"):
            t = self.history
            floor = np.nan_to_num(self.noise) * np.sqrt(max(t - 2, 1) / t)
            limit = ADAPTIVE_RATIO * np.maximum(self.window_misfit, floor)
            long_ = self.long_misfit <= limit
            local = ~long_ & (self.local_misfit <= limit)
            if self.hindcast is None:
                return long_, local, np.zeros_like(long_)
            scores = np.maximum(self.hindcast, HINDCAST_RESOLUTION)             # NaN stays NaN
            lines = scores[:3]
            smallest = np.fmin.reduce(lines, axis=0)                             # NaN only where all are
            quad = QUADRATIC_MARGIN * scores[3] < smallest
            scored = np.isfinite(lines).any(axis=0)
            h_long = ~quad & (lines[2] <= HINDCAST_MARGIN * smallest)
            h_local = ~quad & ~h_long & (lines[1] <= HINDCAST_MARGIN * smallest)
            return np.where(scored, h_long, long_), np.where(scored, h_local, local), quad

    def adaptive(self) -> np.ndarray:
        """The curve that forecast the pixel's recent past best (:meth:`choice`)."""
        long_, local, quad = self.choice()
        return np.where(long_, self.long, np.where(local, self.local, np.where(quad, self.quadratic, self.linear)))

    def adaptive_hindcast(self) -> np.ndarray:
        """(origins, ...) the change ``R(b+F) - R(b)`` of the curve :meth:`choice` takes at the anchor, as it
        was fitted at each hindcast origin ``b = a - F - j`` (:func:`hindcast_epochs`): the maps the
        reference would have forecast there, which the spatial filter's width is chosen on
        (:func:`insarcast.udf.spatial.filter_widths`)."""
        if self.hindcast_change is None:
            raise ValueError("these fits carry no hindcast (fits(..., hindcast=...))")
        long_, local, quad = self.choice()
        h = self.hindcast_change
        return np.where(long_, h[:, 2], np.where(local, h[:, 1], np.where(quad, h[:, 3], h[:, 0])))

    def adaptive_scale(self, *, level: bool = False) -> np.ndarray:
        """(F, ...) standard error of the adaptive forecast of the change ``R(a+k) - R(a)``, mm; with
        ``level``, of the level ``R(a+k)`` itself.

        The textbook prediction error of a least-squares extrapolation: ``s_k = sigma sqrt(g_k'
        (X'X)^+ g_k)`` with X the chosen curve's design over the epochs it was fitted to and ``g_k =
        x(a+k) - x(a)`` its rows' difference (``g_k = x(a+k)`` for the level), and ``sigma`` the residual
        scale of that curve, the larger of the noise of one epoch and its RMS misfit over the window (so
        a curve that fits the recent epochs worse than the noise says so). It does not know a change of
        regime after the anchor. The change is what the products forecast; the level is what an
        observation at ``a+k`` is predicted from when the anchor's level is taken from the curve,
        ``d(a+k) - d(a) = (R(a+k) - R(a)) + (R(a) - d(a)) + ...`` (:mod:`insarcast.report.calibration`)."""
        long_, local, quad = self.choice()
        shape = (-1,) + (1,) * np.ndim(self.noise)
        factors = self.level_factors if level else self.factors
        if factors is None:
            raise ValueError("these fits carry no level factors")
        linear_f, local_f, long_f, quad_f = (np.asarray(f, np.float64).reshape(shape) for f in factors)
        misfit = np.where(long_, self.long_misfit, np.where(local, self.local_misfit, np.where(
            quad, self.quadratic_misfit, self.window_misfit)))
        factor = np.where(long_, long_f, np.where(local, local_f, np.where(quad, quad_f, linear_f)))
        with np.errstate(invalid="ignore"):
            return np.fmax(self.noise, misfit) * np.sqrt(factor)


def decimal_years(times: np.ndarray) -> np.ndarray:
    """Years since the first epoch (365.25-day years), float64."""
    t = np.asarray(times, "datetime64[ns]")
    return (t - t[0]).astype("timedelta64[s]").astype(np.float64) / (365.25 * 86400.0)


def future_years(years: np.ndarray, anchor: int, horizon: int) -> np.ndarray:
    """Decimal years of the epochs ``a+1 .. a+F``: ``years[a] + k * median spacing up to a``."""
    past = np.asarray(years[: anchor + 1], np.float64)
    step = float(np.median(np.diff(past))) if past.size > 1 else 6.0 / 365.25
    return past[-1] + step * np.arange(1, horizon + 1)


def _rms(window: np.ndarray, curve: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean((window - curve[: len(window)]) ** 2, axis=0))


def fits(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *, history: int, hindcast: int = 0,
         reference: bool = False) -> Fits:
    """The linear, long and local least-squares curves of ``d (t, ...)`` at ``anchor`` and their misfits.

    One pseudo-inverse of each design for every pixel: the least-squares solution of each column,
    a NaN staying in its own pixel, at the cost of one matrix product. Times are counted from the
    anchor (the sinusoid from the first epoch). ``hindcast`` > 0 also scores the three curves at that
    many past origins (:func:`hindcast_errors`), which then choose the adaptive curve. With
    ``reference`` too, the fits are the adaptive reference's: an annual sinusoid the pixel's data cannot
    tell from noise is shrunk towards none (:data:`ANNUAL_SHRINK`) and a pixel whose recent series
    jumps is fitted without the jump (:func:`with_steps`); the practitioner's baselines stay plain
    least squares.
    """
    if reference and hindcast:
        return with_steps(_fits(d, years, anchor, horizon, history=history, hindcast=hindcast, shrink=True), d,
                          years, anchor, horizon, history=history, hindcast=hindcast)
    return _fits(d, years, anchor, horizon, history=history, hindcast=hindcast, shrink=False)


def _fits(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *, history: int, hindcast: int,
          shrink: bool) -> Fits:
    shape = d.shape[1:]
    years = np.asarray(years, np.float64)
    t0 = years[anchor]
    if not history <= anchor + 1:
        raise ValueError(f"anchor {anchor} leaves fewer than history = {history} epochs")
    t_out = np.concatenate([years[anchor - history + 1: anchor + 1], future_years(years, anchor, horizon)])
    past = _series(d, anchor)
    window = past[anchor - history + 1:].astype(np.float64)
    annual = t0 - years[0] >= ANNUAL_MIN_SPAN

    def design(t: np.ndarray, seasonal: bool) -> np.ndarray:
        return _design(t, t0, seasonal=seasonal)

    line = design(t_out, False)
    linear = line @ (np.linalg.pinv(line[:history]) @ window)
    bs = _hindcast_origins(anchor, horizon, history, hindcast)
    noise = _noise(past, anchor, history)
    sigmas = None
    if shrink:          # the hindcast origins share the noise up to the earliest: nothing after an origin
        sigmas = [noise] + [_noise(past, min(bs), history)] * len(bs) if bs else [noise]
    coef, *hind_coefs = _long_coefficients(past, years, [anchor, *bs], shrink=sigmas)
    long = design(t_out, annual) @ coef
    n_local = min(2 * history, anchor + 1)
    t_local = years[anchor - n_local + 1: anchor + 1]
    season_out = design(t_out, annual)[:, 2:] @ coef[2:]
    season_local = design(t_local, annual)[:, 2:] @ coef[2:]
    local = line @ (np.linalg.pinv(design(t_local, False)) @ (past[anchor - n_local + 1:] - season_local)) + season_out
    t_quad = years[anchor - _quadratic_span(history, anchor) + 1: anchor + 1]
    quadratic = _quadratic(past, years, anchor, t_out, coef[2:], annual, history)
    designs = [(line[:history], line), (design(t_local, False), line),
               (design(years[: anchor + 1], annual), design(t_out, annual)),
               (_design(t_quad, t0, quadratic=True), _design(t_out, t0, quadratic=True))]
    pairs = [_factors(fitted, out, history) for fitted, out in designs]
    factors = np.stack([change for change, _ in pairs])
    level_factors = np.stack([level for _, level in pairs])
    scores = changes = None
    if hindcast:
        scores, changes = _hindcast_curves(past, years, horizon, history, bs, hind_coefs)
        # float32: 24 values per pixel, read only by the spatial filter's choice of width (float32 itself)
        scores, changes = scores.reshape(-1, *shape), changes.astype(np.float32).reshape(len(bs), len(CURVES), *shape)
    return Fits(linear.reshape(-1, *shape), long.reshape(-1, *shape), local.reshape(-1, *shape),
                quadratic.reshape(-1, *shape), _rms(window, linear).reshape(shape), _rms(window, long).reshape(shape),
                _rms(window, local).reshape(shape), _rms(window, quadratic).reshape(shape), noise.reshape(shape),
                history, factors, scores, level_factors, hindcast_change=changes)


def epoch_noise(d: np.ndarray, anchor: int, *, history: int) -> np.ndarray:
    """``(...)`` the noise of one epoch of ``d (t, ...)`` at ``anchor``, as :func:`fits` estimates it
    (:attr:`Fits.noise`), without the fits."""
    return _noise(_series(d, anchor), anchor, history).reshape(np.shape(d)[1:])


def _noise(past: np.ndarray, b: int, history: int) -> np.ndarray:
    """``(n,)`` the noise of one epoch of ``past (t, n)`` from its epochs ``b - 4T + 1 .. b``: 1.4826 MAD of the
    second differences / sqrt 6 (white noise: var(second difference) = 6 sigma^2; a smooth curve's second
    differences are about 0, and the median ignores a jump's two)."""
    # pixels along the rows: the medians sort contiguous memory
    second = np.ascontiguousarray(np.diff(past[max(0, b + 1 - 4 * history): b + 1].astype(np.float64), n=2, axis=0).T)
    with np.errstate(invalid="ignore"):
        centre = _row_median(second)
        return 1.4826 * _row_median(np.abs(second - centre[:, None])) / np.sqrt(6.0)


def _row_median(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=1)`` of ``a (n, m)``, the same values (NaN in a row with a NaN) from a sort:
    numpy's vectorised sort of short rows is about 8 x faster than the selection ``np.median`` uses."""
    m = a.shape[1]
    if m == 0:
        return np.full(a.shape[0], np.nan)
    ordered = np.sort(a, axis=1)                                     # NaN sort last
    middle = ordered[:, m // 2] if m % 2 else np.mean(ordered[:, m // 2 - 1: m // 2 + 1], axis=1)
    return np.where(np.isnan(ordered[:, -1]), np.nan, middle)


def find_steps(d: np.ndarray, years: np.ndarray, anchor: int, *, history: int,
               noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The step of each pixel of ``d (t, ...)`` in its last :data:`STEP_SPAN` x T epochs up to
    ``anchor``: ``(offset, first)``, both ``(...)``: the step in mm (the level after it less the level
    before; 0 where none passes) and the first epoch after it.

    Two least-squares models of the segment, at every candidate break j with :data:`STEP_MARGIN`
    epochs on each side: offset + rate + a change of rate from j, and the same + a step at j. The step
    is the second model's at its best-fitting j; it passes where it is at least :data:`STEP_MIN` mm and
    lowers the residual sum of squares below the first model's best (at any j: a change of rate that a
    step beside it would mimic is fitted by its own hinge) by more than :data:`STEP_THRESHOLD` ^ 2
    variances of one epoch, the larger of ``noise`` ``(...)`` and the second model's RMS misfit (a
    likelihood ratio in units of a t statistic; a curve that neither model fits is not a step)."""
    shape = d.shape[1:]
    span = min(STEP_SPAN * history, anchor + 1)
    start = anchor - span + 1
    candidates = np.arange(start + STEP_MARGIN, anchor - STEP_MARGIN + 2)
    if span <= 4 or candidates.size == 0:
        return np.zeros(shape), np.zeros(shape, np.int64)
    tau = np.asarray(years, np.float64)[start: anchor + 1] - years[anchor]
    epochs = np.arange(start, anchor + 1)
    # Gram-Schmidt in the columns' order: offset and rate span the same two directions at every break, the
    # change of rate adds one (q3) and the step one more (q4), whose coefficient is q4'y / R44
    q3, q4, r44 = [], [], []
    for j in candidates:
        x = np.stack([np.ones(span), tau, np.maximum(tau - tau[j - start], 0.0), (epochs >= j).astype(float)], 1)
        q, r = np.linalg.qr(x)
        q3.append(q[:, 2])
        q4.append(q[:, 3])
        r44.append(r[3, 3])
    common = np.linalg.qr(x[:, :2])[0].T
    rows = np.concatenate([common, np.stack(q3), np.stack(q4)])
    n = len(candidates)
    series = d[start: anchor + 1].reshape(span, -1)
    size, rss_rate, rss_step = (np.empty((n, series.shape[1])) for _ in range(3))
    for p in range(0, series.shape[1], STEP_BLOCK):                     # (2 + 2 n) x 8192 float64 at a time
        segment = series[:, p:p + STEP_BLOCK].astype(np.float64)
        segment = segment - segment.mean(axis=0)                        # the offset's share, exactly
        projected = rows @ segment
        rate = (segment ** 2).sum(axis=0) - (projected[:2] ** 2).sum(axis=0) - projected[2:2 + n] ** 2
        rss_rate[:, p:p + STEP_BLOCK] = rate
        rss_step[:, p:p + STEP_BLOCK] = rate - projected[2 + n:] ** 2
        size[:, p:p + STEP_BLOCK] = projected[2 + n:] / np.array(r44)[:, None]
    best = np.where(np.isfinite(rss_step), rss_step, np.inf).argmin(axis=0)
    pixels = np.arange(series.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):                   # 0 / 0: a constant series
        misfit = np.sqrt(np.maximum(rss_step[best, pixels], 0.0) / (span - 4))
        variance = np.fmax(np.asarray(noise, np.float64).reshape(-1), misfit) ** 2
        gain = (np.where(np.isfinite(rss_rate), rss_rate, np.inf).min(axis=0) - rss_step[best, pixels]) / variance
        found = (gain > STEP_THRESHOLD ** 2) & (np.abs(size[best, pixels]) >= STEP_MIN)
    offset = np.where(found, size[best, pixels], 0.0).reshape(shape)
    first = np.where(found, candidates[best], 0).reshape(shape)
    return offset, first


def with_steps(f: Fits, d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *, history: int,
               hindcast: int) -> Fits:
    """``f`` (:func:`fits` of ``d`` at ``anchor``, with hindcast errors) where a pixel's recent series
    jumps (:func:`find_steps`): fitted again to the series with its epochs before the step moved by
    the step, kept where that takes the pixel's smallest hindcast error to :data:`STEP_HINDCAST` x
    or below (module docstring). ``step`` and ``step_first`` record what was removed (:meth:`Fits.without_step`).
    Without hindcast errors, ``f``. The refit is the reference's (:func:`fits` with ``reference``), as ``f``
    must be."""
    if f.hindcast is None or not hindcast:
        return f
    shape = d.shape[1:]
    offset, first = (a.reshape(-1) for a in find_steps(d, years, anchor, history=history, noise=f.noise))
    hit = np.flatnonzero(offset)
    step, step_first = np.zeros(offset.shape), np.zeros(offset.shape, np.int64)
    if hit.size:
        moved = _move_before(_series(d, anchor)[:, hit].astype(np.float64), 0, first[hit], offset[hit])
        g = _fits(moved, years, anchor, horizon, history=history, hindcast=hindcast, shrink=True)
        with np.errstate(invalid="ignore"):
            better = np.fmin.reduce(g.hindcast, axis=0) <= STEP_HINDCAST * np.fmin.reduce(
                f.hindcast.reshape(len(CURVES), -1)[:, hit], axis=0)
        hit = hit[better]
        if hit.size:
            step[hit], step_first[hit] = offset[hit], first[hit]
            merged = {}
            for name in ("linear", "long", "local", "quadratic", "window_misfit", "long_misfit", "local_misfit",
                         "quadratic_misfit", "noise", "hindcast", "hindcast_change"):
                a = np.array(getattr(f, name)).reshape(-1, offset.size)
                a[:, hit] = np.asarray(getattr(g, name)).reshape(-1, better.size)[:, better]
                merged[name] = a.reshape(np.shape(getattr(f, name)))
            f = f._replace(**merged)
    return f._replace(step=step.reshape(shape), step_first=step_first.reshape(shape))


def _move_before(series: np.ndarray, start: int, first: np.ndarray, step: np.ndarray) -> np.ndarray:
    """``series (n, ...)`` float64, the epochs ``start .. start + n - 1``, with those before ``first (...)``
    moved by ``step (...)``: the series without its step, as :func:`with_steps` fits it."""
    epochs = np.arange(start, start + len(series)).reshape((-1,) + (1,) * np.ndim(step))
    return series + np.where(epochs < first, step, 0.0)


def _design(t: np.ndarray, t0: float, *, seasonal: bool = False, quadratic: bool = False) -> np.ndarray:
    """Columns 1, t - t0 (, (t - t0)^2) (, sin 2 pi t, cos 2 pi t): the least-squares designs."""
    columns = [np.ones_like(t), t - t0] + ([(t - t0) ** 2] if quadratic else [])
    if seasonal:
        columns += [np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)]
    return np.column_stack(columns)


def _quadratic_span(history: int, origin: int) -> int:
    return min(int(round(QUADRATIC_SPAN * history)), origin + 1)


def _quadratic(past: np.ndarray, years: np.ndarray, origin: int, t_out: np.ndarray, season: np.ndarray,
               annual: bool, history: int) -> np.ndarray:
    """The parabola through the last :data:`QUADRATIC_SPAN` x T epochs up to ``origin`` of ``past (t, n)``,
    less the long fit's annual cycle (coefficients ``season``, none without ``annual``), at ``t_out``."""
    t0 = years[origin]
    cycle = _design(t_out, t0, seasonal=True)[:, 2:] @ season if annual else 0.0
    return _design(t_out, t0, quadratic=True) @ _quadratic_coefficients(past, years, origin, season, annual,
                                                                        history) + cycle


def _quadratic_coefficients(past: np.ndarray, years: np.ndarray, origin: int, season: np.ndarray, annual: bool,
                            history: int) -> np.ndarray:
    """The coefficients (times from ``years[origin]``) of :func:`_quadratic`'s parabola."""
    t0 = years[origin]
    n = _quadratic_span(history, origin)
    t_fit = years[origin - n + 1: origin + 1]
    cycle = _design(t_fit, t0, seasonal=True)[:, 2:] @ season if annual else 0.0
    return np.linalg.pinv(_design(t_fit, t0, quadratic=True)) @ (past[origin - n + 1: origin + 1] - cycle)


def _curve_coefficients(past: np.ndarray, years: np.ndarray, origin: int, history: int,
                        coef: np.ndarray) -> tuple[list[np.ndarray], bool]:
    """The coefficients of the :data:`CURVES` fitted to ``past[: origin + 1]`` (t, n), times counted from
    ``years[origin]``: the window's line, the local line (less the long fit's season), the long fit
    ``coef`` (:func:`_long_coefficients`) and the parabola (less the season); and whether the season is fitted."""
    t0 = years[origin]
    annual = t0 - years[0] >= ANNUAL_MIN_SPAN
    n_local = min(2 * history, origin + 1)
    t_local = years[origin - n_local + 1: origin + 1]
    season_local = _design(t_local, t0, seasonal=annual)[:, 2:] @ coef[2:]
    window = slice(origin - history + 1, origin + 1)
    linear = np.linalg.pinv(_design(years[window], t0)) @ past[window]
    local = np.linalg.pinv(_design(t_local, t0)) @ (past[origin - n_local + 1: origin + 1] - season_local)
    quadratic = _quadratic_coefficients(past, years, origin, coef[2:], annual, history)
    return [linear, local, coef, quadratic], annual


def _curve_values(coefs: list[np.ndarray], annual: bool, t0: float, t: np.ndarray) -> np.ndarray:
    """(4, len(t), n) the curves of :func:`_curve_coefficients` at the times ``t``."""
    linear, local, long_, quadratic = coefs
    season = _design(t, t0, seasonal=annual)[:, 2:] @ long_[2:]
    line = _design(t, t0)
    return np.stack([line @ linear, line @ local + season, _design(t, t0, seasonal=annual) @ long_,
                     _design(t, t0, quadratic=True) @ quadratic + (season if annual else 0.0)])


def hindcast_errors(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *, history: int,
                    origins: int = HINDCAST_ORIGINS) -> np.ndarray:
    """(4, ...) the mean squared error of the :data:`CURVES` as
    forecasters of the pixel's own recent past, float64.

    Each curve is fitted at the origins ``b = a - F - j``, j = 0 .. ``origins`` - 1 (those with at least
    ``history`` epochs up to ``b``), reading the epochs up to ``b`` only, and scored against the
    observations ``d(b+1) .. d(b+F)``, all at or before the anchor: the errors are out of sample and
    read nothing after the anchor. NaN where no origin is available or the pixel has a gap.
    """
    past = _series(d, anchor)
    years = np.asarray(years, np.float64)
    bs = _hindcast_origins(anchor, horizon, history, origins)
    return _hindcast(past, years, horizon, history, bs, _long_coefficients(past, years, bs)).reshape(
        len(CURVES), *d.shape[1:])


def _series(d: np.ndarray, anchor: int) -> np.ndarray:
    """The epochs ``0 .. anchor`` of ``d (t, ...)`` as ``(anchor + 1, pixels)``, a view where ``d`` is
    float32 or float64 and C-ordered: each use casts what it reads to float64 (a float64 copy of a whole
    history, 125 MB for the UDF's 40 tiles of 363 epochs, cost more than the fits that read it)."""
    past = np.asarray(d)[: anchor + 1].reshape(anchor + 1, -1)
    return past if past.dtype in (np.float32, np.float64) else past.astype(np.float64)


def hindcast_epochs(anchor: int, horizon: int, history: int, origins: int = HINDCAST_ORIGINS) -> list[int]:
    """The origins ``b = a - F - j``, j = 0 .. ``origins`` - 1, with at least ``history`` epochs up to ``b``:
    where :func:`hindcast_errors` refits the curves, in the order of :attr:`Fits.hindcast_change`."""
    return _hindcast_origins(anchor, horizon, history, origins)


def _hindcast_origins(anchor: int, horizon: int, history: int, origins: int) -> list[int]:
    """The origins ``b = a - F - j``, j = 0 .. ``origins`` - 1, with at least ``history`` epochs up to ``b``."""
    return [b for b in range(anchor - horizon, anchor - horizon - origins, -1) if b >= history - 1]


def _hindcast(past: np.ndarray, years: np.ndarray, horizon: int, history: int, bs: list[int],
              coefs: list[np.ndarray]) -> np.ndarray:
    """:func:`hindcast_errors` of ``past (anchor + 1, n)`` (float32 or float64, :func:`_series`) at the origins
    ``bs`` (:func:`_hindcast_origins`): ``(4, n)`` float64; ``coefs``: the long fit's at each of them
    (:func:`_long_coefficients`)."""
    return _hindcast_curves(past, years, horizon, history, bs, coefs)[0]


def _hindcast_curves(past: np.ndarray, years: np.ndarray, horizon: int, history: int, bs: list[int],
                     coefs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_hindcast`'s errors ``(4, n)`` and each curve's forecast change ``R(b+F) - R(b)`` at each origin,
    ``(len(bs), 4, n)`` float64 (what a map of the curve's forecasts looked like at those origins)."""
    if not bs:
        return np.full((len(CURVES), past.shape[1]), np.nan), np.zeros((0, len(CURVES), past.shape[1]))
    total = np.zeros((len(CURVES), past.shape[1]))
    changes = np.empty((len(bs), len(CURVES), past.shape[1]))
    for i, (b, coef) in enumerate(zip(bs, coefs)):
        curves, annual = _curve_coefficients(past, years, b, history, coef)
        out = _curve_values(curves, annual, years[b], years[b + 1: b + horizon + 1])
        total += np.mean((out - past[b + 1: b + horizon + 1]) ** 2, axis=1)
        # R(b) from its own product: the errors above stay those of the F-row products, to the bit
        changes[i] = out[:, -1] - _curve_values(curves, annual, years[b], years[b: b + 1])[:, 0]
    return total / len(bs), changes


def _long_coefficients(past: np.ndarray, years: np.ndarray, origins: list[int], *,
                       shrink: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """The long fit's coefficients (offset, trend from ``years[b]`` (, sine, cosine)) at each origin ``b``,
    from the epochs ``0 .. b`` of ``past (t, n)`` (float32 or float64): ``(2 or 4, n)`` float64 each,
    NaN in a pixel with a NaN among those epochs.

    The origins share one pass over ``past``, the largest array of the fits: the normal equations'
    right-hand sides ``Z' d`` (``Z``: 1, t - t_a, sine, cosine) are summed up to the earliest origin
    (matrix products over :data:`EPOCH_BLOCK` epochs at a time, each cast to float64 on its own) and
    continued epoch by epoch to the later ones, then moved to each
    origin's time (``t - t_b = (t - t_a) + (t_a - t_b)``) and solved with the pseudo-inverse of that
    origin's Gram matrix. The same least-squares solution as ``pinv(X_b) @ d`` (measured: within
    1e-12 mm) for a seventh of the arithmetic with the hindcast's six origins. A NaN at an epoch
    stays in the running sums from that epoch on: the coefficients of the origins at or after it.

    ``shrink``, the noise of one epoch ``(n,)`` at each origin, shrinks the sinusoid's coefficients
    ``s`` by ``max(0, 1 - ANNUAL_SHRINK / z^2)``, ``z^2 = s' G^-1 s / sigma^2`` the Wald statistic of
    both (``sigma^2 G``: their covariance, G the sinusoid's block of ``(X'X)^+``; about chi-square with 2
    degrees of freedom, mean 2, where the ground has no annual cycle): a positive-part Stein rule.
    Where the ground moves with the seasons z^2 is large and the sinusoid stays; where it does not,
    the least-squares sinusoid is the noise's, and it made the forecast of the reference curves worse."""
    if not origins:
        return []
    t_a, first = years[len(past) - 1], min(origins)
    z = _design(years[: len(past)], t_a, seasonal=True)                    # (t, 4)
    head = np.zeros((4, past.shape[1]))                                    # (4, n) up to each epoch from first
    for start in range(0, first + 1, EPOCH_BLOCK):   # float64 a block of epochs at a time: no copy of the series
        stop = min(start + EPOCH_BLOCK, first + 1)
        head += z[start:stop].T @ past[start:stop].astype(np.float64)
    sums = [head]
    for t in range(first + 1, max(origins) + 1):
        sums.append(sums[-1] + z[t][:, None] * past[t])
    out = []
    for b in origins:
        annual = years[b] - years[0] >= ANNUAL_MIN_SPAN
        x = _design(years[: b + 1], years[b], seasonal=annual)
        s = sums[b - first][: x.shape[1]].copy()
        s[1] += (t_a - years[b]) * s[0]
        gram = np.linalg.pinv(x.T @ x)
        coef = gram @ s
        if annual and shrink is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                z2 = np.einsum("in,ij,jn->n", coef[2:], np.linalg.inv(gram[2:, 2:]), coef[2:]) / shrink[len(out)] ** 2
                coef[2:] *= np.where(np.isfinite(z2), np.clip(1.0 - ANNUAL_SHRINK / z2, 0.0, 1.0), 1.0)
        out.append(coef)
    return out


def _factors(fitted: np.ndarray, out: np.ndarray, history: int) -> tuple[np.ndarray, np.ndarray]:
    """``g_k' (X'X)^+ g_k`` for k = 1..F with X = ``fitted``, from one pseudo-inverse
    (``(X'X)^+ = X^+ X^+'``): with ``g_k = out[T - 1 + k] - out[T - 1]`` the variance of a forecast
    change per unit noise variance, and with ``g_k = out[T - 1 + k]`` that of the forecast level."""
    pinv = np.linalg.pinv(fitted)
    level = out[history:]
    return np.sum(((level - out[history - 1]) @ pinv) ** 2, axis=1), np.sum((level @ pinv) ** 2, axis=1)


def change(curve: np.ndarray, history: int) -> np.ndarray:
    """``R(a+k) - R(a)`` for k = 1..F of a fitted curve over ``a-T+1 .. a+F``, float32."""
    return (curve[history:] - curve[history - 1]).astype(np.float32)


def persistence(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, **_) -> np.ndarray:
    """No further change."""
    return np.zeros((horizon, *d.shape[1:]), np.float32)


def linear(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *, history: int) -> np.ndarray:
    """The least-squares line of the last ``history`` epochs, continued."""
    return change(fits(d, years, anchor, horizon, history=history).linear, history)


def trend_annual(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *, history: int = 2,
                 **_) -> np.ndarray:
    """Offset + trend (+ annual sinusoid) over all epochs up to the anchor, continued."""
    return change(fits(d, years, anchor, horizon, history=history).long, history)


def adaptive(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *, history: int) -> np.ndarray:
    """The long, local or window curve that forecast the pixel's recent past best, fitted without a recent
    step (module docstring)."""
    return change(fits(d, years, anchor, horizon, history=history, hindcast=HINDCAST_ORIGINS,
                       reference=True).adaptive(), history)


def seasonal_naive(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, **_) -> np.ndarray:
    """The change over the same horizon one year earlier (the epoch nearest to one year before)."""
    year_before = years[anchor] - 1.0
    if year_before < years[0] - 0.5 * (years[1] - years[0]):   # less than a year of history
        return np.full((horizon, *d.shape[1:]), np.nan, np.float32)
    then = int(np.argmin(np.abs(years[: anchor + 1] - year_before)))
    return (d[then + 1: then + horizon + 1] - d[then]).astype(np.float32)


FUNCTIONS = {"persistence": persistence, "linear": linear, "trend_annual": trend_annual, "adaptive": adaptive,
             "seasonal_naive": seasonal_naive}
FITTED = {"linear": lambda f: f.linear, "trend_annual": lambda f: f.long, "adaptive": Fits.adaptive}


def forecast(name: str, d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *,
             history: int) -> np.ndarray:
    """The baseline ``name`` (one of :data:`BASELINES`)."""
    return forecasts((name,), d, years, anchor, horizon, history=history)[name]


def forecasts(names: tuple[str, ...], d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *,
              history: int) -> dict[str, np.ndarray]:
    """Several baselines at one anchor, the least-squares :func:`fits` computed once for all of them."""
    unknown = [n for n in names if n not in FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r}; expected one of {BASELINES}")
    fitted = fits(d, years, anchor, horizon, history=history) if set(names) & {"linear", "trend_annual"} else None
    ref = fits(d, years, anchor, horizon, history=history, hindcast=HINDCAST_ORIGINS, reference=True) \
        if "adaptive" in names else None
    return {n: change(FITTED[n](ref if n == "adaptive" else fitted), history) if n in FITTED
            else FUNCTIONS[n](d, years, anchor, horizon, history=history) for n in names}
