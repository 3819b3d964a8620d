"""Requestors' own specs and images (``PUT /v1/specs/{name}``) on a real provider on loopback.

Refused unless the operator accepts images (403); bounded in size (413) and in number (429);
hostile packages (traversal, links, not a tar) and bad images (a digest that does not match)
are typed 400s that keep nothing; the same spec again is 200, another under the same name 409;
and a task created on an uploaded spec runs end to end, attested against the measurement the
requestor computed offline from the image.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _e2e_support import REQUESTOR_TOKEN, SHELL, Identity, StartProvider, shell_spec_text
from _test_images import write_shell_spec

from golem_graphene.host.task_package import build_task_package
from golem_graphene.protocol.spec import spec_digest
from golem_graphene.requestor.client import Requestor, RequestorPolicy, TaskStepError

pytestmark = pytest.mark.asyncio

ACCEPT = {"accept_from_requestors": True}


@pytest.fixture(scope="module")
def mine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shell spec of the requestor's own, called ``mine``, with its image beside it."""
    return write_shell_spec(tmp_path_factory.mktemp("mine") / "mine", shell_spec_text("mine"))


def package(spec: Path, folder: Path) -> bytes:
    return build_task_package(spec, folder / f"{spec.name}.tar").path.read_bytes()


async def put(url: str, name: str, body: bytes, token: str | None = REQUESTOR_TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{url}/v1/specs/{name}", data=io.BytesIO(body), headers=headers) as response,
    ):
        return response.status, await response.json()


def tar_of(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def kept(data_dir: Path) -> list[str]:
    """What the provider keeps of uploaded specs (temporary uploads included)."""
    folder = data_dir / "requestor-specs"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_refused_unless_the_operator_accepts_images(
    start_provider: StartProvider, mine: Path, tmp_path: Path
) -> None:
    body = package(mine, tmp_path)
    async with start_provider() as provider:
        status, answer = await put(provider.url, "mine", body)
        assert status == 403
        assert answer["code"] == "images_not_accepted"
        assert "accept_from_requestors" in answer["message"]
        assert kept(provider.data_dir) == []
    async with start_provider(images=ACCEPT) as provider:
        status, answer = await put(provider.url, "mine", body, token=None)
        assert status == 401


async def test_same_spec_again_is_200_another_under_its_name_409(
    start_provider: StartProvider, mine: Path, tmp_path: Path
) -> None:
    other = write_shell_spec(tmp_path / "other" / "mine", shell_spec_text("mine", wall=5))
    async with start_provider(images=ACCEPT) as provider:
        status, answer = await put(provider.url, "mine", package(mine, tmp_path))
        assert (status, answer) == (201, {"name": "mine", "sha256": spec_digest(mine)})
        status, answer = await put(provider.url, "mine", package(mine, tmp_path))
        assert (status, answer) == (200, {"name": "mine", "sha256": spec_digest(mine)})
        status, answer = await put(provider.url, "mine", package(other, tmp_path))
        assert status == 409
        assert answer["code"] == "spec_conflict"
        # The operator's own specs come first: a requestor cannot replace one.
        shell = provider.spec(SHELL)
        renamed = tmp_path / "renamed" / SHELL
        write_shell_spec(renamed, shell_spec_text(SHELL, wall=7))
        status, answer = await put(provider.url, SHELL, package(renamed, tmp_path))
        assert (status, answer["code"]) == (409, "spec_conflict")
        status, answer = await put(provider.url, SHELL, package(shell, tmp_path))
        assert (status, answer["sha256"]) == (200, spec_digest(shell))
        assert kept(provider.data_dir) == ["mine"]
        # Listed specs stay the operator's.
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{provider.url}/v1/specs",
                headers={"Authorization": f"Bearer {REQUESTOR_TOKEN}"},
            ) as response,
        ):
            names = {s["name"] for s in (await response.json())["specs"]}
        assert "mine" not in names and SHELL in names


async def test_bounds_413_and_429(
    start_provider: StartProvider, mine: Path, tmp_path: Path
) -> None:
    body = package(mine, tmp_path)
    limits = {**ACCEPT, "max_package_bytes": len(body) - 1}
    async with start_provider(images=limits) as provider:
        status, answer = await put(provider.url, "mine", body)
        assert (status, answer["code"]) == (413, "package_too_large")
        assert "images.max_package_bytes" in answer["message"]
        assert kept(provider.data_dir) == []


async def test_the_least_recently_used_idle_spec_makes_room(
    start_provider: StartProvider, mine: Path, tmp_path: Path, identity: Identity
) -> None:
    """At ``images.max_requestor_specs`` an upload replaces the least recently used spec no
    unfinished task uses (its built image goes too); with every spec in use it is a 429."""
    second = write_shell_spec(tmp_path / "second" / "second", shell_spec_text("second"))
    third = write_shell_spec(tmp_path / "third" / "third", shell_spec_text("third"))
    async with start_provider(images={**ACCEPT, "max_requestor_specs": 2}) as provider:
        images = provider.data_dir / "images"
        assert (await put(provider.url, "mine", package(mine, tmp_path)))[0] == 201
        assert (await put(provider.url, "second", package(second, tmp_path)))[0] == 201
        policy = RequestorPolicy(trusted_simulation_roots=(provider.root_fingerprint,))
        async with Requestor(
            provider.url, identity=identity.key, token=REQUESTOR_TOKEN, policy=policy
        ) as requestor:
            # "mine" is used last (a task), so "second" is the least recently used.
            task = await requestor.create(mine)
            assert (await put(provider.url, "third", package(third, tmp_path)))[0] == 201
            assert kept(provider.data_dir) == ["mine", "third"]
            assert not [p for p in images.iterdir() if p.name.startswith("second-")]
            # "mine" has an unfinished task: only "third" can go, and it is needed... by a task.
            busy = await requestor.create(third)
            status, answer = await put(provider.url, "second", package(second, tmp_path))
            assert (status, answer["code"]) == (429, "too_many_specs")
            assert "in use by an unfinished task" in answer["message"]
            assert kept(provider.data_dir) == ["mine", "third"]
            # Once the task ended, its spec may go.
            await requestor.channel.delete(busy.ref)
            assert (await put(provider.url, "second", package(second, tmp_path)))[0] == 201
            assert kept(provider.data_dir) == ["mine", "second"]
            await requestor.channel.delete(task.ref)


async def test_hostile_packages_and_bad_images_are_typed_400s(
    start_provider: StartProvider, mine: Path, tmp_path: Path
) -> None:
    spec_text = (mine / "task.toml").read_bytes()
    traversal = tar_of([(tarfile.TarInfo("task.toml"), spec_text), (tarfile.TarInfo("../x"), b"")])
    link = tarfile.TarInfo("shell.tar")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    symlink = tar_of([(tarfile.TarInfo("task.toml"), spec_text), (link, None)])
    many = tar_of([(tarfile.TarInfo(f"f{i}"), b"") for i in range(10_001)])
    # A spec whose image pin does not match its image.
    wrong = tmp_path / "wrong" / "mine"
    write_shell_spec(wrong, shell_spec_text("mine"))
    text = (wrong / "task.toml").read_text()
    (wrong / "task.toml").write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, text))
    networked = tmp_path / "net" / "mine"
    write_shell_spec(networked, "network = true\n" + shell_spec_text("mine"))
    cases = {
        "not a tar": (b"not a tar archive at all" * 100, "task_package"),
        "traversal": (traversal, "task_package"),
        "symlink": (symlink, "task_package"),
        "too many entries": (many, "task_package"),
        "no task.toml": (tar_of([(tarfile.TarInfo("x"), b"x")]), "task_package"),
        "wrong digest": (package(wrong, tmp_path), "image_"),
        "network": (package(networked, tmp_path), "config"),
    }
    async with start_provider(images=ACCEPT) as provider:
        for what, (body, code) in cases.items():
            status, answer = await put(provider.url, "mine", body)
            assert status == 400, (what, answer)
            assert answer["code"].startswith(code), (what, answer)
            assert kept(provider.data_dir) == [], what
        status, answer = await put(provider.url, "yours", package(mine, tmp_path))
        assert (status, answer["code"]) == (400, "protocol")
        assert "name" in answer["message"]
        assert not (tmp_path / "x").exists()


async def test_a_task_on_an_uploaded_spec_runs_end_to_end(
    start_provider: StartProvider, mine: Path, identity: Identity, tmp_path: Path
) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes(b"hello from the requestor's own image\n")
    async with start_provider(images=ACCEPT) as provider:
        # Nothing pins the enclave: the requestor measures the image itself, offline.
        policy = RequestorPolicy(trusted_simulation_roots=(provider.root_fingerprint,))
        async with Requestor(
            provider.url, identity=identity.key, token=REQUESTOR_TOKEN, policy=policy
        ) as requestor:
            with pytest.raises(TaskStepError) as refused:
                await requestor.create(mine)
            assert refused.value.code == "not_found"
            assert await requestor.offer(mine) == spec_digest(mine)
            assert await requestor.offer(mine) == spec_digest(mine)
            result = await requestor.run(
                mine,
                {"x": data},
                tmp_path / "out",
                args=["-c", "cat inputs/x > outputs/copy.txt; echo done"],
            )
        assert result.exit_status == 0
        assert result.outputs["copy.txt"].read_bytes() == data.read_bytes()
        assert result.outputs["stdout"].read_bytes() == b"done\n"


async def test_offering_to_a_provider_that_refuses_names_its_code(
    start_provider: StartProvider, mine: Path, identity: Identity
) -> None:
    async with (
        start_provider() as provider,
        Requestor(provider.url, identity=identity.key, token=REQUESTOR_TOKEN) as requestor,
    ):
        with pytest.raises(TaskStepError) as refused:
            await requestor.offer(mine)
    assert refused.value.step == "offer"
    assert refused.value.code == "images_not_accepted"
    assert refused.value.provider_text is not None
