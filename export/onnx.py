"""Export the best trained models of one architecture to ONNX, with a checked ensemble manifest.

:func:`export_ensemble` is ``insarcast export``: it selects the ``top`` best finished trials of an
architecture under a tune folder (:mod:`insarcast.export.select`), exports each with
``torch.onnx.export(..., dynamo=True)`` (the TorchScript exporter is the fallback when the dynamo
exporter fails or misses parity; the manifest records which one made each member), checks that ONNX
Runtime reproduces torch on real validation windows within ``tolerance`` (normalised units), and
writes ``member_XX.onnx`` and ``ensemble.json`` (:mod:`insarcast.export.manifest`) into ``out``,
all at once or not at all. The written folder is then opened with the UDF's own loader
(:func:`insarcast.udf.ensemble.load_ensemble`) before it is moved into place, so an ensemble this
function returns is one the UDF accepts.

The ONNX contract (docs/design.md): input ``history`` float32 (batch, T, C, P, P), output ``forecast``
float32 (batch, F, P, P), the batch dimension dynamic (named ``batch``), the other dimensions static.
Opset 20 by default: the first with a native ``Gelu``, which onnxruntime >= 1.18 runs as one
kernel; at opset 18 the exporter spells GELU out as five elementwise operators over every feature
map, and the manual ResNet+Transformer ran 1.3 to 1.5 x slower (ONNX Runtime, 1 and 2 threads).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from insarcast.contract import DEFAULT_ARCH  # noqa: F401  (the paper's choice; re-exported)
from insarcast.errors import InputError, MissingDependencyError
from insarcast.progress import bar
from insarcast.training.models import ARCHS, Forecaster, ModelConfig, load_model
from insarcast.training.params import TrainConfig
from insarcast.training.windows import Normalisation
from insarcast.udf.inputs import INPUTS, NORM_KEYS

from .manifest import INPUT_NAME, OUTPUT_NAME, build_manifest, member_entry, write_manifest
from .select import ExportWarning, Run, _same, recorded_cube, select_runs

DEFAULT_OPSET = 20
DEFAULT_TOLERANCE = 1e-4
PARITY_WINDOWS = 16
EXPORTERS = ("auto", "dynamo", "torchscript")

__all__ = ["DEFAULT_ARCH", "DEFAULT_OPSET", "ExportError", "ExportWarning", "ParityError", "export_ensemble",
           "onnx_bytes", "parity_max_abs", "parity_inputs"]


class ExportError(InputError):
    """A selected model cannot be exported (an :class:`InputError`, so the CLI reports it in one line)."""


class ParityError(ExportError):
    """ONNX Runtime does not reproduce torch within the tolerance: the model cannot be exported faithfully."""


def _require_stack() -> None:
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(f"export needs {', '.join(missing)}: pip install 'insarcast[train,udf]' "
                                     "(or 'insarcast[train,gpu]' for onnxruntime-gpu)")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' warnings and log lines (they are about torch internals, not the model)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# --- one model -> ONNX bytes --------------------------------------------------------------------------------

def _dynamo_proto(model: Forecaster, example: torch.Tensor, opset: int):
    batch = torch.export.Dim("batch")
    with _quiet():
        program = torch.onnx.export(model, (example,), None, dynamo=True, input_names=[INPUT_NAME],
                                     output_names=[OUTPUT_NAME], dynamic_shapes={INPUT_NAME: {0: batch}},
                                     opset_version=opset, optimize=True, verbose=False, report=False)
    return program.model_proto


def _torchscript_proto(model: Forecaster, example: torch.Tensor, opset: int):
    import onnx

    buffer = io.BytesIO()
    with _quiet():
        torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset, do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def _finalise(proto, cfg: ModelConfig, metadata: dict[str, Any]) -> bytes:
    """Name the batch dim ``batch`` and fix the others to T, C, P, P / F, P, P; add metadata; check; serialise."""
    import onnx

    graph = proto.graph
    if [i.name for i in graph.input] != [INPUT_NAME] or [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise RuntimeError(f"the exporter produced inputs {[i.name for i in graph.input]} and outputs "
                           f"{[o.name for o in graph.output]}, expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]")
    for value, dims in ((graph.input[0], (cfg.history, cfg.channels, cfg.patch, cfg.patch)),
                        (graph.output[0], (cfg.horizon, cfg.patch, cfg.patch))):
        shape = value.type.tensor_type.shape
        while len(shape.dim) < len(dims) + 1:
            shape.dim.add()
        if len(shape.dim) != len(dims) + 1:
            raise RuntimeError(f"the exporter gave {value.name!r} rank {len(shape.dim)}, expected {len(dims) + 1}")
        shape.dim[0].Clear()
        shape.dim[0].dim_param = "batch"
        for d, size in zip(shape.dim[1:], dims):
            d.Clear()
            d.dim_value = int(size)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=f"insarcast.{key}", value=str(value))
    proto.doc_string = (f"insarcast {cfg.arch}: {INPUT_NAME} (batch, T={cfg.history}, C={cfg.channels}, "
                        f"P={cfg.patch}, P) -> {OUTPUT_NAME} (batch, F={cfg.horizon}, P, P), normalised")
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    if len(data) >= 2**31:
        raise RuntimeError("the model is larger than 2 GB, the limit of a self-contained ONNX file")
    return data


def onnx_bytes(model: Forecaster, example: np.ndarray | torch.Tensor, *, opset: int = DEFAULT_OPSET,
               exporter: str = "dynamo", metadata: dict[str, Any] | None = None) -> bytes:
    """A self-contained ONNX file of ``model`` (eval mode, CPU) with a dynamic batch dimension.

    ``example`` is an input batch (2 or more windows, so that the batch size is not specialised).
    ``exporter`` is "dynamo" or "torchscript".
    """
    if exporter not in ("dynamo", "torchscript"):
        raise InputError(f"expected 'dynamo' or 'torchscript', got {exporter!r}", field="exporter")
    model = model.to("cpu").eval()
    example = torch.as_tensor(np.asarray(example, np.float32))
    if example.shape[0] < 2:
        example = torch.cat([example, example])
    # Not under no_grad: with grad enabled (and parameters requiring it) the Transformer layers keep
    # their plain path instead of the fused inference kernel, which the TorchScript exporter cannot map.
    proto = (_dynamo_proto if exporter == "dynamo" else _torchscript_proto)(model, example, opset)
    return _finalise(proto, model.cfg, metadata or {})


def _ort_session(data: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def parity_max_abs(model: Forecaster, data: bytes, x: np.ndarray) -> float:
    """Largest |ONNX Runtime - torch| over the windows ``x`` run as one batch and the first one alone."""
    session = _ort_session(data)
    x = np.ascontiguousarray(x, np.float32)
    worst = 0.0
    with torch.no_grad():
        for batch in (x, x[:1]):
            expected = model(torch.from_numpy(batch)).numpy()
            got = session.run(None, {INPUT_NAME: batch})[0]
            if got.shape != expected.shape:
                return float("inf")
            diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
            if not np.isfinite(diff).all():
                return float("nan")
            worst = max(worst, float(diff.max()))
    return worst


# --- parity windows ----------------------------------------------------------------------------------------

def parity_inputs(cube: str | Path, cfg: ModelConfig, train: dict[str, Any], norm: dict[str, float], *,
                  n: int = PARITY_WINDOWS) -> np.ndarray:
    """``n`` evenly spaced validation windows (N, T, C, P, P) of ``cube`` for the model's T, F, P.

    Patches follow the run's stride and valid share; the inputs are normalised with the run's
    statistics, exactly as in training.
    """
    from insarcast.training.data import Windows

    defaults = TrainConfig()
    windows = Windows.from_cube(cube, history=cfg.history, horizon=cfg.horizon, patch=cfg.patch,
                                stride=int(train.get("stride", defaults.stride)),
                                min_valid=float(train.get("min_valid", defaults.min_valid)), inputs=cfg.inputs)
    windows.norm = Normalisation(**{k: float(norm[k]) for k in NORM_KEYS})
    rows = windows.samples("val")
    if len(rows) > n:
        rows = rows[np.linspace(0, len(rows) - 1, n).round().astype(int)]
    return np.stack([windows.sample(a, (r, c))[0] for a, r, c in rows])


def _parity_cube(parity_windows: str | Path | None, runs: list[Run], tune_dir: Path) -> Path:
    if parity_windows is not None:
        cube = Path(parity_windows)
        if not cube.exists():
            raise InputError("no such cube for the parity check", path=cube, field="parity_windows")
        return cube
    return recorded_cube(runs[0], tune_dir)


# --- the ensemble ------------------------------------------------------------------------------------------

def _load(run: Run) -> tuple[Forecaster, dict[str, Any]]:
    model, extra = load_model(run.model_pt)
    recorded = run.metrics["model"]
    current = model.cfg.to_dict()
    if any(k not in current or not _same(current[k], v) for k, v in recorded.items()):
        raise InputError(f"{run.describe()}: the model in model.pt ({model.cfg.to_dict()}) differs from the one "
                         "metrics.json records", path=run.model_pt, field="model")
    norm = extra.get("normalisation")
    if norm is not None and not _same(norm, run.metrics["normalisation"]):
        raise InputError(f"{run.describe()}: the normalisation in model.pt differs from metrics.json",
                         path=run.model_pt, field="normalisation")
    if model.cfg.channels != len(INPUTS[model.cfg.inputs]):
        raise InputError(f"{run.describe()}: the model takes {model.cfg.channels} channels, its {model.cfg.inputs!r} "
                         f"inputs have {len(INPUTS[model.cfg.inputs])}", path=run.model_pt, field="model.channels")
    return model, extra


def _export_checked(model: Forecaster, x: np.ndarray, *, label: str, opset: int, exporter: str,
                    tolerance: float, metadata: dict[str, Any]) -> tuple[bytes, str, float]:
    """Export with ``exporter`` ("auto": dynamo, then TorchScript) until parity holds; else ParityError."""
    order = ("dynamo", "torchscript") if exporter == "auto" else (exporter,)
    failures = []
    for i, name in enumerate(order):
        try:
            data = onnx_bytes(model, x[:2], opset=opset, exporter=name, metadata=metadata)
        except Exception as err:  # the exporters raise many types; the fallback decides
            failures.append(f"the {name} exporter failed: {type(err).__name__}: {err}".splitlines()[0])
            if i + 1 == len(order):
                raise ExportError(f"{label}: {'; '.join(failures)}", field="exporter") from err
            warnings.warn(f"{label}: {failures[-1]}; trying the {order[i + 1]} exporter", ExportWarning,
                          stacklevel=3)
            continue
        diff = parity_max_abs(model, data, x)
        if diff <= tolerance:
            return data, name, diff
        failures.append(f"with the {name} exporter ONNX Runtime differs from torch by up to {diff:.3g}")
        if i + 1 < len(order):
            warnings.warn(f"{label}: {failures[-1]}; trying the {order[i + 1]} exporter", ExportWarning,
                          stacklevel=3)
    raise ParityError(f"{label} fails the parity check on {len(x)} validation windows: {'; '.join(failures)} "
                      f"(normalised units), more than the tolerance {tolerance:g}", field="parity")


def export_ensemble(tune_dir: str | Path, out: str | Path, *, arch: str = DEFAULT_ARCH, top: int = 10,
                    strict: bool = False, include_manual: bool = False,
                    parity_windows: str | Path | None = None, tolerance: float = DEFAULT_TOLERANCE,
                    opset: int = DEFAULT_OPSET, exporter: str = "auto", overwrite: bool = False,
                    progress: bool = False) -> Path:
    """Export the ``top`` best runs of ``arch`` under ``tune_dir`` as an ONNX ensemble in ``out``.

    Selection (see :mod:`insarcast.export.select`): TPE trials only unless ``include_manual``,
    ordered by validation loss, then seed and trial; fewer than ``top`` warns
    (:class:`ExportWarning`) or, with ``strict``, raises. ``parity_windows``: the cube whose
    validation windows check parity (default: the cube recorded in the best run's metrics.json).
    ``tolerance``: the largest |ONNX Runtime - torch| allowed, normalised units. ``exporter``:
    "auto" (dynamo, TorchScript as fallback), "dynamo" or "torchscript". ``out`` must not exist or be
    empty unless ``overwrite``. Returns ``out``, holding ``member_00.onnx`` … and ``ensemble.json``.
    """
    tune_dir, out = Path(tune_dir), Path(out)
    if arch not in ARCHS:
        raise InputError(f"expected one of {', '.join(ARCHS)}, got {arch!r}", field="arch")
    if exporter not in EXPORTERS:
        raise InputError(f"expected one of {', '.join(EXPORTERS)}, got {exporter!r}", field="exporter")
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise InputError(f"expected a tolerance >= 0, got {tolerance!r}", field="tolerance")
    if not isinstance(opset, int) or opset < 7:
        raise InputError(f"expected an ONNX opset number, got {opset!r}", field="opset")
    if out.exists() and not out.is_dir():
        raise InputError("the output exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError("the output folder exists and is not empty; pass overwrite (--overwrite) to replace it",
                         path=out)
    _require_stack()
    runs = select_runs(tune_dir, arch=arch, top=top, strict=strict, include_manual=include_manual)
    cube = _parity_cube(parity_windows, runs, tune_dir)

    from insarcast.fsutil import staged
    from insarcast.udf.ensemble import load_ensemble

    inputs: dict[tuple, np.ndarray] = {}
    members: list[dict[str, Any]] = []
    with staged() as stage:
        folder = stage.path(out)
        folder.mkdir()
        for i, run in bar(list(enumerate(runs)), enabled=progress, desc="export", unit="model", total=len(runs)):
            file = f"member_{i:02d}.onnx"
            label = f"member {file} ({run.describe()})"
            model, _ = _load(run)
            cfg = model.cfg
            key = (cfg.history, cfg.horizon, cfg.patch, run.metrics["train"].get("stride"),
                   run.metrics["train"].get("min_valid"))
            if key not in inputs:
                inputs[key] = parity_inputs(cube, cfg, run.metrics["train"], run.metrics["normalisation"])
            metadata = {"arch": cfg.arch, "member": i, "trial": run.trial, "run_seed": run.seed,
                        "source": run.source}
            data, used, diff = _export_checked(model, inputs[key], label=label, opset=opset, exporter=exporter,
                                               tolerance=float(tolerance), metadata=metadata)
            (folder / file).write_bytes(data)
            # a zeroed readout gives exactly 0 in torch, so ONNX Runtime's parity difference is its own output
            members.append(member_entry(run, model, file=file, data=data, exporter=used, parity_max_abs=diff,
                                        zero_output=model.zero_output and diff == 0.0))
        manifest = build_manifest(runs[0], members, arch=arch, data=(folder / members[0]["file"]).read_bytes(),
                                  folder=folder)
        write_manifest(manifest, folder)
        load_ensemble(folder, providers=["CPUExecutionProvider"], cache=False)    # the UDF accepts it
    return out
