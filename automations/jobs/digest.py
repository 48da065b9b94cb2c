"""The `digest` job: the owner's weekly email — the KPIs against the week before, dormant partners,
the To do list by Owner (automations/todo.py).

It goes at most once per ISO week (the ledger step is the week, e.g. "2026-W48") and reports the
previous full week, Monday to Sunday. Each digest's figures are kept in the state dir
(`Plan.remember["digest"]`), so next week's digest shows the change against what the owner was
told; without that history (the first digest, or a week skipped) the week before is recomputed
from the sheet, and figures that only exist as a snapshot show as "—".

The digest carries no patient names, goals or emails: KPIs are counts and shares, partners are
businesses, and To do items name rows by ID (their sentences quote no cell of a Referrals row).
Run with other jobs (`run --all`), it is planned after their emails went, from the sheet as the
run leaves it: this week's figures and To do list include what the run just did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from automations import metrics
from automations.jobs.common import render_context
from automations.jobs.plan import Email, JobInput, Plan
from automations.jobs.scorecard import MONTH_NAMES
from automations.model import Book, RowRef
from automations.todo import TodoItem, by_owner, todo_list

ATTENTION_SHOWN = 25  # problem rows listed in the email; the rest are counted
# Dormant partners are counted and remembered too, but the email names them in their own section
# rather than as a line of the table.
SNAPSHOT_KPIS = (
    metrics.Kpi("rows_needing_attention", "Rows with data problems", "int"),
    metrics.Kpi("to_do", "To do (rows that need a person)", "int"),
)
TODO_SHOWN = 40  # To do items listed in the email; the rest are counted
HIDDEN_STATUS = "see the row's Automation status in the sheet"
NO_VALUE = "—"


def plan_digest(inp: JobInput) -> Plan:
    owner = inp.settings.clinic.owner_email
    if not owner:
        return Plan("digest")  # no owner address configured: nothing to send
    week = metrics.iso_week(inp.today)
    reported = metrics.week_before(inp.today)
    partners = metrics.partner_rows(inp.book, inp.today)
    attention = metrics.attention_rows(inp.book)
    items = todo_list(inp.book, inp.today, replied=inp.replied, unknown=inp.unknown)
    values = digest_values(inp.book, reported, partners, attention, inp.replied)
    values["to_do"] = len(items)
    stored = _load(inp.remembered.get("digest"))
    if stored.get("week") == week:  # a second run this week: compare with what the first one compared with
        previous = stored.get("previous") or _recomputed(inp)
    elif stored.get("reported") == metrics.week_before(inp.today, 2).label:
        previous = {"reported": stored["reported"], "values": stored.get("values", {})}
    else:
        previous = _recomputed(inp)
    digest = {
        "period": period_words(reported.start, reported.end),
        "kpis": kpi_lines(values, previous.get("values", {})),
        "dormant": [{"business": r.business, "last_referral": r.last_referral} for r in partners if r.dormant],
        "todo": todo_groups(items),
        "todo_count": len(items),
        **where_to_look(inp),
    }
    ref = RowRef(tab=inp.settings.sheet.title("dashboard"), row_id=f"digest-{week}", number=0)
    email = Email(job="digest", row=ref, step=week, template="owner_digest", to_email=owner, to_name="",
                  recipient="owner", label="Weekly digest",
                  context=render_context(inp, "owner_digest", digest=digest, recipient="owner"),
                  writes_back=False)
    memory = {"week": week, "reported": reported.label, "values": values, "previous": previous}
    return Plan("digest", emails=(email,), remember={"digest": json.dumps(memory, sort_keys=True)})


def period_words(start: date, end: date) -> str:
    """The reported week as the owner says it: "November 16 to 22, 2026", "November 30 to December 6, 2026"."""
    def day(d: date) -> str:
        return f"{MONTH_NAMES[d.month - 1]} {d.day}"

    if start.year != end.year:
        return f"{day(start)}, {start.year} to {day(end)}, {end.year}"
    last = str(end.day) if start.month == end.month else day(end)
    return f"{day(start)} to {last}, {end.year}"


def digest_values(book: Book, period: metrics.Period, partners: list[metrics.PartnerRow],
                  attention: list[metrics.AttentionRow],
                  replied: Mapping[str, date] | None = None) -> dict[str, metrics.Number]:
    """The week's KPIs, plus two snapshots as at today: dormant partners and rows needing attention."""
    values = metrics.kpi_values(book, period, replied)
    values["dormant_partners"] = sum(1 for r in partners if r.dormant)
    values["rows_needing_attention"] = len(attention)
    return values


def kpi_lines(values: Mapping[str, Any], previous: Mapping[str, Any]) -> list[dict[str, str]]:
    """One line per KPI: this week, last week and the change, as the owner reads them."""
    lines = []
    for kpi in (*metrics.KPIS, *SNAPSHOT_KPIS):
        now, before = values.get(kpi.key), previous.get(kpi.key)
        lines.append({"label": kpi.label, "value": show(now, kpi.kind), "previous": show(before, kpi.kind),
                      "change": change(now, before, kpi.kind)})
    return lines


def show(value: Any, kind: str) -> str:
    if value is None:
        return NO_VALUE
    if kind == "percent":
        return f"{value:.0%}"
    if kind == "decimal":
        return f"{value:.1f}"
    return f"{value:,}"


def change(now: Any, before: Any, kind: str) -> str:
    """+3, -1, +12 pts (percentage points for shares), "no change", or "—" when either side is unknown."""
    if now is None or before is None:
        return NO_VALUE
    if kind == "percent":
        points = round((now - before) * 100)
        return "no change" if points == 0 else f"{points:+d} pts"
    if kind == "decimal":
        delta = round(now - before, 1)
        return "no change" if delta == 0 else f"{delta:+.1f}"
    return "no change" if now == before else f"{now - before:+,}"


def todo_groups(items: list[TodoItem]) -> list[dict[str, Any]]:
    """The To do list by Owner, as the email shows it (the first TODO_SHOWN items; the rest counted)."""
    shown = items[:TODO_SHOWN]
    groups = [{"owner": owner, "items": [{"row": i.where, "partner": i.partner, "action": i.action} for i in mine]}
              for owner, mine in by_owner(shown)]
    if len(items) > TODO_SHOWN:
        groups.append({"owner": f"and {len(items) - TODO_SHOWN} more", "items": [
            {"row": "", "partner": "", "action": "see the To do block of the Dashboard, or run `partnerloop todo`"}]})
    return groups


def where_to_look(inp: JobInput) -> dict[str, str]:
    """Where the owner opens the sheet: a Google Sheet's https address; for a workbook, in words (the tab and
    the file's name: a path on the server means nothing in the owner's mail client)."""
    dashboard = inp.settings.sheet.title("dashboard")
    if inp.settings.sheet.backend == "google":
        return {"sheet_link": inp.location, "sheet_words": ""}
    name = inp.settings.sheet.path.name if inp.settings.sheet.path else "the partnerships workbook"
    return {"sheet_link": "", "sheet_words": f"Open the {dashboard} tab of the partnerships workbook ({name}) "
                                             "to see the figures and the To do list with each row."}


def attention_lines(book: Book, rows: list[metrics.AttentionRow]) -> list[dict[str, str]]:
    """Rows needing attention; a status is shown only for tabs without personal details."""
    shown_tabs = {book.titles.get("partners", "Partners"), book.titles.get("events", "Events")}
    lines = [{"tab": r.tab, "row": r.row, "status": r.status if r.tab in shown_tabs else HIDDEN_STATUS}
             for r in rows[:ATTENTION_SHOWN]]
    if len(rows) > ATTENTION_SHOWN:
        lines.append({"tab": "and", "row": f"{len(rows) - ATTENTION_SHOWN} more rows",
                      "status": "see the Data problems block of the Dashboard"})
    return lines


def _recomputed(inp: JobInput) -> dict[str, Any]:
    """The week before the reported one, from the sheet; snapshots of that time are not known."""
    earlier = metrics.week_before(inp.today, 2)
    return {"reported": earlier.label, "values": metrics.kpi_values(inp.book, earlier, inp.replied)}


def _load(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}  # unreadable history: compare with the sheet instead
    return value if isinstance(value, dict) else {}
