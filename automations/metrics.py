"""How the partnership programme is doing: pure functions of a Book, a date and job health.

Everything here is computed from the sheet as it is now (no I/O, no clock): the Dashboard and
the owner's digest both read it. The sheet keeps each partner's current Stage and the date it
started (`Stage since`), not a history of stages, so a few figures are defined from the evidence
the rows carry; each function's docstring states its rule, and docs/dashboard.md repeats them.

Dates used throughout:
- a referral's date is its `Referred on`; an Out referral without one falls back to its
  `Discharge date` (the clinic refers at discharge);
- a partner's first contact (the first outreach letter) is `Stage since` while Stage is
  Contacted (the intro sets both), otherwise `Last emailed` when `Outreach step` is 1 (the intro
  was the only letter). Other partners past Contacted cannot be dated: they count in the funnel
  and in all-time figures, never in a period.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from automations.core import RunRecord
from automations.model import Book, Event, Partner, Referral, RowRef

FUNNEL = ("Prospect", "Contacted", "Meeting", "Agreement", "Active")
_RANK = {"Prospect": 0, "Contacted": 1, "Meeting": 2, "Agreement": 3, "Active": 4, "Paused": 4}
RECENT_DAYS = 90  # "last 90 days" and "Dormant": the 90 days ending today
ONE_WAY_DAYS = 180  # "One-way": every referral of the 180 days ending today went the same way
NEEDS_ATTENTION = "Needs attention"
POINTER_ROWS = 20  # rows named in the pointer sentence before "and N more"


# -- periods ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """A span of days, both ends included."""

    label: str
    start: date
    end: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end


def month_start(day: date, back: int = 0) -> date:
    """The first day of *day*'s month, or of the month *back* months earlier."""
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def periods(today: date) -> tuple[Period, Period, Period, Period]:
    """This month (up to today); the same days of last month (its first day up to the same day of the month,
    or its end when shorter), to compare like with like; the whole of last month; year to date."""
    this_month = month_start(today)
    last_month = month_start(today, 1)
    last_end = this_month - timedelta(days=1)
    same_days = last_month.replace(day=min(today.day, last_end.day))
    return (Period("This month", this_month, today),
            Period("Same days last month", last_month, same_days),
            Period("Last month", last_month, last_end),
            Period("Year to date", date(today.year, 1, 1), today))


def iso_week(day: date) -> str:
    """The ISO week of *day*, e.g. "2026-W48"."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_before(today: date, weeks: int = 1) -> Period:
    """The whole ISO week (Monday to Sunday) *weeks* before the one holding *today*."""
    monday = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks)
    return Period(iso_week(monday), monday, monday + timedelta(days=6))


# -- dates from the evidence on the rows -----------------------------------------------------------
def referral_date(referral: Referral) -> date | None:
    """Referred on; for an Out referral without it, the Discharge date."""
    if referral.referred_on is not None:
        return referral.referred_on
    return referral.discharge_date if referral.direction == "Out" else None


def first_contact(partner: Partner) -> date | None:
    """When the first outreach letter went, where the row shows it (see the module docstring)."""
    if partner.stage == "Contacted":
        if partner.stage_since is not None:
            return partner.stage_since
        return partner.last_emailed if partner.outreach_step == 1 else None
    if partner.stage in ("Meeting", "Agreement", "Active", "Paused", "Declined") and partner.outreach_step == 1:
        return partner.last_emailed
    return None


def stage_rank(partner: Partner) -> int:
    """How far along the funnel a partner got: 0 Prospect … 4 Active.

    Paused counts as having reached Active. Declined counts only at the stages it evidently
    passed: Meeting when it has a Meeting date, else Contacted when an outreach letter went
    (Outreach step or Last emailed), else Prospect.
    """
    if partner.stage == "Declined":
        if partner.meeting_date is not None:
            return 2
        return 1 if partner.outreach_step >= 1 or partner.last_emailed is not None else 0
    return _RANK.get(partner.stage, 0)


# -- KPIs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    kind: str  # "int", "percent" (a share from 0 to 1) or "decimal"


KPIS = (
    Kpi("active_partners", "Active partners", "int"),
    Kpi("prospects_contacted", "Prospects contacted", "int"),
    Kpi("meeting_rate", "Outreach meeting rate", "percent"),
    Kpi("reply_rate", "Outreach reply rate", "percent"),
    Kpi("referrals_out", "Referrals out", "int"),
    Kpi("referrals_in", "Referrals in", "int"),
    Kpi("inbound_conversion", "Inbound conversion", "percent"),
    Kpi("outbound_follow_through", "Outbound follow-through", "percent"),
    Kpi("median_days_to_visit", "Median days, referral to first visit", "decimal"),
    Kpi("consent_rate", "Consent rate at discharge", "percent"),
    Kpi("events_held", "Events held", "int"),
    Kpi("attendees", "Event attendees", "int"),
    Kpi("event_new_patients", "New patients from events", "int"),
)

Number = int | float | None


def kpi_values(book: Book, period: Period, replied: Mapping[str, date] | None = None) -> dict[str, Number]:
    """Every KPI over one period (None where a rate has nothing to divide by).

    - active partners: Stage is Active now and Stage since (when known) is on or before the
      period's end — a partner paused since then is not counted, as the sheet keeps no history;
    - prospects contacted: partners whose first contact falls in the period;
    - outreach meeting rate: of those partners, the share now at Meeting or beyond (Meeting,
      Agreement, Active, Paused; Declined with a Meeting date);
    - outreach reply rate: of those partners, the share who replied by email (the replies job's
      record in *replied*) or are now at Meeting or beyond (they answered somehow); empty when the
      mailbox is not read and nobody was contacted;
    - referrals out / in: referrals whose date falls in the period;
    - inbound conversion: of the In referrals dated in the period, the share with a First visit;
    - outbound follow-through: of the Out referrals dated in the period, the share whose patient had a
      First visit with the partner (our patients actually started there);
    - median days from referral to first visit: In referrals whose First visit falls in the
      period, days from Referred on to First visit;
    - consent rate at discharge: of the Out referrals whose Discharge date falls in the period,
      the share with valid consent then (Consent Yes, and a Consent expires not before the Discharge
      date: a Yes without its expiry allows nothing to be shared);
    - events held, attendees, new patients: events dated in the period (so held, as periods
      end today at the latest), blanks counting as 0.
    """
    contacted = [p for p in book.partners if first_contact(p) in period]
    out_count = out_visited = in_count = in_visited = discharged = consented = 0
    waits: list[int] = []
    for referral in book.referrals:
        when = referral_date(referral)
        if referral.direction == "Out":
            if when in period:
                out_count += 1
                out_visited += referral.first_visit is not None
            if referral.discharge_date in period:
                discharged += 1
                consented += referral.discharge_date is not None and referral.consent_gap(referral.discharge_date) is None
        elif referral.direction == "In":
            if when in period:
                in_count += 1
                in_visited += referral.first_visit is not None
            visit, referred = referral.first_visit, referral.referred_on
            if visit is not None and referred is not None and visit in period and visit >= referred:
                waits.append((visit - referred).days)
    held = [e for e in book.events if e.date in period]
    return {
        "active_partners": sum(1 for p in book.partners if p.stage == "Active"
                               and (p.stage_since is None or p.stage_since <= period.end)),
        "prospects_contacted": len(contacted),
        "meeting_rate": _share(sum(1 for p in contacted if stage_rank(p) >= 2), len(contacted)),
        "reply_rate": _share(sum(1 for p in contacted if p.id in (replied or {}) or stage_rank(p) >= 2),
                             len(contacted)),
        "referrals_out": out_count,
        "referrals_in": in_count,
        "inbound_conversion": _share(in_visited, in_count),
        "outbound_follow_through": _share(out_visited, out_count),
        "median_days_to_visit": float(statistics.median(waits)) if waits else None,
        "consent_rate": _share(consented, discharged),
        "events_held": len(held),
        "attendees": sum(e.attendees or 0 for e in held),
        "event_new_patients": sum(e.new_patients or 0 for e in held),
    }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# -- the funnel ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FunnelStep:
    stage: str
    reached: int | None  # partners that got at least this far (None for Paused/Declined rows)
    now: int  # partners at this Stage today
    next_step: float | None  # reached ÷ reached at the previous stage
    cumulative: float | None  # reached ÷ every partner (all started as prospects)


def funnel(partners: Sequence[Partner]) -> tuple[FunnelStep, ...]:
    """Prospect → Contacted → Meeting → Agreement → Active, then Paused and Declined (now only)."""
    ranks = [stage_rank(p) for p in partners]
    reached = [sum(1 for r in ranks if r >= k) for k in range(len(FUNNEL))]
    now = {stage: 0 for stage in (*FUNNEL, "Paused", "Declined")}
    for partner in partners:
        if partner.stage in now:
            now[partner.stage] += 1
    steps = [FunnelStep(stage, reached[k], now[stage],
                        _share(reached[k], reached[k - 1]) if k else None, _share(reached[k], reached[0]))
             for k, stage in enumerate(FUNNEL)]
    steps += [FunnelStep(stage, None, now[stage], None, None) for stage in ("Paused", "Declined")]
    return tuple(steps)


# -- one row per partner ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PartnerRow:
    partner_id: str
    business: str
    stage: str
    stage_since: date | None
    days_in_stage: int | None
    out_recent: int  # referrals dated in the last 90 days (today included)
    in_recent: int
    out_total: int
    in_total: int
    converted: int  # In referrals from this partner with a First visit
    followed_through: int  # Out referrals to this partner whose patient had a First visit there
    reciprocity: float | None  # In ÷ Out over the last 90 days; None when nothing was referred out then
    follow_through: float | None  # followed_through ÷ out_total; None when nothing was ever referred out
    last_referral: date | None  # the latest referral date either way, up to today
    dormant: bool  # Active, and no referral either way in the last 90 days
    one_way: str  # "out" or "in" when every referral of the last 180 days went that way; else ""

    @property
    def flag(self) -> str:
        """"Dormant", "One-way (all out)" / "One-way (all in)", both, or blank."""
        flags = (["Dormant"] if self.dormant else []) + ([f"One-way (all {self.one_way})"] if self.one_way else [])
        return "; ".join(flags)


def partner_rows(book: Book, today: date) -> list[PartnerRow]:
    """One row per partner, most referrals either way in the last 90 days first (then all time, then sheet
    order); referrals are matched by their Partner cell."""
    recent = Period("last 90 days", today - timedelta(days=RECENT_DAYS - 1), today)
    half_year = Period("last 180 days", today - timedelta(days=ONE_WAY_DAYS - 1), today)
    tallies: dict[RowRef, _Tally] = {}
    for referral in book.referrals:
        if referral.partner is None or referral.direction not in ("Out", "In"):
            continue
        tally = tallies.setdefault(referral.partner.ref, _Tally())
        when = referral_date(referral)
        out = referral.direction == "Out"
        tally.total[out] += 1
        if when in recent:
            tally.recent[out] += 1
        if when in half_year:
            tally.half_year[out] += 1
        if referral.first_visit is not None:
            tally.visited[out] += 1
        if when is not None and when <= today and (tally.last is None or when > tally.last):
            tally.last = when
    rows = []
    for p in book.partners:
        t = tallies.get(p.ref, _Tally())
        out_recent, in_recent = t.recent[True], t.recent[False]
        one_way = "out" if t.half_year[True] and not t.half_year[False] else (
            "in" if t.half_year[False] and not t.half_year[True] else "")
        rows.append(PartnerRow(
            partner_id=p.id, business=p.business, stage=p.stage, stage_since=p.stage_since,
            days_in_stage=(today - p.stage_since).days if p.stage_since is not None else None,
            out_recent=out_recent, in_recent=in_recent, out_total=t.total[True], in_total=t.total[False],
            converted=t.visited[False], followed_through=t.visited[True],
            reciprocity=in_recent / out_recent if out_recent else None,
            follow_through=_share(t.visited[True], t.total[True]), last_referral=t.last,
            dormant=p.stage == "Active" and out_recent + in_recent == 0, one_way=one_way,
        ))
    return sorted(rows, key=lambda r: (-(r.out_recent + r.in_recent), -(r.out_total + r.in_total)))  # stable


@dataclass
class _Tally:
    """One partner's referral counts, each keyed by direction (True: Out, False: In)."""

    recent: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    half_year: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    total: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    visited: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    last: date | None = None


# -- the last 12 months ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MonthRow:
    month: date  # the first day of the month
    referrals_out: int
    referrals_in: int
    converted: int  # In referrals dated in the month that have a First visit
    new_partners: int  # partners now in Agreement or Active whose Stage since falls in the month


def last_12_months(book: Book, today: date) -> list[MonthRow]:
    """This month and the 11 before it, oldest first."""
    starts = [month_start(today, back) for back in range(11, -1, -1)]
    index = {(m.year, m.month): i for i, m in enumerate(starts)}
    counts = [[0, 0, 0, 0] for _ in starts]
    window = Period("12 months", starts[0], today)
    for referral in book.referrals:
        when = referral_date(referral)
        if when not in window or referral.direction not in ("Out", "In"):
            continue
        assert when is not None
        tally = counts[index[(when.year, when.month)]]
        if referral.direction == "Out":
            tally[0] += 1
        else:
            tally[1] += 1
            tally[2] += referral.first_visit is not None
    for partner in book.partners:
        if partner.stage in ("Agreement", "Active") and partner.stage_since in window:
            assert partner.stage_since is not None
            counts[index[(partner.stage_since.year, partner.stage_since.month)]][3] += 1
    return [MonthRow(m, *c) for m, c in zip(starts, counts, strict=True)]


# -- job health ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobHealth:
    job: str
    started: datetime | None  # None: never run
    finished: datetime | None
    result: str
    sent: int | None
    summary: str


def job_health(health: Mapping[str, RunRecord], jobs: Sequence[str]) -> list[JobHealth]:
    """The last run of each job (the named ones first, in order, then any other on record)."""
    names = list(dict.fromkeys([*jobs, *sorted(health)]))
    rows = []
    for job in names:
        run = health.get(job)
        if run is None:
            rows.append(JobHealth(job, None, None, "never run", None, ""))
        else:
            rows.append(JobHealth(job, run.started, run.finished, run.result, run.sent, run.summary))
    return rows


# -- data problems ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionRow:
    tab: str
    row: str  # the row's ID, or "row N" where it has none
    status: str


def attention_rows(book: Book) -> list[AttentionRow]:
    """Rows whose Automation status starts "Needs attention", and rows with problems found now; once each."""
    found: dict[tuple[str, str], AttentionRow] = {}
    order: dict[tuple[str, str], tuple[int, int]] = {}
    tabs = {title: i for i, title in enumerate(book.titles.values())}
    rows: Iterable[Partner | Referral | Event] = (*book.partners, *book.referrals, *book.events)
    for row in rows:
        if row.status.startswith(NEEDS_ATTENTION):
            key = (row.ref.tab, row.ref.label)
            found.setdefault(key, AttentionRow(row.ref.tab, row.ref.label, row.status))
            order[key] = (tabs.get(row.ref.tab, len(tabs)), row.ref.number)
    for ref, messages in book.problems_by_ref().items():
        key = (ref.tab, ref.label)
        if key not in found:
            found[key] = AttentionRow(ref.tab, ref.label, f"{NEEDS_ATTENTION}: " + "; ".join(messages))
            order[key] = (tabs.get(ref.tab, len(tabs)), ref.number)
    return [found[k] for k in sorted(found, key=lambda k: order[k])]


def attention_pointer(rows: Sequence[AttentionRow]) -> str:
    """One sentence pointing the owner to the rows' Automation status."""
    if not rows:
        return "No rows with data problems."
    named = ", ".join(f"{r.tab} {r.row}" for r in rows[:POINTER_ROWS])
    more = f" and {len(rows) - POINTER_ROWS} more" if len(rows) > POINTER_ROWS else ""
    return f"See the Automation status column of these rows: {named}{more}."


# -- everything at once ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Metrics:
    """What the Dashboard shows, as at *today*."""

    today: date
    periods: tuple[Period, ...]
    kpis: tuple[tuple[Kpi, tuple[Number, ...]], ...]  # each KPI with its value per period
    funnel: tuple[FunnelStep, ...]
    partners: tuple[PartnerRow, ...]
    months: tuple[MonthRow, ...]
    health: tuple[JobHealth, ...]
    attention: tuple[AttentionRow, ...]


def compute(book: Book, today: date, health: Mapping[str, RunRecord], jobs: Sequence[str] = (),
            replied: Mapping[str, date] | None = None) -> Metrics:
    spans = periods(today)
    values = [kpi_values(book, period, replied) for period in spans]
    return Metrics(
        today=today, periods=spans,
        kpis=tuple((kpi, tuple(v[kpi.key] for v in values)) for kpi in KPIS),
        funnel=funnel(book.partners), partners=tuple(partner_rows(book, today)),
        months=tuple(last_12_months(book, today)), health=tuple(job_health(health, jobs)),
        attention=tuple(attention_rows(book)),
    )
