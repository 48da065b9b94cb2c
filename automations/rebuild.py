"""The send ledger rebuilt from the Log tab, for a state dir that was lost or emptied.

The Log names, for every email sent, its job, template, recipient (a patient only as "patient of
R-…"), row and Message-ID; the ledger key's step follows from those, as the jobs name them (a
scorecard's is the quarter of its Time). So a new state dir learns, before anything is sent, what
went out already and never sends it again.
Pure: the caller reads the Log and writes the ledger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from automations import cells
from automations.config import Settings
from automations.core import SendKey
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
    meetings = {p.id: p.meeting_date for p in book.partners if p.meeting_date}
    tz = settings.clinic.tz
    found = []
    for row in log.rows:
        result = cells.one_line(log.get(row, "Result"))
        job, template, row_id = (cells.one_line(log.get(row, c)) for c in ("Job", "Template", "Row"))
        to = cells.one_line(log.get(row, "To"))
        if result != "sent" or not (job and template and row_id):
            continue
        when = _when(log.get(row, "Time"), tz)
        step = quarter_of(when) if job == "scorecard" else _step(job, template, row_id, to, settings, meetings)
        if step:
            patient = to.startswith("patient of ")
            found.append((SendKey(job, row_id, step), template, "" if patient else to,
                          cells.one_line(log.get(row, "Message-ID")), when))
    return found


def _step(job: str, template: str, row_id: str, to: str, settings: Settings, meetings: dict[str, Any]) -> str:
    if template in STEPS:
        return STEPS[template]
    if job == "discharge":
        return "patient" if to.startswith("patient of ") else "partner"
    if job == "events":
        return "staff" if to.lower() == settings.clinic.staff_email.lower() else "partner"
    if job == "digest":
        return row_id.removeprefix("digest-")
    if template == "meeting_confirmation" and row_id in meetings:
        return f"meeting_confirmation_{meetings[row_id].isoformat()}"  # the meeting as it is now
    return ""


def _when(value: Any, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    try:
        parsed = datetime.fromisoformat(cells.one_line(value))
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=tz)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
