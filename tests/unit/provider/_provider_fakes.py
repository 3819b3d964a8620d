"""A fake enclave runner for the provider's unit tests (no sandbox, no image build).

:class:`FakeRunner` launches :class:`FakeEnclave` objects that behave like the agent on its
control channel (``docs/agent-protocol.md``): they report ``ready``; in ``attest`` mode they
answer ``attest`` with evidence (a placeholder quote), then relay whatever the test pushes with
:meth:`FakeEnclave.push`; in ``hang`` mode they never answer ``attest``; in ``silent`` mode they
never even report ``ready``; in ``fail`` mode the launch itself fails.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from golem_graphene.errors import RunnerError
from golem_graphene.host.image import EnclaveImage
from golem_graphene.protocol.agent import decode_frame, encode_frame
from golem_graphene.protocol.spec import spec_digest
from golem_graphene.provider.config import ProviderConfig
from golem_graphene.provider.engine import TaskEngine

# The spec's container image is never opened: make_engine marks its enclave image as built.
SPEC = f"""\
name = "echo"

[enclave]
image = "oci-archive:echo.tar@sha256:{"ab" * 32}"

[[inputs]]
name = "x"
max_size = "1K"

[outputs]
files = ["out"]
"""


class FakeEnclave:
    """What the engine sees of a launched enclave (the :class:`EnclaveProcess` interface)."""

    def __init__(self, io: Path, mode: str) -> None:
        self.io = io
        self.mode = mode
        self.pid = 0
        self.sent: list[dict[str, Any]] = []
        self.killed = False
        self.waited = False
        self.timed_out = False
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._exited = asyncio.Event()
        if mode != "silent":
            self.push({"event": "ready", "protocol": 1, "agent": "fake/1"})

    def push(self, event: dict[str, Any] | None) -> None:
        """Make the agent report ``event`` (None: it closes the control channel)."""
        self._queue.put_nowait(event)

    async def read_frame(self) -> bytes | None:
        event = await self._queue.get()
        if event is None:
            self._exited.set()
            return None
        return encode_frame(event)

    async def write_frame(self, frame: bytes) -> None:
        command = decode_frame(frame)
        self.sent.append(command)
        if command["cmd"] == "attest" and self.mode == "attest":
            self.push(
                {
                    "event": "evidence",
                    "runner": "sim",
                    "simulated": True,
                    "quote": secrets.token_bytes(64).hex(),
                    "enclave_key": secrets.token_bytes(32).hex(),
                    "signing_key": secrets.token_bytes(32).hex(),
                }
            )

    async def wait(self) -> int:
        await self._exited.wait()
        self.waited = True  # the runner's cleanup (attestation device, pids cgroup) runs here
        return -9 if self.killed else 0

    @property
    def running(self) -> bool:
        return not self._exited.is_set()

    def failure_reason(self) -> str | None:
        return None

    def arm(self) -> None:
        pass

    def relocate(self, stderr_path: Path | None) -> None:
        pass

    def kill(self) -> None:
        self.killed = True
        self.push(None)
        self._exited.set()


class FakeRunner:
    """Launches :class:`FakeEnclave` objects; ``mode`` is ``attest``, ``hang`` or ``fail``."""

    name = "sim"
    simulated = True

    def __init__(self, mode: str = "attest") -> None:
        self.mode = mode
        self.launched: dict[str, FakeEnclave] = {}

    async def launch(
        self, image: Any, launch_dir: Path, *, stderr_path: Path, standby: bool = False
    ) -> FakeEnclave:
        if self.mode == "fail":
            raise RunnerError("the fake enclave cannot start")
        enclave = FakeEnclave(launch_dir / "io", self.mode)
        self.launched[launch_dir.parent.name] = enclave
        return enclave

    async def collateral_for(self, quote: bytes, at: datetime) -> None:
        return None


def write_spec(specs_dir: Path, text: str = SPEC) -> Path:
    spec = specs_dir / "echo"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "task.toml").write_text(text)
    return spec


def make_engine(
    tmp_path: Path, runner: FakeRunner, *, limits: dict[str, Any] | None = None, **config: Any
) -> TaskEngine:
    """A task engine over ``tmp_path`` with the ``echo`` spec and its image marked as built."""
    spec = write_spec(tmp_path / "specs")
    options: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "specs_dir": str(tmp_path / "specs"),
        "auth": {"open": True},
        "limits": limits or {},
        "warm_enclaves": 0,  # the fake runner keys its enclaves by task folder
    }
    options.update(config)
    engine = TaskEngine(ProviderConfig.model_validate(options), runner)  # type: ignore[arg-type]
    # The driver asks for the image first; the fake runner never looks at it.
    engine._images[f"echo-{spec_digest(spec)[:16]}"] = cast(EnclaveImage, object())
    return engine
