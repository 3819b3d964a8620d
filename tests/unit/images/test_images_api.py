"""The public names of golem_graphene.images and the stable codes of its errors: a change to
either is an API change; make it on purpose, here."""

from __future__ import annotations

import golem_graphene.images as images
from golem_graphene import errors

NAMES = {
    "FlattenReport",
    "ImageLimits",
    "ImageReference",
    "ImageSource",
    "ImageStore",
    "LayerInfo",
    "LayerStream",
    "RootEntry",
    "RootIndex",
    "RuntimeConfig",
    "StoredRoot",
    "flatten",
    "open_image",
    "parse_reference",
    "remove_tree",
}

ERROR_CODES = {
    "ImageError": "image",
    "ImageReferenceError": "image_reference",
    "ImageDigestError": "image_digest",
    "ImageBlobMissingError": "image_blob_missing",
    "ImageFormatError": "image_format",
    "UnsupportedImageError": "image_unsupported",
    "UnsafeLayerEntryError": "image_unsafe_entry",
    "ImageLimitError": "image_limit",
}


def test_public_names() -> None:
    exported = set(images.__all__)
    assert len(exported) == len(images.__all__)
    assert exported == NAMES | set(ERROR_CODES), sorted(exported ^ (NAMES | set(ERROR_CODES)))
    for name in exported:
        assert getattr(images, name) is not None, name


def test_error_codes_and_family() -> None:
    for name, code in ERROR_CODES.items():
        cls = getattr(images, name)
        assert cls is getattr(errors, name)
        assert cls.code == code
        assert issubclass(cls, errors.ImageError) and issubclass(cls, errors.ConfigError)
        assert cls("m").http_status == 400
        assert cls("m", expected="a", found="b").to_dict() == {
            "code": code,
            "message": "m: expected a, found b",
        }
