"""The products as one NetCDF-4 file that CF 1.11 readers understand (``insarcast forecast --format netcdf``).

:func:`insarcast.udf.forecast.forecast_products` already names everything the CF way (standard names of
the time, forecast reference time and forecast period coordinates and of the projected map
coordinates, the grid mapping, units, flag values and meanings of the classes, ``Conventions``).
What only a file needs is set here, at writing:

- no ``_FillValue`` on coordinate variables (CF 2.5.1: "must not be used on coordinate variables";
  xarray gives float coordinates a NaN fill by default);
- ``units_metadata = "leap_seconds: none"`` on the time coordinates (CF 1.11, 4.4.2: recommended for
  the default ``proleptic_gregorian`` calendar; numpy's datetimes have no leap seconds);
- a ``history`` line (CF 2.6.2);
- ``flag_values`` and ``valid_range`` of the class codes' own type (uint8; CF 3.5: "The flag_values
  attribute [has] the same type as the variable"), which a Zarr store round trip turns into int64;
- ``_FillValue = 255`` on the class codes (CF 2.5.1), outside their ``valid_range``: NetCDF readers
  (xarray's default decoding, GDAL, Panoply) then mask the nodata pixels. The Zarr store keeps the
  codes uint8 with ``valid_range`` only, since a ``_FillValue`` would make every xarray reader of it,
  publish and report included, see floats with NaN instead of codes.

NetCDF-4 is needed for the classes' ``ubyte`` type; the ``netCDF4`` package writes it (an optional
dependency, the ``[netcdf]`` extra).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np
import xarray as xr

from insarcast.errors import MissingDependencyError

TIME_COORDS = ("time", "forecast_reference_time")


def netcdf_ready(products: xr.Dataset, *, command: str = "insarcast forecast") -> xr.Dataset:
    """A shallow copy of ``products`` with the encodings and attributes a CF NetCDF file needs."""
    out = products.copy()
    for name in out.coords:
        if out[name].ndim == 1 and name in out.dims or name in TIME_COORDS or name == "forecast_period":
            out[name].encoding["_FillValue"] = None
    for name in TIME_COORDS:
        if name in out.coords:
            out[name].attrs["units_metadata"] = "leap_seconds: none"
    for name, variable in out.data_vars.items():
        if "flag_values" in variable.attrs and "nodata" in variable.attrs:      # class and bivariate
            attrs = dict(variable.attrs)
            out[name].encoding["_FillValue"] = variable.dtype.type(attrs.pop("nodata"))
            # of the variable's own type (CF 2.5.1, 3.5), also after a Zarr store read them back as int64
            for key in ("flag_values", "valid_range"):
                if key in attrs:
                    attrs[key] = np.asarray(attrs[key]).astype(variable.dtype)
            out[name].attrs = attrs
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out.attrs["history"] = f"{stamp} {command}"
    for variable in out.variables.values():
        variable.encoding.pop("chunks", None)
        variable.encoding.pop("preferred_chunks", None)
    return out


def to_netcdf(products: xr.Dataset, path, *, compute: bool = True, command: str = "insarcast forecast") -> Any:
    """Write ``products`` to ``path`` as NetCDF-4 (see the module docstring); ``compute=False`` returns
    the Dask delayed write, as :meth:`xarray.Dataset.to_netcdf` does."""
    try:
        import netCDF4  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError("--format netcdf needs the netCDF4 package: pip install "
                                     "'insarcast[netcdf]'") from err
    return netcdf_ready(products, command=command).to_netcdf(path, engine="netcdf4", format="NETCDF4",
                                                              compute=compute)
