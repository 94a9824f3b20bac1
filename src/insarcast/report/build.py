"""The report: one self-contained HTML page with its figures (PNG) and tables (CSV).

:func:`build_report` reads the cube, the products of ``insarcast forecast``, the tables and figures of
``insarcast compare`` and the zones, and writes into ``out`` (all together or nothing):

    index.html          every figure embedded, every table rendered from its CSV
    figures/NAME.png    the figures
    tables/NAME.csv     the tables; key_numbers.csv holds the numbers quoted in the text

The products look beyond the cube's last epoch, where nothing is observed; the residual diagnostics
(the paper's section 5) therefore come from a *hindcast*: the same ensemble, same tiling, run on the
cube cut F epochs before its end, so that the F forecast epochs are the cube's last F, in the test
period of the 80/10/10 split (:mod:`insarcast.report.hindcast`). Residual = forecast - observed at the
products' horizon.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from insarcast import baselines as bl
from insarcast.errors import InputError, MissingDependencyError
from insarcast.fsutil import atomic_path

from . import calibration, figures, residuals, tables
from .hindcast import SPLIT, best_models, hindcast, model_forecast
from .html import Numbers, Section, esc, figure_html, note_html, page_html, table_html
from .zones import DEFAULT_BANDS, read_zones, zone_distances

SECTIONS = ("worth", "overview", "metrics", "susceptibility", "bivariate", "skill", "residuals", "zones", "calibration",
            "tiers", "provenance")
COMPARE_CAPTIONS = {
    "violins": "Figure 3: test RMSE, MAE and R² of the runs per architecture, manual and TPE (from compare).",
    "forest": "Figure 4: mean improvement of TPE over manual with 95 % Welch CI, BH-adjusted p and one-sided "
              "lower bound (from compare).",
    "histories": "Figure 5: best-so-far validation loss per trial, each seed dashed, their mean solid "
                 "(from compare).",
}
PAPER_ARCH = "resnet-transformer"
SKILL_ORIGINS = 6            # forecast origins of the skill table: about one per horizon over the test period
TEST_START = SPLIT[0] + SPLIT[1]                # the test period's first epoch, as a share of the epochs


def _open_products(path) -> xr.Dataset:
    path = Path(path)
    if not path.exists():
        raise InputError("no such products store (run `insarcast forecast` first)", path=path)
    try:
        ds = xr.open_zarr(path)
    except Exception as exc:  # zarr raises many types for a damaged store
        raise InputError(f"not a readable Zarr store ({exc})", path=path) from exc
    for name in ("median", "class", "bivariate", "std", "confidence", "rank_variance", "p85", "p95", "p99"):
        if name not in ds:
            raise InputError("not an `insarcast forecast` store: variable missing", path=path, field=name)
    return ds


def _check_same_grid(cube: xr.Dataset, products: xr.Dataset, *, path) -> None:
    for axis in ("x", "y"):
        a, b = cube[axis].values, products[axis].values
        if a.shape != b.shape or not np.allclose(a, b):
            raise InputError(f"the products' {axis} coordinate ({b.size} cells from {b[0]:g}) differs from the "
                             f"cube's ({a.size} from {a[0]:g}): products of another cube?", path=path, field=axis)


def _layer(ds: xr.Dataset, name: str) -> np.ndarray:
    return np.asarray(ds[name].transpose("y", "x").values)


def _float(ds: xr.Dataset, name: str) -> np.ndarray:
    return _layer(ds, name).astype(np.float64)


def _png(stage: Path, name: str, fig, store: dict[str, bytes]) -> None:
    data = figures.png_bytes(fig)
    fig.clf()
    (stage / "figures" / f"{name}.png").write_bytes(data)
    store[name] = data


def build_report(*, cube, products, compare_dir, zones=None, out, tune_dir=None, ensemble=None, anchor=None,
                 bands=DEFAULT_BANDS, browser_check: bool = False, progress: bool = True, truth=None,
                 origins: int = SKILL_ORIGINS) -> Path:
    """Write the report into ``out`` and return the path of its ``index.html``.

    ``cube``: the Zarr cube the products were made from; ``products``: the Zarr store of ``insarcast
    forecast``; ``compare_dir``: the output of ``insarcast compare``; ``zones``: a GeoJSON of mine
    outlines and fault traces (or None: no zone analysis); ``tune_dir``: the ``insarcast tune``
    folder whose best manual and TPE ResNet+Transformer models get the side-by-side residual maps
    (default: the folder the compare runs came from; skipped without torch); ``ensemble``: the
    ensemble folder (default: the one recorded in the products); ``anchor``: the hindcast's anchor
    epoch (default: F epochs before the end). ``truth``: the noise-free cube of a synthetic scenario
    (``truth.zarr``), scored against beside the observations; ``origins``: forecast origins of the
    skill table (:mod:`insarcast.report.skill`). ``browser_check``: load the page in headless
    Chromium, fail on a broken image or script error, and keep ``screenshot.png``.
    """
    from insarcast.cube import open_cube

    out = Path(out)
    notes: list[str] = []

    def say(*args, **kwargs) -> None:               # progress and notes go to stderr, the result to stdout
        if progress:
            print(*args, file=sys.stderr, **kwargs)

    ds = open_cube(cube)
    prod = _open_products(products)
    _check_same_grid(ds, prod, path=products)
    if ensemble is None:
        ensemble = prod.attrs.get("ensemble_path")
        if not ensemble or not Path(ensemble).is_dir():
            raise InputError("the products do not name an existing ensemble folder: pass --ensemble",
                             path=products, field="ensemble_path")
    compare_tables, compare_figures, compare_notes = tables.read_compare(compare_dir)
    notes += compare_notes
    zone_set = None
    if zones is not None:
        zone_set = read_zones(zones, crs=ds.rio.crs.to_string())
        notes += list(zone_set.notes)
    if tune_dir is None and "runs" in compare_tables and len(compare_tables["runs"]):
        files = [Path(f) for f in compare_tables["runs"]["file"] if isinstance(f, str)]
        common = Path(os.path.commonpath([str(f.parent) for f in files])) if files else None
        tune_dir = common if common is not None and common.is_dir() else None

    x, y = ds["x"].values, ds["y"].values
    grid = figures.MapGrid(x, y)
    dx = abs(float(x[1] - x[0])) if len(x) > 1 else 100.0
    dy = abs(float(y[1] - y[0])) if len(y) > 1 else dx
    km2 = dx * dy / 1e6
    horizon = int(prod.attrs.get("horizon", prod.sizes["horizon"]))

    # ---- the forecast products
    cls = _layer(prod, "class").astype(np.uint8)
    biv = _layer(prod, "bivariate").astype(np.uint8)
    layers = {k: _float(prod, k) for k in ("confidence", "std", "rank_variance", "p85", "p95", "p99")}
    class_tab = tables.class_table(cls, {k: layers[k] for k in ("confidence", "std", "rank_variance")}, km2)
    biv_tab = tables.bivariate_table(biv, km2)
    tiers = tables.tier_codes(cls, biv)
    tier_tab = tables.tier_table(tiers, km2)

    # ---- the hindcast on the test period
    say("report: hindcast of the test period ...", flush=True)
    hc = hindcast(ds, ensemble, anchor=anchor, horizon=horizon)
    hp, observed = hc.products, np.asarray(hc.observed.values, np.float64)
    a = int(hp.attrs["anchor_index"])
    if not hp.attrs["in_test_period"]:
        notes.append(f"the hindcast's target epochs start at epoch {a + 1}, before the test period (epoch "
                     f"{hp.attrs['test_start_index']}): the residuals are not out-of-sample")
    median_hc = np.asarray(hp["median"].transpose("horizon", "y", "x").values, np.float64)
    members_hc = np.asarray(hp["forecast"].transpose("member", "horizon", "y", "x").values, np.float64)
    obs_h = observed[horizon - 1]
    residual = median_hc[horizon - 1] - obs_h
    abs_res = np.abs(residual)
    hstd = _float(hp, "std")
    hcls = _layer(hp, "class").astype(np.uint8)
    thresholds_tab = tables.thresholds_table(dict(prod.attrs), dict(hp.attrs))

    history = int(hp.attrs["history_epochs"])
    steps = int(hp.attrs["horizon_steps"])

    # ---- skill over many origins: every baseline, observations and truth (the page leads with it)
    say(f"report: skill over {origins} forecast origins ...", flush=True)
    scores = _skill_scores(ds, ensemble, truth=truth, zones=zone_set, origins=origins, history=history,
                           horizon_steps=steps)
    sources = {"ensemble median": median_hc}
    base = residuals.baseline_forecasts(ds["displacement"], ds["t"].values, a, steps, history=history)
    sources.update(base)

    # ---- best single models, manual and TPE (Figure 10)
    model_entries = []
    if tune_dir is not None:
        try:
            best = best_models(tune_dir, archs=(PAPER_ARCH,))
            for strategy in ("manual", "tpe"):
                m = best.get((PAPER_ARCH, strategy))
                if m is None:
                    notes.append(f"no {strategy} {PAPER_ARCH} model.pt below {tune_dir}: its residual map is missing")
                    continue
                say(f"report: {strategy} {PAPER_ARCH} model on the hindcast window ...", flush=True)
                fc, info = model_forecast(m.path, ds, anchor=a)
                if info["horizon"] < horizon:
                    notes.append(f"{m.path}: forecasts {info['horizon']} steps, fewer than the horizon {horizon}")
                    continue
                label = f"{PAPER_ARCH} {strategy} (best, seed {m.seed})"
                model_entries.append({"label": label, "forecast": fc[horizon - 1].astype(np.float64),
                                      "arch": m.arch, "strategy": strategy, "seed": m.seed, "trial": m.trial,
                                      "val_loss": m.val_loss, "file": str(m.path)})
                if info["horizon"] == steps:
                    sources[f"{PAPER_ARCH} {strategy}"] = fc.astype(np.float64)
        except MissingDependencyError as exc:
            notes.append(f"manual-versus-TPE residual maps skipped: {exc}")
    else:
        notes.append("no tune folder found: the manual-versus-TPE residual maps are missing")
    model_entries.append({"label": "ensemble median", "forecast": median_hc[horizon - 1], "arch": PAPER_ARCH,
                          "strategy": "ensemble", "val_loss": math.nan, "file": str(ensemble)})
    model_tab, _, model_mask = residuals.model_residual_table(model_entries, obs_h)
    panels = [(e["label"], np.where(model_mask, np.abs(e["forecast"] - obs_h), np.nan)) for e in model_entries]

    skill_tab = residuals.skill_table(observed, sources)
    summary_tab = residuals.residual_summary(residual)
    p, z, q = residuals.qq_points(residual)
    fits = residuals.qq_fits(residual)
    tails = residuals.tail_quantiles(residual, fits)
    std_high = float(hp.attrs["std_tercile_2"])
    overlay_codes, res_high, overlay_tab = residuals.overlay(hstd, abs_res, std_high=std_high, pixel_area_km2=km2)
    corr_tab = residuals.rank_correlations(abs_res, {"std": hstd, "rank_variance": _float(hp, "rank_variance"),
                                                     "confidence": _float(hp, "confidence")})

    # ---- calibration
    hthr = {tau: float(hp.attrs[f"q{tau}"]) for tau in calibration.LEVELS}
    probs = {tau: _float(hp, f"p{tau}") for tau in calibration.LEVELS}
    rel_tab, brier_tab = calibration.reliability(probs, np.abs(obs_h), hthr, members=int(hp.sizes["member"]))
    cov_tab, cov_pixel = calibration.coverage(members_hc, observed)
    # the same against what an observation is: the signal plus the noise of two epochs
    sigma = calibration.observation_sigma(ds["displacement"], a)
    centre, scale = calibration.observation_predictive(
        members_hc[:, horizon - 1], sigma, inputs=str(hp.attrs.get("inputs", "paper")),
        level=_anchor_level(ds, a, steps=steps, history=history),
        forecast_scale=hp["forecast_scale"].sel(horizon=horizon).values if "forecast_scale" in hp else None)
    noisy = {tau: calibration.noisy_exceedance(centre, scale, hthr[tau]) for tau in calibration.LEVELS}
    rel_noise_tab, brier_noise_tab = calibration.reliability(noisy, np.abs(obs_h), hthr, members=None)
    pit_tab = calibration.pit_table(calibration.pit(centre, scale, obs_h))
    calibration_origins = scores.calibration_table()

    # ---- zones
    zone_tab = None
    if zone_set is not None and zone_set.features:
        distances = zone_distances(zone_set, x, y)
        zlayers = {"residual": residual, "abs_residual": abs_res, "std": hstd,
                   **{k: _float(hp, k) for k in ("rank_variance", "confidence", "p85", "p95", "p99")}}
        zone_tab = tables.zone_table(distances, hcls != tables.NODATA, hcls, zlayers, km2, bands=bands)
    elif zone_set is not None:
        notes.append(f"{zones}: no mine or fault feature: no zone analysis")

    # ---- the numbers quoted in the text
    def skill_of(source, metric):
        row = skill_tab[(skill_tab["source"] == source) & (skill_tab["horizon"] == str(horizon))]
        return float(row[metric].iloc[0]) if len(row) else math.nan

    valid_px = int((cls != tables.NODATA).sum())
    corr_std = corr_tab.loc[corr_tab["x"] == "std", "rho"]
    brier95 = brier_tab.loc[brier_tab["threshold"] == "P95", "brier"]
    brier95_noise = brier_noise_tab.loc[brier_noise_tab["threshold"] == "P95", "brier"]
    valid_sigma = sigma[np.isfinite(obs_h) & np.isfinite(sigma)]
    cov_all = cov_tab.loc[cov_tab["horizon"] == "all"]
    high_plus = class_tab.loc[class_tab["code"] >= 2, "area_km2"].sum()
    entries = [
        ("valid_pixels", valid_px, "pixels", "valid pixels of the products"),
        ("valid_area_km2", valid_px * km2, "km²", "area of the valid pixels"),
        ("members", int(prod.attrs.get("members", prod.sizes.get("member", 0))), "", "ensemble members"),
        ("horizon", horizon, "epochs", "horizon step the products describe"),
        ("q85_mm", float(prod.attrs["q85"]), "mm", "Q85 of |median| (products)"),
        ("q95_mm", float(prod.attrs["q95"]), "mm", "Q95 of |median| (products)"),
        ("q99_mm", float(prod.attrs["q99"]), "mm", "Q99 of |median| (products)"),
        ("high_or_highest_km2", float(high_plus), "km²", "area in class High or Highest"),
        ("intervention_km2", float(tier_tab.loc[0, "area_km2"]), "km²", "area of the intervention tier"),
        ("monitoring_km2", float(tier_tab.loc[1, "area_km2"]), "km²", "area of the monitoring tier"),
        ("hindcast_rmse_mm", skill_of("ensemble median", "rmse"), "mm",
         "hindcast RMSE of the ensemble median at the horizon"),
        ("persistence_rmse_mm", skill_of("persistence", "rmse"), "mm", "hindcast RMSE of persistence"),
        ("lstsq_rmse_mm", skill_of("trend_annual", "rmse") if "trend_annual" in base else math.nan, "mm",
         "hindcast RMSE of the least-squares trend plus annual baseline"),
        ("linear_rmse_mm", skill_of("linear", "rmse"), "mm", "hindcast RMSE of the window's line"),
        ("adaptive_rmse_mm", skill_of("adaptive", "rmse"), "mm", "hindcast RMSE of the adaptive baseline"),
        ("residual_bias_mm", float(summary_tab.loc[summary_tab["statistic"] == "mean", "value"].iloc[0]), "mm",
         "mean residual (forecast - observed)"),
        ("rho_std_residual", float(corr_std.iloc[0]) if len(corr_std) else math.nan, "",
         "Spearman correlation of std with |residual|"),
        ("brier_p95", float(brier95.iloc[0]) if len(brier95) else math.nan, "", "Brier score of P95"),
        ("coverage_range", float(cov_all["within_range"].iloc[0]), "", "share of observations within the members' range"),
        ("coverage_nominal", float(cov_all["nominal_range"].iloc[0]), "", "nominal coverage (K-1)/(K+1)"),
        ("sigma_obs_mm", float(np.median(valid_sigma)) if valid_sigma.size else math.nan, "mm",
         "median noise of one epoch (MAD of second differences up to the anchor)"),
        ("brier_p95_noise", float(brier95_noise.iloc[0]) if len(brier95_noise) else math.nan, "",
         "Brier score of P95 with the observation noise"),
        ("pit_central_80", float(pit_tab.loc[pit_tab["bin"] == "central_80", "frequency"].iloc[0]), "",
         "share of observations in the central 80 % of the noisy ensemble (nominal 0.8)"),
    ]
    entries += _skill_entries(scores)
    if not calibration_origins.empty:
        pooled = calibration_origins.iloc[-1]
        entries += [("pit_central_80_origins", float(pooled["pit_central_80"]), "",
                     f"share of observations in the central 80 % of the noisy ensemble over "
                     f"{len(scores.anchors)} origins (nominal 0.8)")]
        entries += [(f"brier_skill_p{tau}_origins", float(pooled[f"brier_skill_{tau}"]), "",
                     f"Brier skill of P{tau} with the observation noise against each origin's climatology, "
                     f"over {len(scores.anchors)} origins") for tau in (85, 95)]
    key_tab = tables.key_numbers(entries)
    num = Numbers(key_tab)

    all_tables = {
        "metrics": tables.metrics_table(compare_tables["summary"], compare_tables["baselines"]),
        "welch": tables.welch_view(compare_tables["welch"]),
        "thresholds": thresholds_tab, "classes": class_tab, "bivariate": biv_tab, "tiers": tier_tab,
        "hindcast_skill": skill_tab, "residual_summary": summary_tab, "qq_fits": fits, "tail_quantiles": tails,
        "model_residuals": model_tab, "overlay": overlay_tab, "rank_correlations": corr_tab,
        "reliability": rel_tab, "brier": brier_tab, "coverage": cov_tab, "reliability_noise": rel_noise_tab,
        "brier_noise": brier_noise_tab, "pit": pit_tab, "key_numbers": key_tab,
        "skill_origins": scores.table(), "skill_per_horizon": scores.horizon_tables(),
        "calibration_origins": calibration_origins,
    }
    if scores.maps:
        all_tables["skill_maps"] = scores.map_table()
    if zone_tab is not None:
        all_tables["zones"] = zone_tab

    say("report: figures ...", flush=True)
    with atomic_path(out) as stage:
        (stage / "figures").mkdir(parents=True)
        (stage / "tables").mkdir()
        for name, frame in all_tables.items():
            tables.write_csv(frame, stage / "tables" / f"{name}.csv")
        # the page shows each table as read back from its CSV, so page and file cannot differ
        shown = {name: tables.read_csv(stage / "tables" / f"{name}.csv") for name in all_tables}
        pngs: dict[str, bytes] = {}
        for name, path in compare_figures.items():
            shutil.copyfile(path, stage / "figures" / f"compare_{name}.png")
            pngs[f"compare_{name}"] = path.read_bytes()
        zs = zone_set
        _png(stage, "susceptibility", figures.susceptibility_figure(grid, cls, layers["confidence"], layers["std"],
                                                                    layers["rank_variance"], zones=zs), pngs)
        _png(stage, "bivariate", figures.bivariate_figure(grid, biv, biv_tab, zones=zs), pngs)
        _png(stage, "exceedance", figures.exceedance_figure(grid, layers["p85"], layers["p95"], layers["p99"],
                                                            zones=zs), pngs)
        _png(stage, "skill", figures.skill_figure(skill_tab), pngs)
        _png(stage, "skill_horizon", figures.skill_horizon_figure(all_tables["skill_per_horizon"]), pngs)
        _png(stage, "residual_map", figures.residual_map_figure(grid, residual, zones=zs), pngs)
        _png(stage, "qq", figures.qq_figure(p, z, q, fits, tails), pngs)
        _png(stage, "abs_residuals", figures.abs_residual_models_figure(grid, panels, zones=zs), pngs)
        _png(stage, "overlay", figures.overlay_figure(grid, overlay_codes, hstd, abs_res, overlay_tab, corr_tab,
                                                      zones=zs), pngs)
        if zone_tab is not None:
            _png(stage, "zones", figures.zones_figure(zone_tab), pngs)
        _png(stage, "reliability", figures.reliability_figure(rel_tab, brier_tab), pngs)
        _png(stage, "coverage", figures.coverage_figure(grid, cov_pixel, cov_tab, zones=zs), pngs)
        _png(stage, "reliability_noise", figures.reliability_figure(
            rel_noise_tab, brier_noise_tab, title="reliability with the observation noise"), pngs)
        _png(stage, "pit", figures.pit_figure(pit_tab), pngs)
        _png(stage, "tiers", figures.tiers_figure(grid, tiers, tier_tab, zones=zs), pngs)

        sections = _sections(shown, pngs, num, notes=notes, attrs=dict(prod.attrs), hattrs=dict(hp.attrs),
                             verdict=scores.verdict(),
                             inputs={"cube": cube, "products": products, "compare": compare_dir, "zones": zones,
                                     "ensemble": ensemble, "tune": tune_dir})
        index = stage / "index.html"
        index.write_text(page_html("insarcast report: where the ground will move next",
                                   f"forecast from {prod.attrs.get('reference_time', '?')}, valid "
                                   f"{prod.attrs.get('valid_time', '?')} (horizon {horizon} epochs), ensemble "
                                   f"{prod.attrs.get('ensemble', '?')}", sections), encoding="utf-8")
        if browser_check:
            from .browser import check_page, screenshot

            check = check_page(index)
            if not check.ok:
                raise RuntimeError(f"the report does not render cleanly in Chromium: broken images "
                                   f"{list(check.broken)}, errors {list(check.errors) + list(check.console)}")
            screenshot(index, stage / "screenshot.png", height=check.height)
    for note in notes:
        say(f"report: note: {note}")
    return out / "index.html"


def _anchor_level(ds: xr.Dataset, anchor: int, *, steps: int, history: int) -> np.ndarray:
    """``R(a) - d(a)``: the adaptive curve's level at the anchor less the observation (residual inputs'
    reference level, :mod:`insarcast.udf.inputs`)."""
    d = np.asarray(ds["displacement"].transpose("t", "y", "x").values[: anchor + 1], np.float64)
    fitted = bl.fits(d, bl.decimal_years(ds["t"].values), anchor, steps, history=history)
    return fitted.adaptive()[history - 1] - d[anchor]


def _skill_scores(ds: xr.Dataset, ensemble, *, truth, zones, origins: int, history: int, horizon_steps: int):
    """:func:`insarcast.report.skill.score` at ``origins`` anchors over the test period."""
    from insarcast.udf.ensemble import load_ensemble

    from . import skill

    nt = ds.sizes["t"]
    anchors = skill.origins(nt, history=history, horizon=horizon_steps, start=int(round(TEST_START * nt)),
                            count=origins)
    truth_da = None
    if truth is not None:
        truth_da = xr.open_zarr(truth)["displacement"]
        if truth_da.sizes != {"t": nt, "y": ds.sizes["y"], "x": ds.sizes["x"]}:
            raise InputError(f"the truth cube has sizes {dict(truth_da.sizes)}, the cube {dict(ds.sizes)}",
                             path=truth, field="displacement")
        truth_da = truth_da.load()
    ens = load_ensemble(ensemble) if isinstance(ensemble, (str, os.PathLike)) else ensemble
    return skill.score(ds.load(), ens, anchors=anchors, truth=truth_da, zones=skill.zone_mask(zones, ds))


def _skill_entries(scores) -> list[tuple]:
    """Key numbers of the skill table: the model's RMSE and its ratio to the best simple baseline."""
    out = []
    table = scores.table()
    for (target, region), part in table.groupby(["target", "region"], sort=False):
        rows = part.set_index("method")
        key = f"{target}_{region}"
        out.append((f"skill_{key}_rmse_mm", float(rows.loc["model", "rmse_mm"]), "mm",
                    f"RMSE of the ensemble median against the {target}, {region}, over {len(scores.anchors)} origins"))
        out.append((f"skill_{key}_ratio", float(rows.loc["model", "ratio_to_best_simple"]), "",
                    f"that RMSE over the best of persistence, linear and trend + annual ({target}, {region})"))
    for name in ("recall_top5", "precision_top15", "corr_zones"):
        values = [m[name] for m in scores.maps if name in m]
        if values:
            out.append((f"map_{name}", float(np.nanmean(values)), "", f"{name} against the truth, mean over origins"))
    return out


def _sections(t: dict[str, pd.DataFrame], pngs: dict[str, bytes], num: Numbers, *, notes, attrs, hattrs,
              inputs, verdict: list[str]) -> list[Section]:
    def fig(name, caption):
        return figure_html(name, pngs[name], caption) if name in pngs else note_html(f"figure {name} is missing")

    worth = Section("worth", "Is the forecast worth more than a trend fit?")
    worth.p("Every method is scored at the same forecast origins spread over the test period, on the same "
            "pixels: the ensemble median (model), persistence, the least-squares line of the history window "
            "(linear), least-squares trend plus annual cycle over the whole history (trend_annual) and the "
            "adaptive baseline the networks correct (the smoothest of those fits that still fits the window). "
            "Against the observations the noise of two epochs dominates every score; against the noise-free "
            "truth (synthetic scenarios) the score is the ground's own motion. dm_p: Diebold-Mariano test of "
            "the model against that method (Harvey-Leybourne-Newbold correction).")
    for line in verdict:
        worth.p(esc(line))
    worth.add(table_html("skill_origins", t["skill_origins"], caption="RMSE over many origins, per target and "
                                                                       "region; ratio to the best simple baseline"),
              fig("skill_horizon", "RMSE per horizon step over the forecast origins."),
              table_html("skill_per_horizon", t["skill_per_horizon"], caption="RMSE and skill per horizon step"))
    if "skill_maps" in t:
        worth.add(table_html("skill_maps", t["skill_maps"], caption="Do the classes find what moves? recall_top5: "
                             "share of the top-5 % true movers classed High or Highest; precision_top15: share of "
                             "High/Highest pixels among the top-15 % true movers; corr: forecast map against the "
                             "true change"))

    overview = Section("overview", "Overview")
    overview.p(f"Of {num('valid_pixels')} ({num('valid_area_km2')}), {num('high_or_highest_km2')} "
               f"fall in the High or Highest susceptibility class of the {num('members')}-member ensemble at "
               f"horizon {num('horizon')}: {num('intervention_km2')} with low uncertainty (intervention tier) "
               f"and {num('monitoring_km2')} with medium or high uncertainty (monitoring tier).")
    overview.p(f"On the single test-period hindcast window below the ensemble median has an RMSE of "
               f"{num('hindcast_rmse_mm')} at the horizon (persistence {num('persistence_rmse_mm')}, "
               f"linear {num('linear_rmse_mm')}, trend plus annual {num('lstsq_rmse_mm')}, adaptive "
               f"{num('adaptive_rmse_mm')}); one window cannot rank methods: the section above scores many.")
    overview.add(table_html("key_numbers", t["key_numbers"], caption="Numbers quoted in this page"))

    metrics = Section("metrics", "Architectures, manual against TPE, and baselines")
    metrics.p("Test-window RMSE and MAE (mm) and R² of every run, mean and standard deviation over the runs "
              "(seeds), and the baselines on the same windows and pixels.")
    metrics.add(table_html("metrics", t["metrics"], caption="Test metrics per architecture and strategy"),
                table_html("welch", t["welch"], caption="Welch t-tests, Benjamini–Hochberg adjusted "
                                                        "(diff > 0: TPE better)"))
    for name in ("violins", "forest", "histories"):
        metrics.add(fig(f"compare_{name}", COMPARE_CAPTIONS[name]))

    sus = Section("susceptibility", "Susceptibility, confidence and uncertainty")
    sus.p(f"Classes by the global quantiles of |median|: Q85 = {num('q85_mm')}, Q95 = {num('q95_mm')}, "
          f"Q99 = {num('q99_mm')} ({attrs.get('mode_description', '')}).")
    sus.add(fig("susceptibility", "Figure 7: susceptibility class, class confidence, std of |d_k| and rank "
                                  "variance; mine outlines black, fault traces red dashed."),
            table_html("classes", t["classes"], caption="Pixels, area and mean uncertainty per class"),
            table_html("thresholds", t["thresholds"], caption="Thresholds of the products and of the hindcast"),
            fig("exceedance", "Exceedance probabilities P85, P95, P99."))

    biv = Section("bivariate", "Susceptibility × uncertainty")
    biv.add(fig("bivariate", "Figure 8: bivariate susceptibility × uncertainty map with its 3 × 3 legend."),
            table_html("bivariate", t["bivariate"], caption="The nine cells"))

    skill = Section("skill", "Hindcast skill on the test period")
    skill.p(f"The ensemble was run on the cube cut at epoch {hattrs['anchor_index']} ({hattrs['anchor_time']}); "
            f"the next {hattrs['horizon_steps']} epochs are observed and lie "
            f"{'inside' if hattrs['in_test_period'] else 'before'} the test period (from epoch "
            f"{hattrs['test_start_index']} of {hattrs['epochs']}).")
    skill.add(fig("skill", "Hindcast RMSE and MAE per horizon step: ensemble, baselines, best single models."),
              table_html("hindcast_skill", t["hindcast_skill"], caption="Hindcast skill per source and step"))

    res = Section("residuals", "Residual diagnostics")
    res.add(fig("residual_map", "Figure 9a: signed residual, forecast − observed, at the horizon."),
            table_html("residual_summary", t["residual_summary"], caption="Residual statistics"),
            fig("qq", "Figure 9b: Q–Q plot with OLS and Theil–Sen lines and the tail quantiles."),
            table_html("qq_fits", t["qq_fits"], caption="Lines through the Q–Q points"),
            table_html("tail_quantiles", t["tail_quantiles"], caption="Tail quantiles"),
            fig("abs_residuals", "Figure 10: absolute residuals of the best manual and TPE "
                                 "ResNet+Transformer models and of the ensemble median, one colour scale."),
            table_html("model_residuals", t["model_residuals"], caption="Absolute residuals per model"),
            fig("overlay", "Uncertainty–residual overlay (top terciles) and |residual| against std."),
            table_html("overlay", t["overlay"], caption="Joint uncertainty and residual classes"),
            table_html("rank_correlations", t["rank_correlations"], caption="Rank correlations with |residual|"))
    res.p(f"Spearman's ρ between the ensemble std and |residual|: {num('rho_std_residual')}.")

    zones = Section("zones", "Zones: faults and mines")
    if "zones" in t:
        zones.add(fig("zones", "Mean |residual|, mean std and class shares per zone and distance band."),
                  table_html("zones", t["zones"], caption="Zone analysis on the hindcast"))
    else:
        zones.add(note_html("No zones were given (--zones): no zone analysis."))

    cal = Section("calibration", "Calibration of the exceedance probabilities")
    cal.p(f"Brier score of P95: {num('brier_p95')}; observations within the members' range: "
          f"{num('coverage_range', percent=True)} (nominal {num('coverage_nominal', percent=True)}).")
    cal.add(fig("reliability", "Reliability diagram and sharpness of P85, P95, P99 on the hindcast."),
            table_html("brier", t["brier"], caption="Brier scores"),
            table_html("reliability", t["reliability"], caption="Reliability table"),
            fig("coverage", "Coverage of the ensemble spread."),
            table_html("coverage", t["coverage"], caption="Coverage per horizon step"))
    cal.p("The members forecast the deformation, while an observed change also carries the noise of two "
          f"epochs: {num('sigma_obs_mm')} per epoch (median over the pixels; the MAD of the second "
          "differences of each series up to the anchor). Taking each member as N(d_k, 2 sigma²) (an ensemble "
          "of the paper's inputs) or, for residual inputs, whose members forecast the change from the fitted "
          "level R(a), as N(d_k + R(a) - d(a), sigma²) (the anchor's departure is observed, only the target "
          f"epoch's noise is unknown), the Brier score of P95 is {num('brier_p95_noise')}, and "
          f"{num('pit_central_80', percent=True)} of the observations fall in the central 80 % of the "
          "predictive distribution (nominal 80 %).")
    if "pit_central_80_origins" in num:
        cal.p("One origin is one draw of the atmosphere, spatially correlated over the whole region, so the "
              "same is repeated at every origin of the skill section: over them "
              f"{num('pit_central_80_origins', percent=True)} of the observations fall in the central 80 %, and "
              f"the Brier skill against each origin's climatology is {num('brier_skill_p85_origins')} for P85 "
              f"and {num('brier_skill_p95_origins')} for P95 (above 0: better than always forecasting the base "
              "rate).")
    if "calibration_origins" in t:
        cal.add(table_html("calibration_origins", t["calibration_origins"],
                           caption="Calibration with the observation noise per origin and pooled"))
    cal.add(fig("reliability_noise", "Reliability of the exceedance probabilities with the observation noise."),
            table_html("brier_noise", t["brier_noise"], caption="Brier scores with the observation noise"),
            table_html("reliability_noise", t["reliability_noise"],
                       caption="Reliability table with the observation noise (tenths)"),
            fig("pit", "PIT histogram of the observed change under the noisy ensemble."),
            table_html("pit", t["pit"], caption="PIT histogram and central 80 % coverage"))

    tiers = Section("tiers", "Decision tiers")
    tiers.add(fig("tiers", "Tiered decision strategy: susceptibility class and uncertainty tercile."),
              table_html("tiers", t["tiers"], caption="Area per tier"))

    prov = Section("provenance", "Inputs and notes")
    prov.add("<ul>" + "".join(f"<li>{esc(k)}: <code>{esc(v)}</code></li>" for k, v in inputs.items()
                              if v is not None) + "</ul>")
    for note in notes:
        prov.add(note_html(note))
    return [worth, overview, metrics, sus, biv, skill, res, zones, cal, tiers, prov]
