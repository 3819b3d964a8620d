"""Reading images by digest: the three source kinds, compressions, platform choice, and every
document or blob that does not match what names it."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from _image_builder import (
    Built,
    file,
    folder,
    layer_tar,
    sha256,
    tree,
    write_blob,
    write_docker_archive,
    write_oci_layout,
)

from golem_graphene.errors import (
    ImageBlobMissingError,
    ImageDigestError,
    ImageFormatError,
    ImageLimitError,
    ImageReferenceError,
    UnsupportedImageError,
)
from golem_graphene.images import ImageLimits, ImageSource, RuntimeConfig, flatten, open_image

LAYERS = [
    layer_tar([folder("etc"), file("etc/a", b"alpha"), file("etc/b", b"beta")]),
    layer_tar([folder("etc"), file("etc/.wh.b"), file("etc/c", b"gamma")]),
]
EXPECTED = {
    "etc": ("dir", 0o755, ""),
    "etc/a": ("file", 0o644, "alpha"),
    "etc/c": ("file", 0o644, "gamma"),
}


def _flat(source: ImageSource, where: Path) -> dict[str, tuple[str, int, str]]:
    target = where / f"root-{len(list(where.iterdir()))}"
    flatten(source, target)
    return tree(target)


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":")[1]


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_oci_layout_in_each_compression(tmp_path: Path, compression: str) -> None:
    built = write_oci_layout(
        tmp_path / "l",
        LAYERS,
        compression=compression,  # type: ignore[arg-type]
        runtime={
            "Entrypoint": ["/bin/e"],
            "Cmd": ["c"],
            "Env": ["A=1"],
            "WorkingDir": "/w",
            "User": "1:2",
        },
    )
    with open_image(f"oci:{tmp_path / 'l'}:t") as source:
        assert source.digest == built.digest
        assert source.config_digest == built.config_digest
        assert source.runtime == RuntimeConfig(("/bin/e",), ("c",), ("A=1",), "/w", "1:2")
        assert [layer.diff_id for layer in source.layers] == [sha256(layer) for layer in LAYERS]
        assert _flat(source, tmp_path) == EXPECTED


def test_oci_archive_and_pins(tmp_path: Path) -> None:
    built = write_oci_layout(tmp_path / "l", LAYERS)
    archive = tmp_path / "o.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "l", arcname=".")
    with open_image(f"oci-archive:{archive}:t@{built.digest}") as source:
        assert source.digest == built.digest
        assert _flat(source, tmp_path) == EXPECTED
    with open_image(f"oci-archive:{archive}@{built.digest}") as source:
        assert source.digest == built.digest
    other = "sha256:" + "0" * 64
    with pytest.raises(ImageDigestError):
        open_image(f"oci-archive:{archive}:t@{other}")


def test_an_index_picks_linux_amd64_and_refuses_other_platforms(tmp_path: Path) -> None:
    built = write_oci_layout(tmp_path / "l", LAYERS, wrap_in_index=True)
    with open_image(f"oci:{tmp_path / 'l'}:t") as source:
        assert source.digest == built.digest
    write_oci_layout(tmp_path / "arm", LAYERS, wrap_in_index=True, platform=("linux", "arm64"))
    with pytest.raises(UnsupportedImageError, match="linux/arm64"):
        open_image(f"oci:{tmp_path / 'arm'}:t")
    write_oci_layout(tmp_path / "arm1", LAYERS, platform=("linux", "arm64"))
    with pytest.raises(UnsupportedImageError, match="another platform"):
        open_image(f"oci:{tmp_path / 'arm1'}:t")


@pytest.mark.parametrize("form", ["legacy", "blobs"])
def test_docker_archive_forms(tmp_path: Path, form: str) -> None:
    built = write_docker_archive(tmp_path / "d.tar", LAYERS, form=form)  # type: ignore[arg-type]
    for ref in ["", ":demo:1", ":docker.io/library/demo:1", f"@{built.digest}"]:
        with open_image(f"docker-archive:{tmp_path / 'd.tar'}{ref}") as source:
            assert source.digest == built.config_digest == source.config_digest
            assert source.runtime.cmd == ("/bin/sh",)
    with open_image(f"docker-archive:{tmp_path / 'd.tar'}") as source:
        assert _flat(source, tmp_path) == EXPECTED
    with pytest.raises(ImageReferenceError, match="no image named"):
        open_image(f"docker-archive:{tmp_path / 'd.tar'}:other:1")


def test_a_gzipped_docker_archive_layer_is_read(tmp_path: Path) -> None:
    layers = [gzip.compress(layer, mtime=0) for layer in LAYERS]
    # The config's diff_ids are of the uncompressed layers; the archive holds them gzipped.
    built = write_docker_archive(tmp_path / "d.tar", LAYERS)
    with tarfile.open(tmp_path / "d.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    names = json.loads(files["manifest.json"])[0]["Layers"]
    for name, data in zip(names, layers, strict=True):
        files[name] = data
    _write_tar(tmp_path / "g.tar", files)
    with open_image(f"docker-archive:{tmp_path / 'g.tar'}") as source:
        assert source.digest == built.digest
        assert _flat(source, tmp_path) == EXPECTED


def _write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# --- blobs that do not match their names -------------------------------------------------------


def _layout(tmp_path: Path) -> tuple[Path, Built]:
    return tmp_path / "l", write_oci_layout(tmp_path / "l", LAYERS)


def _flatten_fails(tmp_path: Path, error: type[Exception], ref: str | None = None) -> None:
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    with open_image(ref or f"oci:{tmp_path / 'l'}:t") as source, pytest.raises(error):
        flatten(source, store / "root")
    assert list(store.iterdir()) == []


def test_a_tampered_layer(tmp_path: Path) -> None:
    layout, built = _layout(tmp_path)
    blob = _blob(layout, built.layer_digests[1])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x40
    blob.write_bytes(bytes(data))
    _flatten_fails(tmp_path, ImageDigestError)


def test_a_truncated_layer(tmp_path: Path) -> None:
    layout, built = _layout(tmp_path)
    blob = _blob(layout, built.layer_digests[0])
    blob.write_bytes(blob.read_bytes()[:-20])
    _flatten_fails(tmp_path, ImageDigestError)


def test_a_layer_longer_than_its_descriptor(tmp_path: Path) -> None:
    layout, built = _layout(tmp_path)
    blob = _blob(layout, built.layer_digests[0])
    blob.write_bytes(blob.read_bytes() + b"\0" * 10)
    _flatten_fails(tmp_path, ImageDigestError)


def test_a_layer_whose_contents_do_not_have_their_diff_id(tmp_path: Path) -> None:
    # A consistent manifest (digests and sizes right) over a config naming other diff_ids.
    layout = tmp_path / "l"
    write_oci_layout(layout, LAYERS)
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]).read_bytes())
    config = json.loads(_blob(layout, manifest["config"]["digest"]).read_bytes())
    config["rootfs"]["diff_ids"][1] = sha256(b"something else")
    data = json.dumps(config).encode()
    manifest["config"] = {
        **manifest["config"],
        "digest": write_blob(layout, data),
        "size": len(data),
    }
    mdata = json.dumps(manifest).encode()
    index["manifests"][0] = {
        **index["manifests"][0],
        "digest": write_blob(layout, mdata),
        "size": len(mdata),
    }
    (layout / "index.json").write_text(json.dumps(index))
    _flatten_fails(tmp_path, ImageDigestError)


def test_a_tampered_docker_archive_layer(tmp_path: Path) -> None:
    write_docker_archive(tmp_path / "d.tar", LAYERS)
    with tarfile.open(tmp_path / "d.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    name = json.loads(files["manifest.json"])[0]["Layers"][1]
    files[name] = files[name].replace(b"gamma", b"GAMMA")
    _write_tar(tmp_path / "bad.tar", files)
    _flatten_fails(tmp_path, ImageDigestError, f"docker-archive:{tmp_path / 'bad.tar'}")


def test_a_tampered_docker_archive_config(tmp_path: Path) -> None:
    write_docker_archive(tmp_path / "d.tar", LAYERS)
    with tarfile.open(tmp_path / "d.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    name = json.loads(files["manifest.json"])[0]["Config"]
    files[name] = files[name].replace(b"/bin/sh", b"/bin/xx")
    _write_tar(tmp_path / "bad.tar", files)
    with pytest.raises(ImageDigestError, match="config"):
        open_image(f"docker-archive:{tmp_path / 'bad.tar'}")


@pytest.mark.parametrize("which", ["manifest", "config"])
def test_tampered_documents(tmp_path: Path, which: str) -> None:
    layout, built = _layout(tmp_path)
    blob = _blob(layout, built.digest if which == "manifest" else built.config_digest)
    blob.write_bytes(blob.read_bytes().replace(b"2", b"3", 1))
    with pytest.raises(ImageDigestError):
        open_image(f"oci:{layout}:t")


def test_missing_blobs(tmp_path: Path) -> None:
    layout, built = _layout(tmp_path)
    _blob(layout, built.layer_digests[0]).unlink()
    _flatten_fails(tmp_path, ImageBlobMissingError)
    _blob(layout, built.config_digest).unlink()
    with pytest.raises(ImageBlobMissingError):
        open_image(f"oci:{layout}:t")


def test_foreign_layers_are_unsupported(tmp_path: Path) -> None:
    write_oci_layout(
        tmp_path / "l",
        LAYERS,
        layer_media_type="application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    )
    with pytest.raises(UnsupportedImageError):
        open_image(f"oci:{tmp_path / 'l'}:t")


def test_a_layer_that_does_not_decompress(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    write_oci_layout(layout, [b"not a tar at all" * 64], compression="none")
    _flatten_fails(tmp_path, ImageFormatError)


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        (":nope", ImageReferenceError),
        ("", ImageReferenceError),  # two tags: ambiguous without one
    ],
)
def test_tags(tmp_path: Path, ref: str, error: type[Exception]) -> None:
    layout = tmp_path / "l"
    write_oci_layout(layout, LAYERS, tag="a")
    index = json.loads((layout / "index.json").read_text())
    second = write_oci_layout(tmp_path / "other", LAYERS[:1], tag="b")
    for blob in (tmp_path / "other" / "blobs" / "sha256").iterdir():
        (layout / "blobs" / "sha256" / blob.name).write_bytes(blob.read_bytes())
    index["manifests"] += json.loads((tmp_path / "other" / "index.json").read_text())["manifests"]
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(error):
        open_image(f"oci:{layout}{ref}")
    with open_image(f"oci:{layout}:b") as source:
        assert source.digest == second.digest


def test_no_such_source(tmp_path: Path) -> None:
    for ref in [
        f"oci:{tmp_path}/none",
        f"oci-archive:{tmp_path}/none.tar",
        f"docker-archive:{tmp_path}/none.tar",
    ]:
        with pytest.raises(ImageReferenceError):
            open_image(ref)
    (tmp_path / "junk.tar").write_bytes(b"junk" * 300)
    with pytest.raises(ImageFormatError):
        open_image(f"oci-archive:{tmp_path}/junk.tar")


# --- bombs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_compression_bomb_stops_at_the_ratio(tmp_path: Path, compression: str) -> None:
    layout = tmp_path / "l"
    write_oci_layout(
        layout,
        [layer_tar([file("zeros", b"\0" * (4 * 1024 * 1024))])],
        compression=compression,  # type: ignore[arg-type]
    )
    limits = ImageLimits(max_compression_ratio=50, ratio_floor_bytes=1024 * 1024)
    store = tmp_path / "store"
    store.mkdir()
    with (
        open_image(f"oci:{layout}:t", limits=limits) as source,
        pytest.raises(ImageLimitError, match="ratio"),
    ):
        flatten(source, store / "root")
    assert list(store.iterdir()) == []


def test_total_unpacked_bytes_are_bounded(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    layer = layer_tar([file("f", b"x" * 100_000)])
    write_oci_layout(layout, [layer, layer])
    store = tmp_path / "store"
    store.mkdir()
    limits = ImageLimits(max_unpacked_bytes=150_000)
    with (
        open_image(f"oci:{layout}:t", limits=limits) as source,
        pytest.raises(ImageLimitError, match="unpack"),
    ):
        flatten(source, store / "root")
    assert list(store.iterdir()) == []


def test_oversized_documents(tmp_path: Path) -> None:
    layout, _ = _layout(tmp_path)
    with pytest.raises(ImageLimitError):
        open_image(f"oci:{layout}:t", limits=ImageLimits(max_document_bytes=100))


def test_links_inside_an_archive_resolve_and_loops_are_refused(tmp_path: Path) -> None:
    built = write_docker_archive(tmp_path / "d.tar", LAYERS)
    with tarfile.open(tmp_path / "d.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    manifest = json.loads(files["manifest.json"])
    names = manifest[0]["Layers"]

    def write(links: dict[str, str], path: Path) -> None:
        with tarfile.open(path, "w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for name, target in links.items():
                info = tarfile.TarInfo(name)
                info.type = tarfile.SYMTYPE
                info.linkname = target
                tar.addfile(info)

    # Like skopeo's and Docker's <id>/layer.tar -> ../<hex>.tar
    files["real.tar"] = files.pop(names[0])
    write({names[0]: "../real.tar"}, tmp_path / "ok.tar")
    with open_image(f"docker-archive:{tmp_path / 'ok.tar'}") as source:
        assert source.digest == built.digest
        assert _flat(source, tmp_path) == EXPECTED
    del files["real.tar"]
    write(
        {names[0]: "loop.tar", f"{names[0].split('/')[0]}/loop.tar": "layer.tar"},
        tmp_path / "loop.tar",
    )
    with (
        open_image(f"docker-archive:{tmp_path / 'loop.tar'}") as source,
        pytest.raises(ImageFormatError),
    ):
        _flat(source, tmp_path)


@pytest.mark.parametrize("text", [b"{}", b"not json", b'[{"Config": 1, "Layers": []}]', b"[]"])
def test_a_malformed_docker_manifest(tmp_path: Path, text: bytes) -> None:
    _write_tar(tmp_path / "d.tar", {"manifest.json": text})
    with pytest.raises((ImageFormatError, ImageReferenceError)):
        open_image(f"docker-archive:{tmp_path / 'd.tar'}")


@pytest.mark.parametrize(
    "index",
    [
        b"not json",
        b'{"schemaVersion": 2}',
        b'{"schemaVersion": 3, "manifests": []}',
        b'{"schemaVersion": 2, "manifests": [{"mediaType": "x", "digest": "sha256:0", "size": 1}]}',
    ],
)
def test_a_malformed_index(tmp_path: Path, index: bytes) -> None:
    layout, _ = _layout(tmp_path)
    (layout / "index.json").write_bytes(index)
    with pytest.raises((ImageFormatError, ImageReferenceError, UnsupportedImageError)):
        open_image(f"oci:{layout}")


def test_an_index_entry_of_another_digest_algorithm(tmp_path: Path) -> None:
    layout, _ = _layout(tmp_path)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha512:" + "ab" * 64
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(UnsupportedImageError, match="sha512"):
        open_image(f"oci:{layout}:t")


def test_a_docker_archive_of_two_images_needs_a_name_and_pins_are_checked(tmp_path: Path) -> None:
    one = write_docker_archive(tmp_path / "one.tar", LAYERS, name="one:1")
    two = write_docker_archive(tmp_path / "two.tar", LAYERS[:1], name="two:1")
    files: dict[str, bytes] = {}
    entries = []
    for archive in ("one.tar", "two.tar"):
        with tarfile.open(tmp_path / archive) as tar:
            for member in tar:
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if member.name == "manifest.json":
                    entries += json.loads(data)
                else:
                    files.setdefault(member.name, data)
    files["manifest.json"] = json.dumps(entries).encode()
    _write_tar(tmp_path / "both.tar", files)
    both = f"docker-archive:{tmp_path / 'both.tar'}"
    with pytest.raises(ImageReferenceError, match="2 images"):
        open_image(both)
    with open_image(f"{both}:two:1") as source:
        assert source.digest == two.digest
    with open_image(f"{both}@{one.digest}") as source:
        assert source.digest == one.digest
    with pytest.raises(ImageDigestError, match="pinned"):
        open_image(f"{both}:two:1@{one.digest}")
