"""CPU seconds of one `run --all` with nothing due, at 1,000, 10,000 and 100,000 referral rows (xlsx).

Writes a workbook per size (openpyxl, write-only mode) with 20 Active partners and N settled
referrals, so no job has anything to send or write on a row; the Dashboard is still rewritten,
as on every run. Each size runs in a fresh child process (so peak memory is per size) that calls
`run_jobs` over the xlsx backend once and measures time.process_time():

- load: the backend reading the tabs (openpyxl parsing the xlsx into Tables), timed inside the run;
- parse: `parse_book` on the same tables (measured again after the run, outside it);
- write: every backend write of the run (row statuses, Log, the Dashboard rewrite: a full
  read-modify-write of the workbook);
- plan + executor: the rest (jobs deciding, the Dashboard metrics, the ledger).

Not a test: run it by hand.

    python bench/run_cpu.py [--rows 1000 10000 100000]
"""

from __future__ import annotations

import contextlib
import resource
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

from common import per_size_in_children

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=ZoneInfo("America/Chicago"))
PARTNERS = 20


def write_workbook(path: Path, n: int) -> None:
    import openpyxl

    from automations.schema import TABS

    today = NOW.date()
    workbook = openpyxl.Workbook(write_only=True)
    sheets = {key: workbook.create_sheet(TABS[key].title) for key in ("partners", "referrals", "events", "optouts", "log")}
    headers = {key: [c.name for c in TABS[key].columns] for key in sheets}
    for key, sheet in sheets.items():
        sheet.append(headers[key])

    def row(key: str, values: dict[str, Any]) -> list[Any]:
        return [values.get(name) for name in headers[key]]

    for i in range(1, PARTNERS + 1):
        sheets["partners"].append(row("partners", {
            "Partner ID": f"P-{i:04d}", "Business": f"Studio {i}", "Kind": "Personal trainer",
            "Contact name": f"Coach {i}", "Email": f"coach{i}@studio{i}.example", "Stage": "Active",
            "Stage since": date(2025, 1, 6), "Perk": "a free class"}))
    for i in range(1, n + 1):
        referred = today - timedelta(days=5 + i % 700)
        values: dict[str, Any] = {"Referral ID": f"R-{i:06d}", "Partner": f"Studio {1 + i % PARTNERS}",
                                  "Patient first name": f"Client{i}", "Patient last name": "Sample",
                                  "Referred on": referred, "Consent": "Yes", "Goal": "Keep moving"}
        if i % 2:
            values.update({"Direction": "Out", "Discharge date": referred, "Partner emailed": referred,
                           "Automation status": "Partner emailed"})
        else:
            values.update({"Direction": "In", "Thanks sent": referred, "Automation status": "Thank-you sent"})
        sheets["referrals"].append(row("referrals", values))
    workbook.save(path)


class TimedBackend:
    """The real backend, with the CPU time of its reads and writes added up."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cpu = {"load": 0.0, "write": 0.0}
        self.tables: dict[str, Any] = {}
        self.batching = False

    def _timed(self, bucket: str, fn: Callable[..., Any], *args: Any) -> Any:
        if self.batching:  # already counted by the enclosing batch
            return fn(*args)
        started = time.process_time()
        try:
            return fn(*args)
        finally:
            self.cpu[bucket] += time.process_time() - started

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The backend's batch (one load and one save for every write inside), timed as a whole."""
        inner = getattr(self.inner, "batch", None)
        started = time.process_time()
        self.batching = True
        try:
            with inner() if inner is not None else contextlib.nullcontext():
                yield
        finally:
            self.batching = False
            self.cpu["write"] += time.process_time() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read(self, titles: Any) -> Any:
        tables = self._timed("load", self.inner.read, titles)
        self.tables.update(tables)
        return tables

    def write(self, specs: Any, writes: Any) -> Any:
        return self._timed("write", self.inner.write, specs, writes)

    def append(self, title: str, rows: Any) -> Any:
        return self._timed("write", self.inner.append, title, rows)

    def write_dashboard(self, dashboard: Any) -> Any:
        return self._timed("write", self.inner.write_dashboard, dashboard)

    def ensure_layout(self, *args: Any) -> Any:
        return self.inner.ensure_layout(*args)

    def location(self) -> str:
        return str(self.inner.location())


def child(n: int) -> dict[str, Any]:
    """One measured run in this process; returns the figures."""
    sys.path.insert(0, str(REPO))
    from automations.config import settings_from_dict
    from automations.executor import World, run_jobs
    from automations.jobs import JOBS
    from automations.mail.ledger import Ledger
    from automations.model import READ_KEYS, parse_book
    from automations.sheets.xlsx import XlsxBackend

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = settings_from_dict({
            "clinic": {"name": "Riverside Physical Therapy", "address": "120 Main Street, Springfield, IL 62701",
                       "from_email": "partners@riverside-pt.example", "staff_email": "frontdesk@riverside-pt.example",
                       "timezone": "America/Chicago"},
            "sheet": {"backend": "xlsx", "path": "bench.xlsx"},
            "email": {"transport": "outbox", "outbox_dir": "outbox", "daily_limit": 100000,
                      "send_window": "Mon-Sun 00:00-23:59"},
            "state": {"dir": "state"},
            "scorecard": {"enabled": False},  # nothing due: the quarter's scorecards to the Active partners would be
        }, folder / "settings.toml")
        started = time.perf_counter()
        write_workbook(settings.sheet.path, n)
        build_seconds = time.perf_counter() - started
        size = settings.sheet.path.stat().st_size
        backend = TimedBackend(XlsxBackend(settings.sheet.path))
        world = World(settings=settings, backend=backend, ledger=Ledger.in_state_dir(settings.state_dir),
                      clock=lambda: NOW)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        report = run_jobs(world, list(JOBS))
        total, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        assert report.count("sent") == 0 and report.cells_written == 0, report.summary()
        titles = {key: settings.sheet.title(key) for key in READ_KEYS}
        cpu1 = time.process_time()
        book = parse_book({key: backend.tables[title] for key, title in titles.items()}, titles)
        parse = time.process_time() - cpu1
        assert len(book.referrals) == n
        world.ledger.close()
    return {"rows": n, "total": total, "wall": wall, "load": backend.cpu["load"], "parse": parse,
            "write": backend.cpu["write"], "rest": total - backend.cpu["load"] - backend.cpu["write"] - parse,
            "xlsx_bytes": size, "build_seconds": build_seconds,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    results = per_size_in_children(__file__, __doc__.splitlines()[0], child, argv)
    if not results:
        return 0 if results == [] else 1
    print("CPU seconds (time.process_time) of one `run --all` with nothing due, xlsx backend")
    print(f"{'referral rows':>13} | {'total':>7} | {'load xlsx':>9} | {'parse':>6} | {'plan+executor':>13} | "
          f"{'write':>7} | {'wall':>7} | {'xlsx MiB':>8} | {'peak MiB':>8}")
    for r in results:
        print(f"{r['rows']:>13,} | {r['total']:7.2f} | {r['load']:9.2f} | {r['parse']:6.2f} | {r['rest']:13.2f} | "
              f"{r['write']:7.2f} | {r['wall']:7.2f} | {r['xlsx_bytes'] / 2**20:8.1f} | {r['peak_mib']:8.0f}")
    print("write = the Dashboard rewrite (openpyxl loads and saves the whole workbook); no row needed a status")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
