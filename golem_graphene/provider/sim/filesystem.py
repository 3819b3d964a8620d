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
from pathlib import Path, PurePosixPath

from golem_graphene.errors import RunnerError
from golem_graphene.provider.manifest import Manifest
from golem_graphene.provider.sandbox import Mount

__all__ = ["TrustedFileCache", "sandbox_mounts", "verify_trusted_files"]

_HASH_CHUNK = 1 << 20


class TrustedFileCache:
    """SHA-256 of host files, remembered per (device, inode, size, mtime, ctime).

    Any change to a file's content changes its ctime, so a cached digest is reused only for the
    very file state it was computed from; the second launch of an image then costs a ``stat``
    per file instead of a full read.
    """

    def __init__(self) -> None:
        self._digests: dict[str, tuple[tuple[int, int, int, int, int], str]] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        """The file's SHA-256 (hex); raises ``OSError`` when unreadable."""
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        name = str(path)
        with self._lock:
            hit = self._digests.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        with self._lock:
            self._digests[name] = (key, value)
        return value


def _host_path(uri: str, base: Path) -> Path:
    if not uri.startswith("file:"):
        raise RunnerError("the sim runner supports only file: URIs", found=uri)
    path = Path(uri.removeprefix("file:"))
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def verify_trusted_files(manifest: Manifest, base: Path, cache: TrustedFileCache) -> list[Path]:
    """Hash every trusted file and compare with the manifest, before anything starts.

    Returns the host paths. Raises :class:`RunnerError` naming the first file that is missing
    or whose content changed since the image was built.
    """
    paths: list[Path] = []
    for tf in manifest.sgx.trusted_files:
        if tf.sha256 is None or tf.is_directory:
            raise RunnerError("the manifest is not expanded (trusted file without sha256)",
                              found=tf.uri)
        host = _host_path(tf.uri, base)
        try:
            digest = cache.sha256(host)
        except OSError as exc:
            raise RunnerError(f"trusted file {tf.uri} cannot be read: {exc.strerror or exc}") from exc
        if digest != tf.sha256:
            raise RunnerError(f"trusted file {tf.uri} was modified after the image was built",
                              expected=tf.sha256, found=digest)
        paths.append(host)
    return paths


@dataclass(frozen=True)
class _MountMap:
    host: Path
    enclave: PurePosixPath


def _mount_maps(manifest: Manifest, base: Path) -> list[_MountMap]:
    maps = []
    root_uri = manifest.fs.root.uri if manifest.fs.root and manifest.fs.root.uri else "file:."
    maps.append(_MountMap(_host_path(root_uri, base), PurePosixPath("/")))
    for m in manifest.fs.mounts:
        if m.type == "encrypted":
            raise RunnerError("fs.mounts: encrypted mounts are not supported by the sim runner "
                              "(use tmpfs inside the enclave, or gramine-sgx)", found=m.path)
        if m.type == "chroot" and m.uri is not None:
            maps.append(_MountMap(_host_path(m.uri, base), PurePosixPath(m.path)))
    # Longest enclave path first: deeper mounts shadow the ones above them, as in Gramine.
    return sorted(maps, key=lambda mm: len(mm.enclave.parts), reverse=True)


def _enclave_path(host: Path, maps: list[_MountMap]) -> PurePosixPath | None:
    best: tuple[int, PurePosixPath] | None = None
    for mm in maps:
        try:
            rest = host.relative_to(mm.host)
        except ValueError:
            continue
        depth = len(mm.host.parts)
        if best is None or depth > best[0]:
            best = (depth, mm.enclave / rest.as_posix() if str(rest) != "." else mm.enclave)
    return best[1] if best else None


def sandbox_mounts(manifest: Manifest, base: Path, trusted: list[Path]) -> list[Mount]:
    """The bubblewrap mounts that show exactly the manifest's files at their enclave paths."""
    maps = _mount_maps(manifest, base)
    policy_all = manifest.sgx.file_check_policy == "allow_all_but_log"
    mounts: dict[str, Mount] = {}
    if policy_all:
        for mm in maps:
            mounts[str(mm.enclave)] = Mount(str(mm.enclave), "ro", mm.host)
    for host, target in _collapse(trusted, maps):
        mounts.setdefault(str(target), Mount(str(target), "ro", host))
    for uri in manifest.sgx.allowed_files:
        host = _host_path(uri, base)
        target = _enclave_path(host, maps)
        if target is None:
            raise RunnerError("allowed file is not under any mount", found=uri)
        if not host.exists():
            if uri.endswith("/"):
                raise RunnerError("allowed directory does not exist", found=uri)
            continue  # Gramine lets the program create it; nothing to bind yet.
        mounts[str(target)] = Mount(str(target), "rw", host)
    for m in manifest.fs.mounts:
        if m.type == "tmpfs":
            mounts[m.path] = Mount(m.path, "tmpfs")
    return sorted(mounts.values(), key=lambda m: (m.target.count("/"), m.target))


def _collapse(trusted: list[Path], maps: list[_MountMap]) -> list[tuple[Path, PurePosixPath]]:
    """Bind whole directories whose every regular file is trusted; single files otherwise."""
    trusted_set = {str(p) for p in trusted}
    complete: dict[str, bool] = {}

    def dir_complete(directory: Path) -> bool:
        key = str(directory)
        if key not in complete:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                complete[key] = False
                return False
            ok = bool(entries)
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    ok = ok and dir_complete(Path(entry.path))
                elif entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                    ok = False
                else:
                    ok = ok and entry.path in trusted_set
            complete[key] = ok
        return complete[key]

    chosen: dict[str, tuple[Path, PurePosixPath]] = {}
    for path in trusted:
        unit = path
        parent = path.parent
        # Climb while the whole parent is trusted and maps to the same mount.
        while parent != parent.parent and dir_complete(parent):
            target_parent = _enclave_path(parent, maps)
            if target_parent is None or _enclave_path(unit, maps) != target_parent / unit.name:
                break
            unit, parent = parent, parent.parent
        target = _enclave_path(unit, maps)
        if target is None:
            raise RunnerError("trusted file is not under any mount", found=str(path))
        chosen[str(unit)] = (unit, target)
    # Drop units inside other chosen units.
    units = sorted(chosen.values(), key=lambda u: len(u[0].parts))
    kept: list[tuple[Path, PurePosixPath]] = []
    for unit, target in units:
        if not any(unit != k and unit.is_relative_to(k) for k, _ in kept):
            kept.append((unit, target))
    return kept
