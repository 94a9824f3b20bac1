"""The search on a real PostgreSQL server (``--storage postgresql://...``, README "The TPE search"):
two tune processes filling one study, a tune killed with SIGKILL and resumed, and the heartbeat
marking the killed trial FAIL. The server is started by the test (pgserver, a PostgreSQL build on
PyPI, in the dev extra); without it the tests skip, saying why."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("torch")

pytestmark = pytest.mark.slow                        # each runs tune processes for 20-60 s


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A PostgreSQL server for this module; yields a function making a fresh database's URL."""
    try:
        import pgserver
        import psycopg  # noqa: F401 - SQLAlchemy's postgresql+psycopg driver
    except ImportError as err:
        pytest.skip(f"no PostgreSQL server to start: {err.name} is not installed (pip install 'insarcast[dev]')")
    try:
        server = pgserver.get_server(str(tmp_path_factory.mktemp("pgdata")), cleanup_mode="stop")
    except Exception as err:                         # noqa: BLE001 - any failure to start is a skip reason
        pytest.skip(f"the PostgreSQL server (pgserver) could not start here: {err}")
    uri = server.get_uri()                           # postgresql://postgres:@/postgres?host=SOCKET_DIR
    count = [0]

    def database() -> str:
        count[0] += 1
        name = f"tune{count[0]}"
        server.psql(f"CREATE DATABASE {name};")
        base, query = uri.split("?", 1)
        return "postgresql+psycopg://" + base.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}?{query}"

    yield database
    server.cleanup()


def _args(cube, out, storage, *extra):
    return [sys.executable, "-m", "insarcast", "tune", "--cube", str(cube), "--preset", "tiny", "--arch", "cnn-lstm",
            "--runs", "1", "--no-manual", "--out", str(out), "--storage", storage, "-q",
            "--set", "train.train_samples=32", *extra]


def test_two_tune_processes_share_one_study_on_postgresql(tiny_cube, tmp_path, postgres):
    storage = postgres()
    args = _args(tiny_cube, tmp_path / "t", storage, "--trials", "6", "--set", "train.max_epochs=2")
    workers = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=400)
        assert worker.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="cnn-lstm-seed0", storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 6 <= len(complete) <= 7                     # at most one extra: both may start the last one
    assert "RUNNING" not in {t.state.name for t in study.trials}
    spans = sorted((t.datetime_start, t.datetime_complete) for t in complete)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "no two trials ran at the same time"
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == len(complete)
    assert not (tmp_path / "t" / "optuna.db").exists(), "the study must live in PostgreSQL, not in SQLite"


def test_a_killed_tune_resumes_and_the_heartbeat_fails_its_running_trial(tiny_cube, tmp_path, postgres):
    storage = postgres()
    out = tmp_path / "t"
    args = _args(tiny_cube, out, storage, "--trials", "5", "--heartbeat", "1", "--set", "train.max_epochs=1")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline, seen, fresh = time.time() + 240, set(), False
    while time.time() < deadline:                    # kill just after a trial starts, so it is mid-way
        time.sleep(0.3)
        try:
            trials = optuna.load_study(study_name="cnn-lstm-seed0", storage=storage).trials
        except Exception:                            # noqa: BLE001 - the study is not created yet
            continue
        now = {t.number for t in trials if t.state.name == "RUNNING"}
        fresh = bool(now - seen)
        seen |= now
        if sum(t.state.name == "COMPLETE" for t in trials) >= 2 and fresh:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # what the SIGKILL left behind, read after it landed (a trial seen running may have finished before)
    running = [t.number for t in optuna.load_study(study_name="cnn-lstm-seed0", storage=storage).trials
               if t.state.name == "RUNNING"]
    assert running, "the kill left no trial running"
    time.sleep(2.5)                                   # past the grace period (2 x heartbeat) of the killed trial
    done = subprocess.run(args, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    study = optuna.load_study(study_name="cnn-lstm-seed0", storage=storage)
    states = {t.number: t.state.name for t in study.trials}
    assert list(states.values()).count("COMPLETE") == 5 and "RUNNING" not in states.values()
    killed = [n for n in running if states[n] != "COMPLETE"]
    assert killed and all(states[n] == "FAIL" for n in killed), states   # the heartbeat's recovery
    seed_dir = out / "cnn-lstm" / "tpe" / "seed_0"
    for number in killed:
        assert not (seed_dir / f"trial_{number:03d}" / "model.pt").exists()
    assert json.loads((seed_dir / "metrics.json").read_text())["trials_complete"] == 5
