"""The file extensions sluice accepts: images, with the format their content must have, and
data files, with the record format each holds.

Apart from :mod:`sluice.thumbnails` (Pillow) and :mod:`sluice.records` (ijson, orjson) so
that what only needs the tables (the API's upload checks) imports neither at init: ~25 ms
of the API function's cold start (docs/benchmarks.md, "Cold start"). The transform and the
API's uploads (:mod:`sluice.uploads`) agree on them through this one module.
"""

from __future__ import annotations

from typing import Literal

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

RecordFormat = Literal["array", "lines"]

DATA_FORMATS: dict[str, RecordFormat] = {".json": "array", ".jsonl": "lines", ".ndjson": "lines"}
"""Data file extensions (lower case) and the record format each holds."""
