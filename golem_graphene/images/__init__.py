"""Container images: references, sources read by digest, safe flattening and a root store.

A lower part of the package (it imports no host, provider, runtime or requestor code): ``build``
and ``measure`` turn an image into an enclave image on top of it. Names resolve lazily: a spec
that only parses a reference does not load the flattening machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from golem_graphene._lazy import lazy_exports

if TYPE_CHECKING:
    from golem_graphene.errors import (
        ImageBlobMissingError,
        ImageDigestError,
        ImageError,
        ImageFormatError,
        ImageLimitError,
        ImageReferenceError,
        UnsafeLayerEntryError,
        UnsupportedImageError,
    )
    from golem_graphene.images.flattening import FlattenReport, flatten, remove_tree
    from golem_graphene.images.limits import ImageLimits
    from golem_graphene.images.reference import ImageReference, parse_reference
    from golem_graphene.images.root_index import RootEntry, RootIndex
    from golem_graphene.images.source import (
        ImageSource,
        LayerInfo,
        LayerStream,
        RuntimeConfig,
        open_image,
    )
    from golem_graphene.images.store import ImageStore, StoredRoot

# The error family lives in golem_graphene.errors (one tree); it is exported here, where callers
# of this part look for it.
_ERRORS = (
    "ImageBlobMissingError",
    "ImageDigestError",
    "ImageError",
    "ImageFormatError",
    "ImageLimitError",
    "ImageReferenceError",
    "UnsafeLayerEntryError",
    "UnsupportedImageError",
)

__all__ = [
    "FlattenReport",
    "ImageBlobMissingError",
    "ImageDigestError",
    "ImageError",
    "ImageFormatError",
    "ImageLimitError",
    "ImageLimits",
    "ImageReference",
    "ImageReferenceError",
    "ImageSource",
    "ImageStore",
    "LayerInfo",
    "LayerStream",
    "RootEntry",
    "RootIndex",
    "RuntimeConfig",
    "StoredRoot",
    "UnsafeLayerEntryError",
    "UnsupportedImageError",
    "flatten",
    "open_image",
    "parse_reference",
    "remove_tree",
]

_lazy = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("FlattenReport", "flatten", "remove_tree"), "flattening"),
        "ImageLimits": "limits",
        **dict.fromkeys(("ImageReference", "parse_reference"), "reference"),
        **dict.fromkeys(("RootEntry", "RootIndex"), "root_index"),
        **dict.fromkeys(
            ("ImageSource", "LayerInfo", "LayerStream", "RuntimeConfig", "open_image"), "source"
        ),
        **dict.fromkeys(("ImageStore", "StoredRoot"), "store"),
    },
)


def __getattr__(attr: str) -> object:
    if attr in _ERRORS:
        from golem_graphene import errors

        return getattr(errors, attr)
    return _lazy(attr)
