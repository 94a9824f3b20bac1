"""Platforms, versions and sharing the machine (issue 18): the Python floor, extras that cannot install
both ONNX Runtime builds, the provider a session really runs on, and thread settings from the CPUs
this process may use."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from insarcast.errors import InputError, MissingDependencyError

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_requires_python_is_the_true_floor_and_the_readme_says_it():
    # tomllib (training/params.py) is 3.11+, and so are zarr 3 and the floors the lowest-deps check proves.
    assert _pyproject()["project"]["requires-python"] == ">=3.11"
    assert "Python 3.11" in (ROOT / "README.md").read_text()


def test_no_extra_pairs_the_train_extra_with_both_onnxruntime_builds():
    extras = _pyproject()["project"]["optional-dependencies"]

    def dists(name):
        return {re.split(r"[<>=\[ ]", req, maxsplit=1)[0].lower() for req in extras[name]}

    assert "onnxruntime" not in dists("train") and "onnxruntime-gpu" not in dists("train")
    assert "onnxruntime-gpu" in dists("gpu") and "onnxruntime" not in dists("gpu")
    assert "onnxruntime" in dists("udf")


def test_both_onnxruntime_builds_installed_are_refused_with_the_fix(monkeypatch):
    from importlib import metadata

    from insarcast.udf import ensemble

    monkeypatch.setattr(metadata, "version", lambda dist: {"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.20.1"}[dist])
    with pytest.raises(MissingDependencyError, match=r"pip uninstall -y onnxruntime onnxruntime-gpu && pip install "
                                                     r"onnxruntime-gpu==1\.20\.1"):
        ensemble._ort()


def test_the_probe_reports_the_provider_a_session_really_runs_on():
    pytest.importorskip("onnxruntime")
    from insarcast.udf.probe import main, require_provider, session_providers

    assert session_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert require_provider("CPUExecutionProvider") == ["CPUExecutionProvider"]
    assert main(["CPUExecutionProvider"]) == 0


def test_cuda_listed_but_not_started_fails_the_probe_and_an_explicit_request(monkeypatch, capsys):
    """onnxruntime-gpu lists CUDA where it cannot start it; the session then runs on the CPU. Simulated
    here: onnxruntime lists CUDA, the sessions asked for it run on the CPU."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from insarcast.udf.probe import main

    real = onnxruntime.InferenceSession

    class CpuOnly(real):
        def __init__(self, data, sess_options=None, providers=None):
            super().__init__(data, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(onnxruntime, "InferenceSession", CpuOnly)
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert main(["CUDAExecutionProvider"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CUDAExecutionProvider was asked for" in err and "CPUExecutionProvider" in err


def test_an_explicit_cuda_request_not_obtained_is_an_input_error(ensemble_dir, monkeypatch):
    onnxruntime = pytest.importorskip("onnxruntime")
    from insarcast.udf import ensemble as module
    from insarcast.udf.run import DEVICES

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    real = onnxruntime.InferenceSession

    class CpuOnly(real):
        def __init__(self, data, sess_options=None, providers=None):
            super().__init__(data, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(onnxruntime, "InferenceSession", CpuOnly)
    with pytest.raises(InputError, match="CUDAExecutionProvider was asked for but onnxruntime could not start"):
        module.load_ensemble(ensemble_dir, providers=DEVICES["cuda"], cache=False)
    with pytest.warns(RuntimeWarning, match="could not start"):          # the default only warns
        ens = module.load_ensemble(ensemble_dir, cache=False)
    assert ens.active_providers == ["CPUExecutionProvider"]


def test_cuda_sessions_preload_the_pip_cuda_libraries_first(ensemble_dir, monkeypatch):
    """The cuda-libs extra's CUDA runtime and cuDNN wheels are found only through onnxruntime.preload_dlls:
    called before every session that asks for CUDA (here listed but not started), never for the CPU."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from insarcast.udf import ensemble as module
    from insarcast.udf.probe import session_providers

    calls = []
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda *a, **k: calls.append("preload"), raising=False)
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    real = onnxruntime.InferenceSession

    class Recording(real):
        def __init__(self, data, sess_options=None, providers=None):
            calls.append(tuple(providers))
            super().__init__(data, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(onnxruntime, "InferenceSession", Recording)
    module.load_ensemble(ensemble_dir, providers=["CPUExecutionProvider"], cache=False)
    assert "preload" not in calls
    with pytest.warns(RuntimeWarning, match="could not start"):
        module.load_ensemble(ensemble_dir, cache=False)
    cuda = ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert calls[calls.index(cuda) - 1] == "preload" and calls.count("preload") == calls.count(cuda)
    calls.clear()
    assert session_providers(list(cuda)) == ["CPUExecutionProvider"] and calls == ["preload", cuda]
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda *a, **k: (_ for _ in ()).throw(OSError("no cudnn")))
    assert session_providers(list(cuda)) == ["CPUExecutionProvider"]     # a failed preload is not an error


@pytest.fixture
def ensemble_dir(tmp_path):
    pytest.importorskip("onnx")
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_udf_ensemble_forecast import write_linear_ensemble
    finally:
        sys.path.remove(str(ROOT / "tests"))
    return write_linear_ensemble(tmp_path / "ens")


# --- sharing the machine -------------------------------------------------------------------------------------

def test_cgroup_quota_caps_the_usable_cpus(tmp_path, monkeypatch):
    from insarcast import cpus

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpus.cgroup_quota(tmp_path) == 1.5
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert cpus.usable_cpus(root=tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpus.cgroup_quota(tmp_path) is None and cpus.usable_cpus(root=tmp_path) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert cpus.usable_cpus(root=tmp_path) == 1


def test_a_busy_machine_gets_the_passive_wait_policy_and_onnxruntime_does_not_spin(monkeypatch):
    from insarcast import cpus

    for name in ("INSARCAST_WAIT", "INSARCAST_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cpus, "usable_cpus", lambda **_: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    idle = cpus.thread_settings()
    assert (idle.threads, idle.wait_policy) == (2, "active") and cpus.allow_spinning()
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    busy = cpus.thread_settings()
    assert (busy.threads, busy.wait_policy) == (2, "passive") and not cpus.allow_spinning()
    assert busy.to_dict()["usable_cpus"] == 2 and "load 2.00" in busy.reason
    assert cpus.thread_settings(processes=2).threads == 1
    monkeypatch.setenv("INSARCAST_WAIT", "active")
    assert cpus.thread_settings().wait_policy == "active"


def test_sessions_on_a_busy_machine_turn_spinning_off(ensemble_dir, monkeypatch):
    onnxruntime = pytest.importorskip("onnxruntime")
    from insarcast.udf import ensemble as module

    entries = []
    real = onnxruntime.SessionOptions

    class Recording(real):
        def add_session_config_entry(self, key, value):
            entries.append((key, value))
            return super().add_session_config_entry(key, value)

    monkeypatch.setattr(onnxruntime, "SessionOptions", Recording)
    monkeypatch.setattr(module, "allow_spinning", lambda: False)
    module.load_ensemble(ensemble_dir, providers=["CPUExecutionProvider"], cache=False)
    assert ("session.intra_op.allow_spinning", "0") in entries


def test_openmp_settings_are_set_before_torch_and_keep_the_users(monkeypatch):
    code = ("import os; from insarcast import cpus\n"
            "cpus.apply_openmp(cpus.ThreadSettings(2, 2, 3.0, 'passive', 'busy'))\n"
            "print(os.environ['OMP_WAIT_POLICY'], os.environ['OMP_NUM_THREADS'])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["PASSIVE", "2"]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["ACTIVE", "2"]


def test_the_products_record_the_providers_and_thread_settings(tiny_cube, ensemble_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("distributed")
    import xarray as xr

    from insarcast.udf.run import forecast_cube

    out = forecast_cube(tiny_cube, ensemble_dir, tmp_path / "p.zarr", workers=1, device="cpu")
    attrs = xr.open_zarr(out).attrs
    assert attrs["onnxruntime_providers"] == "CPUExecutionProvider" and attrs["members_zero_output"] == 0
    assert attrs["onnxruntime_intra_op_threads"] == 1 and attrs["dask_workers"] == 1
    assert attrs["usable_cpus"] >= 1 and attrs["wait_policy"].split()[0] in ("active", "passive")
    with pytest.raises(InputError, match="expected one of auto, cpu, cuda"):
        forecast_cube(tiny_cube, ensemble_dir, tmp_path / "q.zarr", device="gpu")
