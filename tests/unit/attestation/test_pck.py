"""The SGX extension of PCK certificates, checked against dcap-qvl's decoder on real certificates
and against hand-encoded DER for the edge cases."""

from __future__ import annotations

from pathlib import Path

import dcap_qvl
import pytest
from _sgx_test_pki import (
    SGX_EXTENSION_OID,
    der_int,
    der_octets,
    der_oid,
    der_seq,
    der_tlv,
    make_cert,
    new_key,
    sgx_extension_der,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from golem_graphene.attestation._internal.der import DerError
from golem_graphene.attestation.pck import PckExtension, SgxType, pck_ca_kind
from golem_graphene.attestation.quote import Quote
from golem_graphene.errors import CertificateChainError


def _leaves(vectors: Path) -> dict[str, x509.Certificate]:
    out = {}
    for name in ("phala_sgx", "oasis_sgx"):
        quote = Quote.from_bytes((vectors / "dcap" / name / "quote.bin").read_bytes())
        out[name] = x509.load_pem_x509_certificates(quote.pck_chain_pem())[0]
    cosmian = vectors / "sources" / "cosmian-intel-sgx-ra"
    quote = Quote.from_bytes((cosmian / "quote.dat").read_bytes())
    out["cosmian_quote"] = x509.load_pem_x509_certificates(quote.pck_chain_pem())[0]
    out["cosmian_pck_cert"] = x509.load_pem_x509_certificate(
        (cosmian / "pck_cert.pem").read_bytes()
    )
    sample = vectors / "sources" / "intel-qvl-sampledata" / "pckCert.pem"
    out["intel_sample"] = x509.load_pem_x509_certificate(sample.read_bytes())
    return out


LEAVES = ["phala_sgx", "oasis_sgx", "cosmian_quote", "cosmian_pck_cert", "intel_sample"]


@pytest.mark.parametrize("name", LEAVES)
def test_real_extensions_agree_with_dcap_qvl(vectors: Path, name: str) -> None:
    cert = _leaves(vectors)[name]
    ours = PckExtension.from_certificate(cert)
    theirs = dcap_qvl.parse_pck_extension_from_pem(cert.public_bytes(serialization.Encoding.PEM))
    assert ours.fmspc == bytes(theirs.fmspc)
    assert ours.pceid == bytes(theirs.pce_id)
    assert ours.pcesvn == theirs.pce_svn
    assert ours.cpusvn == bytes(theirs.cpu_svn)
    assert ours.ppid == bytes(theirs.ppid)
    assert int(ours.sgx_type) == theirs.sgx_type
    expected_instance = theirs.platform_instance_id
    assert ours.platform_instance_id == (
        bytes(expected_instance) if expected_instance is not None else None
    )
    # In every Intel-issued certificate the CPUSVN octets are the 16 component SVNs.
    assert ours.tcb_components == tuple(ours.cpusvn)


def test_known_values(vectors: Path) -> None:
    leaves = _leaves(vectors)
    phala = PckExtension.from_certificate(leaves["phala_sgx"])
    assert phala.fmspc.hex().upper() == "00A067110000"
    assert phala.cpusvn.hex().startswith("0b0b0202ff01")  # research note, section 5 step 17
    assert phala.sgx_type is SgxType.STANDARD
    assert phala.platform_instance_id is None
    oasis = PckExtension.from_certificate(leaves["oasis_sgx"])
    assert oasis.fmspc.hex().upper() == "00606A000000"
    assert oasis.sgx_type is SgxType.SCALABLE  # Platform CA certificate
    assert oasis.platform_instance_id is not None and len(oasis.platform_instance_id) == 16
    cosmian = PckExtension.from_certificate(leaves["cosmian_quote"])
    # SOURCE.txt: FMSPC 30606A000000, components [7,9,3,3,255,255,1,0..], PCESVN 13.
    assert cosmian.fmspc.hex().upper() == "30606A000000"
    assert cosmian.tcb_components == (7, 9, 3, 3, 255, 255, 1) + (0,) * 9
    assert cosmian.pcesvn == 13


def test_pck_ca_kind() -> None:
    assert pck_ca_kind("Intel SGX PCK Processor CA") == "processor"
    assert pck_ca_kind("Intel SGX PCK Platform CA") == "platform"
    with pytest.raises(CertificateChainError) as info:
        pck_ca_kind("Intel SGX TCB Signing")
    assert info.value.found == "Intel SGX TCB Signing"


def test_svns_above_127_need_a_leading_zero_byte() -> None:
    components = (0, 1, 127, 128, 255, 200) + (9,) * 10
    ext = PckExtension.from_der(sgx_extension_der(components=components, pcesvn=0xFFFF))
    assert ext.tcb_components == components
    assert ext.pcesvn == 0xFFFF
    assert der_int(128) == b"\x02\x02\x00\x80"  # the helper encodes what Intel does


def test_roundtrip_of_every_field() -> None:
    der = sgx_extension_der(
        components=tuple(range(16)),
        pcesvn=13,
        cpusvn=bytes(range(100, 116)),
        ppid=bytes(range(16)),
        pceid=b"\x12\x34",
        fmspc=bytes.fromhex("00906ED50000"),
        sgx_type=2,
    )
    ext = PckExtension.from_der(der)
    assert ext.tcb_components == tuple(range(16))
    assert ext.cpusvn == bytes(range(100, 116))
    assert ext.ppid == bytes(range(16))
    assert ext.pceid == b"\x12\x34"
    assert ext.sgx_type is SgxType.SCALABLE_WITH_INTEGRITY


# --- malformed DER ------------------------------------------------------------------------------

TCB = SGX_EXTENSION_OID + ".2"


def _entry(suffix: str, value: bytes) -> bytes:
    return der_seq(der_oid(SGX_EXTENSION_OID + suffix), value)


def _tcb(components: list[bytes] | None = None, extra: list[bytes] | None = None) -> bytes:
    comps = components if components is not None else [der_int(1)] * 16
    items = [der_seq(der_oid(f"{TCB}.{i}"), v) for i, v in enumerate(comps, 1)]
    items.append(der_seq(der_oid(f"{TCB}.17"), der_int(13)))
    items.append(der_seq(der_oid(f"{TCB}.18"), der_octets(bytes(16))))
    return _entry(".2", der_seq(*items, *(extra or [])))


def _ext(*, tcb: bytes | None = None, drop: str = "", **fields: bytes) -> bytes:
    parts = {
        ".1": _entry(".1", der_octets(bytes(16))),
        ".2": tcb if tcb is not None else _tcb(),
        ".3": _entry(".3", der_octets(b"\0\0")),
        ".4": _entry(".4", der_octets(bytes(6))),
        ".5": _entry(".5", der_int(0, tag=0x0A)),
    }
    parts.update(fields)
    return der_seq(*(v for k, v in parts.items() if k != drop))


def test_minimal_valid_extension() -> None:
    assert PckExtension.from_der(_ext()).tcb_components == (1,) * 16


@pytest.mark.parametrize(
    ("der", "words"),
    [
        (_ext(drop=".1"), "PPID"),
        (_ext(drop=".2"), "TCB"),
        (_ext(drop=".3"), "PCE-ID"),
        (_ext(drop=".4"), "FMSPC"),
        (_ext(drop=".5"), "SGX type"),
        (_ext(tcb=_tcb([der_int(1)] * 15)), "TCB component 16"),
        (_ext(tcb=_tcb([der_int(1)] * 15 + [der_int(256)])), "out of range"),
        (_ext(tcb=_tcb([der_int(1)] * 15 + [der_int(-1)])), "out of range"),
        (_ext(tcb=_tcb([der_int(1)] * 15 + [der_octets(b"\1")])), "expected tag"),
        (_ext(tcb=_tcb([der_int(1)] * 15 + [der_tlv(0x02, b"\x00\x01")])), "non-minimal"),
        (_ext(tcb=_tcb(extra=[der_seq(der_oid(f"{TCB}.1"), der_int(1))])), "duplicate"),
        (_ext(**{".4": _entry(".4", der_octets(bytes(5)))}), "FMSPC must be 6 bytes"),
        (_ext(**{".3": _entry(".3", der_octets(bytes(3)))}), "PCE-ID must be 2 bytes"),
        (_ext(**{".1": _entry(".1", der_octets(bytes(15)))}), "PPID must be 16 bytes"),
        (_ext(**{".5": _entry(".5", der_int(7, tag=0x0A))}), "unknown SGX type"),
        (_ext(**{".5": _entry(".5", der_int(0))}), "expected tag"),
        (_ext() + b"\0", "trailing bytes"),
        (_ext()[:-1], "past the end"),
        (b"", "truncated"),
        (der_octets(b"x"), "expected SEQUENCE"),
        (der_seq(der_seq(der_oid("1.2.3"))), "{OID, value}"),
        (der_seq(der_seq(der_int(1), der_int(2))), "OBJECT IDENTIFIER"),
        (b"\x30\x80", "bad length"),
        (b"\x30\x81\x05" + bytes(5), "non-minimal length"),
        (b"\x1f\x01\x00", "high tag"),
    ],
)
def test_malformed_extensions_raise_der_error(der: bytes, words: str) -> None:
    with pytest.raises(CertificateChainError) as info:
        PckExtension.from_der(der)
    assert isinstance(info.value.__cause__, DerError)
    assert words in str(info.value)


def _self_signed(extension: bytes | None) -> x509.Certificate:
    key = new_key()
    extra = (
        [x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSION_OID), extension)]
        if extension is not None
        else []
    )
    return make_cert(subject="leaf", key=key, issuer=None, issuer_key=key, ca=False, extra=extra)


def test_from_certificate_wraps_errors() -> None:
    with pytest.raises(CertificateChainError, match="no SGX extension"):
        PckExtension.from_certificate(_self_signed(None))
    with pytest.raises(CertificateChainError, match="malformed") as info:
        PckExtension.from_certificate(_self_signed(_ext(drop=".4")))
    assert isinstance(info.value.__cause__, DerError)
    assert PckExtension.from_certificate(_self_signed(_ext())).fmspc == bytes(6)
