"""Files appear whole or not at all: write under a temporary name beside the target, then rename.

Guarantees (README, "What happens when things go wrong"):

- A file target is replaced by one ``os.replace``: a reader sees the old file or the new one.
- A folder target is swapped with its staged copy by one ``renameat2(RENAME_EXCHANGE)`` where the
  kernel and file system offer it (Linux >= 3.15: ext4, xfs, btrfs, tmpfs ...). Elsewhere it takes
  two renames (target -> ``.old-*``, staged copy -> target); a crash between them leaves the target
  missing and the old version in ``.old-*``, which :func:`clean_stale` (run before every write of
  that target) renames back.
- Every hidden name carries the pid of the process that made it and a tag of its host,
  ``.tmp-<pid>-<host>-<hex>-<name>`` (also ``.old-`` and ``.scratch-``): a later run on the same host
  removes those of a dead pid and never touches those of a live one, nor those of another host (tune
  workers on several machines may share a folder).

:func:`inside` is the one check for a path read from a file we did not just write (catalog links,
manifest entries, member files): it must resolve inside its folder, symlinks included.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError, InsarcastWarning

HIDDEN_KINDS = ("tmp", "old", "scratch")
_HIDDEN = re.compile(r"^\.(tmp|old|scratch)-(\d+)-([0-9a-f]{8})-([0-9a-f]{8})-(.+)$")
HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
"""This host's tag in hidden names: leftovers of another host's processes are never judged here."""
_LEGACY_OLD = re.compile(r"^\.old-([0-9a-f]{8})-(.+)$")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class StaleWarning(InsarcastWarning):
    """An earlier run's leftovers were found beside a target and cleaned up or restored."""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def hidden_path(kind: str, target: str | os.PathLike) -> Path:
    """``.<kind>-<pid>-<host>-<hex>-<name>`` beside ``target``: this process's private temporary name."""
    if kind not in HIDDEN_KINDS:
        raise ValueError(f"kind must be one of {HIDDEN_KINDS}, got {kind!r}")
    target = Path(target)
    return target.with_name(f".{kind}-{os.getpid()}-{HOST_TAG}-{uuid.uuid4().hex[:8]}-{target.name}")


def _stale(match: re.Match) -> bool:
    """A hidden name of a dead process of this host."""
    return match.group(3) == HOST_TAG and not pid_alive(int(match.group(2)))


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: str | os.PathLike) -> list[str]:
    """Restore or remove what a killed run left beside ``target``; returns what was done, in words.

    Only names of :func:`hidden_path` whose pid is dead are touched: an ``.old-*`` copy is renamed
    back when the target is missing (the crash came between the two renames of a folder swap) and
    removed otherwise; ``.tmp-*`` and ``.scratch-*`` are removed. A pid-less ``.old-*`` of an older
    insarcast while the target is missing is refused (it cannot be proved stale): the message names it.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    done: list[str] = []
    stale: list[tuple[str, Path]] = []
    for entry in sorted(parent.iterdir()):
        match = _HIDDEN.match(entry.name)
        if match and match.group(5) == target.name and _stale(match):
            stale.append((match.group(1), entry))
        legacy = _LEGACY_OLD.match(entry.name)
        if legacy and legacy.group(2) == target.name and not os.path.lexists(target):
            raise InputError(f"an interrupted run left the previous version of {target.name} in {entry}; move it "
                             f"back to {target} (or delete it) and run again", path=target)
    for kind, entry in sorted(stale, key=lambda s: s[0] != "old"):        # restore first, then remove
        if kind == "old" and not os.path.lexists(target):
            os.replace(entry, target)
            done.append(f"restored {target} from {entry.name}, left by an interrupted run")
        else:
            _remove(entry)
            done.append(f"removed {entry}, left by an interrupted run")
    for line in done:
        warnings.warn(line, StaleWarning, stacklevel=2)
    return done


def clean_stale_tree(root: str | os.PathLike) -> list[str]:
    """:func:`clean_stale` for every target below ``root`` that has a hidden name of a dead process
    beside it (a killed tune leaves them in trial folders it never writes again)."""
    done: list[str] = []
    for folder, dirs, files in os.walk(root):
        targets = set()
        for name in [*dirs, *files]:
            match = _HIDDEN.match(name)
            if match and _stale(match):
                targets.add(match.group(5))
        for name in sorted(targets):
            done += clean_stale(Path(folder) / name)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return done


def inside(path: str | os.PathLike, folder: str | os.PathLike, *, source: str | os.PathLike | None = None,
           field: str | None = None, what: str = "path") -> Path:
    """``path`` (relative to ``folder``, or absolute) resolved, symlinks followed; it must lie inside
    ``folder`` (also resolved), else an :class:`InputError` naming ``source`` (the file it was read
    from) and ``field``. Nothing is read. A relative ``path`` is taken relative to ``folder``: give the
    name as the file gives it, not ``folder / name`` (joined twice where ``folder`` is relative)."""
    base = Path(folder).resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else Path(folder) / candidate).resolve()
    if resolved != base and base not in resolved.parents:
        link = " (a symlink that leaves the folder)" if _has_symlink(Path(folder), candidate) else ""
        raise InputError(f"{what} {os.fspath(path)!r} lies outside {os.fspath(folder)}{link}; refused", path=source,
                         field=field)
    return resolved


def tails(path: str | os.PathLike) -> list[Path]:
    """The trailing parts of ``path``, longest first, that hold no ``..`` (an absolute path's root left
    out): where a path recorded from another working folder may now lie below a folder of ours (a tune
    folder beside the compare folder, a cube beside the tune folder). Check what is found with :func:`inside`."""
    path = Path(path)
    parts = path.parts[1 if path.is_absolute() else 0:]
    return [Path(*parts[start:]) for start in range(len(parts)) if ".." not in parts[start:]]


def _has_symlink(folder: Path, rel: Path) -> bool:
    current = rel if rel.is_absolute() else folder / rel
    for p in (current, *current.parents):
        if p.is_symlink():
            return True
    return False


def strict_json(data: Any, *, indent: int | None = 2) -> str:
    """``data`` as JSON text (RFC 8259), a non-finite float as ``null``: Python's json would write ``NaN``,
    which is not JSON (an undefined R^2 of a run on constant ground, say), and other tools refuse the file."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=indent, allow_nan=False) + "\n"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not offered."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(b))


def _replace(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target``; a directory target, or any target of a directory, is swapped out
    (atomically where the system can), then removed (``os.replace`` cannot put a folder over a file)."""
    if (target.is_dir() and not target.is_symlink()) or (tmp.is_dir() and os.path.lexists(target)):
        if _exchange(tmp, target):                # target is new; tmp's name now holds the old version
            _remove(tmp)
            return
        old = hidden_path("old", target)
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

        It ends with the target's name, so writers that choose a format by suffix still can. Stale
        temporaries of ``target`` left by a killed run are cleaned up first (:func:`clean_stale`).
        """
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        tmp = hidden_path("tmp", target)
        self._pending.append((tmp, target))
        return tmp

    def commit(self) -> None:
        """Rename every staged path into place; if one rename fails, the rest are discarded (no temporary
        is left behind) and the error raised."""
        try:
            while self._pending:
                _replace(*self._pending[0])
                self._pending.pop(0)
        finally:
            self.discard()

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
