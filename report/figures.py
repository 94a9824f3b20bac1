"""The report's figures (matplotlib, Agg, imported lazily). Each function returns a Figure drawn
from the arrays and tables it is given; :func:`png_bytes` renders it."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from insarcast.errors import MissingDependencyError

from .tables import CLASS_NAMES, LEVEL_NAMES, TIERS

DPI = 110
CLASS_COLOURS = ("#ffffb2", "#fecc5c", "#fd8d3c", "#e31a1c")
# Bivariate palette (rows: susceptibility low -> high, columns: uncertainty low -> high).
BIVARIATE_COLOURS = (("#e8e8e8", "#ace4e4", "#5ac8c8"),
                     ("#dfb0d6", "#a5add3", "#5698b9"),
                     ("#be64ac", "#8c62aa", "#3b4994"))
TIER_COLOURS = ("#d7191c", "#fdae61", "#ffffbf", "#abd9e9")
OVERLAY_COLOURS = ("#b2182b", "#ef8a62", "#67a9cf", "#f7f7f7")
MINE_STYLE = {"color": "black", "linewidth": 1.2}
FAULT_STYLE = {"color": "red", "linewidth": 1.6, "linestyle": "--"}


def matplotlib_figure():
    """A factory of Agg figures with constrained layout; MissingDependencyError without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError("the report's figures need matplotlib, which is not installed: "
                                     "pip install 'insarcast[report]' (or 'matplotlib>=3.8')") from exc

    def figure(**kwargs):
        fig = Figure(layout="constrained", **kwargs)
        FigureCanvasAgg(fig)
        return fig
    return figure


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- maps

class MapGrid:
    """Pixel-centre coordinates (m) of a north-up grid and its extent in km for imshow."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x = np.asarray(x, np.float64)
        self.y = np.asarray(y, np.float64)
        dx = abs(self.x[1] - self.x[0]) if len(self.x) > 1 else 1.0
        dy = abs(self.y[1] - self.y[0]) if len(self.y) > 1 else 1.0
        left, right = self.x.min() - dx / 2, self.x.max() + dx / 2
        bottom, top = self.y.min() - dy / 2, self.y.max() + dy / 2
        self.extent = (left / 1e3, right / 1e3, bottom / 1e3, top / 1e3)
        self.flip = len(self.y) > 1 and self.y[1] > self.y[0]     # imshow wants north up

    def image(self, data: np.ndarray) -> np.ndarray:
        return data[::-1] if self.flip else data


def _draw_zones(ax, zones, extent) -> None:
    if zones is None:
        return
    for f in zones.features:
        style = MINE_STYLE if f.kind == "mine" else FAULT_STYLE
        for part in f.parts:
            ax.plot(part[:, 0] / 1e3, part[:, 1] / 1e3, **style)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])


def _map(ax, grid: MapGrid, data, *, zones=None, title: str = "", **kwargs):
    im = ax.imshow(grid.image(data), extent=grid.extent, origin="upper", interpolation="nearest", **kwargs)
    _draw_zones(ax, zones, grid.extent)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("easting (km)", fontsize=8)
    ax.set_ylabel("northing (km)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_aspect("equal")
    return im


def _zone_legend(ax, zones) -> None:
    if zones is None:
        return
    from matplotlib.lines import Line2D

    handles = []
    if zones.of("mine"):
        handles.append(Line2D([], [], label="mine outline", **MINE_STYLE))
    if zones.of("fault"):
        handles.append(Line2D([], [], label="fault trace", **FAULT_STYLE))
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.8)


def _categorical(codes: np.ndarray, n: int) -> np.ndarray:
    """Float codes for a ListedColormap: NaN where the code is outside 0..n-1 (nodata)."""
    out = codes.astype(np.float64)
    out[(codes < 0) | (codes >= n)] = np.nan
    return out


def _listed(colours):
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(list(colours))
    cmap.set_bad((1, 1, 1, 0))
    return cmap, BoundaryNorm(np.arange(len(colours) + 1) - 0.5, len(colours))


def _class_map(fig, ax, grid: MapGrid, codes, colours, labels, *, title: str, zones=None, shrink: float = 0.85,
               fontsize: int = 8):
    """A map of integer codes 0..n-1 (anything else is nodata) with one colour and one colour-bar
    label per code."""
    cmap, norm = _listed(colours)
    im = _map(ax, grid, _categorical(codes.astype(np.int16), len(colours)), zones=zones, cmap=cmap, norm=norm,
              title=title)
    bar = fig.colorbar(im, ax=ax, ticks=range(len(colours)), shrink=shrink)
    bar.ax.set_yticklabels(list(labels), fontsize=fontsize)
    return im


def susceptibility_figure(grid: MapGrid, cls, confidence, std, rank_variance, zones=None):
    """Figure 7: (a) susceptibility class, (b) class confidence, (c) std of |d_k|, (d) rank variance."""
    fig = matplotlib_figure()(figsize=(11, 8.5))
    axes = fig.subplots(2, 2).ravel()
    _class_map(fig, axes[0], grid, cls, CLASS_COLOURS, [c.capitalize() for c in CLASS_NAMES],
               title="(a) susceptibility class of |median|", zones=zones, shrink=0.8)
    _zone_legend(axes[0], zones)
    for ax, data, title, cm, label in (
            (axes[1], confidence, "(b) class confidence (mass of the assigned class)", "viridis", "probability"),
            (axes[2], std, "(c) std of |d_k| over members", "magma_r", "mm"),
            (axes[3], rank_variance, "(d) rank variance of the member classes", "cividis", "class²")):
        im = _map(ax, grid, data, zones=zones, cmap=cm, title=title)
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    return fig


def bivariate_figure(grid: MapGrid, biv, table: pd.DataFrame, zones=None):
    """Figure 8: the bivariate map and its 3 x 3 legend (susceptibility up, uncertainty right), each
    legend cell printed with its share of the valid pixels (from ``table``)."""
    fig = matplotlib_figure()(figsize=(11, 5.8))
    gs = fig.add_gridspec(1, 2, width_ratios=(3.2, 1))
    ax = fig.add_subplot(gs[0])
    colours = [BIVARIATE_COLOURS[s][u] for s in range(3) for u in range(3)]
    cmap, norm = _listed(colours)
    _map(ax, grid, _categorical(biv.astype(np.int16), 9), zones=zones, cmap=cmap, norm=norm,
         title="susceptibility × uncertainty (std tercile)")
    _zone_legend(ax, zones)
    leg = fig.add_subplot(gs[1])
    shares = dict(zip(table["code"], table["share"]))
    for s in range(3):
        for u in range(3):
            leg.add_patch(_rect((u, s), BIVARIATE_COLOURS[s][u]))
            share = shares.get(3 * s + u, math.nan)
            text = "–" if not np.isfinite(share) else f"{100 * share:.1f} %"
            leg.text(u + 0.5, s + 0.5, text, ha="center", va="center", fontsize=8,
                     color="white" if (s == 2 and u > 0) or (s == 1 and u == 2) else "black")
    leg.set_xlim(0, 3)
    leg.set_ylim(0, 3)
    leg.set_aspect("equal")
    leg.set_xticks([0.5, 1.5, 2.5], [n.capitalize() for n in LEVEL_NAMES], fontsize=8)
    leg.set_yticks([0.5, 1.5, 2.5], ["Low", "Medium", "High+"], fontsize=8)
    leg.set_xlabel("uncertainty (std tercile) →", fontsize=9)
    leg.set_ylabel("susceptibility →", fontsize=9)
    leg.set_title("legend (share of valid pixels)", fontsize=9)
    return fig


def _rect(xy, colour):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, 1, 1, facecolor=colour, edgecolor="white", linewidth=1.5)


def exceedance_figure(grid: MapGrid, p85, p95, p99, zones=None):
    """Figure 11: the exceedance probabilities P85, P95, P99."""
    fig = matplotlib_figure()(figsize=(14, 4.6))
    axes = fig.subplots(1, 3)
    for ax, data, name in zip(axes, (p85, p95, p99), ("P85", "P95", "P99")):
        im = _map(ax, grid, data, zones=zones, cmap="YlOrRd", vmin=0, vmax=1, title=f"{name}: share of members "
                                                                                     f"with |d_k| ≥ Q{name[1:]}")
    fig.colorbar(im, ax=axes, shrink=0.8, label="probability")
    return fig


def _symmetric_limit(values: np.ndarray) -> float:
    v = np.abs(values[np.isfinite(values)])
    limit = float(np.quantile(v, 0.99)) if v.size else 1.0
    return limit if limit > 0 else 1.0


def residual_map_figure(grid: MapGrid, residual, zones=None):
    """Figure 9a: signed residual (forecast − observed; red over-, blue underestimation)."""
    fig = matplotlib_figure()(figsize=(7.5, 5.6))
    ax = fig.subplots()
    lim = _symmetric_limit(residual)
    im = _map(ax, grid, residual, zones=zones, cmap="RdBu_r", vmin=-lim, vmax=lim,
              title="signed residual: forecast − observed")
    fig.colorbar(im, ax=ax, shrink=0.85, label="mm")
    _zone_legend(ax, zones)
    return fig


def qq_figure(p, z, q, fits: pd.DataFrame, tails: pd.DataFrame):
    """Figure 9b: Q-Q plot of the residuals with the normal reference, OLS and Theil-Sen lines, the
    tail quantiles as dashed grey lines, and hollow markers at the extreme tails (<= Q1, >= Q99)."""
    fig = matplotlib_figure()(figsize=(7.5, 5.6))
    ax = fig.subplots()
    lows = tails.loc[tails["level"] == tails["level"].min(), "residual_mm"]
    highs = tails.loc[tails["level"] == tails["level"].max(), "residual_mm"]
    lo = float(lows.iloc[0]) if len(lows) else -np.inf
    hi = float(highs.iloc[0]) if len(highs) else np.inf
    extreme = (q <= lo) | (q >= hi)
    ax.scatter(z[~extreme], q[~extreme], s=6, color="#4d4d4d", label="residual quantiles", zorder=3)
    ax.scatter(z[extreme], q[extreme], s=22, facecolors="none", edgecolors="#b2182b",
               label="extreme tails (≤ Q1, ≥ Q99)", zorder=4)
    zz = np.array([z.min(), z.max()]) if z.size else np.array([-3.0, 3.0])
    styles = {"normal": ("k", "-", "normal reference"), "ols": ("#1b9e77", "--", "OLS fit"),
              "theil_sen": ("#d95f02", "-.", "robust fit (Theil-Sen)")}
    for row in fits.itertuples():
        colour, ls, label = styles.get(row.line, ("grey", ":", row.line))
        ax.plot(zz, row.intercept_mm + row.slope_mm * zz, color=colour, linestyle=ls, linewidth=1.4,
                label=f"{label}: {row.intercept_mm:.3g} + {row.slope_mm:.3g} z")
    for row in tails.itertuples():
        if np.isfinite(row.residual_mm):
            ax.axhline(row.residual_mm, color="grey", linestyle="--", linewidth=0.7)
            ax.text(zz[0], row.residual_mm, f" {row.quantile}", fontsize=7, color="grey", va="bottom")
    ax.set_xlabel("standard normal quantile z")
    ax.set_ylabel("residual quantile (mm)")
    ax.set_title("Q–Q plot of the residuals")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def abs_residual_models_figure(grid: MapGrid, panels: list[tuple[str, np.ndarray]], zones=None):
    """Figure 10: absolute residual maps side by side (one colour scale: the pooled 99th percentile)."""
    n = max(1, len(panels))
    ncols = min(n, 4)                                  # the six architectures' 12 maps: 4 per row
    nrows = -(-n // ncols)
    fig = matplotlib_figure()(figsize=(5.2 * ncols, 4.6 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    axes = axes[: max(1, len(panels))]
    pooled = np.concatenate([a[np.isfinite(a)] for _, a in panels]) if panels else np.zeros(0)
    vmax = float(np.quantile(pooled, 0.99)) if pooled.size else 1.0
    im = None
    for ax, (label, data) in zip(axes, panels):
        im = _map(ax, grid, data, zones=zones, cmap="inferno_r", vmin=0, vmax=vmax or 1.0, title=label)
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.85, label="|forecast − observed| (mm)")
    return fig


def overlay_figure(grid: MapGrid, codes, std, abs_residual, table: pd.DataFrame, correlations: pd.DataFrame,
                   zones=None):
    """Uncertainty-residual overlay: joint classes map and |residual| against std with Spearman's rho."""
    fig = matplotlib_figure()(figsize=(13, 5.4))
    ax, sc = fig.subplots(1, 2, width_ratios=(1.25, 1))
    _class_map(fig, ax, grid, codes, OVERLAY_COLOURS, table["category"],
               title="uncertainty × residual (top terciles)", zones=zones, fontsize=7)
    ok = np.isfinite(std) & np.isfinite(abs_residual)
    sc.hexbin(std[ok], abs_residual[ok], gridsize=40, mincnt=1, cmap="Greys", bins="log")
    row = correlations[correlations["x"] == "std"]
    rho = float(row["rho"].iloc[0]) if len(row) else math.nan
    sc.set_xlabel("ensemble std of |d_k| (mm)")
    sc.set_ylabel("|residual| (mm)")
    sc.set_title(f"Spearman ρ = {rho:.3g}")
    sc.grid(alpha=0.3)
    return fig


def zones_figure(table: pd.DataFrame):
    """Zone analysis: mean |residual|, mean std and the class shares per zone and distance band."""
    fig = matplotlib_figure()(figsize=(14, 4.8))
    axes = fig.subplots(1, 3)
    labels = [f"{z}\n{b}" for z, b in zip(table["zone"], table["band"])]
    x = np.arange(len(table))
    if "mean_abs_residual_mm" in table:
        axes[0].bar(x, table["mean_abs_residual_mm"], color="#b2182b")
    axes[0].set_ylabel("mean |residual| (mm)")
    if "mean_std" in table:
        axes[1].bar(x, table["mean_std"], color="#5698b9")
    axes[1].set_ylabel("mean std of |d_k| (mm)")
    bottom = np.zeros(len(table))
    for name, colour in zip(CLASS_NAMES, CLASS_COLOURS):
        v = table[f"share_{name}"].fillna(0).to_numpy(float)
        axes[2].bar(x, v, bottom=bottom, color=colour, edgecolor="grey", linewidth=0.4, label=name)
        bottom += v
    axes[2].set_ylabel("class share")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xticks(x, labels, fontsize=6, rotation=60, ha="right")
        ax.grid(axis="y", alpha=0.3)
    return fig


def reliability_figure(reliability: pd.DataFrame, brier: pd.DataFrame, *, title: str = "reliability diagram"):
    """Reliability diagram (observed frequency against forecast probability, per threshold, the
    diagonal dashed) and the number of pixels per probability level."""
    fig = matplotlib_figure()(figsize=(12, 5))
    ax, hist = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1], color="k", linestyle="--", linewidth=1, label="perfect reliability")
    colours = {"P85": "#fd8d3c", "P95": "#e31a1c", "P99": "#800026"}
    width = 0.8 / max(1, reliability["level"].nunique() * 3)
    for i, (name, part) in enumerate(reliability.groupby("threshold", sort=False)):
        bs = brier.loc[brier["threshold"] == name, "brier"]
        label = f"{name} (Brier {float(bs.iloc[0]):.3g})" if len(bs) else name
        keep = part["pixels"] > 0
        ax.plot(part.loc[keep, "mean_probability"], part.loc[keep, "observed_frequency"], marker="o",
                color=colours.get(name, None), label=label)
        hist.bar(part["forecast_probability"] + (i - 1) * width, part["pixels"], width=width,
                 color=colours.get(name, None), label=name)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("forecast exceedance probability")
    ax.set_ylabel("observed exceedance frequency")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    hist.set_yscale("symlog")
    hist.set_xlabel("forecast exceedance probability")
    hist.set_ylabel("pixels")
    hist.set_title("sharpness")
    hist.legend(fontsize=8)
    return fig


def pit_figure(pit: pd.DataFrame):
    """PIT histogram of the observed change under the noisy ensemble (flat at 1 / bins when calibrated)."""
    fig = matplotlib_figure()(figsize=(7, 4.5))
    ax = fig.subplots()
    bins = pit[pit["bin"] != "central_80"]
    ax.bar((bins["bin_low"] + bins["bin_high"]) / 2, bins["frequency"], width=bins["bin_high"] - bins["bin_low"],
           color="#6baed6", edgecolor="white", label="observed")
    ax.axhline(float(bins["nominal"].iloc[0]), color="k", linestyle="--", linewidth=1, label="calibrated")
    central = pit.loc[pit["bin"] == "central_80", "frequency"]
    ax.set_title(f"PIT with observation noise; central 80 %: {float(central.iloc[0]):.0%} of observations")
    ax.set_xlabel("PIT of the observed change")
    ax.set_ylabel("share of pixels")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    return fig


def coverage_figure(grid: MapGrid, per_pixel, table: pd.DataFrame, zones=None):
    """Coverage: the share of horizon steps observed within the members' range per pixel, and per
    step the observed coverage of both intervals against their nominal values."""
    fig = matplotlib_figure()(figsize=(13, 5))
    ax, bars = fig.subplots(1, 2, width_ratios=(1.2, 1))
    im = _map(ax, grid, per_pixel, zones=zones, cmap="RdYlGn", vmin=0, vmax=1,
              title="share of steps within the members' range")
    fig.colorbar(im, ax=ax, shrink=0.85)
    steps = table[table["horizon"].astype(str) != "all"]
    x = np.arange(len(steps))
    bars.bar(x - 0.2, steps["within_range"], width=0.4, color="#2b8cbe", label="within min..max")
    bars.bar(x + 0.2, steps["within_10_90"], width=0.4, color="#a6bddb", label="within 10–90 %")
    if len(steps):
        bars.axhline(float(steps["nominal_range"].iloc[0]), color="#2b8cbe", linestyle="--", linewidth=1,
                     label="nominal (K−1)/(K+1)")
        bars.axhline(0.8, color="#a6bddb", linestyle=":", linewidth=1.2, label="nominal 0.8")
    bars.set_xticks(x, [f"h{h}" for h in steps["horizon"]])
    bars.set_ylim(0, 1.05)
    bars.set_ylabel("share of observations covered")
    bars.set_title("coverage of the ensemble spread")
    bars.legend(fontsize=8)
    bars.grid(axis="y", alpha=0.3)
    return fig


def tiers_figure(grid: MapGrid, codes, table: pd.DataFrame, zones=None):
    """The decision tiers map and their areas."""
    fig = matplotlib_figure()(figsize=(13, 5.2))
    ax, bars = fig.subplots(1, 2, width_ratios=(1.3, 1))
    _class_map(fig, ax, grid, codes, TIER_COLOURS, [t[0] for t in TIERS], title="decision tiers", zones=zones)
    _zone_legend(ax, zones)
    y = np.arange(len(table))
    bars.barh(y, table["area_km2"], color=list(TIER_COLOURS), edgecolor="grey")
    bars.set_yticks(y, list(table["tier"]))
    bars.invert_yaxis()
    bars.set_xlabel("area (km²)")
    bars.set_title("area per tier")
    for yi, area in zip(y, table["area_km2"]):
        bars.text(area, yi, f" {area:.3g}", va="center", fontsize=8)
    bars.grid(axis="x", alpha=0.3)
    return fig


def skill_figure(table: pd.DataFrame):
    """Hindcast RMSE and MAE per horizon step for the ensemble, the baselines and the single models."""
    fig = matplotlib_figure()(figsize=(12, 4.4))
    axes = fig.subplots(1, 2)
    steps = table[table["horizon"].astype(str) != "all"]
    for name, part in steps.groupby("source", sort=False):
        h = part["horizon"].astype(int)
        bold = name == "ensemble median"
        for ax, metric in zip(axes, ("rmse", "mae")):
            ax.plot(h, part[metric], marker="o", linewidth=2.2 if bold else 1, label=name,
                    color="k" if bold else None)
    for ax, metric in zip(axes, ("RMSE (mm)", "MAE (mm)")):
        ax.set_xlabel("horizon step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    return fig


def skill_horizon_figure(table: pd.DataFrame):
    """RMSE per horizon step over many origins, one panel per target (truth, observed), overall."""
    targets = [t for t in ("truth", "observed") if t in set(table["target"])]
    fig = matplotlib_figure()(figsize=(6 * max(1, len(targets)), 4.4))
    axes = np.atleast_1d(fig.subplots(1, max(1, len(targets))))
    for ax, target in zip(axes, targets):
        part = table[table["target"] == target]
        for column in [c for c in part.columns if c.startswith("rmse_")]:
            name = column.removeprefix("rmse_")
            bold = name == "model"
            ax.plot(part["horizon"], part[column], marker="o", linewidth=2.2 if bold else 1,
                    label="ensemble median" if bold else name, color="k" if bold else None)
        ax.set_title(f"against the {target} (overall)")
        ax.set_xlabel("horizon step")
        ax.set_ylabel("RMSE (mm)")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    return fig
