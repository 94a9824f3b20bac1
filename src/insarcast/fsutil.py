"""Files appear whole or not at all: write under a temporary name beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _replace(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target``; a directory target is swapped out, then removed."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".old-{uuid.uuid4().hex[:8]}-{target.name}")
        os.replace(target, old)
        os.replace(tmp, target)
        _remove(old)
    else:
        os.replace(tmp, target)


class Staging:
    """Temporary paths for a set of outputs, renamed into place together by :meth:`commit`."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def path(self, target: str | os.PathLike) -> Path:
        """A hidden temporary path in the target's folder; becomes ``target`` on commit.

        It ends with the target's name, so writers that choose a format by suffix still can.
        """
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{target.name}")
        self._pending.append((tmp, target))
        return tmp

    def commit(self) -> None:
        for tmp, target in self._pending:
            _replace(tmp, target)
        self._pending.clear()

    def discard(self) -> None:
        for tmp, _ in self._pending:
            _remove(tmp)
        self._pending.clear()


@contextlib.contextmanager
def staged() -> Iterator[Staging]:
    """Stage several outputs; all are renamed into place if the block succeeds, none otherwise."""
    stage = Staging()
    try:
        yield stage
    except BaseException:
        stage.discard()
        raise
    stage.commit()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path that becomes ``target`` (file or directory) if the block succeeds."""
    with staged() as stage:
        yield stage.path(target)
