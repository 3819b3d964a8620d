"""Hermetic enclaves (golem_graphene/host/hermetic.py): what runs and what is measured, made
from a container image's root and config and the task spec, with nothing of the host.

The workload tests use hand-written root indexes (the pure functions need no files); the
measurement tests write real images (tests/_image_builder.py) in several packings and measure
them with :func:`golem_graphene.host.measure.measure`, each test with an image store of its own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from _image_builder import (
    Compression,
    Entry,
    file,
    folder,
    layer_tar,
    symlink,
    write_docker_archive,
    write_oci_layout,
)

from golem_graphene.errors import ConfigError, ImageDigestError, RunnerError
from golem_graphene.host.hermetic import (
    IMAGE_LINK,
    ROOTFS_LINK,
    default_spec,
    plan_enclave,
    shipped_agent,
    sim_mrenclave,
    workload_json,
)
from golem_graphene.host.image import IMAGE_FORMAT, EnclaveImage, build_image
from golem_graphene.host.measure import measure
from golem_graphene.images import ImageStore, RootEntry, RootIndex, RuntimeConfig
from golem_graphene.protocol.spec import EnclaveSpec, InputSpec, OutputsSpec, TaskSpec

REFERENCE = f"oci-archive:image.tar@sha256:{'ab' * 32}"
"""A pinned reference for specs whose image is never opened (the pure-function tests)."""

NO_ROOT = Path("/nonexistent-image-root")
"""Where a test root would be on disk: read only for a named User (these tests give numbers)."""


# --- hand-written roots --------------------------------------------------------------------------


def f(path: str, mode: int = 0o755, data: bytes | None = None) -> RootEntry:
    body = data if data is not None else path.encode()
    return RootEntry(path, "file", mode, size=len(body), sha256=hashlib.sha256(body).hexdigest())


def d(path: str) -> RootEntry:
    return RootEntry(path, "dir", 0o755)


def ln(path: str, target: str) -> RootEntry:
    return RootEntry(path, "link", 0o777, target=target)


MERGED_USR = [
    ln("bin", "usr/bin"),
    d("etc"),
    f("etc/motd", 0o644),
    d("usr"),
    d("usr/bin"),
    f("usr/bin/sh"),
    f("usr/bin/python3.11"),
    ln("usr/bin/python3", "python3.11"),
    f("usr/bin/notes.txt", 0o644),
    d("usr/local"),
    d("usr/local/bin"),
    d("app"),
]
"""A merged-/usr root as Debian images have it: ``/bin -> usr/bin``."""


def root(*extra: RootEntry) -> RootIndex:
    return RootIndex.of([*MERGED_USR, *extra])


def task_spec(**enclave: Any) -> TaskSpec:
    return TaskSpec(
        name="t",
        enclave=EnclaveSpec(image=REFERENCE, **enclave),
        inputs=(InputSpec(name="data.csv", max_size=1 << 20),),
        outputs=OutputsSpec(files=("out.json", "*.log")),
    )


def workload(spec: TaskSpec, runtime: RuntimeConfig, index: RootIndex) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(workload_json(spec, runtime, index))
    return data


IMAGE_CONFIG = RuntimeConfig(
    entrypoint=("/bin/sh", "-c"),
    cmd=("echo from the image",),
    env=("PATH=/usr/bin:/bin", "LANG=C", "FROM_IMAGE=1"),
    working_dir="/app",
    user="",
)


# --- the workload: the image's config, then the spec's overrides ---------------------------------


def test_without_overrides_the_image_config_decides() -> None:
    w = workload(task_spec(), IMAGE_CONFIG, root())
    # /bin/sh is the file /usr/bin/sh: the link is resolved inside the root.
    assert w["argv"] == ["/usr/bin/sh", "-c"]
    assert w["args"] == ["echo from the image"]
    assert w["env"] == {"PATH": "/usr/bin:/bin", "LANG": "C", "FROM_IMAGE": "1"}
    assert w["workdir"] == "/app"  # the image's WorkingDir
    assert w["inputs"] == [{"name": "data.csv", "max_size": 1 << 20, "required": True}]
    assert w["outputs"] == ["out.json", "*.log"]
    assert w["format"] == 1


def test_the_specs_entrypoint_args_and_env_override_the_image() -> None:
    spec = task_spec(
        entrypoint=["python3", "-u"],
        args=["/app/main.py", "inputs/data.csv"],
        env={"LANG": "C.UTF-8", "EXTRA": "yes"},
    )
    w = workload(spec, IMAGE_CONFIG, root())
    assert w["argv"] == ["/usr/bin/python3.11", "-u"]  # on PATH, then the link followed
    assert w["args"] == ["/app/main.py", "inputs/data.csv"]
    # The image's Env, the spec's on top.
    assert w["env"] == {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "FROM_IMAGE": "1",
        "EXTRA": "yes",
    }


def test_args_alone_replace_cmd_and_keep_the_entrypoint() -> None:
    w = workload(task_spec(args=["exit 3"]), IMAGE_CONFIG, root())
    assert (w["argv"], w["args"]) == (["/usr/bin/sh", "-c"], ["exit 3"])
    # An empty list is an override too (no arguments), not "use Cmd".
    w = workload(task_spec(args=[]), IMAGE_CONFIG, root())
    assert (w["argv"], w["args"]) == (["/usr/bin/sh", "-c"], [])


def test_an_entrypoint_alone_keeps_cmd_as_its_arguments() -> None:
    w = workload(task_spec(entrypoint=["/usr/bin/python3"]), IMAGE_CONFIG, root())
    assert (w["argv"], w["args"]) == (["/usr/bin/python3.11"], ["echo from the image"])


def test_without_an_entrypoint_cmds_first_word_is_the_program() -> None:
    runtime = RuntimeConfig(cmd=("sh", "-c", "true"), env=("PATH=/bin",))
    w = workload(task_spec(), runtime, root())
    assert (w["argv"], w["args"]) == (["/usr/bin/sh"], ["-c", "true"])
    # The spec's args then replace the whole command, program included.
    w = workload(task_spec(args=["python3", "x.py"]), runtime, root())
    assert (w["argv"], w["args"]) == (["/usr/bin/python3.11"], ["x.py"])


def test_the_default_path_is_used_when_the_image_sets_none() -> None:
    runtime = RuntimeConfig(cmd=("sh",))
    assert workload(task_spec(), runtime, root())["argv"] == ["/usr/bin/sh"]


# --- finding the program in the root -------------------------------------------------------------


def program(name: str, index: RootIndex, path: str = "/usr/local/bin:/usr/bin:/bin") -> str:
    runtime = RuntimeConfig(entrypoint=(name,), env=(f"PATH={path}",))
    argv: list[str] = workload(task_spec(), runtime, index)["argv"]
    return argv[0]


def test_path_lookup_follows_links_inside_the_root() -> None:
    # PATH names only /bin, a link to usr/bin: the program is the file behind it.
    assert program("sh", root(), path="/bin") == "/usr/bin/sh"
    # An absolute link target is the root's, not the host's.
    absolute = RootIndex.of([e for e in MERGED_USR if e.path != "bin"] + [ln("bin", "/usr/bin")])
    assert program("sh", absolute, path="/bin") == "/usr/bin/sh"
    # Relative targets with "..", and chains of links.
    index = root(ln("usr/local/bin/tool", "../../bin/python3"))
    assert program("tool", index) == "/usr/bin/python3.11"
    # ".." cannot climb out of the root (as in a chroot): /.. is /.
    index = root(ln("usr/local/bin/up", "../../../../../usr/bin/sh"))
    assert program("up", index) == "/usr/bin/sh"


def test_path_order_decides_and_non_executables_are_skipped() -> None:
    index = root(f("usr/local/bin/sh", data=b"another shell"))
    assert program("sh", index) == "/usr/local/bin/sh"
    assert program("sh", index, path="/usr/bin:/usr/local/bin") == "/usr/bin/sh"
    # A non-executable file earlier on PATH is passed over, as execvp does.
    index = root(f("usr/local/bin/sh", mode=0o644))
    assert program("sh", index) == "/usr/bin/sh"


@pytest.mark.parametrize(
    ("entries", "runtime", "spec_enclave", "message"),
    [
        ([], RuntimeConfig(), {}, "nothing to run"),
        ([], RuntimeConfig(cmd=("",)), {}, "nothing to run"),
        ([], RuntimeConfig(env=("PATH=/bin",)), {"args": []}, "nothing to run"),
        ([], RuntimeConfig(entrypoint=("/usr/bin/missing",)), {}, "not an executable file"),
        ([], RuntimeConfig(entrypoint=("missing",)), {}, "not an executable file"),
        ([], RuntimeConfig(entrypoint=("/usr/bin/notes.txt",)), {}, "not an executable file"),
        ([], RuntimeConfig(entrypoint=("notes.txt",)), {}, "not an executable file"),
        ([], RuntimeConfig(entrypoint=("/usr/bin",)), {}, "not an executable file"),
        ([ln("usr/bin/gone", "nowhere")], RuntimeConfig(entrypoint=("gone",)), {}, "not an"),
        (
            [ln("usr/bin/a", "b"), ln("usr/bin/b", "a")],
            RuntimeConfig(entrypoint=("/usr/bin/a",)),
            {},
            "not an executable file",
        ),
        ([], RuntimeConfig(entrypoint=("usr/bin/sh",)), {}, "absolute path or a name on PATH"),
        ([], RuntimeConfig(cmd=("sh",), env=("PATH=bin:.",)), {}, "not an executable file"),
        ([], RuntimeConfig(cmd=("sh",), env=("NOEQUALS",)), {}, "malformed Env entry"),
        ([], IMAGE_CONFIG, {"entrypoint": ["/usr/bin/notes.txt"]}, "not an executable file"),
    ],
    ids=[
        "no-entrypoint-no-cmd",
        "empty-cmd",
        "empty-args-override",
        "missing-absolute",
        "missing-on-path",
        "not-executable",
        "not-executable-on-path",
        "a-folder",
        "dangling-link",
        "link-loop",
        "relative-with-slash",
        "only-relative-path-entries",
        "malformed-env",
        "spec-names-a-non-executable",
    ],
)
def test_no_runnable_program_is_a_config_error(
    entries: list[RootEntry], runtime: RuntimeConfig, spec_enclave: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        workload_json(task_spec(**spec_enclave), runtime, root(*entries))
    with pytest.raises(ConfigError, match=message):
        plan_enclave(task_spec(**spec_enclave), runtime, root(*entries), NO_ROOT)


# --- the plan: the image folder's files and the manifest ----------------------------------------


def test_the_plan_trusts_the_image_folder_and_every_root_file() -> None:
    index = root()
    spec = task_spec()
    plan = plan_enclave(spec, IMAGE_CONFIG, index, NO_ROOT)
    assert plan.files == {
        "agent": shipped_agent(),
        "rootfs.json": index.to_bytes(),
        "workload.json": workload_json(spec, IMAGE_CONFIG, index),
    }
    trusted = {tf.uri: tf.sha256 for tf in plan.manifest.sgx.trusted_files}
    expected = {
        f"file:{IMAGE_LINK}/{name}": hashlib.sha256(data).hexdigest()
        for name, data in plan.files.items()
    }
    expected |= {f"file:{ROOTFS_LINK}/{e.path}": e.sha256 for e in index.files()}
    assert trusted == expected  # no link, no folder, nothing of the host
    manifest = plan.manifest
    assert manifest.fs.root is not None and manifest.fs.root.uri == f"file:{ROOTFS_LINK}"
    assert manifest.libos.entrypoint == "/.golem-graphene/agent"
    assert manifest.is_expanded
    assert plan.sim_mrenclave == sim_mrenclave(manifest)


def test_the_plan_follows_the_specs_sgx_fields() -> None:
    spec = task_spec(enclave_size="256M", max_threads=4, isvprodid=7, isvsvn=3, debug=True)
    sgx = plan_enclave(spec, IMAGE_CONFIG, root(), NO_ROOT).manifest.sgx
    assert (sgx.enclave_size, sgx.max_threads) == (256 << 20, 4)
    assert (sgx.isvprodid, sgx.isvsvn, sgx.debug) == (7, 3, True)


def test_every_part_of_the_root_and_spec_enters_the_measurement() -> None:
    base = plan_enclave(task_spec(), IMAGE_CONFIG, root(), NO_ROOT).sim_mrenclave
    assert plan_enclave(task_spec(), IMAGE_CONFIG, root(), NO_ROOT).sim_mrenclave == base  # stable
    changed = [
        # A file's content, a file's mode, a link's target, a new empty folder.
        (task_spec(), IMAGE_CONFIG, root(f("etc/extra", 0o644))),
        (
            task_spec(),
            IMAGE_CONFIG,
            RootIndex.of([*MERGED_USR[:2], f("etc/motd", 0o600), *MERGED_USR[3:]]),
        ),
        (task_spec(), IMAGE_CONFIG, RootIndex.of([ln("bin", "/usr/bin"), *MERGED_USR[1:]])),
        (task_spec(), IMAGE_CONFIG, root(d("srv"))),
        # What runs, with what, under which limits.
        (task_spec(args=["other"]), IMAGE_CONFIG, root()),
        (task_spec(env={"X": "1"}), IMAGE_CONFIG, root()),
        (task_spec(isvsvn=1), IMAGE_CONFIG, root()),
        (
            task_spec(),
            RuntimeConfig(entrypoint=("/bin/sh", "-c"), cmd=("echo from the image",)),
            root(),
        ),
    ]
    values = [plan_enclave(*case, NO_ROOT).sim_mrenclave for case in changed]
    assert base not in values
    assert len(set(values)) == len(values)


def _config(working_dir: str = IMAGE_CONFIG.working_dir, user: str = "") -> RuntimeConfig:
    return RuntimeConfig(
        entrypoint=IMAGE_CONFIG.entrypoint,
        cmd=IMAGE_CONFIG.cmd,
        env=IMAGE_CONFIG.env,
        working_dir=working_dir,
        user=user,
    )


def test_the_working_folder_and_the_user_enter_the_measurement() -> None:
    """The workload starts in WorkingDir; the User runs the enclave (loader.uid/gid)."""
    base = plan_enclave(task_spec(), IMAGE_CONFIG, root(), NO_ROOT)
    elsewhere = plan_enclave(
        task_spec(), _config(working_dir="/elsewhere"), root(d("elsewhere")), NO_ROOT
    )
    assert elsewhere.sim_mrenclave != base.sim_mrenclave
    as_root = plan_enclave(task_spec(), _config(user="0:0"), root(), NO_ROOT)
    assert as_root.sim_mrenclave == base.sim_mrenclave
    other = plan_enclave(task_spec(), _config(user="1000:1000"), root(), NO_ROOT)
    assert (other.manifest.loader.uid, other.manifest.loader.gid) == (1000, 1000)
    assert other.sim_mrenclave != base.sim_mrenclave


# --- measuring real images: packing does not matter, content does -------------------------------

SH = b"#!shell\n" + bytes(range(256)) * 16

FILES: list[Entry] = [
    folder("usr"),
    folder("usr/bin"),
    file("usr/bin/sh", SH, 0o755),
    symlink("bin", "usr/bin"),
    folder("etc"),
    file("etc/hostname", b"enclave\n"),
    folder("tmp", 0o1777),
]
"""The root every packing below holds (the image config: Cmd ["/bin/sh"], PATH=/bin)."""


def oci(path: Path, layers: list[list[Entry]], compression: Compression = "gzip") -> str:
    built = write_oci_layout(
        path, [layer_tar(entries) for entries in layers], compression=compression
    )
    return f"oci:{path}@{built.digest}"


def docker(path: Path, layers: list[list[Entry]]) -> str:
    built = write_docker_archive(path, [layer_tar(entries) for entries in layers])
    return f"docker-archive:{path}@{built.digest}"


def sim_of(reference: str, tmp_path: Path) -> str:
    return measure(reference, store=ImageStore(tmp_path / "store")).sim


@pytest.fixture(autouse=True)
def no_gramine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No gramine-sgx-sign on PATH (measure would build and sign with it), and the user's
    cache in the test's folder."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_layers_compression_and_archive_form_do_not_change_the_measurement(tmp_path: Path) -> None:
    one_gzip = oci(tmp_path / "one", [FILES], "gzip")
    two_plain = oci(tmp_path / "two", [FILES[:3], FILES[3:]], "none")
    two_docker = docker(tmp_path / "two.tar", [FILES[:3], FILES[3:]])
    # A file written in one layer and removed by a whiteout in the next is not in the root.
    whiteout = oci(
        tmp_path / "wh",
        [[*FILES, file("etc/secret", b"gone")], [folder("etc"), file("etc/.wh.secret", b"")]],
        "zstd",
    )
    references = [one_gzip, two_plain, two_docker, whiteout]
    assert len({r.rsplit("@", 1)[1] for r in references}) == 4  # four different images
    measured = [measure(r, store=ImageStore(tmp_path / "store")) for r in references]
    assert len({m.sim for m in measured}) == 1
    assert [m.image_digest for m in measured] == [r.rsplit("@", 1)[1] for r in references]
    assert all(m.gramine_sgx is None and m.reason for m in measured)  # no Gramine here


def test_one_changed_byte_changes_the_measurement(tmp_path: Path) -> None:
    base = sim_of(oci(tmp_path / "a", [FILES]), tmp_path)
    flipped = SH[:100] + bytes([SH[100] ^ 1]) + SH[101:]
    changed = [file("usr/bin/sh", flipped, 0o755) if e.name == "usr/bin/sh" else e for e in FILES]
    assert sim_of(oci(tmp_path / "b", [changed]), tmp_path) != base
    # The control: the same bytes packed again measure the same.
    assert sim_of(oci(tmp_path / "c", [FILES], "none"), tmp_path) == base


def test_a_changed_link_target_changes_the_measurement(tmp_path: Path) -> None:
    base = sim_of(oci(tmp_path / "a", [FILES]), tmp_path)
    # /bin -> /usr/bin: the same program runs (/usr/bin/sh), the same files are trusted; only
    # the root's index (a measured file) tells them apart.
    relinked = [symlink("bin", "/usr/bin") if e.name == "bin" else e for e in FILES]
    assert sim_of(oci(tmp_path / "b", [relinked]), tmp_path) != base


def test_a_changed_mode_changes_the_measurement(tmp_path: Path) -> None:
    base = sim_of(oci(tmp_path / "a", [FILES]), tmp_path)
    private = [
        file("etc/hostname", b"enclave\n", 0o600) if e.name == "etc/hostname" else e for e in FILES
    ]
    assert sim_of(oci(tmp_path / "b", [private]), tmp_path) != base


def test_a_spec_measures_its_own_pinned_image(tmp_path: Path) -> None:
    spec_dir = tmp_path / "spec"
    reference = oci(spec_dir / "layout", [FILES])
    digest = reference.rsplit("@", 1)[1]
    (spec_dir / "task.toml").write_text(
        f'name = "t"\n[enclave]\nimage = "oci:layout@{digest}"\nargs = ["sh", "-c", "true"]\n'
        '[outputs]\nfiles = ["out"]\n'
    )
    store = ImageStore(tmp_path / "store")
    by_spec = measure(spec=spec_dir, store=store)
    assert by_spec.image_digest == digest
    assert measure(reference, spec=spec_dir, store=store).sim == by_spec.sim
    # The spec's args differ from the image's Cmd: not the default spec's measurement.
    assert by_spec.sim != measure(reference, store=store).sim
    # Another image than the one the spec pins is refused.
    other = oci(tmp_path / "other", [FILES, [file("etc/more")]])
    with pytest.raises(ConfigError, match="not the one the spec pins"):
        measure(other, spec=spec_dir, store=store)


def test_an_image_that_does_not_match_its_pin_is_refused(tmp_path: Path) -> None:
    reference = oci(tmp_path / "a", [FILES])
    with pytest.raises(ImageDigestError):
        measure(
            reference.rsplit("@", 1)[0] + "@sha256:" + "0" * 64, store=ImageStore(tmp_path / "s")
        )


def _built(tmp_path: Path) -> tuple[Path, ImageStore, EnclaveImage]:
    """A spec over an OCI layout of FILES, its store and its image built."""
    spec_dir = tmp_path / "spec"
    reference = oci(spec_dir / "layout", [FILES])
    (spec_dir / "task.toml").write_text(
        f'name = "t"\n[enclave]\nimage = "oci:layout@{reference.rsplit("@", 1)[1]}"\n'
        '[outputs]\nfiles = ["out"]\n'
    )
    store = ImageStore(tmp_path / "store")
    image = build_image(spec_dir, tmp_path / "image", key_path=tmp_path / "key.pem", store=store)
    return spec_dir, store, image


def test_build_and_measure_agree(tmp_path: Path) -> None:
    spec_dir, store, image = _built(tmp_path)
    assert image.info["mrenclave"]["sim"] == measure(spec=spec_dir, store=store).sim
    # The image folder links to the store's root, which holds exactly the image's files.
    rootfs = (image.directory / ROOTFS_LINK).resolve()
    assert rootfs.parent == store.folder
    assert (rootfs / "usr" / "bin" / "sh").read_bytes() == SH
    assert (rootfs / "bin").readlink() == Path("usr/bin")
    workload_file = json.loads((image.directory / "workload.json").read_text())
    assert workload_file["argv"] == ["/usr/bin/sh"]


def test_an_image_whose_root_left_the_store_or_of_another_format_is_refused(
    tmp_path: Path,
) -> None:
    _, _, image = _built(tmp_path)
    info = json.loads((image.directory / "image.json").read_text())
    (image.directory / "image.json").write_text(json.dumps({**info, "format": IMAGE_FORMAT - 1}))
    with pytest.raises(RunnerError, match="unsupported image format"):
        EnclaveImage.load(image.directory)
    (image.directory / "image.json").write_text(json.dumps(info))
    EnclaveImage.load(image.directory)  # the control
    (image.directory / ROOTFS_LINK).unlink()
    (image.directory / ROOTFS_LINK).symlink_to(tmp_path / "reclaimed")
    with pytest.raises(RunnerError, match="no longer in the image store"):
        EnclaveImage.load(image.directory)


# --- the old spec format -------------------------------------------------------------------------


LEGACY = {
    "runtime": 'runtime = "native"\nentrypoint = "/bin/sh"\n',
    "python3": 'runtime = "python3"\nentrypoint = "stats.py"\napp_files = ["stats.py"]\n',
    "app_files": 'image = "REF"\napp_files = ["stats.py"]\n',
    "trusted_files": 'image = "REF"\ntrusted_files = ["/usr/bin/cat"]\n',
}


@pytest.mark.parametrize("case", sorted(LEGACY))
def test_the_old_spec_format_is_refused_with_a_migration_note(case: str) -> None:
    text = (
        'name = "t"\n[enclave]\n'
        + LEGACY[case].replace("REF", REFERENCE)
        + '[outputs]\nfiles = ["out"]\n'
    )
    with pytest.raises(ConfigError) as info:
        TaskSpec.from_toml(text)
    message = str(info.value)
    assert "specs no longer name host files" in message
    assert 'image = "oci-archive:FILE@sha256:DIGEST"' in message
    assert "migration note" in message


@pytest.mark.parametrize(
    ("enclave", "message"),
    [
        (f'image = "{REFERENCE}"\nentrypoint = "/bin/sh"', "entrypoint"),
        (f'image = "{REFERENCE}"\nentrypoint = []', "entrypoint must name a program"),
        ('image = "oci-archive:image.tar"', "must be pinned by digest"),
        (f'image = "oci-archive:image/@sha256:{"ab" * 32}"', "names a file, not a folder"),
        ("", "enclave.image"),
    ],
    ids=["entrypoint-string", "entrypoint-empty", "unpinned", "archive-folder", "no-image"],
)
def test_the_new_format_is_checked(enclave: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TaskSpec.from_toml(f'name = "t"\n[enclave]\n{enclave}\n[outputs]\nfiles = ["out"]\n')


def test_build_and_measure_refuse_an_old_spec_before_anything_is_built(tmp_path: Path) -> None:
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "task.toml").write_text(
        'name = "t"\n[enclave]\n' + LEGACY["python3"] + '[outputs]\nfiles = ["out"]\n'
    )
    (spec_dir / "stats.py").write_text("print('never measured')\n")
    store = ImageStore(tmp_path / "store")
    with pytest.raises(ConfigError, match="specs no longer name host files"):
        build_image(spec_dir, tmp_path / "image", key_path=tmp_path / "key.pem", store=store)
    assert not (tmp_path / "image").exists()
    assert not (tmp_path / "key.pem").exists()
    with pytest.raises(ConfigError, match="specs no longer name host files"):
        measure(spec=spec_dir, store=store)
    assert not any(store.folder.glob("sha256-*"))


def test_the_default_spec_runs_the_image_config() -> None:
    spec = default_spec(REFERENCE)
    assert spec.enclave.image == REFERENCE
    assert (spec.enclave.entrypoint, spec.enclave.args, spec.enclave.env) == (None, None, {})
    assert spec.inputs == ()
    assert spec.outputs.matches("anything.bin")


# --- the working folder: the spec's workdir, else the image's WorkingDir, else /workspace ---------


@pytest.mark.parametrize(
    ("image_dir", "spec_dir", "expected"),
    [
        ("/app", None, "/app"),
        ("/app/", None, "/app"),
        ("", None, None),  # the image names none: the task's folder
        ("/app", "/workspace", None),  # the spec asks for the task's folder
        ("/workspace", None, None),
        ("", "/app", "/app"),
        ("/app", "/", "/"),
        ("/srv", None, "/data/site"),  # a link, resolved inside the root
        ("/app/../data", None, "/data"),
    ],
)
def test_where_the_workload_starts(image_dir: str, spec_dir: str | None, expected: str) -> None:
    index = root(d("data"), d("data/site"), ln("srv", "data/site"))
    spec = task_spec(workdir=spec_dir) if spec_dir is not None else task_spec()
    assert workload(spec, _config(working_dir=image_dir), index)["workdir"] == expected


@pytest.mark.parametrize(
    ("image_dir", "spec_dir", "message"),
    [
        ("/missing", None, "the image's WorkingDir is not a folder of the image"),
        ("/etc/motd", None, "the image's WorkingDir is not a folder of the image"),
        ("relative", None, "the image's WorkingDir must be an absolute path"),
        ("/app", "/missing", "the spec's workdir is not a folder of the image"),
    ],
)
def test_a_working_folder_the_image_lacks_is_refused(
    image_dir: str, spec_dir: str | None, message: str
) -> None:
    spec = task_spec(workdir=spec_dir) if spec_dir is not None else task_spec()
    with pytest.raises(ConfigError) as refused:
        workload(spec, _config(working_dir=image_dir), root())
    assert message in refused.value.describe()
    assert "[enclave] workdir" in refused.value.describe() or "absolute" in message


@pytest.mark.parametrize("value", ["app", "", "/a\0b"])
def test_the_specs_workdir_is_an_absolute_path(value: str) -> None:
    with pytest.raises(ValueError, match="workdir must be an absolute path"):
        task_spec(workdir=value)
