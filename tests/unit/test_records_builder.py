"""sluice.records builds array records with ijson's C ``items()`` (issue 16): the records, the
output bytes and the rejections are those of the event-by-event builder it replaced.

``_event_records`` (still used for files that are not an array) is the reference: seeded
random documents full of brackets, quotes and escapes inside strings, nesting around the
depth limit, long property names and cuts, read in pieces of every size, must give the
same records (same types, same key order) or the same rejection from both builders.
"""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest

from sluice.datasets import Dataset
from sluice.records import (
    CHUNK_BYTES,
    DEFAULT_MAX_RECORD_BYTES,
    MAX_PROPERTY_NAME_CHARS,
    FileRejectedError,
    _array_records,
    _CheckedReader,
    _encode_exactly,
    _event_records,
    _Replay,
    _TokenGuard,
    transform_records,
)
from tests.unit.test_records_poison import Trickle, retina, scan

__all__ = ["retina"]  # the fixture, shared with the poison tests

MAX_DEPTH = 32


def build(data: bytes, step: int, *, reference: bool) -> tuple[str, Any]:
    """``("records", repr of them)`` or ``("rejected", (code, message, position))``."""
    reader = _CheckedReader(Trickle(data, step), DEFAULT_MAX_RECORD_BYTES, _TokenGuard())
    try:
        if reference:
            records = list(_event_records(_Replay(reader.read(), reader), reader, MAX_DEPTH))
        else:
            records = list(_array_records(reader, MAX_DEPTH))
    except FileRejectedError as rejection:
        return "rejected", (rejection.code, rejection.message, rejection.position)
    return "records", repr(records)


STRING_PIECES = ["a", "é", "[", "]", "{", "}", ":", ","]
STRING_PIECES += ['\\"', "\\\\", "\\n", "\\u005b", "\\ud83d\\ude00"]  # escapes


def random_string(rng: random.Random, length: int) -> str:
    return '"' + "".join(rng.choice(STRING_PIECES) for _ in range(length)) + '"'


def random_value(rng: random.Random, depth: int, deep_to: int) -> str:
    """Raw JSON text; containers nest down to ``deep_to`` levels along one branch."""
    if depth < deep_to:
        inner = random_value(rng, depth + 1, deep_to)
        if rng.random() < 0.5:
            return f"[{random_string(rng, 3)}, {inner}]"
        return "{" + f"{random_string(rng, 4)}: {inner}, {random_string(rng, 2)}: 1" + "}"
    kind = rng.randrange(6)
    if kind == 0:
        return random_string(rng, rng.randrange(0, 40))
    if kind == 1:
        return rng.choice(["0", "-12", "3.25", "1e5", "-0.0", "123456789012345678", "2.5E-3"])
    if kind == 2:
        return rng.choice(["true", "false", "null"])
    if kind == 3:
        return "[]" if rng.random() < 0.5 else "{}"
    members = [f"{random_string(rng, rng.randrange(1, 8))}: {random_value(rng, depth + 1, depth)}"]
    return "{" + ", ".join(members) + "}"


def random_document(rng: random.Random) -> bytes:
    """An array of records with at most one kind of problem: too deep, a long name, a cut."""
    problem = rng.choice(["none", "none", "deep", "long_name", "cut"])
    records = []
    for _ in range(rng.randrange(1, 30)):
        deep_to = rng.randrange(0, 8)
        if problem == "deep" and rng.random() < 0.2:
            deep_to = rng.randrange(MAX_DEPTH - 2, MAX_DEPTH + 3)
        record = random_value(rng, 1, deep_to)
        if problem == "long_name" and rng.random() < 0.2:
            length = rng.randrange(MAX_PROPERTY_NAME_CHARS - 2, MAX_PROPERTY_NAME_CHARS + 3)
            name = '"' + "".join(rng.choice(["k", "é", '\\"', "\\u0041"]) for _ in range(length))
            record = "{" + f'"a": 1, {name}": {record}' + "}"
        records.append(record)
    text = "[" + ",\n".join(records) + "]"
    if problem == "cut":
        text = text[: rng.randrange(1, len(text))]
    return text.encode()


@pytest.mark.parametrize("seed", range(4))
def test_the_c_builder_gives_what_the_event_builder_gives(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        data = random_document(rng)
        for step in (rng.randrange(1, 4), 7, 4096, CHUNK_BYTES):
            expected = build(data, step, reference=True)
            assert build(data, step, reference=False) == expected, (data, step)


def transform(
    data: bytes, dataset: Dataset, step: int = CHUNK_BYTES
) -> tuple[bytes, list[dict[str, Any]]]:
    out = io.BytesIO()
    reported: list[dict[str, Any]] = []
    transform_records(Trickle(data, step), "array", dataset, out, reported.append)
    return out.getvalue(), reported


def test_a_too_deep_record_is_named_by_its_index_after_the_records_before_it(
    retina: Dataset,
) -> None:
    # 300 records share the deep one's 64 KiB chunk: they are validated (the invalid one
    # is reported) before the file is rejected, and the index counts them all.
    good = [json.dumps(scan(n)) for n in range(300)]
    good[7] = json.dumps(scan(7, diagnosis=None))
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    data = ("[" + ",".join([*good, deep, *good]) + "]").encode()
    reported: list[dict[str, Any]] = []
    with pytest.raises(FileRejectedError) as caught:
        transform_records(io.BytesIO(data), "array", retina, io.BytesIO(), reported.append)
    assert caught.value.code == "too_deep"
    assert caught.value.message == f"record 300 is nested deeper than {MAX_DEPTH} levels"
    assert [error["record_index"] for error in reported] == [7]


def test_the_deepest_record_allowed_is_an_ordinary_invalid_record(retina: Dataset) -> None:
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    _, reported = transform(f"[{json.dumps(scan(1))}, {deepest}]".encode(), retina)
    assert [(e["record_index"], e["code"]) for e in reported] == [(1, "schema_violation")]


@pytest.mark.parametrize("step", [1, 5, CHUNK_BYTES])
def test_brackets_and_escaped_quotes_inside_strings_are_text(retina: Dataset, step: int) -> None:
    name = '\\"' + "[" * 60 + "{" * 60 + "\\\\"  # ends with an escaped backslash
    record = json.dumps(scan(1)).replace('"Talo Venri"', f'"{name}"')
    out, reported = transform(f"[{record}]".encode(), retina, step)
    assert reported == []
    assert json.loads(out)[0]["patient_name"] == json.loads(f'"{name}"')


def test_a_long_name_written_with_escapes_is_still_too_long(retina: Dataset) -> None:
    # 1,025 characters in 2,050 bytes: each escaped quote is one character.
    name = '\\"' * (MAX_PROPERTY_NAME_CHARS + 1)
    data = f'[{json.dumps(scan(1))}, {{"{name}": 1}}]'.encode()
    with pytest.raises(FileRejectedError) as caught:
        transform(data, retina, 300)
    assert caught.value.code == "property_name_too_long"
    assert caught.value.message.startswith("record 1 has a property name longer than")


def test_a_name_of_the_longest_length_in_many_bytes_is_only_unexpected(retina: Dataset) -> None:
    name = "é" * MAX_PROPERTY_NAME_CHARS  # 2,048 bytes, 1,024 characters
    record = {**scan(1), name: 1}
    _, reported = transform(json.dumps([record], ensure_ascii=False).encode(), retina, 1000)
    assert [e["code"] for e in reported] == ["schema_violation"]


def test_a_record_that_is_both_too_deep_and_long_named_is_too_deep(retina: Dataset) -> None:
    """The one decision that differs from the event builder, which stopped at the name:
    a record with both problems is reported by the depth, found before yajl reads it."""
    name = "k" * (MAX_PROPERTY_NAME_CHARS + 1)
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    data = f'[{{"{name}": 1, "x": {deep}}}]'.encode()
    with pytest.raises(FileRejectedError) as caught:
        transform(data, retina)
    assert caught.value.code == "too_deep"


FREE_FORM = {"type": "object", "properties": {"v": {}}}
TRICKY_VALUES = [
    '"tab\\there, nul\\u0000, unit separator\\u001f, del\\u007f, line sep\\u2028, quote\\""',
    '"Renée 漢字 \\ud83d\\ude00 \\/ slash"',
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "123456789012345678901234567890",
    "-0",
    "1e-05",
    "1E+16",
    "0.1",
    "2.50",
    "-0.0",
    "true",
    "null",
    '{"b": 1, "a": [1, {"z": null, "y": "é"}], "b": 2}',
    "[" * 30 + "]" * 30,
]


@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_output_bytes_are_those_json_dumps_wrote(value: str) -> None:
    """orjson writes what it writes exactly as ``json.dumps`` did (key order and duplicate
    keys included); what it would write differently (floats) goes to ``json.dumps``."""
    dataset = Dataset.compile("free", "free/", FREE_FORM, ["v"])
    data = f'[{{"v": {value}, "w": 1}}]'.encode()
    out, reported = transform(data, dataset)
    assert reported == []
    (record,) = [r for r in _event_records_of(data)]
    assert out == b"[\n" + _encode_exactly({"v": record["v"]}) + b"\n]\n"


def _event_records_of(data: bytes) -> list[Any]:
    reader = _CheckedReader(io.BytesIO(data), DEFAULT_MAX_RECORD_BYTES, _TokenGuard())
    return list(_event_records(_Replay(reader.read(), reader), reader, MAX_DEPTH))


def test_a_duplicate_key_keeps_its_last_value_in_its_first_place() -> None:
    dataset = Dataset.compile(
        "free", "free/", {"type": "object", "properties": {"a": {}, "b": {}}}, ["b", "a"]
    )
    out, _ = transform(b'[{"a": 1, "b": 2, "a": 3}]', dataset)
    assert out == b'[\n{"b":2,"a":3}\n]\n'
