"""What a person sees on the data tabs: columns as wide as their text (capped), dates shown as dates,
and printing that fits the page; widths, hidden columns and formats staff chose are kept.

xlsx: real workbooks in tmp_path, opened again with openpyxl after `init` and after a real `run
--all`. Google: the request the emulator received at `init`, and the widths it then holds.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from automations.check import init_sheet
from automations.cli import main
from automations.config import Settings
from automations.schema import TABS, Column, TabSpec
from automations.sheets import open_backend
from automations.sheets.base import RowWrite
from automations.sheets.google import GoogleBackend
from tests.conftest import google_settings, make_settings
from tests.support.configs import config_for

SPECS = {spec.title: spec for spec in TABS.values()}
DATA_TABS = [spec.title for key, spec in TABS.items() if key != "dashboard"]
LONG_NOTE = "Prefers calls after 4pm; the owner knows our head physio from a conference in Chicago last spring"
MONDAY = "2026-11-23T09:00"


def prospect(pid: str, business: str, **more: Any) -> dict[str, Any]:
    return {"Partner ID": pid, "Business": business, "Email": f"hello@{pid.lower()}.example", "Stage": "Prospect",
            **more}


def column(sheet: Worksheet, header: str) -> int:
    """The 1-based index of the column headed *header*."""
    return next(c.column for c in sheet[1] if c.value == header)


def width(sheet: Worksheet, header: str) -> float:
    """The width the file gives the column headed *header* (characters), read as Excel would."""
    col = column(sheet, header)
    for dimension in sheet.column_dimensions.values():
        if (dimension.min or 0) <= col <= (dimension.max or 0):
            return float(dimension.width)
    return 8.43  # no width in the file: the default


def hidden(sheet: Worksheet, header: str) -> bool:
    col = column(sheet, header)
    return any(d.hidden for d in sheet.column_dimensions.values() if (d.min or 0) <= col <= (d.max or 0))


def cell(sheet: Worksheet, header: str, row_id: str) -> Any:
    """The cell in column *header* of the row whose first cell is *row_id*."""
    row = next(r for r in sheet.iter_rows(min_row=2) if r[0].value == row_id)
    return row[column(sheet, header) - 1]


def run_all(tmp_path: Path, settings: Settings) -> None:
    config = config_for(tmp_path / "settings.toml", settings)
    assert main(["--config", str(config), "run", "--all", "--now", MONDAY]) == 0


# -- xlsx ---------------------------------------------------------------------------------------------


def test_xlsx_init_fits_each_column_to_its_header_and_text_up_to_fifty_characters(settings: Settings) -> None:
    init_sheet(open_backend(settings), settings, {"partners": [
        prospect("P-0001", "Northside Strength & Conditioning Studio", Notes=LONG_NOTE)]})
    book = openpyxl.load_workbook(settings.sheet.path)
    partners = book["Partners"]
    assert width(partners, "Business") >= len("Northside Strength & Conditioning Studio")
    assert width(partners, "Email") >= len("hello@p-0001.example")
    assert width(partners, "Notes") == 50  # capped: the note is longer
    assert width(partners, "Partner ID") < 20  # no wider than it needs
    # A header wraps onto two lines rather than widening a column of short values.
    assert width(partners, "Do not email") < len("Do not email")
    assert partners.cell(1, column(partners, "Do not email")).alignment.wrap_text
    # Date and date-time columns are wide enough for the dates to come, before any row holds one.
    assert width(book["Log"], "Time") >= len("2026-11-23 09:00") + 2
    assert width(partners, "Last emailed") >= len("2026-11-23")


def test_xlsx_run_widens_the_columns_it_writes_and_formats_the_dates_and_times(
    tmp_path: Path, settings: Settings
) -> None:
    init_sheet(open_backend(settings), settings, {"partners": [prospect("P-0001", "Cold Gym")]})
    run_all(tmp_path, settings)
    long_status = "Needs attention: " + "the row says what to do next, in words staff can act on; " * 4
    open_backend(settings).write(SPECS, [RowWrite("Partners", "P-0001", {"Automation status": long_status})])

    book = openpyxl.load_workbook(settings.sheet.path)
    log = book["Log"]
    time_cell = log.cell(2, column(log, "Time"))
    assert isinstance(time_cell.value, datetime)
    assert time_cell.number_format == "yyyy-mm-dd hh:mm"
    assert width(log, "Time") >= len("2026-11-23 09:00") + 2  # no "###"
    assert width(log, "Message-ID") == min(50, len(str(log.cell(2, column(log, "Message-ID")).value)) + 2)
    partners = book["Partners"]
    last = cell(partners, "Last emailed", "P-0001")
    assert last.value == datetime(2026, 11, 23) and last.number_format == "yyyy-mm-dd"
    assert width(partners, "Automation status") == 50  # the long status: capped


def test_xlsx_keeps_the_widths_hidden_columns_and_date_formats_staff_chose(
    tmp_path: Path, settings: Settings
) -> None:
    init_sheet(open_backend(settings), settings, {"partners": [prospect("P-0001", "Cold Gym")]})
    book = openpyxl.load_workbook(settings.sheet.path)
    partners = book["Partners"]
    letter = partners.cell(1, column(partners, "Notes")).column_letter
    partners.column_dimensions[letter].width = 80  # staff widened Notes
    phone = partners.cell(1, column(partners, "Phone")).column_letter
    partners.column_dimensions[phone].hidden = True  # and hid Phone
    partners.column_dimensions[phone].width = 9
    cell(partners, "Phone", "P-0001").value = "(217) 555-0101 ext. 4410, ask for the manager on duty"
    stage_since = cell(partners, "Stage since", "P-0001")
    stage_since.value, stage_since.number_format = date(2026, 11, 2), "d mmmm yyyy"
    book.save(settings.sheet.path)

    init_sheet(open_backend(settings), settings)
    run_all(tmp_path, settings)
    open_backend(settings).write(SPECS, [RowWrite("Partners", "P-0001", {"Phone": "x" * 120, "Notes": LONG_NOTE})])

    partners = openpyxl.load_workbook(settings.sheet.path)["Partners"]
    assert width(partners, "Notes") == 80
    assert hidden(partners, "Phone") and width(partners, "Phone") == 9
    assert cell(partners, "Stage since", "P-0001").number_format == "d mmmm yyyy"
    assert cell(partners, "Last emailed", "P-0001").number_format == "yyyy-mm-dd"  # written by the run


def test_xlsx_splits_a_column_range_staff_sized_without_losing_it(settings: Settings) -> None:
    init_sheet(open_backend(settings), settings)
    book = openpyxl.load_workbook(settings.sheet.path)
    events = book["Events"]
    first, last = column(events, "Partner"), column(events, "Location")  # D:F, one <col> element
    for letter in [events.cell(1, c).column_letter for c in range(first, last + 1)]:
        events.column_dimensions.pop(letter, None)
    events.column_dimensions.group(events.cell(1, first).column_letter, events.cell(1, last).column_letter,
                                   outline_level=0)
    span = events.column_dimensions[events.cell(1, first).column_letter]
    span.width = 30
    book.save(settings.sheet.path)

    open_backend(settings).append("Events", [["E-0001", "Open house", date(2026, 12, 5), None, "Body Works", "Open house",
                                              "The clinic's gym, 120 Main Street, Springfield, second floor"]])

    events = openpyxl.load_workbook(settings.sheet.path)["Events"]
    covering = {c: [d for d in events.column_dimensions.values() if (d.min or 0) <= c <= (d.max or 0)]
                for c in range(1, events.max_column + 1)}
    assert all(len(found) <= 1 for found in covering.values())  # no column described twice
    assert [width(events, h) for h in ("Partner", "Kind")] == [30, 30]
    assert width(events, "Location") > 30


def test_xlsx_date_columns_now_holding_times_show_them_and_staff_formats_stay(settings: Settings) -> None:
    """A date column that becomes a date-time column: `init` changes partnerloop's date format to the
    date-time one, on the column and its cells, and leaves the cells staff formatted themselves."""
    backend = open_backend(settings)
    visits = TabSpec("visits", "Visits", (Column("Visit ID"), Column("When", "date")))
    backend.ensure_layout([("Visits", visits)], {"Visits": [
        {"Visit ID": "V-1", "When": date(2026, 11, 23)}, {"Visit ID": "V-2", "When": date(2026, 11, 24)}]})
    book = openpyxl.load_workbook(settings.sheet.path)
    sheet = book["Visits"]
    assert [sheet[f"B{r}"].number_format for r in (2, 3)] == ["yyyy-mm-dd", "yyyy-mm-dd"]
    sheet["B3"].number_format = "mm/dd/yyyy hh:mm AM/PM"
    book.save(settings.sheet.path)

    visits = TabSpec("visits", "Visits", (Column("Visit ID"), Column("When", "datetime")))
    backend.ensure_layout([("Visits", visits)], {})
    sheet = openpyxl.load_workbook(settings.sheet.path)["Visits"]
    assert sheet["B2"].number_format == "yyyy-mm-dd hh:mm"
    assert sheet["B3"].number_format == "mm/dd/yyyy hh:mm AM/PM"
    assert sheet.column_dimensions["B"].number_format == "yyyy-mm-dd hh:mm"  # what a new cell typed there gets


def test_xlsx_data_tabs_print_landscape_one_page_wide_with_the_header_on_every_page(
    tmp_path: Path, settings: Settings
) -> None:
    init_sheet(open_backend(settings), settings, {"partners": [prospect("P-0001", "Cold Gym")]})
    run_all(tmp_path, settings)
    book = openpyxl.load_workbook(settings.sheet.path)
    for title in DATA_TABS:
        sheet = book[title]
        setup = (sheet.page_setup.orientation, sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight,
                 sheet.sheet_properties.pageSetUpPr.fitToPage, sheet.print_title_rows, sheet.freeze_panes)
        assert setup == ("landscape", 1, 0, True, "$1:$1", "A2"), title


# -- Google -------------------------------------------------------------------------------------------


def _layout_requests(emulator: Any, key: str) -> list[dict[str, Any]]:
    """The requests of the one spreadsheets.batchUpdate that formatted the headers."""
    batches = [r.body["requests"] for r in emulator.requests
               if key in r.path and r.endpoint == "spreadsheets.batchUpdate"
               and any("repeatCell" in q for q in r.body["requests"])]
    assert len(batches) == 1
    return list(batches[0])


def _column_pixels(emulator: Any, key: str, title: str) -> list[dict[str, Any]]:
    session = emulator.session()
    reply = session.get(f"{emulator.base_url}/v4/spreadsheets/{key}",
                        params={"fields": "sheets(properties.title,data.columnMetadata)"})
    sheet = next(s for s in reply.json()["sheets"] if s["properties"]["title"] == title)
    return list(sheet["data"][0]["columnMetadata"])


def _staff_batch(emulator: Any, key: str, requests: list[dict[str, Any]]) -> None:
    reply = emulator.session().post(f"{emulator.base_url}/v4/spreadsheets/{key}:batchUpdate",
                                    json={"requests": requests})
    assert reply.status_code == 200, reply.text


def test_google_init_sends_date_formats_and_column_widths_in_its_one_formatting_request(
    tmp_path: Path, emulator: Any
) -> None:
    settings = google_settings(tmp_path, emulator)
    key = settings.sheet.key
    emulator.reset_requests()
    init_sheet(GoogleBackend(settings.sheet), settings, {"partners": [
        prospect("P-0001", "Northside Strength & Conditioning Studio", Notes=LONG_NOTE)]})
    requests = _layout_requests(emulator, key)
    ids = {props["title"]: props["sheetId"] for props in
           (emulator.sheet_properties(key, t) for t in DATA_TABS)}
    formats = {(q["repeatCell"]["range"]["sheetId"], q["repeatCell"]["range"]["startColumnIndex"]):
               q["repeatCell"]["cell"]["userEnteredFormat"]["numberFormat"]
               for q in requests if "numberFormat" in q.get("repeatCell", {}).get("cell", {}).get("userEnteredFormat", {})}
    last_emailed = [c.name for c in TABS["partners"].columns].index("Last emailed")
    assert formats[(ids["Log"], 0)] == {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm"}
    assert formats[(ids["Partners"], last_emailed)] == {"type": "DATE", "pattern": "yyyy-mm-dd"}

    widths = {(q["updateDimensionProperties"]["range"]["sheetId"], q["updateDimensionProperties"]["range"]["startIndex"]):
              q["updateDimensionProperties"]["properties"]["pixelSize"]
              for q in requests if "updateDimensionProperties" in q}
    partner_columns = [c.name for c in TABS["partners"].columns]
    business, notes = partner_columns.index("Business"), partner_columns.index("Notes")
    assert widths[(ids["Partners"], business)] >= 7 * len("Northside Strength & Conditioning Studio")
    assert widths[(ids["Partners"], notes)] == 362  # 50 characters: the note is longer
    assert widths[(ids["Log"], 0)] >= 7 * len("2026-11-23 09:00")
    assert len(widths) < 3 * len(partner_columns)  # at most one request per column, none per row
    # The emulator holds them as Google would: spreadsheets.get reports the new widths.
    assert _column_pixels(emulator, key, "Partners")[notes]["pixelSize"] == 362


def test_google_init_keeps_columns_staff_widened_or_hid(tmp_path: Path, emulator: Any) -> None:
    settings = google_settings(tmp_path, emulator)
    key = settings.sheet.key
    init_sheet(GoogleBackend(settings.sheet), settings, {"partners": [prospect("P-0001", "Cold Gym")]})
    partner_columns = [c.name for c in TABS["partners"].columns]
    notes, phone = partner_columns.index("Notes"), partner_columns.index("Phone")
    sheet_id = emulator.sheet_properties(key, "Partners")["sheetId"]

    def dimension(index: int, properties: dict[str, Any]) -> dict[str, Any]:
        return {"updateDimensionProperties": {
            "range": {"sheetId": sheet_id, "dimension": "COLUMNS", "startIndex": index, "endIndex": index + 1},
            "properties": properties, "fields": ",".join(properties)}}

    _staff_batch(emulator, key, [dimension(notes, {"pixelSize": 600}), dimension(phone, {"hiddenByUser": True})])
    emulator.set_values(key, "Partners", [["P-0002", "Quiet Gym"] + [""] * 3 + ["x" * 90]], start="A3")
    emulator.reset_requests()
    init_sheet(GoogleBackend(settings.sheet), settings, {"partners": [prospect("P-0003", "Warm Gym", Notes=LONG_NOTE)]})

    widened = {q["updateDimensionProperties"]["range"]["startIndex"] for q in _layout_requests(emulator, key)
               if "updateDimensionProperties" in q and q["updateDimensionProperties"]["range"]["sheetId"] == sheet_id}
    assert notes not in widened and phone not in widened
    pixels = _column_pixels(emulator, key, "Partners")
    assert pixels[notes]["pixelSize"] == 600
    assert pixels[phone] == {"pixelSize": 100, "hiddenByUser": True}


@pytest.mark.parametrize("backend", ["xlsx", "google"])
def test_init_twice_leaves_the_widths_it_set(tmp_path: Path, emulator: Any, backend: str) -> None:
    settings = make_settings(tmp_path) if backend == "xlsx" else google_settings(tmp_path, emulator)
    sheet = open_backend(settings)
    init_sheet(sheet, settings, {"partners": [prospect("P-0001", "Northside Strength & Conditioning Studio")]})
    if backend == "xlsx":
        before = {t: {k: d.width for k, d in ws.column_dimensions.items()}
                  for t, ws in ((t, openpyxl.load_workbook(settings.sheet.path)[t]) for t in DATA_TABS)}
        assert init_sheet(sheet, settings) == []
        after = {t: {k: d.width for k, d in ws.column_dimensions.items()}
                 for t, ws in ((t, openpyxl.load_workbook(settings.sheet.path)[t]) for t in DATA_TABS)}
        assert after == before
    else:
        emulator.reset_requests()
        assert init_sheet(sheet, settings) == []
        assert not [q for q in _layout_requests(emulator, settings.sheet.key) if "updateDimensionProperties" in q]
