"""insarcast as an openEO UDF: the ensemble forecast and its products for ``apply_neighborhood``.

Use it with the time dimension whole and spatial tiles with an overlap of at least P / 2 cells (the
ensemble's patch size), for example ``size=[{dimension: x, value: 256, unit: px}, {y ...}, {t: null}]``
and ``overlap=[{x: 16 px}, {y: 16 px}]``. The backend passes float32 with NaN nodata and dims
(t, bands, y, x), y descending; the UDF returns (bands, y, x) float32 with one named band per product
(:func:`band_names`): ``fc_h1`` .. ``fc_hF`` (ensemble median of the change after h epochs, mm),
``median``, ``std``, ``class``, ``p85``, ``p95``, ``p99``, ``mass_low`` .. ``mass_highest``,
``confidence``, ``rank_variance``, ``bivariate`` (classes as numbers, NaN where not valid).

``context``:
    ensemble     path of the ensemble folder on the backend (required)
    thresholds   {"q85", "q95", "q99", "std_tercile_1", "std_tercile_2"} in mm, computed over the whole
                 region beforehand (required: one call sees one tile, and classes must not depend
                 on the tiling); ``insarcast forecast`` records them in its products
    band         the input band holding the displacement in mm (default: the first band)
    horizon      1..F (default F); mode "change" (default) or "cumulative"; overlap (default P / 2)

The entry points need numpy, xarray and onnxruntime, and the ``insarcast`` package (its UDF part
imports no torch): ship the wheel and the ensemble with the job (README, "openEO").
"""

import numpy as np
import xarray

PRODUCT_BANDS = ("median", "std", "class", "p85", "p95", "p99", "mass_low", "mass_medium", "mass_high",
                 "mass_highest", "confidence", "rank_variance", "bivariate")


def band_names(horizon_steps: int) -> list:
    """The output bands for an ensemble of horizon F."""
    return [f"fc_h{h}" for h in range(1, horizon_steps + 1)] + list(PRODUCT_BANDS)


def _ensemble(context: dict):
    from insarcast.errors import InputError
    from insarcast.udf.run import EnsemblePredictor

    if not context or "ensemble" not in context:
        raise InputError("the UDF context needs 'ensemble', the path of the ensemble folder", field="ensemble")
    return EnsemblePredictor(context["ensemble"], threads=context.get("threads")).ensemble()


def apply_metadata(metadata, context: dict):
    """Rename the bands to the products (openEO calls this to learn the output's bands)."""
    return metadata.rename_labels(dimension="bands", target=band_names(_ensemble(context).horizon))


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    """(t, bands, y, x) displacement in mm -> (bands, y, x) products, float32."""
    from insarcast.errors import InputError
    from insarcast.udf.forecast import forecast_products

    context = context or {}
    if any(str(d).startswith("dim_") for d in cube.dims):
        raise InputError(f"the cube's dims are unnamed {tuple(cube.dims)}: expected (t, bands, y, x)", field="dims")
    if "bands" in cube.dims:
        band = context.get("band")
        cube = cube.sel(bands=band) if band is not None else cube.isel(bands=0)
        cube = cube.drop_vars("bands", errors="ignore")
    if "thresholds" not in context:
        raise InputError("the UDF context needs 'thresholds' (q85, q95, q99, std_tercile_1, std_tercile_2) "
                         "computed over the whole region", field="thresholds")
    ensemble = _ensemble(context)
    if "t" in cube.coords and not np.issubdtype(cube["t"].dtype, np.datetime64):
        cube = cube.assign_coords(t=np.asarray(cube["t"].values, "datetime64[ns]"))
    products = forecast_products(cube.astype(np.float32), overlap=int(context.get("overlap", ensemble.patch // 2)),
                                 horizon=context.get("horizon"), mode=context.get("mode", "change"),
                                 thresholds=context["thresholds"], **ensemble.settings)
    layers = [products["median"].sel(horizon=h) for h in products["horizon"].values]
    for name in PRODUCT_BANDS:
        value = products[name]
        if value.dtype == np.uint8:                                    # class codes: NaN where nodata
            value = value.astype(np.float32).where(value != 255)
        layers.append(value if name != "median" else products["median"].sel(horizon=products.attrs["horizon"]))
    names = band_names(len(products["horizon"]))
    out = xarray.concat([layer.drop_vars(["horizon", "time"], errors="ignore").astype(np.float32)
                         for layer in layers], dim="bands")
    out = out.assign_coords(bands=names).transpose("bands", "y", "x")
    return out.drop_vars([c for c in out.coords if c not in ("bands", "y", "x")])
