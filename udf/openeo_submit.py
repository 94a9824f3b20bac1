"""Send a job folder from ``insarcast openeo build`` to a backend: ``insarcast openeo run``.

Connect, authenticate (OIDC, the openEO default; ``auth=None`` for a backend that needs none), create
the batch job with the folder's process graph and job options, start it, poll its status (logged, so
the user sees progress) until it finishes, download its result files and the result's STAC metadata
into ``out``. The client is openeo's own; nothing here talks HTTP itself.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from insarcast.errors import InputError, MissingDependencyError
from insarcast.log import LOGGER as log

DONE = ("finished", "error", "canceled")


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"not a job folder from `insarcast openeo build` ({err})", path=path.parent) from err


def _connect(backend: str, auth: str | None, connect: Callable[[str], Any] | None):
    if connect is None:
        try:
            import openeo
        except ImportError as err:
            raise MissingDependencyError("sending a job needs the openeo client: pip install 'insarcast[openeo]'"
                                         ) from err
        connect = openeo.connect
    connection = connect(backend)
    if auth == "oidc":
        return connection.authenticate_oidc()
    if auth is not None:
        raise InputError(f"auth must be 'oidc' or None, got {auth!r}", field="auth")
    return connection


def run_one(connection, graph: dict, options: dict, out: Path, *, title: str, poll_s: float,
            sleep: Callable[[float], None]) -> Path:
    """Create, start and wait for one batch job; download its results into ``out``."""
    batch = connection.create_job(graph, title=title, job_options=options)
    log.info("created job %s (%s)", batch.job_id, title)
    batch.start()
    status = batch.status()
    while status not in DONE:
        log.info("job %s: %s", batch.job_id, status)
        sleep(poll_s)
        status = batch.status()
    if status != "finished":
        raise InputError(f"job {batch.job_id} ended {status}: see `batch.logs()` on the backend", field="status")
    out.mkdir(parents=True, exist_ok=True)
    results = batch.get_results()
    results.download_files(out)
    (out / "job-results.json").write_text(json.dumps(results.get_metadata(), indent=2) + "\n", encoding="utf-8")
    log.info("job %s finished: results in %s", batch.job_id, out)
    return out


def run_job(*, backend: str, job: str | os.PathLike, out: str | os.PathLike, title: str = "insarcast forecast",
            auth: str | None = "oidc", poll_s: float = 20.0, connect: Callable[[str], Any] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> Path:
    """Run the job folder ``job`` on ``backend``; the products go to ``out/products``. Without a products
    graph in the folder, the statistics job runs first (``out/statistics``), its exact thresholds are
    written to ``out/thresholds.json`` and the products graph (``out/process_graph.json``) is built with
    them. Returns ``out/products``."""
    job, out = Path(job), Path(out)
    options = _read(job / "job_options.json")
    connection = _connect(backend, auth, connect)
    if (job / "process_graph.json").exists():
        graph = _read(job / "process_graph.json")
    else:
        from .openeo_job import products_graph
        from .openeo_thresholds import read_statistics, thresholds_from_statistics

        spec = _read(job / "job.json")
        stats = run_one(connection, _read(job / "statistics_graph.json"), options, out / "statistics",
                        title=f"{title}: statistics", poll_s=poll_s, sleep=sleep)
        thresholds = thresholds_from_statistics(read_statistics(stats)).to_dict()
        (out / "thresholds.json").write_text(json.dumps(thresholds, indent=2) + "\n", encoding="utf-8")
        log.info("thresholds from the statistics job: %s", thresholds)
        graph = products_graph(spec, thresholds)
        (out / "process_graph.json").write_text(json.dumps(graph, indent=2) + "\n", encoding="utf-8")
    return run_one(connection, graph, options, out / "products", title=title, poll_s=poll_s, sleep=sleep)
