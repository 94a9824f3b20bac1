"""Random parts of the scenario: seeded streams, fractal atmospheric screens, white noise, smooth fields.

Each component draws from its own stream, ``SeedSequence(seed).spawn(len(STREAMS))[i]`` for the
component's fixed index i in :data:`STREAMS`, so changing one component (say the white-noise
level, or the number of epochs of the atmosphere) does not reshuffle the others. New streams are
appended at the end of :data:`STREAMS`, never inserted.
"""

from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np
from scipy import fft, ndimage

STREAMS: tuple[str, ...] = ("coverage", "terrain", "atmosphere", "white")


def streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per component name of :data:`STREAMS`."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


class FractalScreens:
    """Atmospheric phase screens on a (ny, nx) grid with power spectrum P(k) ∝ k^−β (k ≠ 0).

    Screens are made two at a time: complex white noise Z (iid N(0, 1) real and imaginary parts,
    which is also what the FFT of complex white noise is) on a grid padded by a quarter (so that
    the periodicity of the FFT does not tie opposite edges together) is filtered by |k|^−β/2 and
    transformed back, z = ifft2(|k|^−β/2 · Z); Re z and Im z are independent real fields with the
    same spectrum. Each is cropped and scaled to zero mean and standard deviation ``std`` over
    the grid: s = std · (z − mean z) / std(z).
    """

    def __init__(self, shape: tuple[int, int], *, beta: float, spacing: float, rng: np.random.Generator) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.padded = tuple(fft.next_fast_len(n + max(n // 4, 8)) for n in self.shape)
        ky = fft.fftfreq(self.padded[0], d=spacing)
        kx = fft.fftfreq(self.padded[1], d=spacing)
        k2 = ky[:, None] ** 2 + kx[None, :] ** 2
        k2[0, 0] = np.inf  # no power at k = 0: the mean is removed anyway
        self._filter = (k2 ** (-beta / 4.0)).astype(np.float32)
        self._rng = rng
        self._spare: np.ndarray | None = None
        self._white = np.empty(self.padded, dtype=np.float32)
        self._spectrum = np.empty(self.padded, dtype=np.complex64)

    def next(self, *, std: float) -> np.ndarray:
        """The next screen, (ny, nx) float32."""
        if self._spare is None:
            self._rng.standard_normal(out=self._white, dtype=np.float32)
            self._spectrum.real = self._white
            self._rng.standard_normal(out=self._white, dtype=np.float32)
            self._spectrum.imag = self._white
            self._spectrum *= self._filter
            pair = fft.ifft2(self._spectrum, workers=-1)[: self.shape[0], : self.shape[1]]
            screen, self._spare = pair.real, pair.imag
        else:
            screen, self._spare = self._spare, None
        screen = np.ascontiguousarray(screen, dtype=np.float32)
        flat = screen.ravel()
        mean = float(flat.mean(dtype=np.float64))
        sigma = math.sqrt(max(float(np.dot(flat, flat)) / flat.size - mean * mean, 0.0))
        screen -= np.float32(mean)
        screen *= np.float32(std / sigma if sigma > 0 else 0.0)
        return screen


def write_point_atmosphere(path: str | os.PathLike, *, screens: FractalScreens | None, rows: np.ndarray,
                           cols: np.ndarray, n_epochs: int, std: float,
                           wrap: Callable[[range], range] = lambda r: r) -> None:
    """Write the atmosphere at the point cells as raw float32 (n_epochs, n_points), epoch by epoch.

    Epoch 0 is the reference (zeros); each later epoch is one screen sampled at (rows, cols), so
    memory holds one screen, never the (T, ny, nx) stack. ``screens=None`` writes zeros.
    ``wrap`` decorates the epoch loop (a progress bar).
    """
    zeros = np.zeros(len(rows), dtype=np.float32)
    with open(path, "wb") as f:
        f.write(zeros.tobytes())
        for _ in wrap(range(1, n_epochs)):
            if screens is None or std == 0:
                f.write(zeros.tobytes())
            else:
                f.write(screens.next(std=std)[rows, cols].astype(np.float32).tobytes())


def read_point_columns(path: str | os.PathLike, *, n_epochs: int, n_points: int, lo: int, hi: int) -> np.ndarray:
    """Points ``lo:hi`` of a (n_epochs, n_points) raw float32 file, as a (hi − lo, n_epochs) array."""
    width = hi - lo
    rows = np.empty((n_epochs, width), dtype=np.float32)
    fd = os.open(path, os.O_RDONLY)
    try:
        for k in range(n_epochs):  # plain reads: nothing of the file stays mapped into memory
            data = os.pread(fd, width * 4, (k * n_points + lo) * 4)
            if len(data) != width * 4:
                raise OSError(f"{path}: truncated scratch file at epoch {k}")
            rows[k] = np.frombuffer(data, dtype=np.float32)
    finally:
        os.close(fd)
    return np.ascontiguousarray(rows.T)


def white_noise(rng: np.random.Generator, shape: tuple[int, int], *, std: float) -> np.ndarray:
    """Independent N(0, std²) per point and epoch, (n, T) float32, zero at the reference epoch 0."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(std)
    noise[:, 0] = 0.0
    return noise


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], *, sigma_cells: float) -> np.ndarray:
    """Gaussian random field: white noise convolved with a Gaussian of ``sigma_cells``, standardised
    to zero mean and unit variance, (ny, nx) float32."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=sigma_cells,
                                    mode="reflect")
    field -= field.mean(dtype=np.float64)
    sigma = float(field.std(dtype=np.float64))
    return field / np.float32(sigma if sigma > 0 else 1.0)
