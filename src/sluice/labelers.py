"""Labelers: what an archived image shows, as (name, confidence 0-100) pairs.

A labeler takes an :class:`ImageObject` (an exact S3 object version) rather than bytes,
so the Rekognition labeler never moves the image through the function: Rekognition reads
it from S3 itself. The offline labeler fetches the bytes it needs.

``LABELER`` chooses one (docs/contracts.md):

``rekognition`` (:class:`RekognitionLabeler`)
    Amazon Rekognition ``DetectLabels`` with ``LABEL_MIN_CONFIDENCE`` and
    ``LABEL_MAX_LABELS``. Names are Rekognition's (``Dog``, ``Outdoors``, ...).

``offline`` (:class:`OfflineLabeler`)
    For environments without Rekognition (the local emulator, CI). It is not an object
    detector and does not imitate one: every name carries a ``<facet>:`` prefix that no
    Rekognition label has, and each label is computed from the image's own pixels with
    Pillow, so the same bytes always give the same labels:

    - ``colour:<name>`` for each colour family present: the image is reduced to at most
      64x64 pixels and each pixel is classed by hue, saturation and value as ``red``,
      ``orange``, ``yellow``, ``green``, ``cyan``, ``blue``, ``purple``, ``pink``,
      ``black``, ``white`` or ``gray``; confidence = percentage of pixels in that class.
    - ``tone:dark`` / ``tone:bright``: percentage of pixels with luminance below 64 /
      above 192 (of 255).
    - ``shape:landscape`` / ``shape:portrait`` / ``shape:square`` (sides within 2 %), as
      displayed (EXIF orientation applied); confidence 100, geometry is exact.

    With the default ``LABEL_MIN_CONFIDENCE`` of 80 only dominant colours and tones
    pass; environments using it usually set a lower threshold (e.g. 20).

Both apply the same selection (:func:`select_labels`): confidence at least the minimum,
highest confidence first (ties by name), at most the maximum count. An image that cannot
be labelled at all (not decodable, too large for the labeler) raises
:class:`UnlabelableImageError`, which the tag handler records instead of retrying.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sluice import image_defaults
from sluice.units import MIB

MAX_OFFLINE_IMAGE_BYTES = 100 * MIB
MAX_OFFLINE_IMAGE_PIXELS = image_defaults.MAX_IMAGE_PIXELS
_SAMPLE_SIDE = 64
_SQUARE_TOLERANCE = 0.02
_DARK_BELOW = 64
_BRIGHT_ABOVE = 192
_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(frozen=True)
class Label:
    name: str
    confidence: float


@dataclass(frozen=True)
class ImageObject:
    """The exact object version to label; ``version_id`` is None in unversioned buckets."""

    bucket: str
    key: str
    etag: str
    version_id: str | None = None
    size: int | None = None


class UnlabelableImageError(ValueError):
    """The image cannot be labelled (undecodable, too large, ...); retrying will not help."""


class Labeler(Protocol):
    name: str

    def detect(self, image: ImageObject) -> list[Label]: ...


def select_labels(labels: Iterable[Label], min_confidence: float, max_labels: int) -> list[Label]:
    """Labels of at least ``min_confidence``, best first (ties by name), at most ``max_labels``."""
    best: dict[str, float] = {}
    for label in labels:
        if label.confidence >= min_confidence and label.confidence > best.get(label.name, -1.0):
            best[label.name] = label.confidence
    ranked = sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))
    return [Label(name, confidence) for name, confidence in ranked[:max_labels]]


class RekognitionLabeler:
    """Amazon Rekognition ``DetectLabels`` on the S3 object itself."""

    name = "rekognition"

    def __init__(self, client: Any, *, min_confidence: float, max_labels: int) -> None:
        self._client = client
        self._min_confidence = min_confidence
        self._max_labels = max_labels

    def detect(self, image: ImageObject) -> list[Label]:
        s3_object = {"Bucket": image.bucket, "Name": image.key}
        if image.version_id:
            s3_object["Version"] = image.version_id
        try:
            response = self._client.detect_labels(
                Image={"S3Object": s3_object},
                MaxLabels=self._max_labels,
                MinConfidence=self._min_confidence,
            )
        except (
            self._client.exceptions.InvalidImageFormatException,
            self._client.exceptions.ImageTooLargeException,
        ) as error:
            raise UnlabelableImageError(f"Rekognition cannot label this image: {error}") from None
        labels = (
            Label(str(item["Name"]), float(item["Confidence"]))
            for item in response.get("Labels", [])
            if item.get("Name") and item.get("Confidence") is not None
        )
        return select_labels(labels, self._min_confidence, self._max_labels)


class OfflineLabeler:
    """Deterministic labels from the image's own pixels (see the module docstring)."""

    name = "offline"

    def __init__(
        self,
        s3: Any,
        *,
        min_confidence: float,
        max_labels: int,
        max_bytes: int = MAX_OFFLINE_IMAGE_BYTES,
        max_pixels: int = MAX_OFFLINE_IMAGE_PIXELS,
    ) -> None:
        self._s3 = s3
        self._min_confidence = min_confidence
        self._max_labels = max_labels
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels

    def detect(self, image: ImageObject) -> list[Label]:
        if image.size is not None and image.size > self._max_bytes:
            raise UnlabelableImageError(
                f"image is {image.size} bytes, more than the offline labeler's {self._max_bytes}"
            )
        request: dict[str, Any] = {
            "Bucket": image.bucket,
            "Key": image.key,
            "IfMatch": f'"{image.etag}"',
        }
        if image.version_id:
            request["VersionId"] = image.version_id
        body = self._s3.get_object(**request)["Body"]
        data = body.read(self._max_bytes + 1)
        if len(data) > self._max_bytes:
            raise UnlabelableImageError(f"image is more than {self._max_bytes} bytes")
        labels = pixel_labels(data, max_pixels=self._max_pixels)
        return select_labels(labels, self._min_confidence, self._max_labels)


def _colour_name(hue: int, saturation: int, value: int) -> str:
    """Colour family of one HSV pixel (Pillow's HSV: every channel 0-255)."""
    if value < 51:
        return "black"
    if saturation < 38:
        return "white" if value > 217 else "gray"
    degrees = hue * 360 / 256
    for upper, name in (
        (15, "red"),
        (45, "orange"),
        (70, "yellow"),
        (170, "green"),
        (200, "cyan"),
        (260, "blue"),
        (290, "purple"),
        (345, "pink"),
    ):
        if degrees < upper:
            return name
    return "red"


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2)


def _shape(width: int, height: int) -> str:
    if abs(width - height) <= _SQUARE_TOLERANCE * max(width, height):
        return "square"
    return "landscape" if width > height else "portrait"


def pixel_labels(data: bytes, *, max_pixels: int = MAX_OFFLINE_IMAGE_PIXELS) -> list[Label]:
    """Every offline label of an encoded image, unfiltered. Pure: bytes in, labels out."""
    # Imported here, not at module level: the Rekognition labeler never needs Pillow, and
    # importing it would add to every cold start of the tag function.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise UnlabelableImageError(
                    f"image has {width}x{height} pixels, more than {max_pixels}"
                )
            if image.getexif().get(_EXIF_ORIENTATION) in _ROTATED_ORIENTATIONS:
                width, height = height, width
            # JPEG can decode straight at a reduced scale; others are reduced after loading.
            image.draft("RGB", (_SAMPLE_SIDE * 2, _SAMPLE_SIDE * 2))
            sample = image.convert("RGBA")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        if isinstance(error, UnlabelableImageError):
            raise
        raise UnlabelableImageError(f"not a decodable image: {error}") from None
    sample.thumbnail((_SAMPLE_SIDE, _SAMPLE_SIDE))
    # Transparent pixels count as the white they are usually shown on.
    background = Image.new("RGBA", sample.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(background, sample).convert("RGB")

    # Raw bytes: three per pixel for HSV, one for L (getdata() is deprecated in Pillow 13).
    hsv = rgb.convert("HSV").tobytes()
    luminance = rgb.convert("L").tobytes()
    total = len(luminance)
    colours = Counter(
        _colour_name(hsv[index], hsv[index + 1], hsv[index + 2]) for index in range(0, len(hsv), 3)
    )

    labels = [Label(f"colour:{name}", _percent(count, total)) for name, count in colours.items()]
    labels.append(Label("tone:dark", _percent(sum(1 for y in luminance if y < _DARK_BELOW), total)))
    labels.append(
        Label("tone:bright", _percent(sum(1 for y in luminance if y > _BRIGHT_ABOVE), total))
    )
    labels.append(Label(f"shape:{_shape(width, height)}", 100.0))
    return [label for label in labels if label.confidence > 0]
