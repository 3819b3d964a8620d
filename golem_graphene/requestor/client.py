"""The requestor SDK: run a confidential task on a provider you do not trust.

::

    async with Requestor("http://127.0.0.1:7465", identity=my_identity, token=TOKEN) as r:
        result = await r.run("task_specs/csv-stats", inputs={"data.csv": "data.csv"},
                             out_dir="results")

``run`` is the whole flow of docs/design.md section 4; the steps are public for callers who
need them: :meth:`Requestor.create`, :meth:`~Requestor.attest`, :meth:`~Requestor.send_inputs`,
:meth:`~Requestor.start`, :meth:`~Requestor.wait`, :meth:`~Requestor.fetch`, and
:meth:`~Requestor.resume` to fetch a task's outputs later from its record. Everything local is
checked before the provider is contacted (:meth:`~Requestor.check_local`). Nothing is encrypted
to the enclave before its quote verified against the policy and bound this task's nonce and
keys; outputs land in ``out_dir`` all or nothing, after the receipt verified, including the
digest of the input manifest that was sent. Every step has a deadline (:class:`Deadlines`);
every failure is a :class:`TaskStepError` naming the step and carrying the precise cause. What
the provider says in words (a failure message, an error body) is kept apart from ours
(``provider_text``), and shown escaped and marked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import structlog

from golem_graphene._internal.staging import StagingArea
from golem_graphene.attestation.policy import AllOf
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.verifier import QuoteVerifier
from golem_graphene.errors import Error, ProtocolError, UntrustedRootError, UsageError
from golem_graphene.protocol.binding import Transcript, check_report_data, new_nonce, parse_task_id
from golem_graphene.protocol.messages import Evidence, TaskEvent
from golem_graphene.protocol.spec import TaskSpec, spec_digest
from golem_graphene.requestor.channel import (
    Channel,
    HttpChannel,
    TaskRef,
    task_ref_of,
)
from golem_graphene.requestor.deadlines import (
    DeadlineError,
    Deadlines,
    RateGuard,
    within,
)
from golem_graphene.requestor.downloads import DOWNLOAD_BATCH as DOWNLOAD_BATCH
from golem_graphene.requestor.downloads import DOWNLOAD_PIPE_BYTES as DOWNLOAD_PIPE_BYTES
from golem_graphene.requestor.downloads import INPUT_MANIFEST_FILE, Downloader
from golem_graphene.requestor.downloads import MAX_RECEIPT_BYTES as MAX_RECEIPT_BYTES
from golem_graphene.requestor.local_checks import check_out_dir as check_out_folder
from golem_graphene.requestor.local_checks import check_request, staging_beside
from golem_graphene.requestor.offering import offer_spec
from golem_graphene.requestor.outcomes import (
    AttestedTask,
    LocalProgress,
    ProgressCallback,
    ProviderTaskError,
    TaskResult,
    TaskStepError,
    fetch_may_succeed_again,
)
from golem_graphene.requestor.policy import RequestorPolicy
from golem_graphene.requestor.record import TaskRecord
from golem_graphene.requestor.record import record_path as record_path_for
from golem_graphene.requestor.uploads import UPLOAD_PIPE_BYTES as UPLOAD_PIPE_BYTES
from golem_graphene.requestor.uploads import Uploader, Work
from golem_graphene.sealing.input_manifest import InputManifest
from golem_graphene.sealing.keys import X25519Identity

__all__ = [
    "INPUT_MANIFEST_FILE",
    "AttestedTask",
    "Deadlines",
    "LocalProgress",
    "ProviderTaskError",
    "Requestor",
    "RequestorPolicy",
    "TaskResult",
    "TaskStepError",
]

log = structlog.get_logger(__name__)

EventCallback = Callable[[TaskEvent], None]
"""Called with each task event the provider reports (its state; its words are untrusted)."""

CLEANUP_SECONDS: Final = 10.0
"""How long cancelling or deleting a task on the provider may take after a failure or success:
a provider that does not answer cannot hold the requestor."""


@dataclass
class _Created:
    ref: TaskRef
    spec: TaskSpec
    spec_dir: Path
    nonce: bytes
    spec_file: Path | None = None

    @property
    def spec_path(self) -> Path:
        return self.spec_file or self.spec_dir / "task.toml"


@dataclass
class _Plan:
    """A run's local part, checked before the provider is contacted."""

    spec_file: Path
    spec: TaskSpec
    out: Path
    staging: StagingArea


class Requestor:
    """A requestor session with one provider; use ``async with``.

    ``deadlines`` bound every step, the whole task and every transfer's rate (defaults:
    :class:`Deadlines`); the HTTP channel's single requests use ``deadlines.request``.
    """

    def __init__(
        self,
        provider: str | Channel,
        *,
        identity: X25519Identity,
        token: str | None = None,
        policy: RequestorPolicy | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.deadlines = deadlines or Deadlines()
        self.channel: Channel = (
            HttpChannel(provider, token=token, timeout=self.deadlines.request)
            if isinstance(provider, str)
            else provider
        )
        self.identity = identity
        self.policy = policy or RequestorPolicy()
        self._verifiers: dict[str, QuoteVerifier] = {}
        self._measured: dict[tuple[str, str], str] = {}
        self._seen: dict[str, int] = {}  # last event seq delivered per task
        self._last: dict[str, TaskEvent] = {}  # last event seen per task
        self._moving: dict[str, RateGuard] = {}  # the transfer in progress per task
        self._manifests: dict[str, InputManifest] = {}  # the manifest sealed per task
        self._pins: dict[str, str] = {}  # resumed tasks: the MRENCLAVE that attested before

    async def __aenter__(self) -> Requestor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.channel.close()

    def arrived(self, task_id: str) -> str:
        """What the provider had delivered for ``task_id`` so far, for a deadline's message."""
        parts = []
        guard = self._moving.get(task_id)
        if guard is not None:
            parts.append(guard.arrived())
        event = self._last.get(task_id)
        if event is None:
            parts.append("the provider reported no state")
        else:
            parts.append(f"the provider's last state was {event.state.value} (event {event.seq})")
        return "; ".join(parts)

    # -- the whole flow ----------------------------------------------------------------------

    async def run(
        self,
        spec: str | Path,
        inputs: Mapping[str, str | Path],
        out_dir: str | Path,
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        prestaged: Mapping[str, str | Path] | None = None,
        on_event: EventCallback | None = None,
        on_progress: ProgressCallback | None = None,
        keep_task: bool = False,
        records: Path | None = None,
    ) -> TaskResult:
        """Check everything local, then create, attest, send inputs, run, wait, fetch and
        verify; returns the result.

        ``inputs`` maps declared input names to plaintext files; ``prestaged`` maps names to
        age files already encrypted to this requestor's identity (only their header is
        rewritten for the enclave). ``args``/``env`` override the spec's defaults for the
        workload. With ``records`` (a folder), a
        :class:`~golem_graphene.requestor.record.TaskRecord` is kept there as
        ``<task id>.json`` from the task's creation until its outputs are in place: when the
        download is interrupted or fails without a verdict on the outputs (a broken
        connection, a deadline), the task is kept on the provider and :meth:`resume` fetches
        it later. Raises :class:`TaskStepError`: step ``prepare`` for local mistakes (its cause
        a :class:`UsageError` or :class:`~golem_graphene.errors.ConfigError`), else the step
        that failed; a passed deadline is a :class:`DeadlineError`.
        """
        try:
            plan = await self._prepare(spec, inputs, out_dir, prestaged, on_progress)
        except Error as exc:
            raise TaskStepError("prepare", exc) from exc
        with plan.staging:
            return await self._run_planned(
                plan, Work(inputs, args, env, prestaged), on_event, on_progress, keep_task, records
            )

    async def _run_planned(
        self,
        plan: _Plan,
        work: Work,
        on_event: EventCallback | None,
        on_progress: ProgressCallback | None,
        keep_task: bool,
        records: Path | None,
    ) -> TaskResult:
        total = self.deadlines.total_for(plan.spec.limits.wall_seconds)
        step = "create"
        created: _Created | None = None
        record_path: Path | None = None
        try:
            async with asyncio.timeout(total):
                created = await self.create(plan.spec_file)
                record = self._record(created)
                if records is not None:
                    record_path = record_path_for(created.ref.task_id, records)
                    record.save(record_path)
                if on_progress:
                    on_progress(LocalProgress("created", created.ref.task_id, finished=True))
                step = "attest"
                attested = await self.attest(created)
                record = record.update(
                    record_path,
                    runner=attested.evidence.runner,
                    mrenclave=attested.verified.quote.report_body.mrenclave,
                )
                step = "send_inputs"
                manifest = await self.send_inputs(
                    attested,
                    work.inputs,
                    args=work.args,
                    env=work.env,
                    prestaged=work.prestaged,
                    on_progress=on_progress,
                )
                record = record.update(record_path, input_manifest=manifest)
                step = "start"
                await self.start(attested)
                step = "wait"
                await self.wait(attested, on_event=on_event)
                step = "fetch"
                result = await self.fetch(
                    attested, plan.out, staging=plan.staging, on_progress=on_progress
                )
        except BaseException as exc:
            failure: BaseException = exc
            if isinstance(exc, TimeoutError) and created is not None:
                failure = TaskStepError(
                    step,
                    DeadlineError(
                        "total", total, "the task did not finish", self.arrived(created.ref.task_id)
                    ),
                )
            elif isinstance(exc, TimeoutError):
                failure = TaskStepError(
                    step, DeadlineError("total", total, "the provider did not create the task")
                )
            if created is not None:
                # Kept for a later fetch only where a record says how to fetch it.
                kept = keep_task or (
                    records is not None and step == "fetch" and fetch_may_succeed_again(failure)
                )
                if not kept:
                    await self._cleanup(self.channel.cancel(created.ref))
                if record_path is not None and not kept:
                    record_path.unlink(missing_ok=True)
            if failure is exc:
                raise
            raise failure from None
        if not keep_task:
            await self._cleanup(self.channel.delete(created.ref))
        if record_path is not None and not keep_task:
            record_path.unlink(missing_ok=True)
        return result

    def _record(self, created: _Created) -> TaskRecord:
        provider = getattr(self.channel, "base_url", None) or type(self.channel).__name__
        return TaskRecord(
            provider=str(provider),
            task_id=parse_task_id(created.ref.task_id),
            capability_token=created.ref.token,
            nonce=created.nonce,
            spec=str(created.spec_path.resolve()),
            spec_digest=bytes.fromhex(spec_digest(created.spec_path)),
            requestor_key=self.identity.recipient().to_string(),
        )

    @staticmethod
    async def _cleanup(coro: Any) -> None:
        """Cancel or delete on the provider, best effort and bounded: the provider's answer
        changes nothing for the requestor, and a provider that never answers must not hold
        it."""
        with contextlib.suppress(Error, TimeoutError):
            async with asyncio.timeout(CLEANUP_SECONDS):
                await coro

    # -- local checks ---------------------------------------------------------------------------

    @staticmethod
    def check_local(
        spec: str | Path,
        inputs: Mapping[str, str | Path],
        out_dir: str | Path,
        *,
        prestaged: Mapping[str, str | Path] | None = None,
    ) -> tuple[Path, TaskSpec]:
        """Check what the requestor asks for against its own machine, contacting no one.

        The spec reads; every input name is declared, every required input given, every file
        readable and within the spec's size; ``out_dir`` is absent or an empty folder whose
        parent can be created. Returns the spec file and the spec. Raises :class:`UsageError`
        (or :class:`~golem_graphene.errors.ConfigError` for a malformed spec) naming the
        problem.
        """
        return check_request(spec, inputs, out_dir, prestaged)

    @staticmethod
    def check_out_dir(out_dir: str | Path) -> None:
        """``out_dir`` must be absent or an empty folder whose parent can be created; raises
        :class:`UsageError`."""
        check_out_folder(Path(out_dir))

    async def _prepare(
        self,
        spec: str | Path,
        inputs: Mapping[str, str | Path],
        out_dir: str | Path,
        prestaged: Mapping[str, str | Path] | None,
        on_progress: ProgressCallback | None,
    ) -> _Plan:
        spec_file, parsed = self.check_local(spec, inputs, out_dir, prestaged=prestaged)
        out = Path(out_dir)
        staging = staging_beside(out)
        try:
            # The measurement the enclave must have, when nothing pins it: computed here from the
            # spec's image, before the provider is contacted (for the runner it most likely names).
            runner = "sim" if self.policy.trusted_simulation_roots else "gramine-sgx"
            if not self.policy.pins_for(parsed, runner):
                await self._measure(spec_file, runner, on_progress)
        except BaseException:
            staging.remove()
            raise
        return _Plan(spec_file, parsed, out, staging)

    async def _measure(
        self, spec_file: Path, runner: str, on_progress: ProgressCallback | None = None
    ) -> str:
        """The MRENCLAVE of the spec's image for ``runner``, computed here (once per spec)."""
        key = (spec_digest(spec_file), runner)
        if key not in self._measured:
            from golem_graphene.requestor.measure import measure_locally

            started = time.monotonic()
            self._measured[key] = await asyncio.to_thread(measure_locally, spec_file, runner)
            if on_progress:
                on_progress(
                    LocalProgress(
                        "measure",
                        runner,
                        elapsed=time.monotonic() - started,
                        finished=True,
                        detail=self._measured[key],
                    )
                )
        return self._measured[key]

    # -- offering a spec ------------------------------------------------------------------------

    async def offer(self, spec: str | Path) -> str:
        """Offer the spec at ``spec`` (folder or ``task.toml``), with its container image, to
        a provider that accepts requestors' images (``PUT /v1/specs/{name}``); returns the
        spec's digest, which the provider confirmed.

        The spec and its image are packed into a task package (a reproducible tar) in a
        private temporary folder and uploaded; the provider builds the image before it answers
        (bounded by the ``attest`` deadline; the upload by the minimum rate). Offering the same
        spec again is harmless. Raises :class:`TaskStepError` with step ``offer``: its cause a
        :class:`~golem_graphene.errors.ConfigError` for a spec that cannot be packed, a
        :class:`ChannelError` with the provider's code (``images_not_accepted``,
        ``spec_conflict``, ``package_too_large``, ``image_digest``, ...) and its words, or a
        :class:`DeadlineError`.
        """
        return await offer_spec(self.channel, self.deadlines, spec)

    # -- step 1 -------------------------------------------------------------------------------

    async def create(self, spec: str | Path) -> _Created:
        """Step 1: ask the provider for a task running ``spec`` (within the ``create``
        deadline)."""
        try:
            spec_dir = Path(spec)
            spec_file = spec_dir / "task.toml" if spec_dir.is_dir() else spec_dir
            parsed = TaskSpec.from_path(spec_file)
            nonce = new_nonce()
            answer = await within(
                "create",
                self.deadlines.create,
                "the provider did not create the task",
                self.channel.create(
                    {
                        "spec_name": parsed.name,
                        "spec_digest": spec_digest(spec_file),
                        "requestor_key": self.identity.recipient().to_string(),
                        "nonce": nonce.hex(),
                    }
                ),
            )
            ref = task_ref_of(answer)
        except Error as exc:
            raise TaskStepError("create", exc) from exc
        return _Created(ref, parsed, spec_file.parent, nonce, spec_file)

    # -- steps 2 and 3 ------------------------------------------------------------------------

    def _verifier(self, quote: Quote) -> QuoteVerifier:
        anchor = self.policy.anchor_for(quote)
        if anchor.fingerprint not in self._verifiers:
            self._verifiers[anchor.fingerprint] = QuoteVerifier(
                anchor=anchor, options=self.policy.verify_options()
            )
        return self._verifiers[anchor.fingerprint]

    async def _attestation_policy(self, created: _Created, runner: str) -> AllOf:
        policy = self.policy
        pinned = self._pins.get(created.ref.task_id)
        if pinned is not None and not policy.pins_enclave:
            policy = policy.with_expected_mrenclave(pinned)
        elif not policy.pins_for(created.spec, runner):
            policy = policy.with_expected_mrenclave(await self._measure(created.spec_path, runner))
        return policy.attestation_policy(created.spec, runner)

    async def attest(self, created: _Created, *, timeout: float | None = None) -> AttestedTask:
        """Steps 2-3: wait for the evidence, verify the quote and the report-data binding.

        Bounded by the ``attest`` deadline (``timeout`` overrides it)."""
        limit = timeout if timeout is not None else self.deadlines.attest
        try:
            return await within(
                "attest",
                limit,
                "the enclave did not attest",
                self._attest(created),
                lambda: self.arrived(created.ref.task_id),
            )
        except TaskStepError:
            raise
        except Error as exc:
            raise TaskStepError("attest", exc) from exc

    async def _attest(self, created: _Created) -> AttestedTask:
        await self._wait_for_state(created.ref, {"attested"})
        evidence = Evidence.from_json(await self.channel.evidence(created.ref))
        if evidence.task_id != parse_task_id(created.ref.task_id):
            raise ProtocolError("the evidence is for another task")
        if evidence.quote is None or evidence.collateral is None:
            raise ProtocolError(
                f"the {evidence.runner} runner published no quote or collateral; "
                "an unattested run is never accepted"
            )
        quote = Quote.from_bytes(evidence.quote)
        verifier = self._verifier(quote)
        policy = await self._attestation_policy(created, evidence.runner)
        try:
            verified = await asyncio.to_thread(
                verifier.verify, quote, evidence.collateral, datetime.now(UTC)
            )
        except UntrustedRootError as exc:
            if evidence.runner != "sim":
                raise
            # Never a fingerprint to copy from here: it would be the provider's own.
            raise UntrustedRootError(
                f"{exc.message}; the provider says it runs the sim runner (no SGX protection): "
                "a simulation root is trusted only by the fingerprint its operator gave you "
                "(--trust-simulated-root), never by one taken from the provider's messages",
                expected=exc.expected,
            ) from exc
        policy.check(verified)
        transcript = Transcript(
            task_id=parse_task_id(created.ref.task_id),
            nonce=created.nonce,
            enclave_key=evidence.enclave_key,
            signing_key=evidence.signing_key,
            requestor_key=self.identity.recipient().public_bytes(),
        )
        check_report_data(verified.report_body, transcript)
        log.info(
            "enclave attested",
            task_id=created.ref.task_id,
            status=verified.status.value,
            simulated=verified.simulated,
        )
        return AttestedTask(
            created.ref,
            created.spec,
            created.spec_dir,
            created.nonce,
            transcript,
            evidence,
            verified,
        )

    def _note(self, ref: TaskRef, event: TaskEvent) -> bool:
        """Remember the event; False for an event delivered before."""
        self._last[ref.task_id] = event
        if event.seq <= self._seen.get(ref.task_id, -1):
            return False
        self._seen[ref.task_id] = event.seq
        return True

    async def _wait_for_state(self, ref: TaskRef, wanted: set[str]) -> TaskEvent:
        async for event in self.channel.events(ref):
            self._note(ref, event)
            state = event.state
            if state in wanted:
                return event
            if state in ("failed", "cancelled"):
                raise ProviderTaskError.from_event(event)
        raise ProtocolError("the provider's event stream ended early")

    # -- step 4 -------------------------------------------------------------------------------

    async def send_inputs(
        self,
        task: AttestedTask,
        inputs: Mapping[str, str | Path],
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        prestaged: Mapping[str, str | Path] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> InputManifest:
        """Step 4: seal each input to the attested enclave, upload, then the sealed manifest.

        Bounded by the ``upload`` deadline (if set) and, per input, the minimum rate. The
        manifest is remembered: :meth:`fetch` checks that the receipt carries its digest.
        """
        uploads = Uploader(self.channel, self.identity, self.deadlines, self._moving, self.arrived)
        manifest = await uploads.send_inputs(task, Work(inputs, args, env, prestaged), on_progress)
        self._manifests[task.ref.task_id] = manifest
        return manifest

    # -- steps 5-7 ----------------------------------------------------------------------------

    async def start(self, task: AttestedTask) -> None:
        """Tell the provider the inputs are complete; the agent starts the workload."""
        try:
            await within(
                "request",
                self.deadlines.request,
                "the provider did not acknowledge the start",
                self.channel.start(task.ref),
            )
        except Error as exc:
            raise TaskStepError("start", exc) from exc

    async def wait(
        self,
        task: AttestedTask,
        *,
        on_event: EventCallback | None = None,
        timeout: float | None = None,
    ) -> TaskEvent:
        """Follow the task's events until it is done; failed or cancelled tasks raise.

        Bounded by the ``wait`` deadline (default: the spec's ``wall_seconds`` + 600 s;
        ``timeout`` overrides it)."""
        limit = timeout or self.deadlines.wait_for(task.spec.limits.wall_seconds)

        async def follow() -> TaskEvent:
            async for event in self.channel.events(task.ref):
                if self._note(task.ref, event) and on_event:
                    on_event(event)
                state = event.state
                if state == "done":
                    return event
                if state in ("failed", "cancelled"):
                    raise ProviderTaskError.from_event(event)
            raise ProtocolError("the provider's event stream ended before the task finished")

        try:
            return await within(
                "wait",
                limit,
                "the task did not finish",
                follow(),
                lambda: self.arrived(task.ref.task_id),
            )
        except Error as exc:
            raise TaskStepError("wait", exc) from exc

    async def fetch(
        self,
        task: AttestedTask,
        out_dir: str | Path,
        *,
        staging: StagingArea | None = None,
        on_progress: ProgressCallback | None = None,
        input_manifest: InputManifest | None = None,
    ) -> TaskResult:
        """Steps 6-7: download, verify the receipt, decrypt, and move into place together.

        Outputs are decrypted into a private staging folder beside ``out_dir`` (``staging``,
        or one made here) and moved into place only when all of them verified; ``out_dir``
        must be absent or an empty folder. The receipt must carry the digest of the input
        manifest that was sent (``input_manifest``, else the one :meth:`send_inputs` sent for
        this task); it is kept as ``out_dir/.input-manifest.json``. Bounded by the ``fetch``
        deadline (if set) and, per file, the minimum rate.
        """
        manifest = input_manifest or self._manifests.get(task.ref.task_id)
        downloads = Downloader(
            self.channel, self.identity, self.deadlines, self._moving, self.arrived
        )
        return await downloads.fetch(
            task, out_dir, staging=staging, on_progress=on_progress, manifest=manifest
        )

    # -- later: fetch from a record -----------------------------------------------------------

    async def resume(
        self,
        record: TaskRecord,
        out_dir: str | Path,
        *,
        on_event: EventCallback | None = None,
        on_progress: ProgressCallback | None = None,
        keep_task: bool = False,
    ) -> TaskResult:
        """Fetch the outputs of the task ``record`` describes, with every check of :meth:`run`.

        The evidence is fetched and verified again (the policy, with the measurement that
        attested when the task ran pinned unless the policy pins one), the report data must
        bind the record's task, nonce and this identity, the task is waited for if it is still
        running, and the receipt must carry the record's input manifest digest; then the
        outputs land in ``out_dir`` all or nothing, and the task is deleted on the provider
        (unless ``keep_task``). The spec file must still be the one the task was created with.
        Bounded by the whole-task deadline (``total``). Raises :class:`TaskStepError` (step
        ``prepare`` for local problems).
        """
        try:
            spec_file = Path(record.spec)
            parsed = TaskSpec.from_path(spec_file)
            if spec_digest(spec_file) != record.spec_digest.hex():
                raise UsageError(
                    f"the spec {record.spec!r} changed since the task was created",
                    expected=record.spec_digest.hex(),
                    found=spec_digest(spec_file),
                )
            if self.identity.recipient().to_string() != record.requestor_key:
                raise UsageError(
                    "this identity is not the one the task was created with",
                    expected=record.requestor_key,
                    found=self.identity.recipient().to_string(),
                )
            if record.input_manifest is None:
                raise UsageError(
                    "the task's inputs were never sent completely: there is nothing to fetch"
                )
            out = Path(out_dir)
            check_out_folder(out)
        except Error as exc:
            raise TaskStepError("prepare", exc) from exc
        ref = TaskRef(record.task_id.hex(), record.capability_token)
        created = _Created(ref, parsed, spec_file.parent, record.nonce, spec_file)
        if record.mrenclave is not None:
            self._pins[ref.task_id] = record.mrenclave.hex()
        total = self.deadlines.total_for(parsed.limits.wall_seconds)
        step = "attest"
        try:
            async with asyncio.timeout(total):
                attested = await self.attest(created)
                step = "wait"
                await self.wait(attested, on_event=on_event)
                step = "fetch"
                result = await self.fetch(
                    attested, out, on_progress=on_progress, input_manifest=record.input_manifest
                )
        except TimeoutError:
            raise TaskStepError(
                step,
                DeadlineError(
                    "total", total, "the outputs did not arrive", self.arrived(ref.task_id)
                ),
            ) from None
        finally:
            self._pins.pop(ref.task_id, None)
        if not keep_task:
            await self._cleanup(self.channel.delete(ref))
        return result
