"""YAML that remembers where things are, so every problem can name its file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aftersale.errors import Problem

Loc = tuple[str | int, ...]


@dataclass
class Located:
    """Plain data from a YAML file plus the 1-based line of every key and item in it."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor that has one."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def problem(self, loc: Loc, message: str, hint: str = "") -> Problem:
        return Problem(self.path, self.line(loc), message, hint)


def load_located(path: Path, display: str | None = None) -> tuple[Located | None, list[Problem]]:
    """Parse ``path``; on a syntax error return the problem with the line YAML stopped at."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(shown, 1, f"cannot read file: {exc}")]
    return parse_located(text, shown)


# A journey file is a page or two: these limits are far beyond any real one, and keep a hostile
# or broken file (aliases that refer to themselves, or multiply) from taking the loader down.
MAX_DEPTH = 50
MAX_VALUES = 100_000
ALIAS_HINT = "aliases (*name) repeat what they point to: check them"
_FAILED = object()


def parse_located(text: str, display: str) -> tuple[Located | None, list[Problem]]:
    """``(Located, problems)``, or ``(None, [the problem])`` when the text is not YAML we can
    read; never raises for any text."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        reason = exc.problem or exc.context or "invalid YAML"
        return None, [Problem(display, line, f"YAML syntax error: {reason}",
                              "check indentation and quoting around this line")]
    except yaml.reader.ReaderError as exc:  # a control character: a position, not a mark
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        char = exc.character
        code = ord(char) if isinstance(char, str) and len(char) == 1 else char
        return None, [Problem(display, line, f"YAML syntax error: character U+{code:04X} "
                                             "is not allowed in YAML",
                              "remove it, or write it as an escape in a double-quoted string")]
    except yaml.YAMLError as exc:
        return None, [Problem(display, 1, f"YAML syntax error: {exc}")]
    except RecursionError:
        return None, [Problem(display, 1, "YAML nested too deeply to read",
                              f"a journey needs far fewer than {MAX_DEPTH} levels")]
    located = Located(display, None)
    problems: list[Problem] = []
    if node is None:
        located.data = None
        return located, problems
    located.data = _Converter(located, problems).convert(node, (), ())
    return located, problems


class _Converter:
    """Nodes to plain data, every key's line remembered; a problem (not an exception) for a
    value that cannot be read, an unhashable key, an alias inside itself, or too much data."""

    def __init__(self, out: Located, problems: list[Problem]):
        self.out, self.problems = out, problems
        self.values = 0
        self.stopped = False  # one "too large" problem is enough

    def problem(self, node: yaml.Node, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.out.path, node.start_mark.line + 1, message, hint))

    def convert(self, node: yaml.Node, loc: Loc, inside: tuple[int, ...]) -> Any:
        self.out.lines.setdefault(loc, node.start_mark.line + 1)
        self.values += 1
        if self.values > MAX_VALUES or len(inside) > MAX_DEPTH:
            if not self.stopped:
                self.stopped = True
                # at the top-level field it happened in: an aliased node's own line is elsewhere
                line = self.out.lines.get(loc[:1], node.start_mark.line + 1)
                self.problems.append(Problem(
                    self.out.path, line, f"too large or nested too deeply (more than "
                                         f"{MAX_VALUES} values or {MAX_DEPTH} levels)",
                    ALIAS_HINT))
            return None
        if id(node) in inside:
            self.problem(node, "an alias (*name) refers to a value that contains it")
            return None
        inside = (*inside, id(node))
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key: Any = self.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else _FAILED
                if key is _FAILED or not _hashable(key):
                    if key is not _FAILED or not isinstance(key_node, yaml.ScalarNode):
                        self.problem(key_node, "a key must be a plain word")
                    continue
                if key in result:
                    self.problem(key_node, f"duplicate key '{key}'", "keep only one of them")
                child = (*loc, key)
                self.out.lines[child] = key_node.start_mark.line + 1
                result[key] = self.convert(value_node, child, inside)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*loc, i), inside) for i, item in enumerate(node.value)]
        value = self.scalar(node)
        return None if value is _FAILED else value

    def scalar(self, node: yaml.Node) -> Any:
        """The scalar's value, or ``_FAILED`` with the problem recorded."""
        try:
            return yaml.SafeLoader(" ").construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # "!!int abc", "!!timestamp 2026-13-45", a "<<" merge key, an unknown "!tag"
            reason = getattr(exc, "problem", None) or str(exc)
            self.problem(node, f"cannot read this value: {reason}",
                         "write it as plain text, without a !tag or <<")
            return _FAILED


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
