"""The layout shows the architecture (issue #28): services/ grouped by role as the table in
services/README.md says, every package in exactly one group, the docs' architecture page showing
the same grouping, and every module's first line saying what it is for."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "services"
TOP_LEVEL = {"common"}  # shared plumbing, beside cli.py, in no group
BEGIN, END = "<!-- layout:begin", "<!-- layout:end -->"


def block(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"{path.relative_to(ROOT)} has no layout block ({BEGIN} ... {END})"
    return text.split(BEGIN, 1)[1].split("\n", 1)[1].split(END, 1)[0]


def table(text: str) -> dict[str, list[str]]:
    """| `group/` | role | `pkg`, `pkg` | rows -> {group: [packages]} (a package named twice stays twice)."""
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    groups: dict[str, list[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        groups.setdefault(cells[0].strip("`").rstrip("/"), []).extend(re.findall(r"`([a-z_][a-z0-9_]*)`", cells[-1]))
    return groups


def is_package(path: Path) -> bool:
    return path.is_dir() and (path / "__init__.py").is_file()


def first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split())


def documented() -> dict[str, list[str]]:
    groups = table(block(SERVICES / "README.md"))
    assert groups, "services/README.md's layout block has no grouping table"
    return groups


def test_the_tree_is_the_documented_grouping():
    groups = documented()
    on_disk = {p.name for p in SERVICES.iterdir() if is_package(p)} - TOP_LEVEL
    assert on_disk == set(groups), (f"groups under services/ {sorted(on_disk)} differ from the table in "
                                    f"services/README.md {sorted(groups)}")
    for group, packages in groups.items():
        inside = sorted(p.name for p in (SERVICES / group).iterdir() if is_package(p))
        assert inside == sorted(packages), f"services/{group}/ holds {inside}; the table says {sorted(packages)}"
    loose = sorted(p.name for p in SERVICES.iterdir() if p.is_dir() and p.name not in TOP_LEVEL | set(groups)
                   and any(p.rglob("*.py")))
    assert not loose, f"packages outside any group: {loose} (put each in its group and the table)"


def test_every_package_is_in_exactly_one_group():
    named = [pkg for packages in documented().values() for pkg in packages]
    twice = sorted({pkg for pkg in named if named.count(pkg) > 1})
    assert not twice, f"named in more than one group: {twice}"
    assert not set(named) & (set(documented()) | TOP_LEVEL), "a package shares a group's name"


def test_each_package_line_is_its_first_docstring_line():
    text = block(SERVICES / "README.md")
    for group, packages in documented().items():
        for pkg in packages:
            expected = f"- `{pkg}/`: {first_line(SERVICES / group / pkg / '__init__.py')}"
            assert expected in text, f"services/README.md should list {pkg} as: {expected}"


def test_the_architecture_page_shows_the_same_grouping():
    assert block(ROOT / "docs" / "architecture.md") == block(SERVICES / "README.md"), (
        "docs/architecture.md's layout block differs from services/README.md's: copy it over")


def test_every_module_says_on_its_first_line_what_it_is_for():
    missing = [str(p.relative_to(ROOT)) for p in sorted(SERVICES.rglob("*.py"))
               if "__pycache__" not in p.parts and not first_line(p)]
    assert not missing, f"modules without a docstring: {missing}"
