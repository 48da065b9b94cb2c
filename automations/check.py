"""`partnerloop init` and `partnerloop check`: lay out the spreadsheet, then validate every row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from automations.config import Settings
from automations.core import JOB_NAMES
from automations.model import Book, Problem, read_book
from automations.schema import TABS
from automations.sheets.base import Backend, RowWrite

NEEDS_ATTENTION = "Needs attention: "
CHECKED = "Checked: no problems"


def init_sheet(backend: Backend, settings: Settings, demo_rows: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> list[str]:
    """Create the missing tabs and columns (never deleting or reordering); optionally add sample rows."""
    tabs = [(settings.sheet.title(key), spec) for key, spec in TABS.items() if key != "dashboard"]
    demo = {settings.sheet.title(key): rows for key, rows in (demo_rows or {}).items()}
    return backend.ensure_layout(tabs, demo)


@dataclass(frozen=True)
class CheckResult:
    problems: list[Problem]
    rows: int
    lost: list[str]
    layout: list[str] = field(default_factory=list)  # missing tabs and columns, each with its fix


def check_sheet(backend: Backend, settings: Settings) -> CheckResult:
    """Validate every row, write each row's problems (or that it is fine) to its Automation status.

    A missing tab or column (for any job) is reported instead, and nothing is written: rows read
    without their columns would get wrong statuses.
    """
    book = read_book(backend, settings, jobs=JOB_NAMES, strict=False)
    if book.layout:
        return CheckResult(book.problems, len(book.rows()), [], book.layout)
    specs = {settings.sheet.title(k): TABS[k] for k in TABS}
    lost = backend.write(specs, book.new_ids).lost  # IDs first: the statuses below address rows by them
    report = backend.write(specs, status_writes(book))
    report.lost = lost + report.lost
    return CheckResult(book.problems, len(book.rows()), report.lost)


def status_writes(book: Book) -> list[RowWrite]:
    """A status for every row: its problems, or clearing a problem status that no longer applies."""
    grouped = book.problems_by_ref()
    writes = [ref.write({"Automation status": problem_status(messages)}) for ref, messages in grouped.items()]
    for row in book.rows():
        if row.ref not in grouped and row.status.startswith(NEEDS_ATTENTION):
            writes.append(row.ref.write({"Automation status": CHECKED}))
    return writes


def problem_status(messages: Sequence[str]) -> str:
    return NEEDS_ATTENTION + "; ".join(messages)
