"""The report: each diagnostic on constructed inputs, then the whole page on a tiny run.

The diagnostics are checked against numbers worked out by hand: a hindcast of a constant-velocity
cube with a constant forecast, planted outliers for the robust Q-Q fit, a fault trace on the grid for
the distance bands, a forecast calibrated by construction for the reliability diagram.
"""

import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insarcast.errors import InputError
from insarcast.report import calibration, residuals, tables
from insarcast.report.hindcast import hindcast
from insarcast.report.zones import Feature, Zones, zone_distances

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("INSARCAST_ARTIFACTS", ROOT / "artifacts"))


# ------------------------------------------------------------------------ constructed inputs

def _velocity_cube(nt=40, ny=12, nx=10, rate=0.5):
    """displacement = rate * i mm at epoch i (6-day epochs), on a 100 m EPSG:3035 grid; one hole."""
    import rioxarray  # noqa: F401

    t = np.datetime64("2020-01-01", "ns") + np.arange(nt) * np.timedelta64(6, "D")
    d = np.broadcast_to((rate * np.arange(nt, dtype=np.float32))[:, None, None], (nt, ny, nx)).copy()
    d[:, 3, 4] = np.nan
    ds = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), np.isfinite(d).all(0))},
                    coords={"t": t, "y": 3_000_050.0 + 100.0 * np.arange(ny)[::-1], "x": 4_000_050.0 + 100.0 * np.arange(nx)})
    return ds.rio.write_crs("EPSG:3035")


class _ConstantEnsemble:
    """An ensemble whose K members all forecast ``value`` mm of change at every step (normalised 0)."""

    def __init__(self, value, *, members=3, history=6, steps=4, patch=8):
        norm = {"input_mean": 0.0, "input_std": 1.0, "target_mean": float(value), "target_std": 1.0}

        def predict(x):
            return np.zeros((members, x.shape[0], steps, patch, patch), np.float32)

        self.settings = {"predict": predict, "history": history, "horizon_steps": steps, "patch": patch,
                         "norm": norm, "members": members}


def test_a_residual_hindcast_sees_the_whole_history():
    """An untrained residual ensemble forecasts its adaptive baseline, fitted over every epoch up to the
    anchor: on a pure annual cycle that is the cycle itself, not the line through the last T epochs."""
    from insarcast.baselines import adaptive, decimal_years, linear

    nt, T, F = 120, 6, 4                                       # 2 years of 6-day epochs
    ds = _velocity_cube(nt=nt, rate=0.0)
    years = decimal_years(ds["t"].values)
    season = (5.0 * np.sin(2 * np.pi * years)).astype(np.float32)
    ds["displacement"] = ds["displacement"] + xr.DataArray(season, dims="t")
    ensemble = _ConstantEnsemble(0.0, history=T, steps=F)
    ensemble.settings["inputs"] = "residual"
    hc = hindcast(ds, ensemble)
    a = hc.products.attrs["anchor_index"]
    d = ds["displacement"].values[: a + 1, 5:6, 5]
    expected = adaptive(d, years, a, F, history=T)[-1, 0]
    assert np.nanmedian(hc.products["median"].values[-1]) == pytest.approx(expected, abs=1e-3)
    assert abs(expected - linear(d, years, a, F, history=T)[-1, 0]) > 0.3     # the window's line differs


def test_hindcast_residuals_equal_the_known_values():
    rate, value, F = 0.5, -1.0, 4
    ds = _velocity_cube(rate=rate)
    hc = hindcast(ds, _ConstantEnsemble(value, steps=F))
    nt = ds.sizes["t"]
    assert hc.products.attrs["anchor_index"] == nt - 1 - F
    assert hc.products.attrs["in_test_period"] == 1
    observed = hc.observed.values
    for h in range(1, F + 1):
        obs = observed[h - 1]
        assert np.isnan(obs[3, 4])                                    # the hole has no observation
        np.testing.assert_allclose(obs[np.isfinite(obs)], rate * h, rtol=1e-6)
        residual = hc.products["median"].values[h - 1] - obs
        np.testing.assert_allclose(residual[np.isfinite(residual)], value - rate * h, rtol=1e-6)
    summary = residuals.residual_summary(hc.products["median"].values[F - 1] - observed[F - 1])
    stats = dict(zip(summary["statistic"], summary["value"]))
    assert stats["n"] == ds.sizes["y"] * ds.sizes["x"] - 1
    assert stats["mean"] == pytest.approx(value - rate * F) and stats["rmse"] == pytest.approx(abs(value - rate * F))


def test_hindcast_refuses_an_anchor_without_room_for_history_and_targets():
    with pytest.raises(InputError, match="anchor"):
        hindcast(_velocity_cube(), _ConstantEnsemble(0.0), anchor=-2)


def test_a_negative_anchor_counts_from_the_end_and_a_bad_one_says_both_ranges():
    ds, F = _velocity_cube(), 4                                       # 40 epochs, T = 6
    assert hindcast(ds, _ConstantEnsemble(0.0, steps=F), anchor=-5).products.attrs["anchor_index"] == 35
    message = r"anchor -2 \(epoch 38, counted from the end\) leaves no room .* valid anchors 5..35, or -35..-5 counted"
    with pytest.raises(InputError, match=message):
        hindcast(ds, _ConstantEnsemble(0.0, steps=F), anchor=-2)


# -------------------------------------------------------------- the report's inputs, checked up front

def _small_stores(tmp_path, **attrs):
    """A small cube and the products of a constant ensemble on it (a hindcast's products are the products
    of `insarcast forecast` on the cut cube), as Zarr stores; ``attrs`` changed (None: deleted)."""
    ds = _velocity_cube()
    products = hindcast(ds, _ConstantEnsemble(-1.0)).products
    for name, value in attrs.items():
        if value is None:
            del products.attrs[name]
        else:
            products.attrs[name] = value
    for store, data in (("cube.zarr", ds), ("products.zarr", products)):
        data = data.copy()
        for variable in data.variables.values():
            variable.encoding = {}
        data.to_zarr(tmp_path / store, zarr_format=2, consolidated=True)
    return tmp_path / "cube.zarr", tmp_path / "products.zarr"


@pytest.mark.parametrize("attrs, message", [
    ({"q85": None}, "products.zarr, field 'q85': products are missing the attributes ['q85']"),
    ({"horizon": 99}, "products.zarr, field 'horizon': the products' horizon 99 is not one of the horizon steps"),
])
def test_a_products_store_without_what_the_report_needs_is_refused_before_any_work(tmp_path, attrs, message):
    from insarcast.report import build_report

    cube, products = _small_stores(tmp_path, **attrs)
    with pytest.raises(InputError, match=re.escape(message)):        # before the (missing) compare folder
        build_report(cube=cube, products=products, compare_dir=tmp_path / "no-compare", out=tmp_path / "r",
                     progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("bands", [(float("nan"),), (float("inf"),), (250.0, float("nan")), (-1.0,), (500.0, 250.0),
                                   ()])
def test_distance_bands_must_be_finite_positive_and_increasing(tmp_path, bands):
    from insarcast.report import build_report
    from insarcast.report.zones import band_labels

    with pytest.raises(InputError, match="field 'bands': distance bands must be finite positive increasing"):
        band_labels(bands)
    with pytest.raises(InputError, match="option --bands: distance bands must be finite positive increasing"):
        build_report(cube=tmp_path / "none.zarr", products=tmp_path / "none.zarr", compare_dir=tmp_path,
                     out=tmp_path / "r", bands=bands, progress=False)        # refused before anything is read


def test_the_report_names_the_anchor_option(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from insarcast.report import build, build_report

    ds = _velocity_cube()
    inputs = SimpleNamespace(ds=ds, prod=hindcast(ds, _ConstantEnsemble(-1.0)).products,
                             ensemble=_ConstantEnsemble(0.0), notes=[])
    monkeypatch.setattr(build, "_read_inputs", lambda **kwargs: inputs)
    monkeypatch.setattr(build, "_product_layers", lambda prod, km2: None)
    with pytest.raises(InputError, match=r"^option --anchor: anchor -2 \(epoch 38, counted from the end\)"):
        build_report(cube=tmp_path, products=tmp_path, compare_dir=tmp_path, out=tmp_path / "r", anchor=-2,
                     progress=False)


def test_the_tune_folder_of_runs_recorded_from_another_folder_is_found_beside_compare(tmp_path):
    from insarcast.report.build import _tune_dir_of

    names = ["cnn-lstm/manual/seed_0/metrics.json", "gru/tpe/seed_0/trial_001/metrics.json"]
    for name in names:
        (tmp_path / "demo" / "tune" / name).parent.mkdir(parents=True)
        (tmp_path / "demo" / "tune" / name).write_text("{}")
    (tmp_path / "demo" / "compare").mkdir()
    for recorded in ("demo_base/tune", "/elsewhere/demo_base/tune"):     # compare ran in another folder
        runs = pd.DataFrame({"file": [f"{recorded}/{n}" for n in names]})
        notes = []
        assert _tune_dir_of({"runs": runs}, tmp_path / "demo" / "compare", notes) == tmp_path / "demo" / "tune"
        assert recorded in notes[0] and "beside the compare folder" in notes[0]
    runs = pd.DataFrame({"file": [f"demo_base/tune/{n}" for n in names + ["lstm/manual/seed_9/metrics.json"]]})
    assert _tune_dir_of({"runs": runs}, tmp_path / "demo" / "compare", []) is None     # not those runs' folder


def test_residual_maps_left_out_are_a_warning_not_only_a_note():
    from types import SimpleNamespace

    from insarcast.errors import InsarcastWarning
    from insarcast.report import build

    inputs = SimpleNamespace(tune_dir=None, ds=None, notes=[])
    with pytest.warns(InsarcastWarning, match="no tune folder found .*residual maps are missing"):
        entries, _ = build._best_single_models(inputs, SimpleNamespace(anchor=10, steps=3), horizon=3,
                                               say=lambda _: None)
    assert entries == [] and "no tune folder found" in inputs.notes[0]


def test_the_robust_qq_fit_ignores_planted_outliers_where_ols_does_not():
    from scipy import stats

    sigma = 2.0
    n = 1000
    clean = sigma * stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)        # exact normal quantiles
    planted = np.concatenate([clean, np.full(30, 60.0), np.full(30, -60.0)])
    fits = residuals.qq_fits(planted).set_index("line")
    assert fits.loc["theil_sen", "slope_mm"] == pytest.approx(sigma, rel=0.1)
    assert fits.loc["ols", "slope_mm"] > 1.5 * sigma                 # pulled up by the 6 % outliers
    assert fits.loc["theil_sen", "intercept_mm"] == pytest.approx(0.0, abs=0.05)
    tails = residuals.tail_quantiles(planted, residuals.qq_fits(planted)).set_index("quantile")
    assert tails.loc["Q99", "residual_mm"] == pytest.approx(60.0)
    assert tails.loc["Q1", "residual_mm"] == pytest.approx(-60.0)


def test_zone_bands_count_the_right_pixels():
    x = 50.0 + 100.0 * np.arange(50)          # centres 50 .. 4950 m
    y = 50.0 + 100.0 * np.arange(5)[::-1]
    fault = Feature(kind="fault", name="f", parts=(np.array([[1000.0, -1e4], [1000.0, 1e4]]),))
    mine = Feature(kind="mine", name="m", parts=(np.array([[2600.0, -1e4], [3000.0, -1e4], [3000.0, 1e4],
                                                            [2600.0, 1e4], [2600.0, -1e4]]),))
    distances = zone_distances(Zones(features=(fault, mine)), x, y)
    valid = np.ones((5, 50), bool)
    cls = np.zeros((5, 50), np.uint8)
    table = tables.zone_table(distances, valid, cls, {}, 0.01, bands=(250.0, 500.0, 1000.0))
    pixels = {(r.zone, r.band): r.pixels for r in table.itertuples()}
    # Fault at x = 1000: columns with |x - 1000| < 250 are 850, 950, 1050, 1150 -> 4 columns of 5 rows.
    assert pixels[("fault", "0-250 m")] == 4 * 5
    assert pixels[("fault", "250-500 m")] == 6 * 5           # 550..750 and 1250..1450 (|d| in [250, 500))
    assert pixels[("fault", "500-1000 m")] == 10 * 5         # 50..450 (d 950..550) and 1550..1950
    # Mine from x = 2600 to 3000: centres 2650 .. 2950 inside (4 columns).
    assert pixels[("mine", "inside")] == 4 * 5
    assert pixels[("mine", "0-250 m")] == 4 * 5              # 2450, 2550 | 3050, 3150 (2350 is 250 m away)
    assert pixels[("mine", "250-500 m")] == 6 * 5            # 2150, 2250, 2350 | 3250, 3350, 3450
    # 1000 m or more from both: the centres from 4050 to 4950 only.
    assert pixels[("rest", "> 1000 m from every zone")] == 10 * 5
    assert pixels[("all", "every valid pixel")] == 250


def _geojson(path, *features):
    import json

    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props, "geometry": {"type": gtype, "coordinates": coords}}
        for gtype, coords, props in features]}))
    return path


SQUARE = [[4000000.0, 3000000.0], [4000100.0, 3000000.0], [4000100.0, 3000100.0], [4000000.0, 3000000.0]]
LINE = [[4000000.0, 3000000.0], [4000500.0, 3000500.0]]


def test_zones_read_mines_and_faults_and_note_what_they_ignore(tmp_path):
    from insarcast.report.zones import read_zones

    path = _geojson(tmp_path / "z.geojson", ("Polygon", [SQUARE], {"name": "pit"}),
                    ("MultiPolygon", [[SQUARE], [SQUARE]], {"name": "twin"}),
                    ("MultiLineString", [LINE, LINE], {"name": "graben"}), ("Point", LINE[0], {"name": "well"}),
                    ("LineString", LINE, {"name": "river", "kind": "river"}))
    zones = read_zones(path)
    assert [(f.kind, f.name, len(f.parts)) for f in zones.features] == [("mine", "pit", 1), ("mine", "twin", 2),
                                                                          ("fault", "graben", 2)]
    assert zones.notes == ("zones: features[3] (well) is a Point, neither a polygon nor a line: ignored",
                           "zones: features[4] (river) has kind 'river', neither 'mine' nor 'fault': ignored")


@pytest.mark.parametrize("feature, field, message", [
    (("LineString", LINE, {"kind": "mine"}), "features[0].geometry.type", "a mine must be a polygon"),
    (("Polygon", [[]], {}), "features[0].geometry.coordinates", "a geometry without coordinates"),
])
def test_a_bad_zone_is_refused_naming_the_feature(tmp_path, feature, field, message):
    from insarcast.report.zones import read_zones

    with pytest.raises(InputError, match=message) as err:
        read_zones(_geojson(tmp_path / "z.geojson", feature))
    assert err.value.field == field and err.value.path == str(tmp_path / "z.geojson")


def test_a_perfectly_calibrated_forecast_gives_a_diagonal_reliability_curve():
    K = 5
    probabilities, observed = [], []
    for k in range(K + 1):                     # 20 pixels per level; exactly k/K of them exceed
        p = k / K
        probabilities += [p] * 20
        observed += [10.0] * int(round(20 * p)) + [0.0] * (20 - int(round(20 * p)))
    p = np.array(probabilities)
    obs = np.array(observed)
    rel, brier = calibration.reliability({85: p, 95: p, 99: p}, obs, {85: 5.0, 95: 5.0, 99: 5.0}, members=K)
    part = rel[rel["threshold"] == "P95"]
    np.testing.assert_allclose(part["observed_frequency"], part["forecast_probability"])
    assert list(part["pixels"]) == [20] * (K + 1)
    # Brier by hand: at level p, a share p of the pixels scores (p-1)^2, the rest p^2: p(1-p) on average.
    expected = np.mean([q * (1 - q) for q in np.arange(K + 1) / K])
    assert float(brier.loc[brier["threshold"] == "P95", "brier"].iloc[0]) == pytest.approx(expected)
    assert float(brier.loc[brier["threshold"] == "P95", "base_rate"].iloc[0]) == pytest.approx(0.5)


def test_observation_sigma_recovers_the_noise_under_a_nonlinear_deformation():
    rng = np.random.default_rng(3)
    t = np.arange(300) * 6 / 365.25
    signal = -80 * np.tanh((t - 2.5) * 1.5) + 3 * np.sin(2 * np.pi * t)      # a trough arriving, and seasons
    series = signal[:, None, None] + rng.normal(0.0, 2.5, size=(300, 4, 50))
    series[:, 0, :3] = np.nan                                                   # no data: NaN sigma
    cube = xr.DataArray(series.astype(np.float32), dims=("t", "y", "x"))
    sigma = calibration.observation_sigma(cube, anchor=279, rows_per_block=3)
    assert np.isnan(sigma[0, :3]).all()
    assert np.nanmedian(sigma) == pytest.approx(2.5, rel=0.04)
    # a least-squares trend plus annual fit would take the tanh for noise: its residual is far larger
    design = np.column_stack([np.ones_like(t), t, np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])[:280]
    fit = design @ np.linalg.lstsq(design, series[:280, 1, 0], rcond=None)[0]
    assert np.std(series[:280, 1, 0] - fit) > 4 * 2.5


def test_the_observation_predictive_widens_by_what_the_products_add_to_the_fit():
    """forecast_scale^2 = s^2 + (m - r)^2: a level error of 0.3 mm and a departure of 0.4 mm give a level
    scale of 0.5 mm (3-4-5); without products' scale, or where it is NaN, the level scale is kept."""
    level = np.full((2, 1, 2), 0.3)
    change = np.full((2, 1, 2), 1.2)
    fs = np.sqrt(change ** 2 + 0.4 ** 2)
    fs[1, 0, 1] = np.nan
    out = calibration.with_departure(level, change, fs)
    np.testing.assert_allclose(out[0], 0.5)
    assert out[1, 0, 0] == pytest.approx(0.5) and out[1, 0, 1] == pytest.approx(0.3)
    np.testing.assert_array_equal(calibration.with_departure(level, change, None), level)


def test_with_the_observation_noise_an_exact_ensemble_is_calibrated():
    rng = np.random.default_rng(4)
    n, k, sigma = 20000, 10, 2.0
    truth = rng.normal(0.0, 3.0, size=(1, n))
    members = np.repeat(truth, k, axis=0) + rng.normal(0.0, 0.01, size=(k, n))   # the signal, nearly exact
    scale = np.full(n, np.sqrt(2) * sigma)
    observed = truth[0] + rng.normal(0.0, np.sqrt(2) * sigma, size=n)           # two noisy epochs
    table, _ = calibration.coverage(members[:, None], observed[None])
    assert float(table.loc[table["horizon"] == "all", "within_range"].iloc[0]) < 0.01   # raw: underdispersed
    pits = calibration.pit_table(calibration.pit(members, scale, observed))
    np.testing.assert_allclose(pits["frequency"].iloc[:10], 0.1, atol=0.012)   # uniform PIT
    assert float(pits.loc[pits["bin"] == "central_80", "frequency"].iloc[0]) == pytest.approx(0.8, abs=0.01)
    # by hand: d = 0, Q = 1.6449 s  ->  P(|e| >= Q) = 2 (1 - Phi(1.6449)) = 0.1
    p = calibration.noisy_exceedance(np.zeros((k, 3)), np.array([2.0, 1.0, np.nan]), 1.6449 * 2.0)
    assert p[0] == pytest.approx(0.1, abs=1e-4) and p[1] == pytest.approx(0.001, abs=1e-4) and np.isnan(p[2])
    # the noisy exceedance probabilities are reliable: observed frequency follows them, tenth by tenth
    thresholds = {85: 3.0, 95: 5.0, 99: 8.0}
    probs = {tau: calibration.noisy_exceedance(members, scale, q) for tau, q in thresholds.items()}
    rel, brier = calibration.reliability(probs, np.abs(observed), thresholds, members=None)
    filled = rel[rel["pixels"] >= 300]
    np.testing.assert_allclose(filled["observed_frequency"], filled["mean_probability"], atol=0.05)
    raw = {tau: (np.abs(members) >= q).mean(axis=0) for tau, q in thresholds.items()}
    _, raw_brier = calibration.reliability(raw, np.abs(observed), thresholds, members=k)
    assert (brier["brier_skill"] > 0).all() and (brier["brier"] < raw_brier["brier"]).all()


def test_coverage_counts_observations_within_the_members_range():
    members = np.stack([np.full((2, 1, 4), v) for v in (0.0, 1.0, 2.0)])          # K=3, F=2, 1 x 4 pixels
    observed = np.array([[[0.5, 2.5, -1.0, 2.0]], [[1.0, 1.0, np.nan, 3.0]]])
    table, per_pixel = calibration.coverage(members, observed)
    row = table.set_index("horizon")
    assert row.loc["1", "within_range"] == pytest.approx(2 / 4)               # 0.5 and 2.0 are within
    assert row.loc["2", "within_range"] == pytest.approx(2 / 3)               # 1.0, 1.0 within; 3.0 not
    assert row.loc["all", "nominal_range"] == pytest.approx(0.5)              # (K-1)/(K+1)
    np.testing.assert_allclose(per_pixel[0], [1.0, 0.5, 0.0, 0.5])


def test_the_worth_section_says_how_many_members_keep_their_reference():
    from insarcast.report.build import _kept_line

    from insarcast.udf.manifest import Manifest

    class Fake:                                      # what _kept_line reads of a loaded Ensemble
        def __init__(self, inputs, kept, k):
            # the manifest's own sentence over a manifest of k members, kept of them zero_output
            self.inputs, self.k = inputs, k
            self.manifest = type("M", (), {"members_zero_output": kept, "members": [None] * k,
                                           "zero_output_sentence": Manifest.zero_output_sentence})()

        def __len__(self):
            return self.k

    assert _kept_line(Fake("paper", 0, 10)) == []
    assert _kept_line(Fake("residual-hindcast", 0, 10)) == ["Every one of the 10 members corrects its reference "
                                                            "forecast."]
    assert _kept_line(Fake("residual-hindcast", 9, 10))[0].startswith("9 of the 10 members keep their reference")
    assert _kept_line(Fake("residual-hindcast", 9, 10))[0].endswith("so the ensemble median is the reference forecast.")
    assert "median" not in _kept_line(Fake("residual-hindcast", 5, 10))[0]     # 5 of 10: no majority
    corrected = _kept_line(Fake("residual-corrected", 9, 10))
    assert len(corrected) == 2 and "generated scenarios, not to this cube" in corrected[1]


def test_tiers_follow_class_and_uncertainty():
    cls = np.array([[3, 2, 2, 1, 0, 255]], np.uint8)
    biv = np.array([[6, 7, 8, 4, 0, 255]], np.uint8)                       # 3 s + u
    codes = tables.tier_codes(cls, biv)
    assert codes.tolist() == [[0, 1, 1, 2, 3, -1]]
    table = tables.tier_table(codes, 0.01)
    assert list(table["pixels"]) == [1, 2, 1, 1] and table["area_km2"].iloc[1] == pytest.approx(0.02)


def test_figure_10_has_the_best_manual_and_tpe_model_of_all_six_architectures(tmp_path, monkeypatch):
    """Figure 10 (panels a-l): the best manual and the best TPE model of each of the six architectures,
    not only the paper's one; a missing one is said in the notes."""
    pytest.importorskip("matplotlib")
    from types import SimpleNamespace

    from insarcast.contract import ARCHS
    from insarcast.report import build, figures
    from insarcast.report.hindcast import RunModel

    found = {(arch, strategy): RunModel(path=tmp_path / arch / strategy / "model.pt", arch=arch, strategy=strategy,
                                        seed=0, trial=1, val_loss=0.5)
             for arch in ARCHS for strategy in ("manual", "tpe")}
    ny, nx, steps = 4, 5, 3

    def best_models(tune_dir, archs):
        return {key: m for key, m in found.items() if key[0] in archs}

    def model_forecast(path, cube, *, anchor):
        level = 1.0 + len(str(path))                             # each model its own forecast
        return np.full((steps, ny, nx), level, np.float32), {"horizon": steps}

    monkeypatch.setattr(build, "best_models", best_models)
    monkeypatch.setattr(build, "model_forecast", model_forecast)
    inputs = SimpleNamespace(tune_dir=tmp_path, ds=None, notes=[])
    hind = SimpleNamespace(anchor=10, steps=steps)
    entries, _ = build._best_single_models(inputs, hind, horizon=steps, say=lambda _: None)
    assert [(e["arch"], e["strategy"]) for e in entries] == [(a, s) for a in ARCHS for s in ("manual", "tpe")]
    assert inputs.notes == []
    panels = [(e["label"], np.abs(e["forecast"])) for e in entries]
    grid = figures.MapGrid(np.arange(nx) * 100.0, np.arange(ny) * 100.0)
    fig = figures.abs_residual_models_figure(grid, panels)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [e["label"] for e in entries] and len(titles) == 12

    del found[("gcn-lstm", "tpe")]
    inputs.notes.clear()
    entries, _ = build._best_single_models(inputs, hind, horizon=steps, say=lambda _: None)
    assert len(entries) == 11 and "gcn-lstm tpe" in inputs.notes[0]


# ---------------------------------------------------------------------------- a tiny run

@pytest.fixture(scope="module")
def tiny_run(tiny_demo):
    """What the report reads, from the tiny demo (six architectures tuned, manual and TPE, compared,
    exported, forecast); the report under test is written beside the demo's folder, not into it."""
    from insarcast.demo import COMPARE, CUBE, ENSEMBLE, PRODUCTS, SCENARIO
    from insarcast.synth import ZONES_NAME

    out = tiny_demo[0]
    return {"cube": out / CUBE, "products": out / PRODUCTS, "compare_dir": out / COMPARE,
            "zones": out / SCENARIO / ZONES_NAME, "root": out.parent, "ensemble": out / ENSEMBLE}


@pytest.fixture(scope="module")
def report(tiny_run):
    from insarcast.report import build_report

    out = tiny_run["root"] / "report-under-test"
    index = build_report(cube=tiny_run["cube"], products=tiny_run["products"], compare_dir=tiny_run["compare_dir"],
                         zones=tiny_run["zones"], out=out, progress=False)
    return index


class _Page(HTMLParser):
    """Tables (data-csv, cells' data-value), quoted numbers, figures and section ids of the page."""

    def __init__(self):
        super().__init__()
        self.tables, self.numbers, self.images, self.sections, self.scripts = {}, [], [], [], 0
        self._table = self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a["data-csv"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._row.append(a["data-value"])
        elif tag == "span" and a.get("class") == "num":
            self.numbers.append(a)
        elif tag == "img":
            self.images.append(a)
        elif tag == "section":
            self.sections.append(a["id"])
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "tr" and self._row:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def _page(index: Path) -> _Page:
    page = _Page()
    page.feed(index.read_text(encoding="utf-8"))
    return page


@pytest.mark.slow                      # the whole-pipeline tiny demo (conftest's tiny_demo)
def test_the_report_has_every_section_figure_and_table(report, tiny_run):
    from insarcast.report.build import SECTIONS
    from insarcast.udf.manifest import read_manifest

    page = _page(report)
    manifest = read_manifest(tiny_run["ensemble"])            # the worth section says how many members it ran
    kept, k = manifest.members_zero_output, len(manifest.members)
    assert (f"{kept} of the {k} members keep their reference" if kept else
            f"Every one of the {k} members corrects") in report.read_text(encoding="utf-8")
    assert xr.open_zarr(tiny_run["products"]).attrs["members_zero_output"] == kept
    assert page.sections == list(SECTIONS)
    assert page.scripts == 0
    files = {Path(img["data-file"]).stem for img in page.images}
    assert files >= {"compare_violins", "compare_forest", "compare_histories", "susceptibility", "bivariate",
                     "exceedance", "skill", "residual_map", "qq", "abs_residuals", "overlay", "zones", "reliability",
                     "coverage", "reliability_noise", "pit", "tiers"}
    for img in page.images:                        # embedded, and the same bytes as the PNG file beside it
        assert img["src"].startswith("data:image/png;base64,")
        import base64

        assert base64.b64decode(img["src"].split(",", 1)[1]) == (report.parent / img["data-file"]).read_bytes()
    assert {Path(t).stem for t in page.tables} >= {"metrics", "welch", "classes", "bivariate", "tiers", "zones",
                                                   "hindcast_skill", "qq_fits", "tail_quantiles", "model_residuals",
                                                   "overlay", "rank_correlations", "reliability", "brier",
                                                   "coverage", "reliability_noise", "brier_noise", "pit",
                                                   "key_numbers"}
    # manual and TPE side by side, beside the ensemble
    models = pd.read_csv(report.parent / "tables" / "model_residuals.csv")
    assert set(models["strategy"]) == {"manual", "tpe", "ensemble"}
    from insarcast.contract import ARCHS                       # Figure 10: all six architectures
    singles = models[models["strategy"] != "ensemble"]
    assert set(zip(singles["arch"], singles["strategy"])) == {(a, s) for a in ARCHS for s in ("manual", "tpe")}
    # the architectures' rows and the four baselines
    metrics = pd.read_csv(report.parent / "tables" / "metrics.csv")
    assert {"persistence", "linear", "trend_annual", "seasonal_naive"} <= set(metrics["model"])
    assert set(metrics.loc[metrics["model"] == "resnet-transformer", "strategy"]) == {"manual", "tpe"}
    assert not [p for p in report.parent.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.slow                      # the whole-pipeline tiny demo (conftest's tiny_demo)
def test_every_number_in_the_page_equals_its_csv(report):
    page = _page(report)
    for csv, rows in page.tables.items():
        frame = tables.read_csv(report.parent / csv)
        assert len(rows) == len(frame), csv
        for row, (_, expected) in zip(rows, frame.iterrows()):
            for text, value in zip(row, expected):
                if isinstance(value, float) and math.isnan(value):
                    assert text in ("", "nan"), (csv, text)
                elif isinstance(value, (float, np.floating)):
                    assert float(text) == value, (csv, text, value)
                else:
                    assert text == str(value), (csv, text, value)
    keys = tables.read_csv(report.parent / "tables" / "key_numbers.csv").set_index("name")["value"]
    assert len(page.numbers) >= 10
    for span in page.numbers:
        expected = keys[span["data-key"]]
        assert float(span["data-value"]) == pytest.approx(expected, nan_ok=True), span
    # the key numbers restate the tables they summarise
    tiers = tables.read_csv(report.parent / "tables" / "tiers.csv").set_index("tier")
    assert keys["intervention_km2"] == tiers.loc["intervention", "area_km2"]
    skill = tables.read_csv(report.parent / "tables" / "hindcast_skill.csv")
    row = skill[(skill["source"] == "persistence") & (skill["horizon"].astype(str) == str(int(keys["horizon"])))]
    assert keys["persistence_rmse_mm"] == float(row["rmse"].iloc[0])


@pytest.mark.slow                      # the whole-pipeline tiny demo (conftest's tiny_demo)
def test_the_report_opens_in_headless_chromium(report):
    from insarcast.report.browser import check_page, find_browser, screenshot

    if find_browser() is None:
        if os.environ.get("INSARCAST_REQUIRE_BROWSER"):
            pytest.fail("INSARCAST_REQUIRE_BROWSER is set but no Chromium was found")
        pytest.skip("no headless Chromium (apt-get install chromium)")
    check = check_page(report)
    assert check.ok, check
    assert check.images >= 15 and check.height > 3000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = screenshot(report, ARTIFACTS / "report-screenshot.png", height=check.height)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow                      # the whole-pipeline tiny demo (conftest's tiny_demo)
def test_products_of_another_cube_are_refused_and_nothing_is_written(tiny_run, tmp_path):
    from insarcast.report import build_report

    shifted = tmp_path / "shifted.zarr"
    ds = xr.open_zarr(tiny_run["products"]).load()
    ds = ds.assign_coords(x=ds["x"] + 100.0)
    ds.to_zarr(shifted, zarr_format=2, consolidated=True)
    with pytest.raises(InputError, match="x"):
        build_report(cube=tiny_run["cube"], products=shifted, compare_dir=tiny_run["compare_dir"],
                     zones=tiny_run["zones"], out=tmp_path / "report", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shifted.zarr"]


@pytest.mark.slow                      # the whole-pipeline tiny demo (conftest's tiny_demo)
def test_report_cli_refuses_a_missing_compare_folder(tiny_run, tmp_path):
    from click.testing import CliRunner

    from insarcast.cli import main

    result = CliRunner().invoke(main, ["report", str(tiny_run["products"]), "--cube", str(tiny_run["cube"]),
                                       "--compare", str(tmp_path / "nope"),
                                       "--out", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 2 and "compare" in result.output
    assert not (tmp_path / "r").exists()
