"""Skill over many forecast origins: the ensemble against every baseline, against the observations
and, where a noise-free truth cube exists (the synthetic scenario), against the truth.

One noisy window cannot rank methods (the noise of a single epoch, about 2.7 mm on the demo, is
larger than the 36-day signal of most pixels), so the hindcast is repeated at several origins
``a`` spread over the test period and every method is scored on the same pixels of every origin:

- against the **observations**: the forecast change against ``d(a+k) - d(a)``;
- against the **truth**: against the true change of the ground ``truth(a+k) - truth(a)`` (the
  noise of the observation at the anchor is not motion of the ground);
- **overall** (every valid pixel), inside the **zones** of ``zones.geojson`` (within
  :data:`MINE_BUFFER` of a mine outline or :data:`FAULT_BUFFER` of a fault trace) and, with a
  truth, where the ground truly **moves** faster than :data:`MOVING_RATE` over the horizon.

Methods are the ensemble median (``model``), the baselines of :mod:`insarcast.baselines` and the
adaptive baseline through the products' spatial filter (``adaptive_filtered``,
:mod:`insarcast.udf.spatial`): a filtered ensemble that equals it owes nothing to its networks.
:func:`diebold_mariano` compares the model with each baseline on the per-origin mean squared
errors, with the Harvey-Leybourne-Newbold small-sample correction. The map scores say whether the
classes find what moves: of the pixels whose true change over the horizon is in the top 5 %, the
share classed High or Highest (``recall_top5``); of the High/Highest pixels, the share among the top
15 % true movers (``precision_top15``); the correlation of the forecast map with the true change
inside the zones (``corr_zones``); of the pixels whose true change departs from the map's median
true change by more than :data:`MOVING_RATE` over the horizon (ground moving against its
surroundings, at a rate a planner acts on, not a rank; the annual cycle moves every pixel alike),
the share classed High or Highest (``recall_moving``, with
``moving_share`` the share of the pixels that move: High or Highest is the forecast's top 5 %, so
where more than 5 % move at most 0.05 / ``moving_share`` of them fit in it, and where fewer move the
true top 5 % is partly ground that does not). Beside them, with a truth: the same two shares for the adaptive
baseline's map (``*_adaptive``, through the spatial filter ``*_adaptive_filtered``) and for that baseline fitted to the noise-free truth (``*_truth_fit``,
the ceiling of what the method could rank with perfect observations), and the 85th and 95th
percentiles of the true |change| (``true_q85_mm``, ``true_q95_mm``): where they nearly coincide, the
top 5 % is cut out of a plateau of equal motion and no forecast from noisy data can rank it.

Calibration over the same origins (:meth:`SkillScores.calibration_table`): at each origin the
members at the products' horizon become the predictive distribution of the observed change with
the observation noise (:func:`insarcast.report.calibration.observation_predictive`); pooled over
the origins, the share of PIT values in [0.1, 0.9] (nominal 0.8) and the Brier skill of P85, P95
and P99 against the climatology of each origin (its own base rate ``o_bar``, reference
``o_bar (1 - o_bar)``): one anchor's atmosphere is one spatially correlated draw, so a single
origin cannot say whether a forecast is calibrated. With a truth, the same for the products' own
probabilities against the noise-free change (``truth_*``, :func:`truth_calibration`).

Imports numpy, pandas, scipy and the torch-free UDF only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from insarcast import baselines as bl

MINE_BUFFER = 1000.0          # m around a mine outline: the Knothe trough reaches ~ the influence radius
FAULT_BUFFER = 500.0          # m either side of a fault trace
MOVING_RATE = 20.0            # mm/yr: "moves" when |true change over the horizon| exceeds this rate
# ``adaptive_filtered``: the adaptive baseline through the products' spatial filter
# (:mod:`insarcast.udf.spatial`), what a filtered ensemble whose networks correct nothing forecasts
METHODS_BASE = ("persistence", "linear", "trend_annual", "adaptive", "adaptive_filtered")
REGIONS = ("overall", "zones", "moving")
HIGH = 2                      # class codes >= HIGH are High or Highest (insarcast.udf.products)
CALIBRATION_LEVELS = (85, 95, 99)


def origins(n_epochs: int, *, history: int, horizon: int, start: int, count: int) -> np.ndarray:
    """``count`` anchors evenly spread from ``start - 1`` (the first window whose targets lie at or after
    epoch ``start``) to the last one with F observed epochs after it."""
    first, last = max(history - 1, start - 1), n_epochs - 1 - horizon
    if last < first:
        return np.array([], int)
    return np.unique(np.linspace(first, last, max(1, count)).round().astype(int))


@dataclass
class SkillScores:
    """Per origin, method, target ("observed"/"truth") and region: sums of squared errors per horizon."""

    horizon: int
    anchors: list[int] = field(default_factory=list)
    # (target, region, method) -> list over origins of (F,) SSE and (F,) counts
    sse: dict[tuple[str, str, str], list[np.ndarray]] = field(default_factory=dict)
    count: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    maps: list[dict[str, float]] = field(default_factory=list)
    calibration: list[dict[str, float]] = field(default_factory=list)

    def add(self, target: str, region: str, forecasts: dict[str, np.ndarray], reference: np.ndarray,
            mask: np.ndarray) -> None:
        keep = mask & np.isfinite(reference).all(axis=0)
        for f in forecasts.values():
            keep &= np.isfinite(f).all(axis=0)
        self.count.setdefault((target, region), []).append(np.full(self.horizon, keep.sum(), np.float64))
        for name, f in forecasts.items():
            err = (f - reference)[:, keep].astype(np.float64)
            self.sse.setdefault((target, region, name), []).append((err ** 2).sum(axis=1))

    def rmse(self, target: str, region: str, method: str, *, by_horizon: bool = False) -> np.ndarray | float:
        sse = np.sum(self.sse[(target, region, method)], axis=0)
        n = np.sum(self.count[(target, region)], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(sse / n) if by_horizon else float(np.sqrt(sse.sum() / n.sum()))

    def per_origin_mse(self, target: str, region: str, method: str) -> np.ndarray:
        sse = np.array(self.sse[(target, region, method)]).sum(axis=1)
        n = np.array(self.count[(target, region)]).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sse / n

    def methods(self) -> list[str]:
        return sorted({k[2] for k in self.sse}, key=lambda m: (m != "model", m))

    def table(self) -> pd.DataFrame:
        """One row per target, region and method: RMSE, the ratio to the best simple baseline
        (persistence, linear, trend_annual) and the Diebold-Mariano test against the model."""
        rows = []
        step = max(1, int(np.median(np.diff(self.anchors)))) if len(self.anchors) > 1 else self.horizon
        lag = max(1, math.ceil(self.horizon / step))
        for target, region in sorted(self.count, key=lambda k: (k[0] != "truth", REGIONS.index(k[1]))):
            if np.sum(self.count[(target, region)]) == 0:
                continue
            scores = {m: self.rmse(target, region, m) for m in self.methods()}
            best = min(scores[m] for m in bl.SIMPLE_BASELINES if m in scores)
            model_loss = self.per_origin_mse(target, region, "model")
            for method, value in scores.items():
                dm, p = (math.nan, math.nan) if method == "model" else diebold_mariano(
                    model_loss, self.per_origin_mse(target, region, method), lag=lag)
                rows.append({"target": target, "region": region, "method": method, "rmse_mm": value,
                             "ratio_to_best_simple": value / best if best > 0 else math.nan,
                             "dm_stat": dm, "dm_p": p, "origins": len(self.anchors)})
        return pd.DataFrame(rows)

    def horizon_table(self, target: str, region: str = "overall") -> pd.DataFrame:
        """RMSE per horizon step of every method, and the model's skill 1 - RMSE_model / RMSE_method."""
        out = {"horizon": np.arange(1, self.horizon + 1)}
        model = self.rmse(target, region, "model", by_horizon=True)
        for m in self.methods():
            out[f"rmse_{m}"] = self.rmse(target, region, m, by_horizon=True)
            if m != "model":
                out[f"skill_vs_{m}"] = 1.0 - model / out[f"rmse_{m}"]
        return pd.DataFrame(out)

    def map_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.maps)

    def calibration_table(self) -> pd.DataFrame:
        """Per origin and pooled ("all"): pixels, the share of PIT values in [0.1, 0.9], and per
        level tau the base rate, mean probability, Brier score and Brier skill of P_tau with the
        observation noise against the origin's climatology (pooled: the pixel-weighted sums)."""
        rows = pd.DataFrame(self.calibration)
        if rows.empty:
            return rows
        pooled = {"anchor": "all"}
        for prefix in ("", "truth_") if "truth_pixels" in rows else ("",):
            n = rows[f"{prefix}pixels"]
            pooled[f"{prefix}pixels"] = int(n.sum())
            pooled[f"{prefix}pit_inside"] = int(rows[f"{prefix}pit_inside"].sum())
            for key in (f"{prefix}brier_{tau}" for tau in CALIBRATION_LEVELS):
                pooled[key] = float((rows[key] * n).sum() / n.sum())
            for key in (f"{prefix}reference_{tau}" for tau in CALIBRATION_LEVELS):
                pooled[key] = float((rows[key] * n).sum() / n.sum())
        for key in (f"{name}_{tau}" for name in ("base_rate", "mean_p") for tau in CALIBRATION_LEVELS):
            pooled[key] = float((rows[key] * rows["pixels"]).sum() / rows["pixels"].sum())
        rows = pd.concat([rows.astype({"anchor": object}), pd.DataFrame([pooled])], ignore_index=True)
        for prefix in ("", "truth_") if "truth_pixels" in rows else ("",):
            rows[f"{prefix}pit_central_80"] = rows[f"{prefix}pit_inside"] / rows[f"{prefix}pixels"]
            for tau in CALIBRATION_LEVELS:
                ref = rows[f"{prefix}reference_{tau}"]
                rows[f"{prefix}brier_skill_{tau}"] = np.where(ref > 0, 1 - rows[f"{prefix}brier_{tau}"]
                                                              / ref.where(ref > 0), np.nan)
        return rows

    def horizon_tables(self) -> pd.DataFrame:
        """:meth:`horizon_table` overall for every target, with a ``target`` column."""
        targets = [t for t in ("truth", "observed") if (t, "overall") in self.count]
        return pd.concat([self.horizon_table(t).assign(target=t) for t in targets], ignore_index=True)

    def verdict(self, *, alpha: float = 0.05) -> list[str]:
        """Plain sentences: where the ensemble beats the best simple baseline and the adaptive one. A
        difference counts only where the Diebold-Mariano test finds it at level ``alpha``; otherwise the
        sentence says the two are level, whichever RMSE is the smaller."""
        table = self.table()
        lines = []
        for (target, region), part in table.groupby(["target", "region"], sort=False):
            rows = part.set_index("method")
            model = rows.loc["model", "rmse_mm"]
            simple = {m: rows.loc[m, "rmse_mm"] for m in bl.SIMPLE_BASELINES if m in rows.index}
            best = min(simple, key=simple.get)
            where = {"overall": "over the whole region", "zones": "inside the zones",
                     "moving": "where the ground truly moves"}[region]
            p = rows.loc[best, "dm_p"]
            line = (f"Against the {target}, {where}: the ensemble median ({model:.3f} mm) "
                    f"{_compared(model, simple[best], p, alpha, 'beats', 'is worse than', 'is level with')} the "
                    f"best simple baseline, {best} ({simple[best]:.3f} mm; ratio {model / simple[best]:.2f}, "
                    f"Diebold-Mariano p = {p:.3f})")
            for name, what in (("adaptive", "the adaptive baseline"),
                               ("adaptive_filtered", "that baseline through the spatial filter")):
                if name in rows.index:
                    ad, p = rows.loc[name, "rmse_mm"], rows.loc[name, "dm_p"]
                    verb = _compared(model, ad, p, alpha, "improves on", "is worse than", "is level with")
                    line += f"; it {verb} {what} ({ad:.3f} mm, p = {p:.3f})"
            lines.append(line + f" (a difference counts where p < {alpha:g}).")
        return lines


def _compared(model: float, other: float, p: float, alpha: float, better: str, worse: str, level: str) -> str:
    """The verb for the model's RMSE against another's: ``level`` unless the test finds the difference."""
    if not (p < alpha) or model == other:
        return level
    return better if model < other else worse


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, *, lag: int = 1) -> tuple[float, float]:
    """Diebold-Mariano test of equal accuracy of A and B from per-origin losses, with the
    Harvey-Leybourne-Newbold (1997) correction for small samples and a Student t with n - 1 degrees
    of freedom. ``lag`` is the forecast overlap h (autocovariances up to h - 1 enter the variance).
    Negative statistic: A has the smaller loss. Returns (statistic, two-sided p-value)."""
    d = np.asarray(loss_a, np.float64) - np.asarray(loss_b, np.float64)
    d = d[np.isfinite(d)]
    n = d.size
    if n < 2:
        return math.nan, math.nan
    mean = d.mean()
    dev = d - mean
    h = min(int(lag), n - 1)
    var = (dev @ dev) / n + 2 * sum((dev[k:] @ dev[:-k]) / n for k in range(1, h))
    if var <= 0:
        var = (dev @ dev) / n
    if var <= 0:
        return (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    dm = mean / math.sqrt(var / n)
    dm *= math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    return float(dm), float(2 * stats.t.sf(abs(dm), df=n - 1))


def map_scores(median: np.ndarray, classes: np.ndarray, true_change: np.ndarray, valid: np.ndarray,
               zones: np.ndarray | None, moving: np.ndarray | None = None) -> dict[str, float]:
    """Whether a forecast map (y, x) at the horizon finds what truly moves (see the module docstring);
    ``moving``: (y, x) bool, the pixels that truly move (``recall_moving``)."""
    ok = valid & np.isfinite(median) & np.isfinite(true_change) & (classes != 255)
    size = np.abs(true_change[ok])
    out = {"pixels": int(ok.sum())}
    if size.size == 0:
        return out
    high = classes[ok] >= HIGH
    top5 = size >= np.quantile(size, 0.95)
    top15 = size >= np.quantile(size, 0.85)
    out["recall_top5"] = float(high[top5].mean())
    out["precision_top15"] = float(top15[high].mean()) if high.any() else math.nan
    if moving is not None and moving[ok].any():
        out["recall_moving"] = float(high[moving[ok]].mean())
        out["moving_share"] = float(moving[ok].mean())
    out["corr_overall"] = _corr(median[ok], true_change[ok])
    if zones is not None and (ok & zones).sum() > 2:
        out["corr_zones"] = _corr(median[ok & zones], true_change[ok & zones])
    return out


def quantile_classes(layer: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The susceptibility classes of a forecast map by its own Q85/Q95/Q99 of ``|layer|`` over the
    valid pixels (the products' rule, :mod:`insarcast.udf.products`), 255 elsewhere."""
    from insarcast.udf.products import NODATA_CLASS, classify

    a = np.abs(np.asarray(layer, np.float64))
    ok = valid & np.isfinite(a)
    out = np.full(a.shape, NODATA_CLASS, np.uint8)
    if ok.any():
        out[ok] = classify(a[ok], np.quantile(a[ok], [0.85, 0.95, 0.99]))
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def zone_mask(zones, ds: xr.Dataset) -> np.ndarray | None:
    """(y, x) bool: within :data:`MINE_BUFFER` of a mine or :data:`FAULT_BUFFER` of a fault; None without
    zones. ``zones``: a zones file or its :class:`~insarcast.report.zones.Zones`."""
    from .zones import Zones, read_zones, zone_distances

    if zones is None:
        return None
    if not isinstance(zones, Zones):
        crs = ds.rio.crs if hasattr(ds, "rio") else None
        zones = read_zones(zones, crs=None if crs is None else crs.to_string())
    if not zones.features:
        return None
    dist = zone_distances(zones, ds["x"].values, ds["y"].values)
    return (dist["mine"] <= MINE_BUFFER) | (dist["fault"] <= FAULT_BUFFER)


def score(cube: xr.Dataset, ensemble: Any, *, anchors, truth: xr.DataArray | None = None,
          zones: np.ndarray | None = None, overlap: int | None = None, progress=None) -> SkillScores:
    """Hindcast ``ensemble`` (an :class:`insarcast.udf.ensemble.Ensemble` or anything with its
    ``settings``) at every anchor and score it beside the baselines (see the module docstring)."""
    from insarcast.udf.forecast import forecast_products
    from insarcast.udf.inputs import hindcast_origins, hindcast_widths, reference_fits
    from insarcast.udf.spatial import adaptive_filter

    settings = dict(ensemble.settings)
    history, horizon = int(settings["history"]), int(settings["horizon_steps"])
    d_all = np.asarray(cube["displacement"].transpose("t", "y", "x").values, np.float32)
    valid = np.asarray(cube["valid"].values, bool) if "valid" in cube else np.ones(d_all.shape[1:], bool)
    valid &= np.isfinite(d_all).all(axis=0)
    years = bl.decimal_years(cube["t"].values)
    spacing_years = float(np.median(np.diff(years)))
    t_true = None if truth is None else np.asarray(truth.transpose("t", "y", "x").values, np.float32)
    scores = SkillScores(horizon=horizon)
    inputs = str(settings.get("inputs", "paper"))
    for a in (progress or (lambda x: x))(list(anchors)):
        a = int(a)
        products = forecast_products(cube.isel(t=slice(0, a + 1)), overlap=overlap, **settings)
        median = np.asarray(products["median"].values, np.float32)
        # the practitioner's curves plain (no hindcast needed), the adaptive one as the reference fits it
        fitted = bl.fits(d_all, years, a, horizon, history=history)
        ref = bl.fits(d_all, years, a, horizon, history=history, hindcast=bl.HINDCAST_ORIGINS, reference=True)
        forecasts = {"model": median, **{name: bl.change(bl.FITTED[name](ref if name == "adaptive" else fitted),
                                                         history) if name in bl.FITTED
                                         else bl.forecast(name, d_all, years, a, horizon, history=history)
                                         for name in METHODS_BASE if name != "adaptive_filtered"}}
        widths = hindcast_widths(ref, d_all, a, horizon=horizon, history=history, valid=valid)
        forecasts["adaptive_filtered"] = adaptive_filter(np.where(valid, forecasts["adaptive"], np.nan), widths)
        observed = d_all[a + 1: a + horizon + 1] - d_all[a]
        scores.anchors.append(a)
        reference = reference_fits(ref if hindcast_origins(inputs) else fitted, inputs)
        level = reference.adaptive()[history - 1] - d_all[a]
        scores.calibration.append({"anchor": a, **calibration_scores(
            products, cube["displacement"], a, observed[-1], valid, inputs=inputs, level=level,
            level_scale=reference.adaptive_scale(level=True), change_scale=reference.adaptive_scale())})
        scores.add("observed", "overall", forecasts, observed, valid)
        if zones is not None:
            scores.add("observed", "zones", forecasts, observed, valid & zones)
        if t_true is None:
            continue
        true_change = t_true[a + 1: a + horizon + 1] - t_true[a]
        moving = np.abs(true_change[-1]) >= MOVING_RATE * horizon * spacing_years
        scores.calibration[-1].update(truth_calibration(products, true_change[-1], valid))
        scores.add("truth", "overall", forecasts, true_change, valid)
        if zones is not None:
            scores.add("truth", "zones", forecasts, true_change, valid & zones)
        scores.add("truth", "moving", forecasts, true_change, valid & moving)
        classes = np.asarray(products["class"].values)
        # what moves against its surroundings: the annual cycle and a broad bowl move every pixel alike
        ok_t = valid & np.isfinite(true_change[-1])
        local = np.abs(true_change[-1] - np.median(true_change[-1][ok_t])) >= MOVING_RATE * horizon * spacing_years
        row = {"anchor": a, **map_scores(median[-1], classes, true_change[-1], valid, zones, local & ok_t)}
        # the same for the adaptive baseline, and for it fitted to the noise-free truth: what perfect
        # observations would let the method find (the ceiling of its ranking)
        truth_fit = bl.change(bl.fits(t_true, years, a, horizon, history=history,
                                      hindcast=bl.HINDCAST_ORIGINS, reference=True).adaptive(), history)[-1]
        for label, layer in (("adaptive", forecasts["adaptive"][-1]),
                             ("adaptive_filtered", forecasts["adaptive_filtered"][-1]), ("truth_fit", truth_fit)):
            own = map_scores(layer, quantile_classes(layer, valid), true_change[-1], valid, zones, local & ok_t)
            row.update({f"{k}_{label}": own[k] for k in ("recall_top5", "precision_top15", "recall_moving")
                        if k in own})
        size = np.abs(true_change[-1][ok_t])
        if size.size:
            row["true_q85_mm"], row["true_q95_mm"] = (float(v) for v in np.quantile(size, [0.85, 0.95]))
        scores.maps.append(row)
    return scores


def calibration_scores(products: xr.Dataset, displacement: xr.DataArray, anchor: int, observed: np.ndarray,
                       valid: np.ndarray, *, inputs: str, level: np.ndarray,
                       level_scale: np.ndarray | None = None,
                       change_scale: np.ndarray | None = None) -> dict[str, float]:
    """One origin's calibration sums (see :meth:`SkillScores.calibration_table`): the members at the
    products' horizon, their thresholds, the observation noise up to ``anchor`` and the observed
    change ``observed (y, x)`` at that horizon; ``level_scale (F, y, x)``: the standard error of the
    reference's level at each step (:func:`insarcast.report.calibration.observation_predictive`),
    widened by what the products' ``forecast_scale`` adds to ``change_scale (F, y, x)``, the fit's own
    error of the change (:func:`insarcast.report.calibration.with_departure`), when both are given."""
    from . import calibration as cal

    h = int(products.attrs["horizon"])
    if level_scale is not None and change_scale is not None and "forecast_scale" in products:
        level_scale = cal.with_departure(level_scale, change_scale, products["forecast_scale"].values)
    members = np.asarray(products["forecast"].transpose("member", "horizon", "y", "x").values[:, h - 1], np.float64)
    sigma = cal.observation_sigma(displacement, anchor)
    centre, scale = cal.observation_predictive(members, sigma, inputs=inputs, level=level,
                                               level_scale=None if level_scale is None else level_scale[h - 1])
    u = cal.pit(centre, scale, observed)
    ok = valid & np.isfinite(u)
    out = {"pixels": int(ok.sum()), "pit_inside": int(((u[ok] >= 0.1) & (u[ok] <= 0.9)).sum())}
    for tau in CALIBRATION_LEVELS:
        p = cal.noisy_exceedance(centre, scale, float(products.attrs[f"q{tau}"]))[ok]
        o = (np.abs(observed[ok]) >= float(products.attrs[f"q{tau}"])).astype(np.float64)
        base = float(o.mean()) if o.size else math.nan
        out.update({f"brier_{tau}": float(((p - o) ** 2).mean()) if o.size else math.nan,
                    f"reference_{tau}": base * (1 - base), f"base_rate_{tau}": base,
                    f"mean_p_{tau}": float(p.mean()) if o.size else math.nan})
    return out


def _forecast_scale(products: xr.Dataset) -> np.ndarray | None:
    """The products' ``forecast_scale`` (y, x) at their horizon, or None (paper ensembles)."""
    if "forecast_scale" not in products:
        return None
    return np.asarray(products["forecast_scale"].sel(horizon=int(products.attrs["horizon"])).values, np.float64)


def truth_calibration(products: xr.Dataset, true_change: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """How the products' own probabilities fare against the noise-free truth at their horizon: the
    PIT of the true change under the mixture ``N(d_k, s^2)`` (s: ``forecast_scale``, a member's vote
    where 0) and the Brier scores of P85/P95/P99 with the origin's climatology."""
    from insarcast.udf.products import normal_cdf

    h = int(products.attrs["horizon"])
    members = np.asarray(products["forecast"].transpose("member", "horizon", "y", "x").values[:, h - 1], np.float64)
    s = _forecast_scale(products)
    s = np.zeros(members.shape[1:]) if s is None else np.nan_to_num(s)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(s > 0, normal_cdf((true_change - members) / np.where(s > 0, s, 1.0)),
                     (members <= true_change).astype(np.float64)).mean(axis=0)
    ok = valid & np.isfinite(u) & np.isfinite(members).all(axis=0)
    out = {"truth_pixels": int(ok.sum()), "truth_pit_inside": int(((u[ok] >= 0.1) & (u[ok] <= 0.9)).sum())}
    for tau in CALIBRATION_LEVELS:
        p = np.asarray(products[f"p{tau}"].values, np.float64)[ok]
        o = (np.abs(true_change[ok]) >= float(products.attrs[f"q{tau}"])).astype(np.float64)
        base = float(o.mean()) if o.size else math.nan
        out[f"truth_brier_{tau}"] = float(((p - o) ** 2).mean()) if o.size else math.nan
        out[f"truth_reference_{tau}"] = base * (1 - base)
    return out


def seam_ratio(layer: np.ndarray, *, patch: int, overlap: int, offset_y: int = 0, offset_x: int = 0) -> float:
    """How much a map (y, x) changes where the model tiles meet compared with elsewhere: the mean
    absolute difference between neighbouring pixels inside the tiles' overlap bands (tiles start at
    global index ``j S``, stride ``S = P - overlap``; the blend moves from one tile to the next over
    the differences whose second pixel has global index ``j S .. j S + overlap``), along rows and
    columns, over that mean everywhere else. About 1: the map shows the ground; well above 1: the
    tiling."""
    stride = patch - overlap
    seam, other = [], []
    for axis, offset in ((0, offset_y), (1, offset_x)):
        diff = np.abs(np.diff(np.asarray(layer, np.float64), axis=axis))
        index = (np.arange(1, layer.shape[axis]) + offset) % stride
        at_edge = index <= overlap
        take = (lambda m: diff[m]) if axis == 0 else (lambda m: diff[:, m])
        seam.append(take(at_edge).ravel())
        other.append(take(~at_edge).ravel())
    seam, other = np.concatenate(seam), np.concatenate(other)
    seam, other = seam[np.isfinite(seam)], other[np.isfinite(other)]
    if seam.size == 0 or other.size == 0 or other.mean() == 0:
        return math.nan
    return float(seam.mean() / other.mean())
