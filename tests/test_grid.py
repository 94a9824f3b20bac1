"""Inverse distance weighting: checked against values worked out by hand."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from insarcast.cube import open_cube
from insarcast.egms import PointSet
from insarcast.errors import InputError
from insarcast.grid import IdwParams, grid_points, idw

DATES = np.array(["2016-01-05", "2016-01-11", "2016-01-17"], dtype="datetime64[D]")


def points(x, y, values) -> PointSet:
    x, y = np.asarray(x, float), np.asarray(y, float)
    values = np.asarray(values, np.float32).reshape(len(x), -1)
    return PointSet(pid=np.array([f"p{i}" for i in range(len(x))], dtype=object), easting=x, northing=y,
                    values=values, dates=DATES[: values.shape[1]], quality={}, sources=("test",))


def test_two_points_weighted_by_inverse_square_distance():
    # cell at the origin; points at 100 m (value 1) and 200 m (value 4):
    # (1/100^2 * 1 + 1/200^2 * 4) / (1/100^2 + 1/200^2) = (1 + 1) / 1.25 = 1.6
    tree = cKDTree([[100.0, 0.0], [0.0, 200.0]])
    out, support = idw(tree, np.array([[1.0], [4.0]], np.float32), np.array([0.0]), np.array([0.0]),
                       IdwParams(power=2, neighbours=8, radius=500))
    assert out[0, 0] == pytest.approx(1.6, rel=1e-6)
    assert support[0] == 2
    # power 1: (1/100 + 4/200) / (1/100 + 1/200) = 0.03 / 0.015 = 2
    out, _ = idw(tree, np.array([[1.0], [4.0]], np.float32), np.array([0.0]), np.array([0.0]),
                 IdwParams(power=1, neighbours=8, radius=500))
    assert out[0, 0] == pytest.approx(2.0, rel=1e-6)


def test_radius_is_inclusive_and_excludes_farther_points():
    tree = cKDTree([[300.0, 0.0], [301.0, 0.0]])
    out, support = idw(tree, np.array([[5.0], [9.0]], np.float32), np.array([0.0]), np.array([0.0]),
                       IdwParams(radius=300))
    assert support[0] == 1 and out[0, 0] == 5.0


def test_epoch_with_nan_uses_the_remaining_points():
    tree = cKDTree([[100.0, 0.0], [0.0, 200.0]])
    values = np.array([[1.0, np.nan], [4.0, 4.0]], np.float32)
    out, _ = idw(tree, values, np.array([0.0]), np.array([0.0]), IdwParams(radius=500))
    assert out[0, 0] == pytest.approx(1.6, rel=1e-6)
    assert out[1, 0] == 4.0


def test_a_point_on_the_centre_without_a_value_leaves_the_epoch_to_its_neighbours(tmp_path):
    """EGMS L3 points sit on the cell centres: one empty value must not empty the cell for the whole record.
    Centre point (0 m): 7, NaN, 9; neighbours at 100 m (value 1) and 200 m (value 4) give, at the second
    epoch, (1/100^2 * 1 + 1/200^2 * 4) / (1/100^2 + 1/200^2) = 1.6; the centre alone elsewhere."""
    tree = cKDTree([[0.0, 0.0], [100.0, 0.0], [0.0, 200.0]])
    values = np.array([[7.0, np.nan, 9.0], [1.0, 1.0, 1.0], [4.0, 4.0, 4.0]], np.float32)
    out, support = idw(tree, values, np.array([0.0]), np.array([0.0]), IdwParams(radius=500))
    assert out[:, 0] == pytest.approx([7.0, 1.6, 9.0], rel=1e-6) and support[0] == 3
    # a whole cube: the centre cell of a 3 x 3 block of points stays valid
    x, y = np.meshgrid(4000050.0 + 100 * np.arange(3), 3000050.0 + 100 * np.arange(3))
    grid_values = np.tile(np.array([1.0, 2.0, 3.0], np.float32), (9, 1))
    grid_values[4, 1] = np.nan
    cube = open_cube(grid_points(points(x.ravel(), y.ravel(), grid_values), tmp_path / "c.zarr"))
    assert bool(cube["valid"].all()) and float(cube["displacement"][1, 1, 1]) == pytest.approx(2.0)


def test_an_epoch_empty_at_every_point_is_a_missing_acquisition(tmp_path):
    import warnings

    from insarcast.grid import GapWarning

    dates = np.arange(np.datetime64("2019-01-01"), np.datetime64("2019-01-01") + 6 * 40, 6)
    values = np.tile(np.arange(40, dtype=np.float32), (2, 1)) * np.float32(0.5)      # 0.5 mm per epoch
    values[:, 20] = np.nan
    values[1, 30] = np.nan                                           # one point, no neighbour in reach
    pts = PointSet(pid=np.array(["a", "b"], dtype=object), easting=np.array([4000050.0, 4009050.0]),
                   northing=np.array([3000050.0, 3000050.0]), values=values, dates=dates, quality={},
                   sources=("tile.csv",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cube = open_cube(grid_points(pts, tmp_path / "c.zarr")).load()
    messages = [str(w.message) for w in caught if issubclass(w.category, GapWarning)]
    assert any("1 epoch(s) have no value at any point (2019-05-01)" in m for m in messages)
    # the 4 cells within 300 m of point b (IDW's radius) miss its epoch 30
    assert any("4 of the 8 cells with points are not valid" in m for m in messages)
    a, b = (cube.sel(x=x, y=3000050.0) for x in (4000050.0, 4009050.0))
    assert len(cube["t"]) == 40 and float(a["displacement"][20]) == pytest.approx(10.0)   # filled in time
    assert bool(a["valid"]) and not bool(b["valid"])


def test_coincident_points_are_averaged_at_their_cell():
    pts = points([4000050, 4000050, 4000150], [3000050, 3000050, 3000050], [[2.0], [6.0], [100.0]])
    tree = cKDTree(np.column_stack([pts.easting, pts.northing]))
    out, support = idw(tree, pts.values, np.array([4000050.0]), np.array([3000050.0]), IdwParams())
    assert out[0, 0] == 4.0 and support[0] == 3


@pytest.fixture
def scattered():
    rng = np.random.default_rng(1)
    cells = rng.choice(30 * 20, size=300, replace=False)
    x = 4000050.0 + 100 * (cells % 30)
    y = 3000050.0 + 100 * (cells // 30)
    return points(x, y, rng.normal(0, 10, (300, 3)))


def test_cube_is_exact_at_data_points(tmp_path, scattered):
    cube = open_cube(grid_points(scattered, tmp_path / "c.zarr"))
    col = ((scattered.easting - cube.x.values[0]) / 100).round().astype(int)
    row = ((cube.y.values[0] - scattered.northing) / 100).round().astype(int)
    got = cube.displacement.values[:, row, col].T
    np.testing.assert_array_equal(got, scattered.values)
    assert cube.displacement.dtype == np.float32
    assert str(cube.rio.crs) == "EPSG:3035"
    np.testing.assert_array_equal(cube.t.values, DATES.astype("datetime64[ns]"))


def test_cube_reproduces_a_constant_field(tmp_path):
    rng = np.random.default_rng(2)
    x = 4000000 + rng.uniform(0, 3000, 500)  # off the cell centres
    y = 3000000 + rng.uniform(0, 2000, 500)
    cube = open_cube(grid_points(points(x, y, np.full((500, 3), -7.25)), tmp_path / "c.zarr"))
    disp = cube.displacement.values[:, cube.valid.values]
    assert cube.valid.values.mean() > 0.9
    np.testing.assert_allclose(disp, -7.25, rtol=1e-6)


def test_cells_beyond_the_radius_are_nan_and_not_valid(tmp_path):
    # two points 2 km apart; with a 300 m radius the cells between them have no support
    pts = points([4000050, 4002050], [3000050, 3000050], [[1, 2, 3], [4, 5, 6]])
    cube = open_cube(grid_points(pts, tmp_path / "c.zarr", params=IdwParams(radius=300)))
    row = cube.displacement.values[:, 0, :]
    dist_to_nearest = np.minimum(abs(cube.x.values - 4000050), abs(cube.x.values - 4002050))
    far = dist_to_nearest > 300
    assert far.sum() == 21 - 2 * 4  # 21 cells; each end point reaches its own cell and 3 inwards
    assert np.isnan(row[:, far]).all() and np.isfinite(row[:, ~far]).all()
    assert not cube.valid.values[0, far].any() and cube.valid.values[0, ~far].all()
    assert (cube.support.values[0, far] == 0).all()


def test_products_do_not_depend_on_the_block_size(tmp_path, scattered):
    a = open_cube(grid_points(scattered, tmp_path / "a.zarr", chunk=7, workers=2))
    b = open_cube(grid_points(scattered, tmp_path / "b.zarr", chunk=128, workers=1))
    np.testing.assert_array_equal(a.displacement.values, b.displacement.values)
    np.testing.assert_array_equal(a.support.values, b.support.values)


def test_a_spacing_that_leaves_no_cell_near_a_point_is_refused_and_writes_nothing(tmp_path):
    """`grid --spacing 1e300` wrote one cell centred 5e299 m away from every point, all NaN, and exited 0."""
    pts = points([4000050, 4002050], [3000050, 3000050], [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(InputError, match="no cell centre has a point") as err:
        grid_points(pts, tmp_path / "c.zarr", spacing=1e300)
    assert err.value.field == "--spacing"
    assert list(tmp_path.iterdir()) == []


def test_a_record_of_one_epoch_is_refused_and_writes_nothing(tmp_path):
    """A tile with one epoch column gridded to a cube of one epoch, all 0 mm, and exited 0."""
    pts = points([4000050, 4000150], [3000050, 3000050], [[1], [4]])
    with pytest.raises(InputError, match="at least 2"):
        grid_points(pts, tmp_path / "c.zarr")
    assert list(tmp_path.iterdir()) == []


def test_a_tiny_spacing_is_refused_in_a_line_of_readable_size(tmp_path):
    """`grid --spacing 1e-300` was refused in a line of 2,000 digits (nx, ny and their product in full)."""
    pts = points([4000000, 4000050], [3000000, 3000050], [[1, 2], [4, 5]])
    with pytest.raises(InputError, match="--max-cells") as err:
        grid_points(pts, tmp_path / "c.zarr", spacing=1e-300)
    assert len(str(err.value)) < 400 and "e301" in str(err.value)


def test_bad_parameters_are_refused():
    with pytest.raises(InputError, match="radius"):
        IdwParams(radius=0)
    with pytest.raises(InputError, match="neighbours"):
        IdwParams(neighbours=0)


def test_infinite_power_or_radius_is_refused_naming_the_option():
    """Both are kept in the cube's attributes as JSON, which has no Infinity (`grid --radius inf` wrote one)."""
    for kwargs, option in (({"power": float("inf")}, "--power"), ({"radius": float("inf")}, "--radius")):
        with pytest.raises(InputError, match="finite") as info:
            IdwParams(**kwargs)
        assert info.value.field == option


def test_a_large_power_does_not_underflow_the_weights_to_nan():
    """`grid --power 200` left cells NaN and not valid: 100^-200 and 300^-200 are 0 in float64, 0/0 is NaN.
    A large power tends to the nearest point's value, with or without a value at every epoch."""
    tree = cKDTree([[100.0, 0.0], [0.0, 300.0]])
    for values in (np.array([[1.0, 5.0], [4.0, 6.0]], np.float32), np.array([[1.0, np.nan], [4.0, 6.0]], np.float32)):
        out, support = idw(tree, values, np.array([0.0]), np.array([0.0]), IdwParams(power=200, radius=500))
        assert support[0] == 2
        expected = [1.0, 5.0] if np.isfinite(values).all() else [1.0, 6.0]
        np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)


def test_synth_then_grid_recovers_the_truth_within_the_noise(tmp_path):
    """Where the truth is smooth at the scale of the search radius, IDW of the noisy points is
    within the scenario's noise level of the noise-free truth (interpolation error ~ gradient x
    distance, so near the pit rims it is larger: that is IDW, not noise)."""
    from scipy.ndimage import maximum_filter, minimum_filter

    from insarcast.egms import read_egms
    from insarcast.synth import preset, write_scenario

    config = preset("tiny", seed=1)
    outputs = write_scenario(config, tmp_path / "s", progress=False)
    cube = open_cube(grid_points(read_egms(outputs.csv), tmp_path / "c.zarr"))
    truth = open_cube(outputs.truth).displacement.values
    assert cube.displacement.shape == truth.shape
    last = truth[-1]
    smooth = (maximum_filter(last, size=7) - minimum_filter(last, size=7)) < 20.0  # mm within +-300 m
    cells = cube.valid.values & smooth
    assert cells.sum() > 1000
    residual = (cube.displacement.values - truth)[1:, cells]
    noise = np.hypot(config.atmosphere_std, config.white_std)
    rmse = float(np.sqrt(np.mean(residual**2)))
    assert 0.5 * noise < rmse < noise
    assert abs(float(residual.mean())) < 0.2 * noise


def test_a_lost_chunk_is_refused_and_an_empty_one_left_out_is_not(tmp_path):
    """A copy cut short lost a chunk file: Zarr read it as NaN, with ``valid`` still True there, and the
    forecast came out NaN on that block without a word. Two points 2 km apart, 300 m radius, blocks of 5
    cells: 21 cells in x make 5 blocks, of which the second and third (cells 5 to 14, beyond 300 m of
    either point) are all NaN and not stored at all (Zarr leaves out a chunk equal to its fill value): those are no loss, as no cell of
    them is valid."""
    import shutil

    pts = points([4000050, 4002050], [3000050, 3000050], [[1, 2, 3], [4, 5, 6]])
    path = grid_points(pts, tmp_path / "c.zarr", params=IdwParams(radius=300), chunk=5)
    chunks = sorted(f.name for f in (path / "displacement").iterdir() if not f.name.startswith("."))
    assert chunks == ["0.0.0", "0.0.3", "0.0.4"]                             # (t, y, x) chunk keys
    cube = open_cube(path)                                                   # the empty blocks are no loss
    assert cube.valid.values[0, 0] and cube.displacement.values[0, 0, 0] == 1.0

    lost = tmp_path / "lost.zarr"
    shutil.copytree(path, lost)
    (lost / "displacement" / "0.0.4").unlink()                              # the second point's block
    with pytest.raises(InputError) as err:
        open_cube(lost)
    assert err.value.field == "displacement" and err.value.path == str(lost / "displacement" / "0.0.4")
    assert "1 of the 5 chunk files of 'displacement' are missing where 'valid' marks cells valid" in err.value.message
