"""Fixtures of the Golem tests: the real runtime process, driven by the supervisor simulator.

- ``runtime_flags`` (session): ``--runner sim`` with one data folder for the session, so each
  task package's enclave image is built once (the runtime caches it there);
- ``shell_spec`` / ``shell_package`` (session): a native ``/bin/sh`` spec whose script comes
  from the requestor's args, and its task package (tar);
- ``sim_root`` (session): the simulation root's fingerprint, as the runtime's ``test`` prints it;
- ``shell_policy`` (session): a requestor policy that trusts that root and pins the measurement
  of the requestor's *own* build of the spec;
- ``activity``: an :class:`ExeUnitSimulator` after ``deploy`` and ``start``, one per module
  (modules using it run their tests on the module's event loop).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from _test_images import write_shell_spec
from golem_support import SHELL_SPEC
from supervisor import RUNTIME_BINARY, ExeUnitSimulator

from golem_graphene.requestor.client import RequestorPolicy
from golem_graphene.requestor.golem.package import TaskPackage, build_task_package
from golem_graphene.requestor.measure import measure_locally
from golem_graphene.sealing.keys import X25519Identity


def _bwrap_problem() -> str | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    cmd = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--die-with-parent"]
    cmd += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return None if result.returncode == 0 else f"bwrap cannot sandbox here: {result.stderr}"


@pytest.fixture(scope="session")
def sandbox_ok() -> None:
    problem = _bwrap_problem()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture(scope="session")
def runtime_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-data")


@pytest.fixture(scope="session")
def runtime_flags(runtime_data: Path) -> list[str]:
    return ["--runner", "sim", "--data-dir", str(runtime_data), "--counter-interval", "0.2"]


@pytest.fixture(scope="session")
def shell_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shell_spec(tmp_path_factory.mktemp("shell-spec"), SHELL_SPEC)


@pytest.fixture(scope="session")
def shell_package(shell_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> TaskPackage:
    return build_task_package(shell_spec, tmp_path_factory.mktemp("packages") / "shell.tar")


@pytest.fixture(scope="session")
def sim_root(runtime_flags: list[str], sandbox_ok: None) -> str:
    """The simulation root the runtime's platform uses, from its own ``test`` report."""
    out = subprocess.run(
        [str(RUNTIME_BINARY), "runtime", *runtime_flags, "test"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    fingerprint: str = json.loads(out.stdout)["sim_root_fingerprint"]
    return fingerprint


@pytest.fixture(scope="session")
def shell_policy(shell_spec: Path, sim_root: str) -> RequestorPolicy:
    """Trust the sim root by name; expect the measurement of our own build of the spec."""
    return RequestorPolicy(
        trusted_simulation_roots=(sim_root,),
        expected_mrenclave=(measure_locally(shell_spec / "task.toml", "sim"),),
    )


@pytest.fixture
def identity() -> X25519Identity:
    return X25519Identity.generate()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_exeunit(
    tmp_path_factory: pytest.TempPathFactory,
    shell_package: TaskPackage,
    runtime_flags: list[str],
    sandbox_ok: None,
) -> AsyncIterator[ExeUnitSimulator]:
    """One activity per test module, as one requestor runs task after task on it."""
    workdir = tmp_path_factory.mktemp("activity") / "work"
    exeunit = ExeUnitSimulator(workdir, shell_package.path, list(runtime_flags))
    await exeunit.deploy()
    await exeunit.start()
    try:
        yield exeunit
    finally:
        await exeunit.close()


@pytest.fixture
def activity(shared_exeunit: ExeUnitSimulator) -> Iterator[ExeUnitSimulator]:
    """The module's activity (deployed, started in blocking mode), with no hook left over."""
    shared_exeunit.on_download = None
    yield shared_exeunit
    shared_exeunit.on_download = None
