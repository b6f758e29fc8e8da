"""Derived key names: one owner per output, by construction (sluice.keys)."""

from __future__ import annotations

import hashlib

import pytest

from sluice.keys import (
    HASHED_SEGMENT,
    MAX_KEY_BYTES,
    archive_key_for,
    derived_key,
    ledger_key_of_archive_key,
    raw_key_of_receipt_key,
    receipt_key,
    superseded_archive_key,
    thumbnail_key,
    version_record_key,
)

LONG = "inbox/" + "x" * 1013


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_short_keys_keep_their_whole_name() -> None:
    assert derived_key("data/", "a/b.json") == "data/a/b.json"
    assert receipt_key("a/b.json") == "receipts/a/b.json.json"


def test_too_long_names_are_hashed_and_stay_within_the_limit() -> None:
    assert receipt_key(LONG) == f"receipts/{HASHED_SEGMENT}{sha(LONG)}.json"
    assert len(receipt_key(LONG).encode()) <= MAX_KEY_BYTES


def test_one_owner_per_output_a_key_in_the_hashed_namespace_is_always_hashed() -> None:
    lookalike = HASHED_SEGMENT + sha(LONG)
    assert receipt_key(lookalike) == f"receipts/{HASHED_SEGMENT}{sha(lookalike)}.json"
    assert receipt_key(lookalike) != receipt_key(LONG)
    assert archive_key_for("unsupported", "rejected", lookalike) != archive_key_for(
        "unsupported", "rejected", LONG
    )


def test_a_plain_receipt_name_gives_its_raw_key_back_and_a_hashed_one_none() -> None:
    for raw_key in ("a/b.json", "photos/x.JPG", "_long", "a/_long/b"):
        assert raw_key_of_receipt_key(receipt_key(raw_key)) == raw_key
    for hashed in (LONG, HASHED_SEGMENT + "x"):
        assert raw_key_of_receipt_key(receipt_key(hashed)) is None
    assert raw_key_of_receipt_key("receipts/notes.txt") is None


@pytest.mark.parametrize(
    "keys",
    [
        ("a.JPG", "a.jpg", "a.jpeg", "a"),
        ("x.png", "x.jpg", "x.gif", "x.png.jpg"),
        (LONG, HASHED_SEGMENT + sha(LONG), "_long", "_long/x", "x" * 1010),
    ],
)
def test_one_owner_per_output_distinct_keys_never_share_a_derived_name(
    keys: tuple[str, ...],
) -> None:
    for name in (
        receipt_key,
        lambda k: thumbnail_key(k, 128, ".jpg"),
        lambda k: archive_key_for("image", "processed", k),
        lambda k: superseded_archive_key(k, "v1"),
        lambda k: version_record_key(k, "v1"),
    ):
        names = [name(key) for key in keys]
        assert len(set(names)) == len(keys), names


def test_thumbnails_keep_the_source_extension() -> None:
    assert thumbnail_key("p/a.JPG", 128, ".jpg") == "thumbnails/128/p/a.JPG.jpg"
    assert thumbnail_key("p/logo.png", 64, ".webp") == "thumbnails/64/p/logo.png.webp"


def test_versions_of_one_key_have_their_own_names() -> None:
    assert superseded_archive_key("a/b.jpg", "v1") == "superseded/v1/a/b.jpg"
    assert superseded_archive_key("a/b.jpg", "v1") != superseded_archive_key("a/b.jpg", "v2")
    assert version_record_key("a/b.jpg", "v1") == "versions/v1/a/b.jpg.json"


@pytest.mark.parametrize(
    "raw_key",
    [
        "photos/a.jpg",
        "_long/photos/a.jpg",  # always hashed
        "inbox/" + "x" * 1006,  # plain in ARCHIVE, hashed as a receipt
        LONG,  # hashed everywhere
    ],
)
def test_the_ledger_entry_owning_an_archive_name_follows_from_the_name_alone(
    raw_key: str,
) -> None:
    for kind, status in (("image", "processed"), ("data", "processed"), ("data", "rejected")):
        name = archive_key_for(kind, status, raw_key)
        assert ledger_key_of_archive_key(name) == receipt_key(raw_key), name
    token = "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"
    superseded = superseded_archive_key(raw_key, token)
    assert ledger_key_of_archive_key(superseded) == version_record_key(raw_key, token)


@pytest.mark.parametrize("name", ["bundles/x.zip", "images/", "superseded/v1", "superseded//a"])
def test_no_ledger_entry_owns_other_names(name: str) -> None:
    assert ledger_key_of_archive_key(name) is None
