"""Calendar invitations (iCalendar, RFC 5545 and the iTIP methods of RFC 5546) for meetings and events.

Pure: an `Invite` (automations.core) in, the bytes of one VCALENDAR out, with METHOD:REQUEST or
CANCEL, one VEVENT and the VTIMEZONE of the clinic's zone. Only what the invite says goes in:
the meeting or event, where, who organizes it and who is invited; never a patient detail.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from icalendar import Calendar, Event, vCalAddress

from automations.core import Invite

PRODID = "-//partnerloop//partnerloop//EN"


def calendar_bytes(invite: Invite, *, stamp: datetime) -> bytes:
    """The VCALENDAR of *invite* as sent (CRLF lines, folded at 75 octets); *stamp* is the DTSTAMP (send time)."""
    if invite.start.tzinfo is None or invite.end.tzinfo is None:
        raise ValueError("an invite's start and end must carry the clinic's time zone")
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", invite.method)
    event = Event()
    event.add("uid", invite.uid)
    event.add("sequence", invite.sequence)
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", invite.start)
    event.add("dtend", invite.end)
    event.add("summary", invite.summary)
    if invite.location:
        event.add("location", invite.location)
    event.add("organizer", _organizer(invite))
    event.add("attendee", _address(invite.attendee, role="REQ-PARTICIPANT", partstat="NEEDS-ACTION", rsvp="TRUE"))
    event.add("status", "CANCELLED" if invite.cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    calendar.add_component(event)
    # Only the zone's rules around the invite: a VTIMEZONE from 1970 on is several kilobytes of RDATEs.
    calendar.add_missing_timezones(first_date=date(invite.start.year, 1, 1),
                                   last_date=date(invite.end.year + 1, 12, 31))
    return bytes(calendar.to_ical())


def _organizer(invite: Invite) -> vCalAddress:
    """ORGANIZER: the signer (replies go to them), SENT-BY the clinic's mailbox when that is another address."""
    organizer = _address(invite.organizer)
    if invite.sender and invite.sender.lower() != invite.organizer[1].lower():
        organizer.params["sent-by"] = f"mailto:{invite.sender}"
    return organizer


def _address(person: tuple[str, str], **params: str) -> vCalAddress:
    name, address = person
    value = vCalAddress(f"mailto:{address}")
    if name.strip():
        value.params["cn"] = " ".join(name.split())
    value.params.update({key.upper(): text for key, text in params.items()})
    return value
