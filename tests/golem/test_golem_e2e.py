"""Confidential tasks end to end through the real runtime, driven as yagna's ExeUnit drives it.

Two requestor paths share the one protocol implementation: the :class:`GolemChannel` under the
:class:`Requestor` directly, and the yapapi worker pattern (``ctx.new_script()``, ``yield
script``) with :class:`ConfidentialTask` inside it. The runtime runs the real agent in the sim
runner's sandbox; outputs are compared with what the workload must produce.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from golem_support import CSV_STATS
from supervisor import CommandModeExeUnit, ExeUnitSimulator

from golem_graphene.requestor.client import Requestor, RequestorPolicy, TaskStepError
from golem_graphene.requestor.golem import (
    ConfidentialTask,
    GolemChannel,
    build_task_package,
    execute_tasks,
)
from golem_graphene.requestor.golem.package import TaskPackage
from golem_graphene.requestor.golem.work import Script, Task, WorkContext
from golem_graphene.requestor.measure import measure_locally
from golem_graphene.runtime.settings import COUNTER_ENCLAVE_SECONDS
from golem_graphene.sealing.keys import X25519Identity

pytestmark = [pytest.mark.sandbox, pytest.mark.asyncio(loop_scope="module")]

CONCAT = ["-c", "cat inputs/x inputs/y > outputs/both; echo done"]


@pytest.fixture
def shell_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "x").write_bytes(b"the first input\n" * 100)
    (tmp_path / "y").write_bytes(b"a second, longer input\n" * 150)
    return {"x": tmp_path / "x", "y": tmp_path / "y"}


async def test_direct_requestor_over_the_golem_channel(
    activity: ExeUnitSimulator,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    assert activity.server is not None
    seen = len(activity.server.responses)
    async with Requestor(GolemChannel(activity), identity=identity, policy=shell_policy) as r:
        result = await r.run(shell_spec, shell_inputs, tmp_path / "out", args=CONCAT)
    events = [e for e in activity.server.responses[seen:] if e.event and e.kind == "rt_status"]
    expected = shell_inputs["x"].read_bytes() + shell_inputs["y"].read_bytes()
    assert result.outputs["both"].read_bytes() == expected
    assert result.outputs["stdout"].read_bytes() == b"done\n"
    assert result.exit_status == 0
    assert result.verified.simulated
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".input-manifest.json",
        ".sealed",
        "both",
        "receipt.json",
        "stderr",
        "stdout",
    ]
    # The volume holds only sealed data: no plaintext of an input or output crossed it.
    volume = activity.workdir / "io"
    for path in volume.rglob("*"):
        if path.is_file():
            assert b"the first input" not in path.read_bytes(), path
    # The runtime reported the task's states and the enclave-seconds counter as it went.
    states = [json.loads(e.body["value"]) for e in events if "state" in e.body]
    states = [s for s in states if s["state"] != "deployed"]  # the previous task, replaced
    assert [s["state"] for s in states] == ["attested", "inputs_received", "running", "done"]
    assert {s["task_id"] for s in states} == {result.task_id}
    counters = [e.body["value"] for e in events if e.body.get("counter") == COUNTER_ENCLAVE_SECONDS]
    assert counters and counters[-1] > 0
    assert counters == sorted(counters)


async def test_two_tasks_in_one_activity(
    activity: ExeUnitSimulator,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A worker loops over tasks on one activity: the runtime runs them one after the other."""
    channel = GolemChannel(activity)
    async with Requestor(channel, identity=identity, policy=shell_policy) as r:
        first = await r.run(shell_spec, shell_inputs, tmp_path / "a", args=["-c", "echo one"])
        second = await r.run(shell_spec, {}, tmp_path / "b", args=["-c", "echo two >&2"])
    assert first.outputs["stdout"].read_bytes() == b"one\n"
    assert second.outputs["stderr"].read_bytes() == b"two\n"
    assert first.task_id != second.task_id


# --- the yapapi worker pattern --------------------------------------------------------------


def confidential_worker(
    spec: Path, out_root: Path, identity: X25519Identity, policy: RequestorPolicy
) -> Any:
    """The README's worker: ordinary yapapi shape, one ConfidentialTask per task."""

    async def worker(ctx: WorkContext, tasks: AsyncIterator[Task[dict[str, Any]]]) -> Any:
        async for task in tasks:
            # An ordinary script first: the worker pattern is untouched around our steps.
            script = ctx.new_script()
            status = script.run("abort")
            yield script
            assert json.loads((await status).stdout or "{}")["ok"] is True
            out = out_root / task.data["name"]
            try:
                async with ConfidentialTask(
                    ctx,
                    spec,
                    task.data["inputs"],
                    out,
                    identity=identity,
                    policy=policy,
                    args=task.data["args"],
                ) as job:
                    async for script in job:
                        yield script
            except TaskStepError as exc:
                task.reject_result(f"{exc.step}: {exc.code}", retry=False)
                continue
            task.accept_result(job.result)

    return worker


async def test_yapapi_worker_pattern(
    activity: ExeUnitSimulator,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    scripts: list[Script] = []

    class Recording:
        """The activity, noting how many ExeScript batches the worker sent."""

        async def execute(self, commands: Any) -> Any:
            scripts.append(commands)
            return await activity.execute(commands)

    data = [
        {"name": "both", "inputs": shell_inputs, "args": CONCAT},
        {"name": "just-x", "inputs": {"x": shell_inputs["x"]}, "args": ["-c", "cat inputs/x"]},
    ]
    worker = confidential_worker(shell_spec, tmp_path, identity, shell_policy)
    done = [task async for task in execute_tasks(worker, data, Recording())]
    assert [t.data["name"] for t in done] == ["both", "just-x"]
    assert all(t.accepted for t in done)
    both = done[0].result
    assert both.outputs["both"].read_bytes() == (
        shell_inputs["x"].read_bytes() + shell_inputs["y"].read_bytes()
    )
    assert done[1].result.outputs["stdout"].read_bytes() == shell_inputs["x"].read_bytes()
    # Per task: the plain script, attest, inputs + run, wait, and one batch for all outputs.
    assert len(scripts) == 2 * 5


async def test_worker_sees_a_clear_error_when_the_provider_refuses(
    activity: ExeUnitSimulator,
    identity: X25519Identity,
    shell_policy: RequestorPolicy,
    tmp_path: Path,
) -> None:
    """A spec that is not the deployed package: the runtime's refusal reaches the worker as a
    TaskStepError naming the step and the provider's reason, and the task is rejected."""
    other = tmp_path / "other-spec"
    other.mkdir()
    (other / "task.toml").write_text(
        (CSV_STATS / "task.toml").read_text().replace('name = "csv-stats"', 'name = "other"')
    )
    (other / "stats.py").write_text("")
    worker = confidential_worker(other, tmp_path, identity, shell_policy)
    data = [
        {"name": "refused", "inputs": {"data.csv": CSV_STATS / "sample" / "data.csv"}, "args": None}
    ]
    done = [task async for task in execute_tasks(worker, data, activity)]
    assert done[0].rejected == "create: exescript"
    assert not (tmp_path / "refused").exists()


# --- a Python spec, and the process-per-command mode ----------------------------------------


async def test_csv_stats_spec(
    tmp_path: Path, identity: X25519Identity, runtime_flags: list[str], sim_root: str
) -> None:
    """The repository's csv-stats spec (a Python workload), from its task package."""
    package: TaskPackage = build_task_package(CSV_STATS, tmp_path / "csv-stats.tar")
    exeunit = ExeUnitSimulator(tmp_path / "activity", package.path, list(runtime_flags))
    await exeunit.deploy()
    await exeunit.start()
    policy = RequestorPolicy(
        trusted_simulation_roots=(sim_root,),
        expected_mrenclave=(measure_locally(CSV_STATS / "task.toml", "sim"),),
    )
    inputs = {"data.csv": CSV_STATS / "sample" / "data.csv"}
    try:
        async with Requestor(GolemChannel(exeunit), identity=identity, policy=policy) as r:
            result = await r.run(CSV_STATS, inputs, tmp_path / "out")
        assert await exeunit.shutdown() == 0
    finally:
        await exeunit.close()
    summary = json.loads(result.outputs["summary.json"].read_text())
    assert summary["rows"] == 500
    assert set(summary["columns"]) == {"temperature", "humidity", "wind_kmh"}


async def test_process_per_command_mode(
    tmp_path: Path,
    identity: X25519Identity,
    shell_spec: Path,
    shell_package: TaskPackage,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    runtime_flags: list[str],
) -> None:
    """Each ExeScript ``run`` a separate runtime process (``run --entrypoint E``), the enclave
    held by the session host in between."""
    exeunit = CommandModeExeUnit(tmp_path / "activity", shell_package.path, list(runtime_flags))
    await exeunit.deploy()
    async with Requestor(GolemChannel(exeunit), identity=identity, policy=shell_policy) as r:
        result = await r.run(shell_spec, shell_inputs, tmp_path / "out", args=CONCAT)
    expected = shell_inputs["x"].read_bytes() + shell_inputs["y"].read_bytes()
    assert result.outputs["both"].read_bytes() == expected
    # The host is gone with the task: nothing is left listening.
    assert not (tmp_path / "activity" / ".gramine-sgx" / "session.sock").exists()
