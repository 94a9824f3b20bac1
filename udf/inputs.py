"""Model inputs from displacement windows, and the way back from normalised forecasts to mm.

The ONNX contract (DESIGN.md, "Model contract") fixes the input channels; they are the ones the
training windows use (``insarcast.training.windows.CHANNELS``), restated here rather than imported
so that this package never pulls in the training side:

- channel 0, ``displacement_relative_to_last``: ``(d(t) - d(last) - input_mean) / input_std`` where
  the pixel is valid, 0 elsewhere (t runs over the T history epochs, ``last`` is the last of them);
- channel 1, ``valid``: 1.0 where the pixel is valid, 0.0 elsewhere.

A pixel is valid when its ``valid`` flag is set and its displacement is finite at all T epochs.
The arithmetic is the training's, in float32 with the statistics as Python floats, so that the
same window gives the same bytes in training and inference.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from insarcast.errors import InputError

CHANNELS = ("displacement_relative_to_last", "valid")
NORM_KEYS = ("input_mean", "input_std", "target_mean", "target_std")


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
    """Model inputs ``(N, T, C, P, P)`` float32 from windows ``displacement (N, >=T, P, P)`` in mm.

    Only the last ``history`` = T epochs are read. With ``m`` the valid mask (see :func:`history_mask`),
    ``x[:, :, 0] = where(m, (d - d[T-1] - input_mean) / input_std, 0)`` and ``x[:, :, 1] = m``,
    exactly as ``training.windows.make_sample`` builds its inputs. ``valid`` is ``(N, P, P)`` or None.
    """
    d = np.asarray(displacement)
    if d.ndim != 4:
        raise InputError(f"expected windows (N, T, P, P), got shape {d.shape}", field="displacement")
    if d.shape[1] < history:
        raise InputError(f"windows hold {d.shape[1]} epochs, fewer than the history T = {history}", field="t")
    stats = norm_values(norm)
    d = d[:, d.shape[1] - history:].astype(np.float32)
    m = history_mask(d, valid)
    relative = d - d[:, history - 1: history]
    x = np.zeros((d.shape[0], history, len(CHANNELS)) + d.shape[2:], np.float32)
    m_t = m[:, None]
    with np.errstate(invalid="ignore"):
        x[:, :, 0] = np.where(m_t, (relative - stats["input_mean"]) / stats["input_std"], 0.0)
    x[:, :, 1] = m_t
    return x


def denormalise(forecast: np.ndarray, norm: Mapping[str, Any]) -> np.ndarray:
    """Forecast in mm from normalised model output: ``forecast * target_std + target_mean``.

    The result is the change since the last observed epoch (DESIGN.md, "Model contract").
    """
    stats = norm_values(norm)
    return np.asarray(forecast) * stats["target_std"] + stats["target_mean"]
