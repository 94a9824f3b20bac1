"""Open an exported ONNX ensemble (``ensemble.json`` + ``member_XX.onnx``) and run it, without torch.

:func:`load_ensemble` reads the manifest written by ``insarcast export`` as its one typed model
(:class:`insarcast.udf.manifest.Manifest`, which checks every field and refuses with an
:class:`~insarcast.errors.InputError` naming the file and the field), checks the member files
against it (:func:`insarcast.udf.manifest.member_files`: inside the folder, present, of the recorded
size and sha256), and refuses an ONNX graph whose input or output name, element type or static
dimensions differ from the manifest, or whose batch dimension is fixed (read from the onnxruntime
session).

:meth:`Ensemble.predict` maps ``x (N, T, C, P, P)`` float32 to ``(K, N, F, P, P)`` float32 (the
normalised change since the last epoch), running every member in batches (a member whose manifest entry says ``zero_output`` is not run: its
output is 0, checked once per session on a probe window when the ensemble is loaded): it is the ``predict``
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

import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from insarcast.contract import MANIFEST_NAME
from insarcast.cpus import allow_spinning
from insarcast.errors import InputError, MissingDependencyError

from .manifest import INPUT_DIMS, OUTPUT_DIMS, SHAPE_KEYS, Manifest, MemberEntry, TensorSpec, member_files, \
    read_manifest

__all__ = ["Ensemble", "Member", "load_ensemble", "ensemble_providers", "clear_session_cache", "CPU_BATCH",
           "GPU_BATCH", "INPUT_DIMS", "OUTPUT_DIMS", "SHAPE_KEYS", "MANIFEST_NAME", "Manifest", "read_manifest"]

# Windows per session call. On a CPU small batches are faster: a window's activations (T x D x P x P
# floats, 1.5 MB for the manual ResNet+Transformer) stay in cache from one layer to the next. Measured
# with that model (bench/udf.py, 2 threads): 161 windows/s at batch 2 against 108 at batch 64. A GPU
# wants large batches.
CPU_BATCH = 2
GPU_BATCH = 64


# --- onnxruntime sessions ---------------------------------------------------------------------------------

LOGGER = logging.getLogger(__name__)
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


def preload_cuda(ort) -> None:
    """Load the CUDA runtime and cuDNN from the nvidia pip wheels (the ``cuda-libs`` extra) before a
    session asks for CUDA: onnxruntime-gpu does not find them there by itself. ``preload_dlls``
    (onnxruntime >= 1.21) returns at once on a CPU build and skips what it cannot find; a failure
    here only means the session will not get CUDA, which the callers detect from its providers."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as err:  # noqa: BLE001 - onnxruntime's own loading errors; the provider check reports
        LOGGER.debug("onnxruntime.preload_dlls failed: %s", err)


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
        _ZERO_CHECKED.clear()


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
    if "CUDAExecutionProvider" in providers:
        preload_cuda(ort)
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


def _check_io(session, manifest: Manifest, *, member: str, index: int, path: Path) -> None:
    """The session's single input and output agree with the manifest's specs (name, type, static dims)."""
    for key, nodes, dims in (("input", session.get_inputs(), INPUT_DIMS),
                             ("output", session.get_outputs(), OUTPUT_DIMS)):
        spec: TensorSpec = getattr(manifest, key)
        where = f"members[{index}].{key}"
        if len(nodes) != 1:
            raise InputError(f"member {member} has {len(nodes)} {key}s {[n.name for n in nodes]}, expected one "
                             f"named {spec.name!r}", path=path, field=where)
        _check_node(nodes[0], spec, key=key, dims=dims, member=member, path=path)


_ZERO_CHECKED: set[tuple] = set()


def _check_zero_output(session, manifest: Manifest, key: tuple, *, member: str, index: int, path: Path) -> None:
    """A member the manifest says gives 0 does so on a random probe window (once per session key): the
    manifest cannot make :meth:`Ensemble.predict` skip a member that forecasts something."""
    if key in _ZERO_CHECKED:
        return
    shape = (1, manifest.history, manifest.channels, manifest.patch, manifest.patch)
    probe = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = session.run(None, {manifest.input.name: probe})[0]
    if np.any(got != 0):
        raise InputError(f"member {member}: the manifest says its output is 0 for every input (zero_output), but "
                         f"on a probe window it gives values up to {float(np.nanmax(np.abs(got))):.3g}",
                         path=manifest.path, field=f"members[{index}].zero_output")
    with _LOCK:
        _ZERO_CHECKED.add(key)


def _check_node(node, spec: TensorSpec, *, key: str, dims: tuple[str, ...], member: str, path: Path) -> None:
    if node.name != spec.name:
        raise InputError(f"member {member}: the ONNX {key} is named {node.name!r}, the manifest says "
                         f"{spec.name!r}", path=path, field=f"{key}.name")
    if node.type != "tensor(float)":
        raise InputError(f"member {member}: the ONNX {key} {node.name!r} is {node.type}, expected "
                         "tensor(float) (float32)", path=path, field=f"{key}.dtype")
    shape, expected = list(node.shape), list(spec.shape)
    if len(shape) != len(expected):
        raise InputError(f"member {member}: the ONNX {key} {node.name!r} has {len(shape)} dims {shape}, the "
                         f"manifest says {len(expected)} {expected}", path=path, field=f"{key}.shape")
    if isinstance(shape[0], int):
        raise InputError(f"member {member}: the ONNX {key} {node.name!r} has a fixed batch size {shape[0]}; "
                         "expected a dynamic batch dimension", path=path, field=f"{key}.shape")
    named = {"input": ("history", "channels", "patch", "patch"), "output": ("horizon", "patch", "patch")}[key]
    for axis, (got, want, manifest_key) in enumerate(zip(shape[1:], expected[1:], named), start=1):
        if got != want:
            raise InputError(f"member {member}: the ONNX {key} {node.name!r} has {dims[axis]} dim {got!r}, but "
                             f"the manifest says {manifest_key} = {want}", path=path, field=manifest_key)


# --- the ensemble -------------------------------------------------------------------------------------------

@dataclass
class Member:
    """One member: its file, manifest entry and InferenceSession."""

    index: int
    file: str
    path: Path
    sha256: str
    entry: MemberEntry
    session: Any = field(repr=False)

    @property
    def trial(self) -> int | None:
        return self.entry.trial

    @property
    def val_loss(self) -> float:
        return self.entry.val_loss

    @property
    def zero_output(self) -> bool:
        """Its output is exactly 0 for every input (the manifest's ``zero_output``, checked at load):
        a residual member that forecasts its reference unchanged, and is not run."""
        return self.entry.zero_output


@dataclass
class Ensemble:
    """A checked ONNX ensemble; :meth:`predict` is the UDF's predictor."""

    path: Path
    manifest: Manifest
    members: list[Member]
    providers: list[str]
    batch_size: int | None = None        # windows per session call; None: CPU_BATCH, GPU_BATCH on CUDA

    @property
    def history(self) -> int:
        return self.manifest.history

    @property
    def horizon(self) -> int:
        return self.manifest.horizon

    @property
    def patch(self) -> int:
        return self.manifest.patch

    @property
    def channels(self) -> int:
        return self.manifest.channels

    @property
    def inputs(self) -> str:
        """The input formulation (:data:`insarcast.udf.inputs.INPUTS`)."""
        return self.manifest.inputs

    @property
    def norm(self) -> dict[str, float]:
        return dict(self.manifest.normalisation)

    @property
    def name(self) -> str:
        return self.manifest.name

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
        name_in = self.manifest.input.name
        if x.ndim != 5 or x.shape[1:] != expected:
            raise InputError(f"expected inputs (N, T, C, P, P) = (N, {', '.join(map(str, expected))}), got shape "
                             f"{x.shape}", field=name_in)
        n = x.shape[0]
        out = np.empty((len(self.members), n, self.horizon, self.patch, self.patch), np.float32)
        step = max(1, int(self.session_batch))
        for k, member in enumerate(self.members):
            if member.zero_output:
                out[k] = 0.0
                continue
            for start in range(0, n, step):
                chunk = x[start:start + step]
                out[k, start:start + len(chunk)] = member.session.run(None, {name_in: chunk})[0]
        return out

    __call__ = predict


def _check_options(providers: Sequence[str] | None, intra_op_threads: int | None,
                   batch_size: int | None) -> list[str]:
    """The execution providers to ask for; the threads and batch size refused when below 1."""
    if batch_size is not None and int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}", field="batch_size")
    if intra_op_threads is not None and int(intra_op_threads) < 1:
        raise InputError(f"intra_op_threads must be at least 1, got {intra_op_threads}", field="intra_op_threads")
    providers = list(providers) if providers is not None else ensemble_providers()
    available = _ort().get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing or not providers:
        raise InputError(f"execution provider(s) {missing or providers} not available; onnxruntime offers "
                         f"{available}", field="providers")
    return providers


def load_ensemble(path: str | os.PathLike | Manifest, *, providers: Sequence[str] | None = None,
                  intra_op_threads: int | None = None, batch_size: int | None = None,
                  cache: bool = True) -> Ensemble:
    """Open and check the ensemble in folder ``path`` (or its ``ensemble.json``, or its manifest already
    read with :func:`insarcast.udf.manifest.read_manifest`).

    ``providers``: onnxruntime execution providers (default :func:`ensemble_providers`);
    ``intra_op_threads``: threads per session (default onnxruntime's); ``batch_size``: windows per
    session call in :meth:`Ensemble.predict` (default :data:`CPU_BATCH`, :data:`GPU_BATCH` when the
    sessions run on CUDA); ``cache``: reuse this process's sessions.
    Raises :class:`InputError` naming the member and the field at the first mismatch.
    """
    manifest = path if isinstance(path, Manifest) else read_manifest(path)
    manifest.check_correction()
    manifest.check_reference_rule()
    explicit_cuda = providers is not None and "CUDAExecutionProvider" in providers   # asked for, not defaulted
    providers = _check_options(providers, intra_op_threads, batch_size)
    members = []
    for f in member_files(manifest):
        name, i = f.entry.file, f.entry.index
        key = (str(f.path.resolve()), f.sha256, tuple(providers), intra_op_threads)
        session = _session(f.data, key, providers=providers, threads=intra_op_threads, cache=cache, path=f.path,
                           member=name)
        if explicit_cuda and "CUDAExecutionProvider" not in session.get_providers():
            raise InputError(f"member {name}: CUDAExecutionProvider was asked for but onnxruntime could not start "
                             f"it (a visible GPU, CUDA and cuDNN libraries missing?); the session runs on "
                             f"{session.get_providers()}", path=f.path, field="providers")
        _check_io(session, manifest, member=name, index=i, path=f.path)
        if f.entry.zero_output:
            _check_zero_output(session, manifest, key, member=name, index=i, path=f.path)
        members.append(Member(i, name, f.path, f.sha256, f.entry, session))
    return Ensemble(manifest.folder, manifest, members, providers, batch_size=batch_size)
