"""Trusted-file expansion: measure every ``sgx.trusted_files`` entry, as gramine-manifest does.

Until Gramine v1.7 ``gramine-sgx-sign`` measured trusted files while signing; since v1.8
``gramine-manifest`` does it when rendering (``Manifest.expand_all_trusted_files`` in
``python/graminelibos/manifest.py``), and also fills ``loader.entrypoint.sha256``.
:func:`expand_trusted_files` does the same: a directory entry (URI ending in ``/``) becomes every
readable regular file beneath it, level by level in sorted order, without descending into
symlinked directories; a URI without ``/`` that names a directory is an error (Gramine: "does not
end with /"); entries without ``sha256`` get the SHA-256 of the file; duplicates keep the first
position and the measured entry; relative ``file:`` URIs are resolved against ``base_dir`` (the
directory gramine-manifest would run in) but written back unchanged.

Differences from gramine-manifest:

* gramine-manifest's ``--chroot DIR`` (measure absolute paths inside an image tree, resolving
  symlinks there) has no counterpart: :func:`expand_trusted_files` only resolves relative URIs
  against ``base_dir``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Final

import structlog

from golem_graphene.errors import ManifestError
from golem_graphene.gramine.manifest import Manifest
from golem_graphene.gramine.model import LoaderEntrypoint, TrustedFile
from golem_graphene.limits import MAX_TRUSTED_FILES

__all__ = ["TrustedFileError", "expand_trusted_files", "hash_file"]

_log = structlog.get_logger(__name__)

_HASH_CHUNK: Final = 1024 * 1024


class TrustedFileError(ManifestError):
    """A trusted file is missing, unreadable, of the wrong kind, or does not match its hash."""

    def __init__(
        self, message: str, *, uri: str, expected: object = None, found: object = None
    ) -> None:
        self.uri = uri
        super().__init__(message, expected=expected, found=found)


def hash_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's contents as lower-case hex, read in 1 MiB chunks.

    Raises :class:`OSError` as ``open`` does; :func:`expand_trusted_files` wraps it.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _uri_path(uri: str) -> PurePosixPath:
    return PurePosixPath(uri.removeprefix("file:"))


def _on_disk(path: PurePosixPath, base: Path) -> Path:
    return Path(path) if path.is_absolute() else base / path


def _walk_directory(path: PurePosixPath, base: Path, uri: str) -> Iterator[PurePosixPath]:
    """Regular readable files beneath ``path``, sorted per level, not following dir symlinks."""
    real = _on_disk(path, base)
    try:
        names = sorted(os.listdir(real))
    except OSError as exc:
        raise TrustedFileError(
            f"trusted directory {uri}: cannot list {real}: {exc.strerror or exc}", uri=uri
        ) from exc
    for entry in names:
        child = path / entry
        child_real = real / entry
        is_file, is_dir = child_real.is_file(), child_real.is_dir()
        if not is_file and not is_dir:
            continue  # sockets, fifos, devices, dangling links: gramine-manifest skips them
        if not os.access(child_real, os.R_OK):
            continue
        if is_dir:
            if not child_real.is_symlink():
                yield from _walk_directory(child, base, uri)
            continue
        yield child


def expand_trusted_files(
    manifest: Manifest,
    base_dir: str | os.PathLike[str] = ".",
    *,
    hash_loader_entrypoint: bool = True,
    recheck: bool = False,
) -> Manifest:
    """Return ``manifest`` with every trusted file measured, as gramine-manifest >= 1.8 writes it.

    Directory entries are replaced by the files beneath them; entries without ``sha256`` get the
    file's SHA-256; ``recheck=True`` also re-hashes entries that carry one and refuses a mismatch
    (a runner's pre-start check). With ``hash_loader_entrypoint`` the LibOS named by
    ``loader.entrypoint.uri`` is measured too when it has no ``sha256`` (pass False where Gramine
    is not installed, e.g. under the simulator). Relative URIs are resolved against ``base_dir``.

    Raises :class:`TrustedFileError` (a :class:`ManifestError`) naming the URI when a file is
    missing or unreadable, a directory entry is not a directory (or a file entry is one), two
    entries give one URI different hashes, a hash does not match, or there are more than
    ``MAX_TRUSTED_FILES`` files.
    """
    base = Path(base_dir)
    entries: dict[str, TrustedFile] = {}

    def add(tf: TrustedFile) -> None:
        old = entries.get(tf.uri)
        if old is not None and old.sha256 is not None:
            if tf.sha256 is not None and tf.sha256 != old.sha256:
                raise TrustedFileError(
                    f"trusted file {tf.uri}: two different sha256 values for one URI",
                    uri=tf.uri,
                    expected=old.sha256,
                    found=tf.sha256,
                )
            return
        entries[tf.uri] = tf
        if len(entries) > MAX_TRUSTED_FILES:
            raise TrustedFileError(
                "too many trusted files after expansion",
                uri=tf.uri,
                expected=f"<= {MAX_TRUSTED_FILES}",
                found="more",
            )

    for tf in manifest.sgx.trusted_files:
        path = _uri_path(tf.uri)
        real = _on_disk(path, base)
        if tf.is_directory:
            if not real.is_dir():
                raise TrustedFileError(
                    f"trusted file {tf.uri}: URI ends with '/' but {real} is not a directory",
                    uri=tf.uri,
                    expected="a directory",
                    found="missing" if not real.exists() else "not a directory",
                )
            for child in _walk_directory(path, base, tf.uri):
                add(TrustedFile(f"file:{child}"))
            continue
        if real.is_dir():
            raise TrustedFileError(
                f"trusted file {tf.uri}: names a directory; directory URIs must end with '/'",
                uri=tf.uri,
                expected="a regular file",
                found="a directory",
            )
        if not real.is_file():
            raise TrustedFileError(
                f"trusted file {tf.uri} not found at {real}",
                uri=tf.uri,
                expected="an existing regular file",
                found="missing",
            )
        add(tf)

    measured: list[TrustedFile] = []
    for tf in entries.values():
        if tf.sha256 is None or recheck:
            digest = _hash_uri(tf.uri, base)
            if tf.sha256 is not None and tf.sha256 != digest:
                raise TrustedFileError(
                    f"trusted file {tf.uri}: contents do not match the sha256 in the manifest",
                    uri=tf.uri,
                    expected=tf.sha256,
                    found=digest,
                )
            tf = TrustedFile(tf.uri, digest)
        measured.append(tf)

    loader = manifest.loader
    entry = loader.entrypoint
    if hash_loader_entrypoint and (entry.sha256 is None or recheck):
        digest = _hash_uri(entry.uri, base, key="loader.entrypoint.uri")
        if entry.sha256 is not None and entry.sha256 != digest:
            raise TrustedFileError(
                f"loader.entrypoint {entry.uri}: contents do not match loader.entrypoint.sha256",
                uri=entry.uri,
                expected=entry.sha256,
                found=digest,
            )
        loader = replace(loader, entrypoint=LoaderEntrypoint(entry.uri, digest))

    _log.debug("trusted_files_expanded", count=len(measured), base_dir=str(base))
    return replace(
        manifest, loader=loader, sgx=replace(manifest.sgx, trusted_files=tuple(measured))
    )


def _hash_uri(uri: str, base: Path, *, key: str = "sgx.trusted_files") -> str:
    real = _on_disk(_uri_path(uri), base)
    try:
        return hash_file(real)
    except FileNotFoundError as exc:
        raise TrustedFileError(
            f"{key}: {uri} not found at {real}",
            uri=uri,
            expected="an existing file",
            found="missing",
        ) from exc
    except OSError as exc:
        raise TrustedFileError(
            f"{key}: cannot read {uri} ({real}): {exc.strerror or exc}", uri=uri
        ) from exc
