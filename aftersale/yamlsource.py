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


def parse_located(text: str, display: str) -> tuple[Located | None, list[Problem]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        reason = exc.problem or exc.context or "invalid YAML"
        return None, [Problem(display, line, f"YAML syntax error: {reason}",
                              "check indentation and quoting around this line")]
    located = Located(display, None)
    problems: list[Problem] = []
    if node is None:
        located.data = None
        return located, problems
    located.data = _convert(node, (), located, problems)
    return located, problems


def _convert(node: yaml.Node, loc: Loc, out: Located, problems: list[Problem]) -> Any:
    out.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(" ").construct_object(key_node)  # scalars only in practice
            if isinstance(key, (list, dict)):
                problems.append(Problem(out.path, key_node.start_mark.line + 1,
                                        "a key must be a plain word"))
                continue
            if key in result:
                problems.append(Problem(out.path, key_node.start_mark.line + 1,
                                        f"duplicate key '{key}'", "keep only one of them"))
            child = (*loc, key)
            out.lines[child] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, child, out, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*loc, i), out, problems) for i, item in enumerate(node.value)]
    return yaml.SafeLoader(" ").construct_object(node)
