"""The `dashboard` job: rewrites the Dashboard tab from the metrics; sends nothing.

Every figure is a real cell value (numbers, dates, shares formatted as percents), so the owner
can build on them; blank means "nothing to divide by" or "not known". See docs/dashboard.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

from automations import metrics
from automations.core import JOB_NAMES
from automations.jobs.plan import JobInput, Plan
from automations.sheets.base import Dashboard, DashboardBlock
from automations.todo import TodoItem, todo_list

CHART_TITLE = "Referrals and new partners"


def plan_dashboard(inp: JobInput) -> Plan:
    return Plan("dashboard", dashboard=build_dashboard(inp))


def build_dashboard(inp: JobInput) -> Dashboard:
    """The Dashboard as at inp.now: job health, To do, data problems, KPIs, funnel, 12 months (charted), partners
    (ranked by referrals in the last 90 days)."""
    m = metrics.compute(inp.book, inp.today, inp.health, list(JOB_NAMES), inp.replied)
    tz = inp.now.tzinfo
    items = todo_list(inp.book, inp.today, replied=inp.replied, unknown=inp.unknown)
    return Dashboard(
        title=inp.settings.sheet.title("dashboard"),
        updated=inp.now,
        blocks=(
            health_block(m, tz),
            todo_block(items),
            problems_block(m),
            kpi_block(m),
            funnel_block(m),
            months_block(m),
            partners_block(m),
        ),
    )


def health_block(m: metrics.Metrics, tz: tzinfo | None) -> DashboardBlock:
    return DashboardBlock(
        "Job health",
        ("Job", "Last run", "Finished", "Result", "Emails sent", "Summary"),
        tuple((h.job, _local(h.started, tz), _local(h.finished, tz), h.result, h.sent, h.summary) for h in m.health),
        formats=("", "datetime", "datetime", "", "int", ""),
    )


def todo_block(items: Sequence[TodoItem]) -> DashboardBlock:
    """Every row that needs a person, grouped by Owner (see automations/todo.py): the same list as
    `partnerloop todo` and the digest."""
    rows = tuple((i.who, i.where, i.partner, i.since, i.action) for i in items)
    return DashboardBlock(
        f"To do ({len(items)})",
        ("Owner", "Row", "Partner", "Since", "What to do"),
        rows or (("", "", "", None, "Nothing needs a person now."),),
        formats=("", "", "", "date", ""),
    )


def problems_block(m: metrics.Metrics) -> DashboardBlock:
    return DashboardBlock(
        "Data problems",
        ("Rows with data problems", "Where to look"),
        ((len(m.attention), metrics.attention_pointer(m.attention)),),
        formats=("int", ""),
    )


def kpi_block(m: metrics.Metrics) -> DashboardBlock:
    formats = {"int": "int", "percent": "percent", "decimal": "decimal"}
    return DashboardBlock(
        f"KPIs (up to {m.today.isoformat()})",
        ("KPI", *(p.label for p in m.periods)),
        tuple((kpi.label, *values) for kpi, values in m.kpis),
        row_formats=tuple(formats[kpi.kind] for kpi, _ in m.kpis),
    )


def funnel_block(m: metrics.Metrics) -> DashboardBlock:
    return DashboardBlock(
        "Partner funnel",
        ("Stage", "Reached", "Now at stage", "Next-step conversion", "Cumulative conversion"),
        tuple((s.stage, s.reached, s.now, s.next_step, s.cumulative) for s in m.funnel),
        formats=("", "int", "int", "percent", "percent"),
    )


def months_block(m: metrics.Metrics) -> DashboardBlock:
    return DashboardBlock(
        "Last 12 months",
        ("Month", "Referrals out", "Referrals in", "Converted", "New partners"),
        tuple((r.month, r.referrals_out, r.referrals_in, r.converted, r.new_partners) for r in m.months),
        formats=("month", "int", "int", "int", "int"),
        chart=CHART_TITLE,
    )


def partners_block(m: metrics.Metrics) -> DashboardBlock:
    return DashboardBlock(
        "Partners",
        ("Business", "Partner ID", "Stage", "Stage since", "Days in stage", "Out (90 days)", "In (90 days)",
         "Reciprocity (in ÷ out, 90 days)", "Out (all time)", "In (all time)", "Converted (in)",
         "Followed through (out)", "Follow-through (out)", "Last referral", "Flag"),
        tuple((r.business, r.partner_id, r.stage, r.stage_since, r.days_in_stage, r.out_recent, r.in_recent,
               r.reciprocity, r.out_total, r.in_total, r.converted, r.followed_through, r.follow_through,
               r.last_referral, r.flag)
              for r in m.partners),
        formats=("", "", "", "date", "int", "int", "int", "decimal", "int", "int", "int", "int", "percent", "date", ""),
        new_page=True,
    )


def _local(moment: datetime | None, tz: tzinfo | None) -> Any:
    """A run time in the clinic's zone, as a plain date-time cell."""
    if moment is None:
        return None
    if moment.tzinfo is not None and tz is not None:
        moment = moment.astimezone(tz)
    return moment.replace(tzinfo=None, microsecond=0)
