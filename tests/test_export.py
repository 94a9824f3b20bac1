"""Export of the best runs to an ONNX ensemble, and the UDF's torch-free loader that checks it.

One real (tiny, one-epoch) training run and a few fabricated runs (random weights, made-up
validation losses) make a tune folder laid out like the tuner's; the ensemble exported from it is
shared by the tests, each of which copies it before tampering with it.
"""

import json
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from insarcast.errors import InputError  # noqa: E402
from insarcast.export import export_ensemble  # noqa: E402
from insarcast.export.onnx import ParityError, parity_inputs  # noqa: E402
from insarcast.export.select import ExportWarning, select_runs  # noqa: E402
from insarcast.training.data import Windows  # noqa: E402
from insarcast.training.models import ARCHS, ModelConfig, build_model, load_model, save_model  # noqa: E402
from insarcast.training.params import TrainConfig  # noqa: E402
from insarcast.training.trainer import train_run  # noqa: E402
from conftest import edit_manifest  # noqa: E402
from insarcast.udf.ensemble import ensemble_providers, load_ensemble  # noqa: E402
from insarcast.udf.manifest import read_manifest  # noqa: E402

T, F, P = 8, 6, 16
ARCH = "resnet-transformer"
SMALL = dict(width=8, depth=1, d_model=16, heads=2, temporal_layers=1, dropout=0.0)
TRAIN = TrainConfig(max_epochs=1, batch_size=16, train_samples=32, eval_samples=32, stride=16)


def tiny_config(arch: str = ARCH, **changes) -> ModelConfig:
    return ModelConfig(arch=arch, history=T, horizon=F, patch=P, **{"readout": "skip", **SMALL, **changes})


@pytest.fixture(scope="module")
def windows(tiny_cube):
    return Windows.from_cube(tiny_cube, history=T, horizon=F, patch=P, stride=TRAIN.stride)


def fabricate(root, windows, cfg: ModelConfig, *, seed: int, trial, val_loss: float, strategy: str = "tpe",
              cube=None):
    """A run folder as the tuner writes it, with an untrained model (random weights from ``seed``)."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    folder = root / cfg.arch / f"seed_{seed}" / (f"trial_{trial:03d}" if trial is not None else strategy)
    folder.mkdir(parents=True)
    extra = {"normalisation": windows.norm.to_dict(), "train": TRAIN.to_dict(), "epoch_days": windows.epoch_days,
             "grid": windows.grid, "seed": seed}
    save_model(model, folder / "model.pt", extra=extra)
    metrics = {"arch": cfg.arch, "strategy": strategy, "seed": seed, "val_loss": val_loss, "model": cfg.to_dict(),
               "train": TRAIN.to_dict(), "normalisation": windows.norm.to_dict(),
               "epoch_days": windows.epoch_days, "grid": windows.grid, "cube": str(cube or windows.source)}
    if trial is not None:
        metrics["trial"] = trial
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture(scope="module")
def tune(tmp_path_factory, windows):
    """Four TPE trials of the architecture (one really trained), a better manual run, a better other arch."""
    root = tmp_path_factory.mktemp("tune")
    metrics = train_run(windows, tiny_config(), TRAIN, seed=0, out=root / ARCH / "seed_0" / "trial_000",
                        strategy="tpe", extra={"trial": 0})
    v = metrics["val_loss"]
    fabricate(root, windows, tiny_config(), seed=2, trial=5, val_loss=1.5 * v)     # tie with seed 1:
    fabricate(root, windows, tiny_config(), seed=1, trial=7, val_loss=1.5 * v)     # seed 1 comes first
    fabricate(root, windows, tiny_config(), seed=3, trial=2, val_loss=3.0 * v)
    fabricate(root, windows, tiny_config(), seed=4, trial=None, val_loss=0.1 * v, strategy="manual")
    fabricate(root, windows, tiny_config("cnn-lstm"), seed=0, trial=0, val_loss=0.01 * v)
    (root / ".tmp-1234-run").mkdir()                     # a tuner's staging folder: ignored
    (root / ".tmp-1234-run" / "metrics.json").write_text("{")
    return root


@pytest.fixture(scope="module")
def ensemble(tune, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "ensemble"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExportWarning)        # 4 trials, top 2: no warning
        return export_ensemble(tune, out, top=2)


@pytest.fixture
def copy(ensemble, tmp_path):
    target = tmp_path / "ensemble"
    shutil.copytree(ensemble, target)
    return target


# ---------------------------------------------------------------- selection

def test_selection_orders_by_validation_loss_then_seed_and_respects_top(tune):
    runs = select_runs(tune, arch=ARCH, top=3)
    assert [(r.trial, r.seed) for r in runs] == [(0, 0), (7, 1), (5, 2)]
    assert [r.source for r in runs][0] == f"{ARCH}/seed_0/trial_000"
    assert [r.trial for r in select_runs(tune, arch=ARCH, top=1)] == [0]
    with_manual = select_runs(tune, arch=ARCH, top=2, include_manual=True)
    assert [(r.strategy, r.seed) for r in with_manual] == [("manual", 4), ("tpe", 0)]
    assert [r.arch for r in select_runs(tune, arch="cnn-lstm", top=1)] == ["cnn-lstm"]


def test_fewer_trials_than_top_warn_or_fail_when_strict(tune, tmp_path):
    with pytest.warns(ExportWarning, match="only 4 finished tpe trials of resnet-transformer, fewer than the 10"):
        assert len(select_runs(tune, arch=ARCH, top=10)) == 4
    with pytest.raises(InputError, match="only 4 .* fewer than the 10 asked for"):
        select_runs(tune, arch=ARCH, top=10, strict=True)
    out = tmp_path / "never"
    with pytest.raises(InputError, match="strict"):
        export_ensemble(tune, out, top=10, strict=True)
    assert not out.exists()
    with pytest.raises(InputError, match="no finished tpe trials of gcn-lstm"):
        select_runs(tune, arch="gcn-lstm")


@pytest.mark.parametrize("case", ["weights symlinked out", "weights a folder"])
def test_a_run_whose_weights_leave_the_tune_folder_or_are_no_file_is_refused(windows, tmp_path, case):
    """A model.pt symlinked out of the tune folder was opened; one that was a folder was skipped silently."""
    tune_dir = tmp_path / "tune"
    fabricate(tune_dir, windows, tiny_config(), seed=0, trial=0, val_loss=1.0)
    odd = fabricate(tune_dir, windows, tiny_config(), seed=1, trial=1, val_loss=0.5)
    (odd / "model.pt").unlink()
    if case == "weights symlinked out":
        outside = tmp_path / "outside.pt"
        outside.write_bytes(b"not yours")
        (odd / "model.pt").symlink_to(outside)
        match = "lies outside"
    else:
        (odd / "model.pt").mkdir()
        match = "expected the run's weights file"
    with pytest.raises(InputError, match=match) as err:
        select_runs(tune_dir, arch=ARCH, top=2)
    assert "model.pt" in str(err.value)


def test_members_that_disagree_on_the_window_or_normalisation_are_refused(windows, tmp_path):
    fabricate(tmp_path, windows, tiny_config(), seed=0, trial=0, val_loss=1.0)
    odd = fabricate(tmp_path, windows, tiny_config(), seed=1, trial=1, val_loss=2.0)
    metrics = json.loads((odd / "metrics.json").read_text())
    metrics["model"]["history"] = T + 1
    (odd / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(InputError, match=r"seed_1/trial_001 .* has model.history = 9 but the best member") as err:
        select_runs(tmp_path, arch=ARCH, top=2)
    assert err.value.field == "model.history"
    metrics["model"]["history"] = T
    metrics["normalisation"]["input_std"] *= 2
    (odd / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(InputError, match="normalisation") as err:
        select_runs(tmp_path, arch=ARCH, top=2)
    assert "trial_001" in str(err.value)


def test_an_existing_output_and_a_missing_cube_are_refused_before_any_export(tune, windows, tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty; pass overwrite"):
        export_ensemble(tune, out, top=2)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    lost = tmp_path / "lost"
    fabricate(lost, windows, tiny_config(), seed=0, trial=0, val_loss=1.0, cube=tmp_path / "gone.zarr")
    with pytest.raises(InputError, match="does not exist here; pass the cube") as err:
        export_ensemble(lost, tmp_path / "out", top=1)
    assert err.value.field == "cube"
    assert not (tmp_path / "out").exists()


def test_a_run_records_its_cube_absolute_so_export_finds_it_from_another_folder(tiny_cube, tmp_path, monkeypatch):
    """A tune given a relative cube recorded it as given: `insarcast export TUNE` run elsewhere could not find it."""
    from click.testing import CliRunner

    from insarcast.cli import main

    monkeypatch.chdir(tiny_cube.parent)
    relative = Windows.from_cube(tiny_cube.name, history=T, horizon=F, patch=P, stride=TRAIN.stride)
    tune_dir = tmp_path / "tune"
    metrics = train_run(relative, tiny_config(), TRAIN, seed=0, out=tune_dir / ARCH / "seed_0" / "trial_000",
                        strategy="tpe", extra={"trial": 0})
    assert metrics["cube"] == str(tiny_cube.resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = CliRunner().invoke(main, ["export", str(tune_dir), "--top", "1", "--out", str(tmp_path / "ens"), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ens" / "member_00.onnx").is_file()


def _old_run(tmp_path, windows, recorded):
    """A run of an older insarcast that recorded its cube as given, in proj/tune beside proj/cube.zarr."""
    fabricate(tmp_path / "proj" / "tune", windows, tiny_config(), seed=0, trial=0, val_loss=1.0, cube=recorded)
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "proj" / "tune"


def test_an_old_relative_record_is_found_beside_the_tune_folder(tiny_cube, windows, tmp_path, monkeypatch):
    """The tune ran in tmp_path with the cube proj/cube.zarr; export runs in another folder."""
    shutil.copytree(tiny_cube, tmp_path / "proj" / "cube.zarr")
    tune_dir = _old_run(tmp_path, windows, "proj/cube.zarr")
    monkeypatch.chdir(tmp_path / "elsewhere")
    out = export_ensemble(tune_dir, tmp_path / "ens", top=1)
    assert (out / "member_00.onnx").is_file()


@pytest.mark.parametrize("case", ["a symlink out of the folder", "'..' out of the current folder",
                                  "an absolute path through a symlink", "gone"])
def test_a_recorded_cube_that_leaves_its_folder_or_is_gone_is_refused_naming_the_run(tiny_cube, windows, tmp_path,
                                                                                      monkeypatch, case):
    """The recorded path is read from a file: like a member's path it may not lead out of its folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copytree(tiny_cube, outside / "cube.zarr")
    (tmp_path / "proj").mkdir()
    recorded, message = {
        "a symlink out of the folder": ("proj/cube.zarr", "lies outside .* symlink"),
        "'..' out of the current folder": ("../outside/cube.zarr", "lies outside"),
        "an absolute path through a symlink": (str(tmp_path / "link" / "cube.zarr"), "now leads elsewhere"),
        "gone": (str(tmp_path / "gone.zarr"), "does not exist here"),
    }[case]
    (tmp_path / "proj" / "cube.zarr").symlink_to(outside / "cube.zarr")
    (tmp_path / "link").symlink_to(outside)
    tune_dir = _old_run(tmp_path, windows, recorded)
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(InputError, match=message) as err:
        export_ensemble(tune_dir, tmp_path / "ens", top=1)
    assert err.value.path.endswith("trial_000/metrics.json") and err.value.field == "cube"
    assert "--cube" in str(err.value) and not (tmp_path / "ens").exists()


# ---------------------------------------------------------------- export

def test_export_passes_parity_and_the_manifest_has_every_field(ensemble, tune, windows):
    assert sorted(p.name for p in ensemble.iterdir()) == ["ensemble.json", "member_00.onnx", "member_01.onnx"]
    manifest = json.loads((ensemble / "ensemble.json").read_text())
    assert list(manifest) == ["format", "format_version", "name", "architecture", "framework", "framework_version",
                              "opset", "created", "versions", "history", "horizon", "patch", "channels", "inputs",
                              "target", "channel_names", "normalisation", "grid", "epoch_days", "input", "output",
                              "members"]
    assert read_manifest(ensemble).to_dict() == manifest               # the typed model reads what it wrote
    assert manifest["format"] == "insarcast-ensemble" and manifest["format_version"] == 1
    assert manifest["name"] == "insarcast-resnet-transformer-top2"
    assert manifest["architecture"] == ARCH and manifest["framework"] == "onnx"
    assert manifest["opset"] == 20 and manifest["created"].endswith("Z")
    assert set(manifest["versions"]) == {"insarcast", "torch", "onnx", "onnxruntime", "onnxscript"}
    assert all(manifest["versions"].values())
    assert (manifest["history"], manifest["horizon"], manifest["patch"], manifest["channels"]) == (T, F, P, 2)
    assert manifest["channel_names"] == ["displacement_relative_to_last", "valid"]
    assert manifest["normalisation"] == pytest.approx(windows.norm.to_dict())
    assert manifest["grid"] == {"spacing": 100.0, "crs": "EPSG:3035"} and manifest["epoch_days"] == 6.0
    assert manifest["input"] == {"name": "history", "dtype": "float32", "shape": [-1, T, 2, P, P],
                                 "dims": ["batch", "time", "channel", "y", "x"]}
    assert manifest["output"]["shape"] == [-1, F, P, P] and manifest["output"]["name"] == "forecast"
    assert "target_std" in manifest["output"]["units"]
    first, second = manifest["members"]
    assert list(first) == ["file", "sha256", "bytes", "arch", "trial", "run_seed", "strategy", "val_loss", "test",
                           "hyperparameters", "parameters", "exporter", "parity_max_abs", "zero_output", "source"]
    assert (first["trial"], first["run_seed"], second["trial"], second["run_seed"]) == (0, 0, 7, 1)
    assert first["val_loss"] < second["val_loss"]
    assert first["source"] == f"{ARCH}/seed_0/trial_000" and first["strategy"] == "tpe"
    assert set(first["test"]) == {"rmse", "mae", "r2"} and "test" not in second    # fabricated: no test skill
    assert first["hyperparameters"]["model"] == tiny_config().to_dict()
    assert first["hyperparameters"]["train"] == TRAIN.to_dict()
    for member in manifest["members"]:
        assert member["exporter"] == "dynamo" and member["zero_output"] is False     # paper members forecast
        assert 0 <= member["parity_max_abs"] <= 1e-4
        assert member["bytes"] == (ensemble / member["file"]).stat().st_size
    assert first["sha256"] != second["sha256"]


def test_loader_output_equals_torch_and_batch_1_equals_batch_37(ensemble, tune, windows):
    ens = load_ensemble(ensemble, intra_op_threads=1)
    assert (ens.history, ens.horizon, ens.patch, ens.channels, len(ens)) == (T, F, P, 2, 2)
    assert ens.norm == pytest.approx(windows.norm.to_dict())
    x = parity_inputs(windows.source, tiny_config(), TRAIN.to_dict(), windows.norm.to_dict(), n=37)
    assert x.shape == (37, T, 2, P, P) and 0 < x[:, :, 1].mean() < 1       # real windows with gaps
    whole = ens.predict(x)
    assert whole.shape == (2, 37, F, P, P) and whole.dtype == np.float32
    single = np.concatenate([ens.predict(x[i:i + 1]) for i in range(37)], axis=1)
    np.testing.assert_allclose(single, whole, atol=1e-5, rtol=0)
    for k, member in enumerate(json.loads((ensemble / "ensemble.json").read_text())["members"]):
        model, _ = load_model(tune / member["source"] / "model.pt")
        with torch.no_grad():
            np.testing.assert_allclose(whole[k], model(torch.from_numpy(x)).numpy(), atol=1e-4, rtol=0)
    assert load_ensemble(ensemble, intra_op_threads=1).members[0].session is ens.members[0].session   # cached
    assert ens.providers == ensemble_providers() and ensemble_providers()[-1] == "CPUExecutionProvider"


def test_the_loader_and_an_inference_call_run_where_torch_cannot_be_imported(ensemble, windows, tmp_path):
    x = parity_inputs(windows.source, tiny_config(), TRAIN.to_dict(), windows.norm.to_dict(), n=5)
    np.save(tmp_path / "x.npy", x)
    expected = load_ensemble(ensemble).predict(x)
    np.save(tmp_path / "expected.npy", expected)
    script = textwrap.dedent("""
        import importlib.abc, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is not installed here (blocked by the test)")
                return None

        sys.meta_path.insert(0, NoTorch())
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was importable")

        import numpy as np
        import pandas as pd
        import xarray as xr
        from insarcast.udf.ensemble import load_ensemble
        from insarcast.udf.forecast import forecast_products

        folder, x_file, expected_file = sys.argv[1:]
        ens = load_ensemble(folder, intra_op_threads=1)
        got = ens.predict(np.load(x_file))
        np.testing.assert_allclose(got, np.load(expected_file), atol=1e-6, rtol=0)
        rng = np.random.default_rng(0)
        times = pd.date_range("2021-01-01", periods=ens.history + 2, freq="6D")
        values = np.cumsum(rng.normal(0, 1, (len(times), 20, 24)), axis=0).astype(np.float32)
        values[:, :3, :3] = np.nan
        cube = xr.DataArray(values, dims=("t", "y", "x"),
                            coords={"t": times, "y": np.arange(20) * -100.0, "x": np.arange(24) * 100.0})
        products = forecast_products(cube, overlap=4, **ens.settings)
        assert products["forecast"].shape == (len(ens), ens.horizon, 20, 24)
        assert np.isfinite(products["median"].values[:, 5:, 5:]).all()
        assert np.isnan(products["median"].values[:, :3, :3]).all()
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not leaked, leaked
        print("OK", ens.name)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(ensemble), str(tmp_path / "x.npy"),
                           str(tmp_path / "expected.npy")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "OK insarcast-resnet-transformer-top2"


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != ARCH])
def test_every_architecture_exports_with_parity(arch, windows, tmp_path):
    cfg = tiny_config(arch, readout="pooled" if arch.startswith("cnn") else "skip")
    fabricate(tmp_path / "tune", windows, cfg, seed=0, trial=0, val_loss=1.0)
    out = export_ensemble(tmp_path / "tune", tmp_path / "ens", arch=arch, top=1)
    manifest = json.loads((out / "ensemble.json").read_text())
    assert manifest["architecture"] == arch and manifest["name"] == f"insarcast-{arch}-top1"
    assert manifest["members"][0]["exporter"] == "dynamo"
    assert manifest["members"][0]["parity_max_abs"] <= 1e-4
    assert load_ensemble(out).predict(np.zeros((3, T, 2, P, P), np.float32)).shape == (1, 3, F, P, P)


def test_a_residual_member_that_keeps_its_reference_is_flagged_and_not_run(tiny_cube, tmp_path, monkeypatch):
    residual = Windows.from_cube(tiny_cube, history=T, horizon=F, patch=P, stride=TRAIN.stride,
                                 inputs="residual-hindcast")
    cfg = tiny_config(inputs="residual-hindcast")
    kept = fabricate(tmp_path / "tune", residual, cfg, seed=0, trial=0, val_loss=1.0)   # zeroed readout: the reference
    moved = fabricate(tmp_path / "tune", residual, cfg, seed=1, trial=1, val_loss=2.0)
    model, extra = load_model(moved / "model.pt")
    with torch.no_grad():
        model.last_layer.bias.fill_(0.25)                  # a correction of 0.25 (normalised) everywhere
    save_model(model, moved / "model.pt", extra=extra)
    from click.testing import CliRunner

    from insarcast.cli import main

    done = CliRunner().invoke(main, ["export", str(tmp_path / "tune"), "--top", "2", "--out", str(tmp_path / "ens")])
    assert done.exit_code == 0, done.output
    assert "1 of the 2 members keep their reference forecast unchanged" in done.output    # told, not hidden
    out = tmp_path / "ens"
    assert [m["zero_output"] for m in json.loads((out / "ensemble.json").read_text())["members"]] == [True, False]
    assert read_manifest(out).members_zero_output == 1

    ens = load_ensemble(out, cache=False)
    x = np.random.default_rng(1).normal(size=(3, T, ens.channels, P, P)).astype(np.float32)
    calls = []
    for member in ens.members:
        monkeypatch.setattr(member.session, "run", lambda *a, _r=member.session.run, _k=member.index:
                            calls.append(_k) or _r(*a))
    y = ens.predict(x)
    assert set(calls) == {1}                               # the kept member is never run
    assert np.all(y[0] == 0) and np.allclose(y[1], 0.25, atol=1e-6)
    edit_manifest(out, lambda m: m["members"][0].update(zero_output=False))
    assert np.array_equal(load_ensemble(out, cache=False).predict(x), y)    # run, it gives the same bytes

    edit_manifest(out, lambda m: m["members"][1].update(zero_output=True))  # a manifest cannot silence a member
    with pytest.raises(InputError, match="member_01.*zero_output") as err:
        load_ensemble(out, cache=False)
    assert err.value.field == "members[1].zero_output"


def test_dynamo_failure_falls_back_to_torchscript_and_records_it(windows, tmp_path, monkeypatch):
    import insarcast.export.onnx as exporting

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator (simulated)")

    monkeypatch.setattr(exporting, "_dynamo_proto", broken)
    fabricate(tmp_path / "tune", windows, tiny_config(), seed=0, trial=0, val_loss=1.0)
    with pytest.warns(ExportWarning, match="dynamo exporter failed: RuntimeError: unsupported operator"):
        out = export_ensemble(tmp_path / "tune", tmp_path / "ens", top=1, parity_windows=windows.source)
    member = json.loads((out / "ensemble.json").read_text())["members"][0]
    assert member["exporter"] == "torchscript" and member["parity_max_abs"] <= 1e-4
    ens = load_ensemble(out)
    x = np.zeros((37, T, 2, P, P), np.float32)
    np.testing.assert_allclose(ens.predict(x)[:, :1], ens.predict(x[:1]), atol=1e-5)     # dynamic batch too


def test_a_parity_failure_names_the_member_and_writes_nothing(windows, tmp_path):
    fabricate(tmp_path / "tune", windows, tiny_config(), seed=0, trial=0, val_loss=1.0)
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "old.txt").write_text("previous export")
    with pytest.raises(ParityError, match=r"member member_00.onnx \(run resnet-transformer/seed_0/trial_000 .*"
                                          r"differs from torch by up to [0-9.e-]+ .* tolerance 1e-12"):
        export_ensemble(tmp_path / "tune", tmp_path / "ens", top=1, exporter="torchscript", tolerance=1e-12,
                        overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens", "tune"]      # no staging left
    assert sorted(p.name for p in (tmp_path / "ens").iterdir()) == ["old.txt"]  # the old export untouched


# ---------------------------------------------------------------- the loader refuses

def test_a_tampered_member_is_refused_naming_the_member_and_the_checksum(copy):
    load_ensemble(copy)                                          # intact: accepted (and its sessions cached)
    data = bytearray((copy / "member_01.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "member_01.onnx").write_bytes(bytes(data))
    with pytest.raises(InputError, match="member member_01.onnx fails its checksum") as err:
        load_ensemble(copy)
    assert err.value.field == "members[1].sha256" and err.value.path.endswith("member_01.onnx")


def test_a_wrong_history_in_the_manifest_is_refused_naming_member_and_field(copy):
    edit_manifest(copy, lambda m: m["members"][1]["hyperparameters"]["model"].update(history=T + 1))
    with pytest.raises(InputError, match="member member_01.onnx has history = 9 but the ensemble has history = 8"
                       ) as err:
        load_ensemble(copy)
    assert err.value.field == "members[1].hyperparameters.model.history"

    def everywhere(m):                  # consistent in the manifest, so only the ONNX graph can tell
        m["history"] = T + 1
        m["input"]["shape"][1] = T + 1
        for member in m["members"]:
            member["hyperparameters"]["model"]["history"] = T + 1
    edit_manifest(copy, everywhere)
    with pytest.raises(InputError, match=r"member member_00.onnx: the ONNX input 'history' has time dim 8, but the "
                                         r"manifest says history = 9") as err:
        load_ensemble(copy)
    assert err.value.field == "history"
    edit_manifest(copy, lambda m: m.update(history=T))
    with pytest.raises(InputError, match=r"input.shape is \[-1, 9, 2, 16, 16\], but .* give \[-1, 8, 2, 16, 16\]"):
        load_ensemble(copy)


def test_a_missing_member_or_manifest_is_refused(copy):
    (copy / "member_01.onnx").unlink()
    with pytest.raises(InputError, match="member member_01.onnx is missing") as err:
        load_ensemble(copy)
    assert err.value.field == "members[1].file"
    (copy / "ensemble.json").unlink()
    with pytest.raises(InputError, match="ensemble.json not found"):
        load_ensemble(copy)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("normalisation"), "missing the key 'normalisation'"),
    (lambda m: m.update(patch="16"), "'patch' must be an int, got str"),
    (lambda m: m["normalisation"].update(target_std=0.0), r"normalisation.target_std must be > 0"),
    (lambda m: m["members"][0].pop("sha256"), r"missing the key 'members\[0\].sha256'"),
    (lambda m: m["members"][0].update(file="../member_00.onnx"), "plain file name"),
    (lambda m: m.update(format_version=2), "unsupported format_version 2"),
    (lambda m: m.update(channel_names=["a", "b"]), "channel_names"),
    (lambda m: m["output"].update(name="prediction"), "the ONNX output is named 'forecast', the manifest says"),
])
def test_a_malformed_manifest_is_refused_naming_the_key(copy, change, message):
    edit_manifest(copy, change)
    with pytest.raises(InputError, match=message):
        load_ensemble(copy)
