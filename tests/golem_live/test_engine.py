"""A confidential task driven by the real yapapi ``Golem`` engine on a real yagna.

Real: yapapi 0.13.1's engine (demand, negotiation, agreement, activity, ExeScript batches,
storage through its gftp client, invoice acceptance, shutdown), yagna 0.17.6's market, activity
and payment services, our payload, our ``ConfidentialTask`` inside an ordinary yapapi worker,
and our runtime process with the real agent in the sim runner's sandbox. Simulated, because PyPI
has neither: exe-unit (``exeunit.ExeUnitStandIn`` driving the runtime as the supervisor
simulator of ``tests/golem`` does) with ya-provider's market and activity loops, and gftp's
transport (``gftp_standin.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _test_images import write_shell_spec
from exeunit import ActivityProxy, ExeUnitStandIn, ProviderActivities
from golem_support import SHELL_SPEC
from market import PRESET_COEFFS, ProviderAgent, build_offer
from yagna import Identities, YagnaNode
from yapapi import Golem
from yapapi import Task as YapapiTask
from yapapi.config import ApiConfig

from golem_graphene.requestor.client import RequestorPolicy, TaskStepError
from golem_graphene.requestor.golem import HAVE_YAPAPI, ConfidentialTask, confidential_payload
from golem_graphene.requestor.measure import measure_locally
from golem_graphene.sealing.keys import X25519Identity

HERE = Path(__file__).resolve().parent
RUNTIME_BINARY = Path(sys.executable).with_name("golem-graphene")
CONCAT = ["-c", "cat inputs/x inputs/y > outputs/both; echo done"]


def _bwrap_problem() -> str | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    cmd = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--die-with-parent"]
    cmd += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return None if result.returncode == 0 else f"bwrap cannot sandbox here: {result.stderr}"


@pytest.fixture
def gftp(
    tmp_path: Path, yagna: tuple[YagnaNode, Identities], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """``gftp`` on PATH for yapapi's engine: the stand-in, with its URL registry folder."""
    bin_dir, registry = tmp_path / "bin", tmp_path / "gftp"
    bin_dir.mkdir()
    registry.mkdir()
    wrapper = bin_dir / "gftp"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "gftp_standin.py"}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GOLEM_LIVE_GFTP_DIR", str(registry))
    monkeypatch.setenv("GOLEM_LIVE_GFTP_NODE", yagna[1].requestor_id)
    return registry


@dataclass(frozen=True)
class SimRuntime:
    """The runtime's flags for this test, its simulation root and its offer template."""

    flags: list[str]
    sim_root: str
    offer_template: dict[str, Any]


@pytest.fixture
def sim_runtime(tmp_path: Path) -> SimRuntime:
    problem = _bwrap_problem()
    if problem is not None:
        pytest.skip(problem)
    data_dir = tmp_path / "runtime-data"
    flags = ["--runner", "sim", "--data-dir", str(data_dir), "--counter-interval", "0.2"]
    out = {}
    for command in ("test", "offer-template"):
        run = subprocess.run(
            [str(RUNTIME_BINARY), "runtime", *flags, command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        out[command] = json.loads(run.stdout)
    return SimRuntime(flags, out["test"]["sim_root_fingerprint"], out["offer-template"])


@pytest.fixture
def shell_spec(tmp_path: Path) -> Path:
    return write_shell_spec(tmp_path / "shell-spec", SHELL_SPEC)


async def _invoice_when_terminated(
    provider: ProviderAgent, activities: ProviderActivities
) -> tuple[str, str]:
    """ya-provider's end of an agreement: once terminated, invoice its activities' usage by the
    preset's linear prices (duration and the runtime's enclave seconds; no CPU counter here)."""
    agreement_id = await provider.wait_approved(timeout=120)
    await provider.wait_terminated(agreement_id, timeout=300)
    used: list[ExeUnitStandIn] = [
        a for a in activities.activities.values() if a.agreement_id == agreement_id
    ]
    amount = sum(
        (
            Decimal(str(PRESET_COEFFS["golem.usage.duration_sec"]))
            * Decimal(f"{time.monotonic() - a.started_at:.3f}")
            + Decimal(str(PRESET_COEFFS["golem.usage.gramine-sgx.enclave_sec"]))
            * Decimal(f"{a.enclave_seconds():.3f}")
            for a in used
        ),
        Decimal(0),
    )
    invoice_id = await provider.invoice(
        agreement_id, f"{amount:.9f}", [a.activity_id for a in used]
    )
    return agreement_id, invoice_id


async def _first(*coroutines: Any, timeout: float) -> None:
    """Run until the first coroutine ends (raising its error), bounded by ``timeout``."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        finished, _ = await asyncio.wait(tasks, timeout=timeout, return_when="FIRST_COMPLETED")
        if not finished:
            raise TimeoutError(f"the yapapi run did not end within {timeout} s")
        for task in finished:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.sandbox
async def test_confidential_task_under_yapapi_golem(
    yagna: tuple[YagnaNode, Identities],
    provider: ProviderAgent,
    gftp: Path,
    sim_runtime: SimRuntime,
    shell_spec: Path,
    tmp_path: Path,
) -> None:
    assert HAVE_YAPAPI
    node, ids = yagna
    policy = RequestorPolicy(
        trusted_simulation_roots=(sim_runtime.sim_root,),
        expected_mrenclave=(measure_locally(shell_spec / "task.toml", "sim"),),
    )

    activities = ProviderActivities(provider.rest, tmp_path / "activities", sim_runtime.flags, gftp)
    proxy = ActivityProxy(node.api_url, activities)
    await proxy.start()
    activities.start()
    payload, package = confidential_payload(
        shell_spec,
        f"{proxy.url}/packages/shell.tar",
        package_path=tmp_path / "shell.tar",
        runner="sim",
    )
    proxy.packages["shell.tar"] = package.path
    await provider.publish(build_offer(sim_runtime.offer_template, provider_id=ids.provider_id))
    invoicing = asyncio.create_task(_invoice_when_terminated(provider, activities))

    (tmp_path / "x").write_bytes(b"the first input\n" * 100)
    (tmp_path / "y").write_bytes(b"a second, longer input\n" * 150)
    inputs = {"x": tmp_path / "x", "y": tmp_path / "y"}
    me = X25519Identity.generate()

    async def worker(ctx: Any, tasks: AsyncIterator[Any]) -> Any:
        async for task in tasks:
            try:
                async with ConfidentialTask(
                    ctx,
                    shell_spec,
                    inputs,
                    tmp_path / "out",
                    identity=me,
                    policy=policy,
                    args=CONCAT,
                ) as job:
                    async for script in job:
                        yield script
            except TaskStepError as exc:
                task.reject_result(f"{exc.step}: {exc}", retry=False)
                continue
            task.accept_result(job.result)

    config = ApiConfig(
        app_key=ids.requestor_key,
        api_url=node.api_url,
        activity_url=f"{proxy.url}/activity-api/v1",
    )
    done: list[Any] = []

    async def run() -> None:
        async with Golem(budget=1.0, api_config=config, subnet_tag="public") as golem:
            async for task in golem.execute_tasks(
                worker, [YapapiTask(data="both")], payload=payload, timeout=timedelta(minutes=2)
            ):
                done.append(task)

    async def watch() -> None:
        """Fail at once when a stand-in loop dies (instead of at the job's timeout)."""
        while True:
            provider.check()
            activities.check()
            await asyncio.sleep(0.5)

    try:
        await _first(run(), watch(), timeout=240)
        agreement_id, invoice_id = await asyncio.wait_for(invoicing, 60)
        status = await provider.invoice_status(invoice_id)
    finally:
        invoicing.cancel()
        await asyncio.gather(invoicing, return_exceptions=True)
        await activities.close()
        await proxy.close()
    activities.check()

    assert len(done) == 1
    result = done[0].result
    expected = inputs["x"].read_bytes() + inputs["y"].read_bytes()
    assert result.outputs["both"].read_bytes() == expected
    assert result.outputs["stdout"].read_bytes() == b"done\n"
    assert result.verified.simulated and result.exit_status == 0
    # One activity, created and destroyed through yagna's activity service.
    [activity] = activities.activities.values()
    assert activity.agreement_id == agreement_id
    assert activities.destroyed == [activity.activity_id]
    # yapapi's engine accepted the provider's invoice with its allocation before shutting down.
    assert status == "ACCEPTED"
    # Nothing but sealed bytes crossed the provider's volume.
    for path in (activity.workdir / "io").rglob("*"):
        if path.is_file():
            assert b"the first input" not in path.read_bytes(), path
