"""The ensemble manifest, ``ensemble.json``: what the UDF checks and the STAC MLM model item needs.

One JSON object (format ``insarcast-ensemble``, version 1)::

    format, format_version, name ("insarcast-<arch>-top<K>"), architecture, framework ("onnx"),
    framework_version (onnx), opset, created (ISO 8601 UTC), versions {insarcast, torch, onnx,
    onnxruntime, onnxscript}, history T, horizon F, patch P, channels C, channel_names,
    normalisation {input_mean, input_std, target_mean, target_std}, grid {spacing, crs}, epoch_days,
    reference_correction {file, sha256} (inputs residual-corrected only: the correction the members learnt on),
    input {name, dtype, shape [-1, T, C, P, P], dims}, output {name, dtype, shape [-1, F, P, P], dims,
    units}, members [{file, sha256, bytes, arch, trial, run_seed, strategy, val_loss, test?,
    hyperparameters {model, train}, parameters, exporter, parity_max_abs, zero_output, source}]

``-1`` in a shape is the dynamic batch dimension. ``zero_output`` (optional, false when absent) says that
the member gives exactly 0 for every input: its readout's last layer is all zeros
(:attr:`insarcast.training.models.Forecaster.zero_output`) and its ONNX output on the parity windows
is exactly 0. Such a residual member forecasts its reference unchanged, and the UDF does not run it
(:meth:`insarcast.udf.ensemble.Ensemble.predict`). :func:`build_manifest` returns the one typed model
every reader uses (:class:`insarcast.udf.manifest.Manifest`), checked by the same code as the UDF's
loader before anything is written; :func:`insarcast.udf.manifest.write_manifest` writes it whole.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from insarcast.contract import MANIFEST_FORMAT as FORMAT, MANIFEST_NAME, MANIFEST_VERSION as FORMAT_VERSION, \
    MODEL_INPUT as INPUT_NAME, MODEL_INPUT_DIMS as INPUT_DIMS, MODEL_OUTPUT as OUTPUT_NAME, \
    MODEL_OUTPUT_DIMS as OUTPUT_DIMS
from insarcast.udf.inputs import INPUTS, NORM_KEYS, TARGETS
from insarcast.udf.manifest import Manifest, write_manifest

__all__ = ["build_manifest", "member_entry", "versions", "write_manifest", "INPUT_NAME", "OUTPUT_NAME"]

OUTPUT_UNITS = "normalised: mm = value * target_std + target_mean"


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return None


def versions() -> dict[str, str | None]:
    from insarcast import __version__

    return {"insarcast": __version__, "torch": _version("torch"), "onnx": _version("onnx"),
            "onnxruntime": _version("onnxruntime"), "onnxscript": _version("onnxscript")}


def member_entry(run, model, *, file: str, data: bytes, exporter: str, parity_max_abs: float,
                 zero_output: bool = False) -> dict[str, Any]:
    """The manifest entry of one exported member (``run``: :class:`insarcast.export.select.Run`);
    ``zero_output``: its ONNX output was checked to be exactly 0 (see the module docstring)."""
    entry: dict[str, Any] = {
        "file": file, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "arch": model.cfg.arch,
        "trial": run.trial, "run_seed": run.seed, "strategy": run.strategy, "val_loss": run.val_loss,
    }
    test = run.metrics.get("test")
    if isinstance(test, dict) and all(k in test for k in ("rmse", "mae", "r2")):
        entry["test"] = {k: float(test[k]) for k in ("rmse", "mae", "r2")}
    entry.update({
        "hyperparameters": {"model": model.cfg.to_dict(), "train": dict(run.metrics["train"])},
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "exporter": exporter, "parity_max_abs": float(parity_max_abs), "zero_output": bool(zero_output),
        "source": run.source,
    })
    return entry


def _opset(data: bytes) -> int:
    import onnx

    proto = onnx.load_from_string(data)
    return int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))


def build_manifest(best, members: list[dict[str, Any]], *, arch: str, data: bytes,
                   folder: str | Path = ".") -> Manifest:
    """The manifest of ``members`` (entries of :func:`member_entry`), checked, for the ensemble folder
    ``folder``; ensemble-wide values from the best run (the selection checked that every member shares
    them); ``data``: one member's ONNX bytes (for the opset)."""
    import onnx

    model = best.metrics["model"]
    t, f, p, c = (int(model[k]) for k in ("history", "horizon", "patch", "channels"))
    inputs = model.get("inputs", "paper")
    norm = best.metrics["normalisation"]
    grid = best.metrics["grid"]
    return Manifest.from_dict({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": f"insarcast-{arch}-top{len(members)}",
        "architecture": arch,
        "framework": "onnx",
        "framework_version": onnx.__version__,
        "opset": _opset(data),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions(),
        "history": t,
        "horizon": f,
        "patch": p,
        "channels": c,
        "inputs": inputs,
        "target": TARGETS[inputs],
        "channel_names": list(INPUTS[inputs]),
        "normalisation": {k: float(norm[k]) for k in NORM_KEYS},
        "grid": {"spacing": grid.get("spacing"), "crs": grid.get("crs")},
        "epoch_days": float(best.metrics["epoch_days"]),
        **({"reference_correction": best.metrics["reference_correction"]}
           if inputs == "residual-corrected" and best.metrics.get("reference_correction") else {}),
        **({"reference_rule": best.metrics["reference_rule"]}
           if inputs != "paper" and best.metrics.get("reference_rule") else {}),
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [-1, t, c, p, p],
                  "dims": list(INPUT_DIMS)},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [-1, f, p, p],
                   "dims": list(OUTPUT_DIMS), "units": OUTPUT_UNITS},
        "members": members,
    }, path=Path(folder) / MANIFEST_NAME)
