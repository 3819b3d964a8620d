"""``deploy``: validate the task package and prepare the enclave image for the activity.

A task package is a folder, or a tar archive (optionally compressed), holding ``task.toml`` and
the app files it names. The archive is untrusted: only regular files and folders with plain
relative names are accepted, within count and size bounds, and nothing is extracted through
``tarfile``'s own extraction. The image is built once per package content and code version and
cached in the runtime's data folder; the activity's work directory records which image it runs.

The ExeUnit reads ``DeployResult`` JSON from stdout (research/golem.md section 2.6):
``{"valid": {"Ok": msg} | {"Err": msg}, "vols": [{"name", "path"}], "startMode": "blocking"}``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import structlog

import golem_graphene
from golem_graphene._internal.files import write_atomic
from golem_graphene.errors import ConfigError, Error, RunnerError
from golem_graphene.host.image import EnclaveImage, build_image
from golem_graphene.protocol.spec import TaskSpec, spec_digest
from golem_graphene.runtime.settings import STATE_DIR, VOLUME_NAME, VOLUME_PATH, RuntimeSettings

__all__ = [
    "MAX_PACKAGE_BYTES",
    "MAX_PACKAGE_FILES",
    "Deployment",
    "PackageError",
    "deploy",
    "deploy_result",
]

log = structlog.get_logger(__name__)

MAX_PACKAGE_FILES = 10_000
"""Files and folders in a task package."""

MAX_PACKAGE_BYTES = 1 << 30
"""Total size of a task package's files once unpacked."""

_PART_RE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}")
_COPY_CHUNK = 1 << 20


class PackageError(ConfigError):
    """The task package is malformed or breaks a bound; the message names the entry."""

    code = "task_package"


@dataclass(frozen=True)
class Deployment:
    """What ``deploy`` prepared for an activity (``<workdir>/.gramine-sgx/deploy.json``)."""

    image_dir: str
    spec_name: str
    spec_sha256: str
    package_sha256: str
    runner: str

    @staticmethod
    def path(workdir: Path) -> Path:
        return workdir / STATE_DIR / "deploy.json"

    def save(self, workdir: Path) -> None:
        target = self.path(workdir)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(target, json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def load(cls, workdir: Path) -> Deployment:
        """The activity's deployment; raises :class:`RunnerError` when ``deploy`` did not run."""
        try:
            return cls(**json.loads(cls.path(workdir).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise RunnerError(
                f"the activity in {workdir} is not deployed (run the ExeScript deploy first)"
            ) from exc

    def image(self) -> EnclaveImage:
        return EnclaveImage.load(Path(self.image_dir))


def _check_name(name: str) -> PurePosixPath:
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


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            _extract_members(tar, dest)
    except PackageError:
        raise
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise PackageError(
            f"the task package is neither a folder nor a readable tar archive: {exc}"
        ) from exc


def _extract_members(tar: tarfile.TarFile, dest: Path) -> None:
    count = total = 0
    for member in tar:
        count += 1
        if count > MAX_PACKAGE_FILES:
            raise PackageError("the task package has too many entries", found=count)
        if member.name in (".", "./"):
            continue
        rel = _check_name(member.name)
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
        if total > MAX_PACKAGE_BYTES:
            raise PackageError(
                "the task package is too large",
                expected=f"<= {MAX_PACKAGE_BYTES} bytes",
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


def _copy_folder(source: Path, dest: Path) -> None:
    count = total = 0
    for root, dirs, files in os.walk(source, followlinks=False):
        base = Path(root)
        for name in sorted(dirs + files):
            path = base / name
            rel = _check_name(path.relative_to(source).as_posix())
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


def _tree_digest(root: Path) -> str:
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


def _code_digest() -> str:
    """SHA-256 of this installation's package code: an image embeds the agent built from it."""
    root = Path(golem_graphene.__file__).resolve().parent
    digest = hashlib.sha256(golem_graphene.__version__.encode())
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or path.suffix not in (".py", ".template"):
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cached_image(package: Path, spec: TaskSpec, settings: RuntimeSettings) -> EnclaveImage:
    key = hashlib.sha256(f"{_tree_digest(package)}:{_code_digest()}".encode()).hexdigest()
    images = settings.images_dir
    images.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = images / f"{spec.name}-{key[:24]}"
    with open(images / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            image = EnclaveImage.load(out)
            log.info("enclave image reused", image=out.name)
            return image
        except Error:
            pass
        log.info("building the enclave image", spec=spec.name, image=out.name)
        # The package's image is opened by the spec's pinned digest: a package whose image
        # does not match it is refused (ImageDigestError) before anything is built.
        return build_image(
            package,
            out,
            key_path=settings.signing_key_path,
            store=settings.image_store,
            force=True,
        )


def deploy(
    workdir: Path,
    task_package: Path | None,
    settings: RuntimeSettings,
    *,
    mem_gib: float | None = None,
) -> Deployment:
    """Validate ``task_package``, build (or reuse) its image and record it for ``workdir``.

    Raises :class:`PackageError` for a malformed package, :class:`ConfigError` for a spec this
    provider does not run (network access, more memory than granted) and
    :class:`RunnerError`/:class:`ManifestError` when the image cannot be built.
    """
    if task_package is None:
        raise PackageError("no task package: the ExeUnit passes it with --task-package")
    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / STATE_DIR
    state.mkdir(exist_ok=True, mode=0o700)
    unpacked = Path(tempfile.mkdtemp(prefix="package-", dir=state))
    try:
        if task_package.is_dir():
            _copy_folder(task_package, unpacked)
        elif task_package.is_file():
            _extract_tar(task_package, unpacked)
        else:
            raise PackageError("the task package does not exist", found=str(task_package))
        if not (unpacked / "task.toml").is_file():
            raise PackageError("the task package has no task.toml at its top level")
        spec = TaskSpec.from_path(unpacked / "task.toml")
        if spec.network and not settings.allow_network:
            raise ConfigError("this provider gives enclaves no network (the spec asks for it)")
        if mem_gib is not None and spec.enclave.enclave_size > mem_gib * (1 << 30):
            raise ConfigError(
                "the enclave needs more memory than the activity grants",
                expected=f"<= {mem_gib:g} GiB (--mem-gib)",
                found=f"{spec.enclave.enclave_size / (1 << 30):g} GiB",
            )
        image = _cached_image(unpacked, spec, settings)
        deployment = Deployment(
            image_dir=str(image.directory.resolve()),
            spec_name=spec.name,
            spec_sha256=spec_digest(unpacked / "task.toml"),
            package_sha256=_tree_digest(unpacked),
            runner=settings.runner,
        )
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    (workdir / VOLUME_NAME).mkdir(exist_ok=True)
    deployment.save(workdir)
    log.info("deployed", spec=deployment.spec_name, image=Path(deployment.image_dir).name)
    return deployment


def deploy_result(outcome: Deployment | Error) -> dict[str, Any]:
    """The ``DeployResult`` JSON for the ExeUnit: the volume and blocking start mode, or Err."""
    if isinstance(outcome, Error):
        return {"valid": {"Err": f"{outcome.code}: {outcome.describe()}"}, "vols": [], **_mode()}
    message = f"{outcome.spec_name} ({outcome.runner})"
    return {
        "valid": {"Ok": message},
        "vols": [{"name": VOLUME_NAME, "path": VOLUME_PATH}],
        **_mode(),
    }


def _mode() -> dict[str, str]:
    # The enclave (and its keys) must outlive one ExeScript command: only the blocking mode's
    # long-lived server process can hold it.
    return {"startMode": "blocking"}
