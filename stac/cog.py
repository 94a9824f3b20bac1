"""Cloud-Optimised GeoTIFFs of product layers (rioxarray with GDAL's COG driver).

Float layers are float32 with NaN as nodata, DEFLATE with the floating-point predictor (3) and
overviews averaged; class layers are uint8 with 255 as nodata, DEFLATE with the horizontal
predictor (2) and overviews by nearest neighbour, so that an overview never invents a class.
Tiles are 256 x 256; overviews appear once a layer is larger than a tile. GDAL writes no
timestamp, so the same values give the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from insarcast.contract import NODATA
from insarcast.errors import InputError

FLOAT_NODATA = float("nan")
CLASS_NODATA = NODATA
BLOCKSIZE = 256


def _options(dtype: np.dtype) -> dict:
    if dtype == np.float32:
        return {"compress": "DEFLATE", "predictor": "FLOATING_POINT", "overview_resampling": "AVERAGE"}
    if dtype == np.uint8:
        return {"compress": "DEFLATE", "predictor": "STANDARD", "overview_resampling": "NEAREST"}
    raise InputError(f"COG layers are float32 or uint8, got {dtype}", field="dtype")


def write_cog(values: np.ndarray, path: str | os.PathLike, *, crs, transform, nodata: float | int | None = None,
              band_names: Sequence[str] | None = None, tags: dict | None = None) -> Path:
    """Write ``values`` ``(y, x)`` or ``(band, y, x)`` (float32 or uint8) as a COG at ``path``.

    ``crs`` is anything rasterio accepts, ``transform`` an affine (or its six GDAL numbers
    a, b, c, d, e, f) of the top-left corner. ``nodata`` defaults to NaN for float32 and 255 for
    uint8. ``band_names`` become the band descriptions, ``tags`` dataset tags.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr
    from affine import Affine

    values = np.asarray(values)
    opts = _options(values.dtype)
    if nodata is None:
        nodata = FLOAT_NODATA if values.dtype == np.float32 else CLASS_NODATA
    if not isinstance(transform, Affine):
        transform = Affine(*transform[:6])
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3:
        raise InputError(f"a COG layer is (y, x) or (band, y, x), got shape {values.shape}", field="shape")
    nb, ny, nx = values.shape
    # coordinates of the cell centres, so that rioxarray recovers the transform exactly
    x = transform.c + (np.arange(nx) + 0.5) * transform.a
    y = transform.f + (np.arange(ny) + 0.5) * transform.e
    da = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": np.arange(1, nb + 1), "y": y, "x": x},
                      attrs=dict(tags or {}))
    if band_names is not None:
        da.attrs["long_name"] = tuple(band_names) if nb > 1 else band_names[0]
    da = da.rio.write_crs(crs).rio.write_transform(transform).rio.write_nodata(nodata, encoded=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    da.rio.to_raster(path, driver="COG", blocksize=BLOCKSIZE, tiled=True, **opts)
    return path


def validate_cog(path: str | os.PathLike) -> list[str]:
    """rio-cogeo's COG errors for a file (empty when it is a valid COG); warnings are not errors."""
    from rio_cogeo.cogeo import cog_validate

    try:
        valid, errors, _warnings = cog_validate(str(path), quiet=True)
    except Exception as exc:  # rasterio raises several types for unreadable files
        return [f"not readable as a GeoTIFF ({exc})"]
    if valid:
        return []
    return list(errors) or ["not a valid Cloud-Optimised GeoTIFF"]


def band_statistics(values: np.ndarray, nodata: float | int | None) -> dict | None:
    """STAC raster statistics of one band (minimum, maximum, mean, stddev, valid_percent) or None
    when no pixel is valid. Pixels equal to ``nodata`` (or NaN) do not count."""
    values = np.asarray(values)
    valid = np.isfinite(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        valid &= values != nodata
    n = int(valid.sum())
    if n == 0:
        return None
    v = values[valid].astype(np.float64)
    return {
        "minimum": float(v.min()),
        "maximum": float(v.max()),
        "mean": float(v.mean()),
        "stddev": float(v.std()),
        "valid_percent": float(100.0 * n / values.size),
    }
