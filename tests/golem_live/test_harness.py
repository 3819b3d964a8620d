"""A yagna that cannot start is a clear, bounded failure of the harness, never a hang."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from yagna import YAGNA_BINARY, YagnaError, YagnaNode


def test_missing_binary_is_named(tmp_path: Path) -> None:
    node = YagnaNode(tmp_path / "node", binary=tmp_path / "no-such-yagna")
    with pytest.raises(YagnaError, match=r"no yagna binary at .*no-such-yagna"):
        node.start()


def test_a_daemon_that_never_serves_times_out_and_is_stopped(tmp_path: Path) -> None:
    """Something that runs but never opens the REST API: the bounded wait ends, the process
    is stopped by its PID, and the error names the URL and the wait."""
    fake = tmp_path / "fake-yagna"
    fake.write_text("#!/bin/sh\necho 'pretending to start'\nexec sleep 60\n")
    fake.chmod(0o755)
    node = YagnaNode(tmp_path / "node", binary=fake)
    started = time.monotonic()
    with pytest.raises(YagnaError, match=r"did not answer on http://127\.0\.0\.1:\d+ within 2 s"):
        node.start(timeout=2)
    assert time.monotonic() - started < 15
    assert node.process is None
    assert "pretending to start" in node.log_tail()


@pytest.mark.skipif(not YAGNA_BINARY.exists(), reason="the golem-node extra is not installed")
def test_real_yagna_on_a_taken_port_fails_with_its_log(tmp_path: Path) -> None:
    """The real yagna cannot bind its API port: it exits, and the error carries its log."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        node = YagnaNode(tmp_path / "node", api_port=taken.getsockname()[1])
        with pytest.raises(YagnaError) as error:
            node.start(timeout=10)
    assert "yagna log" in str(error.value)
    assert node.process is None
