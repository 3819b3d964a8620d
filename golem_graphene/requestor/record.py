"""Task records: what a requestor needs to fetch a task's outputs later, with the same checks.

``run`` writes one as soon as the provider created the task and completes it as the task moves
on (the measurement that attested, the digest of the input manifest sent); it is removed once
the outputs are in place and the task deleted. When the download is interrupted (Ctrl-C,
SIGTERM, a network failure, a deadline), the record stays, and ``golem-graphene fetch TASK_ID``
(:meth:`~golem_graphene.requestor.client.Requestor.resume`) uses it to verify the evidence
again, check that the receipt binds this task, this nonce and this input manifest, and fetch the
outputs all or nothing.

Records hold the task's capability token, so they are private files (mode 0600 in a 0700
folder): ``$XDG_STATE_HOME/golem-graphene/tasks/<task id>.json`` (default
``~/.local/state/golem-graphene/tasks``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import Field, StrictStr

from golem_graphene._internal.files import write_atomic
from golem_graphene.errors import Error, UsageError
from golem_graphene.limits import MAX_INPUT_MANIFEST_BYTES
from golem_graphene.protocol.fields import AgeRecipientText, Hex32, Message, Runner, TaskIdHex
from golem_graphene.protocol.version import PROTOCOL_NAME, ProtocolName
from golem_graphene.sealing.input_manifest import InputManifest

__all__ = ["TaskRecord", "default_records_dir", "record_path"]

MAX_RECORD_BYTES = MAX_INPUT_MANIFEST_BYTES + 64 * 1024


class TaskRecord(Message):
    """One task on one provider, as the requestor that created it knows it."""

    max_json_bytes: ClassVar[int] = MAX_RECORD_BYTES
    format_error: ClassVar[type[Error]] = UsageError

    protocol: ProtocolName = PROTOCOL_NAME
    provider: Annotated[StrictStr, Field(min_length=1, max_length=2048)]
    task_id: TaskIdHex
    capability_token: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{0,256}$")]
    nonce: Hex32
    spec: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    """The spec file (``task.toml``), absolute."""
    spec_digest: Hex32
    requestor_key: AgeRecipientText
    runner: Runner | None = None
    """Set once the enclave attested: the runner its evidence named."""
    mrenclave: Hex32 | None = None
    """Set once the enclave attested: the measurement that passed the policy."""
    input_manifest: InputManifest | None = None
    """Set once the sealed input manifest was sent: the receipt must carry its digest."""

    @classmethod
    def load(cls, path: Path) -> TaskRecord:
        """Read a record; raises :class:`UsageError` when it is unreadable or malformed."""
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_RECORD_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read the task record {str(path)!r}: {exc.strerror}") from exc
        return cls.from_json(data)

    def save(self, path: Path) -> None:
        """Write the record (mode 0600; its folder is created 0700)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, self.to_json() + b"\n", mode=0o600)

    def update(self, path: Path | None, **fields: object) -> TaskRecord:
        """This record with ``fields`` changed, saved to ``path`` when given."""
        record = TaskRecord.from_obj({**self.model_dump(), **fields})
        if path is not None:
            record.save(path)
        return record


def default_records_dir() -> Path:
    """``$XDG_STATE_HOME/golem-graphene/tasks`` (default ``~/.local/state/...``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "golem-graphene" / "tasks"


def record_path(task_id: str, directory: Path | None = None) -> Path:
    """Where the record of ``task_id`` lives."""
    return (directory or default_records_dir()) / f"{task_id}.json"
