"""ONNX Runtime against torch eager, per ensemble member, on the same batch on CPU.

    python bench/export.py [--ensemble DIR --tune-dir DIR] [--arch resnet-transformer] [--members 2]
                           [--cube CUBE] [--batch 32] [--threads 2] [--repeats 5]
                           [--out bench/results/export.json]

With ``--ensemble`` (a folder written by ``insarcast export``) each member's ONNX file is timed
against its torch model, found through the member's ``source`` under ``--tune-dir``. Without it,
``--members`` fresh models of the packaged manual configuration of ``--arch`` (demo size: T = 12,
F = 6, P = 32) are built with seeds 0, 1, ... and exported here the way ``insarcast export`` does
(dynamo exporter, the default opset, parity checked). The batch is ``--batch`` evenly spaced validation
windows of the demo cube (built into bench/results/data when ``--cube`` is not given).

Both engines run on the CPU with ``--threads`` intra-op threads (torch.set_num_threads and
onnxruntime's intra_op_num_threads; one inter-op thread each). Both are warmed up three times, then
timed ``--repeats`` times on the whole batch, alternating; the median gives samples per second, and
the ratio is ONNX Runtime over torch (the speed-up; above 1 means ONNX Runtime is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from insarcast.contract import PAPER_ARCH
from common import demo_cube, median_seconds, write_json

HERE = Path(__file__).resolve().parent


def session(data: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def fresh_members(arch: str, n: int, cube: Path, batch: int):
    """(label, torch model, ONNX bytes, exporter, parity) of ``n`` new manual-config models, and the batch."""
    from insarcast.export.onnx import onnx_bytes, parity_inputs, parity_max_abs
    from insarcast.training.models import build_model
    from insarcast.training.params import configs, manual_params
    from insarcast.training.runs import windows_for

    model_cfg, cfg = configs(manual_params()[arch], arch=arch)
    windows = windows_for(cube, model_cfg, cfg)
    x = parity_inputs(cube, model_cfg, cfg.to_dict(), windows.norm.to_dict(), n=batch)
    members = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = build_model(model_cfg).eval()
        data, exporter = None, "dynamo"
        try:
            data = onnx_bytes(model, x[:2], exporter="dynamo")
        except Exception:  # same fallback as insarcast export
            data, exporter = onnx_bytes(model, x[:2], exporter="torchscript"), "torchscript"
        members.append((f"seed {seed}", model, data, exporter, parity_max_abs(model, data, x[:16])))
    return members, x


def ensemble_members(folder: Path, tune_dir: Path, cube: Path | None, batch: int):
    from insarcast.export.onnx import parity_inputs
    from insarcast.training.models import load_model
    from insarcast.udf.manifest import read_manifest

    manifest = read_manifest(folder)
    members = []
    for m in manifest.members:
        model, _ = load_model(tune_dir / m.source / "model.pt")
        members.append((m.file, model, (folder / m.file).read_bytes(), m.exporter, m.parity_max_abs))
    first = manifest.members[0]
    source = cube or Path(json.loads((tune_dir / first.source / "metrics.json").read_text())["cube"])
    x = parity_inputs(source, members[0][1].cfg, first.hyperparameters["train"], manifest.normalisation, n=batch)
    return members, x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ensemble", type=Path)
    parser.add_argument("--tune-dir", type=Path)
    parser.add_argument("--arch", default=PAPER_ARCH)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--cube", type=Path)
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "export.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass

    if args.ensemble:
        if not args.tune_dir:
            parser.error("--ensemble needs --tune-dir (where the members' torch models are)")
        members, x = ensemble_members(args.ensemble, args.tune_dir, args.cube, args.batch)
        source = str(args.ensemble)
    else:
        args.data.mkdir(parents=True, exist_ok=True)
        cube = args.cube or demo_cube(args.data)
        members, x = fresh_members(args.arch, args.members, cube, args.batch)
        source = f"{args.members} fresh manual {args.arch} model(s) on {cube}"
    x = np.ascontiguousarray(x, np.float32)
    xt = torch.from_numpy(x)
    print(f"batch {tuple(x.shape)} (N, T, C, P, P), {args.threads} threads, median of {args.repeats}", flush=True)
    print(f"{'member':16s} {'exporter':11s} {'params':>9s} {'torch/s':>9s} {'onnx/s':>9s} {'ratio':>6s} "
          f"{'max|diff|':>9s}")
    rows = []
    for label, model, data, exporter, parity in members:
        model.eval()
        ort_session = session(data, args.threads)

        def run_torch():
            with torch.inference_mode():
                return model(xt)

        def run_onnx():
            return ort_session.run(None, {"history": x})[0]

        diff = float(np.abs(run_onnx() - run_torch().numpy()).max())
        t_torch, t_onnx = median_seconds([run_torch, run_onnx], args.repeats)
        row = {"member": label, "arch": model.cfg.arch, "exporter": exporter,
               "parameters": int(sum(p.numel() for p in model.parameters())),
               "torch_s": round(t_torch, 4), "onnx_s": round(t_onnx, 4),
               "torch_samples_per_s": round(len(x) / t_torch, 1), "onnx_samples_per_s": round(len(x) / t_onnx, 1),
               "onnx_over_torch": round(t_torch / t_onnx, 2), "max_abs_diff": diff, "parity_max_abs": parity}
        rows.append(row)
        print(f"{label:16s} {exporter:11s} {row['parameters']:>9,d} {row['torch_samples_per_s']:>9.1f} "
              f"{row['onnx_samples_per_s']:>9.1f} {row['onnx_over_torch']:>6.2f} {diff:>9.2e}", flush=True)
    import onnxruntime

    result = {"source": source, "batch": list(x.shape), "threads": args.threads, "repeats": args.repeats,
              "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "rows": rows,
              "mean_onnx_over_torch": round(float(np.mean([r["onnx_over_torch"] for r in rows])), 2)}
    write_json(args.out, result)
    print(f"ONNX Runtime / torch eager: {result['mean_onnx_over_torch']}x; wrote {args.out}")


if __name__ == "__main__":
    main()
