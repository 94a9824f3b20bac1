"""Model inputs from displacement series, and the way back from normalised forecasts to mm.

This is the one function that builds what the networks see (docs/design.md, "Model contract"):
training (:func:`insarcast.training.windows.make_sample`) and inference (:mod:`insarcast.udf.tiling`)
both call :func:`model_inputs`, so the same series gives the same bytes in both. It imports numpy
and the torch-free baselines only.

The input formulations (the manifest's ``inputs``, a model config's ``inputs``):

``paper``
    The paper's: the T history epochs, channel 0 ``displacement_relative_to_last``
    ``(d(t) - d(a) - input_mean) / input_std`` where the pixel is valid, 0 elsewhere, channel 1
    ``valid``. The target is the change ``d(a+k) - d(a)``; the reference is 0.
``residual``
    The network corrects a strong closed-form forecast instead of starting from nothing. The
    reference is the adaptive curve of :mod:`insarcast.baselines` chosen by the window-misfit rule
    (per pixel the long trend + annual fit, else the line of the last 2T epochs, else the window's
    line: the smoothest that still fits the window; :meth:`~insarcast.baselines.Fits.choice` without
    hindcast errors), and the target is
    the departure of the future observations from the reference curve, ``d(a+k) - R(a+k)``: a
    network that has learned nothing (its last layer starts at zero) forecasts the reference
    exactly, ``R(a+k) - R(a)``, the change from the current fitted level. Besides the paper's two
    channels the network sees, per epoch, the residual ``d(t) - R(t)`` and, the same at every
    epoch, what the baselines know: the window line's, the local line's and the long fit's forecast
    change at F, the reference's, the three fits' RMS misfits over the window (noise and departure
    scales) and the day of year of the anchor (sine, cosine). Every mm value is divided by
    ``input_std``.
``residual-hindcast``
    As ``residual``, but the reference is the ``adaptive`` baseline itself: the curve chosen by the
    forecast competition over the pixel's recent past (:func:`insarcast.baselines.hindcast_errors`,
    which lowered the baseline's RMSE against the truth on every benchmark scenario's deforming
    zones; the quadratic curve joined the competition after, so a 15-channel ensemble of the
    three-curve version is refused by its channel names), and the network also sees the four
    curves' RMS hindcast errors. The demo and tiny
    presets trained this one until ``residual-corrected``; ``residual`` ensembles keep their own reference.
``residual-corrected``
    As ``residual-hindcast`` (the same 16 channels), but the reference also carries the
    synthetic-truth correction of :mod:`insarcast.udf.correction`: ``R(a+k) - R(a) + c_k``, with
    ``c_k`` a small network's output from the window's channels, fitted to the noise-free truths of
    generated scenarios, shipped per T, F and P, and held to :data:`TRUST` standard errors of the
    adaptive forecast (``|c_k| <= TRUST * s_k``, ``s_k`` = :meth:`insarcast.baselines.Fits.adaptive_scale`,
    the fit's own part of the products' ``forecast_scale``): beyond the physics it was fitted on the network extrapolates
    (an annual cycle of 12 mm, beyond the scenarios' 8, made stable ground 6 x worse), and a
    correction larger than the pixel's own data can tell is not trusted. The target is what is left,
    ``d(a+k) - R(a+k) - c_k``; an untrained network forecasts the corrected reference. The demo and
    tiny presets train this one.

A pixel is valid when its ``valid`` flag is set and its displacement is finite at all T history
epochs; the residual formulation reads every epoch up to the anchor (the long fit), and a pixel with
a gap before the window falls back to the window's line. Invalid pixels are 0 in every channel.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import numpy as np

from insarcast.baselines import HINDCAST_ORIGINS, Fits, change, fits, hindcast_epochs
from insarcast.contract import PAPER_CHANNELS
from insarcast.errors import InputError

from .correction import EPOCH_DAYS as CORRECTION_EPOCH_DAYS, LAGS, features as correction_features, \
    identity as correction_identity, shipped as shipped_correction
from .spatial import adaptive_filter, filter_widths as choose_widths

INPUTS: dict[str, tuple[str, ...]] = {
    "paper": PAPER_CHANNELS,
    "residual": PAPER_CHANNELS + ("residual_to_reference", "linear_forecast", "local_forecast",
                                  "trend_annual_forecast", "reference_forecast", "window_misfit", "local_misfit",
                                  "long_fit_misfit", "anchor_doy_sin", "anchor_doy_cos"),
}
INPUTS["residual-hindcast"] = INPUTS["residual"] + ("linear_hindcast_rms", "local_hindcast_rms", "long_fit_hindcast_rms",
                                                   "quadratic_hindcast_rms")
INPUTS["residual-corrected"] = INPUTS["residual-hindcast"]
#: A window's first DYNAMIC channels change from epoch to epoch (the paper's two and the residual to the
#: reference); the others (:func:`static_channels`) are the fits at the anchor, the same at every epoch.
DYNAMIC = 3
TARGETS = {"paper": "change d(a+k) - d(a)",
           "residual": "residual d(a+k) - R(a+k) to the adaptive curve chosen by window misfit",
           "residual-hindcast": "residual d(a+k) - R(a+k) to the adaptive baseline (curve chosen by hindcast)",
           "residual-corrected": "residual d(a+k) - R(a+k) - c_k to the adaptive baseline plus the synthetic-truth "
                                 "correction c_k (insarcast.udf.correction)"}
#: Whether the members' forecast maps of formulation ``inputs`` are smoothed by
#: :func:`insarcast.udf.spatial.adaptive_filter` (:func:`insarcast.udf.tiling.forecast_block`), at the
#: widths :func:`filter_widths` chooses (the binomial kernel for formulations without a hindcast). The
#: paper's formulation stays as the paper has it; so does ``residual``, kept for the ensembles trained
#: with it.
SPATIAL_FILTER = {"paper": False, "residual": False, "residual-hindcast": True, "residual-corrected": True}
#: The formulations whose reference is chosen by the hindcast competition.
HINDCAST_INPUTS = ("residual-hindcast", "residual-corrected")
# residual-corrected: the largest correction, in standard errors of the adaptive forecast (bench/terciles.py:
# 2 keeps -21 % of the demo's -25 % and turns +100 % on the beyond-family scenario into -6 %)
TRUST = 2.0
CHANNELS = PAPER_CHANNELS            # the paper's contract (ensembles without an ``inputs`` key)
NORM_KEYS = ("input_mean", "input_std", "target_mean", "target_std")


#: How :func:`model_inputs` scales each channel, by name: ``z-score`` (``(v - input_mean) / input_std``),
#: ``scale`` (``v / input_std``: the mm values besides the displacement) or None (used as built: the
#: validity flag and the anchor's day of year). :func:`channel_scaling` gives the statistics; the STAC
#: model Items publish them as MLM ``value_scaling`` (insarcast.stac.model_item).
SCALING: dict[str, str | None] = {
    "displacement_relative_to_last": "z-score", "valid": None, "anchor_doy_sin": None, "anchor_doy_cos": None,
    **{name: "scale" for name in INPUTS["residual-hindcast"][2:] if not name.startswith("anchor_doy")},
}


def channel_scaling(inputs: str, norm: Mapping[str, Any]) -> list[tuple[str, str | None, dict[str, float]]]:
    """``(channel, kind, statistics)`` per channel of formulation ``inputs``, in channel order: kind
    ``z-score`` with ``mean``/``stddev``, ``scale`` with ``value`` (the divisor), None with no statistics."""
    stats = norm_values(norm)
    out = []
    for name in INPUTS[check_inputs(inputs)]:
        kind = SCALING[name]
        params = ({"mean": stats["input_mean"], "stddev": stats["input_std"]} if kind == "z-score" else
                  {"value": stats["input_std"]} if kind == "scale" else {})
        out.append((name, kind, params))
    return out


class ModelInputs(NamedTuple):
    """``x (N, T, C, P, P)`` float32 normalised; ``reference (N, F, P, P)`` float32 mm, the reference
    forecast of the change (0 for ``paper``); ``level (N, P, P)`` float32 mm, ``R(a) - d(a)`` (0 for
    ``paper``). A forecast in mm is ``denormalise(output) + reference``; the training target of a
    change ``c = d(a+k) - d(a)`` is ``normalise(c - level - reference)``."""

    x: np.ndarray
    reference: np.ndarray
    level: np.ndarray


def hindcast_origins(inputs: str) -> int:
    """How many past origins choose the reference curve of formulation ``inputs`` (0: the misfit rule)."""
    return HINDCAST_ORIGINS if inputs in HINDCAST_INPUTS else 0


def reference_fits(fitted: Fits, inputs: str) -> Fits:
    """The fits whose adaptive curve is the reference of formulation ``inputs``, from
    :func:`insarcast.baselines.fits` computed with hindcast errors or without: ``residual`` ensembles
    keep the misfit rule they were trained with."""
    return fitted if hindcast_origins(inputs) else fitted._replace(hindcast=None)


def reference_curve(fitted: Fits, inputs: str) -> np.ndarray:
    """The reference curve ``R`` (T + F, ...) of formulation ``inputs`` (:func:`reference_fits`)."""
    return reference_fits(fitted, inputs).adaptive()


def uses_spatial_filter(inputs: str, asked: bool | None = None) -> bool:
    """Whether the members of formulation ``inputs`` are filtered: ``asked`` when given (a user's
    choice), else :data:`SPATIAL_FILTER` of ``inputs``."""
    return SPATIAL_FILTER[check_inputs(inputs)] if asked is None else bool(asked)


def carries_fronts(inputs: str, asked: bool | None = None) -> bool:
    """Whether the products of formulation ``inputs`` carry a travelling front forward
    (:mod:`insarcast.udf.fronts`): where its members are filtered at widths chosen by hindcast."""
    return uses_spatial_filter(inputs, asked) and hindcast_origins(inputs)


def static_channels(inputs: str) -> tuple[str, ...]:
    """The channels of formulation ``inputs`` that :func:`model_inputs` repeats at every epoch of a window
    (none for the paper's): the last ones, after :data:`DYNAMIC`."""
    return INPUTS[inputs][DYNAMIC:]


def check_inputs(name: Any) -> str:
    if name not in INPUTS:
        raise InputError(f"expected one of {', '.join(INPUTS)}, got {name!r}", field="inputs")
    return name


def norm_values(norm: Mapping[str, Any] | Any) -> dict[str, float]:
    """The four normalisation statistics as Python floats, from a mapping (or an object with ``to_dict``)."""
    if hasattr(norm, "to_dict") and not isinstance(norm, Mapping):
        norm = norm.to_dict()
    missing = [k for k in NORM_KEYS if k not in norm]
    if missing:
        raise InputError(f"normalisation is missing {missing}; expected keys {list(NORM_KEYS)}", field="norm")
    values = {k: float(norm[k]) for k in NORM_KEYS}
    bad = [k for k, v in values.items() if not np.isfinite(v)] + \
          [k for k in ("input_std", "target_std") if values[k] <= 0]
    if bad:
        raise InputError(f"normalisation statistics {bad} must be finite (and the stds positive)", field="norm")
    return values


def history_mask(displacement: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Valid pixels of windows ``(..., T, P, P)``: ``valid`` and finite at every epoch. ``(..., P, P)`` bool."""
    mask = np.isfinite(displacement).all(axis=-3)
    if valid is not None:
        mask &= np.asarray(valid, bool)
    return mask


def history_inputs(displacement: np.ndarray, valid: np.ndarray | None, *, history: int,
                   norm: Mapping[str, Any]) -> np.ndarray:
    """The paper's inputs ``(N, T, 2, P, P)``: :func:`model_inputs` with ``inputs="paper"``."""
    return model_inputs(displacement, valid, history=history, horizon=1, norm=norm).x


def _check_windows(d: np.ndarray, history: int) -> np.ndarray:
    d = np.asarray(d)
    if d.ndim != 4:
        raise InputError(f"expected windows (N, T, P, P), got shape {d.shape}", field="displacement")
    if d.shape[1] < history:
        raise InputError(f"windows hold {d.shape[1]} epochs, fewer than the history T = {history}", field="t")
    return d


def model_inputs(displacement: np.ndarray, valid: np.ndarray | None, *, history: int, horizon: int,
                 norm: Mapping[str, Any], inputs: str = "paper", years: np.ndarray | None = None) -> ModelInputs:
    """What the network of formulation ``inputs`` sees, from ``displacement (N, t, P, P)`` in mm.

    The anchor is the last epoch. ``paper`` reads the last ``history`` = T epochs; ``residual`` reads
    all of them and needs ``years (t,)``, the epochs' times in decimal years. ``valid`` is
    ``(N, P, P)`` or None. See the module docstring for the channels.
    """
    d = _check_windows(displacement, history)
    stats = norm_values(norm)
    inputs = check_inputs(inputs)
    n, _, p, q = d.shape
    window = d[:, d.shape[1] - history:].astype(np.float32)
    m = history_mask(window, valid)
    x = np.zeros((n, history, len(INPUTS[inputs]), p, q), np.float32)
    relative = window - window[:, history - 1: history]
    m_t = m[:, None]
    with np.errstate(invalid="ignore"):
        x[:, :, 0] = np.where(m_t, (relative - stats["input_mean"]) / stats["input_std"], 0.0)
    x[:, :, 1] = m_t
    if inputs == "paper":
        return ModelInputs(x, np.zeros((n, horizon, p, q), np.float32), np.zeros((n, p, q), np.float32))
    if years is None or len(years) != d.shape[1]:
        raise InputError(f"the residual inputs need the times of all {d.shape[1]} epochs", field="t")
    anchor = d.shape[1] - 1
    f = fits(np.moveaxis(d, 1, 0), np.asarray(years, np.float64), anchor, horizon, history=history,
             hindcast=hindcast_origins(inputs), reference=True)
    curve = reference_curve(f, inputs)                                    # (T + F, N, P, P)
    scale = stats["input_std"]
    last = window[:, -1].astype(np.float64)
    angle = 2 * np.pi * (float(years[anchor]) % 1.0)
    static_mm = np.stack([                                               # (N, 9 or 13, P, P), mm but the doy
        f.linear[-1] - f.linear[history - 1],
        f.local[-1] - f.local[history - 1],
        f.long[-1] - f.long[history - 1],
        curve[-1] - curve[history - 1],
        f.window_misfit,
        f.local_misfit,
        f.long_misfit,
        np.full((n, p, q), np.sin(angle)),
        np.full((n, p, q), np.cos(angle)),
        *([] if f.hindcast is None else np.sqrt(f.hindcast)),
    ], axis=1)
    keep = m[:, None] & np.isfinite(static_mm)
    static_mm = np.where(keep, static_mm, 0.0)
    divisor = np.array([1.0 if SCALING[c] is None else scale for c in static_channels(inputs)])[:, None, None]
    x[:, :, DYNAMIC:] = (static_mm / divisor)[:, None]
    residual_mm = f.without_step(np.moveaxis(window, 1, 0), anchor) - curve[:history]   # (T, N, P, P)
    ok = m_t & np.isfinite(residual_mm).transpose(1, 0, 2, 3)
    with np.errstate(invalid="ignore"):
        x[:, :, 2] = np.where(ok, residual_mm.transpose(1, 0, 2, 3) / scale, 0.0)
    change_ = np.moveaxis(change(curve, history), 0, 1)
    reference = np.where(m[:, None] & np.isfinite(change_), change_, 0.0)
    if inputs == "residual-corrected":
        lags = np.where(ok, residual_mm.transpose(1, 0, 2, 3), 0.0)[:, history - LAGS:][:, ::-1]
        bound = TRUST * np.nan_to_num(np.moveaxis(f.adaptive_scale(), 0, 1))          # (N, F, P, P)
        days = epoch_days(years[:anchor + 1])
        reference = reference + np.clip(_correction(history, horizon, p, q, inputs, days).predict(
            correction_features(static_mm, lags, m), m), -bound, bound)
    level_ = curve[history - 1] - last
    level = np.where(m & np.isfinite(level_), level_, 0.0)
    return ModelInputs(x, reference.astype(np.float32), level.astype(np.float32))


def pinned_correction(inputs: str, *, history: int, horizon: int, patch: int,
                      epoch_days: float = CORRECTION_EPOCH_DAYS) -> dict[str, str] | None:
    """``{file, sha256}`` of the shipped correction a model of formulation ``inputs`` learns on over epochs
    ``epoch_days`` apart (what its run records and its ensemble's manifest pins), None but for
    ``residual-corrected``."""
    if inputs != "residual-corrected":
        return None
    return correction_identity(history=history, horizon=horizon, patch=patch, epoch_days=epoch_days)


def epoch_days(years: np.ndarray) -> float:
    """The median spacing of the epochs ``years`` (decimal years of 365.25 days), in days: which shipped
    correction applies (:func:`insarcast.udf.correction.file_name`)."""
    y = np.asarray(years, np.float64)
    return float(np.median(np.diff(y))) * 365.25 if y.size > 1 else float(CORRECTION_EPOCH_DAYS)


def _correction(history: int, horizon: int, p: int, q: int, inputs: str, days: float):
    if p != q:
        raise InputError(f"the synthetic-truth correction needs square windows, got {p} x {q}", field="patch")
    return shipped_correction(history=history, horizon=horizon, patch=p, static=static_channels(inputs), epoch_days=days)


def reference_scale(displacement: np.ndarray, years: np.ndarray, *, history: int, horizon: int,
                    inputs: str = "residual") -> np.ndarray:
    """The reference's error scale ``(F, y, x)`` float32 mm of formulation ``inputs`` from
    ``displacement (t, y, x)`` (anchor: the last epoch): :meth:`insarcast.baselines.Fits.adaptive_scale`,
    per pixel, NaN where the series is not finite (:func:`reference_fit`)."""
    return reference_fit(displacement, years, history=history, horizon=horizon, inputs=inputs)[:horizon]


def reference_fit(displacement: np.ndarray, years: np.ndarray, *, history: int,
                  horizon: int, inputs: str = "residual") -> np.ndarray:
    """``(2F + 1, y, x)`` float32 from ``displacement (t, y, x)`` (anchor: the last epoch): the reference's
    error scale in mm (:meth:`insarcast.baselines.Fits.adaptive_scale`, NaN where the series is not
    finite), its forecast change ``R(a+k) - R(a)`` in mm as the members' reference holds it, without the
    synthetic-truth correction (NaN where not finite), and the spatial filter's width at each pixel
    (:func:`filter_widths`, an index of :data:`insarcast.udf.spatial.WIDTHS`): what
    :func:`forecast_scale` takes. The width reads :data:`insarcast.udf.spatial.CHOICE_RADIUS` cells
    around the pixel."""
    d = np.asarray(displacement)
    f = fits(d, np.asarray(years, np.float64), d.shape[0] - 1, horizon, history=history,
             hindcast=hindcast_origins(inputs), reference=True)
    finite = np.isfinite(d).all(axis=0)
    scale = np.where(finite, f.adaptive_scale(), np.nan)
    widths = (hindcast_widths(f, d, d.shape[0] - 1, horizon=horizon, history=history, valid=finite)
              if hindcast_origins(inputs) and d.ndim == 3 else np.zeros(d.shape[1:], np.int8))   # a map: (t, y, x)
    return np.concatenate([scale, change(reference_curve(f, inputs), history), widths[None]]).astype(np.float32)


def filter_widths(displacement: np.ndarray, years: np.ndarray, *, history: int, horizon: int,
                  inputs: str = "residual") -> np.ndarray:
    """``(y, x)`` int8: the spatial filter's width at each pixel of ``displacement (t, y, x)`` (anchor: the
    last epoch), an index of :data:`insarcast.udf.spatial.WIDTHS` (:func:`insarcast.udf.spatial.filter_widths`
    on the reference's hindcast maps); 0, the binomial kernel, where the formulation has no hindcast."""
    return reference_fit(displacement, years, history=history, horizon=horizon, inputs=inputs)[-1].astype(np.int8)


def hindcast_widths(f: Fits, d: np.ndarray, anchor: int, *, horizon: int, history: int,
                    valid: np.ndarray) -> np.ndarray:
    """``(y, x)`` int8: :func:`insarcast.udf.spatial.filter_widths` of the reference ``f`` (fitted at ``anchor``
    with hindcast errors) from its hindcast maps and the changes ``d (t, y, x)`` observed at their origins,
    over the ``valid (y, x)`` cells."""
    bs = hindcast_epochs(anchor, horizon, history, len(f.hindcast_change))
    observed = np.stack([d[b + horizon] - d[b] for b in bs]) if bs else np.zeros((0,) + d.shape[1:])
    return choose_widths(np.where(valid, f.adaptive_hindcast(), np.nan), observed)


def forecast_scale(fitted: np.ndarray, median: np.ndarray, *, spatial_filter: bool) -> np.ndarray:
    """The products' ``forecast_scale (F, y, x)`` float32 mm: ``sqrt(s^2 + (m - r)^2)`` from
    :func:`reference_fit` (``s`` and ``r``, the reference's change, through the members' spatial filter
    at its widths when they have one) and the ensemble median ``m (F, y, x)``; NaN where ``m`` or ``s`` is.

    ``s`` is the error of what the pixel's own series supports; ``m - r`` is what the forecast adds to
    it, learnt elsewhere (the synthetic-truth correction, the networks' residual), which the pixel's
    data cannot confirm: it counts as one standard error of its own size. Measured against the
    noise-free truth (the corrected reference at F over five test origins, as ``bench/terciles.py``
    makes it), the products' central 80 % held 0.37 to 0.52 of the true change on scenarios unlike the
    correction's family with ``s`` alone, 0.80 to 0.86 with this (and 0.86 to 0.92 on the others,
    against 0.72 to 0.87); ``bench/skill.py``'s ensemble, 0.81 to 0.91 on all fourteen."""
    steps = fitted.shape[0] // 2
    scale, reference = fitted[:steps], fitted[steps:2 * steps]
    ok = np.isfinite(median)
    reference = np.where(ok & np.isfinite(reference), reference, np.float32(np.nan))
    if spatial_filter:
        reference = adaptive_filter(reference, fitted[2 * steps])
    departure = np.where(np.isfinite(reference), median - reference, 0.0)
    return np.where(ok, np.sqrt(scale.astype(np.float64) ** 2 + departure ** 2), np.nan).astype(np.float32)


def denormalise(forecast: np.ndarray, norm: Mapping[str, Any]) -> np.ndarray:
    """Forecast in mm from normalised model output: ``forecast * target_std + target_mean``.

    For the ``paper`` inputs this is the change since the last observed epoch; for ``residual``
    add the reference forecast (:class:`ModelInputs`).
    """
    stats = norm_values(norm)
    return np.asarray(forecast) * stats["target_std"] + stats["target_mean"]
