"""What an openEO batch job needs, in one folder: ``insarcast openeo build``.

``out/`` gets:

    insarcast-udf.zip      the ``udf-dependency-archives`` archive: ``insarcast/`` (the torch-free part: the
                           foundation modules and ``insarcast.udf``) and ``ensemble/`` (members + manifest,
                           sha256-checked here before packing and again by the UDF on the backend)
    statistics_graph.json  the first job of the backend-only path: every pixel's |m| and std, from which
                           ``openeo run`` takes the exact thresholds (:mod:`insarcast.udf.openeo_thresholds`)
    job.json               what the products graph is built from, once the thresholds are known
    process_graph.json     (when thresholds are given) the products graph (:func:`insarcast.udf.openeo_graph.process_graph`), whose UDF
                           context names ``insarcast-udf/ensemble`` and ``python_path: ["insarcast-udf"]``
    job_options.json       ``udf-dependency-archives`` (``<archive URL>#insarcast-udf``) and the memory
                           options sized from the measured peak of one UDF call (:func:`job_options`)

The cube's epochs and CRS come from its STAC Collection (``insarcast publish-cube``), read from a local
path or an ``https://`` URL. Everything is written whole or not at all.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from insarcast.errors import InputError
from insarcast.fsutil import staged

from .openeo_graph import check_bbox, process_graph

ARCHIVE = "insarcast-udf.zip"
ARCHIVE_FOLDER = "insarcast-udf"
# peak resident memory (MiB) of the Python process of one UDF call on a 256 x 256 tile plus the graph's
# default halo (37 cells for P = 32, spatial.halo), 12 epochs, 10 members, interpreter and imports included:
# 461 MiB measured by `bench/openeo.py --stand-in` on the development machine (2026-12-05; 431 MiB with the
# 32-cell halo of 2026-12-03), whose members are linear ONNX graphs at the demo's shapes, so
# a trained ResNet-Transformer's session memory is not in it (job_options adds the members' file size and
# a 1.5 x margin; rerun the bench with --ensemble for a real ensemble's figure)
UDF_PEAK_MIB = 461
# ... and what each epoch of the tile beyond those 12 adds (MiB): the tile itself, its float64 slices and,
# for the residual formulations, the reference's fit of the whole record. `bench/openeo.py --ensemble DEMO/ensemble
# --epochs 12` and `--epochs 335` (the demo's residual-corrected ensemble, 2026-12-05): 470 and 958 MiB,
# (958 - 470) / (335 - 12) = 1.51; before, a 335-epoch job asked for the memory of 12 epochs
UDF_PEAK_MIB_PER_EPOCH = 1.6
UDF_PEAK_EPOCHS = 12
# --tile bounds: GeoPySpark's apply_neighborhood refuses UDF windows under 32 cells ("window sizes smaller
# then 32 are not yet supported for UDFs"), and a tile under the ensemble's patch P cannot hold one model
# tile; UDF_PEAK_MIB (and so job_options' python-memory) is measured on a 256-cell tile, so a larger tile
# would run out of the memory the job asks for (rerun bench/openeo.py and raise this bound with its figure)
TILE_MIN = 32
TILE_MAX = 256
# modules of the foundation the UDF part never needs (and that pull in more than numpy / xarray)
_LEFT_OUT = {"cli.py", "cliutil.py", "demo.py", "compare.py", "report", "__main__.py", "__pycache__"}


def read_cube_collection(url: str) -> dict[str, Any]:
    """The cube Collection (a dict) from a local path or an http(s) URL."""
    try:
        if url.startswith(("http://", "https://")):
            from urllib.request import urlopen

            with urlopen(url, timeout=60) as response:               # noqa: S310 (the user's own URL)
                doc = json.loads(response.read().decode("utf-8"))
        else:
            doc = json.loads(Path(url).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the cube's STAC Collection ({err})", path=url) from err
    t = (doc.get("cube:dimensions") or {}).get("t") or {}
    if doc.get("type") != "Collection" or not t.get("values"):
        raise InputError("not a cube Collection from `insarcast publish-cube` (no cube:dimensions t values)",
                         path=url, field="cube:dimensions")
    return doc


def check_archive_url(url: str) -> str:
    """The archive's URL: ``https://host/...`` (the backend downloads the code it runs from it, so never
    plain http), without a ``#fragment`` (the job option appends ``#insarcast-udf``)."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(url))
    if parts.scheme.lower() != "https" or not parts.netloc or any(c.isspace() for c in str(url)):
        raise InputError(f"expected an https:// URL where insarcast-udf.zip will be served, got {url!r}",
                         field="--archive-url")
    if parts.fragment or str(url).endswith("#"):
        raise InputError(f"expected a URL without a #fragment (the job option appends #{ARCHIVE_FOLDER}), "
                         f"got {url!r}", field="--archive-url")
    return str(url)


def check_tile(tile: Any, patch: int) -> int:
    """``--tile``: an integer from max(TILE_MIN, P) to TILE_MAX cells (see the constants)."""
    low = max(TILE_MIN, int(patch))
    if isinstance(tile, bool) or not isinstance(tile, int) or not low <= tile <= TILE_MAX:
        raise InputError(f"expected {low}..{TILE_MAX} cells per side (at least {TILE_MIN}, the backend's "
                         f"smallest UDF window, and the ensemble's patch {int(patch)}; at most the tile whose "
                         f"memory job_options is measured on), got {tile!r}", field="--tile")
    return tile


def cube_extent(collection: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of the cube's cells in its own CRS, from the Collection's
    ``cube:dimensions`` x / y extents (the cells' edges, as ``publish-cube`` writes them); None when
    either is missing or not two finite numbers."""
    dims = collection.get("cube:dimensions") or {}
    edges = []
    for axis in ("x", "y"):
        extent = dims[axis].get("extent") if isinstance(dims.get(axis), Mapping) else None
        if not isinstance(extent, (list, tuple)) or len(extent) != 2:
            return None
        try:
            low, high = sorted(float(v) for v in extent)
        except (TypeError, ValueError):
            return None
        if not (math.isfinite(low) and math.isfinite(high)):
            return None
        edges.append((low, high))
    (west, east), (south, north) = edges
    return west, south, east, north


def udf_peak_mib(epochs: int) -> float:
    """The peak memory (MiB) of one UDF call on a tile of :data:`TILE_MAX` cells and its halo with ``epochs``
    bands: :data:`UDF_PEAK_MIB` and :data:`UDF_PEAK_MIB_PER_EPOCH` for each epoch beyond :data:`UDF_PEAK_EPOCHS`."""
    return UDF_PEAK_MIB + UDF_PEAK_MIB_PER_EPOCH * max(0, int(epochs) - UDF_PEAK_EPOCHS)


def job_options(*, archive_url: str, peak_mib: float = UDF_PEAK_MIB, ensemble_mib: float = 0.0) -> dict[str, Any]:
    """The job options: the archive, and python memory = 1.5 x (measured peak + the ensemble's files)
    rounded up to 256 MiB, executor memory 2 GiB for the JVM side of a Geotrellis executor."""
    python = int(math.ceil(1.5 * (peak_mib + ensemble_mib) / 256.0) * 256)
    return {"udf-dependency-archives": [f"{archive_url}#{ARCHIVE_FOLDER}"],
            "executor-memory": "2G", "python-memory": f"{python}m", "executor-cores": 1}


def _package_files() -> list[tuple[Path, str]]:
    """(file, name in the archive) of the torch-free insarcast: the foundation and the udf subpackage."""
    import insarcast
    import insarcast.udf

    files = []
    for root, arcroot in ((Path(insarcast.__file__).parent, "insarcast"),
                          (Path(insarcast.udf.__file__).parent, "insarcast/udf")):
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_dir() or rel.parts[0] in _LEFT_OUT or "__pycache__" in rel.parts:
                continue
            if arcroot == "insarcast" and rel.parts[0] in ("udf", "stac", "training", "export"):
                continue
            files.append((path, f"{arcroot}/{rel.as_posix()}"))
    return files


def write_archive(path: Path, ensemble: Path, manifest: Mapping[str, Any]) -> int:
    """The archive at ``path`` from the checked ensemble folder and its manifest; returns the members'
    size in bytes. Entries carry a fixed date, so the same inputs give the same bytes."""
    from .ensemble import MANIFEST_NAME

    members = [ensemble / m["file"] for m in manifest["members"]]
    entries = _package_files() + [(ensemble / MANIFEST_NAME, f"ensemble/{MANIFEST_NAME}")]
    entries += [(m, f"ensemble/{m.name}") for m in members]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file, name in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes())
    return sum(m.stat().st_size for m in members)


def products_graph(spec: Mapping[str, Any], thresholds: Mapping[str, float] | None) -> dict[str, Any]:
    """The products graph of a job folder's ``job.json`` (the statistics graph when ``thresholds`` is None).
    Its UDF also returns the members and the forecast error scale (``member_bands``), from which ``insarcast
    openeo run`` writes the very products Dataset ``insarcast forecast`` writes."""
    return process_graph(stac_url=spec["stac_url"], bbox=tuple(spec["bbox"]), epochs=spec["epochs"],
                         patch=spec["patch"], ensemble=spec["ensemble"], python_path=spec["python_path"],
                         tile=spec["tile"], overlap=spec["overlap"], crs=spec["crs"], thresholds=thresholds,
                         stage="products" if thresholds is not None else "statistics",
                         member_bands=thresholds is not None)


def build_job(*, cube_stac: str, ensemble: str | os.PathLike, bbox: Sequence[float],
              thresholds: Mapping[str, float] | None,
              archive_url: str, out: str | os.PathLike, tile: int = 256, overlap: int | None = None) -> Path:
    """Write the job folder ``out`` (see the module's docstring); return it. Without ``thresholds`` the
    products graph is left to ``openeo run``, which takes them from the statistics job first."""
    from .ensemble import load_ensemble

    bbox = check_bbox(bbox, field="--bbox")
    archive_url = check_archive_url(archive_url)
    ensemble = Path(ensemble)
    checked = load_ensemble(ensemble, cache=False)              # the manifest and every member's sha256
    tile = check_tile(tile, checked.manifest["patch"])
    collection = read_cube_collection(cube_stac)
    epochs = collection["cube:dimensions"]["t"]["values"]
    extent = cube_extent(collection)
    if extent is not None:
        west, south, east, north = (float(v) for v in bbox)
        if not (west < extent[2] and east > extent[0] and south < extent[3] and north > extent[1]):
            raise InputError(f"the bbox (west {west:.12g}, south {south:.12g}, east {east:.12g}, north "
                             f"{north:.12g}) does not meet the cube's extent (west {extent[0]:.12g}, south "
                             f"{extent[1]:.12g}, east {extent[2]:.12g}, north {extent[3]:.12g}, in the cube's CRS)",
                             path=cube_stac, field="--bbox")
    reference = (collection["cube:dimensions"].get("x") or {}).get("reference_system", 3035)
    spec = {"stac_url": cube_stac, "bbox": list(bbox), "epochs": epochs, "patch": checked.manifest["patch"],
            "ensemble": f"{ARCHIVE_FOLDER}/ensemble", "python_path": [ARCHIVE_FOLDER], "tile": tile,
            "overlap": overlap, "crs": reference if isinstance(reference, int) else 3035}
    graphs = {"statistics_graph.json": products_graph(spec, None)}
    if thresholds is not None:
        graphs["process_graph.json"] = products_graph(spec, thresholds)
    out = Path(out)
    with staged() as stage:
        folder = stage.path(out)
        folder.mkdir(parents=True)
        size = write_archive(folder / ARCHIVE, ensemble, checked.manifest)
        for name, graph in {**graphs, "job.json": spec}.items():
            (folder / name).write_text(json.dumps(graph, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        options = job_options(archive_url=archive_url, peak_mib=udf_peak_mib(len(epochs)), ensemble_mib=size / 2**20)
        (folder / "job_options.json").write_text(json.dumps(options, indent=2, allow_nan=False) + "\n",
                                                 encoding="utf-8")
    return out
