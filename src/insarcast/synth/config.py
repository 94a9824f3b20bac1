"""The typed configuration of a synthetic scenario: frozen dataclasses, JSON round trip.

Coordinates are EPSG:3035 metres, displacements millimetres, rates per year, dates ISO strings
(``YYYY-MM-DD``) so that :func:`dataclasses.asdict` of a config is plain JSON. Time inside the
physics is ``t`` in years since ``start`` (365.25-day years); the first epoch ``t0 = 0`` is the
reference, as in EGMS.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Mapping

import numpy as np

from ..errors import InputError

DAYS_PER_YEAR = 365.25


def _date(value: str, what: str) -> np.datetime64:
    try:
        return np.datetime64(value, "D")
    except ValueError as exc:
        raise InputError(f"{what}: expected an ISO date YYYY-MM-DD, got {value!r}") from exc


def years_between(start: str, date: str) -> float:
    """(date − start) in 365.25-day years."""
    days = (_date(date, "date") - _date(start, "start")).astype(int)
    return float(days) / DAYS_PER_YEAR


@dataclass(frozen=True, kw_only=True)
class MineConfig:
    """An open-pit mine cut as one strip whose face advances along ``azimuth``.

    Mine coordinates: ``u`` along the advance from the strip origin (x, y), ``v`` across (positive
    to the right of the advance). The strip is ``u`` in [0, face position], ``|v| <= width/2``.
    The face stands at ``length0`` on the start date (or on ``stop`` if that is earlier) and moves
    at ``advance_rate`` until ``stop``; before that it moved at the same rate, so the slice at
    ``u = s`` was cut at ``tau(s) = t_a + (s − length0) / advance_rate`` with ``t_a = min(0, t_stop)``.
    With ``advance_rate = 0`` everything was cut long ago and the mine adds no displacement.
    """

    name: str
    x: float
    y: float
    azimuth: float  # degrees clockwise from north, direction of face advance
    width: float  # m, across the advance
    length0: float  # m, mined length on the start date
    advance_rate: float  # m/yr, 0 = inactive
    stop: str | None = None  # ISO date after which the face stands still
    w_max: float = -1500.0  # mm, final subsidence of a fully extracted (large) area
    influence_radius: float = 1200.0  # m, Knothe r
    time_coefficient: float = 2.0  # 1/yr, Knothe c

    def __post_init__(self) -> None:
        if self.width <= 0 or self.length0 < 0 or self.advance_rate < 0:
            raise InputError(f"mine {self.name!r}: width > 0, length0 >= 0 and advance_rate >= 0 expected")
        if self.influence_radius <= 0 or self.time_coefficient <= 0:
            raise InputError(f"mine {self.name!r}: influence_radius and time_coefficient must be > 0")
        if self.stop is not None:
            _date(self.stop, f"mine {self.name!r} stop")

    def active(self, *, at: str) -> bool:
        """Whether the face is still advancing on date ``at``."""
        return bool(self.advance_rate > 0 and (self.stop is None or _date(self.stop, "stop") > _date(at, "at")))


@dataclass(frozen=True, kw_only=True)
class FaultConfig:
    """A creeping normal fault: trace from (x1, y1) to (x2, y2).

    ``hanging_wall`` is the side, seen looking from (x1, y1) towards (x2, y2), that subsides at
    ``creep_rate`` (mm/yr, negative) relative to the footwall; ``width`` is the arctan width ``w``
    of the step; beyond the trace ends the step fades over ``tip_taper`` metres. The hanging-wall
    block is ``block_width`` metres wide (a graben), beyond which its subsidence fades over
    ``tip_taper`` too; ``None`` makes it a half-plane.
    """

    name: str
    x1: float
    y1: float
    x2: float
    y2: float
    creep_rate: float = -15.0  # mm/yr of the far hanging wall
    width: float = 300.0  # m
    hanging_wall: Literal["left", "right"] = "right"
    tip_taper: float = 2000.0  # m
    block_width: float | None = None  # m, width of the hanging-wall block; None = unbounded
    creep_acceleration: float = 0.0  # mm/yr² of the far hanging wall: creep = rate·Δt + ½·acc·Δt²

    def __post_init__(self) -> None:
        if self.block_width is not None and self.block_width <= 0:
            raise InputError(f"fault {self.name!r}: block_width must be > 0 or None")
        if self.hanging_wall not in ("left", "right"):
            raise InputError(f"fault {self.name!r}: hanging_wall must be 'left' or 'right', got {self.hanging_wall!r}")
        if math.hypot(self.x2 - self.x1, self.y2 - self.y1) <= 0 or self.width <= 0 or self.tip_taper <= 0:
            raise InputError(f"fault {self.name!r}: trace, width and tip_taper must have positive length")


@dataclass(frozen=True, kw_only=True)
class WaterBody:
    """An elliptical lake: centre (x, y), semi-axes in m, ``azimuth`` of the major axis (deg from north)."""

    name: str
    x: float
    y: float
    semi_major: float
    semi_minor: float
    azimuth: float = 0.0

    def __post_init__(self) -> None:
        if self.semi_major <= 0 or self.semi_minor <= 0:
            raise InputError(f"water body {self.name!r}: semi-axes must be > 0")


@dataclass(frozen=True, kw_only=True)
class Rebound:
    """Groundwater rebound after pumping stops: uplift of a Gaussian bowl (centre x, y, length scale
    ``radius`` in m) that starts on ``start`` and approaches ``amplitude`` mm (positive: up) with
    time constant ``time_constant`` years: U = A·exp(−ρ²/(2R²))·(1 − exp(−(t − t_s)/τ)) for t > t_s."""

    name: str
    x: float
    y: float
    radius: float
    amplitude: float
    start: str
    time_constant: float = 1.5

    def __post_init__(self) -> None:
        if self.radius <= 0 or self.time_constant <= 0:
            raise InputError(f"rebound {self.name!r}: radius and time_constant must be > 0")
        _date(self.start, f"rebound {self.name!r} start")


@dataclass(frozen=True, kw_only=True)
class ScenarioConfig:
    """Everything that defines a synthetic scenario; the same config and seed give the same bytes."""

    name: str
    seed: int
    extent: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax (EPSG:3035 m)
    spacing: float = 100.0
    start: str = "2016-01-05"
    end: str = "2021-12-16"
    step_days: int = 6
    mines: tuple[MineConfig, ...] = ()
    faults: tuple[FaultConfig, ...] = ()
    water: tuple[WaterBody, ...] = ()
    rebound: tuple[Rebound, ...] = ()
    regional_rate: float = -10.0  # mm/yr at the bowl centre
    regional_centre: tuple[float, float] = (4072000.0, 3098000.0)
    regional_length: float = 20000.0  # m, Gaussian length scale L
    seasonal_amplitude: float = 3.0  # mm
    seasonal_peak_doy: float = 200.0  # day of year of the seasonal peak
    atmosphere_std: float = 2.5  # mm per epoch
    atmosphere_beta: float = 8.0 / 3.0  # power spectrum ∝ k^-beta
    white_std: float = 1.2  # mm per epoch and point
    coverage: float = 0.55  # fraction of land cells (outside water and pits) with a point
    decimals: int = 1
    slice_length: float = 25.0  # m, discretisation of the advancing face

    def __post_init__(self) -> None:
        xmin, ymin, xmax, ymax = self.extent
        if self.spacing <= 0:
            raise InputError(f"scenario {self.name!r}: spacing must be > 0")
        for value in self.extent:
            if abs(value / self.spacing - round(value / self.spacing)) > 1e-9:
                raise InputError(f"scenario {self.name!r}: extent {self.extent} is not a multiple of "
                                 f"the spacing {self.spacing} m")
        if xmax <= xmin or ymax <= ymin:
            raise InputError(f"scenario {self.name!r}: empty extent {self.extent}")
        if self.step_days <= 0 or _date(self.end, "end") < _date(self.start, "start"):
            raise InputError(f"scenario {self.name!r}: need step_days > 0 and end >= start")
        if not 0 < self.coverage <= 1:
            raise InputError(f"scenario {self.name!r}: coverage must be in (0, 1], got {self.coverage}")
        if min(self.atmosphere_std, self.white_std) < 0 or self.regional_length <= 0 or self.slice_length <= 0:
            raise InputError(f"scenario {self.name!r}: noise stds >= 0, regional_length and slice_length > 0")
        names = [m.name for m in self.mines] + [f.name for f in self.faults]
        if len(set(names)) != len(names):
            raise InputError(f"scenario {self.name!r}: mine and fault names must be unique")

    def dates(self) -> np.ndarray:
        """Epochs ``start, start + step_days, ... <= end`` as datetime64[D]."""
        start, end = _date(self.start, "start"), _date(self.end, "end")
        return np.arange(start, end + np.timedelta64(1, "D"), np.timedelta64(self.step_days, "D"))

    def years(self) -> np.ndarray:
        """Epochs in years since ``start`` (float64, first 0)."""
        days = (self.dates() - _date(self.start, "start")).astype(np.int64)
        return days / DAYS_PER_YEAR

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists in JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ScenarioConfig":
        """Inverse of :meth:`to_dict` (also accepts lists where tuples are expected)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown scenario fields: {sorted(unknown)}")
        kw = dict(data)
        try:
            kw["extent"] = tuple(float(v) for v in kw["extent"])
            if "regional_centre" in kw:
                kw["regional_centre"] = tuple(float(v) for v in kw["regional_centre"])
            kw["mines"] = tuple(MineConfig(**m) for m in kw.get("mines", ()))
            kw["faults"] = tuple(FaultConfig(**f) for f in kw.get("faults", ()))
            kw["water"] = tuple(WaterBody(**w) for w in kw.get("water", ()))
            kw["rebound"] = tuple(Rebound(**r) for r in kw.get("rebound", ()))
            return cls(**kw)
        except (KeyError, TypeError) as exc:
            raise InputError(f"not a scenario config: {exc}") from exc


__all__ = ["DAYS_PER_YEAR", "FaultConfig", "MineConfig", "Rebound", "ScenarioConfig", "WaterBody", "years_between"]
