"""One activity's confidential task, step by step: what each ExeScript ``run`` entry point does.

The blocking-mode server keeps one :class:`ActivitySession` for the activity's whole life, so
the enclave (and the keys it made) survive from one ExeScript command to the next. The steps
map DESIGN.md section 4 onto ExeScript commands and file transfers through the ``/golem/io``
volume (host folder ``<workdir>/io``):

==================  ====================================================================
entry point         what happens
==================  ====================================================================
``attest``          args ``TASK_ID SPEC_SHA256 NONCE REQUESTOR_KEY``: launch the enclave
                    for the deployed image, wait for its quote, add collateral and write
                    the evidence to ``/golem/io/evidence.json`` (the requestor downloads it)
``receive-inputs``  take ``/golem/io/inputs/<name>.age`` and ``/golem/io/manifest.sealed``
                    (uploaded by the requestor after it verified the evidence) into the
                    enclave's untrusted folder
``execute``         tell the agent to run; returns once the workload runs
``collect-outputs`` wait until the agent is done; sealed outputs land in
                    ``/golem/io/outputs/<name>.age`` with ``receipt.json`` (signed receipt
                    plus evidence) for the requestor to download
``abort``           kill the enclave and forget the task
==================  ====================================================================

One task runs at a time; ``attest`` during a task replaces it (the old enclave is killed).

Each step answers with one JSON object (``{"ok": true, "step": ..., ...}`` or ``{"ok": false,
"code": ..., "message": ...}``) on stdout, which is also kept in ``/golem/io/status.json`` for
ExeUnits that do not forward a runtime's output. Nothing here holds a key that opens an input
or an output: the runtime is the provider and is not trusted by the requestor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from golem_graphene._internal.files import write_atomic
from golem_graphene._internal.tasks import settle
from golem_graphene.errors import Error, ProtocolError, RunnerError
from golem_graphene.host.image import EnclaveImage
from golem_graphene.host.runners import EnclaveRunner
from golem_graphene.host.session import EnclaveSession
from golem_graphene.protocol.agent import AgentEvent, Running
from golem_graphene.protocol.binding import format_task_id, parse_task_id
from golem_graphene.protocol.messages import Evidence
from golem_graphene.protocol.names import validate_file_name
from golem_graphene.protocol.spec import TaskSpec
from golem_graphene.runtime.deploy import Deployment
from golem_graphene.runtime.settings import (
    ENTRYPOINTS,
    STATE_DIR,
    VOLUME_NAME,
    VOLUME_PATH,
    RuntimeSettings,
)
from golem_graphene.sealing.age import max_ciphertext_size
from golem_graphene.sealing.input_manifest import CIPHERTEXT_SUFFIX
from golem_graphene.sealing.keys import X25519Recipient

__all__ = [
    "EXECUTE_TIMEOUT_SECONDS",
    "ActivitySession",
    "StepError",
    "StepResult",
]

log = structlog.get_logger(__name__)

EXECUTE_TIMEOUT_SECONDS = 600.0
"""How long the agent may take to open the inputs before the workload starts."""

MAX_SEALED_MANIFEST_BYTES = 4 << 20
_SEALING_MARGIN_SECONDS = 180.0

StateCallback = Callable[[str, str | None], None]


class StepError(ProtocolError):
    """A step was asked for at the wrong time or with bad arguments (exit status 2)."""

    def __init__(self, code: str, message: str, **kw: Any) -> None:
        self.code = code
        super().__init__(message, **kw)


@dataclass(frozen=True)
class StepResult:
    """What a step answers: the exit code and the bytes of its stdout and stderr."""

    code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.code == 0


class ActivitySession:
    """The confidential task of one activity (one task at a time; several in sequence)."""

    def __init__(
        self,
        workdir: Path,
        settings: RuntimeSettings,
        *,
        on_state: StateCallback | None = None,
        runner: EnclaveRunner | None = None,
    ) -> None:
        self.workdir = workdir
        self.settings = settings
        self.volume = workdir / VOLUME_NAME
        self.launch_dir = workdir / "enclave"
        self.state_dir = workdir / STATE_DIR
        self.state = "deployed"
        self.task_id: str | None = None
        self.on_state = on_state
        self._runner = runner
        self._deployment: Deployment | None = None
        self._image: EnclaveImage | None = None
        self._session: EnclaveSession | None = None
        self._evidence: Evidence | None = None
        self._follower: asyncio.Task[None] | None = None
        self._running = asyncio.Event()
        self._lock = asyncio.Lock()
        self._enclave_total = 0.0
        self._enclave_since: float | None = None

    # -- bookkeeping ------------------------------------------------------------------------------

    def enclave_seconds(self) -> float:
        """Wall-clock seconds the activity's enclaves have been alive so far."""
        live = time.monotonic() - self._enclave_since if self._enclave_since is not None else 0.0
        return self._enclave_total + live

    def _set_state(self, state: str) -> None:
        self.state = state
        log.info("task state", state=state, task_id=self.task_id)
        if self.on_state is not None:
            self.on_state(state, self.task_id)

    def _require(self, *states: str) -> None:
        if self.state not in states:
            raise StepError(
                "invalid_state",
                "this step does not fit the task's state",
                expected=" or ".join(states),
                found=self.state,
            )

    def _image_and_spec(self) -> tuple[EnclaveImage, TaskSpec]:
        if self._image is None:
            self._deployment = Deployment.load(self.workdir)
            self._image = self._deployment.image()
        return self._image, self._image.spec

    def _runner_instance(self) -> EnclaveRunner:
        if self._runner is None:
            self._runner = self.settings.make_runner()
        return self._runner

    # -- the step dispatcher ----------------------------------------------------------------------

    async def run_step(self, name: str, args: Sequence[str]) -> StepResult:
        """Run entry point ``name``; never raises for a failed step (only when cancelled).

        A failed step that had changed anything tears the task down (the enclave is killed):
        the requestor starts again with ``attest``. Argument and state errors change nothing.
        """
        handlers = {
            "attest": self._attest,
            "receive-inputs": self._receive_inputs,
            "execute": self._execute,
            "collect-outputs": self._collect_outputs,
            "abort": self._abort,
        }
        handler = handlers.get(name)
        if handler is None:
            error = StepError(
                "unknown_entrypoint",
                f"unknown entry point {name!r}",
                expected=", ".join(ENTRYPOINTS),
                found=name,
            )
            return self._answer(name, error, code=2)
        async with self._lock:
            try:
                body = await handler(list(args))
            except asyncio.CancelledError:
                await self._teardown("aborted")
                raise
            except StepError as exc:
                return self._answer(name, exc, code=2)
            except Error as exc:
                log.warning("step failed", step=name, code=exc.code, task_id=self.task_id)
                await self._teardown("failed")
                return self._answer(name, exc, code=1)
            except Exception as exc:  # a bug: the step fails with a reason, the runtime goes on
                log.exception("step crashed", step=name)
                await self._teardown("failed")
                err = RunnerError(f"internal error in {name}: {type(exc).__name__}")
                return self._answer(name, err, code=70)
        return self._answer(name, body, code=0)

    def _answer(self, step: str, outcome: dict[str, Any] | Error, *, code: int) -> StepResult:
        if isinstance(outcome, Error):
            obj: dict[str, Any] = {
                "ok": False,
                "step": step,
                "state": self.state,
                "task_id": self.task_id,
                "code": outcome.code,
                "message": outcome.describe(),
            }
            stderr = f"FAIL: {step}: {outcome.code}: {outcome.describe()}\n".encode()
        else:
            obj = {"ok": True, "step": step, "state": self.state, "task_id": self.task_id}
            obj.update(outcome)
            stderr = b""
        stdout = json.dumps(obj, sort_keys=True).encode() + b"\n"
        with contextlib.suppress(OSError):
            self.volume.mkdir(exist_ok=True)
            write_atomic(self.volume / "status.json", stdout, mode=0o644)
        return StepResult(code, stdout, stderr)

    # -- attest -----------------------------------------------------------------------------------

    async def _attest(self, args: list[str]) -> dict[str, Any]:
        # Any state: a new task replaces one in progress (its enclave is killed first).
        if len(args) != 4:
            raise StepError(
                "bad_arguments",
                "attest takes TASK_ID SPEC_SHA256 NONCE REQUESTOR_KEY",
                found=f"{len(args)} arguments",
            )
        task_id_text, spec_sha256, nonce_hex, requestor_key = args
        try:
            task_id = format_task_id(parse_task_id(task_id_text))
            nonce = bytes.fromhex(nonce_hex)
            recipient = X25519Recipient.from_string(requestor_key)
        except (Error, ValueError) as exc:
            raise StepError("bad_arguments", f"attest: {exc}") from exc
        if len(nonce) != 32:
            raise StepError("bad_arguments", "the nonce is 32 bytes", found=len(nonce))
        image, _ = self._image_and_spec()
        assert self._deployment is not None
        if spec_sha256.lower() != self._deployment.spec_sha256:
            raise StepError(
                "spec_mismatch",
                "the requestor's task spec differs from the deployed package's",
                expected=self._deployment.spec_sha256,
                found=spec_sha256,
            )
        await self._teardown("deployed")
        self._clear_volume()
        self.task_id = task_id
        self.state_dir.mkdir(exist_ok=True, mode=0o700)
        session = await EnclaveSession.launch(
            self._runner_instance(),
            image,
            self.launch_dir,
            stderr_path=self.state_dir / "enclave.log",
        )
        self._session = session
        self._enclave_since = time.monotonic()
        await session.wait_ready()
        self._evidence = await session.attest(task_id, nonce.hex(), recipient.to_string())
        write_atomic(self.volume / "evidence.json", self._evidence.to_json(), mode=0o644)
        self._set_state("attested")
        return {
            "runner": self._evidence.runner,
            "simulated": self._evidence.simulated,
            "evidence": f"{VOLUME_PATH}/evidence.json",
        }

    def _clear_volume(self) -> None:
        self.volume.mkdir(exist_ok=True)
        for name in ("evidence.json", "manifest.sealed", "status.json"):
            (self.volume / name).unlink(missing_ok=True)
        for name in ("inputs", "outputs"):
            shutil.rmtree(self.volume / name, ignore_errors=True)
        (self.volume / "inputs").mkdir()

    # -- receive-inputs ---------------------------------------------------------------------------

    async def _receive_inputs(self, args: list[str]) -> dict[str, Any]:
        self._require("attested")
        if args:
            raise StepError("bad_arguments", "receive-inputs takes no arguments")
        _, spec = self._image_and_spec()
        uploaded = self.volume / "inputs"
        found: list[tuple[str, Path, int]] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(uploaded) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                found.append(self._check_upload(spec, entry.name, Path(entry.path)))
        names = {name for name, _, _ in found}
        missing = [i.name for i in spec.inputs if i.required and i.name not in names]
        if missing:
            raise RunnerError(
                "required inputs were not uploaded",
                expected=f"{VOLUME_PATH}/inputs/<name>{CIPHERTEXT_SUFFIX}",
                found="missing " + ", ".join(missing),
            )
        manifest = self.volume / "manifest.sealed"
        try:
            st = manifest.lstat()
        except FileNotFoundError:
            raise RunnerError(
                f"the sealed input manifest was not uploaded to {VOLUME_PATH}/manifest.sealed"
            ) from None
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SEALED_MANIFEST_BYTES:
            raise RunnerError(
                "the sealed input manifest must be a regular file",
                expected=f"<= {MAX_SEALED_MANIFEST_BYTES} bytes",
                found=st.st_size,
            )
        io = self.launch_dir / "io"
        for _, path, _ in found:
            os.replace(path, io / "inputs" / path.name)
        os.replace(manifest, io / "manifest.sealed")
        self._set_state("inputs_received")
        return {
            "inputs": [{"name": n, "ciphertext_size": size} for n, _, size in found],
            "manifest_size": st.st_size,
        }

    @staticmethod
    def _check_upload(spec: TaskSpec, file_name: str, path: Path) -> tuple[str, Path, int]:
        if not file_name.endswith(CIPHERTEXT_SUFFIX):
            raise RunnerError(
                "an uploaded input is not an age file", expected="<name>.age", found=file_name
            )
        name = file_name.removesuffix(CIPHERTEXT_SUFFIX)
        try:
            validate_file_name(name, "input name")
        except ValueError as exc:
            raise RunnerError(str(exc)) from None
        declared = spec.input(name)
        if declared is None:
            raise RunnerError("the task spec declares no such input", found=name)
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            raise RunnerError("an uploaded input is not a regular file", found=name)
        if st.st_size > max_ciphertext_size(declared.max_size):
            raise RunnerError(
                f"input {name!r} is larger than the spec allows",
                expected=f"<= {declared.max_size} bytes of plaintext",
                found=f"{st.st_size} bytes of ciphertext",
            )
        return name, path, st.st_size

    # -- execute and collect-outputs --------------------------------------------------------------

    async def _execute(self, args: list[str]) -> dict[str, Any]:
        self._require("inputs_received")
        if args:
            raise StepError("bad_arguments", "execute takes no arguments")
        assert self._session is not None
        self._running.clear()
        self._follower = asyncio.create_task(self._follow_agent(self._session))
        running = asyncio.ensure_future(self._running.wait())
        try:
            await asyncio.wait(
                {running, self._follower},
                timeout=EXECUTE_TIMEOUT_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            running.cancel()
        if self._follower.done():
            self._follower.result()  # the agent failed before the workload started: raise it
        if not self._running.is_set():
            raise RunnerError(
                "the enclave did not start the workload in time",
                expected=f"<= {EXECUTE_TIMEOUT_SECONDS:g} s to open the inputs",
            )
        self._set_state("running")
        return {}

    async def _follow_agent(self, session: EnclaveSession) -> None:
        async def on_event(event: AgentEvent) -> None:
            if isinstance(event, Running):
                self._running.set()

        await session.run(on_event)

    async def _collect_outputs(self, args: list[str]) -> dict[str, Any]:
        self._require("running")
        if args:
            raise StepError("bad_arguments", "collect-outputs takes no arguments")
        assert self._follower is not None and self._session is not None
        _, spec = self._image_and_spec()
        try:
            async with asyncio.timeout(spec.limits.wall_seconds + _SEALING_MARGIN_SECONDS):
                await asyncio.shield(self._follower)
        except TimeoutError:
            raise RunnerError("the enclave did not finish within the task's time limit") from None
        outputs = self.volume / "outputs"
        shutil.rmtree(outputs, ignore_errors=True)
        bundle = await self._session.collect_outputs(outputs)
        self._session = None
        self._enclave_stopped()
        self._release_launch_dir()
        self._set_state("done")
        return {
            "exit_status": bundle.receipt.exit_status,
            "termination": bundle.receipt.termination,
            "outputs": [
                {"name": o.name, "ciphertext_size": o.ciphertext_size}
                for o in bundle.receipt.outputs
            ],
            "receipt": f"{VOLUME_PATH}/outputs/receipt.json",
        }

    async def _abort(self, args: list[str]) -> dict[str, Any]:
        await self._teardown("aborted")
        return {}

    # -- teardown ---------------------------------------------------------------------------------

    def _enclave_stopped(self) -> None:
        if self._enclave_since is not None:
            self._enclave_total += time.monotonic() - self._enclave_since
            self._enclave_since = None

    def _release_launch_dir(self) -> None:
        shutil.rmtree(self.launch_dir, ignore_errors=True)

    async def _teardown(self, state: str) -> None:
        """Kill the enclave (if any), reclaim its folder, and enter ``state``."""
        session, self._session = self._session, None
        follower, self._follower = self._follower, None
        if session is not None:
            await session.close()
        if follower is not None and not follower.done():
            follower.cancel()
        if follower is not None:
            await settle([follower])
        self._enclave_stopped()
        self._release_launch_dir()
        if state != self.state:
            self._set_state(state)

    async def close(self) -> None:
        """End the activity: kill a running enclave and reclaim its folder."""
        if self._session is not None or self._follower is not None:
            await self._teardown("aborted")
