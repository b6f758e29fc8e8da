"""Array records read by orjson with doubles (issue 16) decide, write and reject exactly as
records read by ijson's ``items()`` with exact numbers.

``sluice.records._Batches`` parses each chunk's complete records with orjson when the
dataset decides doubles alike (``sluice.datasets.gate.doubles_decide_alike``) and the guard
saw no number a double cannot stand for; anything else goes to yajl. The reference is the
same dataset with ``doubles_decide_alike`` off, which reads every file with ``items()``
(the path the builder tests hold to the event builder). Seeded random files, clean and
broken in every way the reader knows (cuts, garbage, bytes that are not UTF-8, poison
numbers, lone surrogates, names too long, nesting too deep, scalar records, numbers at
and around the bounds, too precise, too large, too small), read in pieces of every size,
must give the same output bytes, the same reported errors and counts, or the same
rejection (code, message, position).
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
from typing import Any

import fastjsonschema
import pytest

from sluice.datasets import Dataset, load_registry
from sluice.datasets.gate import compile_gate, doubles_decide_alike
from sluice.records import (
    CHUNK_BYTES,
    MAX_PROPERTY_NAME_CHARS,
    FileRejectedError,
    _Batches,
    transform_records,
)
from tests.unit.test_records_builder import random_string, random_value
from tests.unit.test_records_poison import Trickle, scan

MAX_DEPTH = 32
BOUNDED = {
    "type": "object",
    "properties": {
        "n": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "m": {"type": "number", "minimum": -2.5, "exclusiveMaximum": 1000},
        "s": {"type": "string", "minLength": 1},
        "v": {},
    },
    "required": ["n"],
    "additionalProperties": False,
}
NUMBERS = [
    "0", "1", "-0", "0.5", "0.1", "1.0", "2.50", "-2.5", "999.999", "1000", "1e-5", "1E+2",
    "0.30000000000000004", "1.0000000000000001", "0.99999999999999999", "1e-400", "-1e-400",
    "1e400", "1e-99", "1.5e-100", "1e308", "1.7976931348623157e308", "4.9e-324",
    "123456789012345", "1234567890123456", "12345678901234567890123", "-9223372036854775809",
    "0.000000000000001", "0.0000000000000001", "123456.78901234", "1e0", "3.25E-3",
]  # fmt: skip


def reference(dataset: Dataset) -> Dataset:
    """The same dataset read the exact way (ijson ``items()``, ``Decimal`` numbers)."""
    return dataclasses.replace(dataset, doubles_decide_alike=False)


def outcome(data: bytes, dataset: Dataset, step: int) -> tuple[Any, ...]:
    out = io.BytesIO()
    reported: list[dict[str, Any]] = []
    try:
        result = transform_records(Trickle(data, step), "array", dataset, out, reported.append)
    except FileRejectedError as rejection:
        return "rejected", rejection.code, rejection.message, rejection.position
    return out.getvalue(), reported, result.stats(), result.errors_by_code


def assert_alike(data: bytes, dataset: Dataset, steps: tuple[int, ...]) -> None:
    exact = reference(dataset)
    for step in steps:
        assert outcome(data, dataset, step) == outcome(data, exact, step), (data[:300], step)


def random_record(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return random_value(rng, 1, rng.randrange(0, 5))  # anything, mostly invalid
    if kind == 1:
        return rng.choice([*NUMBERS, '"text"', "true", "null", "[]"])  # scalar records
    members = [f'"n": {rng.choice(NUMBERS)}']
    if rng.random() < 0.7:
        members.append(f'"m": {rng.choice(NUMBERS)}')
    if rng.random() < 0.7:
        members.append(f'"s": {random_string(rng, rng.randrange(0, 12))}')
    if rng.random() < 0.5:
        members.append(f'"v": {random_value(rng, 2, rng.randrange(0, 4))}')
    rng.shuffle(members)
    return "{" + ", ".join(members) + "}"


FAULTS = ["none", "none", "none", "cut", "garbage", "not_utf8", "poison", "surrogate"]
FAULTS += ["long_name", "deep", "form_feed", "trailing", "empty"]


def random_file(rng: random.Random, records: int) -> tuple[str, bytes]:
    fault = rng.choice(FAULTS)
    if fault == "empty":
        return fault, rng.choice([b"[]", b" [ ] ", b"[", b"", b"  "])
    items = [random_record(rng) for _ in range(records)]
    if fault == "long_name":
        name = "k" * rng.randrange(MAX_PROPERTY_NAME_CHARS - 1, MAX_PROPERTY_NAME_CHARS + 2)
        items.insert(rng.randrange(len(items) + 1), f'{{"{name}": 1}}')
    if fault == "deep":
        depth = rng.randrange(MAX_DEPTH - 1, MAX_DEPTH + 2)
        items.insert(rng.randrange(len(items) + 1), "[" * depth + "]" * depth)
    separator = rng.choice([",", ",\n", ", ", "\n,\n"])
    text = ("[" + separator.join(items) + "]\n").encode()
    at = rng.randrange(len(text))
    if fault == "cut":
        text = text[:at]
    elif fault == "garbage":
        text = text[:at] + rng.choice([b",", b"]", b"}", b"{", b":", b"x", b'"', b"0"]) + text[at:]
    elif fault == "not_utf8":
        text = text[:at] + b"\xff" + text[at:]
    elif fault == "poison":
        text = text.replace(b'"n": 0', b'"n": ' + b"7" * 1001, 1)
    elif fault == "surrogate":
        text = text.replace(b'"s": "', b'"s": "\\ud800', 1)
    elif fault == "form_feed":
        text = text.replace(b", ", b",\x0c ", 1)
    elif fault == "trailing":
        text += rng.choice([b"x", b"[]", b"]", b" \n"])
    return fault, text


@pytest.fixture(scope="module")
def bounded() -> Dataset:
    dataset = Dataset.compile("bounded", "bounded/", BOUNDED, ["n", "m", "v"])
    assert dataset.doubles_decide_alike and dataset.projects_numbers
    return dataset


@pytest.mark.parametrize("seed", range(6))
def test_records_read_as_doubles_come_out_as_the_exact_ones(bounded: Dataset, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        _, data = random_file(rng, rng.randrange(1, 25))
        assert_alike(data, bounded, (rng.randrange(1, 4), 9, 4096, CHUNK_BYTES))


@pytest.mark.parametrize("seed", range(3))
def test_files_of_many_chunks_come_out_alike(bounded: Dataset, seed: int) -> None:
    """Faults deep in files of several 64 KiB chunks, where batches, the bytes left after
    each and the hand-over to ``items()`` meet chunk boundaries."""
    rng = random.Random(100 + seed)
    for _ in range(4):
        _, data = random_file(rng, rng.randrange(1500, 3000))
        assert_alike(data, bounded, (CHUNK_BYTES, 10_000))


def test_the_retina_bench_file_shape_comes_out_alike() -> None:
    dataset = load_registry().for_key("retina/doubles.json")
    assert dataset is not None and dataset.doubles_decide_alike and not dataset.projects_numbers
    records = [scan(n) for n in range(2000)]
    records[5]["optic_disc_cup_ratio"] = 1.0000000000000001  # a double: 1.0, valid
    records[7]["patient_id"] = "12-3456"
    records[9]["retina_thickness_microns"] = "262.5"
    data = json.dumps(records).encode().replace(b"1.0,", b"1.0000000000000001,", 1)
    assert_alike(data, dataset, (CHUNK_BYTES, 333))


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("1.0000000000000001", False),  # above 1 by 1e-16: the double is 1.0
        ("1e-400", True),  # above 0: the double is 0.0
        ("0.99999999999999999", True),
        ("1", True),
        ("1e-5", True),
    ],
)
def test_numbers_a_double_cannot_stand_for_are_judged_exactly(
    bounded: Dataset, number: str, valid: bool
) -> None:
    data = f'[{{"n": {number}}}]'.encode()
    out, reported, stats, _ = outcome(data, bounded, CHUNK_BYTES)
    assert stats["records_valid"] == int(valid), reported
    assert (out, reported) == outcome(data, reference(bounded), CHUNK_BYTES)[:2]


def test_a_double_is_written_as_json_dumps_writes_it(bounded: Dataset) -> None:
    out, _, _, _ = outcome(b'[{"n": 1e-5, "m": 1E+2, "v": [0.1, 2.50]}]', bounded, CHUNK_BYTES)
    assert out == b'[\n{"n":1e-05,"m":100.0,"v":[0.1,2.5]}\n]\n'


def test_malformed_json_in_the_bytes_after_a_batch_wins_over_the_next_chunks_error(
    bounded: Dataset,
) -> None:
    """items() parsed a whole chunk before reading the next: a record broken at the end of
    one chunk is reported, not the bytes that are not UTF-8 in the next."""
    record = b'{"n": 0.5, "s": "abc"}'
    head = b"[" + b",".join([record] * 4000)
    data = head + b', {"n" 0.5}' + b" " * CHUNK_BYTES + b"\xff]"
    rejected = outcome(data, bounded, CHUNK_BYTES)
    assert rejected[:2] == ("rejected", "malformed_json")
    assert rejected == outcome(data, reference(bounded), CHUNK_BYTES)


@pytest.mark.parametrize("step", [7, CHUNK_BYTES])
def test_scalar_records_count_toward_a_later_error_as_items_counts_them(
    bounded: Dataset, step: int
) -> None:
    """items() counts a scalar record as soon as it ends; a batch ends at a bracket, so
    after a scalar the rest goes to items() and the deep record is still record 5."""
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    data = f'[{{"n": 0.5}}, 1, "two", {{"n": 0.25}}, 3, {deep}]'.encode()
    rejected = outcome(data, bounded, step)
    too_deep = f"record 5 is nested deeper than {MAX_DEPTH} levels"
    assert rejected[:3] == ("rejected", "too_deep", too_deep)
    assert rejected == outcome(data, reference(bounded), step)


@pytest.mark.parametrize(
    "record",
    [
        b'{"n": 0.5, "s": "}]\\"{["}',  # brackets and an escaped quote inside a string
        b'{"n": 0.5, "s": "' + b"}" * 3000 + b'", "v": [[1], {"a": [2]}]}',  # far from the end
    ],
)
def test_the_batches_are_cut_at_the_last_record_of_each_chunk(
    bounded: Dataset, record: bytes
) -> None:
    """Each chunk's complete records are one orjson call (not one parse per record)."""
    count = 10_000 * 30 // len(record)
    data = b"[" + b",\n".join([record] * count) + b"]"
    batches = []
    original = _Batches._parse

    def spy(self: _Batches, body: bytes, exact: bool) -> list[Any] | None:
        parsed = original(self, body, exact)
        batches.append((exact, len(parsed or [])))
        return parsed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_Batches, "_parse", spy)
        _, reported, stats, _ = outcome(data, bounded, CHUNK_BYTES)
    assert stats["records_valid"] == count and reported == []
    assert len(batches) == len(data) // CHUNK_BYTES + 1
    assert all(exact for exact, _ in batches)
    assert sum(parsed for _, parsed in batches) == count
    assert outcome(data, bounded, CHUNK_BYTES) == outcome(data, reference(bounded), CHUNK_BYTES)


# --- the gate -----------------------------------------------------------------------------


def mutated(rng: random.Random, record: dict[str, Any]) -> dict[str, Any]:
    """A record changed in one of the ways a gate could get wrong."""
    changed = dict(record)
    field = rng.choice([*changed, "extra"])
    changed[field] = rng.choice(
        [
            None, True, False, 0, 1, -1, 0.0, -0.0, 1e-300, 1000, 1000.0001, 999.9, 0.5, 1.5,
            "", " ", "\u00a0", "\u001c", "\t\n", "x", "\uff12\uff10\uff12\uff14-01-01",
            "2024-02-30", "2024-02-29", "2023-02-29", "2024-12-31\n", "x" * 129, "x" * 201, [], {},
            float("nan"), float("inf"),
        ]
    )  # fmt: skip
    if rng.random() < 0.2:
        changed.pop(rng.choice(list(changed)))
    return changed


def test_the_gate_says_valid_only_when_fastjsonschema_does() -> None:
    dataset = load_registry().for_key("retina/gate.json")
    assert dataset is not None and dataset.gate is not None
    rng = random.Random(7)
    agreed = 0
    for number in range(20_000):
        record = mutated(rng, scan(number))
        fast = dataset.gate(record)
        try:
            dataset._fast_validate(record)
            valid = True
        except fastjsonschema.JsonSchemaValueException:
            valid = False
        assert not fast or valid, record
        agreed += fast == valid
    assert agreed > 19_000  # it answers nearly every record itself
    assert dataset.gate(scan(1))


EVERY_KEYWORD = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "s": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^a+$"},
        "d": {"type": "string", "format": "date-time"},
        "e": {"type": "string", "enum": ["x", "y"]},
        "n": {"type": "number", "minimum": -1, "exclusiveMinimum": -1.5, "maximum": 2.5},
        "x": {"type": "number", "exclusiveMaximum": 0},
        "i": {"type": "integer", "minimum": 0, "enum": [0, 1, 2.0]},
        "b": {"type": "boolean"},
        "z": {"type": "null", "description": "only null"},
    },
    "required": ["s", "n"],
}
ANY_VALUES = [
    None, True, False, 0, 1, 2, -1, 2.0, 2.5, 2.6, -1.5, -1.2, -0.0, 1e-300, 0.5,
    "", "a", "aa", "aaa", "aaaa", "ab", "aa\n", "x", "y", "z", "2024-02-29T12:00:00Z",
    "2024-02-29t12:00:00+01:00", "2023-02-29T12:00:00Z", "2024-01-01", [], {}, ["aa"],
]  # fmt: skip


def test_every_keyword_the_gate_knows_is_as_strict_as_fastjsonschema() -> None:
    validate = fastjsonschema.compile(EVERY_KEYWORD)
    gate = compile_gate(EVERY_KEYWORD, validate)
    assert gate is not None
    rng = random.Random(8)
    said_valid = 0
    for _ in range(30_000):
        record: dict[str, Any] = {"s": "aa", "n": 0.5, "i": 1, "e": "x", "z": None}
        for name in rng.sample([*EVERY_KEYWORD["properties"], "other"], rng.randrange(0, 4)):
            record[name] = rng.choice(ANY_VALUES)
        if rng.random() < 0.1:
            record.pop(rng.choice(list(record)))
        try:
            validate(record)
            valid = True
        except fastjsonschema.JsonSchemaValueException:
            valid = False
        assert not gate(record) or valid, record
        said_valid += gate(record)
    assert said_valid > 3_000


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {}}},
        {"type": "object", "properties": {"a": {"type": ["string", "null"]}}},
        {"type": "object", "properties": {"a": {"type": "string", "format": "regex"}}},
        {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
        {"type": "array"},
    ],
)
def test_there_is_no_gate_for_what_it_would_have_to_guess(schema: dict[str, Any]) -> None:
    assert compile_gate(schema, fastjsonschema.compile(schema)) is None


@pytest.mark.parametrize(
    ("schema", "alike"),
    [
        (BOUNDED, True),
        ({"properties": {"a": {"type": "integer"}}}, False),
        ({"properties": {"a": {"type": ["number", "integer"]}}}, False),
        ({"properties": {"a": {"multipleOf": 0.5}}}, False),
        ({"properties": {"a": {"maximum": 0.1}}}, False),  # 0.1 as a double is not 0.1
        ({"properties": {"a": {"maximum": 0.5}}}, True),
        ({"properties": {"a": {"maximum": 1e300}}}, False),
        ({"properties": {"a": {"enum": [1, "x", None]}}}, True),
        ({"properties": {"a": {"enum": [0.1]}}}, False),
        ({"properties": {"a": {"const": {"b": [2.5]}}}}, False),
    ],
)
def test_which_schemas_decide_doubles_alike(schema: dict[str, Any], alike: bool) -> None:
    assert doubles_decide_alike(schema) is alike


# --- JSON Lines ---------------------------------------------------------------------------

LINE_FAULTS = [
    "",
    "",
    "",
    "x",
    "NaN",
    "\\ud800",
    "7" * 1001,
    "[" * 40,
    "\ufeff",
    "\x0c",
    "\t",
    "1e400",
    "\u2028",
]


def random_line(rng: random.Random) -> str:
    line = random_record(rng)
    fault = rng.choice(LINE_FAULTS)
    if fault:
        at = rng.randrange(len(line) + 1)
        line = line[:at] + fault + line[at:]
    if rng.random() < 0.05:
        name = "k" * (MAX_PROPERTY_NAME_CHARS + 1)
        line = f'{{"{name}": 1, "n": 0.5}}'
    return line


def lines_outcome(data: bytes, dataset: Dataset, step: int) -> tuple[Any, ...]:
    out = io.BytesIO()
    reported: list[dict[str, Any]] = []
    try:
        result = transform_records(Trickle(data, step), "lines", dataset, out, reported.append)
    except FileRejectedError as rejection:
        return "rejected", rejection.code, rejection.message, rejection.position
    return out.getvalue(), reported, result.stats(), result.errors_by_code


@pytest.mark.parametrize("seed", range(4))
def test_json_lines_read_as_doubles_come_out_as_the_exact_ones(bounded: Dataset, seed: int) -> None:
    """orjson reads a line when it can; any line it refuses is read by json.loads, whose
    message is reported: same output, errors and counts as json.loads for every line."""
    rng = random.Random(200 + seed)
    for _ in range(20):
        lines = [random_line(rng) for _ in range(rng.randrange(1, 40))]
        data = "\n".join(lines).encode("utf-8", "surrogatepass")
        for step in (rng.randrange(1, 4), CHUNK_BYTES):
            doubles = lines_outcome(data, bounded, step)
            assert doubles == lines_outcome(data, reference(bounded), step), (data[:300], step)
