"""TEST HELPER ONLY: a throw-away SGX DCAP PKI that signs quotes and collateral in tests.

Real Intel data cannot exercise checks that need re-signed collateral (TCB level selection,
QE status convergence, revoked PCK leaves, CRL windows, QE identity mismatches). This module
builds a complete, self-consistent stand-in: a root CA, a PCK Processor (or Platform) CA, PCK
leaf certificates carrying a hand-encoded SGX extension, a TCB signing certificate, CRLs,
signed TCB info / QE identity documents and v3 quotes whose QE report and ISV report are
signed exactly as Intel's QE signs them.

Nothing here is trusted outside the test that builds it: every key is generated in memory and
the root carries no golem-graphene simulation marker (unless ``simulated=True``), so the
verifier treats it as an ordinary caller-supplied anchor (``TrustAnchor(pki.root, ...)``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.collateral import QuoteCollateral

# The one verification time every default object is valid at (2030-01-01T00:00:00Z).
T0 = datetime(2030, 1, 1, tzinfo=UTC)
T0_EPOCH = int(T0.timestamp())
DAY = timedelta(days=1)

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
INTEL_QE_MRSIGNER = bytes.fromhex(
    "8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff"
)
SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
SIMULATION_MARKER_OID = "1.3.6.1.4.1.59999.1.1"  # only with SgxTestPki(simulated=True)

DEFAULT_FMSPC = bytes.fromhex("00906ED50000")
DEFAULT_PCEID = bytes.fromhex("0000")
DEFAULT_COMPONENTS: tuple[int, ...] = (7, 9, 3, 3, 255, 128, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
DEFAULT_PCESVN = 13
DEFAULT_QE_ISVSVN = 8

# ISV enclave identity of the default quote.
MRENCLAVE = bytes(range(0x40, 0x60))
MRSIGNER = bytes(range(0x80, 0xA0))
ISVPRODID = 3
ISVSVN = 4
REPORT_DATA = b"golem-graphene test".ljust(64, b"\0")

ATTR_INIT = 0x01
ATTR_DEBUG = 0x02
ATTR_MODE64BIT = 0x04
ATTR_PROVISIONKEY = 0x10


# --- DER (only what the SGX extension needs) -------------------------------------------------


def der_tlv(tag: int, content: bytes) -> bytes:
    """One DER element with a definite, minimal length."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + content


def der_seq(*items: bytes) -> bytes:
    return der_tlv(0x30, b"".join(items))


def der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return der_tlv(0x06, bytes(body))


def der_int(value: int, tag: int = 0x02) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return der_tlv(tag, value.to_bytes(size, "big", signed=True))


def der_octets(value: bytes) -> bytes:
    return der_tlv(0x04, value)


def sgx_extension_der(
    *,
    components: Sequence[int] = DEFAULT_COMPONENTS,
    pcesvn: int = DEFAULT_PCESVN,
    cpusvn: bytes | None = None,
    ppid: bytes = bytes(16),
    pceid: bytes = DEFAULT_PCEID,
    fmspc: bytes = DEFAULT_FMSPC,
    sgx_type: int = 0,
) -> bytes:
    """The SGX extension value as Intel's PCS encodes it (``SEQUENCE OF {OID, value}``).

    CPUSVN defaults to the component SVNs, as in every real PCK certificate (dcap-qvl matches
    TCB levels against the CPUSVN octets, golem-graphene against the component INTEGERs).
    """
    cpusvn = bytes(components) if cpusvn is None else cpusvn
    tcb_oid = SGX_EXTENSION_OID + ".2"
    tcb = [der_seq(der_oid(f"{tcb_oid}.{i}"), der_int(svn)) for i, svn in enumerate(components, 1)]
    tcb.append(der_seq(der_oid(f"{tcb_oid}.17"), der_int(pcesvn)))
    tcb.append(der_seq(der_oid(f"{tcb_oid}.18"), der_octets(cpusvn)))
    return der_seq(
        der_seq(der_oid(SGX_EXTENSION_OID + ".1"), der_octets(ppid)),
        der_seq(der_oid(tcb_oid), der_seq(*tcb)),
        der_seq(der_oid(SGX_EXTENSION_OID + ".3"), der_octets(pceid)),
        der_seq(der_oid(SGX_EXTENSION_OID + ".4"), der_octets(fmspc)),
        der_seq(der_oid(SGX_EXTENSION_OID + ".5"), der_int(sgx_type, tag=0x0A)),
    )


# --- keys, certificates, CRLs ------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def raw_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256-SHA256 as raw 64-byte r||s (the encoding quotes and collateral use)."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Raw x||y of a P-256 public key (64 bytes)."""
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "golem-graphene tests"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def make_cert(
    *,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
    not_before: datetime = T0 - 365 * DAY,
    not_after: datetime = T0 + 365 * DAY,
    serial: int | None = None,
    extra: Iterable[x509.ExtensionType] = (),
    basic_constraints: bool = True,
) -> x509.Certificate:
    """A v3 certificate with the extensions Intel's certificates carry."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


@dataclass
class SgxTestPki:
    """Root CA, PCK CA and TCB signing certificate of one throw-away SGX PKI."""

    pck_ca_kind: str = "Processor"
    simulated: bool = False
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    pck_ca_key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    tcb_key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    root: x509.Certificate = field(init=False)
    pck_ca: x509.Certificate = field(init=False)
    tcb_signer: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.root = make_cert(
            subject="Test SGX Root CA",
            key=self.root_key,
            issuer=None,
            issuer_key=self.root_key,
            ca=True,
            not_before=T0 - 3650 * DAY,
            not_after=T0 + 3650 * DAY,
            extra=[
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(SIMULATION_MARKER_OID), b"\x05\x00"
                )
            ]
            if self.simulated
            else [],
        )
        self.pck_ca = make_cert(
            subject=f"Test SGX PCK {self.pck_ca_kind} CA",
            key=self.pck_ca_key,
            issuer=self.root,
            issuer_key=self.root_key,
            ca=True,
            not_before=T0 - 1000 * DAY,
            not_after=T0 + 1000 * DAY,
        )
        self.tcb_signer = make_cert(
            subject="Test SGX TCB Signing",
            key=self.tcb_key,
            issuer=self.root,
            issuer_key=self.root_key,
            ca=False,
            not_before=T0 - 500 * DAY,
            not_after=T0 + 500 * DAY,
        )

    def anchor(self) -> TrustAnchor:
        return TrustAnchor(self.root, "test SGX root")

    @property
    def root_der(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.DER)

    def pck_leaf(
        self,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        not_before: datetime = T0 - 100 * DAY,
        not_after: datetime = T0 + 100 * DAY,
        serial: int | None = None,
        extension: bytes | None = None,
        **sgx: Any,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A PCK leaf certificate with an SGX extension (``sgx`` goes to sgx_extension_der)."""
        key = key or new_key()
        ext = x509.UnrecognizedExtension(
            x509.ObjectIdentifier(SGX_EXTENSION_OID),
            extension if extension is not None else sgx_extension_der(**sgx),
        )
        cert = make_cert(
            subject="Test SGX PCK Certificate",
            key=key,
            issuer=self.pck_ca,
            issuer_key=self.pck_ca_key,
            ca=False,
            not_before=not_before,
            not_after=not_after,
            serial=serial,
            extra=[ext],
        )
        return key, cert

    def crl(
        self,
        issuer: str,
        *,
        this_update: datetime = T0 - 5 * DAY,
        next_update: datetime = T0 + 25 * DAY,
        revoked: Iterable[int] = (),
    ) -> bytes:
        """A DER CRL issued by ``"root"`` or ``"pck_ca"``."""
        cert, key = (
            (self.root, self.root_key) if issuer == "root" else (self.pck_ca, self.pck_ca_key)
        )
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(cert.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(this_update)
                .build()
            )
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def sign_document(self, doc: dict[str, Any]) -> tuple[str, str]:
        """Compact JSON text of ``doc`` and its hex raw r||s signature by the TCB signer."""
        text = json.dumps(doc, separators=(",", ":"))
        return text, raw_sign(self.tcb_key, text.encode()).hex()


# --- collateral documents ----------------------------------------------------------------------


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tcb_level(
    components: Sequence[int],
    pcesvn: int,
    status: str,
    advisories: Sequence[str] = (),
    date: datetime = T0 - 400 * DAY,
) -> dict[str, Any]:
    """One TCB info v3 level."""
    level: dict[str, Any] = {
        "tcb": {"sgxtcbcomponents": [{"svn": s} for s in components], "pcesvn": pcesvn},
        "tcbDate": iso(date),
        "tcbStatus": status,
    }
    if advisories:
        level["advisoryIDs"] = list(advisories)
    return level


def tcb_info_doc(
    levels: Sequence[dict[str, Any]] | None = None,
    *,
    fmspc: bytes = DEFAULT_FMSPC,
    pceid: bytes = DEFAULT_PCEID,
    issue_date: datetime = T0 - 10 * DAY,
    next_update: datetime = T0 + 20 * DAY,
    **overrides: Any,
) -> dict[str, Any]:
    """A TCB info v3 document; by default one UpToDate level equal to the default platform."""
    doc: dict[str, Any] = {
        "id": "SGX",
        "version": 3,
        "issueDate": iso(issue_date),
        "nextUpdate": iso(next_update),
        "fmspc": fmspc.hex().upper(),
        "pceId": pceid.hex().upper(),
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tcbLevels": list(levels)
        if levels is not None
        else [tcb_level(DEFAULT_COMPONENTS, DEFAULT_PCESVN, "UpToDate")],
    }
    doc.update(overrides)
    return doc


def qe_level(
    isvsvn: int,
    status: str,
    advisories: Sequence[str] = (),
    date: datetime = T0 - 300 * DAY,
) -> dict[str, Any]:
    level: dict[str, Any] = {"tcb": {"isvsvn": isvsvn}, "tcbDate": iso(date), "tcbStatus": status}
    if advisories:
        level["advisoryIDs"] = list(advisories)
    return level


def qe_identity_doc(
    levels: Sequence[dict[str, Any]] | None = None,
    *,
    issue_date: datetime = T0 - 8 * DAY,
    next_update: datetime = T0 + 22 * DAY,
    **overrides: Any,
) -> dict[str, Any]:
    """A QE identity v2 with Intel's real QE policy values."""
    doc: dict[str, Any] = {
        "id": "QE",
        "version": 2,
        "issueDate": iso(issue_date),
        "nextUpdate": iso(next_update),
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": INTEL_QE_MRSIGNER.hex().upper(),
        "isvprodid": 1,
        "tcbLevels": list(levels)
        if levels is not None
        else [qe_level(DEFAULT_QE_ISVSVN, "UpToDate")],
    }
    doc.update(overrides)
    return doc


# --- quotes ----------------------------------------------------------------------------------


def report_body(
    *,
    attributes: int = ATTR_INIT | ATTR_MODE64BIT,
    xfrm: int = 0xE7,
    miscselect: int = 0,
    mrenclave: bytes = MRENCLAVE,
    mrsigner: bytes = MRSIGNER,
    isvprodid: int = ISVPRODID,
    isvsvn: int = ISVSVN,
    report_data: bytes = REPORT_DATA,
    cpusvn: bytes = bytes(16),
) -> bytes:
    """A 384-byte ``sgx_report_body_t``."""
    body = bytearray(384)
    body[0:16] = cpusvn
    body[16:20] = struct.pack("<I", miscselect)
    body[48:64] = struct.pack("<QQ", attributes, xfrm)
    body[64:96] = mrenclave
    body[128:160] = mrsigner
    struct.pack_into("<HH", body, 256, isvprodid, isvsvn)
    body[320:384] = report_data
    return bytes(body)


def qe_report_body(**overrides: Any) -> bytes:
    """A QE report body matching Intel's QE identity (report data filled in by build_quote)."""
    values: dict[str, Any] = {
        "attributes": ATTR_INIT | ATTR_MODE64BIT | ATTR_PROVISIONKEY,
        "mrenclave": bytes(32),
        "mrsigner": INTEL_QE_MRSIGNER,
        "isvprodid": 1,
        "isvsvn": DEFAULT_QE_ISVSVN,
        "report_data": bytes(64),
    }
    values.update(overrides)
    return report_body(**values)


def quote_header(*, version: int = 3, att_key_type: int = 2, tee_type: int = 0) -> bytes:
    return (
        struct.pack("<HHIHH", version, att_key_type, tee_type, DEFAULT_QE_ISVSVN, DEFAULT_PCESVN)
        + INTEL_QE_VENDOR_ID
        + bytes(range(20))
    )


def build_quote(
    pck_key: ec.EllipticCurvePrivateKey,
    cert_data: bytes,
    *,
    header: bytes | None = None,
    body: bytes | None = None,
    qe_body: bytes | None = None,
    qe_auth_data: bytes = bytes(range(32)),
    cert_type: int = 5,
    attestation_key: ec.EllipticCurvePrivateKey | None = None,
    fix_qe_report_data: bool = True,
) -> bytes:
    """A v3 quote signed as Intel's QE signs one.

    ``cert_data`` is the certification data (for type 5: the PEM chain, NUL-terminated).
    The QE report data binds the attestation key and QE auth data unless told otherwise.
    """
    att = attestation_key or new_key()
    att_pub = raw_public(att)
    qe = bytearray(qe_body if qe_body is not None else qe_report_body())
    if fix_qe_report_data:
        qe[320:384] = hashlib.sha256(att_pub + qe_auth_data).digest() + bytes(32)
    signed = (header if header is not None else quote_header()) + (
        body if body is not None else report_body()
    )
    sig_data = (
        raw_sign(att, signed)
        + att_pub
        + bytes(qe)
        + raw_sign(pck_key, bytes(qe))
        + struct.pack("<H", len(qe_auth_data))
        + qe_auth_data
        + struct.pack("<HI", cert_type, len(cert_data))
        + cert_data
    )
    return signed + struct.pack("<I", len(sig_data)) + sig_data


# --- one complete case ---------------------------------------------------------------------------


@dataclass
class SgxCase:
    """A quote and its collateral, signed by ``pki``; mutate the documents, then ``resign()``."""

    pki: SgxTestPki
    tcb_info: dict[str, Any] = field(default_factory=tcb_info_doc)
    qe_identity: dict[str, Any] = field(default_factory=qe_identity_doc)
    leaf_options: dict[str, Any] = field(default_factory=dict)
    quote_options: dict[str, Any] = field(default_factory=dict)
    root_crl_options: dict[str, Any] = field(default_factory=dict)
    pck_crl_options: dict[str, Any] = field(default_factory=dict)
    leaf_key: ec.EllipticCurvePrivateKey = field(init=False)
    leaf: x509.Certificate = field(init=False)
    quote: bytes = field(init=False)
    collateral_map: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.resign()

    def resign(self) -> SgxCase:
        """(Re)build the leaf, the quote, the CRLs and the signed documents."""
        self.leaf_key, self.leaf = self.pki.pck_leaf(**self.leaf_options)
        chain = pem(self.leaf, self.pki.pck_ca, self.pki.root).encode() + b"\0"
        options = dict(self.quote_options)
        cert_data = options.pop("cert_data", chain)
        self.quote = build_quote(self.leaf_key, cert_data, **options)
        tcb_text, tcb_sig = self.pki.sign_document(self.tcb_info)
        qe_text, qe_sig = self.pki.sign_document(self.qe_identity)
        signing_chain = pem(self.pki.tcb_signer, self.pki.root)
        self.collateral_map = {
            "pck_crl_issuer_chain": pem(self.pki.pck_ca, self.pki.root),
            "root_ca_crl": self.pki.crl("root", **self.root_crl_options).hex(),
            "pck_crl": self.pki.crl("pck_ca", **self.pck_crl_options).hex(),
            "tcb_info_issuer_chain": signing_chain,
            "tcb_info": tcb_text,
            "tcb_info_signature": tcb_sig,
            "qe_identity_issuer_chain": signing_chain,
            "qe_identity": qe_text,
            "qe_identity_signature": qe_sig,
        }
        return self

    def collateral(self) -> QuoteCollateral:
        return QuoteCollateral.from_mapping(dict(self.collateral_map))

    def collateral_json(self) -> str:
        return json.dumps(self.collateral_map)

    def variant(self, **changes: Any) -> SgxCase:
        """A new case with the same PKI and some fields replaced (documents deep-copied)."""
        fields = {
            "tcb_info": copy.deepcopy(self.tcb_info),
            "qe_identity": copy.deepcopy(self.qe_identity),
            "leaf_options": dict(self.leaf_options),
            "quote_options": dict(self.quote_options),
            "root_crl_options": dict(self.root_crl_options),
            "pck_crl_options": dict(self.pck_crl_options),
        }
        fields.update(changes)
        return SgxCase(self.pki, **fields)
