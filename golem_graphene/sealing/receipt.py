"""Receipt bundles (DESIGN section 4, step 6) and their offline verification.

The receipt itself, what the enclave signs and how, is in
:mod:`golem_graphene.sealing.receipt_document` (kept small for the in-enclave agent); this
module re-exports it, so ``golem_graphene.sealing.receipt`` is the one place to import from.

A :class:`ReceiptBundle` is the self-contained proof, one JSON file::

    {"protocol": "golem-graphene/v1",
     "receipt": {...},                      # the Receipt
     "signature": "<128 hex>",              # Ed25519, see above
     "signing_key": "<64 hex>",             # S.pub
     "evidence": {...}}                     # the Evidence message: quote, E.pub, S.pub,
                                            # collateral, runner, simulated

:func:`verify_receipt_bundle` checks it offline: (a) quote and collateral verify and the policy
holds; (b) the quote's report data binds the receipt's task id, nonce, ``E.pub``, ``S.pub`` and
``R.pub``; (c) the signature; (d) the measurement; (e) optionally each output ciphertext, and,
with the requestor's identity, each plaintext. Output ciphertexts are the files ``<name>.age``.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.policy import Policy
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.verifier import QuoteVerifier, VerifiedQuote
from golem_graphene.errors import Error, VerificationError
from golem_graphene.limits import MAX_RECEIPT_BUNDLE_BYTES
from golem_graphene.protocol.binding import BindingError, check_report_data
from golem_graphene.protocol.messages import Evidence, Hex32, Hex64, Message
from golem_graphene.protocol.version import PROTOCOL_NAME, ProtocolName
from golem_graphene.sealing.age import decrypt_stream
from golem_graphene.sealing.digests import HashingSink
from golem_graphene.sealing.input_manifest import (
    CIPHERTEXT_SUFFIX,
    FileCheckError,
    check_file,
    ciphertext_name,
)
from golem_graphene.sealing.keys import X25519Identity
from golem_graphene.sealing.receipt_document import (
    RECEIPT_SIGNATURE_DOMAIN,
    STD_STREAMS,
    Measurement,
    OutputEntry,
    Receipt,
    ReceiptBindingError,
    ReceiptCheckError,
    ReceiptEvidenceError,
    ReceiptFormatError,
    ReceiptMeasurementError,
    ReceiptOutputError,
    ReceiptSignatureError,
    SignedReceipt,
    Termination,
    Timings,
    sign_receipt,
    verify_receipt_signature,
)

__all__ = [
    "RECEIPT_SIGNATURE_DOMAIN",
    "STD_STREAMS",
    "Measurement",
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


class ReceiptBundle(Message):
    """The self-contained proof file: signed receipt plus the enclave's evidence."""

    max_json_bytes: ClassVar[int] = MAX_RECEIPT_BUNDLE_BYTES
    format_error: ClassVar[type[Error]] = ReceiptFormatError

    protocol: ProtocolName = PROTOCOL_NAME
    receipt: Receipt
    signature: Hex64
    signing_key: Hex32
    evidence: Evidence

    @classmethod
    def from_signed(cls, signed: SignedReceipt, evidence: Evidence) -> ReceiptBundle:
        """Bundle a signed receipt with the evidence published for its task."""
        return cls(
            receipt=signed.receipt,
            signature=signed.signature,
            signing_key=signed.signing_key,
            evidence=evidence,
        )

    @property
    def signed(self) -> SignedReceipt:
        """The signed receipt without the evidence."""
        return SignedReceipt(
            receipt=self.receipt, signature=self.signature, signing_key=self.signing_key
        )


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt whose quote, binding, signature and measurement verified.

    ``outputs_checked``: the output ciphertexts matched; ``plaintexts_checked``: they were also
    decrypted and the plaintexts matched.
    """

    receipt: Receipt
    verified_quote: VerifiedQuote
    outputs_checked: bool
    plaintexts_checked: bool

    @property
    def simulated(self) -> bool:
        """True when the quote came from a (trusted) simulation root: no real SGX protection."""
        return self.verified_quote.simulated

    def to_dict(self) -> dict[str, Any]:
        """JSON fields for the CLI: task, exit, outputs, measurement, TCB status, simulation."""
        receipt = self.receipt.model_dump(mode="json")
        return {
            "task_id": receipt["task_id"],
            "exit_status": receipt["exit_status"],
            "termination": receipt["termination"],
            "outputs": receipt["outputs"],
            "measurement": receipt["measurement"],
            "status": self.verified_quote.status.value,
            "simulated": self.verified_quote.simulated,
            "outputs_checked": self.outputs_checked,
            "plaintexts_checked": self.plaintexts_checked,
        }


def _same(check: str, what: str, expected: bytes, found: bytes) -> None:
    if not hmac.compare_digest(expected, found):
        raise ReceiptBindingError(
            check, f"the {what} differs", expected=expected.hex(), found=found.hex()
        )


def _check_consistency(bundle: ReceiptBundle, verified: VerifiedQuote) -> None:
    receipt, evidence = bundle.receipt, bundle.evidence
    _same(
        "signing_key",
        "bundle's signing key and the receipt's",
        receipt.signing_key,
        bundle.signing_key,
    )
    _same(
        "signing_key",
        "evidence's signing key and the receipt's",
        receipt.signing_key,
        evidence.signing_key,
    )
    _same(
        "enclave_key",
        "evidence's enclave key and the receipt's",
        receipt.enclave_key,
        evidence.enclave_key,
    )
    _same("task_id", "evidence's task id and the receipt's", receipt.task_id, evidence.task_id)
    if evidence.runner != receipt.measurement.runner:
        raise ReceiptBindingError(
            "runner",
            "the evidence's runner and the receipt's differ",
            expected=receipt.measurement.runner,
            found=evidence.runner,
        )
    if evidence.quote is None or not hmac.compare_digest(evidence.quote, verified.quote.raw):
        raise ReceiptBindingError(
            "quote", "the verified quote is not the one in the bundle's evidence"
        )


def _identities(
    identity: X25519Identity | Sequence[X25519Identity] | None,
) -> list[X25519Identity]:
    if identity is None:
        return []
    if isinstance(identity, X25519Identity):
        return [identity]
    return list(identity)


def _check_plaintext(path: Path, entry: OutputEntry, identities: list[X25519Identity]) -> None:
    sink = HashingSink()
    try:
        with path.open("rb") as src:
            decrypt_stream(src, cast(BinaryIO, sink), identities)
    except OSError as exc:
        raise ReceiptOutputError(
            "output_read",
            f"{entry.name}: cannot read the ciphertext: {exc.strerror or exc}",
            output=entry.name,
        ) from exc
    except Error as exc:
        raise ReceiptOutputError(
            "output_decrypt",
            f"{entry.name}: the ciphertext does not decrypt: {exc.describe()}",
            output=entry.name,
        ) from exc
    check_plaintext(entry, sink.size, sink.hash.digest())


def check_plaintext(entry: OutputEntry, size: int, sha256: bytes) -> None:
    """Check an output's decrypted size and SHA-256 against the receipt's ``entry``.

    Raises :class:`ReceiptOutputError` (check ``plaintext_size``, then ``plaintext_sha256``).
    """
    if size != entry.size:
        raise ReceiptOutputError(
            "plaintext_size",
            f"{entry.name}: the plaintext size differs",
            output=entry.name,
            expected=entry.size,
            found=size,
        )
    if not hmac.compare_digest(sha256, entry.plaintext_sha256):
        raise ReceiptOutputError(
            "plaintext_sha256",
            f"{entry.name}: the plaintext SHA-256 differs",
            output=entry.name,
            expected=entry.plaintext_sha256.hex(),
            found=sha256.hex(),
        )


def _check_outputs(receipt: Receipt, outputs_dir: Path, identities: list[X25519Identity]) -> None:
    declared = {ciphertext_name(o.name) for o in receipt.outputs}
    try:
        with os.scandir(outputs_dir) as entries:
            present = sorted(e.name for e in entries if e.name.endswith(CIPHERTEXT_SUFFIX))
    except OSError as exc:
        raise ReceiptOutputError(
            "output_read", f"cannot list the outputs directory: {exc.strerror or exc}"
        ) from exc
    for file_name in present:
        if file_name not in declared:
            raise ReceiptOutputError(
                "output_extra",
                f"{file_name}: an output file the receipt does not list",
                output=file_name.removesuffix(CIPHERTEXT_SUFFIX),
            )
    for entry in receipt.outputs:
        path = outputs_dir / ciphertext_name(entry.name)
        try:
            check_file(
                path, name=entry.name, size=entry.ciphertext_size, sha256=entry.ciphertext_sha256
            )
        except FileCheckError as exc:
            raise ReceiptOutputError(
                f"output_{exc.check}",
                f"{exc.message} ({path.name})",
                output=entry.name,
                expected=exc.expected,
                found=exc.found,
            ) from exc
    for entry in receipt.outputs if identities else ():
        _check_plaintext(outputs_dir / ciphertext_name(entry.name), entry, identities)


def check_receipt(
    bundle: ReceiptBundle,
    verified: VerifiedQuote,
    *,
    outputs_dir: Path | None = None,
    identity: X25519Identity | Sequence[X25519Identity] | None = None,
    expected_task_id: bytes | None = None,
    expected_nonce: bytes | None = None,
) -> VerifiedReceipt:
    """Steps (b)-(e) of receipt verification, given the bundle's quote already verified.

    Checks, in order: the bundle, its evidence and the verified quote agree (task id, keys,
    runner, quote bytes); the caller's ``expected_task_id`` / ``expected_nonce`` when given
    (a requestor passes its own, so an old receipt cannot be replayed to it); (b) the quote's
    report data binds the receipt's task id, nonce, ``E.pub``, ``S.pub`` and ``R.pub``; (c) the
    signature; (d) MRENCLAVE and the simulation flag; (e) with ``outputs_dir``, every
    ``<name>.age`` file's size and SHA-256 and no unlisted ``*.age`` file; with ``identity``
    too, each plaintext's size and SHA-256 (decrypted into a hashing sink, never to disk).

    Raises a :class:`ReceiptCheckError` subclass naming the check (and the output).
    """
    receipt = bundle.receipt
    _check_consistency(bundle, verified)
    if expected_task_id is not None:
        _same(
            "task_id", "receipt's task id and the expected one", expected_task_id, receipt.task_id
        )
    if expected_nonce is not None:
        _same("nonce", "receipt's nonce and the expected one", expected_nonce, receipt.nonce)
    # (b) S (and E, R, the task and the nonce) are the ones the attested enclave committed to.
    try:
        check_report_data(verified.report_body, receipt.transcript())
    except BindingError as exc:
        raise ReceiptBindingError(
            "report_data",
            "the quote's report data does not bind the receipt's task, nonce and keys",
            expected=exc.expected,
            found=exc.found,
        ) from exc
    # (c) S signed exactly this receipt.
    verify_receipt_signature(bundle)
    # (d) The receipt describes the enclave the quote measured.
    found_mr = verified.report_body.mrenclave
    if not hmac.compare_digest(receipt.measurement.mrenclave, found_mr):
        raise ReceiptMeasurementError(
            "mrenclave",
            "the receipt's MRENCLAVE is not the quote's",
            expected=found_mr.hex(),
            found=receipt.measurement.mrenclave.hex(),
        )
    if receipt.measurement.simulated != verified.simulated:
        raise ReceiptMeasurementError(
            "simulated",
            "the receipt misstates whether the run was simulated",
            expected=verified.simulated,
            found=receipt.measurement.simulated,
        )
    # (e) The outputs on disk are the ones the enclave sealed.
    identities = _identities(identity)
    if identities:
        bound = receipt.requestor_key
        if not any(i.recipient().to_string() == bound for i in identities):
            raise ReceiptOutputError(
                "identity",
                "no given identity is the receipt's requestor key (outputs are sealed to it)",
                expected=bound,
                found=", ".join(i.recipient().to_string() for i in identities),
            )
    if outputs_dir is not None:
        _check_outputs(receipt, Path(outputs_dir), identities)
    return VerifiedReceipt(
        receipt=receipt,
        verified_quote=verified,
        outputs_checked=outputs_dir is not None,
        plaintexts_checked=outputs_dir is not None and bool(identities),
    )


def verify_receipt_bundle(
    bundle: ReceiptBundle,
    *,
    outputs_dir: Path | None = None,
    identity: X25519Identity | Sequence[X25519Identity] | None = None,
    policy: Policy,
    verifier: QuoteVerifier,
    at: datetime,
    collateral: QuoteCollateral | None = None,
    expected_task_id: bytes | None = None,
    expected_nonce: bytes | None = None,
) -> VerifiedReceipt:
    """Verify a receipt bundle offline, all steps (a)-(e).

    (a) The evidence's quote is verified by ``verifier`` at ``at`` with ``collateral`` (default:
    the bundle's own) and judged by ``policy``; a simulated quote passes only if ``verifier``
    trusts its simulation root. Then :func:`check_receipt` runs (b)-(e).

    Raises :class:`ReceiptEvidenceError` when the bundle has no quote (``gramine-direct``) or
    no collateral is available, the :class:`VerificationError` of the quote or policy check
    (with ``established`` filled in), or a :class:`ReceiptCheckError` from (b)-(e).
    """
    evidence = bundle.evidence
    if evidence.quote is None:
        raise ReceiptEvidenceError(
            "no_quote",
            f"the run used the unattested {evidence.runner} runner: there is no quote to verify",
        )
    coll = collateral if collateral is not None else evidence.collateral
    if coll is None:
        raise ReceiptEvidenceError(
            "no_collateral",
            "the bundle carries no collateral; supply it to verify the quote offline",
        )
    quote = Quote.from_bytes(evidence.quote)
    verified = verifier.verify(quote, coll, at)
    try:
        policy.check(verified)
    except VerificationError as exc:
        exc.established = verified.to_dict()
        raise
    return check_receipt(
        bundle,
        verified,
        outputs_dir=outputs_dir,
        identity=identity,
        expected_task_id=expected_task_id,
        expected_nonce=expected_nonce,
    )
