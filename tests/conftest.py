"""Shared fixtures: the tiny synthetic scenario gridded once per test session."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_scenario(tmp_path_factory) -> Path:
    """The tiny preset (seed 0) written and gridded: folder with the CSV, zones, truth and cube.zarr."""
    from insarcast.egms import read_egms
    from insarcast.grid import grid_points
    from insarcast.synth import preset, write_scenario

    root = tmp_path_factory.mktemp("tiny")
    outputs = write_scenario(preset("tiny", seed=0), root, progress=False)
    grid_points(read_egms(outputs.csv), root / "cube.zarr")
    return root


@pytest.fixture(scope="session")
def tiny_cube(tiny_scenario) -> Path:
    return tiny_scenario / "cube.zarr"


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """`insarcast demo --preset tiny` run once through the CLI: (its folder, the click result, seconds).

    The demo's own tests read it as a user would; the report's tests take its cube, products,
    compare folder and zones."""
    import time

    from click.testing import CliRunner

    from insarcast.cli import main

    out = tmp_path_factory.mktemp("demo") / "run"
    tick = time.perf_counter()
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--preset", "tiny", "--quiet"])
    seconds = time.perf_counter() - tick
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result, seconds
