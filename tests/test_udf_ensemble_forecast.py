"""The ensemble UDF end to end: hand-built ONNX members, Dask chunkings, LocalCluster, openEO, bad input."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from insarcast.cube import open_cube  # noqa: E402
from insarcast.errors import InputError  # noqa: E402
from insarcast.udf.ensemble import load_ensemble  # noqa: E402
from insarcast.udf.forecast import forecast_products  # noqa: E402

T, F, P, C = 6, 3, 8, 2
NORM = {"input_mean": 0.5, "input_std": 4.0, "target_mean": -1.0, "target_std": 3.0}
COEFFICIENTS = (0.2, -0.5, 0.9, 1.4, -1.1)


def _linear_member(c: float) -> bytes:
    """forecast[b, f] = c * (f + 1) * history[b, 0, 0]: the first epoch's relative displacement, scaled."""
    x = helper.make_tensor_value_info("history", TensorProto.FLOAT, ["batch", T, C, P, P])
    y = helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["batch", F, P, P])
    inits = [numpy_helper.from_array(np.array(v, np.int64), name) for name, v in
             (("starts", [0, 0]), ("ends", [1, 1]), ("axes", [1, 2]), ("shape", [-1, 1, P, P]))]
    inits.append(numpy_helper.from_array((c * np.arange(1, F + 1, dtype=np.float32)).reshape(1, F, 1, 1), "scale"))
    nodes = [helper.make_node("Slice", ["history", "starts", "ends", "axes"], ["first"]),
             helper.make_node("Reshape", ["first", "shape"], ["frame"]),
             helper.make_node("Mul", ["frame", "scale"], ["forecast"])]
    graph = helper.make_graph(nodes, "linear", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_linear_ensemble(folder, coefficients=COEFFICIENTS, *, spacing=100.0, crs="EPSG:3035", epoch_days=6.0):
    folder.mkdir(parents=True, exist_ok=True)
    members = []
    for k, c in enumerate(coefficients):
        data = _linear_member(c)
        name = f"member_{k:02d}.onnx"
        (folder / name).write_bytes(data)
        members.append({"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                        "arch": "linear", "trial": k, "run_seed": 0, "strategy": "tpe", "val_loss": 1.0 + k,
                        "hyperparameters": {"model": {"history": T, "horizon": F, "patch": P, "channels": C},
                                            "train": {}},
                        "exporter": "onnx.helper", "parity_max_abs": 0.0})
    manifest = {
        "format": "insarcast-ensemble", "format_version": 1, "name": "linear-test", "architecture": "linear",
        "framework": "onnx", "framework_version": onnx.__version__, "opset": 18, "created": "2026-01-01T00:00:00Z",
        "versions": {}, "history": T, "horizon": F, "patch": P, "channels": C,
        "channel_names": ["displacement_relative_to_last", "valid"], "normalisation": NORM,
        "grid": {"spacing": spacing, "crs": crs}, "epoch_days": epoch_days,
        "input": {"name": "history", "dtype": "float32", "shape": [-1, T, C, P, P],
                  "dims": ["batch", "time", "channel", "y", "x"]},
        "output": {"name": "forecast", "dtype": "float32", "shape": [-1, F, P, P],
                   "dims": ["batch", "horizon", "y", "x"], "units": "normalised"},
        "members": members,
    }
    (folder / "ensemble.json").write_text(json.dumps(manifest, indent=1))
    return folder


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory):
    return write_linear_ensemble(tmp_path_factory.mktemp("ens") / "ensemble")


@pytest.fixture(scope="module")
def cube(tiny_cube):
    return open_cube(tiny_cube)[["displacement", "valid"]].load()


def _by_hand(cube):
    """The paper's section 4.4 formulas, straight from the cube and the member coefficients."""
    d = cube.displacement.values.astype(np.float64)
    usable = cube.valid.values & np.isfinite(d[-T:]).all(0)
    x0 = np.where(usable, (d[-T] - d[-1] - NORM["input_mean"]) / NORM["input_std"], 0.0)
    dk = np.stack([c * F * x0 * NORM["target_std"] + NORM["target_mean"] for c in COEFFICIENTS])  # horizon F
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


def test_numpy_dask_and_three_chunkings_agree(cube, ensemble_dir):
    ensemble = load_ensemble(ensemble_dir)
    reference = forecast_products(cube, overlap=P // 2, **ensemble.settings)
    for chunks in ({"y": 5, "x": 7}, {"y": 16, "x": 20}, {"y": 48, "x": 32}):         # 5 < P
        lazy = forecast_products(cube.chunk({"t": -1, **chunks}), overlap=P // 2, **ensemble.settings)
        for name in ("forecast", "median", "std", "class", "p95", "confidence", "bivariate"):
            xr.testing.assert_allclose(lazy[name].compute(), reference[name], atol=1e-6)
        assert lazy.attrs["q95"] == pytest.approx(reference.attrs["q95"], rel=1e-6)


def test_local_cluster_with_two_workers_gives_the_same_products(tiny_cube, cube, ensemble_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "insarcast", "forecast", "--cube", str(tiny_cube), "--ensemble",
                           str(ensemble_dir), "--out", str(tmp_path / "p.zarr"), "--workers", "2", "--chunks", "20",
                           "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = xr.open_zarr(tmp_path / "p.zarr")
    reference = forecast_products(cube, overlap=P // 2, **load_ensemble(ensemble_dir).settings)
    for name in ("median", "std", "class", "p85", "rank_variance"):
        xr.testing.assert_allclose(written[name].compute(), reference[name], atol=1e-6)
    assert written.attrs["q99"] == pytest.approx(reference.attrs["q99"], rel=1e-6)
    assert written.rio.crs.to_epsg() == 3035


def _openeo_cube(cube):
    data = cube.displacement.where(cube.valid).astype(np.float32)
    return data.expand_dims(bands=["displacement"], axis=1).drop_vars("spatial_ref", errors="ignore")


def test_openeo_runner_gives_the_library_products(cube, ensemble_dir):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    from insarcast.udf.openeo_graph import udf_code
    from insarcast.udf.openeo_udf import band_names

    reference = forecast_products(cube, overlap=P // 2, **load_ensemble(ensemble_dir).settings)
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


def test_openeo_udf_refuses_unnamed_dims_and_missing_thresholds(cube, ensemble_dir):
    from insarcast.udf.openeo_udf import apply_datacube

    array = _openeo_cube(cube)
    with pytest.raises(InputError, match="unnamed"):
        apply_datacube(xr.DataArray(array.values), {"ensemble": str(ensemble_dir), "thresholds": {}})
    with pytest.raises(InputError, match="thresholds"):
        apply_datacube(array, {"ensemble": str(ensemble_dir)})


def test_process_graph_is_built_offline():
    pytest.importorskip("openeo")
    from insarcast.udf.openeo_graph import process_graph

    graph = process_graph(collection="EGMS_L3_U", bbox=(4058000, 3082000, 4083600, 3101200),
                          ensemble="/data/ensemble", thresholds={"q85": 1.0}, patch=32)["process_graph"]
    neighbourhood = next(n for n in graph.values() if n["process_id"] == "apply_neighborhood")
    assert neighbourhood["arguments"]["overlap"][0]["value"] == 16
    udf = next(iter(neighbourhood["arguments"]["process"]["process_graph"].values()))
    assert udf["process_id"] == "run_udf" and "def apply_datacube(cube: xarray.DataArray" in udf["arguments"]["udf"]


@pytest.mark.parametrize("change,message", [
    ({"spacing": 50.0}, "grid spacing 100 m differs"),
    ({"crs": "EPSG:32632"}, "CRS"),
    ({"epoch_days": 12.0}, "epoch spacing 6 days differs"),
])
def test_forecast_refuses_a_cube_that_does_not_match_the_ensemble(tiny_cube, tmp_path, change, message):
    folder = write_linear_ensemble(tmp_path / "e", **change)
    proc = subprocess.run([sys.executable, "-m", "insarcast", "forecast", "--cube", str(tiny_cube), "--ensemble",
                           str(folder), "--out", str(tmp_path / "p.zarr"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "p.zarr").exists()


def test_forecast_refuses_a_damaged_ensemble_and_a_short_cube(tiny_cube, cube, tmp_path):
    folder = write_linear_ensemble(tmp_path / "e")
    (folder / "member_01.onnx").write_bytes(b"broken")
    proc = subprocess.run([sys.executable, "-m", "insarcast", "forecast", "--cube", str(tiny_cube), "--ensemble",
                           str(folder), "--out", str(tmp_path / "p.zarr"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 2 and "member_01.onnx" in proc.stderr and "checksum" in proc.stderr
    assert not (tmp_path / "p.zarr").exists()
    ensemble = load_ensemble(write_linear_ensemble(tmp_path / "ok"))
    with pytest.raises(InputError, match="fewer than the model's history"):
        forecast_products(cube.isel(t=slice(0, T - 1)), overlap=P // 2, **ensemble.settings)
    with pytest.raises(InputError, match="no valid pixel"):
        forecast_products(cube.displacement * np.nan, overlap=P // 2, **ensemble.settings)
