"""``golem-graphene run SPEC --provider URL --input NAME=PATH ... --out DIR``, or
``golem-graphene run --image REF --provider URL --input NAME=PATH ... --out DIR [-- ARGS...]``.

Runs one confidential task. With ``--image`` instead of a spec, any container image (a
``docker save``/``podman save`` archive as ``docker-archive:FILE``, an OCI archive or layout)
runs as it is: a spec is made for it in a private temporary folder (the image pinned by its
digest, the ``--input`` names, every file the workload writes to ``outputs/`` as an output, the
ARGS after ``--`` as its arguments, else the image's Cmd), offered to the provider (which must
accept requestors' images) and run like any spec.

Everything local is checked first (the spec, every input, the output folder); then the
provider's enclave is attested against the expected measurement (the spec's pin, or the
measurement of the spec's image) and the policy flags before any input is sealed to it; outputs
land in ``--out`` only after the signed receipt, the input manifest's digest and every output
verified, all together.

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
import shutil
import sys
import tempfile
from collections.abc import Sequence
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
from golem_graphene.protocol.spec import TaskSpec
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
  golem-graphene run --image docker-archive:images/gzip.tar --provider http://127.0.0.1:7465 \\
      --input notes.txt=notes.txt --out results -- \\
      sh -c 'gzip -9 -n -c inputs/notes.txt > outputs/notes.txt.gz'
"""


def _run_parser(base: type[argparse.ArgumentParser]) -> type[argparse.ArgumentParser]:
    """``run``'s parser (a subclass of the CLI's): the words after ``--`` are the workload's
    arguments (``--image``), kept apart from the options."""

    class RunParser(base):  # type: ignore[valid-type,misc]
        def parse_known_args(
            self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
        ) -> tuple[argparse.Namespace, list[str]]:
            words = list(args or ())
            rest: list[str] | None = None
            if "--" in words:
                cut = words.index("--")
                words, rest = words[:cut], words[cut + 1 :]
            parsed, extras = super().parse_known_args(words, namespace)
            parsed.workload_args = rest
            return parsed, extras

    return RunParser


def register(sub: Any) -> None:
    """Add the ``run`` command."""
    usual = sub._parser_class
    sub._parser_class = _run_parser(usual)
    try:
        p = sub.add_parser(
            "run",
            help="run a confidential task on a provider",
            description=__doc__,
            epilog=EXAMPLE,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    finally:
        sub._parser_class = usual
    p.add_argument("spec", metavar="SPEC", nargs="?", help="task spec folder or task.toml")
    p.add_argument(
        "--image",
        metavar="REF",
        help="instead of SPEC: run this container image (docker-archive:FILE, "
        "oci-archive:FILE, oci:DIR, optionally :TAG and @sha256:DIGEST) on a provider that "
        "accepts requestors' images; ARGS after -- are its arguments (else its Cmd)",
    )
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
    if (args.spec is None) == (args.image is None):
        raise UsageError("give a task spec (SPEC) or --image REF, exactly one of them")
    workload = getattr(args, "workload_args", None)
    if workload is not None and args.image is None:
        raise UsageError(
            "arguments after -- are for --image; with a spec, give them with --arg ARG"
        )
    policy = requestor_policy_from_args(args)
    deadlines = deadlines_from_args(args)
    inputs = _pairs(args.input, "--input")
    prestaged = _pairs(args.prestaged, "--prestaged")
    env = _pairs(args.env, "--env")
    if args.image is None:
        return _run_checked(args, policy, deadlines, inputs, prestaged, env, Path(args.spec))
    from golem_graphene.requestor.image_spec import write_image_spec

    # The spec lives in a private folder only while it runs; the folder is in the user's
    # cache (not /tmp, often memory) so the image is hard-linked rather than copied there.
    base = _cache_dir()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="run-image-", dir=base) as folder:
        spec_file = write_image_spec(
            args.image,
            Path(folder),
            inputs=sorted({*inputs, *prestaged}),
            args=workload,
        )
        return _run_checked(args, policy, deadlines, inputs, prestaged, env, spec_file, offer=True)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "golem-graphene" / "run-image"


def _run_checked(
    args: argparse.Namespace,
    policy: RequestorPolicy,
    deadlines: Deadlines,
    inputs: dict[str, str],
    prestaged: dict[str, str],
    env: dict[str, str],
    spec: Path,
    *,
    offer: bool = False,
) -> int:
    # Everything local before anything else: no identity is created and no provider contacted
    # for a command that cannot succeed.
    Requestor.check_local(spec, inputs, args.out, prestaged=prestaged)
    identity = load_identity(
        Path(args.identity) if args.identity else default_identity_path(), create=True
    )
    warn_opt_ins(policy)
    progress = Progress(args.provider)
    try:
        code, _ = settle(
            _run(args, spec, policy, deadlines, identity, inputs, prestaged, env, progress, offer),
            as_json=args.json,
            task_id=lambda: progress.task_id,
            on_failure=lambda: _kept_hint(progress.task_id),
        )
    finally:
        if offer:
            _keep_spec_of_record(progress.task_id, spec)
    return code


def _keep_spec_of_record(task_id: str | None, spec: Path) -> None:
    """A task kept for a later ``fetch`` needs its spec file, which lived in a temporary
    folder: keep a copy (content-addressed, small) and point the task's record at it."""
    from golem_graphene.requestor.record import TaskRecord

    if task_id is None or not record_path(task_id).exists():
        return
    # Named by the spec (content-addressed): the same name holds the same bytes.
    kept = default_records_dir().parent / "specs" / TaskSpec.from_path(spec).name / "task.toml"
    kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(spec, kept)
    path = record_path(task_id)
    TaskRecord.load(path).update(path, spec=str(kept.resolve()))


async def _run(
    args: argparse.Namespace,
    spec: Path,
    policy: RequestorPolicy,
    deadlines: Deadlines,
    identity: X25519Identity,
    inputs: dict[str, str],
    prestaged: dict[str, str],
    env: dict[str, str],
    progress: Progress,
    offer: bool,
) -> TaskResult:
    token = args.token or os.environ.get("GOLEM_GRAPHENE_TOKEN")
    async with Requestor(
        args.provider, identity=identity, token=token, policy=policy, deadlines=deadlines
    ) as requestor:
        if offer:
            digest = await requestor.offer(spec)
            sys.stderr.write(
                f"spec {TaskSpec.from_path(spec).name} (sha256 {digest[:16]}...) offered to "
                f"{args.provider}\n"
            )
        return await requestor.run(
            spec,
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
