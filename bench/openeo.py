"""One openEO UDF call on a backend-sized tile: wall time and peak memory; the Rhineland's call count.

    python bench/openeo.py --ensemble ENSEMBLE_DIR [--tile 256] [--halo H] [--epochs T] [--threads 1]
                           [--region 2000x1000] [--out bench/results/openeo.json]
    python bench/openeo.py --stand-in [...]      # no exported ensemble at hand: 10 linear ONNX members at
                                                 # the demo's shapes (T 12, F 6, P 32); model cost ~ none

The tile is (tile + 2 halo) cells a side, one band per epoch labelled by its date (the graph's form),
a random-walk field at the ensemble's grid and epoch spacing; the UDF (``apply_datacube``, the file
the backend runs, through openeo's ``run_udf_code``) runs in a fresh subprocess that reports its wall
time, the growth of its peak resident set (``ru_maxrss``) over the call (``peak_mib``, above the
interpreter with numpy, xarray, onnxruntime and openeo imported) and the whole peak (``rss_mib``). The
calls for the region are ceil(ny / tile) x ceil(nx / tile). The job options
(:func:`insarcast.udf.openeo_job.job_options`) derive from the whole peak; ``UDF_PEAK_MIB`` is the figure
this script printed, with the ensemble it names. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np, xarray
from openeo.udf import UdfData, XarrayDataCube, run_udf_code
from insarcast.udf.openeo_graph import udf_code
spec = json.loads(sys.argv[1])
n, t = spec["cells"], spec["epochs"]
rng = np.random.default_rng(0)
field = np.cumsum(rng.normal(0, 1, (t, n, n)).astype(np.float32), axis=0)
dates = [str(np.datetime64("2020-01-01") + np.timedelta64(int(i * spec["epoch_days"]), "D")) for i in range(t)]
x = 4000000.0 + spec["spacing"] * (np.arange(n) + 0.5)
y = 3100000.0 - spec["spacing"] * (np.arange(n) + 0.5)
tile = xarray.DataArray(field, dims=("bands", "y", "x"), coords={"bands": dates, "y": y, "x": x})
code = udf_code()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
out = run_udf_code(code, UdfData(datacube_list=[XarrayDataCube(tile)], user_context=spec["context"]))
wall = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall_s": wall, "peak_mib": (after - before) / 1024, "rss_mib": after / 1024}))
"""


def stand_in(folder: Path, members: int) -> Path:
    """10 linear members at the demo's shapes, written with the tests' helper."""
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root), str(root / "tests")]          # the test module imports its conftest by name
    import tests.test_udf_ensemble_forecast as fixture

    fixture.T, fixture.F, fixture.P = 12, 6, 32
    return fixture.write_linear_ensemble(folder, coefficients=[0.1 * (k + 1) for k in range(members)])


def main() -> None:
    from insarcast.udf.spatial import halo as spatial_halo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble", type=Path)
    parser.add_argument("--stand-in", action="store_true")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--halo", type=int, help="cells of context (default: the graph's, spatial.halo(P))")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--region", default="2000x1000")
    parser.add_argument("--out", type=Path, default=Path("bench/results/openeo.json"))
    args = parser.parse_args()
    from insarcast.udf.openeo_job import job_options

    with tempfile.TemporaryDirectory() as tmp:
        ensemble = stand_in(Path(tmp) / "ensemble", args.members) if args.stand_in else args.ensemble
        if ensemble is None:
            parser.error("give --ensemble DIR or --stand-in")
        manifest = json.loads((Path(ensemble) / "ensemble.json").read_text())
        halo = spatial_halo(manifest["patch"]) if args.halo is None else args.halo       # the graph's default
        thresholds = {"q85": 1.0, "q95": 2.0, "q99": 3.0, "std_tercile_1": 0.1, "std_tercile_2": 0.2}
        spec = {"cells": args.tile + 2 * halo, "epochs": args.epochs or manifest["history"],
                "spacing": manifest["grid"]["spacing"], "epoch_days": manifest["epoch_days"],
                "context": {"ensemble": str(ensemble), "thresholds": thresholds, "threads": args.threads}}
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        call = json.loads(done.stdout.strip().splitlines()[-1])
        ensemble_mib = sum(m["bytes"] for m in manifest["members"]) / 2**20
    ny, nx = (int(v) for v in args.region.split("x"))
    calls = math.ceil(ny / args.tile) * math.ceil(nx / args.tile)
    result = {"ensemble": "stand-in (linear members, demo shapes)" if args.stand_in else str(args.ensemble),
              "members": len(manifest["members"]), "tile": args.tile, "halo": halo, "cells": spec["cells"],
              "epochs": spec["epochs"], **call, "region": args.region, "calls": calls,
              "job_options": job_options(archive_url="ARCHIVE_URL", peak_mib=call["rss_mib"],
                                         ensemble_mib=ensemble_mib)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:>12}  {value}")


if __name__ == "__main__":
    main()
