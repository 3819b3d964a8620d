"""What the requestor's task flow reports: its own progress, the tasks it attested and finished,
and the errors of a failed step (its own words apart from the provider's)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from golem_graphene._internal.text import provider_says
from golem_graphene.attestation.verifier import VerifiedQuote
from golem_graphene.errors import Error, UsageError
from golem_graphene.protocol.binding import Transcript
from golem_graphene.protocol.messages import Evidence, TaskEvent
from golem_graphene.protocol.spec import TaskSpec
from golem_graphene.requestor.channel import ProviderWords, TaskRef
from golem_graphene.sealing.keys import X25519Recipient
from golem_graphene.sealing.receipt import ReceiptCheckError, VerifiedReceipt

__all__ = [
    "AttestedTask",
    "LocalProgress",
    "Phase",
    "ProgressCallback",
    "ProviderTaskError",
    "TaskResult",
    "TaskStepError",
    "fetch_may_succeed_again",
    "own_words",
]

Phase = Literal["measure", "created", "upload", "download"]


@dataclass(frozen=True)
class LocalProgress:
    """The requestor's own progress, in its own words (never the provider's).

    ``phase``: ``measure`` (the spec's image, measured here, gave the expected measurement
    ``detail`` for runner ``name``), ``created`` (the provider created task ``name``),
    ``upload`` (input ``name``), ``download`` (output ``name``, or ``receipt.json``).
    ``done``/``total`` are bytes (plaintext for uploads, ciphertext for downloads), ``elapsed``
    the seconds since the phase began, so a rate is ``done / elapsed`` of this phase alone.
    """

    phase: Phase
    name: str
    done: int = 0
    total: int | None = None
    elapsed: float = 0.0
    finished: bool = False
    detail: str = ""


ProgressCallback = Callable[[LocalProgress], None]


class ProviderTaskError(ProviderWords):
    """The task failed or was cancelled on the provider. ``code`` is the failure's own code
    from the provider's event (the agent's ``input_sha256``, ``output_symlink``, the provider's
    ``task_timeout``, ...), else ``task_failed`` or ``task_cancelled``; ``provider_text`` is the
    event's message (the provider's words, untrusted)."""

    code = "task_failed"

    @classmethod
    def from_event(cls, event: TaskEvent, where: str = "on the provider") -> ProviderTaskError:
        state = event.state.value
        error = cls(f"the task {state} {where}".strip(), provider_text=event.message)
        if event.code is not None:
            error.code = event.code
        elif state == "cancelled":
            error.code = "task_cancelled"
        return error


class TaskStepError(Error):
    """A step of the task flow failed; ``step`` names it and ``cause`` is the precise error.

    ``provider_text`` is the provider's own words about it, if any (untrusted, shown escaped
    by :meth:`describe`); :meth:`describe_own` leaves them out (for a verdict line).
    """

    def __init__(self, step: str, cause: Error) -> None:
        self.step = step
        self.cause = cause
        self.code = cause.code
        self.provider_text: str | None = getattr(cause, "provider_text", None)
        super().__init__(f"{step}: {own_words(cause)}")
        if hasattr(cause, "established"):
            self.established = cause.established

    def describe_own(self) -> str:
        """Our words about the failure: the step and the cause, without the provider's."""
        return super().describe()

    def describe(self) -> str:
        own = self.describe_own()
        return f"{own}; {provider_says(self.provider_text)}" if self.provider_text else own


def own_words(error: Error) -> str:
    """What ``error`` says in our own words (without any provider's text it carries)."""
    describe_own = getattr(error, "describe_own", None)
    return str(describe_own()) if callable(describe_own) else error.describe()


@dataclass(frozen=True)
class AttestedTask:
    """A task whose enclave quote verified and bound this task's transcript."""

    ref: TaskRef
    spec: TaskSpec
    spec_dir: Path
    nonce: bytes
    transcript: Transcript
    evidence: Evidence
    verified: VerifiedQuote

    @property
    def enclave_recipient(self) -> X25519Recipient:
        return X25519Recipient.from_public_bytes(self.transcript.enclave_key)


@dataclass(frozen=True)
class TaskResult:
    """A finished, verified task: where its outputs and receipt are."""

    task_id: str
    out_dir: Path
    outputs: dict[str, Path]
    receipt_path: Path
    receipt: VerifiedReceipt
    exit_status: int
    verified: VerifiedQuote


def fetch_may_succeed_again(failure: BaseException) -> bool:
    """True when a fetch ended without a verdict on the outputs (interrupted, a broken
    connection, a deadline): fetching them again may succeed."""
    if not isinstance(failure, TaskStepError):
        return True  # KeyboardInterrupt, cancellation
    cause = failure.cause
    return not isinstance(cause, ReceiptCheckError | UsageError) and not getattr(
        cause, "code", ""
    ).startswith("receipt_")
