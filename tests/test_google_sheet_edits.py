"""The Google Sheets backend as staff edit the sheet (issue 13), over real gspread and the emulator:
warning-only protection on automation-owned columns, the Dashboard rewritten in place, a date-time
Log, and Log rows appended under a header that staff moved."""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import gspread
import pytest

from automations.check import init_sheet
from automations.config import Settings
from automations.executor import World, run_jobs
from automations.mail.ledger import Ledger
from automations.schema import LOG, PARTNERS, REFERRALS
from automations.sheets import open_backend
from automations.sheets.google import PROTECTED
from tests.conftest import google_settings

TZ = ZoneInfo("America/Chicago")
NOW = datetime.combine(date(2026, 11, 23), time(9, 0), TZ)  # a Monday in the send window


def seeded(tmp_path: Path, emulator: Any) -> Settings:
    settings = google_settings(tmp_path, emulator)
    init_sheet(open_backend(settings), settings, {
        "partners": [{"Partner ID": "P-0001", "Business": "Run Club", "Email": "run@club.example",
                      "Stage": "Prospect"}],
        "referrals": [{"Referral ID": "R-0001", "Direction": "In", "Partner": "P-0001",
                       "Patient first name": "Sam", "Referred on": date(2026, 11, 20)}],
    })
    return settings


def run(settings: Settings, *jobs: str) -> None:
    world = World(settings=settings, backend=open_backend(settings), ledger=Ledger.in_state_dir(settings.state_dir),
                  clock=lambda: NOW)
    run_jobs(world, list(jobs))


def test_automation_columns_carry_one_warning_only_protected_range(tmp_path: Path, emulator: Any) -> None:
    settings = seeded(tmp_path, emulator)
    init_sheet(open_backend(settings), settings)  # a second init adds none
    key = settings.sheet.key
    for spec in (PARTNERS, REFERRALS, LOG):
        state = emulator.sheet_state(key, spec.title)
        header = state.values[0]
        protected = sorted((p["range"]["startColumnIndex"], p["range"]["endColumnIndex"], p.get("warningOnly"),
                            p.get("description")) for p in state.protected_ranges)
        auto = [header.index(c.name) for c in spec.columns if c.auto]
        assert protected == [(i, i + 1, True, PROTECTED) for i in sorted(auto)], spec.title


def test_log_time_carries_a_date_time_format(tmp_path: Path, emulator: Any) -> None:
    settings = seeded(tmp_path, emulator)
    formats = emulator.sheet_state(settings.sheet.key, "Log").formats
    assert formats["A2"]["numberFormat"] == {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm"}
    assert formats["A900"]["numberFormat"]["type"] == "DATE_TIME"


def test_dashboard_is_rewritten_in_place_and_formulas_pointing_at_it_keep_working(
    tmp_path: Path, emulator: Any,
) -> None:
    settings = seeded(tmp_path, emulator)
    run(settings, "dashboard")
    key = settings.sheet.key
    first = emulator.sheet_state(key, "Dashboard")
    book = emulator.client().open_by_key(key)
    notes = book.add_worksheet("Owner notes", rows=10, cols=3)
    notes.update([["=Dashboard!A1"]], "A1", raw=False)

    emulator.reset_requests()
    run(settings, "dashboard")
    sent = [r.body for r in emulator.requests if r.path.endswith(":batchUpdate") and isinstance(r.body, dict)]
    kinds = [next(iter(request)) for body in sent for request in body.get("requests", [])]
    assert "deleteSheet" not in kinds and "addSheet" not in kinds
    again = emulator.sheet_state(key, "Dashboard")
    assert again.sheet_id == first.sheet_id
    assert len(again.charts) == len(first.charts) >= 1  # the old chart replaced, not kept beside the new one
    assert again.values[0] == first.values[0]
    assert notes.get("A1") == [[first.values[0][0]]]  # the formula still reads the Dashboard


def test_log_rows_go_under_a_header_staff_moved_right_and_down(tmp_path: Path, emulator: Any) -> None:
    settings = seeded(tmp_path, emulator)
    book = emulator.client().open_by_key(settings.sheet.key)
    log = book.worksheet("Log")
    log.insert_cols([[]], col=1)  # staff insert a blank column A ...
    log.insert_rows([[], []], row=1)  # ... and two blank rows above the header
    open_backend(settings).append("Log", [[NOW.replace(tzinfo=None), "outreach", "outreach_intro", "partner", "P-0001",
                                           "<id@x>", "sent"]])
    rows = emulator.values(settings.sheet.key, "Log")
    assert rows[2][1:3] == ["Time", "Job"]
    assert rows[3][1:3][1] == "outreach" and rows[3][0] == ""  # under the header, from its first column
    assert len(rows) == 4


def test_the_last_visible_sheet_cannot_be_hidden(tmp_path: Path, emulator: Any) -> None:
    settings = google_settings(tmp_path, emulator)
    book = emulator.client().open_by_key(settings.sheet.key)
    other = book.add_worksheet("Other", rows=5, cols=5)
    other.hide()  # another sheet stays visible: allowed
    with pytest.raises(gspread.exceptions.APIError, match="You can't hide all the sheets in a document."):
        book.sheet1.hide()
    assert not emulator.sheet_properties(settings.sheet.key, book.sheet1.title).get("hidden")
