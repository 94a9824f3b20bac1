"""Forecast skill in millimetres over valid pixels: RMSE, MAE and R², overall and per horizon step.

The metrics are built from sums (count, sum of e, e², |e|, y, y² per horizon step), so that shards
of the test windows on several ranks add up to exactly the metrics of all windows.
R² = 1 - SSE / SST with SST the spread of the observed change around its mean over the same pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_FIELDS = ("n", "e", "e2", "abs_e", "y", "y2")


class SkillSums:
    """Running sums per horizon step; ``add`` forecasts and observations (F, ...) with a mask."""

    def __init__(self, horizon: int):
        self.sums = np.zeros((len(_FIELDS), horizon), np.float64)

    def add(self, forecast: np.ndarray, observed: np.ndarray, mask: np.ndarray) -> None:
        """forecast, observed (B, F, ...) in mm; mask broadcastable to them, True where counted."""
        keep = np.broadcast_to(mask, forecast.shape) & np.isfinite(forecast) & np.isfinite(observed)
        axes = tuple(i for i in range(forecast.ndim) if i != 1)
        e = np.where(keep, forecast.astype(np.float64) - observed, 0.0)
        y = np.where(keep, observed.astype(np.float64), 0.0)
        for i, v in enumerate((keep, e, e * e, np.abs(e), y, y * y)):
            self.sums[i] += v.sum(axis=axes)

    def result(self) -> dict[str, Any]:
        return skill(self.sums)


def skill(sums: np.ndarray) -> dict[str, Any]:
    """Metrics from the (6, F) sums: overall and per horizon step."""
    def metrics(s: np.ndarray) -> dict[str, float]:
        n, e, e2, abs_e, y, y2 = s
        if n == 0:
            return {"n": 0, "rmse": float("nan"), "mae": float("nan"), "r2": float("nan"), "bias": float("nan")}
        sst = y2 - y * y / n
        return {"n": int(n), "rmse": float(np.sqrt(e2 / n)), "mae": float(abs_e / n),
                "r2": float(1.0 - e2 / sst) if sst > 0 else float("nan"), "bias": float(e / n)}

    overall = metrics(sums.sum(axis=1))
    steps = [metrics(sums[:, k]) for k in range(sums.shape[1])]
    overall["per_horizon"] = {key: [s[key] for s in steps] for key in ("rmse", "mae", "r2")}
    return overall
