"""The residual formulation and its scoring: baselines worked out by hand, training inputs equal to the
UDF's, an untrained network that is exactly its reference, the Diebold-Mariano test, and a trained tiny
model whose Highest class sits on a trough of known rate."""

import math

import numpy as np
import pytest

from insarcast import baselines as bl
from insarcast.report.skill import diebold_mariano, map_scores, origins
from insarcast.udf.inputs import INPUTS, model_inputs

T, F, P = 8, 4, 8
STEP = 6.0 / 365.25


def _years(n):
    return np.arange(n) * STEP


def test_adaptive_takes_the_long_fit_on_steady_ground_and_the_line_on_a_new_trend():
    n = 300
    t = _years(n)
    steady = (10.0 * t + 5.0 * np.sin(2 * np.pi * t))[:, None]                  # mm, trend + annual
    kinked = np.where(t > t[-20], -60.0 * (t - t[-20]), 0.0)[:, None]           # a trough starts 20 epochs ago
    a = n - 1 - F
    future = t[a] + STEP * np.arange(1, F + 1)
    # steady: the long fit is the series itself, so its change is exact; the line is not
    exact = 10.0 * (future - t[a]) + 5.0 * (np.sin(2 * np.pi * future) - np.sin(2 * np.pi * t[a]))
    np.testing.assert_allclose(bl.adaptive(steady, t, a, F, history=T)[:, 0], exact, atol=1e-4)
    # kinked: the window is on the new slope (-60 mm/yr), the long fit is not: the line wins
    np.testing.assert_allclose(bl.adaptive(kinked, t, a, F, history=T)[:, 0], -60.0 * (future - t[a]), atol=1e-4)
    np.testing.assert_allclose(bl.linear(kinked, t, a, F, history=T), bl.adaptive(kinked, t, a, F, history=T))


def test_no_annual_term_is_fitted_before_a_year_of_history():
    t = _years(40)                                                              # 0.65 years
    d = (3.0 * t)[:, None] + np.sin(np.arange(40))[:, None] * 0.01
    change = bl.trend_annual(d, t, 39 - F, F, history=T)[:, 0]
    # offset + trend only: the change is the slope (about 3 mm/yr) times the step, nothing seasonal
    np.testing.assert_allclose(change / (STEP * np.arange(1, F + 1)), 3.0, rtol=0.05)


RATE = -100.0                                         # mm/yr at the trough's centre


def _cube(n=80, size=20, seed=0):
    rng = np.random.default_rng(seed)
    t = _years(n)
    yy, xx = np.mgrid[:size, :size]
    trough = np.exp(-((yy - 10) ** 2 + (xx - 10) ** 2) / 8.0)
    d = (RATE * trough[None] * t[:, None, None] + 1.0 * np.sin(2 * np.pi * t)[:, None, None]
         + rng.normal(0, 1.0, (n, size, size))).astype(np.float32)
    valid = np.ones((size, size), bool)
    valid[0, :3] = False
    times = np.datetime64("2020-01-01", "ns") + (np.arange(n) * 6).astype("timedelta64[D]")
    return d, valid, times, trough


@pytest.mark.parametrize("inputs", ["residual", "residual-hindcast", "residual-corrected"])
def test_training_inputs_are_the_udf_inputs_byte_for_byte(inputs, monkeypatch):
    from insarcast.training.data import Windows
    from insarcast.udf.correction import Correction, feature_names
    from insarcast.udf.tiling import forecast_block

    names = feature_names(INPUTS["residual-hindcast"][3:])      # a made-up correction for T 8, F 4, P 8
    made = Correction(history=T, horizon=F, patch=P, features=names, mean=np.zeros(len(names)),
                      std=np.ones(len(names)), layers=((np.full((F, len(names)), 0.01), np.zeros(F)),),
                      output_scale=1.0, grid_spacing=100.0, epoch_days=6.0, about={})
    monkeypatch.setattr("insarcast.udf.inputs.shipped_correction", lambda **kw: made)
    d, valid, times, _ = _cube()
    w = Windows.from_arrays(d, valid, times, history=T, horizon=F, patch=P, stride=4, inputs=inputs)
    a = int(w.anchors("test")[0])
    seen = []

    def record(x):
        seen.append(x.copy())
        return np.zeros((1, len(x), F, P, P), np.float32)

    forecast_block(d[: a + 1], valid, predict=record, history=T, horizon_steps=F, members=1, patch=P,
                   overlap=P // 4, norm=w.norm.to_dict(), batch_size=1, inputs=inputs, years=w.years[: a + 1])
    stride = P - P // 4
    tiles = [(r, c) for r in range(-stride, 20, stride) for c in range(-stride, 20, stride)
             if r + P > 0 and c + P > 0]                     # global row-major order; all hold valid pixels
    r, c = 0, 0
    x_udf = seen[tiles.index((r, c))][0]
    x_train = w.sample(a, (r, c)).x
    assert x_train.shape == (T, len(INPUTS[inputs]), P, P)
    assert x_udf.tobytes() == x_train.tobytes()


@pytest.mark.parametrize("inputs", ["residual", "residual-hindcast"])
def test_an_untrained_residual_model_is_exactly_its_reference(inputs):
    import torch

    from insarcast.training.models import ModelConfig, build_model

    cfg = ModelConfig(arch="resnet-transformer", history=T, horizon=F, patch=P, inputs=inputs,
                      readout="skip", width=8, d_model=16)
    assert cfg.channels == len(INPUTS[inputs])
    x = torch.randn(3, T, cfg.channels, P, P)
    assert torch.count_nonzero(build_model(cfg)(x)) == 0
    d, valid, times, _ = _cube()
    years = (times - times[0]).astype("timedelta64[s]").astype(float) / (365.25 * 86400)
    norm = {"input_mean": 0.0, "input_std": 1.0, "target_mean": 0.0, "target_std": 1.0}
    built = model_inputs(d[None, :60, :P, :P], None, history=T, horizon=F, norm=norm, inputs=inputs,
                         years=years[:60])
    # residual-hindcast corrects the adaptive baseline itself; residual keeps the window-misfit rule
    reference = (bl.adaptive(d[:60, :P, :P], years, 59, F, history=T) if inputs == "residual-hindcast"
                 else bl.change(bl.fits(d[:60, :P, :P], years, 59, F, history=T).adaptive(), T))
    np.testing.assert_allclose(built.reference[0], reference, atol=1e-5)


def test_diebold_mariano_with_the_small_sample_correction_by_hand():
    a = np.array([1.0, 2.0, 1.5, 1.2, 0.8])
    b = a + np.array([0.5, 0.1, 0.4, 0.2, 0.3])
    d = a - b
    n = len(d)
    by_hand = d.mean() / math.sqrt(((d - d.mean()) ** 2).mean() / n) * math.sqrt((n - 1) / n)
    stat, p = diebold_mariano(a, b, lag=1)
    assert stat == pytest.approx(by_hand) and stat < 0
    from scipy import stats

    assert p == pytest.approx(2 * stats.t.sf(abs(by_hand), df=n - 1)) and p < 0.05   # A wins at every origin
    assert diebold_mariano(a, a, lag=1) == (0.0, 1.0)


def test_origins_span_the_test_period_and_maps_score_a_perfect_ranking():
    anchors = origins(100, history=12, horizon=6, start=90, count=4)
    assert anchors[0] == 89 and anchors[-1] == 93
    truth = np.linspace(0, 1, 400).reshape(20, 20)
    classes = np.zeros((20, 20), np.uint8)
    classes[truth >= np.quantile(truth, 0.95)] = 3
    scores = map_scores(truth * 2, classes, truth, np.ones((20, 20), bool), truth > 0.5)
    assert scores["recall_top5"] == 1.0 and scores["precision_top15"] == 1.0
    assert scores["corr_zones"] == pytest.approx(1.0)
    assert "recall_moving" not in scores                     # no moving mask given
    # 40 of the 400 pixels move (the top 10 %); the 20 classed High or Highest are half of them
    moving = truth >= np.quantile(truth, 0.9)
    scores = map_scores(truth * 2, classes, truth, np.ones((20, 20), bool), None, moving)
    assert scores["recall_moving"] == pytest.approx(20 / 40) and scores["moving_share"] == pytest.approx(0.1)


def test_a_trained_tiny_model_puts_the_highest_class_on_a_trough_of_known_rate():
    import torch

    from insarcast.training.data import Windows
    from insarcast.training.models import ModelConfig
    from insarcast.training.params import TrainConfig
    from insarcast.training.trainer import fit
    from insarcast.udf.forecast import forecast_products
    import xarray as xr

    d, valid, times, trough = _cube(n=120, size=24, seed=1)
    w = Windows.from_arrays(d, valid, times, history=T, horizon=F, patch=P, stride=4, inputs="residual")
    cfg = ModelConfig(arch="resnet-transformer", history=T, horizon=F, patch=P, inputs="residual",
                      readout="skip", width=8, d_model=16)
    result = fit(w, cfg, TrainConfig(max_epochs=2, train_samples=64, eval_samples=32, batch_size=16), seed=0)

    def predict(x):
        with torch.no_grad():
            return result.model(torch.from_numpy(x)).numpy()[None]

    cube = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), valid)},
                      coords={"t": times, "y": np.arange(24.0)[::-1] * 100, "x": np.arange(24.0) * 100})
    products = forecast_products(cube, predict, history=T, horizon_steps=F, patch=P, norm=w.norm.to_dict(),
                                 members=1, inputs="residual")
    highest = products["class"].values == 3
    # the trough subsides at 100 mm/yr x exp(-r^2/8): the Highest class (top 1 %, ~6 pixels) is its centre
    assert highest.sum() > 0
    assert trough[highest].min() > 0.6
    # and the forecast there is the trough's rate over the horizon (-100 mm/yr x 24 days = -6.6 mm)
    # plus the annual cycle's change (within +-0.5 mm), within noise
    centre = products["median"].values[-1][trough > 0.9]
    assert np.median(centre) == pytest.approx(RATE * F * STEP, abs=1.0)


def test_training_never_returns_a_correction_worse_than_the_baseline_on_validation():
    import torch

    from insarcast.training.data import Windows
    from insarcast.training.models import ModelConfig
    from insarcast.training.params import TrainConfig
    from insarcast.training.trainer import fit

    d, valid, times, _ = _cube(n=100, size=16, seed=3)
    w = Windows.from_arrays(d, valid, times, history=T, horizon=F, patch=P, stride=4, inputs="residual")
    cfg = ModelConfig(arch="cnn-lstm", history=T, horizon=F, patch=P, inputs="residual", readout="skip", width=8,
                      d_model=16)
    # an absurd learning rate: every epoch is worse than the untrained model, which is the baseline
    result = fit(w, cfg, TrainConfig(lr=0.5, max_epochs=2, patience=2, train_samples=64, eval_samples=32,
                                     batch_size=16), seed=0)
    assert result.best_epoch == -1 and all(h["val_loss"] > result.best_val for h in result.history)
    x = torch.from_numpy(w.sample(int(w.anchors("test")[0]), tuple(w.origins[0])).x[None])
    assert torch.count_nonzero(result.model(x)) == 0         # the untrained model: the baseline (+ target mean)


def test_the_products_show_the_ground_not_the_tiles():
    """Variation across the model tiles' seams is that inside the tiles, for a tiny ensemble of two
    skip-readout members whose corrections are not zero (seam ratio about 1); a predictor that paints
    each tile one value per member (what a pooled correction does at worst) is caught by the same
    measure."""
    import torch
    import xarray as xr

    from insarcast.report.skill import seam_ratio
    from insarcast.training.data import Windows
    from insarcast.training.models import ModelConfig
    from insarcast.training.params import TrainConfig
    from insarcast.training.trainer import fit
    from insarcast.udf.forecast import forecast_products
    from insarcast.udf.tiling import default_overlap, grid_offsets

    size = 40
    d, valid, times, _ = _cube(n=120, size=size, seed=2)
    w = Windows.from_arrays(d, valid, times, history=T, horizon=F, patch=P, stride=4, inputs="residual")
    cfg = ModelConfig(arch="resnet-transformer", history=T, horizon=F, patch=P, inputs="residual",
                      readout="skip", width=8, d_model=16)
    models = []
    for seed in (0, 1):
        # trained a little, then the last layer drawn at random: a correction that is not zero (the
        # baseline guard may keep the untrained model, whose correction is zero everywhere)
        model = fit(w, cfg, TrainConfig(max_epochs=1, train_samples=64, eval_samples=32, batch_size=16), seed=seed).model
        torch.manual_seed(seed)
        torch.nn.init.normal_(model.decode[-1].weight, std=0.5)
        models.append(model.eval())
    cube = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), valid)},
                      coords={"t": times, "y": np.arange(float(size))[::-1] * 100, "x": np.arange(float(size)) * 100})
    oy, ox = grid_offsets(cube["y"].values, cube["x"].values)
    rng = np.random.default_rng(0)

    def trained(x):
        with torch.no_grad():
            return np.stack([m(torch.from_numpy(x)).numpy() for m in models])

    def blocky(x):                                   # one random value per member and tile
        return np.broadcast_to(rng.normal(0, 1, (2, len(x), 1, 1, 1)), (2, len(x), F, P, P)).astype(np.float32)

    def ratios(predict):
        products = forecast_products(cube, predict, history=T, horizon_steps=F, patch=P, norm=w.norm.to_dict(),
                                     members=2, inputs="residual")
        layers = {k: products[k].values for k in ("median", "std", "confidence", "rank_variance")}
        return {k: seam_ratio(v[-1] if v.ndim == 3 else v, patch=P, overlap=default_overlap(P), offset_y=oy,
                              offset_x=ox) for k, v in layers.items()}

    assert all(r < 1.25 for r in ratios(trained).values()), ratios(trained)
    assert ratios(blocky)["std"] > 2.0


def test_an_ensemble_without_inputs_is_the_papers_and_unknown_inputs_are_refused(tmp_path):
    import json

    from insarcast.errors import InputError
    from insarcast.udf.ensemble import load_ensemble

    pytest.importorskip("onnx")
    from conftest import edit_manifest
    from test_udf_ensemble_forecast import write_linear_ensemble

    folder = write_linear_ensemble(tmp_path / "old", inputs=None)      # written before the key existed
    assert "inputs" not in json.loads((folder / "ensemble.json").read_text())
    assert load_ensemble(folder).settings["inputs"] == "paper"
    edit_manifest(folder, lambda m: m.update(inputs="residual"))      # the paper's 2 channels do not match
    with pytest.raises(InputError, match="channel_names") as err:
        load_ensemble(folder)
    assert err.value.field == "channel_names"
    edit_manifest(folder, lambda m: m.update(inputs="future-inputs"))
    with pytest.raises(InputError, match="newer insarcast") as err:
        load_ensemble(folder)
    assert err.value.field == "inputs"


def _steady_ground(*, seed: int, line: bool = False):
    """Steady ground under white noise (sigma = 2 mm, 120 epochs, 60 x 60 pixels) forecast at h = 6
    from the anchor a = n - h - 1 (T = 12) by the adaptive curve, or by the window's line everywhere:
    (its fits, the member's change at h (1, y, x), the level R(a) - d(a), the observed change, sigma)."""
    rng = np.random.default_rng(seed)
    n, size, sigma, h, history = 120, 60, 2.0, 6, 12
    d = rng.normal(0.0, sigma, (n, size, size))
    a = n - h - 1
    fitted = bl.fits(d, _years(n), a, h, history=history)
    if line:
        inf = np.full((size, size), np.inf)
        fitted = fitted._replace(long_misfit=inf, local_misfit=inf)
    curve = fitted.adaptive()
    return fitted, bl.change(curve, history)[-1][None], curve[history - 1] - d[a], d[a + h] - d[a], \
        np.full((size, size), sigma)


def test_the_observation_predictive_of_residual_inputs_uses_the_observed_anchor_departure():
    """Steady ground under white noise (sigma = 2 mm): the adaptive curve forecasts no change, and the
    observed change d(a+h) - d(a) = e(a+h) - e(a). Taking the anchor's departure R(a) - d(a) as known
    (residual inputs) leaves only e(a+h): PIT central 80 % near 0.8 with the scale sigma, and the
    exceedance of |change| >= 3 mm is forecast better than its base rate (Brier skill > 0); treating
    the departure as a second unknown noise (the paper form, 2 sigma^2) is calibrated too but has no
    skill at all on such ground (every pixel gets the same probability)."""
    from insarcast.report import calibration as cal

    fitted, member, level, observed, s = _steady_ground(seed=3)
    for inputs, skilful in (("residual", True), ("paper", False)):
        centre, scale = cal.observation_predictive(member, s, inputs=inputs, level=level)
        u = cal.pit(centre, scale, observed)
        assert 0.76 <= np.mean((u >= 0.1) & (u <= 0.9)) <= 0.84
        p = cal.noisy_exceedance(centre, scale, 3.0).ravel()
        o = (np.abs(observed) >= 3.0).ravel()
        skill = 1 - np.mean((p - o) ** 2) / (o.mean() * (1 - o.mean()))
        assert (skill > 0.1) if skilful else (abs(skill) < 0.05), (inputs, skill)
    with pytest.raises(ValueError, match="level"):
        cal.observation_predictive(member, s, inputs="residual")


def test_the_observation_predictive_counts_the_error_of_the_fitted_level():
    """Steady ground under white noise (sigma = 2 mm) forecast by the window's line (T = 12): the
    observed change less the centre is the line's error at a+h plus e(a+h), of variance
    sigma^2 (1 + 1/T + (h + (T-1)/2)^2 / Sxx) = 2.0 sigma^2 at h = 6. With the level's scale the
    central 80 % holds 80 % of the observations; with the change's scale (the products'
    forecast_scale) it held 69 % by the same formula, with none 63 %."""
    from insarcast.report import calibration as cal

    line, member, level, observed, s = _steady_ground(seed=7, line=True)
    shares = {}
    for name, scale in (("level", line.adaptive_scale(level=True)[-1]), ("change", line.adaptive_scale()[-1]),
                        ("none", None)):
        centre, spread = cal.observation_predictive(member, s, inputs="residual", level=level, level_scale=scale)
        u = cal.pit(centre, spread, observed)
        shares[name] = np.mean((u >= 0.1) & (u <= 0.9))
    assert 0.77 <= shares["level"] <= 0.83, shares
    assert shares["change"] < 0.73 and shares["none"] < 0.68, shares


def test_scores_over_origins_hold_the_maps_and_calibration_of_a_model_that_is_its_baseline():
    """A residual 'ensemble' that corrects nothing is the adaptive baseline through the spatial filter:
    its RMSE and map scores equal the filtered baseline's (and differ from the unfiltered one's), the noise-free fit finds the trough (recall 1), and the pooled calibration of
    white noise of 1 mm is near nominal."""
    import xarray as xr

    from insarcast.report.skill import origins, score

    d, valid, times, trough = _cube(n=120, size=24, seed=2)
    truth = xr.DataArray((RATE * trough[None] * _years(120)[:, None, None]
                          + 1.0 * np.sin(2 * np.pi * _years(120))[:, None, None]).astype(np.float32),
                         dims=("t", "y", "x"))
    cube = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), valid)},
                      coords={"t": times, "y": np.arange(24.0)[::-1] * 100, "x": np.arange(24.0) * 100})

    class Zero:
        settings = {"predict": lambda x: np.zeros((2, x.shape[0], F, P, P), np.float32), "history": T,
                    "horizon_steps": F, "patch": P, "members": 2, "inputs": "residual-hindcast",
                    "norm": {"input_mean": 0.0, "input_std": 1.0, "target_mean": 0.0, "target_std": 1.0}}

    anchors = origins(120, history=T, horizon=F, start=100, count=3)
    scores = score(cube, Zero(), anchors=anchors, truth=truth)
    maps = scores.map_table()
    assert len(maps) == 3
    np.testing.assert_array_equal(maps["recall_top5"], maps["recall_top5_adaptive_filtered"])
    np.testing.assert_array_equal(maps["recall_moving"], maps["recall_moving_adaptive_filtered"])
    assert (maps["recall_top5_truth_fit"] == 1.0).all()
    # High or Highest is the top 5 % of the map: the noise-free fit classes as many movers as fit in it
    cap = np.minimum(1.0, 0.05 / maps["moving_share"])
    assert (maps["recall_moving_truth_fit"] >= 0.95 * cap).all() and (maps["recall_moving"] <= cap + 0.02).all()
    # the products' spatial filter of the residual-hindcast inputs: the ensemble is the filtered baseline
    table = scores.table().set_index(["target", "region", "method"])["rmse_mm"]
    assert table[("truth", "overall", "model")] == pytest.approx(table[("truth", "overall", "adaptive_filtered")],
                                                                 rel=1e-5)
    assert table[("truth", "overall", "model")] != pytest.approx(table[("truth", "overall", "adaptive")], rel=1e-3)
    assert (maps["true_q95_mm"] > maps["true_q85_mm"]).all()
    pooled = scores.calibration_table().iloc[-1]
    assert pooled["anchor"] == "all" and pooled["pixels"] == 3 * (valid.sum())
    assert 0.7 <= pooled["pit_central_80"] <= 0.9


def test_the_reference_error_scale_matches_the_spread_of_its_forecasts():
    """A steady trend + annual under white noise of sigma = 2 mm: over many pixels the error of the
    adaptive forecast of the change (against the noise-free change) divided by its stated scale
    has a standard deviation near 1, and 80 % +- 4 % of the true changes lie in the central 80 %."""
    from insarcast.udf.inputs import reference_scale

    rng = np.random.default_rng(5)
    n, pixels, h = 150, 4000, F
    t = _years(n)
    signal = (-20.0 * t + 4.0 * np.sin(2 * np.pi * t))[:, None] * np.ones((1, pixels))
    d = (signal + rng.normal(0.0, 2.0, signal.shape)).astype(np.float32)
    a = n - 1
    future = t[a] + STEP * np.arange(1, h + 1)
    true_change = (-20.0 * (future - t[a]) + 4.0 * (np.sin(2 * np.pi * future) - np.sin(2 * np.pi * t[a])))
    forecast = bl.adaptive(d, t, a, h, history=T)
    scale = reference_scale(d, t, history=T, horizon=h, inputs="residual-hindcast")
    z = (true_change[:, None] - forecast) / scale
    assert 0.8 <= z[-1].std() <= 1.25
    assert 0.76 <= np.mean(np.abs(z[-1]) <= 1.2816) <= 0.84


@pytest.mark.parametrize("inputs", ["residual", "residual-hindcast"])
def test_residual_products_with_their_error_scale_are_the_same_in_numpy_and_dask(inputs):
    """The error scale is computed per pixel from the whole series (and, with the spatial filter, the
    filtered reference reads the neighbouring chunks): any chunking (5 < P) gives the
    numpy products, including the scale itself, and the exceedance probabilities are no longer
    all 0 or 1 (an ensemble whose members agree still says how sure it is)."""
    import xarray as xr

    from insarcast.udf.forecast import forecast_products

    d, valid, times, _ = _cube(n=90, size=30, seed=4)       # larger than the filter width's reach: Dask runs
    cube = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), valid)},
                      coords={"t": times, "y": np.arange(30.0)[::-1] * 100, "x": np.arange(30.0) * 100})
    settings = {"predict": lambda x: np.full((2, x.shape[0], F, P, P), 0.3, np.float32), "history": T,
                "horizon_steps": F, "patch": P, "members": 2, "inputs": inputs,
                "norm": {"input_mean": 0.0, "input_std": 1.0, "target_mean": 0.0, "target_std": 1.0}}
    reference = forecast_products(cube, **settings)
    assert float(reference["forecast_scale"].isel(horizon=-1).median()) > 0
    p95 = reference["p95"].values[valid]
    assert ((p95 > 0.01) & (p95 < 0.99)).any()
    lazy = forecast_products(cube.chunk({"t": -1, "y": 5, "x": 7}), **settings)
    for name in ("forecast_scale", "median", "std", "class", "p95", "rank_variance", "bivariate"):
        xr.testing.assert_allclose(lazy[name].compute(), reference[name], atol=1e-6)
    assert lazy.attrs["std_tercile_2"] == pytest.approx(reference.attrs["std_tercile_2"], rel=1e-6)


@pytest.mark.parametrize("inputs", ["residual", "residual-hindcast"])
def test_what_the_members_add_to_the_reference_widens_the_forecast_scale_by_its_size(inputs):
    """Members that add 0.5 mm to their reference (the filter keeps a constant) depart from what the
    pixel's own series supports by 0.5 mm: the products' scale is sqrt(s^2 + 0.5^2), s that of members
    that keep it."""
    import xarray as xr

    from insarcast.udf.forecast import forecast_products

    d, valid, times, _ = _cube(n=90, size=20, seed=4)
    cube = xr.Dataset({"displacement": (("t", "y", "x"), d), "valid": (("y", "x"), valid)},
                      coords={"t": times, "y": np.arange(20.0)[::-1] * 100, "x": np.arange(20.0) * 100})
    norm = {"input_mean": 0.0, "input_std": 1.0, "target_mean": 0.0, "target_std": 2.0}
    scales = [forecast_products(cube, predict=lambda x, v=v: np.full((2, len(x), F, P, P), v, np.float32),
                                history=T, horizon_steps=F, patch=P, members=2, inputs=inputs,
                                norm=norm)["forecast_scale"].values for v in (0.0, 0.25)]
    ok = np.isfinite(scales[0])
    assert ok.sum() > 100 and np.nanmin(scales[0]) > 0
    np.testing.assert_allclose(scales[1][ok], np.sqrt(scales[0][ok] ** 2 + 0.5 ** 2), rtol=1e-5)


def test_the_verdict_calls_a_difference_only_where_the_test_finds_it():
    """The report's sentences: a forecast 0.5 mm better at every origin beats that baseline; one that
    wins some origins and loses others is level with it, even where its RMSE is lower; one worse at
    every origin is worse. The old sentences read the RMSE alone ("beats" for 3.63 against 3.63 mm)."""
    from insarcast.report.skill import SkillScores

    model = np.array([1.0, 1.1, 0.9, 1.0, 1.05, 0.95])
    errors = {"model": model, "persistence": model + 0.5, "trend_annual": np.full(6, 3.0),
              "linear": np.array([1.2, 0.9, 1.1, 0.85, 1.15, 0.9]),           # wins three origins, loses three
              "adaptive": np.array([0.98, 1.12, 0.88, 1.03, 1.0, 0.96]),      # lower RMSE, no consistent gain
              "adaptive_filtered": model - 0.2}
    scores = SkillScores(horizon=1, anchors=list(range(0, 60, 10)))
    for o in range(6):
        scores.add("observed", "overall", {k: np.full((1, 5), v[o]) for k, v in errors.items()},
                   np.zeros((1, 5)), np.ones(5, bool))
    rmse = {k: math.sqrt(np.mean(v ** 2)) for k, v in errors.items()}
    assert rmse["adaptive"] < rmse["model"] and rmse["linear"] < rmse["persistence"]
    (line,) = scores.verdict()
    assert f"the ensemble median ({rmse['model']:.3f} mm) is level with the best simple baseline, linear" in line
    assert f"it is level with the adaptive baseline ({rmse['adaptive']:.3f} mm" in line
    assert "it is worse than that baseline through the spatial filter" in line
    without_linear = SkillScores(horizon=1, anchors=scores.anchors, count=scores.count,
                                 sse={k: v for k, v in scores.sse.items() if k[2] != "linear"})
    assert f"the ensemble median ({rmse['model']:.3f} mm) beats the best simple baseline, persistence" \
        in without_linear.verdict()[0]
