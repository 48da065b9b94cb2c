"""The staff-edits state machine (tests/test_staff_edits_stateful.py), run long.

Random staff edits (rows, columns, tabs, flags, opt-outs, the workbook open elsewhere, the state
folder lost) interleaved with runs of every job at random times, over the xlsx backend and the
Sheets emulator; the invariants are checked after every step. A failure prints the shortest
sequence of rules hypothesis found. `--ignore` leaves out an invariant already known to fail, so
the search goes on to the next one; `--no-shrink` reports the first failure as found (faster).

Not a test: run it by hand.

    python bench/staff_edits.py --examples 200 [--steps 25] [--backend xlsx|google|both]
                                [--ignore staff_edit_during_a_run_survives] [--no-shrink]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from common import REPO

sys.path.insert(0, str(REPO))

from tests.support.sheets_emulator import SheetsEmulator
from tests.test_staff_edits_stateful import INVARIANTS, run_machine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="sequences of rules per backend")
    parser.add_argument("--steps", type=int, default=25, help="rules per sequence at most")
    parser.add_argument("--backend", choices=["xlsx", "google", "both"], default="both")
    parser.add_argument("--ignore", action="append", default=[], choices=INVARIANTS,
                        help="an invariant to leave out (repeatable)")
    parser.add_argument("--no-shrink", action="store_true", help="report the first failing sequence unshrunk")
    args = parser.parse_args()
    backends = ["xlsx", "google"] if args.backend == "both" else [args.backend]
    failed = 0
    for backend in backends:
        started = time.perf_counter()
        try:
            if backend == "google":
                with SheetsEmulator() as emulator:
                    run_machine(backend, emulator, args.examples, args.steps, args.ignore, not args.no_shrink)
            else:
                run_machine(backend, None, args.examples, args.steps, args.ignore, not args.no_shrink)
        except Exception as exc:
            failed += 1
            print(f"{backend}: FAILED after {time.perf_counter() - started:.0f} s")
            traceback.print_exception(exc, file=sys.stdout)  # with hypothesis' notes: the sequence of rules
        else:
            print(f"{backend}: {args.examples} examples of up to {args.steps} steps passed "
                  f"in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
