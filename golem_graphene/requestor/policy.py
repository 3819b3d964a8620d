"""What a requestor accepts: one policy, built one way from flags, a policy file or code.

:class:`RequestorPolicy` holds the requestor's choices; :meth:`RequestorPolicy.build` is the one
validating constructor that CLI flags (``run``, ``verify-receipt``, ``verify-quote``), policy
files (:func:`load_policy`) and callers of the SDK go through, so the same words mean the same
thing everywhere. The task spec adds its pinned measurement (or signer) when the policy pins
none: :meth:`RequestorPolicy.attestation_policy` turns both into the composable checks of
:mod:`golem_graphene.attestation.policy`.

Policy files follow Golem's former SGX configuration (ya-client ``sgx_config.json``; its field
names), but **strict by default** where Golem's allowed debug enclaves and outdated TCBs:

=============================  =====================  =========================================
field                          default                meaning
=============================  =====================  =========================================
``enableAttestation``          ``true``               must stay true: an unattested run is
                                                      never accepted (``false`` is an error)
``exeunitHashes``              ``[]``                 allowed MRENCLAVE values (hex); empty:
                                                      the spec's pin or the measured image's
``allowDebug``                 ``false``              accept debug enclaves (readable by host)
``allowOutdatedTcb``           ``false``              also accept every non-revoked TCB status
``acceptTcb``                  ``["UpToDate"]``       the accepted TCB statuses, by name (ours)
``maxEvidenceAge``             ``null``               seconds: oldest collateral (TCB info, QE
                                                      identity, CRLs) accepted at verification
``allowMissingCrls``           ``false``              verify without the PCK and root CRLs
``trustedSimulationRoots``     ``[]``                 SPKI SHA-256 of ``sim`` roots to trust
                                                      (no SGX protection: testing only)
=============================  =====================  =========================================

Unknown fields are errors (a typo must not silently weaken the policy). The file is read from
``$GOLEM_GRAPHENE_SGX_CONFIG`` when set (deliberately not ``YAGNA_SGX_CONFIG``: a leftover Golem
file would carry Golem's permissive defaults).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.policy import (
    ANY_EXCEPT_REVOKED,
    AllOf,
    AllowedTcbStatus,
    build_policy,
)
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.tcb import TcbStatus
from golem_graphene.attestation.verifier import CRL_NAMES, VerifyOptions
from golem_graphene.canonical_json import CanonicalJsonError, parse_json
from golem_graphene.errors import ConfigError, Error, UsageError

if TYPE_CHECKING:  # only annotations: the spec model (pydantic) stays out of verify-quote
    from golem_graphene.protocol.spec import TaskSpec

__all__ = [
    "ENV_VAR",
    "MAX_CONFIG_BYTES",
    "RequestorPolicy",
    "load_policy",
    "policy_from_mapping",
]

ENV_VAR: Final = "GOLEM_GRAPHENE_SGX_CONFIG"
MAX_CONFIG_BYTES: Final = 1 << 20
MAX_COLLATERAL_AGE_SECONDS: Final = 10 * 365 * 24 * 3600
"""The largest ``max_collateral_age`` accepted (ten years): beyond it the value is a typo."""

_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")
_FILE_FIELDS: Final = frozenset(
    {
        "enableAttestation",
        "exeunitHashes",
        "allowDebug",
        "allowOutdatedTcb",
        "acceptTcb",
        "maxEvidenceAge",
        "allowMissingCrls",
        "trustedSimulationRoots",
    }
)


@dataclass(frozen=True)
class RequestorPolicy:
    """What the requestor accepts, on top of the spec's expected measurement.

    Strict by default: only ``UpToDate`` platforms, no debug enclaves, both CRLs required, the
    Intel SGX Root CA as the only anchor. ``trusted_simulation_roots`` names (by SPKI SHA-256)
    the simulation roots of ``sim`` providers you choose to trust: no SGX protection there.
    ``expected_mrenclave`` (or ``mrsigner`` with ``isvprodid``/``min_isvsvn``) pins the enclave;
    when both are empty the spec's pins apply. Build a checked one with :meth:`build`.
    """

    accept_tcb: tuple[str, ...] = (TcbStatus.UP_TO_DATE.value,)
    allow_debug: bool = False
    allow_missing_crls: bool = False
    trusted_simulation_roots: tuple[str, ...] = ()
    root: TrustAnchor | None = None
    max_collateral_age: timedelta | None = None
    expected_mrenclave: tuple[str, ...] = ()
    mrsigner: str | None = None
    isvprodid: int | None = None
    min_isvsvn: int | None = None

    @classmethod
    def build(
        cls,
        *,
        accept_tcb: Iterable[str] = (),
        allow_debug: bool = False,
        allow_missing_crls: bool = False,
        trusted_simulation_roots: Iterable[str] = (),
        root: TrustAnchor | None = None,
        max_collateral_age: float | timedelta | None = None,
        expected_mrenclave: Iterable[str] = (),
        mrsigner: str | None = None,
        isvprodid: int | None = None,
        min_isvsvn: int | None = None,
        error: type[Error] = ConfigError,
        names: Mapping[str, str] | None = None,
    ) -> RequestorPolicy:
        """A checked policy; every value is validated, each failure raises ``error``.

        ``accept_tcb`` takes TCB status names and ``any-except-revoked`` (``Revoked`` is never
        accepted); measurements and fingerprints are 64 hex digits (kept lowercase);
        ``max_collateral_age`` is positive seconds (at most ten years). ``names`` maps these
        parameter names to what the caller's user wrote (``--accept-tcb``, ``acceptTcb``), so
        the message names the flag or field.
        """
        label = dict(names or {})

        def name(key: str) -> str:
            return label.get(key, key)

        statuses = list(accept_tcb) or [TcbStatus.UP_TO_DATE.value]
        known = [s.value for s in TcbStatus]
        for status in statuses:
            if status != ANY_EXCEPT_REVOKED and status not in known:
                raise error(
                    f"{name('accept_tcb')} takes a TCB status",
                    expected=", ".join(known) + f" or {ANY_EXCEPT_REVOKED}",
                    found=_shown(status),
                )
            if status == TcbStatus.REVOKED.value:
                raise error(f"{name('accept_tcb')}: a Revoked TCB is never accepted")
        for key, values in (
            ("expected_mrenclave", list(expected_mrenclave)),
            ("trusted_simulation_roots", list(trusted_simulation_roots)),
            ("mrsigner", [mrsigner] if mrsigner is not None else []),
        ):
            for value in values:
                if not isinstance(value, str) or not _HEX64.fullmatch(value):
                    raise error(f"{name(key)} takes 64 hex digits (a SHA-256)", found=_shown(value))
        for key, number in (("isvprodid", isvprodid), ("min_isvsvn", min_isvsvn)):
            if number is not None and not 0 <= number <= 0xFFFF:
                raise error(f"{name(key)} is a number from 0 to 65535", found=number)
        age: timedelta | None = None
        if max_collateral_age is not None:
            seconds = (
                max_collateral_age.total_seconds()
                if isinstance(max_collateral_age, timedelta)
                else max_collateral_age
            )
            if (
                isinstance(seconds, bool)
                or not math.isfinite(seconds)
                or not 0 < seconds <= MAX_COLLATERAL_AGE_SECONDS
            ):
                raise error(
                    f"{name('max_collateral_age')} takes positive seconds",
                    expected=f"0 < seconds <= {MAX_COLLATERAL_AGE_SECONDS}",
                    found=_shown(str(seconds)),
                )
            age = timedelta(seconds=seconds)
        return cls(
            accept_tcb=tuple(dict.fromkeys(statuses)),
            allow_debug=allow_debug,
            allow_missing_crls=allow_missing_crls,
            trusted_simulation_roots=tuple(f.lower() for f in trusted_simulation_roots),
            root=root,
            max_collateral_age=age,
            expected_mrenclave=tuple(v.lower() for v in expected_mrenclave),
            mrsigner=mrsigner.lower() if mrsigner else None,
            isvprodid=isvprodid,
            min_isvsvn=min_isvsvn,
        )

    def with_expected_mrenclave(self, *values: str) -> RequestorPolicy:
        """This policy pinned to ``values`` (e.g. a measurement computed from the spec)."""
        return replace(self, expected_mrenclave=tuple(v.lower() for v in values))

    @property
    def pins_enclave(self) -> bool:
        """True when the policy itself names the enclave (a measurement or a signer)."""
        return bool(self.expected_mrenclave or self.mrsigner)

    def pins_for(self, spec: TaskSpec | None, runner: str | None) -> bool:
        """True when this policy or the ``spec``'s ``[attestation]`` names the enclave that
        ``runner`` runs (a measurement for that runner, or a signer)."""
        if self.pins_enclave:
            return True
        pinned = spec.attestation if spec is not None else None
        if pinned is None:
            return False
        return bool(pinned.mrsigner) or (runner is not None and runner in pinned.mrenclave)

    def anchor_for(self, quote: Quote) -> TrustAnchor:
        """The root to verify ``quote`` under.

        A simulation root trusted by fingerprint (``trusted_simulation_roots``) when the
        quote's own certificate chain ends in one; else ``root``, or the Intel SGX Root CA. What
        the provider says about its runner plays no part: a chain that ends anywhere else is
        verified under the default root and refused there (``untrusted_root``).
        """
        if self.trusted_simulation_roots:
            from cryptography import x509

            try:
                certs = x509.load_pem_x509_certificates(quote.pck_chain_pem())
            except (ValueError, Error):
                certs = []
            if certs:
                candidate = TrustAnchor(certs[-1], "golem-graphene simulation root")
                if candidate.fingerprint in self.trusted_simulation_roots:
                    return candidate
        return self.root or TrustAnchor.intel_sgx_root()

    def attestation_policy(
        self,
        spec: TaskSpec | None = None,
        runner: str | None = None,
        *,
        report_data: bytes | str | None = None,
        require_pin: bool = True,
    ) -> AllOf:
        """The checks a verified quote must pass: TCB status, debug, the enclave's identity.

        The enclave is pinned by this policy's measurement or signer; else by the ``spec``'s
        ``[attestation]`` section (its MRENCLAVE for ``runner``, or its signer). With
        ``require_pin`` (the default) a policy that pins no enclave at all raises
        :class:`UsageError`: any enclave would pass.
        """
        mrenclaves: tuple[str, ...] = self.expected_mrenclave
        mrsigner, isvprodid, min_isvsvn = self.mrsigner, self.isvprodid, self.min_isvsvn
        pinned = spec.attestation if spec is not None else None
        if self.pins_enclave or pinned is None:
            pass
        elif runner is not None and runner in pinned.mrenclave:
            mrenclaves = (pinned.mrenclave[runner],)
        elif pinned.mrsigner:
            mrsigner = pinned.mrsigner
            isvprodid = pinned.isvprodid if isvprodid is None else isvprodid
            min_isvsvn = pinned.min_isvsvn if min_isvsvn is None else min_isvsvn
        if require_pin and not (mrenclaves or mrsigner):
            raise UsageError(
                f"no expected measurement for the {runner or 'enclave'}"
                f"{' runner' if runner else ''}: pin mrenclave (or mrsigner) in the spec's "
                "[attestation], or give the policy an expected_mrenclave"
            )
        return build_policy(
            mrenclaves=mrenclaves,
            mrsigner=mrsigner,
            isvprodid=isvprodid,
            min_isvsvn=min_isvsvn,
            accept_tcb=self.accept_tcb,
            allow_debug=self.allow_debug,
            report_data=report_data,
            max_collateral_age=self.max_collateral_age,
        )

    def verify_options(self) -> VerifyOptions:
        """The verifier's opt-ins: missing CRLs, trusted simulation roots."""
        return VerifyOptions(
            allow_missing_crls=CRL_NAMES if self.allow_missing_crls else frozenset(),
            trusted_simulation_roots=frozenset(self.trusted_simulation_roots),
        )

    def opt_ins(self) -> list[str]:
        """Every insecure choice of this policy, worded to be printed loudly."""
        loud = []
        if self.allow_debug:
            loud.append("debug enclaves are ACCEPTED: their memory is not confidential")
        if self.allow_missing_crls:
            loud.append("missing CRLs are ACCEPTED: revocation is not checked")
        if self.trusted_simulation_roots:
            roots = ", ".join(self.trusted_simulation_roots)
            loud.append(f"a SIMULATED root is trusted ({roots}): no real SGX protection")
        if any(s != TcbStatus.UP_TO_DATE.value for s in self.accept_tcb):
            loud.append(
                f"TCB statuses other than UpToDate are accepted: {', '.join(self.accept_tcb)}"
            )
        return loud


def _shown(value: object) -> str:
    """A user's value in an error message, bounded and printable."""
    text = str(value)
    safe = "".join(ch if ch.isprintable() else "?" for ch in text[:80])
    return repr(safe) + ("..." if len(text) > 80 else "")


# --- policy files -------------------------------------------------------------------------------


def _bool(obj: Mapping[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"SGX config field {key} must be true or false", found=_shown(value))
    return value


def _list(obj: Mapping[str, Any], key: str, default: list[str]) -> list[str]:
    value = obj.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"SGX config field {key} must be a list of strings")
    return value


def policy_from_mapping(obj: Mapping[str, Any]) -> RequestorPolicy:
    """The policy a decoded policy file describes; raises :class:`ConfigError` naming the field."""
    unknown = sorted(set(obj) - _FILE_FIELDS)
    if unknown:
        raise ConfigError(
            "unknown SGX config fields",
            expected=", ".join(sorted(_FILE_FIELDS)),
            found=", ".join(_shown(u) for u in unknown),
        )
    if not _bool(obj, "enableAttestation", True):
        raise ConfigError(
            "enableAttestation = false is not supported: golem-graphene never accepts an "
            "unattested enclave"
        )
    accept = _list(obj, "acceptTcb", [TcbStatus.UP_TO_DATE.value])
    if not accept:
        raise ConfigError("SGX config field acceptTcb must not be empty")
    if _bool(obj, "allowOutdatedTcb", False):
        accept = [*accept, ANY_EXCEPT_REVOKED]
    age = obj.get("maxEvidenceAge")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int | float)):
        raise ConfigError("SGX config field maxEvidenceAge must be positive seconds")
    policy = RequestorPolicy.build(
        accept_tcb=accept,
        allow_debug=_bool(obj, "allowDebug", False),
        allow_missing_crls=_bool(obj, "allowMissingCrls", False),
        trusted_simulation_roots=_list(obj, "trustedSimulationRoots", []),
        max_collateral_age=age,
        expected_mrenclave=_list(obj, "exeunitHashes", []),
        error=ConfigError,
        names={
            "accept_tcb": "SGX config field acceptTcb",
            "trusted_simulation_roots": "SGX config field trustedSimulationRoots",
            "max_collateral_age": "SGX config field maxEvidenceAge",
            "expected_mrenclave": "SGX config field exeunitHashes",
        },
    )
    # ``allowOutdatedTcb`` spells out every non-revoked status, as Golem's flag meant.
    statuses = AllowedTcbStatus(policy.accept_tcb).accepted
    return replace(policy, accept_tcb=tuple(s.value for s in TcbStatus if s in statuses))


def load_policy(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> RequestorPolicy:
    """The policy from ``path``, else from ``$GOLEM_GRAPHENE_SGX_CONFIG``, else the defaults.

    Raises :class:`ConfigError` when the file cannot be read, is not a JSON object, or holds a
    bad field.
    """
    env = os.environ if environ is None else environ
    source = Path(path) if path is not None else None
    if source is None and env.get(ENV_VAR):
        source = Path(env[ENV_VAR])
    if source is None:
        return RequestorPolicy()
    try:
        with open(source, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the SGX config {source}: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("the SGX config file is too large", found=str(source))
    try:
        obj = parse_json(data, floats=True)
    except CanonicalJsonError as exc:
        raise ConfigError(f"the SGX config {source} is not JSON: {exc.describe()}") from exc
    if not isinstance(obj, dict):
        raise ConfigError("the SGX config must be a JSON object", found=str(source))
    return policy_from_mapping(obj)
