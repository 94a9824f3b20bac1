"""The command line as a user meets it: help, version, exit codes, one-line errors, quiet runs."""

import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from insarcast import __version__
from insarcast.cli import main
from insarcast.cube import open_cube

BAD_CSV = "pid,easting,northing,20160105,20160111\nA,4000050,3000050,0.0,1.5\nB,4000150,3000050,0.0,oops\n"


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


VERBS = ["synth", "grid", "train", "tune", "compare", "export", "forecast", "publish", "validate-stac", "report",
         "demo"]


def test_version_and_help_list_every_verb_of_the_design():
    assert run("--version").output.strip() == f"insarcast, version {__version__}"
    result = run("--help")
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1].split()
    assert [v for v in listed if v in VERBS] == sorted(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_says_what_it_reads_and_writes(verb):
    result = run(verb, "--help")
    assert result.exit_code == 0, result.output
    assert "Reads" in result.output and "Writes" in result.output, result.output


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    csv = tmp_path / "tile.csv"
    csv.write_text(BAD_CSV)
    out = tmp_path / "cube.zarr"
    proc = subprocess.run([sys.executable, "-m", "insarcast.cli", "grid", str(csv), "--out", str(out), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "tile.csv" in lines[0] and "line 3" in lines[0] and "20160111" in lines[0] and "oops" in lines[0]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tile.csv"]


def test_missing_input_file_is_a_usage_error(tmp_path):
    result = run("grid", tmp_path / "nope.csv", "--out", tmp_path / "c.zarr")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_synth_then_grid_quietly(tmp_path):
    result = CliRunner().invoke(main, ["synth", "--preset", "tiny", "--seed", "3", "--out", str(tmp_path / "s"),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    tiles = sorted((tmp_path / "s").glob("EGMS_L3_*.csv"))
    assert tiles and (tmp_path / "s" / "zones.geojson").exists() and (tmp_path / "s" / "truth.zarr").exists()

    result = CliRunner().invoke(main, ["grid", str(tmp_path / "s"), "--out", str(tmp_path / "cube.zarr"), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    cube = open_cube(tmp_path / "cube.zarr")
    valid_fraction = float(cube.valid.mean())
    assert cube.sizes["t"] == 363 and valid_fraction > 0.5

    again = run("grid", tmp_path / "s", "--out", tmp_path / "cube.zarr", "-q")
    assert again.exit_code == 2 and "--overwrite" in again.output
    replaced = run("grid", tmp_path / "s", "--out", tmp_path / "cube.zarr", "-q", "--overwrite", "--radius", "50")
    assert replaced.exit_code == 0, replaced.output
    assert float(open_cube(tmp_path / "cube.zarr").valid.mean()) < valid_fraction
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_progress_bars_show_unless_quiet(tmp_path):
    result = CliRunner().invoke(main, ["synth", "--preset", "tiny", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "%" in result.stderr


# ---------------------------------------------------------------------------------------------- one shape
# The rule: a verb's main input (what it acts on) is its positional argument; other inputs and the output
# are named options. The old option of a main input works for one release, with a deprecation warning.
MAIN_INPUT = {"grid": "INPUTS...", "train": "CUBE", "tune": "CUBE", "compare": "TUNE_DIR", "export": "TUNE_DIR",
              "forecast": "CUBE", "publish": "PRODUCTS", "validate-stac": "CATALOG", "report": "PRODUCTS"}


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_takes_its_main_input_as_the_argument(verb):
    usage = run(verb, "--help").output.splitlines()[0]
    assert usage.endswith(f"{verb} [OPTIONS]" + (f" {MAIN_INPUT[verb]}" if verb in MAIN_INPUT else "")), usage


@pytest.mark.parametrize("verb, old, hidden", [("train", "--cube", True), ("tune", "--cube", True),
                                               ("forecast", "--cube", True), ("export", "--tune-dir", True),
                                               ("report", "--products", True), ("report", "--cube", False)])
def test_a_deprecated_option_is_not_in_the_help(verb, old, hidden):
    assert (f"{old} " not in run(verb, "--help").output) is hidden


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


@pytest.mark.parametrize("verb, old, rest", [
    pytest.param("train", "--cube", [], marks=pytest.mark.skipif(not _torch_installed(), reason="train needs torch "
                                                                 "(the train extra); without it: the test below")),
    ("forecast", "--cube", ["--ensemble", "{tmp}/e"]),
    ("report", "--products", ["--cube", "{tmp}/nope.zarr", "--compare", "{tmp}"]),
])
def test_the_old_spelling_still_works_with_a_deprecation_warning(tmp_path, verb, old, rest):
    rest = [a.format(tmp=tmp_path) for a in rest] + ["--out", str(tmp_path / "o")]
    new = run(verb, tmp_path / "nope.zarr", *rest)
    before = run(verb, old, tmp_path / "nope.zarr", *rest)
    assert new.exit_code == before.exit_code == 2
    error = new.stderr.strip()
    assert error.startswith("insarcast: error: ") and "\n" not in error and "deprecated" not in error
    warning, same = before.stderr.strip().splitlines()
    assert same == error                                                  # the same run, the same refusal
    upper = "PRODUCTS" if verb == "report" else "CUBE"
    assert warning == (f"insarcast: warning: option {old} is deprecated and will be removed in the next release: "
                       f"give {upper} as the first argument, `insarcast {verb} {upper} ...`")
    assert "deprecated" in run(verb, old, tmp_path / "nope.zarr", *rest, "-q").stderr     # a warning: shown


def test_the_old_export_spelling_reaches_the_same_refusal(tmp_path):
    (tmp_path / "tune").mkdir()
    new = run("export", tmp_path / "tune", "--out", tmp_path / "e")
    before = run("export", "--tune-dir", tmp_path / "tune", "--out", tmp_path / "e")
    assert new.exit_code == before.exit_code and new.exit_code in (1, 2)
    assert before.stderr.strip().splitlines()[0] == (
        "insarcast: warning: option --tune-dir is deprecated and will be removed in the next release: give TUNE_DIR "
        "as the first argument, `insarcast export TUNE_DIR ...`")
    assert before.stderr.strip().splitlines()[1:] == new.stderr.strip().splitlines()


def test_a_main_input_missing_or_given_twice_is_a_one_line_usage_error(tmp_path):
    missing = run("forecast", "--ensemble", tmp_path, "--out", tmp_path / "p.zarr")
    assert missing.exit_code == 2 and missing.stderr == "insarcast: error: Missing argument 'CUBE'.\n"
    twice = run("train", tmp_path / "a.zarr", "--cube", tmp_path / "b.zarr", "--out", tmp_path / "r")
    assert twice.exit_code == 2 and twice.stderr.strip() == (
        "insarcast: error: CUBE given twice: as the argument and as --cube (deprecated); give the argument only")


@pytest.mark.parametrize("verb", ["train", "tune", "demo"])
def test_the_training_verbs_without_torch_say_which_extra_in_one_line(verb, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)                      # import torch raises ImportError
    args = [tmp_path / "cube.zarr"] if verb != "demo" else ["--preset", "tiny"]
    result = run(verb, *args, "--out", tmp_path / "o")
    assert result.exit_code == 1, result.output + repr(result.exception)
    error = result.stderr.strip()
    assert "\n" not in error and error.startswith(f"insarcast: error: insarcast {verb} needs torch")
    assert "pip install 'insarcast[train]'" in error and not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["export into its tune folder", "publish-cube onto its cube", "train into its cube",
                                  "report over its compare folder", "grid over its tile", "forecast holding its cube"])
def test_an_output_that_is_or_holds_or_lies_in_an_input_is_refused_before_any_work(tmp_path, case):
    """``export TUNE --out TUNE --overwrite`` deleted every run of the tune, ``publish-cube C --out C
    --overwrite`` the cube: --out may not be an input, hold one or lie inside one, --overwrite or not."""
    folder = tmp_path / "in.zarr"
    folder.mkdir()
    (folder / "keep").write_text("the user's data")
    tile = tmp_path / "tile.csv"
    tile.write_text(BAD_CSV)
    args, needle = {
        "export into its tune folder": (["export", folder, "--out", folder], "is the input TUNE_DIR"),
        "publish-cube onto its cube": (["publish-cube", folder, "--out", folder], "is the input CUBE"),
        "train into its cube": (["train", folder, "--out", folder / "run"], "lies inside the input CUBE"),
        "report over its compare folder": (["report", tmp_path / "p.zarr", "--cube", tmp_path / "c.zarr",
                                            "--compare", folder, "--out", folder], "is the input --compare"),
        "grid over its tile": (["grid", tile, "--out", tile], "is the input INPUTS"),
        "forecast holding its cube": (["forecast", folder, "--ensemble", tmp_path / "e", "--out", tmp_path],
                                      "holds the input CUBE"),
    }[case]
    result = run(*args, "--overwrite")
    assert result.exit_code == 2, result.output
    assert needle in result.output and "option --out" in result.output, result.output
    assert (folder / "keep").read_text() == "the user's data" and tile.read_text() == BAD_CSV


@pytest.mark.parametrize("verb", ["synth", "train", "tune", "demo"])
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_numpy_cannot_take_is_refused_naming_the_option(tmp_path, verb, seed):
    result = run(verb, *(["c.zarr"] if verb in ("train", "tune") else []), "--seed", seed, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "option --seed" in result.output and "4294967295" in result.output, result.output
    assert not (tmp_path / "o").exists()


# A `python -m` entry (as torchrun and the tests start insarcast) whose training is replaced: STOPPED_TRAINING
# says "training" and waits for a signal, STRING_EXEC_INTERRUPT raises Ctrl-C's KeyboardInterrupt from inside a
# string exec, as torch's dataclasses can be when the signal lands.
STOPPED_TRAINING = """
import sys, time
import insarcast.training.runs as runs

def train_run(*args, **kwargs):
    print("training", flush=True)
    time.sleep(60)

runs.train_run = train_run
from insarcast.cli import main
main()
"""
STRING_EXEC_INTERRUPT = """
import insarcast.training.runs as runs

def train_run(*args, **kwargs):
    exec("raise KeyboardInterrupt", {})

runs.train_run = train_run
from insarcast.cli import main
main()
"""


def _train_module(tmp_path, name, source, cube):
    (tmp_path / f"{name}.py").write_text(source)
    return [sys.executable, "-m", name, "train", str(cube), "--arch", "cnn-lstm", "--set", "model.inputs=paper",
            "--out", str(tmp_path / "run"), "-q"]


@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "Ctrl-C (SIGINT)"), (signal.SIGTERM, 143, "SIGTERM")])
def test_an_interrupted_train_is_one_line_with_the_signals_exit_code_and_writes_nothing(tiny_cube, tmp_path, sig,
                                                                                         code, name):
    """Ctrl-C printed a traceback or click's "Aborted!" with exit code 1."""
    pytest.importorskip("torch")                    # the entry replaces training; the lowest-deps venv has none
    proc = subprocess.Popen(_train_module(tmp_path, "stopped_training", STOPPED_TRAINING, tiny_cube), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "training", proc.stderr.read()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.splitlines() == [f"insarcast: error: interrupted by {name}; the run {tmp_path / 'run'} was not written "
                                "(a run is written whole at its end); run the command again to train from the start"]
    assert not (tmp_path / "run").exists()


def test_an_interrupt_that_left_a_string_exec_still_exits_130(tiny_cube, tmp_path):
    """CPython recorded the KeyboardInterrupt as unhandled and `python -m` ended by SIGINT (-2), not 130."""
    pytest.importorskip("torch")
    proc = subprocess.run(_train_module(tmp_path, "exec_interrupt", STRING_EXEC_INTERRUPT, tiny_cube), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "interrupted by Ctrl-C" in proc.stderr
