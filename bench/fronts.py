"""What the front's carry (insarcast.udf.fronts) does to the reference, scenario by scenario.

    python bench/fronts.py [--seeds 404,808,909] [--scenarios demo,other-physics] [--origins 6] [--data DIR]

For each of ``bench/outside.py``'s seeds and ``bench/skill.py``'s scenarios: the filtered adaptive
reference (the products' members where they keep it), as ``insarcast.udf.inputs.reference_fit`` and the
spatial filter make it, against the noise-free truth at the cell centres, every step 1..F over the skill
origins, overall and in the zones, without and with the carry; the share of the cell-origins that take
it; and on those cells, the RMS of the true change at F, of the reference's error and of the carry's.
It measures the carry alone: the synthetic-truth correction and the networks are not in it (the
products' figures with them: ``bench/outside.py`` and ``bench/skill.py``). Not a timed test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
T, F = 12, 6                  # the demo preset's history and horizon


def cases(seeds: list[int], scenarios: list[str], data: Path):
    """``(name, cube, truth (t, y, x), zones (y, x))`` of each seed and scenario, made once under ``data``."""
    import xarray as xr

    from insarcast.cube import open_cube
    from insarcast.report import skill as report_skill
    from outside import scenario
    from skill import scenario_cube

    for seed in seeds:
        _, cube, _, truth, zones = scenario(seed, data=data)
        yield f"outside-{seed}", cube, truth, zones
    for name in scenarios:
        path, folder = scenario_cube(name, data)
        cube = open_cube(path).load()
        truth = xr.open_zarr(folder / "truth.zarr")["displacement"].transpose("t", "y", "x").values
        yield name, cube, truth, report_skill.zone_mask(folder / "zones.geojson", cube)


def carry_on(cube, truth: np.ndarray, zones: np.ndarray, *, origins: int) -> dict:
    """The reference without and with the carry over ``origins`` test origins (module docstring)."""
    from insarcast import baselines as bl
    from insarcast.report import skill as report_skill
    from insarcast.udf.fronts import carry_of
    from insarcast.udf.inputs import reference_fit
    from insarcast.udf.spatial import adaptive_filter

    d = cube["displacement"].transpose("t", "y", "x").values.astype(np.float32)
    valid = cube["valid"].values.astype(bool) & np.isfinite(d).all(axis=0)
    years = bl.decimal_years(cube["t"].values)
    n = len(years)
    without, with_, taken, true_f, ref_f, carry_f = [], [], [], [], [], []
    for a in report_skill.origins(n, history=T, horizon=F, start=int(round(0.9 * n)), count=origins):
        true = truth[a + 1: a + F + 1] - truth[a]
        series = np.where(valid, d[: a + 1], np.nan)
        fitted = reference_fit(series, years[: a + 1], history=T, horizon=F, inputs="residual-corrected")
        reference = adaptive_filter(fitted[F:2 * F], fitted[2 * F])
        carry = carry_of(series, fitted, history=T)
        took = np.isfinite(carry[-1])
        without.append((reference - true)[:, valid])
        with_.append((np.where(took, carry, reference) - true)[:, valid])
        taken.append(took[valid])
        true_f.append(true[-1][took])
        ref_f.append((reference[-1] - true[-1])[took])
        carry_f.append((carry[-1] - true[-1])[took])
    z = zones[valid]

    def rms(parts, where=slice(None)):
        return float(np.sqrt(np.mean(np.stack(parts)[..., where] ** 2)))

    def rms_flat(parts):
        flat = np.concatenate(parts)
        return float(np.sqrt(np.mean(flat ** 2))) if flat.size else float("nan")

    return {"without": (rms(without), rms(without, z)), "with": (rms(with_), rms(with_, z)),
            "share": float(np.mean(taken)), "cells": int(sum(len(p) for p in true_f)),
            "true_at_F": rms_flat(true_f), "reference_error_at_F": rms_flat(ref_f),
            "carry_error_at_F": rms_flat(carry_f)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="404,808,909")
    parser.add_argument("--scenarios", default="demo,other-physics")
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    print("RMSE of the change against the truth, every step, overall / zones (mm); the carry's cells at F (mm)")
    for name, cube, truth, zones in cases(seeds, scenarios, args.data):
        r = carry_on(cube, truth, zones, origins=args.origins)
        print(f"{name:22s} reference {r['without'][0]:.3f} / {r['without'][1]:.3f} -> with the carry "
              f"{r['with'][0]:.3f} / {r['with'][1]:.3f}; taken at {100 * r['share']:.3f} % of the cell-origins "
              f"({r['cells']}): true change {r['true_at_F']:.2f}, reference error {r['reference_error_at_F']:.2f}, "
              f"carry error {r['carry_error_at_F']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
