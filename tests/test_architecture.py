"""The import direction and the size rules of the codebase, checked on every run.

``bot`` is the platform-neutral core: it never imports ``adapters``, a platform library or
the offline stand-in. Adapters talk to the service only, never to the store. The stand-in
is independent of the code it stands in for.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in modules(package):
        for name in imported(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_core_imports_no_adapter_platform_or_stand_in() -> None:
    assert offenders("bot", ("adapters", "discord", "slack_bolt", "slack_sdk",
                             "offline_gemini")) == []


def test_adapters_never_reach_the_store() -> None:
    assert offenders("adapters", ("bot.store",)) == []
    touching = [str(p.relative_to(ROOT)) for p in modules("adapters")
                if ".service.store" in p.read_text(encoding="utf-8")]
    assert touching == []


def test_stand_in_is_independent_of_what_it_stands_in_for() -> None:
    assert offenders("offline_gemini", ("bot", "adapters")) == []


def test_the_checks_catch_a_bad_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from adapters.serve import serve\nimport bot.store\n")
    assert list(imported(bad)) == ["adapters.serve", "adapters.serve.serve", "bot.store"]


@pytest.mark.parametrize("package", ["bot", "adapters", "offline_gemini"])
def test_files_and_functions_stay_readable(package: str) -> None:
    long_files, long_functions = [], []
    for path in modules(package):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(str(path.relative_to(ROOT)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.name} ({length})")
    assert long_files == [] and long_functions == []
