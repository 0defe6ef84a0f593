"""Route filters: small boolean expressions over an event's fields.

A route that should see only production failures says::

    filter = 'data.namespace == "prod" and not data.error matches "*flaky*"'

The language is deliberately tiny, so a config file can hold it and it can
never run code:

- a **path** names a field: ``event``, ``program``, ``source``, ``seq``,
  ``messageId``, ``timestamp``, ``received_at``, or ``data.FIELD.SUBFIELD``;
  a field the event lacks is ``null``;
- **comparisons**: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in`` (a
  list, or a substring of a string), ``matches`` (an fnmatch glob);
- **literals** are JSON: ``"text"`` (or ``'text'``), numbers, ``true``,
  ``false``, ``null``, ``[lists]``;
- ``and``, ``or``, ``not`` and parentheses; a bare path is true when the
  field is present and truthy.

Ordering comparisons between values of different kinds (a number and a
string, anything and null) are false rather than errors: an event is data
from a child, and a filter must not crash on it.

:func:`compile_filter` parses once (raising :class:`FilterError` with the
character position) and returns a predicate; nothing here does I/O.
"""

from __future__ import annotations

import fnmatch
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .errors import FilterError
from .events import Event

__all__ = ["FilterError", "Predicate", "compile_filter", "field_value"]

Predicate = Callable[[Event], bool]

_TOKEN = re.compile(
    r"""
    \s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<punct>[()\[\],])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "matches", "true", "false", "null"}
_TOP_LEVEL = {"event", "program", "source", "seq", "messageId", "timestamp", "received_at"}
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


MAX_FILTER_LENGTH = 10_000
"""The longest filter expression, in characters: a route filter is a line, not a program."""
MAX_FILTER_DEPTH = 100
"""The deepest nesting of parentheses, ``not`` and list literals: deeper would
exhaust the parser's recursion long before it meant anything."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, number, op, punct, name, end
    text: str
    position: int


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        while position < len(source) and source[position].isspace():
            position += 1
        if position == len(source):
            tokens.append(_Token("end", "", position))
            return tokens
        match = _TOKEN.match(source, position)
        if match is None or match.lastgroup is None:
            raise FilterError(f"unexpected {source[position]!r} at character {position + 1}")
        start = match.start(match.lastgroup)
        tokens.append(_Token(match.lastgroup, match.group(match.lastgroup), start))
        position = match.end()


def field_value(event: Event, path: str) -> Any:
    """The value at ``path`` (``program``, ``data.taskId``, ...), or None if absent."""
    head, _, rest = path.partition(".")
    if head == "data":
        value: Any = event.data
        for part in rest.split(".") if rest else ():
            value = _child(value, part)
            if value is None:
                return None
        return _plain(value)
    if rest or head not in _TOP_LEVEL:
        return None
    if head == "event":
        return event.event
    if head == "messageId":
        return event.message_id
    if head == "timestamp":
        return event.message.timestamp
    return getattr(event, head)


def _child(value: Any, name: str) -> Any:
    if isinstance(value, BaseModel):
        if name in type(value).model_fields:
            return getattr(value, name)
        return (value.model_extra or {}).get(name)
    if isinstance(value, dict):
        return value.get(name)
    return None


def _plain(value: Any) -> Any:
    """Models and tuples as the JSON-ish values a literal compares with."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _equal(left: Any, right: Any) -> bool:
    # JSON has one number type: 1 == 1.0, but true is not 1.
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return bool(left == right)


def _ordered(op: str) -> Callable[[Any, Any], bool]:
    compare = _ORDERING[op]

    def ordered(left: Any, right: Any) -> bool:
        numbers = (int, float)
        if isinstance(left, bool) or isinstance(right, bool):
            return False
        if isinstance(left, numbers) and isinstance(right, numbers):
            return compare(left, right)
        if isinstance(left, str) and isinstance(right, str):
            return compare(left, right)
        return False

    return ordered


def _contains(left: Any, right: Any) -> bool:
    if isinstance(right, list):
        return any(_equal(left, item) for item in right)
    if isinstance(right, str) and isinstance(left, str):
        return left in right
    return False


def _matches(left: Any, right: Any) -> bool:
    return isinstance(left, str) and isinstance(right, str) and fnmatch.fnmatchcase(left, right)


class _Parser:
    """Recursive descent over the token list; builds closures, not a tree."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def deeper(self) -> None:
        """Count one nesting level; refuse beyond :data:`MAX_FILTER_DEPTH`."""
        self.depth += 1
        if self.depth > MAX_FILTER_DEPTH:
            raise FilterError(
                f"nested deeper than {MAX_FILTER_DEPTH} levels at character "
                f"{self.token.position + 1}"
            )

    def error(self, expected: str) -> FilterError:
        token = self.token
        found = "the end" if token.kind == "end" else repr(token.text)
        return FilterError(f"expected {expected} at character {token.position + 1}, found {found}")

    def at_word(self, word: str) -> bool:
        return self.token.kind == "name" and self.token.text == word

    def parse(self) -> Predicate:
        predicate = self.parse_or()
        if self.token.kind != "end":
            raise self.error("'and', 'or' or the end")
        return predicate

    def parse_or(self) -> Predicate:
        terms = [self.parse_and()]
        while self.at_word("or"):
            self.advance()
            terms.append(self.parse_and())
        if len(terms) == 1:
            return terms[0]
        return lambda event: any(term(event) for term in terms)

    def parse_and(self) -> Predicate:
        terms = [self.parse_not()]
        while self.at_word("and"):
            self.advance()
            terms.append(self.parse_not())
        if len(terms) == 1:
            return terms[0]
        return lambda event: all(term(event) for term in terms)

    def parse_not(self) -> Predicate:
        if self.at_word("not"):
            self.deeper()
            self.advance()
            inner = self.parse_not()
            self.depth -= 1
            return lambda event: not inner(event)
        return self.parse_atom()

    def parse_atom(self) -> Predicate:
        if self.token.kind == "punct" and self.token.text == "(":
            self.deeper()
            self.advance()
            inner = self.parse_or()
            self.depth -= 1
            if not (self.token.kind == "punct" and self.token.text == ")"):
                raise self.error("')'")
            self.advance()
            return inner
        if self.token.kind != "name" or self.token.text in _KEYWORDS:
            raise self.error("a field such as data.namespace")
        path = self.advance().text
        compare = self.parse_operator()
        if compare is None:
            return lambda event: bool(field_value(event, path))
        literal = self.parse_literal()
        return lambda event: compare(field_value(event, path), literal)

    def parse_operator(self) -> Callable[[Any, Any], bool] | None:
        token = self.token
        if token.kind == "op":
            self.advance()
            if token.text == "==":
                return _equal
            if token.text == "!=":
                return lambda left, right: not _equal(left, right)
            return _ordered(token.text)
        if self.at_word("in"):
            self.advance()
            return _contains
        if self.at_word("matches"):
            self.advance()
            return _matches
        return None

    def parse_literal(self) -> Any:
        token = self.token
        if token.kind == "string":
            self.advance()
            text = token.text
            if text.startswith("'"):
                text = '"' + text[1:-1].replace('\\"', '"').replace('"', '\\"') + '"'
            try:
                return json.loads(text)
            except ValueError:
                raise FilterError(f"bad string at character {token.position + 1}") from None
        if token.kind == "number":
            self.advance()
            try:
                return json.loads(token.text)
            except ValueError:  # `04`, `1.`: the tokenizer is wider than JSON's numbers
                raise FilterError(
                    f"bad number {token.text!r} at character {token.position + 1}"
                ) from None
        if token.kind == "name" and token.text in ("true", "false", "null"):
            self.advance()
            return {"true": True, "false": False, "null": None}[token.text]
        if token.kind == "punct" and token.text == "[":
            self.deeper()
            self.advance()
            items: list[Any] = []
            while not (self.token.kind == "punct" and self.token.text == "]"):
                items.append(self.parse_literal())
                if self.token.kind == "punct" and self.token.text == ",":
                    self.advance()
                elif not (self.token.kind == "punct" and self.token.text == "]"):
                    raise self.error("',' or ']'")
            self.advance()
            self.depth -= 1
            return items
        raise self.error('a value (a "string", number, true, false, null or [list])')


def compile_filter(source: str) -> Predicate:
    """Parse ``source`` into a predicate over events.

    Raises:
        FilterError: the expression does not parse; the message gives the
            1-based character position.
    """
    if len(source) > MAX_FILTER_LENGTH:
        raise FilterError(f"longer than {MAX_FILTER_LENGTH} characters ({len(source)})")
    return _Parser(source).parse()
