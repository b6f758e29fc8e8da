"""Streaming validation and projection of JSON data files (pure: bytes in, bytes out).

Two input formats, each written back in the same format:

* ``array``: one JSON array of records. The file is one document, so anything that makes
  it unreadable as a whole (not UTF-8, malformed JSON, a top-level value that is not an
  array, nesting deeper than ``max_depth``, a single record over ``max_record_bytes``)
  rejects the whole file with the position where it went wrong.
* ``lines``: JSON Lines (``.jsonl``/``.ndjson``). The file is record-oriented, so a line
  that is not JSON, too deep or too long is one invalid record (with its line number);
  only bytes that are not UTF-8 reject the whole file.

Memory stays flat whatever the file size: the input is read in ``CHUNK_BYTES`` pieces,
records are built in C a chunk at a time, by orjson (:class:`_Batches`) or by ijson's C
``items()`` (whose path prefixes grow with the square of the nesting depth, so
:class:`_Structure` stops yajl before any bracket deeper than ``max_depth``: a 40 KB file
of nested brackets would otherwise take gigabytes), and output goes to the caller's writer
as it is made, written by orjson (``_encode``).

Valid records (by the dataset's schema) are projected and written out; the violations of
invalid records go to ``on_error`` (the caller streams the report; bounded, see below) and
the first ``max_errors`` are kept for the receipt. A UTF-8 byte order mark is accepted and
skipped (``RecordsResult.bom_skipped``). Numbers with a fraction or exponent are parsed as
``Decimal`` so that huge values (``1e400``) are validated like any other and, if a schema
lets one through, the record is reported as out of range instead of writing invalid JSON.
Where a double decides exactly as that ``Decimal`` would (the dataset's schema has no rule
a double changes, ``Dataset.doubles_decide_alike``, and the number has at most 15
significant digits and no exponent of -100 or less, which the token guard sees) it is read
as a double by orjson, about twice as fast: the records, verdicts, output bytes, messages
and positions are the same (docs/decisions.md, decision 38; ``tests/unit/test_records_doubles.py``).

Poison tokens never reach a parser that cannot take them. ijson's C backend (yajl2_c)
converts every number token in C: an integer of more than 4300 digits (Python's
``sys.get_int_max_str_digits``) makes the conversion raise inside a yajl callback, the
exception is left pending while yajl asks the reader for more bytes, and the interpreter
dies (``SystemError``, or a segmentation fault with a Python-level reader such as ours); an
exponent of more than 18 digits makes its ``Decimal`` conversion raise ``InvalidOperation``.
A lone surrogate escape (``"\\ud800"``) is silently rewritten as ``?`` by yajl2_c, or, for a
low surrogate, raises ``UnicodeDecodeError``. So before a chunk reaches the parser a
:class:`_TokenGuard` finds, outside strings, every number longer than ``MAX_NUMBER_CHARS``
or with an exponent longer than ``MAX_EXPONENT_DIGITS`` digits (``number_too_long``), and
every ``\\u`` escape that is half of a surrogate pair (``lone_surrogate``), exactly: it
tracks whether each chunk ends inside a string and keeps the last few bytes as context, so
digits inside strings are never mistaken for numbers and a token split across chunks is
still seen whole. Its fast path is a few C-level passes over each chunk (2-3% of the
time the chunk takes to parse); only chunks holding a run of 19 digits or a ``\\ud``
escape are looked at token by token. JSON Lines get the same two checks per line, with
the same codes: ``json.loads`` hooks see each number token before it is converted, and a
line holding a ``\\ud`` escape has its strings checked after decoding.

Errors are bounded whatever the input: a record lists at most ``max_record_errors``
problems (then ``too_many_errors``), ``on_error`` receives the first ``max_report_errors``
errors in full and then one ``report_truncated`` summary with the count of every code, and
the receipt keeps the first ``max_errors``. One million ``{}`` records, or a record with
twenty thousand unexpected properties, therefore make a report of a few megabytes at most.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import accumulate
from typing import Any, Literal, Protocol

import ijson
import orjson

from sluice.datasets import Dataset
from sluice.datasets.gate import EXACT_DIGITS
from sluice.file_formats import RecordFormat
from sluice.units import MIB

try:
    _ijson: Any = ijson.get_backend("yajl2_c")
except ImportError:  # pragma: no cover - the pure-Python backend is slower but equivalent
    _ijson = ijson

ErrorSink = Callable[[dict[str, Any]], None]
Problem = tuple[str, str, str]
"""(JSON path, error code, message) for one thing wrong with a record."""

CHUNK_BYTES = 64 * 1024
FLUSH_BYTES = 256 * 1024
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_RECORD_BYTES = MIB
DEFAULT_MAX_ERRORS = 1000
DEFAULT_DETAILED_RECORDS = 10_000
DEFAULT_MAX_RECORD_ERRORS = 20
DEFAULT_MAX_REPORT_ERRORS = 10_000
MAX_NUMBER_CHARS = 1000
"""Longest number token accepted: far more than any measurement needs (a double takes 24
characters), far less than the 4300 digits Python refuses to convert, and cheap to
convert."""
MAX_PROPERTY_NAME_CHARS = 1024
"""Longest property name accepted: a schema's names are short; a longer one is a mistake or
an attack (a megabyte key costs hashing and copying at every step)."""
MAX_EXPONENT_DIGITS = 18
"""Longest exponent accepted: ``Decimal`` refuses exponents beyond 18 digits."""
UTF8_BOM = codecs.BOM_UTF8


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class FilePosition:
    """Where in the file: 0-based byte offset, 1-based line and (byte) column."""

    byte: int
    line: int
    column: int

    def __str__(self) -> str:
        return f"byte {self.byte} (line {self.line}, column {self.column})"


class FileRejectedError(Exception):
    """The file cannot be read as a whole; nothing from it may be kept."""

    def __init__(self, code: str, message: str, position: FilePosition | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.position = position

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.position is not None:
            error.update(
                byte=self.position.byte, line=self.position.line, column=self.position.column
            )
        return error


class OutOfTimeError(Exception):
    """The caller's clock said stop; ``bytes_read`` tells how far the file got."""

    def __init__(self, bytes_read: int) -> None:
        super().__init__(f"stopped for time after {bytes_read} bytes")
        self.bytes_read = bytes_read


@dataclass
class RecordsResult:
    records_total: int = 0
    records_valid: int = 0
    records_invalid: int = 0
    errors_total: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_by_code: Counter[str] = field(default_factory=Counter)
    bom_skipped: bool = False

    @property
    def errors_truncated(self) -> bool:
        return self.errors_total > len(self.errors)

    def stats(self) -> dict[str, int]:
        return {
            "records_total": self.records_total,
            "records_valid": self.records_valid,
            "records_invalid": self.records_invalid,
        }


# --- poison tokens: numbers and escapes the parsers cannot take ----------------------------

_NUMBER_CHARS = b"0123456789+-.eE"
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NUMBER_SHAPE = bytes.maketrans(b"123456789.eE+-", b"0000000000\x01\x01\x02\x02")
"""Digits and the decimal point as ``0``, exponent marks as ``\x01``, signs as ``\x02``:
one ``bytes.translate`` for the guard's ``in`` tests to find number shapes in."""
_SUSPECT_DIGITS = b"0" * (MAX_EXPONENT_DIGITS + 1)
"""Any number that needs checking holds a run of this many digits (a valid number has at
most four characters that are not digits, in ``-``, ``.``, ``e``, sign: so a number longer
than ``MAX_NUMBER_CHARS`` has a run of at least 333)."""
_INEXACT_SHAPES = (b"0" * (EXACT_DIGITS + 1), b"\x01\x02000")
"""A number without these shapes has at most ``EXACT_DIGITS`` significant digits and no
exponent of -100 or less, so its double stands for it exactly enough (a larger exponent
either fits a double or overflows, which orjson refuses: ``sluice.datasets.gate``).
Found anywhere, strings included: a false alarm only sends its records the exact way.
``rfind`` finds them about three times faster than ``in`` (CPython's reverse search)."""
_ESCAPE_PAIR = re.compile(rb"\\.", re.S)
_ESCAPED_QUOTE_OR_BACKSLASH = re.compile(rb'\\["\\]')
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD]")
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.S)
_QUOTE_OR_LONG_RUN = re.compile(rb'"|[-+.0-9eE]{%d,}' % (MAX_EXPONENT_DIGITS + 1))
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.S)
_EXPONENT = re.compile(r"[eE][-+]?([0-9]+)")
_GUARD_CONTEXT = 12
"""Bytes of the previous chunk kept as context: the two escapes of a surrogate pair."""


def number_problem(token: str) -> str | None:
    """Why a number token must not be converted, or None when it is safe to convert."""
    if len(token) > MAX_NUMBER_CHARS:
        return f"a number is longer than {MAX_NUMBER_CHARS} characters"
    exponent = _EXPONENT.search(token)
    if exponent is not None and len(exponent.group(1)) > MAX_EXPONENT_DIGITS:
        return f"a number's exponent is longer than {MAX_EXPONENT_DIGITS} digits"
    return None


LONE_SURROGATE = "a \\u escape encodes half of a UTF-16 surrogate pair, which is no character"


@dataclass(frozen=True)
class _LexState:
    """Where a byte boundary falls for a JSON lexer: inside a string, right after a
    backslash."""

    in_string: bool = False
    escaped: bool = False


def _lex(text: bytes, start: int, end: int, state: _LexState) -> _LexState:
    """The state at ``end`` given the state at ``start``: only quotes and escapes matter."""
    escaped = state.escaped
    if escaped and start < end:
        start += 1  # the escaped byte, whatever it is
        escaped = False
    if start >= end:
        return _LexState(state.in_string, escaped)
    if text.find(b"\\", start, end) < 0:
        quotes = text.count(b'"', start, end)
    elif _ESCAPED_QUOTE_OR_BACKSLASH.search(text, start, end) is None:
        # No escaped quote and no escaped backslash: every quote counts.
        quotes = text.count(b'"', start, end)
        escaped = text[end - 1] == 0x5C
    else:
        body = _ESCAPE_PAIR.sub(b"", text[start:end])
        escaped = body.endswith(b"\\")  # only an unpaired last backslash can remain
        quotes = body.count(b'"')
    return _LexState(state.in_string ^ bool(quotes & 1), escaped)


def _string_end(text: bytes, pos: int) -> int | None:
    """The offset after the closing quote of the string whose content starts at ``pos``."""
    end = _STRING_REST.match(text, pos)
    assert end is not None  # the pattern matches the empty string
    stop = end.end()
    return stop + 1 if stop < len(text) and text[stop] == 0x22 else None


def _long_number(text: bytes, state: _LexState, final: bool) -> tuple[int, str] | None:
    """The first number outside strings that must not be converted, and why."""
    pos: int | None = 0
    if state.in_string:
        pos = _string_end(text, 1 if state.escaped else 0)
    while pos is not None:
        found = _QUOTE_OR_LONG_RUN.search(text, pos)
        if found is None:
            return None
        if found.group() == b'"':
            pos = _string_end(text, found.end())
            continue
        run = found.group()
        if found.end() == len(text) and not final and len(run) <= MAX_NUMBER_CHARS:
            return None  # it may go on in the next chunk, which sees it again whole
        why = number_problem(run.decode("ascii"))
        if why is not None:
            return found.start(), why
        pos = found.end()
    return None


def _is_high(unit: int | None) -> bool:
    return unit is not None and 0xD800 <= unit <= 0xDBFF


def _is_low(unit: int | None) -> bool:
    return unit is not None and 0xDC00 <= unit <= 0xDFFF


def _lone_surrogate(text: bytes, state: _LexState, judged: int, final: bool) -> int | None:
    """The offset of the first ``\\u`` escape that is half a surrogate pair.

    Escapes are found from a known state, so ``\\\\ud800`` (an escaped backslash) is text.
    A low half is judged once its escape ends past ``judged`` (the bytes before were
    judged with the previous chunk), a high half once the six bytes after it are here.
    """
    escapes = [
        (m.start(), m.end(), int(m.group(1), 16) if m.group(1) else None)
        for m in _ESCAPE.finditer(text, 1 if state.escaped else 0)
    ]
    for index, (start, end, unit) in enumerate(escapes):
        if _is_high(unit):
            after = escapes[index + 1] if index + 1 < len(escapes) else None
            if after is not None and after[0] == end and _is_low(after[2]):
                continue
            if end + 6 > len(text) and not final:
                continue
            return start
        if _is_low(unit) and end > judged:
            before = escapes[index - 1] if index else None
            if before is not None and before[1] == start and _is_high(before[2]):
                continue
            return start
    return None


class _TokenGuard:
    """Finds, chunk by chunk, the tokens that must not reach yajl (see the module
    docstring): it carries the lexer state and a little context from chunk to chunk."""

    def __init__(self) -> None:
        self._context = b""
        self._context_state = _LexState()
        self.exact_doubles = True
        """Whether every number of the last chunk checked reads exactly as a double."""

    def check(self, data: bytes) -> tuple[int, str, str] | None:
        """``(offset, code, message)`` of the first poison token; the offset is relative
        to ``data`` and negative when the token began in an earlier chunk."""
        text = self._context + data if self._context else data
        judged = len(self._context)
        state = self._context_state
        final = not data
        problem: tuple[int, str, str] | None = None
        shape = text.translate(_NUMBER_SHAPE)
        self.exact_doubles = all(shape.rfind(inexact) < 0 for inexact in _INEXACT_SHAPES)
        if not self.exact_doubles and _SUSPECT_DIGITS in shape:
            found = _long_number(text, state, final)
            if found is not None:
                problem = (found[0] - judged, "number_too_long", found[1])
        if problem is None and text.find(b"\\") >= 0 and _SURROGATE_ESCAPE.search(text):
            offset = _lone_surrogate(text, state, judged, final)
            if offset is not None:
                problem = (offset - judged, "lone_surrogate", LONE_SURROGATE)
        cut = max(len(text) - _GUARD_CONTEXT, 0)
        cut_state = _lex(text, 0, cut, state)
        end_state = _lex(text, cut, len(text), cut_state)
        run = 0 if end_state.in_string else len(text) - len(text.rstrip(_NUMBER_CHARS))
        if run > _GUARD_CONTEXT:
            # A number still going on: keep it whole (and no longer than it may be).
            self._context = text[-min(run, MAX_NUMBER_CHARS + 1) :]
            self._context_state = _LexState()
        else:
            self._context = text[cut:]
            self._context_state = cut_state
        return problem


_STRUCTURAL = bytes(set(range(256)) - set(b'[]{}"'))
"""Every byte but quotes and brackets, for ``bytes.translate`` to delete."""
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
"""Brackets as signed steps (``memoryview.cast("b")`` reads ``0xff`` as -1)."""
_STRUCTURE_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[{\]}]', re.S)
_STRING_IN_STRUCTURE = re.compile(rb'"[^"]*"')
_NAME_WINDOW = (MAX_PROPERTY_NAME_CHARS + 1) // 2 + 1
"""A run of more than ``MAX_PROPERTY_NAME_CHARS`` bytes without a quote covers the whole
of at least one window of this many bytes, windows laid end to end from a chunk's first
quote."""


class _Structure:
    """Nesting depth and string lengths of an array file, chunk by chunk, before yajl sees
    the chunk: what lets ijson's C ``items()`` build the records (see :func:`_array_records`).

    ``items()`` keeps a path prefix per open container (``item.item.item...``), so its cost
    grows with the square of the depth: 40 KB of nested brackets takes gigabytes. So each
    chunk's brackets outside strings are counted first, in C-level passes (delete all but
    quotes and brackets, drop the strings, a running sum of the brackets left), and the
    reader hands yajl only the bytes before the first bracket that would open a container
    deeper than ``max_depth`` levels below the top-level array; the next read reports
    ``too_deep``, once the records before it were built. A run of more than
    ``MAX_PROPERTY_NAME_CHARS`` bytes between two quotes (each character takes a byte or
    more, an escape at least one once escaped quotes are neutralised) sets
    ``long_strings``: from then on each record's property names are checked.
    """

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self._limit = max_depth + 1  # the top-level array is depth 1
        self._depth = 0
        self._state = _LexState()
        self._since_quote = 0
        self.long_strings = False
        self.record_end: int | None = None
        """The offset just after the last record that ends in the chunk scanned (its
        closing bracket brings the depth back to 1), if any: where a batch may end."""

    def scan(self, data: bytes) -> int | None:
        """The offset in ``data`` of the bracket that opens a container too deep, if any."""
        self.record_end = None
        state = self._state
        text = b"_" + data[1:] if state.escaped and data else data
        escaped = False
        if b"\\" in text and _ESCAPED_QUOTE_OR_BACKSLASH.search(text) is not None:
            # Escaped quotes and backslashes would be taken for quotes and escapes: an
            # escape becomes one placeholder byte (any other escape changes neither).
            text = _ESCAPE_PAIR.sub(b"_", text)
        if text.endswith(b"\\") and len(text) - len(text.rstrip(b"\\")) & 1:
            escaped = True  # the byte it escapes starts the next chunk
        if not self.long_strings:
            self._check_string_lengths(text)
        structure = text.translate(None, _STRUCTURAL)
        quotes = structure.count(b'"')
        ends_in_string = state.in_string ^ bool(quotes & 1)
        self._state = _LexState(ends_in_string, escaped)
        if state.in_string:
            structure = b'"' + structure
        if ends_in_string:
            structure += b'"'
        # Strings without brackets in them are now two adjacent quotes; if every quote goes
        # with them, every string went whole (a string holding a bracket keeps its quotes).
        brackets = structure.replace(b'""', b"")
        if b'"' in brackets:
            brackets = _STRING_IN_STRUCTURE.sub(b"", structure)
        if not brackets:
            return None
        steps = brackets.translate(_BRACKET_STEPS)
        depths = list(accumulate(memoryview(steps).cast("b"), initial=self._depth))
        if max(depths) <= self._limit:
            self._depth = depths[-1]
            self._find_record_end(data, state, depths)
            return None
        return self._too_deep_at(data, state)

    def _find_record_end(self, data: bytes, state: _LexState, depths: list[int]) -> None:
        """Set ``record_end`` from the depth after each bracket (``depths[i + 1]``).

        The last bracket that closes a record is found among the depths (from the end:
        it is usually among the last few); its offset by reading tokens in a window at
        the end of the chunk, from the lexer state at the window's start (one C-level
        pass), wide enough to hold the brackets after it.
        """
        last = len(depths) - 1
        found = next((i for i in range(last, 0, -1) if depths[i] == 1 and depths[i - 1] == 2), 0)
        if not found:
            return
        after = last - found  # brackets after the one that closes the record
        window = 256  # a record or two; eight times wider until it holds the bracket
        while True:
            start = max(len(data) - window, 0)
            if start and data.find(b"\\", start - 1) < 0:
                # No escape at the end: the state there and the quotes after give it.
                odd = data.count(b'"', start) & 1
                at = _LexState(self._state.in_string ^ bool(odd))
            else:
                at = _lex(data, 0, start, state)
            pos: int | None = start
            if at.in_string:
                pos = _string_end(data, start + 1 if at.escaped else start)
            offsets = [
                token.start()
                for token in _STRUCTURE_TOKEN.finditer(data, len(data) if pos is None else pos)
                if data[token.start()] != 0x22
            ]
            if len(offsets) > after:
                self.record_end = offsets[-1 - after] + 1
                return
            assert start > 0, "the bracket count found a record end that the tokens do not"
            window *= 8

    def _check_string_lengths(self, text: bytes) -> None:
        first = text.find(b'"')
        if self._since_quote + (len(text) if first < 0 else first) > MAX_PROPERTY_NAME_CHARS:
            self.long_strings = True
            return
        last = text.rfind(b'"')
        self._since_quote = len(text) - last - 1 if last >= 0 else self._since_quote + len(text)
        find = text.find
        for start in range(first, last, _NAME_WINDOW):
            if find(b'"', start, start + _NAME_WINDOW) < 0:
                before = text.rfind(b'"', 0, start)
                after = find(b'"', start)
                if after - before - 1 > MAX_PROPERTY_NAME_CHARS:
                    self.long_strings = True
                    return

    def _too_deep_at(self, data: bytes, state: _LexState) -> int:
        """The exact offset of the first bracket too deep (slow: one token at a time)."""
        pos = 0
        if state.in_string:
            end = _string_end(data, 1 if state.escaped else 0)
            pos = len(data) if end is None else end
        depth = self._depth
        for token in _STRUCTURE_TOKEN.finditer(data, pos):
            byte = data[token.start()]
            if byte in b"[{":
                depth += 1
                if depth > self._limit:
                    return token.start()
            elif byte in b"]}":
                depth -= 1
                if depth == 1:
                    self.record_end = token.end()
        raise AssertionError("the fast count found a bracket too deep that the scan did not")


# --- input: UTF-8 check, positions, record size cap -------------------------------------


@dataclass(frozen=True)
class _Spot:
    """A place in a chunk with what its position needs (computed only when asked)."""

    chunk: bytes
    offset: int
    chunk_start: int
    lines_before: int
    column_before: int

    def position(self) -> FilePosition:
        head = self.chunk[: self.offset]
        newlines = head.count(b"\n")
        if newlines:
            column = self.offset - head.rfind(b"\n")
        else:
            column = self.column_before + self.offset + 1
        return FilePosition(
            byte=self.chunk_start + self.offset,
            line=self.lines_before + newlines + 1,
            column=column,
        )


class _CheckedReader:
    """Hands the source's bytes on unchanged after checking they are UTF-8.

    It remembers the last chunk and the line count before it, so a parser error can be
    turned into a byte/line/column position, it stops a single record from growing past
    ``max_record_bytes`` (the parser would otherwise buffer it whole), and, with a
    ``guard``, it stops poison tokens before the parser sees them.
    """

    def __init__(
        self,
        source: Readable,
        max_record_bytes: int | None,
        guard: _TokenGuard | None = None,
        out_of_time: Callable[[], bool] | None = None,
    ) -> None:
        self._source = source
        self._guard = guard
        self._out_of_time = out_of_time
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._max_record_bytes = max_record_bytes
        self._started = False
        self._done = False
        self.bom_skipped = False
        self.chunk = b""
        self.chunk_start = 0
        self._lines_before = 0
        self._column_before = 0
        self.record_start = 0
        self.records_completed = 0
        self.structure: _Structure | None = None
        self._too_deep = False
        self._synthetic = 0

    @property
    def end(self) -> int:
        return self.chunk_start + len(self.chunk)

    @property
    def data_start(self) -> int:
        """Where the chunk's bytes from the file begin (after a synthetic prefix)."""
        return self.chunk_start + self._synthetic

    @property
    def exact_doubles(self) -> bool:
        """Whether every number of the last chunk read is exact as a double (guard)."""
        return self._guard is not None and self._guard.exact_doubles

    @property
    def record_end(self) -> int | None:
        """Where the last record ending in the last chunk read ends (structure)."""
        return self.structure.record_end if self.structure is not None else None

    def position(self, offset_in_chunk: int) -> FilePosition:
        return self.spot(offset_in_chunk).position()

    def spot(self, offset_in_chunk: int) -> _Spot:
        """A place in the last chunk, whose position can be worked out later."""
        return _Spot(
            self.chunk, offset_in_chunk, self.chunk_start, self._lines_before, self._column_before
        )

    def resume(self, at: _Spot, replay: bytes, synthetic: int) -> None:
        """Make ``replay`` the current chunk: its bytes after ``synthetic`` are the file's
        from ``at`` to the end of the last chunk read, so that positions in what a parser
        is given again are the file's positions."""
        where = at.position()
        self.chunk = replay
        self.chunk_start = where.byte - synthetic
        self._lines_before = where.line - 1
        self._column_before = where.column - 1 - synthetic
        self._synthetic = synthetic

    def mark_record_end(self) -> None:
        self.record_start = self.end
        self.records_completed += 1

    def replay(self, chunk: bytes) -> None:
        """Make ``chunk``, given again after :meth:`resume`, the current chunk."""
        self._advance(chunk)

    def _advance(self, data: bytes) -> None:
        self._synthetic = 0
        previous = self.chunk
        newlines = previous.count(b"\n")
        self._lines_before += newlines
        if newlines:
            self._column_before = len(previous) - previous.rfind(b"\n") - 1
        else:
            self._column_before += len(previous)
        self.chunk_start += len(previous)
        self.chunk = data

    def _first_read(self, size: int) -> bytes:
        self._started = True
        data = self._source.read(size)
        while 0 < len(data) < len(UTF8_BOM):
            more = self._source.read(size)
            if not more:
                break
            data += more
        if data.startswith(UTF8_BOM):
            self.bom_skipped = True
            self.chunk_start = len(UTF8_BOM)
            self._column_before = len(UTF8_BOM)
            self.record_start = len(UTF8_BOM)
            data = data[len(UTF8_BOM) :]
        if not data.lstrip(b" \t\r\n").startswith(b"["):
            self.structure = None  # not an array: the event builder says what it is
        return data

    def read(self, size: int = CHUNK_BYTES) -> bytes:
        if size == 0:  # ijson probes read(0) for the stream's type
            return b""
        if self._done:
            self._advance(b"")  # the end again, after a chunk given again (resume)
            return b""
        if self._too_deep:
            raise self._too_deep_error()
        size = CHUNK_BYTES if size is None or size < 0 else size
        if self._out_of_time is not None and self._out_of_time():
            raise OutOfTimeError(self.end)
        data = self._source.read(size) if self._started else self._first_read(size)
        poison = self._guard.check(data) if self._guard is not None else None
        earlier = None
        if poison is not None and poison[0] < 0:  # it began in the chunk before this one
            earlier = self.position(max(len(self.chunk) + poison[0], 0))
        self._advance(data)
        pending = len(self._decoder.getstate()[0])
        try:
            self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            offset = exc.start - pending
            bad = data[offset] if 0 <= offset < len(data) else None
            where = self.position(max(offset, 0))
            what = f"invalid byte 0x{bad:02x}" if bad is not None else "incomplete sequence"
            raise FileRejectedError(
                "not_utf8", f"file is not UTF-8: {what} at {where}", where
            ) from None
        if poison is not None:
            offset, code, message = poison
            where = earlier or self.position(offset)
            raise FileRejectedError(code, f"{message} at {where}", where)
        if not data:
            self._done = True
        limit = self._max_record_bytes
        if limit is not None and self.end - self.record_start > limit + size:
            raise FileRejectedError(
                "record_too_large",
                f"record {self.records_completed} is larger than {limit} bytes"
                f" (no record ended between byte {self.record_start} and byte {self.end})",
            )
        if self.structure is not None:
            cut = self.structure.scan(data)
            if cut == 0:
                raise self._too_deep_error()
            if cut is not None:
                # yajl builds the records before the bracket (every record of the chunks
                # before was built before this read); the next read says why it stops.
                self._too_deep = True
                return data[:cut]
        return data

    def _too_deep_error(self) -> FileRejectedError:
        assert self.structure is not None
        return FileRejectedError(
            "too_deep",
            f"record {self.records_completed} is nested deeper than"
            f" {self.structure.max_depth} levels",
        )


# --- malformed JSON positions -------------------------------------------------------------


def _yajl_error_offset(error: Exception, chunk: bytes) -> int | None:
    """The offset in ``chunk`` where yajl stopped, recovered from its verbose message.

    yajl shows 30 bytes either side of the error (newlines as spaces) after
    ``40 - offset`` spaces when ``offset < 30`` and after 10 spaces otherwise; the offset
    is the one that reproduces that line from the chunk. None when ambiguous or unknown.
    """
    raw = error.args[0] if error.args else None
    message = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    if not isinstance(message, bytes):
        return None
    lines = message.split(b"\n")
    if len(lines) < 3 or b"(right here)" not in lines[2]:
        return None
    shown = lines[1]
    text = chunk.replace(b"\n", b" ").replace(b"\r", b" ")
    candidates = set()
    for offset in range(min(29, len(text)) + 1):
        if shown == b" " * (40 - offset) + text[: offset + 30]:
            candidates.add(offset)
    if shown.startswith(b" " * 10):
        body = shown[10:]
        start = text.find(body) if body else -1
        while start >= 0:
            offset = start + 30
            if offset <= len(text) and text[start : offset + 30] == body:
                candidates.add(offset)
            start = text.find(body, start + 1)
    return candidates.pop() if len(candidates) == 1 else None


def _malformed(error: Exception, reader: _CheckedReader) -> FileRejectedError:
    raw = error.args[0] if error.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    # Only yajl's first line: the lines after it quote the file's content.
    reason = text.split("\n", 1)[0].strip() or type(error).__name__
    if not reader.chunk:  # the parser wanted more after the end of the file
        position = reader.position(0)
        return FileRejectedError(
            "malformed_json", f"malformed JSON at {position}: {reason}", position
        )
    offset = _yajl_error_offset(error, reader.chunk)
    if offset is not None and offset > 0:
        # yajl stops at or just after the offending token; its last byte read is in or
        # right before it, hence "near".
        offset -= 1
    if offset is None:
        position = reader.position(len(reader.chunk))
        return FileRejectedError(
            "malformed_json",
            f"malformed JSON between byte {reader.data_start} and byte {position.byte}: {reason}",
            position,
        )
    position = reader.position(offset)
    return FileRejectedError(
        "malformed_json", f"malformed JSON near {position}: {reason}", position
    )


# --- building records -----------------------------------------------------------------------

_SCALAR_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "a number",
    "double": "a number",
    "boolean": "a boolean",
    "null": "null",
    "start_map": "an object",
}


class _Replay:
    """The reader, with its first chunk (already read to choose a builder) given again."""

    def __init__(self, first: bytes, reader: _CheckedReader) -> None:
        self._first: bytes | None = first
        self._reader = reader

    def read(self, size: int = CHUNK_BYTES) -> bytes:
        if size == 0:
            return b""
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._reader.read(size)


def _array_records(reader: _CheckedReader, max_depth: int, doubles: bool = False) -> Iterator[Any]:
    """Elements of the top-level array, one at a time (see :func:`_array_batches`)."""
    for batch in _array_batches(reader, max_depth, doubles):
        yield from batch


def _array_batches(reader: _CheckedReader, max_depth: int, doubles: bool) -> Iterator[list[Any]]:
    """Elements of the top-level array, in lists, built in C.

    A file that starts as an array has them built behind :class:`_Structure`'s checks of
    depth and name lengths: by :class:`_Batches` (orjson, numbers as doubles) when
    ``doubles`` says the dataset decides such numbers alike, otherwise by ijson's C
    ``items()`` (exact numbers). Anything else goes to :func:`_event_records`, which says
    what the top-level value is.
    """
    structure = _Structure(max_depth)
    reader.structure = structure
    first = reader.read(CHUNK_BYTES)
    if reader.structure is None:
        for record in _event_records(_Replay(first, reader), reader, max_depth):
            yield [record]
    elif doubles:
        yield from _Batches(reader, structure).run(first)
    else:
        yield from _item_batches(_Replay(first, reader), reader, structure)


def _long_name_error(index: int) -> FileRejectedError:
    return FileRejectedError(
        "property_name_too_long",
        f"record {index} has a property name longer than {MAX_PROPERTY_NAME_CHARS} characters",
    )


def _item_batches(
    source: Readable, reader: _CheckedReader, structure: _Structure, skip_first: bool = False
) -> Iterator[list[Any]]:
    """Records built by ijson's C ``items()`` (no Python per event; exact numbers), each
    in a list of its own. With ``skip_first`` the first element stands in for the records
    built before (see :meth:`_Batches.hand_over`) and is neither counted nor yielded."""
    try:
        for record in _ijson.items(source, "item", buf_size=CHUNK_BYTES):
            if skip_first:
                skip_first = False
                continue
            reader.mark_record_end()
            if structure.long_strings and type(record) in (dict, list) and _has_long_name(record):
                raise _long_name_error(reader.records_completed - 1)
            yield [record]
    except ijson.JSONError as exc:
        raise _malformed(exc, reader) from None


class _EndOfReplayError(Exception):
    """yajl asked for more than the bytes it was given to judge."""


Part = tuple[bytes, bytes]
"""Bytes as the reader returned them, and the reader's chunk they came from (longer when a
bracket too deep cut it) from the same offset: what positions are counted in."""


class _Resumed:
    """What ``items()`` would have been given from a record boundary on: the parts (the
    bytes after the last record built, chunk by chunk as the reader returned them, the
    first behind ``synthetic``), then, when ``then_read``, the reader's next chunks, else
    :class:`_EndOfReplayError`. The reader is moved along so that its positions are the file's.
    """

    def __init__(
        self,
        reader: _CheckedReader,
        at: _Spot,
        synthetic: bytes,
        parts: list[Part],
        then_read: bool,
    ) -> None:
        self._reader = reader
        self._at: _Spot | None = at
        self._synthetic = synthetic
        self._parts = list(parts) or [(b"", b"")]
        self._then_read = then_read

    def read(self, size: int = CHUNK_BYTES) -> bytes:
        if size == 0:
            return b""
        if self._at is not None:
            given, chunk = self._parts.pop(0)
            self._reader.resume(self._at, self._synthetic + chunk, len(self._synthetic))
            self._at = None
            return self._synthetic + given
        if self._parts:
            given, chunk = self._parts.pop(0)
            self._reader.replay(chunk)
            return given
        if self._then_read:
            return self._reader.read(size)
        raise _EndOfReplayError


_SEPARATOR = re.compile(rb"[ \t\n\r]*[,\[]?[ \t\n\r]*")
"""What comes between a record's end and the next record's first byte (or, at the start,
before the first record)."""


class _Batches:
    """Array records parsed a chunk at a time by orjson, numbers as doubles (issue 16).

    ijson builds records from yajl's events at about the speed of the parse-only floor;
    orjson parses the same bytes into the same dicts and lists about twice as fast, but
    parses whole documents only. So each chunk's complete records are cut out where
    :class:`_Structure` saw the last record end (``record_end``), wrapped as an array
    (``[0`` + ``,`` + records + ``]`` after the first batch, the ``0`` dropped) and parsed
    in one call; the bytes after the cut wait for the next chunk. Every chunk has passed
    the reader's checks (UTF-8, poison tokens, depth, record size) first, as with
    ``items()``, and the reader counts the records of a batch when it is built, as
    ``items()`` counts them, so its later messages and limits are the same.

    Numbers become doubles, which is exact only when the guard saw no number of more than
    15 significant digits or an exponent of -100 or less in the batch's chunks
    (``exact_doubles``); otherwise the batch is parsed by yajl (``items()`` over it:
    exact numbers, the records it built before). yajl also parses a batch orjson refuses
    (yajl takes a form feed as white space, orjson does not, and orjson refuses a number
    too large for a double). If yajl refuses it too, or the record after a cut is a scalar
    (``items()`` counts a scalar record as soon as it ends, which a cut cannot see), or the
    file ends, the rest of the file is handed over to ``items()`` from the first byte not
    yet built, behind ``[0`` so that yajl is in the state it would have been in, and in
    the pieces the reader returned (:class:`_Resumed`): malformed JSON is then reported by
    yajl with the same message and position as before. An error the reader raises, or a
    name too long, is preceded by yajl's judgement of the bytes it would have parsed first
    (:meth:`_judged`), so that of two problems the one reported is still the first.
    """

    def __init__(self, reader: _CheckedReader, structure: _Structure) -> None:
        self._reader = reader
        self._structure = structure
        self._pending = bytearray()  # the bytes after the last record built
        self._parts: list[Part] = []  # the same, as the reader returned them
        self._spot = reader.spot(0)  # where they begin
        self._opening = True  # they begin with the top-level "["
        self._exact = True  # every number in them is exact as a double

    def run(self, data: bytes) -> Iterator[list[Any]]:
        reader = self._reader
        while data:
            end = reader.record_end
            exact = self._exact and reader.exact_doubles
            if end is None:
                self._keep(data, reader.chunk)
                self._exact = exact
            else:
                batch = self._parse(b"".join((self._pending, data[:end])), exact)
                if batch is None:
                    self._keep(data, reader.chunk)
                    break
                self._check_names(batch, data, end)
                yield batch
                reader.records_completed += len(batch)
                reader.record_start = reader.end
                self._spot = reader.spot(end)
                self._pending = bytearray()
                self._parts = []
                self._keep(data[end:], reader.chunk[end:])
                self._opening = False
                self._exact = reader.exact_doubles
            if self._scalar_next():
                break
            data = self._read()
        yield from self.hand_over()

    def _keep(self, given: bytes, chunk: bytes) -> None:
        if given:
            self._pending += given
            self._parts.append((given, chunk))

    def _parse(self, body: bytes, exact: bool) -> list[Any] | None:
        """The batch's records: by orjson when exact, else (or when it refuses) by yajl;
        None when yajl refuses them too."""
        text = b"".join((b"" if self._opening else b"[0", body, b"]"))
        records: list[Any] | None = None
        if exact:
            try:
                records = orjson.loads(text)
            except orjson.JSONDecodeError:
                records = None
        if records is None:
            try:
                records = list(_ijson.items(io.BytesIO(text), "item", buf_size=len(text)))
            except ijson.JSONError:
                return None
        return records if self._opening else records[1:]

    def _scalar_next(self) -> bool:
        """Whether the record after the last one built is known not to be a container."""
        pending = self._pending
        head = _SEPARATOR.match(pending)
        at = head.end() if head is not None else 0
        return at < len(pending) and pending[at] not in b"{["

    def _check_names(self, batch: list[Any], data: bytes, end: int) -> None:
        if not self._structure.long_strings:
            return
        for index, record in enumerate(batch):
            if type(record) in (dict, list) and _has_long_name(record):
                error = _long_name_error(self._reader.records_completed + index)
                rest = [(data[end:], self._reader.chunk[end:])] if data[end:] else []
                raise self._judged(error, self._reader.spot(end), False, rest)

    def _read(self) -> bytes:
        try:
            return self._reader.read(CHUNK_BYTES)
        except (FileRejectedError, OutOfTimeError) as stop:
            raise self._judged(stop, self._spot, self._opening, self._parts) from None

    def _judged(self, error: Exception, at: _Spot, opening: bool, rest: list[Part]) -> Exception:
        """``error``, unless yajl finds ``rest`` (the bytes after the last record built,
        which ``items()`` would have parsed before ``error`` arose) malformed first."""
        synthetic = b"" if opening else b"[0"
        source = _Resumed(self._reader, at, synthetic, rest, then_read=False)
        try:
            for _ in _ijson.items(source, "item", buf_size=CHUNK_BYTES):
                pass
        except ijson.JSONError as exc:
            return _malformed(exc, self._reader)
        except _EndOfReplayError:
            pass
        return error

    def hand_over(self) -> Iterator[list[Any]]:
        """The rest of the file by ``items()``, from the first byte not yet built."""
        synthetic = b"" if self._opening else b"[0"
        source = _Resumed(self._reader, self._spot, synthetic, self._parts, then_read=True)
        yield from _item_batches(source, self._reader, self._structure, not self._opening)


def _event_records(replay: _Replay, reader: _CheckedReader, max_depth: int) -> Iterator[Any]:
    """Elements of the top-level array, built one at a time from parser events."""
    events = _ijson.basic_parse(replay, buf_size=CHUNK_BYTES)
    try:
        first = next(events, None)
        if first is None:
            raise FileRejectedError(
                "malformed_json", "file holds no JSON value", reader.position(0)
            )
        if first[0] != "start_array":
            found = _SCALAR_NAMES.get(first[0], first[0])
            raise FileRejectedError(
                "wrong_shape",
                f"top-level JSON value is {found}; expected an array of records",
                reader.position(0),
            )
        # stack[0] stands for the top-level array, which is never materialised.
        stack: list[Any] = [None]
        key: Any = None
        for event, value in events:
            if event == "map_key":
                key = value
                if len(key) > MAX_PROPERTY_NAME_CHARS:
                    raise FileRejectedError(
                        "property_name_too_long",
                        f"record {reader.records_completed} has a property name longer than"
                        f" {MAX_PROPERTY_NAME_CHARS} characters",
                    )
            elif event == "start_map" or event == "start_array":
                container: Any = {} if event == "start_map" else []
                if len(stack) > 1:
                    parent = stack[-1]
                    if type(parent) is dict:
                        parent[key] = container
                    else:
                        parent.append(container)
                stack.append(container)
                if len(stack) > max_depth + 1:
                    raise FileRejectedError(
                        "too_deep",
                        f"record {reader.records_completed} is nested deeper than"
                        f" {max_depth} levels",
                    )
            elif event == "end_map" or event == "end_array":
                done = stack.pop()
                if len(stack) == 1:
                    reader.mark_record_end()
                    yield done
            elif len(stack) == 1:
                reader.mark_record_end()
                yield value
            else:
                parent = stack[-1]
                if type(parent) is dict:
                    parent[key] = value
                else:
                    parent.append(value)
    except ijson.JSONError as exc:
        raise _malformed(exc, reader) from None


def _lines(reader: _CheckedReader, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line)`` for each line; the line is None when it is too long."""
    pending = bytearray()
    too_long = False
    number = 1
    while chunk := reader.read(CHUNK_BYTES):
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            if too_long:
                yield number, None
            elif pending:
                pending += chunk[start:newline]
                too_long = len(pending) > max_line_bytes
                yield number, None if too_long else bytes(pending)
            elif newline - start > max_line_bytes:
                yield number, None
            else:
                yield number, chunk[start:newline]
            pending.clear()
            too_long = False
            number += 1
            start = newline + 1
        if not too_long:
            pending += chunk[start:]
            if len(pending) > max_line_bytes:
                too_long = True
                pending.clear()
    if too_long:
        yield number, None
    elif pending:
        yield number, bytes(pending)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _PoisonLineError(ValueError):
    """A JSON Lines record holds a token that must not be converted."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _checked_int(token: str) -> int:
    why = number_problem(token)
    if why is not None:
        raise _PoisonLineError("number_too_long", why)
    return int(token)


def _checked_decimal(token: str) -> Decimal:
    why = number_problem(token)
    if why is not None:
        raise _PoisonLineError("number_too_long", why)
    return Decimal(token)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_lone_surrogate(value: Any) -> bool:
    """Whether a decoded record holds a surrogate code point (``json`` decodes a valid pair
    to one character, so any that remains was alone)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _has_long_name(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if any(len(name) > MAX_PROPERTY_NAME_CHARS for name in node):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class _NumberOutOfRangeError(ValueError):
    """A number the schema let through has no double (``1e400``): JSON cannot carry it."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        number = float(value)
        if number in (float("inf"), float("-inf")):
            raise _NumberOutOfRangeError("number out of range")
        return number
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _encode(record: Any) -> bytes:
    """The record as compact JSON, the same bytes ``json.dumps`` makes (see docs/decisions.md).

    orjson writes strings, integers, booleans, null, objects and arrays exactly as
    ``json.dumps(ensure_ascii=False, separators=(",", ":"))`` does, 10x faster; anything
    else it refuses (a ``Decimal``: every number with a fraction or an exponent, whose
    float ``repr`` orjson would spell differently, e.g. ``1e-05``; an integer beyond 64
    bits; nesting deeper than 255), and ``json.dumps`` writes those records.
    """
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        return _encode_exactly(record)


def _holds_double(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is float:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _encode_doubles(record: Any) -> bytes:
    """:func:`_encode` for records that may hold doubles (read by orjson): ``json.dumps``
    spells a double as Python's ``repr`` does and orjson does not (``1e-05``), so a record
    holding one is written by ``json.dumps``, as its ``Decimal`` was."""
    return _encode_exactly(record) if _holds_double(record) else _encode(record)


def _encode_exactly(record: Any) -> bytes:
    return json.dumps(
        record,
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
        default=_json_default,
    ).encode("utf-8")


# --- the pipeline -----------------------------------------------------------------------------


class _BufferedSink:
    """Collects small writes so the writer sees a few large ones."""

    def __init__(self, out: Writable) -> None:
        self._out = out
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._out.write(bytes(self._buffer))
            self._buffer.clear()


class _Collector:
    """Counts every error; hands the first ``max_report_errors`` to ``on_error`` and keeps
    the first ``max_errors`` for the receipt, so neither grows with the input."""

    def __init__(self, on_error: ErrorSink, max_errors: int, max_report_errors: int) -> None:
        self.result = RecordsResult()
        self._on_error = on_error
        self._max_errors = max_errors
        self._max_report_errors = max_report_errors

    @property
    def full(self) -> bool:
        """Whether every further error is only counted (receipt and report are full)."""
        result = self.result
        return (
            len(result.errors) >= self._max_errors
            and result.errors_total >= self._max_report_errors
        )

    def invalid(self, index: int, line: int | None, problems: list[Problem]) -> None:
        result = self.result
        result.records_invalid += 1
        for problem in problems:
            result.errors_total += 1
            result.errors_by_code[problem[1]] += 1
            keep = len(result.errors) < self._max_errors
            report = result.errors_total <= self._max_report_errors
            if keep or report:
                error = _error(index, problem, line)
                if keep:
                    result.errors.append(error)
                if report:
                    self._on_error(error)

    def finish(self) -> None:
        """One last report entry when errors were left out: how many, of which codes."""
        result = self.result
        left_out = result.errors_total - self._max_report_errors
        if left_out > 0:
            self._on_error(
                {
                    "code": "report_truncated",
                    "message": f"{left_out} more errors are not listed; errors_by_code counts"
                    " every error of the file",
                    "errors_total": result.errors_total,
                    "errors_listed": self._max_report_errors,
                    "errors_by_code": dict(sorted(result.errors_by_code.items())),
                }
            )


@dataclass(frozen=True)
class _Limits:
    max_depth: int
    max_record_bytes: int
    max_record_errors: int
    detailed_records: int


Detail = Literal["all", "first", "count"]
"""How much an invalid record's problems are worth: every violation, the first rule broken,
or only how many (when the receipt and the report are full)."""
_COUNTED: Problem = ("$", "schema_violation", "")
_OUT_OF_RANGE: Problem = ("$", "number_out_of_range", "a number is too large for a double")


def _check_record(
    record: Any,
    dataset: Dataset,
    collector: _Collector,
    limits: _Limits,
    encode: Callable[[Any], bytes] = _encode,
) -> tuple[bytes | None, list[Problem]]:
    """The projected record as JSON, or the list of (path, code, message) that are wrong."""
    if dataset.is_valid(record):
        try:
            return encode(dataset.project(record)), []
        except _NumberOutOfRangeError:
            return None, [_OUT_OF_RANGE]
    limit = limits.max_record_errors
    detail = _detail(collector, limits)
    if detail == "count":
        problems = [_COUNTED] * dataset.count_first_violation(record, limit=limit + 1)
    else:
        if detail == "all":
            found = dataset.violations(record, limit=limit + 1)
        else:
            found = dataset.first_violation(record, limit=limit + 1)
        problems = [(v.path, "schema_violation", v.message) for v in found]
    if len(problems) > limit:
        listed = f"more than {limit} problems; only the first {limit} are listed"
        problems[limit:] = [("$", "too_many_errors", listed)]
    return None, problems


def _detail(collector: _Collector, limits: _Limits) -> Detail:
    if collector.result.records_invalid < limits.detailed_records:
        return "all"
    return "count" if collector.full else "first"


def _error(index: int, problem: Problem, line: int | None) -> dict[str, Any]:
    path, code, message = problem
    error: dict[str, Any] = {"record_index": index, "path": path, "code": code, "message": message}
    if line is not None:
        error["line"] = line
    return error


def transform_records(
    source: Readable,
    fmt: RecordFormat,
    dataset: Dataset,
    out: Writable,
    on_error: ErrorSink,
    *,
    max_errors: int = DEFAULT_MAX_ERRORS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    detailed_records: int = DEFAULT_DETAILED_RECORDS,
    max_record_errors: int = DEFAULT_MAX_RECORD_ERRORS,
    max_report_errors: int = DEFAULT_MAX_REPORT_ERRORS,
    out_of_time: Callable[[], bool] | None = None,
) -> RecordsResult:
    """Validate every record of ``source``; write the valid ones, projected, to ``out``.

    The first ``detailed_records`` invalid records list every violation (up to
    ``max_record_errors``); later ones list the first violation found, which keeps a file
    of millions of bad records within a Lambda's time limit. ``on_error`` receives the
    first ``max_report_errors`` errors and then one ``report_truncated`` summary. Raises
    :class:`FileRejectedError` when the file cannot be read as a whole, and
    :class:`OutOfTimeError` when ``out_of_time`` (asked before each read) says stop; the
    caller must then discard what was written to ``out`` and ``on_error``.
    """
    collector = _Collector(on_error, max_errors, max_report_errors)
    sink = _BufferedSink(out)
    limits = _Limits(max_depth, max_record_bytes, max_record_errors, detailed_records)
    if fmt == "array":
        reader = _CheckedReader(source, max_record_bytes, _TokenGuard(), out_of_time)
        _transform_array(reader, dataset, sink, collector, limits)
    else:
        reader = _CheckedReader(source, None, out_of_time=out_of_time)
        _transform_lines(reader, dataset, sink, collector, limits)
    sink.flush()
    collector.finish()
    collector.result.bom_skipped = reader.bom_skipped
    return collector.result


def _transform_array(
    reader: _CheckedReader,
    dataset: Dataset,
    sink: _BufferedSink,
    collector: _Collector,
    limits: _Limits,
) -> None:
    # The loop runs once per record: the valid path is inlined (it is _check_record's),
    # and a batch's valid records are written in one piece.
    is_valid, project, write = dataset.is_valid, dataset.project, sink.write
    gate = dataset.gate or is_valid
    doubles = dataset.doubles_decide_alike
    encode = _encode_doubles if doubles and dataset.projects_numbers else _encode
    separator = b"[\n"
    index = valid = 0
    for batch in _array_batches(reader, limits.max_depth, doubles):
        encoded = []
        for record in batch:
            if gate(record) or is_valid(record):
                try:
                    encoded.append(encode(project(record)))
                except _NumberOutOfRangeError:
                    collector.invalid(index, None, [_OUT_OF_RANGE])
            else:
                _, problems = _check_record(record, dataset, collector, limits)
                collector.invalid(index, None, problems)
            index += 1
        if encoded:
            valid += len(encoded)
            write(separator + b",\n".join(encoded))
            separator = b",\n"
    result = collector.result
    result.records_total += index
    result.records_valid += valid
    write(b"[]\n" if not valid else b"\n]\n")


def _transform_lines(
    reader: _CheckedReader,
    dataset: Dataset,
    sink: _BufferedSink,
    collector: _Collector,
    limits: _Limits,
) -> None:
    result = collector.result
    doubles = dataset.doubles_decide_alike
    encode = _encode_doubles if doubles and dataset.projects_numbers else _encode
    index = 0
    for line_number, line in _lines(reader, limits.max_record_bytes):
        if line is not None and not line.strip():
            continue  # blank lines separate nothing and are not records
        if line is None:
            encoded = None
            problems = [
                ("$", "record_too_large", f"line is longer than {limits.max_record_bytes} bytes")
            ]
        else:
            encoded, problems = _check_line(line, dataset, collector, limits, doubles, encode)
        result.records_total += 1
        if encoded is None:
            collector.invalid(index, line_number, problems)
        else:
            result.records_valid += 1
            sink.write(encoded)
            sink.write(b"\n")
        index += 1


def _load_line(line: bytes, doubles: bool = False) -> Any:
    """The line's value; a line with a long digit run has each number checked first.

    With ``doubles`` (the dataset decides them alike) a line without a number a double
    cannot stand for (``_INEXACT_SHAPES``) is read by orjson, six times faster than
    ``json.loads``, into the same values but for numbers with a fraction or an exponent,
    doubles instead of ``Decimal``. A line orjson refuses (a lone surrogate, ``NaN``, too
    deep, malformed) is read by ``json.loads``, whose verdict and message are reported.
    """
    if doubles and all(line.translate(_NUMBER_SHAPE).rfind(x) < 0 for x in _INEXACT_SHAPES):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    text = line.decode("utf-8")
    if _SUSPECT_DIGITS in line.translate(_DIGITS_AS_ZERO):
        return json.loads(
            text,
            parse_int=_checked_int,
            parse_float=_checked_decimal,
            parse_constant=_reject_constant,
        )
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def _check_line(
    line: bytes,
    dataset: Dataset,
    collector: _Collector,
    limits: _Limits,
    doubles: bool = False,
    encode: Callable[[Any], bytes] = _encode,
) -> tuple[bytes | None, list[Problem]]:
    too_deep = f"record is nested deeper than {limits.max_depth} levels"
    try:
        record = _load_line(line, doubles)
    except _PoisonLineError as exc:
        return None, [("$", exc.code, exc.message)]
    except json.JSONDecodeError as exc:
        return None, [
            ("$", "invalid_json", f"line is not valid JSON: {exc.msg} (column {exc.colno})")
        ]
    except ValueError as exc:
        return None, [("$", "invalid_json", f"line is not valid JSON: {exc}")]
    except RecursionError:
        return None, [("$", "too_deep", too_deep)]
    if b"\\u" in line and (b"\\ud" in line or b"\\uD" in line) and _holds_lone_surrogate(record):
        return None, [("$", "lone_surrogate", LONE_SURROGATE)]
    if isinstance(record, dict | list) and _deeper_than(record, limits.max_depth):
        return None, [("$", "too_deep", too_deep)]
    if len(line) > MAX_PROPERTY_NAME_CHARS and _has_long_name(record):
        long_name = f"a property name is longer than {MAX_PROPERTY_NAME_CHARS} characters"
        return None, [("$", "property_name_too_long", long_name)]
    return _check_record(record, dataset, collector, limits, encode)
