"""What a practitioner would forecast without a network: the baselines every evaluation reports.

Each function takes a displacement series ``d`` of shape (t, ...) in mm, the epoch times in
decimal years, the anchor epoch ``a`` (last observed) and the horizon F, and returns the forecast
change ``d(a+k) - d(a)`` for k = 1..F, shape (F, ...). They read no epoch after the anchor.
"""

from __future__ import annotations

import numpy as np

BASELINES = ("persistence", "linear", "trend_annual", "seasonal_naive")


def persistence(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, **_) -> np.ndarray:
    """No further change."""
    return np.zeros((horizon, *d.shape[1:]), np.float32)


def linear(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *, history: int) -> np.ndarray:
    """The least-squares slope of the last ``history`` epochs, continued."""
    t = years[anchor - history + 1: anchor + 1]
    window = d[anchor - history + 1: anchor + 1].reshape(history, -1).astype(np.float64)
    tc = t - t.mean()
    slope = tc @ (window - window.mean(axis=0)) / (tc @ tc)
    step = years[anchor + 1: anchor + horizon + 1] - years[anchor]
    return (step[:, None] * slope).reshape(horizon, *d.shape[1:]).astype(np.float32)


def trend_annual(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, **_) -> np.ndarray:
    """Least squares of offset + trend + annual sinusoid over all epochs up to the anchor (MintPy style)."""
    def design(t: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones_like(t), t, np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])

    past = d[: anchor + 1].reshape(anchor + 1, -1).astype(np.float64)
    # One pseudo-inverse of the (epochs x 4) design for every pixel: the least-squares solution of
    # each column, a NaN staying in its own pixel, at the cost of one matrix product.
    coef = np.linalg.pinv(design(years[: anchor + 1])) @ past
    model = design(years[anchor: anchor + horizon + 1]) @ coef
    return (model[1:] - model[0]).reshape(horizon, *d.shape[1:]).astype(np.float32)


def seasonal_naive(d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, **_) -> np.ndarray:
    """The change over the same horizon one year earlier (the epoch nearest to one year before)."""
    year_before = years[anchor] - 1.0
    if year_before < years[0] - 0.5 * (years[1] - years[0]):   # less than a year of history
        return np.full((horizon, *d.shape[1:]), np.nan, np.float32)
    then = int(np.argmin(np.abs(years[: anchor + 1] - year_before)))
    return (d[then + 1: then + horizon + 1] - d[then]).astype(np.float32)


def forecast(name: str, d: np.ndarray, years: np.ndarray, anchor: int, horizon: int, *,
             history: int) -> np.ndarray:
    """The baseline ``name`` (one of :data:`BASELINES`)."""
    functions = {"persistence": persistence, "linear": linear, "trend_annual": trend_annual,
                 "seasonal_naive": seasonal_naive}
    if name not in functions:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    return functions[name](d, years, anchor, horizon, history=history)
