"""``golem-graphene verify-receipt``: check a receipt bundle offline (and optionally outputs).

The bundle (quote, collateral, receipt, signature) is a self-contained proof: the quote and
collateral are verified against the trust anchor at ``--at``, the policy flags judge the
enclave, the quote's report data must bind the receipt's task, nonce and keys, and the receipt
signature must verify. With ``--outputs DIR`` every ``<name>.age`` output file is checked too;
with ``-i IDENTITY`` as well, each is decrypted (into a hash, never to disk) and the plaintext
checked.

Exit 0 when everything verifies, 1 when a check fails, 2 on usage errors. Human output goes to
stderr (``OK`` or ``FAIL: <check>: <expected vs found>``); ``--json`` prints one object on
stdout in both cases.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from golem_graphene._commands.verify_quote import parse_time
from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.policy import ANY_EXCEPT_REVOKED, AllOf, build_policy
from golem_graphene.attestation.tcb import TcbStatus
from golem_graphene.attestation.verifier import CRL_NAMES, QuoteVerifier, VerifyOptions
from golem_graphene.errors import Error, UsageError, VerificationError
from golem_graphene.limits import MAX_COLLATERAL_BYTES, MAX_RECEIPT_BUNDLE_BYTES
from golem_graphene.protocol.binding import format_task_id
from golem_graphene.sealing.keys import X25519Identity, load_identities
from golem_graphene.sealing.receipt import ReceiptBundle, verify_receipt_bundle

JSON_FIELDS = (
    "verdict",
    "task_id",
    "exit_status",
    "termination",
    "outputs",
    "measurement",
    "status",
    "simulated",
    "outputs_checked",
    "plaintexts_checked",
)


def register(sub: Any) -> None:
    """Add the ``verify-receipt`` command."""
    p = sub.add_parser(
        "verify-receipt",
        help="verify a receipt bundle offline: quote, binding, signature, outputs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("receipt", metavar="RECEIPT", help="receipt bundle JSON file")
    p.add_argument(
        "--outputs", metavar="DIR", help="directory with the output files (<name>.age) to check"
    )
    p.add_argument(
        "-i",
        "--identity",
        metavar="IDENTITY",
        action="append",
        default=[],
        help="age identity file; decrypt each output and check its plaintext (needs --outputs)",
    )
    p.add_argument(
        "--collateral",
        metavar="FILE",
        help="collateral JSON to use instead of the bundle's (dcap-qvl QuoteCollateralV3)",
    )
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
    pol.add_argument(
        "--max-collateral-age",
        metavar="SECONDS",
        type=float,
        help="refuse collateral issued longer ago than this",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def _read(path: str, what: str, limit: int) -> bytes:
    try:
        with Path(path).open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path!r}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise UsageError(f"the {what} {path!r} is too large", expected=f"<= {limit} bytes")
    return data


def _policy(args: argparse.Namespace) -> AllOf:
    try:
        return build_policy(
            mrenclaves=args.mrenclave,
            mrsigner=args.mrsigner,
            isvprodid=args.isvprodid,
            min_isvsvn=args.min_isvsvn,
            accept_tcb=args.accept_tcb,
            allow_debug=args.allow_debug,
            max_collateral_age=(
                timedelta(seconds=args.max_collateral_age)
                if args.max_collateral_age is not None
                else None
            ),
        )
    except ValueError as exc:
        raise UsageError(f"invalid policy flag: {exc}") from exc


def _identities(paths: list[str]) -> list[X25519Identity]:
    identities: list[X25519Identity] = []
    for path in paths:
        try:
            identities.extend(load_identities(path))
        except UsageError:
            raise
        except Error as exc:
            raise UsageError(f"cannot use the identity file {path!r}: {exc.describe()}") from exc
    return identities


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
    if args.identity and not args.outputs:
        raise UsageError("-i/--identity checks decrypted outputs and needs --outputs DIR")
    if args.outputs and not Path(args.outputs).is_dir():
        raise UsageError(f"--outputs must be a directory: {args.outputs!r}")
    at = parse_time(args.at)
    policy = _policy(args)
    anchor = (
        TrustAnchor.from_pem(_read(args.root, "root certificate", 1024 * 1024), args.root)
        if args.root
        else TrustAnchor.intel_sgx_root()
    )
    identities = _identities(args.identity)
    data = _read(args.receipt, "receipt bundle", MAX_RECEIPT_BUNDLE_BYTES)
    collateral_data = (
        _read(args.collateral, "collateral file", MAX_COLLATERAL_BYTES) if args.collateral else None
    )
    _warn_opt_ins(args)
    out: dict[str, Any] = dict.fromkeys(JSON_FIELDS)
    out["outputs"] = []
    try:
        bundle = ReceiptBundle.from_json(data)
        out["task_id"] = format_task_id(bundle.receipt.task_id)
        collateral = (
            QuoteCollateral.from_json(collateral_data) if collateral_data is not None else None
        )
        verifier = QuoteVerifier(
            anchor=anchor,
            options=VerifyOptions(
                allow_missing_crls=CRL_NAMES if args.allow_missing_crl else frozenset(),
                trusted_simulation_roots=frozenset(f.lower() for f in args.trust_simulated_root),
            ),
        )
        result = verify_receipt_bundle(
            bundle,
            outputs_dir=Path(args.outputs) if args.outputs else None,
            identity=identities or None,
            policy=policy,
            verifier=verifier,
            at=at,
            collateral=collateral,
        )
    except UsageError:
        raise
    except VerificationError as exc:
        out["status"] = exc.established.get("status")
        out["simulated"] = exc.established.get("simulated")
        return _finish(args, out, exc)
    except Error as exc:
        return _finish(args, out, exc)
    out.update(result.to_dict())
    return _finish(args, out, None)


def _finish(args: argparse.Namespace, out: dict[str, Any], error: Error | None) -> int:
    out["verdict"] = "fail" if error else "ok"
    if error is not None:
        out["error"] = error.to_dict()
        sys.stderr.write(f"FAIL: {error.code}: {error.describe()}\n")
    else:
        sys.stderr.write("OK\n")
        if out["simulated"]:
            sys.stderr.write("WARNING: SIMULATED run: the quote is from a simulation root\n")
        if not args.json:
            _summary(out)
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
    return 1 if error else 0


def _summary(out: dict[str, Any]) -> None:
    measurement = out["measurement"] or {}
    lines = [
        f"task_id: {out['task_id']}",
        f"exit_status: {out['exit_status']} ({out['termination']})",
        f"mrenclave: {measurement.get('mrenclave')} (runner {measurement.get('runner')})",
        f"status: {out['status']}",
    ]
    if out["plaintexts_checked"]:
        lines.append(f"outputs: {len(out['outputs'])} checked, ciphertexts and plaintexts")
    elif out["outputs_checked"]:
        lines.append(f"outputs: {len(out['outputs'])} checked, ciphertexts only")
    else:
        lines.append(f"outputs: {len(out['outputs'])} listed, not checked (no --outputs)")
    for entry in out["outputs"]:
        lines.append(
            f"  {entry['name']}: {entry['size']} bytes, sha256 {entry['plaintext_sha256']}"
        )
    for line in lines:
        sys.stderr.write(f"  {line}\n")
