"""Path and file attacks: hostile names over HTTP, hostile outputs from the workload, crafted
age files and manifests. Each is refused with a clear error, and nothing outside the task's own
folder is read or written.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _hostile_support import (
    SHELL_OUTPUT_LIMIT,
    TOKEN_A,
    ThreadProvider,
    auth,
    create_raw,
    raw_request,
    send_until_answered,
    tree,
    wait_state,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from golem_graphene.requestor.client import AttestedTask, Requestor, TaskResult, TaskStepError
from golem_graphene.sealing.input_manifest import (
    INPUT_MANIFEST_KEY_INFO,
    InputEntry,
    InputManifest,
    manifest_transcript_hash,
    seal_manifest,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("sandbox_ok")]

LIMIT = SHELL_OUTPUT_LIMIT
SENTINEL_TEXT = b"sentinel outside every task folder\n"

# Input names as they appear in the request line (percent-encoding included).
HOSTILE_NAMES = [
    "..",
    "%2e%2e",
    ".%2E",
    "..%2Fstate.json",
    "%2E%2E%2F%2E%2E%2F%2E%2E%2Fescaped",
    "..%5C..%5Cescaped",
    "%2Fetc%2Fpasswd",
    "%2Ftmp%2Fescaped",
    "data.txt%00.png",
    "%00",
    "a" * 300,
    "%E2%80%A4%E2%80%A4%EF%BC%8Fescaped",  # U+2024 ONE DOT LEADER twice, FULLWIDTH SOLIDUS
    "%E2%80%A4%E2%80%A4",
    "data%E2%80%AEtxt.exe",  # RIGHT-TO-LEFT OVERRIDE
    "data.t%D0%B0t",  # Cyrillic a
    "da%CC%81ta.txt",  # combining acute accent (not NFC)
    "data.txt%20",
    "data.txt%0A",
    "%0D%0AX-Injected:%201",
    ".data.txt",
    "~",
    "*",
]


@dataclass
class Outcome:
    """How one hostile task ended, seen through the API."""

    state: str
    failure: dict[str, str] | None
    result: TaskResult | None
    error: str | None
    listed: list[str]
    served: dict[str, tuple[int, bytes]]


Prepare = Callable[[Requestor, AttestedTask, Path], Any]


async def _run(
    provider: ThreadProvider,
    work: Path,
    *,
    command: str | None = None,
    prepare: Prepare | None = None,
    probe: tuple[str, ...] = (),
) -> Outcome:
    """Run one task of the ``shell`` spec: ``command`` as its workload, or ``prepare`` to send
    hostile inputs instead of the normal ones. ``probe`` names outputs to request afterwards."""
    work.mkdir(parents=True)
    data = work / "data.txt"
    data.write_bytes(b"input\n")
    async with provider.requestor(TOKEN_A) as requestor, aiohttp.ClientSession() as http:
        created = await requestor.create(provider.specs_dir / "shell")
        attested = await requestor.attest(created)
        if prepare is None:
            assert command is not None
            await requestor.send_inputs(attested, {"data.txt": data}, args=["-c", command])
        else:
            await prepare(requestor, attested, work)
        await requestor.start(attested)
        result = error = None
        try:
            await requestor.wait(attested)
            result = await requestor.fetch(attested, work / "out")
        except TaskStepError as exc:
            error = exc.describe()
        ref = attested.ref
        status = await wait_state(
            http, provider.url, ref.task_id, ref.token, {"done", "failed", "cancelled"}
        )
        listed: list[str] = []
        served: dict[str, tuple[int, bytes]] = {}
        if status["state"] == "done":
            async with http.get(
                f"{provider.url}/v1/tasks/{ref.task_id}/outputs", headers=auth(TOKEN_A, ref.token)
            ) as response:
                listed = [f["name"] for f in (await response.json())["files"]]
            for name in probe:
                async with http.get(
                    f"{provider.url}/v1/tasks/{ref.task_id}/outputs/{name}",
                    headers=auth(TOKEN_A, ref.token),
                ) as response:
                    served[name] = (response.status, await response.read())
        await requestor.channel.delete(ref)
    return Outcome(status["state"], status["failure"], result, error, listed, served)


def _seal_raw(requestor: Requestor, task: AttestedTask, plaintext: bytes) -> bytes:
    """Seal arbitrary bytes as an input manifest, by the key schedule the manifest module
    documents (independently of its own sealing code): authentic, so only the parser stands
    between them and the agent."""
    transcript = task.transcript
    th = manifest_transcript_hash(transcript)
    private = X25519PrivateKey.from_private_bytes(requestor.identity.private_bytes())
    ikm = private.exchange(X25519PublicKey.from_public_bytes(transcript.enclave_key))
    key = HKDF(hashes.SHA256(), 32, salt=th, info=INPUT_MANIFEST_KEY_INFO).derive(ikm)
    nonce = os.urandom(12)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, th)
    sealed = {
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "v": 1,
    }
    return json.dumps(sealed, sort_keys=True, separators=(",", ":")).encode()


def _crafted_input(content: bytes) -> Prepare:
    """Upload ``content`` as ``data.txt.age``, with an authentic manifest that vouches for it."""

    async def prepare(requestor: Requestor, task: AttestedTask, work: Path) -> None:
        async def body() -> Any:
            for offset in range(0, len(content), 1 << 20):
                yield content[offset : offset + (1 << 20)]

        await requestor.channel.put_input(task.ref, "data.txt", body())
        entry = InputEntry(
            name="data.txt",
            size=1,
            ciphertext_size=len(content),
            ciphertext_sha256=hashlib.sha256(content).digest(),
        )
        manifest = InputManifest(task_id=task.transcript.task_id, inputs=(entry,))
        sealed = seal_manifest(
            manifest, requestor.identity, task.transcript.enclave_key, task.transcript
        )
        await requestor.channel.put_manifest(task.ref, sealed)

    return prepare


def _crafted_manifest(plaintext: bytes) -> Prepare:
    async def prepare(requestor: Requestor, task: AttestedTask, work: Path) -> None:
        await requestor.channel.put_manifest(task.ref, _seal_raw(requestor, task, plaintext))

    return prepare


AGE_MANY_STANZAS = b"age-encryption.org/v1\n" + (
    b"-> X25519 " + b"A" * 43 + b"\n" + b"B" * 43 + b"\n"
) * ((8 << 20) // 98)
AGE_LONG_LINE = b"age-encryption.org/v1\n-> X25519 " + b"A" * (8 << 20) + b"\n"


@pytest.fixture(scope="module")
def outcomes(provider: ThreadProvider, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every hostile task, run concurrently (a few at a time) against one provider."""
    work = tmp_path_factory.mktemp("path-attacks")
    outside = work / "outside"
    outside.mkdir()
    sentinel = outside / "sentinel.txt"
    sentinel.write_bytes(SENTINEL_TEXT)
    half = LIMIT // 2 + 1
    cases: dict[str, dict[str, Any]] = {
        "symlink": {"command": "ln -s /etc/passwd outputs/out1"},
        "symlink_outside": {"command": f"ln -s {sentinel} outputs/out1"},
        "hard_link": {"command": "ln inputs/data.txt outputs/out1"},
        "fifo": {"command": "mkfifo outputs/out1"},
        "device_node": {"command": "mknod outputs/out1 c 1 3"},
        "too_large": {"command": f"head -c {LIMIT + 4096} /dev/zero > outputs/out1"},
        "too_large_together": {
            "command": f"head -c {half} /dev/zero > outputs/out1 && "
            f"head -c {half} /dev/zero > outputs/out2"
        },
        "at_limit": {"command": f"head -c {LIMIT} /dev/zero > outputs/out1"},
        "planted_in_io": {
            "command": "mkdir -p /untrusted/outputs && "
            f"ln -s {sentinel} /untrusted/outputs/out9.age && "
            f"ln -s {sentinel} /untrusted/outputs/receipt.json.age && "
            "mkfifo /untrusted/outputs/outf.age",
            "probe": ("out9.age", "receipt.json.age", "outf.age"),
        },
        "outputs_folder_link": {"command": "cd /untrusted && ln -s inputs outputs"},
        "age_many_stanzas": {"prepare": _crafted_input(AGE_MANY_STANZAS)},
        "age_long_line": {"prepare": _crafted_input(AGE_LONG_LINE)},
        "manifest_deep_nesting": {"prepare": _crafted_manifest(b"[" * 100_000)},
        "manifest_many_args": {
            "prepare": _crafted_manifest(json.dumps({"args": [""] * 40_000}).encode())
        },
    }

    async def run_all() -> dict[str, Outcome | BaseException]:
        gate = asyncio.Semaphore(3)

        async def one(name: str, spec: dict[str, Any]) -> Outcome:
            async with gate:
                return await _run(provider, work / name, **spec)

        results = await asyncio.gather(
            *(one(name, spec) for name, spec in cases.items()), return_exceptions=True
        )
        return dict(zip(cases, results, strict=True))

    def outside_tasks() -> set[str]:
        # Launch folders live under tasks/ and, for standby enclaves not yet taken, under
        # standby/ (checked to be untouched in their own test).
        data = {p for p in tree(provider.data_dir) if not p.startswith(("tasks", "standby"))}
        return {f"outside/{p}" for p in tree(outside)} | {f"data/{p}" for p in data}

    before = outside_tasks()
    results = asyncio.run(run_all())
    after = outside_tasks()
    return {"results": results, "written_outside": after - before, "sentinel": sentinel}


def _outcome(outcomes: Any, name: str) -> Outcome:
    result = outcomes["results"][name]
    if isinstance(result, BaseException):
        raise result
    assert isinstance(result, Outcome)
    return result


def _refused(outcome: Outcome, code: str, *fragments: str) -> None:
    assert outcome.state == "failed", outcome
    assert outcome.failure is not None
    assert outcome.failure["code"] == code, outcome.failure
    for fragment in fragments:
        assert fragment in outcome.failure["message"], outcome.failure
    # The requestor sees the same reason, shown as the provider's words (quotes escaped).
    assert outcome.result is None and outcome.error is not None
    assert outcome.failure["message"][:60].replace('"', '\\"') in outcome.error


@pytest.mark.parametrize(
    ("case", "code", "fragment"),
    [
        ("symlink", "output_symlink", '"out1" is a symbolic link'),
        ("symlink_outside", "output_symlink", '"out1" is a symbolic link'),
        ("hard_link", "output_hard_link", '"out1" has more than one link'),
        ("fifo", "output_not_regular", '"out1" is not a regular file'),
        ("too_large", "output_too_large", '"out1"'),
        ("too_large_together", "output_too_large", '"out2"'),
        # The agent refuses to seal into a linked outputs folder (it never writes through it);
        # the host refuses such a folder too if one appears after the agent finished.
        ("outputs_folder_link", "sealing", "outputs folder is not a folder"),
    ],
)
def test_hostile_outputs_are_refused_by_name(
    outcomes: Any, case: str, code: str, fragment: str
) -> None:
    _refused(_outcome(outcomes, case), code, fragment)


def test_output_at_the_limit_is_sealed_whole(outcomes: Any) -> None:
    outcome = _outcome(outcomes, "at_limit")
    assert outcome.state == "done" and outcome.result is not None, outcome
    assert outcome.result.outputs["out1"].stat().st_size == LIMIT


def test_device_node_cannot_be_made_or_is_refused(outcomes: Any) -> None:
    outcome = _outcome(outcomes, "device_node")
    if outcome.state == "failed":  # mknod worked (a privileged host): the agent refuses it
        _refused(outcome, "output_not_regular", '"out1"')
        return
    assert outcome.state == "done" and outcome.result is not None, outcome
    assert outcome.result.exit_status != 0
    assert b"not permitted" in outcome.result.outputs["stderr"].read_bytes()
    assert "out1" not in outcome.result.outputs


def test_files_planted_in_the_untrusted_folder_are_never_served(outcomes: Any) -> None:
    outcome = _outcome(outcomes, "planted_in_io")
    assert outcome.state == "done" and outcome.result is not None, outcome
    assert set(outcome.listed) == {"receipt.json", "stdout.age", "stderr.age"}
    for name, (status, body) in outcome.served.items():
        assert status == 404, name
        assert SENTINEL_TEXT not in body
    assert set(outcome.result.outputs) == {"stdout", "stderr"}


@pytest.mark.parametrize("case", ["age_many_stanzas", "age_long_line"])
def test_age_file_with_a_giant_header_is_refused(outcomes: Any, case: str) -> None:
    _refused(_outcome(outcomes, case), "age_header", "header")


@pytest.mark.parametrize("case", ["manifest_deep_nesting", "manifest_many_args"])
def test_crafted_authentic_manifest_is_refused(outcomes: Any, case: str) -> None:
    _refused(_outcome(outcomes, case), "input_manifest_format", "manifest")


def test_nothing_was_written_outside_the_task_folders(outcomes: Any) -> None:
    assert outcomes["written_outside"] == set()


def test_standby_enclaves_hold_nothing_but_their_empty_folders(
    outcomes: Any, provider: ThreadProvider
) -> None:
    io_dirs = list((provider.data_dir / "standby").glob("*/launch/io"))
    assert io_dirs, "the hostile tasks' image has a standby enclave"
    for io_dir in io_dirs:
        assert sorted(p.name for p in io_dir.rglob("*")) == ["inputs"], io_dir
    assert outcomes["sentinel"].read_bytes() == SENTINEL_TEXT


def _devices(root: Path) -> list[str]:
    return [
        str(p)
        for p in root.rglob("*")
        if stat.S_ISCHR(p.lstat().st_mode) or stat.S_ISBLK(p.lstat().st_mode)
    ]


def test_no_device_node_anywhere_in_the_data_folder(
    outcomes: Any, provider: ThreadProvider
) -> None:
    assert _outcome(outcomes, "device_node").state in ("done", "failed")
    assert _devices(provider.data_dir) == []


# --- names over HTTP --------------------------------------------------------------------------


async def test_hostile_input_names_are_refused(provider: ThreadProvider, tmp_path: Path) -> None:
    sentinel_dir = tmp_path / "outside"
    sentinel_dir.mkdir()
    (sentinel_dir / "escaped").write_bytes(SENTINEL_TEXT)
    async with aiohttp.ClientSession() as http:
        task_id, token = await create_raw(http, provider.url, provider.specs_dir)
        await wait_state(http, provider.url, task_id, token, {"attested"})
        task_dir = provider.data_dir / "tasks" / task_id
        before = tree(provider.data_dir) | tree(tmp_path)
        seen = []
        for name in HOSTILE_NAMES:
            path = f"/v1/tasks/{task_id}/inputs/{name}"
            status, content_type, body = await asyncio.to_thread(
                raw_request, provider.url, "PUT", path, b"evil", auth(TOKEN_A, token)
            )
            assert status in (400, 404), (name, status, body[:200])
            assert content_type.startswith("application/json"), (name, content_type)
            error = json.loads(body)
            assert error["code"] in ("protocol", "not_found"), (name, error)
            assert error["message"], name
            seen.append(error["code"])
        assert "protocol" in seen  # names reached the handler, not only the router
        after = tree(provider.data_dir) | tree(tmp_path)
        assert after == before, sorted(after ^ before)
        assert list((task_dir / "launch" / "io" / "inputs").iterdir()) == []
        assert (sentinel_dir / "escaped").read_bytes() == SENTINEL_TEXT
        # The real name still works afterwards.
        status, _, body = await asyncio.to_thread(
            raw_request,
            provider.url,
            "PUT",
            f"/v1/tasks/{task_id}/inputs/data.txt",
            b"fine",
            auth(TOKEN_A, token),
        )
        assert status == 201, body
        async with http.delete(
            f"{provider.url}/v1/tasks/{task_id}", headers=auth(TOKEN_A, token)
        ) as response:
            assert response.status == 204


async def test_hostile_output_names_serve_nothing_else(
    provider: ThreadProvider, tmp_path: Path
) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes(b"hello\n")
    async with provider.requestor(TOKEN_A) as requestor:
        created = await requestor.create(provider.specs_dir / "shell")
        attested = await requestor.attest(created)
        await requestor.send_inputs(attested, {"data.txt": data})
        await requestor.start(attested)
        await requestor.wait(attested)
    ref = attested.ref
    task_dir = provider.data_dir / "tasks" / ref.task_id
    secrets_on_disk = [
        (task_dir / "state.json").read_bytes(),
        (task_dir / "evidence.json").read_bytes(),
        Path("/etc/passwd").read_bytes(),
    ]
    names = [
        *HOSTILE_NAMES,
        "..%2Fstate.json",
        "..%2F..%2F" + ref.task_id + "%2Fstate.json",
        "%2E%2E%2Fevidence.json",
        "..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "receipt.json%2F..%2F..%2Fstate.json",
        "stdout.age%00",
    ]
    for name in names:
        status, content_type, body = await asyncio.to_thread(
            raw_request,
            provider.url,
            "GET",
            f"/v1/tasks/{ref.task_id}/outputs/{name}",
            None,
            auth(TOKEN_A, ref.token),
        )
        assert status in (400, 404), (name, status)
        assert content_type.startswith("application/json"), name
        assert json.loads(body)["code"] in ("protocol", "not_found"), name
        for secret in secrets_on_disk:
            assert secret[:64] not in body, name
    status, _, body = await asyncio.to_thread(
        raw_request,
        provider.url,
        "GET",
        f"/v1/tasks/{ref.task_id}/outputs/stdout.age",
        None,
        auth(TOKEN_A, ref.token),
    )
    assert status == 200 and body.startswith(b"age-encryption.org/v1\n")
    async with (
        aiohttp.ClientSession() as http,
        http.delete(
            f"{provider.url}/v1/tasks/{ref.task_id}", headers=auth(TOKEN_A, ref.token)
        ) as response,
    ):
        assert response.status == 204


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_manifest_upload_is_refused(
    provider: ThreadProvider, chunked: bool
) -> None:
    """8 MiB announced (refused before reading) or streamed (refused at the limit)."""
    size = 8 << 20
    async with aiohttp.ClientSession() as http:
        task_id, token = await create_raw(http, provider.url, provider.specs_dir)
        await wait_state(http, provider.url, task_id, token, {"attested"})
        headers = "".join(f"{k}: {v}\r\n" for k, v in auth(TOKEN_A, token).items())
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        head = (
            f"PUT /v1/tasks/{task_id}/manifest HTTP/1.1\r\nHost: x\r\n{headers}{framing}\r\n\r\n"
        ).encode()
        block = b" " * 65536
        chunks = (b"10000\r\n" + block + b"\r\n" if chunked else block for _ in range(128))
        response, sent = await asyncio.to_thread(
            send_until_answered, provider.url, head, iter(chunks)
        )
        assert response.status == 413, response
        error = response.json()
        assert error["code"] == "input_too_large" and "manifest" in error["message"]
        assert sent < size  # refused before the whole body arrived
        io = provider.data_dir / "tasks" / task_id / "launch" / "io"
        assert not (io / "manifest.sealed").exists()
        assert [p.name for p in io.iterdir() if p.name.endswith(".part")] == []
        async with http.delete(
            f"{provider.url}/v1/tasks/{task_id}", headers=auth(TOKEN_A, token)
        ) as response:
            assert response.status == 204
