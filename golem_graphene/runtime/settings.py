"""Names, paths and settings of the ``gramine-sgx`` ExeUnit runtime.

The names the requestor shares with the runtime (runtime name, volume path, entry points) are
in :mod:`golem_graphene.protocol.golem` and re-exported here; the runtime's own are here: the
volume's host folder ``<workdir>/io``, its private state folder, its settings, and the usage
counter it reports (``golem.usage.gramine-sgx.enclave_sec``, ours).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import golem_graphene
from golem_graphene.errors import ConfigError
from golem_graphene.host.runners import EnclaveRunner, make_runner
from golem_graphene.images import ImageStore
from golem_graphene.protocol.golem import ENTRYPOINTS, RUNTIME_NAME, VOLUME_PATH
from golem_graphene.protocol.names import RUNNER_NAMES

__all__ = [
    "COUNTER_ENCLAVE_SECONDS",
    "ENTRYPOINTS",
    "RUNTIME_NAME",
    "RUNTIME_VERSION",
    "SERVICE_PROTOCOL_VERSION",
    "STATE_DIR",
    "VOLUME_NAME",
    "VOLUME_PATH",
    "RuntimeSettings",
    "default_runtime_data_dir",
]

RUNTIME_VERSION: Final = golem_graphene.__version__
"""``golem.runtime.version`` (the descriptor's semver ``version``)."""

SERVICE_PROTOCOL_VERSION: Final = "0.1.0"
"""The blocking-mode protocol version the ExeUnit sends in ``Hello`` (and we answer with)."""

VOLUME_NAME: Final = "io"
"""The volume's folder under the activity's work directory."""

STATE_DIR: Final = ".gramine-sgx"
"""The runtime's private folder under the work directory (deployment, enclave logs)."""

COUNTER_ENCLAVE_SECONDS: Final = "golem.usage.gramine-sgx.enclave_sec"
"""Usage counter: wall-clock seconds enclaves of this activity have been alive (ours)."""


def default_runtime_data_dir() -> Path:
    """``$XDG_DATA_HOME/golem-graphene/runtime`` (``~/.local/share/...``): images, keys, PKI."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "golem-graphene" / "runtime"


@dataclass(frozen=True)
class RuntimeSettings:
    """How this provider runs enclaves: the runner, where images and keys live, what it allows.

    ``runner`` defaults to ``gramine-sgx``; ``sim`` gives no SGX protection and is for
    development; ``gramine-direct`` runs only when named in ``allow_insecure``. Enclaves get no
    network unless ``allow_network`` (a task spec asking for network is refused at deploy).
    """

    runner: str = "gramine-sgx"
    data_dir: Path = Path()
    pcs_url: str | None = None
    allow_insecure: tuple[str, ...] = ()
    allow_network: bool = False
    counter_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.runner not in RUNNER_NAMES:
            raise ConfigError(
                "unknown runner", expected=" or ".join(RUNNER_NAMES), found=self.runner
            )
        if self.data_dir == Path():
            object.__setattr__(self, "data_dir", default_runtime_data_dir())
        if not self.counter_interval > 0:
            raise ConfigError("the counter interval must be positive", found=self.counter_interval)

    @property
    def signing_key_path(self) -> Path:
        """The enclave signing key (RSA-3072, e = 3) this provider signs images with."""
        return self.data_dir / "enclave-key.pem"

    @property
    def images_dir(self) -> Path:
        """Built enclave images, one folder per task package and code version."""
        return self.data_dir / "images"

    @property
    def image_store(self) -> ImageStore:
        """Flattened container image roots (the default bounds of the image store)."""
        return ImageStore(self.data_dir / "image-store")

    def make_runner(self) -> EnclaveRunner:
        """The configured runner (raises :class:`RunnerError` for gramine-direct not allowed)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return make_runner(
            self.runner,
            data_dir=self.data_dir,
            allow_insecure=self.allow_insecure,
            pcs_url=self.pcs_url,
        )
