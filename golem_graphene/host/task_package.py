"""Task packages: a spec and its container image as one reproducible tar, packed and unpacked
safely.

A package holds ``task.toml`` and the spec's container image (an archive file, or an OCI
layout folder's files), nothing else; it carries no secret (inputs travel sealed, later). Its
bytes are reproducible (sorted entries, zero times and owners), so the same spec always gives
the same package. The Golem runtime's ``deploy`` (:mod:`golem_graphene.runtime.deploy`) and the
HTTP provider's spec upload (``PUT /v1/specs/{name}``) both unpack packages they did not make:
only regular files and folders with plain relative names are accepted, within count and size
bounds, and nothing is extracted through ``tarfile``'s own extraction.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from golem_graphene.errors import ConfigError
from golem_graphene.protocol.spec import TaskSpec

__all__ = [
    "MAX_PACKAGE_BYTES",
    "MAX_PACKAGE_FILES",
    "PackageError",
    "TaskPackage",
    "build_task_package",
    "check_name",
    "copy_folder",
    "extract_members",
    "extract_tar",
    "task_package_property",
    "tree_digest",
]

MAX_PACKAGE_FILES = 10_000
"""Files and folders in a task package."""

MAX_PACKAGE_BYTES = 1 << 30
"""Total size of a task package's files once unpacked."""

_PART_RE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}")
_COPY_CHUNK = 1 << 20


class PackageError(ConfigError):
    """The task package is malformed or breaks a bound; the message names the entry."""

    code = "task_package"


# --- packing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskPackage:
    """A built package: where it is and its hashes (SHA3-224 names a Golem package, SHA-256
    any other)."""

    path: Path
    sha3_224: str
    size: int
    sha256: str = ""

    def property_value(self, url: str) -> str:
        """``golem.srv.comp.task_package`` for this package served at ``url``."""
        return task_package_property(self.sha3_224, url)


def task_package_property(sha3_hex: str, url: str) -> str:
    """Golem's ``hash:sha3:<hex>:<url>``; raises :class:`ConfigError` for a malformed hash or
    URL."""
    if len(sha3_hex) != 56 or any(c not in "0123456789abcdef" for c in sha3_hex):
        raise ConfigError("the package hash must be 56 lowercase hex digits (SHA3-224)")
    if not url.startswith(("http://", "https://")):
        raise ConfigError("the package URL must be http(s)", found=url)
    return f"hash:sha3:{sha3_hex}:{url}"


def _add_file(tar: tarfile.TarFile, source: Path, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.size = source.stat().st_size
    info.mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(source, "rb") as f:
        tar.addfile(info, f)


def _image_files(spec: TaskSpec, root: Path) -> dict[str, Path]:
    """The spec's container image (an archive file, or an OCI layout folder's files), which
    must lie in the spec's folder: the package carries it, the unpacking side checks its
    digest."""
    reference = spec.enclave.reference()
    rel = Path(reference.path)
    if rel.is_absolute() or ".." in rel.parts:
        raise ConfigError(
            "a packaged spec names its image by a path inside the spec's folder",
            found=reference.path,
        )
    source = root / rel
    if source.is_symlink():
        raise ConfigError("the spec's image is a symbolic link", found=reference.path)
    if source.is_file() and reference.transport != "oci":
        return {rel.as_posix(): source}
    if source.is_dir() and reference.transport == "oci":
        files: dict[str, Path] = {}
        for child in sorted(source.rglob("*")):
            if child.is_symlink():
                raise ConfigError("the image folder holds a symbolic link", found=str(child))
            if child.is_file():
                files[child.relative_to(root).as_posix()] = child
        return files
    raise ConfigError("the spec's image is missing beside the spec", found=reference.path)


def build_task_package(spec: str | Path, out: str | Path) -> TaskPackage:
    """Pack the spec at ``spec`` (folder or ``task.toml``) into the tar ``out``.

    Raises :class:`ConfigError` when the spec is invalid or its image is missing, outside the
    spec's folder, or a symbolic link (a package holds regular files only).
    """
    spec_path = Path(spec)
    spec_file = spec_path / "task.toml" if spec_path.is_dir() else spec_path
    parsed = TaskSpec.from_path(spec_file)
    files: dict[str, Path] = {"task.toml": spec_file}
    files.update(_image_files(parsed, spec_file.parent))
    target = Path(out)
    # Written to the file as it is packed (an image may be large), then hashed from it.
    with tarfile.open(target, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            _add_file(tar, files[name], name)
    sha3 = hashlib.sha3_224()
    sha2 = hashlib.sha256()
    size = 0
    with open(target, "rb") as f:
        while chunk := f.read(_COPY_CHUNK):
            sha3.update(chunk)
            sha2.update(chunk)
            size += len(chunk)
    return TaskPackage(target, sha3.hexdigest(), size, sha2.hexdigest())


# --- unpacking ---------------------------------------------------------------------------------


def check_name(name: str) -> PurePosixPath:
    """A package entry's name as a relative path of plain parts; raises :class:`PackageError`."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts:
        raise PackageError("a package entry must have a relative name", found=name)
    for part in path.parts:
        if not _PART_RE.fullmatch(part):
            raise PackageError(
                "a package entry's name must be plain (letters, digits, ._+-, no leading dot, "
                "no '..')",
                found=name,
            )
    return path


def extract_tar(archive: Path, dest: Path, *, max_bytes: int = MAX_PACKAGE_BYTES) -> None:
    """Unpack the tar ``archive`` (optionally compressed) into the folder ``dest``; raises
    :class:`PackageError` for anything but plain files and folders within the bounds."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            extract_members(tar, dest, max_bytes=max_bytes)
    except PackageError:
        raise
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise PackageError(
            f"the task package is neither a folder nor a readable tar archive: {exc}"
        ) from exc


def extract_members(
    tar: tarfile.TarFile, dest: Path, *, max_bytes: int = MAX_PACKAGE_BYTES
) -> None:
    """Unpack an open tar's regular files and folders into ``dest`` (never through a link)."""
    count = total = 0
    for member in tar:
        count += 1
        if count > MAX_PACKAGE_FILES:
            raise PackageError("the task package has too many entries", found=count)
        if member.name in (".", "./"):
            continue
        rel = check_name(member.name)
        target = dest.joinpath(*rel.parts)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not member.isfile():
            raise PackageError(
                "the task package may hold only regular files and folders",
                found=f"{member.name} (type {member.type!r})",
            )
        total += member.size
        if total > max_bytes:
            raise PackageError(
                "the task package is too large",
                expected=f"<= {max_bytes} bytes",
                found=f"> {total - member.size}",
            )
        if target.exists():
            raise PackageError("the task package names a file twice", found=member.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        if source is None:
            raise PackageError("unreadable package entry", found=member.name)
        with source, open(target, "xb") as out:
            shutil.copyfileobj(source, out, _COPY_CHUNK)


def copy_folder(source: Path, dest: Path) -> None:
    """Copy a package given as a folder into ``dest``, with the bounds and name rules of
    :func:`extract_members`; symbolic links are refused."""
    count = total = 0
    for root, dirs, files in os.walk(source, followlinks=False):
        base = Path(root)
        for name in sorted(dirs + files):
            path = base / name
            rel = check_name(path.relative_to(source).as_posix())
            count += 1
            if count > MAX_PACKAGE_FILES:
                raise PackageError("the task package has too many entries", found=count)
            if path.is_symlink():
                raise PackageError("the task package may not hold symbolic links", found=str(rel))
            target = dest.joinpath(*rel.parts)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif path.is_file():
                total += path.stat().st_size
                if total > MAX_PACKAGE_BYTES:
                    raise PackageError("the task package is too large", found=f"> {total}")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            else:
                raise PackageError("the task package may hold only files and folders", found=rel)


def tree_digest(root: Path) -> str:
    """SHA-256 over every file's relative name and content, in name order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix().encode()
        digest.update(len(rel).to_bytes(4, "big") + rel)
        with open(path, "rb") as f:
            while chunk := f.read(_COPY_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()
