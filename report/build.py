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

import logging
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import pandas as pd
import xarray as xr

from insarcast import baselines as bl
from insarcast.contract import ARCHS, PAPER_ARCH, TEST_START
from insarcast.errors import InputError, InsarcastWarning, MissingDependencyError
from insarcast.fsutil import atomic_path, tails
from insarcast.udf.inputs import hindcast_origins

from . import calibration, figures, residuals, tables
from .hindcast import best_models, hindcast, model_forecast
from .html import Numbers, Section, esc, figure_html, note_html, page_html, table_html
from .zones import DEFAULT_BANDS, check_bands, read_zones, zone_distances

SECTIONS = ("worth", "overview", "metrics", "susceptibility", "bivariate", "skill", "residuals", "zones", "calibration",
            "tiers", "provenance")
COMPARE_CAPTIONS = {
    "violins": "Figure 3: test RMSE, MAE and R² of the runs per architecture, manual and TPE (from compare).",
    "forest": "Figure 4: mean improvement of TPE over manual with 95 % Welch CI, BH-adjusted p and one-sided "
              "lower bound (from compare).",
    "histories": "Figure 5: best-so-far validation loss per trial, each seed dashed, their mean solid "
                 "(from compare).",
}
SKILL_ORIGINS = 6            # forecast origins of the skill table: about one per horizon over the test period
LOGGER = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]


class ReportWarning(InsarcastWarning):
    """Part of the report could not be made (the page says so in its notes too)."""


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
    _check_product_attrs(ds, path=path)
    return ds


def _check_product_attrs(ds: xr.Dataset, *, path) -> None:
    """The attributes ``publish`` requires of a products store (:data:`insarcast.stac.products.REQUIRED_ATTRS`:
    thresholds, horizon ...), checked before any work, and the horizon one of the store's steps."""
    from insarcast.stac.products import REQUIRED_ATTRS

    missing = [a for a in REQUIRED_ATTRS if a not in ds.attrs]
    if missing:
        raise InputError(f"products are missing the attributes {missing}", path=path, field=missing[0])
    steps = [int(h) for h in ds["horizon"].values] if "horizon" in ds.variables else []
    horizon = ds.attrs["horizon"]
    try:
        whole = not isinstance(horizon, bool) and float(horizon) == int(horizon)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or int(horizon) not in steps:
        raise InputError(f"the products' horizon {horizon!r} is not one of the horizon steps {steps}", path=path,
                         field="horizon")


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


@dataclass
class _Inputs:
    """What the report reads, opened and checked: the cube, the products, the ensemble (loaded once),
    the tables and figures of compare, the zones and the tune folder; ``notes`` collects what the page
    says about them."""

    ds: xr.Dataset
    prod: xr.Dataset
    ensemble: Any
    ensemble_path: Path
    compare_tables: dict[str, pd.DataFrame]
    compare_figures: dict[str, Path]
    zone_set: Any
    tune_dir: Path | None
    notes: list[str]


@dataclass(frozen=True)
class _Maps:
    """The map grid and the area of one pixel."""

    grid: figures.MapGrid
    x: np.ndarray
    y: np.ndarray
    km2: float


@dataclass(frozen=True)
class _ProductLayers:
    """The forecast products' layers and their tables."""

    cls: np.ndarray
    biv: np.ndarray
    layers: dict[str, np.ndarray]
    class_tab: pd.DataFrame
    biv_tab: pd.DataFrame
    tiers: np.ndarray
    tier_tab: pd.DataFrame


@dataclass(frozen=True)
class _Hindcast:
    """The hindcast of the test period: its products, the observed change and the residuals at the horizon."""

    hp: xr.Dataset
    observed: np.ndarray
    anchor: int
    median: np.ndarray
    members: np.ndarray
    obs_h: np.ndarray
    residual: np.ndarray
    abs_res: np.ndarray
    hstd: np.ndarray
    hcls: np.ndarray
    history: int
    steps: int


@dataclass(frozen=True)
class _Residuals:
    """Residual diagnostics: skill per source, Q-Q fits, tails, the overlay, the models' residual maps."""

    base: dict[str, np.ndarray]
    skill_tab: pd.DataFrame
    summary_tab: pd.DataFrame
    qq: tuple
    fits: pd.DataFrame
    tails: pd.DataFrame
    overlay_codes: np.ndarray
    overlay_tab: pd.DataFrame
    corr_tab: pd.DataFrame
    model_tab: pd.DataFrame
    panels: list


@dataclass(frozen=True)
class _Calibration:
    """Reliability, Brier, coverage and PIT of the hindcast, without and with the observation noise."""

    rel_tab: pd.DataFrame
    brier_tab: pd.DataFrame
    cov_tab: pd.DataFrame
    cov_pixel: np.ndarray
    sigma: np.ndarray
    rel_noise_tab: pd.DataFrame
    brier_noise_tab: pd.DataFrame
    pit_tab: pd.DataFrame


def build_report(*, cube: PathLike, products: PathLike, compare_dir: PathLike, out: PathLike,
                 zones: PathLike | None = None, tune_dir: PathLike | None = None, ensemble: PathLike | None = None,
                 anchor: int | str | None = None, bands: tuple[float, ...] = DEFAULT_BANDS,
                 browser_check: bool = False, progress: bool = True, truth: PathLike | None = None,
                 origins: int = SKILL_ORIGINS) -> Path:
    """Write the report into ``out`` and return the path of its ``index.html``.

    ``cube``: the Zarr cube the products were made from; ``products``: the Zarr store of ``insarcast
    forecast``; ``compare_dir``: the output of ``insarcast compare``; ``zones``: a GeoJSON of mine
    outlines and fault traces (or None: no zone analysis); ``tune_dir``: the ``insarcast tune``
    folder whose best manual and TPE ResNet+Transformer models get the side-by-side residual maps
    (default: the folder the compare runs came from; skipped without torch); ``ensemble``: the
    ensemble folder (default: the one recorded in the products); ``anchor``: the hindcast's anchor
    epoch, an index (a negative one counts from the end, as in Python: -1 is the last epoch) or a date
    (default: F epochs before the end); ``bands``: the distance band edges around the zones, finite
    positive increasing metres. ``truth``: the noise-free cube of a synthetic scenario
    (``truth.zarr``), scored against beside the observations; ``origins``: forecast origins of the
    skill table (:mod:`insarcast.report.skill`). ``browser_check``: load the page in headless
    Chromium, fail on a broken image or script error, and keep ``screenshot.png``. ``progress``:
    log what it is doing and its notes (the ``insarcast`` logger, information lines).
    """
    say = _say(progress)
    bands = check_bands(bands, field="--bands")
    inputs = _read_inputs(cube=cube, products=products, compare_dir=compare_dir, zones=zones, ensemble=ensemble,
                          tune_dir=tune_dir)
    maps = _maps(inputs.ds)
    prod = inputs.prod
    horizon = int(prod.attrs.get("horizon", prod.sizes["horizon"]))
    layers = _product_layers(prod, maps.km2)
    say("report: hindcast of the test period ...")
    try:
        hind = _hindcast(inputs, anchor=anchor, horizon=horizon)
    except InputError as exc:
        if exc.field == "anchor" and exc.path is None:
            raise InputError(exc.message, field="--anchor") from exc
        raise
    say(f"report: skill over {origins} forecast origins ...")
    scores = _skill_scores(inputs.ds, inputs.ensemble, truth=truth, zones=inputs.zone_set, origins=origins,
                           history=hind.history, horizon_steps=hind.steps)
    res = _residuals(inputs, hind, horizon=horizon, maps=maps, say=say)
    cal = _calibration(inputs.ds, hind, horizon=horizon)
    if hindcast_origins(str(prod.attrs.get("inputs", "paper"))):
        d = np.asarray(inputs.ds["displacement"].transpose("t", "y", "x").values, np.float32)
        ref = final_reference(d, bl.decimal_years(inputs.ds["t"].values), history=hind.history, horizon=hind.steps)
        note = step_note(ref, d, history=hind.history, km2=maps.km2)
        if note:
            inputs.notes.append(note)
        if str(prod.attrs.get("spatial_filter", "none")) != "none":
            widths = final_widths(ref, d, history=hind.history, horizon=hind.steps)
            inputs.notes.append(width_note(ref, d, history=hind.history, horizon=hind.steps, widths=widths))
            note = front_note(ref, d, history=hind.history, horizon=hind.steps, km2=maps.km2, widths=widths)
            if note:
                inputs.notes.append(note)
    zone_tab = _zone_table(inputs, hind, maps=maps, zones=zones, bands=bands)
    key_tab = tables.key_numbers(_key_entries(prod, layers, hind, res, cal, horizon=horizon, km2=maps.km2)
                                 + _skill_entries(scores))
    all_tables = _all_tables(inputs, layers, hind, res, cal, scores=scores, zone_tab=zone_tab, key_tab=key_tab)
    say("report: figures ...")
    with atomic_path(Path(out)) as stage:
        shown = _write_tables(stage, all_tables)
        pngs = _write_figures(stage, inputs, maps, layers, hind, res, cal, all_tables=all_tables, zone_tab=zone_tab)
        sections = _sections(shown, pngs, Numbers(key_tab), notes=inputs.notes, attrs=dict(prod.attrs),
                             hattrs=dict(hind.hp.attrs), verdict=scores.verdict() + _kept_line(inputs.ensemble),
                             inputs={"cube": cube, "products": products, "compare": compare_dir, "zones": zones,
                                     "ensemble": inputs.ensemble_path, "tune": inputs.tune_dir})
        index = stage / "index.html"
        index.write_text(page_html("insarcast report: where the ground will move next",
                                   f"forecast from {prod.attrs.get('reference_time', '?')}, valid "
                                   f"{prod.attrs.get('valid_time', '?')} (horizon {horizon} epochs"
                                   f"{_horizon_days(prod.attrs)}), ensemble "
                                   f"{prod.attrs.get('ensemble', '?')}", sections), encoding="utf-8")
        if browser_check:
            _check_in_browser(index, stage)
    for note in inputs.notes:
        say(f"report: note: {note}")
    return Path(out) / "index.html"


def _say(progress: bool) -> Callable[[str], None]:
    """Progress and notes as information lines of the ``insarcast`` logger (stderr); nothing unless ``progress``."""
    def say(message: str) -> None:
        if progress:
            LOGGER.info(message)
    return say


def _read_inputs(*, cube: PathLike, products: PathLike, compare_dir: PathLike, zones: PathLike | None,
                 ensemble: PathLike | None, tune_dir: PathLike | None) -> _Inputs:
    """Open and check every input, in the order a user fixes them; the ensemble is loaded (and its manifest
    checked) once, for the hindcast and the skill table alike."""
    from insarcast.cube import open_cube
    from insarcast.udf.ensemble import load_ensemble

    ds = open_cube(cube)
    prod = _open_products(products)
    _check_same_grid(ds, prod, path=products)
    if ensemble is None:
        ensemble = prod.attrs.get("ensemble_path")
        if not ensemble or not Path(ensemble).is_dir():
            raise InputError("the products do not name an existing ensemble folder: pass --ensemble",
                             path=products, field="ensemble_path")
    compare_tables, compare_figures, notes = tables.read_compare(compare_dir)
    zone_set = None
    if zones is not None:
        zone_set = read_zones(zones, crs=ds.rio.crs.to_string())
        notes += list(zone_set.notes)
    if tune_dir is None:
        tune_dir = _tune_dir_of(compare_tables, compare_dir, notes)
    elif not Path(tune_dir).is_dir():
        raise InputError("no such tune folder", path=tune_dir, field="--tune-dir")
    return _Inputs(ds=ds, prod=prod, ensemble=load_ensemble(ensemble), ensemble_path=Path(ensemble),
                   compare_tables=compare_tables, compare_figures=compare_figures, zone_set=zone_set,
                   tune_dir=None if tune_dir is None else Path(tune_dir), notes=notes)


def _tune_dir_of(compare_tables: dict[str, pd.DataFrame], compare_dir: PathLike | None = None,
                 notes: list[str] | None = None) -> Path | None:
    """The folder the compare runs came from (their common parent), if it exists. The runs name their
    files as compare was given them, relative to the folder it ran in; where that path does not exist
    from here, the same folder is looked for beside the compare folder (its trailing parts under the
    compare folder's parent, which must hold the runs' files): a note says which folder is used."""
    if "runs" not in compare_tables or not len(compare_tables["runs"]):
        return None
    files = [Path(f) for f in compare_tables["runs"]["file"] if isinstance(f, str)]
    if not files:
        return None
    common = Path(os.path.commonpath([str(f.parent) for f in files]))
    if common.is_dir():
        return common
    if compare_dir is None:
        return None
    base = Path(compare_dir).parent
    for tail in tails(common):                        # only below the compare folder's parent
        candidate = base / tail
        if candidate.is_dir() and all((candidate / f.relative_to(common)).is_file() for f in files):
            if notes is not None:
                notes.append(f"the compare runs name their files below {common}, which is not here: the tune "
                             f"folder {candidate} beside the compare folder is used")
            return candidate
    return None


def _maps(ds: xr.Dataset) -> _Maps:
    x, y = ds["x"].values, ds["y"].values
    dx = abs(float(x[1] - x[0])) if len(x) > 1 else 100.0
    dy = abs(float(y[1] - y[0])) if len(y) > 1 else dx
    return _Maps(grid=figures.MapGrid(x, y), x=x, y=y, km2=dx * dy / 1e6)


def _product_layers(prod: xr.Dataset, km2: float) -> _ProductLayers:
    cls = _layer(prod, "class").astype(np.uint8)
    biv = _layer(prod, "bivariate").astype(np.uint8)
    layers = {k: _float(prod, k) for k in ("confidence", "std", "rank_variance", "p85", "p95", "p99")}
    tiers = tables.tier_codes(cls, biv)
    return _ProductLayers(
        cls=cls, biv=biv, layers=layers,
        class_tab=tables.class_table(cls, {k: layers[k] for k in ("confidence", "std", "rank_variance")}, km2),
        biv_tab=tables.bivariate_table(biv, km2), tiers=tiers, tier_tab=tables.tier_table(tiers, km2))


def _hindcast(inputs: _Inputs, *, anchor: int | str | None, horizon: int) -> _Hindcast:
    hc = hindcast(inputs.ds, inputs.ensemble, anchor=anchor, horizon=horizon)
    hp, observed = hc.products, np.asarray(hc.observed.values, np.float64)
    a = int(hp.attrs["anchor_index"])
    if not hp.attrs["in_test_period"]:
        inputs.notes.append(f"the hindcast's target epochs start at epoch {a + 1}, before the test period (epoch "
                            f"{hp.attrs['test_start_index']}): the residuals are not out-of-sample")
    median = np.asarray(hp["median"].transpose("horizon", "y", "x").values, np.float64)
    obs_h = observed[horizon - 1]
    residual = median[horizon - 1] - obs_h
    return _Hindcast(hp=hp, observed=observed, anchor=a, median=median,
                     members=np.asarray(hp["forecast"].transpose("member", "horizon", "y", "x").values, np.float64),
                     obs_h=obs_h, residual=residual, abs_res=np.abs(residual), hstd=_float(hp, "std"),
                     hcls=_layer(hp, "class").astype(np.uint8), history=int(hp.attrs["history_epochs"]),
                     steps=int(hp.attrs["horizon_steps"]))


def _best_single_models(inputs: _Inputs, hind: _Hindcast, *, horizon: int,
                        say: Callable[[str], None]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The best manual and TPE model of each of the six architectures on the hindcast window (Figure 10,
    panels a-l): their entries for the residual table, and the paper's architecture's forecasts as
    skill sources where they span F steps."""
    entries: list[dict] = []
    sources: dict[str, np.ndarray] = {}
    if inputs.tune_dir is None:
        _dropped(inputs.notes, "no tune folder found (pass --tune-dir): the manual-versus-TPE residual maps "
                               "are missing")
        return entries, sources
    try:
        best = best_models(inputs.tune_dir, archs=ARCHS)
        missing = [f"{arch} {strategy}" for arch in ARCHS for strategy in ("manual", "tpe")
                   if (arch, strategy) not in best]
        if missing:
            _dropped(inputs.notes, f"no model.pt below {inputs.tune_dir} for {', '.join(missing)}: their residual "
                                   "maps are missing")
        for (arch, strategy), m in sorted(best.items(), key=lambda kv: (ARCHS.index(kv[0][0]), kv[0][1])):
            say(f"report: {strategy} {arch} model on the hindcast window ...")
            fc, info = model_forecast(m.path, inputs.ds, anchor=hind.anchor)
            if info["horizon"] < horizon:
                inputs.notes.append(f"{m.path}: forecasts {info['horizon']} steps, fewer than the horizon {horizon}")
                continue
            entries.append({"label": f"{'M' if strategy == 'manual' else 'TPE'}-{arch} (best, seed {m.seed})",
                            "forecast": fc[horizon - 1].astype(np.float64), "arch": m.arch, "strategy": strategy,
                            "seed": m.seed, "trial": m.trial, "val_loss": m.val_loss, "file": str(m.path)})
            if arch == PAPER_ARCH and info["horizon"] == hind.steps:
                sources[f"{PAPER_ARCH} {strategy}"] = fc.astype(np.float64)
    except MissingDependencyError as exc:
        _dropped(inputs.notes, f"manual-versus-TPE residual maps skipped: {exc}")
    return entries, sources


def _dropped(notes: list[str], message: str) -> None:
    """A part of the page left out: a note in the page and a :class:`ReportWarning` (stderr)."""
    notes.append(message)
    warnings.warn(message, ReportWarning, stacklevel=3)


def _residuals(inputs: _Inputs, hind: _Hindcast, *, horizon: int, maps: _Maps,
               say: Callable[[str], None]) -> _Residuals:
    ds = inputs.ds
    base = residuals.baseline_forecasts(ds["displacement"], ds["t"].values, hind.anchor, hind.steps,
                                        history=hind.history)
    sources = {"ensemble median": hind.median, **base}
    model_entries, model_sources = _best_single_models(inputs, hind, horizon=horizon, say=say)
    sources.update(model_sources)
    model_entries.append({"label": "ensemble median", "forecast": hind.median[horizon - 1], "arch": PAPER_ARCH,
                          "strategy": "ensemble", "val_loss": math.nan, "file": str(inputs.ensemble_path)})
    model_tab, _, model_mask = residuals.model_residual_table(model_entries, hind.obs_h)
    panels = [(e["label"], np.where(model_mask, np.abs(e["forecast"] - hind.obs_h), np.nan)) for e in model_entries]
    fits = residuals.qq_fits(hind.residual)
    overlay_codes, _, overlay_tab = residuals.overlay(hind.hstd, hind.abs_res, std_high=float(hind.hp.attrs[
        "std_tercile_2"]), pixel_area_km2=maps.km2)
    corr_tab = residuals.rank_correlations(hind.abs_res, {"std": hind.hstd,
                                                          "rank_variance": _float(hind.hp, "rank_variance"),
                                                          "confidence": _float(hind.hp, "confidence")})
    return _Residuals(base=base, skill_tab=residuals.skill_table(hind.observed, sources),
                      summary_tab=residuals.residual_summary(hind.residual), qq=residuals.qq_points(hind.residual),
                      fits=fits, tails=residuals.tail_quantiles(hind.residual, fits), overlay_codes=overlay_codes,
                      overlay_tab=overlay_tab, corr_tab=corr_tab, model_tab=model_tab, panels=panels)


def _calibration(ds: xr.Dataset, hind: _Hindcast, *, horizon: int) -> _Calibration:
    hp = hind.hp
    hthr = {tau: float(hp.attrs[f"q{tau}"]) for tau in calibration.LEVELS}
    probs = {tau: _float(hp, f"p{tau}") for tau in calibration.LEVELS}
    rel_tab, brier_tab = calibration.reliability(probs, np.abs(hind.obs_h), hthr, members=int(hp.sizes["member"]))
    cov_tab, cov_pixel = calibration.coverage(hind.members, hind.observed)
    # the same against what an observation is: the signal plus the noise of two epochs
    sigma = calibration.observation_sigma(ds["displacement"], hind.anchor)
    inputs = str(hp.attrs.get("inputs", "paper"))
    level, level_scale, change_scale = _anchor_level(ds, hind.anchor, steps=hind.steps, history=hind.history,
                                                     inputs=inputs)
    if "forecast_scale" in hp:          # what the products add to the fit's own error (the correction)
        level_scale = calibration.with_departure(level_scale, change_scale, hp["forecast_scale"].values)
    centre, scale = calibration.observation_predictive(hind.members[:, horizon - 1], sigma, inputs=inputs,
                                                       level=level, level_scale=level_scale[horizon - 1])
    noisy = {tau: calibration.noisy_exceedance(centre, scale, hthr[tau]) for tau in calibration.LEVELS}
    rel_noise_tab, brier_noise_tab = calibration.reliability(noisy, np.abs(hind.obs_h), hthr, members=None)
    return _Calibration(rel_tab=rel_tab, brier_tab=brier_tab, cov_tab=cov_tab, cov_pixel=cov_pixel, sigma=sigma,
                        rel_noise_tab=rel_noise_tab, brier_noise_tab=brier_noise_tab,
                        pit_tab=calibration.pit_table(calibration.pit(centre, scale, hind.obs_h)))


def _anchor_level(ds: xr.Dataset, anchor: int, *, steps: int, history: int,
                  inputs: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``R(a) - d(a)``: the reference curve's level at the anchor less the observation (the residual
    inputs' reference level of formulation ``inputs``, :mod:`insarcast.udf.inputs`), and the standard
    errors of the curve's level and of its change at each step ``(F, y, x)``."""
    from insarcast.udf.inputs import hindcast_origins, reference_fits

    d = np.asarray(ds["displacement"].transpose("t", "y", "x").values[: anchor + 1], np.float64)
    reference = reference_fits(bl.fits(d, bl.decimal_years(ds["t"].values), anchor, steps, history=history,
                                       hindcast=hindcast_origins(inputs), reference=True), inputs)
    return reference.adaptive()[history - 1] - d[anchor], reference.adaptive_scale(level=True), reference.adaptive_scale()


def _zone_table(inputs: _Inputs, hind: _Hindcast, *, maps: _Maps, zones: PathLike | None,
                bands: tuple[float, ...]) -> pd.DataFrame | None:
    zone_set = inputs.zone_set
    if zone_set is None:
        return None
    if not zone_set.features:
        inputs.notes.append(f"{zones}: no mine or fault feature: no zone analysis")
        return None
    distances = zone_distances(zone_set, maps.x, maps.y)
    zlayers = {"residual": hind.residual, "abs_residual": hind.abs_res, "std": hind.hstd,
               **{k: _float(hind.hp, k) for k in ("rank_variance", "confidence", "p85", "p95", "p99")}}
    return tables.zone_table(distances, hind.hcls != tables.NODATA, hind.hcls, zlayers, maps.km2, bands=bands)


def _first(frame: pd.DataFrame, column: str, where: pd.Series) -> float:
    """The first value of ``column`` where ``where`` holds, NaN if none."""
    values = frame.loc[where, column]
    return float(values.iloc[0]) if len(values) else math.nan


def _key_entries(prod: xr.Dataset, layers: _ProductLayers, hind: _Hindcast, res: _Residuals, cal: _Calibration,
                 *, horizon: int, km2: float) -> list[tuple]:
    """The numbers quoted in the text: (key, value, unit, description)."""
    skill_tab = res.skill_tab

    def skill_of(source: str) -> float:
        return _first(skill_tab, "rmse", (skill_tab["source"] == source) & (skill_tab["horizon"] == str(horizon)))

    valid_px = int((layers.cls != tables.NODATA).sum())
    valid_sigma = cal.sigma[np.isfinite(hind.obs_h) & np.isfinite(cal.sigma)]
    cov_all = cal.cov_tab.loc[cal.cov_tab["horizon"] == "all"]
    summary, corr, pit = res.summary_tab, res.corr_tab, cal.pit_tab
    return [
        ("valid_pixels", valid_px, "pixels", "valid pixels of the products"),
        ("valid_area_km2", valid_px * km2, "km²", "area of the valid pixels"),
        ("members", int(prod.attrs.get("members", prod.sizes.get("member", 0))), "", "ensemble members"),
        ("horizon", horizon, "epochs", "horizon step the products describe"),
        ("q85_mm", float(prod.attrs["q85"]), "mm", "Q85 of |median| (products)"),
        ("q95_mm", float(prod.attrs["q95"]), "mm", "Q95 of |median| (products)"),
        ("q99_mm", float(prod.attrs["q99"]), "mm", "Q99 of |median| (products)"),
        ("high_or_highest_km2", float(layers.class_tab.loc[layers.class_tab["code"] >= 2, "area_km2"].sum()), "km²",
         "area in class High or Highest"),
        ("intervention_km2", float(layers.tier_tab.loc[0, "area_km2"]), "km²", "area of the intervention tier"),
        ("monitoring_km2", float(layers.tier_tab.loc[1, "area_km2"]), "km²", "area of the monitoring tier"),
        ("hindcast_rmse_mm", skill_of("ensemble median"), "mm", "hindcast RMSE of the ensemble median at the horizon"),
        ("persistence_rmse_mm", skill_of("persistence"), "mm", "hindcast RMSE of persistence"),
        ("lstsq_rmse_mm", skill_of("trend_annual") if "trend_annual" in res.base else math.nan, "mm",
         "hindcast RMSE of the least-squares trend plus annual baseline"),
        ("linear_rmse_mm", skill_of("linear"), "mm", "hindcast RMSE of the window's line"),
        ("adaptive_rmse_mm", skill_of("adaptive"), "mm", "hindcast RMSE of the adaptive baseline"),
        ("residual_bias_mm", float(summary.loc[summary["statistic"] == "mean", "value"].iloc[0]), "mm",
         "mean residual (forecast - observed)"),
        ("rho_std_residual", _first(corr, "rho", corr["x"] == "std"), "", "Spearman correlation of std with |residual|"),
        ("brier_p95", _first(cal.brier_tab, "brier", cal.brier_tab["threshold"] == "P95"), "", "Brier score of P95"),
        ("coverage_range", float(cov_all["within_range"].iloc[0]), "", "share of observations within the members' range"),
        ("coverage_nominal", float(cov_all["nominal_range"].iloc[0]), "", "nominal coverage (K-1)/(K+1)"),
        ("sigma_obs_mm", float(np.median(valid_sigma)) if valid_sigma.size else math.nan, "mm",
         "median noise of one epoch (MAD of second differences up to the anchor)"),
        ("brier_p95_noise", _first(cal.brier_noise_tab, "brier", cal.brier_noise_tab["threshold"] == "P95"), "",
         "Brier score of P95 with the observation noise"),
        ("pit_central_80", float(pit.loc[pit["bin"] == "central_80", "frequency"].iloc[0]), "",
         "share of observations in the central 80 % of the noisy ensemble (nominal 0.8)"),
    ]


def _all_tables(inputs: _Inputs, layers: _ProductLayers, hind: _Hindcast, res: _Residuals, cal: _Calibration, *,
                scores, zone_tab: pd.DataFrame | None, key_tab: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table of the page, by its CSV name."""
    compare_tables = inputs.compare_tables
    all_tables = {
        "metrics": tables.metrics_table(compare_tables["summary"], compare_tables["baselines"]),
        "welch": tables.welch_view(compare_tables["welch"]),
        "thresholds": tables.thresholds_table(dict(inputs.prod.attrs), dict(hind.hp.attrs)),
        "classes": layers.class_tab, "bivariate": layers.biv_tab, "tiers": layers.tier_tab,
        "hindcast_skill": res.skill_tab, "residual_summary": res.summary_tab, "qq_fits": res.fits,
        "tail_quantiles": res.tails, "model_residuals": res.model_tab, "overlay": res.overlay_tab,
        "rank_correlations": res.corr_tab, "reliability": cal.rel_tab, "brier": cal.brier_tab,
        "coverage": cal.cov_tab, "reliability_noise": cal.rel_noise_tab, "brier_noise": cal.brier_noise_tab,
        "pit": cal.pit_tab, "key_numbers": key_tab,
        "skill_origins": scores.table(), "skill_per_horizon": scores.horizon_tables(),
        "calibration_origins": scores.calibration_table(),
    }
    if scores.maps:
        all_tables["skill_maps"] = scores.map_table()
    if zone_tab is not None:
        all_tables["zones"] = zone_tab
    return all_tables


def _write_tables(stage: Path, all_tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Write every table as CSV; returns them as read back, so that page and file cannot differ."""
    (stage / "figures").mkdir(parents=True)
    (stage / "tables").mkdir()
    for name, frame in all_tables.items():
        tables.write_csv(frame, stage / "tables" / f"{name}.csv")
    return {name: tables.read_csv(stage / "tables" / f"{name}.csv") for name in all_tables}


def _write_figures(stage: Path, inputs: _Inputs, maps: _Maps, layers: _ProductLayers, hind: _Hindcast,
                   res: _Residuals, cal: _Calibration, *, all_tables: dict[str, pd.DataFrame],
                   zone_tab: pd.DataFrame | None) -> dict[str, bytes]:
    """Write every figure as PNG (compare's copied); returns their bytes by name."""
    pngs: dict[str, bytes] = {}
    for name, path in inputs.compare_figures.items():
        shutil.copyfile(path, stage / "figures" / f"compare_{name}.png")
        pngs[f"compare_{name}"] = path.read_bytes()
    grid, zs, lay = maps.grid, inputs.zone_set, layers.layers
    _png(stage, "susceptibility", figures.susceptibility_figure(grid, layers.cls, lay["confidence"], lay["std"],
                                                                lay["rank_variance"], zones=zs), pngs)
    _png(stage, "bivariate", figures.bivariate_figure(grid, layers.biv, layers.biv_tab, zones=zs), pngs)
    _png(stage, "exceedance", figures.exceedance_figure(grid, lay["p85"], lay["p95"], lay["p99"], zones=zs), pngs)
    _png(stage, "skill", figures.skill_figure(res.skill_tab), pngs)
    _png(stage, "skill_horizon", figures.skill_horizon_figure(all_tables["skill_per_horizon"]), pngs)
    _png(stage, "residual_map", figures.residual_map_figure(grid, hind.residual, zones=zs), pngs)
    _png(stage, "qq", figures.qq_figure(*res.qq, res.fits, res.tails), pngs)
    _png(stage, "abs_residuals", figures.abs_residual_models_figure(grid, res.panels, zones=zs), pngs)
    _png(stage, "overlay", figures.overlay_figure(grid, res.overlay_codes, hind.hstd, hind.abs_res, res.overlay_tab,
                                                  res.corr_tab, zones=zs), pngs)
    if zone_tab is not None:
        _png(stage, "zones", figures.zones_figure(zone_tab), pngs)
    _png(stage, "reliability", figures.reliability_figure(cal.rel_tab, cal.brier_tab), pngs)
    _png(stage, "coverage", figures.coverage_figure(grid, cal.cov_pixel, cal.cov_tab, zones=zs), pngs)
    _png(stage, "reliability_noise", figures.reliability_figure(
        cal.rel_noise_tab, cal.brier_noise_tab, title="reliability with the observation noise"), pngs)
    _png(stage, "pit", figures.pit_figure(cal.pit_tab), pngs)
    _png(stage, "tiers", figures.tiers_figure(grid, layers.tiers, layers.tier_tab, zones=zs), pngs)
    return pngs


def _check_in_browser(index: Path, stage: Path) -> None:
    """Load the page in headless Chromium; refuse a broken image or script error; keep a screenshot."""
    from .browser import check_page, screenshot

    check = check_page(index)
    if not check.ok:
        raise RuntimeError(f"the report does not render cleanly in Chromium: broken images "
                           f"{list(check.broken)}, errors {list(check.errors) + list(check.console)}")
    screenshot(index, stage / "screenshot.png", height=check.height)


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
    for name in ("recall_top5", "precision_top15", "recall_moving", "corr_zones"):
        values = [m[name] for m in scores.maps if name in m]
        if values:
            out.append((f"map_{name}", float(np.nanmean(values)), "", f"{name} against the truth, mean over origins"))
    calibration_origins = scores.calibration_table()
    if not calibration_origins.empty:
        pooled = calibration_origins.iloc[-1]
        out.append(("pit_central_80_origins", float(pooled["pit_central_80"]), "",
                    f"share of observations in the central 80 % of the noisy ensemble over {len(scores.anchors)} "
                    "origins (nominal 0.8)"))
        out += [(f"brier_skill_p{tau}_origins", float(pooled[f"brier_skill_{tau}"]), "",
                 f"Brier skill of P{tau} with the observation noise against each origin's climatology, over "
                 f"{len(scores.anchors)} origins") for tau in (85, 95)]
    return out


def _kept_line(ensemble) -> list[str]:
    """How many members of a residual ensemble keep their reference (``zero_output``), as a sentence."""
    if ensemble.inputs == "paper":
        return []
    lines = [ensemble.manifest.zero_output_sentence() or
             f"Every one of the {len(ensemble)} members corrects its reference forecast."]
    if ensemble.inputs == "residual-corrected":
        lines.append("The reference of these members is the adaptive baseline plus a correction (a small network) "
                     "fitted to the noise-free truths of generated scenarios, not to this cube's observations "
                     "(insarcast.udf.correction), and held within two standard errors of the baseline's forecast: "
                     "what the ensemble gains over the filtered adaptive baseline without the networks is that "
                     "correction's, and it helps as far as this ground behaves like those scenarios.")
    return lines


def _sections(t: dict[str, pd.DataFrame], pngs: dict[str, bytes], num: Numbers, *, notes, attrs, hattrs,
              inputs, verdict: list[str]) -> list[Section]:
    """The page's sections, in order, from the tables as read back (``t``), the figures and the key numbers."""
    def fig(name: str, caption: str) -> str:
        return figure_html(name, pngs[name], caption) if name in pngs else note_html(f"figure {name} is missing")

    return [_worth_section(t, fig, verdict), _overview_section(t, num), _metrics_section(t, fig),
            _susceptibility_section(t, fig, num, attrs), _bivariate_section(t, fig), _skill_section(t, fig, hattrs),
            _residuals_section(t, fig, num), _zones_section(t, fig), _calibration_section(t, fig, num),
            _tiers_section(t, fig), _provenance_section(inputs, notes)]


def _worth_section(t: dict[str, pd.DataFrame], fig: Callable[[str, str], str], verdict: list[str]) -> Section:
    worth = Section("worth", "Is the forecast worth more than a trend fit?")
    worth.p("Every method is scored at the same forecast origins spread over the test period, on the same "
            "pixels: the ensemble median (model), persistence, the least-squares line of the history window "
            "(linear), least-squares trend plus annual cycle over the whole history (trend_annual) and the "
            "adaptive baseline (per pixel, a parabola where its errors at "
            f"{bl.HINDCAST_ORIGINS} past origins are below 1/{bl.QUADRATIC_MARGIN:g} of every other curve's, else "
            "the smoothest of the window's line, a local line and the long fit whose errors there are within "
            f"{bl.HINDCAST_MARGIN:g} x the best) and that baseline through the products' spatial filter "
            "(a width per pixel chosen by hindcast; adaptive_filtered): where the ensemble equals it, its networks add nothing. "
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
        from .skill import MOVING_RATE

        worth.add(table_html("skill_maps", t["skill_maps"], caption="Do the classes find what moves? recall_top5: "
                             "share of the top-5 % true movers classed High or Highest; precision_top15: share of "
                             "High/Highest pixels among the top-15 % true movers; recall_moving: share of the pixels "
                             f"moving more than {MOVING_RATE:g} mm/yr against the map's median true change classed "
                             "High or Highest (moving_share: their share of the map); corr: forecast map against "
                             "the true change"))
    return worth


def _overview_section(t: dict[str, pd.DataFrame], num: Numbers) -> Section:
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
    return overview


def _metrics_section(t: dict[str, pd.DataFrame], fig: Callable[[str, str], str]) -> Section:
    metrics = Section("metrics", "Architectures, manual against TPE, and baselines")
    metrics.p("Test-window RMSE and MAE (mm) and R² of every run, mean and standard deviation over the runs "
              "(seeds), and the baselines on the same windows and pixels.")
    metrics.add(table_html("metrics", t["metrics"], caption="Test metrics per architecture and strategy"),
                table_html("welch", t["welch"], caption="Welch t-tests, Benjamini–Hochberg adjusted "
                                                        "(diff > 0: TPE better)"))
    for name in ("violins", "forest", "histories"):
        metrics.add(fig(f"compare_{name}", COMPARE_CAPTIONS[name]))
    return metrics


def _susceptibility_section(t: dict[str, pd.DataFrame], fig: Callable[[str, str], str], num: Numbers, attrs: dict) -> Section:
    sus = Section("susceptibility", "Susceptibility, confidence and uncertainty")
    sus.p(f"Classes by the global quantiles of |median|: Q85 = {num('q85_mm')}, Q95 = {num('q95_mm')}, "
          f"Q99 = {num('q99_mm')} ({attrs.get('mode_description', '')}).")
    sus.add(fig("susceptibility", "Figure 7: susceptibility class, class confidence, std of |d_k| and rank "
                                  "variance; mine outlines black, fault traces red dashed."),
            table_html("classes", t["classes"], caption="Pixels, area and mean uncertainty per class"),
            table_html("thresholds", t["thresholds"], caption="Thresholds of the products and of the hindcast"),
            fig("exceedance", "Exceedance probabilities P85, P95, P99."))
    return sus


def _bivariate_section(t: dict[str, pd.DataFrame], fig: Callable[[str, str], str]) -> Section:
    biv = Section("bivariate", "Susceptibility × uncertainty")
    biv.add(fig("bivariate", "Figure 8: bivariate susceptibility × uncertainty map with its 3 × 3 legend."),
            table_html("bivariate", t["bivariate"], caption="The nine cells"))
    return biv


def _skill_section(t: dict[str, pd.DataFrame], fig: Callable[[str, str], str], hattrs: dict) -> Section:
    skill = Section("skill", "Hindcast skill on the test period")
    skill.p(f"The ensemble was run on the cube cut at epoch {hattrs['anchor_index']} ({hattrs['anchor_time']}); "
            f"the next {hattrs['horizon_steps']} epochs are observed and lie "
            f"{'inside' if hattrs['in_test_period'] else 'before'} the test period (from epoch "
            f"{hattrs['test_start_index']} of {hattrs['epochs']}).")
    skill.add(fig("skill", "Hindcast RMSE and MAE per horizon step: ensemble, baselines, best single models."),
              table_html("hindcast_skill", t["hindcast_skill"], caption="Hindcast skill per source and step"))
    return skill


def _residuals_section(t: dict[str, pd.DataFrame], fig: Callable[[str, str], str], num: Numbers) -> Section:
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
    return res


def _zones_section(t: dict[str, pd.DataFrame], fig: Callable[[str, str], str]) -> Section:
    zones = Section("zones", "Zones: faults and mines")
    if "zones" in t:
        zones.add(fig("zones", "Mean |residual|, mean std and class shares per zone and distance band."),
                  table_html("zones", t["zones"], caption="Zone analysis on the hindcast"))
    else:
        zones.add(note_html("No zones were given (--zones): no zone analysis."))
    return zones


def _calibration_section(t: dict[str, pd.DataFrame], fig: Callable[[str, str], str], num: Numbers) -> Section:
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
          "level R(a), as N(d_k + R(a) - d(a), sigma² + s²) (the anchor's departure is observed, only the "
          "target epoch's noise is unknown; s is the standard error of the fitted curve's level at the target "
          "epoch and, in quadrature, what the products' forecast_scale adds to the fit's own error: the "
          "departure of the median from the fitted curve), the Brier score of P95 is "
          f"{num('brier_p95_noise')}, and {num('pit_central_80', percent=True)} of the observations fall in "
          "the central 80 % of the predictive distribution (nominal 80 %).")
    cal.add(fig("reliability_noise", "Reliability of the exceedance probabilities with the observation noise."),
            table_html("brier_noise", t["brier_noise"], caption="Brier scores with the observation noise"),
            table_html("reliability_noise", t["reliability_noise"],
                       caption="Reliability table with the observation noise (tenths)"),
            fig("pit", "PIT histogram of the observed change under the noisy ensemble."),
            table_html("pit", t["pit"], caption="PIT histogram and central 80 % coverage"))
    if "pit_central_80_origins" in num:
        cal.p("One origin is one draw of the atmosphere, spatially correlated over the whole region, so the "
              "same is repeated at every origin of the skill section: over them "
              f"{num('pit_central_80_origins', percent=True)} of the observations fall in the central 80 %, and "
              f"the Brier skill against each origin's climatology is {num('brier_skill_p85_origins')} for P85 "
              f"and {num('brier_skill_p95_origins')} for P95 (above 0: better than always forecasting the base "
              "rate).")
    if "calibration_origins" in t and len(t["calibration_origins"]):
        cal.add(table_html("calibration_origins", t["calibration_origins"],
                           caption="Calibration with the observation noise per origin and pooled (truth_*: the "
                                   "products' probabilities against the noise-free truth)"))
    return cal


def _tiers_section(t: dict[str, pd.DataFrame], fig: Callable[[str, str], str]) -> Section:
    tiers = Section("tiers", "Decision tiers")
    tiers.add(fig("tiers", "Tiered decision strategy: susceptibility class and uncertainty tercile."),
              table_html("tiers", t["tiers"], caption="Area per tier"))
    return tiers


def final_reference(d: np.ndarray, years: np.ndarray, *, history: int, horizon: int) -> bl.Fits:
    """The reference's fits at the last epoch of ``d (t, y, x)`` (the cube's: the products' anchor), with
    hindcast errors, as the products fitted it: what :func:`step_note` and :func:`width_note` read."""
    return bl.fits(d, years, d.shape[0] - 1, horizon, history=history, hindcast=bl.HINDCAST_ORIGINS, reference=True)


def step_note(ref: bl.Fits, d: np.ndarray, *, history: int, km2: float) -> str | None:
    """What :func:`insarcast.baselines.with_steps` removed from the reference ``ref`` (:func:`final_reference`
    of ``d (t, y, x)``): a sentence naming the pixels whose recent series jumps, or None."""
    anchor = d.shape[0] - 1
    step = ref.step
    found = np.abs(step[np.isfinite(step) & (step != 0)])
    if found.size == 0:
        return None
    return (f"at {found.size} pixels ({found.size * km2:.2f} km²) the series jumps within its last "
            f"{min(bl.STEP_SPAN * history, anchor + 1)} epochs (by {found.min():.1f} to {found.max():.1f} mm, median "
            f"{np.median(found):.1f}), and the reference forecast there is fitted without the jump "
            "(insarcast.baselines.with_steps): a sudden movement of the ground, or an unwrapping error or a change "
            "of the points behind the cell, worth checking in the EGMS points")


def final_widths(ref: bl.Fits, d: np.ndarray, *, history: int, horizon: int) -> np.ndarray:
    """``(y, x)`` the spatial filter's widths at the last epoch of ``d (t, y, x)`` (the products' anchor), chosen
    by hindcast (:func:`insarcast.udf.inputs.hindcast_widths` of the reference ``ref``, :func:`final_reference`):
    what :func:`width_note` and :func:`front_note` read."""
    from insarcast.udf.inputs import hindcast_widths

    finite = np.isfinite(d).all(axis=0)
    return hindcast_widths(ref, d, d.shape[0] - 1, horizon=horizon, history=history, valid=finite)


def width_note(ref: bl.Fits, d: np.ndarray, *, history: int, horizon: int, widths: np.ndarray | None = None) -> str:
    """The share of the valid pixels of ``d (t, y, x)`` at each of the spatial filter's widths
    (:func:`final_widths`, computed here unless given)."""
    from insarcast.udf.spatial import WIDTHS

    finite = np.isfinite(d).all(axis=0)
    if widths is None:
        widths = final_widths(ref, d, history=history, horizon=horizon)
    widths = np.asarray(widths)[finite]
    shares = np.bincount(widths, minlength=len(WIDTHS)) / max(widths.size, 1)
    names = ["the 3 x 3 binomial kernel" if w == "binomial" else f"a Gaussian of sigma {w:g} cells" for w in WIDTHS]
    return ("the spatial filter's width, chosen at each pixel by the hindcast of its 31 x 31-cell neighbourhood "
            "(insarcast.udf.spatial; wide where the forecast's noise dominates, narrow where the ground varies "
            "faster): " + ", ".join(f"{name} on {100 * share:.0f} %" for name, share in zip(names, shares))
            + " of the valid pixels")


def front_note(ref: bl.Fits, d: np.ndarray, *, history: int, horizon: int, km2: float,
               widths: np.ndarray | None = None) -> str | None:
    """Where the products carried a travelling front forward at the last epoch of ``d (t, y, x)``
    (:mod:`insarcast.udf.fronts`, with the reference ``ref`` of :func:`final_reference` through the filter at
    :func:`final_widths`, computed here unless given): a sentence, or None where no cell took it."""
    from insarcast.udf.fronts import carried
    from insarcast.udf.spatial import adaptive_filter

    finite = np.isfinite(d).all(axis=0)
    if widths is None:
        widths = final_widths(ref, d, history=history, horizon=horizon)
    reference = adaptive_filter(np.where(finite, bl.change(ref.adaptive(), history), np.nan), widths)[-1]
    carry = carried(np.where(finite, d, np.nan), reference, horizon=horizon, history=history)[-1]
    taken = np.isfinite(carry)
    if not taken.any():
        return None
    return (f"at {int(taken.sum())} pixels ({taken.sum() * km2:.2f} km²) a front that travels reaches still ground "
            f"within the horizon, and the forecast there is the settling the ground beside it underwent, carried "
            f"along the shift that matches its last {horizon} epochs (insarcast.udf.fronts; "
            f"{np.abs(carry[taken]).min():.1f} to {np.abs(carry[taken]).max():.1f} mm at the horizon): a "
            "tunnel's or a longwall's face, or a pattern the noise made, worth checking against what is known of "
            "the works there; the error scale counts its departure from the pixel's own curve")


def _provenance_section(inputs: dict, notes: list[str]) -> Section:
    prov = Section("provenance", "Inputs and notes")
    prov.add("<ul>" + "".join(f"<li>{esc(k)}: <code>{esc(v)}</code></li>" for k, v in inputs.items()
                              if v is not None) + "</ul>")
    for note in notes:
        prov.add(note_html(note))
    return prov


def _horizon_days(attrs) -> str:
    """`` = N days`` from the products' reference and valid times (the epochs' spacing varies between
    cubes: 6 days, 12 after the loss of Sentinel-1B), or nothing where either is missing."""
    try:
        days = (np.datetime64(attrs["valid_time"]) - np.datetime64(attrs["reference_time"])) / np.timedelta64(1, "D")
    except (KeyError, ValueError, TypeError):
        return ""
    return f" = {days:g} days"

