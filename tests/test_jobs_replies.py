"""The replies job: the pure decision on hand-made messages, then the whole loop against real servers.

The end-to-end tests send real outreach emails through the executor to a loopback SMTP server, put
the answers into a real Dovecot mailbox on 127.0.0.1, run `replies`, and check the sheet, the
ledger and what the next `outreach` run sends.
"""

from __future__ import annotations

import itertools
import json
import logging
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

import pytest

from automations.cells import parse_date
from automations.config import Settings
from automations.core import InboundMessage, Inbox
from automations.executor import World, run_jobs
from automations.jobs import JOBS
from automations.jobs.plan import JobInput, Plan
from automations.jobs.replies import OPT_OUT_REASON, plan_replies
from automations.mail.ledger import Ledger, SendKey
from automations.model import Book, parse_book, read_book
from automations.schema import EVENTS, OPTOUTS, PARTNERS, REFERRALS
from automations.sheets import open_backend
from automations.sheets.base import Table
from tests.conftest import Staff, google_settings, make_settings, seed_sheet, world_for
from tests.support.imap_server import ImapServer, imap_section
from tests.support.smtp_server import SmtpServer, email_section

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 3, 10, 0, tzinfo=TZ)
TODAY = NOW.date()
CLINIC = "partners@riverside-pt.example"
_uids = itertools.count(1)


# -- the pure decision --------------------------------------------------------------------------------
def make_book(partners: Sequence[Mapping[str, Any]] = (), referrals: Sequence[Mapping[str, Any]] = (),
              optouts: Sequence[str] = ()) -> Book:
    tables, titles = {}, {}
    rows_by_spec = ((PARTNERS, partners), (REFERRALS, referrals), (EVENTS, ()),
                    (OPTOUTS, [{"Email": a} for a in optouts]))
    for spec, rows in rows_by_spec:
        header = [c.name for c in spec.columns]
        tables[spec.key] = Table.from_grid(spec.title, [header, *([row.get(h) for h in header] for row in rows)])
        titles[spec.key] = spec.title
    return parse_book(tables, titles)


def partner(pid: str, email: str, stage: str = "Contacted", status: str = "") -> dict[str, Any]:
    return {"Partner ID": pid, "Business": f"Business {pid}", "Email": email, "Stage": stage,
            "Automation status": status}


def message(sender: str = "", **fields: Any) -> InboundMessage:
    fields.setdefault("date", datetime(2026, 11, 3, 8, 0, tzinfo=TZ))
    fields.setdefault("uidvalidity", 7)
    fields.setdefault("to_addresses", (CLINIC,))
    return InboundMessage(uid=next(_uids), from_address=sender, **fields)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def decide(settings: Settings, book: Book, *inbox: InboundMessage, sent: Mapping[str, SendKey] | None = None,
           replied: Mapping[str, date] | None = None, remembered: Mapping[str, str] | None = None) -> Plan:
    return plan_replies(JobInput(book=book, now=NOW, settings=settings, inbox=Inbox(inbox), sent_messages=sent or {},
                                 replied=replied or {}, remembered=remembered or {}))


def statuses(plan: Plan) -> dict[str, str]:
    return {w.row_id: w.values["Automation status"] for w in plan.writes}


INTRO = {"<intro-1@riverside-pt.example>": SendKey("outreach", "P-0001", "intro")}


def test_a_reply_in_the_thread_of_an_outreach_email_ends_the_sequence(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example"), partner("P-0002", "other@gym.example")])
    reply = message("assistant@gym.example", in_reply_to="<INTRO-1@riverside-pt.example>")
    plan = decide(settings, book, reply, sent=INTRO)
    assert plan.replies == {"P-0001": TODAY}
    assert statuses(plan) == {"P-0001": "Replied 2026-11-03: update Stage"}
    assert plan.appends == {} and plan.bounces == {}


def test_a_reply_found_by_references_only(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    reply = message("assistant@gym.example", references=("<unknown@x.example>", "<intro-1@riverside-pt.example>"))
    assert decide(settings, book, reply, sent=INTRO).replies == {"P-0001": TODAY}


def test_an_unthreaded_reply_is_matched_by_the_senders_address(settings: Settings) -> None:
    book = make_book([partner("P-0001", "Coach@Gym.Example", stage="Prospect")])
    plan = decide(settings, book, message("coach@gym.example", subject="Partnership?"))
    assert plan.replies == {"P-0001": TODAY}
    assert statuses(plan) == {"P-0001": "Replied 2026-11-03: update Stage"}


def test_a_reply_to_a_partner_past_the_outreach_sequence_changes_nothing(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example", stage="Meeting")])
    plan = decide(settings, book, message("coach@gym.example", in_reply_to="<intro-1@riverside-pt.example>"),
                  sent=INTRO)
    assert (plan.replies, plan.writes) == ({}, ())


def test_an_automatic_reply_is_not_a_reply(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    plan = decide(settings, book, message("coach@gym.example", subject="Out of office", auto_submitted=True,
                                          in_reply_to="<intro-1@riverside-pt.example>"), sent=INTRO)
    assert (plan.replies, plan.writes, plan.appends) == ({}, (), {})


def test_a_message_matching_nothing_is_ignored(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    plan = decide(settings, book, message("stranger@elsewhere.example", first_lines=("Please unsubscribe me",)))
    assert (plan.replies, plan.writes, plan.appends, plan.bounces) == ({}, (), {}, {})


def test_the_clinics_own_mail_and_a_daemons_are_not_replies(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    staff = message("frontdesk@riverside-pt.example", in_reply_to="<intro-1@riverside-pt.example>")
    daemon = message("mailer-daemon@mx.example", in_reply_to="<intro-1@riverside-pt.example>")
    assert decide(settings, book, staff, daemon, sent=INTRO).writes == ()


@pytest.mark.parametrize("subject, lines", [
    ("Re: A partnership", ("Please unsubscribe me.",)),
    ("Re: A partnership", ("Hi,", "remove me from your list")),
    ("Re: A partnership", ("STOP",)),
    ("Re: A partnership", ("Please stop.",)),
    ("Re: A partnership", ("I'd like to opt out",)),
    ("Re: A partnership", ("opt-out please",)),
    ("RE: Unsubscribe", ()),
    ("Stop", ()),
])
def test_a_reply_asking_to_stop_goes_on_opt_outs(settings: Settings, subject: str, lines: tuple[str, ...]) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    plan = decide(settings, book, message("coach@gym.example", subject=subject, first_lines=lines,
                                          in_reply_to="<intro-1@riverside-pt.example>"), sent=INTRO)
    assert plan.appends == {"optouts": ({"Email": "coach@gym.example", "Date": TODAY, "Reason": OPT_OUT_REASON},)}
    assert statuses(plan) == {"P-0001": "Opted out by email 2026-11-03"}
    assert plan.replies == {}


@pytest.mark.parametrize("lines", [
    ("Great to hear from you! Stop by on Tuesday?",),
    ("We can't stop talking about this idea.",),
    ("I unsubscribed from the other list, but yours is fine",),
])
def test_friendly_replies_are_not_opt_outs(settings: Settings, lines: tuple[str, ...]) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    plan = decide(settings, book, message("coach@gym.example", first_lines=lines))
    assert plan.appends == {} and plan.replies == {"P-0001": TODAY}


def test_the_list_unsubscribe_message_works_from_anyone(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    plan = decide(settings, book, message("forwarded@elsewhere.example", subject="unsubscribe"),
                  message("coach@gym.example", subject="Unsubscribe", auto_submitted=True))
    assert [r["Email"] for r in plan.appends["optouts"]] == ["forwarded@elsewhere.example", "coach@gym.example"]
    assert statuses(plan) == {"P-0001": "Opted out by email 2026-11-03"}


def test_an_address_already_on_opt_outs_is_not_added_again(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example", status="Opted out by email 2026-11-03")],
                     optouts=["Coach@Gym.example"])
    twice = [message("coach@gym.example", subject="unsubscribe") for _ in range(2)]
    plan = decide(settings, book, *twice)
    assert (plan.appends, plan.writes) == ({}, ())
    fresh = make_book([partner("P-0001", "coach@gym.example")])
    assert len(decide(settings, fresh, *twice).appends["optouts"]) == 1  # one row for two requests


def test_someone_else_asking_to_stop_in_a_partners_thread(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    plan = decide(settings, book, message("assistant@gym.example", first_lines=("Please remove me",),
                                          in_reply_to="<intro-1@riverside-pt.example>"), sent=INTRO)
    assert [r["Email"] for r in plan.appends["optouts"]] == ["assistant@gym.example"]
    assert plan.replies == {"P-0001": TODAY}  # the partner's own address was not opted out: staff decide
    assert statuses(plan) == {"P-0001": "Replied 2026-11-03: update Stage"}


def test_a_bounce_of_a_patient_email_is_said_on_the_referral(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example", stage="Active")],
                     [{"Referral ID": "R-0001", "Direction": "Out", "Partner": "P-0001", "Patient first name": "Jo",
                       "Patient email": "jo@mail.example", "Consent": "Yes"}])
    sent = {"<patient-1@riverside-pt.example>": SendKey("discharge", "R-0001", "patient")}
    bounce = message("mailer-daemon@mx.example", is_bounce=True, auto_submitted=True,
                     bounced_recipients=("jo@mail.example",), bounced_message_id="<patient-1@riverside-pt.example>")
    plan = decide(settings, book, bounce, sent=sent)
    assert plan.bounces == {"jo@mail.example": TODAY}
    assert statuses(plan) == {"R-0001": "Patient email bouncing since 2026-11-03: correct it"}
    assert plan.replies == {} and plan.appends == {}


def test_a_bounce_without_the_returned_message_finds_the_partner_by_address(settings: Settings) -> None:
    book = make_book([partner("P-0001", "Gone@Gym.example"), partner("P-0002", "fixed@gym.example")])
    first = message("postmaster@mx.example", is_bounce=True, bounced_recipients=("gone@gym.example",),
                    date=datetime(2026, 11, 2, 12, 0, tzinfo=TZ))
    again = message("postmaster@mx.example", is_bounce=True, bounced_recipients=("gone@gym.example",))
    corrected = message("postmaster@mx.example", is_bounce=True, bounced_recipients=("old@gym.example",),
                        bounced_message_id="<intro-2@riverside-pt.example>")
    plan = decide(settings, book, again, first, corrected,
                  sent={"<intro-2@riverside-pt.example>": SendKey("outreach", "P-0002", "intro")})
    assert plan.bounces == {"gone@gym.example": date(2026, 11, 2), "old@gym.example": TODAY}
    # P-0002's address was corrected since: the bounce is recorded, the row has nothing to fix
    assert statuses(plan) == {"P-0001": "Email bouncing since 2026-11-02: correct the address"}


def test_a_delay_warning_changes_nothing(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    plan = decide(settings, book, message("mailer-daemon@mx.example", is_bounce=True,
                                          in_reply_to="<intro-1@riverside-pt.example>"), sent=INTRO)
    assert (plan.bounces, plan.writes, plan.replies) == ({}, (), {})


def test_one_status_per_row_the_strongest_news(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example")])
    plan = decide(settings, book, message("coach@gym.example", first_lines=("Sure!",)),
                  message("mailer-daemon@mx.example", is_bounce=True, bounced_recipients=("coach@gym.example",)),
                  message("coach@gym.example", subject="unsubscribe"))
    assert statuses(plan) == {"P-0001": "Opted out by email 2026-11-03"}
    assert len(plan.writes) == 1 and plan.replies == {}


def test_a_reply_already_recorded_rewrites_nothing(settings: Settings) -> None:
    book = make_book([partner("P-0001", "coach@gym.example", status="Replied 2026-11-02: update Stage")])
    plan = decide(settings, book, message("coach@gym.example"), replied={"P-0001": date(2026, 11, 2)})
    assert (plan.replies, plan.writes) == ({}, ())
    moved_on = make_book([partner("P-0001", "coach@gym.example", status="Something else")])
    plan = decide(settings, moved_on, message("coach@gym.example"), replied={"P-0001": date(2026, 11, 2)})
    assert statuses(plan) == {"P-0001": "Replied 2026-11-02: update Stage"}  # the first reply's day


def test_the_day_is_the_clinics_and_never_in_the_future(settings: Settings) -> None:
    book = make_book([partner("P-0001", "a@gym.example"), partner("P-0002", "b@gym.example")])
    late_utc = message("a@gym.example", date=datetime(2026, 11, 3, 3, 0, tzinfo=UTC))  # Nov 2 in Chicago
    future = message("b@gym.example", date=datetime(2027, 1, 1, tzinfo=UTC))
    assert decide(settings, book, late_utc, future).replies == {"P-0001": date(2026, 11, 2), "P-0002": TODAY}


def test_the_mailbox_position_is_kept_with_the_plan(settings: Settings) -> None:
    book = make_book()
    position = json.dumps({"uidvalidity": 7, "uid": 95, "mailbox": "partners@imap.example/INBOX"})
    inbox = Inbox((message("x@y.example"),), position)
    plan = plan_replies(JobInput(book=book, now=NOW, settings=settings, inbox=inbox))
    assert plan.remember == {"imap": position}
    assert plan_replies(JobInput(book=book, now=NOW, settings=settings)).remember == {}  # no mailbox read


def test_the_job_is_registered() -> None:
    assert JOBS["replies"] is plan_replies


# -- the whole loop, against real servers ---------------------------------------------------------------
MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=TZ)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


PARTNERS_SEED = [
    {"Partner ID": "P-0001", "Business": "Threaded Gym", "Contact name": "Tess Reed", "Email": "tess@gym1.example",
     "Stage": "Prospect", "Why partner": "strength after rehab"},
    {"Partner ID": "P-0002", "Business": "Unthreaded Yoga", "Contact name": "Uma Lee",
     "Email": "Hello@Yoga2.example", "Stage": "Prospect", "Why partner": "gentle mobility"},
    {"Partner ID": "P-0003", "Business": "Away Studio", "Contact name": "Avi Ross", "Email": "avi@studio3.example",
     "Stage": "Prospect", "Why partner": "balance classes"},
    {"Partner ID": "P-0004", "Business": "Leaving Pilates", "Contact name": "Lou Park",
     "Email": "lou@pilates4.example", "Stage": "Prospect", "Why partner": "core strength"},
    {"Partner ID": "P-0005", "Business": "Bouncing Gym", "Contact name": "Bo Finn", "Email": "bo@gym5.example",
     "Stage": "Prospect", "Why partner": "group classes"},
    {"Partner ID": "P-0006", "Business": "Quiet Club", "Contact name": "Quinn Day", "Email": "quinn@club6.example",
     "Stage": "Prospect", "Why partner": "running club"},
]


def loop_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest, smtp: SmtpServer,
                  imap: ImapServer, user: str, **imap_settings: Any) -> Settings:
    email = email_section(smtp, imap=imap_section(imap, user, **imap_settings))
    if backend == "google":
        return google_settings(tmp_path, request.getfixturevalue("emulator"), email=email)
    return make_settings(tmp_path, email=email)


def world(settings: Settings, clock: Clock) -> World:
    return world_for(settings, clock, sleep=lambda s: None)


def answer(sender: str, subject: str, body: str, when: datetime, **headers: str) -> EmailMessage:
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = CLINIC
    reply["Subject"] = subject
    reply["Date"] = format_datetime(when)
    reply["Message-ID"] = f"<{abs(hash((sender, subject, body)))}@answers.example>"
    for name, value in headers.items():
        reply[name.replace("_", "-")] = value
    reply.set_content(body)
    return reply


def bounce_of(original: EmailMessage, when: datetime) -> bytes:
    recipient = str(original["To"].addresses[0].addr_spec)
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.gym5.example>\r\n"
        f"To: {CLINIC}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(when)}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="RPT"\r\n\r\n'
        "--RPT\r\nContent-Type: text/plain\r\n\r\nThe mail system could not deliver your message.\r\n"
        "--RPT\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.gym5.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--RPT\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {original['From']}\r\nTo: {original['To']}\r\nMessage-ID: {original['Message-ID']}\r\n"
        f"Subject: {original['Subject']}\r\n"
        "--RPT--\r\n"
    ).encode()


@pytest.mark.parametrize("backend", ["xlsx", "google"])
def test_replies_opt_outs_and_bounces_end_the_sequence(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest, smtp: SmtpServer, imap: ImapServer,
        imap_user: str, caplog: pytest.LogCaptureFixture) -> None:
    user = imap_user
    settings = loop_settings(backend, tmp_path, request, smtp, imap, user)
    staff = Staff(settings, request.getfixturevalue("emulator") if backend == "google" else None)
    seed_sheet(settings, partners=PARTNERS_SEED)
    clock = Clock(MONDAY)
    assert run_jobs(world(settings, clock), ["outreach"]).count("sent") == 6
    intro = {m.recipients[0].lower(): m.message for m in smtp.messages}

    tuesday = datetime(2026, 11, 3, 8, 15, tzinfo=TZ)
    imap.deliver(user, answer("Front Desk <desk@gym1.example>", f"Re: {intro['tess@gym1.example']['Subject']}",
                              "Yes, Tess would love to meet.\n\n> quoted intro", tuesday,
                              In_Reply_To=str(intro["tess@gym1.example"]["Message-ID"])))
    imap.deliver(user, answer("hello@yoga2.example", "Partnership", "Call me any time!", tuesday))
    imap.deliver(user, answer("avi@studio3.example", "Automatic reply: Partnership", "I am away until Monday.",
                              tuesday, Auto_Submitted="auto-replied",
                              In_Reply_To=str(intro["avi@studio3.example"]["Message-ID"])))
    imap.deliver(user, answer("lou@pilates4.example", "unsubscribe", "", tuesday))
    imap.deliver(user, bounce_of(intro["bo@gym5.example"], tuesday))
    imap.deliver(user, b"From: quinn@club6.example\r\nthis is not a header\r\nSubject: hi\r\n\r\nhello\r\n")
    imap.deliver(user, b"From: quinn@club6.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
                       b"Content-Type: text/plain; charset=x-unknown-9\r\n\r\nhello\r\n")
    imap.deliver(user, answer("someone@elsewhere.example", "Hello", "Is this the clinic?", tuesday))

    clock.now = datetime(2026, 11, 3, 10, 0, tzinfo=TZ)
    with caplog.at_level(logging.WARNING, logger="partnerloop"):
        report = run_jobs(world(settings, clock), ["replies"])
    assert report.fatal == "" and report.count("sent") == 0
    book = read_book(open_backend(settings), settings)
    assert {p.id: p.status for p in book.partners} == {
        "P-0001": "Replied 2026-11-03: update Stage",
        "P-0002": "Replied 2026-11-03: update Stage",
        "P-0003": "Intro sent 2026-11-02; follow-up 1 due 2026-11-09",
        "P-0004": "Opted out by email 2026-11-03",
        "P-0005": "Email bouncing since 2026-11-03: correct the address",
        "P-0006": "Intro sent 2026-11-02; follow-up 1 due 2026-11-09",
    }
    assert book.opted_out == {"lou@pilates4.example"}
    optouts = read_book(open_backend(settings), settings).tables["optouts"]
    assert [(optouts.get(r, "Email"), optouts.get(r, "Reason")) for r in optouts.rows] == [
        ("lou@pilates4.example", OPT_OUT_REASON)]
    opted_on = optouts.get(optouts.rows[0], "Date")
    assert parse_date(opted_on, "Date") == date(2026, 11, 3) and not isinstance(opted_on, str)  # a real date cell
    ledger = Ledger.in_state_dir(settings.state_dir)
    assert ledger.replied() == {"P-0001": date(2026, 11, 3), "P-0002": date(2026, 11, 3)}
    assert ledger.bounced("bo@gym5.example") == date(2026, 11, 3)
    assert json.loads(ledger.get_value("imap") or "{}")["uid"] == 8
    skipped = [r.getMessage() for r in caplog.records if "skipped message" in r.getMessage()]
    assert len(skipped) == 2 and "UID 6" in skipped[0] and "UID 7" in skipped[1]
    assert "quinn" not in caplog.text
    assert all("\\Seen" not in flags for flags in imap.flags(user).values())

    # Running it again changes nothing, also when the same people write again.
    before = (staff.grid("Partners"), staff.grid("Opt-outs"))
    run_jobs(world(settings, clock), ["replies"])
    imap.deliver(user, answer("lou@pilates4.example", "unsubscribe", "", tuesday))
    imap.deliver(user, answer("hello@yoga2.example", "Re: Partnership", "Did you get my note?", tuesday))
    run_jobs(world(settings, clock), ["replies"])
    assert (staff.grid("Partners"), staff.grid("Opt-outs")) == before

    # A week later, follow-up 1 goes only to the partners who neither replied, opted out nor bounced.
    clock.now = datetime(2026, 11, 9, 9, 0, tzinfo=TZ)
    report = run_jobs(world(settings, clock), ["outreach"])
    assert sorted(m.recipients[0] for m in smtp.messages[6:]) == ["avi@studio3.example", "quinn@club6.example"]
    book = read_book(open_backend(settings), settings)
    status = {p.id: p.status for p in book.partners}
    assert status["P-0001"] == status["P-0002"] == "Replied 2026-11-03: update Stage"
    assert status["P-0004"] == "Sequence stopped: the address is on Opt-outs"
    assert status["P-0005"].startswith("Not sent: the partner's address bounced on 2026-11-03")
    assert status["P-0003"].startswith("Follow-up 1 sent 2026-11-09")


def test_mark_read_marks_the_messages_a_run_read(tmp_path: Path, request: pytest.FixtureRequest, smtp: SmtpServer,
                                                 imap: ImapServer, imap_user: str) -> None:
    user = imap_user
    settings = loop_settings("xlsx", tmp_path, request, smtp, imap, user, mark_read=True)
    seed_sheet(settings, partners=PARTNERS_SEED[:1])
    imap.deliver(user, answer("tess@gym1.example", "Hello", "Let's talk", MONDAY))
    run_jobs(world(settings, Clock(MONDAY)), ["replies"])
    assert imap.flags(user) == {1: {"\\Seen"}}
    assert read_book(open_backend(settings), settings).partners[0].status == "Replied 2026-11-02: update Stage"


def test_an_unreachable_mailbox_stops_the_run_and_keeps_the_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     request: pytest.FixtureRequest) -> None:
    from automations.errors import MailError

    settings = make_settings(tmp_path, email={"timeout": 2, "imap": {"host": "127.0.0.1", "port": 9,
                                                                     "security": "none"}})
    seed_sheet(settings, partners=PARTNERS_SEED[:1])
    with pytest.raises(MailError, match=r"^IMAP 127\.0\.0\.1:9: "):
        run_jobs(world(settings, Clock(MONDAY)), ["replies"])
    ledger = Ledger.in_state_dir(settings.state_dir)
    assert ledger.get_value("imap") is None
    assert ledger.last_runs()["replies"].result == "failed"



def test_in_one_run_the_mailbox_is_read_before_anything_is_sent(
        tmp_path: Path, request: pytest.FixtureRequest, smtp: SmtpServer, imap: ImapServer,
        imap_user: str) -> None:
    user = imap_user
    settings = loop_settings("xlsx", tmp_path, request, smtp, imap, user)
    seed_sheet(settings, partners=PARTNERS_SEED)
    clock = Clock(MONDAY)
    run_jobs(world(settings, clock), ["outreach"])
    intro = {m.recipients[0].lower(): m.message for m in smtp.messages}
    follow_up_day = datetime(2026, 11, 9, 8, 0, tzinfo=TZ)  # the replies come in the morning follow-up 1 is due
    imap.deliver(user, answer("tess@gym1.example", "Re: hello", "Happy to meet!", follow_up_day,
                              In_Reply_To=str(intro["tess@gym1.example"]["Message-ID"])))
    imap.deliver(user, answer("lou@pilates4.example", "unsubscribe", "", follow_up_day))
    imap.deliver(user, bounce_of(intro["bo@gym5.example"], follow_up_day))

    clock.now = datetime(2026, 11, 9, 9, 0, tzinfo=TZ)
    report = run_jobs(world(settings, clock), ["replies", "outreach"])
    followed = sorted(m.recipients[0].lower() for m in smtp.messages[6:])
    assert followed == ["avi@studio3.example", "hello@yoga2.example", "quinn@club6.example"]
    assert any(line.startswith("replies: 3 new message(s) in the mailbox; 1 partner reply, 1 opt-out(s), 1 bounce(s)")
               for line in report.summary())
    status = {p.id: p.status for p in read_book(open_backend(settings), settings).partners}
    assert status["P-0001"] == "Replied 2026-11-09: update Stage"
    assert status["P-0004"].startswith("Opted out by email 2026-11-09")
    assert "bounc" in status["P-0005"]
