"""The confidential task flow end to end: real HTTP on loopback, the real sandbox, every spec.

For each spec in ``task_specs/``: the requestor runs it on the sample data through a provider
on loopback; the outputs must equal a plaintext run of the same workload outside any enclave;
the receipt must verify offline with ``golem-graphene verify-receipt``; and the sealed outputs
the requestor keeps in ``out_dir/.sealed`` must open with the ``age`` CLI and the requestor's
identity. Nothing of the task may stay on the provider after the requestor deleted it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _e2e_support import (
    SHELL,
    Identity,
    Provider,
    golem_graphene_cli,
    processes_mentioning,
    real_spec_dirs,
    run_plaintext,
    staging_leftovers,
)

from golem_graphene.host.image import shipped_agent
from golem_graphene.protocol.messages import TaskEvent
from golem_graphene.protocol.spec import TaskSpec
from golem_graphene.requestor.client import TaskResult

pytestmark = pytest.mark.sandbox

AGE = shutil.which("age")


def sample_inputs(spec_dir: Path) -> dict[str, Path]:
    spec = TaskSpec.from_path(spec_dir)
    return {i.name: spec_dir / "sample" / i.name for i in spec.inputs}


def verify_receipt(
    provider: Provider, result: TaskResult, identity: Identity, mrenclave: str
) -> subprocess.CompletedProcess[str]:
    return golem_graphene_cli(
        "verify-receipt",
        result.receipt_path,
        "--outputs",
        result.out_dir / ".sealed",
        "-i",
        identity.path,
        "--root",
        provider.runner.platform.root_path,
        "--trust-simulated-root",
        provider.root_fingerprint,
        "--mrenclave",
        mrenclave,
        "--json",
    )


def test_every_spec_has_sample_inputs() -> None:
    specs = real_spec_dirs()
    assert len(specs) >= 3
    for spec_dir in specs:
        for path in sample_inputs(spec_dir).values():
            assert path.is_file(), path


@pytest.mark.parametrize("spec_dir", real_spec_dirs(), ids=lambda p: p.name)
async def test_spec_end_to_end(
    spec_dir: Path, provider: Provider, identity: Identity, tmp_path: Path
) -> None:
    inputs = sample_inputs(spec_dir)
    expected = run_plaintext(spec_dir, inputs, tmp_path / "plain")
    events: list[TaskEvent] = []
    out = tmp_path / "results"
    async with provider.requestor(identity, spec_dir) as requestor:
        result = await requestor.run(spec_dir, inputs, out, on_event=events.append)

    # The outputs are exactly what the workload produces outside any enclave.
    assert result.exit_status == 0
    assert set(result.outputs) == set(expected)
    for name, data in expected.items():
        assert result.outputs[name] == out / name
        assert (out / name).read_bytes() == data, name
    assert result.receipt.receipt.termination == "exited"
    assert result.receipt.plaintexts_checked
    assert result.verified.simulated
    states = [e.state for e in events]
    assert states.index("running") < states.index("sealing") < states.index("done")

    # The receipt verifies offline, ciphertexts and plaintexts.
    mrenclave = provider.images.measurement(spec_dir)
    checked = verify_receipt(provider, result, identity, mrenclave)
    assert checked.returncode == 0, checked.stderr
    verdict = json.loads(checked.stdout)
    assert verdict["verdict"] == "ok"
    assert verdict["task_id"] == result.task_id
    assert verdict["plaintexts_checked"] is True
    assert verdict["measurement"]["mrenclave"] == mrenclave
    assert {o["name"] for o in verdict["outputs"]} == set(expected)
    assert "SIMULATED" in checked.stderr

    # The sealed outputs open with the age CLI and the requestor's identity.
    sealed = sorted((out / ".sealed").iterdir())
    assert [p.name for p in sealed] == sorted(f"{n}.age" for n in expected)
    if AGE is not None:
        for path in sealed:
            opened = await asyncio.to_thread(
                subprocess.run,
                [AGE, "-d", "-i", str(identity.path), str(path)],
                capture_output=True,
                check=False,
            )
            assert opened.returncode == 0, opened.stderr
            assert opened.stdout == expected[path.name.removesuffix(".age")]

    # Nothing of the task is left: the requestor deleted it, the provider reclaimed it all.
    assert staging_leftovers(out) == []
    assert not provider.task_dir(result.task_id).exists()
    assert provider.server.engine.store.get(result.task_id) is None
    assert processes_mentioning(str(provider.tasks_dir)) == []


async def test_prestaged_input_sealed_with_the_age_cli(
    provider: Provider, identity: Identity, tmp_path: Path
) -> None:
    """An input sealed earlier to the requestor's own key (here by ``age -r``) is re-targeted."""
    if AGE is None:
        pytest.skip("the age CLI is not installed")
    spec_dir = provider.spec("gzip-compress")
    sample = spec_dir / "sample" / "data.txt"
    staged = tmp_path / "data.txt.age"
    await asyncio.to_thread(
        subprocess.run,
        [AGE, "-r", identity.key.recipient().to_string(), "-o", str(staged), str(sample)],
        check=True,
    )
    before = staged.read_bytes()
    expected = run_plaintext(spec_dir, {"data.txt": sample}, tmp_path / "plain")
    async with provider.requestor(identity, spec_dir) as requestor:
        result = await requestor.run(spec_dir, {}, tmp_path / "out", prestaged={"data.txt": staged})
    assert result.outputs["data.txt.gz"].read_bytes() == expected["data.txt.gz"]
    assert staged.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".retarget")) == []


async def test_requestor_args_and_env_reach_the_workload(
    provider: Provider, identity: Identity, tmp_path: Path
) -> None:
    """The sealed manifest's args and env, and only those, replace the spec's defaults."""
    spec_dir = provider.spec(SHELL)
    (tmp_path / "x").write_bytes(b"payload\n")
    script = 'printf "%s|%s|" "$GREETING" "$1" > outputs/o; cat inputs/x >> outputs/o'
    async with provider.requestor(identity, spec_dir) as requestor:
        result = await requestor.run(
            spec_dir,
            {"x": tmp_path / "x"},
            tmp_path / "out",
            args=["-c", script, "sh", "first arg"],
            env={"GREETING": "hello"},
        )
    assert result.outputs["o"].read_bytes() == b"hello|first arg|payload\n"


async def test_run_cli_end_to_end(provider: Provider, identity: Identity, tmp_path: Path) -> None:
    """``golem-graphene run`` against the provider: exit 0, JSON summary, verified outputs."""
    spec_dir = provider.spec("csv-stats")
    expected = run_plaintext(spec_dir, sample_inputs(spec_dir), tmp_path / "plain")
    out = tmp_path / "out"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "golem_graphene",
        "run",
        str(spec_dir),
        "--provider",
        provider.url,
        "--token",
        str(provider.token),
        "--input",
        f"data.csv={spec_dir / 'sample' / 'data.csv'}",
        "--out",
        str(out),
        "-i",
        str(identity.path),
        "--trust-simulated-root",
        provider.root_fingerprint,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    summary = json.loads(stdout)
    assert summary["verdict"] == "ok"
    assert summary["simulated"] is True
    assert (out / "summary.json").read_bytes() == expected["summary.json"]
    assert "SIMULATED root is trusted" in stderr.decode()
    # No --mrenclave: the CLI built the spec itself, in another process than the provider's
    # image, and must have found the same measurement (builds are reproducible).
    assert f"measured from the spec's image: {provider.images.measurement(spec_dir)}" in (
        stderr.decode()
    )

    # verify-receipt is no rubber stamp: the same bundle under another measurement fails.
    checked = golem_graphene_cli(
        "verify-receipt",
        out / "receipt.json",
        "--outputs",
        out / ".sealed",
        "--root",
        provider.runner.platform.root_path,
        "--trust-simulated-root",
        provider.root_fingerprint,
        "--mrenclave",
        "00" * 32,
        "--json",
    )
    assert checked.returncode == 1
    assert json.loads(checked.stdout)["error"]["code"] == "policy_mrenclave"


def test_images_carry_the_shipped_native_agent(provider: Provider) -> None:
    """Every image runs the one static agent this package ships, at its fixed path, and trusts
    nothing but the image folder's files and its container image's root: a shell workload's
    image trusts no Python file, and no file of this host."""
    image = provider.images.get(provider.spec(SHELL))
    assert (image.directory / "agent").read_bytes() == shipped_agent()
    assert image.manifest.loader.argv == (
        "/.golem-graphene/agent",
        "/.golem-graphene/workload.json",
        "/untrusted",
        "/workspace",
    )
    trusted = [t.uri for t in image.manifest.sgx.trusted_files]
    assert "file:image/agent" in trusted
    assert all(uri.startswith(("file:image/", "file:rootfs/")) for uri in trusted)
    assert not [uri for uri in trusted if uri.endswith(".py") or "python3" in uri]
