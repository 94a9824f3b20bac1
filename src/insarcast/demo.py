"""`insarcast demo`: the whole pipeline in one folder, as library calls.

synth (or, with ``egms``, the given EGMS tiles) -> grid -> tune (six architectures, TPE beside the
manual runs) -> compare -> export (ResNet+Transformer, top 10) -> forecast -> publish -> report.

Layout of the demo folder::

    demo.json        what this folder was made with (preset, seed, EGMS inputs)
    scenario/        synthetic EGMS CSV tile(s), zones.geojson, truth.zarr, scenario.json
    cube.zarr        the gridded displacement cube
    tune/            the studies and runs (`insarcast tune`)
    compare/         manual against TPE: welch.csv and the figures (`insarcast compare`)
    ensemble/        member_XX.onnx and ensemble.json (`insarcast export`)
    products.zarr    forecast and susceptibility products (`insarcast forecast`)
    catalog/         static STAC catalog with COGs (`insarcast publish`)
    report/          index.html (`insarcast report`)

A stage whose output is there is reused when the demo is run again (the tune resumes where it
stopped); ``overwrite`` redoes every stage. Each stage reports one line with its wall time.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .contract import ARCHS, DEFAULT_ARCH, MANIFEST_NAME
from .errors import InputError
from .log import LOGGER

ENSEMBLE_ARCH = DEFAULT_ARCH
TOP = 10
MAX_WORKERS = 2                  # forecast LocalCluster: the demo must stay polite on a 2-core machine

# demo preset -> (synthetic scenario preset, tune preset)
PRESETS: dict[str, tuple[str, str]] = {"tiny": ("tiny", "tiny"), "demo": ("demo", "demo"),
                                       "paper": ("rhineland", "paper")}

RECORD = "demo.json"
SCENARIO, CUBE, TUNE, COMPARE = "scenario", "cube.zarr", "tune", "compare"
ENSEMBLE, PRODUCTS, CATALOG, REPORT = "ensemble", "products.zarr", "catalog", "report"
OUTPUTS = (SCENARIO, CUBE, TUNE, COMPARE, ENSEMBLE, PRODUCTS, CATALOG, REPORT)

Echo = Callable[..., None]


def _print(line: str, *, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


@dataclass
class Stage:
    """One stage's outcome: ``status`` is "done", "reused", "resumed" or "skipped"."""

    name: str
    status: str
    seconds: float
    path: Path | None
    note: str = ""


@dataclass
class DemoResult:
    """What :func:`run_demo` made: the folder, each stage's outcome and the main files."""

    out: Path
    preset: str
    stages: list[Stage] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """EGMS tiles as given; a folder stands for the .csv, .csv.gz and .zip tiles inside it."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith((".csv", ".csv.gz", ".zip")))
            if not found:
                raise InputError("folder holds no .csv, .csv.gz or .zip tile", path=path)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError("no such EGMS tile or folder", path=path)
    return files


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _check_folder(out: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Refuse to mix runs: the folder must be new, empty, or a demo made with the same settings."""
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", path=out)
    if overwrite or not out.is_dir() or not any(out.iterdir()):
        return
    marker = out / RECORD
    if not marker.is_file():
        raise InputError(f"the folder is not empty and holds no {RECORD} (not a demo folder); choose another "
                         "--out, or pass --overwrite to write the demo's outputs into it", path=out)
    try:
        old = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable ({exc}); pass --overwrite to start again", path=marker) from None
    if old != record:
        def text(r: dict) -> str:
            inputs = f"{len(r.get('egms') or [])} EGMS file(s)" if r.get("egms") else "the synthetic scenario"
            return f"preset {r.get('preset')}, seed {r.get('seed')}, {inputs}"
        raise InputError(f"holds a demo made with {text(old)}, not {text(record)}; pass --overwrite to replace it "
                         "or choose another --out", path=marker)


def _write_record(out: Path, record: dict[str, Any]) -> None:
    from .fsutil import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _tune_state(tuner, archs: Sequence[str]) -> str:
    """"complete" when every run of every study is there, "partial" when some are, else "empty"."""
    root = Path(tuner.out)
    if not root.is_dir():
        return "empty"
    complete, seen = True, False
    for arch in archs:
        for seed in tuner.seeds:
            if tuner.manual:
                manual = root / arch / "manual" / f"seed_{seed}" / "metrics.json"
                seen |= manual.exists()
                complete &= manual.exists()
            best = root / arch / "tpe" / f"seed_{seed}" / "metrics.json"
            seen |= best.exists() or best.parent.is_dir()
            try:
                done = int(json.loads(best.read_text(encoding="utf-8")).get("trials_complete", 0))
            except (OSError, ValueError, TypeError, AttributeError):
                done = 0
            complete &= done >= tuner.trials
    return "complete" if complete else ("partial" if seen else "empty")


@dataclass
class _Run:
    """What the stages of one demo share: the folder's paths, the options, what earlier stages made."""

    out: Path
    preset: str
    seed: int
    tiles: list[Path] | None
    progress: bool
    workers: int | None
    echo: Echo
    result: DemoResult
    paths: dict[str, Path]
    tick: float = 0.0
    zones: Path | None = None
    truth: Path | None = None
    top: int = TOP
    tuner: Any = None

    @property
    def synth_preset(self) -> str:
        return PRESETS[self.preset][0]

    @property
    def tune_preset(self) -> str:
        return PRESETS[self.preset][1]

    def warn(self, text: str) -> None:
        self.result.warnings.append(text)
        LOGGER.warning(text)


#: A stage's outcome before timing: (status, the file or folder to show, a note).
Outcome = tuple[str, "Path | None", str]


def _synth(run: _Run) -> Outcome:
    if run.tiles is not None:
        return "skipped", None, f"gridding {len(run.tiles)} EGMS file(s) instead"
    from .synth import CONFIG_NAME, TRUTH_NAME, ZONES_NAME, preset as scenario_preset, write_scenario

    scenario = run.paths[SCENARIO]
    run.zones, run.truth = scenario / ZONES_NAME, scenario / TRUTH_NAME
    made = [scenario / n for n in (CONFIG_NAME, ZONES_NAME, TRUTH_NAME)]
    run.tiles = sorted(scenario.glob("EGMS_L3_*_100km_U_synthetic.csv"))
    if all(p.exists() for p in made) and run.tiles:
        return "reused", scenario, f"{len(run.tiles)} CSV tile(s)"
    outputs = write_scenario(scenario_preset(run.synth_preset, seed=run.seed), scenario, progress=run.progress)
    run.tiles = list(outputs.csv)
    return "done", scenario, f"scenario {run.synth_preset}, {len(run.tiles)} CSV tile(s), {outputs.n_points} points"


def _grid(run: _Run) -> Outcome:
    cube = run.paths[CUBE]
    reused = cube.exists()
    if not reused:
        from .grid import grid_files

        grid_files(run.tiles, cube, progress=run.progress)
    from .cube import open_cube

    ds = open_cube(cube)
    shape = f"{ds.sizes['t']} epochs x {ds.sizes['y']} x {ds.sizes['x']} cells, {int(ds['valid'].sum())} valid"
    ds.close()
    return "reused" if reused else "done", cube, shape


def _inputs_for(run: _Run) -> dict[str, str]:
    """The tune preset's ``residual-corrected`` inputs need a cube on the grid and epoch spacing their
    synthetic-truth correction was fitted on (100 m, 6 days); EGMS tiles on another (12-day epochs since
    Sentinel-1B failed, say) train ``residual-hindcast`` instead, with a warning."""
    from .cube import open_cube
    from .training.data import check_correction_grid, cube_spacing, epoch_spacing
    from .training.tune import PRESETS as TUNE_PRESETS

    settings = dict(TUNE_PRESETS[run.tune_preset].overrides)
    if settings.get("model.inputs") != "residual-corrected":
        return {}
    ds = open_cube(run.paths[CUBE])
    try:
        check_correction_grid(inputs="residual-corrected", history=settings["model.history"],
                              horizon=settings["model.horizon"], patch=settings["model.patch"],
                              spacing=cube_spacing(ds), epoch_days=epoch_spacing(ds["t"].values))
    except InputError as err:
        run.warn(f"tune: {err.message}; training the inputs 'residual-hindcast' instead")
        return {"model.inputs": "residual-hindcast"}
    return {}


def _tune(run: _Run) -> Outcome:
    from .training.tune import Tuner, estimate_seconds

    tune_dir = run.paths[TUNE]
    run.tuner = tuner = Tuner(run.paths[CUBE], tune_dir, preset=run.tune_preset, seed0=run.seed, keep=TOP,
                              progress=run.progress, overrides=_inputs_for(run))
    run.top = min(TOP, tuner.runs * tuner.trials)     # the members the preset's tune makes: no "fewer than"
    state = _tune_state(tuner, ARCHS)
    studies = f"{len(ARCHS)} architectures x {tuner.runs} runs x ({tuner.trials} trials + manual)"
    if state == "complete":
        return "reused", tune_dir, studies
    if run.tune_preset == "paper":
        hours = estimate_seconds(run.paths[CUBE], preset=run.tune_preset, archs=ARCHS) / 3600
        run.echo(f"tune     estimate  {studies}: at most {hours:.1f} h on this machine "
                 "(early stopping shortens it)")
        run.tick = time.perf_counter()
    tuner.run(ARCHS)
    return "resumed" if state == "partial" else "done", tune_dir, studies


def _compare(run: _Run) -> Outcome:
    welch = run.paths[COMPARE] / "welch.csv"
    if welch.exists():
        return "reused", welch, ""
    from .compare import compare

    compared = compare(run.paths[TUNE], run.paths[COMPARE])          # it logs its notes as warnings
    run.result.warnings.extend(f"compare: {note}" for note in compared.warnings)
    significant = int(compared.welch["significant"].astype(bool).sum()) if len(compared.welch) else 0
    return "done", welch, f"{len(compared.welch)} Welch tests, {significant} significant after Benjamini-Hochberg"


def _export(run: _Run) -> Outcome:
    ensemble = run.paths[ENSEMBLE]
    manifest = ensemble / MANIFEST_NAME
    reused = manifest.exists()
    if not reused:
        from .export import ExportWarning, export_ensemble

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            export_ensemble(run.paths[TUNE], ensemble, arch=ENSEMBLE_ARCH, top=run.top, strict=False,
                            parity_windows=run.paths[CUBE], overwrite=True, progress=run.progress)
        for w in caught:
            if issubclass(w.category, ExportWarning):
                run.warn(f"export: {w.message}")
    from .udf.manifest import read_manifest

    checked = read_manifest(manifest)                                # a reused one is checked as forecast would
    kept = f", {checked.members_zero_output} keep their reference" if checked.members_zero_output else ""
    return "reused" if reused else "done", manifest, f"{len(checked.members)} {ENSEMBLE_ARCH} member(s){kept}"


def _forecast(run: _Run) -> Outcome:
    products = run.paths[PRODUCTS]
    reused = products.exists()
    if not reused:
        from .udf.run import forecast_cube

        n = max(1, min(MAX_WORKERS, run.workers or MAX_WORKERS, os.cpu_count() or 1))
        forecast_cube(run.paths[CUBE], run.paths[ENSEMBLE], products, workers=n, threads=1, progress=run.progress)
    return "reused" if reused else "done", products, ""


def _publish(run: _Run) -> Outcome:
    catalog = run.paths[CATALOG]
    root = catalog / "catalog.json"
    reused = root.exists()
    if not reused:
        from .stac.publish import publish

        _remove(catalog)               # a catalog folder without catalog.json is a leftover
        publish(run.paths[PRODUCTS], run.paths[ENSEMBLE], catalog, progress=run.progress)
    return "reused" if reused else "done", root, ""


def _report(run: _Run) -> Outcome:
    index = run.paths[REPORT] / "index.html"
    if index.exists():
        return "reused", index, ""
    from .report import build_report

    index = build_report(cube=run.paths[CUBE], products=run.paths[PRODUCTS], compare_dir=run.paths[COMPARE],
                         zones=run.zones, out=run.paths[REPORT], tune_dir=run.paths[TUNE],
                         ensemble=run.paths[ENSEMBLE], progress=run.progress, truth=run.truth)
    return "done", Path(index), ""


#: The demo: its stages in order, each a function of the shared :class:`_Run` (one loop runs them).
STAGES: tuple[tuple[str, Callable[[_Run], Outcome]], ...] = (
    ("synth", _synth), ("grid", _grid), ("tune", _tune), ("compare", _compare), ("export", _export),
    ("forecast", _forecast), ("publish", _publish), ("report", _report))


def run_demo(out: str | os.PathLike, *, preset: str = "demo", egms: Sequence[str | os.PathLike] | None = None,
             seed: int = 0, overwrite: bool = False, progress: bool = True, workers: int | None = None,
             echo: Echo = _print) -> DemoResult:
    """Run the pipeline into the folder ``out`` and return what it made.

    ``preset``: tiny (tests; 1 minute on 2 idle cores, 6.5 on 2 busy ones), demo (about 7 minutes on 2 cores)
    or paper (the paper's protocol on the full Rhineland scenario; its tune cost estimate is
    reported first). ``egms``:
    EGMS L3 tiles or folders to grid instead of the synthetic scenario. ``seed``: the scenario's and
    the first tune run's seed. A stage whose output exists is reused unless ``overwrite``.
    ``workers``: forecast LocalCluster processes (default and at most 2). ``echo(line, err=False)``
    receives one line per stage and the summary (the results, on stdout); warnings go to the
    ``insarcast`` logger (:mod:`insarcast.log`).
    """
    if preset not in PRESETS:
        raise InputError(f"expected one of {', '.join(PRESETS)}, got {preset!r}", field="preset")
    out = Path(out)
    tiles = expand_inputs(egms) if egms else None
    record = {"preset": preset, "seed": int(seed),
              "egms": None if tiles is None else [str(p.resolve()) for p in tiles]}
    _check_folder(out, record, overwrite)
    if overwrite:
        for name in OUTPUTS:
            _remove(out / name)
    _write_record(out, record)

    result = DemoResult(out=out, preset=preset)
    run = _Run(out=out, preset=preset, seed=seed, tiles=tiles, progress=progress, workers=workers, echo=echo,
               result=result, paths={name: out / name for name in OUTPUTS})
    started = time.perf_counter()
    shown: dict[str, Path | None] = {}
    for name, step in STAGES:
        run.tick = time.perf_counter()
        status, path, note = step(run)
        seconds = time.perf_counter() - run.tick
        result.stages.append(Stage(name, status, seconds, path, note))
        shown[name] = path
        where = "" if path is None else f"  {path}"
        extra = f"  ({note})" if note else ""
        echo(f"{name:<8} {status:<8} {seconds:7.1f} s{where}{extra}")

    paths = run.paths
    result.paths = {"scenario": paths[SCENARIO], "cube": paths[CUBE], "tune": paths[TUNE],
                    "compare": paths[COMPARE] / "welch.csv", "ensemble": paths[ENSEMBLE] / MANIFEST_NAME,
                    "products": paths[PRODUCTS], "catalog": paths[CATALOG] / "catalog.json",
                    "report": Path(shown["report"])}
    if egms:
        result.paths.pop("scenario")
    total = time.perf_counter() - started
    echo("")
    echo(f"demo ({preset}) finished in {total:.0f} s; everything is in {out}:")
    for line in summary_lines(result):
        echo(line)
    return result

DESCRIPTIONS = {
    "scenario": "synthetic EGMS tiles, zones.geojson, truth.zarr, scenario.json",
    "cube": "gridded displacement cube (t, y, x), mm",
    "tune": "studies and runs of the six architectures, manual and TPE",
    "compare": "manual vs TPE, Welch / Benjamini-Hochberg (figures beside it)",
    "ensemble": "ONNX ensemble manifest (member_XX.onnx beside it)",
    "products": "forecast median, std, class, probabilities (Zarr)",
    "catalog": "STAC catalog with the COGs and the model item",
    "report": "the report: open it in a browser",
}


def summary_lines(result: DemoResult) -> list[str]:
    """The closing summary: one line per output, its path and what it holds."""
    rows = [(str(path), DESCRIPTIONS[key]) for key, path in result.paths.items()]
    width = max(len(p) for p, _ in rows)
    return [f"  {p:<{width}}  {d}" for p, d in rows]
