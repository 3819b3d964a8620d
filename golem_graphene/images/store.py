"""Flattened roots kept per image digest, read-only, reused and reclaimed least recently used.

Layout of the store folder: ``sha256-<hex>/`` is a complete root (every write bit cleared),
``sha256-<hex>.index`` its :class:`RootIndex` (written before the record),
``sha256-<hex>.json`` its record (digest, bytes, files), whose modification time is the root's
last use; ``.locks/sha256-<hex>.lock`` serialises work on one digest across threads and
processes (``flock``), so concurrent requests for one image flatten it once. A root is complete
only once its record exists: a root without one (a crash between rename and record) and
``.sha256-<hex>.tmp-*`` folders (a crash while flattening) are removed by the next request for
that digest or by :meth:`ImageStore.reclaim`.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from golem_graphene import limits
from golem_graphene._logging import LazyLogger
from golem_graphene.errors import ImageFormatError
from golem_graphene.images.flattening import flatten, remove_tree
from golem_graphene.images.reference import DIGEST_PATTERN
from golem_graphene.images.root_index import RootIndex

if TYPE_CHECKING:  # only named here: a cached build looks roots up without the OCI parsers
    from golem_graphene.images.source import ImageSource

__all__ = ["ImageStore", "StoredRoot"]

_log = LazyLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredRoot:
    """A complete root: its image digest, folder, regular-file bytes and count, last use, and
    the file holding its :class:`RootIndex`."""

    digest: str
    path: Path
    bytes: int
    files: int
    last_used: float
    index_path: Path

    def index(self) -> RootIndex:
        """The root's index (read from the store: the root is not hashed again)."""
        try:
            data = self.index_path.read_bytes()
        except OSError as exc:
            raise ImageFormatError(
                f"the image store lost the index of {self.digest}: {exc.strerror}"
            ) from None
        return RootIndex.from_bytes(data)


class ImageStore:
    """Roots per image digest under ``folder``, at most ``max_roots`` of them and ``max_bytes``
    of file contents (the least recently used beyond either bound go on :meth:`reclaim`, which
    :meth:`root` calls after adding one)."""

    def __init__(
        self,
        folder: Path,
        *,
        max_roots: int = limits.MAX_IMAGE_STORE_ROOTS,
        max_bytes: int = limits.MAX_IMAGE_STORE_BYTES,
    ) -> None:
        self.folder = folder
        self.max_roots = max_roots
        self.max_bytes = max_bytes
        (folder / ".locks").mkdir(parents=True, exist_ok=True)

    # --- names ------------------------------------------------------------------------------

    @staticmethod
    def _stem(digest: str) -> str:
        if DIGEST_PATTERN.fullmatch(digest) is None:
            raise ImageFormatError(
                "an image digest is malformed", expected="sha256:<64 hex>", found=digest[:80]
            )
        return digest.replace(":", "-", 1)

    def _record(self, digest: str) -> Path:
        return self.folder / f"{self._stem(digest)}.json"

    def _index(self, digest: str) -> Path:
        return self.folder / f"{self._stem(digest)}.index"

    def path_of(self, digest: str) -> Path:
        """Where the root of ``digest`` is (or would be)."""
        return self.folder / self._stem(digest)

    @contextmanager
    def _lock(self, digest: str, *, wait: bool = True) -> Iterator[bool]:
        fd = os.open(
            self.folder / ".locks" / f"{self._stem(digest)}.lock",
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
            0o600,
        )
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    # --- use --------------------------------------------------------------------------------

    def lookup(self, digest: str) -> StoredRoot | None:
        """The complete root of ``digest``, marked as just used; ``None`` if there is none."""
        record = self._record(digest)
        found = self._read_record(digest)
        if found is None:
            return None
        os.utime(record)
        return self._read_record(digest)

    def root(self, source: ImageSource) -> StoredRoot:
        """The root of ``source``'s image: reused when complete, else flattened now (once, however
        many threads or processes ask at the same time). Raises the :class:`ImageError` family
        of :func:`flatten`; a failure leaves no partial root."""
        digest = source.digest
        with self._lock(digest):
            found = self.lookup(digest)
            if found is None:
                self._clear_incomplete(digest)
                report = flatten(source, self.path_of(digest), read_only=True)
                index = self._index(digest)
                tmp_index = index.with_name(f".{index.name}.tmp")
                tmp_index.write_bytes(report.index.to_bytes())
                os.replace(tmp_index, index)
                record = self._record(digest)
                tmp = record.with_name(f".{record.name}.tmp")
                tmp.write_text(
                    json.dumps({"digest": digest, "bytes": report.bytes, "files": report.files})
                )
                os.replace(tmp, record)
                found = self.lookup(digest)
                assert found is not None
        self.reclaim(keep=(digest,))
        return found

    def entries(self) -> list[StoredRoot]:
        """Every complete root, least recently used first."""
        found = []
        for record in self.folder.glob("sha256-*.json"):
            stored = self._read_record(record.stem.replace("-", ":", 1))
            if stored is not None:
                found.append(stored)
        return sorted(found, key=lambda r: (r.last_used, r.digest))

    def reclaim(self, *, keep: Collection[str] = ()) -> tuple[str, ...]:
        """Remove the least recently used roots beyond the bounds (never those in ``keep`` or
        being built), and leftovers of crashes; returns the digests removed."""
        removed: list[str] = []
        for leftover in self.folder.glob(".sha256-*.tmp-*"):
            digest = leftover.name[1:].split(".", 1)[0].replace("-", ":", 1)
            if DIGEST_PATTERN.fullmatch(digest) and digest not in keep:
                with self._lock(digest, wait=False) as held:
                    if held:
                        remove_tree(leftover)
        roots = self.entries()
        total = sum(r.bytes for r in roots)
        count = len(roots)
        for stored in roots:
            if count <= self.max_roots and total <= self.max_bytes:
                break
            if stored.digest in keep:
                continue
            with self._lock(stored.digest, wait=False) as held:
                if not held:
                    continue
                self._record(stored.digest).unlink(missing_ok=True)
                self._index(stored.digest).unlink(missing_ok=True)
                remove_tree(stored.path)
            removed.append(stored.digest)
            count -= 1
            total -= stored.bytes
            _log.info("image_root_reclaimed", image=stored.digest, bytes=stored.bytes)
        return tuple(removed)

    # --- records ----------------------------------------------------------------------------

    def _read_record(self, digest: str) -> StoredRoot | None:
        record = self._record(digest)
        path = self.path_of(digest)
        try:
            data = json.loads(record.read_bytes())
            used = record.stat().st_mtime
        except (OSError, ValueError):
            return None
        index = self._index(digest)
        if (
            not isinstance(data, dict)
            or data.get("digest") != digest
            or not path.is_dir()
            or not index.is_file()
        ):
            return None
        size, files = data.get("bytes"), data.get("files")
        if not isinstance(size, int) or not isinstance(files, int):
            return None
        return StoredRoot(
            digest=digest, path=path, bytes=size, files=files, last_used=used, index_path=index
        )

    def _clear_incomplete(self, digest: str) -> None:
        stem = self._stem(digest)
        self._record(digest).unlink(missing_ok=True)
        self._index(digest).unlink(missing_ok=True)
        remove_tree(self.path_of(digest))
        for leftover in self.folder.glob(f".{stem}.tmp-*"):
            remove_tree(leftover)
