"""The spreadsheet layer, run over both backends: xlsx in tmp_path and Google via the local emulator."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Callable

import openpyxl
import pytest

from automations.check import init_sheet
from automations.config import Settings
from automations.errors import SheetError
from automations.model import read_book
from automations.schema import TABS
from automations.sheets.base import Backend, RowWrite
from tests.conftest import Staff, google_settings, make_settings

SPECS = {spec.title: spec for spec in TABS.values()}


def seed(backend: Backend, settings: Settings, partners: list[dict[str, Any]]) -> None:
    init_sheet(backend, settings, {"partners": partners})


def partner(pid: str, business: str, **more: Any) -> dict[str, Any]:
    return {"Partner ID": pid, "Business": business, "Stage": "Prospect", **more}


def statuses(backend: Backend) -> dict[str, str]:
    table = backend.read(["Partners"])["Partners"]
    assert table is not None
    return {str(table.get(r, "Partner ID")): str(table.get(r, "Automation status") or "") for r in table.rows}


def test_read_finds_columns_by_header_text(backend_settings: Settings, open_sheet: Callable[[Settings], Backend]) -> None:
    backend = open_sheet(backend_settings)
    seed(backend, backend_settings, [partner("P-0001", "Lotus Flow Yoga", Email="priya@lotusflow.example")])
    book = read_book(backend, backend_settings)
    assert [(p.id, p.business, p.email, p.stage) for p in book.partners] == [
        ("P-0001", "Lotus Flow Yoga", "priya@lotusflow.example", "Prospect")]
    assert read_book(backend, backend_settings).partners == book.partners  # reading twice is stable


def test_write_back_lands_on_the_right_rows_after_sort_insert_and_delete(
    backend_settings: Settings, open_sheet: Callable[[Settings], Backend], staff_for: Callable[[Settings], Staff]
) -> None:
    backend = open_sheet(backend_settings)
    seed(backend, backend_settings, [partner(f"P-000{i}", f"Gym {i}") for i in range(1, 6)])
    book = read_book(backend, backend_settings)
    writes = [p.ref.write({"Automation status": f"status for {p.id}"}) for p in book.partners]

    # Staff re-sort the rows, insert a new one at the top and delete P-0003 before the write-back.
    staff = staff_for(backend_settings)
    grid = staff.grid("Partners")
    header, rows = grid[0], grid[1:]
    rows = [r for r in reversed(rows) if r[0] != "P-0003"]
    rows.insert(0, ["P-0099", "Inserted Studio"] + [""] * (len(header) - 2))
    staff.replace("Partners", [header, *rows])

    report = backend.write(SPECS, writes)
    got = statuses(backend)
    assert got == {"P-0099": "", "P-0005": "status for P-0005", "P-0004": "status for P-0004",
                   "P-0002": "status for P-0002", "P-0001": "status for P-0001"}
    assert report.lost == ["Partners P-0003: row not found (deleted or its ID changed); not written"]


def test_missing_ids_are_assigned_and_written_back(backend_settings: Settings, open_sheet: Callable[[Settings], Backend]) -> None:
    backend = open_sheet(backend_settings)
    seed(backend, backend_settings, [partner("P-0007", "Gym A"), {"Business": "Gym B"}, {"Business": "Gym C"}])
    book = read_book(backend, backend_settings)
    assert [p.id for p in book.partners] == ["P-0007", "P-0008", "P-0009"]
    backend.write(SPECS, book.new_ids)
    assert list(statuses(backend)) == ["P-0007", "P-0008", "P-0009"]
    assert read_book(backend, backend_settings).new_ids == []


def test_formula_text_written_back_stays_text(backend_settings: Settings, open_sheet: Callable[[Settings], Backend]) -> None:
    backend = open_sheet(backend_settings)
    seed(backend, backend_settings, [partner("P-0001", "Gym")])
    formula = '=HYPERLINK("http://x.example","y")'
    backend.write(SPECS, [RowWrite("Partners", "P-0001", {"Automation status": formula, "Last emailed": date(2026, 11, 27)})])
    book = read_book(backend, backend_settings)
    assert book.partners[0].status == formula
    assert book.partners[0].last_emailed == date(2026, 11, 27)


def test_append_adds_rows_under_the_last(backend_settings: Settings, open_sheet: Callable[[Settings], Backend]) -> None:
    backend = open_sheet(backend_settings)
    init_sheet(backend, backend_settings)
    backend.append("Log", [["2026-11-27 09:30", "outreach", "outreach_intro", "a@b.example", "P-0001", "<id1>", "sent"]])
    backend.append("Log", [["2026-11-27 09:31", "outreach", "outreach_intro", "c@d.example", "P-0002", "<id2>", "=1+1"]])
    table = backend.read(["Log"])["Log"]
    assert table is not None
    assert [table.get(r, "Row") for r in table.rows] == ["P-0001", "P-0002"]
    assert table.get(table.rows[1], "Result") == "=1+1"


def test_init_adds_only_what_is_missing_and_keeps_staff_columns(
    backend_settings: Settings, open_sheet: Callable[[Settings], Backend], staff_for: Callable[[Settings], Staff]
) -> None:
    backend = open_sheet(backend_settings)
    staff = staff_for(backend_settings)
    header = ["Stage", "Business *", "My notes", "partner id", "Email"]
    staff.replace("Partners", [header, ["Active", "Gym", "call Tue", "P-0001", "g@gym.example"]])
    changes = init_sheet(backend, backend_settings)
    assert any(c.startswith("Partners: added column(s) Kind, Contact name") for c in changes)
    grid = staff.grid("Partners")
    assert grid[0][:5] == header
    assert grid[1][:5] == ["Active", "Gym", "call Tue", "P-0001", "g@gym.example"]
    assert {h.rstrip(" *").lower() for h in grid[0]} >= {c.name.lower() for c in TABS["partners"].columns}
    assert init_sheet(backend, backend_settings) == []  # running it twice changes nothing


def test_init_on_an_empty_spreadsheet_creates_every_tab_and_column(
    backend_settings: Settings, open_sheet: Callable[[Settings], Backend]
) -> None:
    backend = open_sheet(backend_settings)
    init_sheet(backend, backend_settings)
    tables = backend.read([spec.title for key, spec in TABS.items() if key != "dashboard"])
    for title, table in tables.items():
        assert table is not None, title
        assert table.header == [c.name for c in SPECS[title].columns]


def test_xlsx_header_is_bold_frozen_with_dropdowns(tmp_path: Path, settings: Settings) -> None:
    from automations.sheets import open_backend

    init_sheet(open_backend(settings), settings)
    sheet = openpyxl.load_workbook(settings.sheet.path)["Partners"]
    assert sheet.freeze_panes == "A2"
    assert sheet["A1"].font.bold
    formulas = {dv.formula1 for dv in sheet.data_validations.dataValidation}
    assert '"Prospect,Contacted,Meeting,Agreement,Active,Paused,Declined"' in formulas


def test_google_header_is_bold_frozen_with_dropdowns(tmp_path: Path, emulator: Any) -> None:
    settings = google_settings(tmp_path, emulator)
    from automations.sheets import open_backend

    init_sheet(open_backend(settings), settings)
    props = emulator.sheet_properties(settings.sheet.key, "Partners")
    assert props["gridProperties"]["frozenRowCount"] == 1
    batch = [r.body for r in emulator.requests if r.body and "requests" in r.body]
    rules = [q["setDataValidation"]["rule"] for b in batch for q in b["requests"] if "setDataValidation" in q]
    assert any([v["userEnteredValue"] for v in rule["condition"]["values"]][:2] == ["Prospect", "Contacted"]
               for rule in rules)


def test_workbook_open_in_another_program_is_refused_in_one_line(settings: Settings) -> None:
    from automations.sheets import open_backend

    backend = open_backend(settings)
    init_sheet(backend, settings)
    before = settings.sheet.path.read_bytes()
    (settings.sheet.path.parent / f".~lock.{settings.sheet.path.name}#").write_text("x")
    with pytest.raises(SheetError, match="open in another program .*close it there and run again"):
        backend.write(SPECS, [RowWrite("Partners", "P-0001", {"Automation status": "x"})])
    assert settings.sheet.path.read_bytes() == before


def test_unreadable_workbook_is_one_line(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.sheet.path.write_text("not a zip")
    from automations.sheets import open_backend

    with pytest.raises(SheetError, match="cannot open the workbook"):
        open_backend(settings).read(["Partners"])


# -- Google only: request budget and bounded retries ------------------------------------------------


def _google(tmp_path: Path, emulator: Any) -> tuple[Settings, Any, list[float]]:
    from automations.sheets.google import GoogleBackend

    settings = google_settings(tmp_path, emulator)
    slept: list[float] = []
    backend = GoogleBackend(settings.sheet, sleep=slept.append)
    init_sheet(backend, settings, {"partners": [partner(f"P-{i:04d}", f"Gym {i}") for i in range(1, 4)]})
    return settings, backend, slept


def _calls(emulator: Any, key: str) -> list[str]:
    return [r.endpoint for r in emulator.requests if key in r.path]


def test_google_request_budget_per_operation(tmp_path: Path, emulator: Any) -> None:
    settings, backend, _ = _google(tmp_path, emulator)
    key = settings.sheet.key
    emulator.reset_requests()
    read_book(backend, settings)
    assert _calls(emulator, key) == ["spreadsheets.get", "values.batchGet"]
    emulator.reset_requests()
    backend.write(SPECS, [RowWrite("Partners", f"P-{i:04d}", {"Automation status": "ok", "Outreach step": i})
                          for i in range(1, 4)])
    assert _calls(emulator, key) == ["values.batchGet", "values.batchUpdate"]
    updates = [r for r in emulator.requests if r.endpoint == "values.batchUpdate"]
    assert updates[0].body["valueInputOption"] == "RAW"
    emulator.reset_requests()
    backend.append("Log", [["a"], ["b"]])
    assert _calls(emulator, key) == ["values.append"]
    assert emulator.requests[-1].query["valueInputOption"] == "RAW"


@pytest.mark.parametrize(("status", "body"), [(429, "json"), (503, "html"), (500, "json"), (503, "json")])
def test_google_retries_throttling_and_server_errors_with_backoff(tmp_path: Path, emulator: Any,
                                                                  status: int, body: str) -> None:
    settings, backend, slept = _google(tmp_path, emulator)
    emulator.fail_next(3, status=status, body=body)
    book = read_book(backend, settings)
    assert [p.id for p in book.partners] == ["P-0001", "P-0002", "P-0003"]
    assert len(slept) == 3 and all(0 <= s <= 32 for s in slept)
    assert backend.http.retries == 3


def test_google_gives_up_after_a_bounded_number_of_attempts(tmp_path: Path, emulator: Any) -> None:
    settings, backend, slept = _google(tmp_path, emulator)
    emulator.reset_requests()
    emulator.fail_next(50, status=503, body="html")
    with pytest.raises(SheetError, match="Google Sheets answered 503"):
        read_book(backend, settings)
    assert len(emulator.requests) == backend.http.attempts
    assert len(slept) == backend.http.attempts - 1
    emulator.reset_faults()
