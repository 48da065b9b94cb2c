"""The outreach job: intro (cold or warm), two follow-ups, then a call; stopped by Stage, Do not email, Opt-outs, a reply.

Decisions are read from a real xlsx sheet and checked on the plan; the opt-out test runs the job
through the executor to a real loopback SMTP server.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from automations.config import Settings
from automations.executor import run_jobs
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import Staff, plan_for, seed_sheet, world_for
from tests.support.invites import received
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


# -- the meeting confirmation and its calendar invite ----------------------------------------------------------

MEETING_UID = "meeting-p-0001@riverside-pt.example"


def meeting_partner(when: Any) -> dict[str, Any]:
    return partner(Stage="Meeting", **{"Meeting date": when, "Outreach step": 1, "Last emailed": TODAY})


def run_outreach(settings: Settings, now: datetime = FRIDAY_9AM) -> None:
    run_jobs(world_for(settings, lambda: now), ["outreach"])


def row_status(settings: Settings) -> str:
    [row] = read_book(open_backend(settings), settings).partners
    return row.status


def test_a_meeting_confirmation_carries_an_invite_for_the_meeting_time(
        workbook: Callable[..., Settings], smtp: SmtpServer) -> None:
    settings = workbook(partners=[meeting_partner("12/3/2026 10:00 AM")], email=email_section(smtp))
    run_outreach(settings)
    run_outreach(settings, FRIDAY_9AM + timedelta(minutes=5))  # a re-run sends nothing more
    [arrived] = smtp.messages
    mail = received(arrived.raw)
    assert mail.method == "REQUEST" and mail.attachment["METHOD"] == "REQUEST"
    event = mail.attachment.walk("VEVENT")[0]
    assert str(event["UID"]) == MEETING_UID and event["SEQUENCE"] == 0
    assert event["DTSTART"].dt == datetime(2026, 12, 3, 10, 0, tzinfo=TZ)
    assert event["DTSTART"].params["TZID"] == "America/Chicago"
    assert event["DTEND"].dt == datetime(2026, 12, 3, 11, 0, tzinfo=TZ)
    assert str(event["ATTENDEE"]) == "mailto:coach1@studio1.example"
    assert str(event["ORGANIZER"]) == "mailto:partners@riverside-pt.example"
    assert mail.subject == "Our meeting on Thursday, December 3 at 10:00 AM: Riverside Physical Therapy and Studio 1"
    assert "meet on Thursday, December 3, 2026, 10:00 AM to 11:00 AM Central Time." in mail.text
    assert "A calendar invite is attached" in mail.text
    assert row_status(settings) == "Meeting confirmation sent 2026-11-27 for 2026-12-03 10:00"


def test_a_moved_meeting_sends_exactly_one_update_with_the_same_uid(
        workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Staff]) -> None:
    settings = workbook(partners=[meeting_partner(datetime(2026, 12, 3, 10, 0))], email=email_section(smtp))
    run_outreach(settings)
    staff_for(settings).edit("Partners", "P-0001", Meeting_date="Dec 4 2026 2:30pm")
    monday = FRIDAY_9AM + timedelta(days=3)
    for minutes in (0, 5, 10):
        run_outreach(settings, monday + timedelta(minutes=minutes))
    first, update = (received(m.raw) for m in smtp.messages)
    assert update.method == "REQUEST"
    assert str(update.event["UID"]) == str(first.event["UID"]) == MEETING_UID
    assert (first.event["SEQUENCE"], update.event["SEQUENCE"]) == (0, 1)
    assert update.event["DTSTART"].dt == datetime(2026, 12, 4, 14, 30, tzinfo=TZ)
    assert update.subject.startswith("New time for our meeting: Friday, December 4 at 2:30 PM")
    assert ("moved our meeting from Thursday, December 3 at 10:00 AM to Friday, December 4, 2026, 2:30 PM to "
            "3:30 PM Central Time") in update.text
    assert row_status(settings) == "Meeting update sent 2026-11-30: moved to 2026-12-04 14:30"


@pytest.mark.parametrize("change", [{"Meeting_date": ""}, {"Stage": "Declined"}], ids=["cleared", "declined"])
def test_a_cleared_date_or_declined_before_the_meeting_sends_one_cancellation(
        workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Staff],
        change: dict[str, str]) -> None:
    settings = workbook(partners=[meeting_partner("2026-12-03 10:00")], email=email_section(smtp))
    run_outreach(settings)
    staff_for(settings).edit("Partners", "P-0001", **change)
    monday = FRIDAY_9AM + timedelta(days=3)
    for minutes in (0, 5):
        run_outreach(settings, monday + timedelta(minutes=minutes))
    _, cancel = (received(m.raw) for m in smtp.messages)
    assert cancel.method == "CANCEL" and cancel.attachment["METHOD"] == "CANCEL"
    assert str(cancel.event["UID"]) == MEETING_UID and cancel.event["SEQUENCE"] == 1
    assert str(cancel.event["STATUS"]) == "CANCELLED"
    assert cancel.event["DTSTART"].dt == datetime(2026, 12, 3, 10, 0, tzinfo=TZ)
    assert str(cancel.message["X-Partnerloop-Template"]) == "meeting_cancellation"
    assert cancel.subject.startswith("Cancelled: our meeting on Thursday, December 3 at 10:00 AM")
    assert "Our meeting on Thursday, December 3, 2026, 10:00 AM to 11:00 AM Central Time is cancelled." in cancel.text
    assert row_status(settings).startswith("Meeting cancellation sent 2026-11-30 for 2026-12-03 10:00")


def test_a_meeting_that_has_passed_is_not_cancelled(
        workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Staff]) -> None:
    settings = workbook(partners=[meeting_partner("2026-11-30 10:00")], email=email_section(smtp))
    run_outreach(settings)
    staff_for(settings).edit("Partners", "P-0001", Stage="Declined")
    run_outreach(settings, datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    assert [str(m.message["X-Partnerloop-Template"]) for m in smtp.messages] == ["meeting_confirmation"]


def test_once_a_confirmed_meeting_has_passed_the_status_asks_for_its_outcome(
        workbook: Callable[..., Settings], smtp: SmtpServer) -> None:
    settings = workbook(partners=[meeting_partner("2026-11-30 10:00")], email=email_section(smtp))
    run_outreach(settings)
    assert row_status(settings) == "Meeting confirmation sent 2026-11-27 for 2026-11-30 10:00"
    for later in (datetime(2026, 11, 30, 10, 30, tzinfo=TZ), datetime(2026, 12, 1, 9, 0, tzinfo=TZ)):
        run_outreach(settings, later)  # that day after the meeting began, and the day after
        assert row_status(settings) == ("The meeting on 2026-11-30 has passed: set Stage (Agreement, Declined) or "
                                        "the next Meeting date")  # not "add a date to send the confirmation"
    assert [str(m.message["X-Partnerloop-Template"]) for m in smtp.messages] == ["meeting_confirmation"]


def test_a_meeting_date_without_a_time_holds_the_confirmation_and_says_how_to_write_it(
        workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Staff]) -> None:
    settings = workbook(partners=[meeting_partner("2026-12-03")], email=email_section(smtp))
    run_outreach(settings)
    assert smtp.messages == []
    assert row_status(settings) == ("Meeting confirmation held: Meeting date 2026-12-03 has no time; write the "
                                    "date and time, like 2026-12-03 10:00 or 12/03/2026 2:30 PM")
    staff_for(settings).edit("Partners", "P-0001", Meeting_date="2026-12-03 15:00")
    run_outreach(settings, FRIDAY_9AM + timedelta(minutes=5))
    [arrived] = smtp.messages
    assert received(arrived.raw).event["DTSTART"].dt == datetime(2026, 12, 3, 15, 0, tzinfo=TZ)


def test_meeting_dates_typed_in_the_clinics_date_order(workbook: Callable[..., Settings]) -> None:
    settings = workbook(partners=[meeting_partner("3/12/2026 10:00")], sheet={"date_order": "DMY"})
    [email] = plan_for(settings, "outreach", FRIDAY_9AM).emails
    assert email.invite is not None and email.invite.start == datetime(2026, 12, 3, 10, 0, tzinfo=TZ)


def test_a_meeting_date_and_time_reads_alike_from_both_backends(backend_settings: Settings) -> None:
    seed_sheet(backend_settings, partners=[
        meeting_partner(datetime(2026, 12, 3, 10, 0)),  # a date-time cell
        partner(**{"Partner ID": "P-0002", "Email": "coach2@studio2.example", "Stage": "Meeting",
                   "Meeting date": "Dec 3 2026 2pm"})])  # typed as text
    emails = plan_for(backend_settings, "outreach", FRIDAY_9AM).emails
    assert [(e.row.row_id, e.invite.start if e.invite else None) for e in emails] == [
        ("P-0001", datetime(2026, 12, 3, 10, 0, tzinfo=TZ)), ("P-0002", datetime(2026, 12, 3, 14, 0, tzinfo=TZ))]


def test_a_lost_state_dir_sends_no_invite_again_and_the_next_update_counts_on(
        workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Staff]) -> None:
    import shutil

    settings = workbook(partners=[meeting_partner("2026-12-03 10:00")], email=email_section(smtp))
    run_outreach(settings)
    staff_for(settings).edit("Partners", "P-0001", Meeting_date="2026-12-04 10:00")
    monday = FRIDAY_9AM + timedelta(days=3)
    run_outreach(settings, monday)
    shutil.rmtree(settings.state_dir)  # the ledger is rebuilt from the Log tab
    run_outreach(settings, monday + timedelta(minutes=5))
    assert len(smtp.messages) == 2
    staff_for(settings).edit("Partners", "P-0001", Meeting_date="2026-12-04 15:00")
    run_outreach(settings, monday + timedelta(minutes=10))
    sequences = [received(m.raw).event["SEQUENCE"] for m in smtp.messages]
    assert sequences == [0, 1, 2]
    assert received(smtp.messages[-1].raw).event["DTSTART"].dt == datetime(2026, 12, 4, 15, 0, tzinfo=TZ)


def test_staff_can_have_a_meeting_invite_sent_again(
        workbook: Callable[..., Settings], smtp: SmtpServer) -> None:
    from automations.mail.ledger import Ledger

    settings = workbook(partners=[meeting_partner("2026-12-03 10:00")], email=email_section(smtp))
    run_outreach(settings)
    Ledger.in_state_dir(settings.state_dir).resolve("P-0001", "outreach", sent=False, now=FRIDAY_9AM)
    run_outreach(settings, FRIDAY_9AM + timedelta(minutes=5))
    first, again = (received(m.raw) for m in smtp.messages)
    assert (again.event["UID"], again.event["SEQUENCE"], again.event["DTSTART"].dt) == (
        first.event["UID"], 0, datetime(2026, 12, 3, 10, 0, tzinfo=TZ))
    assert row_status(settings) == "Meeting confirmation sent 2026-11-27 for 2026-12-03 10:00 (sent again, as staff asked)"
