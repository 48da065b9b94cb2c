"""The Dashboard tab as Google Sheets batchUpdate requests: one sheet, one updateCells, one chart per charted block.

An existing Dashboard is rewritten in place: its charts removed and every cell cleared, then
filled again, in the same batchUpdate - never deleted, so formulas on other tabs that point at
it keep working. A rewrite is one metadata request plus one batchUpdate whatever the number of
rows, and no cell of a longer earlier Dashboard survives. The layout is `Dashboard.layout`, the
same as the xlsx tab.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from automations.sheets.base import Dashboard, DashboardBlock, PlacedBlock

NUMBER_FORMATS: dict[str, dict[str, str]] = {
    "int": {"type": "NUMBER", "pattern": "0"},
    "decimal": {"type": "NUMBER", "pattern": "0.0"},
    "percent": {"type": "PERCENT", "pattern": "0%"},
    "date": {"type": "DATE", "pattern": "yyyy-mm-dd"},
    "datetime": {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm"},
    "month": {"type": "DATE", "pattern": "mmm yyyy"},
}
HEADER_FILL = {"red": 0.86, "green": 0.9, "blue": 0.95}  # as the other tabs' headers
TITLE = {"textFormat": {"bold": True, "fontSize": 14}}
BLOCK_TITLE = {"textFormat": {"bold": True, "fontSize": 12}}
HEADER = {"textFormat": {"bold": True}, "backgroundColor": HEADER_FILL, "wrapStrategy": "WRAP",
          "verticalAlignment": "TOP"}
SPARE_ROWS = 20  # room below the last block, so staff notes under it need no grid change
CHART_PIXELS = (640, Dashboard.chart_rows * 21 - 12)  # width, height: within the rows kept beside the block


def dashboard_requests(sheet_id: int, dashboard: Dashboard, raw_value: Callable[[Any], Any],
                       index: int = 0, old: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The tab (added, or the *old* one's metadata emptied in place), one updateCells with every value and
    format, column A sized to fit, an addChart per chart."""
    placed = dashboard.layout()
    grid: list[list[dict[str, Any]]] = [[] for _ in range(dashboard.height)]
    grid[0] = [_cell(dashboard.title, raw_value, TITLE)]
    grid[1] = [_cell("Updated", raw_value, {"textFormat": {"bold": True}}),
               _cell(dashboard.updated.replace(microsecond=0), raw_value, {"numberFormat": NUMBER_FORMATS["datetime"]})]
    for place in placed:
        _place_block(grid, place, raw_value)
    requests: list[dict[str, Any]] = _emptied(sheet_id, dashboard, old) if old else [{"addSheet": {"properties": {
        "sheetId": sheet_id, "title": dashboard.title, "index": index,
        "gridProperties": {"rowCount": dashboard.height + SPARE_ROWS, "columnCount": max(26, dashboard.width),
                           "frozenRowCount": dashboard.frozen_rows}}}}]
    requests.append({"updateCells": {"start": {"sheetId": sheet_id, "rowIndex": 0, "columnIndex": 0},
                                      "rows": [{"values": row} for row in grid],
                                      "fields": "userEnteredValue,userEnteredFormat"}})
    requests.append({"autoResizeDimensions": {"dimensions": {  # labels and names: other columns keep their width
        "sheetId": sheet_id, "dimension": "COLUMNS", "startIndex": 0, "endIndex": 1}}})
    requests += [_chart(sheet_id, place) for place in placed if place.block.chart and place.block.rows]
    return requests


def _emptied(sheet_id: int, dashboard: Dashboard, old: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The existing tab made blank and big enough: its charts deleted, every cell cleared, the grid grown."""
    grid = old["properties"].get("gridProperties", {})
    rows = max(grid.get("rowCount", 0), dashboard.height + SPARE_ROWS)
    columns = max(grid.get("columnCount", 0), 26, dashboard.width)
    return [
        *({"deleteEmbeddedObject": {"objectId": chart["chartId"]}} for chart in old.get("charts", [])),
        {"updateSheetProperties": {"properties": {"sheetId": sheet_id, "gridProperties": {
            "rowCount": rows, "columnCount": columns, "frozenRowCount": dashboard.frozen_rows}},
            "fields": "gridProperties(rowCount,columnCount,frozenRowCount)"}},
        {"updateCells": {"range": {"sheetId": sheet_id}, "fields": "userEnteredValue,userEnteredFormat"}},
    ]


def _place_block(grid: list[list[dict[str, Any]]], place: PlacedBlock, raw_value: Callable[[Any], Any]) -> None:
    block = place.block
    grid[place.title_row - 1] = [_cell(block.title, raw_value, BLOCK_TITLE)]
    grid[place.header_row - 1] = [_cell(name, raw_value, HEADER) for name in block.header]
    for i, values in enumerate(block.rows):
        grid[place.header_row + i] = [_cell(value, raw_value, _format(block, i, col)) for col, value in enumerate(values)]


def _format(block: DashboardBlock, row: int, col: int) -> dict[str, Any] | None:
    fmt = NUMBER_FORMATS.get(block.format_of(row, col))
    return {"numberFormat": fmt} if fmt else None


def _cell(value: Any, raw_value: Callable[[Any], Any], fmt: dict[str, Any] | None = None) -> dict[str, Any]:
    """CellData for one value: dates as serial numbers (so they are real dates), text always as text."""
    cell: dict[str, Any] = {}
    if isinstance(value, (date, datetime)):
        value = raw_value(value.replace(tzinfo=None) if isinstance(value, datetime) else value)
    if isinstance(value, bool):
        cell["userEnteredValue"] = {"boolValue": value}
    elif isinstance(value, (int, float)):
        cell["userEnteredValue"] = {"numberValue": value}
    elif value is not None and value != "":
        cell["userEnteredValue"] = {"stringValue": str(value)}  # never a formula: a cell starting "=" stays text
    if fmt:
        cell["userEnteredFormat"] = fmt
    return cell


def _chart(sheet_id: int, place: PlacedBlock) -> dict[str, Any]:
    """A line chart of a block: the first column as the domain, one series per other column."""
    block = place.block

    def column(col: int) -> dict[str, Any]:
        return {"sourceRange": {"sources": [{
            "sheetId": sheet_id, "startRowIndex": place.header_row - 1, "endRowIndex": place.last_row,
            "startColumnIndex": col, "endColumnIndex": col + 1}]}}

    width, height = CHART_PIXELS
    return {"addChart": {"chart": {
        "spec": {
            "title": block.chart,
            "basicChart": {
                "chartType": "LINE",
                "legendPosition": "BOTTOM_LEGEND",
                "headerCount": 1,
                "axis": [{"position": "BOTTOM_AXIS", "title": block.header[0]},
                         {"position": "LEFT_AXIS", "title": "Count"}],
                "domains": [{"domain": column(0)}],
                "series": [{"series": column(col), "targetAxis": "LEFT_AXIS"} for col in range(1, len(block.header))],
            },
        },
        "position": {"overlayPosition": {
            "anchorCell": {"sheetId": sheet_id, "rowIndex": place.header_row - 1, "columnIndex": len(block.header) + 1},
            "widthPixels": width, "heightPixels": height}},
    }}}
