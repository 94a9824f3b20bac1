"""Progress bars for long loops: tqdm on stderr when enabled, the bare iterable otherwise."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

_T = TypeVar("_T")


def bar(items: Iterable[_T], *, enabled: bool, desc: str, unit: str, total: int | None = None) -> Iterable[_T]:
    """``items`` wrapped in a tqdm bar on stderr when ``enabled``, else unchanged."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
