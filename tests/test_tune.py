"""TPE search: the paper's sampler, determinism, failed trials, kill-and-resume, checkpoints, DDP, compare."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna")
torch = pytest.importorskip("torch")

from insarcast.training import tune as tune_module  # noqa: E402
from insarcast.training.tune import Tuner, make_sampler, paper_gamma, suggest  # noqa: E402


def test_sampler_carries_the_papers_settings():
    sampler = make_sampler(3)
    assert sampler._n_startup_trials == 20
    assert sampler._gamma(40) == 10 and paper_gamma(40) == 10 and paper_gamma(41) == 11 and paper_gamma(1) == 1
    assert sampler._multivariate is True


def _sequence(seed, n=24):
    """A sequential study over the ResNet+Transformer space with a cheap objective."""
    base_model, base_train = Tuner("x.zarr", "/tmp/none", preset="paper").base("resnet-transformer")
    study = optuna.create_study(sampler=make_sampler(seed))

    def objective(trial):
        model, train = suggest(trial, "resnet-transformer", base_model, base_train)
        return (train.lr - 1e-3) ** 2 * 1e6 + model.dropout + (model.readout == "pooled")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n)
    return [t.params for t in study.trials]


def test_same_seed_same_parameter_sequence_past_the_startup_trials():
    a, b, c = _sequence(5), _sequence(5), _sequence(6)
    assert a == b                   # 24 trials: 20 random, then 4 chosen by TPE
    assert a != c


def test_search_space_keeps_the_window_of_the_contract():
    tuner = Tuner("x.zarr", "/tmp/none", preset="paper")
    base_model, base_train = tuner.base("gcn-transformer")
    trial = optuna.trial.FixedTrial({"width": 16, "depth": 3, "d_model": 64, "temporal_layers": 2, "dropout": 0.1,
                                     "readout": "skip", "graph_radius": 2.3, "heads": 4, "lr": 1e-3,
                                     "weight_decay": 1e-4, "batch_size": 16})
    model, train = suggest(trial, "gcn-transformer", base_model, base_train)
    assert (model.history, model.horizon, model.patch) == (12, 6, 32)
    assert (model.graph_radius, model.readout, train.batch_size) == (2.3, "skip", 16)


def test_a_failing_trial_is_recorded_and_the_study_completes(tiny_cube, tmp_path, monkeypatch):
    real = tune_module.train_run
    calls = []

    def flaky(*args, **kwargs):
        calls.append(kwargs["extra"].get("trial"))
        if len(calls) == 2:
            raise FloatingPointError("validation loss is nan at epoch 0")
        return real(*args, **kwargs)

    monkeypatch.setattr(tune_module, "train_run", flaky)
    tuner = Tuner(tiny_cube, tmp_path / "t", preset="tiny", trials=3, runs=1, manual=False,
                  overrides={"train.max_epochs": 1, "train.train_samples": 32, "train.eval_samples": 32})
    tuner.run(("cnn-lstm",))
    study = optuna.load_study(study_name="cnn-lstm-seed0", storage=tuner.storage_url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1
    history = (tmp_path / "t" / "cnn-lstm" / "tpe" / "seed_0" / "trials.csv").read_text().splitlines()
    assert history[0].startswith("arch,seed,number,state,value") and ",FAIL," in history[2]


def test_killed_tune_resumes_to_exactly_the_asked_number_of_trials(tiny_cube, tmp_path):
    out = tmp_path / "t"
    args = [sys.executable, "-m", "insarcast", "tune", "--cube", str(tiny_cube), "--preset", "tiny",
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


def test_tune_keeps_the_best_checkpoints_and_compare_reads_it(tiny_cube, tmp_path):
    from insarcast.compare import compare

    out = tmp_path / "t"
    tuner = Tuner(tiny_cube, out, preset="tiny", trials=3, runs=2, keep=2,
                  overrides={"train.train_samples": 32, "train.eval_samples": 32})
    tuner.run(("resnet-transformer",))
    trials = sorted(out.glob("resnet-transformer/tpe/seed_*/trial_*/metrics.json"))
    assert len(trials) == 6
    losses = sorted((json.loads(p.read_text())["val_loss"], p.parent) for p in trials)
    kept = sorted(p.parent for p in out.glob("resnet-transformer/tpe/seed_*/trial_*/model.pt"))
    assert kept == sorted(folder for _, folder in losses[:2])
    for seed in (0, 1):
        run = json.loads((out / "resnet-transformer" / "tpe" / f"seed_{seed}" / "metrics.json").read_text())
        best = min(json.loads(p.read_text())["val_loss"] for p in trials if f"seed_{seed}" in str(p))
        assert run["kind"] == "run" and run["val_loss"] == best and run["trials_complete"] == 3
        assert (out / "resnet-transformer" / "manual" / f"seed_{seed}" / "model.pt").exists()
    result = compare(out, tmp_path / "cmp")
    assert set(result.welch["metric"]) == {"rmse", "mae", "r2"} and len(result.welch) == 3
    runs = (tmp_path / "cmp" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 4                         # 2 manual + 2 TPE runs, trials not counted as runs


def test_ddp_inside_trials_under_torchrun(tiny_cube, tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "insarcast", "tune",
                           "--cube", str(tiny_cube), "--preset", "tiny", "--arch", "gcn-transformer", "--runs", "1",
                           "--trials", "2", "--no-manual", "--out", str(tmp_path / "t"), "-q",
                           "--set", "train.train_samples=32"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = sorted((tmp_path / "t").glob("gcn-transformer/tpe/seed_0/trial_*/metrics.json"))
    assert len(trials) == 2
    for path in trials:
        metrics = json.loads(path.read_text())
        assert metrics["world_size"] == 2 and metrics["ranks_identical"] is True
