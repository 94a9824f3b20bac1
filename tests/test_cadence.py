"""The epochs' cadence: an EGMS record that turns from 6 to 12 days, a missing acquisition, refusals."""

import warnings

import numpy as np
import pytest

from insarcast.cadence import check_regular, regular_dates, resample
from insarcast.cube import open_cube
from insarcast.egms import PointSet
from insarcast.errors import InputError
from insarcast.grid import CadenceWarning, grid_points


def six_then_twelve() -> np.ndarray:
    """6-day epochs up to the loss of Sentinel-1B (2021-12-23), 12-day ones after, to 2022-03-05."""
    early = np.arange(np.datetime64("2021-10-30"), np.datetime64("2021-12-24"), 6)     # 10 epochs
    late = np.arange(np.datetime64("2022-01-04"), np.datetime64("2022-03-06"), 12)     # 6 epochs
    assert early[-1] == np.datetime64("2021-12-23")
    return np.concatenate([early, late])


def test_a_record_that_turns_to_12_days_keeps_every_other_earlier_epoch():
    dates = six_then_twelve()
    cadence = regular_dates(dates)
    assert cadence.days == 12
    # back from 2022-03-05 in steps of 12 days: the 6 late epochs, then 12-23, 12-11, ... 11-05 of the 6-day ones
    # (10-30 is 6 days before 11-05, not a multiple)
    early_kept = np.arange(np.datetime64("2021-11-05"), np.datetime64("2021-12-24"), 12)
    assert list(cadence.dates) == list(np.concatenate([early_kept, dates[10:]]))
    assert (cadence.index >= 0).all() and cadence.dropped == 16 - 11
    assert (np.diff(cadence.dates).astype(int) == 12).all()
    values = np.arange(32, dtype=np.float32).reshape(2, 16)
    assert (resample(values, dates, cadence) == values[:, cadence.index]).all()
    assert "5 of the 16 input epochs dropped" in cadence.describe()


def test_a_record_that_starts_with_12_day_epochs_starts_where_the_6_day_cadence_does():
    """EGMS's first release: Sentinel-1A alone (12 days) until Sentinel-1B joined, 6 days after."""
    early = np.arange(np.datetime64("2015-03-03"), np.datetime64("2016-09-30"), 12)       # 48 epochs
    late = np.arange(early[-1] + 6, np.datetime64("2020-12-31"), 6)
    dates = np.concatenate([early, late])
    cadence = regular_dates(dates)
    assert cadence.days == 6 and cadence.head == len(early) - 1
    assert list(cadence.dates) == list(dates[len(early) - 1:]) and (cadence.index == np.arange(len(early) - 1,
                                                                                               len(dates))).all()
    assert f"the {len(early) - 1} input epochs before {early[-1]} dropped" in cadence.describe()
    assert len(regular_dates(dates, days=12).dates) > len(early)          # the whole record at 12 days, if asked
    # a gap of 40 epochs in a 6-day record is not a coarser head: refused, as before
    full = np.arange(np.datetime64("2019-01-01"), np.datetime64("2019-01-01") + 6 * 300, 6)
    with pytest.raises(InputError, match="not on a 6-day cadence"):
        regular_dates(np.delete(full, np.arange(100, 140)))


def test_a_regular_record_is_unchanged_and_not_copied():
    dates = np.arange(np.datetime64("2016-01-05"), np.datetime64("2016-06-01"), 6)
    cadence = regular_dates(dates)
    assert cadence.unchanged and cadence.days == 6
    values = np.ones((3, len(dates)), np.float32)
    assert resample(values, dates, cadence) is values
    assert check_regular(dates) == 6


def test_one_missing_acquisition_is_interpolated_in_time():
    full = np.arange(np.datetime64("2019-01-01"), np.datetime64("2019-01-01") + 6 * 40, 6)
    gone = 20
    dates = np.delete(full, gone)
    # a point moving 0.5 mm per day plus a step of 3 mm after the gap: the filled epoch lies halfway
    # between its neighbours, so it gets their mean
    days = (dates - dates[0]).astype(float)
    values = (0.5 * days + 3.0 * (np.arange(len(dates)) >= gone)).astype(np.float32)[None]
    cadence = regular_dates(dates)
    assert list(cadence.dates) == list(full)
    assert list(cadence.filled) == [full[gone]] and cadence.dropped == 0
    out = resample(values, dates, cadence)
    expected = (values[0, gone - 1] + values[0, gone]) / 2                       # (57 + 63 + 3) / 2 mm
    assert out[0, gone] == pytest.approx(expected) and expected == pytest.approx(61.5)
    assert (np.delete(out, gone, axis=1) == values).all()


def test_a_cadence_the_data_do_not_have_is_refused():
    dates = np.arange(np.datetime64("2019-01-01"), np.datetime64("2019-06-01"), 6)
    with pytest.raises(InputError, match="--cadence") as err:
        regular_dates(dates, days=7, source="tile.csv")
    assert "tile.csv" in str(err.value)
    with pytest.raises(InputError, match="at least 1 day"):
        regular_dates(dates, days=0)


def test_a_cadence_longer_than_the_record_is_refused():
    """`grid --cadence 1e9` wrote a cube of one epoch (a warning, exit 0): nothing to train or forecast on."""
    dates = np.arange(np.datetime64("2019-01-01"), np.datetime64("2019-06-01"), 6)     # 151 days
    with pytest.raises(InputError, match="longer than the record") as err:
        regular_dates(dates, days=1e9, source="tile.csv")
    assert err.value.field == "--cadence" and "tile.csv" in str(err.value)
    assert len(regular_dates(dates, days=150).dates) == 2                   # the record's span: 2 epochs


def test_an_irregular_time_axis_is_refused_where_a_cube_is_used():
    with pytest.raises(InputError, match=r"not regular: 9 x 6 days, 6 x 12 days \(12 days since 2021-12-23\)"):
        check_regular(six_then_twelve(), source="cube.zarr")
    from insarcast.training.data import Windows

    dates = six_then_twelve().astype("datetime64[ns]")
    d = np.zeros((len(dates), 8, 8), np.float32)
    with pytest.raises(InputError, match="not regular"):
        Windows.from_arrays(d, np.ones((8, 8), bool), dates, history=2, horizon=1, patch=4, stride=4)


def test_grid_keeps_the_cadence_of_the_latest_epochs(tmp_path):
    dates = six_then_twelve()
    x = np.array([4000050.0, 4000150.0])
    y = np.array([3000050.0, 3000050.0])
    values = np.stack([np.arange(16), 100 + np.arange(16)]).astype(np.float32)
    pts = PointSet(pid=np.array(["a", "b"], dtype=object), easting=x, northing=y, values=values, dates=dates,
                   quality={}, sources=("tile.csv",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grid_points(pts, tmp_path / "c.zarr")
    assert any(issubclass(w.category, CadenceWarning) and "12-day cadence" in str(w.message) for w in caught)
    cube = open_cube(tmp_path / "c.zarr").load()
    kept = regular_dates(dates).index
    assert list(cube["t"].values.astype("datetime64[D]")) == list(dates[kept])
    # each point sits on its cell centre, so the cube holds its values at the kept epochs
    assert (cube["displacement"].values[:, 0, :].T == values[:, kept]).all()
    assert cube.attrs["cadence_days"] == 12 and "dropped" in cube.attrs["cadence"]
