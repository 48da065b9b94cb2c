"""Sending and reading over the Gmail API: google-auth unmodified against the local token server and emulator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from automations.config import Settings
from automations.errors import MailError
from automations.executor import run_jobs
from automations.mail.gmail import GmailMailbox, GmailTransport
from automations.mail.ledger import Ledger
from automations.mail.oauth import GMAIL_READ, GMAIL_SEND
from automations.mail.transport import (
    AuthFailed,
    OutcomeUnknown,
    RecipientRefused,
    TemporaryFailure,
    make_transport,
    message_bytes,
)
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import make_settings, seed_sheet, world_for
from tests.support.gmail_emulator import GmailEmulator
from tests.support.google_token_server import GoogleTokenServer, write_key
from tests.support.sixty_days import EXPECTED, ROW_JOBS, TZ, d, day0_rows, deliver_sixty_days, staff_actions

USER = "partners@riverside-pt.example"


@dataclass
class Google:
    tokens: GoogleTokenServer
    gmail: GmailEmulator
    key: dict[str, Any]
    settings: Settings


@pytest.fixture
def google(tmp_path: Path) -> Iterator[Google]:
    with GoogleTokenServer() as tokens, GmailEmulator(tokens.book) as gmail:
        key = tokens.new_key()
        tokens.grant(key, USER, GMAIL_SEND, GMAIL_READ)
        settings = make_settings(tmp_path, email={"transport": "gmail", "google": {
            "credentials": str(write_key(tmp_path / "service-account.json", key)), "api_endpoint": gmail.url}})
        yield Google(tokens, gmail, key, settings)
        assert gmail.violations == []


def letter(to: str = "run@club.example", message_id: str = "<m1@riverside-pt.example>") -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = USER, to, "Partnership", message_id
    m.set_content("Hello from the clinic")
    return m


def test_a_message_goes_out_as_the_delegated_mailbox_byte_for_byte(google: Google) -> None:
    with make_transport(google.settings) as transport:
        assert isinstance(transport, GmailTransport)
        result = transport.send(letter())
    [sent] = google.gmail.sent(USER)
    assert sent.raw == message_bytes(letter())
    assert result == f"Gmail id {sent.id}"
    assert google.tokens.requests[-1]["sub"] == USER
    assert set(google.tokens.requests[-1]["scope"].split()) == {GMAIL_SEND, GMAIL_READ}


def test_a_meeting_invite_goes_out_over_gmail_in_the_bytes_built(google: Google) -> None:
    from automations.core import Invite
    from automations.mail.message import build_message
    from automations.mail.render import Rendered
    from tests.support.invites import received

    start = datetime(2026, 12, 3, 10, 0, tzinfo=TZ)
    invite = Invite(uid="meeting-p-0001@riverside-pt.example", sequence=0, method="REQUEST", start=start,
                    end=start.replace(hour=11), summary="Partnership meeting", location="",
                    organizer=("Riverside Physical Therapy", USER), sender=USER, attendee=("Leo", "run@club.example"))
    message = build_message(Rendered("meeting_confirmation", "Our meeting", "Thursday\n", "<p>Thursday</p>"),
                            to_email="run@club.example", to_name="Leo", clinic=google.settings.clinic,
                            outreach=False, now=datetime(2026, 11, 27, 9, 0, tzinfo=TZ), invite=invite)
    with make_transport(google.settings) as transport:
        transport.send(message)
    [sent] = google.gmail.sent(USER)
    assert sent.raw == message_bytes(message)
    mail = received(sent.raw)
    assert mail.method == "REQUEST" and str(mail.event["UID"]) == invite.uid and mail.event["DTSTART"].dt == start


def test_open_fails_before_any_send_when_delegation_lacks_a_scope(google: Google) -> None:
    google.tokens.ungrant(google.key, USER)
    google.tokens.grant(google.key, USER, GMAIL_SEND)
    with pytest.raises(AuthFailed) as refused:
        make_transport(google.settings).open()
    line = str(refused.value)
    assert "\n" not in line and "Domain-wide delegation" in line and GMAIL_READ in line
    assert google.gmail.calls == []


def test_gmail_api_turned_off_names_the_console_switch(google: Google) -> None:
    google.gmail.fail_next("disabled", method="gmail.users.getProfile")
    with pytest.raises(AuthFailed, match=r"the Gmail API is turned off .* Gmail API > Enable"):
        make_transport(google.settings).open()


def test_an_expired_token_is_refreshed_and_the_message_sent_once(google: Google) -> None:
    with make_transport(google.settings) as transport:
        google.tokens.book.expire_all()
        transport.send(letter())
    assert len(google.gmail.sent(USER)) == 1
    assert len(google.tokens.requests) == 2  # one token at open, a fresh one after Gmail's 401


@pytest.mark.parametrize(("fault", "error", "words"), [
    ("rate", TemporaryFailure, "slow down"),
    ("user_rate", TemporaryFailure, "slow down"),
    ("daily", MailError, "daily sending limit"),
    ("server", OutcomeUnknown, "not sent again automatically"),
    ("drop", OutcomeUnknown, "not sent again automatically"),
    ("invalid_to", RecipientRefused, "Invalid To header"),
    ("scope", AuthFailed, "domain-wide delegation"),
])
def test_gmail_answers_become_the_transports_outcomes(google: Google, fault: str, error: type[Exception],
                                                       words: str) -> None:
    with make_transport(google.settings) as transport:
        google.gmail.fail_next(fault)
        with pytest.raises(error, match=words) as raised:
            transport.send(letter())
    assert "\n" not in str(raised.value) and "run@club.example" not in str(raised.value)
    if fault == "daily":
        assert not isinstance(raised.value, TemporaryFailure)  # the run stops; nothing is retried in it
    assert len(google.gmail.sent(USER)) == (1 if fault == "drop" else 0)


def test_a_dropped_send_is_found_in_the_mailbox_by_its_message_id(google: Google) -> None:
    with make_transport(google.settings) as transport:
        google.gmail.fail_next("drop")
        with pytest.raises(OutcomeUnknown):
            transport.send(letter(message_id="<lost@riverside-pt.example>"))
    mailbox = GmailMailbox(google.settings.email)
    assert mailbox.find_sent(["<lost@riverside-pt.example>", "<never@riverside-pt.example>"]) == {
        "<lost@riverside-pt.example>"}


def test_the_mailbox_reads_new_messages_from_the_saved_position_and_resyncs_when_history_expired(
        google: Google) -> None:
    gmail = google.gmail
    gmail.deliver(USER, message_bytes(letter(to=USER, message_id="<a@club.example>")))
    mailbox = GmailMailbox(google.settings.email)
    first, position = mailbox.read_new(None)
    assert [m.message_id for m in first] == ["<a@club.example>"]
    assert [(m.uid, m.uidvalidity) for m in first] == [(1, 0)]
    nothing, same = mailbox.read_new(position)
    assert nothing == () and same == position
    gmail.deliver(USER, message_bytes(letter(to=USER, message_id="<b@club.example>")))
    with make_transport(google.settings) as transport:
        transport.send(letter())  # sent mail is not in INBOX: not read as a reply
    gmail.deliver(USER, message_bytes(letter(to=USER, message_id="<c@club.example>")))
    second, later = mailbox.read_new(position)
    assert [m.message_id for m in second] == ["<b@club.example>", "<c@club.example>"]
    assert [m.uid for m in second] == [1, 2]
    gmail.expire_history(USER)
    again, resynced = mailbox.read_new(later)
    assert [m.message_id for m in again] == ["<a@club.example>", "<b@club.example>", "<c@club.example>"]
    imap_position = '{"uidvalidity": 7, "uid": 3, "mailbox": "imap.example:993/partners/INBOX"}'
    assert len(mailbox.read_new(imap_position)[0]) == 3  # another reader's position: read from the start
    deleted = gmail.deliver(USER, message_bytes(letter(to=USER, message_id="<d@club.example>")))
    gmail.delete(USER, deleted)  # deleted for good by staff before partnerloop reads it
    gmail.deliver(USER, message_bytes(letter(to=USER, message_id="<e@club.example>")))
    newest, _ = mailbox.read_new(resynced)
    assert [(m.uid, m.message_id) for m in newest] == [(1, "<e@club.example>")]


def test_sixty_days_over_gmail_deliver_what_smtp_delivers(google: Google, staff_for: Any) -> None:
    settings = google.settings
    seed_sheet(settings, **day0_rows())

    def arrivals() -> list[tuple[str, str]]:
        return [(str(m.parsed["X-Partnerloop-Template"]), str(m.parsed["To"].addresses[0].addr_spec))
                for m in google.gmail.sent(USER)]

    assert sorted(deliver_sixty_days(settings, staff_actions(staff_for(settings)), arrivals, ROW_JOBS)) == EXPECTED


def test_a_send_whose_answer_is_lost_is_settled_from_the_mailbox_without_a_second_copy(google: Google) -> None:
    settings = google.settings
    seed_sheet(settings, **day0_rows())
    ledger = Ledger.in_state_dir(settings.state_dir)
    now = datetime.combine(d(0), time(9, 0), TZ)
    google.gmail.fail_next("drop")
    report = run_jobs(world_for(settings, lambda: now, ledger=ledger),
                      ["outreach"])
    assert report.fatal.startswith("mail server: Gmail API as partners@riverside-pt.example: no answer")
    [unknown] = ledger.unknown()
    statuses = {p.id: p.status for p in read_book(open_backend(settings), settings).partners}
    assert "unknown whether it was delivered" in statuses[unknown.key.row_id]
    assert GmailMailbox(settings.email).find_sent([unknown.message_id]) == {unknown.message_id}
    for minute in (5, 10):
        later = datetime.combine(d(0), time(9, minute), TZ)
        report = run_jobs(world_for(settings, lambda: later, ledger=ledger), ["outreach"])
        if minute == 5:
            assert any("found in the mailbox's sent mail, now recorded as sent" in line for line in report.summary())
    sent_ids = [m.message_id for m in google.gmail.sent(USER)]
    assert sent_ids.count(unknown.message_id) == 1
    assert len(sent_ids) == 2  # the other outreach email went out on the next run
    assert ledger.unknown() == []
    statuses = {p.id: p.status for p in read_book(open_backend(settings), settings).partners}
    assert "sent" in statuses[unknown.key.row_id] and "unknown" not in statuses[unknown.key.row_id]
    assert statuses[unknown.key.row_id].startswith("Intro sent 2026-11-02"), statuses


def test_a_revoked_grant_stops_the_run_with_one_line_and_sends_nothing(google: Google) -> None:
    settings = google.settings
    seed_sheet(settings, **day0_rows())
    google.tokens.ungrant(google.key, USER)
    ledger = Ledger.in_state_dir(settings.state_dir)
    now = datetime.combine(d(0), time(9, 0), TZ)
    report = run_jobs(world_for(settings, lambda: now, ledger=ledger),
                      ["outreach"])
    assert "Domain-wide delegation" in report.fatal and "\n" not in report.fatal
    assert google.gmail.sent(USER) == []
    assert [r.state for r in ledger.records() if r.state in ("sending", "sent")] == []


@pytest.mark.parametrize(("fault", "words"), [
    ("rate", "Gmail asks to slow down (rateLimitExceeded); the rest is held for the next run"),
    ("daily", "Gmail's daily sending limit for this mailbox is reached"),
])
def test_a_limit_holds_the_run_and_the_next_run_sends_each_email_once(google: Google, fault: str,
                                                                        words: str) -> None:
    settings = google.settings
    seed_sheet(settings, **day0_rows())
    ledger = Ledger.in_state_dir(settings.state_dir)
    now = datetime.combine(d(0), time(9, 0), TZ)
    google.gmail.fail_next(fault)
    report = run_jobs(world_for(settings, lambda: now, ledger=ledger),
                      ["outreach"])
    assert words in report.fatal and "\n" not in report.fatal
    assert report.count("sent") == 0 and google.gmail.sent(USER) == []
    later = datetime.combine(d(0), time(9, 5), TZ)
    report = run_jobs(world_for(settings, lambda: later, ledger=ledger),
                      ["outreach"])
    assert report.count("sent") == 2 and report.fatal == ""
    recipients = sorted(str(m.parsed["To"].addresses[0].addr_spec) for m in google.gmail.sent(USER))
    assert recipients == ["cold@gym.example", "hello@warmyoga.example"]


def test_a_refused_recipient_is_not_named_in_the_error(google: Google) -> None:
    google.gmail.refused.add("jordan@mail.example")
    with make_transport(google.settings) as transport:
        with pytest.raises(RecipientRefused) as refused:
            transport.send(letter(to="jordan@mail.example"))
        transport.send(letter(message_id="<next@riverside-pt.example>"))  # the next message goes ahead
    assert str(refused.value) == "Gmail refused the message: Invalid To header: the recipient"
    assert [m.message_id for m in google.gmail.sent(USER)] == ["<next@riverside-pt.example>"]


def test_the_replies_job_reads_the_gmail_mailbox(google: Google) -> None:
    from automations.mail.gmail import read_inbox

    settings = google.settings
    seed_sheet(settings, **day0_rows())
    monday = datetime.combine(d(0), time(9, 0), TZ)
    run_jobs(world_for(settings, lambda: monday), ["outreach"])
    intro = next(m.parsed for m in google.gmail.sent(USER) if "cold@gym.example" in str(m.parsed["To"]))
    reply = letter(to=USER, message_id="<answer@gym.example>")
    reply.replace_header("From", "Casey Cole <cold@gym.example>")
    reply.replace_header("Subject", f"Re: {intro['Subject']}")
    reply["In-Reply-To"] = str(intro["Message-ID"])
    google.gmail.deliver(USER, message_bytes(reply))
    tuesday = datetime.combine(d(1), time(10, 0), TZ)
    report = run_jobs(world_for(settings, lambda: tuesday, mailbox=read_inbox), ["replies"])
    assert report.fatal == ""
    status = {p.id: p.status for p in read_book(open_backend(settings), settings).partners}
    assert status["P-0001"] == f"Replied {d(1).isoformat()}: update Stage"
    again = run_jobs(world_for(settings, lambda: tuesday, mailbox=read_inbox), ["replies"])
    assert again.fatal == "" and "0 new message(s)" in " ".join(again.summary())
