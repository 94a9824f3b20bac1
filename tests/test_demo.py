"""`insarcast demo --preset tiny` end to end through the CLI, as a user meets it: every stage's
output is there and usable, the summary names it, and a second run reuses everything.

The tiny demo runs once per session (it trains 6 architectures x 2 runs x 4 models): the conftest's
``tiny_demo``, which the report's tests share."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

from insarcast.cli import main
from insarcast.cube import open_cube

ARCHS = {"cnn-lstm", "cnn-transformer", "gcn-lstm", "gcn-transformer", "resnet-lstm", "resnet-transformer"}
STAGES = ("synth", "grid", "tune", "compare", "export", "forecast", "publish", "report")

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]


def invoke(*args):
    tick = time.perf_counter()
    result = CliRunner().invoke(main, ["demo", *map(str, args)])
    return result, time.perf_counter() - tick


def stage_lines(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines() if line.split() and line.split()[0] in STAGES}


@pytest.fixture(scope="module")
def first(tiny_demo):
    return tiny_demo


@pytest.fixture(scope="module")
def second(first):
    out, _, _ = first
    result, seconds = invoke("--out", out, "--preset", "tiny", "--quiet")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result, seconds


def test_one_line_per_stage_with_its_time(first):
    _, result, _ = first
    lines = stage_lines(result.stdout)
    assert set(lines) == set(STAGES), result.stdout
    for name in STAGES:
        assert " done " in lines[name] and " s " in lines[name] + " ", lines[name]


def test_cube_opens(first):
    out, _, _ = first
    cube = open_cube(out / "cube.zarr")
    assert cube["displacement"].dims == ("t", "y", "x") and int(cube["valid"].sum()) > 0
    assert (out / "scenario" / "zones.geojson").is_file() and (out / "scenario" / "scenario.json").is_file()


def test_compare_has_the_six_architectures(first):
    out, _, _ = first
    welch = pd.read_csv(out / "compare" / "welch.csv")
    assert set(welch["arch"]) == ARCHS
    assert set(welch["metric"]) == {"rmse", "mae", "r2"} and len(welch) == 18


def test_ensemble_lists_its_members(first):
    out, result, _ = first
    manifest = json.loads((out / "ensemble" / "ensemble.json").read_text())
    members = manifest["members"]
    assert members and all((out / "ensemble" / m["file"]).is_file() for m in members)
    assert {m.get("arch", "resnet-transformer") for m in members} == {"resnet-transformer"}
    # the preset asks for what its tune makes (tiny: 2 runs x 3 TPE trials), so nothing to warn about
    assert len(members) == 6 and "fewer than" not in result.stderr
    # the tiny preset trains residual-corrected: the manifest pins the correction its members learnt on
    from insarcast.udf.correction import identity

    assert manifest["inputs"] == "residual-corrected"
    assert manifest["reference_correction"] == identity(history=8, horizon=6, patch=16)
    # and the rule that chose the reference they correct (the runs record it, the export copies it)
    from insarcast.baselines import reference_rule

    assert manifest["reference_rule"] == reference_rule()


def test_products_hold_the_class_layer(first):
    out, _, _ = first
    products = xr.open_zarr(out / "products.zarr")
    assert "class" in products and "median" in products and "std" in products
    classes = products["class"].values
    assert set(pd.unique(classes[classes != 255].ravel())) <= {0, 1, 2, 3}
    assert (classes != 255).any()


def test_catalog_and_report_exist(first):
    out, _, _ = first
    catalog = json.loads((out / "catalog" / "catalog.json").read_text())
    assert catalog["type"] == "Catalog" and catalog["links"]
    page = (out / "report" / "index.html").read_text()
    # the horizon in epochs and in days (the tiny scenario's epochs are 6 days apart: 6 x 6)
    assert "(horizon 6 epochs = 36 days)" in page


def test_summary_names_every_output(first):
    out, result, _ = first
    summary = result.stdout.split("everything is in", 1)[1]
    for name in ("scenario", "cube.zarr", "compare/welch.csv", "ensemble/ensemble.json", "products.zarr",
                 "catalog/catalog.json", "report/index.html"):
        assert str(out / name) in summary, summary


def test_second_run_reuses_every_stage(first, second):
    out, _, seconds_first = first
    result, seconds = second
    lines = stage_lines(result.stdout)
    for name in STAGES:
        assert " reused " in lines[name], lines[name]
    assert seconds < seconds_first / 5, (seconds, seconds_first)


def test_another_preset_in_the_same_folder_is_refused(first):
    out, _, _ = first
    before = (out / "compare" / "welch.csv").stat().st_mtime_ns
    result, _ = invoke("--out", out, "--preset", "demo", "--seed", "4", "--quiet")
    assert result.exit_code == 2
    assert "preset tiny" in result.stderr and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (out / "compare" / "welch.csv").stat().st_mtime_ns == before


def test_a_folder_that_is_not_a_demo_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    result, _ = invoke("--out", tmp_path, "--preset", "tiny", "--quiet")
    assert result.exit_code == 2 and "not a demo folder" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_the_demos_products_pass_the_cf_and_stac_checks(first, tmp_path):
    """Issue 18's "done when": the demo's own products, exported to NetCDF, pass the IOOS compliance
    checker's CF 1.11 suite, and its catalog passes the project's validator and pystac's (offline)."""
    import subprocess
    import sys
    from pathlib import Path

    from insarcast.stac.pystac_check import pystac_problems
    from insarcast.stac.validate import validate_catalog

    out, _, _ = first
    assert validate_catalog(out / "catalog") == []
    assert pystac_problems(out / "catalog") == []
    pytest.importorskip("netCDF4")
    pytest.importorskip("compliance_checker")
    from insarcast.udf.netcdf import to_netcdf

    products = xr.open_zarr(out / "products.zarr").load()
    for variable in products.variables.values():
        variable.encoding = {}                                   # Zarr's encodings mean nothing to NetCDF
    path = tmp_path / "products.nc"
    to_netcdf(products, path)
    checker = Path(sys.executable).with_name("compliance-checker")
    proc = subprocess.run([str(checker), "--test", "cf:1.11", "--format", "json", "--output",
                           str(tmp_path / "cf.json"), str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout[-3000:], (tmp_path / "cf.json").read_text()[-3000:])
