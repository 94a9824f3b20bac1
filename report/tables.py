"""The report's tables: compare metrics, classes, the bivariate cells, zones and tiers.

Every number the page shows comes from one of these DataFrames, and each is written as a CSV file
(:func:`write_csv`); :func:`fmt` is the one formatter of the page, so a table's cell and the CSV
value it came from correspond exactly (the page also keeps the full value in ``data-value``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from insarcast.contract import ARCHS, CLASS_NAMES, LEVEL_NAMES, NODATA  # noqa: F401  (re-exported)
from insarcast.errors import InputError

from .zones import band_labels

COMPARE_TABLES = ("runs", "summary", "welch", "baselines", "histories")
COMPARE_FIGURES = ("violins", "forest", "histories")
METRICS = ("rmse", "mae", "r2")

TIERS = (
    ("intervention", "class >= high and uncertainty tercile low",
     "robust high susceptibility: priority for engineering intervention"),
    ("monitoring", "class >= high and uncertainty tercile medium or high",
     "unstable high susceptibility: field verification and denser monitoring before any reinforcement"),
    ("watch", "class medium",
     "threshold-sensitive: periodic review, local densification of observations"),
    ("routine", "class low",
     "routine management with low-frequency inspection"),
)


def fmt(value) -> str:
    """The page's text for a table value: integers in full, floats with 4 significant digits,
    NaN / None / NA as an en dash, booleans and strings as they are."""
    if value is None or value is pd.NA:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v == int(v) and 1e4 <= abs(v) < 1e15:        # counts stored as floats (n of compare)
            return str(int(v))
        return f"{v:.4g}"
    return str(value)


def raw(value) -> str:
    """The exact value behind a cell (``data-value``): repr of floats, str otherwise, '' for NA."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """The CSV of a table: no index, floats written exactly (shortest round-trip repr)."""
    frame.to_csv(path, index=False, lineterminator="\n")


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A table back from its CSV, floats exact."""
    return pd.read_csv(path, float_precision="round_trip", keep_default_na=True)


# --------------------------------------------------------------------------------------- compare

def read_compare(compare_dir: str | os.PathLike) -> tuple[dict[str, pd.DataFrame], dict[str, Path], list[str]]:
    """The tables and figures of ``insarcast compare``: summary, welch and baselines are required,
    runs and histories optional; figures that are missing are noted."""
    root = Path(compare_dir)
    if not root.is_dir():
        raise InputError("compare directory not found (run `insarcast compare` first)", path=root)
    tables, notes = {}, []
    for name in COMPARE_TABLES:
        path = root / f"{name}.csv"
        if not path.exists():
            if name in ("summary", "welch", "baselines"):
                raise InputError(f"missing {name}.csv: not an `insarcast compare` output directory", path=path)
            notes.append(f"compare: {name}.csv not found")
            continue
        try:
            tables[name] = read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f"not a readable CSV: {exc}", path=path) from None
    required = {"summary": ["arch", "strategy", "metric", "mean", "std", "n"],
                "baselines": ["baseline", "metric", "mean", "std", "n_runs", "consistent"],
                "welch": ["arch", "metric", "diff", "ci_low", "ci_high", "p_adj", "significant"]}
    for name, columns in required.items():
        for column in columns:
            if column not in tables[name].columns:
                raise InputError("missing column", path=root / f"{name}.csv", field=column)
    figures = {}
    for name in COMPARE_FIGURES:
        path = root / f"{name}.png"
        if path.exists():
            figures[name] = path
        else:
            notes.append(f"compare: {name}.png not found (was compare run without figures?)")
    return tables, figures, notes


def _arch_order(name: str) -> tuple:
    return (ARCHS.index(name), "") if name in ARCHS else (len(ARCHS), name)


def metrics_table(summary: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture and strategy (mean and std over runs of RMSE, MAE in mm and R²),
    then one per baseline (strategy ``baseline``, its mean and std over the runs' test windows)."""
    rows = []
    archs = sorted(set(summary["arch"]), key=_arch_order)
    for arch in archs:
        for strategy in ("manual", "tpe"):
            part = summary[(summary["arch"] == arch) & (summary["strategy"] == strategy)]
            if part.empty:
                continue
            row = {"model": arch, "strategy": strategy, "runs": int(part["n"].max())}
            for metric in METRICS:
                m = part[part["metric"] == metric]
                row[f"{metric}_mean"] = float(m["mean"].iloc[0]) if len(m) else math.nan
                row[f"{metric}_std"] = float(m["std"].iloc[0]) if len(m) else math.nan
            rows.append(row)
    for name in sorted(set(baselines["baseline"])):
        part = baselines[baselines["baseline"] == name]
        row = {"model": name, "strategy": "baseline", "runs": int(part["n_runs"].max())}
        for metric in METRICS:
            m = part[part["metric"] == metric]
            row[f"{metric}_mean"] = float(m["mean"].iloc[0]) if len(m) else math.nan
            row[f"{metric}_std"] = float(m["std"].iloc[0]) if len(m) else math.nan
        rows.append(row)
    columns = ["model", "strategy", "runs"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    return pd.DataFrame(rows, columns=columns)


def welch_view(welch: pd.DataFrame) -> pd.DataFrame:
    """The Welch/BH table of compare, the columns the page shows."""
    columns = [c for c in ("arch", "metric", "n_manual", "n_tpe", "mean_manual", "mean_tpe", "diff", "ci_low",
                           "ci_high", "lb95", "lb95_relative", "p", "p_adj", "significant") if c in welch.columns]
    return welch[columns].reset_index(drop=True)


# -------------------------------------------------------------------------------------- products

def thresholds_table(products_attrs: dict, hindcast_attrs: dict | None) -> pd.DataFrame:
    names = ("q85", "q95", "q99", "std_tercile_1", "std_tercile_2")
    rows = []
    for name in names:
        p = products_attrs.get(name)
        h = None if hindcast_attrs is None else hindcast_attrs.get(name)
        rows.append({"threshold": name, "products_mm": math.nan if p is None else float(p),
                     "hindcast_mm": math.nan if h is None else float(h)})
    return pd.DataFrame(rows, columns=["threshold", "products_mm", "hindcast_mm"])


def class_table(cls: np.ndarray, layers: dict[str, np.ndarray], pixel_area_km2: float) -> pd.DataFrame:
    """Per susceptibility class: pixels, area, share, and the mean of each layer (confidence, std,
    rank variance) over the class."""
    valid = cls != NODATA
    total = int(valid.sum())
    rows = []
    for code, name in enumerate(CLASS_NAMES):
        sel = cls == code
        n = int(sel.sum())
        row = {"class": name, "code": code, "pixels": n, "area_km2": n * pixel_area_km2,
               "share": n / total if total else math.nan}
        for key, layer in layers.items():
            v = layer[sel]
            v = v[np.isfinite(v)]
            row[f"mean_{key}"] = float(v.mean()) if v.size else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def bivariate_table(biv: np.ndarray, pixel_area_km2: float) -> pd.DataFrame:
    """The nine cells of the bivariate map: code 3 s + u, susceptibility s, uncertainty u, pixels,
    area, share (of the valid pixels). The legend of Figure 8 prints these shares."""
    valid = biv != NODATA
    total = int(valid.sum())
    rows = []
    for s, sname in enumerate(LEVEL_NAMES):
        for u, uname in enumerate(LEVEL_NAMES):
            code = 3 * s + u
            n = int((biv == code).sum())
            rows.append({"code": code, "susceptibility": sname if s < 2 else "high or highest",
                         "uncertainty": uname, "pixels": n, "area_km2": n * pixel_area_km2,
                         "share": n / total if total else math.nan})
    return pd.DataFrame(rows, columns=["code", "susceptibility", "uncertainty", "pixels", "area_km2", "share"])


def tier_codes(cls: np.ndarray, biv: np.ndarray) -> np.ndarray:
    """Tier of each pixel, int8: 0 intervention, 1 monitoring, 2 watch, 3 routine, -1 nodata."""
    valid = (cls != NODATA) & (biv != NODATA)
    u = np.where(valid, biv % 3, 0)
    codes = np.full(cls.shape, -1, np.int8)
    high = valid & (cls >= 2)
    codes[high & (u == 0)] = 0
    codes[high & (u > 0)] = 1
    codes[valid & (cls == 1)] = 2
    codes[valid & (cls == 0)] = 3
    return codes


def tier_table(codes: np.ndarray, pixel_area_km2: float) -> pd.DataFrame:
    total = int((codes >= 0).sum())
    rows = []
    for code, (name, rule, action) in enumerate(TIERS):
        n = int((codes == code).sum())
        rows.append({"tier": name, "rule": rule, "action": action, "pixels": n, "area_km2": n * pixel_area_km2,
                     "share": n / total if total else math.nan})
    return pd.DataFrame(rows, columns=["tier", "rule", "action", "pixels", "area_km2", "share"])


# ------------------------------------------------------------------------------------------ zones


def zone_table(distances: dict[str, np.ndarray], valid: np.ndarray, cls: np.ndarray,
               layers: dict[str, np.ndarray], pixel_area_km2: float, bands=None) -> pd.DataFrame:
    """Per zone kind (fault, mine) and distance band, and for the rest (beyond the last band edge of
    every zone) and all pixels: pixels, area, the residual pixels, mean |residual|, RMSE and bias of
    the residual, mean std / rank variance / confidence / P85 / P95 / P99, and the class shares.
    Mines get an ``inside`` band (distance 0) before the distance bands."""
    from .zones import DEFAULT_BANDS

    labels = band_labels(DEFAULT_BANDS if bands is None else bands)
    last = labels[-1][1]
    groups = []
    for kind in ("fault", "mine"):
        d = distances.get(kind)
        if d is None or not np.isfinite(d).any():
            continue
        if kind == "mine":
            groups.append((kind, "inside", 0.0, 0.0, valid & (d == 0)))
        for label, lo, hi in labels:
            above = (d > lo) if (kind == "mine" and lo == 0) else (d >= lo)     # mines: inside apart
            groups.append((kind, label, lo, hi, valid & above & (d < hi)))
    near = np.zeros(valid.shape, bool)
    for kind in ("fault", "mine"):
        d = distances.get(kind)
        if d is not None:
            near |= d < last
    groups.append(("rest", f"> {last:g} m from every zone", last, math.inf, valid & ~near))
    groups.append(("all", "every valid pixel", 0.0, math.inf, valid))

    rows = []
    for zone, band, lo, hi, sel in groups:
        n = int(sel.sum())
        row = {"zone": zone, "band": band, "from_m": lo, "to_m": hi, "pixels": n, "area_km2": n * pixel_area_km2}
        res = layers.get("residual")
        if res is not None:
            r = res[sel]
            r = r[np.isfinite(r)].astype(np.float64)
            row["residual_pixels"] = int(r.size)
            row["mean_abs_residual_mm"] = float(np.abs(r).mean()) if r.size else math.nan
            row["rmse_mm"] = float(np.sqrt((r * r).mean())) if r.size else math.nan
            row["bias_mm"] = float(r.mean()) if r.size else math.nan
        for key in ("std", "rank_variance", "confidence", "p85", "p95", "p99"):
            layer = layers.get(key)
            if layer is None:
                continue
            v = layer[sel]
            v = v[np.isfinite(v)]
            row[f"mean_{key}"] = float(v.mean()) if v.size else math.nan
        for code, name in enumerate(CLASS_NAMES):
            row[f"share_{name}"] = float((cls[sel] == code).mean()) if n else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def key_numbers(entries: list[tuple[str, float, str, str]]) -> pd.DataFrame:
    """The numbers quoted in the page's text: name, value, unit, description."""
    return pd.DataFrame([{"name": n, "value": float(v), "unit": u, "description": d} for n, v, u, d in entries],
                        columns=["name", "value", "unit", "description"])
