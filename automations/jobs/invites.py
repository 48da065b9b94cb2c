"""The calendar invitations jobs send with meetings and events, and what went before them.

Each invite is its own ledger step, named by its kind, its SEQUENCE (after the first) and the time it
was for: `meeting_confirmation_2026-12-03T10:00`, then `meeting_update_1_2026-12-04T14:00`, then
`meeting_cancel_2_2026-12-04T14:00` (an event's copies: `partner_reminder_…`, `staff_update_1_…`).
So what was delivered (`JobInput.delivered`) tells a plan what the recipient's calendar holds now and
the next SEQUENCE, and each invite still goes at most once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from automations.core import Invite
from automations.jobs.plan import JobInput

_STEP = re.compile(r"(?P<kind>confirmation|update|reminder|cancel)_(?:(?P<sequence>\d+)_)?(?P<when>\d{4}-\d\d-\d\d.*)")


@dataclass(frozen=True)
class Sent:
    """One invite (or, from before invites, one confirmation or reminder) that was delivered."""

    kind: str  # confirmation | update | reminder | cancel
    sequence: int
    when: str  # the time it was for, as in the step; "" for a reminder from before invites

    @property
    def start(self) -> datetime | None:
        """The start it gave, when the step names a date and time (a confirmation from before invites has none)."""
        try:
            return datetime.strptime(self.when[:16], "%Y-%m-%dT%H:%M")
        except ValueError:
            return None

    @property
    def end(self) -> datetime | None:
        """The end it gave: after "_to_" in the step, else an hour after the start."""
        start = self.start
        if start is None:
            return None
        _, _, until = self.when.partition("_to_")
        try:
            if len(until) == 5:
                return datetime.combine(start.date(), datetime.strptime(until, "%H:%M").time())
            return datetime.strptime(until, "%Y-%m-%dT%H:%M") if until else start + timedelta(hours=1)
        except ValueError:
            return start + timedelta(hours=1)

    @property
    def on_calendar(self) -> bool:
        """True when the recipient's calendar holds this invite's meeting or event now."""
        return self.kind != "cancel" and self.start is not None


def history(inp: JobInput, job: str, row_id: str, prefix: str, legacy: str = "") -> list[Sent]:
    """The invites of one row (and copy, by step *prefix*) that were delivered, in SEQUENCE order.

    *legacy* is the step a reminder had before invites: it counts as a reminder for the event as it is now.
    """
    found = []
    for key in inp.delivered:
        if key.job != job or key.row_id != row_id:
            continue
        if legacy and key.step == legacy:
            found.append(Sent("reminder", 0, ""))
        elif key.step.startswith(prefix) and (sent := parse(key.step[len(prefix):])) is not None:
            found.append(sent)
    return sorted(found, key=lambda sent: (sent.sequence, sent.kind == "cancel"))


def parse(step: str) -> Sent | None:
    """The invite a step (without its prefix) names, or None when it names none."""
    match = _STEP.fullmatch(step)
    return Sent(match["kind"], int(match["sequence"] or 0), match["when"]) if match else None


def next_sequence(sent: list[Sent]) -> int:
    return max((s.sequence for s in sent), default=-1) + 1


def step(prefix: str, kind: str, sequence: int, when: str) -> str:
    """The ledger step of one invite (see the module docstring)."""
    return f"{prefix}{kind}_{when}" if sequence == 0 else f"{prefix}{kind}_{sequence}_{when}"


def when_token(start: datetime, end: datetime | None = None) -> str:
    """The time an invite is for, as its step names it: the start, and the end when not an hour later."""
    token = f"{start:%Y-%m-%dT%H:%M}"
    if end is None or end == start + timedelta(hours=1):
        return token
    return f"{token}_to_{end:%H:%M}" if end.date() == start.date() else f"{token}_to_{end:%Y-%m-%dT%H:%M}"


def local_now(inp: JobInput) -> datetime:
    """Now on the clinic's wall clock (naive, as the sheet's dates and times are)."""
    return inp.now.astimezone(inp.settings.clinic.tz).replace(tzinfo=None)


def invite(inp: JobInput, *, uid: str, sequence: int, method: str, start: datetime, end: datetime, summary: str,
           location: str, to: tuple[str, str], signer: Any, moved_from: datetime | None = None) -> Invite:
    """An invite for a wall-clock *start* and *end* in the clinic's zone, organized by the signer (else the clinic)."""
    clinic = inp.settings.clinic
    tz = clinic.tz
    if signer is not None and signer.email:
        organizer = (signer.name, signer.email)
    else:
        organizer = (clinic.name, clinic.reply_to or clinic.from_email)
    return Invite(uid=uid, sequence=sequence, method=method, start=start.replace(tzinfo=tz),
                  end=end.replace(tzinfo=tz), summary=summary, location=location, organizer=organizer,
                  sender=clinic.from_email, attendee=to,
                  moved_from=moved_from.replace(tzinfo=tz) if moved_from is not None else None)


def uid(kind: str, row_id: str, inp: JobInput) -> str:
    """The stable UID of one meeting (by Partner ID) or event (by Event ID), on the clinic's domain."""
    return f"{kind}-{row_id.strip().lower()}@{inp.settings.clinic.domain}"


def sheet_time(moment: datetime) -> str:
    """A date and time as the row's status says it: 2026-12-03 10:00."""
    return f"{moment:%Y-%m-%d %H:%M}"
