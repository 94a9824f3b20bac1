"""Typed errors. The CLI turns an :class:`InputError` into one line on stderr and exit code 2.

The one format of every refusal: ``file, line N, <where>: message``, each part only when known;
``<where>`` is ``option --name`` for a command-line option (a field starting with ``-``),
``column 'name'`` for a column of a table (a field given with a line) and ``field 'name'`` for a
key of a JSON document or a setting.
"""

from __future__ import annotations

import os


class InsarcastError(Exception):
    """Base class of every error insarcast raises on purpose."""


class InputError(InsarcastError, ValueError):
    """Bad input: names the file, where in it (line, column or field) and what was expected.

    >>> str(InputError("expected a number in mm, got 'abc'", path="a.csv", line=7, field="20160111"))
    "a.csv, line 7, column '20160111': expected a number in mm, got 'abc'"
    >>> str(InputError("must be at least 1, got 0", field="--threads"))
    'option --threads: must be at least 1, got 0'
    >>> str(InputError("expected a list", path="e.json", field="members"))
    "e.json, field 'members': expected a list"
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
            _where(field, line),
        ) if p]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def _where(field: str | None, line: int | None) -> str | None:
    if field is None:
        return None
    if field.startswith("-"):
        return f"option {field}"
    return f"column {field!r}" if line is not None else f"field {field!r}"


class MissingDependencyError(InsarcastError, ImportError):
    """An optional dependency is needed for this feature; the message says which extra installs it."""


class InsarcastWarning(UserWarning):
    """A warning insarcast gives on purpose; the CLI prints it as one line ``insarcast: warning: ...``."""
