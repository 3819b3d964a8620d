"""The bounds one image read and flattening obeys, defaulting to :mod:`golem_graphene.limits`.

A frozen value so that a store, a command or a test can narrow them without touching the
package-wide defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from golem_graphene import limits

__all__ = ["ImageLimits"]


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Bounds on reading an image and flattening its layers (each breach is an
    :class:`~golem_graphene.errors.ImageLimitError`)."""

    max_document_bytes: int = limits.MAX_IMAGE_DOCUMENT_BYTES
    max_layers: int = limits.MAX_IMAGE_LAYERS
    max_archive_members: int = limits.MAX_IMAGE_ARCHIVE_MEMBERS
    max_index_depth: int = limits.MAX_IMAGE_INDEX_DEPTH
    max_entries: int = limits.MAX_IMAGE_ENTRIES
    max_file_bytes: int = limits.MAX_IMAGE_FILE_BYTES
    max_unpacked_bytes: int = limits.MAX_IMAGE_UNPACKED_BYTES
    max_compression_ratio: int = limits.MAX_IMAGE_COMPRESSION_RATIO
    ratio_floor_bytes: int = limits.IMAGE_RATIO_FLOOR_BYTES
    max_path_bytes: int = limits.MAX_IMAGE_PATH_BYTES
    max_path_depth: int = limits.MAX_IMAGE_PATH_DEPTH
