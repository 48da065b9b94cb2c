"""Reading the clinic's mailbox: against a real Dovecot on 127.0.0.1, plus the parsing of one message."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from automations.config import Settings
from automations.core import Inbox
from automations.errors import MailError
from automations.mail.imap import fetch_new, read_inbox
from automations.mail.inbound import (
    InboundMessage,
    MailboxPosition,
    UnreadableMessage,
    next_position,
    parse_message,
)
from tests.conftest import make_settings
from tests.support.imap_server import ImapServer, imap_section

CLINIC = "partners@riverside-pt.example"
SENT_ID = "<170.intro@riverside-pt.example>"


def imap_settings(tmp_path: Path, server: ImapServer, user: str, **imap: Any) -> Settings:
    return make_settings(tmp_path, email={"timeout": 5, "imap": imap_section(server, user, **imap)})


def mail(sender: str = "coach@studio.example", subject: str = "Re: A partnership", body: str = "Sounds good!",
         **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = CLINIC
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 11, 3, 15, 0, tzinfo=UTC))
    message["Message-ID"] = f"<{abs(hash((sender, subject, body)))}@studio.example>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def bounce(recipient: str = "gone@studio.example", original_id: str = SENT_ID, action: str = "failed") -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.studio.example>\r\n"
        f"To: {CLINIC}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Tue, 03 Nov 2026 15:05:00 +0000\r\n"
        "Message-ID: <bounce.1@mx.studio.example>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="RPT"\r\n'
        "\r\n"
        "--RPT\r\nContent-Type: text/plain\r\n\r\nThis is the mail system. Your message could not be delivered.\r\n"
        "--RPT\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.studio.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient.upper()}\r\n"
        f"Action: {action}\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "--RPT\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Riverside Physical Therapy <{CLINIC}>\r\n"
        f"To: {recipient}\r\n"
        f"Message-ID: {original_id}\r\n"
        "Subject: A partnership with Riverside\r\n"
        "--RPT--\r\n"
    ).encode()


# -- what one message becomes -------------------------------------------------------------------------
def test_a_threaded_reply_keeps_its_thread_and_first_lines() -> None:
    message = mail("Coach <Coach@Studio.Example>", body="Yes, let's meet!\nTuesday works.\n\n"
                   "On Mon, Nov 2, 2026 at 9:00 AM Riverside <partners@riverside-pt.example> wrote:\n"
                   "> If you would rather not hear from us, reply unsubscribe\n",
                   In_Reply_To=SENT_ID, References=f"<older@riverside-pt.example> {SENT_ID}")
    read = parse_message(message.as_bytes(), uid=7, uidvalidity=99)
    assert (read.uid, read.uidvalidity, read.from_address) == (7, 99, "coach@studio.example")
    assert read.in_reply_to == SENT_ID
    assert read.references == ("<older@riverside-pt.example>", SENT_ID)
    assert read.thread_ids == (SENT_ID, "<older@riverside-pt.example>")
    assert read.first_lines == ("Yes, let's meet!", "Tuesday works.")
    assert read.to_addresses == (CLINIC,)
    assert read.date == datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
    assert not read.auto_submitted and not read.is_bounce


def test_an_outlook_style_reply_stops_at_the_original_message() -> None:
    body = "Please remove me from your list.\n\n-----Original Message-----\nFrom: Riverside\nunsubscribe\n"
    read = parse_message(mail(body=body).as_bytes(), uid=1, uidvalidity=1)
    assert read.first_lines == ("Please remove me from your list.",)


def test_an_html_only_reply_is_read_without_its_quote() -> None:
    message = mail()
    message.set_content("<div>Count us in &amp; thanks!</div><div class=\"gmail_quote\">reply unsubscribe</div>",
                        subtype="html")
    assert parse_message(message.as_bytes(), uid=1, uidvalidity=1).first_lines == ("Count us in & thanks!",)


@pytest.mark.parametrize("headers", [
    {"Auto_Submitted": "auto-replied"},
    {"Auto_Submitted": "auto-generated; owner-email=x@y.example"},
    {"X_Autoreply": "yes"},
    {"X_Autorespond": "Out of office"},
    {"Precedence": "auto_reply"},
    {"Precedence": "bulk"},
    {"Precedence": "junk"},
    {"Subject": "Out of Office: A partnership"},
    {"Subject": "Automatic reply: A partnership"},
    {"Subject": "AutoReply: A partnership"},
])
def test_automatic_replies_are_recognised(headers: dict[str, str]) -> None:
    subject = headers.pop("Subject", "Re: A partnership")
    read = parse_message(mail(subject=subject, **headers).as_bytes(), uid=1, uidvalidity=1)
    assert read.auto_submitted


def test_auto_submitted_no_is_a_person() -> None:
    assert not parse_message(mail(Auto_Submitted="no").as_bytes(), uid=1, uidvalidity=1).auto_submitted


def test_a_delivery_status_report_names_the_failed_recipient_and_the_returned_message() -> None:
    read = parse_message(bounce(), uid=3, uidvalidity=1)
    assert read.is_bounce and read.auto_submitted
    assert read.bounced_recipients == ("gone@studio.example",)
    assert read.bounced_message_id == SENT_ID
    assert read.from_address == "mailer-daemon@mx.studio.example"


def test_a_delay_warning_bounces_nobody() -> None:
    read = parse_message(bounce(action="delayed"), uid=3, uidvalidity=1)
    assert read.is_bounce and read.bounced_recipients == ()


def test_a_postmaster_report_returning_the_whole_message_gives_its_message_id() -> None:
    returned = mail(CLINIC, subject="A partnership")
    returned.replace_header("Message-ID", SENT_ID)
    raw = (
        "From: postmaster@mx.studio.example\r\n"
        f"To: {CLINIC}\r\n"
        "Subject: Delivery Status Notification (Failure)\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="M"\r\n\r\n'
        "--M\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--M\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Final-Recipient: rfc822;gone@studio.example\r\nAction: failed\r\n"
        "--M\r\nContent-Type: message/rfc822\r\n\r\n"
    ).encode() + returned.as_bytes() + b"\r\n--M--\r\n"
    read = parse_message(raw, uid=1, uidvalidity=1)
    assert read.is_bounce and read.bounced_recipients == ("gone@studio.example",)
    assert read.bounced_message_id == SENT_ID


@pytest.mark.parametrize(("raw", "reason"), [
    (b"From: a@studio.example\r\nThis line is no header\r\nSubject: hi\r\n\r\nbody\r\n", "malformed header"),
    (b"From: <<<@@>>>\r\nSubject: hi\r\n\r\nbody\r\n", "malformed header From"),
    (b"Subject: hi\r\n\r\nno sender\r\n", "malformed header From"),
    (b"From: a@studio.example\r\nSubject: =?x-unknown-9?q?hi?=\r\n\r\nbody\r\n", "unknown charset"),
    (b"From: a@studio.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
     b"Content-Type: text/plain; charset=x-unknown-9\r\n\r\nbody\r\n", "unknown charset"),
])
def test_unreadable_messages_raise_without_naming_sender_or_content(raw: bytes, reason: str) -> None:
    with pytest.raises(UnreadableMessage) as caught:
        parse_message(raw, uid=1, uidvalidity=1)
    assert str(caught.value).startswith(reason)
    assert "studio" not in str(caught.value) and "body" not in str(caught.value)


def test_the_position_survives_a_round_trip_and_garbage_means_start_over() -> None:
    position = MailboxPosition(uidvalidity=1795758804, uid=42, mailbox="partners@imap.example/INBOX")
    assert MailboxPosition.from_json(position.to_json()) == position
    assert MailboxPosition.from_json('{"uidvalidity": 1, "uid": 2}') == MailboxPosition(1, 2)
    assert MailboxPosition.from_json('{"uidvalidity": 1}') is None
    assert MailboxPosition.from_json("not json") is None


# -- against the IMAP server --------------------------------------------------------------------------
def test_fetch_reads_new_messages_in_order_and_leaves_them_unread(tmp_path: Path, imap: ImapServer,
                                                                   imap_user: str) -> None:
    imap.deliver(imap_user, mail(In_Reply_To=SENT_ID))
    imap.deliver(imap_user, mail("away@studio.example", subject="Out of office", Auto_Submitted="auto-replied"))
    imap.deliver(imap_user, bounce())
    settings = imap_settings(tmp_path, imap, imap_user)
    messages = fetch_new(settings, None)
    assert [m.uid for m in messages] == [1, 2, 3]
    assert len({m.uidvalidity for m in messages}) == 1
    assert messages[0].in_reply_to == SENT_ID and messages[0].first_lines == ("Sounds good!",)
    assert messages[1].auto_submitted
    assert messages[2].bounced_recipients == ("gone@studio.example",)
    assert all("\\Seen" not in flags for flags in imap.flags(imap_user).values())
    assert imap.count(imap_user) == 3  # nothing deleted or moved


def test_the_position_after_a_read() -> None:
    here = "partners@imap.example/INBOX"
    saved = json.dumps({"uidvalidity": 7, "uid": 90, "mailbox": here})
    assert next_position((), here, saved) == saved  # nothing read: the saved position stays
    read = (InboundMessage(uid=93, uidvalidity=7), InboundMessage.unreadable(95, 7, "unknown charset"))
    assert json.loads(next_position(read, here, saved)) == {"uidvalidity": 7, "uid": 95, "mailbox": here}
    renumbered = (InboundMessage(uid=3, uidvalidity=8),)
    assert json.loads(next_position(renumbered, here, saved)) == {"uidvalidity": 8, "uid": 3, "mailbox": here}
    elsewhere = json.dumps({"uidvalidity": 7, "uid": 900, "mailbox": "partners@imap.example/Old"})
    assert json.loads(next_position(read, here, elsewhere))["uid"] == 95


def test_reading_the_inbox_gives_the_messages_and_the_position_after_them(tmp_path: Path, imap: ImapServer,
                                                                         imap_user: str) -> None:
    for n in range(2):
        imap.deliver(imap_user, mail(body=f"reply {n}"))
    settings = imap_settings(tmp_path, imap, imap_user)
    inbox = read_inbox(settings, None)
    assert [m.first_lines for m in inbox.messages] == [("reply 0",), ("reply 1",)]
    assert json.loads(inbox.position)["uid"] == 2
    assert read_inbox(settings, inbox.position) == Inbox((), inbox.position)


def test_fetch_starts_after_the_saved_position(tmp_path: Path, imap: ImapServer, imap_user: str) -> None:
    for n in range(3):
        imap.deliver(imap_user, mail(body=f"reply {n}"))
    settings = imap_settings(tmp_path, imap, imap_user)
    position = None
    first = fetch_new(settings, position)
    assert [m.uid for m in fetch_new(settings, position)] == [1, 2, 3]  # fetch_new itself saves nothing
    position = MailboxPosition(first[0].uidvalidity, 3).to_json()
    assert fetch_new(settings, position) == ()  # "4:*" would name the last message; it is not new
    imap.deliver(imap_user, mail(body="one more"))
    assert [(m.uid, m.first_lines) for m in fetch_new(settings, position)] == [(4, ("one more",))]


def test_a_renumbered_folder_is_read_again_from_the_start(tmp_path: Path, imap: ImapServer, imap_user: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    imap.deliver(imap_user, mail(body="before"), folder="Partners")
    settings = imap_settings(tmp_path, imap, imap_user, folder="Partners")
    position = None
    before = fetch_new(settings, position)
    position = MailboxPosition(before[0].uidvalidity, 1).to_json()
    imap.recreate(imap_user, "Partners")
    imap.deliver(imap_user, mail(body="after"), folder="Partners")
    with caplog.at_level(logging.INFO, logger="partnerloop"):
        after = fetch_new(settings, position)
    assert [(m.uid, m.first_lines) for m in after] == [(1, ("after",))]
    assert after[0].uidvalidity != before[0].uidvalidity
    assert "UIDVALIDITY" in caplog.text and "renumbered" in caplog.text


def test_a_position_saved_for_another_folder_is_not_used(tmp_path: Path, imap: ImapServer, imap_user: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    imap.deliver(imap_user, mail(body="first"))
    settings = imap_settings(tmp_path, imap, imap_user)
    position = None
    [message] = fetch_new(settings, position)
    position = MailboxPosition(message.uidvalidity, 1, f"{imap_user}@{imap.host}/Archive").to_json()
    with caplog.at_level(logging.INFO, logger="partnerloop"):
        assert [m.uid for m in fetch_new(settings, position)] == [1]
    assert "another mailbox" in caplog.text
    position = MailboxPosition(message.uidvalidity, 1, f"{imap_user}@{imap.host}/INBOX").to_json()
    assert fetch_new(settings, position) == ()


def test_at_most_one_batch_per_run(tmp_path: Path, imap: ImapServer, imap_user: str) -> None:
    for n in range(5):
        imap.deliver(imap_user, mail(body=f"reply {n}"))
    settings = imap_settings(tmp_path, imap, imap_user)
    assert [m.uid for m in fetch_new(settings, None, batch=2)] == [1, 2]


def test_unreadable_messages_are_skipped_with_a_log_line(tmp_path: Path, imap: ImapServer, imap_user: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    imap.deliver(imap_user, b"From: secret.sender@studio.example\r\nThis line is no header\r\nSubject: Private\r\n\r\n"
                       b"private words\r\n")
    imap.deliver(imap_user, b"From: secret.sender@studio.example\r\nSubject: Private\r\nMIME-Version: 1.0\r\n"
                       b"Content-Type: text/plain; charset=x-unknown-9\r\n\r\nprivate words\r\n")
    imap.deliver(imap_user, mail(body="still read"))
    settings = imap_settings(tmp_path, imap, imap_user, mark_read=True)
    with caplog.at_level(logging.WARNING, logger="partnerloop"):
        messages = fetch_new(settings, None)
    assert [(m.uid, bool(m.skipped)) for m in messages] == [(1, True), (2, True), (3, False)]
    assert messages[2].first_lines == ("still read",)
    lines = [r.getMessage() for r in caplog.records]
    assert any("UID 1" in line and "malformed header" in line for line in lines)
    assert any("UID 2" in line and "unknown charset" in line for line in lines)
    assert "secret.sender" not in caplog.text and "Private" not in caplog.text and "private" not in caplog.text
    assert f"{imap.host}:{imap.port}" in caplog.text
    flags = imap.flags(imap_user)  # only what was read is marked read; the skipped ones wait for staff
    assert ["\\Seen" in flags[uid] for uid in (1, 2, 3)] == [False, False, True]


def test_mark_read_flags_what_was_read(tmp_path: Path, imap: ImapServer, imap_user: str) -> None:
    imap.deliver(imap_user, mail(body="a"))
    imap.deliver(imap_user, mail(body="b"))
    settings = imap_settings(tmp_path, imap, imap_user, mark_read=True)
    fetch_new(settings, None)
    assert all("\\Seen" in flags for flags in imap.flags(imap_user).values())


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_connections(tmp_path: Path, imap: ImapServer, imap_user: str, security: str) -> None:
    imap.deliver(imap_user, mail())
    port = imap.ssl_port if security == "ssl" else imap.port
    settings = imap_settings(tmp_path, imap, imap_user, security=security, port=port)
    messages = fetch_new(settings, None, ssl_context=imap.client_ssl_context())
    assert [m.uid for m in messages] == [1]


def test_an_untrusted_certificate_is_refused(tmp_path: Path, imap: ImapServer, imap_user: str) -> None:
    settings = imap_settings(tmp_path, imap, imap_user, security="ssl", port=imap.ssl_port)
    with pytest.raises(MailError, match=rf"^IMAP {imap.host}:{imap.ssl_port}: the server's certificate is not trusted"):
        fetch_new(settings, None)


def test_a_wrong_password_is_one_line_naming_host_and_port(tmp_path: Path, imap: ImapServer, imap_user: str) -> None:
    settings = imap_settings(tmp_path, imap, imap_user)
    with pytest.raises(MailError) as caught:
        fetch_new(settings, None, password="wrong")
    assert str(caught.value) == (f"IMAP {imap.host}:{imap.port} refused the username or password; "
                                 "check [email.imap] username and password_env")


def test_an_unreachable_server_is_a_mail_error(tmp_path: Path, imap_user: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    settings = make_settings(tmp_path, email={"timeout": 2, "imap": {"host": "127.0.0.1", "port": port,
                                                                     "security": "none"}})
    with pytest.raises(MailError, match=rf"^IMAP 127\.0\.0\.1:{port}: cannot reach the mail server"):
        fetch_new(settings, None)


def test_a_missing_folder_is_named(tmp_path: Path, imap: ImapServer, imap_user: str) -> None:
    settings = imap_settings(tmp_path, imap, imap_user, folder="Partner replies")
    with pytest.raises(MailError, match=r"opening folder 'Partner replies' \(check \[email.imap\] folder\)"):
        fetch_new(settings, None)


def test_a_folder_with_spaces_and_accents_is_read(tmp_path: Path, imap: ImapServer, imap_user: str) -> None:
    client = imap.connect(imap_user)
    client.create('"Partner r&AOk-ponses"')  # "Partner réponses" in IMAP's modified UTF-7
    client.logout()
    imap.deliver(imap_user, mail(), folder='"Partner r&AOk-ponses"')
    settings = imap_settings(tmp_path, imap, imap_user, folder="Partner réponses")
    assert [m.uid for m in fetch_new(settings, None)] == [1]


def test_without_a_mailbox_nothing_is_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path)
    with caplog.at_level(logging.WARNING, logger="partnerloop"):
        assert fetch_new(settings, None) == ()
    assert "[email.imap] host" in caplog.text


def test_inbound_messages_are_frozen() -> None:
    message = InboundMessage(uid=1, uidvalidity=1)
    with pytest.raises(AttributeError):
        message.uid = 2  # type: ignore[misc]


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_without_dovecot_the_imap_tests_fail_on_ci_and_skip_elsewhere(monkeypatch: pytest.MonkeyPatch, ci: str,
                                                                      outcome: type[BaseException]) -> None:
    from tests.support import imap_server

    monkeypatch.setattr(imap_server.shutil, "which", lambda name: None)
    monkeypatch.setattr(imap_server.os, "access", lambda path, mode: False)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="apt-get install dovecot-imapd"):
        imap_server.dovecot_binary()
