"""Local frames of the scenario's features: mine strips, fault traces, lakes (EPSG:3035 metres).

Azimuths are degrees clockwise from north, so the unit vector of azimuth α is (sin α, cos α).
"""

from __future__ import annotations

import math

import numpy as np

from .config import FaultConfig, MineConfig, WaterBody, years_between


def mine_frame(mine: MineConfig, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mine coordinates of points: u = Δx sin α + Δy cos α (along the advance), v = Δx cos α − Δy sin α
    (across, positive to the right of the advance), with Δ measured from the strip origin."""
    a = math.radians(mine.azimuth)
    dx = np.asarray(x, dtype=np.float64) - mine.x
    dy = np.asarray(y, dtype=np.float64) - mine.y
    return dx * math.sin(a) + dy * math.cos(a), dx * math.cos(a) - dy * math.sin(a)


def face_position(mine: MineConfig, t: np.ndarray | float, *, start: str) -> np.ndarray:
    """Face position F(t) = L0 + rate · (min(t, t_stop) − t_a), t_a = min(0, t_stop), in metres along u.

    ``t`` in years since ``start``; F(t) = L0 for every t when the mine does not advance.
    """
    t = np.asarray(t, dtype=np.float64)
    if mine.advance_rate <= 0:
        return np.full(t.shape, float(mine.length0))
    t_stop = math.inf if mine.stop is None else years_between(start, mine.stop)
    t_a = min(0.0, t_stop)
    return mine.length0 + mine.advance_rate * (np.minimum(t, t_stop) - t_a)


def cut_time(mine: MineConfig, s: np.ndarray, *, start: str) -> np.ndarray:
    """Time (years since start) at which the face passed u = s: τ(s) = t_a + (s − L0) / rate."""
    s = np.asarray(s, dtype=np.float64)
    if mine.advance_rate <= 0:
        return np.full(s.shape, -math.inf)
    t_stop = math.inf if mine.stop is None else years_between(start, mine.stop)
    return min(0.0, t_stop) + (s - mine.length0) / mine.advance_rate


def pit_corners(mine: MineConfig, *, start: str, end: str) -> list[tuple[float, float]]:
    """Closed, counter-clockwise ring of the pit at ``end``: u in [0, F(end)], |v| <= W/2."""
    length = float(face_position(mine, years_between(start, end), start=start))
    a = math.radians(mine.azimuth)
    eu = (math.sin(a), math.cos(a))
    ev = (math.cos(a), -math.sin(a))
    half = mine.width / 2
    ring = []
    for u, v in ((0.0, -half), (0.0, half), (length, half), (length, -half)):
        ring.append((mine.x + u * eu[0] + v * ev[0], mine.y + u * eu[1] + v * ev[1]))
    if _signed_area(ring) < 0:
        ring.reverse()
    return ring + [ring[0]]


def _signed_area(ring: list[tuple[float, float]]) -> float:
    return 0.5 * sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1]))


def in_pit(mine: MineConfig, x: np.ndarray, y: np.ndarray, *, start: str, end: str) -> np.ndarray:
    """Points inside the pit as it stands at ``end``."""
    u, v = mine_frame(mine, x, y)
    length = float(face_position(mine, years_between(start, end), start=start))
    return (u >= 0) & (u <= length) & (np.abs(v) <= mine.width / 2)


def in_water(body: WaterBody, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points inside the ellipse (p/a)² + (q/b)² <= 1, p along the major axis."""
    a = math.radians(body.azimuth)
    dx = np.asarray(x, dtype=np.float64) - body.x
    dy = np.asarray(y, dtype=np.float64) - body.y
    p = dx * math.sin(a) + dy * math.cos(a)
    q = dx * math.cos(a) - dy * math.sin(a)
    return (p / body.semi_major) ** 2 + (q / body.semi_minor) ** 2 <= 1.0


def fault_frame(fault: FaultConfig, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(a, d, length): a along the trace from (x1, y1), d the signed distance to the trace line,
    positive towards the hanging wall."""
    length = math.hypot(fault.x2 - fault.x1, fault.y2 - fault.y1)
    ex, ey = (fault.x2 - fault.x1) / length, (fault.y2 - fault.y1) / length
    dx = np.asarray(x, dtype=np.float64) - fault.x1
    dy = np.asarray(y, dtype=np.float64) - fault.y1
    left = -dx * ey + dy * ex
    return dx * ex + dy * ey, (left if fault.hanging_wall == "left" else -left), length
