"""Send a job folder from ``insarcast openeo build`` to a backend: ``insarcast openeo run``.

Connect, authenticate (OIDC, the openEO default; ``auth=None`` for a backend that needs none), create
the batch job with the folder's process graph and job options, start it, poll its status (logged, so
the user sees progress) until it finishes, download its result files and the result's STAC metadata,
turn them into the products Dataset ``insarcast forecast`` writes (``products.zarr``,
:mod:`insarcast.udf.openeo_result`) and publish that as a STAC catalog. The client is openeo's own;
nothing here talks HTTP itself.
"""

from __future__ import annotations

import json
import os
import tempfile
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


def _ensemble(job: Path, into: Path) -> Path:
    """The ensemble shipped in the job's archive (``ensemble/`` of ``insarcast-udf.zip``), unpacked into
    ``into``: the members the backend ran, whose manifest gives T, F, P, K and which the catalog holds."""
    import zipfile

    from .openeo_job import ARCHIVE

    try:
        with zipfile.ZipFile(job / ARCHIVE) as archive:
            names = [n for n in archive.namelist() if n.startswith("ensemble/") and not n.endswith("/")]
            if not names:
                raise InputError("the archive holds no ensemble/ folder", path=job / ARCHIVE)
            archive.extractall(into, members=names)
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"cannot read the job's archive ({err})", path=job / ARCHIVE) from err
    return into / "ensemble"


def _products_graph(connection, job: Path, root: Path, options: dict, *, title: str, poll_s: float,
                    sleep: Callable[[float], None]) -> tuple[dict, bool]:
    """The products graph and whether its thresholds were given: the job folder's ``process_graph.json``,
    or one built with the exact thresholds of the statistics job, run first (its result in
    ``root/statistics``, the thresholds in ``root/thresholds.json``, the graph in ``root/process_graph.json``)."""
    if (job / "process_graph.json").exists():
        return _read(job / "process_graph.json"), True
    from .openeo_job import products_graph
    from .openeo_thresholds import read_statistics, thresholds_from_statistics

    spec = _read(job / "job.json")
    try:                                    # what the products graph is built from, checked before any job runs
        products_graph(spec, None)
    except (InputError, KeyError, TypeError, ValueError) as err:
        raise InputError(f"not a job of `insarcast openeo build` ({getattr(err, 'message', None) or err!r})",
                         path=job / "job.json", field=getattr(err, "field", None)) from err
    stats = run_one(connection, _read(job / "statistics_graph.json"), options, root / "statistics",
                    title=f"{title}: statistics", poll_s=poll_s, sleep=sleep)
    thresholds = thresholds_from_statistics(read_statistics(stats)).to_dict()
    (root / "thresholds.json").write_text(json.dumps(thresholds, indent=2, allow_nan=False) + "\n",
                                          encoding="utf-8")
    log.info("thresholds from the statistics job: %s", thresholds)
    graph = products_graph(spec, thresholds)
    (root / "process_graph.json").write_text(json.dumps(graph, indent=2, allow_nan=False) + "\n",
                                             encoding="utf-8")
    return graph, False


def write_products(*, result: Path, job: Path, graph: dict, ensemble: Path, thresholds_given: bool,
                   backend: str, out: Path) -> Path:
    """The products Dataset of ``insarcast forecast`` from the downloaded ``result`` folder, written to the
    Zarr store ``out`` (:mod:`insarcast.udf.openeo_result`)."""
    from .ensemble import MANIFEST_NAME
    from .manifest import read_manifest
    from .openeo_result import read_result, result_products, udf_context

    spec = _read(job / "job.json")
    manifest = _read(ensemble / MANIFEST_NAME)
    products = result_products(read_result(result), epochs=spec["epochs"], context=udf_context(graph),
                               manifest=manifest, thresholds_given=thresholds_given, path=result)
    metadata = _read(result / "job-results.json")
    products.attrs.update(ensemble=str(manifest["name"]), cube=str(spec["stac_url"]), openeo_backend=backend,
                          members_zero_output=read_manifest(ensemble).members_zero_output,
                          openeo_job_id=str(metadata.get("id", "")))
    products = products.chunk({"y": 256, "x": 256})                  # Zarr wants regular chunks
    products.to_zarr(out, mode="w-", consolidated=True, zarr_format=2)
    log.info("products written to %s", out)
    return out


def run_job(*, backend: str, job: str | os.PathLike, out: str | os.PathLike, title: str = "insarcast forecast",
            auth: str | None = "oidc", poll_s: float = 20.0, connect: Callable[[str], Any] | None = None,
            sleep: Callable[[float], None] = time.sleep, overwrite: bool = False,
            publish: Callable[..., Any] | None = None) -> Path:
    """Run the job folder ``job`` on ``backend`` and write into ``out`` (whole, or not at all; an existing
    ``out`` is refused unless ``overwrite``, which replaces it once the new one is complete):

        result/          the products job's files as the backend wrote them, and job-results.json
        products.zarr    the products Dataset ``insarcast forecast`` writes, from the result
        catalog/         products.zarr published with ``publish`` (the STAC publisher,
                         :func:`insarcast.stac.publish.publish`, which the CLI passes: udf does not import
                         stac), when given
        statistics/, thresholds.json, process_graph.json
                         without a products graph in the job folder: the statistics job's result, the exact
                         thresholds taken from it, and the products graph built with them

    Returns ``out``."""
    from insarcast.fsutil import clean_stale, staged

    job, out = Path(job), Path(out)
    clean_stale(out)
    if out.exists() and not overwrite:
        raise InputError("output exists (pass --overwrite to replace it)", path=out)
    options = _read(job / "job_options.json")
    _read(job / "job.json")
    connection = _connect(backend, auth, connect)
    with staged() as stage, tempfile.TemporaryDirectory(prefix="insarcast-openeo-") as scratch:
        root = stage.path(out)
        root.mkdir(parents=True)
        try:
            ensemble = _ensemble(job, Path(scratch))
            graph, given = _products_graph(connection, job, root, options, title=title, poll_s=poll_s, sleep=sleep)
            result = run_one(connection, graph, options, root / "result", title=title, poll_s=poll_s, sleep=sleep)
            products = write_products(result=result, job=job, graph=graph, ensemble=ensemble,
                                      thresholds_given=given, backend=backend, out=root / "products.zarr")
            if publish is not None:
                publish(products, ensemble, root / "catalog")
                log.info("STAC catalog written to %s", out / "catalog")
        except InputError as err:                  # name the file where it would have been, not the staging copy
            if err.path is None or not Path(err.path).is_relative_to(root):
                raise
            raise InputError(f"{err.message} (nothing was written to {out})", path=out / Path(err.path).relative_to(root),
                             line=err.line, field=err.field) from err
    return out
