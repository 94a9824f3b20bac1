"""Susceptibility and uncertainty products from an ensemble forecast (the paper's section 4.4).

Input: member forecasts ``d`` of shape ``(K, y, x)`` in mm at one horizon (see :func:`select`),
NaN where the pixel is not valid. With ``a_k = |d_k|`` and ``m = median_k d_k``:

- thresholds ``Q85, Q95, Q99``: quantiles of ``|m|`` over the valid pixels (finite ``m``), numpy's
  default linear interpolation; std terciles ``S1, S2``: quantiles 1/3 and 2/3 of ``std`` likewise.
  They are global: compute them over the whole region (:func:`thresholds`) and pass them to
  :func:`products` block by block;
- ``class``: 0 Low ``|m| < Q85``, 1 Medium ``< Q95``, 2 High ``< Q99``, 3 Highest otherwise
  (uint8, 255 where not valid); the class of a value v is the number of thresholds with v >= Q;
- ``p85, p95, p99``: ``P_tau = mean_k 1[a_k >= Q_tau]``;
- masses ``mass_low = 1 - P85``, ``mass_medium = P85 - P95``, ``mass_high = P95 - P99``,
  ``mass_highest = P99``; ``confidence`` = the mass of the assigned class;
- ``std``: population standard deviation (ddof = 0) of ``a_k`` over the K members;
- ``rank_variance``: population variance (ddof = 0) over k of the class ``a_k`` alone would get;
- ``bivariate``: ``3 * s + u`` (uint8 0..8, 255 where not valid) with susceptibility level
  ``s = min(class, 2)`` (Low, Medium, High-or-Highest) and uncertainty level ``u`` = 0 for
  ``std < S1``, 1 for ``std < S2``, 2 otherwise.

Float products are float32 and NaN where not valid.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from insarcast.contract import CLASS_NAMES, LEVEL_NAMES, NODATA
from insarcast.errors import InputError

NODATA_CLASS = NODATA
SUSCEPTIBILITY_LEVELS = LEVEL_NAMES
UNCERTAINTY_LEVELS = LEVEL_NAMES
BIVARIATE_NAMES = tuple(f"{s}_susceptibility_{u}_uncertainty"
                        for s in SUSCEPTIBILITY_LEVELS for u in UNCERTAINTY_LEVELS)
MODES = ("change", "cumulative")
FLOAT_PRODUCTS = ("std", "p85", "p95", "p99", "mass_low", "mass_medium", "mass_high", "mass_highest",
                  "confidence", "rank_variance")
CLASS_PRODUCTS = ("class", "bivariate")
PRODUCTS = ("std", "class", "p85", "p95", "p99", "mass_low", "mass_medium", "mass_high", "mass_highest",
            "confidence", "rank_variance", "bivariate")


@dataclass(frozen=True)
class Thresholds:
    """Global thresholds: quantiles 0.85/0.95/0.99 of |median| and terciles of std, in mm."""

    q85: float
    q95: float
    q99: float
    std_tercile_1: float
    std_tercile_2: float

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | "Thresholds") -> "Thresholds":
        """From a mapping with the five field names (e.g. an openEO context); checks their order."""
        if isinstance(values, Thresholds):
            values = values.to_dict()
        names = tuple(cls.__dataclass_fields__)
        missing = [n for n in names if n not in values]
        if missing:
            raise InputError(f"thresholds are missing {missing}; expected {list(names)}", field="thresholds")
        for n in names:
            if isinstance(values[n], (bool, np.bool_)) or not isinstance(values[n], numbers.Real):
                raise InputError(f"{n} must be a number (mm), got {values[n]!r}", field=n)
        th = cls(**{n: float(values[n]) for n in names})
        v = th.to_dict()
        if not all(np.isfinite(x) for x in v.values()) or not (th.q85 <= th.q95 <= th.q99) \
                or not th.std_tercile_1 <= th.std_tercile_2:
            raise InputError(f"thresholds must be finite with q85 <= q95 <= q99 and std_tercile_1 <= "
                             f"std_tercile_2, got {v}", field="thresholds")
        return th

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def levels(self) -> tuple[float, float, float]:
        return (self.q85, self.q95, self.q99)


def select(forecast: np.ndarray, *, horizon: int | None = None, mode: str = "change",
           offset: np.ndarray | None = None) -> np.ndarray:
    """Member forecasts ``(K, y, x)`` at ``horizon`` (1..F, default F) from ``forecast (K, F, y, x)``.

    ``mode="change"``: ``d_k = forecast[k, h - 1]``, the change ``d(T + h) - d(T)`` since the last
    observed epoch T. ``mode="cumulative"``: ``d_k = forecast[k, h - 1] + offset`` with ``offset (y, x)``
    = ``d(T) - d(first epoch of the cube)``, i.e. the displacement at T + h since the cube's first
    epoch (NaN wherever the first or last epoch is NaN).
    """
    horizon = check_horizon(horizon, forecast.shape[1])
    d = forecast[:, horizon - 1]
    if mode == "change":
        return d
    if mode == "cumulative":
        if offset is None:
            raise InputError("mode 'cumulative' needs the displacement offset since the first epoch",
                             field="mode")
        return d + offset
    raise InputError(f"mode must be one of {MODES}, got {mode!r}", field="mode")


def check_horizon(horizon: int | None, steps: int) -> int:
    """The 1-based horizon, default the last of ``steps``."""
    if horizon is None:
        return int(steps)
    if not 1 <= int(horizon) <= steps:
        raise InputError(f"horizon must be in 1..{steps}, got {horizon}", field="horizon")
    return int(horizon)


def member_statistics(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``|m|`` (``m = median_k d_k``) and ``std_k |d_k|`` (ddof = 0), each ``(y, x)`` float32."""
    d = np.asarray(d, np.float32)
    with np.errstate(invalid="ignore"):
        m_abs = np.abs(np.median(d, axis=0))
        std = np.abs(d).std(axis=0)
    return m_abs.astype(np.float32), std.astype(np.float32)


def thresholds(m_abs: np.ndarray, std: np.ndarray) -> Thresholds:
    """Exact global thresholds from every pixel's ``|m|`` and ``std`` (NaN = not valid, ignored).

    ``Q_tau = quantile(|m|, tau)`` for tau = 0.85, 0.95, 0.99 and ``S_i = quantile(std, i/3)``,
    numpy's default (linear) method, over the pixels where both are finite.
    """
    m_abs = np.asarray(m_abs, np.float64).ravel()
    std = np.asarray(std, np.float64).ravel()
    keep = np.isfinite(m_abs) & np.isfinite(std)
    if not keep.any():
        raise InputError("no valid pixel: every forecast is NaN (is the input all NaN?)",
                         field="displacement")
    q = np.quantile(m_abs[keep], [0.85, 0.95, 0.99])
    s = np.quantile(std[keep], [1 / 3, 2 / 3])
    return Thresholds(q85=float(q[0]), q95=float(q[1]), q99=float(q[2]),
                      std_tercile_1=float(s[0]), std_tercile_2=float(s[1]))


def classify(values: np.ndarray, levels) -> np.ndarray:
    """Number of ``levels`` that ``values`` reach (``v >= level``), int; NaN gives 0 (mask it)."""
    values = np.asarray(values)
    with np.errstate(invalid="ignore"):
        return sum((values >= level).astype(np.int64) for level in levels)


def products(d: np.ndarray, th: Thresholds | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every product of the module docstring from ``d (K, y, x)`` mm and global thresholds ``th``."""
    th = Thresholds.from_mapping(th)
    d = np.asarray(d, np.float32)
    valid = np.isfinite(d).all(axis=0)
    m_abs, std = member_statistics(d)
    a = np.abs(d)
    cls = classify(m_abs, th.levels)
    p = [classify(a, (q,)).mean(axis=0) for q in th.levels]          # P85, P95, P99
    masses = np.stack([1 - p[0], p[0] - p[1], p[1] - p[2], p[2]])
    confidence = np.take_along_axis(masses, cls[None], axis=0)[0]
    rank_variance = classify(a, th.levels).var(axis=0)
    uncertainty = classify(std, (th.std_tercile_1, th.std_tercile_2))
    bivariate = 3 * np.minimum(cls, 2) + uncertainty

    def f32(x):
        return np.where(valid, x, np.nan).astype(np.float32)

    def u8(x):
        return np.where(valid, x, NODATA_CLASS).astype(np.uint8)

    return {
        "std": f32(std), "class": u8(cls),
        "p85": f32(p[0]), "p95": f32(p[1]), "p99": f32(p[2]),
        "mass_low": f32(masses[0]), "mass_medium": f32(masses[1]), "mass_high": f32(masses[2]),
        "mass_highest": f32(masses[3]), "confidence": f32(confidence),
        "rank_variance": f32(rank_variance), "bivariate": u8(bivariate),
    }


def product_stack(d: np.ndarray, th: Thresholds | Mapping[str, Any]) -> np.ndarray:
    """:func:`products` as one ``(len(PRODUCTS), y, x)`` float32 array in :data:`PRODUCTS` order.

    Class codes (0..8 and 255) are exact in float32; cast them back with ``astype(np.uint8)``.
    """
    out = products(d, th)
    return np.stack([out[name].astype(np.float32) for name in PRODUCTS])
