"""`insarcast train`: one model from a cube and a parameter file, in one process or under torchrun."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from insarcast.cube import reading
from insarcast.training.data import Windows
from insarcast.training.distributed import setup, teardown
from insarcast.training.models import ModelConfig
from insarcast.training.params import TrainConfig, configs, read_params
from insarcast.training.trainer import check_seed, resolve_device, train_run


def windows_for(cube: str | Path, model_cfg: ModelConfig, cfg: TrainConfig) -> Windows:
    """The windows of ``cube`` for the model's T, F, P and the training's stride and valid share."""
    return Windows.from_cube(cube, history=model_cfg.history, horizon=model_cfg.horizon, patch=model_cfg.patch,
                             stride=cfg.stride, min_valid=cfg.min_valid, inputs=model_cfg.inputs)


def train_cube(cube: str | Path, *, arch: str, params: str | Path = "manual", seed: int = 0,
               out: str | Path, overrides: dict[str, Any] | None = None, progress: bool = False,
               device: str | None = None) -> dict[str, Any]:
    """Train ``arch`` on ``cube`` and write the run folder ``out``; returns its metrics."""
    source = None if str(params) == "manual" else params
    seed = check_seed(seed)
    device = resolve_device(device)                  # all refused before the cube is read
    model_cfg, cfg = configs(read_params(params, arch=arch), arch=arch, overrides=overrides, source=source)
    with reading(cube):
        windows = windows_for(cube, model_cfg, cfg)
    ctx = setup(device=device)
    try:
        strategy = "manual" if str(params) == "manual" else Path(params).stem
        return train_run(windows, model_cfg, cfg, seed=seed, out=Path(out), strategy=strategy,
                         progress=progress, ctx=ctx, extra={"params": str(params)})
    finally:
        teardown()
