"""``golem-graphene run SPEC --provider URL --input NAME=PATH ... --out DIR``.

Runs one confidential task. Everything local is checked first (the spec, every input, the
output folder); then the provider's enclave is attested against the expected measurement (the
spec's pin, or the measurement of the spec's image) and the policy flags before any input is
sealed to it; outputs land in ``--out`` only after the signed receipt, the input manifest's
digest and every output verified, all together.

Every step has a deadline (``--timeout`` for the whole task, ``--deadline STEP=SECONDS``, a
minimum transfer rate): a provider that stalls or drips fails the step that waited, naming
the deadline and what had arrived. The task id is printed as soon as the task exists; when the
download is interrupted or breaks off, the task stays on the provider and
``golem-graphene fetch TASK_ID --out DIR`` fetches it later with the same checks.

Exit 0 when the task verified and its workload exited 0; 1 when a check failed or the workload
did not exit 0; 2 on usage errors. stderr says ``OK: ...`` or ``FAIL: <code>: ...`` (the
provider's own words, if any, on the next line, marked); ``--json`` prints one object on
stdout in both cases.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from golem_graphene._commands._attestation_flags import (
    add_policy_flags,
    add_trust_flags,
    requestor_policy_from_args,
    warn_opt_ins,
)
from golem_graphene._commands._requestor_cli import (
    Progress,
    add_deadline_flags,
    deadlines_from_args,
    default_identity_path,
    load_identity,
    settle,
)
from golem_graphene.errors import UsageError
from golem_graphene.requestor.client import Requestor, TaskResult
from golem_graphene.requestor.deadlines import Deadlines
from golem_graphene.requestor.policy import RequestorPolicy
from golem_graphene.requestor.record import default_records_dir, record_path
from golem_graphene.sealing.keys import X25519Identity

__all__ = ["register", "run"]


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
        help="your age identity (default ~/.config/golem-graphene/identity.txt, created on "
        "first use once the local checks passed)",
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
    add_deadline_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} takes NAME=VALUE", found=item)
        if name in out:
            raise UsageError(f"{flag} names {name!r} twice")
        out[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    policy = requestor_policy_from_args(args)
    deadlines = deadlines_from_args(args)
    inputs = _pairs(args.input, "--input")
    prestaged = _pairs(args.prestaged, "--prestaged")
    env = _pairs(args.env, "--env")
    # Everything local before anything else: no identity is created and no provider contacted
    # for a command that cannot succeed.
    Requestor.check_local(args.spec, inputs, args.out, prestaged=prestaged)
    identity = load_identity(
        Path(args.identity) if args.identity else default_identity_path(), create=True
    )
    warn_opt_ins(policy)
    progress = Progress(args.provider)
    code, _ = settle(
        _run(args, policy, deadlines, identity, inputs, prestaged, env, progress),
        as_json=args.json,
        task_id=lambda: progress.task_id,
        on_failure=lambda: _kept_hint(progress.task_id),
    )
    return code


async def _run(
    args: argparse.Namespace,
    policy: RequestorPolicy,
    deadlines: Deadlines,
    identity: X25519Identity,
    inputs: dict[str, str],
    prestaged: dict[str, str],
    env: dict[str, str],
    progress: Progress,
) -> TaskResult:
    token = args.token or os.environ.get("GOLEM_GRAPHENE_TOKEN")
    async with Requestor(
        args.provider, identity=identity, token=token, policy=policy, deadlines=deadlines
    ) as requestor:
        return await requestor.run(
            Path(args.spec),
            inputs,
            Path(args.out),
            args=args.args,
            env=env,
            prestaged=prestaged,
            on_event=progress.event,
            on_progress=progress.local,
            records=default_records_dir(),
        )


def _kept_hint(task_id: str | None) -> None:
    """When the task's record stayed (an interrupted or broken-off download), say how to
    fetch the outputs later."""
    if task_id is None or not record_path(task_id).exists():
        return
    sys.stderr.write(
        f"the task {task_id} stays on the provider with its outputs; fetch them with:\n"
        f"  golem-graphene fetch {task_id} --out DIR [the same policy flags]\n"
    )
