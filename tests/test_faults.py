"""Faults an attacker or a clumsy user provokes (issue 14): each is refused at once (exit 2, one line
naming the option, file, line or field, nothing written), or survived (a kill at any instant leaves
the old output or the new one, and the next run recovers and cleans up).

The kill tests run real subprocesses and kill them by pid (or make them SIGKILL themselves at a
chosen rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from insarcast.cli import main
from insarcast.errors import InputError
from insarcast.fsutil import HOST_TAG as HOST

GOOD_CSV = "pid,easting,northing,20160105,20160111,20160117\n" + "".join(
    f"P{i},{4000050 + 100 * (i % 5)},{3000050 + 100 * (i // 5)},0.0,{i * 0.1:.1f},{i * 0.2:.1f}\n" for i in range(25))

pytestmark = [pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")]


def cli(*args):
    """Run the CLI as a user does (a subprocess): (exit code, stdout, stderr lines)."""
    proc = subprocess.run([sys.executable, "-m", "insarcast", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr.strip().splitlines()


def one_line_refusal(code, lines, *needles):
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("insarcast: error: "), lines
    assert "Traceback" not in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------------------------- fsutil
def test_inside_refuses_escapes_and_symlinks_out(tmp_path):
    from insarcast.fsutil import inside

    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (folder / "link").symlink_to(tmp_path / "secret")
    (folder / "ok").symlink_to(folder / "sub")
    assert inside("sub", folder) == (folder / "sub").resolve()
    assert inside("ok", folder) == (folder / "sub").resolve()
    for bad in ("../secret", "sub/../../secret", str(tmp_path / "secret"), "link"):
        with pytest.raises(InputError, match="outside"):
            inside(bad, folder, source=folder / "m.json", field="x")


def test_clean_stale_restores_an_old_copy_and_removes_only_dead_temporaries(tmp_path):
    from insarcast.fsutil import StaleWarning, clean_stale

    dead, live = dead_pid(), os.getpid()
    target = tmp_path / "out"
    old = tmp_path / f".old-{dead}-{HOST}-0123abcd-out"
    old.mkdir()
    (old / "a").write_text("old")
    (tmp_path / f".tmp-{dead}-{HOST}-0123abcd-out").mkdir()
    (tmp_path / f".scratch-{dead}-{HOST}-0123abcd-out").mkdir()
    mine = tmp_path / f".tmp-{live}-{HOST}-0123abcd-out"
    mine.mkdir()
    other = tmp_path / f".tmp-{dead}-{HOST}-0123abcd-other"
    other.mkdir()
    elsewhere = tmp_path / f".tmp-{dead}-{'0' * 8 if HOST != '0' * 8 else '1' * 8}-0123abcd-out"  # another host
    elsewhere.mkdir()
    with pytest.warns(StaleWarning):
        done = clean_stale(target)
    assert len(done) == 3
    assert (target / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", mine.name, other.name, elsewhere.name])


def test_a_pidless_old_copy_of_a_missing_target_is_refused_with_its_name(tmp_path):
    from insarcast.fsutil import clean_stale

    (tmp_path / ".old-0123abcd-out").mkdir()
    with pytest.raises(InputError, match=r"\.old-0123abcd-out"):
        clean_stale(tmp_path / "out")


@pytest.mark.parametrize("exchange", [True, False])
def test_folder_replacement_swaps_whole_folders(tmp_path, monkeypatch, exchange):
    from insarcast import fsutil

    if not exchange:
        monkeypatch.setattr(fsutil, "_exchange", lambda a, b: False)
    target = tmp_path / "out"
    target.mkdir()
    (target / "v").write_text("1")
    with fsutil.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "v").write_text("2")
    assert (target / "v").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("exchange", [True, False])
def test_a_folder_replaces_a_file_of_its_name(tmp_path, monkeypatch, exchange):
    """``grid --overwrite`` onto a plain file: the cube folder takes its place, nothing left beside it."""
    from insarcast import fsutil

    if not exchange:
        monkeypatch.setattr(fsutil, "_exchange", lambda a, b: False)
    target = tmp_path / "out"
    target.write_text("not a cube")
    with fsutil.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "v").write_text("2")
    assert (target / "v").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_json_we_write_is_strict_json():
    """A run's metrics.json held NaN (the R^2 of constant ground), which is not JSON: other tools refuse it."""
    from insarcast.fsutil import strict_json

    text = strict_json({"r2": float("nan"), "rmse": [float("inf"), 1.5], "nested": {"mae": -float("inf")}}, indent=None)
    assert text == '{"r2": null, "rmse": [null, 1.5], "nested": {"mae": null}}\n'
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the output"))["rmse"][1] == 1.5


def test_a_failed_rename_leaves_no_temporary(tmp_path, monkeypatch):
    from insarcast import fsutil

    def refuse(tmp, target):
        raise OSError(13, "Permission denied", str(target))

    monkeypatch.setattr(fsutil, "_replace", refuse)
    with pytest.raises(OSError, match="Permission denied"):
        with fsutil.staged() as stage:
            for name in ("a", "b"):
                stage.path(tmp_path / name).write_text(name)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- publish
@pytest.fixture(scope="module")
def stac_inputs(tmp_path_factory):
    pytest.importorskip("pystac")
    from test_stac import make_ensemble, make_products

    root = tmp_path_factory.mktemp("faults-stac")
    make_products().to_zarr(root / "p1.zarr", zarr_format=2, consolidated=True)
    make_products(start="2020-03-10", seed=1).to_zarr(root / "p2.zarr", zarr_format=2, consolidated=True)
    make_products(start="2020-05-10", seed=2).to_zarr(root / "p3.zarr", zarr_format=2, consolidated=True)
    return {"p1": root / "p1.zarr", "p2": root / "p2.zarr", "p3": root / "p3.zarr",
            "ensemble": make_ensemble(root / "ensemble"), "make_ensemble": make_ensemble}


def run_ids(catalog: Path) -> set[str]:
    ids = set()
    for path in (catalog / "insarcast-forecasts").glob("*/*.json"):
        ids.add(json.loads(path.read_text())["properties"]["insarcast:run_id"])
    return ids


def test_publish_overwrite_never_deletes_outside_the_catalog(stac_inputs, tmp_path):
    from insarcast.stac.publish import publish

    catalog = tmp_path / "catalog"
    publish(stac_inputs["p1"], stac_inputs["ensemble"], catalog, run_id="run9")
    victim = tmp_path / "victim"
    victim.mkdir()
    item_file = next((catalog / "insarcast-forecasts").glob("run9-h1/run9-h1.json"))
    (victim / "evil.json").write_text(item_file.read_text())
    (victim / "precious.txt").write_text("keep me")
    collection = catalog / "insarcast-forecasts" / "collection.json"
    data = json.loads(collection.read_text())
    data["links"].append({"rel": "item", "href": "../../victim/evil.json", "type": "application/json"})
    collection.write_text(json.dumps(data))

    code, _, lines = cli("publish", stac_inputs["p1"], "--ensemble", stac_inputs["ensemble"], "--out", catalog,
                         "--run-id", "run9", "--overwrite", "-q")
    one_line_refusal(code, lines, "collection.json", "links", "outside")
    assert (victim / "precious.txt").read_text() == "keep me" and (victim / "evil.json").exists()
    assert (catalog / "insarcast-forecasts" / "run9-h1").is_dir()


def test_publish_refuses_a_catalog_file_symlinked_out_of_it(stac_inputs, tmp_path):
    from insarcast.stac.publish import publish

    catalog = tmp_path / "catalog"
    publish(stac_inputs["p1"], stac_inputs["ensemble"], catalog, run_id="run1")
    outside = tmp_path / "outside.tif"
    outside.write_bytes(b"secret")
    (catalog / "insarcast-forecasts" / "run1-h1" / "extra.tif").symlink_to(outside)
    with pytest.raises(InputError, match="outside"):
        publish(stac_inputs["p2"], stac_inputs["ensemble"], catalog, run_id="run2")


def test_publish_refuses_what_forecast_refuses(stac_inputs, tmp_path):
    from conftest import edit_manifest

    from insarcast.stac.publish import publish

    make_ensemble = stac_inputs["make_ensemble"]
    texty = make_ensemble(tmp_path / "texty")
    (texty / "member_01.onnx").write_text("just text\n")
    edit_manifest(texty, lambda m: m["members"][1].update(sha256=hashlib.sha256(b"just text\n").hexdigest(),
                                                           bytes=len(b"just text\n")))
    with pytest.raises(InputError, match="onnxruntime cannot load") as info:
        publish(stac_inputs["p1"], texty, tmp_path / "c1")
    assert "member_01.onnx" in str(info.value)

    unsigned = make_ensemble(tmp_path / "unsigned")
    edit_manifest(unsigned, lambda m: m["members"][2].pop("sha256"))
    with pytest.raises(InputError) as info:
        publish(stac_inputs["p1"], unsigned, tmp_path / "c2")
    assert info.value.field == "members[2].sha256"
    assert not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from insarcast import fsutil
    from insarcast.stac.publish import publish

    products, ensemble, catalog, mode = sys.argv[1:5]
    real_replace, real_exchange = os.replace, fsutil._exchange

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(a, b):
        names = (Path(a).name, Path(b).name)
        if mode == "fallback-1" and names[0] == "catalog":
            die()                                    # before the old catalog moves aside
        if mode == "fallback-2" and names[1] == "catalog":
            die()                                    # between the two renames: no catalog at the target
        real_replace(a, b)
        if mode == "fallback-3" and names[1] == "catalog":
            die()                                    # after the swap, before the old copy is removed

    def exchange(a, b):
        if mode == "exchange-1":
            die()
        done = real_exchange(a, b)
        if mode == "exchange-2":
            die()
        return done

    os.replace = replace
    fsutil._exchange = (lambda a, b: False) if mode.startswith("fallback") else exchange
    publish(products, ensemble, catalog, run_id="run2")
    print("finished")
""")


@pytest.mark.parametrize("mode", ["fallback-1", "fallback-2", "fallback-3", "exchange-1", "exchange-2"])
def test_a_publish_killed_at_any_rename_loses_no_run(stac_inputs, tmp_path, mode):
    from insarcast.fsutil import _exchange
    from insarcast.stac.publish import publish

    if mode.startswith("exchange"):
        a, b = tmp_path / "a", tmp_path / "b"
        a.mkdir(), b.mkdir()
        if not _exchange(a, b):
            pytest.skip("renameat2(RENAME_EXCHANGE) not offered here")
    catalog = tmp_path / "catalog"
    publish(stac_inputs["p1"], stac_inputs["ensemble"], catalog, run_id="run1")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(stac_inputs["p2"]), str(stac_inputs["ensemble"]),
                           str(catalog), mode], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    committed = mode in ("fallback-3", "exchange-2")
    if mode != "fallback-2":                      # at every other instant a reader sees a whole catalog
        assert run_ids(catalog) == ({"run1", "run2"} if committed else {"run1"})
    # the next run recovers: no run is lost, nothing hidden is left behind
    with pytest.warns(UserWarning, match="interrupted run"):
        publish(stac_inputs["p3"], stac_inputs["ensemble"], catalog, run_id="run3")
    assert run_ids(catalog) == ({"run1", "run2", "run3"} if committed else {"run1", "run3"})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("a", "b")) == ["catalog"]


# ---------------------------------------------------------------------------------------------- ensemble
@pytest.mark.parametrize("relative", [False, True])
def test_forecast_refuses_a_member_symlinked_out_of_the_ensemble_without_reading_it(tmp_path, monkeypatch, relative):
    """Also with the ensemble named by a relative path (``--ensemble e``): the member's name was joined to
    the folder twice, so the check looked at a path that does not exist, and passed."""
    pytest.importorskip("onnxruntime")
    from test_udf_ensemble_forecast import write_linear_ensemble

    from insarcast.udf.ensemble import load_ensemble

    folder = write_linear_ensemble(tmp_path / "e")
    outside = tmp_path / "outside.bin"
    shutil.move(folder / "member_00.onnx", outside)
    (folder / "member_00.onnx").symlink_to(outside)
    if relative:
        monkeypatch.chdir(tmp_path)
        folder = Path("e")
    with pytest.raises(InputError, match="outside") as info:
        load_ensemble(folder)
    assert info.value.field == "members[0].file"
    assert hashlib.sha256(outside.read_bytes()).hexdigest() not in str(info.value)
    assert str(outside.stat().st_size) not in str(info.value).split("outside")[0]


# ---------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("option, value", [("--workers", "-1"), ("--workers", "0"), ("--threads", "0"),
                                           ("--chunks", "0")])
def test_forecast_refuses_nonsense_settings_at_once(tmp_path, option, value):
    code, _, lines = cli("forecast", tmp_path / "c.zarr", "--ensemble", tmp_path / "e", "--out",
                         tmp_path / "p.zarr", option, value, "-q")
    one_line_refusal(code, lines, f"option {option}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spacing", ["0", "nan", "-100", "inf"])
def test_grid_refuses_a_bad_spacing(tmp_path, spacing):
    csv = tmp_path / "tile.csv"
    csv.write_text(GOOD_CSV)
    code, _, lines = cli("grid", csv, "--out", tmp_path / "cube.zarr", "--spacing", spacing, "-q")
    one_line_refusal(code, lines, "option --spacing")
    assert [p.name for p in tmp_path.iterdir()] == ["tile.csv"]


def test_grid_refuses_a_huge_grid_before_any_work(tmp_path):
    csv = tmp_path / "tile.csv"
    csv.write_text("pid,easting,northing,20160105,20160111\nA,3200050,2500050,0,1\nB,5500050,4500050,0,2\n")
    code, _, lines = cli("grid", csv, "--out", tmp_path / "cube.zarr", "-q")
    one_line_refusal(code, lines, "option --max-cells", "km", "cells")
    code, _, lines = cli("grid", csv, "--out", tmp_path / "cube.zarr", "--max-cells", "-1", "-q")
    one_line_refusal(code, lines, "option --max-cells")
    assert [p.name for p in tmp_path.iterdir()] == ["tile.csv"]


def test_usage_errors_are_one_line_in_the_projects_format(tmp_path):
    code, _, lines = cli("grid", tmp_path / "nonexist.csv", "--out", tmp_path / "c.zarr")
    one_line_refusal(code, lines, "nonexist.csv", "does not exist", "INPUTS")
    code, _, lines = cli("grid", tmp_path, "--out", tmp_path / "c.zarr", "--spacing", "abc")
    one_line_refusal(code, lines, "option --spacing", "abc")
    code, _, lines = cli("grid")
    one_line_refusal(code, lines, "Missing argument 'INPUTS...'")
    code, _, lines = cli("--bogus", "grid")
    one_line_refusal(code, lines, "--bogus")
    code, _, lines = cli("frobnicate")
    one_line_refusal(code, lines, "frobnicate")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_schema_folder_is_named_as_an_option(tmp_path):
    pytest.importorskip("jsonschema")
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "catalog.json").write_text("{}")
    code, _, lines = cli("validate-stac", catalog, "--schemas", tmp_path / "nowhere")
    one_line_refusal(code, lines, "option --schemas")
    assert "column" not in lines[0]


# ---------------------------------------------------------------------------------------------- synth
def test_synth_does_not_overwrite_an_existing_tile_without_overwrite(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    tile = out / "EGMS_L3_E40N30_100km_U_synthetic.csv"
    tile.write_text("my own data\n")
    result = CliRunner().invoke(main, ["synth", "--preset", "tiny", "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert "EGMS_L3_E40N30_100km_U_synthetic.csv" in result.output and "--overwrite" in result.output
    assert tile.read_text() == "my own data\n"
    assert [p.name for p in out.iterdir()] == [tile.name]


# ---------------------------------------------------------------------------------------------- garbage
SLOW_GRID = textwrap.dedent("""
    import sys, time
    import insarcast.cube
    real = insarcast.cube.finish_cube

    def slow(path):
        print("staged", flush=True)
        time.sleep(60)
        real(path)

    import insarcast.grid
    insarcast.grid.finish_cube = slow
    from insarcast.cli import main
    main(sys.argv[1:])
""")


def _start_slow_grid(tmp_path, csv, out):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_GRID, "grid", str(csv), "--out", str(out), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "staged", proc.stderr.read()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    return proc


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    csv = tmp_path / "tile.csv"
    csv.write_text(GOOD_CSV)
    proc = _start_slow_grid(tmp_path, csv, tmp_path / "cube.zarr")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert [p.name for p in tmp_path.iterdir()] == ["tile.csv"]


def test_a_killed_grid_leaves_temporaries_the_next_run_removes(tmp_path):
    csv = tmp_path / "tile.csv"
    csv.write_text(GOOD_CSV)
    out = tmp_path / "cube.zarr"
    proc = _start_slow_grid(tmp_path, csv, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    live = tmp_path / f".tmp-{os.getpid()}-{HOST}-0123abcd-cube.zarr"          # a live writer's: not touched
    live.mkdir()
    code, _, lines = cli("grid", csv, "--out", out, "-q")
    assert code == 0, lines
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tile.csv", "cube.zarr", live.name])
    time.sleep(0)


# ---------------------------------------------------------------------------------------------- damaged files
def damaged_copy(cube: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the cube with one displacement chunk overwritten by garbage: (cube, the chunk file)."""
    bad = tmp_path / "bad.zarr"
    shutil.copytree(cube, bad)
    chunk = sorted(p for p in (bad / "displacement").iterdir() if not p.name.startswith("."))[0]
    chunk.write_bytes(b"garbage" * 5)
    return bad, chunk


def test_forecast_names_a_damaged_zarr_chunk(tiny_cube, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_udf_ensemble_forecast import write_linear_ensemble

    bad, chunk = damaged_copy(tiny_cube, tmp_path)
    ensemble = write_linear_ensemble(tmp_path / "e")
    code, _, lines = cli("forecast", bad, "--ensemble", ensemble, "--out", tmp_path / "p.zarr",
                         "--workers", 1, "-q")
    one_line_refusal(code, lines, str(chunk), "damaged")
    assert not (tmp_path / "p.zarr").exists()


@pytest.mark.parametrize("case", ["damaged", "missing"])
def test_tune_on_a_bad_cube_is_refused_and_leaves_no_folder(tiny_cube, tmp_path, case):
    pytest.importorskip("optuna")
    bad, chunk = damaged_copy(tiny_cube, tmp_path) if case == "damaged" else (tmp_path / "nope.zarr", None)
    out = tmp_path / "tune"
    code, _, lines = cli("tune", bad, "--preset", "tiny", "--arch", "cnn-lstm", "--runs", 1,
                         "--trials", 1, "--out", out, "-q")
    one_line_refusal(code, lines, str(chunk) if chunk else "no such cube")
    if chunk:
        assert "damaged" in lines[0]
    assert not out.exists()


def test_export_names_a_truncated_model_file(tiny_cube, tmp_path):
    pytest.importorskip("torch")
    from test_export import fabricate, tiny_config

    from insarcast.training.data import Windows

    windows = Windows.from_cube(tiny_cube, history=8, horizon=6, patch=16, stride=16)
    run = fabricate(tmp_path / "tune", windows, tiny_config(), seed=0, trial=0, val_loss=1.0)
    model = run / "model.pt"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    code, _, lines = cli("export", tmp_path / "tune", "--top", 1, "--out", tmp_path / "ens", "-q")
    one_line_refusal(code, lines, str(model), "damaged")
    assert not (tmp_path / "ens").exists()


# ---------------------------------------------------------------------------------------------- openEO context
class _Metadata:
    def rename_labels(self, **kwargs):
        return kwargs

@pytest.mark.parametrize("key, value", [("horizon", "two"), ("threads", "two"), ("threads", 0), ("overlap", -1),
                                        ("mode", "sideways"), ("ensemble", 3), ("thresholds", [1, 2]),
                                        ("horizion", 2)])
def test_the_openeo_context_is_checked_whole_and_names_the_key(key, value):
    from insarcast.udf.openeo_udf import apply_metadata

    context = {"ensemble": "does-not-matter", "thresholds": {}, key: value}
    with pytest.raises(InputError) as info:
        apply_metadata(_Metadata(), context)
    assert info.value.field == f"context.{key}" and key in str(info.value)


def test_a_python_path_string_is_refused_not_split_into_characters():
    from insarcast.udf.openeo_udf import apply_metadata

    before = list(sys.path)
    with pytest.raises(ValueError, match="python_path"):
        apply_metadata(_Metadata(), {"ensemble": "e", "python_path": "/opt/udf"})
    assert sys.path == before


# ---------------------------------------------------------------------------------------------- EGMS ingest
HEAD = b"pid,easting,northing,20160105,20160111\n"
ROWS = [b"A,4000050,3000050,0,1\n", b"B,4000150,3000050,0,2\n", b"C,4000250,3000050,0,3\n"]


@pytest.mark.parametrize("name, data, needles", [
    ("pid.csv", HEAD + ROWS[0] + b"B\xff\xfe,4000150,3000050,0,2\n" + ROWS[2], ["line 3", "column 'pid'", "UTF-8"]),
    ("cell.csv", HEAD + ROWS[0] + ROWS[1] + b"C,4000250,3000050,0,3\xff\n", ["line 4", "'20160111'", "UTF-8"]),
    ("nul.csv", HEAD + ROWS[0] + b"B\x00x,4000150,3000050,0,2\n" + ROWS[2], ["line 3", "column 'pid'", "NUL"]),
    ("lat.csv", HEAD + b"A,6.5,50.9,0,1\nB,6.6,50.9,0,1\nC,6.7,95,0,1\nD,6.8,50.9,0,1\n",
     ["line 4", "column 'northing'", "95"]),
])
def test_egms_ingest_names_the_bad_row(tmp_path, name, data, needles):
    csv = tmp_path / name
    csv.write_bytes(data)
    code, _, lines = cli("grid", csv, "--out", tmp_path / "cube.zarr", "-q")
    one_line_refusal(code, lines, name, *needles)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_an_all_nan_tile_is_a_one_line_warning_naming_it(tmp_path):
    csv = tmp_path / "empty.csv"
    csv.write_bytes(HEAD + b"A,4000050,3000050,,\nB,4000150,3000050,nan,NaN\n")
    code, _, lines = cli("grid", csv, "--out", tmp_path / "cube.zarr", "-q")
    assert code == 0
    assert lines == [f"insarcast: warning: {csv}: every displacement value is empty (NaN): the tile adds no data"]


def test_validate_stac_never_reads_an_asset_or_link_outside_the_catalog(stac_inputs, tmp_path):
    from test_stac import SCHEMAS

    from insarcast.stac.publish import publish
    from insarcast.stac.validate import validate_catalog

    if not SCHEMAS.is_dir():
        pytest.skip("offline STAC schemas not found")
    catalog = tmp_path / "catalog"
    publish(stac_inputs["p1"], stac_inputs["ensemble"], catalog, run_id="run1")
    secret = tmp_path / "secret.tif"
    secret.write_bytes(b"secret bytes")
    item_path = catalog / "insarcast-forecasts" / "run1-h1" / "run1-h1.json"
    item = json.loads(item_path.read_text())
    key = next(iter(item["assets"]))
    item["assets"][key]["href"] = "../../../secret.tif"
    item["links"].append({"rel": "item", "href": "../../../secret.tif"})
    item_path.write_text(json.dumps(item))
    problems = [str(p) for p in validate_catalog(catalog, schemas=SCHEMAS, check_cogs=False)]
    outside = [p for p in problems if "outside the catalog" in p]
    assert len(outside) == 2, problems
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    assert not any(digest in p or "12 bytes" in p for p in problems)


def test_forecast_removes_a_killed_runs_scratch_and_temporaries_but_not_a_live_ones(tiny_cube, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_udf_ensemble_forecast import write_linear_ensemble

    ensemble = write_linear_ensemble(tmp_path / "e")
    dead, live = dead_pid(), os.getpid()
    stale = [tmp_path / f".{kind}-{dead}-{HOST}-0123abcd-p.zarr" for kind in ("scratch", "tmp")]
    for folder in stale:
        (folder / "displacement").mkdir(parents=True)
        (folder / "displacement" / "0.0.0").write_bytes(b"x" * 1000)
    mine = tmp_path / f".scratch-{live}-{HOST}-0123abcd-p.zarr"
    mine.mkdir()
    code, _, lines = cli("forecast", tiny_cube, "--ensemble", ensemble, "--out", tmp_path / "p.zarr",
                         "--workers", 1, "-q")
    assert code == 0, lines
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["e", "p.zarr", mine.name])
    assert all("interrupted run" in line and line.startswith("insarcast: warning: ") for line in lines)


def test_a_full_disk_in_forecast_is_one_line_and_leaves_nothing(tiny_cube, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_udf_ensemble_forecast import write_linear_ensemble

    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        ensemble = write_linear_ensemble(tmp_path / "e")
        code, _, lines = cli("forecast", tiny_cube, "--ensemble", ensemble, "--out", disk / "p.zarr",
                             "--workers", 1, "-q")
        errors = [line for line in lines if line.startswith("insarcast: error: ")]
        assert code == 1 and len(errors) == 1 and "No space left on device" in errors[0], lines
        # no worker log (a loaded machine may still get distributed's own "event loop unresponsive" notes)
        assert not any("Traceback" in line or "distributed.worker" in line for line in lines), lines
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_tune_removes_what_a_killed_tune_left_in_its_trial_folders(tiny_cube, tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from insarcast.training.tune import Tuner

    dead = dead_pid()
    trial = tmp_path / "tune" / "cnn-lstm" / "tpe" / "seed_0" / "trial_003"
    trial.mkdir(parents=True)
    (trial / f".tmp-{dead}-{HOST}-0123abcd-model.pt").write_bytes(b"x" * 100)
    (trial / "metrics.json").write_text("{}")
    live = trial / f".tmp-{os.getpid()}-{HOST}-0123abcd-history.csv"
    live.write_text("")
    monkeypatch.setattr(Tuner, "run_manual", lambda self, arch, seed, ctx: None)
    monkeypatch.setattr(Tuner, "run_study", lambda self, arch, seed, ctx: None)
    with pytest.warns(UserWarning, match="interrupted run"):
        Tuner(tiny_cube, tmp_path / "tune", preset="tiny", runs=1).run(("cnn-lstm",))
    assert sorted(p.name for p in trial.iterdir()) == sorted(["metrics.json", live.name])


SLOW_PUBLISH = textwrap.dedent("""
    import sys, time
    import insarcast.stac.publish as publish
    real = publish.forecast_items

    def slow(*args, **kwargs):
        items = real(*args, **kwargs)
        print("staged", flush=True)
        time.sleep(60)
        return items

    publish.forecast_items = slow
    from insarcast.cli import main
    main(sys.argv[1:])
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_publish_stopped_mid_run_keeps_the_catalog_and_leaves_or_cleans_its_temporaries(stac_inputs, tmp_path,
                                                                                         sig):
    from insarcast.stac.publish import publish

    catalog = tmp_path / "catalog"
    publish(stac_inputs["p1"], stac_inputs["ensemble"], catalog, run_id="run1")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PUBLISH, "publish", str(stac_inputs["p2"]), "--ensemble",
                             str(stac_inputs["ensemble"]), "--out", str(catalog), "--run-id", "run2", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "staged", proc.stderr.read()
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert run_ids(catalog) == {"run1"}
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == [] if sig == signal.SIGTERM else len(hidden) == 1
    publish(stac_inputs["p2"], stac_inputs["ensemble"], catalog, run_id="run2")
    assert run_ids(catalog) == {"run1", "run2"}
    assert [p.name for p in tmp_path.iterdir()] == ["catalog"]


def test_forecast_names_a_lost_zarr_chunk(tiny_cube, tmp_path):
    """A chunk file gone (a copy cut short) read as NaN: the forecast was NaN there, or said the input
    held no finite pixel. Now one line names the file, and nothing is written."""
    pytest.importorskip("onnxruntime")
    from test_udf_ensemble_forecast import write_linear_ensemble

    lost = tmp_path / "lost.zarr"
    shutil.copytree(tiny_cube, lost)
    chunk = sorted(p for p in (lost / "displacement").iterdir() if not p.name.startswith("."))[-1]
    chunk.unlink()
    ensemble = write_linear_ensemble(tmp_path / "e")
    code, _, lines = cli("forecast", lost, "--ensemble", ensemble, "--out", tmp_path / "p.zarr",
                         "--workers", 1, "-q")
    one_line_refusal(code, lines, str(chunk), "field 'displacement'", "chunk files of 'displacement' are missing")
    assert not (tmp_path / "p.zarr").exists()


def test_a_cube_without_its_crs_is_one_line(tiny_cube, tmp_path):
    """A cube whose spatial_ref was deleted: xarray's 'Variable(s) referenced in grid_mapping not in variables'
    warning was printed twice, with its source line, before the one-line refusal."""
    import xarray as xr

    bare = tmp_path / "bare.zarr"
    ds = xr.open_zarr(tiny_cube, decode_coords="all").load()
    ds = ds.drop_vars("spatial_ref")
    for v in ds.variables.values():
        v.encoding.pop("chunks", None)
    ds.to_zarr(bare, zarr_format=2)
    code, _, lines = cli("publish-cube", bare, "--out", tmp_path / "c")
    one_line_refusal(code, lines, str(bare), "no CRS")
