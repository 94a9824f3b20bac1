"""The synthetic scenario: physics against closed forms and quadrature, noise statistics,
coverage, determinism, file formats and all-or-nothing writing.

Expected numbers are computed here independently of insarcast.synth (own frames, own formulas,
scipy quadrature), so that a wrong sign, scale or convention in the package fails a test.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special

from insarcast.errors import InputError
from insarcast.synth import (
    PRESETS,
    ScenarioConfig,
    knothe_rectangle,
    knothe_time,
    load_config,
    mine_displacement,
    preset,
    truth_displacement,
    write_scenario,
)
from insarcast.synth import scenario as scenario_module
from insarcast.synth.zones import zones_collection

TINY = preset("tiny")
DAYS_PER_YEAR = 365.25
META = ["pid", "easting", "northing", "height", "rmse", "mean_velocity", "mean_velocity_std", "acceleration",
        "acceleration_std", "seasonality", "seasonality_std"]


def quiet(config: ScenarioConfig) -> ScenarioConfig:
    """Only the mines and faults the test keeps: no regional bowl, no seasonality."""
    return dataclasses.replace(config, regional_rate=0.0, seasonal_amplitude=0.0)


def read_csv(out: Path) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    frames = [pd.read_csv(p, dtype={"pid": str}) for p in sorted(out.glob("EGMS_L3_*_100km_U_synthetic.csv"))]
    df = pd.concat(frames, ignore_index=True)
    date_cols = [c for c in df.columns if c[0].isdigit()]
    return df, df[date_cols].to_numpy(dtype=np.float64), date_cols


def residuals(config: ScenarioConfig, out: Path) -> tuple[pd.DataFrame, np.ndarray]:
    df, values, _ = read_csv(out)
    truth = truth_displacement(config, df["easting"].to_numpy(), df["northing"].to_numpy())
    return df, values - truth


def to_xy(mine, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mine frame -> map: u along the azimuth (clockwise from north), v to its right."""
    a = math.radians(mine.azimuth)
    return mine.x + u * math.sin(a) + v * math.cos(a), mine.y + u * math.cos(a) - v * math.sin(a)


def neighbour_correlation(df: pd.DataFrame, resid: np.ndarray) -> float:
    """Correlation of the residuals of east-west neighbouring points, over pairs and epochs > 0."""
    key = {(x, y): i for i, (x, y) in enumerate(zip(df["easting"], df["northing"]))}
    pairs = [(i, key[(x + 100.0, y)]) for (x, y), i in key.items() if (x + 100.0, y) in key]
    assert len(pairs) > 200
    a, b = np.array(pairs).T
    return float(np.corrcoef(resid[a, 1:].ravel(), resid[b, 1:].ravel())[0, 1])


def inside_polygon(x: np.ndarray, y: np.ndarray, ring: list[list[float]]) -> np.ndarray:
    """Even-odd ray casting."""
    inside = np.zeros(x.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(ring[:-1], ring[1:]):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < xc)
    return inside


def inside_ellipse(body, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = math.radians(body.azimuth)
    dx, dy = x - body.x, y - body.y
    p, q = dx * math.sin(a) + dy * math.cos(a), dx * math.cos(a) - dy * math.sin(a)
    return (p / body.semi_major) ** 2 + (q / body.semi_minor) ** 2 <= 1


def file_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "scenario"
    outputs = write_scenario(TINY, out, progress=False)
    return out, outputs


# --- configuration -------------------------------------------------------------------------------

def test_default_epochs_are_the_egms_period():
    dates = TINY.dates()
    assert len(dates) == 363
    assert str(dates[0]) == "2016-01-05" and str(dates[-1]) == "2021-12-16"
    assert set(np.diff(dates).astype(int)) == {6}
    assert TINY.years()[-1] == pytest.approx(2172 / 365.25)


def test_presets_and_validation():
    assert PRESETS == ("tiny", "demo", "rhineland")
    rh = preset("rhineland", seed=3)
    assert rh.seed == 3 and rh.extent == (4.0e6, 3.0e6, 4.1e6, 3.2e6)
    assert [m.name for m in rh.mines] == ["Hambach", "Garzweiler", "Inden"]
    with pytest.raises(InputError, match="unknown scenario preset"):
        preset("atlantis")
    with pytest.raises(InputError, match="multiple of the spacing"):
        dataclasses.replace(TINY, extent=(4066010.0, 3090000.0, 4072400.0, 3094800.0))
    with pytest.raises(InputError, match="coverage"):
        dataclasses.replace(TINY, coverage=1.5)


def test_zones_of_demo_mark_inden_inactive():
    zones = zones_collection(preset("demo"))
    props = {f["properties"]["name"]: f["properties"] for f in zones["features"]}
    assert props["Hambach"] == {"kind": "mine", "name": "Hambach", "active": True}
    assert props["Inden"] == {"kind": "mine", "name": "Inden", "active": False}
    assert props["Rurrand"] == {"kind": "fault", "name": "Rurrand"}
    # the pit is centred on the mine's real position at the end of the period
    ring = np.array(next(f for f in zones["features"] if f["properties"]["name"] == "Hambach")
                    ["geometry"]["coordinates"][0])
    assert ring[:4].mean(axis=0) == pytest.approx([4074935.0, 3094618.0], abs=1.0)


# --- physics -------------------------------------------------------------------------------------

def test_knothe_rectangle_centre_edge_corner():
    big = dict(a1=-1e5, a2=1e5, b1=-1e5, b2=1e5, w=-1500.0, r=900.0)
    assert knothe_rectangle(0.0, 0.0, **big) == pytest.approx(-1500.0, rel=1e-12)
    assert knothe_rectangle(1e5, 0.0, **big) == pytest.approx(-750.0, rel=1e-12)
    assert knothe_rectangle(0.0, -1e5, **big) == pytest.approx(-750.0, rel=1e-12)
    assert knothe_rectangle(1e5, 1e5, **big) == pytest.approx(-375.0, rel=1e-12)


def test_knothe_rectangle_is_the_integral_of_the_kernel():
    w, r, (a1, a2, b1, b2), (u, v) = -1300.0, 650.0, (0.0, 800.0, -300.0, 500.0), (130.0, -420.0)

    def kernel(s, q):
        return w / r**2 * math.exp(-math.pi * ((u - q) ** 2 + (v - s) ** 2) / r**2)

    expected, _ = integrate.dblquad(kernel, a1, a2, b1, b2, epsabs=1e-10, epsrel=1e-10)
    got = knothe_rectangle(u, v, a1=a1, a2=a2, b1=b1, b2=b2, w=w, r=r)
    assert got == pytest.approx(expected, rel=1e-6)
    assert -1300.0 < got < 0


def test_knothe_time_function():
    t = np.array([0.0, 1.0, 1.5, 3.0])
    assert knothe_time(t, 1.0, c=2.0) == pytest.approx([0.0, 0.0, 1 - math.exp(-1.0), 1 - math.exp(-4.0)])


def test_advancing_face_matches_continuous_knothe_quadrature():
    config = quiet(dataclasses.replace(TINY, faults=(), water=()))
    mine = config.mines[0]
    t = (config.dates() - config.dates()[0]).astype(int) / DAYS_PER_YEAR
    r, c, w, width = mine.influence_radius, mine.time_coefficient, mine.w_max, mine.width

    def face(tt):
        return mine.length0 + mine.advance_rate * tt

    uv = np.array([(face(t[-1]) + 300, 0.0),                 # ahead of the final face
                   (face(t[180]), width / 2 + 200),            # beside the pit, face passing mid-period
                   (mine.length0 + 100, -width / 2 - 100),     # beside the pit, near the start face
                   (mine.length0 - 300, 0.0),                  # over ground cut before the start
                   (face(t[90]), 0.0)])                        # over the face of 1.5 years in
    x, y = to_xy(mine, uv[:, 0], uv[:, 1])
    model = truth_displacement(config, x, y)
    epochs = np.arange(0, len(t), 20)

    def develop(tt, tau):
        return 1 - math.exp(-c * (tt - tau)) if tt > tau else 0.0

    for (u, v), series in zip(uv, model):
        across = 0.5 * (special.erf(math.sqrt(math.pi) * (v + width / 2) / r)
                        - special.erf(math.sqrt(math.pi) * (v - width / 2) / r))
        expected = []
        for k in epochs:
            def integrand(s):
                tau = (s - mine.length0) / mine.advance_rate
                return math.exp(-math.pi * (u - s) ** 2 / r**2) / r * (develop(t[k], tau) - develop(0.0, tau))

            value, _ = integrate.quad(integrand, 0.0, face(t[k]), points=[mine.length0], limit=400,
                                      epsabs=1e-12, epsrel=1e-10)
            expected.append(w * across * value)
        expected = np.array(expected)
        assert np.abs(expected).max() > 50  # the point does see the trough
        np.testing.assert_allclose(series[epochs], expected, rtol=0, atol=0.01 * np.abs(expected).max())


def test_inactive_mine_residual_decays_exponentially():
    mine = dataclasses.replace(TINY.mines[0], stop="2017-01-01")
    t_stop = (np.datetime64("2017-01-01") - np.datetime64(TINY.start)).astype(int) / DAYS_PER_YEAR
    t = np.array([0.0, t_stop + 0.2, t_stop + 0.7, t_stop + 1.5, 60.0])
    x, y = to_xy(mine, np.array([mine.length0 + 150.0, 300.0, mine.length0]), np.array([0.0, 650.0, -900.0]))
    u = mine_displacement(mine, x, y, t, start=TINY.start).astype(np.float64)
    remaining = u[:, -1:] - u[:, 1:4]  # what is still to come at t1, t2, t3
    assert np.all(np.abs(remaining[:, 0]) > 1.0)
    c = mine.time_coefficient
    np.testing.assert_allclose(remaining[:, 1] / remaining[:, 0], math.exp(-c * 0.5), rtol=1e-4)
    np.testing.assert_allclose(remaining[:, 2] / remaining[:, 0], math.exp(-c * 1.3), rtol=1e-4)
    # the face stood still after the stop: the pit at the end is L0 + rate * (stop - start) long
    ring = np.array(zones_collection(dataclasses.replace(TINY, mines=(mine,)))["features"][0]
                    ["geometry"]["coordinates"][0])
    lengths = np.hypot(*np.diff(ring, axis=0).T)
    along = mine.length0 + mine.advance_rate * t_stop
    assert sorted(lengths) == pytest.approx(sorted([along, along, mine.width, mine.width]), abs=0.02)


def test_fault_creep_follows_the_arctan_profile():
    fault = dataclasses.replace(TINY.faults[0], block_width=None)  # an unbounded hanging wall
    config = quiet(dataclasses.replace(TINY, mines=(), water=(), faults=(fault,)))
    assert fault.hanging_wall == "right"
    length = math.hypot(fault.x2 - fault.x1, fault.y2 - fault.y1)
    ex, ey = (fault.x2 - fault.x1) / length, (fault.y2 - fault.y1) / length
    nx, ny = ey, -ex  # right of the direction of the trace: the hanging wall
    mx, my = (fault.x1 + fault.x2) / 2, (fault.y1 + fault.y2) / 2
    d = fault.width * np.array([0.0, 1.0, -1.0, 3.0, -3.0, 1e3, -1e3])
    truth = truth_displacement(config, mx + d * nx, my + d * ny).astype(np.float64)
    years = (config.dates() - config.dates()[0]).astype(int) / DAYS_PER_YEAR
    expected = fault.creep_rate * np.outer(np.arctan(d / fault.width) / np.pi + 0.5, years)
    np.testing.assert_allclose(truth, expected, rtol=2e-6, atol=1e-4)
    assert truth[0, -1] == pytest.approx(fault.creep_rate * years[-1] / 2, rel=1e-6)
    assert truth[1, -1] == pytest.approx(fault.creep_rate * years[-1] * 0.75, rel=1e-6)
    step = truth[5, -1] - truth[6, -1]
    assert step == pytest.approx(fault.creep_rate * 2172 / 365.25, rel=1e-3)
    # the hanging wall of the Rurrand fault is its south-west side, and it subsides
    sw = truth_displacement(config, [mx - 2000.0], [my - 2000.0])[0, -1]
    ne = truth_displacement(config, [mx + 2000.0], [my + 2000.0])[0, -1]
    assert sw < fault.creep_rate * years[-1] * 0.9 and abs(ne) < abs(fault.creep_rate * years[-1]) * 0.1

    # the preset's hanging wall is a graben of finite width: exact near the trace, gone beyond it
    graben = quiet(dataclasses.replace(TINY, mines=(), water=()))
    block = graben.faults[0].block_width
    d = np.array([0.0, 300.0, -300.0, 3000.0, block - 2 * fault.tip_taper, block + 3 * fault.tip_taper])
    truth = truth_displacement(graben, mx + d * nx, my + d * ny).astype(np.float64)
    expected = fault.creep_rate * np.outer(np.arctan(d / fault.width) / np.pi + 0.5, years)
    np.testing.assert_allclose(truth[:5], expected[:5], rtol=2e-6, atol=1e-4)
    assert abs(truth[5, -1]) < 1e-3 * abs(fault.creep_rate * years[-1])


def test_truth_starts_at_zero_and_holds_regional_and_seasonal_terms():
    config = dataclasses.replace(TINY, mines=(), faults=())
    cx, cy = config.regional_centre
    x = np.array([cx, cx + config.regional_length])
    truth = truth_displacement(config, x, np.array([cy, cy])).astype(np.float64)
    assert np.all(truth[:, 0] == 0)
    days = (config.dates() - np.datetime64("2016-01-01")).astype(int)  # days since 1 January
    seasonal = config.seasonal_amplitude * (np.cos(2 * np.pi * (days + 1 - config.seasonal_peak_doy) / 365.25)
                                            - np.cos(2 * np.pi * (days[0] + 1 - config.seasonal_peak_doy) / 365.25))
    years = (config.dates() - config.dates()[0]).astype(int) / DAYS_PER_YEAR
    expected = np.outer(config.regional_rate * np.exp([0.0, -0.5]), years) + seasonal
    np.testing.assert_allclose(truth, expected, atol=2e-4)


# --- the written scenario ------------------------------------------------------------------------

def test_csv_layout_and_dates(tiny_run):
    out, outputs = tiny_run
    assert [p.name for p in outputs.csv] == ["EGMS_L3_E40N30_100km_U_synthetic.csv"]
    df, values, date_cols = read_csv(out)
    assert list(df.columns[:11]) == META
    assert len(date_cols) == 363 and date_cols[0] == "20160105" and date_cols[-1] == "20211216"
    assert len(df) == outputs.n_points and df["pid"].is_unique and df["pid"].str.match(r"^SYN\d{7}$").all()
    assert np.all(df["easting"] % 100 == 50) and np.all(df["northing"] % 100 == 50)
    assert np.all(values[:, 0] == 0)
    assert df["height"].between(20, 180).all() and df["height"].std() > 1


def test_points_avoid_pits_and_water_and_follow_coverage(tiny_run):
    out, _ = tiny_run
    df, _, _ = read_csv(out)
    zones = json.loads((out / "zones.geojson").read_text())
    assert zones["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::3035"
    pits = [f["geometry"]["coordinates"][0] for f in zones["features"] if f["properties"]["kind"] == "mine"]
    assert len(pits) == 1
    x, y = df["easting"].to_numpy(), df["northing"].to_numpy()
    assert not inside_polygon(x, y, pits[0]).any()
    assert not inside_ellipse(TINY.water[0], x, y).any()
    xmin, ymin, xmax, ymax = TINY.extent
    gx, gy = np.meshgrid(np.arange(xmin + 50, xmax, 100.0), np.arange(ymin + 50, ymax, 100.0))
    blocked = inside_polygon(gx, gy, pits[0]) | inside_ellipse(TINY.water[0], gx, gy)
    assert 150 < blocked.sum() < 400  # the pit (about 2 x 1 km) and the pond really are there
    assert len(df) / (~blocked).sum() == pytest.approx(TINY.coverage, abs=0.02)


def test_noise_level_and_spatial_correlation(tiny_run, tmp_path):
    out, _ = tiny_run
    df, resid = residuals(TINY, out)
    assert np.all(resid[:, 0] == 0)
    expected = math.hypot(TINY.atmosphere_std, TINY.white_std)
    assert resid[:, 1:].std() == pytest.approx(expected, rel=0.10)
    assert neighbour_correlation(df, resid) > 0.5

    white_only = dataclasses.replace(TINY, atmosphere_std=0.0)
    write_scenario(white_only, tmp_path / "white", progress=False)
    df, resid = residuals(white_only, tmp_path / "white")
    assert resid[:, 1:].std() == pytest.approx(TINY.white_std, rel=0.05)
    assert abs(neighbour_correlation(df, resid)) < 0.1

    atmosphere_only = dataclasses.replace(TINY, white_std=0.0)
    write_scenario(atmosphere_only, tmp_path / "atm", progress=False)
    df, resid = residuals(atmosphere_only, tmp_path / "atm")
    assert resid[:, 1:].std() == pytest.approx(TINY.atmosphere_std, rel=0.10)
    assert neighbour_correlation(df, resid) > 0.8


def test_quality_columns_are_the_least_squares_fit(tiny_run):
    out, _ = tiny_run
    df, values, _ = read_csv(out)
    t = TINY.years()
    t = t - (t[0] + t[-1]) / 2
    design = np.column_stack([np.ones_like(t), t, t * t, np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)])
    cov = np.linalg.inv(design.T @ design)
    for i in [0, len(df) // 3, len(df) - 1, int(np.argmin(df["mean_velocity"]))]:
        coef, rss, *_ = np.linalg.lstsq(design, values[i], rcond=None)
        sigma = math.sqrt(rss[0] / (len(t) - 5))
        row = df.iloc[i]
        assert row["mean_velocity"] == pytest.approx(coef[1], abs=0.006)
        assert row["acceleration"] == pytest.approx(2 * coef[2], abs=0.006)
        assert row["seasonality"] == pytest.approx(math.hypot(coef[3], coef[4]), abs=0.006)
        assert row["rmse"] == pytest.approx(sigma, abs=0.006)
        assert row["mean_velocity_std"] == pytest.approx(sigma * math.sqrt(cov[1, 1]), abs=0.006)
        assert row["acceleration_std"] == pytest.approx(2 * sigma * math.sqrt(cov[2, 2]), abs=0.006)
    # away from the pit the fitted annual amplitude is the configured one
    far = df["mean_velocity"] > -30
    assert df.loc[far, "seasonality"].median() == pytest.approx(TINY.seasonal_amplitude, abs=0.3)


def test_truth_cube_and_config_round_trip(tiny_run):
    from insarcast.cube import open_cube

    out, outputs = tiny_run
    ds = open_cube(outputs.truth)
    assert ds.attrs["kind"] == "truth"
    assert json.loads(ds.attrs["config"]) == json.loads((out / "scenario.json").read_text())
    assert ds.sizes == {"t": 363, "y": 48, "x": 64}
    assert bool(ds["valid"].all())
    assert str(ds["t"].values[0])[:10] == "2016-01-05"
    cells = [(0, 0), (47, 63), (20, 40), (30, 5)]
    xs = np.array([float(ds["x"][c]) for _, c in cells])
    ys = np.array([float(ds["y"][r]) for r, _ in cells])
    cube = np.stack([ds["displacement"].values[:, r, c] for r, c in cells])
    np.testing.assert_allclose(cube, truth_displacement(TINY, xs, ys), rtol=1e-5, atol=1e-4)
    assert load_config(outputs.config) == TINY


def test_same_seed_same_bytes_other_seed_differs(tiny_run, tmp_path, capfd):
    out, _ = tiny_run
    capfd.readouterr()
    write_scenario(TINY, tmp_path / "again", progress=True)
    assert "atmosphere" in capfd.readouterr().err  # progress bars on stderr
    first, again = file_bytes(out), file_bytes(tmp_path / "again")
    assert set(first) == {"EGMS_L3_E40N30_100km_U_synthetic.csv", "zones.geojson", "scenario.json"}
    assert first == again

    write_scenario(preset("tiny", seed=1), tmp_path / "other", progress=False)
    assert capfd.readouterr().err == ""
    other = file_bytes(tmp_path / "other")
    assert other["EGMS_L3_E40N30_100km_U_synthetic.csv"] != first["EGMS_L3_E40N30_100km_U_synthetic.csv"]
    assert other["zones.geojson"] == first["zones.geojson"]  # the geometry does not depend on the seed


def test_point_blocks_do_not_change_the_output(tiny_run, tmp_path, monkeypatch):
    """Points are simulated and streamed into their tile in blocks: the block size must not show in
    the output (same noise draws, same rows, same text up to the last rounding unit). Not byte for
    byte: numpy's SIMD float32 exp/sin may differ by one ulp between a vector lane and the scalar
    tail of an array (seen with numpy 2.4), so a value that lies at a rounding tie of the 0.1 mm
    text can round either way; a different noise draw would change nearly every value."""
    out, _ = tiny_run
    monkeypatch.setattr(scenario_module, "POINT_BLOCK", 437)
    write_scenario(TINY, tmp_path / "blocks", progress=False)
    blocks, single = file_bytes(tmp_path / "blocks"), file_bytes(out)
    assert blocks.keys() == single.keys()
    for name in blocks:
        if not name.endswith(".csv"):
            assert blocks[name] == single[name], name
            continue
        a = pd.read_csv(io.BytesIO(blocks[name]))
        b = pd.read_csv(io.BytesIO(single[name]))
        assert list(a.columns) == list(b.columns)
        for column in ("pid", "easting", "northing", "height"):
            assert (a[column] == b[column]).all(), column
        values = [c for c in a.columns if c[:1].isdigit()]
        diff = np.abs(a[values].to_numpy() - b[values].to_numpy())
        assert diff.max() <= 0.1 + 1e-6                               # one unit of the last decimal
        assert (diff > 0).sum() <= max(2, diff.size // 10_000)        # only rounding ties


def test_failure_leaves_nothing_behind(tiny_run, tmp_path, monkeypatch):
    def broken(path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(scenario_module, "finish_cube", broken)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="disk full"):
        write_scenario(TINY, fresh, progress=False)
    assert not fresh.exists()

    # a failing rerun over a finished scenario leaves it as it was, with no scratch or temp files
    monkeypatch.undo()
    out = tmp_path / "kept"
    write_scenario(TINY, out, progress=False)
    before = file_bytes(out)
    names = sorted(p.name for p in out.iterdir())
    monkeypatch.setattr(scenario_module, "finish_cube", broken)
    with pytest.raises(RuntimeError):
        write_scenario(preset("tiny", seed=9), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == names
    assert file_bytes(out) == before


def test_output_path_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        write_scenario(TINY, blocker, progress=False)
    assert blocker.read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [blocker]
