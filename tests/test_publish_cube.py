"""`insarcast publish-cube`: the displacement cube as a STAC Collection that odc-stac loads back equal."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from insarcast.cli import main
from insarcast.cube import open_cube

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = Path(os.environ.get("INSARCAST_STAC_SCHEMAS", ROOT.parent / "shared" / "stac-schemas"))
# third-party deprecations (affine's matrix operator, shapely.ops) that odc-geo and rioxarray trigger
pytestmark = [pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")]


@pytest.fixture(scope="module")
def small_cube(tiny_cube, tmp_path_factory):
    """The tiny cube's last 5 epochs on a 17 x 28 window (a COG per epoch: keep them few)."""
    cube = open_cube(tiny_cube).isel(t=slice(-5, None), y=slice(3, 20), x=slice(2, 30)).load()
    for variable in cube.variables.values():
        variable.encoding = {}
    path = tmp_path_factory.mktemp("small") / "cube.zarr"
    cube.to_zarr(path)
    return path


@pytest.fixture(scope="module")
def published(small_cube, tmp_path_factory):
    out = tmp_path_factory.mktemp("cubecat") / "catalog"
    result = CliRunner().invoke(main, ["publish-cube", str(small_cube), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, Path(result.stdout.strip())


def test_the_collection_describes_the_cube(small_cube, published):
    out, collection_path = published
    assert collection_path == out / "insarcast-cube" / "collection.json"
    cube = open_cube(small_cube)
    collection = json.loads(collection_path.read_text())
    dims = collection["cube:dimensions"]
    times = [str(t)[:19] + "Z" for t in cube["t"].values.astype("datetime64[s]")]
    assert dims["t"]["values"] == times and dims["bands"]["values"] == ["displacement"]
    assert dims["x"]["step"] == 100.0 and dims["y"]["step"] == -100.0 and dims["x"]["reference_system"] == 3035
    items = [json.loads((collection_path.parent / link["href"]).read_text())
             for link in collection["links"] if link["rel"] == "item"]
    assert [item["properties"]["datetime"] for item in items] == times
    from insarcast.stac.files import check_multihash

    for item in items:
        asset = item["assets"]["displacement"]
        tif = collection_path.parent / item["id"] / "displacement.tif"
        assert check_multihash(tif, asset["file:checksum"]) is None and asset["file:size"] == tif.stat().st_size
        assert asset["bands"][0]["nodata"] == "nan" and asset["bands"][0]["unit"] == "mm"
        assert item["properties"]["proj:code"] == "EPSG:3035"


@pytest.mark.skipif(not SCHEMAS.is_dir(), reason=f"no STAC schemas at {SCHEMAS}")
def test_the_catalog_validates_offline(published):
    from insarcast.stac.validate import validate_catalog

    assert validate_catalog(published[0], schemas=SCHEMAS) == []


def test_odc_stac_loads_the_cube_back_equal(small_cube, published):
    odc_stac = pytest.importorskip("odc.stac")
    import pystac

    collection = pystac.Collection.from_file(str(published[1]))
    loaded = odc_stac.load(list(collection.get_items()), bands=["displacement"]).displacement
    cube = open_cube(small_cube)
    expected = cube["displacement"].where(cube["valid"]).transpose("t", "y", "x")
    np.testing.assert_array_equal(loaded.values, expected.values)                # NaN where not valid, too
    assert np.isnan(loaded.values).any() and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded["time"].values, cube["t"].values)
    assert loaded.odc.crs.epsg == 3035
    assert tuple(loaded.odc.geobox.transform)[:6] == tuple(cube.rio.transform())[:6]


def test_publish_cube_refuses_an_existing_folder_and_a_bad_cube(published, tmp_path):
    result = CliRunner().invoke(main, ["publish-cube", str(tmp_path / "nothing.zarr"), "--out", str(published[0])])
    assert result.exit_code == 2 and "output exists" in result.stderr
    result = CliRunner().invoke(main, ["publish-cube", str(tmp_path / "nothing.zarr"), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
