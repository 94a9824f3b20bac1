"""Validate a published catalog offline: JSON Schemas from a local folder, assets, checksums, COGs.

``schemas`` is a folder laid out like ``../shared/stac-schemas`` (default: the copy shipped in the
package, :data:`SCHEMAS`): the schema published at
``https://<host>/<path>`` lies at ``<schemas>/<host>/<path>``. The core schema of each STAC JSON
(by its ``type`` and ``stac_version``), each schema in its ``stac_extensions`` (and a ``$schema``,
if any) and every ``$ref`` they make are read from there; only the JSON Schema meta-schemas come
with the ``jsonschema`` package. Nothing is fetched from the network: a schema missing from the
folder is a problem, not a download.

Beyond the schemas, every JSON reachable from ``catalog.json`` (and every STAC JSON in the folder,
which must be reachable) is checked for the profile insarcast publishes:

- every JSON is strict JSON (RFC 8259: UTF-8, no NaN or Infinity, which Python's json accepts);
- links and asset hrefs are relative (the catalog is self-contained) and point at existing files;
  child and item links form no cycle;
- an Item that declares the projection extension has a CRS (``proj:code``, or ``proj:wkt2`` /
  ``proj:projjson``), ``proj:shape`` and ``proj:transform`` for its rasters (the schema alone
  accepts an Item without them);
- with the raster extension, each GeoTIFF asset has STAC 1.1 ``bands``; with the file extension,
  every asset has ``file:checksum``, and ``file:checksum`` / ``file:size`` match the file;
- fields of a known extension are only used when the extension is declared;
- GeoTIFF assets pass rio-cogeo's COG validation.

Each problem names the file and the field (``properties.proj:code``, ``assets.median.file:checksum``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from insarcast.errors import InputError

from . import extensions as ext
from .cog import validate_cog
from .files import check_multihash

ROOT_FILE = "catalog.json"
_PREFIXES = {"proj": "projection", "raster": "raster", "file": "file", "classification": "classification",
             "processing": "processing", "forecast": "forecast", "mlm": "mlm"}
_MAX_SCHEMA_ERRORS = 20
_HIERARCHY = ("root", "parent", "child", "item", "collection", "derived_from")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a catalog: the file, the field inside it (or None) and what is wrong."""

    path: str
    field: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}{'' if self.field is None else ', ' + self.field}: {self.message}"

    def to_error(self, more: int = 0) -> InputError:
        suffix = f" (and {more} more problem{'s' if more != 1 else ''})" if more else ""
        return InputError(self.message + suffix, path=self.path, field=self.field)


def _require() -> None:
    from insarcast.errors import MissingDependencyError

    for module in ("jsonschema", "referencing", "rio_cogeo"):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingDependencyError(f"validating STAC needs {module}: pip install 'insarcast[stac]'") from exc


# ---------------------------------------------------------------------------------------------- schemas
class SchemaStore:
    """JSON Schema validators for schema URIs, resolved from a local folder only."""

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError("no such schema folder (expected a folder laid out like ../shared/stac-schemas)",
                             path=folder, field="--schemas")
        self.folder = folder.resolve()
        self._validators: dict[str, object] = {}
        from referencing import Registry

        self._registry = Registry(retrieve=self._retrieve)

    def file_for(self, uri: str) -> Path | None:
        """The local file for a schema URI (``https://host/path`` -> ``<folder>/host/path``), or None."""
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return None
        path = (self.folder / parts.netloc / parts.path.lstrip("/")).resolve()
        if self.folder not in path.parents:
            return None
        return path

    def _retrieve(self, uri: str):
        import jsonschema_specifications
        from referencing import Resource
        from referencing.exceptions import NoSuchResource
        from referencing.jsonschema import DRAFT7

        base = uri.split("#", 1)[0]
        for candidate in (base, base.rstrip("/")):
            try:
                return jsonschema_specifications.REGISTRY[candidate]
            except LookupError:
                pass
        file = self.file_for(base)
        if file is None or not file.is_file():
            raise NoSuchResource(ref=uri)
        contents = json.loads(file.read_text(encoding="utf-8"))
        return Resource.from_contents(contents, default_specification=DRAFT7)

    def validator(self, uri: str):
        """A validator for the schema at ``uri``; raises LookupError naming the missing local file."""
        uri = uri.split("#", 1)[0]
        if uri not in self._validators:
            from jsonschema.validators import Draft7Validator, validator_for

            file = self.file_for(uri)
            if file is None or not file.is_file():
                expected = "no local path" if file is None else str(file)
                raise LookupError(f"no schema for {uri} in {self.folder} (expected {expected})")
            contents = json.loads(file.read_text(encoding="utf-8"))
            cls = validator_for(contents, default=Draft7Validator)
            self._validators[uri] = cls(contents, registry=self._registry)
        return self._validators[uri]


def _format_path(parts) -> str | None:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def _leaf(error):
    """The most specific error under ``anyOf``/``oneOf``: the one deepest in the instance."""
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path),
                                                  e.validator not in ("anyOf", "oneOf", "not", "if")))
    return error


def _message(error) -> str:
    """The error's message with a long instance shortened (jsonschema starts it with its repr)."""
    import reprlib

    text = error.message
    full = repr(error.instance)
    if len(full) > 80 and text.startswith(full):
        r = reprlib.Repr()                             # keyword arguments only from Python 3.12
        r.maxstring, r.maxother, r.maxdict, r.maxlist, r.maxlevel = 40, 40, 3, 3, 2
        short = r.repr(error.instance)
        text = short + text[len(full):]
    return text if len(text) <= 400 else text[:397] + "..."


def _schema_problems(store: SchemaStore, uri: str, doc: dict, path: str) -> list[Problem]:
    try:
        validator = store.validator(uri)
    except LookupError as exc:
        return [Problem(path, "stac_extensions", str(exc))]
    except (OSError, json.JSONDecodeError) as exc:
        return [Problem(path, "stac_extensions", f"cannot read the schema for {uri} ({exc})")]
    problems: list[Problem] = []
    seen = set()
    try:
        for error in validator.iter_errors(doc):
            leaf = _leaf(error)
            parts = list(leaf.absolute_path)
            if leaf.validator == "required":
                m = re.match(r"^'(.+)' is a required property$", leaf.message)
                if m:
                    parts.append(m.group(1))
            field = _format_path(parts)
            message = _message(leaf)
            if (field, message) in seen:
                continue
            seen.add((field, message))
            problems.append(Problem(path, field, f"{message} (schema {uri})"))
            if len(problems) >= _MAX_SCHEMA_ERRORS:
                break
    except Exception as exc:  # an unresolvable $ref: a schema the folder lacks
        problems.append(Problem(path, "stac_extensions", f"cannot resolve the schema {uri} offline ({exc})"))
    return problems


# ---------------------------------------------------------------------------------------------- profile
def _is_relative(href: str) -> bool:
    parts = urlsplit(href)
    return not parts.scheme and not parts.netloc and not href.startswith("/")


def _ext_used(doc: dict, name: str) -> bool:
    return any(f"stac-extensions.github.io/{name}/" in u for u in doc.get("stac_extensions") or [])


def _is_tiff(asset: dict) -> bool:
    href = str(asset.get("href", "")).lower()
    return "image/tiff" in str(asset.get("type", "")).lower() or href.endswith((".tif", ".tiff"))


def _prefixed_keys(obj: dict) -> set[str]:
    return {k.split(":", 1)[0] for k in obj if isinstance(k, str) and ":" in k}


def _object(doc: dict, key: str) -> dict:
    """``doc[key]`` when it is a JSON object, else {} (a missing or mistyped field the schema reports)."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _profile_problems(doc: dict, path: str) -> list[Problem]:
    problems = []
    props, assets = _object(doc, "properties"), _object(doc, "assets")
    # fields of a known extension need the extension declared
    used = _prefixed_keys(props) | {p for a in assets.values() if isinstance(a, dict) for p in _prefixed_keys(a)}
    if doc.get("type") == "Collection":
        used |= _prefixed_keys(_object(doc, "summaries"))
    for prefix in sorted(used):
        name = _PREFIXES.get(prefix)
        if name and not _ext_used(doc, name):
            problems.append(Problem(path, "stac_extensions", f"uses {prefix}: fields but does not declare the "
                                                             f"{name} extension"))
    if doc.get("type") != "Feature":
        return problems
    rasters = {k: a for k, a in assets.items() if isinstance(a, dict) and _is_tiff(a)}
    if _ext_used(doc, "projection") and rasters:
        def has(key):
            return props.get(key) is not None or all(a.get(key) is not None for a in rasters.values())

        if not any(has(k) for k in ("proj:code", "proj:wkt2", "proj:projjson")):
            problems.append(Problem(path, "properties.proj:code",
                                    "missing: the Item declares the projection extension but gives no CRS "
                                    "(proj:code, proj:wkt2 or proj:projjson)"))
        for key in ("proj:shape", "proj:transform"):
            if not has(key):
                problems.append(Problem(path, f"properties.{key}", "missing: needed to place the rasters"))
    if _ext_used(doc, "raster"):
        for key, asset in rasters.items():
            if not asset.get("bands"):
                problems.append(Problem(path, f"assets.{key}.bands", "missing for a GeoTIFF asset"))
    if _ext_used(doc, "file"):
        for key, asset in assets.items():
            if isinstance(asset, dict) and "file:checksum" not in asset:
                problems.append(Problem(path, f"assets.{key}.file:checksum", "missing"))
    return problems


def _outside(file: Path, root: Path | None) -> bool:
    """Whether ``file`` (symlinks followed) lies outside the catalog folder ``root`` (resolved)."""
    if root is None:
        return False
    resolved = file.resolve()
    return resolved != root and root not in resolved.parents


def _asset_problems(doc: dict, path: Path, check_cogs: bool, root: Path | None = None) -> list[Problem]:
    problems = []
    for key, asset in _object(doc, "assets").items():
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            continue                                   # the schema reports it
        href = asset["href"]
        where = f"assets.{key}"
        if not _is_relative(href):
            problems.append(Problem(str(path), f"{where}.href", f"{href!r} is not relative: the catalog is not "
                                                                "self-contained"))
            continue
        file = path.parent / href
        if _outside(file, root):                       # never read (nor checksum) a file outside the catalog
            problems.append(Problem(str(path), f"{where}.href", f"{href!r} lies outside the catalog folder; not read"))
            continue
        if not file.is_file():
            problems.append(Problem(str(path), f"{where}.href", f"{href!r} does not exist"))
            continue
        size = asset.get("file:size")
        if isinstance(size, int) and file.stat().st_size != size:
            problems.append(Problem(str(path), f"{where}.file:size",
                                    f"{href!r} has {file.stat().st_size} bytes, the item says {size}"))
        checksum = asset.get("file:checksum")
        if isinstance(checksum, str):
            wrong = check_multihash(file, checksum)
            if wrong:
                problems.append(Problem(str(path), f"{where}.file:checksum", f"{href!r}: {wrong}"))
        if check_cogs and _is_tiff(asset):
            for error in validate_cog(file):
                problems.append(Problem(str(path), f"{where}.href", f"{href!r} is not a valid COG: {error}"))
    return problems


# ---------------------------------------------------------------------------------------------- walk
def _shown(path: Path, folder: Path) -> Path:
    """``path`` (resolved) as the user named it: below ``folder`` when it lies there."""
    relative = os.path.relpath(path, folder.resolve())
    return path if relative.startswith("..") else folder / relative


def _link_problems(doc: dict, path: Path, shown: Path, root: Path) -> tuple[list[Problem], list[tuple]]:
    """The problems of the links of ``doc`` and its child / item links to follow: ``(i, href, rel, target)``."""
    problems, follow = [], []
    for i, link in enumerate(doc.get("links") or []):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            continue
        href, rel = link["href"], link.get("rel")
        if rel == "self":
            continue
        if not _is_relative(href):
            if rel in _HIERARCHY:                     # external links (license, about ...) may be absolute
                problems.append(Problem(str(shown), f"links[{i}].href", f"{rel} link {href!r} is not "
                                                                        "relative: the catalog is not self-contained"))
            continue
        target = (path.parent / href).resolve()
        if _outside(target, root):
            problems.append(Problem(str(shown), f"links[{i}].href", f"{rel} link {href!r} lies outside the "
                                                                    "catalog folder; not read"))
        elif not target.is_file():
            problems.append(Problem(str(shown), f"links[{i}].href", f"{rel} link {href!r} does not exist"))
        elif rel in ("child", "item"):
            follow.append((i, href, rel, target))
    return problems, follow


def _cycle_problems(edges: dict[Path, list[tuple]], start: Path, folder: Path) -> list[Problem]:
    """A problem for each child / item link that leads back to a file above it (or to itself): a link cycle.

    A depth-first walk from the root over the links ``edges`` (file -> ``(i, href, rel, target)``), iterative.
    """
    problems, done, above = [], set(), {start}
    stack = [(start, iter(edges.get(start, ())))]
    while stack:
        path, links = stack[-1]
        for i, href, rel, target in links:
            if target in above:
                problems.append(Problem(str(_shown(path, folder)), f"links[{i}].href",
                                        f"{rel} link {href!r} leads back to {_shown(target, folder)}: a link cycle"))
            elif target not in done:
                above.add(target)
                stack.append((target, iter(edges.get(target, ()))))
                break
        else:
            stack.pop()
            above.discard(path)
            done.add(path)
    return problems


class NotJSON(ValueError):
    """A file that is not strict JSON (RFC 8259) in UTF-8; the message says why and where."""


_CONSTANT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')     # a string, or a constant outside one


def _no_constant(name: str):
    raise NotJSON(name)


def _constant_problem(text: str, name: str) -> NotJSON:
    """``name`` (NaN, Infinity, -Infinity), which Python's json accepts, as the error that RFC 8259 makes it."""
    where = next((m.start(1) for m in _CONSTANT.finditer(text) if m.group(1)), None)
    if where is not None:
        line, column = text.count("\n", 0, where) + 1, where - text.rfind("\n", 0, where)
        name = f"{name} at line {line} column {column}"
    return NotJSON(f"{name} is not a JSON number: RFC 8259 allows no NaN or Infinity")


def read_json(path: Path):
    """The JSON value in ``path``, read strictly: UTF-8, no NaN / Infinity, nesting Python can parse.

    Raises OSError, or a ValueError (:class:`NotJSON`, ``json.JSONDecodeError``) stating the cause and where.
    """
    data = path.read_bytes()
    if not data.strip():
        raise NotJSON("empty file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise NotJSON(f"not UTF-8 at byte {exc.start} (line {line}): {exc.reason}") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise NotJSON("nested too deeply to read") from None
    except NotJSON as exc:
        raise _constant_problem(text, str(exc)) from None


def _load(path: Path) -> tuple[dict | None, Problem | None]:
    try:
        doc = read_json(path)
    except (OSError, ValueError) as exc:
        return None, Problem(str(path), None, f"not readable JSON ({exc})")
    if not isinstance(doc, dict):
        return None, Problem(str(path), None, "expected a JSON object")
    return doc, None


def _schema_uris(doc: dict) -> tuple[list[str], list[Problem]]:
    uris, problems = [], []
    kind, version = doc.get("type"), doc.get("stac_version")
    if not isinstance(kind, str) or kind not in ext.CORE_SCHEMAS:
        problems.append(("type", f"not a STAC Catalog, Collection or Item (type {kind!r}, stac_version {version!r})"))
    elif not isinstance(version, str):
        problems.append(("stac_version", f"expected a string such as '1.1.0', not {version!r}"))
    else:
        uris.append(ext.CORE_SCHEMAS[kind].format(version=version))
    for uri in doc.get("stac_extensions") or []:
        if isinstance(uri, str):
            uris.append(uri)
    if isinstance(doc.get("$schema"), str):
        uris.append(doc["$schema"])
    return uris, problems


#: The schemas shipped with insarcast (package data, stac/schemas/README.md): the default of ``schemas``.
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def validate_catalog(catalog_dir: str | os.PathLike, *, schemas: str | os.PathLike | None = None,
                     check_cogs: bool = True, strict: bool = False) -> list[Problem]:
    """Every problem of the catalog at ``catalog_dir`` (its folder or its catalog.json), offline.

    ``schemas`` is the local schema folder (default :data:`SCHEMAS`, the shipped copy). Returns the
    problems, empty when the catalog is valid;
    with ``strict`` the first problem is raised as an :class:`InputError` naming file and field.
    """
    _require()
    root = Path(catalog_dir)
    root_file = root / ROOT_FILE if root.is_dir() else root
    if not root_file.is_file():
        raise InputError(f"no {ROOT_FILE}: not a STAC catalog folder", path=root)
    folder = root_file.parent
    store = SchemaStore(SCHEMAS if schemas is None else schemas)

    problems: list[Problem] = []
    start = root_file.resolve()
    queue, seen, edges = [start], set(), {}
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        shown = _shown(path, folder)
        doc, problem = _load(path)
        if problem:
            problems.append(Problem(str(shown), None, problem.message))
            continue
        uris, kind_problems = _schema_uris(doc)
        problems += [Problem(str(shown), f, m) for f, m in kind_problems]
        for uri in uris:
            problems += _schema_problems(store, uri, doc, str(shown))
        problems += _profile_problems(doc, str(shown))
        problems += _asset_problems(doc, shown, check_cogs, root=folder.resolve())
        link_problems, edges[path] = _link_problems(doc, path, shown, folder.resolve())
        problems += link_problems
        queue += [target for _, _, _, target in edges[path]]
    problems += _cycle_problems(edges, start, folder)

    for file in sorted(folder.rglob("*.json")):
        if file.resolve() in seen:
            continue
        doc, _ = _load(file)
        if doc is not None and "stac_version" in doc:
            problems.append(Problem(str(file), None, "a STAC JSON that no child or item link reaches"))
    if strict and problems:
        raise problems[0].to_error(len(problems) - 1)
    return problems
