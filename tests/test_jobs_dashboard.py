"""The `dashboard` job on both backends: every figure checked against the demo rows, real cell values,
number formats, a chart, a clean rewrite, and a request count that does not grow with the sheet.

The expected figures are recomputed here from the demo rows as plain dicts (not through
automations.metrics), following the rules written in docs/dashboard.md.
"""

from __future__ import annotations

import re
import statistics
import zipfile
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from automations.cells import SERIAL_EPOCH
from automations.check import init_sheet
from automations.config import Settings
from automations.demo import demo_rows
from automations.executor import run_jobs
from automations.jobs import JOBS
from automations.sheets import open_backend
from automations.sheets.base import Dashboard, DashboardBlock
from tests.conftest import google_settings, make_settings, seed_sheet, world_for

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=TZ)
TODAY = NOW.date()
CHART_TITLE = "Referrals and new partners"
Row = dict[str, Any]


# -- running the job and reading the tab back ------------------------------------------------------
def run_dashboard(settings: Settings, rows: Mapping[str, list[Row]] | None = None, now: datetime = NOW) -> None:
    backend = open_backend(settings, sleep=lambda s: None) if settings.sheet.backend == "google" else open_backend(settings)
    if rows is not None:
        init_sheet(backend, settings, rows)
    world = world_for(settings, lambda: now, backend=backend)
    try:
        run_jobs(world, ["dashboard"])
    finally:
        world.ledger.close()


def valid_consent(referral: dict[str, Any]) -> bool:
    """Consent at discharge as the patient gave it: Yes, with an expiry not before the Discharge date."""
    expires, discharged = referral.get("Consent expires"), referral.get("Discharge date")
    return referral.get("Consent") == "Yes" and expires is not None and discharged is not None and expires >= discharged


def read_grid(settings: Settings, emulator: Any) -> list[list[Any]]:
    """The Dashboard tab's values as stored: numbers as numbers, dates as dates (xlsx) or serials (Google)."""
    if settings.sheet.backend == "google":
        grid = [list(r) for r in emulator.values(settings.sheet.key, "Dashboard")]
    else:
        sheet = openpyxl.load_workbook(settings.sheet.path)["Dashboard"]
        grid = [list(r) for r in sheet.iter_rows(values_only=True)]
    width = max((len(r) for r in grid), default=0)
    grid = [["" if v is None else v for v in r] + [""] * (width - len(r)) for r in grid]
    while grid and all(v == "" for v in grid[-1]):
        grid.pop()
    return grid


def block(grid: list[list[Any]], title: str) -> tuple[list[Any], list[list[Any]]]:
    """The header and rows of the block whose title starts with *title*; rows end at the first blank row."""
    start = next(i for i, row in enumerate(grid) if isinstance(row[0], str) and row[0].startswith(title))
    header = [h for h in grid[start + 1] if h != ""]
    rows = []
    for row in grid[start + 2:]:
        if all(v == "" for v in row):
            break
        rows.append(row[:len(header)])
    return header, rows


def day(value: Any) -> date | None:
    """A date cell as a date, from either backend (Google keeps serial numbers)."""
    if value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    assert isinstance(value, (int, float)), f"{value!r} is not a date cell"
    return SERIAL_EPOCH + timedelta(days=int(value))


def moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    assert isinstance(value, (int, float)), f"{value!r} is not a date-time cell"
    seconds = round(value * 86400)  # serials keep about a second's precision
    return datetime.combine(SERIAL_EPOCH, datetime.min.time()) + timedelta(seconds=seconds)


def same(actual: Any, expected: Any) -> bool:
    """A cell equals an expected figure: numbers by value (real numbers, not text), None as a blank cell."""
    if expected is None:
        return actual == ""
    if isinstance(expected, date):
        return day(actual) == expected
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return isinstance(actual, (int, float)) and actual == pytest.approx(expected)
    return actual == expected


def assert_rows(actual: list[list[Any]], expected: list[tuple[Any, ...]]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert all(same(a, e) for a, e in zip(got, want, strict=True)), f"{got} != {list(want)}"


# -- the figures, recomputed from the demo rows --------------------------------------------------------
def ref_date(r: Row) -> date | None:
    return r.get("Referred on") or (r.get("Discharge date") if r["Direction"] == "Out" else None)


def contacted_on(p: Row) -> date | None:
    if p["Stage"] == "Contacted":
        return p.get("Stage since") or (p.get("Last emailed") if p.get("Outreach step") == 1 else None)
    if p["Stage"] not in ("Prospect",) and p.get("Outreach step") == 1:
        return p.get("Last emailed")
    return None


def reached(p: Row) -> int:
    order = ["Prospect", "Contacted", "Meeting", "Agreement", "Active"]
    if p["Stage"] == "Paused":
        return 4
    if p["Stage"] == "Declined":
        return 2 if p.get("Meeting date") else 1 if (p.get("Outreach step") or p.get("Last emailed")) else 0
    return order.index(p["Stage"])


def expected_kpis(rows: Mapping[str, list[Row]], start: date, end: date) -> list[Any]:
    def within(x: date | None) -> bool:
        return x is not None and start <= x <= end

    partners, referrals, events = rows["partners"], rows["referrals"], rows["events"]
    outs = [r for r in referrals if r["Direction"] == "Out"]
    ins = [r for r in referrals if r["Direction"] == "In"]
    cohort = [p for p in partners if within(contacted_on(p))]
    ins_dated = [r for r in ins if within(ref_date(r))]
    outs_dated = [r for r in outs if within(ref_date(r))]
    visits = [(r["First visit"] - r["Referred on"]).days for r in ins
              if within(r.get("First visit")) and r.get("Referred on")]
    discharged = [r for r in outs if within(r.get("Discharge date"))]
    held = [e for e in events if within(e["Date"].date() if isinstance(e["Date"], datetime) else e["Date"])]
    return [
        sum(1 for p in partners if p["Stage"] == "Active" and (not p.get("Stage since") or p["Stage since"] <= end)),
        len(cohort),
        sum(1 for p in cohort if reached(p) >= 2) / len(cohort) if cohort else None,
        sum(1 for p in cohort if reached(p) >= 2) / len(cohort) if cohort else None,  # reply rate: no mailbox read
        len(outs_dated),
        len(ins_dated),
        sum(1 for r in ins_dated if r.get("First visit")) / len(ins_dated) if ins_dated else None,
        sum(1 for r in outs_dated if r.get("First visit")) / len(outs_dated) if outs_dated else None,
        statistics.median(visits) if visits else None,
        sum(1 for r in discharged if valid_consent(r)) / len(discharged) if discharged else None,
        len(held),
        sum(e.get("Attendees", 0) for e in held),
        sum(e.get("New patients", 0) for e in held),
    ]


def expected_partner_rows(rows: Mapping[str, list[Row]], today: date) -> list[tuple[Any, ...]]:
    """Ranked by referrals either way in the last 90 days, then all time, then sheet order."""
    table = []
    for p in rows["partners"]:
        mine = [r for r in rows["referrals"] if r["Partner"] in (p["Business"], p["Partner ID"])]
        dated = [(r, ref_date(r)) for r in mine]
        recent = [r for r, when in dated if when and today - timedelta(days=89) <= when <= today]
        half_year = {r["Direction"] for r, when in dated if when and today - timedelta(days=179) <= when <= today}
        outs = [r for r in mine if r["Direction"] == "Out"]
        ins = [r for r in mine if r["Direction"] == "In"]
        out_recent = sum(1 for r in recent if r["Direction"] == "Out")
        in_recent = sum(1 for r in recent if r["Direction"] == "In")
        since = p.get("Stage since")
        past = [when for _, when in dated if when and when <= today]
        followed = sum(1 for r in outs if r.get("First visit"))
        flags = (["Dormant"] if p["Stage"] == "Active" and not recent else []) + (
            [f"One-way (all {next(iter(half_year)).lower()})"] if len(half_year) == 1 else [])
        table.append((
            p["Business"], p["Partner ID"], p["Stage"], since, (today - since).days if since else None,
            out_recent, in_recent, in_recent / out_recent if out_recent else None,
            len(outs), len(ins), sum(1 for r in ins if r.get("First visit")), followed,
            followed / len(outs) if outs else None, max(past) if past else None, "; ".join(flags),
        ))
    return sorted(table, key=lambda r: (-(r[5] + r[6]), -(r[8] + r[9])))


def expected_months(rows: Mapping[str, list[Row]], today: date) -> list[tuple[Any, ...]]:
    months = []
    first = today.replace(day=1)
    for back in range(11, -1, -1):
        y, m = divmod(first.year * 12 + first.month - 1 - back, 12)
        months.append(date(y, m + 1, 1))
    def within(x: date | None, start: date) -> bool:
        return x is not None and (x.year, x.month) == (start.year, start.month) and x <= today

    table = []
    for start in months:
        outs = [r for r in rows["referrals"] if r["Direction"] == "Out" and within(ref_date(r), start)]
        ins = [r for r in rows["referrals"] if r["Direction"] == "In" and within(ref_date(r), start)]
        new = [p for p in rows["partners"]
               if p["Stage"] in ("Agreement", "Active") and within(p.get("Stage since"), start)]
        table.append((start, len(outs), len(ins), sum(1 for r in ins if r.get("First visit")), len(new)))
    return table


def expected_funnel(rows: Mapping[str, list[Row]]) -> list[tuple[Any, ...]]:
    partners = rows["partners"]
    counts = [sum(1 for p in partners if reached(p) >= k) for k in range(5)]
    table: list[tuple[Any, ...]] = []
    for k, stage in enumerate(["Prospect", "Contacted", "Meeting", "Agreement", "Active"]):
        now = sum(1 for p in partners if p["Stage"] == stage)
        table.append((stage, counts[k], now, counts[k] / counts[k - 1] if k else None, counts[k] / counts[0]))
    for stage in ("Paused", "Declined"):
        table.append((stage, None, sum(1 for p in partners if p["Stage"] == stage), None, None))
    return table


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(params=["xlsx", "google"])
def sheet(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Settings, Any]:
    if request.param == "google":
        emulator = request.getfixturevalue("emulator")
        return google_settings(tmp_path, emulator), emulator
    return make_settings(tmp_path), None


# -- tests -------------------------------------------------------------------------------------------
def test_every_dashboard_figure_matches_the_demo_rows(sheet: tuple[Settings, Any]) -> None:
    settings, emulator = sheet
    rows = demo_rows(TODAY)
    run_dashboard(settings, rows)
    grid = read_grid(settings, emulator)

    assert grid[0][0] == "Dashboard"
    assert grid[1][0] == "Updated" and moment(grid[1][1]) == NOW.replace(tzinfo=None)

    header, health = block(grid, "Job health")
    assert header == ["Job", "Last run", "Finished", "Result", "Emails sent", "Summary"]
    assert [(r[0], r[3]) for r in health] == [(job, "ok" if job == "dashboard" else "never run") for job in JOBS]
    ours = health[list(JOBS).index("dashboard")]  # this run, as it ends
    assert moment(ours[1]) == NOW.replace(tzinfo=None) and moment(ours[2]) == NOW.replace(tzinfo=None)
    assert ours[4] == 0

    header, todo = block(grid, "To do")
    assert header == ["Owner", "Row", "Partner", "Since", "What to do"]
    assert [(r[0], r[1], r[2], day(r[3])) for r in todo] == [  # the demo as it stands before any job sent
        ("Alex Moreno", "Referrals R-0002", "Iron & Oak Gym", TODAY - timedelta(days=2)),  # no consent
        ("Alex Moreno", "Referrals R-0010", "Iron & Oak Gym", TODAY - timedelta(days=10)),  # expired
        ("Nadia Brooks", "Referrals R-0009", "Still Water Massage", TODAY - timedelta(days=1))]  # no expiry

    header, problems = block(grid, "Data problems")
    assert header == ["Rows with data problems", "Where to look"]
    assert_rows(problems, [(0, "No rows with data problems.")])

    header, kpis = block(grid, "KPIs")
    assert header == ["KPI", "This month", "Same days last month", "Last month", "Year to date"]
    month_start = TODAY.replace(day=1)
    last_end = month_start - timedelta(days=1)
    same_days = last_end.replace(day=min(TODAY.day, last_end.day))  # Oct 1-27 against Nov 1-27
    columns = [expected_kpis(rows, month_start, TODAY), expected_kpis(rows, last_end.replace(day=1), same_days),
               expected_kpis(rows, last_end.replace(day=1), last_end), expected_kpis(rows, date(TODAY.year, 1, 1), TODAY)]
    labels = [r[0] for r in kpis]
    assert labels[:4] == ["Active partners", "Prospects contacted", "Outreach meeting rate", "Outreach reply rate"]
    assert labels[7] == "Outbound follow-through" and len(labels) == 13
    assert_rows([r[1:] for r in kpis], [tuple(c[i] for c in columns) for i in range(13)])
    assert columns[3][4] == 18 and columns[0][2] == pytest.approx(1 / 3)  # the demo is not all zeros
    assert columns[3][7] == pytest.approx(11 / 18)  # our patients who started with the partner, this year

    header, funnel = block(grid, "Partner funnel")
    assert header == ["Stage", "Reached", "Now at stage", "Next-step conversion", "Cumulative conversion"]
    assert_rows(funnel, expected_funnel(rows))

    header, months = block(grid, "Last 12 months")
    assert header == ["Month", "Referrals out", "Referrals in", "Converted", "New partners"]
    assert_rows(months, expected_months(rows, TODAY))

    header, partners = block(grid, "Partners")
    assert header[:4] == ["Business", "Partner ID", "Stage", "Stage since"] and header[-1] == "Flag"
    assert_rows(partners, expected_partner_rows(rows, TODAY))


def test_dormant_partners_are_flagged(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    rows = demo_rows(TODAY)
    later = NOW + timedelta(days=120)  # nothing new for four months: every Active partner has gone quiet
    run_dashboard(settings, rows, now=later)
    _, partners = block(read_grid(settings, None), "Partners")
    assert {r[1] for r in partners if r[-1].startswith("Dormant")} == {"P-0007", "P-0008", "P-0009"}
    assert_rows(partners, expected_partner_rows(rows, later.date()))


def test_xlsx_dashboard_has_real_values_number_formats_and_a_chart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    run_dashboard(settings, demo_rows(TODAY))
    sheet = openpyxl.load_workbook(settings.sheet.path)["Dashboard"]
    cells = {str(c.value): c for c in sheet["A"] if c.value is not None}
    assert sheet.freeze_panes == "A3" and sheet["A1"].font.b
    assert isinstance(sheet["B2"].value, datetime)
    kpi = cells["Inbound conversion"].row
    assert [sheet.cell(kpi, c).number_format for c in (2, 3, 4)] == ["0%"] * 3
    assert isinstance(sheet.cell(kpi, 2).value, float)
    assert sheet.cell(cells["Referrals out"].row, 5).value == 18 and sheet.cell(cells["Referrals out"].row, 5).number_format == "0"
    header = next(c.row for c in sheet["A"] if c.value == "Business")
    assert all(sheet.cell(header, col).font.b for col in range(1, 16))
    riverbend = next(c.row for c in sheet["B"] if c.value == "P-0007")
    assert sheet.cell(riverbend, 13).number_format == "0%" and isinstance(sheet.cell(riverbend, 13).value, float)
    todo = next(c.row for c in sheet["A"] if c.value == "Owner") + 1
    assert isinstance(sheet.cell(todo, 4).value, datetime) and sheet.cell(todo, 4).number_format == "yyyy-mm-dd"
    riverbend = next(c.row for c in sheet["B"] if c.value == "P-0007")
    assert isinstance(sheet.cell(riverbend, 4).value, datetime) and sheet.cell(riverbend, 4).number_format == "yyyy-mm-dd"
    month = next(c for c in sheet["A"] if c.value == "Month").row + 1
    assert isinstance(sheet.cell(month, 1).value, datetime) and sheet.cell(month, 1).number_format == "mmm yyyy"
    funnel = cells["Contacted"].row
    assert sheet.cell(funnel, 4).number_format == "0%" and sheet.cell(funnel, 4).value == pytest.approx(0.8)
    assert series(chart_xml(settings.sheet.path)) == 4
    assert CHART_TITLE in chart_xml(settings.sheet.path)


def chart_xml(path: Path) -> str:
    with zipfile.ZipFile(path) as package:
        names = [n for n in package.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
        return "".join(package.read(n).decode() for n in names)


def series(xml: str) -> int:
    return len(re.findall(r"<(?:c:)?ser>", xml))


def test_a_later_status_write_keeps_the_xlsx_chart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    run_dashboard(settings, demo_rows(TODAY))
    world = world_for(settings, lambda: NOW)
    try:
        report = run_jobs(world, ["outreach", "discharge"])
    finally:
        world.ledger.close()
    assert report.count("sent") > 0 and report.cells_written > 0  # statuses were written after the dashboard
    xml = chart_xml(settings.sheet.path)
    assert series(xml) == 4 and CHART_TITLE in xml
    assert "'Dashboard'!$A$" in xml  # still charting the 12-month block


def test_google_dashboard_is_one_batch_update_with_numbers_formats_and_a_chart(tmp_path: Path, emulator: Any) -> None:
    settings = google_settings(tmp_path, emulator)
    backend = open_backend(settings, sleep=lambda s: None)
    init_sheet(backend, settings, demo_rows(TODAY))
    emulator.reset_requests()
    run_dashboard(settings)
    sent = [r for r in emulator.requests if r.spreadsheet_id == settings.sheet.key]
    assert [r.endpoint for r in sent] == ["spreadsheets.get", "values.batchGet", "spreadsheets.get",
                                          "spreadsheets.batchUpdate"]
    kinds = [next(iter(q)) for q in sent[-1].body["requests"]]
    assert kinds == ["addSheet", "updateCells", "autoResizeDimensions", "addChart"]
    chart = sent[-1].body["requests"][-1]["addChart"]["chart"]
    sheet_id = sent[-1].body["requests"][0]["addSheet"]["properties"]["sheetId"]
    basic = chart["spec"]["basicChart"]
    assert chart["spec"]["title"] == CHART_TITLE and basic["chartType"] in ("LINE", "COLUMN")
    assert len(basic["series"]) == 4 and len(basic["domains"]) == 1
    ranges = [basic["domains"][0]["domain"]["sourceRange"]["sources"][0],
              *(s["series"]["sourceRange"]["sources"][0] for s in basic["series"])]
    assert {r["sheetId"] for r in ranges} == {sheet_id}
    assert [r["startColumnIndex"] for r in ranges] == [0, 1, 2, 3, 4]
    assert {r["endRowIndex"] - r["startRowIndex"] for r in ranges} == {13}  # header and 12 months

    state = emulator.sheet_state(settings.sheet.key, "Dashboard")
    assert len(state.charts) == 1 and state.frozen_rows == 2
    assert emulator.sheet_titles(settings.sheet.key)[0] == "Dashboard"
    values = state.values
    kpi = next(i for i, r in enumerate(values) if r and r[0] == "Consent rate at discharge")
    assert isinstance(values[kpi][1], (int, float))
    assert state.formats[f"B{kpi + 1}"]["numberFormat"] == {"type": "PERCENT", "pattern": "0%"}
    riverbend = next(i for i, r in enumerate(values) if len(r) > 1 and r[1] == "P-0007")
    assert day(values[riverbend][3]) == TODAY - timedelta(days=300)
    assert state.formats[f"D{riverbend + 1}"]["numberFormat"]["type"] == "DATE"
    header = next(i for i, r in enumerate(values) if r and r[0] == "Business")
    assert state.formats[f"A{header + 1}"]["textFormat"]["bold"] is True

    run_dashboard(settings)  # a rewrite replaces the tab, and its chart, in place
    assert len(emulator.sheet_state(settings.sheet.key, "Dashboard").charts) == 1
    assert emulator.sheet_titles(settings.sheet.key).count("Dashboard") == 1


def long_dashboard() -> Dashboard:
    wide = tuple((f"row {n}", *range(n, n + 7)) for n in range(60))
    return Dashboard("Dashboard", NOW, (
        DashboardBlock("Long block", tuple(f"C{n}" for n in range(8)), wide, formats=("",) + ("int",) * 7,
                       chart="A long chart"),
        DashboardBlock("Second block", ("What", "When"), (("then", date(2026, 1, 1)),), formats=("", "date")),
    ))


def short_dashboard() -> Dashboard:
    return Dashboard("Dashboard", NOW + timedelta(hours=1),
                     (DashboardBlock("Short block", ("What", "Share"), (("now", 0.5),), formats=("", "percent")),))


def test_a_shorter_rewrite_leaves_nothing_of_the_longer_one(sheet: tuple[Settings, Any]) -> None:
    settings, emulator = sheet
    backend = open_backend(settings, sleep=lambda s: None) if emulator else open_backend(settings)
    init_sheet(backend, settings, demo_rows(TODAY))
    backend.write_dashboard(long_dashboard())
    assert len(read_grid(settings, emulator)) > 60
    partners_before = backend.read(["Partners"])["Partners"]
    backend.write_dashboard(short_dashboard())
    grid = read_grid(settings, emulator)
    later = (NOW + timedelta(hours=1)).replace(tzinfo=None)
    expected: list[list[Any]] = [["Dashboard", ""], ["Updated", later], ["", ""], ["Short block", ""], ["What", "Share"], ["now", 0.5]]
    assert len(grid) == len(expected) and all(len([v for v in r if v != ""]) <= 2 for r in grid)
    assert [r[0] for r in grid] == [r[0] for r in expected]
    assert moment(grid[1][1]) == later and grid[4][1] == "Share" and grid[5][1] == 0.5
    if emulator:
        assert emulator.sheet_state(settings.sheet.key, "Dashboard").charts == []
    else:
        assert chart_xml(settings.sheet.path) == ""
        assert not [n for n in openpyxl.load_workbook(settings.sheet.path).defined_names if "chart" in n]
    assert backend.read(["Partners"])["Partners"] == partners_before  # other tabs untouched


def sized_rows(n: int) -> dict[str, list[Row]]:
    partners = [{"Partner ID": f"P-{i:05d}", "Business": f"Studio {i}", "Stage": ("Active", "Contacted", "Prospect")[i % 3],
                 "Stage since": TODAY - timedelta(days=i % 200), "Outreach step": 1,
                 "Last emailed": TODAY - timedelta(days=i % 200)} for i in range(1, n + 1)]
    referrals = [{"Referral ID": f"R-{i:05d}", "Direction": ("Out", "In")[i % 2], "Partner": f"P-{1 + i % n:05d}",
                  "Patient first name": "Pat", "Referred on": TODAY - timedelta(days=i % 365),
                  "First visit": TODAY - timedelta(days=i % 300) if i % 3 else None, "Consent": "Yes"}
                 for i in range(1, n + 1)]
    return {"partners": partners, "referrals": referrals, "events": []}


def test_the_google_dashboard_makes_the_same_requests_at_10_and_2000_rows(tmp_path: Path, emulator: Any) -> None:
    counts = {}
    for n in (10, 2000):
        settings = google_settings(tmp_path / str(n), emulator)
        seed_sheet(settings, **sized_rows(n))
        emulator.reset_requests()
        run_dashboard(settings)
        counts[n] = [r.endpoint for r in emulator.requests if r.spreadsheet_id == settings.sheet.key]
        _, partners = block(read_grid(settings, emulator), "Partners")
        assert len(partners) == n
    assert counts[10] == counts[2000] and len(counts[10]) == 4


def test_the_dashboard_job_sends_nothing_and_writes_no_rows(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    seed_sheet(settings, **demo_rows(TODAY))
    world = world_for(settings, lambda: NOW)
    try:
        report = run_jobs(world, ["dashboard"])
    finally:
        world.ledger.close()
    assert report.outcomes == [] and report.cells_written == 0 and report.lost == []
    assert report.summary() == ["dashboard: sent 0 email(s)"]



def test_after_one_run_all_the_dashboard_shows_that_run(sheet: tuple[Settings, Any]) -> None:
    """Job health with this run's results and emails, the prospects it wrote to at Contacted, its To do list."""
    settings, emulator = sheet
    backend = open_backend(settings, sleep=lambda s: None) if emulator else open_backend(settings)
    init_sheet(backend, settings, demo_rows(TODAY))
    world = world_for(settings, lambda: NOW, backend=backend)
    try:
        report = run_jobs(world, [job for job in JOBS if job != "replies"])
    finally:
        world.ledger.close()
    sent = {job: report.count("sent", job) for job in JOBS if job != "replies"}
    assert sent == {"outreach": 6, "discharge": 6, "referrals_in": 3, "events": 2, "scorecard": 2, "dashboard": 0,
                    "digest": 1}
    assert len(list(settings.email.outbox_dir.glob("*.eml"))) == 20
    grid = read_grid(settings, emulator)

    _, health = block(grid, "Job health")
    shown = {r[0]: (r[3], r[4]) for r in health}
    assert shown == {**{job: ("ok", n) for job, n in sent.items()}, "replies": ("never run", "")}
    assert all(moment(r[2]) == NOW.replace(tzinfo=None) for r in health if r[0] != "replies")  # finished

    _, partners = block(grid, "Partners")
    stages = {r[1]: (r[2], day(r[3])) for r in partners}
    emailed = {"P-0001", "P-0002"}  # the two prospects: their intro went in this run
    assert {pid: stages[pid] for pid in emailed} == {pid: ("Contacted", TODAY) for pid in emailed}
    assert [r[1] for r in partners[:3]] == ["P-0008", "P-0009", "P-0007"]  # most referrals in 90 days first

    assert "To do (4)" in [r[0] for r in grid]  # the count in the block's title
    _, todo = block(grid, "To do")
    assert [(r[0], r[1], r[2]) for r in todo] == [
        ("Alex Moreno", "Referrals R-0002", "Iron & Oak Gym"),  # discharged without consent
        ("Alex Moreno", "Referrals R-0010", "Iron & Oak Gym"),  # consent expired
        ("Alex Moreno", "Partners P-0004", "Summit Fitness Center"),  # follow-up 2 just went: call
        ("Nadia Brooks", "Referrals R-0009", "Still Water Massage")]  # Consent Yes without an expiry
    assert todo[2][4].startswith("No more emails: call Grace Liu")
    assert day(todo[0][3]) == TODAY - timedelta(days=2)
    _, kpis = block(grid, "KPIs")
    contacted = next(r for r in kpis if r[0] == "Prospects contacted")
    assert contacted[1] == 5  # this month, the two intros of this run included


def test_a_reply_read_in_the_same_run_is_on_the_dashboards_to_do(tmp_path: Path) -> None:
    from automations.core import InboundMessage, Inbox

    settings = make_settings(tmp_path)
    seed_sheet(settings, partners=[{"Partner ID": "P-0001", "Business": "Northside Strength", "Stage": "Contacted",
                                    "Email": "maya@northside.example", "Outreach step": 1, "Owner": "Dana",
                                    "Last emailed": TODAY - timedelta(days=3), "Stage since": TODAY - timedelta(days=3)}])
    answer = InboundMessage(uid=1, uidvalidity=1, from_address="maya@northside.example", subject="Re: Hello",
                            first_lines=("Happy to meet next week.",), to_addresses=("partners@riverside-pt.example",),
                            date=NOW - timedelta(hours=2), message_id="<a1@northside.example>")
    world = world_for(settings, lambda: NOW, mailbox=lambda s, position: Inbox((answer,), "1:1"))
    try:
        run_jobs(world, ["replies", "dashboard"])
    finally:
        world.ledger.close()
    _, todo = block(read_grid(settings, None), "To do")
    assert [(r[0], r[1], r[4]) for r in todo] == [
        ("Dana", "Partners P-0001", f"Northside Strength replied on {TODAY.isoformat()}: read the reply, then update Stage")]
