"""`insarcast forecast`: an ensemble over a Zarr cube on dask.distributed, products to Zarr.

The cube is read lazily in spatial chunks (time whole); each Dask task runs the ensemble on its chunk
plus a halo of P - 1 cells, P - 1 + ``spatial.RADIUS`` with the spatial filter (so the products do not
depend on the chunking), in worker processes that each load the ensemble once and keep its ONNX Runtime
sessions. The class thresholds are exact over the whole region: a first pass fits the reference
(inputs other than the paper's) and runs the ensemble, writes the fit and the member forecasts to a
scratch folder of Zarr stores beside the output and computes the thresholds; the second derives the
products from the stored arrays, so the ensemble and the fits run once (with ``thresholds`` given,
there is one pass and no scratch store). The Zarr store appears whole or not at all; the scratch store is
removed in every case.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from insarcast.cadence import check_regular
from insarcast.cpus import usable_cpus
from insarcast.errors import InputError

_ENSEMBLES: dict[tuple, Any] = {}


class EnsemblePredictor:
    """A picklable predictor: each process opens the ensemble once and keeps its sessions."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, batch_size: int | None = None,
                 providers: list[str] | None = None):
        self.path, self.threads, self.batch_size, self.providers = str(path), threads, batch_size, providers

    def ensemble(self):
        from insarcast.udf.ensemble import load_ensemble

        key = (self.path, self.threads, self.batch_size, tuple(self.providers or ()))
        if key not in _ENSEMBLES:
            _ENSEMBLES[key] = load_ensemble(self.path, intra_op_threads=self.threads, batch_size=self.batch_size,
                                            providers=self.providers)
        return _ENSEMBLES[key]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.ensemble().predict(x)


def check_compatible(cube, manifest: Mapping[str, Any], *, path: str | os.PathLike | None = None) -> None:
    """The cube's grid spacing (x and y), CRS and epoch spacing must be the ensemble's.

    ``cube``: a Dataset or DataArray with ``x``, ``y``, ``t`` coordinates (a CRS through rioxarray,
    if any). A check whose value the cube or the manifest does not give is skipped.
    """
    grid = manifest.get("grid") or {}
    if grid.get("spacing"):
        expected = float(grid["spacing"])
        for name in ("x", "y"):
            if name not in cube.coords or cube[name].size < 2:
                continue
            values = np.asarray(cube[name].values, np.float64)
            spacing = float(abs(values[1] - values[0]))
            if not np.isclose(spacing, expected, rtol=1e-6):
                raise InputError(f"grid spacing {spacing:g} m differs from the ensemble's {expected:g} m "
                                 f"(along {name})", path=path, field=name)
    crs = getattr(getattr(cube, "rio", None), "crs", None)
    if crs is not None and grid.get("crs"):
        from pyproj import CRS

        if CRS.from_user_input(crs) != CRS.from_user_input(grid["crs"]):
            raise InputError(f"CRS {crs} differs from the ensemble's {grid['crs']}", path=path, field="spatial_ref")
    if "t" in cube.coords and cube["t"].size > 1 and manifest.get("epoch_days"):
        days = check_regular(cube["t"].values, source=path)
        if abs(days - float(manifest["epoch_days"])) > 0.5:
            raise InputError(f"epoch spacing {days:g} days differs from the ensemble's {manifest['epoch_days']:g}",
                             path=path, field="t")


def read_thresholds(path: str | os.PathLike) -> dict[str, float]:
    """The class thresholds (mm) kept in a JSON file or in the attributes of an earlier products store.

    A JSON object or a Zarr store written by :func:`forecast_cube` must hold the five fields of
    :class:`insarcast.udf.products.Thresholds` (``q85``, ``q95``, ``q99``, ``std_tercile_1``,
    ``std_tercile_2``), finite and ordered. Passing them makes a run's classes comparable with the
    run they came from: the same Q85 / Q95 / Q99 in mm, rather than this region's own quantiles.
    """
    import json

    from insarcast.udf.products import Thresholds

    path = Path(path)
    if path.is_dir():
        try:
            import xarray as xr

            values = dict(xr.open_zarr(path).attrs)
        except Exception as err:                     # noqa: BLE001 - any unreadable store is bad input
            raise InputError(f"cannot read the products store for its thresholds: {err}", path=path,
                             field="thresholds") from err
    else:
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise InputError("no such thresholds file (a JSON object or a products Zarr store)", path=path,
                             field="thresholds") from err
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"the thresholds file is not a readable JSON object: {err}", path=path,
                             field="thresholds") from err
    if not isinstance(values, dict):
        raise InputError(f"expected a JSON object with {list(Thresholds.__dataclass_fields__)}, got "
                         f"{type(values).__name__}", path=path, field="thresholds")
    try:                                  # the one check of the fields, shared with the openEO context
        return Thresholds.from_mapping(values).to_dict()
    except InputError as err:
        raise InputError(err.message, path=path, field=err.field) from err


def _check_before_work(data, members, *, path) -> None:
    """What can be refused before the cluster starts and the ensemble runs: too few epochs, and a cube
    without any valid pixel (one read of the last T epochs)."""
    from insarcast.udf.forecast import no_usable_pixel, split_cube

    displacement, valid = split_cube(data)
    nt = displacement.sizes["t"]
    if nt < members.history:
        raise InputError(f"the cube has {nt} epochs, fewer than the model's history T = {members.history}",
                         path=path, field="t")
    last = displacement.isel(t=slice(nt - members.history, None))
    finite = np.isfinite(last).all("t")
    usable = finite if valid is None else finite & valid.astype(bool)
    if not bool(usable.any().compute()):
        raise no_usable_pixel(members.history, int(finite.sum().compute()),
                              None if valid is None else int(valid.sum().compute()), path=path)


def _native_float32(block: np.ndarray) -> np.ndarray:
    """``block`` as float32 in the machine's byte order, spelt as numpy spells it (``=``)."""
    return block.astype(np.float32)


def check_settings(*, workers: int | None = None, threads: int | None = None, chunks: int | None = None,
                   overlap: int | None = None, horizon: int | None = None) -> None:
    """Refuse a nonsensical setting at once, naming its option (``forecast --workers -1`` would hang)."""
    for option, value, least in (("--workers", workers, 1), ("--threads", threads, 1), ("--chunks", chunks, 1),
                                 ("--overlap", overlap, 0), ("--horizon", horizon, 1)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"expected an integer, got {value!r}", field=option)
        if value < least:
            raise InputError(f"must be at least {least}, got {value}", field=option)


FORMATS = ("zarr", "netcdf")

#: ``--device``: the ONNX Runtime providers asked for; ``cuda`` fails unless the sessions really run on CUDA.
DEVICES: dict[str, list[str] | None] = {"auto": None, "cpu": ["CPUExecutionProvider"],
                                        "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def forecast_cube(cube: str | os.PathLike, ensemble: str | os.PathLike, out: str | os.PathLike, *,
                  scheduler: str | None = None, workers: int | None = None, chunks: int = 256,
                  overlap: int | None = None, horizon: int | None = None, mode: str = "change",
                  thresholds: Mapping[str, float] | None = None, threads: int = 1, batch_size: int = 64,
                  progress: bool = False, fmt: str = "zarr", device: str = "auto",
                  spatial_filter: bool | None = None) -> Path:
    """Forecast with ``ensemble`` over ``cube`` and write the products to ``out``: a Zarr store, or with
    ``fmt="netcdf"`` one CF 1.11 NetCDF-4 file (:mod:`insarcast.udf.netcdf`).

    ``scheduler``: a dask.distributed address; default a LocalCluster of ``workers`` processes
    (default: the CPUs this process may use, :func:`insarcast.cpus.usable_cpus`) with one thread each.
    ``chunks``: cells per side of a task's block. ``overlap``: cells shared by neighbouring tiles
    (default P / 4). ``device``: a key of :data:`DEVICES`. ``spatial_filter``: see
    :func:`insarcast.udf.forecast.forecast_products` (default: the ensemble inputs' own). The products' attributes record the
    providers the sessions run on and the thread settings.
    """
    from insarcast.cube import open_cube, reading
    from insarcast.fsutil import atomic_path, clean_stale, hidden_path
    from insarcast.udf.ensemble import load_ensemble
    from insarcast.udf.forecast import forecast_products

    check_settings(workers=workers, threads=threads, chunks=chunks, overlap=overlap, horizon=horizon)
    if fmt not in FORMATS:
        raise InputError(f"expected one of {', '.join(FORMATS)}, got {fmt!r}", field="format")
    if fmt == "netcdf":
        from insarcast.udf.netcdf import to_netcdf
    clean_stale(out)                                      # temporaries of a killed run on this target
    if device not in DEVICES:
        raise InputError(f"expected one of {', '.join(DEVICES)}, got {device!r}", field="--device")
    providers = DEVICES[device]
    members = load_ensemble(ensemble, providers=providers)   # checks the whole ensemble before any work
    if horizon is not None and horizon > members.horizon:
        raise InputError(f"must be at most the ensemble's horizon F = {members.horizon}, got {horizon}",
                         field="--horizon")
    ds = open_cube(cube)
    check_compatible(ds, members.manifest, path=cube)
    names = ["displacement"] + (["valid"] if "valid" in ds else [])
    data = ds[names].chunk({"t": -1, "y": chunks, "x": chunks})
    with reading(cube):
        _check_before_work(data, members, path=cube)
    predictor = EnsemblePredictor(ensemble, threads=threads, providers=providers)
    settings = {**members.settings, "predict": predictor}
    from insarcast.cpus import thread_settings

    workers = workers or usable_cpus()
    sharing = thread_settings(processes=workers if scheduler is None else 1)
    client, cluster = _client(scheduler, workers)
    scratch = hidden_path("scratch", out)

    def run(graph):
        future = client.compute(graph)
        if progress:                      # on stderr: stdout carries the output path for scripts
            import contextlib
            import sys

            from distributed import progress as show

            with contextlib.redirect_stdout(sys.stderr):
                show(future)
        return future.result()

    stores = itertools.count()

    def materialise(fc):
        import dask.array as da

        path = scratch / str(next(stores))        # one store per array (the reference's fit, the members)
        run(da.to_zarr(fc, str(path), compute=False))
        stored = da.from_zarr(str(path))
        # zarr reads the store back as dtype('<f4'), its byte order spelt out, which dask's astype takes for
        # float32 already (equal dtypes), so xarray's own conversion to the native order does nothing and
        # netCDF4 warned "endian-ness of dtype and endian kwarg do not match" on every `--format netcdf`:
        # the forecasts go on as the native float32 they were computed in
        return stored.map_blocks(_native_float32, dtype=np.float32, meta=np.empty((0,) * stored.ndim, np.float32))

    try:
        with reading(cube):
            products = forecast_products(data, overlap=overlap,
                                         horizon=horizon, mode=mode, thresholds=thresholds, batch_size=batch_size,
                                         materialise=materialise if thresholds is None else None,
                                         spatial_filter=spatial_filter, **settings)
            products.attrs.update(ensemble=members.name, ensemble_path=str(Path(ensemble).resolve()),
                                  cube=str(Path(cube).resolve()),
                                  members_zero_output=members.manifest.members_zero_output,
                                  onnxruntime_providers=",".join(members.active_providers),
                                  onnxruntime_intra_op_threads=int(threads),
                                  dask_workers=int(workers) if scheduler is None else "scheduler",
                                  usable_cpus=sharing.usable_cpus,
                                  wait_policy=f"{sharing.wait_policy} ({sharing.reason})")
            products = products.chunk({"y": chunks, "x": chunks})          # Zarr wants regular chunks
            for variable in products.variables.values():
                variable.encoding.pop("chunks", None)
            with atomic_path(Path(out)) as tmp:
                if fmt == "netcdf":
                    run(to_netcdf(products, tmp, compute=False))
                else:
                    run(products.to_zarr(tmp, mode="w", compute=False, consolidated=True, zarr_format=2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        client.close()
        if cluster is not None:
            cluster.close()
    return Path(out)


def _client(scheduler: str | None, workers: int | None):
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:            # pragma: no cover - depends on the environment
        from insarcast.errors import MissingDependencyError

        raise MissingDependencyError("forecast needs dask.distributed: pip install 'insarcast[udf]'") from err
    if scheduler:
        return Client(scheduler), None
    # Workers log a failed task's traceback themselves; the client re-raises it as one error, which
    # the CLI prints in one line (a full disk is one line, not a worker log).
    cluster = LocalCluster(n_workers=workers or usable_cpus(), threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.CRITICAL)
    return Client(cluster), cluster
