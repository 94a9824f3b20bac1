"""`insarcast openeo run` end to end, offline: the products it writes equal `insarcast forecast`'s.

openeo's DummyBackend stands in for the backend, and it really computes: when a job is polled, the
process graph that was posted is run as a backend would run it on the small cube (load_stac: the cube,
NaN where not valid; apply_dimension + rename_labels: one band per epoch labelled by the graph's dates;
run_udf: the graph's own UDF code and context through openeo's run_udf_code, in a folder where the job's
archive is unpacked, as ``udf-dependency-archives`` does; add_dimension + save_result: a GeoTIFF whose
band descriptions are the UDF's band labels). The statistics job runs first (no thresholds given), then
the products job with the thresholds `openeo run` took from it.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

pytest.importorskip("requests_mock")
pytest.importorskip("onnxruntime")
from openeo.rest._testing import DummyBackend  # noqa: E402

from conftest import STAC_SCHEMAS, linear_member, write_ensemble  # noqa: E402
from insarcast.cli import main  # noqa: E402
from insarcast.cube import open_cube  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = STAC_SCHEMAS          # the shipped schemas (conftest)
URL = "https://oeo.test/"
T, F, P, K = 6, 3, 8, 4
NORM = {"input_mean": 0.5, "input_std": 4.0, "target_mean": -1.0, "target_std": 3.0}
# attributes that describe the run rather than the products (where and how each ran)
RUN_ATTRS = {"ensemble_path", "cube", "onnxruntime_providers", "onnxruntime_intra_op_threads", "dask_workers",
             "usable_cpus", "wait_policy", "openeo_backend", "openeo_job_id"}
pytestmark = [pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")]


@pytest.fixture(scope="module")
def setup(tiny_cube, tmp_path_factory):
    """The small cube (8 epochs, 20 x 24 cells), a 4-member linear ensemble, the cube's Collection, the job
    folder of `openeo build` (no thresholds: the statistics job will run) and `insarcast forecast`'s products."""
    root = tmp_path_factory.mktemp("openeo-products")
    small = open_cube(tiny_cube)[["displacement", "valid"]].isel(t=slice(-8, None), y=slice(0, 20),
                                                                 x=slice(0, 24)).load()
    for variable in small.variables.values():
        variable.encoding = {}
    small.to_zarr(root / "cube.zarr", zarr_format=2, consolidated=True)
    members = [linear_member(c, history=T, horizon=F, patch=P) for c in (0.3, -0.6, 1.1, 1.7)]
    ensemble = write_ensemble(root / "ensemble", members, history=T, horizon=F, patch=P, norm=NORM,
                              name="openeo-test")
    runner = CliRunner()
    done = runner.invoke(main, ["publish-cube", str(root / "cube.zarr"), "--out", str(root / "cubecat"), "-q"])
    assert done.exit_code == 0, done.output
    west, north = float(small.x[0]) - 50, float(small.y[0]) + 50
    done = runner.invoke(main, ["openeo", "build", "--cube-stac", done.stdout.strip(), "--ensemble", str(ensemble),
                                "--bbox", str(west), str(north - 2000), str(west + 2400), str(north),
                                "--archive-url", "https://example.org/u.zip", "--out", str(root / "job"), "-q"])
    assert done.exit_code == 0, done.output
    local = subprocess.run([sys.executable, "-m", "insarcast", "forecast", str(root / "cube.zarr"), "--ensemble",
                            str(ensemble), "--out", str(root / "local.zarr"), "--workers", "1", "-q"],
                           capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr[-3000:]
    workdir = root / "backend"
    zipfile.ZipFile(root / "job" / "insarcast-udf.zip").extractall(workdir / "insarcast-udf")
    return {"root": root, "cube": small, "job": root / "job", "local": root / "local.zarr", "workdir": workdir}


def _geotiff(array: xr.DataArray) -> bytes:
    """What save_result GTiff writes of the UDF's (bands, y, x): float32, NaN nodata, band descriptions."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    x, y = array["x"].values, array["y"].values
    transform = from_origin(x[0] - (x[1] - x[0]) / 2, y[0] + (y[0] - y[1]) / 2, x[1] - x[0], y[0] - y[1])
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", width=len(x), height=len(y), count=array.sizes["bands"], dtype="float32",
                         crs="EPSG:3035", transform=transform, nodata=np.nan) as dst:
            dst.write(array.values.astype(np.float32))
            for i, label in enumerate(array["bands"].values, start=1):
                dst.set_band_description(i, str(label))
        return memory.read()


def _execute(graph: dict, cube: xr.Dataset) -> bytes:
    """The posted graph run on ``cube`` as a backend would (see the module's docstring)."""
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    nodes = graph["process_graph"]
    assert [n["process_id"] for n in nodes.values()] == ["load_stac", "apply_dimension", "rename_labels",
                                                         "apply_neighborhood", "add_dimension", "save_result"]
    dates = nodes["renamelabels1"]["arguments"]["target"]
    assert dates == [str(t)[:10] for t in cube["t"].values.astype("datetime64[D]")]
    loaded = cube.displacement.where(cube.valid).astype(np.float32).drop_vars("spatial_ref", errors="ignore")
    banded = loaded.rename(t="bands").assign_coords(bands=dates).transpose("bands", "y", "x")
    udf = nodes["applyneighborhood1"]["arguments"]["process"]["process_graph"]["runudf1"]["arguments"]
    result = run_udf_code(udf["udf"], UdfData(datacube_list=[XarrayDataCube(banded)], user_context=udf["context"]))
    return _geotiff(result.get_datacube_list()[0].get_array())


@pytest.fixture(scope="module")
def ran(setup, tmp_path_factory):
    """`insarcast openeo run --auth none` through the CLI against the computing DummyBackend."""
    import requests_mock

    root = setup["root"]
    here = os.getcwd()
    path = list(sys.path)
    os.chdir(setup["workdir"])             # the backend's working directory: the archive unpacked in it
    try:
        with requests_mock.Mocker() as mocker:
            dummy = DummyBackend.at_url(URL, requests_mock=mocker)
            done_jobs = {}

            def backend(job_id, current_status):
                if job_id not in done_jobs:
                    done_jobs[job_id] = _execute(dummy.batch_jobs_full[job_id]["process"], setup["cube"])
                dummy.next_result = done_jobs[job_id]
                return "running" if current_status == "created" else "finished"

            dummy.job_status_updater = backend
            result = CliRunner().invoke(main, ["openeo", "run", "--backend", URL, "--job", str(setup["job"]),
                                               "--out", str(root / "out"), "--auth", "none", "--poll", "0", "-q"])
            posted = [dummy.batch_jobs_full[j] for j in sorted(dummy.batch_jobs_full)]
    finally:
        os.chdir(here)
        sys.path[:] = path
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root / "out", result, posted


def test_openeo_run_writes_the_products_of_forecast_on_the_same_cube(setup, ran):
    out, result, posted = ran
    assert result.stdout.strip() == str(out)
    assert [p["title"] for p in posted] == ["insarcast forecast: statistics", "insarcast forecast"]
    local = xr.open_zarr(setup["local"]).load()
    remote = xr.open_zarr(out / "products.zarr").load()
    assert sorted(remote.variables) == sorted(local.variables)
    for name in local.variables:                    # values (NaN where not valid), dtypes, coords, attributes
        xr.testing.assert_identical(remote[name], local[name])
    assert np.isnan(remote["median"].values).any() and (remote["class"].values == 255).any()
    assert remote["forecast"].sizes == {"member": K, "horizon": F, "y": 20, "x": 24}
    for key in set(local.attrs) - RUN_ATTRS:        # thresholds, reference and valid time, horizon, T, P, K ...
        assert remote.attrs.get(key) == local.attrs[key], key
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert thresholds == {k: local.attrs[k] for k in thresholds}           # exact, from the statistics job
    last = setup["cube"]["t"].values[-1]
    assert remote["forecast_reference_time"].values == last
    assert remote.attrs["reference_time"] == str(np.datetime_as_string(last, unit="s"))
    np.testing.assert_array_equal(remote["time"].values, last + np.arange(1, F + 1) * np.timedelta64(6, "D"))
    assert remote.rio.crs.to_epsg() == 3035
    assert remote.attrs["openeo_backend"] == URL and remote.attrs["openeo_job_id"] == "job-001"
    context = posted[1]["process"]["process_graph"]["applyneighborhood1"]["arguments"]["process"][
        "process_graph"]["runudf1"]["arguments"]["context"]
    assert context["member_bands"] is True and context["thresholds"] == thresholds
    assert sorted(p.name for p in out.iterdir()) == ["catalog", "process_graph.json", "products.zarr", "result",
                                                     "statistics", "thresholds.json"]


def test_the_catalog_holds_the_runs_items_at_the_valid_times_and_validates(setup, ran):
    import pystac

    out = ran[0]
    local = xr.open_zarr(setup["local"])
    catalog = pystac.Catalog.from_file(str(out / "catalog" / "catalog.json"))
    items = sorted(catalog.get_child("insarcast-forecasts").get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == [f"openeo-test-{str(local.attrs['reference_time']).replace('-', '').replace(':', '')}"
                                     f"-h{h}" for h in range(1, F + 1)]
    assert [np.datetime64(i.datetime.replace(tzinfo=None), "ns") for i in items] == list(local["time"].values)
    assert "class" in items[-1].assets and "median" in items[0].assets
    import rasterio

    with rasterio.open(items[-1].assets["class"].get_absolute_href()) as src:
        np.testing.assert_array_equal(src.read(1), local["class"].values)
    from insarcast.stac.validate import validate_catalog

    assert validate_catalog(out / "catalog", schemas=SCHEMAS) == []      # the shipped schemas: never skipped


def test_openeo_run_refuses_an_existing_out_without_overwrite(setup, ran):
    out = ran[0]
    before = sorted(p.name for p in out.iterdir())
    result = CliRunner().invoke(main, ["openeo", "run", "--backend", URL, "--job", str(setup["job"]), "--out",
                                       str(out), "--auth", "none"])
    assert result.exit_code == 2 and "output exists (pass --overwrite" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == before


def test_the_bands_the_udf_declares_to_the_backend_are_the_bands_it_returned(setup, ran, monkeypatch):
    """A backend labels the result's bands from apply_metadata: with member_bands those must be the bands
    the UDF returns (the medians, the products, then K x F member bands), in the same order."""
    import rasterio
    from openeo.metadata import Band, BandDimension, CubeMetadata, SpatialDimension

    from insarcast.udf.openeo_udf import PRODUCT_BANDS, apply_metadata

    out, _, posted = ran
    context = posted[1]["process"]["process_graph"]["applyneighborhood1"]["arguments"]["process"][
        "process_graph"]["runudf1"]["arguments"]["context"]
    monkeypatch.chdir(setup["workdir"])
    monkeypatch.setattr(sys, "path", list(sys.path))
    metadata = CubeMetadata([SpatialDimension("x", [0, 1]), SpatialDimension("y", [0, 1]),
                             BandDimension("bands", [Band(str(t)[:10]) for t in setup["cube"]["t"].values])])
    declared = apply_metadata(metadata, context).band_names
    with rasterio.open(out / "result" / "result.data") as src:
        assert list(src.descriptions) == declared
    assert declared[:F + len(PRODUCT_BANDS)] == [f"fc_h{h}" for h in range(1, F + 1)] + list(PRODUCT_BANDS)
    assert declared[F + len(PRODUCT_BANDS):] == [f"member{k:02d}_h{h}" for k in range(K) for h in range(1, F + 1)]
