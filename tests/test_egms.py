"""EGMS L3 CSV ingest: reading, writing, aliases, merging and every refused input."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

import insarcast.egms.read as egms_read
from insarcast.egms import (
    QUALITY_COLUMNS,
    Header,
    PointSet,
    read_egms,
    read_header,
    write_egms_csv,
)
from insarcast.errors import InputError

HANDMADE = """\
pid,easting,northing,height,rmse,mean_velocity,mean_velocity_std,acceleration,acceleration_std,seasonality,seasonality_std,20160103,20160109,20160115,20160121,20160127
aB3xQ1,4074950.0,3100050.0,101.5,0.8,-1.2,0.3,0.01,0.02,1.5,0.4,0.0,-1.5,2.25,,3.1
aB3xQ2,4075050.0,3100050.0,99.25,1.1,-12.5,0.6,-0.5,0.1,2.0,0.5,0.0,-3.4,-7.0,-10.5,-14.2
aB3xQ3,4075050.0,3099950.0,,0.9,0.4,0.2,0,0,0.7,0.3,0.0,0.5,-0.25,1,
"""


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sample(n: int = 40, t: int = 7, *, seed: int = 0) -> dict:
    """Random but plausible points: a 100 m grid in Germany, a NaN gap, float32 values."""
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal((n, t)).cumsum(axis=1) * 3.7).astype(np.float32)
    values[rng.random((n, t)) < 0.1] = np.nan
    return dict(
        pid=np.array([f"P{seed}x{i:06d}" for i in range(n)], dtype=object),
        easting=4_100_050.0 + 100.0 * (np.arange(n) % 50),
        northing=3_100_050.0 + 100.0 * (np.arange(n) // 50),
        dates=np.datetime64("2016-01-03") + 6 * np.arange(t),
        values=values,
        quality={
            "height": rng.uniform(50, 150, n).astype(np.float32),
            "rmse": rng.uniform(0, 3, n).astype(np.float32),
            "mean_velocity": rng.normal(0, 10, n).astype(np.float32),
        },
    )


def assert_same_points(points: PointSet, data: dict, values: np.ndarray) -> None:
    assert list(points.pid) == list(data["pid"])
    np.testing.assert_array_equal(points.easting, data["easting"])
    np.testing.assert_array_equal(points.northing, data["northing"])
    np.testing.assert_array_equal(points.dates, data["dates"].astype("datetime64[D]"))
    np.testing.assert_array_equal(points.values, values)


# ------------------------------------------------------------------------------------------
# reading a handmade file


def test_handmade_csv_reads_exactly(tmp_path: Path) -> None:
    path = write_text(tmp_path / "EGMS_L3_E40N31_100km_U.csv", HANDMADE)
    points = read_egms(path)

    assert len(points) == 3
    assert list(points.pid) == ["aB3xQ1", "aB3xQ2", "aB3xQ3"]
    assert points.pid.dtype == object and isinstance(points.pid[0], str)
    np.testing.assert_array_equal(points.easting, [4074950.0, 4075050.0, 4075050.0])
    np.testing.assert_array_equal(points.northing, [3100050.0, 3100050.0, 3099950.0])
    assert points.easting.dtype == np.float64 and points.northing.dtype == np.float64
    np.testing.assert_array_equal(
        points.dates,
        np.array(["2016-01-03", "2016-01-09", "2016-01-15", "2016-01-21", "2016-01-27"], dtype="datetime64[D]"),
    )
    expected = np.array(
        [[0.0, -1.5, 2.25, np.nan, 3.1], [0.0, -3.4, -7.0, -10.5, -14.2], [0.0, 0.5, -0.25, 1.0, np.nan]],
        dtype=np.float32,
    )
    assert points.values.dtype == np.float32 and points.values.flags.c_contiguous
    np.testing.assert_array_equal(points.values, expected)
    assert tuple(points.quality) == QUALITY_COLUMNS
    np.testing.assert_array_equal(points.quality["height"], np.float32([101.5, 99.25, np.nan]))
    np.testing.assert_array_equal(points.quality["mean_velocity"], np.float32([-1.2, -12.5, 0.4]))
    np.testing.assert_array_equal(points.quality["acceleration"], np.float32([0.01, -0.5, 0.0]))
    assert all(a.dtype == np.float32 for a in points.quality.values())
    assert points.sources == (str(path),)


def test_read_header(tmp_path: Path) -> None:
    path = write_text(tmp_path / "tile.csv", HANDMADE)
    header = read_header(path)
    assert isinstance(header, Header)
    assert header.path == str(path)
    assert header.columns["pid"] == "pid" and header.columns["seasonality_std"] == "seasonality_std"
    assert header.date_columns == ("20160103", "20160109", "20160115", "20160121", "20160127")
    assert header.dates[0] == np.datetime64("2016-01-03") and header.dates.dtype == np.dtype("datetime64[D]")
    assert header.quality == QUALITY_COLUMNS


def test_aliases_and_case_are_canonical(tmp_path: Path) -> None:
    text = (
        "PID,X,Y,mp_type,HEIGHT_ORTHO,RMSE_TS,Velocity,Velocity_STD,20200101,20200113\n"
        "a,4074950,3100050,DS,12.5,0.5,-3.0,0.25,1.5,-2\n"
        "b,4075050,3100050,PS,13.5,0.75,2.0,0.5,,0.1\n"
    )
    points = read_egms(write_text(tmp_path / "renamed.csv", text))
    assert list(points.pid) == ["a", "b"]
    np.testing.assert_array_equal(points.easting, [4074950.0, 4075050.0])
    assert list(points.quality) == ["height", "rmse", "mean_velocity", "mean_velocity_std"]
    np.testing.assert_array_equal(points.quality["height"], np.float32([12.5, 13.5]))
    np.testing.assert_array_equal(points.quality["rmse"], np.float32([0.5, 0.75]))
    np.testing.assert_array_equal(points.quality["mean_velocity_std"], np.float32([0.25, 0.5]))
    np.testing.assert_array_equal(points.values, np.float32([[1.5, -2.0], [np.nan, 0.1]]))
    header = read_header(tmp_path / "renamed.csv")
    assert header.columns == {
        "pid": "PID", "easting": "X", "northing": "Y", "height": "HEIGHT_ORTHO", "rmse": "RMSE_TS",
        "mean_velocity": "Velocity", "mean_velocity_std": "Velocity_STD",
    }


def test_first_alias_wins_when_several_are_present(tmp_path: Path) -> None:
    text = "pid,easting,northing,height_wgs84,height,20200101\na,4074950,3100050,150.0,102.0,1\n"
    points = read_egms(write_text(tmp_path / "both.csv", text))
    np.testing.assert_array_equal(points.quality["height"], np.float32([102.0]))


def test_quotes_bom_crlf_blank_lines_and_extra_columns(tmp_path: Path) -> None:
    text = '\ufeff"pid","easting","northing","los_up",20200101,20200107\r\n"p,1",4074950,3100050,0.9,1,2\r\n\r\np2,4075050,3100050,0.9, 3 ,NaN\r\n'
    points = read_egms(write_text(tmp_path / "quoted.csv", text))
    assert list(points.pid) == ["p,1", "p2"]
    np.testing.assert_array_equal(points.values, np.float32([[1, 2], [3, np.nan]]))
    assert points.quality == {}


def test_lines_ended_by_a_lone_carriage_return_are_read(tmp_path: Path) -> None:
    """Classic Mac OS line ends (\r alone), as some spreadsheet exports still write them."""
    text = "pid,easting,northing,20200101,20200107\ra,4074950,3100050,1,2\rb,4075050,3100050,3,NaN\r"
    points = read_egms(write_text(tmp_path / "mac.csv", text))
    assert list(points.pid) == ["a", "b"]
    np.testing.assert_array_equal(points.values, np.float32([[1, 2], [3, np.nan]]))


def test_coincident_points_with_different_pids_are_kept(tmp_path: Path) -> None:
    text = "pid,easting,northing,20200101\na,4074950,3100050,1\nb,4074950,3100050,2\n"
    points = read_egms(write_text(tmp_path / "same.csv", text))
    assert len(points) == 2 and list(points.pid) == ["a", "b"]


# ------------------------------------------------------------------------------------------
# writing


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip"])
def test_round_trip_float32_exact(tmp_path: Path, suffix: str) -> None:
    data = sample()
    path = tmp_path / f"tile{suffix}"
    write_egms_csv(path, **data, decimals=None)
    points = read_egms(path)
    assert_same_points(points, data, data["values"])
    assert list(points.quality) == ["height", "rmse", "mean_velocity"]
    for name, array in data["quality"].items():
        np.testing.assert_array_equal(points.quality[name], array)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip"])
def test_round_trip_rounded_to_decimals(tmp_path: Path, suffix: str) -> None:
    data = sample(seed=3)
    path = tmp_path / f"tile{suffix}"
    write_egms_csv(path, **data, decimals=1)
    points = read_egms(path)
    expected = np.round(data["values"].astype(np.float64), 1).astype(np.float32)
    assert_same_points(points, data, expected)
    np.testing.assert_array_equal(
        points.quality["rmse"], np.round(data["quality"]["rmse"].astype(np.float64), 2).astype(np.float32)
    )


def test_written_text_is_short_and_unquoted(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_egms_csv(
        path, pid=["a", "b"], easting=[4074950.0, 4075050.0], northing=[3100050.0, 3100050.0],
        dates=["2016-01-03", "2016-01-09"], values=np.float32([[1.24, -0.06], [np.nan, 2.0]]),
        quality={"rmse": np.float32([0.333, 1.0]), "height": np.float32([100.0, 7.125])},
    )
    assert path.read_text() == (
        "pid,easting,northing,height,rmse,20160103,20160109\n"
        "a,4074950,3100050,100,0.33,1.2,-0.1\n"
        "b,4075050,3100050,7.12,1,,2\n"
    )


def test_pid_needing_quotes_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    write_egms_csv(path, pid=['a,"1"', "b"], easting=[4074950.0, 4075050.0], northing=[3100050.0] * 2,
                   dates=["2016-01-03"], values=np.float32([[1], [2]]))
    assert list(read_egms(path).pid) == ['a,"1"', "b"]


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    data = sample(n=300, t=5)
    digests = {}
    for suffix in (".csv", ".csv.gz", ".zip"):
        for run, block_rows in ((1, 50_000), (2, 7)):
            folder = tmp_path / f"run{run}"
            folder.mkdir(exist_ok=True)
            write_egms_csv(folder / f"EGMS_U{suffix}", **data, block_rows=block_rows)
            digests.setdefault(suffix, set()).add(hashlib.sha256((folder / f"EGMS_U{suffix}").read_bytes()).hexdigest())
    assert all(len(d) == 1 for d in digests.values()), digests
    raw = (tmp_path / "run1" / "EGMS_U.csv.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime
    with zipfile.ZipFile(tmp_path / "run1" / "EGMS_U.zip") as zf:
        (info,) = zf.infolist()
        assert info.filename == "EGMS_U.csv" and info.date_time == (1980, 1, 1, 0, 0, 0)
        assert zf.read(info) == (tmp_path / "run1" / "EGMS_U.csv").read_bytes()
    assert gzip.decompress(raw) == (tmp_path / "run1" / "EGMS_U.csv").read_bytes()


def test_write_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    data = sample(n=10, t=3)
    data["values"][5, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        write_egms_csv(tmp_path / "bad.csv", **data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(values=np.zeros((3, 2), np.float32)), "shape"),
        (dict(dates=np.array(["2016-01-09", "2016-01-03", "2016-01-15"], dtype="datetime64[D]")), "increasing"),
        (dict(quality={"velocity": np.zeros(40)}), "unknown quality"),
        (dict(pid=["p"] * 39 + [""]), "empty"),
    ],
)
def test_write_rejects_inconsistent_arguments(tmp_path: Path, change: dict, message: str) -> None:
    data = {**sample(n=40, t=3), **change}
    with pytest.raises(ValueError, match=message):
        write_egms_csv(tmp_path / "x.csv", **data)


def test_write_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.csv"):
        write_egms_csv(tmp_path / "x.txt", **sample(n=2, t=2))


# ------------------------------------------------------------------------------------------
# several tiles, bigger inputs, progress


def test_two_tiles_merge_in_order(tmp_path: Path) -> None:
    first, second = sample(n=30, t=6, seed=1), sample(n=45, t=6, seed=2)
    second["easting"] = second["easting"] + 100_000.0
    write_egms_csv(tmp_path / "a.csv", **first, decimals=None)
    write_egms_csv(tmp_path / "b.zip", **second, decimals=None)
    points = read_egms([tmp_path / "a.csv", tmp_path / "b.zip"])
    assert len(points) == 30 + 45
    np.testing.assert_array_equal(points.values, np.concatenate([first["values"], second["values"]]))
    assert list(points.pid) == list(first["pid"]) + list(second["pid"])
    np.testing.assert_array_equal(points.easting, np.concatenate([first["easting"], second["easting"]]))
    np.testing.assert_array_equal(points.quality["rmse"], np.concatenate([first["quality"]["rmse"], second["quality"]["rmse"]]))
    assert points.sources == (str(tmp_path / "a.csv"), str(tmp_path / "b.zip"))


def test_quality_keeps_columns_present_in_every_tile(tmp_path: Path) -> None:
    first, second = sample(n=5, t=2, seed=1), sample(n=5, t=2, seed=2)
    del second["quality"]["height"]
    write_egms_csv(tmp_path / "a.csv", **first)
    write_egms_csv(tmp_path / "b.csv", **second)
    assert list(read_egms([tmp_path / "a.csv", tmp_path / "b.csv"]).quality) == ["rmse", "mean_velocity"]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip"])
def test_bigger_round_trip_over_many_batches(tmp_path: Path, suffix: str, monkeypatch) -> None:
    data = sample(n=20_000, t=100, seed=7)
    data["easting"] = 4_000_050.0 + 100.0 * (np.arange(20_000) % 400)
    data["northing"] = 3_000_050.0 + 100.0 * (np.arange(20_000) // 400)
    path = tmp_path / f"big{suffix}"
    write_egms_csv(path, **data, decimals=None, block_rows=3_000)
    batches = []
    original = egms_read._append
    monkeypatch.setattr(egms_read, "_append", lambda batch, *a: (batches.append(batch.num_rows), original(batch, *a)))
    points = read_egms(path, block_size=1 << 16)
    assert len(batches) > 10 and sum(batches) == 20_000
    assert_same_points(points, data, data["values"])
    assert points.values.flags.c_contiguous


def test_progress_goes_to_stderr_only_when_asked(tmp_path: Path, capsys) -> None:
    path = write_text(tmp_path / "tile.csv", HANDMADE)
    read_egms(path)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    read_egms(path, progress=True)
    loud = capsys.readouterr()
    assert loud.out == "" and "rows" in loud.err


# ------------------------------------------------------------------------------------------
# refused inputs: each names the file and where


def read_error(path: Path) -> str:
    with pytest.raises(InputError) as info:
        read_egms(path)
    return str(info.value)


@pytest.mark.parametrize("column", ["pid", "easting", "northing"])
def test_missing_required_column(tmp_path: Path, column: str) -> None:
    names = [n for n in ("pid", "easting", "northing") if n != column]
    cells = {"pid": "a", "easting": "4074950", "northing": "3100050"}
    text = ",".join(names) + ",20200101\n" + ",".join(cells[n] for n in names) + ",1\n"
    message = read_error(write_text(tmp_path / "nocol.csv", text))
    assert "nocol.csv" in message and f"missing column '{column}'" in message
    assert ", ".join(egms_read.ALIASES[column]) in message


def test_no_date_columns(tmp_path: Path) -> None:
    message = read_error(write_text(tmp_path / "nodates.csv", "pid,easting,northing,rmse\na,4074950,3100050,1\n"))
    assert "nodates.csv" in message and "line 1" in message and "no epoch columns" in message


@pytest.mark.parametrize("bad", ["20161345", "2016011", "2016-01-11", "20160230"])
def test_unparseable_date(tmp_path: Path, bad: str) -> None:
    text = f"pid,easting,northing,20160105,{bad}\na,4074950,3100050,1,2\n"
    message = read_error(write_text(tmp_path / "baddate.csv", text))
    assert "baddate.csv" in message and f"column '{bad}'" in message and "yyyymmdd" in message


def test_duplicate_date(tmp_path: Path) -> None:
    text = "pid,easting,northing,20160105,20160111,20160111\na,4074950,3100050,1,2,3\n"
    message = read_error(write_text(tmp_path / "dup.csv", text))
    assert "dup.csv" in message and "column '20160111'" in message and "duplicate epoch 2016-01-11" in message


def test_non_increasing_dates(tmp_path: Path) -> None:
    text = "pid,easting,northing,20160105,20160117,20160111\na,4074950,3100050,1,2,3\n"
    message = read_error(write_text(tmp_path / "order.csv", text))
    assert "order.csv" in message and "column '20160111'" in message and "increase" in message


def test_non_numeric_value_names_line_column_and_text(tmp_path: Path) -> None:
    text = (
        "pid,easting,northing,20160105,20160111,20160117\n"
        "a,4074950,3100050,1,2,3\n"
        "\n"
        "b,4075050,3100050,1,,3\n"
        "c,4075150,3100050,1,2,3..5\n"
    )
    message = read_error(write_text(tmp_path / "nan.csv", text))
    assert message == "{}, line 5, column '20160117': expected a number in mm, got '3..5'".format(tmp_path / "nan.csv")


def test_non_numeric_value_in_a_late_batch(tmp_path: Path) -> None:
    data = sample(n=5_000, t=20, seed=4)
    path = tmp_path / "late.csv"
    write_egms_csv(path, **data)
    lines = path.read_text().splitlines(keepends=True)
    cells = lines[4_321].split(",")
    cells[9] = "n/d"  # pid, easting, northing, 3 quality columns, then the 4th epoch
    lines[4_321] = ",".join(cells)
    path.write_text("".join(lines))
    with pytest.raises(InputError) as info:
        read_egms(path, block_size=1 << 14)
    assert info.value.line == 4_322 and info.value.field == lines[0].split(",")[9] and "'n/d'" in str(info.value)


def test_non_numeric_quality_and_coordinate(tmp_path: Path) -> None:
    text = "pid,easting,northing,rmse,20160105\na,4074950,3100050,x1,1\n"
    message = read_error(write_text(tmp_path / "q.csv", text))
    assert "q.csv, line 2, column 'rmse'" in message and "'x1'" in message
    text = "pid,easting,northing,20160105\na,4074950,3100050,1\nb,4.07e6m,3100050,1\n"
    message = read_error(write_text(tmp_path / "c.csv", text))
    assert "c.csv, line 3, column 'easting'" in message and "'4.07e6m'" in message


def test_infinite_value(tmp_path: Path) -> None:
    text = "pid,easting,northing,20160105,20160111\na,4074950,3100050,1,2\nb,4075050,3100050,-inf,2\n"
    message = read_error(write_text(tmp_path / "inf.csv", text))
    assert "inf.csv, line 3, column '20160105'" in message and "finite" in message


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    text = "pid,easting,northing,20160105,20160111\na,4074950,3100050,1,2\nb,4075050,3100050,1\n"
    message = read_error(write_text(tmp_path / "short.csv", text))
    assert "short.csv, line 3" in message and "expected 5 fields" in message


def test_missing_coordinate(tmp_path: Path) -> None:
    text = "pid,easting,northing,20160105\na,4074950,3100050,1\nb,4075050,,1\n"
    message = read_error(write_text(tmp_path / "nocoord.csv", text))
    assert "nocoord.csv, line 3, column 'northing'" in message


def test_empty_pid(tmp_path: Path) -> None:
    text = "pid,easting,northing,20160105\na,4074950,3100050,1\n,4075050,3100050,1\n"
    message = read_error(write_text(tmp_path / "nopid.csv", text))
    assert "nopid.csv, line 3, column 'pid'" in message and "empty pid" in message


def test_empty_file(tmp_path: Path) -> None:
    message = read_error(write_text(tmp_path / "empty.csv", ""))
    assert "empty.csv" in message and "empty file" in message
    empty_gz = tmp_path / "empty.csv.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    assert "empty file" in read_error(empty_gz)


def test_header_only_file(tmp_path: Path) -> None:
    message = read_error(write_text(tmp_path / "header.csv", "pid,easting,northing,20160105\n"))
    assert "header.csv" in message and "no data rows" in message
    assert "no data rows" in read_error(write_text(tmp_path / "header2.csv", "pid,easting,northing,20160105"))


def test_tiles_with_different_epochs(tmp_path: Path) -> None:
    a = write_text(tmp_path / "a.csv", "pid,easting,northing,20160105,20160111\na,4074950,3100050,1,2\n")
    b = write_text(tmp_path / "b.csv", "pid,easting,northing,20160105,20160117\nb,4075050,3100050,1,2\n")
    with pytest.raises(InputError) as info:
        read_egms([a, b])
    message = str(info.value)
    assert "a.csv" in message and "b.csv" in message and "20160111" in message and "20160117" in message
    c = write_text(tmp_path / "c.csv", "pid,easting,northing,20160105\nc,4075050,3100050,1\n")
    with pytest.raises(InputError) as info:
        read_egms([a, c])
    message = str(info.value)
    assert "a.csv has 2 epochs" in message and "c.csv has 1" in message and "20160111" in message


def test_duplicate_pid_across_files(tmp_path: Path) -> None:
    a = write_text(tmp_path / "a.csv", "pid,easting,northing,20160105\nx1,4074950,3100050,1\nx2,4075050,3100050,1\n")
    b = write_text(tmp_path / "b.csv", "pid,easting,northing,20160105\nx3,4174950,3100050,1\nx2,4175050,3100050,1\n")
    with pytest.raises(InputError) as info:
        read_egms([a, b])
    message = str(info.value)
    assert "duplicate pid 'x2'" in message and str(a) in message and str(b) in message


def test_duplicate_pid_within_a_file(tmp_path: Path) -> None:
    text = "pid,easting,northing,20160105\nx1,4074950,3100050,1\nx1,4075050,3100050,1\n"
    message = read_error(write_text(tmp_path / "dup.csv", text))
    assert "duplicate pid 'x1'" in message and "dup.csv" in message


def test_degree_coordinates(tmp_path: Path) -> None:
    text = "pid,lon,lat,x,y,20160105\na,6.5,50.9,6.5,50.9,1\nb,6.6,50.8,6.6,50.8,2\n"
    message = read_error(write_text(tmp_path / "deg.csv", text))
    assert "deg.csv" in message and "degrees" in message and "EPSG:3035" in message and "'x'" in message


def test_coordinates_outside_epsg3035(tmp_path: Path) -> None:
    text = "pid,easting,northing,20160105\na,4074950,3100050,1\nfar,40749500,3100050,2\n"
    message = read_error(write_text(tmp_path / "far.csv", text))
    assert "far.csv, line 3" in message and "'far'" in message and "area of use" in message
    assert "easting" in message


def test_zip_with_two_csvs(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("one.csv", HANDMADE)
        zf.writestr("two.csv", HANDMADE)
    message = read_error(path)
    assert "two.zip" in message and "exactly one .csv" in message and "one.csv" in message and "two.csv" in message


def test_zip_ignores_other_members(tmp_path: Path) -> None:
    path = tmp_path / "withreadme.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("README.txt", "not data")
        zf.writestr("tile.csv", HANDMADE)
    assert len(read_egms(path)) == 3


def test_damaged_containers_and_non_csv(tmp_path: Path) -> None:
    whole = gzip.compress(HANDMADE.encode() * 50)
    (tmp_path / "cut.csv.gz").write_bytes(whole[: len(whole) // 2])
    message = read_error(tmp_path / "cut.csv.gz")
    assert "cut.csv.gz" in message and "damaged" in message
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    assert "bad.zip" in read_error(tmp_path / "bad.zip")
    (tmp_path / "image.csv").write_bytes(bytes(range(256)) * 4)
    assert "image.csv" in read_error(tmp_path / "image.csv")
    assert "no such file" in read_error(tmp_path / "missing.csv")


def test_streamed_blocks_equal_one_write_and_a_failed_stream_leaves_nothing(tmp_path: Path) -> None:
    from insarcast.egms import EgmsCsvWriter

    rng = np.random.default_rng(5)
    dates = np.array(["2016-01-05", "2016-01-11", "2016-01-17"], dtype="datetime64[D]")
    pid = np.array([f"P{i}" for i in range(10)], dtype=object)
    east, north = 4000050.0 + 100 * np.arange(10), np.full(10, 3000050.0)
    values = rng.normal(0, 5, (10, 3)).astype(np.float32)
    height = rng.uniform(50, 90, 10).astype(np.float32)
    write_egms_csv(tmp_path / "one.csv", pid=pid, easting=east, northing=north, dates=dates, values=values,
                   quality={"height": height})
    with EgmsCsvWriter(tmp_path / "two.csv", dates=dates, quality=("height",)) as writer:
        for lo, hi in [(0, 3), (3, 10)]:
            writer.write(pid=pid[lo:hi], easting=east[lo:hi], northing=north[lo:hi], values=values[lo:hi],
                         quality={"height": height[lo:hi]})
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()

    with pytest.raises(RuntimeError):
        with EgmsCsvWriter(tmp_path / "three.csv.gz", dates=dates) as writer:
            writer.write(pid=pid, easting=east, northing=north, values=values)
            raise RuntimeError("simulated failure half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv", "two.csv"]
