"""Hindcast: the ensemble's forecast of the test period's last window, where observations exist.

The products of ``insarcast forecast`` look beyond the cube's last epoch, so nothing observed can be
compared with them. The hindcast runs the same ensemble, with the same tiling, on the cube cut at
an anchor epoch ``a`` (default: the last epoch index minus F, so that the F forecast epochs
``a+1 .. a+F`` are the cube's last F epochs, inside the test period of the 80/10/10 split) and
returns its products together with the observed change ``d(a+h) - d(a)``, h = 1..F, at the pixels
that are valid and finite over the history window and the F target epochs (NaN elsewhere).

The residual of a pixel at horizon h is ``median_k forecast_k(h) - observed(h)`` (forecast minus
observed: positive = the forecast overestimates the change). The hindcast always describes the
change since the anchor (mode ``change``); its thresholds are its own, computed exactly over the
region, so that exceedance probabilities and observed exceedances use the same Q85/Q95/Q99.

:func:`model_forecast` runs one torch model (a ``model.pt`` of ``insarcast train`` / ``tune``) on
the same window and tiling, for the manual-versus-TPE residual maps; torch is imported lazily.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np
import xarray as xr

from insarcast.contract import PAPER_ARCH, TEST_START     # TEST_START: training's split (Split.temporal)
from insarcast.errors import InputError, MissingDependencyError



class Hindcast(NamedTuple):
    """``products``: the Dataset of :func:`insarcast.udf.forecast.forecast_products` for the cube
    cut at the anchor (attrs ``anchor_index``, ``anchor_time``, ``test_start_index``,
    ``in_test_period`` added); ``observed``: DataArray (horizon, y, x) float32 mm, the observed
    change since the anchor, with coords ``horizon`` (1..F) and ``time`` (the observed epochs)."""

    products: xr.Dataset
    observed: xr.DataArray


def _cube(cube) -> xr.Dataset:
    from insarcast.cube import check_cube, open_cube

    if isinstance(cube, (str, os.PathLike)):
        return open_cube(cube)
    if isinstance(cube, xr.Dataset):
        return check_cube(cube)
    raise InputError(f"expected a cube path or an xarray Dataset, got {type(cube).__name__}", field="cube")


def _ensemble(ensemble):
    """An object with ``settings`` (and ``manifest``): an ensemble folder is loaded and checked."""
    if isinstance(ensemble, (str, os.PathLike)):
        from insarcast.udf.ensemble import load_ensemble

        return load_ensemble(ensemble)
    if not isinstance(getattr(ensemble, "settings", None), Mapping):
        raise InputError("expected an ensemble folder or an object with a 'settings' mapping (an Ensemble)",
                         field="ensemble")
    return ensemble


def resolve_anchor(times: np.ndarray, horizon_steps: int, history: int, anchor=None) -> int:
    """The anchor epoch index: ``len(times) - 1 - F`` by default; an int (negative counts from the
    end) or a date (the epoch at or before it). The T history epochs and F targets must exist."""
    nt = len(times)
    if anchor is None:
        a = nt - 1 - horizon_steps
    elif isinstance(anchor, (int, np.integer)) and not isinstance(anchor, bool):
        a = int(anchor) + (nt if anchor < 0 else 0)
    else:
        try:
            when = np.datetime64(anchor, "ns")
        except (ValueError, TypeError):
            raise InputError(f"expected an epoch index or a date, got {anchor!r}", field="anchor") from None
        a = int(np.searchsorted(np.asarray(times, "datetime64[ns]"), when, side="right")) - 1
    if a < history - 1 or a + horizon_steps > nt - 1:
        given = f"anchor {anchor} (epoch {a}, counted from the end)" if isinstance(anchor, (int, np.integer)) \
            and not isinstance(anchor, bool) and anchor < 0 else f"anchor epoch {a}"
        raise InputError(f"{given} leaves no room for the history T = {history} before it and the "
                         f"F = {horizon_steps} observed epochs after it (the cube has {nt} epochs; valid anchors "
                         f"{history - 1}..{nt - 1 - horizon_steps}, or {history - 1 - nt}..{-1 - horizon_steps} "
                         "counted from the end)", field="anchor")
    return a


def observed_change(displacement: np.ndarray, valid: np.ndarray | None, *, anchor_offset: int,
                    history: int, horizon_steps: int) -> np.ndarray:
    """``d(a+h) - d(a)`` for h = 1..F, (F, y, x) float32, from a window ``displacement (t, y, x)``
    whose epoch ``anchor_offset`` is the anchor; NaN unless the pixel is valid and finite over the T
    history epochs and the F targets."""
    a = anchor_offset
    window = displacement[a - history + 1: a + horizon_steps + 1]
    ok = np.isfinite(window).all(axis=0)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    change = displacement[a + 1: a + horizon_steps + 1] - displacement[a]
    return np.where(ok, change, np.nan).astype(np.float32)


def _window(ds: xr.Dataset, anchor: int, history: int, horizon_steps: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The epochs ``a-T+1 .. a+F`` of displacement (numpy float32) and valid (or None)."""
    disp = ds["displacement"].isel(t=slice(anchor - history + 1, anchor + horizon_steps + 1))
    disp = np.asarray(disp.transpose("t", "y", "x").values, np.float32)
    valid = ds.get("valid")
    valid = None if valid is None else np.asarray(valid.transpose("y", "x").values, bool)
    return disp, valid


def hindcast(cube, ensemble, *, anchor=None, overlap: int | None = None, horizon: int | None = None,
             batch_size: int = 64) -> Hindcast:
    """Forecast the F epochs after ``anchor`` with ``ensemble`` from the cube cut there; observed change.

    ``cube``: path of a Zarr cube (:func:`insarcast.cube.open_cube`) or its Dataset. ``ensemble``:
    an ensemble folder (``insarcast export``; loaded with :func:`insarcast.udf.ensemble.load_ensemble`)
    or an object with its ``settings`` (``predict``, ``history``, ``horizon_steps``, ``patch``,
    ``norm``, ``members``). ``anchor``: epoch index (negative from the end) or date; default the last
    index minus F. ``overlap``: tile overlap (default P // 4, as ``insarcast forecast``); ``horizon``:
    the step the products describe (default F). Runs the numpy path of
    :func:`insarcast.udf.forecast.forecast_products` on the T epochs up to the anchor.
    """
    from insarcast.udf.forecast import forecast_products

    ds = _cube(cube)
    ens = _ensemble(ensemble)
    settings = dict(ens.settings)
    manifest = getattr(ens, "manifest", None)
    if isinstance(manifest, Mapping):
        from insarcast.udf.run import check_compatible

        check_compatible(ds, manifest, path=cube if isinstance(cube, (str, os.PathLike)) else None)
    history, steps = int(settings["history"]), int(settings["horizon_steps"])
    times = ds["t"].values
    a = resolve_anchor(times, steps, history, anchor)
    disp, valid = _window(ds, a, history, steps)
    observed = observed_change(disp, valid, anchor_offset=history - 1, history=history, horizon_steps=steps)
    # The paper's inputs read the last T epochs; the residual ones every epoch up to the anchor (their
    # long fit is over the whole history: given only T epochs it would be the window's line).
    start = a - history + 1 if settings.get("inputs", "paper") == "paper" else 0
    past, _ = _window(ds, a, a + 1 - start, 0)
    truncated = xr.Dataset(
        {"displacement": (("t", "y", "x"), past),
         **({} if valid is None else {"valid": (("y", "x"), valid)})},
        coords={"t": times[start: a + 1], "y": ds["y"].values, "x": ds["x"].values},
    )
    if "spatial_ref" in ds.coords:
        truncated = truncated.assign_coords(spatial_ref=ds.coords["spatial_ref"])
    products = forecast_products(truncated, overlap=overlap, horizon=horizon, mode="change", batch_size=batch_size,
                                 **settings)
    nt = len(times)
    test_start = int(round(nt * TEST_START))   # as Split.temporal
    products.attrs.update(anchor_index=int(a), anchor_time=str(np.datetime_as_string(times[a], unit="s")),
                          test_start_index=int(test_start), epochs=int(nt),
                          in_test_period=int(a + 1 >= test_start))
    obs = xr.DataArray(observed, dims=("horizon", "y", "x"),
                       coords={"horizon": np.arange(1, steps + 1), "time": ("horizon", times[a + 1: a + steps + 1]),
                               "y": ds["y"].values, "x": ds["x"].values},
                       attrs={"units": "mm", "long_name": "observed change since the anchor epoch d(a+h) - d(a)"})
    return Hindcast(products=products, observed=obs)


# ------------------------------------------------------------------------------------ torch models

@dataclass(frozen=True)
class RunModel:
    """A trained model found in a tune folder: its ``model.pt`` and what its ``metrics.json`` says."""

    path: Path
    arch: str
    strategy: str
    seed: int | None
    trial: int | None
    val_loss: float


def find_models(tune_dir: str | os.PathLike) -> list[RunModel]:
    """Every ``model.pt`` below ``tune_dir`` with a readable ``metrics.json`` beside it (arch,
    strategy, val_loss), sorted by arch, strategy, validation loss, seed and path."""
    root = Path(tune_dir)
    if not root.is_dir():
        raise InputError("tune directory not found", path=root)
    found = []
    for model in sorted(root.rglob("model.pt")):
        if any(part.startswith(".tmp-") for part in model.parts):
            continue
        meta = model.with_name("metrics.json")
        try:
            doc = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        loss = doc.get("val_loss")
        if not isinstance(doc, dict) or not isinstance(doc.get("arch"), str) or not isinstance(loss, (int, float)) \
                or isinstance(loss, bool) or not math.isfinite(loss):
            continue
        found.append(RunModel(path=model, arch=doc["arch"], strategy=str(doc.get("strategy", "")),
                              seed=doc.get("seed") if isinstance(doc.get("seed"), int) else None,
                              trial=doc.get("trial") if isinstance(doc.get("trial"), int) else None,
                              val_loss=float(loss)))
    return sorted(found, key=lambda m: (m.arch, m.strategy, m.val_loss, -1 if m.seed is None else m.seed,
                                        str(m.path)))


def best_models(tune_dir: str | os.PathLike, archs=(PAPER_ARCH,)) -> dict[tuple[str, str], RunModel]:
    """The lowest-validation-loss model of each (arch, strategy) with strategy manual or tpe;
    ``archs`` None takes every architecture found."""
    best: dict[tuple[str, str], RunModel] = {}
    for m in find_models(tune_dir):
        if m.strategy not in ("manual", "tpe") or (archs is not None and m.arch not in archs):
            continue
        best.setdefault((m.arch, m.strategy), m)          # sorted: the first is the best
    return best


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("the manual-versus-TPE residual maps need torch: pip install "
                                     "'insarcast[train]'") from exc
    return torch


def torch_predictor(model, *, batch_size: int = 64):
    """``predict(x (N, T, C, P, P)) -> (1, N, F, P, P)`` float32 for one torch model (eval, no grad)."""
    torch = _torch()

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        outs = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                outs.append(model(torch.from_numpy(x[start:start + batch_size])).cpu().numpy())
        out = np.concatenate(outs) if outs else np.zeros((0,), np.float32)
        return out.astype(np.float32)[None]
    return predict


def model_forecast(path: str | os.PathLike, cube, *, anchor: int, overlap: int | None = None,
                   batch_size: int = 64) -> tuple[np.ndarray, dict[str, Any]]:
    """The forecast (F, y, x) float32 mm of one torch ``model.pt`` from the cube cut at ``anchor``
    (epoch index), tiled like the ensemble (:func:`insarcast.udf.tiling.forecast_block`, overlap
    P // 4 by default); and its settings (history, horizon, patch, normalisation)."""
    from insarcast.baselines import decimal_years
    from insarcast.training.models import load_model
    from insarcast.udf.tiling import default_overlap, forecast_block, grid_offsets

    _torch()
    ds = _cube(cube)
    model, extra = load_model(path)
    cfg = model.cfg
    norm = extra.get("normalisation")
    if not isinstance(norm, Mapping):
        raise InputError("the model file holds no normalisation statistics", path=path, field="normalisation")
    a = resolve_anchor(ds["t"].values, cfg.horizon, cfg.history, anchor)
    # the paper's inputs read the T history epochs, the residual ones every epoch up to the anchor
    disp, valid = _window(ds, a, cfg.history if cfg.inputs == "paper" else a + 1, 0)
    offset_y, offset_x = grid_offsets(ds["y"].values, ds["x"].values)       # the ensemble's tiling
    years = decimal_years(ds["t"].values[: a + 1])
    fc = forecast_block(disp, valid, offset_y=offset_y, offset_x=offset_x,
                        predict=torch_predictor(model, batch_size=batch_size), history=cfg.history,
                        horizon_steps=cfg.horizon, members=1, patch=cfg.patch,
                        overlap=default_overlap(cfg.patch) if overlap is None else int(overlap), norm=norm,
                        batch_size=batch_size, inputs=cfg.inputs, years=years[len(years) - disp.shape[0]:])
    info = {"history": cfg.history, "horizon": cfg.horizon, "patch": cfg.patch, "arch": cfg.arch}
    return fc[0], info
