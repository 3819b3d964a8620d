"""A hostile provider, each attack refused with a clear error and no output at the final path.

The provider is trusted for availability only (DESIGN.md section 1). :class:`HostileChannel`
wraps the real HTTP channel and rewrites what passes through it, as a provider (or any relay)
could: the evidence, the inputs, the sealed manifest, the outputs and the receipt. Attacks on
the provider's disk change its task folder between the requestor's steps. Every attack must end
in a :class:`TaskStepError` that names the step and the failed check, with nothing at ``out_dir``
and no temporary folder beside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _e2e_support import (
    SHELL,
    SHELL_DEBUG,
    Identity,
    Provider,
    staging_leftovers,
    write_identity,
)

from golem_graphene.protocol.binding import Transcript, parse_task_id
from golem_graphene.protocol.messages import Evidence, TaskEvent
from golem_graphene.requestor.channel import HttpChannel, TaskRef
from golem_graphene.requestor.client import AttestedTask, Requestor, TaskStepError
from golem_graphene.sealing.age import encrypt_stream
from golem_graphene.sealing.input_manifest import InputManifest, seal_manifest
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient

pytestmark = pytest.mark.sandbox

Body = AsyncIterable[bytes]


class HostileChannel:
    """The real :class:`HttpChannel`, with hooks that rewrite what a provider relays.

    It also remembers what passed (create requests, evidence, manifests, downloaded files), as a
    provider keeps everything it ever saw, to replay it into later tasks.
    """

    def __init__(self, inner: HttpChannel) -> None:
        self.inner = inner
        self.requests: list[dict[str, Any]] = []
        self.evidence_seen: list[bytes] = []
        self.manifests_seen: list[bytes] = []
        self.files_seen: dict[str, bytes] = {}
        self.on_create: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.on_evidence: Callable[[bytes], bytes] | None = None
        self.on_put_input: Callable[[TaskRef, str, Body], Awaitable[None]] | None = None
        self.on_put_manifest: Callable[[TaskRef, bytes], bytes] | None = None
        self.on_download: Callable[[str, Path], None] | None = None

    async def create(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        return await self.inner.create(self.on_create(request) if self.on_create else request)

    async def evidence(self, task: TaskRef) -> bytes:
        data = await self.inner.evidence(task)
        self.evidence_seen.append(data)
        return self.on_evidence(data) if self.on_evidence else data

    async def put_input(self, task: TaskRef, name: str, body: Body) -> None:
        if self.on_put_input is not None:
            await self.on_put_input(task, name, body)
        else:
            await self.inner.put_input(task, name, body)

    async def put_manifest(self, task: TaskRef, sealed: bytes) -> None:
        self.manifests_seen.append(sealed)
        if self.on_put_manifest is not None:
            sealed = self.on_put_manifest(task, sealed)
        await self.inner.put_manifest(task, sealed)

    async def start(self, task: TaskRef) -> None:
        await self.inner.start(task)

    def events(self, task: TaskRef) -> AsyncIterator[TaskEvent]:
        return self.inner.events(task)

    async def outputs(self, task: TaskRef) -> list[dict[str, Any]]:
        return await self.inner.outputs(task)

    async def download(self, task: TaskRef, name: str, dest: Path, limit: int) -> int:
        await self.inner.download(task, name, dest, limit)
        self.files_seen.setdefault(name, dest.read_bytes())
        if self.on_download is not None:
            self.on_download(name, dest)
        return dest.stat().st_size

    async def cancel(self, task: TaskRef) -> None:
        await self.inner.cancel(task)

    async def delete(self, task: TaskRef) -> None:
        await self.inner.delete(task)

    async def close(self) -> None:
        await self.inner.close()


def hostile(provider: Provider) -> HostileChannel:
    return HostileChannel(HttpChannel(provider.url, token=provider.token))


def rewrite_evidence(data: bytes, **changes: Any) -> bytes:
    obj = json.loads(data)
    obj.update(changes)
    return json.dumps(obj).encode()


def assert_nothing_landed(out: Path) -> None:
    assert not out.exists(), f"{out} exists after a refused task"
    assert staging_leftovers(out) == []


async def expect_refusal(
    requestor: Requestor, spec_dir: Path, out: Path, inputs: dict[str, Path], **kw: Any
) -> TaskStepError:
    with pytest.raises(TaskStepError) as caught:
        await requestor.run(spec_dir, inputs, out, **kw)
    assert_nothing_landed(out)
    return caught.value


async def run_to_attested(requestor: Requestor, spec_dir: Path) -> AttestedTask:
    return await requestor.attest(await requestor.create(spec_dir))


@pytest.fixture
def shell_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "x").write_bytes(b"the first input\n" * 100)
    (tmp_path / "y").write_bytes(b"a second, longer input\n" * 150)
    return {"x": tmp_path / "x", "y": tmp_path / "y"}


CONCAT = ["-c", "cat inputs/x inputs/y > outputs/both"]


# --- step 3: attestation ------------------------------------------------------------------------


async def test_substituted_enclave_key_is_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    """A provider that puts its own E in the evidence would read every input: refused."""
    spec_dir = provider.spec(SHELL)
    channel = hostile(provider)
    own_key = X25519Identity.generate().recipient().public_bytes().hex()
    channel.on_evidence = lambda data: rewrite_evidence(data, enclave_key=own_key)
    async with provider.requestor(identity, spec_dir, channel=channel) as requestor:
        err = await expect_refusal(requestor, spec_dir, tmp_path / "out", shell_inputs)
    assert (err.step, err.code) == ("attest", "report_data_binding")
    # Nothing was ever encrypted to the substituted key: no input reached the provider.
    assert channel.manifests_seen == []


async def test_replayed_evidence_of_an_earlier_task_is_refused(
    provider: Provider, identity: Identity, tmp_path: Path
) -> None:
    spec_dir = provider.spec(SHELL)
    channel = hostile(provider)
    async with provider.requestor(identity, spec_dir, channel=channel) as requestor:
        earlier = await run_to_attested(requestor, spec_dir)
        old = channel.evidence_seen[-1]

        # As it was: the evidence names the earlier task.
        channel.on_evidence = lambda data: old
        with pytest.raises(TaskStepError) as as_is:
            await run_to_attested(requestor, spec_dir)
        assert (as_is.value.step, as_is.value.code) == ("attest", "protocol")
        assert "another task" in str(as_is.value)

        # Relabelled for the new task: the quote still binds the earlier task and nonce.
        def relabel(data: bytes) -> bytes:
            return rewrite_evidence(old, task_id=json.loads(data)["task_id"])

        channel.on_evidence = relabel
        with pytest.raises(TaskStepError) as relabelled:
            await run_to_attested(requestor, spec_dir)
        assert (relabelled.value.step, relabelled.value.code) == ("attest", "report_data_binding")
        await requestor.channel.delete(earlier.ref)


async def test_outputs_redirected_to_another_key_are_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    """The provider swaps R for its own key at creation: the enclave would seal to it."""
    spec_dir = provider.spec(SHELL)
    channel = hostile(provider)
    thief = X25519Identity.generate().recipient().to_string()
    channel.on_create = lambda request: {**request, "requestor_key": thief}
    async with provider.requestor(identity, spec_dir, channel=channel) as requestor:
        err = await expect_refusal(requestor, spec_dir, tmp_path / "out", shell_inputs)
    assert (err.step, err.code) == ("attest", "report_data_binding")
    assert channel.manifests_seen == []


async def test_wrong_measurement_is_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    spec_dir = provider.spec(SHELL)
    async with provider.requestor(identity, spec_dir, expected_mrenclave=("00" * 32,)) as requestor:
        err = await expect_refusal(requestor, spec_dir, tmp_path / "out", shell_inputs)
    assert (err.step, err.code) == ("attest", "policy_mrenclave")
    assert provider.images.measurement(spec_dir) in str(err)


async def test_untrusted_simulation_root_is_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    spec_dir = provider.spec(SHELL)
    async with provider.requestor(identity, spec_dir, trusted_simulation_roots=()) as requestor:
        err = await expect_refusal(requestor, spec_dir, tmp_path / "out", shell_inputs)
    # The quote's chain ends in a root nobody trusted: refused as such, and the message never
    # offers the provider's own root fingerprint to copy into a policy (issue 15, item 6).
    assert (err.step, err.code) == ("attest", "untrusted_root")
    assert provider.root_fingerprint not in str(err)
    assert "never by one taken from the provider" in str(err)


async def test_debug_enclave_is_refused_by_default(
    provider: Provider, identity: Identity, tmp_path: Path
) -> None:
    spec_dir = provider.spec(SHELL_DEBUG)
    async with provider.requestor(identity, spec_dir) as requestor:
        err = await expect_refusal(
            requestor, spec_dir, tmp_path / "out", {}, args=["-c", "echo hi > outputs/o"]
        )
    assert (err.step, err.code) == ("attest", "policy_debug")
    async with provider.requestor(identity, spec_dir, allow_debug=True) as requestor:
        result = await requestor.run(
            spec_dir, {}, tmp_path / "out", args=["-c", "echo hi > outputs/o"]
        )
    assert result.verified.quote.report_body.debug
    assert result.outputs["o"].read_bytes() == b"hi\n"


# --- step 4: inputs and the manifest ------------------------------------------------------------


async def expect_enclave_refusal(
    requestor: Requestor,
    provider: Provider,
    spec_dir: Path,
    out: Path,
    inputs: dict[str, Path],
    agent_code: str,
) -> TaskStepError:
    """The agent refuses the task; the requestor sees why; the provider reclaimed the task."""
    err = await expect_refusal(requestor, spec_dir, out, inputs, args=CONCAT)
    assert (err.step, err.code) == ("wait", agent_code), str(err)
    assert await provider.settled_leftovers() == []
    return err


async def test_swapped_inputs_are_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    """The provider uploads x under y's name and y under x's."""
    spec_dir = provider.spec(SHELL)
    channel = hostile(provider)

    async def swap(task: TaskRef, name: str, body: Body) -> None:
        await channel.inner.put_input(task, {"x": "y", "y": "x"}[name], body)

    channel.on_put_input = swap
    async with provider.requestor(identity, spec_dir, channel=channel) as requestor:
        await expect_enclave_refusal(
            requestor, provider, spec_dir, tmp_path / "out", shell_inputs, "input_size"
        )


async def test_dropped_input_is_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    spec_dir = provider.spec(SHELL)
    channel = hostile(provider)

    async def drop_y(task: TaskRef, name: str, body: Body) -> None:
        if name == "y":
            async for _ in body:  # swallowed: it never reaches the enclave
                pass
        else:
            await channel.inner.put_input(task, name, body)

    channel.on_put_input = drop_y
    async with provider.requestor(identity, spec_dir, channel=channel) as requestor:
        await expect_enclave_refusal(
            requestor, provider, spec_dir, tmp_path / "out", shell_inputs, "input_missing"
        )


async def test_inputs_swapped_on_the_provider_disk_are_refused(
    provider: Provider, identity: Identity, tmp_path: Path
) -> None:
    """Same-size inputs swapped on disk after the upload, before the start."""
    spec_dir = provider.spec(SHELL)
    (tmp_path / "x").write_bytes(b"x" * 1000)
    (tmp_path / "y").write_bytes(b"y" * 1000)
    async with provider.requestor(identity, spec_dir) as requestor:
        task = await run_to_attested(requestor, spec_dir)
        await requestor.send_inputs(task, {"x": tmp_path / "x", "y": tmp_path / "y"}, args=CONCAT)
        inputs = provider.task_dir(task.ref.task_id) / "launch" / "io" / "inputs"
        os.rename(inputs / "x.age", inputs / "tmp.age")
        os.rename(inputs / "y.age", inputs / "x.age")
        os.rename(inputs / "tmp.age", inputs / "y.age")
        await requestor.start(task)
        with pytest.raises(TaskStepError) as caught:
            await requestor.wait(task)
    assert caught.value.step == "wait"
    assert "input_sha256" in str(caught.value)
    assert await provider.settled_leftovers() == []


async def test_extra_input_planted_on_the_provider_disk_is_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    spec_dir = provider.spec(SHELL)
    async with provider.requestor(identity, spec_dir) as requestor:
        task = await run_to_attested(requestor, spec_dir)
        await requestor.send_inputs(task, {"x": shell_inputs["x"]}, args=CONCAT)
        inputs = provider.task_dir(task.ref.task_id) / "launch" / "io" / "inputs"
        sink = io.BytesIO()
        encrypt_stream(io.BytesIO(b"planted"), sink, [task.enclave_recipient])
        (inputs / "y.age").write_bytes(sink.getvalue())
        await requestor.start(task)
        with pytest.raises(TaskStepError) as caught:
            await requestor.wait(task)
    assert "input_extra" in str(caught.value)


async def test_forged_manifest_is_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    """The provider seals its own manifest (other args) to E with a key of its own."""
    spec_dir = provider.spec(SHELL)
    channel = hostile(provider)
    forger = X25519Identity.generate()

    def forge(task: TaskRef, sealed: bytes) -> bytes:
        evidence = Evidence.from_json(channel.evidence_seen[-1])
        transcript = Transcript(
            task_id=parse_task_id(task.task_id),
            nonce=bytes.fromhex(channel.requests[-1]["nonce"]),
            enclave_key=evidence.enclave_key,
            signing_key=evidence.signing_key,
            requestor_key=forger.recipient().public_bytes(),
        )
        manifest = InputManifest(
            task_id=transcript.task_id, args=("-c", "cat inputs/x > outputs/leak"), inputs=()
        )
        return seal_manifest(manifest, forger, evidence.enclave_key, transcript)

    channel.on_put_manifest = forge
    async with provider.requestor(identity, spec_dir, channel=channel) as requestor:
        await expect_enclave_refusal(
            requestor, provider, spec_dir, tmp_path / "out", shell_inputs, "input_manifest_auth"
        )


async def test_manifest_replayed_from_an_earlier_task_is_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    spec_dir = provider.spec(SHELL)
    channel = hostile(provider)
    async with provider.requestor(identity, spec_dir, channel=channel) as requestor:
        earlier = await run_to_attested(requestor, spec_dir)
        await requestor.send_inputs(earlier, shell_inputs, args=CONCAT)
        await requestor.channel.delete(earlier.ref)
        old = channel.manifests_seen[-1]
        channel.on_put_manifest = lambda task, sealed: old
        await expect_enclave_refusal(
            requestor, provider, spec_dir, tmp_path / "out", shell_inputs, "input_manifest_auth"
        )


# --- steps 6 and 7: outputs and the receipt -----------------------------------------------------


async def test_tampered_outputs_and_receipts_are_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    """One finished task, fetched again and again through a provider that alters the outputs.

    Each fetch must fail with the precise receipt check and leave nothing behind; the honest
    fetch at the end must still succeed (the attacks did not damage the task).
    """
    spec_dir = provider.spec(SHELL)
    channel = hostile(provider)
    async with provider.requestor(identity, spec_dir, channel=channel) as requestor:
        # An earlier task of the same spec, run to the end: its receipt and outputs get replayed.
        await requestor.run(spec_dir, shell_inputs, tmp_path / "earlier", args=CONCAT)
        earlier_files = dict(channel.files_seen)
        task = await run_to_attested(requestor, spec_dir)
        await requestor.send_inputs(task, shell_inputs, args=CONCAT)
        await requestor.start(task)
        await requestor.wait(task)
        recipient = X25519Recipient.from_string(identity.key.recipient().to_string())

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

        attacks: list[tuple[str, str, Callable[[bytes], bytes], str]] = [
            ("flipped output byte", "both.age", flip, "receipt_output_sha256"),
            ("truncated output", "both.age", lambda d: d[: len(d) // 2], "receipt_output_size"),
            ("empty stdout", "stdout.age", lambda d: b"", "receipt_output_size"),
            ("output re-sealed to R", "both.age", reseal, "receipt_output_size"),
            (
                "another task's output",
                "both.age",
                lambda d: earlier_files["both.age"],
                "receipt_output_sha256",
            ),
            (
                "another task's receipt",
                "receipt.json",
                lambda d: earlier_files["receipt.json"],
                "receipt_quote",
            ),
            ("edited receipt", "receipt.json", tamper_receipt, "receipt_signature"),
        ]
        for index, (attack, target, mutate, code) in enumerate(attacks):

            def on_download(name: str, dest: Path, target: str = target, mutate: Any = mutate):
                if name == target:
                    dest.write_bytes(mutate(dest.read_bytes()))

            channel.on_download = on_download
            out = tmp_path / f"out-{index}"
            with pytest.raises(TaskStepError) as caught:
                await requestor.fetch(task, out)
            assert (caught.value.step, caught.value.code) == ("fetch", code), attack
            assert_nothing_landed(out)

        channel.on_download = None
        result = await requestor.fetch(task, tmp_path / "honest")
        expected = shell_inputs["x"].read_bytes() + shell_inputs["y"].read_bytes()
        assert result.outputs["both"].read_bytes() == expected
        assert (
            hashlib.sha256(expected).digest()
            == result.receipt.receipt.output("both").plaintext_sha256
        )
        await requestor.channel.delete(task.ref)


async def test_output_swapped_on_the_provider_disk_is_refused(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    """The provider replaces a sealed output in its own outputs folder."""
    spec_dir = provider.spec(SHELL)
    async with provider.requestor(identity, spec_dir) as requestor:
        task = await run_to_attested(requestor, spec_dir)
        await requestor.send_inputs(task, shell_inputs, args=CONCAT)
        await requestor.start(task)
        await requestor.wait(task)
        outputs = provider.task_dir(task.ref.task_id) / "outputs"
        shutil.copyfile(outputs / "stderr.age", outputs / "both.age")
        out = tmp_path / "out"
        with pytest.raises(TaskStepError) as caught:
            await requestor.fetch(task, out)
    assert (caught.value.step, caught.value.code) == ("fetch", "receipt_output_size")
    assert_nothing_landed(out)


async def test_output_for_another_requestor_cannot_be_fetched(
    provider: Provider, identity: Identity, tmp_path: Path, shell_inputs: dict[str, Path]
) -> None:
    """Another requestor's identity opens nothing: its own flow refuses the receipt's key."""
    spec_dir = provider.spec(SHELL)
    stranger = write_identity(tmp_path / "stranger.txt")
    async with provider.requestor(identity, spec_dir) as requestor:
        task = await run_to_attested(requestor, spec_dir)
        await requestor.send_inputs(task, shell_inputs, args=CONCAT)
        await requestor.start(task)
        await requestor.wait(task)
    async with provider.requestor(stranger, spec_dir) as other:
        out = tmp_path / "out"
        with pytest.raises(TaskStepError) as caught:
            await other.fetch(task, out)
    assert (caught.value.step, caught.value.code) == ("fetch", "receipt_identity")
    assert_nothing_landed(out)
