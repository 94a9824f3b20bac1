"""A second validator: pystac's own JSON Schema validation of every STAC JSON of a catalog, offline.

:mod:`insarcast.stac.validate` is the project's own code; this runs pystac's
``JsonSchemaSTACValidator`` (``pystac.validation.validate_dict``) over the same files, against the
same schema folder: pystac reads every schema through ``StacIO``, which is swapped, for the call only,
for one that maps ``https://host/path`` to ``<schemas>/host/path`` and refuses anything else, so
nothing is fetched from the network.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

from insarcast.errors import InputError


def _offline_io(folder: Path):
    import pystac

    class OfflineStacIO(pystac.stac_io.DefaultStacIO):
        """Schema URLs from the local folder; local files as usual; never the network."""

        def read_text_from_href(self, href: str) -> str:
            parts = urlsplit(href)
            if parts.scheme in ("http", "https"):
                path = folder / parts.netloc / parts.path.lstrip("/")
                if not path.is_file():
                    raise FileNotFoundError(f"no schema for {href} in {folder} (offline)")
                return path.read_text(encoding="utf-8")
            return super().read_text_from_href(href)

    return OfflineStacIO


def pystac_problems(catalog_dir: str | os.PathLike, *, schemas: str | os.PathLike | None = None) -> list[str]:
    """``"file: message"`` for every STAC JSON below ``catalog_dir`` that pystac finds invalid; [] if none."""
    import pystac
    from pystac.validation import validate_dict
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    from .validate import SCHEMAS, read_json

    folder = Path(SCHEMAS if schemas is None else schemas).resolve()
    if not folder.is_dir():
        raise InputError("no such schema folder", path=folder, field="--schemas")
    root = Path(catalog_dir)
    root = root.parent if root.is_file() else root
    previous = pystac.StacIO._default_io
    pystac.StacIO.set_default(_offline_io(folder))
    # pystac logs each failure it raises (a traceback per missing schema) and we report it as one line
    quiet, level = logging.getLogger("pystac"), logging.getLogger("pystac").level
    quiet.setLevel(logging.CRITICAL)
    problems = []
    try:
        validator = JsonSchemaSTACValidator()
        for path in sorted(root.rglob("*.json")):
            try:
                doc = read_json(path)
            except (OSError, ValueError) as err:
                problems.append(f"{path}: not readable JSON: {err}")
                continue
            if not isinstance(doc, dict) or "stac_version" not in doc:
                continue                               # ensemble.json and other assets
            if not isinstance(doc["stac_version"], str):   # pystac would fail on it, not report it
                problems.append(f"{path}: stac_version: expected a string such as '1.1.0', "
                                f"not {doc['stac_version']!r}")
                continue
            try:
                validate_dict(doc, href=str(path), validator=validator)
            except (pystac.STACValidationError, pystac.STACTypeError, pystac.validation.GetSchemaError) as err:
                problems.append(f"{path}: {str(err).splitlines()[0]}")
            except RecursionError:                     # jsonschema (and its messages) recurse into the values
                problems.append(f"{path}: nested too deeply to validate")
    finally:
        pystac.StacIO._default_io = previous
        quiet.setLevel(level)
    return problems
