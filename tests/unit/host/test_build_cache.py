"""The build cache: a second ``build_image`` of unchanged inputs copies the folder the first one
wrote (nothing planned, rendered or signed again), and any change of an input builds again.

The inputs are the spec file and its folder, the container image file, the signing key, the
manifest's log level, this installation's files and ``gramine-sgx-sign``; a reclaimed root, a
damaged entry or a store that cannot take one only cost the speed-up.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from _test_images import write_shell_spec

import golem_graphene.host.image as image_module
from golem_graphene.host import build_cache
from golem_graphene.host.build_cache import find_build
from golem_graphene.host.image import build_image, load_or_create_signing_key
from golem_graphene.images import ImageStore

SPEC_TEXT = """\
name = "shell"

[enclave]
image = "{image}"
args = ["-c", "cat inputs/data.txt > outputs/out.txt"]

[[inputs]]
name = "data.txt"

[outputs]
files = ["out.txt"]
"""


@dataclass
class Setup:
    spec: Path
    key: Path
    store: ImageStore

    def build(self, out: Path, **kwargs: object) -> Path:
        options: dict[str, object] = {"key_path": self.key, "store": self.store, "force": True}
        build_image(self.spec, out, **{**options, **kwargs})  # type: ignore[arg-type]
        return out

    def found(self, log_level: str = "error") -> bool:
        return find_build(self.store, self.spec / "task.toml", self.key, log_level) is not None


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    key = tmp_path / "enclave-key.pem"
    load_or_create_signing_key(key)
    spec = write_shell_spec(tmp_path / "spec", SPEC_TEXT)
    return Setup(spec, key, ImageStore(tmp_path / "store"))


def contents(folder: Path) -> dict[str, object]:
    """Every file's bytes and mode (image.json without its build time), and the root link."""
    found: dict[str, object] = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink():
            found[path.name] = os.readlink(path)
        elif path.name == "image.json":
            info = json.loads(path.read_text())
            found[path.name] = {k: v for k, v in info.items() if k != "built"}
        else:
            found[path.name] = (path.read_bytes(), path.stat().st_mode)
    return found


def fail_if_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    def planned(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was planned again")

    monkeypatch.setattr(image_module, "plan_enclave", planned)


def test_a_second_build_copies_the_first(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = setup.build(tmp_path / "first")
    assert setup.found()
    fail_if_planned(monkeypatch)
    second = setup.build(tmp_path / "second")
    assert contents(second) == contents(first)
    assert (second / "rootfs").resolve() == (first / "rootfs").resolve()
    assert os.access(second / "agent", os.X_OK)
    # The copy is an image in its own right: the runner's loader reads it back.
    assert image_module.EnclaveImage.load(second).info["spec"] == "shell"


def test_an_uncached_build_writes_the_same_folder(setup: Setup, tmp_path: Path) -> None:
    cached = setup.build(tmp_path / "one")
    fresh = setup.build(tmp_path / "two", reuse=False)
    assert contents(cached) == contents(fresh)


def _edit_spec(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = setup.spec / "task.toml"
    spec.write_text(spec.read_text() + "# a comment changes the spec digest\n")


def _new_key(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    setup.key.unlink()
    load_or_create_signing_key(setup.key)


def _touch_image(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = setup.spec / "shell.tar"
    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def _replace_image_by_a_copy(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = setup.spec / "shell.tar"
    shutil.copyfile(archive, archive.with_suffix(".new"))
    os.replace(archive.with_suffix(".new"), archive)


def _move_spec(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same bytes in another folder name another image file (the path is relative).
    moved = setup.spec.with_name("moved")
    shutil.copytree(setup.spec, moved)
    setup.spec = moved


def _new_installation(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    # A reinstalled or edited package (code, templates, agent) has other files.
    real = build_cache._package_fingerprint
    monkeypatch.setattr(build_cache, "_package_fingerprint", lambda: real() + b"x")


CHANGES: dict[str, Callable[[Setup, pytest.MonkeyPatch], None]] = {
    "spec": _edit_spec,
    "key": _new_key,
    "image file touched": _touch_image,
    "image file replaced": _replace_image_by_a_copy,
    "spec folder": _move_spec,
    "installation": _new_installation,
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_of_any_input_builds_again(
    setup: Setup, tmp_path: Path, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.build(tmp_path / "first")
    assert setup.found()
    CHANGES[change](setup, monkeypatch)
    assert not setup.found()
    setup.build(tmp_path / "second")
    assert setup.found()


def test_the_log_level_and_gramine_sgx_sign_are_inputs(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.build(tmp_path / "first")
    assert setup.found("error") and not setup.found("debug")
    tool = tmp_path / "bin" / "gramine-sgx-sign"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
    assert not setup.found("error")


def test_a_reclaimed_root_is_not_reused(setup: Setup, tmp_path: Path) -> None:
    setup.build(tmp_path / "first")
    setup.store.max_roots = 0
    assert setup.store.reclaim() != ()
    assert not setup.found()
    setup.store.max_roots = 4
    rebuilt = setup.build(tmp_path / "second")
    assert (rebuilt / "rootfs").is_dir()


def test_a_damaged_entry_builds_again(setup: Setup, tmp_path: Path) -> None:
    first = setup.build(tmp_path / "first")
    (entry,) = (setup.store.folder / "builds").iterdir()
    (entry / "image" / "agent").unlink()
    second = setup.build(tmp_path / "second")
    assert contents(second) == contents(first)
    (entry,) = (setup.store.folder / "builds").iterdir()
    (entry / "build.json").write_text("{not json")
    assert not setup.found()
    assert contents(setup.build(tmp_path / "third")) == contents(first)
    # A record with a malformed digest is a damaged entry too.
    (entry,) = (setup.store.folder / "builds").iterdir()
    record = json.loads((entry / "build.json").read_text())
    (entry / "build.json").write_text(json.dumps({**record, "image_digest": "sha256:bogus"}))
    assert not setup.found()
    assert contents(setup.build(tmp_path / "again")) == contents(first)
    # A record naming a file outside its entry copies nothing from there.
    (entry,) = (setup.store.folder / "builds").iterdir()
    record = json.loads((entry / "build.json").read_text())
    (tmp_path / "outside").write_text("not an image file")
    record["files"].append("../../../../outside")  # from the entry's image/: tmp_path/outside
    (entry / "build.json").write_text(json.dumps(record))
    fourth = setup.build(tmp_path / "fourth")
    assert contents(fourth) == contents(first)
    # ... where an unchecked copy from the staging folder beside "fourth" would have put it:
    assert not (tmp_path.parent.parent / "outside").exists()


def test_entries_are_bounded(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_cache, "MAX_BUILDS", 2)
    for level in ("error", "warning", "debug"):
        setup.build(tmp_path / level, log_level=level)
    assert len(list((setup.store.folder / "builds").iterdir())) == 2
    assert not setup.found("error") and setup.found("warning") and setup.found("debug")


def test_a_store_that_cannot_keep_entries_only_loses_the_speed_up(
    setup: Setup, tmp_path: Path
) -> None:
    builds = setup.store.folder / "builds"
    builds.write_text("not a folder")
    first = setup.build(tmp_path / "first")
    assert (first / "image.json").is_file() and not setup.found()
