"""Where uploaded files live: a small interface and the default, a directory on disk.

Keys are opaque strings chosen by the storage; the database keeps them in
``attachment.storage_key``.  The file-system backend shards by the first characters of a
random key and writes through a temporary file, so a crash never leaves half a file under
a real key.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

import attrs


@attrs.frozen
class StoredFile:
    """What the storage wrote: its key, size in bytes and SHA-256 of the content."""

    key: str
    size: int
    sha256: str


def too_large(max_size: int) -> str:
    """Why a file above ``max_size`` bytes is refused."""
    return f"file is larger than the limit of {max_size // (1024 * 1024)} MB"


class Storage(Protocol):
    """A place for file contents (disk by default; S3 or others through plugins)."""

    def save(self, chunks: Iterable[bytes], *, max_size: int | None = None) -> StoredFile:
        """Store the content; raise ``ValueError`` (nothing kept) beyond ``max_size`` bytes."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open stored content for reading."""
        ...

    def delete(self, key: str) -> None:
        """Remove stored content; a missing key is not an error."""
        ...


class FileStorage:
    """Files in a directory tree: ``root/ab/cd/abcd...``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"bad storage key {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def save(self, chunks: Iterable[bytes], *, max_size: int | None = None) -> StoredFile:
        key = secrets.token_hex(16)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".part")
        digest = hashlib.sha256()
        size = 0
        try:
            with temporary.open("wb") as handle:
                for chunk in chunks:
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise ValueError(too_large(max_size))
                    digest.update(chunk)
                    handle.write(chunk)
            temporary.replace(path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return StoredFile(key, size, digest.hexdigest())

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
