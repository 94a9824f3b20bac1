"""A travelling front carried forward (insarcast.udf.fronts) and its place in the products.

The ground of these tests is made by hand: a settlement trough whose face crosses the region at a third of
a cell per epoch (a tunnel's 2 km/yr at 100 m cells and 6-day epochs), the still ground ahead of it, a
bowl that deepens in place, and noise alone.
"""

import numpy as np
import pytest
import xarray as xr

from insarcast.udf.forecast import forecast_products
from insarcast.udf.fronts import FRONT_RADIUS, apply, carried, carry_of
from insarcast.udf.inputs import reference_fit
from insarcast.udf.spatial import CHOICE_RADIUS, RADIUS, adaptive_filter
from insarcast.udf.tiling import forecast_block

T, F, P, K = 12, 6, 8, 2
NORM = {"input_mean": 0.0, "input_std": 1.0, "target_mean": 0.0, "target_std": 1.0}
DEPTH, SPEED, WIDTH = 20.0, 1 / 3, 1.5      # mm settled; cells per epoch; cells over which a cell settles


def _front(n=100, ny=24, nx=44, sigma=1.0, seed=0, width=WIDTH):
    """``(d, truth, years, face)``: a trough settling DEPTH mm behind a face at column ``face(t)``, moving
    along +x at SPEED cells per epoch, ``u = -DEPTH / (1 + exp(-(face(t) - x) / width))``, every row alike,
    under white noise of ``sigma`` mm per epoch."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    face = 6.0 + SPEED * (t - 30)                  # column 6 at epoch 30, column 29 at the anchor of n = 100
    x = np.arange(nx)
    truth = -DEPTH / (1 + np.exp(-(face[:, None] - x[None]) / width))
    truth = np.broadcast_to(truth[:, None, :], (n, ny, nx)).copy()
    d = (truth + rng.normal(0.0, sigma, truth.shape)).astype(np.float32)
    return d, truth, t * 6 / 365.25, face


def _future_change(n, ny, nx, steps, width=WIDTH):
    """The true change ``u(a + k) - u(a)`` of :func:`_front` at its anchor ``a = n - 1``, k = 1..steps."""
    _, truth, _, _ = _front(n=n + steps, ny=ny, nx=nx, sigma=0.0, width=width)
    return (truth[n:n + steps] - truth[n - 1])


def test_the_front_is_carried_onto_the_still_ground_it_reaches_and_nowhere_else():
    d, truth, years, face = _front()
    n, ny, nx = d.shape
    out = carried(d, np.zeros((ny, nx)), horizon=F, history=T)
    true = _future_change(n, ny, nx, F)
    # the face is at column 29 and moves 2 columns in F epochs: the cells ahead of it settle by up to
    # 12.3 mm (column 30), those far from it not at all
    arriving = true[-1] < -5.0
    inner = np.zeros((ny, nx), bool)
    inner[FRONT_RADIUS:ny - FRONT_RADIUS] = True          # rows whose box lies inside the region
    assert (arriving & inner).sum() >= 2 * (ny - 2 * FRONT_RADIUS)
    assert np.isfinite(out[-1][arriving & inner]).all()
    error = out[-1][arriving & inner] - true[-1][arriving & inner]
    # within a tenth of the settling these cells undergo (RMS; measured 6 %), where the cell's own past
    # forecasts next to nothing
    size = np.sqrt(np.mean(true[-1][arriving & inner] ** 2))
    assert np.sqrt(np.mean(error ** 2)) < 0.1 * size
    # far behind the face (settled) and far ahead (still), the level field does not move: nothing carried
    far = np.abs(np.arange(nx) - face[-1]) > 8
    assert np.isnan(out[:, :, far]).all()
    # step k carries k / F of the change at F
    k = np.arange(1, F + 1).reshape(-1, 1, 1)
    np.testing.assert_allclose(out, k / F * out[-1], rtol=1e-6)


def test_a_bowl_that_deepens_in_place_and_noise_alone_carry_nothing():
    rng = np.random.default_rng(1)
    n, ny, nx = 100, 24, 30
    years = np.arange(n) * 6 / 365.25
    y, x = np.mgrid[:ny, :nx]
    bowl = np.exp(-((y - 12) ** 2 + (x - 15) ** 2) / (2 * 4.0 ** 2))
    truth = -40.0 * years[:, None, None] * bowl                     # 40 mm/yr at the centre
    d = (truth + rng.normal(0.0, 1.0, truth.shape)).astype(np.float32)
    # the cell's own line forecasts the deepening (the reference): the front's carry would add nothing
    own = (truth[-1] - truth[-1 - F]).astype(np.float32)
    assert np.isnan(carried(d, own, horizon=F, history=T)).all()
    noise = rng.normal(0.0, 3.0, (n, ny, nx)).astype(np.float32)
    assert np.isnan(carried(noise, np.zeros((ny, nx)), horizon=F, history=T)).all()
    # a series shorter than F + 2 epochs carries nothing, whatever it holds
    assert np.isnan(carried(d[:F + 2], np.zeros((ny, nx)), horizon=F, history=T)).all()


def test_the_median_moves_to_the_carry_and_each_member_keeps_its_departure():
    members = np.array([[[[1.0, 2.0]]], [[[3.0, 6.0]]], [[[5.0, 4.0]]]], np.float32)   # (3, 1, 1, 2)
    carry = np.array([[[10.0, np.nan]]], np.float32)
    out = apply(members, carry)
    # pixel 0: median 3 -> 10, members 1, 3, 5 -> 8, 10, 12; pixel 1 unchanged
    np.testing.assert_array_equal(out[:, 0, 0, 0], [8.0, 10.0, 12.0])
    np.testing.assert_array_equal(out[:, 0, 0, 1], members[:, 0, 0, 1])


def _zero(x):
    return np.zeros((K, x.shape[0], F, P, P), np.float32)


SETTINGS = dict(predict=_zero, history=T, horizon_steps=F, members=K, patch=P, overlap=2, norm=NORM,
                inputs="residual-hindcast")


def _cube(d, years):
    t0 = np.datetime64("2020-01-01")
    times = t0 + (years * 365.25 * 86400).astype("timedelta64[s]")
    ny, nx = d.shape[1:]
    return xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), np.ones((ny, nx), bool))},
                      coords={"t": times, "y": 3.0e6 - 100.0 * np.arange(ny), "x": 4.0e6 + 100.0 * np.arange(nx)})


def test_the_products_forecast_the_arriving_front_the_same_whole_tiled_or_chunked():
    # a sharp face (a tunnel's): the ground ahead of it is still until it arrives, so the cell's own curve
    # forecasts nothing there
    d, truth, years, face = _front(ny=46, nx=56, width=0.5)
    n, ny, nx = d.shape
    kw = {k: v for k, v in SETTINGS.items() if k != "predict"}
    eager = forecast_products(_cube(d, years), _zero, **kw)
    lazy = forecast_products(_cube(d, years).chunk({"t": -1, "y": 7, "x": 9}), _zero, **kw).compute()
    for name in ("forecast", "median", "forecast_scale", "class"):
        np.testing.assert_array_equal(eager[name].values, lazy[name].values)
    assert eager.attrs["front_carry"].startswith("where a front that travels reaches still ground")
    assert lazy.attrs["front_carry"] == eager.attrs["front_carry"]
    # the paper's formulation, and a filter switched off, carry nothing and say so
    for off in ({"inputs": "paper"}, {"spatial_filter": False}):
        assert forecast_products(_cube(d, years), _zero, **{**kw, **off}).attrs["front_carry"] == "none"
    true = _future_change(n, ny, nx, F, width=0.5)
    arriving = np.zeros((ny, nx), bool)
    arriving[FRONT_RADIUS:ny - FRONT_RADIUS] = true[-1][FRONT_RADIUS:ny - FRONT_RADIUS] < -5.0
    median = eager["median"].values[-1]
    # members that add nothing forecast the reference, which ahead of the face lags the settling; the
    # products forecast the carried change where the front arrives at still ground, and hold its
    # departure from the cell's own curve in their error scale
    fitted = reference_fit(d, years, history=T, horizon=F, inputs="residual-hindcast")
    carry = carry_of(d, fitted, history=T)
    taken = np.isfinite(carry[-1])
    assert taken.sum() >= ny - 2 * FRONT_RADIUS
    np.testing.assert_allclose(median[taken], carry[-1][taken], rtol=1e-6)
    reference = adaptive_filter(fitted[F:2 * F], fitted[-1])[-1]
    scale = eager["forecast_scale"].values[-1]
    assert (scale[taken] >= np.abs(carry[-1] - reference)[taken] * (1 - 1e-6)).all()
    without = forecast_block(d, None, years=years, widths=fitted[-1], carry=np.full(carry.shape, np.nan), **SETTINGS)
    rms = lambda m: np.sqrt(np.mean((m - true[-1])[arriving] ** 2))
    assert rms(median) < 0.6 * rms(np.median(without, axis=0)[-1])
    # a tile with the products' halo gets the whole region's core
    whole = forecast_block(d, None, years=years, **SETTINGS)
    y0, x0, depth = 1, 2, max(P - 1 + RADIUS, CHOICE_RADIUS)
    sub = forecast_block(d[:, y0:, x0:], None, offset_y=y0, offset_x=x0, depth=depth, years=years, **SETTINGS)
    core = whole[:, :, y0 + depth:ny - depth, x0 + depth:nx - depth]
    assert np.isfinite(carry[-1][y0 + depth:ny - depth, x0 + depth:nx - depth]).any()    # the core holds a carry
    assert sub.shape == core.shape and np.array_equal(sub, core, equal_nan=True)
    # the products fit the reference once over the region, the block its own: the same to float32 rounding
    np.testing.assert_allclose(whole, eager["forecast"].values, atol=1e-5)


def test_a_carry_of_the_wrong_shape_is_refused():
    d, _, years, _ = _front(ny=10, nx=12)
    widths = np.zeros(d.shape[1:], np.int8)
    with pytest.raises(Exception, match="carry has shape"):
        forecast_block(d, None, years=years, widths=widths, carry=np.zeros((F, 3, 3), np.float32), **SETTINGS)


def test_the_report_names_where_a_front_was_carried_and_says_nothing_on_still_ground():
    from insarcast.report.build import final_reference, front_note

    d, _, years, _ = _front(ny=30, nx=44, width=0.5)
    note = front_note(final_reference(d, years, history=T, horizon=F), d, history=T, horizon=F, km2=0.01)
    fitted = reference_fit(d, years, history=T, horizon=F, inputs="residual-hindcast")
    taken = int(np.isfinite(carry_of(d, fitted, history=T)[-1]).sum())
    assert taken > 0 and note.startswith(f"at {taken} pixels ({taken * 0.01:.2f} km²) a front that travels")
    still = np.random.default_rng(3).normal(0.0, 2.0, d.shape).astype(np.float32)
    assert front_note(final_reference(still, years, history=T, horizon=F), still, history=T, horizon=F,
                      km2=0.01) is None
