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


def test_hindcast_errors_are_out_of_sample_line_fits_worked_by_polyfit():
    """The window line's hindcast error, recomputed with numpy.polyfit at each past origin b = a-F-j:
    fit the T epochs up to b, forecast b+1..b+F, mean squared error against the observations."""
    from insarcast.baselines import hindcast_errors

    rng = np.random.default_rng(3)
    d = series() + rng.normal(0, 2.0, (len(YEARS), 2, 3))
    errors = hindcast_errors(d, YEARS, ANCHOR, F, history=T, origins=4)
    by_hand = 0.0
    for b in range(ANCHOR - F, ANCHOR - F - 4, -1):
        coef = np.polyfit(YEARS[b - T + 1: b + 1], d[b - T + 1: b + 1, 1, 2], 1)
        by_hand += np.mean((np.polyval(coef, YEARS[b + 1: b + F + 1]) - d[b + 1: b + F + 1, 1, 2]) ** 2) / 4
    assert errors.shape == (4, 2, 3)                            # linear, local, long, quadratic
    assert errors[0, 1, 2] == pytest.approx(by_hand, rel=1e-9)
    spoiled = d.copy()
    spoiled[ANCHOR + 1:] = 1e9                                   # nothing after the anchor is read
    np.testing.assert_array_equal(hindcast_errors(spoiled, YEARS, ANCHOR, F, history=T, origins=4), errors)
    assert np.isnan(hindcast_errors(d, YEARS, T + F - 2, F, history=T)).all()   # no origin with T epochs


def test_the_hindcast_maps_are_each_curves_change_as_fitted_at_each_origin_worked_by_polyfit():
    """Fits.hindcast_change[j, curve] is R(b+F) - R(b) of the curve fitted at b = a-F-j: for the window's
    line, polyfit over the T epochs up to b (float32); adaptive_hindcast takes the curve the anchor chose; nothing
    after the anchor is read."""
    from insarcast.baselines import fits, hindcast_epochs

    rng = np.random.default_rng(4)
    d = series() + rng.normal(0, 2.0, (len(YEARS), 2, 3))
    f = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6, reference=True)
    assert hindcast_epochs(ANCHOR, F, T) == [ANCHOR - F - j for j in range(6)]
    assert f.hindcast_change.shape == (6, 4, 2, 3)
    for j, b in enumerate(hindcast_epochs(ANCHOR, F, T)):
        coef = np.polyfit(YEARS[b - T + 1: b + 1], d[b - T + 1: b + 1, 0, 1], 1)
        by_hand = np.polyval(coef, YEARS[b + F]) - np.polyval(coef, YEARS[b])
        assert f.hindcast_change[j, 0, 0, 1] == pytest.approx(by_hand, rel=1e-6)      # stored as float32
    long_, local, quad = f.choice()
    chosen = np.where(long_, 2, np.where(local, 1, np.where(quad, 3, 0)))
    expected = np.take_along_axis(f.hindcast_change, chosen[None, None], axis=1)[:, 0]
    np.testing.assert_array_equal(f.adaptive_hindcast(), expected)
    spoiled = d.copy()
    spoiled[ANCHOR + 1:] = 1e9
    g = fits(spoiled, YEARS, ANCHOR, F, history=T, hindcast=6, reference=True)
    np.testing.assert_array_equal(g.hindcast_change, f.hindcast_change)


def test_the_adaptive_curve_is_the_one_that_forecast_the_recent_past():
    """Pixel 0 keeps its trend + annual habit: the long fit is exact, so it is kept. Pixel 1's rate
    jumped from -5 to -60 mm/yr 40 epochs (240 days) before the anchor: the long fit, dragged by 150
    epochs of the old rate, forecast the recent past worst, and the adaptive forecast is the exact
    continuation of the new rate that the window's line (and the local line) give."""
    from insarcast.baselines import HINDCAST_MARGIN, fits

    d = series(trend=-5.0, amplitude=3.0)[:, :1, :2].copy()
    jump = ANCHOR - 40
    d[jump:, 0, 1] = d[jump, 0, 1] - 60.0 * (YEARS[jump:] - YEARS[jump])
    f = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6)
    assert f.hindcast[2, 0, 0] == pytest.approx(0.0, abs=1e-12)
    assert f.hindcast[2, 0, 1] > HINDCAST_MARGIN * f.hindcast[:2, 0, 1].min()
    adaptive = forecast("adaptive", d, YEARS, ANCHOR, F, history=T)
    np.testing.assert_allclose(adaptive[:, 0, 0], truth(d)[:, 0, 0], atol=1e-6)
    assert adaptive[-1, 0, 1] == pytest.approx(-60.0 * 36 / 365.25, abs=0.05)   # the new rate, 36 days
    assert forecast("trend_annual", d, YEARS, ANCHOR, F, history=T)[-1, 0, 1] > -2.0   # the old habit


def test_a_trough_that_accelerates_under_a_pixel_is_forecast_by_the_parabola():
    """Pixel 1 subsides as -150 mm/yr^2 (t - t_s)^2 since 60 epochs before the anchor (a mine face
    arriving): every line lags it (the window's line forecasts -26.5 mm over 36 days where the truth
    is -30.6), the parabola through the last 2.5T epochs follows it, so its hindcast error is less than
    half of every other curve's and it is taken; its forecast is off only by the annual cycle the long
    fit wrongly reads into the parabola (2 mm). Pixel 0 (trend + annual) keeps the long fit."""
    from insarcast.baselines import QUADRATIC_MARGIN, fits

    d = series(trend=-5.0, amplitude=3.0)[:, :1, :2].copy()
    start = ANCHOR - 60
    d[:, 0, 1] = np.where(YEARS > YEARS[start], -150.0 * (YEARS - YEARS[start]) ** 2, 0.0)
    f = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6)
    long_, local, quad = f.choice()
    assert long_[0, 0] and not quad[0, 0]
    assert quad[0, 1] and QUADRATIC_MARGIN * f.hindcast[3, 0, 1] < f.hindcast[:3, 0, 1].min()
    expected = truth(d)[-1, 0, 1]
    assert expected == pytest.approx(-150.0 * ((YEARS[ANCHOR + F] - YEARS[start]) ** 2
                                               - (YEARS[ANCHOR] - YEARS[start]) ** 2), rel=1e-9)
    line_error = abs(forecast("linear", d, YEARS, ANCHOR, F, history=T)[-1, 0, 1] - expected)
    adaptive_error = abs(forecast("adaptive", d, YEARS, ANCHOR, F, history=T)[-1, 0, 1] - expected)
    assert line_error > 4.0 and adaptive_error < 0.6 * line_error


def test_the_error_factors_of_the_window_line_equal_the_textbook_formulas():
    """For the line through T epochs at t_i (the anchor at 0), the variance per unit noise of the
    forecast change to t_a + k dt is (k dt)^2 / Sxx, and of the forecast level 1/T + (k dt - t_bar)^2 / Sxx."""
    from insarcast.baselines import fits

    n, t, f = 60, 12, 6
    dt = 6.0 / 365.25
    years = dt * np.arange(n)
    d = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    fitted = fits(d, years, n - 1, f, history=t)
    ti = dt * np.arange(-(t - 1), 1)
    sxx = np.sum((ti - ti.mean()) ** 2)
    k = dt * np.arange(1, f + 1)
    np.testing.assert_allclose(fitted.factors[0], k ** 2 / sxx, rtol=1e-6)
    np.testing.assert_allclose(fitted.level_factors[0], 1 / t + (k - ti.mean()) ** 2 / sxx, rtol=1e-6)
    # where the window's line is the curve, the level's scale is the change's plus the anchor's own error
    line_only = fitted._replace(hindcast=None, long_misfit=np.full(3, np.inf), local_misfit=np.full(3, np.inf))
    ratio = line_only.adaptive_scale(level=True) / line_only.adaptive_scale()
    np.testing.assert_allclose(ratio[:, 0], np.sqrt((1 / t + (k - ti.mean()) ** 2 / sxx) / (k ** 2 / sxx)), rtol=1e-5)


def test_the_long_fit_at_every_hindcast_origin_is_the_least_squares_fit_of_its_own_epochs():
    """The long (trend + annual) curve's hindcast error at each origin b, recomputed with
    numpy.linalg.lstsq on the epochs 0..b only (the origins share one pass over the series); a gap
    (NaN) at epoch e leaves the fits of the origins before e finite and makes those at or after it
    NaN; the float32 series gives the float64 one's fits."""
    from insarcast.baselines import _long_coefficients, fits, hindcast_errors

    rng = np.random.default_rng(5)
    d = series() + rng.normal(0, 2.0, (len(YEARS), 2, 3))
    errors = hindcast_errors(d, YEARS, ANCHOR, F, history=T, origins=6)
    by_hand = 0.0
    for b in range(ANCHOR - F, ANCHOR - F - 6, -1):
        t = YEARS[: b + 1]
        design = np.column_stack([np.ones_like(t), t - t[-1], np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])
        coef = np.linalg.lstsq(design, d[: b + 1, 0, 1], rcond=None)[0]
        ahead = YEARS[b + 1: b + F + 1]
        future = np.column_stack([np.ones_like(ahead), ahead - t[-1], np.sin(2 * np.pi * ahead),
                                  np.cos(2 * np.pi * ahead)]) @ coef
        by_hand += np.mean((future - d[b + 1: b + F + 1, 0, 1]) ** 2) / 6
    assert errors[2, 0, 1] == pytest.approx(by_hand, rel=1e-9)
    gap = d.reshape(len(YEARS), -1).copy()
    gap[ANCHOR - 3, 1] = np.nan
    origins = [ANCHOR - 8, ANCHOR - 4, ANCHOR - 3, ANCHOR]
    coefs = _long_coefficients(gap[: ANCHOR + 1], YEARS, origins)
    assert [bool(np.isfinite(c[:, 1]).all()) for c in coefs] == [True, True, False, False]
    assert all(np.isfinite(c[:, [0, 2, 3, 4, 5]]).all() for c in coefs)
    t = YEARS[: ANCHOR - 3]
    design = np.column_stack([np.ones_like(t), t - t[-1], np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])
    np.testing.assert_allclose(coefs[1][:, 1], np.linalg.lstsq(design, gap[: ANCHOR - 3, 1], rcond=None)[0],
                               rtol=1e-9, atol=1e-9)
    early = d.copy()
    early[10, 0, 1] = np.nan                       # long before every origin: the long fit is lost, the lines are not
    f = fits(early, YEARS, ANCHOR, F, history=T, hindcast=6)
    assert np.isnan(f.long[:, 0, 1]).all() and np.isnan(f.hindcast[2, 0, 1])
    assert np.isfinite(f.linear[:, 0, 1]).all() and np.isfinite(f.hindcast[0, 0, 1])
    assert np.isfinite(f.long[:, 1, 2]).all()      # the other pixels keep theirs
    single = fits(d.astype(np.float32), YEARS, ANCHOR, F, history=T, hindcast=6)
    double = fits(d.astype(np.float32).astype(np.float64), YEARS, ANCHOR, F, history=T, hindcast=6)
    for name in ("linear", "long", "local", "quadratic", "noise", "hindcast"):
        np.testing.assert_array_equal(getattr(single, name), getattr(double, name), err_msg=name)


def test_the_noise_is_the_mad_of_second_differences_and_an_exact_fit_keeps_the_smoothest_curve():
    """The noise of one epoch, 1.4826 MAD(second differences of the last 4T epochs) / sqrt(6), from
    numpy.median by hand (NaN where the window has a gap); on a noise-free trend + annual series every
    curve forecasts its past to rounding, so the hindcast errors are ties and the long fit is kept."""
    from insarcast.baselines import fits

    rng = np.random.default_rng(2)
    d = series() + rng.normal(0, 1.5, (len(YEARS), 2, 3))
    d[ANCHOR - 3, 1, 1] = np.nan
    f = fits(d, YEARS, ANCHOR, F, history=T)
    second = np.diff(d[ANCHOR + 1 - 4 * T: ANCHOR + 1, 0, 2], n=2)
    assert f.noise[0, 2] == pytest.approx(1.4826 * np.median(np.abs(second - np.median(second))) / np.sqrt(6.0),
                                          rel=1e-12)
    assert np.isnan(f.noise[1, 1]) and np.isfinite(f.noise).sum() == 5
    exact = fits(series(), YEARS, ANCHOR, F, history=T, hindcast=6)
    long_, local, quad = exact.choice()
    assert long_.all() and not quad.any()


def _stepped(pixels=400, step=-15.0, at=ANCHOR - 20, sigma=2.0, seed=3):
    """(t, pixels): -20 mm/yr, white noise of ``sigma``, and ``step`` mm from epoch ``at`` in the first half."""
    rng = np.random.default_rng(seed)
    d = -20.0 * YEARS[:, None] + rng.normal(0.0, sigma, (len(YEARS), pixels))
    d[at:, : pixels // 2] += step
    return d


def test_a_recent_step_is_found_and_the_adaptive_curve_forecasts_the_rate_not_the_jump():
    from insarcast.baselines import fits, find_steps

    d = _stepped()
    f = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6)
    offset, first = find_steps(d, YEARS, ANCHOR, history=T, noise=f.noise)
    # the jump of -15 mm at epoch ANCHOR - 20 in the first 200 pixels, nothing in the others
    assert np.mean(np.abs(offset[:200] + 15.0) < 2.5) >= 0.95 and np.mean(first[:200] == ANCHOR - 20) >= 0.9
    assert not offset[200:].any()
    true = -20.0 * (YEARS[ANCHOR + F] - YEARS[ANCHOR])                    # -1.971 mm over 36 days
    plain = change_at_f(fits(d, YEARS, ANCHOR, F, history=T, hindcast=6).adaptive())
    stepped_fit = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6, reference=True)
    stepped = change_at_f(stepped_fit.adaptive())
    rms = lambda e: float(np.sqrt(np.mean(e ** 2)))                      # noqa: E731
    assert rms(stepped[:200] - true) < 0.5 * rms(plain[:200] - true)
    assert rms(stepped[:200] - true) < 1.0
    # no step: the reference's fits of those pixels alone, as if no pixel beside them jumped
    alone = change_at_f(fits(d[:, 200:], YEARS, ANCHOR, F, history=T, hindcast=6, reference=True).adaptive())
    np.testing.assert_allclose(stepped[200:], alone, rtol=0, atol=1e-9)
    assert np.mean(np.abs(stepped_fit.step[:200] + 15.0) < 2.5) >= 0.9 and not stepped_fit.step[200:].any()


def test_the_residual_channel_of_a_stepped_pixel_is_taken_from_the_series_the_curves_were_fitted_to():
    # a -15 mm step 8 epochs before the anchor, inside the T = 12 window: the network's residual channel and
    # the correction's lags (d - R over the window) must hold the noise (sigma 2 mm), not the step
    from insarcast.baselines import fits
    from insarcast.udf.inputs import model_inputs

    n = ANCHOR + 1
    d = _stepped(pixels=64, at=ANCHOR - 8)[:n].T.reshape(8, 8, n).transpose(2, 0, 1).astype(np.float32)
    unit = {"input_mean": 0.0, "input_std": 1.0, "target_mean": 0.0, "target_std": 1.0}
    x = model_inputs(d[None], None, history=T, horizon=F, norm=unit, inputs="residual-hindcast", years=YEARS[:n]).x
    stepped = fits(d, YEARS[:n], ANCHOR, F, history=T, hindcast=6, reference=True)
    hit = stepped.step != 0                                                 # the first half's 32 pixels, mostly
    assert hit[:4].mean() >= 0.9 and not hit[4:].any()
    residual = x[0, :, 2][:, hit]                                           # (T, pixels) mm
    assert np.sqrt(np.mean(residual ** 2)) < 1.3 * 2.0                      # the noise's RMS, about 2 mm
    raw = d[ANCHOR - T + 1:, hit] - stepped.adaptive()[:T][:, hit]          # what it was: the step's 4 epochs
    assert np.sqrt(np.mean(raw[:4] ** 2)) > 10.0
    np.testing.assert_allclose(stepped.without_step(d[ANCHOR - T + 1:], ANCHOR)[4:], d[ANCHOR - T + 5:])


def change_at_f(curve):
    return curve[T - 1 + F] - curve[T - 1]


def test_only_the_adaptive_baseline_removes_steps_the_practitioners_stay_plain_least_squares():
    from insarcast.baselines import fits, forecasts

    d = _stepped()
    got = forecasts(("linear", "trend_annual", "adaptive"), d, YEARS, ANCHOR, F, history=T)
    plain = fits(d, YEARS, ANCHOR, F, history=T)
    stepped = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6, reference=True)
    assert np.mean(stepped.step[:200] != 0) >= 0.9
    for name, curve in (("linear", plain.linear), ("trend_annual", plain.long), ("adaptive", stepped.adaptive())):
        np.testing.assert_allclose(got[name][-1], change_at_f(curve), rtol=0, atol=1e-5, err_msg=name)
    assert np.abs(got["adaptive"][-1] - change_at_f(plain.adaptive()))[:200].max() > 1.0


def test_white_noise_rarely_passes_for_a_step_and_then_the_hindcast_keeps_the_plain_fit():
    from insarcast.baselines import fits, find_steps

    rng = np.random.default_rng(6)
    d = -10.0 * YEARS[:, None] + rng.normal(0.0, 3.0, (len(YEARS), 2000))       # 2,000 pixels, 3 mm
    plain, stepped = (fits(d, YEARS, ANCHOR, F, history=T, hindcast=6, reference=s) for s in (False, True))
    offset, _ = find_steps(d, YEARS, ANCHOR, history=T, noise=plain.noise)
    assert np.count_nonzero(offset) <= 10                      # the likelihood ratio's tail: 2 here
    assert np.count_nonzero(stepped.step) <= 2
    true = -10.0 * (YEARS[ANCHOR + F] - YEARS[ANCHOR])
    rms = lambda c: float(np.sqrt(np.mean((change_at_f(c) - true) ** 2)))   # noqa: E731
    assert rms(stepped.adaptive()) <= rms(plain.adaptive()) + 1e-3


@pytest.mark.parametrize("kind", ["annual", "acceleration", "change of rate"])
def test_smooth_motion_is_not_fitted_as_a_step(kind):
    # 300 pixels of one kind of motion with 1 mm of noise: a sinusoid of 5 to 20 mm, an acceleration of
    # up to 40 mm/yr^2, a rate that changes by up to 100 mm/yr 15 epochs before the anchor
    from insarcast.baselines import fits

    rng = np.random.default_rng(5)
    t = YEARS[:, None]
    d = {"annual": rng.uniform(5, 20, 300) * np.sin(2 * np.pi * t + rng.uniform(0, 6, 300)),
         "acceleration": 0.5 * rng.uniform(-40, 40, 300) * t ** 2,
         "change of rate": np.maximum(t - YEARS[ANCHOR - 15], 0.0) * rng.uniform(-100, 100, 300)}[kind]
    noisy = d + rng.normal(0.0, 1.0, d.shape)
    plain, stepped = (fits(noisy, YEARS, ANCHOR, F, history=T, hindcast=6, reference=s) for s in (False, True))
    assert np.mean(stepped.step != 0) <= 0.01
    true = d[ANCHOR + F] - d[ANCHOR]
    rms = lambda c: float(np.sqrt(np.mean((change_at_f(c) - true) ** 2)))   # noqa: E731
    assert rms(stepped.adaptive()) <= 1.01 * rms(plain.adaptive())


def test_the_report_names_the_pixels_whose_series_jumps():
    from insarcast.report.build import final_reference, step_note

    def note_of(d):
        return step_note(final_reference(d, YEARS[: ANCHOR + 1], history=T, horizon=F), d, history=T, km2=0.01)

    d = _stepped(pixels=400).reshape(len(YEARS), 20, 20)[: ANCHOR + 1]      # 200 pixels jump by -15 mm
    note = note_of(d.astype(np.float32))
    count = int(note.split()[1])
    assert 180 <= count <= 200 and f"({count * 0.01:.2f} km²)" in note and "within its last 48 epochs" in note
    still = -20.0 * np.broadcast_to(YEARS[: ANCHOR + 1, None, None], (ANCHOR + 1, 4, 4))
    assert note_of(still.astype(np.float32)) is None


def test_the_reference_drops_an_annual_sinusoid_its_data_cannot_tell_from_noise():
    # 2,000 pixels of a -10 mm/yr trend in 3 mm of white noise, no annual cycle: least squares fits the
    # noise's sinusoid, and the reference shrinks it by max(0, 1 - 2 / z^2) with z^2 its Wald statistic, a
    # chi-square of 2 degrees of freedom here, so P(z^2 <= 2) = 1 - exp(-1) = 0.632 of them lose it whole
    from insarcast.baselines import fits, trend_annual

    rng = np.random.default_rng(11)
    d = -10.0 * YEARS[:, None] + rng.normal(0.0, 3.0, (len(YEARS), 2000))
    plain = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6)
    ref = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6, reference=True)
    line_only = np.abs(np.diff(ref.long, n=2, axis=0)).max(axis=0) < 1e-9       # regular epochs: a line
    assert 0.58 <= line_only.mean() <= 0.69
    assert not (np.abs(np.diff(plain.long, n=2, axis=0)).max(axis=0) < 1e-9).any()
    true = -10.0 * (YEARS[ANCHOR + F] - YEARS[ANCHOR])
    rms = lambda c: float(np.sqrt(np.mean((change_at_f(c) - true) ** 2)))   # noqa: E731
    assert rms(ref.long) < 0.6 * rms(plain.long)
    # the practitioner's trend + annual stays plain least squares
    np.testing.assert_allclose(trend_annual(d, YEARS, ANCHOR, F, history=T)[-1], change_at_f(plain.long), atol=1e-5)


def test_the_reference_keeps_an_annual_cycle_the_ground_has():
    # a 4 mm cycle in 2 mm of noise over 150 epochs: z^2 is about 150 (4 / 2)^2 / 2 = 300, the factor 0.99 and more
    from insarcast.baselines import fits

    rng = np.random.default_rng(12)
    d = series()[:, :1, 0] + rng.normal(0.0, 2.0, (len(YEARS), 500))
    plain = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6)
    ref = fits(d, YEARS, ANCHOR, F, history=T, hindcast=6, reference=True)
    season = change_at_f(plain.long) - (-30.0) * (YEARS[ANCHOR + F] - YEARS[ANCHOR])
    np.testing.assert_allclose(change_at_f(ref.long), change_at_f(plain.long), atol=0.02 * np.abs(season).max())


def test_the_reference_of_a_history_too_short_for_a_hindcast_origin_is_the_misfit_rules():
    # T + F epochs leave no origin a - F - j with T epochs before it: no hindcast, no shrink, no step search
    from insarcast.baselines import fits

    rng = np.random.default_rng(13)
    d = -10.0 * YEARS[:, None] + rng.normal(0.0, 1.0, (len(YEARS), 20))
    a = T + F - 2
    ref, plain = (fits(d, YEARS, a, F, history=T, hindcast=6, reference=r) for r in (True, False))
    assert np.isnan(ref.hindcast).all()
    np.testing.assert_array_equal(ref.adaptive(), plain.adaptive())
