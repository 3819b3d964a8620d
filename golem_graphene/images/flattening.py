"""Flattening an image's layers into one root folder, safely.

Layers apply in order, each a tar changeset over the ones below (OCI ``layer.md``): a regular
file ``.wh.NAME`` deletes ``NAME`` of lower layers, ``.wh..wh..opq`` hides everything lower layers
put in its directory (the current layer's entries stay, wherever they come in the tar). As
in ``umoci unpack``: a marker makes no folder, a marker under a file is moot, and a whiteout of
a folder the same layer also wrote hides only what lower layers put in it.

Every name is resolved by us, one component at a time, with ``O_NOFOLLOW`` relative to the
folder above it, so no link (planted by an earlier entry or layer) is ever followed. Refused
with :class:`UnsafeLayerEntryError`: absolute names, ``..``, a path through a symbolic link or a
non-directory, a hard link to an absolute or ``..`` name or to nothing, a whiteout of ``""``,
``.`` or ``..``, entry types we do not know. Refused with :class:`ImageLimitError`: too many
entries, a too large file, too long or deep names, and (in the layer stream) too many
uncompressed bytes or a too high compression ratio. Neutralised: setuid and setgid bits are
cleared; device nodes and FIFOs are dropped (the path no longer exists in the root) and listed in
:attr:`FlattenReport.dropped` with a log line, since real images ship ``/dev`` empty and the
runtime provides it. Symbolic links (absolute ones too) and hard links inside the image are kept
as they are. Owners are not kept (the root is read by one user); times are all zero, so two
flattenings of the same content are identical.

A layer's tar must end cleanly: only zero padding may follow its end (tarfile stops at the
first zero or unreadable header, where other extractors might go on). The root is built in a
temporary folder beside the target and renamed into place only after the
last layer's digests verified; on any failure the temporary folder is removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from golem_graphene._logging import LazyLogger
from golem_graphene.errors import (
    ImageFormatError,
    ImageLimitError,
    UnsafeLayerEntryError,
)
from golem_graphene.images.limits import ImageLimits
from golem_graphene.images.root_index import RootEntry, RootIndex, hash_regular_file

if TYPE_CHECKING:  # only named here: the store imports this module without the OCI parsers
    from golem_graphene.images.source import ImageSource, LayerStream

__all__ = ["FlattenReport", "flatten", "remove_tree"]

_log = LazyLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KEPT_MODE_BITS = 0o1777  # permissions and sticky; setuid (0o4000) and setgid (0o2000) go
_IMPLICIT_DIR_MODE = 0o755
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FlattenReport:
    """What a flattening did: tar entries read over all layers, regular files in the root and
    their bytes (a hard-linked file's once), and the paths of device nodes and FIFOs dropped."""

    entries: int
    files: int
    bytes: int
    dropped: tuple[str, ...]
    index: RootIndex


def flatten(source: ImageSource, target: Path, *, read_only: bool = False) -> FlattenReport:
    """Apply ``source``'s layers into the new folder ``target`` (its parent must exist).

    ``read_only`` clears every write bit once the root is complete. Raises the
    :class:`ImageError` family (module docstring); on any failure ``target`` does not exist and
    nothing is left beside it.
    """
    if target.exists() or target.is_symlink():
        raise ImageFormatError("the flattening target exists already", found=str(target))
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        root_fd = os.open(work, _DIR_FLAGS)
        try:
            state = _Flattener(root_fd, source.limits)
            for layer in source.layers:
                with source.open_layer(layer) as stream:
                    state.apply(stream)
            tally = _Tally()
            _finalise(root_fd, "", state.dir_modes, tally, read_only=read_only)
            os.chmod(root_fd, _IMPLICIT_DIR_MODE & ~0o222 if read_only else _IMPLICIT_DIR_MODE)
            os.utime(root_fd, ns=(0, 0))
        finally:
            os.close(root_fd)
        os.rename(work, target)
    except BaseException:
        remove_tree(work)
        raise
    _log.info(
        "image_flattened",
        image=source.digest,
        entries=state.entries,
        files=tally.files,
        bytes=tally.bytes,
        dropped=len(state.dropped),
    )
    return FlattenReport(
        state.entries, tally.files, tally.bytes, tuple(state.dropped), RootIndex.of(tally.index)
    )


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything under it, read-only folders included, never following a
    link (a missing ``path`` is fine)."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError:
        path.unlink(missing_ok=True)
        return
    try:
        _make_writable(fd)
    finally:
        os.close(fd)
    shutil.rmtree(path)


def _make_writable(dir_fd: int) -> None:
    os.chmod(dir_fd, 0o700)
    for entry in os.scandir(dir_fd):
        if entry.is_dir(follow_symlinks=False):
            child = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                _make_writable(child)
            finally:
                os.close(child)


@dataclass
class _Tally:
    files: int = 0
    bytes: int = 0
    inodes: dict[int, str] = field(default_factory=dict)
    index: list[RootEntry] = field(default_factory=list)


def _finalise(
    dir_fd: int, prefix: str, modes: dict[str, int], tally: _Tally, *, read_only: bool
) -> None:
    """Set folder modes (deferred so that read-only folders could be filled), clear write bits
    when asked, zero every time (children before their folder), count the regular files and
    their bytes (a hard-linked file's once) and index every entry (hashing each file once)."""
    strip = 0o222 if read_only else 0
    for entry in os.scandir(dir_fd):
        path = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            child = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                _finalise(child, path + "/", modes, tally, read_only=read_only)
                mode = modes.get(path, _IMPLICIT_DIR_MODE) & ~strip
                os.chmod(child, mode)
            finally:
                os.close(child)
            tally.index.append(RootEntry(path, "dir", mode))
        elif entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            tally.files += 1
            digest = tally.inodes.get(st.st_ino)
            if digest is None:
                digest = hash_regular_file(entry.name, dir_fd)
                tally.inodes[st.st_ino] = digest
                tally.bytes += st.st_size
            mode = stat.S_IMODE(st.st_mode) & ~strip
            if read_only:
                os.chmod(entry.name, mode, dir_fd=dir_fd)
            tally.index.append(RootEntry(path, "file", mode, size=st.st_size, sha256=digest))
        elif entry.is_symlink():
            target = os.readlink(entry.name, dir_fd=dir_fd)
            tally.index.append(RootEntry(path, "link", 0o777, target=target))
        os.utime(entry.name, ns=(0, 0), dir_fd=dir_fd, follow_symlinks=False)


class _Flattener:
    def __init__(self, root_fd: int, limits: ImageLimits) -> None:
        self.root_fd = root_fd
        self.limits = limits
        self.entries = 0
        self.dropped: list[str] = []
        self.dir_modes: dict[str, int] = {}
        # Of the layer being applied: the paths it put in the root, and their ancestors.
        self._upper: set[str] = set()
        self._upper_dirs: set[str] = set()
        self._layer = ""

    def apply(self, stream: LayerStream) -> None:
        self._upper = set()
        self._upper_dirs = set()
        self._layer = f"layer {stream.info.index}"
        try:
            with tarfile.open(fileobj=stream, mode="r|", errorlevel=2) as tar:
                for member in tar:
                    self._entry(tar, member)
            # tarfile ends at the first zero or unreadable header; entries hidden behind one
            # would be content other extractors apply, so only zero padding may follow.
            while chunk := stream.read(_CHUNK):
                if chunk.count(0) != len(chunk):
                    raise ImageFormatError(
                        f"{self._layer} has data after the end of its tar",
                        expected="zero padding",
                        found="other bytes",
                    )
        except (tarfile.TarError, EOFError) as exc:
            # A damaged tar is most often a damaged blob: say so when the digests show it.
            stream.finish()
            raise ImageFormatError(f"{self._layer} is a damaged tar", found=str(exc)) from exc
        stream.finish()

    # --- names ------------------------------------------------------------------------------

    def _split(self, name: str, what: str = "an entry") -> list[str]:
        if len(os.fsencode(name)) > self.limits.max_path_bytes:
            raise ImageLimitError(
                f"{self._layer} has {what} with a too long name",
                expected=f"at most {self.limits.max_path_bytes} bytes",
                found=f"{name[:80]}...",
            )
        if "\x00" in name:
            raise UnsafeLayerEntryError(
                f"{self._layer} has {what} whose name holds a NUL", found=repr(name)
            )
        if name.startswith("/"):
            raise UnsafeLayerEntryError(
                f"{self._layer} has {what} with an absolute name",
                expected="a relative name",
                found=name,
            )
        parts = [p for p in name.split("/") if p not in {"", "."}]
        if ".." in parts:
            raise UnsafeLayerEntryError(
                f"{self._layer} has {what} whose name climbs out with ..", found=name
            )
        if len(parts) > self.limits.max_path_depth:
            raise ImageLimitError(
                f"{self._layer} has {what} nested too deeply",
                expected=f"at most {self.limits.max_path_depth} components",
                found=len(parts),
            )
        return parts

    def _open_dir(self, parts: list[str], *, create: bool) -> int | None:
        """An fd of the folder ``parts`` names, resolved without following any link. When it is
        missing (or a file stands in its path) and ``create`` is false: ``None``. A symbolic link
        in the path is always refused."""
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(part, 0o700, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    where = "/".join(parts[: i + 1])
                    kind = stat.S_IFMT(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
                    if kind != stat.S_IFLNK and not create:
                        os.close(fd)
                        return None  # nothing can be under a file: a whiteout there is moot
                    what = "a symbolic link" if kind == stat.S_IFLNK else "no directory"
                    raise UnsafeLayerEntryError(
                        f"{self._layer} has an entry under {where}, which is {what}",
                        expected="a path through directories only",
                        found=where,
                    ) from exc
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _remove(self, parent_fd: int, name: str, path: str) -> None:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent_fd)
            prefix = path + "/"
            for key in [k for k in self.dir_modes if k == path or k.startswith(prefix)]:
                del self.dir_modes[key]
        else:
            os.unlink(name, dir_fd=parent_fd)

    def _mark_upper(self, parts: list[str]) -> None:
        self._upper.add("/".join(parts))
        for i in range(1, len(parts)):
            self._upper_dirs.add("/".join(parts[:i]))

    # --- entries ----------------------------------------------------------------------------

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ImageLimitError(
                "the image has too many entries",
                expected=f"at most {self.limits.max_entries}",
                found=f"more than {self.limits.max_entries}",
            )
        parts = self._split(member.name)
        if not parts:
            if member.isdir():
                return  # the root itself: its mode is ours to choose
            raise UnsafeLayerEntryError(f"{self._layer} has a non-directory named as the root")
        name = parts[-1]
        if name.startswith(WHITEOUT_PREFIX) and member.isfile():
            self._whiteout(parts)
            return
        path = "/".join(parts)
        parent = self._open_dir(parts[:-1], create=True)
        assert parent is not None
        try:
            if member.ischr() or member.isblk() or member.isfifo():
                self._remove(parent, name, path)
                self.dropped.append(path)
                _log.warning(
                    "image_entry_dropped", layer=self._layer, path=path, reason="device or fifo"
                )
                return
            try:
                existing: os.stat_result | None = os.stat(
                    name, dir_fd=parent, follow_symlinks=False
                )
            except FileNotFoundError:
                existing = None
            mode = member.mode & _KEPT_MODE_BITS
            if member.isdir():
                if existing is None or not stat.S_ISDIR(existing.st_mode):
                    self._remove(parent, name, path)
                    os.mkdir(name, 0o700, dir_fd=parent)
                self.dir_modes[path] = mode
            else:
                if existing is not None:
                    self._remove(parent, name, path)
                if member.isfile():
                    self._write(tar, member, parent, name, mode)
                elif member.issym():
                    self._symlink(member, parent, name)
                elif member.islnk():
                    self._hardlink(member, parent, name)
                else:
                    raise UnsafeLayerEntryError(
                        f"{self._layer} has an entry of a type we do not unpack",
                        expected="file, directory, symbolic or hard link",
                        found=f"{path} (type {member.type!r})",
                    )
            self._mark_upper(parts)
        finally:
            os.close(parent)

    def _write(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, name: str, mode: int
    ) -> None:
        if member.size > self.limits.max_file_bytes:
            raise ImageLimitError(
                f"{self._layer} has a too large file",
                expected=f"at most {self.limits.max_file_bytes} bytes",
                found=f"{member.name}: {member.size} bytes",
            )
        data = tar.extractfile(member)
        assert data is not None  # a regular file always has data
        fd = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=parent,
        )
        with os.fdopen(fd, "wb") as out:
            while chunk := data.read(_CHUNK):
                out.write(chunk)
            os.fchmod(out.fileno(), mode)

    def _symlink(self, member: tarfile.TarInfo, parent: int, name: str) -> None:
        target = member.linkname
        if not target or "\x00" in target or len(os.fsencode(target)) > self.limits.max_path_bytes:
            raise UnsafeLayerEntryError(
                f"{self._layer} has a symbolic link with an empty, NUL-holding or too long target",
                found=member.name,
            )
        os.symlink(target, name, dir_fd=parent)

    def _hardlink(self, member: tarfile.TarInfo, parent: int, name: str) -> None:
        parts = self._split(member.linkname, "a hard link target")
        if not parts:
            raise UnsafeLayerEntryError(
                f"{self._layer} has a hard link to the root", found=member.name
            )
        target_dir = self._open_dir(parts[:-1], create=False)
        try:
            st = (
                os.stat(parts[-1], dir_fd=target_dir, follow_symlinks=False)
                if target_dir is not None
                else None
            )
        except FileNotFoundError:
            st = None
        try:
            if st is None or stat.S_ISDIR(st.st_mode):
                raise UnsafeLayerEntryError(
                    f"{self._layer} has a hard link to nothing (or to a folder)",
                    expected="a file an earlier entry put in the root",
                    found=f"{member.name} -> {member.linkname}",
                )
            os.link(
                parts[-1], name, src_dir_fd=target_dir, dst_dir_fd=parent, follow_symlinks=False
            )
        finally:
            if target_dir is not None:
                os.close(target_dir)

    def _whiteout(self, parts: list[str]) -> None:
        marker = parts[-1]
        where = parts[:-1]
        if marker == OPAQUE_MARKER:
            folder = self._open_dir(where, create=False)
            if folder is None:
                return  # no folder to make opaque (umoci makes none either)
            try:
                self._hide_lower(folder, "/".join(where))
            finally:
                os.close(folder)
            return
        victim = marker[len(WHITEOUT_PREFIX) :]
        if victim in {"", ".", ".."}:
            raise UnsafeLayerEntryError(
                f"{self._layer} has a whiteout of {victim!r}, which would erase its own folder",
                found="/".join(parts),
            )
        path = "/".join([*where, victim])
        folder = self._open_dir(where, create=False)
        if folder is None:
            return
        try:
            if path not in self._upper and path not in self._upper_dirs:
                self._remove(folder, victim, path)
                return
            # A whiteout hides lower layers only: of a folder this layer also wrote (or wrote
            # under), only what lower layers put in it goes; a non-folder of this layer stays.
            try:
                st = os.stat(victim, dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                return  # this layer's entry was dropped (a device or FIFO): nothing to hide
            if stat.S_ISDIR(st.st_mode):
                victim_fd = os.open(victim, _DIR_FLAGS, dir_fd=folder)
                try:
                    self._hide_lower(victim_fd, path)
                finally:
                    os.close(victim_fd)
        finally:
            os.close(folder)

    def _hide_lower(self, dir_fd: int, prefix: str) -> None:
        for entry in list(os.scandir(dir_fd)):
            path = f"{prefix}/{entry.name}" if prefix else entry.name
            if path in self._upper or path in self._upper_dirs:
                if entry.is_dir(follow_symlinks=False):
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
                    try:
                        self._hide_lower(child, path)
                    finally:
                        os.close(child)
                continue
            self._remove(dir_fd, entry.name, path)
