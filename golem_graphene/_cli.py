"""The ``golem-graphene`` command line: one parser, one module per command under ``_commands``.

One convention for every command (docs/design.md, the CLI):

- exit 0 on success; 1 when a check or an operation failed (stderr ``FAIL: <check>: ...``);
  2 for usage and configuration mistakes (stderr ``error: ...``, before any work is done);
  70 for internal errors (a bug); 128 + N when signal N ended the command (130 for SIGINT,
  143 for SIGTERM, 129 for SIGHUP);
- with ``--json``, stdout carries exactly one JSON object whatever happens, usage mistakes
  included: ``{"verdict": "ok" | "fail" | "error", "error": {"code", "message"}, ...}``;
- SIGINT, SIGTERM and SIGHUP take one path (:class:`Interrupted`, a ``KeyboardInterrupt``;
  in the asynchronous commands a cancellation of the main task first), so every command's
  cleanup (temporary files, staging folders, child processes) runs for all three.

A run imports only the module of its command: ``--version`` and ``--help`` import no command at
all, and nothing here imports a third-party library.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from golem_graphene import __version__

if TYPE_CHECKING:
    from golem_graphene.errors import Error

T = TypeVar("T")

# Each module exposes ``register(subparsers)``; the parser it adds sets ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "golem_graphene._commands.verify_quote",
    "golem_graphene._commands.build",
    "golem_graphene._commands.measure",
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
    "golem_graphene._commands.completion",
)

# Command name and one-line help per module, so that a run imports only the module of the
# command it runs (each pulls in heavy libraries); ``--help`` lists them all from here.
COMMAND_SUMMARIES: dict[str, tuple[str, str]] = {
    "golem_graphene._commands.verify_quote": (
        "verify-quote",
        "verify an SGX DCAP quote with its collateral (or a legacy IAS report)",
    ),
    "golem_graphene._commands.build": ("build", "build the enclave image of a task spec"),
    "golem_graphene._commands.measure": (
        "measure",
        "print a container image's expected MRENCLAVE per runner, offline",
    ),
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
    "golem_graphene._commands.completion": (
        "completion",
        "print a shell completion script (bash or zsh)",
    ),
}

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_SIGINT = 130

PROG = "golem-graphene"
EPILOG = """\
exit status: 0 success, 1 a check or operation failed (FAIL: <check>: ...), 2 usage or
configuration mistake (error: ...), 70 internal error, 128+N ended by signal N.

example:
  golem-graphene keygen -o me.key
  golem-graphene seal -R <(golem-graphene keygen -y me.key) -o data.csv.age data.csv
"""

_GLOBAL_FLAGS_WITH_VALUE = ("--log-format", "--log-level")


class UsageMistake(Exception):
    """An argparse error: the message and the parser (for its usage line) that refused."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message)
        self.message = message
        self.parser = parser


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where SIGINT raises KeyboardInterrupt (``signum`` says which)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _log_level(text: str) -> str:
    from golem_graphene._logging import parse_log_level

    try:
        return parse_log_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_global_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--log-format`` and ``--log-level``, before or after the command words."""
    # After a command word they are accepted but not repeated in every command's help.
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--log-format",
        choices=("console", "json"),
        default=default,
        help="format of log lines on stderr (default: console); before or after the command"
        if top
        else argparse.SUPPRESS,
    )
    parser.add_argument(
        "--log-level",
        type=_log_level,
        metavar="LEVEL",
        default=default,
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default: WARNING; INFO for provider "
        "serve); before or after the command"
        if top
        else argparse.SUPPRESS,
    )


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples; wraps option help at 100 columns.

    Descriptions are often a module's docstring: their reStructuredText markup is shown as
    plain text (``x`` and `x` as 'x', :mod:`a.b` as a.b, a literal block's ``::`` as ``:``).
    """

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))


def plain_text(text: str) -> str:
    """``text`` without reStructuredText markup (see :class:`HelpFormatter`)."""
    import re

    text = re.sub(r":[a-z]+:`~([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r":[a-z]+:`([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"'\1'", text)
    text = re.sub(r"`([^`]+)`", r"'\1'", text)
    text = re.sub(r"::$", ":", text, flags=re.MULTILINE)
    return re.sub(r"^\.\. [a-z-]+::.*$\n?", "", text, flags=re.MULTILINE)


class Parser(argparse.ArgumentParser):
    """Reports mistakes as :class:`UsageMistake` (printed by :func:`main` in the one format)
    and accepts the global flags after any command word too."""

    def __init__(self, *args: Any, top_level: bool = False, **kwargs: Any) -> None:
        # One look for every command, whatever formatter its module asked for.
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)
        if not top_level:
            _add_global_flags(self, top=False)

        self._top_level = top_level

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if not hasattr(parsed, "command_prog"):  # the innermost command parses first
            parsed.command_prog = self.prog
        if extras and not self._top_level:
            # Every word after a command word is this command's: name it in the mistake,
            # with this command's usage, not the top level's.
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        raise UsageMistake(message, self)


def build_parser(selected: str | None = None, *, everything: bool = False) -> Parser:
    """The parser. Only the module of the ``selected`` command is imported (the others are
    listed by name); ``everything`` imports all of them (shell completion)."""
    parser = Parser(
        prog=PROG,
        description="Confidential tasks in SGX enclaves under Gramine: verify quotes, seal "
        "files, run tasks on providers, serve as a provider.",
        epilog=EPILOG,
        top_level=True,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_global_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in COMMAND_MODULES:
        name, summary = COMMAND_SUMMARIES.get(module, ("", ""))
        if everything or not name or name == selected:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _selected_command(argv: Sequence[str]) -> str | None:
    """The command word in ``argv`` when it names a known command, else None."""
    names = {name for name, _ in COMMAND_SUMMARIES.values()}
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in _GLOBAL_FLAGS_WITH_VALUE:
            skip = True
            continue
        if word.startswith("-"):
            continue
        return word if word in names else None
    return None


def _wants_json(argv: Sequence[str]) -> bool:
    for word in argv:
        if word == "--":
            return False
        if word == "--json":
            return True
    return False


# --- signals: the one way every command is interrupted ----------------------------------------
#
# SIGINT, SIGTERM and SIGHUP all go through :func:`_on_signal`. In a synchronous command it
# raises :class:`Interrupted` (a KeyboardInterrupt) where the program is, so every ``with`` and
# ``finally`` on the way out runs (temporary files, staging folders, child processes). In an
# asynchronous one (:func:`run_interruptible`) it cancels the main task instead, as asyncio does
# for SIGINT, so the coroutines' own cleanup runs in order; the same :class:`Interrupted` is
# raised once the loop has finished. :func:`main` reports it: ``interrupted (SIGTERM)``, exit
# 128 + N.

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_cancel_main_task: list[Callable[[int], None]] = []
"""While :func:`run_interruptible` runs: the function that cancels its main task."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # Once: a second SIGTERM or SIGHUP during the cleanup must not interrupt the cleanup itself
    # (a second SIGINT does, as with Python's and asyncio's own handling of SIGINT).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is _on_signal:
            signal.signal(sig, signal.SIG_IGN)
    if _cancel_main_task:
        _cancel_main_task.pop()(signum)
        return
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGINT, SIGTERM and SIGHUP interrupt the command the one way (:func:`_on_signal`).

    A signal the parent set to be ignored (``nohup``) stays ignored, and a SIGINT handler that
    is not Python's default (an embedding program's) is left alone.
    """
    for sig in _SIGNALS:
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN or current is _on_signal:
            continue
        if sig == signal.SIGINT and current is not signal.default_int_handler:
            continue
        signal.signal(sig, _on_signal)


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, interrupted like every command: SIGINT, SIGTERM or SIGHUP cancel
    the main task, so every cleanup runs (staging folders removed, the task cancelled on the
    provider or kept for ``fetch``), and then :class:`Interrupted` is raised with the signal.

    The handlers are installed for the call (and restored after) when :func:`main` has not.
    """
    import asyncio

    received: list[int] = []

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def cancel(signum: int) -> None:  # in the signal handler, on the loop's thread
            received.append(signum)
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)  # wake the loop if it waits in select()

        _cancel_main_task[:] = [cancel]
        try:
            return await main
        finally:
            _cancel_main_task.clear()

    saved = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    install_signal_handlers()
    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        _cancel_main_task.clear()
        for sig, handler in saved.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)


def emit_json(obj: dict[str, Any]) -> None:
    """One JSON object on stdout (the ``--json`` contract)."""
    import json

    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _usage(message: str, *, command: str | None, as_json: bool, usage: str = "") -> int:
    sys.stderr.write(f"error: {message}\n")
    if usage:
        sys.stderr.write(usage)
    where = f"{PROG} {command}" if command else PROG
    sys.stderr.write(f"(see '{where} --help')\n")
    if as_json:
        emit_json({"verdict": "error", "error": {"code": "usage", "message": message}})
    return EXIT_USAGE


def _fail(exc: Error, as_json: bool) -> int:
    sys.stderr.write(f"FAIL: {exc.code}: {exc.describe()}\n")
    if as_json:
        emit_json({"verdict": "fail", "error": exc.to_dict()})
    return EXIT_FAIL


def _command_words(parser: argparse.ArgumentParser) -> str | None:
    words = parser.prog.split()[1:]
    return " ".join(words) or None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    install_signal_handlers()
    as_json = _wants_json(words)
    selected = _selected_command(words)
    try:
        return _main(words, selected, as_json)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        sys.stderr.write(f"interrupted ({name})\n")
        if as_json and not getattr(exc, "reported", False):  # a command may have said it
            emit_json({"verdict": "error", "error": {"code": "interrupted", "message": name}})

        return 128 + signum


def _main(words: list[str], selected: str | None, as_json: bool) -> int:
    from golem_graphene.errors import ConfigError, Error, ImageError, UsageError

    try:
        parser = build_parser(selected)
        args = parser.parse_args(words)
    except UsageMistake as exc:
        return _usage(
            exc.message,
            command=_command_words(exc.parser),
            as_json=as_json,
            usage=exc.parser.format_usage(),
        )
    as_json = bool(getattr(args, "json", False)) or as_json
    level = args.log_level or getattr(args, "default_log_level", "WARNING")
    from golem_graphene._logging import configure_logging

    configure_logging(args.log_format or "console", level)
    try:
        code: int = args.func(args)
    except ImageError as exc:  # a bad image is a failed check, not a usage mistake
        return _fail(exc, as_json)
    except (UsageError, ConfigError) as exc:
        command = " ".join(str(getattr(args, "command_prog", PROG)).split()[1:]) or None
        return _usage(exc.describe(), command=command, as_json=as_json)
    except Error as exc:
        return _fail(exc, as_json)
    except KeyboardInterrupt:
        raise
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as a tool killed by SIGPIPE would.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:  # the environment refused (disk full, permissions): not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        message = f"{where}{exc.strerror or exc}"
        sys.stderr.write(f"FAIL: io: {message}\n")
        if as_json:
            emit_json({"verdict": "fail", "error": {"code": "io", "message": message}})
        return EXIT_FAIL
    except Exception as exc:  # a bug: say so plainly instead of dumping a traceback on users
        if os.environ.get("GOLEM_GRAPHENE_DEBUG"):
            raise
        sys.stderr.write(
            f"{PROG}: internal error: {type(exc).__name__}: {exc}\n"
            "(please report it; set GOLEM_GRAPHENE_DEBUG=1 for the traceback)\n"
        )
        if as_json:
            emit_json(
                {
                    "verdict": "error",
                    "error": {"code": "internal", "message": f"{type(exc).__name__}: {exc}"},
                }
            )
        return EXIT_INTERNAL
    return code
