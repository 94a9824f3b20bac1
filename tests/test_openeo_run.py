"""`insarcast openeo run` against openeo's own testing backend (DummyBackend): no network.

These tests check the client side (graphs, job options, progress, failures, a result that is no
product); tests/test_openeo_products.py runs the whole path with a backend that computes.
"""

import json
import logging

import pytest

pytest.importorskip("requests_mock")
from openeo.rest._testing import DummyBackend  # noqa: E402

from insarcast.errors import InputError  # noqa: E402
from insarcast.udf.openeo_job import ARCHIVE, job_options, udf_peak_mib, write_archive  # noqa: E402
from insarcast.udf.openeo_submit import run_job  # noqa: E402

URL = "https://oeo.test/"
GRAPH = {"process_graph": {"loadstac1": {"process_id": "load_stac", "arguments": {"url": "https://x/c.json"}},
                           "saveresult1": {"process_id": "save_result", "result": True, "arguments": {
                               "data": {"from_node": "loadstac1"}, "format": "GTiff"}}}}


SPEC = {"stac_url": "https://x/cube/collection.json", "bbox": [4058000, 3082000, 4083600, 3101200],
        "epochs": ["2021-11-22", "2021-11-28"], "patch": 8, "ensemble": "insarcast-udf/ensemble",
        "python_path": ["insarcast-udf"], "tile": 256, "overlap": None, "crs": 3035}


def _job_folder(folder, tmp_path, *, graph=None, options=None):
    """A job folder as `openeo build` writes it: job.json, the archive with a tiny ensemble, the options,
    the statistics graph, and the products graph when ``graph`` is given."""
    pytest.importorskip("onnx")
    from conftest import linear_member, write_ensemble
    from insarcast.udf.ensemble import load_ensemble
    from insarcast.udf.openeo_job import products_graph

    folder.mkdir()
    ensemble = write_ensemble(tmp_path / "ensemble", [linear_member(0.5, history=2, horizon=1, patch=8)],
                              history=2, horizon=1, patch=8, norm={"input_mean": 0.0, "input_std": 1.0,
                                                                   "target_mean": 0.0, "target_std": 1.0})
    write_archive(folder / ARCHIVE, ensemble, load_ensemble(ensemble, cache=False).manifest)
    docs = {"job.json": SPEC, "statistics_graph.json": products_graph(SPEC, None),
            "job_options.json": options or job_options(archive_url="https://x/u.zip", ensemble_mib=10)}
    if graph is not None:
        docs["process_graph.json"] = graph
    for name, doc in docs.items():
        (folder / name).write_text(json.dumps(doc))
    return folder


@pytest.fixture
def job(tmp_path):
    return _job_folder(tmp_path / "job", tmp_path, graph=GRAPH)


@pytest.fixture
def dummy(requests_mock):
    return DummyBackend.at_url(URL, requests_mock=requests_mock)


def test_run_creates_starts_waits_and_downloads_with_the_exact_graph_and_options(dummy, job, tmp_path, caplog):
    from insarcast.udf.openeo_submit import run_one

    statuses = iter(["queued", "running", "running", "finished"])
    dummy.job_status_updater = lambda job_id, current_status: next(statuses, "finished")
    dummy.next_result = b"GeoTIFF bytes"
    sleeps = []
    with caplog.at_level(logging.INFO, logger="insarcast"):
        out = run_one(dummy.connection, GRAPH, json.loads((job / "job_options.json").read_text()),
                      tmp_path / "results" / "result", title="insarcast forecast", sleep=sleeps.append, poll_s=5)
    post = dummy.get_batch_post_data()
    assert post["process"]["process_graph"] == GRAPH["process_graph"]
    assert post["job_options"] == {"udf-dependency-archives": ["https://x/u.zip#insarcast-udf"],
                                   "executor-memory": "2G", "python-memory": "768m", "executor-cores": 1}
    assert post["title"] == "insarcast forecast"
    assert sleeps and set(sleeps) == {5}
    assert out == tmp_path / "results" / "result"
    assert (out / "result.data").read_bytes() == b"GeoTIFF bytes"
    assert json.loads((out / "job-results.json").read_text())["id"] == "job-000"
    assert "job job-000: running" in caplog.text and "finished" in caplog.text


def test_a_result_that_is_no_geotiff_is_an_error_naming_it_and_writes_nothing(dummy, job, tmp_path):
    dummy.next_result = b"GeoTIFF bytes"
    with pytest.raises(InputError, match="results/result/result.data: not a GeoTIFF"):
        run_job(backend=URL, job=job, out=tmp_path / "results", auth=None, connect=lambda url: dummy.connection,
                sleep=lambda s: None)
    assert dummy.get_batch_post_data()["process"]["process_graph"] == GRAPH["process_graph"]
    assert not (tmp_path / "results").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ensemble", "job"]


def test_a_failed_job_is_an_error_naming_it(dummy, job, tmp_path):
    dummy.job_status_updater = lambda job_id, current_status: "error"
    with pytest.raises(InputError, match="job job-000 ended error"):
        run_job(backend=URL, job=job, out=tmp_path / "r", auth=None, connect=lambda url: dummy.connection,
                sleep=lambda s: None)
    with pytest.raises(InputError, match="not a job folder"):
        run_job(backend=URL, job=tmp_path / "none", out=tmp_path / "r", auth=None,
                connect=lambda url: dummy.connection)


def _two_band_tiff(m_abs, std) -> bytes:
    import numpy as np
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    with MemoryFile() as memory:
        with memory.open(driver="GTiff", width=m_abs.shape[1], height=m_abs.shape[0], count=2, dtype="float32",
                         crs="EPSG:3035", transform=from_origin(4058000, 3101200, 100, 100), nodata=np.nan) as dst:
            dst.write(np.stack([m_abs, std]).astype(np.float32))
        return memory.read()


def test_without_thresholds_the_statistics_job_runs_first_and_its_exact_thresholds_make_the_products_graph(
        dummy, tmp_path):
    import numpy as np

    from insarcast.udf.openeo_job import products_graph
    from insarcast.udf.products import thresholds as compute_thresholds

    spec = SPEC
    options = job_options(archive_url="https://x/u.zip")
    job = _job_folder(tmp_path / "job", tmp_path, options=options)
    rng = np.random.default_rng(0)
    m_abs, std = rng.gamma(2.0, 3.0, (6, 7)).astype(np.float32), rng.gamma(2.0, 1.0, (6, 7)).astype(np.float32)
    m_abs[0, 0] = std[1, 1] = np.nan
    dummy.next_result = _two_band_tiff(m_abs, std)
    # the products job returns the statistics' two bands too: no products, and nothing is written
    with pytest.raises(InputError, match="r/result, field 'bands': the result has 2 unnamed bands, expected 15"):
        run_job(backend=URL, job=job, out=tmp_path / "r", auth=None, connect=lambda url: dummy.connection,
                sleep=lambda s: None)
    assert not (tmp_path / "r").exists()
    expected = compute_thresholds(m_abs, std).to_dict()
    posted = [dummy.batch_jobs_full[j] for j in sorted(dummy.batch_jobs_full)]
    assert [p["title"] for p in posted] == ["insarcast forecast: statistics", "insarcast forecast"]
    assert posted[0]["process"]["process_graph"] == products_graph(spec, None)["process_graph"]
    assert posted[1]["process"]["process_graph"] == products_graph(spec, expected)["process_graph"]
    assert all(p["job_options"] == options for p in posted)


@pytest.mark.parametrize("bbox, message", [([float("nan"), 3082000, 4083600, 3101200], "expected finite"),
                                           ([4083600, 3082000, 4058000, 3101200], "west < east")])
def test_a_job_json_with_a_bad_bbox_is_refused_before_any_job_runs(dummy, tmp_path, bbox, message):
    job = _job_folder(tmp_path / "job", tmp_path)
    (job / "job.json").write_text(json.dumps({**SPEC, "bbox": bbox}))       # NaN: Python's json writes it
    with pytest.raises(InputError, match=f"job/job.json, field 'bbox': not a job .*{message}"):
        run_job(backend=URL, job=job, out=tmp_path / "r", auth=None, connect=lambda url: dummy.connection,
                sleep=lambda s: None)
    assert not dummy.batch_jobs_full and not (tmp_path / "r").exists()


def test_the_cli_refuses_a_folder_that_is_no_job_with_one_line_and_exit_2(tmp_path):
    from click.testing import CliRunner

    from insarcast.cli import main

    result = CliRunner().invoke(main, ["openeo", "run", "--backend", URL, "--job", str(tmp_path / "none"),
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "not a job folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_the_job_asks_for_the_memory_of_the_cubes_epochs():
    """One UDF call on a 256-cell tile peaked at 470 MiB with 12 epochs and 958 with 335 (the demo's
    residual-corrected ensemble, bench/openeo.py): the job's python memory follows the epochs."""
    assert udf_peak_mib(12) == udf_peak_mib(5) == 461
    assert udf_peak_mib(335) >= 958
    # 1.5 x (461 + 1.6 x 323 + 20) = 1497 MiB, rounded up to 256 MiB: 1536m (the 12-epoch figure gave 768m)
    assert job_options(archive_url="https://x/u.zip", peak_mib=udf_peak_mib(335), ensemble_mib=20)[
        "python-memory"] == "1536m"
