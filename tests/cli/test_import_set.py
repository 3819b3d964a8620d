"""Issue 14 item 15: a command imports only what it uses.

The light commands (``--version``, ``--help``, ``keygen``, ``seal``, ``open``) start as fast as
their imports allow, so their import set is pinned here: a change that makes one of them import
more (pydantic, aiohttp, structlog, the attestation code, another command) fails this test and
must be deliberate. Timings are measured by ``bench/cli.py``, never asserted in tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _cli_support import Cli

_RUN_AND_LIST = """
import os, sys
from golem_graphene._cli import main
try:
    main(sys.argv[1:])
finally:
    with open(os.environ["MODULES_OUT"], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
"""

BASE = {"golem_graphene", "golem_graphene._cli", "golem_graphene.errors"}
KEYS = BASE | {
    "golem_graphene._commands",
    "golem_graphene._internal",
    "golem_graphene._internal.age_recipient",
    "golem_graphene._internal.bech32",
    # Atomic outputs are written in a private staging folder (issue 15), imported only when a
    # command writes one (``-o FILE``): these runs write to stdout or a device.
    "golem_graphene._lazy",
    "golem_graphene._logging",
    "golem_graphene.limits",
    "golem_graphene.sealing",
    "golem_graphene.sealing._internal",
    "golem_graphene.sealing._internal.atomic",
    "golem_graphene.sealing._internal.cli_support",
    # X25519 keys through cryptography's binding, without its OpenSSL backend object (below).
    "golem_graphene.sealing._internal.x25519",
    "golem_graphene.sealing.keys",
}
AGE = KEYS | {
    "golem_graphene._batched_write",
    "golem_graphene.sealing._internal.armor",
    "golem_graphene.sealing._internal.b64",
    "golem_graphene.sealing._internal.header",
    "golem_graphene.sealing._internal.pipeline",
    "golem_graphene.sealing._internal.source",
    "golem_graphene.sealing._internal.stanzas",
    "golem_graphene.sealing._internal.stream",
    "golem_graphene.sealing.age",
    "golem_graphene.sealing.digests",
}
HEAVY = (
    "aiohttp",
    "pydantic",
    "pydantic_core",
    "structlog",
    "nacl",
    "jinja2",
    "google",
    "yarl",
    "asyncio",
    "logging",
    "concurrent",
    "dataclasses",
    "tempfile",
    "email",
    "ssl",
    "socket",
    # The staging folder's removal and its random name: only a command that stages imports
    # them (shutil pulls in bz2 and lzma).
    "shutil",
    "secrets",
    "bz2",
    "lzma",
    # The standard library's OpenSSL (cryptography's, already loaded, does the HMAC) and
    # cryptography's backend object with its EC, RSA and cipher modules (X25519 needs none).
    "hashlib",
    "hmac",
    "_hashlib",
)


def _modules(gg: Cli, work: Path, *args: str, stdin: bytes = b"") -> set[str]:
    listing = work / "modules.txt"
    env = {**gg.env, "MODULES_OUT": str(listing)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run(
        [sys.executable, "-c", _RUN_AND_LIST, *args],
        input=stdin,
        capture_output=True,
        cwd=work,
        env=env,
        check=False,
    )
    assert listing.exists(), result.stderr
    return set(listing.read_text().split())


@pytest.fixture
def key(gg: Cli, work: Path) -> tuple[str, str]:
    gg("keygen", "-o", "me.key")
    return "me.key", gg("keygen", "-y", "me.key").stdout.decode().strip()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("--version", BASE),
        ("--help", BASE),
        ("keygen", KEYS),
        ("keygen -y", KEYS),
        ("seal", AGE | {"golem_graphene._commands.seal"}),
        ("open", AGE | {"golem_graphene._commands.open"}),
    ],
)
def test_light_commands_import_only_what_they_use(
    gg: Cli, work: Path, key: tuple[str, str], name: str, expected: set[str]
) -> None:
    identity, recipient = key
    argv, stdin = {
        "--version": (["--version"], b""),
        "--help": (["--help"], b""),
        "keygen": (["keygen"], b""),
        "keygen -y": (["keygen", "-y", identity], b""),
        "seal": (["seal", "-r", recipient, "-o", os.devnull], b"x"),
        "open": (["open", "-i", identity], gg("seal", "-r", recipient, input=b"x").stdout),
    }[name]
    modules = _modules(gg, work, *argv, stdin=stdin)
    ours = {m for m in modules if m == "golem_graphene" or m.startswith("golem_graphene.")}
    if name.startswith("keygen"):
        expected = expected | {"golem_graphene._commands.keygen"}
    assert ours == expected, (sorted(ours - expected), sorted(expected - ours))
    heavy = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
    assert heavy == [], heavy
    assert "cryptography.hazmat.backends.openssl.backend" not in modules
    third_party = {m.split(".")[0] for m in modules} & {"cryptography", "_cffi_backend"}
    assert bool(third_party) == (name not in ("--version", "--help")), third_party


def test_verify_quote_imports_no_network_or_logging_stack(gg: Cli, work: Path) -> None:
    vectors = Path(__file__).resolve().parents[1] / "vectors" / "dcap" / "phala_sgx"
    modules = _modules(
        gg,
        work,
        "verify-quote",
        str(vectors / "quote.bin"),
        "--collateral",
        str(vectors / "collateral.json"),
        "--at",
        "2025-07-19T10:00:00Z",
        "--accept-tcb",
        "ConfigurationAndSWHardeningNeeded",
    )
    tops = {m.split(".")[0] for m in modules}
    # pydantic (the collateral documents are read by a checker of their own; the task spec
    # model is only an annotation of the requestor policy) cost ~100 ms of start-up.
    unused = {"aiohttp", "structlog", "nacl", "jinja2", "google", "asyncio", "pydantic"}
    unused |= {"pydantic_core", "shutil", "tempfile"}
    assert not tops & unused, sorted(tops & unused)
    assert not any(m.startswith("golem_graphene.requestor.client") for m in modules)
    assert "golem_graphene.protocol.spec" not in modules
    assert "importlib.resources" not in modules  # the bundled root is read by its loader


def test_an_unchanged_build_imports_no_parser_renderer_or_signer(gg: Cli, work: Path) -> None:
    """Issue 13's cached rebuild: the image folder is copied from the store, so the second
    ``build`` of the same spec, image and key needs none of pydantic, jinja2, cryptography or
    the OCI and manifest code (and writes what the first one wrote)."""
    spec = Path(__file__).resolve().parents[2] / "task_specs" / "csv-stats"
    first = gg("build", spec, "-o", "image", "--new-key", "--json", timeout=300)
    assert first.returncode == 0, first.stderr
    modules = _modules(gg, work, "build", str(spec), "-o", "image", "--force", "--json")
    again = json.loads((work / "image" / "image.json").read_text())
    built = json.loads(first.stdout)
    assert {k: v for k, v in again.items() if k != "built"} == {
        k: v for k, v in built.items() if k not in ("built", "directory")
    }
    tops = {m.split(".")[0] for m in modules}
    assert not tops & {"pydantic", "pydantic_core", "jinja2", "cryptography", "structlog"}
    assert not {m for m in modules if m.startswith("golem_graphene.gramine")}
    assert not modules & {"golem_graphene.host.image", "golem_graphene.images.source"}
