"""Write-back primitives on both backends: compare-and-set per cell, refusing a workbook that a
write-back could not follow, and new row IDs above every ID ever seen (issue 13)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

import pytest

from automations.check import init_sheet
from automations.config import Settings
from automations.errors import SheetError
from automations.model import read_book
from automations.schema import TABS
from automations.sheets import open_backend
from automations.sheets.base import Conflict, RowWrite
from tests.conftest import Staff

SPECS = {spec.title: spec for spec in TABS.values()}
MEETING = date(2026, 11, 30)


def seeded(settings: Settings) -> None:
    init_sheet(open_backend(settings), settings, {
        "partners": [{"Partner ID": "P-0001", "Business": "Run Club", "Email": "run@club.example", "Stage": "Contacted",
                      "Meeting date": MEETING, "Automation status": "  Intro sent 2026-11-02 "}],
        "referrals": [{"Referral ID": f"R-000{n}", "Direction": "In", "Partner": "P-0001",
                       "Patient first name": "Sam"} for n in (1, 2)],
    })


def test_a_cell_staff_changed_since_the_read_is_left_and_reported(
    backend_settings: Settings, staff_for: Callable[[Settings], Staff], request: pytest.FixtureRequest,
) -> None:
    settings = backend_settings
    seeded(settings)
    book = read_book(open_backend(settings), settings)
    partner = book.partners[0]
    read = {"Stage": partner.stage, "Automation status": partner.status, "Meeting date": partner.meeting_date,
            "Outreach step": book.tables["partners"].get(book.tables["partners"].rows[0], "Outreach step")}
    staff_for(settings).edit("Partners", "P-0001", Stage="Declined")  # staff, while the run was sending

    google = settings.sheet.backend == "google"
    emulator: Any = request.getfixturevalue("emulator") if google else None
    if google:
        emulator.reset_requests()
    report = open_backend(settings).write(SPECS, [RowWrite(
        "Partners", "P-0001",
        {"Stage": "Meeting", "Automation status": "Follow-up 1 sent 2026-11-09", "Meeting date": date(2026, 12, 1),
         "Outreach step": 2},
        expected=read)])

    assert report.conflicts == [Conflict("Partners", "P-0001", "Stage")]
    assert str(report.conflicts[0]) == ("Partners P-0001: Stage was changed in the sheet since the run read it; "
                                        "left as it is")
    after = read_book(open_backend(settings), settings).partners[0]
    assert after.stage == "Declined"  # staff's value stays
    assert after.status == "Follow-up 1 sent 2026-11-09"  # the trimmed text still matched
    assert after.meeting_date == date(2026, 12, 1)  # a date cell matched the date the run read
    assert after.outreach_step == 2  # a blank cell matched a blank read


def test_a_write_without_expected_values_writes_as_before(backend_settings: Settings,
                                                          staff_for: Callable[[Settings], Staff]) -> None:
    settings = backend_settings
    seeded(settings)
    staff_for(settings).edit("Partners", "P-0001", Stage="Declined")
    report = open_backend(settings).write(SPECS, [RowWrite("Partners", "P-0001", {"Automation status": "done"})])
    assert report.conflicts == [] and report.cells == 1


@pytest.mark.parametrize(("current", "expected", "same"), [
    ("  Contacted ", "Contacted", True), ("Declined", "Contacted", False), (None, "", True), ("", None, True),
    ("x", None, False), (3.0, 3, True), ("3", 3, True), (datetime(2026, 11, 30), MEETING, True),
    (46356, MEETING, True), ("11/30/2026", MEETING, True), (46357, MEETING, False),
    (datetime(2026, 11, 30, 10, 0), datetime(2026, 11, 30, 10, 0), True),
    (46356 + 10 / 24, datetime(2026, 11, 30, 10, 0), True), (datetime(2026, 11, 30, 11, 0), MEETING, False),
])
def test_cells_compare_as_the_model_reads_them(current: Any, expected: Any, same: bool) -> None:
    from automations.cells import same_value

    assert same_value(current, expected) is same


# -- a workbook the write-back could not follow --------------------------------------------------

@pytest.mark.parametrize(("lock", "program"), [("~${}", "Excel"), (".~lock.{}#", "LibreOffice")])
def test_workbook_open_elsewhere_is_refused_before_anything(settings: Settings, lock: str, program: str) -> None:
    seeded(settings)
    (settings.sheet.path.parent / lock.format(settings.sheet.path.name)).write_text("x")
    with pytest.raises(SheetError) as caught:
        open_backend(settings).ensure_writable()
    assert str(caught.value) == (f"{settings.sheet.path}: the workbook is open in another program ({program}: "
                                 f"{lock.format(settings.sheet.path.name)} exists); close it there and run again")


def test_read_only_workbook_is_refused_naming_the_file_and_the_fix(settings: Settings) -> None:
    seeded(settings)
    settings.sheet.path.chmod(0o444)
    try:
        with pytest.raises(SheetError) as caught:
            open_backend(settings).ensure_writable()
    finally:
        settings.sheet.path.chmod(0o644)
    assert str(caught.value) == (f"{settings.sheet.path}: the workbook is read-only, so statuses could not be "
                                 f"written back; make {settings.sheet.path} writable (file properties, or chmod u+w) "
                                 "and run again")
    open_backend(settings).ensure_writable()  # writable again: no complaint


def test_google_sheet_is_always_writable(tmp_path: Path, emulator: Any) -> None:
    from tests.conftest import google_settings

    settings = google_settings(tmp_path, emulator)
    emulator.reset_requests()
    open_backend(settings).ensure_writable()
    assert not [r for r in emulator.requests if settings.sheet.key in r.path]


# -- new IDs ----------------------------------------------------------------------------------------

def test_a_new_row_gets_an_id_above_every_id_ever_seen(backend_settings: Settings,
                                                       staff_for: Callable[[Settings], Staff]) -> None:
    settings = backend_settings
    seeded(settings)
    staff = staff_for(settings)
    grid = staff.grid("Referrals")
    staff.replace("Referrals", grid[:-1])  # staff delete R-0002 ...
    staff.add("Referrals", Direction="In", Partner="P-0001", Patient_first_name="Quinn")  # ... and type a new patient
    backend = open_backend(settings)
    assert [r.id for r in read_book(backend, settings).referrals] == ["R-0001", "R-0002"]  # the sheet alone
    book = read_book(backend, settings, ids_seen={"R": 2, "P": 1})
    assert [r.id for r in book.referrals] == ["R-0001", "R-0003"]
    assert book.ids_high == {"P": 1, "R": 3, "E": 0}
    assert [w.values for w in book.new_ids] == [{"Referral ID": "R-0003"}]
    assert read_book(backend, settings, ids_seen={"R": 41}).referrals[1].id == "R-0042"
