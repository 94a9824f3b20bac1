"""Read an exported ensemble folder (``member_XX.onnx`` and ``ensemble.json``) as plain JSON.

Neither torch nor onnx is needed: publishing only describes the members and copies them. The
manifest's own checksums are verified, and its T, F, P and member count must be the products'.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from insarcast.errors import InputError


MANIFEST = "ensemble.json"
FORMAT = "insarcast-ensemble"
REQUIRED = ("format", "name", "architecture", "framework", "history", "horizon", "patch", "channels",
            "input", "output", "members")


@dataclass(frozen=True)
class Member:
    file: Path
    entry: dict

    @property
    def key(self) -> str:
        """Asset key: the file name without its suffix (``member_00``)."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.file.stem)


@dataclass(frozen=True)
class Ensemble:
    folder: Path
    manifest_path: Path
    manifest: dict
    members: tuple[Member, ...]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    def get(self, key: str, default=None):
        return self.manifest.get(key, default)


def read_ensemble(folder: str | os.PathLike, *, verify: bool = True) -> Ensemble:
    """The ensemble in ``folder``, checked exactly as ``insarcast forecast`` checks it.

    The one check shared by every reader (:mod:`insarcast.udf.ensemble`): the manifest's schema, each
    member inside the folder (no symlink out of it), present, with its size and sha256; and, where
    onnxruntime is installed, each member loadable by it with the manifest's inputs and outputs.
    ``verify`` is kept for compatibility: the checks always run.
    """
    from insarcast.udf.ensemble import load_ensemble, read_checked_manifest

    folder, manifest, files = read_checked_manifest(folder)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:                                   # pragma: no cover - depends on the environment
        pass
    else:
        load_ensemble(folder, providers=["CPUExecutionProvider"])
    members = tuple(Member(file=path.resolve(), entry=manifest["members"][i]) for i, _, path, _, _ in files)
    keys = [m.key for m in members]
    if len(set(keys)) != len(keys):
        raise InputError("member files must have distinct names", path=folder / MANIFEST, field="members")
    return Ensemble(folder=folder, manifest_path=folder / MANIFEST, manifest=manifest, members=members)


def check_matches(ensemble: Ensemble, attrs: dict, *, products_path: str | None = None) -> None:
    """The products must come from this ensemble: same T, F, P and member count."""
    pairs = (("history", "history_epochs"), ("horizon", "horizon_steps"), ("patch", "patch"))
    for key, attr in pairs:
        if attr in attrs and int(ensemble.manifest[key]) != int(attrs[attr]):
            raise InputError(f"the products were made with {attr} = {attrs[attr]}, the ensemble "
                             f"{ensemble.name!r} has {key} = {ensemble.manifest[key]}", path=products_path,
                             field=attr)
    if "members" in attrs and int(attrs["members"]) != len(ensemble.members):
        raise InputError(f"the products were made with {attrs['members']} members, the ensemble "
                         f"{ensemble.name!r} has {len(ensemble.members)}", path=products_path, field="members")
