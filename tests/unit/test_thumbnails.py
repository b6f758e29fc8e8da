"""sluice.thumbnails: geometry, orientation, colour modes, and refusal of bad input."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image, ImageFile

from sluice.thumbnails import ImageRejectedError, make_thumbnails

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def quadrants(width: int = 400, height: int = 200) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = Image.new("RGB", (width, height))
    w, h = width // 2, height // 2
    for colour, box in ((RED, (0, 0)), (GREEN, (w, 0)), (BLUE, (0, h)), (WHITE, (w, h))):
        image.paste(colour, (*box, box[0] + w, box[1] + h))
    return image


def close(pixel: Any, expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=False))


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rgba(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def corners(image: Image.Image) -> tuple[Any, ...]:
    rgb = image.convert("RGB")
    w, h = rgb.size
    return tuple(
        rgb.getpixel(xy) for xy in ((w // 4, h // 4), (3 * w // 4, h // 4), (w // 4, 3 * h // 4))
    )


def test_thumbnail_per_size_keeps_aspect_and_never_enlarges() -> None:
    data = encode(quadrants(1200, 800), "JPEG")
    result = make_thumbnails(data, expected_format="JPEG", sizes=(2000, 128, 512))
    assert [(t.size, t.width, t.height) for t in result.thumbnails] == [
        (128, 128, 85),
        (512, 512, 341),
        (2000, 1200, 800),
    ]
    for thumbnail in result.thumbnails:
        assert decoded(thumbnail.data).size == (thumbnail.width, thumbnail.height)
    assert (result.info.width, result.info.height, result.info.format) == (1200, 800, "JPEG")
    assert result.info.bytes == len(data)


# Stored pixels for each orientation so that applying the tag shows `quadrants()` upright.
STORED = {
    1: lambda im: im,
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(orientation: int) -> None:
    stored = STORED[orientation](quadrants())
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    result = make_thumbnails(data, expected_format="JPEG", sizes=(100,))
    thumbnail = decoded(result.thumbnails[0].data)
    assert thumbnail.size == (100, 50)
    assert (result.info.width, result.info.height) == (400, 200)
    top_left, top_right, bottom_left = corners(thumbnail)
    assert close(top_left, RED) and close(top_right, GREEN) and close(bottom_left, BLUE)


def test_exif_capture_time_and_camera_are_extracted() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R6"
    details = exif.get_ifd(0x8769)
    details[0x9003] = "2024:07:02 11:15:30"
    details[0x9011] = "+02:00"
    data = encode(quadrants(), "JPEG", exif=exif.tobytes())
    info = make_thumbnails(data, expected_format="JPEG", sizes=(64,)).info
    assert info.captured_at == "2024-07-02T11:15:30+02:00"
    assert info.camera == "Canon EOS R6"


def test_no_exif_means_no_capture_time_or_camera() -> None:
    info = make_thumbnails(encode(quadrants(), "PNG"), expected_format="PNG", sizes=(64,)).info
    assert info.captured_at is None and info.camera is None


def test_cmyk_jpeg_becomes_correct_rgb() -> None:
    data = encode(Image.new("CMYK", (300, 200), (0, 255, 255, 0)), "JPEG")
    thumbnail = decoded(
        make_thumbnails(data, expected_format="JPEG", sizes=(64,)).thumbnails[0].data
    )
    assert thumbnail.mode == "RGB"
    assert close(thumbnail.getpixel((10, 10)), RED)


def test_palette_with_transparency_keeps_alpha_in_png_and_is_flattened_on_white_in_jpeg() -> None:
    image = Image.new("RGBA", (200, 200), (0, 0, 255, 0))
    image.paste((255, 0, 0, 255), (50, 50, 150, 150))
    data = encode(image.convert("P"), "PNG")
    assert decoded(data).mode == "P"
    png = decoded(
        make_thumbnails(data, expected_format="PNG", sizes=(100,), output_format="PNG")
        .thumbnails[0]
        .data
    )
    assert png.mode == "RGBA"
    assert rgba(png, (2, 2))[3] == 0
    assert close(png.getpixel((50, 50)), (*RED, 255))
    jpeg = decoded(make_thumbnails(data, expected_format="PNG", sizes=(100,)).thumbnails[0].data)
    assert jpeg.mode == "RGB"
    assert close(jpeg.getpixel((2, 2)), WHITE)
    assert close(jpeg.getpixel((50, 50)), RED)


def test_webp_output_keeps_alpha() -> None:
    image = Image.new("RGBA", (120, 80), (0, 255, 0, 0))
    result = make_thumbnails(
        encode(image, "PNG"), expected_format="PNG", sizes=(60,), output_format="WEBP"
    )
    thumbnail = result.thumbnails[0]
    assert thumbnail.content_type == "image/webp" and thumbnail.extension == ".webp"
    assert decoded(thumbnail.data).format == "WEBP"
    assert rgba(decoded(thumbnail.data), (5, 5))[3] == 0


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    data = encode(Image.new("I;16", (100, 100), 32768), "PNG")
    thumbnail = decoded(
        make_thumbnails(data, expected_format="PNG", sizes=(50,)).thumbnails[0].data
    )
    assert thumbnail.mode == "L"
    grey = thumbnail.getpixel((5, 5))
    assert isinstance(grey, int) and abs(grey - 128) <= 2


def test_animated_gif_uses_the_first_frame_and_says_so() -> None:
    frames = [Image.new("RGB", (80, 80), colour) for colour in (RED, BLUE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    result = make_thumbnails(buffer.getvalue(), expected_format="GIF", sizes=(40,))
    assert result.info.animated
    assert result.info.notes
    assert close(decoded(result.thumbnails[0].data).getpixel((5, 5)), RED)


@pytest.mark.parametrize(
    ("output_format", "content_type", "extension", "decoded_format"),
    [
        ("JPEG", "image/jpeg", ".jpg", "JPEG"),
        ("PNG", "image/png", ".png", "PNG"),
        ("WEBP", "image/webp", ".webp", "WEBP"),
    ],
)
def test_output_format_and_content_type(
    output_format: str, content_type: str, extension: str, decoded_format: str
) -> None:
    result = make_thumbnails(
        encode(quadrants(), "PNG"), expected_format="PNG", sizes=(64,), output_format=output_format
    )
    thumbnail = result.thumbnails[0]
    assert (thumbnail.content_type, thumbnail.extension) == (content_type, extension)
    assert decoded(thumbnail.data).format == decoded_format


@pytest.mark.parametrize(
    ("actual", "expected", "message"),
    [
        ("PNG", "JPEG", "content is not a JPEG image (it is PNG)"),
        ("JPEG", "PNG", "content is not a PNG image (it is JPEG)"),
        ("GIF", "WEBP", "content is not a WEBP image (it is GIF)"),
    ],
)
def test_content_must_be_the_format_the_extension_claims(
    actual: str, expected: str, message: str
) -> None:
    with pytest.raises(ImageRejectedError) as caught:
        make_thumbnails(encode(quadrants(), actual), expected_format=expected, sizes=(64,))
    assert (caught.value.code, caught.value.message) == ("content_mismatch", message)


def test_bytes_that_are_no_image_are_rejected() -> None:
    with pytest.raises(ImageRejectedError) as caught:
        make_thumbnails(b"%PDF-1.7 not an image", expected_format="JPEG", sizes=(64,))
    assert caught.value.code == "content_mismatch"
    assert "not a JPEG image" in caught.value.message


def test_empty_bytes_are_rejected() -> None:
    with pytest.raises(ImageRejectedError) as caught:
        make_thumbnails(b"", expected_format="PNG", sizes=(64,))
    assert (caught.value.code, caught.value.message) == ("empty_file", "empty file")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be width x height with one tiny compressed row of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [9_000, 10_000, 50_000])
def test_decompression_bomb_is_rejected_from_the_header_without_decoding(
    side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(self: Any) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageRejectedError) as caught:
        make_thumbnails(png_header_only(side, side), expected_format="PNG", sizes=(64,))
    assert caught.value.code == "decompression_bomb"


def test_pixel_limit_is_configurable() -> None:
    data = encode(quadrants(400, 300), "JPEG")
    with pytest.raises(ImageRejectedError) as caught:
        make_thumbnails(data, expected_format="JPEG", sizes=(64,), max_pixels=100_000)
    assert caught.value.message == "image is 400x300 = 120000 pixels, above the limit of 100000"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_file_is_rejected(fmt: str) -> None:
    data = encode(Image.effect_noise((400, 300), 60).convert("RGB"), fmt)
    with pytest.raises(ImageRejectedError) as caught:
        make_thumbnails(data[: len(data) * 2 // 3], expected_format=fmt, sizes=(64,))
    assert caught.value.code in ("truncated_image", "corrupt_image")
    assert caught.value.message


def test_sha256_is_of_the_source_bytes() -> None:
    import hashlib

    data = encode(quadrants(), "PNG")
    info = make_thumbnails(data, expected_format="PNG", sizes=(64,)).info
    assert info.sha256 == hashlib.sha256(data).hexdigest()
