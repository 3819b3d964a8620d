"""Sealing: age v1 files to X25519 recipients, input manifests and signed receipts.

age files sealed here open with ``age -d -i`` and files made by ``age -r`` open here (streaming,
bounded memory); see :mod:`golem_graphene.sealing.age` for the guarantees of each function.
"""

import typing

from golem_graphene import _lazy

if typing.TYPE_CHECKING:
    from golem_graphene.sealing.age import (
        AsyncReadable,
        AsyncWrite,
        ProgressCallback,
        SealDigests,
        decrypt_async,
        decrypt_file,
        decrypt_stream,
        encrypt_async,
        encrypt_file,
        encrypt_stream,
        max_ciphertext_size,
        plaintext_size,
        retarget_header,
    )
    from golem_graphene.sealing.input_manifest import (
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
    from golem_graphene.sealing.keys import (
        X25519Identity,
        X25519Recipient,
        load_identities,
        load_recipients,
        parse_identities,
        parse_recipients,
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

# Every name resolves on first use: ``keygen`` needs the keys but not the streaming cipher,
# ``seal``/``open`` not the manifests and receipts (pydantic, the verifier), and the enclave
# agent only the age code.
__getattr__ = _lazy.lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            (
                "AsyncReadable",
                "AsyncWrite",
                "ProgressCallback",
                "SealDigests",
                "decrypt_async",
                "decrypt_file",
                "decrypt_stream",
                "encrypt_async",
                "encrypt_file",
                "encrypt_stream",
                "max_ciphertext_size",
                "plaintext_size",
                "retarget_header",
            ),
            "age",
        ),
        **dict.fromkeys(
            (
                "X25519Identity",
                "X25519Recipient",
                "load_identities",
                "load_recipients",
                "parse_identities",
                "parse_recipients",
            ),
            "keys",
        ),
        **dict.fromkeys(
            (
                "InputEntry",
                "InputFileError",
                "InputManifest",
                "InputManifestAuthError",
                "InputManifestFormatError",
                "check_inputs",
                "ciphertext_name",
                "open_manifest",
                "seal_manifest",
            ),
            "input_manifest",
        ),
        **dict.fromkeys(
            (
                "Receipt",
                "ReceiptBundle",
                "ReceiptCheckError",
                "ReceiptFormatError",
                "SignedReceipt",
                "VerifiedReceipt",
                "check_receipt",
                "sign_receipt",
                "verify_receipt_bundle",
                "verify_receipt_signature",
            ),
            "receipt",
        ),
    },
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
    "SealDigests",
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
    "max_ciphertext_size",
    "open_manifest",
    "parse_identities",
    "parse_recipients",
    "plaintext_size",
    "retarget_header",
    "seal_manifest",
    "sign_receipt",
    "verify_receipt_bundle",
    "verify_receipt_signature",
]
