"""Thumbnails and metadata from image bytes (pure: no AWS).

Untrusted bytes are opened only with the decoders of the formats we accept, and the
content must be the format the extension claims. Dimensions are checked against
``max_pixels`` right after the header is read, before any pixel is decoded
(decompression bombs); Pillow's own bomb warning counts as a rejection too. Every image is
fully decoded (``LOAD_TRUNCATED_IMAGES`` stays off), so truncated files are rejected
instead of yielding half-grey thumbnails.

Speed: JPEGs are decoded at a reduced DCT scale (``draft``) no smaller than the largest
thumbnail, and each smaller thumbnail is resized from the next larger one, so a 12 MP
photo never exists at full size in memory. Resizing uses Lanczos after a box reduction
(``reducing_gap``), which is what gives the quality of a full-size Lanczos at a fraction
of the cost.

Colour: EXIF orientation is applied (all eight values); CMYK, YCbCr and LAB become RGB;
palette and grey images with transparency become RGBA; 16-bit greys are scaled to 8 bits
(not clipped). JPEG output has no alpha, so transparent images are flattened onto white;
PNG and WebP keep alpha. Animated images use their first frame.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from sluice import image_defaults
from sluice.file_formats import INPUT_FORMATS

ORIENTATION_TAG = 0x0112
MAKE_TAG = 0x010F
MODEL_TAG = 0x0110
EXIF_IFD = 0x8769
DATETIME_ORIGINAL_TAG = 0x9003
DATETIME_DIGITIZED_TAG = 0x9004
OFFSET_TIME_ORIGINAL_TAG = 0x9011


# Pillow reports JPEGs with a multi-picture index (many phone cameras) as MPO.
_SAME_FORMAT = {"MPO": "JPEG"}
_DECODERS = sorted(set(INPUT_FORMATS.values()))  # the JPEG decoder also opens MPO


@dataclass(frozen=True)
class OutputFormat:
    name: str
    content_type: str
    extension: str
    keeps_alpha: bool


OUTPUT_FORMATS = {
    "JPEG": OutputFormat("JPEG", "image/jpeg", ".jpg", keeps_alpha=False),
    "WEBP": OutputFormat("WEBP", "image/webp", ".webp", keeps_alpha=True),
    "PNG": OutputFormat("PNG", "image/png", ".png", keeps_alpha=True),
}


class ImageRejectedError(Exception):
    """The bytes are not an image we can (or should) decode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Thumbnail:
    size: int
    """The requested longest side; the image is never enlarged to reach it."""
    data: bytes
    width: int
    height: int
    content_type: str
    extension: str


@dataclass(frozen=True)
class ImageInfo:
    width: int
    """Width as displayed, i.e. after EXIF orientation."""
    height: int
    format: str
    bytes: int
    sha256: str
    captured_at: str | None = None
    camera: str | None = None
    animated: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageResult:
    info: ImageInfo
    thumbnails: list[Thumbnail] = field(default_factory=list)


# --- opening safely --------------------------------------------------------------------------


def _open(data: bytes, expected: str, max_pixels: int) -> Image.Image:
    """Open the header only; reject what is not ``expected`` or is too many pixels."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_DECODERS)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageRejectedError("decompression_bomb", f"image rejected: {exc}") from None
        except UnidentifiedImageError:
            raise ImageRejectedError(
                "content_mismatch", f"content is not a {expected} image (format not recognised)"
            ) from None
        except Exception as exc:  # any failure to parse untrusted bytes
            raise ImageRejectedError("corrupt_image", f"image header is invalid: {exc}") from None
    found = _SAME_FORMAT.get(str(image.format), str(image.format))
    if found != expected:
        raise ImageRejectedError(
            "content_mismatch", f"content is not a {expected} image (it is {found})"
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejectedError("corrupt_image", f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageRejectedError(
            "decompression_bomb",
            f"image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}",
        )
    return image


def _decode(image: Image.Image) -> None:
    """Decode every pixel now, so a truncated or corrupt file fails here."""
    try:
        image.load()
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        text = str(exc) or type(exc).__name__
        truncated = isinstance(exc, EOFError) or "truncated" in text.lower()
        if truncated:
            raise ImageRejectedError(
                "truncated_image", f"image data is truncated: {text}"
            ) from None
        raise ImageRejectedError("corrupt_image", f"image data is corrupt: {text}") from None


# --- metadata --------------------------------------------------------------------------------


def _exif(image: Image.Image) -> Image.Exif | None:
    try:
        return image.getexif()
    except Exception:  # broken EXIF must not cost the image
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", "").strip()
    return cleaned or None


def _captured_at(exif: Image.Exif) -> str | None:
    try:
        details = exif.get_ifd(EXIF_IFD)
    except Exception:  # broken EXIF must not cost the image
        return None
    raw = _text(details.get(DATETIME_ORIGINAL_TAG)) or _text(details.get(DATETIME_DIGITIZED_TAG))
    if raw is None:
        return None
    try:
        moment = datetime.strptime(raw[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = _text(details.get(OFFSET_TIME_ORIGINAL_TAG))
    iso = moment.isoformat()
    if offset and len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        iso += offset
    return iso


def _camera(exif: Image.Exif) -> str | None:
    make = _text(exif.get(MAKE_TAG))
    model = _text(exif.get(MODEL_TAG))
    if make and model and model.lower().startswith(make.lower()):
        return model
    return " ".join(part for part in (make, model) if part) or None


def _orientation(exif: Image.Exif | None) -> int:
    value = exif.get(ORIENTATION_TAG) if exif is not None else None
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# --- pixels ----------------------------------------------------------------------------------


def _normalise_mode(image: Image.Image) -> Image.Image:
    """One of L, RGB or RGBA, converted the way each source mode needs."""
    mode = image.mode
    has_transparency = "transparency" in image.info
    if mode in ("RGB", "L") and not has_transparency:
        return image
    if mode == "RGBA":
        return image
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples: scale to 8 bits; a plain convert("L") would clip at 255.
        wide = image if mode == "I" else image.convert("I")
        return wide.point(lambda value: value * (1 / 256)).convert("L")
    if mode == "F":
        return image.convert("L")
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA", "LA", "La", "RGBa") or has_transparency:
        return image.convert("RGBA")
    # CMYK (Adobe-inverted CMYK JPEGs are un-inverted by the decoder), YCbCr, LAB, HSV, RGBX.
    return image.convert("RGB")


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def _fit(width: int, height: int, longest: int) -> tuple[int, int]:
    if max(width, height) <= longest:
        return width, height
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _encode(image: Image.Image, output: OutputFormat, quality: int) -> bytes:
    if not output.keeps_alpha:
        image = _flatten(image)
    buffer = io.BytesIO()
    if output.name == "JPEG":
        image.save(buffer, "JPEG", quality=quality)
    elif output.name == "WEBP":
        image.save(buffer, "WEBP", quality=quality, method=4)
    else:
        image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def make_thumbnails(
    data: bytes,
    *,
    expected_format: str,
    sizes: tuple[int, ...],
    output_format: str = "JPEG",
    quality: int = image_defaults.THUMBNAIL_QUALITY,
    max_pixels: int = image_defaults.MAX_IMAGE_PIXELS,
) -> ImageResult:
    """Decode ``data`` (which must be an ``expected_format`` image) and thumbnail it.

    Raises :class:`ImageRejectedError` with a code and a human-readable reason for
    anything that is not a sound image of that format within the pixel limit.
    """
    if not data:
        raise ImageRejectedError("empty_file", "empty file")
    output = OUTPUT_FORMATS[output_format]
    image = _open(data, expected_format, max_pixels)
    source_format = _SAME_FORMAT.get(str(image.format), str(image.format))
    # The size before draft() (which shrinks it) is the image's real size.
    width, height = image.size
    notes: list[str] = []
    animated = bool(getattr(image, "is_animated", False))
    if animated:
        notes.append("animated image: thumbnails show the first frame")
    if source_format == "JPEG" and sizes:
        # Decode at the smallest DCT scale that still covers the largest thumbnail.
        largest = max(sizes)
        image.draft("RGB", (largest, largest))
    # Decode before reading EXIF: for PNG, getexif() decodes the image itself and a
    # swallowed decode error there would let corrupt pixel data through as black.
    _decode(image)
    exif = _exif(image)
    orientation = _orientation(exif)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if exif is not None and orientation != 1:
        image = ImageOps.exif_transpose(image)
    current = _normalise_mode(image)
    thumbnails = []
    for size in sorted(set(sizes), reverse=True):
        target = _fit(current.width, current.height, size)
        if target != current.size:
            current = current.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
        thumbnails.append(
            Thumbnail(
                size=size,
                data=_encode(current, output, quality),
                width=current.width,
                height=current.height,
                content_type=output.content_type,
                extension=output.extension,
            )
        )
    info = ImageInfo(
        width=width,
        height=height,
        format=source_format,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        captured_at=_captured_at(exif) if exif is not None else None,
        camera=_camera(exif) if exif is not None else None,
        animated=animated,
        notes=tuple(notes),
    )
    return ImageResult(info=info, thumbnails=sorted(thumbnails, key=lambda t: t.size))
