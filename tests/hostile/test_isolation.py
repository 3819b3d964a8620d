"""Isolation between tasks and requestors: scoped tokens, constant-time checks, no leaked secret.

A task's capability token opens that task only, and only together with the requestor token of
the requestor who created it; another requestor's task does not even exist for you (404, the
same answer as an unknown id). Every refused attempt leaves the victim task intact: it still
runs to completion afterwards with the inputs its owner uploaded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from _hostile_support import (
    TOKEN_A,
    TOKEN_B,
    ThreadProvider,
    auth,
    create_raw,
    wait_state,
)

from golem_graphene.requestor.client import AttestedTask, Requestor

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("sandbox_ok")]

# Every operation on a task, with a body where it takes one.
OPERATIONS: list[tuple[str, str, bytes | None]] = [
    ("GET", "", None),
    ("GET", "/evidence", None),
    ("PUT", "/inputs/data.txt", b"overwritten by an attacker"),
    ("PUT", "/manifest", b'{"v": 1}'),
    ("POST", "/start", None),
    ("GET", "/events", None),
    ("GET", "/outputs", None),
    ("GET", "/outputs/stdout.age", None),
    ("GET", "/receipt", None),
    ("POST", "/cancel", None),
    ("DELETE", "", None),
]


async def _call(
    session: aiohttp.ClientSession,
    url: str,
    method: str,
    task_id: str,
    suffix: str,
    body: bytes | None,
    headers: dict[str, str],
) -> tuple[int, dict[str, Any]]:
    async with session.request(
        method, f"{url}/v1/tasks/{task_id}{suffix}", data=body, headers=headers
    ) as response:
        assert response.content_type == "application/json", (method, suffix, response.status)
        return response.status, await response.json()


async def _prepared(requestor: Requestor, provider: ThreadProvider, data: Path) -> AttestedTask:
    """A task with its inputs and manifest uploaded, not started yet."""
    created = await requestor.create(provider.specs_dir / "shell")
    attested = await requestor.attest(created)
    await requestor.send_inputs(attested, {"data.txt": data})
    return attested


def _io_files(provider: ThreadProvider, task_id: str) -> dict[str, str]:
    io = provider.data_dir / "tasks" / task_id / "launch" / "io"
    return {
        str(p.relative_to(io)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(io.rglob("*"))
        if p.is_file()
    }


async def test_tokens_are_scoped_to_their_task_and_requestor(
    provider: ThreadProvider, tmp_path: Path
) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes(b"victim data\n" * 100)
    async with (
        provider.requestor(TOKEN_A) as owner,
        aiohttp.ClientSession() as http,
    ):
        victim = await _prepared(owner, provider, data)
        sibling = await _prepared(owner, provider, data)  # the same requestor's other task
        theirs_id, theirs_token = await create_raw(http, provider.url, provider.specs_dir, TOKEN_B)
        vid, vtoken = victim.ref.task_id, victim.ref.token
        before = _io_files(provider, vid)
        unknown = secrets.token_hex(16)

        for method, suffix, body in OPERATIONS:
            what = f"{method} {suffix or '/'}"
            # Another requestor, even holding the victim's own capability token: not found,
            # exactly like a task id that does not exist.
            for token in (vtoken, theirs_token):
                status, err = await _call(
                    http, provider.url, method, vid, suffix, body, auth(TOKEN_B, token)
                )
                assert (status, err["code"]) == (404, "not_found"), what
            status, err = await _call(
                http, provider.url, method, unknown, suffix, body, auth(TOKEN_B, vtoken)
            )
            assert (status, err["code"]) == (404, "not_found"), what
            # The owner with the wrong capability (its other task's, or none): forbidden.
            for headers in (auth(TOKEN_A, sibling.ref.token), auth(TOKEN_A), auth(TOKEN_A, "")):
                status, err = await _call(http, provider.url, method, vid, suffix, body, headers)
                assert (status, err["code"]) == (403, "forbidden"), what
            # No requestor token, or a wrong one: unauthenticated.
            for headers in (
                {"X-Task-Token": vtoken},
                {"Authorization": f"Bearer {TOKEN_A}x", "X-Task-Token": vtoken},
                {"Authorization": TOKEN_A, "X-Task-Token": vtoken},
            ):
                status, err = await _call(http, provider.url, method, vid, suffix, body, headers)
                assert (status, err["code"]) == (401, "unauthorized"), what
            # The other requestor's own task is not reachable with the victim's token either.
            status, err = await _call(
                http, provider.url, method, theirs_id, suffix, body, auth(TOKEN_A, vtoken)
            )
            assert (status, err["code"]) == (404, "not_found"), what

        # Nothing of the victim changed: same files, same state, and it runs to the end.
        assert _io_files(provider, vid) == before
        status = await wait_state(http, provider.url, vid, vtoken, {"attested"})
        assert status["state"] == "attested"
        await owner.start(victim)
        await owner.wait(victim)
        result = await owner.fetch(victim, tmp_path / "out")
        assert result.outputs["out.txt"].read_bytes() == data.read_bytes()
        for ref, token in ((sibling.ref, TOKEN_A), (victim.ref, TOKEN_A)):
            async with http.delete(
                f"{provider.url}/v1/tasks/{ref.task_id}", headers=auth(token, ref.token)
            ) as response:
                assert response.status == 204
        async with http.delete(
            f"{provider.url}/v1/tasks/{theirs_id}", headers=auth(TOKEN_B, theirs_token)
        ) as response:
            assert response.status == 204


async def test_token_checks_are_constant_time(
    provider: ThreadProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both tokens are compared (as SHA-256 digests) with hmac.compare_digest, also when wrong."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    async with aiohttp.ClientSession() as http:
        task_id, token = await create_raw(http, provider.url, provider.specs_dir)
        stored = hashlib.sha256(token.encode()).hexdigest()
        monkeypatch.setattr(hmac, "compare_digest", spy)
        wrong = secrets.token_urlsafe(32)
        for task_token, wanted in ((token, 200), (wrong, 403)):
            async with http.get(
                f"{provider.url}/v1/tasks/{task_id}", headers=auth(TOKEN_A, task_token)
            ) as response:
                assert response.status == wanted
        async with http.get(
            f"{provider.url}/v1/specs", headers={"Authorization": "Bearer " + "z" * 40}
        ) as response:
            assert response.status == 401
        monkeypatch.undo()
        async with http.delete(
            f"{provider.url}/v1/tasks/{task_id}", headers=auth(TOKEN_A, token)
        ) as response:
            assert response.status == 204
    digest = hashlib.sha256
    compared = {frozenset((str(a), str(b))) for a, b in calls}
    # The task token, right and wrong, against the stored digest.
    assert frozenset((digest(token.encode()).hexdigest(), stored)) in compared
    assert frozenset((digest(wrong.encode()).hexdigest(), stored)) in compared
    # A wrong requestor token is compared against every configured one (no early exit).
    bad = digest(("z" * 40).encode()).hexdigest()
    for known in (TOKEN_A, TOKEN_B):
        assert frozenset((bad, digest(known.encode()).hexdigest())) in compared


async def test_no_secret_in_logs_errors_events_or_at_rest(
    provider: ThreadProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = "not-a-real-token-" + secrets.token_urlsafe(24)
    data = tmp_path / "data.txt"
    data.write_bytes(b"plaintext that only the enclave sees\n")
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logged:
        async with provider.requestor(TOKEN_A) as owner, aiohttp.ClientSession() as http:
            attested = await _prepared(owner, provider, data)
            ref = attested.ref
            await owner.start(attested)
            await owner.wait(attested)
            await owner.fetch(attested, tmp_path / "out")
            # Refused attempts carrying secrets (the real ones in the wrong place, and fakes).
            attempts = [
                auth(TOKEN_B, ref.token),
                auth(TOKEN_A, fake),
                {"Authorization": f"Bearer {fake}", "X-Task-Token": ref.token},
                {"Authorization": f"Bearer {ref.token}", "X-Task-Token": TOKEN_A},
            ]
            for headers in attempts:
                for method, suffix, body in OPERATIONS:
                    async with http.request(
                        method,
                        f"{provider.url}/v1/tasks/{ref.task_id}{suffix}",
                        data=body,
                        headers=headers,
                    ) as response:
                        assert response.status in (401, 403, 404)
                        seen.append(await response.text())
            async with http.post(
                f"{provider.url}/v1/tasks",
                data=json.dumps({"spec_name": fake}),
                headers=auth(TOKEN_A),
            ) as response:
                assert response.status == 400
                seen.append(await response.text())
            for suffix in ("", "/events", "/outputs"):
                async with http.get(
                    f"{provider.url}/v1/tasks/{ref.task_id}{suffix}",
                    headers=auth(TOKEN_A, ref.token),
                ) as response:
                    assert response.status == 200
                    seen.append(await response.text())
            status = json.loads(seen[-3])
            assert set(status) >= {"task_id", "state"}
            assert not {"owner", "capability_sha256", "pid"} & set(status)
            at_rest = "\n".join(
                path.read_bytes().decode("latin-1")
                for path in provider.data_dir.rglob("*")
                if path.is_file() and "images" not in path.parts
            )
            assert ref.task_id in at_rest  # the task's record was scanned
            await owner.channel.delete(ref)
    assert not (provider.data_dir / "tasks" / ref.task_id).exists()
    assert any(e.get("event") == "task created" for e in logged), "the provider's log was not seen"
    places = {
        "provider and requestor logs (structlog)": "\n".join(map(repr, logged)),
        "stdlib logs": caplog.text,
        "responses, errors and the event stream": "\n".join(seen),
        "the provider's data folder": at_rest,
    }
    for where, text in places.items():
        for name, secret in (
            ("requestor token A", TOKEN_A),
            ("requestor token B", TOKEN_B),
            ("capability token", ref.token),
            ("fake token", fake),
            ("plaintext", "plaintext that only the enclave sees"),
        ):
            assert secret not in text, f"{name} appears in {where}"
    assert "age-secret-key" not in places["provider and requestor logs (structlog)"].lower()
