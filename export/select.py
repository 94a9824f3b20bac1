"""Find the finished runs under a tune folder and pick the best ones of an architecture.

A finished run is a folder, at any depth under the tune folder, holding ``metrics.json`` with a
``model.pt`` beside it (the trainer writes them together, metrics.json last). Hidden folders
(staging ones such as ``.tmp-…``) are skipped. ``metrics.json`` holds at least ``arch``,
``strategy`` ("tpe" or "manual"), ``seed`` (the run seed), ``val_loss``, ``model`` (ModelConfig),
``train`` (TrainConfig), ``normalisation``, ``epoch_days`` and ``grid``; ``trial`` (the Optuna
trial number) may be absent for manual runs. ``cube`` names the cube the run was trained on, where export
reads its parity windows (:func:`recorded_cube`).

Selection: the runs of ``arch`` whose strategy is "tpe" (the searched trials; with
``include_manual`` runs of every strategy, manual ones included), with a finite validation loss,
sorted by validation loss, then run seed, then trial (absent counts as -1), then folder; the first
``top``. Fewer than ``top`` is a warning (:class:`ExportWarning`), or an error with ``strict``.
All selected runs must share T, F, P, C, the normalisation, the grid and the epoch spacing.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from insarcast.errors import InputError

REQUIRED = {"arch": str, "strategy": str, "seed": int, "val_loss": (int, float), "model": dict, "train": dict,
            "normalisation": dict, "epoch_days": (int, float), "grid": dict}
SHAPE_KEYS = ("history", "horizon", "patch", "channels")
SEARCHED = "tpe"


class ExportWarning(UserWarning):
    """Something the export did that the user should know about (fewer members, a fallback exporter)."""


@dataclass(frozen=True)
class Run:
    """One finished run folder and its metrics."""

    folder: Path
    source: str                   # the folder relative to the tune folder (POSIX)
    metrics: dict[str, Any]

    @property
    def arch(self) -> str:
        return self.metrics["arch"]

    @property
    def strategy(self) -> str:
        return self.metrics["strategy"]

    @property
    def seed(self) -> int:
        return int(self.metrics["seed"])

    @property
    def trial(self) -> int | None:
        trial = self.metrics.get("trial")
        return None if trial is None else int(trial)

    @property
    def val_loss(self) -> float:
        return float(self.metrics["val_loss"])

    @property
    def model_pt(self) -> Path:
        return self.folder / "model.pt"

    @property
    def metrics_path(self) -> Path:
        return self.folder / "metrics.json"

    def describe(self) -> str:
        trial = "" if self.trial is None else f"trial {self.trial}, "
        return f"run {self.source} ({self.strategy}, {trial}seed {self.seed}, val_loss {self.val_loss:.6g})"

    def sort_key(self) -> tuple:
        return (self.val_loss, self.seed, -1 if self.trial is None else self.trial, self.source)


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the run's metrics: {err}", path=path) from err
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=path)
    if not isinstance(data.get("arch"), str):
        raise InputError("missing or not a string", path=path, field="arch")
    return data


def _check_metrics(data: dict[str, Any], path: Path) -> None:
    for key, kind in REQUIRED.items():
        if key not in data:
            raise InputError("the run's metrics lack this key", path=path, field=key)
        value = data[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(f"expected {getattr(kind, '__name__', 'a number')}, got {value!r}", path=path, field=key)
    trial = data.get("trial")
    if trial is not None and (not isinstance(trial, int) or isinstance(trial, bool)):
        raise InputError(f"expected an integer trial number or null, got {trial!r}", path=path, field="trial")
    for key in SHAPE_KEYS:
        if not isinstance(data["model"].get(key), int):
            raise InputError(f"expected an integer, got {data['model'].get(key)!r}", path=path, field=f"model.{key}")


def find_runs(tune_dir: str | Path) -> list[Run]:
    """Every finished run (metrics.json with model.pt beside it) under ``tune_dir``, in path order."""
    root = Path(tune_dir)
    if not root.is_dir():
        raise InputError("no such tune folder", path=root)
    from insarcast.fsutil import inside

    runs = []
    for metrics in sorted(root.rglob("metrics.json")):
        rel = metrics.parent.relative_to(root)
        model = metrics.parent / "model.pt"
        if any(part.startswith(".") for part in rel.parts) or not os.path.lexists(model):
            continue
        for path in (metrics, model):             # a symlink leaving the tune folder is never read
            inside(path.absolute(), root, source=path, what=path.name)
        if not model.is_file():
            raise InputError("expected the run's weights file, found a folder or something else", path=model)
        runs.append(Run(metrics.parent, rel.as_posix() or ".", _read_metrics(metrics)))
    return runs


def recorded_cube(run: Run, tune_dir: str | Path) -> Path:
    """The cube ``run`` was trained on, as its metrics.json records it (``cube``), to read export's parity
    windows from.

    Runs record the cube's absolute path, symlinks resolved: it is used while it still is that (no symlink or
    '..' on the way now). Older runs recorded the path as given, relative to the folder the tune ran in: it is
    tried relative to the current folder, then its trailing parts below the tune folder's parent
    (``demo/cube.zarr`` beside ``demo/tune``), as the report finds the tune folder beside the compare folder.
    That path is read from a file: the first that exists must resolve inside the folder it is taken in, symlinks
    followed (:func:`insarcast.fsutil.inside`), or it is refused. A cube found nowhere, or refused, is an
    :class:`InputError` naming the run's metrics.json and suggesting ``--cube``."""
    recorded = run.metrics.get("cube")
    if not isinstance(recorded, str) or not recorded:
        raise InputError("the run records no cube; pass the cube for the parity check (insarcast export --cube, "
                         "parity_windows=)", path=run.metrics_path, field="cube")
    path = Path(recorded)
    found = _absolute_cube(run, path) if path.is_absolute() else _relative_cube(run, path, tune_dir)
    if found is None:
        looked = "" if path.is_absolute() else \
            f" (looked in the current folder and below {Path(os.path.abspath(tune_dir)).parent})"
        raise InputError(f"the run records the cube {recorded!r}, which does not exist here{looked}; pass the cube "
                         "for the parity check (insarcast export --cube, parity_windows=)",
                         path=run.metrics_path, field="cube")
    return found


def _absolute_cube(run: Run, path: Path) -> Path | None:
    if not os.path.lexists(path):
        return None
    if path.resolve() != path:
        raise InputError(f"the recorded cube {str(path)!r} now leads elsewhere (a symlink or '..' on the way), "
                         "refused; pass the cube with --cube", path=run.metrics_path, field="cube")
    return path


def _relative_cube(run: Run, path: Path, tune_dir: str | Path) -> Path | None:
    from insarcast.fsutil import inside, tails

    base = Path(os.path.abspath(tune_dir)).parent
    for folder, tail in [(Path.cwd(), path), *((base, tail) for tail in tails(path))]:
        if os.path.lexists(folder / tail):
            try:
                return inside(tail, folder, source=run.metrics_path, field="cube", what="recorded cube")
            except InputError as err:
                raise InputError(f"{err.message}; pass the cube with --cube", path=run.metrics_path,
                                 field="cube") from None
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def check_compatible(runs: list[Run]) -> None:
    """All runs share T, F, P, C, normalisation, grid, epoch spacing and the reference's correction and rule
    with the first (best) one."""
    if not runs:
        return
    best = runs[0]
    # Runs written before the input formulations existed have the paper's inputs.
    fields = [(f"model.{k}", lambda r, k=k: r.metrics["model"][k]) for k in SHAPE_KEYS]
    fields.append(("model.inputs", lambda r: r.metrics["model"].get("inputs", "paper")))
    fields += [(k, lambda r, k=k: r.metrics[k]) for k in ("normalisation", "grid", "epoch_days")]
    fields.append(("reference_correction", lambda r: r.metrics.get("reference_correction")))
    fields.append(("reference_rule", lambda r: r.metrics.get("reference_rule")))
    for run in runs[1:]:
        for name, get in fields:
            if not _same(get(run), get(best)):
                raise InputError(f"{run.describe()} has {name} = {get(run)!r} but the best member, {best.describe()}, "
                                 f"has {get(best)!r}; all members of an ensemble must share T, F, P, C, the "
                                 "normalisation, the grid, the epoch spacing and the reference's correction and rule",
                                 path=run.metrics_path, field=name)


def select_runs(tune_dir: str | Path, *, arch: str, top: int = 10, strict: bool = False,
                include_manual: bool = False) -> list[Run]:
    """The ``top`` best finished runs of ``arch`` under ``tune_dir`` (see the module docstring)."""
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise InputError(f"expected a positive number of members, got {top!r}", field="top")
    candidates = []
    for run in find_runs(tune_dir):
        if run.arch != arch:
            continue
        _check_metrics(run.metrics, run.metrics_path)
        if not include_manual and run.strategy != SEARCHED:
            continue
        if not math.isfinite(run.val_loss):
            warnings.warn(f"skipping {run.describe()}: its validation loss is not finite", ExportWarning,
                          stacklevel=2)
            continue
        candidates.append(run)
    candidates.sort(key=Run.sort_key)
    which = "finished runs" if include_manual else f"finished {SEARCHED} trials"
    if not candidates:
        hint = "" if include_manual else " (manual runs count only with include_manual / --include-manual)"
        raise InputError(f"no {which} of {arch} under this folder{hint}", path=tune_dir, field="arch")
    if len(candidates) < top:
        message = f"only {len(candidates)} {which} of {arch}, fewer than the {top} asked for"
        if strict:
            raise InputError(message + " (strict)", path=tune_dir, field="top")
        warnings.warn(message + f"; exporting {len(candidates)}", ExportWarning, stacklevel=2)
    chosen = candidates[:top]
    check_compatible(chosen)
    return chosen
