"""Event reminders: `reminder_days` before an event, to the partner contact and the staff address.

The two copies are separate emails (ledger steps `partner_…` and `staff_…`): one held back (send
window, daily limit) goes out on a later run although the other went, until the event day. A copy
still held when the event has passed says so on the row instead of promising a later send. A
`Reminder sent` date that the ledger cannot account for (staff typed it) means the reminder is done.

Each reminder carries the event's calendar invite (see automations.jobs.invites): when staff change
the Date or Ends after a copy went, that copy's update goes at once; when they clear the Date before
the event, a cancellation. A Date without a start time holds the reminder; the row says what to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from automations.check import problem_status
from automations.core import SendKey
from automations.jobs import invites
from automations.jobs.common import attention, day, render_context, signer, status_write
from automations.jobs.invites import Sent, local_now, sheet_time
from automations.jobs.plan import Email, JobInput, Plan
from automations.model import Event
from automations.sheets.base import RowWrite

JOB = "events"


@dataclass(frozen=True)
class _Copy:
    """Who one copy of the reminder goes to, and the invites it had."""

    step: str  # "partner" or "staff": the prefix of its ledger steps
    label: str
    to_email: str
    to_name: str
    sent: tuple[Sent, ...]

    @property
    def last(self) -> Sent | None:
        return self.sent[-1] if self.sent else None


def plan_events(inp: JobInput) -> Plan:
    emails: list[Email] = []
    writes: list[RowWrite] = []
    today = inp.today
    horizon = today + timedelta(days=inp.settings.reminder_days)
    for event in inp.book.events:
        copies, note = _copies(inp, event)
        if event.problems:
            cancelled = event.date is None and any(c.last is not None and c.last.kind == "cancel" for c in copies)
            if not (cancelled and event.status.startswith(problem_status(event.problems))):
                writes += attention(event.ref, event.status, event.problems)  # once cancelled, the row keeps saying so
            if event.date is None:  # the Date was cleared: a copy on someone's calendar is cancelled
                emails += [e for c in copies if (e := _cancellation(inp, event, c)) is not None]
            continue
        if event.date is None:  # called off after its reminder went: each copy on a calendar is cancelled
            emails += [e for c in copies if (e := _cancellation(inp, event, c)) is not None]
            continue
        resend = [c for c in copies if _resend_key(inp, event, c) is not None and event.starts is not None]
        if resend:
            emails += [_reminder(inp, event, c, again=True) for c in resend]
            continue
        updates = [e for c in copies if (e := _update(inp, event, c)) is not None]
        emails += updates
        due = [c for c in copies if not c.sent]
        if not due or (event.reminder_sent and len(due) == len(copies)):
            continue
        if event.date < today:
            if "held" in event.status:  # it promised a later send that can no longer help
                writes += status_write(event.ref, event.status, " and ".join(f"{c.label} reminder" for c in due)
                                       + f" not sent: the event was on {day(event.date)}")
            continue
        if event.date > horizon:
            continue
        if event.starts is None:
            example = f"{event.date.isoformat()} 17:30 or {event.date:%m/%d/%Y} 5:30 PM"
            writes += status_write(event.ref, event.status, f"Reminder held: Date {event.date.isoformat()} has no "
                                   f"start time; write the date and time, like {example}")
            continue
        if event.starts <= local_now(inp):
            continue  # it has begun
        emails += [_reminder(inp, event, c) for c in due]
        if note:
            writes += status_write(event.ref, event.status, note)
    return Plan(JOB, tuple(emails), tuple(writes))


def _copies(inp: JobInput, event: Event) -> tuple[list[_Copy], str]:
    """The partner's and the staff's copy, and what the row says when the partner cannot be emailed."""
    copies: list[_Copy] = []
    note = ""
    partner = event.partner
    if partner is not None and partner.email and not partner.do_not_email and not inp.book.blocked(partner.email):
        copies.append(_Copy("partner", "Partner", partner.email, partner.contact_name,
                            tuple(invites.history(inp, JOB, event.id, "partner_", legacy="partner"))))
    elif partner is not None:
        note = f"Partner reminder not sent: {partner.business} cannot be emailed; staff reminder only"
    staff = inp.settings.clinic.staff_email
    if staff:
        copies.append(_Copy("staff", "Staff", staff, inp.settings.clinic.name,
                            tuple(invites.history(inp, JOB, event.id, "staff_", legacy="staff"))))
    return copies, note


def _reminder(inp: JobInput, event: Event, copy: _Copy, *, again: bool = False) -> Email:
    """The reminder of one copy, with the event's invite (SEQUENCE after what this copy had)."""
    assert event.starts is not None and event.ends is not None
    sequence = invites.next_sequence(list(copy.sent))
    step = invites.step(f"{copy.step}_", "reminder", sequence, invites.when_token(event.starts, event.ends))
    if again and (key := _resend_key(inp, event, copy)) is not None:
        step = key.step
    return _email(inp, event, copy, step, "REQUEST", sequence, event.starts, event.ends,
                  f"{copy.label} reminder", f"{copy.label} reminder sent {day(inp.today)}",
                  {"Reminder sent": inp.today})


def _update(inp: JobInput, event: Event, copy: _Copy) -> Email | None:
    """The invite's update when the event moved since this copy went (an event still ahead)."""
    last = copy.last
    if last is None or not last.on_calendar or event.starts is None or event.ends is None:
        return None
    when = invites.when_token(event.starts, event.ends)
    if last.when == when or event.starts <= local_now(inp):
        return None
    sequence = invites.next_sequence(list(copy.sent))
    return _email(inp, event, copy, invites.step(f"{copy.step}_", "update", sequence, when), "REQUEST", sequence,
                  event.starts, event.ends, f"{copy.label} update",
                  f"{copy.label} update sent {day(inp.today)}: moved to {sheet_time(event.starts)}", {},
                  moved_from=last.start)


def _cancellation(inp: JobInput, event: Event, copy: _Copy) -> Email | None:
    """The cancellation of the event this copy's calendar holds, while it is still ahead."""
    last = copy.last
    if last is None or not last.on_calendar or last.start is None or last.end is None:
        return None
    if last.start <= local_now(inp):
        return None
    sequence = invites.next_sequence(list(copy.sent))
    return _email(inp, event, copy, invites.step(f"{copy.step}_", "cancel", sequence, last.when), "CANCEL",
                  sequence, last.start, last.end, f"{copy.label} cancellation",
                  f"{copy.label} cancellation sent {day(inp.today)} for {sheet_time(last.start)}", {})


def _email(inp: JobInput, event: Event, copy: _Copy, step: str, method: str, sequence: int, start: datetime,
           end: datetime, label: str, status: str, cells: dict[str, object],
           moved_from: datetime | None = None) -> Email:
    partner = event.partner
    summary = event.name + (f" with {partner.business}" if partner is not None else "")
    invite = invites.invite(inp, uid=invites.uid("event", event.id, inp), sequence=sequence, method=method,
                            start=start, end=end, summary=summary, location=event.location,
                            to=(copy.to_name, copy.to_email), signer=signer(inp, partner), moved_from=moved_from)
    recipient = "staff" if copy.step == "staff" else "partner"
    return Email(job=JOB, row=event.ref, step=step, template="event_reminder", to_email=copy.to_email,
                 to_name=copy.to_name, recipient=recipient, label=label,
                 context=render_context(inp, "event_reminder", partner=partner, event=event, recipient=recipient,
                                        invite=invite),
                 on_sent=cells, sent_status=status, invite=invite)


def _resend_key(inp: JobInput, event: Event, copy: _Copy) -> SendKey | None:
    """The step of this copy that staff asked to go out again (`resolve --resend`), if any."""
    return next((k for k in sorted(inp.resend, key=str) if k.job == JOB and k.row_id == event.id
                 and (k.step == copy.step or k.step.startswith(f"{copy.step}_"))), None)
