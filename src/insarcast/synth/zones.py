"""The scenario's zones as GeoJSON: pit outlines (Polygons) and fault traces (LineStrings).

Coordinates are EPSG:3035 metres, declared with the legacy ``crs`` member
(``urn:ogc:def:crs:EPSG::3035``); rings are closed and counter-clockwise. The text is
deterministic: sorted keys, coordinates rounded to :data:`COORD_DECIMALS`, a final newline.
"""

from __future__ import annotations

import json
from typing import Any

from .config import ScenarioConfig
from .geometry import pit_corners

COORD_DECIMALS = 2
CRS_URN = "urn:ogc:def:crs:EPSG::3035"


def _xy(x: float, y: float) -> list[float]:
    return [round(float(x), COORD_DECIMALS), round(float(y), COORD_DECIMALS)]


def zones_collection(config: ScenarioConfig) -> dict[str, Any]:
    """FeatureCollection: one Polygon per mine (the pit at the last epoch; kind, name, active)
    and one LineString per fault (kind, name), in config order."""
    end = str(config.dates()[-1])
    features: list[dict[str, Any]] = []
    for mine in config.mines:
        ring = [_xy(x, y) for x, y in pit_corners(mine, start=config.start, end=end)]
        features.append({
            "type": "Feature",
            "properties": {"kind": "mine", "name": mine.name, "active": mine.active(at=end)},
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        })
    for fault in config.faults:
        features.append({
            "type": "Feature",
            "properties": {"kind": "fault", "name": fault.name},
            "geometry": {"type": "LineString", "coordinates": [_xy(fault.x1, fault.y1), _xy(fault.x2, fault.y2)]},
        })
    return {
        "type": "FeatureCollection",
        "name": f"{config.name} zones",
        "crs": {"type": "name", "properties": {"name": CRS_URN}},
        "features": features,
    }


def zones_text(config: ScenarioConfig) -> str:
    """The GeoJSON text of :func:`zones_collection`."""
    return json.dumps(zones_collection(config), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
