"""The quarterly partner scorecard: to each Active partner, the numbers of the partnership, in counts.

It goes once per quarter, from the quarter's first weekday (clinic time); a run later in the quarter
still sends it when it has not gone, and the ledger step is the quarter (e.g. "2027-Q1"), so it goes
at most once per partner per quarter across crashes and reruns. A quarter is counted only once it
has ended: the scorecard sent in 2027-Q1 shows 2026-Q4 against 2026-Q3.

The figures, per partner and quarter: referrals each way (dated as the Dashboard dates them: Referred
on, for an Out referral without it the Discharge date), first visits in the quarter (our patients'
First visit with the partner, the partner's clients' first visit with us), and Events whose Partner is
them, dated in the quarter. Counts only: never a patient's name, goal or contact, and nothing
about a referral beyond it being counted.

`Scorecard` = No keeps a partner out; blank or Yes lets it in; anything else is a problem on the row,
held until staff fix it. `[scorecard] enabled = false` sends nothing (the run's summary and job health say so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from automations.core import SendKey
from automations.jobs.common import attention, cannot_email, day, render_context, status_write
from automations.jobs.plan import Email, JobInput, Plan
from automations.metrics import referral_date
from automations.model import Book, Event, Referral, RowRef
from automations.sheets.base import RowWrite

JOB = "scorecard"
TEMPLATE = "partner_scorecard"
LABEL = "Quarterly scorecard"
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")
DISABLED = f"{JOB}: off ([scorecard] enabled = false in the config); no scorecards are sent"


@dataclass(frozen=True, order=True)
class Quarter:
    """A calendar quarter: 1 is January to March."""

    year: int
    number: int

    @classmethod
    def of(cls, day: date) -> Quarter:
        return cls(day.year, (day.month - 1) // 3 + 1)

    def before(self, quarters: int = 1) -> Quarter:
        index = self.year * 4 + self.number - 1 - quarters
        return Quarter(index // 4, index % 4 + 1)

    @property
    def label(self) -> str:
        """The ledger step and the sheet's name for it: "2027-Q1"."""
        return f"{self.year}-Q{self.number}"

    @property
    def name(self) -> str:
        """As the partner reads it: "Q1 2027"."""
        return f"Q{self.number} {self.year}"

    @property
    def months(self) -> str:
        """"January to March 2027"."""
        first = MONTH_NAMES[(self.number - 1) * 3]
        last = MONTH_NAMES[(self.number - 1) * 3 + 2]
        return f"{first} to {last} {self.year}"

    @property
    def start(self) -> date:
        return date(self.year, (self.number - 1) * 3 + 1, 1)

    @property
    def end(self) -> date:
        return self.before(-1).start - timedelta(days=1)

    @property
    def first_weekday(self) -> date:
        """The quarter's first Monday to Friday: the scorecard goes from this day."""
        first = self.start
        while first.weekday() >= 5:
            first += timedelta(days=1)
        return first

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end


def quarter_of(moment: datetime | date) -> str:
    """The ledger step of a scorecard sent at *moment*: its quarter, e.g. "2027-Q1" (also for the Log)."""
    return Quarter.of(moment.date() if isinstance(moment, datetime) else moment).label


@dataclass(frozen=True)
class Figures:
    """One partner's counts over one quarter."""

    referred_to_them: int  # Out referrals dated in the quarter
    first_visits_with_them: int  # Out referrals whose First visit (with the partner) is in the quarter
    referred_to_us: int  # In referrals dated in the quarter
    first_visits_with_us: int  # In referrals whose First visit (with us) is in the quarter
    events_together: int  # Events whose Partner is them, dated in the quarter

    @property
    def total(self) -> int:
        return (self.referred_to_them + self.first_visits_with_them + self.referred_to_us
                + self.first_visits_with_us + self.events_together)


@dataclass(frozen=True)
class Together:
    """The rows one partner shares with the clinic: the referrals and events whose Partner cell names them."""

    referrals: tuple[Referral, ...] = ()
    events: tuple[Event, ...] = ()


def together(book: Book) -> dict[RowRef, Together]:
    """Every partner's referrals and events, found in one pass over each tab (not once per partner)."""
    referrals: dict[RowRef, list[Referral]] = {}
    events: dict[RowRef, list[Event]] = {}
    for r in book.referrals:
        if r.partner is not None:
            referrals.setdefault(r.partner.ref, []).append(r)
    for e in book.events:
        if e.partner is not None:
            events.setdefault(e.partner.ref, []).append(e)
    return {ref: Together(tuple(referrals.get(ref, ())), tuple(events.get(ref, ())))
            for ref in referrals.keys() | events.keys()}


def figures(rows: Together, quarter: Quarter) -> Figures:
    """What the sheet holds for one partner (*rows*, from `together`) in *quarter*."""
    out = [r for r in rows.referrals if r.direction == "Out"]
    inbound = [r for r in rows.referrals if r.direction == "In"]
    return Figures(
        referred_to_them=sum(1 for r in out if referral_date(r) in quarter),
        first_visits_with_them=sum(1 for r in out if r.first_visit in quarter),
        referred_to_us=sum(1 for r in inbound if referral_date(r) in quarter),
        first_visits_with_us=sum(1 for r in inbound if r.first_visit in quarter),
        events_together=sum(1 for e in rows.events if e.date in quarter),
    )


@dataclass(frozen=True)
class Line:
    """One line of the scorecard's table: what is counted, the reported quarter, the quarter before."""

    label: str
    value: int
    previous: int


@dataclass(frozen=True)
class Scorecard:
    """The template's `scorecard`: the quarter reported, the one before, the one now under way, the lines."""

    quarter: Quarter
    previous: Quarter
    current: Quarter
    lines: tuple[Line, ...]
    total: int  # everything counted in the reported quarter: 0 makes it a quiet one
    previous_total: int
    referred_to_them: int  # patients we referred to them in both quarters: may their first visits be missing?


def scorecard_for(rows: Together, today: date) -> Scorecard:
    """The scorecard sent on *today* for the partner of *rows*: the quarter just ended against the one before."""
    current = Quarter.of(today)
    reported, previous = current.before(1), current.before(2)
    now, then = figures(rows, reported), figures(rows, previous)
    lines = tuple(Line(label, getattr(now, field), getattr(then, field)) for field, label in (
        ("referred_to_them", "Patients we referred to you"),
        ("first_visits_with_them", "Our patients' first visits with you"),
        ("referred_to_us", "Clients you referred to us"),
        ("first_visits_with_us", "Your clients' first visits with us"),
        ("events_together", "Events we held together"),
    ))
    return Scorecard(reported, previous, current, lines, now.total, then.total,
                     now.referred_to_them + then.referred_to_them)


def plan_scorecard(inp: JobInput) -> Plan:
    if not inp.settings.scorecard_enabled:
        return Plan(JOB, notes=(DISABLED,))
    today = _clinic_day(inp)
    quarter = Quarter.of(today)
    if today < quarter.first_weekday:
        return Plan(JOB)  # a quarter that starts on a weekend: from Monday
    reported = quarter.before(1).name
    emails: list[Email] = []
    writes: list[RowWrite] = []
    shared = together(inp.book)
    for partner in inp.book.partners:
        if partner.stage != "Active" or partner.scorecard == "No":
            continue
        key = SendKey(JOB, partner.id, quarter.label)
        if key in inp.delivered and key not in inp.resend:
            continue  # this quarter's has gone
        if partner.problems:
            writes += attention(partner.ref, partner.status, partner.problems)
            continue
        reason = cannot_email(inp, partner)
        if reason:
            writes += status_write(partner.ref, partner.status, f"{LABEL} ({reported}) not sent: {reason}")
            continue
        assert partner.email is not None
        card = scorecard_for(shared.get(partner.ref, Together()), today)
        emails.append(Email(
            job=JOB, row=partner.ref, step=quarter.label, template=TEMPLATE, to_email=partner.email,
            to_name=partner.contact_name, recipient="partner", label=LABEL,
            context=render_context(inp, TEMPLATE, partner=partner, scorecard=card),
            sent_status=f"{LABEL} sent {day(today)}: {card.quarter.name} against {card.previous.name}"))
    return Plan(JOB, tuple(emails), tuple(writes))


def _clinic_day(inp: JobInput) -> date:
    """Today in the clinic's time zone, whatever zone the run's clock gives."""
    now = inp.now
    return now.astimezone(inp.settings.clinic.tz).date() if now.tzinfo is not None else now.date()
