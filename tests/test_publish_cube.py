"""`insarcast publish-cube`: the displacement cube as a STAC Collection that odc-stac loads back equal."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import STAC_SCHEMAS
from insarcast.cli import main
from insarcast.cube import open_cube

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = STAC_SCHEMAS          # the shipped schemas (conftest)
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


def _served_items(folder: Path) -> list:
    """The Collection's Items as a STAC API returns them: no links, asset hrefs absolute (local paths: the
    COGs are read by rasterio, the JSON travels over HTTP)."""
    collection = json.loads((folder / "collection.json").read_text())
    items = []
    for link in (link for link in collection["links"] if link["rel"] == "item"):
        item = json.loads((folder / link["href"]).read_text())
        for asset in item["assets"].values():
            asset["href"] = str(((folder / link["href"]).parent / asset["href"]).resolve())
        items.append({**item, "links": []})
    return items


def _in_interval(item: dict, interval) -> bool:
    """Whether the Item's datetime lies in a STAC API ``datetime`` interval ("start/end", ".." open)."""
    start, end = ("/".join(interval) if isinstance(interval, list) else interval or "../..").split("/")
    t = np.datetime64(item["properties"]["datetime"].removesuffix("Z"))
    return (start in ("..", "") or t >= np.datetime64(start.removesuffix("Z"))) and \
        (end in ("..", "") or t <= np.datetime64(end.removesuffix("Z")))


def _landing(root: str) -> dict:
    return {"type": "Catalog", "id": "cube-api", "stac_version": "1.1.0", "description": "test",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "self", "href": root + "/"}, {"rel": "root", "href": root + "/"},
                      {"rel": "search", "href": root + "/search", "method": "POST", "type": "application/geo+json"},
                      {"rel": "search", "href": root + "/search", "method": "GET", "type": "application/geo+json"}]}


def _stac_api(catalog: Path, collection_id: str):
    """A minimal STAC API over 127.0.0.1 for the published catalog: the landing page (item-search
    conformance, a search link) and /search (GET or POST), which returns every Item of the Collection whose
    datetime lies in the requested interval. openeo-processes-dask's load_stac asks for exactly this: for a
    Collection URL with filters it walks up to the root Catalog and searches it with pystac_client."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    items = _served_items(catalog / collection_id)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):                      # quiet
            pass

        def _send(self, doc):
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _search(self, params):
            wanted = collection_id in (params.get("collections") or [collection_id])
            chosen = [i for i in items if wanted and _in_interval(i, params.get("datetime"))]
            self._send({"type": "FeatureCollection", "features": chosen, "links": []})

        def do_GET(self):
            url = urlparse(self.path)
            if url.path in ("", "/"):
                self._send(_landing(f"http://127.0.0.1:{self.server.server_port}"))
            elif url.path == "/search":
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                query["collections"] = query.get("collections", collection_id).split(",")
                self._search(query)
            else:
                self.send_error(404)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self._search(json.loads(self.rfile.read(length) or b"{}"))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_openeo_processes_dask_load_stac_loads_the_cube_back_equal(small_cube, published, monkeypatch):
    """openeo-processes-dask's own load_stac on the published Collection, served by a minimal STAC API
    (its load_stac searches the root Catalog of a Collection URL, which a static catalog cannot answer).
    Its `_validate_stac` (stac-validator, which fetches JSON schemas from the network) is replaced by
    the type the document declares: the catalog's JSON is validated offline by test_the_catalog_validates_offline."""
    pytest.importorskip("openeo_pg_parser_networkx")
    pytest.importorskip("pystac_client")
    load = pytest.importorskip("openeo_processes_dask.process_implementations.cubes.load")
    from openeo_pg_parser_networkx.pg_schema import BoundingBox, TemporalInterval

    out, _ = published
    server = _stac_api(out, "insarcast-cube")
    root = f"http://127.0.0.1:{server.server_port}"
    types = {root: "CATALOG", f"{root}/": "CATALOG", f"{root}/collections/insarcast-cube": "COLLECTION"}

    def declared_type(url):
        if url not in types:
            raise ValueError(f"not a STAC document: {url}")
        return types[url]

    monkeypatch.setattr(load, "_validate_stac", declared_type)
    cube = open_cube(small_cube)
    x, y = cube["x"].values, cube["y"].values
    extent = BoundingBox(west=float(x[0] - 50), east=float(x[-1] + 50), south=float(y[-1] - 50),
                         north=float(y[0] + 50), crs="EPSG:3035")
    t = cube["t"].values.astype("datetime64[D]")
    try:
        loaded = load.load_stac(f"{root}/collections/insarcast-cube", spatial_extent=extent,
                                temporal_extent=TemporalInterval([str(t[0]), str(t[-1] + np.timedelta64(1, "D"))]),
                                bands=["displacement"]).compute()
    finally:
        server.shutdown()
    expected = cube["displacement"].where(cube["valid"]).transpose("t", "y", "x")
    assert loaded.dims == ("bands", "time", "y", "x") and list(loaded["bands"].values) == ["displacement"]
    np.testing.assert_array_equal(loaded.isel(bands=0).values, expected.values)       # NaN where not valid too
    assert np.isnan(loaded.values).any() and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded["time"].values, cube["t"].values)
    np.testing.assert_array_equal(loaded["x"].values, x)
    np.testing.assert_array_equal(loaded["y"].values, y)
    assert loaded.rio.crs.to_epsg() == 3035
    assert tuple(loaded.rio.transform(recalc=True))[:6] == tuple(cube.rio.transform(recalc=True))[:6]
