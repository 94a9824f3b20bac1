"""The synthetic-truth correction of the reference: what the ``residual-corrected`` inputs add to it.

The adaptive baseline (:mod:`insarcast.baselines`) fits each pixel's own series, so its forecast
misses what only the ground's physics knows: a trough that is still deepening under a face, a fault
block that keeps accelerating, the smoothing of the gridding. The networks cannot learn that from
the observations: their targets carry 2.8 mm of noise per epoch, against a correction of a few
tenths of a millimetre, and a correction fitted to observed targets gains nothing against the truth
(``bench/oracle.py``). A synthetic scenario has a noise-free truth, so the correction is learnt there:
a small neural network per pixel (:class:`Correction`: two hidden layers of 96 SiLU units, about
14,600 weights), from what the model inputs know of a pixel to the change the truth asks of the
reference at each of the F steps, fitted over generated scenarios
(:mod:`insarcast.training.correction`) and shipped with the package (``udf/corrections/*.json``, one
file per T, F and P). A linear map (a ridge regression) was shipped first: it cannot be 0 on stable
ground and large where the ground moves at once, and cost 10 to 19 % of error on stable ground
(``bench/terciles.py``); the network does not.

Features, per pixel of one P x P window (the same window the networks see, so training and the
UDF compute the same values): the 13 constant channels of ``residual-hindcast`` and the last 3
residuals to the reference, in mm, and their means over the valid cells of the
:data:`NEIGHBOURHOODS` (a box clipped to the window: cells outside it count as invalid, as they do
for the networks). The reference of ``residual-corrected`` is ``R(a+k) - R(a) + c_k`` and the
networks learn what is left.

numpy only: the UDF never imports torch to run the correction, nor scipy for the box mean.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from insarcast.errors import InputError

FORMAT, VERSION = "insarcast-correction", 2
NEIGHBOURHOODS = (3, 5)          # box sizes of the neighbourhood means (cells)
LAGS = 3                         # the last residuals among the features
PACKAGE = "insarcast.udf"
FOLDER = "corrections"
#: The epoch spacing (days) of the files named without a ``-D`` suffix: EGMS's and the paper's 6 days.
EPOCH_DAYS = 6


def file_name(*, history: int, horizon: int, patch: int, epoch_days: float = EPOCH_DAYS) -> str:
    """The shipped correction for windows of T, F and P over epochs ``epoch_days`` apart (a ``-D``
    suffix but for :data:`EPOCH_DAYS`)."""
    days = int(round(epoch_days))
    return f"synthetic-T{history}-F{horizon}-P{patch}{'' if days == EPOCH_DAYS else f'-D{days}'}.json"


def feature_names(static: tuple[str, ...]) -> tuple[str, ...]:
    """The features' names, in order, from the names of the constant channels."""
    own = static + tuple(f"residual_lag{j}" for j in range(LAGS))
    return own + tuple(f"{name}_mean{size}" for size in NEIGHBOURHOODS for name in own)


def box_mean(values: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values (..., P, Q)`` over the valid cells of the ``size`` x ``size`` box around each
    cell, clipped to the window; 0 where the box holds no valid cell. Integral images, float64."""
    return box_means(values, valid, (size,))[0]


def box_means(values: np.ndarray, valid: np.ndarray, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """:func:`box_mean` for each of ``sizes`` from one integral image of the values and one of ``valid``
    (which may broadcast against ``values``, e.g. one mask for every channel: its counts are summed once)."""
    r = max(sizes) // 2

    def table(a: np.ndarray) -> np.ndarray:
        return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(r + 1, r), (r + 1, r)]).cumsum(-2).cumsum(-1)

    counts, sums = table(np.asarray(valid, np.float64)), table(np.where(valid, values, 0.0).astype(np.float64))
    p, q = values.shape[-2:]
    out = []
    for size in sizes:
        h = size // 2
        hi, lo = slice(r + 1 + h, r + 1 + h + p), slice(r - h, r - h + p)
        hj, lj = slice(r + 1 + h, r + 1 + h + q), slice(r - h, r - h + q)

        def box(t: np.ndarray) -> np.ndarray:
            return t[..., hi, hj] - t[..., lo, hj] - t[..., hi, lj] + t[..., lo, lj]

        count = box(counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(count > 0.5, box(sums) / np.maximum(count, 1.0), 0.0))
    return out


def features(static: np.ndarray, residuals: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(N, n_features, P, P)`` float64 from the constant channels ``static (N, S, P, P)`` and the
    last residuals ``residuals (N, LAGS, P, P)``, both in mm and 0 where invalid, and ``valid (N, P, P)``."""
    own = np.concatenate([static, residuals], axis=1).astype(np.float64)
    return np.concatenate([own, *box_means(own, valid[:, None], NEIGHBOURHOODS)], axis=1)


def silu(v: np.ndarray) -> np.ndarray:
    """``v * sigmoid(v)`` (torch's ``SiLU``) as ``v / 2 * (1 + tanh(v / 2))``, without overflow warnings for
    large negative ``v``; two temporaries instead of four (the same bytes, 8 -> 5 ms per 50,000 x 96)."""
    half = v * np.asarray(0.5, v.dtype)
    t = np.tanh(half)
    t += 1
    half *= t
    return half


@dataclass(frozen=True)
class Correction:
    """A fitted correction: a small multilayer perceptron per pixel, ``c = L_m(silu(... silu(L_1(z))))
    * output_scale`` with ``z = (f - mean) / std`` and ``L_i(v) = v W_i^T + b_i``; the last layer has F
    outputs, the change at k = 1..F. Without hidden layers it is a linear map."""

    history: int
    horizon: int
    patch: int
    features: tuple[str, ...]
    mean: np.ndarray            # (n,)
    std: np.ndarray             # (n,)
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]   # (W (out, in), b (out,)) per layer
    output_scale: float         # mm per unit of the last layer
    grid_spacing: float         # m, of the cubes it was fitted on
    epoch_days: float           # days between their epochs
    about: dict                 # how it was fitted: scenarios, pixel-anchors, training, command

    def predict(self, feats: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``(N, F, P, P)`` float32 mm from :func:`features` ``(N, n, P, P)``; 0 where not ``valid``."""
        valid = np.asarray(valid, bool)
        v = ((np.moveaxis(feats, 1, -1)[valid] - self.mean) / self.std).astype(np.float32)   # (valid pixels, n)
        for i, (w, b) in enumerate(self.layers):           # float32, as it was fitted (torch): half the time
            v = v @ w.T.astype(np.float32) + b.astype(np.float32)
            if i < len(self.layers) - 1:
                v = silu(v)
        out = np.zeros(valid.shape + (self.horizon,), np.float32)
        out[valid] = v * np.float32(self.output_scale)     # the valid pixels only: gaps and padding cost nothing
        return np.moveaxis(out, -1, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": VERSION, "history": self.history, "horizon": self.horizon,
                "patch": self.patch, "features": list(self.features), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "activation": "silu",
                "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in self.layers],
                "output_scale": self.output_scale, "grid_spacing": self.grid_spacing, "epoch_days": self.epoch_days,
                "about": self.about}

    @classmethod
    def from_dict(cls, doc: Any, *, path: str | Path | None = None,
                  static: tuple[str, ...] | None = None) -> "Correction":
        """Check and read a correction; ``static``: the constant channels its features must be built from."""
        def fail(field: str, expected: str) -> InputError:
            return InputError(f"expected {expected}", path=path, field=field)

        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version") != VERSION:
            raise fail("format", f"format {FORMAT!r} version {VERSION}")
        ints = {key: _positive(doc, key, int, fail) for key in ("history", "horizon", "patch")}
        names = doc.get("features")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise fail("features", "a list of feature names")
        if static is not None and tuple(names) != feature_names(static):
            raise fail("features", f"the {len(feature_names(static))} features built from the channels {static}")
        if doc.get("activation") != "silu":
            raise fail("activation", "'silu'")
        n = len(names)
        mean, std = (_array(doc.get(key), (n,), key, fail) for key in ("mean", "std"))
        if (std <= 0).any():
            raise fail("std", "positive standard deviations")
        layers = doc.get("layers")
        if not isinstance(layers, list) or not layers:
            raise fail("layers", "a list of layers {weight, bias}")
        parsed, width = [], n
        for i, layer in enumerate(layers):
            bias = layer.get("bias") if isinstance(layer, dict) else None
            out = ints["horizon"] if i == len(layers) - 1 else len(bias) if isinstance(bias, list) else 0
            if not isinstance(layer, dict) or out < 1:
                raise fail(f"layers[{i}]", "{weight, bias} with at least one output")
            parsed.append((_array(layer.get("weight"), (out, width), f"layers[{i}].weight", fail),
                           _array(layer.get("bias"), (out,), f"layers[{i}].bias", fail)))
            width = out
        floats = {key: _positive(doc, key, float, fail) for key in ("output_scale", "grid_spacing", "epoch_days")}
        return cls(features=tuple(names), mean=mean, std=std, layers=tuple(parsed),
                   about=dict(doc.get("about") or {}), **ints, **floats)

    def check_grid(self, *, spacing: float | None, epoch_days: float, path: str | Path | None = None) -> None:
        """Refuse a cube whose grid spacing or epoch spacing is not the one this correction was fitted on:
        its features (changes over F epochs, neighbourhoods of cells) would mean something else."""
        same = (spacing is None or abs(spacing - self.grid_spacing) <= 0.01 * self.grid_spacing) and \
            abs(epoch_days - self.epoch_days) <= 0.1 * self.epoch_days
        if not same:
            raise InputError(f"the synthetic-truth correction of the inputs 'residual-corrected' was fitted on a "
                             f"{self.grid_spacing:g} m grid with an epoch every {self.epoch_days:g} days; this cube "
                             f"has {spacing if spacing is None else f'{spacing:g}'} m and {epoch_days:g} days. "
                             "Use the inputs 'residual-hindcast' (--set model.inputs=residual-hindcast) or fit a "
                             "correction for this grid", path=path, field="inputs")


def _array(value: Any, shape: tuple[int, ...], key: str, fail) -> np.ndarray:
    try:
        array = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise fail(key, f"numbers of shape {shape}") from None
    if array.shape != shape or not np.isfinite(array).all():
        raise fail(key, f"finite numbers of shape {shape}")
    return array


def _positive(doc: dict, key: str, kind: type, fail) -> Any:
    """``doc[key]`` as a positive ``kind`` (int, or float from any number), else ``fail``'s error."""
    value = doc.get(key)
    allowed = int if kind is int else (int, float)
    if not isinstance(value, allowed) or isinstance(value, bool) or not value > 0:
        raise fail(key, "a positive integer" if kind is int else "a positive number")
    return kind(value)


def read_correction(path: str | Path, *, static: tuple[str, ...] | None = None) -> Correction:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read a correction: {exc}", path=path) from None
    return Correction.from_dict(doc, path=path, static=static)


def identity(*, history: int, horizon: int, patch: int, epoch_days: float = EPOCH_DAYS) -> dict[str, str]:
    """The shipped correction for windows of T, F and P as ``{"file", "sha256"}`` (a new dict each call):
    what a training run and an ensemble's manifest record (its members learnt what that file leaves),
    and what :func:`check_identity` compares with the installed file."""
    name = file_name(history=history, horizon=horizon, patch=patch, epoch_days=epoch_days)
    return {"file": name, "sha256": _sha256(name)}


@functools.lru_cache(maxsize=8)
def _sha256(name: str) -> str:
    import hashlib

    return hashlib.sha256((resources.files(PACKAGE) / FOLDER / name).read_bytes()).hexdigest()


def provenance(*, history: int, horizon: int, patch: int, epoch_days: float = EPOCH_DAYS) -> dict[str, str]:
    """What the products record of the shipped correction they used: its file name and sha256."""
    own = identity(history=history, horizon=horizon, patch=patch, epoch_days=epoch_days)
    return {"reference_correction": own["file"], "reference_correction_sha256": own["sha256"]}


def check_identity(recorded: dict[str, str], *, history: int, horizon: int, patch: int,
                   epoch_days: float = EPOCH_DAYS, path: str | Path | None = None) -> None:
    """Refuse an ensemble whose members were trained against another correction than the one installed:
    their outputs correct what that correction left, so under another they would add the wrong amount."""
    own = identity(history=history, horizon=horizon, patch=patch, epoch_days=epoch_days)
    if recorded.get("file") != own["file"] or recorded.get("sha256") != own["sha256"]:
        raise InputError(f"the members were trained against the correction {recorded.get('file')} (sha256 "
                         f"{recorded.get('sha256')}), but this insarcast ships {own['file']} (sha256 "
                         f"{own['sha256']}): retrain and export the ensemble with this insarcast, or forecast with "
                         "the insarcast version it was trained with", path=path, field="reference_correction.sha256")


@functools.lru_cache(maxsize=8)
def shipped(*, history: int, horizon: int, patch: int, static: tuple[str, ...],
            epoch_days: float = EPOCH_DAYS) -> Correction:
    """The correction shipped for windows of T, F and P over epochs ``epoch_days`` apart, or an error
    naming what exists."""
    folder = resources.files(PACKAGE) / FOLDER
    name = file_name(history=history, horizon=horizon, patch=patch, epoch_days=epoch_days)
    if not (folder / name).is_file():
        have = sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))
        raise InputError(f"no synthetic-truth correction is shipped for T = {history}, F = {horizon}, "
                         f"P = {patch} and {epoch_days:g}-day epochs (have {', '.join(have) or 'none'}); fit one with "
                         "'python -m insarcast.training.correction' or use the inputs 'residual-hindcast'",
                         field="inputs")
    with resources.as_file(folder / name) as path:
        return read_correction(path, static=static)
