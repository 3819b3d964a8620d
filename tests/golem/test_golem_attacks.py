"""A hostile Golem provider: the attacks of the direct channel's tests, through the runtime.

The provider controls its ExeUnit, the runtime and the volume, so :class:`HostileActivity` sits
where they are: it can change a batch's commands, run extra commands on other activities and
rewrite any file in the volume before the requestor downloads it. Every attack must end in a
:class:`TaskStepError` naming the step and the failed check (the same checks as over HTTP),
with nothing at the output folder, and, for attacks on the evidence, nothing sealed to the
provider's key ever sent.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from golem_support import CSV_STATS
from supervisor import ExeUnitSimulator

from golem_graphene.protocol.spec import spec_digest
from golem_graphene.requestor.client import AttestedTask, Requestor, RequestorPolicy, TaskStepError
from golem_graphene.requestor.golem import (
    Command,
    CommandResult,
    ConfidentialTask,
    DownloadFile,
    GolemChannel,
    Run,
    SendFile,
    build_task_package,
    execute_tasks,
)
from golem_graphene.requestor.golem.work import WorkContext
from golem_graphene.sealing.age import encrypt_stream
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient

pytestmark = [pytest.mark.sandbox, pytest.mark.asyncio(loop_scope="module")]

CONCAT = ["-c", "cat inputs/x inputs/y > outputs/both"]
Batch = Callable[[Sequence[Command]], Awaitable[list[CommandResult]]]


class HostileActivity:
    """The provider's side of an activity, with a hook on every batch and a memory of files."""

    def __init__(self, inner: ExeUnitSimulator) -> None:
        self.inner = inner
        self.volume = inner.workdir / "io"
        self.handler: Batch | None = None
        self.on_download: Callable[[str, Path], None] | None = None
        self.files_seen: dict[str, bytes] = {}
        self.uploads: list[str] = []

    async def execute(self, commands: Sequence[Command]) -> list[CommandResult]:
        self.uploads += [c.dst for c in commands if isinstance(c, SendFile)]
        self.inner.on_download = self.on_download
        results = await (self.handler or self.inner.execute)(commands)
        for command, result in zip(commands, results, strict=False):
            if result.ok and isinstance(command, DownloadFile):
                self.files_seen.setdefault(command.src, command.dst.read_bytes())
        return results


def rewrite_evidence(data: bytes, **changes: Any) -> bytes:
    obj = json.loads(data)
    obj.update(changes)
    return json.dumps(obj).encode()


def assert_nothing_landed(out: Path) -> None:
    assert not out.exists(), f"{out} exists after a refused task"
    leftovers = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert leftovers == []


@pytest.fixture
def shell_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "x").write_bytes(b"the first input\n" * 100)
    (tmp_path / "y").write_bytes(b"a second, longer input\n" * 150)
    return {"x": tmp_path / "x", "y": tmp_path / "y"}


@pytest.fixture
def hostile(activity: ExeUnitSimulator) -> HostileActivity:
    return HostileActivity(activity)


async def expect_refusal(
    requestor: Requestor, spec: Path, out: Path, inputs: dict[str, Path], **kw: Any
) -> TaskStepError:
    with pytest.raises(TaskStepError) as caught:
        await requestor.run(spec, inputs, out, **kw)
    assert_nothing_landed(out)
    return caught.value


def requestor_for(
    hostile: HostileActivity, identity: X25519Identity, policy: RequestorPolicy
) -> Requestor:
    return Requestor(GolemChannel(hostile), identity=identity, policy=policy)


def on_evidence(hostile: HostileActivity, mutate: Callable[[bytes], bytes]) -> None:
    def tamper(container_path: str, source: Path) -> None:
        if container_path.endswith("/evidence.json"):
            source.write_bytes(mutate(source.read_bytes()))

    hostile.on_download = tamper


# --- step 3: attestation --------------------------------------------------------------------


async def test_substituted_enclave_key_is_refused(
    hostile: HostileActivity,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A provider that puts its own E in the evidence would read every input: refused."""
    own_key = X25519Identity.generate().recipient().public_bytes().hex()
    on_evidence(hostile, lambda data: rewrite_evidence(data, enclave_key=own_key))
    async with requestor_for(hostile, identity, shell_policy) as requestor:
        err = await expect_refusal(requestor, shell_spec, tmp_path / "out", shell_inputs)
    assert (err.step, err.code) == ("attest", "report_data_binding")
    assert hostile.uploads == []  # nothing was sealed to the substituted key


async def test_replayed_evidence_of_an_earlier_task_is_refused(
    hostile: HostileActivity,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
) -> None:
    async with requestor_for(hostile, identity, shell_policy) as requestor:
        earlier = await requestor.attest(await requestor.create(shell_spec))
        await requestor.channel.cancel(earlier.ref)  # one task at a time on an activity
        old = hostile.files_seen["/golem/io/evidence.json"]

        on_evidence(hostile, lambda data: old)  # as it was: it names the earlier task
        created = await requestor.create(shell_spec)
        with pytest.raises(TaskStepError) as as_is:
            await requestor.attest(created)
        assert (as_is.value.step, as_is.value.code) == ("attest", "protocol")
        assert "another task" in str(as_is.value)
        await requestor.channel.cancel(created.ref)

        def relabel(data: bytes) -> bytes:  # relabelled: the quote still binds the old task
            return rewrite_evidence(old, task_id=json.loads(data)["task_id"])

        on_evidence(hostile, relabel)
        with pytest.raises(TaskStepError) as relabelled:
            await requestor.attest(await requestor.create(shell_spec))
        assert (relabelled.value.step, relabelled.value.code) == ("attest", "report_data_binding")


async def test_outputs_redirected_to_another_key_are_refused(
    hostile: HostileActivity,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    """The provider launches the enclave for its own R: the enclave would seal to it."""
    thief = X25519Identity.generate().recipient().to_string()

    async def swap_key(commands: Sequence[Command]) -> list[CommandResult]:
        changed = [
            Run(c.entrypoint, (*c.args[:3], thief))
            if isinstance(c, Run) and c.entrypoint == "attest"
            else c
            for c in commands
        ]
        return await hostile.inner.execute(changed)

    hostile.handler = swap_key
    async with requestor_for(hostile, identity, shell_policy) as requestor:
        err = await expect_refusal(requestor, shell_spec, tmp_path / "out", shell_inputs)
    assert (err.step, err.code) == ("attest", "report_data_binding")
    assert hostile.uploads == []


async def test_evidence_of_another_enclave_image_is_refused(
    hostile: HostileActivity,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    runtime_flags: list[str],
    tmp_path: Path,
) -> None:
    """The provider runs a different image that binds the requestor's very task, nonce and R
    honestly: everything checks out but the measurement, so the policy refuses it."""
    package = build_task_package(CSV_STATS, tmp_path / "other.tar")
    other = ExeUnitSimulator(tmp_path / "other-activity", package.path, list(runtime_flags))
    await other.deploy()
    await other.start()
    try:

        async def run_other_image(commands: Sequence[Command]) -> list[CommandResult]:
            attest = commands[0]
            if isinstance(attest, Run) and attest.entrypoint == "attest":
                args = (attest.args[0], spec_digest(CSV_STATS), *attest.args[2:])
                results = await other.execute([Run("attest", args)])
                assert results[0].ok, results[0]
                evidence = (other.workdir / "io" / "evidence.json").read_bytes()
                results = await hostile.inner.execute(commands)
                download = commands[1]
                assert isinstance(download, DownloadFile)
                download.dst.write_bytes(evidence)
                return results
            return await hostile.inner.execute(commands)

        hostile.handler = run_other_image
        async with requestor_for(hostile, identity, shell_policy) as requestor:
            with pytest.raises(TaskStepError) as caught:
                await requestor.attest(await requestor.create(shell_spec))
        assert (caught.value.step, caught.value.code) == ("attest", "policy_mrenclave")
        assert hostile.uploads == []
    finally:
        await other.close()


async def test_untrusted_simulation_root_is_refused(
    activity: ExeUnitSimulator,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    tmp_path: Path,
) -> None:
    """By default nothing trusts the sim runner: a requestor must name its root."""
    strict = RequestorPolicy(expected_mrenclave=shell_policy.expected_mrenclave)
    async with Requestor(GolemChannel(activity), identity=identity, policy=strict) as requestor:
        with pytest.raises(TaskStepError) as caught:
            await requestor.attest(await requestor.create(shell_spec))
    assert (caught.value.step, caught.value.code) == ("attest", "untrusted_root")
    # Never a fingerprint to copy from the provider's own chain (issue 15, item 6).
    assert "never by one taken from the provider" in str(caught.value)


# --- step 4: inputs -------------------------------------------------------------------------


async def test_inputs_swapped_on_the_provider_disk_are_refused_by_the_enclave(
    hostile: HostileActivity,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    async def swap_inputs(commands: Sequence[Command]) -> list[CommandResult]:
        uploads = [c for c in commands if isinstance(c, SendFile)]
        if not uploads:
            return await hostile.inner.execute(commands)
        results = await hostile.inner.execute(uploads)
        inputs = hostile.volume / "inputs"
        os.replace(inputs / "x.age", inputs / "tmp")
        os.replace(inputs / "y.age", inputs / "x.age")
        os.replace(inputs / "tmp", inputs / "y.age")
        rest = [c for c in commands if not isinstance(c, SendFile)]
        return results + await hostile.inner.execute(rest)

    hostile.handler = swap_inputs
    async with requestor_for(hostile, identity, shell_policy) as requestor:
        err = await expect_refusal(
            requestor, shell_spec, tmp_path / "out", shell_inputs, args=CONCAT
        )
    assert (err.step, err.code) == ("start", "exescript")
    assert "run execute failed on the provider" in str(err)
    assert "input" in str(err) and ("size" in str(err) or "sha256" in str(err))


# --- steps 6 and 7: outputs and the receipt -------------------------------------------------


async def test_tampered_outputs_and_receipts_are_refused(
    hostile: HostileActivity,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    """One finished task, fetched again and again through a provider altering the volume."""
    async with requestor_for(hostile, identity, shell_policy) as requestor:
        await requestor.run(shell_spec, shell_inputs, tmp_path / "earlier", args=CONCAT)
        earlier = dict(hostile.files_seen)
        hostile.files_seen.clear()
        task: AttestedTask = await requestor.attest(await requestor.create(shell_spec))
        await requestor.send_inputs(task, shell_inputs, args=CONCAT)
        await requestor.start(task)
        await requestor.wait(task)
        recipient = X25519Recipient.from_string(identity.recipient().to_string())

        def flip(data: bytes) -> bytes:
            return data[:-1] + bytes([data[-1] ^ 1])

        def reseal(data: bytes) -> bytes:
            garbage = io.BytesIO()
            encrypt_stream(io.BytesIO(b"provider garbage\n" * 50), garbage, [recipient])
            return garbage.getvalue()

        def tamper_receipt(data: bytes) -> bytes:
            obj = json.loads(data)
            obj["receipt"]["exit_status"] = 1
            return json.dumps(obj).encode()

        both, receipt = "/golem/io/outputs/both.age", "/golem/io/outputs/receipt.json"
        attacks: list[tuple[str, str, Callable[[bytes], bytes], str]] = [
            ("flipped output byte", both, flip, "receipt_output_sha256"),
            ("truncated output", both, lambda d: d[: len(d) // 2], "receipt_output_size"),
            ("empty stdout", "/golem/io/outputs/stdout.age", lambda d: b"", "receipt_output_size"),
            ("output re-sealed to R", both, reseal, "receipt_output_size"),
            ("another task's output", both, lambda d: earlier[both], "receipt_output_sha256"),
            ("another task's receipt", receipt, lambda d: earlier[receipt], "receipt_quote"),
            ("edited receipt", receipt, tamper_receipt, "receipt_signature"),
        ]
        for index, (attack, target, mutate, code) in enumerate(attacks):
            honest: dict[str, bytes] = {}

            def tamper(
                path: str,
                source: Path,
                target: str = target,
                mutate: Any = mutate,
                honest: dict[str, bytes] = honest,
            ) -> None:
                if path == target:
                    honest[path] = source.read_bytes()
                    source.write_bytes(mutate(honest[path]))

            hostile.on_download = tamper
            out = tmp_path / f"out-{index}"
            with pytest.raises(TaskStepError) as caught:
                await requestor.fetch(task, out)
            assert (caught.value.step, caught.value.code) == ("fetch", code), attack
            assert_nothing_landed(out)
            for path, data in honest.items():  # the provider puts the honest file back
                (hostile.volume / path.removeprefix("/golem/io/")).write_bytes(data)

        hostile.on_download = None
        result = await requestor.fetch(task, tmp_path / "honest")
    expected = shell_inputs["x"].read_bytes() + shell_inputs["y"].read_bytes()
    assert result.outputs["both"].read_bytes() == expected
    assert earlier[both] != hostile.files_seen[both]


async def test_output_for_another_requestor_cannot_be_fetched(
    activity: ExeUnitSimulator,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    channel = GolemChannel(activity)
    async with Requestor(channel, identity=identity, policy=shell_policy) as requestor:
        task = await requestor.attest(await requestor.create(shell_spec))
        await requestor.send_inputs(task, shell_inputs, args=CONCAT)
        await requestor.start(task)
        await requestor.wait(task)
        stranger = Requestor(channel, identity=X25519Identity.generate(), policy=shell_policy)
        out = tmp_path / "out"
        with pytest.raises(TaskStepError) as caught:
            await stranger.fetch(task, out)
    assert (caught.value.step, caught.value.code) == ("fetch", "receipt_identity")
    assert_nothing_landed(out)


# --- the same attack through the yapapi worker pattern --------------------------------------


async def test_worker_pattern_refuses_substituted_evidence(
    hostile: HostileActivity,
    identity: X25519Identity,
    shell_spec: Path,
    shell_policy: RequestorPolicy,
    shell_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    own_key = X25519Identity.generate().recipient().public_bytes().hex()
    on_evidence(hostile, lambda data: rewrite_evidence(data, enclave_key=own_key))
    errors: list[TaskStepError] = []

    async def worker(ctx: WorkContext, tasks: Any) -> Any:
        async for task in tasks:
            try:
                async with ConfidentialTask(
                    ctx,
                    shell_spec,
                    task.data,
                    tmp_path / "out",
                    identity=identity,
                    policy=shell_policy,
                    args=CONCAT,
                ) as job:
                    async for script in job:
                        yield script
            except TaskStepError as exc:
                errors.append(exc)
                task.reject_result(f"{exc.step}: {exc.code}", retry=False)
                continue
            task.accept_result(job.result)

    done = [t async for t in execute_tasks(worker, [shell_inputs], hostile)]
    assert done[0].rejected == "attest: report_data_binding"
    assert errors[0].cause.code == "report_data_binding"
    assert hostile.uploads == []
    assert_nothing_landed(tmp_path / "out")
