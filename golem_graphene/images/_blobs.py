"""Where an image's files live: a folder (``oci:``) or a tar (``oci-archive:``,
``docker-archive:``). Names are paths inside the layout or archive, never host paths."""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import IO, Protocol

from golem_graphene.errors import (
    ImageBlobMissingError,
    ImageFormatError,
    ImageLimitError,
    ImageReferenceError,
)

_MAX_LINK_HOPS = 8


class Blobs(Protocol):
    def open(self, name: str) -> IO[bytes]:
        """The file at ``name``; :class:`ImageBlobMissingError` when there is none."""

    def close(self) -> None: ...


def _normal(name: str) -> str | None:
    norm = posixpath.normpath(name.lstrip("/"))
    if norm in {".", ""} or norm == ".." or norm.startswith("../"):
        return None
    return norm


class FolderBlobs:
    """Files of an OCI image layout folder."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise ImageReferenceError("no image layout folder there", found=str(root))
        self._root = root

    def _path(self, name: str) -> Path:
        norm = _normal(name)
        if norm is None:
            raise ImageBlobMissingError("a blob name leaves the image layout", found=name)
        return self._root / norm

    def open(self, name: str) -> IO[bytes]:
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise ImageBlobMissingError(
                "the image layout lacks a file", expected=name, found="nothing"
            ) from exc
        except OSError as exc:
            raise ImageBlobMissingError(
                f"cannot read {name} of the image layout", found=str(exc)
            ) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ImageBlobMissingError("an image layout entry is no regular file", found=name)
        return os.fdopen(fd, "rb")

    def close(self) -> None:
        pass


class TarBlobs:
    """Files of an uncompressed tar (as skopeo, ``docker save`` and ``podman save`` write)."""

    def __init__(self, path: Path, *, max_members: int) -> None:
        try:
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 - closed by close()
        except FileNotFoundError as exc:
            raise ImageReferenceError("no image archive there", found=str(path)) from exc
        except (tarfile.TarError, OSError) as exc:
            raise ImageFormatError(f"{path} is no readable tar", found=str(exc)) from exc
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            for count, member in enumerate(self._tar, start=1):
                if count > max_members:
                    raise ImageLimitError(
                        "an image archive has too many members",
                        expected=f"at most {max_members}",
                        found=f"more than {max_members}",
                    )
                norm = _normal(member.name)
                if norm is None or not (member.isfile() or member.issym() or member.islnk()):
                    continue
                if norm in self._members:
                    raise ImageFormatError("an image archive holds a file twice", found=norm)
                self._members[norm] = member
        except tarfile.TarError as exc:
            self._tar.close()
            raise ImageFormatError(f"{path} is a damaged tar", found=str(exc)) from exc
        except BaseException:
            self._tar.close()
            raise

    def _member(self, name: str) -> tarfile.TarInfo:
        norm = _normal(name)
        member = self._members.get(norm) if norm is not None else None
        if member is None:
            raise ImageBlobMissingError(
                "the image archive lacks a file", expected=name, found="nothing"
            )
        return member

    def open(self, name: str) -> IO[bytes]:
        member = self._member(name)
        # Links inside the archive (``docker save``'s ``<id>/layer.tar``) are resolved here, by
        # a bounded number of hops, not by tarfile (which recurses without bound on a loop).
        for _ in range(_MAX_LINK_HOPS):
            if member.isfile():
                break
            target = member.linkname
            if member.issym():
                target = posixpath.join(posixpath.dirname(member.name), target)
            member = self._member(target)
        else:
            raise ImageFormatError("an image archive's links loop or chain too long", found=name)
        stream = self._tar.extractfile(member)
        if stream is None:
            raise ImageBlobMissingError("an image archive entry is no file", found=name)
        return stream

    def close(self) -> None:
        self._tar.close()
