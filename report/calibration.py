"""Calibration of the hindcast ensemble against what was observed on the test period.

Exceedance: for tau in 85, 95, 99 the forecast probability is the hindcast's ``P_tau(x)`` (the share
of members with ``|d_k| >= Q_tau``) and the outcome is ``|observed| >= Q_tau``, with the hindcast's
own thresholds Q_tau at the products' horizon. A K-member ensemble gives the probabilities k / K,
so the reliability diagram has one point per level k (no further binning is needed for K <= 20;
larger ensembles are binned in tenths). The Brier score is ``mean (P - o)^2``; its climatological
reference is ``o_bar (1 - o_bar)`` (always forecasting the observed base rate), and the skill score
``1 - BS / BS_ref``.

Coverage: per horizon step, the share of pixels whose observed change lies within the ensemble's
range (min..max over members; for K exchangeable members the nominal coverage is (K - 1)/(K + 1))
and within its 10-90 % range (numpy's linear quantiles over members; nominal 0.8), with the mean
widths of both intervals.

Observation noise. The members forecast the deformation; the observed change ``d(a+h) - d(a)``
also carries the noise of two epochs. Against it, an ensemble of the signal alone is underdispersed
however good it is. :func:`observation_sigma` estimates each pixel's noise of one epoch from the
epochs up to the anchor, robustly and without a deformation model: ``sigma = 1.4826 MAD(D2) / sqrt 6``
with ``D2`` the second differences of the series (white noise of variance s^2 gives second differences
of variance 6 s^2, while a deformation that is smooth over two epoch spacings adds almost nothing).
The predictive distribution of the observed change is then a mixture of normals over the members
(:func:`observation_predictive`):

- ``paper`` ensembles forecast ``d(a+h) - d(a)`` from the noisy anchor: ``N(d_k, 2 sigma^2)``, the
  noise of both epochs;
- ``residual`` ensembles forecast the change from the fitted level ``R(a)`` of the adaptive curve
  (:mod:`insarcast.udf.inputs`), so ``d(a+h) = R(a) + d_k + e(a+h)`` and the observed change is
  ``d_k + (R(a) - d(a)) + e(a+h)``: ``N(d_k + level, sigma^2 + s_L^2)`` with ``level = R(a) - d(a)``
  known at the anchor and ``s_L`` the standard error of the curve's level at the target, ``R(a+h)``
  (:meth:`insarcast.baselines.Fits.adaptive_scale` with ``level=True``): the error of the fitted
  level ``R(a)`` enters the observed change too, beside that of the change ``R(a+h) - R(a)`` (the
  products' ``forecast_scale``, which is right against the true change of the ground). With the
  change's scale instead, the central 80 % held 74 to 79 % of the observations on seven benchmark
  scenarios (``bench/skill.py``). The anchor's own departure is an observed number, not a second unknown noise:
  treating it as one (``N(d_k, 2 sigma^2)``) stays about as well calibrated but throws that
  information away, a wider predictive with less resolution (on the demo's test period over eight
  origins, for the adaptive baseline alone, a Brier skill of P85 of 0.07 instead of 0.25).

:func:`noisy_exceedance` gives its exceedance probabilities (for the reliability diagram and Brier
score "with noise") and :func:`pit` its probability integral transform of the observation; a
calibrated forecast has PIT values uniform on [0, 1], so 80 % of them in [0.1, 0.9].
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.special import ndtr

LEVELS = (85, 95, 99)


def _levels(p: np.ndarray, members: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Bin index of each probability and the bin centres: k / K for K <= 20 members, else (and for
    continuous probabilities, ``members=None``) tenths."""
    if members is not None and members <= 20:
        return np.rint(p * members).astype(int), np.arange(members + 1) / members
    idx = np.minimum((p * 10).astype(int), 9)
    return idx, (np.arange(10) + 0.5) / 10


def reliability(probabilities: dict[int, np.ndarray], observed_abs: np.ndarray, thresholds: dict[int, float],
                *, members: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reliability table (threshold, level, forecast_probability, pixels, mean_probability,
    observed_frequency, observed) and the Brier table (threshold, q_mm, n, base_rate,
    mean_probability, brier, brier_reference, brier_skill) over pixels where P and the observation
    are finite."""
    rel_rows, brier_rows = [], []
    for tau in LEVELS:
        p = np.asarray(probabilities[tau], np.float64)
        ok = np.isfinite(p) & np.isfinite(observed_abs)
        q = float(thresholds[tau])
        o = (observed_abs[ok] >= q).astype(np.float64)
        pv = p[ok]
        idx, centres = _levels(pv, members)
        for k, centre in enumerate(centres):
            sel = idx == k
            n = int(sel.sum())
            rel_rows.append({"threshold": f"P{tau}", "level": k, "forecast_probability": float(centre), "pixels": n,
                             "mean_probability": float(pv[sel].mean()) if n else math.nan,
                             "observed_frequency": float(o[sel].mean()) if n else math.nan,
                             "observed": int(o[sel].sum())})
        n = int(o.size)
        base = float(o.mean()) if n else math.nan
        bs = float(((pv - o) ** 2).mean()) if n else math.nan
        ref = base * (1 - base) if n else math.nan
        brier_rows.append({"threshold": f"P{tau}", "q_mm": q, "n": n, "base_rate": base,
                           "mean_probability": float(pv.mean()) if n else math.nan, "brier": bs,
                           "brier_reference": ref, "brier_skill": 1 - bs / ref if n and ref > 0 else math.nan})
    rel = pd.DataFrame(rel_rows, columns=["threshold", "level", "forecast_probability", "pixels", "mean_probability",
                                          "observed_frequency", "observed"])
    brier = pd.DataFrame(brier_rows, columns=["threshold", "q_mm", "n", "base_rate", "mean_probability", "brier",
                                              "brier_reference", "brier_skill"])
    return rel, brier


def coverage(members_fc: np.ndarray, observed: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Coverage of the member forecasts ``(K, F, y, x)`` against ``observed (F, y, x)``: the table
    (horizon, n, within_range, nominal_range, within_10_90, nominal_10_90, width_range_mm,
    width_10_90_mm), one row per step and one for all steps, and the per-pixel share (y, x) of the F
    steps whose observation lies within the members' range (NaN where never observed)."""
    fc = np.asarray(members_fc, np.float64)
    obs = np.asarray(observed, np.float64)
    k = fc.shape[0]
    ok = np.isfinite(obs) & np.isfinite(fc).all(axis=0)
    with np.errstate(invalid="ignore"):
        lo, hi = fc.min(axis=0), fc.max(axis=0)
        q10, q90 = np.quantile(fc, [0.1, 0.9], axis=0)
    in_range = (obs >= lo) & (obs <= hi) & ok
    in_1090 = (obs >= q10) & (obs <= q90) & ok
    nominal = (k - 1) / (k + 1)
    rows = []
    steps = obs.shape[0]
    for h in [*range(steps), None]:
        sl = slice(None) if h is None else h
        m = ok[sl]
        n = int(m.sum())
        rows.append({"horizon": "all" if h is None else str(h + 1), "n": n,
                     "within_range": float(in_range[sl][m].mean()) if n else math.nan, "nominal_range": nominal,
                     "within_10_90": float(in_1090[sl][m].mean()) if n else math.nan, "nominal_10_90": 0.8,
                     "width_range_mm": float((hi - lo)[sl][m].mean()) if n else math.nan,
                     "width_10_90_mm": float((q90 - q10)[sl][m].mean()) if n else math.nan})
    count = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_pixel = np.where(count > 0, in_range.sum(axis=0) / count, np.nan)
    table = pd.DataFrame(rows, columns=["horizon", "n", "within_range", "nominal_range", "within_10_90",
                                        "nominal_10_90", "width_range_mm", "width_10_90_mm"])
    return table, per_pixel


def observation_sigma(displacement, anchor: int, *, rows_per_block: int | None = None) -> np.ndarray:
    """Noise of one epoch (y, x) in mm: ``1.4826 MAD(second differences) / sqrt(6)`` over the epochs up
    to ``anchor`` of ``displacement`` (DataArray (t, y, x)); NaN where fewer than 8 are finite."""
    from .residuals import past_blocks

    ny, nx = displacement.sizes["y"], displacement.sizes["x"]
    out = np.full((ny, nx), np.nan, np.float64)
    for rows, block in past_blocks(displacement, anchor, rows_per_block=rows_per_block):
        d2 = np.diff(block.astype(np.float64), n=2, axis=0)
        enough = np.isfinite(d2).sum(axis=0) >= 8
        with warnings.catch_warnings():              # all-NaN pixels: NaN, as documented
            warnings.simplefilter("ignore", RuntimeWarning)
            mad = np.nanmedian(np.abs(d2 - np.nanmedian(d2, axis=0)), axis=0)
        out[rows] = np.where(enough, 1.4826 * mad / math.sqrt(6.0), np.nan)
    return out


def observation_predictive(members_fc: np.ndarray, sigma: np.ndarray, *, inputs: str,
                           level: np.ndarray | None = None, level_scale: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """The centres ``(K, y, x)`` and the scale ``(y, x)`` of the normal mixture that predicts the
    observed change from member forecasts ``(K, y, x)`` at one horizon (see the module docstring):
    ``paper``: ``(d_k, sqrt(2) sigma)``; ``residual``: ``(d_k + level, sqrt(sigma^2 + s_L^2))`` with
    ``s_L`` the standard error of the reference curve's level at that horizon (0 where not given)."""
    d = np.asarray(members_fc, np.float64)
    sigma = np.asarray(sigma, np.float64)
    if inputs == "paper":
        return d, math.sqrt(2.0) * sigma
    if level is None:
        raise ValueError("a residual ensemble's observation predictive needs the level R(a) - d(a)")
    s = 0.0 if level_scale is None else np.nan_to_num(np.asarray(level_scale, np.float64))
    return d + np.asarray(level, np.float64)[None], np.sqrt(sigma ** 2 + s ** 2)


def with_departure(level_scale: np.ndarray, change_scale: np.ndarray, forecast_scale: np.ndarray | None) -> np.ndarray:
    """``sqrt(s_L^2 + (m - r)^2)`` ``(F, y, x)``: the level's standard error ``level_scale`` widened by what
    the products' ``forecast_scale`` adds to the fit's own error of the change ``change_scale``
    (:func:`insarcast.udf.inputs.forecast_scale`: ``forecast_scale^2 = s^2 + (m - r)^2``), so that the
    predictive of an observation states the uncertainty the products state; ``level_scale`` unchanged
    without ``forecast_scale`` or where either is not finite."""
    s_l = np.asarray(level_scale, np.float64)
    if forecast_scale is None:
        return s_l
    added = np.asarray(forecast_scale, np.float64) ** 2 - np.asarray(change_scale, np.float64) ** 2
    return np.sqrt(s_l ** 2 + np.where(np.isfinite(added), np.maximum(added, 0.0), 0.0))


def noisy_exceedance(members_fc: np.ndarray, scale: np.ndarray, threshold: float) -> np.ndarray:
    """``P(|d_k + e| >= Q)`` averaged over the members ``(K, y, x)``, with ``e ~ N(0, scale^2)``
    (``scale``: the noise of the observed change, ``sqrt(2) sigma``); NaN where any input is."""
    d = np.asarray(members_fc, np.float64)
    s = np.asarray(scale, np.float64)
    q = float(threshold)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (ndtr((-q - d) / s) + 1.0 - ndtr((q - d) / s)).mean(axis=0)
    return np.where(np.isfinite(s) & (s > 0) & np.isfinite(d).all(axis=0), p, np.nan)


def pit(members_fc: np.ndarray, scale: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The probability integral transform ``mean_k Phi((obs - d_k) / scale)`` of the observed change
    under the noisy ensemble (y, x); NaN where any input is."""
    d = np.asarray(members_fc, np.float64)
    s = np.asarray(scale, np.float64)
    obs = np.asarray(observed, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = ndtr((obs - d) / s).mean(axis=0)
    return np.where(np.isfinite(obs) & np.isfinite(s) & (s > 0) & np.isfinite(d).all(axis=0), u, np.nan)


def pit_table(values: np.ndarray, *, bins: int = 10) -> pd.DataFrame:
    """Histogram of the PIT values in ``bins`` equal bins (bin_low, bin_high, pixels, frequency,
    nominal = 1 / bins) and a last row "central_80" with the share in [0.1, 0.9] (nominal 0.8)."""
    u = np.asarray(values, np.float64)
    u = u[np.isfinite(u)]
    counts, edges = np.histogram(u, bins=bins, range=(0.0, 1.0))
    n = int(u.size)
    rows = [{"bin": str(i + 1), "bin_low": float(edges[i]), "bin_high": float(edges[i + 1]), "pixels": int(c),
             "frequency": c / n if n else math.nan, "nominal": 1.0 / bins} for i, c in enumerate(counts)]
    inside = int(((u >= 0.1) & (u <= 0.9)).sum())
    rows.append({"bin": "central_80", "bin_low": 0.1, "bin_high": 0.9, "pixels": inside,
                 "frequency": inside / n if n else math.nan, "nominal": 0.8})
    return pd.DataFrame(rows, columns=["bin", "bin_low", "bin_high", "pixels", "frequency", "nominal"])
