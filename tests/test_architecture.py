"""The shape of the package: jobs free of I/O, no import cycles (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "automations"
IO_MODULES = ("smtplib", "imaplib", "sqlite3", "openpyxl", "gspread", "requests")


def test_importing_the_jobs_loads_no_io_library() -> None:
    code = ("import sys, automations.jobs; "
            f"print(','.join(m for m in {IO_MODULES!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent).stdout.strip()
    assert loaded == "", f"importing automations.jobs loads {loaded}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules *path* imports, at the top or inside functions (`from a import b`: a.b if a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                      for alias in node.names}
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, as the modules along it, or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "automations.executor" in graph and "automations.jobs.plan" in graph["automations.jobs.outreach"]
    assert find_cycle(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_jobs_import_only_the_model_the_core_and_each_other() -> None:
    allowed = ("automations.jobs", "automations.core", "automations.model", "automations.config",
               "automations.schema", "automations.cells", "automations.errors", "automations.metrics",
               "automations.check", "automations.sheets.base", "automations.mail.message", "automations.todo")
    graph = import_graph()
    for job, imported in graph.items():
        if job.startswith("automations.jobs"):
            assert {m for m in imported if not m.startswith(allowed)} == set(), job
