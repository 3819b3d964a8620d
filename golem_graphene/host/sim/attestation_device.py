"""``/dev/attestation`` for the ``sim`` runner, with Gramine's semantics, served from the host.

The sandbox sees a directory bind-mounted at ``/dev/attestation``:

- ``attestation_type``: a read-only file reading ``dcap`` (``none`` without remote attestation);
- ``user_report_data``: a FIFO; each write sets the report data (first 64 bytes, zero-padded,
  as Gramine's pseudo-file does; like Gramine, use a single ``write()``);
- ``quote``: a FIFO; every open for reading yields a fresh quote over the current report data,
  then end of file (it exists only when remote attestation is enabled, as in Gramine);
- ``keys/<name>``: files that accept the 16-byte keys of encrypted mounts.

A thread serves the FIFOs: it drains report-data writes as they arrive and, when a reader has
opened ``quote`` (detected by a non-blocking open for writing), moves a fresh FIFO to the path
(the reader keeps its own), writes one quote and closes. The program closed
``user_report_data`` before it opened ``quote``, so its report data is always in the pipe by
then and is drained first: a quote never covers stale report data.

Nothing tells a FIFO's writer that a reader waits in ``open``, so the thread looks: often for a
short while after each report-data write (a quote is read right after one: that is attestation's
latency), seldom otherwise (a quote read without a write first, which Gramine allows too, waits
at most the idle interval; an idle enclave, e.g. a standby one, costs next to no CPU).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

import structlog

from golem_graphene.errors import RunnerError

__all__ = ["AttestationDevice"]

log = structlog.get_logger(__name__)

REPORT_DATA_SIZE = 64
_IDLE_POLL_SECONDS = 0.01
_EAGER_POLL_SECONDS = 0.0003
_EAGER_SECONDS = 0.1  # after a report-data write


class AttestationDevice:
    """Serves one sandbox's ``/dev/attestation`` directory; use as a context manager."""

    def __init__(
        self,
        directory: Path,
        make_quote: Callable[[bytes], bytes] | None,
        key_names: Iterable[str] = (),
    ) -> None:
        self.directory = Path(directory)
        self._make_quote = make_quote
        self._key_names = tuple(key_names)
        self._report_data = bytes(REPORT_DATA_SIZE)
        self._stop_r, self._stop_w = -1, -1
        self._dir_fd = -1
        self._thread: threading.Thread | None = None
        self.quotes_served = 0
        self.error: BaseException | None = None

    @property
    def remote_attestation(self) -> bool:
        """True when quotes are served (``sgx.remote_attestation = "dcap"``)."""
        return self._make_quote is not None

    def start(self) -> None:
        """Create the files and start serving."""
        self.prepare()
        self.serve()

    def prepare(self) -> None:
        """Create the files (a program may open them from now on; opening
        ``user_report_data`` waits until :meth:`serve`)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        (self.directory / "attestation_type").write_text(
            "dcap" if self.remote_attestation else "none"
        )
        os.chmod(self.directory / "attestation_type", 0o444)
        keys = self.directory / "keys"
        keys.mkdir(exist_ok=True)
        for name in self._key_names:
            if "/" in name or name in ("", ".", ".."):
                raise RunnerError("invalid encrypted-files key name", found=name)
            (keys / name).touch(mode=0o666)
        os.mkfifo(self.directory / "user_report_data", 0o666)
        if self.remote_attestation:
            os.mkfifo(self.directory / "quote", 0o444 | 0o222)
        self._stop_r, self._stop_w = os.pipe()
        # The thread works relative to the folder itself, not its path: a pre-started enclave's
        # launch folder is renamed into its task's folder when a task takes it.
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)

    def serve(self) -> None:
        """Start the serving thread (after :meth:`prepare`)."""
        self._thread = threading.Thread(target=self._serve, name="sim-attestation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every descriptor; idempotent."""
        if self._dir_fd < 0:
            return
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._stop_r, self._stop_w, self._dir_fd):
            os.close(fd)
        self._stop_r = self._stop_w = self._dir_fd = -1

    def __enter__(self) -> AttestationDevice:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the serving thread -----------------------------------------------------------------

    def _serve(self) -> None:
        urd = "user_report_data"
        read_fd = os.open(urd, os.O_RDONLY | os.O_NONBLOCK, dir_fd=self._dir_fd)
        # No EOF storms between writers.
        keep_open = os.open(urd, os.O_WRONLY | os.O_NONBLOCK, dir_fd=self._dir_fd)
        eager_until = 0.0
        try:
            while True:
                eager = time.monotonic() < eager_until
                timeout = _EAGER_POLL_SECONDS if eager else _IDLE_POLL_SECONDS
                ready, _, _ = select.select([read_fd, self._stop_r], [], [], timeout)
                if self._stop_r in ready:
                    return
                if read_fd in ready:
                    self._drain(read_fd)
                    eager_until = time.monotonic() + _EAGER_SECONDS
                if self.remote_attestation and self._serve_quote_if_wanted(read_fd):
                    eager_until = 0.0
        except Exception as exc:  # surfaced by the runner as a RunnerError
            self.error = exc
            log.error("sim attestation device failed", error=str(exc))
        finally:
            os.close(read_fd)
            os.close(keep_open)

    def _drain(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return
            if not chunk:
                return
            # One read is one write of the program (single small writes are atomic in a pipe).
            self._report_data = chunk[:REPORT_DATA_SIZE].ljust(REPORT_DATA_SIZE, b"\0")

    def _serve_quote_if_wanted(self, urd_fd: int) -> bool:
        """Serve a reader waiting on ``quote``, if any; True when one was there."""
        assert self._make_quote is not None
        try:
            fd = os.open("quote", os.O_WRONLY | os.O_NONBLOCK, dir_fd=self._dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nobody is reading the quote
                return False
            raise
        try:
            # This reader keeps this FIFO; the path gets a fresh one, so a later open is a new
            # reader (one quote per open, as in Gramine) and a slow reader still holding this
            # FIFO is never probed, nor served, again.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(".quote.next", dir_fd=self._dir_fd)
            os.mkfifo(".quote.next", 0o666, dir_fd=self._dir_fd)
            os.replace(".quote.next", "quote", src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            self._drain(urd_fd)
            quote = self._make_quote(self._report_data)
            os.set_blocking(fd, True)
            view = memoryview(quote)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self.quotes_served += 1
        except BrokenPipeError:
            log.warning("the program closed /dev/attestation/quote before reading it")
        finally:
            os.close(fd)
        return True
