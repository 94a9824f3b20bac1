"""Train one model: AdamW, warm-up and cosine decay, gradient clipping, early stopping, DDP-ready.

:func:`fit` trains on the training windows and keeps the weights of the best validation loss (the
masked MSE in normalised units, the objective of the search). :func:`evaluate` gives the test skill
in mm beside the baselines on the same windows and pixels. :func:`train_run` does both and writes a
run folder: model.pt (weights, config and normalisation), config.json, history.csv, metrics.json.

Deterministic for a seed: the weights start from ``torch.manual_seed(seed)``, every epoch draws its
windows from a generator seeded with (seed, epoch), and torch runs with deterministic algorithms.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from insarcast import __version__
from insarcast.baselines import BASELINES, forecasts as baseline_forecasts, reference_rule
from insarcast.errors import InputError
from insarcast.fsutil import strict_json
from insarcast.progress import bar
from insarcast.training.data import Windows, WindowDataset
from insarcast.training.distributed import Context, setup
from insarcast.training.loss import masked_mse
from insarcast.training.metrics import SkillSums, skill
from insarcast.training.models import Forecaster, ModelConfig, build_model, config_json, count_parameters, \
    save_model
from insarcast.training.params import TrainConfig


@dataclass
class FitResult:
    model: Forecaster
    best_val: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_second: float = 0.0


SEED_LIMIT = 2**32                  # numpy's legacy seeds; torch takes 64 bits


def check_seed(seed: Any, *, field: str = "--seed") -> int:
    """``seed`` if it is an integer in [0, 2**32), else an :class:`InputError` naming ``field``."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
        raise InputError(f"expected an integer in [0, {SEED_LIMIT - 1}], got {seed!r}", field=field)
    return int(seed)


def resolve_device(device: str | None) -> str | None:
    """``device`` checked against this machine: None (the default), ``cpu``, ``cuda`` (this process's GPU,
    LOCAL_RANK under torchrun), ``cuda:N`` or ``mps``; anything else is an :class:`InputError` naming
    --device and the devices there are."""
    if device is None:
        return None
    available = _devices()
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InputError(f"not a torch device: {device!r}; this machine has {', '.join(available)}",
                         field="--device") from exc
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    name = str(dev)
    if name not in available and not (dev.type == "cpu" and dev.index in (None, 0)):
        raise InputError(f"no device {device!r} on this machine; it has {', '.join(available)}",
                         field="--device")
    return "cpu" if dev.type == "cpu" else name


def _devices() -> list[str]:
    """The devices torch can use here: cpu, each CUDA GPU, and mps where there is one."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def seed_everything(seed: int) -> None:
    seed = check_seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _schedule(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warm = max(1, int(round(cfg.warmup * total_steps)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def _shard(rows: np.ndarray, ctx: Context) -> np.ndarray:
    """This rank's share of ``rows``: every world_size-th."""
    return rows[ctx.rank::ctx.world_size]


def validation_loss(model: torch.nn.Module, windows: Windows, rows: np.ndarray, ctx: Context, *,
                    batch_size: int) -> float:
    """Masked MSE (normalised) over ``rows``, summed across ranks: the same for every world size."""
    model.eval()
    sums = np.zeros(2)
    with torch.no_grad():
        for x, y, m in DataLoader(WindowDataset(windows, _shard(rows, ctx), cache=True), batch_size=batch_size):
            x, y, m = (a.to(ctx.device) for a in (x, y, m))
            keep = m.sum().item() * y.shape[1]
            sums += [masked_mse(model(x), y, m).item() * keep, keep]
    total = ctx.sum(sums)
    return float(total[0] / max(total[1], 1.0))


def fit(windows: Windows, model_cfg: ModelConfig, cfg: TrainConfig, *, seed: int, ctx: Context | None = None,
        progress: bool = False, on_epoch: Callable[[int, float], None] | None = None) -> FitResult:
    """Train from scratch; return the model at its best validation loss. ``on_epoch(epoch, val)`` may raise
    to stop (Optuna pruning)."""
    ctx = ctx or setup()
    seed_everything(seed)
    model = build_model(model_cfg).to(ctx.device)
    net = DistributedDataParallel(model) if ctx.distributed else model
    train = WindowDataset(windows, windows.samples("train"), cache=True)
    val_rows = windows.samples("val")
    per_rank_batch = max(1, math.ceil(cfg.batch_size / ctx.world_size))
    per_rank = len(train) // ctx.world_size
    if cfg.train_samples:
        per_rank = min(per_rank, math.ceil(cfg.train_samples / ctx.world_size))
    steps = max(1, math.ceil(per_rank / per_rank_batch))
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _schedule(cfg, steps * cfg.max_epochs))
    sampler = DistributedSampler(train, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed,
                                 drop_last=True)
    best_val, best_epoch, best_state, history = math.inf, -1, None, []
    started, seen = time.perf_counter(), 0
    val_subset = _even(val_rows, cfg.eval_samples) if cfg.eval_samples else val_rows
    if model_cfg.inputs != "paper":
        # The untrained residual model is its adaptive baseline (its last layer starts at zero): an
        # epoch is kept only if it beats that on validation, so training never returns a correction
        # that makes the baseline worse there (best_epoch -1: the baseline itself).
        best_val = validation_loss(model, windows, val_subset, ctx, batch_size=per_rank_batch)
        best_state = copy.deepcopy(model.state_dict())
    epochs = bar(range(cfg.max_epochs), enabled=progress and ctx.is_main, desc=model_cfg.arch, unit="epoch")
    for epoch in epochs:
        tick = time.perf_counter()
        sampler.set_epoch(epoch)
        indices = list(sampler)[:per_rank]
        net.train()
        losses = np.zeros(2)
        for x, y, m in DataLoader(Subset(train, indices), batch_size=per_rank_batch):
            x, y, m = (a.to(ctx.device) for a in (x, y, m))
            loss = masked_mse(net(x), y, m)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimiser.step()
            scheduler.step()
            losses += [loss.item() * len(x), len(x)]
        seen += len(indices) * ctx.world_size
        train_loss = ctx.sum(losses)
        val = validation_loss(model, windows, val_subset, ctx, batch_size=per_rank_batch)
        history.append({"epoch": epoch, "train_loss": float(train_loss[0] / max(train_loss[1], 1)),
                        "val_loss": val, "lr": optimiser.param_groups[0]["lr"],
                        "seconds": time.perf_counter() - tick})
        if not math.isfinite(val):
            raise FloatingPointError(f"validation loss is {val} at epoch {epoch}")
        if val < best_val:
            best_val, best_epoch, best_state = val, epoch, copy.deepcopy(model.state_dict())
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(val=f"{val:.4f}", best=f"{best_val:.4f}")
        if on_epoch is not None:
            on_epoch(epoch, val)
        if epoch - best_epoch >= cfg.patience:
            break
    seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    return FitResult(model.eval(), best_val, best_epoch, history, seconds, seen / max(seconds, 1e-9))


def windows_used(limit: int, available: int) -> int:
    """How many of ``available`` windows a ``*_samples`` setting takes: all for 0, else at most ``limit``."""
    return min(limit, available) if limit else available


def _even(rows: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` rows, evenly spaced."""
    if len(rows) <= limit:
        return rows
    return rows[np.linspace(0, len(rows) - 1, limit).round().astype(int)]


def evaluate(model: torch.nn.Module, windows: Windows, *, part: str = "test", ctx: Context | None = None,
             batch_size: int = 32, baselines: tuple[str, ...] = BASELINES, limit: int = 0) -> dict[str, Any]:
    """Skill in mm of the model and of each baseline on every window of ``part``, over the same pixels.

    A pixel of a window counts when it is learnable (valid, finite throughout) and every baseline has
    a finite forecast there, so the figures are comparable. ``limit`` > 0 scores that many windows,
    evenly spaced over the part's (anchor, patch) list, instead of all of them.
    """
    ctx = ctx or setup()
    norm = windows.norm
    every = windows.samples(part)
    rows = _shard(_even(every, limit) if limit else every, ctx)
    # The baselines and the pixel masks do not depend on the model: computed on the first call for
    # these windows, reused by every later run (each trial of a study evaluates the same windows).
    key = (part, ctx.rank, ctx.world_size, batch_size, tuple(baselines), limit)
    cached = windows.eval_cache.get(key)
    sums = {name: SkillSums(windows.horizon) for name in ("model", *baselines)}
    masks = []
    years, cache = windows.years, {}
    model.eval()
    p, f = windows.patch, windows.horizon
    with torch.no_grad():
        for i, start in enumerate(range(0, len(rows), batch_size)):
            batch = rows[start:start + batch_size]
            xs, _, ms, refs, observed = zip(*(windows.sample(a, (r, c), cache=True) for a, r, c in batch))
            pred = model(torch.from_numpy(np.stack(xs)).to(ctx.device)).cpu().numpy()
            pred_mm = pred * norm.target_std + norm.target_mean + np.stack(refs)
            obs_mm = np.stack(observed)
            if cached is not None:
                packed, shape = cached["masks"][i]
                sums["model"].add(pred_mm, obs_mm, np.unpackbits(packed, count=math.prod(shape)).reshape(shape)
                                  .astype(bool))
                continue
            mask = np.stack(ms).astype(bool)[:, None]
            cache = {a: cache[a] if a in cache else baseline_forecasts(        # every baseline at once,
                         baselines, windows.displacement, years, a, f, history=windows.history)  # per anchor
                     for a in sorted({int(a) for a, _, _ in batch})}
            base = {}
            for name in baselines:
                base[name] = np.stack([cache[int(a)][name][:, r:r + p, c:c + p] for a, r, c in batch])
                mask = mask & np.isfinite(base[name])
            mask = np.broadcast_to(mask, pred_mm.shape)
            masks.append((np.packbits(mask), mask.shape))
            sums["model"].add(pred_mm, obs_mm, mask)
            for name in baselines:
                sums[name].add(base[name], obs_mm, mask)
    if cached is None:
        windows.eval_cache[key] = {"masks": masks, "sums": {name: sums[name].sums.copy() for name in baselines}}
    else:
        for name in baselines:
            sums[name].sums = cached["sums"][name].copy()
    return {name: skill(ctx.sum(s.sums)) for name, s in sums.items()}


def _history_csv(history: list[dict[str, float]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def identical_across_ranks(model: torch.nn.Module, ctx: Context) -> bool:
    """Whether every rank holds bit-identical weights (max minus min of a checksum over ranks is 0)."""
    if not ctx.distributed:
        return True
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.state_dict().values()
                      if p.is_floating_point()])
    digest = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1, dtype=flat.dtype,
                                                            device=flat.device).sin()).sum()])
    low, high = digest.clone(), digest.clone()
    torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
    torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
    return bool(torch.equal(low, high))


def train_run(windows: Windows, model_cfg: ModelConfig, cfg: TrainConfig, *, seed: int, out: Path | None,
              strategy: str = "manual", progress: bool = False, ctx: Context | None = None,
              extra: dict[str, Any] | None = None, on_epoch: Callable[[int, float], None] | None = None,
              ) -> dict[str, Any]:
    """Fit, evaluate on the test windows, and (rank 0) write the run folder ``out``. Returns metrics."""
    ctx = ctx or setup()
    result = fit(windows, model_cfg, cfg, seed=seed, ctx=ctx, progress=progress, on_epoch=on_epoch)
    skill_by_name = evaluate(result.model, windows, ctx=ctx, batch_size=cfg.batch_size, limit=cfg.test_samples)
    same = identical_across_ranks(result.model, ctx)
    metrics = {
        "arch": model_cfg.arch, "strategy": strategy, "seed": seed, "val_loss": result.best_val,
        "best_epoch": result.best_epoch, "epochs": len(result.history), "world_size": ctx.world_size,
        "ranks_identical": same, "device": str(ctx.device), "seconds": result.seconds,
        "samples_per_second": result.samples_per_second, "n_parameters": count_parameters(result.model),
        "test": skill_by_name.pop("model"), "baselines": skill_by_name,
        "model": model_cfg.to_dict(), "train": cfg.to_dict(), "normalisation": windows.norm.to_dict(),
        "split": {k: list(getattr(windows.split, k)) for k in ("train", "val", "test")},
        "windows": {part: int(len(windows.samples(part))) for part in ("train", "val", "test")},
        "test_windows_scored": windows_used(cfg.test_samples, len(windows.samples("test"))),
        "epoch_days": windows.epoch_days, "grid": windows.grid, "reference_correction": windows.correction,
        "reference_rule": None if model_cfg.inputs == "paper" else reference_rule(),
        "cube": cube_record(windows.source), "insarcast_version": __version__,
        "torch_version": torch.__version__, **(extra or {}),
    }
    if out is not None and ctx.is_main:
        write_run(out, result, metrics)
    return metrics


def cube_record(source: str) -> str:
    """The cube as a run records it (metrics.json, ``cube``): its absolute path, symlinks resolved, so that
    `insarcast export` finds it from any working folder; "" for windows made from arrays."""
    return str(Path(source).resolve()) if source else ""


def write_run(out: Path, result: FitResult, metrics: dict[str, Any]) -> None:
    """model.pt, config.json, history.csv and metrics.json, all appearing together."""
    from insarcast.fsutil import staged

    out.mkdir(parents=True, exist_ok=True)
    with staged() as stage:
        save_model(result.model.to("cpu"), stage.path(out / "model.pt"),
                   extra={"normalisation": metrics["normalisation"], "train": metrics["train"],
                          "epoch_days": metrics["epoch_days"], "grid": metrics["grid"],
                          "seed": metrics["seed"]})
        stage.path(out / "config.json").write_text(config_json(result.model.cfg))
        stage.path(out / "history.csv").write_text(_history_csv(result.history))
        stage.path(out / "metrics.json").write_text(strict_json(metrics))
