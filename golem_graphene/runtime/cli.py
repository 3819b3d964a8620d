"""The ExeUnit runtime command line, as yagna's supervisor invokes it.

``<runtime> [--workdir W] [--task-package P] [--cpu-cores N] [--mem-gib G] [--storage-gib S]
[runtime flags] COMMAND``, with ``COMMAND`` one of (research/golem.md section 2.6):

- ``test``: self-check; exit status 0 when the configured runner can run here (a JSON report on
  stdout names every runner and why it is or is not usable);
- ``offer-template``: ``{"properties": {...}, "constraints": "(golem.srv.comp.task_package=*)"}``
  on stdout;
- ``deploy``: validate the task package, build the enclave image; ``DeployResult`` on stdout;
- ``start``: the blocking-mode protobuf server on stdin/stdout for the activity's life;
- ``run --entrypoint E ARGS...``: one protocol step in process-per-command mode;
- ``install --plugins-dir DIR``: write the descriptor and a wrapper into ya-provider's plugins.

Runtime flags (ours; put them in the wrapper that ``install`` writes): ``--runner``,
``--data-dir``, ``--pcs-url``, ``--allow-insecure gramine-direct``, ``--allow-network``.
Flags the supervisor may add before a command (``--volume-override``, ``--hostname``,
``--vpn-endpoint``, ``--inet-endpoint``) are accepted and ignored: enclaves get no network.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from golem_graphene.errors import Error, UsageError
from golem_graphene.protocol.names import RUNNER_NAMES
from golem_graphene.runtime.settings import ENTRYPOINTS, RuntimeSettings

__all__ = ["add_arguments", "dispatch", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the runtime's global flags and commands to ``parser``."""
    g = parser.add_argument_group("ExeUnit flags")
    g.add_argument("--workdir", "-w", type=Path, help="the activity's work directory")
    g.add_argument("--task-package", "-t", type=Path, help="the downloaded task package")
    g.add_argument("--cpu-cores", type=int, help="cores granted (runtime-managed hardware)")
    g.add_argument("--mem-gib", type=float, help="memory granted, GiB")
    g.add_argument("--storage-gib", type=float, help="storage granted, GiB")
    for ignored in ("--volume-override", "--hostname", "--vpn-endpoint", "--inet-endpoint"):
        g.add_argument(ignored, help=argparse.SUPPRESS)
    _add_runtime_flags(parser.add_argument_group("runtime flags"), after_command=False)
    sub = parser.add_subparsers(dest="runtime_command", metavar="COMMAND")
    sub.required = True
    # The runtime flags are accepted after these commands too (``runtime test --runner sim``);
    # the protocol commands take everything after them as their own arguments.
    p = sub.add_parser(
        "test",
        help="self-check: which runners are usable here",
        description="Check every runner on this host; exit status 0 when the configured runner "
        "(--runner) can run here. A JSON report goes to stdout.",
        epilog="example:\n  golem-graphene runtime test --runner sim\n",
    )
    _add_runtime_flags(p.add_argument_group("runtime flags"), after_command=True)
    p = sub.add_parser(
        "offer-template",
        help="print the offer template JSON",
        description="Print the offer template (properties and constraints) for ya-provider. "
        "Refused when the configured runner cannot run on this host.",
        epilog="example:\n  golem-graphene runtime offer-template --runner sim --data-dir rt\n",
    )
    _add_runtime_flags(p.add_argument_group("runtime flags"), after_command=True)
    p = sub.add_parser(
        "deploy",
        help="validate the task package and prepare the image",
        description="Validate the activity's task package and build its enclave image; a "
        "DeployResult JSON goes to stdout. The ExeUnit supervisor runs this.",
        epilog=_SUPERVISED.format("deploy"),
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p = sub.add_parser(
        "start",
        help="serve the blocking-mode protocol on stdin/stdout",
        description="Serve ya-runtime-api's protobuf protocol on stdin/stdout for the "
        "activity's life. The ExeUnit supervisor runs this.",
        epilog=_SUPERVISED.format("start"),
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p = sub.add_parser(
        "run",
        help="run one protocol step (process-per-command mode)",
        description="Run one protocol step of the task (process-per-command mode).",
        epilog=_SUPERVISED.format("run --entrypoint status"),
    )
    p.add_argument("--entrypoint", required=True, help=" | ".join(ENTRYPOINTS))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the entry point's arguments")
    p = sub.add_parser(
        "install",
        help="install the descriptor into ya-provider's plugins",
        description="Write the runtime descriptor and a wrapper script (with this host's "
        "runtime flags baked in) into ya-provider's plugins folder. Existing files that differ "
        "are kept unless --force.",
        epilog="example:\n  golem-graphene runtime install --runner gramine-sgx "
        "--plugins-dir ~/.local/lib/yagna/plugins\n",
    )
    p.add_argument("--plugins-dir", type=Path, required=True, help="ya-provider's plugins folder")
    p.add_argument("--supervisor-path", default="exe-unit", help="the ExeUnit supervisor binary")
    p.add_argument("--force", action="store_true", help="replace files that differ")
    _add_runtime_flags(p.add_argument_group("runtime flags"), after_command=True)
    # Internal: the process-per-command mode's host (listed by no help).
    sub.add_parser(
        "session-host",
        description="Internal: the host process of the process-per-command mode.",
        epilog=_SUPERVISED.format("session-host"),
    )


_SUPERVISED = """\
example (as the ExeUnit supervisor runs it):
  golem-graphene runtime --workdir W --task-package P --runner sim {}
"""


def _add_runtime_flags(group: Any, *, after_command: bool) -> None:
    """``--runner``, ``--data-dir``, ... Before the command they carry the defaults; after it
    they override only when given (argparse copies a subcommand's values over the parent's)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if after_command else value

    group.add_argument(
        "--runner",
        choices=RUNNER_NAMES,
        default=default("gramine-sgx"),
        help="enclave runner (default gramine-sgx; sim gives NO SGX protection)",
    )
    group.add_argument(
        "--data-dir", type=Path, default=default(None), help="images, keys and simulator state"
    )
    group.add_argument(
        "--pcs-url", default=default(None), help="PCCS/PCS for collateral (gramine-sgx)"
    )
    group.add_argument(
        "--allow-insecure",
        action="append",
        choices=["gramine-direct"],
        default=default([]),
        help="allow an unprotected runner by name",
    )
    group.add_argument(
        "--allow-network",
        action="store_true",
        default=default(False),
        help="run specs that ask for network",
    )
    if not after_command:
        group.add_argument("--counter-interval", type=float, default=5.0, help=argparse.SUPPRESS)


def _settings(args: argparse.Namespace) -> RuntimeSettings:
    return RuntimeSettings(
        runner=args.runner,
        data_dir=args.data_dir.resolve() if args.data_dir else Path(),
        pcs_url=args.pcs_url,
        allow_insecure=tuple(args.allow_insecure),
        allow_network=args.allow_network,
        counter_interval=args.counter_interval,
    )


def _workdir(args: argparse.Namespace) -> Path:
    if args.workdir is None:
        raise UsageError(f"{args.runtime_command} needs --workdir")
    path: Path = args.workdir.resolve()
    return path


def _out(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed runtime command; returns the exit status."""
    settings = _settings(args)
    command = args.runtime_command
    if command == "test":
        from golem_graphene.runtime.offer import self_test

        ok, report = self_test(settings)
        _out(report)
        verdict = report["runners"][settings.runner]["detail"]
        _say(f"{'OK' if ok else 'FAIL'}: {settings.runner}: {verdict}")
        return 0 if ok else 1
    if command == "offer-template":
        from golem_graphene.runtime.offer import offer_template

        _out(offer_template(settings))  # RunnerError (exit 1) on a host that cannot run it
        return 0
    if command == "deploy":
        from golem_graphene.runtime.deploy import deploy, deploy_result

        try:
            deployment = deploy(_workdir(args), args.task_package, settings, mem_gib=args.mem_gib)
        except Error as exc:
            _out(deploy_result(exc))
            _say(f"FAIL: deploy: {exc.code}: {exc.describe()}")
            return 1
        _out(deploy_result(deployment))
        return 0
    if command == "start":
        return _start(args, settings)
    if command in ("run", "session-host"):
        return _run(args, settings)
    if command == "install":
        from golem_graphene.runtime.descriptor import install

        target, wrapper = install(
            args.plugins_dir.resolve(),
            settings,
            supervisor_path=args.supervisor_path,
            force=args.force,
        )
        _say(f"OK: wrote {target} and {wrapper}")
        _say("   activate it in ya-provider's presets (see docs/golem.md)")
        return 0
    raise UsageError(f"unknown runtime command {command!r}")


def _start(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from golem_graphene.runtime.deploy import Deployment
    from golem_graphene.runtime.server import serve_stdio
    from golem_graphene.runtime.session import ActivitySession

    workdir = _workdir(args)
    Deployment.load(workdir)
    session = ActivitySession(workdir, settings)
    return asyncio.run(serve_stdio(session, settings.counter_interval))


def _run(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from golem_graphene.runtime.host import run_via_host, serve_host

    workdir = _workdir(args)
    if args.runtime_command == "session-host":
        return asyncio.run(serve_host(workdir, settings))
    step_args = list(args.args)
    if step_args[:1] == ["--"]:
        step_args = step_args[1:]
    result = run_via_host(workdir, settings, args.entrypoint, step_args)
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    return result.code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m golem_graphene.runtime``: the runtime as ya-provider's plugin runs it."""
    import os

    from golem_graphene._logging import configure_logging

    parser = argparse.ArgumentParser(
        prog="ya-runtime-gramine-sgx", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging("console", os.environ.get("GOLEM_GRAPHENE_LOG_LEVEL", "INFO"))
    try:
        return dispatch(args)
    except UsageError as exc:
        _say(f"ya-runtime-gramine-sgx: error: {exc.describe()}")
        return 2
    except Error as exc:
        _say(f"FAIL: {exc.code}: {exc.describe()}")
        return 1
