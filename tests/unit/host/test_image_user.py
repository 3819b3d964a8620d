"""An image config's User becomes the enclave's ``loader.uid``/``loader.gid`` (and the sim
sandbox's ids): numbers as they are, names from the image's own passwd and group files."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_graphene.errors import ConfigError
from golem_graphene.host.hermetic import user_ids
from golem_graphene.host.sandbox import Mount, SandboxPlan, bwrap_command
from golem_graphene.images import RootEntry, RootIndex

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:\napp:x:1001:\n"


@pytest.fixture
def root(tmp_path: Path) -> tuple[RootIndex, Path]:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    entries = [
        RootEntry("etc", "dir", 0o555),
        RootEntry("etc/group", "file", 0o444, len(GROUP), "0" * 64),
        RootEntry("etc/passwd", "file", 0o444, len(PASSWD), "0" * 64),
    ]
    return RootIndex.of(entries), tmp_path


@pytest.mark.parametrize(
    ("user", "ids"),
    [
        ("", (0, 0)),
        ("0", (0, 0)),
        ("1234", (1234, 1234)),
        ("1234:77", (1234, 77)),
        ("app", (1000, 1001)),
        ("app:staff", (1000, 50)),
        ("1000:app", (1000, 1001)),
    ],
)
def test_user_names_and_numbers(
    root: tuple[RootIndex, Path], user: str, ids: tuple[int, int]
) -> None:
    assert user_ids(user, *root) == ids


@pytest.mark.parametrize("user", ["nobody", "app:wheel", "99999999999"])
def test_unknown_users_are_refused(root: tuple[RootIndex, Path], user: str) -> None:
    with pytest.raises(ConfigError, match="User"):
        user_ids(user, *root)


def test_a_named_user_needs_the_images_passwd(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no /etc/passwd"):
        user_ids("app", RootIndex(()), tmp_path)


def test_the_sandbox_runs_as_the_images_user(tmp_path: Path) -> None:
    plan = SandboxPlan(
        argv=["/bin/true"], env={}, mounts=[Mount("/x", "ro", tmp_path)], uid=1000, gid=1001
    )
    command = bwrap_command(plan)
    assert command[command.index("--uid") + 1] == "1000"
    assert command[command.index("--gid") + 1] == "1001"
