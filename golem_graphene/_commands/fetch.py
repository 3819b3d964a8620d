"""``golem-graphene fetch TASK --out DIR``: fetch a task's outputs later, with every check of run.

``TASK`` is a task id that ``run`` printed (its record is in
``$XDG_STATE_HOME/golem-graphene/tasks/``, default ``~/.local/state/...``) or the path of a
record file. The record holds the provider, the task's capability, the nonce, the spec, the
measurement that attested and the input manifest that was sent. ``fetch`` verifies the
provider's evidence again under the policy flags (pass the same ones as to ``run``; the
measurement that attested then is pinned unless a flag pins one), waits for the task if it is
still running, checks that the receipt binds this task, this nonce and this input manifest, and
puts the outputs in ``--out`` all or nothing. Then the task is deleted on the provider (unless
``--keep-task``) and the record removed.

Exit 0 when everything verified and the workload exited 0; 1 when a check failed or the
workload did not exit 0; 2 on usage errors. ``--json`` prints one object on stdout.
"""

from __future__ import annotations

import argparse
import os
import re
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
from golem_graphene.requestor.record import TaskRecord, record_path
from golem_graphene.sealing.keys import X25519Identity

__all__ = ["register", "run"]

_TASK_ID = re.compile(r"[0-9a-f]{32}")


EXAMPLE = """\
example (run printed the task id when the download broke off):
  golem-graphene fetch 3f2a9c0d1e5b47f8a6c2d9e0b1a4c7f3 --out results
"""


def register(sub: Any) -> None:
    """Add the ``fetch`` command."""
    p = sub.add_parser(
        "fetch",
        help="fetch a task's outputs later, with the same checks as run",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", metavar="TASK", help="task id (as run printed it) or a record file")
    p.add_argument("--out", required=True, metavar="DIR", help="where verified outputs land")
    p.add_argument("--provider", metavar="URL", help="provider base URL (default: the record's)")
    p.add_argument("--token", help="requestor token (default: $GOLEM_GRAPHENE_TOKEN)")
    p.add_argument(
        "-i",
        "--identity",
        metavar="FILE",
        help="your age identity (default ~/.config/golem-graphene/identity.txt)",
    )
    p.add_argument(
        "--keep-task", action="store_true", help="leave the task on the provider afterwards"
    )
    add_trust_flags(p, with_time=False)
    add_policy_flags(p)
    add_deadline_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def _record_file(task: str) -> Path:
    if _TASK_ID.fullmatch(task):
        path = record_path(task)
        if not path.exists():
            raise UsageError(
                f"no record of task {task} (it is kept from run until the outputs are in place)",
                expected=str(path),
            )
        return path
    path = Path(task)
    if not path.is_file():
        raise UsageError("TASK is a task id (32 hex digits) or a task record file", found=task)
    return path


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    policy = requestor_policy_from_args(args)
    deadlines = deadlines_from_args(args)
    path = _record_file(args.task)
    record = TaskRecord.load(path)
    out = Path(args.out)
    Requestor.check_out_dir(out)
    identity = load_identity(
        Path(args.identity) if args.identity else default_identity_path(), create=False
    )
    warn_opt_ins(policy)
    provider = args.provider or record.provider
    progress = Progress(provider)
    task_id = record.task_id.hex()
    code, result = settle(
        _fetch(args, provider, policy, deadlines, identity, record, out, progress),
        as_json=args.json,
        task_id=lambda: task_id,
    )
    if result is not None and not args.keep_task:
        path.unlink(missing_ok=True)
    return code


async def _fetch(
    args: argparse.Namespace,
    provider: str,
    policy: RequestorPolicy,
    deadlines: Deadlines,
    identity: X25519Identity,
    record: TaskRecord,
    out: Path,
    progress: Progress,
) -> TaskResult:
    token = args.token or os.environ.get("GOLEM_GRAPHENE_TOKEN")
    async with Requestor(
        provider, identity=identity, token=token, policy=policy, deadlines=deadlines
    ) as requestor:
        return await requestor.resume(
            record,
            out,
            on_event=progress.event,
            on_progress=progress.local,
            keep_task=args.keep_task,
        )
