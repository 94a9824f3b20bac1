"""Cube conventions: the regular grid, and the Zarr cube every later stage reads.

A cube is an ``xarray.Dataset`` with ``displacement(t, y, x)`` float32 in mm (NaN where unknown),
``valid(y, x)`` and ``support(y, x)``, a strictly increasing ``datetime64[ns]`` coordinate ``t``,
``y`` descending (north up), and its CRS as a rioxarray ``spatial_ref`` coordinate.
Cubes are written block by block so that memory does not grow with the region.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Iterator, Mapping

import numpy as np
import xarray as xr

from .errors import InputError

CUBE_DIMS = ("t", "y", "x")
DEFAULT_CRS = "EPSG:3035"
DEFAULT_CHUNK = 128
# Zarr v2 with consolidated metadata: read by every xarray, GDAL and openEO backend in use today.
ZARR_FORMAT = 2


@dataclass(frozen=True)
class GridSpec:
    """A north-up regular grid: ``nx`` x ``ny`` cells of ``spacing`` metres, top-left corner (x0, y0)."""

    x0: float
    y0: float
    nx: int
    ny: int
    spacing: float
    crs: str = DEFAULT_CRS

    @classmethod
    def around(cls, x: np.ndarray, y: np.ndarray, *, spacing: float, crs: str = DEFAULT_CRS) -> "GridSpec":
        """The smallest grid aligned to multiples of ``spacing`` whose cells hold every point.

        EGMS L3 points lie at 100 m cell centres, so with ``spacing=100`` each point is a cell centre.
        """
        if len(x) == 0:
            raise InputError("no points to grid")
        xmin = math.floor(float(np.min(x)) / spacing) * spacing
        ymin = math.floor(float(np.min(y)) / spacing) * spacing
        xmax = (math.floor(float(np.max(x)) / spacing) + 1) * spacing
        ymax = (math.floor(float(np.max(y)) / spacing) + 1) * spacing
        return cls.from_bounds(xmin, ymin, xmax, ymax, spacing=spacing, crs=crs)

    @classmethod
    def from_bounds(cls, xmin: float, ymin: float, xmax: float, ymax: float, *, spacing: float,
                    crs: str = DEFAULT_CRS) -> "GridSpec":
        nx = int(round((xmax - xmin) / spacing))
        ny = int(round((ymax - ymin) / spacing))
        if nx <= 0 or ny <= 0:
            raise InputError(f"empty grid: bounds {(xmin, ymin, xmax, ymax)} with spacing {spacing} m")
        return cls(x0=float(xmin), y0=float(ymax), nx=nx, ny=ny, spacing=float(spacing), crs=crs)

    @property
    def x(self) -> np.ndarray:
        """Cell-centre eastings, increasing."""
        return self.x0 + (np.arange(self.nx) + 0.5) * self.spacing

    @property
    def y(self) -> np.ndarray:
        """Cell-centre northings, decreasing (north up)."""
        return self.y0 - (np.arange(self.ny) + 0.5) * self.spacing

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0 - self.ny * self.spacing, self.x0 + self.nx * self.spacing, self.y0)

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """GDAL-style affine (a, b, c, d, e, f) of the top-left corner."""
        return (self.spacing, 0.0, self.x0, 0.0, -self.spacing, self.y0)

    def blocks(self, size: int = DEFAULT_CHUNK) -> Iterator[tuple[slice, slice]]:
        """(y, x) slices of square blocks aligned to the cube's chunks, row by row."""
        for r in range(0, self.ny, size):
            for c in range(0, self.nx, size):
                yield slice(r, min(r + size, self.ny)), slice(c, min(c + size, self.nx))

    def cell_centres(self, ys: slice, xs: slice) -> tuple[np.ndarray, np.ndarray]:
        """Eastings and northings of the cells of a block, each of shape (rows, cols)."""
        return np.meshgrid(self.x[xs], self.y[ys])


def _jsonable(attrs: Mapping) -> dict:
    """Zarr attributes must be JSON: nested values are stored as JSON text."""
    import json

    out = {}
    for key, value in attrs.items():
        out[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True)
    return out


def create_cube(path: str | os.PathLike, grid: GridSpec, times: np.ndarray, *, attrs: Mapping,
                chunk: int = DEFAULT_CHUNK, with_support: bool = True):
    """Write a cube's metadata and coordinates to ``path``; return its Zarr group for block writes.

    ``displacement`` starts as all-NaN; fill it with ``group["displacement"][:, ys, xs] = block``
    for the slices of :meth:`GridSpec.blocks`, then ``valid`` (and ``support``) the same way.
    """
    import dask.array as da
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import zarr

    times = np.asarray(times, dtype="datetime64[ns]")
    nt = len(times)
    variables = {
        "displacement": (CUBE_DIMS, da.full((nt, grid.ny, grid.nx), np.nan, dtype="float32",
                                            chunks=(nt, chunk, chunk)),
                         {"units": "mm", "long_name": "vertical displacement since the first epoch"}),
        "valid": (("y", "x"), da.zeros((grid.ny, grid.nx), dtype=bool, chunks=(chunk * 8, chunk * 8)),
                  {"long_name": "cell has a displacement at every epoch"}),
    }
    if with_support:
        variables["support"] = (("y", "x"), da.zeros((grid.ny, grid.nx), dtype="uint8",
                                                     chunks=(chunk * 8, chunk * 8)),
                                {"long_name": "number of data points that informed the cell"})
    ds = xr.Dataset(
        variables,
        coords={
            "t": ("t", times),
            "y": ("y", grid.y, {"units": "m", "standard_name": "projection_y_coordinate"}),
            "x": ("x", grid.x, {"units": "m", "standard_name": "projection_x_coordinate"}),
        },
        attrs=_jsonable({**attrs, "grid": asdict(grid)}),
    )
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(_affine(grid))
    encoding = {"t": {"units": f"days since {np.datetime_as_string(times[0], unit='D')}", "dtype": "int64"}}
    ds.to_zarr(path, mode="w-", compute=False, encoding=encoding, consolidated=False, zarr_format=ZARR_FORMAT)
    return zarr.open_group(path, mode="r+", zarr_format=ZARR_FORMAT)


def _affine(grid: GridSpec):
    from affine import Affine

    return Affine(*grid.transform)


def finish_cube(path: str | os.PathLike) -> None:
    """Consolidate the cube's metadata once every block is written."""
    import zarr

    zarr.consolidate_metadata(path, zarr_format=ZARR_FORMAT)


def open_store(path: str | os.PathLike, *, what: str = "cube") -> xr.Dataset:
    """Open a Zarr store lazily (coordinates and CRS decoded); a missing or unreadable store is an
    :class:`InputError` naming the file and ``what`` it should have been."""
    import rioxarray  # noqa: F401

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"no such {what}", path=path)
    try:
        with warnings.catch_warnings():
            # a store without its spatial_ref: check_cube says so in one line, naming the file
            warnings.filterwarnings("ignore", r"Variable\(s\) referenced in grid_mapping not in variables",
                                    UserWarning)
            return xr.open_zarr(path, decode_coords="all")
    except Exception as exc:  # zarr raises many types for a damaged store
        raise InputError(f"not a readable Zarr {what} ({exc})", path=path) from exc


def open_cube(path: str | os.PathLike) -> xr.Dataset:
    """Open a cube lazily and check the conventions and that no chunk of it was lost (:func:`check_chunks`);
    errors name the file and the field."""
    ds = check_cube(open_store(path), path=os.fspath(path))
    check_chunks(path, ds)
    return ds


def check_chunks(path: str | os.PathLike, ds: xr.Dataset) -> None:
    """Refuse a cube whose ``displacement`` lacks a chunk file where ``valid`` marks cells valid.

    Zarr reads a missing chunk as the fill value, NaN, so a copy of the cube that was cut short would
    forecast NaN on the lost blocks without a word. A writer may leave out a chunk it holds for empty
    (every value NaN: zarr's ``write_empty_chunks`` is off by default), but such a block has no valid
    cell, since ``valid`` means finite at every epoch: a missing chunk whose cells include valid ones is
    lost, whoever wrote the cube and whatever was done to it since. Lists the store once; reads only
    ``valid`` (y, x), and only when a chunk file is missing. Stores that are not a local folder are not
    checked."""
    import zarr

    path = os.fspath(path)
    if "valid" not in ds or not os.path.isdir(os.path.join(path, "displacement")):
        return
    try:
        array = zarr.open_group(path, mode="r")["displacement"]
        if array.nchunks_initialized == array.nchunks:
            return
    except Exception:                                      # noqa: BLE001 - open_store read it; leave it to the read
        return
    dims = ds["displacement"].dims                           # as stored: (t, y, x) for our cubes
    stored = dict(zip(_stored_dims(array, dims), range(array.ndim)))
    valid = np.asarray(ds["valid"].transpose("y", "x").values, bool)
    counts = [math.ceil(s / c) if c else 1 for s, c in zip(array.shape, array.chunks)]
    valid_lost, first = 0, None
    for index in itertools.product(*(range(n) for n in counts)):
        file = _chunk_file(path, "displacement", index)
        if os.path.exists(file):
            continue
        ys, xs = (slice(index[stored[d]] * array.chunks[stored[d]], (index[stored[d]] + 1) * array.chunks[stored[d]])
                  for d in ("y", "x"))
        if valid[ys, xs].any():
            valid_lost += 1
            first = first or file
    if first is not None:
        raise InputError(f"{valid_lost} of the {array.nchunks} chunk files of 'displacement' are missing where "
                         "'valid' marks cells valid (the first is named): they would read as NaN; the copy of the "
                         "cube is incomplete, copy or write it again", path=first, field="displacement")


def _stored_dims(array, dims: tuple) -> tuple:
    """The dimension names of a stored Zarr array (xarray's ``_ARRAY_DIMENSIONS``), else ``dims``."""
    names = array.attrs.get("_ARRAY_DIMENSIONS") if hasattr(array, "attrs") else None
    return tuple(names) if isinstance(names, list) and len(names) == array.ndim else tuple(dims)


def check_cube(ds: xr.Dataset, *, path: str | None = None) -> xr.Dataset:
    """Check a cube's dims, time axis and CRS; return it with ``displacement`` as (t, y, x)."""
    if "displacement" not in ds:
        raise InputError("expected a 'displacement' variable", path=path, field="displacement")
    dims = ds["displacement"].dims
    if any(str(d).startswith("dim_") for d in dims) or set(dims) != set(CUBE_DIMS):
        raise InputError(f"expected dims {CUBE_DIMS}, got {tuple(dims)}", path=path, field="displacement")
    t = ds["t"].values
    if not np.issubdtype(t.dtype, np.datetime64):
        raise InputError(f"expected a datetime64 time coordinate, got {t.dtype}", path=path, field="t")
    if len(t) > 1 and not np.all(np.diff(t) > np.timedelta64(0)):
        raise InputError("time coordinate is not strictly increasing", path=path, field="t")
    if ds.rio.crs is None:
        raise InputError("cube has no CRS (expected a rioxarray spatial_ref coordinate)", path=path,
                         field="spatial_ref")
    return ds.transpose("t", "y", "x", ...)


# What zarr and its codecs raise for a chunk that does not decode (blosc: RuntimeError, others
# ValueError or TypeError); never OSError or MemoryError, which are the system's.
DECODE_ERRORS = (RuntimeError, ValueError, TypeError)


def damaged_chunk(path: str | os.PathLike) -> str | None:
    """The file of the first chunk of a Zarr store that does not decode, or None. Reads every chunk:
    only called once a read has failed."""
    import zarr

    try:
        group = zarr.open_group(os.fspath(path), mode="r")
        arrays = sorted(group.arrays(), key=lambda item: item[0])
    except Exception:                                      # noqa: BLE001 - not a store we can scan
        return None
    for name, array in arrays:
        counts = [math.ceil(s / c) if c else 1 for s, c in zip(array.shape, array.chunks)]
        for index in itertools.product(*(range(n) for n in counts)):
            try:
                array.get_block_selection(index)
            except DECODE_ERRORS:
                return _chunk_file(os.fspath(path), name, index)
    return None


def _chunk_file(store: str, name: str, index: tuple[int, ...]) -> str:
    keys = [".".join(map(str, index)), "/".join(map(str, index)), "c/" + "/".join(map(str, index))]
    for key in keys:
        candidate = os.path.join(store, name, *key.split("/"))
        if os.path.exists(candidate):
            return candidate
    return os.path.join(store, name, keys[0])


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Turn a chunk that does not decode, while the block reads the Zarr store ``path``, into an
    :class:`InputError` naming the chunk's file (instead of a codec traceback)."""
    try:
        yield
    except InputError:
        raise
    except DECODE_ERRORS as exc:
        bad = damaged_chunk(path)
        if bad is None:
            raise
        reason = " ".join(str(exc).split())[:200]
        raise InputError(f"damaged Zarr chunk: it does not decode ({reason}); the store {os.fspath(path)} is "
                         "corrupt, write it again", path=bad) from exc
