"""``golem-graphene verify-receipt``: verdicts, exit codes, JSON output, usage errors.

Bundles are made with the throw-away test PKI of ``tests/unit/attestation/_sgx_test_pki.py``
(quotes whose report data binds the task), trusted through ``--root``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from golem_graphene._cli import main
from golem_graphene.protocol.binding import Transcript, new_nonce, new_task_id
from golem_graphene.protocol.messages import Evidence
from golem_graphene.sealing.age import encrypt_stream
from golem_graphene.sealing.input_manifest import InputManifest
from golem_graphene.sealing.keys import X25519Identity
from golem_graphene.sealing.receipt import (
    Measurement,
    OutputEntry,
    Receipt,
    ReceiptBundle,
    Timings,
    sign_receipt,
)


def _load_test_pki() -> ModuleType:
    """The synthetic-PKI helper next to the attestation unit tests (one module instance)."""
    if "_sgx_test_pki" in sys.modules:
        return sys.modules["_sgx_test_pki"]
    path = Path(__file__).resolve().parent / "attestation" / "_sgx_test_pki.py"
    spec = importlib.util.spec_from_file_location("_sgx_test_pki", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_sgx_test_pki"] = module
    spec.loader.exec_module(module)
    return module


tp = _load_test_pki()
AT = "2030-01-01T00:00:00Z"
PLAINTEXTS = {"stdout": b"42\n", "stderr": b"warning: none\n", "answer.txt": b"42" * 1000}


@dataclass
class Files:
    bundle: Path
    root: Path
    outputs: Path
    identity: Path
    collateral: Path
    manifest: Path
    fingerprint: str
    task_id: str


def make_files(tmp_path: Path, *, simulated: bool = False, embed_collateral: bool = True) -> Files:
    pki = tp.SgxTestPki(simulated=simulated)
    requestor = X25519Identity.generate()
    enclave = X25519PrivateKey.generate()
    signer = Ed25519PrivateKey.generate()
    t = Transcript(
        task_id=new_task_id(),
        nonce=new_nonce(),
        enclave_key=enclave.public_key().public_bytes_raw(),
        signing_key=signer.public_key().public_bytes_raw(),
        requestor_key=requestor.recipient().public_bytes(),
    )
    case = tp.SgxCase(pki, quote_options={"body": tp.report_body(report_data=t.report_data())})
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    entries = []
    for name, data in PLAINTEXTS.items():
        sink = io.BytesIO()
        encrypt_stream(io.BytesIO(data), sink, [requestor.recipient()])
        (outputs / f"{name}.age").write_bytes(sink.getvalue())
        entries.append(
            OutputEntry(
                name=name,
                size=len(data),
                plaintext_sha256=hashlib.sha256(data).digest(),
                ciphertext_size=len(sink.getvalue()),
                ciphertext_sha256=hashlib.sha256(sink.getvalue()).digest(),
            )
        )
    runner = "sim" if simulated else "gramine-sgx"
    manifest = InputManifest(task_id=t.task_id, args=("-c", "answer"), inputs=())
    receipt = Receipt(
        task_id=t.task_id,
        nonce=t.nonce,
        measurement=Measurement(mrenclave=tp.MRENCLAVE, runner=runner, simulated=simulated),
        input_manifest_sha256=manifest.digest(),
        exit_status=3,
        termination="exited",
        outputs=entries,
        timings=Timings(
            started_at=tp.T0, finished_at=tp.T0 + timedelta(seconds=1), duration_ms=1000
        ),
        requestor_key=requestor.recipient().to_string(),
        enclave_key=t.enclave_key,
        signing_key=t.signing_key,
    )
    evidence = Evidence(
        task_id=t.task_id,
        quote=case.quote,
        enclave_key=t.enclave_key,
        signing_key=t.signing_key,
        collateral=case.collateral() if embed_collateral else None,
        runner=runner,
        simulated=simulated,
    )
    bundle = ReceiptBundle.from_signed(sign_receipt(receipt, signer), evidence)
    files = Files(
        bundle=tmp_path / "receipt.json",
        root=tmp_path / "root.pem",
        outputs=outputs,
        identity=tmp_path / "key.txt",
        collateral=tmp_path / "collateral.json",
        manifest=tmp_path / "input-manifest.json",
        fingerprint=pki.anchor().fingerprint,
        task_id=t.task_id.hex(),
    )
    files.bundle.write_bytes(bundle.to_json())
    files.root.write_bytes(pki.root.public_bytes(serialization.Encoding.PEM))
    files.identity.write_text(f"# test key\n{requestor.to_string()}\n")
    files.collateral.write_text(case.collateral_json())
    files.manifest.write_bytes(manifest.canonical_bytes())
    return files


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["verify-receipt", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


def base_args(f: Files, *extra: str | Path) -> list[str | Path]:
    """The bundle, its test root, the time, and a pinned measurement (unless ``extra`` pins)."""
    pin = [] if "--mrenclave" in extra else ["--mrenclave", tp.MRENCLAVE.hex()]
    return [f.bundle, "--root", f.root, "--at", AT, *pin, *extra]


def test_ok_human(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = make_files(tmp_path)
    code, out, err = run(capsys, *base_args(f))
    assert code == 0
    assert out == ""
    assert err.splitlines()[0] == "OK"
    assert f"task_id: {f.task_id}" in err
    assert "exit_status: 3 (exited)" in err
    assert "status: UpToDate" in err
    assert "not checked (no --outputs)" in err


def test_ok_json_with_outputs_and_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = make_files(tmp_path)
    code, out, err = run(capsys, *base_args(f, "--outputs", f.outputs, "-i", f.identity, "--json"))
    assert code == 0, err
    result = json.loads(out)
    assert result["verdict"] == "ok"
    assert result["task_id"] == f.task_id
    assert result["exit_status"] == 3
    assert result["status"] == "UpToDate"
    assert result["simulated"] is False
    assert result["outputs_checked"] is True
    assert result["plaintexts_checked"] is True
    assert result["measurement"]["mrenclave"] == tp.MRENCLAVE.hex()
    assert [o["name"] for o in result["outputs"]] == list(PLAINTEXTS)
    assert "error" not in result


def test_tampered_output_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = make_files(tmp_path)
    path = f.outputs / "answer.txt.age"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    code, out, err = run(capsys, *base_args(f, "--outputs", f.outputs, "--json"))
    assert code == 1
    assert err.startswith("FAIL: receipt_output_sha256: ")
    assert "answer.txt" in err
    result = json.loads(out)
    assert result["verdict"] == "fail"
    assert result["error"]["code"] == "receipt_output_sha256"
    assert result["task_id"] == f.task_id


def test_tampered_receipt_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = make_files(tmp_path)
    obj: dict[str, Any] = json.loads(f.bundle.read_bytes())
    obj["receipt"]["exit_status"] = 0
    f.bundle.write_text(json.dumps(obj))
    code, _, err = run(capsys, *base_args(f))
    assert code == 1
    assert err.startswith("FAIL: receipt_signature: ")


def test_wrong_identity_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = make_files(tmp_path)
    f.identity.write_text(X25519Identity.generate().to_string() + "\n")
    code, _, err = run(capsys, *base_args(f, "--outputs", f.outputs, "-i", f.identity))
    assert code == 1
    assert err.startswith("FAIL: receipt_identity: ")


def test_policy_refusal_reports_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = make_files(tmp_path)
    code, out, err = run(capsys, *base_args(f, "--mrenclave", "00" * 32, "--json"))
    assert code == 1
    assert err.startswith("FAIL: policy_mrenclave: ")
    result = json.loads(out)
    assert result["status"] == "UpToDate"
    assert result["error"]["code"] == "policy_mrenclave"


def test_intel_root_refuses_a_test_pki_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = make_files(tmp_path)
    code, _, err = run(capsys, f.bundle, "--at", AT, "--mrenclave", tp.MRENCLAVE.hex())
    assert code == 1
    assert err.startswith("FAIL: untrusted_root: ")


def test_simulated_needs_explicit_trust(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = make_files(tmp_path, simulated=True)
    code, _, err = run(capsys, *base_args(f))
    assert code == 1
    assert err.startswith("FAIL: untrusted_root: ")
    code, out, err = run(capsys, *base_args(f, "--trust-simulated-root", f.fingerprint, "--json"))
    assert code == 0, err
    assert "WARNING: a SIMULATED root is trusted" in err
    assert "WARNING: SIMULATED run" in err
    assert json.loads(out)["simulated"] is True


def test_simulated_root_trusted_by_fingerprint_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As for ``run``, ``--trust-simulated-root FP`` is enough: the quote's own chain ends in
    the root with that fingerprint, so no ``--root`` file is needed (issue 14, item 5)."""
    f = make_files(tmp_path, simulated=True)
    pin = ["--mrenclave", tp.MRENCLAVE.hex()]
    code, _, err = run(capsys, f.bundle, "--at", AT, *pin, "--trust-simulated-root", f.fingerprint)
    assert code == 0, err
    # Another fingerprint is no trust at all: the default root refuses the chain, and the
    # message never offers the chain's own fingerprint to copy.
    other = "ab" * 32
    code, _, err = run(capsys, f.bundle, "--at", AT, *pin, "--trust-simulated-root", other)
    assert code == 1
    assert "\nFAIL: untrusted_root: " in err
    assert f.fingerprint not in err


def test_no_pinned_measurement_is_said_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = make_files(tmp_path)
    code, _, err = run(capsys, f.bundle, "--root", f.root, "--at", AT)
    assert code == 0, err
    assert "WARNING: NO MEASUREMENT IS PINNED" in err
    assert "ANY enclave is accepted" in err
    assert tp.MRENCLAVE.hex() in err
    code, _, err = run(capsys, *base_args(f))
    assert code == 0, err
    assert "NO MEASUREMENT" not in err


def test_collateral_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = make_files(tmp_path, embed_collateral=False)
    code, _, err = run(capsys, *base_args(f))
    assert code == 1
    assert err.startswith("FAIL: receipt_no_collateral: ")
    code, _, err = run(capsys, *base_args(f, "--collateral", f.collateral))
    assert code == 0, err


def test_the_input_manifest_sent_is_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The receipt is a public proof of what ran: given the manifest that was sent, its
    digest must be the receipt's (issue 15, item 5)."""
    f = make_files(tmp_path)
    code, out, err = run(capsys, *base_args(f, "--input-manifest", f.manifest, "--json"))
    assert code == 0, err
    assert json.loads(out)["input_manifest_checked"] is True
    other = InputManifest(task_id=bytes.fromhex(f.task_id), args=("-c", "another"), inputs=())
    f.manifest.write_bytes(other.canonical_bytes())
    code, out, err = run(capsys, *base_args(f, "--input-manifest", f.manifest, "--json"))
    assert code == 1
    assert err.startswith("FAIL: receipt_input_manifest: ")
    assert other.digest().hex() in err
    assert json.loads(out)["error"]["code"] == "receipt_input_manifest"
    f.manifest.write_text("{not json")
    code, _, err = run(capsys, *base_args(f, "--input-manifest", f.manifest))
    assert code == 2
    assert "the input manifest" in err


def test_run_output_folders_are_taken_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--outputs`` names the folder run wrote: its ``.sealed`` copies and its
    ``.input-manifest.json`` are found there (issue 14, item 5)."""
    f = make_files(tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    f.outputs.rename(results / ".sealed")
    f.manifest.rename(results / ".input-manifest.json")
    code, out, err = run(capsys, *base_args(f, "--outputs", results, "-i", f.identity, "--json"))
    assert code == 0, err
    result = json.loads(out)
    assert result["plaintexts_checked"] and result["input_manifest_checked"]


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda t: t.replace('"exit_status":3', '"exit_status":0,"exit_status":3'), "exit_status"),
        (lambda t: t.replace('{"protocol"', '{"receipt":{"bogus":1},"protocol"', 1), "receipt"),
        (lambda t: t.replace('"signature":', '"signature":"00","signature":', 1), "signature"),
        (lambda t: t.replace('"outputs":', '"outputs":[],"outputs":', 1), "outputs"),
        (lambda t: t.replace('"runner":', '"runner":"sim","runner":', 1), "runner"),
    ],
    ids=["exit-status", "receipt-first", "signature", "outputs", "evidence-runner"],
)
def test_a_bundle_with_a_duplicated_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, where: str
) -> None:
    """The last value is the signed one, so a lenient parser would say OK; another reader that
    keeps the first value reads a different receipt from a file called OK (issue 15, item 4)."""
    f = make_files(tmp_path)
    text = f.bundle.read_text()
    edited = edit(text)
    assert edited != text
    f.bundle.write_text(edited)
    code, out, err = run(capsys, *base_args(f, "--json"))
    assert code == 1, err
    assert err.startswith("FAIL: receipt_format: invalid ReceiptBundle: duplicate object key")
    assert where in err
    assert json.loads(out)["error"]["code"] == "receipt_format"


def test_a_duplicated_key_through_the_installed_cli(tmp_path: Path) -> None:
    import subprocess

    f = make_files(tmp_path)
    f.bundle.write_text(
        f.bundle.read_text().replace('"exit_status":3', '"exit_status":0,"exit_status":3')
    )
    cli = Path(sys.executable).parent / "golem-graphene"
    done = subprocess.run(
        [cli, "verify-receipt", *(str(a) for a in base_args(f))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("FAIL: receipt_format: ")


def test_a_bad_signature_names_the_key_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No ``expected None`` (issue 15, item 6): only the values known are shown."""
    f = make_files(tmp_path)
    obj: dict[str, Any] = json.loads(f.bundle.read_bytes())
    obj["receipt"]["exit_status"] = 0
    f.bundle.write_text(json.dumps(obj))
    code, _, err = run(capsys, *base_args(f))
    assert code == 1
    assert err.startswith("FAIL: receipt_signature: ")
    assert "None" not in err
    assert obj["signing_key"] in err


def test_malformed_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = make_files(tmp_path)
    f.bundle.write_text('{"receipt": 1}')
    code, out, err = run(capsys, *base_args(f, "--json"))
    assert code == 1
    assert err.startswith("FAIL: receipt_format: ")
    assert json.loads(out)["verdict"] == "fail"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-i", "IDENTITY"], "needs --outputs"),
        (["--outputs", "MISSING"], "must be a directory"),
        (["--accept-tcb", "Great"], "--accept-tcb takes a TCB status"),
        (["--mrenclave", "abcd"], "--mrenclave takes 64 hex digits"),
        (["--at", "yesterday"], "--at"),
        (["--collateral", "MISSING"], "cannot read the collateral"),
        (["--outputs", "OUTPUTS", "-i", "BADKEY"], "cannot use the identity file"),
        (["--outputs", "OUTPUTS", "-i", "MISSING"], "cannot read identity"),
    ],
)
def test_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    f = make_files(tmp_path)
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("AGE-SECRET-KEY-1NOTAKEY\n")
    names = {
        "IDENTITY": str(f.identity),
        "MISSING": str(tmp_path / "missing"),
        "OUTPUTS": str(f.outputs),
        "BADKEY": str(bad_key),
    }
    args = [names.get(a, a) for a in extra]
    code, out, err = run(
        capsys, f.bundle, "--root", f.root, *(["--at", AT] if "--at" not in args else []), *args
    )
    assert code == 2
    assert message in err
    assert out == ""


def test_missing_bundle_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, tmp_path / "nope.json", "--at", AT)
    assert code == 2
    assert "cannot read the receipt bundle" in err
