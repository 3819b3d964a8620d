"""``golem-graphene provider serve``: run the provider's HTTP service."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from golem_graphene.errors import UsageError
from golem_graphene.provider.config import ProviderConfig


def register(sub: Any) -> None:
    """Add the ``provider`` command group."""
    p = sub.add_parser("provider", help="run a provider")
    group = p.add_subparsers(dest="provider_command", metavar="COMMAND")
    group.required = True
    serve = group.add_parser(
        "serve",
        help="serve the provider HTTP API",
        description="Serve the provider API until SIGINT/SIGTERM. Once listening, one JSON "
        'line on stdout gives the bound address ({"event": "listening", "url": ..., "port": '
        "...}; with --port 0 the port the system picked), and --ready-file writes it to a file.",
    )
    serve.add_argument("--config", metavar="FILE", help="provider config (TOML)")
    serve.add_argument("--bind", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 7465; 0 picks a free one)")
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
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    if args.config:
        config = ProviderConfig.from_path(Path(args.config))
    elif args.open:
        config = ProviderConfig.model_validate({"auth": {"open": True}})
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
        updates["auth"] = config.auth.model_copy(update={"open": True, "tokens": ()})
    config = config.model_copy(update=updates)
    if config.auth.open:
        import sys

        sys.stderr.write("WARNING: open mode: anyone who reaches this port can create tasks\n")
    from golem_graphene.provider.server import serve_forever

    ready = Path(args.ready_file) if args.ready_file else None
    if ready is not None and not ready.parent.is_dir():
        raise UsageError(f"--ready-file: the folder {str(ready.parent)!r} does not exist")
    asyncio.run(serve_forever(config, ready_file=ready))
    return 0
