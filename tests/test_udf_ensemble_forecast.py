"""The ensemble UDF end to end: hand-built ONNX members, Dask chunkings, LocalCluster, openEO, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import linear_member, write_ensemble  # noqa: E402
from insarcast.cube import open_cube  # noqa: E402
from insarcast.errors import InputError  # noqa: E402
from insarcast.udf.ensemble import load_ensemble  # noqa: E402
from insarcast.udf.forecast import forecast_products  # noqa: E402

T, F, P, C = 6, 3, 8, 2
NORM = {"input_mean": 0.5, "input_std": 4.0, "target_mean": -1.0, "target_std": 3.0}
COEFFICIENTS = (0.2, -0.5, 0.9, 1.4, -1.1)


def write_linear_ensemble(folder, coefficients=COEFFICIENTS, *, spacing=100.0, crs="EPSG:3035", epoch_days=6.0,
                          **manifest_fields):
    """Linear ONNX members (conftest.linear_member) with their manifest, from the one factory."""
    members = [linear_member(c, history=T, horizon=F, patch=P, channels=C) for c in coefficients]
    return write_ensemble(folder, members, history=T, horizon=F, patch=P, channels=C, norm=NORM, name="linear-test",
                          spacing=spacing, crs=crs, epoch_days=epoch_days, **manifest_fields)


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory):
    return write_linear_ensemble(tmp_path_factory.mktemp("ens") / "ensemble")


@pytest.fixture(scope="module")
def cube(tiny_cube):
    return open_cube(tiny_cube)[["displacement", "valid"]].load()


def _members_at_f(cube):
    """d_k at horizon F of the linear members (mm), straight from the cube (0 input at NaN pixels)."""
    d = cube.displacement.values.astype(np.float64)
    x0 = np.nan_to_num((d[-T] - d[-1] - NORM["input_mean"]) / NORM["input_std"])
    return np.stack([c * F * x0 * NORM["target_std"] + NORM["target_mean"] for c in COEFFICIENTS])


def _by_hand(cube):
    """The paper's section 4.4 formulas, straight from the cube and the member coefficients."""
    d = cube.displacement.values.astype(np.float64)
    usable = cube.valid.values & np.isfinite(d[-T:]).all(0)
    dk = _members_at_f(cube)
    a = np.abs(dk[:, usable])
    m = np.abs(np.median(dk[:, usable], axis=0))
    q = np.quantile(m, [0.85, 0.95, 0.99])
    cls = (m[None] >= q[:, None]).sum(0)
    p = np.stack([(a >= qi).mean(0) for qi in q])
    masses = np.stack([1 - p[0], p[0] - p[1], p[1] - p[2], p[2]])
    member_class = (a[None] >= q[:, None, None]).sum(0)
    std = a.std(0)
    terciles = np.quantile(std, [1 / 3, 2 / 3])
    uncertainty = (std[None] >= terciles[:, None]).sum(0)
    return usable, {"q": q, "class": cls, "p85": p[0], "p95": p[1], "p99": p[2], "confidence": masses[cls, np.arange(len(m))],
                    "rank_variance": member_class.var(0), "std": std, "bivariate": 3 * np.minimum(cls, 2) + uncertainty,
                    "median": np.median(dk[:, usable], axis=0)}


def test_known_linear_members_give_the_papers_formulas(cube, ensemble_dir):
    ensemble = load_ensemble(ensemble_dir)
    products = forecast_products(cube, overlap=P // 2, **ensemble.settings)
    usable, expected = _by_hand(cube)
    attrs = products.attrs
    np.testing.assert_allclose([attrs["q85"], attrs["q95"], attrs["q99"]], expected["q"], rtol=1e-5)
    for name in ("p85", "p95", "p99", "confidence", "rank_variance", "std"):
        np.testing.assert_allclose(products[name].values[usable], expected[name], atol=1e-4, err_msg=name)
    np.testing.assert_array_equal(products["class"].values[usable], expected["class"])
    np.testing.assert_array_equal(products["bivariate"].values[usable], expected["bivariate"])
    np.testing.assert_allclose(products["median"].sel(horizon=F).values[usable], expected["median"], atol=1e-4)
    assert np.isnan(products["std"].values[~usable]).all() and (products["class"].values[~usable] == 255).all()
    assert (np.bincount(expected["class"], minlength=4) > 0).all()          # every class occurs


def test_defaults_quarter_overlap_and_small_session_batches_on_cpu(cube, ensemble_dir):
    ensemble = load_ensemble(ensemble_dir)
    products = forecast_products(cube, **ensemble.settings)
    assert products.attrs["overlap"] == 2 == P // 4
    assert ensemble.active_providers == ["CPUExecutionProvider"] and ensemble.session_batch == 2
    x = np.random.default_rng(0).normal(size=(5, T, C, P, P)).astype(np.float32)
    np.testing.assert_array_equal(ensemble.predict(x), load_ensemble(ensemble_dir, batch_size=5).predict(x))
    with pytest.raises(InputError, match="batch_size must be at least 1"):
        load_ensemble(ensemble_dir, batch_size=0)


def test_numpy_dask_and_three_chunkings_agree(cube, ensemble_dir):
    ensemble = load_ensemble(ensemble_dir)
    reference = forecast_products(cube, overlap=P // 2, **ensemble.settings)
    for chunks in ({"y": 5, "x": 7}, {"y": 16, "x": 20}, {"y": 48, "x": 32}):         # 5 < P
        lazy = forecast_products(cube.chunk({"t": -1, **chunks}), overlap=P // 2, **ensemble.settings)
        for name in ("forecast", "median", "std", "class", "p95", "confidence", "bivariate"):
            xr.testing.assert_allclose(lazy[name].compute(), reference[name], atol=1e-6)
        assert lazy.attrs["q95"] == pytest.approx(reference.attrs["q95"], rel=1e-6)


@pytest.mark.parametrize("size", [(5, 5), (1, 40), (P - 1, 30)])
def test_a_dask_cube_smaller_than_a_patch_gives_the_numpy_products(cube, ensemble_dir, size):
    """A tile of a few points: Dask's overlap needs a region larger than its depth (P cells), so such a cube
    takes the numpy path instead of failing."""
    ensemble = load_ensemble(ensemble_dir)
    small = cube.isel(y=slice(0, size[0]), x=slice(0, size[1]))
    reference = forecast_products(small, **ensemble.settings)
    lazy = forecast_products(small.chunk({"t": -1, "y": 3, "x": 3}), **ensemble.settings)
    assert reference["median"].shape[1:] == size and np.isfinite(reference["median"].values).any()
    for name in ("median", "std", "class"):
        xr.testing.assert_allclose(lazy[name].compute(), reference[name], atol=1e-6)


def test_an_infinite_value_is_a_missing_one(cube):
    """A cube made elsewhere may hold inf (grid refuses it): the fits of the residual inputs saw it as a
    number (RuntimeWarnings from every matrix product); it is a missing value, as NaN is."""
    import warnings

    def reference(x):                 # members that keep the reference: the products are the fits'
        return np.zeros((2, len(x), F, P, P), np.float32)

    settings = dict(predict=reference, history=T, horizon_steps=F, patch=P, members=2, inputs="residual-hindcast",
                    norm={"input_mean": 0.0, "input_std": 1.0, "target_mean": 0.0, "target_std": 1.0})
    bad, missing = cube.copy(deep=True), cube.copy(deep=True)
    bad["displacement"][-3, 4, 5] = np.inf
    missing["displacement"][-3, 4, 5] = np.nan
    expected = forecast_products(missing, **settings)
    for given in (bad, bad.chunk({"t": -1, "y": 16, "x": 16})):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            products = forecast_products(given, **settings)
            products["median"].compute()
        assert np.isnan(products["median"].values[:, 4, 5]).all()
        assert products.attrs["q85"] == pytest.approx(expected.attrs["q85"], rel=1e-6)
        xr.testing.assert_allclose(products["median"].compute(), expected["median"], atol=1e-6)


def test_local_cluster_with_two_workers_gives_the_same_products(tiny_cube, cube, ensemble_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "insarcast", "forecast", str(tiny_cube), "--ensemble",
                           str(ensemble_dir), "--out", str(tmp_path / "p.zarr"), "--workers", "2", "--chunks", "20",
                           "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = xr.open_zarr(tmp_path / "p.zarr")
    reference = forecast_products(cube, **load_ensemble(ensemble_dir).settings)
    for name in ("median", "std", "class", "p85", "rank_variance"):
        xr.testing.assert_allclose(written[name].compute(), reference[name], atol=1e-6)
    assert written.attrs["q99"] == pytest.approx(reference.attrs["q99"], rel=1e-6)
    assert written.rio.crs.to_epsg() == 3035
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.zarr"], "the scratch store is removed"


def test_the_spatial_filter_asked_for_on_the_command_line_smooths_every_member(tiny_cube, cube, ensemble_dir,
                                                                                tmp_path):
    """The paper's inputs are unfiltered by default; --spatial-filter gives each member's map through the
    3 x 3 binomial kernel, over Dask chunks of 7 cells (< P) as over the whole cube, and says so."""
    from insarcast.udf.spatial import binomial_filter

    proc = _forecast_cli(tiny_cube, ensemble_dir, tmp_path / "p.zarr", "--chunks", "7", "--spatial-filter")
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = xr.open_zarr(tmp_path / "p.zarr")
    reference = forecast_products(cube, **load_ensemble(ensemble_dir).settings)
    assert reference.attrs["spatial_filter"] == "none" and written.attrs["spatial_filter"].startswith("binomial")
    np.testing.assert_allclose(written["forecast"].values, binomial_filter(reference["forecast"].values),
                               atol=1e-5)
    assert not np.allclose(written["forecast"].values, reference["forecast"].values, atol=1e-3, equal_nan=True)


def _forecast_cli(tiny_cube, ensemble_dir, out, *extra):
    return subprocess.run([sys.executable, "-m", "insarcast", "forecast", str(tiny_cube), "--ensemble",
                           str(ensemble_dir), "--out", str(out), "--workers", "1", "-q", *extra],
                          capture_output=True, text=True, timeout=300)


def test_forecast_with_given_thresholds_classes_by_them_and_reuses_a_stores(tiny_cube, cube, ensemble_dir, tmp_path):
    usable, expected = _by_hand(cube)
    m = np.abs(expected["median"])
    given = {"q85": 0.5, "q95": 2.0, "q99": 6.0, "std_tercile_1": 0.25, "std_tercile_2": 1.0}   # not this region's
    (tmp_path / "th.json").write_text(json.dumps(given))
    proc = _forecast_cli(tiny_cube, ensemble_dir, tmp_path / "a.zarr", "--thresholds", str(tmp_path / "th.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = xr.open_zarr(tmp_path / "a.zarr")
    assert {k: a.attrs[k] for k in given} == given and a.attrs["thresholds_source"] == "given"
    np.testing.assert_array_equal(a["class"].values[usable], np.digitize(m, [0.5, 2.0, 6.0]))
    np.testing.assert_allclose(a["p95"].values[usable], (np.abs(_members_at_f(cube)[:, usable]) >= 2.0).mean(0),
                               atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "th.json"], "one pass: no scratch store"
    proc = _forecast_cli(tiny_cube, ensemble_dir, tmp_path / "b.zarr", "--thresholds", str(tmp_path / "a.zarr"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "b.zarr")["class"].values, a["class"].values)

    (tmp_path / "bad.json").write_text(json.dumps({k: v for k, v in given.items() if k != "q99"}))
    proc = _forecast_cli(tiny_cube, ensemble_dir, tmp_path / "c.zarr", "--thresholds", str(tmp_path / "bad.json"))
    assert proc.returncode == 2 and "bad.json" in proc.stderr and "'q99'" in proc.stderr
    (tmp_path / "bad.json").write_text(json.dumps({**given, "q95": 9.0}))
    proc = _forecast_cli(tiny_cube, ensemble_dir, tmp_path / "c.zarr", "--thresholds", str(tmp_path / "bad.json"))
    assert proc.returncode == 2 and "q85 <= q95 <= q99" in proc.stderr
    assert not (tmp_path / "c.zarr").exists()


def test_materialised_forecasts_run_the_ensemble_once_with_the_same_products(cube, ensemble_dir):
    """The threshold pass and the products pass read the stored member forecasts: every window is
    predicted once instead of twice, and the products do not change."""
    ensemble = load_ensemble(ensemble_dir)
    calls = {"windows": 0}

    def counting(x):
        calls["windows"] += len(x)
        return ensemble.settings["predict"](x)

    settings = {**ensemble.settings, "predict": counting}
    lazy = cube.chunk({"t": -1, "y": 16, "x": 20})
    twice = forecast_products(lazy, overlap=P // 2, **settings)
    twice["class"].compute()
    both_passes = calls["windows"]
    calls["windows"] = 0
    once = forecast_products(lazy, overlap=P // 2, materialise=lambda fc: fc.persist(), **settings)
    once["class"].compute()
    assert calls["windows"] * 2 == both_passes
    for name in ("median", "class", "p95", "rank_variance"):
        xr.testing.assert_equal(once[name].compute(), twice[name].compute())


def _openeo_cube(cube):
    data = cube.displacement.where(cube.valid).astype(np.float32)
    return data.expand_dims(bands=["displacement"], axis=1).drop_vars("spatial_ref", errors="ignore")


def test_openeo_runner_gives_the_library_products(cube, ensemble_dir):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    from insarcast.udf.openeo_graph import udf_code
    from insarcast.udf.openeo_udf import band_names

    reference = forecast_products(cube, **load_ensemble(ensemble_dir).settings)
    thresholds = {k: reference.attrs[k] for k in ("q85", "q95", "q99", "std_tercile_1", "std_tercile_2")}
    context = {"ensemble": str(ensemble_dir), "thresholds": thresholds}
    result = run_udf_code(udf_code(), UdfData(datacube_list=[XarrayDataCube(_openeo_cube(cube))],
                                              user_context=context))
    out = result.get_datacube_list()[0].get_array()
    assert out.dims == ("bands", "y", "x") and out.dtype == np.float32
    assert list(out["bands"].values) == band_names(F)
    np.testing.assert_allclose(out.sel(bands="fc_h2").values, reference["median"].sel(horizon=2).values, atol=1e-6)
    np.testing.assert_allclose(out.sel(bands="p95").values, reference["p95"].values, atol=1e-6)
    cls = reference["class"].values
    np.testing.assert_array_equal(out.sel(bands="class").values, np.where(cls == 255, np.nan, cls))
    np.testing.assert_array_equal(out["y"].values, cube["y"].values)        # y stays descending


def _run_openeo(array, context):
    pytest.importorskip("openeo")                   # the openeo extra (not in the lowest-deps subset's extras)
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    from insarcast.udf.openeo_graph import udf_code

    result = run_udf_code(udf_code(), UdfData(datacube_list=[XarrayDataCube(array)], user_context=context))
    return result.get_datacube_list()[0].get_array()


@pytest.mark.parametrize("spatial_filter, halo", [(None, P - 1), (True, P)])
def test_openeo_tiles_with_a_halo_of_p_minus_1_give_the_whole_regions_products(cube, ensemble_dir, spatial_filter,
                                                                               halo):
    """apply_neighborhood by hand: 2 x 3 tiles (none a multiple of the tile stride), each with a halo
    of P - 1 cells (P with the spatial filter, context ``spatial_filter``), through the openEO runner;
    their cores put together are the library's products."""
    reference = forecast_products(cube, spatial_filter=spatial_filter, **load_ensemble(ensemble_dir).settings)
    thresholds = {k: reference.attrs[k] for k in ("q85", "q95", "q99", "std_tercile_1", "std_tercile_2")}
    context = {"ensemble": str(ensemble_dir), "thresholds": thresholds, "spatial_filter": spatial_filter}
    array = _openeo_cube(cube)
    ny, nx = array.sizes["y"], array.sizes["x"]
    rows, cols = [0, 21, ny], [0, 13, 35, nx]
    mosaic = None
    for y0, y1 in zip(rows[:-1], rows[1:]):
        for x0, x1 in zip(cols[:-1], cols[1:]):
            tile = array.isel(y=slice(max(0, y0 - halo), y1 + halo), x=slice(max(0, x0 - halo), x1 + halo))
            out = _run_openeo(tile, context)
            core = out.sel(y=array["y"].values[y0:y1], x=array["x"].values[x0:x1])
            mosaic = core if mosaic is None else mosaic.combine_first(core)
    mosaic = mosaic.reindex(y=array["y"], x=array["x"])
    np.testing.assert_array_equal(mosaic["y"].values, cube["y"].values)          # y descending throughout
    whole = _run_openeo(array, context)
    np.testing.assert_allclose(mosaic.values, whole.values, atol=1e-6, rtol=0)
    np.testing.assert_allclose(mosaic.sel(bands="fc_h1").values, reference["median"].sel(horizon=1).values,
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(mosaic.sel(bands="confidence").values, reference["confidence"].values, atol=1e-6)
    cls = reference["class"].values
    np.testing.assert_array_equal(mosaic.sel(bands="class").values, np.where(cls == 255, np.nan, cls))


def test_openeo_metadata_all_nan_tiles_and_a_mismatched_tile(cube, ensemble_dir):
    from openeo.metadata import Band, BandDimension, CubeMetadata, SpatialDimension, TemporalDimension

    from insarcast.udf.openeo_udf import apply_datacube, apply_metadata, band_names

    context = {"ensemble": str(ensemble_dir),
               "thresholds": {"q85": 1.0, "q95": 2.0, "q99": 3.0, "std_tercile_1": 0.1, "std_tercile_2": 0.2}}
    metadata = CubeMetadata([SpatialDimension("x", [0, 1]), SpatialDimension("y", [0, 1]),
                             TemporalDimension("t", ["2020-01-01", "2021-01-01"]),
                             BandDimension("bands", [Band("displacement")])])
    assert apply_metadata(metadata, context).band_names == band_names(F)
    array = _openeo_cube(cube)
    nan_tile = array.isel(y=slice(0, 12), x=slice(0, 12)) * np.nan           # e.g. a tile over water
    out = _run_openeo(nan_tile, context)
    assert out.dims == ("bands", "y", "x") and out.shape == (len(band_names(F)), 12, 12)
    assert out.dtype == np.float32 and np.isnan(out.values).all()
    with pytest.raises(InputError, match="epoch spacing 12 days differs from the ensemble's 6"):
        apply_datacube(array.isel(t=slice(None, None, 2)), context)
    with pytest.raises(InputError, match="no band 'velocity'"):
        apply_datacube(array, {**context, "band": "velocity"})


def test_openeo_udf_refuses_unnamed_dims_and_missing_thresholds(cube, ensemble_dir):
    from insarcast.udf.openeo_udf import apply_datacube

    array = _openeo_cube(cube)
    with pytest.raises(InputError, match="unnamed"):
        apply_datacube(xr.DataArray(array.values), {"ensemble": str(ensemble_dir), "thresholds": {}})
    with pytest.raises(InputError, match="thresholds"):
        apply_datacube(array, {"ensemble": str(ensemble_dir)})
    with pytest.raises(InputError, match="fewer than the model's history"):
        apply_datacube(array.isel(t=slice(0, T - 1)), {"ensemble": str(ensemble_dir), "thresholds": {
            "q85": 1.0, "q95": 2.0, "q99": 3.0, "std_tercile_1": 0.1, "std_tercile_2": 0.2}})


def test_openeo_udf_in_the_graphs_form_keeps_its_dims_and_gives_the_same_products(cube, ensemble_dir):
    """The graph sends (bands, y, x), one band per epoch labelled by its date (apply_dimension t -> bands,
    rename_labels); the UDF returns the same dims, only the band labels changed, and the same products."""
    reference = forecast_products(cube, **load_ensemble(ensemble_dir).settings)
    thresholds = {k: reference.attrs[k] for k in ("q85", "q95", "q99", "std_tercile_1", "std_tercile_2")}
    context = {"ensemble": str(ensemble_dir), "thresholds": thresholds}
    array = _openeo_cube(cube)
    with_t = _run_openeo(array, context)
    dates = [str(t)[:10] for t in array["t"].values.astype("datetime64[D]")]
    banded = array.isel(bands=0, drop=True).rename(t="bands").assign_coords(bands=dates)
    out = _run_openeo(banded.transpose("bands", "y", "x"), context)
    assert out.dims == ("bands", "y", "x") and out.dtype == np.float32
    xr.testing.assert_equal(out, with_t)
    with pytest.raises(InputError, match="epochs' dates as band labels"):
        from insarcast.udf.openeo_udf import apply_datacube
        apply_datacube(banded.assign_coords(bands=[f"b{i}" for i in range(len(dates))]), context)


@pytest.mark.parametrize("change,message", [
    ({"spacing": 50.0}, "grid spacing 100 m differs"),
    ({"crs": "EPSG:32632"}, "CRS"),
    ({"epoch_days": 12.0}, "epoch spacing 6 days differs"),
])
def test_forecast_refuses_a_cube_that_does_not_match_the_ensemble(tiny_cube, tmp_path, change, message):
    folder = write_linear_ensemble(tmp_path / "e", **change)
    proc = subprocess.run([sys.executable, "-m", "insarcast", "forecast", str(tiny_cube), "--ensemble",
                           str(folder), "--out", str(tmp_path / "p.zarr"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "p.zarr").exists()


def test_forecast_refuses_a_damaged_ensemble_and_a_short_cube(tiny_cube, cube, tmp_path):
    folder = write_linear_ensemble(tmp_path / "e")
    (folder / "member_01.onnx").write_bytes(b"broken")
    proc = subprocess.run([sys.executable, "-m", "insarcast", "forecast", str(tiny_cube), "--ensemble",
                           str(folder), "--out", str(tmp_path / "p.zarr"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 2 and "member_01.onnx" in proc.stderr and "checksum" in proc.stderr
    assert not (tmp_path / "p.zarr").exists()
    ensemble = load_ensemble(write_linear_ensemble(tmp_path / "ok"))
    with pytest.raises(InputError, match="fewer than the model's history"):
        forecast_products(cube.isel(t=slice(0, T - 1)), overlap=P // 2, **ensemble.settings)
    with pytest.raises(InputError, match="no valid pixel"):
        forecast_products(cube.displacement * np.nan, overlap=P // 2, **ensemble.settings)


def test_forecast_refuses_a_horizon_beyond_the_ensembles_naming_the_option(tiny_cube, tmp_path):
    from insarcast.udf.run import forecast_cube

    folder = write_linear_ensemble(tmp_path / "e")
    with pytest.raises(InputError, match=rf"option --horizon: must be at most the ensemble's horizon F = {F}, "
                                         rf"got {F + 1}"):
        forecast_cube(tiny_cube, folder, tmp_path / "p.zarr", horizon=F + 1)
    with pytest.raises(InputError, match="option --horizon: must be at least 1, got 0"):
        forecast_cube(tiny_cube, folder, tmp_path / "p.zarr", horizon=0)
    assert not (tmp_path / "p.zarr").exists()


def _cube_zarr(ds, path):
    ds = ds.copy()
    for variable in ds.variables.values():
        variable.encoding.clear()
    ds.to_zarr(path, zarr_format=2, consolidated=True)
    return path


@pytest.mark.parametrize("case, message", [
    ("all NaN", "no valid pixel: no pixel is finite at each of the last 6 epochs"),
    ("none marked valid", "no valid pixel: 1 pixel(s) are finite at each of the last 6 epochs, 0 are marked valid"),
    ("fewer epochs than T", "fewer than the model's history T = 6"),
    ("unnamed dims", "expected dims ('t', 'y', 'x')"),
    ("y spacing", "grid spacing 50 m differs from the ensemble's 100 m (along y)"),
])
def test_forecast_refuses_bad_cubes_before_any_work_and_writes_nothing(cube, ensemble_dir, tmp_path, case, message):
    ds = cube.copy()
    if case == "all NaN":         # and so no cell valid: NaN where 'valid' says finite reads as a lost chunk
        ds["displacement"] = ds["displacement"] * np.nan
        ds["valid"] = ds["valid"] & False
    elif case == "none marked valid":       # one finite pixel, and 'valid' (the whole record) false everywhere
        ds["displacement"] = ds["displacement"].where((ds["y"] == ds["y"][3]) & (ds["x"] == ds["x"][4]))
        ds["valid"] = ds["valid"] & False
    elif case == "fewer epochs than T":
        ds = ds.isel(t=slice(0, T - 1))
    elif case == "unnamed dims":
        ds = xr.Dataset({"displacement": xr.DataArray(ds["displacement"].values)})
    else:
        ds = ds.assign_coords(y=ds["y"].values[0] - 50.0 * np.arange(ds.sizes["y"]))
    path = _cube_zarr(ds, tmp_path / "bad.zarr")
    proc = subprocess.run([sys.executable, "-m", "insarcast", "forecast", str(path), "--ensemble",
                           str(ensemble_dir), "--out", str(tmp_path / "p.zarr"), "-q"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zarr"]          # nothing written, no staging


def test_the_cuda_provider_is_used_when_onnxruntime_offers_it(ensemble_dir, tmp_path, monkeypatch):
    """onnxruntime-gpu on a GPU machine offers CUDAExecutionProvider: every session asks for it first."""
    import onnxruntime

    from insarcast.udf import ensemble as ensemble_module
    from insarcast.udf.run import EnsemblePredictor

    real = onnxruntime.InferenceSession
    asked = []

    class Recording:
        """A CPU session that records the providers it was asked for and reports CUDA as active."""

        def __init__(self, data, sess_options=None, providers=None):
            asked.append(list(providers))
            self._session = real(data, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def __getattr__(self, name):
            return getattr(self._session, name)

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", Recording)
    assert ensemble_module.ensemble_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    folder = write_linear_ensemble(tmp_path / "gpu")
    predictor = EnsemblePredictor(folder, threads=1)            # what forecast workers and the openEO UDF use
    ens = predictor.ensemble()
    assert asked == [["CUDAExecutionProvider", "CPUExecutionProvider"]] * len(COEFFICIENTS)
    assert ens.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ens.active_providers[0] == "CUDAExecutionProvider"
    assert ens.session_batch == 64                               # a GPU wants large batches
    assert predictor(np.zeros((3, T, C, P, P), np.float32)).shape == (len(COEFFICIENTS), 3, F, P, P)

    # a GPU build that cannot start CUDA falls back to the CPU, and says so
    Recording.get_providers = lambda self: ["CPUExecutionProvider"]
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider was asked for but onnxruntime could not start"):
        load_ensemble(write_linear_ensemble(tmp_path / "fallback"), cache=False)
    # without CUDA on offer, the CPU alone
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    asked.clear()
    assert load_ensemble(folder, cache=False).providers == ["CPUExecutionProvider"]
    assert asked and all(a == ["CPUExecutionProvider"] for a in asked)


def test_the_udf_runs_from_a_shipped_folder_without_an_installed_insarcast_or_torch(cube, ensemble_dir, tmp_path):
    """What the README's openEO shipping does: the insarcast package in a folder named in
    context['python_path'], on a backend where insarcast is not installed and torch is absent."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    deps = tmp_path / "insarcast-deps"
    shutil.copytree(root / "src" / "insarcast", deps / "insarcast", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "udf", deps / "insarcast" / "udf", ignore=shutil.ignore_patterns("__pycache__"))
    array = _openeo_cube(cube).isel(y=slice(0, 20), x=slice(0, 24))
    array.to_netcdf(tmp_path / "tile.nc")
    reference = forecast_products(cube, overlap=P // 2, **load_ensemble(ensemble_dir).settings)
    thresholds = {k: reference.attrs[k] for k in ("q85", "q95", "q99", "std_tercile_1", "std_tercile_2")}
    script = """
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed here (blocked by the test)")

# the development install's finder is a class on sys.meta_path: drop it, so insarcast is not installed
sys.meta_path[:] = [NoTorch()] + [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
try:
    import insarcast
except ImportError:
    pass
else:
    raise SystemExit("insarcast is still importable from " + str(insarcast.__file__))

import xarray
from openeo.udf import UdfData, XarrayDataCube, run_udf_code

udf, tile, context = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
array = xarray.open_dataarray(tile).load()
result = run_udf_code(open(udf).read(), UdfData(datacube_list=[XarrayDataCube(array)], user_context=context))
out = result.get_datacube_list()[0].get_array()
import insarcast
assert insarcast.__file__.startswith(context["python_path"][0]), insarcast.__file__
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
out.to_netcdf(sys.argv[4])
print("OK", out.dims, out.shape)
"""
    context = {"ensemble": str(ensemble_dir), "thresholds": thresholds, "python_path": [str(deps)]}
    done = subprocess.run([sys.executable, "-c", script, str(root / "udf" / "openeo_udf.py"), str(tmp_path / "tile.nc"),
                           json.dumps(context), str(tmp_path / "out.nc")], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("OK ('bands', 'y', 'x')")
    out = xr.open_dataarray(tmp_path / "out.nc").load()
    direct = _run_openeo(array, {k: v for k, v in context.items() if k != "python_path"})
    np.testing.assert_array_equal(out.values, direct.values)


_SHIPPED_UDF = """
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed here (blocked by the test)")

sys.meta_path[:] = [NoTorch()] + [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if "/src" not in p and not p.endswith("wt17") and p != ""]
try:
    import insarcast
except ImportError:
    pass
else:
    raise SystemExit("insarcast is still importable from " + str(insarcast.__file__))

import xarray
from openeo.udf import UdfData, XarrayDataCube, run_udf_code

udf, tile, context = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
array = xarray.open_dataarray(tile).load()
result = run_udf_code(udf, UdfData(datacube_list=[XarrayDataCube(array)], user_context=context))
out = result.get_datacube_list()[0].get_array()
import insarcast
assert insarcast.__file__.startswith(context["python_path"][0]), insarcast.__file__
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
out.to_netcdf(sys.argv[4])
print("OK", out.dims, out.shape)
"""


def test_openeo_build_writes_an_archive_whose_udf_gives_the_local_products(tiny_cube, ensemble_dir, tmp_path):
    """publish-cube, forecast (thresholds), openeo build; the archive unpacked where a backend would, the
    UDF run by openeo's run_udf_code from the graph, with insarcast not installed and torch blocked."""
    import zipfile
    from pathlib import Path

    from click.testing import CliRunner

    from insarcast.cli import main

    small = open_cube(tiny_cube)[["displacement", "valid"]].isel(t=slice(-8, None), y=slice(0, 20),
                                                                 x=slice(0, 24)).load()
    for variable in small.variables.values():
        variable.encoding = {}
    small.to_zarr(tmp_path / "cube.zarr")
    runner = CliRunner()
    done = runner.invoke(main, ["publish-cube", str(tmp_path / "cube.zarr"), "--out", str(tmp_path / "cat"), "-q"])
    assert done.exit_code == 0, done.output
    reference = forecast_products(small, **load_ensemble(ensemble_dir).settings)
    thresholds = {k: float(reference.attrs[k]) for k in ("q85", "q95", "q99", "std_tercile_1", "std_tercile_2")}
    (tmp_path / "thresholds.json").write_text(json.dumps(thresholds))
    collection = done.stdout.strip()
    done = runner.invoke(main, ["openeo", "build", "--cube-stac", collection, "--ensemble", str(ensemble_dir),
                                "--bbox", "4058000", "3082000", "4083600", "3101200", "--thresholds-from",
                                str(tmp_path / "thresholds.json"), "--archive-url", "https://example.org/u.zip",
                                "--out", str(tmp_path / "job"), "-q"])
    assert done.exit_code == 0, done.output
    job = tmp_path / "job"
    options = json.loads((job / "job_options.json").read_text())
    assert options["udf-dependency-archives"] == ["https://example.org/u.zip#insarcast-udf"]
    from insarcast.udf.openeo_job import UDF_PEAK_MIB, UDF_PEAK_MIB_PER_EPOCH

    # the job asks for the memory of the cube's epochs: 1.5 x (461 + 1.6 per epoch beyond 12), at least
    epochs = len(json.loads((job / "job.json").read_text())["epochs"])
    assert options["python-memory"].endswith("m") and int(options["python-memory"][:-1]) >= 1.5 * (
        UDF_PEAK_MIB + UDF_PEAK_MIB_PER_EPOCH * max(0, epochs - 12))
    graph = json.loads((job / "process_graph.json").read_text())
    statistics = json.loads((job / "statistics_graph.json").read_text())["process_graph"]
    definitions = Path(__file__).resolve().parents[2] / "shared" / "openeo-processes"
    if definitions.is_dir():                               # the graphs the command wrote, checked offline
        from insarcast.udf.openeo_processes import validate_graph

        validate_graph(graph, definitions=definitions)
        validate_graph({"process_graph": statistics}, definitions=definitions)
    assert statistics["applyneighborhood1"]["arguments"]["process"]["process_graph"]["runudf1"]["arguments"][
        "context"]["stage"] == "statistics"
    labels = graph["process_graph"]["renamelabels1"]["arguments"]["target"]
    assert labels == [str(t)[:10] for t in small["t"].values.astype("datetime64[D]")]
    assert graph["process_graph"]["loadstac1"]["arguments"]["url"] == collection
    names = zipfile.ZipFile(job / "insarcast-udf.zip").namelist()
    assert "insarcast/udf/forecast.py" in names and "ensemble/ensemble.json" in names
    assert "insarcast/udf/corrections/synthetic-T12-F6-P16.json" in names   # what residual-corrected reads
    assert not [n for n in names if n.startswith(("insarcast/training", "insarcast/stac", "insarcast/report"))]
    workdir = tmp_path / "backend"
    zipfile.ZipFile(job / "insarcast-udf.zip").extractall(workdir / "insarcast-udf")
    run_udf = graph["process_graph"]["applyneighborhood1"]["arguments"]["process"]["process_graph"]["runudf1"]
    context = dict(run_udf["arguments"]["context"])
    context["python_path"] = [str(workdir / p) for p in context["python_path"]]
    banded = _openeo_cube(small).isel(bands=0, drop=True).rename(t="bands").assign_coords(bands=labels)
    banded.transpose("bands", "y", "x").to_netcdf(tmp_path / "tile.nc")
    done = subprocess.run([sys.executable, "-c", _SHIPPED_UDF, run_udf["arguments"]["udf"], str(tmp_path / "tile.nc"),
                           json.dumps(context), str(tmp_path / "out.nc")], capture_output=True, text=True,
                          timeout=120, cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    out = xr.open_dataarray(tmp_path / "out.nc").load()
    assert out.dims == ("bands", "y", "x")
    np.testing.assert_allclose(out.sel(bands="fc_h1").values, reference["median"].sel(horizon=1).values, atol=1e-6)
    cls = reference["class"].values
    np.testing.assert_array_equal(out.sel(bands="class").values, np.where(cls == 255, np.nan, cls))
    np.testing.assert_allclose(out.sel(bands="p95").values, reference["p95"].values, atol=1e-6)


def test_the_backend_only_statistics_job_gives_the_exact_thresholds_of_forecast(cube, ensemble_dir):
    """Job 1 (stage "statistics") tile by tile with a halo of P - 1, as apply_neighborhood would; the
    thresholds from its m_abs and std equal `insarcast forecast`'s over the whole region, exactly; job 2
    (the products) with them gives forecast's products."""
    from insarcast.udf.openeo_thresholds import thresholds_from_statistics
    from insarcast.udf.openeo_udf import apply_metadata

    settings = load_ensemble(ensemble_dir).settings
    reference = forecast_products(cube, **settings)
    array = _openeo_cube(cube)
    dates = [str(t)[:10] for t in array["t"].values.astype("datetime64[D]")]
    banded = array.isel(bands=0, drop=True).rename(t="bands").assign_coords(bands=dates).transpose("bands", "y", "x")
    context = {"ensemble": str(ensemble_dir), "stage": "statistics"}
    ny, nx, halo = banded.sizes["y"], banded.sizes["x"], P - 1
    cores = []
    for y0, y1 in ((0, 21), (21, ny)):
        for x0, x1 in ((0, 13), (13, 35), (35, nx)):
            tile = banded.isel(y=slice(max(0, y0 - halo), y1 + halo), x=slice(max(0, x0 - halo), x1 + halo))
            out = _run_openeo(tile, context)
            assert out.dims == ("bands", "y", "x") and list(out["bands"].values) == ["m_abs", "std"]
            core = out.sel(y=banded["y"].values[y0:y1], x=banded["x"].values[x0:x1])
            cores.append((core.sel(bands="m_abs").values, core.sel(bands="std").values))
    thresholds = thresholds_from_statistics(cores).to_dict()
    assert thresholds == {k: reference.attrs[k] for k in thresholds}                      # exactly
    products = _run_openeo(banded, {"ensemble": str(ensemble_dir), "thresholds": thresholds})
    cls = reference["class"].values
    np.testing.assert_array_equal(products.sel(bands="class").values, np.where(cls == 255, np.nan, cls))
    from openeo.metadata import Band, BandDimension, CubeMetadata

    metadata = CubeMetadata([BandDimension("bands", [Band(d) for d in dates])])
    assert apply_metadata(metadata, context).band_names == ["m_abs", "std"]


_CLEAN_UDF = """
import json, sys
import numpy as np, xarray
from openeo.udf import UdfData, XarrayDataCube, run_udf_code
spec = json.load(open(sys.argv[1]))
tile = xarray.DataArray(np.load(sys.argv[2]), dims=("bands", "y", "x"),
                        coords={"bands": spec["bands"], "y": spec["y"], "x": spec["x"]})
result = run_udf_code(spec["udf"], UdfData(datacube_list=[XarrayDataCube(tile)], user_context=spec["context"]))
out = result.get_datacube_list()[0].get_array()
import insarcast
assert insarcast.__file__.startswith(spec["context"]["python_path"][0]), insarcast.__file__
assert "torch" not in sys.modules
np.save(sys.argv[3], out.transpose("bands", "y", "x").values)
print(json.dumps(list(map(str, out["bands"].values))))
"""


@pytest.mark.slow
def test_the_archive_runs_in_a_clean_venv_with_only_numpy_xarray_onnxruntime_and_openeo(
        tiny_cube, ensemble_dir, tmp_path):
    """A fresh virtual environment (pip install numpy xarray onnxruntime openeo: no insarcast, no torch),
    the archive of `openeo build` unpacked as a backend would, the UDF run by run_udf_code from the
    graph's context: the products equal the local ones. Skipped when pip cannot install the four."""
    import venv
    import zipfile

    from insarcast.udf.openeo_job import build_job

    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy", "xarray", "onnxruntime", "openeo"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        pytest.skip(f"pip could not install numpy, xarray, onnxruntime, openeo here: {done.stderr[-300:]}")
    small = open_cube(tiny_cube)[["displacement", "valid"]].isel(t=slice(-8, None), y=slice(0, 20),
                                                                 x=slice(0, 24)).load()
    reference = forecast_products(small, **load_ensemble(ensemble_dir).settings)
    thresholds = {k: float(reference.attrs[k]) for k in ("q85", "q95", "q99", "std_tercile_1", "std_tercile_2")}
    dates = [str(t)[:10] for t in small["t"].values.astype("datetime64[D]")]
    collection = tmp_path / "collection.json"
    collection.write_text(json.dumps({"type": "Collection", "cube:dimensions": {
        "t": {"type": "temporal", "values": dates}, "x": {"type": "spatial", "reference_system": 3035}}}))
    job = build_job(cube_stac=str(collection), ensemble=ensemble_dir, bbox=(0, 0, 1, 1), thresholds=thresholds,
                    archive_url="https://example.org/u.zip", out=tmp_path / "job")
    backend = tmp_path / "backend"
    zipfile.ZipFile(job / "insarcast-udf.zip").extractall(backend / "insarcast-udf")
    graph = json.loads((job / "process_graph.json").read_text())["process_graph"]
    run_udf = graph["applyneighborhood1"]["arguments"]["process"]["process_graph"]["runudf1"]["arguments"]
    context = {**run_udf["context"], "python_path": [str(backend / "insarcast-udf")]}
    banded = _openeo_cube(small).isel(bands=0, drop=True).transpose("t", "y", "x")
    np.save(tmp_path / "tile.npy", banded.values)
    (tmp_path / "spec.json").write_text(json.dumps({
        "udf": run_udf["udf"], "context": context, "bands": dates,
        "y": banded["y"].values.tolist(), "x": banded["x"].values.tolist()}))
    done = subprocess.run([str(python), "-c", _CLEAN_UDF, str(tmp_path / "spec.json"), str(tmp_path / "tile.npy"),
                           str(tmp_path / "out.npy")], capture_output=True, text=True, timeout=300, cwd=backend)
    assert done.returncode == 0, done.stderr[-3000:]
    from insarcast.udf.openeo_udf import band_names

    ens = load_ensemble(ensemble_dir)
    # the products graph asks for the members (and, for residual inputs, the error scale) too
    assert context.get("member_bands") is True
    expected = band_names(F, len(ens.members), ens.inputs != "paper")
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected
    out = np.load(tmp_path / "out.npy")
    local = _run_openeo(_openeo_cube(small), {"ensemble": str(ensemble_dir), "thresholds": thresholds,
                                              "member_bands": True})
    np.testing.assert_array_equal(out, local.values)
    cls = reference["class"].values
    np.testing.assert_array_equal(out[band_names(F).index("class")], np.where(cls == 255, np.nan, cls))
