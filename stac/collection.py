"""The Collections of a catalog: forecasts (one Item per run and horizon step) and models.

Extents and summaries are recomputed from all Items whenever a run is added, so that a catalog
that grows run by run always describes what it holds:

- spatial extent: the union of the Item bboxes (WGS84; the whole globe for a Collection whose
  Items have no geometry, as model Items);
- temporal extent: the earliest and the latest Item datetime (valid times, for forecasts);
- forecast summaries: ``proj:code``, ``forecast:horizon``, ``forecast:reference_datetime`` (range),
  ``processing:level``, ``insarcast:run_id``, ``insarcast:ensemble`` and ``insarcast:mode``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from . import extensions as ext
from .items import item_assets

FORECASTS_DESCRIPTION = (
    "Ensemble forecasts of vertical ground-surface deformation (EGMS L3 style, mm) by TPE-optimised deep "
    "networks exported to ONNX, with susceptibility and uncertainty products (classes by the global "
    "quantiles Q85/Q95/Q99 of the ensemble median, exceedance probabilities, class confidence, rank "
    "variance, bivariate susceptibility x uncertainty class). One Item per forecast run and horizon step, "
    "dated at the valid time; the Item of the products' horizon holds the products.")
MODELS_DESCRIPTION = ("The ONNX ensembles that made the forecasts, described with the Machine Learning Model "
                      "extension: members, manifest, inputs, outputs and shared hyperparameters.")
KEYWORDS = ["InSAR", "EGMS", "ground deformation", "subsidence", "forecast", "susceptibility", "uncertainty"]
PROVIDERS = [{"name": "insarcast", "roles": ["processor"], "description": "insarcast forecast and publish"}]
LICENSE = "other"
GLOBE = [-180.0, -90.0, 180.0, 90.0]


def _placeholder_extent():
    import pystac

    now = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return pystac.Extent(pystac.SpatialExtent([GLOBE]), pystac.TemporalExtent([[now, now]]))


def new_forecast_collection(collection_id: str):
    import pystac

    return pystac.Collection(
        id=collection_id, title="insarcast ground deformation forecasts", description=FORECASTS_DESCRIPTION,
        extent=_placeholder_extent(), license=LICENSE, keywords=list(KEYWORDS),
        providers=[pystac.Provider.from_dict(p) for p in PROVIDERS],
        stac_extensions=sorted([ext.PROJECTION, ext.RASTER, ext.CLASSIFICATION, ext.FORECAST, ext.PROCESSING]),
        extra_fields={"item_assets": item_assets()})


def new_models_collection(collection_id: str):
    import pystac

    return pystac.Collection(
        id=collection_id, title="insarcast forecast models", description=MODELS_DESCRIPTION,
        extent=_placeholder_extent(), license=LICENSE, keywords=["machine learning", "ONNX", "ensemble", "InSAR"],
        providers=[pystac.Provider.from_dict(p) for p in PROVIDERS])


def _extent(items: list):
    import pystac

    boxes = [list(i.bbox) for i in items if i.bbox]
    if boxes:
        bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    else:
        bbox = list(GLOBE)
    times = [i.datetime for i in items if i.datetime is not None]
    times += [t for i in items for t in (i.common_metadata.start_datetime, i.common_metadata.end_datetime) if t]
    interval = [min(times), max(times)] if times else [None, None]
    return pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([interval]))


def _unique(items: Iterable, key: str, sort_key=None) -> list:
    values = {i.properties[key] for i in items if i.properties.get(key) is not None}
    return sorted(values, key=sort_key)


def _duration_seconds(text: str) -> float:
    import re

    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text)
    if not m:
        return float("inf")
    d, h, mi, s = (int(v) if v else 0 for v in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def refresh_forecasts(collection, items: list) -> None:
    """Set the forecast Collection's extent and summaries from all of its Items."""
    import pystac

    collection.extent = _extent(items)
    refs = _unique(items, "forecast:reference_datetime")
    summaries = {
        "proj:code": _unique(items, "proj:code"),
        "forecast:horizon": _unique(items, "forecast:horizon", sort_key=_duration_seconds),
        "processing:level": _unique(items, "processing:level"),
        "insarcast:run_id": _unique(items, "insarcast:run_id"),
        "insarcast:ensemble": _unique(items, "insarcast:ensemble"),
        "insarcast:mode": _unique(items, "insarcast:mode"),
    }
    summaries = {k: v for k, v in summaries.items() if v}
    if refs:
        summaries["forecast:reference_datetime"] = {"minimum": refs[0], "maximum": refs[-1]}
    collection.summaries = pystac.Summaries(summaries)
    collection.extra_fields["item_assets"] = item_assets()


def refresh_models(collection, items: list) -> None:
    """Set the models Collection's extent from its Items."""
    collection.extent = _extent(items)
