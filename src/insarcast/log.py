"""One voice: every message to the user goes through ``logging.getLogger("insarcast")``.

The library only logs (:data:`LOGGER`, or ``logging.getLogger(__name__)`` below ``insarcast``);
the CLI calls :func:`configure` once per command, which gives the messages one format on stderr
(``insarcast: warning: ...``; information lines as they are) and quietens third-party loggers
(Optuna's per-trial INFO lines among them) to warnings. ``--quiet`` shows warnings and errors
only, ``--verbose`` adds debug lines and the third-party information. insarcast's own warnings
(:class:`~insarcast.errors.InsarcastWarning`, raised with :func:`warnings.warn` where a caller may
want to catch them) go out through the same logger while a command runs (:func:`capture_warnings`).
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Callable

LOGGER = logging.getLogger("insarcast")
#: Loggers of the libraries insarcast drives, quietened to WARNING unless ``--verbose``.
THIRD_PARTY = ("optuna", "distributed", "torch", "onnxscript", "onnx_ir", "matplotlib", "fsspec", "PIL",
               "rasterio", "urllib3", "asyncio")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno == logging.INFO:
            return message
        return f"insarcast: {record.levelname.lower()}: {message}"


class _Handler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (not the one at import: click's test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(_Formatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


def configure(*, quiet: bool = False, verbose: bool = False) -> None:
    """Configure the ``insarcast`` logger for a command: INFO by default, WARNING with ``quiet``,
    DEBUG with ``verbose`` (which wins); third-party loggers at WARNING unless ``verbose``."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    for handler in [h for h in LOGGER.handlers if isinstance(h, _Handler)]:
        LOGGER.removeHandler(handler)
    LOGGER.addHandler(_Handler())
    LOGGER.setLevel(level)
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def capture_warnings() -> Callable[[], None]:
    """Show insarcast's own warnings (:class:`~insarcast.errors.InsarcastWarning`) as warnings of the
    ``insarcast`` logger, ``insarcast: warning: ...``; other warnings as Python shows them. Returns the
    function that puts the previous behaviour back (the CLI calls it when the command ends)."""
    from .errors import InsarcastWarning

    shown = warnings.showwarning
    if getattr(shown, "insarcast", False):
        return lambda: None

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InsarcastWarning):
            LOGGER.warning(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    show.insarcast = True
    warnings.showwarning = show
    return lambda: setattr(warnings, "showwarning", shown)
