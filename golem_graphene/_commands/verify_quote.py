"""``golem-graphene verify-quote``: verify an SGX DCAP quote (or a legacy IAS report).

Exit 0 when the evidence verifies and the policy holds, 1 when it does not, 2 on usage errors.
Human output goes to stderr (``OK`` or ``FAIL: <check>: <expected vs found>``); ``--json``
prints one object on stdout in both cases.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.policy import ANY_EXCEPT_REVOKED, AllOf, build_policy
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.tcb import TcbStatus
from golem_graphene.attestation.verifier import (
    CRL_NAMES,
    QuoteVerifier,
    VerifyOptions,
    identity_fields,
)
from golem_graphene.errors import Error, UsageError, VerificationError

JSON_FIELDS = (
    "verdict",
    "status",
    "platform_status",
    "qe_tcb_status",
    "advisory_ids",
    "mrenclave",
    "mrsigner",
    "isvprodid",
    "isvsvn",
    "debug",
    "report_data",
    "fmspc",
    "pceid",
)


def register(sub: Any) -> None:
    """Add the ``verify-quote`` command."""
    p = sub.add_parser(
        "verify-quote",
        help="verify an SGX DCAP quote with its collateral (or a legacy IAS report)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("quote_file", nargs="?", metavar="QUOTE_FILE", help="raw DCAP v3 quote bytes")
    src = p.add_argument_group("collateral")
    src.add_argument(
        "--collateral", metavar="FILE", help="collateral JSON (dcap-qvl QuoteCollateralV3 format)"
    )
    src.add_argument(
        "--pcs-url",
        metavar="URL",
        help="fetch collateral for the quote's FMSPC and PCK CA from this PCS/PCCS (v4)",
    )
    src.add_argument("--cache-dir", metavar="DIR", help="on-disk collateral cache for --pcs-url")
    trust = p.add_argument_group("trust")
    trust.add_argument(
        "--root",
        metavar="ROOT_CERT",
        help="trust anchor (PEM/DER); default: the bundled Intel SGX Root CA",
    )
    trust.add_argument(
        "--at", metavar="TIME", help="verification time: epoch seconds or ISO 8601 (default: now)"
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
    pol = p.add_argument_group("policy")
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
    pol.add_argument("--report-data", metavar="HEX", help="required report data (<= 64 bytes)")
    pol.add_argument(
        "--max-collateral-age",
        metavar="SECONDS",
        type=float,
        help="refuse collateral issued longer ago than this",
    )
    ias = p.add_argument_group("legacy IAS (EPID) reports")
    ias.add_argument("--ias-report", metavar="BODY", help="raw IAS report response body")
    ias.add_argument(
        "--ias-signature", metavar="SIG", help="file with the X-IASReport-Signature value"
    )
    ias.add_argument(
        "--ias-certs",
        metavar="CERTS",
        help="file with the X-IASReport-Signing-Certificate value (URL-encoded or PEM)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


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


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path!r}: {exc.strerror}") from exc


def _policy(args: argparse.Namespace) -> AllOf:
    accept: list[str] = args.accept_tcb
    for status in accept:
        if status != ANY_EXCEPT_REVOKED and status not in TcbStatus.__members__.values():
            raise UsageError(
                "--accept-tcb takes a TCB status",
                expected=", ".join(TcbStatus) + f" or {ANY_EXCEPT_REVOKED}",
                found=status,
            )
    try:
        return build_policy(
            mrenclaves=args.mrenclave,
            mrsigner=args.mrsigner,
            isvprodid=args.isvprodid,
            min_isvsvn=args.min_isvsvn,
            accept_tcb=accept,
            allow_debug=args.allow_debug,
            report_data=args.report_data,
            max_collateral_age=(
                timedelta(seconds=args.max_collateral_age)
                if args.max_collateral_age is not None
                else None
            ),
        )
    except ValueError as exc:
        raise UsageError(f"invalid policy flag: {exc}") from exc


def _warn_opt_ins(args: argparse.Namespace) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    is_ias = args.ias_report is not None
    if is_ias:
        if args.quote_file or args.collateral or args.pcs_url:
            raise UsageError("--ias-report excludes QUOTE_FILE, --collateral and --pcs-url")
        if not (args.ias_signature and args.ias_certs):
            raise UsageError("--ias-report needs --ias-signature and --ias-certs")
    else:
        if not args.quote_file:
            raise UsageError("QUOTE_FILE is required (or --ias-report)")
        if bool(args.collateral) == bool(args.pcs_url):
            raise UsageError("give exactly one of --collateral FILE or --pcs-url URL")
    at = parse_time(args.at)
    policy = _policy(args)
    anchor = (
        TrustAnchor.from_pem(_read(args.root, "root certificate"), args.root) if args.root else None
    )
    _warn_opt_ins(args)
    out: dict[str, Any] = dict.fromkeys(JSON_FIELDS)
    out["advisory_ids"] = []
    try:
        if is_ias:
            result_fields = _verify_ias(args, at, anchor, policy, out)
        else:
            result_fields = _verify_dcap(args, at, anchor, policy, out)
    except VerificationError as exc:
        out.update({k: v for k, v in exc.established.items() if k in out or k not in JSON_FIELDS})
        return _finish(args, out, exc)
    out.update(result_fields)
    return _finish(args, out, None)


def _verify_dcap(
    args: argparse.Namespace,
    at: datetime,
    anchor: TrustAnchor | None,
    policy: AllOf,
    out: dict[str, Any],
) -> dict[str, Any]:
    quote = Quote.from_bytes(_read(args.quote_file, "quote file"))
    out.update(identity_fields(quote))
    if args.collateral:
        collateral = QuoteCollateral.from_json(_read(args.collateral, "collateral file"))
    else:
        from golem_graphene.attestation.pcs import collateral_for_quote

        cache = Path(args.cache_dir) if args.cache_dir else None
        collateral = collateral_for_quote(quote, args.pcs_url, cache_dir=cache, at=at)
    options = VerifyOptions(
        allow_missing_crls=CRL_NAMES if args.allow_missing_crl else frozenset(),
        trusted_simulation_roots=frozenset(f.lower() for f in args.trust_simulated_root),
    )
    verifier = QuoteVerifier(anchor=anchor or TrustAnchor.intel_sgx_root(), options=options)
    result = verifier.verify(quote, collateral, at)
    fields = result.to_dict()
    try:
        policy.check(result)
    except VerificationError as exc:
        exc.established = fields
        raise
    return fields


def _verify_ias(
    args: argparse.Namespace,
    at: datetime,
    anchor: TrustAnchor | None,
    policy: AllOf,
    out: dict[str, Any],
) -> dict[str, Any]:
    from golem_graphene.attestation.ias import verify_ias_report

    result = verify_ias_report(
        _read(args.ias_report, "IAS report body"),
        _read(args.ias_signature, "IAS signature file"),
        _read(args.ias_certs, "IAS certificate file"),
        at=at,
        anchor=anchor,
    )
    fields = result.to_dict()
    try:
        policy.check(result)
    except VerificationError as exc:
        exc.established = fields
        raise
    return fields


def _finish(args: argparse.Namespace, out: dict[str, Any], error: Error | None) -> int:
    out["verdict"] = "fail" if error else "ok"
    if error is not None:
        out["error"] = error.to_dict()
        sys.stderr.write(f"FAIL: {error.code}: {error.describe()}\n")
    else:
        sys.stderr.write("OK\n")
        if not args.json:
            for key in (
                "status",
                "advisory_ids",
                "mrenclave",
                "mrsigner",
                "isvprodid",
                "isvsvn",
                "fmspc",
                "collateral_window",
            ):
                if out.get(key) not in (None, []):
                    sys.stderr.write(f"  {key}: {_show(out[key])}\n")
    if args.json:
        sys.stdout.write(json.dumps(out, sort_keys=False) + "\n")
    return 1 if error else 0


def _show(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)
