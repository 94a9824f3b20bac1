"""Open an exported ONNX ensemble (``ensemble.json`` + ``member_XX.onnx``) and run it, without torch.

:func:`load_ensemble` reads the manifest written by ``insarcast export`` and refuses, with an
:class:`~insarcast.errors.InputError` that names the member and the field, anything that does not
match (DESIGN.md, "Model contract"):

- ``ensemble.json`` missing, not JSON, a key missing or of the wrong type (a small hand-written
  schema, :data:`MANIFEST_SCHEMA` and :data:`MEMBER_SCHEMA`), an unknown format or version;
- the input and output specs disagreeing with T, F, P, C, or the channel list differing from the
  channels this package builds (:data:`insarcast.udf.inputs.CHANNELS`);
- normalisation statistics not finite, or a standard deviation <= 0;
- a member file missing, of another size, or whose sha256 checksum differs from the manifest;
- members disagreeing on T, F, P or C (their recorded hyperparameters);
- the ONNX graph's input or output name, element type or static dimensions differing from the
  manifest, or a fixed batch dimension (read from the onnxruntime session).

:meth:`Ensemble.predict` maps ``x (N, T, C, P, P)`` float32 to ``(K, N, F, P, P)`` float32 (the
normalised change since the last epoch), running every member in batches: it is the ``predict``
callable of :func:`insarcast.udf.forecast.forecast_products`, whose other settings
:attr:`Ensemble.settings` holds. InferenceSessions are cached per process, keyed by (file, sha256,
providers, threads): loading the same ensemble again re-checks every checksum but builds no session.
By default the sessions ask for CUDA first when onnxruntime offers it (onnxruntime-gpu on a machine
with a GPU, :func:`ensemble_providers`), with the CPU as fallback; a session that could not start
CUDA is a :class:`RuntimeWarning`. CUDA asked for explicitly (``providers=``) and not obtained is an
:class:`~insarcast.errors.InputError`. :attr:`Ensemble.active_providers` is what the sessions really
run on (``session.get_providers()``); the products record it.

Only numpy and onnxruntime are imported; never torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

import numpy as np

from insarcast.cpus import allow_spinning
from insarcast.errors import InputError, MissingDependencyError

from .inputs import INPUTS, NORM_KEYS

FORMAT = "insarcast-ensemble"
FORMAT_VERSION = 1
MANIFEST_NAME = "ensemble.json"
INPUT_DIMS = ("batch", "time", "channel", "y", "x")
OUTPUT_DIMS = ("batch", "horizon", "y", "x")

_INT = "int"
_NUMBER = "number"
_STR = "str"
_DICT = "dict"
_LIST = "list"
_OPT_INT = "int or null"

# key -> expected type of the manifest's top level and of each member; extra keys are allowed.
MANIFEST_SCHEMA: dict[str, str] = {
    "format": _STR, "format_version": _INT, "name": _STR, "architecture": _STR, "framework": _STR,
    "framework_version": _STR, "opset": _INT, "created": _STR, "versions": _DICT, "history": _INT,
    "horizon": _INT, "patch": _INT, "channels": _INT, "channel_names": _LIST, "normalisation": _DICT,
    "grid": _DICT, "epoch_days": _NUMBER, "input": _DICT, "output": _DICT, "members": _LIST,
}
SPEC_SCHEMA: dict[str, str] = {"name": _STR, "dtype": _STR, "shape": _LIST, "dims": _LIST}
MEMBER_SCHEMA: dict[str, str] = {
    "file": _STR, "sha256": _STR, "bytes": _INT, "arch": _STR, "trial": _OPT_INT, "run_seed": _INT,
    "strategy": _STR, "val_loss": _NUMBER, "hyperparameters": _DICT, "exporter": _STR,
    "parity_max_abs": _NUMBER,
}
SHAPE_KEYS = ("history", "horizon", "patch", "channels")     # T, F, P, C

# Windows per session call. On a CPU small batches are faster: a window's activations (T x D x P x P
# floats, 1.5 MB for the manual ResNet+Transformer) stay in cache from one layer to the next. Measured
# with that model (bench/udf.py, 2 threads): 161 windows/s at batch 2 against 108 at batch 64. A GPU
# wants large batches.
CPU_BATCH = 2
GPU_BATCH = 64


def _is(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _OPT_INT:
        return value is None or _is(value, _INT)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {_STR: str, _DICT: dict, _LIST: list}[kind])


def _typename(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_keys(data: Any, schema: Mapping[str, str], *, prefix: str, path: Path, what: str) -> None:
    if not isinstance(data, dict):
        raise InputError(f"{what} must be a JSON object, got {_typename(data)}", path=path, field=prefix or None)
    for key, kind in schema.items():
        name = f"{prefix}{key}"
        if key not in data:
            raise InputError(f"{what} is missing the key {name!r}", path=path, field=name)
        if not _is(data[key], kind):
            raise InputError(f"{what}: {name!r} must be {'an' if kind[0] in 'i' else 'a'} {kind}, "
                             f"got {_typename(data[key])} {data[key]!r}", path=path, field=name)


def check_manifest(manifest: Any, *, path: str | Path = MANIFEST_NAME) -> dict[str, Any]:
    """Check the manifest's schema and internal consistency (no file is read); returns it.

    Raises :class:`InputError` naming the key (``field``) at the first problem.
    """
    path = Path(path)
    _check_keys(manifest, MANIFEST_SCHEMA, prefix="", path=path, what="the ensemble manifest")
    if manifest["format"] != FORMAT:
        raise InputError(f"not an insarcast ensemble: format is {manifest['format']!r}, expected {FORMAT!r}",
                         path=path, field="format")
    if manifest["format_version"] != FORMAT_VERSION:
        raise InputError(f"unsupported format_version {manifest['format_version']}; this insarcast reads "
                         f"version {FORMAT_VERSION}", path=path, field="format_version")
    if manifest["framework"] != "onnx":
        raise InputError(f"framework must be 'onnx', got {manifest['framework']!r}", path=path, field="framework")
    t, f, p, c = (manifest[k] for k in SHAPE_KEYS)
    for key in SHAPE_KEYS:
        if manifest[key] < 1:
            raise InputError(f"{key} must be a positive integer, got {manifest[key]}", path=path, field=key)
    names = manifest["channel_names"]
    if len(names) != c or not all(isinstance(n, str) for n in names):
        raise InputError(f"channel_names must list {c} names (channels = {c}), got {names!r}", path=path,
                         field="channel_names")
    inputs = manifest_inputs(manifest, path=path)
    if tuple(names) != INPUTS[inputs]:
        raise InputError(f"channel_names {names} differ from the channels this UDF builds for the {inputs!r} "
                         f"inputs {list(INPUTS[inputs])}", path=path, field="channel_names")
    _check_norm(manifest["normalisation"], path)
    for key, dims, shape in (("input", INPUT_DIMS, [-1, t, c, p, p]), ("output", OUTPUT_DIMS, [-1, f, p, p])):
        spec = manifest[key]
        _check_keys(spec, SPEC_SCHEMA, prefix=f"{key}.", path=path, what="the ensemble manifest")
        if spec["dtype"] != "float32":
            raise InputError(f"{key}.dtype must be 'float32', got {spec['dtype']!r}", path=path, field=f"{key}.dtype")
        if spec["shape"] != shape:
            raise InputError(f"{key}.shape is {spec['shape']}, but history/horizon/patch/channels "
                             f"(T={t}, F={f}, P={p}, C={c}) give {shape}", path=path, field=f"{key}.shape")
        if list(spec["dims"]) != list(dims):
            raise InputError(f"{key}.dims must be {list(dims)}, got {spec['dims']}", path=path, field=f"{key}.dims")
    members = manifest["members"]
    if not members:
        raise InputError("the ensemble has no member", path=path, field="members")
    seen = set()
    for i, member in enumerate(members):
        prefix = f"members[{i}]."
        _check_keys(member, MEMBER_SCHEMA, prefix=prefix, path=path, what=f"member {i} of the manifest")
        name = member["file"]
        pure = PurePosixPath(name)
        if pure.name != name or name in ("", ".", "..") or "\\" in name:
            raise InputError(f"member {i}: file must be a plain file name inside the ensemble folder, got {name!r}",
                             path=path, field=f"{prefix}file")
        if name in seen:
            raise InputError(f"member {i}: file {name!r} is listed twice", path=path, field=f"{prefix}file")
        seen.add(name)
        sha = member["sha256"]
        if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
            raise InputError(f"member {name}: sha256 must be 64 lower-case hex digits, got {sha!r}", path=path,
                             field=f"{prefix}sha256")
        model = member["hyperparameters"].get("model")
        if not isinstance(model, dict):
            raise InputError(f"member {name}: hyperparameters.model must be an object", path=path,
                             field=f"{prefix}hyperparameters.model")
        for key in SHAPE_KEYS:
            value = model.get(key)
            if value != manifest[key]:
                raise InputError(f"member {name} has {key} = {value!r} but the ensemble has {key} = "
                                 f"{manifest[key]}: all members must share T, F, P and C", path=path,
                                 field=f"{prefix}hyperparameters.model.{key}")
    return manifest


def manifest_inputs(manifest: Mapping[str, Any], *, path: str | Path = MANIFEST_NAME) -> str:
    """The input formulation of an ensemble: its ``inputs`` key, ``paper`` for ensembles written
    before the key existed (their channels are the paper's two)."""
    inputs = manifest.get("inputs", "paper")
    if inputs not in INPUTS:
        raise InputError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}; this insarcast builds "
                         "no other inputs (a newer insarcast wrote this ensemble?)", path=Path(path), field="inputs")
    return inputs


def _check_norm(norm: dict[str, Any], path: Path) -> None:
    for key in NORM_KEYS:
        name = f"normalisation.{key}"
        if key not in norm:
            raise InputError(f"the ensemble manifest is missing the key {name!r}", path=path, field=name)
        value = norm[key]
        if not _is(value, _NUMBER) or not math.isfinite(value):
            raise InputError(f"{name} must be a finite number, got {value!r}", path=path, field=name)
        if key.endswith("_std") and value <= 0:
            raise InputError(f"{name} must be > 0, got {value!r}", path=path, field=name)


# --- onnxruntime sessions ---------------------------------------------------------------------------------

_SESSIONS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _ort():
    try:
        import onnxruntime
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("the ONNX ensemble needs onnxruntime: pip install 'insarcast[udf]' "
                                     "(or 'insarcast[gpu]' for onnxruntime-gpu)") from err
    _refuse_both_builds()
    return onnxruntime


def _refuse_both_builds() -> None:
    """onnxruntime and onnxruntime-gpu install the same module over each other: which build runs is
    whichever was written last, file by file. Refuse, with the fix, when both are installed."""
    from importlib import metadata

    versions = {}
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if len(versions) == 2:
        raise MissingDependencyError(
            f"onnxruntime {versions['onnxruntime']} and onnxruntime-gpu {versions['onnxruntime-gpu']} are both "
            "installed and overwrite each other's files; keep one: pip uninstall -y onnxruntime onnxruntime-gpu "
            f"&& pip install onnxruntime-gpu=={versions['onnxruntime-gpu']} (GPU; or onnxruntime for the CPU)")


def ensemble_providers() -> list[str]:
    """``["CUDAExecutionProvider", "CPUExecutionProvider"]`` when onnxruntime offers CUDA, else CPU only."""
    available = _ort().get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def clear_session_cache() -> None:
    """Forget every cached InferenceSession of this process."""
    with _LOCK:
        _SESSIONS.clear()


def _session(data: bytes, key: tuple, *, providers: Sequence[str], threads: int | None, cache: bool,
             path: Path, member: str):
    if cache:
        with _LOCK:
            hit = _SESSIONS.get(key)
        if hit is not None:
            return hit
    ort = _ort()
    options = ort.SessionOptions()
    # No CPU memory arena: each session would keep its peak activations for good, and K sessions per
    # worker multiply that (10 members of the demo ResNet+Transformer held 12.7 GB with the arena,
    # 0.73 GB without, and ran 1.3x faster; bench/udf.py).
    options.enable_cpu_mem_arena = False
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not allow_spinning():            # a busy machine: waiting threads sleep (insarcast.cpus)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(data, sess_options=options, providers=list(providers))
    except Exception as err:  # onnxruntime raises its own exception types
        raise InputError(f"member {member}: onnxruntime cannot load it: {err}", path=path) from err
    active = list(session.get_providers())
    if "CUDAExecutionProvider" in providers and "CUDAExecutionProvider" not in active:
        warnings.warn(f"member {member}: CUDAExecutionProvider was asked for but onnxruntime could not start it "
                      f"(CUDA or cuDNN libraries missing?); running on {active}", RuntimeWarning, stacklevel=4)
    if cache:
        with _LOCK:
            session = _SESSIONS.setdefault(key, session)
    return session


def _check_io(session, manifest: dict[str, Any], *, member: str, index: int, path: Path) -> None:
    """The session's single input and output agree with the manifest's specs (name, type, static dims)."""
    for key, nodes, dims in (("input", session.get_inputs(), INPUT_DIMS), ("output", session.get_outputs(),
                                                                          OUTPUT_DIMS)):
        spec = manifest[key]
        where = f"members[{index}].{key}"
        if len(nodes) != 1:
            raise InputError(f"member {member} has {len(nodes)} {key}s {[n.name for n in nodes]}, expected one "
                             f"named {spec['name']!r}", path=path, field=where)
        node = nodes[0]
        if node.name != spec["name"]:
            raise InputError(f"member {member}: the ONNX {key} is named {node.name!r}, the manifest says "
                             f"{spec['name']!r}", path=path, field=f"{key}.name")
        if node.type != "tensor(float)":
            raise InputError(f"member {member}: the ONNX {key} {node.name!r} is {node.type}, expected "
                             "tensor(float) (float32)", path=path, field=f"{key}.dtype")
        shape = list(node.shape)
        expected = spec["shape"]
        if len(shape) != len(expected):
            raise InputError(f"member {member}: the ONNX {key} {node.name!r} has {len(shape)} dims {shape}, the "
                             f"manifest says {len(expected)} {expected}", path=path, field=f"{key}.shape")
        if isinstance(shape[0], int):
            raise InputError(f"member {member}: the ONNX {key} {node.name!r} has a fixed batch size {shape[0]}; "
                             "expected a dynamic batch dimension", path=path, field=f"{key}.shape")
        named = {"input": ("history", "channels", "patch", "patch"),
                 "output": ("horizon", "patch", "patch")}[key]
        for axis, (got, want, manifest_key) in enumerate(zip(shape[1:], expected[1:], named), start=1):
            if got != want:
                raise InputError(f"member {member}: the ONNX {key} {node.name!r} has {dims[axis]} dim {got!r}, but "
                                 f"the manifest says {manifest_key} = {want}", path=path, field=manifest_key)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the ensemble -------------------------------------------------------------------------------------------

@dataclass
class Member:
    """One member: its file, manifest entry and InferenceSession."""

    index: int
    file: str
    path: Path
    sha256: str
    entry: dict[str, Any]
    session: Any = field(repr=False)

    @property
    def trial(self) -> int | None:
        return self.entry.get("trial")

    @property
    def val_loss(self) -> float:
        return float(self.entry["val_loss"])


@dataclass
class Ensemble:
    """A checked ONNX ensemble; :meth:`predict` is the UDF's predictor."""

    path: Path
    manifest: dict[str, Any]
    members: list[Member]
    providers: list[str]
    batch_size: int | None = None        # windows per session call; None: CPU_BATCH, GPU_BATCH on CUDA

    @property
    def history(self) -> int:
        return int(self.manifest["history"])

    @property
    def horizon(self) -> int:
        return int(self.manifest["horizon"])

    @property
    def patch(self) -> int:
        return int(self.manifest["patch"])

    @property
    def channels(self) -> int:
        return int(self.manifest["channels"])

    @property
    def inputs(self) -> str:
        """The input formulation (:data:`insarcast.udf.inputs.INPUTS`)."""
        return manifest_inputs(self.manifest)

    @property
    def norm(self) -> dict[str, float]:
        return {k: float(self.manifest["normalisation"][k]) for k in NORM_KEYS}

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    def __len__(self) -> int:
        return len(self.members)

    @property
    def active_providers(self) -> list[str]:
        """The execution providers the sessions really run on (``providers`` is what was asked for)."""
        return list(self.members[0].session.get_providers()) if self.members else []

    @property
    def settings(self) -> dict[str, Any]:
        """Keyword arguments of :func:`insarcast.udf.forecast.forecast_products` given by the ensemble:
        ``forecast_products(cube, overlap=..., **ensemble.settings)``."""
        return {"predict": self.predict, "history": self.history, "horizon_steps": self.horizon,
                "patch": self.patch, "norm": self.norm, "members": len(self.members), "inputs": self.inputs}

    @property
    def session_batch(self) -> int:
        """Windows per session call: ``batch_size``, or by default CPU_BATCH (GPU_BATCH on CUDA)."""
        if self.batch_size is not None:
            return int(self.batch_size)
        return GPU_BATCH if "CUDAExecutionProvider" in self.active_providers else CPU_BATCH

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``x (N, T, C, P, P)`` float32 (normalised) -> ``(K, N, F, P, P)`` float32 (normalised)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = (self.history, self.channels, self.patch, self.patch)
        if x.ndim != 5 or x.shape[1:] != expected:
            raise InputError(f"expected inputs (N, T, C, P, P) = (N, {', '.join(map(str, expected))}), got shape "
                             f"{x.shape}", field=self.manifest["input"]["name"])
        n = x.shape[0]
        out = np.empty((len(self.members), n, self.horizon, self.patch, self.patch), np.float32)
        name_in = self.manifest["input"]["name"]
        step = max(1, int(self.session_batch))
        for k, member in enumerate(self.members):
            for start in range(0, n, step):
                chunk = x[start:start + step]
                out[k, start:start + len(chunk)] = member.session.run(None, {name_in: chunk})[0]
        return out

    __call__ = predict


def _read_manifest(path: Path) -> tuple[Path, dict[str, Any]]:
    folder, file = (path, path / MANIFEST_NAME) if path.is_dir() else (path.parent, path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise InputError(f"no ensemble manifest: {MANIFEST_NAME} not found (is this an ensemble folder written "
                         "by 'insarcast export'?)", path=file) from err
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the ensemble manifest: {err}", path=file) from err
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"the ensemble manifest is not valid JSON: {err}", path=file) from err
    return folder, manifest


def member_files(folder: Path, manifest: dict[str, Any]) -> list[tuple[int, str, Path, bytes, str]]:
    """(index, file name, path, bytes, sha256) of each member of a checked manifest: the file must lie
    inside ``folder`` (a symlink leaving it is refused before anything is read), exist, and have the
    manifest's size and sha256."""
    from insarcast.fsutil import inside

    out = []
    manifest_path = folder / MANIFEST_NAME
    for i, entry in enumerate(manifest["members"]):
        name = entry["file"]
        file = folder / name
        inside(file, folder, source=manifest_path, field=f"members[{i}].file", what=f"member {name}")
        try:
            data = file.read_bytes()
        except FileNotFoundError as err:
            raise InputError(f"member {name} is missing: the manifest lists it but the file does not exist",
                             path=file, field=f"members[{i}].file") from err
        except OSError as err:
            raise InputError(f"member {name} cannot be read: {err}", path=file, field=f"members[{i}].file") from err
        digest = _sha256(data)
        if digest != entry["sha256"] or len(data) != entry["bytes"]:
            raise InputError(f"member {name} fails its checksum: sha256 {digest} ({len(data)} bytes) differs from "
                             f"the manifest's {entry['sha256']} ({entry['bytes']} bytes); the file was changed "
                             "or corrupted", path=file, field=f"members[{i}].sha256")
        out.append((i, name, file, data, digest))
    return out


def read_checked_manifest(path: str | Path) -> tuple[Path, dict[str, Any], list[tuple[int, str, Path, bytes, str]]]:
    """The ensemble's folder, checked manifest and :func:`member_files`, without onnxruntime."""
    folder, manifest = _read_manifest(Path(path))
    check_manifest(manifest, path=folder / MANIFEST_NAME)
    return folder, manifest, member_files(folder, manifest)


def load_ensemble(path: str | Path, *, providers: Sequence[str] | None = None,
                  intra_op_threads: int | None = None, batch_size: int | None = None,
                  cache: bool = True) -> Ensemble:
    """Open and check the ensemble in folder ``path`` (or its ``ensemble.json``).

    ``providers``: onnxruntime execution providers (default :func:`ensemble_providers`);
    ``intra_op_threads``: threads per session (default onnxruntime's); ``batch_size``: windows per
    session call in :meth:`Ensemble.predict` (default :data:`CPU_BATCH`, :data:`GPU_BATCH` when the
    sessions run on CUDA); ``cache``: reuse this process's sessions.
    Raises :class:`InputError` naming the member and the field at the first mismatch.
    """
    folder, manifest = _read_manifest(Path(path))
    manifest_path = folder / MANIFEST_NAME
    check_manifest(manifest, path=manifest_path)
    if batch_size is not None and int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}", field="batch_size")
    if intra_op_threads is not None and int(intra_op_threads) < 1:
        raise InputError(f"intra_op_threads must be at least 1, got {intra_op_threads}", field="intra_op_threads")
    ort = _ort()
    explicit_cuda = providers is not None and "CUDAExecutionProvider" in providers
    providers = list(providers) if providers is not None else ensemble_providers()
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing or not providers:
        raise InputError(f"execution provider(s) {missing or providers} not available; onnxruntime offers "
                         f"{available}", field="providers")
    members = []
    for i, name, file, data, digest in member_files(folder, manifest):
        entry = manifest["members"][i]
        key = (str(file.resolve()), digest, tuple(providers), intra_op_threads)
        session = _session(data, key, providers=providers, threads=intra_op_threads, cache=cache, path=file,
                           member=name)
        if explicit_cuda and "CUDAExecutionProvider" not in session.get_providers():
            raise InputError(f"member {name}: CUDAExecutionProvider was asked for but onnxruntime could not start "
                             f"it (a visible GPU, CUDA and cuDNN libraries missing?); the session runs on "
                             f"{session.get_providers()}", path=file, field="providers")
        _check_io(session, manifest, member=name, index=i, path=file)
        members.append(Member(i, name, file, digest, entry, session))
    return Ensemble(folder, manifest, members, providers, batch_size=batch_size)
