"""Crash safety: the real `python -m automations run --all`, killed with SIGKILL at 20 points, then rerun.

One sheet on the Sheets emulator holds 200 due emails: 170 cold intros (ten rows without a
Partner ID) and 15 discharges (a partner and a patient email each, every one to its own
address). The program runs unmodified as a subprocess against the emulator and a loopback SMTP
server; the test watches from outside (messages arriving at the SMTP server, requests arriving
at the emulator, rows committed to the send ledger, read-only) and kills the process at the next
point, reruns it, kills it again, and finally lets it finish. Afterwards every due email arrived
exactly once, or is reported as unknown-outcome (at most one per kill, never re-sent), and the
sheet, the Log tab and `partnerloop status` agree with what the SMTP server received.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from automations.config import Settings
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import REPO, google_settings, seed_sheet
from tests.support.configs import config_for
from tests.support.smtp_server import SmtpServer, email_section

NOW = "2026-11-27T10:00"  # a Friday, clinic time
TODAY = "2026-11-27"
PROSPECTS = 170
WITHOUT_ID = 10  # the last prospects have no Partner ID: one is assigned and written before any send
DISCHARGES = 15
DUE = PROSPECTS + 2 * DISCHARGES
UNKNOWN = "unknown whether it was delivered"

Condition = Callable[[], bool]


# -- the sheet ---------------------------------------------------------------------------------------


def prospect_email(i: int) -> str:
    return f"coach{i}@studio{i}.example"


def gym_email(i: int) -> str:
    return f"desk{i}@gym{i}.example"


def patient_email(i: int) -> str:
    return f"avaline{i}@mail.example"


def patient_names(i: int) -> tuple[str, str]:
    return f"Avaline{i:02d}", f"Thorncastle{i:02d}"


def seed(settings: Settings) -> None:
    partners: list[dict[str, Any]] = []
    for i in range(1, PROSPECTS + 1):
        row = {"Business": f"Studio {i}", "Contact name": f"Coach {i}", "Email": prospect_email(i),
               "Stage": "Prospect", "Why partner": "strength work after rehab"}
        if i <= PROSPECTS - WITHOUT_ID:
            row["Partner ID"] = f"P-{i:04d}"
        partners.append(row)
    for i in range(1, DISCHARGES + 1):
        partners.append({"Partner ID": f"P-{500 + i:04d}", "Business": f"Gym {i}", "Contact name": f"Dana {i}",
                         "Email": gym_email(i), "Stage": "Active", "Stage since": "2026-01-05",
                         "Perk": "a free month", "Taking our patients": "the front desk books an orientation"})
    referrals = []
    for i in range(1, DISCHARGES + 1):
        first, last = patient_names(i)
        referrals.append({"Referral ID": f"R-{i:04d}", "Direction": "Out", "Partner": f"Gym {i}",
                          "Patient first name": first, "Patient last name": last, "Patient email": patient_email(i),
                          "Consent": "Yes", "Consent expires": "2027-06-30", "Goal": "Back to running 5k",
                          "Discharge date": "2026-11-26"})
    seed_sheet(settings, partners=partners, referrals=referrals)


def write_config(tmp_path: Path, settings: Settings, smtp: SmtpServer) -> Path:
    # No owner_email and no scorecard: `run --all` would add the owner's digest and the gyms' quarterly
    # scorecards to the emails counted here.
    return config_for(tmp_path / "crash.toml", settings, clinic={"owner_email": ""}, scorecard={"enabled": False},
                      email=email_section(smtp, timeout=10, daily_limit=100000, send_window="Mon-Sun 00:00-23:59"))


# -- watching the run from outside -------------------------------------------------------------------


@dataclass
class Watch:
    """What the test can see of a running partnerloop: SMTP arrivals, emulator requests, ledger rows."""

    smtp: SmtpServer
    emulator: Any
    key: str
    ledger_path: Path
    _db: sqlite3.Connection | None = None

    def ledger_count(self, where: str) -> int:
        if self._db is None:
            if not self.ledger_path.exists():
                return 0
            self._db = sqlite3.connect(f"file:{self.ledger_path}?mode=ro", uri=True, timeout=5)
        return int(self._db.execute(f"SELECT COUNT(*) FROM sends WHERE {where}").fetchone()[0])

    def requests(self, since: int) -> list[Any]:
        return [r for r in self.emulator.requests[since:] if r.spreadsheet_id == self.key]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


@dataclass
class KillPoint:
    """Where to kill one run: a condition built when the run starts, and how that run is started."""

    name: str
    arm: Callable[[Watch], Condition]
    limit: int | None = None
    latency: float = 0.0  # emulator latency for this run, so a request is in flight when the kill lands


def after_messages(k: int) -> Callable[[Watch], Condition]:
    def arm(w: Watch) -> Condition:
        base = len(w.smtp.messages)
        return lambda: len(w.smtp.messages) >= base + k
    return arm


def at_request(endpoint: str, n: int = 1, then: float = 0.0) -> Callable[[Watch], Condition]:
    """The n-th request to *endpoint* in this run has arrived at the emulator (plus *then* seconds)."""
    def arm(w: Watch) -> Condition:
        base = len(w.emulator.requests)
        seen: list[float] = []

        def condition() -> bool:
            if not seen and sum(1 for r in w.requests(base) if r.endpoint == endpoint) >= n:
                seen.append(time.monotonic())
            return bool(seen) and time.monotonic() >= seen[0] + then
        return condition
    return arm


def at_ledger(where: str, k: int = 1) -> Callable[[Watch], Condition]:
    """k more ledger rows matching *where* have been committed in this run."""
    def arm(w: Watch) -> Condition:
        base = w.ledger_count(where)
        return lambda: w.ledger_count(where) >= base + k
    return arm


def after_seconds(seconds: float) -> Callable[[Watch], Condition]:
    def arm(w: Watch) -> Condition:
        start = time.monotonic()
        return lambda: time.monotonic() >= start + seconds
    return arm


KILL_POINTS = [
    KillPoint("first Sheets request (start-up)", at_request("spreadsheets.get")),
    KillPoint("reading the tabs", at_request("values.batchGet")),
    KillPoint("writing the new Partner IDs, request in flight", at_request("values.batchUpdate"), latency=0.3),
    KillPoint("1 message at the SMTP server", after_messages(1)),
    KillPoint("2 messages at the SMTP server", after_messages(2)),
    KillPoint("ledger: first claim committed", at_ledger("1=1")),
    KillPoint("6 messages at the SMTP server", after_messages(6)),
    KillPoint("ledger: third delivery settled", at_ledger("state='sent'", 3)),
    KillPoint("write-back: re-reading rows by ID", at_request("values.batchGet", 2), limit=5),
    KillPoint("write-back: values.batchUpdate in flight", at_request("values.batchUpdate"), limit=5, latency=0.3),
    KillPoint("ledger: write-back marked done", at_ledger("written_back=1"), limit=5),
    KillPoint("rewriting the Dashboard", at_request("spreadsheets.batchUpdate"), limit=4),
    KillPoint("Log append in flight", at_request("values.append"), limit=5, latency=0.3),
    KillPoint("11 messages at the SMTP server", after_messages(11)),
    KillPoint("ledger: Log marked done", at_ledger("logged=1"), limit=4),
    KillPoint("1.5 s after start", after_seconds(1.5)),
    KillPoint("16 messages at the SMTP server", after_messages(16)),
    KillPoint("ledger: tenth delivery settled", at_ledger("state='sent'", 10)),
    KillPoint("just after the Log append was answered", at_request("values.append", then=0.02), limit=6),
    KillPoint("25 messages at the SMTP server", after_messages(25)),
]


def start_run(config: Path, log: Path, limit: int | None = None) -> subprocess.Popen[bytes]:
    extra = ["--limit", str(limit)] if limit is not None else []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "automations", "--config", str(config), "run", "--all",
                                 "--now", NOW, *extra], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def kill_when(process: subprocess.Popen[bytes], condition: Condition, seconds: float = 90) -> bool:
    """SIGKILL *process* as soon as *condition* holds; False if it finished on its own first."""
    deadline = time.monotonic() + seconds
    while process.poll() is None:
        if condition():
            process.send_signal(signal.SIGKILL)
            return process.wait() == -signal.SIGKILL
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the run neither finished nor reached its kill point")
        time.sleep(0.001)
    return False


def settle_emulator(watch: Watch, since: int) -> None:
    """Wait until the emulator has answered every request of the killed run (a write in flight lands first)."""
    deadline = time.monotonic() + 10
    while any(r.status is None for r in watch.requests(since)):
        assert time.monotonic() < deadline, "the emulator never answered a request"
        time.sleep(0.01)


# -- the test ----------------------------------------------------------------------------------------


@dataclass
class Due:
    """One due email: which ledger step it is, where it goes, and the row that records it."""

    job: str
    row_id: str
    step: str
    template: str
    address: str
    tab: str
    sent_column: str = ""  # the date column that says it went (discharge); outreach uses Stage and status


@dataclass
class Sheet:
    partners: dict[str, Any] = field(default_factory=dict)
    referrals: dict[str, Any] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)


def read_sheet(settings: Settings) -> Sheet:
    backend = open_backend(settings, sleep=lambda s: None)
    book = read_book(backend, settings)
    log = backend.read(["Log"])["Log"]
    assert log is not None
    return Sheet(partners={p.id: p for p in book.partners}, referrals={r.id: r for r in book.referrals},
                 log=[{h: log.get(row, h) for h in ("Row", "Template", "Message-ID", "To")} for row in log.rows])


def due_emails(sheet: Sheet) -> list[Due]:
    due = []
    for partner in sheet.partners.values():
        if partner.business.startswith("Studio "):
            due.append(Due("outreach", partner.id, "intro", "outreach_intro", str(partner.email), "Partners"))
    for i in range(1, DISCHARGES + 1):
        row_id = f"R-{i:04d}"
        due.append(Due("discharge", row_id, "partner", "discharge_partner", gym_email(i), "Referrals",
                       "Partner emailed"))
        due.append(Due("discharge", row_id, "patient", "discharge_patient", patient_email(i), "Referrals",
                       "Patient emailed"))
    return due


def unknown_in_status(config: Path) -> set[tuple[str, str, str]]:
    """(row, job, template) of every unknown-outcome send `partnerloop status` lists."""
    result = subprocess.run([sys.executable, "-m", "automations", "--config", str(config), "status"],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            timeout=60)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^  (\S+) (\w+) (\w+) \(since .*resolve \1 --job \2", result.stdout, re.MULTILINE))
    header = re.search(r"^(\d+) email\(s\) with unknown outcome", result.stdout, re.MULTILINE)
    assert (int(header.group(1)) if header else 0) == len(listed), result.stdout
    return listed


def test_sigkill_at_twenty_points_then_rerun_sends_each_email_once_and_loses_no_write_back(
    tmp_path: Path, emulator: Any, smtp: SmtpServer
) -> None:
    settings = google_settings(tmp_path, emulator)
    seed(settings)
    config = write_config(tmp_path, settings, smtp)
    smtp.delay(0.02)  # the message is taken, the reply comes a moment later: kills land in between
    output = tmp_path / "runs.log"
    watch = Watch(smtp, emulator, settings.sheet.key, settings.state_dir / "ledger.sqlite3")
    unknown_after: list[int] = []
    try:
        for point in KILL_POINTS:
            emulator.latency(point.latency)
            since = len(emulator.requests)
            process = start_run(config, output, point.limit)
            try:
                killed = kill_when(process, point.arm(watch))
            finally:
                emulator.latency(0)
            assert killed, f"the run finished before the kill point {point.name!r}:\n{output.read_text()[-3000:]}"
            settle_emulator(watch, since)
            unknown_after.append(watch.ledger_count("state='sending'"))

        final = start_run(config, output)
        assert final.wait(timeout=120) == 0, output.read_text()[-3000:]
        delivered_before_check = len(smtp.messages)
        again = start_run(config, output)
        assert again.wait(timeout=120) == 0, output.read_text()[-3000:]
        assert len(smtp.messages) == delivered_before_check  # a completed sheet sends nothing more
    finally:
        watch.close()

    # Each kill leaves at most one send whose outcome nobody can know.
    steps = [b - a for a, b in zip([0, *unknown_after[:-1]], unknown_after, strict=True)]
    assert all(0 <= step <= 1 for step in steps), steps

    # Nothing arrived twice.
    arrived = Counter(r for m in smtp.messages for r in m.recipients)
    assert all(len(m.recipients) == 1 for m in smtp.messages)
    assert [a for a, n in arrived.items() if n > 1] == []
    ids = Counter(str(m.message["Message-ID"]) for m in smtp.messages)
    assert [i for i, n in ids.items() if n > 1] == []

    sheet = read_sheet(settings)
    due = due_emails(sheet)
    assert len(due) == DUE and len({d.address for d in due}) == DUE
    assert set(arrived) <= {d.address for d in due}  # nothing went anywhere unplanned

    unknown = unknown_in_status(config)
    assert len(unknown) == unknown_after[-1] <= len(KILL_POINTS)
    is_unknown = {d.address: (d.row_id, d.job, d.template) in unknown for d in due}

    # Every due email arrived exactly once, unless its outcome is reported as unknown.
    missing = [d for d in due if d.address not in arrived]
    assert all(is_unknown[d.address] for d in missing), [d.row_id for d in missing if not is_unknown[d.address]]

    # The sheet agrees with what the SMTP server received.
    for d in due:
        row = sheet.partners[d.row_id] if d.tab == "Partners" else sheet.referrals[d.row_id]
        if is_unknown[d.address]:
            assert UNKNOWN in row.status and f"partnerloop resolve {d.row_id} --job {d.job}" in row.status, row.status
            continue
        assert d.address in arrived
        if d.job == "outreach":
            assert row.stage == "Contacted" and row.status.startswith(f"Intro sent {TODAY}"), (d.row_id, row.status)
            assert row.outreach_step == 1
        else:
            assert getattr(row, d.sent_column.lower().replace(" ", "_")) is not None, (d.row_id, d.step, row.status)
    for d in due:  # never delivered: the row does not claim it went
        if d.address not in arrived:
            row = sheet.partners[d.row_id] if d.tab == "Partners" else sheet.referrals[d.row_id]
            if d.job == "outreach":
                assert row.stage == "Prospect" and "Intro sent" not in row.status
            else:
                assert getattr(row, d.sent_column.lower().replace(" ", "_")) is None

    # No Log row is lost, and the Log claims nothing that did not arrive.
    logged = Counter(str(r["Message-ID"]) for r in sheet.log)
    delivered_ids = {str(m.message["Message-ID"]): m.recipients[0] for m in smtp.messages}
    must_log = {mid for mid, address in delivered_ids.items() if not is_unknown[address]}
    assert must_log <= set(logged), sorted(must_log - set(logged))[:5]
    assert set(logged) <= set(delivered_ids)

    duplicated = sum(n - 1 for n in logged.values() if n > 1)
    print(f"\ncrash safety: {len(KILL_POINTS)} kills, {len(arrived)} of {DUE} emails arrived once, "
          f"{len(unknown)} unknown-outcome ({len(missing)} of them never arrived), "
          f"{duplicated} duplicated Log row(s)")

    # No patient name or address in anything the runs printed.
    printed = output.read_text()
    for i in range(1, DISCHARGES + 1):
        for secret in (*patient_names(i), patient_email(i)):
            assert secret not in printed


def test_a_kill_after_the_log_append_landed_does_not_duplicate_log_rows(
    tmp_path: Path, emulator: Any, smtp: SmtpServer
) -> None:
    settings = google_settings(tmp_path, emulator)
    seed(settings)
    config = write_config(tmp_path, settings, smtp)
    output = tmp_path / "runs.log"
    watch = Watch(smtp, emulator, settings.sheet.key, settings.state_dir / "ledger.sqlite3")
    try:
        emulator.latency(0.3)
        since = len(emulator.requests)
        process = start_run(config, output, limit=3)
        try:
            assert kill_when(process, at_request("values.append")(watch))
        finally:
            emulator.latency(0)
        settle_emulator(watch, since)
        assert start_run(config, output, limit=0).wait(timeout=120) == 0
    finally:
        watch.close()
    logged = Counter(str(r["Message-ID"]) for r in read_sheet(settings).log)
    assert len(logged) == 3
    assert [mid for mid, n in logged.items() if n > 1] == []
