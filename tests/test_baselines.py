"""Baselines on series whose future is known in closed form."""

import numpy as np
import pytest

from insarcast.baselines import BASELINES, forecast

YEARS = np.arange(200) * 6 / 365.25          # 6-day epochs
ANCHOR, F, T = 150, 6, 12


def series(trend=-30.0, amplitude=4.0, phase=0.7):
    """(t, 2, 3) pixels of offset + trend + annual sinusoid, mm."""
    base = trend * YEARS + amplitude * np.sin(2 * np.pi * YEARS + phase)
    return (base[:, None, None] + np.arange(6).reshape(2, 3)).astype(np.float64)


def truth(d):
    return d[ANCHOR + 1:ANCHOR + F + 1] - d[ANCHOR]


def test_least_squares_trend_plus_annual_is_exact():
    d = series()
    np.testing.assert_allclose(forecast("trend_annual", d, YEARS, ANCHOR, F, history=T), truth(d), atol=1e-4)


def test_linear_and_seasonal_naive_are_exact_on_a_pure_trend():
    d = series(amplitude=0.0)
    for name in ("linear", "seasonal_naive", "trend_annual"):
        np.testing.assert_allclose(forecast(name, d, YEARS, ANCHOR, F, history=T), truth(d), atol=1e-4, err_msg=name)


def test_persistence_forecasts_no_change_and_misses_the_trend():
    d = series(amplitude=0.0)
    assert (forecast("persistence", d, YEARS, ANCHOR, F, history=T) == 0).all()
    # 6 epochs of -30 mm/yr is -2.96 mm: persistence misses it by exactly that much
    assert truth(d)[-1, 0, 0] == pytest.approx(-30.0 * 36 / 365.25, rel=1e-9)


def test_baselines_read_nothing_after_the_anchor():
    d = series()
    spoiled = d.copy()
    spoiled[ANCHOR + 1:] = 1e9
    for name in BASELINES:
        np.testing.assert_array_equal(forecast(name, d, YEARS, ANCHOR, F, history=T),
                                      forecast(name, spoiled, YEARS, ANCHOR, F, history=T), err_msg=name)


def test_seasonal_naive_needs_a_year_of_history():
    d = series()
    assert np.isnan(forecast("seasonal_naive", d, YEARS, 30, F, history=T)).all()
    assert np.isfinite(forecast("seasonal_naive", d, YEARS, 61, F, history=T)).all()   # 366 days back
