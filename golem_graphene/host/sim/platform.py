"""A simulated SGX platform whose quotes the real verifier checks with its complete algorithm.

One platform lives in a provider's data directory: a simulation PKI shaped like Intel's (root
CA, PCK Processor CA, PCK leaf with the real SGX extension layout and a simulated FMSPC, TCB
signing certificate, CRLs), an attestation key, and collateral (TCB info v3, QE identity v2)
signed like Intel's. Private keys are stored with mode 0600. The root carries
:data:`~golem_graphene.attestation.anchors.SIMULATION_MARKER_OID`, so no verifier mistakes it for
Intel's; its key fingerprint is what a requestor names to trust it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from golem_graphene._internal.files import write_atomic
from golem_graphene.attestation.anchors import SIMULATION_MARKER_OID, TrustAnchor
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.pck import SGX_EXTENSION_OID, PckExtension, SgxType
from golem_graphene.attestation.quote import ATTRIBUTE_DEBUG, REPORT_BODY_SIZE, SIGNED_REGION_END
from golem_graphene.errors import RunnerError

__all__ = [
    "SIM_FMSPC",
    "SIM_QE_MRSIGNER",
    "SIM_QE_VENDOR_ID",
    "EnclaveIdentity",
    "SimPlatform",
]

SIM_FMSPC = bytes.fromhex("00FFFF5E0000")
SIM_PCEID = bytes.fromhex("0000")
SIM_QE_VENDOR_ID = hashlib.sha256(b"golem-graphene/sim/qe-vendor-id").digest()[:16]
SIM_QE_MRSIGNER = hashlib.sha256(b"golem-graphene/sim/quoting-enclave").digest()
SIM_QE_ISVPRODID = 1
SIM_QE_ISVSVN = 8
SIM_TCB_COMPONENTS = (14, 14, 3, 3, 255, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
SIM_PCESVN = 13
_QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")
_QE_ATTRIBUTES_MASK = bytes.fromhex("FBFFFFFFFFFFFFFF0000000000000000")
_COLLATERAL_LIFETIME = timedelta(days=30)
_COLLATERAL_REFRESH_MARGIN = timedelta(days=1)
_ORG = "golem-graphene simulation (NOT Intel)"

_ATTR_INIT = 0x01
_ATTR_MODE64BIT = 0x04
_XFRM_LEGACY = 0x03


@dataclass(frozen=True)
class EnclaveIdentity:
    """What the simulated CPU measured and reports for one enclave."""

    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int = 0
    isvsvn: int = 0
    debug: bool = False

    def report_body(self, report_data: bytes, cpusvn: bytes) -> bytes:
        """The 384-byte report body with ``report_data`` zero-padded to 64 bytes."""
        if len(report_data) > 64:
            raise RunnerError("report data is at most 64 bytes", found=len(report_data))
        flags = _ATTR_INIT | _ATTR_MODE64BIT | (ATTRIBUTE_DEBUG if self.debug else 0)
        body = bytearray(REPORT_BODY_SIZE)
        body[0:16] = cpusvn
        body[48:64] = struct.pack("<QQ", flags, _XFRM_LEGACY)
        body[64:96] = self.mrenclave
        body[128:160] = self.mrsigner
        struct.pack_into("<HH", body, 256, self.isvprodid, self.isvsvn)
        body[320:384] = report_data.ljust(64, b"\0")
        return bytes(body)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimPlatform:
    """The simulated platform of one data directory; create it with :meth:`load_or_create`."""

    def __init__(
        self,
        directory: Path,
        keys: dict[str, ec.EllipticCurvePrivateKey],
        certs: dict[str, x509.Certificate],
        qe_id: bytes,
    ) -> None:
        self.directory = directory
        self._keys = keys
        self._certs = certs
        self._qe_id = qe_id
        self._lock = threading.Lock()
        self._collateral: tuple[datetime, QuoteCollateral] | None = None
        self._chain_pem = _pem(certs["pck"]) + _pem(certs["pck-ca"]) + _pem(certs["root"]) + b"\0"
        self._pck = PckExtension.from_certificate(certs["pck"])
        attestation_pub = keys["attestation"].public_key().public_numbers()
        self._attestation_key_raw = attestation_pub.x.to_bytes(
            32, "big"
        ) + attestation_pub.y.to_bytes(32, "big")
        self._qe_auth_data = bytes(range(32))
        self._qe_tail = self._signed_qe_tail()

    # -- creation and loading ----------------------------------------------------------------

    @classmethod
    def load_or_create(cls, data_dir: Path, *, now: datetime | None = None) -> SimPlatform:
        """Load the platform under ``data_dir/sim-platform``, creating it on first use."""
        directory = Path(data_dir) / "sim-platform"
        if (directory / "platform.json").is_file():
            return cls._load(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls._create(directory, now or datetime.now(UTC))

    @classmethod
    def _load(cls, directory: Path) -> SimPlatform:
        try:
            meta = json.loads((directory / "platform.json").read_text())
            keys = {
                name: serialization.load_pem_private_key(
                    (directory / f"{name}.key").read_bytes(), None
                )
                for name in ("root", "pck-ca", "pck", "tcb-signing", "attestation")
            }
            certs = {
                name: x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
                for name in ("root", "pck-ca", "pck", "tcb-signing")
            }
            qe_id = bytes.fromhex(meta["qe_id"])
        except (OSError, ValueError, KeyError) as exc:
            raise RunnerError(
                f"the simulated platform in {directory} is unreadable: {exc}"
            ) from exc
        ec_keys = {k: v for k, v in keys.items() if isinstance(v, ec.EllipticCurvePrivateKey)}
        if len(ec_keys) != len(keys):
            raise RunnerError(f"the simulated platform in {directory} has a non-EC key")
        return cls(directory, ec_keys, certs, qe_id)

    @classmethod
    def _create(cls, directory: Path, now: datetime) -> SimPlatform:
        start = now - timedelta(days=1)
        keys = {
            name: ec.generate_private_key(ec.SECP256R1())
            for name in ("root", "pck-ca", "pck", "tcb-signing", "attestation")
        }
        root_name = _name("golem-graphene Simulated SGX Root CA")

        def builder(
            subject: x509.Name, issuer: x509.Name, key: str, years: int, ca: bool
        ) -> x509.CertificateBuilder:
            b = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(issuer)
                .public_key(keys[key].public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(start + timedelta(days=365 * years))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            )
            usage = dict.fromkeys(
                (
                    "content_commitment",
                    "key_encipherment",
                    "data_encipherment",
                    "key_agreement",
                    "encipher_only",
                    "decipher_only",
                ),
                False,
            )
            return b.add_extension(
                x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
                critical=True,
            )

        root = (
            builder(root_name, root_name, "root", 25, True)
            .add_extension(
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(SIMULATION_MARKER_OID), b"\x05\x00"
                ),
                critical=False,
            )
            .sign(keys["root"], hashes.SHA256())
        )
        ca_name = _name("golem-graphene Simulated SGX PCK Processor CA")
        pck_ca = builder(ca_name, root_name, "pck-ca", 20, True).sign(keys["root"], hashes.SHA256())
        extension = PckExtension(
            ppid=secrets.token_bytes(16),
            tcb_components=SIM_TCB_COMPONENTS,
            pcesvn=SIM_PCESVN,
            cpusvn=bytes(SIM_TCB_COMPONENTS),
            pceid=SIM_PCEID,
            fmspc=SIM_FMSPC,
            sgx_type=SgxType.STANDARD,
        )
        pck = (
            builder(_name("golem-graphene Simulated SGX PCK Certificate"), ca_name, "pck", 7, False)
            .add_extension(
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(SGX_EXTENSION_OID), extension.to_der()
                ),
                critical=False,
            )
            .sign(keys["pck-ca"], hashes.SHA256())
        )
        tcb_signing = builder(
            _name("golem-graphene Simulated SGX TCB Signing"), root_name, "tcb-signing", 7, False
        ).sign(keys["root"], hashes.SHA256())
        certs = {"root": root, "pck-ca": pck_ca, "pck": pck, "tcb-signing": tcb_signing}
        for name, key in keys.items():
            _write_private(
                directory / f"{name}.key",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        for name, cert in certs.items():
            write_atomic(directory / f"{name}.pem", _pem(cert), mode=0o644)
        qe_id = secrets.token_bytes(16)
        meta = {
            "qe_id": qe_id.hex(),
            "fmspc": SIM_FMSPC.hex().upper(),
            "root_fingerprint": TrustAnchor(root, "sim").fingerprint,
            "created": _iso(now),
        }
        write_atomic(directory / "platform.json", json.dumps(meta, indent=2).encode(), mode=0o644)
        return cls(directory, keys, certs, qe_id)

    # -- identity of the platform ------------------------------------------------------------

    @property
    def root_certificate(self) -> x509.Certificate:
        """The simulation root CA certificate."""
        return self._certs["root"]

    @property
    def root_pem(self) -> bytes:
        """The simulation root CA certificate in PEM."""
        return _pem(self._certs["root"])

    @property
    def root_path(self) -> Path:
        """Where the root certificate is stored (for ``verify-quote --root``)."""
        return self.directory / "root.pem"

    def trust_anchor(self) -> TrustAnchor:
        """The simulation root as a (simulated) trust anchor."""
        return TrustAnchor(self._certs["root"], "golem-graphene simulation root")

    @property
    def root_fingerprint(self) -> str:
        """SPKI SHA-256 of the root: what a requestor names to trust this platform."""
        return self.trust_anchor().fingerprint

    # -- quotes -------------------------------------------------------------------------------

    def _signed_qe_tail(self) -> bytes:
        """Everything after the ISV signature that does not depend on the enclave."""
        report_data = hashlib.sha256(
            self._attestation_key_raw + self._qe_auth_data
        ).digest() + bytes(32)
        qe = EnclaveIdentity(
            mrenclave=hashlib.sha256(b"golem-graphene/sim/qe").digest(),
            mrsigner=SIM_QE_MRSIGNER,
            isvprodid=SIM_QE_ISVPRODID,
            isvsvn=SIM_QE_ISVSVN,
        )
        qe_body = bytearray(qe.report_body(report_data, self._pck.cpusvn))
        qe_body[48:64] = _QE_ATTRIBUTES
        qe_signature = _raw_signature(self._keys["pck"], bytes(qe_body))
        return (
            self._attestation_key_raw
            + bytes(qe_body)
            + qe_signature
            + struct.pack("<H", len(self._qe_auth_data))
            + self._qe_auth_data
            + struct.pack("<HI", 5, len(self._chain_pem))
            + self._chain_pem
        )

    def quote(self, enclave: EnclaveIdentity, report_data: bytes) -> bytes:
        """A DCAP v3 quote for ``enclave`` over ``report_data`` (zero-padded to 64 bytes)."""
        header = struct.pack("<HHIHH", 3, 2, 0, SIM_QE_ISVSVN, SIM_PCESVN) + SIM_QE_VENDOR_ID
        header += self._qe_id + bytes(4)
        signed = header + enclave.report_body(report_data, self._pck.cpusvn)
        assert len(signed) == SIGNED_REGION_END
        signature = _raw_signature(self._keys["attestation"], signed)
        sig_data = signature + self._qe_tail
        return signed + struct.pack("<I", len(sig_data)) + sig_data

    # -- collateral ---------------------------------------------------------------------------

    def collateral(self, at: datetime | None = None) -> QuoteCollateral:
        """Collateral valid at ``at`` (default now); re-issued shortly before it would expire."""
        at = at or datetime.now(UTC)
        with self._lock:
            if self._collateral is not None:
                issued, cached = self._collateral
                if issued <= at <= issued + _COLLATERAL_LIFETIME - _COLLATERAL_REFRESH_MARGIN:
                    return cached
            issued = at - timedelta(minutes=5)
            fresh = self._issue_collateral(issued)
            self._collateral = (issued, fresh)
            return fresh

    def _issue_collateral(self, issued: datetime) -> QuoteCollateral:
        next_update = issued + _COLLATERAL_LIFETIME
        tcb_levels = [
            {
                "tcb": {
                    "sgxtcbcomponents": [{"svn": s} for s in SIM_TCB_COMPONENTS],
                    "pcesvn": SIM_PCESVN,
                },
                "tcbDate": "2025-01-01T00:00:00Z",
                "tcbStatus": "UpToDate",
            },
            {
                "tcb": {"sgxtcbcomponents": [{"svn": 0} for _ in SIM_TCB_COMPONENTS], "pcesvn": 0},
                "tcbDate": "2020-01-01T00:00:00Z",
                "tcbStatus": "OutOfDate",
                "advisoryIDs": ["GOLEM-GRAPHENE-SIM-0001"],
            },
        ]
        tcb_info = json.dumps(
            {
                "id": "SGX",
                "version": 3,
                "issueDate": _iso(issued),
                "nextUpdate": _iso(next_update),
                "fmspc": SIM_FMSPC.hex().upper(),
                "pceId": SIM_PCEID.hex().upper(),
                "tcbType": 0,
                "tcbEvaluationDataNumber": 1,
                "tcbLevels": tcb_levels,
            },
            separators=(",", ":"),
        )
        qe_identity = json.dumps(
            {
                "id": "QE",
                "version": 2,
                "issueDate": _iso(issued),
                "nextUpdate": _iso(next_update),
                "tcbEvaluationDataNumber": 1,
                "miscselect": "00000000",
                "miscselectMask": "FFFFFFFF",
                "attributes": _QE_ATTRIBUTES.hex().upper(),
                "attributesMask": _QE_ATTRIBUTES_MASK.hex().upper(),
                "mrsigner": SIM_QE_MRSIGNER.hex().upper(),
                "isvprodid": SIM_QE_ISVPRODID,
                "tcbLevels": [
                    {
                        "tcb": {"isvsvn": SIM_QE_ISVSVN},
                        "tcbDate": "2025-01-01T00:00:00Z",
                        "tcbStatus": "UpToDate",
                    }
                ],
            },
            separators=(",", ":"),
        )
        signer = self._keys["tcb-signing"]
        tcb_chain = (_pem(self._certs["tcb-signing"]) + _pem(self._certs["root"])).decode()
        return QuoteCollateral(
            pck_crl_issuer_chain=(_pem(self._certs["pck-ca"]) + _pem(self._certs["root"])).decode(),
            root_ca_crl=self._crl("root", "root", issued, next_update),
            pck_crl=self._crl("pck-ca", "pck-ca", issued, next_update),
            tcb_info_issuer_chain=tcb_chain,
            tcb_info=tcb_info,
            tcb_info_signature=_raw_signature(signer, tcb_info.encode()),
            qe_identity_issuer_chain=tcb_chain,
            qe_identity=qe_identity,
            qe_identity_signature=_raw_signature(signer, qe_identity.encode()),
        )

    def _crl(self, issuer: str, key: str, this_update: datetime, next_update: datetime) -> bytes:
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._certs[issuer].subject)
            .last_update(this_update)
            .next_update(next_update)
            .sign(self._keys[key], hashes.SHA256())
        )
        return crl.public_bytes(serialization.Encoding.DER)


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)
