"""The image config's WorkingDir under the ``sim`` runner, end to end: the workload starts in it
(a program named relative to it runs), its task's files are in ``$HOME`` (the workspace), and
the spec's ``workdir`` overrides it; the requestor's offline measurement is what attests."""

from __future__ import annotations

from pathlib import Path

import pytest
from _e2e_support import REQUESTOR_TOKEN, Identity, StartProvider
from _test_images import shell_image

from golem_graphene.requestor.client import Requestor, RequestorPolicy

pytestmark = pytest.mark.asyncio

# The image's Cmd runs a script by a name relative to its WorkingDir (as `WORKDIR /app` plus
# `CMD ["sh", "run.sh"]` would in a Dockerfile).
RUN_SH = b'pwd\ncat "$HOME/inputs/x" > "$HOME/outputs/copy.txt"\n'
SPEC = """\
name = "{name}"

[enclave]
image = "{image}"
enclave_size = "256M"
max_threads = 4
{workdir}

[[inputs]]
name = "x"
max_size = "1K"

[outputs]
files = ["*"]
"""


def write_spec(folder: Path, name: str, workdir: str = "") -> Path:
    folder.mkdir(parents=True)
    reference = shell_image(
        folder,
        extra={"/app/run.sh": RUN_SH},
        config={"WorkingDir": "/app", "Cmd": ["run.sh"]},
    )
    (folder / "task.toml").write_text(SPEC.format(name=name, image=reference, workdir=workdir))
    return folder


async def test_the_workload_starts_in_the_images_working_dir(
    start_provider: StartProvider, identity: Identity, tmp_path: Path
) -> None:
    in_app = write_spec(tmp_path / "in-app", "in-app")
    data = tmp_path / "x.txt"
    data.write_bytes(b"from the requestor\n")
    async with start_provider(images={"accept_from_requestors": True}) as provider:
        policy = RequestorPolicy(trusted_simulation_roots=(provider.root_fingerprint,))
        async with Requestor(
            provider.url, identity=identity.key, token=REQUESTOR_TOKEN, policy=policy
        ) as requestor:
            await requestor.offer(in_app)
            result = await requestor.run(in_app, {"x": data}, tmp_path / "out")
            assert result.exit_status == 0, result.outputs["stderr"].read_text()
            assert result.outputs["stdout"].read_text() == "/app\n"
            assert result.outputs["copy.txt"].read_bytes() == data.read_bytes()
            # The spec's workdir wins: from the workspace, run.sh is not found.
            elsewhere = write_spec(
                tmp_path / "in-workspace", "in-workspace", 'workdir = "/workspace"'
            )
            await requestor.offer(elsewhere)
            other = await requestor.run(elsewhere, {"x": data}, tmp_path / "out-2")
            assert other.exit_status != 0
            assert "run.sh" in other.outputs["stderr"].read_text()
