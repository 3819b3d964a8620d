"""A task spec made for a container image: what ``golem-graphene run --image`` runs.

Any ``docker save``/``podman save`` archive (``docker-archive:``), OCI archive or OCI layout of
a command-line program becomes a spec in a folder of its own: the image beside ``task.toml``
(hard-linked where it can be, else copied), pinned by the digest read from the image; the given
input names (required, each up to :data:`INPUT_MAX_SIZE`, a fixed size so that the measurement
does not depend on the files); every file the workload leaves in ``outputs/`` as an output;
the workload's arguments (else the image's Cmd); default limits. The spec's name is
content-addressed: ``run-`` and the first 16 hex digits of the SHA-256 of the spec's text
without its name line, so the same image, inputs and arguments always make the same spec (and
the same measurement), and a provider that keeps it recognises it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from golem_graphene.errors import ImageDigestError, ImageReferenceError, UsageError
from golem_graphene.protocol.spec import TaskSpec

__all__ = ["INPUT_MAX_SIZE", "image_spec_text", "write_image_spec"]

INPUT_MAX_SIZE = "1G"
"""Each input's ``max_size`` in a spec made for an image (part of the measurement)."""

DESCRIPTION = "made by golem-graphene run --image"


def _toml_string(value: str, what: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8", found=ascii(value)[:80]) from None
    # JSON's escapes of a string without lone surrogates are TOML's basic-string escapes.
    return json.dumps(value, ensure_ascii=False)


def image_spec_text(
    image: str, inputs: Sequence[str], args: Sequence[str] | None, *, name: str = ""
) -> str:
    """The spec's text for the pinned reference ``image`` (relative to the spec's folder).
    Without ``name``, the content-addressed one."""
    lines = [
        f"description = {_toml_string(DESCRIPTION, 'the description')}",
        "",
        "[enclave]",
        f"image = {_toml_string(image, 'the image reference')}",
    ]
    if args is not None:
        words = ", ".join(_toml_string(a, "a workload argument") for a in args)
        lines.append(f"args = [{words}]")
    for item in inputs:
        lines += [
            "",
            "[[inputs]]",
            f"name = {_toml_string(item, 'an input name')}",
            f'max_size = "{INPUT_MAX_SIZE}"',
            "required = true",
        ]
    lines += ["", "[outputs]", 'files = ["*"]', ""]
    body = "\n".join(lines)
    if not name:
        name = "run-" + hashlib.sha256(body.encode()).hexdigest()[:16]
    return f"name = {_toml_string(name, 'the spec name')}\n{body}"


def _place_image(source: Path, target: Path) -> None:
    """``source`` (a file, or an OCI layout folder) at ``target``, hard-linked where the file
    system allows, else copied."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, symlinks=False, copy_function=link_or_copy)
    else:
        link_or_copy(str(source), str(target))


def write_image_spec(
    reference: str,
    folder: Path,
    *,
    inputs: Sequence[str] = (),
    args: Sequence[str] | None = None,
) -> Path:
    """Write the spec for the container image ``reference`` into ``folder`` (which must exist
    and be empty) and return its ``task.toml``.

    ``inputs`` are the input names, ``args`` the workload's arguments (``None``: the image's
    Cmd). Raises :class:`UsageError` for a reference that names no readable image or whose
    pinned digest does not match, :class:`~golem_graphene.errors.ConfigError` for input names
    or arguments a spec cannot hold, and the :class:`~golem_graphene.errors.ImageError` family
    for an image that cannot be read.
    """
    from golem_graphene.images import open_image, parse_reference

    try:
        ref = parse_reference(reference)
    except ImageReferenceError as exc:
        raise UsageError(f"--image: {exc.describe()}") from None
    source = Path(ref.path)
    if not source.exists():
        raise UsageError(f"--image: no such file or folder {ref.path!r}")
    try:
        with open_image(ref) as image:
            digest = image.digest
    except ImageReferenceError as exc:
        raise UsageError(f"--image: {exc.describe()}") from None
    except ImageDigestError as exc:
        if ref.digest is not None and exc.expected == ref.digest:
            raise UsageError(f"--image: {exc.describe()}") from None
        raise
    local = "image" if ref.transport == "oci" else "image.tar"
    tail = f":{ref.tag}" if ref.tag is not None else ""
    pinned = f"{ref.transport}:{local}{tail}@{digest}"
    text = image_spec_text(pinned, inputs, args)
    TaskSpec.from_toml(text)  # a name or an argument a spec cannot hold fails here, first
    _place_image(source, folder / local)
    spec_file = folder / "task.toml"
    spec_file.write_text(text, encoding="utf-8")
    return spec_file
