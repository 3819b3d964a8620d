"""Hostile input at every step the agent reads: control frames, the workload description, the
sealed manifest and the manifest inside it, the inputs folder, the workload's outputs and the
attestation device. Each gives the typed failure of docs/agent-protocol.md section 4 (exit
status 1, nothing after ``failed``), never a crash, a hang or an echo of the offending bytes.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _native_agent import Conversation, Requestor, Workload, entry_for, frame, outcome, shell
from conftest import StartAgent
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from golem_graphene.canonical_json import canonical_json
from golem_graphene.sealing.age import decrypt_file, encrypt_stream
from golem_graphene.sealing.input_manifest import (
    InputManifest,
    InputManifestFormatError,
    manifest_transcript_hash,
)
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient

MARKER = "ZZMARKERZZ"
ONE_INPUT = shell(
    "true", inputs=[{"name": "in.txt", "max_size": 100, "required": True}], outputs=["*"]
)


def failure(conv: Conversation, code: str) -> dict[str, Any]:
    """Read to the end: a `failed` event with `code`, exit status 1."""
    events, status = conv.agent.finish()
    done = outcome(events)
    assert done["event"] == "failed", done
    assert done["code"] == code, done
    assert status == 1
    assert MARKER not in done["message"]
    return done


# --- control frames ------------------------------------------------------------------------------

ATTEST = {
    "cmd": "attest",
    "task_id": "00" * 16,
    "nonce": "11" * 32,
    "requestor_key": "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
}


def _attest(**changes: Any) -> bytes:
    cmd = {**ATTEST, **changes}
    return frame({k: v for k, v in cmd.items() if v is not None})


HOSTILE_FRAMES: dict[str, bytes] = {
    "not-json": f"attest {MARKER}\n".encode(),
    "array": b'["attest"]\n',
    "string": b'"attest"\n',
    "truncated-object": b'{"cmd":"attest"\n',
    "nested-object": f'{{"cmd":"attest","x":{{"{MARKER}":1}}}}\n'.encode(),
    "nested-array": b'{"cmd":"attest","task_id":[]}\n',
    "duplicate-key": _attest()[:-2] + b',"cmd":"attest"}\n',
    "duplicate-cmd-other-value": b'{"cmd":"attest","cmd":"run"}\n',
    "raw-utf8": f'{{"cmd":"attest","task_id":"{MARKER}\u00e9"}}\n'.encode(),
    "raw-tab": b'{"cmd":\t"attest"}\n',
    "raw-nul": b'{"cmd":"attest"\x00}\n',
    "carriage-return": _attest()[:-1] + b"\r\n",
    "unknown-command": f'{{"cmd":"{MARKER}"}}\n'.encode(),
    "no-cmd": f'{{"task_id":"{MARKER}"}}\n'.encode(),
    "cmd-not-string": b'{"cmd":1}\n',
    "run-before-attest": b'{"cmd":"run"}\n',
    "missing-key": _attest(nonce=None),
    "extra-key": _attest(extra=MARKER),
    "extra-unprintable-key": _attest(**{f"\u00e9{MARKER}": 1}),
    "task-id-uppercase": _attest(task_id="AB" * 16),
    "task-id-short": _attest(task_id="00" * 15),
    "task-id-uuid": _attest(task_id="00000000-0000-0000-0000-000000000000"),
    "nonce-not-hex": _attest(nonce="zz" * 32),
    "nonce-number": _attest(nonce=5),
    "key-uppercase": _attest(requestor_key=ATTEST["requestor_key"].upper()),
    "key-bad-checksum": _attest(requestor_key=ATTEST["requestor_key"][:-1] + "p"),
    "key-post-quantum": _attest(requestor_key="age1pq1" + "q" * 60),
    "key-identity": _attest(requestor_key="AGE-SECRET-KEY-1" + "Q" * 58),
    "float": b'{"cmd":"attest","x":1.5}\n',
    "exponent": b'{"cmd":"attest","x":1e3}\n',
    "huge-integer": b'{"cmd":"attest","x":9007199254740992}\n',
    "leading-zero": b'{"cmd":"attest","x":01}\n',
    "lone-surrogate": b'{"cmd":"attest","task_id":"\\ud800"}\n',
    "bad-escape": b'{"cmd":"attest","task_id":"\\x41"}\n',
    "trailing-data": _attest()[:-1] + b" {}\n",
    "trailing-comma": b'{"cmd":"run",}\n',
    "empty-line": b"\n",
}


@pytest.mark.parametrize("data", HOSTILE_FRAMES.values(), ids=HOSTILE_FRAMES.keys())
def test_a_malformed_attest_frame_is_a_control_message_failure(
    start_agent: StartAgent, data: bytes
) -> None:
    conv = start_agent(shell("true"))
    conv.agent.expect("ready")
    conv.agent.send(data)
    failure(conv, "control_message")


def test_a_frame_longer_than_256_kib_is_refused_without_buffering_it(
    start_agent: StartAgent,
) -> None:
    conv = start_agent(shell("true"))
    conv.agent.expect("ready")
    # Exactly at the limit with its line feed is still a frame (and malformed: a long string).
    # 8 + (256 KiB - 11) + 2 + 1 bytes: one more and the agent refuses it before the line feed,
    # and may exit before the last byte is written (a broken pipe here).
    conv.agent.send(b'{"cmd":"' + b"a" * (256 * 1024 - 11) + b'"}\n')
    assert "longer than" not in failure(conv, "control_message")["message"]
    conv = start_agent(shell("true"), name="longer")
    conv.agent.expect("ready")
    with contextlib.suppress(BrokenPipeError):  # the agent stops reading at the limit
        conv.agent.send(b"{" + b" " * (256 * 1024) + b"}\n")
    done = failure(conv, "control_message")
    assert "262144" in done["message"]


def test_a_valid_frame_with_spaces_and_escapes_is_accepted(start_agent: StartAgent) -> None:
    conv = start_agent(shell("true"))
    conv.agent.expect("ready")
    text = json.dumps(conv.requestor.attest(), indent=None, separators=(" , ", " : "))
    escaped = text.replace('"attest"', '"\\u0061ttest"')
    conv.agent.send((" " + escaped + " \n").encode())
    conv.evidence = conv.agent.expect("evidence")
    conv.upload({})
    _, status = conv.run()
    assert status == 0


def test_end_of_input_is_control_closed(start_agent: StartAgent) -> None:
    conv = start_agent(shell("true"))
    conv.agent.expect("ready")
    conv.agent.close_stdin()
    failure(conv, "control_closed")
    conv = start_agent(shell("true"), name="mid-frame")
    conv.agent.expect("ready")
    conv.agent.send(b'{"cmd":"att')
    conv.agent.close_stdin()
    failure(conv, "control_closed")
    conv = start_agent(shell("true"), name="after-evidence")
    conv.to_evidence()
    conv.agent.close_stdin()
    failure(conv, "control_closed")


@pytest.mark.parametrize(
    "second",
    [_attest(), b'{"cmd":"run","x":1}\n', b'{"cmd":"launch"}\n'],
    ids=["attest-again", "run-extra-key", "unknown"],
)
def test_anything_but_run_after_evidence_is_refused(start_agent: StartAgent, second: bytes) -> None:
    conv = start_agent(shell("true"))
    conv.to_evidence()
    conv.agent.send(second)
    failure(conv, "control_message")


def test_commands_after_run_are_never_read(start_agent: StartAgent) -> None:
    conv = start_agent(shell("true"))
    conv.to_evidence()
    conv.upload({})
    conv.agent.send(b'{"cmd":"run"}\n' + b"garbage that is never read\n")
    events, status = conv.agent.finish()
    assert status == 0 and outcome(events)["event"] == "outputs_sealed"


# --- the workload description and the arguments -------------------------------------------------


def _workload(**changes: Any) -> dict[str, Any]:
    base = shell("true", inputs=[{"name": "a", "max_size": 1, "required": True}]).to_json()
    limits = changes.pop("limits", {})
    base["limits"].update(limits)
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


BAD_WORKLOADS: dict[str, bytes | dict[str, Any]] = {
    "not-json": b"{",
    "array": b"[]",
    "duplicate-key": b'{"format":1,"format":1}',
    "float": json.dumps(_workload(limits={"wall_ms": 1.5})).encode(),
    "unknown-key": _workload(extra=1),
    "missing-key": _workload(env=None),
    "format-2": _workload(format=2),
    "relative-program": _workload(argv=["sh", "-c", "true"]),
    "empty-argv": _workload(argv=[]),
    "nul-in-arg": _workload(args=["a\u0000b"]),
    "env-name-with-equals": _workload(env={"A=B": "c"}),
    "env-not-string": _workload(env={"A": 1}),
    "bad-input-name": _workload(inputs=[{"name": "../x", "max_size": 1, "required": True}]),
    "dot-input-name": _workload(inputs=[{"name": ".x", "max_size": 1, "required": True}]),
    "duplicate-input": _workload(
        inputs=[
            {"name": "a", "max_size": 1, "required": True},
            {"name": "a", "max_size": 2, "required": False},
        ]
    ),
    "input-extra-key": _workload(inputs=[{"name": "a", "max_size": 1, "required": True, "x": 1}]),
    "negative-max-size": _workload(inputs=[{"name": "a", "max_size": -1, "required": True}]),
    "required-not-bool": _workload(inputs=[{"name": "a", "max_size": 1, "required": 1}]),
    "bad-pattern": _workload(outputs=["a/b"]),
    "zero-wall": _workload(limits={"wall_ms": 0}),
    "cpu-zero": _workload(limits={"cpu_seconds": 0}),
    "limits-extra": _workload(limits={"wall_seconds": 1}),
    "too-large": b" " * (1024 * 1024 + 1),
}


@pytest.mark.parametrize("workload", BAD_WORKLOADS.values(), ids=BAD_WORKLOADS.keys())
def test_a_malformed_workload_fails_before_ready(
    start_agent: StartAgent, workload: bytes | dict[str, Any]
) -> None:
    data = workload if isinstance(workload, bytes) else json.dumps(workload).encode()
    conv = start_agent(data)
    events, status = conv.agent.finish()
    assert [e["event"] for e in events] == ["failed"]
    assert events[0]["code"] == "workload_format" and status == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["/a", "/b"],
        ["/a", "/b", "/c", "/d"],
        ["rel", "/io", "/ws"],
        ["/no/such/file", "/", "/"],
    ],
    ids=["none", "two", "four", "relative", "missing-workload"],
)
def test_wrong_arguments_fail_before_ready(start_agent: StartAgent, argv: list[str]) -> None:
    conv = start_agent(shell("true"), argv=argv)
    events, status = conv.agent.finish()
    assert [e["event"] for e in events] == ["failed"]
    assert events[0]["code"] == "workload_format" and status == 1


# --- the sealed manifest -------------------------------------------------------------------------


def seal_raw(conv: Conversation, plaintext: bytes, *, aad: bytes | None = None) -> bytes:
    """Seal arbitrary manifest bytes with the real key schedule (what a requestor could send)."""
    assert conv.evidence is not None
    transcript = conv.requestor.transcript(conv.evidence)
    th = manifest_transcript_hash(transcript)
    private = X25519PrivateKey.from_private_bytes(conv.requestor.identity.private_bytes())
    shared = private.exchange(X25519PublicKey.from_public_bytes(transcript.enclave_key))
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=th,
        info=b"golem-graphene/v1/input-manifest-key",
    ).derive(shared)
    nonce = os.urandom(12)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, th if aad is None else aad)
    return canonical_json(
        {
            "v": 1,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(ciphertext).decode(),
        }
    )


def _manifest(conv: Conversation, **changes: Any) -> bytes:
    body: dict[str, Any] = {"task_id": conv.requestor.task_id.hex(), "inputs": []}
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def _entry(name: str = "in.txt", size: int = 3, csize: int = 200, digest: str = "00" * 32) -> Any:
    return {"name": name, "size": size, "ciphertext_size": csize, "ciphertext_sha256": digest}


MANIFEST_FORMAT: dict[str, Any] = {
    "not-json": lambda c: b"{" + MARKER.encode(),
    "not-object": lambda c: b"[]",
    "unknown-key": lambda c: _manifest(c, extra=MARKER),
    "no-task-id": lambda c: _manifest(c, task_id=None),
    "other-task": lambda c: _manifest(c, task_id="ab" * 16),
    "task-id-uppercase": lambda c: _manifest(c, task_id=c.requestor.task_id.hex().upper()),
    "protocol-v2": lambda c: _manifest(c, protocol="golem-graphene/v2"),
    "duplicate-key": lambda c: _manifest(c)[:-1] + b', "inputs": []}',
    "args-not-list": lambda c: _manifest(c, args="x"),
    "arg-with-nul": lambda c: _manifest(c, args=["a\u0000"]),
    "arg-number": lambda c: _manifest(c, args=[1]),
    "env-equals": lambda c: _manifest(c, env={"A=B": "x"}),
    "env-empty-name": lambda c: _manifest(c, env={"": "x"}),
    "too-many-args": lambda c: _manifest(c, args=["a"] * 4097),
    "too-many-env": lambda c: _manifest(c, env={f"V{i}": "x" for i in range(1025)}),
    "args-over-1-mib": lambda c: _manifest(c, args=["x" * 600_000, "y" * 600_000]),
    "lone-surrogate": lambda c: _manifest(c)[:-1] + b', "args": ["\\udc00"]}',
    "bad-utf8": lambda c: _manifest(c)[:-1] + b', "args": ["\xff"]}',
    "float-size": lambda c: _manifest(c, inputs=[{**_entry(), "size": 3.0}]),
    "negative-size": lambda c: _manifest(c, inputs=[_entry(size=-1)]),
    "bool-size": lambda c: _manifest(c, inputs=[{**_entry(), "size": True}]),
    "bad-name": lambda c: _manifest(c, inputs=[_entry(name="../etc")]),
    "duplicate-name": lambda c: _manifest(c, inputs=[_entry(), _entry()]),
    "digest-uppercase": lambda c: _manifest(c, inputs=[_entry(digest="AB" * 32)]),
    "entry-extra-key": lambda c: _manifest(c, inputs=[{**_entry(), "x": 1}]),
    "entry-missing-key": lambda c: _manifest(
        c, inputs=[{k: v for k, v in _entry().items() if k != "size"}]
    ),
    "deep-nesting": lambda c: _manifest(c)[:-1] + b', "env": ' + b"[" * 100 + b"]" * 100 + b"}",
}


# Where the Python model would be laxer than the protocol. None since every JSON document from
# outside goes through the one strict parser (issue 15): duplicate keys are refused on both sides.
PYTHON_ACCEPTS: set[str] = set()


@pytest.mark.parametrize("name", MANIFEST_FORMAT)
def test_the_python_model_refuses_the_same_manifests(name: str) -> None:
    requestor = Requestor()
    data = MANIFEST_FORMAT[name](SimpleNamespace(requestor=requestor))
    try:
        parsed = InputManifest.from_json(data)
    except InputManifestFormatError:
        assert name not in PYTHON_ACCEPTS
        return
    assert name in PYTHON_ACCEPTS or parsed.task_id != requestor.task_id


@pytest.mark.parametrize("make", MANIFEST_FORMAT.values(), ids=MANIFEST_FORMAT.keys())
def test_a_malformed_authenticated_manifest_is_input_manifest_format(
    start_agent: StartAgent, make: Any
) -> None:
    conv = start_agent(ONE_INPUT)
    conv.to_evidence()
    (conv.dirs.io / "inputs").mkdir()
    (conv.dirs.io / "manifest.sealed").write_bytes(seal_raw(conv, make(conv)))
    conv.agent.send({"cmd": "run"})
    failure(conv, "input_manifest_format")


def _sealed_with(sealed: bytes, **changes: str) -> bytes:
    return json.dumps({**json.loads(sealed), **changes}).encode()


SEALED_FORMAT: dict[str, Any] = {
    "not-json": lambda s: b"not json",
    "extra-key": lambda s: s[:-1] + b',"x":1}',
    "version-2": lambda s: s.replace(b'"v":1', b'"v":2'),
    "version-true": lambda s: s.replace(b'"v":1', b'"v":true'),
    "version-float": lambda s: s.replace(b'"v":1', b'"v":1.0'),
    "nonce-with-space": lambda s: json.dumps(
        {**json.loads(s), "nonce": " " + json.loads(s)["nonce"]}
    ).encode(),
    "nonce-short": lambda s: _sealed_with(s, nonce="AAAA"),
    "ciphertext-not-base64": lambda s: json.dumps({**json.loads(s), "ciphertext": "!!!!"}).encode(),
    "ciphertext-noncanonical": lambda s: json.dumps(
        {**json.loads(s), "ciphertext": "AB=="}
    ).encode(),
    "too-large": lambda s: s[:-1] + b"," + b" " * (4 * 1024 * 1024) + b"}",
}


@pytest.mark.parametrize("edit", SEALED_FORMAT.values(), ids=SEALED_FORMAT.keys())
def test_a_malformed_sealed_form_is_input_manifest_format(
    start_agent: StartAgent, edit: Any
) -> None:
    conv = start_agent(ONE_INPUT)
    conv.to_evidence()
    sealed = seal_raw(conv, _manifest(conv))
    (conv.dirs.io / "inputs").mkdir()
    (conv.dirs.io / "manifest.sealed").write_bytes(edit(sealed))
    conv.agent.send({"cmd": "run"})
    failure(conv, "input_manifest_format")


def test_a_manifest_that_does_not_authenticate_is_input_manifest_auth(
    start_agent: StartAgent,
) -> None:
    cases = {
        "flipped": lambda c: _flip(seal_raw(c, _manifest(c))),
        "other-aad": lambda c: seal_raw(c, _manifest(c), aad=b"other transcript"),
        "short": lambda c: canonical_json({"v": 1, "nonce": "A" * 16, "ciphertext": "AAAA"}),
    }
    for name, make in cases.items():
        conv = start_agent(ONE_INPUT, name=name)
        conv.to_evidence()
        (conv.dirs.io / "inputs").mkdir()
        (conv.dirs.io / "manifest.sealed").write_bytes(make(conv))
        conv.agent.send({"cmd": "run"})
        failure(conv, "input_manifest_auth")


def _flip(sealed: bytes) -> bytes:
    obj = json.loads(sealed)
    raw = bytearray(base64.b64decode(obj["ciphertext"]))
    raw[0] ^= 1
    obj["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    return canonical_json(obj)


@pytest.mark.parametrize("kind", ["missing", "symlink", "folder", "fifo"])
def test_the_sealed_manifest_must_be_a_regular_file(start_agent: StartAgent, kind: str) -> None:
    conv = start_agent(ONE_INPUT)
    conv.to_evidence()
    path = conv.dirs.io / "manifest.sealed"
    if kind == "symlink":
        real = conv.dirs.root / "elsewhere"
        real.write_bytes(seal_raw(conv, _manifest(conv)))
        path.symlink_to(real)
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    conv.agent.send({"cmd": "run"})
    failure(conv, "input_manifest_format")


# --- the manifest against the workload ---------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ({"in.txt": b"x", "other": b"y"}, "input_undeclared"),
        ({"in.txt": b"x" * 101}, "input_too_large"),
        ({}, "input_required"),
    ],
    ids=["undeclared", "too-large", "required"],
)
def test_the_manifest_is_checked_against_the_declared_inputs(
    start_agent: StartAgent, files: dict[str, bytes], code: str
) -> None:
    conv = start_agent(ONE_INPUT)
    conv.to_evidence()
    conv.upload(files)
    conv.agent.send({"cmd": "run"})
    failure(conv, code)


# --- the inputs folder ---------------------------------------------------------------------------


def _uploaded(start_agent: StartAgent, data: bytes = b"abc") -> Conversation:
    conv = start_agent(ONE_INPUT)
    conv.to_evidence()
    conv.upload({"in.txt": data})
    return conv


def _replace_input(conv: Conversation, ciphertext: bytes, *, fix_manifest: bool = True) -> None:
    """Put other ciphertext in place; with fix_manifest the requestor vouches for it (so the
    age layer, not the digest check, must catch it)."""
    assert conv.evidence is not None
    (conv.dirs.io / "inputs" / "in.txt.age").write_bytes(ciphertext)
    if fix_manifest:
        entry = entry_for("in.txt", 3, ciphertext)
        conv.requestor.seal_manifest(conv.dirs.io, conv.evidence, [entry])


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        (lambda d: (d / "extra.age").write_bytes(b"x"), "input_extra"),
        (lambda d: (d / f"\u00e9{MARKER}").write_bytes(b"x"), "input_extra"),
        (lambda d: (d / "in.txt.age").unlink(), "input_missing"),
        (lambda d: _symlink_input(d), "input_not_regular"),
        (lambda d: _fifo_input(d), "input_not_regular"),
        (lambda d: _folder_input(d), "input_not_regular"),
        (lambda d: _append(d / "in.txt.age", b"x"), "input_size"),
        (lambda d: _flip_last(d / "in.txt.age"), "input_sha256"),
    ],
    ids=["extra", "extra-unprintable", "missing", "symlink", "fifo", "folder", "size", "sha256"],
)
def test_the_inputs_folder_holds_exactly_the_manifest_files(
    start_agent: StartAgent, setup: Any, code: str
) -> None:
    conv = _uploaded(start_agent)
    setup(conv.dirs.io / "inputs")
    conv.agent.send({"cmd": "run"})
    failure(conv, code)
    assert not (conv.dirs.workspace / "inputs" / "in.txt").exists()


def _symlink_input(d: Path) -> None:
    (d / "in.txt.age").rename(d.parent / "real")
    (d / "in.txt.age").symlink_to(d.parent / "real")


def _fifo_input(d: Path) -> None:
    (d / "in.txt.age").unlink()
    os.mkfifo(d / "in.txt.age")


def _folder_input(d: Path) -> None:
    (d / "in.txt.age").unlink()
    (d / "in.txt.age").mkdir()


def _append(path: Path, data: bytes) -> None:
    path.write_bytes(path.read_bytes() + data)


def _flip_last(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_inputs_are_checked_in_file_name_order(start_agent: StartAgent) -> None:
    workload = shell(
        "true",
        inputs=[
            {"name": "b", "max_size": 10, "required": True},
            {"name": "a", "max_size": 10, "required": True},
        ],
    )
    conv = start_agent(workload)
    conv.to_evidence()
    conv.upload({"b": b"1", "a": b"2"})
    _flip_last(conv.dirs.io / "inputs" / "a.age")
    (conv.dirs.io / "inputs" / "b.age").unlink()
    conv.agent.send({"cmd": "run"})
    assert '"a"' in failure(conv, "input_sha256")["message"]


def test_age_failures_of_vouched_for_inputs_keep_their_codes(start_agent: StartAgent) -> None:
    def sealed(recipient_pub: bytes | None, data: bytes = b"abc") -> bytes:
        out = io.BytesIO()
        recipient = (
            X25519Recipient.from_public_bytes(recipient_pub)
            if recipient_pub
            else X25519Identity.generate().recipient()
        )
        encrypt_stream(io.BytesIO(data), out, [recipient])
        return out.getvalue()

    cases: dict[str, tuple[Any, str]] = {
        "no-match": (lambda e: sealed(None), "age_no_match"),
        "header": (lambda e: b"age-encryption.org/v2\n", "age_header"),
        "hmac": (lambda e: _flip_mac(sealed(e)), "age_hmac"),
        "payload": (lambda e: sealed(e)[:-1], "age_payload"),
        "wrong-size": (lambda e: sealed(e, b"abcd"), "input_size"),
    }
    for name, (make, code) in cases.items():
        conv = start_agent(ONE_INPUT, name=name)
        evidence = conv.to_evidence()
        conv.upload({"in.txt": b"abc"})
        _replace_input(conv, make(bytes.fromhex(evidence["enclave_key"])))
        conv.agent.send({"cmd": "run"})
        failure(conv, code)
        assert not (conv.dirs.workspace / "inputs" / "in.txt").exists()


def _flip_mac(data: bytes) -> bytes:
    mac = data.index(b"\n--- ") + 5
    flipped = bytearray(data)
    flipped[mac] = ord("A") if flipped[mac] != ord("A") else ord("B")
    return bytes(flipped)


# --- outputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "limits", "code"),
    [
        ("ln -s /etc/passwd outputs/leak", {}, "output_symlink"),
        ("mkfifo outputs/pipe", {}, "output_not_regular"),
        ("mkdir outputs/dir", {}, "output_not_regular"),
        ("echo x > outputs/a; ln outputs/a outputs/b", {}, "output_hard_link"),
        ("echo x > outputs/stdout", {}, "output_reserved"),
        ("echo x > outputs/receipt.json", {}, "output_reserved"),
        (
            "head -c 600 /dev/zero > outputs/a; head -c 600 /dev/zero > outputs/b",
            {},
            "output_too_large",
        ),
        ("for i in 1 2 3 4; do echo > outputs/f$i; done", {}, "too_many_outputs"),
    ],
    ids=["symlink", "fifo", "folder", "hard-link", "stdout", "receipt", "too-large", "too-many"],
)
def test_outputs_the_workload_leaves_are_refused_by_name(
    start_agent: StartAgent, script: str, limits: dict[str, int], code: str
) -> None:
    workload = shell("mkdir -p outputs; " + script, output_size=1000, max_outputs=3, **limits)
    conv = start_agent(workload)
    conv.to_evidence()
    conv.upload({})
    events, status = conv.run()
    assert [e["event"] for e in events][-2:] == ["sealing", "failed"], events
    assert events[-1]["code"] == code and status == 1
    assert not (conv.dirs.io / "outputs" / "receipt.json").exists()


def test_undeclared_and_unnamed_files_are_not_outputs(start_agent: StartAgent) -> None:
    script = (
        "mkdir -p outputs; echo 1 > outputs/keep.csv; echo 2 > outputs/skip.txt; "
        "echo 3 > outputs/.hidden.csv; echo 4 > outputs/$(printf 'caf\\303\\251.csv'); "
        "echo 5 > outputs/'with space.csv'; ln -s /etc/passwd outputs/link.txt"
    )
    conv = start_agent(shell(script, outputs=["*.csv"]))
    conv.to_evidence()
    conv.upload({})
    events, status = conv.run()
    assert status == 0, events[-1]
    names = sorted(p.name for p in (conv.dirs.io / "outputs").iterdir())
    assert names == ["keep.csv.age", "receipt.json", "stderr.age", "stdout.age"]


def test_the_standard_streams_are_sealed_from_the_agents_own_files(
    start_agent: StartAgent,
) -> None:
    # The workload replaces .stdout with a link to a secret; the agent still seals what the
    # workload wrote to its standard output.
    script = "echo written; rm .stdout; ln -s /etc/hostname .stdout; mkfifo .stderr.new"
    conv = start_agent(shell(script))
    conv.to_evidence()
    conv.upload({})
    _, status = conv.run()
    assert status == 0

    decrypt_file(
        conv.dirs.io / "outputs" / "stdout.age", conv.dirs.root / "out", [conv.requestor.identity]
    )
    assert (conv.dirs.root / "out").read_bytes() == b"written\n"


def test_an_outputs_folder_the_workload_replaced_by_a_link_is_refused(
    start_agent: StartAgent,
) -> None:
    conv = start_agent(shell("rm -r outputs; ln -s / outputs"))
    conv.to_evidence()
    conv.upload({})
    events, status = conv.run()
    assert events[-1]["code"] == "output_read" and status == 1


def test_an_outputs_folder_the_workload_removed_means_no_outputs(start_agent: StartAgent) -> None:
    conv = start_agent(shell("echo x > outputs/a; rm -r outputs"))
    conv.to_evidence()
    conv.upload({})
    events, status = conv.run()
    assert status == 0 and outcome(events)["outputs"] == 2


def test_a_host_that_ignores_sigchld_cannot_hide_how_the_workload_ended(
    start_agent: StartAgent,
) -> None:
    # An ignored SIGCHLD survives exec; the kernel would then reap the workload before the
    # agent could read its status. The agent restores the default.
    ignore = [
        sys.executable,
        "-c",
        "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); "
        "os.execv(sys.argv[1], sys.argv[1:])",
    ]
    conv = start_agent(shell("sleep 0.2; exit 3"), prefix=ignore)
    conv.to_evidence()
    conv.upload({})
    events, status = conv.run()
    assert status == 0
    assert outcome(events)["exit_status"] == 3 and outcome(events)["termination"] == "exited"


def test_a_linked_outputs_folder_on_the_host_side_is_refused(start_agent: StartAgent) -> None:
    conv = start_agent(shell("true"))
    conv.to_evidence()
    conv.upload({})
    elsewhere = conv.dirs.root / "elsewhere"
    elsewhere.mkdir()
    (conv.dirs.io / "outputs").symlink_to(elsewhere)
    conv.agent.send({"cmd": "run"})
    failure(conv, "sealing")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "argv", [["/no/such/program"], ["/etc/hostname"], ["/tmp"]], ids=["missing", "not-exec", "dir"]
)
def test_a_program_that_cannot_start_is_workload_start(
    start_agent: StartAgent, argv: list[str]
) -> None:
    conv = start_agent(Workload(argv=argv))
    conv.to_evidence()
    conv.upload({})
    events, status = conv.run()
    assert [e["event"] for e in events] == ["inputs_opened", "failed"]
    assert events[-1]["code"] == "workload_start" and status == 1


# --- attestation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["no-report-data", "short-quote", "huge-quote", "quote-folder"])
def test_a_broken_attestation_device_is_an_attestation_failure(
    start_agent: StartAgent, tmp_path: Path, kind: str
) -> None:
    device = tmp_path / f"device-{kind}"
    device.mkdir()
    (device / "user_report_data").write_bytes(b"")
    if kind == "no-report-data":
        (device / "user_report_data").unlink()
        (device / "quote").write_bytes(bytes(1000))
    elif kind == "short-quote":
        (device / "quote").write_bytes(bytes(431))
    elif kind == "huge-quote":
        (device / "quote").write_bytes(bytes(64 * 1024 + 1))
    else:
        (device / "quote").mkdir()
    conv = start_agent(shell("true"), attestation_dir=device)
    conv.agent.expect("ready")
    conv.agent.send(conv.requestor.attest())
    failure(conv, "attestation")
