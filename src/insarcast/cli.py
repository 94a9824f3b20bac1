"""The `insarcast` command line: parse, configure the logger, call one library function, report."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import __version__
from .cliutil import interrupted, main_input, on_interrupt, terminate_like_interrupt, usage_line
from .contract import ARCHS, DEFAULT_ARCH
from .errors import InputError, MissingDependencyError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Turns expected failures into one line on stderr: exit 2 for bad input, 1 for the system."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:                 # e.g. an unknown option before the command
            click.echo(f"insarcast: error: {usage_line(exc)}", err=True)
            sys.exit(2)

    def invoke(self, ctx: click.Context):
        from .log import capture_warnings

        terminate_like_interrupt(ctx)
        ctx.call_on_close(capture_warnings())        # insarcast's warnings through the logger, one line each
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"insarcast: error: {exc}", err=True)
            sys.exit(2)
        except MissingDependencyError as exc:           # an extra not installed: the message names it
            click.echo(f"insarcast: error: {exc}", err=True)
            sys.exit(1)
        except click.UsageError as exc:                 # click's three-line usage error, in our one line
            click.echo(f"insarcast: error: {usage_line(exc)}", err=True)
            sys.exit(2)
        except (OSError, MemoryError) as exc:
            click.echo(f"insarcast: error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt as exc:                # Ctrl-C or SIGTERM: one line, how to resume, 130 / 143
            line, code = interrupted(exc, ctx)
            click.echo(line, err=True)
            sys.exit(code)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """--quiet and --verbose configure the one ``insarcast`` logger (:mod:`insarcast.log`)."""
    from .log import configure

    ctx.meta[f"insarcast.{param.name}"] = value
    configure(quiet=ctx.meta.get("insarcast.quiet", False), verbose=ctx.meta.get("insarcast.verbose", False))
    return value


def _quiet(f):
    f = click.option("--verbose", "-v", is_flag=True, expose_value=False, callback=_set_verbosity,
                     help="Also show debug lines and the libraries' information.")(f)
    return click.option("--quiet", "-q", is_flag=True, callback=_set_verbosity,
                        help="Show warnings and errors only: no progress bars, no information lines.")(f)


def _needs_torch(verb: str) -> None:
    """The training verbs without the ``train`` extra: one line naming it, not a traceback."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(f"insarcast {verb} needs torch, which is not installed: pip install "
                                     "'insarcast[train]' (scripts/install.sh installs the CPU wheel first)") from err


def _is_rank_zero() -> bool:
    """True unless torchrun started this process as a worker other than the first (RANK > 0)."""
    return int(os.environ.get("RANK", "0")) == 0


#: ``--seed``: numpy's seeds are 32-bit (a larger one failed deep inside synth, train or tune)
SEED = click.IntRange(min=0, max=2**32 - 1)


def _overwrite(f):
    return click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")(f)


def _refuse_clobbering(out: Path, inputs: dict[str, Path | tuple[Path, ...] | None]) -> None:
    """``--out`` may not be an input nor hold one (replacing it would delete the input), nor lie inside a Zarr
    store or folder given as an input (the output would be written into the input). Checked before any work,
    ``--overwrite`` or not: ``export --out TUNE --overwrite`` deleted every run of the tune."""
    target = Path(out).resolve()
    for name, given in inputs.items():          # name: the argument or option as the user gave it
        for path in (given if isinstance(given, tuple) else (given,)):
            if path is None:
                continue
            source = Path(path).resolve()
            if target == source or target in source.parents:
                held = "is" if target == source else "holds"
                raise InputError(f"the output {held} the input {name} ({path}): writing it would replace "
                                 "the input; choose another --out", path=out, field="--out")
            if source.is_dir() and source in target.parents:
                raise InputError(f"the output lies inside the input {name} ({path}); choose another --out",
                                 path=out, field="--out")


def _refuse_existing(paths, overwrite: bool) -> None:
    from .fsutil import clean_stale

    for path in paths:                                  # an interrupted run's output is restored first
        clean_stale(path)
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise InputError("output exists (pass --overwrite to replace it)", path=existing[0])


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="insarcast")
def main() -> None:
    """Forecast InSAR ground deformation (EGMS L3) and map where the ground will move next.

    The default input is an embedded synthetic Rhineland scenario (`insarcast synth`); real EGMS
    L3 vertical CSV tiles go straight to `insarcast grid`. Every verb reads
    `insarcast VERB INPUT [--other-input ...] --out OUT`: the input it acts on is its argument.
    """


@main.command(context_settings=CONTEXT)
@click.option("--preset", type=click.Choice(["tiny", "demo", "rhineland"]), default="demo", show_default=True,
              help="Scenario size: tiny (tests, seconds), demo (~25 km, a minute), rhineland (200 x 100 km).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed; the same seed gives the same bytes.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write into (created if missing).")
@_overwrite
@_quiet
def synth(preset: str, seed: int, out_dir: Path, overwrite: bool, quiet: bool) -> None:
    """Write the physics-based synthetic Rhineland scenario.

    \b
    Reads nothing. Writes into OUT:
      EGMS_L3_E..N.._100km_U_synthetic.csv  EGMS L3 vertical CSV tile(s), EPSG:3035, mm
      zones.geojson                          mine outlines and fault traces (EPSG:3035)
      truth.zarr                             the noise-free displacement cube
      scenario.json                          every parameter of the scenario
    """
    from .synth import CONFIG_NAME, TRUTH_NAME, ZONES_NAME, preset as make_preset, write_scenario

    config = make_preset(preset, seed=seed)
    tiles = sorted(out_dir.glob("EGMS_L3_*_100km_U_synthetic.csv")) if out_dir.is_dir() else []
    _refuse_existing([*tiles, *(out_dir / name for name in (ZONES_NAME, TRUTH_NAME, CONFIG_NAME))], overwrite)
    outputs = write_scenario(config, out_dir, progress=not quiet)
    for path in (*outputs.csv, outputs.zones, outputs.truth, outputs.config):
        click.echo(str(path))


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Zarr cube to write.")
@click.option("--spacing", type=float, default=100.0, show_default=True, help="Grid spacing in metres.")
@click.option("--power", type=float, default=2.0, show_default=True, help="IDW power of the inverse distance.")
@click.option("--neighbours", type=int, default=8, show_default=True, help="Points used per cell, at most.")
@click.option("--radius", type=float, default=300.0, show_default=True,
              help="Search radius in metres; cells with no point within it are NaN and not valid.")
@click.option("--max-cells", type=int, default=None,
              help="Refuse a grid of more cells than this (default 50,000,000; 0: no limit).")
@click.option("--cadence", type=float, default=None, metavar="DAYS",
              help="Days between the cube's epochs (default: the spacing of the latest epochs). Epochs between "
                   "its multiples are dropped, a missing one is interpolated (at most 5 %), ending on the last epoch.")
@_overwrite
@_quiet
def grid(inputs: tuple[Path, ...], out: Path, spacing: float, power: float, neighbours: int, radius: float,
         max_cells: int | None, cadence: float | None, overwrite: bool, quiet: bool) -> None:
    """Grid EGMS L3 vertical CSV tiles to a displacement cube by inverse distance weighting.

    \b
    Reads INPUTS: EGMS L3 vertical CSV tiles (.csv, .csv.gz or EGMS .zip), or folders holding them;
    several tiles merge (they must share their epochs).
    Writes OUT, a Zarr cube (EPSG:3035):
      displacement(t, y, x)  float32 mm since the first epoch, NaN where unknown
      valid(y, x)            the cell has a value at every epoch
      support(y, x)          number of points within the radius (at most --neighbours)
    The epochs are kept on a regular cadence (EGMS records past 2021-12-23 turn from 6 to 12 days:
    the cube keeps every other earlier epoch), with a warning saying what was dropped or filled.
    """
    from .grid import MAX_CELLS, IdwParams, check_spacing, grid_files

    check_spacing(spacing)
    if max_cells is not None and max_cells < 0:
        raise InputError(f"must be a number of cells >= 0 (0: no limit), got {max_cells}", field="--max-cells")
    _refuse_clobbering(out, {"INPUTS": inputs})
    _refuse_existing([out], overwrite)
    params = IdwParams(power=power, neighbours=neighbours, radius=radius)
    limit = MAX_CELLS if max_cells is None else (max_cells or None)
    path = grid_files(_expand(inputs), out, spacing=spacing, params=params, progress=not quiet, max_cells=limit,
                      cadence=cadence)
    click.echo(str(path))


ARCH_NAMES = ARCHS


@main.command(context_settings=CONTEXT)
@main_input("cube", old="--cube")
@click.option("--arch", type=click.Choice(ARCH_NAMES), default=DEFAULT_ARCH, show_default=True,
              help="Spatial encoder and temporal model.")
@click.option("--params", default="manual", show_default=True,
              help="`manual` (the packaged manual configurations) or a TOML/JSON file with [model] and [train].")
@click.option("--set", "overrides", multiple=True, metavar="TABLE.KEY=VALUE",
              help="Override one setting, e.g. --set train.max_epochs=5 --set model.readout=skip (repeatable).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed; the same seed gives the same model.")
@click.option("--device", default=None, help="torch device (default: the GPU when there is one, else cpu).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder to write.")
@_overwrite
@_quiet
def train(cube: Path, arch: str, params: str, overrides: tuple[str, ...], seed: int, device: str | None, out: Path,
          overwrite: bool, quiet: bool) -> None:
    """Train one forecasting network on a cube (data-parallel when started with torchrun).

    \b
    Reads CUBE (a Zarr cube) and PARAMS. Writes into OUT:
      model.pt      weights with their config and normalisation (rebuilds the model alone)
      config.json   the model config
      history.csv   train and validation loss per epoch
      metrics.json  test RMSE / MAE / R2 in mm (also per horizon step) beside the baselines
    Data-parallel: torchrun --nproc_per_node N -m insarcast train ... (gloo on CPU, NCCL on GPU).
    """
    _refuse_clobbering(out, {"CUBE": cube})           # before torch is needed: a check of paths only
    _needs_torch("train")
    from .training.params import parse_override
    from .training.runs import train_cube

    _refuse_existing([out / "metrics.json", out / "model.pt"], overwrite)
    on_interrupt(f"the run {out} was not written (a run is written whole at its end); run the command again to "
                 "train from the start")
    metrics = train_cube(cube, arch=arch, params=params, seed=seed, out=out, device=device, progress=not quiet,
                         overrides=dict(parse_override(o) for o in overrides))
    if metrics.get("world_size", 1) == 1 or _is_rank_zero():
        test, base = metrics["test"], metrics["baselines"]["persistence"]
        click.echo(f"{out}  test RMSE {test['rmse']:.3f} mm (persistence {base['rmse']:.3f}), "
                   f"MAE {test['mae']:.3f} mm, R2 {test['r2']:.3f}")


@main.command(context_settings=CONTEXT)
@main_input("cube", old="--cube")
@click.option("--arch", "archs", type=click.Choice(ARCH_NAMES), multiple=True,
              help="Architecture(s) to search (repeatable). [default: all six]")
@click.option("--preset", type=click.Choice(["tiny", "demo", "paper"]), default="paper", show_default=True,
              help="paper: 50 trials (20 random) x 10 runs with the manual windows; demo: a few minutes on 2 "
                   "cores; tiny: tests.")
@click.option("--trials", type=int, help="Complete trials per study (default: the preset's).")
@click.option("--runs", type=int, help="Runs (seeds) per architecture (default: the preset's).")
@click.option("--seed", "seed0", type=SEED, default=0, show_default=True, help="First run seed; runs use seed, seed+1, ...")
@click.option("--storage", help="Optuna storage URL shared by workers, e.g. postgresql://host/db "
                                "[default: sqlite:///OUT/optuna.db].")
@click.option("--keep", type=int, default=10, show_default=True,
              help="Checkpoints kept per architecture: the best trials over all runs.")
@click.option("--no-manual", is_flag=True, help="Do not train the manual configuration beside each study.")
@click.option("--set", "overrides", multiple=True, metavar="TABLE.KEY=VALUE", help="Override a base setting.")
@click.option("--heartbeat", type=int, default=60, show_default=True,
              help="Seconds between trial heartbeats; a trial silent for twice as long is marked FAIL.")
@click.option("--device", default=None, help="torch device (default: the GPU when there is one, else cpu).")
@click.option("--estimate", is_flag=True, help="Print the estimated cost on this machine and stop.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Tune folder.")
@_quiet
def tune(cube: Path, archs: tuple[str, ...], preset: str, trials: int | None, runs: int | None, seed0: int,
         storage: str | None, keep: int, no_manual: bool, overrides: tuple[str, ...], heartbeat: int,
         device: str | None, estimate: bool, out: Path, quiet: bool) -> None:
    """TPE search per architecture and run (Optuna, the paper's sampler), beside the manual runs.

    \b
    Reads CUBE. Writes into OUT (resumes what is there; several workers may share --storage):
      optuna.db                      the studies (unless --storage names another database)
      cube.json                      the cube it was tuned on: a rerun resumes only on that cube
      ARCH/manual/seed_S/            the manual configuration's run (model.pt, metrics.json, ...)
      ARCH/tpe/seed_S/metrics.json   the study's best trial; trials.csv its optimisation history
      ARCH/tpe/seed_S/trial_NNN/     each trial's metrics; model.pt for the --keep best
    Data-parallel trials: torchrun --nproc_per_node N -m insarcast tune ...
    """
    from .cpus import apply_openmp, thread_settings

    apply_openmp(thread_settings())                  # before torch is imported: OpenMP reads it at start
    _refuse_clobbering(out, {"CUBE": cube})           # before torch is needed: a check of paths only
    _needs_torch("tune")
    from .training.params import parse_override
    from .training.tune import Tuner

    archs = archs or ARCH_NAMES
    settings = dict(parse_override(o) for o in overrides)
    tuner = Tuner(cube, out, storage=storage, preset=preset, trials=trials, runs=runs, seed0=seed0, keep=keep,
                  manual=not no_manual, overrides=settings, progress=not quiet, heartbeat=heartbeat, device=device)
    if (preset == "paper" or estimate) and _is_rank_zero():
        hours = tuner.estimate_seconds(archs) / 3600
        click.echo(f"{len(archs)} architectures x {tuner.runs} runs x ({tuner.trials} trials"
                   f"{'' if no_manual else ' + manual'}): at most {hours:.1f} h on this machine "
                   "(early stopping shortens it)", err=True)
        if estimate:
            return
    on_interrupt(f"the finished runs and trials in {out} are kept (a trial that was running is recorded as failed); "
                 "run the same command again to resume")
    summary = tuner.run(archs)
    if _is_rank_zero():
        click.echo(f"{summary['out']}  {summary['studies']} studies in {summary['seconds']:.0f} s")


@main.command(context_settings=CONTEXT)
@click.argument("tune_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="False discovery rate (Benjamini-Hochberg).")
@_overwrite
@_quiet
def compare(tune_dir: Path, out: Path, alpha: float, overwrite: bool, quiet: bool) -> None:
    """Manual against TPE: Welch t-tests with Benjamini-Hochberg correction, and the figures.

    \b
    Reads every run's metrics.json and every trials.csv below TUNE_DIR (an `insarcast tune` folder).
    Writes into OUT:
      runs.csv summary.csv welch.csv baselines.csv histories.csv
      readouts.csv (which decoder readout, pooled or skip, the search chose)
      violins.png (metrics per architecture and strategy), forest.png (mean differences, 95 % CI,
      p_adj, LB), histories.png (best-so-far validation loss per trial, the paper's Figure 5 panels)
    """
    from .compare import compare as run_compare

    _refuse_clobbering(out, {"TUNE_DIR": tune_dir})
    _refuse_existing([out / "welch.csv"], overwrite)
    result = run_compare(tune_dir, out, alpha=alpha)         # its notes are logged as warnings
    for path in result.paths.values():
        click.echo(str(path))


@main.command(context_settings=CONTEXT)
@main_input("tune_dir", old="--tune-dir", exists=True, file_okay=False)
@click.option("--arch", type=click.Choice(ARCH_NAMES), default=DEFAULT_ARCH, show_default=True,
              help="Architecture whose best trials form the ensemble (the paper's choice by default).")
@click.option("--top", type=int, default=10, show_default=True, help="Members: the best trials by validation loss.")
@click.option("--strict", is_flag=True, help="Fail when fewer than --top trials have finished.")
@click.option("--include-manual", is_flag=True, help="Also consider the manual runs.")
@click.option("--cube", type=click.Path(path_type=Path),
              help="Cube for the parity windows (default: the cube each run was trained on).")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Largest ONNX Runtime - torch difference allowed (normalised units).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Ensemble folder.")
@_overwrite
@_quiet
def export(tune_dir: Path, arch: str, top: int, strict: bool, include_manual: bool, cube: Path | None,
           tolerance: float, out: Path, overwrite: bool, quiet: bool) -> None:
    """Export the best trials of an architecture to ONNX, checked for parity, with a manifest.

    \b
    Reads TUNE_DIR (model.pt beside metrics.json). Writes into OUT:
      member_00.onnx ...   input history (batch, T, C, P, P), output forecast (batch, F, P, P)
      ensemble.json        sha256, trial, seed, validation loss, hyperparameters, T/F/P/C, channels,
                           normalisation, grid and epoch spacing, versions (what the UDF checks)
    """
    import warnings

    _refuse_clobbering(out, {"TUNE_DIR": tune_dir, "--cube": cube})   # before torch is imported
    from .export import ExportWarning, export_ensemble
    from .log import LOGGER

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_ensemble(tune_dir, out, arch=arch, top=top, strict=strict, include_manual=include_manual,
                               parity_windows=cube, tolerance=tolerance, overwrite=overwrite, progress=not quiet)
    for warning in caught:
        if issubclass(warning.category, ExportWarning):
            LOGGER.warning(str(warning.message))
    from .udf.manifest import read_manifest

    manifest = read_manifest(path)
    kept = manifest.zero_output_sentence()            # members whose training never beat their reference
    if kept:                                          # a warning when they make the median the reference
        (LOGGER.warning if 2 * manifest.members_zero_output > len(manifest.members) else LOGGER.info)(kept)
    click.echo(str(path))


@main.command(context_settings=CONTEXT)
@main_input("cube", old="--cube")
@click.option("--ensemble", type=click.Path(path_type=Path), required=True, help="Folder from `insarcast export`.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Zarr store of the products to write.")
@click.option("--scheduler", help="dask.distributed scheduler address (default: a LocalCluster on this machine).")
@click.option("--workers", type=int, help="LocalCluster worker processes (default: the CPUs this process may use).")
@click.option("--chunks", type=int, default=256, show_default=True, help="Cells per side of one Dask task.")
@click.option("--overlap", type=int, help="Cells shared by neighbouring tiles (default: P / 4).")
@click.option("--horizon", type=int, help="Horizon step the products describe (default: the last, F).")
@click.option("--mode", type=click.Choice(["change", "cumulative"]), default="change", show_default=True,
              help="change: d(T+h) - d(T); cumulative: displacement since the cube's first epoch.")
@click.option("--thresholds", "thresholds_from", type=click.Path(path_type=Path),
              help="Class thresholds (mm) to use instead of this region's quantiles: a JSON file with q85, q95, "
                   "q99, std_tercile_1, std_tercile_2, or an earlier products store (its attributes).")
@click.option("--threads", type=int, default=1, show_default=True, help="ONNX Runtime threads per worker.")
@click.option("--format", "fmt", type=click.Choice(["zarr", "netcdf"]), default="zarr", show_default=True,
              help="zarr: a Zarr store (what publish and report read); netcdf: one CF 1.11 NetCDF-4 file.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: CUDA when onnxruntime offers it, else the CPU; cuda: fail unless the sessions run on CUDA.")
@click.option("--spatial-filter/--no-spatial-filter", default=None,
              help="Smooth each member's map in space: at a width per pixel chosen by hindcast (residual-hindcast, "
                   "residual-corrected), else the 3 x 3 binomial kernel (default: as the ensemble's inputs have "
                   "it: on for residual-hindcast and residual-corrected, off for the paper's).")
@_overwrite
@_quiet
def forecast(cube: Path, ensemble: Path, out: Path, scheduler: str | None, workers: int | None, chunks: int,
             overlap: int | None, horizon: int | None, mode: str, thresholds_from: Path | None, threads: int,
             fmt: str, device: str, spatial_filter: bool | None, overwrite: bool, quiet: bool) -> None:
    """Ensemble forecast, susceptibility and uncertainty products over a cube (ONNX Runtime on Dask).

    \b
    Reads CUBE and the ENSEMBLE (ensemble.json, member_XX.onnx; no torch needed). Writes OUT (Zarr, or
    with --format netcdf one CF NetCDF-4 file):
      forecast(member, horizon, y, x), median(horizon, y, x)   change since the last epoch, mm
      std, class, p85, p95, p99, mass_low..mass_highest, confidence, rank_variance, bivariate (y, x)
      at the chosen horizon; thresholds q85/q95/q99 and std terciles in the attributes
    With --thresholds the classes use the given thresholds (one pass, no scratch store).
    """
    from .udf.run import check_settings, forecast_cube, read_thresholds

    check_settings(workers=workers, threads=threads, chunks=chunks, overlap=overlap, horizon=horizon)
    _refuse_clobbering(out, {"CUBE": cube, "--ensemble": ensemble, "--thresholds-from": thresholds_from})
    _refuse_existing([out], overwrite)
    thresholds = read_thresholds(thresholds_from) if thresholds_from is not None else None
    path = forecast_cube(cube, ensemble, out, scheduler=scheduler, workers=workers, chunks=chunks, overlap=overlap,
                         horizon=horizon, mode=mode, thresholds=thresholds, threads=threads, progress=not quiet,
                         fmt=fmt, device=device, spatial_filter=spatial_filter)
    click.echo(str(path))


@main.command(context_settings=CONTEXT)
@click.argument("products", type=click.Path(path_type=Path))
@click.option("--ensemble", type=click.Path(path_type=Path), required=True, help="Folder from `insarcast export`.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Catalog folder: created, or extended with this run.")
@click.option("--run-id", help="Id of this forecast run (default: ensemble name and reference time).")
@click.option("--collection", "collection_id", default="insarcast-forecasts", show_default=True)
@click.option("--members", is_flag=True, help="Also publish the member forecasts (one K-band COG per item).")
@_overwrite
@_quiet
def publish(products: Path, ensemble: Path, out: Path, run_id: str | None, collection_id: str, members: bool,
            overwrite: bool, quiet: bool) -> None:
    """Publish products as Cloud-Optimised GeoTIFFs in a static STAC catalog.

    \b
    Reads PRODUCTS (Zarr from `insarcast forecast`) and the ENSEMBLE. Writes or extends OUT:
      catalog.json, insarcast-forecasts/collection.json
      insarcast-forecasts/RUN-hK/      one Item per horizon step (datetime = valid time) with COGs
      insarcast-models/NAME/           the ensemble Collection: one STAC MLM Item per ONNX member, the manifest
    A new run adds its items and widens the extents; other files keep their bytes.
    --overwrite replaces a run of the same id.
    """
    from .stac.publish import publish as run_publish

    _refuse_clobbering(out, {"PRODUCTS": products, "--ensemble": ensemble})
    path = run_publish(products, ensemble, out, run_id=run_id, collection_id=collection_id, overwrite=overwrite,
                       members=members, progress=not quiet)
    click.echo(str(path))


@main.command("publish-cube", context_settings=CONTEXT)
@click.argument("cube", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Catalog folder to write (whole, or not at all).")
@_overwrite
@_quiet
def publish_cube(cube: Path, out: Path, overwrite: bool, quiet: bool) -> None:
    """Publish the displacement cube as a STAC Collection for openEO's load_stac and odc-stac.

    \b
    Reads CUBE (Zarr from `insarcast grid`). Writes OUT:
      catalog.json, insarcast-cube/collection.json  (cube:dimensions x, y, t, bands)
      insarcast-cube/ID-YYYYMMDD/                   one Item per epoch with its COG (float32 mm, NaN nodata)
    Prints the Collection's path: serve OUT over HTTPS and pass its URL to load_stac.
    """
    from .stac.cube_collection import publish_cube as run_publish_cube

    _refuse_clobbering(out, {"CUBE": cube})
    _refuse_existing([out], overwrite)
    click.echo(str(run_publish_cube(cube, out)))


@main.group(context_settings=CONTEXT)
@_quiet
def openeo(quiet: bool) -> None:
    """Build and run the openEO batch job (the UDF on a backend)."""


@openeo.command("build", context_settings=CONTEXT)
@click.option("--cube-stac", required=True, help="URL (or path) of the cube Collection from `publish-cube`.")
@click.option("--ensemble", type=click.Path(path_type=Path), required=True, help="Folder from `insarcast export`.")
@click.option("--bbox", nargs=4, type=float, required=True, help="west south east north, in the cube's CRS.")
@click.option("--thresholds-from", type=click.Path(path_type=Path),
              help="Products Zarr (or JSON) of `insarcast forecast` over the region: the class thresholds "
                   "(default: `openeo run` takes them from a first, statistics job on the backend).")
@click.option("--archive-url", required=True, help="Where insarcast-udf.zip will be served (HTTPS).")
@click.option("--tile", type=int, default=256, show_default=True, help="Cells per side of one UDF call.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Job folder to write.")
@_overwrite
@_quiet
def openeo_build(cube_stac: str, ensemble: Path, bbox: tuple, thresholds_from: Path | None, archive_url: str, tile: int,
                 out: Path, overwrite: bool, quiet: bool) -> None:
    """Write the job folder: insarcast-udf.zip, statistics_graph.json, job.json, job_options.json, and
    process_graph.json when --thresholds-from is given."""
    from .udf.openeo_job import build_job
    from .udf.run import read_thresholds

    _refuse_clobbering(out, {"--ensemble": ensemble, "--thresholds-from": thresholds_from})
    _refuse_existing([out], overwrite)
    click.echo(str(build_job(cube_stac=cube_stac, ensemble=ensemble, bbox=bbox, archive_url=archive_url,
                             thresholds=None if thresholds_from is None else read_thresholds(thresholds_from),
                             tile=tile, out=out)))


@openeo.command("run", context_settings=CONTEXT)
@click.option("--backend", required=True, help="openEO backend URL, e.g. openeo.dataspace.copernicus.eu.")
@click.option("--job", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder from `insarcast openeo build`.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Results folder to write (whole, or not at all).")
@click.option("--auth", type=click.Choice(["oidc", "none"]), default="oidc", show_default=True,
              help="oidc: log in with the backend's OpenID Connect provider; none: a backend without login.")
@click.option("--poll", type=float, default=20.0, show_default=True, help="Seconds between status checks.")
@_overwrite
@_quiet
def openeo_run(backend: str, job: Path, out: Path, auth: str, poll: float, overwrite: bool, quiet: bool) -> None:
    """Run the job on BACKEND; write the products and their STAC catalog.

    \b
    Runs the statistics job first when JOB has no products graph (exact thresholds), then the products job;
    writes OUT:
      products.zarr    the products of `insarcast forecast` on the same cube (variables, thresholds, times)
      catalog/         products.zarr published as by `insarcast publish` (COGs, STAC, the ensemble's Items)
      result/          the products job's files as downloaded, job-results.json
      statistics/, thresholds.json, process_graph.json   when the statistics job ran
    """
    from functools import partial

    from .stac.publish import publish
    from .udf.openeo_submit import run_job

    _refuse_clobbering(out, {"--job": job})
    _refuse_existing([out], overwrite)
    click.echo(str(run_job(backend=backend, job=job, out=out, poll_s=poll, auth=None if auth == "none" else auth,
                           overwrite=overwrite, publish=partial(publish, progress=not quiet))))


@main.command("validate-stac", context_settings=CONTEXT)
@click.argument("catalog", type=click.Path(path_type=Path))
@click.option("--schemas", type=click.Path(path_type=Path),
              help="Folder of STAC / GeoJSON JSON schemas laid out like the shared stac-schemas (offline; "
                   "default: the copy shipped with insarcast).")
@click.option("--no-cogs", is_flag=True, help="Skip rio-cogeo's validation of the GeoTIFFs.")
@_quiet
def validate_stac(catalog: Path, schemas: Path | None, no_cogs: bool, quiet: bool) -> None:
    """Validate every JSON of a catalog offline, every asset's checksum, and the COGs.

    \b
    Reads CATALOG and the schemas (shipped, or --schemas; never the network). Writes nothing.
    Prints one line per problem (file, field: message) and exits 2 if there is any; then pystac's
    own validator checks every STAC JSON against the same schemas (lines "invalid (pystac)").
    """
    from .stac.pystac_check import pystac_problems
    from .stac.validate import validate_catalog

    problems = validate_catalog(catalog, schemas=schemas, check_cogs=not no_cogs)
    for problem in problems:
        click.echo(f"insarcast: invalid: {problem}", err=True)
    second = pystac_problems(catalog, schemas=schemas)      # pystac's own validator, same schemas
    for problem in second:
        click.echo(f"insarcast: invalid (pystac): {problem}", err=True)
    if problems or second:
        sys.exit(2)
    click.echo(f"{catalog}: valid")


@main.command(context_settings=CONTEXT)
@main_input("products", old="--products")
@click.option("--cube", type=click.Path(path_type=Path), required=True, help="Zarr cube the products came from.")
@click.option("--compare", "compare_dir", type=click.Path(path_type=Path), required=True,
              help="Folder of `insarcast compare`.")
@click.option("--zones", type=click.Path(path_type=Path), help="GeoJSON of mine outlines and fault traces.")
@click.option("--ensemble", type=click.Path(path_type=Path),
              help="Ensemble folder for the hindcast (default: the one the products name).")
@click.option("--tune-dir", type=click.Path(path_type=Path),
              help="Tune folder with the manual and TPE models (default: where the compare runs came from).")
@click.option("--anchor", type=int, help="Hindcast anchor epoch index, negative counting from the end (default: F epochs before the cube's end).")
@click.option("--truth", type=click.Path(path_type=Path),
              help="Noise-free cube of a synthetic scenario (truth.zarr): the skill table scores against it too.")
@click.option("--origins", type=click.IntRange(min=1), default=6, show_default=True,
              help="Forecast origins over the test period for the skill table.")
@click.option("--bands", default="250,500,1000", show_default=True,
              help="Distance band edges around the zones, metres, comma separated.")
@click.option("--screenshot", is_flag=True, help="Check the page in headless Chromium and keep screenshot.png.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Report folder to write.")
@_overwrite
@_quiet
def report(cube: Path, products: Path, compare_dir: Path, zones: Path | None, ensemble: Path | None,
           tune_dir: Path | None, anchor: int | None, truth: Path | None, origins: int, bands: str, screenshot: bool,
           out: Path, overwrite: bool, quiet: bool) -> None:
    """Write the report: metrics, maps, residual diagnostics, zones, calibration, decision tiers.

    \b
    Reads CUBE, PRODUCTS, COMPARE, ZONES, TRUTH, the ensemble (for a hindcast of the test period and
    the skill table over many origins, which the page leads with) and the best manual and TPE models
    of the tune folder. Writes into OUT, all together or nothing:
      index.html        one self-contained page (figures embedded, no script, no external resource)
      figures/*.png     the figures (Figures 3-5, 7-10 of the paper, calibration, tiers)
      tables/*.csv      every table of the page; key_numbers.csv holds the numbers quoted in the text
    """
    from .report import build_report

    try:
        edges = tuple(float(b) for b in bands.split(","))
    except ValueError:
        raise InputError(f"expected comma-separated metres, got {bands!r}", field="--bands") from None
    _refuse_clobbering(out, {"--cube": cube, "PRODUCTS": products, "--compare": compare_dir, "--zones": zones,
                             "--ensemble": ensemble, "--tune-dir": tune_dir, "--truth": truth})
    _refuse_existing([out], overwrite)
    path = build_report(cube=cube, products=products, compare_dir=compare_dir, zones=zones, out=out,
                        tune_dir=tune_dir, ensemble=ensemble, anchor=anchor, bands=edges, browser_check=screenshot,
                        progress=not quiet, truth=truth, origins=origins)
    click.echo(str(path))


@main.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Demo folder (created if missing; a demo folder is resumed).")
@click.option("--preset", type=click.Choice(["tiny", "demo", "paper"]), default="demo", show_default=True,
              help="tiny: tests (1 minute on 2 idle cores, 6.5 on 2 busy ones); demo: ~25 km scenario (about 7 minutes on 2 cores); paper: the paper's "
                   "protocol on the 200 x 100 km Rhineland scenario (hours; the estimate is printed first).")
@click.option("--egms", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="EGMS L3 vertical tile (.csv, .csv.gz, .zip) or folder of them, gridded instead of the "
                   "synthetic scenario (repeatable).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the scenario and of the first tune run.")
@_overwrite
@_quiet
def demo(out: Path, preset: str, egms: tuple[Path, ...], seed: int, overwrite: bool, quiet: bool) -> None:
    """Run the whole pipeline: synth, grid, tune, compare, export, forecast, publish, report.

    \b
    Reads nothing (the embedded synthetic scenario), or the --egms tiles. Writes into OUT:
      scenario/       synthetic EGMS CSV tile(s), zones.geojson, truth.zarr, scenario.json
      cube.zarr       the gridded cube            tune/      the six architectures, manual and TPE
      compare/        welch.csv and figures       ensemble/  ONNX members and ensemble.json
      products.zarr   forecast products           catalog/   STAC catalog.json with COGs
      report/         index.html
    One line per stage with its wall time. Run again without --overwrite, it reuses what is there.
    """
    from .cpus import apply_openmp, thread_settings

    apply_openmp(thread_settings())                  # before torch is imported: OpenMP reads it at start
    _needs_torch("demo")
    from .demo import run_demo

    on_interrupt(f"the finished stages in {out} are kept; run the same command again without --overwrite to "
                 "resume")
    run_demo(out, preset=preset, egms=list(egms) or None, seed=seed, overwrite=overwrite, progress=not quiet,
             echo=click.echo)


def _expand(inputs: tuple[Path, ...]) -> list[Path]:
    """Files as given; a folder stands for the EGMS tiles inside it."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith((".csv", ".csv.gz", ".zip")))
            if not found:
                raise InputError("folder holds no .csv, .csv.gz or .zip tile", path=path)
            files.extend(found)
        else:
            files.append(path)
    return files


if __name__ == "__main__":  # pragma: no cover
    main()
