"""The programme metrics, on small sheets whose figures were worked out by hand."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automations import metrics
from automations.mail.ledger import RunRecord
from automations.model import Book, parse_book
from automations.schema import EVENTS, PARTNERS, REFERRALS, STAGES
from automations.sheets.base import Table

TODAY = date(2026, 3, 15)  # a Sunday: this month is Mar 1-15, last month February, year to date Jan 1-Mar 15


def make_book(partners: Sequence[Mapping[str, Any]] = (), referrals: Sequence[Mapping[str, Any]] = (),
              events: Sequence[Mapping[str, Any]] = ()) -> Book:
    """A Book parsed from grids laid out exactly as the sheet's tabs."""
    tables, titles = {}, {}
    for spec, rows in ((PARTNERS, partners), (REFERRALS, referrals), (EVENTS, events)):
        header = [c.name for c in spec.columns]
        tables[spec.key] = Table.from_grid(spec.title, [header, *([row.get(h) for h in header] for row in rows)])
        titles[spec.key] = spec.title
    return parse_book(tables, titles)


def partner(pid: str, stage: str, **cells: Any) -> dict[str, Any]:
    return {"Partner ID": pid, "Business": f"Business {pid}", "Stage": stage,
            **{k.replace("_", " ").capitalize(): v for k, v in cells.items()}}


def referral(rid: str, direction: str, partner_id: str = "P-1", **cells: Any) -> dict[str, Any]:
    return {"Referral ID": rid, "Direction": direction, "Partner": partner_id, "Patient first name": "Pat",
            **{k.replace("_", " ").capitalize(): v for k, v in cells.items()}}


def d(month: int, day: int, year: int = 2026) -> date:
    return date(year, month, day)


PARTNERS_ROWS = [
    partner("P-1", "Active", stage_since=d(1, 10)),
    partner("P-2", "Active", stage_since=d(3, 5)),
    partner("P-3", "Contacted", stage_since=d(3, 2), outreach_step=1, last_emailed=d(3, 2)),
    partner("P-4", "Meeting", stage_since=d(3, 1), outreach_step=1, last_emailed=d(2, 10)),
    partner("P-5", "Declined", outreach_step=1, last_emailed=d(2, 20)),
    partner("P-6", "Agreement", stage_since=d(4, 2, 2025), outreach_step=3, last_emailed=d(2, 25)),
    partner("P-7", "Prospect"),
    partner("P-8", "Paused", stage_since=d(2, 1)),
    partner("P-9", "Declined", meeting_date=d(1, 20), outreach_step=2, last_emailed=d(1, 12)),
]
REFERRAL_ROWS = [
    referral("R-1", "Out", referred_on=d(3, 3), discharge_date=d(3, 3), consent="Yes", consent_expires=d(3, 3, 2027)),
    referral("R-2", "Out", discharge_date=d(3, 10), consent="No"),  # no Referred on: dated by its discharge
    referral("R-3", "Out", referred_on=d(2, 14), discharge_date=d(2, 14), consent="Yes", consent_expires=d(2, 14, 2027)),
    referral("R-4", "Out", referred_on=d(3, 20), discharge_date=d(3, 20), consent="Yes",
             consent_expires=d(3, 20, 2027)),  # after today
    referral("R-5", "In", referred_on=d(3, 1), first_visit=d(3, 5)),
    referral("R-6", "In", referred_on=d(2, 25), first_visit=d(3, 4)),
    referral("R-7", "In", referred_on=d(3, 12)),
    referral("R-8", "In", referred_on=d(1, 5), first_visit=d(1, 15)),
    referral("R-9", "In", "P-2", referred_on=d(12, 20, 2025), first_visit=d(1, 2)),
]
EVENT_ROWS = [
    {"Event ID": "E-1", "Event": "Open house", "Date": d(3, 10), "Attendees": 20, "New patients": 2},
    {"Event ID": "E-2", "Event": "Class", "Date": d(3, 25), "Attendees": 12},  # not held yet
    {"Event ID": "E-3", "Event": "Talk", "Date": d(2, 5), "Attendees": 10},
]


@pytest.fixture(scope="module")
def book() -> Book:
    built = make_book(PARTNERS_ROWS, REFERRAL_ROWS, EVENT_ROWS)
    assert built.problems == []
    return built


def test_periods_are_this_month_the_same_days_of_last_month_last_month_and_year_to_date() -> None:
    this, same_days, last, ytd = metrics.periods(TODAY)
    assert (this.start, this.end) == (d(3, 1), TODAY)
    assert (same_days.label, same_days.start, same_days.end) == ("Same days last month", d(2, 1), d(2, 15))
    assert (last.start, last.end) == (d(2, 1), d(2, 28))
    assert (ytd.start, ytd.end) == (d(1, 1), TODAY)
    _, january_same, january_last, _ = metrics.periods(d(1, 10))
    assert (january_same.start, january_same.end) == (d(12, 1, 2025), d(12, 10, 2025))
    assert (january_last.start, january_last.end) == (d(12, 1, 2025), d(12, 31, 2025))
    _, short, _, _ = metrics.periods(d(3, 31))  # February has no 31st: all of it
    assert (short.start, short.end) == (d(2, 1), d(2, 28))


def test_the_digest_reports_the_previous_iso_week() -> None:
    friday = d(11, 27)
    assert metrics.iso_week(friday) == "2026-W48"
    week = metrics.week_before(friday)
    assert (week.label, week.start, week.end) == ("2026-W47", d(11, 16), d(11, 22))
    assert metrics.iso_week(d(1, 1, 2027)) == "2026-W53"


def test_first_contact_is_dated_only_where_the_row_shows_it(book: Book) -> None:
    contacts = {p.id: metrics.first_contact(p) for p in book.partners}
    assert contacts == {"P-1": None, "P-2": None, "P-3": d(3, 2), "P-4": d(2, 10), "P-5": d(2, 20), "P-6": None,
                        "P-7": None, "P-8": None, "P-9": None}


def test_kpis_for_each_period(book: Book) -> None:
    this, same_days, last, ytd = (metrics.kpi_values(book, p) for p in metrics.periods(TODAY))
    assert this == {
        "active_partners": 2, "prospects_contacted": 1, "meeting_rate": 0.0, "reply_rate": 0.0, "referrals_out": 2, "referrals_in": 2,
        "inbound_conversion": 0.5, "outbound_follow_through": 0.0, "median_days_to_visit": 5.5, "consent_rate": 0.5,
        "events_held": 1, "attendees": 20, "event_new_patients": 2,
    }
    assert same_days == {  # Feb 1-15: P-4 contacted Feb 10, R-3 out Feb 14, E-3 on Feb 5; R-6 (Feb 25) not yet
        "active_partners": 1, "prospects_contacted": 1, "meeting_rate": 1.0, "reply_rate": 1.0, "referrals_out": 1,
        "referrals_in": 0, "inbound_conversion": None, "outbound_follow_through": 0.0, "median_days_to_visit": None,
        "consent_rate": 1.0, "events_held": 1, "attendees": 10, "event_new_patients": 0,
    }
    assert last == {
        "active_partners": 1, "prospects_contacted": 2, "meeting_rate": 0.5, "reply_rate": 0.5, "referrals_out": 1, "referrals_in": 1,
        "inbound_conversion": 1.0, "outbound_follow_through": 0.0, "median_days_to_visit": None, "consent_rate": 1.0,
        "events_held": 1, "attendees": 10, "event_new_patients": 0,
    }
    assert ytd == {
        "active_partners": 2, "prospects_contacted": 3, "meeting_rate": pytest.approx(1 / 3),
        "reply_rate": pytest.approx(1 / 3), "referrals_out": 3,
        "referrals_in": 4, "inbound_conversion": 0.75, "outbound_follow_through": 0.0, "median_days_to_visit": 8.5,
        "consent_rate": pytest.approx(2 / 3), "events_held": 2, "attendees": 30, "event_new_patients": 2,
    }


def test_outbound_follow_through_is_the_share_of_our_patients_who_started_with_the_partner() -> None:
    book = make_book([partner("P-1", "Active")], [
        referral("R-1", "Out", referred_on=d(3, 2), first_visit=d(3, 6)),
        referral("R-2", "Out", referred_on=d(3, 4)),
        referral("R-3", "Out", referred_on=d(3, 5), first_visit=d(3, 9)),
        referral("R-4", "In", referred_on=d(3, 5), first_visit=d(3, 9)),  # inbound: counts in conversion, not here
    ])
    values = metrics.kpi_values(book, metrics.periods(TODAY)[0])
    assert values["outbound_follow_through"] == pytest.approx(2 / 3)
    assert values["inbound_conversion"] == 1.0
    (row,) = metrics.partner_rows(book, TODAY)
    assert (row.followed_through, row.follow_through, row.converted) == (2, pytest.approx(2 / 3), 1)


def test_reply_rate_counts_email_replies_and_partners_who_moved_on(book: Book) -> None:
    ytd = metrics.periods(TODAY)[3]  # contacted: P-3 (Contacted), P-4 (Meeting), P-5 (Declined, no meeting)
    assert metrics.kpi_values(book, ytd)["reply_rate"] == pytest.approx(1 / 3)  # P-4 answered somehow
    with_mail = metrics.kpi_values(book, ytd, {"P-3": TODAY, "P-9": TODAY})  # P-9 was never contacted
    assert with_mail["reply_rate"] == pytest.approx(2 / 3)
    assert with_mail["meeting_rate"] == pytest.approx(1 / 3)  # a reply is not a meeting


def test_rates_are_blank_when_there_is_nothing_to_divide_by() -> None:
    values = metrics.kpi_values(make_book([partner("P-1", "Prospect")]), metrics.periods(TODAY)[0])
    assert values["meeting_rate"] is None
    assert values["inbound_conversion"] is None
    assert values["median_days_to_visit"] is None
    assert values["consent_rate"] is None
    assert values["referrals_out"] == values["events_held"] == 0


def test_funnel_counts_later_stages_as_having_passed_the_earlier_ones(book: Book) -> None:
    steps = {s.stage: s for s in metrics.funnel(book.partners)}
    assert [(s, steps[s].reached, steps[s].now) for s in metrics.FUNNEL] == [
        ("Prospect", 9, 1), ("Contacted", 8, 1), ("Meeting", 6, 1), ("Agreement", 4, 1), ("Active", 3, 2)]
    assert steps["Prospect"].next_step is None and steps["Prospect"].cumulative == 1.0
    assert steps["Contacted"].next_step == pytest.approx(8 / 9)
    assert steps["Meeting"].next_step == pytest.approx(6 / 8) and steps["Meeting"].cumulative == pytest.approx(6 / 9)
    assert steps["Agreement"].next_step == pytest.approx(4 / 6)
    assert steps["Active"].next_step == pytest.approx(3 / 4) and steps["Active"].cumulative == pytest.approx(3 / 9)
    assert (steps["Paused"].now, steps["Paused"].reached, steps["Declined"].now) == (1, None, 2)


def test_declined_counts_only_at_the_stages_it_evidently_passed() -> None:
    declined = make_book([partner("P-1", "Declined"), partner("P-2", "Declined", outreach_step=1),
                          partner("P-3", "Declined", last_emailed=d(1, 5)),
                          partner("P-4", "Declined", meeting_date=d(2, 1))]).partners
    assert [metrics.stage_rank(p) for p in declined] == [0, 1, 1, 2]
    assert [metrics.stage_rank(p) for p in make_book([partner("P-1", "Paused")]).partners] == [4]


def test_one_row_per_partner(book: Book) -> None:
    rows = {r.partner_id: r for r in metrics.partner_rows(book, TODAY)}
    assert list(rows) == [f"P-{n}" for n in range(1, 10)]  # P-1 referred most in 90 days; the rest in sheet order
    one = rows["P-1"]
    assert (one.stage, one.stage_since, one.days_in_stage) == ("Active", d(1, 10), 64)
    assert (one.out_recent, one.in_recent, one.out_total, one.in_total) == (3, 4, 4, 4)  # R-4 is dated after today
    assert (one.converted, one.last_referral, one.dormant) == (3, d(3, 12), False)
    assert one.reciprocity == pytest.approx(4 / 3)  # the last 90 days: 4 in, 3 out
    assert (one.one_way, one.flag) == ("", "")
    two = rows["P-2"]
    assert (two.out_total, two.in_total, two.in_recent, two.converted) == (0, 1, 1, 1)
    assert two.reciprocity is None  # nothing referred out: blank, not infinite
    assert two.last_referral == d(12, 20, 2025)
    assert (two.one_way, two.flag) == ("in", "One-way (all in)")
    assert rows["P-7"].days_in_stage is None and rows["P-7"].last_referral is None


def test_partners_are_ranked_by_referrals_in_the_last_90_days_and_one_way_looks_at_180_days() -> None:
    old, recent = TODAY - timedelta(days=120), TODAY - timedelta(days=10)
    book = make_book(
        [partner("P-1", "Active"), partner("P-2", "Active"), partner("P-3", "Active"), partner("P-4", "Active")],
        [referral("R-1", "Out", "P-1", referred_on=recent),
         referral("R-2", "Out", "P-2", referred_on=recent), referral("R-3", "Out", "P-2", referred_on=recent),
         referral("R-4", "In", "P-2", referred_on=old),  # 120 days ago: not in 90 days, but within 180
         referral("R-5", "Out", "P-3", referred_on=TODAY - timedelta(days=200)),  # older than 180 days
         referral("R-6", "Out", "P-4", referred_on=old), referral("R-7", "Out", "P-4", referred_on=old)])
    rows = metrics.partner_rows(book, TODAY)
    assert [r.partner_id for r in rows] == ["P-2", "P-1", "P-4", "P-3"]
    flags = {r.partner_id: r.flag for r in rows}
    assert flags == {"P-2": "", "P-1": "One-way (all out)", "P-4": "Dormant; One-way (all out)", "P-3": "Dormant"}
    assert {r.partner_id: r.reciprocity for r in rows} == {"P-2": 0.0, "P-1": 0.0, "P-4": None, "P-3": None}


def test_dormant_means_active_without_a_referral_either_way_in_90_days() -> None:
    day_89, day_90 = TODAY - timedelta(days=89), TODAY - timedelta(days=90)
    book = make_book(
        [partner("P-1", "Active"), partner("P-2", "Active"), partner("P-3", "Active"), partner("P-4", "Paused")],
        [referral("R-1", "In", "P-1", referred_on=day_89), referral("R-2", "Out", "P-2", referred_on=day_90)])
    rows = {r.partner_id: r for r in metrics.partner_rows(book, TODAY)}
    assert {pid: r.dormant for pid, r in rows.items()} == {"P-1": False, "P-2": True, "P-3": True, "P-4": False}
    assert rows["P-2"].last_referral == day_90


def test_last_12_months_oldest_first(book: Book) -> None:
    months = metrics.last_12_months(book, TODAY)
    assert [m.month for m in months] == [d(m, 1, 2025) for m in range(4, 13)] + [d(m, 1) for m in (1, 2, 3)]
    table = {m.month: (m.referrals_out, m.referrals_in, m.converted, m.new_partners) for m in months}
    assert table[d(3, 1)] == (2, 2, 1, 1)
    assert table[d(2, 1)] == (1, 1, 1, 0)
    assert table[d(1, 1)] == (0, 1, 1, 1)
    assert table[d(12, 1, 2025)] == (0, 1, 1, 0)
    assert table[d(4, 1, 2025)] == (0, 0, 0, 1)  # P-6 reached Agreement then
    others = [v for m, v in table.items() if m not in (d(3, 1), d(2, 1), d(1, 1), d(12, 1, 2025), d(4, 1, 2025))]
    assert others == [(0, 0, 0, 0)] * 7


def test_job_health_lists_every_job_and_the_last_run() -> None:
    started = datetime(2026, 3, 15, 9, 0)
    health = {"outreach": RunRecord("outreach", started, started + timedelta(seconds=4), "ok", 3, "sent 3"),
              "replies": RunRecord("replies", started, None, "failed", 0, "mailbox unreachable")}
    rows = metrics.job_health(health, ["outreach", "digest"])
    assert [(r.job, r.result, r.sent) for r in rows] == [
        ("outreach", "ok", 3), ("digest", "never run", None), ("replies", "failed", 0)]
    assert rows[0].finished == started + timedelta(seconds=4) and rows[1].started is None


def test_data_problems_count_each_row_once_and_point_to_its_status() -> None:
    book = make_book(
        [partner("P-1", "Prospect", email="ann@"),  # a problem found now
         {**partner("P-2", "Prospect"), "Automation status": "Needs attention: Email is empty"},  # found before
         {**partner("P-3", "Prospect", email="bob@"), "Automation status": "Needs attention: Email 'bob@' …"}],
        [{**referral("R-1", "In"), "Consent": "maybe"}])
    rows = metrics.attention_rows(book)
    assert [(r.tab, r.row) for r in rows] == [("Partners", "P-1"), ("Partners", "P-2"), ("Partners", "P-3"),
                                              ("Referrals", "R-1")]
    assert rows[0].status.startswith("Needs attention: Email 'ann@'")
    assert metrics.attention_pointer(rows) == (
        "See the Automation status column of these rows: Partners P-1, Partners P-2, Partners P-3, Referrals R-1.")
    assert metrics.attention_pointer([]) == "No rows with data problems."
    many = [metrics.AttentionRow("Partners", f"P-{n}", "x") for n in range(25)]
    assert metrics.attention_pointer(many).endswith("Partners P-19 and 5 more.")


def test_compute_gathers_every_figure(book: Book) -> None:
    m = metrics.compute(book, TODAY, {}, ["dashboard"])
    assert [p.label for p in m.periods] == ["This month", "Same days last month", "Last month", "Year to date"]
    assert [k.key for k, _ in m.kpis] == [k.key for k in metrics.KPIS]
    assert {k.key: v for k, v in m.kpis}["referrals_out"] == (2, 1, 1, 3)
    assert len(m.partners) == 9 and len(m.months) == 12 and m.health[0].job == "dashboard"


@given(st.lists(st.tuples(st.sampled_from(STAGES), st.integers(0, 3), st.booleans()), max_size=40))
def test_the_funnel_never_grows_and_its_rates_are_shares(partners: list[tuple[str, int, bool]]) -> None:
    rows = [partner(f"P-{n}", stage, outreach_step=step or None, meeting_date=d(1, 5) if met else None)
            for n, (stage, step, met) in enumerate(partners, start=1)]
    steps = metrics.funnel(make_book(rows).partners)[:len(metrics.FUNNEL)]
    reached = [s.reached for s in steps]
    assert reached[0] == len(partners)
    assert all(a is not None and b is not None and a >= b for a, b in itertools.pairwise(reached))
    assert all(0 <= (s.next_step or 0) <= 1 and 0 <= (s.cumulative or 0) <= 1 for s in steps)
    assert sum(s.now for s in metrics.funnel(make_book(rows).partners)) == len(partners)


def test_the_consent_rate_counts_only_consent_that_allowed_the_introduction_at_discharge() -> None:
    """A Yes without its expiry, or one that had expired by the Discharge date, let nothing be shared."""
    book = make_book([partner("P-1", "Active")], [
        referral("R-1", "Out", discharge_date=d(3, 2), consent="Yes", consent_expires=d(9, 1)),  # valid
        referral("R-2", "Out", discharge_date=d(3, 3), consent="Yes"),  # no expiry written
        referral("R-3", "Out", discharge_date=d(3, 4), consent="Yes", consent_expires=d(3, 1)),  # expired before
        referral("R-4", "Out", discharge_date=d(3, 5), consent="Yes", consent_expires=d(3, 5)),  # its last day
    ])
    assert metrics.kpi_values(book, metrics.periods(TODAY)[0])["consent_rate"] == pytest.approx(2 / 4)
