"""One launched enclave through its whole conversation with the agent.

:class:`EnclaveSession` is the only code that speaks the host side of the agent protocol
(``docs/agent-protocol.md``): the HTTP provider's task engine, the Golem runtime's activity
session and the standby pool all drive enclaves through it, so every check below is made once,
for every front end:

1. :meth:`EnclaveSession.launch` starts the enclave; :meth:`~EnclaveSession.wait_ready` waits
   for ``ready`` (and explains a launch that failed with Gramine's own error);
2. :meth:`~EnclaveSession.attest` tells the agent its task and turns its ``evidence`` into the
   published :class:`~golem_graphene.protocol.messages.Evidence`, with collateral;
3. :meth:`~EnclaveSession.run` lets the agent run and follows its events in protocol order;
4. :meth:`~EnclaveSession.collect_outputs` takes the sealed outputs out of the shared folder
   (never through a link the workload planted), reads the receipt bounded and without following
   links, checks it is the one the agent reported, and bundles it with the evidence;
5. :meth:`~EnclaveSession.close` kills the enclave and reclaims it, whatever happened before.

The provider is untrusted by the requestor, so nothing here is a security boundary for the
requestor: these checks protect the provider's own host (links, unbounded reads) and give the
requestor precise failure codes instead of confusing ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import shutil
import stat
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NoReturn

import structlog
from pydantic import ValidationError

from golem_graphene._internal.files import write_atomic
from golem_graphene.errors import ProtocolError, RunnerError
from golem_graphene.host.image import EnclaveImage
from golem_graphene.host.runners import EnclaveProcess, EnclaveRunner
from golem_graphene.limits import MAX_RECEIPT_BUNDLE_BYTES
from golem_graphene.protocol.agent import (
    AgentEvent,
    AgentProtocolError,
    Attest,
    EvidenceReady,
    Failed,
    InputsOpened,
    OutputsSealed,
    Progress,
    Ready,
    Run,
    Running,
    Sealing,
    encode,
    parse_event,
)
from golem_graphene.protocol.fields import describe_validation_error
from golem_graphene.protocol.messages import Evidence
from golem_graphene.sealing.receipt import ReceiptBundle, SignedReceipt

__all__ = [
    "ATTEST_TIMEOUT_SECONDS",
    "READY_TIMEOUT_SECONDS",
    "EnclaveSession",
    "EventCallback",
    "agent_failure",
]

log = structlog.get_logger(__name__)

READY_TIMEOUT_SECONDS: Final = 120.0
"""From launch to ``ready``: the sandbox or Gramine starts and the agent loads."""

ATTEST_TIMEOUT_SECONDS: Final = 120.0
"""From ``attest`` to ``evidence``: key generation and one quote (DCAP quoting is the slow part)."""

KILL_WAIT_SECONDS: Final = 10.0
"""How long a killed enclave may take to be reaped (its attestation device stops after it)."""

LOG_NAME: Final = "enclave.log"
"""The enclave's stderr log, beside its launch folder."""

EventCallback = Callable[[AgentEvent], Awaitable[None]]
"""Called with each event between ``run`` and the end (progress, inputs_opened, running, ...)."""

# Events after ``run``, in the order the protocol allows them: an event may not come after one of
# a higher rank, and the singular ones (odd ranks) come at most once.
_RANK: Final = {
    ("progress", "inputs"): 0,
    ("inputs_opened", None): 1,
    ("running", None): 3,
    ("sealing", None): 5,
    ("progress", "sealing"): 6,
    ("outputs_sealed", None): 7,
}


def agent_failure(event: Failed) -> RunnerError:
    """The agent's refusal as our error, carrying its stable code (e.g. ``output_symlink``)."""
    error = RunnerError(f"{event.code}: {event.message}")
    error.code = event.code
    return error


class EnclaveSession:
    """One enclave launched in ``launch_dir`` and the conversation with its agent.

    Build one with :meth:`launch`. The session is single-use: one task, from ``ready`` to
    ``outputs_sealed`` (or a failure), then :meth:`close`.
    """

    def __init__(self, process: EnclaveProcess, runner: EnclaveRunner, launch_dir: Path) -> None:
        self.process = process
        self.runner = runner
        self.launch_dir = launch_dir
        self.ready_event: Ready | None = None
        self.evidence: Evidence | None = None
        self.outcome: OutputsSealed | None = None
        self._rank = -1

    @classmethod
    async def launch(
        cls,
        runner: EnclaveRunner,
        image: EnclaveImage,
        launch_dir: Path,
        *,
        stderr_path: Path,
        standby: bool = False,
    ) -> EnclaveSession:
        """Start ``image``'s enclave in ``launch_dir`` (its ``io`` folder is made here).

        With ``standby`` its wall clock starts only at :meth:`adopt` (an enclave started ahead
        of its task). Returns once the process runs; call :meth:`wait_ready` next.
        """
        (launch_dir / "io" / "inputs").mkdir(parents=True, exist_ok=True)
        process = await runner.launch(image, launch_dir, stderr_path=stderr_path, standby=standby)
        return cls(process, runner, launch_dir)

    @property
    def io_dir(self) -> Path:
        """The task's untrusted folder shared with the enclave (inputs in, sealed outputs out)."""
        return self.launch_dir / "io"

    @property
    def pid(self) -> int:
        return self.process.pid

    # -- the conversation -------------------------------------------------------------------------

    async def _next_event(self, timeout: float | None = None) -> AgentEvent | None:
        """The agent's next event (None once it closed its output), within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                line = await self.process.read_frame()
        except TimeoutError:
            raise RunnerError(
                "the enclave did not answer in time", expected=f"<= {timeout:g} s"
            ) from None
        return None if line is None else parse_event(line)

    async def _gone(self, default: str) -> NoReturn:
        """The agent closed its output early: say why, with Gramine's own error if it left one."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.process.wait()
        if self.process.timed_out:
            raise RunnerError("the enclave was killed at its time limit")
        reason = self.process.failure_reason()
        if reason:
            raise RunnerError(f"{default}: {reason}")
        raise RunnerError(default)

    async def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> Ready:
        """Wait for ``ready``; raises :class:`RunnerError` (the agent's code when it refused)."""
        event = await self._next_event(timeout)
        if event is None:
            await self._gone("the enclave exited at its start")
        if isinstance(event, Failed):
            raise agent_failure(event)
        if not isinstance(event, Ready):
            raise AgentProtocolError(
                "the enclave's first event is not ready", expected="ready", found=event.event
            )
        self.ready_event = event
        return event

    async def attest(
        self,
        task_id: str,
        nonce: str,
        requestor_key: str,
        *,
        timeout: float = ATTEST_TIMEOUT_SECONDS,
    ) -> Evidence:
        """Give the agent its task (task id and nonce in hex, ``age1...`` key); returns its
        evidence with collateral attached.

        The values are untrusted for the agent: they only enter the report data, where the
        requestor checks them. Raises :class:`ProtocolError` for malformed values,
        :class:`RunnerError` (the agent's code when it refused) or :class:`AgentProtocolError`.
        """
        if self.ready_event is None or self.evidence is not None:
            raise RunnerError("attest is sent once, after ready")
        try:
            command = Attest.model_validate(
                {"task_id": task_id, "nonce": nonce, "requestor_key": requestor_key}
            )
        except ValidationError as exc:
            raise ProtocolError(
                f"the task cannot be attested: {describe_validation_error(exc)}"
            ) from None
        await self.process.write_frame(encode(command))
        event = await self._next_event(timeout)
        if event is None:
            await self._gone("the enclave exited before it attested")
        if isinstance(event, Failed):
            raise agent_failure(event)
        if not isinstance(event, EvidenceReady):
            raise AgentProtocolError(
                "the enclave answered attest with another event",
                expected="evidence",
                found=event.event,
            )
        collateral = None
        if event.quote is not None:
            collateral = await self.runner.collateral_for(event.quote, datetime.now(UTC))
        try:
            self.evidence = Evidence(
                task_id=command.task_id,
                quote=event.quote,
                enclave_key=event.enclave_key,
                signing_key=event.signing_key,
                collateral=collateral,
                runner=event.runner,
                simulated=event.simulated,
            )
        except ValueError as exc:  # pydantic: evidence that cannot be published
            raise RunnerError(f"the enclave published unusable evidence: {exc}") from None
        return self.evidence

    async def run(self, on_event: EventCallback | None = None) -> OutputsSealed:
        """Let the agent run (inputs and sealed manifest are in :attr:`io_dir`) and follow it.

        Calls ``on_event`` for each event before the terminal one, in protocol order. Returns
        ``outputs_sealed``; raises :class:`RunnerError` with the agent's code when it failed, when
        the enclave died or hit its time limit, and :class:`AgentProtocolError` for an event out
        of order.
        """
        if self.evidence is None or self.outcome is not None:
            raise RunnerError("run is sent once, after the evidence")
        await self.process.write_frame(encode(Run()))
        while True:
            event = await self._next_event()
            if event is None:
                await self._gone("the enclave exited without finishing the task")
            if isinstance(event, Failed):
                raise agent_failure(event)
            self._check_order(event)
            if isinstance(event, OutputsSealed):
                self.outcome = event
                return event
            if on_event is not None:
                await on_event(event)

    def _check_order(self, event: AgentEvent) -> None:
        phase = event.phase if isinstance(event, Progress) else None
        rank = _RANK.get((event.event, phase))
        singular = isinstance(event, InputsOpened | Running | Sealing | OutputsSealed)
        if rank is None or rank < self._rank or (singular and rank == self._rank):
            raise AgentProtocolError("the enclave sent an event out of order", found=event.event)
        self._rank = rank

    async def collect_outputs(self, destination: Path) -> ReceiptBundle:
        """Move the sealed outputs to ``destination`` and bundle the receipt with the evidence.

        Call after :meth:`run` returned. ``destination`` must not exist. The workload shares
        the enclave's view of ``io/``: it may have swapped the outputs folder or the receipt for
        links pointing elsewhere on this host, or changed the receipt after the agent wrote it.
        Raises :class:`RunnerError` for each of those, and when the enclave hit its time limit.
        """
        if self.outcome is None or self.evidence is None:
            raise RunnerError("outputs are collected after outputs_sealed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_WAIT_SECONDS):
                await self.process.wait()
        if self.process.timed_out:
            raise RunnerError("the enclave was killed at its time limit")
        sealed = self.io_dir / "outputs"
        if sealed.is_symlink() or not sealed.is_dir():
            raise RunnerError("the enclave's outputs folder is missing or a symbolic link")
        os.replace(sealed, destination)
        data = read_regular(destination / "receipt.json", MAX_RECEIPT_BUNDLE_BYTES)
        if not hmac.compare_digest(hashlib.sha256(data).digest(), self.outcome.receipt_sha256):
            raise RunnerError("the receipt changed after the enclave wrote it")
        signed = SignedReceipt.from_json(data)
        if len(signed.receipt.outputs) != self.outcome.outputs:
            raise RunnerError(
                "the receipt lists another number of outputs than the enclave reported",
                expected=self.outcome.outputs,
                found=len(signed.receipt.outputs),
            )
        bundle = ReceiptBundle.from_signed(signed, self.evidence)
        write_atomic(destination / "receipt.json", bundle.to_json())
        return bundle

    # -- lifetime ---------------------------------------------------------------------------

    def adopt(self, launch_dir: Path, stderr_path: Path) -> None:
        """A task takes this standby enclave: move its launch folder and log, start its clock.

        The sandbox's bind mounts and the enclave's working folder follow the folder, not its
        path, so the enclave does not notice. Raises ``OSError`` when a rename fails.
        """
        old_log = self.launch_dir.parent / LOG_NAME
        os.rename(self.launch_dir, launch_dir)
        os.rename(old_log, stderr_path)
        with contextlib.suppress(OSError):
            self.launch_dir.parent.rmdir()
        self.launch_dir = launch_dir
        self.process.relocate(stderr_path)
        self.process.arm()

    @property
    def running(self) -> bool:
        """True until the enclave's process has exited."""
        return self.process.running

    def kill(self) -> None:
        """SIGKILL the enclave's whole process tree."""
        self.process.kill()

    async def close(self) -> None:
        """Kill the enclave and wait until it is reaped (its attestation device stopped).

        Shielded: a cancellation arriving now must not skip the wait that stops the device.
        """
        self.process.kill()
        with contextlib.suppress(Exception):
            await asyncio.shield(self._reap())

    async def _reap(self) -> None:
        async with asyncio.timeout(KILL_WAIT_SECONDS):
            await self.process.wait()

    def remove_files(self) -> None:
        """Remove the launch folder (blocking; call on a worker thread for large tasks)."""
        shutil.rmtree(self.launch_dir, ignore_errors=True)


def read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file, never through a symbolic link or a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise RunnerError(f"the enclave left no readable {path.name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise RunnerError(f"the enclave's {path.name} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise RunnerError(f"the enclave's {path.name} is too large", expected=f"<= {limit} bytes")
    return data
