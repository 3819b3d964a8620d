"""Parse Intel PCS / PCCS v4 responses into the pieces a collateral bundle keeps.

Pure functions: response bytes and header values in, typed documents out. The network client
(:mod:`golem_graphene.attestation.pcs`) and its disk cache both go through them, so a cached
entry is held to exactly the rules a fresh response is.

Three rules matter for verification:

* The TCB info / QE identity signature covers the exact text of the ``tcbInfo`` /
  ``enclaveIdentity`` value as served. We slice that text out of the body by position and never
  re-serialise it (a re-serialised copy verifies only by luck of formatting).
* Issuer chains arrive URL-encoded in a header. Malformed escapes are refused rather than passed
  through (``urllib.parse.unquote`` silently keeps them).
* CRLs arrive as DER, PEM or (PCCS ``/rootcacrl``) hex text; the bundle holds DER.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_to_bytes

from cryptography import x509

from golem_graphene.attestation.collateral import QeIdentity, TcbInfo
from golem_graphene.canonical_json import CanonicalJsonError, parse_json
from golem_graphene.errors import CollateralFormatError, CollateralSourceError
from golem_graphene.limits import MAX_CHAIN_CERTS

__all__ = [
    "CrlDocument",
    "SignedDocument",
    "decode_issuer_chain",
    "json_members",
    "parse_crl_response",
    "parse_qe_identity_response",
    "parse_tcb_info_response",
]

_JSON_WS = " \t\n\r"
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_PEM_CRL = re.compile(
    rb"-----BEGIN X509 CRL-----([A-Za-z0-9+/=\s]*)-----END X509 CRL-----", re.ASCII
)


@dataclass(frozen=True, slots=True)
class SignedDocument:
    """A TCB info or QE identity as served: the exact signed text, its signature and chain.

    ``raw`` is a substring of the response body, byte for byte; ``issue_date`` and
    ``next_update`` come from parsing it (for cache freshness, not for verification).
    """

    raw: str
    signature: bytes
    issuer_chain: str
    issue_date: datetime
    next_update: datetime


@dataclass(frozen=True, slots=True)
class CrlDocument:
    """A CRL in DER with its issuer chain (``None`` for the root CA CRL, which has none)."""

    der: bytes
    issuer_chain: str | None
    this_update: datetime
    next_update: datetime


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _JSON_WS:
        pos += 1
    return pos


def json_members(text: str, what: str) -> dict[str, tuple[int, int]]:
    """The top-level members of a JSON object text, each as ``(start, end)`` of its value.

    ``text[start:end]`` is the value exactly as written (whitespace inside it included). The
    whole text must be one JSON object with nothing after it, and member names must be unique:
    a duplicated ``tcbInfo`` would leave it open which copy was signed. Raises
    :class:`CollateralFormatError` naming the offset of the first fault.
    """
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "{":
        raise CollateralFormatError(f"{what} is not a JSON object (offset {pos})")
    pos = _skip_ws(text, pos + 1)
    members: dict[str, tuple[int, int]] = {}
    try:
        if pos < len(text) and text[pos] == "}":
            pos += 1
        else:
            while True:
                if pos >= len(text) or text[pos] != '"':
                    raise CollateralFormatError(f"{what}: expected a member name at offset {pos}")
                # A JSON string is itself a JSON value, so the decoder reads the name for us.
                name, pos = _DECODER.raw_decode(text, pos)
                pos = _skip_ws(text, pos)
                if pos >= len(text) or text[pos] != ":":
                    raise CollateralFormatError(f"{what}: expected ':' at offset {pos}")
                start = _skip_ws(text, pos + 1)
                _, end = _DECODER.raw_decode(text, start)
                if name in members:
                    raise CollateralFormatError(f"{what} has the member {name!r} twice")
                members[name] = (start, end)
                pos = _skip_ws(text, end)
                if pos < len(text) and text[pos] == ",":
                    pos = _skip_ws(text, pos + 1)
                    continue
                if pos < len(text) and text[pos] == "}":
                    pos += 1
                    break
                raise CollateralFormatError(f"{what}: expected ',' or '}}' at offset {pos}")
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError is a ValueError; it names the position of truncation or bad syntax.
        raise CollateralFormatError(f"{what} is not valid JSON: {exc}") from None
    pos = _skip_ws(text, pos)
    if pos != len(text):
        raise CollateralFormatError(
            f"{what} has trailing data after the JSON object (offset {pos})"
        )
    return members


def _split_signed_body(body: bytes, member: str, what: str, source: str) -> tuple[str, bytes]:
    """The raw text of ``member`` and the decoded ``signature`` from a PCS JSON body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CollateralFormatError(
            f"the {what} response from {source} is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    where = f"the {what} response from {source}"
    try:  # the strict rules for the whole body; the split below keeps the signed text exact
        parse_json(text)
    except CanonicalJsonError as exc:
        raise CollateralFormatError(f"{where} is not valid JSON: {exc.describe()}") from None
    members = json_members(text, where)
    unknown = sorted(set(members) - {member, "signature"})
    if unknown:
        raise CollateralFormatError(f"{where} has unknown members", found=", ".join(unknown))
    for name in (member, "signature"):
        if name not in members:
            raise CollateralFormatError(f"{where} lacks the member {name!r}")
    start, end = members[member]
    raw = text[start:end]
    if not raw.startswith("{"):
        raise CollateralFormatError(f"{where}: {member!r} must be a JSON object")
    s_start, s_end = members["signature"]
    signature_hex = _DECODER.decode(text[s_start:s_end])  # json_members validated it
    if not isinstance(signature_hex, str):
        raise CollateralFormatError(
            f"{where}: 'signature' must be a hex string", found=type(signature_hex).__name__
        )
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        raise CollateralFormatError(f"{where}: 'signature' is not hex") from None
    if len(signature) != 64:
        raise CollateralFormatError(
            f"{where}: 'signature' must be a 64-byte raw r||s ECDSA signature",
            expected=64,
            found=len(signature),
        )
    return raw, signature


def decode_issuer_chain(value: str | None, header: str, source: str) -> str:
    """Decode a URL-encoded PEM issuer-chain header value into PEM text.

    Raises :class:`CollateralFormatError` when the header is missing, holds characters no
    URL-encoding produces, has a ``%`` not followed by two hex digits, decodes to non-UTF-8, or
    is not a readable PEM certificate chain. The PEM text is returned exactly as decoded (no
    normalisation), so a bundle built from it is byte-identical to what the service sent.
    """
    if value is None:
        raise CollateralFormatError(f"the response from {source} lacks the {header} header")
    where = f"the {header} header from {source}"
    if not value.isascii() or not value.isprintable():
        raise CollateralFormatError(
            f"{where} is not URL-encoded: it holds non-ASCII or control characters"
        )
    bad = _BAD_PERCENT.search(value)
    if bad is not None:
        raise CollateralFormatError(
            f"{where} is not valid URL-encoding: '%' without two hex digits at offset {bad.start()}"
        )
    try:
        pem = unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CollateralFormatError(
            f"{where} decodes to bytes that are not UTF-8: {exc.reason}"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise CollateralFormatError(f"{where} holds no PEM certificate")
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise CollateralFormatError(
            f"{where} is not a readable PEM certificate chain: {exc}"
        ) from None
    if len(certs) > MAX_CHAIN_CERTS:
        raise CollateralFormatError(
            f"{where} has too many certificates", expected=f"<= {MAX_CHAIN_CERTS}", found=len(certs)
        )
    return pem


def parse_tcb_info_response(
    body: bytes, chain_header: str | None, header: str, source: str, *, fmspc: str
) -> SignedDocument:
    """Parse a ``GET /tcb`` response: body ``{"tcbInfo":{...},"signature":"<hex>"}``.

    ``fmspc`` (upper-case hex) is the platform asked for. Raises :class:`CollateralFormatError`
    for a malformed body, signature, TCB info document or issuer-chain header,
    ``TcbStatusUnknownError`` for a status string Intel does not define, and
    :class:`CollateralSourceError` when the document is for another FMSPC (a misbehaving
    service, or a cache entry that is not what its name says).
    """
    raw, signature = _split_signed_body(body, "tcbInfo", "TCB info", source)
    info = TcbInfo.from_json(raw)
    found = info.fmspc.hex().upper()
    if found != fmspc:
        raise CollateralSourceError(
            f"{source} answered with TCB info for another platform",
            expected=f"FMSPC {fmspc}",
            found=f"FMSPC {found}",
        )
    chain = decode_issuer_chain(chain_header, header, source)
    return SignedDocument(raw, signature, chain, info.issue_date, info.next_update)


def parse_qe_identity_response(
    body: bytes, chain_header: str | None, header: str, source: str
) -> SignedDocument:
    """Parse a ``GET /qe/identity`` response: ``{"enclaveIdentity":{...},"signature":"<hex>"}``.

    Raises :class:`CollateralFormatError` for a malformed body, signature, identity document or
    issuer-chain header, ``TcbStatusUnknownError`` for a status string Intel does not define, and
    :class:`CollateralSourceError` when the identity is not the SGX quoting enclave's (id ``QE``).
    """
    raw, signature = _split_signed_body(body, "enclaveIdentity", "QE identity", source)
    identity = QeIdentity.from_json(raw)
    if identity.id != "QE":
        raise CollateralSourceError(
            f"{source} answered with another enclave's identity",
            expected="id QE",
            found=f"id {identity.id}",
        )
    chain = decode_issuer_chain(chain_header, header, source)
    return SignedDocument(raw, signature, chain, identity.issue_date, identity.next_update)


def _crl_der(body: bytes, where: str) -> bytes:
    stripped = body.strip()
    if stripped.startswith(b"-----BEGIN"):
        match = _PEM_CRL.fullmatch(stripped)
        if match is None:
            raise CollateralFormatError(f"{where} is PEM but not one X509 CRL block")
        try:
            return base64.b64decode(b"".join(match.group(1).split()), validate=True)
        except binascii.Error as exc:
            raise CollateralFormatError(f"{where} has bad base64 in its PEM block: {exc}") from None
    if stripped and all(byte in _HEX_DIGITS for byte in stripped):
        # PCCS serves /rootcacrl as the hex text of the DER (its design guide says so).
        try:
            return bytes.fromhex(stripped.decode("ascii"))
        except ValueError:
            raise CollateralFormatError(f"{where} is hex text of odd length") from None
    return body


def parse_crl_response(
    body: bytes, chain_header: str | None, header: str | None, source: str, what: str
) -> CrlDocument:
    """Parse a CRL response (DER, PEM or hex text of DER) into DER.

    ``header`` names the issuer-chain header the response must carry, or is ``None`` when the
    CRL comes without one (the root CA CRL). Raises :class:`CollateralFormatError` when the body
    is not one readable CRL with a nextUpdate, or the chain header is missing or malformed.
    """
    where = f"the {what} from {source}"
    der = _crl_der(body, where)
    try:
        crl = x509.load_der_x509_crl(der)
        this_update, next_update = crl.last_update_utc, crl.next_update_utc
    except ValueError as exc:
        raise CollateralFormatError(f"{where} is not a readable CRL: {exc}") from None
    if next_update is None:
        raise CollateralFormatError(f"{where} has no nextUpdate")
    chain = decode_issuer_chain(chain_header, header, source) if header is not None else None
    return CrlDocument(der, chain, this_update, next_update)
