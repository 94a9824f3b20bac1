"""Ingest and gridding throughput and peak memory at three sizes (the synth presets).

    python bench/grid.py [--presets tiny,demo,rhineland] [--data DIR] [--out bench/results/grid.json]

Each size runs in a fresh process so its peak resident memory is its own. The scenario's CSV tiles
are generated once into --data and reused. Goal: rhineland ingests and grids in < 2 min with
peak memory < 4 GiB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_json

HERE = Path(__file__).resolve().parent


def measure(tiles: list[str]) -> dict:
    """Runs in the child process: read, then grid, timing each."""
    from insarcast.egms import read_egms
    from insarcast.grid import grid_points

    t0 = time.perf_counter()
    points = read_egms(tiles)
    t1 = time.perf_counter()
    rss_ingest = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory(dir=HERE / "results") as tmp:
        cube = grid_points(points, Path(tmp) / "cube.zarr")
        t2 = time.perf_counter()
        import xarray as xr

        ds = xr.open_zarr(cube)
        cells = ds.sizes["y"] * ds.sizes["x"]
        valid = float(ds["valid"].mean())
    n, epochs = points.values.shape
    return {
        "points": n, "epochs": epochs, "cells": cells, "valid_fraction": round(valid, 3),
        "csv_bytes": sum(os.path.getsize(t) for t in tiles),
        "ingest_s": round(t1 - t0, 2), "grid_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
        "ingest_points_epochs_per_s": round(n * epochs / (t1 - t0)),
        "grid_cells_epochs_per_s": round(cells * epochs / (t2 - t1)),
        "peak_rss_ingest_gib": round(rss_ingest / 2**30, 3),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,demo,rhineland")
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "grid.json")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return

    from insarcast.synth import preset, write_scenario

    (HERE / "results").mkdir(exist_ok=True)
    rows = {}
    for name in args.presets.split(","):
        folder = args.data / name
        if not any(folder.glob("EGMS_L3_*.csv")):
            print(f"generating the {name} scenario in {folder} ...", file=sys.stderr)
            write_scenario(preset(name, seed=0), folder, progress=True)
        tiles = sorted(str(p) for p in folder.glob("EGMS_L3_*.csv"))
        child = subprocess.run([sys.executable, __file__, "--child", *tiles], check=True, capture_output=True,
                               text=True)
        rows[name] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{name}: {rows[name]}", file=sys.stderr)

    record = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "results": rows}
    write_json(args.out, record)
    keys = ["points", "epochs", "cells", "csv_bytes", "ingest_s", "grid_s", "total_s",
            "ingest_points_epochs_per_s", "grid_cells_epochs_per_s", "peak_rss_gib"]
    print("preset     " + " ".join(f"{k:>14.14}" for k in keys))
    for name, row in rows.items():
        print(f"{name:<10} " + " ".join(f"{row[k]:>14}" for k in keys))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
