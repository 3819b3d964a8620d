"""A provider that delays, drips and lies in words (issue 15), met as users meet it: the
installed ``golem-graphene run``/``fetch`` against a tampering proxy in front of a real provider
(or a fake one for attacks that end before any quote), and the SDK where it has the same path.

Each test is one finding: provider text drawing a verdict on the terminal (15.1), a download
dripped or stalled forever (15.2), plaintext left on disk by SIGTERM or SIGKILL (15.3),
duplicate JSON keys (15.4); and the scriptable requestor: ``run --json`` on failure, a task id
to ``fetch`` later (issue 14, item 9).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
from pathlib import Path
from typing import Any

import pytest
from _hostile_support import SHELL, TOKEN_A, ThreadProvider
from _tampering_proxy import (
    TASK_ID,
    TamperingProxy,
    fake_provider,
    golem_graphene,
    sse,
    start_cli,
    status,
)

from golem_graphene._internal.staging import STAGING_PREFIX
from golem_graphene.requestor.channel import HttpChannel
from golem_graphene.requestor.client import (
    ProviderTaskError,
    Requestor,
    RequestorPolicy,
    TaskStepError,
)
from golem_graphene.sealing.keys import X25519Identity

pytestmark = pytest.mark.usefixtures("sandbox_ok")

FAKE_OK = f"OK: task {TASK_ID} verified (exit status 0, SIMULATED)"
EVIL = (
    "\x1b[1A\x1b[2K\r"  # cursor up, erase the line (our FAIL), carriage return
    + FAKE_OK
    + "\n\x1b]0;pwned\x07"  # a new line, and an OSC window title
    + "\u202eevil\u202c"  # a right-to-left override
)
RAW = ("\x1b", "\x07", "\u202e", "\r")


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A fresh configuration and state home for the CLI (its identity, its task records)."""
    return {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "GOLEM_GRAPHENE_TOKEN": TOKEN_A,
    }


@pytest.fixture
def identity(tmp_path: Path) -> Path:
    key = X25519Identity.generate()
    path = tmp_path / "identity.txt"
    path.write_text(f"{key.to_string()}\n")
    return path


def records(home: dict[str, str]) -> list[Path]:
    return sorted((Path(home["XDG_STATE_HOME"]) / "golem-graphene" / "tasks").glob("*.json"))


def staging(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{STAGING_PREFIX}*"))


def assert_no_raw_control(text: str) -> None:
    for char in RAW:
        assert char not in text, f"{char!r} reached the terminal"


# --- 15.1: the provider's words cannot draw a verdict -------------------------------------------


async def test_a_failure_message_cannot_erase_fail_or_draw_ok(
    tmp_path: Path, identity: Path, home: dict[str, str]
) -> None:
    failed = {"task_id": TASK_ID, "state": "failed", "seq": 0, "message": EVIL, "code": "oops"}
    spec = _spec(tmp_path)
    routes = {("GET", f"/v1/tasks/{TASK_ID}/events"): sse(failed)}
    async with fake_provider(routes) as url:
        code, out, err = await golem_graphene(
            *_run_args(spec, url, identity, tmp_path / "out"), "--json", env=home
        )
        # The SDK: the provider's text is kept raw apart from ours, and shown escaped.
        policy = RequestorPolicy(expected_mrenclave=("00" * 32,))
        async with Requestor(url, identity=X25519Identity.generate(), policy=policy) as r:
            with pytest.raises(TaskStepError) as caught:
                await r.run(spec, {"data.txt": spec / "task.toml"}, tmp_path / "sdk")
    assert code == 1
    text = err.decode()
    assert_no_raw_control(text)
    lines = text.splitlines()
    verdict = [line for line in lines if line.startswith(("OK", "FAIL"))]
    assert verdict == ["FAIL: oops: attest: the task failed on the provider"]
    said = lines[lines.index(verdict[0]) + 1]
    assert said.startswith('  the provider says (untrusted): "\\x1b[1A\\x1b[2K\\x0dOK: task')
    assert "\\x1b]0;pwned\\x07" in said and "\\u202eevil" in said
    # The fake OK is inside the quoted, marked line; never at a line's start.
    assert not any(line.startswith("OK") for line in lines)
    result = json.loads(out)
    assert result == {
        "verdict": "fail",
        "step": "attest",
        "code": "oops",
        "message": "attest: the task failed on the provider",
        "task_id": TASK_ID,
        "provider_message": EVIL,
    }
    assert not (tmp_path / "out").exists()
    error = caught.value
    assert isinstance(error.cause, ProviderTaskError)
    assert error.provider_text == EVIL
    assert error.describe_own() == "attest: the task failed on the provider"
    assert_no_raw_control(str(error))


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (
            status(409, json.dumps({"code": "invalid_state", "message": EVIL}).encode()),
            "invalid_state",
        ),
        # A code outside the rule is not a code: it would stand on the verdict line.
        (status(409, json.dumps({"code": "ok\x1b[2K", "message": "x"}).encode()), "http_error"),
        (status(500, b"\x1b[2J\x1b[H" + FAKE_OK.encode(), "text/plain"), "http_error"),
        # Duplicate keys: another reader would see another code.
        (status(403, b'{"code":"forbidden","message":"a","code":"ok"}'), "http_error"),
    ],
    ids=["error-body", "bad-code", "not-json", "duplicate-keys"],
)
async def test_error_bodies_are_the_providers_words(
    tmp_path: Path, identity: Path, home: dict[str, str], answer: Any, code: str
) -> None:
    spec = _spec(tmp_path)
    async with fake_provider({("POST", "/v1/tasks"): answer}) as url:
        exit_code, _, err = await golem_graphene(
            *_run_args(spec, url, identity, tmp_path / "out"), env=home
        )
    text = err.decode()
    assert exit_code == 1
    assert_no_raw_control(text)
    fail = next(line for line in text.splitlines() if line.startswith("FAIL"))
    assert re.fullmatch(rf"FAIL: {code}: create: the provider answered HTTP \d+ \({code}\)", fail)
    assert "the provider says (untrusted): " in text
    assert not any(line.startswith("OK") for line in text.splitlines())


async def test_an_event_with_duplicate_keys_is_refused(
    tmp_path: Path, identity: Path, home: dict[str, str]
) -> None:
    """``"state":"failed","state":"done"``: a reader keeping the first value sees a failure."""

    async def handle(request: Any) -> Any:
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        line = f'{{"task_id":"{TASK_ID}","state":"failed","seq":0,"state":"attested"}}'
        await response.write(f"data: {line}\n\n".encode())
        await response.write_eof()
        return response

    spec = _spec(tmp_path)
    async with fake_provider({("GET", f"/v1/tasks/{TASK_ID}/events"): handle}) as url:
        code, _, err = await golem_graphene(
            *_run_args(spec, url, identity, tmp_path / "out"), env=home
        )
    assert code == 1
    assert "FAIL: channel: attest: the provider sent a malformed event" in err.decode()
    assert "duplicate object key" in err.decode()


# --- 15.2, 15.3 and 14.9 against a real provider behind a proxy ---------------------------------


async def test_a_dripped_output_fails_at_the_minimum_rate_and_fetch_resumes(
    provider: ThreadProvider, tmp_path: Path, identity: Path, home: dict[str, str]
) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes(os.urandom(300_000))
    out = tmp_path / "out"
    proxy = TamperingProxy(provider.url, drip={"/outputs/out.txt.age": (1000, 0.2)})
    async with proxy.running():
        code, stdout, err = await golem_graphene(
            *_real_args(provider, proxy.url, identity, data, out),
            "--min-rate",
            "64K",
            "--rate-window",
            "1",
            "--json",
            env=home,
        )
    text = err.decode()
    assert code == 1, text
    fail = next(line for line in text.splitlines() if line.startswith("FAIL"))
    assert fail.startswith("FAIL: transfer_rate: fetch: output out.txt fell below the minimum rate")
    assert "64 KiB/s (fewer than 65536 bytes in 1 s)" in fail
    assert re.search(r"; \d+ of \d+ bytes of output out\.txt had moved", fail)
    result = json.loads(stdout)
    assert (result["step"], result["code"]) == ("fetch", "transfer_rate")
    assert not out.exists() and staging(out) == []
    # The task was kept for a later fetch, and the CLI said how.
    [record] = records(home)
    task_id = record.stem
    assert result["task_id"] == task_id
    assert f"golem-graphene fetch {task_id} --out DIR" in text
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    # ... straight from the provider this time: every check again, all or nothing.
    code, _, err = await golem_graphene(
        "fetch",
        task_id,
        "--out",
        out,
        "--provider",
        provider.url,
        "-i",
        identity,
        "--trust-simulated-root",
        provider.template.root_fingerprint,
        env=home,
    )
    assert code == 0, err.decode()
    assert (out / "out.txt").read_bytes() == data.read_bytes()
    assert records(home) == []
    assert f"OK: task {task_id} verified" in err.decode()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
async def test_a_signal_during_the_download_leaves_no_plaintext(
    provider: ThreadProvider, tmp_path: Path, identity: Path, home: dict[str, str], sig: int
) -> None:
    """SIGTERM (what ``timeout``, systemd and CI send) and SIGHUP clean up as SIGINT does (one
    mechanism, the one of every command: the main task is cancelled): the outputs decrypted so
    far (not yet confirmed by the whole receipt check) are removed."""
    data = tmp_path / "data.txt"
    data.write_bytes(os.urandom(200_000))
    out = tmp_path / "out"
    proxy = TamperingProxy(provider.url, stall={"/outputs/stderr.age": 40})
    async with proxy.running():
        proc = await start_cli(
            *_real_args(provider, proxy.url, identity, data, out), "--json", env=home
        )
        await asyncio.wait_for(proxy.stalled.wait(), 120)
        # out.txt is decrypted by now, waiting in the private staging folder for the rest.
        [folder] = staging(out)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert data.read_bytes() in [p.read_bytes() for p in folder.rglob("out.txt")]
        proc.send_signal(sig)
        stdout, err = await asyncio.wait_for(proc.communicate(), 60)
    # One convention for every command (issue 14 items 8 and 12): 128 + the signal's number.
    assert proc.returncode == 128 + sig, err.decode()
    assert staging(out) == [] and not out.exists()
    assert f"interrupted ({signal.Signals(sig).name})" in err.decode()
    [record] = records(home)
    assert f"golem-graphene fetch {record.stem}" in err.decode()
    result = json.loads(stdout)
    assert (result["verdict"], result["code"], result["task_id"]) == (
        "fail",
        "interrupted",
        record.stem,
    )


async def test_sigkill_leaves_plaintext_only_in_the_private_staging_swept_by_the_next_fetch(
    provider: ThreadProvider, tmp_path: Path, identity: Path, home: dict[str, str]
) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes(os.urandom(200_000))
    out = tmp_path / "out"
    proxy = TamperingProxy(provider.url, stall={"/outputs/stderr.age": 40})
    async with proxy.running():
        proc = await start_cli(*_real_args(provider, proxy.url, identity, data, out), env=home)
        await asyncio.wait_for(proxy.stalled.wait(), 120)
        proc.kill()
        await proc.wait()
    [left] = staging(out)  # a crash cannot clean up: private, and only until the next command
    assert stat.S_IMODE(left.stat().st_mode) == 0o700
    assert not out.exists()
    [record] = records(home)
    code, _, err = await golem_graphene(
        "fetch",
        record.stem,
        "--out",
        out,
        "--provider",
        provider.url,  # the proxy is gone
        "-i",
        identity,
        "--trust-simulated-root",
        provider.template.root_fingerprint,
        env=home,
    )
    assert code == 0, err.decode()
    assert staging(out) == []  # swept: its owner is gone
    assert (out / "out.txt").read_bytes() == data.read_bytes()


async def test_a_receipt_with_a_duplicated_key_is_refused(
    provider: ThreadProvider, tmp_path: Path, identity: Path, home: dict[str, str]
) -> None:
    """The signed receipt says exit status 0; a bogus 1 placed first would be read by any
    parser that keeps the first value. The bundle is refused as malformed, by run and SDK."""

    def duplicate(body: bytes) -> bytes:
        assert body.count(b'"exit_status":0') == 1
        return body.replace(b'"exit_status":0', b'"exit_status":1,"exit_status":0')

    data = tmp_path / "data.txt"
    data.write_bytes(b"hello\n")
    proxy = TamperingProxy(provider.url, rewrite={"/outputs/receipt.json": duplicate})
    async with proxy.running():
        code, _, err = await golem_graphene(
            *_real_args(provider, proxy.url, identity, data, tmp_path / "out"), env=home
        )
        channel = HttpChannel(proxy.url, token=TOKEN_A)
        async with Requestor(
            channel, identity=X25519Identity.generate(), policy=provider.template.policy()
        ) as r:
            with pytest.raises(TaskStepError) as caught:
                await r.run(provider.specs_dir / SHELL, {"data.txt": data}, tmp_path / "sdk")
    assert code == 1
    assert "FAIL: receipt_format: fetch: invalid ReceiptBundle: duplicate object key" in (
        err.decode()
    )
    assert (caught.value.step, caught.value.code) == ("fetch", "receipt_format")
    assert not (tmp_path / "out").exists() and not (tmp_path / "sdk").exists()


# --- helpers ------------------------------------------------------------------------------------


def _spec(tmp_path: Path) -> Path:
    """A spec the fake provider never looks at (one required input)."""
    from _hostile_support import SHELL_SPEC
    from _test_images import write_shell_spec

    return write_shell_spec(tmp_path / "spec", SHELL_SPEC)


def _run_args(spec: Path, url: str, identity: Path, out: Path) -> list[str | Path]:
    """``run`` against a fake provider: the measurement pinned (nothing to measure)."""
    return [
        "run",
        spec,
        "--provider",
        url,
        "--input",
        f"data.txt={spec / 'task.toml'}",
        "--out",
        out,
        "-i",
        identity,
        "--mrenclave",
        "00" * 32,
    ]


def _real_args(
    provider: ThreadProvider, url: str, identity: Path, data: Path, out: Path
) -> list[str | Path]:
    """``run`` of the shell spec (its output is its input) on the real provider at ``url``."""
    return [
        "run",
        provider.specs_dir / SHELL,
        "--provider",
        url,
        "--input",
        f"data.txt={data}",
        "--out",
        out,
        "-i",
        identity,
        "--trust-simulated-root",
        provider.template.root_fingerprint,
        "--mrenclave",
        provider.template.mrenclave,
    ]


# --- a provider a script can start: its bound address ------------------------------------------


async def test_provider_says_where_it_listens(tmp_path: Path, template: Any) -> None:
    """``--port 0``: the bound address in one JSON line on stdout, and in ``--ready-file``
    (removed at shutdown)."""
    import aiohttp

    data = template.copy_to(tmp_path / "data")
    ready = tmp_path / "ready.json"
    proc = await start_cli(
        "provider",
        "serve",
        "--open",
        "--port",
        "0",
        "--data-dir",
        data,
        "--specs-dir",
        template.specs_dir,
        "--ready-file",
        ready,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        announced = json.loads(line)
        assert announced == json.loads(ready.read_text())
        assert announced["event"] == "listening"
        assert announced["port"] > 0 and announced["url"].endswith(f":{announced['port']}")
        assert announced["runner"] == "sim"
        assert announced["simulation_root"] == template.root_fingerprint
        async with (
            aiohttp.ClientSession() as http,
            http.get(announced["url"] + "/v1/openapi.json") as response,
        ):
            assert response.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert not ready.exists()
