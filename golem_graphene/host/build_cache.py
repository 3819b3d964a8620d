"""Finished image folders kept in the image store, so a second build of the same inputs copies.

An image folder is a pure function of its inputs: the spec file (and the folder its image path
is relative to), the container image the spec pins (its root is in the store), the signing key,
the manifest's log level, this golem-graphene's code and agent, and ``gramine-sgx-sign`` where
it signs. :func:`build_key` hashes all of them, and an entry ``builds/<key>/`` in the store
holds the folder that build wrote, its ``rootfs`` link aside. Reusing one is a copy: it needs
none of the parsing, rendering and signing code, so ``golem-graphene build`` of an unchanged
spec takes about as long as the interpreter's start (bench/image.py).

The container image file is not read again: its path and ``stat`` (device, inode, size,
modification time) are kept with the entry, and any change makes a full build, which opens the
image by its pinned digest again. The root itself must still be in the store (it may have been
reclaimed); reusing an entry marks it used, as a full build does.

This module imports only the standard library and the store (no pydantic, jinja2 or
cryptography): it is what the fast path costs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import golem_graphene
from golem_graphene.errors import ImageFormatError
from golem_graphene.images.store import ImageStore

__all__ = ["MAX_BUILDS", "CachedBuild", "build_key", "find_build", "keep_build"]

MAX_BUILDS = 16
"""Entries kept per store (about 1.5 MB each); the least recently used beyond go."""

_ROOTFS_LINK = "rootfs"
_RECORD = "build.json"
_FORMAT = 1


def build_key(spec_file: Path, key_path: Path, log_level: str) -> str | None:
    """The hex key of a build's inputs; None when one cannot be read (a full build says why)."""
    digest = hashlib.sha256()

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "big") + data)

    try:
        part(b"golem-graphene build cache %d" % _FORMAT)
        part(golem_graphene.__version__.encode())
        part(_package_fingerprint())
        part(os.fsencode(spec_file.absolute().parent.resolve()))
        part(spec_file.read_bytes())
        part(key_path.read_bytes())
        part(log_level.encode())
        part(_gramine_signer())
    except OSError:
        return None
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedBuild:
    """An entry found for a build's inputs; :meth:`install` writes its image folder."""

    entry: Path
    record: dict[str, Any]
    root: Path

    @property
    def spec_name(self) -> str:
        return str(self.record["spec"])

    def install(self, out_dir: Path) -> dict[str, Any]:
        """Write the image folder to ``out_dir`` (replacing one there); returns its
        ``image.json`` (``built`` is now). Raises ``OSError``."""
        out_dir = out_dir.absolute()
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        try:
            image = work / "image"
            image.mkdir()
            for name in self.record["files"]:
                if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
                    raise OSError(f"the build cache entry {self.entry} names a bad file")
                shutil.copy2(self.entry / "image" / name, image / name)
            info = json.loads((image / "image.json").read_bytes())
            info["built"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            (image / "image.json").write_text(json.dumps(info, indent=2) + "\n")
            (image / _ROOTFS_LINK).symlink_to(self.root)
            if out_dir.is_symlink() or out_dir.is_file():
                out_dir.unlink()
            elif out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(image, out_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        os.utime(self.entry / _RECORD)
        return dict(info)


def find_build(
    store: ImageStore, spec_file: Path, key_path: Path, log_level: str
) -> CachedBuild | None:
    """The store's entry for these inputs, when it is complete, its container image file is
    unchanged and its root still in the store; None otherwise."""
    key = build_key(spec_file, key_path, log_level)
    if key is None:
        return None
    entry = store.folder / "builds" / key
    try:
        record = json.loads((entry / _RECORD).read_bytes())
        source, digest = Path(record["source"]), str(record["image_digest"])
        if record["format"] != _FORMAT or record["source_stat"] != _stat_of(source):
            return None
        stored = store.lookup(digest)
    except (OSError, ValueError, KeyError, TypeError, ImageFormatError):
        return None  # a damaged entry (a malformed digest among them): build again
    if stored is None:
        return None
    return CachedBuild(entry, record, stored.path.resolve())


def keep_build(
    store: ImageStore,
    image_dir: Path,
    *,
    spec_file: Path,
    key_path: Path,
    log_level: str,
    source: Path,
) -> None:
    """Keep the image folder just built from these inputs (``source``: the container image
    file, or an OCI layout's ``index.json``), and drop entries beyond :data:`MAX_BUILDS`.

    Best effort: a store that cannot take it (read-only, full) only loses the speed-up.
    """
    key = build_key(spec_file, key_path, log_level)
    if key is None:
        return
    builds = store.folder / "builds"
    info = json.loads((image_dir / "image.json").read_bytes())
    files = sorted(p.name for p in image_dir.iterdir() if p.name != _ROOTFS_LINK)
    record = {
        "format": _FORMAT,
        "spec": info["spec"],
        "image_digest": info["image_digest"],
        "source": str(source.absolute()),
        "source_stat": _stat_of(source),
        "files": files,
    }
    try:
        builds.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=builds))
        try:
            shutil.copytree(image_dir, work / "image", symlinks=True, ignore=_skip_rootfs)
            (work / _RECORD).write_text(json.dumps(record, indent=1))
            _replace_entry(work, builds / key)
        except OSError:
            shutil.rmtree(work, ignore_errors=True)
            return
        _reclaim(builds)
    except OSError:
        return


def _replace_entry(new: Path, entry: Path) -> None:
    """Put ``new`` at ``entry``; an entry there (stale: its image file changed) is moved aside
    first, so a reader sees the old or the new one whole, or none."""
    try:
        os.replace(new, entry)
        return
    except OSError:
        if not entry.is_dir():
            raise
    old = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
    os.replace(entry, old / "old")
    os.replace(new, entry)
    shutil.rmtree(old, ignore_errors=True)


def _skip_rootfs(folder: str, names: list[str]) -> list[str]:
    return [_ROOTFS_LINK] if _ROOTFS_LINK in names else []


def _reclaim(builds: Path) -> None:
    """Remove the least recently used entries beyond :data:`MAX_BUILDS` and crashed copies."""
    entries = []
    for entry in builds.iterdir():
        if entry.name.startswith(".tmp-") and time.time() - entry.stat().st_mtime > 3600:
            shutil.rmtree(entry, ignore_errors=True)
            continue
        try:
            entries.append(((entry / _RECORD).stat().st_mtime, entry))
        except OSError:
            continue
    entries.sort()
    for _, entry in entries[: max(0, len(entries) - MAX_BUILDS)]:
        shutil.rmtree(entry, ignore_errors=True)


def _stat_of(path: Path) -> list[int]:
    """What changes when a file is replaced or rewritten: device, inode, size, mtime."""
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _package_fingerprint() -> bytes:
    """Names, sizes and modification times of every file of this installation (code,
    templates, the agent): a changed or reinstalled package never reuses an older build."""
    root = Path(golem_graphene.__file__).parent
    found: list[str] = []
    folders = [str(root)]
    while folders:
        for entry in os.scandir(folders.pop()):
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    folders.append(entry.path)
                continue
            st = entry.stat(follow_symlinks=False)
            found.append(f"{entry.path[len(str(root)) :]}\0{st.st_size}\0{st.st_mtime_ns}")
    return "\n".join(sorted(found)).encode()


def _gramine_signer() -> bytes:
    """Which ``gramine-sgx-sign`` would sign (its path, size and mtime), or nothing."""
    tool = shutil.which("gramine-sgx-sign")
    if tool is None:
        return b""
    st = os.stat(tool)
    return f"{tool}\0{st.st_size}\0{st.st_mtime_ns}".encode()
