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

import dataclasses
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
from golem_graphene.sealing.digests import HashingSink, PulledCiphertext
from golem_graphene.sealing.input_manifest import (
    CIPHERTEXT_SUFFIX,
    FileCheckError,
    ciphertext_name,
    open_regular,
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
)

__all__ = [
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


def verify_receipt_signature(signed: SignedReceipt | ReceiptBundle) -> None:
    """Check the Ed25519 signature over the canonical receipt under ``signed.signing_key``.

    This alone proves nothing about the enclave: ``signing_key`` must also be bound by a
    verified quote (:func:`check_receipt` does both). Raises :class:`ReceiptSignatureError`.
    """
    try:
        public = Ed25519PublicKey.from_public_bytes(signed.signing_key)
        public.verify(signed.signature, signed.receipt.signed_message())
    except (InvalidSignature, ValueError) as exc:
        raise ReceiptSignatureError(
            "signature",
            "the receipt signature does not verify under its signing key",
            found=signed.signing_key.hex(),
        ) from exc


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


OUTPUT_READ_BATCH = 4 << 20
"""Bytes of a ciphertext taken at a time: a few MiB, so hashing and decryption hop threads
rarely."""


def _size_error(entry: OutputEntry, found: object) -> ReceiptOutputError:
    return ReceiptOutputError(
        "output_size",
        f"{entry.name}: the file size differs ({ciphertext_name(entry.name)})",
        output=entry.name,
        expected=entry.ciphertext_size,
        found=found,
    )


def _unreadable(entry: OutputEntry, exc: OSError) -> ReceiptOutputError:
    return ReceiptOutputError(
        "output_read",
        f"{entry.name}: cannot read the ciphertext: {exc.strerror or exc}",
        output=entry.name,
    )


class OutputCheck:
    """Checks a verified receipt's outputs against their ciphertexts, one pass per output.

    The one output verifier: ``verify-receipt`` runs it over files (:func:`check_receipt` with
    ``outputs_dir``), the requestor over downloads as they arrive. Each output's ciphertext is
    streamed once: counted and hashed, and, with identities, decrypted into ``plaintext`` (a
    hashing sink when none is given) at the same time. The checks and their order per output:
    ciphertext size and SHA-256 (``receipt_output_size``/``_sha256``), then decryption
    (``receipt_output_decrypt``), plaintext size and SHA-256 (``receipt_plaintext_size``/
    ``_sha256``). :meth:`finish` returns the receipt marked checked once every output passed.
    """

    def __init__(self, verified: VerifiedReceipt, identities: Sequence[X25519Identity]) -> None:
        self._verified = verified
        self._identities = list(identities)
        self._pending = {entry.name: entry for entry in verified.receipt.outputs}

    def check(
        self, entry: OutputEntry, source: PulledCiphertext, plaintext: BinaryIO | None = None
    ) -> None:
        """Stream one output's ciphertext from ``source`` and check it (see the class).

        Raises :class:`ReceiptOutputError`; ``plaintext`` then holds unverified bytes, which the
        caller discards.
        """
        if self._pending.pop(entry.name, None) is None:
            raise ReceiptOutputError(
                "output_extra", f"{entry.name}: not an output of the receipt", output=entry.name
            )
        failure: Error | None = None
        sink = HashingSink(plaintext)
        with source:
            if self._identities:
                try:
                    decrypt_stream(cast(BinaryIO, source), cast(BinaryIO, sink), self._identities)
                except Error as exc:
                    failure = exc
            source.finish()  # after a failure the whole ciphertext is still hashed, for the order
        if source.size != entry.ciphertext_size:
            raise _size_error(entry, source.size)
        found = source.hash.digest()
        if not hmac.compare_digest(found, entry.ciphertext_sha256):
            raise ReceiptOutputError(
                "output_sha256",
                f"{entry.name}: the SHA-256 differs ({ciphertext_name(entry.name)})",
                output=entry.name,
                expected=entry.ciphertext_sha256.hex(),
                found=found.hex(),
            )
        if failure is not None:
            raise ReceiptOutputError(
                "output_decrypt",
                f"{entry.name}: the ciphertext does not decrypt: {failure.describe()}",
                output=entry.name,
            ) from failure
        if self._identities:
            check_plaintext(entry, sink.size, sink.hash.digest())

    def check_file(self, entry: OutputEntry, path: Path, plaintext: BinaryIO | None = None) -> None:
        """:meth:`check` for a ciphertext on disk: a regular file, never followed through a
        link; its size is compared first, so a wrong file costs nothing to refuse."""
        try:
            fd = open_regular(path, entry.name)
        except FileCheckError as exc:
            raise ReceiptOutputError(
                f"output_{exc.check}", f"{exc.message} ({path.name})", output=entry.name
            ) from exc
        with os.fdopen(fd, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size != entry.ciphertext_size:
                raise _size_error(entry, size)

            def pull() -> list[bytes]:
                try:
                    data = f.read(OUTPUT_READ_BATCH)
                except OSError as exc:
                    raise _unreadable(entry, exc) from exc
                return [data] if data else []

            self.check(entry, PulledCiphertext(pull), plaintext)

    def finish(self) -> VerifiedReceipt:
        """The receipt, with its outputs (and plaintexts, given identities) checked.

        Raises :class:`ReceiptOutputError` (``output_missing``) when an output was not checked.
        """
        if self._pending:
            name = min(self._pending)
            raise ReceiptOutputError(
                "output_missing",
                f"{name}: an output of the receipt was not checked",
                output=name,
            )
        return dataclasses.replace(
            self._verified, outputs_checked=True, plaintexts_checked=bool(self._identities)
        )


def _check_outputs(
    verified: VerifiedReceipt, outputs_dir: Path, identities: list[X25519Identity]
) -> VerifiedReceipt:
    receipt = verified.receipt
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
    check = OutputCheck(verified, identities)
    for entry in receipt.outputs:
        check.check_file(entry, outputs_dir / ciphertext_name(entry.name))
    return check.finish()


def check_receipt(
    bundle: ReceiptBundle,
    verified: VerifiedQuote,
    *,
    outputs_dir: Path | None = None,
    identity: X25519Identity | Sequence[X25519Identity] | None = None,
    expected_task_id: bytes | None = None,
    expected_nonce: bytes | None = None,
    expected_input_manifest: bytes | None = None,
) -> VerifiedReceipt:
    """Steps (b)-(e) of receipt verification, given the bundle's quote already verified.

    Checks, in order: the bundle, its evidence and the verified quote agree (task id, keys,
    runner, quote bytes); the caller's ``expected_task_id`` / ``expected_nonce`` when given
    (a requestor passes its own, so an old receipt cannot be replayed to it); (b) the quote's
    report data binds the receipt's task id, nonce, ``E.pub``, ``S.pub`` and ``R.pub``; (c) the
    signature; (d) MRENCLAVE and the simulation flag; (e) with ``outputs_dir``, every
    ``<name>.age`` file's size and SHA-256 and no unlisted ``*.age`` file; with ``identity``
    too, each plaintext's size and SHA-256 (decrypted into a hashing sink, never to disk).
    With ``expected_input_manifest`` (the SHA-256 of the input manifest the requestor sealed),
    after the signature: the receipt's ``input_manifest_sha256`` must equal it
    (``receipt_input_manifest``); the enclave ran on exactly those inputs, arguments and
    environment.

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
    if expected_input_manifest is not None:
        _same(
            "input_manifest",
            "receipt's input manifest digest and the one sent",
            expected_input_manifest,
            receipt.input_manifest_sha256,
        )
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
    checked = VerifiedReceipt(
        receipt=receipt, verified_quote=verified, outputs_checked=False, plaintexts_checked=False
    )
    if outputs_dir is not None:
        return _check_outputs(checked, Path(outputs_dir), identities)
    return checked


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
    expected_input_manifest: bytes | None = None,
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
        expected_input_manifest=expected_input_manifest,
    )
