"""Noise-free deformation of the synthetic scenario, in closed form (mm, relative to the first epoch).

Every component takes points (x, y) in EPSG:3035 metres and times ``t`` in years since the
scenario start, and returns ``(n, T)`` float32 displacement relative to ``t[0]`` (the reference
epoch: zero there). :func:`truth_displacement` sums them at the scenario's epochs; the truth cube
and the points both come from it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from .config import DAYS_PER_YEAR, FaultConfig, MineConfig, Rebound, ScenarioConfig, years_between
from .geometry import cut_time, face_position, fault_frame, mine_frame

SQRT_PI = math.sqrt(math.pi)
# A slice cut at τ with c·(t0 − τ) > COMPLETE has finished developing (e^-15 ≈ 3e-7) before t0.
COMPLETE = 15.0
# Beyond 4 r from the strip the Knothe influence is below 1e-22 of w: those points are skipped.
REACH = 4.0
_CHUNK = 16384


def knothe_rectangle(u: np.ndarray, v: np.ndarray, *, a1: float, a2: float, b1: float, b2: float,
                     w: float, r: float) -> np.ndarray:
    """Final subsidence over a fully extracted rectangle [a1, a2] × [b1, b2] (Knothe):

    S(u, v) = ∬ w/r² · exp(−π ρ²/r²) dA
            = w · ½[erf(√π(u−a1)/r) − erf(√π(u−a2)/r)] · ½[erf(√π(v−b1)/r) − erf(√π(v−b2)/r)],

    so S = w at the centre of a large panel, w/2 at an edge midpoint and w/4 at a corner.
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    k = SQRT_PI / r
    return w * 0.25 * (erf(k * (u - a1)) - erf(k * (u - a2))) * (erf(k * (v - b1)) - erf(k * (v - b2)))


def knothe_time(t: np.ndarray, tau: np.ndarray, *, c: float) -> np.ndarray:
    """Knothe time function: the developed fraction of the final subsidence of an element cut at τ,

    T(t; τ) = 1 − exp(−c (t − τ)) for t > τ, 0 otherwise (broadcasts t against τ).
    """
    dt = np.asarray(t, dtype=np.float64) - np.asarray(tau, dtype=np.float64)
    return np.where(dt > 0, -np.expm1(-c * np.maximum(dt, 0.0)), 0.0)


def extraction_slices(mine: MineConfig, t: np.ndarray, *, start: str,
                      slice_length: float) -> tuple[np.ndarray, np.ndarray]:
    """Slices of the strip that still move after ``t[0]``: edges (k+1,) along u and cut times τ (k,).

    The strip from u = 0 to the face at max(t) is cut into ``slice_length`` pieces, each cut at τ
    of its midpoint; slices with c·(t0 − τ) > COMPLETE are left out (their development is over).
    """
    t = np.asarray(t, dtype=np.float64)
    if mine.advance_rate <= 0 or t.size == 0:
        return np.zeros(1), np.zeros(0)
    t_stop = math.inf if mine.stop is None else years_between(start, mine.stop)
    t_a = min(0.0, t_stop)
    oldest = mine.length0 + mine.advance_rate * (t[0] - COMPLETE / mine.time_coefficient - t_a)
    s_hi = float(face_position(mine, t.max(), start=start))
    s_lo = min(max(0.0, oldest), s_hi)
    n = int(math.ceil((s_hi - s_lo) / slice_length - 1e-9))
    if n <= 0:
        return np.array([s_lo]), np.zeros(0)
    edges = s_lo + slice_length * np.arange(n + 1, dtype=np.float64)
    edges[-1] = s_hi
    return edges, cut_time(mine, 0.5 * (edges[:-1] + edges[1:]), start=start)


def mine_displacement(mine: MineConfig, x: np.ndarray, y: np.ndarray, t: np.ndarray, *, start: str,
                      slice_length: float = 25.0) -> np.ndarray:
    """Trough of an advancing face, relative to t0 = t[0]:

    U(x, y, t) = Σ_i G_i(x, y) · [T(t; τ_i) − T(t0; τ_i)],
    G_i = w · ½[erf(√π(u−s_i)/r) − erf(√π(u−s_{i+1})/r)] · ½[erf(√π(v+W/2)/r) − erf(√π(v−W/2)/r)],

    the Knothe influence of slice i (u in [s_i, s_{i+1}], |v| <= W/2) times its time development;
    evaluated as the product (points × slices) @ (slices × epochs).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros((x.size, t.size), dtype=np.float32)
    edges, tau = extraction_slices(mine, t, start=start, slice_length=slice_length)
    if tau.size == 0 or x.size == 0:
        return out
    c, r, half = mine.time_coefficient, mine.influence_radius, mine.width / 2
    dT = (knothe_time(t[None, :], tau[:, None], c=c) - knothe_time(t[0], tau, c=c)[:, None]).astype(np.float32)
    u, v = mine_frame(mine, x, y)
    reach = REACH * r
    near = np.flatnonzero((u > edges[0] - reach) & (u < edges[-1] + reach) & (np.abs(v) < half + reach))
    k = SQRT_PI / r
    for lo in range(0, near.size, _CHUNK):
        idx = near[lo:lo + _CHUNK]
        across = mine.w_max * 0.5 * (erf(k * (v[idx] + half)) - erf(k * (v[idx] - half)))
        e = erf(k * (u[idx, None] - edges[None, :]))
        along = (0.5 * (e[:, :-1] - e[:, 1:]) * across[:, None]).astype(np.float32)
        out[idx] = along @ dT
    return out


def fault_displacement(fault: FaultConfig, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Creep across a normal fault, relative to t0 = t[0]:

    U(d, t) = [rate · (t − t0) + ½ · acc · (t − t0)²] · (arctan(d / w)/π + ½) · Φ(a) · Ψ(d),
    Φ(a) = ½[erf(√π a/ℓ) − erf(√π (a − L)/ℓ)],   Ψ(d) = ½[1 − erf(√π (d − B)/ℓ)],

    d the signed distance to the trace line (positive towards the hanging wall), a the position
    along the trace of length L, ℓ the tip taper, B the hanging-wall block width (Ψ ≡ 1 without
    one): far footwall 0, trace rate·Δt/2, hanging wall (w ≪ d ≪ B) rate·Δt; Φ and Ψ are 1 to
    float precision along the trace and within B − 2ℓ of it, and fade beyond its ends and the block.
    """
    a, d, length = fault_frame(fault, x, y)
    k = SQRT_PI / fault.tip_taper
    taper = 0.5 * (erf(k * a) - erf(k * (a - length)))
    if fault.block_width is not None:
        taper *= 0.5 * (1.0 - erf(k * (d - fault.block_width)))
    profile = (np.arctan(d / fault.width) / math.pi + 0.5) * taper
    dt = np.asarray(t, dtype=np.float64) - float(np.asarray(t, dtype=np.float64)[0])
    creep = fault.creep_rate * dt + 0.5 * fault.creep_acceleration * dt ** 2
    return np.multiply.outer(profile.ravel().astype(np.float32), creep.astype(np.float32))


def rebound_displacement(rebound: Rebound, x: np.ndarray, y: np.ndarray, t: np.ndarray, *,
                         start: str) -> np.ndarray:
    """Uplift of a rebound bowl (see :class:`~insarcast.synth.config.Rebound`), relative to t0 = t[0]."""
    rho2 = (np.asarray(x, dtype=np.float64) - rebound.x) ** 2 + (np.asarray(y, dtype=np.float64) - rebound.y) ** 2
    bowl = rebound.amplitude * np.exp(-rho2.ravel() / (2.0 * rebound.radius ** 2))
    t = np.asarray(t, dtype=np.float64)
    since = t - years_between(start, rebound.start)
    level = np.where(since > 0, -np.expm1(-np.maximum(since, 0.0) / rebound.time_constant), 0.0)
    return np.multiply.outer(bowl.astype(np.float32), (level - level[0]).astype(np.float32))


def regional_displacement(config: ScenarioConfig, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Broad subsidence bowl: U = rate · exp(−ρ²/(2 L²)) · (t − t0), ρ the distance to the centre."""
    cx, cy = config.regional_centre
    rho2 = (np.asarray(x, dtype=np.float64) - cx) ** 2 + (np.asarray(y, dtype=np.float64) - cy) ** 2
    bowl = config.regional_rate * np.exp(-rho2.ravel() / (2.0 * config.regional_length ** 2))
    t = np.asarray(t, dtype=np.float64)
    return np.multiply.outer(bowl.astype(np.float32), (t - t[0]).astype(np.float32))


def seasonal_displacement(*, amplitude: float, peak_doy: float, dates: np.ndarray) -> np.ndarray:
    """Annual cycle, zero at the first epoch, (T,) float64:

    U(t) = A · [cos(2π(t − t_p)) − cos(2π(t0 − t_p))] = A · [sin(2π(t − φ)) − sin(2π(t0 − φ))],

    t in years since 1 January of the first epoch's year (day of year − 1 over 365.25),
    t_p = (peak_doy − 1)/365.25 the peak, φ = t_p − ¼.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    if dates.size == 0:
        return np.zeros(0)
    jan1 = dates[0].astype("datetime64[Y]").astype("datetime64[D]")
    t = (dates - jan1).astype(np.int64) / DAYS_PER_YEAR
    t_peak = (peak_doy - 1.0) / DAYS_PER_YEAR
    phase = 2.0 * math.pi * (t - t_peak)
    return amplitude * (np.cos(phase) - np.cos(phase[0]))


def truth_displacement(config: ScenarioConfig, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Noise-free displacement (n, T) float32 in mm at the scenario's epochs: the sum of every
    mine trough, fault creep, rebound uplift, the regional bowl and the seasonal cycle (zero at the
    first epoch)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    t = config.years()
    out = regional_displacement(config, x, y, t)
    out += seasonal_displacement(amplitude=config.seasonal_amplitude, peak_doy=config.seasonal_peak_doy,
                                 dates=config.dates()).astype(np.float32)[None, :]
    for fault in config.faults:
        out += fault_displacement(fault, x, y, t)
    for mine in config.mines:
        out += mine_displacement(mine, x, y, t, start=config.start, slice_length=config.slice_length)
    for rebound in config.rebound:
        out += rebound_displacement(rebound, x, y, t, start=config.start)
    return out
