"""The input manifest: model rules, the documented key schedule, tamper refusals, file checks.

(Named ``test_input_manifest.py`` because ``tests/unit/provider/test_manifest.py`` exists and
the test tree has no packages: two test modules may not share a base name.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_graphene.canonical_json import canonical_json
from golem_graphene.errors import Error, ProtocolError, SealingError
from golem_graphene.limits import MAX_INPUT_MANIFEST_BYTES, MAX_TASK_ARGS
from golem_graphene.protocol.binding import Transcript, new_nonce, new_task_id
from golem_graphene.sealing import input_manifest as manifest_module
from golem_graphene.sealing.input_manifest import (
    INPUT_MANIFEST_KEY_INFO,
    INPUT_MANIFEST_LABEL,
    FileCheckError,
    InputEntry,
    InputFileError,
    InputManifest,
    InputManifestAuthError,
    InputManifestFormatError,
    check_inputs,
    ciphertext_name,
    hash_file,
    manifest_transcript_hash,
    open_manifest,
    seal_manifest,
)
from golem_graphene.sealing.keys import X25519Identity


@dataclass
class Task:
    requestor: X25519Identity
    enclave: X25519PrivateKey
    transcript: Transcript

    @property
    def enclave_pub(self) -> bytes:
        return self.enclave.public_key().public_bytes_raw()

    @property
    def requestor_pub(self) -> bytes:
        return self.requestor.recipient().public_bytes()


def new_task(requestor: X25519Identity | None = None) -> Task:
    r = requestor or X25519Identity.generate()
    e = X25519PrivateKey.generate()
    t = Transcript(
        task_id=new_task_id(),
        nonce=new_nonce(),
        enclave_key=e.public_key().public_bytes_raw(),
        signing_key=os.urandom(32),
        requestor_key=r.recipient().public_bytes(),
    )
    return Task(r, e, t)


def manifest_for(task: Task, **fields: Any) -> InputManifest:
    values: dict[str, Any] = {
        "task_id": task.transcript.task_id,
        "args": ["--in", "/inputs/data.csv"],
        "env": {"LANG": "C.UTF-8", "EMPTY": ""},
        "inputs": [
            InputEntry(
                name="data.csv", size=10, ciphertext_size=250, ciphertext_sha256=b"\x01" * 32
            ),
            InputEntry(name="model.bin", size=0, ciphertext_size=200, ciphertext_sha256=bytes(32)),
        ],
    }
    values.update(fields)
    return InputManifest(**values)


def seal(task: Task, manifest: InputManifest | None = None) -> bytes:
    m = manifest or manifest_for(task)
    return seal_manifest(m, task.requestor, task.enclave_pub, task.transcript)


def open_(task: Task, sealed: bytes) -> InputManifest:
    return open_manifest(sealed, task.enclave, task.requestor_pub, task.transcript)


# --- sealing round trips ----------------------------------------------------------------------


def test_seal_and_open() -> None:
    task = new_task()
    m = manifest_for(task)
    sealed = seal(task, m)
    assert open_(task, sealed) == m
    # The enclave side may hold E as an age identity too.
    identity = X25519Identity.from_private_bytes(task.enclave.private_bytes_raw())
    assert open_manifest(sealed, identity, task.requestor_pub, task.transcript) == m


def test_sealed_form_is_canonical_json_with_a_fresh_nonce() -> None:
    task = new_task()
    a, b = seal(task), seal(task)
    obj = json.loads(a)
    assert set(obj) == {"v", "nonce", "ciphertext"}
    assert obj["v"] == 1
    assert len(base64.b64decode(obj["nonce"])) == 12
    assert canonical_json(obj) == a
    assert json.loads(b)["nonce"] != obj["nonce"]


def test_documented_key_schedule() -> None:
    """Re-derive the key exactly as the module docstring says and open the sealed bytes."""
    task = new_task()
    m = manifest_for(task)
    obj = json.loads(seal(task, m))
    t = task.transcript
    th = hashlib.sha256(
        b"golem-graphene/v1/input-manifest"
        + t.task_id
        + t.nonce
        + t.enclave_key
        + t.signing_key
        + t.requestor_key
    ).digest()
    assert th == manifest_transcript_hash(t)
    assert INPUT_MANIFEST_LABEL == b"golem-graphene/v1/input-manifest"
    assert INPUT_MANIFEST_KEY_INFO == b"golem-graphene/v1/input-manifest-key"
    ikm = task.enclave.exchange(X25519PublicKey.from_public_bytes(task.requestor_pub))
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=th,
        info=b"golem-graphene/v1/input-manifest-key",
    ).derive(ikm)
    plaintext = ChaCha20Poly1305(key).decrypt(
        base64.b64decode(obj["nonce"]), base64.b64decode(obj["ciphertext"]), th
    )
    assert plaintext == m.canonical_bytes()
    assert m.digest() == hashlib.sha256(plaintext).digest()


# --- tampering --------------------------------------------------------------------------------


def _mutate_ciphertext(sealed: bytes, index: int) -> bytes:
    obj = json.loads(sealed)
    ct = bytearray(base64.b64decode(obj["ciphertext"]))
    ct[index % len(ct)] ^= 0x01
    obj["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    return json.dumps(obj).encode()


@pytest.mark.parametrize("index", [0, 7, -1])
def test_flipped_ciphertext_bit_is_refused(index: int) -> None:
    task = new_task()
    with pytest.raises(InputManifestAuthError) as info:
        open_(task, _mutate_ciphertext(seal(task), index))
    assert info.value.code == "input_manifest_auth"


def test_non_canonical_base64_is_refused() -> None:
    # Stray bits in the last base64 character decode to the same bytes: still refused, so a
    # sealed manifest has exactly one accepted encoding.
    task = new_task()
    for length in range(1, 4):  # some manifests' ciphertexts need padding
        m = manifest_for(task, args=("x" * length,))
        obj = json.loads(seal(task, m))
        if obj["ciphertext"].endswith("="):
            break
    else:
        raise AssertionError("no padded ciphertext")
    original = obj["ciphertext"]
    text = original.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-1])
    stray = alphabet[last | 1] if last % 2 == 0 else alphabet[last & ~1]
    obj["ciphertext"] = text[:-1] + stray + original[len(text) :]
    assert obj["ciphertext"] != original
    assert base64.b64decode(obj["ciphertext"]) == base64.b64decode(original)
    with pytest.raises(InputManifestFormatError, match="canonical base64"):
        open_(task, json.dumps(obj).encode())


def test_flipped_nonce_is_refused() -> None:
    task = new_task()
    obj = json.loads(seal(task))
    nonce = bytearray(base64.b64decode(obj["nonce"]))
    nonce[0] ^= 1
    obj["nonce"] = base64.b64encode(bytes(nonce)).decode()
    with pytest.raises(InputManifestAuthError):
        open_(task, json.dumps(obj).encode())


def test_provider_cannot_forge_with_its_own_key() -> None:
    """The provider knows E.pub; sealing with its own R' does not open under the bound R."""
    task = new_task()
    forger = X25519Identity.generate()
    forged_t = Transcript(
        task.transcript.task_id,
        task.transcript.nonce,
        task.transcript.enclave_key,
        task.transcript.signing_key,
        forger.recipient().public_bytes(),
    )
    forged = seal_manifest(
        manifest_for(task, args=["rm", "-rf"]), forger, task.enclave_pub, forged_t
    )
    with pytest.raises(InputManifestAuthError):
        open_(task, forged)


@pytest.mark.parametrize("field", ["task_id", "nonce", "signing_key"])
def test_manifest_for_another_transcript_is_refused(field: str) -> None:
    """Replay: the same R and E, but another task, nonce or signing key."""
    task = new_task()
    sealed = seal(task)
    values = {
        "task_id": task.transcript.task_id,
        "nonce": task.transcript.nonce,
        "enclave_key": task.transcript.enclave_key,
        "signing_key": task.transcript.signing_key,
        "requestor_key": task.transcript.requestor_key,
    }
    values[field] = os.urandom(len(values[field]))
    other = Transcript(**values)
    with pytest.raises(InputManifestAuthError):
        open_manifest(sealed, task.enclave, task.requestor_pub, other)


def test_authenticated_manifest_naming_another_task_is_refused() -> None:
    """Defence in depth: a manifest sealed correctly but naming another task id."""
    task = new_task()
    m = manifest_for(task, task_id=new_task_id())
    th = manifest_transcript_hash(task.transcript)
    shared = X25519PrivateKey.from_private_bytes(task.requestor.private_bytes()).exchange(
        task.enclave.public_key()
    )
    key = HKDF(hashes.SHA256(), 32, th, INPUT_MANIFEST_KEY_INFO).derive(shared)
    nonce = os.urandom(12)
    sealed = canonical_json(
        {
            "v": 1,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(
                ChaCha20Poly1305(key).encrypt(nonce, m.canonical_bytes(), th)
            ).decode(),
        }
    )
    with pytest.raises(InputManifestFormatError, match="another task"):
        open_(task, sealed)


def test_seal_refuses_a_mismatched_transcript() -> None:
    task = new_task()
    with pytest.raises(ProtocolError, match="another task"):
        seal_manifest(
            manifest_for(task, task_id=new_task_id()),
            task.requestor,
            task.enclave_pub,
            task.transcript,
        )
    with pytest.raises(ProtocolError, match="enclave key"):
        seal_manifest(manifest_for(task), task.requestor, os.urandom(32), task.transcript)
    with pytest.raises(ProtocolError, match="requestor key"):
        seal_manifest(
            manifest_for(task), X25519Identity.generate(), task.enclave_pub, task.transcript
        )


def test_open_refuses_keys_not_in_the_transcript() -> None:
    task = new_task()
    sealed = seal(task)
    with pytest.raises(ProtocolError, match="enclave key"):
        open_manifest(sealed, X25519PrivateKey.generate(), task.requestor_pub, task.transcript)
    with pytest.raises(ProtocolError, match="requestor key"):
        open_manifest(sealed, task.enclave, os.urandom(32), task.transcript)


def test_low_order_enclave_key_is_refused() -> None:
    task = new_task()
    low_order = bytes(32)  # the identity point: X25519 with it gives all zeros
    t = Transcript(
        task.transcript.task_id,
        task.transcript.nonce,
        low_order,
        task.transcript.signing_key,
        task.transcript.requestor_key,
    )
    with pytest.raises(ProtocolError, match="low-order"):
        seal_manifest(manifest_for(task), task.requestor, low_order, t)


@pytest.mark.parametrize(
    ("sealed", "rule"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "exactly the keys"),
        (b'{"v":1,"nonce":"AAAAAAAAAAAAAAAA"}', "exactly the keys"),
        (b'{"v":1,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":"","x":1}', "exactly the keys"),
        (b'{"v":2,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":""}', "version"),
        (b'{"v":true,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":""}', "version"),
        (b'{"v":1.0,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":""}', "not JSON"),
        (b'{"v":1,"nonce":"AAAA","ciphertext":""}', "nonce has the wrong length"),
        (b'{"v":1,"nonce":"!!!!","ciphertext":""}', "not base64"),
        (b'{"v":1,"nonce":7,"ciphertext":""}', "base64 string"),
        (b'{"v":1,"v":1,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":""}', "not JSON"),
    ],
)
def test_malformed_sealed_forms(sealed: bytes, rule: str) -> None:
    task = new_task()
    with pytest.raises(InputManifestFormatError, match=rule):
        open_(task, sealed)


def test_oversized_sealed_form() -> None:
    task = new_task()
    with pytest.raises(InputManifestFormatError, match="too large"):
        open_(task, b" " * (MAX_INPUT_MANIFEST_BYTES + 1))


_SHARED_TASK = new_task()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_typed_errors(data: bytes) -> None:
    task = _SHARED_TASK
    with pytest.raises((InputManifestFormatError, InputManifestAuthError)):
        open_(task, data)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=400), st.binary(min_size=12, max_size=12))
def test_random_well_formed_ciphertexts_do_not_authenticate(ct: bytes, nonce: bytes) -> None:
    sealed = canonical_json(
        {
            "v": 1,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(ct).decode(),
        }
    )
    with pytest.raises(InputManifestAuthError):
        open_(_SHARED_TASK, sealed)


# --- the model --------------------------------------------------------------------------------


def test_manifest_errors_are_protocol_errors() -> None:
    assert issubclass(InputManifestFormatError, ProtocolError)
    assert issubclass(InputManifestAuthError, SealingError)


def test_public_names() -> None:
    assert sorted(manifest_module.__all__) == sorted(
        [
            "CIPHERTEXT_SUFFIX",
            "INPUT_MANIFEST_KEY_INFO",
            "INPUT_MANIFEST_LABEL",
            "SEALED_MANIFEST_VERSION",
            "FileCheckError",
            "FileDigest",
            "InputEntry",
            "InputFileError",
            "InputManifest",
            "InputManifestAuthError",
            "InputManifestFormatError",
            "check_file",
            "check_inputs",
            "ciphertext_name",
            "hash_file",
            "manifest_transcript_hash",
            "open_manifest",
            "seal_manifest",
        ]
    )


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"protocol": "golem-graphene/v2"}, "protocol"),
        ({"args": ["a\x00b"]}, "NUL"),
        ({"args": "one string"}, "args"),
        ({"args": ["x"] * (MAX_TASK_ARGS + 1)}, "args"),
        ({"env": {"A=B": "x"}}, "'='"),
        ({"env": {"": "x"}}, "non-empty"),
        ({"env": {"A": "x\x00"}}, "NUL"),
        ({"env": {"A": 1}}, "env"),
        ({"unknown": 1}, "unknown"),
        ({"args": ["x" * 600_000, "y" * 600_000]}, "exceed"),
    ],
)
def test_manifest_rules(change: dict[str, Any], rule: str) -> None:
    task = new_task()
    obj = json.loads(manifest_for(task).to_json())
    obj.update(change)
    with pytest.raises(InputManifestFormatError, match=rule):
        InputManifest.from_json(json.dumps(obj).encode())


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ({"name": "../etc/passwd"}, "name"),
        ({"name": ".hidden"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"size": -1}, "size"),
        ({"size": "10"}, "size"),
        ({"ciphertext_sha256": "AB" * 32}, "ciphertext_sha256"),
        ({"extra": True}, "extra"),
    ],
)
def test_input_entry_rules(entry: dict[str, Any], rule: str) -> None:
    task = new_task()
    obj = json.loads(manifest_for(task).to_json())
    obj["inputs"][0].update(entry)
    with pytest.raises(InputManifestFormatError, match=rule):
        InputManifest.from_json(json.dumps(obj).encode())


def test_names_must_be_plain_ascii() -> None:
    task = new_task()
    obj = json.loads(manifest_for(task).to_json())
    obj["inputs"][0]["name"] = unicodedata.normalize("NFD", "é.txt")
    with pytest.raises(InputManifestFormatError, match="plain file name"):
        InputManifest.from_json(json.dumps(obj).encode())


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,19}", fullmatch=True)
entries = st.builds(
    InputEntry,
    name=names,
    size=st.integers(0, 2**40),
    ciphertext_size=st.integers(0, 2**40),
    ciphertext_sha256=st.binary(min_size=32, max_size=32),
)
text = st.text(alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"))


@settings(max_examples=150, deadline=None)
@given(
    task_id=st.binary(min_size=16, max_size=16),
    args=st.lists(text, max_size=5),
    env=st.dictionaries(text.filter(lambda s: s != "" and "=" not in s), text, max_size=5),
    inputs=st.lists(entries, max_size=5, unique_by=lambda e: e.name),
)
def test_canonical_form_round_trips(
    task_id: bytes, args: list[str], env: dict[str, str], inputs: list[InputEntry]
) -> None:
    m = InputManifest(task_id=task_id, args=args, env=env, inputs=inputs)
    canonical = m.canonical_bytes()
    again = InputManifest.from_json(canonical)
    assert again == m
    assert again.canonical_bytes() == canonical
    assert again.digest() == hashlib.sha256(canonical).digest()


# --- input files ------------------------------------------------------------------------------


def _workspace(tmp_path: Path, files: dict[str, bytes]) -> tuple[InputManifest, Path]:
    directory = tmp_path / "inputs"
    directory.mkdir()
    entries = []
    for name, data in files.items():
        (directory / ciphertext_name(name)).write_bytes(data)
        entries.append(
            InputEntry(
                name=name,
                size=max(0, len(data) - 100),
                ciphertext_size=len(data),
                ciphertext_sha256=hashlib.sha256(data).digest(),
            )
        )
    return InputManifest(task_id=bytes(16), inputs=entries), directory


FILES = {"data.csv": os.urandom(3000), "empty": b"", "resume.pdf": os.urandom(10)}


def test_check_inputs_accepts_the_declared_files(tmp_path: Path) -> None:
    m, directory = _workspace(tmp_path, FILES)
    paths = check_inputs(m, directory)
    assert paths == {name: directory / f"{name}.age" for name in FILES}


def _expect(m: InputManifest, directory: Path, check: str, name: str) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        check_inputs(m, directory)
    assert info.value.check == check
    assert info.value.name == name
    assert info.value.code == f"input_{check}"
    return info.value


def test_missing_input(tmp_path: Path) -> None:
    m, directory = _workspace(tmp_path, FILES)
    (directory / "empty.age").unlink()
    _expect(m, directory, "missing", "empty")


def test_extra_file(tmp_path: Path) -> None:
    m, directory = _workspace(tmp_path, FILES)
    (directory / "smuggled.age").write_bytes(b"x")
    _expect(m, directory, "extra", "smuggled.age")
    (directory / "smuggled.age").unlink()
    (directory / "notes.txt").write_bytes(b"x")
    _expect(m, directory, "extra", "notes.txt")


def test_truncated_input(tmp_path: Path) -> None:
    m, directory = _workspace(tmp_path, FILES)
    path = directory / "data.csv.age"
    path.write_bytes(path.read_bytes()[:-1])
    err = _expect(m, directory, "size", "data.csv")
    assert (err.expected, err.found) == (3000, 2999)


def test_modified_input(tmp_path: Path) -> None:
    m, directory = _workspace(tmp_path, FILES)
    path = directory / "data.csv.age"
    data = bytearray(path.read_bytes())
    data[1500] ^= 0x80
    path.write_bytes(bytes(data))
    err = _expect(m, directory, "sha256", "data.csv")
    assert err.expected == hashlib.sha256(FILES["data.csv"]).hexdigest()
    assert err.found == hashlib.sha256(bytes(data)).hexdigest()


def test_symlinked_input_is_refused(tmp_path: Path) -> None:
    m, directory = _workspace(tmp_path, FILES)
    outside = tmp_path / "outside"
    outside.write_bytes(FILES["data.csv"])
    (directory / "data.csv.age").unlink()
    (directory / "data.csv.age").symlink_to(outside)
    _expect(m, directory, "not_regular", "data.csv")


def test_fifo_input_is_refused_without_blocking(tmp_path: Path) -> None:
    m, directory = _workspace(tmp_path, FILES)
    (directory / "empty.age").unlink()
    os.mkfifo(directory / "empty.age")
    _expect(m, directory, "not_regular", "empty")


def test_directory_in_place_of_input(tmp_path: Path) -> None:
    m, directory = _workspace(tmp_path, FILES)
    (directory / "empty.age").unlink()
    (directory / "empty.age").mkdir()
    _expect(m, directory, "not_regular", "empty")


def test_unlistable_directory(tmp_path: Path) -> None:
    m, _ = _workspace(tmp_path, FILES)
    with pytest.raises(InputFileError) as info:
        check_inputs(m, tmp_path / "nope")
    assert info.value.check == "read"


def test_hash_file_streams_and_refuses_links(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with big.open("wb") as f:
        for i in range(5):
            f.write(bytes([i]) * (1024 * 1024 + 7))
    digest = hash_file(big)
    assert digest.size == 5 * (1024 * 1024 + 7)
    assert digest.sha256 == hashlib.sha256(big.read_bytes()).digest()
    link = tmp_path / "link"
    link.symlink_to(big)
    with pytest.raises(FileCheckError) as info:
        hash_file(link)
    assert info.value.check == "not_regular"
    with pytest.raises(FileCheckError) as info:
        hash_file(tmp_path / "absent")
    assert info.value.check == "missing"
    assert isinstance(info.value, Error)
