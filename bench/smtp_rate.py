"""SMTP messages per second for 1,000 emails: the transport alone, and a whole `run --all`.

1. The transport alone: bench/smtp_throughput.py (render, build and hand over N messages on one
   connection; no sheet, no ledger), run as it is.
2. The whole program: a workbook with N due prospects, the real `python -m automations run --all`
   as a subprocess delivering to a loopback SMTP sink that timestamps every arrival. This adds the
   send ledger (a claim and a settle per message, each a durable SQLite commit), the send window
   and limits, and the write-back. The rate is taken between the first and the last arrival;
   the run's wall time is printed too.

Not a test: run it by hand.

    python bench/smtp_rate.py [--messages 1000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, outreach_workbook, prospect_rows, run_all, running_sink

NOW = "2026-11-27T10:00"


def transport_alone(n: int) -> str:
    run = subprocess.run([sys.executable, str(REPO / "bench" / "smtp_throughput.py"), "--messages", str(n)],
                         capture_output=True, text=True, cwd=REPO)
    if run.returncode != 0:
        raise SystemExit(run.stdout + run.stderr)
    return run.stdout.strip()


def whole_run(n: int) -> tuple[int, float, float, int]:
    with running_sink() as (sink, port), tempfile.TemporaryDirectory() as tmp:
        config = outreach_workbook(Path(tmp), port, prospect_rows(n))
        run, wall = run_all(config, NOW)
        if run.returncode != 0:
            raise SystemExit(run.stdout + run.stderr)
        sent = int(re.search(r"sent (\d+) email", run.stdout).group(1))  # type: ignore[union-attr]
    arrivals = sorted(sink.arrivals)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    return sent, span, wall, len(sink.peers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args(argv)
    n = args.messages
    print(f"1. transport alone (bench/smtp_throughput.py --messages {n}):")
    for line in transport_alone(n).splitlines():
        print(f"   {line}")
    sent, span, wall, connections = whole_run(n)
    print(f"2. `partnerloop run --all` with {n} due intros, xlsx sheet, SMTP on 127.0.0.1:")
    print(f"   {sent} messages, first to last arrival {span:.2f} s = {(sent - 1) / span:.1f} msg/s "
          f"over {connections} connection{'s' if connections != 1 else ''}; whole run {wall:.2f} s wall "
          f"(start-up, read, {sent} ledger claims and settles, write-back)")
    return 0 if sent == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
