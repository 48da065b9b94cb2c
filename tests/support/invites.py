"""Reading a received email as a mail and calendar client would: its text, HTML and calendar invite."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

import icalendar

from tests.support.smtp_server import parse_message


@dataclass(frozen=True)
class Received:
    """One received email, taken apart: both parts, the text/calendar part and the invite.ics attachment."""

    message: EmailMessage
    text: str
    html: str
    method: str  # the text/calendar part's method parameter
    calendar: icalendar.Calendar  # from the text/calendar part
    attachment: icalendar.Calendar  # from invite.ics

    @property
    def event(self) -> icalendar.Event:
        [event] = self.calendar.walk("VEVENT")
        return event

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])


def received(raw: bytes) -> Received:
    """Take a received message apart; fails (AssertionError) when a part is missing."""
    message = parse_message(raw)
    parts = {part.get_content_type(): part for part in message.walk()}
    assert message.get_content_type() == "multipart/mixed", message.get_content_type()
    calendar_part = parts["text/calendar"]
    assert isinstance(calendar_part, EmailMessage)
    [attachment] = [a for a in message.iter_attachments() if a.get_filename() == "invite.ics"]
    assert attachment.get_content_type() in ("application/ics", "text/calendar")
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return Received(
        message=message,
        text=" ".join(text.get_content().split()),
        html=html.get_content(),
        method=str(calendar_part.get_param("method")),
        calendar=icalendar.Calendar.from_ical(calendar_part.get_content()),
        attachment=icalendar.Calendar.from_ical(attachment.get_content()),
    )
