"""The spatial filter of the forecast maps (insarcast.udf.spatial) and its place in the tiled forecast.

Expected numbers are worked out by hand in the comments.
"""

import numpy as np
import pytest
import xarray as xr

from insarcast.udf.forecast import forecast_products
from insarcast.udf.spatial import RADIUS, binomial_filter
from insarcast.udf.tiling import forecast_block

T, F, P, K = 4, 3, 8, 2
NORM = {"input_mean": 0.0, "input_std": 1.0, "target_mean": 0.0, "target_std": 1.0}
RATE = -30.0        # mm/yr


def test_the_kernel_by_hand_inside_beside_the_edge_and_beside_a_gap():
    a = np.zeros((5, 5))
    a[2, 2] = 16.0
    out = binomial_filter(a)
    # weights outer((1, 2, 1), (1, 2, 1)) / 16: the centre keeps 4/16 of 16, edge neighbours 2/16, corners 1/16
    np.testing.assert_allclose(out[1:4, 1:4], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    assert out[0].sum() == 0 and out.dtype == np.float32
    # the corner (0, 0) of [[4, 0], [0, 0]]: the weights that exist are 4 + 2 + 2 + 1 = 9 (/16), so
    # 4 * 4 / 9 = 16 / 9; its neighbour (0, 1): (2 * 4) / (2 + 4 + 1 + 2) = 8 / 9
    out = binomial_filter(np.array([[4.0, 0.0], [0.0, 0.0]]))
    assert out[0, 0] == pytest.approx(16 / 9) and out[0, 1] == pytest.approx(8 / 9)
    # a missing cell stays missing and does not count: (0, 0) of [[1, nan], [3, 3]] is
    # (4 * 1 + 2 * 3 + 1 * 3) / (4 + 2 + 1) = 13 / 7
    out = binomial_filter(np.array([[1.0, np.nan], [3.0, 3.0]]))
    assert np.isnan(out[0, 1]) and out[0, 0] == pytest.approx(13 / 7)
    # leading axes are filtered one map at a time
    stack = np.stack([np.full((3, 3), 2.0), np.full((3, 3), -1.0)])
    np.testing.assert_allclose(binomial_filter(stack), stack)


def _noisy_trend(n=80, ny=20, nx=19, sigma=2.0, seed=0):
    """A uniform trend of RATE under white noise, every pixel valid but one gap."""
    rng = np.random.default_rng(seed)
    years = np.arange(n) * 6 / 365.25
    truth = RATE * years[:, None, None] * np.ones((n, ny, nx))
    d = (truth + rng.normal(0.0, sigma, truth.shape)).astype(np.float32)
    valid = np.ones((ny, nx), bool)
    valid[5, 7] = False
    return d, valid, years, truth


def _zero(x):
    return np.zeros((K, x.shape[0], F, P, P), np.float32)


SETTINGS = dict(predict=_zero, history=T, horizon_steps=F, members=K, patch=P, overlap=2, norm=NORM,
                inputs="residual-hindcast")


def test_the_filter_cuts_white_forecast_noise_by_the_kernel_gain():
    """With independent errors from pixel to pixel, the filter's variance gain is sum(w^2) =
    (6/16)^2 = 0.1406 (1-D: (1 + 4 + 1) / 16): RMSE x 0.375 inside, less reduction at the edges."""
    d, valid, years, _ = _noisy_trend()
    raw = forecast_block(d, valid, years=years, spatial_filter=False, **SETTINGS)
    filtered = forecast_block(d, valid, years=years, **SETTINGS)       # residual-hindcast: filtered
    np.testing.assert_array_equal(filtered, binomial_filter(raw))
    true_change = RATE * 6 / 365.25 * np.arange(1, F + 1)[None, :, None, None]    # k epochs of 6 days
    inside = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    err_raw = np.sqrt(np.nanmean((raw[inside] - true_change) ** 2))
    err_f = np.sqrt(np.nanmean((filtered[inside] - true_change) ** 2))
    assert 0.33 < err_f / err_raw < 0.43
    assert np.isnan(filtered[:, :, 5, 7]).all()


def test_a_sub_block_with_the_grown_halo_gives_the_whole_array_core_exactly():
    d, valid, years, _ = _noisy_trend()
    whole = forecast_block(d, valid, years=years, **SETTINGS)
    y0, x0, depth = 1, 2, P - 1 + RADIUS
    sub = forecast_block(d[:, y0:, x0:], valid[y0:, x0:], offset_y=y0, offset_x=x0, depth=depth, years=years,
                         **SETTINGS)
    core = whole[:, :, y0 + depth:20 - depth, x0 + depth:19 - depth]
    assert sub.shape == core.shape and np.array_equal(sub, core, equal_nan=True)


def test_dask_with_chunks_smaller_than_the_patch_equals_numpy_and_records_the_filter():
    d, valid, years, _ = _noisy_trend()
    t0 = np.datetime64("2020-01-01")
    times = t0 + (years * 365.25 * 86400).astype("timedelta64[s]")
    cube = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), valid)},
                      coords={"t": times, "y": 3.0e6 - 100.0 * np.arange(20), "x": 4.0e6 + 100.0 * np.arange(19)})
    kw = {k: v for k, v in SETTINGS.items() if k != "predict"}
    eager = forecast_products(cube, _zero, **kw)
    lazy = forecast_products(cube.chunk({"t": -1, "y": 5, "x": 3}), _zero, **kw).compute()
    for name in ("forecast", "median", "std", "class"):
        np.testing.assert_array_equal(eager[name].values, lazy[name].values)
    assert eager.attrs["spatial_filter"].startswith("binomial 3x3")
    paper = forecast_products(cube, _zero, **{**kw, "inputs": "paper"})
    assert paper.attrs["spatial_filter"] == "none"
