"""`partnerloop init` and `partnerloop check`: lay out the spreadsheet, then validate every row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from automations.config import Settings
from automations.core import JOB_NAMES
from automations.model import OLD_PROCEDURE_PROBLEM, Book, Problem, RowRef, clinical_words, read_book
from automations.schema import LEGACY_PROCEDURE, SHARES, TABS
from automations.sheets.base import Backend, RowWrite

NEEDS_ATTENTION = "Needs attention: "
CHECKED = "Checked: no problems"
WARNING = "Warning: "


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
    warnings: list[Problem] = field(default_factory=list)  # worth a look, not a problem: check still passes
    migration: list[str] = field(default_factory=list)  # what to do about an old column, said once for the tab

    def printed_problems(self) -> list[Problem]:
        """The problems to print one by one: the old-column rows are named together in `migration`."""
        return [p for p in self.problems if p.message != OLD_PROCEDURE_PROBLEM]


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
    found = warnings(book)
    report = backend.write(specs, status_writes(book, found))
    report.lost = lost + report.lost
    return CheckResult(book.problems, len(book.rows()), report.lost, warnings=found, migration=migration(book))


def status_writes(book: Book, found: Sequence[Problem] = ()) -> list[RowWrite]:
    """A status for every row: its problems and warnings, or clearing a status that no longer applies."""
    grouped = book.problems_by_ref()
    warned: dict[RowRef, list[str]] = {}
    for warning in found:
        warned.setdefault(warning.ref, []).append(warning.message)
    writes = []
    for ref, messages in grouped.items():
        also = f"; warning: {'; '.join(warned[ref])}" if ref in warned else ""
        writes.append(ref.write({"Automation status": problem_status(messages) + also}))
    for row in book.rows():
        if row.ref in grouped:
            continue
        before = _without_warning(row.status)  # what the jobs last said stays; the warning goes after it
        if before.startswith(NEEDS_ATTENTION):
            before = ""  # a problem since fixed
        if row.ref in warned:
            status = (f"{before}{WARNING_AFTER}" if before else WARNING) + "; ".join(warned[row.ref])
        elif before != row.status:  # a warning, or a problem since fixed, to clear
            status = before or CHECKED
        else:
            status = row.status
        if status != row.status:
            writes.append(row.ref.write({"Automation status": status}))
    return writes


WARNING_AFTER = " · " + WARNING  # a warning after what a job last said on the row


def _without_warning(status: str) -> str:
    """A row's status without the warning `check` added to it."""
    if status.startswith(WARNING):
        return ""
    return status.split(WARNING_AFTER, 1)[0]


def warnings(book: Book) -> list[Problem]:
    """What staff should look at without failing the check: a Goal that reads as clinical (even where Share
    allows the partner to see it), and Consent = Yes without Consent expires (nothing is shared until it is set)."""
    found = []
    for r in book.referrals:
        if r.problems:
            continue
        words = clinical_words(r.goal)
        if words:
            seen = "; Share lets the partner see it" if r.direction == "Out" and r.share == SHARES[2] else ""
            found.append(Problem(r.ref, f"Goal reads as clinical ({', '.join(repr(w) for w in words)}): write what "
                                        f"the patient wants to get back to, like Back to running 5k{seen}"))
        if r.consent == "Yes" and r.consent_expires is None:
            found.append(Problem(r.ref, "Consent is Yes but Consent expires is empty: add the expiry date from the "
                                        "signed authorization; nothing is shared with the partner until then"))
    return found


def migration(book: Book) -> list[str]:
    """The one line about the old Referral procedure column of Partners, while the tab still has it."""
    table = book.tables.get("partners")
    if table is None or not table.has(LEGACY_PROCEDURE):
        return []
    rows = [p.ref.label for p in book.partners if p.old_procedure]
    if not rows:
        return [f"{table.title}: the old column {LEGACY_PROCEDURE} is empty; delete it (partnerloop no longer "
                "reads it)"]
    return [f"{table.title}: the old column {LEGACY_PROCEDURE} still holds text on {', '.join(rows)}. It meant two "
            "things, so nothing is guessed: move each text into Taking our patients (how a patient we introduce "
            "starts with that partner: a booking link or code, who calls whom) or Sending us clients (how the "
            "partner sends clients to us), then clear the cell. Once the column is empty, delete it. Until then "
            "these partners get no welcome or discharge email."]


def problem_status(messages: Sequence[str]) -> str:
    return NEEDS_ATTENTION + "; ".join(messages)
