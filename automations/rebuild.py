"""The send ledger rebuilt from the Log tab, for a state dir that was lost or emptied.

The Log names, for every email sent, its job, template, recipient (a patient only as "patient of
R-…"), row and Message-ID; the ledger key's step follows from those, as the jobs name them (a
scorecard's is the quarter of its Time). So a new state dir learns, before anything is sent, what
went out already and never sends it again.
A meeting's or an event's invites are numbered in the order the Log has them (their SEQUENCE); the
last is taken to be for the meeting or event as the sheet has it now. Pure: the caller reads the Log
and writes the ledger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from automations import cells
from automations.config import Settings
from automations.core import SendKey
from automations.jobs import invites
from automations.jobs.scorecard import quarter_of
from automations.model import Book
from automations.sheets.base import Table

STEPS = {  # template -> step, where the template alone decides it
    "outreach_intro": "intro", "outreach_warm_intro": "intro", "outreach_follow_up_1": "follow_up_1",
    "outreach_follow_up_2": "follow_up_2", "partnership_welcome": "welcome", "referral_thanks": "thanks",
    "referral_update": "update", "referral_closed": "closed",
}

Sent = tuple[SendKey, str, str, str, datetime]  # key, template, address ("" for a patient), Message-ID, when


def sends_on_log(log: Table, book: Book, settings: Settings) -> list[Sent]:
    """Every email the Log shows as sent, as the ledger records it."""
    tz = settings.clinic.tz
    found: list[Sent] = []
    invited: dict[tuple[str, str, str], list[int]] = {}  # (job, row, copy) -> its invites, as found
    for row in log.rows:
        result = cells.one_line(log.get(row, "Result"))
        job, template, row_id = (cells.one_line(log.get(row, c)) for c in ("Job", "Template", "Row"))
        to = cells.one_line(log.get(row, "To"))
        if result != "sent" or not (job and template and row_id):
            continue
        patient = to.startswith("patient of ")
        when = _when(log.get(row, "Time"), tz)
        copy = _invite_copy(job, template, to, settings)
        step = quarter_of(when) if job == "scorecard" else copy or _step(job, template, row_id, to)
        if step:
            if copy:
                invited.setdefault((job, row_id, copy), []).append(len(found))
            found.append((SendKey(job, row_id, step), template, "" if patient else to,
                          cells.one_line(log.get(row, "Message-ID")), when))
    for (job, row_id, copy), places in invited.items():
        places.sort(key=lambda i: found[i][4])
        for sequence, i in enumerate(places):
            _, template, to, message_id, when = found[i]
            step = _invite_step(job, row_id, copy, sequence, template, when, book, last=sequence == len(places) - 1)
            found[i] = (SendKey(job, row_id, step), template, to, message_id, when)
    return found


def _step(job: str, template: str, row_id: str, to: str) -> str:
    if template in STEPS:
        return STEPS[template]
    if job == "discharge":
        return "patient" if to.startswith("patient of ") else "partner"
    if job == "digest":
        return row_id.removeprefix("digest-")
    return ""


def _invite_copy(job: str, template: str, to: str, settings: Settings) -> str:
    """The step prefix of an email that carried an invite (a meeting's, or an event's copy), else ""."""
    if job == "events":
        return "staff_" if to.lower() == settings.clinic.staff_email.lower() else "partner_"
    if template in ("meeting_confirmation", "meeting_cancellation"):
        return "meeting_"
    return ""


def _invite_step(job: str, row_id: str, prefix: str, sequence: int, template: str, sent: datetime, book: Book, *,
                 last: bool) -> str:
    """The step of the invite numbered *sequence*: the last one is for the meeting or event as it is now; an
    earlier one only counts (the Log does not say what time it was for)."""
    day = sent.date().isoformat()
    if job == "events":
        event = next((e for e in book.events if e.id == row_id), None)
        if event is None or not last:
            return invites.step(prefix, "reminder" if sequence == 0 else "update", sequence, day)
        if event.date is None:
            return invites.step(prefix, "cancel", sequence, day)
        now = invites.when_token(event.starts, event.ends) if event.starts is not None else day
        return invites.step(prefix, "reminder" if sequence == 0 else "update", sequence, now)
    if template == "meeting_cancellation":
        return invites.step(prefix, "cancel", sequence, day)
    partner = next((p for p in book.partners if p.id == row_id), None)
    if last and partner is not None and partner.meeting_at is not None:
        return invites.step(prefix, "confirmation" if sequence == 0 else "update", sequence,
                            invites.when_token(partner.meeting_at))
    if last and partner is not None and partner.meeting_date is not None:
        return invites.step(prefix, "confirmation", sequence, partner.meeting_date.isoformat())
    return invites.step(prefix, "confirmation" if sequence == 0 else "update", sequence, day)


def _when(value: Any, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    try:
        parsed = datetime.fromisoformat(cells.one_line(value))
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=tz)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
