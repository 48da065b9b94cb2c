"""Event reminders: `reminder_days` before an event, to the partner contact and the staff address."""

from __future__ import annotations

from datetime import timedelta

from automations.jobs.common import attention, day, render_context, status_write
from automations.jobs.plan import Email, JobInput, Plan
from automations.sheets.base import RowWrite


def plan_events(inp: JobInput) -> Plan:
    emails: list[Email] = []
    writes: list[RowWrite] = []
    today = inp.today
    horizon = today + timedelta(days=inp.settings.reminder_days)
    staff = inp.settings.clinic.staff_email
    for event in inp.book.events:
        if event.problems:
            writes += attention(event.ref, event.status, event.problems)
            continue
        if event.reminder_sent or event.date is None or not today <= event.date <= horizon:
            continue
        context = render_context(inp, "event_reminder", partner=event.partner, event=event)
        staff_context = render_context(inp, "event_reminder", partner=event.partner, event=event, recipient="staff")
        sent = {"on_sent": {"Reminder sent": today}, "sent_status": f"Reminder sent {day(today)}"}
        partner = event.partner
        if partner is not None and partner.email and not partner.do_not_email and not inp.book.blocked(partner.email):
            emails.append(Email(job="events", row=event.ref, step="partner", template="event_reminder",
                                to_email=partner.email, to_name=partner.contact_name, recipient="partner",
                                label="Partner reminder", context=context, **sent))  # type: ignore[arg-type]
        elif partner is not None:
            writes += status_write(event.ref, event.status, f"Partner reminder not sent: {partner.business} cannot be "
                                   "emailed; staff reminder only")
        if staff:
            emails.append(Email(job="events", row=event.ref, step="staff", template="event_reminder",
                                to_email=staff, to_name=inp.settings.clinic.name, recipient="staff",
                                label="Staff reminder", context=staff_context, **sent))  # type: ignore[arg-type]
    return Plan("events", tuple(emails), tuple(writes))
