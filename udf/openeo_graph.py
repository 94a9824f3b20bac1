"""The openEO process graph that runs insarcast's UDF, written as JSON offline (no client, no network).

    from insarcast.udf.openeo_graph import process_graph
    graph = process_graph(stac_url="https://example.org/cube/collection.json",
                          bbox=(4058000, 3082000, 4083600, 3101200), epochs=[...], ensemble="ensemble",
                          thresholds={...}, patch=32)

The nodes, and the sentence of the process definitions (``../shared/openeo-processes``) each relies on:

``load_stac``        the displacement cube published by ``insarcast publish-cube``: (t, bands, y, x).
``apply_dimension``  ``dimension="t", target_dimension="bands"``, process ``array_concat(data, [])`` (the
                     time series unchanged): "By specifying a target dimension, the source dimension is
                     removed" and "the dimension labels will be incrementing integers starting from zero,
                     which can be changed using rename_labels() afterwards". Gives (bands, y, x), one band
                     per epoch, so that the next step may keep every dimension as it is.
``rename_labels``    the band labels become the epochs' dates (ISO 8601), from which the UDF rebuilds t.
``apply_neighborhood`` purely spatial tiles (``size`` x, y only; ``overlap`` the halo) and ``run_udf``:
                     the UDF returns (bands, y, x), the dims it received, as apply_neighborhood asks ("the
                     dimension properties (name, type, labels, reference system and resolution) must
                     remain unchanged") except the band labels, which become the products' names. That one
                     change is what the spec's wording left in conflict (Open-EO/openeo-processes#385) and
                     what the GeoPySpark driver accepts when the UDF declares it in ``apply_metadata``
                     (openeo-geopyspark-driver PR 1158, merged; its issue 1182 / PR 1264: "apply_metadata
                     should not remove bands dimension"); a dropped or added dimension it does not accept.
                     Not checked here: that GeoPySpark runs this apply_dimension t -> bands with an
                     array_concat process (no backend was reachable).
``add_dimension``    ``name="t", type="temporal", label=<the last epoch>``: the products get their real
                     reference time back ("Adds a new named dimension ... The dimension label ... is set to
                     the specified label"); the valid time of ``fc_hN`` is the reference time plus N epochs.
``save_result``      GTiff.

A halo of at least P - 1 cells (:func:`insarcast.udf.spatial.halo` with the spatial filter of the
residual-hindcast ensembles, :mod:`insarcast.udf.spatial`: 37 cells for P = 32) makes every tile's core equal
to what ``insarcast forecast`` computes over the whole region. ``overlap`` is something else: the cells shared by neighbouring *model* tiles inside
one UDF call (the UDF's context key, default P / 4), as in ``insarcast forecast --overlap``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Mapping, Sequence

import numpy as np

from insarcast.errors import InputError

from .spatial import halo as spatial_halo

UDF_FILE = "openeo_udf.py"


def udf_code() -> str:
    """The text of the UDF file (what a backend runs)."""
    return resources.files("insarcast.udf").joinpath(UDF_FILE).read_text(encoding="utf-8")


def _iso_dates(epochs: Sequence[Any]) -> list[str]:
    try:
        times = np.asarray([str(e).removesuffix("Z") for e in epochs], "datetime64[D]")
    except ValueError as err:
        raise InputError(f"epochs must be dates (ISO 8601): {err}", field="epochs") from err
    if len(times) < 1 or (len(times) > 1 and not (np.diff(times) > np.timedelta64(0)).all()):
        raise InputError("epochs must be one or more strictly increasing dates", field="epochs")
    return [str(t) for t in times]


def check_bbox(bbox: Sequence[Any], *, field: str = "bbox") -> tuple[float, ...]:
    """``(west, south, east, north)``, checked: four finite numbers with west < east and south < north
    (what load_stac's ``spatial_extent`` means; a NaN would also make the graph invalid JSON)."""
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputError(f"expected four numbers west south east north, got {bbox!r}", field=field) from None
    if len(values) != 4:
        raise InputError(f"expected four numbers west south east north, got {len(values)}", field=field)
    if not all(np.isfinite(values)):
        raise InputError(f"expected finite numbers west south east north, got {list(values)}", field=field)
    west, south, east, north = values
    if not (west < east and south < north):
        raise InputError(f"expected west < east and south < north, got west {west:.12g}, south {south:.12g}, "
                         f"east {east:.12g}, north {north:.12g}", field=field)
    # the numbers as given (4058000 stays an int in the JSON), anything else as its float
    return tuple(v if isinstance(v, (int, float)) and not isinstance(v, bool) else f
                 for v, f in zip(bbox, values))


def udf_context(*, ensemble: str, thresholds: Mapping[str, float] | None, band: str = "displacement",
                mode: str = "change", horizon: int | None = None, overlap: int | None = None,
                python_path: Sequence[str] = (), stage: str = "products", member_bands: bool = False
                ) -> dict[str, Any]:
    """The UDF's context, checked as the UDF would check it; the statistics stage takes no thresholds.
    ``member_bands``: the products stage also returns the members and the forecast error scale (what
    ``insarcast openeo run`` needs to write the products of ``insarcast forecast``)."""
    context: dict[str, Any] = {"ensemble": ensemble, "band": band, "mode": mode}
    if stage == "statistics":
        context["stage"] = stage
    elif thresholds is None:
        raise InputError("the products stage needs thresholds (q85, q95, q99, std_tercile_1, std_tercile_2)",
                         field="thresholds")
    else:
        context["thresholds"] = dict(thresholds)
    if horizon is not None:
        context["horizon"] = horizon
    if overlap is not None:
        context["overlap"] = overlap
    if python_path:
        context["python_path"] = [str(p) for p in python_path]
    if member_bands and stage != "statistics":
        context["member_bands"] = True
    from .openeo_udf import check_context

    return check_context(context, InputError)                     # what the UDF would refuse, refused here


def process_graph(*, stac_url: str, bbox: tuple[float, float, float, float], epochs: Sequence[Any],
                  ensemble: str, thresholds: Mapping[str, float] | None, patch: int, stage: str = "products", band: str = "displacement",
                  crs: int = 3035, tile: int = 256, halo: int | None = None, overlap: int | None = None,
                  horizon: int | None = None, mode: str = "change", python_path: Sequence[str] = (),
                  out_format: str = "GTiff", member_bands: bool = False) -> dict[str, Any]:
    """The process graph (a dict ``{"process_graph": ...}``) of the forecast over ``bbox`` (west, south,
    east, north in ``crs``) of the cube at ``stac_url``, whose epochs are ``epochs`` (dates).

    ``ensemble``: the ensemble folder as the backend sees it; ``python_path``: folders where the backend
    unpacked insarcast (both relative to the job's working directory when shipped with the
    ``udf-dependency-archives`` job option). ``tile``: cells per side of one UDF call, ``halo``: cells of
    context around it (default :func:`insarcast.udf.spatial.halo`, which the spatial filter needs; at least P - 1
    without it, for results independent of the tiling); ``overlap``:
    the UDF's model-tile overlap (default: the UDF's, P / 4). ``stage="statistics"``: the first job of the
    backend-only path, whose bands are every pixel's ``m_abs`` and ``std`` (no thresholds needed), from
    which :func:`insarcast.udf.openeo_thresholds.thresholds_from_statistics` gives the exact thresholds.
    ``member_bands``: the UDF's context key of that name (the products stage only).
    """
    halo = spatial_halo(patch) if halo is None else int(halo)
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
        raise InputError(f"expected tile >= 1 cells, got {tile!r}", field="tile")
    if halo < 0:
        raise InputError(f"expected halo >= 0 cells, got {halo}", field="halo")
    west, south, east, north = check_bbox(bbox)
    dates = _iso_dates(epochs)
    context = udf_context(ensemble=ensemble, thresholds=thresholds, band=band, mode=mode, horizon=horizon,
                          overlap=overlap, python_path=python_path, stage=stage, member_bands=member_bands)
    identity = {"process_graph": {"arrayconcat1": {"process_id": "array_concat", "result": True, "arguments": {
        "array1": {"from_parameter": "data"}, "array2": []}}}}
    udf = {"process_graph": {"runudf1": {"process_id": "run_udf", "result": True, "arguments": {
        "data": {"from_parameter": "data"}, "udf": udf_code(), "runtime": "Python", "context": context}}}}
    nodes = {
        "loadstac1": {"process_id": "load_stac", "arguments": {
            "url": stac_url, "bands": [band], "temporal_extent": [dates[0], _day_after(dates[-1])],
            "spatial_extent": {"west": west, "south": south, "east": east, "north": north, "crs": crs}}},
        "applydimension1": {"process_id": "apply_dimension", "arguments": {
            "data": {"from_node": "loadstac1"}, "process": identity, "dimension": "t",
            "target_dimension": "bands"}},
        "renamelabels1": {"process_id": "rename_labels", "arguments": {
            "data": {"from_node": "applydimension1"}, "dimension": "bands", "target": dates}},
        "applyneighborhood1": {"process_id": "apply_neighborhood", "arguments": {
            "data": {"from_node": "renamelabels1"}, "process": udf,
            "size": [{"dimension": "x", "value": tile, "unit": "px"}, {"dimension": "y", "value": tile, "unit": "px"}],
            "overlap": [{"dimension": "x", "value": halo, "unit": "px"},
                        {"dimension": "y", "value": halo, "unit": "px"}]}},
        "adddimension1": {"process_id": "add_dimension", "arguments": {
            "data": {"from_node": "applyneighborhood1"}, "name": "t", "label": dates[-1], "type": "temporal"}},
        "saveresult1": {"process_id": "save_result", "result": True, "arguments": {
            "data": {"from_node": "adddimension1"}, "format": out_format, "options": {}}},
    }
    return {"process_graph": nodes}


def _day_after(date: str) -> str:
    """load_stac's temporal_extent: "The second element is the end ... The specified instance in time is
    **excluded** from the interval": the day after the last epoch keeps it."""
    return str(np.datetime64(date, "D") + np.timedelta64(1, "D"))
