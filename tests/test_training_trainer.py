"""The trainer on the tiny synthetic cube: skill against persistence, determinism, DDP, the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from insarcast.baselines import BASELINES  # noqa: E402
from insarcast.training.data import Windows  # noqa: E402
from insarcast.training.metrics import SkillSums, skill  # noqa: E402
from insarcast.training.models import ModelConfig, load_model  # noqa: E402
from insarcast.training.params import TrainConfig  # noqa: E402
from insarcast.errors import InputError  # noqa: E402
from insarcast.training.runs import train_cube  # noqa: E402
from insarcast.training.trainer import check_seed, fit, resolve_device, seed_everything, train_run  # noqa: E402

T, F, P = 8, 6, 16
SMALL = dict(width=16, depth=1, d_model=32, heads=2, temporal_layers=1, dropout=0.0)
CLI_SMALL = ["--set", f"model.history={T}", "--set", f"model.horizon={F}", "--set", f"model.patch={P}",
             "--set", "model.width=8", "--set", "model.d_model=16", "--set", "model.heads=2",
             "--set", "train.stride=8", "--set", "train.max_epochs=2", "--set", "train.train_samples=128",
             "--set", "train.eval_samples=128"]


@pytest.fixture(scope="module")
def windows(tiny_cube):
    return Windows.from_cube(tiny_cube, history=T, horizon=F, patch=P, stride=8)


def test_skill_sums_equal_direct_metrics_and_add_up_over_shards():
    rng = np.random.default_rng(0)
    obs = rng.normal(0, 3, (10, 2, 4, 4))
    fc = obs + rng.normal(0.5, 1, obs.shape)
    mask = rng.random((10, 1, 4, 4)) > 0.3
    whole = SkillSums(2)
    whole.add(fc, obs, mask)
    shards = [SkillSums(2) for _ in range(3)]
    for i in range(10):
        shards[i % 3].add(fc[i:i + 1], obs[i:i + 1], mask[i:i + 1])
    m = np.broadcast_to(mask, obs.shape)
    e, y = (fc - obs)[m], obs[m]
    result = whole.result()
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean(e**2)))
    assert result["mae"] == pytest.approx(np.mean(np.abs(e)))
    assert result["r2"] == pytest.approx(1 - np.sum(e**2) / np.sum((y - y.mean()) ** 2))
    for k in range(2):                                              # every horizon step on its own
        ek, yk = (fc - obs)[:, k][m[:, k]], obs[:, k][m[:, k]]
        assert result["per_horizon"]["rmse"][k] == pytest.approx(np.sqrt(np.mean(ek ** 2)))
        assert result["per_horizon"]["mae"][k] == pytest.approx(np.mean(np.abs(ek)))
        assert result["per_horizon"]["r2"][k] == pytest.approx(1 - np.sum(ek ** 2) / np.sum((yk - yk.mean()) ** 2))
    merged = skill(sum(s.sums for s in shards))
    assert merged["n"] == result["n"]
    assert [merged[k] for k in ("rmse", "mae", "r2")] == pytest.approx([result[k] for k in ("rmse", "mae", "r2")],
                                                                      rel=1e-12)


def test_a_small_resnet_transformer_beats_persistence(windows, tmp_path):
    cfg = ModelConfig(arch="resnet-transformer", history=T, horizon=F, patch=P, readout="skip", **SMALL)
    metrics = train_run(windows, cfg, TrainConfig(lr=3e-3, max_epochs=4, train_samples=512, eval_samples=256),
                        seed=0, out=tmp_path / "run")
    persistence = metrics["baselines"]["persistence"]
    assert metrics["test"]["n"] == persistence["n"] > 10_000          # same windows and pixels
    assert metrics["test"]["rmse"] < 0.95 * persistence["rmse"]
    assert metrics["test"]["mae"] < persistence["mae"]
    for block in (metrics["test"], *metrics["baselines"].values()):   # metrics per horizon step too
        assert all(len(block["per_horizon"][key]) == F for key in ("rmse", "mae", "r2"))
    assert set(metrics["baselines"]) == set(BASELINES) >= {"persistence", "linear", "trend_annual", "adaptive"}
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "history.csv", "metrics.json",
                                                                     "model.pt"]
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_loss,lr,seconds" and len(history) == 1 + metrics["epochs"]
    model, extra = load_model(tmp_path / "run" / "model.pt")
    assert model.cfg == cfg and extra["normalisation"] == windows.norm.to_dict()
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == cfg.to_dict()


def test_same_seed_gives_the_same_model_and_another_seed_does_not(windows):
    cfg = ModelConfig(arch="cnn-lstm", history=T, horizon=F, patch=P, **SMALL)
    train = TrainConfig(max_epochs=2, train_samples=96, eval_samples=64)
    a, b, c = (fit(windows, cfg, train, seed=s) for s in (7, 7, 8))
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    assert a.best_val == b.best_val != c.best_val
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key])


def test_early_stopping_keeps_the_best_epoch(windows):
    cfg = ModelConfig(arch="cnn-lstm", history=T, horizon=F, patch=P, **SMALL)
    result = fit(windows, cfg, TrainConfig(lr=0.5, max_epochs=6, patience=1, train_samples=64, eval_samples=64),
                 seed=0)          # an absurd learning rate: validation stops improving at once
    losses = [h["val_loss"] for h in result.history]
    assert result.best_val == min(losses) and result.best_epoch == int(np.argmin(losses))
    assert len(losses) <= result.best_epoch + 2


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "insarcast", *args], capture_output=True, text=True, env=env)


def test_two_process_gloo_ddp_run_completes_with_identical_weights(tiny_cube, tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "insarcast", "train",
                           str(tiny_cube), "--arch", "gcn-lstm", "--out", str(tmp_path / "ddp"), "-q",
                           "--device", "cpu", *CLI_SMALL], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["ranks_identical"] is True and metrics["device"] == "cpu"
    assert metrics["test"]["n"] == metrics["baselines"]["persistence"]["n"] > 0
    assert proc.stdout.count("test RMSE") == 1                    # only rank 0 reports


def test_cli_trains_and_refuses_bad_parameters(tiny_cube, tmp_path):
    proc = _cli("train", str(tiny_cube), "--arch", "cnn-transformer", "--out", str(tmp_path / "r"), "-q",
                *CLI_SMALL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test RMSE" in proc.stdout and (tmp_path / "r" / "model.pt").exists()
    again = _cli("train", str(tiny_cube), "--out", str(tmp_path / "r"), "-q", *CLI_SMALL)
    assert again.returncode == 2 and "exists" in again.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nwidht = 3\n")
    proc = _cli("train", str(tiny_cube), "--params", str(bad), "--out", str(tmp_path / "b"))
    assert proc.returncode == 2 and "bad.toml" in proc.stderr and "widht" in proc.stderr
    assert not (tmp_path / "b").exists()
    proc = _cli("train", str(tiny_cube), "--out", str(tmp_path / "c"), "--set", "model.history=400")
    assert proc.returncode == 2 and "history 400" in proc.stderr


def test_evaluation_reuses_the_baselines_and_gives_the_same_figures(tiny_cube):
    """The second evaluation on the same windows takes the baselines and masks from the cache; a
    different model on it equals that model on fresh windows, figure for figure."""
    from insarcast.training.models import build_model
    from insarcast.training.trainer import evaluate

    shared = Windows.from_cube(tiny_cube, history=T, horizon=F, patch=P, stride=16)
    cfg = ModelConfig(arch="cnn-lstm", history=T, horizon=F, patch=P, **SMALL)
    torch.manual_seed(0)
    first = build_model(cfg)
    torch.manual_seed(1)
    second = build_model(cfg)
    evaluate(first, shared)
    assert shared.eval_cache, "the first evaluation fills the cache"
    cached = evaluate(second, shared)
    fresh = evaluate(second, Windows.from_cube(tiny_cube, history=T, horizon=F, patch=P, stride=16))
    assert cached == fresh
    assert cached["model"]["rmse"] != cached["persistence"]["rmse"]


@pytest.mark.parametrize("seed", [2**70, 2**32, -1, 1.5, True, "7"])
def test_a_seed_out_of_range_or_not_an_integer_is_refused(seed):
    with pytest.raises(InputError) as err:
        check_seed(seed)
    assert str(err.value) == f"option --seed: expected an integer in [0, {2**32 - 1}], got {seed!r}"
    with pytest.raises(InputError, match="option --seed"):
        seed_everything(seed)                        # what fit calls, for the tune runs too


@pytest.mark.parametrize("seed", [0, 99, 2**32 - 1, np.int64(5)])
def test_a_seed_in_range_is_taken(seed):
    assert check_seed(seed) == int(seed) and type(check_seed(seed)) is int


def _gpus(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("device,gpus,expected", [
    ("bogus", 0, "not a torch device: 'bogus'; this machine has cpu"),
    ("cuda", 0, "no device 'cuda' on this machine; it has cpu"),
    ("cuda:1", 1, "no device 'cuda:1' on this machine; it has cpu, cuda:0"),
    ("cpu:1", 0, "no device 'cpu:1' on this machine; it has cpu"),
    ("meta", 2, "no device 'meta' on this machine; it has cpu, cuda:0, cuda:1"),
])
def test_a_device_this_machine_lacks_is_refused_naming_what_it_has(monkeypatch, device, gpus, expected):
    _gpus(monkeypatch, gpus)
    with pytest.raises(InputError) as err:
        resolve_device(device)
    assert str(err.value) == f"option --device: {expected}"


@pytest.mark.parametrize("device,local_rank,expected", [
    (None, "0", None), ("cpu", "0", "cpu"), ("cpu:0", "0", "cpu"), ("cuda", "0", "cuda:0"),
    ("cuda", "1", "cuda:1"), ("cuda:0", "1", "cuda:0"),
])
def test_a_device_is_resolved_to_one_with_an_index(monkeypatch, device, local_rank, expected):
    _gpus(monkeypatch, 2)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert resolve_device(device) == expected        # torch.cuda.set_device refuses a bare "cuda"


@pytest.mark.parametrize("change,field", [
    (dict(seed=2**64), "option --seed"), (dict(device="bogus"), "option --device"),
    (dict(overrides={"train.lr": "abc"}), "field 'train.lr'"),
])
def test_train_refuses_bad_arguments_before_reading_the_cube(tmp_path, change, field):
    args = {"arch": "cnn-lstm", "seed": 0, "out": tmp_path / "out", **change}
    with pytest.raises(InputError) as err:
        train_cube(tmp_path / "missing.zarr", **args)
    assert str(err.value).startswith(f"{field}: ") and not (tmp_path / "out").exists()


def test_cli_refuses_a_bad_setting_and_device_in_one_line(tmp_path):
    cube = tmp_path / "missing.zarr"                 # never read: the arguments are refused first
    for args, line in [(("--set", "train.max_epochs=1e9"), "field 'train.max_epochs': expected an integer > 0"),
                       (("--device", "bogus"), "option --device: not a torch device: 'bogus'")]:
        proc = _cli("train", str(cube), "--out", str(tmp_path / "o"), *args)
        assert proc.returncode == 2 and proc.stderr.startswith(f"insarcast: error: {line}"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
