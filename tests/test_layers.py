"""The package's layers are a test: every import is parsed and checked against the arrows.

Imports inside functions and under ``TYPE_CHECKING`` count as much as the
ones at the top: a cycle through a function-level import is still a cycle a
newcomer has to untangle, and a type-only import still says which layer knows
which. The rules are the ones the README's architecture section draws.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("supervisor", "adapters")

# Which layer may import which. A module's layer is its first private
# subpackage (``supervisor._core.frames`` is ``_core``), or the module itself
# for the top-level ones. ``emit`` depends on nothing of ours.
LAYER_MAY_IMPORT: dict[str, frozenset[str]] = {
    "emit": frozenset(),
    "_core": frozenset({"_core"}),
    "_paths": frozenset({"_core"}),
    "_clock": frozenset(),
    "_logfile": frozenset(),
    "_routing": frozenset({"_core", "_clock", "_paths", "_routing", "sinks", "adapters"}),
    "_config": frozenset({"_core", "_paths", "_routing"}),
    "sinks": frozenset({"_core", "_logfile"}),
    "_process": frozenset({"_core", "_clock", "_logfile", "_paths", "_config", "_process"}),
    "_metrics": frozenset({"_core", "_clock", "_process", "_routing", "_metrics"}),
    "_supervisor": frozenset(
        {"_core", "_clock", "_paths", "_config", "_process", "_routing", "_metrics", "sinks"}
    ),
    "_control": frozenset({"_core", "_paths", "_process", "_routing", "_supervisor", "_control"}),
    "lowlevel": frozenset(
        {
            "_core",
            "_clock",
            "_logfile",
            "_paths",
            "_config",
            "_process",
            "_routing",
            "_metrics",
            "_control",
            "sinks",
        }
    ),
    "testing": frozenset({"_core", "_clock", "sinks"}),
    "__init__": frozenset(
        {"_core", "_config", "_process", "_routing", "_metrics", "_supervisor", "sinks", "testing"}
    ),
    # ts-ipc: its own state and tmux I/O; the agent runs inside a supervisor.
    "_ipc": frozenset({"_core", "_paths", "_ipc", "emit", "_supervisor"}),
    # The hub: instances through their control sockets; no supervisor of its own.
    "_hub": frozenset({"_core", "_paths", "_process", "_routing", "_control", "_hub"}),
    "_cli": frozenset(
        {
            "__init__",
            "_ipc",
            "_hub",
            "_core",
            "_paths",
            "_config",
            "_process",
            "_routing",
            "_metrics",
            "_control",
            "_supervisor",
            "_cli",
            "adapters",
        }
    ),
    "__main__": frozenset({"_cli"}),
}

# What the sans-IO core may not import: anything that reaches the world.
IO_MODULES = frozenset(
    {"trio", "os", "time", "socket", "subprocess", "sqlite3", "httpx", "pexpect", "ptyprocess"}
)
# ``signal`` is not among them: the core names signals (``signal.Signals``), it sends none.
IO_MODULES |= {"select", "selectors", "threading", "asyncio", "shutil", "tempfile"}

# The names an adapter may import from supervisor: the public modules.
PUBLIC_MODULES = frozenset(
    {"supervisor", "supervisor.sinks", "supervisor.testing", "supervisor.lowlevel"}
)


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


MODULES = dict(_modules())


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, anywhere in it, as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            found.add(target)
            for alias in node.names:  # ``from . import child`` imports a module
                if f"{target}.{alias.name}" in MODULES:
                    found.add(f"{target}.{alias.name}")
    return found


def imports_of(module: str) -> set[str]:
    """Every module ``module`` imports, anywhere in its source."""
    path = MODULES[module]
    return imports_in(path.read_text(), module, path.name == "__init__.py")


def _ours(name: str) -> str | None:
    """The module of ours that ``name`` is, or lives in."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "adapters":
        return "adapters"
    if len(parts) == 1:
        return "__init__"
    return parts[1]


GRAPH = {
    module: {ours for name in imports_of(module) if (ours := _ours(name)) and ours != module}
    for module in MODULES
}


def _cycle() -> list[str] | None:
    """One import cycle between modules, if there is any (a depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            # A package's ``__init__`` is imported on the way to its modules;
            # only an explicit import of it makes an edge.
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_parser_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    """Imports inside functions, under TYPE_CHECKING and relative ones all count."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..sinks import Sink\n"
        "def later() -> None:\n"
        "    from .._core import frames\n"
        "    import trio\n"
    )
    found = imports_in(source, "supervisor._routing.router")
    assert {"supervisor.sinks", "supervisor._core", "supervisor._core.frames", "trio"} <= found
    assert "supervisor._cli.ctl" in GRAPH["supervisor._cli.main"]


def test_no_import_cycle_between_modules() -> None:
    """No module reaches itself through imports, counting every import in its source."""
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) == "_core"))
def test_the_core_does_no_io(module: str) -> None:
    """The sans-IO core imports nothing that reaches the world, and no other layer of ours."""
    reaching = sorted(name for name in imports_of(module) if name.split(".")[0] in IO_MODULES)
    assert not reaching, f"{module} imports {reaching}"
    outside = sorted(t for t in GRAPH[module] if layer_of(t) != "_core")
    assert not outside, f"{module} imports {outside}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("adapters")))
def test_adapters_use_only_the_public_surface(module: str) -> None:
    """An adapter imports public supervisor modules only, as a third-party sink would."""
    private = sorted(
        name
        for name in imports_of(module)
        if name.startswith("supervisor") and name not in PUBLIC_MODULES
    )
    assert not private, f"{module} imports {private}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("supervisor")))
def test_each_layer_imports_only_the_layers_below_it(module: str) -> None:
    """Every arrow between layers is one the architecture allows."""
    layer = layer_of(module)
    allowed = LAYER_MAY_IMPORT[layer] | {layer}
    wrong = sorted(
        target
        for target in GRAPH[module]
        if layer_of(target) not in allowed and not module.startswith(target + ".")
    )
    assert not wrong, f"{module} ({layer}) imports {wrong}"


def test_only_main_imports_the_cli() -> None:
    """The command line is a leaf: nothing but ``__main__`` and itself imports it."""
    importers = sorted(
        module
        for module, targets in GRAPH.items()
        if layer_of(module) not in {"_cli", "__main__"}
        and any(layer_of(t) == "_cli" for t in targets)
    )
    assert not importers, f"the CLI is imported by {importers}"


def test_only_the_sink_factory_names_adapters() -> None:
    """Of the package, only the routing layer's sink factory (and the CLI) import an adapter."""
    importers = sorted(
        module
        for module, targets in GRAPH.items()
        if module.startswith("supervisor")
        and layer_of(module) != "_cli"
        and any(t.startswith("adapters") for t in targets)
    )
    assert importers == ["supervisor._routing.factory"], importers
