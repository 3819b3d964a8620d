"""``golem-graphene run``: bad policy flags are usage errors (exit 2), named, before any request."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _test_images import write_shell_spec

from golem_graphene._cli import main as cli

CLI = Path(sys.executable).parent / "golem-graphene"

SPEC_TEXT = """\
name = "csv-shell"

[enclave]
image = "{image}"
args = ["-c", "wc -l < inputs/data.csv > outputs/summary.txt"]

[[inputs]]
name = "data.csv"
max_size = "1M"

[outputs]
files = ["summary.txt"]
"""

LEGACY_SPEC_TEXT = """\
name = "csv-stats"

[enclave]
runtime = "python3"
entrypoint = "stats.py"
app_files = ["stats.py"]

[[inputs]]
name = "data.csv"

[outputs]
files = ["summary.json"]
"""
"""A spec of the host-path format, refused since specs name a container image."""


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spec folder (the shell image beside ``task.toml``) and a sample input."""
    spec = write_shell_spec(tmp_path_factory.mktemp("spec") / "csv-shell", SPEC_TEXT)
    (spec / "sample").mkdir()
    (spec / "sample" / "data.csv").write_text("a,b\n1,2\n3,4\n")
    return spec


def cli_env(tmp_path: Path, config: Path | None = None) -> dict[str, str]:
    """The CLI's environment: its config, state and image cache in the test's folder."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if config is not None:
        env["XDG_CONFIG_HOME"] = str(config)
    return env


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--root", "/nonexistent/root.pem"], "cannot read the root certificate"),
        (["--root", "GARBAGE"], "cannot read the root certificate"),
        (["--accept-tcb", "Whatever"], "--accept-tcb takes a TCB status"),
    ],
)
def test_bad_policy_flags_are_usage_errors(
    tmp_path: Path,
    spec_dir: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    flags = [str(garbage) if f == "GARBAGE" else f for f in flags]
    code = cli(
        [
            "run",
            str(spec_dir),
            "--provider",
            "http://127.0.0.1:9",  # never contacted: the flags are refused first
            "--out",
            str(tmp_path / "out"),
            "-i",
            str(tmp_path / "identity.txt"),
            *flags,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert "internal error" not in err
    assert not (tmp_path / "out").exists()


# --- everything local is checked before the provider is contacted (issue 14, items 3 and 4) ---


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that accepts connections and remembers them: the provider that must not be
    contacted."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def _contacted(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("out-not-empty", "is not empty"),
        ("out-is-a-file", "exists and is not a folder"),
        ("out-unwritable", "cannot create the output folder"),
        ("undeclared-input", "the spec declares no input 'nope'"),
        ("missing-file", "cannot read input 'data.csv'"),
        ("input-is-a-folder", "Is a directory"),
        ("missing-required-input", "the spec requires the input 'data.csv'"),
        ("legacy-spec", "specs no longer name host files; name a container image instead"),
        ("bad-env", "--env takes NAME=VALUE"),
        ("bad-deadline", "--deadline takes STEP=SECONDS"),
        ("bad-timeout", "--timeout takes positive seconds"),
        ("bad-rate", "--min-rate takes bytes per second"),
    ],
)
def test_local_mistakes_are_found_before_the_provider_is_contacted(
    tmp_path: Path, spec_dir: Path, listener: socket.socket, case: str, message: str
) -> None:
    sample = spec_dir / "sample" / "data.csv"
    spec = spec_dir
    out = tmp_path / "out"
    flags: list[str] = ["--input", f"data.csv={sample}"]
    if case == "out-not-empty":
        out.mkdir()
        (out / "precious").write_text("keep")
    elif case == "out-is-a-file":
        out.write_text("a file")
    elif case == "out-unwritable":
        out = Path("/proc/golem-graphene-test/out")
    elif case == "undeclared-input":
        flags += ["--input", f"nope={sample}"]
    elif case == "missing-file":
        flags = ["--input", f"data.csv={tmp_path / 'missing.csv'}"]
    elif case == "input-is-a-folder":
        flags = ["--input", f"data.csv={tmp_path}"]
    elif case == "missing-required-input":
        flags = []
    elif case == "legacy-spec":
        spec = tmp_path / "legacy"
        spec.mkdir()
        (spec / "task.toml").write_text(LEGACY_SPEC_TEXT)
        (spec / "stats.py").write_text("print('never run')\n")
    elif case == "bad-env":
        flags += ["--env", "NOEQUALS"]
    elif case == "bad-deadline":
        flags += ["--deadline", "sleep=5"]
    elif case == "bad-timeout":
        flags += ["--timeout", "-1"]
    elif case == "bad-rate":
        flags += ["--min-rate", "fast"]
    port = listener.getsockname()[1]
    config = tmp_path / "config"
    done = subprocess.run(
        [
            CLI,
            "run",
            spec,
            "--provider",
            f"http://127.0.0.1:{port}",
            "--out",
            out,
            "--mrenclave",
            "00" * 32,
            *flags,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=cli_env(tmp_path, config),
    )
    assert done.returncode == 2, done.stderr
    assert "error: " in done.stderr and message in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert not _contacted(listener)
    # No identity was created for a command that could not run (issue 14, item 3).
    assert not config.exists()
    if case == "out-not-empty":
        assert [p.name for p in out.iterdir()] == ["precious"]


def test_the_identity_is_created_once_the_local_checks_passed(
    tmp_path: Path, spec_dir: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    config = tmp_path / "config"
    done = subprocess.run(
        [
            CLI,
            "run",
            spec_dir,
            "--provider",
            f"http://127.0.0.1:{port}",
            "--out",
            tmp_path / "out",
            "--mrenclave",
            "00" * 32,
            "--input",
            f"data.csv={spec_dir / 'sample' / 'data.csv'}",
            "--deadline",
            "create=1",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=cli_env(tmp_path, config),
    )
    # The listener accepts but never answers: the create deadline names the step.
    assert done.returncode == 1, done.stderr
    assert (config / "golem-graphene" / "identity.txt").is_file()
    assert "created identity" in done.stderr
    result = json.loads(done.stdout)
    assert (result["verdict"], result["step"], result["code"]) == ("fail", "create", "deadline")
    assert "within the create deadline of 1 s" in result["message"]
    assert _contacted(listener)


# --- fetch: usage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("0123456789abcdef0123456789abcdef", "no record of task 0123456789abcdef"),
        ("not-a-task", "TASK is a task id (32 hex digits) or a task record file"),
        ("RECORD", "invalid TaskRecord"),
    ],
)
def test_fetch_usage_errors(tmp_path: Path, task: str, message: str) -> None:
    bad = tmp_path / "record.json"
    bad.write_text('{"task_id": "x", "task_id": "y"}')
    done = subprocess.run(
        [CLI, "fetch", str(bad) if task == "RECORD" else task, "--out", tmp_path / "out"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# --- progress: phases apart, provider words escaped ---------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_each_phase_with_its_own_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The upload rate is the upload's alone, not diluted by the local build before it
    (issue 14, item 16); downloads show progress too; a provider's progress message is
    escaped and marked."""
    from golem_graphene._commands._requestor_cli import Progress
    from golem_graphene.protocol.messages import TaskEvent
    from golem_graphene.requestor.client import LocalProgress

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress = Progress("http://provider")
    progress.local(LocalProgress("measure", "sim", elapsed=20.0, finished=True, detail="ab" * 32))
    progress.local(LocalProgress("created", "0123456789abcdef0123456789abcdef", finished=True))
    progress.local(LocalProgress("upload", "data.csv", 100 << 20, 100 << 20, 1.0, finished=True))
    progress.local(LocalProgress("download", "out", 50 << 20, 50 << 20, 0.5, finished=True))
    progress.event(
        TaskEvent.from_obj(
            {
                "task_id": "0123456789abcdef0123456789abcdef",
                "state": "sealing",
                "seq": 4,
                "bytes_done": 5,
                "message": "\x1b[2Kdone\r",
            }
        )
    )
    text = terminal.getvalue()
    assert f"expected MRENCLAVE[sim] measured from the spec's image: {'ab' * 32} (20.0 s)" in text
    assert "task 0123456789abcdef0123456789abcdef created on http://provider" in text
    assert "uploaded data.csv: 100.0 MiB of 100.0 MiB (100.0 MiB/s)" in text
    assert "downloaded out: 50.0 MiB of 50.0 MiB (100.0 MiB/s)" in text
    assert 'the provider reports "\\x1b[2Kdone\\x0d": 5 bytes' in text
    assert "\x1b[2Kdone" not in text
