"""The default name of a program: what it is, not what runs it.

The name shows in events, ``supervise ctl``, instance names and Telegram, so
``bun .../loopwork/src/index.ts run`` must be ``loopwork``, not ``bun``. The
rule, applied word by word to the command line:

* a launcher (an interpreter, a package runner, a shell or a wrapper such as
  ``env`` or ``nohup``) is skipped with its options, and with the values of
  the options known to take one (``python -X dev``); ``python -m mod`` names
  ``mod``, ``env A=B cmd`` skips the assignments, ``sh -c 'loopwork run'``
  reads the script's first word, ``npx @scope/pkg@1`` names ``pkg``;
* a path gives its stem, unless the stem is generic (``index``, ``main``,
  ``cli``, ...): then the nearest directory above it that is not a build or
  source folder (``src``, ``bin``, ``dist``, ...), the working directory
  included, names it;
* the result is made a valid program name (letters, digits, ``_ . -``).

Only a launcher with nothing runnable after it (``python -c CODE``, ``bash``)
keeps the launcher's own name. The function is pure: it reads no files, so
the name never depends on what happens to be on disk.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

__all__ = ["GENERIC_STEMS", "LAUNCHERS", "SKIPPED_DIRS", "default_program_name"]

GENERIC_STEMS = frozenset({"index", "main", "cli", "__main__", "run", "app", "server", "start"})
SKIPPED_DIRS = frozenset({"src", "bin", "dist", "lib", "build", "out", "", ".", ".."})
_SCRIPT_SUFFIXES = frozenset(
    [
        ".py",
        ".pyw",
        ".pyz",
        ".js",
        ".mjs",
        ".cjs",
        ".ts",
        ".mts",
        ".cts",
        ".jsx",
        ".tsx",
        ".rb",
        ".pl",
        ".pm",
        ".sh",
        ".bash",
        ".zsh",
        ".php",
        ".lua",
        ".exs",
        ".jar",
    ]
)
_MAX_LENGTH = 64


@dataclass(frozen=True)
class _Launcher:
    """How a launcher's own words are skipped to reach what it runs.

    Attributes:
        valued: options whose value is the next word (``-X dev``).
        module: options naming a module to run (``-m mod``).
        inline: options whose value is code, not a name (``-c CODE``).
        script: options whose value is a shell command line (``sh -c``).
        subcommands: words to skip before the target (``bun run``).
        package: the target is a package spec (``@scope/name@1.2``).
        command: the target is itself a command line, read again (``env``).
        assignments: ``NAME=VALUE`` words are skipped (``env``).
        positional: plain words to skip before the target (``timeout 5``).
        directory: options naming the project's directory (``npm --prefix``).
    """

    valued: frozenset[str] = frozenset()
    module: frozenset[str] = frozenset()
    inline: frozenset[str] = frozenset()
    script: frozenset[str] = frozenset()
    subcommands: frozenset[str] = frozenset()
    package: bool = False
    command: bool = False
    assignments: bool = False
    positional: int = 0
    directory: frozenset[str] = field(default_factory=frozenset)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_PYTHON = _Launcher(
    valued=_words("-X -W --check-hash-based-pycs"), module=_words("-m"), inline=_words("-c")
)
_NODE = _Launcher(
    valued=_words(
        "-r --require --import --loader --experimental-loader -C --conditions --env-file --title"
    ),
    inline=_words("-e --eval -p --print"),
)
_SHELL = _Launcher(
    valued=_words("-o +o -O +O --rcfile --init-file"),
    script=_words("-c"),
    command=True,
)
_RUNNER = _Launcher(
    valued=_words("-p --package --registry --cache --userconfig --from --with --python"),
    script=_words("-c --call"),
    package=True,
)
_PACKAGE_MANAGER = _Launcher(
    valued=_words("--filter -F --workspace -w --registry --cache --userconfig"),
    directory=_words("--prefix -C --dir --cwd"),
    subcommands=_words("run run-script exec x dlx start"),
    package=True,
)

LAUNCHERS: dict[str, _Launcher] = {
    **dict.fromkeys(("python", "python2", "python3", "pypy", "pypy3"), _PYTHON),
    "node": _NODE,
    "nodejs": _NODE,
    "bun": _Launcher(
        valued=_words("-r --preload --env-file --config --tsconfig-override"),
        directory=_words("--cwd"),
        inline=_words("-e --eval -p --print"),
        subcommands=_words("run x exec"),
    ),
    "deno": _Launcher(
        valued=_words("-c --config --import-map --location --seed --lock --cert --env-file"),
        inline=_words("eval"),
        subcommands=_words("run task"),
    ),
    "tsx": _Launcher(valued=_words("--tsconfig --env-file"), subcommands=_words("watch")),
    "ts-node": _Launcher(
        valued=_words("-r --require -P --project -O --compiler-options --compiler -C"),
        inline=_words("-e --eval -p --print"),
    ),
    "ruby": _Launcher(valued=_words("-r -I -C -E --encoding"), inline=_words("-e")),
    "perl": _Launcher(valued=_words("-I -M -m"), inline=_words("-e -E")),
    "php": _Launcher(valued=_words("-c -d -z"), inline=_words("-r")),
    "lua": _Launcher(valued=_words("-l"), inline=_words("-e")),
    **dict.fromkeys(("npx", "bunx", "pnpx", "uvx", "pipx"), _RUNNER),
    **dict.fromkeys(("npm", "pnpm", "yarn"), _PACKAGE_MANAGER),
    "uv": _Launcher(
        valued=_words(
            "--with --with-requirements --python -p --from --env-file --extra --group "
            "--package --index --index-url --only-group"
        ),
        directory=_words("--project --directory"),
        module=_words("-m --module"),
        subcommands=_words("run tool"),
        command=True,
    ),
    **dict.fromkeys(("sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish"), _SHELL),
    "env": _Launcher(valued=_words("-u --unset -C --chdir"), command=True, assignments=True),
    "exec": _Launcher(valued=_words("-a"), command=True),
    "nohup": _Launcher(command=True),
    "setsid": _Launcher(command=True),
    "nice": _Launcher(valued=_words("-n --adjustment"), command=True),
    "stdbuf": _Launcher(valued=_words("-i -o -e"), command=True),
    "time": _Launcher(valued=_words("-f --format -o --output"), command=True),
    "timeout": _Launcher(valued=_words("-s --signal -k --kill-after"), command=True, positional=1),
}
# `env -S 'cmd args'` carries a command line in one word, like `sh -c`.
LAUNCHERS["env"] = _Launcher(
    valued=LAUNCHERS["env"].valued,
    script=_words("-S --split-string"),
    command=True,
    assignments=True,
)

_VERSIONED = re.compile(r"^(python|pypy|ruby|perl|node|php|lua)\d+(\.\d+)*$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")


def _launcher(word: str) -> _Launcher | None:
    base = PurePosixPath(word).name if word else ""
    found = LAUNCHERS.get(base)
    if found is None and _VERSIONED.match(base):
        found = LAUNCHERS.get(re.sub(r"[\d.]+$", "", base)) or _PYTHON
    return found


def default_program_name(command: Sequence[str], cwd: str = "") -> str:
    """The program's name for ``command`` run in ``cwd`` (absolute, or empty if unknown).

    Always matches ``^[A-Za-z0-9][A-Za-z0-9_.-]*$``; ``program`` if nothing
    in the command gives a usable name.
    """
    return _sanitise(_raw_name(list(command), cwd, depth=0)) or "program"


def _raw_name(words: list[str], cwd: str, depth: int) -> str:
    if not words:
        return ""
    launcher = _launcher(words[0]) if depth < 8 else None
    if launcher is None:
        return _path_name(words[0], cwd)
    target, cwd = _target(launcher, words[1:], cwd, depth)
    return target if target else PurePosixPath(words[0]).name


def _target(launcher: _Launcher, rest: list[str], cwd: str, depth: int) -> tuple[str, str]:
    """What the launcher runs, as a name, and the directory it runs in."""
    index = 0
    positional = launcher.positional
    subcommands = launcher.subcommands
    while index < len(rest):
        word = rest[index]
        value = rest[index + 1] if index + 1 < len(rest) else None
        option, equals, attached = word.partition("=")
        if word == "--":
            index += 1
            break
        if option in launcher.module:
            module = attached if equals else value
            return (_module_name(module, cwd) if module else ""), cwd
        if option in launcher.script or _short_cluster_has(word, launcher.script):
            script = attached if equals else value
            return (_script_name(script, cwd, depth) if script else ""), cwd
        if option in launcher.inline:
            return "", cwd
        if option in launcher.directory:
            directory = attached if equals else value
            if directory:
                cwd = _join(cwd, directory)
            index += 1 if equals else 2
            continue
        if option in launcher.valued:
            index += 1 if equals else 2
            continue
        if word.startswith(("-", "+")) and len(word) > 1:
            index += 1
            continue
        if launcher.assignments and _ASSIGNMENT.match(word):
            index += 1
            continue
        if word in subcommands:
            index += 1
            continue
        if positional:
            positional -= 1
            index += 1
            continue
        break
    if index >= len(rest):
        # `npm start`, `npm --prefix ../loopwork test`: the project's directory.
        return (_directory_name(cwd) if launcher.directory else ""), cwd
    word = rest[index]
    if launcher.command or _launcher(word) is not None:
        return _raw_name(rest[index:], cwd, depth + 1), cwd
    if launcher.package and not _looks_like_path(word):
        package = _package_name(word)
        if _launcher(package) is not None:  # `npx tsx src/index.ts`
            return _raw_name([package, *rest[index + 1 :]], cwd, depth + 1), cwd
        return package, cwd
    return _path_name(word, cwd), cwd


def _directory_name(path: str) -> str:
    """The innermost directory of ``path`` that is not a build or source folder."""
    for directory in reversed(PurePosixPath(path).parts):
        if directory.lower() not in SKIPPED_DIRS and directory != "/":
            return directory
    return ""


def _short_cluster_has(word: str, options: frozenset[str]) -> bool:
    """``bash -lc``/``-ec``: a cluster of one-letter flags that includes ``-c``."""
    if len(word) < 3 or word[0] != "-" or word[1] == "-" or "=" in word:
        return False
    return any(len(o) == 2 and o[0] == "-" and o[1] in word[1:] for o in options)


def _script_name(script: str, cwd: str, depth: int) -> str:
    try:
        words = shlex.split(script, comments=True)
    except ValueError:
        words = script.split()
    while words and _ASSIGNMENT.match(words[0]):
        words = words[1:]
    return _raw_name(words, cwd, depth + 1)


def _looks_like_path(word: str) -> bool:
    return word.startswith((".", "/", "~")) or PurePosixPath(word).suffix in _SCRIPT_SUFFIXES


def _package_name(spec: str) -> str:
    """``@scope/name@1.2`` -> ``name``; ``ruff==0.6`` and ``pkg[extra]`` -> the package."""
    spec = spec.removeprefix("@")
    spec = re.split(r"[@=<>~!\[;\s]", spec, maxsplit=1)[0]
    return spec.rstrip("/").rsplit("/", 1)[-1]


def _module_name(module: str, cwd: str) -> str:
    """``pkg.cli`` is named like the path ``pkg/cli``: a generic module names its package."""
    return _path_name(module.replace(".", "/"), cwd, strip_suffix=False)


def _join(cwd: str, path: str) -> str:
    joined = PurePosixPath(cwd or ".") / path if not path.startswith("/") else PurePosixPath(path)
    parts: list[str] = []
    for part in joined.parts:
        if part == "..":
            if parts and parts[-1] not in ("/", ".."):
                parts.pop()
            elif not parts or parts[-1] != "/":
                parts.append(part)
        elif part != ".":
            parts.append(part)
    return str(PurePosixPath(*parts)) if parts else ""


def _path_name(word: str, cwd: str, *, strip_suffix: bool = True) -> str:
    path = PurePosixPath(_join(cwd, word)) if "/" in word else PurePosixPath(word)
    name = path.name
    if strip_suffix and path.suffix in _SCRIPT_SUFFIXES and path.stem:
        name = path.stem
    if name.lower() not in GENERIC_STEMS:
        return name
    return _directory_name(str(path.parent) if "/" in word else cwd) or name


def _sanitise(name: str) -> str:
    """Letters, digits, ``_ . -`` only, starting with a letter or digit, bounded."""
    cleaned = _INVALID.sub("-", name)
    cleaned = cleaned.lstrip("_.-")[:_MAX_LENGTH].rstrip("-")
    return cleaned
