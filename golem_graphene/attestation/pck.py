"""The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1).

It names the platform (FMSPC, PCE-ID) and the TCB the certificate was issued for: 16 SGX TCB
component SVNs, the PCESVN and the CPUSVN. TCB level selection uses these values, never the
quote's CPUSVN (they differ in every real quote).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from cryptography import x509

from golem_graphene.attestation._internal.der import (
    TAG_ENUMERATED,
    DerError,
    Tlv,
    encode_int,
    encode_octets,
    encode_oid,
    encode_sequence,
    parse_exact,
)
from golem_graphene.errors import CertificateChainError

__all__ = ["SGX_EXTENSION_OID", "PckExtension", "SgxType", "pck_ca_kind"]

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_PPID = SGX_EXTENSION_OID + ".1"
_TCB = SGX_EXTENSION_OID + ".2"
_PCEID = SGX_EXTENSION_OID + ".3"
_FMSPC = SGX_EXTENSION_OID + ".4"
_SGX_TYPE = SGX_EXTENSION_OID + ".5"
_PLATFORM_INSTANCE_ID = SGX_EXTENSION_OID + ".6"
_CONFIGURATION = SGX_EXTENSION_OID + ".7"
_PCESVN = _TCB + ".17"
_CPUSVN = _TCB + ".18"


class SgxType(IntEnum):
    """The platform's SGX type as the PCK certificate states it."""

    STANDARD = 0
    SCALABLE = 1
    SCALABLE_WITH_INTEGRITY = 2


@dataclass(frozen=True, slots=True)
class PckExtension:
    """Decoded SGX extension of a PCK leaf certificate."""

    ppid: bytes
    tcb_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pceid: bytes
    fmspc: bytes
    sgx_type: SgxType
    platform_instance_id: bytes | None = None

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> PckExtension:
        """Decode the extension; raises :class:`CertificateChainError` when absent or malformed."""
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
        except x509.ExtensionNotFound as exc:
            raise CertificateChainError("the PCK certificate has no SGX extension") from exc
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - cryptography
            raise CertificateChainError("the SGX extension could not be read")
        return cls.from_der(value.value)

    @classmethod
    def from_der(cls, der: bytes) -> PckExtension:
        """Decode the extension value (``SEQUENCE OF SEQUENCE {OID, value}``).

        Raises :class:`CertificateChainError` (with the DER problem as its cause) when malformed.
        """
        try:
            return cls._decode(der)
        except DerError as exc:
            raise CertificateChainError(
                f"the PCK certificate's SGX extension is malformed: {exc}"
            ) from exc

    @classmethod
    def _decode(cls, der: bytes) -> PckExtension:
        fields = _oid_map(parse_exact(der))
        tcb = _oid_map(_require(fields, _TCB, "TCB"))
        components = tuple(
            _svn(_require(tcb, f"{_TCB}.{i}", f"TCB component {i}").as_int(), f"component {i}")
            for i in range(1, 17)
        )
        pcesvn = _require(tcb, _PCESVN, "PCESVN").as_int()
        if not 0 <= pcesvn <= 0xFFFF:
            raise DerError(f"PCESVN out of range: {pcesvn}")
        cpusvn = _fixed(_require(tcb, _CPUSVN, "CPUSVN").as_octets(), 16, "CPUSVN")
        sgx_type_value = _require(fields, _SGX_TYPE, "SGX type").as_int(TAG_ENUMERATED)
        try:
            sgx_type = SgxType(sgx_type_value)
        except ValueError as exc:
            raise DerError(f"unknown SGX type {sgx_type_value}") from exc
        instance = fields.get(_PLATFORM_INSTANCE_ID)
        return cls(
            ppid=_fixed(_require(fields, _PPID, "PPID").as_octets(), 16, "PPID"),
            tcb_components=components,
            pcesvn=pcesvn,
            cpusvn=cpusvn,
            pceid=_fixed(_require(fields, _PCEID, "PCE-ID").as_octets(), 2, "PCE-ID"),
            fmspc=_fixed(_require(fields, _FMSPC, "FMSPC").as_octets(), 6, "FMSPC"),
            sgx_type=sgx_type,
            platform_instance_id=instance.as_octets() if instance is not None else None,
        )

    def to_der(self) -> bytes:
        """Encode as Intel lays the extension out (the simulator issues PCK certificates)."""

        def entry(oid: str, value: bytes) -> bytes:
            return encode_sequence(encode_oid(oid), value)

        tcb = [
            entry(f"{_TCB}.{i}", encode_int(svn))
            for i, svn in enumerate(self.tcb_components, start=1)
        ]
        tcb.append(entry(_PCESVN, encode_int(self.pcesvn)))
        tcb.append(entry(_CPUSVN, encode_octets(self.cpusvn)))
        items = [
            entry(_PPID, encode_octets(self.ppid)),
            entry(_TCB, encode_sequence(*tcb)),
            entry(_PCEID, encode_octets(self.pceid)),
            entry(_FMSPC, encode_octets(self.fmspc)),
            entry(_SGX_TYPE, encode_int(int(self.sgx_type), TAG_ENUMERATED)),
        ]
        if self.platform_instance_id is not None:
            items.append(entry(_PLATFORM_INSTANCE_ID, encode_octets(self.platform_instance_id)))
        return encode_sequence(*items)


def pck_ca_kind(issuer_cn: str) -> str:
    """Which PCK CRL applies: ``processor`` or ``platform``, from the PCK CA's common name.

    Raises :class:`CertificateChainError` for any other issuer.
    """
    if "Processor" in issuer_cn:
        return "processor"
    if "Platform" in issuer_cn:
        return "platform"
    raise CertificateChainError(
        "the PCK certificate is not issued by a PCK Processor or Platform CA",
        expected="Intel SGX PCK Processor CA or Platform CA",
        found=issuer_cn,
    )


def _oid_map(seq: Tlv) -> dict[str, Tlv]:
    out: dict[str, Tlv] = {}
    for entry in seq.children():
        parts = entry.children()
        if len(parts) != 2:
            raise DerError("an SGX extension entry must be {OID, value}")
        oid = parts[0].as_oid()
        if oid in out:
            raise DerError(f"duplicate SGX extension entry {oid}")
        out[oid] = parts[1]
    return out


def _require(fields: dict[str, Tlv], oid: str, what: str) -> Tlv:
    try:
        return fields[oid]
    except KeyError:
        raise DerError(f"missing {what} ({oid})") from None


def _fixed(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise DerError(f"{what} must be {size} bytes, found {len(value)}")
    return value


def _svn(value: int, what: str) -> int:
    if not 0 <= value <= 255:
        raise DerError(f"TCB {what} SVN out of range: {value}")
    return value
