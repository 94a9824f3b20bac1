"""TPE search (the paper's section 3.3 and 4.1): one Optuna study per architecture and run seed.

The sampler is the paper's: TPE with 20 random start-up trials, the best quarter of the observed
losses as the "good" set (gamma(n) = ceil(0.25 n)), multivariate, seeded by the run. The objective
trains a model with the trial's hyperparameters and returns its best validation loss (the masked
MSE of the normalised change). Beside every study the manual configuration is trained with the same
seed, so that `insarcast compare` can set 10 manual runs against 10 TPE runs.

Layout of the tune folder:

    optuna.db                                  SQLite storage (or any Optuna storage URL)
    ARCH/manual/seed_S/                        the manual run: model.pt, metrics.json, ...
    ARCH/tpe/seed_S/metrics.json               the study's best trial, as a run
    ARCH/tpe/seed_S/trials.csv                 the optimisation history (number, state, value)
    ARCH/tpe/seed_S/trial_NNN/                 every trial's metrics; model.pt kept for the best

Checkpoints: a trial keeps model.pt while it is among the ``keep`` best COMPLETE trials of its
architecture over all seeds (default 10, what `insarcast export` takes) or is the best trial of its own
run, so the folder stays small. A trial that Optuna records as failed (a killed process's trial, marked
FAIL by the heartbeat) loses its model.pt and never takes a place among the best.

Optuna versions: ``gamma`` of TPESampler is deprecated since optuna 4.9 (a FutureWarning) and is to be
removed in 6.0; the paper's gamma(n) = ceil(0.25 n) needs it, so pyproject pins optuna>=4.0,<6 and
:func:`make_sampler` silences that one warning (and optuna 4.x's ExperimentalWarning for
``multivariate`` and ``constant_liar``): they say nothing a user can act on.

Scaling out: several `insarcast tune` processes on one storage URL share the studies (trial-parallel;
each study stops at the asked number of complete trials, or at most one extra per extra worker
when they finish together); under torchrun every trial trains data-parallel (rank 0 samples and
broadcasts the hyperparameters). A killed tune resumes: its stale RUNNING trial is marked FAIL
by Optuna's heartbeat (once ``2 x heartbeat`` seconds have passed), and the study goes on until
exactly ``trials`` trials are COMPLETE. The sampler draws trial k's randomness from (seed, k), so a
resumed study does not repeat the start-up trials it already made, and workers sharing a study draw
different start-up points (``constant_liar`` keeps their TPE proposals apart as well). Ctrl-C or SIGTERM
stops a tune at once while it trains and otherwise once Optuna has finished writing to the storage
(:class:`_StorageGuard`): the trial that was training is recorded as FAIL and loses its checkpoint, and a rerun
resumes at once (no heartbeat to wait for).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import signal
import time
import warnings
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import torch
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled  # no public name (optuna 5.1)
from optuna.trial import TrialState

from insarcast.cpus import thread_settings
from insarcast.cube import open_cube, reading
from insarcast.errors import InputError
from insarcast.fsutil import clean_stale_tree, strict_json
from insarcast.progress import bar
from insarcast.training.data import Windows
from insarcast.training.distributed import Context, setup, teardown
from insarcast.training.models import ARCHS, ModelConfig
from insarcast.training.params import TrainConfig, configs, manual_params
from insarcast.training.runs import windows_for
from insarcast.training.trainer import check_seed, resolve_device, train_run, windows_used

STARTUP_TRIALS = 20
GAMMA = 0.25
# What a trial may raise and still be recorded as FAIL without stopping the study: a non-finite loss
# (the trainer raises FloatingPointError) or running out of memory. torch.OutOfMemoryError is torch
# 2.5's name for the CUDA error; earlier releases (torch>=2.2 is allowed) only have torch.cuda's.
TRIAL_ERRORS = (FloatingPointError, MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))


def paper_gamma(n: int) -> int:
    """Size of the "good" set among n observed trials: the best quarter, ceil(0.25 n)."""
    return math.ceil(GAMMA * n)


class PaperTPESampler(optuna.samplers.BaseSampler):
    """The paper's TPE with its own seed for every trial: a fresh ``TPESampler(seed=s)`` per trial, with
    ``s`` drawn from (seed, trial number), to which every sampling call of that trial is delegated.

    A plain seeded TPESampler draws from one stream per process: a resumed study (a new process)
    would replay the start-up draws of trials 0, 1, ... and two workers on one study would draw the
    same points. Seeding per trial number keeps a sequential study exactly reproducible and makes
    every trial's draws its own; TPE itself keeps no state between trials (it reads the study), so a
    sampler per trial is the same algorithm. Only Optuna's public sampler API is used.
    """

    def __init__(self, *, seed: int, **tpe_kwargs: Any):
        self.seed = int(seed)
        self.tpe_kwargs = dict(tpe_kwargs)
        self._samplers: dict[int, optuna.samplers.TPESampler] = {}

    def sampler_for(self, number: int) -> optuna.samplers.TPESampler:
        """The TPE sampler of trial ``number`` (made once per trial and process)."""
        if number not in self._samplers:
            seed = int(np.random.SeedSequence([self.seed, int(number)]).generate_state(1)[0])
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*`gamma`", category=FutureWarning)
                warnings.filterwarnings("ignore", message=r".*``(multivariate|constant_liar)``",
                                        category=optuna.exceptions.ExperimentalWarning)
                self._samplers[number] = optuna.samplers.TPESampler(seed=seed, **self.tpe_kwargs)
        return self._samplers[number]

    def infer_relative_search_space(self, study, trial):
        return self.sampler_for(trial.number).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler_for(trial.number).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler_for(trial.number).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # Optuna finds a stale trial by its last heartbeat, and records the first one only once the
        # objective starts, after the (TPE) sampling of ``ask``; a trial killed in between would stay
        # RUNNING forever. Recording one here, right after the trial is created, closes that window.
        storage = study._storage
        if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
            storage.record_heartbeat(trial._trial_id)
        self.sampler_for(trial.number).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler_for(trial.number).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)

    def reseed_rng(self) -> None:  # each trial is seeded from (seed, number): nothing to reseed
        pass


def make_sampler(seed: int, *, startup: int = STARTUP_TRIALS) -> PaperTPESampler:
    """The paper's TPE: ``startup`` random trials, gamma(n) = ceil(0.25 n), multivariate, seeded.

    ``constant_liar`` is set (optuna 5's default, not 4's) so that the sampler is the same across the
    pinned range and workers sharing a study do not propose the same point; in a sequential study it
    changes nothing. The deprecation of ``gamma`` (optuna >= 4.9) is silenced here and only here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*`gamma`", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*``(multivariate|constant_liar)``",
                                category=optuna.exceptions.ExperimentalWarning)
        return PaperTPESampler(n_startup_trials=startup, gamma=paper_gamma, multivariate=True,
                               constant_liar=True, seed=seed)


@dataclass(frozen=True)
class Preset:
    """How big a search is: trials per study, start-up trials, runs, and settings forced on every model."""

    trials: int
    startup: int
    runs: int
    overrides: tuple[tuple[str, Any], ...] = ()
    small_space: bool = False

    @property
    def fixed(self) -> frozenset[str]:
        """The settings the preset forces ("model.readout", ...)."""
        return frozenset(key for key, _ in self.overrides)


PRESETS = {
    # The paper's protocol: 50 trials (20 random), 10 runs, the manual windows (T 12, F 6, P 32).
    "paper": Preset(trials=50, startup=20, runs=10),
    # The demo: the same procedure, cut to run on 2 CPU cores in about ten minutes (90 models; with
    # 6 trials, 126 models, the tune stage took 482 s and the demo 12 min 9 s on 2 idle cores, and
    # with the residual inputs most models keep their baseline, so the trials bought no skill);
    # its test metrics score 512 evenly spaced test windows instead of all of them.
    # The demo and tiny presets correct the adaptive baseline plus its synthetic-truth correction
    # (model.inputs = residual-corrected, see
    # insarcast.udf.inputs) with the skip readout that keeps each pixel's own information; the paper
    # preset keeps the paper's inputs, target and readouts.
    "demo": Preset(trials=4, startup=2, runs=3, small_space=True, overrides=(
        ("model.inputs", "residual-corrected"), ("model.readout", "skip"), ("model.history", 12), ("model.horizon", 6), ("model.patch", 16), ("train.stride", 16),
        ("train.max_epochs", 4), ("train.patience", 2), ("train.train_samples", 256),
        ("train.eval_samples", 256), ("train.test_samples", 512))),
    # Tests and CI: seconds per study.
    "tiny": Preset(trials=3, startup=2, runs=2, small_space=True, overrides=(
        ("model.inputs", "residual-corrected"), ("model.readout", "skip"), ("model.history", 8), ("model.horizon", 6), ("model.patch", 16), ("train.stride", 8),
        ("train.max_epochs", 2), ("train.patience", 1), ("train.train_samples", 64),
        ("train.eval_samples", 64), ("train.test_samples", 128))),
}


def suggest(trial: optuna.Trial, arch: str, base_model: ModelConfig, base_train: TrainConfig, *,
            small: bool = False, fixed: frozenset[str] = frozenset()) -> tuple[ModelConfig, TrainConfig]:
    """The search space of ``arch``: optimiser, widths, depths, heads, dropout, kernel, readout.

    The window (T, F, P) and the patch sampling stay those of the base configuration: all members of
    an ensemble must share them (the ONNX contract). ``small`` narrows widths for the tiny presets.
    """
    encoder, temporal = arch.split("-")
    widths = (8, 16) if small else (16, 32, 48, 64)
    d_models = (16, 32) if small else (32, 64, 96, 128)
    model: dict[str, Any] = {
        "width": trial.suggest_categorical("width", widths),
        "depth": trial.suggest_int("depth", 1, 2 if small else 4),
        "d_model": trial.suggest_categorical("d_model", d_models),
        "temporal_layers": trial.suggest_int("temporal_layers", 1, 1 if small else 3),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        # A setting the preset fixes (e.g. the demo's skip readout) is not searched.
        **({} if "model.readout" in fixed else {"readout": trial.suggest_categorical("readout", ["pooled", "skip"])}),
    }
    if encoder in ("cnn", "resnet"):
        model["kernel"] = trial.suggest_categorical("kernel", [3, 5])
    else:
        model["graph_radius"] = trial.suggest_categorical("graph_radius", [1.0, 1.5, 2.3])
    if temporal == "transformer":
        model["heads"] = trial.suggest_categorical("heads", [2, 4])
    train = {
        "lr": trial.suggest_float("lr", 1e-4, 5e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
    }
    return replace(base_model, **model), replace(base_train, **train)


def _trials_csv(study: optuna.Study, arch: str, seed: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["arch", "seed", "number", "state", "value", "lr", "readout"])
    for t in sorted(study.trials, key=lambda t: t.number):
        writer.writerow([arch, seed, t.number, t.state.name, "" if t.value is None else repr(t.value),
                         t.params.get("lr", ""), t.params.get("readout", "")])
    return out.getvalue()


def _write_text(path: Path, text: str) -> None:
    from insarcast.fsutil import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class _InterruptedTrialLines(logging.Filter):
    """Drops Optuna's two lines about a trial that Ctrl-C or SIGTERM stopped ("Trial N failed with
    parameters ... because of the following error: KeyboardInterrupt()", with its traceback, and "Trial N failed
    with value None"): the trial is recorded as FAIL all the same, and the CLI says in one line that the command
    was interrupted and how to resume. Lines about other trials pass."""

    def __init__(self, numbers: set[int]) -> None:
        super().__init__()
        self.numbers = numbers

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Trial {n} failed ") for n in self.numbers)


@contextlib.contextmanager
def _quiet_interrupted_trials(numbers: set[int]):
    """:class:`_InterruptedTrialLines` on the logger of Optuna's optimisation loop while the block runs."""
    logger = logging.getLogger("optuna.study._optimize")
    quiet = _InterruptedTrialLines(numbers)
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


class _StorageGuard:
    """Ctrl-C and SIGTERM never cut a conversation with the study's storage.

    A KeyboardInterrupt raised inside SQLAlchemy can leave the interrupted connection holding SQLite's write
    lock: Optuna's own record of the trial as FAIL then met "database is locked" and the trial stayed RUNNING
    (and the command ended on a traceback). While :meth:`installed`, a signal is acted on at once only inside
    :meth:`interruptible` (training a model: no storage is touched there but by Optuna's heartbeat thread,
    which signals never stop); elsewhere it waits for :meth:`checkpoint` (between trials) or the next
    interruptible block. A second signal while one waits is acted on at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.previous: dict[int, Callable] = {}
        self.pending: tuple[int, Any] | None = None
        self.open = True

    def _handle(self, signum: int, frame: Any) -> None:
        if self.open or self.pending is not None:
            self.pending = None
            self.previous[signum](signum, frame)
        else:
            self.pending = (signum, frame)

    def checkpoint(self) -> None:
        """Act on a signal that waited (raise what its handler raises)."""
        if self.pending is not None:
            signum, frame = self.pending
            self.pending = None
            self.previous[signum](signum, frame)

    @contextlib.contextmanager
    def installed(self):
        """Guard the block: signals wait outside :meth:`interruptible` (handlers that are Python functions only:
        an ignored signal stays ignored; nothing is installed outside the main thread)."""
        for sig in self.SIGNALS:
            handler = signal.getsignal(sig)
            if callable(handler):
                try:
                    signal.signal(sig, self._handle)
                except ValueError:                     # not the main thread: signals never arrive here
                    break
                self.previous[sig] = handler
        self.open = False
        try:
            yield self
            self.checkpoint()
        finally:
            self.open = True
            for sig, handler in self.previous.items():
                signal.signal(sig, handler)
            self.previous.clear()

    @contextlib.contextmanager
    def interruptible(self):
        """A block that a signal may stop at once (a model's training)."""
        was, self.open = self.open, True
        try:
            self.checkpoint()
            yield
        finally:
            self.open = was


def _completed(study: optuna.Study) -> int:
    return sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def prune_checkpoints(out: Path, arch: str, *, keep: int,
                      states: dict[tuple[int, int], TrialState] | None = None,
                      current: tuple[int, int] | None = None) -> None:
    """Delete model.pt of the trials of ``arch`` outside the ``keep`` best and the best of each seed.

    Trials are ranked by validation loss over all seeds of ``arch``. ``states`` maps (seed, trial
    number) to the trial's state in the storage; with it only COMPLETE trials and ``current`` (the
    trial just trained, not yet told) are ranked, FAIL trials lose their model.pt (a killed process
    may have written one before its trial was told) and trials running elsewhere are left alone.
    Without it every trial folder is ranked.
    """
    scored, failed = [], []
    for metrics in (out / arch / "tpe").glob("seed_*/trial_*/metrics.json"):
        try:
            doc = json.loads(metrics.read_text())
            entry = (float(doc["val_loss"]), int(doc["seed"]), int(doc["trial"]), metrics.parent)
        except (OSError, ValueError, KeyError, TypeError):
            continue                                   # being written by another worker
        if states is not None and entry[1:3] != current:
            state = states.get(entry[1:3])
            if state == TrialState.FAIL:
                failed.append(entry[3])
            if state != TrialState.COMPLETE:
                continue
        scored.append(entry)
    scored.sort(key=lambda s: s[:3])
    kept = {s[3] for s in scored[:keep]}
    best_of_seed: dict[int, Path] = {}
    for _, seed, _, folder in scored:                  # sorted: the first of a seed is its best
        best_of_seed.setdefault(seed, folder)
    kept |= set(best_of_seed.values())
    for folder in [s[3] for s in scored if s[3] not in kept] + failed:
        (folder / "model.pt").unlink(missing_ok=True)


class Tuner:
    """Runs the studies of one tune folder."""

    def __init__(self, cube: str | Path, out: str | Path, *, storage: str | None = None, preset: str = "paper",
                 trials: int | None = None, runs: int | None = None, seed0: int = 0, keep: int = 10,
                 manual: bool = True, overrides: dict[str, Any] | None = None, progress: bool = False,
                 heartbeat: int = 60, device: str | None = None):
        if preset not in PRESETS:
            raise InputError(f"expected one of {', '.join(PRESETS)}, got {preset!r}", field="preset")
        self.preset = PRESETS[preset]
        self.cube, self.out = Path(cube), Path(out)
        for option, value in (("--trials", trials), ("--runs", runs), ("--keep", keep), ("--heartbeat", heartbeat)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"must be a positive integer, got {value!r}", field=option)
        self.trials = self.preset.trials if trials is None else trials
        self.runs = self.preset.runs if runs is None else runs
        self.startup = min(self.preset.startup, self.trials)
        self.seeds = [check_seed(seed0 + i, field="--seed") for i in range(self.runs)]
        self.keep, self.manual, self.progress = keep, manual, progress
        self.overrides = {**dict(self.preset.overrides), **(overrides or {})}
        self.storage_url = storage or f"sqlite:///{(self.out / 'optuna.db').resolve()}"
        self.heartbeat = heartbeat
        self.device = resolve_device(device)
        # Threads from the CPUs this process may use; the wait policy for a busy machine (insarcast.cpus;
        # OMP_WAIT_POLICY itself must be set before torch is imported: the CLI does). Recorded in every
        # run's metrics.json ("threads").
        self.sharing = thread_settings()
        self._windows: dict[tuple, Windows] = {}
        self._guard = _StorageGuard()                # signals wait while the storage is written (run)
        # Optuna's per-trial INFO lines would flood the terminal between the progress bars: shown
        # only when the insarcast logger asks for debug lines (``--verbose``).
        if not logging.getLogger("insarcast").isEnabledFor(logging.DEBUG):
            optuna.logging.set_verbosity(optuna.logging.WARNING)

    def check_cube(self, identity: dict[str, Any]) -> None:
        """Refuse to resume a tune folder made on another cube (:data:`CUBE_RECORD`)."""
        record = self.out / CUBE_RECORD
        if not record.is_file():
            return
        try:
            recorded = json.loads(record.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable record of the tuned cube ({exc}); delete it to resume on this cube",
                             path=record) from None
        if recorded != identity:
            def text(d: Any) -> str:
                if not isinstance(d, dict):
                    return repr(d)
                sizes = d.get("sizes") or {}
                epochs = d.get("epochs") or ["?", "?"]
                return f"{sizes.get('t')} epochs {epochs[0]}..{epochs[-1]}, {sizes.get('y')} x {sizes.get('x')} cells"
            raise InputError(f"this tune folder was made on another cube ({text(recorded)}; {self.cube} has "
                             f"{text(identity)}): its trials would mix two cubes; tune into a new --out",
                             path=self.out, field="--out")

    def check_storage(self) -> None:
        """Open the storage before any training: a bad ``--storage`` fails at once, naming the option."""
        if self.storage_url.startswith("sqlite:///") and not self.storage_url.startswith(f"sqlite:///{self.out.resolve()}"):
            folder = Path(self.storage_url.removeprefix("sqlite:///")).parent
            if not folder.is_dir():
                raise InputError(f"the database's folder {folder} does not exist", field="--storage")
        if not self.storage_url.startswith(("sqlite", "postgresql", "mysql", "memory")):
            raise InputError(f"expected an sqlite:///, postgresql:// or mysql:// database URL, got "
                             f"{self.storage_url!r}", field="--storage")

    def storage(self, *, attempts: int = 5) -> str | optuna.storages.BaseStorage:
        """The Optuna storage. Workers that start together race to create the schema of a new
        database (one of them fails with "table ... already exists", or on PostgreSQL with
        'type "studydirection" already exists'); the loser retries and finds the schema made, so any
        number of ``tune`` processes may start on one fresh storage. Any other error of the database
        is raised at once."""
        if not self.storage_url.startswith(("sqlite", "postgresql", "mysql")):
            return self.storage_url if self.storage_url != "memory" else optuna.storages.InMemoryStorage()
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

        def open_storage() -> optuna.storages.RDBStorage:
            with warnings.catch_warnings():                # heartbeat_interval is "experimental"
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(self.storage_url, heartbeat_interval=self.heartbeat,
                                                  grace_period=2 * self.heartbeat)

        for attempt in range(attempts - 1):
            try:
                return open_storage()
            except (OperationalError, IntegrityError):
                time.sleep(0.2 * (attempt + 1))
            except ProgrammingError as err:              # a concurrent CREATE TYPE on PostgreSQL
                if "already exists" not in str(err):
                    raise
                time.sleep(0.2 * (attempt + 1))
        return open_storage()

    def trial_states(self, storage: optuna.storages.BaseStorage, arch: str) -> dict[tuple[int, int], TrialState]:
        """(seed, trial number) -> state for the studies of ``arch`` that have a folder here."""
        states = {}
        for folder in (self.out / arch / "tpe").glob("seed_*"):
            try:
                seed = int(folder.name.removeprefix("seed_"))
                study = optuna.load_study(study_name=f"{arch}-seed{seed}", storage=storage,
                                          sampler=optuna.samplers.RandomSampler())
            except (ValueError, KeyError):
                continue                               # not a study of this storage
            for t in study.get_trials(deepcopy=False):
                states[(seed, t.number)] = t.state
        return states

    def base(self, arch: str) -> tuple[ModelConfig, TrainConfig]:
        return configs(manual_params()[arch], arch=arch, overrides=self.overrides)

    def windows(self, model_cfg: ModelConfig, cfg: TrainConfig) -> Windows:
        key = (model_cfg.history, model_cfg.horizon, model_cfg.patch, cfg.stride, cfg.min_valid, model_cfg.inputs)
        if key not in self._windows:
            with self._guard.interruptible(), reading(self.cube):
                self._windows[key] = windows_for(self.cube, model_cfg, cfg)
        return self._windows[key]

    def run_manual(self, arch: str, seed: int, ctx: Context) -> None:
        folder = self.out / arch / "manual" / f"seed_{seed}"
        if (folder / "metrics.json").exists():
            return
        model_cfg, cfg = self.base(arch)
        windows = self.windows(model_cfg, cfg)
        with self._guard.interruptible():
            train_run(windows, model_cfg, cfg, seed=seed, out=folder, strategy="manual", ctx=ctx,
                      extra={"kind": "run", "threads": self.sharing.to_dict()})

    def run_study(self, arch: str, seed: int, ctx: Context) -> optuna.Study | None:
        """Optimise until the study has ``trials`` COMPLETE trials; rank > 0 only follows rank 0."""
        base_model, base_train = self.base(arch)
        windows = self.windows(base_model, base_train)
        folder = self.out / arch / "tpe" / f"seed_{seed}"

        def train(params: dict[str, Any] | None, number: int) -> float:
            trial = optuna.trial.FixedTrial(params)
            model_cfg, cfg = suggest(trial, arch, base_model, base_train, small=self.preset.small_space,
                    fixed=self.preset.fixed)
            with self._guard.interruptible():
                metrics = train_run(windows, model_cfg, cfg, seed=seed, out=folder / f"trial_{number:03d}",
                                    strategy="tpe", ctx=ctx,
                                    extra={"kind": "trial", "trial": number, "study": f"{arch}-seed{seed}",
                                           "params": params, "threads": self.sharing.to_dict()})
            return metrics["val_loss"]

        if not ctx.is_main:                          # follow rank 0's trials until it says stop
            while (message := ctx.broadcast(None)) is not None:
                try:
                    train(*message)
                except TRIAL_ERRORS:
                    pass
            return None

        storage = self.storage()
        study = optuna.create_study(study_name=f"{arch}-seed{seed}", storage=storage, direction="minimize",
                                    sampler=make_sampler(seed, startup=self.startup), load_if_exists=True)

        interrupted: set[int] = set()

        def objective(trial: optuna.Trial) -> float:
            suggest(trial, arch, base_model, base_train, small=self.preset.small_space,
                    fixed=self.preset.fixed)   # records the params
            message = (dict(trial.params), trial.number)
            ctx.broadcast(message)
            try:
                value = train(*message)
                prune_checkpoints(self.out, arch, keep=self.keep, states=self.trial_states(storage, arch),
                                  current=(seed, trial.number))
            except KeyboardInterrupt:
                # Optuna records the trial as FAIL and raises this on: a checkpoint it wrote is not a finished
                # run (export would take it), as for the FAIL trial of a killed process (prune_checkpoints)
                interrupted.add(trial.number)
                (folder / f"trial_{trial.number:03d}" / "model.pt").unlink(missing_ok=True)
                raise
            return value

        stop = optuna.study.MaxTrialsCallback(self.trials, states=(TrialState.COMPLETE,))
        attempts = 0
        with _quiet_interrupted_trials(interrupted):
            while _completed(study) < self.trials and attempts < 3 * self.trials:
                missing = self.trials - _completed(study)
                attempts += missing
                study.optimize(objective, n_trials=missing, callbacks=[stop, lambda *_: self._guard.checkpoint()],
                               gc_after_trial=True, catch=TRIAL_ERRORS)
        ctx.broadcast(None)
        prune_checkpoints(self.out, arch, keep=self.keep, states=self.trial_states(storage, arch))
        self.write_summary(study, arch, seed)
        return study

    def write_summary(self, study: optuna.Study, arch: str, seed: int) -> None:
        folder = self.out / arch / "tpe" / f"seed_{seed}"
        _write_text(folder / "trials.csv", _trials_csv(study, arch, seed))
        complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not complete:
            return
        best = min(complete, key=lambda t: (t.value, t.number))
        metrics = json.loads((folder / f"trial_{best.number:03d}" / "metrics.json").read_text())
        metrics.update(kind="run", best_trial=best.number, trials_complete=len(complete))
        _write_text(folder / "metrics.json", strict_json(metrics))

    def estimate_seconds(self, archs: tuple[str, ...] = ARCHS, *,
                         time_step: Callable[[ModelConfig, TrainConfig, Windows], tuple[float, float]] | None = None,
                         ) -> float:
        """At most how many seconds :meth:`run` takes on this machine for ``archs``: every model
        ((trials + manual) x runs) trained for max_epochs, each epoch its training steps and validation
        batches, a step and a forward pass timed once per architecture on this tune's device."""
        return _estimate(self, archs, time_step)

    def run(self, archs: tuple[str, ...] = ARCHS) -> dict[str, Any]:
        identity = cube_identity(open_cube(self.cube))   # a bad cube is refused before the folder exists
        self.check_cube(identity)
        self.check_storage()
        created = not self.out.exists()
        ctx = setup(device=self.device)
        torch.set_num_threads(self.sharing.threads)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            if ctx.is_main:
                clean_stale_tree(self.out)               # what a killed tune left in its trial folders
                if not (self.out / CUBE_RECORD).exists():
                    _write_text(self.out / CUBE_RECORD, strict_json(identity, indent=1))
            started = time.perf_counter()
            jobs = [(arch, seed) for arch in archs for seed in self.seeds]
            with self._guard.installed():
                for arch, seed in bar(jobs, enabled=self.progress and ctx.is_main, desc="studies", unit="study"):
                    if self.manual:
                        self.run_manual(arch, seed, ctx)
                    self.run_study(arch, seed, ctx)
            return {"studies": len(jobs), "seconds": time.perf_counter() - started, "out": str(self.out)}
        except BaseException:
            if created:                                  # a failed first run leaves no tune folder, or
                _remove_empty_folders(self.out)          # keeps the record of the cube of what it finished
                if _only_the_cube_record(self.out):
                    (self.out / CUBE_RECORD).unlink()
                    _remove_empty_folders(self.out)
            raise
        finally:
            teardown()


CUBE_RECORD = "cube.json"
"""The tune folder's record of the cube it was tuned on (:func:`cube_identity`): a rerun resumes it only on
that cube, so the trials, the TPE history and export's ranking never mix two cubes."""


def cube_identity(ds) -> dict[str, Any]:
    """What tells two cubes apart for a tune: the sizes, the first and last epochs and the grid's first cell and
    spacing (not the path: a moved cube resumes its tune)."""
    t, x, y = ds["t"].values, ds["x"].values, ds["y"].values
    return {"sizes": {"t": int(t.size), "y": int(y.size), "x": int(x.size)},
            "epochs": [str(np.datetime64(t[0], "D")), str(np.datetime64(t[-1], "D"))] if t.size else [],
            "origin": [float(x[0]), float(y[0])] if x.size and y.size else [],
            "spacing": float(abs(x[1] - x[0])) if x.size > 1 else None}


def _only_the_cube_record(root: Path) -> bool:
    """Whether ``root`` holds :data:`CUBE_RECORD` and nothing else (its empty folders removed): a first run that
    failed before anything was finished. Once a run or the study's storage is there, the record stays, so that a
    rerun resumes only on that cube."""
    return root.is_dir() and [p.name for p in root.iterdir()] == [CUBE_RECORD]


def _remove_empty_folders(root: Path) -> None:
    """Remove ``root`` and the folders below it that hold no file (never a file)."""
    import os

    if not root.is_dir():
        return
    for folder, _, _ in sorted(os.walk(root), key=lambda w: -len(Path(w[0]).parts)):
        try:
            Path(folder).rmdir()
        except OSError:
            pass


def estimate_seconds(cube: str | Path, *, preset: str = "paper", archs: tuple[str, ...] = ARCHS,
                     trials: int | None = None, runs: int | None = None, manual: bool = True,
                     overrides: dict[str, Any] | None = None, device: str | None = None,
                     time_step: Callable[[ModelConfig, TrainConfig, Windows], tuple[float, float]] | None = None,
                     ) -> float:
    """The cost of a search on this machine, see :meth:`Tuner.estimate_seconds`."""
    tuner = Tuner(cube, "/nonexistent", preset=preset, trials=trials, runs=runs, manual=manual,
                  overrides=overrides, device=device)
    return tuner.estimate_seconds(archs, time_step=time_step)


def _estimate(tuner: Tuner, archs: tuple[str, ...],
              time_step: Callable[[ModelConfig, TrainConfig, Windows], tuple[float, float]] | None) -> float:
    """models x (max_epochs x (training steps x step + validation batches x forward) + test batches x
    forward), with models = (trials + manual) x runs per architecture and the step and forward pass
    timed once per architecture on the tune's device. Early stopping makes the real search shorter;
    the baselines, computed once per window set, and data loading are not counted."""
    total = 0.0
    device = tuner.device or ("cuda" if torch.cuda.is_available() else "cpu")
    for arch in archs:
        model_cfg, cfg = tuner.base(arch)
        windows = tuner.windows(model_cfg, cfg)
        step, forward = (time_step or partial(_time_one_step, device=device))(model_cfg, cfg, windows)
        steps = math.ceil(windows_used(cfg.train_samples, len(windows.samples("train"))) / cfg.batch_size)
        val_batches = math.ceil(windows_used(cfg.eval_samples, len(windows.samples("val"))) / cfg.batch_size)
        test_batches = math.ceil(windows_used(cfg.test_samples, len(windows.samples("test"))) / cfg.batch_size)
        models = (tuner.trials + int(tuner.manual)) * tuner.runs
        total += models * (cfg.max_epochs * (steps * step + val_batches * forward) + test_batches * forward)
    return total


def _time_one_step(model_cfg: ModelConfig, cfg: TrainConfig, windows: Windows, *,
                   device: str | torch.device = "cpu") -> tuple[float, float]:
    """Seconds of one training step (forward, masked loss, backward, clipping, AdamW) and of one
    forward pass, on one batch of ``cfg.batch_size`` training windows, the faster of two tries."""
    from insarcast.training.loss import masked_mse
    from insarcast.training.models import build_model

    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = windows.samples("train")[: cfg.batch_size]
    x, y, m = (torch.from_numpy(np.stack(v)).to(device)
               for v in zip(*(windows.sample(a, (r, c))[:3] for a, r, c in rows)))
    model = build_model(model_cfg).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    steps, forwards = [], []
    for _ in range(2):
        sync()
        tick = time.perf_counter()
        loss = masked_mse(model(x), y, m)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimiser.step()
        sync()
        steps.append(time.perf_counter() - tick)
        with torch.no_grad():
            tick = time.perf_counter()
            model(x)
            sync()
            forwards.append(time.perf_counter() - tick)
    return min(steps), min(forwards)
