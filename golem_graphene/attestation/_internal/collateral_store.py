"""The collateral cache: PCS/PCCS responses on disk, parsed documents in memory.

Disk entries hold the response as received (body and issuer-chain header), one JSON file per
document: ``tcb_info-<FMSPC>.json``, ``pck_crl-<processor|platform>.json``,
``qe_identity.json`` and ``root_ca_crl.json``. The client re-parses an entry with the same
functions it applies to a fresh response, so the cache can never hand out something the network
path would have refused. Files are written to a temporary name and renamed into place, in a
directory only the user can enter; a file that does not read back is removed with a warning.

Everything in the cache is public, Intel-signed data that the verifier checks on every use:
the cache decides only *whether to ask the network*, never what is trusted.

Parsed documents are also kept in a bounded, process-wide memory layer keyed by (directory,
entry), so repeated verifications in one process touch neither the disk nor the network.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import stat
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import structlog

from golem_graphene.canonical_json import CanonicalJsonError, parse_json
from golem_graphene.errors import CollateralSourceError
from golem_graphene.limits import MAX_CACHED_COLLATERAL_DOCUMENTS, MAX_PCS_RESPONSE_BYTES

__all__ = ["CachedResponse", "CollateralStore", "default_cache_dir"]

_log = structlog.get_logger(__name__)

_FORMAT = "golem-graphene/pcs-response/1"
# Base64 of the largest body plus the chain header and a little JSON.
_MAX_ENTRY_BYTES = MAX_PCS_RESPONSE_BYTES * 4 // 3 + 64 * 1024


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/golem-graphene/collateral``, else ``~/.cache/golem-graphene/collateral``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG base-directory spec asks.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "golem-graphene" / "collateral"


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One PCS/PCCS response as received: where from, the body, and its issuer-chain header."""

    url: str
    body: bytes
    issuer_chain_header: str | None


class CollateralStore:
    """Disk and memory cache of collateral for one cache directory.

    Disk methods block; call them through ``asyncio.to_thread`` from async code.
    """

    _memory: ClassVar[OrderedDict[tuple[str, str], tuple[datetime, object]]] = OrderedDict()
    _memory_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # -- memory ------------------------------------------------------------------------------

    def recall(self, name: str, at: datetime) -> object | None:
        """The parsed document kept for ``name`` if it is still fresh at ``at``, else ``None``."""
        key = (str(self.directory), name)
        with self._memory_lock:
            hit = self._memory.get(key)
            if hit is None:
                return None
            next_update, document = hit
            if at > next_update:
                return None
            self._memory.move_to_end(key)
            return document

    def remember(self, name: str, next_update: datetime, document: object) -> None:
        """Keep a parsed document in memory until ``next_update`` (bounded, least recent out)."""
        key = (str(self.directory), name)
        with self._memory_lock:
            self._memory[key] = (next_update, document)
            self._memory.move_to_end(key)
            while len(self._memory) > MAX_CACHED_COLLATERAL_DOCUMENTS:
                self._memory.popitem(last=False)

    @classmethod
    def clear_memory(cls) -> None:
        """Forget every document kept in memory (all directories)."""
        with cls._memory_lock:
            cls._memory.clear()

    # -- disk --------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        """The file of entry ``name`` (names are built from validated FMSPC hex and CA kinds)."""
        return self.directory / f"{name}.json"

    def read(self, name: str) -> CachedResponse | None:
        """The stored response for ``name``; ``None`` when absent or unreadable.

        A file that exists but does not decode is removed (with a warning) so that the next
        fetch replaces it. Never raises for the file's content.
        """
        path = self.path(name)
        try:
            with path.open("rb") as f:
                data = f.read(_MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log.warning(
                "collateral_cache.unreadable", path=str(path), error=exc.strerror or str(exc)
            )
            return None
        try:
            return _decode_entry(data, name)
        except ValueError as exc:
            self.discard(name, str(exc))
            return None

    def discard(self, name: str, reason: str) -> None:
        """Remove a corrupt entry, logging why; a missing file is fine."""
        path = self.path(name)
        _log.warning("collateral_cache.corrupt_entry_removed", path=str(path), reason=reason)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            _log.warning(
                "collateral_cache.remove_failed", path=str(path), error=exc.strerror or str(exc)
            )

    def write(self, name: str, response: CachedResponse, fetched_at: datetime) -> None:
        """Store a response atomically (temporary file, fsync, rename).

        Raises :class:`CollateralSourceError` when the cache directory cannot be created or is
        not a directory (a configuration problem the user should fix). A failure to write one
        entry (disk full, say) is only logged: the collateral itself was fetched fine.
        """
        self._ensure_directory()
        entry = {
            "format": _FORMAT,
            "name": name,
            "url": response.url,
            "fetched_at": fetched_at.astimezone(UTC).isoformat(),
            "issuer_chain_header": response.issuer_chain_header,
            "body": base64.b64encode(response.body).decode("ascii"),
        }
        data = json.dumps(entry, indent=1).encode()
        tmp_name: str | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, self.path(name))
            tmp_name = None
        except OSError as exc:
            _log.warning(
                "collateral_cache.write_failed",
                path=str(self.path(name)),
                error=exc.strerror or str(exc),
            )
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    def _ensure_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            info = self.directory.stat()
            if not stat.S_ISDIR(info.st_mode):  # pragma: no cover - mkdir raised already
                raise NotADirectoryError(str(self.directory))
            # Only the user should be able to swap entries; tighten a directory we own.
            if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
                self.directory.chmod(0o700)
        except OSError as exc:
            raise CollateralSourceError(
                f"the collateral cache directory {str(self.directory)!r} is not usable: "
                f"{exc.strerror or exc}"
            ) from exc


def _decode_entry(data: bytes, name: str) -> CachedResponse:
    """Decode a cache file; raises ValueError saying what is wrong with it."""
    if len(data) > _MAX_ENTRY_BYTES:
        raise ValueError(f"larger than {_MAX_ENTRY_BYTES} bytes")
    try:
        entry: Any = parse_json(data)
    except CanonicalJsonError as exc:
        raise ValueError(f"not JSON: {exc.describe()}") from None
    if not isinstance(entry, dict):
        raise ValueError("not a JSON object")
    if entry.get("format") != _FORMAT:
        raise ValueError(f"unknown format {entry.get('format')!r}")
    if entry.get("name") != name:
        raise ValueError(f"holds entry {entry.get('name')!r}, not {name!r}")
    url, header, body = entry.get("url"), entry.get("issuer_chain_header"), entry.get("body")
    if not isinstance(url, str) or not isinstance(body, str):
        raise ValueError("'url' and 'body' must be strings")
    if header is not None and not isinstance(header, str):
        raise ValueError("'issuer_chain_header' must be a string or null")
    try:
        raw = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"'body' is not base64: {exc}") from None
    return CachedResponse(url=url, body=raw, issuer_chain_header=header)
