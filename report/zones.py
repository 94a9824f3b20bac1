"""Zones (mine outlines, fault traces) from GeoJSON, distances from pixel centres, distance bands.

The zones file is the one ``insarcast synth`` writes (``zones.geojson``): Polygons (or
MultiPolygons) of kind ``mine`` and LineStrings (or MultiLineStrings) of kind ``fault``, in the
CRS named by the legacy ``crs`` member (EPSG:3035 for the scenario). A feature without a ``kind``
is a mine when it is a polygon and a fault when it is a line. Coordinates are reprojected to the
cube's CRS when the file names another one; a file without a ``crs`` member is read in the cube's
CRS, unless every coordinate lies within longitude/latitude bounds (RFC 7946: WGS 84).

Distances are computed with numpy, segment by segment (the exact Euclidean distance from a pixel
centre to the nearest segment), so the numbers do not depend on which optional packages are
installed: to a fault, the distance to its trace; to a mine, 0 inside the outline (even-odd rule
over its rings) and the distance to its boundary outside.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from insarcast.errors import InputError

DEFAULT_BANDS = (250.0, 500.0, 1000.0)          # metres: 0-250, 250-500, 500-1000, > 1000
ZONE_KINDS = ("fault", "mine")


@dataclass(frozen=True)
class Feature:
    kind: str                                   # "mine" or "fault"
    name: str
    parts: tuple[np.ndarray, ...]               # rings (mine: closed) or lines (fault), each (n, 2)


@dataclass(frozen=True)
class Zones:
    """The features of a zones file, in the cube's CRS."""

    features: tuple[Feature, ...]
    path: str | None = None
    crs: str | None = None
    notes: tuple[str, ...] = field(default=())

    def of(self, kind: str) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == kind)


def _coords(value, *, path, where: str, depth: int) -> list:
    """Nested coordinate lists of the expected depth, each position [x, y(, z)] of finite numbers."""
    if depth == 0:
        if not isinstance(value, (list, tuple)) or len(value) < 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value[:2]):
            raise InputError(f"expected a position [x, y] of finite numbers, got {value!r}", path=path, field=where)
        return [float(value[0]), float(value[1])]
    if not isinstance(value, (list, tuple)):
        raise InputError(f"expected a list of coordinates, got {type(value).__name__}", path=path, field=where)
    return [_coords(v, path=path, where=where, depth=depth - 1) for v in value]


def read_zones(path: str | os.PathLike, *, crs=None) -> Zones:
    """Read a zones GeoJSON (FeatureCollection) into :class:`Zones` in ``crs`` (the cube's).

    Raises :class:`InputError` naming the file and the feature for anything unreadable."""
    path = Path(path)
    doc = _read_collection(path)
    notes: list[str] = []
    features = [f for f in (_feature(i, feat, path=path, notes=notes) for i, feat in enumerate(doc["features"]))
                if f is not None]
    source = _file_crs(doc, features)
    if crs is not None and source is not None:
        features = _reproject(features, source, crs, path=path)
    return Zones(features=tuple(features), path=str(path), crs=None if crs is None else str(crs), notes=tuple(notes))


def _read_collection(path: Path) -> dict:
    """The GeoJSON FeatureCollection in ``path``, with a ``features`` list."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("zones file not found", path=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the zones file: {exc}", path=path) from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise InputError("expected a GeoJSON FeatureCollection with a 'features' list", path=path, field="type")
    return doc


#: GeoJSON geometry type -> (nesting depth of its coordinates, the zone kind it draws by default)
_GEOMETRIES = {"Polygon": (2, "mine"), "MultiPolygon": (3, "mine"), "LineString": (1, "fault"),
               "MultiLineString": (2, "fault")}


def _parts(gtype: str, coords, *, path: Path, where: str) -> list:
    """The rings or lines of a geometry: a multi-polygon's rings flattened, a line string as one part."""
    found = _coords(coords, path=path, where=where, depth=_GEOMETRIES[gtype][0])
    if gtype == "MultiPolygon":
        return [ring for poly in found for ring in poly]
    return [found] if gtype == "LineString" else found


def _feature(i: int, feat, *, path: Path, notes: list[str]) -> Feature | None:
    """Feature ``i`` as a mine or fault zone; None (with a note) for a geometry or kind that is neither."""
    where = f"features[{i}]"
    if not isinstance(feat, dict) or not isinstance(feat.get("geometry"), dict):
        raise InputError("expected a Feature with a geometry", path=path, field=where)
    geom = feat["geometry"]
    props = feat.get("properties") or {}
    gtype = geom.get("type")
    name = str(props.get("name", f"feature {i}"))
    if gtype not in _GEOMETRIES:
        notes.append(f"zones: {where} ({name}) is a {gtype}, neither a polygon nor a line: ignored")
        return None
    parts = _parts(gtype, geom.get("coordinates"), path=path, where=f"{where}.geometry.coordinates")
    default = _GEOMETRIES[gtype][1]
    kind = props.get("kind")
    kind = default if kind is None else kind
    if kind not in ZONE_KINDS:
        notes.append(f"zones: {where} ({name}) has kind {kind!r}, neither 'mine' nor 'fault': ignored")
        return None
    if (kind == "mine") != (default == "mine"):
        raise InputError(f"a {kind} must be a {'polygon' if kind == 'mine' else 'line'}, got {gtype}",
                         path=path, field=f"{where}.geometry.type")
    arrays = tuple(np.asarray(p, np.float64).reshape(-1, 2) for p in parts if len(p) >= 2)
    if not arrays:
        raise InputError("a geometry without coordinates", path=path, field=f"{where}.geometry.coordinates")
    return Feature(kind=kind, name=name, parts=arrays)


def _file_crs(doc: dict, features: list[Feature]) -> str | None:
    """The CRS the file declares (legacy ``crs`` member), or WGS 84 if it has none and every
    coordinate fits longitude/latitude, or None (read in the cube's CRS)."""
    member = doc.get("crs")
    if isinstance(member, dict):
        name = (member.get("properties") or {}).get("name")
        if isinstance(name, str) and name:
            return name
    if features:
        allxy = np.concatenate([p for f in features for p in f.parts])
        if np.all(np.abs(allxy[:, 0]) <= 180) and np.all(np.abs(allxy[:, 1]) <= 90):
            return "EPSG:4326"
    return None


def _reproject(features: list[Feature], source: str, target, *, path) -> list[Feature]:
    from pyproj import CRS, Transformer

    try:
        src, dst = CRS.from_user_input(source), CRS.from_user_input(target)
    except Exception as exc:  # pyproj raises CRSError
        raise InputError(f"unknown CRS {source!r}: {exc}", path=path, field="crs") from None
    if src == dst:
        return features
    tr = Transformer.from_crs(src, dst, always_xy=True)
    out = []
    for f in features:
        parts = tuple(np.column_stack(tr.transform(p[:, 0], p[:, 1])) for p in f.parts)
        out.append(Feature(kind=f.kind, name=f.name, parts=parts))
    return out


# ------------------------------------------------------------------------------------------ distances

def _segments(parts, *, closed: bool) -> np.ndarray:
    """(n, 4) segments x1, y1, x2, y2 of lines (or rings, closed if they are not already)."""
    segs = []
    for p in parts:
        if closed and len(p) >= 3 and not np.array_equal(p[0], p[-1]):
            p = np.vstack([p, p[:1]])
        if len(p) == 1:
            p = np.vstack([p, p])
        segs.append(np.column_stack([p[:-1], p[1:]]))
    return np.concatenate(segs) if segs else np.zeros((0, 4))


def distance_to_segments(px: np.ndarray, py: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Euclidean distance (float64) from each point to the nearest segment; inf if there is none."""
    px = np.asarray(px, np.float64)
    py = np.asarray(py, np.float64)
    best = np.full(px.shape, np.inf)
    for x1, y1, x2, y2 in segments:
        dx, dy = x2 - x1, y2 - y1
        length2 = dx * dx + dy * dy
        if length2 > 0:
            t = np.clip(((px - x1) * dx + (py - y1) * dy) / length2, 0.0, 1.0)
        else:
            t = 0.0
        d = np.hypot(px - (x1 + t * dx), py - (y1 + t * dy))
        np.minimum(best, d, out=best)
    return best


def inside_rings(px: np.ndarray, py: np.ndarray, rings) -> np.ndarray:
    """Even-odd point-in-polygon over all ``rings`` of one polygon (holes included)."""
    inside = np.zeros(np.shape(px), bool)
    for x1, y1, x2, y2 in _segments(rings, closed=True):
        crosses = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < xcross)
    return inside


def zone_distances(zones: Zones, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Distance (m, float64, (len(y), len(x))) of every pixel centre to the nearest fault trace and
    to the nearest mine (0 inside an outline); ``inf`` where the file has no zone of that kind."""
    px, py = np.meshgrid(np.asarray(x, np.float64), np.asarray(y, np.float64))
    out = {}
    faults = zones.of("fault")
    out["fault"] = distance_to_segments(px, py, _segments([p for f in faults for p in f.parts], closed=False))
    mines = zones.of("mine")
    dist = distance_to_segments(px, py, _segments([p for f in mines for p in f.parts], closed=True))
    for f in mines:
        dist[inside_rings(px, py, f.parts)] = 0.0
    out["mine"] = dist
    return out


def check_bands(edges, *, field: str = "bands") -> tuple[float, ...]:
    """The distance band edges, metres: one or more finite numbers > 0, strictly increasing."""
    try:
        values = tuple(float(e) for e in edges)
    except (TypeError, ValueError):
        raise InputError(f"distance bands must be numbers of metres, got {edges!r}", field=field) from None
    if not values or not all(math.isfinite(e) and e > 0 for e in values) \
            or any(b <= a for a, b in zip(values, values[1:])):
        raise InputError("distance bands must be finite positive increasing distances in metres, got "
                         f"{', '.join(f'{e:g}' for e in values) or 'none'}", field=field)
    return values


def band_labels(edges=DEFAULT_BANDS) -> list[tuple[str, float, float]]:
    """(label, lower, upper) metres of the distance bands: 0-e1, e1-e2, ..., > e_last."""
    edges = list(check_bands(edges))
    lows = [0.0, *edges]
    highs = [*edges, math.inf]
    return [(f"{lo:g}-{hi:g} m" if math.isfinite(hi) else f"> {lo:g} m", lo, hi) for lo, hi in zip(lows, highs)]
