"""``deploy``: validate the task package and prepare the enclave image for the activity.

A task package is a folder, or a tar archive (optionally compressed), holding ``task.toml`` and
the container image it names. The archive is untrusted: it is unpacked by
:mod:`golem_graphene.host.task_package` (only regular files and folders with plain relative
names, within count and size bounds, nothing through ``tarfile``'s own extraction). The image
is built once per package content and code version and cached in the runtime's data folder; the
activity's work directory records which image it runs.

The ExeUnit reads ``DeployResult`` JSON from stdout (research/golem.md section 2.6):
``{"valid": {"Ok": msg} | {"Err": msg}, "vols": [{"name", "path"}], "startMode": "blocking"}``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

import golem_graphene
from golem_graphene._internal.files import write_atomic
from golem_graphene.errors import ConfigError, Error, RunnerError
from golem_graphene.host.image import EnclaveImage, build_image
from golem_graphene.host.task_package import (
    MAX_PACKAGE_BYTES,
    MAX_PACKAGE_FILES,
    PackageError,
    copy_folder,
    extract_tar,
    tree_digest,
)
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
    key = hashlib.sha256(f"{tree_digest(package)}:{_code_digest()}".encode()).hexdigest()
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
            copy_folder(task_package, unpacked)
        elif task_package.is_file():
            extract_tar(task_package, unpacked)
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
            package_sha256=tree_digest(unpacked),
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
