"""The task lifecycle: the state machine, its persistence, events, and recovery after a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest
from _provider_fakes import FakeRunner, make_engine, write_spec

from golem_graphene.errors import TransitionError
from golem_graphene.protocol.names import TERMINAL_STATES as TERMINAL
from golem_graphene.protocol.names import TaskState
from golem_graphene.protocol.spec import spec_digest
from golem_graphene.provider.lifecycle import Task, TaskStore

S = TaskState
# A valid X25519 recipient (the agent's attest command carries it; the fake checks its shape).
REQUESTOR_KEY = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqys5kp7wf"

PATH = [S.CREATED, S.LAUNCHING, S.ATTESTED, S.INPUTS_RECEIVED, S.RUNNING, S.SEALING, S.DONE]
NON_TERMINAL = [s for s in S if s not in TERMINAL]


def new_task(task_id: str = "a" * 32, state: TaskState = S.CREATED) -> Task:
    return Task(
        task_id=task_id,
        spec_name="echo",
        spec_digest="d" * 64,
        nonce="0e" * 32,
        requestor_key=REQUESTOR_KEY,
        owner="owner-digest",
        capability_sha256="c" * 64,
        state=state,
    )


def on_disk(store: TaskStore, task: Task) -> dict[str, object]:
    data: dict[str, object] = json.loads((store.directory(task.task_id) / "state.json").read_text())
    return data


@pytest.fixture
def store(tmp_path: Path) -> TaskStore:
    return TaskStore(tmp_path / "tasks")


# --- the state machine --------------------------------------------------------------------------


async def test_the_happy_path_is_persisted_at_every_step(store: TaskStore) -> None:
    task = new_task()
    store.add(task)
    assert on_disk(store, task)["state"] == "created"
    for state in PATH[1:]:
        await store.transition(task, state)
        assert task.state is state
        assert on_disk(store, task)["state"] == state.value
    assert task.terminal
    assert [e["state"] for e in await store.events_since(task.task_id, 0, 0)] == [
        s.value for s in PATH[1:]
    ]
    assert list(store.directory(task.task_id).glob(".state.*")) == []


ILLEGAL = [
    (a, b)
    for a in NON_TERMINAL
    for b in S
    if b not in (S.FAILED, S.CANCELLED) and PATH.index(b) != PATH.index(a) + 1
]


@pytest.mark.parametrize(("start", "target"), ILLEGAL, ids=lambda s: s.value)
async def test_illegal_transitions_raise_and_change_nothing(
    store: TaskStore, start: TaskState, target: TaskState
) -> None:
    task = new_task(state=start)
    store.add(task)
    before = on_disk(store, task)
    with pytest.raises(TransitionError) as caught:
        await store.transition(task, target)
    assert caught.value.code == "invalid_state"
    assert target.value in str(caught.value)
    assert task.state is start
    assert on_disk(store, task) == before
    assert await store.events_since(task.task_id, 0, 0) == []


@pytest.mark.parametrize("start", NON_TERMINAL, ids=lambda s: s.value)
@pytest.mark.parametrize("end", [S.FAILED, S.CANCELLED], ids=lambda s: s.value)
async def test_any_live_task_can_fail_or_be_cancelled(
    store: TaskStore, start: TaskState, end: TaskState
) -> None:
    task = new_task(state=start)
    store.add(task)
    failure = {"code": "boom", "message": "it broke"} if end is S.FAILED else None
    await store.transition(task, end, failure=failure)
    assert on_disk(store, task)["state"] == end.value
    assert on_disk(store, task)["failure"] == failure
    (event,) = await store.events_since(task.task_id, 0, 0)
    assert event["state"] == end.value
    if failure:
        assert event["message"] == "it broke"


@pytest.mark.parametrize("end", sorted(TERMINAL), ids=lambda s: s.value)
@pytest.mark.parametrize("target", list(S), ids=lambda s: s.value)
async def test_terminal_states_are_final(
    store: TaskStore, end: TaskState, target: TaskState
) -> None:
    task = new_task(state=end)
    store.add(task)
    with pytest.raises(TransitionError, match=f"already {end.value}"):
        await store.transition(task, target)
    assert task.state is end


def test_public_view_hides_secrets_and_pids() -> None:
    task = new_task()
    task.pid = 1234
    public = task.public()
    assert "capability_sha256" not in public
    assert "owner" not in public
    assert "pid" not in public
    assert "nonce" not in public
    assert public["state"] == "created"


# --- persistence --------------------------------------------------------------------------------


async def test_state_round_trips_through_disk(store: TaskStore, tmp_path: Path) -> None:
    task = new_task()
    store.add(task)
    await store.transition(task, S.LAUNCHING)
    task.pid = 4242
    task.input_bytes = 77
    store.save(task)
    await store.transition(task, S.FAILED, failure={"code": "x", "message": "y"})
    (loaded,) = TaskStore(tmp_path / "tasks").load()
    assert asdict(loaded) == asdict(task)
    assert loaded.state is S.FAILED


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[]", b'{"task_id": "x"}', b'{"state": "sleeping"}'],
    ids=["empty", "malformed", "not-an-object", "missing-fields", "unknown-state"],
)
def test_unreadable_records_are_skipped(store: TaskStore, tmp_path: Path, content: bytes) -> None:
    good = new_task("b" * 32)
    store.add(good)
    bad = tmp_path / "tasks" / ("c" * 32)
    bad.mkdir()
    (bad / "state.json").write_bytes(content)
    fresh = TaskStore(tmp_path / "tasks")
    assert [t.task_id for t in fresh.load()] == [good.task_id]
    assert fresh.get("c" * 32) is None


# --- events -------------------------------------------------------------------------------------


async def test_events_are_numbered_and_wake_listeners(store: TaskStore) -> None:
    task = new_task()
    store.add(task)
    listener = asyncio.create_task(store.events_since(task.task_id, 0, timeout=5))
    await asyncio.sleep(0.01)
    assert not listener.done()
    await store.event(task, message="hello", bytes_done=None)
    (first,) = await asyncio.wait_for(listener, 1)
    assert first == {"task_id": task.task_id, "state": "created", "seq": 0, "message": "hello"}
    await store.transition(task, S.LAUNCHING)
    assert [e["seq"] for e in await store.events_since(task.task_id, 0, 0)] == [0, 1]
    assert [e["seq"] for e in await store.events_since(task.task_id, 1, 0)] == [1]
    assert await store.events_since(task.task_id, 2, timeout=0.05) == []


async def test_event_log_is_bounded(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "tasks", max_events=3)
    task = new_task()
    store.add(task)
    for i in range(10):
        await store.event(task, message=str(i))
    assert len(await store.events_since(task.task_id, 0, 0)) == 3


# --- recovery after a restart -------------------------------------------------------------------


def _persist(tmp_path: Path, task: Task) -> Path:
    """Write ``task`` as a previous provider process left it; returns its folder."""
    store = TaskStore(tmp_path / "data" / "tasks")
    store.add(task)
    folder = store.directory(task.task_id)
    (folder / "launch" / "io" / "inputs").mkdir(parents=True)
    (folder / "outputs").mkdir()
    (folder / "outputs" / "out.age").write_bytes(b"sealed")
    return folder


def _spawn(program: str, cwd: Path) -> subprocess.Popen[bytes]:
    """A process that looks like ``program`` (its argv[0]) working in ``cwd``."""
    return subprocess.Popen(
        [program, "-c", "import time; time.sleep(60)"], executable=sys.executable, cwd=cwd
    )


async def test_recover_accounts_for_every_task(tmp_path: Path) -> None:
    created = new_task("1" * 32, S.CREATED)
    created.spec_digest = spec_digest(write_spec(tmp_path / "specs"))
    running = new_task("2" * 32, S.RUNNING)
    done = new_task("3" * 32, S.DONE)
    failed = new_task("4" * 32, S.FAILED)
    attested = new_task("5" * 32, S.ATTESTED)
    launching = new_task("7" * 32, S.LAUNCHING)
    launching.spec_digest = created.spec_digest
    folders = {
        t.task_id: _persist(tmp_path, t) for t in (created, running, done, failed, launching)
    }
    # Crashed between writing its evidence and recording "attested": never published.
    unpublished = folders[launching.task_id] / "evidence.json"
    unpublished.write_text("{}")
    # What a previous run's enclave looks like: a launcher working in its task's launch folder.
    sandbox = _spawn("bwrap", folders[running.task_id] / "launch")
    # A pid reused by someone else's process, even one whose command line says "gramine".
    stranger = _spawn("/opt/gramine-tools/python3", tmp_path)
    try:
        running.pid = sandbox.pid
        attested.pid = stranger.pid
        TaskStore(tmp_path / "data" / "tasks").save(running)
        folders[attested.task_id] = _persist(tmp_path, attested)

        stray = folders[attested.task_id] / "launch" / "io" / "inputs" / "x.age.part"
        stray.write_bytes(b"half an upload")

        runner = FakeRunner("hang")
        engine = make_engine(tmp_path, runner)
        counts = await engine.recover()
        assert counts == {"resumed": 2, "failed": 2, "kept": 2}

        # A task that had not attested (no evidence published) is resumed: launched again,
        # from a clean folder, without the evidence its lost enclave left unpublished.
        assert not unpublished.exists()
        await asyncio.sleep(0.05)
        for task in (created, launching):
            assert task.task_id in runner.launched
            assert engine.store.get(task.task_id).state is S.LAUNCHING  # type: ignore[union-attr]

        # A task whose enclave died with the provider failed with the reason, reclaimed.
        for task in (running, attested):
            record = engine.store.get(task.task_id)
            assert record is not None and record.state is S.FAILED
            assert record.failure is not None
            assert record.failure["code"] == "provider_restarted"
            assert task.state.value in record.failure["message"]
            assert not (folders[task.task_id] / "launch").exists()
            assert not (folders[task.task_id] / "outputs").exists()
            assert json.loads((folders[task.task_id] / "state.json").read_text())["state"] == (
                "failed"
            )
        assert sandbox.wait(5) == -9  # its leftover enclave process was killed
        assert stranger.poll() is None  # but nobody else's

        # Finished tasks are kept as they were: records and sealed outputs, no launch folder.
        assert engine.store.get(done.task_id).state is S.DONE  # type: ignore[union-attr]
        assert (folders[done.task_id] / "outputs" / "out.age").read_bytes() == b"sealed"
        assert not (folders[done.task_id] / "launch").exists()
        assert engine.store.get(failed.task_id).state is S.FAILED  # type: ignore[union-attr]
        assert not (folders[failed.task_id] / "outputs").exists()
        assert not stray.exists()
        await engine.close()
        for task in (created, launching):
            assert engine.store.get(task.task_id).state is S.CANCELLED  # type: ignore[union-attr]
    finally:
        for proc in (sandbox, stranger):
            proc.kill()
            proc.wait()


async def test_recover_is_idempotent(tmp_path: Path) -> None:
    _persist(tmp_path, new_task("6" * 32, S.SEALING))
    engine = make_engine(tmp_path, FakeRunner("hang"))
    assert await engine.recover() == {"resumed": 0, "failed": 1, "kept": 0}
    again = make_engine(tmp_path, FakeRunner("hang"))
    assert await again.recover() == {"resumed": 0, "failed": 0, "kept": 1}
    record = again.store.get("6" * 32)
    assert record is not None and record.failure is not None
    assert record.failure["code"] == "provider_restarted"


# --- the engine drives the states ---------------------------------------------------------------


async def test_engine_walks_a_task_through_its_states(tmp_path: Path) -> None:
    runner = FakeRunner("attest")
    engine = make_engine(tmp_path, runner)
    task, token = await engine.create(
        owner="o",
        spec_name="echo",
        spec_sha256=spec_digest(tmp_path / "specs" / "echo"),
        nonce="00" * 32,
        requestor_key=REQUESTOR_KEY,
    )
    assert len(token) >= 32
    assert task.capability_sha256 != token
    await asyncio.wait_for(_until(lambda: task.state is S.ATTESTED), 5)
    assert (engine.store.directory(task.task_id) / "evidence.json").is_file()
    with pytest.raises(TransitionError, match="manifest"):
        await engine.begin(task)  # no sealed manifest yet
    (engine.io_dir(task.task_id) / "manifest.sealed").write_bytes(b"{}")
    await engine.begin(task)
    assert task.state is S.INPUTS_RECEIVED
    enclave = runner.launched[task.task_id]
    attest = {
        "cmd": "attest",
        "task_id": task.task_id,
        "nonce": "00" * 32,
        "requestor_key": REQUESTOR_KEY,
    }
    await asyncio.wait_for(_until(lambda: enclave.sent == [attest, {"cmd": "run"}]), 5)
    enclave.push({"event": "running"})
    enclave.push({"event": "failed", "code": "input_sha256", "message": "x: the SHA-256 differs"})
    await asyncio.wait_for(_until(lambda: task.state is S.FAILED), 5)
    assert task.failure is not None
    assert "input_sha256" in task.failure["message"]
    last = (await engine.store.events_since(task.task_id, 0, 0))[-1]
    assert (last["state"], last["code"]) == ("failed", "input_sha256")
    await asyncio.wait_for(_until(lambda: not engine.launch_dir(task.task_id).exists()), 5)
    assert enclave.killed
    states = [e["state"] for e in await engine.store.events_since(task.task_id, 0, 0)]
    assert states[-3:] == ["inputs_received", "running", "failed"]
    await engine.close()


async def test_a_launch_failure_fails_the_task_with_its_reason(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, FakeRunner("fail"))
    task, _ = await engine.create(
        owner="o",
        spec_name="echo",
        spec_sha256=spec_digest(tmp_path / "specs" / "echo"),
        nonce="00" * 32,
        requestor_key=REQUESTOR_KEY,
    )
    await asyncio.wait_for(_until(lambda: task.terminal), 5)
    assert task.state is S.FAILED
    assert task.failure == {"code": "runner", "message": "the fake enclave cannot start"}
    # Reclaimed on the engine's own thread once the task is failed.
    await asyncio.wait_for(_until(lambda: not engine.launch_dir(task.task_id).exists()), 5)

    await engine.close()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - the engine's state changes in its own tasks
        await asyncio.sleep(0.01)


async def test_a_task_cancelled_before_its_enclave_is_ready_kills_it(tmp_path: Path) -> None:
    runner = FakeRunner("silent")
    engine = make_engine(tmp_path, runner)
    task, _ = await engine.create(
        owner="o",
        spec_name="echo",
        spec_sha256=spec_digest(tmp_path / "specs" / "echo"),
        nonce="00" * 32,
        requestor_key=REQUESTOR_KEY,
    )
    await asyncio.wait_for(_until(lambda: task.task_id in runner.launched), 5)
    await engine.cancel(task)
    assert task.state is S.CANCELLED
    enclave = runner.launched[task.task_id]
    assert enclave.killed and enclave.waited  # reclaimed, not only killed
    assert not engine.launch_dir(task.task_id).exists()
    await engine.close()
