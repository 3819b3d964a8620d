"""Trust anchors: the Intel SGX Root CA (bundled) and explicitly chosen alternatives.

Anchors are pinned by key (SHA-256 of the SubjectPublicKeyInfo), never by name: Intel's own QVL
sample PKI has a root with exactly the production root's subject.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from golem_graphene.errors import UsageError

__all__ = [
    "IAS_REPORT_SIGNING_CA_SPKI_SHA256",
    "INTEL_SGX_ROOT_CA_SPKI_SHA256",
    "SIMULATION_MARKER_OID",
    "TrustAnchor",
    "spki_sha256",
]

INTEL_SGX_ROOT_CA_SPKI_SHA256 = "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e"
IAS_REPORT_SIGNING_CA_SPKI_SHA256 = (
    "a9beeb83bb1222c108b436bdd82334e5cf380d61039dae11db95272343850394"
)

SIMULATION_MARKER_OID = "1.3.6.1.4.1.59999.1.1"
"""Extension that golem-graphene's simulation PKI puts in its root: never a real Intel root."""


def spki_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's DER SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class TrustAnchor:
    """A root certificate the verifier trusts, identified by its key."""

    certificate: x509.Certificate
    label: str
    fingerprint: str = field(init=False)
    simulated: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", spki_sha256(self.certificate))
        marker = x509.ObjectIdentifier(SIMULATION_MARKER_OID)
        simulated = any(ext.oid == marker for ext in self.certificate.extensions)
        object.__setattr__(self, "simulated", simulated)

    @classmethod
    def from_pem(cls, data: bytes, label: str = "custom root") -> TrustAnchor:
        """Load one PEM (or DER) certificate; raises :class:`UsageError` when unreadable."""
        try:
            if b"-----BEGIN" in data:
                certs = x509.load_pem_x509_certificates(data)
            else:
                certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            # cryptography's own text (an ASN.1 ParseError dump, a FAQ link) helps nobody here.
            what = _what_pem_holds(data)
            raise UsageError(
                f"cannot read the root certificate {label!r}: not an X.509 certificate (PEM "
                "or DER)" + (f"; it holds {what}" if what else "")
            ) from None
        if len(certs) != 1:
            raise UsageError(
                f"the root file must hold exactly one certificate ({label})",
                expected=1,
                found=len(certs),
            )
        return cls(certs[0], label)

    def matches(self, cert: x509.Certificate) -> bool:
        """True when ``cert`` carries this anchor's key."""
        return cert is self.certificate or spki_sha256(cert) == self.fingerprint

    @property
    def is_intel_sgx_root(self) -> bool:
        """True for the production Intel SGX Root CA key."""
        return self.fingerprint == INTEL_SGX_ROOT_CA_SPKI_SHA256

    @staticmethod
    @cache
    def intel_sgx_root() -> TrustAnchor:
        """The bundled Intel SGX Root CA, checked against its pinned key fingerprint."""
        return _bundled("Intel_SGX_Root_CA.pem", "Intel SGX Root CA", INTEL_SGX_ROOT_CA_SPKI_SHA256)

    @staticmethod
    @cache
    def ias_report_signing_ca() -> TrustAnchor:
        """The bundled Intel SGX Attestation Report Signing CA (legacy IAS)."""
        return _bundled(
            "Intel_SGX_Attestation_Report_Signing_CA.pem",
            "Intel SGX Attestation Report Signing CA",
            IAS_REPORT_SIGNING_CA_SPKI_SHA256,
        )


def _bundled(name: str, label: str, pinned: str) -> TrustAnchor:
    # The package's own loader reads its data (a plain file, or a member of a zip import):
    # importlib.resources would cost verify-quote's start-up several milliseconds.
    path = os.path.join(os.path.dirname(__file__), "roots", name)
    loader = __spec__.loader if __spec__ is not None else None
    get_data = getattr(loader, "get_data", None)
    if get_data is None:  # pragma: no cover - every standard loader has get_data
        with open(path, "rb") as f:
            return _checked(f.read(), label, pinned)
    return _checked(get_data(path), label, pinned)


def _checked(data: bytes, label: str, pinned: str) -> TrustAnchor:
    anchor = TrustAnchor.from_pem(data, label)
    if anchor.fingerprint != pinned:  # the package data was altered
        raise RuntimeError(f"bundled {label} does not match its pinned key fingerprint")
    return anchor


def _what_pem_holds(data: bytes) -> str | None:
    """What a PEM file that is not a certificate holds (``a PRIVATE KEY``), if it is PEM."""
    start = data.find(b"-----BEGIN ")
    if start < 0:
        return None
    end = data.find(b"-----", start + 11)
    label = data[start + 11 : end].decode("ascii", "replace").strip() if end > 0 else ""
    return f"a {label}" if label and label != "CERTIFICATE" else None
