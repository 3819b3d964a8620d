"""Unit tests of the Golem pieces that need no runtime process: payload, package, policy file,
framing, the WorkContext bridge and the channel's handling of what the activity returns."""

from __future__ import annotations

import asyncio
import json
import tarfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from golem_support import CSV_STATS

from golem_graphene.errors import ConfigError
from golem_graphene.requestor.channel import ChannelError, TaskRef
from golem_graphene.requestor.client import RequestorPolicy
from golem_graphene.requestor.golem import (
    Command,
    CommandResult,
    DownloadFile,
    GolemChannel,
    Run,
    SendFile,
    SgxPayload,
    WorkContextExecutor,
    build_task_package,
    confidential_payload,
    task_package_property,
)
from golem_graphene.requestor.golem.work import WorkContext
from golem_graphene.requestor.policy import ENV_VAR, load_policy, policy_from_mapping
from golem_graphene.runtime.framing import FrameError, frame, read_frame

HASH = "ab" * 28
PACKAGE = f"hash:sha3:{HASH}:http://example.invalid/pkg.tar"


# --- payload ---------------------------------------------------------------------------------


def test_payload_constraints_and_properties() -> None:
    payload = SgxPayload(task_package=PACKAGE, min_mem_gib=2, min_storage_gib=1.5)
    assert payload.constraints() == (
        "(&(golem.runtime.name=gramine-sgx)(golem.runtime.sgx.runner=gramine-sgx)"
        "(golem.runtime.sgx.attestation=dcap)(golem.inf.mem.gib>=2)"
        "(golem.inf.storage.gib>=1.5)(golem.inf.cpu.threads>=1))"
    )
    assert payload.properties() == {"golem.srv.comp.task_package": PACKAGE}


class NewDemand:
    """yapapi's DemandBuilder shape (recent): ``ensure`` and a ``properties`` dict."""

    def __init__(self) -> None:
        self.properties: dict[str, Any] = {"golem.srv.comp.expiration": 1}
        self.constraints: list[str] = []

    def ensure(self, constraint: str) -> None:
        self.constraints.append(constraint)


class OldDemand:
    """yapapi's DemandBuilder shape (0.4 era): ``ensure`` and a ``props`` dict."""

    def __init__(self) -> None:
        self.props: dict[str, Any] = {}
        self.cons: list[str] = []

    def ensure(self, constraint: str) -> None:
        self.cons.append(constraint)


async def test_payload_decorates_both_demand_builder_shapes() -> None:
    payload = SgxPayload(task_package=PACKAGE, runner="sim")
    new, old = NewDemand(), OldDemand()
    await payload.decorate_demand(new)
    await payload.decorate_demand(old)
    assert new.properties["golem.srv.comp.task_package"] == PACKAGE
    assert new.properties["golem.srv.comp.expiration"] == 1
    assert old.props == {"golem.srv.comp.task_package": PACKAGE}
    assert new.constraints == old.cons == [payload.constraints()]
    assert "(golem.runtime.sgx.runner=sim)" in new.constraints[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task_package": "http://x/pkg.tar"}, "hash:sha3"),
        ({"task_package": PACKAGE, "runner": "docker"}, "unknown runner"),
    ],
)
def test_payload_refuses_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SgxPayload(**kwargs)


def test_payload_refuses_filter_syntax_in_values() -> None:
    payload = SgxPayload(task_package=PACKAGE, attestation="dcap)(golem.x=*")
    with pytest.raises(ConfigError, match="filter syntax"):
        payload.constraints()


# --- task package ----------------------------------------------------------------------------


def test_task_package_is_reproducible_and_holds_only_the_spec(tmp_path: Path) -> None:
    first = build_task_package(CSV_STATS, tmp_path / "a.tar")
    second = build_task_package(CSV_STATS / "task.toml", tmp_path / "b.tar")
    assert first.sha3_224 == second.sha3_224 and len(first.sha3_224) == 56
    assert first.path.read_bytes() == second.path.read_bytes()
    with tarfile.open(first.path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["image.tar", "task.toml"]  # no sample data
    assert all(m.mtime == 0 and m.uid == 0 and m.isfile() for m in members)
    assert first.property_value("https://h/p.tar") == f"hash:sha3:{first.sha3_224}:https://h/p.tar"


def test_confidential_payload_names_the_package(tmp_path: Path) -> None:
    payload, package = confidential_payload(
        CSV_STATS, "http://10.0.0.1:8000/csv.tar", package_path=tmp_path / "csv.tar", min_mem_gib=2
    )
    assert payload.task_package == package.property_value("http://10.0.0.1:8000/csv.tar")
    assert payload.min_mem_gib == 2 and package.path == tmp_path / "csv.tar"


def test_task_package_refuses_a_symlinked_image(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "task.toml").write_text((CSV_STATS / "task.toml").read_text())
    (spec / "image.tar").symlink_to(CSV_STATS / "image.tar")
    with pytest.raises(ConfigError, match="symbolic link"):
        build_task_package(spec, tmp_path / "p.tar")


@pytest.mark.parametrize(
    ("sha", "url"), [("ab" * 27, "http://h/p"), ("AB" * 28, "http://h/p"), (HASH, "ftp://h/p")]
)
def test_task_package_property_refuses_bad_values(sha: str, url: str) -> None:
    with pytest.raises(ConfigError):
        task_package_property(sha, url)


# --- attestation policy file -----------------------------------------------------------------


def test_policy_defaults_are_strict(tmp_path: Path) -> None:
    assert load_policy(environ={}) == RequestorPolicy()
    policy = policy_from_mapping({})
    assert policy.accept_tcb == ("UpToDate",) and not policy.allow_debug
    assert not policy.allow_missing_crls and policy.trusted_simulation_roots == ()


def test_policy_from_a_golem_style_file_named_by_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "sgx.json"
    mrenclave = "AB" * 32
    path.write_text(
        json.dumps(
            {
                "enableAttestation": True,
                "exeunitHashes": [mrenclave],
                "allowDebug": False,
                "allowOutdatedTcb": False,
                "maxEvidenceAge": 60,
                "acceptTcb": ["UpToDate", "SWHardeningNeeded"],
            }
        )
    )
    policy = load_policy(environ={ENV_VAR: str(path)})
    assert policy.expected_mrenclave == (mrenclave.lower(),)
    assert policy.max_collateral_age == timedelta(seconds=60)
    assert policy.accept_tcb == ("UpToDate", "SWHardeningNeeded")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"allowDebug": True}))
    assert load_policy(other, environ={ENV_VAR: str(path)}).allow_debug  # the argument wins


def test_allow_outdated_tcb_accepts_everything_but_revoked() -> None:
    policy = policy_from_mapping({"allowOutdatedTcb": True})
    assert "OutOfDate" in policy.accept_tcb and "Revoked" not in policy.accept_tcb
    assert len(policy.accept_tcb) == 6


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"enableAttestation": False}, "never accepts an unattested"),
        ({"allowDebg": True}, "unknown SGX config fields"),
        ({"allowDebug": "yes"}, "true or false"),
        ({"acceptTcb": []}, "must not be empty"),
        ({"acceptTcb": ["Fine"]}, "acceptTcb takes a TCB status"),
        ({"acceptTcb": ["UpToDate", "Revoked"]}, "never accepted"),
        ({"maxEvidenceAge": 0}, "positive seconds"),
        ({"maxEvidenceAge": True}, "positive seconds"),
        ({"exeunitHashes": ["abc"]}, "exeunitHashes takes 64 hex digits"),
        ({"trustedSimulationRoots": "ab" * 32}, "trustedSimulationRoots must be a list"),
    ],
)
def test_policy_refuses_bad_fields(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        policy_from_mapping(config)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not JSON"), (b"[]", "JSON object"), (b" " * (2 << 20), "too large")],
)
def test_policy_refuses_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "sgx.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_policy(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.json")


# --- framing ---------------------------------------------------------------------------------


async def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_read_frame_skips_oversized_frames_and_stays_in_step() -> None:
    reader = await _reader(frame(b"x" * 100) + frame(b"ok") + frame(b""))
    with pytest.raises(FrameError) as caught:
        await read_frame(reader, max_bytes=10)
    assert not caught.value.fatal
    assert await read_frame(reader, max_bytes=10) == b"ok"
    assert await read_frame(reader, max_bytes=10) == b""
    assert await read_frame(reader, max_bytes=10) is None


@pytest.mark.parametrize("data", [b"\x05ab", b"\x80", b"\xff" * 11, frame(b"x" * 50)[:20]])
async def test_read_frame_fatal_errors(data: bytes) -> None:
    with pytest.raises(FrameError) as caught:
        await read_frame(await _reader(data), max_bytes=40)
    assert caught.value.fatal


# --- the WorkContext bridge ------------------------------------------------------------------


class FakeActivity:
    """An activity whose commands all succeed, recording the batches."""

    def __init__(self) -> None:
        self.batches: list[Sequence[Command]] = []

    async def execute(self, commands: Sequence[Command]) -> list[CommandResult]:
        self.batches.append(commands)
        return [CommandResult(c, True, stdout=f"out {i}") for i, c in enumerate(commands)]


async def test_work_context_executor_maps_scripts_and_results(tmp_path: Path) -> None:
    activity = FakeActivity()
    ctx = WorkContext(activity)
    submitted: list[Any] = []
    executor = WorkContextExecutor(ctx, submitted.append)
    commands: list[Command] = [
        Run("attest", ("a",)),
        SendFile(tmp_path / "f", "/golem/io/f"),
        DownloadFile("/golem/io/g", tmp_path / "g"),
    ]
    batch = asyncio.ensure_future(executor.execute(commands))
    await asyncio.sleep(0)
    assert len(submitted) == 1
    await ctx._run_script(submitted[0])  # what the engine does with the yielded script
    results = await batch
    assert activity.batches == [commands]
    assert [r.ok for r in results] == [True, True, True]
    assert results[0].stdout == "out 0"


async def test_work_context_executor_reports_a_failure_raised_in_the_worker() -> None:
    ctx = WorkContext(FakeActivity())
    submitted: list[Any] = []
    executor = WorkContextExecutor(ctx, submitted.append)
    batch = asyncio.ensure_future(executor.execute([Run("attest"), Run("abort")]))
    await asyncio.sleep(0)

    class Failed(Exception):
        message = "exit status 2"
        stderr = "FAIL: attest: spec_mismatch"

    executor.fail(Failed())
    results = await batch
    assert len(results) == 1 and not results[0].ok
    assert (results[0].message, results[0].stderr) == ("exit status 2", Failed.stderr)
    executor.close("done")
    with pytest.raises(ChannelError, match="worker has ended"):
        await executor.execute([Run("abort")])


# --- the channel's handling of what comes back -----------------------------------------------


class ScriptedActivity:
    """Answers each batch with a prepared function of the commands."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def execute(self, commands: Sequence[Command]) -> list[CommandResult]:
        result: list[CommandResult] = self.answer(commands)
        return result


REQUEST = {"spec_digest": "00" * 32, "nonce": "11" * 32, "requestor_key": "age1x"}


async def test_channel_reports_the_runtimes_reason(tmp_path: Path) -> None:
    answer = json.dumps({"ok": False, "code": "spec_mismatch", "message": "differs"})
    activity = ScriptedActivity(
        lambda commands: [CommandResult(commands[0], False, stdout=answer, message="exit 2")]
    )
    channel = GolemChannel(activity, staging_dir=tmp_path)
    with pytest.raises(ChannelError) as caught:
        await channel.create(REQUEST)
    assert caught.value.code == "exescript"
    assert caught.value.describe_own() == "create: run attest failed on the provider"
    # The runtime's words are the provider's: kept apart, shown escaped and marked.
    assert caught.value.provider_text == "spec_mismatch: differs"
    assert 'the provider says (untrusted): "spec_mismatch: differs"' in str(caught.value)
    await channel.close()
    assert list(tmp_path.iterdir()) == []


async def test_channel_refuses_oversized_evidence_and_unknown_tasks(tmp_path: Path) -> None:
    def answer(commands: Sequence[Command]) -> list[CommandResult]:
        download = commands[1]
        assert isinstance(download, DownloadFile)
        download.dst.write_bytes(b"{" + b" " * (4 << 20) + b"}")
        return [CommandResult(c, True) for c in commands]

    channel = GolemChannel(ScriptedActivity(answer), staging_dir=tmp_path)
    with pytest.raises(ChannelError, match="the evidence is too large"):
        await channel.create(REQUEST)
    with pytest.raises(ChannelError, match="another task"):
        await channel.evidence(TaskRef("ab" * 16, ""))
    await channel.close()


async def test_channel_stops_when_the_batch_is_cut_short(tmp_path: Path) -> None:
    channel = GolemChannel(ScriptedActivity(lambda commands: []), staging_dir=tmp_path)
    with pytest.raises(ChannelError, match="only part of the batch"):
        await channel.create(REQUEST)
    await channel.close()


# --- public names ----------------------------------------------------------------------------


def test_public_names() -> None:
    import golem_graphene.requestor.golem as golem
    import golem_graphene.runtime as runtime

    assert set(runtime.__all__) == {
        "COUNTER_ENCLAVE_SECONDS",
        "ENTRYPOINTS",
        "RUNTIME_NAME",
        "RUNTIME_VERSION",
        "SERVICE_PROTOCOL_VERSION",
        "VOLUME_NAME",
        "VOLUME_PATH",
        "RuntimeSettings",
    }
    assert set(golem.__all__) == {
        "Command",
        "CommandExecuted",
        "CommandExecutionError",
        "CommandResult",
        "ConfidentialTask",
        "DownloadFile",
        "ExeScriptExecutor",
        "GolemChannel",
        "HAVE_YAPAPI",
        "Run",
        "Script",
        "SendFile",
        "SgxPayload",
        "Task",
        "TaskPackage",
        "WorkContext",
        "WorkContextExecutor",
        "YAPAPI_VERSION",
        "build_task_package",
        "confidential_payload",
        "execute_tasks",
        "task_package_property",
    }
    assert all(hasattr(golem, name) for name in golem.__all__)
    assert all(hasattr(runtime, name) for name in runtime.__all__)
