"""Reading an image by digest: OCI layouts, OCI archives and docker archives.

:func:`open_image` resolves a reference to one image (index -> linux/amd64 manifest -> config
and layers), checking every document against its digest and media type;
:meth:`ImageSource.open_layer` streams a layer's uncompressed tar while checking its stored
digest and its ``diff_id``.

The image digest is what identifies the image for the store and for pins: for OCI sources the
digest of the image manifest; for docker archives the digest of the config (Docker's image id),
since ``manifest.json`` is not content addressed. The same content therefore has a different
image digest as a docker archive than as an OCI image; what runs (the flattened root and the
runtime fields) is identical.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from golem_graphene._logging import LazyLogger
from golem_graphene.errors import (
    ImageDigestError,
    ImageFormatError,
    ImageLimitError,
    ImageReferenceError,
    UnsupportedImageError,
)
from golem_graphene.images import _documents as docs
from golem_graphene.images._blobs import Blobs, FolderBlobs, TarBlobs
from golem_graphene.images._stream import (
    BoundedDecompressedReader,
    Compression,
    VerifyingReader,
    decompressing,
    sniff_compression,
)
from golem_graphene.images.limits import ImageLimits
from golem_graphene.images.reference import ImageReference, parse_reference

__all__ = ["ImageSource", "LayerInfo", "LayerStream", "RuntimeConfig", "open_image"]

_log = LazyLogger(__name__)

PLATFORM_OS = "linux"
PLATFORM_ARCHITECTURE = "amd64"
_BLOB_PATH = re.compile(r"(?:\./)?blobs/sha256/([0-9a-f]{64})")
_HEX_JSON = re.compile(r"(?:\./)?([0-9a-f]{64})\.json")


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """The config fields that decide what runs (everything else describes how it was made)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One layer: where it is, how it is compressed and what it must hash to.

    ``digest``/``size`` are those of the stored bytes when known (always for OCI; for docker
    archives only in Docker 25+'s ``blobs/sha256`` form); ``compression`` ``None`` means the
    first bytes decide (docker archives carry no media type); ``diff_id`` is always checked.
    """

    index: int
    name: str
    media_type: str | None
    digest: str | None
    size: int | None
    diff_id: str
    compression: Compression | None


class LayerStream(io.RawIOBase):
    """A layer's uncompressed tar. :meth:`finish` reads what is left and checks the stored
    digest and the ``diff_id`` (raises :class:`ImageDigestError`); a layer is trusted only
    after it."""

    def __init__(self, info: LayerInfo, blob: VerifyingReader, data: BoundedDecompressedReader):
        super().__init__()
        self.info = info
        self._blob = blob
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._data.readinto(buffer)

    def finish(self) -> None:
        self._data.drain()
        self._blob.finish()
        if self._data.digest != self.info.diff_id:
            raise ImageDigestError(
                f"layer {self.info.index} ({self.info.name}) does not have its diff_id",
                expected=self.info.diff_id,
                found=self._data.digest,
            )


class ImageSource:
    """One resolved image, open for reading its layers (a context manager; close it).

    ``digest`` is the image digest (module docstring), ``config_digest`` the config's,
    ``runtime`` the config's runtime fields and ``layers`` the layers, lowest first.
    """

    def __init__(
        self,
        reference: ImageReference,
        blobs: Blobs,
        *,
        digest: str,
        config_digest: str,
        runtime: RuntimeConfig,
        layers: tuple[LayerInfo, ...],
        limits: ImageLimits,
    ) -> None:
        self.reference = reference
        self.digest = digest
        self.config_digest = config_digest
        self.runtime = runtime
        self.layers = layers
        self.limits = limits
        self._blobs = blobs
        self._unpacked = 0

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._blobs.close()

    def _spend(self, n: int) -> None:
        self._unpacked += n
        if self._unpacked > self.limits.max_unpacked_bytes:
            raise ImageLimitError(
                "the image's layers unpack to more bytes than allowed (a bomb?)",
                expected=f"at most {self.limits.max_unpacked_bytes}",
                found=f"more than {self.limits.max_unpacked_bytes}",
            )

    @contextmanager
    def open_layer(self, layer: LayerInfo) -> Iterator[LayerStream]:
        """Stream ``layer``'s uncompressed tar; call ``finish()`` on it before trusting it.

        Raises :class:`ImageBlobMissingError`, :class:`ImageDigestError`,
        :class:`ImageFormatError` (it does not decompress) and :class:`ImageLimitError` (the
        total uncompressed bytes or the compression ratio pass their bounds).
        """
        what = f"layer {layer.index} ({layer.name})"
        raw = self._blobs.open(layer.name)
        try:
            blob = VerifyingReader(
                raw, what=what, expected_digest=layer.digest, expected_size=layer.size
            )
            buffered = io.BufferedReader(blob, 64 * 1024)
            compression = layer.compression or sniff_compression(buffered.peek(4)[:4])
            inner = decompressing(buffered, compression)
            data = BoundedDecompressedReader(
                inner, what=what, compressed=blob, limits=self.limits, spend=self._spend
            )
            yield LayerStream(layer, blob, data)
        finally:
            raw.close()


def open_image(
    reference: ImageReference | str, *, limits: ImageLimits | None = None
) -> ImageSource:
    """Resolve ``reference`` to one linux/amd64 image and check its documents.

    Raises :class:`ImageReferenceError` (bad reference, no such tag, ambiguous source, pin not
    matched), :class:`ImageDigestError`, :class:`ImageBlobMissingError`,
    :class:`ImageFormatError`, :class:`UnsupportedImageError` and :class:`ImageLimitError`.
    Layers are read later, by :meth:`ImageSource.open_layer`.
    """
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    bounds = limits or ImageLimits()
    path = Path(ref.path)
    blobs: Blobs
    if ref.transport == "oci":
        blobs = FolderBlobs(path)
    else:
        blobs = TarBlobs(path, max_members=bounds.max_archive_members)
    try:
        if ref.transport == "docker-archive":
            return _open_docker_archive(ref, blobs, bounds)
        return _open_oci(ref, blobs, bounds)
    except BaseException:
        blobs.close()
        raise


def _read_all(stream: IO[bytes], limit: int, what: str) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ImageLimitError(f"{what} is too large", expected=f"at most {limit} bytes")
    return data


def _read_document(blobs: Blobs, name: str, limit: int, what: str) -> bytes:
    with blobs.open(name) as stream:
        return _read_all(stream, limit, what)


def _read_blob(blobs: Blobs, desc: docs.Descriptor, limits: ImageLimits, what: str) -> bytes:
    digest = docs.check_digest(desc.digest, what)
    if desc.size > limits.max_document_bytes:
        raise ImageLimitError(
            f"{what} is too large",
            expected=f"at most {limits.max_document_bytes} bytes",
            found=f"{desc.size} bytes",
        )
    with blobs.open(_blob_name(digest)) as raw:
        reader = VerifyingReader(
            raw, what=f"{what} {digest}", expected_digest=digest, expected_size=desc.size
        )
        data = reader.read(desc.size)
        reader.finish()
    return data


def _blob_name(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


def _open_oci(ref: ImageReference, blobs: Blobs, limits: ImageLimits) -> ImageSource:
    layout = _read_document(blobs, "oci-layout", 4096, "oci-layout")
    if b'"imageLayoutVersion"' not in layout:
        raise ImageFormatError("oci-layout names no imageLayoutVersion", found=layout[:100])
    index = docs.parse(
        docs.Index,
        _read_document(blobs, "index.json", limits.max_document_bytes, "index.json"),
        "index.json",
    )
    desc = _select_tagged(index, ref)
    depth = 0
    while desc.media_type in docs.INDEX_TYPES:
        depth += 1
        if depth > limits.max_index_depth:
            raise ImageLimitError(
                "image indexes nest too deeply", expected=f"at most {limits.max_index_depth}"
            )
        nested = docs.parse(docs.Index, _read_blob(blobs, desc, limits, "an index"), "an index")
        desc = _select_platform(nested, desc.digest)
    if desc.media_type not in docs.MANIFEST_TYPES:
        raise UnsupportedImageError(
            "the image names a manifest of a kind we do not read",
            expected=" or ".join(sorted(docs.MANIFEST_TYPES)),
            found=desc.media_type,
        )
    manifest_digest = docs.check_digest(desc.digest, "the image manifest")
    if ref.digest is not None and ref.digest != manifest_digest:
        raise ImageDigestError(
            f"{ref} does not have the pinned digest", expected=ref.digest, found=manifest_digest
        )
    manifest = docs.parse(
        docs.Manifest, _read_blob(blobs, desc, limits, "the image manifest"), "the image manifest"
    )
    if manifest.schema_version != 2 or manifest.media_type not in {None, desc.media_type}:
        raise ImageFormatError(
            "the image manifest's schema or media type disagrees with its descriptor",
            expected=f"schemaVersion 2, {desc.media_type}",
            found=f"schemaVersion {manifest.schema_version}, {manifest.media_type}",
        )
    if manifest.config.media_type not in docs.CONFIG_TYPES:
        raise UnsupportedImageError(
            "the image config is of a kind we do not read (an artifact, not an image?)",
            expected=" or ".join(sorted(docs.CONFIG_TYPES)),
            found=manifest.config.media_type,
        )
    config_digest = docs.check_digest(manifest.config.digest, "the image config")
    config = _parse_config(_read_blob(blobs, manifest.config, limits, "the image config"))
    _check_layer_count(len(manifest.layers), config, limits)
    layers = []
    for i, layer in enumerate(manifest.layers):
        compression = docs.LAYER_COMPRESSION.get(layer.media_type)
        if compression is None:
            raise UnsupportedImageError(
                f"layer {i} is of a kind we do not read (foreign or non-distributable?)",
                expected=" or ".join(sorted(docs.LAYER_COMPRESSION)),
                found=layer.media_type,
            )
        digest = docs.check_digest(layer.digest, f"layer {i}")
        layers.append(
            LayerInfo(
                index=i,
                name=_blob_name(digest),
                media_type=layer.media_type,
                digest=digest,
                size=layer.size,
                diff_id=config.rootfs.diff_ids[i],
                compression=compression,
            )
        )
    return ImageSource(
        ref,
        blobs,
        digest=manifest_digest,
        config_digest=config_digest,
        runtime=_runtime(config),
        layers=tuple(layers),
        limits=limits,
    )


def _select_tagged(index: docs.Index, ref: ImageReference) -> docs.Descriptor:
    if index.schema_version != 2:
        raise ImageFormatError(
            "index.json has another schemaVersion", expected=2, found=index.schema_version
        )
    entries = index.manifests
    if ref.tag is not None:
        entries = [d for d in entries if (d.annotations or {}).get(docs.REF_NAME) == ref.tag]
        if not entries:
            raise ImageReferenceError(f"{ref.path} holds no image tagged {ref.tag}")
    elif ref.digest is not None and any(d.digest == ref.digest for d in entries):
        entries = [d for d in entries if d.digest == ref.digest]
    if len({d.digest for d in entries}) != 1:
        raise ImageReferenceError(
            f"{ref.path} holds {len(entries)} images; name one with :TAG",
            expected="exactly one",
            found=len(entries),
        )
    return entries[0]


def _select_platform(index: docs.Index, digest: str) -> docs.Descriptor:
    found = []
    for desc in index.manifests:
        platform = desc.platform
        if platform is None:
            continue
        found.append(f"{platform.os}/{platform.architecture}")
        if platform.os == PLATFORM_OS and platform.architecture == PLATFORM_ARCHITECTURE:
            return desc
    raise UnsupportedImageError(
        f"the image index {digest} has no image for our platform",
        expected=f"{PLATFORM_OS}/{PLATFORM_ARCHITECTURE}",
        found=", ".join(found) or "no platforms",
    )


def _parse_config(data: bytes) -> docs.Config:
    config = docs.parse(docs.Config, data, "the image config")
    if config.os != PLATFORM_OS or config.architecture != PLATFORM_ARCHITECTURE:
        raise UnsupportedImageError(
            "the image is for another platform",
            expected=f"{PLATFORM_OS}/{PLATFORM_ARCHITECTURE}",
            found=f"{config.os}/{config.architecture}",
        )
    if config.rootfs.type != "layers":
        raise ImageFormatError(
            "the image config's rootfs.type is unknown", expected="layers", found=config.rootfs.type
        )
    for diff_id in config.rootfs.diff_ids:
        docs.check_digest(diff_id, "the image config's rootfs.diff_ids")
    return config


def _check_layer_count(count: int, config: docs.Config, limits: ImageLimits) -> None:
    if count > limits.max_layers:
        raise ImageLimitError(
            "the image has too many layers", expected=f"at most {limits.max_layers}", found=count
        )
    if count != len(config.rootfs.diff_ids):
        raise ImageFormatError(
            "the image's layers and its config's rootfs.diff_ids differ in number",
            expected=len(config.rootfs.diff_ids),
            found=count,
        )


def _runtime(config: docs.Config) -> RuntimeConfig:
    fields = config.config or docs.RuntimeFields()
    return RuntimeConfig(
        entrypoint=tuple(fields.entrypoint or ()),
        cmd=tuple(fields.cmd or ()),
        env=tuple(fields.env or ()),
        working_dir=fields.working_dir or "",
        user=fields.user or "",
    )


def _familiar(name: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _open_docker_archive(ref: ImageReference, blobs: Blobs, limits: ImageLimits) -> ImageSource:
    entries = docs.parse_docker_manifest(
        _read_document(blobs, "manifest.json", limits.max_document_bytes, "manifest.json")
    )
    if ref.tag is not None:
        want = _familiar(ref.tag)
        entries = [e for e in entries if any(_familiar(t) == want for t in e.repo_tags or ())]
        if not entries:
            raise ImageReferenceError(f"{ref.path} holds no image named {ref.tag}")
    configs: dict[str, tuple[docs.DockerArchiveEntry, bytes]] = {}
    for entry in entries:
        data = _read_document(blobs, entry.config, limits.max_document_bytes, "an image config")
        digest = "sha256:" + _sha256(data)
        named = _BLOB_PATH.fullmatch(entry.config) or _HEX_JSON.fullmatch(entry.config)
        if named is not None and f"sha256:{named.group(1)}" != digest:
            raise ImageDigestError(
                f"the image config {entry.config} does not have its digest",
                expected=f"sha256:{named.group(1)}",
                found=digest,
            )
        configs.setdefault(digest, (entry, data))
    if ref.digest is not None and ref.tag is None and ref.digest in configs:
        configs = {ref.digest: configs[ref.digest]}
    if len(configs) != 1:
        raise ImageReferenceError(
            f"{ref.path} holds {len(configs)} images; name one with :NAME:TAG",
            expected="exactly one",
            found=len(configs),
        )
    [(digest, (entry, data))] = configs.items()
    if ref.digest is not None and ref.digest != digest:
        raise ImageDigestError(
            f"{ref} does not have the pinned digest", expected=ref.digest, found=digest
        )
    config = _parse_config(data)
    _check_layer_count(len(entry.layers), config, limits)
    layers = []
    for i, name in enumerate(entry.layers):
        stored = _BLOB_PATH.fullmatch(name)
        layers.append(
            LayerInfo(
                index=i,
                name=name,
                media_type=None,
                digest=f"sha256:{stored.group(1)}" if stored else None,
                size=None,
                diff_id=config.rootfs.diff_ids[i],
                compression=None,
            )
        )
    return ImageSource(
        ref,
        blobs,
        digest=digest,
        config_digest=digest,
        runtime=_runtime(config),
        layers=tuple(layers),
        limits=limits,
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
