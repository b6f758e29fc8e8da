"""The image extensions sluice accepts and the format each one's content must have.

Apart from :mod:`sluice.thumbnails` (which decodes with Pillow) so that what only needs the
table (the API's upload checks) does not import Pillow at init: ~20 ms of a cold start
(docs/benchmarks.md, "Cold start").
"""

from __future__ import annotations

INPUT_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".gif": "GIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
"""Image extensions we accept, with the format their content must have."""
