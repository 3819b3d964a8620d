"""X.509 chain, validity and CRL checks shared by the DCAP and IAS verifiers.

Every check takes the verification time explicitly and raises one of our typed errors.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.errors import (
    CertificateChainError,
    CertificateExpiredError,
    CertificateNotYetValidError,
    CertificateRevokedError,
    CertificateSignatureError,
    CrlError,
    UntrustedRootError,
)
from golem_graphene.limits import MAX_CHAIN_CERTS


def load_pem_chain(pem: str | bytes, what: str, count: int) -> list[x509.Certificate]:
    """Parse a PEM chain of exactly ``count`` certificates (leaf first)."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        certs = x509.load_pem_x509_certificates(data.rstrip(b"\x00"))
    # InvalidVersion is no ValueError; CryptographyDeprecationWarning (e.g. a non-positive
    # serial, which RFC 5280 forbids) arrives as an exception when warnings are errors.
    except (ValueError, x509.InvalidVersion, CryptographyDeprecationWarning) as exc:
        raise CertificateChainError(
            f"{what} is not a readable PEM certificate chain: {exc}"
        ) from exc
    if len(certs) > MAX_CHAIN_CERTS or len(certs) != count:
        raise CertificateChainError(
            f"{what} has the wrong number of certificates", expected=count, found=len(certs)
        )
    for index, cert in enumerate(certs):
        parse_certificate_fields(cert, f"{what} (certificate {index + 1})")
    return certs


_LAZY_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    CryptographyDeprecationWarning,
)


def parse_certificate_fields(cert: x509.Certificate, what: str) -> None:
    """Parse every field the verifier reads, now, so that a malformed one is a typed error.

    ``cryptography`` parses names, keys and extensions lazily: a corrupt field would otherwise
    surface as a ``ValueError`` (or ``UnsupportedAlgorithm``) deep inside a later check.
    """
    try:
        _ = cert.subject, cert.issuer
        _ = cert.public_key(), cert.extensions, cert.serial_number
        _ = cert.not_valid_before_utc, cert.not_valid_after_utc, cert.signature_hash_algorithm
    except _LAZY_ERRORS as exc:
        raise CertificateChainError(f"{what} has a malformed field: {exc}") from exc


def common_name(name: x509.Name) -> str:
    """The first CN of a name, or an empty string."""
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else bytes(value).decode(errors="replace")


def require_cn(cert: x509.Certificate, needle: str, role: str) -> None:
    """The certificate's subject CN must contain ``needle`` (Intel QVL's role check)."""
    cn = common_name(cert.subject)
    if needle not in cn:
        raise CertificateChainError(
            f"the {role} certificate has the wrong subject",
            expected=f"CN containing {needle!r}",
            found=cn,
        )


def require_anchor(cert: x509.Certificate, anchor: TrustAnchor, role: str) -> None:
    """The chain's root must carry the pinned key and be validly self-signed."""
    if not anchor.matches(cert):
        raise UntrustedRootError(
            f"the {role} chain does not end in the pinned root ({anchor.label})",
            expected=f"root key SHA-256 {anchor.fingerprint}",
            found=f"{cert.subject.rfc4514_string()} with another key",
        )
    verify_issued_by(cert, anchor.certificate, f"{role} root")


def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate, role: str) -> None:
    """Signature and issuer-name match of ``cert`` under ``issuer``."""
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature as exc:
        raise CertificateSignatureError(
            f"the {role} certificate's signature does not verify "
            f"under {common_name(issuer.subject)!r}"
        ) from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateChainError(
            f"the {role} certificate is not issued by {common_name(issuer.subject)!r}: {exc}"
        ) from exc


def check_validity(cert: x509.Certificate, at: datetime, role: str) -> tuple[datetime, datetime]:
    """notBefore <= T <= notAfter (inclusive); returns the window."""
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if at < not_before:
        raise CertificateNotYetValidError(
            f"the {role} certificate is not yet valid",
            expected=f"notBefore {not_before.isoformat()} <= T",
            found=f"T = {at.isoformat()}",
        )
    if at > not_after:
        raise CertificateExpiredError(
            f"the {role} certificate has expired",
            expected=f"T <= notAfter {not_after.isoformat()}",
            found=f"T = {at.isoformat()}",
        )
    return not_before, not_after


def load_crl(der: bytes, what: str) -> x509.CertificateRevocationList:
    """Parse a DER CRL (PEM is accepted too)."""
    try:
        if der.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(der)
        else:
            crl = x509.load_der_x509_crl(der)
        # Parse the lazily decoded fields now (see parse_certificate_fields).
        _ = crl.issuer.rfc4514_string(), crl.last_update_utc, crl.next_update_utc
        _ = crl.extensions, crl.signature_hash_algorithm, [r.serial_number for r in crl]
    except _LAZY_ERRORS as exc:
        raise CrlError(f"the {what} is not a readable CRL: {exc}") from exc
    return crl


def check_crl(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, at: datetime, what: str
) -> tuple[datetime, datetime]:
    """Issuer name, signature and thisUpdate <= T <= nextUpdate (as Intel's QVL checks)."""
    if crl.issuer != issuer.subject:
        raise CrlError(
            f"the {what} has the wrong issuer",
            expected=issuer.subject.rfc4514_string(),
            found=crl.issuer.rfc4514_string(),
        )
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise CrlError(f"the {what} signature cannot be checked: {exc}") from exc
    if not valid:
        raise CrlError(
            f"the {what} signature does not verify under {common_name(issuer.subject)!r}"
        )
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    if next_update is None:
        raise CrlError(f"the {what} has no nextUpdate")
    if at < this_update:
        raise CrlError(
            f"the {what} is not yet valid",
            expected=f"thisUpdate {this_update.isoformat()} <= T",
            found=f"T = {at.isoformat()}",
        )
    if at > next_update:
        raise CrlError(
            f"the {what} has expired",
            expected=f"T <= nextUpdate {next_update.isoformat()}",
            found=f"T = {at.isoformat()}",
        )
    return this_update, next_update


def check_not_revoked(
    crl: x509.CertificateRevocationList, cert: x509.Certificate, role: str
) -> None:
    """The certificate's serial must not be listed."""
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        raise CertificateRevokedError(
            f"the {role} certificate is revoked", found=f"serial {cert.serial_number:x}"
        )


def p256_public_key(raw_xy: bytes, role: str) -> ec.EllipticCurvePublicKey:
    """A P-256 key from 64 raw bytes x||y."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw_xy)
    except ValueError as exc:
        raise CertificateChainError(f"the {role} is not a valid P-256 point") from exc


def verify_raw_ecdsa(key: object, raw_rs: bytes, data: bytes) -> bool:
    """ECDSA-P256-SHA256 with a raw 64-byte r||s signature; False when it does not verify."""
    if not isinstance(key, ec.EllipticCurvePublicKey) or len(raw_rs) != 64:
        return False
    der = encode_dss_signature(
        int.from_bytes(raw_rs[:32], "big"), int.from_bytes(raw_rs[32:], "big")
    )
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def require_end_entity(cert: x509.Certificate, role: str) -> None:
    """The certificate must be an end-entity signing certificate, not a CA.

    A chain of ``[CA, CA]`` passes the issuer check (a self-signed CA is issued by itself), so
    a signer's role has to be checked explicitly: BasicConstraints must not say ``cA`` and a
    KeyUsage, when present, must allow ``digitalSignature``. Raises
    :class:`CertificateChainError` otherwise, or when the extensions cannot be read.
    """
    try:
        try:
            constraints: x509.BasicConstraints | None = cert.extensions.get_extension_for_class(
                x509.BasicConstraints
            ).value
        except x509.ExtensionNotFound:
            constraints = None
        try:
            usage: x509.KeyUsage | None = cert.extensions.get_extension_for_class(
                x509.KeyUsage
            ).value
        except x509.ExtensionNotFound:
            usage = None
    except (ValueError, x509.DuplicateExtension) as exc:  # DuplicateExtension is no ValueError
        raise CertificateChainError(
            f"the {role} certificate has unreadable extensions: {exc}"
        ) from exc
    if constraints is not None and constraints.ca:
        raise CertificateChainError(
            f"the {role} certificate is a CA certificate",
            expected="an end-entity certificate (BasicConstraints cA false)",
            found="cA true",
        )
    if usage is not None and not usage.digital_signature:
        raise CertificateChainError(
            f"the {role} certificate may not sign data",
            expected="KeyUsage digitalSignature",
            found="digitalSignature not set",
        )


def verify_rsa_pkcs1v15_sha256(key: object, signature: bytes, data: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256; False when the key is not RSA or it does not verify.

    The signature must be exactly the modulus length (RFC 8017 8.2.2 step 1), so that a
    truncated or padded signature is refused rather than left to the backend's leniency.
    """
    if not isinstance(key, rsa.RSAPublicKey) or len(signature) != (key.key_size + 7) // 8:
        return False
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def require_ca(cert: x509.Certificate, role: str) -> None:
    """The certificate must be a CA (BasicConstraints cA true) to issue the next one."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise CertificateChainError(
            f"the {role} certificate has unreadable extensions: {exc}"
        ) from exc
    if constraints is None or not constraints.ca:
        raise CertificateChainError(
            f"the {role} certificate is not a CA certificate",
            expected="BasicConstraints cA true",
            found="cA false" if constraints is not None else "no BasicConstraints",
        )
