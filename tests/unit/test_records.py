"""sluice.records and sluice.datasets: streaming validation, projection, rejection."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.datasets import Dataset, DatasetConfigError, load_registry
from sluice.records import FileRejectedError, RecordsResult, transform_records


@pytest.fixture(scope="module")
def retina() -> Dataset:
    dataset = load_registry().for_key("retina/2024/scans.json")
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
    return {k: v for k, v in record.items() if v is not DROP}


DROP = object()


def run(
    data: bytes, retina: Dataset, fmt: str = "array", **options: Any
) -> tuple[RecordsResult, bytes, list[dict[str, Any]]]:
    out = io.BytesIO()
    reported: list[dict[str, Any]] = []
    result = transform_records(io.BytesIO(data), fmt, retina, out, reported.append, **options)  # type: ignore[arg-type]
    return result, out.getvalue(), reported


def rejection(data: bytes, retina: Dataset, fmt: str = "array", **options: Any) -> dict[str, Any]:
    with pytest.raises(FileRejectedError) as caught:
        run(data, retina, fmt, **options)
    return caught.value.as_error()


@pytest.mark.parametrize(
    "schema",
    [{"type": "no-such-type"}, {"required": "id"}, {"properties": {"id": {"pattern": "("}}}],
)
def test_a_malformed_schema_is_refused_when_compiled(schema: dict[str, Any]) -> None:
    with pytest.raises(DatasetConfigError, match="dataset bad: invalid schema"):
        Dataset.compile("bad", "bad/", schema, [])


def test_the_metaschema_check_finds_what_compiling_lets_through() -> None:
    dataset = Dataset.compile("bad", "bad/", {"properties": {"n": {"maxLength": -1}}}, ["n"])
    with pytest.raises(DatasetConfigError, match="dataset bad: invalid schema"):
        dataset.check_schema()


def test_array_keeps_valid_records_projected_as_an_array(retina: Dataset) -> None:
    result, out, reported = run(json.dumps([scan(1), scan(2)]).encode(), retina)
    assert json.loads(out) == [
        {"patient_id": "P000001", "patient_name": "Talo Venri"},
        {"patient_id": "P000002", "patient_name": "Talo Venri"},
    ]
    assert result.stats() == {"records_total": 2, "records_valid": 2, "records_invalid": 0}
    assert reported == []


def test_empty_array_writes_an_empty_array(retina: Dataset) -> None:
    result, out, _ = run(b" [ ] ", retina)
    assert json.loads(out) == []
    assert result.records_total == 0


def test_json_lines_stay_json_lines_and_blank_lines_are_skipped(retina: Dataset) -> None:
    data = f"{json.dumps(scan(1))}\n\n{json.dumps(scan(2))}".encode()  # no final newline
    result, out, _ = run(data, retina, "lines")
    lines = out.decode().splitlines()
    assert [json.loads(line)["patient_id"] for line in lines] == ["P000001", "P000002"]
    assert result.records_valid == 2


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        ({"patient_id": "   "}, "$.patient_id", "must match the pattern \\S"),
        ({"patient_name": ""}, "$.patient_name", "must be at least 1 character long"),
        ({"scan_date": "2024-02-30"}, "$.scan_date", "must be a valid date (YYYY-MM-DD)"),
        ({"retina_thickness_microns": 1200}, "$.retina_thickness_microns", "must be <= 1000"),
        ({"retina_thickness_microns": 0}, "$.retina_thickness_microns", "must be > 0"),
        ({"optic_disc_cup_ratio": -0.1}, "$.optic_disc_cup_ratio", "must be >= 0"),
        ({"diagnosis": 7}, "$.diagnosis", "must be of type string, got integer"),
        ({"scan_date": DROP}, "$.scan_date", "required property is missing"),
        ({"doctor": "Dr X"}, "$", "an unexpected property (#6) is not allowed by the schema"),
        (
            {"retina_thickness_microns": "275"},
            "$.retina_thickness_microns",
            "must be of type number, got string",
        ),
    ],
)
def test_each_kind_of_violation_is_reported_with_index_path_and_reason(
    retina: Dataset, changes: dict[str, Any], path: str, message: str
) -> None:
    data = json.dumps([scan(1), scan(2, **changes)]).encode()
    result, out, reported = run(data, retina)
    assert result.stats() == {"records_total": 2, "records_valid": 1, "records_invalid": 1}
    assert json.loads(out) == [{"patient_id": "P000001", "patient_name": "Talo Venri"}]
    assert [e for e in reported if e["path"] == path]
    error = next(e for e in reported if e["path"] == path)
    assert error["record_index"] == 1
    assert error["code"] == "schema_violation"
    assert error["message"].startswith(message)
    assert result.errors == reported


def test_every_violation_of_a_record_is_listed_without_its_values(retina: Dataset) -> None:
    bad = scan(1, scan_date="SECRET-DATE", patient_name=12, diagnosis=["flu"])
    _, _, reported = run(json.dumps([bad]).encode(), retina)
    assert {e["path"] for e in reported} == {"$.scan_date", "$.patient_name", "$.diagnosis"}
    text = json.dumps(reported)
    assert "SECRET-DATE" not in text
    assert "flu" not in text


def test_a_non_object_record_is_invalid_not_a_rejection(retina: Dataset) -> None:
    result, _, reported = run(b'[1, "x", null]', retina)
    assert result.records_invalid == 3
    assert reported[0] == {
        "record_index": 0,
        "path": "$",
        "code": "schema_violation",
        "message": "must be of type object, got integer",
    }


def test_json_lines_bad_line_is_an_invalid_record_with_its_line_number(retina: Dataset) -> None:
    data = f'{json.dumps(scan(1))}\n{{"patient_id": \n\n{json.dumps(scan(3))}\nNaN\n'.encode()
    result, out, reported = run(data, retina, "lines")
    assert result.stats() == {"records_total": 4, "records_valid": 2, "records_invalid": 2}
    assert len(out.splitlines()) == 2
    assert [(e["record_index"], e["line"], e["code"]) for e in reported] == [
        (1, 2, "invalid_json"),
        (3, 5, "invalid_json"),
    ]


def test_malformed_json_rejects_the_file_with_its_position(retina: Dataset) -> None:
    data = b'[\n  {"a": 1},\n  {"a": 2}\n  {"a": 3}\n]'
    error = rejection(data, retina)
    assert error["code"] == "malformed_json"
    assert (error["line"], error["column"]) == (4, 3)
    assert error["byte"] == data.index(b'{"a": 3}')
    assert "near byte 27 (line 4, column 3)" in error["message"]


def test_malformed_position_is_found_deep_in_a_large_file(retina: Dataset) -> None:
    records = [scan(n) for n in range(3000)]
    data = bytearray(json.dumps(records).encode())
    where = data.rindex(b"}, {", 0, len(data) - 1000) + 1  # a comma between records
    data[where] = ord("#")
    error = rejection(bytes(data), retina)
    assert error["code"] == "malformed_json"
    assert abs(error["byte"] - where) <= 1


def test_truncated_and_trailing_garbage_are_malformed(retina: Dataset) -> None:
    truncated = rejection(json.dumps([scan(1), scan(2)]).encode()[:-10], retina)
    assert truncated["code"] == "malformed_json"
    assert "premature EOF" in truncated["message"]
    assert rejection(b"[1] x", retina)["code"] == "malformed_json"


def test_malformed_message_does_not_quote_the_file(retina: Dataset) -> None:
    error = rejection(b'[{"patient_name": "Secret Person" oops}]', retina)
    assert "Secret" not in error["message"]


@pytest.mark.parametrize(
    ("data", "found"),
    [(b'{"records": []}', "an object"), (b'"text"', "a string"), (b"42", "a number")],
)
def test_wrong_top_level_shape_says_what_was_found(
    retina: Dataset, data: bytes, found: str
) -> None:
    error = rejection(data, retina)
    assert error["code"] == "wrong_shape"
    assert f"top-level JSON value is {found}" in error["message"]


def test_utf8_bom_is_skipped_and_reported(retina: Dataset) -> None:
    result, out, _ = run(b"\xef\xbb\xbf" + json.dumps([scan(1)]).encode(), retina)
    assert result.bom_skipped
    assert len(json.loads(out)) == 1


@pytest.mark.parametrize("fmt", ["array", "lines"])
def test_non_utf8_rejects_the_whole_file_with_position(retina: Dataset, fmt: str) -> None:
    record = scan(1, patient_name="Renée")
    text = json.dumps([record] if fmt == "array" else record, ensure_ascii=False)
    data = text.encode("latin-1")
    error = rejection(data, retina, fmt)
    assert error["code"] == "not_utf8"
    assert error["byte"] == data.index(b"\xe9")
    assert "invalid byte 0xe9" in error["message"]


def test_utf8_split_across_chunks_is_accepted(retina: Dataset) -> None:
    # Put a two-byte character across the 64 KiB read boundary.
    name = "é" * 40
    records = [scan(n, patient_name=name) for n in range(1500)]
    data = json.dumps(records, ensure_ascii=False).encode()
    result, _, _ = run(data, retina)
    assert result.records_valid == 1500


def test_deep_nesting_rejects_an_array_file_quickly(retina: Dataset) -> None:
    # ijson.items() would need gigabytes for this; the event builder stops at the limit.
    data = b"[" + b"[" * 200_000 + b"]" * 200_000 + b"]"
    error = rejection(data, retina)
    assert error["code"] == "too_deep"
    assert "deeper than 32 levels" in error["message"]


def test_deep_line_is_one_invalid_record_in_json_lines(retina: Dataset) -> None:
    data = json.dumps(scan(1)).encode() + b"\n" + b"[" * 5000 + b"]" * 5000 + b"\n"
    result, _, reported = run(data, retina, "lines")
    assert result.records_valid == 1
    assert reported[0]["code"] == "too_deep"


def test_oversized_record_is_refused_before_it_fills_memory(retina: Dataset) -> None:
    data = b'[{"patient_name": "' + b"x" * 3_000_000 + b'"}]'
    error = rejection(data, retina, max_record_bytes=1_000_000)
    assert error["code"] == "record_too_large"
    lines = json.dumps(scan(1)).encode() + b"\n" + b'"' + b"y" * 3_000_000 + b'"\n'
    result, _, reported = run(lines, retina, "lines", max_record_bytes=1_000_000)
    assert result.records_valid == 1
    assert reported[0]["code"] == "record_too_large"


def test_huge_numbers_are_validated_not_crashed_on(retina: Dataset) -> None:
    data = (
        b'[{"patient_id": "P000001", "patient_name": "A", "scan_date": "2024-01-01",'
        b' "retina_thickness_microns": 1e400, "optic_disc_cup_ratio": 0.123456789012345678901,'
        b' "diagnosis": "normal"}, 123456789012345678901234567890]'
    )
    result, _, reported = run(data, retina)
    assert result.records_invalid == 2
    assert reported[0]["path"] == "$.retina_thickness_microns"
    assert reported[0]["message"] == "must be <= 1000"


def test_high_precision_decimals_pass_and_are_written_as_numbers() -> None:
    dataset = Dataset.compile(
        "m", "m/", {"type": "object", "properties": {"v": {"type": "number"}}}, ["v"]
    )
    out = io.BytesIO()
    result = transform_records(
        io.BytesIO(b'[{"v": 0.1000000000000000000001}, {"v": 1e400}]'),
        "array",
        dataset,
        out,
        lambda error: None,
    )
    assert json.loads(out.getvalue()) == [{"v": 0.1}]
    assert result.errors[0]["code"] == "number_out_of_range"


def test_errors_kept_for_the_receipt_are_capped_but_all_are_reported(retina: Dataset) -> None:
    records = [scan(n, diagnosis=None) for n in range(30)]
    result, _, reported = run(json.dumps(records).encode(), retina, max_errors=10)
    assert len(reported) == 30
    assert len(result.errors) == 10
    assert result.errors_truncated
    assert result.errors == reported[:10]


def test_after_the_detailed_limit_each_invalid_record_still_gets_a_reason(
    retina: Dataset,
) -> None:
    records = [scan(n, diagnosis=None, patient_id=None) for n in range(5)]
    result, _, reported = run(json.dumps(records).encode(), retina, detailed_records=2)
    per_record = {i: [e for e in reported if e["record_index"] == i] for i in range(5)}
    assert all(len(per_record[i]) == 2 for i in (0, 1))
    assert all(len(per_record[i]) == 1 for i in (2, 3, 4))
    assert result.records_invalid == 5


class _GeneratedStream:
    """A file of ``count`` records, produced on demand (never held whole)."""

    def __init__(self, count: int, fmt: str) -> None:
        self._chunks = self._generate(count, fmt)
        self._pending = b""
        self.size = 0

    def _generate(self, count: int, fmt: str) -> Iterator[bytes]:
        note = "lorem ipsum " * 170
        valid = json.dumps({"id": "r", "note": note, "n": 1.5}).encode()
        invalid = json.dumps({"note": note, "n": 2}).encode()
        if fmt == "array":
            yield b"["
        for n in range(count):
            body = invalid if n % 50 == 0 else valid
            yield (b"," if fmt == "array" and n else b"") + body + b"\n"
        if fmt == "array":
            yield b"]"

    def read(self, size: int = -1) -> bytes:
        while len(self._pending) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._pending += chunk
        data, self._pending = self._pending[:size], self._pending[size:]
        self.size += len(data)
        return data


class _CountingSink:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def write_line(self, error: dict[str, Any]) -> None:
        self.write(json.dumps(error).encode() + b"\n")


@pytest.mark.parametrize("fmt", ["array", "lines"])
def test_memory_stays_flat_for_a_large_stream(fmt: str) -> None:
    # Large records keep the run short under tracemalloc; the streaming is the same.
    dataset = Dataset.compile(
        "notes",
        "notes/",
        {
            "type": "object",
            "properties": {"id": {"type": "string"}, "note": {"type": "string"}, "n": {}},
            "required": ["id"],
            "additionalProperties": False,
        },
        ["id", "note"],
    )
    count = 25_000  # about 50 MB of input
    stream = _GeneratedStream(count, fmt)
    sink = _CountingSink()
    errors = _CountingSink()
    tracemalloc.start()
    try:
        result = transform_records(
            stream,
            fmt,  # type: ignore[arg-type]
            dataset,
            sink,
            lambda error: errors.write_line(error),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stream.size > 50_000_000
    assert result.records_total == count
    assert result.records_invalid == count // 50
    assert sink.size > 45_000_000
    assert peak < 4 * 1024 * 1024, f"peak traced memory {peak} bytes"
