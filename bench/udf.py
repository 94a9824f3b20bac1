"""The UDF at scale: ensemble throughput against torch eager, peak memory against cube size, Rhineland time.

    python bench/udf.py [--members 10] [--threads 2] [--sizes 1,4,16] [--quick] [--out bench/results/udf.json]
                        [--inputs paper|residual|residual-hindcast|residual-corrected] [--kept N] [--throughput-only] [--repeats N]
                        [--inputs-cost [--calls N]]

The ensemble is ``--members`` fresh (untrained, seeds 0, 1, ...) models of the packaged manual
ResNet+Transformer configuration at demo size (T = 12, F = 6, P = 32). Their run folders are
fabricated as the tuner lays them out and exported with ``insarcast.export.export_ensemble`` (parity
on the demo cube); both are kept in ``--data``/udf and reused while they match (configuration and opset).
With ``--inputs`` other than the paper's, ``--kept`` members keep the zeroed readout a residual model
starts with (they forecast their reference and the UDF does not run them, ``zero_output``) and the
others get a random readout, so they run as trained corrections do. ``--throughput-only`` stops after
part 1; ``--inputs-cost`` runs only the comparison below. On a shared virtual machine single timings
of a second or two vary by up to 2x from run to run: compare medians of several ``--repeats``, under
``INSARCAST_WAIT=active`` (else the wait policy follows the load average, which the bench's own
earlier runs raise: :mod:`insarcast.cpus`).

1. Throughput. ``forecast_products`` over a numpy region of the demo cube (``--region`` cells a side),
   the default overlap (P / 4), once with the ONNX ensemble (``intra_op_threads = --threads``, its
   default windows per session call) and once with a predictor that runs the same torch models
   eagerly (``torch.no_grad``, ``torch.set_num_threads(--threads)``, at the batch size of
   :data:`TORCH_BATCHES` that is fastest for it), same tiling; after a warm-up, the median of
   ``--repeats``. Figures: valid pixels x members per second of the whole UDF, and raw model
   throughput (windows x members per second) of each engine on one batch of the UDF's own inputs.
   Then chunk invariance: the ONNX products of two Dask chunkings of the region (P - 5 and 50
   cells, synchronous scheduler) against the numpy ones: the largest difference and the number of
   pixels whose class or NaN mask differ.
   What the inputs cost (``--inputs-cost``, with ``--inputs`` other than the paper's): the UDF of the
   paper ensemble and of the ``--inputs`` ensemble (``--kept`` members kept), each timed in a fresh
   process that imports ONNX Runtime and numpy but never torch (as the UDF runs), the two
   alternating ``--repeats`` times; each process forecasts the region once to warm up (its first
   call pays for the allocator's first pages, about a second here) and then ``--calls`` times.
   Figures: the median seconds per call, of which in the members, and the throughput against the
   paper inputs' (goal: at least 0.9, the issue's "within 10 %"). In part 1's process torch's and
   the other engine's threads share the cores with the numpy part of the UDF, which measured two to
   three times slower there.
2. Memory. ``forecast_cube`` (Dask LocalCluster, one worker process per core, one thread each) over
   cubes of ``--sizes`` times ``--base`` cells (default 64 x 64 cells x 40 epochs; the demo cube's
   field mirrored to size, its last epochs), each in a fresh subprocess. This process samples the
   resident set size of that subprocess and all its descendants (the cluster's nannies and
   workers) every 0.2 s with psutil, sums it, and keeps the peak. The chunk size ``--chunks``
   (default half the base side) is the same for every size, so the smallest cube already has four
   tasks per pass and the largest many more: what grows with the region (task graph, per-pixel
   statistics, writes) is what this measures.
   ``--members`` members throughout, so the tile count, not the cube, sets the run time. Goal: the
   peak at the largest size within 1.25 x the peak at 1x.
3. Rhineland. The time of ``forecast_cube`` over 2000 x 1000 cells (363 epochs, chunks 256, default
   two passes: the ensemble and exact thresholds, then the products from the stored forecasts) with
   the ensemble on this machine's cores. When the throughput of part 1 predicts more than
   ``--rhine-budget`` seconds for the whole region (or with ``--quick``), a strip of whole chunks
   is measured instead and the time extrapolated linearly in the number of P x P tiles the two
   regions evaluate; the output says so. Goal: under 2 minutes.

Results go to ``--out`` as JSON and a table is printed; the goals are printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import demo_cube, median_seconds, write_json

from insarcast.contract import PAPER_ARCH as ARCH

HERE = Path(__file__).resolve().parent
RHINELAND = (1000, 2000)             # (ny, nx) cells
RHINELAND_CHUNKS = 256               # forecast_cube's default
MEMORY_GOAL = 1.25
TIME_GOAL_S = 120.0
TORCH_BATCHES = (1, 2, 4, 8, 16, 64)   # windows per torch forward call, the best one is used


# --- data ---------------------------------------------------------------------------------------------------

def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Indices into an axis of length ``n``, reflected (0..n-1, n-1..0, ...) so the tiled field is continuous."""
    i = np.mod(index, 2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def tiled_cube(path: Path, source: Path, *, ny: int, nx: int, epochs: int | None, chunk: int = 128) -> Path:
    """A cube of ``ny`` x ``nx`` cells: the source cube's field (its last ``epochs``) mirrored to size."""
    from insarcast.cube import GridSpec, create_cube, finish_cube, open_cube

    ds = open_cube(source)
    nt = ds.sizes["t"] if epochs is None else int(epochs)
    ds = ds.isel(t=slice(ds.sizes["t"] - nt, None))
    disp = ds["displacement"].values.astype(np.float32)
    valid = ds["valid"].values.astype(bool)
    x, y = ds["x"].values, ds["y"].values
    spacing = float(abs(x[1] - x[0]))
    grid = GridSpec(x0=float(x[0] - spacing / 2), y0=float(y[0] + spacing / 2), nx=nx, ny=ny, spacing=spacing,
                    crs=str(ds.rio.crs))
    group = create_cube(path, grid, ds["t"].values, chunk=chunk, with_support=False,
                        attrs={"title": f"bench/udf.py: {source.name} mirrored to {ny} x {nx} cells, {nt} epochs"})
    sy, sx = disp.shape[1:]
    for ys, xs in grid.blocks(chunk):
        iy = _mirror(np.arange(ys.start, ys.stop), sy)
        ix = _mirror(np.arange(xs.start, xs.stop), sx)
        group["displacement"][:, ys, xs] = disp[:, iy][:, :, ix]
    group["valid"][:, :] = valid[_mirror(np.arange(ny), sy)][:, _mirror(np.arange(nx), sx)]
    finish_cube(path)
    return path


# --- the ensemble -------------------------------------------------------------------------------------------

def ensemble_for(cube: Path, work: Path, members: int, inputs: str = "paper",
                 kept: int = 0) -> tuple[Path, Path, float | None]:
    """(tune folder, ensemble folder, export seconds or None when reused) of ``members`` fresh models.

    A fresh model of residual inputs starts with a zeroed readout, so it forecasts its reference and the
    UDF does not run it (``zero_output``): for those inputs, the first ``kept`` members keep that
    readout (as exported members that no epoch improved) and the others get a random one, so they run
    as trained corrections do."""
    import torch

    from insarcast.baselines import reference_rule
    from insarcast.export import export_ensemble
    from insarcast.export.onnx import DEFAULT_OPSET
    from insarcast.training.models import build_model, save_model
    from insarcast.training.params import configs, manual_params
    from insarcast.training.runs import windows_for
    from insarcast.udf.inputs import pinned_correction

    model_cfg, cfg = configs(manual_params()[ARCH], arch=ARCH, overrides={"model.inputs": inputs})
    tag = "" if inputs == "paper" else f"-{inputs}-kept{kept}"
    tune, out = work / f"tune-k{members}{tag}", work / f"ensemble-k{members}{tag}"
    manifest = out / "ensemble.json"
    if manifest.exists():
        try:
            recorded = json.loads(manifest.read_text())
            same = (len(recorded["members"]) == members and recorded["opset"] == DEFAULT_OPSET and
                    recorded.get("reference_correction") == pinned_correction(
                        model_cfg.inputs, history=model_cfg.history, horizon=model_cfg.horizon,
                        patch=model_cfg.patch) and
                    recorded.get("reference_rule") == (None if inputs == "paper" else reference_rule()) and
                    all(m["hyperparameters"]["model"] == model_cfg.to_dict() and
                        (tune / m["source"] / "model.pt").is_file() for m in recorded["members"]))
        except (KeyError, ValueError, TypeError):
            same = False
        if same:
            return tune, out, None
    shutil.rmtree(tune, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    windows = windows_for(cube, model_cfg, cfg)
    for seed in range(members):                       # a run folder as the tuner writes it, random weights
        torch.manual_seed(seed)
        model = build_model(model_cfg).eval()
        if inputs != "paper" and seed >= kept:
            model.last_layer.reset_parameters()           # a correction, not the reference
        folder = tune / ARCH / f"seed_{seed}" / "trial_000"
        folder.mkdir(parents=True)
        extra = {"normalisation": windows.norm.to_dict(), "train": cfg.to_dict(), "epoch_days": windows.epoch_days,
                 "grid": windows.grid, "seed": seed}
        save_model(model, folder / "model.pt", extra=extra)
        metrics = {"arch": ARCH, "strategy": "tpe", "seed": seed, "trial": 0, "val_loss": 1.0 + 0.01 * seed,
                   "model": model_cfg.to_dict(), "train": cfg.to_dict(), "normalisation": windows.norm.to_dict(),
                   "epoch_days": windows.epoch_days, "grid": windows.grid, "reference_correction": windows.correction,
                   "reference_rule": None if inputs == "paper" else reference_rule(), "cube": str(cube)}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    tick = time.perf_counter()
    export_ensemble(tune, out, arch=ARCH, top=members, strict=True, parity_windows=cube)
    return tune, out, time.perf_counter() - tick


# --- 1. throughput ------------------------------------------------------------------------------------------

class Timed:
    """A predictor wrapper that adds up the seconds and windows spent in the model."""

    def __init__(self, predict):
        self.predict, self.seconds, self.windows, self.first = predict, 0.0, 0, None

    def __call__(self, x):
        if self.first is None:
            self.first = np.array(x)
        tick = time.perf_counter()
        out = self.predict(x)
        self.seconds += time.perf_counter() - tick
        self.windows += len(x)
        return out


def central_region(cube: Path, region: int):
    """The ``region`` x ``region`` cells (at most the cube's) at the centre of the cube, loaded:
    ``(data, [y0, x0])``."""
    from insarcast.cube import open_cube

    ds = open_cube(cube)[["displacement", "valid"]]
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    region = min(region, ny, nx)
    y0, x0 = (ny - region) // 2, (nx - region) // 2
    return ds.isel(y=slice(y0, y0 + region), x=slice(x0, x0 + region)).load(), [y0, x0]


def udf_settings(ensemble, batch: int) -> dict:
    """``forecast_products``' settings for ``ensemble`` at the default overlap, ``batch`` tiles per predictor call."""
    from insarcast.udf.tiling import default_overlap

    p = ensemble.patch
    return dict(history=ensemble.history, horizon_steps=ensemble.horizon, patch=p, overlap=default_overlap(p),
                norm=ensemble.norm, inputs=ensemble.inputs, members=len(ensemble), batch_size=batch)


def throughput(cube: Path, tune: Path, ens_dir: Path, *, region: int, threads: int, batch: int,
               repeats: int) -> dict:
    import torch

    from insarcast.training.models import load_model
    from insarcast.udf.ensemble import load_ensemble
    from insarcast.udf.forecast import forecast_products

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    ensemble = load_ensemble(ens_dir, intra_op_threads=threads)          # its default session batch
    k, f, p = len(ensemble), ensemble.horizon, ensemble.patch
    models = [load_model(tune / m["source"] / "model.pt")[0].eval() for m in ensemble.manifest["members"]]
    torch_batch = {"size": batch}

    def torch_predict(x: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        out = np.empty((k, len(x), f, p, p), np.float32)
        step = torch_batch["size"]
        with torch.no_grad():
            for i, model in enumerate(models):
                for start in range(0, len(x), step):
                    out[i, start:start + step] = model(xt[start:start + step]).numpy()
        return out

    data, (y0, x0) = central_region(cube, region)
    region = data.sizes["y"]
    settings = udf_settings(ensemble, batch)
    engines = {"onnxruntime": ensemble.predict, "torch eager": torch_predict}
    warm = data.isel(y=slice(0, p), x=slice(0, p))
    for predict in engines.values():                  # warm-up: sessions, allocators, thread pools
        forecast_products(warm, predict, **settings)
    # torch eager at its own best batch size (windows per forward call; the first member on 64 windows)
    probe = torch.from_numpy(np.random.default_rng(0).normal(
        size=(max(TORCH_BATCHES), ensemble.history, ensemble.channels, p, p)).astype(np.float32))

    def first_member(size: int) -> None:
        with torch.no_grad():
            for start in range(0, len(probe), size):
                models[0](probe[start:start + size])

    sweep = dict(zip(TORCH_BATCHES, median_seconds([lambda s=s: first_member(s) for s in TORCH_BATCHES], 2,
                                                   warmup=1)))
    torch_batch["size"] = min(sweep, key=sweep.get)

    results, forecasts, reference = {}, {}, None
    spent = {name: [] for name in engines}
    timed = {}
    for _ in range(repeats):                          # alternate the engines
        for name, predict in engines.items():
            timed[name] = Timed(predict)
            tick = time.perf_counter()
            products = forecast_products(data, timed[name], **settings)
            spent[name].append(time.perf_counter() - tick)
            forecasts[name] = products["forecast"].values
            if name == "onnxruntime":
                reference = products
    invariance = chunk_invariance(data, ensemble.predict, settings, reference, chunkings=(p - 5, 50))
    pixels = int(np.isfinite(forecasts["onnxruntime"][0, 0]).sum())
    x = timed["onnxruntime"].first
    # both engines are warm from the runs above
    raw = dict(zip(engines, median_seconds([lambda e=e: e(x) for e in engines.values()], repeats, warmup=0)))
    for name in engines:
        seconds = float(np.median(spent[name]))
        results[name] = {
            "udf_s": round(seconds, 3),
            "pixel_members_per_s": round(pixels * k / seconds, 1),
            "windows": timed[name].windows,
            "model_share": round(timed[name].seconds / spent[name][-1], 3),
            "raw_windows": len(x),
            "raw_s": round(raw[name], 4),
            "raw_window_members_per_s": round(len(x) * k / raw[name], 1),
        }
    diff = float(np.nanmax(np.abs(forecasts["onnxruntime"] - forecasts["torch eager"])))
    return {"region": [region, region], "region_origin": [y0, x0], "valid_pixels": pixels, "members": k,
            "patch": p, "overlap": settings["overlap"], "threads": threads, "tiles_per_call": batch,
            "repeats": repeats,
            "session_batch": {"onnxruntime": ensemble.session_batch, "torch eager": torch_batch["size"]},
            "torch_batch_sweep_windows_per_s": {str(b): round(len(probe) / s, 1) for b, s in sweep.items()},
            "engines": results, "max_abs_diff_mm": diff, "chunk_invariance": invariance,
            "onnx_over_torch_udf": round(results["onnxruntime"]["pixel_members_per_s"] /
                                         results["torch eager"]["pixel_members_per_s"], 2),
            "onnx_over_torch_raw": round(results["onnxruntime"]["raw_window_members_per_s"] /
                                         results["torch eager"]["raw_window_members_per_s"], 2)}


def chunk_invariance(data, predict, settings: dict, reference, *, chunkings: tuple[int, ...]) -> dict:
    """The products of Dask-chunked copies of ``data`` (one chunking smaller than P) against ``reference``."""
    import dask

    from insarcast.udf.forecast import forecast_products

    worst, mismatched = 0.0, 0
    with dask.config.set(scheduler="synchronous"):
        for size in chunkings:
            lazy = forecast_products(data.chunk({"t": -1, "y": size, "x": size}), predict,
                                     materialise=lambda fc: fc.persist(), **settings).compute()
            for name in ("forecast", "median", "std", "p95", "confidence", "rank_variance"):
                a, b = lazy[name].values, reference[name].values
                if not np.array_equal(np.isnan(a), np.isnan(b)):
                    mismatched += int((np.isnan(a) != np.isnan(b)).sum())
                worst = max(worst, float(np.nanmax(np.abs(a - b))))
            for name in ("class", "bivariate"):
                mismatched += int((lazy[name].values != reference[name].values).sum())
    return {"chunkings": list(chunkings), "max_abs_diff": worst, "mismatched_pixels": mismatched,
            "compared_to": "numpy, one array"}


def udf_child(spec: dict) -> None:
    """Time ``forecast_products`` with the ONNX ensemble in this fresh process (no torch); JSON on the last line."""
    from insarcast.udf.ensemble import load_ensemble
    from insarcast.udf.forecast import forecast_products

    ensemble = load_ensemble(spec["ensemble"], intra_op_threads=spec["threads"])
    data, origin = central_region(Path(spec["cube"]), spec["region"])
    settings = udf_settings(ensemble, spec["batch"])
    timed = Timed(ensemble.predict)
    forecast_products(data, timed, **settings)                # warm-up: sessions, allocator, shipped correction
    calls, in_model = [], []
    for _ in range(spec["calls"]):
        timed.seconds = 0.0
        tick = time.perf_counter()
        forecast_products(data, timed, **settings)
        calls.append(time.perf_counter() - tick)
        in_model.append(timed.seconds)
    print(json.dumps({"seconds": calls, "model_seconds": in_model, "region": data.sizes["y"], "origin": origin}))


def inputs_cost(cube: Path, ensembles: dict[str, Path], *, region: int, threads: int, batch: int, repeats: int,
                calls: int) -> dict:
    """The UDF of each ensemble in fresh torch-free processes, alternating: median seconds per call."""
    seconds = {name: [] for name in ensembles}
    model = {name: [] for name in ensembles}
    for _ in range(repeats):
        for name, folder in ensembles.items():
            spec = {"ensemble": str(folder), "cube": str(cube), "region": region, "threads": threads, "batch": batch,
                    "calls": calls}
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--udf-child", json.dumps(spec)],
                                  capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            seconds[name] += result["seconds"]
            model[name] += result["model_seconds"]
    rows = {name: {"udf_s": round(float(np.median(seconds[name])), 3),
                   "model_s": round(float(np.median(model[name])), 3),
                   "other_s": round(float(np.median(np.subtract(seconds[name], model[name]))), 3),
                   "calls": len(seconds[name])} for name in ensembles}
    paper = rows["paper"]["udf_s"]
    for row in rows.values():
        row["throughput_vs_paper"] = round(paper / row["udf_s"], 3)
    return {"region": [result["region"]] * 2, "region_origin": result["origin"], "threads": threads,
            "tiles_per_call": batch, "processes_each": repeats, "calls_per_process": calls, "ensembles": rows}


def print_inputs_cost(cost: dict, goal: float = 0.9) -> None:
    print()
    print(f"1b. What the inputs cost: forecast_products alone (no torch), region {cost['region'][0]} x "
          f"{cost['region'][1]}, {cost['threads']} threads, {cost['processes_each']} processes x "
          f"{cost['calls_per_process']} calls each (medians)")
    print(f"   {'ensemble':44s} {'UDF s':>7s} {'members s':>9s} {'rest s':>7s} {'throughput / paper':>18s}")
    for name, row in cost["ensembles"].items():
        mark = "" if name == "paper" else f"  goal >= {goal}: {verdict(row['throughput_vs_paper'] >= goal)}"
        print(f"   {name:44s} {row['udf_s']:7.2f} {row['model_s']:9.2f} {row['other_s']:7.2f} "
              f"{row['throughput_vs_paper']:18.2f}{mark}")
    print()


# --- 2./3. forecast_cube in a fresh subprocess, its process tree sampled ------------------------------------

def child(spec: dict) -> None:
    """Run forecast_cube once (in this fresh process) and print its seconds as JSON on the last line."""
    from insarcast.udf.run import forecast_cube

    tick = time.perf_counter()
    forecast_cube(spec["cube"], spec["ensemble"], spec["out"], workers=spec["workers"], chunks=spec["chunks"],
                  threads=1)
    seconds = time.perf_counter() - tick
    print(json.dumps({"seconds": seconds,
                      "self_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "children_maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def run_forecast(cube: Path, ens_dir: Path, out: Path, *, workers: int, chunks: int, interval: float = 0.2) -> dict:
    """forecast_cube in a subprocess; the peak summed RSS of it and its descendants, sampled every ``interval``."""
    try:
        import psutil
    except ImportError:
        psutil = None
    spec = {"cube": str(cube), "ensemble": str(ens_dir), "out": str(out), "workers": workers, "chunks": chunks}
    tick = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"rss": 0, "processes": 0}
    stop = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                procs = []
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            if total > peak["rss"]:
                peak["rss"] = total
            peak["processes"] = max(peak["processes"], len(procs))
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True) if psutil else None
    if sampler:
        sampler.start()
    stdout, stderr = proc.communicate()
    stop.set()
    if sampler:
        sampler.join()
    wall = time.perf_counter() - tick
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise SystemExit(f"forecast_cube failed on {cube} (exit {proc.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    if psutil:
        result["peak_tree_rss_mb"] = peak["rss"] / 2**20
        result["method"] = f"psutil: summed RSS of the process tree every {interval} s"
        result["processes"] = peak["processes"]
    else:
        # a max over processes, not a sum; and on Linux ru_maxrss survives exec, so the subprocess's own
        # figure may be this (forking) process's size: a rough bound only
        result["peak_tree_rss_mb"] = max(result["self_maxrss_mb"], result["children_maxrss_mb"])
        result["method"] = "getrusage ru_maxrss, max of the process and its children (rough: no psutil)"
    if psutil:
        del result["self_maxrss_mb"], result["children_maxrss_mb"]
    return result


def tiles_evaluated(ny: int, nx: int, *, chunks: int, patch: int, overlap: int) -> int:
    """P x P tiles forecast_cube evaluates per pass (every chunk evaluates the tiles meeting its core)."""
    from insarcast.udf.tiling import tile_origins

    stride = patch - overlap

    def axis(n: int) -> int:
        return sum(len(tile_origins(s, min(s + chunks, n), patch=patch, stride=stride)) for s in range(0, n, chunks))

    return axis(ny) * axis(nx)


# --- main ---------------------------------------------------------------------------------------------------

def _size(text: str) -> tuple[int, int, int]:
    parts = [int(v) for v in text.lower().split("x")]
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLSxEPOCHS, got {text!r}")
    return parts[0], parts[1], parts[2]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_throughput(tp: dict, region: int) -> None:
    """Part 1's table."""
    e = tp["engines"]
    print()
    print(f"1. UDF ensemble throughput: K = {tp['members']} members, P = {tp['patch']}, overlap {tp['overlap']}, "
          f"{tp['threads']} threads, region {region} x {region} ({tp['valid_pixels']} valid pixels)")
    print(f"   {'engine':12s} {'UDF s':>8s} {'px*members/s':>13s} {'model share':>11s} "
          f"{'raw win*members/s':>18s}")
    for name, row in e.items():
        print(f"   {name:12s} {row['udf_s']:8.2f} {row['pixel_members_per_s']:13.0f} {row['model_share']:11.0%} "
              f"{row['raw_window_members_per_s']:18.1f}")
    print(f"   ONNX Runtime / torch eager: UDF {tp['onnx_over_torch_udf']:.2f}x, raw model "
          f"{tp['onnx_over_torch_raw']:.2f}x (raw: {e['onnxruntime']['raw_windows']} windows; windows per call: "
          f"ONNX Runtime {tp['session_batch']['onnxruntime']}, torch its best {tp['session_batch']['torch eager']}); "
          f"max |ONNX - torch| forecast {tp['max_abs_diff_mm']:.2e} mm")
    ci = tp["chunk_invariance"]
    print(f"   chunk invariance: Dask chunks {ci['chunkings']} against numpy: max |diff| {ci['max_abs_diff']:.2e}, "
          f"{ci['mismatched_pixels']} class or NaN mismatches")
    print()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--udf-child":
        udf_child(json.loads(sys.argv[2]))
        return
    from insarcast.udf.inputs import INPUTS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10, help="ensemble members K (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of both engines in part 1")
    parser.add_argument("--sizes", default=None, help="cube sizes as multiples of --base (default 1,4,16)")
    parser.add_argument("--base", type=_size, default=None,
                        help="base cube ROWSxCOLSxEPOCHS (default 64x64x40; --quick 32x32x24)")
    parser.add_argument("--chunks", type=int, default=None,
                        help="forecast_cube chunk size of the memory runs (default base side / 2, at least 32)")
    parser.add_argument("--region", type=int, default=None, help="cells a side of part 1's region (default 128)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats of part 1 (median)")
    parser.add_argument("--batch", type=int, default=64, help="tiles per predictor call")
    parser.add_argument("--inputs", choices=tuple(INPUTS), default="paper",
                        help="the members' input formulation (insarcast.udf.inputs; residual-corrected: the demo "
                             "preset's)")
    parser.add_argument("--kept", type=int, default=0,
                        help="residual inputs: members that keep their reference (zero readout, not run; default 0)")
    parser.add_argument("--throughput-only", action="store_true", help="part 1 only")
    parser.add_argument("--inputs-cost", action="store_true",
                        help="only the UDF of the paper ensemble against the --inputs one, in fresh torch-free "
                             "processes")
    parser.add_argument("--calls", type=int, default=3,
                        help="--inputs-cost: timed calls per process (after one warm-up)")
    parser.add_argument("--rhine-budget", type=float, default=600.0,
                        help="measure the whole Rhineland region when predicted to take at most this many seconds")
    parser.add_argument("--quick", action="store_true", help="smaller regions and cubes")
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "udf.json")
    args = parser.parse_args()
    if args.inputs_cost and args.inputs == "paper":
        parser.error("--inputs-cost compares the paper inputs with --inputs: give another formulation")
    sizes = [int(s) for s in (args.sizes or "1,4,16").split(",")]
    base = args.base or ((32, 32, 24) if args.quick else (64, 64, 40))
    chunks = args.chunks or max(32, min(base[:2]) // 2)
    region = args.region or (64 if args.quick else 128)
    workers = os.cpu_count() or 1
    started = time.perf_counter()

    args.data.mkdir(parents=True, exist_ok=True)
    cube = demo_cube(args.data)
    work = args.data / "udf"
    work.mkdir(exist_ok=True)
    kept = f", {args.kept} keeping their reference" if args.inputs != "paper" else ""
    print(f"ensemble: {args.members} fresh manual {ARCH} models (seeds 0..{args.members - 1}{kept})", flush=True)
    tune, ens_dir, export_s = ensemble_for(cube, work, args.members, args.inputs, args.kept)
    print(f"  {'exported in %.0f s' % export_s if export_s is not None else 'reused'}: {ens_dir}", flush=True)

    if args.inputs_cost:
        _, paper_dir, _ = ensemble_for(cube, work, args.members, "paper")
        name = f"{args.inputs}, {args.members - args.kept} of {args.members} running"
        print(f"[1b] what the inputs cost: paper against {name}", flush=True)
        cost = inputs_cost(cube, {"paper": paper_dir, name: ens_dir}, region=region, threads=args.threads,
                           batch=args.batch, repeats=args.repeats, calls=args.calls)
        print_inputs_cost(cost)
        write_json(args.out, {"inputs": args.inputs, "kept": args.kept, "inputs_cost": cost})
        print(f"wrote {args.out}")
        return

    # 1. throughput
    print(f"[1/3] throughput: forecast_products on a {region} x {region} region, ONNX Runtime vs torch eager",
          flush=True)
    tp = throughput(cube, tune, ens_dir, region=region, threads=args.threads, batch=args.batch,
                    repeats=args.repeats)
    if args.throughput_only:
        print_throughput(tp, region)
        write_json(args.out, {"inputs": args.inputs, "kept": args.kept, "throughput": tp})
        print(f"\nwrote {args.out}")
        return

    from insarcast.udf.tiling import default_overlap

    from insarcast.udf.manifest import read_manifest

    manifest = read_manifest(ens_dir)
    patch = manifest.patch
    scratch = Path(tempfile.mkdtemp(dir=work, prefix=".tmp-bench-"))
    try:
        # 2. memory
        memory = []
        for size in sizes:
            side = int(round(np.sqrt(size)))
            ny, nx = base[0] * side, base[1] * side
            if side * side != size:
                ny, nx = base[0] * size, base[1]
            print(f"[2/3] memory: {size}x = {ny} x {nx} cells x {base[2]} epochs, chunks {chunks}", flush=True)
            path = tiled_cube(scratch / f"mem-{size}.zarr", cube, ny=ny, nx=nx, epochs=base[2])
            res = run_forecast(path, ens_dir, scratch / f"mem-{size}-products.zarr", workers=workers, chunks=chunks)
            tiles = tiles_evaluated(ny, nx, chunks=chunks, patch=patch, overlap=default_overlap(patch))
            res.update(size=size, cells=[ny, nx], epochs=base[2], chunks=chunks, tiles_per_pass=tiles)
            memory.append(res)
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(scratch / f"mem-{size}-products.zarr", ignore_errors=True)
        base_peak = memory[0]["peak_tree_rss_mb"]
        for res in memory:
            res["peak_over_first"] = round(res["peak_tree_rss_mb"] / base_peak, 3)
        memory_ok = memory[-1]["peak_over_first"] <= MEMORY_GOAL

        # 3. Rhineland
        ry, rx = RHINELAND
        full_tiles = tiles_evaluated(ry, rx, chunks=RHINELAND_CHUNKS, patch=patch, overlap=default_overlap(patch))
        rate = tp["engines"]["onnxruntime"]["windows"] * args.members / tp["engines"]["onnxruntime"]["udf_s"]
        predicted = full_tiles * args.members / rate       # the ensemble runs once (scratch store between passes)
        if not args.quick and predicted <= args.rhine_budget:
            my, mx = ry, rx
        else:                                  # one row of whole chunks, as many columns as the budget allows
            per_chunk = tiles_evaluated(RHINELAND_CHUNKS, RHINELAND_CHUNKS, chunks=RHINELAND_CHUNKS,
                                            patch=patch, overlap=default_overlap(patch)) * args.members / rate
            columns = 1 if args.quick else int(np.clip(min(args.rhine_budget, 180.0) // per_chunk, workers, rx //
                                                       RHINELAND_CHUNKS))
            my, mx = RHINELAND_CHUNKS, columns * RHINELAND_CHUNKS
        extrapolated = (my, mx) != (ry, rx)
        print(f"[3/3] Rhineland: {'a ' if extrapolated else ''}{my} x {mx} cells x 363 epochs, chunks "
              f"{RHINELAND_CHUNKS} (whole region predicted from part 1: {predicted:.0f} s)", flush=True)
        path = tiled_cube(scratch / "rhine.zarr", cube, ny=my, nx=mx, epochs=None)
        rh = run_forecast(path, ens_dir, scratch / "rhine-products.zarr", workers=workers, chunks=RHINELAND_CHUNKS)
        tiles = tiles_evaluated(my, mx, chunks=RHINELAND_CHUNKS, patch=patch, overlap=default_overlap(patch))
        estimate = rh["seconds"] * full_tiles / tiles
        rhine = {"region": [ry, rx], "measured_region": [my, mx], "epochs": 363, "chunks": RHINELAND_CHUNKS,
                 "workers": workers, "members": args.members, "extrapolated": extrapolated,
                 "measured_s": round(rh["seconds"], 1), "measured_tiles_per_pass": tiles,
                 "full_tiles_per_pass": full_tiles, "seconds": round(estimate, 1),
                 "predicted_from_part1_s": round(predicted, 1), "peak_tree_rss_mb": round(rh["peak_tree_rss_mb"], 1),
                 "method": ("measured on the whole region" if not extrapolated else
                            "EXTRAPOLATED: measured seconds x (tiles of the whole region / tiles measured), "
                            "cluster start-up included in the scaled figure")}
        time_ok = estimate < TIME_GOAL_S
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    # --- table
    print_throughput(tp, region)
    print(f"2. Peak memory of forecast_cube under Dask ({workers} worker processes x 1 thread, chunks {chunks}, "
          f"K = {args.members}; {memory[0]['method']})")
    print(f"   {'size':>5s} {'cells':>11s} {'epochs':>6s} {'tiles/pass':>10s} {'seconds':>8s} {'peak MB':>9s} "
          f"{'vs 1st':>7s}")
    for res in memory:
        print(f"   {str(res['size']) + 'x':>5s} {'%d x %d' % tuple(res['cells']):>11s} {res['epochs']:>6d} "
              f"{res['tiles_per_pass']:>10d} {res['seconds']:>8.1f} {res['peak_tree_rss_mb']:>9.0f} "
              f"{res['peak_over_first']:>6.2f}x")
    print(f"   goal: peak at {memory[-1]['size']}x within {MEMORY_GOAL}x of {memory[0]['size']}x: "
          f"{memory[-1]['peak_over_first']:.2f}x  {verdict(memory_ok)}")
    print()
    print(f"3. Rhineland-size region {ry} x {rx} cells, 363 epochs, K = {args.members}, {workers} cores "
          f"(forecast_cube, chunks {RHINELAND_CHUNKS}, ensemble + thresholds pass, products pass)")
    if extrapolated:
        print(f"   measured {my} x {mx} cells ({tiles} of {full_tiles} tiles per pass): {rh['seconds']:.1f} s "
              f"(peak {rh['peak_tree_rss_mb']:.0f} MB)")
        print(f"   EXTRAPOLATED to the whole region (linear in tiles): {estimate:.0f} s = {estimate / 60:.1f} min")
    else:
        print(f"   measured on the whole region: {estimate:.1f} s = {estimate / 60:.1f} min "
              f"(peak {rh['peak_tree_rss_mb']:.0f} MB)")
    print(f"   goal: under {TIME_GOAL_S:.0f} s: {verdict(time_ok)}")

    import onnxruntime
    import torch

    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                          "onnxruntime": onnxruntime.__version__, "platform": platform.platform()},
              "ensemble": {"members": args.members, "arch": ARCH, "history": manifest["history"],
                           "horizon": manifest["horizon"], "patch": patch, "export_s": export_s,
                           "note": "fresh (untrained) manual-config models, seeds 0..K-1"},
              "quick": args.quick,
              "throughput": tp,
              "memory": {"base": list(base), "chunks": chunks, "workers": workers, "runs": memory,
                         "goal": f"peak at {sizes[-1]}x <= {MEMORY_GOAL} x peak at {sizes[0]}x",
                         "pass": bool(memory_ok)},
              "rhineland": {**rhine, "goal_s": TIME_GOAL_S, "pass": bool(time_ok)},
              "seconds": round(time.perf_counter() - started, 1)}
    write_json(args.out, result)
    print(f"\nwrote {args.out} ({result['seconds']:.0f} s in all)")


if __name__ == "__main__":
    main()
