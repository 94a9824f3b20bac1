"""Read a products Dataset (``insarcast.udf.forecast.forecast_products``) for publishing.

A products store is that Dataset written with ``to_zarr``; :func:`open_products` takes the path or
the Dataset itself and checks what publishing needs, naming the store and the field that is wrong.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

import numpy as np
import xarray as xr

from insarcast.contract import NODATA
from insarcast.cube import open_store
from insarcast.errors import InputError
from insarcast.udf.products import BIVARIATE_NAMES, CLASS_NAMES, CLASS_PRODUCTS, FLOAT_PRODUCTS, Thresholds

REQUIRED_ATTRS = ("reference_time", "horizon", "horizon_steps", "members", "history_epochs", "patch",
                  "q85", "q95", "q99", "std_tercile_1", "std_tercile_2")
CLASS_MEANINGS = {"class": CLASS_NAMES, "bivariate": BIVARIATE_NAMES}


@dataclass(frozen=True)
class Products:
    """A checked products Dataset and where it came from (None for an in-memory Dataset)."""

    ds: xr.Dataset
    path: str | None

    @property
    def reference_time(self) -> np.datetime64:
        return np.datetime64(self.ds.attrs["reference_time"], "s")

    @property
    def times(self) -> np.ndarray:
        """Valid time of each horizon step, datetime64[s]."""
        return self.ds["time"].values.astype("datetime64[s]")

    @property
    def horizons(self) -> list[int]:
        return [int(h) for h in self.ds["horizon"].values]

    @property
    def product_horizon(self) -> int:
        """The horizon step whose products (std, class, P85 ...) the Dataset holds."""
        return int(self.ds.attrs["horizon"])

    def attr(self, name: str, default=None):
        return self.ds.attrs.get(name, default)


def open_products(source: str | os.PathLike | xr.Dataset) -> Products:
    """The products at ``source`` (a products.zarr path or a Dataset), checked, y descending."""
    import rioxarray  # noqa: F401

    path = None
    if isinstance(source, xr.Dataset):
        ds = source
    else:
        path = os.fspath(source)
        ds = open_store(path, what="products store")

    _check_variables(ds, path)
    _check_attributes(ds, path)
    _check_coordinates(ds, path)
    if ds.sizes["y"] >= 2 and ds["y"].values[1] > ds["y"].values[0]:
        ds = ds.isel(y=slice(None, None, -1))
    return Products(ds=ds, path=path)


def _check_variables(ds: xr.Dataset, path: str | None) -> None:
    """The product variables and their dims, the valid-time coordinate and the class codes (:func:`open_products`)."""
    need = ("median",) + FLOAT_PRODUCTS + CLASS_PRODUCTS
    for name in need:
        if name not in ds:
            raise InputError(f"expected a {name!r} variable (products of insarcast forecast)", path=path,
                             field=name)
    if set(ds["median"].dims) != {"horizon", "y", "x"}:
        raise InputError(f"'median' must have dims (horizon, y, x), got {ds['median'].dims}", path=path,
                         field="median")
    for name in FLOAT_PRODUCTS + CLASS_PRODUCTS:
        if set(ds[name].dims) != {"y", "x"}:
            raise InputError(f"{name!r} must have dims (y, x), got {ds[name].dims}", path=path, field=name)
    if "time" not in ds.coords or not np.issubdtype(ds["time"].dtype, np.datetime64) \
            or ds["time"].dims != ("horizon",):
        raise InputError("expected a datetime64 coordinate 'time(horizon)' of valid times", path=path,
                         field="time")
    for name, meanings in CLASS_MEANINGS.items():     # their COGs are described by these codes alone
        codes = np.asarray(ds[name].values)
        bad = ~(np.isin(codes, np.arange(len(meanings))) | (codes == NODATA))
        if bad.any():
            raise InputError(f"expected class codes 0..{len(meanings) - 1} or {NODATA} (no data), got "
                             f"{codes[bad].ravel()[0].item()!r}", path=path, field=name)


def _check_attributes(ds: xr.Dataset, path: str | None) -> None:
    """The attributes there, and the counts, thresholds and reference time among them (:func:`open_products`)."""
    missing = [a for a in REQUIRED_ATTRS if a not in ds.attrs]
    if missing:
        raise InputError(f"products are missing the attributes {missing}", path=path, field=missing[0])
    for name in ("horizon", "horizon_steps", "members", "history_epochs", "patch"):
        value = ds.attrs[name]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise InputError(f"expected a whole number, got {value!r}", path=path, field=name)
    try:                                        # finite and ordered: the items' class descriptions show them
        Thresholds.from_mapping({name: ds.attrs[name] for name in Thresholds.__dataclass_fields__})
    except InputError as exc:
        raise InputError(exc.message, path=path, field=exc.field) from None
    try:
        np.datetime64(ds.attrs["reference_time"])
    except ValueError as exc:
        raise InputError(f"reference_time is not an ISO time: {ds.attrs['reference_time']!r}", path=path,
                         field="reference_time") from exc


def _check_coordinates(ds: xr.Dataset, path: str | None) -> None:
    """Horizon steps, valid times and members in order, and the products' horizon among the steps."""
    steps, times = ds["horizon"].values, ds["time"].values
    if not np.issubdtype(steps.dtype, np.integer) or steps.size == 0 or steps.min() < 1 or np.any(np.diff(steps) <= 0):
        raise InputError(f"expected horizon steps 1, 2, ... increasing, got {steps.tolist()}", path=path,
                         field="horizon")
    if np.isnat(times).any() or np.any(np.diff(times) <= np.timedelta64(0)):
        raise InputError(f"expected valid times increasing with the horizon, got {[str(t)[:19] for t in times]}",
                         path=path, field="time")
    if "member" in ds.coords and not np.issubdtype(ds["member"].dtype, np.integer):
        raise InputError(f"expected member numbers 0, 1, ..., got {ds['member'].values.tolist()}", path=path,
                         field="member")
    horizon = int(ds.attrs["horizon"])
    if horizon not in [int(h) for h in ds["horizon"].values]:
        raise InputError(f"the products' horizon {horizon} is not one of the horizon steps", path=path,
                         field="horizon")
