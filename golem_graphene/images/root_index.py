"""The index of a flattened root: every entry's path, kind, mode, and a file's SHA-256.

What an enclave image measures of its container image: the regular files become trusted files
(path and content), and the whole index (folders, modes, symbolic links and their targets) is
one more measured file, so a changed link or mode changes the measurement as a changed byte
does. It is computed once, when the root is flattened, and kept beside the root in the store:
a second build of the same image reads it instead of hashing the root again.

The index depends only on the root's content: entries are sorted by path, paths are relative
(no leading ``/``), times and owners are not recorded (the flattening zeroes and drops them).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from golem_graphene.errors import ImageFormatError

__all__ = ["RootEntry", "RootIndex", "hash_regular_file"]

EntryKind = Literal["dir", "file", "link"]
_KINDS: tuple[EntryKind, ...] = ("dir", "file", "link")
_HASH_CHUNK = 1 << 20
INDEX_FORMAT = 1


@dataclass(frozen=True, slots=True)
class RootEntry:
    """One entry: ``path`` relative to the root, ``mode`` its permission bits, ``sha256`` and
    ``size`` for a file, ``target`` for a symbolic link."""

    path: str
    kind: EntryKind
    mode: int
    size: int = 0
    sha256: str | None = None
    target: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "kind": self.kind, "mode": self.mode}
        if self.kind == "file":
            out["size"] = self.size
            out["sha256"] = self.sha256
        elif self.kind == "link":
            out["target"] = self.target
        return out


@dataclass(frozen=True, slots=True)
class RootIndex:
    """A root's entries, sorted by path; ``raw`` is the form it was read from, if any (what
    :meth:`to_bytes` gives again without writing it anew)."""

    entries: tuple[RootEntry, ...]
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def files(self) -> Iterator[RootEntry]:
        """The regular files, in path order."""
        return (e for e in self.entries if e.kind == "file")

    def find(self, path: str) -> RootEntry | None:
        """The entry at ``path`` (relative, without a leading ``/``)."""
        for entry in self.entries:
            if entry.path == path:
                return entry
        return None

    def to_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, no spaces, one entry per line (readable diffs)."""
        if self.raw is not None:
            return self.raw
        lines = [json.dumps({"format": INDEX_FORMAT}, sort_keys=True, separators=(",", ":"))]
        lines += [
            json.dumps(e.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            for e in self.entries
        ]
        return ("\n".join(lines) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> RootIndex:
        """Read :meth:`to_bytes`' form; raises :class:`ImageFormatError` for anything else."""
        try:
            header, _, body = data.partition(b"\n")
            if json.loads(header) != {"format": INDEX_FORMAT}:
                raise ValueError("unknown index format")
            # One parse of all entries (one JSON object per line) instead of one per line.
            objects = json.loads(b"[" + body.rstrip(b"\n").replace(b"\n", b",") + b"]")
            index = cls(tuple(_entry(obj) for obj in objects), raw=data)
        except (ValueError, KeyError, TypeError) as exc:
            raise ImageFormatError(f"the root index is damaged: {exc}") from None
        if index.entries != tuple(sorted(index.entries, key=_order)):
            raise ImageFormatError("the root index is damaged: its entries are not in order")
        return index

    @classmethod
    def of(cls, entries: list[RootEntry]) -> RootIndex:
        return cls(tuple(sorted(entries, key=_order)))


def _order(entry: RootEntry) -> bytes:
    return entry.path.encode("utf-8", "surrogateescape")


def _entry(obj: dict[str, object]) -> RootEntry:
    kind = obj["kind"]
    path, mode = obj["path"], obj["mode"]
    if kind not in _KINDS or not isinstance(path, str) or not isinstance(mode, int):
        raise ValueError("an index entry has a bad kind, path or mode")
    if kind == "file":
        size, sha = obj["size"], obj["sha256"]
        if not isinstance(size, int) or not isinstance(sha, str):
            raise ValueError(f"the file entry {path!r} lacks its size or hash")
        return RootEntry(path, "file", mode, size=size, sha256=sha)
    if kind == "link":
        target = obj["target"]
        if not isinstance(target, str):
            raise ValueError(f"the link entry {path!r} lacks its target")
        return RootEntry(path, "link", mode, target=target)
    return RootEntry(path, "dir", mode)


def hash_regular_file(name: str, dir_fd: int) -> str:
    """SHA-256 of the regular file ``name`` in ``dir_fd``, never following a link.

    A file without read permission (an image may ship mode 000 files) is made readable by its
    owner for the read and given its mode back: the measurer must see every byte."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    restore: int | None = None
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        restore = stat.S_IMODE(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        os.chmod(name, restore | 0o400, dir_fd=dir_fd)
        fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, _HASH_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)
        if restore is not None:
            os.chmod(name, restore, dir_fd=dir_fd)
