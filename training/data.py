"""The windows of one cube as torch datasets: train, validation and test samples, leak-free.

A :class:`Windows` holds the cube in memory (one float32 array), its pixel mask, the temporal split,
the training-only normalisation and the patch origins. A sample is a pair (anchor epoch, patch
origin); :class:`WindowDataset` turns it into tensors with :func:`windows.make_sample`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from insarcast.baselines import decimal_years  # noqa: F401  (re-exported: training.data.decimal_years)
from insarcast.cadence import check_regular, median_spacing
from insarcast.cube import open_cube
from insarcast.errors import InputError
from insarcast.training.windows import Normalisation, Sample, Split, make_sample, patch_origins, pixel_mask, \
    residual_statistics, training_statistics
from insarcast.udf.correction import shipped as shipped_correction
from insarcast.udf.inputs import check_inputs, pinned_correction, static_channels

PARTS = ("train", "val", "test")
# Windows kept in memory across the trials of a process, at most this many bytes (0.15 MB each at
# T 12, C 12, P 16). Every trial of a study, and every architecture with the same seed, draws the same
# training windows (seeded by seed and epoch) and scores the same validation and test windows, so the
# residual inputs' per-pixel fits are computed once per window, not once per trial.
SAMPLE_CACHE_BYTES = 1 << 30


@dataclass
class Windows:
    """Every sample of a cube for one (T, F, P), split in time."""

    displacement: np.ndarray        # (t, y, x) float32 mm
    mask: np.ndarray                # (y, x) bool: learnable pixels
    times: np.ndarray               # (t,) datetime64[ns]
    split: Split
    norm: Normalisation
    origins: np.ndarray             # (n, 2) patch (row, col)
    history: int
    horizon: int
    patch: int
    source: str = ""
    inputs: str = "paper"           # the input formulation (insarcast.udf.inputs.INPUTS)
    grid: dict = field(default_factory=dict)      # spacing (m) and crs of the cube
    # What evaluation computes once per part and reuses (baselines' sums, pixel masks): see evaluate.
    eval_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_arrays(cls, displacement: np.ndarray, valid: np.ndarray, times: np.ndarray, *, history: int,
                    horizon: int, patch: int, stride: int, min_valid: float = 0.5,
                    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), source: str = "",
                    inputs: str = "paper") -> "Windows":
        inputs = check_inputs(inputs)
        check_regular(times, source=source or None)
        displacement = np.asarray(displacement, np.float32)
        if np.isinf(displacement).any():          # an infinite value is a missing one (as in forecast)
            displacement = np.where(np.isinf(displacement), np.float32(np.nan), displacement)
        mask = pixel_mask(displacement, valid)
        split = Split.temporal(displacement.shape[0], fractions=fractions)
        for part in PARTS:
            if len(split.anchors(part, history=history, horizon=horizon)) == 0:
                start, stop = getattr(split, part)
                raise InputError(f"the {part} period (epochs {start}..{stop - 1}) holds no window of "
                                 f"history {history} and horizon {horizon}", path=source or None, field="t")
        try:                        # the cube's size and pixels first: the statistics read every window
            origins = patch_origins(mask, size=patch, stride=stride, min_valid=min_valid)
            norm = training_statistics(displacement, mask, split, history=history, horizon=horizon)
        except InputError as err:
            raise InputError(err.message, path=err.path or source or None, line=err.line, field=err.field) from None
        if inputs != "paper":
            norm = residual_statistics(displacement, mask, split, decimal_years(times), norm, history=history,
                                       horizon=horizon, inputs=inputs)
        if len(origins) == 0:
            raise InputError(f"no {patch} x {patch} patch has {min_valid:.0%} valid pixels",
                             path=source or None, field="valid")
        return cls(displacement, mask, np.asarray(times, "datetime64[ns]"), split, norm, origins,
                   history, horizon, patch, source, inputs)

    @classmethod
    def from_cube(cls, path: str | Path, **kwargs) -> "Windows":
        ds = open_cube(path)
        spacing = cube_spacing(ds)
        check_correction_grid(inputs=kwargs.get("inputs", "paper"), history=kwargs["history"],
                              horizon=kwargs["horizon"], patch=kwargs["patch"], spacing=spacing,
                              epoch_days=epoch_spacing(ds["t"].values), path=path)
        # a cube made elsewhere may have no 'valid' (forecast accepts it too): its finite pixels are usable
        valid = ds["valid"].values if "valid" in ds else np.ones((ds.sizes["y"], ds.sizes["x"]), bool)
        windows = cls.from_arrays(ds["displacement"].values, valid, ds["t"].values,
                                  source=str(path), **kwargs)
        windows.grid = {"spacing": spacing, "crs": ds.rio.crs.to_string()}
        return windows

    def anchors(self, part: str) -> np.ndarray:
        return self.split.anchors(part, history=self.history, horizon=self.horizon)

    def samples(self, part: str) -> np.ndarray:
        """(n, 3) rows of (anchor, row, col) for every window of ``part``."""
        a = self.anchors(part)
        grid = np.stack(np.meshgrid(np.arange(len(a)), np.arange(len(self.origins)), indexing="ij"), -1)
        grid = grid.reshape(-1, 2)
        return np.column_stack([a[grid[:, 0]], self.origins[grid[:, 1]]]).astype(np.int64)

    def sample(self, anchor: int, origin: tuple[int, int], *, cache: bool = False) -> Sample:
        """The window at ``anchor`` and ``origin``; ``cache`` keeps it (up to :data:`SAMPLE_CACHE_BYTES`)
        for the next call of any trial."""
        key = ("sample", int(anchor), int(origin[0]), int(origin[1]))
        if cache and key in self.eval_cache:
            return self.eval_cache[key]
        sample = self._make(anchor, origin)
        size = sum(a.nbytes for a in sample)
        if cache and self.eval_cache.get("sample_bytes", 0) + size <= SAMPLE_CACHE_BYTES:
            self.eval_cache[key] = sample
            self.eval_cache["sample_bytes"] = self.eval_cache.get("sample_bytes", 0) + size
        return sample

    def _make(self, anchor: int, origin: tuple[int, int]) -> Sample:
        return make_sample(self.displacement, self.mask, self.norm, int(anchor), origin, history=self.history,
                           horizon=self.horizon, size=self.patch, inputs=self.inputs, years=self.years)

    @property
    def years(self) -> np.ndarray:
        if "years" not in self.eval_cache:
            self.eval_cache["years"] = decimal_years(self.times)
        return self.eval_cache["years"]

    @property
    def epoch_days(self) -> float:
        return epoch_spacing(self.times)

    @property
    def correction(self) -> dict[str, str] | None:
        """``{file, sha256}`` of the shipped correction the targets leave (``residual-corrected``), else None:
        the run records it and the ensemble's manifest pins it (:meth:`insarcast.udf.manifest.Manifest.check_correction`)."""
        return pinned_correction(self.inputs, history=self.history, horizon=self.horizon, patch=self.patch,
                                 epoch_days=self.epoch_days)


def cube_spacing(ds) -> float | None:
    """The grid spacing (m) of a cube, from its x coordinates; None with a single column."""
    return float(abs(ds["x"].values[1] - ds["x"].values[0])) if ds.sizes["x"] > 1 else None


def epoch_spacing(times: np.ndarray) -> float:
    """The median spacing of the epochs ``times`` (datetime64), in days (:func:`insarcast.cadence.median_spacing`)."""
    return median_spacing(times)


def check_correction_grid(*, inputs: str, history: int, horizon: int, patch: int, spacing: float | None,
                          epoch_days: float, path: str | Path | None = None) -> None:
    """``residual-corrected`` needs a cube on the grid and epoch spacing its shipped correction was
    fitted on (:meth:`insarcast.udf.correction.Correction.check_grid`); the other inputs need nothing, nor
    does a cube of fewer than two epochs (no spacing), which the windows refuse naming what they need."""
    if inputs != "residual-corrected" or not np.isfinite(epoch_days):
        return
    try:
        correction = shipped_correction(history=history, horizon=horizon, patch=patch, static=static_channels(inputs),
                                        epoch_days=epoch_days)
    except InputError as err:
        raise InputError(err.message, path=path, field=err.field) from None
    correction.check_grid(spacing=spacing, epoch_days=epoch_days, path=path)


class WindowDataset(torch.utils.data.Dataset):
    """Tensors (x (T, C, P, P), y (F, P, P), mask (P, P)) for the rows of :meth:`Windows.samples`."""

    def __init__(self, windows: Windows, rows: np.ndarray, *, cache: bool = False):
        self.windows = windows
        self.rows = rows
        self.cache = cache

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        anchor, r, c = self.rows[i]
        return tuple(torch.from_numpy(a) for a in self.windows.sample(anchor, (r, c), cache=self.cache)[:3])
