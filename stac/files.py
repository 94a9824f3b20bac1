"""File checksums as the STAC file extension writes them: multihash, hex encoded.

``file:checksum`` is a multihash: the hash function's code and the digest length, each one byte
here, then the digest, all in lowercase hex. sha2-256 (code 0x12, 32 bytes) is what this package
writes, so a checksum reads ``1220`` followed by the 64 hex digits of the sha256.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# multihash code -> (hashlib name, digest length in bytes)
MULTIHASH = {0x11: ("sha1", 20), 0x12: ("sha256", 32), 0x13: ("sha512", 64)}
SHA256_PREFIX = "1220"
_CHUNK = 1 << 20


def digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def multihash(path: str | os.PathLike) -> str:
    """The sha2-256 multihash of a file, hex: ``"1220" + sha256``."""
    return SHA256_PREFIX + digest(path, "sha256")


def file_fields(path: str | os.PathLike) -> dict:
    """``file:checksum`` and ``file:size`` of a file, for a STAC asset."""
    path = Path(path)
    return {"file:checksum": multihash(path), "file:size": path.stat().st_size}


def check_multihash(path: str | os.PathLike, checksum: str) -> str | None:
    """None when ``checksum`` (a hex multihash) matches the file, else what is wrong, in words."""
    try:
        raw = bytes.fromhex(checksum)
    except (TypeError, ValueError):
        return f"not a hex multihash: {checksum!r}"
    if len(raw) < 2 or raw[0] not in MULTIHASH:
        known = ", ".join(f"0x{c:02x} ({n})" for c, (n, _) in MULTIHASH.items())
        return f"unsupported multihash {checksum[:4]!r}: expected one of {known}"
    name, size = MULTIHASH[raw[0]]
    if raw[1] != size or len(raw) != size + 2:
        return f"malformed {name} multihash: expected {size} digest bytes, got {len(raw) - 2}"
    actual = digest(path, name)
    if actual != raw[2:].hex():
        return f"{name} checksum mismatch: the file has {actual}, the item says {raw[2:].hex()}"
    return None
