"""Collateral: the Intel-signed documents a DCAP quote is judged against.

:class:`QuoteCollateral` is the bundle in dcap-qvl's ``QuoteCollateralV3`` JSON format. It keeps
the signed TCB info and QE identity as the exact text that was signed: their signatures are
checked over those bytes before :class:`TcbInfo` / :class:`QeIdentity` parse them, because a
re-serialised copy would not verify (and a tampered one may not even be JSON).

The two signed documents are read by a small schema checker of their own (:class:`_Reader`), not
by pydantic: ``verify-quote`` is a command-line tool whose start-up counts (issue 14 item 15),
and the documents are small and fixed. The checker is strict: unknown members, missing members,
a value of the wrong JSON type (``true`` is not a number, ``"5"`` is not one either), a number out
of its range and a date without a time zone are all :class:`CollateralFormatError` naming the
member's path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from golem_graphene.attestation.tcb import (
    QeTcbStatus,
    TcbStatus,
    parse_qe_tcb_status,
    parse_tcb_status,
)
from golem_graphene.canonical_json import CanonicalJsonError, parse_json
from golem_graphene.errors import CollateralFormatError
from golem_graphene.limits import MAX_COLLATERAL_BYTES, MAX_TCB_LEVELS

__all__ = [
    "COLLATERAL_KEYS",
    "QeIdentity",
    "QeTcbLevel",
    "QuoteCollateral",
    "TcbInfo",
    "TcbLevel",
]

COLLATERAL_KEYS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)
_OPTIONAL_KEYS = ("pck_certificate_chain",)


@dataclass(frozen=True, slots=True)
class QuoteCollateral:
    """A collateral bundle (dcap-qvl ``QuoteCollateralV3``); CRLs are DER, ``None`` when absent."""

    pck_crl_issuer_chain: str
    root_ca_crl: bytes | None
    pck_crl: bytes | None
    tcb_info_issuer_chain: str
    tcb_info: str
    tcb_info_signature: bytes
    qe_identity_issuer_chain: str
    qe_identity: str
    qe_identity_signature: bytes
    pck_certificate_chain: str | None = None

    @classmethod
    def from_json(cls, data: str | bytes) -> QuoteCollateral:
        """Parse the JSON bundle; raises :class:`CollateralFormatError` naming the bad key."""
        if len(data) > MAX_COLLATERAL_BYTES:
            raise CollateralFormatError(
                "collateral is too large",
                expected=f"<= {MAX_COLLATERAL_BYTES} bytes",
                found=len(data),
            )
        try:
            obj = parse_json(data)
        except CanonicalJsonError as exc:
            raise CollateralFormatError(f"collateral is not valid JSON: {exc.describe()}") from exc
        if not isinstance(obj, dict):
            raise CollateralFormatError(
                "collateral must be a JSON object", found=type(obj).__name__
            )
        return cls.from_mapping(obj)

    @classmethod
    def from_mapping(cls, obj: dict[str, Any]) -> QuoteCollateral:
        """Build from an already-decoded mapping with the bundle's keys."""
        unknown = sorted(set(obj) - set(COLLATERAL_KEYS) - set(_OPTIONAL_KEYS))
        if unknown:
            raise CollateralFormatError("collateral has unknown keys", found=", ".join(unknown))
        values: dict[str, str] = {}
        for key in COLLATERAL_KEYS:
            if key not in obj:
                raise CollateralFormatError(f"collateral lacks the key {key!r}")
            values[key] = _string(obj, key)
        chain = obj.get("pck_certificate_chain")
        return cls(
            pck_crl_issuer_chain=values["pck_crl_issuer_chain"],
            root_ca_crl=_optional_hex(values, "root_ca_crl"),
            pck_crl=_optional_hex(values, "pck_crl"),
            tcb_info_issuer_chain=values["tcb_info_issuer_chain"],
            tcb_info=values["tcb_info"],
            tcb_info_signature=_signature_hex(values, "tcb_info_signature"),
            qe_identity_issuer_chain=values["qe_identity_issuer_chain"],
            qe_identity=values["qe_identity"],
            qe_identity_signature=_signature_hex(values, "qe_identity_signature"),
            pck_certificate_chain=_string(obj, "pck_certificate_chain")
            if chain is not None
            else None,
        )

    def to_json(self) -> str:
        """The bundle in the same JSON format (signed texts kept byte for byte)."""
        obj: dict[str, str] = {
            "pck_crl_issuer_chain": self.pck_crl_issuer_chain,
            "root_ca_crl": (self.root_ca_crl or b"").hex(),
            "pck_crl": (self.pck_crl or b"").hex(),
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain,
            "tcb_info": self.tcb_info,
            "tcb_info_signature": self.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": self.qe_identity_issuer_chain,
            "qe_identity": self.qe_identity,
            "qe_identity_signature": self.qe_identity_signature.hex(),
        }
        if self.pck_certificate_chain is not None:
            obj["pck_certificate_chain"] = self.pck_certificate_chain
        return json.dumps(obj, indent=2)


def _string(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise CollateralFormatError(
            f"collateral key {key!r} must be a string", found=type(value).__name__
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escape such as "\\ud800"
        raise CollateralFormatError(f"collateral key {key!r} is not valid Unicode") from exc
    return value


def _optional_hex(values: dict[str, str], key: str) -> bytes | None:
    text = values[key].strip()
    if not text:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise CollateralFormatError(f"collateral key {key!r} is not hex (DER expected)") from exc


def _signature_hex(values: dict[str, str], key: str) -> bytes:
    raw = _optional_hex(values, key) or b""
    if len(raw) != 64:
        raise CollateralFormatError(
            f"collateral key {key!r} must be a 64-byte raw r||s signature",
            expected=64,
            found=len(raw),
        )
    return raw


# --- signed documents -----------------------------------------------------------------------------

_DATETIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_HEX: Final = re.compile(r"[0-9a-fA-F]*")
_TCB_V2_KEYS: Final = tuple(f"sgxtcbcomp{i:02d}svn" for i in range(1, 17))
_QE_IDENTITY_IDS: Final = ("QE", "TD_QE", "QVE")


class _Reader:
    """Reads one member after another of a decoded JSON document, checking each one.

    Every failure is a :class:`CollateralFormatError`: ``"<what> is malformed at <path>: ..."``,
    where the path is the members and indices from the document's top (``tcbLevels.0.tcb``).
    """

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, where: str, problem: str) -> CollateralFormatError:
        return CollateralFormatError(
            f"{self.what} is malformed at {where or '(document)'}: {problem}"
        )

    def members(
        self,
        value: object,
        where: str,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
    ) -> Mapping[str, Any]:
        """``value`` as an object with all ``required`` members and no unknown ones."""
        if not isinstance(value, dict):
            raise self.fail(where, f"must be an object, found {_kind(value)}")
        for key in required:
            if key not in value:
                raise self.fail(_join(where, key), "the member is missing")
        for key in value:
            if key not in required and key not in optional:
                raise self.fail(_join(where, key), "unknown member (extra members are refused)")
        return value

    def integer(self, value: object, where: str, low: int | None, high: int | None) -> int:
        """An integer (never a boolean) in ``low..high`` (``None``: unbounded)."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(where, f"must be an integer, found {_kind(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low if low is not None else ''}..{high if high is not None else ''}"
            raise self.fail(where, f"must be in {bounds}, found {value}")
        return value

    def string(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, found {_kind(value)}")
        return value

    def hex_bytes(self, value: object, where: str, digits: int) -> bytes:
        """Exactly ``digits`` hex digits (either case), as bytes."""
        text = self.string(value, where)
        if len(text) != digits or not _HEX.fullmatch(text):
            raise self.fail(where, f"must be {digits} hex digits, found {len(text)} characters")
        return bytes.fromhex(text)

    def timestamp(self, value: object, where: str) -> datetime:
        """An ISO 8601 / RFC 3339 date and time with a time zone (``Z`` or an offset)."""
        text = self.string(value, where)
        if not _DATETIME.fullmatch(text):
            raise self.fail(where, "must be a date and time with a time zone (RFC 3339)")
        try:
            parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(where, "is not a valid date and time") from None
        return parsed

    def array(self, value: object, where: str, low: int, high: int) -> list[Any]:
        """An array of ``low..high`` elements."""
        if not isinstance(value, list):
            raise self.fail(where, f"must be an array, found {_kind(value)}")
        if not low <= len(value) <= high:
            raise self.fail(where, f"must hold {low} to {high} elements, found {len(value)}")
        return value

    def strings(self, value: object, where: str) -> tuple[str, ...]:
        """An array of strings (any length)."""
        items = self.array(value, where, 0, len(value) if isinstance(value, list) else 0)
        return tuple(self.string(item, _join(where, i)) for i, item in enumerate(items))

    def document(self, text: str) -> object:
        try:
            return parse_json(text)
        except CanonicalJsonError as exc:
            raise CollateralFormatError(
                f"{self.what} is not valid JSON: {exc.describe()}"
            ) from None


def _join(where: str, key: str | int) -> str:
    return f"{where}.{key}" if where else str(key)


def _kind(value: object) -> str:
    """The JSON type of a decoded value, for messages (never the value: it is untrusted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


@dataclass(frozen=True, slots=True)
class _RawLevel:
    """A TCB level read from a document, its status still the document's string."""

    components: tuple[int, ...]
    svn: int
    tcb_date: datetime
    status: str
    advisory_ids: tuple[str, ...]


def _raw_level(read: _Reader, value: object, where: str, tcb: str) -> tuple[_RawLevel, bool]:
    """A level of TCB info (``tcb="platform"``; also says whether it is v3-shaped) or of a QE
    identity (``tcb="qe"``)."""
    level = read.members(value, where, ("tcb", "tcbDate", "tcbStatus"), ("advisoryIDs",))
    at = _join(where, "tcb")
    v3 = False
    if tcb == "qe":
        body = read.members(level["tcb"], at, ("isvsvn",))
        components: tuple[int, ...] = ()
        svn = read.integer(body["isvsvn"], _join(at, "isvsvn"), 0, 0xFFFF)
    elif isinstance(level["tcb"], dict) and "sgxtcbcomponents" in level["tcb"]:
        v3 = True
        body = read.members(level["tcb"], at, ("sgxtcbcomponents", "pcesvn"))
        items_at = _join(at, "sgxtcbcomponents")
        items = read.array(body["sgxtcbcomponents"], items_at, 16, 16)
        svns = []
        for i, item in enumerate(items):
            item_at = _join(items_at, i)
            component = read.members(item, item_at, ("svn",), ("category", "type"))
            svns.append(read.integer(component["svn"], _join(item_at, "svn"), 0, 255))
            for key in ("category", "type"):
                if component.get(key) is not None:
                    read.string(component[key], _join(item_at, key))
        components = tuple(svns)
        svn = read.integer(body["pcesvn"], _join(at, "pcesvn"), 0, 0xFFFF)
    else:
        body = read.members(level["tcb"], at, (*_TCB_V2_KEYS, "pcesvn"))
        components = tuple(read.integer(body[k], _join(at, k), 0, 255) for k in _TCB_V2_KEYS)
        svn = read.integer(body["pcesvn"], _join(at, "pcesvn"), 0, 0xFFFF)
    raw = _RawLevel(
        components=components,
        svn=svn,
        tcb_date=read.timestamp(level["tcbDate"], _join(where, "tcbDate")),
        status=read.string(level["tcbStatus"], _join(where, "tcbStatus")),
        advisory_ids=read.strings(level.get("advisoryIDs", []), _join(where, "advisoryIDs")),
    )
    return raw, v3


@dataclass(frozen=True, slots=True)
class TcbLevel:
    """One platform TCB level, normalised across TCB info v2 and v3."""

    components: tuple[int, ...]
    pcesvn: int
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]

    def sort_key(self) -> tuple[tuple[int, ...], int]:
        """QVL orders levels by the component vector, then PCESVN, highest first."""
        return (self.components, self.pcesvn)


@dataclass(frozen=True, slots=True)
class TcbInfo:
    """A parsed SGX TCB info document (v2 or v3); levels sorted highest first."""

    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pceid: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    levels: tuple[TcbLevel, ...]

    @classmethod
    def from_json(cls, text: str) -> TcbInfo:
        """Parse the signed ``tcbInfo`` text; raises :class:`CollateralFormatError` (or
        :class:`~golem_graphene.errors.TcbStatusUnknownError` for a well-formed document with a
        status Intel does not define)."""
        read = _Reader("TCB info")
        doc = read.members(
            read.document(text),
            "",
            (
                "version",
                "issueDate",
                "nextUpdate",
                "fmspc",
                "pceId",
                "tcbType",
                "tcbEvaluationDataNumber",
                "tcbLevels",
            ),
            ("id",),
        )
        ident = doc.get("id")
        if ident is not None and ident != "SGX":
            raise read.fail("id", "must be 'SGX' (or absent in v2)")
        version = doc["version"]
        if version not in (2, 3) or isinstance(version, bool):
            raise read.fail("version", "must be 2 or 3")
        issue_date = read.timestamp(doc["issueDate"], "issueDate")
        next_update = read.timestamp(doc["nextUpdate"], "nextUpdate")
        fmspc = read.hex_bytes(doc["fmspc"], "fmspc", 12)
        pceid = read.hex_bytes(doc["pceId"], "pceId", 4)
        tcb_type = read.integer(doc["tcbType"], "tcbType", None, None)
        number = read.integer(doc["tcbEvaluationDataNumber"], "tcbEvaluationDataNumber", 0, None)
        raw_levels = [
            _raw_level(read, level, _join("tcbLevels", i), "platform")
            for i, level in enumerate(read.array(doc["tcbLevels"], "tcbLevels", 1, MAX_TCB_LEVELS))
        ]
        if version == 3 and ident != "SGX":
            raise CollateralFormatError(
                "TCB info v3 must have id 'SGX'", expected="SGX", found=ident
            )
        if version == 2 and ident is not None:
            raise CollateralFormatError("TCB info v2 has no id", found=ident)
        levels: list[TcbLevel] = []
        for i, (raw, v3) in enumerate(raw_levels):
            if v3 != (version == 3):
                raise CollateralFormatError(f"TCB info level {i} does not match version {version}")
            levels.append(
                TcbLevel(
                    components=raw.components,
                    pcesvn=raw.svn,
                    tcb_date=raw.tcb_date,
                    status=parse_tcb_status(raw.status, f"TCB info level {i}"),
                    advisory_ids=raw.advisory_ids,
                )
            )
        keys = [lvl.sort_key() for lvl in levels]
        if len(set(keys)) != len(keys):
            raise CollateralFormatError("TCB info has duplicate TCB levels")
        levels.sort(key=TcbLevel.sort_key, reverse=True)
        return cls(
            version=version,
            issue_date=issue_date,
            next_update=next_update,
            fmspc=fmspc,
            pceid=pceid,
            tcb_type=tcb_type,
            tcb_evaluation_data_number=number,
            levels=tuple(levels),
        )


@dataclass(frozen=True, slots=True)
class QeTcbLevel:
    """One QE TCB level."""

    isvsvn: int
    tcb_date: datetime
    status: QeTcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QeIdentity:
    """A parsed QE identity (v2); levels sorted by ISVSVN, highest first."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: bytes
    miscselect_mask: bytes
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    levels: tuple[QeTcbLevel, ...]

    @classmethod
    def from_json(cls, text: str) -> QeIdentity:
        """Parse the signed ``enclaveIdentity`` text; raises :class:`CollateralFormatError`."""
        read = _Reader("QE identity")
        doc = read.members(
            read.document(text),
            "",
            (
                "id",
                "version",
                "issueDate",
                "nextUpdate",
                "tcbEvaluationDataNumber",
                "miscselect",
                "miscselectMask",
                "attributes",
                "attributesMask",
                "mrsigner",
                "isvprodid",
                "tcbLevels",
            ),
        )
        ident = read.string(doc["id"], "id")
        if ident not in _QE_IDENTITY_IDS:
            raise read.fail("id", f"unknown enclave identity id {ident[:40]!r}")
        version = doc["version"]
        if version != 2 or isinstance(version, bool):
            raise read.fail("version", "must be 2")
        issue_date = read.timestamp(doc["issueDate"], "issueDate")
        next_update = read.timestamp(doc["nextUpdate"], "nextUpdate")
        number = read.integer(doc["tcbEvaluationDataNumber"], "tcbEvaluationDataNumber", 0, None)
        miscselect = read.hex_bytes(doc["miscselect"], "miscselect", 8)
        miscselect_mask = read.hex_bytes(doc["miscselectMask"], "miscselectMask", 8)
        attributes = read.hex_bytes(doc["attributes"], "attributes", 32)
        attributes_mask = read.hex_bytes(doc["attributesMask"], "attributesMask", 32)
        mrsigner = read.hex_bytes(doc["mrsigner"], "mrsigner", 64)
        isvprodid = read.integer(doc["isvprodid"], "isvprodid", 0, 0xFFFF)
        raw_levels = [
            _raw_level(read, level, _join("tcbLevels", i), "qe")[0]
            for i, level in enumerate(read.array(doc["tcbLevels"], "tcbLevels", 1, MAX_TCB_LEVELS))
        ]
        levels = sorted(
            (
                QeTcbLevel(
                    isvsvn=raw.svn,
                    tcb_date=raw.tcb_date,
                    status=parse_qe_tcb_status(raw.status, f"QE identity level {i}"),
                    advisory_ids=raw.advisory_ids,
                )
                for i, raw in enumerate(raw_levels)
            ),
            key=lambda lvl: lvl.isvsvn,
            reverse=True,
        )
        return cls(
            id=ident,
            version=version,
            issue_date=issue_date,
            next_update=next_update,
            tcb_evaluation_data_number=number,
            miscselect=miscselect,
            miscselect_mask=miscselect_mask,
            attributes=attributes,
            attributes_mask=attributes_mask,
            mrsigner=mrsigner,
            isvprodid=isvprodid,
            levels=tuple(levels),
        )
