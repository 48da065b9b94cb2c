"""Event reminders: `reminder_days` before an event, to the partner contact and the staff address.

The two copies are separate emails (ledger steps `partner` and `staff`): one held back (send
window, daily limit) goes out on a later run although the other went, until the event day. A copy
still held when the event has passed says so on the row instead of promising a later send. A
`Reminder sent` date that the ledger cannot account for (staff typed it) means the reminder is done.
"""

from __future__ import annotations

from datetime import timedelta

from automations.jobs.common import attention, day, render_context, status_write
from automations.jobs.plan import Email, JobInput, Plan
from automations.model import Event
from automations.sheets.base import RowWrite


def plan_events(inp: JobInput) -> Plan:
    emails: list[Email] = []
    writes: list[RowWrite] = []
    today = inp.today
    horizon = today + timedelta(days=inp.settings.reminder_days)
    for event in inp.book.events:
        if event.problems:
            writes += attention(event.ref, event.status, event.problems)
            continue
        if event.date is None:
            continue
        copies, note = _copies(inp, event)
        due = [e for e in copies if e.key not in inp.delivered or e.key in inp.resend]
        resend = any(e.key in inp.resend for e in copies)
        if not due or (event.reminder_sent and len(due) == len(copies) and not resend):
            continue
        if event.date < today:
            if "held" in event.status:  # it promised a later send that can no longer help
                writes += status_write(event.ref, event.status, " and ".join(e.label for e in due)
                                       + f" not sent: the event was on {day(event.date)}")
            continue
        if event.date > horizon and not resend:
            continue
        emails += due
        if note:
            writes += status_write(event.ref, event.status, note)
    return Plan("events", tuple(emails), tuple(writes))


def _copies(inp: JobInput, event: Event) -> tuple[list[Email], str]:
    """The partner's and the staff's reminder, and what the row says when the partner cannot be emailed."""
    today = inp.today
    copies: list[Email] = []
    note = ""
    partner = event.partner
    if partner is not None and partner.email and not partner.do_not_email and not inp.book.blocked(partner.email):
        copies.append(Email(
            job="events", row=event.ref, step="partner", template="event_reminder", to_email=partner.email,
            to_name=partner.contact_name, recipient="partner", label="Partner reminder",
            context=render_context(inp, "event_reminder", partner=partner, event=event),
            on_sent={"Reminder sent": today}, sent_status=f"Partner reminder sent {day(today)}"))
    elif partner is not None:
        note = f"Partner reminder not sent: {partner.business} cannot be emailed; staff reminder only"
    staff = inp.settings.clinic.staff_email
    if staff:
        copies.append(Email(
            job="events", row=event.ref, step="staff", template="event_reminder", to_email=staff,
            to_name=inp.settings.clinic.name, recipient="staff", label="Staff reminder",
            context=render_context(inp, "event_reminder", partner=partner, event=event, recipient="staff"),
            on_sent={"Reminder sent": today}, sent_status=f"Staff reminder sent {day(today)}"))
    return copies, note
