"""golem-graphene provider serve: run the provider's HTTP service until SIGINT, SIGTERM or SIGHUP.

Settings come from --config FILE (TOML, see the README's "Operate a provider"); the flags below
override it. Before it touches anything the provider checks its settings, locks its data folder
(a second provider on the same folder is refused), checks that its runner works on this host and
binds its address (a port in use is refused); only then does it recover the tasks of a previous
run and serve. Log lines go to stderr in the chosen --log-format (INFO level by default).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXAMPLE = """\
example:
  golem-graphene provider serve --config provider.toml
  golem-graphene provider serve --open --port 7465 --data-dir ./provider-data   # local use
  golem-graphene provider serve --open --accept-images   # also run requestors' own images
"""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number (0 to 65535; 0 picks a free port)"
        )
    return value


def _address(text: str) -> str:
    from golem_graphene.provider.config import check_bind_address

    try:
        check_bind_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is {exc}") from None
    return text


def register(sub: Any) -> None:
    """Add the ``provider`` command group."""
    p = sub.add_parser(
        "provider",
        help="run a provider",
        description="Run a provider: serve confidential tasks to requestors over HTTP.",
        epilog=EXAMPLE,
    )
    group = p.add_subparsers(dest="provider_command", metavar="COMMAND")
    group.required = True
    serve = group.add_parser(
        "serve",
        help="serve the provider HTTP API",
        description=__doc__ + "\nOnce listening, one JSON line on stdout gives the bound address "
        '({"event": "listening", "url": ..., "port": ...}; with --port 0 the port the system '
        "picked), and --ready-file writes it to a file.",
        epilog=EXAMPLE,
    )
    serve.add_argument("--config", metavar="FILE", help="provider config (TOML)")
    serve.add_argument("--bind", type=_address, help="IP address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port (default 7465; 0 picks a free one)")
    serve.add_argument("--data-dir", help="where tasks, images and the sim platform live")
    serve.add_argument("--specs-dir", help="folder of offered task specs")
    serve.add_argument(
        "--ready-file",
        metavar="FILE",
        help="once listening, write the bound address as JSON to FILE (also printed as one "
        "JSON line on stdout; removed at shutdown)",
    )
    serve.add_argument(
        "--open",
        action="store_true",
        help="INSECURE: accept requests without a requestor token (local use)",
    )
    serve.add_argument(
        "--accept-images",
        action="store_true",
        help="let requestors upload their own task specs with container images "
        "(PUT /v1/specs/NAME; images.accept_from_requestors): the provider then builds and "
        "runs their code, in its sandbox or enclave",
    )
    serve.set_defaults(func=run_serve, default_log_level="INFO")


def run_serve(args: argparse.Namespace) -> int:
    """Serve until a signal; returns the exit status."""
    import asyncio

    import structlog

    from golem_graphene.errors import UsageError
    from golem_graphene.provider.config import ProviderConfig

    if args.config:
        config = ProviderConfig.from_path(Path(args.config))
    elif args.open:
        config = ProviderConfig.from_mapping({"auth": {"open": True}})
    else:
        raise UsageError("give --config FILE (with auth.tokens), or --open for local use")
    updates: dict[str, Any] = {}
    for key in ("bind", "port"):
        if getattr(args, key) is not None:
            updates[key] = getattr(args, key)
    if args.data_dir:
        updates["data_dir"] = Path(args.data_dir)
    if args.specs_dir:
        updates["specs_dir"] = Path(args.specs_dir)
    if args.open and args.config:
        updates["auth"] = {"open": True, "tokens": ()}
    if args.accept_images:
        updates["images"] = {**config.images.model_dump(), "accept_from_requestors": True}
    if updates:
        config = config.with_overrides(updates, what="provider serve")
    if config.auth.open:
        structlog.get_logger(__name__).warning(
            "open mode: anyone who reaches this port can create tasks", bind=config.bind
        )
    if config.images.accept_from_requestors:
        structlog.get_logger(__name__).warning(
            "accepting images from requestors: this provider builds and runs requestor-supplied "
            "code (in its sandbox or enclave)",
            max_package_bytes=config.images.max_package_bytes,
            max_requestor_specs=config.images.max_requestor_specs,
        )
    from golem_graphene.provider.server import serve_forever

    ready = Path(args.ready_file) if args.ready_file else None
    if ready is not None and not ready.parent.is_dir():
        raise UsageError(f"--ready-file: the folder {str(ready.parent)!r} does not exist")
    asyncio.run(serve_forever(config, ready_file=ready))
    return 0
