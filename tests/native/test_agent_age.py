"""The agent's age decryptor against the Python requestor's, outcome for outcome.

The test build's ``--test-age-decrypt`` streams an age file through the same code the agent
uses for inputs (header, stanzas, MAC, payload, armor). For every vector of the age test kit,
for files sealed by the Python code and the ``age`` CLI, and for crafted and mutated files, it
must give what ``golem_graphene.sealing.age.decrypt_stream`` (``golem-graphene open``) gives:
the same error class, and byte for byte the same released plaintext.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _native_agent import AgentBinaries

from golem_graphene.errors import (
    AgeArmorError,
    AgeHeaderError,
    AgeHmacError,
    AgeNoMatchError,
    AgePayloadError,
    Error,
    UnsupportedRecipientError,
)
from golem_graphene.sealing._internal import b64
from golem_graphene.sealing.age import decrypt_stream, encrypt_stream
from golem_graphene.sealing.keys import X25519Identity

TESTKIT = Path(__file__).resolve().parents[1] / "vectors" / "age-testkit"
VECTOR_PATHS = sorted(p for p in TESTKIT.iterdir() if p.name not in {"README.md", "SOURCE.txt"})

# The Python decryptor's classes and the agent's names for them; the protocol code each class
# is reported with (docs/agent-protocol.md section 4: armor and foreign stanzas are age_header).
CLASS_OF: dict[type[Error] | None, str] = {
    None: "ok",
    AgeHeaderError: "header",
    AgeArmorError: "armor",
    UnsupportedRecipientError: "unsupported",
    AgeHmacError: "hmac",
    AgeNoMatchError: "no_match",
    AgePayloadError: "payload",
}
CODE_OF = {
    "header": "age_header",
    "armor": "age_header",
    "unsupported": "age_header",
    "hmac": "age_hmac",
    "no_match": "age_no_match",
    "payload": "age_payload",
}


@dataclass
class Outcome:
    klass: str
    released: bytes
    code: str | None = None


def python_open(data: bytes, identities: list[X25519Identity]) -> Outcome:
    out = io.BytesIO()
    try:
        decrypt_stream(io.BytesIO(data), out, identities)
    except Error as exc:
        return Outcome(CLASS_OF[type(exc)], out.getvalue())
    return Outcome("ok", out.getvalue())


@dataclass
class AgentDecryptor:
    binary: Path
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    count: int = field(default=0)

    def open(self, data: bytes, identities: list[X25519Identity]) -> Outcome:
        self.count += 1
        keys = self.workdir / f"keys-{self.count}"
        keys.write_text("".join(i.private_bytes().hex() + "\n" for i in identities))
        src = self.workdir / f"in-{self.count}.age"
        src.write_bytes(data)
        done = subprocess.run(
            [str(self.binary), "--test-age-decrypt", str(keys), str(src)],
            capture_output=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", **self.env},
        )
        keys.unlink()
        src.unlink()
        if done.returncode == 0:
            assert done.stderr == b""
            return Outcome("ok", done.stdout)
        assert done.returncode == 1, done.stderr
        words = done.stderr.decode().split()
        assert len(words) >= 3 and done.stderr.count(b"\n") == 1, done.stderr
        assert words[0] == "age-fail", done.stderr
        return Outcome(words[1], done.stdout, words[2].rstrip(":"))


@pytest.fixture
def agent_age(agent_bin: AgentBinaries, tmp_path: Path) -> AgentDecryptor:
    return AgentDecryptor(agent_bin.test, tmp_path)


def same(agent: Outcome, python: Outcome) -> None:
    assert (agent.klass, len(agent.released)) == (python.klass, len(python.released))
    assert agent.released == python.released
    if agent.klass != "ok":
        assert agent.code == CODE_OF[agent.klass]


# --- the age test kit ----------------------------------------------------------------------------


def load_vector(path: Path) -> tuple[str, bytes, list[X25519Identity], str | None]:
    head, _, body = path.read_bytes().partition(b"\n\n")
    fields = [line.split(": ", 1) for line in head.decode().splitlines()]
    identities = []
    for key, value in fields:
        if key == "identity" and not value.startswith("AGE-SECRET-KEY-PQ-1"):
            identities.append(X25519Identity.from_string(value))
    values = dict(fields)
    if values.get("compressed") == "zlib":
        body = zlib.decompress(body)
    return values["expect"], body, identities, values.get("payload")


@pytest.mark.parametrize("path", VECTOR_PATHS, ids=[p.name for p in VECTOR_PATHS])
def test_testkit_vector_gives_the_outcome_of_golem_graphene_open(
    path: Path, agent_age: AgentDecryptor
) -> None:
    expect, data, identities, payload = load_vector(path)
    python = python_open(data, identities)
    agent = agent_age.open(data, identities)
    same(agent, python)
    if expect == "success" and identities:
        assert agent.klass == "ok"
    if agent.klass in ("ok", "payload"):
        # The kit's hash is of everything released, also before a payload failure.
        assert payload == hashlib.sha256(agent.released).hexdigest()
    else:
        assert agent.released == b""


def test_the_testkit_copy_is_complete() -> None:
    assert len(VECTOR_PATHS) == 115


# --- files the requestor and the age CLI seal ----------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 2 * 65536, 300_001])
def test_files_sealed_by_the_python_requestor_open(size: int, agent_age: AgentDecryptor) -> None:
    identity = X25519Identity.generate()
    others = [X25519Identity.generate() for _ in range(3)]
    plain = hashlib.shake_256(str(size).encode()).digest(size)
    sealed = io.BytesIO()
    # Several recipients: the agent's key in the middle, as a re-targeted header may have it.
    encrypt_stream(
        io.BytesIO(plain),
        sealed,
        [others[0].recipient(), identity.recipient(), others[1].recipient()],
    )
    assert agent_age.open(sealed.getvalue(), [identity]) == Outcome("ok", plain)
    assert agent_age.open(sealed.getvalue(), [others[2]]).klass == "no_match"


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
def test_files_sealed_by_the_age_cli_open(
    armor: bool, agent_age: AgentDecryptor, tmp_path: Path
) -> None:
    age = shutil.which("age")
    assert age is not None, "the age CLI is installed by `make setup`"
    identity = X25519Identity.generate()
    plain = hashlib.shake_256(b"cli").digest(200_000)
    (tmp_path / "plain").write_bytes(plain)
    cmd = [age, "-r", identity.recipient().to_string(), "-o", str(tmp_path / "x.age")]
    subprocess.run([*cmd, *(["-a"] if armor else []), str(tmp_path / "plain")], check=True)
    assert agent_age.open((tmp_path / "x.age").read_bytes(), [identity]) == Outcome("ok", plain)


# --- crafted and mutated files -------------------------------------------------------------------


def sealed_sample(size: int, identity: X25519Identity, seed: int) -> bytes:
    out = io.BytesIO()
    plain = random.Random(seed).randbytes(size)
    encrypt_stream(
        io.BytesIO(plain), out, [X25519Identity.generate().recipient(), identity.recipient()]
    )
    return out.getvalue()


def header_end(data: bytes) -> int:
    mac = data.index(b"\n---")
    return data.index(b"\n", mac + 1) + 1


def test_every_truncation_gives_the_same_outcome(agent_age: AgentDecryptor) -> None:
    identity = X25519Identity.generate()
    data = sealed_sample(70_000, identity, 1)
    end = header_end(data)
    # Every cut inside the header and the nonce, and a spread of cuts in the payload.
    cuts = [*range(0, end + 17), *range(end + 17, len(data) + 1, 997), len(data) - 1]
    for cut in cuts:
        same(agent_age.open(data[:cut], [identity]), python_open(data[:cut], [identity]))


def test_random_byte_mutations_give_the_same_outcome(agent_age: AgentDecryptor) -> None:
    identity = X25519Identity.generate()
    data = sealed_sample(1000, identity, 2)
    end = header_end(data)
    rng = random.Random(12)
    for _ in range(150):
        mutated = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 3])):
            pos = rng.randrange(end + 40)
            mutated[pos] = rng.choice([rng.randrange(256), 0x20, 0x0A, ord("-"), ord("A")])
        mutated_bytes = bytes(mutated)
        same(agent_age.open(mutated_bytes, [identity]), python_open(mutated_bytes, [identity]))


def _stanza_file(lines: list[bytes], identity: X25519Identity) -> bytes:
    """A header with the given stanza lines, a real X25519 stanza for identity first."""
    real = sealed_sample(10, identity, 3)
    end = header_end(real)
    head = real[: real.index(b"\n---") + 1]
    return head + b"".join(lines) + b"--- " + b"A" * 43 + b"\n" + real[end:]


@pytest.mark.parametrize(
    "stanza",
    [
        b"-> X25519 \n" + b"A" * 43 + b"\n",  # empty argument
        b"-> X25519 " + b"A" * 42 + b"\n" + b"A" * 43 + b"\n",  # share not 32 bytes
        b"-> X25519 " + b"A" * 43 + b"\n" + b"A" * 42 + b"\n",  # body not 32 bytes
        b"-> X25519 " + b"A" * 43 + b" extra\n" + b"A" * 43 + b"\n",
        b"-> X25519 " + b"A" * 43 + b"\n" + b"A" * 64 + b"\n",  # no short final line
        b"-> X25519 " + b"A" * 43 + b"\n" + b"A" * 65 + b"\n",  # line longer than 64
        b"-> x25519 " + b"A" * 43 + b"\n" + b"A" * 43 + b"\n",  # unknown (case) type
        b"-> scrypt " + b"A" * 22 + b" 10\n" + b"A" * 43 + b"\n",  # scrypt not alone
        b"-> mlkem768x25519 AAAA\n" + b"A" * 43 + b"\n",  # malformed post-quantum share
        b"-> p256tag AAAAAA " + b"A" * 87 + b"\n" + b"A" * 43 + b"\n",
        b"-> foo \x01bar\n\n",  # non-VCHAR argument
        b"-> foo bar\n" + b"A" * 43 + b"=\n",  # padding
        b"-> foo bar\n" + b"A" * 42 + b"B\n",  # non-canonical bits
        b"->foo\n\n",
        b"-> foo\n\n",  # an unknown stanza with an empty body is fine
    ],
)
def test_crafted_stanzas_give_the_same_outcome(stanza: bytes, agent_age: AgentDecryptor) -> None:
    identity = X25519Identity.generate()
    data = _stanza_file([stanza], identity)
    same(agent_age.open(data, [identity]), python_open(data, [identity]))
    # Without the matching identity, the foreign and malformed stanzas decide.
    other = X25519Identity.generate()
    same(agent_age.open(data, [other]), python_open(data, [other]))


def test_a_low_order_share_is_a_header_failure(agent_age: AgentDecryptor) -> None:
    identity = X25519Identity.generate()
    share = b64.encode(bytes(32)).decode()
    data = _stanza_file([f"-> X25519 {share}\n".encode() + b"A" * 43 + b"\n"], identity)
    other = X25519Identity.generate()
    assert agent_age.open(data, [other]).klass == python_open(data, [other]).klass == "header"


def _chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    start = header_end(data) + 16
    body = data[start:]
    return data[:start], [body[i : i + 65552] for i in range(0, len(body), 65552)]


@pytest.mark.parametrize(
    "edit",
    ["drop-last", "swap", "duplicate-first", "append-byte", "append-empty-chunk", "cut-tag"],
)
def test_chunk_manipulations_give_the_same_outcome(edit: str, agent_age: AgentDecryptor) -> None:
    identity = X25519Identity.generate()
    data = sealed_sample(3 * 65536 + 100, identity, 4)
    prefix, chunks = _chunks(data)
    if edit == "drop-last":
        chunks = chunks[:-1]
    elif edit == "swap":
        chunks[0], chunks[1] = chunks[1], chunks[0]
    elif edit == "duplicate-first":
        chunks = [chunks[0], *chunks]
    elif edit == "append-byte":
        chunks.append(b"\0")
    elif edit == "append-empty-chunk":
        chunks.append(bytes(16))
    else:
        chunks[-1] = chunks[-1][:10]
    mutated = prefix + b"".join(chunks)
    agent = agent_age.open(mutated, [identity])
    same(agent, python_open(mutated, [identity]))
    assert agent.klass == "payload"


# --- what the agent seals ------------------------------------------------------------------------

SEAL_SIZES = [0, 1, 65535, 65536, 65537, 524288, 524289, 5 * 524288 + 7, 3_000_001]


@pytest.mark.parametrize("mode", ["threads", "inline", "thread-refused"])
def test_what_the_agent_seals_opens_with_the_requestor_and_the_digests_hold(
    agent_bin: AgentBinaries, tmp_path: Path, mode: str
) -> None:
    identity = X25519Identity.generate()
    env = {"PATH": "/usr/bin:/bin"}
    extra = []
    if mode == "inline":
        extra = ["--no-threads"]
    elif mode == "thread-refused":
        env["GG_AGENT_TEST_REFUSE_THREAD"] = "1"
    for size in SEAL_SIZES:
        plain = hashlib.shake_256(f"seal{size}".encode()).digest(size)
        src, dst = tmp_path / "plain", tmp_path / "sealed.age"
        src.write_bytes(plain)
        done = subprocess.run(
            [
                str(agent_bin.test),
                "--test-seal",
                identity.recipient().to_string(),
                str(src),
                str(dst),
                *extra,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        # A file of one 512 KiB block is sealed by the calling thread alone: no thread to refuse.
        planned_threads = size > 524288
        assert ("sealing on 1 thread(s) of" in done.stderr) == (
            mode == "thread-refused" and planned_threads
        )
        report = json.loads(done.stdout)
        sealed = dst.read_bytes()
        assert report == {
            "size": size,
            "plaintext_sha256": hashlib.sha256(plain).hexdigest(),
            "ciphertext_size": len(sealed),
            "ciphertext_sha256": hashlib.sha256(sealed).hexdigest(),
        }
        # One X25519 stanza to R, the smallest header age writes for it.
        assert sealed.startswith(b"age-encryption.org/v1\n-> X25519 ")
        assert sealed.count(b"\n-> ") == 1
        assert python_open(sealed, [identity]) == Outcome("ok", plain)
