"""How many Google Sheets API calls one `partnerloop run --all` makes, at 10, 1,000 and 10,000 rows.

Starts the local Sheets API emulator (tests/support/sheets_emulator.py) in this process, seeds one
spreadsheet per size (half Partners, half Referrals, all settled, plus 5 prospects due an intro so
the run also writes back and appends to the Log), runs the real `python -m automations run --all`
against it as a subprocess (outbox transport), and counts the requests the emulator received.
Not a test: run it by hand.

    python bench/sheets_calls.py [--rows 10 1000 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from common import REPO, run_all

NOW = "2026-11-27T10:00"
DUE = 5
ENDPOINTS = ("spreadsheets.get", "values.batchGet", "values.batchUpdate", "spreadsheets.batchUpdate", "values.append")


def rows_for(n: int) -> dict[str, list[dict[str, Any]]]:
    """n settled rows (nothing due) split between Partners and Referrals, plus DUE prospects."""
    today = date(2026, 11, 27)
    partners: list[dict[str, Any]] = []
    for i in range(1, n // 2 + 1):
        partners.append({"Partner ID": f"P-{i:05d}", "Business": f"Studio {i}", "Kind": "Personal trainer",
                         "Contact name": f"Coach {i}", "Email": f"coach{i}@studio{i}.example", "Stage": "Active",
                         "Stage since": today - timedelta(days=200 + i % 300), "Perk": "a free class"})
    for i in range(1, DUE + 1):
        partners.append({"Partner ID": f"P-9{i:04d}", "Business": f"Prospect {i}", "Contact name": f"Sam {i}",
                         "Email": f"sam{i}@prospect{i}.example", "Stage": "Prospect"})
    referrals: list[dict[str, Any]] = []
    for i in range(1, n - n // 2 + 1):
        referred = today - timedelta(days=5 + i % 700)
        partner = f"Studio {1 + i % max(1, n // 2)}"
        if i % 2:
            referrals.append({"Referral ID": f"R-{i:05d}", "Direction": "Out", "Partner": partner,
                              "Patient first name": f"Client{i}", "Referred on": referred, "Consent": "Yes",
                              "Discharge date": referred, "Partner emailed": referred + timedelta(days=1),
                              "Automation status": "Partner emailed"})
        else:
            referrals.append({"Referral ID": f"R-{i:05d}", "Direction": "In", "Partner": partner,
                              "Patient first name": f"Client{i}", "Referred on": referred, "Consent": "Yes",
                              "Thanks sent": referred + timedelta(days=1), "Automation status": "Thank-you sent"})
    return {"partners": partners, "referrals": referrals}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10, 1000, 10000])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from automations.check import init_sheet
    from automations.config import settings_from_dict
    from automations.sheets import open_backend
    from tests.support.configs import write_config
    from tests.support.sheets_emulator import SheetsEmulator

    results = []
    with SheetsEmulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        assert emulator.base_url is not None
        for n in args.rows:
            folder = Path(tmp) / f"rows-{n}"
            folder.mkdir()
            key = f"bench-{n}"
            emulator.create_spreadsheet(key, f"partnerloop bench {n}")
            # No owner_email: the owner's digest would add a send and its calls to every size; no scorecards:
            # the quarter's would go to every settled Active partner.
            config = write_config(folder / "settings.toml", clinic={"owner_email": ""}, scorecard={"enabled": False},
                                  sheet={"backend": "google", "key": key, "api_endpoint": emulator.base_url},
                                  email={"transport": "outbox", "outbox_dir": folder / "outbox", "daily_limit": 100000,
                                         "send_window": "Mon-Sun 00:00-23:59"},
                                  state={"dir": folder / "state"})
            settings = settings_from_dict({"sheet": {"backend": "google", "key": key,
                                                     "api_endpoint": emulator.base_url}}, config)
            init_sheet(open_backend(settings), settings, rows_for(n))
            since = len(emulator.requests)
            run, seconds = run_all(config, NOW)
            if run.returncode != 0:
                print(run.stdout, run.stderr, file=sys.stderr)
                return 1
            calls = Counter(r.endpoint for r in emulator.requests[since:] if r.spreadsheet_id == key)
            sent = len(list((folder / "outbox").glob("*.eml")))
            results.append((n, calls, sent, seconds))

    print(f"Sheets API calls per `partnerloop run --all` (emulator; {DUE} intros due, the rest settled)")
    print(f"{'rows':>7} | " + " | ".join(f"{e:>24}" for e in ENDPOINTS) + f" | {'total':>5} | sent | seconds")
    for n, calls, sent, seconds in results:
        print(f"{n:>7,} | " + " | ".join(f"{calls.get(e, 0):>24}" for e in ENDPOINTS)
              + f" | {sum(calls.values()):>5} | {sent:>4} | {seconds:7.2f}")
    totals = {sum(c.values()) for _, c, _, _ in results}
    print("calls do not grow with rows" if len(totals) == 1 else "WARNING: the number of calls grows with rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
