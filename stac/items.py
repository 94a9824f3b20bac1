"""Forecast Items: one per run and horizon step, dated at the forecast's valid time.

Each run of ``insarcast forecast`` gives F Items, ``<run_id>-h<k>`` for k = 1..F, all on the
products' grid (projection fields in the Item properties). Their assets, one single-band COG each:

- every Item: ``median``, the ensemble median of the change since the last observed epoch at
  step k (float32 mm, NaN nodata);
- the Item of the products' horizon H (``insarcast:product_horizon_step``) also holds the
  products of the paper's section 4.4: ``std``, ``p85``, ``p95``, ``p99``, ``mass_low``,
  ``mass_medium``, ``mass_high``, ``mass_highest``, ``confidence``, ``rank_variance`` (float32)
  and the class rasters ``class`` and ``bivariate`` (uint8, 255 nodata, with classification
  classes);
- with ``members=True``, every Item also gets ``members``: a K-band COG of the member forecasts.

Every asset carries ``file:checksum`` (sha2-256 multihash) and ``file:size``, and STAC 1.1 ``bands``
with data type, nodata, unit and statistics. The Item links (``derived_from``) to the model Item of
the ensemble that made it. Properties: the forecast extension's ``forecast:reference_datetime``
(last observed epoch) and ``forecast:horizon`` (ISO 8601 duration), processing lineage, level and
software, and ``insarcast:*`` fields (run id, horizon step, thresholds, mode, ensemble name).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from . import extensions as ext
from insarcast.progress import bar

from .cog import CLASS_NODATA, band_statistics, write_cog
from .ensemble import Ensemble
from .files import file_fields
from .grid import ProductGrid
from .products import CLASS_MEANINGS, Products

FLOAT_ASSETS = ("std", "p85", "p95", "p99", "mass_low", "mass_medium", "mass_high", "mass_highest",
                "confidence", "rank_variance")
CLASS_ASSETS = ("class", "bivariate")
PRODUCT_ASSETS = FLOAT_ASSETS + CLASS_ASSETS

TITLES = {
    "median": "Ensemble median of the forecast change",
    "members": "Member forecasts of the change",
    "std": "Ensemble standard deviation of |change|",
    "p85": "Probability of exceeding Q85",
    "p95": "Probability of exceeding Q95",
    "p99": "Probability of exceeding Q99",
    "mass_low": "Probability mass of class low",
    "mass_medium": "Probability mass of class medium",
    "mass_high": "Probability mass of class high",
    "mass_highest": "Probability mass of class highest",
    "confidence": "Class confidence",
    "rank_variance": "Rank variance of the member classes",
    "class": "Susceptibility class",
    "bivariate": "Susceptibility x uncertainty class",
}
UNITS = {"median": "mm", "members": "mm", "std": "mm"}          # the others are fractions ("1")

CLASS_COLORS = {
    "class": ("1a9850", "fee08b", "f46d43", "a50026"),
    # rows: susceptibility low, medium, high; columns: uncertainty low, medium, high
    "bivariate": ("e8e8e8", "b5c0da", "6c83b5", "b8d6be", "90b2b3", "567994", "73ae80", "5a9178", "2a5a5b"),
}


def iso_duration(seconds: float) -> str:
    """ISO 8601 duration of a whole number of seconds: ``P36D``, ``P1DT12H``, ``PT0S``."""
    seconds = int(round(seconds))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    date = f"{days}D" if days else ""
    time = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if v)
    out = "P" + date + ("T" + time if time else "")
    return out if out != "P" else "PT0S"


def to_datetime(t) -> datetime:
    """A numpy datetime64 (or ISO string) as an aware UTC datetime, to the second."""
    text = str(np.datetime64(t, "s"))
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def iso(t) -> str:
    return to_datetime(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def _units(products: Products, name: str) -> str:
    return str(products.ds[name].attrs.get("units", UNITS.get(name, "1")))


def class_objects(name: str, products: Products) -> list[dict]:
    """Classification classes of a class raster, with the thresholds in the descriptions."""
    a = products.ds.attrs
    if name == "class":
        limits = (f"|median| < Q85 = {a['q85']:.4g} mm", f"Q85 <= |median| < Q95 = {a['q95']:.4g} mm",
                  f"Q95 <= |median| < Q99 = {a['q99']:.4g} mm", f"|median| >= Q99 = {a['q99']:.4g} mm")
        classes = [{"value": i, "name": n, "title": n.capitalize(), "description": f"{n} susceptibility: {lim}",
                    "color_hint": c}
                   for i, (n, lim, c) in enumerate(zip(CLASS_MEANINGS[name], limits, CLASS_COLORS[name]))]
    else:
        classes = [{"value": i, "name": n, "title": n.replace("_", " ").capitalize(),
                    "description": (f"susceptibility level {i // 3} (low, medium, high or highest) and std tercile "
                                    f"{i % 3} (std < {a['std_tercile_1']:.4g} mm, < {a['std_tercile_2']:.4g} mm, "
                                    "above)"),
                    "color_hint": c}
                   for i, (n, c) in enumerate(zip(CLASS_MEANINGS[name], CLASS_COLORS[name]))]
    classes.append({"value": CLASS_NODATA, "name": "nodata", "title": "No data",
                    "description": "no forecast: the pixel was not valid", "nodata": True})
    return classes


def _band(values: np.ndarray, *, unit: str | None, grid: ProductGrid, name: str | None = None) -> dict:
    is_class = values.dtype == np.uint8
    band: dict = {}
    if name is not None:
        band["name"] = name
    band["data_type"] = "uint8" if is_class else "float32"
    band["nodata"] = CLASS_NODATA if is_class else "nan"
    if unit is not None:
        band["unit"] = unit
    band["raster:sampling"] = "area"
    band["raster:spatial_resolution"] = grid.spacing
    stats = band_statistics(values, CLASS_NODATA if is_class else None)
    if stats is not None:
        band["statistics"] = stats
    return band


def _asset(path: Path, *, title: str, description: str, bands: list[dict], extra: dict | None = None) -> dict:
    return {
        "href": "./" + path.name,
        "type": ext.COG_MEDIA_TYPE,
        "title": title,
        "description": description,
        "roles": ["data"],
        **file_fields(path),
        "bands": bands,                # STAC 1.1 core bands (raster 2.0: raster:* fields inside)
        **(extra or {}),
    }


def _lineage(products: Products, ensemble: Ensemble, k: int) -> str:
    a = products.ds.attrs
    days = _step_seconds(products, k) / 86400
    text = (f"Forecast by the ONNX ensemble '{ensemble.name}' ({len(ensemble.members)} members, "
            f"{ensemble.get('architecture')}) from the last {a['history_epochs']} observed epochs up to "
            f"{iso(products.reference_time)}, applied in tiles of {a['patch']} cells"
            f"{'' if a.get('overlap') is None else ' overlapping by ' + str(a['overlap'])} and blended; "
            f"median over members of the change since the last observed epoch at step {k} (+{days:g} days).")
    if k == products.product_horizon:
        text += (f" Susceptibility and uncertainty products (section 4.4) at this step, mode '{a.get('mode')}': "
                 f"classes by the global quantiles Q85/Q95/Q99 of |median| over the valid pixels, exceedance "
                 f"probabilities over members, bivariate class by the std terciles.")
    return text


def _step_seconds(products: Products, k: int) -> float:
    t = products.times[products.horizons.index(k)]
    return float((t - products.reference_time) / np.timedelta64(1, "s"))


def forecast_items(products: Products, grid: ProductGrid, ensemble: Ensemble, *, run_id: str,
                   item_dir: Callable[[str], Path], model_links: list[dict] | None, software: dict,
                   members: bool = False, progress: bool = False) -> list:
    """Write the COGs of one run into ``item_dir(item_id)`` and return its Items (pystac), one per step.

    ``model_links`` are the ``derived_from`` links to the models (:func:`insarcast.stac.model_item.model_links`:
    ``path`` of the JSON, ``title``, optional ``mlm:name``), made relative (None: no link).
    """
    import pystac

    ds = products.ds
    geometry, bbox = grid.footprint()
    crs = grid.crs_wkt if grid.epsg is None else f"EPSG:{grid.epsg}"
    H = products.product_horizon
    thresholds = {k: float(ds.attrs[k]) for k in ("q85", "q95", "q99", "std_tercile_1", "std_tercile_2")}
    items = []
    steps = list(zip(products.horizons, products.times))
    for k, valid_time in bar(steps, enabled=progress, desc="publish", unit="item", total=len(steps)):
        item_id = f"{run_id}-h{k}"
        folder = item_dir(item_id)
        folder.mkdir(parents=True, exist_ok=True)
        seconds = _step_seconds(products, k)
        properties = {
            "title": f"Ground deformation forecast +{seconds / 86400:g} days after {iso(products.reference_time)[:10]}",
            "description": (f"Run {run_id}, step {k} of {len(products.horizons)}"
                            + (": median and products" if k == H else ": median")),
            "forecast:reference_datetime": iso(products.reference_time),
            "forecast:horizon": iso_duration(seconds),
            **grid.proj_fields(),
            "processing:level": "L4",
            "processing:lineage": _lineage(products, ensemble, k),
            "processing:software": dict(software),
            "insarcast:run_id": run_id,
            "insarcast:horizon_step": int(k),
            "insarcast:product_horizon_step": H,
            "insarcast:mode": str(ds.attrs.get("mode", "change")),
            "insarcast:ensemble": ensemble.name,
            "insarcast:members": int(ds.attrs["members"]),
            "insarcast:thresholds": {**thresholds, "units": str(ds.attrs.get("thresholds_units", "mm"))},
        }
        extensions = [ext.PROJECTION, ext.RASTER, ext.FILE, ext.PROCESSING, ext.FORECAST]
        assets: dict[str, dict] = {}

        median = np.asarray(ds["median"].sel(horizon=k).values, np.float32)
        path = write_cog(median, folder / "median.tif", crs=crs, transform=grid.transform, band_names=["median"])
        assets["median"] = _asset(path, title=TITLES["median"],
                                  description=str(ds["median"].attrs.get("long_name", TITLES["median"])),
                                  bands=[_band(median, unit=_units(products, "median"), grid=grid)])
        if members and "forecast" in ds:
            fc = np.asarray(ds["forecast"].sel(horizon=k).transpose("member", "y", "x").values, np.float32)
            names = [f"member_{int(m)}" for m in ds["member"].values]
            path = write_cog(fc, folder / "members.tif", crs=crs, transform=grid.transform, band_names=names)
            assets["members"] = _asset(path, title=TITLES["members"],
                                       description=str(ds["forecast"].attrs.get("long_name", TITLES["members"])),
                                       bands=[_band(fc[i], unit="mm", grid=grid, name=n) for i, n in enumerate(names)])
        if k == H:
            for name in PRODUCT_ASSETS:
                values = np.asarray(ds[name].transpose("y", "x").values)
                values = values.astype(np.uint8 if name in CLASS_ASSETS else np.float32)
                path = write_cog(values, folder / f"{name}.tif", crs=crs, transform=grid.transform,
                                 band_names=[name])
                extra = None
                unit = None if name in CLASS_ASSETS else _units(products, name)
                if name in CLASS_ASSETS:
                    extra = {"classification:classes": class_objects(name, products)}
                assets[name] = _asset(path, title=TITLES[name], description=str(ds[name].attrs.get("long_name", "")),
                                      bands=[_band(values, unit=unit, grid=grid)], extra=extra)
            extensions.append(ext.CLASSIFICATION)

        item = pystac.Item(id=item_id, geometry=geometry, bbox=bbox, datetime=to_datetime(valid_time),
                           properties=properties, stac_extensions=sorted(extensions))
        item.set_self_href(str(folder / f"{item_id}.json"))
        for key, asset in assets.items():
            item.add_asset(key, pystac.Asset.from_dict(asset))
        for link in model_links or []:
            extra = {k: v for k, v in link.items() if k not in ("path", "title")}
            item.add_link(pystac.Link("derived_from", os.path.relpath(link["path"], folder),
                                      media_type=ext.JSON_MEDIA_TYPE, title=link["title"], extra_fields=extra))
        items.append(item)
    return items


def item_assets() -> dict:
    """The Collection's ``item_assets``: what each asset key of a forecast Item holds."""
    out = {"median": {"type": ext.COG_MEDIA_TYPE, "roles": ["data"], "title": TITLES["median"],
                      "raster:sampling": "area", "bands": [{"data_type": "float32", "nodata": "nan", "unit": "mm"}]}}
    for name in FLOAT_ASSETS:
        out[name] = {"type": ext.COG_MEDIA_TYPE, "roles": ["data"], "title": TITLES[name],
                     "raster:sampling": "area", "bands": [{"data_type": "float32", "nodata": "nan", "unit": UNITS.get(name, "1")}]}
    for name in CLASS_ASSETS:
        out[name] = {"type": ext.COG_MEDIA_TYPE, "roles": ["data"], "title": TITLES[name],
                     "raster:sampling": "area", "bands": [{"data_type": "uint8", "nodata": CLASS_NODATA}],
                     "classification:classes": [
                         *({"value": i, "name": n} for i, n in enumerate(CLASS_MEANINGS[name])),
                         {"value": CLASS_NODATA, "name": "nodata", "nodata": True}]}
    out["members"] = {"type": ext.COG_MEDIA_TYPE, "roles": ["data"], "title": TITLES["members"],
                      "raster:sampling": "area", "bands": [{"data_type": "float32", "nodata": "nan", "unit": "mm"}]}
    return out
