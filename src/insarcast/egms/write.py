"""Write point time series as an EGMS Level 3 CSV tile (plain, gzip or zip).

The file has the header ``pid,easting,northing,<quality columns>,<yyyymmdd ...>`` with the quality
columns given, in :data:`~insarcast.egms.columns.QUALITY_COLUMNS` order, and one column per epoch
holding displacement in mm. Conventions:

* Numbers are written in their shortest round-trip form (``1.2``, ``-0.5``, ``4074950``):
  coordinates as float64, quality and epoch values as float32, so reading the file back with
  :func:`~insarcast.egms.read_egms` gives exactly the float32 values that were written.
* ``decimals`` (default 1, i.e. 0.1 mm as EGMS delivers) rounds epoch values half-to-even
  before writing; quality columns are rounded to ``max(decimals, 2)`` decimals. ``decimals=None``
  writes every value unrounded (float32-exact round trip).
* NaN is written as an empty cell, as in EGMS files. Infinite values are refused.
* pid cells are quoted only if a pid contains a comma, a quote or a line break; header names are
  never quoted.
* The suffix picks the container: ``.csv`` plain text, ``.csv.gz`` gzip, ``.zip`` a zip holding one
  member ``<stem>.csv`` (as EGMS delivers). Output is deterministic: the gzip header carries no
  name and mtime 0, the zip member a fixed date (1980-01-01) and permissions, so the same inputs
  give the same bytes.
* The table is converted ``block_rows`` rows at a time (split over up to four threads that format
  text in parallel, written in order), so memory stays bounded by about one block of text whatever
  the number of points, and the file appears atomically (whole or not at all).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zipfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..fsutil import atomic_path
from .columns import QUALITY_COLUMNS

GZIP_LEVEL = 1
"""Deflate level for ``.csv.gz`` and ``.zip`` output: level 1 compresses these tables ~8x faster than
zlib's default 6 for a file ~18 % larger (about 1/2.5 of the text instead of 1/3)."""

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
"""Fixed modification time of the zip member, for deterministic bytes."""

_WRITE_BATCH_ROWS = 4096
_MAX_WORKERS = 4


def write_egms_csv(
    path: str | os.PathLike,
    *,
    pid: np.ndarray | list[str],
    easting: np.ndarray,
    northing: np.ndarray,
    dates: np.ndarray | list,
    values: np.ndarray,
    quality: Mapping[str, np.ndarray] | None = None,
    decimals: int | None = 1,
    block_rows: int = 50_000,
) -> None:
    """Write ``n`` points with ``T`` epochs to ``path`` as an EGMS L3 CSV tile.

    ``values`` is ``(n, T)`` displacement in mm (NaN = no value); ``dates`` ``(T,)`` strictly
    increasing days; ``quality`` maps canonical quality names to ``(n,)`` arrays. Raises
    :class:`ValueError` for inconsistent arguments (these are programming errors, not bad input).
    """
    quality = quality or {}
    with EgmsCsvWriter(path, dates=dates, quality=tuple(quality), decimals=decimals,
                       block_rows=block_rows) as writer:
        writer.write(pid=pid, easting=easting, northing=northing, values=values, quality=quality)


class EgmsCsvWriter:
    """Stream blocks of points into one EGMS L3 CSV tile; the file appears whole on a clean exit.

    >>> with EgmsCsvWriter("tile.csv", dates=dates, quality=("height",)) as writer:  # doctest: +SKIP
    ...     for block in blocks:
    ...         writer.write(pid=..., easting=..., northing=..., values=..., quality={"height": ...})

    Rows are formatted independently, so the bytes do not depend on how the points are blocked
    (unless a pid needs quoting: quoting is decided per block).
    """

    def __init__(self, path: str | os.PathLike, *, dates: np.ndarray | list, quality: tuple[str, ...] = (),
                 decimals: int | None = 1, block_rows: int = 50_000) -> None:
        self.target = Path(path)
        self._container = _container(self.target)
        if decimals is not None and (not isinstance(decimals, (int, np.integer)) or decimals < 0):
            raise ValueError(f"decimals must be a non-negative integer or None, got {decimals!r}")
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        unknown = sorted(set(quality) - set(QUALITY_COLUMNS))
        if unknown:
            raise ValueError(f"unknown quality columns {unknown}; expected names from {QUALITY_COLUMNS}")
        self.dates = _dates(dates)
        self.quality = tuple(name for name in QUALITY_COLUMNS if name in quality)
        self.decimals = decimals
        self.block_rows = block_rows
        self.names = ["pid", "easting", "northing", *self.quality, *_date_names(self.dates)]
        self.schema = pa.schema(
            [("pid", pa.string()), ("easting", pa.float64()), ("northing", pa.float64())]
            + [(name, pa.float32()) for name in self.names[3:]]
        )
        self._stack: contextlib.ExitStack | None = None
        self._sink: BinaryIO | None = None

    def __enter__(self) -> "EgmsCsvWriter":
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.target))
            self._sink = stack.enter_context(_sink(tmp, self._container, _member_name(self.target)))
            self._sink.write((",".join(self.names) + "\n").encode("utf-8"))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info) -> None:
        stack, self._stack, self._sink = self._stack, None, None
        if stack is not None:
            stack.__exit__(*exc_info)

    def write(self, *, pid: np.ndarray | list[str], easting: np.ndarray, northing: np.ndarray,
              values: np.ndarray, quality: Mapping[str, np.ndarray] | None = None) -> None:
        """Append ``n`` points: ``values`` ``(n, T)`` mm, ``quality`` the columns named at opening."""
        if self._sink is None:
            raise ValueError("EgmsCsvWriter.write outside its with block")
        pids = _pid_array(pid)
        n = len(pids)
        east = _coordinate(easting, "easting", n)
        north = _coordinate(northing, "northing", n)
        vals = np.asarray(values)
        if vals.ndim != 2 or vals.shape != (n, len(self.dates)):
            raise ValueError(f"values must have shape (n, T) = ({n}, {len(self.dates)}), got {vals.shape}")
        qual = _quality(quality or {}, n)
        if tuple(qual) != self.quality:
            raise ValueError(f"quality columns {tuple(qual)} differ from those named at opening {self.quality}")
        quoting = "needed" if n and pc.any(pc.match_substring_regex(pids, r'[",\r\n]')).as_py() else "none"
        # Lines end in "\n", Arrow's only line end before pyarrow 26 and its default since (no ``eol=``:
        # pyarrow >= 14 is allowed).
        options = pacsv.WriteOptions(
            include_header=False, batch_size=_WRITE_BATCH_ROWS, quoting_style=quoting, delimiter=","
        )
        decimals = self.decimals
        quality_decimals = None if decimals is None else max(int(decimals), 2)
        schema = self.schema

        def render(start: int, stop: int) -> pa.Buffer:
            """Rows ``start:stop`` as CSV text (runs in a worker thread; Arrow releases the GIL)."""
            columns = [pids.slice(start, stop - start), pa.array(east[start:stop]), pa.array(north[start:stop])]
            columns += [_float32_array(rounded(q[start:stop], quality_decimals)) for q in qual.values()]
            block = rounded(vals[start:stop], decimals)
            if np.isinf(block).any():
                row, col = np.argwhere(np.isinf(block))[0]
                raise ValueError(f"values[{start + row}, {col}] is infinite; use NaN for a missing value")
            columns += [_float32_array(series) for series in np.ascontiguousarray(block.T)]
            out = pa.BufferOutputStream()
            with pacsv.CSVWriter(out, schema, write_options=options) as writer:
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
            return out.getvalue()

        workers = _workers()
        task_rows = max(min(self.block_rows, 1024), -(-self.block_rows // workers))
        spans = [(start, min(n, start + task_rows)) for start in range(0, n, task_rows)]
        for text in _ordered_map(render, spans, workers=workers):
            self._sink.write(memoryview(text))


def _workers() -> int:
    """Threads that format CSV text in parallel (Arrow's CSV writer itself is single-threaded)."""
    return max(1, min(_MAX_WORKERS, os.cpu_count() or 1))


def _ordered_map(
    func: Callable[[int, int], pa.Buffer], spans: list[tuple[int, int]], *, workers: int
) -> Iterator[pa.Buffer]:
    """``func(*span)`` for each span, in order, with at most ``workers`` results in flight."""
    if workers == 1:
        for span in spans:
            yield func(*span)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="egms-write") as pool:
        pending: deque[Future[pa.Buffer]] = deque()
        try:
            for span in spans:
                if len(pending) >= workers:
                    yield pending.popleft().result()
                pending.append(pool.submit(func, *span))
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _container(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".csv.gz"):
        return "gzip"
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(".csv"):
        return "plain"
    raise ValueError(f"{path}: the file name must end in .csv, .csv.gz or .zip")


def _member_name(path: Path) -> str:
    """The CSV member of a zip: ``EGMS_..._U.zip`` holds ``EGMS_..._U.csv``."""
    stem = path.name[: -len(".zip")] if path.name.lower().endswith(".zip") else path.name
    return stem if stem.lower().endswith(".csv") else f"{stem}.csv"


@contextlib.contextmanager
def _sink(tmp: Path, container: str, member: str) -> Iterator[BinaryIO]:
    """A binary stream writing into ``tmp`` through the chosen container, deterministically."""
    with open(tmp, "wb", buffering=1 << 20) as raw:
        if container == "plain":
            yield raw
        elif container == "gzip":
            # filename="" keeps the temporary name out of the header; mtime=0 keeps the clock out.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as gz:
                yield gz  # type: ignore[misc]
        else:
            info = zipfile.ZipInfo(member, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            with zipfile.ZipFile(raw, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=GZIP_LEVEL) as zf:
                _set_compress_level(info, GZIP_LEVEL)
                with zf.open(info, mode="w", force_zip64=True) as out:
                    yield out  # type: ignore[misc]


def _set_compress_level(info: zipfile.ZipInfo, level: int) -> None:
    """ZipFile.open(ZipInfo) ignores the archive's level; the member carries its own."""
    if hasattr(zipfile.ZipInfo, "compress_level"):  # Python >= 3.13
        info.compress_level = level  # type: ignore[attr-defined]
    else:
        info._compresslevel = level  # type: ignore[attr-defined]


def _pid_array(pid: np.ndarray | list[str]) -> pa.StringArray:
    try:
        array = pa.array(np.asarray(pid, dtype=object), type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"pid must hold strings: {exc}") from None
    if array.null_count:
        raise ValueError("pid must not hold None")
    if len(array) and pc.any(pc.equal(pc.utf8_length(array), 0)).as_py():
        raise ValueError("pid must not hold empty strings")
    return array


def _coordinate(coord: np.ndarray, name: str, n: int) -> np.ndarray:
    array = np.ascontiguousarray(coord, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like pid, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def _dates(dates: np.ndarray | list) -> np.ndarray:
    day = np.asarray(dates).astype("datetime64[D]")
    if day.ndim != 1 or len(day) == 0:
        raise ValueError(f"dates must be a non-empty 1-D array, got shape {day.shape}")
    if np.isnat(day).any() or (np.diff(day) <= np.timedelta64(0, "D")).any():
        raise ValueError("dates must be strictly increasing days")
    return day


def _date_names(day: np.ndarray) -> list[str]:
    return [text.replace("-", "") for text in np.datetime_as_string(day, unit="D")]


def _quality(quality: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    unknown = sorted(set(quality) - set(QUALITY_COLUMNS))
    if unknown:
        raise ValueError(f"unknown quality columns {unknown}; expected names from {QUALITY_COLUMNS}")
    ordered: dict[str, np.ndarray] = {}
    for name in QUALITY_COLUMNS:
        if name in quality:
            array = np.asarray(quality[name])
            if array.shape != (n,):
                raise ValueError(f"quality[{name!r}] must have shape ({n},), got {array.shape}")
            if np.isinf(array).any():
                raise ValueError(f"quality[{name!r}] holds infinite values; use NaN for a missing value")
            ordered[name] = array
    return ordered


def rounded(array: np.ndarray, decimals: int | None) -> np.ndarray:
    """``array`` as float32, rounded to ``decimals`` so that the shortest float32 text is short.

    The rounding is done on the integer count of 10**-decimals units and then divided in float32:
    that division yields the float32 nearest to the decimal value, whose shortest repr is that
    decimal (e.g. ``1.2``, not ``1.2000000476837158``). Adding 0.0 turns -0.0 into 0.0.
    """
    if decimals is None:
        return np.asarray(array, dtype=np.float32)
    scale = 10.0**decimals
    units = np.rint(np.asarray(array, dtype=np.float64) * scale).astype(np.float32)
    return units / np.float32(scale) + np.float32(0.0)


def _float32_array(series: np.ndarray) -> pa.Array:
    series = np.ascontiguousarray(series, dtype=np.float32)
    missing = np.isnan(series)
    return pa.array(series, type=pa.float32(), mask=missing if missing.any() else None)
