"""What the sandbox sees: Gramine's file rules turned into bubblewrap mounts, and the trusted-file
hash check that runs before every start.

Gramine maps host URIs to enclave paths through ``fs.mounts`` (and ``fs.root``) and, under the
``strict`` file check policy, lets the enclave open only trusted files (hash-checked, read-only)
and allowed files (unprotected, read-write). The simulator reproduces that view: each trusted or
allowed host file is bound at the enclave path its mount gives it, and nothing else is bound, so
a file outside the manifest does not exist for the program. Directories whose every file is
trusted are bound whole, which keeps the number of bind mounts small.

Relative URIs resolve against the launch directory, as Gramine resolves them against its
working directory.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from golem_graphene.errors import RunnerError
from golem_graphene.gramine.manifest import Manifest
from golem_graphene.host.sandbox import Mount

__all__ = [
    "TrustedFileCache",
    "check_root_trusted",
    "image_root",
    "sandbox_mounts",
    "verify_trusted_files",
]

_HASH_CHUNK = 1 << 20


class TrustedFileCache:
    """SHA-256 of host files, remembered per (device, inode, size, mtime, ctime).

    Any change to a file's content changes its ctime, so a cached digest is reused only for the
    very file state it was computed from; the second launch of an image then costs a ``stat``
    per file instead of a full read. Entries are keyed by the file (device, inode), not by the
    path: every launch reaches the image's files through its own launch folder, and one entry
    per file keeps the cache from growing with the number of tasks.
    """

    def __init__(self) -> None:
        self._digests: dict[tuple[int, int], tuple[tuple[int, int, int, int, int], str]] = {}
        self._lock = threading.Lock()

    def sha256(self, path: str | Path) -> str:
        """The file's SHA-256 (hex); raises ``OSError`` when unreadable."""
        name = os.fspath(path)
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"{name} is not a regular file")
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = self._digests.get(key[:2])
        if hit is not None and hit[0] == key:
            return hit[1]
        digest = hashlib.sha256()
        with open(name, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        with self._lock:
            self._digests[key[:2]] = (key, value)
        return value


def _host_path(uri: str, base: Path) -> Path:
    if not uri.startswith("file:"):
        raise RunnerError("the sim runner supports only file: URIs", found=uri)
    path = Path(uri.removeprefix("file:"))
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def verify_trusted_files(manifest: Manifest, base: Path, cache: TrustedFileCache) -> list[str]:
    """Hash every trusted file and compare with the manifest, before anything starts.

    Returns the host paths (strings: thousands of ``Path`` objects per launch cost more than
    the cached check itself). Raises :class:`RunnerError` naming the first file that is missing
    or whose content changed since the image was built.
    """
    base_text = os.fspath(base)
    paths: list[str] = []
    for tf in manifest.sgx.trusted_files:
        if tf.sha256 is None or tf.is_directory:
            raise RunnerError(
                "the manifest is not expanded (trusted file without sha256)", found=tf.uri
            )
        if not tf.uri.startswith("file:"):
            raise RunnerError("the sim runner supports only file: URIs", found=tf.uri)
        host = os.path.normpath(os.path.join(base_text, tf.uri[5:]))
        try:
            digest = cache.sha256(host)
        except OSError as exc:
            raise RunnerError(
                f"trusted file {tf.uri} cannot be read: {exc.strerror or exc}"
            ) from exc
        if digest != tf.sha256:
            raise RunnerError(
                f"trusted file {tf.uri} was modified after the image was built",
                expected=tf.sha256,
                found=digest,
            )
        paths.append(host)
    return paths


@dataclass(frozen=True)
class _MountMap:
    host: str
    enclave: str


def _mount_maps(manifest: Manifest, base: Path) -> list[_MountMap]:
    maps = []
    root_uri = manifest.fs.root.uri if manifest.fs.root and manifest.fs.root.uri else "file:."
    maps.append(_MountMap(str(_host_path(root_uri, base)), "/"))
    for m in manifest.fs.mounts:
        if m.type == "encrypted":
            raise RunnerError(
                "fs.mounts: encrypted mounts are not supported by the sim runner "
                "(use tmpfs inside the enclave, or gramine-sgx)",
                found=m.path,
            )
        if m.type == "chroot" and m.uri is not None:
            maps.append(_MountMap(str(_host_path(m.uri, base)), m.path.rstrip("/") or "/"))
    # The mount with the longest host prefix decides, as the deepest mount shadows the others.
    return sorted(maps, key=lambda mm: len(mm.host), reverse=True)


def _enclave_path(host: str, maps: list[_MountMap]) -> str | None:
    for mm in maps:
        if host == mm.host:
            return mm.enclave
        prefix = mm.host if mm.host.endswith("/") else mm.host + "/"
        if host.startswith(prefix):
            rest = host[len(prefix) :]
            return (
                rest
                if mm.enclave == "/" and rest.startswith("/")
                else (("" if mm.enclave == "/" else mm.enclave) + "/" + rest)
            )
    return None


def sandbox_mounts(manifest: Manifest, base: Path, trusted: list[str]) -> list[Mount]:
    """The bubblewrap mounts that show exactly the manifest's files at their enclave paths."""
    maps = _mount_maps(manifest, base)
    mounts: dict[str, Mount] = {}
    root = image_root(manifest, base)
    if root is not None:
        # A container image's root (fs.root): bound whole, its links kept as links.
        inside = root + "/"
        trusted = [path for path in trusted if not path.startswith(inside)]
        reserved = {"proc", "dev"} | {
            m.path.strip("/") for m in manifest.fs.mounts if m.path.strip("/").count("/") == 0
        }
        for mount in _root_entries(root, reserved):
            mounts[mount.target] = mount
    if manifest.sgx.file_check_policy == "allow_all_but_log":
        for mm in maps:
            mounts[mm.enclave] = Mount(mm.enclave, "ro", Path(mm.host))
    for host, target in _collapse(trusted, maps):
        mounts.setdefault(target, Mount(target, "ro", Path(host)))
    for uri in manifest.sgx.allowed_files:
        host_path = _host_path(uri, base)
        allowed_target = _enclave_path(str(host_path), maps)
        if allowed_target is None:
            raise RunnerError("allowed file is not under any mount", found=uri)
        if not host_path.exists():
            if uri.endswith("/"):
                raise RunnerError("allowed directory does not exist", found=uri)
            continue  # Gramine lets the program create it; nothing to bind yet.
        mounts[allowed_target] = Mount(allowed_target, "rw", host_path)
    for m in manifest.fs.mounts:
        if m.type == "tmpfs":
            mounts[m.path] = Mount(m.path, "tmpfs")
    return sorted(mounts.values(), key=lambda m: (m.target.count("/"), m.target))


def image_root(manifest: Manifest, base: Path) -> str | None:
    """The host folder of ``fs.root`` when the manifest names one (a container image's root)."""
    root = manifest.fs.root
    if root is None or root.uri is None or root.type != "chroot":
        return None
    return str(_host_path(root.uri, base))


def check_root_trusted(root: str, trusted: list[str]) -> None:
    """Refuse a root holding a regular file the manifest does not trust: the sandbox shows the
    root whole, so every file in it must have been hash-checked (as Gramine's strict policy
    would refuse to open it)."""
    trusted_set = set(trusted)
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise RunnerError(f"the enclave's root cannot be read: {exc.strerror}") from None
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif not entry.is_symlink() and entry.path not in trusted_set:
                raise RunnerError(
                    "the enclave's root holds a file its manifest does not trust",
                    found=entry.path[len(root) :],
                )


def _root_entries(root: str, reserved: set[str]) -> list[Mount]:
    mounts = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name in reserved:
            continue  # the enclave's own mounts (/proc, /dev, /tmp, ...) take these places
        target = "/" + entry.name
        if entry.is_symlink():
            mounts.append(Mount(target, "symlink", Path(os.readlink(entry.path))))
        else:
            mounts.append(Mount(target, "ro", Path(entry.path)))
    return mounts


def _collapse(trusted: list[str], maps: list[_MountMap]) -> list[tuple[str, str]]:
    """Bind whole directories whose every regular file is trusted; single files otherwise.

    A directory is bound whole only when it holds nothing but trusted regular files and such
    directories, and it maps into the enclave at the place its files would map individually.
    """
    trusted_set = set(trusted)
    complete: dict[str, bool] = {}

    def dir_complete(directory: str) -> bool:
        hit = complete.get(directory)
        if hit is not None:
            return hit
        try:
            entries = list(os.scandir(directory))
        except OSError:
            entries = []
        ok = bool(entries)
        for entry in entries:
            if not ok:
                break
            if entry.is_dir(follow_symlinks=False):
                ok = dir_complete(entry.path)
            elif entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                ok = False
            else:
                ok = entry.path in trusted_set
        complete[directory] = ok
        return ok

    chosen: dict[str, str] = {}
    for path in trusted:
        unit = path
        target = _enclave_path(unit, maps)
        if target is None:
            raise RunnerError("trusted file is not under any mount", found=path)
        while True:
            parent = os.path.dirname(unit)
            if parent == unit or not dir_complete(parent):
                break
            parent_target = _enclave_path(parent, maps)
            if parent_target is None or parent_target + "/" + os.path.basename(unit) != target:
                break
            unit, target = parent, parent_target
        chosen[unit] = target
    kept: list[tuple[str, str]] = []
    for unit in sorted(chosen, key=len):
        if not any(unit.startswith(k + "/") for k, _ in kept):
            kept.append((unit, chosen[unit]))
    return kept
