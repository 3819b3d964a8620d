"""The requestor's attestation policy from a JSON file, named by an environment variable.

In the spirit of Golem's former SGX configuration (ya-client ``sgx_config.json``, overridden by
the file that ``YAGNA_SGX_CONFIG`` names; research/golem.md section 2.4) and with its field
names, but **strict by default** where Golem's allowed debug enclaves and outdated TCBs:

=============================  =====================  =========================================
field                          default                meaning
=============================  =====================  =========================================
``enableAttestation``          ``true``               must stay true: an unattested run is
                                                      never accepted (``false`` is an error)
``exeunitHashes``              ``[]``                 allowed MRENCLAVE values (hex); empty:
                                                      the spec's pin or the local build's
``allowDebug``                 ``false``              accept debug enclaves (readable by host)
``allowOutdatedTcb``           ``false``              also accept every non-revoked TCB status
``acceptTcb``                  ``["UpToDate"]``       the accepted TCB statuses, by name (ours)
``maxEvidenceAge``             ``null``               seconds: oldest collateral (TCB info, QE
                                                      identity, CRLs) accepted at verification
``allowMissingCrls``           ``false``              verify without the PCK and root CRLs
``trustedSimulationRoots``     ``[]``                 SPKI SHA-256 of ``sim`` roots to trust
                                                      (no SGX protection: testing only)
=============================  =====================  =========================================

Unknown fields are errors (a typo must not silently weaken the policy). Evidence freshness
itself comes from the requestor's per-task nonce in the report data, not from a clock.

The file is read from ``$GOLEM_GRAPHENE_SGX_CONFIG`` when set (deliberately not
``YAGNA_SGX_CONFIG``: a leftover Golem file would carry Golem's permissive defaults).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from golem_graphene.attestation.tcb import TcbStatus
from golem_graphene.errors import ConfigError
from golem_graphene.requestor.client import RequestorPolicy

__all__ = ["ENV_VAR", "MAX_CONFIG_BYTES", "load_policy", "policy_from_mapping"]

ENV_VAR: Final = "GOLEM_GRAPHENE_SGX_CONFIG"
MAX_CONFIG_BYTES: Final = 1 << 20

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_FIELDS = frozenset(
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


def _bool(obj: Mapping[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"SGX config field {key} must be true or false", found=repr(value))
    return value


def _hex_list(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _HEX64.fullmatch(v) for v in value
    ):
        raise ConfigError(f"SGX config field {key} must be a list of 64-hex-digit values")
    return tuple(v.lower() for v in value)


def policy_from_mapping(obj: Mapping[str, Any]) -> RequestorPolicy:
    """Build the policy from a decoded config; raises :class:`ConfigError` naming the field."""
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise ConfigError(
            "unknown SGX config fields", expected=", ".join(sorted(_FIELDS)), found=unknown
        )
    if not _bool(obj, "enableAttestation", True):
        raise ConfigError(
            "enableAttestation = false is not supported: golem-graphene never accepts an "
            "unattested enclave"
        )
    accept = obj.get("acceptTcb", ["UpToDate"])
    try:
        statuses = [TcbStatus(s) for s in accept] if isinstance(accept, list) else None
    except ValueError:
        statuses = None
    if not statuses:
        raise ConfigError(
            "SGX config field acceptTcb must be a non-empty list of TCB statuses",
            expected=", ".join(s.value for s in TcbStatus),
            found=repr(accept),
        )
    if TcbStatus.REVOKED in statuses:
        raise ConfigError("a Revoked TCB is never accepted (acceptTcb)")
    if _bool(obj, "allowOutdatedTcb", False):
        statuses = [s for s in TcbStatus if s is not TcbStatus.REVOKED]
    age = obj.get("maxEvidenceAge")
    max_age = None
    if age is not None:
        if isinstance(age, bool) or not isinstance(age, int | float) or age <= 0:
            raise ConfigError("SGX config field maxEvidenceAge must be positive seconds")
        max_age = timedelta(seconds=age)
    return RequestorPolicy(
        accept_tcb=tuple(dict.fromkeys(s.value for s in statuses)),
        allow_debug=_bool(obj, "allowDebug", False),
        allow_missing_crls=_bool(obj, "allowMissingCrls", False),
        trusted_simulation_roots=_hex_list(obj, "trustedSimulationRoots"),
        max_collateral_age=max_age,
        expected_mrenclave=_hex_list(obj, "exeunitHashes"),
    )


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
        obj = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"the SGX config {source} is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ConfigError("the SGX config must be a JSON object", found=str(source))
    return policy_from_mapping(obj)
