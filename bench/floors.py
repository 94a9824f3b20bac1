"""Where the reference's error lies on the other simulator's ground, and what bounds it.

    python bench/floors.py [--seeds 404,808] [--origins 6] [--data DIR]
    python bench/floors.py --scenarios quiet,demo [--origins 6]

On ``bench/outside.py``'s ground the ensemble is not much better than trend + annual on some seeds
(README, "Forecast skill"). This splits the error of the filtered adaptive reference at the horizon F
(what the ensemble corrects by a few per cent there) by the physics that made each cell, and sets it
beside three floors, all scored like it against the noise-free truth at the cell centres, over the same
test origins:

- ``gridded truth``: the noise-free field at the same points, gridded by ``insarcast grid`` (its own
  change, no forecast): what the gridding alone loses;
- ``reference on the gridded truth``: the adaptive curve fitted to that noise-free cube: what the four
  curves cannot forecast even without noise;
- ``oracle of the four curves``: at each cell the one of the linear, local, long and quadratic curves
  (fitted to the observations) nearest the truth: what a perfect choice among them would reach.

The cells are labelled by the physics that moves them most (the tunnel's strip first, then the
landslide, the three bowls, the dome, and the rest), and the tunnel's cells also by where the face is
at each origin: ahead by more than the horizon, reaching them within it, passed within the settling's
time constant tau, within 3 tau, or earlier.

``--scenarios`` takes ``bench/skill.py``'s scenarios instead (this project's simulator) and scores, as
the skill table does (every step 1..F, overall and in the zones), the ``gridded truth`` floor beside the
three simple baselines: the ratio a forecast that knew the cube's noise-free ground exactly would
reach against the best of them. On quiet ground the gridding's smoothing of the troughs is most of
the error left (README, "Forecast skill").

"Filtered" here is the 3 x 3 binomial kernel, as the products had it when the README's figures were
measured; the products now choose a width per pixel by hindcast (:mod:`insarcast.udf.spatial`), which
takes 7 to 9 % off this reference on seeds 404 and 808 (README, "The spatial filter").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from outside import HERE, _gauss, field, scenario, years_since

T, F = 12, 6                  # the demo preset's history and horizon
PHASES = ("ahead > F", "reached within F", "passed < tau", "passed tau..3 tau", "passed earlier")


def noise_free_cube(folder: Path, p: dict) -> np.ndarray:
    """``(t, y, x)``: the noise-free field at the tile's own points, gridded as the tile was (cached)."""
    import pandas as pd

    from insarcast.cube import open_cube
    from insarcast.grid import grid_files

    out = folder / "noise-free.zarr"
    if not out.exists():
        table = pd.read_csv(folder / "tile.csv")
        columns = [c for c in table.columns if c.isdigit()]
        dates = np.array([f"{c[:4]}-{c[4:6]}-{c[6:]}" for c in columns], "datetime64[D]")
        values = field(table["easting"].values[None], table["northing"].values[None],
                       years_since(dates, p["start"])[:, None], p)
        table[columns] = np.round(values.T, 3)
        csv = folder / ".noise-free.csv"
        table.to_csv(csv, index=False)
        grid_files([csv], out)
        csv.unlink()
    return open_cube(out)["displacement"].load().transpose("t", "y", "x").values


def _along_across(x, y, x0, y0, angle):
    c, s = np.cos(angle), np.sin(angle)
    return (x - x0) * c + (y - y0) * s, -(x - x0) * s + (y - y0) * c


def physics(p: dict, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``(label (y, x) int, names)``: the physics that moves each cell (module docstring's order)."""
    k = p["tunnel"]
    along, across = _along_across(x, y, k["x0"], k["y0"], k["angle"])
    s = p["slide"]
    a, b = _along_across(x, y, s["cx"], s["cy"], s["angle"])
    masks = {"tunnel": (np.abs(across) < 2.5 * k["width"] + 100) & (along >= -200),
             "landslide": np.hypot(a / s["a"], b / s["b"]) < 1.3}
    for name in ("bowl_linear", "bowl_onset", "bowl_accelerating", "dome"):
        masks[name] = _gauss(x, y, p[name]) > 0.1
    label = np.full(x.shape, len(masks))
    for i, m in reversed(list(enumerate(masks.values()))):
        label[m] = i
    return label, [*masks, "rest"]


def tunnel_phase(p: dict, x: np.ndarray, y: np.ndarray, t_anchor: float) -> np.ndarray:
    """``(y, x)`` index into :data:`PHASES`: where the tunnel's face is at time ``t_anchor`` (years)."""
    k = p["tunnel"]
    along, _ = _along_across(x, y, k["x0"], k["y0"], k["angle"])
    since = t_anchor - (k["t_start"] + along / k["speed"])
    horizon = F * 6 / 365.25
    return np.select([since < -horizon, since < 0, since < k["tau"], since < 3 * k["tau"]], [0, 1, 2, 3], 4)


def floors_on(seed: int, *, data: Path, origins: int) -> dict:
    from insarcast import baselines as bl
    from insarcast.report import skill
    from insarcast.udf.spatial import binomial_filter

    folder, cube, p, truth, zones = scenario(seed, data=data)
    d = cube["displacement"].transpose("t", "y", "x").values
    years = bl.decimal_years(cube["t"].values)
    x, y = np.meshgrid(cube["x"].values, cube["y"].values)
    t = years_since(cube["t"].values, p["start"])
    gridded = noise_free_cube(folder, p)
    valid = np.isfinite(d).all(axis=0)
    label, names = physics(p, x, y)
    nt = d.shape[0]
    anchors = [int(a) for a in skill.origins(nt, history=T, horizon=F, start=int(round(0.9 * nt)), count=origins)]

    def filtered(curve):
        return binomial_filter(np.where(valid, bl.change(curve, T)[-1], np.nan)[None])[0].astype(np.float64)

    def reference(series, a):
        return bl.fits(series[: a + 1], years[: a + F + 1], a, F, history=T, hindcast=bl.HINDCAST_ORIGINS,
                       reference=True)

    sq = {k: [] for k in ("reference", "oracle of the four curves", "reference on the gridded truth",
                          "gridded truth")}
    phases = []
    for a in anchors:
        true = truth[a + F] - truth[a]
        f = reference(d, a)
        curves = np.stack([bl.change(c, T)[-1] for c in (f.linear, f.local, f.long, f.quadratic)])
        nearest = np.take_along_axis(curves, np.argmin(np.abs(np.nan_to_num(curves, nan=np.inf) - true), 0)[None], 0)[0]
        maps = {"reference": filtered(f.adaptive()),
                "oracle of the four curves": binomial_filter(np.where(valid, nearest, np.nan)[None])[0],
                "reference on the gridded truth": filtered(reference(gridded, a).adaptive()),
                "gridded truth": gridded[a + F] - gridded[a]}
        for k, m in maps.items():
            sq[k].append(np.where(valid, (m - true) ** 2, np.nan))
        phases.append(tunnel_phase(p, x, y, t[a]))
    out = {"seed": seed, "cells": int(valid.sum()), "physics": names,
           "share_of_cells": [float((valid & (label == i)).sum() / valid.sum()) for i in range(len(names))]}
    for k, e in sq.items():
        e = np.stack(e)
        total = np.nansum(e)
        per = [(e[:, (label == i) & valid]) for i in range(len(names))]
        tunnel = e[:, (label == 0) & valid]
        ph = np.stack(phases)[:, (label == 0) & valid]
        out[k] = {"overall": float(np.sqrt(np.nanmean(e))), "zones": float(np.sqrt(np.nanmean(e[:, zones & valid]))),
                  "rms": [float(np.sqrt(np.mean(v))) if v.size else None for v in per],
                  "share_of_error": [float(v.sum() / total) for v in per],
                  "tunnel_phases": [{"cell_origins": int((ph == j).sum()),
                                     "rms": float(np.sqrt(tunnel[ph == j].mean())) if (ph == j).any() else None,
                                     "share_of_error": float(tunnel[ph == j].sum() / total)}
                                    for j in range(len(PHASES))]}
    return out


def gridding_floor_on(name: str, *, data: Path, origins: int) -> dict:
    """The gridded noise-free truth's own change against the truth at the cell centres, and the simple
    baselines, at every step 1..F over the skill origins of ``bench/skill.py``'s scenario ``name``."""
    import dataclasses

    import xarray as xr
    from skill import scenario_config, scenario_cube

    from insarcast import baselines as bl
    from insarcast.cube import open_cube
    from insarcast.egms import read_egms
    from insarcast.grid import grid_points
    from insarcast.report import skill
    from insarcast.synth.physics import truth_displacement

    cube_path, folder = scenario_cube(name, data)
    out = folder / "noise-free.zarr"
    if not out.exists():
        points = read_egms(sorted(folder.glob("*.csv")))
        true = truth_displacement(scenario_config(name), points.easting, points.northing)
        grid_points(dataclasses.replace(points, values=np.where(np.isfinite(points.values), true, np.nan)
                                        .astype(np.float32)), out)
    cube = open_cube(cube_path).load()
    d = cube["displacement"].transpose("t", "y", "x").values.astype(np.float32)
    gridded = open_cube(out)["displacement"].load().transpose("t", "y", "x").values
    truth = xr.open_zarr(folder / "truth.zarr")["displacement"].transpose("t", "y", "x").values
    valid = cube["valid"].values.astype(bool) & np.isfinite(d).all(0) & np.isfinite(gridded).all(0)
    zones = skill.zone_mask(folder / "zones.geojson", cube)
    years = bl.decimal_years(cube["t"].values)
    nt = d.shape[0]
    sq: dict[str, list] = {k: [] for k in ("gridded truth", *bl.SIMPLE_BASELINES)}
    for a in skill.origins(nt, history=T, horizon=F, start=int(round(0.9 * nt)), count=origins):
        true = truth[a + 1: a + F + 1] - truth[a]
        maps = {"gridded truth": gridded[a + 1: a + F + 1] - gridded[a],
                **bl.forecasts(bl.SIMPLE_BASELINES, d, years, a, F, history=T)}
        for k, m in maps.items():
            sq[k].append((m - true)[:, valid])
    zone = zones[valid] if zones is not None else np.zeros(int(valid.sum()), bool)
    result = {"scenario": name}
    for region, keep in (("overall", slice(None)), ("zones", zone)):
        rmse = {k: float(np.sqrt(np.mean(np.stack(v)[..., keep] ** 2))) for k, v in sq.items()}
        best = min(bl.SIMPLE_BASELINES, key=rmse.get)
        result[region] = {**rmse, "best": best, "ratio": rmse["gridded truth"] / rmse[best]}
    return result


def print_gridding_floor(r: dict) -> None:
    print(f"\n== {r['scenario']} (RMSE of the change at steps 1..F against the truth at the cell centres, mm)")
    for region in ("overall", "zones"):
        v = r[region]
        print(f"  {region:8s} gridded truth {v['gridded truth']:.3f}  persistence {v['persistence']:.3f}  linear "
              f"{v['linear']:.3f}  trend_annual {v['trend_annual']:.3f}  -> the best ratio a forecast of the "
              f"cube can reach: {v['ratio']:.2f} of {v['best']}")


def print_floors(r: dict) -> None:
    names = r["physics"]
    print(f"\n== outside-{r['seed']} ({r['cells']} cells; RMSE of the change at F against the truth, mm)")
    print("cells' share: " + ", ".join(f"{n} {s:.3f}" for n, s in zip(names, r["share_of_cells"])))
    for k in ("reference", "oracle of the four curves", "reference on the gridded truth", "gridded truth"):
        v = r[k]
        parts = ", ".join(f"{n} {rms:.3f} ({share:.0%})" for n, rms, share in
                          zip(names, v["rms"], v["share_of_error"]) if rms is not None)
        print(f"{k}: overall {v['overall']:.3f}, zones {v['zones']:.3f}; by physics, RMSE (share of the error): {parts}")
        print("    tunnel by the face's phase, cell-origins / RMSE / share of the error: " + "; ".join(
            f"{n} {q['cell_origins']} / {q['rms']:.3f} / {q['share_of_error']:.0%}"
            for n, q in zip(PHASES, v["tunnel_phases"]) if q["rms"] is not None))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="404,808")
    parser.add_argument("--scenarios", default=None, help="bench/skill.py scenarios: the gridding's floor")
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "floors.json")
    args = parser.parse_args(argv)
    from common import write_json

    results = []
    if args.scenarios:
        for name in args.scenarios.split(","):
            results.append(gridding_floor_on(name, data=args.data, origins=args.origins))
            print_gridding_floor(results[-1])
        write_json(args.out.with_name("gridding-floor.json"), {"results": results})
        return 0
    for seed in (int(s) for s in args.seeds.split(",")):
        results.append(floors_on(seed, data=args.data, origins=args.origins))
        print_floors(results[-1])
    write_json(args.out, {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
