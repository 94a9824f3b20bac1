"""Exact class thresholds from the statistics job (the backend-only path's first job).

The statistics job (``process_graph(stage="statistics")``) returns two bands per pixel, ``m_abs`` (|m|,
the ensemble median's magnitude at the products' horizon) and ``std``, float32, NaN where not valid:
the very values ``insarcast forecast`` takes its quantiles of. Over the whole region they give the same
thresholds (:func:`insarcast.udf.products.thresholds`, numpy's linear quantiles), exactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from insarcast.errors import InputError

from .products import Thresholds
from .products import thresholds as compute_thresholds


def thresholds_from_statistics(layers: Iterable[tuple[np.ndarray, np.ndarray]]) -> Thresholds:
    """Thresholds from (m_abs, std) pairs covering the region once (e.g. the result's files)."""
    pairs = [(np.asarray(m, np.float32).ravel(), np.asarray(s, np.float32).ravel()) for m, s in layers]
    if not pairs:
        raise InputError("no statistics: the statistics job's result is empty", field="m_abs")
    return compute_thresholds(np.concatenate([m for m, _ in pairs]), np.concatenate([s for _, s in pairs]))


def read_statistics(folder: str | os.PathLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """(m_abs, std) of every raster file (GeoTIFF) of the statistics job's result folder: bands 1 and 2."""
    import rasterio

    files = [f for f in sorted(Path(folder).iterdir()) if f.is_file() and f.suffix.lower() != ".json"]
    if not files:
        raise InputError("no GeoTIFF in the statistics job's result", path=folder)
    layers = []
    for path in files:
        with rasterio.open(path) as src:
            if src.count != 2:
                raise InputError(f"expected 2 bands (m_abs, std), got {src.count}", path=path)
            m_abs, std = src.read(1, masked=True).filled(np.nan), src.read(2, masked=True).filled(np.nan)
        layers.append((m_abs, std))
    return layers
