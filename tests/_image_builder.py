"""Hand-crafted layers and images for the image tests (the real-tool images are in
tests/integration/test_images_real_tools.py): what no honest tool writes, byte for byte."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
Compression = Literal["none", "gzip", "zstd"]


@dataclass
class Entry:
    """One tar entry: ``kind`` is file, dir, symlink, hardlink, chr, blk or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""


def file(name: str, data: bytes = b"x", mode: int = 0o644) -> Entry:
    return Entry(name, "file", data, mode)


def folder(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, "dir", mode=mode)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, "symlink", target=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, "hardlink", target=target)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def layer_tar(entries: list[Entry]) -> bytes:
    """An uncompressed PAX tar of ``entries`` in order, names exactly as given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TYPES[entry.kind]
            info.mode = entry.mode
            info.mtime = 1_700_000_000
            info.linkname = entry.target
            if entry.kind == "file":
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return out.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Built:
    """What an image writer wrote: the image digest and the digests it used."""

    digest: str
    config_digest: str
    layer_digests: list[str] = field(default_factory=list)


def _config(
    layers: list[bytes], runtime: dict[str, object] | None, platform: tuple[str, str]
) -> bytes:
    config = {
        "architecture": platform[1],
        "os": platform[0],
        "config": runtime if runtime is not None else {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        "history": [{"created_by": "hand"}],
    }
    return json.dumps(config, sort_keys=True).encode()


def write_blob(layout: Path, data: bytes) -> str:
    digest = sha256(data)
    path = layout / "blobs" / "sha256" / digest.split(":")[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def write_oci_layout(
    layout: Path,
    layers: list[bytes],
    *,
    compression: Compression = "gzip",
    tag: str | None = "t",
    runtime: dict[str, object] | None = None,
    platform: tuple[str, str] = ("linux", "amd64"),
    layer_media_type: str | None = None,
    wrap_in_index: bool = False,
) -> Built:
    """An OCI image layout holding one image of ``layers`` (uncompressed tars)."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    config = _config(layers, runtime, platform)
    config_digest = write_blob(layout, config)
    descriptors = []
    for layer in layers:
        blob = compress(layer, compression)
        descriptors.append(
            {
                "mediaType": layer_media_type or LAYER_TYPES[compression],
                "digest": write_blob(layout, blob),
                "size": len(blob),
            }
        )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": descriptors,
        }
    ).encode()
    manifest_digest = write_blob(layout, manifest)
    top = {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest)}
    if wrap_in_index:
        nested = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {**top, "platform": {"os": platform[0], "architecture": platform[1]}}
                ],
            }
        ).encode()
        top = {"mediaType": OCI_INDEX, "digest": write_blob(layout, nested), "size": len(nested)}
    if tag is not None:
        top["annotations"] = {"org.opencontainers.image.ref.name": tag}  # type: ignore[assignment]
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return Built(manifest_digest, config_digest, [d["digest"] for d in descriptors])  # type: ignore[misc]


def write_docker_archive(
    path: Path,
    layers: list[bytes],
    *,
    form: Literal["legacy", "blobs"] = "legacy",
    name: str = "demo:1",
) -> Built:
    """A ``docker save`` archive: ``legacy`` puts layers at ``<n>/layer.tar`` and the config at
    ``<hex>.json``; ``blobs`` uses Docker 25+'s ``blobs/sha256/<hex>`` for both."""
    config = _config(layers, None, ("linux", "amd64"))
    config_digest = sha256(config)
    files: dict[str, bytes] = {}
    names = []
    if form == "legacy":
        config_name = config_digest.split(":")[1] + ".json"
        for i, layer in enumerate(layers):
            names.append(f"{i:064x}/layer.tar")
            files[names[-1]] = layer
    else:
        config_name = "blobs/sha256/" + config_digest.split(":")[1]
        for layer in layers:
            names.append("blobs/sha256/" + sha256(layer).split(":")[1])
            files[names[-1]] = layer
    files[config_name] = config
    files["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": [name], "Layers": names}]
    ).encode()
    with tarfile.open(path, "w") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return Built(config_digest, config_digest, [sha256(layer) for layer in layers])


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under ``root``: (kind, mode, contents or link target); links not followed."""
    import os
    import stat

    out: dict[str, tuple[str, int, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", 0, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", mode, "")
        else:
            out[rel] = ("file", mode, path.read_bytes().decode(errors="replace"))
    return out
