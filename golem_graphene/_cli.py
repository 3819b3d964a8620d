"""The ``golem-graphene`` command line: one parser, one module per command under ``_commands``.

Human output goes to stderr with an ``OK``/``FAIL`` verdict; ``--json`` output goes to stdout.
Exit status: 0 success, 1 a check or operation failed, 2 usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from golem_graphene import __version__
from golem_graphene._logging import configure_logging
from golem_graphene.errors import Error, UsageError

# Each module exposes ``register(subparsers)``; the parser it adds sets ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "golem_graphene._commands.verify_quote",
    "golem_graphene._commands.build",
    "golem_graphene._commands.provider",
    "golem_graphene._commands.run",
    "golem_graphene._commands.demo",
    "golem_graphene._commands.manifest",
    "golem_graphene._commands.verify_receipt",
    "golem_graphene._commands.keygen",
    "golem_graphene._commands.seal",
    "golem_graphene._commands.open",
    "golem_graphene._commands.runtime",
)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every command registered."""
    parser = _Parser(prog="golem-graphene", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"golem-graphene {__version__}")
    parser.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="format of log lines on stderr (default: console)",
    )
    parser.add_argument("--log-level", default="WARNING", help="log level (default: WARNING)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        sys.stderr.write(f"golem-graphene: error: {exc.describe()}\n")
        return EXIT_USAGE
    except Error as exc:
        sys.stderr.write(f"FAIL: {exc.code}: {exc.describe()}\n")
        return EXIT_FAIL
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as exc:  # a bug: say so plainly instead of dumping a traceback on users
        if os.environ.get("GOLEM_GRAPHENE_DEBUG"):
            raise
        sys.stderr.write(
            f"golem-graphene: internal error: {type(exc).__name__}: {exc}\n"
            "(please report it; set GOLEM_GRAPHENE_DEBUG=1 for the traceback)\n"
        )
        return EXIT_INTERNAL
    return code
