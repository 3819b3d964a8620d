"""Image references as skopeo and podman write them.

``oci:DIR[:TAG]`` (an OCI image layout folder), ``oci-archive:FILE[:TAG]`` (the same layout in a
tar) and ``docker-archive:FILE[:NAME:TAG]`` (what ``docker save`` and ``podman save`` write), each
optionally pinned with a trailing ``@sha256:DIGEST``. As in containers/image, the path ends at
the first ``:`` after the transport, so a path cannot hold one.

The pinned digest is the image digest: for ``oci`` and ``oci-archive`` the digest of the image
manifest; for ``docker-archive`` (whose ``manifest.json`` is no content-addressed document) the
digest of the image config, that is Docker's image id (``docker images --no-trunc``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from golem_graphene import limits
from golem_graphene.errors import ImageReferenceError, UnsupportedImageError

__all__ = ["DIGEST_PATTERN", "ImageReference", "Transport", "parse_reference"]

Transport = Literal["oci", "oci-archive", "docker-archive"]
_TRANSPORTS: tuple[Transport, ...] = ("oci", "oci-archive", "docker-archive")

DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
"""The one digest form we accept (OCI descriptors may name other algorithms; we refuse them)."""

# OCI image-layout's grammar for org.opencontainers.image.ref.name.
_OCI_TAG = re.compile(
    r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*"
)
# Docker's reference grammar, simplified: [domain[:port]/]path:tag.
_DOCKER_NAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_DOCKER_TAG = re.compile(r"[\w][\w.-]{0,127}")
# Any trailing "@algorithm:encoded" (OCI digest grammar): a pin, valid or not.
_PIN = re.compile(r"@([a-z0-9]+(?:[+._-][a-z0-9]+)*):([A-Za-z0-9=_-]+)\Z")
_MAX_REFERENCE_CHARS = limits.MAX_IMAGE_PATH_BYTES + 512


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed image reference.

    ``tag`` is the OCI ``ref.name`` for ``oci``/``oci-archive`` and ``NAME:TAG`` for
    ``docker-archive``; ``None`` when the source must hold exactly one image. ``digest`` is the
    pinned image digest (``sha256:<hex>``) or ``None``.
    """

    transport: Transport
    path: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.transport}:{self.path}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse ``text`` into an :class:`ImageReference`.

    Raises :class:`ImageReferenceError` for anything that is not one of the three forms, and
    :class:`UnsupportedImageError` for a pin with another digest algorithm than SHA-256.
    """
    if not isinstance(text, str) or len(text) > _MAX_REFERENCE_CHARS:
        raise ImageReferenceError(
            "an image reference is too long or not text",
            expected=f"at most {_MAX_REFERENCE_CHARS} characters",
            found=type(text).__name__ if not isinstance(text, str) else f"{len(text)} characters",
        )
    if "\x00" in text or any(ch in text for ch in "\n\r"):
        raise ImageReferenceError("an image reference holds a NUL or line break", found=repr(text))
    digest: str | None = None
    pin = _PIN.search(text)
    if pin is not None:
        algorithm, encoded = pin.group(1), pin.group(2)
        if algorithm != "sha256":
            raise UnsupportedImageError(
                "an image reference pins a digest of another algorithm",
                expected="sha256",
                found=algorithm,
            )
        digest = f"{algorithm}:{encoded}"
        if DIGEST_PATTERN.fullmatch(digest) is None:
            raise ImageReferenceError(
                "an image reference pins a malformed digest",
                expected="sha256: and 64 lowercase hex digits",
                found=digest,
            )
        text = text[: pin.start()]
    transport, sep, rest = text.partition(":")
    if not sep or transport not in _TRANSPORTS:
        raise ImageReferenceError(
            "an image reference names no known transport",
            expected="oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]",
            found=text[:64],
        )
    path, sep, tag_text = rest.partition(":")
    if not path:
        raise ImageReferenceError("an image reference names no path", found=text[:64])
    tag: str | None = tag_text if sep else None
    if tag is not None:
        _check_tag(transport, tag)
    return ImageReference(transport=transport, path=path, tag=tag, digest=digest)


def _check_tag(transport: str, tag: str) -> None:
    if transport == "docker-archive":
        name, sep, version = tag.rpartition(":")
        if (
            not sep
            or "/" in version
            or _DOCKER_NAME.fullmatch(name) is None
            or _DOCKER_TAG.fullmatch(version) is None
            or len(tag) > 255
        ):
            raise ImageReferenceError(
                "a docker-archive reference names a malformed image",
                expected="NAME:TAG (for example busybox:latest)",
                found=tag[:300],
            )
    elif _OCI_TAG.fullmatch(tag) is None or len(tag) > 255:
        raise ImageReferenceError(
            "an OCI reference names a malformed tag",
            expected="an OCI ref.name (letters, digits, -._:@+ and / between them)",
            found=tag[:300],
        )
