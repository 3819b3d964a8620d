"""The ``gramine-sgx`` and ``gramine-direct`` runners against fake ``gramine-*`` executables.

The fakes (``tests/fakes/gramine``) record every call (argv, working directory, the launch
folder's entries) and reproduce what real Gramine prints and returns in each failure mode
(``recorded.json`` lists the lines with their sources). They are copied into a folder of the
test's own, first on ``PATH``, so their call log and mode file sit beside them: the runner
starts Gramine with nothing but ``PATH`` in its environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from golem_graphene.errors import RunnerError
from golem_graphene.gramine import sgx_host as sgx_host_module
from golem_graphene.gramine.sgx_host import check_sgx_host, explain_gramine_error
from golem_graphene.host import runners
from golem_graphene.host.hermetic import ROOTFS_LINK
from golem_graphene.host.image import IMAGE_FORMAT, EnclaveImage
from golem_graphene.host.runners import (
    EnclaveProcess,
    GramineDirectRunner,
    GramineSgxRunner,
    SimRunner,
    make_runner,
)

FAKES = Path(__file__).resolve().parents[2] / "fakes" / "gramine"
RECORDED = json.loads((FAKES / "recorded.json").read_text())
FAILURE_MODES = sorted(RECORDED["modes"])


@dataclass
class FakeGramine:
    bin: Path

    def set_mode(self, mode: str, **extra: Any) -> None:
        (self.bin / "fake-gramine.json").write_text(json.dumps({"mode": mode, **extra}))

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        log = self.bin / "calls.jsonl"
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return [e for e in entries if tool is None or e["tool"] == tool]


@pytest.fixture
def fake_gramine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeGramine:
    """The fakes first on PATH (then this venv's python3, which the fakes run with)."""
    bin_dir = tmp_path / "fake-bin"
    shutil.copytree(FAKES, bin_dir, ignore=shutil.ignore_patterns("__pycache__"))
    for tool in ("gramine-sgx", "gramine-direct", "gramine-sgx-sign", "gramine-manifest"):
        (bin_dir / tool).chmod(0o755)
    venv_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{bin_dir}:{venv_bin}:{os.environ['PATH']}")
    monkeypatch.delenv("FAKE_GRAMINE_LOG", raising=False)
    monkeypatch.delenv("FAKE_GRAMINE_MODE", raising=False)
    return FakeGramine(bin_dir)


@pytest.fixture
def no_gramine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH on which no gramine-* tool exists."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@dataclass
class SgxHost:
    device: Path
    aesm: Path
    qcnl: Path


@pytest.fixture
def sgx_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SgxHost]:
    """The SGX device, AESM socket and QCNL config as temp files the checks look at."""
    host = tmp_path / "host"
    host.mkdir()
    device = host / "sgx_enclave"
    device.touch()
    aesm = host / "aesm.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(aesm))
    qcnl = host / "sgx_default_qcnl.conf"
    qcnl.write_text('{"pccs_url": "https://localhost:8081/sgx/certification/v4/"}\n')
    monkeypatch.setattr(sgx_host_module, "SGX_DEVICE", device)
    monkeypatch.setattr(sgx_host_module, "AESM_SOCKET", aesm)
    monkeypatch.setattr(sgx_host_module, "QCNL_CONFIG", qcnl)
    yield SgxHost(device, aesm, qcnl)
    server.close()


def make_image(directory: Path, *, sgx_files: bool = True) -> EnclaveImage:
    """A minimal image folder: manifest, spec, image.json, the ``rootfs`` link to a container
    root (a folder beside it, as the image store keeps one) and (optionally) the SGX files."""
    directory.mkdir(parents=True)
    root = directory.parent / f"{directory.name}-root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "true").write_bytes(b"\x7fELF")
    (directory / ROOTFS_LINK).symlink_to(root)
    (directory / "agent.manifest").write_text(
        'libos.entrypoint = "/bin/true"\nloader.argv = ["/bin/true"]\nfs.root.uri = "file:rootfs"\n'
    )
    (directory / "task.toml").write_text(
        f'name = "fake"\n[enclave]\nimage = "oci-archive:shell.tar@sha256:{"ab" * 32}"\n'
        '[outputs]\nfiles = ["out"]\n[limits]\nwall_seconds = 30\n'
    )
    (directory / "image.json").write_text(
        json.dumps({"format": IMAGE_FORMAT, "mrenclave": {"sim": "00" * 32}, "mrsigner": "00"})
    )
    if sgx_files:
        (directory / "agent.manifest.sgx").write_text((directory / "agent.manifest").read_text())
        sig = bytearray(1808)
        sig[0:16] = bytes.fromhex("06000000e10000000000010000000000")
        sig[24:40] = bytes.fromhex("01010000600000006000000001000000")
        struct.pack_into("<I", sig, 512, 3)
        (directory / "agent.sig").write_bytes(bytes(sig))
    return EnclaveImage.load(directory)


async def lines(process: EnclaveProcess) -> AsyncIterator[dict[str, Any]]:
    """What the fake Gramine writes on the control channel (its own probes, not agent frames)."""
    while (line := await process.read_frame()) is not None:
        yield json.loads(line)


async def send(process: EnclaveProcess, obj: dict[str, Any]) -> None:
    await process.write_frame(json.dumps(obj).encode() + b"\n")


async def collect(process: EnclaveProcess) -> list[dict[str, Any]]:
    return [event async for event in lines(process)]


# --- detecting an SGX host -------------------------------------------------------------------


def test_a_complete_host_is_usable(fake_gramine: FakeGramine, sgx_host: SgxHost) -> None:
    check = check_sgx_host()
    assert check.usable
    assert check.missing == ()
    assert check.gramine_version == "1.8"
    assert check.describe() == "SGX host ready (Gramine 1.8)"
    assert [c["argv"] for c in fake_gramine.calls("gramine-sgx")] == [["--version"]]


@pytest.mark.parametrize("absent", ["device", "aesm", "qcnl"])
def test_each_missing_host_file_is_named(
    fake_gramine: FakeGramine, sgx_host: SgxHost, absent: str
) -> None:
    path: Path = getattr(sgx_host, absent)
    path.unlink()
    check = check_sgx_host()
    assert not check.usable
    assert len(check.missing) == 1, check.missing
    (reason,) = check.missing
    assert str(path) in reason
    hint = {"device": "driver", "aesm": "aesmd", "qcnl": "PCCS"}[absent]
    assert hint in reason
    assert check.describe() == f"not an SGX host: {reason}"


def test_missing_gramine_is_named(no_gramine: None, sgx_host: SgxHost) -> None:
    check = check_sgx_host()
    assert check.missing == ("gramine-sgx is not installed (Debian/Ubuntu package 'gramine')",)
    assert check.gramine_version is None


def test_a_gramine_that_cannot_tell_its_version_is_named(
    fake_gramine: FakeGramine, sgx_host: SgxHost
) -> None:
    fake_gramine.set_mode("no-version")  # tools/gramine.in before --version existed
    check = check_sgx_host()
    (reason,) = check.missing
    assert str(fake_gramine.bin / "gramine-sgx") in reason
    assert "--version" in reason
    assert "not installed" not in reason


def test_a_bare_host_lists_everything_missing(no_gramine: None, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for name in ("SGX_DEVICE", "AESM_SOCKET", "QCNL_CONFIG"):
            mp.setattr(sgx_host_module, name, tmp_path / f"absent-{name}")
        check = check_sgx_host()
    assert not check.usable
    assert len(check.missing) == 4
    assert check.describe().count(";") == 3


# --- commands --------------------------------------------------------------------------------


def test_gramine_sgx_command(fake_gramine: FakeGramine, tmp_path: Path) -> None:
    assert GramineSgxRunner().command(tmp_path) == [str(fake_gramine.bin / "gramine-sgx"), "agent"]
    direct = GramineDirectRunner()
    assert direct.command(tmp_path) == [str(fake_gramine.bin / "gramine-direct"), "agent"]


def test_command_without_gramine_is_refused(no_gramine: None, tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="gramine-sgx is not installed"):
        GramineSgxRunner().command(tmp_path)


# --- Gramine's error lines -------------------------------------------------------------------


@pytest.mark.parametrize("mode", FAILURE_MODES)
def test_each_recorded_gramine_failure_is_explained(mode: str) -> None:
    recorded = RECORDED["modes"][mode]
    explained = explain_gramine_error(recorded["stderr"])
    assert explained is not None, mode
    assert recorded["advice"] in explained
    # The explanation quotes Gramine's own line, so nothing is lost.
    quoted = explained.split("(gramine: ", 1)[1].rstrip(")")
    assert quoted in recorded["stderr"]
    assert "starting" not in quoted


@pytest.mark.parametrize(
    "stderr",
    [
        "",
        "Gramine is starting. Parsing TOML manifest file, this may take some time...\n",
        "some application output\nanother line\n",
        "error: an error Gramine does not explain\n",
    ],
)
def test_unknown_output_is_not_explained(stderr: str) -> None:
    assert explain_gramine_error(stderr) is None


# --- choosing a runner -----------------------------------------------------------------------


def test_gramine_direct_is_refused_unless_allowed_by_name(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="allow_insecure"):
        make_runner("gramine-direct", data_dir=tmp_path)
    with pytest.raises(RunnerError, match="allow_insecure"):
        make_runner("gramine-direct", data_dir=tmp_path, allow_insecure=("sim", "gramine"))
    runner = make_runner("gramine-direct", data_dir=tmp_path, allow_insecure=("gramine-direct",))
    assert isinstance(runner, GramineDirectRunner)
    assert runner.name == "gramine-direct"


def test_make_runner_names(tmp_path: Path) -> None:
    assert isinstance(make_runner("sim", data_dir=tmp_path), SimRunner)
    sgx = make_runner("gramine-sgx", data_dir=tmp_path, pcs_url="https://pccs.example")
    assert isinstance(sgx, GramineSgxRunner)
    assert (sgx.pcs_url, sgx.cache_dir) == ("https://pccs.example", tmp_path / "collateral-cache")
    assert not sgx.simulated
    with pytest.raises(RunnerError, match="unknown runner"):
        make_runner("sgx", data_dir=tmp_path)


async def test_no_collateral_without_a_pcs(tmp_path: Path) -> None:
    assert await GramineSgxRunner().collateral_for(b"", datetime.now(UTC)) is None


# --- launching and supervising ---------------------------------------------------------------


async def test_launch_runs_gramine_sgx_in_the_launch_folder(
    fake_gramine: FakeGramine, sgx_host: SgxHost, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "image")
    launch = tmp_path / "launch"
    process = await GramineSgxRunner().launch(image, launch, stderr_path=tmp_path / "enclave.log")
    events = lines(process)
    started = await anext(events)
    await send(process, {"cmd": "run"})
    echo = await anext(events)
    assert await process.wait() == 0

    assert started["event"] == "fake-gramine"
    assert started["argv"] == ["agent"]
    assert started["cwd"] == str(launch)
    assert {"agent.manifest.sgx", "agent.sig", "agent.manifest", "image", "rootfs", "io"} <= set(
        started["entries"]
    )
    assert set(started["env"]) <= {"PATH", "LC_CTYPE"}  # nothing of the provider leaks in
    assert echo == {"event": "echo", "command": {"cmd": "run"}}
    for name in ("agent.manifest.sgx", "agent.sig", "image"):
        assert (launch / name).resolve() == (image.directory / name.replace("image", "")).resolve()
    # file:rootfs (fs.root) is the container root the image links to, wherever the store is.
    assert (launch / ROOTFS_LINK).resolve() == (image.directory / ROOTFS_LINK).resolve()
    assert (launch / ROOTFS_LINK / "bin" / "true").is_file()

    calls = fake_gramine.calls("gramine-sgx")
    assert [c["argv"] for c in calls] == [["--version"], ["agent"]]
    assert calls[1]["cwd"] == str(launch)
    assert calls[1]["links"]["agent.sig"] == str((image.directory / "agent.sig").resolve())
    log = (tmp_path / "enclave.log").read_text()
    assert log.startswith("Gramine is starting.")
    assert process.failure_reason() is None


async def test_launch_is_refused_on_a_host_without_sgx(
    fake_gramine: FakeGramine, sgx_host: SgxHost, tmp_path: Path
) -> None:
    sgx_host.device.unlink()
    image = make_image(tmp_path / "image")
    with pytest.raises(RunnerError, match=r"not an SGX host: .*sgx_enclave"):
        await GramineSgxRunner().launch(image, tmp_path / "launch", stderr_path=tmp_path / "log")
    assert [c["argv"] for c in fake_gramine.calls("gramine-sgx")] == [["--version"]]


async def test_launch_needs_the_signed_sgx_files(
    fake_gramine: FakeGramine, sgx_host: SgxHost, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "image", sgx_files=False)
    with pytest.raises(RunnerError, match=r"no agent\.manifest\.sgx: build it on a Gramine host"):
        await GramineSgxRunner().launch(image, tmp_path / "launch", stderr_path=tmp_path / "log")
    assert [c["argv"] for c in fake_gramine.calls("gramine-sgx")] == [["--version"]]


async def test_gramine_direct_needs_no_sgx_host_and_no_signature(
    fake_gramine: FakeGramine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sgx_host_module, "SGX_DEVICE", tmp_path / "absent")
    image = make_image(tmp_path / "image", sgx_files=False)
    runner = make_runner("gramine-direct", data_dir=tmp_path, allow_insecure=("gramine-direct",))
    process = await runner.launch(image, tmp_path / "launch", stderr_path=tmp_path / "log")
    (started, _echo) = await asyncio.gather(anext(lines(process)), send(process, {"cmd": "x"}))
    assert started["tool"] == "gramine-direct"
    assert started["argv"] == ["agent"]
    assert await process.wait() == 0
    assert fake_gramine.calls("gramine-sgx") == []


@pytest.mark.parametrize("mode", FAILURE_MODES)
async def test_gramine_failures_surface_exit_status_and_reason(
    fake_gramine: FakeGramine, sgx_host: SgxHost, tmp_path: Path, mode: str
) -> None:
    recorded = RECORDED["modes"][mode]
    fake_gramine.set_mode(mode)
    image = make_image(tmp_path / "image")
    stderr_path = tmp_path / "enclave.log"
    process = await GramineSgxRunner().launch(image, tmp_path / "launch", stderr_path=stderr_path)
    assert await collect(process) == []  # it never attested
    assert await process.wait() == recorded["exit"]
    assert not process.timed_out
    assert stderr_path.read_text() == recorded["stderr"]  # stderr is captured whole
    reason = process.failure_reason()
    assert reason is not None
    assert recorded["advice"] in reason


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def _hanging_enclave(
    fake_gramine: FakeGramine, tmp_path: Path, *, wall_seconds: float, standby: bool = False
) -> EnclaveProcess:
    """A fake gramine-sgx enclave in ``tmp_path`` that hangs, with this wall-clock limit."""
    fake_gramine.set_mode("hang", sleep=3600)
    cmd = GramineSgxRunner().command(tmp_path)
    (tmp_path / "agent.manifest.sgx").touch()
    env = {"PATH": os.environ["PATH"]}
    proc = await runners._start(cmd, tmp_path, tmp_path / "enclave.log", env)
    return EnclaveProcess(
        proc, wall_seconds=wall_seconds, stderr_path=tmp_path / "enclave.log", standby=standby
    )


async def test_timeout_kills_the_whole_process_tree(
    fake_gramine: FakeGramine, tmp_path: Path
) -> None:
    process = await _hanging_enclave(fake_gramine, tmp_path, wall_seconds=1.0)
    hanging = await anext(lines(process))
    child = hanging["child"]
    assert _alive(child)
    code = await asyncio.wait_for(process.wait(), timeout=10)
    assert process.timed_out
    assert code == -9
    for _ in range(50):
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child), "the enclave's child outlived the timeout"
    assert process.failure_reason() is None  # a timeout is not a Gramine error


async def test_kill_ends_a_running_enclave(
    fake_gramine: FakeGramine, sgx_host: SgxHost, tmp_path: Path
) -> None:
    fake_gramine.set_mode("hang")
    image = make_image(tmp_path / "image")
    process = await GramineSgxRunner().launch(
        image, tmp_path / "launch", stderr_path=tmp_path / "l"
    )
    child = (await anext(lines(process)))["child"]
    process.kill()
    assert await asyncio.wait_for(process.wait(), timeout=10) == -9
    assert not process.timed_out
    for _ in range(50):
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child)


def test_fakes_are_executable_in_the_repository() -> None:
    for tool in ("gramine-sgx", "gramine-direct", "gramine-sgx-sign", "gramine-manifest"):
        mode = (FAKES / tool).stat().st_mode
        assert mode & stat.S_IXUSR, f"{tool} lost its executable bit"


async def test_a_standby_enclaves_clock_starts_when_it_is_armed(
    fake_gramine: FakeGramine, tmp_path: Path
) -> None:
    process = await _hanging_enclave(fake_gramine, tmp_path, wall_seconds=0.3, standby=True)
    await anext(lines(process))
    await asyncio.sleep(1.0)  # waiting for a task does not count against its time limit
    assert process.running and not process.timed_out
    process.relocate(tmp_path / "moved.log")
    process.arm()
    code = await asyncio.wait_for(process.wait(), timeout=10)
    assert process.timed_out
    assert code == -9
