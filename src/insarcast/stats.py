"""Two-sample statistics for comparing tuning strategies: Welch's t-test and Benjamini–Hochberg.

Pure functions of numpy arrays (scipy for the t distribution); nothing here reads or writes files.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance comparison of mean(a) − mean(b).

    ``ci_low``/``ci_high`` are the two-sided interval at ``confidence``; ``lower_bound`` is the
    one-sided lower confidence bound at the same level (more conservative than nothing, less than
    the two-sided lower end: it uses the t quantile at ``confidence``, not at ``(1+confidence)/2``).
    """

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float          # mean(a) - mean(b)
    se: float            # sqrt(s_a²/n_a + s_b²/n_b)
    t: float             # diff / se
    df: float            # Welch–Satterthwaite degrees of freedom
    p: float             # two-sided p-value
    ci_low: float
    ci_high: float
    lower_bound: float   # diff - t_{confidence, df} * se
    confidence: float


def _sample(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"welch: {name} needs at least 2 values, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"welch: {name} holds non-finite values")
    return x


def welch(a, b, *, confidence: float = 0.95) -> Welch:
    """Welch's t-test of mean(a) − mean(b), with the confidence interval and one-sided bound.

    With sample variances s² (ddof = 1) and sizes n::

        v_a = s_a² / n_a,   v_b = s_b² / n_b
        se  = sqrt(v_a + v_b)
        t   = (mean(a) − mean(b)) / se
        df  = (v_a + v_b)² / (v_a² / (n_a − 1) + v_b² / (n_b − 1))      (Welch–Satterthwaite)
        p   = 2 · P(T_df > |t|)
        CI  = diff ± t_{(1+confidence)/2, df} · se
        LB  = diff − t_{confidence, df} · se

    t and p come from ``scipy.stats.ttest_ind(a, b, equal_var=False)``; they are checked against
    the formulas above. When both samples are constant (se = 0) the test is undefined and every
    derived number is NaN.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"welch: confidence must lie in (0, 1), got {confidence}")
    a = _sample(a, "a")
    b = _sample(b, "b")
    n_a, n_b = a.size, b.size
    mean_a, mean_b = float(a.mean()), float(b.mean())
    diff = mean_a - mean_b
    v_a, v_b = a.var(ddof=1) / n_a, b.var(ddof=1) / n_b
    se = math.sqrt(v_a + v_b)
    nan = float("nan")
    if se == 0.0:
        return Welch(n_a, n_b, mean_a, mean_b, diff, 0.0, nan, nan, nan, nan, nan, nan, confidence)

    df = (v_a + v_b) ** 2 / (v_a ** 2 / (n_a - 1) + v_b ** 2 / (n_b - 1))
    t_own = diff / se
    p_own = 2.0 * _st.t.sf(abs(t_own), df)
    with warnings.catch_warnings():
        # Nearly equal samples (e.g. runs that all kept their untrained baseline) make scipy warn of
        # "catastrophic cancellation"; its t and p are checked against the formulas right below.
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        res = _st.ttest_ind(a, b, equal_var=False)
    t, p = float(res.statistic), float(res.pvalue)
    if not (math.isclose(t, t_own, rel_tol=1e-9, abs_tol=1e-12)
            and math.isclose(p, p_own, rel_tol=1e-7, abs_tol=1e-15)):
        raise RuntimeError(f"welch: scipy (t={t}, p={p}) disagrees with the formulas (t={t_own}, p={p_own})")

    half = float(_st.t.ppf(0.5 + confidence / 2.0, df)) * se
    lower = diff - float(_st.t.ppf(confidence, df)) * se
    return Welch(n_a, n_b, mean_a, mean_b, diff, se, t, float(df), p,
                 diff - half, diff + half, lower, confidence)


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (step-up, false discovery rate), same order as ``p``.

    With the m p-values sorted ascending, p_(1) ≤ … ≤ p_(m)::

        p_adj_(i) = min(1, min_{j ≥ i} m · p_(j) / j)

    so adjusted values are monotone in the raw ones and capped at 1; rejecting p_adj ≤ q is the BH
    procedure at FDR level q. Computed by ``scipy.stats.false_discovery_control(method="bh")``. NaN
    entries (tests that could not be made) stay NaN and do not count in m.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    keep = np.flatnonzero(~np.isnan(flat))
    if keep.size == 0:
        return out
    values = flat[keep]
    if np.any((values < 0) | (values > 1)):
        raise ValueError("benjamini_hochberg: p-values must lie in [0, 1]")
    out_flat = out.ravel()
    out_flat[keep] = _st.false_discovery_control(values, method="bh")
    return out_flat.reshape(p.shape)
