"""sluice.records against poison inputs (GitHub issue 10): no input can crash the parser,
every poison token gets its own code in both formats, the error report stays bounded, and
no unexpected property name is repeated anywhere.

What crashed before: ijson's C backend converts number tokens itself, and an integer of
more than 4300 digits makes that conversion raise inside a yajl callback; the exception is
left pending while yajl calls the reader again, and the process dies with a segmentation
fault (a ``SystemError`` with some readers). That is checked in a child process, the only
place a segfault can be observed.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sluice.datasets import Dataset, load_registry
from sluice.records import (
    MAX_EXPONENT_DIGITS,
    MAX_NUMBER_CHARS,
    MAX_PROPERTY_NAME_CHARS,
    FileRejectedError,
    OutOfTimeError,
    RecordsResult,
    transform_records,
)

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def retina() -> Dataset:
    dataset = load_registry().for_key("retina/poison.json")
    assert dataset is not None
    return dataset


def scan(number: int = 1, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "patient_id": f"P{number:06d}",
        "patient_name": "Talo Venri",
        "scan_date": "2024-03-01",
        "retina_thickness_microns": 262.5,
        "optic_disc_cup_ratio": 0.31,
        "diagnosis": "normal",
    }
    record.update(changes)
    return record


class Trickle:
    """A source that hands out at most ``step`` bytes a read: every token gets split."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._step = step
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        size = self._step if size < 0 else min(size, self._step)
        piece = self._data[self._at : self._at + size]
        self._at += len(piece)
        return piece


def run(
    data: bytes, dataset: Dataset, fmt: str = "array", step: int | None = None, **options: Any
) -> tuple[RecordsResult, bytes, list[dict[str, Any]]]:
    out = io.BytesIO()
    reported: list[dict[str, Any]] = []
    source = Trickle(data, step) if step else io.BytesIO(data)
    result = transform_records(source, fmt, dataset, out, reported.append, **options)  # type: ignore[arg-type]
    return result, out.getvalue(), reported


def outcome(data: bytes, dataset: Dataset, fmt: str = "array", step: int | None = None) -> Any:
    """The file's rejection code, or the codes of its record errors."""
    try:
        result, _, _ = run(data, dataset, fmt, step)
    except FileRejectedError as rejection:
        return rejection.code
    return sorted({error["code"] for error in result.errors})


def array_with(value: str) -> bytes:
    """A valid record, one whose thickness is ``value`` (raw JSON), another valid one."""
    good = json.dumps(scan(1))
    bad = json.dumps(scan(2)).replace("262.5", value)
    return f"[{good},\n{bad},\n{good}]".encode()


def lines_with(value: str) -> bytes:
    good = json.dumps(scan(1))
    bad = json.dumps(scan(2)).replace("262.5", value)
    return f"{good}\n{bad}\n{good}\n".encode()


# --- numbers ---------------------------------------------------------------------------------

CHILD = """
import io, json, sys
from sluice.datasets import load_registry
from sluice.records import FileRejectedError, transform_records
dataset = load_registry().for_key("retina/poison.json")
try:
    result = transform_records(
        io.BytesIO(sys.stdin.buffer.read()), sys.argv[1], dataset, io.BytesIO(), lambda e: None
    )
    print(json.dumps(sorted({e["code"] for e in result.errors})))
except FileRejectedError as rejection:
    print(json.dumps(rejection.code))
"""


@pytest.mark.parametrize("digits", [5_000, 100_000])
@pytest.mark.parametrize("fmt", ["array", "lines"])
def test_no_input_can_crash_the_transform_process_with_a_long_integer(
    fmt: str, digits: int
) -> None:
    data = (array_with if fmt == "array" else lines_with)("7" * digits)
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, fmt],
        input=data,
        capture_output=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert child.returncode == 0, child.stderr.decode()[-2000:]
    expected = "number_too_long" if fmt == "array" else ["number_too_long"]
    assert json.loads(child.stdout) == expected


POISON_NUMBERS = [
    "7" * 5_000,
    "-" + "1" * MAX_NUMBER_CHARS,
    "0." + "1" * MAX_NUMBER_CHARS,
    "1e" + "9" * (MAX_EXPONENT_DIGITS + 1),
    "2.5E-" + "0" * (MAX_EXPONENT_DIGITS + 1) + "7",
]


@pytest.mark.parametrize("token", POISON_NUMBERS, ids=lambda t: f"{t[:6]}..{len(t)}")
def test_a_number_too_long_is_rejected_with_its_position_in_an_array(
    retina: Dataset, token: str
) -> None:
    data = array_with(token)
    with pytest.raises(FileRejectedError) as caught:
        run(data, retina)
    error = caught.value.as_error()
    assert error["code"] == "number_too_long"
    start = data.index(token.encode())
    assert start <= error["byte"] < start + len(token)
    assert error["line"] == 2
    assert f"at byte {error['byte']} (line 2, column" in error["message"]
    assert token[:30] not in error["message"]


@pytest.mark.parametrize("token", POISON_NUMBERS, ids=lambda t: f"{t[:6]}..{len(t)}")
def test_a_number_too_long_is_one_invalid_line_in_json_lines(retina: Dataset, token: str) -> None:
    result, out, reported = run(lines_with(token), retina, "lines")
    assert result.stats() == {"records_total": 3, "records_valid": 2, "records_invalid": 1}
    assert len(out.splitlines()) == 2
    assert [(e["record_index"], e["line"], e["code"], e["path"]) for e in reported] == [
        (1, 2, "number_too_long", "$")
    ]


@pytest.mark.parametrize("fmt", ["array", "lines"])
@pytest.mark.parametrize(
    "token",
    ["7" * MAX_NUMBER_CHARS, "1e" + "9" * MAX_EXPONENT_DIGITS, "99999." + "0" * 900],
    ids=["longest-integer", "longest-exponent", "long-fraction"],
)
def test_numbers_within_the_bounds_are_validated_like_any_other(
    retina: Dataset, fmt: str, token: str
) -> None:
    data = (array_with if fmt == "array" else lines_with)(token)
    result, _, reported = run(data, retina, fmt)
    assert result.stats() == {"records_total": 3, "records_valid": 2, "records_invalid": 1}
    assert [(e["path"], e["code"]) for e in reported] == [
        ("$.retina_thickness_microns", "schema_violation")
    ]


def test_digits_inside_strings_are_never_taken_for_numbers(retina: Dataset) -> None:
    digits = "9" * 150
    records = [
        scan(1, patient_name=digits),
        scan(2, patient_name='say "' + digits + '"'),
        scan(3, patient_name="back\\slash\\\\" + digits),
        {**scan(4), "x" * 30 + "7" * 900: "1" * 20_000},
    ]
    for fmt in ("array", "lines"):
        if fmt == "array":
            data = json.dumps(records).encode()
        else:
            data = b"\n".join(json.dumps(r).encode() for r in records)
        for step in (None, 7, 333):
            result, _, reported = run(data, retina, fmt, step)
            assert result.records_valid == 3, (fmt, step)
            assert [(e["record_index"], e["code"]) for e in reported] == [(3, "schema_violation")]


@pytest.mark.parametrize("step", [1, 2, 3, 5, 11, 13, 64, 997])
def test_poison_is_found_exactly_however_the_file_is_cut(retina: Dataset, step: int) -> None:
    # Strings full of digits, escaped quotes and backslashes, a surrogate pair and long but
    # acceptable numbers around the one token that must be caught, read a few bytes at a time.
    noise = [
        scan(1, patient_name='q\\"' + "1" * 40 + '\\\\"'),
        scan(2, patient_name="\\" * 7 + "8" * 60),
        scan(3, patient_name="🙂 " + "5" * 25),
        scan(4, retina_thickness_microns=int("3" * 30)),
        scan(5, optic_disc_cup_ratio=float("0.1234567890123456")),
    ]
    clean = json.dumps(noise).encode()
    assert outcome(clean, retina, step=step) == ["schema_violation"]
    long_number = clean[:-1] + b", " + b"4" * (MAX_NUMBER_CHARS + 1) + b"]"
    assert outcome(long_number, retina, step=step) == "number_too_long"
    lone = clean[:-1] + b', "\\ud83d"]'
    assert outcome(lone, retina, step=step) == "lone_surrogate"


# --- lone surrogates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        '{"\\ud800": 1}',
        '{"patient_name": "\\ud800"}',
        '{"patient_name": "x\\udc00x"}',
        '{"patient_name": "\\ud800\\u0041"}',
        '{"patient_name": "\\udc00\\ud800"}',
        '{"patient_name": "abc\\udbff"}',
        '{"patient_name": "\\\\\\uDFFF"}',
    ],
)
def test_a_lone_surrogate_gets_its_own_reason_in_both_formats(retina: Dataset, record: str) -> None:
    good = json.dumps(scan(1))
    array = f"[{good},\n{record}]".encode()
    with pytest.raises(FileRejectedError) as caught:
        run(array, retina)
    error = caught.value.as_error()
    assert error["code"] == "lone_surrogate"
    assert array.index(b"\\u", array.index(b"\n")) <= error["byte"]
    assert error["line"] == 2

    result, out, reported = run(f"{good}\n{record}\n".encode(), retina, "lines")
    assert result.records_valid == 1
    assert [(e["record_index"], e["code"]) for e in reported] == [(1, "lone_surrogate")]
    assert b"?" not in out


@pytest.mark.parametrize("fmt", ["array", "lines"])
def test_escaped_pairs_and_escaped_backslashes_are_kept_exactly(retina: Dataset, fmt: str) -> None:
    names = ["Talo 🙂 Venri", "Talo \\ud800 Venri"]  # the second is text: a backslash, then ud800
    records = [scan(n, patient_name=name) for n, name in enumerate(names)]
    if fmt == "array":
        data = json.dumps(records).encode()  # ensure_ascii: 🙂 becomes a surrogate pair escape
    else:
        data = b"\n".join(json.dumps(r).encode() for r in records)
    assert b"\\ud83d\\ude42" in data
    _, out, reported = run(data, retina, fmt)
    assert reported == []
    text = out.decode()
    written = json.loads(text) if fmt == "array" else [json.loads(x) for x in text.splitlines()]
    assert [r["patient_name"] for r in written] == names


# --- bounded errors --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["array", "lines"])
def test_the_error_report_is_bounded_whatever_the_number_of_errors(
    retina: Dataset, fmt: str
) -> None:
    count = 20_000
    data = b"[" + b",".join([b"{}"] * count) + b"]" if fmt == "array" else b"{}\n" * count
    result, _, reported = run(
        data, retina, fmt, max_report_errors=500, max_errors=50, detailed_records=100
    )
    assert result.records_invalid == count
    assert result.errors_total == count * 6  # six required properties missing in each
    assert len(result.errors) == 50 and result.errors_truncated
    assert len(reported) == 501
    assert reported[:500] == [e for e in reported if e["code"] != "report_truncated"]
    summary = reported[-1]
    assert summary["code"] == "report_truncated"
    assert summary["errors_total"] == count * 6
    assert summary["errors_listed"] == 500
    assert summary["errors_by_code"] == {"schema_violation": count * 6}


@pytest.mark.parametrize("detailed", [True, False])
def test_a_record_lists_a_bounded_number_of_problems(retina: Dataset, detailed: bool) -> None:
    record = {**scan(1), **{f"extra-{n}": n for n in range(20_000)}}
    data = json.dumps([record]).encode()
    result, _, reported = run(data, retina, max_record_errors=20, detailed_records=int(detailed))
    assert result.records_invalid == 1
    assert len(reported) == 21
    assert reported[-1]["code"] == "too_many_errors"
    assert "only the first 20 are listed" in reported[-1]["message"]
    assert all(e["code"] == "schema_violation" for e in reported[:20])


# --- no unexpected names ---------------------------------------------------------------------

SECRET_KEY = "Margaret Hamilton-Smythe (DOB 1961-04-02)"


@pytest.mark.parametrize("fmt", ["array", "lines"])
def test_an_unexpected_property_is_named_by_its_index_never_by_its_name(
    retina: Dataset, fmt: str
) -> None:
    record = {**scan(1), SECRET_KEY: "x"}
    data = json.dumps([record] if fmt == "array" else record).encode()
    for detailed in (1, 0):
        _, _, reported = run(data, retina, fmt, detailed_records=detailed)
        assert [(e["path"], e["message"]) for e in reported] == [
            ("$", "an unexpected property (#6) is not allowed by the schema")
        ]


def test_paths_below_an_unexpected_property_show_its_index_only() -> None:
    dataset = Dataset.compile(
        "nested",
        "nested/",
        {
            "type": "object",
            "properties": {
                "visits": {"type": "object", "additionalProperties": {"type": "integer"}}
            },
            "required": ["visits"],
        },
        ["visits"],
    )
    record = {"visits": {"ok": 1, SECRET_KEY: "not a number"}}
    for detailed in (1, 0):
        _, _, reported = run(json.dumps([record]).encode(), dataset, detailed_records=detailed)
        assert [e["path"] for e in reported] == ["$.visits[#1]"]
        assert SECRET_KEY not in json.dumps(reported)


# --- huge names, nesting, time -----------------------------------------------------------


def test_a_huge_property_name_gets_its_own_reason_in_both_formats(retina: Dataset) -> None:
    record = json.dumps({**scan(2), "k" * (MAX_PROPERTY_NAME_CHARS + 1): 1})
    good = json.dumps(scan(1))
    error = outcome(f"[{good}, {record}]".encode(), retina)
    assert error == "property_name_too_long"
    result, _, reported = run(f"{good}\n{record}\n".encode(), retina, "lines")
    assert result.records_valid == 1
    assert [(e["record_index"], e["code"]) for e in reported] == [(1, "property_name_too_long")]
    # A name of the longest length allowed is only an unexpected property.
    allowed = json.dumps({**scan(2), "k" * MAX_PROPERTY_NAME_CHARS: 1})
    assert outcome(f"[{good}, {allowed}]".encode(), retina) == ["schema_violation"]


@pytest.mark.parametrize("fmt", ["array", "lines"])
def test_deep_nesting_gets_its_own_reason_in_both_formats(retina: Dataset, fmt: str) -> None:
    deep = "[" * 40 + "]" * 40
    good = json.dumps(scan(1))
    data = f"[{good}, {deep}]" if fmt == "array" else f"{good}\n{deep}\n"
    found = outcome(data.encode(), retina, fmt)
    assert found == ("too_deep" if fmt == "array" else ["too_deep"])


@pytest.mark.parametrize("fmt", ["array", "lines"])
def test_the_clock_stops_a_file_between_two_reads(retina: Dataset, fmt: str) -> None:
    records = [scan(n) for n in range(2000)]
    if fmt == "array":
        data = json.dumps(records).encode()
    else:
        data = b"\n".join(json.dumps(r).encode() for r in records)
    reads = iter(range(1000))
    with pytest.raises(OutOfTimeError) as caught:
        transform_records(
            Trickle(data, 10_000),
            fmt,  # type: ignore[arg-type]
            retina,
            io.BytesIO(),
            lambda error: None,
            out_of_time=lambda: next(reads) >= 5,
        )
    assert caught.value.bytes_read == 50_000  # five reads of 10,000 bytes, then stop
