"""An image's outputs: its thumbnails in PROCESSED and what its metadata item will say.

A ``.jpg``/``.jpeg``/``.png``/``.webp``/``.gif``/``.tif``/``.tiff`` file gets one thumbnail
per configured size at ``thumbnails/<size>/<raw key>.<ext>`` (:mod:`sluice.thumbnails` makes
them; the source's extension is kept in the name so ``a.png`` and ``a.jpg`` never share
one, :mod:`sluice.keys`). An image that cannot be made into thumbnails (empty, over
``MAX_IMAGE_BYTES``, not the format its name says, truncated, a decompression bomb) is
**rejected**, and none of its thumbnails remain.

The metadata item (docs/contracts.md, "Image metadata item") is written apart, by
:func:`put_image_item`, only once the version is known to be its key's current one: a
superseded or deleted version must leave no item behind. It is an UpdateItem of the
transform's own attributes that sets ``created_at`` once, so a retry after a crash
rewrites the same item and the tag and archive handlers' attributes stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice import image_items
from sluice.file_formats import INPUT_FORMATS
from sluice.keys import archive_key_for, image_id, split_extension, thumbnail_key
from sluice.receipts import Receipt
from sluice.runtime import make_logger
from sluice.settings import TransformSettings
from sluice.thumbnails import (
    OUTPUT_FORMATS,
    ImageRejectedError,
    ImageResult,
    make_thumbnails,
)
from sluice.transform.outputs import delete_if_present, output_entry
from sluice.transform.sources import Source

logger = make_logger("transform")


@dataclass(frozen=True)
class ImageItem:
    """A processed image's metadata, to write once its version is known to be current."""

    result: ImageResult
    thumbnails: Mapping[str, dict[str, Any]]
    """By longest side: the item's thumbnail entries (``image_items.thumbnail_entry``)."""


def transform_image(
    s3: Any, settings: TransformSettings, source: Source
) -> tuple[Receipt, ImageItem | None]:
    """Thumbnails of ``source`` to PROCESSED; its receipt, and its item unless rejected."""
    key = source.ref.key
    bucket = settings.processed_bucket
    output = OUTPUT_FORMATS[settings.thumbnail_format]
    thumbnail_keys = [
        thumbnail_key(key, size, output.extension) for size in settings.thumbnail_sizes
    ]
    try:
        if source.size > settings.max_image_bytes:
            raise ImageRejectedError(
                "image_too_large",
                f"image is {source.size} bytes, larger than the limit of"
                f" {settings.max_image_bytes} bytes",
            )
        if source.size == 0:
            raise ImageRejectedError("empty_file", "empty file")
        data = source.body.read()
        result = make_thumbnails(
            data,
            expected_format=INPUT_FORMATS[split_extension(key)[1]],
            sizes=settings.thumbnail_sizes,
            output_format=settings.thumbnail_format,
            quality=settings.thumbnail_quality,
            max_pixels=settings.max_image_pixels,
        )
    except ImageRejectedError as rejection:
        delete_if_present(s3, bucket, thumbnail_keys)
        error = {"code": rejection.code, "message": rejection.message}
        return source.rejected("image", error), None
    outputs = []
    entries = {}
    for thumbnail in result.thumbnails:
        out_key = thumbnail_key(key, thumbnail.size, output.extension)
        written = s3.put_object(
            Bucket=bucket, Key=out_key, Body=thumbnail.data, ContentType=thumbnail.content_type
        )
        entries[str(thumbnail.size)] = image_items.thumbnail_entry(
            bucket,
            out_key,
            width=thumbnail.width,
            height=thumbnail.height,
            size_bytes=len(thumbnail.data),
            content_type=thumbnail.content_type,
        )
        outputs.append(
            output_entry(
                bucket,
                out_key,
                thumbnail.content_type,
                len(thumbnail.data),
                version_id=written.get("VersionId"),
                etag=written.get("ETag"),
            )
        )
    for note in result.info.notes:
        logger.info(note)
    receipt = Receipt(
        status="processed", kind="image", source=source.receipt_source(), outputs=outputs
    )
    return receipt, ImageItem(result, entries)


def put_image_item(dynamodb: Any, table: str, source: Source, item: ImageItem) -> None:
    """Create or refresh the image's item (docs/contracts.md, "Image metadata item").

    The tag handler's attributes (labels, lease) and the archive handler's (where the
    original lies) stay; the shape-1 attributes ``thumbnail_keys`` and ``bytes`` are
    removed, so a refreshed item has one shape.
    """
    info = item.result.info
    archive_key = archive_key_for("image", "processed", source.ref.key)
    image_items.put_image_item(
        dynamodb,
        table,
        image_id(archive_key),
        {
            "item_version": image_items.ITEM_VERSION,
            "source_bucket": source.ref.bucket,
            "source_key": source.ref.key,
            "source_etag": source.etag,
            "source_bytes": info.bytes,
            "archive_key": archive_key,
            "thumbnails": {size: dict(entry) for size, entry in item.thumbnails.items()},
            "width": info.width,
            "height": info.height,
            "format": info.format,
            "sha256": info.sha256,
            "animated": info.animated,
        },
        {
            "source_version_id": source.version_id,
            "captured_at": info.captured_at,
            "camera": info.camera,
            "thumbnail_keys": None,
            "bytes": None,
        },
    )
