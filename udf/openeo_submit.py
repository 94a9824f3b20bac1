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


def read_job(folder: str | os.PathLike) -> tuple[dict, dict]:
    """(process graph, job options) of a job folder."""
    folder = Path(folder)
    try:
        graph = json.loads((folder / "process_graph.json").read_text(encoding="utf-8"))
        options = json.loads((folder / "job_options.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"not a job folder from `insarcast openeo build` ({err})", path=folder) from err
    return graph, options


def run_job(*, backend: str, job: str | os.PathLike, out: str | os.PathLike, title: str = "insarcast forecast",
            auth: str | None = "oidc", poll_s: float = 20.0, connect: Callable[[str], Any] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> Path:
    """Run the job folder ``job`` on ``backend``; its results go to ``out``. Returns ``out``."""
    graph, options = read_job(job)
    if connect is None:
        try:
            import openeo
        except ImportError as err:
            raise MissingDependencyError("sending a job needs the openeo client: pip install 'insarcast[openeo]'"
                                         ) from err
        connect = openeo.connect
    connection = connect(backend)
    if auth == "oidc":
        connection = connection.authenticate_oidc()
    elif auth is not None:
        raise InputError(f"auth must be 'oidc' or None, got {auth!r}", field="auth")
    batch = connection.create_job(graph, title=title, job_options=options)
    log.info("created job %s on %s", batch.job_id, backend)
    batch.start()
    status = batch.status()
    while status not in DONE:
        log.info("job %s: %s", batch.job_id, status)
        sleep(poll_s)
        status = batch.status()
    if status != "finished":
        raise InputError(f"job {batch.job_id} ended {status}: see `batch.logs()` on the backend", field="status")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = batch.get_results()
    results.download_files(out)
    (out / "job-results.json").write_text(json.dumps(results.get_metadata(), indent=2) + "\n", encoding="utf-8")
    log.info("job %s finished: results in %s", batch.job_id, out)
    return out
