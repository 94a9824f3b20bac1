"""The report of a forecast run: metrics, susceptibility and uncertainty maps, residual diagnostics,
zones, calibration and decision tiers, as one self-contained HTML page with PNG figures and CSV
tables (:func:`build_report`)."""

from .build import build_report

__all__ = ["build_report"]
