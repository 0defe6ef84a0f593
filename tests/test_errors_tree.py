"""Every exception the package raises sits under one root, in the drawn tree."""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

import supervisor
from supervisor._core import errors

# Exceptions that never leave their module: control flow inside a parser or a
# client, turned into a one-line error (or an exit status) where they are caught.
PRIVATE = {"_TooDeep", "_RequestError", "CtlError", "_ArgumentError", "_StepError", "_Cycle"}


def _all_modules() -> list[ModuleType]:
    modules: list[ModuleType] = []
    for package in ("supervisor", "adapters"):
        root = importlib.import_module(package)
        modules.append(root)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if not info.name.endswith("__main__"):  # importing it would run the CLI
                modules.append(importlib.import_module(info.name))
    return modules


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    subclasses: list[type] = cls.__subclasses__()
    for sub in subclasses:
        found |= {sub} | _subclasses(sub)
    return found


def _drawn() -> dict[str, str | None]:
    """Each class in the docstring's tree, with its parent (None for the root)."""
    doc = errors.__doc__ or ""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^(\s*)(?:[│ ]*[├└]── )?([A-Z]\w+Error)\b", line)
        if not match or not line.startswith("    "):
            continue
        depth = len(line) - len(line.lstrip(" │├└─"))
        name = match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def test_the_drawn_tree_is_the_class_tree() -> None:
    """The module docstring draws every class under SupervisorError with its real parent."""
    drawn = _drawn()
    assert drawn["SupervisorError"] is None
    in_package = {
        cls for cls in _subclasses(errors.SupervisorError) if cls.__module__ == errors.__name__
    }
    assert set(drawn) - {"SupervisorError"} == {cls.__name__ for cls in in_package}
    for cls in in_package:
        parent = next(base for base in cls.__mro__[1:] if base.__name__ in drawn)
        assert drawn[cls.__name__] == parent.__name__, cls


def test_every_exception_class_of_the_package_is_under_the_root() -> None:
    """No public exception class anywhere in supervisor or adapters escapes SupervisorError."""
    outside = sorted(
        f"{module.__name__}.{name}"
        for module in _all_modules()
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
        and name not in PRIVATE
        and not issubclass(value, errors.SupervisorError)
    )
    assert not outside


def test_every_exception_of_the_package_is_defined_in_the_errors_module() -> None:
    """One home: apart from adapters' own, every SupervisorError subclass lives in _core.errors."""
    elsewhere = sorted(
        f"{cls.__module__}.{cls.__name__}"
        for cls in _subclasses(errors.SupervisorError)
        if cls.__module__.startswith("supervisor") and cls.__module__ != errors.__name__
    )
    assert not elsewhere


def test_misuse_and_unknown_names_are_also_the_stdlib_kinds() -> None:
    """UsageError is a RuntimeError and UnknownNameError a LookupError (and a KeyError)."""
    assert issubclass(supervisor.UsageError, RuntimeError)
    assert issubclass(supervisor.SupervisorNotRunningError, supervisor.UsageError)
    assert issubclass(supervisor.UnknownNameError, LookupError)
    error = supervisor.UnknownNameError("route", "nope", ("a", "b"))
    assert str(error) == "no route named 'nope' (routes: a, b)"
    assert (error.kind, error.name, error.known) == ("route", "nope", ("a", "b"))
