"""The To do list: every row that needs a person, with its Owner and the one thing to do.

One pure function (`todo_list`) of the sheet as read, the day, the partners' replies and the
ledger's unknown-outcome sends; the Dashboard's To do block, the owner's digest and
`partnerloop todo` are three views of it. An item names rows by ID and partners by business
(and a partner's contact, to call): never a patient's name, goal, email or any cell of a
Referrals row, so it may be printed, emailed to the owner and kept in a Dashboard.

Each row gets at most one item (the first kind below that applies); an unknown-outcome send is
an item of its own. The kinds, in the order a person should take them:

- ``unknown``  an email whose delivery is unknown: check with the recipient, then `resolve`;
- ``consent``  an Out referral discharged without valid consent (missing, Yes without an expiry, or expired before the
  introduction went): ask the patient. Consent = No or Revoked is the patient's answer: not chased;
- ``replied``  a partner in Prospect or Contacted replied by email: read it, update Stage;
- ``meeting``  Stage Meeting and the Meeting date has passed (or there is none): set the outcome;
- ``call``     Contacted, the last follow-up went and nobody replied: call them;
- ``quiet``    Agreement or Active, and no referral either way in 60 days (counted from Stage
  since when that is later: a new agreement gets its 60 days): check in;
- ``problem``  a data problem on the row (as `check` lists it): fix the cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from automations.core import SendKey
from automations.metrics import referral_date
from automations.model import Book, Partner, Referral, RowRef, hide_values

QUIET_DAYS = 60
KINDS = ("unknown", "consent", "replied", "meeting", "call", "quiet", "problem")
UNASSIGNED = "Unassigned"
JOB_WORDS = {"outreach": "Outreach", "discharge": "Discharge", "referrals_in": "Referral", "events": "Event reminder",
             "digest": "Weekly digest"}


@dataclass(frozen=True)
class TodoItem:
    """One thing a person must do about one row."""

    kind: str  # one of KINDS
    owner: str  # the partner's Owner; "" when the row has none (shown as Unassigned)
    tab: str  # the tab's title as the sheet names it
    row: str  # the row's ID ("row N" for a row without one)
    partner: str  # the partner's Business, or ""
    action: str  # the one thing to do, a sentence without patient detail
    since: date | None = None  # when it became due, where the sheet shows it
    number: int = 0  # the row number when read, for sheet order

    @property
    def who(self) -> str:
        return self.owner or UNASSIGNED

    @property
    def where(self) -> str:
        return f"{self.tab} {self.row}"


def todo_list(book: Book, today: date, *, replied: Mapping[str, date] | None = None,
              unknown: Mapping[SendKey, datetime] | None = None, quiet_days: int = QUIET_DAYS) -> list[TodoItem]:
    """Every row that needs a person, grouped by owner (named owners A to Z, Unassigned last), most urgent first."""
    replied = replied or {}
    problems = book.problems_by_ref()
    items: list[TodoItem] = []
    for key, claimed in sorted((unknown or {}).items(), key=lambda kv: str(kv[0])):
        items.append(_unknown(book, key, claimed))
    last_referral = _last_referrals(book, today)
    for partner in book.partners:
        item = (_problem(partner.ref, problems.get(partner.ref), partner) if partner.ref in problems
                else _partner_item(partner, today, replied, last_referral.get(partner.ref), quiet_days))
        if item is not None:
            items.append(item)
    for referral in book.referrals:
        if referral.ref in problems:
            items.append(_problem(referral.ref, problems[referral.ref], referral.partner, hide=True))
        elif (item := _consent(referral, today)) is not None:
            items.append(item)
    for event in book.events:
        if event.ref in problems:
            items.append(_problem(event.ref, problems[event.ref], event.partner))
    on_rows = {p.ref for p in book.rows()}
    for ref, messages in problems.items():  # rows of tabs without IDs (Opt-outs)
        if ref not in on_rows:
            items.append(_problem(ref, messages, None, hide=True))
    tabs = {title: i for i, title in enumerate(book.titles.values())}
    return sorted(items, key=lambda i: (not i.owner, i.owner.casefold(), KINDS.index(i.kind),
                                        tabs.get(i.tab, len(tabs)), i.number, i.row))


def by_owner(items: Sequence[TodoItem]) -> list[tuple[str, list[TodoItem]]]:
    """The items as (owner, items) groups, in the list's order (Unassigned for rows without an Owner); an
    Owner typed in another case is the same person, named as first written."""
    groups: dict[str, tuple[str, list[TodoItem]]] = {}
    for item in items:
        groups.setdefault(item.who.casefold(), (item.who, []))[1].append(item)
    return list(groups.values())


# -- each kind ---------------------------------------------------------------------------------------
def _owner(partner: Partner | None) -> str:
    return " ".join(partner.owner.split()) if partner is not None else ""


def _item(kind: str, ref: RowRef, partner: Partner | None, action: str, since: date | None = None) -> TodoItem:
    return TodoItem(kind, _owner(partner), ref.tab, _label(ref), partner.business if partner else "", action, since,
                    ref.number)


def _label(ref: RowRef) -> str:
    """The row's ID; a row whose ID is not in the sheet yet (a run assigns it) by its number."""
    return f"row {ref.number} (no ID yet)" if ref.new else ref.label


def _partner_item(p: Partner, today: date, replied: Mapping[str, date], last_referral: date | None,
                  quiet_days: int) -> TodoItem | None:
    reply = replied.get(p.id)
    if reply is not None and p.stage_since is not None and reply < p.stage_since:
        reply = None  # staff moved the partner on since that reply
    if reply is not None and p.stage in ("Prospect", "Contacted"):
        return _item("replied", p.ref, p, f"{p.business} replied on {reply.isoformat()}: read the reply, then "
                     "update Stage", reply)
    if p.stage == "Meeting":
        if p.meeting_date is None:
            return _item("meeting", p.ref, p, "Stage is Meeting without a Meeting date: add the date, "
                         "or move Stage on", p.stage_since)
        if p.meeting_date < today:
            return _item("meeting", p.ref, p, f"The meeting on {p.meeting_date.isoformat()} has passed: set Stage "
                         "(Agreement, Declined) or the next Meeting date", p.meeting_date)
    if p.stage == "Contacted" and p.outreach_step >= 3:
        who = p.contact_name or p.business
        phone = f" at {p.phone}" if p.phone else ""
        when = f" ({p.last_emailed.isoformat()})" if p.last_emailed else ""
        return _item("call", p.ref, p, f"No more emails: call {who}{phone}, no reply after the last "
                     f"follow-up{when}; then update Stage", p.last_emailed)
    if p.stage in ("Agreement", "Active"):
        start = max((d for d in (last_referral, p.stage_since) if d is not None), default=None)
        if start is not None and (today - start).days >= quiet_days:
            said = (f"no referral either way since {last_referral.isoformat()}" if last_referral
                    else f"no referral either way since Stage {p.stage} on {start.isoformat()}")
            return _item("quiet", p.ref, p, f"{p.stage}, {said}: check in with {p.business}", start)
    return None


def _consent(r: Referral, today: date) -> TodoItem | None:
    """An Out referral due at discharge that waits on the patient's consent (asked for, or renewed)."""
    if r.direction != "Out" or r.discharge_date is None or r.discharge_date > today or r.partner_emailed:
        return None
    business = r.partner.business if r.partner else r.partner_text
    gap = r.consent_gap(today)
    if gap == "missing":
        return _item("consent", r.ref, r.partner, f"Discharged {r.discharge_date.isoformat()} without consent: ask "
                     f"the patient to sign for {business}, or write No in Consent", r.discharge_date)
    if gap == "expired" and r.consent_expires is not None:
        return _item("consent", r.ref, r.partner, f"Consent expired {r.consent_expires.isoformat()}, before the "
                     f"introduction to {business}: renew it with the patient, or write No",
                     r.consent_expires)
    if gap == "no expiry":
        return _item("consent", r.ref, r.partner, f"Consent is Yes but Consent expires is empty: add the expiry "
                     f"date from the signed authorization, and the introduction to {business} goes out",
                     r.discharge_date)
    return None  # valid (the discharge job sends), or declined / revoked: the patient's answer, not chased


def _unknown(book: Book, key: SendKey, claimed: datetime) -> TodoItem:
    row = next((r for r in book.rows() if r.id == key.row_id), None)
    partner = row if isinstance(row, Partner) else getattr(row, "partner", None)
    tab = row.ref.tab if row is not None else book.titles.get("dashboard", "Dashboard") if key.job == "digest" else ""
    what = f"{JOB_WORDS.get(key.job, key.job)} email ({key.step.replace('_', ' ')})"
    action = (f"{what}: unknown whether it was delivered. Check with the recipient, then run `partnerloop resolve "
              f"{key.row_id} --job {key.job} --sent` (it arrived) or `--resend`")
    return TodoItem("unknown", _owner(partner), tab, key.row_id, partner.business if partner else "", action,
                    claimed.date(), row.ref.number if row is not None else 0)


def _problem(ref: RowRef, messages: Sequence[str] | None, partner: Partner | None, hide: bool = False) -> TodoItem:
    text = "; ".join(hide_values(m) if hide else m for m in messages or ())
    return _item("problem", ref, partner, f"Fix the row: {text}")


def _last_referrals(book: Book, today: date) -> dict[RowRef, date]:
    """Each partner's latest referral date either way, up to today."""
    last: dict[RowRef, date] = {}
    for referral in book.referrals:
        when = referral_date(referral)
        if referral.partner is None or when is None or when > today:
            continue
        ref = referral.partner.ref
        if ref not in last or when > last[ref]:
            last[ref] = when
    return last
