"""Read EGMS Level 3 vertical CSV tiles into one :class:`PointSet`.

Format (see :mod:`insarcast.egms.columns` for the aliases): a header ``pid, easting, northing``
(EPSG:3035 metres, 100 m cell centres), optional quality columns, and one column per epoch named
``yyyymmdd`` holding displacement in mm. A tile is a plain ``.csv``, a gzip file, or a zip holding
exactly one ``.csv`` member (other members are ignored); the container is recognised from the
file's first bytes, not its name.

Rules, each violation an :class:`~insarcast.errors.InputError` naming the file (and the line and
column where there is one):

* Every column whose name starts with a digit is an epoch and must be a valid 8-digit ``yyyymmdd``
  date; dates must be unique and strictly increasing; at least one is needed. Other unknown
  columns are ignored.
* ``pid``, ``easting`` and ``northing`` are required (under any alias); quality columns are
  optional and :attr:`PointSet.quality` keeps those present in every file.
* Cells in epoch and quality columns are numbers or empty (``""``, ``nan``, ``NA`` ... read as NaN);
  anything else, or an infinite value, is refused with its 1-based line (line 1 is the header),
  column and text. Every row must have as many fields as the header.
* Coordinates must be present and finite, must not look like longitude/latitude degrees, and must
  lie inside EPSG:3035's area of use. pids must be non-empty and unique over all files. Points that
  share coordinates under different pids are kept: the gridder averages coincident points.
* Several tiles must share exactly the same epochs; they are concatenated in the order given.

Engine: a first pass counts line breaks (decompressing if need be) to bound the number of rows;
the ``(n, T)`` float32 array is allocated once and filled from pyarrow's streaming CSV reader,
one record batch (about ``block_size`` bytes of text) at a time, so peak memory stays close to the
final array. pyarrow's conversion errors do not say which line failed: the file is then re-read
with the :mod:`csv` module from the failing batch on to report the first bad cell exactly.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import io
import math
import os
import re
import sys
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, NoReturn, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import InputError, InsarcastWarning
from .columns import ALIASES, NULL_VALUES, QUALITY_COLUMNS, REQUIRED_COLUMNS, is_date_column, match_columns

PathLike = str | os.PathLike

DEFAULT_BLOCK_SIZE = 1 << 22
"""Bytes of CSV text per record batch. pyarrow's streaming reader keeps some 20 blocks in flight
(read ahead, parsed, converted), so its memory is about 20-25x this: ~100 MB at 4 MiB, ~420 MB at
16 MiB, whatever the file size. 4 MiB was also as fast as 16 MiB in measurements."""

_COUNT_CHUNK = 1 << 24
_MAX_HEADER_BYTES = 1 << 22
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NULLS = frozenset(NULL_VALUES)
_DATE_RE = re.compile(r"\d{8}")
_ARROW_COLUMN_RE = re.compile(r"In CSV column #(\d+)")


class EgmsWarning(InsarcastWarning):
    """Something odd but readable in an EGMS tile (e.g. no displacement value at all)."""


@dataclass(frozen=True)
class Header:
    """What a tile's header says: which columns hold what, and the epochs."""

    path: str
    columns: dict[str, str]
    """Canonical name -> the header name found for it (required and quality columns present)."""
    date_columns: tuple[str, ...]
    dates: np.ndarray
    """``datetime64[D]``, strictly increasing, one per name in :attr:`date_columns`."""
    fieldnames: tuple[str, ...] = ()
    """Every header name, in file order."""

    @property
    def quality(self) -> tuple[str, ...]:
        """The quality columns present, in :data:`QUALITY_COLUMNS` order."""
        return tuple(name for name in QUALITY_COLUMNS if name in self.columns)

    def index(self, name: str) -> int:
        """Position in the file of the header name ``name`` (first occurrence)."""
        return self.fieldnames.index(name)


@dataclass(frozen=True, eq=False)
class PointSet:
    """Points of one or several EGMS tiles: identity, position, time series and quality."""

    pid: np.ndarray
    """(n,) object array of str."""
    easting: np.ndarray
    """(n,) float64, EPSG:3035 metres."""
    northing: np.ndarray
    """(n,) float64, EPSG:3035 metres."""
    values: np.ndarray
    """(n, T) float32 displacement in mm, C-contiguous; NaN where a cell was empty."""
    dates: np.ndarray
    """(T,) datetime64[D], strictly increasing."""
    quality: dict[str, np.ndarray] = field(default_factory=dict)
    """Canonical quality name -> (n,) float32, for the columns present in every input."""
    sources: tuple[str, ...] = ()
    """The files read, in order."""

    def __len__(self) -> int:
        return len(self.pid)

    def __repr__(self) -> str:
        span = f"{self.dates[0]}..{self.dates[-1]}" if len(self.dates) else "no dates"
        return (f"PointSet(n={len(self)}, T={len(self.dates)}, {span}, quality={list(self.quality)}, "
                f"sources={list(self.sources)})")


# --------------------------------------------------------------------------------------------
# public entry points


def read_header(path: PathLike) -> Header:
    """Read and check the header of one tile (plain, gzip or zip) without reading its rows."""
    source = _Source.of(path)
    with source.binary() as stream:
        raw = stream.readline(_MAX_HEADER_BYTES)
    return _parse_header(source.path, raw)


def read_egms(
    paths: PathLike | Iterable[PathLike], *, progress: bool = False, block_size: int = DEFAULT_BLOCK_SIZE
) -> PointSet:
    """Read one or several EGMS L3 tiles and concatenate their points in the order given.

    ``paths`` is one path or a sequence of paths (plain CSV, gzip or zip). ``progress`` shows a
    tqdm bar on stderr. ``block_size`` is the bytes of text per pyarrow record batch (see
    :data:`DEFAULT_BLOCK_SIZE`); it bounds the reader's working memory, not the result's.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    sources = [_Source.of(p) for p in _as_paths(paths)]
    headers = [read_header(source.path) for source in sources]
    _check_same_epochs(headers)
    quality = tuple(q for q in QUALITY_COLUMNS if all(q in h.columns for h in headers))

    bars = _Progress(enabled=progress)
    bounds = [_count_rows(source, bars) for source in sources]
    table = _Table(capacity=sum(bounds), epochs=len(headers[0].dates), quality=quality)
    with bars.rows(total=sum(bounds)) as advance:
        for source, header in zip(sources, headers):
            _read_rows(source, header, table, block_size=block_size, advance=advance)
            _check_points(source, header, table)
            if not np.isfinite(table.values[table.offsets[-1]:table.size]).any():
                warnings.warn(f"{source.path}: every displacement value is empty (NaN): the tile adds no data",
                              EgmsWarning, stacklevel=2)
    pids = table.pids()
    _check_unique_pids(pids, sources, table.offsets)
    return PointSet(
        pid=pids,
        easting=table.easting[: table.size],
        northing=table.northing[: table.size],
        values=table.values[: table.size],
        dates=headers[0].dates.copy(),
        quality={name: array[: table.size] for name, array in table.quality.items()},
        sources=tuple(source.path for source in sources),
    )


def _as_paths(paths: PathLike | Iterable[PathLike]) -> list[PathLike]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InputError("no EGMS CSV file given")
    return items


# --------------------------------------------------------------------------------------------
# containers: plain, gzip, zip


@dataclass(frozen=True)
class _Source:
    """One input file and how to get its CSV text out of it."""

    path: str
    kind: str  # "plain" | "gzip" | "zip"
    member: str | None = None

    @classmethod
    def of(cls, path: PathLike) -> "_Source":
        name = os.fspath(path)
        if not os.path.exists(name):
            raise InputError("no such file", path=name)
        if os.path.isdir(name):
            raise InputError("is a folder, expected an EGMS CSV file (.csv, .csv.gz or .zip)", path=name)
        with open(name, "rb") as fh:
            magic = fh.read(4)
        if magic[:2] == b"\x1f\x8b":
            return cls(name, "gzip")
        if magic in (b"PK\x03\x04", b"PK\x05\x06"):
            return cls(name, "zip", _zip_member(name))
        return cls(name, "plain")

    @contextlib.contextmanager
    def binary(self) -> Iterator[BinaryIO]:
        """The decompressed CSV bytes as a Python stream; damaged containers raise InputError."""
        with _container_errors(self.path):
            if self.kind == "plain":
                with open(self.path, "rb") as fh:
                    yield fh
            elif self.kind == "gzip":
                with gzip.open(self.path, "rb") as fh:
                    yield fh  # type: ignore[misc]
            else:
                with zipfile.ZipFile(self.path) as zf, zf.open(self.member or "") as fh:
                    yield fh  # type: ignore[misc]

    @contextlib.contextmanager
    def arrow_input(self) -> Iterator[object]:
        """What pyarrow's CSV reader reads from: native streams where possible (faster)."""
        with _container_errors(self.path):
            if self.kind == "plain":
                with pa.OSFile(self.path, "rb") as fh:
                    yield fh
            elif self.kind == "gzip":
                with pa.input_stream(self.path, compression="gzip") as fh:
                    yield fh
            else:
                with self.binary() as fh:
                    yield fh


def _zip_member(path: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [info.filename for info in zf.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"damaged zip file ({exc})", path=path) from None
    csvs = [name for name in names if name.lower().endswith(".csv")]
    if len(csvs) != 1:
        raise InputError(
            f"a zip must hold exactly one .csv file, this one holds {len(csvs)}: {names}", path=path
        )
    return csvs[0]


@contextlib.contextmanager
def _container_errors(path: str) -> Iterator[None]:
    """Turn decompression and decoding failures into InputError naming the file."""
    try:
        yield
    except InputError:
        raise
    except (gzip.BadGzipFile, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InputError(f"damaged or truncated compressed file ({exc})", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text; is this an EGMS CSV file? ({exc})", path=path) from None


# --------------------------------------------------------------------------------------------
# header


def _parse_header(path: str, raw: bytes) -> Header:
    if not raw.strip():
        raise InputError("empty file: expected an EGMS CSV header (pid, easting, northing, yyyymmdd ...)",
                         path=path)
    if b"\x00" in raw:
        raise InputError("binary data, not an EGMS CSV file", path=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("the header is not UTF-8 text; is this an EGMS CSV file?", path=path) from None
    names = next(csv.reader(text.splitlines()[:1]), [])      # a header line ends at \n, \r\n or a lone \r
    dates = _parse_dates(path, names)
    found = match_columns(names)
    for canonical in REQUIRED_COLUMNS:
        if canonical not in found:
            hint = " (the header holds ';': EGMS CSV is comma-separated)" if ";" in text and len(names) < 3 else ""
            raise InputError(
                f"missing column {canonical!r}; accepted names (any case): {', '.join(ALIASES[canonical])}{hint}",
                path=path, line=1, field=canonical,
            )
    date_columns = tuple(name for name in names if is_date_column(name))
    if not date_columns:
        raise InputError("no epoch columns: expected columns named yyyymmdd (e.g. 20160105) after the "
                         "quality columns", path=path, line=1)
    return Header(
        path=path,
        columns={canonical: names[index] for canonical, index in found.items()},
        date_columns=date_columns,
        dates=dates,
        fieldnames=tuple(names),
    )


def _parse_dates(path: str, names: Sequence[str]) -> np.ndarray:
    days: list[dt.date] = []
    seen: dict[dt.date, str] = {}
    for name in names:
        if not is_date_column(name):
            continue
        day = _parse_date(path, name)
        if day in seen:
            raise InputError(f"duplicate epoch {day.isoformat()} (columns {seen[day]!r} and {name!r})",
                             path=path, line=1, field=name)
        if days and day < days[-1]:
            raise InputError(f"epochs must increase left to right: {name!r} comes after "
                             f"{days[-1].strftime('%Y%m%d')!r}", path=path, line=1, field=name)
        seen[day] = name
        days.append(day)
    return np.array(days, dtype="datetime64[D]")


def _parse_date(path: str, name: str) -> dt.date:
    text = name.strip()
    if not _DATE_RE.fullmatch(text):
        raise InputError("a column name starting with a digit must be an 8-digit yyyymmdd date",
                         path=path, line=1, field=name)
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as exc:
        raise InputError(f"not a valid yyyymmdd date ({exc})", path=path, line=1, field=name) from None


def _check_same_epochs(headers: Sequence[Header]) -> None:
    first = headers[0]
    for other in headers[1:]:
        if np.array_equal(first.dates, other.dates):
            continue
        common = min(len(first.dates), len(other.dates))
        differ = np.flatnonzero(first.dates[:common] != other.dates[:common])
        if len(differ):
            i = int(differ[0])
            detail = (f"epoch {i + 1} is {first.date_columns[i]} in {first.path} but "
                      f"{other.date_columns[i]} in {other.path}")
        else:
            extra = first if len(first.dates) > common else other
            detail = (f"{first.path} has {len(first.dates)} epochs, {other.path} has {len(other.dates)} "
                      f"(first unmatched: {extra.date_columns[common]} in {extra.path})")
        raise InputError(f"tiles must share the same epochs: {detail}", path=other.path, line=1)


# --------------------------------------------------------------------------------------------
# first pass: bound the number of rows


def _count_rows(source: _Source, bars: "_Progress") -> int:
    """An upper bound of the data rows: the number of line breaks (the header takes one)."""
    newlines = returns = 0
    with source.binary() as stream, bars.bytes(source) as advance:
        while chunk := stream.read(_COUNT_CHUNK):
            newlines += chunk.count(b"\n")
            returns += chunk.count(b"\r")
            advance(len(chunk))
    return max(newlines, returns)


# --------------------------------------------------------------------------------------------
# second pass: rows into preallocated arrays


class _Table:
    """Preallocated output arrays, filled file by file."""

    def __init__(self, *, capacity: int, epochs: int, quality: tuple[str, ...]) -> None:
        self.values = np.empty((capacity, epochs), dtype=np.float32)
        self.easting = np.empty(capacity, dtype=np.float64)
        self.northing = np.empty(capacity, dtype=np.float64)
        self.quality = {name: np.empty(capacity, dtype=np.float32) for name in quality}
        self.pid_chunks: list[pa.Array] = []
        self.size = 0
        self.offsets: list[int] = []  # first row of each file
        self.first_chunks: list[int] = []  # first pid chunk of each file

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` more (only if the line count under-estimated, e.g. odd line ends)."""
        need = self.size + rows
        if need <= len(self.easting):
            return
        capacity = max(need, int(len(self.easting) * 1.25) + 1024)
        self.values = _grown(self.values, capacity)
        self.easting = _grown(self.easting, capacity)
        self.northing = _grown(self.northing, capacity)
        self.quality = {name: _grown(array, capacity) for name, array in self.quality.items()}

    def pids(self) -> np.ndarray:
        if not self.pid_chunks:
            return np.empty(0, dtype=object)
        return pa.chunked_array(self.pid_chunks, type=pa.string()).to_numpy(zero_copy_only=False)


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    out = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    out[: len(array)] = array
    return out


def _read_rows(source: _Source, header: Header, table: _Table, *, block_size: int,
               advance: Callable[[int], None]) -> None:
    """Append every data row of one file to ``table``."""
    table.offsets.append(table.size)
    table.first_chunks.append(len(table.pid_chunks))
    layout = _Layout.of(header, tuple(table.quality))
    start = table.size
    try:
        with source.arrow_input() as stream:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(
                    column_names=layout.arrow_names, skip_rows=1, use_threads=True,
                    # the header must fit in the first block
                    block_size=max(block_size, 4 * sum(map(len, header.fieldnames)) + 4096),
                ),
                parse_options=pacsv.ParseOptions(delimiter=",", quote_char='"', ignore_empty_lines=True),
                convert_options=pacsv.ConvertOptions(
                    include_columns=layout.include,
                    column_types=layout.types,
                    null_values=list(NULL_VALUES),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=True,
                ),
            )
            for batch in reader:
                _append(batch, layout, table, source, header)
                advance(batch.num_rows)
    except pa.ArrowInvalid as exc:
        _raise_first_bad_cell(source, header, layout, first_row=table.size - start, arrow_message=str(exc))
    if table.size == start:
        raise InputError("no data rows: the file holds a header but no points", path=source.path)


@dataclass(frozen=True)
class _Layout:
    """Which file columns pyarrow reads and as what; batch columns come in ``include`` order."""

    width: int
    arrow_names: list[str]
    include: list[str]
    types: dict[str, pa.DataType]
    pid: int
    easting: int
    northing: int
    quality: dict[str, int]
    dates: tuple[int, ...]

    @classmethod
    def of(cls, header: Header, quality: tuple[str, ...]) -> "_Layout":
        def position(canonical: str) -> int:
            return header.index(header.columns[canonical])

        pid, east, north = (position(c) for c in REQUIRED_COLUMNS)
        qual = {name: position(name) for name in quality}
        dates = tuple(header.index(name) for name in header.date_columns)
        names = [f"c{i}" for i in range(len(header.fieldnames))]
        order = [pid, east, north, *qual.values(), *dates]
        types = {names[pid]: pa.string(), names[east]: pa.float64(), names[north]: pa.float64()}
        types.update({names[i]: pa.float32() for i in (*qual.values(), *dates)})
        return cls(len(names), names, [names[i] for i in order], types, pid, east, north, qual, dates)


def _append(batch: pa.RecordBatch, layout: _Layout, table: _Table, source: _Source, header: Header) -> None:
    rows = batch.num_rows
    if rows == 0:
        return
    table.reserve(rows)
    lo, hi = table.size, table.size + rows
    table.pid_chunks.append(batch.column(0))
    table.easting[lo:hi] = batch.column(1).to_numpy(zero_copy_only=False)
    table.northing[lo:hi] = batch.column(2).to_numpy(zero_copy_only=False)
    for k, array in enumerate(table.quality.values()):
        array[lo:hi] = batch.column(3 + k).to_numpy(zero_copy_only=False)
    first_date = 3 + len(table.quality)
    block = table.values[lo:hi]
    for j in range(block.shape[1]):
        block[:, j] = batch.column(first_date + j).to_numpy(zero_copy_only=False)
    bad = np.isinf(block).any() or any(np.isinf(a[lo:hi]).any() for a in table.quality.values())
    if bad:
        _raise_first_bad_cell(source, header, layout, first_row=lo - table.offsets[-1], arrow_message=None)
    table.size = hi


# --------------------------------------------------------------------------------------------
# checks on the points of one file


def _check_points(source: _Source, header: Header, table: _Table) -> None:
    """Checks on the pids and coordinates of the file just read (the rows from its offset on)."""
    start, stop = table.offsets[-1], table.size
    layout = _Layout.of(header, tuple(table.quality))
    pid_column = header.columns["pid"]
    east, north = table.easting[start:stop], table.northing[start:stop]

    pids = pa.chunked_array(table.pid_chunks[table.first_chunks[-1]:], type=pa.string())
    empty = pc.equal(pc.utf8_length(pids), 0)
    if pc.any(empty).as_py():
        row = int(np.flatnonzero(empty.to_numpy(zero_copy_only=False))[0])
        line = _line_of_row(source, row)
        raise InputError("empty pid", path=source.path, line=line, field=pid_column)

    control = pc.match_substring_regex(pids, r"[\x00-\x1f\x7f]")
    if pc.any(control).as_py():
        row = int(np.flatnonzero(control.to_numpy(zero_copy_only=False))[0])
        raise InputError(f"pid {pids[row].as_py()!r} holds a control character (a NUL byte?)", path=source.path,
                         line=_line_of_row(source, row), field=pid_column)

    finite = np.isfinite(east) & np.isfinite(north)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        bad = header.columns["easting"] if not np.isfinite(east[row]) else header.columns["northing"]
        text = _cell_text(source, row, layout.easting if bad == header.columns["easting"] else layout.northing)
        raise InputError(f"missing or non-finite coordinate {text!r}; every point needs easting and "
                         f"northing in EPSG:3035 metres", path=source.path, line=_line_of_row(source, row),
                         field=bad)

    degrees = (np.abs(east) <= 180) & (np.abs(north) <= 90)
    if degrees.all():
        raise InputError(
            f"columns {header.columns['easting']!r}/{header.columns['northing']!r} look like longitude/"
            "latitude degrees; EGMS L3 uses EPSG:3035 (ETRS89-LAEA Europe) easting/northing in metres",
            path=source.path,
        )
    if degrees.mean() >= 0.5:                    # degrees but for some rows: name the first odd row
        row = int(np.flatnonzero(~degrees)[0])
        raise InputError(
            f"easting={east[row]:g}, northing={north[row]:g} is not a longitude/latitude, while most rows' "
            f"columns {header.columns['easting']!r}/{header.columns['northing']!r} look like degrees; EGMS L3 uses "
            "EPSG:3035 easting/northing in metres", path=source.path, line=_line_of_row(source, row),
            field=header.columns["northing"] if abs(north[row]) > 90 else header.columns["easting"])
    row = _outside_epsg3035(east, north)
    if row is not None:
        west, south, eastmost, northmost = _epsg3035()[1]
        raise InputError(
            f"point {pids[row].as_py()!r} at easting={east[row]:.1f}, northing={north[row]:.1f} lies outside "
            f"the area of use of EPSG:3035 (lon {west}..{eastmost}, lat {south}..{northmost}); "
            f"columns {header.columns['easting']!r}/{header.columns['northing']!r} must hold EPSG:3035 metres",
            path=source.path, line=_line_of_row(source, row),
        )


@lru_cache(maxsize=1)
def _epsg3035() -> tuple[object, tuple[float, float, float, float]]:
    import pyproj

    crs = pyproj.CRS.from_epsg(3035)
    transformer = pyproj.Transformer.from_crs(crs, pyproj.CRS.from_epsg(4326), always_xy=True)
    return transformer, tuple(crs.area_of_use.bounds)  # type: ignore[union-attr]


def _outside_epsg3035(east: np.ndarray, north: np.ndarray) -> int | None:
    """Index of the first point outside EPSG:3035's area of use, or None."""
    transformer, (west, south, eastmost, northmost) = _epsg3035()
    lon, lat = transformer.transform(east, north, errcheck=False)  # type: ignore[attr-defined]
    inside = np.isfinite(lon) & np.isfinite(lat)
    inside &= (lon >= west) & (lon <= eastmost) & (lat >= south) & (lat <= northmost)
    if inside.all():
        return None
    return int(np.flatnonzero(~inside)[0])


def _check_unique_pids(pids: np.ndarray, sources: Sequence[_Source], offsets: Sequence[int]) -> None:
    if len(pids) < 2:
        return
    array = pa.array(pids, type=pa.string())
    counts = pc.value_counts(array)
    repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return
    pid = repeated[0]["values"].as_py()
    rows = np.flatnonzero(pids == pid)
    bounds = [*offsets, len(pids)]
    files = [sources[i].path for i in range(len(sources)) if ((rows >= bounds[i]) & (rows < bounds[i + 1])).any()]
    where = f"twice in {files[0]}" if len(files) == 1 else f"in {' and '.join(files)}"
    raise InputError(f"duplicate pid {pid!r}: it occurs {len(rows)} times, {where}; pids must be unique",
                     path=files[-1])


# --------------------------------------------------------------------------------------------
# locating a bad cell exactly (only on error: re-reads the file with the csv module)


def _csv_rows(source: _Source) -> Iterator[tuple[int, int, list[str]]]:
    """(line, data row index, fields) for each non-empty data row; line is 1-based, header = 1."""
    with source.binary() as stream, _container_errors(source.path):
        # surrogateescape: a byte that is not UTF-8 reaches the caller as a lone surrogate, so that the
        # bad cell's line and column can be named (:func:`_not_utf8`)
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        next(reader, None)
        line, row = reader.line_num + 1, 0
        try:
            for fields in reader:
                if fields:
                    yield line, row, fields
                    row += 1
                line = reader.line_num + 1
        except csv.Error as exc:
            raise InputError(f"malformed CSV ({exc})", path=source.path, line=line) from None


def _line_of_row(source: _Source, row: int) -> int | None:
    for line, index, _ in _csv_rows(source):
        if index == row:
            return line
    return None


def _cell_text(source: _Source, row: int, column: int) -> str:
    for _, index, fields in _csv_rows(source):
        if index == row:
            return fields[column] if column < len(fields) else ""
    return ""


def _number_problem(text: str, *, what: str) -> str | None:
    """Why ``text`` is not accepted in a numeric column, or None (empty/NaN cells are accepted)."""
    value = text.strip(" \t")
    if value in _NULLS:
        return None
    try:
        if not value.isascii() or "_" in value:
            raise ValueError
        number = float(value)
    except ValueError:
        return f"expected {what}, got {text!r}"
    if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
        return f"expected a finite {what.removeprefix('a ')}, got {text!r}"
    return None


def _not_utf8(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _raise_first_bad_cell(source: _Source, header: Header, layout: _Layout, *, first_row: int,
                          arrow_message: str | None) -> NoReturn:
    """Find the first bad field from data row ``first_row`` on and raise an exact InputError."""
    checks: list[tuple[int, str]] = [(layout.easting, "a coordinate in metres"),
                                     (layout.northing, "a coordinate in metres")]
    checks += [(i, "a number") for i in layout.quality.values()]
    checks += [(i, "a number in mm") for i in layout.dates]
    rows = 0
    for line, row, fields in _csv_rows(source):
        rows += 1
        if row < first_row:
            continue
        for index, text in enumerate(fields):
            if _not_utf8(text):
                name = header.fieldnames[index] if index < len(header.fieldnames) else None
                raise InputError(f"not UTF-8 text: {text.encode('utf-8', 'surrogateescape')!r}", path=source.path,
                                 line=line, field=name)
        if len(fields) != layout.width:
            raise InputError(f"expected {layout.width} fields as in the header, found {len(fields)}",
                             path=source.path, line=line)
        for index, what in checks:
            problem = _number_problem(fields[index], what=what)
            if problem:
                raise InputError(problem, path=source.path, line=line, field=header.fieldnames[index])
    if rows == 0:
        raise InputError("no data rows: the file holds a header but no points", path=source.path)
    detail = f" ({arrow_message})" if arrow_message else ""
    match = _ARROW_COLUMN_RE.search(arrow_message or "")
    column = header.fieldnames[int(match.group(1))] if match and int(match.group(1)) < layout.width else None
    raise InputError(f"could not read the CSV rows{detail}", path=source.path, field=column)


# --------------------------------------------------------------------------------------------
# progress


class _Progress:
    """tqdm bars on stderr when enabled; no output at all otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    @contextlib.contextmanager
    def bytes(self, source: _Source) -> Iterator[Callable[[int], None]]:
        if not self.enabled:
            yield _ignore
            return
        from tqdm.auto import tqdm

        total = os.path.getsize(source.path) if source.kind == "plain" else None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"scanning {Path(source.path).name}",
                  file=sys.stderr, leave=False) as bar:
            yield bar.update

    @contextlib.contextmanager
    def rows(self, *, total: int) -> Iterator[Callable[[int], None]]:
        if not self.enabled:
            yield _ignore
            return
        from tqdm.auto import tqdm

        with tqdm(total=total, unit="rows", unit_scale=True, desc="reading EGMS points", file=sys.stderr) as bar:
            yield bar.update


def _ignore(_: int) -> None:
    return None
