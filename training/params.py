"""Hyperparameters: the training settings, and reading a parameter file (manual or the user's).

A parameter file is TOML or JSON with a ``model`` table (fields of :class:`ModelConfig`) and a
``train`` table (fields of :class:`TrainConfig`). The packaged ``manual.toml`` holds one such pair per
architecture, under the architecture's name.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from insarcast.errors import InputError
from insarcast.training.models import ARCHS, ModelConfig


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
        positive = ("lr", "batch_size", "max_epochs", "patience", "stride", "clip")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InputError(f"expected a positive number, got {getattr(self, name)!r}", field=f"train.{name}")
        for name in ("train_samples", "eval_samples", "test_samples"):
            if getattr(self, name) < 0:
                raise InputError(f"expected 0 (all) or a positive count, got {getattr(self, name)!r}",
                                 field=f"train.{name}")
        if not 0.0 < self.min_valid <= 1.0:
            raise InputError(f"expected (0, 1], got {self.min_valid!r}", field="train.min_valid")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def manual_params() -> dict[str, Any]:
    """The packaged manual configurations, keyed by architecture."""
    text = resources.files("insarcast.training").joinpath("manual.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def read_params(spec: str | Path, *, arch: str) -> dict[str, Any]:
    """``manual`` or a TOML/JSON file -> {"model": {...}, "train": {...}} for ``arch``."""
    if arch not in ARCHS:
        raise InputError(f"expected one of {', '.join(ARCHS)}, got {arch!r}", field="arch")
    if str(spec) == "manual":
        return manual_params()[arch]
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError as exc:
        raise InputError("no such parameter file", path=path) from exc
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}", path=path) from exc
    if arch in data:                       # a file of several architectures, like manual.toml
        data = data[arch]
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise InputError("expected only 'model' and 'train' tables", path=path, field=unknown[0])
    return data


def configs(params: dict[str, Any], *, arch: str, overrides: dict[str, Any] | None = None,
            source: str | Path | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Typed configs from a params mapping; ``overrides`` maps "model.width" / "train.lr" to values."""
    model = dict(params.get("model", {}))
    train = dict(params.get("train", {}))
    for key, value in (overrides or {}).items():
        table, _, name = key.partition(".")
        if table not in ("model", "train") or not name:
            raise InputError(f"expected model.NAME or train.NAME, got {key!r}", field="set")
        (model if table == "model" else train)[name] = value
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(train) - known)
    if unknown:
        raise InputError(f"unknown training setting {unknown[0]!r}", path=source, field=f"train.{unknown[0]}")
    return ModelConfig.from_dict({**model, "arch": arch}, source=source), TrainConfig(**train)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=3e-4"`` -> ("train.lr", 0.0003): the value is read as TOML (numbers, strings, booleans)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InputError(f"expected KEY=VALUE, got {text!r}", field="set")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value                      # a bare word such as skip
    return key.strip(), parsed


