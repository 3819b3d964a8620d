"""The root store: one read-only root per image digest, reused, built once under concurrency,
bounded least recently used, and clean after failures and crashes."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from _image_builder import file, folder, layer_tar, write_oci_layout

from golem_graphene.errors import ImageDigestError
from golem_graphene.images import ImageStore, open_image
from golem_graphene.images import store as store_module


def _image(base: Path, name: str, size: int = 10) -> str:
    write_oci_layout(
        base / name, [layer_tar([folder("d"), file("d/f", name.encode() * size, 0o755)])]
    )
    return f"oci:{base / name}:t"


def test_a_root_is_built_once_read_only_and_reused(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    ref = _image(tmp_path, "a")
    with open_image(ref) as source:
        first = store.root(source)
    assert first.path == store.path_of(source.digest)
    assert (first.path / "d" / "f").read_bytes() == b"a" * 10
    for path in [first.path, *first.path.rglob("*")]:
        assert stat.S_IMODE(path.lstat().st_mode) & 0o222 == 0
    inode = first.path.stat().st_ino
    with open_image(ref) as source:
        again = store.root(source)
    assert again.path.stat().st_ino == inode
    assert (again.bytes, again.files) == (10, 1)
    assert store.lookup(source.digest) is not None
    assert [r.digest for r in store.entries()] == [source.digest]


def test_concurrent_requests_for_one_digest_flatten_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ImageStore(tmp_path / "store")
    ref = _image(tmp_path, "a")
    calls = []
    real = store_module.flatten

    def slow_flatten(*args: object, **kwargs: object) -> object:
        calls.append(1)
        time.sleep(0.2)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "flatten", slow_flatten)
    results: list[Path] = []

    def request() -> None:
        with open_image(ref) as source:
            results.append(store.root(source).path)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 4 and len(set(results)) == 1


def test_lru_by_count(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store", max_roots=2)
    digests = []
    for name in ["a", "b", "c"]:
        with open_image(_image(tmp_path, name)) as source:
            store.root(source)
            digests.append(source.digest)
        time.sleep(0.01)
        if name == "b":
            os.utime(store.path_of(digests[0]).with_suffix(".json"))  # "a" used again: "b" is older
            time.sleep(0.01)
    assert {r.digest for r in store.entries()} == {digests[0], digests[2]}
    assert not store.path_of(digests[1]).exists()


def test_lru_by_bytes_and_reclaim(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store", max_bytes=1500)
    digests = []
    for name in ["a", "b"]:
        with open_image(_image(tmp_path, name, size=1000)) as source:
            store.root(source)
            digests.append(source.digest)
        time.sleep(0.01)
    assert [r.digest for r in store.entries()] == [digests[1]]
    store.max_bytes = 0
    assert store.reclaim(keep=digests[1:]) == ()
    assert store.reclaim() == (digests[1],)
    assert store.entries() == []
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [".locks"]


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    ref = _image(tmp_path, "a")
    blobs = tmp_path / "a" / "blobs" / "sha256"
    with open_image(ref) as source:
        layer = blobs / source.layers[0].digest.split(":")[1]  # type: ignore[union-attr]
        data = bytearray(layer.read_bytes())
        data[len(data) // 2] ^= 0x01
        layer.write_bytes(bytes(data))
        with pytest.raises(ImageDigestError):
            store.root(source)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [".locks"]


def test_crash_leftovers_are_cleared(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    ref = _image(tmp_path, "a")
    with open_image(ref) as source:
        digest = source.digest
        stem = digest.replace(":", "-")
        # A crash while flattening (a temporary folder) and one after the rename (no record).
        tmp = tmp_path / "store" / f".{stem}.tmp-x"
        (tmp / "sub").mkdir(parents=True)
        os.chmod(tmp / "sub", 0o555)
        store.path_of(digest).mkdir()
        (store.path_of(digest) / "stale").write_text("half")
        assert store.lookup(digest) is None
        root = store.root(source)
    assert not (root.path / "stale").exists()
    assert not tmp.exists()
    (tmp / "x").mkdir(parents=True)
    store.reclaim()
    assert not tmp.exists()
