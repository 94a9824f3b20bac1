"""Manual versus TPE tuning: tables, Welch/Benjamini–Hochberg tests and the paper's Figures 3–5.

Reads, anywhere below a run directory,
- ``metrics.json``, one per trained model run: ``arch``, ``strategy`` (``manual`` or ``tpe``),
  ``seed``, ``val_loss``, ``test`` {``n``, ``rmse``, ``mae``, ``r2``, ``per_horizon``} and
  ``baselines`` {name: {``rmse``, ``mae``, ``r2``, …}} (rmse and mae in mm);
- ``trials.csv``, one per TPE study (arch, seed): columns ``arch, seed, number, state, value`` and,
  when the search chose it, ``readout``.

Writes into the output directory, all together or none (:func:`insarcast.fsutil.staged`):

================  =============================================================================
runs.csv          arch, strategy, seed, rmse, mae, r2, val_loss, n, file
summary.csv       arch, strategy, metric, mean, std, n          (std with ddof = 1)
welch.csv         arch, metric, n_manual, n_tpe, mean_manual, mean_tpe, diff, ci_low, ci_high,
                  lb95, lb95_relative, t, df, p, p_adj, significant
baselines.csv     baseline, metric, mean, std, min, max, n_runs, consistent
histories.csv     arch, seed, trial, state, value, best_so_far
readouts.csv      arch, readout, trials, best_val_loss, median_val_loss, studies_won: which decoder
                  readout (the paper's ``pooled`` or ``skip``) the search's complete trials chose, and
                  how many studies' best trial has it
violins.png       Figure 3: RMSE, MAE, R² per architecture, manual and TPE side by side
forest.png        Figure 4: mean improvement with 95 % CI per architecture and metric
histories.png     Figure 5: best-so-far validation loss per trial, each seed dashed, the mean over
                  seeds solid, grouped as the paper's panels: (a) LSTM and (b) Transformer
                  architectures (temporal model fixed), (c) CNN, (d) GCN, (e) ResNet (encoder fixed)
================  =============================================================================

The sign convention makes a positive difference mean "TPE better": ``diff = mean_manual −
mean_tpe`` for RMSE and MAE, ``diff = mean_tpe − mean_manual`` for R². The 18 Welch tests form one
family for the Benjamini–Hochberg adjustment; ``significant`` is ``p_adj ≤ alpha`` (BH's rule).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .contract import ABBREVIATIONS, ARCHS
from .errors import InputError, MissingDependencyError
from .fsutil import staged
from .log import LOGGER
from .stats import benjamini_hochberg, welch

STRATEGIES = ("manual", "tpe")
METRICS = ("rmse", "mae", "r2")
METRIC_LABELS = {"rmse": "RMSE (mm)", "mae": "MAE (mm)", "r2": "R²"}
HIGHER_IS_BETTER = {"rmse": False, "mae": False, "r2": True}
CONFIDENCE = 0.95          # the CI and LB of welch.csv and the forest plot (column lb95)

MAX_METRIC = 1e100         # larger values in a metrics.json are refused: their squares overflow the statistics

TABLES = ("runs", "summary", "welch", "baselines", "histories", "readouts")
FIGURES = ("violins", "forest", "histories")

WELCH_COLUMNS = ["arch", "metric", "n_manual", "n_tpe", "mean_manual", "mean_tpe", "diff", "ci_low",
                 "ci_high", "lb95", "lb95_relative", "t", "df", "p", "p_adj", "significant"]
FOREST_COLUMNS = ["metric", "arch", "label", "y", "diff", "ci_low", "ci_high", "lb95", "lb95_relative", "p_adj",
                  "significant", "text"]
HISTORY_COLUMNS = ["arch", "seed", "trial", "state", "value", "best_so_far"]
READOUT_COLUMNS = ["arch", "readout", "trials", "best_val_loss", "median_val_loss", "studies_won"]
# The paper's Figure 5: (a, b) the temporal model fixed, (c, d, e) the spatial encoder fixed.
FIGURE5_PANELS = (("(a) LSTM", tuple(a for a in ARCHS if a.endswith("-lstm"))),
                  ("(b) Transformer", tuple(a for a in ARCHS if a.endswith("-transformer"))),
                  ("(c) CNN", tuple(a for a in ARCHS if a.startswith("cnn-"))),
                  ("(d) GCN", tuple(a for a in ARCHS if a.startswith("gcn-"))),
                  ("(e) ResNet", tuple(a for a in ARCHS if a.startswith("resnet-"))))


@dataclass(frozen=True, eq=False)
class CompareResult:
    """What :func:`compare` wrote: ``paths`` maps ``runs``, ``summary``, ``welch``, ``baselines``,
    ``histories``, ``readouts`` (tables, ``.csv``) and ``violins_png``, ``forest_png``, ``histories_png``
    (figures) to their files; ``welch`` is the table of ``welch.csv``; ``warnings`` the notes
    (skipped comparisons, inconsistent baselines, missing histories) also logged as warnings."""

    paths: dict[str, Path]
    welch: pd.DataFrame
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------- reading

def _number(obj: dict, key: str, *, path: Path, where: str, required: bool = True) -> float:
    name = f"{where}{key}"
    if key not in obj:
        if required:
            raise InputError("missing field", path=path, field=name)
        return float("nan")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"expected a finite number, got {value!r}", path=path, field=name)
    if abs(value) > MAX_METRIC:      # the Welch test's squared deviations would overflow to inf
        raise InputError(f"expected a number of magnitude at most {MAX_METRIC:g}, got {value!r}", path=path,
                         field=name)
    if key in ("rmse", "mae") and value < 0 or key == "r2" and value > 1:
        raise InputError(f"expected {'r2 <= 1' if key == 'r2' else key + ' >= 0'}, got {value!r}", path=path,
                         field=name)
    return float(value)


def _object(obj: dict, key: str, *, path: Path, where: str = "") -> dict:
    if key not in obj:
        raise InputError("missing field", path=path, field=f"{where}{key}")
    value = obj[key]
    if not isinstance(value, dict):
        raise InputError(f"expected an object, got {type(value).__name__}", path=path, field=f"{where}{key}")
    return value


def _read_object(path: Path) -> dict:
    """The JSON object in the file ``path``; :class:`InputError` naming it where it is not one."""
    if not path.is_file():
        raise InputError("expected a file, found a folder" if path.is_dir() else "no such file", path=path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start}): not a metrics.json of insarcast", path=path) from None
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object at the top level", path=path)
    return doc


def read_metrics(path: str | os.PathLike) -> tuple[dict, dict[str, dict[str, float]]]:
    """One ``metrics.json``: the run row (arch, strategy, seed, rmse, mae, r2, val_loss, n, file)
    and its baselines {name: {metric: value}}. Raises :class:`InputError` naming file and field."""
    path = Path(path)
    return _metrics_row(_read_object(path), path)


def _metrics_row(doc: dict, path: Path) -> tuple[dict, dict[str, dict[str, float]]]:
    """:func:`read_metrics` of the object ``doc`` read from ``path``."""
    for key in ("arch", "strategy"):
        if key not in doc:
            raise InputError("missing field", path=path, field=key)
        if not isinstance(doc[key], str) or not doc[key]:
            raise InputError(f"expected a non-empty string, got {doc[key]!r}", path=path, field=key)
    if doc["strategy"] not in STRATEGIES:
        raise InputError(f"expected one of {STRATEGIES}, got {doc['strategy']!r}", path=path, field="strategy")
    if "seed" not in doc:
        raise InputError("missing field", path=path, field="seed")
    if isinstance(doc["seed"], bool) or not isinstance(doc["seed"], int):
        raise InputError(f"expected an integer, got {doc['seed']!r}", path=path, field="seed")
    test = _object(doc, "test", path=path)
    row = {"arch": doc["arch"], "strategy": doc["strategy"], "seed": doc["seed"]}
    for metric in METRICS:
        row[metric] = _number(test, metric, path=path, where="test.")
    row["val_loss"] = _number(doc, "val_loss", path=path, where="", required=False)
    row["n"] = _number(test, "n", path=path, where="test.", required=False)
    row["file"] = str(path)
    baselines = {}
    for name in _object(doc, "baselines", path=path):
        entry = _object(doc["baselines"], name, path=path, where="baselines.")
        baselines[name] = {m: _number(entry, m, path=path, where=f"baselines.{name}.") for m in METRICS}
    return row, baselines


def load_runs(run_dir: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run's ``metrics.json`` below ``run_dir``: the runs table and a long baselines table
    (file, baseline, metric, value). A TPE run is its study's best trial; the files of the single
    trials (``"kind": "trial"``, written by ``insarcast tune``) are skipped. Raises :class:`InputError`
    if there is none, if one is bad, or if two files describe the same (arch, strategy, seed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("run directory not found", path=run_dir)
    # each file read once: the single trials of a study ("kind": "trial", written by insarcast tune) skipped
    docs = [(p, doc) for p in sorted(run_dir.rglob("metrics.json")) if (doc := _read_object(p)).get("kind") != "trial"]
    if not docs:
        raise InputError("no metrics.json found below the run directory", path=run_dir)
    rows, base_rows, seen = [], [], {}
    for path, doc in docs:
        row, baselines = _metrics_row(doc, path)
        key = (row["arch"], row["strategy"], row["seed"])
        if key in seen:
            raise InputError(f"same arch, strategy and seed {key} as {seen[key]}", path=path)
        seen[key] = path
        rows.append(row)
        base_rows += [{"file": str(path), "baseline": name, "metric": m, "value": v}
                      for name, values in baselines.items() for m, v in values.items()]
    runs = pd.DataFrame(rows, columns=["arch", "strategy", "seed", *METRICS, "val_loss", "n", "file"])
    runs = runs.sort_values(["arch", "strategy", "seed"], key=_arch_key).reset_index(drop=True)
    return runs, pd.DataFrame(base_rows, columns=["file", "baseline", "metric", "value"])


def load_histories(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every ``trials.csv`` below ``run_dir`` as (arch, seed, trial, state, value, best_so_far).

    Only COMPLETE trials with a value count: ``value`` is NaN for the others, and ``best_so_far``
    (the running minimum of the validation loss over trials 0..k of one study) carries the last
    best across them; it is NaN before a study's first complete trial."""
    return _load_trials(run_dir)[HISTORY_COLUMNS]


def _load_trials(run_dir: str | os.PathLike) -> pd.DataFrame:
    """:func:`load_histories` plus the ``readout`` column (NaN where a file has none)."""
    required = ["arch", "seed", "number", "state", "value"]
    frames = []
    for path in sorted(Path(run_dir).rglob("trials.csv")):
        try:
            df = pd.read_csv(path, dtype={"arch": str, "state": str}, keep_default_na=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f"not a readable CSV: {exc}", path=path) from None
        for column in required:
            if column not in df.columns:
                raise InputError("missing column", path=path, field=column)
        for column in ("arch", "state"):
            if df[column].isna().any():
                i = int(np.flatnonzero(df[column].isna())[0])
                raise InputError("empty value", path=path, line=i + 2, field=column)
        for column in ("seed", "number", "value"):
            values = pd.to_numeric(df[column], errors="coerce")
            bad = values.isna() & df[column].notna()          # present but not a number
            limit = MAX_METRIC if column == "value" else 2 ** 53  # inf, or too large to plot (the axis overflowed)
            bad |= values.abs() > limit
            if column != "value":
                bad |= values.isna() | (values != values.round())  # seed and number: integers, never empty
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InputError(f"expected {'a finite number' if column == 'value' else 'an integer'} of magnitude "
                                 f"at most {limit:g}, "
                                 f"got {str(df[column].iloc[i])!r}", path=path, line=i + 2, field=column)
            df[column] = values
        complete = df["state"].str.upper().eq("COMPLETE") & df["value"].notna()
        df["value"] = df["value"].where(complete)
        readout = df["readout"].astype(object) if "readout" in df.columns else np.nan
        frames.append(df[required].assign(readout=readout, file=str(path)))
    columns = [*HISTORY_COLUMNS, "readout"]
    if not frames:
        return pd.DataFrame(columns=columns)
    trials = pd.concat(frames, ignore_index=True).rename(columns={"number": "trial"})
    trials["seed"] = trials["seed"].astype(int)
    trials["trial"] = trials["trial"].astype(int)
    dup = trials.duplicated(["arch", "seed", "trial"], keep=False)
    if dup.any():
        first = trials[dup].iloc[0]
        files = sorted(set(trials.loc[dup & (trials["arch"] == first["arch"]) & (trials["seed"] == first["seed"])
                                      & (trials["trial"] == first["trial"]), "file"]))
        raise InputError(f"trial {first['trial']} of study ({first['arch']}, seed {first['seed']}) appears more "
                         f"than once (in {', '.join(files)})", path=files[0])
    trials = trials.sort_values(["arch", "seed", "trial"], key=_arch_key).reset_index(drop=True)
    trials["best_so_far"] = trials.groupby(["arch", "seed"])["value"].cummin()
    trials["best_so_far"] = trials.groupby(["arch", "seed"])["best_so_far"].ffill()
    return trials[columns]


def _arch_key(column: pd.Series) -> pd.Series:
    """Sort key: the paper's architecture order first, any other name after, alphabetically."""
    if column.name != "arch":
        return column
    return column.map(lambda a: f"{ARCHS.index(a):02d}" if a in ARCHS else f"99{a}")


def _archs(names) -> list[str]:
    names = set(names)
    return [a for a in ARCHS if a in names] + sorted(names - set(ARCHS))


# ------------------------------------------------------------------------------------ statistics

def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (ddof = 1) and count of each metric per arch and strategy."""
    rows = []
    for arch in _archs(runs["arch"]):
        for strategy in STRATEGIES:
            group = runs[(runs["arch"] == arch) & (runs["strategy"] == strategy)]
            if group.empty:
                continue
            for metric in METRICS:
                v = group[metric].to_numpy(float)
                rows.append({"arch": arch, "strategy": strategy, "metric": metric, "mean": v.mean(),
                             "std": v.std(ddof=1) if v.size > 1 else float("nan"), "n": v.size})
    return pd.DataFrame(rows, columns=["arch", "strategy", "metric", "mean", "std", "n"])


def welch_table(runs: pd.DataFrame, *, alpha: float = 0.05) -> tuple[pd.DataFrame, list[str]]:
    """One Welch test per (arch, metric), TPE better when ``diff`` > 0, then BH over all rows.

    ``diff = mean_manual − mean_tpe`` (RMSE, MAE) or ``mean_tpe − mean_manual`` (R²);
    ``ci_low``/``ci_high`` the two-sided 95 % CI of diff, ``lb95`` its one-sided 95 % lower bound (in
    the metric's units) and ``lb95_relative`` that bound as a share of the manual mean,
    ``lb95 / |mean_manual|`` (the paper's section 5.2 reads LB as "a conservative lower bound for
    relative improvement"; the manual mean is taken as known), ``p`` two-sided, ``p_adj`` Benjamini–Hochberg over the table, ``significant = p_adj ≤ alpha``.
    Architectures with fewer than 2 runs in a strategy are skipped; the notes say which."""
    rows, notes = [], []
    for arch in _archs(runs["arch"]):
        groups = {s: runs[(runs["arch"] == arch) & (runs["strategy"] == s)] for s in STRATEGIES}
        counts = {s: len(g) for s, g in groups.items()}
        if min(counts.values()) < 2:
            notes.append(f"{arch}: skipped in the Welch tests, it needs at least 2 runs per strategy "
                         f"(manual {counts['manual']}, tpe {counts['tpe']})")
            continue
        for metric in METRICS:
            manual = groups["manual"][metric].to_numpy(float)
            tpe = groups["tpe"][metric].to_numpy(float)
            a, b = (tpe, manual) if HIGHER_IS_BETTER[metric] else (manual, tpe)
            w = welch(a, b, confidence=CONFIDENCE)
            if math.isnan(w.p):
                notes.append(f"{arch} {metric}: both samples are constant, the Welch test is undefined")
            rows.append({"arch": arch, "metric": metric, "n_manual": manual.size, "n_tpe": tpe.size,
                         "mean_manual": manual.mean(), "mean_tpe": tpe.mean(), "diff": w.diff,
                         "ci_low": w.ci_low, "ci_high": w.ci_high, "lb95": w.lower_bound,
                         "lb95_relative": _relative(w.lower_bound, manual.mean()),
                         "t": w.t, "df": w.df, "p": w.p})
    table = pd.DataFrame(rows, columns=WELCH_COLUMNS)
    table["p_adj"] = benjamini_hochberg(table["p"].to_numpy(float)) if rows else []
    table["significant"] = (table["p_adj"] <= alpha).astype(bool)
    return table, notes


def _relative(value: float, reference: float) -> float:
    return value / abs(reference) if reference != 0 else float("nan")


def baseline_table(base: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per baseline and metric the mean over runs, with std, min, max and count; ``consistent`` is
    true when max − min ≤ 1e-6 · max(1, |mean|), as it should be: every run sees the same windows."""
    rows, notes = [], []
    for (name, metric), group in base.groupby(["baseline", "metric"], sort=True):
        v = group["value"].to_numpy(float)
        spread = float(v.max() - v.min())
        consistent = spread <= 1e-6 * max(1.0, abs(float(v.mean())))
        if not consistent:
            notes.append(f"baseline {name} {metric} differs between runs (min {v.min():.6g}, max {v.max():.6g}): "
                         "were the runs evaluated on different windows?")
        rows.append({"baseline": name, "metric": metric, "mean": v.mean(),
                     "std": v.std(ddof=1) if v.size > 1 else float("nan"), "min": v.min(), "max": v.max(),
                     "n_runs": v.size, "consistent": consistent})
    return pd.DataFrame(rows, columns=["baseline", "metric", "mean", "std", "min", "max", "n_runs",
                                       "consistent"]), notes


def readout_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and readout over the complete TPE trials: how many chose it, their best and
    median validation loss, and in how many studies (arch, seed) the best trial has it."""
    done = trials[trials["value"].notna() & trials["readout"].notna()]
    if done.empty:
        return pd.DataFrame(columns=READOUT_COLUMNS)
    best = done.loc[done.sort_values(["value", "trial"]).groupby(["arch", "seed"]).head(1).index]
    won = best.groupby(["arch", "readout"]).size()
    rows = []
    for (arch, readout), group in done.groupby(["arch", "readout"], sort=False):
        v = group["value"].to_numpy(float)
        rows.append({"arch": arch, "readout": readout, "trials": v.size, "best_val_loss": v.min(),
                     "median_val_loss": float(np.median(v)), "studies_won": int(won.get((arch, readout), 0))})
    table = pd.DataFrame(rows, columns=READOUT_COLUMNS)
    return table.sort_values(["arch", "readout"], key=_arch_key).reset_index(drop=True)


def forest_rows(welch_df: pd.DataFrame) -> pd.DataFrame:
    """Exactly what the forest plot draws, one row per (metric panel, architecture row).

    ``y`` is the row position in its panel (0 at the top architecture, increasing downwards),
    ``diff`` the point, ``ci_low``–``ci_high`` the bar, ``text`` the right-hand annotation
    (BH-adjusted p, significance marker, the one-sided 95 % lower bound); the numbers are copied
    from ``welch_df`` unchanged."""
    rows = []
    for metric in METRICS:
        part = welch_df[welch_df["metric"] == metric]
        archs = _archs(part["arch"])
        for y, arch in enumerate(archs):
            r = part[part["arch"] == arch].iloc[0]
            rows.append({"metric": metric, "arch": arch, "label": ABBREVIATIONS.get(arch, arch), "y": y,
                         "diff": r["diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "lb95": r["lb95"],
                         "lb95_relative": r["lb95_relative"],
                         "p_adj": r["p_adj"], "significant": bool(r["significant"]),
                         "text": f"p_adj={r['p_adj']:.2g}{' *' if r['significant'] else ''}  LB={r['lb95']:.3g}"
                                 f" ({100 * r['lb95_relative']:.2g} %)"})
    return pd.DataFrame(rows, columns=FOREST_COLUMNS)


# --------------------------------------------------------------------------------------- figures

def _matplotlib():
    """The Agg figure class, imported lazily: the core install does not need matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "the compare figures need matplotlib, which is not installed: pip install 'matplotlib>=3.8'"
        ) from exc

    def figure(**kwargs):
        fig = Figure(layout="constrained", **kwargs)
        FigureCanvasAgg(fig)
        return fig
    return figure


_COLOURS = {"manual": "#7f8c9a", "tpe": "#c0392b"}


def improvement_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 3d's numbers: per architecture and metric the mean improvement of TPE over manual in
    percent of the manual mean, ``100 (manual - tpe) / |manual|`` for RMSE and MAE and
    ``100 (tpe - manual) / |manual|`` for R² (positive: TPE better)."""
    rows = []
    for arch in _archs(runs["arch"]):
        for metric in METRICS:
            means = {s: runs.loc[(runs["arch"] == arch) & (runs["strategy"] == s), metric].mean() for s in STRATEGIES}
            diff = means["tpe"] - means["manual"] if HIGHER_IS_BETTER[metric] else means["manual"] - means["tpe"]
            rows.append({"arch": arch, "metric": metric, "improvement_percent": 100 * _relative(diff, means["manual"])})
    return pd.DataFrame(rows, columns=["arch", "metric", "improvement_percent"])


def violins_figure(runs: pd.DataFrame):
    """Figure 3: (a-c) per metric a panel; per architecture the manual (grey) and TPE (red) violins;
    (d) the improvement of TPE over manual in percent (:func:`improvement_rows`), one bar per
    architecture and metric (gid ``improvement:ARCH:METRIC``)."""
    fig = _matplotlib()(figsize=(17, 4.2))
    axes = fig.subplots(1, len(METRICS) + 1)
    archs = _archs(runs["arch"])
    _improvement_panel(axes[-1], improvement_rows(runs), archs)
    for ax, metric in zip(axes, METRICS):
        for i, arch in enumerate(archs):
            for offset, strategy in ((-0.2, "manual"), (0.2, "tpe")):
                v = runs.loc[(runs["arch"] == arch) & (runs["strategy"] == strategy), metric].to_numpy(float)
                if v.size == 0:
                    continue
                x = i + offset
                if v.size >= 2 and np.ptp(v) > 0:           # a kernel density needs spread
                    parts = ax.violinplot([v], positions=[x], widths=0.36, showmeans=True)
                    for body in parts["bodies"]:
                        body.set_facecolor(_COLOURS[strategy])
                        body.set_alpha(0.45)
                    for key in ("cbars", "cmins", "cmaxes", "cmeans"):
                        parts[key].set_color(_COLOURS[strategy])
                ax.scatter(np.full(v.size, x), v, s=8, color=_COLOURS[strategy], zorder=3)
        ax.set_xticks(range(len(archs)), [ABBREVIATIONS.get(a, a) for a in archs])
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.grid(axis="y", alpha=0.3)
    handles = [axes[0].scatter([], [], color=_COLOURS[s], label=label)
               for s, label in (("manual", "Manual"), ("tpe", "TPE"))]
    fig.legend(handles=handles, loc="outside upper center", ncols=2)
    return fig


def _improvement_panel(ax, rows: pd.DataFrame, archs: list[str]) -> None:
    width = 0.8 / len(METRICS)
    for j, metric in enumerate(METRICS):
        part = rows[rows["metric"] == metric].set_index("arch")
        for i, arch in enumerate(archs):
            value = float(part.loc[arch, "improvement_percent"]) if arch in part.index else float("nan")
            ax.bar(i + (j - (len(METRICS) - 1) / 2) * width, value, width=width, color=f"C{j}",
                   gid=f"improvement:{arch}:{metric}", label=METRIC_LABELS[metric] if i == 0 else None)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(archs)), [ABBREVIATIONS.get(a, a) for a in archs])
    ax.set_ylabel("improvement of TPE over manual (%)")
    ax.set_title("(d) improvement")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def forest_figure(rows: pd.DataFrame):
    """Figure 4 from :func:`forest_rows`: per metric a panel, per architecture the mean difference
    (point) with its 95 % CI (bar), the zero line dashed, and on the right p_adj and the LB."""
    per_panel = int(rows.groupby("metric").size().max()) if len(rows) else 0
    fig = _matplotlib()(figsize=(15, 0.45 * max(3, per_panel) + 1.6))
    axes = fig.subplots(1, len(METRICS))
    for ax, metric in zip(axes, METRICS):
        part = rows[rows["metric"] == metric]
        if part.empty:
            ax.text(0.5, 0.5, "no comparison possible", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        ax.axvline(0.0, color="k", linestyle="--", linewidth=1)
        ax.hlines(part["y"], part["ci_low"], part["ci_high"], color="k", linewidth=1.5, gid="ci")
        colours = np.where(part["significant"], "red", "grey")
        ax.scatter(part["diff"], part["y"], c=colours, s=30, zorder=3, gid="diff")
        ax.set_yticks(part["y"], part["label"])
        ax.set_ylim(len(part) - 0.5, -0.5)
        sign = "TPE − Manual" if HIGHER_IS_BETTER[metric] else "Manual − TPE"
        ax.set_title(f"{METRIC_LABELS[metric]}: {sign}")
        ax.set_xlabel("mean difference, 95 % CI (> 0: TPE better)")
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        right.set_yticks(part["y"], part["text"], fontsize=8)
    return fig


def history_panels(archs) -> list[tuple[str, list[str]]]:
    """The panels of Figure 5 that have data: (title, architectures), as :data:`FIGURE5_PANELS`,
    then one panel per architecture outside the paper's six."""
    present = set(archs)
    panels = []
    for title, members in FIGURE5_PANELS:
        shown = [a for a in members if a in present]
        if shown:
            panels.append((f"{title}: {', '.join(ABBREVIATIONS[a] for a in shown)}", shown))
    panels += [(arch, [arch]) for arch in _archs(present) if arch not in ARCHS]
    return panels


_ARCH_COLOURS = dict(zip(ARCHS, ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")))


def histories_figure(histories: pd.DataFrame):
    """Figure 5: the best-so-far validation loss per trial of every run (dashed, gid ``run:ARCH:SEED``),
    each trial's own loss as a dot (gid ``trials:ARCH:SEED``; the paper's curves show them), and their mean (solid, gid ``mean:ARCH``: at each trial, over the seeds that have a value), one
    colour per architecture, in the paper's panels (:func:`history_panels`)."""
    panels = history_panels(histories["arch"])
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = _matplotlib()(figsize=(4.5 * ncols, 3.4 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    if not panels:
        axes[0].text(0.5, 0.5, "no TPE history (trials.csv) found", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, (title, archs) in zip(axes, panels):
        for arch in archs:
            part = histories[histories["arch"] == arch]
            colour = _ARCH_COLOURS.get(arch)
            for seed, study in part.groupby("seed"):
                ax.plot(study["trial"], study["best_so_far"], linestyle="--", linewidth=0.8, alpha=0.5,
                        color=colour, gid=f"run:{arch}:{seed}")
                done = study[np.isfinite(study["value"].to_numpy(float))]     # each trial's own loss
                ax.scatter(done["trial"], done["value"], s=6, alpha=0.35, color=colour, gid=f"trials:{arch}:{seed}")
            mean = part.groupby("trial")["best_so_far"].mean()
            ax.plot(mean.index, mean.to_numpy(), linewidth=2, color=colour, gid=f"mean:{arch}",
                    label=ABBREVIATIONS.get(arch, arch))
        ax.set_title(title)
        ax.set_xlabel("trial")
        ax.set_ylabel("best validation loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(panels):] if panels else []:
        ax.set_axis_off()
    return fig


# ------------------------------------------------------------------------------------------ main

def compare(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, alpha: float = 0.05,
            figures: bool = True) -> CompareResult:
    """Compare manual and TPE tuning over every run below ``run_dir``; write tables and figures.

    See the module docstring for the files and their columns. ``alpha`` is the FDR level of the
    ``significant`` column; the intervals are always 95 %. With ``figures=False`` only the tables
    are written (no matplotlib needed). Raises :class:`InputError` for bad or missing inputs and
    :class:`MissingDependencyError` when figures are asked for without matplotlib, before writing
    anything; otherwise every output appears together."""
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must lie in (0, 1), got {alpha}", field="--alpha")
    if figures:
        _matplotlib()
    runs, base = load_runs(run_dir)
    trials = _load_trials(run_dir)
    histories = trials[HISTORY_COLUMNS]
    readouts = readout_table(trials)
    summary = summarise(runs)
    table, notes = welch_table(runs, alpha=alpha)
    baselines, base_notes = baseline_table(base)
    notes += base_notes
    if histories.empty and (runs["strategy"] == "tpe").any():
        notes.append("no trials.csv found below the run directory: histories are empty")
    for note in notes:
        LOGGER.warning(note)

    out = Path(out_dir)
    paths = {name: out / f"{name}.csv" for name in TABLES}
    if figures:
        paths.update({f"{name}_png": out / f"{name}.png" for name in FIGURES})
    with staged() as stage:
        for name, frame in (("runs", runs), ("summary", summary), ("welch", table),
                            ("baselines", baselines), ("histories", histories), ("readouts", readouts)):
            frame.to_csv(stage.path(paths[name]), index=False)
        if figures:
            for name, fig in (("violins", violins_figure(runs)), ("forest", forest_figure(forest_rows(table))),
                              ("histories", histories_figure(histories))):
                fig.savefig(stage.path(paths[f"{name}_png"]), format="png", dpi=150)
    return CompareResult(paths=paths, welch=table, warnings=tuple(notes))
