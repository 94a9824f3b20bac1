"""The products job's result -> the products Dataset ``insarcast forecast`` writes (``insarcast openeo run``).

The products graph (:func:`insarcast.udf.openeo_job.products_graph`) ends in ``save_result`` GTiff: the
backend writes one or more GeoTIFFs whose bands are the UDF's (:func:`insarcast.udf.openeo_udf.band_names`
with ``member_bands``: the median per horizon step, the products, every member's change per step and,
for inputs other than ``paper``, the forecast error scale), float32 with NaN nodata. :func:`read_result`
puts the files together on their common grid (a backend may split a large result into tiles);
:func:`result_products` turns the bands back into the Dataset of
:func:`insarcast.udf.forecast.forecast_products`, through the same
:func:`insarcast.udf.forecast.assemble_products`.

What openEO's time dimension cannot carry is re-stamped from the job: the products' reference time is
the cube's last epoch and the valid time of step h is the last epoch plus h times the median epoch
spacing, both from ``job.json``'s ``epochs`` (the cube Collection's ``cube:dimensions`` t values), exactly
as ``insarcast forecast`` derives them from the cube's ``t``. The UDF's context in the products graph
gives the horizon, mode, overlap and thresholds; the ensemble's manifest gives T, F, P, K and the inputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr

from insarcast.errors import InputError

from .openeo_udf import band_names
from .products import CLASS_PRODUCTS, NODATA_CLASS, PRODUCTS, Thresholds
from .tiling import default_overlap


def _raster_files(folder: Path) -> list[Path]:
    """The result's raster files: every file but the JSON metadata (a backend names them as it likes)."""
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix.lower() != ".json"]
    if not files:
        raise InputError("no GeoTIFF in the products job's result", path=folder)
    return files


def _read_one(path: Path) -> tuple[np.ndarray, Any, Any, tuple]:
    """(data (bands, y, x) float32 with NaN nodata, transform, crs, band descriptions) of one GeoTIFF."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            data = src.read(masked=True).astype(np.float32).filled(np.nan)
            return data, src.transform, src.crs, tuple(src.descriptions)
    except rasterio.errors.RasterioError as err:
        raise InputError(f"not a GeoTIFF the products job could have written ({err})", path=path) from err


def read_result(folder: str | os.PathLike) -> xr.DataArray:
    """The result's GeoTIFFs in ``folder`` as one (bands, y, x) float32 DataArray on their common grid:
    coordinates the cells' centres (y descending), band labels the files' band descriptions (or None),
    attributes ``crs`` (the CRS as rasterio gives it) and ``transform`` (GDAL's six numbers). Files that
    do not share a CRS, cell size and band layout are refused, naming the first that differs."""
    folder = Path(folder)
    parts = [(path, *_read_one(path)) for path in _raster_files(folder)]
    _, first, transform, crs, labels = parts[0]
    a, e = transform.a, transform.e
    for path, data, other, other_crs, other_labels in parts[1:]:
        if other_crs != crs or (other.a, other.e) != (a, e) or len(data) != len(first) or other_labels != labels:
            raise InputError("the result's files differ in CRS, cell size or bands from "
                             f"{parts[0][0].name}: cannot put them together", path=path)
    if transform.b or transform.d or a <= 0 or e >= 0:
        raise InputError(f"expected a north-up grid, got the transform {tuple(transform)[:6]}", path=parts[0][0])
    west = min(t.c for _, _, t, _, _ in parts)
    north = max(t.f for _, _, t, _, _ in parts)
    cols = [int(round((t.c - west) / a)) for _, _, t, _, _ in parts]
    rows = [int(round((t.f - north) / e)) for _, _, t, _, _ in parts]
    nx = max(c + d.shape[2] for c, (_, d, _, _, _) in zip(cols, parts))
    ny = max(r + d.shape[1] for r, (_, d, _, _, _) in zip(rows, parts))
    mosaic = np.full((len(first), ny, nx), np.nan, np.float32)
    for row, col, (_, data, _, _, _) in zip(rows, cols, parts):
        window = mosaic[:, row:row + data.shape[1], col:col + data.shape[2]]
        np.copyto(window, data, where=np.isnan(window))          # tiles' overlaps hold the same values
    x = west + (np.arange(nx) + 0.5) * a
    y = north + (np.arange(ny) + 0.5) * e
    return xr.DataArray(mosaic, dims=("bands", "y", "x"), coords={"bands": list(labels), "y": y, "x": x},
                        attrs={"crs": crs, "transform": (west, a, 0.0, north, 0.0, e)})


def _bands(result: xr.DataArray, names: Sequence[str], *, path: str | os.PathLike) -> xr.DataArray:
    """The result's bands labelled ``names``: by the files' band descriptions where they name every band
    (GeoPySpark writes the labels there), else by position (the count must match)."""
    labels = [str(label) for label in result["bands"].values if label is not None]
    if len(labels) == result.sizes["bands"]:
        missing = [n for n in names if n not in labels]
        if missing:
            raise InputError(f"the result has no band {missing[0]!r} (it has {labels[:4]} ...): was the products "
                             "graph built with member_bands (`insarcast openeo build`)?", path=path, field="bands")
        return result.sel(bands=list(names))
    if result.sizes["bands"] != len(names):
        raise InputError(f"the result has {result.sizes['bands']} unnamed bands, expected {len(names)} "
                         f"({names[0]} .. {names[-1]})", path=path, field="bands")
    return result.assign_coords(bands=list(names))


def _template(result: xr.DataArray, epochs: Sequence[Any]) -> xr.DataArray:
    """A stand-in for the cube's displacement (t, y, x) on the result's grid, with the epochs as ``t``
    and the CRS as rioxarray's ``spatial_ref``: all :func:`assemble_products` reads of it."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    from affine import Affine
    from pyproj import CRS

    try:
        t = np.asarray([str(e).removesuffix("Z") for e in epochs], "datetime64[ns]")
    except ValueError as err:
        raise InputError(f"the job's epochs are not ISO times: {err}", field="epochs") from err
    shape = (len(t), result.sizes["y"], result.sizes["x"])
    template = xr.DataArray(np.broadcast_to(np.float32(np.nan), shape), dims=("t", "y", "x"), coords={
        "t": t, "y": ("y", result["y"].values, {"units": "m", "standard_name": "projection_y_coordinate"}),
        "x": ("x", result["x"].values, {"units": "m", "standard_name": "projection_x_coordinate"})})
    crs = CRS.from_user_input(result.attrs["crs"])
    code = crs.to_epsg()
    template = template.rio.write_crs(f"EPSG:{code}" if code is not None else crs)
    return template.rio.write_transform(Affine.from_gdal(*result.attrs["transform"]))


def result_products(result: xr.DataArray, *, epochs: Sequence[Any], context: Mapping[str, Any],
                    manifest: Mapping[str, Any], thresholds_given: bool,
                    path: str | os.PathLike = "result") -> xr.Dataset:
    """The products Dataset of ``insarcast forecast`` from ``result`` (:func:`read_result`).

    ``epochs``: the cube's epochs (``job.json``); ``context``: the UDF context of the products graph (its
    thresholds, horizon, mode, overlap); ``manifest``: the ensemble's (``history``, ``horizon``,
    ``patch``, ``members``, ``inputs``); ``thresholds_given``: whether the thresholds came from the user
    (``--thresholds-from``) rather than from the statistics job over this region."""
    steps, members = int(manifest["horizon"]), len(manifest["members"])
    inputs = str(manifest.get("inputs") or "paper")
    names = band_names(steps, members, inputs != "paper")
    bands = _bands(result, names, path=path)
    history = int(manifest["history"])
    if len(epochs) < history:
        raise InputError(f"the job has {len(epochs)} epochs, fewer than the model's history T = {history}",
                         field="epochs")
    hs = range(1, steps + 1)
    fc = np.stack([bands.sel(bands=[f"member{k:02d}_h{h}" for h in hs]).values for k in range(members)])
    median = bands.sel(bands=[f"fc_h{h}" for h in hs]).values
    stack = np.stack([_layer(bands, name) for name in PRODUCTS])
    scale = bands.sel(bands=[f"scale_h{h}" for h in hs]).values if inputs != "paper" else None
    patch = int(manifest["patch"])
    overlap = context.get("overlap")
    from .forecast import assemble_products

    return assemble_products(_template(result, epochs), fc, median, stack, scale,
                             thresholds=Thresholds.from_mapping(context["thresholds"]), given=thresholds_given,
                             horizon=int(context.get("horizon") or steps), mode=str(context.get("mode") or "change"),
                             history=history, patch=patch,
                             overlap=default_overlap(patch) if overlap is None else int(overlap),
                             members=members, inputs=inputs)


def _layer(bands: xr.DataArray, name: str) -> np.ndarray:
    """One product layer as ``assemble_products`` takes it: class codes NaN -> 255 (nodata)."""
    layer = bands.sel(bands=name).values
    return np.where(np.isnan(layer), np.float32(NODATA_CLASS), layer) if name in CLASS_PRODUCTS else layer


def udf_context(graph: Mapping[str, Any]) -> dict[str, Any]:
    """The context of the (one) ``run_udf`` node of a process graph, nested graphs searched too."""
    found = []

    def walk(nodes: Mapping[str, Any]) -> None:
        for node in nodes.values():
            if node.get("process_id") == "run_udf":
                found.append(node.get("arguments", {}).get("context") or {})
            for value in (node.get("arguments") or {}).values():
                if isinstance(value, dict) and isinstance(value.get("process_graph"), dict):
                    walk(value["process_graph"])

    walk(graph.get("process_graph", graph))
    if len(found) != 1:
        raise InputError(f"expected one run_udf node in the products graph, found {len(found)}",
                         field="process_graph")
    return dict(found[0])
