"""Leak-free training samples from a cube: temporal split, train-only statistics, windows, patches.

The epochs are split in time, 80/10/10 by default. A sample is an anchor epoch ``a`` (the last
observed one) and a P x P patch: its history is the T epochs ``a-T+1 .. a``, its target the F epochs
``a+1 .. a+F``. A sample belongs to a split when all its target epochs lie in that split; its
history may reach back into earlier splits (the past is known when forecasting), never forward.

Inputs follow the ONNX contract (DESIGN.md): :func:`insarcast.udf.inputs.model_inputs` builds them,
for training and inference alike. With the paper's inputs, channel 0 is the displacement relative
to the anchor, ``d(t) - d(a)``, channel 1 the validity mask, and targets are the change
``d(a+k) - d(a)``; with the residual inputs the target is the departure ``d(a+k) - R(a+k)`` from the
adaptive baseline's curve. Both are normalised with statistics of the training samples alone: the
inputs' exactly over every training anchor and valid pixel with cumulative sums, the residual
targets' over up to :data:`RESIDUAL_ANCHORS` evenly spaced training anchors (no value after the
training period is read).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import numpy as np

from insarcast.baselines import fits
from insarcast.contract import SPLIT
from insarcast.errors import InputError
from insarcast.udf.inputs import CHANNELS, hindcast_origins, model_inputs, reference_curve  # noqa: F401  (CHANNELS: the paper's, re-exported)

RESIDUAL_ANCHORS = 16


@dataclass(frozen=True)
class Split:
    """Epoch index ranges ``[start, stop)`` of the three periods."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    @classmethod
    def temporal(cls, n_epochs: int, *, fractions: tuple[float, float, float] = SPLIT) -> "Split":
        if not np.isclose(sum(fractions), 1.0) or min(fractions) <= 0:
            raise InputError(f"split fractions must be positive and sum to 1, got {fractions}", field="split")
        a = int(round(n_epochs * fractions[0]))
        b = int(round(n_epochs * (fractions[0] + fractions[1])))
        return cls(train=(0, a), val=(a, b), test=(b, n_epochs))

    def anchors(self, part: str, *, history: int, horizon: int) -> np.ndarray:
        """Anchor epochs whose F targets lie in ``part`` and whose T-epoch history exists."""
        start, stop = getattr(self, part)
        return np.arange(max(history - 1, start - 1), stop - horizon)


@dataclass(frozen=True)
class Normalisation:
    """Affine normalisation of inputs (channel 0) and targets: ``(value - mean) / std`` in mm."""

    input_mean: float
    input_std: float
    target_mean: float
    target_std: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def pixel_mask(displacement: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels usable for learning: valid in the cube and finite at every epoch. (y, x) bool."""
    return np.asarray(valid, bool) & np.isfinite(displacement).all(axis=0)


def training_statistics(displacement: np.ndarray, mask: np.ndarray, split: Split, *, history: int,
                        horizon: int) -> Normalisation:
    """Mean and std of inputs and targets over every training anchor and masked pixel.

    Reads only the training epochs. With S_k the cumulative sums of d and d^2 along time, the sums
    over a window of (d_j - d_a) follow in O(1) per anchor and pixel.
    """
    stop = split.train[1]
    anchors = split.anchors("train", history=history, horizon=horizon)
    if len(anchors) == 0:
        raise InputError(f"the training period ({stop} epochs) is shorter than history {history} + horizon "
                         f"{horizon}", field="t")
    d = displacement[:stop][:, mask].astype(np.float64)           # (epochs, pixels)
    if d.shape[1] == 0:
        raise InputError("no valid pixel to learn from", field="valid")
    c1 = np.concatenate([np.zeros((1, d.shape[1])), np.cumsum(d, axis=0)])
    c2 = np.concatenate([np.zeros((1, d.shape[1])), np.cumsum(d * d, axis=0)])
    da = d[anchors]

    def moments(lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[float, float, float]:
        """Count, sum and sum of squares of d_j - d_a for j in [lo, hi) over anchors and pixels."""
        s1 = c1[hi] - c1[lo]
        s2 = c2[hi] - c2[lo]
        total = s1.sum() - n * da.sum()
        squares = (s2 - 2 * da * s1 + n * da * da).sum()
        return n * da.size, total, squares

    def mean_std(count: float, total: float, squares: float) -> tuple[float, float]:
        mean = total / count
        return float(mean), float(np.sqrt(max(squares / count - mean * mean, 0.0)) or 1.0)

    in_mean, in_std = mean_std(*moments(anchors - history + 1, anchors + 1, history))
    out_mean, out_std = mean_std(*moments(anchors + 1, anchors + horizon + 1, horizon))
    return Normalisation(input_mean=in_mean, input_std=in_std, target_mean=out_mean, target_std=out_std)


def patch_origins(mask: np.ndarray, *, size: int, stride: int, min_valid: float = 0.5) -> np.ndarray:
    """(row, col) of the P x P patches, every ``stride`` cells, holding at least ``min_valid`` valid pixels."""
    ny, nx = mask.shape
    if ny < size or nx < size:
        raise InputError(f"the cube ({ny} x {nx}) is smaller than one patch ({size} x {size})", field="patch")
    rows = _starts(ny, size, stride)
    cols = _starts(nx, size, stride)
    origins = np.array([(r, c) for r in rows for c in cols], dtype=np.int64)
    share = np.array([mask[r:r + size, c:c + size].mean() for r, c in origins])
    return origins[share >= min_valid]


def _starts(n: int, size: int, stride: int) -> list[int]:
    """Patch starts every ``stride`` cells, the last one flush with the edge so every cell is covered."""
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


class Sample(NamedTuple):
    """One window: ``x (T, C, P, P)`` and ``y (F, P, P)`` normalised, ``mask (P, P)``, and in mm the
    ``reference (F, P, P)`` forecast the network corrects and the ``observed (F, P, P)`` change
    ``d(a+k) - d(a)``: a forecast in mm is ``output * target_std + target_mean + reference``."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    reference: np.ndarray
    observed: np.ndarray


def make_sample(displacement: np.ndarray, mask: np.ndarray, norm: Normalisation, anchor: int,
                origin: tuple[int, int], *, history: int, horizon: int, size: int, inputs: str = "paper",
                years: np.ndarray | None = None) -> Sample:
    """One sample, float32 and NaN-free, its inputs built by :func:`insarcast.udf.inputs.model_inputs`."""
    r, c = origin
    rows, cols = slice(r, r + size), slice(c, c + size)
    m = mask[rows, cols]
    first = 0 if inputs != "paper" else anchor - history + 1
    past = displacement[first: anchor + 1, rows, cols]
    built = model_inputs(past[None], m[None], history=history, horizon=horizon, norm=norm, inputs=inputs,
                         years=None if years is None else years[first: anchor + 1])
    d = displacement[anchor: anchor + horizon + 1, rows, cols].astype(np.float32)
    observed = d[1:] - d[0]
    target = observed - built.level[0] - built.reference[0]
    y = np.where(m, (target - norm.target_mean) / norm.target_std, 0.0).astype(np.float32)
    return Sample(built.x[0], y, m.astype(np.float32), built.reference[0], np.where(m, observed, 0.0)
                  .astype(np.float32))


def residual_statistics(displacement: np.ndarray, mask: np.ndarray, split: Split, years: np.ndarray,
                        norm: Normalisation, *, history: int, horizon: int, inputs: str = "residual") -> Normalisation:
    """``norm`` with the target statistics of the residual inputs: mean 0 and the root mean square of
    ``d(a+k) - R(a+k)`` (R the reference curve of formulation ``inputs``) over up to :data:`RESIDUAL_ANCHORS` evenly
    spaced training anchors and every masked pixel. Reads only the training epochs.

    The mean stays 0 so that an untrained network forecasts the baseline itself: the training
    residuals' mean is the atmosphere's common mode over those epochs (-0.24 mm on the demo), and
    adding it to every forecast raised the demo ensemble's RMSE against the truth from 0.395 mm (the
    baseline) to 0.453 mm."""
    anchors = split.anchors("train", history=history, horizon=horizon)
    anchors = anchors[np.unique(np.linspace(0, len(anchors) - 1, min(RESIDUAL_ANCHORS, len(anchors)))
                                .round().astype(int))]
    count, squares = 0, 0.0
    for a in anchors:
        d = displacement[: a + horizon + 1][:, mask]
        curve = reference_curve(fits(d, years, int(a), horizon, history=history,
                                     hindcast=hindcast_origins(inputs), reference=True), inputs)
        residual = d[a + 1:].astype(np.float64) - curve[history:]
        residual = residual[np.isfinite(residual)]
        count, squares = count + residual.size, squares + float((residual ** 2).sum())
    if count == 0:
        raise InputError("no finite residual to normalise the targets with", field="valid")
    return replace(norm, target_mean=0.0, target_std=float(np.sqrt(squares / count)) or 1.0)
