"""STAC publishing: COGs, forecast Items, Collections and the MLM member Items, validated offline.

The products come from ``forecast_products`` on a small synthetic cube with a fake deterministic
predictor; the ensemble folder is fabricated (dummy member files and a matching manifest).
Validation uses the offline schemas shipped in the package (``stac/schemas``, a copy of
``../shared/stac-schemas``) and never the network.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from conftest import STAC_SCHEMAS, linear_member, write_ensemble
from insarcast.cube import GridSpec
from insarcast.errors import InputError
from insarcast.udf.forecast import forecast_products

SCHEMAS = STAC_SCHEMAS
T, F, P, K = 4, 3, 8, 4
NORM = {"input_mean": 0.25, "input_std": 2.0, "target_mean": -0.5, "target_std": 3.0}
SPACING = np.timedelta64(6, "D")
NAME = "tiny-ensemble"

# third-party deprecations (affine's matrix operator, shapely.ops) that odc-geo and rioxarray trigger
pytestmark = [pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")]
needs_schemas = pytest.mark.skipif(not SCHEMAS.is_dir(), reason=f"offline STAC schemas not found at {SCHEMAS} "
                                   "(set INSARCAST_STAC_SCHEMAS)")


def fake_predict(x):
    """Deterministic: member k = (k + 1) * (f + 1) * time mean of channel 0 + 0.1 k + a position term."""
    mean = x[:, :, 0].mean(axis=1)
    rows = np.arange(P, dtype=np.float32)[:, None]
    out = np.empty((K, x.shape[0], F, P, P), np.float32)
    for k in range(K):
        for f in range(F):
            out[k, :, f] = (k + 1) * (f + 1) * mean + 0.1 * k + 0.02 * rows
    return out


def make_products(start="2020-01-05", nt=9, seed=0, ny=20, nx=17):
    grid = GridSpec(x0=4_000_000.0, y0=3_100_000.0, nx=nx, ny=ny, spacing=100.0)
    rng = np.random.default_rng(seed)
    d = np.cumsum(rng.normal(-0.5, 2.0, (nt, ny, nx)), axis=0).astype(np.float32)
    d += np.linspace(0, 30, nx, dtype=np.float32)[None, None, :] * np.linspace(0, 1, nt, dtype=np.float32)[:, None, None]
    valid = np.ones((ny, nx), bool)
    valid[3, 4] = False                              # -> NaN products and class nodata 255
    t = np.datetime64(start) + np.arange(nt) * SPACING
    cube = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), valid)},
                      coords={"t": t, "y": grid.y, "x": grid.x}).rio.write_crs("EPSG:3035")
    return forecast_products(cube, fake_predict, history=T, horizon_steps=F, patch=P, overlap=3, norm=NORM,
                             members=K)


def make_ensemble(folder: Path, members=K, name=NAME) -> Path:
    """Real tiny ONNX members (so that publish checks them as forecast does) and their manifest, from the
    one factory (conftest.write_ensemble)."""
    def member_fields(k):
        return {"arch": "resnet_transformer", "trial": 7 + k, "run_seed": k, "val_loss": 0.2 + k / 100,
                "parameters": 1000 + 10 * k,        # each member's own count (export: sum of numel)
                "hyperparameters": {"lr": 0.001, "blocks": 2 + k, "heads": 4,
                                    "model": {"history": T, "horizon": F, "patch": P, "channels": 2}}}

    onnx_members = [linear_member(1.0 + k, history=T, horizon=F, patch=P) for k in range(members)]
    return write_ensemble(folder, onnx_members, history=T, horizon=F, patch=P, norm=NORM, name=name,
                          architecture="ResNet+Transformer", created="2026-01-02T03:04:05Z",
                          versions={"torch": "2.13.0", "onnx": "1.17.0", "insarcast": "0.1.0"},
                          member_fields=member_fields)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stac-inputs")
    products = make_products()
    products.to_zarr(root / "products.zarr", zarr_format=2, consolidated=True)
    return {"products": root / "products.zarr", "ensemble": make_ensemble(root / "ensemble"), "ds": products}


@pytest.fixture(scope="module")
def catalog(inputs, tmp_path_factory):
    from insarcast.stac.publish import publish

    out = tmp_path_factory.mktemp("stac-catalog") / "catalog"
    assert publish(inputs["products"], inputs["ensemble"], out, members=True) == out
    return out


def items_of(catalog: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((catalog / "insarcast-forecasts").glob("*/*.json"))]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("validation tried to use the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# ---------------------------------------------------------------------------------------------- layout
def test_catalog_layout_items_and_model(catalog, inputs):
    from insarcast.stac.files import multihash

    ds = inputs["ds"]
    run = f"{NAME}-20200222T000000"                       # last epoch 2020-01-05 + 8 * 6 days
    assert (catalog / "catalog.json").is_file()
    items = {d["id"]: d for d in items_of(catalog)}
    assert sorted(items) == [f"{run}-h{k}" for k in (1, 2, 3)]
    for k, valid_time in zip((1, 2, 3), ds["time"].values):
        props = items[f"{run}-h{k}"]["properties"]
        assert props["datetime"] == str(valid_time)[:19] + "Z"
        assert props["forecast:reference_datetime"] == "2020-02-22T00:00:00Z"
        assert props["forecast:horizon"] == f"P{6 * k}D"
        assert props["proj:code"] == "EPSG:3035" and props["proj:shape"] == [20, 17]
        assert props["proj:transform"] == [100.0, 0.0, 4_000_000.0, 0.0, -100.0, 3_100_000.0]
        assert props["processing:lineage"] and props["processing:software"]["insarcast"]
    # the products sit in the Item of the products' horizon (F), the median in every Item
    assert set(items[f"{run}-h1"]["assets"]) == {"median", "members"}
    last = items[f"{run}-h3"]
    assert {"median", "std", "class", "bivariate", "p85", "p95", "p99", "confidence", "rank_variance",
            "mass_low", "mass_medium", "mass_high", "mass_highest", "members"} == set(last["assets"])
    median = last["assets"]["median"]
    assert median["bands"][0]["unit"] == "mm" and median["bands"][0]["nodata"] == "nan"
    assert "https://stac-extensions.github.io/raster/v2.0.0/schema.json" in last["stac_extensions"]
    stats = median["bands"][0]["statistics"]
    values = ds["median"].sel(horizon=3).values
    assert stats["maximum"] == pytest.approx(float(np.nanmax(values)))
    assert stats["valid_percent"] == pytest.approx(100 * np.isfinite(values).mean())
    classes = last["assets"]["class"]["classification:classes"]
    assert [c["name"] for c in classes] == ["low", "medium", "high", "highest", "nodata"]
    assert classes[-1] == {**classes[-1], "value": 255, "nodata": True}
    assert len(last["assets"]["bivariate"]["classification:classes"]) == 10
    folder = catalog / "insarcast-forecasts" / last["id"]
    for asset in last["assets"].values():
        assert asset["file:checksum"] == multihash(folder / asset["href"])
    assert len(last["assets"]["members"]["bands"]) == K

    # derived from the ensemble Collection and from every member Item, named by its mlm:name
    models = [link for link in last["links"] if link["rel"] == "derived_from"]
    assert len(models) == 1 + K
    ensemble = json.loads((folder / models[0]["href"]).read_text())
    assert ensemble["type"] == "Collection" and ensemble["id"] == NAME
    manifest = json.loads((inputs["ensemble"] / "ensemble.json").read_text())
    ensemble_dir = (folder / models[0]["href"]).parent
    assert ensemble["assets"]["manifest"]["roles"] == ["metadata"]
    assert ensemble["assets"]["manifest"]["file:checksum"] == multihash(inputs["ensemble"] / "ensemble.json")
    assert not any("mlm:model" in a.get("roles", []) for a in ensemble["assets"].values())
    assert ensemble["summaries"]["mlm:total_parameters"] == {"minimum": 1000, "maximum": 1000 + 10 * (K - 1)}
    member_links = sorted(link["href"] for link in ensemble["links"] if link["rel"] == "item")
    assert len(member_links) == K
    assert sorted(os.path.normpath(ensemble_dir / h) for h in member_links) == \
        sorted(os.path.normpath(folder / link["href"]) for link in models[1:])
    for i, (entry, link) in enumerate(zip(manifest["members"], models[1:])):
        model = json.loads((folder / link["href"]).read_text())
        props = model["properties"]
        assert link["mlm:name"] == props["mlm:name"] == f"{NAME} member_{i:02d}"
        assert model["collection"] == NAME and props["mlm:framework"] == "ONNX"
        # one model per Item: exactly one mlm:model asset, this member's file
        roles = {key: a["roles"] for key, a in model["assets"].items() if "mlm:model" in a["roles"]}
        assert list(roles) == ["mlm:model"]
        asset = model["assets"]["mlm:model"]
        assert asset["file:checksum"] == "1220" + entry["sha256"] and asset["mlm:artifact_type"] == "onnx"
        assert asset["type"] == "application/octet-stream; framework=onnx"
        assert (folder / link["href"]).parent.joinpath(asset["href"]).resolve() == \
            (ensemble_dir / entry["file"]).resolve()
        # its own parameter count (not the ensemble's sum), architecture and hyperparameters
        assert props["mlm:total_parameters"] == entry["parameters"] == 1000 + 10 * i
        assert props["mlm:architecture"] == entry["arch"] and props["mlm:tasks"] == ["regression"]
        assert props["mlm:hyperparameters"]["blocks"] == 2 + i and props["mlm:hyperparameters"]["history"] == T
        assert props["insarcast:trial"] == entry["trial"] and props["insarcast:val_loss"] == entry["val_loss"]
        inp = props["mlm:input"][0]
        assert inp["input"]["shape"] == [-1, T, 2, P, P] and inp["input"]["dim_order"][2] == "bands"
        assert inp["bands"] == manifest["channel_names"] == ["displacement_relative_to_last", "valid"]
        # z-scored with the manifest's statistics; the validity flag is used as built (divided by 1)
        assert inp["value_scaling"] == [{"type": "z-score", "mean": NORM["input_mean"], "stddev": NORM["input_std"]},
                                        {"type": "scale", "value": 1}]
        assert props["mlm:output"][0]["result"]["shape"] == [-1, F, P, P]

    collection = json.loads((catalog / "insarcast-forecasts" / "collection.json").read_text())
    assert collection["extent"]["temporal"]["interval"] == [["2020-02-28T00:00:00Z", "2020-03-11T00:00:00Z"]]
    assert collection["summaries"]["forecast:horizon"] == ["P6D", "P12D", "P18D"]
    lon0, lat0, lon1, lat1 = collection["extent"]["spatial"]["bbox"][0]
    assert 5 < lon0 < lon1 < 6 and 50 < lat0 < lat1 < 51
    # self-contained: no absolute href anywhere; STAC 1.1 everywhere, band metadata in the core `bands`
    # (raster 2.0's fields inside), never raster 1.x's `raster:bands`
    for path in catalog.rglob("*.json"):
        doc = json.loads(path.read_text())
        if "stac_version" in doc:
            assert doc["stac_version"] == "1.1.0", path
            assert not any("/raster/v1" in uri for uri in doc.get("stac_extensions", [])), path
        assert "raster:bands" not in path.read_text(), path
        hrefs = [link["href"] for link in doc.get("links", [])] + [a["href"] for a in doc.get("assets", {}).values()]
        assert all(not h.startswith(("/", "http")) for h in hrefs), path


# ---------------------------------------------------------------------------------------------- validation
@needs_schemas
def test_every_json_validates_offline(catalog, no_network):
    from insarcast.stac.validate import validate_catalog

    problems = validate_catalog(catalog, schemas=SCHEMAS)
    assert problems == [], "\n".join(map(str, problems))
    # catalog, 2 Collections, F forecast Items, the ensemble Collection, K member Items, the manifest copy
    assert len(list(catalog.rglob("*.json"))) == 1 + 2 + F + 1 + K + 1


@needs_schemas
@pytest.mark.parametrize("breakage, field", [
    ("missing proj:code", "proj:code"),
    ("wrong checksum", "file:checksum"),
    ("horizon not a duration string", "forecast:horizon"),
    ("model without mlm:input", "mlm:input"),
])
def test_broken_item_fails_naming_the_field(catalog, tmp_path, no_network, breakage, field):
    from insarcast.stac.validate import validate_catalog

    broken = tmp_path / "catalog"
    shutil.copytree(catalog, broken)
    if breakage == "model without mlm:input":
        path = broken / "insarcast-models" / NAME / f"{NAME}-member_01" / f"{NAME}-member_01.json"
    else:
        path = sorted((broken / "insarcast-forecasts").glob("*-h3/*-h3.json"))[0]
    doc = json.loads(path.read_text())
    if breakage == "missing proj:code":
        del doc["properties"]["proj:code"]
    elif breakage == "wrong checksum":
        doc["assets"]["median"]["file:checksum"] = "1220" + "ab" * 32
    elif breakage == "horizon not a duration string":
        doc["properties"]["forecast:horizon"] = 18
    else:
        del doc["properties"]["mlm:input"]
    path.write_text(json.dumps(doc, indent=2))

    problems = validate_catalog(broken, schemas=SCHEMAS)
    assert problems and all(Path(p.path).resolve() == path.resolve() for p in problems), problems
    assert any(field in (p.field or "") for p in problems), problems
    with pytest.raises(InputError) as info:
        validate_catalog(broken, schemas=SCHEMAS, strict=True)
    assert field in info.value.field and path.name in str(info.value)


@needs_schemas
def test_the_publish_and_validate_stac_commands(inputs, tmp_path, no_network):
    from click.testing import CliRunner

    from insarcast.cli import main

    runner = CliRunner()
    out = tmp_path / "catalog"
    done = runner.invoke(main, ["publish", str(inputs["products"]), "--ensemble", str(inputs["ensemble"]),
                                "--out", str(out), "-q"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(main, ["validate-stac", str(out), "--schemas", str(SCHEMAS)])
    assert done.exit_code == 0 and "valid" in done.output, done.output
    item = sorted((out / "insarcast-forecasts").glob("*-h2/*-h2.json"))[0]
    doc = json.loads(item.read_text())
    doc["assets"]["median"]["file:checksum"] = "1220" + "00" * 32
    item.write_text(json.dumps(doc, indent=2))
    done = runner.invoke(main, ["validate-stac", str(out), "--schemas", str(SCHEMAS)])
    assert done.exit_code == 2
    assert "assets.median.file:checksum" in done.output and item.name in done.output, done.output


@pytest.mark.parametrize("attr, value, field", [
    ("q99", float("nan"), "thresholds"), ("q85", "NaN", "q85"), ("q85", 100.0, "thresholds"),
    ("std_tercile_1", 1e9, "thresholds"), ("horizon", "abc", "horizon"), ("members", 2.5, "members")])
def test_publish_refuses_edited_threshold_and_count_attributes(inputs, tmp_path, attr, value, field):
    """A products store whose thresholds were edited (NaN, a string, out of order) or whose counts are not whole
    numbers: `publish` stopped with a traceback (a NaN q99 only when writing the Item JSON, or `:.4g` of a
    string) or published classes described by thresholds out of order. One line, exit 2, nothing written."""
    from click.testing import CliRunner

    from insarcast.cli import main

    ds = xr.open_zarr(inputs["products"]).load()
    ds.attrs[attr] = value
    ds.to_zarr(tmp_path / "edited.zarr", zarr_format=2, consolidated=True)
    out = tmp_path / "catalog"
    done = CliRunner().invoke(main, ["publish", str(tmp_path / "edited.zarr"), "--ensemble", str(inputs["ensemble"]),
                                     "--out", str(out), "-q"])
    assert done.exit_code == 2, done.output
    assert "edited.zarr" in done.output and f"field {field!r}" in done.output and "Traceback" not in done.output
    assert not out.exists()


@pytest.mark.parametrize("coordinate", ["x", "y"])
def test_publish_refuses_products_that_lost_a_coordinate(inputs, tmp_path, coordinate):
    """Without its 'x' coordinate xarray indexes x as 0, 1, ...: `publish` placed the COGs on a 1 m grid at
    easting 0 (the Items' bbox in the Atlantic) and exited 0."""
    from click.testing import CliRunner

    from insarcast.cli import main

    xr.open_zarr(inputs["products"]).load().drop_vars(coordinate).to_zarr(tmp_path / "edited.zarr", zarr_format=2,
                                                                          consolidated=True)
    out = tmp_path / "catalog"
    done = CliRunner().invoke(main, ["publish", str(tmp_path / "edited.zarr"), "--ensemble", str(inputs["ensemble"]),
                                     "--out", str(out), "-q"])
    assert done.exit_code == 2, done.output
    assert "edited.zarr" in done.output and f"field {coordinate!r}" in done.output
    assert not out.exists()


@pytest.mark.parametrize("edit, field", [
    (lambda ds: ds.assign_coords(time=("horizon", np.r_[ds.time.values[:1], np.datetime64("NaT"),
                                                         ds.time.values[2:]])), "time"),
    (lambda ds: ds.assign_coords(time=("horizon", ds.time.values[::-1])), "time"),
    (lambda ds: ds.assign_coords(horizon=[1, 1, 3]), "horizon"),
    (lambda ds: ds.assign_coords(member=[f"m{k}" for k in range(ds.sizes["member"])]), "member"),
    # codes outside the classes were published, described by the class names of other codes
    (lambda ds: ds.assign(**{"class": ds["class"] * 0 + 9}), "class"),
    (lambda ds: ds.assign(bivariate=ds["bivariate"].where(ds["x"] != ds["x"][0], 200).astype(np.uint8)),
     "bivariate")])
def test_publish_refuses_edited_horizon_time_and_member_coordinates(inputs, tmp_path, edit, field):
    """A NaT valid time, a repeated horizon step or member names stopped `publish --members` with a traceback
    (int(NaN), rioxarray's band names, int('m0')); valid times out of order were published as they were."""
    from click.testing import CliRunner

    from insarcast.cli import main

    edit(xr.open_zarr(inputs["products"]).load()).to_zarr(tmp_path / "edited.zarr", zarr_format=2, consolidated=True)
    out = tmp_path / "catalog"
    done = CliRunner().invoke(main, ["publish", str(tmp_path / "edited.zarr"), "--ensemble", str(inputs["ensemble"]),
                                     "--out", str(out), "--members", "-q"])
    assert done.exit_code == 2, done.output
    assert "edited.zarr" in done.output and f"field {field!r}" in done.output
    assert not out.exists()


def test_publish_members_refuses_products_without_member_forecasts(inputs, tmp_path):
    """`publish --members` on products without 'forecast' published Items without the members' COG and exit 0."""
    from click.testing import CliRunner

    from insarcast.cli import main

    xr.open_zarr(inputs["products"]).load().drop_vars("forecast").to_zarr(tmp_path / "edited.zarr", zarr_format=2,
                                                                          consolidated=True)
    out = tmp_path / "catalog"
    done = CliRunner().invoke(main, ["publish", str(tmp_path / "edited.zarr"), "--ensemble", str(inputs["ensemble"]),
                                     "--out", str(out), "--members", "-q"])
    assert done.exit_code == 2, done.output
    assert "edited.zarr" in done.output and "field 'forecast'" in done.output
    assert not out.exists()


@needs_schemas
def test_missing_schema_and_missing_asset_are_problems(catalog, tmp_path):
    from insarcast.stac.validate import validate_catalog

    broken, item, _ = damaged_copy(catalog, tmp_path)
    (item.parent / "median.tif").unlink()
    fields = {p.field for p in validate_catalog(broken, schemas=SCHEMAS)}
    assert "assets.median.href" in fields
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, schemas)
    shutil.rmtree(schemas / "stac-extensions.github.io" / "forecast")
    problems = validate_catalog(catalog, schemas=schemas)
    assert problems and all(p.field == "stac_extensions" and "forecast" in p.message for p in problems)
    with pytest.raises(InputError, match="schema folder"):
        validate_catalog(catalog, schemas=tmp_path / "nowhere")


def test_cogs_pass_rio_cogeo_and_are_encoded_as_specified(catalog):
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    tifs = sorted(catalog.rglob("*.tif"))
    assert len(tifs) == F * 2 + 12
    for tif in tifs:
        valid, errors, _ = cog_validate(str(tif), quiet=True)
        assert valid, (tif, errors)
        with rasterio.open(tif) as src:
            structure = src.tags(ns="IMAGE_STRUCTURE")
            assert structure["COMPRESSION"] == "DEFLATE" and structure["LAYOUT"] == "COG"
            if tif.stem in ("class", "bivariate"):
                assert src.dtypes[0] == "uint8" and src.nodata == 255
            else:
                assert src.dtypes[0] == "float32" and np.isnan(src.nodata) and structure["PREDICTOR"] == "3"
            assert src.crs.to_epsg() == 3035


# ---------------------------------------------------------------------------------------------- odc-stac
def test_odc_stac_loads_the_products_back(catalog, inputs):
    import odc.stac
    import pystac

    ds = inputs["ds"]
    root = pystac.Catalog.from_file(str(catalog / "catalog.json"))
    items = sorted(root.get_child("insarcast-forecasts").get_items(), key=lambda i: i.datetime)
    cube = odc.stac.load(items, bands=["median"])
    np.testing.assert_array_equal(cube["time"].values, ds["time"].values)
    np.testing.assert_array_equal(cube["y"].values, ds["y"].values)
    np.testing.assert_array_equal(cube["x"].values, ds["x"].values)
    assert cube.odc.crs.epsg == 3035
    assert tuple(cube.odc.geobox.transform)[:6] == tuple(ds.rio.transform())[:6]
    assert cube["median"].dtype == np.float32
    assert np.array_equal(cube["median"].values, ds["median"].values, equal_nan=True)

    last = [i for i in items if "class" in i.assets]
    products = odc.stac.load(last, bands=["class", "bivariate", "std", "p95"])
    for name in ("class", "bivariate"):
        layer = products[name].isel(time=0)
        assert layer.dtype == np.uint8 and layer.attrs["nodata"] == 255
        np.testing.assert_array_equal(layer.values, ds[name].values)
        assert layer.values[3, 4] == 255                  # the invalid pixel keeps its nodata
    for name in ("std", "p95"):
        assert np.array_equal(products[name].isel(time=0).values, ds[name].values, equal_nan=True)
    assert np.isnan(products["std"].values[0, 3, 4])


# ---------------------------------------------------------------------------------------------- append
@needs_schemas
def test_appending_a_run_keeps_the_first_runs_bytes_and_extends_the_extent(catalog, inputs, tmp_path):
    from insarcast.stac.publish import publish
    from insarcast.stac.validate import validate_catalog

    out = tmp_path / "catalog"
    shutil.copytree(catalog, out)
    before = snapshot(out)
    second = make_products(start="2020-03-10", seed=1)           # last epoch 2020-04-27
    publish(second, inputs["ensemble"], out, members=True)
    after = snapshot(out)

    changed = sorted(k for k in before if after.get(k) != before[k])
    assert changed == ["insarcast-forecasts/collection.json"]   # everything else keeps its bytes
    new = sorted(set(after) - set(before))
    assert f"insarcast-forecasts/{NAME}-20200427T000000-h3/class.tif" in new and len(new) == F * 3 + 12
    collection = json.loads((out / "insarcast-forecasts" / "collection.json").read_text())
    assert collection["extent"]["temporal"]["interval"] == [["2020-02-28T00:00:00Z", "2020-05-15T00:00:00Z"]]
    assert collection["summaries"]["insarcast:run_id"] == [f"{NAME}-20200222T000000", f"{NAME}-20200427T000000"]
    assert collection["summaries"]["forecast:reference_datetime"] == {
        "minimum": "2020-02-22T00:00:00Z", "maximum": "2020-04-27T00:00:00Z"}
    assert sum(link["rel"] == "item" for link in collection["links"]) == 2 * F
    assert validate_catalog(out, schemas=SCHEMAS) == []

    # the same run again: refused, or replaced with overwrite (the first run still untouched)
    with pytest.raises(InputError) as info:
        publish(second, inputs["ensemble"], out)
    assert info.value.field == "run_id"
    assert snapshot(out) == after
    publish(second, inputs["ensemble"], out, overwrite=True)
    again = snapshot(out)
    assert {k: again[k] for k in before if k != "insarcast-forecasts/collection.json"} == \
        {k: before[k] for k in before if k != "insarcast-forecasts/collection.json"}
    assert not (out / "insarcast-forecasts" / f"{NAME}-20200427T000000-h1" / "members.tif").exists()


def test_a_failure_midway_leaves_no_partial_catalog(catalog, inputs, tmp_path, monkeypatch):
    from insarcast.stac import items as items_module
    from insarcast.stac.publish import publish

    real, calls = items_module.write_cog, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(items_module, "write_cog", failing)
    fresh = tmp_path / "fresh" / "catalog"
    fresh.parent.mkdir()
    with pytest.raises(OSError, match="disk full"):
        publish(inputs["products"], inputs["ensemble"], fresh)
    assert list(fresh.parent.iterdir()) == []                   # no catalog, no staging left behind

    existing = tmp_path / "existing" / "catalog"
    shutil.copytree(catalog, existing)
    before = snapshot(existing)
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        publish(make_products(start="2020-03-10", seed=1), inputs["ensemble"], existing)
    assert snapshot(existing) == before
    assert [p.name for p in existing.parent.iterdir()] == ["catalog"]


def test_same_inputs_give_the_same_bytes(catalog, inputs, tmp_path):
    from insarcast.stac.publish import publish

    out = publish(inputs["ds"], inputs["ensemble"], tmp_path / "again", members=True)
    assert snapshot(out) == snapshot(catalog)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_are_input_errors(inputs, tmp_path):
    from insarcast.stac.publish import publish

    other = make_ensemble(tmp_path / "three", members=3)
    with pytest.raises(InputError) as info:
        publish(inputs["products"], other, tmp_path / "a")
    assert info.value.field == "members"

    tampered = make_ensemble(tmp_path / "tampered")
    (tampered / "member_01.onnx").write_bytes(b"changed")
    with pytest.raises(InputError) as info:
        publish(inputs["products"], tampered, tmp_path / "b")
    assert info.value.field == "members[1].sha256"

    with pytest.raises(InputError) as info:
        publish(inputs["products"], inputs["ensemble"], tmp_path / "c", run_id="bad id/")
    assert info.value.field == "run_id"
    with pytest.raises(InputError, match="no such products"):
        publish(tmp_path / "missing.zarr", inputs["ensemble"], tmp_path / "d")
    not_a_catalog = tmp_path / "e"
    not_a_catalog.mkdir()
    (not_a_catalog / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not a catalog"):
        publish(inputs["products"], inputs["ensemble"], not_a_catalog)
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_the_shipped_schemas_are_the_default_and_the_wheel_holds_them(catalog):
    """No --schemas: validate-stac uses the copy shipped in the package, offline, on any clone."""
    from click.testing import CliRunner

    from insarcast.cli import main
    from insarcast.stac.validate import SCHEMAS as SHIPPED
    from insarcast.stac.validate import validate_catalog

    assert (SHIPPED / "schemas.stacspec.org" / "v1.1.0" / "item-spec" / "json-schema" / "item.json").is_file()
    assert (SHIPPED / "README.md").is_file() and (SHIPPED / "LICENSE-Apache-2.0.txt").is_file()
    assert "Copyright (c) 2000, Frank Warmerdam" in (SHIPPED / "LICENSE-MIT-PROJ.txt").read_text()
    assert validate_catalog(catalog) == []
    done = CliRunner().invoke(main, ["validate-stac", str(catalog)])
    assert done.exit_code == 0 and "valid" in done.output, done.output
    import tomllib

    data = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "schemas/**/*.json" in data["tool"]["setuptools"]["package-data"]["insarcast.stac"]


def test_the_collection_carries_the_inputs_licence_with_a_license_link(inputs, tiny_cube, tmp_path):
    """Synthetic input: MIT with its licence link; EGMS input: Copernicus (other + the data policy link)."""
    import pystac

    from insarcast.stac.collection import input_licence, new_forecast_collection, set_licence
    from insarcast.stac.publish import publish

    assert input_licence(["EGMS_L3_E40N30_100km_U_synthetic.csv"]) == "synthetic"
    assert input_licence(["EGMS_L3_E40N30_100km_U_2018_2022_1.csv", "EGMS_L3_E40N31_100km_U_synthetic.csv"]) \
        == "copernicus"
    assert input_licence([]) is None and input_licence(["points.csv"]) is None
    collection = new_forecast_collection("c")
    set_licence(collection, "copernicus")
    set_licence(collection, "copernicus")                              # one link, not two
    links = [link for link in collection.links if link.rel == "license"]
    assert collection.license == "other" and len(links) == 1 and "copernicus" in links[0].href

    ds = inputs["ds"].copy()
    ds.attrs["cube"] = str(tiny_cube)                                    # gridded from the synthetic tiles
    out = publish(ds, inputs["ensemble"], tmp_path / "catalog")
    doc = json.loads((out / "insarcast-forecasts" / "collection.json").read_text())
    assert doc["license"] == "MIT"
    assert [link["href"] for link in doc["links"] if link["rel"] == "license"] == ["https://spdx.org/licenses/MIT.html"]
    assert pystac.Collection.from_dict(doc).license == "MIT"


def test_pystac_validates_the_catalog_offline_as_a_second_validator(catalog, tmp_path, no_network):
    from insarcast.stac.pystac_check import pystac_problems

    assert pystac_problems(catalog) == []
    broken, item, doc = damaged_copy(catalog, tmp_path)
    doc["properties"]["proj:code"] = 3035                              # a number, not "EPSG:3035"
    item.write_text(json.dumps(doc))
    problems = pystac_problems(broken)
    assert len(problems) == 1 and item.name in problems[0], problems


@pytest.mark.parametrize("inputs_name", ["paper", "residual", "residual-hindcast"])
def test_value_scaling_is_what_model_inputs_applies(inputs_name, tmp_path):
    """The published value_scaling, applied to the unscaled channels, gives the model's inputs: the
    channels built with mean 0 and std 1 are the unscaled values; with the manifest's statistics each
    channel must be that value scaled as channel_scaling (hence every member Item) says."""
    from insarcast.stac.model_item import _value_scaling
    from insarcast.udf.inputs import INPUTS, model_inputs
    from insarcast.udf.manifest import Manifest

    rng = np.random.default_rng(3)
    nt = 3 * T + 8
    d = np.cumsum(rng.normal(-1.0, 2.0, (2, nt, P, P)), axis=1).astype(np.float32)
    years = 2020 + np.arange(nt) * 6 / 365.25
    valid = np.ones((2, P, P), bool)
    valid[0, 1, 2] = False
    kw = dict(history=T, horizon=F, inputs=inputs_name, years=years)
    raw = model_inputs(d, valid, norm={**NORM, "input_mean": 0.0, "input_std": 1.0}, **kw).x
    scaled = model_inputs(d, valid, norm=NORM, **kw).x
    folder = make_ensemble_manifest_only(inputs_name, tmp_path)
    scaling = _value_scaling(Manifest.from_dict(json.loads((folder / "ensemble.json").read_text()),
                                                path=folder / "ensemble.json"))
    assert len(scaling) == len(INPUTS[inputs_name])
    mask = np.broadcast_to(valid[:, None, :, :], raw[:, :, 0].shape)
    for c, s in enumerate(scaling):
        if s["type"] == "z-score":
            expected = (raw[:, :, c] - s["mean"]) / s["stddev"]
        else:
            assert s["type"] == "scale"
            expected = raw[:, :, c] / s["value"]
        np.testing.assert_allclose(scaled[:, :, c][mask], expected[mask], rtol=1e-5, atol=1e-5,
                                   err_msg=INPUTS[inputs_name][c])
    assert scaling[0] == {"type": "z-score", "mean": NORM["input_mean"], "stddev": NORM["input_std"]}


def make_ensemble_manifest_only(inputs_name: str, folder: Path) -> Path:
    """A manifest (no ONNX check) of formulation ``inputs_name`` with the test's statistics, in ``folder``."""
    from conftest import ensemble_manifest
    from insarcast.udf.inputs import INPUTS

    names = list(INPUTS[inputs_name])
    manifest = ensemble_manifest([("member_00.onnx", b"x")], history=T, horizon=F, patch=P, norm=NORM,
                                 channels=len(names), inputs=inputs_name, channel_names=names)
    (folder / "ensemble.json").write_text(json.dumps(manifest))
    return folder


@needs_schemas
def test_another_ensemble_of_the_same_name_is_refused_then_replaced_with_overwrite(catalog, inputs, tmp_path):
    from insarcast.stac.publish import publish
    from insarcast.stac.validate import validate_catalog

    out = tmp_path / "catalog"
    shutil.copytree(catalog, out)
    other = make_ensemble(tmp_path / "other")                   # same name and members, another manifest
    edit = json.loads((other / "ensemble.json").read_text())
    edit["created"] = "2026-02-03T04:05:06Z"
    (other / "ensemble.json").write_text(json.dumps(edit))
    with pytest.raises(InputError) as info:
        publish(inputs["products"], other, out, run_id="second")
    assert info.value.field == "name"
    publish(inputs["products"], other, out, run_id="second", overwrite=True)
    ensemble = json.loads((out / "insarcast-models" / NAME / "collection.json").read_text())
    assert ensemble["extent"]["temporal"]["interval"] == [["2026-02-03T04:05:06Z", "2026-02-03T04:05:06Z"]]
    members = sorted((out / "insarcast-models" / NAME).glob("*/*.json"))
    assert len(members) == K
    assert all(json.loads(p.read_text())["properties"]["datetime"] == "2026-02-03T04:05:06Z" for p in members)
    problems = validate_catalog(out, schemas=SCHEMAS)
    assert problems == [], "\n".join(map(str, problems))


# ---------------------------------------------------------------------------------------------- damaged JSON
def validate_stac(catalog: Path):
    """Run ``insarcast validate-stac`` on ``catalog``: (exit code, output); an uncaught exception fails."""
    from click.testing import CliRunner

    from insarcast.cli import main

    done = CliRunner().invoke(main, ["validate-stac", str(catalog), "--schemas", str(SCHEMAS), "--no-cogs"])
    assert isinstance(done.exception, (SystemExit, type(None))), (done.output, done.exc_info)
    return done.exit_code, done.output


def forecast_item(catalog: Path) -> Path:
    return sorted((catalog / "insarcast-forecasts").glob("*-h1/*-h1.json"))[0]


def damaged_copy(catalog: Path, tmp_path: Path) -> tuple[Path, Path, dict]:
    """A copy of ``catalog`` to damage, its first forecast Item and that Item's JSON."""
    broken = tmp_path / "catalog"
    shutil.copytree(catalog, broken)
    item = forecast_item(broken)
    return broken, item, json.loads(item.read_text())


@needs_schemas
def test_a_stac_version_not_a_string_is_reported_not_a_crash(catalog, tmp_path, no_network):
    """pystac's own validator failed on it (AttributeError in identify); both validators now name the field."""
    broken = tmp_path / "catalog"
    shutil.copytree(catalog, broken)
    doc = json.loads((broken / "catalog.json").read_text())
    doc["stac_version"] = 1
    (broken / "catalog.json").write_text(json.dumps(doc))
    code, output = validate_stac(broken)
    assert code == 2, output
    lines = [line for line in output.splitlines() if "catalog.json" in line]
    assert len(lines) == 2 and all("stac_version: expected a string such as '1.1.0', not 1" in line
                                   for line in lines), output


@needs_schemas
@pytest.mark.parametrize("where", ["catalog", "item"])
def test_json_nested_too_deeply_is_not_readable_json(catalog, tmp_path, no_network, where):
    broken = tmp_path / "catalog"
    shutil.copytree(catalog, broken)
    path = broken / "catalog.json" if where == "catalog" else forecast_item(broken)
    path.write_text("[" * 100_000 + "]" * 100_000)
    code, output = validate_stac(broken)
    assert code == 2, output
    assert f"{path.name}: not readable JSON (nested too deeply to read)" in output, output


@needs_schemas
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(catalog, tmp_path, no_network, constant):
    """Python's json reads them; RFC 8259 does not allow them: the Item is invalid, the line says where."""
    from insarcast.stac.validate import validate_catalog

    broken, item, doc = damaged_copy(catalog, tmp_path)
    doc["bbox"][0] = float(constant.lower().replace("infinity", "inf"))
    item.write_text(json.dumps(doc, indent=1))                 # json.dumps writes NaN / Infinity as is
    line = next(n for n, text in enumerate(item.read_text().splitlines(), 1) if constant in text)
    problems = validate_catalog(broken, schemas=SCHEMAS, check_cogs=False)
    assert [(Path(p.path).resolve(), p.field) for p in problems] == [(item.resolve(), None)], problems
    assert f"{constant} at line {line} column " in problems[0].message and "RFC 8259" in problems[0].message
    code, output = validate_stac(broken)
    assert code == 2 and f"invalid (pystac): {item}: not readable JSON: {constant} at line {line}" in output, output


@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b'{"title": "Gr\xf6und"}', "not UTF-8 at byte 13 (line 1)"),
    (b'{\n "id": "x",\n "links": [', "Expecting value: line 3 column 12"),
    (b'{"a": "NaN, \\" Infinity", "b": -Infinity}', "-Infinity at line 1 column 32 is not a JSON number"),
])
def test_read_json_says_why_and_where(tmp_path, data, message):
    from insarcast.stac.validate import read_json

    path = tmp_path / "catalog.json"
    path.write_bytes(data)
    with pytest.raises(ValueError) as info:
        read_json(path)
    assert message in str(info.value)


@needs_schemas
@pytest.mark.parametrize("cycle", ["to the root", "to itself"])
def test_a_child_link_cycle_is_a_problem(catalog, tmp_path, no_network, cycle):
    from insarcast.stac.validate import validate_catalog

    broken = tmp_path / "catalog"
    shutil.copytree(catalog, broken)
    path = broken / "insarcast-forecasts" / "collection.json" if cycle == "to the root" else broken / "catalog.json"
    doc = json.loads(path.read_text())
    doc["links"].append({"rel": "child", "href": "../catalog.json" if cycle == "to the root" else "./catalog.json",
                         "type": "application/json"})
    path.write_text(json.dumps(doc, indent=2))
    problems = validate_catalog(broken, schemas=SCHEMAS, check_cogs=False)
    assert len(problems) == 1, problems
    assert Path(problems[0].path).resolve() == path.resolve()
    assert problems[0].field == f"links[{len(doc['links']) - 1}].href"
    assert "leads back to" in problems[0].message and "catalog.json: a link cycle" in problems[0].message


@needs_schemas
@pytest.mark.parametrize("damage", ["properties a list", "assets a list", "bbox nested 850 deep"])
def test_mistyped_or_deep_fields_are_problems_not_crashes(catalog, tmp_path, no_network, damage):
    broken, item, doc = damaged_copy(catalog, tmp_path)
    if damage == "bbox nested 850 deep":
        item.write_text(json.dumps({**doc, "bbox": None}).replace('"bbox": null', '"bbox": ' + "[" * 850 + "]" * 850))
    else:
        doc[damage.split()[0]] = [1]
        item.write_text(json.dumps(doc))
    code, output = validate_stac(broken)
    assert code == 2 and item.name in output, output


@needs_schemas
def test_an_unknown_extension_is_one_problem_without_pystacs_logged_tracebacks(catalog, tmp_path, no_network, caplog):
    """pystac logs a traceback for each schema it cannot fetch, which reached stderr beside our one line."""
    from insarcast.stac.pystac_check import pystac_problems

    broken, item, doc = damaged_copy(catalog, tmp_path)
    doc["stac_extensions"].append("https://stac-extensions.github.io/unknown/v9.9.9/schema.json")
    item.write_text(json.dumps(doc))
    problems = pystac_problems(broken, schemas=SCHEMAS)
    assert len(problems) == 1 and "unknown/v9.9.9" in problems[0] and str(item) in problems[0]
    assert [r for r in caplog.records if r.name.startswith("pystac")] == []
    assert logging.getLogger("pystac").level == logging.NOTSET          # restored
