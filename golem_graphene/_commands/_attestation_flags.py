"""Trust and policy flags shared by ``verify-quote``, ``verify-receipt`` and ``run``.

One definition of each flag, one way to turn them into a policy
(:meth:`~golem_graphene.requestor.policy.RequestorPolicy.build`) and verifier options, and one
place that prints every insecure opt-in loudly.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.policy import ANY_EXCEPT_REVOKED, AllOf
from golem_graphene.errors import UsageError
from golem_graphene.requestor.policy import RequestorPolicy

__all__ = [
    "add_policy_flags",
    "add_trust_flags",
    "anchor_from_args",
    "parse_time",
    "policy_from_args",
    "read_file",
    "requestor_policy_from_args",
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


_FLAG_NAMES = {
    "accept_tcb": "--accept-tcb",
    "expected_mrenclave": "--mrenclave",
    "trusted_simulation_roots": "--trust-simulated-root",
    "mrsigner": "--mrsigner",
    "isvprodid": "--isvprodid",
    "min_isvsvn": "--min-isvsvn",
    "max_collateral_age": "--max-collateral-age",
}


def requestor_policy_from_args(args: argparse.Namespace) -> RequestorPolicy:
    """The policy the flags describe (strict defaults for every unset flag); a bad value is a
    :class:`UsageError` naming the flag. The one way every command reads these flags."""
    return RequestorPolicy.build(
        accept_tcb=args.accept_tcb,
        allow_debug=args.allow_debug,
        allow_missing_crls=args.allow_missing_crl,
        trusted_simulation_roots=args.trust_simulated_root,
        root=anchor_from_args(args),
        max_collateral_age=args.max_collateral_age,
        expected_mrenclave=args.mrenclave,
        mrsigner=args.mrsigner,
        isvprodid=args.isvprodid,
        min_isvsvn=args.min_isvsvn,
        error=UsageError,
        names=_FLAG_NAMES,
    )


def policy_from_args(args: argparse.Namespace, requestor: RequestorPolicy) -> AllOf:
    """The quote checks of ``requestor`` (the flags' policy) and ``--report-data``, for
    commands that take no spec."""
    report_data = getattr(args, "report_data", None)
    try:
        return requestor.attestation_policy(report_data=report_data, require_pin=False)
    except ValueError as exc:  # --report-data: not hex, too long
        raise UsageError(f"--report-data: {exc}") from None


def anchor_from_args(args: argparse.Namespace) -> TrustAnchor | None:
    """The ``--root`` anchor, or None for the default."""
    if not args.root:
        return None
    return TrustAnchor.from_pem(read_file(args.root, "root certificate", MAX_ROOT_BYTES), args.root)


def warn_opt_ins(policy: RequestorPolicy) -> None:
    """Print every insecure opt-in on stderr, loudly."""
    for line in policy.opt_ins():
        sys.stderr.write(f"WARNING: {line}\n")
