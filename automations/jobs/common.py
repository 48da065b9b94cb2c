"""Helpers the jobs share: the rendering context, statuses for rows that cannot be handled."""

from __future__ import annotations

from datetime import date
from typing import Any, Callable

from automations.check import problem_status
from automations.core import STATUS, Invite, SendKey
from automations.jobs.plan import Email, JobInput, Plan
from automations.mail.message import unsubscribe_mailto
from automations.model import Event, Partner, Referral, RowRef, SharedReferral
from automations.sheets.base import RowWrite


def render_context(inp: JobInput, template: str, *, partner: Partner | None = None,
                   referral: Referral | SharedReferral | None = None,
                   event: Event | None = None, digest: Any = None, scorecard: Any = None, step: int = 1,
                   recipient: str = "partner", invite: Invite | None = None) -> dict[str, Any]:
    """Every key the templates may use (SPEC §5); rows are passed as they are, with attribute access."""
    clinic = inp.settings.clinic
    return {
        "clinic": clinic,
        "partner": partner,
        "referral": referral,
        "event": event,
        "digest": digest,
        "scorecard": scorecard,  # partner_scorecard only: the quarter's figures (jobs/scorecard.py)
        "outreach": template.startswith("outreach_"),
        "recipient": recipient,  # partner, patient, staff or owner: who this copy is for
        "unsubscribe_mailto": unsubscribe_mailto(clinic),
        "step": step,
        "follow_up_days": list(inp.settings.follow_up_days),
        "today": inp.today,
        "signer": signer(inp, partner),  # the partner's Owner from [[staff]], who signs; None: the team signs
        "invite": invite,  # the calendar invite the email carries (meetings, events): start, end, update, cancelled
        # the quarterly scorecard will go to this partner (the config has it on, its Scorecard cell is not No)
        "scorecards": inp.settings.scorecard_enabled and (partner is None or partner.scorecard != "No"),
    }


def signer(inp: JobInput, partner: Partner | None) -> Any:
    """The `[[staff]]` entry the partner's Owner names (name compared ignoring case and spaces), or None."""
    owner = " ".join((partner.owner if partner is not None else "").split()).lower()
    return next((s for s in inp.settings.staff if " ".join(s.name.split()).lower() == owner), None) if owner else None


def cannot_email(inp: JobInput, partner: Partner) -> str:
    """Why nothing may be sent to this partner's contact now, or "" when it may."""
    if partner.do_not_email:
        return "Do not email is Yes"
    if not partner.email:
        return "no Email on the row"
    if inp.book.blocked(partner.email):
        return "the address is on Opt-outs"
    return ""


def status_write(ref: RowRef, current: str, status: str, **cells: Any) -> list[RowWrite]:
    """A status (and other cells) for a row, or nothing when the row already says exactly that."""
    if status == current and not cells:
        return []
    return [ref.write({STATUS: status, **cells})]


def attention(ref: RowRef, current: str, problems: tuple[str, ...]) -> list[RowWrite]:
    return status_write(ref, current, problem_status(problems))


def done(inp: JobInput, marker: object, job: str, row: RowRef, step: str) -> bool:
    """A step is done when its row says so (a date in its column), unless staff asked for it again."""
    return bool(marker) and SendKey(job, row.row_id, step) not in inp.resend


def day(value: date) -> str:
    return value.isoformat()


Decision = tuple[list[Email], "str | None"]


def plan_referrals(inp: JobInput, job: str, direction: str,
                   decide: Callable[[JobInput, Referral], Decision]) -> Plan:
    """The referral jobs' loop: rows of one Direction, bad rows get their problems, the rest *decide*."""
    emails: list[Email] = []
    writes: list[RowWrite] = []
    for referral in inp.book.referrals:
        if referral.direction != direction:
            continue
        if referral.problems:
            writes += attention(referral.ref, referral.status, referral.problems)
            continue
        due, status = decide(inp, referral)
        emails += due
        if status is not None:
            writes += status_write(referral.ref, referral.status, status)
    return Plan(job, tuple(emails), tuple(writes))
