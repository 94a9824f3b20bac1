"""TPE search: the paper's sampler, determinism, failed trials, kill-and-resume, checkpoints, DDP, compare."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

optuna = pytest.importorskip("optuna")
torch = pytest.importorskip("torch")

from insarcast.errors import InputError  # noqa: E402
from insarcast.training import tune as tune_module  # noqa: E402
from insarcast.training.tune import Tuner, make_sampler, paper_gamma, suggest  # noqa: E402


def test_sampler_carries_the_papers_settings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = make_sampler(3)
        tpe = sampler.sampler_for(0)
    # optuna >= 4.9 deprecates `gamma` with a FutureWarning, optuna 4.x calls multivariate experimental:
    # the sampler silences exactly those, nothing reaches the user
    assert [str(w.message) for w in caught] == []
    settings = sampler.tpe_kwargs
    assert isinstance(tpe, optuna.samplers.TPESampler) and isinstance(sampler, optuna.samplers.BaseSampler)
    assert settings["n_startup_trials"] == 20
    assert settings["gamma"](40) == 10 and paper_gamma(40) == 10 and paper_gamma(41) == 11 and paper_gamma(1) == 1
    assert settings["multivariate"] is True and settings["constant_liar"] is True
    paper = tune_module.PRESETS["paper"]
    assert (paper.trials, paper.startup, paper.runs) == (50, 20, 10)
    assert Tuner("x.zarr", "/tmp/none", preset="paper").startup == 20


def _objective(base_model, base_train):
    def objective(trial):
        model, train = suggest(trial, "resnet-transformer", base_model, base_train)
        return (train.lr - 1e-3) ** 2 * 1e6 + model.dropout + (model.readout == "pooled")
    return objective


def _sequence(seed, n=24):
    """A sequential study over the ResNet+Transformer space with a cheap objective."""
    base_model, base_train = Tuner("x.zarr", "/tmp/none", preset="paper").base("resnet-transformer")
    study = optuna.create_study(sampler=make_sampler(seed))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(_objective(base_model, base_train), n_trials=n)
    return [t.params for t in study.trials]


def test_a_worker_that_loses_the_schema_race_retries_and_other_database_errors_are_raised(tmp_path, monkeypatch):
    """Two tune processes starting on a fresh PostgreSQL database race to CREATE TYPE studydirection;
    the loser gets a ProgrammingError '... already exists' and must retry (a CI run failed so)."""
    import optuna
    from sqlalchemy.exc import ProgrammingError

    calls = []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ProgrammingError("CREATE TYPE studydirection", {}, Exception('type "studydirection" already exists'))
        return "storage"

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    tuner = Tuner("x.zarr", tmp_path, preset="tiny", storage="postgresql+psycopg://u@/db")
    assert tuner.storage() == "storage" and len(calls) == 2

    def broken(*args, **kwargs):
        raise ProgrammingError("SELECT", {}, Exception("permission denied for schema public"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(ProgrammingError, match="permission denied"):
        tuner.storage()


def test_same_seed_same_parameter_sequence_past_the_startup_trials():
    a, b, c = _sequence(5), _sequence(5), _sequence(6)
    assert a == b                   # 24 trials: 20 random, then 4 chosen by TPE
    assert a != c
    assert len({tuple(sorted(p.items())) for p in a}) == 24


def test_a_resumed_study_continues_the_sequence_instead_of_repeating_it():
    """A new process (a new sampler) on the stored study draws what the uninterrupted study drew."""
    base_model, base_train = Tuner("x.zarr", "/tmp/none", preset="paper").base("resnet-transformer")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    first = optuna.create_study(study_name="s", storage=storage, sampler=make_sampler(5))
    first.optimize(_objective(base_model, base_train), n_trials=7)           # killed after 7
    again = optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(5))
    again.optimize(_objective(base_model, base_train), n_trials=17)
    assert [t.params for t in again.trials] == _sequence(5)
    # two workers on one study, each with its own sampler of the same seed, draw different points
    shared = optuna.create_study(study_name="w", storage=storage, sampler=make_sampler(5))
    other = optuna.load_study(study_name="w", storage=storage, sampler=make_sampler(5))
    one, two = shared.ask(), other.ask()
    suggest(one, "resnet-transformer", base_model, base_train)
    suggest(two, "resnet-transformer", base_model, base_train)
    assert one.params != two.params


def test_search_space_keeps_the_window_of_the_contract():
    tuner = Tuner("x.zarr", "/tmp/none", preset="paper")
    base_model, base_train = tuner.base("gcn-transformer")
    trial = optuna.trial.FixedTrial({"width": 16, "depth": 3, "d_model": 64, "temporal_layers": 2, "dropout": 0.1,
                                     "readout": "skip", "graph_radius": 2.3, "heads": 4, "lr": 1e-3,
                                     "weight_decay": 1e-4, "batch_size": 16})
    model, train = suggest(trial, "gcn-transformer", base_model, base_train)
    assert (model.history, model.horizon, model.patch) == (12, 6, 32)
    assert (model.graph_radius, model.readout, train.batch_size) == (2.3, "skip", 16)


def test_a_setting_the_preset_fixes_is_not_searched():
    """The demo preset fixes the skip readout (the pooled one paints each tile's mean correction)."""
    tuner = Tuner("x.zarr", "/tmp/none", preset="demo")
    base_model, base_train = tuner.base("resnet-transformer")
    assert base_model.readout == "skip" and "model.readout" in tuner.preset.fixed
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        model, _ = suggest(trial, "resnet-transformer", base_model, base_train, fixed=tuner.preset.fixed)
        assert model.readout == "skip" and "readout" not in trial.params


def test_failing_trials_are_recorded_and_the_study_completes(tiny_cube, tmp_path, monkeypatch):
    real = tune_module.train_run
    calls = []
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

    def flaky(*args, **kwargs):
        calls.append(kwargs["extra"].get("trial"))
        if len(calls) == 2:
            raise FloatingPointError("validation loss is nan at epoch 0")
        if len(calls) == 3:
            raise oom("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(tune_module, "train_run", flaky)
    tuner = Tuner(tiny_cube, tmp_path / "t", preset="tiny", trials=3, runs=1, manual=False,
                  overrides={"train.max_epochs": 1, "train.train_samples": 32, "train.eval_samples": 32})
    tuner.run(("cnn-lstm",))
    study = optuna.load_study(study_name="cnn-lstm-seed0", storage=tuner.storage_url)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    history = (tmp_path / "t" / "cnn-lstm" / "tpe" / "seed_0" / "trials.csv").read_text().splitlines()
    assert history[0].startswith("arch,seed,number,state,value")
    assert ",1,FAIL,," in history[2] and ",2,FAIL,," in history[3]
    # each trial records the thread settings it ran with (issue 18: sharing the machine)
    trial = json.loads((tmp_path / "t" / "cnn-lstm" / "tpe" / "seed_0" / "trial_003" / "metrics.json").read_text())
    assert trial["threads"]["threads"] == torch.get_num_threads() >= 1
    assert trial["threads"]["wait_policy"] in ("active", "passive") and trial["threads"]["usable_cpus"] >= 1


def test_a_tune_folder_is_resumed_only_on_its_own_cube(tiny_cube, tmp_path, monkeypatch):
    """Resuming on another cube mixed two cubes' trials in one study (the TPE history, export's ranking)."""
    from insarcast.cube import open_cube

    out = tmp_path / "t"
    ran = []
    monkeypatch.setattr(Tuner, "run_manual", lambda self, arch, seed, ctx: ran.append((arch, seed)))
    monkeypatch.setattr(Tuner, "run_study", lambda self, arch, seed, ctx: None)
    Tuner(tiny_cube, out, preset="tiny", runs=1).run(("cnn-lstm",))
    recorded = json.loads((out / "cube.json").read_text())
    ds = open_cube(tiny_cube)
    assert recorded["sizes"] == {"t": ds.sizes["t"], "y": ds.sizes["y"], "x": ds.sizes["x"]}
    Tuner(tiny_cube, out, preset="tiny", runs=1).run(("cnn-lstm",))          # the same cube resumes
    other = tmp_path / "other.zarr"
    ds.isel(t=slice(0, ds.sizes["t"] - 1)).to_zarr(other, zarr_format=2, consolidated=True)
    with pytest.raises(InputError, match="made on another cube") as err:
        Tuner(other, out, preset="tiny", runs=1).run(("cnn-lstm",))
    assert err.value.field == "--out" and len(ran) == 2


@pytest.mark.parametrize("setting, message", [
    ({"trials": 0}, "option --trials: must be a positive integer, got 0"),
    ({"runs": -2}, "option --runs: must be a positive integer, got -2"),
    ({"keep": 0}, "option --keep: must be a positive integer, got 0"),
    ({"heartbeat": 0}, "option --heartbeat: must be a positive integer, got 0"),
    ({"storage": "bogus"}, "option --storage: expected an sqlite:///, postgresql:// or mysql:// database URL"),
    ({"storage": "sqlite:////no/such/folder/x.db"}, "option --storage: the database's folder /no/such/folder"),
    ({"seed0": 2**40}, "option --seed: expected an integer in [0, 4294967295]"),
    ({"device": "bogus"}, "option --device: not a torch device: 'bogus'"),
])
def test_nonsense_tune_settings_are_refused_before_any_training(tiny_cube, tmp_path, setting, message):
    """--trials 0 silently ran the preset's 3, a bad --storage failed after the manual run had trained."""
    with pytest.raises(InputError) as err:
        Tuner(tiny_cube, tmp_path / "t", preset="tiny", **setting).run(("cnn-lstm",))
    assert message in str(err.value)
    assert not (tmp_path / "t").exists()


def _trial_folder(root, seed, number, val_loss):
    folder = root / "cnn-lstm" / "tpe" / f"seed_{seed}" / f"trial_{number:03d}"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"val_loss": val_loss, "seed": seed, "trial": number}))
    (folder / "model.pt").write_bytes(b"weights")
    return folder


def test_pruning_keeps_the_best_complete_trials_and_each_runs_best(tmp_path):
    from optuna.trial import TrialState as S

    losses = {(0, 0): 0.5, (0, 1): 0.01, (0, 2): 0.3, (0, 3): 0.05, (1, 0): 0.9, (1, 1): 0.8, (1, 2): 0.2,
              (2, 0): 0.7}
    folders = {key: _trial_folder(tmp_path, *key, loss) for key, loss in losses.items()}
    states = {(0, 0): S.COMPLETE, (0, 1): S.FAIL,         # a killed trial: trained, written, never told
              (0, 2): S.COMPLETE, (0, 3): S.RUNNING,      # another worker's trial, not told yet
              (1, 0): S.COMPLETE, (1, 1): S.COMPLETE, (2, 0): S.COMPLETE}
    tune_module.prune_checkpoints(tmp_path, "cnn-lstm", keep=2, states=states, current=(1, 2))
    kept = {key for key, folder in folders.items() if (folder / "model.pt").exists()}
    # the 2 best complete ones (1,2) (0,2), the best of seed 2, the untold (0,3); not the failed (0,1)
    assert kept == {(1, 2), (0, 2), (2, 0), (0, 3)}
    assert all((folder / "metrics.json").exists() for folder in folders.values())
    # without states every folder counts
    for folder in folders.values():
        (folder / "model.pt").write_bytes(b"weights")
    tune_module.prune_checkpoints(tmp_path, "cnn-lstm", keep=2)
    assert {key for key, folder in folders.items() if (folder / "model.pt").exists()} == {(0, 1), (0, 3), (1, 2),
                                                                                           (2, 0)}


def test_killed_tune_resumes_to_exactly_the_asked_number_of_trials(tiny_cube, tmp_path):
    out = tmp_path / "t"
    args = [sys.executable, "-m", "insarcast", "tune", str(tiny_cube), "--preset", "tiny",
            "--arch", "cnn-lstm", "--runs", "1", "--trials", "5", "--no-manual", "--heartbeat", "1",
            "--out", str(out), "-q", "--set", "train.train_samples=32", "--set", "train.max_epochs=1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    storage = f"sqlite:///{out / 'optuna.db'}"
    deadline = time.time() + 240
    complete = 0
    while time.time() < deadline and complete < 2:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="cnn-lstm-seed0", storage=storage)
            complete = sum(t.state.name == "COMPLETE" for t in study.trials)
        except Exception:
            continue
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert complete >= 2
    study = optuna.load_study(study_name="cnn-lstm-seed0", storage=storage)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) < 5
    time.sleep(2.5)                                   # past the grace period of the killed trial's heartbeat
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    study = optuna.load_study(study_name="cnn-lstm-seed0", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 5 and "RUNNING" not in states
    seed_dir = out / "cnn-lstm" / "tpe" / "seed_0"
    for t in study.trials:                 # the killed trial's checkpoint, if it wrote one, is gone
        if t.state.name != "COMPLETE":
            assert not (seed_dir / f"trial_{t.number:03d}" / "model.pt").exists()
    history = (seed_dir / "trials.csv").read_text().splitlines()
    assert len(history) == 1 + len(study.trials) and json.loads((seed_dir / "metrics.json").read_text())[
        "trials_complete"] == 5


def test_two_tune_processes_on_one_storage_share_the_study(tiny_cube, tmp_path):
    """Trial-parallel: two workers on one SQLite file fill one study, in parallel, without clashes."""
    out = tmp_path / "t"
    args = [sys.executable, "-m", "insarcast", "tune", str(tiny_cube), "--preset", "tiny",
            "--arch", "cnn-lstm", "--runs", "1", "--trials", "6", "--no-manual", "--out", str(out), "-q",
            "--set", "train.train_samples=32", "--set", "train.max_epochs=2"]
    workers = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="cnn-lstm-seed0", storage=f"sqlite:///{out / 'optuna.db'}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 6 <= len(complete) <= 7                     # at most one extra: both may start the last one
    assert "RUNNING" not in {t.state.name for t in study.trials}
    spans = sorted((t.datetime_start, t.datetime_complete) for t in complete)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "no two trials ran at the same time"
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == len(complete)
    seed_dir = out / "cnn-lstm" / "tpe" / "seed_0"
    for t in complete:
        metrics = json.loads((seed_dir / f"trial_{t.number:03d}" / "metrics.json").read_text())
        assert metrics["val_loss"] == pytest.approx(t.value) and metrics["params"] == t.params


def test_tune_keeps_the_best_checkpoints_and_compare_reads_it(tiny_cube, tmp_path):
    from insarcast.compare import compare

    out = tmp_path / "t"
    tuner = Tuner(tiny_cube, out, preset="tiny", trials=3, runs=2, keep=2,
                  overrides={"train.train_samples": 32, "train.eval_samples": 32})
    tuner.run(("resnet-transformer",))
    trials = sorted(out.glob("resnet-transformer/tpe/seed_*/trial_*/metrics.json"))
    assert len(trials) == 6
    losses = sorted((json.loads(p.read_text())["val_loss"], p.parent) for p in trials)
    best_of_run = {min((loss, folder) for loss, folder in losses if folder.parent.name == f"seed_{seed}")[1]
                   for seed in (0, 1)}
    kept = sorted(p.parent for p in out.glob("resnet-transformer/tpe/seed_*/trial_*/model.pt"))
    assert kept == sorted({folder for _, folder in losses[:2]} | best_of_run)
    for seed in (0, 1):
        run = json.loads((out / "resnet-transformer" / "tpe" / f"seed_{seed}" / "metrics.json").read_text())
        best = min(json.loads(p.read_text())["val_loss"] for p in trials if f"seed_{seed}" in str(p))
        assert run["kind"] == "run" and run["val_loss"] == best and run["trials_complete"] == 3
        assert (out / "resnet-transformer" / "manual" / f"seed_{seed}" / "model.pt").exists()
    result = compare(out, tmp_path / "cmp")
    assert set(result.welch["metric"]) == {"rmse", "mae", "r2"} and len(result.welch) == 3
    assert all(path.is_file() and path.stat().st_size > 0 for path in result.paths.values())
    assert set(result.paths) >= {"runs", "summary", "welch", "baselines", "histories", "readouts",
                                 "violins_png", "forest_png", "histories_png"}
    runs = (tmp_path / "cmp" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 4                         # 2 manual + 2 TPE runs, trials not counted as runs


def test_ddp_inside_trials_under_torchrun(tiny_cube, tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "insarcast", "tune",
                           str(tiny_cube), "--preset", "tiny", "--arch", "gcn-transformer", "--runs", "1",
                           "--trials", "2", "--no-manual", "--out", str(tmp_path / "t"), "-q", "--device", "cpu",
                           "--set", "train.train_samples=32"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = sorted((tmp_path / "t").glob("gcn-transformer/tpe/seed_0/trial_*/metrics.json"))
    assert len(trials) == 2
    for path in trials:
        metrics = json.loads(path.read_text())
        assert metrics["world_size"] == 2 and metrics["ranks_identical"] is True and metrics["device"] == "cpu"


def test_the_paper_preset_prints_its_cost_before_it_starts(tiny_cube, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from insarcast.cli import main

    events = []
    monkeypatch.setattr(tune_module, "_time_one_step", lambda *a, **k: (events.append("timed") or (0.5, 0.1)))

    def run(self, archs):
        events.append("run")
        return {"studies": len(archs) * self.runs, "seconds": 0.0, "out": str(self.out)}

    monkeypatch.setattr(tune_module.Tuner, "run", run)
    settings = ["--set", "train.max_epochs=3", "--set", "train.train_samples=64", "--set", "train.eval_samples=32",
                "--set", "train.batch_size=16"]
    result = CliRunner().invoke(main, ["tune", str(tiny_cube), "--preset", "paper", "--arch", "cnn-lstm",
                                       "--out", str(tmp_path / "t"), "-q", *settings])
    assert result.exit_code == 0, result.output
    assert events == ["timed", "run"]                          # the estimate comes first
    tuner = Tuner(tiny_cube, tmp_path / "t", preset="paper",
                  overrides={"train.max_epochs": 3, "train.train_samples": 64, "train.eval_samples": 32,
                             "train.batch_size": 16})
    windows = tuner.windows(*tuner.base("cnn-lstm"))
    n = {part: len(windows.samples(part)) for part in ("train", "val", "test")}
    assert n["train"] >= 64
    steps, val, test = 4, -(-min(32, n["val"]) // 16), -(-n["test"] // 16)
    # (50 trials + manual) x 10 runs, each 3 epochs of 4 steps and the validation batches, then the test
    seconds = 51 * 10 * (3 * (steps * 0.5 + val * 0.1) + test * 0.1)
    assert tuner.estimate_seconds(("cnn-lstm",), time_step=lambda *a: (0.5, 0.1)) == pytest.approx(seconds)
    assert "1 architectures x 10 runs x (50 trials + manual)" in result.stderr
    assert f"at most {seconds / 3600:.1f} h on this machine" in result.stderr
    # --estimate prints it and stops; the demo preset does not print it
    events.clear()
    result = CliRunner().invoke(main, ["tune", str(tiny_cube), "--preset", "paper", "--arch", "cnn-lstm",
                                       "--out", str(tmp_path / "t"), "-q", "--estimate", "--no-manual", *settings])
    assert result.exit_code == 0 and events == ["timed"] and "(50 trials)" in result.stderr
    events.clear()
    result = CliRunner().invoke(main, ["tune", str(tiny_cube), "--preset", "tiny", "--arch", "cnn-lstm",
                                       "--out", str(tmp_path / "t"), "-q"])
    assert result.exit_code == 0 and events == ["run"] and "at most" not in result.stderr


def _running_trial(storage) -> bool:
    try:
        study = optuna.load_study(study_name="cnn-lstm-seed0", storage=storage)
        return any(t.state.name == "RUNNING" for t in study.trials)
    except Exception:                                  # the database or the study not made yet
        return False


def test_ctrl_c_during_a_trial_is_one_line_exit_130_and_the_rerun_resumes(tiny_cube, tmp_path):
    """Ctrl-C printed Optuna's traceback of the trial and click's "Aborted!" (exit 1); an interrupt that landed
    while Optuna wrote to SQLite left the database locked and the trial RUNNING."""
    from insarcast.export.select import find_runs

    out = tmp_path / "t"
    args = [sys.executable, "-m", "insarcast", "tune", str(tiny_cube), "--preset", "tiny", "--arch", "cnn-lstm",
            "--runs", "1", "--trials", "2", "--no-manual", "--out", str(out), "-q", "--set", "train.max_epochs=1"]
    storage = f"sqlite:///{out / 'optuna.db'}"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not _running_trial(storage):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("insarcast: error: interrupted by Ctrl-C"), err[-3000:]
    assert str(out) in lines[0] and "to resume" in lines[0]
    study = optuna.load_study(study_name="cnn-lstm-seed0", storage=storage)
    assert "RUNNING" not in {t.state.name for t in study.trials}          # the storage says what happened
    complete = {t.number for t in study.trials if t.state.name == "COMPLETE"}
    # no checkpoint of an unfinished trial is offered to export as a finished run
    assert {int(run.source.rsplit("_", 1)[1]) for run in find_runs(out)} <= complete
    assert (out / "cube.json").is_file()                                    # a rerun checks it is the same cube
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    states = [t.state.name for t in optuna.load_study(study_name="cnn-lstm-seed0", storage=storage).trials]
    assert states.count("COMPLETE") == 2 and "RUNNING" not in states


def test_a_ctrl_c_while_optuna_writes_the_storage_waits_for_the_write(tiny_cube, tmp_path, monkeypatch):
    """A KeyboardInterrupt raised inside Optuna's write of a finished trial left it RUNNING (Optuna then failed on
    its own state, with a traceback, or met SQLite's lock): the signal now waits until the write is done."""
    real = optuna.storages.RDBStorage.set_trial_state_values
    sent = []

    def interrupted_write(self, *args, **kwargs):
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)           # Ctrl-C in the middle of the storage's write
        return real(self, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", interrupted_write)
    tuner = Tuner(tiny_cube, tmp_path / "t", preset="tiny", trials=2, runs=1, manual=False,
                  overrides={"train.max_epochs": 1, "train.train_samples": 32, "train.eval_samples": 32})
    with pytest.raises(KeyboardInterrupt):
        tuner.run(("cnn-lstm",))
    assert sent and signal.getsignal(signal.SIGINT) is signal.default_int_handler     # the handler is put back
    study = optuna.load_study(study_name="cnn-lstm-seed0", storage=tuner.storage_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]        # written whole, then stopped before trial 1
    assert (tmp_path / "t" / "cnn-lstm" / "tpe" / "seed_0" / "trial_000" / "model.pt").is_file()
