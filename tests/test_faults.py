"""Faults of the outside world: a flaky Sheets API and a misbehaving mail server.

Runs go in-process through `run_jobs` with the real GoogleBackend (gspread over HTTP to the
emulator) and a real loopback SMTP server; every backoff sleep is injected and recorded, so
nothing really sleeps. Whatever fails, no email goes out twice, the rest goes out on the next
run, and the rows say what happened.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from automations.config import Settings
from automations.errors import SheetError
from automations.executor import RunReport, World, run_jobs
from automations.jobs import JOBS
from automations.mail.ledger import Ledger
from automations.mail.transport import Transport, make_transport
from automations.model import read_book
from automations.sheets import open_backend
from automations.sheets.google import GoogleBackend, RetryingHTTPClient
from tests.conftest import google_settings, make_settings, seed_sheet, world_for
from tests.support.smtp_server import SmtpServer, email_section

TZ = ZoneInfo("America/Chicago")
FRIDAY_10AM = datetime(2026, 11, 27, 10, 0, tzinfo=TZ)
ALL_JOBS = list(JOBS)
OWNER = "owner@riverside-pt.example"


def due_with_digest(prospects: int) -> int:
    """What `seed` makes due: an intro per prospect, three referral thank-yous, the owner's weekly digest and
    Harbor Gym's quarterly scorecard."""
    return prospects + 3 + 1 + 1


class Sleeps:
    """The sleep passed to the Sheets client: records each backoff instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    @property
    def total(self) -> float:
        return sum(self.waits)


def smtp_email(server: SmtpServer, **extra: Any) -> dict[str, Any]:
    return email_section(server, send_window="Mon-Sun 00:00-23:59", daily_limit=10000, **extra)


def seed(settings: Settings, n: int) -> None:
    partners = [{"Partner ID": f"P-{i:04d}", "Business": f"Studio {i}", "Contact name": f"Coach {i}",
                 "Email": f"coach{i}@studio{i}.example", "Stage": "Prospect"} for i in range(1, n + 1)]
    partners.append({"Partner ID": "P-0900", "Business": "Harbor Gym", "Contact name": "Dana Reyes",
                     "Email": "dana@harbor.example", "Stage": "Active", "Stage since": "2026-01-05"})
    referrals = [{"Referral ID": f"R-{i:04d}", "Direction": "In", "Partner": "Harbor Gym",
                  "Patient first name": f"Client{i}", "Referred on": "2026-11-25", "Consent": "Yes"}
                 for i in range(1, 4)]
    seed_sheet(settings, partners=partners, referrals=referrals)


def google_world(settings: Settings, sleeps: Sleeps,
                 transport_factory: Callable[[Settings], Transport] = make_transport,
                 now: datetime = FRIDAY_10AM) -> World:
    return world_for(settings, lambda: now, backend=GoogleBackend(settings.sheet, sleep=sleeps),
                     sleep=lambda s: None, transport_factory=transport_factory)


def xlsx_world(settings: Settings, now: datetime = FRIDAY_10AM,
               transport_factory: Callable[[Settings], Transport] = make_transport) -> World:
    return world_for(settings, lambda: now, sleep=lambda s: None, transport_factory=transport_factory)


def arrivals(server: SmtpServer) -> Counter[str]:
    return Counter(r for m in server.messages for r in m.recipients)


def statuses(settings: Settings) -> dict[str, str]:
    book = read_book(open_backend(settings, sleep=lambda s: None), settings)
    rows: list[Any] = [*book.partners, *book.referrals]
    return {row.id: row.status for row in rows}


def log_ids(settings: Settings) -> Counter[str]:
    log = open_backend(settings, sleep=lambda s: None).read(["Log"])["Log"]
    assert log is not None
    return Counter(str(log.get(row, "Message-ID")) for row in log.rows)


def attempts_per_request(requests: list[Any]) -> list[int]:
    """How many times each logical request was sent: a failed request followed by the same request is a retry."""
    counts: list[int] = []
    previous = None
    for request in requests:
        signature = (request.method, request.path, repr(request.query), repr(request.body))
        if previous is not None and previous.failed_status is not None and signature == (
                previous.method, previous.path, repr(previous.query), repr(previous.body)):
            counts[-1] += 1
        else:
            counts.append(1)
        previous = request
    return counts


class AfterSends:
    """The real transport; after the n-th delivered message, *then* runs (a fault starts mid-run)."""

    def __init__(self, settings: Settings, n: int, then: Callable[[], None]) -> None:
        self.inner = make_transport(settings)
        self.n = n
        self.then = then
        self.sent = 0

    def open(self) -> None:
        self.inner.open()

    def send(self, message: Any) -> str:
        result = self.inner.send(message)
        self.sent += 1
        if self.sent == self.n:
            self.then()
        return result

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> AfterSends:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# -- the Sheets API failing now and then ---------------------------------------------------------------


FOLLOW_UP_DAYS = (0, 7, 21)  # intros, follow-up 1 a week later, follow-up 2 two weeks after that


@pytest.mark.parametrize("seed_", [7, 2026, 31337])
def test_a_fifth_of_sheets_requests_failing_never_duplicates_and_completes(
    tmp_path: Path, emulator: Any, smtp: SmtpServer, seed_: int
) -> None:
    settings = google_settings(tmp_path, emulator, email=smtp_email(smtp))
    seed(settings, 40)
    sleeps = Sleeps()
    since = len(emulator.requests)
    emulator.fail_rate(0.2, seed=seed_)
    runs: list[RunReport | SheetError] = []
    clients = []
    try:
        for day in FOLLOW_UP_DAYS:
            now = FRIDAY_10AM + timedelta(days=day)
            for _attempt in range(3):  # a run completes, or stops with a SheetError and the next one completes
                world = google_world(settings, sleeps, now=now)
                clients.append(world.backend.http)  # type: ignore[attr-defined]
                try:
                    runs.append(run_jobs(world, ALL_JOBS))
                    break
                except SheetError as exc:
                    runs.append(exc)
            assert isinstance(runs[-1], RunReport), runs
        requests = [r for r in emulator.requests[since:] if r.spreadsheet_id == settings.sheet.key]
    finally:
        emulator.reset_faults()

    counts = attempts_per_request(requests)
    failed = Counter(r.failed_status for r in requests if r.failed_status)
    total_wait = sum(c.total_wait for c in clients)
    print(f"\nSheets faults (seed {seed_}): {len(requests)} requests, {sum(failed.values())} failed {dict(failed)}, "
          f"{sum(c.retries for c in clients)} retries, total backoff {total_wait:.1f} s injected "
          f"(max {max(sleeps.waits, default=0):.1f} s), {len(runs)} run(s), "
          f"{sum(isinstance(r, SheetError) for r in runs)} stopped by a SheetError")
    assert max(counts) <= RetryingHTTPClient.attempts
    assert sum(failed.values()) > 0
    assert len(sleeps.waits) == sum(c.retries for c in clients) == sum(n - 1 for n in counts)
    assert sleeps.total == pytest.approx(total_wait)
    assert all(0 <= w <= RetryingHTTPClient.max_delay for w in sleeps.waits)

    # Each step once: three letters per prospect, three thank-yous, a digest per week, a scorecard per quarter;
    # the rows say so.
    sent = Counter((m.recipients[0], str(m.message["X-Partnerloop-Template"])) for m in smtp.messages)
    expected = Counter({(f"coach{i}@studio{i}.example", t): 1 for i in range(1, 41)
                        for t in ("outreach_intro", "outreach_follow_up_1", "outreach_follow_up_2")})
    expected[("dana@harbor.example", "referral_thanks")] = 3  # one per referral
    expected[(OWNER, "owner_digest")] = 3  # one per ISO week
    expected[("dana@harbor.example", "partner_scorecard")] = 1  # one per quarter
    assert sent == expected
    rows = statuses(settings)
    total = len(smtp.messages)
    run_jobs(google_world(settings, Sleeps(), now=FRIDAY_10AM + timedelta(days=21, hours=1)), ALL_JOBS)
    assert len(smtp.messages) == total  # no faults now: nothing more is due
    assert all(rows[f"P-{i:04d}"].startswith("Follow-up 2 sent 2026-12-18") for i in range(1, 41))
    assert all(rows[f"R-{i:04d}"].startswith("Thank-you sent 2026-11-27") for i in range(1, 4))
    assert set(log_ids(settings)) >= {str(m.message["Message-ID"]) for m in smtp.messages}


def test_a_write_back_that_keeps_failing_stops_cleanly_and_the_next_run_completes_it(
    tmp_path: Path, emulator: Any, smtp: SmtpServer
) -> None:
    settings = google_settings(tmp_path, emulator, email=smtp_email(smtp))
    seed(settings, 5)
    sleeps = Sleeps()

    def outage() -> None:  # from the last delivery on, the Sheets API answers nothing but errors
        emulator.fail_rate(1.0, seed=5)

    since = len(emulator.requests)
    try:
        with pytest.raises(SheetError, match="Google Sheets answered"):
            run_jobs(google_world(settings, sleeps, lambda s: AfterSends(s, due_with_digest(5), outage)), ALL_JOBS)
    finally:
        emulator.reset_faults()
    requests = [r for r in emulator.requests[since:] if r.spreadsheet_id == settings.sheet.key]
    assert len(smtp.messages) == due_with_digest(5)
    assert max(attempts_per_request(requests)) <= RetryingHTTPClient.attempts
    print(f"\nwrite-back outage: {sum(1 for r in requests if r.failed_status)} failed attempts, "
          f"{len(sleeps.waits)} retries, total backoff {sleeps.total:.1f} s injected")
    assert not any(s.startswith(("Intro sent", "Thank-you sent")) for s in statuses(settings).values())

    report = run_jobs(google_world(settings, Sleeps()), ALL_JOBS)
    assert len(smtp.messages) == due_with_digest(5)
    assert report.count("already") == due_with_digest(5) - 1  # the scorecard job knows its own is done
    rows = statuses(settings)
    assert all(rows[f"P-{i:04d}"].startswith("Intro sent") for i in range(1, 6))
    assert rows["P-0900"] == "Quarterly scorecard sent 2026-11-27: Q3 2026 against Q2 2026"
    assert all(rows[f"R-{i:04d}"].startswith("Thank-you sent") for i in range(1, 4))
    assert sorted(log_ids(settings).values()) == [1] * due_with_digest(5)


def test_a_sheet_that_cannot_be_read_stops_before_sending_anything(
    tmp_path: Path, emulator: Any, smtp: SmtpServer
) -> None:
    settings = google_settings(tmp_path, emulator, email=smtp_email(smtp))
    seed(settings, 3)
    emulator.fail_next(RetryingHTTPClient.attempts, 429, "json")
    try:
        with pytest.raises(SheetError, match="429"):
            run_jobs(google_world(settings, Sleeps()), ALL_JOBS)
    finally:
        emulator.reset_faults()
    assert not smtp.messages
    run_jobs(google_world(settings, Sleeps()), ALL_JOBS)
    assert sorted(arrivals(smtp).values()) == [1, 1, 1, 1, 4]  # three intros, the digest; three thank-yous and
    # the scorecard to Harbor Gym


def test_an_html_error_page_becomes_one_plain_line(tmp_path: Path, emulator: Any) -> None:
    settings = google_settings(tmp_path, emulator)
    emulator.fail_next(RetryingHTTPClient.attempts, 503, "html")
    try:
        with pytest.raises(SheetError) as caught:
            GoogleBackend(settings.sheet, sleep=lambda s: None).read(["Partners"])
    finally:
        emulator.reset_faults()
    message = str(caught.value)
    assert "503" in message and "\n" not in message and "<" not in message, message


# -- the mail server misbehaving -------------------------------------------------------------------------


def prospects_xlsx(tmp_path: Path, smtp: SmtpServer, n: int, **email: Any) -> Settings:
    """n due intros and nothing else (no owner digest), on an xlsx workbook."""
    settings = make_settings(tmp_path, email=smtp_email(smtp, **email), clinic={"owner_email": ""})
    rows = [{"Partner ID": f"P-{i:04d}", "Business": f"Studio {i}", "Contact name": f"Coach {i}",
             "Email": f"coach{i}@studio{i}.example", "Stage": "Prospect"} for i in range(1, n + 1)]
    seed_sheet(settings, partners=rows)
    return settings


def test_421_mid_run_holds_the_rest_and_the_next_run_sends_it_once(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = prospects_xlsx(tmp_path, smtp, 10)
    report = run_jobs(xlsx_world(settings, transport_factory=lambda s: AfterSends(s, 4, lambda: smtp.fail_next(2, 421))),
                      ALL_JOBS)
    assert len(smtp.messages) == 4 and report.count("held") == 6 and report.fatal.startswith("mail server:")
    rows = statuses(settings)
    assert all(rows[f"P-{i:04d}"].startswith("Intro sent") for i in range(1, 5))
    assert all(rows[f"P-{i:04d}"].startswith("Intro held: mail server unavailable") for i in range(5, 11))

    run_jobs(xlsx_world(settings), ALL_JOBS)
    assert arrivals(smtp) == Counter({f"coach{i}@studio{i}.example": 1 for i in range(1, 11)})
    assert all(s.startswith("Intro sent") for s in statuses(settings).values())


def test_a_connection_the_server_closes_after_a_message_is_reopened_and_nothing_repeats(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = prospects_xlsx(tmp_path, smtp, 8)
    smtp.drop_after(3)
    report = run_jobs(xlsx_world(settings), ALL_JOBS)
    assert report.count("sent") == 8 and not report.fatal
    assert smtp.connections == 2
    assert arrivals(smtp) == Counter({f"coach{i}@studio{i}.example": 1 for i in range(1, 9)})
    assert all(s.startswith("Intro sent") for s in statuses(settings).values())


def test_a_connection_lost_before_the_reply_leaves_one_unknown_send_that_is_never_repeated(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = prospects_xlsx(tmp_path, smtp, 6)
    report = run_jobs(xlsx_world(settings, transport_factory=lambda s: AfterSends(s, 2, lambda: smtp.drop_before_reply(1))),
                      ALL_JOBS)
    assert len(smtp.messages) == 3 and report.count("unknown") == 1 and report.count("held") == 3
    rows = statuses(settings)
    assert "unknown whether it was delivered" in rows["P-0003"]
    assert "partnerloop resolve P-0003 --job outreach" in rows["P-0003"]
    assert all(rows[f"P-{i:04d}"].startswith("Intro held") for i in range(4, 7))

    run_jobs(xlsx_world(settings), ALL_JOBS)
    run_jobs(xlsx_world(settings, FRIDAY_10AM + timedelta(hours=1)), ALL_JOBS)
    assert arrivals(smtp) == Counter({f"coach{i}@studio{i}.example": 1 for i in range(1, 7)})
    assert "unknown whether it was delivered" in statuses(settings)["P-0003"]
    assert [r.key.row_id for r in Ledger.in_state_dir(settings.state_dir).unknown()] == ["P-0003"]


def test_550_for_some_recipients_is_written_on_their_rows_and_not_retried(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = prospects_xlsx(tmp_path, smtp, 6)
    smtp.refuse("coach2@studio2.example", 550, "5.1.1 <coach2@studio2.example>: no such mailbox")
    smtp.refuse("coach5@studio5.example", 553, "5.1.3 mailbox name not allowed")
    report = run_jobs(xlsx_world(settings), ALL_JOBS)
    assert report.count("sent") == 4 and report.count("refused") == 2 and not report.fatal
    rows = statuses(settings)
    for row_id, code in (("P-0002", "550"), ("P-0005", "553")):
        assert rows[row_id].startswith("Not sent: the mail server refused the partner's address") and code in rows[row_id]
        assert "correct it to retry" in rows[row_id]
    assert "coach2@studio2.example" not in rows["P-0002"]  # the reply's copy of the address is taken out

    run_jobs(xlsx_world(settings, FRIDAY_10AM + timedelta(hours=2)), ALL_JOBS)
    assert arrivals(smtp) == Counter({f"coach{i}@studio{i}.example": 1 for i in (1, 3, 4, 6)})
    log = open_backend(settings).read(["Log"])["Log"]
    assert log is not None
    results = {log.get(r, "Row"): str(log.get(r, "Result")) for r in log.rows}
    assert results["P-0002"].startswith("refused: 550") and results["P-0001"] == "sent"


def test_a_server_slower_than_the_timeout_leaves_one_unknown_send_and_the_rest_for_the_next_run(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = prospects_xlsx(tmp_path, smtp, 4, timeout=0.3)
    smtp.delay(1.0)  # the message is taken; the answer comes after the client stopped waiting
    report = run_jobs(xlsx_world(settings), ALL_JOBS)
    assert len(smtp.messages) == 1 and report.count("unknown") == 1 and report.count("held") == 3
    assert report.fatal.startswith("mail server:")
    rows = statuses(settings)
    assert "unknown whether it was delivered" in rows["P-0001"]
    assert all("held: the mail server connection broke" in rows[f"P-{i:04d}"] for i in range(2, 5))

    smtp.delay(0)
    run_jobs(xlsx_world(settings), ALL_JOBS)
    assert arrivals(smtp) == Counter({f"coach{i}@studio{i}.example": 1 for i in range(1, 5)})
    rows = statuses(settings)
    assert "unknown whether it was delivered" in rows["P-0001"]
    assert all(rows[f"P-{i:04d}"].startswith("Intro sent") for i in range(2, 5))
