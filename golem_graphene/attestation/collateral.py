"""Collateral: the Intel-signed documents a DCAP quote is judged against.

:class:`QuoteCollateral` is the bundle in dcap-qvl's ``QuoteCollateralV3`` JSON format. It keeps
the signed TCB info and QE identity as the exact text that was signed: their signatures are
checked over those bytes before :class:`TcbInfo` / :class:`QeIdentity` parse them, because a
re-serialised copy would not verify (and a tampered one may not even be JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

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

_FROZEN = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class _Model(BaseModel):
    model_config = _FROZEN


def _hex_field(length: int) -> Any:
    return Field(pattern=f"^[0-9a-fA-F]{{{length}}}$")


class _TcbComponent(_Model):
    svn: int = Field(ge=0, le=255)
    category: str | None = None
    type: str | None = None


class _TcbV3(_Model):
    sgxtcbcomponents: tuple[_TcbComponent, ...] = Field(min_length=16, max_length=16)
    pcesvn: int = Field(ge=0, le=0xFFFF)


class _TcbV2(_Model):
    model_config = ConfigDict(frozen=True, extra="forbid")
    sgxtcbcomp01svn: int = Field(ge=0, le=255)
    sgxtcbcomp02svn: int = Field(ge=0, le=255)
    sgxtcbcomp03svn: int = Field(ge=0, le=255)
    sgxtcbcomp04svn: int = Field(ge=0, le=255)
    sgxtcbcomp05svn: int = Field(ge=0, le=255)
    sgxtcbcomp06svn: int = Field(ge=0, le=255)
    sgxtcbcomp07svn: int = Field(ge=0, le=255)
    sgxtcbcomp08svn: int = Field(ge=0, le=255)
    sgxtcbcomp09svn: int = Field(ge=0, le=255)
    sgxtcbcomp10svn: int = Field(ge=0, le=255)
    sgxtcbcomp11svn: int = Field(ge=0, le=255)
    sgxtcbcomp12svn: int = Field(ge=0, le=255)
    sgxtcbcomp13svn: int = Field(ge=0, le=255)
    sgxtcbcomp14svn: int = Field(ge=0, le=255)
    sgxtcbcomp15svn: int = Field(ge=0, le=255)
    sgxtcbcomp16svn: int = Field(ge=0, le=255)
    pcesvn: int = Field(ge=0, le=0xFFFF)

    def components(self) -> tuple[int, ...]:
        return tuple(getattr(self, f"sgxtcbcomp{i:02d}svn") for i in range(1, 17))


class _TcbLevelDoc(_Model):
    tcb: _TcbV3 | _TcbV2
    tcbDate: AwareDatetime
    tcbStatus: str
    advisoryIDs: tuple[str, ...] = ()


class _TcbInfoDoc(_Model):
    id: Literal["SGX"] | None = None
    version: Literal[2, 3]
    issueDate: AwareDatetime
    nextUpdate: AwareDatetime
    fmspc: str = _hex_field(12)
    pceId: str = _hex_field(4)
    tcbType: int
    tcbEvaluationDataNumber: int = Field(ge=0)
    tcbLevels: tuple[_TcbLevelDoc, ...] = Field(min_length=1, max_length=MAX_TCB_LEVELS)


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
        """Parse the signed ``tcbInfo`` text; raises :class:`CollateralFormatError`."""
        doc = _validate(_TcbInfoDoc, text, "TCB info")
        if doc.version == 3 and doc.id != "SGX":
            raise CollateralFormatError(
                "TCB info v3 must have id 'SGX'", expected="SGX", found=doc.id
            )
        if doc.version == 2 and doc.id is not None:
            raise CollateralFormatError("TCB info v2 has no id", found=doc.id)
        levels: list[TcbLevel] = []
        for i, level in enumerate(doc.tcbLevels):
            tcb = level.tcb
            if isinstance(tcb, _TcbV3) != (doc.version == 3):
                raise CollateralFormatError(
                    f"TCB info level {i} does not match version {doc.version}"
                )
            components = (
                tuple(c.svn for c in tcb.sgxtcbcomponents)
                if isinstance(tcb, _TcbV3)
                else tcb.components()
            )
            levels.append(
                TcbLevel(
                    components=components,
                    pcesvn=tcb.pcesvn,
                    tcb_date=level.tcbDate,
                    status=parse_tcb_status(level.tcbStatus, f"TCB info level {i}"),
                    advisory_ids=level.advisoryIDs,
                )
            )
        keys = [lvl.sort_key() for lvl in levels]
        if len(set(keys)) != len(keys):
            raise CollateralFormatError("TCB info has duplicate TCB levels")
        levels.sort(key=TcbLevel.sort_key, reverse=True)
        return cls(
            version=doc.version,
            issue_date=doc.issueDate,
            next_update=doc.nextUpdate,
            fmspc=bytes.fromhex(doc.fmspc),
            pceid=bytes.fromhex(doc.pceId),
            tcb_type=doc.tcbType,
            tcb_evaluation_data_number=doc.tcbEvaluationDataNumber,
            levels=tuple(levels),
        )


class _QeTcb(_Model):
    isvsvn: int = Field(ge=0, le=0xFFFF)


class _QeTcbLevelDoc(_Model):
    tcb: _QeTcb
    tcbDate: AwareDatetime
    tcbStatus: str
    advisoryIDs: tuple[str, ...] = ()


class _QeIdentityDoc(_Model):
    id: str
    version: Literal[2]
    issueDate: AwareDatetime
    nextUpdate: AwareDatetime
    tcbEvaluationDataNumber: int = Field(ge=0)
    miscselect: str = _hex_field(8)
    miscselectMask: str = _hex_field(8)
    attributes: str = _hex_field(32)
    attributesMask: str = _hex_field(32)
    mrsigner: str = _hex_field(64)
    isvprodid: int = Field(ge=0, le=0xFFFF)
    tcbLevels: tuple[_QeTcbLevelDoc, ...] = Field(min_length=1, max_length=MAX_TCB_LEVELS)

    @field_validator("id")
    @classmethod
    def _known_id(cls, value: str) -> str:
        if value not in ("QE", "TD_QE", "QVE"):
            raise ValueError(f"unknown enclave identity id {value!r}")
        return value


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
        doc = _validate(_QeIdentityDoc, text, "QE identity")
        levels = sorted(
            (
                QeTcbLevel(
                    isvsvn=lvl.tcb.isvsvn,
                    tcb_date=lvl.tcbDate,
                    status=parse_qe_tcb_status(lvl.tcbStatus, f"QE identity level {i}"),
                    advisory_ids=lvl.advisoryIDs,
                )
                for i, lvl in enumerate(doc.tcbLevels)
            ),
            key=lambda lvl: lvl.isvsvn,
            reverse=True,
        )
        return cls(
            id=doc.id,
            version=doc.version,
            issue_date=doc.issueDate,
            next_update=doc.nextUpdate,
            tcb_evaluation_data_number=doc.tcbEvaluationDataNumber,
            miscselect=bytes.fromhex(doc.miscselect),
            miscselect_mask=bytes.fromhex(doc.miscselectMask),
            attributes=bytes.fromhex(doc.attributes),
            attributes_mask=bytes.fromhex(doc.attributesMask),
            mrsigner=bytes.fromhex(doc.mrsigner),
            isvprodid=doc.isvprodid,
            levels=tuple(levels),
        )


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], text: str, what: str) -> _M:
    try:
        obj = parse_json(text)
    except CanonicalJsonError as exc:
        raise CollateralFormatError(f"{what} is not valid JSON: {exc.describe()}") from None
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise CollateralFormatError(f"{what} is malformed at {where}: {first['msg']}") from None
