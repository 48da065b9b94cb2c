"""The executor and its ledger: each email once, what was sent always written back, limits that hold.

Every test delivers to a real SMTP server on 127.0.0.1 and asserts what arrived there and what the
sheet holds afterwards.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automations.config import Settings
from automations.errors import AlreadyRunning, SheetError
from automations.executor import World, run_jobs
from automations.locks import JobLock
from automations.mail.ledger import Ledger
from automations.mail.transport import make_transport
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import Staff, make_settings, seed_sheet, world_for
from tests.support.smtp_server import SmtpServer, email_section

TZ = ZoneInfo("America/Chicago")
FRIDAY_9AM = datetime(2026, 11, 27, 9, 0, tzinfo=TZ)


class FakeClock:
    """A clock that only moves when told to, or when the executor sleeps."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Crash(BaseException):
    """Stands in for the process dying (SIGKILL, power loss): nothing in partnerloop catches it."""


def smtp_settings(tmp_path: Path, server: SmtpServer, **email: Any) -> Settings:
    return make_settings(tmp_path, email=email_section(server, **email))


def prospects(settings: Settings, n: int) -> None:
    rows = [{"Partner ID": f"P-{i:04d}", "Business": f"Studio {i}", "Contact name": f"Coach {i}",
             "Email": f"coach{i}@studio{i}.example", "Stage": "Prospect", "Why partner": "shared goals"}
            for i in range(1, n + 1)]
    seed_sheet(settings, partners=rows)


def world(settings: Settings, clock: FakeClock, transport_factory: Any = make_transport) -> World:
    return world_for(settings, clock, sleep=clock.sleep, transport_factory=transport_factory)


def recipients(server: SmtpServer) -> list[str]:
    return sorted(r for m in server.messages for r in m.recipients)


def partner_statuses(settings: Settings) -> dict[str, str]:
    return {p.id: p.status for p in read_book(open_backend(settings), settings).partners}


def test_each_email_is_sent_once_and_written_back(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 3)
    clock = FakeClock(FRIDAY_9AM)
    report = run_jobs(world(settings, clock), ["outreach"])
    assert report.count("sent") == 3
    assert recipients(smtp) == ["coach1@studio1.example", "coach2@studio2.example", "coach3@studio3.example"]
    book = read_book(open_backend(settings), settings)
    assert {(p.stage, p.outreach_step, p.last_emailed) for p in book.partners} == {("Contacted", 1, FRIDAY_9AM.date())}
    assert book.partners[0].status == "Intro sent 2026-11-27; follow-up 1 due 2026-12-04"
    log = open_backend(settings).read(["Log"])["Log"]
    assert log is not None and [log.get(r, "Row") for r in log.rows] == ["P-0001", "P-0002", "P-0003"]
    assert {log.get(r, "Message-ID") for r in log.rows} == {m.message["Message-ID"] for m in smtp.messages}

    run_jobs(world(settings, clock), ["outreach"])
    clock.advance(hours=1)
    run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 3


def test_a_crash_between_handing_over_and_recording_never_sends_twice(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 3)
    clock = FakeClock(FRIDAY_9AM)

    class DiesAfterSecondHandOver:
        def __init__(self, s: Settings) -> None:
            self.inner = make_transport(s)
            self.handed = 0

        def open(self) -> None:
            self.inner.open()

        def send(self, message: Any) -> str:
            result = self.inner.send(message)
            self.handed += 1
            if self.handed == 2:
                raise Crash()  # delivered, but the process dies before the ledger records it
            return result

        def close(self) -> None:
            self.inner.close()

    with pytest.raises(Crash):
        run_jobs(world(settings, clock, DiesAfterSecondHandOver), ["outreach"])
    assert len(smtp.messages) == 2

    report = run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 3  # the third prospect, and nothing twice
    assert sorted(set(recipients(smtp))) == recipients(smtp)
    assert report.count("unknown") == 1
    statuses = partner_statuses(settings)
    assert statuses["P-0002"].startswith("Intro: unknown whether it was delivered")
    assert "partnerloop resolve P-0002 --job outreach --sent" in statuses["P-0002"]

    run_jobs(world(settings, clock), ["outreach"])  # still never re-sent automatically
    assert len(smtp.messages) == 3

    ledger = Ledger.in_state_dir(settings.state_dir)
    ledger.resolve("P-0002", "outreach", sent=False, now=clock())  # staff ask for a re-send
    run_jobs(world(settings, clock), ["outreach"])
    assert recipients(smtp).count("coach2@studio2.example") == 2


def test_staff_confirming_an_unknown_send_completes_the_row(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 1)
    clock = FakeClock(FRIDAY_9AM)

    def dies(s: Settings) -> Any:
        inner = make_transport(s)

        class T:
            open, close = inner.open, inner.close

            def send(self, message: Any) -> str:
                inner.send(message)
                raise Crash()
        return T()

    with pytest.raises(Crash):
        run_jobs(world(settings, clock, dies), ["outreach"])
    Ledger.in_state_dir(settings.state_dir).resolve("P-0001", None, sent=True, now=clock())
    run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 1
    book = read_book(open_backend(settings), settings)
    assert (book.partners[0].stage, book.partners[0].status) == ("Contacted", "Intro sent 2026-11-27; follow-up 1 due 2026-12-04")


def test_a_failed_write_back_is_completed_next_run_without_sending_again(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 2)
    clock = FakeClock(FRIDAY_9AM)
    broken = world(settings, clock)
    real_write = broken.backend.write
    calls = {"n": 0}

    def failing_write(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        raise SheetError("cannot reach the spreadsheet (test)")

    broken.backend.write = failing_write  # type: ignore[method-assign]
    with pytest.raises(SheetError):
        run_jobs(broken, ["outreach"])
    assert len(smtp.messages) == 2 and calls["n"] == 1
    assert partner_statuses(settings) == {"P-0001": "", "P-0002": ""}
    del real_write

    report = run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 2
    assert report.count("already") == 2
    book = read_book(open_backend(settings), settings)
    assert [(p.stage, p.status) for p in book.partners] == [
        ("Contacted", "Intro sent 2026-11-27; follow-up 1 due 2026-12-04")] * 2
    log = open_backend(settings).read(["Log"])["Log"]
    assert log is not None and len(log.rows) == 2


def test_a_refused_address_is_reported_and_retried_only_after_it_changes(
    tmp_path: Path, smtp: SmtpServer, staff_for: Any
) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 3)
    smtp.refuse("coach2@studio2.example", 550, "No such user")
    clock = FakeClock(FRIDAY_9AM)
    run_jobs(world(settings, clock), ["outreach"])
    assert recipients(smtp) == ["coach1@studio1.example", "coach3@studio3.example"]
    status = partner_statuses(settings)["P-0002"]
    assert status.startswith("Not sent: the mail server refused the partner's address") and "550" in status

    clock.advance(hours=2)
    run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 2  # same address: not tried again

    staff: Staff = staff_for(settings)
    staff.edit("Partners", "P-0002", Email="coach2@studio2-new.example")
    run_jobs(world(settings, clock), ["outreach"])
    assert recipients(smtp) == ["coach1@studio1.example", "coach2@studio2-new.example", "coach3@studio3.example"]


def test_a_dropped_connection_holds_the_rest_for_the_next_run(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 5)
    smtp.fail_next(3, 421)
    clock = FakeClock(FRIDAY_9AM)
    report = run_jobs(world(settings, clock), ["outreach"])
    assert report.fatal.startswith("mail server:")
    assert len(smtp.messages) == 0 and report.count("held") == 5
    assert partner_statuses(settings)["P-0003"].startswith("Intro held: mail server unavailable")
    run_jobs(world(settings, clock), ["outreach"])
    assert len(recipients(smtp)) == 5 and len(set(recipients(smtp))) == 5


def test_send_window_holds_until_it_opens(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 2)
    clock = FakeClock(datetime(2026, 11, 28, 10, 0, tzinfo=TZ))  # Saturday
    report = run_jobs(world(settings, clock), ["outreach"])
    assert report.count("held") == 2 and not smtp.messages
    assert partner_statuses(settings)["P-0001"] == ("Intro held: outside the send window (Mon-Fri 08:30-17:30); "
                                                    "goes out from Mon 2026-11-30 08:30")
    clock.now = datetime(2026, 11, 30, 8, 29, tzinfo=TZ)
    run_jobs(world(settings, clock), ["outreach"])
    assert not smtp.messages
    clock.now = datetime(2026, 11, 30, 8, 30, tzinfo=TZ)
    run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 2


def test_daily_limit_counts_a_rolling_24_hours_of_actual_sends(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp, daily_limit=3)
    prospects(settings, 5)
    clock = FakeClock(datetime(2026, 11, 26, 16, 0, tzinfo=TZ))  # Thursday afternoon
    report = run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 3 and report.count("held") == 2
    assert "daily_limit 3 reached" in partner_statuses(settings)["P-0004"]
    clock.now = datetime(2026, 11, 27, 15, 59, tzinfo=TZ)  # 23h59 later: still within the 24 hours
    run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 3
    clock.advance(minutes=1)
    run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 5


def test_per_minute_pacing_waits_exactly(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp, per_minute=20)
    prospects(settings, 4)
    clock = FakeClock(FRIDAY_9AM)
    run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 4
    assert clock.slept == [3.0, 3.0, 3.0]


def test_limit_sends_at_most_n_and_the_rest_next_run(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 3)
    clock = FakeClock(FRIDAY_9AM)
    report = run_jobs(world(settings, clock), ["outreach"], limit=1)
    assert len(smtp.messages) == 1 and report.count("held") == 2
    run_jobs(world(settings, clock), ["outreach"])
    assert len(smtp.messages) == 3


def test_dry_run_shows_the_plan_and_touches_nothing(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 2)
    before = settings.sheet.path.read_bytes()
    report = run_jobs(world(settings, FakeClock(FRIDAY_9AM)), ["outreach"], dry_run=True)
    assert report.count("dry-run") == 2
    assert [w.values["Stage"] for w in report.writes] == ["Contacted", "Contacted"]
    assert not smtp.messages and settings.sheet.path.read_bytes() == before
    assert list(Ledger.in_state_dir(settings.state_dir).records()) == []


def test_a_second_run_of_the_same_job_is_refused_and_sends_nothing(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = smtp_settings(tmp_path, smtp)
    prospects(settings, 1)
    with JobLock(settings.state_dir, "outreach"):
        with pytest.raises(AlreadyRunning, match="outreach is already running"):
            run_jobs(world(settings, FakeClock(FRIDAY_9AM)), ["outreach"])
    assert not smtp.messages


def test_merge_writes_joins_statuses_and_lets_carried_ones_fill_only_what_is_unsaid() -> None:
    from automations.executor import merge_writes
    from automations.sheets.base import RowWrite

    merged = merge_writes(
        [RowWrite("Referrals", "R-1", {"Automation status": "Partner emailed 2026-11-27", "Partner emailed": 1}),
         RowWrite("Referrals", "R-1", {"Automation status": "Patient emailed 2026-11-27"}),
         RowWrite("Partners", "P-1", {"Automation status": "No reply after the last follow-up: call Ann"})],
        fallback=[RowWrite("Partners", "P-1", {"Automation status": "Follow-up 2 sent 2026-11-20", "Outreach step": 3}),
                  RowWrite("Events", "E-1", {"Automation status": "Reminder sent 2026-11-20"}),
                  RowWrite("Events", "E-1", {"Automation status": "Staff reminder sent 2026-11-20"}),
                  RowWrite("Referrals", "R-1", {"Partner emailed": 0, "Thanks sent": 2})],
    )
    assert {(w.tab, w.row_id): dict(w.values) for w in merged} == {
        ("Referrals", "R-1"): {"Partner emailed": 1, "Thanks sent": 2,
                               "Automation status": "Partner emailed 2026-11-27; Patient emailed 2026-11-27"},
        ("Partners", "P-1"): {"Outreach step": 3, "Automation status": "No reply after the last follow-up: call Ann"},
        ("Events", "E-1"): {"Automation status": "Reminder sent 2026-11-20; Staff reminder sent 2026-11-20"},
    }
