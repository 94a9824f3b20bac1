"""Export of trained models to ONNX with an ensemble manifest (torch in, ONNX out).

``insarcast.export.export_ensemble`` is ``insarcast export`` (see :mod:`insarcast.export.onnx`);
it is imported on first use, so that importing this package costs nothing until then.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_ARCH", "ExportError", "ExportWarning", "ParityError", "export_ensemble", "select_runs"]


def __getattr__(name: str) -> Any:
    if name in ("DEFAULT_ARCH", "ExportError", "ExportWarning", "ParityError", "export_ensemble"):
        from . import onnx

        return getattr(onnx, name)
    if name == "select_runs":
        from .select import select_runs

        return select_runs
    raise AttributeError(f"module 'insarcast.export' has no attribute {name!r}")
