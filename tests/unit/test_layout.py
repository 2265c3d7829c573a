"""The README's layout section is the tree: every module listed once, nothing listed that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[a-z_]+(?:\.py|/))(?:\s|$)")


def _listed() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    listed, folders = [], []  # folders: (indent, path) of the enclosing folders
    for line in block.splitlines():
        match = ENTRY.match(line)
        if not match:
            continue
        indent, name = len(match["indent"]), match["name"]
        while folders and folders[-1][0] >= indent:
            folders.pop()
        path = "/".join([f for _, f in folders] + [name.rstrip("/")])
        if name.endswith("/"):
            folders.append((indent, name.rstrip("/")))
        else:
            listed.append(path)
    return listed


def _tree() -> set[str]:
    found = set()
    for top in ("aftersale", "flows"):
        for path in (ROOT / top).rglob("*.py"):
            relative = path.relative_to(ROOT)
            if path.name == "__init__.py" or "migrations" in relative.parts:
                continue
            found.add(relative.as_posix())
    return found


def test_the_readme_lists_every_module_once_and_nothing_else() -> None:
    listed = _listed()
    assert len(listed) == len(set(listed)), "a module is listed twice"
    tree = _tree()
    assert sorted(tree - set(listed)) == [], "modules missing from README's layout"
    assert sorted(set(listed) - tree) == [], "README's layout lists modules that do not exist"


def test_no_package_hides_code_in_its_init() -> None:
    """A package's __init__ says what the folder holds; the code lives in named modules."""
    for init in (ROOT / "aftersale").rglob("__init__.py"):
        if "migrations" in init.parts:
            continue
        defined = re.findall(r"^(?:def|class|async def) (\w+)", init.read_text(), re.M)
        assert defined == [], f"{init.relative_to(ROOT)} defines {defined}: give them a module"


def test_the_library_never_imports_the_prefect_entrypoints() -> None:
    """flows/ is prefect.yaml's, one import each; the library reaches the flows in orchestration/."""
    for path in (ROOT / "aftersale").rglob("*.py"):
        source = path.read_text()
        assert not re.search(r"^\s*(from flows\b|import flows\b)", source, re.M), path
    for entrypoint in (ROOT / "flows").glob("*.py"):
        lines = [line for line in entrypoint.read_text().splitlines()
                 if line.strip() and not line.startswith(('"""', "__all__"))]
        assert lines == [f"from aftersale.orchestration.{entrypoint.stem} import {entrypoint.stem}"]
    assert not (ROOT / "flows" / "__init__.py").exists()  # a folder of files, not a package
