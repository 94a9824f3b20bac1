"""The grid of a products Dataset: CRS, shape, affine transform, footprint; the projection fields.

The footprint is the grid's outline (its cell edges, 4 points per side) transformed to WGS84, so
the Item geometry follows the curved edges of a projected grid; coordinates are rounded to 1e-7
degree (1 cm) so that they print the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insarcast.errors import InputError

_EDGE_POINTS = 4
_DIGITS = 7


@dataclass(frozen=True)
class ProductGrid:
    """A north-up grid: ``shape`` (rows, cols), GDAL ``transform`` (a, b, c, d, e, f), CRS as WKT."""

    shape: tuple[int, int]
    transform: tuple[float, float, float, float, float, float]
    crs_wkt: str
    epsg: int | None

    @classmethod
    def of(cls, ds, *, path: str | None = None) -> "ProductGrid":
        """The grid of a Dataset with ``y``, ``x`` cell-centre coordinates and a rioxarray CRS."""
        import rioxarray  # noqa: F401

        crs = ds.rio.crs
        if crs is None and "crs" in ds.attrs:
            from rasterio.crs import CRS

            crs = CRS.from_user_input(ds.attrs["crs"])
        if crs is None:
            raise InputError("products have no CRS (expected a rioxarray spatial_ref coordinate)",
                             path=path, field="spatial_ref")
        for name in ("x", "y"):    # without one, xarray's ds[name] is the index 0, 1, ...: a 1 m grid at 0, 0
            if name not in ds.coords:
                raise InputError(f"expected a coordinate {name!r} of cell centres (the store lost it?)", path=path,
                                 field=name)
        x, y = np.asarray(ds["x"].values, np.float64), np.asarray(ds["y"].values, np.float64)
        for name, c in (("x", x), ("y", y)):
            if c.size >= 2:
                step = np.diff(c)
                if not np.allclose(step, step[0], rtol=1e-9, atol=1e-6) or step[0] == 0:
                    raise InputError(f"the {name} coordinate is not a regular grid", path=path, field=name)
        if y.size >= 2 and y[1] > y[0]:
            raise InputError("the y coordinate must be descending (north up)", path=path, field="y")
        try:
            t = ds.rio.transform()
        except Exception as exc:  # rioxarray cannot derive a transform (single cell without GeoTransform)
            raise InputError(f"cannot derive the grid's transform ({exc})", path=path, field="x") from exc
        transform = tuple(float(v) for v in (t.a, t.b, t.c, t.d, t.e, t.f))
        return cls(shape=(int(y.size), int(x.size)), transform=transform, crs_wkt=crs.to_wkt(),
                   epsg=crs.to_epsg())

    @property
    def proj_code(self) -> str | None:
        return None if self.epsg is None else f"EPSG:{self.epsg}"

    @property
    def spacing(self) -> float:
        return abs(self.transform[0])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the cell edges in the grid's CRS."""
        a, _, c, _, e, f = self.transform
        ny, nx = self.shape
        xs = (c, c + nx * a)
        ys = (f, f + ny * e)
        return (min(xs), min(ys), max(xs), max(ys))

    def proj_fields(self) -> dict:
        """Projection extension fields (v2.0.0): code (or WKT2 without an EPSG code), shape, transform, bbox."""
        fields = {"proj:code": self.proj_code}
        if self.epsg is None:
            fields["proj:wkt2"] = self.crs_wkt
        fields.update({
            "proj:shape": list(self.shape),
            "proj:transform": list(self.transform),
            "proj:bbox": list(self.bounds),
        })
        return fields

    def footprint(self) -> tuple[dict, list[float]]:
        """GeoJSON polygon and bbox of the grid outline in WGS84 (lon, lat)."""
        from pyproj import CRS, Transformer

        xmin, ymin, xmax, ymax = self.bounds
        s = np.linspace(0.0, 1.0, _EDGE_POINTS, endpoint=False)
        xs = np.concatenate([xmin + s * (xmax - xmin), np.full_like(s, xmax),
                             xmax - s * (xmax - xmin), np.full_like(s, xmin)])
        ys = np.concatenate([np.full_like(s, ymax), ymax - s * (ymax - ymin),
                             np.full_like(s, ymin), ymin + s * (ymax - ymin)])
        to_wgs84 = Transformer.from_crs(CRS.from_wkt(self.crs_wkt), CRS.from_epsg(4326), always_xy=True)
        lon, lat = to_wgs84.transform(xs, ys)
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise InputError("the grid's outline does not transform to WGS84", field="spatial_ref")
        lon, lat = np.round(lon, _DIGITS), np.round(lat, _DIGITS)
        ring = [[float(a), float(b)] for a, b in zip(lon, lat)]
        ring.append(ring[0])
        # counter-clockwise exterior ring (RFC 7946): the outline above runs clockwise
        ring.reverse()
        bbox = [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]
        return {"type": "Polygon", "coordinates": [ring]}, bbox
