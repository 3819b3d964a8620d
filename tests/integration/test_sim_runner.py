"""The ``sim`` runner's sandbox under real bubblewrap (issue 4, "Enclave runners").

Each test builds a small image by hand: a Gramine manifest for a native program (``/bin/sh`` and
a few tools, their libraries from ``ldd``), expanded with ``expand_trusted_files`` and signed
like ``golem-graphene build`` signs, then launched through :meth:`SimRunner.launch` exactly as
the provider launches an agent. The program writes what it saw into ``/untrusted`` (the task's
I/O folder), which the test reads afterwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from _sim_support import SimImages, sandbox_problem
from cryptography.hazmat.primitives.asymmetric import rsa

from golem_graphene.errors import RunnerError
from golem_graphene.host import runners
from golem_graphene.host.image import EnclaveImage, load_or_create_signing_key
from golem_graphene.host.runners import EnclaveProcess, SimRunner, prepare_launch_dir
from golem_graphene.host.sandbox import (
    Mount,
    PidsLimit,
    ResourceLimits,
    SandboxPlan,
    run_sandbox,
)

SANDBOX_PROBLEM = sandbox_problem()
pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=str(SANDBOX_PROBLEM)),
    pytest.mark.skipif(sys.platform != "linux", reason="bubblewrap needs Linux"),
]


# --- hand-built images (the same helper lives in test_sim_attestation.py) ------------------------


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> rsa.RSAPrivateKey:
    return load_or_create_signing_key(tmp_path_factory.mktemp("key") / "key.pem")


@pytest.fixture
def images(tmp_path: Path, signing_key: rsa.RSAPrivateKey) -> SimImages:
    return SimImages(tmp_path, signing_key, SimRunner(tmp_path / "provider-data"))


SH = ["/bin/sh"]


# --- only the manifest's files exist -------------------------------------------------------------


async def test_files_outside_the_manifest_do_not_exist(images: SimImages) -> None:
    script = (
        "for f in /etc/passwd /etc/hostname /usr/bin/id /image/image.json /image/sim.sig "
        "/usr/bin/cat; do cat $f > /dev/null 2>&1; echo $f=$?; done > /untrusted/seen; "
        "test -w /bin/sh; echo write-trusted=$? >> /untrusted/seen; "
        "(: > /image/app/new) 2>/dev/null; echo write-image=$? >> /untrusted/seen"
    )
    image = images.make([*SH, "-c", script], [*SH, "/usr/bin/cat"])
    code, io, _ = await images.run(image, "launch")
    assert code == 0
    seen = dict(line.split("=") for line in (io / "seen").read_text().split())
    assert seen.pop("/usr/bin/cat") == "0"  # the control: a trusted file is readable
    assert seen.pop("write-trusted") == "1"  # trusted files are read-only
    assert seen.pop("write-image") != "0"
    # Not in the manifest: /etc entirely, an untrusted file of a mounted folder (/usr/bin/id),
    # and image files that are not trusted.
    assert seen == dict.fromkeys(
        ["/etc/passwd", "/etc/hostname", "/usr/bin/id", "/image/image.json", "/image/sim.sig"],
        "1",
    )


async def test_only_the_manifests_environment_is_visible(
    images: SimImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GG_HOST_SECRET", "must-not-leak")
    image = images.make(
        [
            *SH,
            "-c",
            "export -p > /untrusted/env; hostname=$(cat /proc/sys/kernel/hostname); "
            'echo "$hostname" > /untrusted/hostname',
        ],
        [*SH, "/usr/bin/cat"],
        env={"GREETING": "hello from the manifest"},
    )
    code, io, _ = await images.run(image, "launch")
    assert code == 0
    exported = (io / "env").read_text()
    assert "GG_HOST_SECRET" not in exported
    assert "must-not-leak" not in exported
    assert "GREETING='hello from the manifest'" in exported
    assert (io / "hostname").read_text().strip() == "enclave"


# --- trusted files are checked before start --------------------------------------------------


async def test_a_trusted_file_changed_after_build_fails_before_start(images: SimImages) -> None:
    image = images.make([*SH, "/image/app/run.sh"], SH, app={"run.sh": ": > /untrusted/started\n"})
    code, io, _ = await images.run(image, "control")
    assert code == 0
    assert (io / "started").exists()  # the control: unchanged, it runs

    with open(image.directory / "app" / "run.sh", "a") as f:
        f.write("echo tampered\n")
    launch = images.root / "tampered"
    with pytest.raises(RunnerError, match=r"trusted file file:image/app/run\.sh was modified"):
        await images.runner.launch(image, launch, stderr_path=images.root / "tampered.stderr")
    assert not (launch / "io" / "started").exists()
    assert not (launch / ".dev-attestation").exists()  # nothing was started for it


async def test_a_manifest_changed_after_a_launch_is_measured_again(images: SimImages) -> None:
    image = images.make([*SH, "-c", ": > /untrusted/started"], SH)
    code, io, _ = await images.run(image, "control")
    assert code == 0 and (io / "started").exists()
    # The runner keeps the measurement of a loaded manifest; a manifest edited on disk and
    # loaded again is measured again and refused (it no longer matches the signature).
    manifest = image.directory / "agent.manifest"
    manifest.write_text(manifest.read_text().replace("/untrusted/started", "/untrusted/other"))
    edited = EnclaveImage.load(image.directory)
    with pytest.raises(RunnerError, match="does not match its signature"):
        await images.runner.launch(edited, images.root / "edited", stderr_path=images.root / "e")


# --- network ---------------------------------------------------------------------------------


@pytest.fixture
def listener() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server, server.getsockname()[1]
    server.close()


@pytest.mark.parametrize("network", [False, True])
async def test_network_is_unreachable_unless_the_spec_allows_it(
    images: SimImages, listener: tuple[socket.socket, int], network: bool
) -> None:
    _, port = listener
    script = (
        "cat /proc/net/dev > /untrusted/netdev; "
        f"if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo connected; else echo refused; fi "
        "> /untrusted/tcp"
    )
    bash = "/bin/bash"
    if not Path(bash).exists():
        pytest.skip("needs bash for /dev/tcp")
    image = images.make([bash, "-c", script], [bash, "/usr/bin/cat"], network=network)
    code, io, _ = await images.run(image, f"launch-{network}")
    assert code == 0
    interfaces = {
        line.split(":")[0].strip() for line in (io / "netdev").read_text().splitlines()[2:]
    }
    if network:
        assert (io / "tcp").read_text().strip() == "connected"
        assert interfaces != {"lo"}
    else:
        assert (io / "tcp").read_text().strip() == "refused"
        assert interfaces == {"lo"}


# --- limits ----------------------------------------------------------------------------------

BOMB_MARK = "987654"  # sleep's argument: unusual enough to find these processes in /proc


def bomb_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        mark = argv[1:2] == [BOMB_MARK.encode()]
        if argv[0].endswith(b"sleep") and mark and state != "Z":
            found.append(int(entry))
    return found


async def watch_bomb(seconds: float) -> int:
    most = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        most = max(most, len(bomb_processes()))
        await asyncio.sleep(0.1)
    return most


async def wait_until_gone(seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    left = bomb_processes()
    for _ in range(int(seconds / 0.05)):
        if not left or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
        left = bomb_processes()
    return left


@pytest.mark.parametrize("supervisor", ["launch", "run_sandbox"])
async def test_timeout_kills_a_fork_bomb_like_tree(
    images: SimImages, monkeypatch: pytest.MonkeyPatch, supervisor: str
) -> None:
    assert bomb_processes() == [], "leftovers from an earlier run"
    # A growing tree, throttled so the host survives; half the sleepers leave the session.
    bomb = f'while :; do sh -c "sleep {BOMB_MARK}" & setsid sleep {BOMB_MARK} & sleep 0.01; done'
    image = images.make(
        [*SH, "-c", bomb], [*SH, "/usr/bin/sleep", "/usr/bin/setsid"], wall_seconds=1.5
    )
    watcher = asyncio.ensure_future(watch_bomb(1.2))
    started = time.monotonic()
    if supervisor == "launch":
        monkeypatch.setattr(runners, "_SEALING_MARGIN_SECONDS", 0.0)
        process = await images.runner.launch(
            image, images.root / "launch", stderr_path=images.root / "stderr"
        )
        code = await asyncio.wait_for(process.wait(), timeout=30)
        assert isinstance(process, EnclaveProcess) and process.timed_out
        assert code == -9
    else:
        launch = images.root / "launch"
        prepare_launch_dir(image, launch)
        (launch / ".dev-attestation").mkdir()
        plan = images.runner.plan(image, launch, launch / ".dev-attestation")
        plan = replace(plan, limits=replace(plan.limits, wall_seconds=1.5))
        result = await run_sandbox(plan)
        assert result.timed_out
        assert result.describe().startswith("killed: timeout")
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 10
    assert await watcher >= 20, "the tree did not grow: the test proves nothing"
    assert await wait_until_gone() == [], "processes of the tree survived the timeout"


async def test_memory_limit_is_enforced(images: SimImages) -> None:
    # 256 MiB (the enclave size, at least 256 MiB) of address space: a 1 MiB buffer is fine,
    # a 400 MiB one is refused.
    script = (
        "dd if=/dev/zero of=/dev/null bs=1M count=1 2>/dev/null; echo small=$? > /untrusted/rc; "
        "dd if=/dev/zero of=/dev/null bs=400M count=1 2>/untrusted/dd.err; "
        "echo big=$? >> /untrusted/rc"
    )
    image = images.make([*SH, "-c", script], [*SH, "/usr/bin/dd"])
    assert image.manifest.sgx.enclave_size == 256 << 20
    code, io, _ = await images.run(image, "launch")
    assert code == 0
    rc = dict(line.split("=") for line in (io / "rc").read_text().split())
    assert rc["small"] == "0"
    assert rc["big"] != "0"
    assert "memory exhausted" in (io / "dd.err").read_text()


def host_tools_plan(out: Path, script: str, **limits: int) -> SandboxPlan:
    """A sandbox running ``sh -c script`` with the host's ``/usr`` (read-only) and ``out``
    writable at ``/out``: the sandbox's own mechanics, without an image."""
    mounts = [Mount("/usr", "ro", Path("/usr")), Mount("/out", "rw", out)]
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        path = Path(top)
        if path.is_symlink():
            mounts.append(Mount(top, "symlink", Path(os.readlink(path))))
        elif path.is_dir():
            mounts.append(Mount(top, "ro", path))
    return SandboxPlan(
        argv=["/bin/sh", "-c", script],
        env={"PATH": "/usr/bin:/bin"},
        mounts=mounts,
        limits=ResourceLimits(wall_seconds=30, **limits),
    )


@pytest.mark.parametrize("limit", [8, 512])
async def test_process_count_limit_is_enforced(tmp_path: Path, limit: int) -> None:
    probe = PidsLimit.create(1)
    if probe is None:
        pytest.skip("no writable pids cgroup on this host")
    probe.stop()
    # The sandbox's tree holds bwrap, the pid namespace's init and the shell; each sleeper
    # started in the background is one more. The shell counts those it started, and dies at
    # the first fork refused.
    script = "i=0; while [ $i -lt 20 ]; do sleep 1 & i=$((i+1)); echo $i > /out/count; done"
    result = await run_sandbox(host_tools_plan(tmp_path, script, max_processes=limit))
    started = int((tmp_path / "count").read_text())
    if limit == 512:  # the control: the same workload starts all its sleepers
        assert (result.exit_code, started) == (0, 20)
    else:
        assert result.exit_code != 0
        assert 1 <= started <= limit - 3


async def test_resource_limits_bind_the_sandbox_hard_and_soft(tmp_path: Path) -> None:
    # Set by the shell that becomes bwrap: what the sandboxed program sees, both limits of each.
    plan = host_tools_plan(
        tmp_path,
        "cat /proc/self/limits > /out/limits",
        cpu_seconds=7,
        memory_bytes=256 << 20,
        file_size_bytes=5 << 20,
        open_files=64,
    )
    result = await run_sandbox(plan)
    assert result.ok, result.describe()
    seen = {}
    for line in (tmp_path / "limits").read_text().splitlines()[1:]:
        name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
        seen[name] = (soft, hard)
    assert seen["Max cpu time"] == ("7", "7")
    assert seen["Max address space"] == (str(256 << 20),) * 2
    assert seen["Max file size"] == (str(5 << 20),) * 2
    assert seen["Max open files"] == ("64", "64")
    assert seen["Max core file size"] == ("0", "0")
