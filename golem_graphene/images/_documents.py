"""The JSON documents of an image, parsed strictly where it matters and leniently elsewhere.

The OCI spec tells readers to ignore properties they do not know (``annotations``, ``urls``,
``artifactType``, ``history`` ...), so these models ignore extra keys instead of forbidding them;
what they keep is typed and validated.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from golem_graphene.errors import ImageFormatError, UnsupportedImageError
from golem_graphene.images._stream import Compression
from golem_graphene.images.reference import DIGEST_PATTERN

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_COMPRESSION: dict[str, Compression] = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
}
REF_NAME = "org.opencontainers.image.ref.name"

_Model = TypeVar("_Model", bound=BaseModel)


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, strict=True)


class Platform(_Lenient):
    architecture: str
    os: str
    variant: str | None = None


class Descriptor(_Lenient):
    media_type: str = Field(alias="mediaType")
    digest: str
    size: int = Field(ge=0)
    platform: Platform | None = None
    annotations: dict[str, str] | None = None


class Index(_Lenient):
    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    manifests: list[Descriptor]


class Manifest(_Lenient):
    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    config: Descriptor
    layers: list[Descriptor]


class RuntimeFields(_Lenient):
    entrypoint: list[str] | None = Field(default=None, alias="Entrypoint")
    cmd: list[str] | None = Field(default=None, alias="Cmd")
    env: list[str] | None = Field(default=None, alias="Env")
    working_dir: str | None = Field(default=None, alias="WorkingDir")
    user: str | None = Field(default=None, alias="User")


class RootFs(_Lenient):
    type: str
    diff_ids: list[str]


class Config(_Lenient):
    architecture: str
    os: str
    config: RuntimeFields | None = None
    rootfs: RootFs


class DockerArchiveEntry(_Lenient):
    config: str = Field(alias="Config")
    repo_tags: list[str] | None = Field(default=None, alias="RepoTags")
    layers: list[str] = Field(alias="Layers")


_DOCKER_MANIFEST = TypeAdapter(list[DockerArchiveEntry], config=ConfigDict(strict=True))


def parse(model: type[_Model], data: bytes, what: str) -> _Model:
    """``data`` as ``model``; :class:`ImageFormatError` names ``what`` and the first problem."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise ImageFormatError(f"{what} is malformed at {where}", found=first["msg"]) from exc


def parse_docker_manifest(data: bytes) -> list[DockerArchiveEntry]:
    """A docker archive's ``manifest.json``: a list of images."""
    try:
        return _DOCKER_MANIFEST.validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise ImageFormatError(
            f"the docker archive's manifest.json is malformed at {where}", found=first["msg"]
        ) from exc


def check_digest(digest: str, what: str) -> str:
    """``digest`` if it is ``sha256:<64 hex>``; refuse other algorithms and malformed ones."""
    if DIGEST_PATTERN.fullmatch(digest):
        return digest
    algorithm = digest.partition(":")[0]
    if algorithm in {"sha512", "sha384", "blake3"}:
        raise UnsupportedImageError(
            f"{what} names a digest we do not check", expected="sha256", found=algorithm
        )
    raise ImageFormatError(
        f"{what} names a malformed digest", expected="sha256:<64 hex>", found=digest[:100]
    )
