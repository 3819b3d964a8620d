"""``golem-graphene run SPEC --provider URL --input NAME=PATH ... --out DIR``.

Runs one confidential task: the provider's enclave is attested against the spec's expected
measurement (or a local build of the spec) and the policy flags before any input is sealed to
it; outputs land in ``--out`` only after the signed receipt and every digest verified.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from golem_graphene._commands._attestation_flags import (
    add_policy_flags,
    add_trust_flags,
    requestor_policy_from_args,
    warn_opt_ins,
)
from golem_graphene.errors import UsageError
from golem_graphene.protocol.messages import TaskEvent
from golem_graphene.requestor.client import Requestor, TaskResult
from golem_graphene.requestor.policy import RequestorPolicy
from golem_graphene.sealing.keys import X25519Identity, load_identities

DEFAULT_IDENTITY = "identity.txt"


EXAMPLE = """\
example:
  golem-graphene run task_specs/csv-stats --provider http://127.0.0.1:7465 \\
      --input data.csv=task_specs/csv-stats/sample/data.csv --out results
"""


def register(sub: Any) -> None:
    """Add the ``run`` command."""
    p = sub.add_parser(
        "run",
        help="run a confidential task on a provider",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC", help="task spec folder or task.toml")
    p.add_argument("--provider", required=True, metavar="URL", help="provider base URL")
    p.add_argument("--token", help="requestor token (default: $GOLEM_GRAPHENE_TOKEN)")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a plaintext input (repeatable)",
    )
    p.add_argument(
        "--prestaged",
        action="append",
        default=[],
        metavar="NAME=AGE_FILE",
        help="an input already sealed to your identity (only its header is rewritten)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where verified outputs land")
    p.add_argument(
        "-i",
        "--identity",
        metavar="FILE",
        help="your age identity (default ~/.config/golem-graphene/identity.txt, created if absent)",
    )
    p.add_argument(
        "--arg",
        action="append",
        dest="args",
        metavar="ARG",
        help="workload argument replacing the spec's defaults (repeatable)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="workload environment variable (repeatable)",
    )
    add_trust_flags(p, with_time=False)
    add_policy_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def default_identity_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "golem-graphene" / DEFAULT_IDENTITY


def load_or_create_identity(path: Path) -> X25519Identity:
    """Your age identity; created (mode 0600) on first use, its recipient printed."""
    if path.exists():
        identities = load_identities(path)
        if len(identities) != 1:
            raise UsageError(f"{path} must hold exactly one identity", found=len(identities))
        return identities[0]
    identity = X25519Identity.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# public key: {identity.recipient().to_string()}\n{identity.to_string()}\n")
    sys.stderr.write(f"created identity {path} (public key {identity.recipient().to_string()})\n")
    return identity


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} takes NAME=VALUE", found=item)
        out[name] = value
    return out


class Progress:
    """State changes and byte counts on stderr; quiet details when stderr is not a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_state: str | None = None

    def __call__(self, event: TaskEvent) -> None:
        state = event.state.value
        elapsed = time.monotonic() - self.started
        if state != self.last_state:
            sys.stderr.write(f"[{elapsed:6.1f}s] {state}\n")
            self.last_state = state
        done = event.bytes_done
        if self.tty and done is not None and event.message:
            rate = done / max(elapsed, 1e-6) / (1 << 20)
            sys.stderr.write(f"           {event.message}: {done} bytes ({rate:.1f} MiB/s)\n")


async def _run(
    args: argparse.Namespace, policy: RequestorPolicy, identity: X25519Identity
) -> TaskResult:
    token = args.token or os.environ.get("GOLEM_GRAPHENE_TOKEN")
    async with Requestor(args.provider, identity=identity, token=token, policy=policy) as requestor:
        return await requestor.run(
            Path(args.spec),
            _pairs(args.input, "--input"),
            Path(args.out),
            args=args.args,
            env=_pairs(args.env, "--env"),
            prestaged=_pairs(args.prestaged, "--prestaged"),
            on_event=Progress(),
        )


def describe(result: TaskResult) -> dict[str, Any]:
    return {
        "verdict": "ok",
        "task_id": result.task_id,
        "out_dir": str(result.out_dir),
        "outputs": {k: str(v) for k, v in result.outputs.items()},
        "receipt": str(result.receipt_path),
        "exit_status": result.exit_status,
        "status": result.verified.status.value,
        "simulated": result.verified.simulated,
        "mrenclave": result.verified.quote.report_body.mrenclave.hex(),
    }


def run(args: argparse.Namespace) -> int:
    identity = load_or_create_identity(
        Path(args.identity) if args.identity else default_identity_path()
    )
    policy = requestor_policy_from_args(args)
    warn_opt_ins(policy)
    if not policy.pins_enclave:
        from golem_graphene.requestor.measure import expected_mrenclave

        runner = "sim" if args.trust_simulated_root else "gramine-sgx"
        value, built = expected_mrenclave(Path(args.spec), runner)
        if built:
            sys.stderr.write(
                f"expected MRENCLAVE[{runner}] from a local build of the spec: {value}\n"
            )
        policy = policy.with_expected_mrenclave(value)
    result = asyncio.run(_run(args, policy, identity))
    summary = describe(result)
    sys.stderr.write(
        f"OK: task {result.task_id} verified (exit status {result.exit_status}"
        f"{', SIMULATED' if result.verified.simulated else ''})\n"
    )
    for name, path in summary["outputs"].items():
        sys.stderr.write(f"  {name}: {path}\n")
    sys.stderr.write(f"  receipt: {result.receipt_path}\n")
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    return 0 if result.exit_status == 0 else 1
