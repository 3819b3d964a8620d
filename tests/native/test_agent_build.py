"""How the agent is built: reproducible bytes, a static stripped binary without test entry
points, SHA-256 that agrees with the standard, the sanitizer build through the main flows, the
production binary under bubblewrap with the sim runner's ``/dev/attestation``, and the fuzz
targets for a few seconds each."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from _native_agent import (
    AGENT_SOURCE,
    REPO,
    AgentBinaries,
    AgentProcess,
    Conversation,
    Requestor,
    SimAttestation,
    TaskDirs,
    shell,
)
from conftest import StartAgent
from test_agent_age import VECTOR_PATHS, AgentDecryptor, load_vector, python_open, same
from test_agent_flow import CAT_INPUTS, verify_bundle
from test_agent_hostile import HOSTILE_FRAMES, failure

from golem_graphene.host.sim.platform import SimPlatform

# --- reproducibility and shape ---------------------------------------------------------------


def _build_copy(root: Path) -> bytes:
    """Copy native/agent to `root` and build the production binary there."""
    copy = root / "agent"
    shutil.copytree(AGENT_SOURCE, copy, ignore=shutil.ignore_patterns("build"))
    done = subprocess.run(
        ["make", "-s", "-j2", "-C", str(copy), f"BUILD={root / 'out'}", "all"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return (root / "out" / "golem-graphene-agent").read_bytes()


def test_the_binary_is_reproducible_in_any_folder(agent_bin: AgentBinaries, tmp_path: Path) -> None:
    first = _build_copy(tmp_path / "a")
    second = _build_copy(tmp_path / "some" / "deeper" / "folder-with-a-longer-name")
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    assert first == agent_bin.production.read_bytes()
    for folder in (str(tmp_path), str(REPO)):
        assert folder.encode() not in first


def test_the_production_binary_is_static_stripped_small_and_has_no_test_hooks(
    agent_bin: AgentBinaries,
) -> None:
    data = agent_bin.production.read_bytes()
    assert len(data) <= 2 * 1024 * 1024
    described = subprocess.run(
        ["file", "-b", str(agent_bin.production)], capture_output=True, text=True, check=True
    ).stdout
    assert "statically linked" in described and "stripped" in described
    assert "not stripped" not in described
    for marker in (b"GG_AGENT_TEST", b"--test-", b"age-fail"):
        assert marker not in data
    assert b"GG_AGENT_TEST_ATTESTATION_DIR" in agent_bin.test.read_bytes()


def test_the_production_binary_ignores_the_test_attestation_setting(
    agent_bin: AgentBinaries, tmp_path: Path, sim_platform: SimPlatform
) -> None:
    # The host is untrusted: no environment variable moves the production binary's
    # /dev/attestation (absent on this host, so it reports an unattested run).
    assert not Path("/dev/attestation").exists()
    with SimAttestation(sim_platform, tmp_path / "device") as device:
        dirs = TaskDirs(tmp_path / "task").create(shell("true"))
        env = {"GG_AGENT_TEST_ATTESTATION_DIR": str(device.directory)}
        agent = AgentProcess(agent_bin.production, dirs.argv(), env=env)
        try:
            agent.expect("ready")
            agent.send(Requestor().attest())
            evidence = agent.expect("evidence")
        finally:
            agent.close()
        assert evidence["runner"] == "gramine-direct" and evidence["quote"] is None
        assert device.device is not None and device.device.quotes_served == 0
    # And the test entry points are just unknown arguments to it.
    done = subprocess.run(
        [str(agent_bin.production), "--test-sha256", "/dev/null"], capture_output=True
    )
    assert done.returncode == 1 and b'"workload_format"' in done.stdout


# --- SHA-256 ---------------------------------------------------------------------------------

KNOWN = {
    b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq": (
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    ),
    b"a" * 1_000_000: "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
}


@pytest.mark.parametrize("path_kind", ["sha-ni", "portable"])
def test_sha256_matches_the_standard_and_libsodium(
    agent_bin: AgentBinaries, tmp_path: Path, path_kind: str
) -> None:
    cases = dict(KNOWN)
    for size in [*range(0, 130), 1000, 4095, 4096, 65535, 65536, 65537, 3_000_017]:
        data = hashlib.shake_256(size.to_bytes(4, "big")).digest(size)
        cases[data] = hashlib.sha256(data).hexdigest()
    flag = ["--portable"] if path_kind == "portable" else []
    for i, (data, expected) in enumerate(cases.items()):
        src = tmp_path / f"in-{i}"
        src.write_bytes(data)
        done = subprocess.run(
            [str(agent_bin.test), "--test-sha256", *flag, str(src)],
            capture_output=True,
            text=True,
            check=True,
        )
        ours, libsodium, used = done.stdout.split()
        assert ours == libsodium == expected, len(data)
        if path_kind == "portable":
            assert used == "portable"
        src.unlink()


# --- the sanitizer build ----------------------------------------------------------------------

SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:exitcode=86:abort_on_error=0:detect_stack_use_after_return=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
}


def _clean(stderr: str) -> None:
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
        assert marker not in stderr, stderr[-4000:]


def test_the_sanitizer_build_runs_a_whole_task_clean(
    agent_bin: AgentBinaries, tmp_path: Path, attestation: SimAttestation
) -> None:
    workload = shell(
        CAT_INPUTS + "; echo done; echo err >&2",
        inputs=[{"name": "a", "max_size": 1 << 20, "required": True}],
    )
    dirs = TaskDirs(tmp_path / "task").create(workload)
    env = {
        "PATH": "/usr/bin:/bin",
        "GG_AGENT_TEST_ATTESTATION_DIR": str(attestation.directory),
        **SANITIZER_ENV,
    }
    agent = AgentProcess(agent_bin.asan, dirs.argv(), env=env)
    try:
        conv = Conversation(agent=agent, dirs=dirs, requestor=Requestor())
        conv.to_evidence()
        conv.upload({"a": os.urandom(200_000)})
        events, status = conv.run()
        stderr = agent.stderr()
    finally:
        agent.close()
    _clean(stderr)
    assert status == 0, events[-1]
    verify_bundle(conv, attestation)


@pytest.fixture
def asan_agent(start_agent: StartAgent, agent_bin: AgentBinaries) -> StartAgent:
    def start(*args: object, **kw: object) -> object:
        return start_agent(*args, binary=agent_bin.asan, env_extra=SANITIZER_ENV, **kw)

    return start  # type: ignore[return-value]


@pytest.mark.parametrize(
    "name", ["not-json", "duplicate-key", "raw-utf8", "lone-surrogate", "extra-key", "float"]
)
def test_the_sanitizer_build_refuses_hostile_frames_clean(
    asan_agent: StartAgent, name: str
) -> None:
    conv = asan_agent(shell("true"))
    conv.agent.expect("ready")
    conv.agent.send(HOSTILE_FRAMES[name])
    failure(conv, "control_message")
    _clean(conv.agent.stderr())


def test_the_sanitizer_build_opens_every_testkit_vector_clean(
    agent_bin: AgentBinaries, tmp_path: Path
) -> None:
    decryptor = AgentDecryptor(agent_bin.asan, tmp_path, env=SANITIZER_ENV)
    for path in VECTOR_PATHS:
        _, data, identities, _ = load_vector(path)
        same(decryptor.open(data, identities), python_open(data, identities))


# --- the production binary in a sandbox -------------------------------------------------------


def test_the_production_binary_runs_a_task_in_bubblewrap_with_the_sim_device(
    agent_bin: AgentBinaries, tmp_path: Path, attestation: SimAttestation
) -> None:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None, "bubblewrap is installed by `make setup`"
    workload = shell(
        CAT_INPUTS, inputs=[{"name": "x", "max_size": 100, "required": True}], outputs=["*"]
    )
    dirs = TaskDirs(tmp_path / "task").create(workload)
    # The host's root read-only; the image, the task folder and the workspace under a fresh
    # /tmp, as a Gramine manifest would mount them; the device where Gramine has it.
    sandbox = [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--bind", str(attestation.directory), "/dev/attestation",
        "--tmpfs", "/tmp",
        "--ro-bind", str(agent_bin.production), "/tmp/image/agent",
        "--ro-bind", str(dirs.workload), "/tmp/image/workload.json",
        "--bind", str(dirs.io), "/tmp/untrusted",
        "--tmpfs", "/tmp/workspace",
        "--unshare-all", "--die-with-parent", "--new-session",
    ]  # fmt: skip
    agent = AgentProcess(
        Path("/tmp/image/agent"),
        ["/tmp/image/workload.json", "/tmp/untrusted", "/tmp/workspace"],
        prefix=sandbox,
    )
    conv = Conversation(agent=agent, dirs=dirs, requestor=Requestor())
    try:
        evidence = conv.to_evidence()
        assert evidence["runner"] == "sim"
        conv.upload({"x": b"sandboxed\n"})
        events, status = conv.run()
    finally:
        agent.close()
    assert status == 0, (events, agent.stderr())
    verify_bundle(conv, attestation)


# --- fuzzing -----------------------------------------------------------------------------------


def test_the_fuzz_targets_run_clean_for_a_few_seconds(tmp_path: Path) -> None:
    assert shutil.which("clang") is not None, "clang is installed by `make setup`"
    done = subprocess.run(
        [str(REPO / "scripts" / "fuzz-agent"), "4"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FUZZ_WORK": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for target in ("age-header", "manifest", "frame"):
        assert f"fuzzing {target}" in done.stderr
    assert done.stderr.count("Done ") == 3
    assert not list((tmp_path / "artifacts").iterdir())
