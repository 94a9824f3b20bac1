"""The ensemble manifest, ``ensemble.json``: one typed model, validated once.

:class:`Manifest` is what every package holds of an exported ensemble: ``insarcast export`` builds one
and writes it (:func:`write_manifest`), the UDF (:func:`insarcast.udf.ensemble.load_ensemble`), STAC
(:func:`insarcast.stac.ensemble.read_ensemble`) and the report read one (:func:`read_manifest`).
:meth:`Manifest.from_dict` is the only check of a manifest's fields; anything it refuses is an
:class:`~insarcast.errors.InputError` naming the file and the field (``members[1].sha256``):

- a key missing or of the wrong type, an unknown ``format`` or ``format_version``, a framework other
  than ONNX;
- ``name``, ``architecture`` or a member's ``arch`` blank, ``opset`` not positive, ``created`` not an
  ISO 8601 date and time (``2026-01-01T00:00:00Z``), ``grid.crs`` not a CRS that pyproj reads
  (``EPSG:3035``; the check against a cube's CRS uses it);
- T, F, P, C not positive, the channel list not the one this package builds for the ensemble's input
  formulation (``inputs``; an ensemble written before the key existed is ``paper``);
- normalisation statistics not finite, or a standard deviation <= 0;
- input and output specs disagreeing with T, F, P, C;
- for the inputs ``residual-corrected``, no ``reference_correction {file, sha256}``: the shipped
  synthetic-truth correction the members were trained against (:mod:`insarcast.udf.correction`;
  :meth:`Manifest.check_correction` compares it with the installed file before a forecast);
- no member, a member file that is not a plain name in the folder or is listed twice, a sha256 that
  is not 64 hex digits, a ``bytes`` or ``trial`` below 0, members disagreeing on T, F, P or C (their
  recorded hyperparameters).

:func:`member_files` then checks the files the manifest lists (inside the folder, present, of the
recorded size and sha256); the ONNX graphs themselves are checked by the UDF's loader.

The model is also a read-only mapping of the JSON object it was read from (``manifest["history"]``,
``manifest.get("grid")``), extra keys included, so code that only copies fields through (the STAC
model Item) reads it as it reads JSON. Only numpy-free standard library code and the UDF's input
definitions are imported (and pyproj, when a manifest names a CRS): no torch, no onnxruntime.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from insarcast.contract import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, MODEL_INPUT_DIMS as INPUT_DIMS, \
    MODEL_OUTPUT_DIMS as OUTPUT_DIMS
from insarcast.errors import InputError, InsarcastWarning

from .inputs import INPUTS, NORM_KEYS
SHAPE_KEYS = ("history", "horizon", "patch", "channels")     # T, F, P, C

_INT, _NUMBER, _STR, _DICT, _LIST, _BOOL = "int", "number", "str", "dict", "list", "bool"
_OPT_INT, _OPT_NUMBER, _OPT_STR = "int or null", "number or null", "str or null"
_REQUIRED = object()


class ManifestWarning(InsarcastWarning):
    """An ensemble is used although its manifest leaves something unchecked (an older format)."""


def _is(value: Any, kind: str) -> bool:
    if kind.endswith(" or null"):
        return value is None or _is(value, kind.removesuffix(" or null"))
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {_STR: str, _DICT: dict, _LIST: list, _BOOL: bool}[kind])


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(ch in "0123456789abcdef" for ch in value)


def _typename(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Fields:
    """Typed access to one JSON object of the manifest; every refusal names the file and the field."""

    def __init__(self, data: Any, *, path: Path, prefix: str = "", what: str = "the ensemble manifest") -> None:
        if not isinstance(data, dict):
            raise InputError(f"{what} must be a JSON object, got {_typename(data)}", path=path,
                             field=prefix.rstrip(".") or None)
        self.data, self.path, self.prefix, self.what = data, path, prefix, what

    def error(self, key: str, message: str) -> InputError:
        return InputError(message, path=self.path, field=f"{self.prefix}{key}")

    def get(self, key: str, kind: str, default: Any = _REQUIRED) -> Any:
        name = f"{self.prefix}{key}"
        if key not in self.data:
            if default is _REQUIRED:
                raise self.error(key, f"{self.what} is missing the key {name!r}")
            return default
        value = self.data[key]
        if not _is(value, kind):
            article = "an" if kind[0] in "i" else "a"
            raise self.error(key, f"{self.what}: {name!r} must be {article} {kind}, got {_typename(value)} {value!r}")
        return value

    def positive(self, key: str) -> int:
        value = self.get(key, _INT)
        if value < 1:
            raise self.error(key, f"{self.prefix}{key} must be a positive integer, got {value}")
        return value

    def name(self, key: str) -> str:
        """A string that is not blank (a name shown in STAC titles and the products' attributes)."""
        value = self.get(key, _STR)
        if not value.strip():
            raise self.error(key, f"{self.prefix}{key} must be a non-empty name, got {value!r}")
        return value

    def count(self, key: str, *, optional: bool = False) -> int | None:
        """An integer >= 0; None where ``optional`` and absent or null."""
        value = self.get(key, _OPT_INT if optional else _INT, None if optional else _REQUIRED)
        if value is not None and value < 0:
            raise self.error(key, f"{self.prefix}{key} must be an integer >= 0, got {value}")
        return value

    def timestamp(self, key: str) -> str:
        """An ISO 8601 date and time (``2026-01-01T00:00:00Z``, what export writes), as written."""
        value = self.get(key, _STR)
        try:
            datetime.fromisoformat(value)
            ok = "T" in value.upper()
        except ValueError:
            ok = False
        if not ok:
            raise self.error(key, f"{self.prefix}{key} must be an ISO 8601 date and time such as "
                                  f"'2026-01-01T00:00:00Z', got {value!r}")
        return value

    def crs(self, key: str) -> str | None:
        """A coordinate reference system pyproj reads (``EPSG:3035``, WKT, PROJ), as written; None where
        absent or null."""
        value = self.get(key, _OPT_STR, None)
        if value is None:
            return None
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(value)
        except CRSError as err:
            reason = " ".join(str(err).split())
            raise self.error(key, f"{self.prefix}{key} must be a CRS that pyproj reads, such as 'EPSG:3035', "
                                  f"got {value!r} ({reason})") from None
        return value

    def finite(self, key: str, *, least: float | None = None, above: float | None = None,
               most: float | None = None, optional: bool = False) -> float | None:
        """A finite number (Python's json reads NaN and Infinity) in the given bounds; None where ``optional``
        and absent or null."""
        value = self.get(key, _OPT_NUMBER if optional else _NUMBER, None if optional else _REQUIRED)
        if value is None:
            return None
        value = float(value)
        bounds = [(least, ">=", lambda v, b: v >= b), (above, ">", lambda v, b: v > b),
                  (most, "<=", lambda v, b: v <= b)]
        if not math.isfinite(value) or not all(ok(value, b) for b, _, ok in bounds if b is not None):
            wanted = " and ".join(f"{sign} {b:g}" for b, sign, _ in bounds if b is not None)
            raise self.error(key, f"{self.prefix}{key} must be a finite number{' ' + wanted if wanted else ''}, "
                                  f"got {value!r}")
        return value


class _Document(Mapping):
    """Read-only mapping access to the JSON object a model was read from (extra keys included)."""

    raw: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the JSON object, in its key order."""
        return copy.deepcopy(self.raw)


@dataclass(frozen=True, eq=False)
class TensorSpec(_Document):
    """The ``input`` or ``output`` entry: name, dtype, shape (``-1``: the dynamic batch) and dims."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, data: Any, *, key: str, expected: list[int], dims: tuple[str, ...], path: Path,
                  sizes: str) -> TensorSpec:
        f = _Fields(data, path=path, prefix=f"{key}.")
        spec = cls(name=f.get("name", _STR), dtype=f.get("dtype", _STR), shape=tuple(f.get("shape", _LIST)),
                   dims=tuple(f.get("dims", _LIST)), raw=data)
        if spec.dtype != "float32":
            raise f.error("dtype", f"{key}.dtype must be 'float32', got {spec.dtype!r}")
        if list(spec.shape) != expected:
            raise f.error("shape", f"{key}.shape is {list(spec.shape)}, but history/horizon/patch/channels "
                                   f"({sizes}) give {expected}")
        if spec.dims != dims:
            raise f.error("dims", f"{key}.dims must be {list(dims)}, got {list(spec.dims)}")
        return spec


@dataclass(frozen=True, eq=False)
class MemberEntry(_Document):
    """One member's entry: its file and checksum, the run it came from and how it was exported."""

    index: int
    file: str
    sha256: str
    bytes: int
    arch: str
    trial: int | None
    run_seed: int
    strategy: str
    val_loss: float
    hyperparameters: dict[str, Any]
    exporter: str
    parity_max_abs: float
    parameters: int | None
    source: str | None
    raw: dict[str, Any] = field(repr=False)
    zero_output: bool = False     # its output is exactly 0 for every input (export/manifest.py); absent: false

    @property
    def model(self) -> dict[str, Any]:
        """The member's model configuration (``hyperparameters.model``)."""
        return self.hyperparameters["model"]

    @classmethod
    def from_dict(cls, data: Any, *, index: int, path: Path) -> MemberEntry:
        f = _Fields(data, path=path, prefix=f"members[{index}].", what=f"member {index} of the manifest")
        entry = cls(index=index, file=f.get("file", _STR), sha256=f.get("sha256", _STR), bytes=f.count("bytes"),
                    arch=f.name("arch"), trial=f.count("trial", optional=True), run_seed=f.get("run_seed", _INT),
                    strategy=f.get("strategy", _STR), val_loss=f.finite("val_loss"),
                    hyperparameters=f.get("hyperparameters", _DICT), exporter=f.get("exporter", _STR),
                    parity_max_abs=f.finite("parity_max_abs", least=0.0),
                    parameters=f.get("parameters", _OPT_INT, None), source=f.get("source", _OPT_STR, None), raw=data,
                    zero_output=f.get("zero_output", _BOOL, False))
        pure = PurePosixPath(entry.file)
        if pure.name != entry.file or entry.file in ("", ".", "..") or "\\" in entry.file:
            raise f.error("file", f"member {index}: file must be a plain file name inside the ensemble folder, "
                                  f"got {entry.file!r}")
        if entry.parameters is not None and entry.parameters < 0:
            raise f.error("parameters", f"member {entry.file}: parameters must be a count >= 0, got {entry.parameters}")
        if not _is_sha256(entry.sha256):
            raise f.error("sha256", f"member {entry.file}: sha256 must be 64 lower-case hex digits, got "
                                    f"{entry.sha256!r}")
        if not isinstance(entry.hyperparameters.get("model"), dict):
            raise f.error("hyperparameters.model", f"member {entry.file}: hyperparameters.model must be an object")
        return entry


@dataclass(frozen=True, eq=False)
class Manifest(_Document):
    """A checked ensemble manifest (:meth:`from_dict`); ``path`` is the ``ensemble.json`` it describes."""

    path: Path
    name: str
    architecture: str
    opset: int
    created: str
    history: int
    horizon: int
    patch: int
    channels: int
    inputs: str
    target: str | None
    channel_names: tuple[str, ...]
    normalisation: dict[str, float]
    grid_spacing: float | None
    grid_crs: str | None
    epoch_days: float
    reference_correction: dict[str, str] | None
    input: TensorSpec
    output: TensorSpec
    members: tuple[MemberEntry, ...]
    raw: dict[str, Any] = field(repr=False)

    @property
    def folder(self) -> Path:
        """The ensemble folder (the members' files lie in it)."""
        return self.path.parent

    @property
    def versions(self) -> dict[str, Any]:
        return dict(self.raw["versions"])

    @property
    def members_zero_output(self) -> int:
        """How many members give 0 for every input (``zero_output``): residual members that forecast
        their reference unchanged. The products record it (attribute ``members_zero_output``)."""
        return sum(m.zero_output for m in self.members)

    def zero_output_sentence(self) -> str | None:
        """:attr:`members_zero_output` as the sentence ``export`` logs and the report prints; None when
        every member forecasts. Where they are the majority, the median is their reference."""
        kept, k = self.members_zero_output, len(self.members)
        if not kept:
            return None
        line = (f"{kept} of the {k} members keep their reference forecast unchanged (no training epoch beat it on "
                "validation: their correction is exactly 0, and they are not run)")
        return line + (", so the ensemble median is the reference forecast." if 2 * kept > k else ".")

    @classmethod
    def from_dict(cls, data: Any, *, path: str | os.PathLike = MANIFEST_NAME) -> Manifest:
        """Check ``data`` (the parsed JSON) and return the model; :class:`InputError` at the first problem."""
        path = Path(path)
        f = _Fields(data, path=path)
        _check_format(f)
        t, fh, p, c = (f.positive(k) for k in SHAPE_KEYS)
        inputs = _inputs(f)
        names = tuple(_channel_names(f, c, inputs))
        sizes = f"T={t}, F={fh}, P={p}, C={c}"
        grid = _Fields(f.get("grid", _DICT), path=path, prefix="grid.")
        manifest = cls(
            path=path, name=f.name("name"), architecture=f.name("architecture"), opset=f.positive("opset"),
            created=f.timestamp("created"), history=t, horizon=fh, patch=p, channels=c, inputs=inputs,
            target=f.get("target", _OPT_STR, None), channel_names=names, normalisation=_normalisation(f),
            grid_spacing=grid.finite("spacing", above=0.0, optional=True), grid_crs=grid.crs("crs"),
            epoch_days=f.finite("epoch_days", above=0.0, most=366.0), reference_correction=_reference_correction(f, inputs),
            input=TensorSpec.from_dict(f.get("input", _DICT), key="input", expected=[-1, t, c, p, p],
                                       dims=INPUT_DIMS, path=path, sizes=sizes),
            output=TensorSpec.from_dict(f.get("output", _DICT), key="output", expected=[-1, fh, p, p],
                                        dims=OUTPUT_DIMS, path=path, sizes=sizes),
            members=_members(f), raw=data)
        manifest._check_members_agree()
        return manifest

    def _check_members_agree(self) -> None:
        for m in self.members:
            for key in SHAPE_KEYS:
                value, own = m.model.get(key), getattr(self, key)
                if value != own:
                    raise InputError(f"member {m.file} has {key} = {value!r} but the ensemble has {key} = {own}: "
                                     "all members must share T, F, P and C", path=self.path,
                                     field=f"members[{m.index}].hyperparameters.model.{key}")

    def check_reference_rule(self) -> None:
        """Refuse members that learnt on an adaptive curve chosen by other constants than this insarcast's
        (:func:`insarcast.baselines.reference_rule`): they correct what that curve left, not this one.
        An ensemble that does not record its rule (written before insarcast 0.1.0 recorded it; the
        hindcast margin was then 1.25) is used with a warning."""
        if self.inputs == "paper":
            return
        from insarcast.baselines import reference_rule

        own, recorded = reference_rule(), self.raw.get("reference_rule")
        if recorded is None:
            warnings.warn(f"{self.path}: the ensemble does not record the rule of its reference (ensembles "
                          "exported before it was recorded learnt on the hindcast margin 1.25, this insarcast "
                          f"uses {own['hindcast_margin']:g}); retrain and export it to forecast on the same reference",
                          ManifestWarning, stacklevel=2)
            return
        if recorded != own:
            changed = ", ".join(f"{k} {recorded.get(k)!r} -> {own[k]!r}" for k in own if recorded.get(k) != own[k])
            raise InputError(f"the members learnt on a reference chosen by another rule ({changed or recorded!r}): "
                             "retrain and export the ensemble with this insarcast, or forecast with the version it "
                             "was trained with", path=self.path, field="reference_rule")

    def check_correction(self) -> None:
        """Refuse to forecast with members trained against another correction than the installed one
        (inputs ``residual-corrected``; :func:`insarcast.udf.correction.check_identity`)."""
        if self.reference_correction is not None:
            from .correction import check_identity

            check_identity(self.reference_correction, history=self.history, horizon=self.horizon, patch=self.patch,
                           epoch_days=self.epoch_days, path=self.path)

    def to_json(self) -> str:
        """The manifest as written: indented JSON, one trailing newline."""
        return json.dumps(self.raw, indent=2) + "\n"


def _check_format(f: _Fields) -> None:
    fmt = f.get("format", _STR)
    if fmt != MANIFEST_FORMAT:
        raise f.error("format", f"not an insarcast ensemble: format is {fmt!r}, expected {MANIFEST_FORMAT!r}")
    version = f.get("format_version", _INT)
    if version != MANIFEST_VERSION:
        raise f.error("format_version", f"unsupported format_version {version}; this insarcast reads version "
                                        f"{MANIFEST_VERSION}")
    framework = f.get("framework", _STR)
    if framework != "onnx":
        raise f.error("framework", f"framework must be 'onnx', got {framework!r}")
    f.get("framework_version", _STR)
    f.get("versions", _DICT)


def _inputs(f: _Fields) -> str:
    """The input formulation: ``inputs``, or ``paper`` for ensembles written before the key existed."""
    inputs = f.get("inputs", _STR, "paper")
    if inputs not in INPUTS:
        raise f.error("inputs", f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}; this insarcast builds "
                                "no other inputs (a newer insarcast wrote this ensemble?)")
    return inputs


def _reference_correction(f: _Fields, inputs: str) -> dict[str, str] | None:
    """``reference_correction {file, sha256}``, required for the inputs ``residual-corrected`` only."""
    if inputs != "residual-corrected":
        return None
    if "reference_correction" not in f.data:
        raise f.error("reference_correction", "an ensemble with the inputs 'residual-corrected' must record "
                                              "reference_correction {file, sha256}, the correction its members were "
                                              "trained against; this one was exported before insarcast recorded it: "
                                              "retrain and export it with this insarcast")
    g = _Fields(f.get("reference_correction", _DICT), path=f.path, prefix="reference_correction.")
    out = {"file": g.get("file", _STR), "sha256": g.get("sha256", _STR)}
    if not _is_sha256(out["sha256"]):
        raise g.error("sha256", f"reference_correction.sha256 must be 64 lower-case hex digits, got {out['sha256']!r}")
    return out


def _channel_names(f: _Fields, channels: int, inputs: str) -> list[str]:
    names = f.get("channel_names", _LIST)
    if len(names) != channels or not all(isinstance(n, str) for n in names):
        raise f.error("channel_names", f"channel_names must list {channels} names (channels = {channels}), got "
                                       f"{names!r}")
    if tuple(names) != INPUTS[inputs]:
        raise f.error("channel_names", f"channel_names {names} differ from the channels this UDF builds for the "
                                       f"{inputs!r} inputs {list(INPUTS[inputs])}")
    return names


def _normalisation(f: _Fields) -> dict[str, float]:
    norm = _Fields(f.get("normalisation", _DICT), path=f.path, prefix="normalisation.")
    out = {}
    for key in NORM_KEYS:
        value = norm.get(key, _NUMBER)
        if not math.isfinite(value):
            raise norm.error(key, f"normalisation.{key} must be a finite number, got {value!r}")
        if key.endswith("_std") and value <= 0:
            raise norm.error(key, f"normalisation.{key} must be > 0, got {value!r}")
        out[key] = float(value)
    return out


def _members(f: _Fields) -> tuple[MemberEntry, ...]:
    listed = f.get("members", _LIST)
    if not listed:
        raise f.error("members", "the ensemble has no member")
    members, seen = [], set()
    for i, data in enumerate(listed):
        entry = MemberEntry.from_dict(data, index=i, path=f.path)
        if entry.file in seen:
            raise f.error(f"members[{i}].file", f"member {i}: file {entry.file!r} is listed twice")
        seen.add(entry.file)
        members.append(entry)
    return tuple(members)


# --- reading and writing ------------------------------------------------------------------------------------

def read_manifest(path: str | os.PathLike) -> Manifest:
    """The checked manifest of the ensemble folder ``path`` (or of its ``ensemble.json``)."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise InputError(f"no ensemble manifest: {MANIFEST_NAME} not found (is this an ensemble folder written "
                         "by 'insarcast export'?)", path=file) from err
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the ensemble manifest: {err}", path=file) from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"the ensemble manifest is not valid JSON: {err}", path=file) from err
    return Manifest.from_dict(data, path=file)


def write_manifest(manifest: Manifest, folder: str | os.PathLike) -> Path:
    """Write ``manifest`` as ``folder/ensemble.json``, whole or not at all; returns its path."""
    from insarcast.fsutil import atomic_path

    path = Path(folder) / MANIFEST_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(manifest.to_json(), encoding="utf-8")
    return path


@dataclass(frozen=True)
class MemberFile:
    """A member's file, read and checked against its manifest entry."""

    entry: MemberEntry
    path: Path
    data: bytes = field(repr=False)
    sha256: str


def member_files(manifest: Manifest) -> list[MemberFile]:
    """The files of the manifest's members, each inside the ensemble folder (a symlink leaving it is refused
    before anything is read), present, and of the recorded size and sha256."""
    from insarcast.fsutil import inside

    out = []
    for entry in manifest.members:
        file = manifest.folder / entry.file
        where = f"members[{entry.index}]"
        # the name as the manifest gives it, relative to the folder (``file`` would be joined to it twice
        # when the folder is given as a relative path, and a symlink leaving it would pass)
        inside(entry.file, manifest.folder, source=manifest.path, field=f"{where}.file", what=f"member {entry.file}")
        try:
            data = file.read_bytes()
        except FileNotFoundError as err:
            raise InputError(f"member {entry.file} is missing: the manifest lists it but the file does not exist",
                             path=file, field=f"{where}.file") from err
        except OSError as err:
            raise InputError(f"member {entry.file} cannot be read: {err}", path=file, field=f"{where}.file") from err
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256 or len(data) != entry.bytes:
            raise InputError(f"member {entry.file} fails its checksum: sha256 {digest} ({len(data)} bytes) differs "
                             f"from the manifest's {entry.sha256} ({entry.bytes} bytes); the file was changed or "
                             "corrupted", path=file, field=f"{where}.sha256")
        out.append(MemberFile(entry=entry, path=file, data=data, sha256=digest))
    return out
