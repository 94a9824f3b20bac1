"""Skill on ground this project's simulator cannot make: an independent generator, scored against its truth.

    python bench/outside.py --ensemble DEMO/ensemble [--seeds 101,202] [--origins 6]
    python bench/outside.py --tile-only --seeds 303 --mixed      # write the tile for `insarcast demo --egms`

Every scenario of ``bench/skill.py`` comes from ``insarcast.synth`` (Knothe troughs, creeping faults,
bowls, one fractal atmosphere), the simulator whose family the shipped correction was fitted on.
This script writes EGMS L3 CSV tiles with its own physics and none of that code: an 18 x 14 km
region, 6-day epochs from March 2017 to August 2022, points on 30 to 60 % of the cells, and

- a landslide: an elliptical body (1.2 to 2 km by 350 to 600 m, any strike) creeping 10 to 20
  mm/yr, with a surge of 20 to 40 mm/yr more while it rains (the positive half of a cosine peaking in
  January);
- three pumping bowls (Gaussian, 400 m to 1 km): one sinking linearly (25 to 45 mm/yr), one that
  starts in the last two years and settles 40 to 70 mm with a time constant of 0.4 to 1 year, one
  accelerating (-3 to -8 mm/yr and -4 to -8 mm/yr^2);
- a tunnel: a 100 to 180 m wide strip behind a face advancing 2.5 to 4 km/yr from the third or
  fourth year, each cell settling 20 to 35 mm with a time constant of 5 weeks to 3 months;
- an injection dome (1.2 to 2 km, +8 to +18 mm/yr and a seasonal rate), a regional tilt of up to
  5 mm/yr across the region;
- white noise of 2 to 3.5 mm per point and epoch, an atmosphere of 1.5 to 3 mm per epoch with a
  Gaussian correlation length of 2 to 5 km and no common mode, 0 to 5 % of the values missing.

``--slip`` adds a fault that slips once (as in an earthquake; the other physics unchanged): the
block on one side of a 6 to 10 km line drops by 10 to 25 mm at an epoch drawn between 82 and 95 %
of the record, the drop fading over 1 to 2 km from the line and to nothing at its tips. A jump is
what neither curve of a baseline can forecast through, and what no scenario of either simulator
has otherwise (:func:`insarcast.baselines.with_steps`). ``--afterslip`` makes that fault go on
slipping after the jump, as faults do after an earthquake (postseismic afterslip): a further 30 to
80 % of the drop, approached as 1 - exp(-dt / tau) with tau 3 weeks to 4 months (its own random
stream again), so that the series after the jump is a curve, not a line.

``--mixed`` makes the record run to June 2023 with 12-day epochs after 23 December 2021 (the loss
of Sentinel-1B), as EGMS releases after 2021 are: ``insarcast grid`` then keeps a 12-day cadence
(:mod:`insarcast.cadence`), and the ensemble must be one trained on such a cube (``insarcast demo
--egms TILE``), since a 6-day ensemble is refused there.

The truth is the same functions evaluated at the cube's cell centres; the zones are the cells whose
truth, without the tilt, moves more than 15 mm over the record. The scores are those of
``bench/skill.py`` (:func:`insarcast.report.skill.score`), printed the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from common import write_json

HERE = Path(__file__).resolve().parent
X0, Y0, WIDTH, HEIGHT = 4_200_000.0, 3_000_000.0, 18_000.0, 14_000.0     # EPSG:3035 m
S1B_LOST = np.datetime64("2021-12-23")


def draw(seed: int) -> dict:
    """The scenario's parameters (module docstring's ranges)."""
    r = np.random.default_rng(seed)

    def u(a, b):
        return float(r.uniform(a, b))

    return {
        "seed": seed, "start": "2017-03-02", "end": "2022-08-30",
        "slide": dict(cx=X0 + u(3e3, 6e3), cy=Y0 + u(3e3, 6e3), a=u(1200, 2000), b=u(350, 600), angle=u(0, np.pi),
                      base=u(-20, -10), surge=u(-40, -20)),
        "bowl_linear": dict(cx=X0 + u(10e3, 14e3), cy=Y0 + u(3e3, 6e3), s=u(500, 900), rate=u(-45, -25)),
        "bowl_onset": dict(cx=X0 + u(7e3, 11e3), cy=Y0 + u(8e3, 11e3), s=u(400, 800), amp=u(-70, -40),
                           t0=u(3.0, 4.6), tau=u(0.4, 1.0)),
        "bowl_accelerating": dict(cx=X0 + u(13e3, 16e3), cy=Y0 + u(9e3, 12e3), s=u(600, 1000), rate=u(-8, -3),
                                  acc=u(-8, -4)),
        "tunnel": dict(x0=X0 + 2e3, y0=Y0 + u(10e3, 12.5e3), angle=u(-0.3, 0.3), speed=u(2500, 4000),
                       t_start=u(2.5, 3.5), width=u(100, 180), amp=u(-35, -20), tau=u(0.1, 0.25)),
        "dome": dict(cx=X0 + u(2e3, 5e3), cy=Y0 + u(10e3, 12e3), s=u(1200, 2000), rate=u(8, 18), season=u(4, 10)),
        "tilt": u(-5, 5), "white": u(2.0, 3.5), "atmosphere": u(1.5, 3.0), "correlation_km": u(2.0, 5.0),
        "coverage": u(0.3, 0.6), "missing": u(0.0, 0.05),
    }


def draw_slip(seed: int, p: dict, *, afterslip: bool = False) -> dict:
    """``--slip``'s fault (module docstring), from its own random stream: the other parameters stay;
    ``afterslip`` adds its postseismic slip from another stream, so the jump stays the same."""
    r = np.random.default_rng(seed + 7)
    span = years_since(np.datetime64(p["end"]), p["start"])
    f = dict(x0=X0 + float(r.uniform(6e3, 12e3)), y0=Y0 + float(r.uniform(4e3, 10e3)),
             angle=float(r.uniform(0, np.pi)), half_length=float(r.uniform(3e3, 5e3)),
             drop=float(r.uniform(-25, -10)), fade=float(r.uniform(1e3, 2e3)),
             t=float(span * r.uniform(0.82, 0.95)))
    if afterslip:
        r = np.random.default_rng(seed + 11)
        f.update(after=float(r.uniform(0.3, 0.8)), tau=float(r.uniform(0.06, 0.33)))
    return f


def years_since(dates, start: str) -> np.ndarray:
    return (np.asarray(dates, "datetime64[D]") - np.datetime64(start, "D")).astype(float) / 365.25


def _gauss(x, y, b):
    return np.exp(-((x - b["cx"]) ** 2 + (y - b["cy"]) ** 2) / (2 * b["s"] ** 2))


def _rainy_years(t):
    """The integral from 0 to t of max(0, cos(2 pi (tau + 2/12))): years of surge (1/pi per year)."""
    def within(f):
        return np.where(f < 0.25, np.sin(2 * np.pi * f), np.where(f < 0.75, 1.0, 2.0 + np.sin(2 * np.pi * f))) \
            / (2 * np.pi)

    shifted = t + 2 / 12
    whole = np.floor(shifted)
    return whole / np.pi + within(shifted - whole) - within(np.full_like(shifted, 2 / 12))


def field(x, y, t, p: dict, *, tilt: bool = True) -> np.ndarray:
    """Noise-free displacement (mm since the start) at positions ``x, y`` (m) and times ``t`` (years),
    broadcast together."""
    s = p["slide"]
    c, n = np.cos(s["angle"]), np.sin(s["angle"])
    along, across = ((x - s["cx"]) * c + (y - s["cy"]) * n) / s["a"], (-(x - s["cx"]) * n + (y - s["cy"]) * c) / s["b"]
    body = 1 / (1 + np.exp((np.hypot(along, across) - 1) * 8))
    d = body * (s["base"] * t + s["surge"] * _rainy_years(t))
    d = d + _gauss(x, y, p["bowl_linear"]) * p["bowl_linear"]["rate"] * t
    b = p["bowl_onset"]
    d = d + _gauss(x, y, b) * b["amp"] * (1 - np.exp(-np.clip(t - b["t0"], 0, None) / b["tau"]))
    b = p["bowl_accelerating"]
    d = d + _gauss(x, y, b) * (b["rate"] * t + 0.5 * b["acc"] * t ** 2)
    k = p["tunnel"]
    c, n = np.cos(k["angle"]), np.sin(k["angle"])
    along, across = (x - k["x0"]) * c + (y - k["y0"]) * n, -(x - k["x0"]) * n + (y - k["y0"]) * c
    behind = np.clip(t - (k["t_start"] + along / k["speed"]), 0, None) * (along >= 0)
    d = d + np.exp(-across ** 2 / (2 * k["width"] ** 2)) * k["amp"] * (1 - np.exp(-behind / k["tau"]))
    m = p["dome"]
    d = d + _gauss(x, y, m) * (m["rate"] * t + m["season"] / (2 * np.pi) * np.sin(2 * np.pi * t))
    if "slip" in p:
        f = p["slip"]
        c, n = np.cos(f["angle"]), np.sin(f["angle"])
        along, across = (x - f["x0"]) * c + (y - f["y0"]) * n, -(x - f["x0"]) * n + (y - f["y0"]) * c
        tips = np.cos(np.clip(along / f["half_length"], -1, 1) * np.pi / 2) ** 2
        since = np.clip(t - f["t"], 0, None)
        slipped = (t >= f["t"]) + f.get("after", 0.0) * (1 - np.exp(-since / f.get("tau", 1.0)))
        d = d + f["drop"] * (across > 0) * np.exp(-across / f["fade"]) * tips * slipped
    return d + (p["tilt"] * (x - X0) / WIDTH * t if tilt else 0.0)


def epochs(p: dict, *, mixed: bool) -> np.ndarray:
    six = np.arange(np.datetime64(p["start"], "D"), np.datetime64(p["end"], "D") + 1, 6)
    if not mixed:
        return six
    six = six[six <= S1B_LOST]
    return np.concatenate([six, np.arange(six[-1] + 12, np.datetime64("2023-06-30"), 12)])


def atmosphere(r, nt: int, ny: int, nx: int, sigma: float, correlation_cells: float) -> np.ndarray:
    """(nt, ny, nx) fields of standard deviation ``sigma``, Gaussian spectrum, zero mean over the region."""
    k2 = np.fft.fftfreq(ny)[:, None] ** 2 + np.fft.rfftfreq(nx)[None] ** 2
    spectrum = np.exp(-2 * np.pi ** 2 * k2 * correlation_cells ** 2)
    spectrum[0, 0] = 0.0
    out = np.empty((nt, ny, nx), np.float32)
    for i in range(nt):
        f = np.fft.irfft2(np.fft.rfft2(r.standard_normal((ny, nx))) * spectrum, s=(ny, nx))
        out[i] = f / f.std() * sigma
    return out


def write_tile(folder: Path, seed: int, *, mixed: bool = False, slip: bool = False, afterslip: bool = False) -> Path:
    """``folder/tile.csv`` (EGMS L3 U columns) and ``folder/params.json``, made once and reused."""
    import pandas as pd

    tile = folder / "tile.csv"
    if tile.exists():
        return tile
    folder.mkdir(parents=True, exist_ok=True)
    p = draw(seed)
    if slip or afterslip:
        p["slip"] = draw_slip(seed, p, afterslip=afterslip)
    dates = epochs(p, mixed=mixed)
    r = np.random.default_rng(seed + 99)
    nx, ny = int(WIDTH / 100), int(HEIGHT / 100)
    iy, ix = np.nonzero(r.random((ny, nx)) < p["coverage"])
    x, y = X0 + (ix + r.random(ix.size)) * 100, Y0 + HEIGHT - (iy + r.random(iy.size)) * 100
    d = field(x[None], y[None], years_since(dates, p["start"])[:, None], p)
    d = d + atmosphere(r, len(dates), ny, nx, p["atmosphere"], p["correlation_km"] * 10)[:, iy, ix]
    d = d + r.normal(0, p["white"], d.shape)
    d = d - d[:1]
    d[r.random(d.shape) < p["missing"]] = np.nan
    d[0] = 0.0
    columns = {"pid": [f"S{seed}P{i:06d}" for i in range(x.size)], "easting": x, "northing": y,
               "rmse": np.full(x.size, np.hypot(p["white"], p["atmosphere"]))}
    table = pd.concat([pd.DataFrame(columns), pd.DataFrame(np.round(d.T, 1), columns=[
        str(day).replace("-", "") for day in dates])], axis=1)
    tmp = folder / ".tile.csv.tmp"
    table.to_csv(tmp, index=False, float_format="%.1f")
    (folder / "params.json").write_text(json.dumps(dict(p, mixed=mixed), indent=1) + "\n")
    tmp.replace(tile)
    return tile


def folder_name(seed: int, *, mixed: bool, slip: bool, afterslip: bool = False) -> str:
    return f"outside-{seed}{'-mixed' if mixed else ''}{'-afterslip' if afterslip else '-slip' if slip else ''}"


def scenario(seed: int, *, data: Path, mixed: bool = False, slip: bool = False, afterslip: bool = False):
    """``(folder, cube, params, truth, zones)`` of a seed's tile, written and gridded once: the cube (t, y, x)
    loaded, the noise-free truth at its cell centres (t, y, x) float32, and the zones (y, x): the cells whose
    truth, without the tilt, moves more than 15 mm over the record."""
    from insarcast.cube import open_cube
    from insarcast.grid import grid_files

    folder = data / folder_name(seed, mixed=mixed, slip=slip, afterslip=afterslip)
    tile = write_tile(folder, seed, mixed=mixed, slip=slip, afterslip=afterslip)
    if not (folder / "cube.zarr").exists():
        grid_files([tile], folder / "cube.zarr")
    cube = open_cube(folder / "cube.zarr").load()
    p = json.loads((folder / "params.json").read_text())
    x, y = np.meshgrid(cube["x"].values, cube["y"].values)
    t = years_since(cube["t"].values, p["start"])[:, None, None]
    truth = field(x[None], y[None], t, p).astype(np.float32)
    zones = np.abs(field(x[None], y[None], t, p, tilt=False)).max(axis=0) > 15
    return folder, cube, p, truth, zones


def outside_on(seed: int, ensemble, *, data: Path, origins: int, mixed: bool, slip: bool = False,
               afterslip: bool = False) -> dict | None:
    import xarray as xr

    from skill import scored

    from insarcast.errors import InputError
    from insarcast.report import skill
    from insarcast.udf.run import check_compatible

    folder, cube, p, true, zones = scenario(seed, data=data, mixed=mixed, slip=slip, afterslip=afterslip)
    try:
        check_compatible(cube["displacement"], ensemble.manifest, path=str(folder / "cube.zarr"))
    except InputError as err:
        print(f"\n== outside-{seed}: not scored: {err}")
        return None
    truth = xr.DataArray(true, dims=("t", "y", "x"), coords={"t": cube["t"], "y": cube["y"], "x": cube["x"]})
    nt = cube.sizes["t"]
    anchors = skill.origins(nt, history=ensemble.history, horizon=ensemble.horizon,
                            start=int(round(0.9 * nt)), count=origins)
    tick = time.perf_counter()
    scores = skill.score(cube, ensemble, anchors=anchors, truth=truth, zones=zones)
    name = (f"outside-{seed}{' (12-day epochs after 2021-12-23)' if mixed else ''}"
            f"{_slip_text(p) if 'slip' in p else ''}")
    return {**scored(name, scores, seconds=time.perf_counter() - tick), "zones_share": float(zones.mean()),
            "cadence_days": cube.attrs.get("cadence_days")}


def _slip_text(p: dict) -> str:
    f = p["slip"]
    date = np.datetime64(p["start"], "D") + int(round(f["t"] * 365.25))
    after = f" and {f['after'] * f['drop']:.0f} mm more over tau {f['tau'] * 365.25:.0f} days" if "after" in f else ""
    return f" (a fault slips {f['drop']:.0f} mm at {date}{after})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ensemble", type=Path, help="an exported ensemble folder (insarcast demo's ensemble/)")
    parser.add_argument("--seeds", default="101,202")
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--mixed", action="store_true", help="12-day epochs after 2021-12-23")
    parser.add_argument("--slip", action="store_true", help="add a fault that slips once (module docstring)")
    parser.add_argument("--afterslip", action="store_true", help="the same fault, slipping on after the jump")
    parser.add_argument("--tile-only", action="store_true", help="write the tiles and stop")
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.tile_only:
        for seed in seeds:
            print(write_tile(args.data / folder_name(seed, mixed=args.mixed, slip=args.slip, afterslip=args.afterslip),
                             seed, mixed=args.mixed, slip=args.slip, afterslip=args.afterslip))
        return 0
    if args.ensemble is None:
        parser.error("--ensemble is required (or --tile-only)")
    from skill import print_skill

    from insarcast.udf.ensemble import load_ensemble

    ensemble = load_ensemble(args.ensemble)
    results = []
    for seed in seeds:
        result = outside_on(seed, ensemble, data=args.data, origins=args.origins, mixed=args.mixed, slip=args.slip,
                            afterslip=args.afterslip)
        if result is not None:
            print_skill(result)
            results.append(result)
    write_json(args.out or HERE / "results" / "outside.json", {"ensemble": str(args.ensemble), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
