"""The bubblewrap sandbox the ``sim`` runner launches workloads in, and its supervisor.

A :class:`SandboxPlan` says exactly what the program sees: read-only binds (the manifest's
trusted files, hash-checked beforehand), read-write binds, tmpfs mounts, a ``/dev/attestation``
directory, the argv and environment (nothing is inherited from the provider), and limits.
:func:`run_sandbox` starts ``sh -c 'ulimit ... && exec "$@"' sh bwrap ...`` (the shell joins the
sandbox's pids cgroup and sets its resource limits, then becomes bwrap) in a new session with new
user, mount, pid, ipc, uts, cgroup and (unless allowed) network namespaces, ``--die-with-parent``
and ``--new-session``, and kills the whole process tree on timeout: killing bwrap kills the
sandbox's pid-namespace init, and the kernel then kills every process in that namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVarTuple

import structlog

from golem_graphene.errors import RunnerError

__all__ = [
    "Mount",
    "ResourceLimits",
    "SandboxPlan",
    "SandboxResult",
    "bwrap_available",
    "bwrap_command",
    "kill_session",
    "run_sandbox",
    "use_pidfd_child_watcher",
]

log = structlog.get_logger(__name__)

MountKind = Literal["ro", "rw", "tmpfs", "dir", "symlink"]
_Ts = TypeVarTuple("_Ts")


@dataclass(frozen=True)
class Mount:
    """A path inside the sandbox: a host path bound ``ro``/``rw``, a tmpfs, an empty dir, or a
    symbolic link whose text is ``source`` (as a container root has them: ``/bin -> usr/bin``)."""

    target: str
    kind: MountKind
    source: Path | None = None

    def __post_init__(self) -> None:
        if not self.target.startswith("/") or "\0" in self.target:
            raise RunnerError("sandbox mount targets must be absolute paths", found=self.target)
        if (self.source is None) != (self.kind in ("tmpfs", "dir")):
            raise RunnerError(f"mount kind {self.kind!r} and source do not fit", found=self.target)


@dataclass(frozen=True)
class ResourceLimits:
    """Limits of one sandboxed run; ``None`` means no limit beyond the host's."""

    wall_seconds: float = 300.0
    cpu_seconds: int | None = None
    memory_bytes: int | None = None
    file_size_bytes: int | None = None
    open_files: int | None = 1024
    max_processes: int | None = 512


@dataclass(frozen=True)
class SandboxPlan:
    """Everything one sandboxed run sees and may use."""

    argv: Sequence[str]
    env: Mapping[str, str]
    mounts: Sequence[Mount]
    workdir: str = "/"
    network: bool = False
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    hostname: str = "enclave"
    uid: int = 0
    gid: int = 0
    """The user and group ids inside the sandbox (a container image's User)."""
    read_only_root: bool = False
    """Make ``/`` itself read-only once everything is mounted (a container image's root)."""


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed run ended."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration: float

    @property
    def ok(self) -> bool:
        """True for exit status 0 within the time limit."""
        return self.exit_code == 0 and not self.timed_out

    def describe(self) -> str:
        """A short human reason, e.g. ``exit 3`` or ``killed: timeout after 5.0 s``."""
        if self.timed_out:
            return f"killed: timeout after {self.duration:.1f} s"
        if self.signal is not None:
            return f"killed by signal {signal.Signals(self.signal).name}"
        return f"exit {self.exit_code}"


def bwrap_available() -> str | None:
    """The path of ``bwrap`` when it is installed, else ``None``."""
    return shutil.which("bwrap")


def bwrap_command(plan: SandboxPlan, pids: PidsLimit | None = None) -> list[str]:
    """The exact ``sh -c '... && exec "$@"' sh bwrap ...`` command line for ``plan``, its
    process moving into ``pids``' cgroup first when given."""
    bwrap = bwrap_available()
    if bwrap is None:
        raise RunnerError(
            "bubblewrap (bwrap) is not installed; install the Debian package "
            "'bubblewrap' (make setup does)"
        )
    if not plan.argv:
        raise RunnerError("the sandboxed program has no argv")
    cmd = [
        bwrap,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        plan.hostname,
        "--uid",
        str(plan.uid),
        "--gid",
        str(plan.gid),
        "--clearenv",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    if not plan.network:
        cmd.append("--unshare-net")
    # Parents before children, so a bind below a tmpfs is not hidden by it.
    for mount in sorted(plan.mounts, key=lambda m: m.target.count("/")):
        if mount.kind == "tmpfs":
            cmd += ["--tmpfs", mount.target]
        elif mount.kind == "dir":
            cmd += ["--dir", mount.target]
        elif mount.kind == "symlink":
            cmd += ["--symlink", str(mount.source), mount.target]
        else:
            flag = "--ro-bind" if mount.kind == "ro" else "--bind"
            cmd += [flag, str(mount.source), mount.target]
    if plan.read_only_root:
        cmd += ["--remount-ro", "/"]
    for key, value in plan.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise RunnerError("invalid environment variable for the sandbox", found=key)
        cmd += ["--setenv", key, value]
    cmd += ["--chdir", plan.workdir, "--", *plan.argv]
    steps = [] if pids is None else [pids.join_command()]
    steps += _ulimits(plan.limits)
    return ["/bin/sh", "-c", " && ".join([*steps, 'exec "$@"']), "sh", *cmd]


def _ulimits(limits: ResourceLimits) -> list[str]:
    """The shell's ``ulimit`` commands for ``limits``, hard and soft limit alike.

    The shell sets them and execs bwrap: one program less to start than ``prlimit`` (about a
    millisecond of every launch). Units are the shell's: ``-f`` counts 512-byte blocks (POSIX),
    ``-v`` KiB, ``-t`` seconds (dash, bash, busybox and mksh alike); sizes are rounded down, so a
    limit is never looser than planned. A shell refusing one fails the launch (``&&``).
    """
    steps = ["ulimit -c 0"]
    if limits.cpu_seconds is not None:
        steps.append(f"ulimit -t {int(limits.cpu_seconds)}")
    if limits.memory_bytes is not None:
        steps.append(f"ulimit -v {int(limits.memory_bytes) // 1024}")
    if limits.file_size_bytes is not None:
        steps.append(f"ulimit -f {int(limits.file_size_bytes) // 512}")
    if limits.open_files is not None:
        steps.append(f"ulimit -n {int(limits.open_files)}")
    return steps


class _PidfdChildWatcher(asyncio.AbstractChildWatcher):
    """Python 3.12's child watcher on 3.11: the running loop polls a pidfd of each child.

    Python 3.11's default (``ThreadedChildWatcher``) starts a thread per child, which costs
    about 2 ms of every launch on a busy interpreter. This watcher holds no state and serves
    whichever loop is running, as 3.12's does (where it is the default).
    """

    def __enter__(self) -> _PidfdChildWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        pass

    def add_child_handler(
        self, pid: int, callback: Callable[[int, int, *_Ts], object], *args: *_Ts
    ) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop.add_reader(pidfd, self._do_wait, loop, pid, pidfd, callback, args)

    def remove_child_handler(self, pid: int) -> bool:
        return True  # asyncio never calls it

    @staticmethod
    def _do_wait(
        loop: asyncio.AbstractEventLoop, pid: int, pidfd: int, callback: Any, args: Any
    ) -> None:
        loop.remove_reader(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped by someone else: the same code asyncio gives
            code = 255
            log.warning("unknown child process exit status", pid=pid)
        finally:
            os.close(pidfd)
        callback(pid, code, *args)


_watcher_checked: object = None  # the event loop policy last checked


def use_pidfd_child_watcher() -> None:
    """Make asyncio wait for children with pidfds instead of a thread each (Python 3.11).

    Only replaces asyncio's own default watcher (a watcher set by the application is kept), and
    only where the kernel has ``pidfd_open`` (Linux 5.3). Python 3.12 does this by itself.
    Checked once per event loop policy.
    """
    global _watcher_checked
    policy = asyncio.get_event_loop_policy()
    if _watcher_checked is policy or sys.version_info >= (3, 12):
        return
    _watcher_checked = policy
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        current = asyncio.get_child_watcher()
        if type(current) is asyncio.ThreadedChildWatcher:
            asyncio.set_child_watcher(_PidfdChildWatcher())


async def run_sandbox(
    plan: SandboxPlan,
    *,
    stdin: IO[bytes] | int | None = None,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
    on_start: asyncio.Future[int] | None = None,
) -> SandboxResult:
    """Run ``plan`` to completion or to its wall-clock limit; the whole tree dies on timeout.

    ``stdin``/``stdout``/``stderr`` are passed to the process (files, pipes or ``None`` for
    ``/dev/null``). Cancelling the awaiting task kills the sandbox too.
    """
    pids = PidsLimit.create(plan.limits.max_processes)
    try:
        cmd = bwrap_command(plan, pids)
    except BaseException:
        if pids is not None:
            pids.stop()
        raise
    try:
        return await _supervise(plan, cmd, stdin, stdout, stderr, on_start)
    finally:
        if pids is not None:
            await asyncio.shield(pids.aclose())


async def _supervise(
    plan: SandboxPlan,
    cmd: list[str],
    stdin: IO[bytes] | int | None,
    stdout: IO[bytes] | int | None,
    stderr: IO[bytes] | int | None,
    on_start: asyncio.Future[int] | None,
) -> SandboxResult:
    started = time.monotonic()
    devnull = asyncio.subprocess.DEVNULL
    use_pidfd_child_watcher()
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=devnull if stdin is None else stdin,
        stdout=devnull if stdout is None else stdout,
        stderr=devnull if stderr is None else stderr,
        start_new_session=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    if on_start is not None and not on_start.done():
        on_start.set_result(proc.pid)
    timed_out = False
    try:
        async with asyncio.timeout(plan.limits.wall_seconds):
            await proc.wait()
    except TimeoutError:
        timed_out = True
        kill_session(proc.pid)
        await proc.wait()
    except asyncio.CancelledError:
        kill_session(proc.pid)
        await proc.wait()
        raise
    code = proc.returncode
    assert code is not None
    duration = time.monotonic() - started
    log.debug("sandbox finished", exit=code, timed_out=timed_out, seconds=round(duration, 3))
    return SandboxResult(
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        timed_out=timed_out,
        duration=duration,
    )


def kill_session(pid: int) -> None:
    """SIGKILL the session led by ``pid`` (started with ``start_new_session``) and ``pid``.

    For a sandbox that is bwrap, and with it the sandbox's pid-namespace init, whose death makes
    the kernel kill every process in the namespace: nothing of the workload survives.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


_PIDS_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


class PidsLimit:
    """A pids cgroup that caps how many processes one sandbox may have (fork bombs).

    ``RLIMIT_NPROC`` does not bind root, and a provider often runs as root, so the cap comes
    from the kernel's pids controller (cgroup v1 ``pids`` hierarchy or cgroup v2). Where no
    writable pids controller exists the limit is skipped with a warning, and the wall-clock kill
    of the whole tree remains the backstop.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # cgroup v1 has a ``tasks`` file: writing 0 to it moves the writing thread alone (the
        # wrapping shell is single-threaded, so the whole process, before it runs anything).
        # The kernel then skips the global threadgroup lock a write to ``cgroup.procs`` takes,
        # whose write side waits for an RCU grace period: about 10 ms on every launch.
        # cgroup v2 has no such file; there the process moves itself by pid.
        self._join = (
            ("0", path / "tasks") if (path / "tasks").exists() else ("$$", path / "cgroup.procs")
        )

    @classmethod
    def create(cls, limit: int | None) -> PidsLimit | None:
        if limit is None:
            return None
        for root in _PIDS_ROOTS:
            if not (root / "pids.max").exists() and not (root / "cgroup.procs").exists():
                continue
            if root == Path("/sys/fs/cgroup") and "pids" not in _read_text(
                root / "cgroup.controllers"
            ):
                continue
            path = root / f"golem-graphene-{os.getpid()}-{time.monotonic_ns()}"
            try:
                path.mkdir()
                (path / "pids.max").write_text(str(limit))
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            return cls(path)
        log.warning("no writable pids cgroup: the sandbox has no process-count limit")
        return None

    @staticmethod
    def reclaim_stale() -> int:
        """Remove empty pids cgroups left by provider processes that died; returns how many."""
        removed = 0
        for root in _PIDS_ROOTS:
            for path in root.glob("golem-graphene-*-*"):
                owner = path.name.split("-")[2]
                if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                    with contextlib.suppress(OSError):
                        path.rmdir()
                        removed += 1
        return removed

    def join_command(self) -> str:
        """The shell command that moves the shell running it into the cgroup (before it execs
        the sandbox: everything the sandbox starts is counted)."""
        who, file = self._join
        return f"echo {who} > {shlex.quote(str(file))}"

    def _remove(self) -> bool:
        """Remove the cgroup; False while it still holds processes (a pid namespace's last
        ones may take a while to die after its init)."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Remove the cgroup once its processes are gone; idempotent. Blocks (up to a second):
        :meth:`aclose` in a coroutine."""
        for _ in range(50):
            if self._remove():
                return
            time.sleep(0.02)
        log.warning("pids cgroup still busy", path=str(self.path))

    async def aclose(self) -> None:
        """:meth:`stop` without blocking the event loop while the cgroup empties."""
        for _ in range(50):
            if self._remove():
                return
            await asyncio.sleep(0.02)
        log.warning("pids cgroup still busy", path=str(self.path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
