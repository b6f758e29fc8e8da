"""A fast yes for the common record, and when numbers may be read as doubles (issue 16).

fastjsonschema decides whether a record is valid; its generated code costs about 2.3 us a
record (a set of the keys, a removal per property, each type tested twice, a dictionary
lookup per pattern), more than parsing the record. For schemas of the shape data files
have (one object of named scalar properties) :func:`compile_gate` writes a predicate that
checks the same rules in fewer steps, with fastjsonschema's own compiled patterns, at
about half the cost. It only ever says *valid* when fastjsonschema would: every check is
as strict as fastjsonschema's or stricter (``type(v) is str`` where it asks
``isinstance``, integers only where it also takes ``2.0``), so a False sends the record
to fastjsonschema, which decides. Any keyword outside the few it knows, or one whose
meaning it would have to guess (``default`` makes fastjsonschema write into the record,
``$ref`` needs resolving), and there is no gate: every record goes to fastjsonschema.

:func:`doubles_decide_alike` says whether a schema decides a record the same when its
numbers are doubles instead of exact ``Decimal`` values, for numbers of at most 15
significant digits and no exponent of -100 or less (what ``sluice.records`` hands over as
doubles; one too large for a double is refused by orjson and read exactly). Two such
numbers are distinct doubles, in the same order, none of them rounded to zero, so
comparisons with bounds of at most 15 significant digits (and between 1e-199 and 1e199,
or zero) come out the same; an integer
type would not (fastjsonschema takes ``2.0`` as an integer but not ``Decimal("2.0")``),
nor would ``multipleOf`` (float division) or a fraction in ``enum``/``const`` (``0.1`` as a
double is not ``Decimal("0.1")``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

Gate = Callable[[Any], bool]

ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "deprecated"}
)
"""Keywords that say something about the data without constraining it."""
_OBJECT_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties"})
_STRING_KEYWORDS = frozenset({"type", "minLength", "maxLength", "pattern", "format", "enum"})
_NUMBER_KEYWORDS = frozenset(
    {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"}
)
_OTHER_KEYWORDS = frozenset({"type", "enum"})
_KEYWORDS_BY_TYPE = {
    "string": _STRING_KEYWORDS,
    "number": _NUMBER_KEYWORDS,
    "integer": _NUMBER_KEYWORDS,
    "boolean": _OTHER_KEYWORDS,
    "null": _OTHER_KEYWORDS,
}
_LOWER = {"minimum": "<=", "exclusiveMinimum": "<", "minLength": "<="}
_UPPER = {"maximum": "<=", "exclusiveMaximum": "<", "maxLength": "<="}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_LENGTHS = ("minLength", "maxLength")
_TYPE_FAILS = {
    "string": "type(v) is not str",
    "number": "type(v) not in NUMBER_TYPES",
    "integer": "type(v) is not int",
    "boolean": "type(v) is not bool",
    "null": "v is not None",
}
EXACT_DIGITS = 15
"""Significant digits a double keeps for every decimal number (C's ``DBL_DIG``)."""


class _NoGateError(Exception):
    """The schema uses something the gate does not check as fastjsonschema does."""


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _property_fails(
    name: str, schema: Any, patterns: Mapping[str, Any], names: dict[str, Any]
) -> list[str]:
    """Conditions (Python expressions on ``v``), one of which holds whenever
    fastjsonschema would refuse ``v`` against ``schema``. Objects they use (a pattern's
    bound ``search``, an enum's list) are added to ``names`` for the gate's namespace."""
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    if not isinstance(kind, str) or kind not in _KEYWORDS_BY_TYPE:
        raise _NoGateError(f"{name}: a property needs one scalar type")
    unknown = set(schema) - _KEYWORDS_BY_TYPE[kind] - ANNOTATIONS
    if unknown:
        raise _NoGateError(f"{name}: {sorted(unknown)}")

    def named(value: Any) -> str:
        key = f"N{len(names)}"
        names[key] = value
        return key

    fails = [_TYPE_FAILS[kind]]
    if kind == "string":
        lengths = {keyword: schema[keyword] for keyword in _LENGTHS if keyword in schema}
        if not all(_is_number(length) for length in lengths.values()):
            raise _NoGateError(f"{name}: a length")
        if lengths:
            fails.append(_outside("len(v)", lengths))
        if "pattern" in schema:
            # fastjsonschema's own compiled pattern (it rewrites "$"), searched as it does.
            compiled = patterns.get(schema["pattern"])
            if compiled is None:
                raise _NoGateError(f"{name}: pattern")
            fails.append(f"not {named(compiled.search)}(v)")
        if "format" in schema:
            compiled = patterns.get(f"{schema['format']}_re_pattern")
            if compiled is None:  # a format fastjsonschema checks another way, or not at all
                raise _NoGateError(f"{name}: format")
            fails.append(f"not {named(compiled.match)}(v)")
    elif kind in ("number", "integer"):
        bounds = {keyword: schema[keyword] for keyword in _BOUNDS if keyword in schema}
        if not all(_is_number(b) and b == b and abs(b) != float("inf") for b in bounds.values()):
            raise _NoGateError(f"{name}: a bound")
        if bounds:
            fails.append(_outside("v", bounds))
    if "enum" in schema:
        if not isinstance(schema["enum"], list):
            raise _NoGateError(f"{name}: enum")
        fails.append(f"v not in {named(schema['enum'])}")  # fastjsonschema's test, same list
    return fails


def _outside(value: str, limits: Mapping[str, Any]) -> str:
    """A condition that holds when ``value`` breaks one of ``limits`` (keyword: number),
    as one chained comparison (``not 0 < v <= 1000``: one evaluation of ``value``). Written
    negated, a comparison with NaN (which no parser here makes) also counts as broken."""
    lows = [f"{limits[k]!r} {op}" for k, op in _LOWER.items() if k in limits]
    highs = [f"{op} {limits[k]!r}" for k, op in _UPPER.items() if k in limits]
    if len(lows) <= 1 and len(highs) <= 1:
        return f"not {' '.join([*lows, value, *highs])}"
    return " or ".join(
        [*(f"not {low} {value}" for low in lows), *(f"not {value} {high}" for high in highs)]
    )


def compile_gate(schema: Mapping[str, Any], fast_validate: Any) -> Gate | None:
    """A predicate that is True only for records ``fast_validate`` (fastjsonschema's
    validator of ``schema``) accepts, or None when the schema is not one it can check."""
    try:
        return _compile(schema, fast_validate)
    except _NoGateError:
        return None


def _compile(schema: Mapping[str, Any], fast_validate: Any) -> Gate:
    if schema.get("type") != "object" or set(schema) - _OBJECT_KEYWORDS - ANNOTATIONS:
        raise _NoGateError("the schema is not one object of named properties")
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    additional = schema.get("additionalProperties", True)
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        raise _NoGateError("properties or required")
    if additional not in (True, False) or not all(isinstance(n, str) for n in required):
        raise _NoGateError("additionalProperties or required")
    patterns = getattr(fast_validate, "__globals__", {}).get("REGEX_PATTERNS", {})
    lines = [
        "def gate(data):",
        "    if type(data) is not dict:",
        "        return False",
        "    keys = data.keys()",
    ]
    if required:
        lines += ["    if not REQUIRED <= keys:", "        return False"]
    if additional is False:
        lines += ["    if not keys <= ALLOWED:", "        return False"]
    names: dict[str, Any] = {
        "NUMBER_TYPES": frozenset({int, float, Decimal}),
        "REQUIRED": frozenset(required),
        "ALLOWED": frozenset(properties),
    }
    for name, subschema in properties.items():
        fails = " or ".join(_property_fails(name, subschema, patterns, names))
        if name in required:
            lines += [f"    v = data[{name!r}]", f"    if {fails}:", "        return False"]
        else:
            lines += [
                f"    if {name!r} in keys:",
                f"        v = data[{name!r}]",
                f"        if {fails}:",
                "            return False",
            ]
    lines.append("    return True")
    source = "\n".join(lines)
    exec(compile(source, f"<gate of {schema.get('$id', 'a schema')}>", "exec"), names)  # noqa: S102
    gate: Gate = names["gate"]
    return gate


def _short(number: Any) -> bool:
    """Whether a schema's number has at most ``EXACT_DIGITS`` significant digits and is
    far from a double's limits (so every double near it is one decimal number)."""
    if type(number) not in (int, float) or number != number or abs(number) == float("inf"):
        return False
    exact = Decimal(number).normalize()
    return len(exact.as_tuple().digits) <= EXACT_DIGITS and abs(exact.adjusted()) < 200


def _holds_fraction(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return any(_holds_fraction(item) for item in value)
    if isinstance(value, Mapping):
        return any(_holds_fraction(item) for item in value.values())
    return False


def doubles_decide_alike(schema: Any) -> bool:
    """Whether every rule of ``schema`` decides a number of at most ``EXACT_DIGITS``
    significant digits (and no exponent of -100 or less) the same as a double or as a
    ``Decimal`` (see the module docstring). Conservative: a property named like a keyword
    (``"minimum": {...}``) also counts as that keyword."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, Mapping):
            continue
        kinds = node.get("type")
        if kinds == "integer" or (isinstance(kinds, list) and "integer" in kinds):
            return False
        if "multipleOf" in node:
            return False
        if any(keyword in node and not _short(node[keyword]) for keyword in _BOUNDS):
            return False
        if any(keyword in node and _holds_fraction(node[keyword]) for keyword in ("enum", "const")):
            return False
        stack.extend(node.values())
    return True
