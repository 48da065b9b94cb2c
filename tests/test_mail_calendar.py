"""Calendar invites: the VCALENDAR a meeting or event email carries, and the message parts that carry it.

The invite is read back with icalendar, as a calendar client reads it; the message goes through a
real loopback SMTP server and is taken apart with the email package.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from automations.core import Invite
from automations.mail.calendar import calendar_bytes
from automations.mail.message import build_message
from automations.mail.render import Rendered
from automations.mail.transport import SmtpTransport
from tests.conftest import make_settings
from tests.support.invites import received
from tests.support.smtp_server import SmtpServer, email_settings_for

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=TZ)
START = datetime(2026, 12, 3, 10, 0, tzinfo=TZ)
INVITE = Invite(uid="meeting-p-0007@riverside-pt.example", sequence=0, method="REQUEST", start=START,
                end=START + timedelta(hours=1), summary="Partnership meeting: Riverside PT and Core Gym",
                location="120 Main Street", organizer=("Ana Díaz", "ana@riverside-pt.example"),
                sender="partners@riverside-pt.example", attendee=("Dana Brooks", "dana@coregym.example"))


def parsed(invite: Invite) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(calendar_bytes(invite, stamp=NOW))


def test_an_invite_is_one_event_in_the_clinics_zone_with_its_uid_and_sequence() -> None:
    calendar = parsed(INVITE)
    assert calendar["METHOD"] == "REQUEST" and calendar["VERSION"] == "2.0"
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == "meeting-p-0007@riverside-pt.example" and event["SEQUENCE"] == 0
    assert event["DTSTART"].dt == START and event["DTSTART"].params["TZID"] == "America/Chicago"
    assert event["DTEND"].dt == START + timedelta(hours=1)
    assert event["DTSTAMP"].dt == NOW.astimezone(ZoneInfo("UTC"))
    assert str(event["STATUS"]) == "CONFIRMED" and str(event["LOCATION"]) == "120 Main Street"
    assert str(event["SUMMARY"]) == "Partnership meeting: Riverside PT and Core Gym"
    assert str(event["ATTENDEE"]) == "mailto:dana@coregym.example" and event["ATTENDEE"].params["CN"] == "Dana Brooks"
    assert event["ATTENDEE"].params["RSVP"] == "TRUE"
    [zone] = calendar.walk("VTIMEZONE")
    assert str(zone["TZID"]) == "America/Chicago"


def test_an_organizer_other_than_the_clinics_mailbox_is_sent_by_it() -> None:
    organizer = parsed(INVITE).walk("VEVENT")[0]["ORGANIZER"]
    assert str(organizer) == "mailto:ana@riverside-pt.example" and organizer.params["CN"] == "Ana Díaz"
    assert organizer.params["SENT-BY"] == "mailto:partners@riverside-pt.example"
    clinic = replace(INVITE, organizer=("Riverside PT", "partners@riverside-pt.example"))
    assert "SENT-BY" not in parsed(clinic).walk("VEVENT")[0]["ORGANIZER"].params


def test_a_cancellation_is_method_cancel_and_status_cancelled() -> None:
    calendar = parsed(replace(INVITE, method="CANCEL", sequence=2))
    [event] = calendar.walk("VEVENT")
    assert calendar["METHOD"] == "CANCEL" and str(event["STATUS"]) == "CANCELLED" and event["SEQUENCE"] == 2
    assert str(event["UID"]) == INVITE.uid


def test_the_invite_is_folded_and_holds_only_the_zone_rules_around_it() -> None:
    raw = calendar_bytes(INVITE, stamp=NOW)
    lines = raw.split(b"\r\n")
    assert all(len(line) <= 75 for line in lines)
    assert len(raw) < 2000 and b"RDATE:1970" not in raw and b"DTSTART:19700101" not in raw


def test_an_invite_needs_a_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        calendar_bytes(replace(INVITE, start=START.replace(tzinfo=None)), stamp=NOW)


@pytest.mark.parametrize("address", ["dana@coregym.example", "dána@coregym.example"])
def test_a_message_with_an_invite_arrives_with_both_parts_the_calendar_part_and_the_attachment(
        tmp_path: Path, address: str) -> None:
    clinic = make_settings(tmp_path).clinic
    rendered = Rendered("meeting_confirmation", "Our meeting on Thursday, December 3 at 10:00 AM",
                        "Thursday, December 3, 2026, 10:00 AM\n", "<p>Thursday, December 3, 2026, 10:00 AM</p>")
    message = build_message(rendered, to_email=address, to_name="Dana Brooks", clinic=clinic, outreach=False,
                            now=NOW, invite=replace(INVITE, attendee=("Dana Brooks", address)))
    with SmtpServer() as server, SmtpTransport(email_settings_for(server), password=None) as transport:
        transport.send(message)
        [arrived] = server.messages
    mail = received(arrived.raw)
    assert mail.method == "REQUEST" and mail.calendar["METHOD"] == "REQUEST"
    assert "Thursday, December 3, 2026, 10:00 AM" in mail.text and "<p>Thursday" in mail.html
    assert mail.calendar.to_ical() == mail.attachment.to_ical()
    assert str(mail.event["UID"]) == INVITE.uid and mail.event["DTSTART"].dt == START
    assert [p.get_content_type() for p in mail.message.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar", "application/ics"]


def test_a_message_without_an_invite_stays_multipart_alternative(tmp_path: Path) -> None:
    clinic = make_settings(tmp_path).clinic
    message = build_message(Rendered("outreach_intro", "Hello", "Hello\n", "<p>Hello</p>"), to_email="a@b.example",
                            to_name="A", clinic=clinic, outreach=False, now=NOW)
    assert message.get_content_type() == "multipart/alternative"
