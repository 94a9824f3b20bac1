"""Welch's test, Benjamini–Hochberg and the manual-versus-TPE comparison (tables and figures)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from insarcast import compare as compare_mod
from insarcast.compare import compare, forest_rows, load_histories
from insarcast.errors import InputError, MissingDependencyError
from insarcast.stats import benjamini_hochberg, welch

# ----------------------------------------------------------------------------------------- Welch

A = [1.0, 2.0, 3.0, 4.0]
B = [2.0, 4.0, 6.0, 8.0, 10.0]


def test_welch_matches_the_formulas_by_hand():
    # means 2.5 and 6; sample variances 5/3 and 10
    v_a, v_b = (5 / 3) / 4, 10 / 5
    se = math.sqrt(v_a + v_b)
    df = (v_a + v_b) ** 2 / (v_a ** 2 / 3 + v_b ** 2 / 4)
    t = (2.5 - 6.0) / se
    w = welch(A, B)
    assert w.diff == pytest.approx(-3.5, abs=1e-12)
    assert w.se == pytest.approx(se, abs=1e-12)
    assert w.t == pytest.approx(t, abs=1e-12)
    assert w.df == pytest.approx(df, abs=1e-12)
    # the numbers above, worked out once and written down (and checked without scipy: mpmath at 30
    # digits, p = I_{df/(df+t^2)}(df/2, 1/2) and the t quantiles by root finding on that CDF)
    assert stats.t.ppf(0.975, df) == pytest.approx(2.4993310929, abs=1e-8)
    assert stats.t.ppf(0.95, df) == pytest.approx(1.9738091556, abs=1e-8)
    assert se == pytest.approx(1.5545631755, abs=1e-6)
    assert w.t == pytest.approx(-2.2514363232, abs=1e-6)
    assert w.df == pytest.approx(5.5207877462, abs=1e-6)
    assert w.p == pytest.approx(0.0691335932, abs=1e-6)
    assert w.p == pytest.approx(2 * stats.t.sf(abs(t), df), abs=1e-12)
    half = stats.t.ppf(0.975, df) * se
    assert (w.ci_low, w.ci_high) == pytest.approx((-3.5 - half, -3.5 + half), abs=1e-12)
    assert (w.ci_low, w.ci_high) == pytest.approx((-7.3853680805, 0.3853680805), abs=1e-6)
    assert w.lower_bound == pytest.approx(-3.5 - stats.t.ppf(0.95, df) * se, abs=1e-12)
    assert w.lower_bound == pytest.approx(-6.5684110287, abs=1e-6)
    # the one-sided bound lies between the two-sided interval's ends
    assert w.ci_low < w.lower_bound < w.diff


def test_welch_agrees_with_scipy_and_is_antisymmetric():
    ref = stats.ttest_ind(A, B, equal_var=False)
    w = welch(A, B, confidence=0.9)
    assert (w.t, w.p, w.df) == pytest.approx((ref.statistic, ref.pvalue, ref.df), rel=1e-12)
    assert (w.ci_low, w.ci_high) == pytest.approx(tuple(ref.confidence_interval(0.9)), rel=1e-12)
    r = welch(B, A, confidence=0.9)
    assert (r.diff, r.t, r.p) == pytest.approx((-w.diff, -w.t, w.p), rel=1e-12)
    assert (r.ci_low, r.ci_high) == pytest.approx((-w.ci_high, -w.ci_low), rel=1e-12)


def test_welch_refuses_too_few_or_bad_values_and_handles_constant_samples():
    with pytest.raises(ValueError, match="at least 2"):
        welch([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        welch([1.0, np.nan], [1.0, 2.0])
    w = welch([1.0, 1.0], [2.0, 2.0])
    assert w.diff == -1.0 and math.isnan(w.p) and math.isnan(w.t)


# ---------------------------------------------------------------------------- Benjamini–Hochberg

# The published worked example: Benjamini & Hochberg (1995), "Controlling the false discovery rate",
# J. R. Stat. Soc. B 57(1), 289-300, section 4: the 15 p-values of the TAPS thrombolysis trial
# (Neuhaus et al. 1992); at q = 0.05 the procedure rejects the four smallest. Their BH-adjusted values,
# as printed (8 decimals) in the Examples of scipy.stats.false_discovery_control (SciPy >= 1.11), which
# works the same example:
BH_P = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459,
        0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.000]
BH_ADJ = [0.0015, 0.003, 0.0095, 0.035625, 0.0603, 0.06385714, 0.06385714, 0.0645, 0.0765,
          0.486, 0.58118182, 0.714875, 0.75323077, 0.81321429, 1.0]


def test_bh_reproduces_the_published_example():
    adj = benjamini_hochberg(BH_P)
    np.testing.assert_allclose(adj, BH_ADJ, rtol=0, atol=5e-9)
    assert int((adj <= 0.05).sum()) == 4                    # the four rejections of BH (1995)
    # and by hand: p_adj(i) = min over j >= i of 15 p(j) / j; e.g. i = 6: min(15 * 0.0278 / 6,
    # 15 * 0.0298 / 7, ...) = 15 * 0.0298 / 7, the value of i = 7
    assert adj[5] == adj[6] == pytest.approx(15 * 0.0298 / 7, abs=1e-15)
    # shuffled input keeps its order
    order = np.random.default_rng(3).permutation(15)
    np.testing.assert_allclose(benjamini_hochberg(np.asarray(BH_P)[order]), np.asarray(BH_ADJ)[order], atol=5e-9)


def test_bh_keeps_order_is_monotone_capped_and_matches_the_definition():
    rng = np.random.default_rng(7)
    p = rng.uniform(0, 1, 40) ** 3
    adj = benjamini_hochberg(p)
    ranked = np.sort(p)
    by_definition = [min(1.0, min(40 * ranked[j] / (j + 1) for j in range(i, 40))) for i in range(40)]
    np.testing.assert_allclose(np.sort(adj), by_definition, rtol=1e-12)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0) and np.all(adj >= p) and np.all(adj <= 1)
    shuffled = rng.permutation(40)
    np.testing.assert_allclose(benjamini_hochberg(p[shuffled]), adj[shuffled])
    # NaN (a test that could not be made) stays NaN and does not count
    with_nan = benjamini_hochberg([0.01, np.nan, 0.04])
    np.testing.assert_allclose(with_nan, [0.02, np.nan, 0.04])
    with pytest.raises(ValueError):
        benjamini_hochberg([0.5, 1.5])


# -------------------------------------------------------------------------------- the comparison

# known test metrics: arch -> strategy -> metric -> three seeds
VALUES = {
    "cnn-lstm": {
        "manual": {"rmse": [4.0, 4.4, 4.9], "mae": [3.0, 3.3, 3.5], "r2": [0.60, 0.62, 0.58]},
        "tpe": {"rmse": [3.1, 3.0, 3.3], "mae": [2.2, 2.4, 2.3], "r2": [0.70, 0.73, 0.71]},
    },
    "resnet-transformer": {
        "manual": {"rmse": [3.5, 3.6, 3.2], "mae": [2.6, 2.5, 2.4], "r2": [0.66, 0.69, 0.65]},
        "tpe": {"rmse": [2.2, 2.5, 2.4], "mae": [1.7, 1.8, 1.6], "r2": [0.80, 0.79, 0.82]},
    },
}
BASELINES = {"persistence": {"rmse": 6.0, "mae": 4.5, "r2": 0.0},
             "linear": {"rmse": 5.0, "mae": 3.8, "r2": 0.3},
             "trend_annual": {"rmse": 4.8, "mae": 3.6, "r2": 0.35},
             "seasonal_naive": {"rmse": 7.0, "mae": 5.0, "r2": -0.2}}
# one TPE study's objective values (None: not complete)
HISTORY = [(5.0, "COMPLETE"), (None, "FAIL"), (4.0, "COMPLETE"), (None, "PRUNED"), (4.5, "COMPLETE"),
           (3.0, "COMPLETE")]
READOUT = ["pooled", "skip", "skip", "pooled", "pooled", "skip"]        # the readout each trial chose


def _metrics(arch, strategy, seed, values):
    block = lambda m: {"n": 1000, **m, "per_horizon": {k: [v] * 3 for k, v in m.items()}}
    return {"arch": arch, "strategy": strategy, "seed": seed, "val_loss": 0.1 + seed / 100,
            "test": block({m: values[m][seed] for m in ("rmse", "mae", "r2")}),
            "baselines": {name: block(dict(b)) for name, b in BASELINES.items()}}


@pytest.fixture()
def run_dir(tmp_path):
    root = tmp_path / "runs"
    for arch, by_strategy in VALUES.items():
        for strategy, values in by_strategy.items():
            for seed in range(3):
                d = root / strategy / arch / f"seed{seed}"
                d.mkdir(parents=True)
                (d / "metrics.json").write_text(json.dumps(_metrics(arch, strategy, seed, values)))
        for seed in range(3):
            rows = [{"arch": arch, "seed": seed, "number": k, "state": state,
                     "value": "" if v is None else v + seed, "readout": READOUT[k]}
                    for k, (v, state) in enumerate(HISTORY)]
            pd.DataFrame(rows).to_csv(root / "tpe" / arch / f"seed{seed}" / "trials.csv", index=False)
    return root


def _mean(x):
    return sum(x) / len(x)


def test_compare_writes_tables_with_hand_computed_differences(run_dir, tmp_path):
    out = tmp_path / "out"
    result = compare(run_dir, out, figures=False)
    tables = ("runs", "summary", "welch", "baselines", "histories", "readouts")
    for name in tables:
        assert result.paths[name] == out / f"{name}.csv" and result.paths[name].is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.csv" for n in tables)

    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.columns[:6]) == ["arch", "strategy", "seed", "rmse", "mae", "r2"]
    assert len(runs) == 12

    summary = pd.read_csv(out / "summary.csv")
    row = summary[(summary.arch == "cnn-lstm") & (summary.strategy == "manual") & (summary.metric == "rmse")].iloc[0]
    assert row["mean"] == pytest.approx(_mean([4.0, 4.4, 4.9])) and row["n"] == 3
    assert row["std"] == pytest.approx(np.std([4.0, 4.4, 4.9], ddof=1))

    welch_df = pd.read_csv(out / "welch.csv")
    assert list(welch_df.columns) == ["arch", "metric", "n_manual", "n_tpe", "mean_manual", "mean_tpe", "diff",
                                      "ci_low", "ci_high", "lb95", "lb95_relative", "t", "df", "p", "p_adj",
                                      "significant"]
    assert len(welch_df) == 6
    for _, r in welch_df.iterrows():
        manual, tpe = VALUES[r.arch]["manual"][r.metric], VALUES[r.arch]["tpe"][r.metric]
        expected = _mean(tpe) - _mean(manual) if r.metric == "r2" else _mean(manual) - _mean(tpe)
        assert r["diff"] == pytest.approx(expected, abs=1e-12)
        assert r["diff"] > 0                                   # TPE is better everywhere here
        assert (r.n_manual, r.n_tpe) == (3, 3)
        assert r.ci_low < r.lb95 < r["diff"] < r.ci_high
        assert r.lb95_relative == pytest.approx(r.lb95 / abs(_mean(manual)), rel=1e-12)   # share of manual
    np.testing.assert_allclose(welch_df["p_adj"], benjamini_hochberg(welch_df["p"].to_numpy()), rtol=1e-12)
    assert (welch_df["significant"] == (welch_df["p_adj"] <= 0.05)).all()
    # each row is the Welch test of its two samples, in the "TPE better" orientation
    for _, r in welch_df.iterrows():
        manual, tpe = VALUES[r.arch]["manual"][r.metric], VALUES[r.arch]["tpe"][r.metric]
        w = welch(tpe, manual) if r.metric == "r2" else welch(manual, tpe)
        assert (r.t, r.df, r.p, r.ci_low, r.ci_high, r.lb95) == pytest.approx(
            (w.t, w.df, w.p, w.ci_low, w.ci_high, w.lower_bound), rel=1e-12)
    pd.testing.assert_frame_equal(result.welch.reset_index(drop=True), welch_df, check_dtype=False)

    baselines = pd.read_csv(out / "baselines.csv")
    assert len(baselines) == 12 and baselines["consistent"].all() and (baselines["n_runs"] == 12).all()
    b = baselines.set_index(["baseline", "metric"])
    assert b.loc[("linear", "rmse"), "mean"] == pytest.approx(5.0)
    assert b.loc[("persistence", "r2"), "std"] == pytest.approx(0.0)

    histories = pd.read_csv(out / "histories.csv")
    assert list(histories.columns) == ["arch", "seed", "trial", "state", "value", "best_so_far"]
    study = histories[(histories.arch == "cnn-lstm") & (histories.seed == 1)]
    assert list(study["trial"]) == [0, 1, 2, 3, 4, 5]
    assert list(study["best_so_far"]) == [6.0, 6.0, 5.0, 5.0, 5.0, 4.0]
    assert study["value"].isna().tolist() == [False, True, False, True, False, False]

    # complete trials 0 (pooled, 5), 2 (skip, 4), 4 (pooled, 4.5), 5 (skip, 3), plus the seed, per study;
    # the best of every study is trial 5 (skip)
    readouts = pd.read_csv(out / "readouts.csv")
    assert list(readouts.columns) == ["arch", "readout", "trials", "best_val_loss", "median_val_loss", "studies_won"]
    r = readouts.set_index(["arch", "readout"])
    assert r.loc[("cnn-lstm", "skip"), "trials"] == 6 and r.loc[("cnn-lstm", "pooled"), "trials"] == 6
    assert r.loc[("cnn-lstm", "skip"), "best_val_loss"] == 3.0
    assert r.loc[("cnn-lstm", "pooled"), "median_val_loss"] == pytest.approx(np.median([5, 4.5, 6, 5.5, 7, 6.5]))
    assert r.loc[("cnn-lstm", "skip"), "studies_won"] == 3 and r.loc[("cnn-lstm", "pooled"), "studies_won"] == 0


def test_forest_rows_are_the_welch_numbers(run_dir, tmp_path):
    result = compare(run_dir, tmp_path / "out", figures=False)
    rows = forest_rows(result.welch)
    assert len(rows) == len(result.welch) == 6
    merged = rows.merge(result.welch, on=["arch", "metric"], suffixes=("", "_table"))
    assert len(merged) == 6
    for column in ("diff", "ci_low", "ci_high", "lb95", "p_adj", "significant"):
        assert (merged[column] == merged[f"{column}_table"]).all(), column
    for metric in ("rmse", "mae", "r2"):
        assert list(rows.loc[rows.metric == metric, "label"]) == ["CL", "RT"]
    assert all(f"p_adj={p:.2g}" in t and f"LB={lb:.3g} ({100 * rel:.2g} %)" in t
               for p, lb, rel, t in zip(rows.p_adj, rows.lb95, rows.lb95_relative, rows.text))


def test_compare_writes_the_figures_and_draws_the_forest_numbers(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    result = compare(run_dir, out)
    for name in ("violins", "forest", "histories"):
        path = result.paths[f"{name}_png"]
        assert path == out / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    rows = forest_rows(result.welch)
    fig = compare_mod.forest_figure(rows)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3
    for ax, metric in zip(panels, ("rmse", "mae", "r2")):
        part = rows[rows.metric == metric]
        points = next(c for c in ax.collections if c.get_gid() == "diff").get_offsets()
        np.testing.assert_array_equal(np.asarray(points)[:, 0], part["diff"])
        bars = next(c for c in ax.collections if c.get_gid() == "ci").get_segments()
        np.testing.assert_array_equal([[s[0][0], s[1][0]] for s in bars], part[["ci_low", "ci_high"]].to_numpy())
    texts = [t.get_text() for ax in fig.axes if not ax.get_title() for t in ax.get_yticklabels()]
    assert texts == list(rows["text"])


def test_the_histories_figure_has_the_papers_panels_and_draws_the_table(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    histories = load_histories(run_dir)
    fig = compare_mod.histories_figure(histories)
    panels = [ax for ax in fig.axes if ax.get_title()]
    # Figure 5: (a) LSTM, (b) Transformer with the temporal model fixed, (c) CNN, (e) ResNet with the
    # encoder fixed; no GCN run here, so no panel (d)
    assert [ax.get_title() for ax in panels] == ["(a) LSTM: CL", "(b) Transformer: RT", "(c) CNN: CL",
                                                 "(e) ResNet: RT"]
    for ax, arch in zip(panels, ["cnn-lstm", "resnet-transformer", "cnn-lstm", "resnet-transformer"]):
        lines = {line.get_gid(): line for line in ax.get_lines()}
        assert sorted(lines) == sorted([f"mean:{arch}"] + [f"run:{arch}:{seed}" for seed in range(3)])
        part = histories[histories.arch == arch]
        mean = part.groupby("trial")["best_so_far"].mean()
        np.testing.assert_array_equal(lines[f"mean:{arch}"].get_xdata(), mean.index)
        np.testing.assert_allclose(lines[f"mean:{arch}"].get_ydata(), mean.to_numpy())
        assert lines[f"mean:{arch}"].get_linestyle() == "-"
        dots = {c.get_gid(): c for c in ax.collections}
        for seed in range(3):
            run = lines[f"run:{arch}:{seed}"]
            assert run.get_linestyle() == "--"
            np.testing.assert_allclose(run.get_ydata(), part[part.seed == seed]["best_so_far"])
            study = part[(part.seed == seed) & part["value"].notna()]
            np.testing.assert_allclose(dots[f"trials:{arch}:{seed}"].get_offsets()[:, 1], study["value"])
    six = pd.concat([histories.assign(arch=a) for a in compare_mod.ARCHS])
    titles = [ax.get_title() for ax in compare_mod.histories_figure(six).axes if ax.get_title()]
    assert titles == ["(a) LSTM: CL, GL, RL", "(b) Transformer: CT, GT, RT", "(c) CNN: CL, CT", "(d) GCN: GL, GT",
                      "(e) ResNet: RL, RT"]


def test_missing_matplotlib_is_a_clear_error_and_writes_nothing(run_dir, tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "out"
    with pytest.raises(MissingDependencyError, match="matplotlib"):
        compare(run_dir, out)
    assert not out.exists()


def test_a_failure_while_writing_leaves_no_output(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(compare_mod, "_matplotlib", lambda: None)

    def broken(*_):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(compare_mod, "violins_figure", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk on fire"):
        compare(run_dir, out)
    assert list(out.iterdir()) == []            # the tables staged before the failure are gone too


def test_an_arch_with_too_few_runs_is_skipped_with_a_warning(run_dir, tmp_path, caplog):
    for seed in (1, 2):
        (run_dir / "tpe" / "cnn-lstm" / f"seed{seed}" / "metrics.json").unlink()
    with caplog.at_level("WARNING", logger="insarcast"):
        result = compare(run_dir, tmp_path / "out", figures=False)
    assert any("cnn-lstm: skipped" in r.getMessage() for r in caplog.records)
    assert set(result.welch["arch"]) == {"resnet-transformer"} and len(result.welch) == 3
    assert any("cnn-lstm" in note for note in result.warnings)


def test_inconsistent_baselines_are_recorded(run_dir, tmp_path, caplog):
    path = run_dir / "manual" / "cnn-lstm" / "seed0" / "metrics.json"
    doc = json.loads(path.read_text())
    doc["baselines"]["linear"]["rmse"] = 5.5
    path.write_text(json.dumps(doc))
    with caplog.at_level("WARNING", logger="insarcast"):
        compare(run_dir, tmp_path / "out", figures=False)
    assert any("baseline linear rmse differs" in r.getMessage() for r in caplog.records)
    b = pd.read_csv(tmp_path / "out" / "baselines.csv").set_index(["baseline", "metric"])
    assert not b.loc[("linear", "rmse"), "consistent"] and b.loc[("linear", "mae"), "consistent"]
    assert b.loc[("linear", "rmse"), "max"] == 5.5


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["test"].pop("rmse"), "test.rmse"),
    (lambda d: d.pop("arch"), "arch"),
    (lambda d: d.update(seed="3"), "seed"),
    (lambda d: d.update(strategy="random"), "strategy"),
    (lambda d: d["test"].update(r2="high"), "test.r2"),
    (lambda d: d["baselines"]["linear"].pop("mae"), "baselines.linear.mae"),
    (lambda d: d.pop("test"), "test"),
    # finite but so large that the Welch test overflowed (a RuntimeError traceback, scipy "disagreeing")
    (lambda d: d["test"].update(rmse=1e308), "test.rmse"),
    (lambda d: d["baselines"]["linear"].update(r2=-1e200), "baselines.linear.r2"),
    # impossible values, compared as if they were skill
    (lambda d: d["test"].update(mae=-1.0), "test.mae"),
    (lambda d: d["test"].update(r2=1.5), "test.r2"),
])
def test_a_bad_metrics_file_names_the_file_and_the_field(run_dir, tmp_path, edit, field):
    path = run_dir / "tpe" / "resnet-transformer" / "seed2" / "metrics.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as info:
        compare(run_dir, tmp_path / "out", figures=False)
    assert info.value.path == str(path) and info.value.field == field
    assert str(path) in str(info.value) and field in str(info.value)
    assert not (tmp_path / "out").exists()


def test_unreadable_json_empty_directory_and_duplicates_are_input_errors(run_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no metrics.json"):
        compare(empty, tmp_path / "out", figures=False)

    copy = run_dir / "tpe" / "cnn-lstm" / "again"
    copy.mkdir()
    (copy / "metrics.json").write_text((run_dir / "tpe" / "cnn-lstm" / "seed0" / "metrics.json").read_text())
    with pytest.raises(InputError, match="same arch, strategy and seed"):
        compare(run_dir, tmp_path / "out", figures=False)

    (copy / "metrics.json").write_text('{"arch": "cnn-lstm",\n  oops}')
    with pytest.raises(InputError, match="line 2") as info:
        compare(run_dir, tmp_path / "out", figures=False)
    assert info.value.path == str(copy / "metrics.json")


def test_a_bad_trials_file_names_the_file_line_and_column(run_dir):
    path = run_dir / "tpe" / "cnn-lstm" / "seed0" / "trials.csv"
    text = path.read_text().splitlines()
    text[3] = text[3].replace(",2,", ",two,", 1)          # the trial number of data row 3
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError) as info:
        load_histories(run_dir)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 4, "number")

    pd.DataFrame({"arch": ["cnn-lstm"], "seed": [0], "number": [0], "value": [1.0]}).to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        load_histories(run_dir)
    assert (info.value.path, info.value.field) == (str(path), "state")


def test_a_metrics_file_that_is_not_utf8_names_the_file(run_dir, tmp_path):
    """A metrics.json of other bytes stopped `compare` with a UnicodeDecodeError traceback."""
    path = run_dir / "tpe" / "cnn-lstm" / "seed0" / "metrics.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(InputError, match="UTF-8") as info:
        compare(run_dir, tmp_path / "out", figures=False)
    assert info.value.path == str(path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["inf", "1e308"])
def test_a_trial_value_too_large_to_plot_names_the_line(run_dir, tmp_path, value):
    """A trials.csv value of inf or 1e308 stopped `compare` in matplotlib ('arange: cannot compute length')."""
    path = run_dir / "tpe" / "cnn-lstm" / "seed0" / "trials.csv"
    text = path.read_text().splitlines()
    cells = text[1].split(",")
    cells[4] = value                                      # the value of data row 1: arch,seed,number,state,value
    text[1] = ",".join(cells)
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError) as info:
        compare(run_dir, tmp_path / "out")
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, "value")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", [".", "sub"])
def test_the_compare_command_refuses_an_output_in_or_over_the_tune_folder(run_dir, where):
    """`compare TUNE --out TUNE` wrote its tables among the runs; the rule of every verb refuses it."""
    from click.testing import CliRunner

    from insarcast.cli import main

    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    out = run_dir / where
    done = CliRunner().invoke(main, ["compare", str(run_dir), "--out", str(out), "--overwrite", "-q"])
    assert done.exit_code == 2, done.output
    assert "option --out" in done.output and "TUNE_DIR" in done.output
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before


@pytest.mark.parametrize("alpha", [0.0, 1.0, float("nan")])
def test_a_bad_alpha_names_the_option(run_dir, tmp_path, alpha):
    with pytest.raises(InputError, match="option --alpha"):
        compare(run_dir, tmp_path / "out", alpha=alpha, figures=False)
    assert not (tmp_path / "out").exists()


def test_no_histories_is_a_warning_not_an_error(run_dir, tmp_path, caplog):
    for path in run_dir.rglob("trials.csv"):
        path.unlink()
    with caplog.at_level("WARNING", logger="insarcast"):
        compare(run_dir, tmp_path / "out", figures=False)
    assert any("no trials.csv" in r.getMessage() for r in caplog.records)
    assert pd.read_csv(tmp_path / "out" / "histories.csv").empty
    assert pd.read_csv(tmp_path / "out" / "readouts.csv").empty


def test_the_improvement_panel_draws_the_relative_gain_of_tpe_by_hand(run_dir):
    """Figure 3d: 100 (manual - tpe) / manual for RMSE and MAE, 100 (tpe - manual) / |manual| for R²."""
    pytest.importorskip("matplotlib")
    runs, _ = compare_mod.load_runs(run_dir)
    rows = compare_mod.improvement_rows(runs)
    for _, r in rows.iterrows():
        manual, tpe = VALUES[r.arch]["manual"][r.metric], VALUES[r.arch]["tpe"][r.metric]
        gain = _mean(tpe) - _mean(manual) if r.metric == "r2" else _mean(manual) - _mean(tpe)
        assert r.improvement_percent == pytest.approx(100 * gain / abs(_mean(manual)), rel=1e-12)
    fig = compare_mod.violins_figure(runs)
    bars = {p.get_gid(): p.get_height() for ax in fig.axes for p in ax.patches if p.get_gid()}
    for _, r in rows.iterrows():
        assert bars[f"improvement:{r.arch}:{r.metric}"] == pytest.approx(r.improvement_percent)


def test_a_folder_named_metrics_json_is_named(run_dir, tmp_path):
    """A folder where a run's metrics.json belongs stopped `compare` with '[Errno 21] Is a directory' (exit 1)."""
    path = run_dir / "tpe" / "cnn-lstm" / "seed0" / "metrics.json"
    path.unlink()
    path.mkdir()
    with pytest.raises(InputError, match="expected a file, found a folder") as info:
        compare(run_dir, tmp_path / "out", figures=False)
    assert info.value.path == str(path)
    assert not (tmp_path / "out").exists()


def test_the_files_of_single_trials_are_skipped_and_only_trials_is_no_run(run_dir, tmp_path):
    """insarcast tune writes a metrics.json per trial ("kind": "trial") beside the run's: a trial with the
    run's arch, strategy and seed is not a duplicate run, and a folder of trials alone holds no run."""
    from insarcast.compare import load_runs

    before, _ = load_runs(run_dir)
    doc = json.loads((run_dir / "tpe" / "cnn-lstm" / "seed0" / "metrics.json").read_text())
    trial = run_dir / "tpe" / "cnn-lstm" / "seed0" / "trial_003"
    trial.mkdir()
    (trial / "metrics.json").write_text(json.dumps({**doc, "kind": "trial", "test": {"rmse": 9.0}}))
    after, _ = load_runs(run_dir)
    pd.testing.assert_frame_equal(after, before)
    only = tmp_path / "only-trials"
    only.mkdir()
    (only / "metrics.json").write_text((trial / "metrics.json").read_text())
    with pytest.raises(InputError, match="no metrics.json"):
        load_runs(only)
