"""The sheet the 120-day simulation starts from, what staff change on which day, and what must arrive.

Day 0 (`DAY0`, 2026-11-02) is a Monday in Q4 2026; day 60 is 2027-01-01, a Friday and the first weekday
of Q1 2027; day 119 is 2027-03-01. `d(n)` is day n. tests/test_simulation.py runs every sending job, the
owner's digest (each Monday) and the dashboard over these rows at 09:00 and 09:05 on each day, on both
backends.

The story, partner by partner (the clinic's send window is Mon-Fri 08:30-17:30):

- P-0001 Cold Gym, a cold Prospect: intro on day 0, follow-up 1 on day 7, follow-up 2 on day 21, one thread.
- P-0002 Warm Yoga, a warm Prospect: intro on day 0; staff set Meeting on day 3 (confirmation), move the
  meeting on day 4 (the invite's update), set Agreement on Saturday day 12 (welcome on Monday), and
  Active on Saturday day 33: Q4's scorecard goes on Monday, Q1's on day 60.
- P-0003 Quiet Studio, Active with Scorecard = No: never emailed.
- P-0004 Active Run Club, Active: three discharged patients, one at each Share level; a Q4 open house
  that staff move after its reminders went; scorecards on day 0 and day 60.
- P-0005 Paused Gym, Paused: never emailed.
- P-0006 Harbor Pilates, Active (Scorecard = Yes): a client it sent us (thanks, update, loop closed); a
  patient discharged with Consent = Yes but no Consent expires (held until staff add it); a Q1 workshop
  whose Date staff clear after its reminders went (cancelled); scorecards on day 0 and day 60.
- P-0007 Lakeside Boxing, Contacted by staff: staff set Meeting on day 16, then Declined on day 18 before
  the meeting (cancellation), then book it again on day 45 for day 50 (a new confirmation); its outcome
  is never set, so the To do list asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from automations.config import Settings

DAY0 = date(2026, 11, 2)  # a Monday, mid Q4 2026
DAYS = 120
Q1_START = 60  # 2027-01-01, a Friday: the first weekday of Q1 2027
JOBS = ["outreach", "discharge", "referrals_in", "events", "scorecard", "digest", "dashboard"]
STAFF = "frontdesk@riverside-pt.example"
OWNER = "owner@riverside-pt.example"

RUN_CLUB = "run@club.example"
HARBOR = "hello@harborpilates.example"
WARM = "hello@warmyoga.example"
COLD = "cold@gym.example"
LAKESIDE = "ray@lakesideboxing.example"
RUN_CLUB_PROCEDURE = "Book a free intro run at club.example/start; Coach Leo calls within 2 days"
RUN_CLUB_PERK = "20% off the first month with code RIVERSIDE20"
HARBOR_PROCEDURE = "Call the studio at 555-0166 and ask for a first mat class"


def d(n: int) -> date:
    return DAY0 + timedelta(days=n)


def at(n: int, hour: int, minute: int = 0) -> datetime:
    """Day n at a time of day, on the clinic's wall clock (as a date-time cell holds it)."""
    return datetime.combine(d(n), time(hour, minute))


def typed(n: int, hour: int, minute: int = 0) -> str:
    """Day n at a time of day as staff type it into a cell: 2026-11-12 10:00."""
    return f"{d(n).isoformat()} {hour:02d}:{minute:02d}"


PATIENTS = {
    # Referral ID -> (first name, last name, email, goal); the In referral's client is R-0005.
    "R-0001": ("Jordan", "Blakemore", "jordan.b@mail.example", "Back to running a 5k"),
    "R-0002": ("Riley", "Nakamura", "riley.n@mail.example", "Hike Angel Ridge again"),
    "R-0003": ("Avery", "Okonjo", "avery.o@mail.example", "Swim a mile without stopping"),
    "R-0004": ("Morgan", "Fitzwilliam", "morgan.f@mail.example", "Garden all morning again"),
    "R-0005": ("Quinn", "Delacroix", "", "Lift the grandchildren"),
}
SHARE = {"R-0001": "First name", "R-0002": "Name and contact", "R-0003": "Name, contact and goal"}


def _out(rid: str, partner: str, discharge: int, **cells: Any) -> dict[str, Any]:
    first, last, email, goal = PATIENTS[rid]
    return {"Referral ID": rid, "Direction": "Out", "Partner": partner, "Patient first name": first,
            "Patient last name": last, "Patient email": email, "Consent": "Yes", "Consent expires": d(300),
            "Share": SHARE.get(rid, ""), "Goal": goal, "Discharge date": d(discharge), **cells}


def day0_rows() -> dict[str, list[dict[str, Any]]]:
    """The Partners, Referrals and Events rows on day 0, by tab key (for `seed_sheet`)."""
    partners = [
        {"Partner ID": "P-0001", "Business": "Cold Gym", "Contact name": "Casey Cole", "Email": COLD,
         "Stage": "Prospect", "Why partner": "strength after rehab", "Phone": "555-0101"},
        {"Partner ID": "P-0002", "Business": "Warm Yoga", "Contact name": "Wren Hale", "Email": WARM,
         "Stage": "Prospect", "Introduced by": "Dr. Reyes", "Why partner": "gentle mobility"},
        {"Partner ID": "P-0003", "Business": "Quiet Studio", "Contact name": "Ivy Marsh", "Email": "quiet@studio.example",
         "Stage": "Active", "Scorecard": "No"},
        {"Partner ID": "P-0004", "Business": "Active Run Club", "Contact name": "Leo Martins", "Email": RUN_CLUB,
         "Stage": "Active", "Perk": RUN_CLUB_PERK, "Taking our patients": RUN_CLUB_PROCEDURE},
        {"Partner ID": "P-0005", "Business": "Paused Gym", "Email": "paused@gym.example", "Stage": "Paused"},
        {"Partner ID": "P-0006", "Business": "Harbor Pilates", "Contact name": "Nina Sol", "Email": HARBOR,
         "Stage": "Active", "Scorecard": "Yes", "Taking our patients": HARBOR_PROCEDURE, "Phone": "555-0166"},
        {"Partner ID": "P-0007", "Business": "Lakeside Boxing", "Contact name": "Ray Lind", "Email": LAKESIDE,
         "Stage": "Contacted"},
    ]
    referrals = [
        _out("R-0001", "Active Run Club", 8),
        _out("R-0002", "Active Run Club", 9),
        _out("R-0003", "P-0004", 10),
        _out("R-0004", "Harbor Pilates", 15, **{"Consent expires": "", "Share": "Name and contact"}),
    ]
    events = [
        {"Event ID": "E-0001", "Event": "Healthy Knees Open House", "Date": at(40, 17, 30), "Ends": "7:00 PM",
         "Partner": "Active Run Club", "Kind": "Open house", "Location": "Clinic studio"},
        {"Event ID": "E-0002", "Event": "Staff first-aid refresher", "Date": at(58, 12), "Kind": "Talk",
         "Location": "Clinic"},
        {"Event ID": "E-0003", "Event": "Spring mobility workshop", "Date": at(95, 18), "Partner": "Harbor Pilates",
         "Kind": "Class", "Location": "Harbor Pilates studio"},
    ]
    return {"partners": partners, "referrals": referrals, "events": events}


MEETING = {"P-0002": (at(10, 10), at(11, 14)), "P-0007": (at(23, 15), at(50, 11))}
"""The meetings staff book: the first time, and the time they move it to (P-0007: booked again after the
cancellation)."""


def staff_actions(staff: Any) -> dict[int, Callable[[], None]]:
    """What staff change by hand, on which day, before the jobs run."""
    quinn, delacroix, _, goal = PATIENTS["R-0005"]
    return {
        1: lambda: staff.add("Referrals", Referral_ID="R-0005", Direction="In", Partner="Harbor Pilates",
                             Patient_first_name=quinn, Patient_last_name=delacroix, Consent="Yes",
                             Consent_expires=d(300).isoformat(), Goal=goal, Referred_on=d(1).isoformat()),
        3: lambda: staff.edit("Partners", "P-0002", Stage="Meeting", Meeting_date=typed(10, 10)),
        4: lambda: staff.edit("Partners", "P-0002", Meeting_date=typed(11, 14)),  # the meeting moves
        5: lambda: staff.edit("Referrals", "R-0005", First_visit=d(5).isoformat()),  # a Saturday
        12: lambda: staff.edit("Partners", "P-0002", Stage="Agreement"),  # a Saturday
        16: lambda: staff.edit("Partners", "P-0007", Stage="Meeting", Meeting_date=typed(23, 15)),
        18: lambda: staff.edit("Partners", "P-0007", Stage="Declined"),  # before the meeting
        20: lambda: staff.edit("Referrals", "R-0001", First_visit=d(17).isoformat()),  # the club told us
        22: lambda: staff.edit("Referrals", "R-0004", Consent_expires=d(300).isoformat()),
        30: lambda: staff.edit("Referrals", "R-0005", Discharge_date=d(30).isoformat(), Visits=6),
        33: lambda: staff.edit("Partners", "P-0002", Stage="Active"),  # a Saturday
        38: lambda: staff.edit("Events", "E-0001", Date=typed(44, 17, 30)),  # after its reminders went
        45: lambda: staff.edit("Partners", "P-0007", Stage="Meeting", Meeting_date=typed(50, 11)),  # booked again
        93: lambda: staff.edit("Events", "E-0003", Date=""),  # cancelled after its reminders went
    }


EXPECTED = sorted([
    (0, "outreach_intro", COLD),
    (0, "outreach_warm_intro", WARM),
    (0, "partner_scorecard", RUN_CLUB),  # Q4 2026 is under way and its scorecard has not gone: it goes now
    (0, "partner_scorecard", HARBOR),  # (Quiet Studio: Scorecard No; Paused Gym and the prospects: not Active)
    (1, "referral_thanks", HARBOR),
    (3, "meeting_confirmation", WARM),
    (4, "meeting_confirmation", WARM),  # the update: same UID, SEQUENCE 1
    (7, "outreach_follow_up_1", COLD),
    (7, "referral_update", HARBOR),  # First visit typed on Saturday: held to Monday
    (8, "discharge_partner", RUN_CLUB),
    (8, "discharge_patient", "jordan.b@mail.example"),
    (9, "discharge_partner", RUN_CLUB),
    (9, "discharge_patient", "riley.n@mail.example"),
    (10, "discharge_partner", RUN_CLUB),
    (10, "discharge_patient", "avery.o@mail.example"),
    (14, "partnership_welcome", WARM),  # set on Saturday: held to Monday
    (16, "meeting_confirmation", LAKESIDE),
    (18, "meeting_cancellation", LAKESIDE),
    (45, "meeting_confirmation", LAKESIDE),  # booked again: the same UID, SEQUENCE 2
    (21, "outreach_follow_up_2", COLD),
    (22, "discharge_partner", HARBOR),  # discharged day 15 without Consent expires: goes once staff add it
    (22, "discharge_patient", "morgan.f@mail.example"),
    (30, "referral_closed", HARBOR),
    (35, "partner_scorecard", WARM),  # Active from Saturday: Q4's scorecard on the next weekday
    (37, "event_reminder", RUN_CLUB),
    (37, "event_reminder", STAFF),
    (38, "event_reminder", RUN_CLUB),  # E-0001 moved: the invite's update to both copies
    (38, "event_reminder", STAFF),
    (56, "event_reminder", STAFF),  # E-0002 due Sunday: held to Monday
    (Q1_START, "partner_scorecard", RUN_CLUB),
    (Q1_START, "partner_scorecard", HARBOR),
    (Q1_START, "partner_scorecard", WARM),
    (92, "event_reminder", HARBOR),
    (92, "event_reminder", STAFF),
    (93, "event_reminder", HARBOR),  # E-0003's Date cleared: the cancellation to both copies
    (93, "event_reminder", STAFF),
    *((monday, "owner_digest", OWNER) for monday in range(0, DAYS, 7)),  # the owner's week, each Monday
])

Delivered = Callable[[], list[tuple[str, str]]]
"""Everything the mail server has so far, as (template, recipient) in arrival order."""


def deliver_days(settings: Settings, actions: Mapping[int, Callable[[], None]], delivered: Delivered,
                 jobs: Sequence[str], days: int = DAYS,
                 checks: Mapping[tuple[int, int], Callable[[], None]] | None = None) -> list[tuple[int, str, str]]:
    """Run *jobs* at 09:00 and 09:05 on each of *days* days (after staff's *actions* of that day; the
    *checks* keyed (day, minute) after that run), and return what each day delivered as (day, template,
    recipient); the 09:05 run must deliver nothing."""
    from automations.executor import run_jobs
    from automations.mail.ledger import Ledger
    from tests.conftest import world_for

    ledger = Ledger.in_state_dir(settings.state_dir)
    got: list[tuple[int, str, str]] = []
    seen = 0
    try:
        for day in range(days):
            if day in actions:
                actions[day]()
            after_first_run = seen
            for minute in (0, 5):  # every day's jobs run twice: the second run must add nothing
                now = datetime.combine(d(day), time(9, minute), settings.clinic.tz)
                run_jobs(world_for(settings, lambda: now, ledger=ledger), jobs)
                if minute == 0:
                    after_first_run = len(delivered())
                if checks and (day, minute) in checks:
                    checks[(day, minute)]()
            arrived = delivered()
            assert len(arrived) == after_first_run, f"day {day}: the second run sent again: {arrived[after_first_run:]}"
            got += [(day, template, recipient) for template, recipient in arrived[seen:]]
            seen = len(arrived)
    finally:
        ledger.close()
    return got
