"""Receipts: the model, the signature domain, and every check of receipt verification.

Steps (b)-(e) run through :func:`check_receipt` with a real Intel quote (the ``phala_sgx``
vector) whose 64 report-data bytes are patched to bind a synthetic task: it parses, and its
verified form is the vector's real verification result with the patched quote swapped in (the
ISV signature would no longer verify, which steps (b)-(e) do not look at). Step (a) and the
whole path run through :func:`verify_receipt_bundle` with quotes signed by the throw-away test
PKI of ``tests/unit/attestation/_sgx_test_pki.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import golem_graphene
import golem_graphene.canonical_json as cj_module
import golem_graphene.sealing as sealing
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.policy import MrEnclave, default_policy
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.verifier import QuoteVerifier, VerifiedQuote, VerifyOptions
from golem_graphene.errors import PolicyError, ReceiptError, UntrustedRootError
from golem_graphene.protocol.binding import Transcript, new_nonce, new_task_id
from golem_graphene.protocol.messages import Evidence, Runner
from golem_graphene.sealing import receipt as receipt_module
from golem_graphene.sealing.age import encrypt_stream
from golem_graphene.sealing.keys import X25519Identity
from golem_graphene.sealing.receipt import (
    RECEIPT_SIGNATURE_DOMAIN,
    Measurement,
    OutputEntry,
    Receipt,
    ReceiptBindingError,
    ReceiptBundle,
    ReceiptCheckError,
    ReceiptEvidenceError,
    ReceiptFormatError,
    ReceiptMeasurementError,
    ReceiptOutputError,
    ReceiptSignatureError,
    SignedReceipt,
    Timings,
    VerifiedReceipt,
    check_receipt,
    sign_receipt,
    verify_receipt_bundle,
    verify_receipt_signature,
)

PHALA = "phala_sgx"
OUTPUTS = {"stdout": b"hello\n", "stderr": b"", "result.csv": b"a,b\n" * 40_000}
STARTED = datetime(2025, 7, 19, 9, 0, 0, 123456, tzinfo=UTC)


def _load_test_pki() -> ModuleType:
    """The synthetic-PKI helper next to the attestation unit tests (one module instance)."""
    if "_sgx_test_pki" in sys.modules:
        return sys.modules["_sgx_test_pki"]
    path = Path(__file__).resolve().parents[1] / "attestation" / "_sgx_test_pki.py"
    spec = importlib.util.spec_from_file_location("_sgx_test_pki", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_sgx_test_pki"] = module
    spec.loader.exec_module(module)
    return module


tp = _load_test_pki()


# --- building runs ----------------------------------------------------------------------------


@dataclass
class Run:
    """One finished task as the enclave would leave it: sealed outputs, a signed bundle."""

    requestor: X25519Identity
    enclave: X25519PrivateKey
    signer: Ed25519PrivateKey
    transcript: Transcript
    outputs_dir: Path
    quote: bytes
    bundle: ReceiptBundle

    @property
    def receipt(self) -> Receipt:
        return self.bundle.receipt

    def resign(self, signer: Ed25519PrivateKey | None = None, **changes: Any) -> ReceiptBundle:
        """The bundle with receipt fields changed and signed again (by ``signer``, default S)."""
        key = signer or self.signer
        fields = {"signing_key": key.public_key().public_bytes_raw(), **changes}
        receipt = self.receipt.model_copy(update=fields)
        receipt = Receipt.from_json(receipt.to_json())  # re-validate the changed copy
        return ReceiptBundle.from_signed(sign_receipt(receipt, key), self.bundle.evidence)


def seal_outputs(directory: Path, recipient: X25519Identity, plain: dict[str, bytes]) -> list[Any]:
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, data in plain.items():
        sink = io.BytesIO()
        encrypt_stream(io.BytesIO(data), sink, [recipient.recipient()])
        ciphertext = sink.getvalue()
        (directory / f"{name}.age").write_bytes(ciphertext)
        entries.append(
            OutputEntry(
                name=name,
                size=len(data),
                plaintext_sha256=hashlib.sha256(data).digest(),
                ciphertext_size=len(ciphertext),
                ciphertext_sha256=hashlib.sha256(ciphertext).digest(),
            )
        )
    return entries


def make_run(
    directory: Path,
    quote_for: Callable[[bytes], bytes],
    *,
    mrenclave: bytes,
    runner: Runner = "gramine-sgx",
    simulated: bool = False,
    collateral: QuoteCollateral | None = None,
    outputs: dict[str, bytes] | None = None,
) -> Run:
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
    quote = quote_for(t.report_data())
    entries = seal_outputs(directory, requestor, OUTPUTS if outputs is None else outputs)
    receipt = Receipt(
        task_id=t.task_id,
        nonce=t.nonce,
        measurement=Measurement(mrenclave=mrenclave, runner=runner, simulated=simulated),
        input_manifest_sha256=hashlib.sha256(b"manifest").digest(),
        exit_status=0,
        termination="exited",
        outputs=entries,
        timings=Timings(
            started_at=STARTED, finished_at=STARTED + timedelta(seconds=2), duration_ms=2000
        ),
        requestor_key=requestor.recipient().to_string(),
        enclave_key=t.enclave_key,
        signing_key=t.signing_key,
    )
    evidence = Evidence(
        task_id=t.task_id,
        quote=quote,
        enclave_key=t.enclave_key,
        signing_key=t.signing_key,
        collateral=collateral,
        runner=runner,
        simulated=simulated,
    )
    bundle = ReceiptBundle.from_signed(sign_receipt(receipt, signer), evidence)
    return Run(requestor, enclave, signer, t, directory, quote, bundle)


@pytest.fixture(scope="module")
def phala_verified(vectors: Path) -> VerifiedQuote:
    """The real verification result of the phala vector at its own time."""
    pack = vectors / "dcap" / PHALA
    case = json.loads((pack / "case.json").read_text())
    at = datetime.fromtimestamp(case["verify_at_epoch"], UTC)
    collateral = QuoteCollateral.from_json((pack / "collateral.json").read_bytes())
    return QuoteVerifier().verify((pack / "quote.bin").read_bytes(), collateral, at)


@dataclass
class PatchedRun:
    run: Run
    verified: VerifiedQuote


@pytest.fixture
def patched(tmp_path: Path, phala_verified: VerifiedQuote) -> PatchedRun:
    """A run whose quote is the phala quote with our report data patched in."""
    real = phala_verified.quote.raw

    def quote_for(report_data: bytes) -> bytes:
        raw = bytearray(real)
        raw[368:432] = report_data
        return bytes(raw)

    run = make_run(tmp_path / "outputs", quote_for, mrenclave=phala_verified.report_body.mrenclave)
    verified = dataclasses.replace(phala_verified, quote=Quote.from_bytes(run.quote))
    return PatchedRun(run, verified)


def check(p: PatchedRun, bundle: ReceiptBundle | None = None, **kwargs: Any) -> VerifiedReceipt:
    return check_receipt(bundle or p.run.bundle, p.verified, **kwargs)


def expect(
    kind: type[ReceiptCheckError],
    check_name: str,
    p: PatchedRun,
    bundle: ReceiptBundle | None = None,
    **kwargs: Any,
) -> ReceiptCheckError:
    with pytest.raises(kind) as info:
        check(p, bundle, **kwargs)
    assert info.value.check == check_name
    assert info.value.code == f"receipt_{check_name}"
    return info.value


# --- the happy path ---------------------------------------------------------------------------


def test_check_receipt_without_outputs(patched: PatchedRun) -> None:
    result = check(patched)
    assert result.receipt == patched.run.receipt
    assert not result.outputs_checked
    assert not result.plaintexts_checked
    assert not result.simulated


def test_check_receipt_with_outputs_and_identity(patched: PatchedRun) -> None:
    run = patched.run
    result = check(patched, outputs_dir=run.outputs_dir, identity=run.requestor)
    assert result.outputs_checked and result.plaintexts_checked
    fields = result.to_dict()
    assert fields["task_id"] == run.transcript.task_id.hex()
    assert fields["exit_status"] == 0
    assert fields["status"] == "ConfigurationAndSWHardeningNeeded"
    assert [o["name"] for o in fields["outputs"]] == list(OUTPUTS)


def test_expected_task_and_nonce(patched: PatchedRun) -> None:
    t = patched.run.transcript
    check(patched, expected_task_id=t.task_id, expected_nonce=t.nonce)
    expect(ReceiptBindingError, "nonce", patched, expected_nonce=new_nonce())
    expect(ReceiptBindingError, "task_id", patched, expected_task_id=new_task_id())


def test_non_age_files_beside_the_outputs_are_ignored(patched: PatchedRun) -> None:
    (patched.run.outputs_dir / "receipt.json").write_text("{}")
    check(patched, outputs_dir=patched.run.outputs_dir)


# --- (b) binding ------------------------------------------------------------------------------


def test_tampered_signature(patched: PatchedRun) -> None:
    sig = bytearray(patched.run.bundle.signature)
    sig[10] ^= 0x01
    bundle = patched.run.bundle.model_copy(update={"signature": bytes(sig)})
    expect(ReceiptSignatureError, "signature", patched, bundle)


def test_receipt_changed_after_signing(patched: PatchedRun) -> None:
    receipt = patched.run.receipt.model_copy(update={"exit_status": 1})
    bundle = patched.run.bundle.model_copy(update={"receipt": receipt})
    expect(ReceiptSignatureError, "signature", patched, bundle)


def test_receipt_from_another_task(patched: PatchedRun) -> None:
    """A validly signed receipt for another task id, beside this task's evidence."""
    other = patched.run.resign(task_id=new_task_id())
    expect(ReceiptBindingError, "task_id", patched, other)
    # ... and with the evidence's (unsigned) task id edited to match: the quote refuses it.
    evidence = other.evidence.model_copy(update={"task_id": other.receipt.task_id})
    err = expect(
        ReceiptBindingError, "report_data", patched, other.model_copy(update={"evidence": evidence})
    )
    assert err.found == patched.run.transcript.report_data().hex()


def test_receipt_with_another_nonce(patched: PatchedRun) -> None:
    expect(ReceiptBindingError, "report_data", patched, patched.run.resign(nonce=new_nonce()))


def test_receipt_for_another_requestor(patched: PatchedRun) -> None:
    """Outputs redirected to another key R': R' is not the one in the report data."""
    thief = X25519Identity.generate().recipient().to_string()
    expect(ReceiptBindingError, "report_data", patched, patched.run.resign(requestor_key=thief))


def test_substituted_signing_key(patched: PatchedRun) -> None:
    """A relay re-signs an altered receipt with its own key S' and puts S' everywhere."""
    forger = Ed25519PrivateKey.generate()
    forged = patched.run.resign(signer=forger, exit_status=0, termination="exited")
    s_prime = forger.public_key().public_bytes_raw()
    evidence = forged.evidence.model_copy(update={"signing_key": s_prime})
    bundle = forged.model_copy(update={"evidence": evidence})
    verify_receipt_signature(bundle)  # the signature itself is fine ...
    expect(ReceiptBindingError, "report_data", patched, bundle)  # ... but S' is not attested


def test_bundle_signing_key_differs_from_the_receipts(patched: PatchedRun) -> None:
    bundle = patched.run.bundle.model_copy(update={"signing_key": bytes(32)})
    expect(ReceiptBindingError, "signing_key", patched, bundle)


def test_evidence_keys_differ_from_the_receipts(patched: PatchedRun) -> None:
    evidence = patched.run.bundle.evidence.model_copy(update={"enclave_key": bytes(32)})
    bundle = patched.run.bundle.model_copy(update={"evidence": evidence})
    expect(ReceiptBindingError, "enclave_key", patched, bundle)


def test_evidence_runner_differs(patched: PatchedRun) -> None:
    evidence = patched.run.bundle.evidence.model_copy(update={"runner": "sim", "simulated": True})
    bundle = patched.run.bundle.model_copy(update={"evidence": evidence})
    expect(ReceiptBindingError, "runner", patched, bundle)


def test_verified_quote_is_not_the_bundles(patched: PatchedRun) -> None:
    raw = bytearray(patched.run.quote)
    raw[200] ^= 1  # inside the report body, outside the report data
    verified = dataclasses.replace(patched.verified, quote=Quote.from_bytes(bytes(raw)))
    with pytest.raises(ReceiptBindingError) as info:
        check_receipt(patched.run.bundle, verified)
    assert info.value.check == "quote"


# --- (d) measurement --------------------------------------------------------------------------


def test_wrong_mrenclave(patched: PatchedRun) -> None:
    measurement = Measurement(mrenclave=bytes(32), runner="gramine-sgx", simulated=False)
    err = expect(
        ReceiptMeasurementError,
        "mrenclave",
        patched,
        patched.run.resign(measurement=measurement),
    )
    assert err.expected == patched.verified.report_body.mrenclave.hex()


def test_misstated_simulation(patched: PatchedRun) -> None:
    measurement = patched.run.receipt.measurement.model_copy(update={"simulated": True})
    expect(
        ReceiptMeasurementError, "simulated", patched, patched.run.resign(measurement=measurement)
    )


# --- (e) outputs ------------------------------------------------------------------------------


def _output_error(p: PatchedRun, check_name: str, output: str, **kwargs: Any) -> None:
    kwargs.setdefault("outputs_dir", p.run.outputs_dir)
    err = expect(ReceiptOutputError, check_name, p, **kwargs)
    assert err.output == output


def test_modified_output(patched: PatchedRun) -> None:
    path = patched.run.outputs_dir / "result.csv.age"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    _output_error(patched, "output_sha256", "result.csv")


def test_truncated_output(patched: PatchedRun) -> None:
    path = patched.run.outputs_dir / "result.csv.age"
    path.write_bytes(path.read_bytes()[:-17])
    _output_error(patched, "output_size", "result.csv")


def test_missing_output(patched: PatchedRun) -> None:
    (patched.run.outputs_dir / "stderr.age").unlink()
    _output_error(patched, "output_missing", "stderr")


def test_extra_output(patched: PatchedRun) -> None:
    (patched.run.outputs_dir / "payload.sh.age").write_bytes(b"x")
    _output_error(patched, "output_extra", "payload.sh")


def test_symlinked_output(patched: PatchedRun) -> None:
    path = patched.run.outputs_dir / "stdout.age"
    target = patched.run.outputs_dir.parent / "elsewhere"
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)
    _output_error(patched, "output_not_regular", "stdout")


def test_wrong_identity(patched: PatchedRun) -> None:
    err = expect(
        ReceiptOutputError,
        "identity",
        patched,
        outputs_dir=patched.run.outputs_dir,
        identity=X25519Identity.generate(),
    )
    assert err.expected == patched.run.receipt.requestor_key


def test_identity_among_several(patched: PatchedRun) -> None:
    ids = [X25519Identity.generate(), patched.run.requestor]
    assert check(patched, outputs_dir=patched.run.outputs_dir, identity=ids).plaintexts_checked


def _with_output(p: PatchedRun, name: str, **changes: Any) -> ReceiptBundle:
    outputs = tuple(
        o.model_copy(update=changes) if o.name == name else o for o in p.run.receipt.outputs
    )
    return p.run.resign(outputs=outputs)


def test_plaintext_digest_mismatch(patched: PatchedRun) -> None:
    bundle = _with_output(patched, "stdout", plaintext_sha256=bytes(32))
    check(patched, bundle, outputs_dir=patched.run.outputs_dir)  # ciphertexts alone pass
    _output_error(
        patched, "plaintext_sha256", "stdout", bundle=bundle, identity=patched.run.requestor
    )


def test_plaintext_size_mismatch(patched: PatchedRun) -> None:
    bundle = _with_output(patched, "result.csv", size=1)
    _output_error(
        patched, "plaintext_size", "result.csv", bundle=bundle, identity=patched.run.requestor
    )


def test_ciphertext_that_does_not_decrypt(patched: PatchedRun) -> None:
    """The receipt lists the digest of a corrupted ciphertext: the sizes and hashes match,
    decryption does not."""
    path = patched.run.outputs_dir / "stdout.age"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    bundle = _with_output(patched, "stdout", ciphertext_sha256=hashlib.sha256(data).digest())
    check(patched, bundle, outputs_dir=patched.run.outputs_dir)
    _output_error(
        patched, "output_decrypt", "stdout", bundle=bundle, identity=patched.run.requestor
    )


# --- signing ----------------------------------------------------------------------------------


def test_signature_domain_and_message(patched: PatchedRun) -> None:
    receipt = patched.run.receipt
    assert RECEIPT_SIGNATURE_DOMAIN == b"golem-graphene/v1/receipt\n"
    assert receipt.signed_message() == RECEIPT_SIGNATURE_DOMAIN + receipt.canonical_bytes()
    # Verify independently: raw Ed25519 over the domain and the canonical JSON.
    Ed25519PublicKey.from_public_bytes(receipt.signing_key).verify(
        patched.run.bundle.signature, RECEIPT_SIGNATURE_DOMAIN + receipt.canonical_bytes()
    )


def test_nacl_and_cryptography_keys_sign_alike(patched: PatchedRun) -> None:
    seed = bytes(range(32))
    nacl_key = nacl.signing.SigningKey(seed)
    crypto_key = Ed25519PrivateKey.from_private_bytes(seed)
    receipt = patched.run.receipt.model_copy(
        update={"signing_key": crypto_key.public_key().public_bytes_raw()}
    )
    a = sign_receipt(receipt, nacl_key)
    b = sign_receipt(receipt, crypto_key)
    assert a == b  # Ed25519 is deterministic
    verify_receipt_signature(a)
    assert SignedReceipt.from_json(a.to_json()) == a


def test_sign_refuses_a_key_the_receipt_does_not_name(patched: PatchedRun) -> None:
    with pytest.raises(ReceiptError, match="signing_key"):
        sign_receipt(patched.run.receipt, Ed25519PrivateKey.generate())
    with pytest.raises(ReceiptError, match="unsupported signing key"):
        sign_receipt(patched.run.receipt, b"\x00" * 32)  # type: ignore[arg-type]


def test_signature_over_an_invalid_public_key(patched: PatchedRun) -> None:
    bundle = patched.run.bundle.model_copy(update={"signing_key": b"\xff" * 32})
    with pytest.raises(ReceiptSignatureError):
        verify_receipt_signature(bundle)


# --- the model --------------------------------------------------------------------------------


def test_bundle_json_round_trip(patched: PatchedRun) -> None:
    bundle = patched.run.bundle
    data = bundle.to_json()
    again = ReceiptBundle.from_json(data)
    assert again == bundle
    assert again.signed == SignedReceipt(
        receipt=bundle.receipt, signature=bundle.signature, signing_key=bundle.signing_key
    )
    obj = json.loads(data)
    assert set(obj) == {"protocol", "receipt", "signature", "signing_key", "evidence"}
    assert obj["receipt"]["timings"]["started_at"] == "2025-07-19T09:00:00.123456Z"


def _receipt_obj(p: PatchedRun) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(p.run.receipt.to_json())
    return obj


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda o: o["outputs"].pop(0), "stdout"),
        (lambda o: o["outputs"].pop(1), "stderr"),
        (lambda o: o["outputs"].append(dict(o["outputs"][0])), "unique"),
        (lambda o: o.update(exit_status=-9), "exited"),
        (lambda o: o.update(termination="signaled"), "signal"),
        (lambda o: o.update(exit_status=256), "exit_status"),
        (lambda o: o.update(termination="crashed"), "termination"),
        (lambda o: o["timings"].update(finished_at="2025-07-19T08:00:00Z"), "before"),
        (lambda o: o["timings"].update(started_at="2025-07-19T09:00:00"), "time zone"),
        (lambda o: o["timings"].update(duration_ms=-1), "duration_ms"),
        (lambda o: o["measurement"].update(runner="docker"), "runner"),
        (lambda o: o.update(requestor_key="age1notakey"), "requestor_key"),
        (lambda o: o.update(protocol="golem-graphene/v0"), "protocol"),
        (lambda o: o.update(signature="00"), "signature"),
    ],
)
def test_receipt_rules(patched: PatchedRun, mutate: Callable[[Any], Any], rule: str) -> None:
    obj = _receipt_obj(patched)
    mutate(obj)
    with pytest.raises(ReceiptFormatError, match=rule):
        Receipt.from_json(json.dumps(obj).encode())


def test_signaled_and_timeout_statuses(patched: PatchedRun) -> None:
    obj = _receipt_obj(patched)
    obj.update(termination="signaled", exit_status=-9)
    assert Receipt.from_json(json.dumps(obj).encode()).exit_status == -9
    obj.update(termination="timeout", exit_status=137)
    assert Receipt.from_json(json.dumps(obj).encode()).termination == "timeout"


def test_times_are_normalised_to_utc(patched: PatchedRun) -> None:
    obj = _receipt_obj(patched)
    obj["timings"]["started_at"] = "2025-07-19T11:00:00.123456+02:00"
    receipt = Receipt.from_json(json.dumps(obj).encode())
    assert receipt.timings.started_at == STARTED
    assert json.loads(receipt.to_json())["timings"]["started_at"] == "2025-07-19T09:00:00.123456Z"


def test_output_lookup(patched: PatchedRun) -> None:
    assert patched.run.receipt.output("stdout").size == len(OUTPUTS["stdout"])
    with pytest.raises(KeyError):
        patched.run.receipt.output("nope")


def test_public_names_in_the_sealing_package() -> None:
    assert sorted(receipt_module.__all__) == sorted(
        [
            "RECEIPT_SIGNATURE_DOMAIN",
            "STD_STREAMS",
            "Measurement",
            "OutputCheck",
            "OutputEntry",
            "Receipt",
            "ReceiptBindingError",
            "ReceiptBundle",
            "ReceiptCheckError",
            "ReceiptEvidenceError",
            "ReceiptFormatError",
            "ReceiptMeasurementError",
            "ReceiptOutputError",
            "ReceiptSignatureError",
            "SignedReceipt",
            "Termination",
            "Timings",
            "VerifiedReceipt",
            "check_plaintext",
            "check_receipt",
            "sign_receipt",
            "verify_receipt_bundle",
            "verify_receipt_signature",
        ]
    )
    for name in (
        "InputManifest",
        "ReceiptBundle",
        "seal_manifest",
        "open_manifest",
        "check_inputs",
        "sign_receipt",
        "verify_receipt_bundle",
        "check_receipt",
    ):
        assert name in sealing.__all__
        assert getattr(sealing, name) is not None
    # The module must stay reachable under its own name (no function shadows it).
    assert golem_graphene.canonical_json is cj_module


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,11}", fullmatch=True).filter(
    lambda s: s not in ("stdout", "stderr")
)
digests = st.binary(min_size=32, max_size=32)
sizes = st.integers(0, 2**53 - 1)
outputs = st.lists(
    st.builds(
        OutputEntry,
        name=names,
        size=sizes,
        plaintext_sha256=digests,
        ciphertext_size=sizes,
        ciphertext_sha256=digests,
    ),
    max_size=4,
    unique_by=lambda o: o.name,
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.timezones()
)


@settings(max_examples=100, deadline=None)
@given(
    extra=outputs,
    started=times,
    seconds=st.integers(0, 10**6),
    status=st.integers(0, 255),
    runner=st.sampled_from(["sim", "gramine-sgx", "gramine-direct"]),
    simulated=st.booleans(),
    keys=st.lists(digests, min_size=5, max_size=5),
)
def test_receipt_canonical_form_round_trips(
    extra: list[OutputEntry],
    started: datetime,
    seconds: int,
    status: int,
    runner: Runner,
    simulated: bool,
    keys: list[bytes],
) -> None:
    std = [
        OutputEntry(
            name=n, size=0, plaintext_sha256=keys[0], ciphertext_size=1, ciphertext_sha256=keys[1]
        )
        for n in ("stdout", "stderr")
    ]
    receipt = Receipt(
        task_id=keys[2][:16],
        nonce=keys[3],
        measurement=Measurement(mrenclave=keys[4], runner=runner, simulated=simulated),
        input_manifest_sha256=keys[0],
        exit_status=status,
        termination="exited",
        outputs=[*std, *extra],
        timings=Timings(
            started_at=started,
            finished_at=started.astimezone(UTC) + timedelta(seconds=seconds),
            duration_ms=seconds * 1000,
        ),
        requestor_key=_RECIPIENT,
        enclave_key=keys[1],
        signing_key=keys[2],
    )
    canonical = receipt.canonical_bytes()
    again = Receipt.from_json(canonical)
    assert again == receipt
    assert again.canonical_bytes() == canonical


_RECIPIENT = X25519Identity.generate().recipient().to_string()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_receipt_format_errors(data: bytes) -> None:
    with pytest.raises(ReceiptFormatError):
        ReceiptBundle.from_json(data)


# --- the full path with step (a): quotes from the throw-away test PKI --------------------------


@dataclass
class PkiRun:
    run: Run
    verifier: QuoteVerifier
    collateral: QuoteCollateral


def pki_run(directory: Path, *, simulated: bool = False, embed: bool = True) -> PkiRun:
    pki = tp.SgxTestPki(simulated=simulated)
    cases: list[Any] = []

    def quote_for(report_data: bytes) -> bytes:
        cases.append(
            tp.SgxCase(pki, quote_options={"body": tp.report_body(report_data=report_data)})
        )
        quote: bytes = cases[-1].quote
        return quote

    # The collateral does not depend on the report data: sign it once with a throw-away case.
    collateral = tp.SgxCase(pki).collateral()
    run = make_run(
        directory,
        quote_for,
        mrenclave=tp.MRENCLAVE,
        runner="sim" if simulated else "gramine-sgx",
        simulated=simulated,
        collateral=collateral if embed else None,
    )
    anchor = pki.anchor()
    options = VerifyOptions(
        trusted_simulation_roots=frozenset({anchor.fingerprint}) if simulated else frozenset()
    )
    return PkiRun(run, QuoteVerifier(anchor=anchor, options=options), cases[0].collateral())


def test_verify_receipt_bundle_end_to_end(tmp_path: Path) -> None:
    p = pki_run(tmp_path / "out")
    bundle = ReceiptBundle.from_json(p.run.bundle.to_json())
    result = verify_receipt_bundle(
        bundle,
        outputs_dir=p.run.outputs_dir,
        identity=p.run.requestor,
        policy=default_policy(),
        verifier=p.verifier,
        at=tp.T0,
    )
    assert result.plaintexts_checked
    assert result.verified_quote.status.value == "UpToDate"
    assert not result.simulated


def test_verify_receipt_bundle_simulated(tmp_path: Path) -> None:
    p = pki_run(tmp_path / "out", simulated=True)
    result = verify_receipt_bundle(
        p.run.bundle, policy=default_policy(), verifier=p.verifier, at=tp.T0
    )
    assert result.simulated
    assert result.to_dict()["simulated"] is True
    # Without trusting the simulation root by name, the quote is refused in step (a).
    with pytest.raises(UntrustedRootError):
        verify_receipt_bundle(
            p.run.bundle,
            policy=default_policy(),
            verifier=QuoteVerifier(anchor=p.verifier.anchor),
            at=tp.T0,
        )


def test_policy_refusal_carries_what_was_established(tmp_path: Path) -> None:
    p = pki_run(tmp_path / "out")
    with pytest.raises(PolicyError) as info:
        verify_receipt_bundle(
            p.run.bundle, policy=MrEnclave(bytes(32)), verifier=p.verifier, at=tp.T0
        )
    assert info.value.check == "mrenclave"
    assert info.value.established["status"] == "UpToDate"


def test_collateral_from_the_caller(tmp_path: Path) -> None:
    p = pki_run(tmp_path / "out", embed=False)
    with pytest.raises(ReceiptEvidenceError) as info:
        verify_receipt_bundle(p.run.bundle, policy=default_policy(), verifier=p.verifier, at=tp.T0)
    assert info.value.check == "no_collateral"
    result = verify_receipt_bundle(
        p.run.bundle,
        policy=default_policy(),
        verifier=p.verifier,
        at=tp.T0,
        collateral=p.collateral,
    )
    assert result.receipt == p.run.receipt


def test_unattested_runner_cannot_be_verified(tmp_path: Path) -> None:
    p = pki_run(tmp_path / "out")
    evidence = Evidence(
        task_id=p.run.receipt.task_id,
        quote=None,
        enclave_key=p.run.receipt.enclave_key,
        signing_key=p.run.receipt.signing_key,
        runner="gramine-direct",
        simulated=True,
    )
    bundle = p.run.bundle.model_copy(update={"evidence": evidence})
    with pytest.raises(ReceiptEvidenceError) as info:
        verify_receipt_bundle(bundle, policy=default_policy(), verifier=p.verifier, at=tp.T0)
    assert info.value.check == "no_quote"


def test_quote_signed_for_other_report_data_is_refused_end_to_end(tmp_path: Path) -> None:
    """The provider swaps in a genuine quote of the same enclave from another task."""
    a = pki_run(tmp_path / "a")
    b_quote = tp.SgxCase(
        tp.SgxTestPki(), quote_options={"body": tp.report_body(report_data=bytes(64))}
    )
    evidence = a.run.bundle.evidence.model_copy(update={"quote": b_quote.quote})
    bundle = a.run.bundle.model_copy(update={"evidence": evidence})
    verifier = QuoteVerifier(anchor=b_quote.pki.anchor())
    with pytest.raises(ReceiptBindingError) as info:
        verify_receipt_bundle(
            bundle,
            policy=default_policy(),
            verifier=verifier,
            at=tp.T0,
            collateral=b_quote.collateral(),
        )
    assert info.value.check == "report_data"
