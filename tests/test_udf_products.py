"""The UDF core: model inputs, tiled blended forecast (numpy and Dask) and the section 4.4 products.

Expected numbers are worked out by hand in the comments; nothing here re-derives them with the code
under test.
"""

import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from insarcast.errors import InputError
from insarcast.udf.forecast import forecast_products
from insarcast.udf.inputs import CHANNELS, denormalise, history_inputs
from insarcast.udf.products import PRODUCTS, Thresholds, products, thresholds
from insarcast.udf.tiling import blend_window, forecast_block, tile_origins

T, F, P, K = 4, 3, 8, 4
NORM = {"input_mean": 0.25, "input_std": 2.0, "target_mean": -0.5, "target_std": 3.0}
SPACING = np.timedelta64(6, "D")

# ---------------------------------------------------------------- hand-made ensemble
# Six pixels in a 2 x 3 grid, four members each (mm); the last pixel is not valid.
#   A [1, 2, 3, 4]      median  2.5   |d| 1 2 3 4      std sqrt(1.25)  = 1.118034
#   B [-1, -1, -2, -2]  median -1.5   |d| 1 1 2 2      std 0.5
#   C [0, 0, 1, 1]      median  0.5   |d| 0 0 1 1      std 0.5
#   D [10, 12, 8, 6]    median  9     |d| 10 12 8 6    std sqrt(5)     = 2.236068
#   E [-20, -4, 6, 30]  median  1     |d| 20 4 6 30    std sqrt(113)   = 10.630146
MEMBERS = np.array([
    [1, -1, 0, 10, -20, np.nan],
    [2, -1, 0, 12, -4, np.nan],
    [3, -2, 1, 8, 6, np.nan],
    [4, -2, 1, 6, 30, np.nan],
], np.float32).reshape(K, 2, 3)


def test_thresholds_are_linear_quantiles_of_the_valid_pixels():
    # |m| sorted 0.5 1 1.5 2.5 9 (n = 5): Q85 at 3.4 -> 2.5 + 0.4 * 6.5 = 5.1, Q95 at 3.8 -> 7.7,
    # Q99 at 3.96 -> 8.74. std sorted 0.5 0.5 1.118034 2.236068 10.630146: tercile 1 at 4/3 ->
    # 0.5 + (1/3)(0.618034) = 0.706011, tercile 2 at 8/3 -> 1.118034 + (2/3)(1.118034) = 1.863390.
    m_abs = np.array([[2.5, 1.5, 0.5], [9.0, 1.0, np.nan]])
    std = np.array([[np.sqrt(1.25), 0.5, 0.5], [np.sqrt(5), np.sqrt(113), np.nan]])
    th = thresholds(m_abs, std)
    assert th.q85 == pytest.approx(5.1) and th.q95 == pytest.approx(7.7) and th.q99 == pytest.approx(8.74)
    assert th.std_tercile_1 == pytest.approx(0.706011, abs=1e-6)
    assert th.std_tercile_2 == pytest.approx(1.863390, abs=1e-6)


def test_products_with_computed_thresholds_by_hand():
    th = Thresholds(q85=5.1, q95=7.7, q99=8.74, std_tercile_1=0.706011, std_tercile_2=1.863390)
    out = products(MEMBERS, th)
    nan = np.nan
    # classes by |m|: A, B, C, E below Q85 -> Low; D 9 >= 8.74 -> Highest.
    np.testing.assert_array_equal(out["class"], [[0, 0, 0], [3, 0, 255]])
    # D: |d| 10 12 8 6 -> >=5.1: 4, >=7.7: 3, >=8.74: 2.  E: |d| 20 4 6 30 -> 3, 2, 2.
    np.testing.assert_allclose(out["p85"], [[0, 0, 0], [1, 0.75, nan]])
    np.testing.assert_allclose(out["p95"], [[0, 0, 0], [0.75, 0.5, nan]])
    np.testing.assert_allclose(out["p99"], [[0, 0, 0], [0.5, 0.5, nan]])
    np.testing.assert_allclose(out["mass_low"], [[1, 1, 1], [0, 0.25, nan]])
    np.testing.assert_allclose(out["mass_medium"], [[0, 0, 0], [0.25, 0.25, nan]])
    np.testing.assert_allclose(out["mass_high"], [[0, 0, 0], [0.25, 0, nan]])
    np.testing.assert_allclose(out["mass_highest"], [[0, 0, 0], [0.5, 0.5, nan]])
    # confidence: D is Highest (0.5), E is Low (0.25)
    np.testing.assert_allclose(out["confidence"], [[1, 1, 1], [0.5, 0.25, nan]])
    np.testing.assert_allclose(out["std"], [[1.118034, 0.5, 0.5], [2.236068, 10.630146, nan]], rtol=1e-6)
    # ranks D 3 3 2 1 -> mean 2.25, var 2.75/4 = 0.6875; E 3 0 1 3 -> mean 1.75, var 6.75/4 = 1.6875
    np.testing.assert_allclose(out["rank_variance"], [[0, 0, 0], [0.6875, 1.6875, nan]])
    # uncertainty A 1, B 0, C 0, D 2, E 2; bivariate 3 * min(class, 2) + u
    np.testing.assert_array_equal(out["bivariate"], [[1, 0, 0], [8, 2, 255]])
    assert out["class"].dtype == np.uint8 and out["bivariate"].dtype == np.uint8
    assert all(out[n].dtype == np.float32 for n in PRODUCTS if n not in ("class", "bivariate"))


def test_products_with_given_thresholds_by_hand():
    th = {"q85": 2.0, "q95": 5.0, "q99": 10.0, "std_tercile_1": 1.0, "std_tercile_2": 3.0}
    out = products(MEMBERS, th)
    nan = np.nan
    # |m| 2.5 1.5 0.5 9 1 -> Medium, Low, Low, High, Low
    np.testing.assert_array_equal(out["class"], [[1, 0, 0], [2, 0, 255]])
    # A |d| 1 2 3 4: >=2: 3.  B 1 1 2 2: >=2: 2.  D 10 12 8 6: 4, 4, 2 (>=10).  E 20 4 6 30: 4, 3, 2.
    np.testing.assert_allclose(out["p85"], [[0.75, 0.5, 0], [1, 1, nan]])
    np.testing.assert_allclose(out["p95"], [[0, 0, 0], [1, 0.75, nan]])
    np.testing.assert_allclose(out["p99"], [[0, 0, 0], [0.5, 0.5, nan]])
    np.testing.assert_allclose(out["mass_low"], [[0.25, 0.5, 1], [0, 0, nan]])
    np.testing.assert_allclose(out["mass_medium"], [[0.75, 0.5, 0], [0, 0.25, nan]])
    np.testing.assert_allclose(out["mass_high"], [[0, 0, 0], [0.5, 0.25, nan]])
    np.testing.assert_allclose(out["mass_highest"], [[0, 0, 0], [0.5, 0.5, nan]])
    # A Medium 0.75, B Low 0.5, C Low 1, D High 0.5, E Low 0
    np.testing.assert_allclose(out["confidence"], [[0.75, 0.5, 1], [0.5, 0, nan]])
    # ranks A 0 1 1 1 -> 0.1875; B 0 0 1 1 -> 0.25; C 0; D 3 3 2 2 -> 0.25 (10 >= Q99 is Highest);
    # E 3 1 2 3 -> mean 2.25, var 2.75/4 = 0.6875
    np.testing.assert_allclose(out["rank_variance"], [[0.1875, 0.25, 0], [0.25, 0.6875, nan]])
    # uncertainty (std vs 1 and 3): A 1, B 0, C 0, D 1, E 2 -> 3*1+1, 0, 0, 3*2+1, 0+2
    np.testing.assert_array_equal(out["bivariate"], [[4, 0, 0], [7, 2, 255]])


def test_a_constant_map_is_classed_low_not_highest():
    """Ground that does not move, or members that all give 0: every |m| equals Q85 = Q95 = Q99 and
    every std equals both terciles. The ties stay in the lowest class; the paper's ``>=`` put the
    whole map in Highest (class 3, bivariate 8, P99 = 1)."""
    for value in (0.0, -2.5):
        d = np.full((K, 2, 3), value, np.float32)
        th = thresholds(np.abs(np.median(d, axis=0)), np.zeros((2, 3)))
        assert th.levels == (abs(value),) * 3 and th.std_tercile_1 == th.std_tercile_2 == 0.0
        out = products(d, th)
        np.testing.assert_array_equal(out["class"], 0)
        np.testing.assert_array_equal(out["bivariate"], 0)           # Low susceptibility, Low uncertainty
        for name, expected in (("p85", 0), ("p95", 0), ("p99", 0), ("mass_low", 1), ("mass_highest", 0),
                               ("confidence", 1), ("rank_variance", 0)):
            np.testing.assert_array_equal(out[name], expected, err_msg=name)


def test_ties_at_degenerate_thresholds_stay_below_and_proper_ties_climb():
    """21 pixels, two equal members: 19 at 0 mm, one at 5 and one at -7. Sorted |m| 0 (x19) 5 7:
    Q85 at position 0.85 * 20 = 17 -> 0 (degenerate: 0, the least magnitude), Q95 at 19 -> 5 (a
    proper threshold, 0 < 5 < Q99), Q99 at 19.8 -> 5 + 0.8 * 2 = 6.6. The zeros stay Low (the
    paper's >= made 19 of 21 pixels Medium), 5 is a tie at a proper Q95 and climbs to High as in
    the paper, 7 is Highest. std is 0 everywhere: terciles 0, uncertainty Low."""
    d = np.zeros((2, 3, 7), np.float32)
    d[:, 1, 2], d[:, 2, 6] = 5.0, -7.0
    th = thresholds(np.abs(np.median(d, axis=0)), np.abs(d).std(axis=0))
    assert (th.q85, th.q95) == (0.0, 5.0) and th.q99 == pytest.approx(6.6)
    out = products(d, th)
    expected = np.zeros((3, 7), np.uint8)
    expected[1, 2], expected[2, 6] = 2, 3
    np.testing.assert_array_equal(out["class"], expected)
    np.testing.assert_array_equal(out["bivariate"], np.minimum(expected, 2) * 3)
    # the members' votes follow the same rule: P85 = share of members at least Medium
    np.testing.assert_array_equal(out["p85"], expected >= 1)
    np.testing.assert_array_equal(out["p95"], expected >= 2)
    np.testing.assert_array_equal(out["p99"], expected >= 3)
    np.testing.assert_array_equal(out["confidence"], 1.0)
    # equal Q95 = Q99 = 2 given by hand: a tie at 2 stays Medium, 2.5 passes both; 1 > Q85 = 0
    th = {"q85": 0.0, "q95": 2.0, "q99": 2.0, "std_tercile_1": 0.0, "std_tercile_2": 1.0}
    d = np.array([0.0, 1.0, 2.0, 2.5], np.float32).reshape(1, 1, 4)
    np.testing.assert_array_equal(products(d, th)["class"], [[0, 1, 1, 3]])


def test_a_constant_forecast_is_low_on_numpy_and_dask_alike():
    """Members that all give 0 (normalised): every valid pixel forecasts 0 * 3 - 0.5 = -0.5 mm, so
    Q85 = Q95 = Q99 = 0.5 and std = 0; both paths class every valid pixel Low (0), 255 elsewhere."""
    ds = make_cube()

    def zeros(x):
        return np.zeros((K, x.shape[0], F, P, P), np.float32)

    eager = forecast_products(ds, zeros, **SETTINGS)
    lazy = forecast_products(ds.chunk({"t": 3, "y": 7, "x": 5}), zeros, **SETTINGS).compute()
    assert (eager.attrs["q85"], eager.attrs["q99"]) == (0.5, 0.5)
    usable = ds["valid"].values & np.isfinite(ds["displacement"].values[-T:]).all(axis=0)
    np.testing.assert_array_equal(eager["class"].values, np.where(usable, 0, 255))
    np.testing.assert_array_equal(eager["bivariate"].values, np.where(usable, 0, 255))
    for name in eager.data_vars:
        assert np.array_equal(eager[name].values, lazy[name].values, equal_nan=True), name


# ---------------------------------------------------------------- inputs
def test_history_inputs_follow_the_contract():
    d = np.arange(2 * 6 * 2 * 2, dtype=np.float32).reshape(2, 6, 2, 2)
    d[1, 0, 0, 0] = np.nan            # before the last T epochs: still valid
    d[1, 4, 1, 1] = np.nan            # inside the last T epochs: not valid
    valid = np.ones((2, 2, 2), bool)
    valid[0, 0, 1] = False
    x = history_inputs(d, valid, history=T, norm=NORM)
    assert x.shape == (2, T, len(CHANNELS), 2, 2) and x.dtype == np.float32
    # window 0 pixel (0, 0): epochs 2..5 hold 8, 12, 16, 20 -> relative -12 -8 -4 0
    np.testing.assert_allclose(x[0, :, 0, 0, 0], (np.array([-12, -8, -4, 0]) - 0.25) / 2.0)
    np.testing.assert_array_equal(x[0, :, :, 0, 1], 0.0)          # valid False: both channels 0
    np.testing.assert_array_equal(x[1, :, 1, 0, 0], 1.0)
    np.testing.assert_array_equal(x[1, :, :, 1, 1], 0.0)
    assert np.isfinite(x).all()
    np.testing.assert_allclose(denormalise(np.array([0.0, 1.0]), NORM), [-0.5, 2.5])


def test_history_inputs_match_the_training_windows_bytes():
    from insarcast.training.windows import Normalisation, make_sample

    rng = np.random.default_rng(3)
    cube = np.cumsum(rng.normal(0, 3, (12, 9, 9)), axis=0).astype(np.float32)
    mask = rng.random((9, 9)) > 0.2
    norm = Normalisation(input_mean=0.123, input_std=1.7, target_mean=-0.3, target_std=2.9)
    anchor, origin = 7, (1, 0)
    x_train = make_sample(cube, mask, norm, anchor, origin, history=T, horizon=F, size=P).x
    window = cube[anchor - T + 1: anchor + 1, 1:1 + P, 0:P][None]
    x = history_inputs(window, mask[None, 1:1 + P, 0:P], history=T, norm=norm.to_dict())
    assert x[0].tobytes() == x_train.tobytes()


# ---------------------------------------------------------------- tiling
def fake_predict(x):
    """Member k = (k + 1) * time mean of channel 0 + terms in the position inside the tile and the
    tile's mean input (so that a tile's output depends on all of its pixels)."""
    n = x.shape[0]
    mean = x[:, :, 0].mean(axis=1) + 0.1 * x[:, :, 0].mean(axis=(1, 2, 3))[:, None, None]   # (N, P, P)
    rows = np.arange(P, dtype=np.float32)[:, None]
    cols = np.arange(P, dtype=np.float32)[None, :]
    out = np.empty((K, n, F, P, P), np.float32)
    for k in range(K):
        for f in range(F):
            out[k, :, f] = (k + 1) * mean * (f + 1) + 0.05 * rows - 0.03 * cols * (k - 1.5) + 0.2 * x[:, -1, 1]
    return out


def make_cube(ny=30, nx=23, nt=9, seed=0):
    rng = np.random.default_rng(seed)
    d = np.cumsum(rng.normal(-0.5, 2.0, (nt, ny, nx)), axis=0).astype(np.float32)
    trend = np.linspace(0, 40, nx, dtype=np.float32)[None, None, :]
    d += trend * np.linspace(0, 1, nt, dtype=np.float32)[:, None, None]
    valid = np.ones((ny, nx), bool)
    valid[5, 6] = False
    d[-2, 12, 3] = np.nan             # NaN inside the last T epochs: no forecast
    d[0, 20, 20] = np.nan             # NaN before them: forecast as usual
    t = np.datetime64("2020-01-05") + np.arange(nt) * SPACING
    ds = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), valid)},
                    coords={"t": t, "y": 5000.0 - 100 * np.arange(ny), "x": 100.0 * np.arange(nx),
                            "spatial_ref": ((), 0, {"crs_wkt": "EPSG:3035"})})
    return ds


SETTINGS = dict(history=T, horizon_steps=F, patch=P, overlap=3, norm=NORM, members=K, batch_size=5)


def test_tile_origins_are_on_the_global_grid():
    # stride 5, patch 8: tiles [o, o + 8) meeting [0, 12): o in -5, 0, 5, 10
    np.testing.assert_array_equal(tile_origins(0, 12, patch=8, stride=5), [-5, 0, 5, 10])
    np.testing.assert_array_equal(tile_origins(7, 9, patch=8, stride=5), [0, 5])
    w = blend_window(8)
    assert w.shape == (8, 8) and (w > 0).all() and np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])


def reference_forecast(d, valid, predict, *, patch, overlap):
    """Brute force: every tile of the global grid, region padded with invalid pixels, loops."""
    stride = patch - overlap
    ny, nx = valid.shape
    h = np.sin(np.pi * (np.arange(patch) + 0.5) / patch) ** 2
    w = h[:, None] * h[None, :]
    pad = 2 * patch
    dp = np.full((d.shape[0], ny + 2 * pad, nx + 2 * pad), np.nan, np.float32)
    dp[:, pad:pad + ny, pad:pad + nx] = d
    vp = np.zeros((ny + 2 * pad, nx + 2 * pad), bool)
    vp[pad:pad + ny, pad:pad + nx] = valid
    num = np.zeros((K, F, ny, nx))
    den = np.zeros((ny, nx))
    first = -stride * (patch // stride + 1)
    for oy in range(first, ny + patch, stride):           # multiples of the stride, global
        for ox in range(first, nx + patch, stride):
            if oy + patch <= 0 or ox + patch <= 0 or oy >= ny or ox >= nx:
                continue
            win = dp[-T:, oy + pad:oy + pad + patch, ox + pad:ox + pad + patch]
            m = vp[oy + pad:oy + pad + patch, ox + pad:ox + pad + patch] & np.isfinite(win).all(axis=0)
            if not m.any():
                continue
            x = np.zeros((1, T, 2, patch, patch), np.float32)
            rel = win - win[-1]
            x[0, :, 0] = np.where(m, (rel - NORM["input_mean"]) / NORM["input_std"], 0)
            x[0, :, 1] = m
            f = predict(x)[:, 0]
            for r in range(patch):
                for c in range(patch):
                    gy, gx = oy + r, ox + c
                    if 0 <= gy < ny and 0 <= gx < nx:
                        num[:, :, gy, gx] += w[r, c] * f[:, :, r, c]
                        den[gy, gx] += w[r, c]
    usable = valid & np.isfinite(d[-T:]).all(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(usable, num / den * NORM["target_std"] + NORM["target_mean"], np.nan)


def test_forecast_block_matches_a_brute_force_blend_and_its_halo_rule():
    ds = make_cube(ny=22, nx=21)
    d, valid = ds["displacement"].values, ds["valid"].values
    expected = reference_forecast(d, valid, fake_predict, patch=P, overlap=3)
    settings = {**SETTINGS, "batch_size": 3}
    whole = forecast_block(d, valid, predict=fake_predict, **settings)
    np.testing.assert_allclose(whole, expected, rtol=1e-5, atol=1e-5, equal_nan=True)
    # a sub-block with its global offset and a halo of P - 1 gives its core exactly
    y0, x0, depth = 2, 1, P - 1
    sub = forecast_block(d[:, y0:, x0:], valid[y0:, x0:], offset_y=y0, offset_x=x0, depth=depth,
                         predict=fake_predict, **settings)
    assert sub.shape == (K, F, 22 - y0 - 2 * depth, 21 - x0 - 2 * depth)
    core = whole[:, :, y0 + depth:22 - depth, x0 + depth:21 - depth]
    assert np.array_equal(sub, core, equal_nan=True)


def test_constant_predictor_gives_the_constant_back_everywhere_valid():
    ds = make_cube()

    def constant(x):
        return np.full((K, x.shape[0], F, P, P), 0.5, np.float32)

    fc = forecast_block(ds["displacement"].values, ds["valid"].values, predict=constant, **SETTINGS)
    usable = ds["valid"].values & np.isfinite(ds["displacement"].values[-T:]).all(axis=0)
    assert fc.shape == (K, F, 30, 23)
    np.testing.assert_allclose(fc[:, :, usable], 0.5 * 3.0 - 0.5, rtol=1e-6)   # 1.0 mm, edges too
    assert np.isnan(fc[:, :, ~usable]).all() and (~usable).sum() == 2


def test_dask_with_tiny_chunks_equals_numpy_exactly():
    ds = make_cube()
    eager = forecast_products(ds, fake_predict, **SETTINGS)
    lazy = forecast_products(ds.chunk({"t": 3, "y": 7, "x": 5}), fake_predict, **SETTINGS)
    assert isinstance(lazy["forecast"].data, da.Array) and isinstance(lazy["class"].data, da.Array)
    assert isinstance(eager["forecast"].data, np.ndarray)
    lazy = lazy.compute()
    for name in eager.data_vars:
        assert eager[name].dtype == lazy[name].dtype
        assert np.array_equal(eager[name].values, lazy[name].values, equal_nan=True), name
    assert eager.attrs == lazy.attrs
    # blending matters here: the position term makes overlapping tiles disagree
    single = forecast_products(ds, fake_predict, **{**SETTINGS, "overlap": 0})
    assert not np.allclose(single["forecast"].values, eager["forecast"].values, equal_nan=True)


def test_tiles_are_anchored_to_the_map_grid_so_a_window_agrees_with_the_whole_region():
    from insarcast.udf.tiling import grid_offsets

    ds = make_cube()
    # y falls from 5000 m by 100 m: row i is global row floor(-5000 / 100) + i = -50 + i; x from 0
    assert grid_offsets(ds["y"].values, ds["x"].values) == (-50, 0)
    assert grid_offsets(ds["y"].values[3:], ds["x"].values[2:]) == (-47, 2)
    assert grid_offsets(None, np.array([5.0])) == (0, 0)                   # nothing to go by: count from 0
    whole = forecast_products(ds, fake_predict, **SETTINGS)
    assert (whole.attrs["tile_offset_y"], whole.attrs["tile_offset_x"]) == (-50, 0)
    y0, x0 = 3, 2                                      # neither a multiple of the stride 5
    window = forecast_products(ds.isel(y=slice(y0, None), x=slice(x0, None)), fake_predict, **SETTINGS)
    inner = dict(y=slice(y0 + P - 1, None), x=slice(x0 + P - 1, None))   # P - 1 cells from the cut edges
    for name in ("forecast", "median"):
        got = window[name].sel(y=whole["y"][inner["y"]], x=whole["x"][inner["x"]]).values
        assert np.array_equal(got, whole[name].isel(**inner).values, equal_nan=True), name
    # the position term of fake_predict makes a tiling that is not the global one differ
    shifted = forecast_products(ds.isel(y=slice(y0, None), x=slice(x0, None)).assign_coords(
        y=np.arange(ds.sizes["y"] - y0) * -100.0, x=np.arange(ds.sizes["x"] - x0) * 100.0), fake_predict, **SETTINGS)
    assert not np.allclose(shifted["forecast"].values[:, :, P:, P:], window["forecast"].values[:, :, P:, P:],
                           equal_nan=True)


def test_thresholds_do_not_depend_on_the_chunking():
    ds = make_cube(ny=26, nx=31, seed=4)
    attrs = [forecast_products(ds.chunk(chunks), fake_predict, **SETTINGS).attrs
             for chunks in ({"y": 26, "x": 31}, {"y": 9, "x": 4}, {"y": 13, "x": 16})]
    assert attrs[0] == attrs[1] == attrs[2]
    # and they are the quantiles of |median| and std over the valid pixels
    eager = forecast_products(ds, fake_predict, **SETTINGS)
    m = np.abs(np.median(eager["forecast"].values[:, -1], axis=0))
    keep = np.isfinite(m)
    assert eager.attrs["q95"] == pytest.approx(np.quantile(m[keep].astype(np.float64), 0.95), rel=1e-6)
    assert attrs[0]["q85"] == eager.attrs["q85"]


def test_nan_history_gives_nan_products_and_nodata_classes():
    ds = make_cube()
    out = forecast_products(ds, fake_predict, **SETTINGS)
    for y, x in ((12, 3), (5, 6)):                        # NaN in the last T epochs; valid False
        px = out.isel(y=y, x=x)
        assert np.isnan(px["forecast"]).all() and np.isnan(px["median"]).all()
        for name in PRODUCTS:
            value = px[name].item()
            assert value == 255 if name in ("class", "bivariate") else np.isnan(value), name
    good = out.isel(y=20, x=20)                            # NaN only before the last T epochs
    assert np.isfinite(good["forecast"]).all() and good["class"].item() != 255


def test_given_thresholds_are_used_unchanged_and_recorded_and_nothing_runs_lazily():
    ds = make_cube()
    given = {"q85": 3.0, "q95": 6.0, "q99": 9.0, "std_tercile_1": 0.5, "std_tercile_2": 2.0}
    calls = []

    def counting(x):
        calls.append(len(x))
        return fake_predict(x)

    lazy = forecast_products(ds.chunk({"y": 10, "x": 10}), counting, thresholds=given, horizon=2, **SETTINGS)
    assert calls == []                                     # all lazy: the thresholds were given
    out = lazy.compute()
    assert calls
    assert {k: out.attrs[k] for k in given} == given and out.attrs["horizon"] == 2
    m = np.abs(np.median(out["forecast"].values[:, 1], axis=0))
    expected = np.where(np.isfinite(m), (m >= 3.0).astype(int) + (m >= 6.0) + (m >= 9.0), 255)
    np.testing.assert_array_equal(out["class"].values, expected)
    assert out["class"].attrs["flag_meanings"] == "low medium high highest"
    np.testing.assert_array_equal(out["class"].attrs["flag_values"], [0, 1, 2, 3])
    assert len(out["bivariate"].attrs["flag_meanings"].split()) == 9


def test_output_coordinates_times_and_crs():
    ds = make_cube()
    out = forecast_products(ds, fake_predict, **SETTINGS)
    assert dict(out["forecast"].sizes) == {"member": K, "horizon": F, "y": 30, "x": 23}
    assert out["median"].dims == ("horizon", "y", "x") and out["class"].dims == ("y", "x")
    np.testing.assert_array_equal(out["y"], ds["y"])
    np.testing.assert_array_equal(out["x"], ds["x"])
    last = ds["t"].values[-1]
    np.testing.assert_array_equal(out["time"].values, last + np.arange(1, F + 1) * SPACING)
    assert out.attrs["reference_time"] == str(last)[:19] and out.attrs["mode"] == "change"
    assert out.attrs["horizon"] == F
    assert out["spatial_ref"].attrs["crs_wkt"] == "EPSG:3035"
    np.testing.assert_array_equal(out["horizon"], [1, 2, 3])
    # transposed input gives the same products
    again = forecast_products(ds.transpose("x", "t", "y"), fake_predict, **SETTINGS)
    assert np.array_equal(again["std"].values, out["std"].values, equal_nan=True)


def test_cumulative_mode_adds_the_displacement_since_the_first_epoch():
    ds = make_cube()

    def identical(x):                      # every member forecasts +2 normalised -> 5.5 mm change
        return np.full((K, x.shape[0], F, P, P), 2.0, np.float32)

    out = forecast_products(ds, identical, mode="cumulative", **SETTINGS)
    d = ds["displacement"].values
    total = np.where(ds["valid"].values, 5.5 + d[-1] - d[0], np.nan)
    total[12, 3] = np.nan
    keep = np.isfinite(total)
    assert out.attrs["q99"] == pytest.approx(np.quantile(np.abs(total[keep]).astype(np.float64), 0.99), rel=1e-5)
    np.testing.assert_allclose(out["std"].values[keep], 0.0, atol=1e-6)     # identical members
    assert out.attrs["mode"] == "cumulative"


# ---------------------------------------------------------------- bad input
def test_bad_input_is_an_input_error():
    ds = make_cube()
    with pytest.raises(InputError, match="dim_0") as info:
        forecast_products(xr.DataArray(ds["displacement"].values), fake_predict, **SETTINGS)
    assert info.value.field == "displacement"
    with pytest.raises(InputError, match="dims"):
        forecast_products(ds["displacement"].rename(x="lon"), fake_predict, **SETTINGS)
    with pytest.raises(InputError, match="fewer than") as info:
        forecast_products(ds.isel(t=slice(0, T - 1)), fake_predict, **SETTINGS)
    assert info.value.field == "t"
    empty = ds.copy()
    empty["displacement"] = empty["displacement"] * np.nan
    with pytest.raises(InputError, match="no valid pixel"):
        forecast_products(empty, fake_predict, **SETTINGS)
    with pytest.raises(InputError, match="no valid pixel"):
        forecast_products(empty.chunk({"y": 10}), fake_predict, **SETTINGS)
    with pytest.raises(InputError, match="horizon"):
        forecast_products(ds, fake_predict, horizon=F + 1, **SETTINGS)
    with pytest.raises(InputError, match="thresholds"):
        forecast_products(ds, fake_predict, thresholds={"q85": 1.0}, **SETTINGS)
    with pytest.raises(InputError, match="predictor returned"):
        forecast_products(ds, lambda x: np.zeros((K, len(x), F, P, P - 1), np.float32), **SETTINGS)


def test_udf_never_imports_torch():
    code = ("import sys, insarcast.udf, insarcast.udf.forecast, insarcast.udf.tiling, "
            "insarcast.udf.products, insarcast.udf.inputs; assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_forecast_error_scale_spreads_each_member_by_hand():
    """One member at d = 0 with s = 2 mm exceeds Q = 2 mm with probability 2 (1 - Phi(1)) = 0.3173;
    a member at d = Q with a tiny s exceeds it half the time; s = 0 is the paper's vote. The class
    variance is that of the masses, and std combines the members' spread with s."""
    from insarcast.udf.products import exceedance, normal_cdf, products

    assert float(normal_cdf(np.array(1.0))) == pytest.approx(0.8413447, abs=1e-6)
    d = np.array([[[0.0, 2.0, 5.0]]])                                   # K = 1, y = 1, x = 3
    s = np.array([[2.0, 1e-6, 0.0]])
    np.testing.assert_allclose(exceedance(d, (2.0,), s)[0, 0], [0.3173105, 0.5, 1.0], atol=1e-6)
    np.testing.assert_array_equal(exceedance(d, (2.0,), None), exceedance(d, (2.0,), np.zeros((1, 3))))
    th = {"q85": 1.0, "q95": 2.0, "q99": 3.0, "std_tercile_1": 0.5, "std_tercile_2": 1.0}
    out = products(d.astype(np.float32), th, s)
    masses = np.stack([out[f"mass_{c}"][0, 0] for c in ("low", "medium", "high", "highest")])
    p = [2 * (1 - float(normal_cdf(np.array(q / 2.0)))) for q in (1.0, 2.0, 3.0)]
    np.testing.assert_allclose(masses, [1 - p[0], p[0] - p[1], p[1] - p[2], p[2]], atol=1e-6)
    codes = np.arange(4.0)
    assert out["rank_variance"][0, 0] == pytest.approx((codes ** 2 @ masses) - (codes @ masses) ** 2, abs=1e-5)
    assert out["std"][0, 0] == pytest.approx(2.0) and out["class"][0, 0] == 0      # |median| = 0 < q85
    assert out["confidence"][0, 0] == pytest.approx(1 - p[0], abs=1e-6)
