"""Private staging folders (issue 15, item 3): plaintext that has not passed every check sits
only in a folder of the process that made it (mode 0700), removed on every exit the process
sees, and swept by the next command writing into the same folder once its owner is gone.

Also ``golem-graphene open -o`` killed with SIGKILL half-way through a file: the verified
prefix of plaintext it had written stays only in such a folder, and the next ``open -o`` into
the same folder removes it.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from golem_graphene._internal.staging import STAGING_PREFIX, StagingArea, sweep_stale
from golem_graphene.sealing.age import encrypt_stream
from golem_graphene.sealing.keys import X25519Identity

CLI = Path(sys.executable).parent / "golem-graphene"


def folders(parent: Path) -> list[Path]:
    return sorted(parent.glob(f"{STAGING_PREFIX}*"))


def test_a_staging_folder_is_private_and_removed_at_the_end(tmp_path: Path) -> None:
    with StagingArea(tmp_path) as area:
        assert folders(tmp_path) == [area.path]
        assert stat.S_IMODE(area.path.stat().st_mode) == 0o700
        (area.path / "plain").write_bytes(b"secret")
    assert folders(tmp_path) == []


def test_the_folder_of_a_live_owner_is_never_swept(tmp_path: Path) -> None:
    with StagingArea(tmp_path) as area:
        assert sweep_stale(tmp_path) == []
        assert area.path.is_dir()


def _dead_owner_folder(parent: Path) -> Path:
    """A staging folder whose owner was a process that has ended."""
    code = (
        "import sys; from pathlib import Path; "
        "from golem_graphene._internal.staging import StagingArea; "
        "a = StagingArea(Path(sys.argv[1])); (a.path / 'plain').write_bytes(b'secret'); "
        "print(a.path)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(parent)], capture_output=True, text=True, check=True
    )
    return Path(done.stdout.strip())


def test_the_folder_of_a_dead_owner_is_swept_by_the_next_one(tmp_path: Path) -> None:
    left = _dead_owner_folder(tmp_path)
    assert left.is_dir() and (left / "plain").read_bytes() == b"secret"
    with StagingArea(tmp_path):
        assert not left.exists()


def test_a_reused_pid_does_not_keep_a_folder_alive(tmp_path: Path) -> None:
    """The name records the owner's start time too: this process's pid with another start
    time is not this process."""
    pid = os.getpid()
    fake = tmp_path / f"{STAGING_PREFIX}{pid}-1-{_boot()}-00000000"
    fake.mkdir(mode=0o700)
    assert sweep_stale(tmp_path) == [fake]


def test_only_real_staging_folders_of_this_user_are_swept(tmp_path: Path) -> None:
    left = _dead_owner_folder(tmp_path)
    link = tmp_path / f"{STAGING_PREFIX}1-1-{_boot()}-11111111"
    target = tmp_path / "precious"
    target.mkdir()
    (target / "file").write_text("keep")
    link.symlink_to(target)
    near = tmp_path / f"{STAGING_PREFIX}notmine"
    near.mkdir()
    assert sweep_stale(tmp_path) == [left]
    assert (target / "file").read_text() == "keep" and link.is_symlink() and near.is_dir()


def _boot() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip().replace("-", "")[:8]


def test_open_killed_half_way_leaves_plaintext_only_in_a_swept_staging_folder(
    tmp_path: Path,
) -> None:
    identity = X25519Identity.generate()
    key = tmp_path / "key.txt"
    key.write_text(identity.to_string() + "\n")
    sealed = io.BytesIO()
    encrypt_stream(io.BytesIO(os.urandom(8 << 20)), sealed, [identity.recipient()])
    data = sealed.getvalue()
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [CLI, "open", "-i", key, "-o", out / "plain.bin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(data[: 4 << 20])  # half: the first blocks verify and are written
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        written = [p for f in folders(out) for p in f.iterdir() if p.stat().st_size > 0]
        if written:
            break
        time.sleep(0.05)
    assert written, "open wrote no plaintext"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdin.close()
    [left] = folders(out)
    assert stat.S_IMODE(left.stat().st_mode) == 0o700
    assert sorted(p.name for p in out.iterdir()) == [left.name]  # nothing beside it
    # The next open into the same folder sweeps it.
    again = subprocess.run(
        [CLI, "open", "-i", key, "-o", out / "again.bin"],
        input=data,
        capture_output=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert folders(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["again.bin"]


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_open_interrupted_cleans_up(tmp_path: Path, sig: int) -> None:
    """The signal Python turns into KeyboardInterrupt: the staging folder goes at once."""
    identity = X25519Identity.generate()
    key = tmp_path / "key.txt"
    key.write_text(identity.to_string() + "\n")
    sealed = io.BytesIO()
    encrypt_stream(io.BytesIO(os.urandom(8 << 20)), sealed, [identity.recipient()])
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [CLI, "open", "-i", key, "-o", out / "plain.bin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(sealed.getvalue()[: 4 << 20])
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not folders(out):
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.stdin.close()
    assert proc.wait(30) != 0
    assert folders(out) == [] and list(out.iterdir()) == []
