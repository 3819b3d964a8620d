"""Trusted-file expansion: directories walked and files measured as gramine-manifest does."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from golem_graphene.errors import ManifestError
from golem_graphene.gramine import trusted_files as trusted_files_module
from golem_graphene.gramine.install import DEFAULT_GRAMINE_PKGLIBDIR, GramineInstall
from golem_graphene.gramine.manifest import Manifest, canonical_manifest_bytes
from golem_graphene.gramine.model import LoaderEntrypoint, TrustedFile
from golem_graphene.gramine.trusted_files import TrustedFileError, expand_trusted_files, hash_file

STAND_IN = GramineInstall(Path(DEFAULT_GRAMINE_PKGLIBDIR), False, "stand-in")


# --- trusted file expansion ----------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    base = tmp_path / "build"
    (base / "lib" / "sub").mkdir(parents=True)
    (base / "app").write_bytes(b"app-binary")
    (base / "lib" / "b.so").write_bytes(b"b")
    (base / "lib" / "a.so").write_bytes(b"a")
    (base / "lib" / ".hidden").write_bytes(b"h")
    (base / "lib" / "sub" / "c.so").write_bytes(b"c")
    os.mkfifo(base / "lib" / "fifo")
    (base / "lib" / "link_to_file").symlink_to("a.so")
    (base / "lib" / "link_dir").symlink_to("sub")
    (base / "lib" / "dangling").symlink_to("missing")
    (base / "libsysdb.so").write_bytes(b"libos")
    return base


def manifest_with(trusted: str, extra: str = "") -> Manifest:
    return Manifest.from_toml(
        'libos.entrypoint = "/app"\nfs.mounts = []\n'
        f'loader.entrypoint.uri = "file:libsysdb.so"\nsgx.trusted_files = {trusted}\n{extra}',
        gramine=STAND_IN,
    )


def test_expansion_walks_directories_and_hashes_files(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "abs.bin"
    outside.write_bytes(b"absolute")
    m = manifest_with(f'["file:app", "file:lib/", "file:{outside}"]')
    expanded = expand_trusted_files(m, tree)
    assert expanded.sgx.trusted_files == (
        TrustedFile("file:app", sha(b"app-binary")),
        TrustedFile("file:lib/.hidden", sha(b"h")),
        TrustedFile("file:lib/a.so", sha(b"a")),
        TrustedFile("file:lib/b.so", sha(b"b")),
        TrustedFile("file:lib/link_to_file", sha(b"a")),  # file symlinks are followed
        TrustedFile("file:lib/sub/c.so", sha(b"c")),  # symlinked dirs are not descended
        TrustedFile(f"file:{outside}", sha(b"absolute")),
    )
    assert expanded.loader.entrypoint == LoaderEntrypoint("file:libsysdb.so", sha(b"libos"))
    assert expanded.is_expanded and not m.is_expanded
    assert expanded.libos == m.libos and expanded.fs == m.fs
    canonical_manifest_bytes(expanded)  # measurable now


def test_expansion_is_bound_to_file_contents(tree: Path) -> None:
    m = manifest_with('["file:app"]')
    before = canonical_manifest_bytes(expand_trusted_files(m, tree))
    (tree / "app").write_bytes(b"patched")
    assert canonical_manifest_bytes(expand_trusted_files(m, tree)) != before


def test_expansion_keeps_given_hashes_unless_rechecking(tree: Path) -> None:
    m = manifest_with(f'[{{ uri = "file:app", sha256 = "{"0" * 64}" }}]')
    assert expand_trusted_files(m, tree).sgx.trusted_files[0].sha256 == "0" * 64
    with pytest.raises(TrustedFileError, match="do not match") as info:
        expand_trusted_files(m, tree, recheck=True)
    assert (info.value.expected, info.value.found) == ("0" * 64, sha(b"app-binary"))
    good = manifest_with(f'[{{ uri = "file:app", sha256 = "{sha(b"app-binary")}" }}]')
    assert expand_trusted_files(good, tree, recheck=True) == expand_trusted_files(good, tree)


def test_duplicates_keep_the_first_position_and_the_measured_entry(tree: Path) -> None:
    m = manifest_with(
        f'["file:app", "file:lib/", {{ uri = "file:app", sha256 = "{"1" * 64}" }}, "file:lib/a.so"]'
    )
    files = expand_trusted_files(m, tree).sgx.trusted_files
    assert files[0] == TrustedFile("file:app", "1" * 64)
    assert [tf.uri for tf in files].count("file:lib/a.so") == 1


def test_a_literal_hash_wins_over_an_unmeasured_directory_entry(tree: Path) -> None:
    m = manifest_with(f'["file:lib/", {{ uri = "file:lib/a.so", sha256 = "{"2" * 64}" }}]')
    files = expand_trusted_files(m, tree).sgx.trusted_files
    assert files[1] == TrustedFile("file:lib/a.so", "2" * 64)  # position of the first mention


def test_conflicting_hashes_for_one_uri_are_refused(tree: Path) -> None:
    # The parser refuses this already; expansion must too for manifests built in code.
    m = manifest_with('["file:app"]')
    built = replace(
        m,
        sgx=replace(
            m.sgx,
            trusted_files=(TrustedFile("file:app", "4" * 64), TrustedFile("file:app", "5" * 64)),
        ),
    )
    with pytest.raises(TrustedFileError, match="two different sha256 values") as info:
        expand_trusted_files(built, tree)
    assert info.value.uri == "file:app"


@pytest.mark.parametrize(
    ("trusted", "message"),
    [
        ('["file:missing"]', "file:missing not found"),
        ('["file:lib"]', "directory URIs must end with '/'"),
        ('["file:app/"]', "is not a directory"),
        ('["file:nodir/"]', "is not a directory"),
    ],
)
def test_expansion_errors_name_the_uri(tree: Path, trusted: str, message: str) -> None:
    with pytest.raises(TrustedFileError, match=message) as info:
        expand_trusted_files(manifest_with(trusted), tree)
    assert info.value.uri == trusted[2:-2]
    assert isinstance(info.value, ManifestError)


def test_loader_entrypoint_hashing(tree: Path) -> None:
    m = manifest_with('["file:app"]')
    skipped = expand_trusted_files(m, tree, hash_loader_entrypoint=False)
    assert skipped.loader.entrypoint.sha256 is None
    (tree / "libsysdb.so").unlink()
    with pytest.raises(
        TrustedFileError, match=r"loader\.entrypoint\.uri: file:libsysdb\.so not found"
    ):
        expand_trusted_files(m, tree)
    pinned = Manifest.from_toml(
        'libos.entrypoint = "/a"\nfs.mounts = []\n'
        f'loader.entrypoint = {{ uri = "file:{tree}/app", sha256 = "{"3" * 64}" }}\n',
        gramine=STAND_IN,
    )
    assert expand_trusted_files(pinned, tree).loader.entrypoint.sha256 == "3" * 64
    with pytest.raises(TrustedFileError, match=r"do not match loader\.entrypoint\.sha256"):
        expand_trusted_files(pinned, tree, recheck=True)


def test_expansion_count_is_bounded(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trusted_files_module, "MAX_TRUSTED_FILES", 3)
    with pytest.raises(TrustedFileError, match="too many trusted files"):
        expand_trusted_files(manifest_with('["file:lib/"]'), tree)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without permission")
def test_unreadable_files_inside_directories_are_skipped(tree: Path) -> None:
    (tree / "lib" / "b.so").chmod(0)
    files = expand_trusted_files(manifest_with('["file:lib/"]'), tree).sgx.trusted_files
    assert "file:lib/b.so" not in {tf.uri for tf in files}


def test_hash_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * (3 * 1024 * 1024 + 5))
    assert hash_file(path) == sha(b"x" * (3 * 1024 * 1024 + 5))
