"""The provider's HTTP API through aiohttp's test client, with a fake enclave runner.

Authentication (401 without or with a wrong requestor token, 403 with a wrong task token, 404
for another requestor's task), JSON error bodies with stable codes, body and upload limits
(413), the concurrency limit (429) and calls the task's state does not allow (409).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _provider_fakes import FakeRunner, make_engine
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from golem_graphene.protocol.spec import spec_digest
from golem_graphene.provider.api import build_app
from golem_graphene.provider.engine import TaskEngine
from golem_graphene.sealing.keys import X25519Identity

ALICE = "alice-requestor-token-0123456789abcdef"
BOB = "bob-requestor-token-0123456789abcdef0"
CODE = re.compile(r"^[a-z0-9_]{1,64}$")


class Api:
    """A test client for one engine, with the request shapes the tests use."""

    def __init__(self, client: TestClient[Any, Any], engine: TaskEngine, runner: FakeRunner):
        self.client = client
        self.engine = engine
        self.runner = runner

    def auth(self, token: str | None = ALICE, task: dict[str, Any] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if task is not None:
            headers["X-Task-Token"] = task["capability_token"]
        return headers

    def create_body(self) -> dict[str, Any]:
        return {
            "spec_name": "echo",
            "spec_digest": spec_digest(self.engine.spec_path("echo")),
            "requestor_key": X25519Identity.generate().recipient().to_string(),
            "nonce": "00" * 32,
        }

    async def create(self, token: str = ALICE) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/tasks", json=self.create_body(), headers=self.auth(token)
        )
        assert response.status == 201, await response.text()
        task: dict[str, Any] = await response.json()
        return task

    async def state(self, task: dict[str, Any]) -> str:
        response = await self.client.get(
            f"/v1/tasks/{task['task_id']}", headers=self.auth(task=task)
        )
        record = await response.json()
        return str(record["state"])

    async def until(self, task: dict[str, Any], state: str) -> None:
        for _ in range(500):
            if await self.state(task) == state:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the task never became {state}")


async def error_of(response: ClientResponse, status: int) -> str:
    """The error code of ``response``, after checking the status and the body's shape."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"code", "message"}
    assert CODE.fullmatch(body["code"]), body
    assert body["message"]
    return str(body["code"])


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[MakeApi]:
    clients: list[tuple[TestClient[Any, Any], TaskEngine]] = []

    async def make(mode: str = "attest", **limits: Any) -> Api:
        runner = FakeRunner(mode)
        engine = make_engine(
            tmp_path / f"provider-{len(clients)}",
            runner,
            limits=limits,
            auth={"tokens": [ALICE, BOB]},
        )
        client = TestClient(TestServer(build_app(engine)))
        await client.start_server()
        clients.append((client, engine))
        return Api(client, engine, runner)

    yield make
    for client, engine in clients:
        await engine.close()
        await client.close()


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()


# --- open endpoints -----------------------------------------------------------------------------


async def test_health_and_openapi_need_no_token(api: Api) -> None:
    response = await api.client.get("/v1/health")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"
    response = await api.client.get("/v1/openapi.json")
    document = await response.json()
    assert "/v1/tasks/{task_id}/inputs/{name}" in document["paths"]


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {ALICE}"}],
    ids=["missing", "wrong", "not-bearer"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/specs"), ("POST", "/v1/tasks"), ("GET", "/v1/tasks/" + "0" * 32)],
)
async def test_requestor_token_is_required(
    api: Api, headers: dict[str, str], method: str, path: str
) -> None:
    response = await api.client.request(method, path, headers=headers, json={})
    assert await error_of(response, 401) == "unauthorized"
    assert "Authorization: Bearer" in (await response.json())["message"]


async def test_specs_are_listed_with_their_digests(api: Api) -> None:
    response = await api.client.get("/v1/specs", headers=api.auth())
    assert (await response.json())["specs"] == [
        {"name": "echo", "sha256": spec_digest(api.engine.spec_path("echo"))}
    ]


@pytest.mark.parametrize("token", [None, "x" * 43], ids=["missing", "wrong"])
async def test_task_token_is_required(api: Api, token: str | None) -> None:
    task = await api.create()
    headers = api.auth()
    if token is not None:
        headers["X-Task-Token"] = token
    response = await api.client.get(f"/v1/tasks/{task['task_id']}", headers=headers)
    assert await error_of(response, 403) == "forbidden"


async def test_another_requestors_task_does_not_exist_for_you(api: Api) -> None:
    task = await api.create(ALICE)
    response = await api.client.get(
        f"/v1/tasks/{task['task_id']}", headers=api.auth(BOB, task=task)
    )
    assert await error_of(response, 404) == "not_found"
    response = await api.client.delete(
        f"/v1/tasks/{task['task_id']}", headers=api.auth(BOB, task=task)
    )
    assert await error_of(response, 404) == "not_found"
    assert await api.state(task) != "cancelled"


async def test_unknown_task_is_not_found(api: Api) -> None:
    response = await api.client.get("/v1/tasks/" + "f" * 32, headers=api.auth())
    assert await error_of(response, 404) == "not_found"


# --- JSON errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"spec_digest": "ab" * 32}, 400, "protocol"),
        ({"spec_name": "nope"}, 404, "not_found"),
        ({"nonce": "zz"}, 400, "protocol"),
        ({"requestor_key": "age1notakey"}, 400, "protocol"),
        ({"extra": 1}, 400, "protocol"),
    ],
    ids=["spec-digest", "unknown-spec", "nonce", "recipient", "extra-field"],
)
async def test_bad_create_requests_are_json_errors(
    api: Api, change: dict[str, Any], status: int, code: str
) -> None:
    body = {**api.create_body(), **change}
    response = await api.client.post("/v1/tasks", json=body, headers=api.auth())
    assert await error_of(response, status) == code
    assert api.engine.store.all() == []


async def test_malformed_json_is_a_json_error(api: Api) -> None:
    response = await api.client.post("/v1/tasks", data=b"{not json", headers=api.auth())
    assert await error_of(response, 400) == "protocol"


async def test_a_create_body_with_a_duplicated_key_is_refused(api: Api) -> None:
    """Two ``nonce`` members: the API would bind one, a log or proxy might read the other."""
    body = api.create_body()
    text = json.dumps(body)[:-1] + f', "nonce": "{"00" * 32}"}}'
    response = await api.client.post("/v1/tasks", data=text.encode(), headers=api.auth())
    assert await error_of(response, 400) == "protocol"
    assert api.engine.store.all() == []


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nowhere", 404, "not_found"),
        ("PATCH", "/v1/tasks", 405, "method_not_allowed"),
    ],
)
async def test_routing_errors_are_json(
    api: Api, method: str, path: str, status: int, code: str
) -> None:
    response = await api.client.request(method, path, headers=api.auth())
    assert await error_of(response, status) == code


# --- limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_json_body_is_refused(make_api: MakeApi, chunked: bool) -> None:
    api = await make_api(max_body_bytes=1024)
    payload = b'{"spec_name": "' + b"x" * 2000 + b'"}'

    async def stream() -> AsyncIterator[bytes]:
        yield payload

    response = await api.client.post(
        "/v1/tasks", data=stream() if chunked else payload, headers=api.auth()
    )
    assert await error_of(response, 413) == "body_too_large"


async def test_concurrency_limit_answers_429(make_api: MakeApi) -> None:
    api = await make_api("hang", max_concurrent_tasks=1)
    first = await api.create()
    response = await api.client.post("/v1/tasks", json=api.create_body(), headers=api.auth())
    assert await error_of(response, 429) == "too_many_tasks"
    assert "max_concurrent_tasks" in (await response.json())["message"]
    # A finished task frees its place.
    response = await api.client.post(
        f"/v1/tasks/{first['task_id']}/cancel", headers=api.auth(task=first)
    )
    assert response.status == 200
    assert (await response.json())["state"] == "cancelled"
    await api.create()


async def test_stored_task_limit_answers_429(make_api: MakeApi) -> None:
    api = await make_api("fail", max_queued_tasks=1)
    task = await api.create()
    await api.until(task, "failed")
    response = await api.client.post("/v1/tasks", json=api.create_body(), headers=api.auth())
    assert await error_of(response, 429) == "too_many_stored_tasks"
    response = await api.client.delete(f"/v1/tasks/{task['task_id']}", headers=api.auth(task=task))
    assert response.status == 204
    await api.create()


async def test_oversized_input_is_refused_and_leaves_nothing(api: Api) -> None:
    task = await api.create()
    await api.until(task, "attested")
    url = f"/v1/tasks/{task['task_id']}/inputs/x"
    response = await api.client.put(url, data=b"\0" * 100_000, headers=api.auth(task=task))
    assert await error_of(response, 413) == "input_too_large"

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"\0" * 10_000

    response = await api.client.put(url, data=stream(), headers=api.auth(task=task))
    assert await error_of(response, 413) == "input_too_large"
    inputs = api.engine.io_dir(task["task_id"]) / "inputs"
    assert list(inputs.iterdir()) == []
    response = await api.client.put(url, data=b"\0" * 1000, headers=api.auth(task=task))
    assert response.status == 201
    assert (await response.json()) == {"name": "x", "size": 1000}
    assert [p.name for p in inputs.iterdir()] == ["x.age"]


async def test_an_upload_reaches_the_disk_whole_in_batches(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads are written a batch at a time on a worker thread while the next arrives."""
    monkeypatch.setattr("golem_graphene.provider.api.WRITE_BATCH", 64)
    task = await api.create()
    await api.until(task, "attested")
    data = bytes(range(256)) * 4

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 37):
            yield data[start : start + 37]
            await asyncio.sleep(0)

    response = await api.client.put(
        f"/v1/tasks/{task['task_id']}/inputs/x", data=stream(), headers=api.auth(task=task)
    )
    assert response.status == 201, await response.text()
    assert (await response.json()) == {"name": "x", "size": len(data)}
    inputs = api.engine.io_dir(task["task_id"]) / "inputs"
    assert (inputs / "x.age").read_bytes() == data
    assert [p.name for p in inputs.iterdir()] == ["x.age"]


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [("y", 404, "not_found"), (".x", 400, "protocol"), ("x%2F..", 400, "protocol")],
    ids=["undeclared", "hidden", "traversal"],
)
async def test_input_names_are_checked(api: Api, name: str, status: int, code: str) -> None:
    task = await api.create()
    await api.until(task, "attested")
    response = await api.client.put(
        f"/v1/tasks/{task['task_id']}/inputs/{name}", data=b"x", headers=api.auth(task=task)
    )
    assert await error_of(response, status) == code


# --- state -------------------------------------------------------------------------------------


async def test_calls_the_state_does_not_allow_answer_409(make_api: MakeApi) -> None:
    api = await make_api("hang")
    task = await api.create()
    await api.until(task, "launching")
    base = f"/v1/tasks/{task['task_id']}"
    headers = api.auth(task=task)
    for method, path in [
        ("GET", "/evidence"),
        ("PUT", "/inputs/x"),
        ("PUT", "/manifest"),
        ("POST", "/start"),
        ("GET", "/outputs"),
        ("GET", "/outputs/out.age"),
        ("GET", "/receipt"),
    ]:
        response = await api.client.request(method, base + path, data=b"x", headers=headers)
        assert await error_of(response, 409) == "invalid_state", (method, path)
    assert await api.state(task) == "launching"


async def test_start_needs_the_manifest_and_happens_once(api: Api) -> None:
    task = await api.create()
    await api.until(task, "attested")
    base = f"/v1/tasks/{task['task_id']}"
    headers = api.auth(task=task)
    response = await api.client.get(base + "/evidence", headers=headers)
    assert response.status == 200
    assert (await response.json())["runner"] == "sim"
    response = await api.client.post(base + "/start", headers=headers)
    assert await error_of(response, 409) == "invalid_state"
    response = await api.client.put(base + "/manifest", data=b"{}", headers=headers)
    assert response.status == 201
    response = await api.client.post(base + "/start", headers=headers)
    assert response.status == 202
    assert (await response.json())["state"] == "inputs_received"
    for method, path in [("POST", "/start"), ("PUT", "/inputs/x"), ("PUT", "/manifest")]:
        response = await api.client.request(method, base + path, data=b"x", headers=headers)
        assert await error_of(response, 409) == "invalid_state", (method, path)


async def test_events_stream_ends_with_the_task(api: Api) -> None:
    task = await api.create()
    await api.until(task, "attested")
    base = f"/v1/tasks/{task['task_id']}"
    response = await api.client.post(base + "/cancel", headers=api.auth(task=task))
    assert response.status == 200
    response = await api.client.get(base + "/events?since=0", headers=api.auth(task=task))
    assert response.status == 200
    text = await asyncio.wait_for(response.text(), 20)
    states = re.findall(r'"state": "(\w+)"', text)
    assert states[-1] == "cancelled"
    assert "attested" in states
    response = await api.client.get(base + "/events?since=x", headers=api.auth(task=task))
    assert await error_of(response, 400) == "protocol"


async def test_delete_removes_everything(api: Api) -> None:
    task = await api.create()
    await api.until(task, "attested")
    folder = api.engine.store.directory(task["task_id"])
    assert folder.is_dir()
    response = await api.client.delete(f"/v1/tasks/{task['task_id']}", headers=api.auth(task=task))
    assert response.status == 204
    assert not folder.exists()
    response = await api.client.get(f"/v1/tasks/{task['task_id']}", headers=api.auth(task=task))
    assert await error_of(response, 404) == "not_found"
