"""The exported ensemble folder (``member_XX.onnx`` and ``ensemble.json``) as publishing needs it.

Neither torch nor onnx is needed: publishing only describes the members and copies them. The
manifest is the UDF's typed model (:class:`insarcast.udf.manifest.Manifest`), checked once, and its
T, F, P and member count must be the products'.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from insarcast.errors import InputError
from insarcast.udf.manifest import Manifest, MemberEntry, member_files, read_manifest


@dataclass(frozen=True)
class Member:
    file: Path
    entry: MemberEntry

    @property
    def key(self) -> str:
        """Asset key: the file name without its suffix (``member_00``)."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.file.stem)


@dataclass(frozen=True)
class Ensemble:
    folder: Path
    manifest_path: Path
    manifest: Manifest
    members: tuple[Member, ...]

    @property
    def name(self) -> str:
        return self.manifest.name

    def get(self, key: str, default: Any = None) -> Any:
        return self.manifest.get(key, default)


def read_ensemble(folder: str | os.PathLike, *, verify: bool = True) -> Ensemble:
    """The ensemble in ``folder``, checked exactly as ``insarcast forecast`` checks it.

    The manifest is read and checked once (:func:`insarcast.udf.manifest.read_manifest`); each member
    must lie inside the folder (no symlink out of it), be present, with its size and sha256; and, where
    onnxruntime is installed, be loadable by it with the manifest's inputs and outputs
    (:func:`insarcast.udf.ensemble.load_ensemble`, given the checked manifest). ``verify`` is kept for
    compatibility: the checks always run.
    """
    manifest = read_manifest(folder)
    files = member_files(manifest)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:                                   # pragma: no cover - depends on the environment
        pass
    else:
        from insarcast.udf.ensemble import load_ensemble

        load_ensemble(manifest, providers=["CPUExecutionProvider"])
    members = tuple(Member(file=f.path.resolve(), entry=f.entry) for f in files)
    keys = [m.key for m in members]
    if len(set(keys)) != len(keys):
        raise InputError("member files must have distinct names", path=manifest.path, field="members")
    return Ensemble(folder=manifest.folder, manifest_path=manifest.path, manifest=manifest, members=members)


def check_matches(ensemble: Ensemble, attrs: dict, *, products_path: str | None = None) -> None:
    """The products must come from this ensemble: same T, F, P and member count."""
    pairs = (("history", "history_epochs"), ("horizon", "horizon_steps"), ("patch", "patch"))
    for key, attr in pairs:
        own = getattr(ensemble.manifest, key)
        if attr in attrs and own != int(attrs[attr]):
            raise InputError(f"the products were made with {attr} = {attrs[attr]}, the ensemble "
                             f"{ensemble.name!r} has {key} = {own}", path=products_path, field=attr)
    if "members" in attrs and int(attrs["members"]) != len(ensemble.members):
        raise InputError(f"the products were made with {attrs['members']} members, the ensemble "
                         f"{ensemble.name!r} has {len(ensemble.members)}", path=products_path, field="members")
