"""EGMS Level 3 vertical CSV tiles: read them into a :class:`PointSet`, or write them.

See :mod:`insarcast.egms.columns` for the format and the column aliases, :mod:`insarcast.egms.read`
for the reading rules, and :mod:`insarcast.egms.write` for the writing conventions.
"""

from .columns import ALIASES, QUALITY_COLUMNS, REQUIRED_COLUMNS
from .read import Header, PointSet, read_egms, read_header
from .write import EgmsCsvWriter, rounded, write_egms_csv

__all__ = [
    "ALIASES",
    "QUALITY_COLUMNS",
    "REQUIRED_COLUMNS",
    "EgmsCsvWriter",
    "Header",
    "PointSet",
    "read_egms",
    "read_header",
    "rounded",
    "write_egms_csv",
]
