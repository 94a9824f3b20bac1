"""`insarcast openeo run` against openeo's own testing backend (DummyBackend): no network."""

import json
import logging

import pytest

pytest.importorskip("requests_mock")
from openeo.rest._testing import DummyBackend  # noqa: E402

from insarcast.errors import InputError  # noqa: E402
from insarcast.udf.openeo_job import job_options  # noqa: E402
from insarcast.udf.openeo_submit import run_job  # noqa: E402

URL = "https://oeo.test/"
GRAPH = {"process_graph": {"loadstac1": {"process_id": "load_stac", "arguments": {"url": "https://x/c.json"}},
                           "saveresult1": {"process_id": "save_result", "result": True, "arguments": {
                               "data": {"from_node": "loadstac1"}, "format": "GTiff"}}}}


@pytest.fixture
def job(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "process_graph.json").write_text(json.dumps(GRAPH))
    (folder / "job_options.json").write_text(json.dumps(job_options(archive_url="https://x/u.zip", ensemble_mib=10)))
    return folder


@pytest.fixture
def dummy(requests_mock):
    return DummyBackend.at_url(URL, requests_mock=requests_mock)


def test_run_creates_starts_waits_and_downloads_with_the_exact_graph_and_options(dummy, job, tmp_path, caplog):
    statuses = iter(["queued", "running", "running", "finished"])
    dummy.job_status_updater = lambda job_id, current_status: next(statuses, "finished")
    dummy.next_result = b"GeoTIFF bytes"
    sleeps = []
    with caplog.at_level(logging.INFO, logger="insarcast"):
        out = run_job(backend=URL, job=job, out=tmp_path / "results", auth=None, connect=lambda url: dummy.connection,
                      sleep=sleeps.append, poll_s=5)
    post = dummy.get_batch_post_data()
    assert post["process"]["process_graph"] == GRAPH["process_graph"]
    assert post["job_options"] == {"udf-dependency-archives": ["https://x/u.zip#insarcast-udf"],
                                   "executor-memory": "2G", "python-memory": "768m", "executor-cores": 1}
    assert post["title"] == "insarcast forecast"
    assert sleeps and set(sleeps) == {5}
    assert (out / "result.data").read_bytes() == b"GeoTIFF bytes"
    assert json.loads((out / "job-results.json").read_text())["id"] == "job-000"
    assert "job job-000: running" in caplog.text and "finished" in caplog.text


def test_a_failed_job_is_an_error_naming_it(dummy, job, tmp_path):
    dummy.job_status_updater = lambda job_id, current_status: "error"
    with pytest.raises(InputError, match="job job-000 ended error"):
        run_job(backend=URL, job=job, out=tmp_path / "r", auth=None, connect=lambda url: dummy.connection,
                sleep=lambda s: None)
    with pytest.raises(InputError, match="not a job folder"):
        run_job(backend=URL, job=tmp_path / "none", out=tmp_path / "r", auth=None,
                connect=lambda url: dummy.connection)
