"""What the ``sim`` runner asks bubblewrap for: the plan (mounts, argv, env, limits) built from a
manifest, the checks before a start, and the exact ``sh -c 'ulimit ...' sh bwrap ...`` command line.

Nothing is executed here (a stand-in ``bwrap`` sits on ``PATH``); the integration
tests in ``tests/integration/test_sim_runner.py`` run the same plans under real bubblewrap.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from golem_graphene.errors import RunnerError
from golem_graphene.gramine.manifest import Manifest
from golem_graphene.gramine.trusted_files import expand_trusted_files
from golem_graphene.host import sandbox
from golem_graphene.host.hermetic import IMAGE_LINK, ROOTFS_LINK
from golem_graphene.host.image import EnclaveImage, sim_mrenclave
from golem_graphene.host.runners import SimRunner, prepare_launch_dir
from golem_graphene.host.sandbox import (
    Mount,
    PidsLimit,
    ResourceLimits,
    SandboxPlan,
    SandboxResult,
    bwrap_command,
)
from golem_graphene.host.sim import filesystem
from golem_graphene.host.sim.filesystem import TrustedFileCache, verify_trusted_files
from golem_graphene.protocol.spec import TaskSpec

MANIFEST = """
libos.entrypoint = "/.golem-graphene/agent"
loader.argv = ["/bin/sh", "/.golem-graphene/app/run.sh", "an arg"]
loader.env.HOME = "/workspace"
loader.env.GREETING = {{ value = "hello world" }}
fs.root.uri = "file:rootfs"
fs.start_dir = "/workspace"
fs.mounts = [
  {{ path = "/.golem-graphene", uri = "file:image" }},
  {{ path = "/untrusted", uri = "file:io" }},
  {{ path = "/workspace", type = "tmpfs" }},
  {{ path = "/tmp", type = "tmpfs" }},
{mounts}]
sgx.enclave_size = "{enclave_size}"
sgx.trusted_files = [
  "file:image/app/run.sh",
  "file:image/app/data.txt",
  "file:image/lib/",
{root_files}]
sgx.allowed_files = ["file:io/"{allowed}]
{extra}
"""
"""A hermetic manifest as ``native/agent.manifest.template`` lays it out: a container root as
``fs.root`` (every regular file of it trusted), the image folder at ``/.golem-graphene``."""

ROOT_FILES = ("usr/bin/sh", "usr/lib/libc.so.6", "etc/hostname")
"""The regular files of the test's container root (all trusted by the manifest)."""


def manifest_text(
    *,
    enclave_size: str = "512M",
    mounts: str = "",
    allowed: str = "",
    extra: str = "",
    root_files: tuple[str, ...] = ROOT_FILES,
) -> str:
    listed = "".join(f'  "file:rootfs/{path}",\n' for path in root_files)
    return MANIFEST.format(
        enclave_size=enclave_size, mounts=mounts, allowed=allowed, extra=extra, root_files=listed
    )


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ``bwrap`` first on PATH (never run here)."""
    bin_dir = tmp_path / "tools"
    bin_dir.mkdir()
    for tool in ("bwrap",):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 99\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


ImageFactory = Callable[..., EnclaveImage]


def make_root(root: Path) -> None:
    """A container root as the image store keeps one: files, links as a merged-/usr image has
    them (``/bin -> usr/bin``), and folders the enclave's own mounts cover (``/tmp``, ``/proc``,
    ``/dev``)."""
    for path in ROOT_FILES:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(f"contents of /{path}\n")
    (root / "bin").symlink_to("usr/bin")
    (root / "lib").symlink_to("usr/lib")
    for folder in ("tmp", "proc", "dev"):
        (root / folder).mkdir()


@pytest.fixture
def make_image(tmp_path: Path) -> ImageFactory:
    """An image folder with app files (one not trusted), a fully trusted ``lib`` folder and a
    ``rootfs`` link to a container root kept elsewhere (as in the image store)."""

    def make(
        *,
        enclave_size: str = "512M",
        mounts: str = "",
        allowed: str = "",
        extra: str = "",
        network: bool = False,
        root_files: tuple[str, ...] = ROOT_FILES,
    ) -> EnclaveImage:
        img = tmp_path / "img"
        (img / "app").mkdir(parents=True, exist_ok=True)
        (img / "lib" / "pkg").mkdir(parents=True, exist_ok=True)
        (img / "app" / "run.sh").write_text("echo hello\n")
        (img / "app" / "data.txt").write_text("data\n")
        (img / "app" / "not-trusted.txt").write_text("secret of the host\n")
        (img / "lib" / "a.py").write_text("A = 1\n")
        (img / "lib" / "pkg" / "b.py").write_text("B = 2\n")
        root = tmp_path / "store" / "sha256-root"
        if not root.exists():
            make_root(root)
        if not (img / ROOTFS_LINK).is_symlink():
            (img / ROOTFS_LINK).symlink_to(root)
        text = manifest_text(
            enclave_size=enclave_size,
            mounts=mounts,
            allowed=allowed,
            extra=extra,
            root_files=root_files,
        )
        build = tmp_path / "build-launch"
        prepare_launch_dir_for(img, build)
        manifest = expand_trusted_files(
            Manifest.from_toml(text), build, hash_loader_entrypoint=False
        )
        spec = TaskSpec.from_toml(
            f'name = "t"\nnetwork = {str(network).lower()}\n'
            f'[enclave]\nimage = "oci-archive:shell.tar@sha256:{"ab" * 32}"\n'
            '[outputs]\nfiles = ["out"]\n[limits]\nwall_seconds = 30\n'
        )
        info = {"mrenclave": {"sim": sim_mrenclave(manifest).hex()}}
        return EnclaveImage(img, info, manifest, spec)

    return make


def prepare_launch_dir_for(img: Path, launch: Path) -> None:
    launch.mkdir(exist_ok=True)
    for name, target in ((IMAGE_LINK, img), (ROOTFS_LINK, (img / ROOTFS_LINK).resolve())):
        if not (launch / name).is_symlink():
            (launch / name).symlink_to(target)
    (launch / "io").mkdir(exist_ok=True)


def plan_for(image: EnclaveImage, tmp_path: Path, name: str = "launch") -> SandboxPlan:
    launch = tmp_path / name
    prepare_launch_dir(image, launch)
    return SimRunner(tmp_path / "data").plan(image, launch, launch / ".dev-attestation")


def by_target(plan: SandboxPlan) -> dict[str, Mount]:
    return {m.target: m for m in plan.mounts}


# --- the plan ----------------------------------------------------------------------------------


def test_plan_shows_exactly_the_manifests_files(make_image: ImageFactory, tmp_path: Path) -> None:
    plan = plan_for(make_image(), tmp_path)
    launch = tmp_path / "launch"
    assert by_target(plan) == {
        # The container root (fs.root): its top-level entries, every file in them trusted,
        # bound read-only, its links kept as links; /tmp, /proc and /dev are the enclave's own.
        "/usr": Mount("/usr", "ro", launch / "rootfs/usr"),
        "/etc": Mount("/etc", "ro", launch / "rootfs/etc"),
        "/bin": Mount("/bin", "symlink", Path("usr/bin")),
        "/lib": Mount("/lib", "symlink", Path("usr/lib")),
        "/tmp": Mount("/tmp", "tmpfs"),
        # The image folder (fs.mounts): its trusted files only.
        "/.golem-graphene/app/run.sh": Mount(
            "/.golem-graphene/app/run.sh", "ro", launch / "image/app/run.sh"
        ),
        "/.golem-graphene/app/data.txt": Mount(
            "/.golem-graphene/app/data.txt", "ro", launch / "image/app/data.txt"
        ),
        # Every file below lib/ is trusted: it is bound whole.
        "/.golem-graphene/lib": Mount("/.golem-graphene/lib", "ro", launch / "image/lib"),
        "/untrusted": Mount("/untrusted", "rw", launch / "io"),
        "/workspace": Mount("/workspace", "tmpfs"),
        "/dev/attestation": Mount("/dev/attestation", "rw", launch / ".dev-attestation"),
    }
    # The untrusted file beside trusted ones is not reachable: app/ is not bound whole, nor is
    # the image folder (its manifest, signature and rootfs link are not the enclave's).
    assert not any(
        m.target in ("/", "/.golem-graphene", "/.golem-graphene/app") for m in plan.mounts
    )
    # Nothing of the host's / shows through: the root itself is made read-only once mounted.
    assert plan.read_only_root is True


def test_a_root_file_the_manifest_does_not_trust_is_refused(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    # The root is bound whole, so every regular file in it must be a checked trusted file.
    image = make_image(root_files=ROOT_FILES[:-1])
    with pytest.raises(RunnerError, match="root holds a file its manifest does not trust") as info:
        plan_for(image, tmp_path)
    assert info.value.found == "/etc/hostname"


def test_a_file_slipped_into_the_root_is_refused(make_image: ImageFactory, tmp_path: Path) -> None:
    image = make_image()
    root = (image.directory / ROOTFS_LINK).resolve()
    (root / "usr" / "share").mkdir()
    (root / "usr" / "share" / "extra").write_text("not in the image\n")
    with pytest.raises(RunnerError, match="root holds a file its manifest does not trust") as info:
        plan_for(image, tmp_path)
    assert info.value.found == "/usr/share/extra"


def test_plan_takes_argv_env_workdir_and_limits_from_the_manifest_and_spec(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    plan = plan_for(make_image(enclave_size="512M"), tmp_path)
    assert list(plan.argv) == ["/bin/sh", "/.golem-graphene/app/run.sh", "an arg"]
    assert dict(plan.env) == {"HOME": "/workspace", "GREETING": "hello world"}
    assert plan.workdir == "/workspace"
    assert plan.network is False
    assert plan.limits.wall_seconds == 30 + 120  # the spec's limit plus the sealing margin
    assert plan.limits.memory_bytes == 512 << 20
    small = plan_for(make_image(enclave_size="64M"), tmp_path, "launch-small")
    assert small.limits.memory_bytes == 256 << 20  # never below 256 MiB


def test_network_only_when_the_spec_asks(make_image: ImageFactory, tmp_path: Path) -> None:
    assert plan_for(make_image(network=True), tmp_path).network is True


def test_mounts_of_a_second_launch_are_rebased_not_reused(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    image = make_image()
    runner = SimRunner(tmp_path / "data")
    plans = []
    for name in ("task-1", "task-2"):
        launch = tmp_path / name
        prepare_launch_dir(image, launch)
        plans.append(runner.plan(image, launch, launch / ".dev-attestation"))
    first, second = (by_target(p) for p in plans)
    assert first.keys() == second.keys()
    for target, mount in second.items():
        if mount.kind == "symlink":
            assert mount == first[target]  # a link's text is the image's, not a host path
        elif mount.source is not None:
            assert mount.source.is_relative_to(tmp_path / "task-2"), target
    assert first["/untrusted"].source == tmp_path / "task-1" / "io"
    assert second["/untrusted"].source == tmp_path / "task-2" / "io"
    assert second["/usr"].source == tmp_path / "task-2" / "rootfs" / "usr"
    assert plans[1].read_only_root is True


def test_allow_all_but_log_binds_whole_mounts(make_image: ImageFactory, tmp_path: Path) -> None:
    plan = plan_for(make_image(extra='sgx.file_check_policy = "allow_all_but_log"'), tmp_path)
    launch = tmp_path / "launch"
    mounts = by_target(plan)
    assert mounts["/.golem-graphene"] == Mount("/.golem-graphene", "ro", launch / "image")
    assert mounts["/"] == Mount("/", "ro", launch / "rootfs")


def test_a_missing_allowed_file_is_skipped_but_a_missing_folder_is_refused(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    plan = plan_for(make_image(allowed=', "file:io/later.txt"'), tmp_path)
    assert "/untrusted/later.txt" not in by_target(plan)
    with pytest.raises(RunnerError, match="allowed directory does not exist"):
        plan_for(make_image(allowed=', "file:io/absent/"'), tmp_path, "launch-2")


# --- refusals before a start ---------------------------------------------------------------------


def test_a_changed_trusted_file_is_refused_by_name(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    image = make_image()
    plan_for(image, tmp_path)  # the control: unchanged, it plans
    with open(image.directory / "app" / "data.txt", "a") as f:
        f.write("changed\n")
    with pytest.raises(RunnerError, match=r"trusted file file:image/app/data\.txt was modified"):
        plan_for(image, tmp_path)


def test_a_changed_root_file_is_refused_by_name(make_image: ImageFactory, tmp_path: Path) -> None:
    image = make_image()
    plan_for(image, tmp_path)  # the control: unchanged, it plans
    with open(image.directory / ROOTFS_LINK / "usr" / "bin" / "sh", "a") as f:
        f.write("changed\n")
    with pytest.raises(RunnerError, match=r"trusted file file:rootfs/usr/bin/sh was modified"):
        plan_for(image, tmp_path)


def test_a_missing_trusted_file_is_refused_by_name(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    image = make_image()
    (image.directory / "lib" / "pkg" / "b.py").unlink()
    with pytest.raises(RunnerError, match=r"trusted file file:image/lib/pkg/b\.py cannot be read"):
        plan_for(image, tmp_path)


def test_a_missing_root_file_is_refused_by_name(make_image: ImageFactory, tmp_path: Path) -> None:
    image = make_image()
    (image.directory / ROOTFS_LINK / "usr" / "lib" / "libc.so.6").unlink()
    with pytest.raises(
        RunnerError, match=r"trusted file file:rootfs/usr/lib/libc\.so\.6 cannot be read"
    ):
        plan_for(image, tmp_path)


def test_an_unexpanded_manifest_is_refused(make_image: ImageFactory, tmp_path: Path) -> None:
    image = make_image()
    raw = Manifest.from_toml(manifest_text())
    launch = tmp_path / "launch"
    prepare_launch_dir(image, launch)
    with pytest.raises(RunnerError, match="not expanded"):
        verify_trusted_files(raw, launch, TrustedFileCache())


def test_passthrough_environment_is_refused(make_image: ImageFactory, tmp_path: Path) -> None:
    image = make_image(extra="loader.env.SECRET = { passthrough = true }")
    with pytest.raises(RunnerError, match="passthrough") as info:
        plan_for(image, tmp_path)
    assert info.value.found == "SECRET"


def test_encrypted_mounts_are_refused(make_image: ImageFactory, tmp_path: Path) -> None:
    image = make_image(
        mounts='  { path = "/secret", uri = "file:io/secret", type = "encrypted", '
        'key_name = "mine" },\n'
    )
    with pytest.raises(RunnerError, match="encrypted mounts are not supported") as info:
        plan_for(image, tmp_path)
    assert info.value.found == "/secret"


def test_a_manifest_without_argv_is_refused(make_image: ImageFactory, tmp_path: Path) -> None:
    image = make_image()
    manifest = Manifest.from_dict({**image.manifest.to_dict(), "loader": {"log_level": "error"}})
    no_argv = EnclaveImage(image.directory, image.info, manifest, image.spec)
    with pytest.raises(RunnerError, match=r"loader\.argv is required"):
        plan_for(no_argv, tmp_path)


# --- the trusted-file cache ----------------------------------------------------------------------


def test_hash_cache_skips_unchanged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"content")
    cache = TrustedFileCache()
    digest = cache.sha256(path)

    def no_reads(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was read again")

    monkeypatch.setattr(filesystem, "open", no_reads, raising=False)
    assert cache.sha256(path) == digest


def test_hash_cache_sees_a_change_hidden_behind_the_old_mtime(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"original")
    cache = TrustedFileCache()
    before = cache.sha256(path)
    st = path.stat()
    path.write_bytes(b"tampered")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored; ctime cannot be
    assert cache.sha256(path) != before


def test_hash_cache_refuses_non_files(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        TrustedFileCache().sha256(tmp_path)


# --- the command line ----------------------------------------------------------------------------


def plan_of(**changes: object) -> SandboxPlan:
    fields: dict[str, object] = {
        "argv": ["/bin/sh", "-c", "true"],
        "env": {"A": "1", "B": "two words"},
        "mounts": [
            Mount("/usr/lib/x", "ro", Path("/usr/lib/x")),
            Mount("/work", "tmpfs"),
            Mount("/usr", "ro", Path("/usr")),
            Mount("/work/io", "rw", Path("/srv/io")),
            Mount("/empty", "dir"),
        ],
        "workdir": "/work",
        "limits": ResourceLimits(wall_seconds=5, cpu_seconds=7, memory_bytes=1 << 28),
    }
    fields.update(changes)
    return SandboxPlan(**fields)  # type: ignore[arg-type]


def test_command_line(fake_tools: Path) -> None:
    cmd = bwrap_command(plan_of())
    # The shell sets the limits (hard and soft), then becomes bwrap with the arguments after it.
    limits = "ulimit -c 0 && ulimit -t 7 && ulimit -v 262144 && ulimit -n 1024"
    assert cmd[:4] == ["/bin/sh", "-c", f'{limits} && exec "$@"', "sh"]
    bwrap_at = cmd.index(str(fake_tools / "bwrap"))
    assert bwrap_at == 4
    bwrap = cmd[bwrap_at:]
    for flag in (
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--unshare-net",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert flag in bwrap, flag
    assert bwrap[bwrap.index("--proc") + 1] == "/proc"
    assert bwrap[bwrap.index("--dev") + 1] == "/dev"
    assert bwrap[bwrap.index("--hostname") + 1] == "enclave"
    assert bwrap[-6:] == ["--chdir", "/work", "--", "/bin/sh", "-c", "true"]
    joined = " ".join(bwrap)
    assert "--setenv A 1" in joined
    assert bwrap[bwrap.index("B") + 1] == "two words"  # one argument, not split


def test_parents_are_mounted_before_children(fake_tools: Path) -> None:
    cmd = bwrap_command(plan_of())
    spans = [
        ("--ro-bind", "/usr", "/usr"),
        ("--ro-bind", "/usr/lib/x", "/usr/lib/x"),
        ("--tmpfs", "/work"),
        ("--bind", "/srv/io", "/work/io"),
        ("--dir", "/empty"),
    ]
    positions = {}
    for span in spans:
        for i in range(len(cmd)):
            if tuple(cmd[i : i + len(span)]) == span:
                positions[span] = i
        assert span in positions, span
    assert positions[spans[0]] < positions[spans[1]]
    assert positions[spans[2]] < positions[spans[3]]


def test_a_container_root_keeps_its_links_and_is_remounted_read_only(fake_tools: Path) -> None:
    mounts = [
        Mount("/usr", "ro", Path("/srv/root/usr")),
        Mount("/bin", "symlink", Path("usr/bin")),
        Mount("/work", "tmpfs"),
        Mount("/work/io", "rw", Path("/srv/io")),
    ]
    cmd = bwrap_command(plan_of(mounts=mounts, read_only_root=True))
    at = cmd.index("--symlink")
    assert cmd[at : at + 3] == ["--symlink", "usr/bin", "/bin"]  # the link's own text
    # / becomes read-only after every mount is in place (a later mount would fail on it).
    remount = cmd.index("--remount-ro")
    assert cmd[remount + 1] == "/"
    last_mount = max(i for i, arg in enumerate(cmd) if arg in ("--bind", "--tmpfs", "--symlink"))
    assert last_mount < remount < cmd.index("--setenv")
    assert "--remount-ro" not in bwrap_command(plan_of(mounts=mounts))


def test_network_is_shared_only_when_planned(fake_tools: Path) -> None:
    assert "--unshare-net" not in bwrap_command(plan_of(network=True))


def test_unlimited_resources_are_not_passed(fake_tools: Path) -> None:
    cmd = bwrap_command(plan_of(limits=ResourceLimits(open_files=None)))
    assert cmd[2] == 'ulimit -c 0 && exec "$@"'


def test_sizes_are_rounded_down_to_the_shells_units(fake_tools: Path) -> None:
    limits = ResourceLimits(memory_bytes=(1 << 20) + 1023, file_size_bytes=1025, open_files=None)
    cmd = bwrap_command(plan_of(limits=limits))
    assert cmd[2] == 'ulimit -c 0 && ulimit -v 1024 && ulimit -f 2 && exec "$@"'


def test_the_shell_joins_the_pids_cgroup_first(fake_tools: Path, tmp_path: Path) -> None:
    v1 = tmp_path / "v1 cgroup"
    v1.mkdir()
    (v1 / "tasks").touch()
    v2 = tmp_path / "v2"
    v2.mkdir()
    plan = plan_of(limits=ResourceLimits(open_files=None))
    # cgroup v1: the thread moves itself (0) through "tasks", no process-wide lock is taken.
    assert bwrap_command(plan, PidsLimit(v1))[2] == (
        f"echo 0 > '{v1}/tasks' && ulimit -c 0 && exec \"$@\""
    )
    assert bwrap_command(plan, PidsLimit(v2))[2] == (
        f'echo $$ > {v2}/cgroup.procs && ulimit -c 0 && exec "$@"'
    )


@pytest.mark.parametrize("key", ["", "A=B", "NUL\0"])
def test_invalid_environment_names_are_refused(fake_tools: Path, key: str) -> None:
    with pytest.raises(RunnerError, match="invalid environment variable"):
        bwrap_command(plan_of(env={key: "x"}))


def test_nul_in_an_environment_value_is_refused(fake_tools: Path) -> None:
    with pytest.raises(RunnerError, match="invalid environment variable"):
        bwrap_command(plan_of(env={"A": "x\0y"}))


def test_empty_argv_is_refused(fake_tools: Path) -> None:
    with pytest.raises(RunnerError, match="no argv"):
        bwrap_command(plan_of(argv=[]))


def test_missing_tools_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RunnerError, match="bubblewrap"):
        bwrap_command(plan_of())


@pytest.mark.parametrize(
    ("target", "kind", "source"),
    [
        ("relative", "tmpfs", None),
        ("/nul\0", "tmpfs", None),
        ("/x", "ro", None),
        ("/x", "rw", None),
        ("/x", "tmpfs", Path("/tmp")),
        ("/x", "dir", Path("/tmp")),
        ("/x", "symlink", None),
    ],
)
def test_invalid_mounts_are_refused(target: str, kind: str, source: Path | None) -> None:
    with pytest.raises(RunnerError):
        Mount(target, kind, source)  # type: ignore[arg-type]


def test_results_describe_how_a_run_ended() -> None:
    assert SandboxResult(0, None, False, 0.1).ok
    assert SandboxResult(3, None, False, 0.1).describe() == "exit 3"
    killed = SandboxResult(None, signal.SIGKILL, False, 0.1)
    assert not killed.ok
    assert killed.describe() == "killed by signal SIGKILL"
    timed_out = SandboxResult(None, signal.SIGKILL, True, 5.04)
    assert not timed_out.ok
    assert timed_out.describe() == "killed: timeout after 5.0 s"
    assert not SandboxResult(0, None, True, 5.0).ok


async def test_children_are_waited_for_through_pidfds() -> None:
    sandbox.use_pidfd_child_watcher()
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            assert isinstance(asyncio.get_child_watcher(), sandbox._PidfdChildWatcher)
    exits = await asyncio.create_subprocess_exec("/bin/sh", "-c", "exit 3")
    assert await exits.wait() == 3
    sleeps = await asyncio.create_subprocess_exec("/bin/sh", "-c", "sleep 30")
    sleeps.kill()
    assert await sleeps.wait() == -signal.SIGKILL
    # Many at once, ending in another order than started: each gets its own status.
    procs = [
        await asyncio.create_subprocess_exec("/bin/sh", "-c", f"sleep 0.0{9 - i}; exit {i}")
        for i in range(8)
    ]
    assert await asyncio.gather(*(p.wait() for p in procs)) == list(range(8))
