"""The spatial filter of the forecast maps (insarcast.udf.spatial) and its place in the tiled forecast.

Expected numbers are worked out by hand in the comments.
"""

import re

import numpy as np
import pytest
import xarray as xr

from insarcast.udf.forecast import forecast_products
from insarcast.udf.inputs import filter_widths
from insarcast.udf.spatial import CHOICE_RADIUS, RADIUS, WIDTHS, adaptive_filter, binomial_filter, \
    filter_widths as choose_widths, gaussian_filter
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


def test_the_gaussian_kernel_by_hand_and_beside_a_gap():
    a = np.zeros((9, 9))
    a[4, 4] = 1.0
    out = gaussian_filter(a, 1.0)
    # sigma 1 truncated at 2: 1-D weights exp(-i^2 / 2), i = -2..2, over their sum 1 + 2 e^-0.5 + 2 e^-2
    s1 = 1 + 2 * np.exp(-0.5) + 2 * np.exp(-2)
    assert out[4, 4] == pytest.approx(1 / s1 ** 2, rel=1e-6)
    assert out[4, 5] == pytest.approx(np.exp(-0.5) / s1 ** 2, rel=1e-6)
    assert out[4, 7] == 0 and out[2, 2] == pytest.approx(np.exp(-2) ** 2 / s1 ** 2, rel=1e-5)
    # a constant map with a gap stays constant (renormalised over the valid cells), the gap NaN
    c = np.full((7, 8), 3.0)
    c[2, 3] = np.nan
    out = gaussian_filter(c, 3.0)
    assert np.isnan(out[2, 3]) and np.nanmax(np.abs(out - 3.0)) < 1e-6


def test_the_width_is_chosen_by_the_hindcast_narrow_on_sharp_ground_wide_on_noise():
    rng = np.random.default_rng(1)
    ny, nx = 40, 40
    # sharp ground: stripes two cells wide; the hindcast maps are the ground, the observations the ground
    # plus a little noise: any smoothing blurs the stripes, so the binomial kernel (index 0) wins
    stripes = np.where((np.arange(nx) // 2) % 2 == 0, 5.0, -5.0) * np.ones((6, ny, 1))
    observed = stripes + rng.normal(0, 0.1, stripes.shape)
    assert (choose_widths(stripes, observed) == 0).all()
    # still ground seen through noise: the hindcast maps are noise, the observations 0, so the widest wins
    noise = rng.normal(0, 3.0, (6, ny, nx))
    assert (choose_widths(noise, np.zeros_like(noise)) == len(WIDTHS) - 1).all()
    # no origin: the binomial kernel
    assert (choose_widths(np.zeros((0, ny, nx)), np.zeros((0, ny, nx))) == 0).all()


def test_each_pixel_is_filtered_at_its_own_width():
    a = np.random.default_rng(2).normal(size=(2, 12, 14)).astype(np.float32)
    widths = np.zeros((12, 14), np.int8)
    widths[:, 7:] = 4
    out = adaptive_filter(a, widths)
    np.testing.assert_array_equal(out[..., :7], binomial_filter(a)[..., :7])
    np.testing.assert_array_equal(out[..., 7:], gaussian_filter(a, WIDTHS[4])[..., 7:])


def test_the_filter_cuts_white_forecast_noise_at_least_by_the_binomial_gain():
    """With independent errors from pixel to pixel, the binomial kernel's variance gain is sum(w^2) =
    (6/16)^2 = 0.1406 (1-D: (1 + 4 + 1) / 16): RMSE x 0.375 inside. On still ground the hindcast
    chooses wider kernels, which cut more."""
    d, valid, years, _ = _noisy_trend(ny=40, nx=41)
    raw = forecast_block(d, valid, years=years, spatial_filter=False, **SETTINGS)
    filtered = forecast_block(d, valid, years=years, **SETTINGS)       # residual-hindcast: filtered
    widths = filter_widths(np.where(valid, d, np.nan), years, history=T, horizon=F, inputs="residual-hindcast")
    np.testing.assert_array_equal(filtered, adaptive_filter(raw, widths))
    assert (widths > 0).mean() > 0.9
    true_change = RATE * 6 / 365.25 * np.arange(1, F + 1)[None, :, None, None]    # k epochs of 6 days
    inside = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    err_raw = np.sqrt(np.nanmean((raw[inside] - true_change) ** 2))
    err_f = np.sqrt(np.nanmean((filtered[inside] - true_change) ** 2))
    err_b = np.sqrt(np.nanmean((binomial_filter(raw)[inside] - true_change) ** 2))
    assert 0.33 < err_b / err_raw < 0.43 and err_f < 0.8 * err_b
    assert np.isnan(filtered[:, :, 5, 7]).all()


def test_a_sub_block_with_the_grown_halo_gives_the_whole_array_core_exactly():
    d, valid, years, _ = _noisy_trend(ny=50, nx=49)
    whole = forecast_block(d, valid, years=years, **SETTINGS)
    y0, x0, depth = 1, 2, max(P - 1 + RADIUS, CHOICE_RADIUS)
    sub = forecast_block(d[:, y0:, x0:], valid[y0:, x0:], offset_y=y0, offset_x=x0, depth=depth, years=years,
                         **SETTINGS)
    core = whole[:, :, y0 + depth:50 - depth, x0 + depth:49 - depth]
    assert sub.shape == core.shape and np.array_equal(sub, core, equal_nan=True)


def test_a_sub_block_given_the_whole_arrays_widths_needs_only_the_filters_ring():
    """What forecast does: the widths computed once over the region, handed to each block, whose halo
    then needs only P - 1 + RADIUS cells (not CHOICE_RADIUS) for its core to equal the whole array's."""
    d, valid, years, _ = _noisy_trend(ny=50, nx=49)
    widths = filter_widths(np.where(valid, d, np.nan), years, history=T, horizon=F, inputs="residual-hindcast")
    whole = forecast_block(d, valid, years=years, widths=widths, **SETTINGS)
    np.testing.assert_array_equal(whole, forecast_block(d, valid, years=years, **SETTINGS))
    y0, x0, depth = 3, 1, P - 1 + RADIUS
    sub = forecast_block(d[:, y0:, x0:], valid[y0:, x0:], offset_y=y0, offset_x=x0, depth=depth, years=years,
                         widths=widths[y0:, x0:], **SETTINGS)
    core = whole[:, :, y0 + depth:50 - depth, x0 + depth:49 - depth]
    assert sub.shape == core.shape and np.array_equal(sub, core, equal_nan=True)
    with pytest.raises(Exception, match="widths has shape"):
        forecast_block(d, valid, years=years, widths=widths[1:], **SETTINGS)


def test_dask_with_chunks_smaller_than_the_patch_equals_numpy_and_records_the_filter():
    d, valid, years, _ = _noisy_trend(ny=30, nx=27)
    t0 = np.datetime64("2020-01-01")
    times = t0 + (years * 365.25 * 86400).astype("timedelta64[s]")
    cube = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), valid)},
                      coords={"t": times, "y": 3.0e6 - 100.0 * np.arange(30), "x": 4.0e6 + 100.0 * np.arange(27)})
    kw = {k: v for k, v in SETTINGS.items() if k != "predict"}
    eager = forecast_products(cube, _zero, **kw)
    lazy = forecast_products(cube.chunk({"t": -1, "y": 5, "x": 3}), _zero, **kw).compute()
    for name in ("forecast", "median", "std", "class"):
        np.testing.assert_array_equal(eager[name].values, lazy[name].values)
    assert eager.attrs["spatial_filter"].startswith("hindcast-chosen width")
    paper = forecast_products(cube, _zero, **{**kw, "inputs": "paper"})
    assert paper.attrs["spatial_filter"] == "none"


def test_the_report_says_how_wide_the_filter_was_where():
    """On still ground seen through noise the hindcast takes the widest kernel nearly everywhere, and the
    report's note says so in shares that add up to the valid pixels."""
    from insarcast.report.build import final_reference, width_note

    d, valid, years, _ = _noisy_trend(ny=40, nx=41)
    d = np.where(valid, d, np.nan)
    note = width_note(final_reference(d, years, history=T, horizon=F), d, history=T, horizon=F)
    shares = [int(x) for x in re.findall(r"on (\d+) %", note)]
    assert len(shares) == len(WIDTHS) and 98 <= sum(shares) <= 102
    assert "a Gaussian of sigma 3 cells on" in note and shares[-1] > 90
