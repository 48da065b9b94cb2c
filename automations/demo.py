"""Fictional sample rows for `partnerloop init --demo` and `partnerloop demo`.

Dates are relative to *today*, so every job has something due on the day the demo runs: a cold
and a warm prospect, follow-ups, a meeting, an agreement, discharges at each Share level and at
each consent status (missing, declined, Yes without an expiry, expired), a Goal `check` warns
about, inbound referrals at each step, an event, and a year of history for the Dashboard and the
quarterly scorecards (which go on any weekday of a quarter until sent; one Active partner has
Scorecard = No). Every name and address is invented; addresses use the reserved .example domain.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from automations.config import Settings
from automations.errors import PartnerloopError
from automations.jobs.discharge import DECLINED

# The demo's Owners, from the [[staff]] of the shipped config/settings.toml. Lotus Flow Yoga and Core
# Pilates Loft have none, so their letters are signed by the partnerships team.
NADIA, OMAR, ALEX = "Nadia Brooks", "Omar Haddad", "Alex Moreno"


def demo_rows(today: date) -> dict[str, list[dict[str, Any]]]:
    """Sample rows by tab key; column names as in SPEC §1."""

    def ago(days: int) -> date:
        return today - timedelta(days=days)

    partners = [
        _partner("P-0001", "Northside Strength Studio", "Personal trainer", "Maya Okafor", "maya@northside-strength.example",
                 "Prospect", why="Maya coaches post-rehab strength, the step after our discharge plans", owner=NADIA),
        _partner("P-0002", "Lotus Flow Yoga", "Yoga/Pilates studio", "Priya Raman", "priya@lotusflow.example",
                 "Prospect", introduced_by="Dr. Alan Reyes",
                 why="gentle mobility classes for patients finishing back-pain care"),
        _partner("P-0003", "Harbor Massage Collective", "Massage therapist", "Tom Becker", "tom@harbor-massage.example",
                 "Contacted", why="recovery massage that complements manual therapy", owner=NADIA, step=1, last=ago(8),
                 next_=ago(1), since=ago(8)),
        _partner("P-0004", "Summit Fitness Center", "Fitness center", "Grace Liu", "grace@summitfitness.example",
                 "Contacted", why="supervised gym access for patients who need a next step", owner=ALEX, step=2, last=ago(15),
                 next_=ago(1), since=ago(22)),
        _partner("P-0005", "Green Plate Nutrition", "Dietitian", "Sam Ortiz", "sam@greenplate.example", "Meeting",
                 why="nutrition support for patients recovering from surgery", owner=OMAR,
                 meeting=datetime.combine(_weekday(today + timedelta(days=6)), time(10)),
                 step=1, last=ago(20), since=ago(3)),
        _partner("P-0006", "Core Pilates Loft", "Yoga/Pilates studio", "Ines Duarte", "ines@corepilates.example",
                 "Agreement", why="core stability classes led by rehab-trained instructors",
                 perk="a free intro class",
                 taking="Book the intro class at corepilates.example/intro with code RIVERSIDE", since=ago(2)),
        _partner("P-0007", "Riverbend Running Club", "Personal trainer", "Leo Martins", "coach@riverbend-run.example",
                 "Active", why="return-to-run coaching for patients we discharge after knee and ankle care", owner=OMAR,
                 perk="two free group runs and a gait chat", taking="Coach Leo phones within 2 days to book a first group run",
                 sending="Leo emails us the runner's first name and asks them to call us to book",
                 since=ago(300), logo="https://riverbend-run.example/logo.png"),
        _partner("P-0008", "Iron & Oak Gym", "Fitness center", "Dana Whitfield", "dana@ironoak.example", "Active",
                 why="a welcoming gym floor for older adults", owner=ALEX, perk="a free month of membership",
                 taking="Call the front desk at (217) 555-0108 to book an orientation with a senior coach",
                 since=ago(250)),
        _partner("P-0009", "Still Water Massage", "Massage therapist", "Ken Adeyemi", "ken@stillwater.example",
                 "Active", why="deep-tissue work for chronic neck pain", owner=NADIA, perk="20% off the first session",
                 taking="Book online at stillwater.example/book with code RIVERSIDE", since=ago(200), scorecard="No"),
        _partner("P-0010", "Blue Line Boxing", "Personal trainer", "Ray Cole", "ray@bluelineboxing.example", "Paused",
                 why="conditioning classes for younger athletes", owner=NADIA, since=ago(120), do_not_email="Yes"),
    ]
    later = today + timedelta(days=180)
    referrals = [
        # Due today: discharge with consent to an Active partner who calls the patient: name, contact and goal.
        _referral("R-0001", "Out", "Riverbend Running Club", "Jordan", "Blake", "jordan.blake@mail.example",
                  referred_on=ago(1), consent="Yes", expires=later, share="Name, contact and goal",
                  goal="Back to running 5k", discharge=ago(1)),
        # Waiting for consent (Consent blank): nothing is sent.
        _referral("R-0002", "Out", "Iron & Oak Gym", "Morgan", "Hale", "morgan.hale@mail.example", referred_on=ago(2),
                  consent="", goal="Climb stairs after knee surgery", discharge=ago(2)),  # check warns: clinical
        # Inbound: new (thanks), first visit (update), discharged (loop closed).
        _referral("R-0003", "In", "Still Water Massage", "Casey", "Nguyen", "", referred_on=ago(1), consent="Yes",
                  expires=later, goal="Shoulder mobility"),
        _referral("R-0004", "In", "Riverbend Running Club", "Avery", "Stone", "", referred_on=ago(10), consent="Yes",
                  expires=later, goal="Knee strength", first_visit=ago(2), thanks=ago(9)),
        _referral("R-0005", "In", "Iron & Oak Gym", "Riley", "Park", "", referred_on=ago(60), consent="Yes",
                  expires=later, goal="Low back pain", first_visit=ago(52), discharge=ago(1), thanks=ago(59), update=ago(51), visits=8),
        # Due today, Share blank (first name only): the patient books online with the partner's code.
        _referral("R-0006", "Out", "Still Water Massage", "Taylor", "Reed", "taylor.reed@mail.example",
                  referred_on=ago(3), consent="Yes", expires=later, goal="Turn my head when driving", discharge=ago(1)),
        # Due today, Share = Name and contact: the gym's front desk may call.
        _referral("R-0007", "Out", "Iron & Oak Gym", "Robin", "Diaz", "robin.diaz@mail.example", referred_on=ago(4),
                  consent="Yes", expires=later, share="Name and contact", goal="Lift my grandchildren",
                  discharge=ago(1)),
        # Declined (Consent = No): nothing is shared, nobody is chased.
        _referral("R-0008", "Out", "Riverbend Running Club", "Jamie", "Fox", "jamie.fox@mail.example",
                  referred_on=ago(5), consent="No", goal="Run a 10k", discharge=ago(1)),
        # Consent = Yes but no Consent expires: nothing is sent until the expiry is added.
        _referral("R-0009", "Out", "Still Water Massage", "Kai", "Kim", "kai.kim@mail.example", referred_on=ago(2),
                  consent="Yes", goal="Sleep through the night", discharge=ago(1)),
        # Consent expired before the discharge: renew it to send.
        _referral("R-0010", "Out", "Iron & Oak Gym", "Drew", "Lane", "drew.lane@mail.example", referred_on=ago(200),
                  consent="Yes", expires=ago(10), goal="Garden again", discharge=ago(1)),
    ]
    # A year of settled history for the Dashboard (every email already sent).
    history_partners = ("Riverbend Running Club", "Iron & Oak Gym", "Still Water Massage")
    number = 11
    for month_back in range(1, 12):
        for k in range(1 + month_back % 3):
            partner = history_partners[(month_back + k) % 3]
            when = ago(month_back * 30 + k * 3)
            direction = "Out" if (month_back + k) % 2 else "In"
            first = when + timedelta(days=5 + k) if (direction == "Out" or month_back % 4) else None
            referrals.append(_referral(
                f"R-{number:04d}", direction, partner, f"Sample{number}", "Patient", "", referred_on=when,
                consent="Yes" if (month_back + k) % 5 else "No", goal="Keep moving", first_visit=first,
                expires=when + timedelta(days=365) if (month_back + k) % 5 else None,
                discharge=when + timedelta(days=40) if direction == "In" and first else (when if direction == "Out" else None),
                visits=6 if first else None, settled=when + timedelta(days=1),
            ))
            number += 1
    events = [
        {"Event ID": "E-0001", "Event": "Healthy Knees Open House",
         "Date": datetime.combine(today + timedelta(days=3), time(17, 30)), "Ends": "7:00 PM",
         "Partner": "Riverbend Running Club", "Kind": "Open house", "Location": "Riverside PT, studio room"},
        {"Event ID": "E-0002", "Event": "Posture screening day",
         "Date": datetime.combine(ago(40), time(9)), "Partner": "Iron & Oak Gym",
         "Kind": "Screening", "Location": "Iron & Oak Gym", "Attendees": 24, "New patients": 3,
         "Reminder sent": ago(43)},
        {"Event ID": "E-0003", "Event": "Desk workers' back class",
         "Date": datetime.combine(ago(100), time(12, 15)), "Ends": "1:00 PM", "Partner": "Core Pilates Loft",
         "Kind": "Class", "Location": "Core Pilates Loft", "Attendees": 15, "New patients": 2,
         "Reminder sent": ago(103)},
    ]
    optouts = [{"Email": "no-thanks@quietgym.example", "Date": ago(30), "Reason": "Asked not to be contacted"}]
    return {"partners": partners, "referrals": referrals, "events": events, "optouts": optouts}


def _weekday(day: date) -> date:
    """*day*, or the Monday after it when it falls on a weekend (the meeting is on a working day)."""
    return day + timedelta(days=(7 - day.weekday()) % 7) if day.weekday() >= 5 else day


def _partner(pid: str, business: str, kind: str, contact: str, email: str, stage: str, *, why: str,
             introduced_by: str = "", meeting: datetime | None = None, perk: str = "", taking: str = "",
             sending: str = "",
             step: int = 0, last: date | None = None, next_: date | None = None, since: date | None = None,
             logo: str = "", do_not_email: str = "", scorecard: str = "", owner: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {
        "Partner ID": pid, "Business": business, "Kind": kind, "Contact name": contact, "Email": email,
        "Phone": "(217) 555-01" + pid[-2:], "Website": "https://" + email.split("@")[1],
        "Address": "Springfield, IL", "Introduced by": introduced_by, "Why partner": why, "Stage": stage,
        "Meeting date": meeting, "Perk": perk, "Taking our patients": taking, "Sending us clients": sending,
        "Logo URL": logo, "Do not email": do_not_email, "Scorecard": scorecard, "Owner": owner,
    }
    if step:
        row.update({"Outreach step": step, "Last emailed": last, "Next follow-up": next_})
    if since:
        row["Stage since"] = since
    return {k: v for k, v in row.items() if v not in ("", None)}


def _referral(rid: str, direction: str, partner: str, first: str, last: str, email: str, *, referred_on: date,
              consent: str, goal: str, expires: date | None = None, share: str = "", discharge: date | None = None,
              first_visit: date | None = None, thanks: date | None = None, update: date | None = None,
              visits: int | None = None, settled: date | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "Referral ID": rid, "Direction": direction, "Partner": partner, "Patient first name": first,
        "Patient last name": last, "Patient email": email, "Referred on": referred_on, "Consent": consent,
        "Consent expires": expires, "Share": share, "Goal": goal, "Discharge date": discharge, "First visit": first_visit,
        "Visits": visits, "Thanks sent": thanks, "Update sent": update,
    }
    if settled:  # history: mark every step done so no job sends for it
        if direction == "Out":
            row["Partner emailed"] = settled if consent == "Yes" else None
            row["Automation status"] = "Demo history" if consent == "Yes" else DECLINED
        else:
            row.update({"Thanks sent": settled, "Update sent": first_visit, "Loop closed": discharge})
            row["Automation status"] = "Demo history"
    return {k: v for k, v in row.items() if v not in ("", None)}


def run_demo(base: Settings, directory: Path, now: datetime | None = None) -> tuple[Settings, Any, datetime]:
    """Build a fresh demo workbook in *directory*, run every job once into an outbox there.

    Acts as at the next moment the send window is open (or *now*), so the demo always sends.
    """
    from automations.check import init_sheet
    from automations.executor import World, run_jobs
    from automations.jobs import JOBS
    from automations.mail.ledger import Ledger
    from automations.sheets import open_backend

    directory = directory.resolve()
    settings = replace(
        base,
        sheet=replace(base.sheet, backend="xlsx", path=directory / "partnerloop-demo.xlsx", tabs={}),
        email=replace(base.email, transport="outbox", outbox_dir=directory / "outbox"),
        state_dir=directory / "state",
    )
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise PartnerloopError(f"{directory} already holds something; the demo writes only into a new or "
                               "empty folder and never touches what is there: name another with --dir")
    tz = settings.clinic.tz
    moment = now or settings.email.send_window.next_open(datetime.now(tz))
    backend = open_backend(settings)
    init_sheet(backend, settings, demo_rows(moment.date()))
    ledger = Ledger.in_state_dir(settings.state_dir)
    try:
        world = World(settings=settings, backend=backend, ledger=ledger, clock=lambda: moment)
        report = run_jobs(world, [job for job in JOBS if job != "replies"])  # the demo has no mailbox
    finally:
        ledger.close()
    return settings, report, moment
