"""The outreach sequence: intro (cold or warm), two follow-ups, meeting confirmation, welcome.

Prospect -> Contacted on the first letter. Follow-up k goes `follow_up_days[k]` days after the
previous email while Stage stays Contacted; the sequence stops at once when staff change Stage,
set Do not email, or the address is opted out. After the last follow-up the status says to call.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from automations.core import STATUS, Invite, SendKey
from automations.jobs import invites
from automations.jobs.common import attention, cannot_email, day, render_context, signer
from automations.jobs.invites import local_now, sheet_time
from automations.jobs.plan import Email, JobInput, Plan
from automations.model import DEFAULT_LENGTH, Partner
from automations.sheets.base import RowWrite


def plan_outreach(inp: JobInput) -> Plan:
    emails: list[Email] = []
    writes: list[RowWrite] = []
    seen: dict[str, str] = {}
    today = inp.today
    for partner in inp.book.partners:
        if partner.ref.match is not None and not partner.ref.new:
            writes += attention(partner.ref, partner.status, partner.problems)
            continue  # a duplicate ID: nothing is sent until staff fix it
        previous = inp.seen_stages.get(partner.id)
        stage_cells = {}
        if partner.stage_since is None or (previous is not None and previous != partner.stage):
            stage_cells["Stage since"] = today  # staff (or an earlier run) changed the Stage
        seen[partner.id] = partner.stage
        if partner.problems:
            writes += attention(partner.ref, partner.status, partner.problems)
            if stage_cells:
                writes.append(partner.ref.write(stage_cells))
            continue
        email, status = _next_step(inp, partner)
        if email is not None:
            emails.append(email)
            seen[partner.id] = str(email.on_sent.get("Stage", partner.stage))  # the intro moves it to Contacted
        if status is not None and (status != partner.status or stage_cells):
            writes.append(partner.ref.write({STATUS: status, **stage_cells}))
        elif stage_cells:
            writes.append(partner.ref.write(stage_cells))
    return Plan("outreach", tuple(emails), tuple(writes), seen_stages=seen)


def _next_step(inp: JobInput, p: Partner) -> tuple[Email | None, str | None]:
    """The email due for this partner now, or the status explaining why there is none."""
    today = inp.today
    first, second = inp.settings.follow_up_days
    again = _again(inp, p)
    if again is not None:
        return again, None
    cancellation = _meeting_cancellation(inp, p)
    if cancellation is not None:
        return cancellation
    replied = inp.replied.get(p.id)
    if replied is not None and p.stage_since is not None and replied < p.stage_since:
        replied = None  # staff moved the partner on since that reply: a new start
    if replied is not None and p.stage in ("Prospect", "Contacted"):
        return None, f"Replied {replied.isoformat()}: update Stage"  # a reply ends the sequence
    if p.stage in ("Prospect", "Contacted") and p.outreach_step < 3:
        reason = cannot_email(inp, p)
        if reason:
            verb = "Not emailed" if p.stage == "Prospect" else "Sequence stopped"
            return None, f"{verb}: {reason}"
    if p.stage == "Prospect":
        if p.outreach_step > 0:
            return None, "Intro already sent; set Stage to Contacted to continue, or Declined"
        warm = bool(p.introduced_by)
        template = "outreach_warm_intro" if warm else "outreach_intro"
        return _email(inp, p, "intro", template, "Warm intro" if warm else "Intro", {
            "Stage": "Contacted", "Stage since": today, "Outreach step": 1, "Last emailed": today,
            "Next follow-up": today + timedelta(days=first),
        }, f"{'Warm intro' if warm else 'Intro'} sent {day(today)}; follow-up 1 due {day(today + timedelta(days=first))}"), None
    if p.stage == "Contacted":
        last = p.last_emailed
        if p.outreach_step == 0 or last is None:
            return None, "Contacted by staff; no automatic follow-ups (Outreach step is empty)"
        if p.outreach_step == 1:
            due = last + timedelta(days=first)
            if today < due:
                return None, None
            return _email(inp, p, "follow_up_1", "outreach_follow_up_1", "Follow-up 1", {
                "Outreach step": 2, "Last emailed": today, "Next follow-up": today + timedelta(days=second),
            }, f"Follow-up 1 sent {day(today)}; follow-up 2 due {day(today + timedelta(days=second))}", number=2), None
        if p.outreach_step == 2:
            due = last + timedelta(days=second)
            if today < due:
                return None, None
            return _email(inp, p, "follow_up_2", "outreach_follow_up_2", "Follow-up 2", {
                "Outreach step": 3, "Last emailed": today, "Next follow-up": "",
            }, f"Follow-up 2 sent {day(today)}; no more emails: {_call(p)}", number=3), None
        if p.status.startswith("Follow-up 2 sent"):
            return None, None  # it says so already, with the day the last letter went
        return None, f"No reply after the last follow-up: {_call(p)}"
    if p.stage == "Meeting":
        return _meeting(inp, p)
    if p.stage == "Agreement":
        if cannot_email(inp, p):
            return None, f"Welcome not sent: {cannot_email(inp, p)}"
        return _email(inp, p, "welcome", "partnership_welcome", "Welcome", {},
                      f"Welcome and ground rules sent {day(today)}"), None
    return None, None


def _again(inp: JobInput, p: Partner) -> Email | None:
    """An email of the sequence that staff asked to go out again (`resolve --resend`), whatever the Stage now."""
    for key in sorted((k for k in inp.resend if k.job == "outreach" and k.row_id == p.id), key=str):
        if cannot_email(inp, p):
            return None
        template, label, number = {
            "intro": ("outreach_warm_intro" if p.introduced_by else "outreach_intro", "Intro", 1),
            "follow_up_1": ("outreach_follow_up_1", "Follow-up 1", 2),
            "follow_up_2": ("outreach_follow_up_2", "Follow-up 2", 3),
            "welcome": ("partnership_welcome", "Welcome", 1),
        }.get(key.step, ("", "", 1))
        if not template:
            return _meeting_again(inp, p, key.step)
        return _email(inp, p, key.step, template, label, {}, f"{label} sent {day(inp.today)}", number=number)
    return None


# -- the meeting and its calendar invite ---------------------------------------------------------------------

MEETING = "meeting_"  # the steps of a partner's meeting invites (see automations.jobs.invites)


def _meeting(inp: JobInput, p: Partner) -> tuple[Email | None, str | None]:
    """The confirmation (an invite) of a future meeting, or its update when staff moved it since."""
    today = inp.today
    sent = invites.history(inp, "outreach", p.id, MEETING)
    if p.meeting_date is None and sent and sent[-1].kind == "cancel":
        return None, None  # the row says the cancellation went; a new date starts again
    if p.meeting_date is None:
        return None, "Meeting: add a future Meeting date to send the confirmation"
    if p.meeting_date < today:
        return None, _meeting_passed(p.meeting_date)
    if p.meeting_at is None:
        if any(s.when == p.meeting_date.isoformat() for s in sent):
            return None, None  # confirmed by date alone, before invites carried the time
        return None, (f"Meeting confirmation held: Meeting date {p.meeting_date.isoformat()} has no time; write "
                      f"the date and time, like {p.meeting_date.isoformat()} 10:00 or "
                      f"{p.meeting_date:%m/%d/%Y} 2:30 PM")
    if p.meeting_at <= local_now(inp):
        return None, _meeting_passed(p.meeting_date)
    when = invites.when_token(p.meeting_at)
    last = sent[-1] if sent else None
    if last is not None and last.on_calendar and last.when == when:
        return None, None  # the partner's calendar has it as it is
    if cannot_email(inp, p):
        return None, f"Meeting confirmation not sent: {cannot_email(inp, p)}"
    moved = last.start if last is not None and last.on_calendar else None
    moved = moved if moved is not None and moved > local_now(inp) else None  # after a past meeting: a new one
    sequence = invites.next_sequence(sent)
    invite = _meeting_invite(inp, p, sequence, "REQUEST", p.meeting_at, moved)
    if invite.update:
        return _email(inp, p, invites.step(MEETING, "update", sequence, when), "meeting_confirmation", "Meeting update",
                      {}, f"Meeting update sent {day(today)}: moved to {sheet_time(p.meeting_at)}", invite=invite), None
    return _email(inp, p, invites.step(MEETING, "confirmation", sequence, when), "meeting_confirmation",
                  "Meeting confirmation", {}, f"Meeting confirmation sent {day(today)} for {sheet_time(p.meeting_at)}",
                  invite=invite), None


def _meeting_passed(when: date) -> str:
    """The status of a Meeting row whose meeting is over (confirmed or not): its outcome is the staff's to set,
    as the To do list says."""
    return f"The meeting on {when.isoformat()} has passed: set Stage (Agreement, Declined) or the next Meeting date"


def _meeting_cancellation(inp: JobInput, p: Partner) -> tuple[Email | None, str | None] | None:
    """A cancellation when the partner's calendar holds a meeting still ahead, and staff cleared the Meeting
    date or set Stage Declined; None when none is due."""
    if p.stage != "Declined" and p.meeting_date is not None:
        return None
    sent = invites.history(inp, "outreach", p.id, MEETING)
    last = sent[-1] if sent else None
    if last is None or not last.on_calendar or last.start is None or last.start <= local_now(inp):
        return None
    if cannot_email(inp, p):
        return None, f"Meeting cancellation not sent: {cannot_email(inp, p)}"
    sequence = invites.next_sequence(sent)
    invite = _meeting_invite(inp, p, sequence, "CANCEL", last.start)
    return _email(inp, p, invites.step(MEETING, "cancel", sequence, last.when), "meeting_cancellation",
                  "Meeting cancellation", {}, f"Meeting cancellation sent {day(inp.today)} for {sheet_time(last.start)}",
                  invite=invite), None


def _meeting_again(inp: JobInput, p: Partner, step: str) -> Email | None:
    """A meeting invite staff asked to go out again: the same invite (its SEQUENCE, its time) once more."""
    found = invites.parse(step.removeprefix(MEETING)) if step.startswith(MEETING) else None
    start = (found.start if found is not None else None) or p.meeting_at  # a step from before invites: as now
    if found is None or start is None:
        return None
    cancel = found.kind == "cancel"
    invite = _meeting_invite(inp, p, found.sequence, "CANCEL" if cancel else "REQUEST", start)
    label = "Meeting cancellation" if cancel else "Meeting confirmation"
    return _email(inp, p, step, "meeting_cancellation" if cancel else "meeting_confirmation", label, {},
                  f"{label} sent {day(inp.today)} for {sheet_time(start)}", invite=invite)


def _meeting_invite(inp: JobInput, p: Partner, sequence: int, method: str, start: datetime,
                    moved_from: datetime | None = None) -> Invite:
    assert p.email is not None
    clinic = inp.settings.clinic
    return invites.invite(inp, uid=invites.uid("meeting", p.id, inp), sequence=sequence, method=method,
                          start=start, end=start + DEFAULT_LENGTH,
                          summary=f"Partnership meeting: {clinic.name} and {p.business}", location="",
                          to=(p.contact_name, p.email), signer=signer(inp, p), moved_from=moved_from)


def _call(p: Partner) -> str:
    who = p.contact_name or p.business
    return f"call {who}" + (f" at {p.phone}" if p.phone else "")


SEQUENCE = ("intro", "follow_up_1", "follow_up_2")  # one conversation: each follow-up answers the letters before it


def _email(inp: JobInput, p: Partner, step: str, template: str, label: str, cells: dict[str, object],
           status: str, number: int = 1, invite: Invite | None = None) -> Email:
    assert p.email is not None
    earlier = SEQUENCE[:SEQUENCE.index(step)] if step in SEQUENCE else ()
    return Email(job="outreach", row=p.ref, step=step, template=template, to_email=p.email,
                 to_name=p.contact_name, recipient="partner", label=label,
                 context=render_context(inp, template, partner=p, step=number, invite=invite),
                 on_sent=cells, sent_status=status, outreach=template.startswith("outreach_"),
                 answers=tuple(SendKey("outreach", p.id, s) for s in earlier), invite=invite)
