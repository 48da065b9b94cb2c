"""The Google Sheets backend: the real gspread HTTP client with a service-account key.

Request counts stay constant whatever the number of rows: a read is one metadata request plus
one values.batchGet; a write is one batchGet (to find the rows again by ID) plus one
values.batchUpdate with valueInputOption RAW; an append is one values.append. Throttling and
server errors (429, 5xx) are retried a bounded number of times with exponential backoff and
full jitter; gspread's own retrying client is not used because it retries forever.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from datetime import date, datetime
from typing import Any, Callable, Iterator, Mapping, Sequence

import requests
from gspread.exceptions import APIError
from gspread.http_client import HTTPClient
from gspread.utils import rowcol_to_a1
from requests.adapters import HTTPAdapter

from automations.cells import SERIAL_EPOCH, normalise_header, one_line, text
from automations.config import GOOGLE_ENDPOINT, SheetSettings
from automations.errors import SheetError
from automations.schema import TabSpec
from automations.sheets.base import (
    DATE_CHARS,
    MAX_WIDTH_CHARS,
    Dashboard,
    RowWrite,
    Table,
    WriteReport,
    as_cell,
    header_chars,
    plan_cells,
    text_chars,
)

SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# FORMULA: a formula cell reads as its text on both backends (openpyxl reads formulas too), never as a value
READ_PARAMS = {"valueRenderOption": "FORMULA", "dateTimeRenderOption": "SERIAL_NUMBER"}
RAW = {"valueInputOption": "RAW"}
DATE_FORMATS = {"date": {"type": "DATE", "pattern": "yyyy-mm-dd"},
                "datetime": {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm"}}
# What `init` reads of each tab beyond its values: properties, protected ranges, each column's width
LAYOUT_FIELDS = "sheets(properties,protectedRanges,data.columnMetadata(pixelSize,hiddenByUser))"
DEFAULT_COLUMN_PIXELS = 100  # a new column's width in Google Sheets
SAMPLE_ROWS = 500  # rows at each end of a tab that `init` fits column widths to


class SheetRequestError(SheetError):
    """Google refused a request; `status` tells a bad range (400) from an outage."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class EndpointRewrite(HTTPAdapter):
    """Sends requests for sheets.googleapis.com to another base URL (a private gateway or an emulator)."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = endpoint.rstrip("/")

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        assert request.url is not None
        request.url = self.endpoint + request.url[len(GOOGLE_ENDPOINT):]
        return super().send(request, **kwargs)


class RetryingHTTPClient(HTTPClient):
    """gspread's HTTP client with a bounded retry on 429 and 5xx (JSON or HTML bodies alike)."""

    attempts = 6
    base_delay = 1.0
    max_delay = 32.0

    def __init__(self, auth: Any, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> None:
        super().__init__(auth, session)
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.total_wait = 0.0
        self.retries = 0
        self.retry_statuses: frozenset[int] = RETRY_STATUSES

    @contextlib.contextmanager
    def retrying_only(self, statuses: set[int]) -> Iterator[None]:
        """Within: retry only these statuses (for requests that are not safe to repeat after a 5xx)."""
        saved, self.retry_statuses = self.retry_statuses, frozenset(statuses)
        try:
            yield
        finally:
            self.retry_statuses = saved

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        for attempt in range(1, self.attempts + 1):
            try:
                return super().request(*args, **kwargs)
            except APIError as exc:
                status = exc.response.status_code
                if status not in self.retry_statuses or attempt == self.attempts:
                    raise
            except (requests.ConnectionError, requests.Timeout):
                if attempt == self.attempts or 500 not in self.retry_statuses:
                    raise
            delay = self.rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
            self.total_wait += delay
            self.retries += 1
            self.sleep(delay)
        raise AssertionError("unreachable")


def make_session(settings: SheetSettings) -> requests.Session:
    """An authorised requests session for the configured endpoint and key file."""
    if settings.credentials is not None:
        from google.auth.exceptions import GoogleAuthError
        from google.auth.transport.requests import AuthorizedSession
        from google.oauth2 import service_account

        path = settings.credentials
        if not path.exists():
            raise SheetError(f"[sheet] credentials: key file {path} not found; download the service account's JSON key there")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        except (ValueError, KeyError, GoogleAuthError, OSError):
            raise SheetError(
                f"[sheet] credentials: {path} is not a service-account key file (JSON with client_email and private_key)"
            ) from None
        session: requests.Session = AuthorizedSession(credentials)
    else:
        session = requests.Session()
        session.headers["Authorization"] = "Bearer partnerloop-local"
    if settings.api_endpoint != GOOGLE_ENDPOINT:
        session.mount(GOOGLE_ENDPOINT, EndpointRewrite(settings.api_endpoint))
    return session


def quote_title(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


def to_serial(value: date | datetime) -> float | int:
    """A date as a Sheets serial number, so it is a real date cell under RAW input."""
    if isinstance(value, datetime):
        delta = value.replace(tzinfo=None) - datetime.combine(SERIAL_EPOCH, datetime.min.time())
        return round(delta.total_seconds() / 86400, 6)
    return (value - SERIAL_EPOCH).days


def raw_value(value: Any) -> Any:
    value = as_cell(value)
    if isinstance(value, (date, datetime)):
        return to_serial(value)
    return "" if value is None else value


class GoogleBackend:
    """A Google Sheet opened by key; see the module docstring for the request budget."""

    def __init__(self, settings: SheetSettings, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.key = settings.key
        self.http = RetryingHTTPClient(None, session or make_session(settings), sleep=sleep)
        self.http.set_timeout(60)

    def location(self) -> str:
        return f"https://docs.google.com/spreadsheets/d/{self.key}"

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Google applies each request as it comes: nothing to gather."""
        return contextlib.nullcontext()

    # -- requests, with errors turned into one line ----------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except APIError as exc:
            status = exc.response.status_code
            if status == 404:
                message = f"spreadsheet key {self.key!r} not found; check [sheet] key in the config"
            elif status == 403:
                message = (f"no access to spreadsheet {self.key!r}; share the sheet with the service account's "
                           "client_email as an Editor")
            elif status in (401,):
                message = "Google refused the service-account credentials; check [sheet] credentials"
            else:
                # A non-JSON body (an HTML error page) is not a message for people: say the HTTP reason.
                parsed = isinstance(exc.error, dict) and exc.error.get("code") != -1
                detail = exc.error.get("message", "") if parsed else exc.response.reason
                message = f"Google Sheets answered {status} to {what}: {one_line(detail)[:120]}"
            raise SheetRequestError(message, status) from None
        except (requests.ConnectionError, requests.Timeout):
            raise SheetError(f"cannot reach {self.settings.api_endpoint} ({what}); check the network and try again") from None

    def _sheets(self, fields: str | None = None) -> dict[str, dict[str, Any]]:
        """Every tab's metadata (properties, protected ranges, charts; or *fields*) by title, in one request."""
        params = {"fields": fields} if fields else {"includeGridData": "false"}
        meta = self._call("reading the sheet list", self.http.fetch_sheet_metadata, self.key, params=params)
        return {s["properties"]["title"]: s for s in meta.get("sheets", [])}

    def _titles(self) -> dict[str, dict[str, Any]]:
        return {title: sheet["properties"] for title, sheet in self._sheets().items()}

    def _grids(self, titles: Sequence[str]) -> dict[str, list[list[Any]]]:
        if not titles:
            return {}
        reply = self._call("reading tabs", self.http.values_batch_get, self.key,
                           [quote_title(t) for t in titles], params=READ_PARAMS)
        return {t: r.get("values", []) for t, r in zip(titles, reply.get("valueRanges", []), strict=False)}

    # -- the Backend interface ---------------------------------------------------------------------
    def read(self, titles: Sequence[str]) -> dict[str, Table | None]:
        present = self._titles()
        wanted = [t for t in titles if t in present]
        grids = self._grids(wanted)
        return {t: Table.from_grid(t, grids[t]) if t in grids else None for t in titles}

    def tab_titles(self) -> list[str]:
        return list(self._titles())

    def ensure_writable(self) -> None:
        """Google takes writes whenever it takes reads: nothing to check beforehand."""

    def write(self, specs: Mapping[str, TabSpec], writes: Sequence[RowWrite]) -> WriteReport:
        if not writes:
            return WriteReport()
        titles = sorted({w.tab for w in writes})
        try:
            grids = self._grids(titles)
        except SheetRequestError as exc:
            if exc.status != 400:
                raise
            present = self._titles()  # a tab was deleted since the read: write the others, name it as lost
            grids = self._grids([t for t in titles if t in present])
        tables = {t: Table.from_grid(t, g) for t, g in grids.items()}
        targets, report = plan_cells(tables, specs, writes)
        data = [
            {"range": f"{quote_title(tab)}!{rowcol_to_a1(t.row, t.col + 1)}", "values": [[raw_value(t.value)]]}
            for tab, t in targets
        ]
        if data:
            self._call("writing statuses", self.http.values_batch_update, self.key,
                       {"valueInputOption": "RAW", "data": data})
        return report

    def append(self, title: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        body = {"values": [[raw_value(v) for v in row] for row in rows]}
        # Not retried on a 5xx, which Google may send after applying it: the next run checks what landed.
        with self.http.retrying_only({429}):
            # The whole tab is searched for the table, so a header staff moved right or down is still found.
            self._call(f"appending to {title}", self.http.values_append, self.key, quote_title(title),
                       {**RAW, "insertDataOption": "INSERT_ROWS"}, body)

    def ensure_layout(
        self, tabs: Sequence[tuple[str, TabSpec]], demo: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> list[str]:
        changes: list[str] = []
        sheets = self._sheets(LAYOUT_FIELDS)
        present = {title: sheet["properties"] for title, sheet in sheets.items()}
        missing = [title for title, _ in tabs if title not in present]
        if missing:
            reply = self._call("adding tabs", self.http.batch_update, self.key, {"requests": [
                {"addSheet": {"properties": {"title": title}}} for title in missing]})
            for added in reply.get("replies", []):
                props = added["addSheet"]["properties"]
                present[props["title"]] = props
            changes += [f"{title}: created tab" for title in missing]
        grids = self._grids([title for title, _ in tabs])
        values: list[dict[str, Any]] = []
        formatting: list[dict[str, Any]] = []
        for title, spec in tabs:
            grid = grids.get(title, [])
            header = [text(v) for v in (grid[0] if grid else [])]
            while header and not header[-1]:
                header.pop()
            known = {normalise_header(h) for h in header}
            added = [c.name for c in spec.columns if normalise_header(c.name) not in known]
            if added:
                start = rowcol_to_a1(1, len(header) + 1)
                values.append({"range": f"{quote_title(title)}!{start}", "values": [added]})
                if header:
                    changes.append(f"{title}: added column(s) {', '.join(added)}")
            header += added
            props = present[title]
            sheet_id = props["sheetId"]
            grid_cols = props.get("gridProperties", {}).get("columnCount", 26)
            if len(header) > grid_cols:
                formatting.append({"appendDimension": {"sheetId": sheet_id, "dimension": "COLUMNS",
                                                       "length": len(header) - grid_cols}})
            formatting += _header_requests(sheet_id, spec, header)
            formatting += _protection_requests(sheet_id, spec, header, sheets.get(title, {}).get("protectedRanges", []))
            rows = demo.get(title, ())
            block: list[list[Any]] = []
            if rows:
                index = {normalise_header(h): i for i, h in enumerate(header)}
                for record in rows:
                    line: list[Any] = [""] * len(header)
                    for name, value in record.items():
                        line[index[normalise_header(name)]] = raw_value(value)
                    block.append(line)
                first = max(len(grid) + 1, 2)
                grid_rows = props.get("gridProperties", {}).get("rowCount", 1000)
                if first + len(block) - 1 > grid_rows:
                    formatting.append({"appendDimension": {"sheetId": sheet_id, "dimension": "ROWS",
                                                           "length": first + len(block) - 1 - grid_rows}})
                values.append({"range": f"{quote_title(title)}!A{first}", "values": block})
                changes.append(f"{title}: added {len(rows)} sample row(s)")
            data: list[dict[str, Any]] = sheets.get(title, {}).get("data", [])
            columns = data[0].get("columnMetadata", []) if data else []
            formatting += _width_requests(sheet_id, spec, header, [*grid[1:], *block], columns)
        if formatting:
            self._call("formatting headers", self.http.batch_update, self.key, {"requests": formatting})
        if values:
            self._call("writing headers", self.http.values_batch_update, self.key,
                       {"valueInputOption": "RAW", "data": values})
        return changes

    def write_dashboard(self, dashboard: Dashboard) -> None:
        """Rewrite the Dashboard in place (never deleteSheet: formulas on other tabs pointing at it keep working)."""
        from automations.sheets.google_dashboard import dashboard_requests

        old = self._sheets().get(dashboard.title)
        sheet_id = old["properties"]["sheetId"] if old else 880_001
        requests_ = dashboard_requests(sheet_id, dashboard, raw_value, old=old)
        self._call("rewriting the Dashboard", self.http.batch_update, self.key, {"requests": requests_})


def _header_requests(sheet_id: int, spec: TabSpec, header: list[str]) -> list[dict[str, Any]]:
    """Bold frozen header, date formats on date columns, dropdowns on choice columns."""
    reqs: list[dict[str, Any]] = [
        {"repeatCell": {
            "range": {"sheetId": sheet_id, "startRowIndex": 0, "endRowIndex": 1},
            "cell": {"userEnteredFormat": {"textFormat": {"bold": True},
                                           "backgroundColor": {"red": 0.86, "green": 0.9, "blue": 0.95},
                                           "wrapStrategy": "WRAP"}},  # a long header takes two lines
            "fields": "userEnteredFormat(textFormat,backgroundColor,wrapStrategy)"}},
        {"updateSheetProperties": {"properties": {"sheetId": sheet_id, "gridProperties": {"frozenRowCount": 1}},
                                   "fields": "gridProperties.frozenRowCount"}},
    ]
    by_name = {normalise_header(c.name): c for c in spec.columns}
    for i, name in enumerate(header):
        column = by_name.get(normalise_header(name))
        if column is None:
            continue  # a staff column: left as it is
        area = {"sheetId": sheet_id, "startRowIndex": 1, "startColumnIndex": i, "endColumnIndex": i + 1}
        if column.choices:
            reqs.append({"setDataValidation": {"range": area, "rule": {
                "condition": {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": c} for c in column.choices]},
                "strict": False, "showCustomUi": True}}})
        if column.kind in DATE_FORMATS:
            reqs.append({"repeatCell": {"range": area, "cell": {"userEnteredFormat": {
                "numberFormat": DATE_FORMATS[column.kind]}}, "fields": "userEnteredFormat.numberFormat"}})
    return reqs


def _pixels(chars: float) -> int:
    """Pixels *chars* characters of Arial 10 take in a cell, padding included."""
    return round(chars * 7 + 12)


def _width_requests(sheet_id: int, spec: TabSpec, header: list[str], rows: Sequence[Sequence[Any]],
                    columns: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Widen each column narrower than its header and text (the first and last SAMPLE_ROWS rows), up
    to MAX_WIDTH_CHARS; a date column as wide as its dates. A hidden column, or one at least that
    wide already (staff widened it), is left as it is: one request per column widened, none per row.
    """
    kinds = {normalise_header(c.name): c.kind for c in spec.columns}
    sample = rows if len(rows) <= 2 * SAMPLE_ROWS else [*rows[:SAMPLE_ROWS], *rows[-SAMPLE_ROWS:]]
    reqs = []
    for i, name in enumerate(header):
        meta = columns[i] if i < len(columns) else {}
        if meta.get("hiddenByUser"):
            continue
        date_chars = DATE_CHARS.get(kinds.get(normalise_header(name), ""))
        chars = [text_chars(row[i]) for row in sample if i < len(row)]
        if date_chars is not None:  # dates read as serial numbers: as wide as the format shows them, rows or not
            chars = [date_chars]
        needed = min(_pixels(max([header_chars(name) * 1.1, *chars])), _pixels(MAX_WIDTH_CHARS))
        if needed > meta.get("pixelSize", DEFAULT_COLUMN_PIXELS):
            reqs.append({"updateDimensionProperties": {
                "range": {"sheetId": sheet_id, "dimension": "COLUMNS", "startIndex": i, "endIndex": i + 1},
                "properties": {"pixelSize": needed}, "fields": "pixelSize"}})
    return reqs


PROTECTED = "Written by partnerloop: edits here may be overwritten by the next run"


def _protection_requests(sheet_id: int, spec: TabSpec, header: list[str],
                         existing: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A warning-only protected range on each automation-owned column not yet carrying ours.

    Staff editing such a column see Google's warning; nothing is blocked.
    """
    auto = {normalise_header(c.name) for c in spec.columns if c.auto}
    covered = {r.get("range", {}).get("startColumnIndex") for r in existing if r.get("description") == PROTECTED}
    return [{"addProtectedRange": {"protectedRange": {
        "range": {"sheetId": sheet_id, "startColumnIndex": i, "endColumnIndex": i + 1},
        "description": PROTECTED, "warningOnly": True}}}
        for i, name in enumerate(header) if normalise_header(name) in auto and i not in covered]
