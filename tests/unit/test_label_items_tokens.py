"""Page tokens and key validation in sluice.label_items (pure; no DynamoDB)."""

from __future__ import annotations

import base64
import string

import pytest

from sluice.label_items import (
    MAX_LABEL_LENGTH,
    InvalidPageTokenError,
    decode_page_token,
    encode_page_token,
    membership_key,
)

LAST_KEY = {"pk": {"S": "LABEL#Dog"}, "sk": {"S": "IMAGE#0123abcd"}}


def test_token_round_trips_for_its_label() -> None:
    token = encode_page_token(LAST_KEY)
    assert decode_page_token(token, "Dog") == LAST_KEY
    # URL-safe alphabet: the CLI prints it and takes it back as an argument.
    assert set(token) <= set(string.ascii_letters + string.digits + "-_=")


@pytest.mark.parametrize(
    "token",
    [
        "not base64 !!",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"pk": {"S": "LABEL#Dog"}}').decode(),
        base64.urlsafe_b64encode(b'{"pk": {"S": "LABELS"}, "sk": {"S": "Dog"}}').decode(),
    ],
    ids=["garbage", "not-object", "missing-sk", "count-partition"],
)
def test_foreign_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidPageTokenError):
        decode_page_token(token, "Dog")


def test_token_of_another_label_is_refused() -> None:
    with pytest.raises(InvalidPageTokenError, match="Cat"):
        decode_page_token(encode_page_token(LAST_KEY), "Cat")


def test_labels_are_validated_before_they_become_keys() -> None:
    assert membership_key("Golden Retriever", "ab") == {
        "pk": {"S": "LABEL#Golden Retriever"},
        "sk": {"S": "IMAGE#ab"},
    }
    with pytest.raises(ValueError, match="empty"):
        membership_key(" ", "ab")
    with pytest.raises(ValueError, match="longer"):
        membership_key("x" * (MAX_LABEL_LENGTH + 1), "ab")
