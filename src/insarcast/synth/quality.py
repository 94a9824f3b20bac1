"""EGMS-style per-point quality columns, from a least-squares fit of each point's series.

For epochs t (years, centred on the middle of the period so that the linear term is the mean
velocity over the period) the model is

    d(t) = b0 + b1 t + b2 t² + b3 cos 2πt + b4 sin 2πt,

fitted to every point at once (one pseudo-inverse for all points). Then
mean_velocity = b1, acceleration = 2 b2, seasonality = √(b3² + b4²), rmse = σ̂ = √(RSS/(T − 5)),
and the standard deviations come from Cov(b) = σ̂² (XᵀX)⁻¹ (the seasonality's by propagation:
var = gᵀ C g with g = (b3, b4)/seasonality and C the cos/sin block of Cov(b)).
"""

from __future__ import annotations

import numpy as np

N_PARAMS = 5


def design_matrix(years: np.ndarray) -> np.ndarray:
    """(T, 5) columns [1, t, t², cos 2πt, sin 2πt] with t centred on the middle of the period."""
    years = np.asarray(years, dtype=np.float64)
    t = years - 0.5 * (years[0] + years[-1])
    return np.column_stack([np.ones_like(t), t, t * t, np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)])


def quality_columns(values: np.ndarray, years: np.ndarray) -> dict[str, np.ndarray]:
    """rmse, mean_velocity(_std), acceleration(_std), seasonality(_std) of (n, T) series in mm.

    Velocities are mm/yr, accelerations mm/yr², seasonal amplitudes mm; float32 arrays of (n,).
    Needs T > 5 epochs.
    """
    x = design_matrix(years)
    n_epochs = x.shape[0]
    if n_epochs <= N_PARAMS:
        raise ValueError(f"quality columns need more than {N_PARAMS} epochs, got {n_epochs}")
    # float32 products (BLAS sgemm): errors ~1e-4 mm on series of a few metres at most, far
    # below the 0.01 to which the columns are written, at half the memory of float64.
    y = np.asarray(values, dtype=np.float32)
    coef = y @ np.ascontiguousarray(np.linalg.pinv(x).T, dtype=np.float32)  # (n, 5)
    resid = y - coef @ np.ascontiguousarray(x.T, dtype=np.float32)
    var = np.einsum("ij,ij->i", resid, resid, dtype=np.float64) / (n_epochs - N_PARAMS)
    coef = coef.astype(np.float64)
    inv = np.linalg.inv(x.T @ x)
    amp = np.hypot(coef[:, 3], coef[:, 4])
    safe = np.where(amp > 0, amp, 1.0)
    g3, g4 = coef[:, 3] / safe, coef[:, 4] / safe
    season_var = g3 * g3 * inv[3, 3] + 2 * g3 * g4 * inv[3, 4] + g4 * g4 * inv[4, 4]
    season_var = np.where(amp > 0, season_var, 0.5 * (inv[3, 3] + inv[4, 4]))
    out = {
        "rmse": np.sqrt(var),
        "mean_velocity": coef[:, 1],
        "mean_velocity_std": np.sqrt(var * inv[1, 1]),
        "acceleration": 2.0 * coef[:, 2],
        "acceleration_std": 2.0 * np.sqrt(var * inv[2, 2]),
        "seasonality": amp,
        "seasonality_std": np.sqrt(var * season_var),
    }
    return {name: column.astype(np.float32) for name, column in out.items()}
