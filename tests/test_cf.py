"""The products as CF and xarray users expect them: cf-xarray finds the forecast's coordinates and
the class flags, and a NetCDF export passes the IOOS compliance checker's CF 1.11 suite."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

cf_xarray = pytest.importorskip("cf_xarray")
pytest.importorskip("netCDF4")
pytest.importorskip("onnxruntime")

from test_udf_ensemble_forecast import cube, ensemble_dir  # noqa: E402,F401  (fixtures)
from insarcast.udf.ensemble import load_ensemble  # noqa: E402
from insarcast.udf.forecast import forecast_products  # noqa: E402


@pytest.fixture(scope="module")
def products(cube, ensemble_dir):  # noqa: F811
    return forecast_products(cube, **load_ensemble(ensemble_dir).settings)


def test_cf_xarray_finds_the_forecast_times_the_map_axes_and_the_class_flags(products):
    ds = products
    reference = ds.cf["forecast_reference_time"]
    assert reference.values == np.datetime64(ds.attrs["reference_time"])
    lead = ds.cf["forecast_period"]
    np.testing.assert_array_equal(ds["time"].values, reference.values + lead.values)
    assert ds.cf.axes["X"] == ["x"] and ds.cf.axes["Y"] == ["y"]
    assert ds["median"].cf["projection_x_coordinate"].name == "x"
    cls = ds["class"]
    assert cls.dtype == np.uint8 and cls.cf.is_flag_variable
    # flag meanings compare by name: "high" is code 2; the nodata code 255 is outside valid_range
    np.testing.assert_array_equal((cls.cf == "high").values, (cls == 2).values)
    assert list(cls.attrs["valid_range"]) == [0, 3] and (cls.values[~np.isfinite(ds["median"].values[-1])] == 255).all()


def test_a_netcdf_export_passes_the_cf_1_11_checks(products, tmp_path):
    pytest.importorskip("compliance_checker")
    from insarcast.udf.netcdf import to_netcdf

    path = tmp_path / "products.nc"
    to_netcdf(products, path)
    report = tmp_path / "cf.json"
    proc = subprocess.run([_checker(), "--test", "cf:1.11", "--format", "json", "--output", str(report), str(path)],
                          capture_output=True, text=True, timeout=300)
    result = json.loads(report.read_text())["cf:1.11"]
    failed = [m for p in result["all_priorities"] for m in p["msgs"]] if "all_priorities" in result else []
    assert proc.returncode == 0, (proc.stdout[-3000:], failed)
    back = xr.open_dataset(path, engine="netcdf4", mask_and_scale=False)
    np.testing.assert_array_equal(back["class"].values, products["class"].values)
    assert back.attrs["Conventions"] == "CF-1.11" and back["time"].attrs["standard_name"] == "time"


def test_netcdf_readers_see_the_class_nodata_as_missing(products, tmp_path):
    """In the NetCDF file the class codes carry _FillValue 255: xarray's default decoding masks the
    nodata pixels (NaN), and cf-xarray still decodes the flags by name."""
    from insarcast.udf.netcdf import to_netcdf

    path = tmp_path / "products.nc"
    to_netcdf(products, path)
    back = xr.open_dataset(path, engine="netcdf4")
    for name in ("class", "bivariate"):
        codes = products[name].values
        assert back[name].encoding["_FillValue"] == 255 and "nodata" not in back[name].attrs
        np.testing.assert_array_equal(np.isnan(back[name].values), codes == 255)
        np.testing.assert_array_equal(back[name].values[codes != 255], codes[codes != 255])
    assert (codes == 255).any()                                      # the cube has an invalid pixel
    np.testing.assert_array_equal((back["class"].cf == "high").values, (products["class"] == 2).values)
    assert products["class"].dtype == np.uint8 and "_FillValue" not in products["class"].encoding


def _checker() -> str:
    from pathlib import Path

    script = Path(sys.executable).with_name("compliance-checker")
    if not script.exists():
        pytest.skip("the compliance-checker script is not installed beside this Python")
    return str(script)


def test_forecast_format_netcdf_writes_one_file_with_the_products(tiny_cube, ensemble_dir, products,  # noqa: F811
                                                                 tmp_path):
    from test_udf_ensemble_forecast import _forecast_cli

    out = tmp_path / "products.nc"
    proc = _forecast_cli(tiny_cube, ensemble_dir, out, "--format", "netcdf")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # quiet and clean: no warning (netCDF4's "endian-ness of dtype and endian kwarg do not match" was printed)
    assert proc.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["products.nc"]
    back = xr.open_dataset(out, engine="netcdf4", mask_and_scale=False)
    np.testing.assert_array_equal(back["class"].values, products["class"].values)
    np.testing.assert_allclose(back["p95"].values, products["p95"].values, atol=1e-6)
    assert back.attrs["history"].endswith("insarcast forecast")

