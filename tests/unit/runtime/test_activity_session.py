"""The Golem runtime's activity session over a scripted agent: its steps, their states and the
same checks the HTTP provider makes when it takes the sealed outputs (one EnclaveSession)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from _agent_fakes import Script, ScriptedRunner, new_task_args

from golem_graphene.host.hermetic import ROOTFS_LINK
from golem_graphene.host.image import IMAGE_FORMAT
from golem_graphene.limits import MAX_RECEIPT_BUNDLE_BYTES
from golem_graphene.protocol.spec import spec_digest
from golem_graphene.runtime.deploy import Deployment
from golem_graphene.runtime.session import ActivitySession, StepResult
from golem_graphene.runtime.settings import RuntimeSettings
from golem_graphene.sealing.input_manifest import ciphertext_name

SPEC = f"""\
name = "echo"

[enclave]
image = "oci-archive:echo.tar@sha256:{"ab" * 32}"

[[inputs]]
name = "x"
max_size = "1K"

[outputs]
files = ["out"]

[limits]
wall_seconds = 30
"""


def deployed(workdir: Path) -> str:
    """A work directory whose activity is deployed (an image folder the runner never reads,
    linking to its container root as a built image links to the image store's)."""
    image = workdir.parent / "image"
    image.mkdir(parents=True)
    root = workdir.parent / "image-store" / f"sha256-{'ab' * 32}"
    root.mkdir(parents=True)
    (image / ROOTFS_LINK).symlink_to(root)
    (image / "agent.manifest").write_text(
        'libos.entrypoint = "/bin/true"\nloader.argv = ["/bin/true"]\n'
    )
    (image / "task.toml").write_text(SPEC)
    (image / "image.json").write_text(json.dumps({"format": IMAGE_FORMAT, "mrenclave": {}}))
    digest = spec_digest(image / "task.toml")
    Deployment(
        image_dir=str(image),
        spec_name="echo",
        spec_sha256=digest,
        package_sha256="00" * 32,
        runner="sim",
    ).save(workdir)
    return digest


def session_of(tmp_path: Path, script: Script | None = None) -> tuple[ActivitySession, str]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    digest = deployed(workdir)
    settings = RuntimeSettings(runner="sim", data_dir=tmp_path / "data")
    return ActivitySession(workdir, settings, runner=ScriptedRunner(script)), digest


def answer(result: StepResult) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(result.stdout)
    return body


async def to_running(session: ActivitySession, digest: str) -> None:
    task_id, nonce, key = new_task_args()
    result = await session.run_step("attest", [task_id, digest, nonce, key])
    assert result.ok, result.stderr
    io = session.volume
    (io / "inputs" / ciphertext_name("x")).write_bytes(b"age ciphertext")
    (io / "manifest.sealed").write_bytes(b"{}")
    assert (await session.run_step("receive-inputs", [])).ok
    result = await session.run_step("execute", [])
    assert result.ok, result.stderr


async def test_the_steps_in_order(tmp_path: Path) -> None:
    session, digest = session_of(tmp_path)
    task_id, nonce, key = new_task_args()
    result = await session.run_step("attest", [task_id, digest, nonce, key])
    assert answer(result)["state"] == "attested"
    evidence = json.loads((session.volume / "evidence.json").read_text())
    assert evidence["task_id"] == task_id and evidence["runner"] == "sim"
    (session.volume / "inputs" / "x.age").write_bytes(b"sealed")
    (session.volume / "manifest.sealed").write_bytes(b"{}")
    result = await session.run_step("receive-inputs", [])
    assert answer(result)["inputs"] == [{"name": "x", "ciphertext_size": 6}]
    assert answer(await session.run_step("execute", []))["state"] == "running"
    done = answer(await session.run_step("collect-outputs", []))
    assert done["state"] == "done" and done["exit_status"] == 0
    assert sorted(o["name"] for o in done["outputs"]) == ["out", "stderr", "stdout"]
    bundle = json.loads((session.volume / "outputs" / "receipt.json").read_text())
    assert bundle["evidence"]["task_id"] == task_id  # the receipt is bundled with the evidence
    assert not session.launch_dir.exists()
    await session.close()


async def test_a_step_out_of_order_changes_nothing(tmp_path: Path) -> None:
    session, _ = session_of(tmp_path)
    result = await session.run_step("execute", [])
    assert result.code == 2 and answer(result)["code"] == "invalid_state"
    assert session.state == "deployed"


async def test_an_input_over_its_limit_is_refused_before_the_enclave_sees_it(
    tmp_path: Path,
) -> None:
    session, digest = session_of(tmp_path)
    task_id, nonce, key = new_task_args()
    assert (await session.run_step("attest", [task_id, digest, nonce, key])).ok
    (session.volume / "inputs" / "x.age").write_bytes(b"\0" * 10_000)  # 1 KiB declared
    (session.volume / "manifest.sealed").write_bytes(b"{}")
    result = await session.run_step("receive-inputs", [])
    assert result.code == 1 and "larger than the spec allows" in answer(result)["message"]
    assert session.state == "failed"


# The runtime used to move the outputs folder and read receipt.json as they were; now it takes
# them through the same EnclaveSession checks as the HTTP provider.


async def test_a_symlinked_outputs_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"

    def swap(io_dir: Path) -> None:
        os.rename(io_dir / "outputs", elsewhere)
        (io_dir / "outputs").symlink_to(elsewhere)

    session, digest = session_of(tmp_path, Script(after_sealing=swap))
    await to_running(session, digest)
    result = await session.run_step("collect-outputs", [])
    assert result.code == 1
    assert "outputs folder is missing or a symbolic link" in answer(result)["message"]
    assert not (session.volume / "outputs").exists()


async def test_a_linked_receipt_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("the provider's own file")

    def link(io_dir: Path) -> None:
        (io_dir / "outputs" / "receipt.json").unlink()
        (io_dir / "outputs" / "receipt.json").symlink_to(secret)

    session, digest = session_of(tmp_path, Script(after_sealing=link))
    await to_running(session, digest)
    result = await session.run_step("collect-outputs", [])
    assert result.code == 1 and "no readable receipt.json" in answer(result)["message"]


async def test_an_oversized_receipt_is_refused(tmp_path: Path) -> None:
    def grow(io_dir: Path) -> None:
        with open(io_dir / "outputs" / "receipt.json", "ab") as f:
            f.truncate(MAX_RECEIPT_BUNDLE_BYTES + 10)

    session, digest = session_of(tmp_path, Script(after_sealing=grow))
    await to_running(session, digest)
    result = await session.run_step("collect-outputs", [])
    assert result.code == 1 and "receipt.json is too large" in answer(result)["message"]


async def test_a_new_attest_replaces_a_running_task(tmp_path: Path) -> None:
    session, digest = session_of(tmp_path)
    await to_running(session, digest)
    runner = session._runner
    assert isinstance(runner, ScriptedRunner)
    first = runner.launched[0]
    task_id, nonce, key = new_task_args()
    assert (await session.run_step("attest", [task_id, digest, nonce, key])).ok
    assert first.killed and len(runner.launched) == 2
    await session.close()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["zz", "00", "00", "age1x"], "bad_arguments"),
        (["00" * 16, "11" * 32, "00" * 32, "age1x"], "bad_arguments"),
        ([], "bad_arguments"),
    ],
)
async def test_attest_arguments_are_checked(tmp_path: Path, args: list[str], code: str) -> None:
    session, _ = session_of(tmp_path)
    result = await session.run_step("attest", args)
    assert result.code == 2 and answer(result)["code"] == code


async def test_an_image_whose_root_left_the_store_is_refused_by_name(tmp_path: Path) -> None:
    # The image store reclaimed the container root the deployed image links to.
    session, digest = session_of(tmp_path)
    (tmp_path / "image" / ROOTFS_LINK).resolve().rmdir()
    task_id, nonce, key = new_task_args()
    result = await session.run_step("attest", [task_id, digest, nonce, key])
    assert result.code == 1 and answer(result)["code"] == "runner"
    assert "no longer in the image store" in answer(result)["message"]
    assert session.state == "failed"
