"""What a bundle holds: the archived images its request matches, streamed into one zip.

The bundle handler decides *whether* and *when* to build (claims, restores, notifications);
this module knows *what* is built, so both stay short and this part can be measured alone
(``bench/bundle.py`` times :func:`write_bundle_zip` against moto).

**Matching.** ``any`` is the union of the labels' memberships, ``all`` the intersection:
the smallest label (by its count item) is read first and each further label only keeps the
ids already found. Images are deduplicated and sorted by archive key.

**The zip.** It is streamed into a :class:`~sluice.s3io.MultipartWriter`: each archive
object is copied 1 MiB at a time into its entry (``images/<path under images/>``, made safe
and unique), JPEG and other compressed formats stored, the manifest deflated. Memory holds
one part buffer (8 MiB) plus one chunk whatever the bundle's size; what grows with the
number of images is about 200 bytes each (matched ids and keys, and zipfile's central
directory), e.g. ~40 MB for 100,000 images. The manifest is spooled through a temporary
file, not kept in memory. A failure aborts the multipart upload; a retry rebuilds from
scratch.

**The link.** A presigned GET URL (SigV4), downloading as ``<id>.zip``, valid for at most
7 days (SigV4's limit). A URL signed with temporary credentials (the Lambda role's) stops
working when those credentials expire, which can be sooner than its ``expires_at``; use a
longer-lived signer (e.g. CloudFront) if that matters.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from sluice.bundles import BundleRequest, Match
from sluice.events import normalize_etag
from sluice.image_items import fetch_image_metadata
from sluice.keys import ARCHIVE_IMAGES_PREFIX, bundle_zip_key
from sluice.label_items import LabelledImage, iter_images_for_label, label_count
from sluice.s3io import MultipartWriter, get
from sluice.settings import MAX_URL_TTL_SECONDS, BundleSettings
from sluice.units import MIB
from sluice.zipstream import EntryNames, add_stream, safe_entry_name, zip_date_time

METADATA_BATCH = 100  # BatchGetItem's limit
MANIFEST_NAME = "manifest.json"
ZIP_IMAGES_DIR = "images/"


# Matching --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchedImage:
    image_id: str
    archive_key: str
    labels: tuple[str, ...]
    """The requested labels this image carries, in request order."""


ImagesOf = Callable[[str], Iterable[LabelledImage]]


def match_images(labels: Sequence[str], match: Match, images_of: ImagesOf) -> list[MatchedImage]:
    """Images with any / all of ``labels``, deduplicated, sorted by archive key.

    For ``all`` pass the labels smallest first: the first label bounds the working set,
    and reading stops as soon as it is empty.
    """
    found: dict[str, tuple[str, list[str]]] = {}
    for index, label in enumerate(labels):
        if match == "any" or index == 0:
            for image in images_of(label):
                entry = found.setdefault(image.image_id, (image.archive_key, []))
                if label not in entry[1]:
                    entry[1].append(label)
        else:
            survivors: dict[str, tuple[str, list[str]]] = {}
            for image in images_of(label):
                if image.image_id in found and image.image_id not in survivors:
                    entry = found[image.image_id]
                    entry[1].append(label)
                    survivors[image.image_id] = entry
            found = survivors
            if not found:
                break
    order = {label: position for position, label in enumerate(dict.fromkeys(labels))}
    images = [
        MatchedImage(image_id, key, tuple(sorted(carried, key=order.__getitem__)))
        for image_id, (key, carried) in found.items()
    ]
    images.sort(key=lambda image: (image.archive_key, image.image_id))
    return images


def find_images(dynamodb: Any, labels_table: str, request: BundleRequest) -> list[MatchedImage]:
    """The images ``request`` asks for, from the labels table's memberships."""
    labels: Sequence[str] = request.labels
    if request.match == "all":
        # Counts only order the reads; the result does not depend on them being exact.
        labels = sorted(labels, key=lambda label: label_count(dynamodb, labels_table, label))

    def images_of(label: str) -> Iterable[LabelledImage]:
        return iter_images_for_label(dynamodb, labels_table, label)

    return match_images(labels, request.match, images_of)


# Zip -------------------------------------------------------------------------------------
@dataclass
class BundleContents:
    zip_key: str
    image_count: int = 0
    image_bytes: int = 0
    zip_bytes: int = 0
    zip_etag: str | None = None
    missing: list[str] = field(default_factory=list)

    def as_status(self) -> dict[str, Any]:
        """What a ``ready`` status says of the zip (docs/contracts.md)."""
        return {
            "image_count": self.image_count,
            "bytes": self.zip_bytes,
            "image_bytes": self.image_bytes,
            "zip_key": self.zip_key,
            "zip_etag": self.zip_etag,
            "manifest": MANIFEST_NAME,
            "missing": self.missing,
        }


class NothingToBundleError(Exception):
    """Every matched image vanished from the archive; the upload is aborted: empty."""


def _entry_name(names: EntryNames, image: MatchedImage) -> str:
    relative = image.archive_key.removeprefix(ARCHIVE_IMAGES_PREFIX)
    try:
        safe = safe_entry_name(relative)
    except ValueError:
        safe = image.image_id
    return names.claim(ZIP_IMAGES_DIR + safe)


def write_bundle_zip(
    s3: Any,
    dynamodb: Any,
    config: BundleSettings,
    bundle_id: str,
    request: BundleRequest,
    images: Sequence[MatchedImage],
    *,
    request_etag: str,
    created_at: str,
) -> BundleContents:
    """Stream the matching images and a manifest into ``bundles/<id>.zip``.

    Raises :class:`NothingToBundleError` (after aborting the upload) when none of the
    images is in the archive any more; the ones gone are listed in ``missing``.
    """
    key = bundle_zip_key(bundle_id)
    contents = BundleContents(key)
    names = EntryNames(reserved=[MANIFEST_NAME])
    metadata = {"bundle-id": bundle_id, "request-etag": request_etag}
    with (
        tempfile.SpooledTemporaryFile(max_size=MIB) as manifest,
        MultipartWriter(
            s3, config.work_bucket, key, content_type="application/zip", metadata=metadata
        ) as sink,
        zipfile.ZipFile(sink, "w", allowZip64=True) as archive,
    ):
        header = {
            "bundle_id": bundle_id,
            "created_at": created_at,
            "request": request.summary(),
            "request_etag": request_etag,
            "zip_key": key,
        }
        manifest.write(json.dumps(header, ensure_ascii=False)[:-1].encode("utf-8"))
        manifest.write(b', "images": [')
        for start in range(0, len(images), METADATA_BATCH):
            batch = images[start : start + METADATA_BATCH]
            extra = fetch_image_metadata(
                dynamodb, config.images_table, [image.image_id for image in batch]
            )
            for image in batch:
                entry = _add_image(s3, config.archive_bucket, archive, names, image, extra)
                if entry is None:
                    contents.missing.append(image.archive_key)
                    continue
                separator = b"\n  " if contents.image_count == 0 else b",\n  "
                manifest.write(separator + json.dumps(entry, ensure_ascii=False).encode())
                contents.image_count += 1
                contents.image_bytes += entry["size"]
        if contents.image_count == 0:
            raise NothingToBundleError
        tail = {"image_count": contents.image_count, "missing": contents.missing}
        manifest.write(b"\n],")
        manifest.write(json.dumps(tail, ensure_ascii=False)[1:].encode("utf-8"))
        manifest_size = manifest.tell()
        manifest.seek(0)
        add_stream(archive, MANIFEST_NAME, manifest, manifest_size)
    contents.zip_bytes = sink.bytes_written
    contents.zip_etag = sink.etag
    return contents


def _add_image(
    s3: Any,
    archive_bucket: str,
    archive: zipfile.ZipFile,
    names: EntryNames,
    image: MatchedImage,
    extra: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any] | None:
    """The image's manifest entry once its bytes are in the zip; None when it is gone."""
    if not image.archive_key:
        return None
    response = get(s3, archive_bucket, image.archive_key)
    if response is None:
        return None
    name = _entry_name(names, image)
    size = int(response["ContentLength"])
    with closing(response["Body"]) as body:
        add_stream(archive, name, body, size, date_time=zip_date_time(response.get("LastModified")))
    known = extra.get(image.image_id, {})
    return {
        "name": name,
        "archive_key": image.archive_key,
        "image_id": image.image_id,
        "size": size,
        "etag": normalize_etag(response.get("ETag")),
        "sha256": known.get("sha256"),
        "labels": known.get("labels") or list(image.labels),
        "matched_labels": list(image.labels),
    }


# Link ------------------------------------------------------------------------------------
def presigned_zip_url(s3: Any, bucket: str, bundle_id: str, ttl_seconds: int) -> str:
    """A GET URL for the zip, downloading as ``<id>.zip``; the lifetime is capped at 7 days."""
    url: str = s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": bundle_zip_key(bundle_id),
            "ResponseContentDisposition": f'attachment; filename="{bundle_id}.zip"',
        },
        ExpiresIn=max(1, min(ttl_seconds, MAX_URL_TTL_SECONDS)),
    )
    return url
