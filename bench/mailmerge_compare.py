"""partnerloop against a plain mail merge: N outreach intros, end to end, to one loopback SMTP sink.

Four parts, all delivering to one aiosmtpd sink (bench/common.py `Sink`) started once:

1. partnerloop: an xlsx workbook with N Prospect partners; the real process
   `python -m automations --config C run outreach --now 2026-11-27T10:00`, timed end to end.
2. mailmerge (the `mailmerge` command line tool, `pip install mailmerge`): the same N contacts as a
   CSV database, a markdown template (text + HTML) with the same subject and a body of similar length,
   `mailmerge --no-dry-run --no-limit ...` as a process, timed end to end. Skipped (with a line saying
   how to get it) when the command is not found; it is never installed by this script.
3. The raw floor: N pre-built messages sent with smtplib over one connection.
4. Where partnerloop's CPU goes: the same outreach job in-process under cProfile, per email.

Every part checks that the sink received exactly N more messages. Not a test: run it by hand.

    python bench/mailmerge_compare.py [--mailmerge PATH] [--messages 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import importlib
import os
import pstats
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common import REPO, Sink, outreach_workbook, prospect_rows, running_sink

NOW = "2026-11-27T10:00"
CLINIC_NAME = "Riverside Physical Therapy"
FROM = "partners@riverside-pt.example"
SUBJECT = "{business} and " + CLINIC_NAME + ": helping our clients keep moving"

# The mailmerge letter: the intro's content in the tool's own markdown, about the same length.
BODY = """Hello {name},

I look after partnerships at Riverside Physical Therapy, a physical-therapy clinic in your area.
Our patients finish therapy stronger, and the ones who keep going afterwards are the ones who stay
well. That is where a local business like {business} comes in.

Why we thought of you: {why}

What we have in mind is simple:

* When a patient finishes care and wants to keep training, we introduce them to you, with their consent.
* When one of your clients is dealing with pain or an injury, you send them our way, and we let you
  know how they are getting on.
* Now and then we co-host something together: a posture screen, a class or an open house.

Would you be open to a 20-minute chat about shared goals and how referrals could work? Just reply to
this email or call us.

Warm regards,
Riverside Physical Therapy
120 Main Street, Springfield, IL 62701

To stop hearing from us, reply with "unsubscribe".
"""


Rows = list[dict[str, str]]


@dataclass(frozen=True)
class Timing:
    tool: str
    seconds: float
    received: int
    message_bytes: int


def received_since(sink: Sink, before: int) -> int:
    with sink.lock:
        return sink.messages - before


def check(timing: Timing, n: int) -> Timing:
    if timing.received != n:
        raise SystemExit(f"{timing.tool}: the sink received {timing.received} messages, expected {n}")
    return timing


# --- partnerloop ----------------------------------------------------------------------------


def run_partnerloop(folder: Path, port: int, sink: Sink, people: Rows) -> Timing:
    config = outreach_workbook(folder, port, people)
    before = sink.messages
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "automations", "--config", str(config), "run", "outreach",
                          "--now", NOW], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit("partnerloop run failed:\n" + run.stdout + run.stderr)
    return check(Timing("partnerloop", seconds, received_since(sink, before), len(sink.last)), len(people))


# --- mailmerge ------------------------------------------------------------------------------


def mailmerge_job(folder: Path, port: int, people: Rows) -> tuple[Path, Path, Path]:
    """mailmerge's three files: a markdown template (sent as text + HTML), a CSV database, a server config."""
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / "template.txt"
    headers = (f"TO: {{{{email}}}}\nSUBJECT: {SUBJECT.format(business='{{business}}')}\n"
               f"FROM: {CLINIC_NAME} <{FROM}>\nREPLY-TO: {FROM}\nCONTENT-TYPE: text/markdown\n\n")
    template.write_text(headers + BODY.format(name="{{name}}", business="{{business}}", why="{{why}}"),
                        encoding="utf-8")
    database = folder / "database.csv"
    with database.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "name", "business", "why"])
        writer.writerows([p["Email"], p["Contact name"], p["Business"], p["Why partner"]] for p in people)
    config = folder / "server.conf"
    # No security line: mailmerge then sends in the clear with no login, as partnerloop does here.
    config.write_text(f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\n", encoding="utf-8")
    return template, database, config


def mailmerge_version(command: str) -> str:
    run = subprocess.run([command, "--version"], capture_output=True, text=True)
    return (run.stdout or run.stderr).strip()


def run_mailmerge(command: str, folder: Path, port: int, sink: Sink, people: Rows) -> Timing:
    template, database, config = mailmerge_job(folder, port, people)
    before = sink.messages
    started = time.perf_counter()
    run = subprocess.run([command, "--no-dry-run", "--no-limit", "--template", str(template),
                          "--database", str(database), "--config", str(config), "--output-format", "raw"],
                         capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit("mailmerge failed:\n" + run.stdout[-2000:] + run.stderr[-2000:])
    return check(Timing("mailmerge", seconds, received_since(sink, before), len(sink.last)), len(people))


# --- raw smtplib ----------------------------------------------------------------------------


def plain_message(partner: dict[str, str]) -> EmailMessage:
    """The mailmerge letter for *partner* as text + HTML, built with the standard library alone."""
    body = BODY.format(name=partner["Contact name"], business=partner["Business"], why=partner["Why partner"])
    message = EmailMessage()
    message["From"] = f"{CLINIC_NAME} <{FROM}>"
    message["To"] = partner["Email"]
    message["Subject"] = SUBJECT.format(business=partner["Business"])
    message.set_content(body)
    message.add_alternative("<p>" + body.replace("\n\n", "</p>\n<p>") + "</p>", subtype="html")
    return message


def run_smtplib(port: int, sink: Sink, people: Rows) -> Timing:
    messages = [plain_message(p) for p in people]
    before = sink.messages
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for message in messages:
            smtp.send_message(message)
    seconds = time.perf_counter() - started
    return check(Timing("smtplib, one connection", seconds, received_since(sink, before), len(sink.last)),
                 len(people))


# --- the profile ----------------------------------------------------------------------------

# Each part of a send: the functions (module, attribute path) whose cumulative time it is.
# Looked up when the profile runs; a name the code no longer has shows as n/a.
PARTS: dict[str, list[tuple[str, str]]] = {
    "sheet read": [("automations.model", "read_book")],
    "render": [("automations.mail.render", "Renderer.render")],
    "MIME": [("automations.mail.message", "build_message"), ("automations.mail.transport", "message_bytes")],
    "ledger": [("automations.mail.ledger", "Ledger.claim"), ("automations.mail.ledger", "Ledger.settle")],
    "SMTP": [("automations.mail.transport", "SmtpTransport.send")],
    "write-back": [("automations.executor", "_Run._write_back")],
}
SERIALISE = ("automations.mail.transport", "message_bytes")
TOTAL = ("automations.executor", "run_jobs")

FunctionKey = tuple[str, int, str]


def profile_key(module: str, path: str) -> FunctionKey | None:
    """cProfile's key (file, first line, name) of a function named by module and attribute path."""
    try:
        target: Any = importlib.import_module(module)
        for part in path.split("."):
            target = getattr(target, part)
        code = target.__code__
    except (ImportError, AttributeError):
        return None
    return (code.co_filename, code.co_firstlineno, code.co_name)


# What the profile's clock counts: wall time (so waiting on fsync and on the server shows), or the
# CPU time of the running thread only (the sink's thread and other processes left out).
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def profile_outreach(folder: Path, port: int, sink: Sink, people: Rows, clock_name: str) -> pstats.Stats:
    """The outreach job run in-process (as `run outreach --now` would) under cProfile."""
    from automations.config import load_settings
    from automations.executor import World, run_jobs
    from automations.mail.ledger import Ledger
    from automations.sheets import open_backend

    settings = load_settings(outreach_workbook(folder, port, people))
    fixed = datetime.fromisoformat(NOW).replace(tzinfo=settings.clinic.tz)
    start = datetime.now(ZoneInfo("UTC"))

    def clock() -> datetime:
        return fixed + (datetime.now(ZoneInfo("UTC")) - start)

    world = World(settings=settings, backend=open_backend(settings), ledger=Ledger.in_state_dir(settings.state_dir),
                  clock=clock)
    before = sink.messages
    profiler = cProfile.Profile(CLOCKS[clock_name])
    profiler.runcall(run_jobs, world, ["outreach"])
    world.ledger.close()
    check(Timing("partnerloop in-process", 0.0, received_since(sink, before), 0), len(people))
    return pstats.Stats(profiler)


def cumulative(stats: pstats.Stats, key: FunctionKey | None) -> float | None:
    if key is None:
        return None
    entry = stats.stats.get(key)  # type: ignore[attr-defined]
    return float(entry[3]) if entry else 0.0


def breakdown(stats: pstats.Stats) -> tuple[float, dict[str, float | None]]:
    """Seconds of the whole run, and per part (None where a function could not be found)."""
    total = cumulative(stats, profile_key(*TOTAL)) or 0.0
    serialise = cumulative(stats, profile_key(*SERIALISE))
    parts: dict[str, float | None] = {}
    for part, names in PARTS.items():
        found = [cumulative(stats, profile_key(*name)) for name in names]
        parts[part] = None if all(f is None for f in found) else sum(f or 0.0 for f in found)
    if parts["SMTP"] is not None and serialise is not None:
        parts["SMTP"] -= serialise  # the transport's serialising is counted under MIME
    parts["rest"] = total - sum(v or 0.0 for v in parts.values())
    return total, parts


def _short(path: Path) -> str:
    """A source file as a short name: relative to the repo, else to the folder above its package."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path.relative_to(path.parents[1]))


def top_functions(stats: pstats.Stats, count: int) -> list[tuple[float, str]]:
    """The *count* functions with the most cumulative seconds, as (seconds, "file:line(name)")."""
    rows = []
    for (file, line, name), entry in stats.stats.items():  # type: ignore[attr-defined]
        short = file if file.startswith("<") or file == "~" else _short(Path(file))
        rows.append((float(entry[3]), f"{short}:{line}({name})"))
    return sorted(rows, reverse=True)[:count]


# --- SQLite durability ----------------------------------------------------------------------


def fsync_per_commit(folder: Path, commits: int = 200) -> float:
    """Milliseconds per commit of one small row, WAL with synchronous=FULL (as the send ledger commits)."""
    db = sqlite3.connect(folder / "fsync.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    started = time.perf_counter()
    for i in range(commits):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (v) VALUES (?)", (f"row {i}",))
        db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return seconds / commits * 1000


# --- the report -----------------------------------------------------------------------------


def find_mailmerge(given: str | None) -> str | None:
    if given:
        return given if Path(given).exists() or shutil.which(given) else None
    return shutil.which("mailmerge")


def print_table(timings: list[Timing], n: int) -> None:
    print(f"\n{'tool':<26} | {'wall s':>7} | {'msg/s':>7} | {'bytes/msg':>9}")
    for t in timings:
        print(f"{t.tool:<26} | {t.seconds:7.2f} | {n / t.seconds:7.1f} | {t.message_bytes:9d}")
    ours = next(t for t in timings if t.tool == "partnerloop")
    theirs = next((t for t in timings if t.tool == "mailmerge"), None)
    if theirs is not None:
        ratio = theirs.seconds / ours.seconds
        print(f"partnerloop is {ratio:.1f}× faster than mailmerge" if ratio >= 1
              else f"partnerloop is {1 / ratio:.1f}× slower than mailmerge")


def print_profile(stats: pstats.Stats, n: int, top: int, clock_name: str) -> None:
    total, parts = breakdown(stats)
    print(f"\npartnerloop per email, in-process under cProfile, {clock_name} clock ({n} emails, "
          f"run_jobs {total:.2f} s with profiler overhead):")
    for part, seconds in parts.items():
        shown = "n/a" if seconds is None else f"{seconds / n * 1000:6.2f} ms"
        print(f"  {part:<11} {shown}")
    print(f"\ntop {top} functions by cumulative time, ms per email:")
    for seconds, where in top_functions(stats, top):
        print(f"  {seconds / n * 1000:8.3f}  {where}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailmerge", help="the mailmerge command (default: mailmerge on PATH)")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15, help="functions to list from the profile")
    parser.add_argument("--profile-clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: time waiting on disk and server counts; cpu: this thread's CPU only")
    args = parser.parse_args(argv)
    n = args.messages
    sys.path.insert(0, str(REPO))
    people = prospect_rows(n)
    command = find_mailmerge(args.mailmerge)
    print(f"{n} outreach intros to one aiosmtpd sink on 127.0.0.1; {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}")
    if command is None:
        print(f"mailmerge not found ({args.mailmerge or 'not on PATH'}): `pip install mailmerge` to compare; "
              "running partnerloop and smtplib only")
    else:
        print(f"mailmerge: {command} ({mailmerge_version(command)})")

    with running_sink() as (sink, port), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timings = [run_partnerloop(folder / "partnerloop", port, sink, people)]
        if command is not None:
            timings.append(run_mailmerge(command, folder / "mailmerge", port, sink, people))
        timings.append(run_smtplib(port, sink, people))
        print_table(timings, n)
        stats = profile_outreach(folder / "profile", port, sink, people, args.profile_clock)
        print_profile(stats, n, args.top, args.profile_clock)
        print(f"\nSQLite commit (WAL, synchronous=FULL) on {folder}: {fsync_per_commit(folder):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
