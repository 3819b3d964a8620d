"""The task lifecycle: an explicit state machine, persisted so that restarts lose nothing.

States (DESIGN.md section 6; issue wording): ``created`` -> ``launching`` -> ``attested`` ->
``inputs_received`` -> ``running`` -> ``sealing`` -> ``done``, and from any non-terminal state
``failed`` (with a reason) or ``cancelled``. Every transition is written to the task's
``state.json`` (atomically) before it is announced.

A provider that restarts finds each accepted task either terminal, or ``created`` (nothing ran
yet: resumable, it is launched again), or in between: the enclave died with the provider and its
keys with it, so that task is failed with the reason, and its processes and files are reclaimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from golem_graphene._internal.files import write_atomic
from golem_graphene.errors import TransitionError
from golem_graphene.protocol.names import TERMINAL_STATES, TaskState, is_error_code

__all__ = ["Task", "TaskStore"]


_NEXT: dict[TaskState, frozenset[TaskState]] = {
    TaskState.CREATED: frozenset({TaskState.LAUNCHING}),
    TaskState.LAUNCHING: frozenset({TaskState.ATTESTED}),
    TaskState.ATTESTED: frozenset({TaskState.INPUTS_RECEIVED}),
    TaskState.INPUTS_RECEIVED: frozenset({TaskState.RUNNING}),
    TaskState.RUNNING: frozenset({TaskState.SEALING}),
    TaskState.SEALING: frozenset({TaskState.DONE}),
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Task:
    """One task's persisted record. Tokens are stored only as SHA-256 digests."""

    task_id: str
    spec_name: str
    spec_digest: str
    nonce: str
    requestor_key: str
    owner: str
    capability_sha256: str
    state: TaskState = TaskState.CREATED
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    failure: dict[str, str] | None = None
    runner: str = "sim"
    pid: int | None = None
    input_bytes: int = 0
    exit_status: int | None = None
    termination: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def public(self) -> dict[str, Any]:
        """What the task's owner may see (never token digests or pids)."""
        return {
            "task_id": self.task_id,
            "state": self.state.value,
            "spec_name": self.spec_name,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "failure": self.failure,
            "runner": self.runner,
            "input_bytes": self.input_bytes,
            "exit_status": self.exit_status,
            "termination": self.termination,
        }


@dataclass
class _Events:
    items: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class TaskStore:
    """Tasks on disk under ``root/<task_id>/`` with their in-memory event logs."""

    def __init__(self, root: Path, max_events: int = 10_000) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._tasks: dict[str, Task] = {}
        self._events: dict[str, _Events] = {}
        self._max_events = max_events

    def directory(self, task_id: str) -> Path:
        return self.root / task_id

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def all(self) -> list[Task]:
        return list(self._tasks.values())

    def active_count(self) -> int:
        return sum(1 for t in self._tasks.values() if not t.terminal)

    def add(self, task: Task) -> None:
        self.directory(task.task_id).mkdir(mode=0o700)
        self._tasks[task.task_id] = task
        self._events[task.task_id] = _Events()
        self._persist(task)

    def remove(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)
        self._events.pop(task_id, None)

    def _persist(self, task: Task) -> None:
        data = json.dumps({**asdict(task), "state": task.state.value}, indent=2).encode()
        write_atomic(self.directory(task.task_id) / "state.json", data)

    def save(self, task: Task) -> None:
        """Persist a change that is not a state transition (pid, byte counts)."""
        task.updated_at = _now()
        self._persist(task)

    async def transition(
        self,
        task: Task,
        state: TaskState,
        *,
        failure: dict[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        """Move ``task`` to ``state`` (persisted first), then announce it as an event."""
        if task.terminal:
            raise TransitionError(f"task is already {task.state.value}", found=state.value)
        if state not in (TaskState.FAILED, TaskState.CANCELLED) and state not in _NEXT[task.state]:
            raise TransitionError(
                f"a {task.state.value} task cannot become {state.value}",
                expected=", ".join(sorted(_NEXT[task.state])),
                found=state.value,
            )
        task.state = state
        task.failure = failure
        task.updated_at = _now()
        self._persist(task)
        # A failure's stable code travels with its event, so a requestor can act on it.
        await self.event(
            task,
            message=message or (failure or {}).get("message"),
            code=_event_code((failure or {}).get("code")),
        )

    async def event(self, task: Task, **fields: Any) -> None:
        """Append an event (the task's current state plus ``fields``) and wake listeners."""
        log = self._events.setdefault(task.task_id, _Events())
        body = {k: v for k, v in fields.items() if v is not None}
        event = {"task_id": task.task_id, "state": task.state.value, "seq": len(log.items), **body}
        async with log.changed:
            if len(log.items) < self._max_events:
                log.items.append(event)
            log.changed.notify_all()

    async def events_since(self, task_id: str, seq: int, timeout: float) -> list[dict[str, Any]]:
        """Events with ``seq >= seq``; waits up to ``timeout`` seconds when there are none."""
        log = self._events.setdefault(task_id, _Events())
        async with log.changed:
            if len(log.items) <= seq:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await log.changed.wait()
            return log.items[seq:]

    def load(self) -> list[Task]:
        """Read every persisted task (after a restart); unreadable records are skipped."""
        loaded = []
        for state_file in sorted(self.root.glob("*/state.json")):
            try:
                raw = json.loads(state_file.read_text())
                raw["state"] = TaskState(raw["state"])
                task = Task(**raw)
            except (OSError, ValueError, TypeError, KeyError):
                continue
            self._tasks[task.task_id] = task
            self._events[task.task_id] = _Events()
            loaded.append(task)
        return loaded


def _event_code(code: str | None) -> str | None:
    """A failure code as events carry it (the TaskEvent pattern), or None."""
    return code if is_error_code(code) else None
