"""The sheet the 60-day simulation starts from: partners at each Stage, Out and In referrals, two events.

Day 0 (`DAY0`) is a Monday; `d(n)` is day n. tests/test_jobs.py runs every job over it for 60 days;
the job tests use the same rows where they check one job's decision on one of those days.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from automations.config import Settings

DAY0 = date(2026, 11, 2)  # a Monday
TZ = ZoneInfo("America/Chicago")
ROW_JOBS = ["outreach", "discharge", "referrals_in", "events"]


def d(n: int) -> date:
    return DAY0 + timedelta(days=n)


def at(n: int, hour: int, minute: int = 0) -> datetime:
    """Day n at a time of day, on the clinic's wall clock (as a date-time cell holds it)."""
    return datetime.combine(d(n), time(hour, minute))


def day0_rows() -> dict[str, list[dict[str, Any]]]:
    """The Partners, Referrals and Events rows on day 0, by tab key (for `seed_sheet`)."""
    partners = [
        {"Partner ID": "P-0001", "Business": "Cold Gym", "Contact name": "Casey Cole", "Email": "cold@gym.example",
         "Stage": "Prospect", "Why partner": "strength after rehab", "Phone": "555-0101"},
        {"Partner ID": "P-0002", "Business": "Warm Yoga", "Contact name": "Wren Hale", "Email": "hello@warmyoga.example",
         "Stage": "Prospect", "Introduced by": "Dr. Reyes", "Why partner": "gentle mobility"},
        {"Partner ID": "P-0003", "Business": "Quiet Studio", "Email": "quiet@studio.example", "Stage": "Prospect",
         "Do not email": "Yes"},
        {"Partner ID": "P-0004", "Business": "Active Run Club", "Contact name": "Leo Martins", "Email": "run@club.example",
         "Stage": "Active", "Perk": "two free group runs", "Taking our patients": "Coach Leo calls within 2 days"},
        {"Partner ID": "P-0005", "Business": "Paused Gym", "Email": "paused@gym.example", "Stage": "Paused"},
    ]
    referrals = [
        {"Referral ID": "R-0001", "Direction": "Out", "Partner": "Active Run Club", "Patient first name": "Jordan",
         "Patient last name": "Blake", "Patient email": "jordan@mail.example", "Consent": "Yes",
         "Consent expires": d(200), "Goal": "Back to running 5k", "Discharge date": d(8)},
        {"Referral ID": "R-0002", "Direction": "Out", "Partner": "P-0005", "Patient first name": "Morgan",
         "Consent": "Yes", "Consent expires": d(200), "Goal": "Stairs without pain", "Discharge date": d(5)},
        {"Referral ID": "R-0003", "Direction": "Out", "Partner": "Active Run Club", "Patient first name": "Riley",
         "Patient email": "riley@mail.example", "Consent": "Yes", "Consent expires": d(200), "Goal": "Hike again", "Discharge date": d(25)},
        {"Referral ID": "R-0004", "Direction": "Out", "Partner": "Active Run Club", "Patient first name": "Avery",
         "Consent": "", "Goal": "Knee strength", "Discharge date": d(4)},
    ]
    events = [
        {"Event ID": "E-0001", "Event": "Healthy Knees Open House", "Date": at(40, 17, 30), "Ends": "7:00 PM",
         "Partner": "Active Run Club", "Kind": "Open house", "Location": "Clinic studio"},
        {"Event ID": "E-0002", "Event": "Staff first-aid refresher", "Date": at(58, 12), "Kind": "Talk",
         "Location": "Clinic"},
    ]
    return {"partners": partners, "referrals": referrals, "events": events}


def staff_actions(staff: Any) -> dict[int, Callable[[], None]]:
    """What staff change by hand, on which day, before the jobs run."""
    return {
        1: lambda: staff.add("Referrals", Referral_ID="R-0006", Direction="In", Partner="Active Run Club",
                             Patient_first_name="Sam", Consent="No", Referred_on=d(1).isoformat()),
        3: lambda: staff.edit("Partners", "P-0002", Stage="Meeting", Meeting_date=f"{d(10).isoformat()} 10:00"),
        5: lambda: staff.edit("Referrals", "R-0006", First_visit=d(5).isoformat()),
        9: lambda: staff.edit("Referrals", "R-0004", Consent="Yes", Consent_expires=d(200).isoformat()),
        12: lambda: (staff.edit("Partners", "P-0002", Stage="Agreement"),
                     staff.add("Referrals", Referral_ID="R-0005", Direction="In", Partner="P-0004",
                               Patient_first_name="Quinn", Patient_last_name="Doe", Consent="Yes",
                               Consent_expires=d(200).isoformat(),
                               Goal="Shoulder mobility", Referred_on=d(12).isoformat())),
        15: lambda: staff.edit("Referrals", "R-0005", First_visit=d(15).isoformat()),
        18: lambda: staff.add("Opt-outs", Email="cold@gym.example", Date=d(18).isoformat(), Reason="asked by phone"),
        20: lambda: staff.edit("Referrals", "R-0003", Consent="Revoked"),
        30: lambda: staff.edit("Referrals", "R-0005", Discharge_date=d(30).isoformat(), Visits=6),
    }


STAFF = "frontdesk@riverside-pt.example"
EXPECTED = sorted([
    (0, "outreach_intro", "cold@gym.example"),
    (0, "outreach_warm_intro", "hello@warmyoga.example"),
    (1, "referral_thanks", "run@club.example"),
    (3, "meeting_confirmation", "hello@warmyoga.example"),
    (7, "outreach_follow_up_1", "cold@gym.example"),
    (8, "discharge_partner", "run@club.example"),
    (8, "discharge_patient", "jordan@mail.example"),
    (9, "discharge_partner", "run@club.example"),
    (14, "partnership_welcome", "hello@warmyoga.example"),  # set on Saturday: held to Monday
    (14, "referral_thanks", "run@club.example"),
    (15, "referral_update", "run@club.example"),
    (30, "referral_closed", "run@club.example"),
    (37, "event_reminder", "run@club.example"),
    (37, "event_reminder", STAFF),
    (56, "event_reminder", STAFF),  # due Sunday: held to Monday
])


Delivered = Callable[[], list[tuple[str, str]]]
"""Everything the mail server has so far, as (template, recipient) in arrival order."""


def deliver_sixty_days(settings: Settings, actions: Mapping[int, Callable[[], None]], delivered: Delivered,
                       jobs: Sequence[str]) -> list[tuple[int, str, str]]:
    """Run *jobs* at 09:00 and 09:05 on each of the 60 days (after staff's *actions* of that day), and
    return what each day delivered as (day, template, recipient); the 09:05 run must deliver nothing."""
    from automations.executor import run_jobs
    from automations.mail.ledger import Ledger
    from tests.conftest import world_for

    ledger = Ledger.in_state_dir(settings.state_dir)
    got: list[tuple[int, str, str]] = []
    seen = 0
    for day in range(60):
        if day in actions:
            actions[day]()
        for minute in (0, 5):  # every day's jobs run twice: the second run must add nothing
            now = datetime.combine(d(day), time(9, minute), settings.clinic.tz)
            run_jobs(world_for(settings, lambda: now, ledger=ledger), jobs)
            if minute == 0:
                after_first_run = len(delivered())
        arrived = delivered()
        assert len(arrived) == after_first_run, f"day {day}: the second run sent again"
        got += [(day, template, recipient) for template, recipient in arrived[seen:]]
        seen = len(arrived)
    return got
