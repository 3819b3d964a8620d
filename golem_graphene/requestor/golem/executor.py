"""The ExeScript executor interface: what the Golem channel needs from an activity.

An ExeScript batch here is a list of three kinds of command, the ones a yapapi script makes:
:class:`Run` (``script.run(entry_point, *args)``), :class:`SendFile`
(``script.upload_file(src, dst)``) and :class:`DownloadFile` (``script.download_file(src,
dst)``). An executor runs them in order and stops at the first failure, as the ExeUnit does;
the results list then ends with the failed command.

Implementations: :class:`~golem_graphene.requestor.golem.work.WorkContextExecutor` (a yapapi
``WorkContext``, through the worker's ``yield script``) and, in the tests, the supervisor
simulator that drives the real runtime process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["Command", "CommandResult", "DownloadFile", "ExeScriptExecutor", "Run", "SendFile"]


@dataclass(frozen=True)
class Run:
    """ExeScript ``run``: an entry point of the runtime and its arguments."""

    entrypoint: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class SendFile:
    """ExeScript ``transfer`` from the requestor's ``src`` to the container path ``dst``."""

    src: Path
    dst: str


@dataclass(frozen=True)
class DownloadFile:
    """ExeScript ``transfer`` from the container path ``src`` to the requestor's ``dst``."""

    src: str
    dst: Path


Command = Run | SendFile | DownloadFile


@dataclass(frozen=True)
class CommandResult:
    """How one command ended: ``ok``, and for ``run`` its stdout/stderr; ``message`` on failure."""

    command: Command
    ok: bool
    stdout: str = ""
    stderr: str = ""
    message: str = ""


class ExeScriptExecutor(Protocol):
    """Runs ExeScript batches on one activity."""

    async def execute(self, commands: Sequence[Command]) -> list[CommandResult]:
        """Run ``commands`` in order; stop after the first that fails (it ends the list).

        Raises :class:`~golem_graphene.requestor.channel.ChannelError` when the batch could not
        be sent at all (the activity is gone, the worker has ended).
        """
        ...
