"""Shared fixtures: settings in tmp_path, both spreadsheet backends, the loopback mail servers, a fixed clinic time zone.

The servers themselves live in tests/support (smtp_server, imap_server, sheets_emulator); the
fixtures that start them for a test are defined here once.
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import pytest

from automations.config import Settings, settings_from_dict
from automations.sheets.base import Backend

if TYPE_CHECKING:
    from automations.executor import World
    from automations.jobs.plan import Plan
    from tests.support.imap_server import ImapServer
    from tests.support.smtp_server import SmtpServer

os.environ["TZ"] = "UTC"  # the machine's zone must never matter; the clinic's is in the settings
time.tzset()  # the C library reads TZ only here: without it local time stays the machine's
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TZ = "America/Chicago"
_ids = itertools.count(1)


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings for a test: xlsx in tmp_path, outbox transport, the clinic in Chicago; override by section."""
    raw: dict[str, Any] = {
        "clinic": {"name": "Riverside Physical Therapy", "address": "120 Main Street, Springfield, IL 62701",
                   "phone": "(217) 555-0142", "website": "https://riverside-pt.example",
                   "logo_url": "https://riverside-pt.example/logo.png", "from_email": "partners@riverside-pt.example",
                   "reply_to": "partners@riverside-pt.example", "staff_email": "frontdesk@riverside-pt.example",
                   "owner_email": "owner@riverside-pt.example", "timezone": TZ},
        "sheet": {"backend": "xlsx", "path": "sheet.xlsx"},
        "email": {"transport": "outbox", "outbox_dir": "outbox", "daily_limit": 500,
                  "send_window": "Mon-Fri 08:30-17:30"},
        "state": {"dir": "state"},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return settings_from_dict(raw, tmp_path / "settings.toml")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    from tests.support.sheets_emulator import SheetsEmulator

    with SheetsEmulator() as emu:
        yield emu


def google_settings(tmp_path: Path, emulator: Any, **sections: dict[str, Any]) -> Settings:
    """Settings for a fresh blank spreadsheet on the emulator."""
    key = f"test-sheet-{next(_ids)}"
    emulator.create_spreadsheet(key, "partnerloop test")
    sheet = {"backend": "google", "key": key, "api_endpoint": emulator.base_url, **sections.pop("sheet", {})}
    return make_settings(tmp_path, sheet=sheet, **sections)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A plain (no TLS, no AUTH) SMTP server on 127.0.0.1 for one test; it records what arrives."""
    from tests.support.smtp_server import SmtpServer

    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def imap() -> Iterator[ImapServer]:
    """Dovecot on 127.0.0.1, one per test module (starting it takes a while); each test takes its own user."""
    from tests.support.imap_server import ImapServer

    with ImapServer() as server:
        yield server


@pytest.fixture
def imap_user(imap: ImapServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty mailbox on the IMAP server; its password is in PASSWORD_ENV for this test."""
    from tests.support.imap_server import PASSWORD, PASSWORD_ENV

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return imap.new_user()


Rows = Sequence[Mapping[str, Any]]


def seed_sheet(settings: Settings, partners: Rows = (), referrals: Rows = (), events: Rows = (),
               **more: Rows) -> None:
    """Lay out every tab on the configured sheet (xlsx or Google) and add the given rows, as `init` would."""
    from automations.check import init_sheet
    from automations.sheets import open_backend

    rows = {key: list(values) for key, values in
            {"partners": partners, "referrals": referrals, "events": events, **more}.items() if values}
    backend = open_backend(settings, sleep=lambda s: None) if settings.sheet.backend == "google" else open_backend(settings)
    init_sheet(backend, settings, rows)


def plan_for(settings: Settings, job: str, now: datetime, **inputs: Any) -> Plan:
    """What *job* decides from the sheet as it is now (read through the real backend); *inputs* go to JobInput."""
    from automations.jobs import JOBS
    from automations.jobs.plan import JobInput
    from automations.model import read_book
    from automations.sheets import open_backend

    book = read_book(open_backend(settings), settings)
    return JOBS[job](JobInput(book=book, now=now, settings=settings, **inputs))


def world_for(settings: Settings, clock: Callable[[], datetime], **fields: Any) -> World:
    """What a run touches: the configured sheet, the state dir's ledger, *clock*; *fields* set or replace the rest."""
    from automations.executor import World
    from automations.mail.ledger import Ledger
    from automations.sheets import open_backend

    if "backend" not in fields:
        fields["backend"] = open_backend(settings)
    if "ledger" not in fields:
        fields["ledger"] = Ledger.in_state_dir(settings.state_dir)
    return World(settings=settings, clock=clock, **fields)


@pytest.fixture
def workbook(tmp_path: Path) -> Callable[..., Settings]:
    """Make an xlsx workbook in tmp_path holding the given Partners/Referrals/Events rows; returns its Settings.

    Keyword sections (``email={...}``) go to `make_settings`; row lists go to `seed_sheet`. Each call
    makes a new workbook (with its own state dir): the first in tmp_path, the next in tmp_path/workbook-2...
    """
    made = itertools.count(1)

    def make(partners: Rows = (), referrals: Rows = (), events: Rows = (), **sections: dict[str, Any]) -> Settings:
        n = next(made)
        folder = tmp_path if n == 1 else tmp_path / f"workbook-{n}"
        folder.mkdir(exist_ok=True)
        settings = make_settings(folder, **sections)
        seed_sheet(settings, partners, referrals, events)
        return settings

    return make


@pytest.fixture(params=["xlsx", "google"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for each backend in turn: the same behavioural tests run over both."""
    if request.param == "google":
        return google_settings(tmp_path, request.getfixturevalue("emulator"))
    return make_settings(tmp_path)


@pytest.fixture
def open_sheet() -> Callable[[Settings], Backend]:
    """Open the configured backend without real sleeping between retries."""
    from automations.sheets import open_backend

    def opener(settings: Settings) -> Backend:
        if settings.sheet.backend == "google":
            return open_backend(settings, sleep=lambda s: None)
        return open_backend(settings)

    return opener


class Staff:
    """Stands in for clinic staff editing the sheet by hand, outside partnerloop, on either backend."""

    def __init__(self, settings: Settings, emulator: Any = None) -> None:
        self.settings = settings
        self.emulator = emulator

    def grid(self, tab: str) -> list[list[Any]]:
        if self.emulator is not None:
            return [list(r) for r in self.emulator.values(self.settings.sheet.key, tab)]
        import openpyxl

        sheet = openpyxl.load_workbook(self.settings.sheet.path)[tab]
        rows = [["" if v is None else v for v in row] for row in sheet.iter_rows(values_only=True)]
        while rows and all(v == "" for v in rows[-1]):
            rows.pop()
        return rows

    def replace(self, tab: str, grid: list[list[Any]]) -> None:
        """Replace a tab's cells (creating the tab if needed), as staff typing or sorting would."""
        width = max(len(r) for r in grid)
        grid = [list(r) + [""] * (width - len(r)) for r in grid]
        if self.emulator is not None:
            book = self.emulator.client().open_by_key(self.settings.sheet.key)
            if tab not in [ws.title for ws in book.worksheets()]:
                book.add_worksheet(tab, rows=1000, cols=max(26, width))
            sheet = book.worksheet(tab)
            sheet.clear()
            sheet.update(grid, "A1", raw=False)
            return
        import openpyxl

        path = self.settings.sheet.path
        workbook = openpyxl.load_workbook(path) if path.exists() else openpyxl.Workbook()
        if tab not in workbook.sheetnames:
            if workbook.sheetnames == ["Sheet"]:
                workbook["Sheet"].title = tab
            else:
                workbook.create_sheet(tab)
        sheet = workbook[tab]
        sheet.delete_rows(1, sheet.max_row + 1)
        for row in grid:
            sheet.append([None if v == "" else v for v in row])
        workbook.save(path)

    def edit(self, tab: str, row_id: str, **cells: Any) -> None:
        """Change cells of the row whose first ID-like column holds *row_id* (column names with _ for spaces)."""
        grid = self.grid(tab)
        header = [str(h) for h in grid[0]]
        id_col = next(i for i, h in enumerate(header) if h.lower().endswith(" id") or h.lower() == "email")
        for row in grid[1:]:
            if str(row[id_col]) == row_id:
                for name, value in cells.items():
                    column = name.replace("_", " ")
                    i = next(i for i, h in enumerate(header) if h.lower() == column.lower())
                    row += [""] * (i + 1 - len(row))
                    row[i] = value
                self.replace(tab, grid)
                return
        raise KeyError(f"{tab} {row_id}")

    def add(self, tab: str, **cells: Any) -> None:
        grid = self.grid(tab)
        header = [str(h).lower() for h in grid[0]]
        row: list[Any] = [""] * len(header)
        for name, value in cells.items():
            row[header.index(name.replace("_", " ").lower())] = value
        self.replace(tab, [*grid, row])


@pytest.fixture
def staff_for(request: pytest.FixtureRequest) -> Callable[[Settings], Staff]:
    def make(settings: Settings) -> Staff:
        emulator = request.getfixturevalue("emulator") if settings.sheet.backend == "google" else None
        return Staff(settings, emulator)

    return make
