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
from pathlib import Path
from typing import Any

from golem_graphene._commands._attestation_flags import (
    add_policy_flags,
    add_trust_flags,
    parse_time,
    policy_from_args,
    read_file,
    requestor_policy_from_args,
    warn_opt_ins,
)
from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.verifier import QuoteVerifier
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


EXAMPLE = """\
example:
  golem-graphene verify-receipt demo-out/results/receipt.json \\
      --outputs demo-out/results/.sealed -i demo-out/requestor/identity.txt \\
      --trust-simulated-root FINGERPRINT --mrenclave HEX   # as the demo prints it
"""


def register(sub: Any) -> None:
    """Add the ``verify-receipt`` command."""
    p = sub.add_parser(
        "verify-receipt",
        help="verify a receipt bundle offline: quote, binding, signature, outputs",
        description=__doc__,
        epilog=EXAMPLE,
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
    add_trust_flags(p)
    add_policy_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    if args.identity and not args.outputs:
        raise UsageError("-i/--identity checks decrypted outputs and needs --outputs DIR")
    if args.outputs and not Path(args.outputs).is_dir():
        raise UsageError(f"--outputs must be a directory: {args.outputs!r}")
    at = parse_time(args.at)
    requestor = requestor_policy_from_args(args)
    policy = policy_from_args(args, requestor)
    anchor = requestor.root or TrustAnchor.intel_sgx_root()
    identities = _identities(args.identity)
    data = read_file(args.receipt, "receipt bundle", MAX_RECEIPT_BUNDLE_BYTES)
    collateral_data = (
        read_file(args.collateral, "collateral file", MAX_COLLATERAL_BYTES)
        if args.collateral
        else None
    )
    warn_opt_ins(requestor)
    out: dict[str, Any] = dict.fromkeys(JSON_FIELDS)
    out["outputs"] = []
    try:
        bundle = ReceiptBundle.from_json(data)
        out["task_id"] = format_task_id(bundle.receipt.task_id)
        collateral = (
            QuoteCollateral.from_json(collateral_data) if collateral_data is not None else None
        )
        verifier = QuoteVerifier(anchor=anchor, options=requestor.verify_options())

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
