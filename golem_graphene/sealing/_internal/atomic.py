"""Output files that appear at their final path only when complete (temp file, fsync, rename).

The temporary file is created with mode 0600 in a private staging folder next to the destination
(the same filesystem, so the rename is atomic; :mod:`golem_graphene._internal.staging` also
sweeps the folders of processes killed before they could clean up), and is removed on every
failure path: a reader of the destination sees either nothing (or the old file) or the
complete, verified output, never a prefix.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from types import TracebackType

from golem_graphene._internal.staging import StagingArea
from golem_graphene.errors import SealingError, UsageError


def check_output_path(dst: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """``dst`` as a Path; raises UsageError if it exists and ``overwrite`` is false."""
    path = Path(dst)
    if path.is_dir():
        raise UsageError(f"output {str(path)!r} is a directory")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise UsageError(f"output {str(path)!r} already exists (use --force to overwrite)")
    return path


class AtomicOutput:
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
        staging: StagingArea | None = None
        try:
            staging = StagingArea(directory)
            self.temp_path = staging.path / self.path.name
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fd = os.open(self.temp_path, flags, 0o600)
        except OSError as exc:
            if staging is not None:
                staging.remove()
            raise UsageError(
                f"cannot create a temporary file in {str(directory)!r}: {exc.strerror or exc}"
            ) from exc
        self._staging = staging
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

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()
