"""The error families of golem-graphene.

Every failure a caller can see is an :class:`Error`. Each subclass carries a stable ``code``
(used in JSON output, HTTP error bodies and task failures), an ``http_status`` (what the
provider's API answers when the error ends a request) and a message that says what was checked,
what was expected and what was found. Foreign exceptions are wrapped at the boundary
(``raise ... from``) so that ``ValueError``, ``InvalidSignature`` or ``InvalidTag`` never escape
the package.

The whole tree (classes defined elsewhere name their module; catch the family you care about)::

    Error
        CollateralSourceError
        ConfigError
            ImageError
                ImageBlobMissingError
                ImageDigestError
                ImageFormatError
                ImageLimitError
                ImageReferenceError
                UnsafeLayerEntryError
                UnsupportedImageError
            ManifestError
                ManifestValidationError  (gramine.problems)
                    ManifestSyntaxError  (gramine.problems)
                TemplateError  (gramine.template)
                TrustedFileError  (gramine.trusted_files)
            PackageError  (host.task_package)
        ProtocolError
            AgentProtocolError  (protocol.agent)
            AuthError
            CanonicalJsonError  (canonical_json)
            DeadlineError  (requestor.deadlines)
                TransferRateError  (requestor.deadlines)
            FrameError  (runtime.framing)
            InputManifestFormatError  (sealing.input_manifest)
            LimitError
            NotFoundError
            ProviderWords  (requestor.channel)
                ChannelError  (requestor.channel)
                ProviderTaskError  (requestor.outcomes)
            SpecConflictError  (provider.engine)
            StepError  (runtime.session)
            TransitionError
        RunnerError
        SealingError
            AgeFormatError
                AgeArmorError
                AgeHeaderError
            AgeHmacError
            AgeNoMatchError
            AgePayloadError
            FileCheckError  (sealing.input_manifest)
                InputFileError  (sealing.input_manifest)
            InputManifestAuthError  (sealing.input_manifest)
            ReceiptError
                ReceiptCheckError  (sealing.receipt_document)
                    ReceiptBindingError  (sealing.receipt_document)
                    ReceiptEvidenceError  (sealing.receipt_document)
                    ReceiptMeasurementError  (sealing.receipt_document)
                    ReceiptOutputError  (sealing.receipt_document)
                    ReceiptSignatureError  (sealing.receipt_document)
                ReceiptFormatError  (sealing.receipt_document)
            UnsupportedRecipientError
        TaskStepError  (requestor.outcomes)
        UsageError
        VerificationError
            BindingError  (protocol.binding)
            CertificateChainError
            CertificateExpiredError
            CertificateNotYetValidError
            CertificateRevokedError
            CertificateSignatureError
            CertificationDataError
            CollateralError
                CollateralExpiredError
                CollateralFormatError
                CollateralNotYetValidError
                CollateralSignatureError
                TcbInfoMismatchError
                TcbStatusUnknownError
            CrlError
                CrlMissingError
            IasReportError
            PolicyError
            QeIdentityMismatchError
            QeReportDataError
            QeReportSignatureError
            QuoteFormatError
            QuoteSignatureError
            TcbNotSupportedError
            UnsupportedQuoteError
            UntrustedRootError
"""

from __future__ import annotations

__all__ = [
    "AgeArmorError",
    "AgeFormatError",
    "AgeHeaderError",
    "AgeHmacError",
    "AgeNoMatchError",
    "AgePayloadError",
    "AuthError",
    "CertificateChainError",
    "CertificateExpiredError",
    "CertificateNotYetValidError",
    "CertificateRevokedError",
    "CertificateSignatureError",
    "CertificationDataError",
    "CollateralError",
    "CollateralExpiredError",
    "CollateralFormatError",
    "CollateralNotYetValidError",
    "CollateralSignatureError",
    "CollateralSourceError",
    "ConfigError",
    "CrlError",
    "CrlMissingError",
    "Error",
    "IasReportError",
    "ImageBlobMissingError",
    "ImageDigestError",
    "ImageError",
    "ImageFormatError",
    "ImageLimitError",
    "ImageReferenceError",
    "LimitError",
    "ManifestError",
    "NotFoundError",
    "PolicyError",
    "ProtocolError",
    "QeIdentityMismatchError",
    "QeReportDataError",
    "QeReportSignatureError",
    "QuoteFormatError",
    "QuoteSignatureError",
    "ReceiptError",
    "RunnerError",
    "SealingError",
    "TcbInfoMismatchError",
    "TcbNotSupportedError",
    "TcbStatusUnknownError",
    "TransitionError",
    "UnsafeLayerEntryError",
    "UnsupportedImageError",
    "UnsupportedQuoteError",
    "UnsupportedRecipientError",
    "UntrustedRootError",
    "UsageError",
    "VerificationError",
]


class Error(Exception):
    """Root of every error golem-graphene raises on purpose.

    ``code`` is stable (JSON output, HTTP error bodies, task failures); ``http_status`` is the
    status the provider's API answers with when this error ends a request.
    """

    code: str = "error"
    http_status: int = 422

    def __init__(self, message: str, *, expected: object = None, found: object = None) -> None:
        self.message = message
        self.expected = expected
        self.found = found
        super().__init__(self.describe())

    def describe(self) -> str:
        """The message with the expected and found values, when they are known."""
        detail = []
        if self.expected is not None:
            detail.append(f"expected {self.expected!s}")
        if self.found is not None:
            detail.append(f"found {self.found!s}")
        return ": ".join([self.message, ", ".join(detail)]) if detail else self.message

    def to_dict(self) -> dict[str, str]:
        """The stable JSON form used by the CLI and the HTTP API."""
        return {"code": self.code, "message": self.describe()}


class UsageError(Error):
    """The caller asked for something malformed (bad flag values, missing files)."""

    code = "usage"


class ConfigError(Error):
    """A configuration file, task spec or environment setting is invalid."""

    code = "config"
    http_status = 400


# --- verification -------------------------------------------------------------------------------


class VerificationError(Error):
    """Evidence (a quote, its collateral or an IAS report) did not verify.

    ``established`` holds what the verifier had established before it failed (identity fields,
    FMSPC, statuses), so that a refusal can still report them.
    """

    code = "verification"

    def __init__(self, message: str, *, expected: object = None, found: object = None) -> None:
        super().__init__(message, expected=expected, found=found)
        self.established: dict[str, object] = {}


class QuoteFormatError(VerificationError):
    """The quote bytes are malformed: wrong lengths, truncation, trailing bytes."""

    code = "quote_format"


class UnsupportedQuoteError(VerificationError):
    """The quote is well formed but of a kind we do not verify (version, key type, TEE)."""

    code = "unsupported_quote"


class CertificationDataError(VerificationError):
    """The quote's certification data carries no usable PCK certificate chain."""

    code = "cert_data"


class CertificateChainError(VerificationError):
    """A certificate chain has the wrong shape, issuer or role."""

    code = "chain"


class UntrustedRootError(VerificationError):
    """A chain does not end in the pinned trust anchor (compared by key, never by name)."""

    code = "untrusted_root"


class CertificateSignatureError(VerificationError):
    """A certificate or CRL signature does not verify under its issuer's key."""

    code = "cert_signature"


class CertificateExpiredError(VerificationError):
    """A certificate's notAfter lies before the verification time."""

    code = "cert_expired"


class CertificateNotYetValidError(VerificationError):
    """A certificate's notBefore lies after the verification time."""

    code = "cert_not_yet_valid"


class CertificateRevokedError(VerificationError):
    """A certificate's serial number is listed in the applicable CRL."""

    code = "cert_revoked"


class CrlError(VerificationError):
    """A CRL is malformed, has the wrong issuer, a bad signature or is out of its window."""

    code = "crl"


class CrlMissingError(CrlError):
    """A CRL is absent from the collateral and the caller did not allow that."""

    code = "crl_missing"


class CollateralError(VerificationError):
    """Collateral (TCB info, QE identity) failed a check."""

    code = "collateral"


class CollateralFormatError(CollateralError):
    """Collateral is malformed: bad JSON, missing keys, bad hex, unknown fields."""

    code = "collateral_format"


class CollateralSignatureError(CollateralError):
    """A TCB info or QE identity signature does not verify over its raw signed text."""

    code = "collateral_signature"

    def __init__(
        self, document: str, message: str, *, expected: object = None, found: object = None
    ) -> None:
        self.code = f"{document}_signature"
        super().__init__(message, expected=expected, found=found)


class CollateralExpiredError(CollateralError):
    """A collateral document's nextUpdate lies before the verification time."""

    code = "collateral_expired"

    def __init__(
        self, document: str, message: str, *, expected: object = None, found: object = None
    ) -> None:
        self.code = f"{document}_expired"
        super().__init__(message, expected=expected, found=found)


class CollateralNotYetValidError(CollateralError):
    """A collateral document's issueDate lies after the verification time."""

    code = "collateral_not_yet_valid"

    def __init__(
        self, document: str, message: str, *, expected: object = None, found: object = None
    ) -> None:
        self.code = f"{document}_not_yet_valid"
        super().__init__(message, expected=expected, found=found)


class TcbInfoMismatchError(CollateralError):
    """The TCB info is for another platform (FMSPC, PCE-ID) or of the wrong kind."""

    code = "tcb_info_mismatch"


class TcbStatusUnknownError(CollateralError):
    """A TCB status string is not one Intel defines."""

    code = "unknown_tcb_status"


class TcbNotSupportedError(VerificationError):
    """No TCB level in the collateral matches the platform (or the QE's ISVSVN)."""

    code = "tcb_not_supported"


class QeReportSignatureError(VerificationError):
    """The QE report is not signed by the PCK leaf key."""

    code = "qe_report_signature"


class QeReportDataError(VerificationError):
    """The QE report data does not bind the attestation key and QE auth data."""

    code = "qe_report_data"


class QeIdentityMismatchError(VerificationError):
    """The quoting enclave is not the one the QE identity describes."""

    code = "qe_identity_mismatch"


class QuoteSignatureError(VerificationError):
    """The ISV enclave report is not signed by the attestation key."""

    code = "quote_signature"


class IasReportError(VerificationError):
    """A legacy IAS attestation verification report is malformed or badly signed."""

    code = "ias_report"


class PolicyError(VerificationError):
    """The evidence verified, but the caller's policy refused it."""

    code = "policy"

    def __init__(
        self, check: str, message: str, *, expected: object = None, found: object = None
    ) -> None:
        self.check = check
        self.code = f"policy_{check}"
        super().__init__(message, expected=expected, found=found)


class CollateralSourceError(Error):
    """Collateral could not be fetched or read (network, HTTP status, cache)."""

    code = "collateral_source"


# --- sealing ------------------------------------------------------------------------------------


class SealingError(Error):
    """Encryption, decryption, manifests or receipts failed."""

    code = "sealing"


class AgeFormatError(SealingError):
    """An age file, identity or recipient is malformed."""

    code = "age_format"


class AgeHeaderError(AgeFormatError):
    """An age header is malformed."""

    code = "age_header"


class AgeHmacError(SealingError):
    """An age header's MAC does not verify."""

    code = "age_hmac"


class AgePayloadError(SealingError):
    """An age payload failed authentication, was truncated or reordered."""

    code = "age_payload"


class AgeArmorError(AgeFormatError):
    """An ASCII-armored age file is malformed."""

    code = "age_armor"


class AgeNoMatchError(SealingError):
    """None of the given identities can open the file."""

    code = "age_no_match"


class UnsupportedRecipientError(SealingError):
    """A recipient or stanza type we do not support where a key is required (e.g. scrypt)."""

    code = "unsupported_recipient"


class ReceiptError(SealingError):
    """A receipt is malformed, badly signed, or does not match its outputs."""

    code = "receipt"


# --- protocol, provider, runners ----------------------------------------------------------------


class ProtocolError(Error):
    """A peer sent a message that breaks the task protocol."""

    code = "protocol"
    http_status = 400


class NotFoundError(ProtocolError):
    """No such task (or not yours), spec or file (HTTP 404)."""

    code = "not_found"
    http_status = 404


class TransitionError(ProtocolError):
    """A request that the task's state does not allow (HTTP 409)."""

    code = "invalid_state"
    http_status = 409


class LimitError(ProtocolError):
    """A configured limit refuses the request (HTTP 413, 429, 408 or 507); the message names
    the limit and ``code`` which one (``too_many_tasks``, ``input_too_large``, ...)."""

    code = "limit"

    def __init__(
        self, code: str, message: str, *, status: int, expected: object = None, found: object = None
    ) -> None:
        self.code = code
        self.http_status = status
        super().__init__(message, expected=expected, found=found)


class AuthError(ProtocolError):
    """A missing or wrong requestor token (HTTP 401) or task token (HTTP 403)."""

    code = "unauthorized"
    http_status = 401

    def __init__(self, code: str, message: str, status: int) -> None:
        self.code = code
        self.http_status = status
        super().__init__(message)


class ManifestError(ConfigError):
    """A Gramine manifest or template is invalid; the message names the key and the rule."""

    code = "manifest"


class RunnerError(Error):
    """An enclave runner could not launch, supervise or finish a workload."""

    code = "runner"


# --- container images ---------------------------------------------------------------------------


class ImageError(ConfigError):
    """A container image could not be read or flattened; the message names the image part (a
    blob digest, a layer and an entry name) and the rule it broke."""

    code = "image"


class ImageReferenceError(ImageError):
    """An image reference (``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``,
    ``docker-archive:FILE[:NAME:TAG]``, optionally ``@sha256:DIGEST``) is malformed, names a
    source, tag or image that is not there, or a source holding several images without a tag."""

    code = "image_reference"


class ImageDigestError(ImageError):
    """A blob's bytes (or a layer's uncompressed bytes) do not have the digest or size that
    names them (the image was altered or truncated), or the image is not the one a reference's
    ``@sha256:`` pins."""

    code = "image_digest"


class ImageBlobMissingError(ImageError):
    """A blob a descriptor names is absent from the image layout or archive."""

    code = "image_blob_missing"


class ImageFormatError(ImageError):
    """An image document (layout, index, manifest, config, ``manifest.json``) or a layer tar is
    malformed."""

    code = "image_format"


class UnsupportedImageError(ImageError):
    """The image is well formed but of a kind we do not read: a media type, digest algorithm,
    platform (only linux/amd64) or layer compression we refuse."""

    code = "image_unsupported"


class UnsafeLayerEntryError(ImageError):
    """A layer entry would escape or corrupt the root: an absolute name, ``..``, a path through
    a symbolic link, a hard link to outside the root or to nothing, a whiteout of ``""``, ``.``
    or ``..``, or an entry type we do not unpack."""

    code = "image_unsafe_entry"


class ImageLimitError(ImageError):
    """An image exceeds a bound of :mod:`golem_graphene.limits` (entries, a file's size, total
    uncompressed bytes, compression ratio, path length): possibly a decompression bomb."""

    code = "image_limit"
