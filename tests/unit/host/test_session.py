"""EnclaveSession, the one host side of the agent protocol, against a scripted agent.

Each step's checks: ready and its version, attest and the evidence, run and the order of the
agent's events, its failures with their stable codes, and the collection of the sealed outputs
(never through links the workload planted, bounded, the receipt the agent reported).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

import pytest
from _agent_fakes import Script, ScriptedEnclave, ScriptedRunner, new_task_args

from golem_graphene.errors import ProtocolError, RunnerError
from golem_graphene.host.image import EnclaveImage
from golem_graphene.host.session import EnclaveSession
from golem_graphene.limits import MAX_RECEIPT_BUNDLE_BYTES
from golem_graphene.protocol.agent import (
    AgentEvent,
    AgentProtocolError,
    Failed,
    OutputsSealed,
    Progress,
    Ready,
    Running,
    Sealing,
    encode,
)
from golem_graphene.sealing.receipt import ReceiptBundle

IMAGE = cast(EnclaveImage, object())


async def launched(tmp_path: Path, script: Script | None = None) -> EnclaveSession:
    runner = ScriptedRunner(script)
    return await EnclaveSession.launch(
        runner, IMAGE, tmp_path / "launch", stderr_path=tmp_path / "enclave.log"
    )


def agent(session: EnclaveSession) -> ScriptedEnclave:
    return cast(ScriptedEnclave, session.process)


async def attested(tmp_path: Path, script: Script | None = None) -> EnclaveSession:
    session = await launched(tmp_path, script)
    await session.wait_ready()
    await session.attest(*new_task_args())
    return session


# --- cancellation ------------------------------------------------------------------------------


class _FrameAtOnce:
    """An enclave whose next frame arrives in the same loop turn as its caller's cancel."""

    def __init__(self) -> None:
        self.frame: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def read_frame(self) -> bytes:
        return await self.frame


async def test_a_cancel_arriving_with_the_agents_frame_is_not_swallowed(tmp_path: Path) -> None:
    """Python 3.11's ``asyncio.wait_for`` returns the inner result when it finished in the same
    turn as the cancel (cpython gh-86296); a DELETE arriving as the evidence did then left the
    task driver waiting for inputs for ever. The session must raise the cancel."""
    process = _FrameAtOnce()
    session = EnclaveSession(cast(Any, process), cast(Any, None), tmp_path)
    waiting = asyncio.create_task(session.wait_ready())
    for _ in range(3):
        await asyncio.sleep(0)
    process.frame.set_result(encode(Ready(agent="scripted/1")))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


@pytest.mark.parametrize(
    "construct",
    # ``asyncio.timeout`` instead of the first (see the test above); ``settle`` instead of
    # awaiting a stopped task under the second, which also swallows the caller's own cancel.
    ["asyncio.wait_for(", "suppress(asyncio.CancelledError"],
)
def test_the_package_never_swallows_a_cancel(construct: str) -> None:
    package = Path(__file__).resolve().parents[3] / "golem_graphene"
    users = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if construct in path.read_text()
    ]
    assert users == []


# --- ready and attest ---------------------------------------------------------------------------


async def test_a_whole_conversation(tmp_path: Path) -> None:
    session = await launched(tmp_path)
    ready = await session.wait_ready()
    assert (ready.protocol, ready.agent) == (1, "scripted/1")
    task_id, nonce, key = new_task_args()
    evidence = await session.attest(task_id, nonce, key)
    assert (evidence.task_id.hex(), evidence.runner, evidence.simulated) == (task_id, "sim", True)
    assert agent(session).sent[0] == {
        "cmd": "attest",
        "task_id": task_id,
        "nonce": nonce,
        "requestor_key": key,
    }
    seen: list[AgentEvent] = []

    async def note(event: AgentEvent) -> None:
        seen.append(event)

    outcome = await session.run(note)
    assert agent(session).sent[1] == {"cmd": "run"}
    assert (outcome.exit_status, outcome.termination, outcome.outputs) == (0, "exited", 3)
    assert [e.event for e in seen] == ["inputs_opened", "running", "sealing"]
    bundle = await session.collect_outputs(tmp_path / "collected")
    assert sorted(p.name for p in (tmp_path / "collected").iterdir()) == [
        "out.age",
        "receipt.json",
        "stderr.age",
        "stdout.age",
    ]
    on_disk = ReceiptBundle.from_json((tmp_path / "collected" / "receipt.json").read_bytes())
    assert on_disk == bundle and bundle.evidence == evidence
    await session.close()
    assert agent(session).killed


async def test_the_agent_says_nothing_in_time(tmp_path: Path) -> None:
    session = await launched(tmp_path, Script(ready=False))
    with pytest.raises(RunnerError, match="did not answer in time"):
        await session.wait_ready(timeout=0.05)


async def test_the_agent_exits_at_its_start(tmp_path: Path) -> None:
    session = await launched(tmp_path, Script(ready=False))
    agent(session).push(None)
    with pytest.raises(RunnerError, match="exited at its start"):
        await session.wait_ready()


async def test_the_agent_refuses_at_its_start_with_its_code(tmp_path: Path) -> None:
    session = await launched(tmp_path, Script(ready=False))
    agent(session).push(encode(Failed(code="workload_format", message="bad workload.json")))
    with pytest.raises(RunnerError) as caught:
        await session.wait_ready()
    assert caught.value.code == "workload_format"
    assert "bad workload.json" in str(caught.value)


@pytest.mark.parametrize(
    ("frame", "rule"),
    [
        (b'{"event":"ready","protocol":2,"agent":"x"}\n', "protocol"),
        (b'{"event":"running"}\n', "first event is not ready"),
        (b'{"event":"ready","protocol":1,"agent":"x","x":1}\n', "Extra inputs"),
        (b'{"event":"ready","event":"ready"}\n', "repeats a key"),
        (b'{"event":"\xff"}\n', "printable ASCII"),
    ],
)
async def test_a_bad_first_frame_is_a_protocol_error(
    tmp_path: Path, frame: bytes, rule: str
) -> None:
    session = await launched(tmp_path, Script(ready=False))
    agent(session).push(frame)
    with pytest.raises(AgentProtocolError, match=rule) as caught:
        await session.wait_ready()
    assert caught.value.code == "agent_protocol"
    assert "\xff" not in str(caught.value)


async def test_malformed_task_values_never_reach_the_agent(tmp_path: Path) -> None:
    session = await launched(tmp_path)
    await session.wait_ready()
    task_id, nonce, _ = new_task_args()
    with pytest.raises(ProtocolError, match="requestor_key"):
        await session.attest(task_id, nonce, "age1notakey")
    assert agent(session).sent == []


async def test_attest_answered_with_another_event(tmp_path: Path) -> None:
    session = await launched(tmp_path, Script(answer_attest=False))
    await session.wait_ready()
    agent(session).push(encode(Running()))
    with pytest.raises(AgentProtocolError, match="answered attest with another event"):
        await session.attest(*new_task_args())


async def test_attest_is_sent_once_after_ready(tmp_path: Path) -> None:
    session = await launched(tmp_path)
    with pytest.raises(RunnerError, match="after ready"):
        await session.attest(*new_task_args())
    await session.wait_ready()
    await session.attest(*new_task_args())
    with pytest.raises(RunnerError, match="once"):
        await session.attest(*new_task_args())


# --- run: the order of events and failures --------------------------------------------------------


def _events(*events: Any) -> list[bytes]:
    return [encode(e) for e in events]


SEALED = OutputsSealed(exit_status=0, termination="exited", outputs=2, receipt_sha256=bytes(32))


@pytest.mark.parametrize(
    "events",
    [
        _events(Running(), Progress(phase="inputs", name="a", bytes_done=1, bytes_total=1)),
        _events(Running(), Running()),
        _events(Sealing(exit_status=0, termination="exited"), Running()),
        _events(SEALED, Running()),  # nothing after a terminal event: caught as end of task
    ],
)
async def test_events_out_of_order_are_refused(tmp_path: Path, events: list[bytes]) -> None:
    session = await attested(tmp_path, Script(run_events=events))
    if events[0] == encode(SEALED):
        assert await session.run() == SEALED
        return
    with pytest.raises(AgentProtocolError, match="out of order"):
        await session.run()


async def test_a_failure_after_run_carries_the_agent_code(tmp_path: Path) -> None:
    failed = Failed(code="input_sha256", message="data.csv: the SHA-256 differs")
    session = await attested(tmp_path, Script(run_events=_events(Running(), failed)))
    with pytest.raises(RunnerError) as caught:
        await session.run()
    assert caught.value.code == "input_sha256"


async def test_the_enclave_dies_mid_run(tmp_path: Path) -> None:
    session = await attested(tmp_path, Script(run_events=[encode(Running())]))
    agent(session).push(None)
    with pytest.raises(RunnerError, match="exited without finishing the task"):
        await session.run()


async def test_an_unknown_failure_code_is_a_protocol_error(tmp_path: Path) -> None:
    frame = b'{"event":"failed","code":"made_up","message":"x"}\n'
    session = await attested(tmp_path, Script(run_events=[frame]))
    with pytest.raises(AgentProtocolError, match="stable failure codes"):
        await session.run()


# --- collecting outputs: the workload shares io/ -----------------------------------------------


async def _collect(tmp_path: Path, after_sealing: Any) -> ReceiptBundle:
    session = await attested(tmp_path, Script(after_sealing=after_sealing))
    await session.run()
    return await session.collect_outputs(tmp_path / "collected")


async def test_a_symlinked_outputs_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"

    def swap(io_dir: Path) -> None:
        os.rename(io_dir / "outputs", elsewhere)
        (io_dir / "outputs").symlink_to(elsewhere)

    with pytest.raises(RunnerError, match="outputs folder is missing or a symbolic link"):
        await _collect(tmp_path, swap)
    assert not (tmp_path / "collected").exists()


async def test_a_linked_receipt_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("the provider's own file")

    def link(io_dir: Path) -> None:
        (io_dir / "outputs" / "receipt.json").unlink()
        (io_dir / "outputs" / "receipt.json").symlink_to(secret)

    with pytest.raises(RunnerError, match=r"no readable receipt\.json"):
        await _collect(tmp_path, link)


async def test_an_oversized_receipt_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    def grow(io_dir: Path) -> None:
        with open(io_dir / "outputs" / "receipt.json", "ab") as f:
            f.truncate(MAX_RECEIPT_BUNDLE_BYTES + 10)

    with pytest.raises(RunnerError, match=r"receipt\.json is too large"):
        await _collect(tmp_path, grow)


async def test_a_fifo_receipt_does_not_block(tmp_path: Path) -> None:
    def fifo(io_dir: Path) -> None:
        (io_dir / "outputs" / "receipt.json").unlink()
        os.mkfifo(io_dir / "outputs" / "receipt.json")

    with pytest.raises(RunnerError, match="not a regular file"):
        await asyncio.wait_for(_collect(tmp_path, fifo), 10)


async def test_a_receipt_changed_after_the_agent_wrote_it_is_refused(tmp_path: Path) -> None:
    def change(io_dir: Path) -> None:
        with open(io_dir / "outputs" / "receipt.json", "ab") as f:
            f.write(b" ")

    with pytest.raises(RunnerError, match="changed after the enclave wrote it"):
        await _collect(tmp_path, change)


async def test_outputs_are_collected_only_after_outputs_sealed(tmp_path: Path) -> None:
    session = await attested(tmp_path)
    with pytest.raises(RunnerError, match="after outputs_sealed"):
        await session.collect_outputs(tmp_path / "collected")


# --- standby enclaves -----------------------------------------------------------------------------


async def test_adopting_a_standby_enclave_moves_it_and_starts_its_clock(tmp_path: Path) -> None:
    standby = tmp_path / "standby" / "abc"
    standby.mkdir(parents=True)
    (standby / "enclave.log").write_text("started\n")
    session = await EnclaveSession.launch(
        ScriptedRunner(),
        IMAGE,
        standby / "launch",
        stderr_path=standby / "enclave.log",
        standby=True,
    )
    await session.wait_ready()
    assert not agent(session).armed
    task = tmp_path / "task"
    task.mkdir()
    session.adopt(task / "launch", task / "enclave.log")
    assert session.launch_dir == task / "launch" and session.io_dir.is_dir()
    assert (task / "enclave.log").read_text() == "started\n"
    assert not standby.exists()
    assert agent(session).armed
