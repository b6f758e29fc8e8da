"""Image defaults that the settings and the pure image code share (pure: no Pillow, no AWS).

``settings.TransformSettings`` takes them as the defaults of ``THUMBNAIL_QUALITY`` and
``MAX_IMAGE_PIXELS``; ``thumbnails.make_thumbnails`` as its keyword defaults; the offline
labeler as its own decode limit (it decodes the same archived images the transform
accepted, so one bound serves both).
"""

from __future__ import annotations

THUMBNAIL_QUALITY = 85
"""JPEG/WebP quality of a thumbnail: visually lossless at thumbnail sizes."""

MAX_IMAGE_PIXELS = 64_000_000
"""Width x height above which an image is refused before any pixel is decoded
(decompression bombs); a 64 MP camera's photos still pass."""
