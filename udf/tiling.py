"""Forecast a whole (t, y, x) region with P x P tiles on a global grid, blended where tiles overlap.

Tiles
    Tile origins lie on a grid anchored to *global* pixel coordinates: along each axis the origins
    are ``j * S`` for every integer ``j`` (negative ones included), with stride ``S = P - overlap``.
    A pixel's global coordinate is its index plus the offset of the array's first pixel;
    :func:`grid_offsets` derives that offset from the map coordinates (``floor(x / spacing)``), so
    that any window of the same grid (a chunk, a sub-region, an openEO tile) sees the same tiles.
    Every tile that covers at least one pixel of the region is evaluated, except tiles without any
    valid pixel (they could only write to pixels that are NaN anyway). Tiles that stick out of the
    region are *padded with invalid pixels*: outside the region the model sees exactly what it sees
    at an invalid pixel inside it (both input channels 0).

Blending
    Each tile's forecast is weighted by the separable window ``w(i, j) = h(i) h(j)`` with
    ``h(i) = sin^2(pi (i + 1/2) / P)``, i = 0..P-1: a Hann window sampled at cell centres, so it is
    strictly positive (the smallest weight is ``sin^2(pi / 2P)``) and the region's edge pixels are
    covered too. The forecast of a pixel is ``sum_tiles w * f / sum_tiles w``, accumulated in
    float64 in the tiles' global row-major order, then de-normalised to mm and cast to float32.

Chunk invariance
    A pixel's result depends only on the tiles that cover it, each of which lies within ``P - 1``
    pixels of it. :func:`forecast_block` works on a block with its global offset and a halo of
    ``depth`` pixels; with ``depth >= P - 1`` and a halo that holds the neighbouring data (invalid
    beyond the region), its core pixels see exactly the tiles, inputs and summation order of the
    whole-array computation. :func:`forecast_dask` builds that halo with ``dask.array.overlap``
    (constant padding: NaN / invalid beyond the region), so numpy and Dask give the same bytes
    whatever the chunking, as long as the predictor's output for a tile does not depend on which
    other tiles share its batch. With the spatial filter (:mod:`insarcast.udf.spatial`) a core
    pixel also reads the blended forecast :data:`~insarcast.udf.spatial.RADIUS` cells around it:
    the tiles are evaluated for that ring too and the halo grows by as much; its width, chosen from the
    series :data:`~insarcast.udf.spatial.CHOICE_RADIUS` cells around it, is computed from the block
    unless given, and the halo is then at least that deep.

Predictor
    ``predict(x)`` takes ``x (N, T, C, P, P)`` float32 (see :mod:`insarcast.udf.inputs`) and returns
    ``(K, N, F, P, P)``: K members, the change from the last epoch for F epochs, normalised.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from insarcast.errors import InputError

from . import fronts
from .inputs import check_inputs, denormalise, hindcast_origins, history_mask, model_inputs, norm_values, \
    reference_fit, uses_spatial_filter
from .spatial import BINOMIAL_RADIUS, CHOICE_RADIUS, RADIUS, adaptive_filter

Predictor = Callable[[np.ndarray], np.ndarray]


def grid_offsets(y=None, x=None) -> tuple[int, int]:
    """Global (row, column) index of the first pixel of a grid with cell coordinates ``y`` and ``x``.

    Along each axis with at least two regularly spaced coordinates ``c`` (spacing ``s``), the index
    of pixel ``i`` is ``floor(c_i / s)`` when the coordinate grows with ``i`` and ``floor(-c_i / s)``
    when it falls (y descending): consecutive pixels get consecutive indices, and every window of
    the same grid agrees on them. An axis without such coordinates (missing, a single cell,
    irregular) counts from 0.
    """
    out = []
    for c in (y, x):
        if c is None:
            out.append(0)
            continue
        c = np.asarray(c, np.float64).ravel()
        step = np.diff(c)
        if c.size < 2 or not np.isfinite(c).all() or step[0] == 0 or \
                not np.allclose(step, step[0], rtol=1e-6, atol=0.0):
            out.append(0)
            continue
        direction = 1.0 if step[0] > 0 else -1.0
        out.append(int(np.floor(direction * c[0] / abs(step[0]) + 1e-3)))
    return out[0], out[1]


def blend_window(patch: int) -> np.ndarray:
    """Separable weights ``(P, P)`` float64: ``outer(h, h)`` with ``h(i) = sin^2(pi (i + 1/2) / P)`` > 0."""
    h = np.sin(np.pi * (np.arange(patch) + 0.5) / patch) ** 2
    return np.outer(h, h)


def default_overlap(patch: int) -> int:
    """The overlap used when none is given: ``P // 4`` cells.

    Measured on the demo ensemble's hindcast (P = 16): overlap P/2 -> RMSE 3.884 mm in 12.6 s,
    P/4 -> 3.890 mm in 4.8 s, none -> 3.898 mm in 3.0 s. A quarter keeps the blending that hides
    tile seams for 0.15 % of RMSE at 2.6 x the speed of the textbook half overlap.
    """
    return int(patch) // 4


def check_tiling(*, patch: int, overlap: int) -> int:
    """Validate the tile geometry; return the stride ``S = P - overlap``."""
    if int(patch) < 1:
        raise InputError(f"patch size must be at least 1, got {patch}", field="patch")
    if not 0 <= int(overlap) < int(patch):
        raise InputError(f"overlap must be in [0, P) = [0, {patch}), got {overlap}", field="overlap")
    return int(patch) - int(overlap)


def tile_origins(start: int, stop: int, *, patch: int, stride: int) -> np.ndarray:
    """Global origins ``j * stride`` of the tiles ``[o, o + patch)`` that meet ``[start, stop)``."""
    first = -((patch - 1 - start) // stride)          # ceil((start - patch + 1) / stride)
    last = (stop - 1) // stride
    return np.arange(first, last + 1, dtype=np.int64) * stride


def forecast_block(block: np.ndarray, valid: np.ndarray | None = None, *, offset_y: int = 0,
                   offset_x: int = 0, depth: int = 0, predict: Predictor, history: int,
                   horizon_steps: int, members: int, patch: int, overlap: int,
                   norm: Mapping[str, Any], batch_size: int = 64, inputs: str = "paper",
                   years: np.ndarray | None = None, spatial_filter: bool | None = None,
                   widths: np.ndarray | None = None, carry: np.ndarray | None = None) -> np.ndarray:
    """Blended ensemble forecast ``(K, F, ny - 2 depth, nx - 2 depth)`` float32 mm of a block's core.

    ``block`` is ``(t, ny, nx)`` displacement in mm whose pixel ``[:, 0, 0]`` has global coordinates
    ``(offset_y, offset_x)``; the ``paper`` inputs read its last ``history`` epochs, the ``residual``
    inputs all of them, at the times ``years (t,)`` (decimal years, see
    :func:`insarcast.udf.inputs.model_inputs`). Each tile's normalised output and its reference
    forecast (mm) are blended separately and added at the end: ``denormalise(blend(f)) + blend(r)``. ``valid (ny, nx)`` (or None)
    marks usable pixels; a pixel is valid when flagged and finite at those T epochs. The core is the
    block without ``depth`` pixels on each side; every tile of the global grid meeting the core is
    evaluated, with anything outside the block taken as invalid. The value is NaN at invalid pixels.

    ``spatial_filter`` (default: :data:`insarcast.udf.inputs.SPATIAL_FILTER` of ``inputs``) filters
    each member's map with :func:`insarcast.udf.spatial.adaptive_filter` at the widths ``widths (ny, nx)``
    (an index of :data:`insarcast.udf.spatial.WIDTHS` per pixel of the block; by default
    :func:`insarcast.udf.inputs.filter_widths` of the block); the tiles are then evaluated for the core
    and a ring of :data:`insarcast.udf.spatial.RADIUS` cells around it, so the core equals the
    whole-array computation when ``depth >= P - 1 + RADIUS`` (and ``>= CHOICE_RADIUS`` without ``widths``).

    Where the widths are chosen by hindcast, the members' median is then moved to the change a travelling
    front carries (:mod:`insarcast.udf.fronts`) at the cells where one arrives: ``carry (F, ny, nx)``, NaN
    elsewhere, as :func:`insarcast.udf.fronts.carry_of` gives it for the block (computed here with the
    widths when these are not given).
    """
    inputs = check_inputs(inputs)
    filtered = uses_spatial_filter(inputs, spatial_filter)
    r = ring(inputs) if filtered else 0       # the ring the filter reads
    if filtered:
        widths, carry = _block_reference(block, valid, widths, carry, years=years, history=history,
                                         horizon=horizon_steps, inputs=inputs)
    else:
        carry = None
    grow = max(0, r - depth)
    block = np.asarray(block)
    if grow:                          # no data beyond the block: a ring of invalid cells
        block = np.pad(block, ((0, 0), (grow, grow), (grow, grow)), constant_values=np.nan)
        valid = None if valid is None else np.pad(np.asarray(valid, bool), grow, constant_values=False)
        widths = None if widths is None else np.pad(widths, grow)
    wide = _blend_tiles(block, valid, offset_y=offset_y - grow, offset_x=offset_x - grow, depth=depth + grow - r,
                        predict=predict, history=history, horizon_steps=horizon_steps, members=members,
                        patch=patch, overlap=overlap, norm=norm, batch_size=batch_size, inputs=inputs, years=years)
    if not r:
        return wide
    core = (slice(depth + grow - r, widths.shape[0] - depth - grow + r),
            slice(depth + grow - r, widths.shape[1] - depth - grow + r))
    out = adaptive_filter(wide, widths[core])[..., r:wide.shape[-2] - r, r:wide.shape[-1] - r]
    if carry is not None:
        ny, nx = carry.shape[-2:]
        out = fronts.apply(out, carry[:, depth:ny - depth, depth:nx - depth])
    return out


def ring(inputs: str) -> int:
    """Cells the spatial filter of formulation ``inputs`` reads around a pixel: :data:`RADIUS` where the
    widths are chosen by hindcast, :data:`BINOMIAL_RADIUS` where every width is the binomial kernel's."""
    return RADIUS if hindcast_origins(inputs) else BINOMIAL_RADIUS


def _block_reference(block: np.ndarray, valid: np.ndarray | None, widths: np.ndarray | None,
                     carry: np.ndarray | None, *, years: np.ndarray | None, history: int, horizon: int,
                     inputs: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The filter's widths ``(ny, nx)`` of a block and the change a front carries there ``(F, ny, nx)``
    (None where the widths are not chosen by hindcast): as given, else those of its series (widths: the
    binomial kernel, 0, where the formulation has no hindcast or no times are given)."""
    shape = np.shape(block)[1:]
    if widths is not None:
        widths = np.asarray(widths)
        if widths.shape != shape:
            raise InputError(f"widths has shape {widths.shape}, expected the block's {shape}", field="widths")
        if carry is not None and np.shape(carry) != (horizon,) + shape:
            raise InputError(f"carry has shape {np.shape(carry)}, expected {(horizon,) + shape}", field="carry")
        return np.nan_to_num(widths).astype(np.int8), carry
    if not hindcast_origins(inputs) or years is None:
        return np.zeros(shape, np.int8), None
    d = np.asarray(block)
    if valid is not None:
        d = np.where(np.asarray(valid, bool), d, np.nan)
    fitted = reference_fit(d, years, history=history, horizon=horizon, inputs=inputs)
    return fitted[-1].astype(np.int8), fronts.carry_of(d, fitted, history=history)


def _blend_tiles(block: np.ndarray, valid: np.ndarray | None, *, offset_y: int, offset_x: int, depth: int,
                 predict: Predictor, history: int, horizon_steps: int, members: int, patch: int, overlap: int,
                 norm: Mapping[str, Any], batch_size: int, inputs: str, years: np.ndarray | None) -> np.ndarray:
    """:func:`forecast_block` without the spatial filter."""
    block = np.asarray(block)
    if block.ndim != 3:
        raise InputError(f"expected a block (t, y, x), got shape {block.shape}", field="displacement")
    if block.shape[0] < history:
        raise InputError(f"the block holds {block.shape[0]} epochs, fewer than the history T = {history}",
                         field="t")
    stride = check_tiling(patch=patch, overlap=overlap)
    norm = norm_values(norm)
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}", field="batch_size")
    d = block[block.shape[0] - history:] if inputs == "paper" else block
    mask = history_mask(d[d.shape[0] - history:], valid)
    ny, nx = mask.shape
    cy, cx = ny - 2 * depth, nx - 2 * depth
    if cy < 0 or cx < 0:
        raise InputError(f"block {ny} x {nx} is smaller than twice its halo {depth}", field="depth")
    out = np.full((members, horizon_steps, cy, cx), np.nan, np.float32)
    if cy == 0 or cx == 0 or not mask[depth:depth + cy, depth:depth + cx].any():
        return out

    # Global tile origins meeting the core, then the block padded (invalid) so every tile fits.
    oy = tile_origins(offset_y + depth, offset_y + depth + cy, patch=patch, stride=stride)
    ox = tile_origins(offset_x + depth, offset_x + depth + cx, patch=patch, stride=stride)
    pad_y = (max(0, offset_y - int(oy[0])), max(0, int(oy[-1]) + patch - offset_y - ny))
    pad_x = (max(0, offset_x - int(ox[0])), max(0, int(ox[-1]) + patch - offset_x - nx))
    dpad = np.pad(d, ((0, 0), pad_y, pad_x), constant_values=np.nan)
    mpad = np.pad(mask, (pad_y, pad_x), constant_values=False)
    ly = oy - offset_y + pad_y[0]                       # local origins in the padded block
    lx = ox - offset_x + pad_x[0]

    # Tiles in global row-major order, without those that hold no valid pixel.
    ty, tx = (a.ravel() for a in np.meshgrid(ly, lx, indexing="ij"))
    table = np.pad(np.cumsum(np.cumsum(mpad, axis=0, dtype=np.int64), axis=1), ((1, 0), (1, 0)))
    count = table[ty + patch, tx + patch] - table[ty, tx + patch] - table[ty + patch, tx] + table[ty, tx]
    ty, tx = ty[count > 0], tx[count > 0]

    masks = np.lib.stride_tricks.sliding_window_view(mpad, (patch, patch))
    weight = blend_window(patch)
    acc = np.zeros((members, horizon_steps) + mpad.shape, np.float64)
    ref = np.zeros((horizon_steps,) + mpad.shape, np.float64) if inputs != "paper" else None
    wsum = np.zeros(mpad.shape, np.float64)
    for start in range(0, len(ty), batch_size):
        by, bx = ty[start:start + batch_size], tx[start:start + batch_size]
        built = model_inputs(_gather(dpad, by, bx, patch), masks[by, bx], history=history,
                             horizon=horizon_steps, norm=norm, inputs=inputs, years=years)
        f = np.asarray(predict(built.x))
        expected = (members, len(by), horizon_steps, patch, patch)
        if f.shape != expected:
            raise InputError(f"the predictor returned shape {f.shape}, expected (K, N, F, P, P) = {expected}",
                             field="forecast")
        for i, (r, c) in enumerate(zip(by, bx)):
            acc[:, :, r:r + patch, c:c + patch] += f[:, i].astype(np.float64) * weight
            wsum[r:r + patch, c:c + patch] += weight
            if ref is not None:
                ref[:, r:r + patch, c:c + patch] += built.reference[i].astype(np.float64) * weight

    core = (slice(pad_y[0] + depth, pad_y[0] + depth + cy), slice(pad_x[0] + depth, pad_x[0] + depth + cx))
    inside = mask[depth:depth + cy, depth:depth + cx]
    with np.errstate(invalid="ignore", divide="ignore"):
        blended = denormalise(acc[:, :, core[0], core[1]] / wsum[core], norm)
        if ref is not None:
            blended = blended + ref[:, core[0], core[1]] / wsum[core]
    out[:] = np.where(inside, blended, np.nan)
    return out


def _gather(d: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int) -> np.ndarray:
    """The tiles of ``d (t, ny, nx)`` at the origins ``(rows, cols)`` as ``(N, t, P, P)``: a view of a
    ``(t, N, P, P)`` array, so that the fits, which take ``(t, pixels)``, read the series without a
    transposing copy (a fancy index lays the tiles out first: with the residual inputs' whole
    history that copy cost about 0.08 s per 40 tiles of 363 epochs)."""
    out = np.empty((d.shape[0], len(rows), patch, patch), d.dtype)
    for i, (r, c) in enumerate(zip(rows, cols)):
        out[:, i] = d[:, r:r + patch, c:c + patch]
    return np.moveaxis(out, 1, 0)


def forecast_dask(displacement, valid=None, *, predict: Predictor, history: int, horizon_steps: int,
                  members: int, patch: int, overlap: int, norm: Mapping[str, Any], batch_size: int = 64,
                  offset_y: int = 0, offset_x: int = 0, inputs: str = "paper", years: np.ndarray | None = None,
                  spatial_filter: bool | None = None, widths=None, carry=None):
    """Lazy :func:`forecast_block` over a Dask array ``(t, y, x)``: ``(K, F, y, x)`` float32 mm.

    ``offset_y``, ``offset_x``: global coordinates of the array's pixel ``[:, 0, 0]`` (see
    :func:`grid_offsets`), as in :func:`forecast_block`.

    The ``paper`` inputs read the last T epochs, the ``residual`` ones all (time becomes one chunk). Each block gets a halo of
    ``P - 1`` pixels (``P - 1 + RADIUS`` with the spatial filter) from its neighbours, NaN / invalid beyond the region
    (``dask.array.overlap.overlap`` with constant boundaries; Dask merges chunks smaller than
    the halo first), and :func:`forecast_block` returns the block's core. Output chunks are
    ``(K, F)`` whole and the (possibly merged) spatial chunks. ``widths (y, x)``: the spatial filter's
    widths (:func:`insarcast.udf.inputs.filter_widths` of the whole array); without them each block
    computes its own and the halo is at least :data:`~insarcast.udf.spatial.CHOICE_RADIUS`. ``carry (F, y, x)``:
    the change a front carries (:func:`insarcast.udf.fronts.carry_of` of the whole array), given with the widths.
    """
    import dask.array as da

    check_tiling(patch=patch, overlap=overlap)
    norm = norm_values(norm)
    inputs = check_inputs(inputs)
    spatial_filter = uses_spatial_filter(inputs, spatial_filter)
    depth = patch - 1 + (ring(inputs) if spatial_filter else 0)
    if spatial_filter and widths is None and hindcast_origins(inputs):
        depth = max(depth, CHOICE_RADIUS)
    d = da.asarray(displacement)
    if inputs == "paper":
        d = d[d.shape[0] - history:]
    d = d.rechunk({0: -1})
    if valid is not None:
        valid = da.asarray(valid).astype(bool).rechunk(d.chunks[1:])
        d = da.where(valid, d, np.nan)
    epochs = d.shape[0]
    if carry is not None:             # the carry travels with the series, in the same blocks and halo
        d = da.concatenate([d, da.asarray(carry).astype(d.dtype).rechunk((-1,) + d.chunks[1:])]).rechunk({0: -1})
    if depth == 0:
        d_o = d
    else:
        d_o = da.overlap.overlap(d, depth={0: 0, 1: depth, 2: depth},
                                 boundary={0: "none", 1: np.nan, 2: np.nan})
    w_o = None
    if spatial_filter and widths is not None:
        w = da.asarray(widths).astype(np.int8).rechunk(d.chunks[1:])
        w_o = da.overlap.overlap(w, depth={0: depth, 1: depth}, boundary={0: 0, 1: 0}) if depth else w
    core_y = tuple(int(c) - 2 * depth for c in d_o.chunks[1])
    core_x = tuple(int(c) - 2 * depth for c in d_o.chunks[2])
    start_y = np.concatenate([[0], np.cumsum(core_y)[:-1]]).astype(int)
    start_x = np.concatenate([[0], np.cumsum(core_x)[:-1]]).astype(int)

    def run(block, w=None, block_id=None):
        iy, ix = block_id[2], block_id[3]
        block, c = (block, None) if carry is None else (block[:epochs], block[epochs:])
        return forecast_block(block, None, offset_y=int(offset_y) + int(start_y[iy]) - depth,
                              offset_x=int(offset_x) + int(start_x[ix]) - depth, depth=depth, predict=predict,
                              history=history, horizon_steps=horizon_steps, members=members, patch=patch,
                              overlap=overlap, norm=norm, batch_size=batch_size, inputs=inputs, years=years,
                              spatial_filter=spatial_filter, widths=w, carry=c)

    args = (d_o,) if w_o is None else (d_o, w_o[None])
    return da.map_blocks(lambda block, *w, block_id=None: run(block, *(x[0] for x in w), block_id=block_id),
                         *args, drop_axis=0, new_axis=[0, 1], dtype=np.float32,
                         chunks=((members,), (horizon_steps,), core_y, core_x), meta=np.empty((0,) * 4, np.float32))
