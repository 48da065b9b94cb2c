"""The events job: a reminder `reminder_days` before an event, to the partner contact and to staff.

Decisions are read from a real xlsx sheet and checked on the plan, and rendered with the shipped
templates where the wording matters.
"""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from automations.config import Settings
from automations.executor import run_jobs
from automations.mail.render import Renderer
from automations.model import Event, read_book
from automations.sheets import open_backend
from automations.todo import todo_list
from tests.conftest import Staff, make_settings, plan_for, seed_sheet, world_for
from tests.support.invites import Received, received
from tests.support.sixty_days import at, d, day0_rows
from tests.support.smtp_server import SmtpServer, email_section

TZ = ZoneInfo("America/Chicago")
STAFF = "frontdesk@riverside-pt.example"


def at_nine(day: int) -> datetime:
    return datetime.combine(d(day), time(9), TZ)


def test_event_reminder_speaks_to_the_partner_and_to_staff_differently(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    seed_sheet(settings, **day0_rows())
    plan = plan_for(settings, "events", at_nine(37))
    renderer = Renderer(settings.templates_dir)
    texts = {e.recipient: renderer.render(e.template, e.context).text for e in plan.emails}
    assert "Hi Leo," in texts["partner"] and "Hello team" not in texts["partner"]
    assert "Hello team," in texts["staff"] and "Events tab (E-0001)" in texts["staff"]
    assert "Events tab" not in texts["partner"]


def test_a_reminder_is_due_only_within_reminder_days_of_the_event(workbook: Callable[..., Settings]) -> None:
    settings = workbook(**day0_rows())
    assert settings.reminder_days == 3
    assert plan_for(settings, "events", at_nine(36)).emails == ()  # E-0001 is on day 40
    due = plan_for(settings, "events", at_nine(37)).emails
    assert [(e.row.row_id, e.recipient, e.to_email) for e in due] == [("E-0001", "partner", "run@club.example"),
                                                                       ("E-0001", "staff", STAFF)]
    assert {e.sent_status for e in due} == {f"Partner reminder sent {d(37).isoformat()}",
                                            f"Staff reminder sent {d(37).isoformat()}"}
    assert [e.recipient for e in plan_for(settings, "events", at_nine(40)).emails] == ["partner", "staff"]
    assert plan_for(settings, "events", at_nine(41)).emails == ()  # the event is past


def test_an_event_without_a_partner_reminds_staff_only(workbook: Callable[..., Settings]) -> None:
    settings = workbook(**day0_rows())
    plan = plan_for(settings, "events", at_nine(56))  # E-0002, day 58, no partner
    assert [(e.row.row_id, e.recipient, e.to_email) for e in plan.emails] == [("E-0002", "staff", STAFF)]
    assert plan.writes == ()


def test_a_partner_who_cannot_be_emailed_gets_no_reminder_and_the_row_says_so(
        workbook: Callable[..., Settings]) -> None:
    settings = workbook(
        partners=[{"Partner ID": "P-0001", "Business": "Quiet Studio", "Email": "quiet@studio.example",
                   "Stage": "Active", "Do not email": "Yes"}],
        events=[{"Event ID": "E-0001", "Event": "Open house", "Date": at(2, 18), "Partner": "Quiet Studio"}])
    plan = plan_for(settings, "events", at_nine(0))
    assert [e.recipient for e in plan.emails] == ["staff"]
    assert [dict(w.values) for w in plan.writes] == [
        {"Automation status": "Partner reminder not sent: Quiet Studio cannot be emailed; staff reminder only"}]


def test_a_reminder_already_sent_is_not_planned_again(workbook: Callable[..., Settings]) -> None:
    rows = day0_rows()
    rows["events"][0]["Reminder sent"] = d(37)
    settings = workbook(**rows)
    assert plan_for(settings, "events", at_nine(38)).emails == ()


def test_each_copy_of_a_reminder_is_tracked_apart_and_a_held_one_goes_later(
        workbook: Callable[..., Settings]) -> None:
    settings = workbook(email={"daily_limit": 1}, **day0_rows())
    def run(day: int) -> list[str]:
        moment = datetime.combine(d(day), time(9), TZ)
        report = run_jobs(world_for(settings, lambda: moment), ["events"])
        return [f"{o.email.recipient} {o.result}" for o in report.outcomes]

    assert run(37) == ["partner sent", "staff held"]  # daily_limit 1: the staff copy waits
    [event] = [e for e in read_book(open_backend(settings), settings).events if e.id == "E-0001"]
    assert event.reminder_sent == d(37) and f"Partner reminder sent {d(37).isoformat()}" in event.status
    assert "Staff reminder held: daily_limit 1 reached" in event.status
    assert run(38) == ["staff sent"]  # the partner's copy is not sent again, the staff's goes now
    assert run(39) == []


def test_a_copy_still_held_when_the_event_has_passed_says_so(workbook: Callable[..., Settings]) -> None:
    settings = workbook(email={"send_window": "Sat 08:00-09:00"}, **day0_rows())
    for day in (37, 41):
        moment = datetime.combine(d(day), time(10), TZ)
        run_jobs(world_for(settings, lambda: moment), ["events"])
        [event] = [e for e in read_book(open_backend(settings), settings).events if e.id == "E-0001"]
        if day == 37:
            assert "Partner reminder held: outside the send window" in event.status and "goes out from" in event.status
    assert event.status == f"Partner reminder and Staff reminder not sent: the event was on {d(40).isoformat()}"


# -- the event's calendar invite ---------------------------------------------------------------------------------

EVENT_UID = "event-e-0001@riverside-pt.example"


def run_events(settings: Settings, day: int, minute: int = 0) -> None:
    moment = datetime.combine(d(day), time(9, minute), TZ)
    run_jobs(world_for(settings, lambda: moment), ["events"])


def by_recipient(smtp: SmtpServer) -> dict[str, list[Received]]:
    found: dict[str, list[Received]] = {}
    for message in smtp.messages:
        found.setdefault(message.recipients[0], []).append(received(message.raw))
    return found


def event_row(settings: Settings) -> Event:
    return next(e for e in read_book(open_backend(settings), settings).events if e.id == "E-0001")


def test_each_reminder_carries_the_events_invite_and_says_the_day_and_time(
        workbook: Callable[..., Settings], smtp: SmtpServer) -> None:
    settings = workbook(email=email_section(smtp), **day0_rows())
    run_events(settings, 37)
    run_events(settings, 37, 5)  # a re-run sends nothing more
    mail = by_recipient(smtp)
    assert sorted(mail) == ["frontdesk@riverside-pt.example", "run@club.example"]
    for [copy] in mail.values():
        assert copy.method == "REQUEST"
        event = copy.attachment.walk("VEVENT")[0]
        assert str(event["UID"]) == EVENT_UID and event["SEQUENCE"] == 0
        assert event["DTSTART"].dt == datetime.combine(d(40), time(17, 30), TZ)
        assert event["DTEND"].dt == datetime.combine(d(40), time(19, 0), TZ)
        assert event["DTSTART"].params["TZID"] == "America/Chicago"
        assert str(event["LOCATION"]) == "Clinic studio"
        assert str(event["SUMMARY"]) == "Healthy Knees Open House with Active Run Club"
        assert copy.subject == "Reminder: Healthy Knees Open House on Saturday, December 12 at 5:30 PM"
        assert ("Healthy Knees Open House, which we're hosting with Active Run Club, is in 3 days, on Saturday, "
                "December 12, 2026, 5:30 PM to 7:00 PM Central Time.") in copy.text
    [partner] = mail["run@club.example"]
    assert str(partner.event["ATTENDEE"]) == "mailto:run@club.example"


def test_a_moved_event_sends_one_update_to_each_copy(
        workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Staff]) -> None:
    settings = workbook(email=email_section(smtp), **day0_rows())
    run_events(settings, 37)
    staff_for(settings).edit("Events", "E-0001", Date="2026-12-19 10:00", Ends="")
    for minute in (0, 5):
        run_events(settings, 38, minute)
    for first, update in by_recipient(smtp).values():
        assert str(update.event["UID"]) == str(first.event["UID"]) == EVENT_UID
        assert (first.event["SEQUENCE"], update.event["SEQUENCE"]) == (0, 1)
        assert update.event["DTSTART"].dt == datetime(2026, 12, 19, 10, 0, tzinfo=TZ)
        assert update.event["DTEND"].dt == datetime(2026, 12, 19, 11, 0, tzinfo=TZ)  # Ends blank: one hour
        assert update.subject == "New time: Healthy Knees Open House on Saturday, December 19 at 10:00 AM"
        assert "has a new time: Saturday, December 19, 2026, 10:00 AM to 11:00 AM Central Time" in update.text
    assert "Partner update sent" in event_row(settings).status


def test_a_cleared_event_date_sends_one_cancellation_to_each_copy(
        workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Staff]) -> None:
    settings = workbook(email=email_section(smtp), **day0_rows())
    run_events(settings, 37)
    staff_for(settings).edit("Events", "E-0001", Date="")
    for minute in (0, 5):
        run_events(settings, 38, minute)
    for _, cancel in by_recipient(smtp).values():
        assert cancel.method == "CANCEL" and str(cancel.event["STATUS"]) == "CANCELLED"
        assert str(cancel.event["UID"]) == EVENT_UID and cancel.event["SEQUENCE"] == 1
        assert cancel.event["DTSTART"].dt == datetime.combine(d(40), time(17, 30), TZ)
        assert cancel.subject == "Cancelled: Healthy Knees Open House on Saturday, December 12 at 5:30 PM"
        assert "is cancelled" in cancel.text
    status = event_row(settings).status
    assert "Date is empty" not in status and "Partner cancellation sent" in status  # called off, not a bad row
    book = read_book(open_backend(settings), settings)
    assert not book.problems and not [i for i in todo_list(book, d(38)) if i.row == "E-0001"]  # nothing to fix


def test_an_event_without_a_date_that_never_had_a_reminder_is_a_row_to_fix(
        workbook: Callable[..., Settings], smtp: SmtpServer) -> None:
    rows = day0_rows()
    rows["events"][0]["Date"] = None
    settings = workbook(email=email_section(smtp), **rows)
    run_events(settings, 37)
    assert smtp.messages == []  # nothing to remind of, nothing to cancel
    assert event_row(settings).status.startswith("Needs attention: Date is empty; it is required")


def test_an_event_date_without_a_time_holds_the_reminder_and_says_how_to_write_it(
        workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Staff]) -> None:
    rows = day0_rows()
    rows["events"][0]["Date"] = d(40)
    settings = workbook(email=email_section(smtp), **rows)
    run_events(settings, 37)
    assert smtp.messages == []
    assert event_row(settings).status == ("Reminder held: Date 2026-12-12 has no start time; write the date and "
                                          "time, like 2026-12-12 17:30 or 12/12/2026 5:30 PM")
    staff_for(settings).edit("Events", "E-0001", Date="12/12/2026 6pm")
    run_events(settings, 37, 5)
    assert [m.event["DTSTART"].dt for m in by_recipient(smtp)["run@club.example"]] == [
        datetime(2026, 12, 12, 18, 0, tzinfo=TZ)]


def test_an_end_before_the_start_is_a_problem_on_the_row(workbook: Callable[..., Settings]) -> None:
    rows = day0_rows()
    rows["events"][0]["Ends"] = "4:00 PM"
    settings = workbook(**rows)
    assert [e.row.row_id for e in plan_for(settings, "events", at_nine(37)).emails] == []
    assert "Ends 16:00 is not after the start (2026-12-12 17:30)" in event_row(settings).problems[0]


def test_a_lost_state_dir_sends_no_reminder_or_update_again(
        workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Staff]) -> None:
    import shutil

    settings = workbook(email=email_section(smtp), **day0_rows())
    run_events(settings, 37)
    staff_for(settings).edit("Events", "E-0001", Date="2026-12-19 10:00")
    run_events(settings, 38)
    shutil.rmtree(settings.state_dir)  # the ledger is rebuilt from the Log tab
    run_events(settings, 38, 5)
    assert len(smtp.messages) == 4
    staff_for(settings).edit("Events", "E-0001", Date="")
    run_events(settings, 38, 10)
    cancels = [received(m.raw) for m in smtp.messages[4:]]
    assert [(c.method, c.event["SEQUENCE"]) for c in cancels] == [("CANCEL", 2), ("CANCEL", 2)]
    assert {c.event["DTSTART"].dt for c in cancels} == {datetime(2026, 12, 19, 10, 0, tzinfo=TZ)}


def test_init_formats_meeting_date_and_event_date_as_date_and_time(tmp_path: Path, emulator: Any) -> None:
    import openpyxl

    from tests.conftest import google_settings

    xlsx = make_settings(tmp_path / "xlsx")
    seed_sheet(xlsx, **day0_rows())
    workbook = openpyxl.load_workbook(xlsx.sheet.path)
    for tab, column in (("Partners", "Meeting date"), ("Events", "Date")):
        sheet = workbook[tab]
        index = [c.value for c in sheet[1]].index(column) + 1
        dated = [row[0] for row in sheet.iter_rows(min_row=2, min_col=index, max_col=index) if row[0].value]
        assert {cell.number_format for cell in dated} <= {"yyyy-mm-dd hh:mm"}, tab
        letter = openpyxl.utils.get_column_letter(index)
        assert sheet.column_dimensions[letter].number_format == "yyyy-mm-dd hh:mm", tab  # what staff type next
    google = google_settings(tmp_path / "google", emulator)
    seed_sheet(google, **day0_rows())
    for tab, column in (("Partners", "Meeting date"), ("Events", "Date")):
        state = emulator.sheet_state(google.sheet.key, tab)
        letter = chr(ord("A") + state.values[0].index(column))
        assert state.formats[f"{letter}2"]["numberFormat"] == {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm"}
