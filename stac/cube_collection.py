"""The displacement cube as a STAC Collection that openEO's ``load_stac`` and odc-stac read.

Layout of ``out`` (every href relative, so the folder can be served as is)::

    catalog.json                                   root Catalog (what ``validate-stac`` starts from)
    insarcast-cube/collection.json                 the Collection: ``cube:dimensions`` (x, y, t, bands),
                                                   extents, item_assets: the URL ``load_stac`` takes
    insarcast-cube/<id>-<YYYYMMDD>/<...>.json      one Item per epoch (datetime = the epoch) ...
    insarcast-cube/<id>-<YYYYMMDD>/displacement.tif  ... and its COG: float32 mm, NaN nodata

The published values are ``displacement`` where ``valid`` (NaN elsewhere), what the UDF receives.
Each Item has the projection fields (code, shape, transform, bbox), STAC 1.1 ``bands`` (float32, nodata
NaN, unit mm, statistics) and ``file:checksum`` / ``file:size`` on its asset. The folder is written
whole (staged beside ``out``) or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from insarcast.cube import open_cube
from insarcast.errors import InputError
from insarcast.fsutil import staged

from . import extensions as ext
from .cog import band_statistics, write_cog
from .files import file_fields
from .grid import ProductGrid

STAC_VERSION = "1.1.0"
DATACUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
COLLECTION_ID = "insarcast-cube"
BAND = "displacement"


def _dump(doc: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def _iso(t) -> str:
    return str(np.datetime64(t, "s")) + "Z"


def _dimensions(grid: ProductGrid, times: list[str]) -> dict:
    """The datacube extension's ``cube:dimensions`` (x, y at the cell edges' extent, step; t's values)."""
    xmin, ymin, xmax, ymax = grid.bounds
    a, _, _, _, e, _ = grid.transform
    reference = grid.epsg if grid.epsg is not None else grid.crs_wkt
    return {
        "x": {"type": "spatial", "axis": "x", "extent": [xmin, xmax], "step": a, "reference_system": reference},
        "y": {"type": "spatial", "axis": "y", "extent": [ymin, ymax], "step": e, "reference_system": reference},
        "t": {"type": "temporal", "extent": [times[0], times[-1]], "values": times},
        "bands": {"type": "bands", "values": [BAND]},
    }


def _item(values: np.ndarray, when: str, *, grid: ProductGrid, folder: Path, item_id: str,
          geometry: dict, bbox: list) -> dict:
    cog = write_cog(values, folder / f"{BAND}.tif", crs=grid.crs_wkt, transform=grid.transform,
                    band_names=[BAND])
    # STAC 1.1 core bands with the raster 2.0 fields inside (as the forecast items, stac/items.py)
    band = {"name": BAND, "data_type": "float32", "nodata": "nan", "unit": "mm", "raster:sampling": "area",
            "raster:spatial_resolution": grid.spacing}
    stats = band_statistics(values, float("nan"))
    if stats is not None:
        band["statistics"] = stats
    asset = {"href": f"./{BAND}.tif", "type": ext.COG_MEDIA_TYPE, "title": "displacement (mm)",
             "roles": ["data"], "bands": [band], **file_fields(cog)}
    return {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [ext.PROJECTION, ext.RASTER, ext.FILE],
        "id": item_id, "geometry": geometry, "bbox": bbox,
        "properties": {"datetime": when, **grid.proj_fields()},
        "links": [{"rel": "root", "href": "../../catalog.json", "type": ext.JSON_MEDIA_TYPE},
                  {"rel": "parent", "href": "../collection.json", "type": ext.JSON_MEDIA_TYPE},
                  {"rel": "collection", "href": "../collection.json", "type": ext.JSON_MEDIA_TYPE}],
        "assets": {BAND: asset}, "collection": COLLECTION_ID,
    }


def _write(cube, grid: ProductGrid, root: Path) -> Path:
    """Write the catalog into ``root`` (a fresh folder); return the Collection's path."""
    displacement = cube["displacement"]
    if "valid" in cube:
        displacement = displacement.where(cube["valid"])
    times = [_iso(t) for t in cube["t"].values]
    geometry, bbox = grid.footprint()
    folder = root / COLLECTION_ID
    links = []
    for i, when in enumerate(times):
        item_id = f"{COLLECTION_ID}-{when[:10].replace('-', '')}"
        values = np.asarray(displacement.isel(t=i).values, np.float32)
        item = _item(values, when, grid=grid, folder=folder / item_id, item_id=item_id, geometry=geometry, bbox=bbox)
        _dump(item, folder / item_id / f"{item_id}.json")
        links.append({"rel": "item", "href": f"./{item_id}/{item_id}.json", "type": ext.JSON_MEDIA_TYPE})
    collection = {
        "type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [DATACUBE, ext.PROJECTION],
        "id": COLLECTION_ID, "title": "insarcast displacement cube",
        "description": "Gridded vertical displacement (mm, relative to the first epoch), one COG per epoch.",
        "license": "other",
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[times[0], times[-1]]]}},
        "cube:dimensions": _dimensions(grid, times),
        "summaries": {"proj:code": [grid.proj_code]} if grid.proj_code else {},
        "item_assets": {BAND: {"type": ext.COG_MEDIA_TYPE, "roles": ["data"], "title": "displacement (mm)"}},
        "links": [{"rel": "root", "href": "../catalog.json", "type": ext.JSON_MEDIA_TYPE},
                  {"rel": "parent", "href": "../catalog.json", "type": ext.JSON_MEDIA_TYPE}, *links],
    }
    _dump(collection, folder / "collection.json")
    _dump({"type": "Catalog", "stac_version": STAC_VERSION, "id": "insarcast", "description":
           "insarcast: the displacement cube", "links": [
               {"rel": "root", "href": "./catalog.json", "type": ext.JSON_MEDIA_TYPE},
               {"rel": "child", "href": f"./{COLLECTION_ID}/collection.json", "type": ext.JSON_MEDIA_TYPE}]},
          root / "catalog.json")
    return folder / "collection.json"


def publish_cube(cube_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Publish the cube at ``cube_path`` into the catalog folder ``out`` (replaced whole); return the
    path of the Collection (``out/insarcast-cube/collection.json``)."""
    cube = open_cube(cube_path)
    grid = ProductGrid.of(cube, path=os.fspath(cube_path))
    if cube.sizes["t"] < 1:
        raise InputError("the cube has no epoch", path=cube_path, field="t")
    out = Path(out)
    with staged() as stage:
        tmp = stage.path(out)
        try:
            _write(cube, grid, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out / COLLECTION_ID / "collection.json"
