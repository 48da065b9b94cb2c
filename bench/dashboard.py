"""How the Dashboard scales: CPU time of the metrics on a large sheet, and Sheets API requests per rewrite.

1. Builds a Book in memory (Table.from_grid + parse_book, no I/O) of 5,000 partners and 100,000
   referrals, then times (time.process_time, one core) computing the metrics and building the
   Dashboard. Target: under 2 s.
2. Runs the `dashboard` job against the local Google Sheets API emulator at 100 and at 5,000
   partners (20 referrals each) and prints the requests it made: the same number at both sizes.

Not a test: run it by hand.

    python bench/dashboard.py [--partners 5000] [--referrals 100000] [--skip-google]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=ZoneInfo("America/Chicago"))
STAGES = ("Prospect", "Contacted", "Meeting", "Agreement", "Active", "Active", "Active", "Paused", "Declined")


def sample_rows(partners: int, referrals: int, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """Fictional rows by tab key: partners at every stage, two years of referrals both ways, some events."""
    rng = random.Random(seed)
    today = NOW.date()

    def ago(days: int) -> date:
        return today - timedelta(days=days)

    partner_rows = []
    for n in range(1, partners + 1):
        stage = rng.choice(STAGES)
        step = rng.choice((0, 1, 1, 2, 3)) if stage != "Prospect" else 0
        partner_rows.append({
            "Partner ID": f"P-{n:05d}", "Business": f"Studio {n}", "Kind": "Personal trainer",
            "Email": f"coach{n}@studio{n}.example", "Stage": stage, "Outreach step": step or None,
            "Last emailed": ago(rng.randint(1, 400)) if step else None,
            "Stage since": ago(rng.randint(0, 700)) if stage != "Prospect" else None,
            "Meeting date": ago(rng.randint(0, 300)) if stage in ("Meeting", "Declined") and rng.random() < .5 else None,
        })
    referral_rows = []
    for n in range(1, referrals + 1):
        direction = rng.choice(("Out", "In"))
        referred = ago(rng.randint(0, 730))
        seen = rng.random() < 0.7
        referral_rows.append({
            "Referral ID": f"R-{n:06d}", "Direction": direction, "Partner": f"P-{rng.randint(1, partners):05d}",
            "Patient first name": f"Sample{n}", "Referred on": referred,
            "Consent": rng.choice(("Yes", "Yes", "Yes", "No", "")),
            "Discharge date": referred if direction == "Out" else None,
            "First visit": referred + timedelta(days=rng.randint(1, 20)) if seen else None,
        })
    events = [{"Event ID": f"E-{n:04d}", "Event": f"Class {n}", "Date": ago(rng.randint(-30, 400)),
               "Attendees": rng.randint(5, 40), "New patients": rng.randint(0, 5)} for n in range(1, 201)]
    return {"partners": partner_rows, "referrals": referral_rows, "events": events}


def in_memory_book(rows: dict[str, list[dict[str, Any]]]) -> Any:
    from automations.model import parse_book
    from automations.schema import TABS
    from automations.sheets.base import Table

    tables, titles = {}, {}
    for key, records in rows.items():
        spec = TABS[key]
        header = [c.name for c in spec.columns]
        tables[key] = Table.from_grid(spec.title, [header, *([r.get(h) for h in header] for r in records)])
        titles[key] = spec.title
    return parse_book(tables, titles)


def settings_for(directory: Path, google: dict[str, Any] | None = None) -> Any:
    from automations.config import settings_from_dict

    raw: dict[str, Any] = {
        "clinic": {"name": "Riverside Physical Therapy", "address": "120 Main Street, Springfield, IL",
                   "from_email": "partners@riverside-pt.example", "owner_email": "owner@riverside-pt.example",
                   "timezone": "America/Chicago"},
        "sheet": google or {"backend": "xlsx", "path": "bench.xlsx"},
        "email": {"transport": "outbox", "outbox_dir": "outbox"},
        "state": {"dir": "state"},
    }
    return settings_from_dict(raw, directory / "settings.toml")


def time_metrics(partners: int, referrals: int) -> None:
    from automations.jobs.dashboard import build_dashboard
    from automations.jobs.plan import JobInput

    rows = sample_rows(partners, referrals)
    started = time.process_time()
    book = in_memory_book(rows)
    parsed = time.process_time() - started
    with tempfile.TemporaryDirectory() as tmp:
        inp = JobInput(book=book, now=NOW, settings=settings_for(Path(tmp)))
        started = time.process_time()
        dashboard = build_dashboard(inp)
        built = time.process_time() - started
    cells = sum(len(b.rows) * len(b.header) for b in dashboard.blocks)
    print(f"{partners:,} partners, {referrals:,} referrals, {len(rows['events'])} events "
          f"(parsing the grids into a Book: {parsed:.2f} s CPU, not counted)")
    print(f"metrics + Dashboard ({len(dashboard.blocks)} blocks, {cells:,} cells): {built:.2f} s CPU "
          f"(target < 2 s) {'OK' if built < 2 else 'TOO SLOW'}")


def google_requests(partners: int) -> list[str]:
    """The Sheets API requests of one `dashboard` run at this size (endpoint names, in order)."""
    sys.path.insert(0, str(REPO))
    from automations.check import init_sheet
    from automations.executor import World, run_jobs
    from automations.mail.ledger import Ledger
    from automations.sheets import open_backend
    from tests.support.sheets_emulator import SheetsEmulator

    with SheetsEmulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        emulator.create_spreadsheet("bench", "partnerloop bench")
        settings = settings_for(Path(tmp), {"backend": "google", "key": "bench", "api_endpoint": emulator.base_url})
        backend = open_backend(settings, sleep=lambda s: None)
        init_sheet(backend, settings, sample_rows(partners, partners * 20))
        emulator.reset_requests()
        ledger = Ledger.in_state_dir(settings.state_dir)
        try:
            run_jobs(World(settings=settings, backend=backend, ledger=ledger, clock=lambda: NOW), ["dashboard"])
        finally:
            ledger.close()
        return [str(r.endpoint) for r in emulator.requests]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=5000)
    parser.add_argument("--referrals", type=int, default=100_000)
    parser.add_argument("--skip-google", action="store_true", help="only time the metrics")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # runs from a fresh clone, installed or not
    time_metrics(args.partners, args.referrals)
    if not args.skip_google:
        counts = {}
        for size in (100, args.partners):
            started = time.perf_counter()
            counts[size] = google_requests(size)
            print(f"dashboard job on the Sheets emulator, {size:,} partners and {size * 20:,} referrals: "
                  f"{len(counts[size])} requests ({', '.join(counts[size])}); {time.perf_counter() - started:.1f} s "
                  "wall time including seeding the sheet")
        same = len(set(map(tuple, counts.values()))) == 1
        print("same requests at every size" if same else "REQUEST COUNT GREW WITH THE SHEET")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
