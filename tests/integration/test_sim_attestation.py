"""``/dev/attestation`` under the ``sim`` runner, and its quotes through ``verify-quote``.

Programs in the sandbox do Gramine's dance (one write of the report data to
``/dev/attestation/user_report_data``, then a read of ``/dev/attestation/quote``) and the quote
they get verifies with the real verifier, under the simulation root only when that root is
trusted by name, with the image's measurement and the program's report data. A real image built
by ``golem-graphene build`` runs the in-enclave agent, whose quote goes through
``golem-graphene verify-quote`` (and fails with the Intel root, without trust, and on any
flipped byte).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import sysconfig
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _sim_support import SimImages, sandbox_problem
from cryptography.hazmat.primitives.asymmetric import rsa

from golem_graphene._cli import main as cli
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.verifier import QuoteVerifier, VerifyOptions
from golem_graphene.errors import RunnerError, UntrustedRootError
from golem_graphene.host.image import EnclaveImage, load_or_create_signing_key
from golem_graphene.host.runners import SimRunner
from golem_graphene.host.session import EnclaveSession
from golem_graphene.protocol.binding import Transcript, format_task_id, new_nonce, new_task_id
from golem_graphene.sealing.keys import X25519Identity

SANDBOX_PROBLEM = sandbox_problem()
pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=str(SANDBOX_PROBLEM)),
    pytest.mark.skipif(sys.platform != "linux", reason="bubblewrap needs Linux"),
]

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "task_specs" / "gzip-compress"


# --- hand-built images (the same helper lives in test_sim_runner.py) -----------------------------


@pytest.fixture(scope="module")
def key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "key.pem"
    load_or_create_signing_key(path)  # RSA-3072 generation is slow: once per module
    return path


@pytest.fixture(scope="module")
def signing_key(key_path: Path) -> rsa.RSAPrivateKey:
    return load_or_create_signing_key(key_path)


@pytest.fixture
def images(tmp_path: Path, signing_key: rsa.RSAPrivateKey) -> SimImages:
    return SimImages(tmp_path, signing_key, SimRunner(tmp_path / "provider-data"))


def verify(runner: SimRunner, quote: bytes, *, trusted: bool = True) -> Any:
    platform = runner.platform
    roots = frozenset({platform.root_fingerprint}) if trusted else frozenset()
    verifier = QuoteVerifier(
        anchor=platform.trust_anchor(), options=VerifyOptions(trusted_simulation_roots=roots)
    )
    now = datetime.now(UTC)
    return verifier.verify(quote, platform.collateral(now), now)


SH = ["/bin/sh"]


# --- the dance -----------------------------------------------------------------------------------


async def test_a_shell_program_gets_a_verifiable_quote_with_its_report_data(
    images: SimImages,
) -> None:
    script = (
        "printf 'my-report-data' > /dev/attestation/user_report_data; "
        "cat /dev/attestation/quote > /untrusted/quote.bin; "
        "cat /dev/attestation/attestation_type > /untrusted/type"
    )
    image = images.make([*SH, "-c", script], [*SH, "/usr/bin/cat"])
    code, io_dir, _ = await images.run(image, "launch")
    assert code == 0
    assert (io_dir / "type").read_text() == "dcap"
    verified = verify(images.runner, (io_dir / "quote.bin").read_bytes())
    assert verified.simulated
    body = verified.report_body
    assert body.report_data == b"my-report-data".ljust(64, b"\0")
    assert body.mrenclave == image.measurement("sim")
    assert body.mrsigner == image.mrsigner
    assert not body.debug
    with pytest.raises(UntrustedRootError):
        verify(images.runner, (io_dir / "quote.bin").read_bytes(), trusted=False)


async def test_a_python_program_gets_a_verifiable_quote_with_its_report_data(
    images: SimImages,
) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = (
        "rd = bytes(range(64))\n"
        "with open('/dev/attestation/user_report_data', 'wb', buffering=0) as f: f.write(rd)\n"
        "with open('/dev/attestation/quote', 'rb') as f: quote = f.read()\n"
        "with open('/untrusted/quote.bin', 'wb') as f: f.write(quote)\n"
        "with open('/dev/attestation/attestation_type') as f: kind = f.read()\n"
        "with open('/untrusted/type', 'w') as f: f.write(kind)\n"
    )
    python = str(Path(sys.executable).resolve())
    image = images.make(
        [python, "-S", "-I", "-c", code],
        [python],
        trusted=(f"{stdlib}/encodings/", f"{stdlib}/os.py", f"{stdlib}/lib-dynload/"),
    )
    status, io_dir, stderr = await images.run(image, "launch")
    assert status == 0, stderr
    assert (io_dir / "type").read_text() == "dcap"
    verified = verify(images.runner, (io_dir / "quote.bin").read_bytes())
    assert verified.report_body.report_data == bytes(range(64))
    assert verified.report_body.mrenclave == image.measurement("sim")


async def test_report_data_and_measurement_differ_between_programs(images: SimImages) -> None:
    # Two images, two report data: each quote names its own enclave and its own data.
    quotes = []
    for data in ("first", "second"):
        script = (
            f"printf '{data}' > /dev/attestation/user_report_data; "
            "cat /dev/attestation/quote > /untrusted/quote.bin"
        )
        image = images.make([*SH, "-c", script], [*SH, "/usr/bin/cat"])
        code, io_dir, _ = await images.run(image, f"launch-{data}")
        assert code == 0
        body = verify(images.runner, (io_dir / "quote.bin").read_bytes()).report_body
        assert body.mrenclave == image.measurement("sim")
        assert body.report_data == data.encode().ljust(64, b"\0")
        quotes.append(body)
    assert quotes[0].mrenclave != quotes[1].mrenclave


async def test_without_remote_attestation_there_is_no_quote(images: SimImages) -> None:
    script = (
        "cat /dev/attestation/attestation_type > /untrusted/type; "
        "if test -e /dev/attestation/quote; then echo yes; else echo no; fi > /untrusted/quote; "
        "printf x > /dev/attestation/user_report_data; echo $? > /untrusted/write"
    )
    image = images.make([*SH, "-c", script], [*SH, "/usr/bin/cat"], remote_attestation="none")
    code, io_dir, _ = await images.run(image, "launch")
    assert code == 0
    assert (io_dir / "type").read_text() == "none"
    assert (io_dir / "quote").read_text().strip() == "no"
    assert (io_dir / "write").read_text().strip() == "0"


async def test_encrypted_mounts_are_refused_by_the_sim_runner(images: SimImages) -> None:
    image = images.make(
        [*SH, "-c", "true"],
        SH,
        mounts=(
            '{ path = "/secret", uri = "file:io/secret", type = "encrypted", key_name = "mine" },',
        ),
    )
    assert [m.key_name for m in image.manifest.fs.mounts if m.type == "encrypted"] == ["mine"]
    launch = images.root / "launch"
    with pytest.raises(RunnerError, match="encrypted mounts are not supported"):
        await images.runner.launch(image, launch, stderr_path=images.root / "err")
    assert not (launch / ".dev-attestation").exists()


# --- a real image: golem-graphene build, the agent, golem-graphene verify-quote ------------------


@dataclass
class AgentQuote:
    build: dict[str, Any]
    quote_path: Path
    collateral_path: Path
    root_path: Path
    fingerprint: str
    transcript: Transcript


def run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli(argv)
    return code, out.getvalue()


async def attest_with_the_agent(image: EnclaveImage, root: Path) -> tuple[Transcript, bytes]:
    runner = SimRunner(root / "provider-data")
    task_id, nonce = new_task_id(), new_nonce()
    requestor = X25519Identity.generate().recipient()
    session = await EnclaveSession.launch(
        runner, image, root / "launch", stderr_path=root / "enclave.log"
    )
    try:
        ready = await session.wait_ready(timeout=60)
        evidence = await session.attest(
            format_task_id(task_id), nonce.hex(), requestor.to_string(), timeout=60
        )
    finally:
        await session.close()
    assert ready.protocol == 1, (root / "enclave.log").read_text()
    assert evidence.runner == "sim", (root / "enclave.log").read_text()
    assert evidence.quote is not None
    transcript = Transcript(
        task_id=task_id,
        nonce=nonce,
        enclave_key=evidence.enclave_key,
        signing_key=evidence.signing_key,
        requestor_key=requestor.public_bytes(),
    )
    assert evidence.simulated is True
    return transcript, evidence.quote


@pytest.fixture(scope="module")
def agent_quote(tmp_path_factory: pytest.TempPathFactory, key_path: Path) -> AgentQuote:
    root = tmp_path_factory.mktemp("agent")
    code, out = run_cli(
        ["build", str(SPEC), "-o", str(root / "image"), "--key", str(key_path), "--json"]
    )
    assert code == 0
    build = json.loads(out)
    image = EnclaveImage.load(Path(build["directory"]))
    transcript, quote = asyncio.run(attest_with_the_agent(image, root))
    platform = SimRunner(root / "provider-data").platform
    (root / "quote.bin").write_bytes(quote)
    (root / "collateral.json").write_text(platform.collateral(datetime.now(UTC)).to_json())
    return AgentQuote(
        build,
        root / "quote.bin",
        root / "collateral.json",
        platform.root_path,
        platform.root_fingerprint,
        transcript,
    )


def verify_quote(aq: AgentQuote, quote: Path | None = None, *extra: str) -> tuple[int, dict]:
    argv = [
        "verify-quote",
        str(quote or aq.quote_path),
        "--collateral",
        str(aq.collateral_path),
        "--json",
        *extra,
    ]
    code, out = run_cli(argv)
    return code, json.loads(out)


def test_agent_quote_verifies_with_the_sim_root_and_the_built_measurement(
    agent_quote: AgentQuote,
) -> None:
    expected = agent_quote.build["mrenclave"]["sim"]
    code, result = verify_quote(
        agent_quote,
        None,
        "--root",
        str(agent_quote.root_path),
        "--trust-simulated-root",
        agent_quote.fingerprint,
        "--mrenclave",
        expected,
        "--report-data",
        agent_quote.transcript.report_data().hex(),
    )
    assert (code, result["verdict"]) == (0, "ok"), result
    assert result["mrenclave"] == expected
    assert result["mrsigner"] == agent_quote.build["mrsigner"]
    assert result["simulated"] is True
    assert bytes.fromhex(result["report_data"]) == agent_quote.transcript.report_data()
    assert (
        agent_quote.build["mrenclave"]["gramine-sgx"] is None
        or "gramine-sgx" in (agent_quote.build["mrenclave"])
    )


def test_agent_quote_fails_another_measurement(agent_quote: AgentQuote) -> None:
    code, result = verify_quote(
        agent_quote,
        None,
        "--root",
        str(agent_quote.root_path),
        "--trust-simulated-root",
        agent_quote.fingerprint,
        "--mrenclave",
        "00" * 32,
    )
    assert (code, result["verdict"]) == (1, "fail")
    assert result["mrenclave"] == agent_quote.build["mrenclave"]["sim"]  # still reported


def test_sim_root_is_refused_unless_trusted_by_name(agent_quote: AgentQuote) -> None:
    code, result = verify_quote(agent_quote, None, "--root", str(agent_quote.root_path))
    assert (code, result["verdict"]) == (1, "fail")
    assert result["error"]["code"] == "untrusted_root"
    code, result = verify_quote(
        agent_quote,
        None,
        "--root",
        str(agent_quote.root_path),
        "--trust-simulated-root",
        "ab" * 32,  # another simulation root's fingerprint
    )
    assert result["error"]["code"] == "untrusted_root"


def test_agent_quote_fails_with_the_default_intel_root(agent_quote: AgentQuote) -> None:
    code, result = verify_quote(
        agent_quote, None, "--trust-simulated-root", agent_quote.fingerprint
    )
    assert (code, result["verdict"]) == (1, "fail")
    assert result["error"]["code"] == "untrusted_root"


def _regions(quote: bytes) -> dict[str, int]:
    parsed = Quote.from_bytes(quote)
    cert_data = len(quote) - len(parsed.certification_data)
    return {
        "header:version": 0,
        "header:user_data": 40,
        "report_body:mrenclave": 48 + 64,
        "report_body:report_data": 48 + 320 + 5,
        "signature": 436 + 10,
        "attestation_key": 436 + 64 + 3,
        "qe_report": 436 + 128 + 70,
        "qe_report_signature": 436 + 128 + 384 + 7,
        "cert_data:leaf": cert_data + 300,
        "cert_data:root": len(quote) - 120,
    }


@pytest.mark.parametrize(
    "region",
    [
        "header:version",
        "header:user_data",
        "report_body:mrenclave",
        "report_body:report_data",
        "signature",
        "attestation_key",
        "qe_report",
        "qe_report_signature",
        "cert_data:leaf",
        "cert_data:root",
    ],
)
def test_any_flipped_byte_fails(agent_quote: AgentQuote, tmp_path: Path, region: str) -> None:
    quote = bytearray(agent_quote.quote_path.read_bytes())
    quote[_regions(bytes(quote))[region]] ^= 0x01
    flipped = tmp_path / "flipped.bin"
    flipped.write_bytes(bytes(quote))
    code, result = verify_quote(
        agent_quote,
        flipped,
        "--root",
        str(agent_quote.root_path),
        "--trust-simulated-root",
        agent_quote.fingerprint,
    )
    assert code == 1
    assert result["verdict"] == "fail"
    assert result["error"]["code"] not in ("", None)
