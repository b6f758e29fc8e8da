"""Labelers: the offline labeler's pixel rules and the Rekognition response mapping."""

from __future__ import annotations

import io
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from PIL import Image

from sluice.labelers import (
    ImageObject,
    Label,
    OfflineLabeler,
    RekognitionLabeler,
    UnlabelableImageError,
    pixel_labels,
    select_labels,
)


def encode(image: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def solid(
    colour: tuple[int, int, int], size: tuple[int, int] = (40, 30), fmt: str = "PNG"
) -> bytes:
    return encode(Image.new("RGB", size, colour), fmt)


def by_name(labels: list[Label]) -> dict[str, float]:
    return {label.name: label.confidence for label in labels}


# offline labeler --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("colour", "expected"),
    [
        ((220, 20, 20), "colour:red"),
        ((20, 200, 40), "colour:green"),
        ((30, 60, 220), "colour:blue"),
        ((240, 230, 30), "colour:yellow"),
        ((5, 5, 5), "colour:black"),
        ((250, 250, 250), "colour:white"),
        ((128, 128, 128), "colour:gray"),
    ],
)
def test_solid_colour_is_its_only_colour_at_full_confidence(
    colour: tuple[int, int, int], expected: str
) -> None:
    labels = by_name(pixel_labels(solid(colour)))
    colours = {name: conf for name, conf in labels.items() if name.startswith("colour:")}
    assert colours == {expected: 100.0}


def test_same_bytes_give_same_labels() -> None:
    image = Image.new("RGB", (64, 48))
    image.paste((200, 30, 30), (0, 0, 32, 48))
    image.paste((30, 30, 200), (32, 0, 64, 48))
    data = encode(image, "JPEG", quality=90)
    assert pixel_labels(data) == pixel_labels(data)


def test_colour_confidence_is_the_share_of_pixels() -> None:
    image = Image.new("RGB", (40, 40), (250, 250, 250))
    image.paste((220, 20, 20), (0, 0, 40, 10))  # a quarter red, the rest white
    labels = by_name(pixel_labels(encode(image)))
    assert labels["colour:red"] == pytest.approx(25.0, abs=1.0)
    assert labels["colour:white"] == pytest.approx(75.0, abs=1.0)
    assert labels["tone:bright"] == pytest.approx(75.0, abs=1.0)


@pytest.mark.parametrize(
    ("size", "shape"),
    [((80, 40), "landscape"), ((40, 80), "portrait"), ((50, 50), "square"), ((100, 99), "square")],
)
def test_shape(size: tuple[int, int], shape: str) -> None:
    labels = by_name(pixel_labels(solid((1, 2, 3), size)))
    assert labels[f"shape:{shape}"] == 100.0
    assert len([name for name in labels if name.startswith("shape:")]) == 1


def test_shape_follows_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees
    data = encode(Image.new("RGB", (80, 40), (9, 9, 9)), "JPEG", exif=exif.tobytes())
    assert "shape:portrait" in by_name(pixel_labels(data))


def test_dark_image_is_dark_not_bright() -> None:
    labels = by_name(pixel_labels(solid((10, 10, 30))))
    assert labels["tone:dark"] == 100.0
    assert "tone:bright" not in labels


def test_transparent_pixels_count_as_white() -> None:
    data = encode(Image.new("RGBA", (20, 20), (255, 0, 0, 0)))
    assert by_name(pixel_labels(data)).get("colour:white") == 100.0


def test_offline_names_cannot_be_mistaken_for_rekognition() -> None:
    image = Image.effect_noise((64, 64), 80).convert("RGB")
    for label in pixel_labels(encode(image)):
        assert label.name.split(":")[0] in {"colour", "tone", "shape"}
        assert 0 < label.confidence <= 100


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", solid((1, 1, 1), fmt="PNG")[:60]],
    ids=["empty", "text", "truncated"],
)
def test_undecodable_image_is_unlabelable(data: bytes) -> None:
    with pytest.raises(UnlabelableImageError):
        pixel_labels(data)


def test_pixel_limit_refuses_before_decoding() -> None:
    with pytest.raises(UnlabelableImageError, match="more than 100"):
        pixel_labels(solid((1, 1, 1), (20, 20)), max_pixels=100)


def test_select_labels_applies_threshold_order_and_maximum() -> None:
    labels = [Label("b", 50.0), Label("a", 50.0), Label("c", 90.0), Label("d", 10.0)]
    assert select_labels(labels, 20.0, 2) == [Label("c", 90.0), Label("a", 50.0)]
    assert select_labels(labels, 95.0, 10) == []
    assert select_labels([Label("x", 30.0), Label("x", 60.0)], 0.0, 5) == [Label("x", 60.0)]


class FakeS3:
    """get_object only; records what was asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests: list[dict[str, Any]] = []

    def get_object(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {"Body": io.BytesIO(self.data)}


def test_offline_labeler_reads_the_exact_version_and_applies_thresholds() -> None:
    image = Image.new("RGB", (60, 30), (250, 250, 250))
    image.paste((220, 20, 20), (0, 0, 20, 30))  # a third red
    s3 = FakeS3(encode(image))
    labeler = OfflineLabeler(s3, min_confidence=40.0, max_labels=2)
    labels = labeler.detect(ImageObject("b", "images/x.png", "etag1", "v1", len(s3.data)))
    assert [label.name for label in labels] == ["shape:landscape", "colour:white"]
    assert s3.requests == [
        {"Bucket": "b", "Key": "images/x.png", "IfMatch": '"etag1"', "VersionId": "v1"}
    ]
    assert labeler.name == "offline"


def test_offline_labeler_refuses_oversized_objects_without_reading() -> None:
    s3 = FakeS3(b"")
    labeler = OfflineLabeler(s3, min_confidence=0, max_labels=5, max_bytes=10)
    with pytest.raises(UnlabelableImageError, match="bytes"):
        labeler.detect(ImageObject("b", "k", "e", None, 11))
    assert s3.requests == []


def test_offline_labeler_stops_reading_at_the_limit() -> None:
    labeler = OfflineLabeler(FakeS3(b"x" * 50), min_confidence=0, max_labels=5, max_bytes=10)
    with pytest.raises(UnlabelableImageError, match="more than 10 bytes"):
        labeler.detect(ImageObject("b", "k", "e"))


# Rekognition labeler -----------------------------------------------------------------


@pytest.fixture
def rekognition() -> Any:
    return boto3.client("rekognition", region_name="us-east-1")


def test_rekognition_request_and_response_mapping(rekognition: Any) -> None:
    labeler = RekognitionLabeler(rekognition, min_confidence=70.0, max_labels=3)
    with Stubber(rekognition) as stub:
        stub.add_response(
            "detect_labels",
            {
                "Labels": [
                    {"Name": "Dog", "Confidence": 97.5, "Parents": [{"Name": "Animal"}]},
                    {"Name": "Animal", "Confidence": 97.5},
                    {"Name": "Grass", "Confidence": 71.0},
                    {"Name": "Ball", "Confidence": 65.0},
                ]
            },
            {
                "Image": {"S3Object": {"Bucket": "arch", "Name": "images/d.jpg", "Version": "v7"}},
                "MaxLabels": 3,
                "MinConfidence": 70.0,
            },
        )
        labels = labeler.detect(ImageObject("arch", "images/d.jpg", "e", "v7"))
        stub.assert_no_pending_responses()
    assert labels == [Label("Animal", 97.5), Label("Dog", 97.5), Label("Grass", 71.0)]
    assert labeler.name == "rekognition"


def test_rekognition_without_version_omits_it(rekognition: Any) -> None:
    labeler = RekognitionLabeler(rekognition, min_confidence=50.0, max_labels=10)
    with Stubber(rekognition) as stub:
        stub.add_response(
            "detect_labels",
            {"Labels": []},
            {
                "Image": {"S3Object": {"Bucket": "arch", "Name": "images/d.jpg"}},
                "MaxLabels": 10,
                "MinConfidence": 50.0,
            },
        )
        assert labeler.detect(ImageObject("arch", "images/d.jpg", "e")) == []


@pytest.mark.parametrize("code", ["InvalidImageFormatException", "ImageTooLargeException"])
def test_rekognition_unusable_image_is_unlabelable(rekognition: Any, code: str) -> None:
    labeler = RekognitionLabeler(rekognition, min_confidence=50.0, max_labels=10)
    with Stubber(rekognition) as stub:
        stub.add_client_error("detect_labels", service_error_code=code, http_status_code=400)
        with pytest.raises(UnlabelableImageError):
            labeler.detect(ImageObject("arch", "images/d.jpg", "e"))


def test_rekognition_access_problems_propagate(rekognition: Any) -> None:
    labeler = RekognitionLabeler(rekognition, min_confidence=50.0, max_labels=10)
    with Stubber(rekognition) as stub:
        stub.add_client_error(
            "detect_labels", service_error_code="InvalidS3ObjectException", http_status_code=400
        )
        with pytest.raises(rekognition.exceptions.InvalidS3ObjectException):
            labeler.detect(ImageObject("arch", "images/d.jpg", "e"))
