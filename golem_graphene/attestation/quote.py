"""SGX DCAP ECDSA-P256 quote v3: parse the bytes into typed, immutable fields.

Layout (all integers little-endian), from Intel's QVL ``QuoteConstants.h``::

    [0, 48)       header
    [48, 432)     ISV enclave report body (the region the attestation key signs is [0, 432))
    [432, 436)    signature data length (must match the rest of the quote exactly)
    [436, 500)    ISV quote signature, raw r||s
    [500, 564)    attestation public key, raw x||y
    [564, 948)    QE report body
    [948, 1012)   QE report signature by the PCK leaf key, raw r||s
    [1012, ...)   QE auth data (u16 length + bytes), certification data (u16 type, u32 size, bytes)

Parsing is strict: unknown versions, key types and TEE types, wrong lengths and trailing bytes
are refused with :class:`~golem_graphene.errors.QuoteFormatError` or
:class:`~golem_graphene.errors.UnsupportedQuoteError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from golem_graphene.errors import CertificationDataError, QuoteFormatError, UnsupportedQuoteError
from golem_graphene.limits import MAX_QUOTE_BYTES

__all__ = [
    "ATTRIBUTE_DEBUG",
    "HEADER_SIZE",
    "INTEL_QE_VENDOR_ID",
    "REPORT_BODY_SIZE",
    "SIGNED_REGION_END",
    "CertificationDataType",
    "EnclaveReportBody",
    "Quote",
    "QuoteHeader",
]

HEADER_SIZE = 48
REPORT_BODY_SIZE = 384
SIGNED_REGION_END = HEADER_SIZE + REPORT_BODY_SIZE  # 432
_ECDSA_SIG_SIZE = 64
_ECDSA_KEY_SIZE = 64
_MIN_SIGNATURE_DATA = _ECDSA_SIG_SIZE + _ECDSA_KEY_SIZE + REPORT_BODY_SIZE + _ECDSA_SIG_SIZE + 2 + 6

QUOTE_VERSION_3 = 3
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_SGX = 0
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

ATTRIBUTE_DEBUG = 0x02
"""Bit 1 of the attributes flags: the enclave runs in debug mode and its memory is readable."""


class CertificationDataType(IntEnum):
    """What the quote carries to identify the PCK (Intel's ``sgx_ql_cert_key_type_t``)."""

    PPID_CLEARTEXT = 1
    PPID_RSA2048_OAEP = 2
    PPID_RSA3072_OAEP = 3
    PCK_LEAF_CERT = 4
    PCK_CERT_CHAIN = 5
    QE_REPORT_CERT = 6


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    """The 48-byte quote header."""

    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    @property
    def is_intel_qe(self) -> bool:
        """True when the quoting enclave claims to be Intel's (the simulator's is not)."""
        return self.qe_vendor_id == INTEL_QE_VENDOR_ID


@dataclass(frozen=True, slots=True)
class EnclaveReportBody:
    """An SGX report body (``sgx_report_body_t``, 384 bytes): the enclave's identity."""

    raw: bytes
    cpusvn: bytes
    miscselect: bytes
    isvextprodid: bytes
    attributes: bytes
    mrenclave: bytes
    mrsigner: bytes
    configid: bytes
    isvprodid: int
    isvsvn: int
    configsvn: int
    isvfamilyid: bytes
    report_data: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> EnclaveReportBody:
        """Parse exactly 384 bytes; raises :class:`QuoteFormatError` on another length."""
        if len(raw) != REPORT_BODY_SIZE:
            raise QuoteFormatError(
                "report body has the wrong length", expected=REPORT_BODY_SIZE, found=len(raw)
            )
        isvprodid, isvsvn, configsvn = struct.unpack_from("<HHH", raw, 256)
        return cls(
            raw=bytes(raw),
            cpusvn=raw[0:16],
            miscselect=raw[16:20],
            isvextprodid=raw[32:48],
            attributes=raw[48:64],
            mrenclave=raw[64:96],
            mrsigner=raw[128:160],
            configid=raw[192:256],
            isvprodid=isvprodid,
            isvsvn=isvsvn,
            configsvn=configsvn,
            isvfamilyid=raw[304:320],
            report_data=raw[320:384],
        )

    @property
    def attribute_flags(self) -> int:
        """The 64-bit attributes flags (INIT, DEBUG, MODE64BIT, ...)."""
        return int.from_bytes(self.attributes[0:8], "little")

    @property
    def xfrm(self) -> int:
        """The 64-bit XFRM (extended feature request mask)."""
        return int.from_bytes(self.attributes[8:16], "little")

    @property
    def debug(self) -> bool:
        """True for a debug enclave, whose secrets the host can read."""
        return bool(self.attribute_flags & ATTRIBUTE_DEBUG)


@dataclass(frozen=True, slots=True)
class Quote:
    """A parsed SGX DCAP ECDSA-P256 quote v3. Build it with :meth:`from_bytes`."""

    raw: bytes
    header: QuoteHeader
    report_body: EnclaveReportBody
    signature: bytes
    attestation_key: bytes
    qe_report_body: EnclaveReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data_type: int
    certification_data: bytes

    @property
    def signed_region(self) -> bytes:
        """Bytes [0, 432): header and report body, which the attestation key signs."""
        return self.raw[:SIGNED_REGION_END]

    @property
    def qe_report_raw(self) -> bytes:
        """The 384 QE report bytes that the PCK leaf key signs."""
        return self.qe_report_body.raw

    def pck_chain_pem(self) -> bytes:
        """The PEM PCK certificate chain carried in certification data type 5.

        Raises :class:`CertificationDataError` for other types: those carry an (encrypted) PPID
        and the chain must come from the collateral instead.
        """
        if self.certification_data_type != CertificationDataType.PCK_CERT_CHAIN:
            raise CertificationDataError(
                "the quote carries no PCK certificate chain (certification data type "
                f"{self.certification_data_type}); supply one in the collateral",
                expected=int(CertificationDataType.PCK_CERT_CHAIN),
                found=self.certification_data_type,
            )
        return self.certification_data.rstrip(b"\x00")

    @classmethod
    def from_bytes(cls, data: bytes) -> Quote:
        """Parse quote bytes strictly.

        Raises :class:`QuoteFormatError` for truncation, length mismatches and trailing bytes,
        and :class:`UnsupportedQuoteError` for versions, key types or TEE types other than
        SGX DCAP v3 with ECDSA-P256.
        """
        data = bytes(data)
        if len(data) > MAX_QUOTE_BYTES:
            raise QuoteFormatError(
                "quote is too large", expected=f"<= {MAX_QUOTE_BYTES} bytes", found=len(data)
            )
        if len(data) < SIGNED_REGION_END + 4:
            raise QuoteFormatError(
                "quote is truncated", expected=f">= {SIGNED_REGION_END + 4} bytes", found=len(data)
            )
        header = _parse_header(data[:HEADER_SIZE])
        report_body = EnclaveReportBody.from_bytes(data[HEADER_SIZE:SIGNED_REGION_END])
        (sig_len,) = struct.unpack_from("<I", data, SIGNED_REGION_END)
        sig_data = data[SIGNED_REGION_END + 4 :]
        if sig_len != len(sig_data):
            raise QuoteFormatError(
                "signature data length does not match the rest of the quote"
                + (" (trailing bytes)" if sig_len < len(sig_data) else " (truncated)"),
                expected=sig_len,
                found=len(sig_data),
            )
        if sig_len < _MIN_SIGNATURE_DATA:
            raise QuoteFormatError(
                "signature data is too short",
                expected=f">= {_MIN_SIGNATURE_DATA} bytes",
                found=sig_len,
            )
        return _parse_signature_data(data, header, report_body, sig_data)


def _parse_header(raw: bytes) -> QuoteHeader:
    version, att_key_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", raw, 0)
    if version != QUOTE_VERSION_3:
        raise UnsupportedQuoteError(
            "unsupported quote version", expected=QUOTE_VERSION_3, found=version
        )
    if att_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise UnsupportedQuoteError(
            "unsupported attestation key type (ECDSA-256-with-P-256 is 2)",
            expected=ATT_KEY_TYPE_ECDSA_P256,
            found=att_key_type,
        )
    if tee_type != TEE_TYPE_SGX:
        raise UnsupportedQuoteError(
            "unsupported TEE type (SGX is 0)", expected=TEE_TYPE_SGX, found=f"{tee_type:#x}"
        )
    return QuoteHeader(
        version=version,
        att_key_type=att_key_type,
        tee_type=tee_type,
        qe_svn=qe_svn,
        pce_svn=pce_svn,
        qe_vendor_id=raw[12:28],
        user_data=raw[28:48],
    )


def _parse_signature_data(
    data: bytes, header: QuoteHeader, report_body: EnclaveReportBody, sig: bytes
) -> Quote:
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(sig):
            raise QuoteFormatError(
                f"quote is truncated in {what}",
                expected=f"{n} bytes",
                found=f"{len(sig) - pos} bytes",
            )
        chunk = sig[pos : pos + n]
        pos += n
        return chunk

    signature = take(_ECDSA_SIG_SIZE, "the ISV quote signature")
    attestation_key = take(_ECDSA_KEY_SIZE, "the attestation key")
    qe_report_body = EnclaveReportBody.from_bytes(take(REPORT_BODY_SIZE, "the QE report"))
    qe_report_signature = take(_ECDSA_SIG_SIZE, "the QE report signature")
    (auth_len,) = struct.unpack("<H", take(2, "the QE auth data size"))
    qe_auth_data = take(auth_len, "the QE auth data")
    cert_type, cert_size = struct.unpack("<HI", take(6, "the certification data header"))
    if not 1 <= cert_type <= 5:
        raise UnsupportedQuoteError(
            "unknown certification data type for a v3 quote", expected="1..5", found=cert_type
        )
    certification_data = take(cert_size, "the certification data")
    if pos != len(sig):
        raise QuoteFormatError(
            "trailing bytes after the certification data", expected=0, found=len(sig) - pos
        )
    return Quote(
        raw=data,
        header=header,
        report_body=report_body,
        signature=signature,
        attestation_key=attestation_key,
        qe_report_body=qe_report_body,
        qe_report_signature=qe_report_signature,
        qe_auth_data=qe_auth_data,
        certification_data_type=cert_type,
        certification_data=certification_data,
    )
