"""Task specs: what a confidential task runs, on which inputs, with which limits and identity.

A spec is a TOML file (documented in ``task_specs/README.md``) beside its app files. Both sides
read it: the provider builds the enclave image from it, the requestor takes its expected
measurement (or MRSIGNER policy), input limits and declared outputs from it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from golem_graphene.errors import ConfigError, ImageError
from golem_graphene.images.reference import ImageReference, parse_reference
from golem_graphene.protocol.names import RUNNER_NAMES, validate_file_name

__all__ = [
    "AttestationSpec",
    "EnclaveSpec",
    "InputSpec",
    "LimitsSpec",
    "OutputsSpec",
    "TaskSpec",
    "parse_size",
]

_SIZE_RE = re.compile(r"([0-9]{1,15})([KkMmGg]?)")


def parse_size(value: object) -> int:
    """``"64M"``-style sizes (K/M/G are powers of 1024) or plain integers, in bytes."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string such as '64M'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size must not be negative")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.strip())
        if match:
            digits, unit = match.groups()
            return int(digits) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit.lower()]
    raise ValueError(f"not a size: {value!r} (use bytes or e.g. '64M')")


Size = Annotated[int, BeforeValidator(parse_size)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


LEGACY_ENCLAVE_KEYS = ("runtime", "app_files", "trusted_files")
"""Keys of the host-path spec format, refused since specs name a container image."""


class EnclaveSpec(_Model):
    """The enclave: a container image, what of its config to override, and SGX parameters.

    ``image`` is an image reference (``oci:``, ``oci-archive:``, ``docker-archive:``) pinned by
    ``@sha256:``, its path relative to the spec's folder; the image's config gives the default
    Entrypoint, Cmd, Env and WorkingDir, which ``entrypoint``, ``args``, ``env`` and ``workdir``
    override (``workdir = "/workspace"``: the task's own folder whatever the image says).
    """

    image: str
    entrypoint: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = Field(default=None, max_length=4096)
    enclave_size: Size = 1 << 30
    max_threads: int = Field(default=16, ge=1, le=1024)
    isvprodid: int = Field(default=0, ge=0, le=0xFFFF)
    isvsvn: int = Field(default=0, ge=0, le=0xFFFF)
    debug: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_host_paths(cls, data: object) -> object:
        if isinstance(data, dict):
            legacy = [key for key in LEGACY_ENCLAVE_KEYS if key in data]
            if legacy:
                raise ValueError(
                    f"{', '.join(legacy)}: specs no longer name host files; name a container "
                    'image instead ([enclave] image = "oci-archive:FILE@sha256:DIGEST", see the '
                    "README's migration note)"
                )
        return data

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        try:
            reference = parse_reference(value)
        except ImageError as exc:
            raise ValueError(exc.describe()) from None
        if reference.digest is None:
            raise ValueError(
                "the image must be pinned by digest (append @sha256:DIGEST; "
                "golem-graphene measure prints it)"
            )
        if reference.transport != "oci" and reference.path.endswith("/"):
            raise ValueError("an archive image names a file, not a folder")
        return value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or not value[0]):
            raise ValueError("entrypoint must name a program (a non-empty list)")
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "\0" in value):
            raise ValueError("workdir must be an absolute path in the image")
        return value

    def reference(self) -> ImageReference:
        """The parsed ``image`` reference (valid: checked when the spec was read)."""
        return parse_reference(self.image)

    @field_validator("enclave_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value <= 0 or value & (value - 1):
            raise ValueError("enclave_size must be a power of two (an SGX rule)")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or "\0" in val:
                raise ValueError(f"invalid environment variable {key!r}")
        return value


class InputSpec(_Model):
    """One named input file and its size limit."""

    name: str
    max_size: Size = 1 << 30
    required: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_file_name(value, "input name")


class OutputsSpec(_Model):
    """Declared outputs: file names or glob patterns in the workload's output folder."""

    files: tuple[str, ...] = Field(min_length=1)

    @field_validator("files")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            validate_file_name(pattern.replace("*", "x").replace("?", "x"), "output pattern")
        return value

    def matches(self, name: str) -> bool:
        """True when ``name`` is a declared output."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.files)


class LimitsSpec(_Model):
    """Resource limits of one run."""

    wall_seconds: float = Field(default=300.0, gt=0, le=7 * 24 * 3600)
    cpu_seconds: int | None = Field(default=None, gt=0)
    memory: Size = 1 << 30
    output_size: Size = 256 << 20
    max_outputs: int = Field(default=64, ge=1, le=10_000)


class AttestationSpec(_Model):
    """Which enclave the requestor accepts: MRENCLAVE per runner, or a signer policy."""

    mrenclave: dict[str, str] = Field(default_factory=dict)
    mrsigner: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    isvprodid: int | None = Field(default=None, ge=0, le=0xFFFF)
    min_isvsvn: int | None = Field(default=None, ge=0, le=0xFFFF)

    @field_validator("mrenclave")
    @classmethod
    def _runners(cls, value: dict[str, str]) -> dict[str, str]:
        for runner, digest in value.items():
            if runner not in RUNNER_NAMES:
                raise ValueError(f"unknown runner {runner!r} (known: {', '.join(RUNNER_NAMES)})")
            if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
                raise ValueError(f"mrenclave for {runner!r} must be 64 hex digits")
        return value


class TaskSpec(_Model):
    """A parsed task spec; build it with :meth:`from_path` or :meth:`from_toml`."""

    name: str
    description: str = ""
    enclave: EnclaveSpec
    inputs: tuple[InputSpec, ...] = ()
    outputs: OutputsSpec
    limits: LimitsSpec = LimitsSpec()
    attestation: AttestationSpec = AttestationSpec()
    network: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_file_name(value, "spec name")

    @field_validator("inputs")
    @classmethod
    def _unique(cls, value: tuple[InputSpec, ...]) -> tuple[InputSpec, ...]:
        names = [i.name for i in value]
        if len(set(names)) != len(names):
            raise ValueError("input names must be unique")
        return value

    @classmethod
    def from_toml(cls, text: str) -> TaskSpec:
        """Parse spec TOML; raises :class:`ConfigError` naming the bad field."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the task spec is not valid TOML: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(spec)"
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"task spec field {where}: {message}") from None

    @classmethod
    def from_path(cls, path: str | Path) -> TaskSpec:
        """Read ``task.toml`` (or a folder holding it)."""
        file = _spec_file(Path(path))
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the task spec {file}: {exc}") from exc
        return cls.from_toml(text)

    def input(self, name: str) -> InputSpec | None:
        """The declared input called ``name``."""
        return next((i for i in self.inputs if i.name == name), None)


def _spec_file(path: Path) -> Path:
    return path / "task.toml" if path.is_dir() else path


def spec_digest(path: str | Path) -> str:
    """SHA-256 of the spec file's bytes: how requestor and provider agree on a spec."""
    file = _spec_file(Path(path))
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"cannot read the task spec {file}: {exc}") from exc
