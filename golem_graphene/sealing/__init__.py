"""Sealing: age v1 files to X25519 recipients (streaming, bounded memory, byte-compatible with age).

Files sealed here open with ``age -d -i``; files made by ``age -r`` open here. See
:mod:`golem_graphene.sealing.age` for the guarantees of each function.
"""

from golem_graphene.sealing.age import (
    AsyncReadable,
    AsyncWrite,
    ProgressCallback,
    decrypt_async,
    decrypt_file,
    decrypt_stream,
    encrypt_async,
    encrypt_file,
    encrypt_stream,
    retarget_header,
)
from golem_graphene.sealing.keys import (
    X25519Identity,
    X25519Recipient,
    load_identities,
    load_recipients,
    parse_identities,
    parse_recipients,
)
from golem_graphene.sealing.manifest import (
    InputEntry,
    InputFileError,
    InputManifest,
    InputManifestAuthError,
    InputManifestFormatError,
    check_inputs,
    ciphertext_name,
    open_manifest,
    seal_manifest,
)
from golem_graphene.sealing.receipt import (
    Receipt,
    ReceiptBundle,
    ReceiptCheckError,
    ReceiptFormatError,
    SignedReceipt,
    VerifiedReceipt,
    check_receipt,
    sign_receipt,
    verify_receipt_bundle,
    verify_receipt_signature,
)

__all__ = [
    "AsyncReadable",
    "AsyncWrite",
    "InputEntry",
    "InputFileError",
    "InputManifest",
    "InputManifestAuthError",
    "InputManifestFormatError",
    "ProgressCallback",
    "Receipt",
    "ReceiptBundle",
    "ReceiptCheckError",
    "ReceiptFormatError",
    "SignedReceipt",
    "VerifiedReceipt",
    "X25519Identity",
    "X25519Recipient",
    "check_inputs",
    "check_receipt",
    "ciphertext_name",
    "decrypt_async",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_async",
    "encrypt_file",
    "encrypt_stream",
    "load_identities",
    "load_recipients",
    "open_manifest",
    "parse_identities",
    "parse_recipients",
    "retarget_header",
    "seal_manifest",
    "sign_receipt",
    "verify_receipt_bundle",
    "verify_receipt_signature",
]
