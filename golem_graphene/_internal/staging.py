"""Private staging folders for bytes that have not passed every check yet.

Decrypted outputs (``run``, ``fetch``) and the plaintext of ``open -o`` are written into a
staging folder beside their destination (the same filesystem, so the final move is a rename)
and moved into place only once everything verified. The folder is private (mode 0700, created
exclusively) and its name says who owns it::

    .golem-graphene-staging-<pid>-<start>-<boot>-<random>

``<pid>`` and ``<start>`` are the owner process and its start time (clock ticks since boot,
from ``/proc/<pid>/stat``), ``<boot>`` the first 8 hex digits of the kernel's boot id. A
process that ends normally, or on SIGINT, SIGTERM or SIGHUP, removes its folder; one killed
with SIGKILL (or by a crash or power loss) cannot, and its folder stays until the next
:class:`StagingArea` in the same parent folder (the next ``run``, ``fetch`` or ``open -o``
there) sees that its owner is gone (no such process, another process with that pid, or another
boot) and removes it. Folders of live owners and of other users are never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path
from types import TracebackType
from typing import Final

__all__ = ["STAGING_PREFIX", "StagingArea", "owner_alive", "sweep_stale"]

STAGING_PREFIX: Final = ".golem-graphene-staging-"
_NAME: Final = re.compile(
    re.escape(STAGING_PREFIX) + r"(?P<pid>[0-9]{1,10})-(?P<start>[0-9]{1,20})-"
    r"(?P<boot>[0-9a-f]{8})-[0-9a-f]{8}"
)


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip().replace("-", "")[:8].lower().ljust(8, "0")
    except OSError:
        return "0" * 8


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None when there is no such process
    (or no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def owner_alive(pid: int, start: int, boot: str) -> bool:
    """True while the process that made a staging folder named with these values still runs."""
    if boot != _boot_id():
        return False
    if not Path("/proc/self/stat").exists():  # no /proc: the pid alone (may be reused)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return _start_time(pid) == start


def sweep_stale(parent: Path) -> list[Path]:
    """Remove the staging folders in ``parent`` whose owner process is gone; returns them.

    Only directories (never symlinks) that belong to this user and whose whole name matches
    the staging pattern are candidates. Errors are ignored: sweeping is best effort and must
    never stop the work of the process that sweeps.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if owner_alive(int(match["pid"]), int(match["start"]), match["boot"]):
            continue
        _remove_tree(entry.path)
        removed.append(Path(entry.path))
    return removed


class StagingArea:
    """A private folder in ``parent`` for this process; ``with`` removes it at the end.

    Creating one first sweeps the stale staging folders of dead owners in ``parent``. Raises
    ``OSError`` when the folder cannot be created (``parent`` missing, not writable, ...).
    """

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        sweep_stale(parent)
        start = _start_time(os.getpid()) or 0
        name = f"{STAGING_PREFIX}{os.getpid()}-{start}-{_boot_id()}-{os.urandom(4).hex()}"
        self.path = parent / name
        os.mkdir(self.path, 0o700)

    def remove(self) -> None:
        """Remove the folder and whatever is still in it (idempotent)."""
        _remove_tree(self.path)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.path)

    def __enter__(self) -> StagingArea:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def _remove_tree(path: str | os.PathLike[str]) -> None:
    """``shutil.rmtree(path, ignore_errors=True)``; an empty folder (the usual case: the output
    was moved out) is removed without importing shutil and its compression modules."""
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    import shutil

    shutil.rmtree(path, ignore_errors=True)
