"""Susceptibility and uncertainty products from an ensemble forecast (the paper's section 4.4).

Input: member forecasts ``d`` of shape ``(K, y, x)`` in mm at one horizon (see :func:`select`),
NaN where the pixel is not valid. With ``a_k = |d_k|`` and ``m = median_k d_k``:

- thresholds ``Q85, Q95, Q99``: quantiles of ``|m|`` over the valid pixels (finite ``m``), numpy's
  default linear interpolation; std terciles ``S1, S2``: quantiles 1/3 and 2/3 of ``std`` likewise.
  They are global: compute them over the whole region (:func:`thresholds`) and pass them to
  :func:`products` block by block;
- ``class``: 0 Low ``|m| < Q85``, 1 Medium ``< Q95``, 2 High ``< Q99``, 3 Highest otherwise
  (uint8, 255 where not valid); the class of a value v is the number of thresholds it reaches
  (:func:`classify`): ``v >= Q`` where Q is a proper threshold, ``v > Q`` where Q is degenerate
  (equal to the threshold below it or above it, or to 0 for the first), so that a constant map is
  Low, not Highest, and a map with distinct thresholds keeps the paper's classes exactly;
- ``p85, p95, p99``: ``P_tau = mean_k P(|d_k + e| >= Q_tau)`` with ``e ~ N(0, s^2)``, ``s (y, x)``
  the forecast's own error scale (:func:`insarcast.baselines.Fits.adaptive_scale`, given by the
  residual formulation; see :func:`products`); where ``s = 0`` (the paper's formulation, which gives
  none) this is the paper's share of members ``mean_k 1[a_k >= Q_tau]`` (``a_k > Q_tau`` where
  ``Q_tau`` is degenerate, the rule of ``class``: P_tau is the share of members classed at least
  Medium, High or Highest);
- masses ``mass_low = 1 - P85``, ``mass_medium = P85 - P95``, ``mass_high = P95 - P99``,
  ``mass_highest = P99``; ``confidence`` = the mass of the assigned class;
- ``std``: ``sqrt(std_k(a_k)^2 + s^2)`` with ``std_k`` the population standard deviation (ddof = 0)
  over the K members: the members' disagreement and the forecast's error scale together (with
  ``s = 0`` the paper's std of ``a_k``);
- ``rank_variance``: the variance of the class under that distribution,
  ``sum_c c^2 mass_c - (sum_c c mass_c)^2`` (with ``s = 0`` the population variance over k of the class
  ``a_k`` alone would get);
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


def member_statistics(d: np.ndarray, scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``|m|`` (``m = median_k d_k``) and ``std`` (``std_k |d_k|``, ddof = 0, combined with the error
    scale ``s`` as ``sqrt(std_k^2 + s^2)`` where given), each ``(y, x)`` float32."""
    d = np.asarray(d, np.float32)
    with np.errstate(invalid="ignore"):
        m_abs = np.abs(np.median(d, axis=0))
        std = np.abs(d).std(axis=0)
        if scale is not None:
            std = np.sqrt(std.astype(np.float64) ** 2 + np.asarray(scale, np.float64) ** 2)
    return m_abs.astype(np.float32), std.astype(np.float32)


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """The standard normal distribution function, float64, without scipy (the UDF's dependencies):
    ``(1 + erf(z / sqrt 2)) / 2`` with the erf of Abramowitz and Stegun 7.1.26 (absolute error of erf
    below 1.5e-7)."""
    x = np.abs(np.asarray(z, np.float64)) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


def exceedance(d: np.ndarray, levels, scale: np.ndarray | None = None) -> np.ndarray:
    """``P_i = mean_k P(|d_k + e| >= levels[i])``, ``e ~ N(0, scale^2)``, ``(len(levels), y, x)`` float64.

    Where ``scale`` is None, 0 or not finite: the share of members that :func:`classify` puts at level
    ``i + 1`` or above (``|d_k| >= Q``, or ``> Q`` at a degenerate threshold), so that the class masses
    are the shares of the members' own classes. With a spread, a tie has probability 0 and ``>=`` and
    ``>`` give the same P.
    """
    levels = tuple(float(q) for q in levels)
    d = np.asarray(d, np.float64)
    ranks = classify(np.abs(d), levels)
    votes = np.stack([(ranks >= i + 1).mean(axis=0) for i in range(len(levels))])
    if scale is None:
        return votes
    s = np.asarray(scale, np.float64)
    spread = np.isfinite(s) & (s > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_safe = np.where(spread, s, 1.0)
        p = np.stack([(normal_cdf((-q - d) / s_safe) + 1.0 - normal_cdf((q - d) / s_safe)).mean(axis=0)
                      for q in levels])
    return np.where(spread, p, votes)


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
    """Number of ``levels`` (ascending) that the magnitudes ``values`` reach, int; NaN gives 0 (mask it).

    A value reaches a proper level ``Q`` when ``v >= Q``, the paper's section 4.4: "the surface
    deformation susceptibility within the study area is categorized into four levels, corresponding
    to the intervals |m| < Q85, Q85 <= |m| < Q95, Q95 <= |m| < Q99, and |m| >= Q99, respectively:
    Low, Medium, High, and Highest". A level equal to the one below it (0 below the first:
    magnitudes are never below 0) or to the one above it is degenerate: a block of equal values
    spans that quantile (a constant map, an ensemble that gives 0, ground that does not move), the
    paper's intervals that start there are empty or cut a block of ties, and its ``>=`` would class
    the whole block in the top class (a constant map all Highest). There a value reaches the level
    only when ``v > Q``: ties stay in the class below. Levels that differ from their neighbours
    and from 0 (any map whose values are distinct) keep the paper's ``>=`` exactly.
    """
    levels = [float(q) for q in levels]
    below = [0.0, *levels[:-1]]
    above = [*levels[1:], np.inf]
    values = np.asarray(values)
    with np.errstate(invalid="ignore"):
        return sum(((values >= q) if lo < q < hi else (values > q)).astype(np.int64)
                   for q, lo, hi in zip(levels, below, above))


def products(d: np.ndarray, th: Thresholds | Mapping[str, Any], scale: np.ndarray | None = None
             ) -> dict[str, np.ndarray]:
    """Every product of the module docstring from ``d (K, y, x)`` mm, global thresholds ``th`` and the
    forecast's error scale ``scale (y, x)`` mm (None: none, the paper's products)."""
    th = Thresholds.from_mapping(th)
    d = np.asarray(d, np.float32)
    valid = np.isfinite(d).all(axis=0)
    m_abs, std = member_statistics(d, scale)
    cls = classify(m_abs, th.levels)
    p = exceedance(d, th.levels, scale)                              # P85, P95, P99
    masses = np.stack([1 - p[0], p[0] - p[1], p[1] - p[2], p[2]])
    confidence = np.take_along_axis(masses, cls[None], axis=0)[0]
    codes = np.arange(4.0).reshape(4, *([1] * (masses.ndim - 1)))
    rank_variance = np.maximum((codes ** 2 * masses).sum(axis=0) - (codes * masses).sum(axis=0) ** 2, 0.0)
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


def product_stack(d: np.ndarray, th: Thresholds | Mapping[str, Any], scale: np.ndarray | None = None) -> np.ndarray:
    """:func:`products` as one ``(len(PRODUCTS), y, x)`` float32 array in :data:`PRODUCTS` order.

    Class codes (0..8 and 255) are exact in float32; cast them back with ``astype(np.uint8)``.
    """
    out = products(d, th, scale)
    return np.stack([out[name].astype(np.float32) for name in PRODUCTS])
