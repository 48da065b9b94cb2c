"""The outreach job: intro (cold or warm), two follow-ups, then a call; stopped by Stage, Do not email, Opt-outs, a reply.

Decisions are read from a real xlsx sheet and checked on the plan; the opt-out test runs the job
through the executor to a real loopback SMTP server.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

from automations.config import Settings
from automations.executor import run_jobs
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import Staff, plan_for, world_for
from tests.support.smtp_server import SmtpServer, email_section

TZ = ZoneInfo("America/Chicago")
FRIDAY_9AM = datetime(2026, 11, 27, 9, 0, tzinfo=TZ)
TODAY = FRIDAY_9AM.date()


def prospects(n: int) -> list[dict[str, Any]]:
    return [{"Partner ID": f"P-{i:04d}", "Business": f"Studio {i}", "Contact name": f"Coach {i}",
             "Email": f"coach{i}@studio{i}.example", "Stage": "Prospect", "Why partner": "shared goals"}
            for i in range(1, n + 1)]


def partner(**cells: Any) -> dict[str, Any]:
    """One partner row: Studio 1 with its coach and phone, *cells* changed."""
    return {"Partner ID": "P-0001", "Business": "Studio 1", "Contact name": "Coach One", "Phone": "555-0101",
            "Email": "coach1@studio1.example", "Stage": "Prospect", **cells}


def statuses(settings: Settings, now: datetime = FRIDAY_9AM, **inputs: Any) -> dict[str, Any]:
    """Row ID -> the status the plan writes (None when it writes none)."""
    plan = plan_for(settings, "outreach", now, **inputs)
    written = {w.row_id: w.values.get("Automation status") for w in plan.writes}
    return {p.id: written.get(p.id) for p in read_book(open_backend(settings), settings).partners}


def test_never_to_an_opted_out_address(workbook: Callable[..., Settings], smtp: SmtpServer,
                                       staff_for: Callable[[Settings], Staff]) -> None:
    settings = workbook(partners=prospects(2), email=email_section(smtp))
    staff_for(settings).add("Opt-outs", Email="COACH1@studio1.example", Reason="asked")
    run_jobs(world_for(settings, lambda: FRIDAY_9AM, sleep=lambda s: None), ["outreach"])
    assert sorted(r for m in smtp.messages for r in m.recipients) == ["coach2@studio2.example"]
    book = read_book(open_backend(settings), settings)
    assert {p.id: p.status for p in book.partners}["P-0001"] == "Not emailed: the address is on Opt-outs"


def test_a_prospect_gets_the_intro_and_moves_to_contacted(workbook: Callable[..., Settings]) -> None:
    settings = workbook(partners=[partner()])
    first = settings.follow_up_days[0]
    [intro] = plan_for(settings, "outreach", FRIDAY_9AM).emails
    assert (intro.step, intro.template, intro.label, intro.to_email) == (
        "intro", "outreach_intro", "Intro", "coach1@studio1.example")
    assert dict(intro.on_sent) == {"Stage": "Contacted", "Stage since": TODAY, "Outreach step": 1,
                                   "Last emailed": TODAY, "Next follow-up": TODAY + timedelta(days=first)}
    assert intro.sent_status == f"Intro sent 2026-11-27; follow-up 1 due {TODAY + timedelta(days=first)}"


def test_a_prospect_introduced_by_someone_gets_the_warm_intro(workbook: Callable[..., Settings]) -> None:
    settings = workbook(partners=[partner(**{"Introduced by": "Dr. Reyes"})])
    [intro] = plan_for(settings, "outreach", FRIDAY_9AM).emails
    assert (intro.step, intro.template, intro.label) == ("intro", "outreach_warm_intro", "Warm intro")


def test_follow_ups_wait_their_days_after_the_previous_email(workbook: Callable[..., Settings]) -> None:
    first, second = (7, 14)
    settings = workbook(partners=[
        partner(Stage="Contacted", **{"Outreach step": 1, "Last emailed": TODAY - timedelta(days=first - 1)}),
        partner(**{"Partner ID": "P-0002", "Email": "coach2@studio2.example", "Stage": "Contacted",
                   "Outreach step": 1, "Last emailed": TODAY - timedelta(days=first)}),
        partner(**{"Partner ID": "P-0003", "Email": "coach3@studio3.example", "Stage": "Contacted",
                   "Outreach step": 2, "Last emailed": TODAY - timedelta(days=second)}),
    ])
    assert settings.follow_up_days == (first, second)
    emails = plan_for(settings, "outreach", FRIDAY_9AM).emails
    assert [(e.row.row_id, e.step, e.template) for e in emails] == [
        ("P-0002", "follow_up_1", "outreach_follow_up_1"), ("P-0003", "follow_up_2", "outreach_follow_up_2")]
    assert emails[1].sent_status == "Follow-up 2 sent 2026-11-27; no more emails: call Coach One at 555-0101"


def test_after_the_last_follow_up_the_status_says_whom_to_call(workbook: Callable[..., Settings]) -> None:
    settings = workbook(partners=[partner(Stage="Contacted", **{"Outreach step": 3,
                                                                "Last emailed": TODAY - timedelta(days=30)})])
    assert plan_for(settings, "outreach", FRIDAY_9AM).emails == ()
    assert statuses(settings) == {"P-0001": "No reply after the last follow-up: call Coach One at 555-0101"}


def test_do_not_email_stops_the_intro_and_the_sequence(workbook: Callable[..., Settings]) -> None:
    settings = workbook(partners=[
        partner(**{"Do not email": "Yes"}),
        partner(**{"Partner ID": "P-0002", "Email": "coach2@studio2.example", "Stage": "Contacted",
                   "Outreach step": 1, "Last emailed": TODAY - timedelta(days=30), "Do not email": "Yes"}),
    ])
    assert plan_for(settings, "outreach", FRIDAY_9AM).emails == ()
    assert statuses(settings) == {"P-0001": "Not emailed: Do not email is Yes",
                                  "P-0002": "Sequence stopped: Do not email is Yes"}


def test_a_reply_ends_the_sequence(workbook: Callable[..., Settings]) -> None:
    settings = workbook(partners=[partner(Stage="Contacted", **{
        "Outreach step": 1, "Last emailed": TODAY - timedelta(days=30), "Stage since": TODAY - timedelta(days=30)})])
    replied = TODAY - timedelta(days=2)
    assert plan_for(settings, "outreach", FRIDAY_9AM, replied={"P-0001": replied}).emails == ()
    assert statuses(settings, replied={"P-0001": replied}) == {"P-0001": "Replied 2026-11-25: update Stage"}


def test_follow_ups_answer_the_letters_before_them_in_one_conversation(
        workbook: Callable[..., Settings], smtp: SmtpServer) -> None:
    settings = workbook(partners=[partner(Stage="Prospect")], email=email_section(smtp))
    first, second = settings.follow_up_days
    for days in (0, first, first + second):
        moment = FRIDAY_9AM + timedelta(days=days)
        while moment.weekday() > 4:
            moment += timedelta(days=1)
        run_jobs(world_for(settings, lambda m=moment: m), ["outreach"])
    intro, follow_1, follow_2 = (m.message for m in smtp.messages)
    assert str(intro["X-Partnerloop-Template"]) == "outreach_intro" and intro["In-Reply-To"] is None
    assert str(follow_1["Subject"]) == f"Re: {intro['Subject']}"
    assert str(follow_1["In-Reply-To"]) == str(intro["Message-ID"])
    assert str(follow_1["References"]) == str(intro["Message-ID"])
    assert str(follow_2["Subject"]) == f"Re: {intro['Subject']}"
    assert str(follow_2["In-Reply-To"]) == str(follow_1["Message-ID"])
    assert str(follow_2["References"]).split() == [str(intro["Message-ID"]), str(follow_1["Message-ID"])]


def test_the_partners_owner_signs_and_gets_the_replies(workbook: Callable[..., Settings], smtp: SmtpServer) -> None:
    from dataclasses import replace

    from automations.config import StaffMember

    settings = workbook(partners=[partner(Stage="Prospect", Owner="ana  diaz"), partner(**{
        "Partner ID": "P-0002", "Business": "Core Gym", "Email": "core@gym.example", "Stage": "Prospect"})],
        email=email_section(smtp))
    settings = replace(settings, staff=(StaffMember("Ana Diaz", "Partnerships lead", "ana@riverside-pt.example",
                                                    "(217) 555-0150"),))
    run_jobs(world_for(settings, lambda: FRIDAY_9AM), ["outreach"])
    letters = {m.recipients[0]: m.message for m in smtp.messages}
    owned, other = letters["coach1@studio1.example"], letters["core@gym.example"]
    text = owned.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Ana Diaz, Partnerships lead\nRiverside Physical Therapy\n(217) 555-0150" in text
    assert "I look after partnerships at Riverside Physical Therapy" in text
    assert owned["Reply-To"].addresses[0].addr_spec == "ana@riverside-pt.example"
    other_text = other.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "The partnerships team at Riverside Physical Therapy" in other_text and "Ana" not in other_text
    assert "We are the partnerships team at" in other_text
    assert other["Reply-To"].addresses[0].addr_spec == "partners@riverside-pt.example"
