"""The owner's weekly digest, delivered to a real SMTP server on 127.0.0.1: once a week, the KPIs
against last week, dormant partners, rows needing attention, and never a patient's name."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automations.config import Settings
from automations.demo import demo_rows
from automations.executor import RunReport, run_jobs
from automations.jobs.digest import change, period_words, plan_digest, show
from automations.jobs.plan import JobInput
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import Staff, make_settings, seed_sheet, world_for
from tests.support.smtp_server import SmtpServer, email_section

TZ = ZoneInfo("America/Chicago")
MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)  # ISO week 2026-W48; the digest reports W47 (Nov 16-22)
OWNER = "owner@riverside-pt.example"
DORMANT = "Dormant partners (Active, no referral in 90 days)"


@pytest.fixture
def settings(tmp_path: Path, smtp: SmtpServer) -> Settings:
    settings = make_settings(tmp_path, email=email_section(smtp))
    seed_sheet(settings, **demo_rows(MONDAY.date()))
    return settings


def run(settings: Settings, now: datetime, jobs: tuple[str, ...] = ("digest",)) -> RunReport:
    world = world_for(settings, lambda: now)
    try:
        return run_jobs(world, list(jobs))
    finally:
        world.ledger.close()


def text_of(server: SmtpServer, n: int) -> str:
    body = server.messages[n].message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def kpi_line(text: str, label: str) -> list[str]:
    """This week, last week and change for one KPI, from the text part's table."""
    line = next(line for line in text.splitlines() if line.startswith(label))
    return re.split(r"\s{2,}", line[len(label):].strip())


def patient_details() -> set[str]:
    rows = demo_rows(MONDAY.date())["referrals"]
    details = {r[k] for r in rows for k in ("Patient first name", "Patient email", "Goal") if r.get(k)}
    return details | {r["Patient last name"] for r in rows if r.get("Patient last name") not in (None, "Patient")}


def test_the_digest_goes_to_the_owner_once_a_week(settings: Settings, smtp: SmtpServer) -> None:
    report = run(settings, MONDAY)
    assert report.count("sent") == 1 and report.lost == []
    run(settings, MONDAY + timedelta(hours=2))
    run(settings, MONDAY + timedelta(days=3), ("dashboard", "digest"))
    assert [m.recipients for m in smtp.messages] == [[OWNER]]
    message = smtp.messages[0].message
    assert message["Subject"] == "Partnership digest: November 16 to 22, 2026"  # week 2026-W47, in words
    assert message["Message-ID"] and message.get_body(("html",)) is not None

    run(settings, MONDAY + timedelta(days=7))
    assert len(smtp.messages) == 2
    assert smtp.messages[1].message["Subject"] == "Partnership digest: November 23 to 29, 2026"  # W48


def test_the_digest_shows_the_kpis_against_what_last_weeks_digest_said(settings: Settings, smtp: SmtpServer) -> None:
    run(settings, MONDAY)
    first = text_of(smtp, 0)
    assert kpi_line(first, "Referrals in") == ["1", "1", "no change"]  # W47: R-0003; W46 (from the sheet): R-0004
    assert kpi_line(first, "Active partners") == ["3", "3", "no change"]
    assert DORMANT not in first  # dormant partners have their own section, not a line of the table

    staff = Staff(settings)
    staff.edit("Referrals", "R-0003", Referred_on="2026-10-01")  # last week's figure changes on the sheet …
    for n, day in ((1, 24), (2, 25)):
        staff.add("Referrals", Referral_ID=f"R-09{n}", Direction="In", Partner="Iron & Oak Gym",
                  Patient_first_name=f"Quincy{n}", Referred_on=f"2026-11-{day}", First_visit=f"2026-11-{day + 2}")
    staff.edit("Partners", "P-0007", Stage="Paused")
    run(settings, MONDAY + timedelta(days=7))
    second = text_of(smtp, 1)
    assert kpi_line(second, "Referrals in") == ["2", "1", "+1"]  # … but the digest compares with what it said
    assert kpi_line(second, "Active partners") == ["2", "3", "-1"]
    assert kpi_line(second, "Inbound conversion") == ["100%", "0%", "+100 pts"]
    assert kpi_line(second, "Median days, referral to first visit") == ["2.0", "8.0", "-6.0"]  # R-0004 was first seen on 2026-11-21, 8 days after its referral


def test_the_digest_names_no_patient(settings: Settings, smtp: SmtpServer) -> None:
    staff = Staff(settings)
    staff.add("Referrals", Referral_ID="R-0990", Direction="In", Partner="Iron & Oak Gym",
              Patient_first_name="Quentin", Patient_email="quentin.private@", Goal="Secret goal")
    staff.edit("Partners", "P-0003", Email="tom@")
    run(settings, MONDAY)
    raw = smtp.messages[0].raw.decode("utf-8", "replace")
    text = text_of(smtp, 0)
    leaked = [d for d in (*patient_details(), "Quentin", "quentin.private", "Secret goal") if d in raw or d in text]
    assert leaked == []
    flat = " ".join(text.split())
    assert "Referrals R-0990 (Iron & Oak Gym): Fix the row: Patient email (value hidden) is not a valid address" in flat
    assert "Partners P-0003 (Harbor Massage Collective): Fix the row: Email 'tom@' is not a valid address" in flat


def test_dormant_partners_are_listed_by_business(settings: Settings, smtp: SmtpServer) -> None:
    run(settings, MONDAY + timedelta(days=126))  # four months without a referral: every Active partner is quiet
    text = text_of(smtp, 0)
    flat = " ".join(text.split())
    assert "Dormant partners: 3 active partners with no referral either way in 90 days." in flat
    assert "Riverbend Running Club: last referral November 22, 2026" in flat
    assert "Iron & Oak Gym: last referral" in flat and "Still Water Massage: last referral" in flat
    assert DORMANT not in text  # named once, in their section


def test_a_digest_held_outside_the_send_window_goes_out_on_the_next_run(settings: Settings, smtp: SmtpServer) -> None:
    sunday = MONDAY - timedelta(days=1) + timedelta(days=7)  # Sunday of W48
    held = run(settings, sunday)
    assert held.count("held") == 1 and smtp.messages == []
    run(settings, sunday + timedelta(days=1))  # Monday of W49: that week's digest
    assert len(smtp.messages) == 1 and smtp.messages[0].message["Subject"].endswith("November 23 to 29, 2026")  # W48


def job_input(settings: Settings, now: datetime, remembered: dict[str, str] | None = None) -> JobInput:
    return JobInput(book=read_book(open_backend(settings), settings), now=now, settings=settings,
                    remembered=remembered or {}, location="https://docs.google.com/spreadsheets/d/key")


def test_the_plan_remembers_this_weeks_figures_and_keeps_last_weeks_on_a_rerun(settings: Settings) -> None:
    plan = plan_digest(job_input(settings, MONDAY))
    (email,) = plan.emails
    assert (email.job, email.step, email.row.row_id, email.to_email, email.recipient) == (
        "digest", "2026-W48", "digest-2026-W48", OWNER, "owner")
    assert email.on_sent == {} and email.sent_status == ""
    assert email.context["digest"]["sheet_link"] == ""  # a workbook's path on the server is no link for the owner
    assert email.context["digest"]["sheet_words"] == (
        "Open the Dashboard tab of the partnerships workbook (sheet.xlsx) to see the figures and the To do list "
        "with each row.")
    google = replace(settings, sheet=replace(settings.sheet, backend="google", key="key"))
    linked = plan_digest(replace(job_input(settings, MONDAY), settings=google)).emails[0].context["digest"]
    assert (linked["sheet_link"], linked["sheet_words"]) == ("https://docs.google.com/spreadsheets/d/key", "")
    memory = json.loads(plan.remember["digest"])
    assert (memory["week"], memory["reported"], memory["values"]["referrals_in"]) == ("2026-W48", "2026-W47", 1)
    assert memory["previous"]["reported"] == "2026-W46"

    invented = {**memory, "values": {**memory["values"], "referrals_in": 7}}
    rerun = plan_digest(job_input(settings, MONDAY + timedelta(days=2), {"digest": json.dumps(invented)}))
    assert json.loads(rerun.remember["digest"])["previous"] == memory["previous"]  # not this week's own figures

    next_week = plan_digest(job_input(settings, MONDAY + timedelta(days=7), {"digest": json.dumps(invented)}))
    lines = {k["label"]: k for k in next_week.emails[0].context["digest"]["kpis"]}
    assert lines["Referrals in"]["previous"] == "7"

    after_a_gap = plan_digest(job_input(settings, MONDAY + timedelta(days=21), {"digest": json.dumps(invented)}))
    lines = {k["label"]: k for k in after_a_gap.emails[0].context["digest"]["kpis"]}
    assert lines["Referrals in"]["previous"] == "0"  # not last week's digest: recomputed from the sheet
    assert lines["Rows with data problems"]["previous"] == "—"


def test_no_owner_address_means_no_digest(settings: Settings) -> None:
    nobody = replace(settings, clinic=replace(settings.clinic, owner_email=""))
    assert plan_digest(job_input(nobody, MONDAY)).emails == ()


@pytest.mark.parametrize("now, before, kind, shown, changed", [
    (3, 1, "int", "3", "+2"), (1, 3, "int", "1", "-2"), (2, 2, "int", "2", "no change"),
    (0.5, 0.25, "percent", "50%", "+25 pts"), (0.25, 0.5, "percent", "25%", "-25 pts"),
    (4.5, 3.0, "decimal", "4.5", "+1.5"), (None, 3, "int", "—", "—"), (1200, None, "int", "1,200", "—"),
])
def test_values_and_changes_read_as_the_owner_expects(now: Any, before: Any, kind: str, shown: str,
                                                       changed: str) -> None:
    assert show(now, kind) == shown
    assert change(now, before, kind) == changed


def test_the_digest_lists_the_to_do_by_owner_as_the_run_leaves_the_sheet(settings: Settings, smtp: SmtpServer) -> None:
    report = run(settings, MONDAY, ("outreach", "discharge", "digest"))
    assert report.count("sent", "outreach") == 6 and report.count("sent", "digest") == 1
    (digest,) = [m for m in smtp.messages if m.recipients == [OWNER]]
    text = " ".join(str(digest.message.get_body(("plain",)).get_content()).split())  # type: ignore[union-attr]
    html = str(digest.message.get_body(("html",)).get_content())  # type: ignore[union-attr]
    section = text[text.index("To do (rows that need a person, by owner):"):text.index("Open the Dashboard tab")]
    assert section == (
        "To do (rows that need a person, by owner): Alex Moreno "
        "- Referrals R-0002 (Iron & Oak Gym): Discharged 2026-11-21 without consent: ask the patient to sign for "
        "Iron & Oak Gym, or write No in Consent "
        "- Referrals R-0010 (Iron & Oak Gym): Consent expired 2026-11-13, before the introduction to Iron & Oak Gym: "
        "renew it with the patient, or write No "
        # follow-up 2 went in this very run: the digest, planned after it, already says to call
        "- Partners P-0004 (Summit Fitness Center): No more emails: call Grace Liu at (217) 555-0104, no reply "
        "after the last follow-up (2026-11-23); then update Stage "
        "Nadia Brooks "
        "- Referrals R-0009 (Still Water Massage): Consent is Yes but Consent expires is empty: add the expiry date "
        "from the signed authorization, and the introduction to Still Water Massage goes out ")
    assert kpi_line(str(digest.message.get_body(("plain",)).get_content()),  # type: ignore[union-attr]
                    "To do (rows that need a person)")[0] == "4"
    assert "Open the Dashboard tab of the partnerships workbook (sheet.xlsx)" in text
    assert str(settings.sheet.path.parent) not in text + html  # no path on the server
    assert "href=\"file:" not in html and "Morgan" not in text and "Hale" not in text
    assert "Kai" not in text and "Drew" not in text and "Robin" not in text


@pytest.mark.parametrize(("start", "said"), [
    (date(2026, 11, 16), "November 16 to 22, 2026"),
    (date(2026, 11, 30), "November 30 to December 6, 2026"),
    (date(2026, 12, 28), "December 28, 2026 to January 3, 2027"),
])
def test_the_reported_week_is_named_in_words(start: date, said: str) -> None:
    assert period_words(start, start + timedelta(days=6)) == said
