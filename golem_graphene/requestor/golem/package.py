"""Task packages: the spec and its container image as a reproducible tar, named by its SHA3 hash.

On Golem the provider's ExeUnit downloads the payload named by the demand's
``golem.srv.comp.task_package`` property, ``hash:sha3:<hex>:<url>`` (research/golem.md
sections 2.1 and 2.5), and hands it to the runtime's ``deploy`` as ``--task-package``. Our
package holds ``task.toml`` and the spec's container image; it carries no secret (inputs
travel sealed, later). Its bytes are reproducible (sorted entries, zero times and owners), so
the same spec always gives the same hash. The hash here is SHA3-224, the 56-hex-digit form of
Golem's package hashes.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from golem_graphene.errors import ConfigError
from golem_graphene.protocol.spec import TaskSpec

__all__ = ["TaskPackage", "build_task_package", "task_package_property"]


@dataclass(frozen=True)
class TaskPackage:
    """A built package: where it is and its hashes."""

    path: Path
    sha3_224: str
    size: int

    def property_value(self, url: str) -> str:
        """``golem.srv.comp.task_package`` for this package served at ``url``."""
        return task_package_property(self.sha3_224, url)


def task_package_property(sha3_hex: str, url: str) -> str:
    """``hash:sha3:<hex>:<url>``; raises :class:`ConfigError` for a malformed hash or URL."""
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
    must lie in the spec's folder: the package carries it, the provider checks its digest."""
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
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            _add_file(tar, files[name], name)
    data = buffer.getvalue()
    target = Path(out)
    target.write_bytes(data)
    return TaskPackage(target, hashlib.sha3_224(data).hexdigest(), len(data))
