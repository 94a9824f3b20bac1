"""Training speed of the six architectures at the demo preset, and the GCN's graph back-ends.

    python bench/train.py [--cube CUBE] [--preset demo|paper|tiny] [--batches 6] [--threads 2]
                          [--device cpu|cuda] [--out bench/results/train.json]

Uses the manual configuration of each architecture with the settings of the `insarcast tune` preset
(demo: T = 12, F = 6, P = 16, 384 windows an epoch; paper: the manual windows, T = 12, F = 6, P = 32,
4096 windows an epoch) on the demo cube (built into bench/results/data when --cube is not given).
For each it times --batches training steps (forward, masked loss, backward, clipping, AdamW) after
one warm-up step, and reports samples per second and the seconds one epoch of the preset
(train_samples windows) takes. The GCN rows are repeated for each graph back-end: grid (the default:
a depthwise convolution with the 0/1 kernel of the graph's edge offsets, exportable to ONNX), the
plain torch sparse path (one CSR matmul) and torch-geometric GCNConv message passing; the three give
the same numbers (tests check it), and gcn_ratios says how much faster each is than torch-geometric.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from insarcast.training.loss import masked_mse
from insarcast.training.models import ARCHS, build_model, count_parameters
from insarcast.training.params import TrainConfig, configs, manual_params
from insarcast.training.runs import windows_for
from insarcast.training.tune import PRESETS
from common import demo_cube, write_json

HERE = Path(__file__).resolve().parent


def time_steps(model: torch.nn.Module, batches: list[tuple[torch.Tensor, ...]], cfg: TrainConfig,
               device: torch.device = torch.device("cpu")) -> float:
    """Seconds per training step, after one warm-up step."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    times = []
    for x, y, m in batches:
        x, y, m = x.to(device), y.to(device), m.to(device)
        sync()
        tick = time.perf_counter()
        loss = masked_mse(model(x), y, m)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimiser.step()
        sync()
        times.append(time.perf_counter() - tick)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cube", type=Path)
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated architectures")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="settings of `insarcast tune`")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.data.mkdir(parents=True, exist_ok=True)
    cube = args.cube or demo_cube(args.data)
    device = torch.device(args.device)
    preset = dict(PRESETS[args.preset].overrides)
    rows = []
    windows = None
    for arch in args.archs.split(","):
        backends = ("grid", "sparse", "pyg") if arch.startswith("gcn") else (None,)
        for backend in backends:
            overrides = {**preset, **({"model.graph_backend": backend} if backend else {})}
            model_cfg, cfg = configs(manual_params()[arch], arch=arch, overrides=overrides)
            if windows is None:
                windows = windows_for(cube, model_cfg, cfg)
                rng = np.random.default_rng(0)
                samples = windows.samples("train")
                picks = samples[rng.choice(len(samples), (args.batches + 1) * cfg.batch_size, replace=False)]
                batches = []
                for i in range(args.batches + 1):
                    chunk = picks[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                    xs, ys, ms = zip(*(windows.sample(a, (r, c))[:3] for a, r, c in chunk))
                    batches.append(tuple(torch.from_numpy(np.stack(v)) for v in (xs, ys, ms)))
            torch.manual_seed(0)
            model = build_model(model_cfg).to(device)
            step = time_steps(model, batches, cfg, device)
            batch = int(batches[0][0].shape[0])            # the windows are drawn once, for the first arch
            sps = batch / step
            per_epoch = min(cfg.train_samples or len(samples), len(samples))
            rows.append({"arch": arch, "graph_backend": backend or "", "parameters": count_parameters(model),
                         "batch_size": batch, "step_s": round(step, 4), "samples_per_s": round(sps, 1),
                         "epoch_windows": per_epoch, "epoch_s": round(per_epoch / sps, 2)})
            print(f"{arch:20s} {backend or '':7s} {rows[-1]['parameters']:>9,d} params  "
                  f"{sps:7.1f} samples/s  {rows[-1]['epoch_s']:7.2f} s/epoch ({per_epoch} windows)", flush=True)
    first_gcn = next((r["arch"] for r in rows if r["graph_backend"]), None)
    gcn = {r["graph_backend"]: r["samples_per_s"] for r in rows if r["arch"] == first_gcn}
    summary = {} if len(gcn) < 3 else {"arch": first_gcn, "grid_over_pyg": round(gcn["grid"] / gcn["pyg"], 2),
               "sparse_over_pyg": round(gcn["sparse"] / gcn["pyg"], 2),
               "grid_over_sparse": round(gcn["grid"] / gcn["sparse"], 2)}
    print("GCN speed ratios (samples/s of one back-end over another's):", summary)
    result = {"cube": str(cube), "preset": args.preset, "device": str(device), "threads": args.threads,
              "torch": torch.__version__, "window": {"history": model_cfg.history, "horizon": model_cfg.horizon,
                                                     "patch": model_cfg.patch},
              "rows": rows, "gcn_ratios": summary}
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
