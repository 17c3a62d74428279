"""The package's shape: a CVAT door never imports another door; entry files stay thin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from autotrack.cvat import DOORS

ROOT = Path(__file__).resolve().parents[1]
CVAT = ROOT / "shared" / "autotrack" / "cvat"


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names (absolute form)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    inside = path.is_relative_to(ROOT / "shared")
    package = ".".join(path.relative_to(ROOT / "shared").parts[:-1]) if inside else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def door_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["autotrack", "cvat"] and len(parts) > 2 and parts[2] in DOORS:
        return parts[2]
    return None


def test_every_door_is_a_package() -> None:
    for door in DOORS:
        assert (CVAT / door / "__init__.py").is_file(), door
    flat = sorted(p.name for p in CVAT.glob("*.py") if p.name != "__init__.py")
    assert flat == ["label_spec.py"], f"modules outside a door: {flat}"


@pytest.mark.parametrize("door", DOORS)
def test_a_door_never_imports_another_door(door: str) -> None:
    crossings = []
    for path in sorted((CVAT / door).rglob("*.py")):
        for module in imported_modules(path):
            other = door_of(module)
            if other is not None and other != door:
                crossings.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not crossings, "\n".join(crossings)


def test_nothing_below_the_doors_imports_a_door() -> None:
    crossings = []
    for path in sorted((ROOT / "shared" / "autotrack").rglob("*.py")):
        inside = path.relative_to(ROOT / "shared" / "autotrack").parts
        if inside[0] == "cvat" and len(inside) > 2 and inside[1] in DOORS:
            continue  # a door itself
        if inside[0] == "cli.py" or inside[:1] == ("evaluate",):
            continue  # the command line sits above the doors
        for module in imported_modules(path):
            if door_of(module) is not None:
                crossings.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not crossings, "\n".join(crossings)


def test_the_rule_sees_a_crossing(tmp_path: Path) -> None:
    """The checker itself: a relative and an absolute import of another door are both seen."""
    fake = ROOT / "shared" / "autotrack" / "cvat" / "sdk" / "_probe_for_test.py"
    source = "from ..nuclio import detector\nimport autotrack.cvat.task.backup\n"
    fake.write_text(source, encoding="utf-8")
    try:
        doors = {door_of(m) for m in imported_modules(fake)} - {None}
    finally:
        fake.unlink()
    assert doors == {"nuclio", "task"}


@pytest.mark.parametrize("path", sorted((ROOT / "functions").glob("*.py")), ids=lambda p: p.name)
def test_function_files_only_reach_the_sdk_door(path: Path) -> None:
    modules = {m for m in imported_modules(path) if m.startswith("autotrack")}
    assert modules and all(door_of(m) == "sdk" for m in modules), modules
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 40


@pytest.mark.parametrize("path", sorted(ROOT.glob("serverless/*/nuclio/main.py")),
                         ids=lambda p: p.parent.parent.name)
def test_nuclio_handlers_only_reach_the_nuclio_door(path: Path) -> None:
    modules = {m for m in imported_modules(path) if m.startswith("autotrack")}
    assert modules and all(door_of(m) == "nuclio" for m in modules), modules
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 40


def test_tools_hold_no_user_command() -> None:
    """User commands ship with the package (``autotrack ...``); tools/ is for developers."""
    assert not (ROOT / "tools" / "annotate_task.py").exists()
