"""The Sheets emulator must behave like Google: replayed against real recordings, then driven by gspread.

The recordings live outside the repository, in ``<repo>/../shared/fixtures/gspread-cassettes``
(real gspread <-> Google traffic, MIT licensed, notice inside).  They are read at test time and
never copied here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

import gspread
import pytest
import requests
from gspread.exceptions import APIError, SpreadsheetNotFound
from gspread.utils import DateTimeOption, Dimension, InsertDataOption, ValueInputOption, ValueRenderOption
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.sheets_emulator import (
    A1,
    GridRange,
    InputParser,
    NumberFormatter,
    SheetsEmulator,
    emulator_session,
)

REPO = Path(__file__).resolve().parent.parent
CASSETTES = REPO.parent / "shared" / "fixtures" / "gspread-cassettes"
SHEETS_HOST = "sheets.googleapis.com"
DRIVE_FILES = "/drive/v3/files"


# =============================================================================================
# Replaying the recorded Google exchanges
# =============================================================================================

#: Keys whose integer values Google picks at random (sheet, protected range and chart ids).
#: The emulator picks its own; the replay learns the pairing from replies and renames consistently.
ID_KEYS = frozenset({"sheetId", "protectedRangeId", "chartId"})


@dataclass
class IdMap:
    """Recorded id -> emulator id, learned from replies (addSheet, addProtectedRange, addChart)."""

    pairs: dict[int, int] = field(default_factory=dict)

    def learn(self, recorded: Any, actual: Any) -> None:
        if isinstance(recorded, dict) and isinstance(actual, dict):
            for key, value in recorded.items():
                if key in ID_KEYS and isinstance(value, int) and isinstance(actual.get(key), int):
                    self.pairs.setdefault(value, actual[key])
                elif key in actual:
                    self.learn(value, actual[key])
        elif isinstance(recorded, list) and isinstance(actual, list):
            for a, b in zip(recorded, actual, strict=False):
                self.learn(a, b)

    def rename(self, value: Any) -> Any:
        """The recorded JSON with every known recorded id replaced by the emulator's."""
        if isinstance(value, dict):
            return {k: (self.pairs.get(v, v) if k in ID_KEYS and isinstance(v, int) else self.rename(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.rename(v) for v in value]
        return value


def normalise(body: Any) -> Any:
    """The only difference allowed besides ids: who owns the file.

    A protected range lists its editors by e-mail; the recording has the recording account's
    service-account address, the emulator its own owner address.
    """
    if isinstance(body, dict):
        return {k: (["<owner>"] * len(v) if k == "users" and isinstance(v, list) else normalise(v))
                for k, v in body.items()}
    if isinstance(body, list):
        return [normalise(v) for v in body]
    return body


@dataclass
class Exchange:
    cassette: str
    index: int
    method: str
    uri: str
    body: str | None
    status: int
    response: str


@dataclass
class ReplayResult:
    total: int = 0
    matched: int = 0
    mismatches: list[str] = field(default_factory=list)


class CassetteReplayer:
    """Plays every interaction of a cassette against the emulator and compares the answers."""

    def __init__(self, emulator: SheetsEmulator) -> None:
        self.emulator = emulator
        self.base_url = emulator.start()  # already running: just its URL
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Authorization"] = "Bearer replay"

    def replay(self, path: Path, result: ReplayResult) -> None:
        interactions = json.loads(path.read_text(encoding="utf-8"))["interactions"]
        ids = IdMap()
        for index, item in enumerate(interactions):
            request, response = item["request"], item["response"]
            url = urlsplit(request["uri"])
            if url.netloc != SHEETS_HOST:
                self.drive(request, response)
                continue
            exchange = Exchange(path.stem, index, request["method"], request["uri"], request.get("body"),
                                response["status"]["code"], response["body"]["string"])
            result.total += 1
            problem = self.exchange(exchange, ids)
            if problem is None:
                result.matched += 1
            else:
                result.mismatches.append(f"{exchange.cassette}[{index}] {exchange.method} {url.path}: {problem}")

    def drive(self, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Drive calls are not emulated; a create seeds the blank spreadsheet Google makes, a delete removes it."""
        path = urlsplit(request["uri"]).path
        if request["method"] == "POST" and path == DRIVE_FILES:
            created = json.loads(response["body"]["string"])
            name = json.loads(request["body"])["name"]
            self.emulator.create_spreadsheet(created["id"], name)
        elif request["method"] == "DELETE" and path.startswith(DRIVE_FILES + "/"):
            self.emulator.delete_spreadsheet(path.rsplit("/", 1)[1])

    def exchange(self, exchange: Exchange, ids: IdMap) -> str | None:
        url = urlsplit(exchange.uri)
        spreadsheet_id = url.path.split("/")[3].split(":")[0]
        if exchange.status == 403 and not self.emulator.has_spreadsheet(spreadsheet_id):
            # Decided from the recording: a spreadsheet this account never created and may not read
            # (another user's file); unlike "test" in the 404 case it exists, so seed it private.
            self.emulator.create_spreadsheet(spreadsheet_id, "someone else's spreadsheet", private=True)
        body = exchange.body
        if body:
            body = json.dumps(ids.rename(json.loads(body)))
        target = url.path + (f"?{url.query}" if url.query else "")
        reply = self.http.request(exchange.method, self.base_url + target, data=body,
                                  headers={"Content-Type": "application/json"} if body else {})
        expected = json.loads(exchange.response) if exchange.response.strip() else None
        try:
            actual = reply.json() if reply.content.strip() else None
        except ValueError:
            return f"non-JSON answer {reply.status_code}: {reply.text[:200]}"
        if expected is not None and actual is not None:
            ids.learn(expected, actual)
        if reply.status_code != exchange.status:
            return f"status {reply.status_code} != recorded {exchange.status}: {json.dumps(actual)[:300]}"
        want, got = normalise(ids.rename(expected)), normalise(actual)
        if want != got:
            return f"body differs\n  recorded: {json.dumps(want)[:1500]}\n  emulator: {json.dumps(got)[:1500]}"
        return None


def cassette_files() -> list[Path]:
    return sorted(p for p in CASSETTES.glob("*.json"))


def test_replays_every_recorded_google_exchange(capsys: pytest.CaptureFixture[str]) -> None:
    if not CASSETTES.is_dir():
        pytest.skip(f"recorded Google exchanges not found at {CASSETTES} (the shared fixtures folder is absent)")
    files = cassette_files()
    assert files, f"no cassettes in {CASSETTES}"
    result = ReplayResult()
    with SheetsEmulator(seed=7) as emulator:
        replayer = CassetteReplayer(emulator)
        for path in files:
            replayer.replay(path, result)
    assert result.total > 0, "the cassettes hold no Sheets exchanges"
    rate = 100.0 * result.matched / result.total
    with capsys.disabled():
        print(f"\ncassette replay: {result.matched}/{result.total} exchanges match ({rate:.1f}%)"
              f" over {len(files)} cassettes")
    assert not result.mismatches, "\n".join(result.mismatches[:10])


# =============================================================================================
# A1 notation
# =============================================================================================


@pytest.mark.parametrize("text, title, cells", [
    ("'It''s'!A1", "It's", GridRange(0, 1, 0, 1)),
    ("'My Sheet'!B2:C3", "My Sheet", GridRange(1, 3, 1, 3)),
    ("Sheet1!A1:A", "Sheet1", GridRange(0, None, 0, 1)),
    ("Sheet1!A5:A", "Sheet1", GridRange(4, None, 0, 1)),
    ("Sheet1!A2:2", "Sheet1", GridRange(1, 2, 0, None)),
    ("Sheet1!B:D", "Sheet1", GridRange(0, None, 1, 4)),
    ("Sheet1!3:5", "Sheet1", GridRange(2, 5, 0, None)),
    ("Sheet1!$B$2", "Sheet1", GridRange(1, 2, 1, 2)),
    ("Sheet1!c3:a1", "Sheet1", GridRange(0, 3, 0, 3)),
    ("'Sheet1'", "Sheet1", None),
    ("'a!b'!A1", "a!b", GridRange(0, 1, 0, 1)),
])
def test_a1_parsing(text: str, title: str, cells: GridRange | None) -> None:
    parsed = A1.parse(text)
    assert (parsed.title, parsed.cells) == (title, cells)


@pytest.mark.parametrize("text", ["Sheet1!A0", "Sheet1!", "'unterminated!A1", "Sheet1!A1:B2:C3",
                                  "Sheet1!AAAA1", "'Sheet1'A1", "", "Sheet1!A:2"])
def test_a1_parsing_rejects_malformed_ranges(text: str) -> None:
    with pytest.raises(ValueError):
        A1.parse(text)


def test_a1_without_sheet_is_left_for_the_spreadsheet_to_resolve() -> None:
    assert A1.parse("Sheet1") == A1.parse("Sheet1")
    assert A1.parse("A1:B2").title is None and A1.parse("A1:B2").cells is None
    assert A1.parse_cells("A1:B2") == GridRange(0, 2, 0, 2)


@pytest.mark.parametrize("title, shown", [
    ("Sheet1", "Sheet1"), ("_data", "_data"), ("My Sheet", "'My Sheet'"), ("D3", "'D3'"),
    ("It's", "'It''s'"), ("\N{CACTUS} tab", "'\N{CACTUS} tab'"), ("R1C1", "'R1C1'"), ("2024", "'2024'"),
])
def test_titles_are_quoted_only_where_google_quotes_them(title: str, shown: str) -> None:
    assert A1.quote_title(title) == shown


@settings(max_examples=200, deadline=None)
@given(title=st.text(min_size=1, max_size=12),
       top=st.integers(0, 5000), left=st.integers(0, 800), height=st.integers(1, 50), width=st.integers(1, 50))
def test_a1_format_and_parse_round_trip(title: str, top: int, left: int, height: int, width: int) -> None:
    grid = GridRange(top, top + height, left, left + width)
    parsed = A1.parse(A1.format(title, grid))
    assert (parsed.title, parsed.cells) == (title, grid)


def test_column_letters_round_trip() -> None:
    for index, letters in [(0, "A"), (25, "Z"), (26, "AA"), (51, "AZ"), (701, "ZZ"), (702, "AAA")]:
        assert A1.column_letters(index) == letters
        assert A1.column_index(letters) == index
        assert A1.column_index(letters.lower()) == index


# =============================================================================================
# Typed input and rendered numbers
# =============================================================================================


@pytest.mark.parametrize("typed, value, formula, pattern", [
    ("=SUM(A1:A2)", None, "=SUM(A1:A2)", None),
    ("'=1+1", "=1+1", None, None),
    ("12", 12, None, None),
    ("-1.5e3", -1500, None, None),
    ("true", True, None, None),
    ("1,234.5", 1234.5, None, "#,##0.0"),
    ("12.5%", 0.125, None, "0.0%"),
    ("$5", 5, None, '"$"#,##0'),
    ("2024-02-29", 45351, None, "yyyy-mm-dd"),
    ("3/1/2024", 45352, None, "M/d/yyyy"),
    ("2024-02-30", "2024-02-30", None, None),
    ("P-0001", "P-0001", None, None),
])
def test_user_entered_input_is_read_like_google(typed: str, value: Any, formula: str | None,
                                                pattern: str | None) -> None:
    parsed = InputParser.parse(typed, "USER_ENTERED")
    assert (parsed.value, parsed.formula) == (value, formula)
    assert (parsed.number_format or {}).get("pattern") == pattern
    assert InputParser.parse(typed, "RAW").value == typed  # RAW keeps text exactly


@pytest.mark.parametrize("value, number_format, shown", [
    (1, None, "1"), (4.0, None, "4"), (1.45, None, "1.45"), (0.1 + 0.2, None, "0.3"),
    (2 / 3, None, "0.6666666667"), (-7, None, "-7"),
    (1234.5, {"type": "NUMBER", "pattern": "#,##0.00"}, "1,234.50"),
    (0.125, {"type": "PERCENT", "pattern": "0.0%"}, "12.5%"),
    (-5, {"type": "CURRENCY", "pattern": '"$"#,##0.00'}, "-$5.00"),
    (43831, {"type": "DATE", "pattern": "yyyy-mm-dd"}, "2020-01-01"),
    (43831.75, {"type": "DATE_TIME", "pattern": "M/d/yyyy H:mm:ss"}, "1/1/2020 18:00:00"),
    (0.5, {"type": "TIME", "pattern": "h:mm:ss am/pm"}, "12:00:00 PM"),
])
def test_formatted_numbers(value: float, number_format: dict[str, str] | None, shown: str) -> None:
    assert NumberFormatter.render(value, number_format) == shown


# =============================================================================================
# Through the real gspread client
# =============================================================================================


@pytest.fixture(scope="module")
def emu() -> Iterator[SheetsEmulator]:
    with SheetsEmulator(seed=11) as emulator:
        yield emulator


@pytest.fixture
def book(emu: SheetsEmulator, request: pytest.FixtureRequest) -> gspread.Spreadsheet:
    """A fresh blank spreadsheet (one 1000x26 Sheet1), opened with gspread; faults cleared afterwards."""
    key = f"key-{request.node.name}"
    emu.create_spreadsheet(key, "partnerloop emulator test")
    request.addfinalizer(emu.reset_faults)
    return emu.client().open_by_key(key)


def sheets_url(key: str, tail: str = "") -> str:
    return f"https://sheets.googleapis.com/v4/spreadsheets/{key}{tail}"


def test_raw_keeps_formula_text_and_user_entered_makes_a_formula(emu: SheetsEmulator,
                                                                 book: gspread.Spreadsheet) -> None:
    ws = book.sheet1
    ws.update([["=1+1", "'lead", "12", "TRUE"]], "A1", value_input_option=ValueInputOption.raw)
    ws.update([["=1+1", "'lead", "12", "TRUE"]], "A2", value_input_option=ValueInputOption.user_entered)
    assert emu.values(book.id, "Sheet1") == [["=1+1", "'lead", "12", "TRUE"], ["=1+1", "lead", 12, True]]
    assert ws.get("A1:D2") == [["=1+1", "'lead", "12", "TRUE"], ["2", "lead", "12", "TRUE"]]
    assert ws.get("A1:D2", value_render_option=ValueRenderOption.unformatted) == [
        ["=1+1", "'lead", "12", "TRUE"], [2, "lead", 12, True]]
    assert ws.get("A2", value_render_option=ValueRenderOption.formula) == [["=1+1"]]


def test_dates_numbers_and_render_options(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    ws = book.sheet1
    ws.update([["2020-01-01", 1.45, 4.0, "=1/3", "=A1+1"]], "A1", raw=False)
    # (Google would also infer a date format for =A1+1; the emulator infers none, see its docstring.)
    assert ws.get("A1:E1") == [["2020-01-01", "1.45", "4", "0.3333333333", "43832"]]
    assert ws.get("A1:E1", value_render_option=ValueRenderOption.unformatted) == [[43831, 1.45, 4, 1 / 3, 43832]]
    formatted_dates = ws.get("A1:B1", value_render_option=ValueRenderOption.unformatted,
                             date_time_render_option=DateTimeOption.formatted_string)
    assert formatted_dates == [["2020-01-01", 1.45]]
    columns = ws.get("A1:B1", major_dimension=Dimension.cols)
    assert columns == [["2020-01-01"], ["1.45"]]


def test_batch_get_batch_update_and_append_rows(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    ws = book.sheet1
    reply = ws.batch_update([{"range": "A1:B1", "values": [["Partner", "Stage"]]},
                             {"range": "A2", "values": [["P-1", "Prospect"]]}])
    assert (reply["totalUpdatedCells"], reply["totalUpdatedRows"], reply["totalUpdatedSheets"]) == (4, 2, 1)
    appended = ws.append_rows([["P-2", "Active"], ["P-3", "Paused"]], value_input_option=ValueInputOption.raw)
    assert appended["tableRange"] == "Sheet1!A1:B2"
    assert appended["updates"]["updatedRange"] == "Sheet1!A3:B4"
    got = ws.batch_get(["A1:A", "B2:B3", "C1"])
    assert [list(r) for r in got] == [[["Partner"], ["P-1"], ["P-2"], ["P-3"]], [["Prospect"], ["Active"]], []]
    assert [r.range for r in got] == ["Sheet1!A1:A1000", "Sheet1!B2:B3", "Sheet1!C1"]
    assert ws.get_all_records() == [{"Partner": "P-1", "Stage": "Prospect"}, {"Partner": "P-2", "Stage": "Active"},
                                    {"Partner": "P-3", "Stage": "Paused"}]


def test_append_inserts_rows_and_grows_the_grid(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    ws = book.add_worksheet("Log", rows=2, cols=3)
    ws.update([["when", "what"]], "A1")
    ws.append_rows([["d1", "a"], ["d2", "b"], ["d3", "c"]], insert_data_option=InsertDataOption.insert_rows)
    assert emu.sheet_properties(book.id, "Log")["gridProperties"]["rowCount"] == 5
    ws.append_rows([["d4", "d"]])  # fills the blank row 5 pushed down by the insert
    ws.append_rows([["d5", "e"]])  # OVERWRITE past the last row adds a row
    assert emu.sheet_state(book.id, "Log").row_count == 6
    assert emu.values(book.id, "Log")[-2:] == [["d4", "d"], ["d5", "e"]]
    ws.append_rows([["d6", "f", "", "wide"]])  # and columns too
    assert (emu.sheet_state(book.id, "Log").row_count, emu.sheet_state(book.id, "Log").column_count) == (7, 4)


def test_writes_beyond_the_grid_are_refused_like_google(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    ws = book.add_worksheet("Small", rows=3, cols=2)
    # As measured on Google: the message names the part of the write that lies past the grid.
    with pytest.raises(APIError, match=r"Range \(Small!A4\) exceeds grid limits. Max rows: 3, max columns: 2"):
        ws.update([["x"]], "A4")
    with pytest.raises(APIError, match=r"Range \(Small!C1\) exceeds grid limits"):
        ws.update([["a", "b", "c"]], "A1")
    with pytest.raises(APIError, match=r"Range \(Small!A4:A5\) exceeds grid limits"):
        ws.update([["a"], ["b"], ["c"], ["d"], ["e"]], "A1")
    with pytest.raises(APIError, match=r"tried writing to column \[C\]"):
        ws.update([["a", "b", "c"]], "A1:B1")
    assert emu.values(book.id, "Small") == []


def test_range_echoes_and_range_errors(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    book.add_worksheet("It's", rows=10, cols=5)
    session = emu.session()

    def get(rng: str) -> requests.Response:
        return session.get(sheets_url(book.id, f"/values/{quote(rng, safe='')}"))

    assert get("'It''s'!A1:A").json()["range"] == "'It''s'!A1:A10"
    assert get("'It''s'!A2:2").json()["range"] == "'It''s'!A2:E2"
    assert get("'It''s'").json() == {"range": "'It''s'!A1:E10", "majorDimension": "ROWS"}
    assert get("Sheet1").json()["range"] == "Sheet1!A1:Z1000"
    assert get("B2:C3").json()["range"] == "Sheet1!B2:C3"  # no sheet named: the first sheet
    bad = get("Nope!A1")
    assert bad.status_code == 400
    assert bad.json() == {"error": {"code": 400, "message": "Unable to parse range: Nope!A1",
                                    "status": "INVALID_ARGUMENT"}}
    # As measured on Google: an end past the grid is clamped, a start outside it is refused.
    assert get("'It''s'!D1:Z30").json()["range"] == "'It''s'!D1:E10"
    assert get("'It''s'!F1:G2").json()["error"]["message"] == (
        "Range ('It''s'!F1:G2) exceeds grid limits. Max rows: 10, max columns: 5")
    assert get("'It''s'!A:F").json()["error"]["message"] == (
        "Range ('It''s'!A:F) exceeds grid limits. Max rows: 10, max columns: 5")
    assert get("Z2000").json()["error"]["message"] == (
        "Range (Sheet1!Z2000) exceeds grid limits. Max rows: 1000, max columns: 26")


def test_requests_are_recorded_with_their_options(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    ws = book.sheet1
    emu.reset_requests()
    ws.update([["=2*3"]], "B2", raw=False)
    ws.batch_clear(["A1:A2", "B2"])
    recorded = emu.requests
    update = recorded[-2]
    assert (update.method, update.endpoint, update.range) == ("PUT", "values.update", "'Sheet1'!B2")
    assert update.query["valueInputOption"] == "USER_ENTERED"
    assert update.body["values"] == [["=2*3"]]
    assert update.path == f"/v4/spreadsheets/{book.id}/values/'Sheet1'!B2"
    assert update.failed_status is None and update.status == 200
    assert recorded[-1].ranges == ["'Sheet1'!A1:A2", "'Sheet1'!B2"]
    emu.reset_requests()
    assert emu.requests == []


def test_fail_next_html_503_is_observable_and_changes_nothing(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    ws = book.sheet1
    emu.reset_requests()
    emu.fail_next(2, 503, "html")
    for _ in range(2):
        with pytest.raises(APIError) as caught:
            ws.update([["lost"]], "A1")
        assert caught.value.response.status_code == 503
        assert caught.value.response.headers["Content-Type"].startswith("text/html")
        assert "Error 503" in caught.value.response.text
    ws.update([["kept"]], "A2")
    assert emu.values(book.id, "Sheet1") == [[], ["kept"]]
    assert [r.failed_status for r in emu.requests] == [503, 503, None]
    assert [r.status for r in emu.requests] == [503, 503, 200]
    assert all(r.endpoint == "values.update" for r in emu.requests)


def test_fail_next_json_bodies_use_googles_codes(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    expected = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
    for status, name in expected.items():
        emu.fail_next(1, status)
        with pytest.raises(APIError) as caught:
            book.sheet1.get("A1")
        assert (caught.value.code, caught.value.error["status"]) == (status, name)
    with pytest.raises(ValueError):
        emu.fail_next(1, 404)
    with pytest.raises(ValueError):
        emu.fail_next(1, 503, "xml")


def test_fail_rate_is_deterministic_per_seed(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    session = emu.session()

    def run() -> list[tuple[int, str]]:
        emu.fail_rate(0.5, seed=42)
        out = []
        for _ in range(40):
            reply = session.get(sheets_url(book.id))
            out.append((reply.status_code, reply.headers["Content-Type"].split(";")[0]))
        emu.fail_rate(0.0)
        return out

    first, second = run(), run()
    assert first == second
    statuses = {s for s, _ in first}
    assert 200 in statuses and statuses - {200} and statuses <= {200, 429, 500, 503}
    assert {kind for s, kind in first if s != 200} == {"application/json", "text/html"}


def test_latency_delays_every_answer(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    emu.latency(0.15)
    started = time.monotonic()
    book.sheet1.get("A1")
    assert time.monotonic() - started >= 0.15
    emu.latency(0)


def test_batch_update_is_atomic(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    before = emu.sheet_properties(book.id, "Sheet1")
    with pytest.raises(APIError, match=r"Invalid requests\[2\].deleteSheet: No grid with id: 999"):
        book.batch_update({"requests": [
            {"addSheet": {"properties": {"title": "Half done"}}},
            {"updateSheetProperties": {"properties": {"sheetId": 0, "gridProperties": {"frozenRowCount": 3}},
                                       "fields": "gridProperties.frozenRowCount"}},
            {"deleteSheet": {"sheetId": 999}},
        ]})
    assert emu.sheet_titles(book.id) == ["Sheet1"]
    assert emu.sheet_properties(book.id, "Sheet1") == before
    with pytest.raises(APIError, match="Unable to parse range: Missing!A1"):
        book.values_batch_update({"valueInputOption": "RAW", "data": [
            {"range": "Sheet1!A1", "values": [["written?"]]}, {"range": "Missing!A1", "values": [["x"]]}]})
    assert emu.values(book.id, "Sheet1") == []


def test_batch_update_checks_shapes_like_google(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    session = emu.session()

    def post(*reqs: dict[str, Any]) -> dict[str, Any]:
        return session.post(sheets_url(book.id, ":batchUpdate"), json={"requests": list(reqs)}).json()

    assert post({"fooBar": {}})["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"fooBar\" at 'requests[0]': Cannot find field.")
    assert post({"deleteSheet": {"sheetId": "abc"}})["error"]["message"] == (
        "Invalid value at 'requests[0].delete_sheet.sheet_id' (TYPE_INT32), \"abc\"")
    assert post({"appendDimension": {"sheetId": 0, "dimension": "ROW", "length": 1}})["error"]["message"] == (
        "Invalid value at 'requests[0].append_dimension.dimension' "
        "(type.googleapis.com/google.apps.sheets.v4.Dimension), \"ROW\"")
    assert post({"addSheet": {"properties": {"title": "Sheet1"}}})["error"]["message"] == (
        "Invalid requests[0].addSheet: A sheet with the name \"Sheet1\" already exists. Please enter another name.")
    assert post({"deleteSheet": {"sheetId": 0}})["error"]["message"] == (
        "Invalid requests[0].deleteSheet: You can't remove all the sheets in a document.")
    assert post({"mergeCells": {}})["error"]["code"] == 400
    assert post()["error"]["message"] == "Must specify at least one request."


def test_sheet_properties_fields_and_layout_requests(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    ws = book.sheet1
    ws.update([["Name", "Stage"], ["a", "b"]], "A1")
    ws.freeze(rows=1)
    ws.update_title("Partners")
    assert emu.sheet_titles(book.id) == ["Partners"]
    props = emu.sheet_properties(book.id, "Partners")
    assert props["gridProperties"] == {"rowCount": 1000, "columnCount": 26, "frozenRowCount": 1}
    ws.freeze(rows=0)
    assert "frozenRowCount" not in emu.sheet_properties(book.id, "Partners")["gridProperties"]
    ws.add_cols(4)
    ws.insert_rows([["new", "row"]], row=2)
    ws.columns_auto_resize(0, 2)
    assert emu.values(book.id, "Partners") == [["Name", "Stage"], ["new", "row"], ["a", "b"]]
    ws.delete_rows(2)
    state = emu.sheet_state(book.id, "Partners")
    assert (state.row_count, state.column_count, state.values) == (1000, 30, [["Name", "Stage"], ["a", "b"]])
    ws.resize(rows=2, cols=2)
    assert emu.sheet_state(book.id, "Partners").row_count == 2


def test_formats_validations_protection_notes_and_charts(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    ws = book.sheet1
    ws.format("A1:B1", {"textFormat": {"bold": True}, "backgroundColor": {"red": 0.9, "green": 0, "blue": 0.5}})
    ws.add_validation("C2:C3", gspread.utils.ValidationConditionType.one_of_list, ["Yes", "No"], showCustomUi=True)
    ws.add_protected_range("A1:B1", description="header")
    ws.update_note("A1", "the header")
    reply = book.batch_update({"requests": [{"addChart": {"chart": {
        "spec": {"title": "Referrals", "basicChart": {"chartType": "COLUMN"}},
        "position": {"overlayPosition": {"anchorCell": {"sheetId": 0, "rowIndex": 1, "columnIndex": 4}}}}}}]})
    chart = reply["replies"][0]["addChart"]["chart"]
    state = emu.sheet_state(book.id, "Sheet1")
    assert state.formats["A1"] == {"textFormat": {"bold": True}, "backgroundColor": {"red": 0.9, "blue": 0.5},
                                   "backgroundColorStyle": {"rgbColor": {"red": 0.9, "blue": 0.5}}}
    assert set(state.formats) == {"A1", "B1"}
    assert set(state.validations) == {"C2", "C3"}
    assert state.validations["C2"]["condition"] == {"type": "ONE_OF_LIST",
                                                    "values": [{"userEnteredValue": "Yes"}, {"userEnteredValue": "No"}]}
    assert state.protected_ranges[0]["description"] == "header"
    assert state.notes == {"A1": "the header"}
    assert state.charts == [chart] and isinstance(chart["chartId"], int)
    meta = book.fetch_sheet_metadata()["sheets"][0]
    assert meta["charts"][0]["chartId"] == chart["chartId"]
    assert meta["protectedRanges"][0]["range"] == {"startRowIndex": 0, "endRowIndex": 1,
                                                   "startColumnIndex": 0, "endColumnIndex": 2}
    formats = book.fetch_sheet_metadata({"ranges": "Sheet1!A1",
                                         "fields": "sheets.data.rowData.values.userEnteredFormat"})
    assert formats["sheets"][0]["data"][0]["rowData"][0]["values"][0]["userEnteredFormat"] == state.formats["A1"]


def test_private_and_unknown_spreadsheets(emu: SheetsEmulator) -> None:
    emu.create_spreadsheet("private-key", "not shared", private=True)
    client = emu.client()
    with pytest.raises(PermissionError):
        client.open_by_key("private-key")
    emu.set_private("private-key", False)
    assert client.open_by_key("private-key").title == "not shared"
    with pytest.raises(SpreadsheetNotFound):
        client.open_by_key("no-such-key")
    reply = emu.session().get(sheets_url("no-such-key"))
    assert reply.json() == {"error": {"code": 404, "message": "Requested entity was not found.",
                                      "status": "NOT_FOUND"}}


def test_sessions_reach_only_the_emulator(emu: SheetsEmulator) -> None:
    session = emulator_session(emu.base_url or "")
    with pytest.raises(requests.ConnectionError, match="refusing to contact"):
        session.get("https://www.googleapis.com/drive/v3/files")
    assert session.get(sheets_url("nothing-here")).status_code == 404
    assert requests.get(f"{emu.base_url}/v4/spreadsheets/nothing-here").status_code == 401  # no credentials


def test_concurrent_appends_are_all_kept(emu: SheetsEmulator, book: gspread.Spreadsheet) -> None:
    book.sheet1.update([["worker", "n"]], "A1")
    emu.reset_requests()

    def work(worker: int) -> None:
        sheet = emu.client().open_by_key(book.id).sheet1
        for n in range(5):
            sheet.append_row([f"w{worker}", n])

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = emu.values(book.id, "Sheet1")[1:]
    assert sorted((r[0], r[1]) for r in rows) == sorted((f"w{w}", n) for w in range(6) for n in range(5))
    assert sum(r.endpoint == "values.append" for r in emu.requests) == 30


def test_runs_standalone_from_the_command_line() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.sheets_emulator", "--port", "0", "--spreadsheet", "cli-key"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        reply = requests.get(f"{base_url}/v4/spreadsheets/cli-key", headers={"Authorization": "Bearer x"})
        assert reply.status_code == 200
        assert reply.json()["sheets"][0]["properties"]["title"] == "Sheet1"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
