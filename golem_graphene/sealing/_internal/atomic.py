"""Output files that appear at their final path only when complete (temp file, fsync, rename).

The temporary file is created with mode 0600 in a private staging folder next to the destination
(the same filesystem, so the rename is atomic; :mod:`golem_graphene._internal.staging` also
sweeps the folders of processes killed before they could clean up), and is removed on every
failure path: a reader of the destination sees either nothing (or the old file) or the
complete, verified output, never a prefix.

What an output path may name (:func:`check_output_path`): nothing yet, or a regular file, which
is replaced only when the caller allows it (``--force``) and never through a symbolic link.
:func:`open_output` also takes what ``age -o`` writes to: a character device or a FIFO, or a
link to one (``/dev/null``, ``/dev/stdout``); those are written in place as a stream, since
they cannot be replaced (and must not be: as root, replacing ``/dev/null`` breaks the system).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Self

from golem_graphene.errors import SealingError, UsageError

if TYPE_CHECKING:
    from golem_graphene._internal.staging import StagingArea

_STREAMS = (stat.S_ISCHR, stat.S_ISFIFO, stat.S_ISSOCK)


def _is_stream(mode: int) -> bool:
    return any(test(mode) for test in _STREAMS)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def output_kind(dst: str | os.PathLike[str]) -> str:
    """``"new"`` (nothing there), ``"file"`` (a regular file) or ``"stream"`` (a character
    device or FIFO, directly or through a link); raises UsageError for anything else."""
    path = Path(dst)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "new"
    except OSError as exc:
        raise UsageError(f"cannot write the output {str(path)!r}: {exc.strerror or exc}") from exc
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        try:
            followed = os.stat(path)
        except OSError:
            followed = None
        if followed is not None and _is_stream(followed.st_mode):
            return "stream"
        raise UsageError(
            f"output {str(path)!r} is a symbolic link (to {target!r}); give the real path "
            "(--force replaces regular files only)"
        )
    if _is_stream(st.st_mode):
        return "stream"
    raise UsageError(f"output {str(path)!r} is {_kind(st.st_mode)}; give a file name")


def _create_temp(directory: Path, name: str) -> tuple[int, Path]:
    """A new file ``.<name>.<random>.tmp`` in ``directory``, mode 0600 (as mkstemp makes it,
    without importing tempfile: the light commands start faster)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        path = directory / f".{name}.{os.urandom(6).hex()}.tmp"
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(directory))


def check_output_path(dst: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """``dst`` as a Path where a new file may appear.

    Raises UsageError if it is anything but a regular file or nothing (a directory, a device,
    a symbolic link), or a regular file and ``overwrite`` is false.
    """
    path = Path(dst)
    kind = output_kind(path)
    if kind == "stream":
        raise UsageError(f"output {str(path)!r} is not a regular file; give a file name")
    if kind == "file" and not overwrite:
        raise UsageError(f"output {str(path)!r} already exists (use --force to overwrite)")
    return path


class DiscardOnExit(ABC):
    """``with output:`` ends in :meth:`discard` whatever happens (a no-op after a commit)."""

    @abstractmethod
    def discard(self) -> None:
        """Drop what was written, unless it was committed."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()


class AtomicOutput(DiscardOnExit):
    """A temporary file in a private staging folder beside ``dst``; :meth:`commit` moves it into
    place, anything else drops it.

    Raises UsageError if ``dst`` exists and ``overwrite`` is false (checked at creation and again,
    atomically, at commit) or if the temporary file cannot be created.
    """

    def __init__(self, dst: str | os.PathLike[str], *, overwrite: bool) -> None:
        self.path = check_output_path(dst, overwrite=overwrite)
        self._overwrite = overwrite
        directory = self.path.parent
        # In a private staging folder: a prefix of plaintext never stays where SIGKILL leaves
        # it for longer than until the next command that writes into this folder.
        # Imported here: writing to stdout or a device (``seal`` of one byte) never stages.
        from golem_graphene._internal.staging import StagingArea

        staging: StagingArea | None = None
        try:
            staging = StagingArea(directory)
            fd, tmp = _create_temp(staging.path, self.path.name)
        except OSError as exc:
            if staging is not None:
                staging.remove()
            raise UsageError(
                f"cannot create a temporary file in {str(directory)!r}: {exc.strerror or exc}"
            ) from exc
        self._staging = staging
        self.temp_path = tmp
        self.file = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed in commit/discard
        self._done = False

    def commit(self) -> None:
        """fsync the data, move the file into place, fsync the directory.

        Raises UsageError if the destination appeared meanwhile (without ``overwrite``) and
        SealingError if the filesystem refuses; the temporary file is removed in both cases.
        """
        try:
            try:
                os.fsync(self.file.fileno())
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # e.g. a pipe or a device that cannot fsync
                    raise
            self.file.close()
            if self._overwrite:
                # Checked again just before: what appeared meanwhile must be a regular file too.
                check_output_path(self.path, overwrite=True)
                os.replace(self.temp_path, self.path)
            else:
                self._link_into_place()
        except OSError as exc:
            self.discard()
            raise SealingError(f"cannot move the output into place: {exc}") from exc
        except BaseException:
            self.discard()
            raise
        self._done = True
        self._staging.remove()
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _link_into_place(self) -> None:
        try:
            # link() fails if the destination exists: no window in which we could clobber it.
            os.link(self.temp_path, self.path)
        except FileExistsError:
            raise UsageError(
                f"output {str(self.path)!r} already exists (use --force to overwrite)"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            check_output_path(self.path, overwrite=False)
            os.rename(self.temp_path, self.path)
            return
        os.unlink(self.temp_path)

    def discard(self) -> None:
        """Close and delete the temporary file (idempotent)."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)
        self._staging.remove()


class StreamOutput(DiscardOnExit):
    """A character device or FIFO opened for writing in place (``/dev/null``, ``/dev/stdout``).

    Nothing can be undone on a stream: :meth:`discard` only closes it. Callers that promise
    all-or-nothing output say so where they document ``-o``.
    """

    def __init__(self, dst: str | os.PathLike[str]) -> None:
        self.path = Path(dst)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise UsageError(
                f"cannot write the output {str(self.path)!r}: {exc.strerror or exc}"
            ) from exc
        self.file: BinaryIO = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed in commit

    def isatty(self) -> bool:
        """Whether the stream is a terminal (binary age output is refused there)."""
        return self.file.isatty()

    def commit(self) -> None:
        """Flush and close."""
        try:
            self.file.close()
        except OSError as exc:
            raise SealingError(f"cannot write the output {str(self.path)!r}: {exc}") from exc

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


def open_output(dst: str | os.PathLike[str], *, overwrite: bool) -> AtomicOutput | StreamOutput:
    """Where ``-o dst`` writes: a new or (with ``overwrite``) replaced regular file, atomically;
    or a character device or FIFO, in place. Raises UsageError for anything else."""
    if output_kind(dst) == "stream":
        return StreamOutput(dst)
    return AtomicOutput(dst, overwrite=overwrite)
