"""The xlsx backend: a workbook file on disk (openpyxl), the embedded default.

Every change is a read-modify-write of the whole file under an exclusive lock, saved to a
temporary file in the same folder and then renamed over the workbook, so a crash never leaves
a half-written workbook. A workbook that Excel or LibreOffice has open is refused, since that
program would overwrite the automation's changes when it saves.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import tempfile
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import openpyxl
from openpyxl.chart import LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.styles.numbers import is_date_format
from openpyxl.utils import column_index_from_string, get_column_letter, quote_sheetname, range_boundaries
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.dimensions import ColumnDimension
from openpyxl.worksheet.properties import PageSetupProperties
from openpyxl.worksheet.worksheet import Worksheet

from automations.cells import normalise_header, text
from automations.errors import SheetError
from automations.schema import Column, TabSpec
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

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DCE6F1")
TITLE_FONT = Font(bold=True, size=14)
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
NUMBER_FORMATS = {"int": "0", "decimal": "0.0", "percent": "0%", "date": DATE_FORMAT, "datetime": DATETIME_FORMAT}
DATE_KINDS = {"date": DATE_FORMAT, "datetime": DATETIME_FORMAT}
MIDNIGHT = datetime.min.time()
VALIDATION_ROWS = 5000
# Column widths, in characters (Excel's unit): fitted to the text, never past MAX_WIDTH (a longer
# text is cut off at the next filled cell, as staff see it now: wrapping it would need row heights
# that LibreOffice does not work out itself); SAMPLE_ROWS rows at each end of a tab are what `init` fits to.
MAX_WIDTH = MAX_WIDTH_CHARS
MIN_WIDTH = 6
SAMPLE_ROWS = 500
DEFAULT_WIDTH = 8.43  # a column the file gives no width: Excel's and LibreOffice's default
WRAP = Alignment(wrap_text=True, vertical="top")
HEADER_HEIGHT = 30  # points: two lines of text
CHART_NAME_PREFIX = "partnerloop_chart_"


class XlsxBackend:
    """A workbook on disk; see the module docstring for how writes stay whole."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._batch: Workbook | None = None  # the workbook a batch() is editing

    def location(self) -> str:
        return str(self.path)

    # -- reading -------------------------------------------------------------------------------
    def read(self, titles: Sequence[str]) -> dict[str, Table | None]:
        if self._batch is not None:  # inside batch(): the workbook as this batch has it (and locked)
            return {title: _table(self._batch[title]) if title in self._batch.sheetnames else None
                    for title in titles}
        workbook = self._load(read_only=True)
        try:
            return {title: _table(workbook[title]) if title in workbook.sheetnames else None for title in titles}
        finally:
            workbook.close()

    def tab_titles(self) -> list[str]:
        workbook = self._load(read_only=True)
        try:
            return list(workbook.sheetnames)
        finally:
            workbook.close()

    # -- writing -------------------------------------------------------------------------------
    def write(self, specs: Mapping[str, TabSpec], writes: Sequence[RowWrite]) -> WriteReport:
        if not writes:
            return WriteReport()
        with self._editing() as workbook:
            titles = {w.tab for w in writes}
            tables = {t: _table(workbook[t]) if t in workbook.sheetnames else None for t in titles}
            targets, report = plan_cells({t: v for t, v in tables.items() if v}, specs, writes)
            written: dict[str, dict[int, list[Any]]] = {}
            for title, target in targets:
                cell = workbook[title].cell(target.row, target.col + 1)
                _set(cell, target.value)
                written.setdefault(title, {}).setdefault(target.col + 1, []).append(cell)
            for title, columns in written.items():
                _fit_written(workbook[title], columns)
        return report

    def append(self, title: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self._editing() as workbook:
            if title not in workbook.sheetnames:
                raise SheetError(f"{self.path}: tab {title!r} is missing; run `partnerloop init`")
            sheet = workbook[title]
            last = _last_used_row(sheet)
            written: dict[int, list[Any]] = {}
            for offset, row in enumerate(rows, start=1):
                for col, value in enumerate(row, start=1):
                    cell = sheet.cell(last + offset, col)
                    _set(cell, value)
                    written.setdefault(col, []).append(cell)
            _fit_written(sheet, written)

    def ensure_layout(
        self, tabs: Sequence[tuple[str, TabSpec]], demo: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> list[str]:
        changes: list[str] = []
        creating = not self.path.exists()
        with self._editing(create=creating) as workbook:
            if creating:
                changes.append(f"created workbook {self.path}")
            for title, spec in tabs:
                if title not in workbook.sheetnames:
                    workbook.create_sheet(title)
                    changes.append(f"{title}: created tab")
                sheet = workbook[title]
                header = [text(c.value) for c in sheet[1]] if sheet.max_row >= 1 else []
                while header and not header[-1]:
                    header.pop()
                present = {normalise_header(h) for h in header}
                added = [c.name for c in spec.columns if normalise_header(c.name) not in present]
                for offset, name in enumerate(added):
                    _set(sheet.cell(1, len(header) + offset + 1), name)
                if added and header:
                    changes.append(f"{title}: added column(s) {', '.join(added)}")
                header += added
                _format_header(sheet, spec, header)
                rows = demo.get(title, ())
                if rows:
                    start = _last_used_row(sheet)
                    index = {normalise_header(h): i for i, h in enumerate(header)}
                    for offset, record in enumerate(rows, start=1):
                        for name, value in record.items():
                            _set(sheet.cell(start + offset, index[normalise_header(name)] + 1), value)
                    changes.append(f"{title}: added {len(rows)} sample row(s)")
                _lay_out_columns(sheet, spec, header)
                _set_up_printing(sheet)
            if creating and "Sheet" in workbook.sheetnames and len(workbook.sheetnames) > 1:
                del workbook["Sheet"]
        return changes

    def write_dashboard(self, dashboard: Dashboard) -> None:
        with self._editing() as workbook:
            for name in [n for n in workbook.defined_names if n.startswith(CHART_NAME_PREFIX)]:
                del workbook.defined_names[name]
            if dashboard.title in workbook.sheetnames:
                position = workbook.sheetnames.index(dashboard.title)
                del workbook[dashboard.title]  # a rewrite never leaves stale cells or charts behind
                sheet = workbook.create_sheet(dashboard.title, position)
            else:
                sheet = workbook.create_sheet(dashboard.title, 0)
            _draw_dashboard(sheet, dashboard)

    # -- the file ------------------------------------------------------------------------------
    def _load(self, read_only: bool) -> Workbook:
        if not self.path.exists():
            raise SheetError(f"{self.path}: workbook not found; run `partnerloop init` to create it")
        try:
            return openpyxl.load_workbook(self.path, read_only=read_only, data_only=False)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a readable xlsx workbook"
            raise SheetError(f"{self.path}: cannot open the workbook ({reason})") from None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Every change inside is made on one loaded workbook, saved once at the end (or not at all)."""
        if self._batch is not None:
            yield
            return
        with self._editing() as workbook:
            self._batch = workbook
            try:
                yield
            finally:
                self._batch = None

    @contextlib.contextmanager
    def _editing(self, create: bool = False) -> Iterator[Workbook]:
        """Load under an exclusive lock, let the caller change the workbook, then replace the file whole."""
        if self._batch is not None:
            yield self._batch  # inside batch(): saved when the batch ends
            return
        self._refuse_if_open_elsewhere()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(f".{self.path.name}.partnerloop-lock")
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            workbook = openpyxl.Workbook() if create else self._load(read_only=False)
            yield workbook
            _restore_charts(workbook)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}-", suffix=".xlsx", dir=self.path.parent)
            os.close(fd)
            try:
                workbook.save(tmp)
                if self.path.exists():
                    os.chmod(tmp, self.path.stat().st_mode & 0o777)
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise SheetError(f"{self.path}: cannot save the workbook ({exc.strerror}); nothing was changed") from None

    def ensure_writable(self) -> None:
        """Refuse, before anything is sent, a workbook that is open elsewhere or read-only."""
        self._refuse_if_open_elsewhere()
        if not self.path.exists():
            raise SheetError(f"{self.path}: workbook not found; run `partnerloop init` to create it")
        for what, place in (("workbook", self.path), ("folder holding the workbook", self.path.parent)):
            if not os.access(place, os.W_OK) or not place.stat().st_mode & 0o222:
                raise SheetError(f"{self.path}: the {what} is read-only, so statuses could not be written back; "
                                 f"make {place} writable (file properties, or chmod u+w) and run again")

    def _refuse_if_open_elsewhere(self) -> None:
        for program, lock_name in (("Excel", f"~${self.path.name}"), ("LibreOffice", f".~lock.{self.path.name}#")):
            if (self.path.parent / lock_name).exists():
                raise SheetError(
                    f"{self.path}: the workbook is open in another program ({program}: {lock_name} exists); "
                    "close it there and run again"
                )


def _table(sheet: Worksheet) -> Table:
    return Table.from_grid(sheet.title, [list(r) for r in sheet.iter_rows(values_only=True)])


def _set(cell: Any, value: Any) -> None:
    """Store a value as data: text starting with '=' stays text, dates get a date format.

    A date format staff gave the cell is kept; only a cell without one (or with the plain date
    format partnerloop gives, when a time of day now needs showing) gets partnerloop's.
    """
    value = as_cell(value)
    before = cell.number_format  # openpyxl gives a date its own format as it is stored
    cell.value = value
    if isinstance(value, str) and value.startswith("="):
        cell.data_type = "s"
    elif isinstance(value, (date, datetime)):
        if isinstance(value, datetime) and before == DATE_FORMAT and value.time() != MIDNIGHT:
            cell.number_format = DATETIME_FORMAT  # partnerloop's date format, on a time of day
        elif is_date_format(before):
            cell.number_format = before  # staff's (or partnerloop's) date format
        else:
            cell.number_format = DATETIME_FORMAT if isinstance(value, datetime) else DATE_FORMAT


def _last_used_row(sheet: Worksheet) -> int:
    for row in range(sheet.max_row, 0, -1):
        if any(c.value not in (None, "") for c in sheet[row]):
            return row
    return 0


def _format_header(sheet: Worksheet, spec: TabSpec, header: list[str]) -> None:
    """Bold, shaded, frozen header (two lines high, unless staff set its height); dropdowns for choice columns."""
    sheet.freeze_panes = "A2"
    if sheet.row_dimensions[1].height is None:
        sheet.row_dimensions[1].height = HEADER_HEIGHT
    existing = {str(dv.sqref) for dv in sheet.data_validations.dataValidation}
    for i, name in enumerate(header, start=1):
        cell = sheet.cell(1, i)
        cell.font = HEADER_FONT
        cell.fill = HEADER_FILL
        _wrap(cell)  # a long header takes two lines rather than widening its column
        column = _spec_column(spec, name)
        if column is None:
            continue  # a staff column: left as it is
        letter = get_column_letter(i)
        area = f"{letter}2:{letter}{VALIDATION_ROWS}"
        # An Excel list holds no comma inside a choice ("Name, contact and goal"): such a column gets no dropdown.
        if column.choices and area not in existing and not any("," in c for c in column.choices):
            quoted = ",".join(column.choices)
            validation = DataValidation(type="list", formula1=f'"{quoted}"', allow_blank=True)
            validation.error = f"Choose one of: {', '.join(column.choices)}"
            validation.errorTitle = column.name
            validation.add(area)
            sheet.add_data_validation(validation)


def _spec_column(spec: TabSpec, header: str) -> Column | None:
    key = normalise_header(header)
    return next((c for c in spec.columns if normalise_header(c.name) == key), None)


# -- column widths, date formats and printing of the data tabs ---------------------------------------


def _lay_out_columns(sheet: Worksheet, spec: TabSpec, header: list[str]) -> None:
    """At `init`: every column as wide as its header and the text of a sample of rows (at most
    MAX_WIDTH: a longer text shows its start); date and date-time formats on partnerloop's date
    columns and on their date cells.

    Only ever widens, and never touches a hidden column; a format staff set is kept. Widths are
    fitted to the first and last SAMPLE_ROWS rows, so a tab of 100,000 rows costs what one of
    1,000 does; the cells each later run writes widen their columns as they are written.
    """
    if not header:
        return
    last = sheet.max_row
    blocks = [(2, last)] if last <= 2 * SAMPLE_ROWS + 1 else [(2, SAMPLE_ROWS + 1), (last - SAMPLE_ROWS + 1, last)]
    widths = [_header_width(name) for name in header]
    for first, final in blocks:
        for row in sheet.iter_rows(min_row=first, max_row=final, max_col=len(header)):
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], _cell_width(cell))
    for i, name in enumerate(header, start=1):
        if _is_hidden(sheet, i):
            continue
        column = _spec_column(spec, name)
        if column is not None and column.kind in DATE_KINDS:  # wide enough for the dates to come, too
            widths[i - 1] = max(widths[i - 1], DATE_CHARS[column.kind] + 2)
        _widen(sheet, i, widths[i - 1])
        if column is not None and column.kind in DATE_KINDS:
            _format_date_column(sheet, i, DATE_KINDS[column.kind])


def _fit_written(sheet: Worksheet, columns: Mapping[int, Sequence[Any]]) -> None:
    """After a write: widen each column written to the longest of its header and the cells written."""
    for col, cells in columns.items():
        if _is_hidden(sheet, col):
            continue
        _widen(sheet, col, max([*(_cell_width(c) for c in cells), _header_width(sheet.cell(1, col).value)]))


def _format_date_column(sheet: Worksheet, col: int, date_format: str) -> None:
    """The column's own format (what a new cell typed there gets), and its date cells' format, where
    staff set none (or partnerloop's date format where the column now holds date-times)."""
    ours = {"General", DATE_FORMAT, date_format}
    dimension = _own_dimension(sheet, col)
    if dimension.number_format in ours:
        dimension.number_format = date_format
    for (cell,) in sheet.iter_rows(min_row=2, min_col=col, max_col=col):
        if isinstance(cell.value, date) and cell.number_format in ours:
            cell.number_format = date_format


def _set_up_printing(sheet: Worksheet) -> None:
    """Printed or exported to PDF: landscape, one page wide and as long as it takes, the header on
    every page, grid lines between the cells."""
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight = 1, 0
    if sheet.sheet_properties.pageSetUpPr is None:
        sheet.sheet_properties.pageSetUpPr = PageSetupProperties()
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.print_title_rows = "1:1"
    sheet.print_options.gridLines = True


def _header_width(name: Any) -> float:
    """A header's width on at most two lines, in bold (about a tenth wider), with room either side."""
    return header_chars(name) * 1.1 + 2


def _cell_width(cell: Any) -> float:
    """The width a cell's value needs, with a little room either side; a date as its format shows it."""
    value = cell.value
    if isinstance(value, (date, datetime)):
        shown = cell.number_format if cell.number_format != "General" else DATETIME_FORMAT
        return len(shown.replace("\\", "").replace('"', "")) + 2
    width = text_chars(value)
    return width + 2 if width else 0


def _wrap(cell: Any) -> None:
    """Let a cell's text wrap onto more lines, unless staff aligned it themselves."""
    alignment = cell.alignment
    if not alignment.wrap_text and alignment.horizontal is None and alignment.vertical is None:
        cell.alignment = WRAP


def _dimension_covering(sheet: Worksheet, col: int) -> tuple[str, ColumnDimension] | None:
    """The column dimension (its key and itself) that covers column *col*, if the file gives one."""
    for key, dimension in sheet.column_dimensions.items():
        low = dimension.min or column_index_from_string(key)
        high = dimension.max or low
        if low <= col <= high:
            return key, dimension
    return None


def _is_hidden(sheet: Worksheet, col: int) -> bool:
    found = _dimension_covering(sheet, col)
    return found is not None and bool(found[1].hidden or (found[1].customWidth and found[1].width == 0))


def _width(sheet: Worksheet, col: int) -> float:
    found = _dimension_covering(sheet, col)
    if found is not None and found[1].customWidth:
        return float(found[1].width)
    return float(sheet.sheet_format.defaultColWidth or DEFAULT_WIDTH)


def _own_dimension(sheet: Worksheet, col: int) -> ColumnDimension:
    """The dimension of column *col* alone: one spanning several columns (staff set B:D) is split
    into one per column first, each keeping the range's width, style and outline."""
    dimensions = sheet.column_dimensions
    letter = get_column_letter(col)
    found = _dimension_covering(sheet, col)
    if found is None:
        dimension = ColumnDimension(sheet, index=letter, width=_width(sheet, col), min=col, max=col)
        dimensions[letter] = dimension
        return dimension
    key, spanning = found
    low, high = spanning.min or col, spanning.max or col
    if low == high:
        return spanning
    del dimensions[key]
    for i in range(low, high + 1):
        part = ColumnDimension(sheet, index=get_column_letter(i), width=spanning.width, bestFit=spanning.bestFit,
                               hidden=spanning.hidden, outlineLevel=spanning.outlineLevel,
                               collapsed=spanning.collapsed, min=i, max=i)
        part._style = copy.copy(spanning._style)  # type: ignore[attr-defined]  # its style, whole
        dimensions[part.index] = part
    return dimensions[letter]


def _widen(sheet: Worksheet, col: int, needed: float) -> None:
    """Make column *col* at least *needed* characters wide (at most MAX_WIDTH); never narrower."""
    needed = round(min(max(needed, MIN_WIDTH), MAX_WIDTH), 1)
    if _width(sheet, col) < needed:
        _own_dimension(sheet, col).width = needed


def _draw_dashboard(sheet: Worksheet, dashboard: Dashboard) -> None:
    """Title, "Updated" time and each block where `Dashboard.layout` puts it; a chart beside a charted block."""
    from openpyxl.worksheet.pagebreak import Break

    sheet.cell(1, 1, dashboard.title).font = TITLE_FONT
    sheet.cell(2, 1, "Updated").font = HEADER_FONT
    _set(sheet.cell(2, 2), dashboard.updated.replace(tzinfo=None, microsecond=0))
    sheet.freeze_panes = f"A{dashboard.frozen_rows + 1}"
    sheet.page_setup.orientation = "landscape"  # printed or exported: as wide as one page, as long as it takes
    sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight = 1, 0
    if sheet.sheet_properties.pageSetUpPr is not None:
        sheet.sheet_properties.pageSetUpPr.fitToPage = True
    for col in range(1, max(dashboard.width, 14) + 1):
        sheet.column_dimensions[get_column_letter(col)].width = DASHBOARD_WIDTHS.get(col, 12)
    workbook = sheet.parent
    assert workbook is not None
    charts = 0
    for place in dashboard.layout():
        block = place.block
        if block.new_page and place.title_row > 1:
            sheet.row_breaks.append(Break(id=place.title_row - 1))
        sheet.cell(place.title_row, 1, block.title).font = BLOCK_TITLE_FONT
        for col, name in enumerate(block.header, start=1):
            cell = sheet.cell(place.header_row, col, name)
            cell.font = HEADER_FONT
            cell.fill = HEADER_FILL
            cell.alignment = HEADER_WRAP
            if len(name) >= DASHBOARD_WIDTHS.get(col, 12):
                sheet.row_dimensions[place.header_row].height = 30  # two lines
        for i, values in enumerate(block.rows):
            for col, value in enumerate(values):
                if value is None or value == "":
                    continue  # a blank cell: nothing to divide by, or not known
                target = sheet.cell(place.header_row + 1 + i, col + 1)
                _set(target, value.replace(tzinfo=None) if isinstance(value, datetime) else value)
                fmt = DASHBOARD_FORMATS.get(block.format_of(i, col))
                if fmt:
                    target.number_format = fmt
                if col and isinstance(value, str):
                    target.alignment = TEXT_INDENT  # apart from a number just left of it
        if block.chart and block.rows:
            charts += 1
            area = f"$A${place.header_row}:${get_column_letter(len(block.header))}${place.last_row}"
            name = f"{CHART_NAME_PREFIX}{charts}"
            workbook.defined_names[name] = DefinedName(
                name, attr_text=f"{quote_sheetname(sheet.title)}!{area}", comment=block.chart)
            _add_chart(sheet, block.chart, place.header_row, place.last_row, len(block.header))


BLOCK_TITLE_FONT = Font(bold=True, size=12)
HEADER_WRAP = openpyxl.styles.Alignment(wrap_text=True, vertical="top")
TEXT_INDENT = openpyxl.styles.Alignment(horizontal="left", indent=1)
DASHBOARD_WIDTHS = {1: 34, 2: 17, 3: 24}  # labels and names; date-times, row IDs; businesses; the rest numbers (12)
DASHBOARD_FORMATS = {**NUMBER_FORMATS, "month": "mmm yyyy"}
CHART_HEIGHT_CM = Dashboard.chart_rows * 0.5  # a default row is about 0.53 cm: the chart stays in its rows


def _add_chart(sheet: Worksheet, title: str, header_row: int, last_row: int, columns: int) -> None:
    """A line chart of a block: one series per column after the first, categories from the first."""
    chart = LineChart()
    chart.title = title
    chart.height, chart.width = CHART_HEIGHT_CM, 15
    chart.y_axis.title = "Count"
    chart.y_axis.delete = False
    chart.x_axis.delete = False
    chart.x_axis.number_format = DASHBOARD_FORMATS["month"]
    if chart.legend is not None:
        chart.legend.position = "b"
    data = Reference(sheet, min_col=2, max_col=columns, min_row=header_row, max_row=last_row)
    chart.add_data(data, titles_from_data=True)
    chart.set_categories(Reference(sheet, min_col=1, min_row=header_row + 1, max_row=last_row))
    for series in chart.series:
        series.smooth = False
        series.marker.symbol = "circle"
        series.marker.size = 5
    sheet.add_chart(chart, f"{get_column_letter(columns + 2)}{header_row}")


def _restore_charts(workbook: Workbook) -> None:
    """openpyxl drops charts when it loads a file: draw the Dashboard's again from their defined names."""
    bare = {ws.title for ws in workbook.worksheets if not ws._charts}  # type: ignore[attr-defined]  # not drawn yet
    for name, defined in sorted(workbook.defined_names.items()):
        if not name.startswith(CHART_NAME_PREFIX):
            continue
        for title, area in defined.destinations:
            if title not in bare:
                continue
            sheet = workbook[title]
            min_col, min_row, max_col, max_row = range_boundaries(area.replace("$", ""))
            assert min_col is not None and min_row is not None and max_col is not None and max_row is not None
            chart_title = defined.comment or text(sheet.cell(min_row - 1, 1).value)
            _add_chart(sheet, chart_title, min_row, max_row, max_col - min_col + 1)
