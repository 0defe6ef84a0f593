"""The public names: one table at the package root, checked for exact equality.

As httpx's ``test_exported_members``: what ``__all__`` says is exactly what
the package offers, the type checkers' copy says the same, and names that
left the root still work for one release, with a warning naming their home.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import supervisor
import supervisor.lowlevel
import supervisor.sinks

INIT = Path(supervisor.__file__)


def _type_checking_imports() -> dict[str, str]:
    """Name -> module of each ``from MODULE import NAME as NAME`` under TYPE_CHECKING."""
    found: dict[str, str] = {}
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    assert alias.asname == alias.name, "re-export as `X as X`"
                    found[alias.name] = "." * statement.level + (statement.module or "")
    return found


def test_all_is_exactly_the_export_table() -> None:
    """``__all__`` is the table's names, and the names ``dir()`` shows beyond the module's own."""
    exports = supervisor._EXPORTS
    assert supervisor.__all__ == list(exports)
    assert len(set(supervisor.__all__)) == len(supervisor.__all__)
    public = {name for name in dir(supervisor) if not name.startswith("_")}
    assert public - {"emit", "sinks", "lowlevel", "testing"} == set(exports)


def test_the_type_checkers_copy_matches_the_table() -> None:
    """The TYPE_CHECKING imports name the same modules as the run-time table."""
    assert _type_checking_imports() == supervisor._EXPORTS


def test_every_exported_name_resolves_to_its_module() -> None:
    """Each name comes from the module the table says, and is defined there."""
    for name, module in supervisor._EXPORTS.items():
        value = getattr(supervisor, name)
        assert getattr(value, "__module__", "supervisor" + module) == "supervisor" + module, name


def test_the_root_has_about_fifty_user_level_names() -> None:
    """The root stays small: low-level names live in supervisor.lowlevel."""
    assert 45 <= len(supervisor.__all__) <= 65
    assert not set(supervisor.__all__) & set(supervisor.lowlevel.__all__)


@pytest.mark.parametrize("name", sorted(supervisor._MOVED))
def test_a_moved_name_still_imports_with_a_deprecation_warning(name: str) -> None:
    """A moved name still imports from the root, warning with its new home; same object."""
    home = supervisor._MOVED[name]
    with pytest.warns(DeprecationWarning, match=f"use {home}.{name}"):
        value = getattr(supervisor, name)
    __import__(home)
    assert value is getattr(sys.modules[home], name)


def test_a_renamed_name_warns_and_gives_the_new_class() -> None:
    """``InvalidFrame`` became ``MalformedFrame``: the old name warns and is the same class."""
    with pytest.warns(DeprecationWarning, match="supervisor.MalformedFrame"):
        old = supervisor.InvalidFrame
    assert old is supervisor.MalformedFrame
    with pytest.warns(DeprecationWarning, match="InvalidFrame"):  # every access, not the first
        from supervisor import InvalidFrame  # noqa: F401


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name that never existed is an AttributeError, not a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no_such_name"):
            _ = supervisor.no_such_name


def test_lowlevel_exports_exactly_what_it_imports() -> None:
    """``supervisor.lowlevel`` re-exports every name it imports, and only those."""
    imported = {name for name in vars(supervisor.lowlevel) if not name.startswith("_")}
    assert set(supervisor.lowlevel.__all__) == imported


@pytest.mark.parametrize("module", [supervisor.lowlevel, supervisor.sinks])
def test_every_name_a_public_module_exports_exists(module: object) -> None:
    """Nothing in a public module's ``__all__`` is missing from the module."""
    missing = [name for name in module.__all__ if not hasattr(module, name)]  # type: ignore[attr-defined]
    assert not missing


def test_importing_emit_does_not_import_trio_or_pydantic() -> None:
    """A child that only writes frames pays for neither trio nor pydantic."""
    code = "import sys, supervisor.emit; print('trio' in sys.modules, 'pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
