"""`partnerloop demo` as the owner meets it: the Dashboard it leaves shows the run the demo made."""

from __future__ import annotations

from collections import Counter
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import openpyxl
import pytest

from automations.cli import main
from automations.model import read_book
from automations.sheets import open_backend
from automations.todo import todo_list
from tests.conftest import make_settings
from tests.test_jobs_dashboard import block, day

DEMO_NOW = "2026-11-27T08:30"
DEMO_DAY = date(2026, 11, 27)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "partnerloop-demo"
    assert main(["demo", "--dir", str(folder), "--now", DEMO_NOW]) == 0
    return folder


def outbox(folder: Path) -> list[tuple[str, str]]:
    """(job, To address) of every email the demo wrote, from the .eml files themselves."""
    found = []
    for path in sorted((folder / "outbox").glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        found.append((str(message["X-Partnerloop-Template"]), message["To"].addresses[0].addr_spec.lower()))
    return found


def dashboard(folder: Path) -> list[list[object]]:
    workbook = next(folder.glob("*.xlsx"))
    return [["" if v is None else v for v in row]
            for row in openpyxl.load_workbook(workbook)["Dashboard"].iter_rows(values_only=True)]


def test_the_demo_dashboards_job_health_counts_the_emails_the_demo_wrote(demo: Path) -> None:
    _, health = block(dashboard(demo), "Job health")
    shown = {row[0]: (row[3], row[4]) for row in health}
    assert all(result == "ok" for job, (result, _) in shown.items() if job != "replies"), shown
    assert all(row[2] != "" for row in health if row[0] != "replies")  # finished, not "running"
    assert sum(n for _, n in shown.values() if isinstance(n, int)) == len(outbox(demo)) > 0


def test_every_prospect_the_demo_wrote_to_is_contacted_on_its_dashboard(demo: Path) -> None:
    _, partners = block(dashboard(demo), "Partners")
    stages = {row[1]: row[2] for row in partners}
    sheet = openpyxl.load_workbook(next(demo.glob("*.xlsx")))["Partners"]
    header = [c.value for c in sheet[1]]
    ids = {str(row[header.index("Email")]).lower(): row[header.index("Partner ID")]
           for row in sheet.iter_rows(min_row=2, values_only=True) if row[header.index("Email")]}
    written_to = {ids[to] for template, to in outbox(demo) if template in ("outreach_intro", "outreach_warm_intro")}
    assert written_to
    assert {pid: stages[pid] for pid in written_to} == {pid: "Contacted" for pid in written_to}


def test_the_demo_dashboards_to_do_lists_each_row_that_needs_a_person(demo: Path, tmp_path: Path) -> None:
    """The To do block is the To do list of the sheet as the demo left it: every row that needs a person."""
    settings = make_settings(tmp_path, sheet={"backend": "xlsx", "path": str(next(demo.glob("*.xlsx")))})
    expected = todo_list(read_book(open_backend(settings), settings), DEMO_DAY)
    _, todo = block(dashboard(demo), "To do")
    assert [(row[0], row[1], day(row[3])) for row in todo] == [(i.who, i.where, i.since) for i in expected]
    kinds = Counter(i.kind for i in expected)
    assert kinds["consent"] >= 2 and kinds["call"] >= 1  # the demo has rows of each kind to show
