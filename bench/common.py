"""What the benchmark scripts share: the demo cube they measure on and a fair timer.

Imported as ``common`` by the scripts beside it (``python bench/NAME.py`` puts this folder first
on ``sys.path``)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def demo_cube(data: Path) -> Path:
    """The demo scenario (seed 0) gridded once into ``data/demo-cube.zarr`` and reused."""
    return preset_cube(data, "demo")


def preset_cube(data: Path, name: str) -> Path:
    """The scenario preset ``name`` (seed 0) gridded once into ``data/NAME-cube.zarr`` and reused."""
    from insarcast.egms import read_egms
    from insarcast.grid import grid_points
    from insarcast.synth import preset, write_scenario

    cube = data / f"{name}-cube.zarr"
    if not cube.exists():
        outputs = write_scenario(preset(name, seed=0), data / name, progress=False)
        grid_points(read_egms(outputs.csv), cube)
    return cube


def median_seconds(runs, repeats: int, warmup: int = 3) -> list[float]:
    """Median seconds of each callable; they alternate, so that load from elsewhere hits all alike."""
    for _ in range(warmup):
        for run in runs:
            run()
    times = [[] for _ in runs]
    for _ in range(repeats):
        for run, spent in zip(runs, times):
            tick = time.perf_counter()
            run()
            spent.append(time.perf_counter() - tick)
    return [float(np.median(t)) for t in times]


def write_json(path: Path, result: dict) -> None:
    """The results file, whole or not at all (a temporary name beside it, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")[1])
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
