"""The openEO process graph that runs insarcast's UDF, built offline with the openeo client.

    from insarcast.udf.openeo_graph import process_graph
    graph = process_graph(collection="EGMS_L3_U", bbox=(4058000, 3082000, 4083600, 3101200),
                          ensemble="/data/ensemble", thresholds={...}, patch=32)

``load_collection -> apply_neighborhood(run_udf(openeo_udf.py), time whole, tiles of ``tile`` cells
with a halo of ``halo`` cells, default P) -> save_result(GTiff)``. A halo of at least P - 1 makes every
tile's core equal to what ``insarcast forecast`` computes over the whole region. Send it with
``connection.create_job(graph, job_options=...)`` once connected (README, "openEO": the job options
that ship the ensemble and the insarcast package).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Mapping, Sequence

from insarcast.errors import InputError, MissingDependencyError

UDF_FILE = "openeo_udf.py"


def udf_code() -> str:
    """The text of the UDF file (what a backend runs)."""
    return resources.files("insarcast.udf").joinpath(UDF_FILE).read_text(encoding="utf-8")


def process_graph(*, collection: str, bbox: tuple[float, float, float, float], ensemble: str,
                  thresholds: Mapping[str, float], patch: int, band: str = "displacement", crs: int = 3035,
                  temporal_extent: tuple[str, str] | None = None, tile: int = 256, halo: int | None = None,
                  horizon: int | None = None, mode: str = "change", python_path: Sequence[str] = (),
                  out_format: str = "GTiff") -> dict[str, Any]:
    """The process graph (a dict) of the forecast over ``bbox`` (west, south, east, north in ``crs``).

    ``ensemble``: the ensemble folder as the backend sees it; ``python_path``: folders where the
    backend unpacked insarcast (both relative to the job's working directory when shipped with the
    ``udf-dependency-archives`` job option). ``tile``: cells per side of one UDF call, ``halo``: cells
    of context around it (default P; at least P - 1 for results independent of the tiling).
    """
    try:
        import openeo
        from openeo.rest.datacube import DataCube
    except ImportError as err:
        raise MissingDependencyError("building the process graph needs the openeo client: "
                                     "pip install 'insarcast[openeo]'") from err
    west, south, east, north = bbox
    cube = DataCube.load_collection(collection, connection=None, bands=[band], temporal_extent=temporal_extent,
                                    spatial_extent={"west": west, "south": south, "east": east, "north": north,
                                                    "crs": crs})
    halo = int(patch) if halo is None else int(halo)
    if halo < 0 or tile < 1:
        raise InputError(f"expected tile >= 1 and halo >= 0 cells, got tile {tile} and halo {halo}", field="halo")
    context = {"ensemble": ensemble, "thresholds": dict(thresholds), "band": band, "mode": mode}
    if horizon is not None:
        context["horizon"] = horizon
    if python_path:
        context["python_path"] = [str(p) for p in python_path]
    from .openeo_udf import check_context

    check_context(context, InputError)                     # what the UDF would refuse, refused here
    udf = openeo.UDF(udf_code(), runtime="Python", context=context)
    result = cube.apply_neighborhood(
        process=udf,
        size=[{"dimension": "x", "value": tile, "unit": "px"}, {"dimension": "y", "value": tile, "unit": "px"},
              {"dimension": "t", "value": None}],
        overlap=[{"dimension": "x", "value": halo, "unit": "px"}, {"dimension": "y", "value": halo, "unit": "px"}],
    ).save_result(format=out_format)
    return json.loads(result.to_json())
