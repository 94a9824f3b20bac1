"""Hyperparameters: the training settings, and reading a parameter file (manual or the user's).

A parameter file is TOML or JSON with a ``model`` table (fields of :class:`ModelConfig`) and a
``train`` table (fields of :class:`TrainConfig`). The packaged ``manual.toml`` holds one such pair per
architecture, under the architecture's name.
"""

from __future__ import annotations

import json
import tomllib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

from insarcast.errors import InputError
from insarcast.training.models import ARCHS, ModelConfig, checked


_POSITIVE_INT = (int, "an integer > 0", lambda v: v > 0)
_POSITIVE = (float, "a finite number > 0", lambda v: v > 0)
_SHARE = (float, "a share in [0, 1]", lambda v: 0.0 <= v <= 1.0)
_COUNT = (int, "0 (all) or a positive count", lambda v: v >= 0)

# Each setting's type, what is expected of it and the check (insarcast.training.models.checked).
TRAIN_RULES: dict[str, tuple[type, str, Callable[[Any], bool]]] = {
    "lr": _POSITIVE, "weight_decay": (float, "a finite number >= 0", lambda v: v >= 0),
    "batch_size": _POSITIVE_INT, "max_epochs": _POSITIVE_INT, "patience": _POSITIVE_INT,
    "warmup": _SHARE, "min_lr_ratio": _SHARE, "clip": _POSITIVE, "stride": _POSITIVE_INT,
    "min_valid": (float, "a share in (0, 1]", lambda v: 0.0 < v <= 1.0),
    "train_samples": _COUNT, "eval_samples": _COUNT, "test_samples": _COUNT,
}


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Samples are (anchor epoch, patch) windows."""

    lr: float = 1e-3                 # AdamW peak learning rate
    weight_decay: float = 1e-4
    batch_size: int = 32             # global batch; each of N ranks takes batch_size / N
    max_epochs: int = 40
    patience: int = 6                # early stopping: epochs without a better validation loss
    warmup: float = 0.05             # share of the steps with a linear warm-up, then cosine decay
    min_lr_ratio: float = 0.02       # the cosine ends at lr * min_lr_ratio
    clip: float = 1.0                # gradient norm clipping
    stride: int = 16                 # patch stride in cells
    min_valid: float = 0.5           # least share of valid pixels in a patch
    train_samples: int = 4096        # windows drawn per epoch (0: all of them)
    eval_samples: int = 0            # validation windows, evenly spaced (0: all of them)
    test_samples: int = 0            # test windows scored, evenly spaced (0: all of them, the paper's way)

    def __post_init__(self) -> None:
        for name, (kind, expected, ok) in TRAIN_RULES.items():
            object.__setattr__(self, name, checked(getattr(self, name), kind=kind, expected=expected, ok=ok,
                                                   field=f"train.{name}"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def manual_params() -> dict[str, Any]:
    """The packaged manual configurations, keyed by architecture."""
    text = resources.files("insarcast.training").joinpath("manual.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def read_params(spec: str | Path, *, arch: str) -> dict[str, Any]:
    """``manual`` or a TOML/JSON file -> {"model": {...}, "train": {...}} for ``arch``."""
    if arch not in ARCHS:
        raise InputError(f"expected one of {', '.join(ARCHS)}, got {arch!r}", field="--arch")
    if str(spec) == "manual":
        return manual_params()[arch]
    path = Path(spec)
    kind = "JSON" if path.suffix == ".json" else "TOML"
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except FileNotFoundError as exc:
        raise InputError("no such parameter file", path=path) from exc
    except IsADirectoryError as exc:
        raise InputError("expected a parameter file, got a folder", path=path) from exc
    except OSError as exc:
        raise InputError(f"cannot read the parameter file: {exc.strerror or exc}", path=path) from exc
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid {kind}: {exc}", path=path) from exc
    if isinstance(data, dict) and arch in data:      # a file of several architectures, like manual.toml
        data = data[arch]
    return _tables(data, path=path, kind=kind)


def _tables(data: Any, *, path: Path, kind: str) -> dict[str, Any]:
    """``data`` if it is a mapping of at most a ``model`` and a ``train`` table of settings."""
    if not isinstance(data, dict):
        raise InputError(f"expected a {'JSON object' if kind == 'JSON' else 'table'} with 'model' and "
                         f"'train' tables, got {type(data).__name__} {data!r:.60}", path=path)
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise InputError("expected only 'model' and 'train' tables", path=path, field=unknown[0])
    for name, table in data.items():
        if not isinstance(table, dict):
            raise InputError(f"expected a table of settings, got {table!r:.60}", path=path, field=name)
    return data


def configs(params: dict[str, Any], *, arch: str, overrides: dict[str, Any] | None = None,
            source: str | Path | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Typed configs from a params mapping; ``overrides`` maps "model.width" / "train.lr" to values.

    A refused setting names ``source`` (the parameter file) unless it came from ``overrides``.
    """
    model = dict(params.get("model", {}))
    train = dict(params.get("train", {}))
    _refuse_arch(model.get("arch", arch), arch=arch, path=source)
    for key, value in (overrides or {}).items():
        table, _, name = key.partition(".")
        if table not in ("model", "train") or not name:
            raise InputError(f"expected model.NAME or train.NAME, got {key!r}", field="--set")
        if key == "model.arch":
            _refuse_arch(value, arch=arch, path=None)
        (model if table == "model" else train)[name] = value
    with _naming(source, overridden=set(overrides or ())):
        model_cfg = ModelConfig.from_dict({**model, "arch": arch})
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(train) - known)
        if unknown:
            raise InputError(f"unknown training setting {unknown[0]!r}", field=f"train.{unknown[0]}")
        return model_cfg, TrainConfig(**train)


def _refuse_arch(value: Any, *, arch: str, path: str | Path | None) -> None:
    """The architecture is the --arch option's: a different ``model.arch`` is refused, not ignored."""
    if value != arch:
        raise InputError(f"the architecture is set by the --arch option (here {arch!r}), not by model.arch; "
                         f"got {value!r}", path=path, field="model.arch")


@contextmanager
def _naming(source: str | Path | None, *, overridden: set[str]) -> Iterator[None]:
    """Add the parameter file to a refusal of a setting that came from it (not from an override)."""
    try:
        yield
    except InputError as exc:
        if source is None or exc.path is not None or exc.field in overridden:
            raise
        raise InputError(exc.message, path=source, line=exc.line, field=exc.field) from exc


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=3e-4"`` -> ("train.lr", 0.0003): the value is read as TOML (numbers, strings, booleans)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InputError(f"expected KEY=VALUE, got {text!r}", field="--set")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value                      # a bare word such as skip
    return key.strip(), parsed


