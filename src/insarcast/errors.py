"""Typed errors. The CLI turns an :class:`InputError` into one line on stderr and exit code 2."""

from __future__ import annotations

import os


class InsarcastError(Exception):
    """Base class of every error insarcast raises on purpose."""


class InputError(InsarcastError, ValueError):
    """Bad input: names the file, where in it (line, column or field) and what was expected.

    >>> str(InputError("expected a number in mm, got 'abc'", path="a.csv", line=7, field="20160111"))
    "a.csv, line 7, column '20160111': expected a number in mm, got 'abc'"
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.field = field
        where = [p for p in (
            self.path,
            None if line is None else f"line {line}",
            None if field is None else f"column {field!r}",
        ) if p]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class MissingDependencyError(InsarcastError, ImportError):
    """An optional dependency is needed for this feature; the message says which extra installs it."""
