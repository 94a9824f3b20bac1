"""Write a synthetic scenario: EGMS CSV tiles, zones GeoJSON, the truth cube and the config.

observed = truth + atmosphere + white noise, with the first epoch the reference (0 everywhere).
Memory stays bounded whatever the region: the atmosphere is made one screen at a time and
sampled at the points into a scratch file; points are then simulated ``POINT_BLOCK`` at a time,
tile by tile, each block streamed into its tile by the EGMS writer; the truth cube
is written in the cube's spatial blocks. Scratch files live in a hidden folder of
``out_dir`` that is removed on exit; the outputs are staged and renamed into place together.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..cube import create_cube, finish_cube
from ..egms import QUALITY_COLUMNS, EgmsCsvWriter, rounded
from ..errors import InputError
from ..fsutil import staged
from ..progress import bar
from .config import ScenarioConfig
from .coverage import PointSet, scenario_grid, select_points, tile_name
from .noise import FractalScreens, read_point_columns, streams, white_noise, write_point_atmosphere
from .physics import truth_displacement
from .quality import quality_columns
from .zones import zones_text

POINT_BLOCK = 10_000
ZONES_NAME = "zones.geojson"
TRUTH_NAME = "truth.zarr"
CONFIG_NAME = "scenario.json"


@dataclass(frozen=True)
class ScenarioOutputs:
    """Paths of what :func:`write_scenario` wrote, and how many points the CSV tiles hold."""

    csv: tuple[Path, ...]
    zones: Path
    truth: Path
    config: Path
    n_points: int


def config_text(config: ScenarioConfig) -> str:
    """scenario.json: the config as sorted JSON (dates are ISO strings already)."""
    return json.dumps(config.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def load_config(path: str | os.PathLike) -> ScenarioConfig:
    """Read a scenario.json back into a :class:`ScenarioConfig`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable scenario JSON ({exc})", path=path) from exc
    try:
        return ScenarioConfig.from_dict(data)
    except InputError as exc:
        raise InputError(exc.message, path=path) from exc


def write_scenario(config: ScenarioConfig, out_dir: str | os.PathLike, *, progress: bool = True) -> ScenarioOutputs:
    """Simulate ``config`` and write its outputs into ``out_dir``; all appear, or none does.

    Writes ``EGMS_L3_E..N.._100km_U_synthetic.csv`` (one per 100 km tile holding points),
    ``zones.geojson``, ``truth.zarr`` (noise-free displacement on the whole grid) and
    ``scenario.json``. Synthetic tiles of an earlier run that this run does not produce are
    removed after the new outputs are in place. Progress bars go to stderr when ``progress``.
    """
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        outputs = _write(config, out, progress=progress)
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise
    keep = {p.name for p in outputs.csv}
    for stale in out.glob("EGMS_L3_*_100km_U_synthetic.csv"):
        if stale.name not in keep:
            stale.unlink(missing_ok=True)
    return outputs


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _write(config: ScenarioConfig, out: Path, *, progress: bool) -> ScenarioOutputs:
    grid = scenario_grid(config)
    dates = config.dates()
    n_epochs = len(dates)
    if n_epochs <= 5:
        raise InputError(f"scenario {config.name!r}: needs more than 5 epochs, got {n_epochs}")
    rng = streams(config.seed)
    points = select_points(config, grid, coverage_rng=rng["coverage"], terrain_rng=rng["terrain"])
    if len(points) == 0:
        raise InputError(f"scenario {config.name!r}: no points (coverage, water and pits leave no cell)")

    with staged() as stage, tempfile.TemporaryDirectory(dir=out, prefix=".synth-scratch-") as scratch:
        atmosphere = Path(scratch) / "atmosphere.f32"
        screens = None
        if config.atmosphere_std > 0:
            screens = FractalScreens((grid.ny, grid.nx), beta=config.atmosphere_beta, spacing=config.spacing,
                                     rng=rng["atmosphere"])
        write_point_atmosphere(atmosphere, screens=screens, rows=points.row, cols=points.col, n_epochs=n_epochs,
                               std=config.atmosphere_std,
                               wrap=lambda r: bar(r, enabled=progress, desc="atmosphere", unit="epoch"))
        csv_paths = []
        blocks = bar(list(_point_blocks(points)), enabled=progress, desc="points", unit="block")
        for tile, group in itertools.groupby(blocks, key=lambda block: block[0]):
            target = out / tile_name(tile)
            with EgmsCsvWriter(stage.path(target), dates=dates, quality=QUALITY_COLUMNS,
                               decimals=config.decimals, block_rows=POINT_BLOCK) as writer:
                for _, lo, hi in group:
                    series, quality = _simulate_block(config, points, lo, hi, atmosphere, rng["white"])
                    writer.write(pid=points.pid(lo, hi), easting=points.x[lo:hi], northing=points.y[lo:hi],
                                 values=series, quality=quality)
            csv_paths.append(target)

        stage.path(out / ZONES_NAME).write_text(zones_text(config), encoding="utf-8")
        _write_truth(config, stage.path(out / TRUTH_NAME), progress=progress)
        stage.path(out / CONFIG_NAME).write_text(config_text(config), encoding="utf-8")

    return ScenarioOutputs(csv=tuple(csv_paths), zones=out / ZONES_NAME, truth=out / TRUTH_NAME,
                           config=out / CONFIG_NAME, n_points=len(points))


def _point_blocks(points: PointSet) -> Iterator[tuple[tuple[int, int], int, int]]:
    """(tile, lo, hi) of blocks of at most ``POINT_BLOCK`` points, never across tiles, in point order."""
    for tile, span in points.tiles():
        for lo in range(span.start, span.stop, POINT_BLOCK):
            yield tile, lo, min(span.stop, lo + POINT_BLOCK)


def _simulate_block(config: ScenarioConfig, points: PointSet, lo: int, hi: int, atmosphere: Path,
                    white_rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Observed series (hi − lo, T) of points ``lo:hi``, rounded to ``decimals``, and their
    quality columns: truth + atmosphere (from the scratch file) + white noise."""
    n_epochs = len(config.dates())
    series = truth_displacement(config, points.x[lo:hi], points.y[lo:hi])
    series += read_point_columns(atmosphere, n_epochs=n_epochs, n_points=len(points), lo=lo, hi=hi)
    if config.white_std > 0:
        series += white_noise(white_rng, series.shape, std=config.white_std)
    series = rounded(series, config.decimals)
    quality = {"height": points.height[lo:hi], **quality_columns(series, config.years())}
    return series, quality


def _write_truth(config: ScenarioConfig, path: Path, *, progress: bool) -> None:
    """The noise-free displacement on every cell of the grid, as a cube written block by block."""
    grid = scenario_grid(config)
    attrs = {"kind": "truth", "scenario": config.name, "seed": config.seed, "config": config.to_dict()}
    group = create_cube(path, grid, config.dates(), attrs=attrs, with_support=False)
    blocks = list(grid.blocks())
    for ys, xs in bar(blocks, enabled=progress, desc="truth cube", unit="block"):
        x, y = grid.cell_centres(ys, xs)
        block = truth_displacement(config, x.ravel(), y.ravel())
        group["displacement"][:, ys, xs] = block.T.reshape(-1, *x.shape)
    group["valid"][:] = True
    finish_cube(path)
