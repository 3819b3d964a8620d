"""The requestor's task flow against an in-memory provider with an honest fake enclave.

Each step's refusals (create, attest, send_inputs, wait, fetch) are checked one by one: the
precise :class:`TaskStepError` step and code, nothing encrypted before attestation, outputs in
``out_dir`` all or nothing, no temporary file left, the task cancelled on failure and deleted
on success.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _fake_provider import MRENCLAVE, MRSIGNER, FakeProvider
from _test_images import write_shell_spec

from golem_graphene._internal.staging import STAGING_PREFIX
from golem_graphene.host.sim.platform import SimPlatform
from golem_graphene.protocol.messages import TaskEvent
from golem_graphene.requestor.channel import TaskRef
from golem_graphene.requestor.client import (
    INPUT_MANIFEST_FILE,
    LocalProgress,
    ProviderTaskError,
    Requestor,
    RequestorPolicy,
    TaskStepError,
)
from golem_graphene.sealing.age import encrypt_stream
from golem_graphene.sealing.input_manifest import InputManifest
from golem_graphene.sealing.keys import X25519Identity

SPEC = """\
name = "fake"

[enclave]
image = "{image}"

[[inputs]]
name = "a"
max_size = "1M"

[[inputs]]
name = "b"
max_size = "1M"
required = false

[outputs]
files = ["out"]

[limits]
wall_seconds = 60
output_size = "1M"
{extra}
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> SimPlatform:
    return SimPlatform.load_or_create(tmp_path_factory.mktemp("platform"))


@pytest.fixture(autouse=True)
def image_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's image store (where the requestor measures a spec's image) in the test's
    own folder, not ``~/.cache``."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def write_spec(root: Path, extra: str = "") -> Path:
    """The spec folder: ``task.toml`` and its container image (a shell, tests/_test_images.py)."""
    return write_shell_spec(root / "spec", SPEC.format(extra=extra, image="{image}"))


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a.txt").write_bytes(b"alpha " * 20_000)
    (tmp_path / "b.txt").write_bytes(b"beta\n")
    return {"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}


def policy(platform: SimPlatform, **overrides: Any) -> RequestorPolicy:
    options: dict[str, Any] = {
        "trusted_simulation_roots": (platform.root_fingerprint,),
        "expected_mrenclave": (MRENCLAVE.hex(),),
    }
    options.update(overrides)
    return RequestorPolicy(**options)


def requestor(provider: FakeProvider, **overrides: Any) -> Requestor:
    return Requestor(
        provider, identity=X25519Identity.generate(), policy=policy(provider.platform, **overrides)
    )


def leftovers(out: Path) -> list[Path]:
    """Temporary files beside ``out``: the private staging folders (and any ``.out.*``)."""
    return sorted(out.parent.glob(f".{out.name}.*")) + sorted(out.parent.glob(f"{STAGING_PREFIX}*"))


# --- the whole flow -----------------------------------------------------------------------------


async def test_run_delivers_verified_outputs_and_deletes_the_task(
    platform: SimPlatform, spec: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    fake = FakeProvider(platform)
    out = tmp_path / "deep" / "results"
    events: list[TaskEvent] = []
    progress: list[LocalProgress] = []
    async with requestor(fake) as r:
        result = await r.run(
            spec, inputs, out, args=["x", "y"], on_event=events.append, on_progress=progress.append
        )
    assert result.exit_status == 0
    assert (out / "out").read_bytes() == inputs["a"].read_bytes() + inputs["b"].read_bytes()
    assert (out / "stdout").read_bytes() == b"x y"
    assert (out / "stderr").read_bytes() == b""
    assert sorted(p.name for p in (out / ".sealed").iterdir()) == [
        "out.age",
        "stderr.age",
        "stdout.age",
    ]
    assert json.loads((out / "receipt.json").read_bytes())["receipt"]["task_id"] == result.task_id
    assert result.receipt.plaintexts_checked
    assert set(result.outputs) == {"out", "stdout", "stderr"}
    assert leftovers(out) == []
    assert [c[0] for c in fake.calls] == ["create", "start", "delete", "close"]
    assert [e.state for e in events][-1] == "done"
    # The requestor's own progress, apart from the provider's events: the task's creation,
    # each upload (plaintext bytes) and each download (ciphertext bytes), with phase times.
    assert [p.name for p in progress if p.phase == "created"] == [result.task_id]
    uploads = [p for p in progress if p.phase == "upload" and p.finished]
    assert [(p.name, p.done) for p in uploads] == [
        ("a", inputs["a"].stat().st_size),
        ("b", inputs["b"].stat().st_size),
    ]
    downloads = {p.name: p.done for p in progress if p.phase == "download" and p.finished}
    assert downloads == {o.name: o.ciphertext_size for o in result.receipt.receipt.outputs}
    # The input manifest that was sealed is kept beside the receipt, and its digest is the
    # one the receipt carries.
    manifest = InputManifest.from_json((out / INPUT_MANIFEST_FILE).read_bytes())
    assert manifest.digest() == result.receipt.receipt.input_manifest_sha256
    assert manifest.args == ("x", "y")


async def test_failed_task_is_cancelled_and_nothing_lands(
    platform: SimPlatform, spec: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    fake = FakeProvider(platform)
    fake.fail_with = "runner: input_sha256: a: the SHA-256 differs"
    out = tmp_path / "out"
    async with requestor(fake) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, inputs, out)
    # No code in the event: the generic one, the reason in the message.
    assert (caught.value.step, caught.value.code) == ("wait", "task_failed")
    assert "input_sha256" in str(caught.value)
    assert not out.exists()
    assert [c[0] for c in fake.calls] == ["create", "start", "cancel", "close"]
    # With the provider's code, the requestor's error carries it.
    fake.fail_code = "input_sha256"
    async with requestor(fake) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, inputs, tmp_path / "out2")
    assert (caught.value.step, caught.value.code) == ("wait", "input_sha256")
    assert isinstance(caught.value.cause, ProviderTaskError)


async def test_keep_task_leaves_the_task_on_the_provider(
    platform: SimPlatform, spec: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    fake = FakeProvider(platform)
    async with requestor(fake) as r:
        result = await r.run(spec, inputs, tmp_path / "out", keep_task=True)
    assert result.task_id in fake.tasks
    assert "delete" not in [c[0] for c in fake.calls]


# --- step 1 -------------------------------------------------------------------------------------


async def test_create_refuses_a_malformed_answer(platform: SimPlatform, spec: Path) -> None:
    class BadAnswer(FakeProvider):
        async def create(self, request: dict[str, Any]) -> dict[str, Any]:
            return {"task_id": "not a task id", "capability_token": "x" * 40}

    async with requestor(BadAnswer(platform)) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.create(spec)
    assert (caught.value.step, caught.value.code) == ("create", "protocol")


async def test_create_refuses_a_missing_spec(platform: SimPlatform, tmp_path: Path) -> None:
    async with requestor(FakeProvider(platform)) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.create(tmp_path / "nowhere")
    assert (caught.value.step, caught.value.code) == ("create", "config")


# --- steps 2 and 3 ------------------------------------------------------------------------------


async def test_attest_binds_this_task(platform: SimPlatform, spec: Path) -> None:
    fake = FakeProvider(platform)
    async with requestor(fake) as r:
        task = await r.attest(await r.create(spec))
    assert task.verified.simulated
    assert task.verified.quote.report_body.mrenclave == MRENCLAVE
    assert task.transcript.report_data() == task.verified.report_body.report_data
    assert task.enclave_recipient.public_bytes() == task.evidence.enclave_key


@pytest.mark.parametrize(
    ("overrides", "code", "found"),
    [
        ({"expected_mrenclave": ("00" * 32,)}, "policy_mrenclave", MRENCLAVE.hex()),
        ({"trusted_simulation_roots": ()}, "untrusted_root", "Intel SGX Root CA"),
        ({"accept_tcb": ("OutOfDate",)}, "policy_tcb_status", "UpToDate"),
    ],
    ids=["measurement", "untrusted-root", "tcb-status"],
)
async def test_attest_refuses_what_the_policy_does_not_accept(
    platform: SimPlatform, spec: Path, overrides: dict[str, Any], code: str, found: str
) -> None:
    fake = FakeProvider(platform)
    async with requestor(fake, **overrides) as r:
        created = await r.create(spec)
        with pytest.raises(TaskStepError) as caught:
            await r.attest(created)
    assert (caught.value.step, caught.value.code) == ("attest", code)
    assert found in str(caught.value)
    # Never a suggestion to trust what the provider sent: its root's fingerprint is not shown.
    assert platform.root_fingerprint not in str(caught.value)


async def test_debug_enclaves_need_an_explicit_opt_in(platform: SimPlatform, spec: Path) -> None:
    fake = FakeProvider(platform, debug=True)
    async with requestor(fake) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.attest(await r.create(spec))
    assert (caught.value.step, caught.value.code) == ("attest", "policy_debug")
    async with requestor(fake, allow_debug=True) as r:
        task = await r.attest(await r.create(spec))
    assert task.verified.report_body.debug


async def test_without_a_pin_the_measurement_of_the_specs_image_is_expected(
    platform: SimPlatform, spec: Path, tmp_path: Path, image_cache: Path
) -> None:
    """Neither the policy nor the spec pins the enclave: the requestor measures the spec's
    digest-pinned image itself, offline (what every provider's build gives, which the provider
    cannot influence) and expects that measurement; the fake enclave's own measurement is not
    it."""
    from golem_graphene.requestor.measure import measure_locally

    built = measure_locally(spec / "task.toml", "sim")
    fake = FakeProvider(platform)
    async with requestor(fake, expected_mrenclave=()) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.attest(await r.create(spec))
    assert (caught.value.step, caught.value.code) == ("attest", "policy_mrenclave")
    assert built in str(caught.value)
    async with requestor(
        FakeProvider(platform, mrenclave=bytes.fromhex(built)), expected_mrenclave=()
    ) as r:
        task = await r.attest(await r.create(spec))
    assert task.verified.report_body.mrenclave.hex() == built
    # The image was flattened into the user's cache (here the test's), nowhere else.
    assert any((image_cache / "golem-graphene" / "images").glob("sha256-*.index"))


@pytest.mark.parametrize(
    ("pin", "refusal"),
    [
        (f'[attestation]\nmrenclave = {{ sim = "{MRENCLAVE.hex()}" }}', None),
        (f'[attestation]\nmrenclave = {{ sim = "{"11" * 32}" }}', "policy_mrenclave"),
        # A pin for another runner only: the sim measurement is computed from the image.
        (f'[attestation]\nmrenclave = {{ gramine-sgx = "{MRENCLAVE.hex()}" }}', "policy_mrenclave"),
        (f'[attestation]\nmrsigner = "{MRSIGNER.hex()}"', None),
        (f'[attestation]\nmrsigner = "{"22" * 32}"', "policy_mrsigner"),
    ],
    ids=["mrenclave", "other-mrenclave", "only-another-runner", "mrsigner", "other-mrsigner"],
)
async def test_spec_pins_decide_without_a_policy_measurement(
    platform: SimPlatform, tmp_path: Path, pin: str, refusal: str | None
) -> None:
    spec = write_spec(tmp_path, pin)
    async with requestor(FakeProvider(platform), expected_mrenclave=()) as r:
        created = await r.create(spec)
        if refusal is None:
            await r.attest(created)
            return
        with pytest.raises(TaskStepError) as caught:
            await r.attest(created)
    assert (caught.value.step, caught.value.code) == ("attest", refusal)


async def test_attest_refuses_evidence_of_another_task(platform: SimPlatform, spec: Path) -> None:
    fake = FakeProvider(platform)
    async with requestor(fake) as r:
        first = await r.create(spec)
        second = await r.create(spec)
        fake.tasks[second.ref.task_id].evidence = fake.tasks[first.ref.task_id].evidence
        with pytest.raises(TaskStepError) as caught:
            await r.attest(second)
    assert (caught.value.step, caught.value.code) == ("attest", "protocol")


async def test_attest_refuses_a_substituted_enclave_key(platform: SimPlatform, spec: Path) -> None:
    fake = FakeProvider(platform)
    async with requestor(fake) as r:
        created = await r.create(spec)
        task = fake.tasks[created.ref.task_id]
        task.evidence = task.evidence.model_copy(
            update={"enclave_key": X25519Identity.generate().recipient().public_bytes()}
        )
        with pytest.raises(TaskStepError) as caught:
            await r.attest(created)
    assert (caught.value.step, caught.value.code) == ("attest", "report_data_binding")


async def test_attest_gives_up_after_its_timeout(platform: SimPlatform, spec: Path) -> None:
    class NeverAttests(FakeProvider):
        async def events(self, task: TaskRef) -> AsyncIterator[TaskEvent]:
            yield TaskEvent.from_obj({"task_id": task.task_id, "state": "launching", "seq": 0})
            await asyncio.Event().wait()

    async with requestor(NeverAttests(platform)) as r:
        created = await r.create(spec)
        with pytest.raises(TaskStepError) as caught:
            await r.attest(created, timeout=0.2)
    assert (caught.value.step, caught.value.code) == ("attest", "deadline")
    message = str(caught.value)
    assert "did not attest within the attest deadline of 0.2 s" in message
    assert "last state was launching (event 0)" in message


# --- step 4 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("c", 10, "declares no input 'c'"),
        ("a", (1 << 20) + 1, "larger than the spec allows"),
        ("a", None, "cannot read input 'a'"),
    ],
    ids=["undeclared", "too-large", "missing-file"],
)
async def test_send_inputs_refuses_bad_inputs_before_uploading(
    platform: SimPlatform,
    spec: Path,
    tmp_path: Path,
    name: str,
    size: int | None,
    message: str,
) -> None:
    path = tmp_path / "input"
    if size is not None:
        path.write_bytes(b"\0" * size)
    fake = FakeProvider(platform)
    async with requestor(fake) as r:
        task = await r.attest(await r.create(spec))
        with pytest.raises(TaskStepError) as caught:
            await r.send_inputs(task, {name: path})
    assert (caught.value.step, caught.value.code) == ("send_inputs", "usage")
    assert message in str(caught.value)
    assert fake.tasks[task.ref.task_id].inputs == {}
    assert fake.tasks[task.ref.task_id].manifest is None


async def test_prestaged_input_is_retargeted_without_touching_it(
    platform: SimPlatform, spec: Path, tmp_path: Path
) -> None:
    identity = X25519Identity.generate()
    plain = b"sealed long ago\n" * 9000
    staged = tmp_path / "a.age"
    sink = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), sink, [identity.recipient()])
    staged.write_bytes(sink.getvalue())
    fake = FakeProvider(platform)
    async with Requestor(fake, identity=identity, policy=policy(platform)) as r:
        result = await r.run(spec, {}, tmp_path / "out", prestaged={"a": staged})
    assert result.outputs["out"].read_bytes() == plain
    assert staged.read_bytes() == sink.getvalue()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".retarget")] == []


# --- steps 5-7 ----------------------------------------------------------------------------------


async def test_wait_refuses_a_stream_that_ends_early(platform: SimPlatform, spec: Path) -> None:
    async with requestor(FakeProvider(platform)) as r:
        task = await r.attest(await r.create(spec))
        with pytest.raises(TaskStepError) as caught:
            await r.wait(task)  # never started: the stream ends at "attested"
    assert (caught.value.step, caught.value.code) == ("wait", "protocol")
    assert "ended before the task finished" in str(caught.value)


def flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def edit_receipt(data: bytes) -> bytes:
    obj = json.loads(data)
    obj["receipt"]["exit_status"] = 7
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("name", "mutate", "code"),
    [
        ("out.age", flip_last, "receipt_output_sha256"),
        ("out.age", lambda d: d[:100], "receipt_output_size"),
        ("stderr.age", lambda d: d + b"\0", "receipt_output_size"),
        ("receipt.json", edit_receipt, "receipt_signature"),
        ("receipt.json", lambda d: b"{", "receipt_format"),
        ("receipt.json", lambda d: d.replace(b'"sim"', b'"gramine-sgx"', 1), "receipt_runner"),
    ],
    ids=["flip", "truncate", "append", "edited-receipt", "not-json", "runner"],
)
async def test_fetch_is_all_or_nothing(
    platform: SimPlatform,
    spec: Path,
    inputs: dict[str, Path],
    tmp_path: Path,
    name: str,
    mutate: Any,
    code: str,
) -> None:
    fake = FakeProvider(platform)
    async with requestor(fake) as r:
        task = await r.attest(await r.create(spec))
        await r.send_inputs(task, inputs)
        await r.start(task)
        await r.wait(task)
        fake.tamper[name] = mutate
        out = tmp_path / "out"
        with pytest.raises(TaskStepError) as caught:
            await r.fetch(task, out)
        assert (caught.value.step, caught.value.code) == ("fetch", code)
        assert not out.exists()
        assert leftovers(out) == []
        fake.tamper.clear()
        result = await r.fetch(task, out)
    assert result.outputs["out"].exists()


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("plaintext_sha256", bytes(32), "receipt_plaintext_sha256"),
        ("size", 3, "receipt_plaintext_size"),
    ],
)
async def test_fetch_checks_each_plaintext_against_the_signed_receipt(
    platform: SimPlatform,
    spec: Path,
    inputs: dict[str, Path],
    tmp_path: Path,
    field: str,
    value: object,
    code: str,
) -> None:
    """An enclave whose signed receipt misstates a plaintext: the ciphertext checks pass, the
    plaintext check while decrypting refuses it, and nothing lands."""
    fake = FakeProvider(platform)
    fake.misreport["out"] = {field: value}
    out = tmp_path / "out"
    async with requestor(fake) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, inputs, out)
    assert (caught.value.step, caught.value.code) == ("fetch", code)
    assert "out" in str(caught.value)
    assert not out.exists()
    assert leftovers(out) == []


async def test_fetch_refuses_a_receipt_of_another_task(
    platform: SimPlatform, spec: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    fake = FakeProvider(platform)
    async with requestor(fake) as r:
        tasks = []
        for _ in range(2):
            task = await r.attest(await r.create(spec))
            await r.send_inputs(task, inputs)
            await r.start(task)
            tasks.append(task)
        other = fake.tasks[tasks[0].ref.task_id].files["receipt.json"]
        fake.tamper["receipt.json"] = lambda d: other
        with pytest.raises(TaskStepError) as caught:
            await r.fetch(tasks[1], tmp_path / "out")
    assert (caught.value.step, caught.value.code) == ("fetch", "receipt_quote")
    assert not (tmp_path / "out").exists()


async def test_fetch_never_overwrites_a_non_empty_folder(
    platform: SimPlatform, spec: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious").write_text("keep me")
    fake = FakeProvider(platform)
    async with requestor(fake) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, inputs, out)
    # Found before the provider does any work (issue 14, item 4).
    assert (caught.value.step, caught.value.code) == ("prepare", "usage")
    assert [c[0] for c in fake.calls] == ["close"]
    assert sorted(p.name for p in out.iterdir()) == ["precious"]
    assert (out / "precious").read_text() == "keep me"
    assert leftovers(out) == []


async def test_fetch_fills_an_existing_empty_folder(
    platform: SimPlatform, spec: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    async with requestor(FakeProvider(platform)) as r:
        result = await r.run(spec, inputs, out)
    assert result.out_dir == out
    assert (out / "out").is_file()


async def test_start_refuses_an_unknown_task(platform: SimPlatform, spec: Path) -> None:
    fake = FakeProvider(platform)
    async with requestor(fake) as r:
        task = await r.attest(await r.create(spec))
        del fake.tasks[task.ref.task_id]
        with pytest.raises(TaskStepError) as caught:
            await r.start(task)
    assert (caught.value.step, caught.value.code) == ("start", "not_found")


async def test_a_receipt_for_another_input_manifest_is_refused(
    platform: SimPlatform, spec: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """The enclave signed a receipt naming another input manifest (another run's inputs or
    arguments): the requestor compares it with the manifest it sealed (issue 15, item 5)."""
    fake = FakeProvider(platform)
    fake.signed_manifest = b"\x07" * 32
    out = tmp_path / "out"
    async with requestor(fake) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, inputs, out)
    assert (caught.value.step, caught.value.code) == ("fetch", "receipt_input_manifest")
    assert "07" * 32 in str(caught.value)
    assert not out.exists()
    assert leftovers(out) == []
