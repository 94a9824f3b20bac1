"""Ensemble forecast and products of an xarray cube, numpy or Dask backed.

:func:`forecast_products` checks the cube (dims ``t, y, x`` by name), forecasts the F epochs after
its last one with :mod:`insarcast.udf.tiling` and derives the products of
:mod:`insarcast.udf.products` at one horizon. With Dask input every output stays lazy, except the
thresholds: unless they are given, a first pass computes ``|m|`` and ``std`` of every pixel and
their exact global quantiles (this runs the ensemble once; computing the products runs it again,
so pass ``thresholds`` or persist the input's forecast when inference is costly). The values held in
memory by that pass are two float32 numbers per pixel.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np
import xarray as xr

from insarcast.errors import InputError

from insarcast.baselines import decimal_years
from insarcast.cadence import median_spacing

from .correction import EPOCH_DAYS as CORRECTION_EPOCH_DAYS, provenance as correction_provenance
from .fronts import FRONT_NAME, FRONT_RADIUS, carry_of
from .inputs import carries_fronts, check_inputs, forecast_scale, hindcast_origins, norm_values, reference_fit, \
    uses_spatial_filter
from .products import (BIVARIATE_NAMES, CLASS_NAMES, CLASS_PRODUCTS, MODES, NODATA_CLASS, PRODUCTS,
                       Thresholds, check_horizon, member_statistics, product_stack, select)
from .products import thresholds as compute_thresholds
from .spatial import BINOMIAL_NAME, CHOICE_RADIUS, FILTER_NAME, RADIUS
from .tiling import check_tiling, default_overlap, forecast_block, forecast_dask, grid_offsets

CUBE_DIMS = ("t", "y", "x")

_DESCRIPTIONS = {
    "std": ("sqrt(std_k(|d_k|)^2 + s^2): members' standard deviation (ddof=0) and the forecast error scale s",
            "mm"),
    "p85": ("P85 = mean_k P(|d_k + e| >= q85), e ~ N(0, s^2) (s = 0: the share of members)", "1"),
    "p95": ("P95 = mean_k P(|d_k + e| >= q95), e ~ N(0, s^2) (s = 0: the share of members)", "1"),
    "p99": ("P99 = mean_k P(|d_k + e| >= q99), e ~ N(0, s^2) (s = 0: the share of members)", "1"),
    "mass_low": ("probability mass of class low = 1 - P85", "1"),
    "mass_medium": ("probability mass of class medium = P85 - P95", "1"),
    "mass_high": ("probability mass of class high = P95 - P99", "1"),
    "mass_highest": ("probability mass of class highest = P99", "1"),
    "confidence": ("probability mass of the assigned class", "1"),
    "rank_variance": ("variance of the class under the forecast distribution (s = 0: over members, ddof=0)", "1"),
    "class": ("susceptibility class of |median_k d_k|: <q85 low, <q95 medium, <q99 high, else highest", None),
    "bivariate": ("3 * susceptibility level (low, medium, high-or-highest) + std tercile", None),
}


def _is_dask(data) -> bool:
    try:
        import dask
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return dask.is_dask_collection(data)


def _check_dims(da: xr.DataArray, name: str) -> xr.DataArray:
    dims = tuple(str(d) for d in da.dims)
    if any(d.startswith("dim_") for d in dims):
        raise InputError(f"{name} has unnamed dims {dims}; name them {CUBE_DIMS} (e.g. with .rename)",
                         field=name)
    if set(dims) != set(CUBE_DIMS) or len(dims) != 3:
        raise InputError(f"{name} must have dims {CUBE_DIMS}, got {dims}", field=name)
    return da.transpose(*CUBE_DIMS)


def split_cube(cube: xr.DataArray | xr.Dataset) -> tuple[xr.DataArray, xr.DataArray | None]:
    """``displacement (t, y, x)`` and ``valid (y, x)`` (or None) of a cube, checked and transposed."""
    if isinstance(cube, xr.Dataset):
        if "displacement" not in cube:
            raise InputError(f"expected a 'displacement' variable, got {list(cube.data_vars)}",
                             field="displacement")
        displacement, valid = cube["displacement"], cube.get("valid")
    elif isinstance(cube, xr.DataArray):
        displacement, valid = cube, None
    else:
        raise InputError(f"expected an xarray DataArray or Dataset, got {type(cube).__name__}",
                         field="displacement")
    displacement = _check_dims(displacement, "displacement")
    if "t" not in displacement.coords or not np.issubdtype(displacement["t"].dtype, np.datetime64):
        raise InputError("the time dim 't' needs a datetime64 coordinate", field="t")
    t = displacement["t"].values
    if len(t) > 1 and not (np.diff(t) > np.timedelta64(0)).all():
        raise InputError("the time coordinate 't' is not strictly increasing", field="t")
    if _is_dask(displacement.data) or np.isinf(displacement.values).any():
        displacement = displacement.where(np.isfinite(displacement))      # an infinite value is a missing one
    if valid is not None:
        if set(valid.dims) != {"y", "x"}:
            raise InputError(f"'valid' must have dims ('y', 'x'), got {tuple(valid.dims)}", field="valid")
        valid = valid.transpose("y", "x")
    return displacement, valid


def no_usable_pixel(history: int, finite: int, marked: int | None, *, path: str | os.PathLike | None = None
                    ) -> InputError:
    """The error for a cube without a pixel both finite at each of the last ``history`` epochs (``finite`` of
    them are) and marked valid by its ``valid`` variable (``marked``, None without one): which one failed."""
    if finite == 0:
        why = f"no pixel is finite at each of the last {history} epochs (is the input all NaN?)"
    else:
        why = (f"{finite} pixel(s) are finite at each of the last {history} epochs, {marked} are marked valid by "
               "the cube's 'valid' (a cell with an epoch without data anywhere in the record), none both")
    return InputError(f"no valid pixel: {why}", path=path, field="displacement")


def forecast_products(cube: xr.DataArray | xr.Dataset, predict: Callable[[np.ndarray], np.ndarray], *,
                      history: int, horizon_steps: int, patch: int, norm: Mapping[str, Any], overlap: int | None = None,
                      members: int, horizon: int | None = None, mode: str = "change",
                      thresholds: Thresholds | Mapping[str, Any] | None = None,
                      batch_size: int = 64, materialise: Callable[[Any], Any] | None = None,
                      inputs: str = "paper", spatial_filter: bool | None = None) -> xr.Dataset:
    """Forecast the ``horizon_steps`` epochs after the cube's last one and derive the products.

    ``cube``: DataArray of displacement (mm) or Dataset with ``displacement`` and optionally
    ``valid (y, x)``; dims ``t, y, x`` in any order; ``t`` datetime64. With the ``paper`` ``inputs``
    only its last ``history`` epochs feed the model, with ``residual`` all of them (the long fit of
    :mod:`insarcast.udf.inputs`). ``predict``: ``(N, T, C, P, P) -> (members, N, F, P, P)`` normalised
    (see :mod:`insarcast.udf.tiling`). ``horizon`` (1..F, default F) and ``mode`` ("change" or
    "cumulative", see :func:`insarcast.udf.products.select`) choose the member values the products
    are made of; ``thresholds`` (a :class:`Thresholds` or mapping of its fields) are used unchanged
    when given, else computed exactly over the region. ``materialise`` (Dask input only) receives
    the lazy member forecasts ``(K, F, y, x)`` and returns them computed and stored (for example
    written to a scratch Zarr store and read back), so that the ensemble runs once although the
    thresholds need a pass over the whole region before the products; with inputs other than the
    paper's it is called first, once more, with the reference's fit ``(2F + 1, y, x)``
    (:func:`insarcast.udf.inputs.reference_fit`), which the members' filter widths and the products'
    error scale both read, so that it too is computed once.

    ``overlap``: cells shared by neighbouring tiles (default
    :func:`insarcast.udf.tiling.default_overlap`, P / 4). Tiles lie on the grid's global tiling
    (:func:`insarcast.udf.tiling.grid_offsets` of the ``y`` and ``x`` coordinates), so any window of
    the same grid, however chunked, and an openEO tile with a halo of at least P - 1 cells get the
    same values as the whole region. ``spatial_filter`` (default: that of ``inputs``,
    :data:`insarcast.udf.inputs.SPATIAL_FILTER`) smooths each member's map
    (:mod:`insarcast.udf.spatial`); the products record it in the attribute ``spatial_filter``.

    Returns a Dataset with coords ``member`` (0..K-1), ``horizon`` (1..F), ``time(horizon)`` =
    last epoch + h * median epoch spacing, ``y``, ``x`` (and ``spatial_ref`` when the input has one);
    variables ``forecast (member, horizon, y, x)`` and ``median (horizon, y, x)`` float32 mm (change
    since the last epoch, whatever ``mode``), and at the chosen horizon ``std``, ``p85``, ``p95``,
    ``p99``, ``mass_low``, ``mass_medium``, ``mass_high``, ``mass_highest``, ``confidence``,
    ``rank_variance`` (y, x) float32 and ``class``, ``bivariate`` (y, x) uint8 with 255 = nodata.
    A cube without any valid pixel is an :class:`InputError` (for Dask input, raised by the threshold
    pass; with given thresholds and Dask input nothing is read, and such a cube gives all-NaN products).
    """
    displacement, valid = split_cube(cube)
    nt = displacement.sizes["t"]
    if nt < history:
        raise InputError(f"the cube has {nt} epochs, fewer than the model's history T = {history}", field="t")
    overlap = default_overlap(patch) if overlap is None else int(overlap)
    check_tiling(patch=patch, overlap=overlap)
    norm = norm_values(norm)
    horizon = check_horizon(horizon, horizon_steps)
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}", field="mode")
    given = thresholds is not None
    if given:
        thresholds = Thresholds.from_mapping(thresholds)

    lazy = _is_dask(displacement.data) or (valid is not None and _is_dask(valid.data))
    if lazy and min(displacement.sizes["y"], displacement.sizes["x"]) <= max(patch, CHOICE_RADIUS):
        # Dask's overlap needs a region larger than its depth (P cells, or the filter width's reach); one
        # this small fits in memory
        displacement, valid = displacement.compute(), None if valid is None else valid.compute()
        lazy = False
    inputs = check_inputs(inputs)
    last = displacement.isel(t=slice(nt - history, None) if inputs == "paper" else slice(None)).data
    years = decimal_years(displacement["t"].values)
    valid_data = None if valid is None else valid.data
    offset = None
    if mode == "cumulative":
        offset = displacement.isel(t=-1).data - displacement.isel(t=0).data

    offset_y, offset_x = grid_offsets(*(displacement[d].values if d in displacement.coords else None
                                        for d in ("y", "x")))
    settings = dict(predict=predict, history=history, horizon_steps=horizon_steps, members=members,
                    patch=patch, overlap=overlap, norm=norm, batch_size=batch_size, offset_y=offset_y,
                    offset_x=offset_x, inputs=inputs, years=years if inputs != "paper" else None,
                    spatial_filter=uses_spatial_filter(inputs, spatial_filter))
    path = _products_dask if lazy else _products_numpy
    fc, median, stack, thresholds, scale = path(last, valid_data, offset, settings, horizon=horizon, mode=mode,
                                                thresholds=thresholds, materialise=materialise)

    return assemble_products(displacement, fc, median, stack, scale, thresholds=thresholds, given=given,
                             horizon=horizon, mode=mode, history=history, patch=patch, overlap=overlap,
                             members=members, inputs=inputs, spatial_filter=settings["spatial_filter"])


def assemble_products(template: xr.DataArray, fc, median, stack, scale=None, *, thresholds: Thresholds,
                      given: bool, horizon: int, mode: str, history: int, patch: int, overlap: int, members: int,
                      inputs: str, spatial_filter: bool | None = None) -> xr.Dataset:
    """The products Dataset :func:`forecast_products` returns, from its arrays (numpy or Dask):
    ``fc (K, F, y, x)``, ``median (F, y, x)``, ``stack`` (the :data:`PRODUCTS` layers, ``(len(PRODUCTS), y,
    x)`` float, class codes as numbers with 255 nodata) and ``scale (F, y, x)`` or None (``paper`` inputs).

    ``template``: the cube's displacement ``(t, y, x)``, of which only the coordinates (``t``: the epochs,
    from which the reference and valid times follow; ``y``, ``x``, ``spatial_ref``) and attributes are
    read. One function for both callers: ``insarcast forecast`` and ``insarcast openeo run``, which
    assembles what the UDF returned (:mod:`insarcast.udf.openeo_result`)."""
    offset_y, offset_x = grid_offsets(*(template[d].values if d in template.coords else None for d in ("y", "x")))
    out = _dataset(template, fc, median, stack, thresholds=thresholds, given=given, horizon=horizon,
                   mode=mode, history=history, patch=patch, overlap=overlap, members=members)
    if scale is not None:
        out["forecast_scale"] = (("horizon", "y", "x"), scale, {
            **out["median"].attrs, "units": "mm",
            "long_name": "standard error of the forecast of the change: the least-squares prediction error of "
                         "the adaptive curve and the median's departure from that curve (what was learnt "
                         "elsewhere) in quadrature, the spread the products give each member"})
    out.attrs.update(tile_offset_y=int(offset_y), tile_offset_x=int(offset_x), inputs=inputs,
                     spatial_filter=(FILTER_NAME if hindcast_origins(inputs) else BINOMIAL_NAME)
                     if uses_spatial_filter(inputs, spatial_filter) else "none",
                     front_carry=FRONT_NAME if carries_fronts(inputs, spatial_filter) else "none")
    if inputs == "residual-corrected":
        t = template["t"].values if "t" in template.coords else ()
        days = median_spacing(t) if len(t) > 1 else CORRECTION_EPOCH_DAYS
        out.attrs.update(correction_provenance(history=history, horizon=int(fc.shape[1]), patch=patch, epoch_days=days))
    return out


def _products_dask(last, valid_data, offset, settings: dict[str, Any], *, horizon: int, mode: str,
                   thresholds: Thresholds | None, materialise: Callable[[Any], Any] | None):
    """The Dask path of :func:`forecast_products`: lazy member forecasts, the thresholds (when not
    given) from one pass over the region, then the products; returns ``(fc, median, stack, thresholds)``."""
    import dask.array as da

    fitted = widths = carry = None
    if settings["inputs"] != "paper":
        steps, series = settings["horizon_steps"], da.asarray(last).rechunk({0: -1})
        if valid_data is not None:
            series = da.where(da.asarray(valid_data).astype(bool).rechunk(series.chunks[1:]), series, np.nan)
        # a pixel's filter width reads CHOICE_RADIUS cells of the neighbouring chunks
        epochs, layers = series.shape[0], 2 * steps + 1
        if epochs < layers:             # room for the layers of reference_fit in a block of the series' shape
            series = da.concatenate([series, da.full((layers - epochs,) + series.shape[1:], np.nan, np.float32,
                                                     chunks=(-1,) + series.chunks[1:])]).rechunk({0: -1})
        fitted = da.map_overlap(_reference_fit, series, depth={0: 0, 1: CHOICE_RADIUS, 2: CHOICE_RADIUS},
                                boundary=np.nan, epochs=epochs, years=settings["years"], history=settings["history"],
                                horizon=steps, inputs=settings["inputs"], dtype=np.float32)[:layers]
        if materialise is not None:
            fitted = materialise(fitted)
        if settings["spatial_filter"]:
            widths = fitted[2 * steps]
            if carries_fronts(settings["inputs"], settings["spatial_filter"]):
                # a front's carry reads FRONT_RADIUS cells of the series and RADIUS of the reference around a pixel
                reach = max(FRONT_RADIUS, RADIUS)
                both = da.concatenate([series[:epochs], fitted.rechunk((-1,) + series.chunks[1:])]).rechunk({0: -1})
                carry = da.map_overlap(_carry, both, depth={0: 0, 1: reach, 2: reach}, boundary=np.nan,
                                       epochs=epochs, history=settings["history"], dtype=np.float32)[:steps]
                if materialise is not None:
                    carry = materialise(carry)
    fc = forecast_dask(last, valid_data, widths=widths, carry=carry, **settings)
    if materialise is not None:
        fc = materialise(fc)
    d = fc[:, horizon - 1] if offset is None else fc[:, horizon - 1] + da.asarray(offset).rechunk(fc.chunks[2:])
    median = da.map_blocks(_median, fc, drop_axis=0, dtype=np.float32)
    scale = None
    if fitted is not None:
        fitted = fitted.rechunk(((2 * steps + 1,),) + median.chunks[1:])
        # the filter of the reference reads RADIUS cells of the neighbouring chunks, as the members' did
        both = da.concatenate([fitted, median], axis=0).rechunk({0: -1})
        scale = da.map_overlap(_forecast_scale, both, depth={0: 0, 1: RADIUS, 2: RADIUS}, boundary=np.nan,
                               spatial_filter=settings["spatial_filter"], dtype=np.float32)[:steps]
    at_h = None if scale is None else scale[horizon - 1]
    if thresholds is None:
        stats = da.map_blocks(_stats, d, at_h, dtype=np.float32, chunks=((2,),) + d.chunks[1:])
        m_abs, std = stats.compute()
        thresholds = compute_thresholds(m_abs, std)
    stack = da.map_blocks(product_stack, d, thresholds, at_h, dtype=np.float32,
                          chunks=((len(PRODUCTS),),) + d.chunks[1:])
    return fc, median, stack, thresholds, scale


def _products_numpy(last, valid_data, offset, settings: dict[str, Any], *, horizon: int, mode: str,
                    thresholds: Thresholds | None, materialise: Callable[[Any], Any] | None = None):
    """The numpy path of :func:`forecast_products` (``materialise`` does not apply): refuses a cube
    without a usable pixel, forecasts, selects, thresholds; returns ``(fc, median, stack, thresholds)``."""
    history = settings["history"]
    last = np.asarray(last)
    if valid_data is not None:
        valid_data = np.asarray(valid_data, bool)
    finite = np.isfinite(last[last.shape[0] - history:]).all(axis=0)
    usable = finite & (True if valid_data is None else valid_data)
    if not usable.any():
        raise no_usable_pixel(history, int(finite.sum()), None if valid_data is None else int(valid_data.sum()))
    fitted = widths = carry = None
    if settings["inputs"] != "paper":
        series = last if valid_data is None else np.where(valid_data, last, np.nan)
        fitted = reference_fit(series, settings["years"], history=history, horizon=settings["horizon_steps"],
                               inputs=settings["inputs"])
        widths = fitted[-1] if settings["spatial_filter"] else None
        if carries_fronts(settings["inputs"], settings["spatial_filter"]):
            carry = carry_of(series, fitted, history=history)
    fc = forecast_block(last, valid_data, widths=widths, carry=carry, **settings)
    d = select(fc, horizon=horizon, mode=mode, offset=None if offset is None else np.asarray(offset))
    median = _median(fc)
    scale = None
    if fitted is not None:
        scale = forecast_scale(fitted, median, spatial_filter=settings["spatial_filter"])
    at_h = None if scale is None else scale[horizon - 1]
    if thresholds is None:
        thresholds = compute_thresholds(*member_statistics(d, at_h))
    stack = product_stack(d, thresholds, at_h)
    return fc, median, stack, thresholds, scale


def _median(fc: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.median(fc, axis=0).astype(np.float32)


def _forecast_scale(both: np.ndarray, *, spatial_filter: bool) -> np.ndarray:
    """:func:`insarcast.udf.inputs.forecast_scale` of ``reference_fit`` and the median stacked ``(3F + 1, y, x)``,
    in the first F layers of a block of the same shape (Dask's overlap keeps the block's shape)."""
    steps = both.shape[0] // 3
    out = np.zeros(both.shape, np.float32)
    out[:steps] = forecast_scale(both[:2 * steps + 1], both[2 * steps + 1:], spatial_filter=spatial_filter)
    return out


def _carry(both: np.ndarray, *, epochs: int, history: int) -> np.ndarray:
    """:func:`insarcast.udf.fronts.carry_of` of a block holding the series' ``epochs`` then ``reference_fit``'s
    layers, in the first F layers of an array of the block's shape."""
    carry = carry_of(both[:epochs], both[epochs:], history=history)
    out = np.full(both.shape, np.nan, np.float32)
    out[: len(carry)] = carry
    return out


def _reference_fit(series: np.ndarray, *, epochs: int, **kwargs) -> np.ndarray:
    """:func:`insarcast.udf.inputs.reference_fit` of the first ``epochs`` of a block ``(t, y, x)`` in the first
    ``2F + 1`` layers of an array of the block's shape (Dask's overlap keeps it)."""
    fitted = reference_fit(series[:epochs], **kwargs)
    out = np.full(series.shape, np.nan, np.float32)
    out[: len(fitted)] = fitted
    return out


def _stats(d: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    return np.stack(member_statistics(d, scale))


def _dataset(displacement: xr.DataArray, fc, median, stack, *, thresholds: Thresholds, given: bool,
             horizon: int, mode: str, history: int, patch: int, overlap: int, members: int) -> xr.Dataset:
    t = displacement["t"].values
    steps = fc.shape[1]
    spacing = np.median(np.diff(t)) if len(t) > 1 else np.timedelta64(0, "ns")
    times = t[-1] + np.arange(1, steps + 1) * spacing
    coords = _coords(displacement, times, members=members)
    base_attrs = _grid_mapping(displacement, coords)
    data_vars = {
        "forecast": (("member", "horizon", "y", "x"), fc,
                     {**base_attrs, "units": "mm", "long_name": "ensemble member forecast: change since the "
                                                               "last observed epoch"}),
        "median": (("horizon", "y", "x"), median,
                   {**base_attrs, "units": "mm", "long_name": "median over members of the change since the "
                                                               "last observed epoch"}),
        **_product_vars(stack, base_attrs),
    }
    attrs = {
        "Conventions": "CF-1.11",
        "title": "insarcast ensemble forecast of ground deformation and its susceptibility products",
        **thresholds.to_dict(),
        "thresholds_units": "mm",
        "thresholds_source": "given" if given else "quantiles of this region's valid pixels",
        "horizon": int(horizon),
        "valid_time": str(np.datetime_as_string(times[horizon - 1], unit="s")),
        "mode": mode,
        "mode_description": ("change since the last observed epoch" if mode == "change" else
                             "displacement since the first epoch of the cube"),
        "reference_time": str(np.datetime_as_string(t[-1], unit="s")),
        "history_epochs": int(history),
        "horizon_steps": int(steps),
        "patch": int(patch),
        "overlap": int(overlap),
        "members": int(members),
    }
    if "crs" in displacement.attrs:
        attrs["crs"] = displacement.attrs["crs"]
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _coords(displacement: xr.DataArray, times: np.ndarray, *, members: int) -> dict[str, Any]:
    """The products' coordinates: members, horizon steps with their valid times and lead times, the
    forecast's reference time, and the cube's map coordinates and CRS."""
    last = displacement["t"].values[-1]
    steps = len(times)
    # CF 1.11: section 4.4 (time), the forecast_reference_time / forecast_period standard names for
    # a forecast's issue time and lead time, section 5.6 (projection_x/y_coordinate with a grid mapping)
    coords = {
        "member": ("member", np.arange(members), {"long_name": "ensemble member"}),
        "horizon": ("horizon", np.arange(1, steps + 1), {"long_name": "epochs after the last observed one"}),
        "time": ("horizon", times.astype("datetime64[ns]"), {"standard_name": "time",
                                                             "long_name": "valid time of the forecast"}),
        "forecast_period": ("horizon", (times - last).astype("timedelta64[ns]"),
                            {"standard_name": "forecast_period", "long_name": "lead time after the last epoch"}),
        "forecast_reference_time": ((), np.datetime64(last, "ns"),
                                    {"standard_name": "forecast_reference_time",
                                     "long_name": "last observed epoch the forecast starts from"}),
        "y": displacement["y"],
        "x": displacement["x"],
    }
    if "spatial_ref" in displacement.coords:                      # the CRS travels with the cube
        coords["spatial_ref"] = displacement.coords["spatial_ref"].reset_coords(drop=True)
        coords["spatial_ref"].attrs.setdefault("long_name", "coordinate reference system")
        for axis in ("y", "x"):                                   # projected map coordinates (metres)
            coord = displacement[axis].reset_coords(drop=True).copy()
            coord.attrs = {**coord.attrs, "standard_name": f"projection_{axis}_coordinate",
                           "long_name": f"{axis} coordinate of projection", "units": coord.attrs.get("units", "m")}
            coords[axis] = coord
    return coords


def _grid_mapping(displacement: xr.DataArray, coords: dict[str, Any]) -> dict[str, str]:
    """The ``grid_mapping`` attribute every map variable carries (CF 5.6), empty without a CRS."""
    grid_mapping = displacement.attrs.get("grid_mapping", displacement.encoding.get("grid_mapping"))
    if grid_mapping:
        return {"grid_mapping": grid_mapping}
    return {"grid_mapping": "spatial_ref"} if "spatial_ref" in coords else {}


def _product_vars(stack, base_attrs: dict[str, str]) -> dict[str, tuple]:
    """The (y, x) products of :data:`PRODUCTS` from their stacked layers, with units, names and, for
    the class codes, CF flags."""
    out = {}
    for i, name in enumerate(PRODUCTS):
        long_name, units = _DESCRIPTIONS[name]
        attrs = {**base_attrs, "long_name": long_name}
        if units:
            attrs["units"] = units
        layer = stack[i]
        if name in CLASS_PRODUCTS:
            layer = layer.astype(np.uint8)
            meanings = CLASS_NAMES if name == "class" else BIVARIATE_NAMES
            # CF 2.5.1: "values outside the valid range are missing", so 255 is nodata for CF readers
            # while xarray keeps the codes uint8 (a _FillValue would make them float with NaN)
            attrs.update(flag_values=np.arange(len(meanings), dtype=np.uint8),
                         flag_meanings=" ".join(meanings), nodata=NODATA_CLASS,
                         valid_range=np.array([0, len(meanings) - 1], np.uint8))
        out[name] = (("y", "x"), layer, attrs)
    return out
