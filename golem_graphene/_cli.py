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
    "golem_graphene._commands.fetch",
    "golem_graphene._commands.demo",
    "golem_graphene._commands.manifest",
    "golem_graphene._commands.verify_receipt",
    "golem_graphene._commands.keygen",
    "golem_graphene._commands.seal",
    "golem_graphene._commands.open",
    "golem_graphene._commands.runtime",
)

# Command name and one-line help per module, so that a run imports only the module of the
# command it runs (each pulls in heavy libraries); ``--help`` lists them all from here.
COMMAND_SUMMARIES: dict[str, tuple[str, str]] = {
    "golem_graphene._commands.verify_quote": (
        "verify-quote",
        "verify an SGX DCAP quote with its collateral (or a legacy IAS report)",
    ),
    "golem_graphene._commands.build": ("build", "build the enclave image of a task spec"),
    "golem_graphene._commands.provider": ("provider", "run a provider"),
    "golem_graphene._commands.run": ("run", "run a confidential task on a provider"),
    "golem_graphene._commands.fetch": (
        "fetch",
        "fetch a task's outputs later, with the same checks as run",
    ),
    "golem_graphene._commands.demo": (
        "demo",
        "run a confidential task end to end on a local sim provider",
    ),
    "golem_graphene._commands.manifest": ("manifest", "render, check and expand Gramine manifests"),
    "golem_graphene._commands.verify_receipt": (
        "verify-receipt",
        "verify a receipt bundle offline: quote, binding, signature, outputs",
    ),
    "golem_graphene._commands.keygen": ("keygen", "generate an age X25519 identity"),
    "golem_graphene._commands.seal": ("seal", "encrypt a file to age recipients"),
    "golem_graphene._commands.open": ("open", "decrypt an age file with identities"),
    "golem_graphene._commands.runtime": ("runtime", "the Golem ExeUnit runtime gramine-sgx"),
}

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``selected``, only that command's module is imported (others are stubs)."""
    parser = _Parser(
        prog="golem-graphene",
        description="Confidential tasks in SGX enclaves under Gramine: verify quotes, seal "
        "files, run tasks on providers, serve as a provider.",
    )
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
    for module in COMMAND_MODULES:
        name, summary = COMMAND_SUMMARIES.get(module, ("", ""))
        if selected is None or not name or name == selected:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _selected_command(argv: Sequence[str]) -> str | None:
    """The command word in ``argv`` when it names a known command, else None (import all)."""
    names = {name for name, _ in COMMAND_SUMMARIES.values()}
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in ("--log-format", "--log-level"):
            skip = True
            continue
        if word.startswith("-"):
            continue
        return word if word in names else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_selected_command(words))
    args = parser.parse_args(words)
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
