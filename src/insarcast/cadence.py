"""The epochs' cadence: a cube's time axis is regular, as windows of T epochs and a horizon of F assume.

The paper's windows are T past epochs and F future ones; a forecast "F epochs ahead" means F times
the spacing of the epochs. EGMS releases are not always regular: Sentinel-1B was lost on
23 December 2021, and a record that runs past it is sampled every 6 days before and every 12 days
after. A model trained on 6-day windows would read 12-day ones at the anchor (a window twice as
long), and a forecast placed ``k x 6`` days ahead would be scored, and used, ``k x 12`` days ahead.

:func:`regular_dates` picks a regular cadence ending on the last epoch: by default the spacing of
the latest epochs (:data:`LATEST`), the one the forecast continues. Epochs between its multiples
are dropped (every other 6-day epoch before a 12-day period: no value is invented); a multiple
with no epoch within :data:`TOLERANCE_DAYS` (one missing acquisition) is filled by linear
interpolation in time between the epochs around it, as long as at most :data:`MAX_FILLED` of the
kept epochs are filled (more means the cadence is not the data's: refused). A record whose early
epochs are sampled more coarsely (EGMS's first release: Sentinel-1A alone, every 12 days, until
Sentinel-1B joined in late 2016) starts where the cadence begins: the coarser head is dropped, with
the warning, rather than half of it filled (``--cadence`` of the head's spacing keeps the whole
record at that cadence instead). :func:`resample`
applies it to a point set's values (``insarcast grid`` does, and records what it did in the cube's
attributes); :func:`check_regular` refuses an irregular time axis where a cube is used, and
:func:`median_spacing` is the one measure of an axis's spacing in days (training's ``epoch_days``,
the correction file the products name).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: An epoch within this many days of a multiple of the cadence lies on it.
TOLERANCE_DAYS = 1.0
#: The default cadence is the median spacing of the last this many intervals.
LATEST = 10
#: The largest share of the kept epochs that may be filled by interpolation.
MAX_FILLED = 0.05


@dataclass(frozen=True)
class Cadence:
    """The regular epochs chosen from ``n`` irregular ones (:func:`regular_dates`)."""

    days: float
    dates: np.ndarray           # (K,) datetime64[D], regular, ending on the last input epoch
    index: np.ndarray           # (K,) int64: the input epoch kept at each date, -1 where filled
    n: int                      # input epochs
    head: int = 0               # leading input epochs dropped: sampled more coarsely than the cadence

    @property
    def filled(self) -> np.ndarray:
        """The dates filled by interpolation."""
        return self.dates[self.index < 0]

    @property
    def dropped(self) -> int:
        """Input epochs not kept."""
        return self.n - int((self.index >= 0).sum())

    @property
    def unchanged(self) -> bool:
        return len(self.index) == self.n and bool((self.index == np.arange(self.n)).all())

    def describe(self) -> str:
        """One sentence for a warning and the cube's attributes."""
        parts = [f"a {self.days:g}-day cadence ending on {self.dates[-1]}: {len(self.dates)} epochs"]
        if self.head:
            parts.append(f"the {self.head} input epochs before {self.dates[0]} dropped (sampled more coarsely than "
                         "this cadence; --cadence of their spacing keeps them)")
        if self.dropped - self.head:
            parts.append(f"{self.dropped - self.head} of the {self.n} input epochs dropped (between its multiples)")
        if len(self.filled):
            shown = ", ".join(str(d) for d in self.filled[:5]) + (" ..." if len(self.filled) > 5 else "")
            parts.append(f"{len(self.filled)} missing epoch(s) filled by linear interpolation in time ({shown})")
        return "; ".join(parts)


def spacings(dates: np.ndarray) -> np.ndarray:
    """Days between consecutive ``dates`` (datetime64)."""
    days = np.asarray(dates, "datetime64[s]").astype(np.int64) / 86400.0
    return np.diff(days)


def median_spacing(dates: np.ndarray) -> float:
    """The median of :func:`spacings`, in days (NaN for fewer than two dates)."""
    gaps = spacings(dates)
    return float(np.median(gaps)) if gaps.size else float("nan")


def latest_cadence(dates: np.ndarray) -> float:
    """The median spacing of the last :data:`LATEST` intervals, in days."""
    gaps = spacings(dates)
    if gaps.size == 0:
        raise InputError("one epoch has no cadence: at least two are needed", field="t")
    return float(np.median(gaps[-LATEST:]))


def regular_dates(dates: np.ndarray, *, days: float | None = None, source: str | None = None) -> Cadence:
    """The regular epochs of cadence ``days`` (default :func:`latest_cadence`) ending on the last of
    ``dates`` (strictly increasing datetime64), back to the first (module docstring)."""
    d = np.asarray(dates, "datetime64[D]")
    n = len(d)
    if n < 2:
        return Cadence(days=float("nan"), dates=d, index=np.arange(n), n=n)
    step = latest_cadence(d) if days is None else float(days)
    if not np.isfinite(step) or step < 1:
        raise InputError(f"expected a cadence of at least 1 day, got {step!r}", path=source, field="--cadence")
    t = d.astype(np.int64)
    if step > t[-1] - t[0] + TOLERANCE_DAYS:
        raise InputError(f"a cadence of {step:g} days is longer than the record ({d[0]} to {d[-1]}, "
                         f"{int(t[-1] - t[0])} days): the cube would have 1 epoch", path=source, field="--cadence")
    k = np.arange(int(np.floor((t[-1] - t[0] + TOLERANCE_DAYS) / step)) + 1)[::-1]
    targets = t[-1] - k * step
    nearest = np.clip(np.searchsorted(t, targets), 1, n - 1)
    nearest = np.where(np.abs(t[nearest - 1] - targets) <= np.abs(t[nearest] - targets), nearest - 1, nearest)
    on = np.abs(t[nearest] - targets) <= TOLERANCE_DAYS
    index = np.where(on, nearest, -1).astype(np.int64)
    out = np.where(on, t[nearest], np.round(targets)).astype("datetime64[D]")
    filled = int((~on).sum())
    if filled > MAX_FILLED * len(index):
        first = _cadence_start(d, step)
        if first is not None:
            try:
                tail = regular_dates(d[first:], days=step)
            except InputError:          # the rest is not on the cadence either: the refusal below names it all
                pass
            else:
                index = np.where(tail.index >= 0, tail.index + first, -1)
                return Cadence(days=step, dates=tail.dates, index=index, n=n, head=first)
    if filled > MAX_FILLED * len(index):
        raise InputError(f"the epochs are not on a {step:g}-day cadence: {filled} of its {len(index)} dates have no "
                         f"epoch within {TOLERANCE_DAYS:g} day (at most {MAX_FILLED:.0%} may be filled by "
                         "interpolation); the spacings of the input are " + _spacing_summary(d)
                         + "; give the cadence of the data (--cadence DAYS)", path=source, field="--cadence")
    return Cadence(days=step, dates=out, index=index, n=n)


def _cadence_start(d: np.ndarray, step: float) -> int | None:
    """The input epoch where a coarser head of ``d`` ends (the spacings before it at least 1.5 x ``step``, more of
    them than of finer ones: the end of the longest such run from the start), or None without one."""
    coarse = spacings(d) >= 1.5 * step
    score = np.cumsum(np.where(coarse, 1, -1))
    first = int(np.argmax(score)) + 1
    return first if score[first - 1] > 0 and first < len(d) - 1 else None


def resample(values: np.ndarray, dates: np.ndarray, cadence: Cadence) -> np.ndarray:
    """``values (..., n)`` at the epochs ``dates`` taken to ``cadence``'s dates: the kept epochs as
    they are, the filled ones interpolated linearly in time between the epochs around them."""
    if cadence.unchanged:
        return values
    kept = cadence.index >= 0
    out = np.empty((*values.shape[:-1], len(cadence.index)), values.dtype)
    out[..., kept] = values[..., cadence.index[kept]]
    t = np.asarray(dates, "datetime64[D]").astype(np.int64)
    for j in np.flatnonzero(~kept):
        target = cadence.dates[j].astype(np.int64)
        i = int(np.searchsorted(t, target)) - 1
        w = (target - t[i]) / (t[i + 1] - t[i])
        out[..., j] = (1 - w) * values[..., i] + w * values[..., i + 1]
    return out


def check_regular(dates: np.ndarray, *, source: str | None = None, field: str = "t") -> float:
    """The cadence of ``dates`` in days, or an :class:`InputError` if the spacings differ by more than
    :data:`TOLERANCE_DAYS` (a cube made by ``insarcast grid`` is regular)."""
    gaps = spacings(dates)
    if gaps.size and gaps.max() - gaps.min() > TOLERANCE_DAYS:
        raise InputError("the epochs are not regular: " + _spacing_summary(np.asarray(dates, "datetime64[D]"))
                         + "; windows of T epochs would span different times (`insarcast grid` keeps a "
                         "regular cadence; elsewhere, select the epochs of one cadence)", path=source, field=field)
    return median_spacing(dates)


def _spacing_summary(d: np.ndarray) -> str:
    gaps = np.diff(d.astype(np.int64))
    values, counts = np.unique(gaps, return_counts=True)
    order = np.argsort(-counts)[:4]
    text = ", ".join(f"{counts[i]} x {values[i]} days" for i in order)
    change = np.flatnonzero(gaps != gaps[-1])
    if change.size:
        text += f" ({gaps[-1]} days since {d[change[-1] + 1]})"
    return text
