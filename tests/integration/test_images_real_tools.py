"""Images made by real tools nobody here wrote (Debian's umoci and skopeo), read and flattened by
golem_graphene.images, compared with what ``umoci unpack`` makes of the same image.

The image has three layers: a base with folders, a hard link, relative and absolute symbolic
links, a setuid file and a sticky folder (``umoci repack``); a second that deletes a file and a
folder and changes and adds files (``umoci repack`` writes the whiteouts); a third, written by GNU
tar and added with ``umoci raw add-layer``, that makes a folder opaque. skopeo then packs it as an
OCI archive, a docker archive and a zstd-compressed OCI layout. (Debian's ``umoci insert`` writes
a truncated tar, hence unpack/edit/repack.)
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from golem_graphene.errors import ImageError
from golem_graphene.images import ImageStore, RuntimeConfig, flatten, open_image

UMOCI = shutil.which("umoci")
SKOPEO = shutil.which("skopeo")
TAR = shutil.which("tar")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        UMOCI is None or SKOPEO is None or TAR is None,
        reason="umoci and skopeo are not installed (Debian packages; make setup installs them)",
    ),
]

Tree = dict[str, tuple[str, int, str]]


def _run(*argv: str, cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def _tree(root: Path) -> Tree:
    """Every path: kind, mode without setuid/setgid, contents or link target."""
    out: Tree = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", 0, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode) & ~0o6000, "")
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode) & ~0o6000, path.read_bytes().hex())
    return out


class Made:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.reference = _tree(work / "REF" / "rootfs")
        self.refs = {
            "oci": f"oci:{work / 'L'}:v3",
            "oci-archive": f"oci-archive:{work / 'o.tar'}:v3",
            "docker-archive": f"docker-archive:{work / 'd.tar'}:demo:v3",
            "oci-zstd": f"oci:{work / 'Z'}:v3",
        }

    def manifest(self, ref: str) -> dict[str, object]:
        raw = _run("skopeo", "inspect", "--raw", ref, cwd=self.work)
        return json.loads(raw)  # type: ignore[no-any-return]

    def digest(self, ref: str) -> str:
        return json.loads(_run("skopeo", "inspect", ref, cwd=self.work))["Digest"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    work = tmp_path_factory.mktemp("umoci")
    _run("umoci", "init", "--layout", "L", cwd=work)
    _run("umoci", "new", "--image", "L:base", cwd=work)
    _run("umoci", "unpack", "--rootless", "--image", "L:base", "B1", cwd=work)
    root = work / "B1" / "rootfs"
    for folder in ["etc", "var/lib/x", "opq/sub", "usr/bin", "tmp"]:
        (root / folder).mkdir(parents=True)
    for name, text in [
        ("etc/a", "a\n"),
        ("etc/b", "b\n"),
        ("var/lib/x/1", "1\n"),
        ("opq/old", "old\n"),
    ]:
        (root / name).write_text(text)
    (root / "opq/sub/deep").write_text("deep\n")
    (root / "usr/bin/perl").write_text("#!perl\n")
    (root / "usr/bin/perl").chmod(0o755)
    os.link(root / "usr/bin/perl", root / "usr/bin/perl5.36")
    (root / "bin").symlink_to("usr/bin")
    (root / "abs").symlink_to("/etc/a")
    (root / "usr/bin/su").write_text("su\n")
    (root / "usr/bin/su").chmod(0o4755)
    (root / "tmp").chmod(0o1777)
    _run("umoci", "repack", "--image", "L:v1", "B1", cwd=work)

    _run("umoci", "unpack", "--rootless", "--image", "L:v1", "B2", cwd=work)
    root = work / "B2" / "rootfs"
    (root / "etc/b").unlink()
    shutil.rmtree(root / "var/lib/x")
    (root / "etc/a").write_text("changed\n")
    (root / "etc/new").write_text("new\n")
    _run("umoci", "repack", "--image", "L:v2", "B2", cwd=work)

    (work / "T" / "opq").mkdir(parents=True)
    (work / "T" / "opq" / "fresh").write_text("fresh\n")
    (work / "T" / "opq" / ".wh..wh..opq").touch()
    _run("tar", "-C", "T", "-cf", "opq.tar", "opq", cwd=work)
    _run("umoci", "raw", "add-layer", "--image", "L:v2", "--tag", "v3", "opq.tar", cwd=work)
    _run(
        "umoci", "config", "--image", "L:v3", "--tag", "v3",
        "--config.entrypoint", "/bin/sh", "--config.cmd=-c", "--config.env", "A=1",
        "--config.workingdir", "/tmp", "--config.user", "1000:1000",
        cwd=work,
    )  # fmt: skip
    _run("umoci", "unpack", "--rootless", "--image", "L:v3", "REF", cwd=work)
    _run("skopeo", "copy", "-q", "oci:L:v3", "docker-archive:d.tar:demo:v3", cwd=work)
    _run("skopeo", "copy", "-q", "oci:L:v3", "oci-archive:o.tar:v3", cwd=work)
    _run("skopeo", "copy", "-q", "--dest-compress-format", "zstd", "oci:L:v3", "oci:Z:v3", cwd=work)
    return Made(work)


def test_the_reference_unpack_has_what_the_layers_say(made: Made) -> None:
    # Guards the comparison below: umoci applied the whiteouts, the opaque folder and the links.
    assert {"etc/a", "etc/new", "opq/fresh", "usr/bin/perl5.36", "bin", "abs"} <= set(
        made.reference
    )
    assert not {"etc/b", "var/lib/x", "opq/old", "opq/sub"} & set(made.reference)


@pytest.mark.parametrize("packing", ["oci", "oci-archive", "docker-archive", "oci-zstd"])
def test_each_packing_flattens_to_what_umoci_unpacks(
    made: Made, packing: str, tmp_path: Path
) -> None:
    ref = made.refs[packing]
    with open_image(ref) as source:
        assert source.runtime == RuntimeConfig(("/bin/sh",), ("-c",), ("A=1",), "/tmp", "1000:1000")
        expected = (
            made.digest(ref)
            if packing != "docker-archive"
            else made.manifest(made.refs["oci"])["config"]["digest"]
        )  # type: ignore[index]
        assert source.digest == expected
        assert len(source.layers) == 3
        report = flatten(source, tmp_path / "root")
    root = tmp_path / "root"
    assert _tree(root) == made.reference
    assert report.files == sum(1 for kind, _, _ in made.reference.values() if kind == "file")
    perl, perl5 = (root / "usr/bin/perl").lstat(), (root / "usr/bin/perl5.36").lstat()
    assert perl.st_ino == perl5.st_ino
    assert stat.S_IMODE((root / "usr/bin/su").lstat().st_mode) == 0o755  # setuid cleared
    assert stat.S_IMODE((root / "tmp").lstat().st_mode) == 0o1777


def test_pins_from_skopeos_digest(made: Made) -> None:
    digest = made.digest(made.refs["oci"])
    with open_image(f"{made.refs['oci-archive']}@{digest}") as source:
        assert source.digest == digest
    with pytest.raises(Exception, match="pinned digest"):
        open_image(f"{made.refs['oci-zstd']}@{digest}")  # same content, other compression


def test_the_store_reuses_one_root_for_the_oci_layout_and_archive(
    made: Made, tmp_path: Path
) -> None:
    store = ImageStore(tmp_path / "store")
    with open_image(made.refs["oci"]) as source:
        first = store.root(source)
    with open_image(made.refs["oci-archive"]) as source:
        second = store.root(source)
    assert (first.path, first.digest, first.bytes) == (second.path, second.digest, second.bytes)
    assert _tree(first.path) == {
        name: (kind, mode & ~0o222, data) for name, (kind, mode, data) in made.reference.items()
    }


# --- differential: random honest layers through umoci raw add-layer -------------------------------

_NAMES = [
    "a",
    "b",
    "c",
    "a/x",
    "a/y",
    "b/x",
    "a/x/z",
    "a/.wh.x",
    "a/.wh..wh..opq",
    ".wh.a",
    ".wh.b",
]


def _random_layer(rng: random.Random) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _ in range(rng.randint(1, 6)):
            info = tarfile.TarInfo(rng.choice(_NAMES))
            data = b""
            if ".wh." in info.name:
                kind = "file"
            else:
                kind = rng.choice(["file", "file", "dir", "dir", "symlink", "hardlink"])
            if kind == "file":
                data = rng.choice([b"1", b"22"])
                info.mode = rng.choice([0o644, 0o755, 0o600])
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, rng.choice([0o755, 0o700, 0o750])
            elif kind == "symlink":
                info.type, info.linkname = (
                    tarfile.SYMTYPE,
                    rng.choice(["a", "c", "a/x", "../x", "/abs"]),
                )
            else:
                info.type, info.linkname = tarfile.LNKTYPE, rng.choice(["c", "a/x", "b"])
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("seed", range(4))
def test_random_layers_flatten_as_umoci_unpacks_them(seed: int, tmp_path: Path) -> None:
    """Whiteouts, opaque folders, replacements and links in random orders agree with umoci.

    One difference is by design: an entry whose path passes through a symbolic link is refused
    here, where umoci resolves the link inside the root (real layers never hold one: a layer
    is the diff of a file system, where a link has no children).
    """
    rng = random.Random(seed)
    for example in range(8):
        work = tmp_path / f"{example}"
        work.mkdir()
        _run("umoci", "init", "--layout", "L", cwd=work)
        _run("umoci", "new", "--image", "L:t", cwd=work)
        for i in range(rng.randint(1, 3)):
            (work / f"{i}.tar").write_bytes(_random_layer(rng))
            _run("umoci", "raw", "add-layer", "--image", "L:t", f"{i}.tar", cwd=work)
        unpacked = subprocess.run(
            ["umoci", "unpack", "--rootless", "--image", "L:t", "R"],
            cwd=work, capture_output=True, check=False, timeout=120,
        )  # fmt: skip
        theirs = _tree(work / "R" / "rootfs") if unpacked.returncode == 0 else None
        try:
            with open_image(f"oci:{work / 'L'}:t") as source:
                flatten(source, work / "OUT")
        except ImageError as exc:
            assert theirs is None or "symbolic link" in str(exc), (example, exc, theirs)
            continue
        assert theirs is not None and _tree(work / "OUT") == theirs, example
