"""Where the synthetic-truth correction helps and where it costs: error against the truth by the
products' forecast scale.

    python bench/terciles.py [--scenarios demo,fast-mine] [--data DIR] [--out FILE]

For each scenario the reference forecast (what a member that keeps its reference gives: the products
of a zero predictor, through the spatial filter) of ``residual-hindcast`` and of
``residual-corrected`` is made at 5 origins in the test period (every 7 epochs from 37 before the
end), and its change at F is scored against the noise-free truth: RMSE and the share of the truth
inside the central 80 % of ``N(median, forecast_scale^2)`` (each formulation's own products), over
all valid pixels, by terciles of the adaptive curve's own error scale
(:func:`insarcast.udf.inputs.reference_scale`, the same pixels for both formulations; the first:
stable ground, the last: where the ground moves and the curve is uncertain) and where the true
change exceeds 2 mm.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import write_json
from skill import HERE, scenario_cube

T, F, P = 12, 6, 16
NORM = {"input_mean": 0.0, "input_std": 3.0, "target_mean": 0.0, "target_std": 3.0}   # a zero predictor ignores it


def scores(name: str, data: Path) -> dict:
    import xarray as xr

    from insarcast.cube import open_cube
    from insarcast.baselines import decimal_years
    from insarcast.udf.forecast import forecast_products
    from insarcast.udf.inputs import reference_scale
    from insarcast.udf.products import normal_cdf

    cube_path, folder = scenario_cube(name, data)
    cube = open_cube(cube_path).load()
    truth = xr.open_zarr(folder / "truth.zarr")["displacement"].transpose("t", "y", "x").values
    nt = cube.sizes["t"]
    d, years = cube["displacement"].transpose("t", "y", "x").values, decimal_years(cube["t"].values)
    # the terciles' pixels: the fit's own error scale at F, not forecast_scale, which also counts the correction
    own = {a: reference_scale(d[: a + 1], years[: a + 1], history=T, horizon=F, inputs="residual-hindcast")[-1]
           for a in range(nt - 37, nt - 8, 7)}
    out = {}
    for inputs in ("residual-hindcast", "residual-corrected"):
        acc: dict[str, list] = {}
        for a in range(nt - 37, nt - 8, 7):
            products = forecast_products(cube.isel(t=slice(0, a + 1)),
                                         lambda x: np.zeros((1, len(x), F, P, P), np.float32), history=T,
                                         horizon_steps=F, patch=P, norm=NORM, members=1, inputs=inputs)
            m, s = products["forecast"].values[0, -1], products["forecast_scale"].values[-1]
            true = truth[a + F] - truth[a]
            ok = np.isfinite(m) & np.isfinite(s) & (s > 0)
            inside = np.abs(normal_cdf((true - m) / np.where(ok, s, 1.0)) - 0.5) <= 0.4
            q1, q2 = np.quantile(own[a][ok], [1 / 3, 2 / 3])
            parts = {"all": ok, "scale_low": ok & (own[a] <= q1), "scale_mid": ok & (own[a] > q1) & (own[a] <= q2),
                     "scale_high": ok & (own[a] > q2), "moving_2mm": ok & (np.abs(true) > 2.0)}
            for key, part in parts.items():
                acc.setdefault(key, []).append(((m - true)[part] ** 2, inside[part]))
        out[inputs] = {key: {"rmse_mm": float(np.sqrt(np.concatenate([e for e, _ in v]).mean())),
                             "central80": float(np.concatenate([i for _, i in v]).mean())} for key, v in acc.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="demo,fast-mine")
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "terciles.json")
    args = parser.parse_args()
    results = {}
    for name in args.scenarios.split(","):
        tick = time.perf_counter()
        results[name] = r = scores(name, args.data)
        print(f"== {name} ({time.perf_counter() - tick:.0f} s): RMSE against the truth at F, mm "
              "(central 80 % coverage of the truth)")
        for key in r["residual-hindcast"]:
            before, after = r["residual-hindcast"][key], r["residual-corrected"][key]
            print(f"  {key:11s} hindcast {before['rmse_mm']:.3f} ({before['central80']:.3f})  corrected "
                  f"{after['rmse_mm']:.3f} ({after['central80']:.3f})  {after['rmse_mm'] / before['rmse_mm'] - 1:+.0%}")
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
