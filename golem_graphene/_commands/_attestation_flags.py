"""Trust and policy flags shared by ``verify-quote``, ``verify-receipt`` and ``run``.

One definition of each flag, one way to turn them into a policy and verifier options, and one
place that prints every insecure opt-in loudly.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.policy import ANY_EXCEPT_REVOKED, AllOf, build_policy
from golem_graphene.attestation.tcb import TcbStatus
from golem_graphene.attestation.verifier import CRL_NAMES, VerifyOptions
from golem_graphene.errors import UsageError

__all__ = [
    "add_policy_flags",
    "add_trust_flags",
    "anchor_from_args",
    "parse_time",
    "policy_from_args",
    "read_file",
    "verify_options_from_args",
    "warn_opt_ins",
]

MAX_ROOT_BYTES = 1024 * 1024


def add_trust_flags(parser: Any, *, with_time: bool = True) -> None:
    """``--root``, ``--at``, ``--allow-missing-crl``, ``--trust-simulated-root``."""
    trust = parser.add_argument_group("trust")
    trust.add_argument(
        "--root",
        metavar="ROOT_CERT",
        help="trust anchor (PEM/DER); default: the bundled Intel SGX Root CA",
    )
    if with_time:
        trust.add_argument(
            "--at",
            metavar="TIME",
            help="verification time: epoch seconds or ISO 8601 (default: now)",
        )
    trust.add_argument(
        "--allow-missing-crl",
        action="store_true",
        help="INSECURE: accept collateral whose CRLs are empty (revocation unchecked)",
    )
    trust.add_argument(
        "--trust-simulated-root",
        metavar="SHA256",
        action="append",
        default=[],
        help="INSECURE: trust this golem-graphene simulation root (SPKI SHA-256)",
    )


def add_policy_flags(parser: Any, *, report_data: bool = False) -> None:
    """The enclave policy flags; ``--report-data`` only where a caller knows the value."""
    pol = parser.add_argument_group("policy")
    pol.add_argument(
        "--mrenclave",
        metavar="HEX",
        action="append",
        default=[],
        help="allowed MRENCLAVE (repeatable: any of them)",
    )
    pol.add_argument("--mrsigner", metavar="HEX", help="required MRSIGNER")
    pol.add_argument("--isvprodid", metavar="N", type=int, help="required ISVPRODID")
    pol.add_argument("--min-isvsvn", metavar="N", type=int, help="minimum ISVSVN")
    pol.add_argument(
        "--accept-tcb",
        metavar="STATUS",
        action="append",
        default=[],
        help="accepted TCB status (repeatable; default UpToDate; "
        f"'{ANY_EXCEPT_REVOKED}' accepts all but Revoked)",
    )
    pol.add_argument(
        "--allow-debug",
        action="store_true",
        help="INSECURE: accept debug enclaves (the host can read their memory)",
    )
    if report_data:
        pol.add_argument("--report-data", metavar="HEX", help="required report data (<= 64 bytes)")
    pol.add_argument(
        "--max-collateral-age",
        metavar="SECONDS",
        type=float,
        help="refuse collateral issued longer ago than this",
    )


def parse_time(text: str | None) -> datetime:
    """Epoch seconds or ISO 8601 (``Z`` allowed; naive means UTC); default now."""
    if text is None:
        return datetime.now(UTC)
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError("--at takes epoch seconds or an ISO 8601 time", found=text) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_file(path: str, what: str, limit: int | None = None) -> bytes:
    """A file's bytes, as a :class:`UsageError` when unreadable or larger than ``limit``."""
    try:
        with Path(path).open("rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path!r}: {exc.strerror or exc}") from exc
    if limit is not None and len(data) > limit:
        raise UsageError(f"the {what} {path!r} is too large", expected=f"<= {limit} bytes")
    return data


def _check_statuses(statuses: list[str]) -> None:
    for status in statuses:
        if status != ANY_EXCEPT_REVOKED and status not in TcbStatus.__members__.values():
            raise UsageError(
                "--accept-tcb takes a TCB status",
                expected=", ".join(TcbStatus) + f" or {ANY_EXCEPT_REVOKED}",
                found=status,
            )


def policy_from_args(args: argparse.Namespace) -> AllOf:
    """The policy the flags describe (strict defaults for every unset flag)."""
    _check_statuses(args.accept_tcb)
    try:
        return build_policy(
            mrenclaves=args.mrenclave,
            mrsigner=args.mrsigner,
            isvprodid=args.isvprodid,
            min_isvsvn=args.min_isvsvn,
            accept_tcb=args.accept_tcb,
            allow_debug=args.allow_debug,
            report_data=getattr(args, "report_data", None),
            max_collateral_age=(
                timedelta(seconds=args.max_collateral_age)
                if args.max_collateral_age is not None
                else None
            ),
        )
    except ValueError as exc:
        raise UsageError(f"invalid policy flag: {exc}") from exc


def anchor_from_args(args: argparse.Namespace) -> TrustAnchor | None:
    """The ``--root`` anchor, or None for the default."""
    if not args.root:
        return None
    return TrustAnchor.from_pem(read_file(args.root, "root certificate", MAX_ROOT_BYTES), args.root)


def verify_options_from_args(args: argparse.Namespace) -> VerifyOptions:
    """Missing-CRL and simulation-root opt-ins."""
    return VerifyOptions(
        allow_missing_crls=CRL_NAMES if args.allow_missing_crl else frozenset(),
        trusted_simulation_roots=frozenset(f.lower() for f in args.trust_simulated_root),
    )


def warn_opt_ins(args: argparse.Namespace) -> None:
    """Print every insecure opt-in on stderr, loudly."""
    loud = []
    if args.allow_debug:
        loud.append("debug enclaves are ACCEPTED (--allow-debug): their memory is not confidential")
    if args.allow_missing_crl:
        loud.append("missing CRLs are ACCEPTED (--allow-missing-crl): revocation is not checked")
    if args.trust_simulated_root:
        loud.append("a SIMULATED root is trusted (--trust-simulated-root): no real SGX protection")
    if any(s != TcbStatus.UP_TO_DATE for s in args.accept_tcb):
        loud.append(f"TCB statuses other than UpToDate are accepted: {', '.join(args.accept_tcb)}")
    for line in loud:
        sys.stderr.write(f"WARNING: {line}\n")
