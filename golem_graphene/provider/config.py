"""The provider's configuration file (TOML), with strict defaults.

Example::

    bind = "127.0.0.1"
    port = 7465
    data_dir = "/var/lib/golem-graphene"
    specs_dir = "/usr/share/golem-graphene/task_specs"
    runner = "sim"                      # "gramine-sgx" on SGX hosts
    allow_insecure = []                 # ["gramine-direct"] to allow that runner, by name
    pcs_url = "https://pccs.example:8081"   # gramine-sgx: where collateral comes from
    warm_enclaves = 1                   # enclaves kept started per task spec in use (0: none)

    [auth]
    open = false                        # true: no requestor token (local use only)
    tokens = ["<long random token>"]    # requestor tokens; each scopes its own tasks

    [images]
    store_dir = ""                      # flattened container image roots ("": data_dir/image-store)
    max_roots = 16                      # least recently used roots beyond either bound are
    max_bytes = 34359738368             #   removed (an image in use is kept)
    accept_from_requestors = false      # true: requestors may upload specs with their own
                                        #   container images (PUT /v1/specs/NAME); the provider
                                        #   then builds and runs their code (in its enclave)
    max_package_bytes = 1073741824      # one uploaded task package (spec and image)
    max_requestor_specs = 64            # uploaded specs kept (data_dir/requestor-specs); the
                                        #   least recently used idle one makes room for a new one

    [limits]
    max_body_bytes = 65536              # JSON request bodies
    max_input_bytes_per_task = 8589934592
    max_concurrent_tasks = 8
    max_task_seconds = 3600
    max_queued_tasks = 64               # created but not yet finished, over all requestors
    upload_idle_seconds = 60            # an upload that sends nothing this long gets 408
    connection_idle_seconds = 75        # a connection with no request in progress is closed
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from golem_graphene import limits
from golem_graphene.errors import ConfigError

__all__ = [
    "AuthConfig",
    "ImagesConfig",
    "LimitsConfig",
    "ProviderConfig",
    "check_bind_address",
    "default_data_dir",
]


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/golem-graphene/provider`` (``~/.local/share/...``)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "golem-graphene" / "provider"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuthConfig(_Model):
    """Who may create tasks."""

    open: bool = False
    tokens: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _some_access(self) -> AuthConfig:
        if self.open and self.tokens:
            raise ValueError("auth.open and auth.tokens exclude each other")
        for token in self.tokens:
            if len(token) < 24:
                raise ValueError("requestor tokens must be at least 24 characters")
        return self

    def owner_of(self, token: str | None) -> str | None:
        """The owner id (token digest) for a valid token; ``"open"`` in open mode."""
        if self.open:
            return "open"
        if token is None:
            return None
        # Header values arrive surrogate-escaped where they are not UTF-8: hash the bytes sent.
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        import hmac

        for known in self.tokens:
            if hmac.compare_digest(hashlib.sha256(known.encode()).hexdigest(), digest):
                return digest
        return None


class LimitsConfig(_Model):
    """Bounds that keep one requestor from exhausting the provider."""

    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 << 20)
    max_input_bytes_per_task: int = Field(default=8 << 30, ge=1)
    max_concurrent_tasks: int = Field(default=8, ge=1, le=4096)
    max_queued_tasks: int = Field(default=64, ge=1, le=100_000)
    max_task_seconds: float = Field(default=3600.0, gt=0)
    upload_idle_seconds: float = Field(default=60.0, gt=0)
    # A connection with no request in progress (idle keep-alive, or headers still arriving,
    # as a slowloris client sends them) is closed after this long.
    connection_idle_seconds: float = Field(default=75.0, gt=0)


class ImagesConfig(_Model):
    """Where the container images' flattened roots are kept, and how many of them; whether
    requestors may bring their own specs and images, and how many and how large."""

    store_dir: Path | None = None
    max_roots: int = Field(default=limits.MAX_IMAGE_STORE_ROOTS, ge=1, le=10_000)
    max_bytes: int = Field(default=limits.MAX_IMAGE_STORE_BYTES, ge=1 << 20)
    accept_from_requestors: bool = False
    max_package_bytes: int = Field(default=1 << 30, ge=1 << 10, le=64 << 30)
    max_requestor_specs: int = Field(default=64, ge=1, le=100_000)


class ProviderConfig(_Model):
    """The whole provider configuration."""

    bind: str = "127.0.0.1"
    port: int = Field(default=7465, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    specs_dir: Path = Path("task_specs")
    runner: Literal["sim", "gramine-sgx", "gramine-direct"] = "sim"
    allow_insecure: tuple[Literal["gramine-direct"], ...] = ()
    pcs_url: str | None = None
    # Standby enclaves per image in use: a task takes a started one instead of waiting for a
    # launch (golem_graphene/host/standby_pool.py).
    warm_enclaves: int = Field(default=1, ge=0, le=64)
    auth: AuthConfig = AuthConfig()
    images: ImagesConfig = ImagesConfig()
    limits: LimitsConfig = LimitsConfig()

    @property
    def image_store_dir(self) -> Path:
        """``images.store_dir``, or ``data_dir/image-store`` when unset."""
        return self.images.store_dir or self.data_dir / "image-store"

    @field_validator("bind")
    @classmethod
    def _bind_is_an_address(cls, value: str) -> str:
        check_bind_address(value)
        return value

    @model_validator(mode="after")
    def _auth_required(self) -> ProviderConfig:
        if not self.auth.open and not self.auth.tokens:
            raise ValueError("set auth.tokens (or auth.open = true for local use)")
        if self.runner == "gramine-direct" and "gramine-direct" not in self.allow_insecure:
            raise ValueError('runner gramine-direct needs allow_insecure = ["gramine-direct"]')
        return self

    @classmethod
    def from_toml(cls, text: str, *, base: Path | None = None) -> ProviderConfig:
        """Parse a config file's text; relative paths resolve against ``base``."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the provider config is not valid TOML: {exc}") from exc
        config = cls.from_mapping(data, what="provider config")
        if base is not None:
            config = config.model_copy(
                update={
                    "data_dir": (base / config.data_dir).expanduser(),
                    "specs_dir": (base / config.specs_dir).expanduser(),
                    "images": config.images.model_copy(
                        update={
                            "store_dir": (base / config.images.store_dir).expanduser()
                            if config.images.store_dir
                            else None
                        }
                    ),
                }
            )
        return config

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, what: str = "provider config"
    ) -> ProviderConfig:
        """Validate settings; raises ConfigError naming the setting and the value refused."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(config)"
            message = str(first["msg"]).removeprefix("Value error, ")
            shown = "" if where == "(config)" else f" = {_show(first.get('input'))}"
            raise ConfigError(f"{what} {where}{shown}: {message}") from None

    def with_overrides(self, overrides: Mapping[str, Any], *, what: str) -> ProviderConfig:
        """This config with ``overrides`` (command-line flags), validated like the file was."""
        data = self.model_dump()
        data.update(overrides)
        return type(self).from_mapping(data, what=what)

    @classmethod
    def from_path(cls, path: Path) -> ProviderConfig:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the provider config {path}: {exc}") from exc
        return cls.from_toml(text, base=path.parent)


def check_bind_address(value: str) -> None:
    """Raises ValueError unless ``value`` is an IP address literal or ``localhost``."""
    if value == "localhost":
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(
            "not an IP address (give one, such as 127.0.0.1, ::1 or 0.0.0.0)"
        ) from None


def _show(value: object) -> str:
    """A refused value for a message: short and escaped (``repr`` of strings)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
