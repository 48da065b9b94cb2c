"""The spreadsheet interface shared by the xlsx and Google Sheets backends.

A backend reads whole tabs into `Table`s and writes `RowWrite`s. Writes address rows by their
ID (never by row number): just before writing, the backend re-reads the tabs and `plan_cells`
finds each row's *current* position, so rows that staff sorted, inserted or deleted between the
read and the write cannot receive another row's status. Rows still without an ID are found by
their content (`fingerprint`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar, Iterable, Mapping, Protocol, Sequence

from automations.cells import is_blank, normalise_header, one_line, same_value, text
from automations.schema import TabSpec


@dataclass(frozen=True)
class SheetRow:
    """One non-blank row as read: its 1-based row number then, and its raw cell values."""

    number: int
    values: tuple[Any, ...]


@dataclass
class Table:
    """One tab as read: the header row, a column index by normalised header, the non-blank rows."""

    title: str
    header: list[str]
    rows: list[SheetRow]
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.index:
            for i, name in enumerate(self.header):
                key = normalise_header(name)
                if key and key not in self.index:  # the first of duplicate headers wins
                    self.index[key] = i

    @classmethod
    def from_grid(cls, title: str, grid: Sequence[Sequence[Any]]) -> Table:
        """Build from a grid of values whose first row is the header; blank rows are skipped."""
        header = [text(v) for v in grid[0]] if grid else []
        width = len(header)
        rows = []
        for number, values in enumerate(grid[1:], start=2):
            if all(is_blank(v) for v in values):
                continue
            padded = tuple(values[:width]) + (None,) * (width - len(values))
            rows.append(SheetRow(number, padded))
        return cls(title, header, rows)

    def has(self, column: str) -> bool:
        return normalise_header(column) in self.index

    def get(self, row: SheetRow, column: str) -> Any:
        i = self.index.get(normalise_header(column))
        return None if i is None or i >= len(row.values) else row.values[i]

    def missing(self, columns: Iterable[str]) -> list[str]:
        return [c for c in columns if not self.has(c)]


def fingerprint(values: Sequence[Any]) -> tuple[str, ...]:
    """A row's content as comparable text, trailing blanks ignored: how rows without an ID are found again."""
    cells = [text(v) for v in values]
    while cells and not cells[-1]:
        cells.pop()
    return tuple(cells)


@dataclass(frozen=True)
class RowWrite:
    """Cells to write on one row, addressed by its ID; or by *match* (its content when read) if it has none yet."""

    tab: str
    row_id: str
    values: Mapping[str, Any]
    match: tuple[str, ...] | None = None
    number: int | None = None  # the row number when read: which of identical rows is meant
    # column -> the value the run read: such a cell is written only while it still holds that value
    expected: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Conflict:
    """A cell staff changed since the run read it: the write left it as staff wrote it."""

    tab: str
    row_id: str
    column: str

    def __str__(self) -> str:
        return f"{self.tab} {self.row_id}: {self.column} was changed in the sheet since the run read it; left as it is"


@dataclass(frozen=True)
class CellTarget:
    row: int  # 1-based
    col: int  # 0-based
    value: Any


@dataclass
class WriteReport:
    """What a write did: cells written, and the rows or columns it could not find (each a sentence)."""

    cells: int = 0
    lost: list[str] = field(default_factory=list)
    lost_rows: set[tuple[str, str]] = field(default_factory=set)  # (tab, row ID) of rows not found
    conflicts: list[Conflict] = field(default_factory=list)  # cells left alone: staff changed them since the read


def plan_cells(
    tables: Mapping[str, Table], specs: Mapping[str, TabSpec], writes: Sequence[RowWrite]
) -> tuple[list[tuple[str, CellTarget]], WriteReport]:
    """Turn row writes into cell targets on the tabs as they are now.

    A column in a write's `expected` is written only while the cell still holds that value
    (compare-and-set); otherwise it becomes a `Conflict` in the report and the staff value stays.
    """
    report = WriteReport()
    targets: list[tuple[str, CellTarget]] = []
    positions: dict[str, dict[str, int]] = {}
    by_content: dict[str, dict[tuple[str, ...], list[int]]] = {}
    taken: dict[tuple[str, tuple[str, ...], Any], int] = {}  # identical rows: each write gets its own
    rows_read: dict[str, dict[int, SheetRow]] = {}
    for write in writes:
        table = tables.get(write.tab)
        spec = specs[write.tab]
        if table is None:
            report.lost.append(f"{write.tab}: tab is missing; run `partnerloop init`")
            continue
        if write.tab not in positions:
            positions[write.tab], by_content[write.tab] = _row_positions(table, spec)
        if write.match is not None:
            found = by_content[write.tab].get(write.match, [])
            number = _pick(found, write, taken)
            if number is None and write.number is not None and _id_at(table, spec, write.number) == write.row_id:
                number = write.number  # staff edited the row meanwhile, but it is where it was, with that ID
        else:
            number = positions[write.tab].get(write.row_id)
        if number is None:
            report.lost.append(f"{write.tab} {write.row_id}: row not found (deleted or its ID changed); not written")
            report.lost_rows.add((write.tab, write.row_id))
            continue
        if write.tab not in rows_read:
            rows_read[write.tab] = {row.number: row for row in table.rows}
        current = rows_read[write.tab].get(number)
        for column, value in write.values.items():
            col = table.index.get(normalise_header(column))
            if col is None:
                report.lost.append(f"{write.tab}: column {column!r} is missing; run `partnerloop init`")
                continue
            if write.expected is not None and column in write.expected:
                now = current.values[col] if current is not None and col < len(current.values) else None
                if not same_value(now, write.expected[column]):
                    report.conflicts.append(Conflict(write.tab, write.row_id, column))
                    continue
            targets.append((write.tab, CellTarget(number, col, value)))
    report.cells = len(targets)
    report.lost = list(dict.fromkeys(report.lost))
    return targets, report


def _pick(found: list[int], write: RowWrite, taken: dict[tuple[str, tuple[str, ...], Any], int]) -> int | None:
    """The row a content-addressed write means: the only match, or among identical rows the one read there."""
    if len(found) <= 1:
        return found[0] if found else None
    key = (write.tab, write.match or (), write.number if write.number is not None else write.row_id)
    if key in taken:
        return taken[key]
    used = {n for (tab, match, _), n in taken.items() if tab == write.tab and match == write.match}
    free = [n for n in found if n not in used]
    number = write.number if write.number in free else (free[0] if free else None)
    if number is not None:
        taken[key] = number
    return number


def _id_at(table: Table, spec: TabSpec, number: int) -> str:
    """The ID cell of row *number* as the table holds it now ("" when there is no such row)."""
    row = next((r for r in table.rows if r.number == number), None)
    return one_line(table.get(row, spec.id_column)) if row is not None and spec.id_column else ""


def _row_positions(table: Table, spec: TabSpec) -> tuple[dict[str, int], dict[tuple[str, ...], list[int]]]:
    ids: dict[str, int] = {}
    content: dict[tuple[str, ...], list[int]] = {}
    id_col = table.index.get(normalise_header(spec.id_column)) if spec.id_column else None
    for row in table.rows:
        row_id = one_line(row.values[id_col]) if id_col is not None and id_col < len(row.values) else ""
        if row_id:
            ids.setdefault(row_id, row.number)
        content.setdefault(fingerprint(row.values), []).append(row.number)
    return ids, content


@dataclass(frozen=True)
class DashboardBlock:
    """A titled block of the Dashboard: rows of real values, with a number format per column."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    formats: tuple[str, ...] = ()  # per column: "", "int", "decimal", "percent", "date", "datetime", "month"
    chart: str = ""  # "" or a chart title: a line/column chart of this block's rows
    row_formats: tuple[str, ...] = ()  # per row, for every cell after the first (rows that are measures: KPIs)
    new_page: bool = False  # printed or exported, the block starts a new page (a long table after the summary)

    def format_of(self, row: int, col: int) -> str:
        """The number format of one cell (0-based within the rows): the row's, else the column's."""
        if col > 0 and row < len(self.row_formats) and self.row_formats[row]:
            return self.row_formats[row]
        return self.formats[col] if col < len(self.formats) else ""


@dataclass(frozen=True)
class PlacedBlock:
    """Where a block lands on the Dashboard tab (1-based rows), the same on both backends."""

    block: DashboardBlock
    title_row: int
    header_row: int
    last_row: int  # the last data row; the header row when the block has no rows


@dataclass(frozen=True)
class Dashboard:
    title: str
    updated: datetime
    blocks: tuple[DashboardBlock, ...]

    frozen_rows: ClassVar[int] = 2  # the title and the "Updated" line stay in view
    chart_rows: ClassVar[int] = 16  # rows kept free beside a charted block, so its chart overlaps no other block

    def layout(self) -> list[PlacedBlock]:
        """Title on row 1, "Updated" on row 2, then each block (title, header, rows) after a blank row."""
        placed = []
        row = self.frozen_rows + 2
        for block in self.blocks:
            last = row + 1 + len(block.rows)
            placed.append(PlacedBlock(block, row, row + 1, last))
            bottom = max(last, row + self.chart_rows) if block.chart else last
            row = bottom + 2
        return placed

    @property
    def width(self) -> int:
        """Columns used, a chart beside its block included (about 8 columns wide)."""
        return max([2, *(len(b.header) + (9 if b.chart else 0) for b in self.blocks)])

    @property
    def height(self) -> int:
        placed = self.layout()
        if not placed:
            return self.frozen_rows
        last = placed[-1]
        return max(last.last_row, last.header_row + self.chart_rows if last.block.chart else 0)


class Backend(Protocol):
    """What every spreadsheet backend offers; jobs and commands use only this."""

    def read(self, titles: Sequence[str]) -> dict[str, Table | None]:
        """Read whole tabs in one request; a missing tab maps to None."""

    def tab_titles(self) -> list[str]:
        """Every tab's title, in order (to name a tab staff renamed)."""

    def ensure_writable(self) -> None:
        """Raise SheetError when a write-back could not follow (an xlsx open elsewhere or read-only)."""

    def write(self, specs: Mapping[str, TabSpec], writes: Sequence[RowWrite]) -> WriteReport:
        """Re-resolve rows by ID and write every cell in one request, as raw values."""

    def append(self, title: str, rows: Sequence[Sequence[Any]]) -> None:
        """Append rows under the last row of a tab in one request."""

    def ensure_layout(self, tabs: Sequence[tuple[str, TabSpec]], demo: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
        """Create missing tabs and columns, header formatting, dropdowns; add demo rows. Returns the changes."""

    def write_dashboard(self, dashboard: Dashboard) -> None:
        """Replace the Dashboard tab's contents (values, formats, chart)."""

    def location(self) -> str:
        """Where the spreadsheet is, for people: a file path or a URL."""

    def batch(self) -> AbstractContextManager[None]:
        """Group the writes inside into as few saves as the backend allows (the xlsx file: one)."""


# Column widths, the same on both backends: as wide as the longest text, never past MAX_WIDTH_CHARS
# characters; a date as wide as "2026-11-27", a date-time as "2026-11-27 09:30".
MAX_WIDTH_CHARS = 50
DATE_CHARS = {"date": 10, "datetime": 16}


def text_chars(value: Any) -> int:
    """Characters the longest line of *value* takes as text (0 for a blank)."""
    if value is None or value == "":
        return 0
    return max((len(line) for line in str(value).splitlines()), default=0)


def header_chars(name: Any) -> int:
    """Characters a header needs on at most two lines (headers wrap rather than widen their column)."""
    words = text(name).split()
    if not words:
        return 0
    for width in range(max(len(w) for w in words), len(" ".join(words)) + 1):
        lines, used = 1, -1
        for word in words:
            if used >= 0 and used + 1 + len(word) > width:
                lines, used = lines + 1, len(word)
            else:
                used += 1 + len(word)
        if lines <= 2:
            return width
    return len(" ".join(words))


def as_cell(value: Any) -> Any:
    """A Python value as stored by both backends: dates stay dates, everything else plain."""
    if isinstance(value, (date, datetime, int, float)) or value is None:
        return value
    return str(value)
