"""Inverse distance weighting of EGMS points onto the regular cell-centre grid, block by block.

For a cell centre c and the (at most ``neighbours``) points p_i within ``radius`` of it,

    d(c, t) = sum_i w_i d_i(t) / sum_i w_i,      w_i = |c - p_i|^-power,

summed over the points whose value at epoch t is not NaN. A point that lies on the cell centre
(distance 0) takes the cell alone; several coincident points are averaged. At an epoch where the
points on the centre have no value (an empty cell of the EGMS CSV), the other points within the
radius are weighted as above: one missing value does not empty an EGMS L3 cell, whose point sits on
the centre, for the whole record. A cell with no point within the radius is NaN and not valid, and
so is a cell with an epoch at which no point within the radius has a value. The weights of a block form a sparse matrix, so one
sparse-dense product grids every epoch at once; blocks are written to the Zarr cube as they are
finished, so memory holds the points plus a few blocks, whatever the size of the region.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial import cKDTree

from . import __version__
from .cadence import regular_dates, resample
from .cube import DEFAULT_CHUNK, GridSpec, create_cube, finish_cube
from .errors import InputError, InsarcastWarning
from .fsutil import atomic_path
from .progress import bar

if TYPE_CHECKING:
    from .egms import PointSet


@dataclass(frozen=True)
class IdwParams:
    """Inverse distance weighting settings (distances in metres)."""

    power: float = 2.0
    neighbours: int = 8
    radius: float = 300.0

    def __post_init__(self) -> None:
        # finite: the settings are kept in the cube's attributes as JSON, which has no Infinity
        if not (self.power > 0 and math.isfinite(self.power)):
            raise InputError(f"power must be a finite number > 0, got {self.power}", field="--power")
        if not 1 <= self.neighbours <= 255:
            raise InputError(f"neighbours must be in 1..255, got {self.neighbours}", field="--neighbours")
        if not (self.radius > 0 and math.isfinite(self.radius)):
            raise InputError(f"radius must be a finite number of m > 0, got {self.radius}", field="--radius")


class CadenceWarning(InsarcastWarning):
    """The input's epochs were taken to a regular cadence (some dropped or filled)."""


class GapWarning(InsarcastWarning):
    """The input has values missing: epochs empty at every point, or cells left without a complete series."""


MAX_CELLS = 50_000_000
"""Largest grid (cells) gridded without being asked: 5,000 x 10,000 cells is a 500 x 1,000 km region at
100 m, a cube of 200 GB at 1,000 epochs. Two points far apart (a stray coordinate) would otherwise start
hours of gridding; ``max_cells=None`` (``insarcast grid --max-cells 0``) lifts the limit."""


def check_spacing(spacing: float) -> float:
    """A finite positive spacing in metres, else an :class:`InputError` naming ``--spacing``."""
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(spacing)) or spacing <= 0:
        raise InputError(f"the grid spacing must be a finite number of metres > 0, got {spacing!r}", field="--spacing")
    return float(spacing)


def _size_text(v: float | int) -> str:
    """``v`` with thousands separators, or in powers of ten from 1e15 on (``--spacing 1e-300`` gives
    counts of 300 digits; an int that large cannot become a float)."""
    if v < 10 ** 15:
        return f"{v:,.0f}"
    return f"{v:.3g}" if isinstance(v, float) else f"~1e{len(str(v)) - 1}"


def check_size(grid: GridSpec, *, max_cells: int | None = MAX_CELLS, source: str | None = None) -> None:
    """Refuse a grid of more than ``max_cells`` cells before any work, saying how large it would be."""
    if max_cells is not None and (isinstance(max_cells, bool) or max_cells < 0):
        raise InputError(f"must be a number of cells >= 0 (0: no limit), got {max_cells!r}", field="--max-cells")
    cells = grid.nx * grid.ny
    if max_cells is not None and cells > max_cells:
        west, south, east, north = grid.bounds
        n = _size_text
        raise InputError(f"the points span {n((east - west) / 1000)} x {n((north - south) / 1000)} km: "
                         f"{n(grid.nx)} x {n(grid.ny)} = {n(cells)} cells at {grid.spacing:g} m, more than the limit "
                         f"of {max_cells:,} (a stray coordinate?); raise --max-cells, or 0 for no limit, to grid it",
                         path=source, field="--max-cells")


def idw(tree: cKDTree, values: np.ndarray, xq: np.ndarray, yq: np.ndarray, params: IdwParams,
        ) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate ``values`` (n points, T epochs) at query points; return (T, m) float32 and support (m,).

    ``tree`` indexes the points' (easting, northing); support counts the points within the radius.
    """
    m = len(xq)
    # k as a list keeps 2-D results for k = 1; the tiny margin makes the radius inclusive.
    dist, idx = tree.query(np.column_stack([xq, yq]), k=list(range(1, params.neighbours + 1)),
                           distance_upper_bound=params.radius * (1 + 1e-9))
    found = np.isfinite(dist)
    support = found.sum(axis=1).astype(np.uint8)
    # distances relative to the nearest point off the centre: the same weights once normalised, but the
    # nearest weighs 1, so a large power cannot underflow every weight of a cell to 0 (0/0: NaN)
    nearest = np.where(found & (dist > 0), dist, np.inf).min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(found, dist / np.where(np.isfinite(nearest), nearest, 1.0), np.inf) ** -params.power
    exact = found & (dist == 0)
    on_point = exact.any(axis=1)
    around = np.where(exact, 0.0, weight)         # the other points, where those on the centre have no value
    weight[on_point] = exact[on_point]            # a point on the centre takes the cell alone
    rows = np.broadcast_to(np.arange(m)[:, None], found.shape)[found]
    used, cols = np.unique(idx[found], return_inverse=True)
    block = values[used]
    finite = np.isfinite(block)

    def matrix(w: np.ndarray) -> csr_matrix:
        return csr_matrix((w[found], (rows, cols)), shape=(m, len(used)))

    if finite.all():  # complete series, the usual case: normalise once, one float32 product
        with np.errstate(invalid="ignore", divide="ignore"):
            out = matrix((weight / weight.sum(axis=1, keepdims=True)).astype(np.float32)) @ block
        out[support == 0] = np.nan
        return np.ascontiguousarray(out.T), support
    filled, present = np.where(finite, block, 0.0), finite.astype(np.float64)
    out = np.full((m, block.shape[1]), np.nan)
    for w in (matrix(around), matrix(weight)):    # the centre's points last: they win where they have a value
        numerator, denominator = w @ filled, w @ present
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(denominator > 0, numerator / denominator, out)
    return out.T.astype(np.float32), support


def grid_points(points: PointSet, out: str | os.PathLike, *, spacing: float = 100.0,
                params: IdwParams = IdwParams(), grid: GridSpec | None = None,
                chunk: int = DEFAULT_CHUNK, workers: int | None = None, progress: bool = False,
                max_cells: int | None = MAX_CELLS, cadence: float | None = None) -> Path:
    """Grid a point set to a Zarr cube at ``out`` (written whole or not at all); return the path.

    A grid of more than ``max_cells`` cells is refused before any work (None: no limit). The epochs
    are taken to a regular cadence of ``cadence`` days (default: the latest epochs' spacing) ending
    on the last epoch (:mod:`insarcast.cadence`), with a warning when that drops or fills any."""
    spacing = check_spacing(spacing)
    source = ", ".join(points.sources) or None
    if len(points) == 0:
        raise InputError("no points to grid", path=source)
    points = _without_empty_epochs(points, source)
    if len(points.dates) < 2:
        raise InputError(f"{len(points.dates)} epoch(s) with values: a displacement record needs at least 2 "
                         "(the cube is in mm since the first)", path=source)
    regular = regular_dates(points.dates, days=cadence, source=source)
    if not regular.unchanged:
        warnings.warn(f"{source or 'points'}: the epochs are not regular; the cube keeps {regular.describe()}",
                      CadenceWarning, stacklevel=2)
        points = dataclasses.replace(points, values=resample(points.values, points.dates, regular),
                                     dates=regular.dates)
    grid = grid or GridSpec.around(points.easting, points.northing, spacing=spacing)
    check_size(grid, max_cells=max_cells, source=source)
    tree = cKDTree(np.column_stack([points.easting, points.northing]))
    attrs = {
        "title": "EGMS L3 vertical displacement gridded by inverse distance weighting",
        "source": [os.path.basename(s) for s in points.sources],
        "n_points": len(points),
        "method": "idw",
        "idw": asdict(params),
        "insarcast_version": __version__,
        "cadence_days": regular.days if math.isfinite(regular.days) else None,
    }
    if not regular.unchanged:
        attrs["cadence"] = regular.describe()
    blocks = list(grid.blocks(chunk))
    support = np.zeros((grid.ny, grid.nx), np.uint8)
    valid = np.zeros((grid.ny, grid.nx), bool)
    out = Path(out)
    with atomic_path(out) as tmp:
        cube = create_cube(tmp, grid, points.dates, attrs=attrs, chunk=chunk)
        displacement = cube["displacement"]

        def work(block: tuple[slice, slice]) -> None:
            ys, xs = block
            xq, yq = grid.cell_centres(ys, xs)
            values, count = idw(tree, points.values, xq.ravel(), yq.ravel(), params)
            values = values.reshape(-1, *xq.shape)
            count = count.reshape(xq.shape)
            displacement[:, ys, xs] = values
            support[ys, xs] = count
            valid[ys, xs] = (count > 0) & np.isfinite(values).all(axis=0)

        with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
            done = pool.map(work, blocks)
            for _ in bar(done, enabled=progress, desc="grid", unit="block", total=len(blocks)):
                pass
        if not support.any():      # raised inside atomic_path: nothing is written
            raise InputError(f"no cell centre has a point within the radius ({params.radius:g} m) at a spacing of "
                             f"{grid.spacing:g} m: the cube would be all NaN; choose a --spacing at most about twice "
                             "--radius", path=source, field="--spacing")
        cube["support"][:] = support
        cube["valid"][:] = valid
        finish_cube(tmp)
    gaps = int(((support > 0) & ~valid).sum())
    if gaps and np.isfinite(points.values).any():          # an all-empty tile: the reader said so
        warnings.warn(f"{source or 'points'}: {gaps} of the {int((support > 0).sum())} cells with points are not valid: "
                      "at some epoch no point within the radius has a value (they are not trained on or forecast)",
                      GapWarning, stacklevel=2)
    return out


def _without_empty_epochs(points: PointSet, source: str | None) -> PointSet:
    """``points`` without the epochs at which no point has a value (a column left empty): those are missing
    acquisitions, which the cadence fills or refuses (:func:`insarcast.cadence.regular_dates`), not a
    record of NaN that would leave no cell valid."""
    empty = ~np.isfinite(points.values).any(axis=0)
    if empty.all() or not empty.any():         # all empty: the reader said so (the tile adds no data)
        return points
    shown = ", ".join(str(d) for d in points.dates[empty][:5]) + (" ..." if empty.sum() > 5 else "")
    warnings.warn(f"{source or 'points'}: {int(empty.sum())} epoch(s) have no value at any point ({shown}); they "
                  "are taken as missing acquisitions", GapWarning, stacklevel=3)
    return dataclasses.replace(points, values=points.values[:, ~empty], dates=points.dates[~empty])


def grid_files(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, spacing: float = 100.0,
               params: IdwParams = IdwParams(), progress: bool = False, max_cells: int | None = MAX_CELLS,
               cadence: float | None = None) -> Path:
    """Read EGMS CSV tiles and grid them to a Zarr cube: the `insarcast grid` command."""
    from .egms import read_egms

    check_spacing(spacing)                                    # before reading gigabytes of CSV
    points = read_egms(list(paths), progress=progress)
    return grid_points(points, out, spacing=spacing, params=params, progress=progress, max_cells=max_cells,
                       cadence=cadence)
