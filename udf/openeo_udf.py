"""insarcast as an openEO UDF: the ensemble forecast and its products for ``apply_neighborhood``.

Use it with spatial tiles with a halo (``overlap``) of at least P - 1 cells (:func:`insarcast.udf.spatial.halo`
with the spatial filter, 37 for P = 32), P the ensemble's patch size (:func:`insarcast.udf.openeo_graph.process_graph`
uses that halo): the tiles lie on the grid's global
tiling (derived from the x / y coordinates), so every cell of a tile's core then gets exactly the
values ``insarcast forecast`` computes over the whole region. The graph sends (bands, y, x), one band
per epoch labelled by its date (``apply_dimension(dimension="t", target_dimension="bands")`` then
``rename_labels``), and the UDF returns (bands, y, x): the dims it received, as ``apply_neighborhood``
requires, with one named band per product (:func:`band_names`, declared in :func:`apply_metadata`):
``fc_h1`` .. ``fc_hF`` (ensemble median of the change after h epochs, mm), ``median``, ``std``,
``class``, ``p85``, ``p95``, ``p99``, ``mass_low`` .. ``mass_highest``, ``confidence``,
``rank_variance``, ``bivariate`` (classes as numbers, NaN where not valid); with ``member_bands`` also
``member00_h1`` .. (every member's change at every horizon step, member-major) and, for an ensemble
whose inputs are not ``paper``, ``scale_h1`` .. ``scale_hF`` (the forecast error scale): all that
``insarcast openeo run`` needs to write products equal to ``insarcast forecast``'s. It also takes (t, bands,
y, x) (``band`` picks the displacement), for callers of ``run_udf_code``, and then returns (bands, y,
x). Float32 with NaN nodata, y descending. A tile without any valid pixel gives NaN everywhere.

``context``:
    ensemble     path of the ensemble folder on the backend (required; relative paths are relative
                 to the working directory, where a backend unpacks ``udf-dependency-archives``)
    thresholds   {"q85", "q95", "q99", "std_tercile_1", "std_tercile_2"} in mm, computed over the whole
                 region beforehand (required: one call sees one tile, and classes must not depend
                 on the tiling); ``insarcast forecast`` records them in its products
    band         the input band holding the displacement in mm (default: the first band)
    horizon      1..F (default F); mode "change" (default) or "cumulative"; overlap: cells shared by
                 neighbouring model tiles (default P / 4); threads: ONNX Runtime threads per session
    python_path  folders appended to ``sys.path`` before insarcast is imported: where the backend
                 unpacked an archive holding the insarcast package (and onnxruntime, if it lacks it)
    member_bands true: also return the members' forecasts and the forecast error scale (default false)
    spatial_filter true / false: smooth each member's map (:mod:`insarcast.udf.spatial`; default: as
                 the ensemble's inputs have it, :data:`insarcast.udf.inputs.SPATIAL_FILTER`); with
                 it the halo must be at least :func:`insarcast.udf.spatial.halo` of P

The tile's grid spacing and epoch spacing must be the ensemble's. The entry points need numpy,
xarray, onnxruntime and the ``insarcast`` package (whose UDF part imports nothing else, torch least
of all): the README, "openEO", shows how to ship it and the ensemble with a job.
"""

import sys

import numpy as np
import xarray

PRODUCT_BANDS = ("median", "std", "class", "p85", "p95", "p99", "mass_low", "mass_medium", "mass_high",
                 "mass_highest", "confidence", "rank_variance", "bivariate")


def band_names(horizon_steps: int, members: int = 0, scale: bool = False) -> list:
    """The output bands for an ensemble of horizon F; with ``members`` K > 0 (context ``member_bands``)
    also each member's change at each step, and with ``scale`` the forecast error scale per step."""
    steps = range(1, horizon_steps + 1)
    names = [f"fc_h{h}" for h in steps] + list(PRODUCT_BANDS)
    names += [f"member{k:02d}_h{h}" for k in range(members) for h in steps]
    return names + ([f"scale_h{h}" for h in steps] if scale else [])


def _output_names(ensemble, context: dict) -> list:
    """The products stage's bands for this ensemble and context."""
    if not context.get("member_bands"):
        return band_names(ensemble.horizon)
    return band_names(ensemble.horizon, len(ensemble.members), ensemble.inputs != "paper")


# key -> (accepted types, what to say); every key of the context must be one of these.
CONTEXT_KEYS = {
    "ensemble": ((str,), "a path (string)"),
    "thresholds": ((dict,), "an object {q85, q95, q99, std_tercile_1, std_tercile_2}"),
    "band": ((str, int), "a band name"),
    "horizon": ((int,), "an integer 1..F"),
    "mode": ((str,), "'change' or 'cumulative'"),
    "overlap": ((int,), "an integer >= 0"),
    "threads": ((int,), "an integer >= 1"),
    "python_path": ((list, tuple), "a list of folder paths (strings)"),
    "stage": ((str,), "'products' or 'statistics'"),
    "member_bands": ((bool,), "true or false"),
    "spatial_filter": ((bool,), "true or false"),
}
STATISTICS_BANDS = ("m_abs", "std")
# any valid thresholds: |m| and std, all the statistics stage returns, do not depend on them
_UNUSED_THRESHOLDS = {"q85": 0.0, "q95": 0.0, "q99": 0.0, "std_tercile_1": 0.0, "std_tercile_2": 0.0}


def check_context(context, error=ValueError) -> dict:
    """The UDF context, every key checked (name, type, range) before anything is imported or read;
    ``error`` (insarcast's InputError once importable) names the key. Returns the context (a dict)."""
    def refuse(key, message):
        if error is ValueError:
            raise ValueError(f"context[{key!r}]: {message}")
        raise error(message, field=f"context.{key}")

    if context is None:
        return {}
    if not isinstance(context, dict):
        raise (TypeError if error is ValueError else error)(f"the UDF context must be an object (dict), got "
                                                            f"{type(context).__name__}")
    for key, value in context.items():
        if key not in CONTEXT_KEYS:
            refuse(key, f"unknown key; the insarcast UDF reads {', '.join(CONTEXT_KEYS)}")
        if value is None and key not in ("ensemble", "thresholds"):
            continue
        kinds, what = CONTEXT_KEYS[key]
        if isinstance(value, bool) is not (bool in kinds) or not isinstance(value, kinds):
            refuse(key, f"must be {what}, got {type(value).__name__} {value!r}")
    for folder in context.get("python_path") or []:
        if not isinstance(folder, str):
            refuse("python_path", f"must be {CONTEXT_KEYS['python_path'][1]}, got an item {folder!r}")
    for key, least in (("horizon", 1), ("overlap", 0), ("threads", 1)):
        if context.get(key) is not None and context[key] < least:
            refuse(key, f"must be at least {least}, got {context[key]}")
    if context.get("stage") is not None and context["stage"] not in ("products", "statistics"):
        refuse("stage", f"must be 'products' or 'statistics', got {context['stage']!r}")
    if context.get("mode") is not None and context["mode"] not in ("change", "cumulative"):
        refuse("mode", f"must be 'change' or 'cumulative', got {context['mode']!r}")
    return context


def _insarcast(context: dict):
    """Import insarcast's UDF part, after adding ``context["python_path"]`` to ``sys.path``; the whole
    context is checked (python_path before it is used, the rest once InputError can be imported)."""
    path = context.get("python_path") if isinstance(context, dict) else None
    if path is not None and (not isinstance(path, (list, tuple)) or not all(isinstance(f, str) for f in path)):
        raise ValueError(f"context['python_path'] must be {CONTEXT_KEYS['python_path'][1]}, got "
                         f"{type(path).__name__} {path!r}")
    for folder in (context or {}).get("python_path") or []:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    try:
        from insarcast.errors import InputError
        from insarcast.udf import forecast, run
    except ImportError as err:
        raise ImportError(f"the insarcast UDF needs the insarcast package and onnxruntime on the backend ({err}); "
                          "ship them in an archive (job option udf-dependency-archives) and name the folder in "
                          "context['python_path']: see the README, 'openEO'") from err
    check_context(context, InputError)
    return InputError, forecast, run


def _ensemble(context: dict):
    InputError, _, run = _insarcast(context)
    if not context or "ensemble" not in context:
        raise InputError("the UDF context needs 'ensemble', the path of the ensemble folder", field="ensemble")
    return run.EnsemblePredictor(context["ensemble"], threads=context.get("threads")).ensemble()


def apply_metadata(metadata, context: dict):
    """Rename the bands to the products (openEO calls this to learn the output's bands)."""
    if (context or {}).get("stage") == "statistics":
        _insarcast(context)
        return metadata.rename_labels(dimension="bands", target=list(STATISTICS_BANDS))
    return metadata.rename_labels(dimension="bands", target=_output_names(_ensemble(context), context))


def _epochs_from_bands(cube: xarray.DataArray, InputError) -> xarray.DataArray:
    """(bands, y, x) whose band labels are the epochs' dates (what ``apply_dimension(dimension="t",
    target_dimension="bands")`` then ``rename_labels`` make of the history) -> (t, y, x)."""
    labels = [str(label) for label in cube["bands"].values] if "bands" in cube.coords else []
    try:
        times = np.asarray(labels, "datetime64[ns]")
    except ValueError:
        times = None
    if times is None or len(times) != cube.sizes["bands"]:
        raise InputError(f"a cube without a time dim must carry the epochs' dates as band labels, got "
                         f"{labels[:3]}{' ...' if len(labels) > 3 else ''}", field="bands")
    return cube.rename(bands="t").assign_coords(t=times)


def _displacement(cube: xarray.DataArray, context: dict, InputError) -> xarray.DataArray:
    """The displacement (t, y, x) of either input form."""
    if any(str(d).startswith("dim_") for d in cube.dims):
        raise InputError(f"the cube's dims are unnamed {tuple(cube.dims)}: expected (t, bands, y, x)", field="dims")
    if "t" not in cube.dims and "bands" in cube.dims:
        cube = _epochs_from_bands(cube, InputError)
    if "bands" in cube.dims and "t" in cube.dims:
        band = context.get("band")
        if band is not None and band not in cube["bands"].values:
            raise InputError(f"no band {band!r} in the cube, which has {list(cube['bands'].values)}", field="band")
        cube = cube.sel(bands=band) if band is not None else cube.isel(bands=0)
        cube = cube.drop_vars("bands", errors="ignore")
    return cube


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    """(t, bands, y, x) displacement in mm -> (bands, y, x) products, float32; or, the form the graph
    sends, (bands, y, x) with one band per epoch labelled by its date -> (bands, y, x) products (the
    same dims: ``apply_neighborhood`` keeps the dimensions, only the band labels change)."""
    context = context or {}
    InputError, forecast, run = _insarcast(context)
    cube = _displacement(cube, context, InputError)
    statistics = context.get("stage") == "statistics"
    if not statistics and "thresholds" not in context:
        raise InputError("the UDF context needs 'thresholds' (q85, q95, q99, std_tercile_1, std_tercile_2) "
                         "computed over the whole region", field="thresholds")
    ensemble = _ensemble(context)
    if "t" in cube.coords and not np.issubdtype(cube["t"].dtype, np.datetime64):
        cube = cube.assign_coords(t=np.asarray(cube["t"].values, "datetime64[ns]"))
    cube = cube.astype(np.float32)
    displacement, _ = forecast.split_cube(cube)                 # dims by name, a datetime64 t
    run.check_compatible(displacement, ensemble.manifest)
    names = list(STATISTICS_BANDS) if statistics else _output_names(ensemble, context)
    nt = displacement.sizes["t"]
    if nt >= ensemble.history and not np.isfinite(displacement.isel(t=slice(nt - ensemble.history, None)).values
                                                  ).all(axis=0).any():
        empty = np.full((len(names), displacement.sizes["y"], displacement.sizes["x"]), np.nan, np.float32)
        return xarray.DataArray(empty, dims=("bands", "y", "x"),
                                coords={"bands": names, "y": displacement["y"], "x": displacement["x"]})
    products = forecast.forecast_products(displacement, overlap=context.get("overlap"),
                                          horizon=context.get("horizon"), mode=context.get("mode", "change"),
                                          thresholds=_UNUSED_THRESHOLDS if statistics else context["thresholds"],
                                          spatial_filter=context.get("spatial_filter"), **ensemble.settings)
    if statistics:                                   # exact thresholds need every pixel's |m| and std
        layers = [abs(products["median"].sel(horizon=products.attrs["horizon"])), products["std"]]
        out = xarray.concat([layer.drop_vars(["horizon", "time"], errors="ignore").astype(np.float32)
                             for layer in layers], dim="bands")
        out = out.assign_coords(bands=names).transpose("bands", "y", "x")
        return out.drop_vars([c for c in out.coords if c not in ("bands", "y", "x")])
    layers = [products["median"].sel(horizon=h) for h in products["horizon"].values]
    for name in PRODUCT_BANDS:
        value = products[name]
        if value.dtype == np.uint8:                                    # class codes: NaN where nodata
            value = value.astype(np.float32).where(value != 255)
        layers.append(value if name != "median" else products["median"].sel(horizon=products.attrs["horizon"]))
    if context.get("member_bands"):                  # member-major, as band_names lists them
        layers += [products["forecast"].isel(member=k).sel(horizon=h) for k in products["member"].values
                   for h in products["horizon"].values]
        if "forecast_scale" in products:
            layers += [products["forecast_scale"].sel(horizon=h) for h in products["horizon"].values]
    drop = ["member", "horizon", "time", "forecast_period"]
    out = xarray.concat([layer.drop_vars(drop, errors="ignore").astype(np.float32) for layer in layers], dim="bands")
    out = out.assign_coords(bands=names).transpose("bands", "y", "x")
    return out.drop_vars([c for c in out.coords if c not in ("bands", "y", "x")])
