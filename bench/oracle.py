"""How much could any correction of the reference learn from the model inputs? A linear bound.

    python bench/oracle.py [--scenarios demo,fast-mine,accelerating-fault] [--data DIR] [--out FILE]
    python bench/oracle.py --transfer-from demo --scenarios demo-seed7,fast-mine,...
    python bench/oracle.py --train-scenarios train-seed1,train-seed2,train-seed3,train-fast,train-accel --scenarios ...

The networks of a residual-hindcast ensemble correct the adaptive baseline (the reference) from the
model inputs (:func:`insarcast.udf.inputs.model_inputs`); on every benchmark scenario they add
nothing (README, "Forecast skill"). This asks whether there was anything to learn. Per pixel, the
features are the 13 static channels and the last 3 residuals of the inputs at one anchor, their
means over 3 x 3 and 9 x 9 neighbourhoods of valid cells, and a constant (49 in all). A ridge
regression (standardised features, lambda = 10) of the correction at the horizon F is fitted over
the anchors of the training period (every 5th epoch from 30 % to 80 % of the cube), to two targets:

- ``oracle``: the correction the noise-free truth asks for, ``(T(a+F) - T(a)) - (R(a+F) - R(a))``,
  which no user has;
- ``observed``: the networks' own training target, ``d(a+F) - R(a+F)`` (:mod:`insarcast.udf.inputs`).

Both are scored on the test origins of ``bench/skill.py`` (6 in the last 10 % of the epochs)
against the true change at F and against the observed change less the anchor's departure
``d(a+F) - d(a) - (R(a) - d(a))``, each map through the 3 x 3 binomial kernel (the products' spatial
filter when the README's figures were measured; the products now choose a width per pixel), beside
the filtered reference. A linear model is a lower bound on what a network could fit, but with about 1.5 million
pixel-anchors per scenario the ridge is not short of data: where the oracle gains and the observed
fit does not, what the inputs could teach is not in the targets training has.

``--transfer-from NAME`` fits the truth's correction on one scenario only (a synthetic truth is the
one the project can make) and scores it on the others: does it carry over to other physics and noise?
``--train-scenarios`` fits it on several scenarios that are never scored (``bench/skill.py``'s
``TRAINING``: the demo physics with seeds 1 to 3, a face 1.8 x as fast, a fault creeping with
-5 mm/yr² acceleration) and scores it on ``--scenarios``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from common import write_json
from skill import HERE, TRAINING, scenario_cube

T, F = 12, 6                  # the demo preset's history and horizon
LAMBDA = 10.0
SIZES = (3, 9)                # neighbourhood means


def features(d: np.ndarray, valid: np.ndarray, years: np.ndarray, anchor: int):
    """``(features (49, y, x), reference change at F (y, x), level R(a) - d(a) (y, x))`` at ``anchor``."""
    from scipy.ndimage import uniform_filter

    from insarcast.udf.inputs import model_inputs

    unit = {"input_mean": 0.0, "input_std": 1.0, "target_mean": 0.0, "target_std": 1.0}   # features in mm
    built = model_inputs(d[None, : anchor + 1], valid[None], history=T, horizon=F, norm=unit,
                         inputs="residual-hindcast", years=years[: anchor + 1])
    x = built.x[0]
    base = np.concatenate([x[-1, 3:], x[-3:, 2]])                 # static channels, last 3 residuals
    means = []
    for size in SIZES:
        weight = np.maximum(uniform_filter(valid.astype(np.float64), size, mode="constant"), 1e-9)
        means.append([uniform_filter(np.where(valid, c, 0.0), size, mode="constant") / weight for c in base])
    stacked = np.concatenate([base, *map(np.asarray, means), np.ones((1,) + valid.shape)])
    return stacked, built.reference[0, -1].astype(np.float64), built.level[0].astype(np.float64)


def ridge(x: np.ndarray, y: np.ndarray, lam: float = LAMBDA):
    """A ridge regression on standardised columns (the last, the constant, unpenalised in scale)."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    mu[-1], sd[-1] = 0.0, 1.0
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ y)
    return lambda new: ((new - mu) / sd) @ w


class Scenario(NamedTuple):
    d: np.ndarray               # (t, y, x) observed displacement, mm
    valid: np.ndarray           # (y, x)
    years: np.ndarray           # (t,)
    truth: np.ndarray           # (t, y, x) noise-free displacement, mm


def load(name: str, data: Path) -> Scenario:
    import xarray as xr

    from insarcast.baselines import decimal_years
    from insarcast.cube import open_cube

    cube_path, folder = scenario_cube(name, data)
    cube = open_cube(cube_path).load()
    truth = xr.open_zarr(folder / "truth.zarr")["displacement"].load().transpose("t", "y", "x").values
    d = cube["displacement"].transpose("t", "y", "x").values.astype(np.float32)
    valid = np.asarray(cube["valid"].values, bool) & np.isfinite(d).all(0)
    return Scenario(d, valid, decimal_years(cube["t"].values), truth)


def rows(sc: Scenario, anchors, keys: tuple[str, ...], *, dtype=None) -> dict[str, tuple[list, list]]:
    """Per target of ``keys`` (``oracle``: the truth's correction; ``observed``: the networks' target),
    the features ``(pixels, 49)`` and targets of the valid pixels at each anchor."""
    out: dict[str, tuple[list, list]] = {key: ([], []) for key in keys}
    for a in anchors:
        x, ref, level = features(sc.d, sc.valid, sc.years, int(a))
        targets = {"oracle": lambda: (sc.truth[a + F] - sc.truth[a]) - ref,
                   "observed": lambda: (sc.d[a + F] - sc.d[a]) - level - ref}
        for key in keys:
            y = targets[key]()
            ok = sc.valid & np.isfinite(y)
            out[key][0].append(x[:, ok].T if dtype is None else x[:, ok].T.astype(dtype))
            out[key][1].append(y[ok])
    return out


def fit(sc: Scenario) -> tuple[dict, int]:
    """The ridge corrections fitted over the training period's anchors to the truth (``oracle``) and to
    the observations (``observed``), and the number of pixel-anchors."""
    nt = sc.d.shape[0]
    found = rows(sc, np.arange(int(0.3 * nt), int(0.8 * nt) - F, 5), ("oracle", "observed"))
    fitted = {key: ridge(np.concatenate(xs), np.concatenate(ys)) for key, (xs, ys) in found.items()}
    return fitted, int(sum(len(y) for y in found["oracle"][1]))


def fit_truths(names: list[str], data: Path, *, every: int = 8) -> tuple[dict, int]:
    """The truth's correction fitted over several training scenarios at once (anchors every ``every``
    epochs from 30 % of each cube to its end: those scenarios are never scored)."""
    xs, ys = [], []
    for name in names:
        sc = load(name, data)
        nt = sc.d.shape[0]
        found = rows(sc, np.arange(int(0.3 * nt), nt - F - 1, every), ("oracle",), dtype=np.float32)["oracle"]
        xs += found[0]
        ys += found[1]
    return {"synthetic": ridge(np.concatenate(xs).astype(np.float64), np.concatenate(ys))}, \
        int(sum(len(y) for y in ys))


def score(sc: Scenario, fitted: dict) -> dict:
    """RMSE at F over the test origins, against the truth and the observations, of the filtered
    reference and of the reference plus each fitted correction."""
    from insarcast.report import skill
    from insarcast.udf.spatial import binomial_filter

    nt = sc.d.shape[0]
    test = skill.origins(nt, history=T, horizon=F, start=int(round(0.9 * nt)), count=6)
    squared: dict[str, list] = {"reference": [], **{key: [] for key in fitted}}
    against_obs: dict[str, list] = {key: [] for key in squared}
    recall: dict[str, list] = {key: [] for key in squared}
    for a in test:
        x, ref, level = features(sc.d, sc.valid, sc.years, int(a))
        true = sc.truth[a + F] - sc.truth[a]
        seen = sc.d[a + F] - sc.d[a] - level             # the observed change less the anchor's departure
        maps = {"reference": ref}
        for key, model in fitted.items():
            correction = np.zeros(sc.valid.shape)
            correction[sc.valid] = model(x[:, sc.valid].T)
            maps[key] = ref + correction
        for key, layer in maps.items():
            filtered = binomial_filter(np.where(sc.valid, layer, np.nan).astype(np.float32)[None])[0]
            squared[key].append((filtered - true)[sc.valid] ** 2)
            against_obs[key].append((filtered - seen)[sc.valid] ** 2)
            scores = skill.map_scores(filtered, skill.quantile_classes(filtered, sc.valid), true, sc.valid, None)
            recall[key].append((scores["recall_top5"], scores["precision_top15"]))
    return {"test_anchors": [int(a) for a in test],
            "recall_precision": {k: [float(np.mean([r[i] for r in v])) for i in (0, 1)] for k, v in recall.items()},
            "rmse_truth_mm": {k: float(np.sqrt(np.mean(np.concatenate(v)))) for k, v in squared.items()},
            "rmse_observed_mm": {k: float(np.sqrt(np.mean(np.concatenate(v)))) for k, v in against_obs.items()}}


def _row(label: str, r: dict, keys: tuple[str, ...]) -> str:
    cells = [f"{r['reference']:10.3f}"] + [f"{r[k]:8.3f} ({r[k] / r['reference'] - 1:+5.0%})" for k in keys]
    return f"{label:22s} " + " ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="demo,fast-mine,accelerating-fault")
    parser.add_argument("--transfer-from", default=None,
                        help="fit to this scenario's truth only, and score that fit on each of --scenarios")
    parser.add_argument("--train-scenarios", default=None,
                        help=f"fit to the truths of these scenarios together (e.g. {','.join(TRAINING)}), "
                             "and score that fit on each of --scenarios")
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "oracle.json")
    args = parser.parse_args()
    source, keys, told = None, ("oracle", "observed"), ""
    if args.transfer_from:
        fitted, pixels = fit(load(args.transfer_from, args.data))
        source, keys, told = ({"transfer": fitted["oracle"]}, pixels), ("transfer",), args.transfer_from
    elif args.train_scenarios:
        source, keys, told = fit_truths(args.train_scenarios.split(","), args.data), ("synthetic",), \
            args.train_scenarios
    print(f"RMSE of the change at F = {F} against the truth (then against the observations), test origins, "
          f"each map spatially filtered" + (f"; corrections fitted to the truth of {told}" if source else ""))
    print(f"{'scenario':22s} {'reference':>10s} " + " ".join(f"{k:>16s}" for k in keys))
    results = []
    for name in args.scenarios.split(","):
        tick = time.perf_counter()
        sc = load(name, args.data)
        fitted, pixels = source or fit(sc)
        res = {"scenario": name, "pixel_anchors": pixels, **score(sc, fitted),
               "seconds": round(time.perf_counter() - tick, 1)}
        results.append(res)
        print(_row(name, res["rmse_truth_mm"], keys), flush=True)
        print(_row("  vs observations", res["rmse_observed_mm"], keys), flush=True)
        print(f"{'  recall / precision':22s} " + "  ".join(f"{k} {r:.2f} / {p:.2f}" for k, (r, p) in
                                                       res["recall_precision"].items()), flush=True)
    write_json(args.out, {"features": 49, "lambda": LAMBDA, "transfer_from": args.transfer_from,
                          "train_scenarios": args.train_scenarios, "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
