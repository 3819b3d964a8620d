"""What ``run`` and ``fetch`` share: deadline flags, the identity, progress, the verdict, signals.

The verdict line (``OK: ...`` or ``FAIL: <code>: ...``) holds only our words, escaped; what the
provider said comes on the next line, escaped, bounded and marked as its words, so that no
provider text can draw a verdict. Progress goes to stderr: state changes always, bytes and
rates (per phase: the measurement, each upload, each download) only on a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from golem_graphene._cli import run_interruptible
from golem_graphene._internal.text import escape, provider_says, quoted
from golem_graphene.errors import Error, UsageError
from golem_graphene.protocol.messages import TaskEvent
from golem_graphene.requestor.deadlines import STEPS, Deadlines, parse_rate
from golem_graphene.requestor.outcomes import LocalProgress, TaskResult, TaskStepError, own_words
from golem_graphene.sealing.keys import X25519Identity, load_identities

__all__ = [
    "DEFAULT_IDENTITY",
    "Progress",
    "add_deadline_flags",
    "deadlines_from_args",
    "default_identity_path",
    "describe",
    "load_identity",
    "print_failure",
    "run_interruptible",
    "settle",
]

DEFAULT_IDENTITY = "identity.txt"
VERDICT_CHARS = 2000
"""Our own words on a verdict line are escaped too (they may quote a value the provider sent)."""


def add_deadline_flags(parser: Any) -> None:
    """``--timeout``, ``--deadline STEP=SECONDS``, ``--min-rate``, ``--rate-window``."""
    group = parser.add_argument_group("deadlines (a provider may stall or drip)")
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="deadline for the whole task (default: the wait deadline + 3600 s)",
    )
    group.add_argument(
        "--deadline",
        action="append",
        default=[],
        metavar="STEP=SECONDS",
        help=f"deadline of one step ({', '.join(STEPS)}, request); repeatable "
        "(defaults: create 60, attest 300, wait the spec's wall_seconds + 600, request 60; "
        "upload and fetch: only the minimum rate)",
    )
    group.add_argument(
        "--min-rate",
        metavar="RATE",
        help="minimum rate of every upload and download, e.g. 64K (default 64K bytes/s)",
    )
    group.add_argument(
        "--rate-window",
        metavar="SECONDS",
        type=float,
        help="the window the minimum rate is averaged over (default 30)",
    )


def deadlines_from_args(args: argparse.Namespace) -> Deadlines:
    """The deadlines the flags describe; a bad value is a :class:`UsageError` naming it."""
    values: dict[str, float | None] = {}
    for item in args.deadline:
        step, sep, seconds = item.partition("=")
        if not sep or step not in (*STEPS, "request"):
            raise UsageError(
                "--deadline takes STEP=SECONDS",
                expected=f"STEP one of {', '.join((*STEPS, 'request'))}",
                found=quoted(item, 60),
            )
        values[step] = _seconds(seconds, f"--deadline {step}")
    if args.timeout is not None:
        values["total"] = _seconds(str(args.timeout), "--timeout")
    if args.min_rate is not None:
        values["min_rate"] = parse_rate(args.min_rate)
    if args.rate_window is not None:
        values["window"] = _seconds(str(args.rate_window), "--rate-window")
    return Deadlines().with_steps(**values)


def _seconds(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} takes seconds", found=quoted(text, 40)) from None
    if not 0 < value <= 366 * 24 * 3600:  # also refuses nan and inf
        raise UsageError(f"{flag} takes positive seconds (at most a year)", found=text[:40])
    return value


# --- the identity -------------------------------------------------------------------------------


def default_identity_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "golem-graphene" / DEFAULT_IDENTITY


def load_identity(path: Path, *, create: bool) -> X25519Identity:
    """The age identity at ``path``; with ``create``, made (mode 0600) when absent, and its
    recipient printed. Raises :class:`UsageError` when it is unreadable or holds more than
    one identity, or is absent and ``create`` is false."""
    if path.exists():
        try:
            identities = load_identities(path)
        except UsageError:
            raise
        except Error as exc:
            raise UsageError(
                f"cannot use the identity file {str(path)!r}: {exc.describe()}"
            ) from exc
        if len(identities) != 1:
            raise UsageError(f"{path} must hold exactly one identity", found=len(identities))
        return identities[0]
    if not create:
        raise UsageError(f"no identity file at {str(path)!r}")
    identity = X25519Identity.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# public key: {identity.recipient().to_string()}\n{identity.to_string()}\n")
    sys.stderr.write(f"created identity {path} (public key {identity.recipient().to_string()})\n")
    return identity


# --- progress -----------------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class Progress:
    """Task states and the requestor's own phases on stderr; bytes and rates on a terminal.

    Every state is one of ours (validated by the event model); a provider's progress message
    is shown escaped, quoted and marked."""

    def __init__(self, provider: str) -> None:
        self.tty = sys.stderr.isatty()
        self.provider = provider
        self.started = time.monotonic()
        self.last_state: str | None = None
        self.task_id: str | None = None
        self._drawn = 0.0

    def event(self, event: TaskEvent) -> None:
        state = event.state.value
        elapsed = time.monotonic() - self.started
        if state != self.last_state:
            sys.stderr.write(f"[{elapsed:6.1f}s] {state}\n")
            self.last_state = state
        if self.tty and event.bytes_done is not None and event.message:
            sys.stderr.write(
                f"           the provider reports {quoted(event.message, 80)}: "
                f"{event.bytes_done} bytes\n"
            )

    def local(self, progress: LocalProgress) -> None:
        if progress.phase == "measure":
            sys.stderr.write(
                f"expected MRENCLAVE[{progress.name}] measured from the spec's image: "
                f"{progress.detail} ({progress.elapsed:.1f} s)\n"
            )
            return
        if progress.phase == "created":
            self.task_id = progress.name
            sys.stderr.write(f"task {progress.name} created on {escape(self.provider, 200)}\n")
            return
        if not self.tty:
            return
        now = time.monotonic()
        if not progress.finished and now - self._drawn < 0.1:
            return
        self._drawn = now
        verb = "uploaded" if progress.phase == "upload" else "downloaded"
        of = f" of {_mib(progress.total)}" if progress.total is not None else ""
        rate = progress.done / max(progress.elapsed, 1e-6)
        line = f"  {verb} {progress.name}: {_mib(progress.done)}{of} ({_mib(rate)}/s)"
        sys.stderr.write(f"\r{line}\x1b[K" + ("\n" if progress.finished else ""))
        sys.stderr.flush()


# --- the verdict --------------------------------------------------------------------------------


def print_failure(
    error: Error, *, as_json: bool, task_id: str | None = None, extra: dict[str, Any] | None = None
) -> int:
    """``FAIL: <code>: <our words>`` on stderr, the provider's words (if any) on the next
    line; with ``as_json`` one object on stdout (``verdict``, ``step``, ``code``, ``message``,
    ``task_id``, ``provider_message``). Returns the exit status, 1."""
    step = error.step if isinstance(error, TaskStepError) else None
    provider_text: str | None = getattr(error, "provider_text", None)
    sys.stderr.write(f"FAIL: {error.code}: {escape(own_words(error), VERDICT_CHARS)}\n")
    if provider_text:
        sys.stderr.write(f"  {provider_says(provider_text)}\n")
    if as_json:
        out: dict[str, Any] = {
            "verdict": "fail",
            "step": step,
            "code": error.code,
            "message": own_words(error),
            "task_id": task_id,
            "provider_message": provider_text[:4096] if provider_text else None,
            **(extra or {}),
        }
        sys.stdout.write(json.dumps(out) + "\n")
    return 1


def describe(result: TaskResult) -> dict[str, Any]:
    """The JSON summary of a verified task."""
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


def settle(
    main: Coroutine[Any, Any, TaskResult],
    *,
    as_json: bool,
    task_id: Callable[[], str | None],
    on_failure: Callable[[], None] = lambda: None,
) -> tuple[int, TaskResult | None]:
    """Run ``main`` (:func:`run_interruptible`) and print the verdict; returns the exit status
    (0: verified and the workload exited 0; 1: a check failed or the workload did not exit 0)
    and the result. A local mistake (step ``prepare``) is raised as the :class:`UsageError`
    it is; ``on_failure`` runs after a failure's report, or on an interruption."""
    try:
        result = run_interruptible(main)
    except TaskStepError as exc:
        if exc.step == "prepare" and isinstance(exc.cause, UsageError):
            raise exc.cause from None
        code = print_failure(exc, as_json=as_json, task_id=task_id())
        on_failure()
        return code, None
    except Error as exc:
        code = print_failure(exc, as_json=as_json, task_id=task_id())
        on_failure()
        return code, None
    except KeyboardInterrupt as interrupt:
        if as_json:
            interrupted = {
                "verdict": "fail",
                "step": None,
                "code": "interrupted",
                "message": "interrupted by a signal; everything not verified was removed",
                "task_id": task_id(),
                "provider_message": None,
            }
            sys.stdout.write(json.dumps(interrupted) + "\n")
            # One JSON object on stdout: the dispatcher must not add its own.
            interrupt.reported = True  # type: ignore[attr-defined]
        on_failure()
        raise

    summary = describe(result)
    sys.stderr.write(
        f"OK: task {result.task_id} verified (exit status {result.exit_status}"
        f"{', SIMULATED' if result.verified.simulated else ''})\n"
    )
    for name, path in summary["outputs"].items():
        sys.stderr.write(f"  {name}: {path}\n")
    sys.stderr.write(f"  receipt: {result.receipt_path}\n")
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    return (0 if result.exit_status == 0 else 1), result
