"""Residual diagnostics of the hindcast (the paper's section 5.1-5.2), as tables.

A residual is forecast minus observed, in mm (positive: the forecast overestimates the change).
Skill follows ``insarcast.training.metrics``: RMSE, MAE, bias = mean residual, and
R² = 1 - SSE / SST with SST the spread of the observed change around its mean over the same pixels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from insarcast.baselines import BASELINES, decimal_years
from insarcast.baselines import forecasts

TAIL_LEVELS = (0.01, 0.025, 0.05, 0.95, 0.975, 0.99)      # the paper's Figure 9b quantile lines
QQ_POINTS = 2000                                           # at most this many points in the Q-Q plot
HIGH_QUANTILE = 2.0 / 3.0                                  # "high": the top tercile


def skill(forecast: np.ndarray, observed: np.ndarray) -> dict[str, float]:
    """n, RMSE, MAE, bias and R² of paired finite values (1-d float arrays)."""
    f = np.asarray(forecast, np.float64)
    o = np.asarray(observed, np.float64)
    n = f.size
    if n == 0:
        return {"n": 0, "rmse": math.nan, "mae": math.nan, "bias": math.nan, "r2": math.nan}
    e = f - o
    sst = float(((o - o.mean()) ** 2).sum())
    sse = float((e * e).sum())
    return {"n": int(n), "rmse": math.sqrt(sse / n), "mae": float(np.abs(e).mean()), "bias": float(e.mean()),
            "r2": 1.0 - sse / sst if sst > 0 else math.nan}


def past_blocks(displacement, anchor: int, *, rows_per_block: int | None = None):
    """Yield ``(rows, block)``: the epochs up to ``anchor`` of ``displacement`` (an xarray DataArray
    (t, y, x)) as float32 ``(anchor + 1, rows, x)``, in blocks of rows of about 64 MB."""
    ny, nx = displacement.sizes["y"], displacement.sizes["x"]
    if rows_per_block is None:
        rows_per_block = max(1, int(16_000_000 // max(1, (anchor + 1) * nx)))
    for start in range(0, ny, rows_per_block):
        rows = slice(start, min(ny, start + rows_per_block))
        yield rows, np.asarray(displacement.isel(t=slice(0, anchor + 1), y=rows).transpose("t", "y", "x").values,
                               np.float32)


def baseline_forecasts(displacement, times: np.ndarray, anchor: int, horizon_steps: int, *, history: int,
                       rows_per_block: int | None = None) -> dict[str, np.ndarray]:
    """Every baseline's forecast (F, y, x) float32 of the change after ``anchor``, computed on
    blocks of rows of ``displacement`` (an xarray DataArray (t, y, x), read up to the anchor)."""
    years = decimal_years(times)
    ny, nx = displacement.sizes["y"], displacement.sizes["x"]
    out = {name: np.full((horizon_steps, ny, nx), np.nan, np.float32) for name in BASELINES}
    for rows, block in past_blocks(displacement, anchor, rows_per_block=rows_per_block):
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, value in forecasts(BASELINES, block, years, anchor, horizon_steps, history=history).items():
                out[name][:, rows] = value
    return out


def skill_table(observed: np.ndarray, sources: dict[str, np.ndarray]) -> pd.DataFrame:
    """Skill of each source (F, y, x) against ``observed`` (F, y, x), per horizon step and over all
    steps ("all"), on the pixels where the observation and every source are finite."""
    mask = np.isfinite(observed)
    for values in sources.values():
        mask &= np.isfinite(values)
    steps = observed.shape[0]
    rows = []
    for name, values in sources.items():
        for h in range(steps):
            rows.append({"source": name, "horizon": str(h + 1), **skill(values[h][mask[h]], observed[h][mask[h]])})
        rows.append({"source": name, "horizon": "all", **skill(values[mask], observed[mask])})
    return pd.DataFrame(rows, columns=["source", "horizon", "n", "rmse", "mae", "bias", "r2"])


def residual_summary(residual: np.ndarray) -> pd.DataFrame:
    """Statistics of the finite residuals: statistic, value, unit."""
    r = np.asarray(residual, np.float64)
    r = r[np.isfinite(r)]
    n = r.size
    if n == 0:
        values = dict.fromkeys(("mean", "std", "rmse", "mae", "median", "min", "max", "skewness",
                                "excess_kurtosis", "share_overestimated"), math.nan)
    else:
        from scipy import stats

        values = {"mean": r.mean(), "std": r.std(ddof=1) if n > 1 else math.nan, "rmse": math.sqrt((r * r).mean()),
                  "mae": np.abs(r).mean(), "median": float(np.median(r)), "min": r.min(), "max": r.max(),
                  "skewness": float(stats.skew(r)) if n > 2 else math.nan,
                  "excess_kurtosis": float(stats.kurtosis(r)) if n > 3 else math.nan,
                  "share_overestimated": float((r > 0).mean())}
    units = {"skewness": "1", "excess_kurtosis": "1", "share_overestimated": "1"}
    rows = [{"statistic": "n", "value": float(n), "unit": "pixels"}]
    rows += [{"statistic": k, "value": float(v), "unit": units.get(k, "mm")} for k, v in values.items()]
    return pd.DataFrame(rows, columns=["statistic", "value", "unit"])


def qq_points(residual: np.ndarray, *, max_points: int = QQ_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, standard normal quantiles, sample quantiles) of the finite residuals: every
    sorted value at plotting positions (i - 0.5) / n, or ``max_points`` evenly spaced quantiles."""
    from scipy import stats

    r = np.sort(np.asarray(residual, np.float64)[np.isfinite(residual)])
    n = r.size
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    if n <= max_points:
        p = (np.arange(1, n + 1) - 0.5) / n
        q = r
    else:
        p = (np.arange(1, max_points + 1) - 0.5) / max_points
        q = np.quantile(r, p)
    return p, stats.norm.ppf(p), q


def qq_fits(residual: np.ndarray, *, max_points: int = QQ_POINTS) -> pd.DataFrame:
    """Lines through the Q-Q points (sample quantile in mm = intercept + slope * z): the normal
    reference (mean, std of the residuals), ordinary least squares, and Theil-Sen (robust)."""
    from scipy import stats

    r = np.asarray(residual, np.float64)
    r = r[np.isfinite(r)]
    _, z, q = qq_points(r, max_points=max_points)
    rows = []
    if r.size >= 3:
        rows.append({"line": "normal", "intercept_mm": r.mean(), "slope_mm": r.std(ddof=1),
                     "description": "normal distribution with the residuals' mean and standard deviation"})
        slope, intercept = np.polyfit(z, q, 1)
        rows.append({"line": "ols", "intercept_mm": float(intercept), "slope_mm": float(slope),
                     "description": "ordinary least squares through the Q-Q points"})
        ts = stats.theilslopes(q, z)
        rows.append({"line": "theil_sen", "intercept_mm": float(ts[1]), "slope_mm": float(ts[0]),
                     "description": "Theil-Sen median of pairwise slopes (robust)"})
    return pd.DataFrame(rows, columns=["line", "intercept_mm", "slope_mm", "description"])


def tail_quantiles(residual: np.ndarray, fits: pd.DataFrame) -> pd.DataFrame:
    """The residual quantiles Q1, Q2.5, Q5, Q95, Q97.5, Q99 beside those of the normal reference and
    of the robust line, and the pixels beyond each (below for the left tail, above for the right)."""
    from scipy import stats

    r = np.asarray(residual, np.float64)
    r = r[np.isfinite(r)]
    lines = {row.line: (row.intercept_mm, row.slope_mm) for row in fits.itertuples()}
    rows = []
    for level in TAIL_LEVELS:
        z = float(stats.norm.ppf(level))
        value = float(np.quantile(r, level)) if r.size else math.nan
        beyond = int((r < value).sum() if level < 0.5 else (r > value).sum()) if r.size else 0
        normal = lines.get("normal", (math.nan, math.nan))
        robust = lines.get("theil_sen", (math.nan, math.nan))
        rows.append({"quantile": f"Q{level * 100:g}", "level": level, "residual_mm": value,
                     "normal_mm": normal[0] + normal[1] * z, "robust_mm": robust[0] + robust[1] * z,
                     "pixels_beyond": beyond})
    return pd.DataFrame(rows, columns=["quantile", "level", "residual_mm", "normal_mm", "robust_mm", "pixels_beyond"])


OVERLAY_CATEGORIES = (
    ("high residual, high uncertainty", "dense field monitoring (GNSS, corner reflectors) for direct validation"),
    ("low residual, high uncertainty", "threshold-sensitive: local densification and threshold recalibration"),
    ("high residual, low uncertainty", "confident but wrong: review the model and the input data"),
    ("low residual, low uncertainty", "stable and reliable: routine management"),
)


def overlay(std: np.ndarray, abs_residual: np.ndarray, *, std_high: float, pixel_area_km2: float
            ) -> tuple[np.ndarray, float, pd.DataFrame]:
    """Joint classes of uncertainty and absolute residual: codes (y, x) int8 0..3 in the order of
    :data:`OVERLAY_CATEGORIES` (-1 where either is missing), the residual threshold (the top
    tercile of |residual|) and the table (category, rule, action, pixels, area_km2, share).
    High uncertainty: ``std >= std_high`` (the std tercile of the bivariate map)."""
    ok = np.isfinite(std) & np.isfinite(abs_residual)
    res_high = float(np.quantile(abs_residual[ok], HIGH_QUANTILE)) if ok.any() else math.nan
    hi_u = std >= std_high
    hi_r = abs_residual >= res_high
    codes = np.full(std.shape, -1, np.int8)
    codes[ok & hi_r & hi_u] = 0
    codes[ok & ~hi_r & hi_u] = 1
    codes[ok & hi_r & ~hi_u] = 2
    codes[ok & ~hi_r & ~hi_u] = 3
    total = int(ok.sum())
    rules = (f"|res| >= {res_high:.3g} mm and std >= {std_high:.3g} mm",
             f"|res| < {res_high:.3g} mm and std >= {std_high:.3g} mm",
             f"|res| >= {res_high:.3g} mm and std < {std_high:.3g} mm",
             f"|res| < {res_high:.3g} mm and std < {std_high:.3g} mm")
    rows = []
    for code, ((name, action), rule) in enumerate(zip(OVERLAY_CATEGORIES, rules)):
        pixels = int((codes == code).sum())
        rows.append({"category": name, "rule": rule, "action": action, "pixels": pixels,
                     "area_km2": pixels * pixel_area_km2, "share": pixels / total if total else math.nan})
    return codes, res_high, pd.DataFrame(rows, columns=["category", "rule", "action", "pixels", "area_km2", "share"])


def rank_correlations(abs_residual: np.ndarray, layers: dict[str, np.ndarray]) -> pd.DataFrame:
    """Spearman's rank correlation of each layer with |residual| over the pixels where both are finite."""
    from scipy import stats

    rows = []
    for name, layer in layers.items():
        ok = np.isfinite(layer) & np.isfinite(abs_residual)
        n = int(ok.sum())
        if n >= 3 and np.ptp(layer[ok]) > 0 and np.ptp(abs_residual[ok]) > 0:
            rho, p = stats.spearmanr(layer[ok], abs_residual[ok])
            rho, p = float(rho), float(p)
        else:
            rho = p = math.nan
        rows.append({"x": name, "y": "abs_residual", "method": "spearman", "rho": rho, "p_value": p, "n": n})
    return pd.DataFrame(rows, columns=["x", "y", "method", "rho", "p_value", "n"])


def model_residual_table(entries: list[dict], observed: np.ndarray) -> tuple[pd.DataFrame, float, np.ndarray]:
    """Absolute-residual statistics of several forecasts (y, x) of the same horizon on the pixels
    where all are finite. ``entries``: dicts with ``label``, ``forecast`` and descriptive fields
    (arch, strategy, seed, trial, val_loss, file). ``high_share``: the share of pixels whose |res|
    exceeds ``high_threshold``, the 90th percentile of |res| pooled over every entry."""
    mask = np.isfinite(observed)
    for e in entries:
        mask &= np.isfinite(e["forecast"])
    absres = [np.abs(e["forecast"] - observed)[mask].astype(np.float64) for e in entries]
    pooled = np.concatenate(absres) if absres else np.zeros(0)
    threshold = float(np.quantile(pooled, 0.9)) if pooled.size else math.nan
    rows = []
    for e, a in zip(entries, absres):
        signed = (e["forecast"] - observed)[mask].astype(np.float64)
        rows.append({"label": e["label"], "arch": e.get("arch", ""), "strategy": e.get("strategy", ""),
                     "seed": e.get("seed"), "trial": e.get("trial"), "val_loss": e.get("val_loss", math.nan),
                     "n": int(a.size), "mae_mm": float(a.mean()) if a.size else math.nan,
                     "rmse_mm": float(np.sqrt((a * a).mean())) if a.size else math.nan,
                     "bias_mm": float(signed.mean()) if a.size else math.nan,
                     "q90_abs_mm": float(np.quantile(a, 0.9)) if a.size else math.nan,
                     "high_share": float((a > threshold).mean()) if a.size else math.nan,
                     "file": e.get("file", "")})
    columns = ["label", "arch", "strategy", "seed", "trial", "val_loss", "n", "mae_mm", "rmse_mm", "bias_mm",
               "q90_abs_mm", "high_share", "file"]
    table = pd.DataFrame(rows, columns=columns)
    for col in ("seed", "trial"):
        table[col] = table[col].astype("Int64")
    return table, threshold, mask
