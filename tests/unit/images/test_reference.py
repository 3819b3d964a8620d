"""Image references: the three forms, pins, and fuzzing (only our errors, and a round trip)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_graphene.errors import ImageReferenceError, UnsupportedImageError
from golem_graphene.images import ImageReference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci:dir", ImageReference("oci", "dir")),
        ("oci:/a/b:latest", ImageReference("oci", "/a/b", "latest")),
        (f"oci:img@{DIGEST}", ImageReference("oci", "img", None, DIGEST)),
        (
            f"oci-archive:x.tar:v1.2@{DIGEST}",
            ImageReference("oci-archive", "x.tar", "v1.2", DIGEST),
        ),
        ("docker-archive:s.tar", ImageReference("docker-archive", "s.tar")),
        (
            "docker-archive:s.tar:busybox:latest",
            ImageReference("docker-archive", "s.tar", "busybox:latest"),
        ),
        (
            "docker-archive:s.tar:localhost:5000/team/app:1.0",
            ImageReference("docker-archive", "s.tar", "localhost:5000/team/app:1.0"),
        ),
        ("oci:my@dir", ImageReference("oci", "my@dir")),
    ],
)
def test_forms(text: str, expected: ImageReference) -> None:
    assert parse_reference(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "dir",
        "docker://busybox",
        "oci:",
        "oci::tag",
        "oci:dir:",
        "oci:dir:bad tag",
        "oci:dir:-x",
        "docker-archive:s.tar:noversion",
        "docker-archive:s.tar:Upper:1",
        "docker-archive:s.tar:name:",
        f"oci:dir@{DIGEST[:-1]}",
        "oci:dir@sha256:" + "AB" * 32,
        "oci:d\x00ir",
        "oci:dir\n",
        "oci:" + "x" * 10_000,
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ImageReferenceError):
        parse_reference(text)


def test_other_digest_algorithms_are_unsupported() -> None:
    with pytest.raises(UnsupportedImageError):
        parse_reference("oci:dir@sha512:" + "ab" * 64)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=120))
def test_any_text_parses_or_raises_our_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except (ImageReferenceError, UnsupportedImageError):
        return
    assert parse_reference(str(ref)) == ref


_PATH = st.text(
    st.characters(blacklist_characters=":\x00\n\r@", codec="utf-8"), min_size=1, max_size=40
)
_TAG = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_HEX = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["oci", "oci-archive", "docker-archive"]),
    _PATH,
    st.none() | _TAG,
    st.none() | _HEX,
)
def test_well_formed_references_round_trip(
    transport: str, path: str, tag: str | None, hexdigest: str | None
) -> None:
    if transport == "docker-archive" and tag is not None:
        tag = f"{tag}:{tag}"
    ref = ImageReference(transport, path, tag, f"sha256:{hexdigest}" if hexdigest else None)  # type: ignore[arg-type]
    assert parse_reference(str(ref)) == ref
