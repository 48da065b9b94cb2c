"""A local stand-in for the Google Sheets API v4, for partnerloop's tests.

No test machine can reach Google, yet partnerloop's Google Sheets backend must be exercised
through the real, unmodified gspread speaking HTTP.  ``SheetsEmulator`` is a small threaded
HTTP server (standard library only) that answers the Sheets v4 endpoints the way Google does:
same URLs, same JSON shapes, same error codes and messages.  Its fidelity is checked by
``tests/test_sheets_emulator.py``, which replays real recorded gspread/Google exchanges against it.

Quick use::

    with SheetsEmulator() as emu:
        emu.create_spreadsheet("key-1", "partnerloop test")
        book = emu.client().open_by_key("key-1")          # the real gspread
        book.sheet1.update([["=1+1"]], "A1", raw=False)
        assert emu.values("key-1", "Sheet1") == [["=1+1"]]

Endpoints (under ``/v4/spreadsheets``): create, get, batchUpdate (addSheet, deleteSheet,
updateSheetProperties, repeatCell, setDataValidation, addProtectedRange, addChart,
updateCells, autoResizeDimensions, updateDimensionProperties, appendDimension, insertDimension,
deleteDimension, deleteEmbeddedObject for charts),
values.get / batchGet / update / batchUpdate / append / clear / batchClear.

Deliberate simplifications (everything else aims to be Google's observable behaviour):

* Formulas: only a small subset is evaluated (numbers, strings, cell and range references,
  ``+ - * / ^ & %``, comparisons and SUM, AVERAGE, MIN, MAX, COUNT, COUNTA, IF, AND, OR, NOT,
  CONCATENATE, CONCAT, LEN, UPPER, LOWER, TRIM, ROUND, ABS, INT, MOD, HYPERLINK, TODAY, NOW,
  DATE).  Any other function evaluates to ``#NAME?``, an unparsable formula to ``#ERROR!``;
  TODAY() and NOW() use UTC (the spreadsheet time zone is Etc/GMT).  FORMULA rendering
  always returns the formula text exactly as entered.
* Number formatting: the automatic format prints integers plainly and other numbers with up
  to 10 significant digits.  Formula results get no inferred number format (Google shows
  ``=A1+1`` of a date as a date; here it is a plain number), except the automatic date format
  of TODAY()/DATE()/NOW().  Explicit NUMBER/PERCENT/CURRENCY/SCIENTIFIC and
  DATE/TIME/DATE_TIME patterns support the common tokens only.
* USER_ENTERED parsing recognises numbers (also with thousands separators), percentages,
  dollar amounts, TRUE/FALSE, ISO and US dates, ISO date-times, times, formulas and the
  leading-apostrophe text marker - not every locale-specific form Google accepts.
* values.append finds "the table" as the block of data that grows (down, and sideways) from the
  first filled row inside the range, and writes after its last row: a blank row ends a table.
  Rows that start with blank cells still belong to it, and a table that starts right of or below
  the range's first cell is found anywhere inside the range; a range whose cells are all blank
  has no table (values go in at its first cell, as gspread's insert_rows relies on).
* Charts are stored as sent (plus a chartId and the default border); they are not drawn, and
  only overlay charts (``position.overlayPosition``) are accepted.
* Error codes and statuses are always Google's; the message texts come from recordings where
  one exists (unknown spreadsheet, private spreadsheet, bad range, bad field value) and are
  close paraphrases of Google's wording otherwise.
* Authorization: any ``Authorization`` header is accepted; a request without one gets 401
  UNAUTHENTICATED (``SheetsEmulator(require_auth=False)`` turns that off).
* Request kinds that Google has but the emulator does not implement answer 400 and say so.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import math
import random
import re
import signal
import socket
import string
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from requests import PreparedRequest, Response, Session
from requests.adapters import HTTPAdapter

__all__ = [
    "A1",
    "A1Range",
    "FieldMask",
    "GridRange",
    "InputParser",
    "NumberFormatter",
    "RecordedRequest",
    "SheetState",
    "SheetsApiError",
    "SheetsEmulator",
    "SheetsRedirectAdapter",
    "emulator_client",
    "emulator_session",
]

GOOGLE_SHEETS_ORIGIN = "https://sheets.googleapis.com"
DEFAULT_TOKEN = "partnerloop-emulator-token"
OWNER_EMAIL = "partnerloop-tests@partnerloop-emulator.iam.gserviceaccount.com"
MAX_CELLS = 10_000_000
MAX_COLUMNS = 18_278  # column ZZZ

#: The spreadsheet-level properties Google gives a new blank spreadsheet (as recorded).
DEFAULT_FORMAT: dict[str, Any] = {
    "backgroundColor": {"red": 1, "green": 1, "blue": 1},
    "padding": {"top": 2, "right": 3, "bottom": 2, "left": 3},
    "verticalAlignment": "BOTTOM",
    "wrapStrategy": "OVERFLOW_CELL",
    "textFormat": {
        "foregroundColor": {},
        "fontFamily": "arial,sans,sans-serif",
        "fontSize": 10,
        "bold": False,
        "italic": False,
        "strikethrough": False,
        "underline": False,
        "foregroundColorStyle": {"rgbColor": {}},
    },
    "backgroundColorStyle": {"rgbColor": {"red": 1, "green": 1, "blue": 1}},
}


def _theme_color(kind: str, red: float = 0, green: float = 0, blue: float = 0) -> dict[str, Any]:
    rgb = {k: v for k, v in (("red", red), ("green", green), ("blue", blue)) if v}
    return {"colorType": kind, "color": {"rgbColor": rgb}}


SPREADSHEET_THEME: dict[str, Any] = {
    "primaryFontFamily": "Arial",
    "themeColors": [
        _theme_color("TEXT"),
        _theme_color("BACKGROUND", 1, 1, 1),
        _theme_color("ACCENT1", 0.25882354, 0.52156866, 0.95686275),
        _theme_color("ACCENT2", 0.91764706, 0.2627451, 0.20784314),
        _theme_color("ACCENT3", 0.9843137, 0.7372549, 0.015686275),
        _theme_color("ACCENT4", 0.20392157, 0.65882355, 0.3254902),
        _theme_color("ACCENT5", 1, 0.42745098, 0.003921569),
        _theme_color("ACCENT6", 0.27450982, 0.7411765, 0.7764706),
        _theme_color("LINK", 0.06666667, 0.33333334, 0.8),
    ],
}


# =============================================================================================
# Errors
# =============================================================================================

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class SheetsApiError(Exception):
    """An error answer, rendered as Google's ``{"error": {"code", "message", "status"}}`` body."""

    def __init__(self, code: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def status(self) -> str:
        return STATUS_NAMES.get(self.code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    # -- the errors Google gives, with its wording ---------------------------------------------
    @classmethod
    def invalid(cls, message: str) -> SheetsApiError:
        return cls(400, message)

    @classmethod
    def field_violation(cls, field_path: str, message: str) -> SheetsApiError:
        violation = {"field": field_path, "description": message} if field_path else {"description": message}
        return cls(400, message, [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                   "fieldViolations": [violation]}])

    @classmethod
    def not_found(cls) -> SheetsApiError:
        return cls(404, "Requested entity was not found.")

    @classmethod
    def permission_denied(cls) -> SheetsApiError:
        return cls(403, "The caller does not have permission")

    @classmethod
    def unauthenticated(cls) -> SheetsApiError:
        return cls(401, "Request is missing required authentication credential. Expected OAuth 2 access token, "
                        "login cookie or other valid authentication credential. See "
                        "https://developers.google.com/identity/sign-in/web/devconsole-project.")

    @classmethod
    def unparsable_range(cls, text: str) -> SheetsApiError:
        return cls(400, f"Unable to parse range: {text}")

    @classmethod
    def grid_limits(cls, range_text: str, rows: int, cols: int) -> SheetsApiError:
        return cls(400, f"Range ({range_text}) exceeds grid limits. Max rows: {rows}, max columns: {cols}")


# =============================================================================================
# A1 notation
# =============================================================================================


@dataclass(frozen=True)
class GridRange:
    """A rectangle of cells, 0-based, end-exclusive; ``None`` ends are open (to the grid's edge)."""

    start_row: int = 0
    end_row: int | None = None
    start_col: int = 0
    end_col: int | None = None

    def clamp(self, rows: int, cols: int) -> GridRange:
        """The same rectangle with open ends closed at the grid's edge."""
        return GridRange(self.start_row, rows if self.end_row is None else self.end_row,
                         self.start_col, cols if self.end_col is None else self.end_col)

    def exceeds(self, rows: int, cols: int) -> bool:
        return (self.start_row >= rows or self.start_col >= cols
                or (self.end_row or 0) > rows or (self.end_col or 0) > cols)

    @property
    def height(self) -> int:
        assert self.end_row is not None
        return self.end_row - self.start_row

    @property
    def width(self) -> int:
        assert self.end_col is not None
        return self.end_col - self.start_col

    def contains(self, row: int, col: int) -> bool:
        return (self.start_row <= row and (self.end_row is None or row < self.end_row)
                and self.start_col <= col and (self.end_col is None or col < self.end_col))

    def cells(self) -> Iterator[tuple[int, int]]:
        assert self.end_row is not None and self.end_col is not None
        for r in range(self.start_row, self.end_row):
            for c in range(self.start_col, self.end_col):
                yield r, c


@dataclass(frozen=True)
class A1Range:
    """A parsed A1 range: ``title`` None means no sheet was named; ``cells`` None means the whole sheet."""

    title: str | None
    cells: GridRange | None
    text: str


class A1:
    """Google's A1 notation: parsing, formatting and the quoting rule for sheet titles."""

    _ENDPOINT = re.compile(r"\$?([A-Za-z]{1,3})?\$?([0-9]+)?")
    _PLAIN_TITLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    _CELL_LIKE = re.compile(r"[A-Za-z]{1,3}[0-9]+|[Rr][0-9]*[Cc][0-9]*")

    @staticmethod
    def column_letters(index: int) -> str:
        """0 -> A, 25 -> Z, 26 -> AA."""
        letters = ""
        index += 1
        while index:
            index, rem = divmod(index - 1, 26)
            letters = chr(65 + rem) + letters
        return letters

    @staticmethod
    def column_index(letters: str) -> int:
        """A -> 0, Z -> 25, AA -> 26."""
        n = 0
        for ch in letters.upper():
            n = n * 26 + ord(ch) - 64
        return n - 1

    @classmethod
    def quote_title(cls, title: str) -> str:
        """Quote a sheet title the way Google does in the ranges it returns."""
        if cls._PLAIN_TITLE.fullmatch(title) and not cls._CELL_LIKE.fullmatch(title):
            return title
        return "'" + title.replace("'", "''") + "'"

    @classmethod
    def cell(cls, row: int, col: int) -> str:
        return f"{cls.column_letters(col)}{row + 1}"

    @classmethod
    def format_cells(cls, grid: GridRange) -> str:
        """A bounded rectangle as ``A1:B2``, or ``A1`` for a single cell."""
        assert grid.end_row is not None and grid.end_col is not None
        start = cls.cell(grid.start_row, grid.start_col)
        if grid.height == 1 and grid.width == 1:
            return start
        return f"{start}:{cls.cell(grid.end_row - 1, grid.end_col - 1)}"

    @classmethod
    def format(cls, title: str, grid: GridRange) -> str:
        return f"{cls.quote_title(title)}!{cls.format_cells(grid)}"

    @classmethod
    def format_range(cls, title: str, grid: GridRange) -> str:
        """Like ``format`` but open ends stay open: ``Sheet1!A:ZZ``, ``Sheet1!3:5``, ``Sheet1!B2:D``."""
        if grid.end_row is not None and grid.end_col is not None:
            return cls.format(title, grid)
        column_form = grid.end_row is None and grid.start_row == 0
        row_form = grid.end_col is None and grid.start_col == 0
        start = ("" if row_form else cls.column_letters(grid.start_col)) + \
                ("" if column_form else str(grid.start_row + 1))
        end = ("" if grid.end_col is None else cls.column_letters(grid.end_col - 1)) + \
              ("" if grid.end_row is None else str(grid.end_row))
        return f"{cls.quote_title(title)}!{start}:{end}"

    @staticmethod
    def outside(area: GridRange, rows: int, cols: int) -> GridRange:
        """The part of a bounded *area* past a rows x cols grid (the columns past it, else the rows)."""
        assert area.end_row is not None and area.end_col is not None
        if area.end_col > cols:
            return GridRange(area.start_row, area.end_row, max(area.start_col, cols), area.end_col)
        return GridRange(max(area.start_row, rows), area.end_row, area.start_col, area.end_col)

    @classmethod
    def parse(cls, text: str) -> A1Range:
        """Parse ``'It''s'!A1:B2``, ``Sheet1!A:A``, ``Sheet1``, ``A1`` ...; raise ValueError if malformed.

        Text without ``!`` is kept as a title; whether it names a sheet or cells on the first sheet
        is decided against the spreadsheet (see ``Spreadsheet.resolve``).
        """
        s = text.strip()
        if not s:
            raise ValueError(text)
        if s.startswith("'"):
            title, i = cls._quoted_title(s)
            rest = s[i:]
            if not rest:
                return A1Range(title, None, text)
            if not rest.startswith("!") or len(rest) == 1:
                raise ValueError(text)
            return A1Range(title, cls.parse_cells(rest[1:]), text)
        if "!" in s:
            title, _, cells = s.rpartition("!")
            if not title or not cells:
                raise ValueError(text)
            return A1Range(title, cls.parse_cells(cells), text)
        return A1Range(None, None, text)

    @staticmethod
    def _quoted_title(s: str) -> tuple[str, int]:
        out: list[str] = []
        i = 1
        while i < len(s):
            if s[i] == "'":
                if s[i + 1:i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                return "".join(out), i + 1
            out.append(s[i])
            i += 1
        raise ValueError(s)

    @classmethod
    def parse_cells(cls, text: str) -> GridRange:
        """``A1``, ``A1:B2``, ``A:A``, ``2:2``, ``A2:2``, ``A5:A`` ... as a GridRange; ValueError if malformed."""
        parts = text.strip().split(":")
        if len(parts) == 1:
            col, row = cls._endpoint(parts[0])
            if col is None or row is None:
                raise ValueError(text)
            return GridRange(row, row + 1, col, col + 1)
        if len(parts) != 2:
            raise ValueError(text)
        (c1, r1), (c2, r2) = cls._endpoint(parts[0]), cls._endpoint(parts[1])
        start_row = r1 if r1 is not None else 0
        start_col = c1 if c1 is not None else 0
        end_row = r2 + 1 if r2 is not None else None
        end_col = c2 + 1 if c2 is not None else None
        if r1 is None and r2 is not None and c1 is not None and c2 is None:
            raise ValueError(text)  # "A:2" means nothing
        if end_row is not None and end_row <= start_row:
            start_row, end_row = end_row - 1, start_row + 1
        if end_col is not None and end_col <= start_col:
            start_col, end_col = end_col - 1, start_col + 1
        return GridRange(start_row, end_row, start_col, end_col)

    @classmethod
    def _endpoint(cls, text: str) -> tuple[int | None, int | None]:
        m = cls._ENDPOINT.fullmatch(text.strip())
        if not m or (m.group(1) is None and m.group(2) is None):
            raise ValueError(text)
        col = cls.column_index(m.group(1)) if m.group(1) else None
        row = int(m.group(2)) - 1 if m.group(2) else None
        if row is not None and row < 0:
            raise ValueError(text)
        if col is not None and col >= MAX_COLUMNS:
            raise ValueError(text)
        return col, row


# =============================================================================================
# Field masks (the "fields" of update requests and of partial responses)
# =============================================================================================

MaskTree = dict[str, "MaskTree | None"]  # None: the whole value at this key

#: Colour fields Google keeps in step with their ``...Style`` twin.
LINKED_FIELDS = {
    "backgroundColor": "backgroundColorStyle", "backgroundColorStyle": "backgroundColor",
    "foregroundColor": "foregroundColorStyle", "foregroundColorStyle": "foregroundColor",
    "tabColor": "tabColorStyle", "tabColorStyle": "tabColor",
    "color": "colorStyle", "colorStyle": "color",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class FieldMask:
    """A parsed field mask such as ``userEnteredFormat(backgroundColor,textFormat),note``."""

    def __init__(self, tree: MaskTree) -> None:
        self.tree = tree

    @classmethod
    def parse(cls, text: str) -> FieldMask:
        paths, i = cls._parse_list(text, 0)
        if i != len(text):
            raise ValueError(text)
        tree: MaskTree = {}
        for path in paths:
            if not path:
                continue
            node = tree
            for j, name in enumerate(path):
                last = j == len(path) - 1
                if last:
                    node[name] = None
                else:
                    child = node.get(name, {})
                    if child is None:
                        break  # an enclosing path already takes the whole value
                    node[name] = child
                    node = child
        return cls(tree)

    @classmethod
    def _parse_list(cls, s: str, i: int) -> tuple[list[tuple[str, ...]], int]:
        paths: list[tuple[str, ...]] = []
        while i <= len(s):
            j = i
            while j < len(s) and s[j] not in ",()":
                j += 1
            prefix = tuple(_camel(p.strip()) for p in re.split(r"[./]", s[i:j]) if p.strip())
            if j < len(s) and s[j] == "(":
                sub, j = cls._parse_list(s, j + 1)
                if j >= len(s) or s[j] != ")":
                    raise ValueError(s)
                j += 1
                paths += [prefix + p for p in sub]
            else:
                paths.append(prefix)
            if j < len(s) and s[j] == ",":
                i = j + 1
                continue
            return paths, j
        return paths, i

    def is_empty(self) -> bool:
        return not self.tree

    def covers(self, *path: str) -> bool:
        """Whether the mask selects anything at or below *path*."""
        node: MaskTree | None = self.tree
        for name in path:
            if node is None or "*" in node:
                return True
            if name not in node:
                return False
            node = node[name]
        return True

    def linked(self) -> FieldMask:
        """The mask widened so that a colour and its ``...Style`` twin are always updated together."""
        def widen(node: MaskTree | None) -> MaskTree | None:
            if node is None:
                return None
            out: MaskTree = {k: widen(v) for k, v in node.items()}
            for key in list(out):
                twin = LINKED_FIELDS.get(key)
                if twin and twin not in out:
                    out[twin] = None
            return out
        return FieldMask(widen(self.tree) or {})

    def filter(self, value: Any) -> Any:
        """Keep only the selected parts of a response (partial response semantics)."""
        return self._filter(value, self.tree)

    @classmethod
    def _filter(cls, value: Any, node: MaskTree | None) -> Any:
        if node is None:
            return value
        if isinstance(value, list):
            return [cls._filter(v, node) for v in value]
        if not isinstance(value, dict):
            return value
        if "*" in node:
            sub = node["*"]
            return value if sub is None else {k: cls._filter(v, sub) for k, v in value.items()}
        out: dict[str, Any] = {}
        for key, sub in node.items():
            if key in value:
                kept = cls._filter(value[key], sub)
                if kept != {}:
                    out[key] = kept
        return out

    def apply(self, target: dict[str, Any], source: Mapping[str, Any]) -> None:
        """Update semantics: each selected field of *target* becomes *source*'s (or is removed)."""
        self._apply(target, source, self.tree)

    @classmethod
    def _apply(cls, target: dict[str, Any], source: Mapping[str, Any], node: MaskTree) -> None:
        if "*" in node:
            target.clear()
            target.update(copy.deepcopy(dict(source)))
            return
        for key, sub in node.items():
            if sub is None:
                if source.get(key) is not None:
                    target[key] = copy.deepcopy(source[key])
                else:
                    target.pop(key, None)
                continue
            src = source.get(key)
            dst = target.get(key)
            if not isinstance(dst, dict):
                dst = {}
            cls._apply(dst, src if isinstance(src, dict) else {}, sub)
            if dst:
                target[key] = dst
            else:
                target.pop(key, None)


# =============================================================================================
# Request shapes, checked like Google's JSON-to-proto parser
# =============================================================================================

ENUMS: dict[str, tuple[str, ...]] = {
    "Dimension": ("DIMENSION_UNSPECIFIED", "ROWS", "COLUMNS"),
    "SheetType": ("SHEET_TYPE_UNSPECIFIED", "GRID", "OBJECT", "DATA_SOURCE"),
    "ValueInputOption": ("INPUT_VALUE_OPTION_UNSPECIFIED", "RAW", "USER_ENTERED"),
    "ValueRenderOption": ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"),
    "DateTimeRenderOption": ("SERIAL_NUMBER", "FORMATTED_STRING"),
    "InsertDataOption": ("OVERWRITE", "INSERT_ROWS"),
    "HorizontalAlign": ("HORIZONTAL_ALIGN_UNSPECIFIED", "LEFT", "CENTER", "RIGHT"),
    "VerticalAlign": ("VERTICAL_ALIGN_UNSPECIFIED", "TOP", "MIDDLE", "BOTTOM"),
    "WrapStrategy": ("WRAP_STRATEGY_UNSPECIFIED", "OVERFLOW_CELL", "LEGACY_WRAP", "CLIP", "WRAP"),
    "TextDirection": ("TEXT_DIRECTION_UNSPECIFIED", "LEFT_TO_RIGHT", "RIGHT_TO_LEFT"),
    "HyperlinkDisplayType": ("HYPERLINK_DISPLAY_TYPE_UNSPECIFIED", "LINKED", "PLAIN_TEXT"),
    "NumberFormatType": ("NUMBER_FORMAT_TYPE_UNSPECIFIED", "TEXT", "NUMBER", "PERCENT", "CURRENCY", "DATE",
                         "TIME", "DATE_TIME", "SCIENTIFIC"),
    "ThemeColorType": ("THEME_COLOR_TYPE_UNSPECIFIED", "TEXT", "BACKGROUND", "ACCENT1", "ACCENT2", "ACCENT3",
                       "ACCENT4", "ACCENT5", "ACCENT6", "LINK"),
    "ConditionType": (
        "CONDITION_TYPE_UNSPECIFIED", "NUMBER_GREATER", "NUMBER_GREATER_THAN_EQ", "NUMBER_LESS",
        "NUMBER_LESS_THAN_EQ", "NUMBER_EQ", "NUMBER_NOT_EQ", "NUMBER_BETWEEN", "NUMBER_NOT_BETWEEN",
        "TEXT_CONTAINS", "TEXT_NOT_CONTAINS", "TEXT_STARTS_WITH", "TEXT_ENDS_WITH", "TEXT_EQ", "TEXT_IS_EMAIL",
        "TEXT_IS_URL", "DATE_EQ", "DATE_BEFORE", "DATE_AFTER", "DATE_ON_OR_BEFORE", "DATE_ON_OR_AFTER",
        "DATE_BETWEEN", "DATE_NOT_BETWEEN", "DATE_IS_VALID", "ONE_OF_RANGE", "ONE_OF_LIST", "BLANK",
        "NOT_BLANK", "CUSTOM_FORMULA", "BOOLEAN", "TEXT_NOT_EQ", "DATE_NOT_EQ", "FILTER_EXPRESSION"),
    "RelativeDate": ("RELATIVE_DATE_UNSPECIFIED", "PAST_YEAR", "PAST_MONTH", "PAST_WEEK", "YESTERDAY", "TODAY",
                     "TOMORROW"),
}

#: Message shapes: field -> type.  Types: int32, float, double, bool, string, object (any JSON
#: object, not inspected), ListValue, enum:Name, another message name; "[]" marks repeated fields.
MESSAGES: dict[str, dict[str, str]] = {
    "BatchUpdateSpreadsheetRequest": {"requests": "[]Request", "includeSpreadsheetInResponse": "bool",
                                      "responseRanges": "[]string", "responseIncludeGridData": "bool"},
    "AddSheetRequest": {"properties": "SheetProperties"},
    "DeleteSheetRequest": {"sheetId": "int32"},
    "DeleteEmbeddedObjectRequest": {"objectId": "int32"},
    "UpdateSheetPropertiesRequest": {"properties": "SheetProperties", "fields": "string"},
    "RepeatCellRequest": {"range": "GridRange", "cell": "CellData", "fields": "string"},
    "SetDataValidationRequest": {"range": "GridRange", "rule": "DataValidationRule",
                                 "filteredRowsIncluded": "bool"},
    "AddProtectedRangeRequest": {"protectedRange": "ProtectedRange"},
    "AddChartRequest": {"chart": "EmbeddedChart"},
    "UpdateCellsRequest": {"start": "GridCoordinate", "range": "GridRange", "rows": "[]RowData",
                           "fields": "string"},
    "AutoResizeDimensionsRequest": {"dimensions": "DimensionRange", "dataSourceSheetDimensions": "object"},
    "UpdateDimensionPropertiesRequest": {"range": "DimensionRange", "dataSourceSheetRange": "object",
                                         "properties": "DimensionProperties", "fields": "string"},
    "DimensionProperties": {"hiddenByFilter": "bool", "hiddenByUser": "bool", "pixelSize": "int32",
                            "developerMetadata": "[]object", "dataSourceColumnReference": "object"},
    "AppendDimensionRequest": {"sheetId": "int32", "dimension": "enum:Dimension", "length": "int32"},
    "InsertDimensionRequest": {"range": "DimensionRange", "inheritFromBefore": "bool"},
    "DeleteDimensionRequest": {"range": "DimensionRange"},
    "Spreadsheet": {"spreadsheetId": "string", "properties": "SpreadsheetProperties", "sheets": "[]Sheet",
                    "namedRanges": "[]object", "spreadsheetUrl": "string", "developerMetadata": "[]object",
                    "dataSources": "[]object", "dataSourceSchedules": "[]object"},
    "SpreadsheetProperties": {"title": "string", "locale": "string", "autoRecalc": "string",
                              "timeZone": "string", "defaultFormat": "object", "iterativeCalculationSettings":
                              "object", "spreadsheetTheme": "object", "importFunctionsExternalUrlAccessAllowed":
                              "bool"},
    "Sheet": {"properties": "SheetProperties", "data": "[]object", "merges": "[]object",
              "conditionalFormats": "[]object", "filterViews": "[]object", "protectedRanges": "[]object",
              "basicFilter": "object", "charts": "[]object", "bandedRanges": "[]object",
              "developerMetadata": "[]object", "rowGroups": "[]object", "columnGroups": "[]object",
              "slicers": "[]object", "tables": "[]object"},
    "SheetProperties": {"sheetId": "int32", "title": "string", "index": "int32", "sheetType": "enum:SheetType",
                        "gridProperties": "GridProperties", "hidden": "bool", "tabColor": "Color",
                        "tabColorStyle": "ColorStyle", "rightToLeft": "bool",
                        "dataSourceSheetProperties": "object"},
    "GridProperties": {"rowCount": "int32", "columnCount": "int32", "frozenRowCount": "int32",
                       "frozenColumnCount": "int32", "hideGridlines": "bool", "rowGroupControlAfter": "bool",
                       "columnGroupControlAfter": "bool"},
    "Color": {"red": "float", "green": "float", "blue": "float", "alpha": "float"},
    "ColorStyle": {"rgbColor": "Color", "themeColor": "enum:ThemeColorType"},
    "GridRange": {"sheetId": "int32", "startRowIndex": "int32", "endRowIndex": "int32",
                  "startColumnIndex": "int32", "endColumnIndex": "int32"},
    "GridCoordinate": {"sheetId": "int32", "rowIndex": "int32", "columnIndex": "int32"},
    "DimensionRange": {"sheetId": "int32", "dimension": "enum:Dimension", "startIndex": "int32",
                       "endIndex": "int32"},
    "RowData": {"values": "[]CellData"},
    "CellData": {"userEnteredValue": "ExtendedValue", "effectiveValue": "ExtendedValue",
                 "formattedValue": "string", "userEnteredFormat": "CellFormat", "effectiveFormat": "CellFormat",
                 "hyperlink": "string", "note": "string", "textFormatRuns": "[]object",
                 "dataValidation": "DataValidationRule", "pivotTable": "object", "dataSourceTable": "object",
                 "dataSourceFormula": "object", "chipRuns": "[]object"},
    "ExtendedValue": {"numberValue": "double", "stringValue": "string", "boolValue": "bool",
                      "formulaValue": "string", "errorValue": "object"},
    "CellFormat": {"numberFormat": "NumberFormat", "backgroundColor": "Color", "backgroundColorStyle": "ColorStyle",
                   "borders": "Borders", "padding": "object", "horizontalAlignment": "enum:HorizontalAlign",
                   "verticalAlignment": "enum:VerticalAlign", "wrapStrategy": "enum:WrapStrategy",
                   "textDirection": "enum:TextDirection", "textFormat": "TextFormat",
                   "hyperlinkDisplayType": "enum:HyperlinkDisplayType", "textRotation": "object"},
    "Borders": {"top": "Border", "bottom": "Border", "left": "Border", "right": "Border"},
    "Border": {"style": "string", "width": "int32", "color": "Color", "colorStyle": "ColorStyle"},
    "NumberFormat": {"type": "enum:NumberFormatType", "pattern": "string"},
    "TextFormat": {"foregroundColor": "Color", "foregroundColorStyle": "ColorStyle", "fontFamily": "string",
                   "fontSize": "int32", "bold": "bool", "italic": "bool", "strikethrough": "bool",
                   "underline": "bool", "link": "object"},
    "DataValidationRule": {"condition": "BooleanCondition", "inputMessage": "string", "strict": "bool",
                           "showCustomUi": "bool"},
    "BooleanCondition": {"type": "enum:ConditionType", "values": "[]ConditionValue"},
    "ConditionValue": {"relativeDate": "enum:RelativeDate", "userEnteredValue": "string"},
    "ProtectedRange": {"protectedRangeId": "int32", "range": "GridRange", "namedRangeId": "string",
                       "tableId": "string", "description": "string", "warningOnly": "bool",
                       "requestingUserCanEdit": "bool", "unprotectedRanges": "[]GridRange", "editors": "Editors"},
    "Editors": {"users": "[]string", "groups": "[]string", "domainUsersCanEdit": "bool"},
    "EmbeddedChart": {"chartId": "int32", "spec": "object", "position": "EmbeddedObjectPosition",
                      "border": "object"},
    "EmbeddedObjectPosition": {"sheetId": "int32", "overlayPosition": "OverlayPosition", "newSheet": "bool"},
    "OverlayPosition": {"anchorCell": "GridCoordinate", "offsetXPixels": "int32", "offsetYPixels": "int32",
                        "widthPixels": "int32", "heightPixels": "int32"},
    "ValueRange": {"range": "string", "majorDimension": "enum:Dimension", "values": "[]ListValue"},
    "BatchUpdateValuesRequest": {"valueInputOption": "enum:ValueInputOption", "data": "[]ValueRange",
                                 "includeValuesInResponse": "bool",
                                 "responseValueRenderOption": "enum:ValueRenderOption",
                                 "responseDateTimeRenderOption": "enum:DateTimeRenderOption"},
    "BatchClearValuesRequest": {"ranges": "[]string"},
}

#: The request kinds the emulator implements (the ``Request`` oneof).
IMPLEMENTED_REQUESTS = (
    "addSheet", "deleteSheet", "updateSheetProperties", "repeatCell", "setDataValidation", "addProtectedRange",
    "addChart", "updateCells", "autoResizeDimensions", "appendDimension", "insertDimension", "deleteDimension",
    "deleteEmbeddedObject", "updateDimensionProperties",
)
#: Real Sheets request kinds that the emulator does not implement (answered with a clear 400).
UNIMPLEMENTED_REQUESTS = frozenset({
    "addBanding", "addConditionalFormatRule", "addDataSource", "addDimensionGroup", "addFilterView",
    "addNamedRange", "addSlicer", "addTable", "appendCells", "autoFill", "cancelDataSourceRefresh",
    "clearBasicFilter", "copyPaste", "createDeveloperMetadata", "cutPaste", "deleteBanding",
    "deleteConditionalFormatRule", "deleteDataSource", "deleteDeveloperMetadata", "deleteDimensionGroup",
    "deleteDuplicates", "deleteFilterView", "deleteNamedRange", "deleteProtectedRange",
    "deleteRange", "deleteTable", "duplicateFilterView", "duplicateSheet", "findReplace", "insertRange",
    "mergeCells", "moveDimension", "pasteData", "randomizeRange", "refreshDataSource", "setBasicFilter",
    "sortRange", "textToColumns", "trimWhitespace", "unmergeCells", "updateBanding", "updateBorders",
    "updateChartSpec", "updateConditionalFormatRule", "updateDataSource", "updateDeveloperMetadata",
    "updateDimensionGroup", "updateEmbeddedObjectBorder",
    "updateEmbeddedObjectPosition", "updateFilterView", "updateNamedRange", "updateProtectedRange",
    "updateSlicerSpec", "updateSpreadsheetProperties", "updateTable",
})
MESSAGES["Request"] = {kind: kind[0].upper() + kind[1:] + "Request" for kind in IMPLEMENTED_REQUESTS}

_SCALAR_TYPE_NAMES = {"int32": "TYPE_INT32", "float": "TYPE_FLOAT", "double": "TYPE_DOUBLE", "bool": "TYPE_BOOL",
                      "string": "TYPE_STRING"}


class ShapeChecker:
    """Validates and cleans a JSON body against ``MESSAGES``, with Google's error wording.

    Cleaning drops JSON nulls (proto3 reads them as "not set"), turns numeric strings into
    numbers and enum numbers into names, so the handlers only see well-formed data.
    """

    @classmethod
    def clean(cls, value: Any, type_name: str, path: str) -> Any:
        if type_name.startswith("[]"):
            item_type = type_name[2:]
            if not isinstance(value, list):
                raise cls._bad_value(path, item_type, value)
            return [cls.clean(v, item_type, f"{path}[{i}]") for i, v in enumerate(value)]
        if type_name in _SCALAR_TYPE_NAMES:
            return cls._scalar(value, type_name, path)
        if type_name.startswith("enum:"):
            return cls._enum(value, type_name[5:], path)
        if type_name == "object":
            if not isinstance(value, dict):
                raise cls._bad_value(path, "google.protobuf.Struct", value)
            return _drop_nulls(value)
        if type_name == "ListValue":
            if not isinstance(value, list):
                raise cls._bad_value(path, type_name, value)
            return value
        return cls._message(value, type_name, path)

    @classmethod
    def _message(cls, value: Any, type_name: str, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise cls._bad_value(path, type_name, value)
        fields = MESSAGES[type_name]
        out: dict[str, Any] = {}
        for raw_key, item in value.items():
            key = _camel(raw_key)
            if key not in fields:
                at = f" at '{path}'" if path else ""
                raise SheetsApiError.field_violation(
                    path, f'Invalid JSON payload received. Unknown name "{raw_key}"{at}: Cannot find field.')
            if item is None:
                continue
            out[key] = cls.clean(item, fields[key], f"{path}.{_snake(key)}" if path else _snake(key))
        return out

    @classmethod
    def _scalar(cls, value: Any, type_name: str, path: str) -> Any:
        if type_name == "bool":
            if isinstance(value, bool):
                return value
        elif type_name == "string":
            if isinstance(value, str):
                return value
        elif type_name == "int32":
            number = value
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                number = int(value)
            if isinstance(number, float) and number.is_integer():
                number = int(number)
            if isinstance(number, int) and not isinstance(number, bool) and -2**31 <= number < 2**31:
                return number
        else:
            number = value
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    number = None
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                return number
        raise cls._bad_value(path, type_name, value)

    @classmethod
    def _enum(cls, value: Any, enum_name: str, path: str) -> str:
        names = ENUMS[enum_name]
        if isinstance(value, str) and value in names:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            return names[value]
        raise cls._bad_value(path, f"enum:{enum_name}", value)

    @staticmethod
    def _bad_value(path: str, type_name: str, value: Any) -> SheetsApiError:
        if type_name in _SCALAR_TYPE_NAMES:
            described = _SCALAR_TYPE_NAMES[type_name]
        elif type_name == "ListValue":
            described = "type.googleapis.com/google.protobuf.ListValue"
        elif type_name.startswith("google."):
            described = f"type.googleapis.com/{type_name}"
        else:
            described = f"type.googleapis.com/google.apps.sheets.v4.{type_name.removeprefix('enum:')}"
        shown = json.dumps(value, ensure_ascii=False)
        return SheetsApiError.field_violation(path, f"Invalid value at '{path}' ({described}), {shown}")


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


# =============================================================================================
# Cells: what the user entered, how input is read, how values are rendered
# =============================================================================================


@dataclass
class Cell:
    """One cell as Google keeps it: the entered value or formula, plus format, validation, note."""

    value: str | int | float | bool | None = None
    formula: str | None = None
    format: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    note: str | None = None

    def has_value(self) -> bool:
        return self.value is not None or self.formula is not None

    def is_blank(self) -> bool:
        return not (self.has_value() or self.format or self.validation or self.note)

    def entered(self) -> Any:
        """The user-entered content: the formula text, else the literal value."""
        return self.formula if self.formula is not None else self.value

    def number_format(self) -> dict[str, Any] | None:
        """The cell's number format; formulas of TODAY()/DATE()/NOW() get Google's automatic date format."""
        explicit = (self.format or {}).get("numberFormat")
        if explicit is None and self.formula is not None:
            m = re.match(r"=\s*(TODAY|DATE|NOW)\s*\(", self.formula, re.IGNORECASE)
            if m:
                pattern = "M/d/yyyy H:mm:ss" if m.group(1).upper() == "NOW" else "M/d/yyyy"
                return {"type": "DATE_TIME" if m.group(1).upper() == "NOW" else "DATE", "pattern": pattern}
        return explicit

    def to_json(self) -> dict[str, Any]:
        """The writable part of a CellData."""
        out: dict[str, Any] = {}
        if self.formula is not None:
            out["userEnteredValue"] = {"formulaValue": self.formula}
        elif self.value is not None:
            out["userEnteredValue"] = _extended_value(self.value)
        if self.format:
            out["userEnteredFormat"] = copy.deepcopy(self.format)
        if self.note:
            out["note"] = self.note
        if self.validation:
            out["dataValidation"] = copy.deepcopy(self.validation)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        cell = cls()
        entered = data.get("userEnteredValue") or {}
        if "formulaValue" in entered:
            cell.formula = entered["formulaValue"]
        elif "stringValue" in entered:
            cell.value = entered["stringValue"] or None
        elif "numberValue" in entered:
            cell.value = entered["numberValue"]
        elif "boolValue" in entered:
            cell.value = entered["boolValue"]
        cell.format = CellFormats.normalise(data.get("userEnteredFormat")) or None
        cell.validation = copy.deepcopy(data.get("dataValidation")) or None
        cell.note = data.get("note") or None
        return cell


def _extended_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, (int, float)):
        return {"numberValue": value}
    return {"stringValue": value}


class CellFormats:
    """Format bookkeeping: Google mirrors each plain colour into its ``...Style`` twin and back."""

    @classmethod
    def normalise(cls, fmt: Mapping[str, Any] | None) -> dict[str, Any]:
        if not fmt:
            return {}
        out: dict[str, Any] = _drop_nulls(copy.deepcopy(dict(fmt)))
        cls.link(out, "backgroundColor", "backgroundColorStyle")
        if isinstance(out.get("textFormat"), dict):
            cls.link(out["textFormat"], "foregroundColor", "foregroundColorStyle")
        for border in (out.get("borders") or {}).values():
            if isinstance(border, dict):
                cls.link(border, "color", "colorStyle")
        return out

    @staticmethod
    def clean_color(color: Mapping[str, Any]) -> dict[str, Any]:
        """Proto3 leaves out zero red/green/blue (alpha is a wrapper and stays)."""
        return {k: v for k, v in color.items() if k == "alpha" or v}

    @classmethod
    def link(cls, obj: dict[str, Any], color_key: str, style_key: str) -> None:
        style = obj.get(style_key)
        if isinstance(style, dict) and "rgbColor" in style:
            rgb = cls.clean_color(style["rgbColor"])
            obj[style_key] = {"rgbColor": rgb}
            obj[color_key] = copy.deepcopy(rgb)
        elif isinstance(obj.get(color_key), dict) and not (isinstance(style, dict) and "themeColor" in style):
            rgb = cls.clean_color(obj[color_key])
            obj[color_key] = rgb
            obj[style_key] = {"rgbColor": copy.deepcopy(rgb)}

    @staticmethod
    def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(base))
        for key, value in top.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = CellFormats.merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out


SERIAL_EPOCH = dt.datetime(1899, 12, 30)


@dataclass(frozen=True)
class ParsedInput:
    """A cell value as stored after input parsing (``clear`` when the input empties the cell)."""

    value: Any = None
    formula: str | None = None
    number_format: dict[str, Any] | None = None
    clear: bool = False


class InputParser:
    """RAW and USER_ENTERED input, as Google reads typed values (en_US locale)."""

    _NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
    _GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
    _PERCENT = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))%")
    _CURRENCY = re.compile(r"(-?)\$(\d{1,3}(?:,\d{3})*(?:\.\d+)?|\d+(?:\.\d+)?)")
    _ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
    _US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
    _ISO_DATETIME = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?")
    _TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")

    @classmethod
    def parse(cls, raw: Any, option: str) -> ParsedInput:
        if raw is None or raw == "":
            return ParsedInput(clear=True)
        if isinstance(raw, (bool, int, float)):
            return ParsedInput(value=raw)
        if not isinstance(raw, str):
            raw = str(raw)
        if option == "RAW":
            return ParsedInput(value=raw)
        return cls._user_entered(raw)

    @classmethod
    def _user_entered(cls, text: str) -> ParsedInput:
        if text.startswith("=") and len(text) > 1:
            return ParsedInput(formula=text)
        if text.startswith("'"):
            return ParsedInput(value=text[1:]) if len(text) > 1 else ParsedInput(clear=True)
        s = text.strip()
        if s.upper() in ("TRUE", "FALSE"):
            return ParsedInput(value=s.upper() == "TRUE")
        if cls._NUMBER.fullmatch(s):
            return ParsedInput(value=_number(float(s)))
        if cls._GROUPED.fullmatch(s):
            decimals = len(s.split(".")[1]) if "." in s else 0
            pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
            return ParsedInput(_number(float(s.replace(",", ""))), number_format={"type": "NUMBER", "pattern": pattern})
        m = cls._PERCENT.fullmatch(s)
        if m:
            decimals = len(m.group(1).split(".")[1]) if "." in m.group(1) else 0
            pattern = "0" + ("." + "0" * decimals if decimals else "") + "%"
            value = round(float(m.group(1)) / 100, 15)
            return ParsedInput(_number(value), number_format={"type": "PERCENT", "pattern": pattern})
        m = cls._CURRENCY.fullmatch(s)
        if m:
            amount = float(m.group(2).replace(",", "")) * (-1 if m.group(1) else 1)
            pattern = '"$"#,##0.00' if "." in m.group(2) else '"$"#,##0'
            return ParsedInput(_number(amount), number_format={"type": "CURRENCY", "pattern": pattern})
        parsed = cls._date_like(s)
        return parsed if parsed is not None else ParsedInput(value=text)

    @classmethod
    def _date_like(cls, s: str) -> ParsedInput | None:
        try:
            m = cls._ISO_DATE.fullmatch(s)
            if m:
                serial = _to_serial(dt.datetime(int(m[1]), int(m[2]), int(m[3])))
                return ParsedInput(serial, number_format={"type": "DATE", "pattern": "yyyy-mm-dd"})
            m = cls._US_DATE.fullmatch(s)
            if m:
                serial = _to_serial(dt.datetime(int(m[3]), int(m[1]), int(m[2])))
                return ParsedInput(serial, number_format={"type": "DATE", "pattern": "M/d/yyyy"})
            m = cls._ISO_DATETIME.fullmatch(s)
            if m:
                moment = dt.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
                return ParsedInput(_to_serial(moment),
                                   number_format={"type": "DATE_TIME", "pattern": "yyyy-mm-dd H:mm:ss"})
            m = cls._TIME.fullmatch(s)
            if m and int(m[1]) < 24 and int(m[2]) < 60 and int(m[3] or 0) < 60:
                seconds = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3] or 0)
                return ParsedInput(_number(seconds / 86400),
                                   number_format={"type": "TIME", "pattern": "h:mm:ss am/pm"})
        except ValueError:
            return None  # e.g. 2020-02-31: Google keeps such text as text
        return None


def _number(x: float) -> int | float:
    """Integral floats as ints (how Google prints them)."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return int(x)
    return x


def _to_serial(moment: dt.datetime) -> int | float:
    delta = moment - SERIAL_EPOCH
    return _number(delta.days + delta.seconds / 86400)


class NumberFormatter:
    """Renders numbers as FORMATTED_VALUE text, following the cell's number format."""

    DEFAULT_PATTERNS = {"NUMBER": "#,##0.00", "PERCENT": "0.00%", "CURRENCY": '"$"#,##0.00',
                        "SCIENTIFIC": "0.00E+00", "DATE": "M/d/yyyy", "TIME": "h:mm:ss am/pm",
                        "DATE_TIME": "M/d/yyyy H:mm:ss"}
    DATE_TYPES = ("DATE", "TIME", "DATE_TIME")

    @classmethod
    def render(cls, value: float, number_format: Mapping[str, Any] | None) -> str:
        kind = (number_format or {}).get("type")
        pattern = (number_format or {}).get("pattern") or cls.DEFAULT_PATTERNS.get(kind or "", "")
        if not pattern or kind == "TEXT":
            return cls.general(value)
        if kind in cls.DATE_TYPES:
            return cls.date(value, pattern)
        return cls.numeric(value, pattern)

    @staticmethod
    def general(value: float) -> str:
        """Google's automatic format: integers plainly, others with up to 10 significant digits."""
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return "#NUM!"
        if float(value).is_integer() and abs(value) < 1e15:
            return str(int(value))
        text = f"{value:.10G}"
        if "E" in text:
            mantissa, exponent = text.split("E")
            exp = int(exponent)
            return f"{float(mantissa):.2f}E{'+' if exp >= 0 else '-'}{abs(exp):02d}"
        return text

    @staticmethod
    def numeric(value: float, pattern: str) -> str:
        section = pattern.split(";")[0]
        m = re.search(r"[#0?][#0?,]*(?:\.[#0?]*)?(?:E[+-][0#]+)?", section)
        if not m:
            return NumberFormatter.general(value)
        prefix = re.sub(r'"([^"]*)"', r"\1", section[:m.start()]).replace("\\", "")
        suffix = re.sub(r'"([^"]*)"', r"\1", section[m.end():]).replace("\\", "")
        core = m.group(0)
        if "%" in suffix:
            value *= 100
        if "E" in core:
            decimals = len(core.split(".")[1].split("E")[0]) if "." in core else 0
            text = f"{abs(value):.{decimals}E}"
            mantissa, exponent = text.split("E")
            body = f"{mantissa}E{'+' if int(exponent) >= 0 else '-'}{abs(int(exponent)):02d}"
        else:
            fraction = core.split(".")[1] if "." in core else ""
            required, optional = fraction.count("0"), fraction.count("#") + fraction.count("?")
            body = f"{abs(value):,.{required + optional}f}" if "," in core else f"{abs(value):.{required + optional}f}"
            if optional and "." in body:
                whole, frac = body.split(".")
                frac = frac[:required] + frac[required:].rstrip("0")
                body = whole + ("." + frac if frac else "")
        sign = "-" if value < 0 and float(body.replace(",", "").split("E")[0] or 0) != 0 else ""
        return f"{sign}{prefix}{body}{suffix}"

    _DATE_TOKENS = re.compile(r'"[^"]*"|yyyy|yy|mmmm|mmm|mm|m|dddd|ddd|dd|d|hh|h|ss|s|am/pm|a/p|\.0+|.',
                              re.IGNORECASE)

    @classmethod
    def date(cls, value: float, pattern: str) -> str:
        moment = SERIAL_EPOCH + dt.timedelta(days=float(value))
        moment = (moment + dt.timedelta(microseconds=500_000)).replace(microsecond=0)
        tokens = cls._DATE_TOKENS.findall(pattern)
        twelve_hour = any(t.lower() in ("am/pm", "a/p") for t in tokens)
        out: list[str] = []
        for i, token in enumerate(tokens):
            low = token.lower()
            if low.startswith("m") and low in ("m", "mm"):
                before = [t.lower() for t in tokens[:i] if t.strip() and not t.startswith('"')]
                after = [t.lower() for t in tokens[i + 1:] if t.strip() and not t.startswith('"')]
                is_minute = (before and before[-1] in (":",) and len(before) > 1 and before[-2] in ("h", "hh")) \
                    or (before and before[-1] in ("h", "hh")) \
                    or (len(after) > 1 and after[0] == ":" and after[1] in ("s", "ss"))
                if is_minute:
                    out.append(f"{moment.minute:02d}" if low == "mm" else str(moment.minute))
                else:
                    out.append(f"{moment.month:02d}" if low == "mm" else str(moment.month))
            elif low == "yyyy":
                out.append(f"{moment.year:04d}")
            elif low == "yy":
                out.append(f"{moment.year % 100:02d}")
            elif low == "mmmm":
                out.append(moment.strftime("%B"))
            elif low == "mmm":
                out.append(moment.strftime("%b"))
            elif low == "dddd":
                out.append(moment.strftime("%A"))
            elif low == "ddd":
                out.append(moment.strftime("%a"))
            elif low in ("dd", "d"):
                out.append(f"{moment.day:02d}" if low == "dd" else str(moment.day))
            elif low in ("hh", "h"):
                hour = moment.hour
                if twelve_hour:
                    hour = hour % 12 or 12
                out.append(f"{hour:02d}" if low == "hh" else str(hour))
            elif low in ("ss", "s"):
                out.append(f"{moment.second:02d}" if low == "ss" else str(moment.second))
            elif low == "am/pm":
                out.append("AM" if moment.hour < 12 else "PM")
            elif low == "a/p":
                out.append("a" if moment.hour < 12 else "p")
            elif token.startswith('"'):
                out.append(token[1:-1])
            elif token.startswith("."):
                out.append("." + "0" * (len(token) - 1))
            else:
                out.append(token)
        return "".join(out)


# =============================================================================================
# Formulas: a deliberately small evaluator
# =============================================================================================


@dataclass(frozen=True)
class FormulaError:
    """A spreadsheet error value such as ``#DIV/0!``."""

    code: str


@dataclass(frozen=True)
class RangeValue:
    """The values of a referenced range (only meaningful as a function argument)."""

    values: tuple[Any, ...]


class FormulaEngine:
    """Evaluates the small formula subset described in the module docstring."""

    _TOKEN = re.compile(r"""\s*(?:
        (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<string>"(?:[^"]|"")*")
      | (?P<ref>(?:(?:'(?:[^']|'')+'|[A-Za-z_][A-Za-z0-9_.]*)!)?
               (?:\$?[A-Za-z]{1,3}\$?\d+(?::\$?[A-Za-z]{1,3}\$?\d+)?|\$?[A-Za-z]{1,3}:\$?[A-Za-z]{1,3}(?![A-Za-z0-9(])))
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<op><>|<=|>=|[-+*/^&=<>(),%])
    )""", re.VERBOSE)
    _BINARY = {"=": 1, "<>": 1, "<": 1, ">": 1, "<=": 1, ">=": 1, "&": 2, "+": 3, "-": 3, "*": 4, "/": 4, "^": 5}
    MAX_DEPTH = 64

    def __init__(self, spreadsheet: Spreadsheet) -> None:
        self.spreadsheet = spreadsheet
        self._active: set[tuple[int, int, int]] = set()

    def value_of(self, sheet: Sheet, row: int, col: int) -> Any:
        """The computed value of a cell (None when empty)."""
        cell = sheet.cells.get((row, col))
        if cell is None or not cell.has_value():
            return None
        if cell.formula is None:
            return cell.value
        key = (sheet.sheet_id, row, col)
        if key in self._active or len(self._active) > self.MAX_DEPTH:
            return FormulaError("#REF!")
        self._active.add(key)
        try:
            return self.evaluate(sheet, cell.formula)
        finally:
            self._active.discard(key)

    def evaluate(self, sheet: Sheet, formula: str) -> Any:
        try:
            tokens = self._tokenize(formula[1:])
            parser = _FormulaParser(self, sheet, tokens)
            result = parser.expression(0)
            if parser.pos != len(tokens):
                return FormulaError("#ERROR!")
        except _FormulaSyntaxError:
            return FormulaError("#ERROR!")
        if isinstance(result, RangeValue):
            result = result.values[0] if result.values else None
        if result is None:
            return 0
        if isinstance(result, float):
            if math.isnan(result) or math.isinf(result):
                return FormulaError("#NUM!")
            return _number(result)
        return result

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = self._TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise _FormulaSyntaxError(text)
            kind = m.lastgroup or ""
            value = m.group(kind)
            if kind == "ref" and text[m.end():].lstrip().startswith("(") and "!" not in value and ":" not in value:
                kind = "name"  # LOG10( is a function, not cell LOG10
            tokens.append((kind, value))
            pos = m.end()
        return tokens

    def reference(self, sheet: Sheet, text: str) -> Any:
        """The value (single cell) or RangeValue of a reference such as ``B2``, ``'Other'!A1:B3``, ``A:A``."""
        target = sheet
        if "!" in text:
            title_part, _, text = text.rpartition("!")
            title = title_part[1:-1].replace("''", "'") if title_part.startswith("'") else title_part
            found = self.spreadsheet.sheet_by_title(title)
            if found is None:
                return FormulaError("#REF!")
            target = found
        grid = A1.parse_cells(text.replace("$", ""))
        grid = grid.clamp(target.row_count, target.column_count)
        if grid.height == 1 and grid.width == 1 and ":" not in text:
            return self.value_of(target, grid.start_row, grid.start_col)
        end_row = min(grid.end_row or 0, max((r for r, _ in target.cells), default=-1) + 1)
        values = tuple(self.value_of(target, r, c) for r in range(grid.start_row, max(end_row, grid.start_row))
                       for c in range(grid.start_col, grid.end_col or 0))
        return RangeValue(values)


class _FormulaSyntaxError(Exception):
    pass


class _FormulaParser:
    """Precedence-climbing parser that evaluates as it goes (errors are values, not exceptions)."""

    def __init__(self, engine: FormulaEngine, sheet: Sheet, tokens: list[tuple[str, str]]) -> None:
        self.engine = engine
        self.sheet = sheet
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise _FormulaSyntaxError("unexpected end")
        self.pos += 1
        return token

    def expression(self, min_prec: int) -> Any:
        """Binary operators, all left-associative as in Sheets (2^3^2 is 64)."""
        left = self.unary()
        while True:
            token = self.peek()
            if token is None or token[0] != "op" or token[1] not in FormulaEngine._BINARY:
                return left
            prec = FormulaEngine._BINARY[token[1]]
            if prec < min_prec:
                return left
            self.take()
            right = self.expression(prec + 1)
            left = _Ops.binary(token[1], left, right)

    def unary(self) -> Any:
        token = self.peek()
        if token == ("op", "-"):
            self.take()
            return _Ops.negate(self.unary())
        if token == ("op", "+"):
            self.take()
            return self.unary()
        value = self.primary()
        while self.peek() == ("op", "%"):
            self.take()
            value = _Ops.arith("/", value, 100)
        return value

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "number":
            return float(text)
        if kind == "string":
            return text[1:-1].replace('""', '"')
        if kind == "ref":
            try:
                return self.engine.reference(self.sheet, text)
            except ValueError:
                return FormulaError("#REF!")
        if kind == "name":
            if self.peek() == ("op", "("):
                self.take()
                args = self.arguments()
                return _Functions.call(text.upper(), args)
            if text.upper() in ("TRUE", "FALSE"):
                return text.upper() == "TRUE"
            return FormulaError("#NAME?")
        if (kind, text) == ("op", "("):
            value = self.expression(0)
            if self.take() != ("op", ")"):
                raise _FormulaSyntaxError(")")
            return value
        raise _FormulaSyntaxError(text)

    def arguments(self) -> list[Any]:
        args: list[Any] = []
        if self.peek() == ("op", ")"):
            self.take()
            return args
        while True:
            args.append(self.expression(0))
            token = self.take()
            if token == ("op", ")"):
                return args
            if token != ("op", ","):
                raise _FormulaSyntaxError(token[1])


class _Ops:
    """Operators with spreadsheet coercions."""

    @staticmethod
    def to_number(value: Any) -> float | FormulaError:
        if isinstance(value, RangeValue):
            value = value.values[0] if value.values else None
        if isinstance(value, FormulaError):
            return value
        if value is None:
            return 0.0
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(str(value).strip())
        except ValueError:
            return FormulaError("#VALUE!")

    @staticmethod
    def to_text(value: Any) -> str | FormulaError:
        if isinstance(value, RangeValue):
            value = value.values[0] if value.values else None
        if isinstance(value, FormulaError):
            return value
        if value is None:
            return ""
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, (int, float)):
            return NumberFormatter.general(value)
        return str(value)

    @classmethod
    def negate(cls, value: Any) -> Any:
        number = cls.to_number(value)
        return number if isinstance(number, FormulaError) else -number

    @classmethod
    def arith(cls, op: str, left: Any, right: Any) -> Any:
        a, b = cls.to_number(left), cls.to_number(right)
        if isinstance(a, FormulaError):
            return a
        if isinstance(b, FormulaError):
            return b
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return FormulaError("#DIV/0!") if b == 0 else a / b
        try:
            return float(a ** b)
        except (OverflowError, ZeroDivisionError, TypeError):
            return FormulaError("#NUM!")

    @classmethod
    def binary(cls, op: str, left: Any, right: Any) -> Any:
        if op in "+-*/^":
            return cls.arith(op, left, right)
        if op == "&":
            a, b = cls.to_text(left), cls.to_text(right)
            return a if isinstance(a, FormulaError) else b if isinstance(b, FormulaError) else a + b
        return cls.compare(op, left, right)

    @classmethod
    def compare(cls, op: str, left: Any, right: Any) -> Any:
        for v in (left, right):
            if isinstance(v, FormulaError):
                return v
        a, b = cls._sort_key(left), cls._sort_key(right)
        return {"=": a == b, "<>": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]

    @staticmethod
    def _sort_key(value: Any) -> tuple[int, Any]:
        if isinstance(value, RangeValue):
            value = value.values[0] if value.values else None
        if value is None:
            return (0, 0.0)
        if isinstance(value, bool):
            return (2, value)
        if isinstance(value, (int, float)):
            return (0, float(value))
        return (1, str(value).lower())


class _Functions:
    """The few spreadsheet functions the emulator evaluates."""

    @staticmethod
    def flatten(args: Sequence[Any], skip_text: bool = True) -> list[Any]:
        out: list[Any] = []
        for arg in args:
            if isinstance(arg, RangeValue):
                out += [v for v in arg.values if v is not None and not (skip_text and isinstance(v, (str, bool)))]
            else:
                out.append(arg)
        return out

    @classmethod
    def numbers(cls, args: Sequence[Any]) -> list[float] | FormulaError:
        out: list[float] = []
        for value in cls.flatten(args):
            number = _Ops.to_number(value)
            if isinstance(number, FormulaError):
                return number
            out.append(number)
        return out

    @classmethod
    def call(cls, name: str, args: list[Any]) -> Any:
        handler = getattr(cls, "fn_" + name.lower(), None)
        if handler is None:
            return FormulaError("#NAME?")
        try:
            return handler(args)
        except (IndexError, TypeError, ValueError, OverflowError):
            return FormulaError("#N/A") if not args else FormulaError("#VALUE!")

    @classmethod
    def fn_sum(cls, args: list[Any]) -> Any:
        nums = cls.numbers(args)
        return nums if isinstance(nums, FormulaError) else float(sum(nums))

    @classmethod
    def fn_average(cls, args: list[Any]) -> Any:
        nums = cls.numbers(args)
        if isinstance(nums, FormulaError):
            return nums
        return FormulaError("#DIV/0!") if not nums else sum(nums) / len(nums)

    @classmethod
    def fn_min(cls, args: list[Any]) -> Any:
        nums = cls.numbers(args)
        return nums if isinstance(nums, FormulaError) else float(min(nums, default=0))

    @classmethod
    def fn_max(cls, args: list[Any]) -> Any:
        nums = cls.numbers(args)
        return nums if isinstance(nums, FormulaError) else float(max(nums, default=0))

    @classmethod
    def fn_count(cls, args: list[Any]) -> Any:
        return float(sum(1 for v in cls.flatten(args) if isinstance(v, (int, float)) and not isinstance(v, bool)))

    @classmethod
    def fn_counta(cls, args: list[Any]) -> Any:
        return float(sum(1 for v in cls.flatten(args, skip_text=False) if v is not None and v != ""))

    @staticmethod
    def fn_if(args: list[Any]) -> Any:
        condition = args[0]
        if isinstance(condition, FormulaError):
            return condition
        truth = _Ops.to_number(condition) if not isinstance(condition, str) else FormulaError("#VALUE!")
        if isinstance(truth, FormulaError):
            return truth
        if truth:
            return args[1] if len(args) > 1 else True
        return args[2] if len(args) > 2 else False

    @classmethod
    def fn_and(cls, args: list[Any]) -> Any:
        nums = cls.numbers(args)
        return nums if isinstance(nums, FormulaError) else all(nums)

    @classmethod
    def fn_or(cls, args: list[Any]) -> Any:
        nums = cls.numbers(args)
        return nums if isinstance(nums, FormulaError) else any(nums)

    @staticmethod
    def fn_not(args: list[Any]) -> Any:
        number = _Ops.to_number(args[0])
        return number if isinstance(number, FormulaError) else not number

    @classmethod
    def fn_concatenate(cls, args: list[Any]) -> Any:
        parts = [_Ops.to_text(v) for v in cls.flatten(args, skip_text=False)]
        for part in parts:
            if isinstance(part, FormulaError):
                return part
        return "".join(str(p) for p in parts)

    fn_concat = fn_concatenate

    @staticmethod
    def _text_fn(args: list[Any], fn: Callable[[str], Any]) -> Any:
        text = _Ops.to_text(args[0])
        return text if isinstance(text, FormulaError) else fn(text)

    @classmethod
    def fn_len(cls, args: list[Any]) -> Any:
        return cls._text_fn(args, lambda s: float(len(s)))

    @classmethod
    def fn_upper(cls, args: list[Any]) -> Any:
        return cls._text_fn(args, str.upper)

    @classmethod
    def fn_lower(cls, args: list[Any]) -> Any:
        return cls._text_fn(args, str.lower)

    @classmethod
    def fn_trim(cls, args: list[Any]) -> Any:
        return cls._text_fn(args, lambda s: " ".join(s.split()))

    @staticmethod
    def fn_round(args: list[Any]) -> Any:
        value = _Ops.to_number(args[0])
        places = _Ops.to_number(args[1]) if len(args) > 1 else 0.0
        if isinstance(value, FormulaError):
            return value
        if isinstance(places, FormulaError):
            return places
        factor = 10 ** int(places)
        return math.floor(abs(value) * factor + 0.5) / factor * (1 if value >= 0 else -1)

    @staticmethod
    def fn_abs(args: list[Any]) -> Any:
        value = _Ops.to_number(args[0])
        return value if isinstance(value, FormulaError) else abs(value)

    @staticmethod
    def fn_int(args: list[Any]) -> Any:
        value = _Ops.to_number(args[0])
        return value if isinstance(value, FormulaError) else float(math.floor(value))

    @staticmethod
    def fn_hyperlink(args: list[Any]) -> Any:
        return _Ops.to_text(args[1] if len(args) > 1 else args[0])

    @staticmethod
    def fn_today(args: list[Any]) -> Any:
        return float(_to_serial(dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time())))

    @staticmethod
    def fn_now(args: list[Any]) -> Any:
        return float(_to_serial(dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)))

    @staticmethod
    def fn_date(args: list[Any]) -> Any:
        parts: list[float] = []
        for arg in args[:3]:
            part = _Ops.to_number(arg)
            if isinstance(part, FormulaError):
                return part
            parts.append(part)
        year, month, day = (int(p) for p in parts)
        first = dt.datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
        return float(_to_serial(first + dt.timedelta(days=day - 1)))

    @staticmethod
    def fn_mod(args: list[Any]) -> Any:
        a, b = _Ops.to_number(args[0]), _Ops.to_number(args[1])
        if isinstance(a, FormulaError):
            return a
        if isinstance(b, FormulaError):
            return b
        return FormulaError("#DIV/0!") if b == 0 else a - b * math.floor(a / b)


@dataclass(frozen=True)
class RenderOptions:
    """valueRenderOption and dateTimeRenderOption of a read."""

    value: str = "FORMATTED_VALUE"
    date_time: str = "SERIAL_NUMBER"


class ValueRenderer:
    """Turns stored cells into the values a values.* read returns."""

    def __init__(self, spreadsheet: Spreadsheet, options: RenderOptions) -> None:
        self.options = options
        self.engine = FormulaEngine(spreadsheet)

    def render(self, sheet: Sheet, row: int, col: int) -> Any:
        """The rendered value, or None for an empty cell."""
        cell = sheet.cells.get((row, col))
        if cell is None or not cell.has_value():
            return None
        if self.options.value == "FORMULA" and cell.formula is not None:
            return cell.formula
        value = self.engine.value_of(sheet, row, col)
        if isinstance(value, FormulaError):
            return value.code
        if self.options.value == "FORMATTED_VALUE":
            return self.formatted(value, cell)
        if (isinstance(value, (int, float)) and not isinstance(value, bool)
                and self.options.date_time == "FORMATTED_STRING"
                and (cell.number_format() or {}).get("type") in NumberFormatter.DATE_TYPES):
            return self.formatted(value, cell)
        return _number(value) if isinstance(value, float) else value

    @staticmethod
    def formatted(value: Any, cell: Cell) -> str:
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, (int, float)):
            return NumberFormatter.render(value, cell.number_format())
        return "" if value is None else str(value)

    def grid(self, sheet: Sheet, grid: GridRange, major: str) -> list[list[Any]]:
        """The rows (or columns) of a bounded rectangle, trimmed like Google trims them."""
        assert grid.end_row is not None and grid.end_col is not None
        occupied = [(r, c) for (r, c), cell in sheet.cells.items() if cell.has_value() and grid.contains(r, c)]
        if not occupied:
            return []
        last_row = max(r for r, _ in occupied) + 1
        last_col = max(c for _, c in occupied) + 1
        table = [[self.render(sheet, r, c) for c in range(grid.start_col, last_col)]
                 for r in range(grid.start_row, last_row)]
        if major == "COLUMNS":
            table = [list(col) for col in zip(*table, strict=True)] if table else []
        out = []
        for line in table:
            line = ["" if v is None else v for v in line]
            while line and line[-1] == "":
                line.pop()
            out.append(line)
        while out and not out[-1]:
            out.pop()
        return out


# =============================================================================================
# The stored spreadsheet
# =============================================================================================


@dataclass
class Sheet:
    """One tab: its properties as Google reports them (less ``index``) and its content."""

    properties: dict[str, Any]
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)
    protected_ranges: list[dict[str, Any]] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    # DimensionProperties set by updateDimensionProperties, by dimension ("ROWS", "COLUMNS") and index
    dimensions: dict[str, dict[int, dict[str, Any]]] = field(default_factory=lambda: {"ROWS": {}, "COLUMNS": {}})

    @property
    def sheet_id(self) -> int:
        return int(self.properties.get("sheetId", 0))

    @property
    def title(self) -> str:
        return str(self.properties.get("title", ""))

    @property
    def grid_properties(self) -> dict[str, Any]:
        grid: dict[str, Any] = self.properties.setdefault("gridProperties", {})
        return grid

    @property
    def row_count(self) -> int:
        return int(self.grid_properties.get("rowCount", 0))

    @property
    def column_count(self) -> int:
        return int(self.grid_properties.get("columnCount", 0))

    def cell(self, row: int, col: int) -> Cell:
        """The cell at (row, col), ready to change: always a fresh copy stored in its place.

        Cells are never changed in place, so snapshots (see ``Spreadsheet.clone``) can share them.
        """
        current = self.cells.get((row, col))
        fresh = dataclasses.replace(current) if current is not None else Cell()
        self.cells[(row, col)] = fresh
        return fresh

    def clone(self) -> Sheet:
        return Sheet(copy.deepcopy(self.properties), dict(self.cells), copy.deepcopy(self.protected_ranges),
                     copy.deepcopy(self.charts), copy.deepcopy(self.dimensions))

    def dimension_properties(self, dimension: str, index: int) -> dict[str, Any]:
        """A row's or column's DimensionProperties as Google reports them (default size 21 / 100 pixels)."""
        default = {"pixelSize": 21 if dimension == "ROWS" else 100}
        return {**default, **{k: v for k, v in self.dimensions[dimension].get(index, {}).items()
                              if v is not None and v is not False}}

    def prune(self, row: int, col: int) -> None:
        cell = self.cells.get((row, col))
        if cell is not None and cell.is_blank():
            del self.cells[(row, col)]

    def write(self, row: int, col: int, parsed: ParsedInput) -> None:
        """Store a parsed input (keeping the cell's format, adding the number format input implies)."""
        cell = self.cell(row, col)
        if parsed.clear:
            cell.value = cell.formula = None
        else:
            cell.value, cell.formula = parsed.value, parsed.formula
            if parsed.number_format is not None:
                cell.format = {**(cell.format or {}), "numberFormat": dict(parsed.number_format)}
        self.prune(row, col)

    def resize(self, rows: int, cols: int) -> None:
        self.grid_properties["rowCount"] = rows
        self.grid_properties["columnCount"] = cols
        self.cells = {k: v for k, v in self.cells.items() if k[0] < rows and k[1] < cols}
        for dimension, size in (("ROWS", rows), ("COLUMNS", cols)):
            self.dimensions[dimension] = {i: p for i, p in self.dimensions[dimension].items() if i < size}

    def shift(self, dimension: str, start: int, count: int) -> None:
        """Insert (count > 0) or delete (count < 0) rows/columns at *start*, moving content along."""
        axis = 0 if dimension == "ROWS" else 1
        moved: dict[tuple[int, int], Cell] = {}
        for key, cell in self.cells.items():
            pos = key[axis]
            if count < 0 and start <= pos < start - count:
                continue
            if pos >= start:
                pos += count
            new_key = (pos, key[1]) if axis == 0 else (key[0], pos)
            moved[new_key] = cell
        self.cells = moved
        # an inserted row or column has the default size; a deleted one takes its size with it
        self.dimensions[dimension] = {(i + count if i >= start else i): props
                                      for i, props in self.dimensions[dimension].items()
                                      if not (count < 0 and start <= i < start - count)}
        start_key, end_key = ("startRowIndex", "endRowIndex") if axis == 0 else ("startColumnIndex", "endColumnIndex")
        kept = []
        for protected in self.protected_ranges:
            if _shift_range(protected.get("range", {}), start_key, end_key, start, count):
                kept.append(protected)
        self.protected_ranges = kept
        count_key = "rowCount" if axis == 0 else "columnCount"
        self.grid_properties[count_key] = self.grid_properties.get(count_key, 0) + count

    def values(self) -> list[list[Any]]:
        """The user-entered grid (formulas as text), trimmed."""
        if not any(c.has_value() for c in self.cells.values()):
            return []
        rows = max(r for (r, _), c in self.cells.items() if c.has_value()) + 1
        out: list[list[Any]] = []
        for r in range(rows):
            line = [c for c in range(self.column_count) if (r, c) in self.cells and self.cells[(r, c)].has_value()]
            width = max(line) + 1 if line else 0
            out.append(["" if (cell := self.cells.get((r, c))) is None or not cell.has_value() else cell.entered()
                        for c in range(width)])
        return out

    def output_properties(self, index: int) -> dict[str, Any]:
        """SheetProperties as Google prints them: proto3 defaults (0, false) left out."""
        props = copy.deepcopy(self.properties)
        props["index"] = index
        grid = props.get("gridProperties")
        if isinstance(grid, dict):
            props["gridProperties"] = {k: v for k, v in grid.items() if v or k in ("rowCount", "columnCount")}
        for key in ("hidden", "rightToLeft"):
            if not props.get(key):
                props.pop(key, None)
        order = ["sheetId", "title", "index", "sheetType", "gridProperties"]
        return {k: props[k] for k in order if k in props} | {k: v for k, v in props.items() if k not in order}


def _shift_range(rng: dict[str, Any], start_key: str, end_key: str, at: int, count: int) -> bool:
    """Move a GridRange for an insert/delete along one axis; False if it was deleted entirely."""
    lo = rng.get(start_key, 0)
    hi = rng.get(end_key)
    if count > 0:
        if lo >= at:
            rng[start_key] = lo + count
            if hi is not None:
                rng[end_key] = hi + count
        elif hi is not None and hi > at:
            rng[end_key] = hi + count
        return True
    gone_lo, gone_hi = at, at - count

    def moved(x: int) -> int:
        return x if x <= gone_lo else max(gone_lo, x + count) if x < gone_hi else x + count

    new_lo = moved(lo)
    new_hi = moved(hi) if hi is not None else None
    if new_hi is not None and new_hi <= new_lo:
        return False
    if start_key in rng:
        rng[start_key] = new_lo
    if new_hi is not None:
        rng[end_key] = new_hi
    return True


@dataclass
class Spreadsheet:
    """A whole spreadsheet: properties, tabs in order, and whether the caller may see it."""

    spreadsheet_id: str
    properties: dict[str, Any]
    sheets: list[Sheet]
    private: bool = False

    def sheet_by_title(self, title: str) -> Sheet | None:
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        lowered = title.lower()
        return next((s for s in self.sheets if s.title.lower() == lowered), None)

    def sheet_by_id(self, sheet_id: int) -> Sheet | None:
        return next((s for s in self.sheets if s.sheet_id == sheet_id), None)

    def index_of(self, sheet: Sheet) -> int:
        return next(i for i, s in enumerate(self.sheets) if s is sheet)

    def resolve(self, text: str) -> tuple[Sheet, GridRange | None]:
        """The sheet and cells an A1 range names (cells None: the whole sheet); 400 if unparsable."""
        try:
            parsed = A1.parse(text)
        except ValueError:
            raise SheetsApiError.unparsable_range(text) from None
        if parsed.title is None:
            whole = self.sheet_by_title(text.strip())
            if whole is not None:
                return whole, None
            try:
                cells = A1.parse_cells(text)
            except ValueError:
                raise SheetsApiError.unparsable_range(text) from None
            grids = [s for s in self.sheets if s.properties.get("sheetType", "GRID") == "GRID"]
            if not grids:
                raise SheetsApiError.unparsable_range(text)
            return grids[0], cells
        sheet = self.sheet_by_title(parsed.title)
        if sheet is None or sheet.properties.get("sheetType", "GRID") != "GRID":
            raise SheetsApiError.unparsable_range(text)
        return sheet, parsed.cells

    def bounded(self, text: str) -> tuple[Sheet, GridRange]:
        """The cells a read or clear covers, closed at the grid's edge.

        As measured on Google: an end past the grid is clamped (``Z1:AA5`` -> ``Z1:Z5`` on 26
        columns), but a range starting outside the grid, or a whole-column (whole-row) range
        reaching past it, is 400 "exceeds grid limits".
        """
        sheet, cells = self.resolve(text)
        rows, cols = sheet.row_count, sheet.column_count
        if cells is None:
            return sheet, GridRange(0, rows, 0, cols)
        starts_outside = cells.start_row >= rows or cells.start_col >= cols
        too_wide = cells.end_row is None and (cells.end_col or 0) > cols
        too_long = cells.end_col is None and (cells.end_row or 0) > rows
        if starts_outside or too_wide or too_long:
            raise SheetsApiError.grid_limits(A1.format_range(sheet.title, cells), rows, cols)
        return sheet, GridRange(cells.start_row, min(cells.end_row or rows, rows),
                                cells.start_col, min(cells.end_col or cols, cols))

    def total_cells(self) -> int:
        return sum(s.row_count * s.column_count for s in self.sheets)

    def clone(self) -> Spreadsheet:
        """A copy to apply a request to; unchanged cells are shared, not copied."""
        return Spreadsheet(self.spreadsheet_id, copy.deepcopy(self.properties), [s.clone() for s in self.sheets],
                           self.private)

    def url(self) -> str:
        return f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit"


# =============================================================================================
# values.* endpoints
# =============================================================================================


@dataclass
class WriteSummary:
    """What one ValueRange write touched (for the update responses)."""

    sheet: Sheet
    grid: GridRange | None
    cells: set[tuple[int, int]]

    def response(self, spreadsheet_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
        if self.grid is not None:
            out["updatedRange"] = A1.format(self.sheet.title, self.grid)
        rows = len({r for r, _ in self.cells})
        cols = len({c for _, c in self.cells})
        for key, n in (("updatedRows", rows), ("updatedColumns", cols), ("updatedCells", len(self.cells))):
            if n:
                out[key] = n
        return out


class ValuesService:
    """values.get / batchGet / update / batchUpdate / append / clear / batchClear."""

    @staticmethod
    def render_options(params: QueryParams, response: bool = False) -> RenderOptions:
        """Read options from the query (``response...`` ones for the values echoed by writes)."""
        value_key = "responseValueRenderOption" if response else "valueRenderOption"
        date_key = "responseDateTimeRenderOption" if response else "dateTimeRenderOption"
        return RenderOptions(params.enum(value_key, "ValueRenderOption") or "FORMATTED_VALUE",
                             params.enum(date_key, "DateTimeRenderOption") or "SERIAL_NUMBER")

    @staticmethod
    def read(doc: Spreadsheet, text: str, options: RenderOptions, major: str) -> dict[str, Any]:
        sheet, grid = doc.bounded(text)
        values = ValueRenderer(doc, options).grid(sheet, grid, major)
        out: dict[str, Any] = {"range": A1.format(sheet.title, grid), "majorDimension": major}
        if values:
            out["values"] = values
        return out

    def get(self, doc: Spreadsheet, text: str, params: QueryParams) -> dict[str, Any]:
        major = params.enum("majorDimension", "Dimension") or "ROWS"
        return self.read(doc, text, self.render_options(params), "ROWS" if major == "DIMENSION_UNSPECIFIED" else major)

    def batch_get(self, doc: Spreadsheet, params: QueryParams) -> dict[str, Any]:
        major = params.enum("majorDimension", "Dimension") or "ROWS"
        major = "ROWS" if major == "DIMENSION_UNSPECIFIED" else major
        options = self.render_options(params)
        out: dict[str, Any] = {"spreadsheetId": doc.spreadsheet_id}
        ranges = params.all("ranges")
        if ranges:
            out["valueRanges"] = [self.read(doc, text, options, major) for text in ranges]
        return out

    @staticmethod
    def _rows(value_range: Mapping[str, Any]) -> list[list[Any]]:
        """The rows to write (columns turned into rows for majorDimension COLUMNS); cells must be scalars."""
        rows = value_range.get("values") or []
        for r, row in enumerate(rows):
            for c, item in enumerate(row):
                if isinstance(item, (list, dict)):
                    kind = "list_value" if isinstance(item, list) else "struct_value"
                    raise SheetsApiError.invalid(f"Invalid values[{r}][{c}]: {kind} {json.dumps(item)}")
        if value_range.get("majorDimension") == "COLUMNS":
            width = max((len(col) for col in rows), default=0)
            rows = [[col[r] if r < len(col) else None for col in rows] for r in range(width)]
        return rows

    @staticmethod
    def _write_rows(sheet: Sheet, top: int, left: int, rows: list[list[Any]], option: str,
                    limit: GridRange | None, text: str) -> WriteSummary:
        """Write *rows* at (top, left): within *limit* if the range was a rectangle, always within the grid."""
        width = max((len(row) for row in rows), default=0)
        if rows and width:
            bottom, right = top + len(rows), left + width
            area = GridRange(top, bottom, left, right)
            if limit is not None:
                assert limit.end_row is not None and limit.end_col is not None
                if bottom > limit.end_row:
                    raise SheetsApiError.invalid(
                        f"Requested writing within range [{text}], but tried writing to row [{limit.end_row + 1}]")
                if right > limit.end_col:
                    raise SheetsApiError.invalid(
                        f"Requested writing within range [{text}], but tried writing to column "
                        f"[{A1.column_letters(limit.end_col)}]")
            if area.exceeds(sheet.row_count, sheet.column_count):
                past = A1.outside(area, sheet.row_count, sheet.column_count)
                raise SheetsApiError.grid_limits(A1.format(sheet.title, past), sheet.row_count, sheet.column_count)
        written: set[tuple[int, int]] = set()
        for r, row in enumerate(rows):
            for c, raw in enumerate(row):
                if raw is None:
                    continue  # null leaves the cell as it is
                sheet.write(top + r, left + c, InputParser.parse(raw, option))
                written.add((top + r, left + c))
        grid = None
        if written:
            grid = GridRange(min(r for r, _ in written), max(r for r, _ in written) + 1,
                             min(c for _, c in written), max(c for _, c in written) + 1)
        return WriteSummary(sheet, grid, written)

    def write_range(self, doc: Spreadsheet, text: str, value_range: Mapping[str, Any], option: str) -> WriteSummary:
        """values.update semantics for one range: a single cell or a sheet anchors, a rectangle bounds."""
        sheet, cells = doc.resolve(text)
        grid = cells or GridRange()
        row_count, column_count = sheet.row_count, sheet.column_count
        anchor_only = cells is None or (cells.end_row == cells.start_row + 1 and cells.end_col == cells.start_col + 1)
        limit = None if anchor_only else grid.clamp(row_count, column_count)
        if limit is not None and grid.exceeds(row_count, column_count):
            past = A1.outside(GridRange(grid.start_row, max(limit.end_row or 0, grid.start_row + 1),
                                        grid.start_col, max(limit.end_col or 0, grid.start_col + 1)),
                              row_count, column_count)
            raise SheetsApiError.grid_limits(A1.format(sheet.title, past), row_count, column_count)
        rows = self._rows(value_range)
        summary = self._write_rows(sheet, grid.start_row, grid.start_col, rows, option, limit, text.strip())
        if summary.grid is None:
            summary.grid = GridRange(grid.start_row, grid.start_row + 1, grid.start_col, grid.start_col + 1)
        return summary

    def updated_data(self, doc: Spreadsheet, summary: WriteSummary, options: RenderOptions) -> dict[str, Any]:
        assert summary.grid is not None
        values = ValueRenderer(doc, options).grid(summary.sheet, summary.grid, "ROWS")
        out: dict[str, Any] = {"range": A1.format(summary.sheet.title, summary.grid), "majorDimension": "ROWS"}
        if values:
            out["values"] = values
        return out

    def update(self, doc: Spreadsheet, text: str, params: QueryParams, body: Any) -> dict[str, Any]:
        value_range = ShapeChecker.clean(body if body is not None else {}, "ValueRange", "data")
        option = params.required_input_option()
        if "range" in value_range and value_range["range"].strip() != text.strip():
            (body_sheet, body_cells), (url_sheet, url_cells) = doc.resolve(value_range["range"]), doc.resolve(text)
            if body_sheet is not url_sheet or body_cells != url_cells:
                raise SheetsApiError.invalid(
                    f"Requested range [{value_range['range']}] doesn't match the range in the URL [{text}]")
        summary = self.write_range(doc, text, value_range, option)
        out = summary.response(doc.spreadsheet_id)
        if params.flag("includeValuesInResponse"):
            out["updatedData"] = self.updated_data(doc, summary, self.render_options(params, response=True))
        return out

    def batch_update(self, doc: Spreadsheet, body: Any) -> dict[str, Any]:
        request = ShapeChecker.clean(body if body is not None else {}, "BatchUpdateValuesRequest", "")
        option = request.get("valueInputOption")
        if option in (None, "INPUT_VALUE_OPTION_UNSPECIFIED"):
            raise SheetsApiError.invalid("'valueInputOption' is required but not specified")
        options = RenderOptions(request.get("responseValueRenderOption", "FORMATTED_VALUE"),
                                request.get("responseDateTimeRenderOption", "SERIAL_NUMBER"))
        responses = []
        rows: set[tuple[int, int]] = set()
        cols: set[tuple[int, int]] = set()
        sheets: set[int] = set()
        cells = 0
        for i, value_range in enumerate(request.get("data", [])):
            if "range" not in value_range:
                raise SheetsApiError.invalid(f"Invalid data[{i}]: range is required")
            summary = self.write_range(doc, value_range["range"], value_range, option)
            response = summary.response(doc.spreadsheet_id)
            if request.get("includeValuesInResponse"):
                response["updatedData"] = self.updated_data(doc, summary, options)
            responses.append(response)
            rows |= {(summary.sheet.sheet_id, r) for r, _ in summary.cells}
            cols |= {(summary.sheet.sheet_id, c) for _, c in summary.cells}
            sheets |= {summary.sheet.sheet_id} if summary.cells else set()
            cells += len(summary.cells)
        out: dict[str, Any] = {"spreadsheetId": doc.spreadsheet_id}
        for key, n in (("totalUpdatedRows", len(rows)), ("totalUpdatedColumns", len(cols)),
                       ("totalUpdatedCells", cells), ("totalUpdatedSheets", len(sheets))):
            if n:
                out[key] = n
        if responses:
            out["responses"] = responses
        return out

    def append(self, doc: Spreadsheet, text: str, params: QueryParams, body: Any) -> dict[str, Any]:
        value_range = ShapeChecker.clean(body if body is not None else {}, "ValueRange", "data")
        option = params.required_input_option()
        insert = params.enum("insertDataOption", "InsertDataOption") or "OVERWRITE"
        sheet, grid = doc.bounded(text)
        table = TableFinder.find(sheet, grid)
        rows = self._rows(value_range)
        out: dict[str, Any] = {"spreadsheetId": doc.spreadsheet_id}
        if table is not None:
            out["tableRange"] = A1.format(sheet.title, table)
            top, left = table.end_row or 0, table.start_col
        else:
            top, left = grid.start_row, grid.start_col
        height = len(rows)
        width = max((len(r) for r in rows), default=0)
        if height:
            # Appending past the grid's edge adds the rows and columns needed (both insert options).
            if insert == "INSERT_ROWS":
                sheet.shift("ROWS", top, height)
            elif top + height > sheet.row_count:
                sheet.grid_properties["rowCount"] = top + height
            if left + width > sheet.column_count:
                sheet.grid_properties["columnCount"] = left + width
            if doc.total_cells() > MAX_CELLS:
                raise SheetsApiError.invalid(
                    f"This action would increase the number of cells in the workbook above the limit of "
                    f"{MAX_CELLS} cells.")
        summary = self._write_rows(sheet, top, left, rows, option, None, text)
        if summary.grid is None:
            summary.grid = GridRange(top, top + 1, left, left + 1)
        updates = summary.response(doc.spreadsheet_id)
        if params.flag("includeValuesInResponse"):
            updates["updatedData"] = self.updated_data(doc, summary, self.render_options(params, response=True))
        out["updates"] = updates
        return out

    @staticmethod
    def clear_range(doc: Spreadsheet, text: str) -> str:
        sheet, grid = doc.bounded(text)
        for key in [k for k, c in sheet.cells.items() if c.has_value() and grid.contains(*k)]:
            sheet.write(key[0], key[1], ParsedInput(clear=True))
        return A1.format(sheet.title, grid)

    def clear(self, doc: Spreadsheet, text: str) -> dict[str, Any]:
        return {"spreadsheetId": doc.spreadsheet_id, "clearedRange": self.clear_range(doc, text)}

    def batch_clear(self, doc: Spreadsheet, body: Any) -> dict[str, Any]:
        request = ShapeChecker.clean(body if body is not None else {}, "BatchClearValuesRequest", "")
        out: dict[str, Any] = {"spreadsheetId": doc.spreadsheet_id}
        cleared = [self.clear_range(doc, text) for text in request.get("ranges", [])]
        if cleared:
            out["clearedRanges"] = cleared
        return out


class TableFinder:
    """Finds the "table" values.append appends to: the block of data growing from the range's first row."""

    @staticmethod
    def find(sheet: Sheet, grid: GridRange) -> GridRange | None:
        filled = {k for k, c in sheet.cells.items() if c.has_value()}
        in_range = [k for k in filled if grid.contains(*k)]
        if not in_range:
            return None
        top = min(r for r, _ in in_range)
        first_cols = [c for r, c in in_range if r == top]
        left, right = min(first_cols), max(first_cols)
        bottom = top
        changed = True
        while changed:
            changed = False
            if any((bottom + 1, c) in filled for c in range(left, right + 1)):
                bottom += 1
                changed = True
            if any((r, right + 1) in filled for r in range(top, bottom + 1)):
                right += 1
                changed = True
            if left > 0 and any((r, left - 1) in filled for r in range(top, bottom + 1)):
                left -= 1
                changed = True
        return GridRange(top, bottom + 1, left, right + 1)


# =============================================================================================
# spreadsheets.batchUpdate
# =============================================================================================


@dataclass
class BatchContext:
    """The request being applied: its position and kind (for Google-style error messages)."""

    index: int
    kind: str
    rng: random.Random
    owner_email: str

    def error(self, message: str) -> SheetsApiError:
        return SheetsApiError.invalid(f"Invalid requests[{self.index}].{self.kind}: {message}")


class BatchUpdateService:
    """Applies spreadsheets.batchUpdate requests, one handler per request kind."""

    CONDITION_ARITY: dict[str, tuple[int, int]] = {
        **{t: (1, 1) for t in ("NUMBER_GREATER", "NUMBER_GREATER_THAN_EQ", "NUMBER_LESS", "NUMBER_LESS_THAN_EQ",
                               "NUMBER_EQ", "NUMBER_NOT_EQ", "TEXT_CONTAINS", "TEXT_NOT_CONTAINS",
                               "TEXT_STARTS_WITH", "TEXT_ENDS_WITH", "TEXT_EQ", "TEXT_NOT_EQ", "DATE_EQ",
                               "DATE_NOT_EQ", "DATE_BEFORE", "DATE_AFTER", "DATE_ON_OR_BEFORE", "DATE_ON_OR_AFTER",
                               "ONE_OF_RANGE", "CUSTOM_FORMULA")},
        **{t: (2, 2) for t in ("NUMBER_BETWEEN", "NUMBER_NOT_BETWEEN", "DATE_BETWEEN", "DATE_NOT_BETWEEN")},
        **{t: (0, 0) for t in ("TEXT_IS_EMAIL", "TEXT_IS_URL", "DATE_IS_VALID", "BLANK", "NOT_BLANK")},
        "ONE_OF_LIST": (1, 500),
        "BOOLEAN": (0, 2),
    }

    def __init__(self, rng: random.Random, owner_email: str) -> None:
        self.rng = rng
        self.owner_email = owner_email

    def apply(self, doc: Spreadsheet, body: Any) -> dict[str, Any]:
        raw_items = body.get("requests") if isinstance(body, dict) else None
        for i, raw in enumerate(raw_items if isinstance(raw_items, list) else []):
            for name in (raw if isinstance(raw, dict) else {}):
                if _camel(name) in UNIMPLEMENTED_REQUESTS:
                    raise SheetsApiError.invalid(
                        f"Invalid requests[{i}]: {_camel(name)} is a Sheets request the partnerloop emulator "
                        "does not implement")
        request = ShapeChecker.clean(body if body is not None else {}, "BatchUpdateSpreadsheetRequest", "")
        if not request.get("requests"):
            raise SheetsApiError.invalid("Must specify at least one request.")
        replies = []
        for i, item in enumerate(request["requests"]):
            kinds = list(item)
            if not kinds:
                raise SheetsApiError.invalid(f"Invalid requests[{i}]: No request set.")
            if len(kinds) > 1:
                raise SheetsApiError.field_violation(
                    f"requests[{i}]", f"Invalid value at 'requests[{i}]' (oneof), oneof field 'kind' is already "
                                      f"set. Cannot set '{kinds[1]}'")
            ctx = BatchContext(i, kinds[0], self.rng, self.owner_email)
            handler = getattr(self, "do_" + _snake(kinds[0]))
            replies.append(handler(doc, item[kinds[0]], ctx))
        return {"spreadsheetId": doc.spreadsheet_id, "replies": replies}

    # -- shared helpers ------------------------------------------------------------------------
    @staticmethod
    def sheet(doc: Spreadsheet, sheet_id: int, ctx: BatchContext) -> Sheet:
        sheet = doc.sheet_by_id(sheet_id)
        if sheet is None:
            raise ctx.error(f"No grid with id: {sheet_id}")
        return sheet

    def grid(self, doc: Spreadsheet, rng: Mapping[str, Any], ctx: BatchContext) -> tuple[Sheet, GridRange]:
        """A GridRange request field as (sheet, bounded rectangle); 400 if outside the grid."""
        sheet = self.sheet(doc, rng.get("sheetId", 0), ctx)
        grid = GridRange(rng.get("startRowIndex", 0), rng.get("endRowIndex"),
                         rng.get("startColumnIndex", 0), rng.get("endColumnIndex"))
        if min(grid.start_row, grid.start_col, grid.end_row or 0, grid.end_col or 0) < 0:
            raise ctx.error("GridRange indexes must not be negative")
        if (grid.end_row is not None and grid.end_row < grid.start_row) or \
                (grid.end_col is not None and grid.end_col < grid.start_col):
            raise ctx.error("GridRange end index must not be less than its start index")
        bounded = grid.clamp(sheet.row_count, sheet.column_count)
        assert bounded.end_row is not None and bounded.end_col is not None
        if (bounded.end_row > sheet.row_count or bounded.end_col > sheet.column_count
                or bounded.start_row > sheet.row_count or bounded.start_col > sheet.column_count):
            shown = GridRange(bounded.start_row, max(bounded.end_row, bounded.start_row + 1),
                              bounded.start_col, max(bounded.end_col, bounded.start_col + 1))
            raise ctx.error(f"Range ({A1.format(sheet.title, shown)}) exceeds grid limits. "
                            f"Max rows: {sheet.row_count}, max columns: {sheet.column_count}")
        return sheet, bounded

    @staticmethod
    def output_range(rng: Mapping[str, Any]) -> dict[str, Any]:
        """A GridRange as Google echoes it: sheetId 0 left out (proto3), indexes as given."""
        return {k: v for k, v in rng.items() if not (k == "sheetId" and v == 0)}

    def new_id(self, taken: set[int]) -> int:
        while True:
            candidate = self.rng.randint(1, 2**31 - 1)
            if candidate not in taken:
                return candidate

    @staticmethod
    def mask(fields: str | None, ctx: BatchContext) -> FieldMask:
        if not fields or not fields.strip():
            raise ctx.error("At least one field must be specified in 'fields'.")
        try:
            mask = FieldMask.parse(fields)
        except ValueError:
            raise ctx.error(f"Invalid field mask: {fields}") from None
        if mask.is_empty():
            raise ctx.error("At least one field must be specified in 'fields'.")
        return mask

    @staticmethod
    def check_cell_limit(doc: Spreadsheet, ctx: BatchContext) -> None:
        if doc.total_cells() > MAX_CELLS:
            raise ctx.error(f"This action would increase the number of cells in the workbook above the limit of "
                            f"{MAX_CELLS} cells.")

    @staticmethod
    def dimension_range(rng: Mapping[str, Any], sheet: Sheet, ctx: BatchContext) -> tuple[str, int, int]:
        dimension = rng.get("dimension", "DIMENSION_UNSPECIFIED")
        if dimension not in ("ROWS", "COLUMNS"):
            raise ctx.error("range.dimension must be ROWS or COLUMNS")
        size = sheet.row_count if dimension == "ROWS" else sheet.column_count
        start, end = rng.get("startIndex", 0), rng.get("endIndex", size)
        if start < 0 or end < start:
            raise ctx.error(f"Invalid dimension range: startIndex {start}, endIndex {end}")
        return dimension, start, end

    # -- the request kinds -----------------------------------------------------------------------
    def do_add_sheet(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        props = copy.deepcopy(req.get("properties", {}))
        title = props.get("title")
        if title is None or not str(title).strip():
            n = len(doc.sheets) + 1
            while doc.sheet_by_title(f"Sheet{n}") is not None:
                n += 1
            title = f"Sheet{n}"
        if doc.sheet_by_title(title) is not None:
            raise ctx.error(f'A sheet with the name "{title}" already exists. Please enter another name.')
        taken = {s.sheet_id for s in doc.sheets}
        if "sheetId" in props:
            if props["sheetId"] in taken:
                raise ctx.error(f"Sheet with id {props['sheetId']} already exists.")
            if props["sheetId"] < 0:
                raise ctx.error("sheetId must not be negative")
            sheet_id = props["sheetId"]
        else:
            sheet_id = self.new_id(taken | {0})
        sheet_type = props.get("sheetType", "GRID")
        if sheet_type not in ("GRID", "SHEET_TYPE_UNSPECIFIED"):
            raise ctx.error(f"Cannot add a sheet of type {sheet_type}; only GRID sheets can be added")
        grid = {"rowCount": 1000, "columnCount": 26, **props.get("gridProperties", {})}
        if grid["rowCount"] < 1 or grid["columnCount"] < 1:
            raise ctx.error("gridProperties rowCount and columnCount must be positive")
        properties: dict[str, Any] = {"sheetId": sheet_id, "title": title, "sheetType": "GRID",
                                      "gridProperties": grid}
        for key in ("hidden", "rightToLeft", "tabColor", "tabColorStyle"):
            if key in props:
                properties[key] = props[key]
        CellFormats.link(properties, "tabColor", "tabColorStyle")
        sheet = Sheet(properties)
        index = min(max(props.get("index", len(doc.sheets)), 0), len(doc.sheets))
        doc.sheets.insert(index, sheet)
        self.check_cell_limit(doc, ctx)
        self._check_frozen(sheet, ctx)
        return {"addSheet": {"properties": sheet.output_properties(index)}}

    def do_delete_sheet(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        sheet = self.sheet(doc, req.get("sheetId", 0), ctx)
        if len(doc.sheets) == 1:
            raise ctx.error("You can't remove all the sheets in a document.")
        doc.sheets.remove(sheet)
        return {}

    def do_update_sheet_properties(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        props = req.get("properties", {})
        sheet = self.sheet(doc, props.get("sheetId", 0), ctx)
        mask = self.mask(req.get("fields"), ctx).linked()
        index = doc.index_of(sheet)
        current = {**copy.deepcopy(sheet.properties), "index": index}
        source = copy.deepcopy(props)
        CellFormats.link(source, "tabColor", "tabColorStyle")
        mask.apply(current, source)
        if current.get("sheetId", 0) != sheet.sheet_id:
            raise ctx.error("sheetId cannot be changed")
        if current.get("sheetType", "GRID") != sheet.properties.get("sheetType", "GRID"):
            raise ctx.error("sheetType cannot be changed")
        title = current.get("title", "")
        if not str(title).strip():
            raise ctx.error("Sheet names must not be empty.")
        other = doc.sheet_by_title(title)
        if other is not None and other is not sheet:
            raise ctx.error(f'A sheet with the name "{title}" already exists. Please enter another name.')
        grid = current.get("gridProperties", {})
        rows, cols = grid.get("rowCount", 0), grid.get("columnCount", 0)
        if rows < 1 or cols < 1:
            raise ctx.error("gridProperties rowCount and columnCount must be positive")
        if current.get("hidden") and all(s is sheet or s.properties.get("hidden") for s in doc.sheets):
            raise ctx.error("You can't hide all the sheets in a document.")
        new_index = min(max(current.pop("index", index), 0), len(doc.sheets) - 1)
        sheet.properties = current
        sheet.resize(rows, cols)
        self._check_frozen(sheet, ctx)
        self.check_cell_limit(doc, ctx)
        if new_index != index:
            doc.sheets.remove(sheet)
            doc.sheets.insert(new_index, sheet)
        return {}

    @staticmethod
    def _check_frozen(sheet: Sheet, ctx: BatchContext) -> None:
        grid = sheet.grid_properties
        if grid.get("frozenRowCount", 0) < 0 or grid.get("frozenColumnCount", 0) < 0:
            raise ctx.error("Frozen counts must not be negative")
        if grid.get("frozenRowCount", 0) >= sheet.row_count:
            raise ctx.error("You can't freeze all visible rows on the sheet.")
        if grid.get("frozenColumnCount", 0) >= sheet.column_count:
            raise ctx.error("You can't freeze all visible columns on the sheet.")

    @staticmethod
    def _write_cells(sheet: Sheet, positions: Iterator[tuple[tuple[int, int], Mapping[str, Any]]],
                     mask: FieldMask) -> None:
        """Apply CellData *sources* through *mask* at each position (repeatCell / updateCells)."""
        blank_results: dict[int, Cell] = {}  # one shared result per source for cells that were empty
        for (row, col), data in positions:
            current = sheet.cells.get((row, col))
            if current is None and id(data) in blank_results:
                result = blank_results[id(data)]
            else:
                source = dict(data)
                if "userEnteredFormat" in source:
                    source["userEnteredFormat"] = CellFormats.normalise(source["userEnteredFormat"])
                target = current.to_json() if current is not None else {}
                mask.apply(target, source)
                result = Cell.from_json(target)
                if current is None:
                    blank_results[id(data)] = result
            if result.is_blank():
                sheet.cells.pop((row, col), None)
            else:
                sheet.cells[(row, col)] = result

    def do_repeat_cell(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        sheet, grid = self.grid(doc, req.get("range", {}), ctx)
        mask = self.mask(req.get("fields"), ctx).linked()
        cell = req.get("cell", {})
        self._check_entered_value(cell, ctx)
        self._write_cells(sheet, ((pos, cell) for pos in grid.cells()), mask)
        return {}

    @staticmethod
    def _check_entered_value(cell: Mapping[str, Any], ctx: BatchContext) -> None:
        entered = cell.get("userEnteredValue") or {}
        if len(entered) > 1:
            raise ctx.error("userEnteredValue may set only one of numberValue, stringValue, boolValue, "
                            "formulaValue, errorValue")
        if "formulaValue" in entered and not str(entered["formulaValue"]).startswith("="):
            raise ctx.error(f"Formula values must start with '=': {entered['formulaValue']}")

    def do_update_cells(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        mask = self.mask(req.get("fields"), ctx).linked()
        rows = req.get("rows", [])
        for row in rows:
            for cell in row.get("values", []):
                self._check_entered_value(cell, ctx)
        if ("start" in req) == ("range" in req):
            raise ctx.error("Exactly one of 'start' or 'range' must be set.")
        if "start" in req:
            start = req["start"]
            sheet = self.sheet(doc, start.get("sheetId", 0), ctx)
            top, left = start.get("rowIndex", 0), start.get("columnIndex", 0)
            height = len(rows)
            width = max((len(r.get("values", [])) for r in rows), default=0)
            self.grid(doc, {"sheetId": sheet.sheet_id, "startRowIndex": top, "endRowIndex": top + max(height, 1),
                            "startColumnIndex": left, "endColumnIndex": left + max(width, 1)}, ctx)
            positions = (((top + r, left + c), cell) for r, row in enumerate(rows)
                         for c, cell in enumerate(row.get("values", [])))
            self._write_cells(sheet, positions, mask)
            return {}
        sheet, grid = self.grid(doc, req["range"], ctx)
        if len(rows) > grid.height or any(len(r.get("values", [])) > grid.width for r in rows):
            raise ctx.error("The rows and cells given do not fit in the range.")

        def in_range() -> Iterator[tuple[tuple[int, int], Mapping[str, Any]]]:
            for r, c in grid.cells():
                line = rows[r - grid.start_row].get("values", []) if r - grid.start_row < len(rows) else []
                i = c - grid.start_col
                yield (r, c), (line[i] if i < len(line) else {})
        self._write_cells(sheet, in_range(), mask)
        return {}

    def do_set_data_validation(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        sheet, grid = self.grid(doc, req.get("range", {}), ctx)
        rule = req.get("rule")
        if rule is not None:
            condition = rule.get("condition", {})
            kind = condition.get("type", "CONDITION_TYPE_UNSPECIFIED")
            if kind == "CONDITION_TYPE_UNSPECIFIED":
                raise ctx.error("A data validation rule needs a condition type.")
            low, high = self.CONDITION_ARITY.get(kind, (0, 500))
            count = len(condition.get("values", []))
            if not low <= count <= high:
                if low == high:
                    word = {0: "no", 1: "exactly one", 2: "exactly two"}[low]
                    raise ctx.error(f"ConditionType {kind} requires {word} ConditionValue"
                                    f"{'s' if low != 1 else ''}, but {count} were specified.")
                raise ctx.error(f"ConditionType {kind} requires between {low} and {high} ConditionValues, "
                                f"but {count} were specified.")
            rule = {k: v for k, v in rule.items() if v not in (False, "", None)}
        shared = copy.deepcopy(rule) if rule else None  # cells are never changed in place: one copy will do
        for row, col in grid.cells():
            current = sheet.cells.get((row, col))
            if current is None and shared is None:
                continue
            sheet.cells[(row, col)] = dataclasses.replace(current or Cell(), validation=shared)
            sheet.prune(row, col)
        return {}

    def do_add_protected_range(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        wanted = req.get("protectedRange", {})
        if "range" not in wanted:
            raise ctx.error("protectedRange.range must be set.")
        sheet, _ = self.grid(doc, wanted["range"], ctx)
        taken = {p["protectedRangeId"] for s in doc.sheets for p in s.protected_ranges}
        if "protectedRangeId" in wanted:
            if wanted["protectedRangeId"] in taken:
                raise ctx.error(f"A protected range with id {wanted['protectedRangeId']} already exists.")
            range_id = wanted["protectedRangeId"]
        else:
            range_id = self.new_id(taken)
        stored: dict[str, Any] = {"protectedRangeId": range_id, "range": self.output_range(wanted["range"])}
        if wanted.get("description"):
            stored["description"] = wanted["description"]
        if wanted.get("warningOnly"):
            stored["warningOnly"] = True
            if (wanted.get("editors") or {}).get("users") or (wanted.get("editors") or {}).get("groups"):
                raise ctx.error("Warning-only protected ranges cannot have editors.")
        if wanted.get("unprotectedRanges"):
            stored["unprotectedRanges"] = [self.output_range(r) for r in wanted["unprotectedRanges"]]
        stored["requestingUserCanEdit"] = True  # the caller owns the spreadsheet
        requested = {k: v for k, v in _drop_nulls(wanted.get("editors") or {}).items() if v not in ([], False)}
        users = list(dict.fromkeys([ctx.owner_email, *requested.get("users", [])]))
        stored["editors"] = {**requested, "users": users}
        sheet.protected_ranges.append(stored)
        reply = copy.deepcopy(stored)
        reply["editors"] = requested if stored.get("warningOnly") else copy.deepcopy(stored["editors"])
        return {"addProtectedRange": {"protectedRange": reply}}

    def do_add_chart(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        chart = copy.deepcopy(req.get("chart", {}))
        if "spec" not in chart:
            raise ctx.error("chart.spec must be set.")
        position = chart.get("position", {})
        anchor = position.get("overlayPosition", {}).get("anchorCell")
        if anchor is None:
            raise ctx.error("The partnerloop emulator only supports charts with position.overlayPosition "
                            "(not newSheet or sheetId positions).")
        sheet = self.sheet(doc, anchor.get("sheetId", 0), ctx)
        self.grid(doc, {"sheetId": sheet.sheet_id, "startRowIndex": anchor.get("rowIndex", 0),
                        "endRowIndex": anchor.get("rowIndex", 0) + 1,
                        "startColumnIndex": anchor.get("columnIndex", 0),
                        "endColumnIndex": anchor.get("columnIndex", 0) + 1}, ctx)
        taken = {c["chartId"] for s in doc.sheets for c in s.charts}
        if "chartId" in chart:
            if chart["chartId"] in taken:
                raise ctx.error(f"An object with id {chart['chartId']} already exists.")
        else:
            chart["chartId"] = self.new_id(taken)
        chart.setdefault("border", {"color": {"red": 1, "green": 1, "blue": 1},
                                    "colorStyle": {"rgbColor": {"red": 1, "green": 1, "blue": 1}}})
        ordered = {"chartId": chart.pop("chartId"), **chart}
        sheet.charts.append(ordered)
        return {"addChart": {"chart": copy.deepcopy(ordered)}}

    def do_delete_embedded_object(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        object_id = req.get("objectId")
        for sheet in doc.sheets:
            for chart in sheet.charts:
                if chart["chartId"] == object_id:
                    sheet.charts.remove(chart)
                    return {}
        raise ctx.error(f"No object with id {object_id}")

    def do_auto_resize_dimensions(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        if "dimensions" not in req:
            raise ctx.error("dimensions must be set.")
        rng = req["dimensions"]
        sheet = self.sheet(doc, rng.get("sheetId", 0), ctx)
        dimension, _start, end = self.dimension_range(rng, sheet, ctx)
        size = sheet.row_count if dimension == "ROWS" else sheet.column_count
        if end > size:
            raise ctx.error(f"Invalid dimension range: endIndex {end} is past the grid's {size} "
                            f"{dimension.lower()}")
        return {}

    def do_update_dimension_properties(self, doc: Spreadsheet, req: dict[str, Any],
                                       ctx: BatchContext) -> dict[str, Any]:
        if "dataSourceSheetRange" in req:
            raise ctx.error("dataSourceSheetRange is only valid on a data source sheet.")
        if "range" not in req:
            raise ctx.error("range must be set.")
        rng = req["range"]
        sheet = self.sheet(doc, rng.get("sheetId", 0), ctx)
        dimension, start, end = self.dimension_range(rng, sheet, ctx)
        size = sheet.row_count if dimension == "ROWS" else sheet.column_count
        if end > size or start >= end:
            raise ctx.error(f"Invalid dimension range: startIndex {start}, endIndex {end} (the grid has {size} "
                            f"{dimension.lower()})")
        mask = self.mask(req.get("fields"), ctx)
        properties = req.get("properties", {})
        if properties.get("pixelSize", 0) < 0:
            raise ctx.error("pixelSize must not be negative.")
        for index in range(start, end):
            current = sheet.dimensions[dimension].setdefault(index, {})
            mask.apply(current, properties)
        return {}

    def do_append_dimension(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        sheet = self.sheet(doc, req.get("sheetId", 0), ctx)
        dimension = req.get("dimension", "DIMENSION_UNSPECIFIED")
        if dimension not in ("ROWS", "COLUMNS"):
            raise ctx.error("dimension must be ROWS or COLUMNS")
        length = req.get("length", 0)
        if length <= 0:
            raise ctx.error("length must be greater than 0")
        key = "rowCount" if dimension == "ROWS" else "columnCount"
        sheet.grid_properties[key] = sheet.grid_properties.get(key, 0) + length
        self.check_cell_limit(doc, ctx)
        return {}

    def do_insert_dimension(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        rng = req.get("range", {})
        sheet = self.sheet(doc, rng.get("sheetId", 0), ctx)
        dimension, start, end = self.dimension_range(rng, sheet, ctx)
        size = sheet.row_count if dimension == "ROWS" else sheet.column_count
        if end == start:
            raise ctx.error("range must include at least one row or column")
        if start > size:
            raise ctx.error(f"range.startIndex {start} is past the end of the grid ({size})")
        before = req.get("inheritFromBefore", False)
        if before and start == 0:
            raise ctx.error("Cannot inherit from before when inserting at the first row or column.")
        sheet.shift(dimension, start, end - start)
        # New rows/columns take the formats of their neighbour: before, or after (now moved to *end*).
        source = start - 1 if before else end
        axis = 0 if dimension == "ROWS" else 1
        for key, cell in list(sheet.cells.items()):
            if key[axis] == source and cell.format:
                for pos in range(start, end):
                    target = (pos, key[1]) if axis == 0 else (key[0], pos)
                    sheet.cell(*target).format = copy.deepcopy(cell.format)
        self.check_cell_limit(doc, ctx)
        return {}

    def do_delete_dimension(self, doc: Spreadsheet, req: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
        rng = req.get("range", {})
        sheet = self.sheet(doc, rng.get("sheetId", 0), ctx)
        dimension, start, end = self.dimension_range(rng, sheet, ctx)
        size = sheet.row_count if dimension == "ROWS" else sheet.column_count
        end = min(end, size)
        if start >= size or end <= start:
            raise ctx.error(f"Invalid dimension range: startIndex {start}, endIndex {rng.get('endIndex', size)}")
        if start == 0 and end == size:
            what = "rows" if dimension == "ROWS" else "columns"
            raise ctx.error(f"You can't delete all the {what} on the sheet.")
        frozen_key = "frozenRowCount" if dimension == "ROWS" else "frozenColumnCount"
        frozen = sheet.grid_properties.get(frozen_key, 0)
        if frozen > start:
            sheet.grid_properties[frozen_key] = max(start, frozen - (min(end, frozen) - start))
        sheet.shift(dimension, start, -(end - start))
        return {}


# =============================================================================================
# spreadsheets.get and create
# =============================================================================================


class SpreadsheetView:
    """The Spreadsheet resource as spreadsheets.get returns it."""

    def __init__(self, doc: Spreadsheet) -> None:
        self.doc = doc

    def render(self, ranges: Sequence[str], with_data: bool) -> dict[str, Any]:
        doc = self.doc
        wanted: dict[int, list[GridRange]] = {}
        for text in ranges:
            sheet, grid = doc.bounded(text)
            wanted.setdefault(sheet.sheet_id, []).append(grid)
        sheets = []
        for index, sheet in enumerate(doc.sheets):
            if ranges and sheet.sheet_id not in wanted:
                continue
            out: dict[str, Any] = {"properties": sheet.output_properties(index)}
            if with_data and sheet.properties.get("sheetType", "GRID") == "GRID":
                grids = wanted.get(sheet.sheet_id) or [GridRange().clamp(sheet.row_count, sheet.column_count)]
                out["data"] = [self.grid_data(sheet, g) for g in grids]
            if sheet.protected_ranges:
                out["protectedRanges"] = copy.deepcopy(sheet.protected_ranges)
            if sheet.charts:
                out["charts"] = copy.deepcopy(sheet.charts)
            sheets.append(out)
        properties = copy.deepcopy(doc.properties)
        return {"spreadsheetId": doc.spreadsheet_id, "properties": properties, "sheets": sheets,
                "spreadsheetUrl": doc.url()}

    def grid_data(self, sheet: Sheet, grid: GridRange) -> dict[str, Any]:
        assert grid.end_row is not None and grid.end_col is not None
        out: dict[str, Any] = {}
        if grid.start_row:
            out["startRow"] = grid.start_row
        if grid.start_col:
            out["startColumn"] = grid.start_col
        formatted = ValueRenderer(self.doc, RenderOptions("FORMATTED_VALUE"))
        raw = ValueRenderer(self.doc, RenderOptions("UNFORMATTED_VALUE"))
        present = [k for k, c in sheet.cells.items() if grid.contains(*k) and not c.is_blank()]
        rows: list[dict[str, Any]] = []
        if present:
            last_row = max(r for r, _ in present)
            for r in range(grid.start_row, last_row + 1):
                cols = [c for rr, c in present if rr == r]
                if not cols:
                    rows.append({})
                    continue
                values = [self.cell_data(sheet, r, c, formatted, raw) for c in range(grid.start_col, max(cols) + 1)]
                rows.append({"values": values})
        if rows:
            out["rowData"] = rows
        out["rowMetadata"] = [sheet.dimension_properties("ROWS", r) for r in range(grid.start_row, grid.start_row + grid.height)]
        out["columnMetadata"] = [sheet.dimension_properties("COLUMNS", c)
                                 for c in range(grid.start_col, grid.start_col + grid.width)]
        return out

    def cell_data(self, sheet: Sheet, row: int, col: int, formatted: ValueRenderer,
                  raw: ValueRenderer) -> dict[str, Any]:
        cell = sheet.cells.get((row, col))
        if cell is None:
            return {}
        out = cell.to_json()
        if cell.has_value():
            value = raw.engine.value_of(sheet, row, col)
            if isinstance(value, FormulaError):
                out["effectiveValue"] = {"errorValue": {"type": "ERROR", "message": value.code}}
            else:
                out["effectiveValue"] = _extended_value(value)
            out["formattedValue"] = formatted.render(sheet, row, col)
        if cell.format or cell.has_value():
            out["effectiveFormat"] = CellFormats.merge(DEFAULT_FORMAT, cell.format or {})
        return out


def new_spreadsheet_properties(title: str) -> dict[str, Any]:
    return {"title": title, "locale": "en_US", "autoRecalc": "ON_CHANGE", "timeZone": "Etc/GMT",
            "defaultFormat": copy.deepcopy(DEFAULT_FORMAT), "spreadsheetTheme": copy.deepcopy(SPREADSHEET_THEME)}


# =============================================================================================
# Query parameters
# =============================================================================================

SYSTEM_PARAMS = frozenset({"fields", "key", "alt", "prettyPrint", "quotaUser", "accessToken", "callback",
                           "uploadProtocol", "uploadType", "$.xgafv", "oauthToken", "userIp"})
ENDPOINT_PARAMS: dict[str, frozenset[str]] = {
    "spreadsheets.create": frozenset(),
    "spreadsheets.get": frozenset({"includeGridData", "ranges", "excludeTablesInBandedRanges"}),
    "spreadsheets.batchUpdate": frozenset(),
    "values.get": frozenset({"majorDimension", "valueRenderOption", "dateTimeRenderOption"}),
    "values.batchGet": frozenset({"ranges", "majorDimension", "valueRenderOption", "dateTimeRenderOption"}),
    "values.update": frozenset({"valueInputOption", "includeValuesInResponse", "responseValueRenderOption",
                                "responseDateTimeRenderOption"}),
    "values.append": frozenset({"valueInputOption", "insertDataOption", "includeValuesInResponse",
                                "responseValueRenderOption", "responseDateTimeRenderOption"}),
    "values.batchUpdate": frozenset(),
    "values.clear": frozenset(),
    "values.batchClear": frozenset(),
}


class QueryParams:
    """A request's query string, with Google's parameter checks (names accepted in camel or snake case)."""

    def __init__(self, raw: Mapping[str, list[str]], endpoint: str) -> None:
        self.values: dict[str, list[str]] = {}
        allowed = ENDPOINT_PARAMS.get(endpoint, frozenset())
        for name, items in raw.items():
            key = name if name.startswith("$") else _camel(name)
            if key not in allowed and key not in SYSTEM_PARAMS:
                raise SheetsApiError.field_violation(
                    "", f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
                        f"Field '{name}' could not be found in request message.")
            self.values.setdefault(key, []).extend(items)

    def first(self, name: str) -> str | None:
        items = self.values.get(name)
        return items[0] if items else None

    def all(self, name: str) -> list[str]:
        return list(self.values.get(name, []))

    def enum(self, name: str, enum_name: str) -> str | None:
        value = self.first(name)
        if value is None:
            return None
        if value not in ENUMS[enum_name]:
            raise ShapeChecker._bad_value(_snake(name), f"enum:{enum_name}", value)
        return value

    def flag(self, name: str) -> bool:
        value = self.first(name)
        if value is None:
            return False
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise ShapeChecker._bad_value(_snake(name), "bool", value)

    def required_input_option(self) -> str:
        option = self.enum("valueInputOption", "ValueInputOption")
        if option in (None, "INPUT_VALUE_OPTION_UNSPECIFIED"):
            raise SheetsApiError.invalid("'valueInputOption' is required but not specified")
        return option


# =============================================================================================
# Faults: throttling, server errors, latency
# =============================================================================================

FAULT_STATUSES = (429, 500, 503)
FAULT_BODIES = ("json", "html")


@dataclass(frozen=True)
class Fault:
    status: int
    body: str


class FaultInjector:
    """Decides which requests fail (a queue of forced failures plus a seeded failure rate) and how slowly."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()
        self._rate = 0.0
        self._rng = random.Random(0)
        self.delay = 0.0

    def fail_next(self, n: int, status: int, body: str) -> None:
        self._check(status, body)
        self._queue.extend(Fault(status, body) for _ in range(n))

    def fail_rate(self, p: float, seed: int | None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError("failure probability must be between 0 and 1")
        self._rate = p
        self._rng = random.Random(seed)

    def draw(self) -> Fault | None:
        if self._queue:
            return self._queue.popleft()
        if self._rate and self._rng.random() < self._rate:
            return Fault(self._rng.choice(FAULT_STATUSES), self._rng.choice(FAULT_BODIES))
        return None

    def reset(self) -> None:
        self._queue.clear()
        self._rate = 0.0
        self.delay = 0.0

    @staticmethod
    def _check(status: int, body: str) -> None:
        if status not in FAULT_STATUSES:
            raise ValueError(f"fault status must be one of {FAULT_STATUSES}")
        if body not in FAULT_BODIES:
            raise ValueError(f"fault body must be one of {FAULT_BODIES}")

    @staticmethod
    def error_for(fault: Fault, method: str) -> SheetsApiError:
        if fault.status == 429:
            kind = "Read" if method == "GET" else "Write"
            message = (f"Quota exceeded for quota metric '{kind} requests' and limit '{kind} requests per minute "
                       f"per user' of service 'sheets.googleapis.com' for consumer 'project_number:000000000000'.")
            details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                        "domain": "googleapis.com",
                        "metadata": {"quota_metric": f"sheets.googleapis.com/{kind.lower()}_requests",
                                     "quota_limit": f"{kind}RequestsPerMinutePerUser",
                                     "service": "sheets.googleapis.com", "consumer": "projects/000000000000",
                                     "quota_location": "global", "quota_limit_value": "60"}}]
            return SheetsApiError(429, message, details)
        if fault.status == 500:
            return SheetsApiError(500, "Internal error encountered.")
        return SheetsApiError(503, "The service is currently unavailable.")


def html_error_page(status: int) -> bytes:
    """An HTML error page in the style of Google's front end (what proxies answer under load)."""
    reasons = {404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
               503: "Service Unavailable"}
    reason = reasons.get(status, "Error")
    text = {404: "The requested URL was not found on this server.",
            429: "We're sorry, but you have sent too many requests to us recently. Please try again later.",
            500: "The server encountered an error and could not complete your request. Please try again later.",
            503: "The service you requested is not available at this time. Please try again later."}.get(status, "")
    page = (f"<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error {status} ({reason})!!1</title>\n"
            f"  <p><b>{status}.</b> <ins>That\u2019s an error.</ins>\n  <p>{text} "
            f"<ins>That\u2019s all we know.</ins>\n")
    return page.encode("utf-8")


# =============================================================================================
# Recorded requests, routing and the HTTP server
# =============================================================================================


@dataclass
class RecordedRequest:
    """One request the emulator received (also failed ones: ``failed_status`` is then set).

    ``path`` is the percent-decoded URL path (``/v4/spreadsheets/ID/values/'Sheet1'!A1``);
    ``range`` the decoded A1 range of single-range values endpoints; ``ranges`` the ranges of
    values.batchGet / batchClear / batchUpdate; ``query`` maps each parameter to its value
    (a list when repeated); ``body`` is the decoded JSON body or None; ``status`` the HTTP
    status answered.
    """

    method: str
    path: str
    range: str | None
    ranges: list[str]
    query: dict[str, Any]
    body: Any
    endpoint: str | None = None
    spreadsheet_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    failed_status: int | None = None
    status: int | None = None


@dataclass(frozen=True)
class Route:
    endpoint: str
    spreadsheet_id: str | None = None
    range: str | None = None


class Router:
    """Maps a method and URL path to a Sheets v4 endpoint (None: Google would answer 404)."""

    _SPREADSHEET = re.compile(r"/v4/spreadsheets/([^/:]+)(:batchUpdate)?/?")
    _VALUES_BATCH = re.compile(r"/v4/spreadsheets/([^/:]+)/values:(batchGet|batchUpdate|batchClear)")
    _VALUES = re.compile(r"/v4/spreadsheets/([^/:]+)/values/(.+)")

    @classmethod
    def route(cls, method: str, raw_path: str) -> Route | None:
        if raw_path.rstrip("/") == "/v4/spreadsheets":
            return Route("spreadsheets.create") if method == "POST" else None
        m = cls._VALUES_BATCH.fullmatch(raw_path)
        if m:
            verb = m.group(2)
            wanted = "GET" if verb == "batchGet" else "POST"
            return Route(f"values.{verb}", unquote(m.group(1))) if method == wanted else None
        m = cls._VALUES.fullmatch(raw_path)
        if m:
            raw_range = m.group(2)
            for verb in ("append", "clear"):
                if raw_range.endswith(":" + verb):
                    if method != "POST":
                        return None
                    return Route(f"values.{verb}", unquote(m.group(1)), unquote(raw_range[: -len(verb) - 1]))
            endpoint = {"GET": "values.get", "PUT": "values.update"}.get(method)
            return Route(endpoint, unquote(m.group(1)), unquote(raw_range)) if endpoint else None
        m = cls._SPREADSHEET.fullmatch(raw_path)
        if m:
            if m.group(2):
                return Route("spreadsheets.batchUpdate", unquote(m.group(1))) if method == "POST" else None
            return Route("spreadsheets.get", unquote(m.group(1))) if method == "GET" else None
        return None


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    content_type: str = "application/json; charset=UTF-8"


def _json_ready(value: Any) -> Any:
    """Integral floats as ints, as Google prints them."""
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def _json_answer(status: int, payload: Any, pretty: bool = True) -> HttpAnswer:
    text = json.dumps(_json_ready(payload), ensure_ascii=False, indent=2 if pretty else None)
    return HttpAnswer(status, (text + "\n").encode("utf-8"))


@dataclass
class SheetState:
    """A snapshot of one tab, for assertions in tests (cells keyed by A1 name, e.g. ``"B2"``)."""

    title: str
    sheet_id: int
    row_count: int
    column_count: int
    frozen_rows: int
    frozen_columns: int
    values: list[list[Any]]
    formats: dict[str, dict[str, Any]]
    validations: dict[str, dict[str, Any]]
    notes: dict[str, str]
    protected_ranges: list[dict[str, Any]]
    charts: list[dict[str, Any]]


class SheetsEmulator:
    """The emulator: state, faults, the request log and the HTTP server.  See the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None,
                 require_auth: bool = True, owner_email: str = OWNER_EMAIL) -> None:
        self.host = host
        self.port = port
        self.require_auth = require_auth
        self.owner_email = owner_email
        self.base_url: str | None = None
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._spreadsheets: dict[str, Spreadsheet] = {}
        self._log: list[RecordedRequest] = []
        self._faults = FaultInjector()
        self._values = ValuesService()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> str:
        """Start serving in a background thread; returns the base URL ``http://127.0.0.1:PORT``."""
        if self._server is not None:
            assert self.base_url is not None
            return self.base_url
        self._server = _EmulatorHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="sheets-emulator", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SheetsEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- seeding and direct state access ---------------------------------------------------------
    def create_spreadsheet(self, spreadsheet_id: str, title: str,
                           sheets: Sequence[tuple[str, int, int]] = (("Sheet1", 1000, 26),),
                           private: bool = False) -> str:
        """Seed a spreadsheet; the first tab gets sheetId 0, later tabs random ids like Google's."""
        if not sheets:
            raise ValueError("a spreadsheet needs at least one sheet")
        with self._lock:
            if spreadsheet_id in self._spreadsheets:
                raise ValueError(f"spreadsheet {spreadsheet_id!r} already exists")
            tabs: list[Sheet] = []
            for i, (sheet_title, rows, cols) in enumerate(sheets):
                sheet_id = 0 if i == 0 else self._new_sheet_id({t.sheet_id for t in tabs})
                tabs.append(Sheet({"sheetId": sheet_id, "title": sheet_title, "sheetType": "GRID",
                                   "gridProperties": {"rowCount": rows, "columnCount": cols}}))
            self._spreadsheets[spreadsheet_id] = Spreadsheet(spreadsheet_id, new_spreadsheet_properties(title),
                                                             tabs, private)
        return spreadsheet_id

    def delete_spreadsheet(self, spreadsheet_id: str) -> None:
        """Forget a spreadsheet (as if deleted in Drive): later requests get 404."""
        with self._lock:
            self._spreadsheets.pop(spreadsheet_id, None)

    def set_private(self, spreadsheet_id: str, private: bool = True) -> None:
        """Make requests for this spreadsheet answer 403 PERMISSION_DENIED (not shared with the caller)."""
        with self._lock:
            self._doc(spreadsheet_id).private = private

    def has_spreadsheet(self, spreadsheet_id: str) -> bool:
        with self._lock:
            return spreadsheet_id in self._spreadsheets

    def set_values(self, spreadsheet_id: str, sheet_title: str, rows: Sequence[Sequence[Any]],
                   start: str = "A1", value_input_option: str = "USER_ENTERED") -> None:
        """Type values into a tab directly (no HTTP, not recorded), growing the grid if needed."""
        with self._lock:
            sheet = self._sheet(spreadsheet_id, sheet_title)
            grid = A1.parse_cells(start)
            for r, row in enumerate(rows):
                for c, raw in enumerate(row):
                    pos = (grid.start_row + r, grid.start_col + c)
                    sheet.grid_properties["rowCount"] = max(sheet.row_count, pos[0] + 1)
                    sheet.grid_properties["columnCount"] = max(sheet.column_count, pos[1] + 1)
                    if raw is not None:
                        sheet.write(*pos, InputParser.parse(raw, value_input_option))

    def values(self, spreadsheet_id: str, sheet_title: str) -> list[list[Any]]:
        """The stored grid as entered (numbers as numbers, formulas as ``=...`` text), trimmed."""
        with self._lock:
            return self._sheet(spreadsheet_id, sheet_title).values()

    def sheet_titles(self, spreadsheet_id: str) -> list[str]:
        with self._lock:
            return [s.title for s in self._doc(spreadsheet_id).sheets]

    def sheet_properties(self, spreadsheet_id: str, title: str) -> dict[str, Any]:
        """The tab's SheetProperties as spreadsheets.get shows them (with gridProperties)."""
        with self._lock:
            doc = self._doc(spreadsheet_id)
            sheet = self._sheet(spreadsheet_id, title)
            return sheet.output_properties(doc.index_of(sheet))

    def sheet_state(self, spreadsheet_id: str, title: str) -> SheetState:
        """A snapshot of a tab: values, formats, validations, notes, protected ranges, charts, freezes."""
        with self._lock:
            sheet = self._sheet(spreadsheet_id, title)
            cells = sorted(sheet.cells.items())
            grid = sheet.grid_properties
            return SheetState(
                title=sheet.title, sheet_id=sheet.sheet_id, row_count=sheet.row_count,
                column_count=sheet.column_count, frozen_rows=grid.get("frozenRowCount", 0),
                frozen_columns=grid.get("frozenColumnCount", 0), values=sheet.values(),
                formats={A1.cell(*k): copy.deepcopy(c.format) for k, c in cells if c.format},
                validations={A1.cell(*k): copy.deepcopy(c.validation) for k, c in cells if c.validation},
                notes={A1.cell(*k): c.note for k, c in cells if c.note},
                protected_ranges=copy.deepcopy(sheet.protected_ranges), charts=copy.deepcopy(sheet.charts))

    # -- request log ------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order (a snapshot list)."""
        with self._lock:
            return list(self._log)

    def reset_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # -- faults -----------------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 429, body: str = "json") -> None:
        """The next *n* requests fail with *status* (429, 500 or 503) and a JSON or HTML body."""
        with self._lock:
            self._faults.fail_next(n, status, body)

    def fail_rate(self, p: float, seed: int | None = None) -> None:
        """Each request fails with probability *p* (status and body drawn too); deterministic per seed."""
        with self._lock:
            self._faults.fail_rate(p, seed)

    def latency(self, seconds: float) -> None:
        """Sleep this long before answering each request."""
        with self._lock:
            self._faults.delay = max(0.0, float(seconds))

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.reset()

    # -- clients ----------------------------------------------------------------------------------
    def session(self, token: str = DEFAULT_TOKEN) -> Session:
        """A requests.Session whose calls to sheets.googleapis.com land on this emulator."""
        return emulator_session(self._started_url(), token)

    def client(self, token: str = DEFAULT_TOKEN) -> Any:
        """The real gspread.Client, pointed at this emulator."""
        return emulator_client(self._started_url(), token)

    def _started_url(self) -> str:
        if self.base_url is None:
            raise RuntimeError("start the emulator first (emu.start() or `with SheetsEmulator() as emu:`)")
        return self.base_url

    # -- internals --------------------------------------------------------------------------------
    def _doc(self, spreadsheet_id: str) -> Spreadsheet:
        try:
            return self._spreadsheets[spreadsheet_id]
        except KeyError:
            raise KeyError(f"no spreadsheet {spreadsheet_id!r} in the emulator") from None

    def _sheet(self, spreadsheet_id: str, title: str) -> Sheet:
        sheet = next((s for s in self._doc(spreadsheet_id).sheets if s.title == title), None)
        if sheet is None:
            raise KeyError(f"no sheet {title!r} in spreadsheet {spreadsheet_id!r}")
        return sheet

    def _new_sheet_id(self, taken: set[int]) -> int:
        while True:
            candidate = self._rng.randint(1, 2**31 - 1)
            if candidate not in taken:
                return candidate

    def handle(self, method: str, target: str, headers: Mapping[str, str], raw_body: bytes) -> HttpAnswer:
        """Answer one HTTP request (also usable without the server, e.g. from a test)."""
        url = urlsplit(target)
        route = Router.route(method, url.path)
        query_lists = parse_qs(url.query, keep_blank_values=True)
        record = self._record(method, url.path, route, query_lists, headers, raw_body)
        with self._lock:
            fault = self._faults.draw()
            delay = self._faults.delay
        if delay:
            time.sleep(delay)
        if fault is not None:
            record.failed_status = record.status = fault.status
            if fault.body == "html":
                return HttpAnswer(fault.status, html_error_page(fault.status), "text/html; charset=UTF-8")
            return _json_answer(fault.status, FaultInjector.error_for(fault, method).body())
        pretty = (query_lists.get("prettyPrint") or ["true"])[0].lower() != "false"
        if route is None:
            answer = HttpAnswer(404, html_error_page(404), "text/html; charset=UTF-8")
        else:
            try:
                if self.require_auth and not any(k.lower() == "authorization" for k in headers):
                    raise SheetsApiError.unauthenticated()
                with self._lock:
                    payload = self._serve(route, QueryParams(query_lists, route.endpoint), raw_body)
                answer = _json_answer(200, payload, pretty)
            except SheetsApiError as error:
                answer = _json_answer(error.code, error.body(), pretty)
            except Exception:  # an emulator bug: answer like Google's 500 and show where it broke
                traceback.print_exc(file=sys.stderr)
                answer = _json_answer(500, SheetsApiError(500, "Internal error encountered.").body(), pretty)
        record.status = answer.status
        return answer

    def _record(self, method: str, path: str, route: Route | None, query_lists: Mapping[str, list[str]],
                headers: Mapping[str, str], raw_body: bytes) -> RecordedRequest:
        try:
            body = json.loads(raw_body) if raw_body.strip() else None
        except ValueError:
            body = raw_body.decode("utf-8", "replace")
        ranges: list[str] = list(query_lists.get("ranges", []))
        if route is not None and isinstance(body, dict):
            if route.endpoint == "values.batchClear" and isinstance(body.get("ranges"), list):
                ranges = [str(r) for r in body["ranges"]]
            elif route.endpoint == "values.batchUpdate" and isinstance(body.get("data"), list):
                ranges = [str(d.get("range")) for d in body["data"] if isinstance(d, dict)]
        record = RecordedRequest(
            method=method, path=unquote(path), range=route.range if route else None, ranges=ranges,
            query={k: v[0] if len(v) == 1 else list(v) for k, v in query_lists.items()}, body=body,
            endpoint=route.endpoint if route else None, spreadsheet_id=route.spreadsheet_id if route else None,
            headers=dict(headers))
        with self._lock:
            self._log.append(record)
        return record

    def _serve(self, route: Route, params: QueryParams, raw_body: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw_body) if raw_body.strip() else None
        except ValueError:
            raise SheetsApiError.invalid("Invalid JSON payload received. Unexpected token.") from None
        if route.endpoint == "spreadsheets.create":
            return self._create(body)
        assert route.spreadsheet_id is not None
        doc = self._spreadsheets.get(route.spreadsheet_id)
        if doc is None:
            raise SheetsApiError.not_found()
        if doc.private:
            raise SheetsApiError.permission_denied()
        endpoint = route.endpoint
        if endpoint == "spreadsheets.get":
            return self._get(doc, params)
        if endpoint == "values.get":
            return self._values.get(doc, route.range or "", params)
        if endpoint == "values.batchGet":
            return self._values.batch_get(doc, params)
        # Mutations run on a copy that replaces the stored spreadsheet only if all of it succeeds.
        work = doc.clone()
        if endpoint == "spreadsheets.batchUpdate":
            result = BatchUpdateService(self._rng, self.owner_email).apply(work, body)
        elif endpoint == "values.update":
            result = self._values.update(work, route.range or "", params, body)
        elif endpoint == "values.append":
            result = self._values.append(work, route.range or "", params, body)
        elif endpoint == "values.batchUpdate":
            result = self._values.batch_update(work, body)
        elif endpoint == "values.clear":
            result = self._values.clear(work, route.range or "")
        elif endpoint == "values.batchClear":
            result = self._values.batch_clear(work, body)
        else:  # pragma: no cover - the router knows no other endpoints
            raise SheetsApiError.not_found()
        self._spreadsheets[doc.spreadsheet_id] = work
        return result

    @staticmethod
    def _get(doc: Spreadsheet, params: QueryParams) -> dict[str, Any]:
        fields = params.first("fields")
        mask = None
        if fields:
            try:
                mask = FieldMask.parse(fields)
            except ValueError:
                raise SheetsApiError.invalid("Request contains an invalid argument.") from None
        with_data = mask.covers("sheets", "data") if mask else params.flag("includeGridData")
        result = SpreadsheetView(doc).render(params.all("ranges"), with_data)
        return mask.filter(result) if mask else result

    def _create(self, body: Any) -> dict[str, Any]:
        request = ShapeChecker.clean(body if body is not None else {}, "Spreadsheet", "spreadsheet")
        alphabet = string.ascii_letters + string.digits + "-_"
        spreadsheet_id = request.get("spreadsheetId") or "1" + "".join(self._rng.choice(alphabet) for _ in range(43))
        title = request.get("properties", {}).get("title", "Untitled spreadsheet")
        tabs = [s.get("properties", {}) for s in request.get("sheets", [])] or [{}]
        work = Spreadsheet(spreadsheet_id, new_spreadsheet_properties(title), [])
        service = BatchUpdateService(self._rng, self.owner_email)
        for i, props in enumerate(tabs):
            props = {"sheetId": 0, **props} if i == 0 else props
            ctx = BatchContext(i, "addSheet", self._rng, self.owner_email)
            service.do_add_sheet(work, {"properties": props}, ctx)
        self._spreadsheets[spreadsheet_id] = work
        return SpreadsheetView(work).render([], False)


class _EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: SheetsEmulator) -> None:
        super().__init__(address, _RequestHandler)
        self.emulator = emulator


class _RequestHandler(BaseHTTPRequestHandler):
    """Reads the request, lets the emulator answer, writes the answer (keep-alive HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay per answer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        server = self.server
        assert isinstance(server, _EmulatorHTTPServer)
        answer = server.emulator.handle(self.command, self.path, dict(self.headers.items()), raw)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Vary", "Origin, X-Origin, Referer")
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


# =============================================================================================
# Clients: requests and gspread sessions that talk to the emulator
# =============================================================================================


class SheetsRedirectAdapter(HTTPAdapter):
    """Transport adapter: rewrites ``https://sheets.googleapis.com/...`` to the emulator's base URL."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        assert request.url is not None
        if request.url.startswith(GOOGLE_SHEETS_ORIGIN):
            request.url = self.base_url + request.url[len(GOOGLE_SHEETS_ORIGIN):]
        kwargs["proxies"] = {}
        return super().send(request, **kwargs)


class _OfflineAdapter(HTTPAdapter):
    """Refuses every other https:// URL: a test session must never reach the real Google."""

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        raise requests.ConnectionError(
            f"partnerloop test session: refusing to contact {request.url}; only the Sheets emulator is reachable")


def emulator_session(base_url: str, token: str = DEFAULT_TOKEN) -> Session:
    """A requests.Session for product code under test: Sheets calls go to *base_url*, other HTTPS is refused.

    It sends a static ``Authorization: Bearer <token>`` header (the emulator accepts any token).
    """
    session = Session()
    session.trust_env = False  # no proxies or netrc from the environment
    session.mount("https://", _OfflineAdapter())
    session.mount(GOOGLE_SHEETS_ORIGIN + "/", SheetsRedirectAdapter(base_url))
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def emulator_client(base_url: str, token: str = DEFAULT_TOKEN) -> Any:
    """The real, unmodified gspread.Client using an emulator session (no credentials involved)."""
    import gspread

    return gspread.Client(auth=None, session=emulator_session(base_url, token))  # type: ignore[arg-type]


# =============================================================================================
# Standalone: python -m tests.support.sheets_emulator --port N [--spreadsheet ID]
# =============================================================================================


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run partnerloop's local Google Sheets API v4 emulator.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--spreadsheet", action="append", default=[], metavar="ID",
                        help="seed a blank spreadsheet with this ID (repeatable)")
    parser.add_argument("--title", default="partnerloop emulator", help="title of seeded spreadsheets")
    parser.add_argument("--seed", type=int, default=None, help="seed for generated ids")
    args = parser.parse_args(argv)

    emulator = SheetsEmulator(host=args.host, port=args.port, seed=args.seed)
    for spreadsheet_id in args.spreadsheet:
        emulator.create_spreadsheet(spreadsheet_id, args.title)
    stopped = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    url = emulator.start()
    print(url, flush=True)
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
