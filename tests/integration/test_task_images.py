"""scripts/task-images: the task specs' images are byte for byte reproducible, readable by
Debian's skopeo and umoci and by golem_graphene.images, and their workloads run from the image
root under bubblewrap.

The builds share the repository's .deb cache (build/debs/): only the first build on a machine
downloads the packages of task_specs/images.lock; every later one takes seconds.
"""

from __future__ import annotations

import functools
import gzip
import importlib.machinery
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from _e2e_support import bwrap_problem

from golem_graphene.images import flatten, open_image, parse_reference

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "task-images"
CACHE = REPO / "build" / "debs"
SPECS = REPO / "task_specs"
NAMES = ("csv-stats", "word-freq", "gzip-compress", "gzip")

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None, reason="dpkg-deb is missing (a Debian host builds these)"
)


@dataclass(frozen=True)
class Build:
    out: Path
    references: dict[str, str]  # name -> printed reference

    def path(self, name: str) -> Path:
        return Path(parse_reference(self.references[name]).path)


def run_script(
    *args: str,
    cwd: Path = REPO,
    script: Path = SCRIPT,
    cache: Path = CACHE,
    env: dict[str, str] | None = None,
    umask: str = "022",
) -> subprocess.CompletedProcess[str]:
    # The script runs with the interpreter running the tests (the venv's, as `make task-images`).
    argv = [sys.executable, str(script), "--cache", str(cache), *args]
    return subprocess.run(
        ["sh", "-c", f'umask {umask} && exec "$@"', "sh", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def build(
    out: Path,
    *args: str,
    cwd: Path = REPO,
    script: Path = SCRIPT,
    env: dict[str, str] | None = None,
    umask: str = "022",
) -> Build:
    done = run_script("--out-dir", str(out), *args, cwd=cwd, script=script, env=env, umask=umask)
    assert done.returncode == 0, done.stderr
    references = {}
    for line in done.stdout.splitlines():
        name, reference = line.split(" ")
        references[name] = reference
    return Build(out, references)


def copy_checkout(target: Path, specs: bool = True) -> Path:
    """The script (and the specs with the lock, unless not ``specs``) copied below ``target``;
    returns the copied script."""
    (target / "scripts").mkdir(parents=True)
    if specs:
        ignore = shutil.ignore_patterns("image*.tar")
        shutil.copytree(SPECS, target / "task_specs", ignore=ignore)
    else:
        (target / "task_specs").mkdir()
    return Path(shutil.copy2(SCRIPT, target / "scripts" / "task-images"))


@pytest.fixture(scope="module")
def oci(tmp_path_factory: pytest.TempPathFactory) -> Build:
    out = tmp_path_factory.mktemp("oci")
    return build(out)


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Build:
    out = tmp_path_factory.mktemp("docker")
    return build(out, "--format", "docker-archive")


def test_prints_one_pinned_reference_per_image(oci: Build, docker: Build) -> None:
    assert tuple(oci.references) == NAMES
    for name in NAMES:
        ref = parse_reference(oci.references[name])
        assert (ref.transport, ref.tag) == ("oci-archive", None)
        assert Path(ref.path) == oci.out / name / "image.tar"
        assert ref.digest is not None
        assert parse_reference(docker.references[name]).transport == "docker-archive"


def test_a_build_elsewhere_is_byte_for_byte_the_same(oci: Build, tmp_path: Path) -> None:
    """Another checkout folder, working folder, PATH order, time zone, locale and umask."""
    script = copy_checkout(tmp_path / "elsewhere" / "checkout")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = dict(os.environ, TZ="Pacific/Kiritimati", LC_ALL="C", LANG="C")
    env["PATH"] = os.pathsep.join(reversed(os.environ["PATH"].split(os.pathsep)))
    again = build(tmp_path / "out", cwd=elsewhere, script=script, env=env, umask="077")
    for name in NAMES:
        assert digest(again.references[name]) == digest(oci.references[name])
        assert again.path(name).read_bytes() == oci.path(name).read_bytes(), name


def digest(reference: str) -> str:
    return reference.rpartition("@")[2]


def blob(archive: tarfile.TarFile, digest: str) -> bytes:
    member = archive.extractfile(f"blobs/{digest.replace(':', '/')}")
    assert member is not None
    return member.read()


def test_archives_hold_fixed_metadata_and_uncompressed_layers(oci: Build) -> None:
    with tarfile.open(oci.path("csv-stats")) as archive:
        names = archive.getnames()
        assert names == sorted(names)
        for member in archive.getmembers():
            assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == FIXED
        index = json.loads(archive.extractfile("index.json").read())  # type: ignore[union-attr]
        [entry] = index["manifests"]
        assert entry["annotations"] == {"org.opencontainers.image.ref.name": "latest"}
        manifest = json.loads(blob(archive, entry["digest"]))
        config_bytes = blob(archive, manifest["config"]["digest"])
        layers = [blob(archive, desc["digest"]) for desc in manifest["layers"]]
    canonical = json.dumps(json.loads(config_bytes), sort_keys=True, separators=(",", ":"))
    assert config_bytes == canonical.encode()
    config = json.loads(config_bytes)
    assert "created" not in config and "history" not in config
    entrypoint = ["/usr/bin/python3", "-S", "-s", "-B", "/app/stats.py"]
    assert config["config"]["Entrypoint"] == entrypoint
    assert config["config"]["Cmd"] == ["inputs/data.csv", "outputs/summary.json"]
    assert config["config"]["Env"] == ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
    layer_type = "application/vnd.oci.image.layer.v1.tar"
    assert [desc["mediaType"] for desc in manifest["layers"]] == [layer_type] * 2
    for data in layers:
        with tarfile.open(fileobj=io.BytesIO(data)) as layer:
            names = layer.getnames()
            assert names == sorted(names)
            for member in layer.getmembers():
                assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == FIXED


FIXED = (0, 0, 0, "", "")  # mtime, uid, gid, uname, gname


def test_check_accepts_fresh_archives_and_refuses_changed_ones(oci: Build, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(oci.out, out)
    assert run_script("--out-dir", str(out), "--check").returncode == 0
    path = out / "gzip" / "image.tar"
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    done = run_script("--out-dir", str(out), "--check", "gzip")
    assert done.returncode == 1
    assert "out of date" in done.stderr and "Traceback" not in done.stderr


def test_a_package_that_does_not_match_the_lock_is_refused(tmp_path: Path) -> None:
    script = copy_checkout(tmp_path / "checkout")
    lock = tmp_path / "checkout" / "task_specs" / "images.lock"
    text = lock.read_text()
    start = text.index('sha256 = "', text.index('name = "gzip"')) + len('sha256 = "')
    lock.write_text(text[:start] + "0" * 64 + text[start + 64 :])
    # A cache of its own (holding the real gzip .deb), so that the shared one stays as it is.
    cache = tmp_path / "debs"
    cache.mkdir()
    deb = next(CACHE.glob("gzip_*.deb"))
    shutil.copy2(deb, cache / deb.name)
    done = run_script("--out-dir", str(tmp_path / "out"), "gzip", script=script, cache=cache)
    assert done.returncode == 1
    assert "the lock says 0000" in done.stderr
    assert "--update-lock" in done.stderr and "Traceback" not in done.stderr


def test_a_malformed_lock_and_unknown_names_are_clear_errors(tmp_path: Path) -> None:
    script = copy_checkout(tmp_path / "checkout", specs=False)
    (tmp_path / "checkout" / "task_specs" / "images.lock").write_text("[[package]\n")
    done = run_script("--out-dir", str(tmp_path / "out"), script=script)
    assert done.returncode == 1
    assert "malformed" in done.stderr and "--update-lock" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_script("nosuch", script=script)
    assert done.returncode == 2 and "unknown image nosuch" in done.stderr


def test_skopeo_and_umoci_read_the_images(oci: Build, docker: Build, tmp_path: Path) -> None:
    if shutil.which("skopeo") is None or shutil.which("umoci") is None:
        pytest.skip(
            "skopeo and umoci are not installed (Debian packages; make setup installs them)"
        )
    for name in NAMES:
        seen = json.loads(skopeo("inspect", f"oci-archive:{oci.path(name)}"))
        assert seen["Digest"] == digest(oci.references[name])
        assert (seen["Architecture"], seen["Os"]) == ("amd64", "linux")
        seen = json.loads(skopeo("inspect", "--config", f"docker-archive:{docker.path(name)}"))
        assert seen["rootfs"]["diff_ids"]
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(oci.path("word-freq")) as archive:
        archive.extractall(layout, filter="data")
    bundle = tmp_path / "bundle"
    done = subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rootfs = bundle / "rootfs"
    assert os.readlink(rootfs / "usr" / "bin" / "python3") == "python3.11"
    app = (rootfs / "app" / "wordfreq.py").read_bytes()
    assert app == (SPECS / "word-freq" / "wordfreq.py").read_bytes()


def skopeo(*args: str) -> str:
    done = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_the_project_reads_and_flattens_the_images(
    fmt: str, oci: Build, docker: Build, tmp_path: Path
) -> None:
    built = oci if fmt == "oci" else docker
    for name in NAMES:
        with open_image(built.references[name]) as source:
            assert source.digest == digest(built.references[name])
            root = tmp_path / name
            flatten(source, root)
        assert os.readlink(root / "bin") == "usr/bin"
        assert os.readlink(root / "usr" / "bin" / "sh") == "dash"
        assert (root / "lib64" / "ld-linux-x86-64.so.2").exists()
        assert "nobody" in (root / "etc" / "passwd").read_text()
        assert not (root / "usr" / "share" / "man").exists()
    assert (tmp_path / "csv-stats" / "app" / "stats.py").is_file()
    assert (tmp_path / "gzip-compress" / "usr" / "bin" / "gzip").is_file()


def unpacked(build: Build, name: str, target: Path) -> Path:
    with open_image(build.references[name]) as source:
        flatten(source, target)
    return target


def sandboxed(root: Path, workspace: Path, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """``argv`` run with ``root`` as /, ``workspace`` as /workspace, and nothing of the host."""
    problem = bwrap_problem()
    if problem is not None:
        pytest.skip(problem)
    sandbox = ["bwrap", "--unshare-all", "--die-with-parent", "--clearenv"]
    sandbox += ["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"]
    sandbox += ["--ro-bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    sandbox += ["--bind", str(workspace), "/workspace", "--chdir", "/workspace"]
    return subprocess.run([*sandbox, *argv], capture_output=True, check=False, timeout=120)


def workspace(tmp_path: Path, spec: str) -> Path:
    ws = tmp_path / "ws"
    (ws / "outputs").mkdir(parents=True)
    shutil.copytree(SPECS / spec / "sample", ws / "inputs")
    return ws


def entrypoint_and_cmd(build: Build, name: str) -> list[str]:
    with open_image(build.references[name]) as source:
        return [*source.runtime.entrypoint, *source.runtime.cmd]


def test_csv_stats_runs_from_its_image(oci: Build, tmp_path: Path) -> None:
    root = unpacked(oci, "csv-stats", tmp_path / "root")
    ws = workspace(tmp_path, "csv-stats")
    done = sandboxed(root, ws, entrypoint_and_cmd(oci, "csv-stats"))
    assert done.returncode == 0, done.stderr
    # The same script under the host's Python 3.11 gives the same summary.
    host = tmp_path / "host.json"
    argv = [sys.executable, str(SPECS / "csv-stats" / "stats.py"), "inputs/data.csv", str(host)]
    subprocess.run(argv, cwd=ws, check=True, capture_output=True, timeout=120)
    assert (ws / "outputs" / "summary.json").read_bytes() == host.read_bytes()


def test_word_freq_runs_from_its_image(oci: Build, tmp_path: Path) -> None:
    root = unpacked(oci, "word-freq", tmp_path / "root")
    ws = workspace(tmp_path, "word-freq")
    done = sandboxed(root, ws, entrypoint_and_cmd(oci, "word-freq"))
    assert done.returncode == 0, done.stderr
    assert b"counted" in done.stdout
    report = (ws / "outputs" / "report.txt").read_text()
    assert report.startswith("a.txt: ")
    assert json.loads((ws / "outputs" / "shared.json").read_text())


def test_the_python_image_has_the_standard_library_modules(oci: Build, tmp_path: Path) -> None:
    root = unpacked(oci, "word-freq", tmp_path / "root")
    ws = workspace(tmp_path, "word-freq")
    modules = "ssl, sqlite3, decimal, ctypes, lzma, bz2, zlib, hashlib, uuid, statistics, zoneinfo"
    code = f"import {modules}, sys; print(sys.version_info[:2])"
    done = sandboxed(root, ws, ["/usr/bin/python3", "-S", "-s", "-B", "-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"(3, 11)"


@pytest.mark.parametrize("name", ["gzip-compress", "gzip"])
def test_gzip_runs_from_its_image(name: str, docker: Build, tmp_path: Path) -> None:
    """gzip-compress writes outputs/data.txt.gz; the demo image writes to its stdout."""
    root = unpacked(docker, name, tmp_path / "root")
    ws = workspace(tmp_path, "gzip-compress")
    done = sandboxed(root, ws, entrypoint_and_cmd(docker, name))
    assert done.returncode == 0, done.stderr
    written = ws / "outputs" / "data.txt.gz"
    compressed = written.read_bytes() if name == "gzip-compress" else done.stdout
    assert gzip.decompress(compressed) == (ws / "inputs" / "data.txt").read_bytes()
    assert compressed[4:8] == b"\0\0\0\0"  # -n: no time stamp in the header


@functools.cache
def load_script() -> ModuleType:
    """The script as a module, for its helpers (it has no .py name, so no plain import).
    Registered in sys.modules while it runs, as its dataclasses look themselves up there."""
    loader = importlib.machinery.SourceFileLoader("task_images_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module
    loader.exec_module(module)
    return module


def test_the_usr_merge_moves_paths_and_keeps_links_pointing_where_they_did() -> None:
    script = load_script()
    assert script.merged_path("bin/dash") == "usr/bin/dash"
    assert script.merged_path("lib64") == "usr/lib64"
    assert script.merged_path("usr/lib/x") == "usr/lib/x"
    assert script.merged_path("binary/x") == "binary/x"
    # lib/x86_64-linux-gnu/a -> ../../usr/lib/b once pointed at /usr/lib/b; still does from /usr.
    link = script.merged_link(
        "lib/x86_64-linux-gnu/a", "usr/lib/x86_64-linux-gnu/a", "../../usr/lib/b"
    )
    assert link == "../b"
    assert script.merged_link("bin/x", "usr/bin/x", "gzip") == "gzip"
    assert script.merged_link("bin/x", "usr/bin/x", "/bin/gzip") == "/bin/gzip"


def test_documentation_goes_and_licences_stay() -> None:
    script = load_script()
    assert script.dropped("usr/share/man/man1/gzip.1.gz")
    assert script.dropped("usr/share/doc/gzip/changelog.gz")
    assert script.dropped("usr/share/lintian/overrides/libc6")
    assert not script.dropped("usr/share/doc/gzip/copyright")
    assert not script.dropped("usr/share/doc/gzip")
    assert not script.dropped("usr/lib/python3.11/doctest.py")


def test_hard_links_point_at_the_first_name_in_tar_order() -> None:
    script = load_script()
    entry = script.Entry
    root = {
        "b": entry("file", 0o755, b"data"),
        "a": entry("hardlink", 0o755, target="b"),
        "c": entry("hardlink", 0o755, target="b"),
    }
    script.settle_hardlinks(root)
    assert (root["a"].kind, root["a"].data) == ("file", b"data")
    assert [(root[n].kind, root[n].target) for n in "bc"] == [("hardlink", "a")] * 2


def test_dependencies_follow_depends_and_skip_maintainer_script_tools() -> None:
    script = load_script()
    record = {
        "Pre-Depends": "libc6 (>= 2.34)",
        "Depends": "debianutils (>= 5.6), media-types | mime-support, libssl3:any (>= 3.0)",
    }
    # Alternatives prefer a package already chosen, so no apt look-up happens here.
    assert script.dependencies(record, {"mime-support"}) == ["libc6", "mime-support", "libssl3"]
