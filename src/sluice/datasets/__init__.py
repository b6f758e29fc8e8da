"""Datasets: a JSON Schema and a projection per key prefix, shipped with the package.

``datasets.json`` maps a dataset name to its key prefix (e.g. ``retina/``), its schema file
(JSON Schema Draft 2020-12, in this directory) and its projection (the fields written to
PROCESSED). Adding a dataset is adding a schema file and an entry there.

Each schema has two validators. ``fastjsonschema``'s, compiled at cold start, is the fast
yes/no gate every record goes through. ``jsonschema``'s Draft 2020-12 validator (with format
checking on) runs only for records that fail, to list every violation; it is built on the
first invalid record, because importing ``jsonschema`` alone costs 60-140 ms of cold start
(docs/benchmarks.md) and most files have no invalid record. For the same reason the
schemas are checked against the Draft 2020-12 metaschema by :meth:`Dataset.check_schema`
in the unit tests, not at cold start; ``fastjsonschema`` still refuses a malformed schema
at cold start. Violation messages name the rule and the schema's expectation but never the
record's value: records are personal data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any

import fastjsonschema

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

MAPPING_FILE = "datasets.json"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_KEY_CHARS_IN_PATH = 100


class DatasetConfigError(ValueError):
    """The shipped dataset mapping or one of its schemas is inconsistent."""


@dataclass(frozen=True)
class Violation:
    """One way a record breaks its schema: where (a JSON path) and why."""

    path: str
    message: str


def json_path(parts: Iterable[str | int]) -> str:
    """``$.a[0]["odd key"]`` for the path parts of an instance location."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part[:_MAX_KEY_CHARS_IN_PATH], ensure_ascii=False)}]")
    return "".join(out)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return "number"


def _expected(value: Any) -> str:
    return " or ".join(value) if isinstance(value, list) else str(value)


_BOUNDS = {
    "minimum": ">=",
    "maximum": "<=",
    "exclusiveMinimum": ">",
    "exclusiveMaximum": "<",
}
_FORMAT_HINTS = {"date": " (YYYY-MM-DD)", "date-time": " (RFC 3339)"}


def _describe(
    rule: str, expected: Any, instance: Any, parts: list[str | int], schema: Any
) -> list[Violation]:
    """Violations for one failed rule, phrased without the offending value."""
    path = json_path(parts)
    if rule == "required" and isinstance(instance, Mapping):
        return [
            Violation(json_path([*parts, name]), "required property is missing")
            for name in expected
            if name not in instance
        ]
    if rule == "additionalProperties" and isinstance(instance, Mapping):
        allowed = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        return [
            Violation(json_path([*parts, str(name)]), "property is not allowed by the schema")
            for name in instance
            if name not in allowed
        ]
    if rule == "type":
        message = f"must be of type {_expected(expected)}, got {_json_type(instance)}"
    elif rule in _BOUNDS:
        message = f"must be {_BOUNDS[rule]} {expected}"
    elif rule == "enum":
        message = "must be one of: " + ", ".join(str(item) for item in expected)
    elif rule == "const":
        message = f"must be {json.dumps(expected)}"
    elif rule == "pattern":
        message = f"must match the pattern {expected}"
    elif rule == "format":
        message = f"must be a valid {expected}{_FORMAT_HINTS.get(str(expected), '')}"
    elif rule == "minLength":
        message = f"must be at least {expected} character{'s' if expected != 1 else ''} long"
    elif rule == "maxLength":
        message = f"must be at most {expected} characters long"
    elif rule == "multipleOf":
        message = f"must be a multiple of {expected}"
    else:
        message = f"breaks the schema's '{rule}' rule"
    return [Violation(path, message)]


def _fast_path_parts(name: str) -> list[str | int]:
    """``data.a[0]`` (fastjsonschema's name of a location) as path parts."""
    parts: list[str | int] = []
    for piece in re.findall(r"\.([^.\[]+)|\[(\d+)\]", name.removeprefix("data")):
        parts.append(piece[0] if piece[0] else int(piece[1]))
    return parts


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    prefix: str
    projection: tuple[str, ...]
    schema: Mapping[str, Any]
    _fast_validate: Any

    @classmethod
    def compile(
        cls, name: str, prefix: str, schema: Mapping[str, Any], projection: Sequence[str]
    ) -> Dataset:
        properties = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        unknown = [field for field in projection if field not in properties]
        if unknown:
            raise DatasetConfigError(
                f"dataset {name}: projection names fields the schema lacks: {unknown}"
            )
        try:
            fast_validate = fastjsonschema.compile(dict(schema))
        except Exception as exc:
            raise DatasetConfigError(f"dataset {name}: invalid schema: {exc}") from exc
        return cls(
            name=name,
            prefix=prefix,
            projection=tuple(projection),
            schema=schema,
            _fast_validate=fast_validate,
        )

    def check_schema(self) -> None:
        """Raise :class:`DatasetConfigError` unless the schema is valid Draft 2020-12."""
        from jsonschema import Draft202012Validator

        try:
            Draft202012Validator.check_schema(self.schema)
        except Exception as exc:
            raise DatasetConfigError(f"dataset {self.name}: invalid schema: {exc}") from exc

    @cached_property
    def _validator(self) -> Draft202012Validator:
        # Built on the first invalid record, not at cold start (see the module docstring).
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self.schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def is_valid(self, record: Any) -> bool:
        try:
            self._fast_validate(record)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def violations(self, record: Any) -> list[Violation]:
        """Every violation of an invalid record, sorted by path (jsonschema: thorough, slow)."""
        found: list[Violation] = []
        for error in self._validator.iter_errors(record):
            found.extend(
                _describe(
                    str(error.validator),
                    error.validator_value,
                    error.instance,
                    list(error.absolute_path),
                    error.schema,
                )
            )
        return sorted(set(found), key=lambda v: (v.path, v.message)) or self.first_violation(record)

    def first_violation(self, record: Any) -> list[Violation]:
        """The first violation fastjsonschema finds: about 10x cheaper than all of them."""
        try:
            self._fast_validate(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            return _describe(
                str(exc.rule),
                exc.rule_definition,
                exc.value,
                _fast_path_parts(str(exc.name)),
                exc.definition,
            )
        return []

    def project(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {field: record[field] for field in self.projection if field in record}


@dataclass(frozen=True)
class Registry:
    datasets: tuple[Dataset, ...]

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(sorted(dataset.prefix for dataset in self.datasets))

    def for_key(self, key: str) -> Dataset | None:
        """The dataset whose prefix is the longest one ``key`` starts with."""
        matches = [d for d in self.datasets if key.startswith(d.prefix)]
        return max(matches, key=lambda d: len(d.prefix)) if matches else None


def _read_json(name: str) -> Any:
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))


@cache
def load_registry() -> Registry:
    """Load and compile every shipped dataset (once per process)."""
    mapping = _read_json(MAPPING_FILE)
    datasets = []
    seen_prefixes: set[str] = set()
    for name, entry in sorted(mapping.items()):
        prefix = entry["prefix"]
        if not prefix.endswith("/") or prefix in seen_prefixes:
            raise DatasetConfigError(f"dataset {name}: prefix {prefix!r} must be unique, end in /")
        seen_prefixes.add(prefix)
        datasets.append(
            Dataset.compile(name, prefix, _read_json(entry["schema"]), entry["projection"])
        )
    return Registry(tuple(datasets))
