"""CPU seconds of `init` and of one write-back on a big xlsx workbook: what fitting column widths and
date formats costs.

Builds the workbook of `bench/run_cpu.py` (20 partners, N referrals) per size, then, in a fresh
child process per size, times with time.process_time():

- init: `partnerloop init` on it (header, dropdowns, column widths from a sample of rows, date
  formats on the date columns' cells, print setup), a full load and save of the workbook;
- write: one write-back of 100 Referrals statuses and 100 Log lines in one batch (one load and one
  save), the columns written widened to what was written.

Not a test: run it by hand.

    python bench/layout_cpu.py [--rows 1000 10000 100000]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import per_size_in_children

REPO = Path(__file__).resolve().parent.parent


def child(n: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from automations.check import init_sheet
    from automations.config import settings_from_dict
    from automations.schema import TABS
    from automations.sheets.base import RowWrite
    from automations.sheets.xlsx import XlsxBackend
    from bench.run_cpu import NOW, write_workbook

    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_from_dict({"sheet": {"backend": "xlsx", "path": "bench.xlsx"}}, Path(tmp) / "settings.toml")
        write_workbook(settings.sheet.path, n)
        backend = XlsxBackend(settings.sheet.path)
        started = time.process_time()
        init_sheet(backend, settings)
        init = time.process_time() - started
        specs = {spec.title: spec for spec in TABS.values()}
        writes = [RowWrite("Referrals", f"R-{i:06d}", {"Automation status": f"Checked again {NOW:%Y-%m-%d}: nothing due"})
                  for i in range(1, 101)]
        log = [[NOW.replace(tzinfo=None), "outreach", "outreach_intro", f"coach{i}@studio.example", f"P-{i:04d}",
                f"<{i}.bench@riverside-pt.example>", "sent"] for i in range(1, 101)]
        started = time.process_time()
        with backend.batch():
            report = backend.write(specs, writes)
            backend.append("Log", log)
        write = time.process_time() - started
        assert report.cells == 100, report
    return {"rows": n, "init": init, "write": write}


def main(argv: list[str] | None = None) -> int:
    results = per_size_in_children(__file__, __doc__.splitlines()[0], child, argv)
    if not results:
        return 0 if results == [] else 1
    print("CPU seconds (time.process_time) of `init` and of one write-back (100 statuses + 100 Log lines), xlsx")
    print(f"{'referral rows':>13} | {'init':>7} | {'write':>7}")
    for r in results:
        print(f"{r['rows']:>13,} | {r['init']:7.2f} | {r['write']:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
