"""``golem-graphene verify-receipt``: check a receipt bundle offline (and optionally outputs).

The bundle (quote, collateral, receipt, signature) is a self-contained proof: the quote and
collateral are verified at ``--at``, the policy flags judge the enclave, the quote's report data
must bind the receipt's task, nonce and keys, and the receipt signature must verify.

The policy flags are ``run``'s and mean the same: the Intel SGX Root CA (or ``--root``) is the
anchor, and a quote whose own chain ends in a simulation root named by
``--trust-simulated-root`` is verified under that root. The enclave is pinned by
``--mrenclave``/``--mrsigner``, or by ``--spec SPEC`` as ``run`` pins it (the spec's
``[attestation]``, else the measurement of the spec's image); with no pin, ANY enclave passes,
and that is said loudly.

With ``--outputs DIR`` every ``<name>.age`` output file is checked too: ``DIR`` is ``run``'s
output folder (its ``.sealed`` folder is used) or a folder of ``.age`` files. With ``-i
IDENTITY`` as well, each is decrypted (into a hash, never to disk) and the plaintext checked.
The receipt's ``input_manifest_sha256`` is compared with the input manifest that was sent:
``--input-manifest FILE``, or the ``.input-manifest.json`` that ``run`` keeps in ``DIR``.

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
from golem_graphene._internal.text import escape
from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.policy import AllOf
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.verifier import QuoteVerifier
from golem_graphene.errors import Error, UsageError, VerificationError
from golem_graphene.limits import (
    MAX_COLLATERAL_BYTES,
    MAX_INPUT_MANIFEST_BYTES,
    MAX_RECEIPT_BUNDLE_BYTES,
)
from golem_graphene.protocol.binding import format_task_id
from golem_graphene.protocol.spec import TaskSpec
from golem_graphene.requestor.client import INPUT_MANIFEST_FILE
from golem_graphene.requestor.policy import RequestorPolicy
from golem_graphene.sealing.input_manifest import InputManifest
from golem_graphene.sealing.keys import X25519Identity, load_identities
from golem_graphene.sealing.receipt import ReceiptBundle, verify_receipt_bundle

JSON_FIELDS = (
    "verdict",
    "input_manifest_checked",
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
    p.add_argument(
        "--input-manifest",
        metavar="FILE",
        help="the input manifest that was sent (default: DIR/.input-manifest.json of --outputs)",
    )
    p.add_argument(
        "--spec",
        metavar="SPEC",
        help="pin the enclave as run does: the spec's [attestation], else its image's measurement",
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


def _outputs_dir(arg: str | None) -> Path | None:
    """``--outputs``: run's output folder (its ``.sealed``) or a folder of ``.age`` files."""
    if arg is None:
        return None
    path = Path(arg)
    if not path.is_dir():
        raise UsageError(f"--outputs must be a directory: {arg!r}")
    sealed = path / ".sealed"
    return sealed if sealed.is_dir() else path


def _input_manifest(args: argparse.Namespace) -> bytes | None:
    """The SHA-256 of the input manifest to compare with the receipt's, if one is known."""
    path: Path | None = Path(args.input_manifest) if args.input_manifest else None
    if path is None and args.outputs:
        candidate = Path(args.outputs) / INPUT_MANIFEST_FILE
        path = candidate if candidate.is_file() else None
    if path is None:
        return None
    data = read_file(str(path), "input manifest", MAX_INPUT_MANIFEST_BYTES)
    try:
        return InputManifest.from_json(data).digest()
    except Error as exc:
        raise UsageError(
            f"the input manifest {str(path)!r} is malformed: {exc.describe()}"
        ) from exc


def _pinned_policy(
    args: argparse.Namespace, requestor: RequestorPolicy, bundle: ReceiptBundle
) -> AllOf:
    """The quote checks: the flags' policy, pinned to the enclave as run pins it when ``--spec``
    is given and no flag pins one."""
    if not args.spec or requestor.pins_enclave:
        return policy_from_args(args, requestor)
    spec_path = Path(args.spec)
    spec_file = spec_path / "task.toml" if spec_path.is_dir() else spec_path
    spec = TaskSpec.from_path(spec_file)
    runner = bundle.evidence.runner
    if not requestor.pins_for(spec, runner):
        from golem_graphene.requestor.measure import measure_locally

        value = measure_locally(spec_file, runner)
        sys.stderr.write(f"expected MRENCLAVE[{runner}] measured from the spec's image: {value}\n")
        requestor = requestor.with_expected_mrenclave(value)
    return requestor.attestation_policy(
        spec, runner, report_data=getattr(args, "report_data", None)
    )


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    outputs_dir = _outputs_dir(args.outputs)
    if args.identity and outputs_dir is None:
        raise UsageError("-i/--identity checks decrypted outputs and needs --outputs DIR")
    at = parse_time(args.at)
    requestor = requestor_policy_from_args(args)
    identities = _identities(args.identity)
    manifest_digest = _input_manifest(args)
    data = read_file(args.receipt, "receipt bundle", MAX_RECEIPT_BUNDLE_BYTES)
    collateral_data = (
        read_file(args.collateral, "collateral file", MAX_COLLATERAL_BYTES)
        if args.collateral
        else None
    )
    if args.spec and not Path(args.spec).exists():
        raise UsageError(f"no task spec at {args.spec!r}")
    warn_opt_ins(requestor)
    out: dict[str, Any] = dict.fromkeys(JSON_FIELDS)
    out["outputs"] = []
    try:
        bundle = ReceiptBundle.from_json(data)
        out["task_id"] = format_task_id(bundle.receipt.task_id)
        policy = _pinned_policy(args, requestor, bundle)
        if not (requestor.pins_enclave or args.spec):  # --spec pins, or fails to
            sys.stderr.write(
                "WARNING: NO MEASUREMENT IS PINNED (--mrenclave, --mrsigner or --spec): ANY "
                "enclave is accepted; this receipt's enclave claims MRENCLAVE "
                f"{bundle.receipt.measurement.mrenclave.hex()}\n"
            )
        collateral = (
            QuoteCollateral.from_json(collateral_data) if collateral_data is not None else None
        )
        quote = Quote.from_bytes(bundle.evidence.quote) if bundle.evidence.quote else None
        anchor = requestor.anchor_for(quote) if quote is not None else requestor.root
        verifier = QuoteVerifier(
            anchor=anchor or TrustAnchor.intel_sgx_root(), options=requestor.verify_options()
        )
        result = verify_receipt_bundle(
            bundle,
            outputs_dir=outputs_dir,
            identity=identities or None,
            policy=policy,
            verifier=verifier,
            at=at,
            collateral=collateral,
            expected_input_manifest=manifest_digest,
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
    out["input_manifest_checked"] = manifest_digest is not None
    return _finish(args, out, None)


def _finish(args: argparse.Namespace, out: dict[str, Any], error: Error | None) -> int:
    out["verdict"] = "fail" if error else "ok"
    if error is not None:
        out["error"] = error.to_dict()
        # The bundle came from a provider: the line that carries the verdict is escaped.
        sys.stderr.write(f"FAIL: {error.code}: {escape(error.describe(), 2000)}\n")
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
    if out["input_manifest_checked"]:
        lines.append("input manifest: the one sent (its SHA-256 is the receipt's)")
    else:
        lines.append("input manifest: not checked (no --input-manifest)")
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
