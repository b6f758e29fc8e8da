"""Datasets: which JSON Schema and projection apply to a data file, chosen by its key.

A dataset is a key prefix (e.g. ``retina/``), a schema file (JSON Schema Draft 2020-12,
shipped in this directory as package data) and a projection (the fields written to
PROCESSED). Which datasets an environment has is configuration, not code: the transform
function reads them from its ``DATASETS`` environment variable (a JSON object, set from
the environment's ``datasets`` Terraform variable in ``env/<env>.tfvars``) and
:func:`parse_registry` validates it at cold start. Without the variable the function uses
``datasets.json`` here, the default configuration in the same shape (defined once, here).
Adding a dataset is a schema file in this directory and an entry in the tfvars, no Python.

A file at the bucket root (a key without ``/``) has no prefix to choose by, so the
configuration may name one dataset (``"root": true``) that takes it. A file under a prefix
no dataset owns is still rejected (``unknown_dataset``) rather than given a default: a
folder states an intent, and a mistyped one (``retnia/``) must not be validated against
some other dataset's schema. Prefixes may not overlap (one starting with another), so a
key belongs to at most one dataset and the owner never depends on matching order.

Each schema has two validators, both checking ``format`` (e.g. ``date``).
``fastjsonschema``'s, compiled at cold start, is the fast yes/no gate every record goes
through. ``jsonschema``'s Draft 2020-12 validator (with format checking switched on) runs
only for records that fail, to list every violation; it is built on the first invalid
record, because importing ``jsonschema`` alone costs 60-140 ms of cold start
(docs/benchmarks.md) and most files have no invalid record. For the same reason the
schemas are checked against the Draft 2020-12 metaschema by :meth:`Dataset.check_schema`
in the unit tests, not at cold start; ``fastjsonschema`` still refuses a malformed schema
at cold start. Violation messages name the rule and the schema's expectation but never the
record's value: records are personal data. Nor do paths carry a name the schema does not
define: a property the schema does not know may itself be personal data (a name pasted
into a key), so it is shown as ``[#i]``, the object's i-th property (0-based), and an
``additionalProperties`` violation says "an unexpected property" and gives that index.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from importlib import resources
from itertools import islice
from typing import TYPE_CHECKING, Any

import fastjsonschema

from sluice.config import ConfigError
from sluice.datasets.gate import Gate, compile_gate, doubles_decide_alike

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

DEFAULT_CONFIG_FILE = "datasets.json"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_KEY_CHARS_IN_PATH = 100
NOT_NUMBERS = ("string", "boolean", "null")
"""Types a projected field may have for its record to be written without the care a
double needs (``sluice.records._encode_doubles``)."""


class DatasetConfigError(ValueError):
    """A datasets configuration or one of its schemas is inconsistent."""


@dataclass(frozen=True)
class Violation:
    """One way a record breaks its schema: where (a JSON path) and why."""

    path: str
    message: str


@dataclass(frozen=True)
class UnexpectedProperty:
    """A path part standing for a property the schema does not define: its index only."""

    index: int | None


PathPart = str | int | UnexpectedProperty


def json_path(parts: Iterable[PathPart]) -> str:
    """``$.a[0]["odd key"][#2]`` for the path parts of an instance location."""
    out = ["$"]
    for part in parts:
        if isinstance(part, UnexpectedProperty):
            out.append(f"[#{'?' if part.index is None else part.index}]")
        elif isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part[:_MAX_KEY_CHARS_IN_PATH], ensure_ascii=False)}]")
    return "".join(out)


@lru_cache(maxsize=4096)
def _cached_json_path(parts: tuple[PathPart, ...]) -> str:
    """Invalid records repeat the same few paths: build each once."""
    return json_path(parts)


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


Found = tuple[list[PathPart], str]
"""Where (path parts, names not yet checked against the schema) and why."""


def _describe(
    rule: str, expected: Any, instance: Any, parts: list[PathPart], schema: Any
) -> Iterator[Found]:
    """Violations for one failed rule, phrased without the offending value (lazily: an
    object with twenty thousand unexpected properties costs only what is listed)."""
    if rule == "required" and isinstance(instance, Mapping):
        for name in expected:
            if name not in instance:
                yield [*parts, name], "required property is missing"
        return
    if rule == "additionalProperties" and isinstance(instance, Mapping):
        allowed = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        for index, name in enumerate(instance):
            if name not in allowed:
                yield parts, f"an unexpected property (#{index}) is not allowed by the schema"
        return
    yield parts, _message(rule, expected, instance)


def _message(rule: str, expected: Any, instance: Any) -> str:
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
    return message


def _schema_names(schema: Any) -> frozenset[str]:
    """Every property name the schema defines or requires, at any depth."""
    names: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            properties = node.get("properties")
            if isinstance(properties, Mapping):
                names.update(str(name) for name in properties)
            required = node.get("required")
            if isinstance(required, list):
                names.update(str(name) for name in required)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return frozenset(names)


def _redacted(
    record: Any, parts: Sequence[PathPart], known: frozenset[str]
) -> tuple[PathPart, ...]:
    """``parts`` with every name the schema does not know replaced by its index."""
    if all(not isinstance(part, str) or part in known for part in parts):
        return tuple(parts)
    out: list[PathPart] = []
    node = record
    for part in parts:
        if isinstance(part, str) and part not in known:
            index = list(node).index(part) if isinstance(node, Mapping) and part in node else None
            out.append(UnexpectedProperty(index))
        else:
            out.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(out)


def _fast_path_parts(name: str) -> list[PathPart]:
    """``data.a[0]`` (fastjsonschema's name of a location) as path parts."""
    parts: list[PathPart] = []
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
    gate: Gate | None = None
    """True only for records fastjsonschema accepts (``sluice.datasets.gate``), if any."""
    doubles_decide_alike: bool = False
    """Whether records may be read with doubles for numbers (``sluice.datasets.gate``)."""
    projects_numbers: bool = True
    """Whether a valid record's projection may hold a number (one the schema does not
    type as a string, a boolean or null)."""

    @classmethod
    def compile(
        cls, name: str, prefix: str, schema: Mapping[str, Any], projection: Sequence[str]
    ) -> Dataset:
        properties = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        unknown = [field for field in projection if field not in properties]
        if unknown:
            raise DatasetConfigError(
                f"dataset {name}: projection names fields that are not in the schema's"
                f" properties: {unknown}"
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
            gate=compile_gate(schema, fast_validate),
            doubles_decide_alike=doubles_decide_alike(schema),
            projects_numbers=any(
                not isinstance(properties[field], Mapping)
                or properties[field].get("type") not in NOT_NUMBERS
                for field in projection
            ),
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
        """fastjsonschema's verdict; the gate answers the common valid record for it."""
        gate = self.gate
        if gate is not None and gate(record):
            return True
        try:
            self._fast_validate(record)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    @cached_property
    def _names(self) -> frozenset[str]:
        return _schema_names(self.schema)

    def _violation(self, record: Any, found: Found) -> Violation:
        parts, message = found
        return Violation(_cached_json_path(_redacted(record, parts, self._names)), message)

    def violations(self, record: Any, limit: int | None = None) -> list[Violation]:
        """The violations of an invalid record, sorted by path (jsonschema: thorough, slow);
        with ``limit``, the first ``limit`` found (what a record lists is bounded)."""
        every = (
            found
            for error in self._validator.iter_errors(record)
            for found in _describe(
                str(error.validator),
                error.validator_value,
                error.instance,
                list(error.absolute_path),
                error.schema,
            )
        )
        # jsonschema reports each missing required property as its own error, and each is
        # described with every missing one: count distinct violations only.
        seen: set[tuple[tuple[PathPart, ...], str]] = set()
        listed: list[Violation] = []
        for parts, message in every:
            key = (tuple(parts), message)
            if key in seen:
                continue
            seen.add(key)
            listed.append(self._violation(record, (parts, message)))
            if limit is not None and len(listed) >= limit:
                break
        return sorted(listed, key=lambda v: (v.path, v.message)) or self.first_violation(
            record, limit
        )

    def first_violation(self, record: Any, limit: int | None = None) -> list[Violation]:
        """The first rule fastjsonschema finds broken: about 10x cheaper than all of them."""
        try:
            self._fast_validate(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            found = _describe(
                str(exc.rule),
                exc.rule_definition,
                exc.value,
                _fast_path_parts(str(exc.name)),
                exc.definition,
            )
            return [self._violation(record, item) for item in islice(found, limit)]
        return []

    def count_first_violation(self, record: Any, limit: int | None = None) -> int:
        """How many violations :meth:`first_violation` lists, without phrasing them (what
        a report that is already full needs)."""
        try:
            self._fast_validate(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            found = _describe(str(exc.rule), exc.rule_definition, exc.value, [], exc.definition)
            return sum(1 for _ in islice(found, limit))
        return 0

    def project(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {field: record[field] for field in self.projection if field in record}


@dataclass(frozen=True)
class Registry:
    """The datasets of an environment, and the one (if any) that takes root-level files."""

    datasets: tuple[Dataset, ...]
    root: Dataset | None = None

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(sorted(dataset.prefix for dataset in self.datasets))

    def for_key(self, key: str) -> Dataset | None:
        """The dataset whose prefix ``key`` starts with; the root dataset for a key without
        ``/``; otherwise None. Prefixes never overlap, so at most one matches."""
        for dataset in self.datasets:
            if key.startswith(dataset.prefix):
                return dataset
        return self.root if "/" not in key else None

    def placement(self) -> str:
        """Where data files must be, for an ``unknown_dataset`` rejection."""
        if not self.datasets:
            return "no dataset is configured"
        places = f"under one of: {', '.join(self.prefixes)}"
        return f"{places}, or at the bucket root" if self.root is not None else places


ENTRY_FIELDS = frozenset({"prefix", "schema", "projection", "root"})
REQUIRED_ENTRY_FIELDS = ("prefix", "schema", "projection")
SCHEMA_SUFFIX = ".schema.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _read_json(name: str) -> Any:
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))


def shipped_schemas() -> tuple[str, ...]:
    """The schema files this package ships (the only ones a configuration may name)."""
    return tuple(
        sorted(
            entry.name
            for entry in resources.files(__name__).iterdir()
            if entry.name.endswith(SCHEMA_SUFFIX)
        )
    )


def _check_entry(name: Any, entry: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DatasetConfigError(
            f"dataset name {name!r} must be 1-64 letters, digits, '_', '.' or '-'"
            " (starting with a letter or digit)"
        )
    if not isinstance(entry, Mapping):
        raise DatasetConfigError(
            f"dataset {name}: must be an object with prefix, schema, projection and"
            f" optionally root, got {_json_type(entry)}"
        )
    unknown = sorted(set(entry) - ENTRY_FIELDS)
    if unknown:
        raise DatasetConfigError(
            f"dataset {name}: unknown field(s) {unknown}; allowed: {sorted(ENTRY_FIELDS)}"
        )
    missing = [field for field in REQUIRED_ENTRY_FIELDS if field not in entry]
    if missing:
        raise DatasetConfigError(f"dataset {name}: missing field(s) {missing}")
    prefix = entry["prefix"]
    if (
        not isinstance(prefix, str)
        or not prefix.endswith("/")
        or prefix.startswith("/")
        or "//" in prefix
    ):
        raise DatasetConfigError(
            f"dataset {name}: prefix {prefix!r} must be a key prefix like 'retina/'"
            " (ending in '/', not starting with '/', no empty folder)"
        )
    projection = entry["projection"]
    if (
        not isinstance(projection, list)
        or not projection
        or not all(isinstance(field, str) for field in projection)
        or len(set(projection)) != len(projection)
    ):
        raise DatasetConfigError(
            f"dataset {name}: projection must be a non-empty list of distinct field names"
        )
    if entry.get("root") not in (None, True, False):
        raise DatasetConfigError(f"dataset {name}: root must be true or false")


def _check_prefixes(entries: Mapping[str, Mapping[str, Any]]) -> None:
    owners = sorted((entry["prefix"], name) for name, entry in entries.items())
    for index, (prefix, name) in enumerate(owners):
        for other_prefix, other in owners[index + 1 :]:
            if other_prefix.startswith(prefix):
                raise DatasetConfigError(
                    f"prefixes overlap: {prefix!r} (dataset {name}) contains"
                    f" {other_prefix!r} (dataset {other}); a key must belong to one dataset"
                )


def _schema(name: str, file: Any) -> Mapping[str, Any]:
    shipped = shipped_schemas()
    if file not in shipped:
        raise DatasetConfigError(
            f"dataset {name}: unknown schema file {file!r}; the package ships:"
            f" {', '.join(shipped) or 'none'}"
        )
    schema = _read_json(file)
    if not isinstance(schema, Mapping):
        raise DatasetConfigError(f"dataset {name}: schema {file} is not a JSON object")
    return schema


def build_registry(config: Any) -> Registry:
    """Validate a datasets configuration (name -> entry) and compile its schemas.

    Every problem is a :class:`DatasetConfigError` that names the dataset and what to fix.
    """
    if not isinstance(config, Mapping):
        raise DatasetConfigError(
            "must be a JSON object of dataset name -> {prefix, schema, projection, root},"
            f" got {_json_type(config)}"
        )
    for name, entry in config.items():
        _check_entry(name, entry)
    _check_prefixes(config)
    roots = sorted(name for name, entry in config.items() if entry.get("root"))
    if len(roots) > 1:
        raise DatasetConfigError(
            f"at most one dataset may take files at the bucket root (root: true), got {roots}"
        )
    datasets = [
        Dataset.compile(name, entry["prefix"], _schema(name, entry["schema"]), entry["projection"])
        for name, entry in sorted(config.items())
    ]
    root = next((dataset for dataset in datasets if dataset.name in roots), None)
    return Registry(tuple(datasets), root)


def parse_registry(text: str) -> Registry:
    """:func:`build_registry` of a JSON text (an environment variable's value)."""
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise DatasetConfigError(f"is not valid JSON: {exc}") from None
    return build_registry(config)


@cache
def load_registry() -> Registry:
    """The default configuration, ``datasets.json`` (compiled once per process)."""
    return build_registry(_read_json(DEFAULT_CONFIG_FILE))


def env_datasets(env: Mapping[str, str], name: str) -> Registry:
    """The datasets configured in environment variable ``name``, validated now so a bad
    configuration fails the function's init with what to fix; unset: the default."""
    raw = env.get(name, "").strip()
    if not raw:
        return load_registry()
    try:
        return parse_registry(raw)
    except DatasetConfigError as problem:
        raise ConfigError(f"environment variable {name}: {problem}") from None
