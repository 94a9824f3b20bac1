"""Publish a forecast run as COGs and STAC into a self-contained static catalog.

Layout of ``out`` (every link and asset href relative, so the folder can be moved or served as is)::

    catalog.json                                   root Catalog "insarcast"
    insarcast-forecasts/collection.json            forecast Collection (extents, summaries, item_assets)
    insarcast-forecasts/<run_id>-h<k>/<run_id>-h<k>.json    one Item per run and horizon step k
    insarcast-forecasts/<run_id>-h<k>/median.tif            ... and its COGs (std.tif, class.tif ...
                                                            in the Item of the products' horizon)
    insarcast-models/collection.json               models Collection (one child Collection per ensemble)
    insarcast-models/<ensemble>/collection.json    ensemble Collection (MLM summaries, manifest asset)
    insarcast-models/<ensemble>/<id>/<id>.json     one MLM Item per member, id <ensemble>-member_XX (model_item)
    insarcast-models/<ensemble>/member_XX.onnx, ensemble.json   copies of the ensemble's files

Publishing into an existing catalog adds the run's Items, the ensemble's Collection if it is new,
and rewrites only the Collections and the root Catalog: every other file keeps its bytes. The
whole catalog is staged beside ``out`` (existing JSON copied, other files hard-linked, never
written through) and swapped in at the end, so a failure leaves the old catalog (or nothing) as
it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import xarray as xr

from insarcast.errors import InputError
from insarcast.fsutil import clean_stale, inside, staged

from .collection import (input_licence, new_forecast_collection, new_models_collection, refresh_forecasts,
                         refresh_models, set_licence)
from .ensemble import Ensemble, check_matches, read_ensemble
from .files import multihash
from .grid import ProductGrid
from .items import forecast_items, to_datetime
from .model_item import ensemble_collection, model_id, model_links
from .products import Products, open_products

ROOT_ID = "insarcast"
ROOT_FILE = "catalog.json"
DEFAULT_COLLECTION = "insarcast-forecasts"
MODELS_COLLECTION = "insarcast-models"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _require() -> None:
    from insarcast.errors import MissingDependencyError

    for module in ("pystac", "rio_cogeo", "rasterio", "rioxarray"):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingDependencyError(f"publishing STAC needs {module}: pip install 'insarcast[stac]'") from exc


def _stac_io():
    import pystac.stac_io

    class DeterministicStacIO(pystac.stac_io.DefaultStacIO):
        """JSON with two-space indents, keys in the order pystac gives them, a final newline, no NaN."""

        def json_dumps(self, json_dict: dict[str, Any], *args: Any, **kwargs: Any) -> str:
            return json.dumps(json_dict, indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    return DeterministicStacIO()


def default_run_id(products: Products, ensemble: Ensemble) -> str:
    """``<ensemble>-<reference time as YYYYMMDDTHHMMSS>``: one run per ensemble and last observed epoch."""
    stamp = to_datetime(products.reference_time).strftime("%Y%m%dT%H%M%S")
    return f"{model_id(ensemble)}-{stamp}"


def _check_id(value: str, field: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InputError(f"{field} must be 1-200 letters, digits, '.', '_' or '-' starting with a letter or "
                         f"digit, got {value!r}", field=field)
    return value


def _software() -> dict[str, str]:
    import pystac
    import rasterio

    from insarcast import __version__

    return {"insarcast": __version__, "pystac": pystac.__version__, "rasterio": rasterio.__version__,
            "GDAL": rasterio.__gdal_version__}


def _replicate(src: Path, dst: Path) -> None:
    """A copy of the catalog ``src`` at ``dst``: JSON copied (it may be rewritten), the rest hard-linked.

    A symlink whose target lies outside ``src`` is refused (nothing outside the catalog is read)."""
    for folder, dirs, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in [*dirs, *files]:
            if (Path(folder) / name).is_symlink():
                inside((Path(folder) / name).absolute(), src, source=Path(folder) / name, what="symlink")
        for name in files:
            s, d = Path(folder) / name, dst / rel / name
            if name.endswith(".json"):
                shutil.copy2(s, d)
                continue
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)


def _check_links(catalog: Path, *, shown: Path) -> None:
    """Every child and item link of the catalog's JSON (root, then each child's) must resolve inside
    the catalog folder, before pystac reads any of them: a catalog is a file we did not just write."""
    def links(path: Path) -> list[str]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"not readable JSON ({exc})", path=shown / path.relative_to(catalog)) from None
        found = data.get("links") if isinstance(data, dict) else None
        return [link.get("href") for link in found or [] if isinstance(link, dict)
                and link.get("rel") in ("child", "item")]

    def check(path: Path, depth: int) -> None:
        for href in links(path):
            if not isinstance(href, str) or "://" in href:
                raise InputError(f"link {href!r} is not a relative path inside the catalog",
                                 path=shown / path.relative_to(catalog), field="links")
            target = inside((path.parent / href).absolute(), catalog, source=shown / path.relative_to(catalog), field="links",
                            what="link")
            if depth < 2 and target.is_file():
                check(target, depth + 1)

    check(catalog / ROOT_FILE, 0)


_LINK_ORDER = {"root": 0, "parent": 1, "collection": 2, "child": 3, "item": 4}


def _canonical_links(obj) -> None:
    """Links in a fixed order (root, parent, collection, children, items, others; stable within a rel),
    so that re-reading and re-saving a Collection does not shuffle them."""
    obj.links.sort(key=lambda link: _LINK_ORDER.get(link.rel, len(_LINK_ORDER)))


def _child_collection(root, child_id: str, make, out: Path):
    import pystac

    child = root.get_child(child_id)
    if child is None:
        child = make(child_id)
        root.add_child(child)
    elif not isinstance(child, pystac.Collection):
        raise InputError(f"{child_id!r} in the catalog is a {type(child).__name__}, expected a Collection",
                         path=out / ROOT_FILE, field="links")
    return child


def _cube_sources(attrs) -> list[str]:
    """The files the products' cube was gridded from (its ``source`` attribute); [] when unknown."""
    cube = attrs.get("cube")
    if not cube or not Path(cube).is_dir():
        return []
    try:
        source = xr.open_zarr(cube).attrs.get("source") or []
    except Exception:                                  # noqa: BLE001 - an unreadable cube: licence unknown
        return []
    if isinstance(source, str):                        # the cube keeps lists as JSON text
        try:
            source = json.loads(source)
        except ValueError:
            source = [source]
    return [source] if isinstance(source, str) else list(source)


def publish(products: str | os.PathLike | xr.Dataset, ensemble: str | os.PathLike, out: str | os.PathLike, *,
            run_id: str | None = None, collection_id: str = DEFAULT_COLLECTION, overwrite: bool = False,
            members: bool = False, progress: bool = False) -> Path:
    """Publish ``products`` (products.zarr or its Dataset) made by ``ensemble`` (folder) into ``out``.

    A new ``out`` becomes a catalog; an existing one gains the run's Items, its Collection extents
    and summaries are updated and all its other files keep their bytes. ``run_id`` defaults to
    :func:`default_run_id`; a run already in the catalog, or a different ensemble under an existing
    model's name, is an :class:`InputError` unless ``overwrite`` (which replaces it). ``members``
    adds each Item a K-band COG of the member forecasts. Returns ``out``.
    """
    _require()
    prods = open_products(products)
    if members and "forecast" not in prods.ds:        # the Items were published without it, not a word said
        raise InputError("--members publishes the member forecasts, but the products have no 'forecast' variable",
                         path=prods.path, field="forecast")
    ens = read_ensemble(ensemble)
    check_matches(ens, prods.ds.attrs, products_path=prods.path)
    grid = ProductGrid.of(prods.ds, path=prods.path)
    run_id = _check_id(run_id, "run_id") if run_id is not None else default_run_id(prods, ens)
    _check_id(collection_id, "collection_id")
    if collection_id == MODELS_COLLECTION:
        raise InputError(f"{MODELS_COLLECTION!r} is the models Collection's id", field="collection_id")
    given, out = Path(out), Path(os.path.abspath(out))
    clean_stale(out)                                   # a killed earlier publish: restore its catalog
    if out.exists() and not (out / ROOT_FILE).is_file():
        raise InputError(f"exists but holds no {ROOT_FILE}: not a catalog to add to", path=given)
    io = _stac_io()

    with staged() as stage:
        root = _open_root(out, stage.path(out), given=given, io=io)
        forecasts = _child_collection(root, collection_id, new_forecast_collection, out)
        set_licence(forecasts, input_licence(_cube_sources(prods.ds.attrs)))
        models = _child_collection(root, MODELS_COLLECTION, new_models_collection, out)

        model_dir = Path(models.get_self_href()).parent / model_id(ens)
        new_model = _model_entry(models, ens, model_dir, prods=prods, overwrite=overwrite)
        _remove_run(forecasts, run_id, overwrite=overwrite, given=given)
        collection_dir = Path(forecasts.get_self_href()).parent
        items = forecast_items(prods, grid, ens, run_id=run_id, item_dir=lambda i: collection_dir / i,
                               model_links=model_links(ens, model_dir), software=_software(), members=members,
                               progress=progress)
        for item in items:
            forecasts.add_item(item)

        refresh_forecasts(forecasts, list(forecasts.get_items()))
        refresh_models(models, list(models.get_items(recursive=True)))
        new_models = [] if new_model is None else [*new_model.get_items(), new_model]
        for obj in [*items, *new_models, forecasts, models, root]:
            _canonical_links(obj)
            obj.save_object(include_self_link=False, stac_io=io)
    return given


def _open_root(out: Path, tmp: Path, *, given: Path, io):
    """The root Catalog in the staging folder ``tmp``: a replica of the existing ``out`` (its links
    checked first), or a new one."""
    import pystac

    if out.exists():
        _check_links(out, shown=given)
        _replicate(out, tmp)
        root = pystac.Catalog.from_file(str(tmp / ROOT_FILE), stac_io=io)
    else:
        tmp.mkdir(parents=True)
        root = pystac.Catalog(id=ROOT_ID, title="insarcast",
                              description="Ground deformation forecasts (COG, STAC) and the models that made them.")
        root.set_self_href(str(tmp / ROOT_FILE))
    root.catalog_type = pystac.CatalogType.SELF_CONTAINED
    return root


def _model_entry(models, ens, model_dir: Path, *, prods, overwrite: bool):
    """The ensemble Collection (with its member Items): kept when this ensemble is already there (same
    manifest checksum), replaced with ``overwrite`` when another ensemble has its name, else written.
    Returns the new Collection or None."""
    import pystac

    mid = model_dir.name
    old_model = models.get_child(mid)
    if old_model is not None:
        manifest = old_model.assets.get("manifest") if isinstance(old_model, pystac.Collection) else None
        if manifest is not None and manifest.extra_fields.get("file:checksum") == multihash(ens.manifest_path):
            return None
        if not overwrite:
            raise InputError(f"the catalog already holds a different ensemble named {ens.name!r}; "
                             "rename the ensemble or publish with overwrite", path=ens.manifest_path,
                             field="name")
        models.remove_child(mid)
        shutil.rmtree(inside(model_dir, Path(models.get_self_href()).parent), ignore_errors=True)
    new_model = ensemble_collection(ens, folder=model_dir, fallback_datetime=to_datetime(prods.reference_time),
                                    license=models.license)
    models.add_child(new_model)
    return new_model


def _remove_run(forecasts, run_id: str, *, overwrite: bool, given: Path) -> None:
    """Remove the Items (and their folders) of run ``run_id``; an existing run is replaced only with
    ``overwrite``, and only an Item's own folder below the Collection is deleted."""
    own_id = re.compile(rf"{re.escape(run_id)}-h\d+")
    existing = [i for i in forecasts.get_items()
                if i.properties.get("insarcast:run_id") == run_id or own_id.fullmatch(i.id)]
    if existing and not overwrite:
        raise InputError(f"run {run_id!r} is already in the catalog; give another run id or overwrite",
                         path=given / ROOT_FILE, field="run_id")
    collection_dir = Path(forecasts.get_self_href()).parent
    for item in existing:
        folder = inside(Path(item.get_self_href()).parent, collection_dir, source=given / ROOT_FILE,
                        field="links", what="item folder")
        if folder == collection_dir.resolve():
            raise InputError(f"item {item.id!r} lies in the collection's folder, not a folder of its own; "
                             "refusing to delete it", path=given / ROOT_FILE, field="links")
        forecasts.remove_item(item.id)
        shutil.rmtree(folder, ignore_errors=True)
