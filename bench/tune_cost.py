"""What the paper's protocol costs: measured on this machine, projected onto one GPU.

    python bench/tune_cost.py [--cube CUBE] [--preset paper] [--threads 2] [--out bench/results/tune_cost.json]

The count of work is the one ``insarcast tune --estimate`` prints (:func:`insarcast.training.tune._estimate`):
per architecture, (trials + manual) x runs models, each trained for ``max_epochs`` epochs of
``train_samples`` windows plus the validation and test passes; early stopping only shortens it.

1. This machine: a training step and a forward pass of each manual configuration, timed on the CPU
   (the faster of two tries), times that count.
2. One GPU, without one here: the same count, with each step and forward pass given the larger of
   two lower bounds that hold for eager PyTorch on any GPU:

   - arithmetic: the floating-point operations of the step, counted with
     ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls and attention; the
     elementwise work is not counted), at ``--gpu-tflops`` (default 67, the FP32 peak of an H100 /
     H200 SXM) times ``--gpu-efficiency`` (default 0.3: small 32-channel convolutions and short
     sequences keep cuDNN far from peak);
   - launches: the ATen ops of the step that compute (counted with the profiler on the CPU, views and
     allocations left out, the optimiser and clipping in their multi-tensor ``foreach`` form as on
     CUDA; each is at least one CUDA kernel) at ``--launch-us`` microseconds each (default 8:
     eager dispatch plus launch).

   The projection is a floor for a single GPU and says so; the ratio to the CPU figure is the point.
   Run ``insarcast tune --preset paper --estimate`` on a GPU machine for a measured figure.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

import torch
from common import demo_cube, write_json

HERE = Path(__file__).resolve().parent
# ATen ops that only make views, allocate or read metadata: no kernel launch
NO_KERNEL = {f"aten::{name}" for name in (
    "view", "reshape", "_reshape_alias", "_unsafe_view", "t", "transpose", "permute", "expand", "as_strided",
    "unsqueeze", "squeeze", "select", "slice", "narrow", "split", "split_with_sizes", "chunk", "unbind",
    "detach", "alias", "lift_fresh", "empty", "empty_like", "empty_strided", "resize_", "size", "stride",
    "numel", "dim", "is_nonzero", "item", "_local_scalar_dense", "result_type", "contiguous", "view_as",
    "expand_as", "flatten", "unflatten", "movedim", "numpy_T", "_has_compatible_shallow_copy_type",
    "set_", "requires_grad_", "zero_grad")}


def _batch(windows, cfg):
    import numpy as np

    rows = windows.samples("train")[: cfg.batch_size]
    return [torch.from_numpy(np.stack(v)) for v in zip(*(windows.sample(a, (r, c))[:3] for a, r, c in rows))]


def counted(model_cfg, cfg, windows) -> dict:
    """FLOPs and ATen kernels of one training step and one forward pass (CPU, one batch)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from insarcast.training.loss import masked_mse
    from insarcast.training.models import build_model, count_parameters

    x, y, m = _batch(windows, cfg)
    model = build_model(model_cfg)
    # foreach: the multi-tensor optimiser and clipping that PyTorch uses on CUDA by default
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, foreach=True)

    def step():
        loss = masked_mse(model(x), y, m)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip, foreach=True)
        optimiser.step()

    def forward():
        with torch.no_grad():
            model(x)

    step()                                         # AdamW's state exists from here on
    out = {"parameters": count_parameters(model), "batch": int(x.shape[0])}
    for name, run in (("step", step), ("forward", forward)):
        with FlopCounterMode(display=False) as flops:
            run()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        # leaf ATen ops (no ATen op below them) that compute: what launches kernels on a GPU
        kernels = sum(1 for e in prof.events() if e.name.startswith("aten::") and e.name not in NO_KERNEL
                      and not any(child.name.startswith("aten::") for child in e.cpu_children))
        out[f"{name}_flops"] = int(flops.get_total_flops())
        out[f"{name}_kernels"] = int(kernels)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cube", type=Path, default=None, help="cube (default: the demo cube, built if missing)")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--gpu-tflops", type=float, default=67.0)
    parser.add_argument("--gpu-efficiency", type=float, default=0.3)
    parser.add_argument("--launch-us", type=float, default=8.0)
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "tune_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from insarcast.training.models import ARCHS
    from insarcast.training.trainer import windows_used
    from insarcast.training.tune import Tuner, _time_one_step

    cube = args.cube or demo_cube(args.data)
    started = time.perf_counter()
    tuner = Tuner(cube, args.data / "tune-cost-unused", preset=args.preset)
    rate = args.gpu_tflops * 1e12 * args.gpu_efficiency
    rows, cpu_total, gpu_total = [], 0.0, 0.0
    for arch in ARCHS:
        model_cfg, cfg = tuner.base(arch)
        windows = tuner.windows(model_cfg, cfg)
        step_s, forward_s = _time_one_step(model_cfg, cfg, windows, device="cpu")
        c = counted(model_cfg, cfg, windows)
        gpu_step = max(c["step_flops"] / rate, c["step_kernels"] * args.launch_us * 1e-6)
        gpu_forward = max(c["forward_flops"] / rate, c["forward_kernels"] * args.launch_us * 1e-6)
        steps = math.ceil(windows_used(cfg.train_samples, len(windows.samples("train"))) / cfg.batch_size)
        val = math.ceil(windows_used(cfg.eval_samples, len(windows.samples("val"))) / cfg.batch_size)
        test = math.ceil(windows_used(cfg.test_samples, len(windows.samples("test"))) / cfg.batch_size)
        models = (tuner.trials + int(tuner.manual)) * tuner.runs

        def cost(step: float, forward: float) -> float:
            return models * (cfg.max_epochs * (steps * step + val * forward) + test * forward)

        cpu, gpu = cost(step_s, forward_s), cost(gpu_step, gpu_forward)
        cpu_total += cpu
        gpu_total += gpu
        rows.append({"arch": arch, "models": models, "epochs": cfg.max_epochs, "steps_per_epoch": steps,
                     "val_batches": val, "test_batches": test, **c, "cpu_step_s": round(step_s, 4),
                     "cpu_forward_s": round(forward_s, 4), "gpu_step_s": gpu_step, "gpu_forward_s": gpu_forward,
                     "gpu_bound": "launches" if gpu_step == c["step_kernels"] * args.launch_us * 1e-6 else "flops",
                     "cpu_hours": round(cpu / 3600, 1), "gpu_hours": round(gpu / 3600, 2)})
    result = {"cube": str(cube), "preset": args.preset, "trials": tuner.trials, "runs": tuner.runs,
              "cpu": {"threads": args.threads, "processor": platform.processor() or platform.machine()},
              "gpu_model": {"tflops": args.gpu_tflops, "efficiency": args.gpu_efficiency,
                            "launch_us": args.launch_us, "kind": "projected floor, not measured"},
              "rows": rows, "cpu_hours": round(cpu_total / 3600, 1), "gpu_hours": round(gpu_total / 3600, 2),
              "seconds": round(time.perf_counter() - started, 1)}
    write_json(args.out, result)

    print(f"{args.preset} preset on {cube.name}: {tuner.trials} trials (+ manual) x {tuner.runs} runs per architecture")
    print(f"{'arch':18s} {'models':>6s} {'steps/ep':>8s} {'GFLOP/step':>10s} {'kernels':>7s} {'CPU s/step':>10s} "
          f"{'GPU s/step':>10s} {'bound':>8s} {'CPU h':>8s} {'GPU h':>7s}")
    for r in rows:
        print(f"{r['arch']:18s} {r['models']:6d} {r['steps_per_epoch']:8d} {r['step_flops'] / 1e9:10.1f} "
              f"{r['step_kernels']:7d} {r['cpu_step_s']:10.3f} {r['gpu_step_s']:10.4f} {r['gpu_bound']:>8s} "
              f"{r['cpu_hours']:8.1f} {r['gpu_hours']:7.2f}")
    print(f"total: {result['cpu_hours']:.0f} h on this machine ({args.threads} threads), at least "
          f"{result['gpu_hours']:.1f} h on one GPU (projected: {args.gpu_tflops:g} TFLOPS x {args.gpu_efficiency:g}, "
          f"{args.launch_us:g} us per kernel; not measured)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
