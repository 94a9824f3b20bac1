"""Read an exported ensemble folder (``member_XX.onnx`` and ``ensemble.json``) as plain JSON.

Neither torch nor onnx is needed: publishing only describes the members and copies them. The
manifest's own checksums are verified, and its T, F, P and member count must be the products'.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from insarcast.errors import InputError

from .files import digest

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
    """The ensemble in ``folder``: manifest checked, member files present (and their sha256 right)."""
    folder = Path(folder)
    path = folder / MANIFEST if folder.is_dir() else folder
    folder = path.parent
    if not path.is_file():
        raise InputError(f"no {MANIFEST} (expected an ensemble folder written by insarcast export)",
                         path=path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not readable JSON ({exc})", path=path) from exc
    if not isinstance(manifest, dict):
        raise InputError("expected a JSON object", path=path)
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise InputError(f"the manifest is missing {missing}", path=path, field=missing[0])
    if manifest["format"] != FORMAT:
        raise InputError(f"expected format {FORMAT!r}, got {manifest['format']!r}", path=path, field="format")
    entries = manifest["members"]
    if not isinstance(entries, list) or not entries:
        raise InputError("expected a non-empty list of members", path=path, field="members")
    members = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "file" not in entry:
            raise InputError(f"member {i} has no 'file'", path=path, field=f"members[{i}].file")
        name = str(entry["file"])
        file = (folder / name).resolve()
        if Path(name).is_absolute() or folder.resolve() not in file.parents:
            raise InputError(f"member file {name!r} is not inside the ensemble folder", path=path,
                             field=f"members[{i}].file")
        if not file.is_file():
            raise InputError(f"member file {name!r} does not exist", path=path, field=f"members[{i}].file")
        if verify and "sha256" in entry and digest(file) != str(entry["sha256"]).lower():
            raise InputError(f"member file {name!r} does not match its sha256", path=path,
                             field=f"members[{i}].sha256")
        members.append(Member(file=file, entry=entry))
    keys = [m.key for m in members]
    if len(set(keys)) != len(keys):
        raise InputError("member files must have distinct names", path=path, field="members")
    return Ensemble(folder=folder, manifest_path=path, manifest=manifest, members=tuple(members))


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
