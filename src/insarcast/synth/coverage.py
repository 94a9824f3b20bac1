"""Where the synthetic scatterers are: EGMS-like clustered coverage of 100 m cell centres.

A cell is *eligible* when it is neither in a lake nor in a pit (as the pit stands at the end of
the period). Of the eligible cells, those where a smooth random field f reaches its
(1 − coverage) quantile hold a point, so points come in clusters (towns, roads) with gaps:
f = g_1.5 + 0.8 g_6, g_σ a unit Gaussian random field of σ cells.
Points are ordered by EGMS tile (E, N), then north to south and west to east.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..cube import GridSpec
from .config import ScenarioConfig
from .geometry import in_pit, in_water
from .noise import smooth_field

TILE_SIZE = 100_000.0  # m, EGMS L3 tiles are 100 km squares of EPSG:3035


@dataclass(frozen=True)
class PointSet:
    """The scenario's points: grid indices, coordinates, height and EGMS tile (pids on demand)."""

    row: np.ndarray  # (n,) int64, grid row (0 = north)
    col: np.ndarray  # (n,) int64
    x: np.ndarray  # (n,) float64, easting of the cell centre
    y: np.ndarray  # (n,) float64, northing
    height: np.ndarray  # (n,) float32, m
    tile: np.ndarray  # (n, 2) int64, (E, N) = (easting // 100 km, northing // 100 km)

    def __len__(self) -> int:
        return len(self.row)

    def pid(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """pids of points ``lo:hi``: ``SYN`` + the point's index, zero-padded to at least 7 digits."""
        hi = len(self) if hi is None else hi
        width = max(7, len(str(len(self))))
        return np.array([f"SYN{i:0{width}d}" for i in range(lo, hi)], dtype=object)

    def tiles(self) -> list[tuple[tuple[int, int], slice]]:
        """((E, N), slice of the points in that tile) in point order."""
        if len(self) == 0:
            return []
        change = np.flatnonzero(np.any(np.diff(self.tile, axis=0) != 0, axis=1)) + 1
        bounds = [0, *change.tolist(), len(self)]
        return [((int(self.tile[a, 0]), int(self.tile[a, 1])), slice(a, b)) for a, b in zip(bounds, bounds[1:])]


def scenario_grid(config: ScenarioConfig) -> GridSpec:
    """The scenario's grid of ``spacing`` cells over its extent."""
    return GridSpec.from_bounds(*config.extent, spacing=config.spacing)


def eligible_mask(config: ScenarioConfig, grid: GridSpec) -> np.ndarray:
    """(ny, nx) bool: cells outside every lake and every pit (at the end of the period)."""
    x, y = np.meshgrid(grid.x, grid.y)
    blocked = np.zeros(x.shape, dtype=bool)
    for body in config.water:
        blocked |= in_water(body, x, y)
    for mine in config.mines:
        blocked |= in_pit(mine, x, y, start=config.start, end=str(config.dates()[-1]))
    return ~blocked


def terrain(config: ScenarioConfig, grid: GridSpec, rng: np.random.Generator) -> np.ndarray:
    """Smooth synthetic heights (ny, nx) float32 in m, clipped to [20, 180]:

    h = 90 + 45 · tanh(((x_r − x) + (y_r − y)) / (√2 · 25 km)) + 12 · g_15,

    a plain rising to the south-west (towards the Eifel) around (x_r, y_r) = the regional centre,
    with gentle undulations g_15 (unit Gaussian random field, σ = 15 cells).
    """
    x, y = np.meshgrid(grid.x, grid.y)
    xr, yr = config.regional_centre
    ramp = 90.0 + 45.0 * np.tanh(((xr - x) + (yr - y)) / (math.sqrt(2.0) * 25_000.0))
    h = ramp + 12.0 * smooth_field(rng, (grid.ny, grid.nx), sigma_cells=15.0)
    return np.clip(h, 20.0, 180.0).astype(np.float32)


def select_points(config: ScenarioConfig, grid: GridSpec, *, coverage_rng: np.random.Generator,
                  terrain_rng: np.random.Generator) -> PointSet:
    """The cells that hold a point, with their heights and tiles, in point order."""
    eligible = eligible_mask(config, grid)
    shape = (grid.ny, grid.nx)
    field = smooth_field(coverage_rng, shape, sigma_cells=1.5) + 0.8 * smooth_field(coverage_rng, shape,
                                                                                   sigma_cells=6.0)
    heights = terrain(config, grid, terrain_rng)
    if not eligible.any():
        chosen = eligible
    else:
        threshold = np.quantile(field[eligible], 1.0 - config.coverage)
        chosen = eligible & (field >= threshold)
    row, col = np.nonzero(chosen)  # row-major: north to south, west to east
    x, y = grid.x[col], grid.y[row]
    tile = np.column_stack([np.floor(x / TILE_SIZE), np.floor(y / TILE_SIZE)]).astype(np.int64)
    order = np.lexsort((np.arange(len(row)), tile[:, 1], tile[:, 0]))
    row, col, x, y, tile = row[order], col[order], x[order], y[order], tile[order]
    return PointSet(row=row.astype(np.int64), col=col.astype(np.int64), x=x, y=y, height=heights[row, col],
                    tile=tile)


def tile_name(tile: tuple[int, int]) -> str:
    """EGMS file name of a synthetic vertical tile, e.g. ``EGMS_L3_E40N30_100km_U_synthetic.csv``."""
    return f"EGMS_L3_E{tile[0]:02d}N{tile[1]:02d}_100km_U_synthetic.csv"
