"""API fuzzing: schemathesis over the published OpenAPI document, against a running provider.

Every operation is driven with schema-valid and schema-violating requests (schemathesis'
positive and negative modes), on unknown task ids and on real tasks of this provider; every
response must be a documented status with a body matching its schema, never a 5xx, and the
provider must log no unhandled exception. Hypothesis then drives each request model directly:
the create-task body, the sealed input manifest, input and output names, and the tokens.

Schemathesis' ``positive_data_acceptance`` check is left out: it expects a 2xx for every
schema-valid request, but a valid-looking task id, spec digest or recipient key is almost never
a real one (and a bech32 checksum is beyond JSON Schema), so the documented 4xx is right there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
import structlog
from _hostile_support import (
    TOKEN_A,
    ThreadProvider,
    auth,
    create_body,
    raw_request,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_graphene.errors import Error
from golem_graphene.protocol.binding import Transcript
from golem_graphene.protocol.messages import CreateTaskRequest, ErrorBody
from golem_graphene.protocol.names import validate_file_name
from golem_graphene.provider.api import build_app
from golem_graphene.provider.openapi import openapi_document
from golem_graphene.requestor.channel import TaskRef
from golem_graphene.sealing.input_manifest import (
    InputEntry,
    InputManifest,
    InputManifestAuthError,
    InputManifestFormatError,
    open_manifest,
    seal_manifest,
)
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient

SETTINGS = settings(
    max_examples=int(os.environ.get("HOSTILE_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

schema = schemathesis.openapi.from_dict(openapi_document())
EXCLUDED = [schemathesis.checks.positive_data_acceptance]
# Operations that would end the shared real tasks; they run on unknown ids only.
ENDING = {
    "POST /v1/tasks/{task_id}/start",
    "POST /v1/tasks/{task_id}/cancel",
    "DELETE /v1/tasks/{task_id}",
}


@pytest.fixture(scope="module")
def logged() -> Iterator[dict[str, list[Any]]]:
    """Everything the provider logs (structlog events, stdlib records) during this module."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger().addHandler(handler)
    with structlog.testing.capture_logs() as events:
        yield {"events": events, "records": records}
    logging.getLogger().removeHandler(handler)


@pytest.fixture
def no_unhandled(logged: dict[str, list[Any]]) -> Iterator[None]:
    """Fails the test if the provider logged an unhandled exception while it ran."""
    start_events, start_records = len(logged["events"]), len(logged["records"])
    yield
    events = logged["events"][start_events:]
    records = logged["records"][start_records:]
    crashes = [e for e in events if e.get("log_level") in ("error", "critical")]
    crashes += [e for e in events if e.get("event") == "unhandled error in a request"]
    assert crashes == [], crashes[:3]
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert errors == [], errors[:3]


@pytest.fixture(scope="module")
def real_tasks(
    provider: ThreadProvider, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, TaskRef]:
    """A done task and an attested one (inputs not sent), both of requestor A."""
    import asyncio

    data = tmp_path_factory.mktemp("fuzz") / "data.txt"
    data.write_bytes(b"fuzz\n")

    async def make() -> dict[str, TaskRef]:
        async with provider.requestor(TOKEN_A) as requestor:
            created = await requestor.create(provider.specs_dir / "shell")
            attested = await requestor.attest(created)
            await requestor.send_inputs(attested, {"data.txt": data})
            await requestor.start(attested)
            await requestor.wait(attested)
            waiting = await requestor.attest(await requestor.create(provider.specs_dir / "shell"))
            return {"done": attested.ref, "attested": waiting.ref}

    return asyncio.run(make())


def test_the_published_document_is_the_one_fuzzed(provider: ThreadProvider) -> None:
    status, content_type, body = raw_request(provider.url, "GET", "/v1/openapi.json")
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body) == json.loads(json.dumps(openapi_document()))
    # Every route the provider serves is documented, and nothing else.
    documented = {
        (method.upper(), path)
        for path, item in json.loads(body)["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = {
        (route.method, route.resource.canonical)
        for route in build_app(provider.engine).router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert documented == served - {("GET", "/v1/openapi.json")}


@schema.parametrize()
@SETTINGS
def test_api_on_unknown_tasks(case: Any, provider: ThreadProvider, no_unhandled: None) -> None:
    case.call_and_validate(base_url=provider.url, headers=auth(TOKEN_A), excluded_checks=EXCLUDED)


@pytest.mark.sandbox
@pytest.mark.usefixtures("sandbox_ok")
@schema.parametrize()
@SETTINGS
def test_api_on_real_tasks(
    case: Any, provider: ThreadProvider, real_tasks: dict[str, TaskRef], no_unhandled: None
) -> None:
    negative = case.meta is not None and case.meta.generation.mode.is_negative
    if (
        not negative
        and "task_id" in (case.path_parameters or {})
        and case.operation.label not in ENDING
    ):
        writes = case.method.upper() == "PUT"
        ref = real_tasks["attested" if writes else "done"]
        case.path_parameters["task_id"] = ref.task_id
        headers = auth(TOKEN_A, ref.token)
    else:
        headers = auth(TOKEN_A)
    case.call_and_validate(base_url=provider.url, headers=headers, excluded_checks=EXCLUDED)


# --- hypothesis, one request model at a time ---------------------------------------------------

hex32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
recipients = st.binary(min_size=32, max_size=32).map(
    lambda raw: X25519Recipient.from_public_bytes(raw).to_string()
)
spec_names = st.one_of(
    st.just("shell"), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)
)
create_requests = st.fixed_dictionaries(
    {"spec_name": spec_names, "spec_digest": hex32, "requestor_key": recipients, "nonce": hex32}
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


def _post_task(provider: ThreadProvider, body: bytes, token: str = TOKEN_A) -> tuple[int, Any]:
    status, content_type, raw = raw_request(
        provider.url,
        "POST",
        "/v1/tasks",
        body,
        {**auth(token), "Content-Type": "application/json"},
    )
    assert status < 500, raw[:300]
    assert content_type.startswith("application/json"), (status, content_type)
    return status, json.loads(raw)


def _error_body(obj: Any) -> None:
    ErrorBody.from_obj(obj)  # the documented error schema, strictly


@SETTINGS
@given(body=create_requests)
def test_create_request_model_valid_bodies(
    body: dict[str, str], provider: ThreadProvider, no_unhandled: None
) -> None:
    parsed = CreateTaskRequest.from_json(json.dumps(body))
    assert CreateTaskRequest.from_json(parsed.to_json()) == parsed
    status, answer = _post_task(provider, json.dumps(body).encode())
    # A random digest is never the provider's: unknown spec, or a spec that differs.
    assert status in (400, 404), answer
    _error_body(answer)
    assert answer["code"] == ("protocol" if body["spec_name"] == "shell" else "not_found")


@SETTINGS
@given(
    base=create_requests,
    drop=st.sampled_from(["", "spec_name", "spec_digest", "requestor_key", "nonce"]),
    extra=st.dictionaries(st.text(min_size=1), json_values, max_size=2),
    replace=st.dictionaries(
        st.sampled_from(["spec_name", "spec_digest", "requestor_key", "nonce", "protocol"]),
        json_values,
        max_size=2,
    ),
)
def test_create_request_model_mutated_bodies(
    base: dict[str, Any],
    drop: str,
    extra: dict[str, Any],
    replace: dict[str, Any],
    provider: ThreadProvider,
    no_unhandled: None,
) -> None:
    body = {**base, **extra, **replace}
    body.pop(drop, None)
    text = json.dumps(body)
    try:
        CreateTaskRequest.from_json(text)
        valid = True
    except Error as exc:
        assert exc.code == "protocol"
        valid = False
    status, answer = _post_task(provider, text.encode())
    _error_body(answer)
    assert status in ((400, 404) if valid else (400,)), answer


@SETTINGS
@given(raw=st.binary(max_size=2048) | json_values.map(lambda v: json.dumps(v).encode()))
def test_create_request_model_arbitrary_bytes(
    raw: bytes, provider: ThreadProvider, no_unhandled: None
) -> None:
    try:
        CreateTaskRequest.from_json(raw)
    except Error as exc:
        assert exc.code == "protocol"
    status, answer = _post_task(provider, raw)
    assert status in (400, 404), answer
    _error_body(answer)


def _transcript(task_id: bytes, requestor: X25519Identity, enclave: X25519Identity) -> Transcript:
    return Transcript(
        task_id=task_id,
        nonce=b"\x01" * 32,
        enclave_key=enclave.recipient().public_bytes(),
        signing_key=b"\x02" * 32,
        requestor_key=requestor.recipient().public_bytes(),
    )


names = st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=40)
entries = st.builds(
    InputEntry,
    name=names.filter(lambda n: n[0].isalnum()),  # the rule of protocol/names.py
    size=st.integers(0, 2**53 - 1),
    ciphertext_size=st.integers(0, 2**53 - 1),
    ciphertext_sha256=st.binary(min_size=32, max_size=32),
)
args_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20
)


@SETTINGS
@given(
    task_id=st.binary(min_size=16, max_size=16),
    args=st.lists(args_text, max_size=5),
    env=st.dictionaries(args_text.filter(lambda k: k and "=" not in k), args_text, max_size=3),
    inputs=st.lists(entries, max_size=4, unique_by=lambda e: e.name),
)
def test_input_manifest_model_round_trips_sealed(
    task_id: bytes, args: list[str], env: dict[str, str], inputs: list[InputEntry]
) -> None:
    manifest = InputManifest(task_id=task_id, args=tuple(args), env=env, inputs=tuple(inputs))
    assert InputManifest.from_json(manifest.canonical_bytes()) == manifest
    requestor, enclave = X25519Identity.generate(), X25519Identity.generate()
    transcript = _transcript(task_id, requestor, enclave)
    sealed = seal_manifest(manifest, requestor, transcript.enclave_key, transcript)
    opened = open_manifest(sealed, enclave, transcript.requestor_key, transcript)
    assert opened == manifest


@SETTINGS
@given(data=st.data())
def test_input_manifest_model_refuses_anything_else(data: st.DataObject) -> None:
    requestor, enclave = X25519Identity.generate(), X25519Identity.generate()
    transcript = _transcript(b"\x03" * 16, requestor, enclave)
    manifest = InputManifest(task_id=transcript.task_id, args=("a",))
    sealed = seal_manifest(manifest, requestor, transcript.enclave_key, transcript)
    index = data.draw(st.integers(0, len(sealed) - 1))
    flipped = bytearray(sealed)
    flipped[index] ^= data.draw(st.integers(1, 255))
    candidates = [
        bytes(flipped),
        data.draw(st.binary(max_size=512)),
        json.dumps(data.draw(json_values)).encode(),
    ]
    for candidate in candidates:
        with pytest.raises((InputManifestFormatError, InputManifestAuthError)):
            open_manifest(candidate, enclave, transcript.requestor_key, transcript)
    with contextlib.suppress(InputManifestFormatError):  # and nothing else escapes
        InputManifest.from_json(json.dumps(data.draw(json_values)))


published_name = schema.raw_schema["paths"]["/v1/tasks/{task_id}/inputs/{name}"]["parameters"][1][
    "schema"
]["pattern"]


@pytest.mark.sandbox
@pytest.mark.usefixtures("sandbox_ok")
@SETTINGS
@given(name=st.text(min_size=1, max_size=160))
def test_input_and_output_names(
    name: str, provider: ThreadProvider, real_tasks: dict[str, TaskRef], no_unhandled: None
) -> None:
    import re

    try:
        accepted = validate_file_name(name, "input name")
    except ValueError:
        accepted = None
    if accepted is not None:  # every accepted name is a plain, published-pattern name
        assert re.fullmatch(published_name, accepted) and ".." not in accepted.split("/")
    path_name = quote(name.encode("utf-8", "surrogatepass"), safe="")
    attested, done = real_tasks["attested"], real_tasks["done"]
    status, content_type, body = raw_request(
        provider.url,
        "PUT",
        f"/v1/tasks/{attested.task_id}/inputs/{path_name}",
        b"x",
        auth(TOKEN_A, attested.token),
    )
    assert content_type.startswith("application/json"), (name, status)
    if accepted == "data.txt":
        assert status == 201
    else:
        assert status in (400, 404, 405), (name, status, body[:200])
    status, content_type, body = raw_request(
        provider.url,
        "GET",
        f"/v1/tasks/{done.task_id}/outputs/{path_name}",
        None,
        auth(TOKEN_A, done.token),
    )
    assert status in (200, 400, 404), (name, status)
    if status == 200:
        assert name in ("receipt.json", "stdout.age", "stderr.age", "out.txt.age")


header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=80,
)


@SETTINGS
@given(authorization=header_text, task_token=header_text)
def test_tokens(
    authorization: str, task_token: str, provider: ThreadProvider, no_unhandled: None
) -> None:
    value = authorization.strip() or "x"
    status, _, body = raw_request(provider.url, "GET", "/v1/specs", None, {"Authorization": value})
    assert status == 401, body[:200]
    assert json.loads(body)["code"] == "unauthorized"
    for token in (f"Bearer {value}", f"Bearer {TOKEN_A}"):
        status, _, body = raw_request(
            provider.url,
            "GET",
            "/v1/tasks/" + "0" * 32,
            None,
            {"Authorization": token, "X-Task-Token": task_token.strip() or "x"},
        )
        wanted = 404 if token.endswith(TOKEN_A) else 401
        assert status == wanted, body[:200]


@pytest.mark.sandbox
@pytest.mark.usefixtures("sandbox_ok")
def test_create_request_example_is_accepted(provider: ThreadProvider) -> None:
    """The positive control of the model tests: the right digest is accepted (then deleted)."""
    status, answer = _post_task(provider, json.dumps(create_body(provider.specs_dir)).encode())
    assert status == 201, answer
    path = f"/v1/tasks/{answer['task_id']}"
    status, _, _ = raw_request(
        provider.url, "DELETE", path, None, auth(TOKEN_A, answer["capability_token"])
    )
    assert status == 204
