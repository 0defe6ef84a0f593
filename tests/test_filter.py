"""Route filter expressions: parsing, errors with positions, and evaluation
checked against a plain-Python reference over generated events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import Event
from supervisor._core.errors import FilterError
from supervisor._core.filter import compile_filter, field_value
from supervisor._core.messages import parse_message


def event(name: str = "task_complete", program: str = "loop", **data: Any) -> Event:
    message = parse_message({"type": "ipc", "event": name, "data": {"taskId": "T-1", **data}})
    return Event(3, program, 1000, "child", message)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('data.namespace == "prod"', True),
        ("data.namespace == 'prod'", True),
        ('data.namespace != "prod"', False),
        ('event == "task_complete" and program matches "lo*"', True),
        ('event == "task_failed" or data.duration > 100', True),
        ("data.duration >= 1500 and data.duration < 1501", True),
        ("not data.success", False),
        ("data.success == true", True),
        ("data.missing == null", True),
        ("data.missing", False),
        ('data.namespace in ["dev", "prod"]', True),
        ('"od" in data.namespace', False),  # a literal cannot start a comparison
        ('data.namespace in "production"', True),
        ('data.duration > "abc"', False),  # different kinds never order
        ("seq == 3 and received_at == 1000", True),
        ('data.extra.deep == "x"', True),
        ("(data.duration > 2000 or data.success) and not data.missing", True),
        ("data.duration == 1500.0", True),
        ("data.success == 1", False),  # true is not 1
    ],
)
def test_expressions(expression: str, expected: bool) -> None:
    sample = event(namespace="prod", duration=1500, success=True, extra={"deep": "x"})
    if expression.startswith('"od"'):
        with pytest.raises(FilterError):
            compile_filter(expression)
        return
    assert compile_filter(expression)(sample) is expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("data.x ==", "expected a value"),
        (
            "data.x == 1 and",
            "expected a field such as data.namespace at character 16, found the end",
        ),
        (
            "data.x === 1",
            "unexpected '=' at character 10",
        ),
        ("(data.x == 1", "expected ')' at character 13"),
        ("data.x == 1 data.y", "expected 'and', 'or' or the end at character 13"),
        ("data.x == [1, 2", "expected ',' or ']'"),
        ("data.x ~ 1", "unexpected '~' at character 8"),
        ("", "expected a field"),
    ],
)
def test_errors_name_the_position(expression: str, error: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(expression)
    assert str(caught.value).startswith(error)


def test_field_values() -> None:
    sample = event(namespace="prod", options=[1, 2])
    assert field_value(sample, "event") == "task_complete"
    assert field_value(sample, "messageId") == sample.message_id
    assert field_value(sample, "data.taskId") == "T-1"
    assert field_value(sample, "data.options") == [1, 2]
    assert field_value(sample, "data.taskId.deeper") is None
    assert field_value(sample, "nonsense") is None
    assert field_value(sample, "program.x") is None


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, -1.5]),
    st.sampled_from(["a", "b", "prod", "", "x y", 'q"uote']),
)


def reference(op: str, left: Any, right: Any) -> bool:
    """What each comparison means, written the obvious way."""

    def same_kind(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool):
            return False
        numbers = (int, float)
        return (isinstance(a, numbers) and isinstance(b, numbers)) or (
            isinstance(a, str) and isinstance(b, str)
        )

    def equal(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool):
            return type(a) is type(b) and a == b
        return bool(a == b)

    if op == "==":
        return equal(left, right)
    if op == "!=":
        return not equal(left, right)
    if op == "in":
        return (
            any(equal(left, item) for item in right)
            if isinstance(right, list)
            else (isinstance(left, str) and isinstance(right, str) and left in right)
        )
    if not same_kind(left, right):
        return False
    return bool(
        {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    )


@settings(max_examples=400)
@given(
    value=scalars,
    literal=st.one_of(scalars, st.lists(scalars, max_size=3)),
    op=st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in"]),
    negate=st.booleans(),
)
def test_comparisons_agree_with_the_reference(
    value: Any, literal: Any, op: str, negate: bool
) -> None:
    if isinstance(literal, list) and op != "in":
        literal = literal[0] if literal else None
    expression = f"{'not ' if negate else ''}data.v {op} {json.dumps(literal)}"
    result = compile_filter(expression)(event(v=value))
    assert result is (reference(op, value, literal) != negate)


@settings(max_examples=300)
@given(st.text(max_size=30))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    """Garbage never raises anything but FilterError, and a parsed filter never raises."""
    try:
        predicate = compile_filter(text)
    except FilterError as exc:
        problem = str(exc)
    else:
        assert predicate(event(v=1)) in (True, False)
        return
    assert "\n" not in problem
    assert " at character " in problem or problem.startswith("bad string")
