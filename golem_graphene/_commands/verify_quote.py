"""``golem-graphene verify-quote``: verify an SGX DCAP quote (or a legacy IAS report).

Exit 0 when the evidence verifies and the policy holds, 1 when it does not, 2 on usage errors.
Human output goes to stderr (``OK`` or ``FAIL: <check>: <expected vs found>``); ``--json``
prints one object on stdout in both cases.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from golem_graphene._commands._attestation_flags import (
    add_policy_flags,
    add_trust_flags,
    parse_time,
    policy_from_args,
    read_file,
    requestor_policy_from_args,
    warn_opt_ins,
)
from golem_graphene._internal.text import escape
from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.verifier import QuoteVerifier, VerifiedQuote, identity_fields
from golem_graphene.errors import Error, UsageError, VerificationError

if TYPE_CHECKING:
    from golem_graphene.attestation.ias import VerifiedIasReport
    from golem_graphene.requestor.policy import RequestorPolicy


__all__ = ["parse_time", "register", "run"]

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


EXAMPLE = """\
example:
  V=tests/vectors/dcap/phala_sgx
  golem-graphene verify-quote $V/quote.bin --collateral $V/collateral.json \\
      --at 2025-07-19T10:00:00Z --accept-tcb ConfigurationAndSWHardeningNeeded
"""


def register(sub: Any) -> None:
    """Add the ``verify-quote`` command."""
    p = sub.add_parser(
        "verify-quote",
        help="verify an SGX DCAP quote with its collateral (or a legacy IAS report)",
        description=__doc__,
        epilog=EXAMPLE,
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
    add_trust_flags(p)
    add_policy_flags(p, report_data=True)
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
    _check_report_data(args.report_data)
    at = parse_time(args.at)
    requestor = requestor_policy_from_args(args)
    policy = policy_from_args(args, requestor)
    anchor = requestor.root
    warn_opt_ins(requestor)
    out: dict[str, Any] = dict.fromkeys(JSON_FIELDS)
    out["advisory_ids"] = []
    try:
        result = _verify_ias(args, at, anchor) if is_ias else _verify_dcap(args, at, requestor, out)

        fields = result.to_dict()
        out.update(fields)
        policy.check(result)
    except VerificationError as exc:
        out.update(exc.established)
        return _finish(args, out, exc)
    except UsageError:
        raise
    except Error as exc:  # e.g. collateral could not be fetched: still one JSON object
        return _finish(args, out, exc)
    return _finish(args, out, None)


def _check_report_data(text: str | None) -> None:
    """``--report-data``: hex digits for at most 64 bytes (a usage error naming the value)."""
    if text is None:
        return
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise UsageError(
            "--report-data takes hex digits (up to 64 bytes)", found=repr(text[:140])
        ) from None
    if len(value) > 64:
        raise UsageError("--report-data is longer than 64 bytes", found=f"{len(value)} bytes")


def _verify_dcap(
    args: argparse.Namespace,
    at: datetime,
    requestor: RequestorPolicy,
    out: dict[str, Any],
) -> VerifiedQuote:
    quote = Quote.from_bytes(read_file(args.quote_file, "quote file"))
    out.update(identity_fields(quote))
    if args.collateral:
        collateral = QuoteCollateral.from_json(read_file(args.collateral, "collateral file"))
    else:
        from golem_graphene.attestation.pcs import collateral_for_quote

        cache = Path(args.cache_dir) if args.cache_dir else None
        collateral = collateral_for_quote(quote, args.pcs_url, cache_dir=cache, at=at)
    verifier = QuoteVerifier(
        anchor=requestor.root or TrustAnchor.intel_sgx_root(), options=requestor.verify_options()
    )
    return verifier.verify(quote, collateral, at)


def _verify_ias(
    args: argparse.Namespace, at: datetime, anchor: TrustAnchor | None
) -> VerifiedIasReport:
    from golem_graphene.attestation.ias import verify_ias_report

    return verify_ias_report(
        read_file(args.ias_report, "IAS report body"),
        read_file(args.ias_signature, "IAS signature file"),
        read_file(args.ias_certs, "IAS certificate file"),
        at=at,
        anchor=anchor,
    )


def _finish(args: argparse.Namespace, out: dict[str, Any], error: Error | None) -> int:
    out["verdict"] = "fail" if error else "ok"
    if error is not None:
        out["error"] = error.to_dict()
        # A quote may come from a provider (a certificate's subject is its text): escaped.
        sys.stderr.write(f"FAIL: {error.code}: {escape(error.describe(), 2000)}\n")
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
