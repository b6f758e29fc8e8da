#!/usr/bin/env python3
"""JSON transform: the candidate parts side by side, and where sluice's time goes.

    .venv/bin/python bench/json_candidates.py [--quick]

Issue 16 asks for the transform at >= 50% of the parse-only floor. This measures, in one
process on the 10 MB retina file of ``bench/json_transform.py`` (1 MB with ``--quick``),
the CPU time (``time.process_time``, the minimum of interleaved repetitions: a shared
machine's load moves wall time, hardly CPU time) of:

* the floor: ijson yajl2_c ``basic_parse`` with a loop over the events (as parse_only);
* builders: the event-by-event builder sluice used (``_event_records``), ijson's C
  ``items()`` with exact numbers (``Decimal``, what sluice uses now) and with
  ``use_float=True`` (doubles: yajl then rejects ``1e400`` and integers beyond 64 bits);
* validators, over the records built: fastjsonschema as compiled today and its variants,
  jsonschema-rs (when installed) on exact numbers and on doubles;
* projection and output: ``Dataset.project``, ``json.dumps`` as sluice wrote it, orjson;
* ablations of ``transform_records`` itself: whole, without validation (a stand-in that
  accepts what is shaped like a record), the builder alone, the reader with its guards.

Issue 16, second round: the batch builder (``records._Batches``: each chunk's complete
records parsed by one ``orjson.loads``, numbers as doubles), orjson and msgspec (when
installed) over the whole file, the validation gate (``sluice.datasets.gate``) against
fastjsonschema on the same records, fastjsonschema over batches of 1,000 records (one
call of an array schema, restarted after each invalid record), and the transform with
each of its two changes taken out (exact numbers through ``items()``; no gate). For JSON
Lines, ``json.loads`` (``Decimal`` numbers, as sluice reads a line) against orjson, per
line.

Every case runs once to warm up first. Each line reports its CPU time and the floor's
time divided by it (the share of the floor
the transform would reach if this part were all it did).
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import fastjsonschema
import ijson
import orjson
from benchlib import emit, machine, parse_args, print_table
from json_transform import SIZES_FULL, SIZES_QUICK, make_file

from sluice import records
from sluice.datasets import Dataset, load_registry

REPETITIONS = 5


def exact_as_doubles(items: list[Any]) -> list[Any]:
    """The records with their ``Decimal`` numbers as doubles (to write them as lines)."""
    return [
        {key: float(value) if isinstance(value, Decimal) else value for key, value in item.items()}
        if isinstance(item, dict)
        else item
        for item in items
    ]


class _AcceptShaped:
    """The dataset with validation replaced by a shape check (for the ablation)."""

    gate = None

    def __init__(self, dataset: Dataset) -> None:
        self._dataset = dataset

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)

    def is_valid(self, record: Any) -> bool:
        return type(record) is dict and len(record) == len(self._dataset.schema["required"])


def _validating(validate: Callable[[Any], Any], items: list[Any]) -> Callable[[], int]:
    def run() -> int:
        valid = 0
        for item in items:
            try:
                validate(item)
            except fastjsonschema.JsonSchemaValueException:
                continue
            valid += 1
        return valid

    return run


def _batched(validate: Callable[[Any], Any], items: list[Any]) -> Callable[[], int]:
    """fastjsonschema over 1,000 records a call; after an invalid one, on from the next."""

    def run() -> int:
        valid = start = 0
        while start < len(items):
            batch = items[start : start + 1000]
            try:
                validate(batch)
            except fastjsonschema.JsonSchemaValueException as exc:
                bad = int(str(exc.name).removeprefix("data[").split("]", 1)[0])
                valid, start = valid + bad, start + bad + 1
                continue
            valid, start = valid + len(batch), start + len(batch)
        return valid

    return run


def main() -> None:
    args = parse_args(__doc__ or "")
    size = SIZES_QUICK["1MB"] if args.quick else SIZES_FULL["10MB"]
    data = make_file(size).read_bytes()
    dataset = load_registry().for_key("retina/bench.json")
    assert dataset is not None
    yajl: Any = ijson.get_backend("yajl2_c")
    exact = list(yajl.items(io.BytesIO(data), "item"))
    doubles = list(yajl.items(io.BytesIO(data), "item", use_float=True))
    valid = [item for item in exact if dataset.is_valid(item)]
    projected = [dataset.project(item) for item in valid]
    schema = dict(dataset.schema)

    def _each(encode: Callable[[Any], bytes]) -> Callable[[], int]:
        # Each output is dropped, as the transform drops it once written: keeping 55,000
        # of them alive makes every allocation slower and measures the allocator instead.
        def run() -> int:
            written = 0
            for item in projected:
                written += len(encode(item))
            return written

        return run

    def floor() -> None:
        depth = 0
        for event, _ in yajl.basic_parse(io.BytesIO(data), buf_size=records.CHUNK_BYTES):
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1

    def reader() -> records._CheckedReader:
        return records._CheckedReader(
            io.BytesIO(data), records.DEFAULT_MAX_RECORD_BYTES, records._TokenGuard()
        )

    def event_builder() -> None:
        source = reader()
        replay = records._Replay(source.read(), source)
        for _ in records._event_records(replay, source, records.DEFAULT_MAX_DEPTH):
            pass

    def c_builder() -> None:
        for _ in records._array_records(reader(), records.DEFAULT_MAX_DEPTH):
            pass

    def batch_builder() -> None:
        for _ in records._array_records(reader(), records.DEFAULT_MAX_DEPTH, doubles=True):
            pass

    lines = [orjson.dumps(item) for item in exact_as_doubles(exact)]

    def lines_json() -> None:
        for line in lines:
            records._load_line(line)

    def lines_orjson() -> None:
        for line in lines:
            orjson.loads(line)

    def reader_and_guards() -> None:
        source = records._CheckedReader(io.BytesIO(data), None, records._TokenGuard())
        source.structure = records._Structure(records.DEFAULT_MAX_DEPTH)
        while source.read(records.CHUNK_BYTES):
            pass

    def transform(target: Any, fmt: records.RecordFormat = "array") -> Callable[[], None]:
        source = data if fmt == "array" else b"\n".join(lines)

        def run() -> None:
            records.transform_records(
                io.BytesIO(source), fmt, target, io.BytesIO(), lambda error: None
            )

        return run

    cases: dict[str, tuple[str, Callable[[], Any]]] = {
        "floor": ("basic_parse + a loop over the events (parse_only)", floor),
        "transform": ("transform_records (now)", transform(dataset)),
        "transform_no_validation": (
            "transform_records, validation replaced by a shape check",
            transform(_AcceptShaped(dataset)),
        ),
        "builder_events": ("event-by-event builder (before), reader and guard", event_builder),
        "transform_exact": (
            "transform_records, exact numbers (items()), with the gate",
            transform(dataclasses.replace(dataset, doubles_decide_alike=False)),
        ),
        "transform_no_gate": (
            "transform_records, doubles, fastjsonschema alone",
            transform(dataclasses.replace(dataset, gate=None)),
        ),
        "transform_before": (
            "transform_records as before: exact numbers, fastjsonschema alone",
            transform(dataclasses.replace(dataset, gate=None, doubles_decide_alike=False)),
        ),
        "builder_batches": (
            "orjson batch builder (now), reader, guard and structure",
            batch_builder,
        ),
        "builder_c": ("C items() builder (before), reader, guard and structure", c_builder),
        "reader_guards": ("reader, token guard and structure pre-scan only", reader_and_guards),
        "items_exact": (
            "ijson C items(), Decimal numbers",
            lambda: sum(1 for _ in yajl.items(io.BytesIO(data), "item")),
        ),
        "items_float": (
            "ijson C items(), use_float=True",
            lambda: sum(1 for _ in yajl.items(io.BytesIO(data), "item", use_float=True)),
        ),
        "fastjsonschema": (
            "fastjsonschema as compiled (now), exact numbers",
            _validating(dataset._fast_validate, exact),
        ),
        "fastjsonschema_plain": (
            "fastjsonschema detailed_exceptions=False, use_default=False",
            _validating(
                fastjsonschema.compile(schema, use_default=False, detailed_exceptions=False),
                exact,
            ),
        ),
        "fastjsonschema_doubles": (
            "fastjsonschema as compiled, doubles",
            _validating(dataset._fast_validate, doubles),
        ),
        "fastjsonschema_batched": (
            "fastjsonschema, 1,000 records a call (array schema), doubles",
            _batched(fastjsonschema.compile({"type": "array", "items": schema}), doubles),
        ),
        "gate": (
            "the gate (now), then fastjsonschema when it says no, doubles",
            lambda: sum(map(dataset.is_valid, doubles)),
        ),
        "orjson_loads": (
            "orjson.loads of the whole file (one document)",
            lambda: orjson.loads(data),
        ),
        "lines_transform": ("JSON Lines: transform_records (now)", transform(dataset, "lines")),
        "lines_transform_before": (
            "JSON Lines: transform_records, json.loads and fastjsonschema alone (before)",
            transform(dataclasses.replace(dataset, gate=None, doubles_decide_alike=False), "lines"),
        ),
        "lines_json_loads": ("JSON Lines: json.loads per line, Decimal (sluice)", lines_json),
        "lines_orjson": ("JSON Lines: orjson.loads per line", lines_orjson),
        "project": ("Dataset.project", lambda: sum(len(dataset.project(item)) for item in valid)),
        "json_dumps": ("json.dumps as sluice wrote (before)", _each(records._encode_exactly)),
        "orjson": ("orjson.dumps (now)", _each(orjson.dumps)),
    }
    try:
        import jsonschema_rs

        rust = jsonschema_rs.validator_for(schema, validate_formats=True)
        cases["jsonschema_rs_exact"] = (
            "jsonschema-rs is_valid, Decimal numbers",
            lambda: sum(map(rust.is_valid, exact)),
        )
        cases["jsonschema_rs_doubles"] = (
            "jsonschema-rs is_valid, doubles",
            lambda: sum(map(rust.is_valid, doubles)),
        )
    except ImportError:  # not a dependency of sluice: measured where installed
        pass
    try:
        import msgspec

        decoder = msgspec.json.Decoder()
        cases["msgspec_decode"] = (
            "msgspec.json.decode of the whole file (one document)",
            lambda: decoder.decode(data),
        )
        cases["lines_msgspec"] = (
            "JSON Lines: msgspec.json.decode per line",
            lambda: [decoder.decode(line) for line in lines],
        )
    except ImportError:  # not a dependency of sluice: measured where installed
        pass

    for _, run in cases.values():
        run()  # warm: imports, the first invalid record's jsonschema validator, caches
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(1 if args.quick else REPETITIONS):
        for name, (_, run) in cases.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    rows = [
        [name, what, f"{best[name] * 1000:.1f} ms", f"{best['floor'] / best[name]:.3f}"]
        for name, (what, _) in cases.items()
    ]
    print(f"{len(exact):,} records ({len(data):,} bytes); CPU time, min of the repetitions")
    print_table("Candidates", ["case", "what", "CPU", "floor / this"], rows)
    emit(
        {
            "bench": "json_candidates",
            "quick": args.quick,
            "machine": machine(),
            "records": len(exact),
            "cpu_seconds": {name: round(value, 4) for name, value in best.items()},
            "floor_over": {name: round(best["floor"] / value, 3) for name, value in best.items()},
        }
    )


if __name__ == "__main__":
    main()
