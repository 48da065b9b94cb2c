"""120 simulated days over a quarter start, on both backends: every sending job and the dashboard, twice a day.

The acceptance test of the partnership features: scorecards once a quarter, meeting and event invites
(update, cancellation), follow-ups in one thread, discharge emails that hold the partner's procedure,
the perk and exactly what `Share` allows, and nothing at all for a consent without its expiry until
staff add it. The rows and the story are in tests/support/quarter_days.py; everything is checked as it
arrived at a real SMTP server on 127.0.0.1 and as the sheet holds it afterwards.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from automations import cells
from automations.config import Settings
from automations.core import JOB_NAMES
from automations.jobs.discharge import NO_EXPIRY
from automations.model import Book, read_book
from automations.sheets import open_backend
from tests.conftest import TZ, Staff, google_settings, make_settings, seed_sheet
from tests.support.invites import Received, received
from tests.support.quarter_days import (
    COLD,
    DAY0,
    DAYS,
    EXPECTED,
    HARBOR,
    HARBOR_PROCEDURE,
    JOBS,
    LAKESIDE,
    MEETING,
    OWNER,
    PATIENTS,
    Q1_START,
    RUN_CLUB,
    RUN_CLUB_PERK,
    RUN_CLUB_PROCEDURE,
    STAFF,
    WARM,
    at,
    d,
    day0_rows,
    deliver_days,
    staff_actions,
)
from tests.support.smtp_server import SmtpServer, email_section, parse_message

LAST_RUN = at(119, 9, 5)
CLINIC_TZ = ZoneInfo(TZ)


def sheet_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest, smtp: SmtpServer) -> Settings:
    email = email_section(smtp)
    if backend == "google":
        return google_settings(tmp_path, request.getfixturevalue("emulator"), email=email)
    return make_settings(tmp_path, email=email)


class Mail:
    """What arrived at the SMTP server, taken apart as the recipient's mail client would."""

    def __init__(self, smtp: SmtpServer, settings: Settings) -> None:
        self.smtp = smtp
        self.tz = settings.clinic.tz

    def arrivals(self) -> list[tuple[str, str]]:
        return [(str(m.message["X-Partnerloop-Template"]), r) for m in self.smtp.messages for r in m.recipients]

    def to(self, recipient: str, template: str) -> list[tuple[int, EmailMessage, bytes]]:
        """The messages of *template* to *recipient*, in arrival order, each with the day it was sent."""
        found = []
        for m in self.smtp.messages:
            if recipient in m.recipients and str(m.message["X-Partnerloop-Template"]) == template:
                sent = parsedate_to_datetime(str(m.message["Date"])).astimezone(self.tz).date()
                found.append(((sent - DAY0).days, parse_message(m.raw), m.raw))
        return found


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text part and the HTML part (entities decoded), whitespace squeezed."""
    text, page = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and page is not None
    return " ".join(text.get_content().split()), " ".join(html.unescape(page.get_content()).split())


def readable(message: EmailMessage) -> str:
    """Both parts together: all a reader may see."""
    return "\n".join(parts(message))


@pytest.mark.parametrize("backend", ["xlsx", "google"])
def test_a_hundred_and_twenty_days_over_a_quarter_start_deliver_exactly_the_expected_emails(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, smtp: SmtpServer,
    staff_for: Callable[[Settings], Staff], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = sheet_settings(backend, tmp_path, request, smtp)
    seed_sheet(settings, **day0_rows())
    staff = staff_for(settings)
    mail = Mail(smtp, settings)

    def sheet() -> Book:
        return read_book(open_backend(settings), settings)

    checked: list[tuple[int, int]] = []

    def day_21_at_nine() -> None:
        """Discharged on day 15 with Consent expires still empty: the row says why, the To do list asks for the
        expiry; and the Dashboard, built after the run's sends, counts the follow-up 2 this run sent."""
        assert {r.id: r for r in sheet().referrals}["R-0004"].status == NO_EXPIRY
        grid = staff.grid("Dashboard")
        todo = {row[1]: row for row in dashboard_block(grid, "To do")}
        assert todo["Referrals R-0004"][2] == "Harbor Pilates" and "Consent expires" in todo["Referrals R-0004"][4]
        assert todo["Partners P-0001"][4].startswith("No more emails: call Casey Cole at 555-0101")
        assert job_health(grid)["outreach"] == (at(21, 9), "ok", 1)
        checked.append((21, 0))

    def scorecards_sent(day: int, minute: int, sent: int) -> Callable[[], None]:
        def check() -> None:
            assert job_health(staff.grid("Dashboard"))["scorecard"] == (at(day, 9, minute), "ok", sent)
            checked.append((day, minute))
        return check

    checks = {(21, 0): day_21_at_nine, (0, 0): scorecards_sent(0, 0, 2), (Q1_START, 0): scorecards_sent(Q1_START, 0, 3),
              (Q1_START, 5): scorecards_sent(Q1_START, 5, 0)}
    got = deliver_days(settings, staff_actions(staff), mail.arrivals, JOBS, checks=checks)
    assert sorted(checked) == sorted(checks)
    assert sorted(got) == EXPECTED
    assert all(len(m.recipients) == 1 for m in smtp.messages)

    _scorecards(mail)
    _meeting_invites(mail)
    _event_invites(mail)
    _follow_ups_thread(mail)
    _discharge_shares_what_share_allows(mail)

    _owner_digest(mail)

    # Consent = Yes without Consent expires: nothing to partner or patient until staff add it on day 22.
    assert [(day, t) for day, t, to in got if to in (HARBOR, PATIENTS["R-0004"][2]) and t.startswith("discharge")] == [
        (22, "discharge_partner"), (22, "discharge_patient")]

    # The sheet as the run left it.
    book = sheet()
    partners = {p.id: p for p in book.partners}
    assert partners["P-0001"].status == "Follow-up 2 sent 2026-11-23; no more emails: call Casey Cole at 555-0101"
    assert partners["P-0002"].stage == "Active" and partners["P-0002"].stage_since == d(33)
    for pid in ("P-0002", "P-0004", "P-0006"):
        assert partners[pid].status == "Quarterly scorecard sent 2027-01-01: Q4 2026 against Q3 2026"
    assert partners["P-0003"].status == "" and partners["P-0003"].scorecard == "No"
    assert partners["P-0007"].stage == "Meeting" and partners["P-0007"].stage_since == d(45)
    assert partners["P-0007"].status == ("The meeting on 2026-12-22 has passed: set Stage (Agreement, Declined) "
                                         "or the next Meeting date")
    todo = {row[1]: row for row in dashboard_block(staff.grid("Dashboard"), "To do")}
    _, _, business, since, action = todo["Partners P-0007"][:5]
    assert (business, cells.parse_date(since, "Since"), action) == ("Lakeside Boxing", d(50), (
        "The meeting on 2026-12-22 has passed: set Stage (Agreement, Declined) or the next Meeting date"))
    referrals = {r.id: r for r in book.referrals}
    for rid, day in (("R-0001", 8), ("R-0002", 9), ("R-0003", 10), ("R-0004", 22)):
        assert referrals[rid].partner_emailed == d(day) and referrals[rid].patient_emailed == d(day)
        assert referrals[rid].status == f"Partner emailed {d(day)}; Patient emailed {d(day)}"
    assert (referrals["R-0005"].thanks_sent, referrals["R-0005"].update_sent, referrals["R-0005"].loop_closed) == (
        d(1), d(7), d(30))
    events = {e.id: e for e in book.events}
    assert {e: events[e].reminder_sent for e in events} == {"E-0001": d(37), "E-0002": d(56), "E-0003": d(92)}
    assert events["E-0001"].status == ("Partner update sent 2026-12-10: moved to 2026-12-16 17:30; "
                                       "Staff update sent 2026-12-10: moved to 2026-12-16 17:30")
    assert "Partner cancellation sent 2027-02-03 for 2027-02-05 18:00" in events["E-0003"].status

    grid = staff.grid("Dashboard")
    updated = next(row for row in grid if row and row[0] == "Updated")
    assert moment(updated[1]) == LAST_RUN
    health = {row[0]: row for row in dashboard_block(grid, "Job health")}
    assert list(health) == list(JOB_NAMES)
    for job in JOBS:
        last_run, finished = (moment(v) for v in health[job][1:3])
        assert (last_run, finished, health[job][3], health[job][4]) == (LAST_RUN, LAST_RUN, "ok", 0), job
    assert health["replies"][3] == "never run"

    # The Log: one row per email that arrived, a patient named by the row's ID, never by address.
    log = [row for row in staff.grid("Log")[1:] if any(row)]
    patient_of = {details[2]: f"patient of {rid}" for rid, details in PATIENTS.items() if details[2]}
    assert sorted((moment(row[0]).date(), row[2], row[3], row[6]) for row in log) == sorted(
        (d(day), template, patient_of.get(to, to), "sent") for day, template, to in EXPECTED)

    # Patient data: never in a subject, never in log output.
    patients = [value for details in PATIENTS.values() for value in details if value]
    for message in smtp.messages:
        subject = str(message.message["Subject"])
        assert not any(p in subject for p in patients), subject
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("partnerloop"))
    assert "sent discharge R-0004 discharge_patient" in ours  # logs name row IDs
    assert not [p for p in patients if p in ours]


def dashboard_block(grid: list[list[Any]], title: str) -> list[list[Any]]:
    """The rows of a Dashboard block (below its title and header), up to the first blank row."""
    start = next(i for i, row in enumerate(grid) if row and str(row[0]).startswith(title))
    width = len(grid[start + 1])
    rows = []
    for row in grid[start + 2:]:
        if all(v in ("", None) for v in row):
            break
        rows.append([*row, *[""] * (width - len(row))])  # the emulator trims a row's empty cells
    return rows


def moment(value: Any) -> datetime:
    """A date-time cell, from either backend (the emulator keeps serial numbers)."""
    parsed = cells.parse_moment(value, "")
    assert isinstance(parsed, datetime), value
    return parsed


def job_health(grid: list[list[Any]]) -> dict[str, tuple[datetime | None, str, int]]:
    """The Dashboard's Job health block: job -> (Last run, Result, Emails sent); a job never run has no Last run."""
    return {row[0]: (moment(row[1]) if row[1] != "" else None, row[3], row[4])
            for row in dashboard_block(grid, "Job health")}


def _scorecards(mail: Mail) -> None:
    """Once per Active partner (Scorecard blank or Yes) per quarter; Q4's from day 0, mid-quarter, since
    it had not gone; Q1's on its first weekday. Each reports the quarter before the one it is sent in."""
    sent = {to: [(day, str(m["Subject"])) for day, m, _ in mail.to(to, "partner_scorecard")]
            for to in (RUN_CLUB, HARBOR, WARM, "quiet@studio.example", "paused@gym.example", COLD, LAKESIDE)}
    q3 = "Our partnership in Q3 2026: the numbers, from Riverside Physical Therapy"
    q4 = "Our partnership in Q4 2026: the numbers, from Riverside Physical Therapy"
    assert sent == {RUN_CLUB: [(0, q3), (Q1_START, q4)], HARBOR: [(0, q3), (Q1_START, q4)],
                    WARM: [(35, q3), (Q1_START, q4)],  # Active from day 33, a Saturday
                    "quiet@studio.example": [], "paused@gym.example": [], COLD: [], LAKESIDE: []}
    [(_, club, _)] = [s for s in mail.to(RUN_CLUB, "partner_scorecard") if s[0] == Q1_START]
    text = readable(club)
    # Q4 2026 for the club: R-0001..R-0003 discharged to them, R-0001's first visit, the open house it moved to.
    for line in ("Patients we referred to you 3 0", "Our patients' first visits with you 1 0",
                 "Clients you referred to us 0 0", "Events we held together 1 0"):
        assert line in text, line
    [(_, harbor, _)] = [s for s in mail.to(HARBOR, "partner_scorecard") if s[0] == Q1_START]
    text = readable(harbor)
    for line in ("Patients we referred to you 1 0", "Clients you referred to us 1 0",
                 "Your clients' first visits with us 1 0", "Events we held together 0 0"):
        assert line in text, line
    for name in (v for details in PATIENTS.values() for v in details if v):
        assert name not in text  # counts only


def on_days(sent: list[tuple[int, EmailMessage, bytes]], *days: int) -> list[Received]:
    """The invites of *sent*, after checking they went on exactly *days*."""
    assert [day for day, _, _ in sent] == list(days)
    return [received(raw) for _, _, raw in sent]


def invite(r: Received) -> tuple[str, str, int, datetime]:
    """What a calendar makes of a received invite: (UID, METHOD, SEQUENCE, start on the clinic's wall clock)."""
    event: Any = r.event
    start = event["DTSTART"].dt.astimezone(CLINIC_TZ).replace(tzinfo=None)
    attached: Any = r.attachment.walk("VEVENT")[0]
    assert int(attached["SEQUENCE"]) == int(event["SEQUENCE"])  # invite.ics says the same
    return str(event["UID"]), r.method, int(event["SEQUENCE"]), start


def _meeting_invites(mail: Mail) -> None:
    """Warm Yoga: a confirmation, then one update when staff moved the date (same UID, SEQUENCE one higher).
    Lakeside Boxing: a confirmation, a cancellation when staff set Declined before the meeting, and a new
    confirmation when they book it again (the same UID, its SEQUENCE above the cancellation's)."""
    first, moved = MEETING["P-0002"]
    assert moved is not None
    confirmation, update = on_days(mail.to(WARM, "meeting_confirmation"), 3, 4)
    uid = "meeting-p-0002@riverside-pt.example"
    assert [invite(confirmation), invite(update)] == [(uid, "REQUEST", 0, first), (uid, "REQUEST", 1, moved)]
    assert "Friday, November 13" in update.text and "from Thursday, November 12" in update.text, update.text

    booked, again = MEETING["P-0007"]
    confirmation, rebooked = on_days(mail.to(LAKESIDE, "meeting_confirmation"), 16, 45)
    [cancellation] = on_days(mail.to(LAKESIDE, "meeting_cancellation"), 18)
    uid = "meeting-p-0007@riverside-pt.example"
    assert [invite(confirmation), invite(cancellation)] == [(uid, "REQUEST", 0, booked), (uid, "CANCEL", 1, booked)]
    assert str(cancellation.event["STATUS"]) == "CANCELLED"
    assert "cancelled" in cancellation.text and "Wednesday, November 25" in cancellation.text, cancellation.text
    assert invite(rebooked) == (uid, "REQUEST", 2, again)  # back on the calendar: SEQUENCE above the cancellation
    assert not rebooked.text.startswith("We've moved") and "Tuesday, December 22" in rebooked.text, rebooked.text


def _event_invites(mail: Mail) -> None:
    """E-0001 moved after its reminders: each copy's update (same UID, SEQUENCE 1). E-0003's Date cleared
    after its reminders: each copy's cancellation."""
    copies = {to: [(day, *invite(received(raw))) for day, _, raw in mail.to(to, "event_reminder")]
              for to in (RUN_CLUB, HARBOR, STAFF)}
    open_house, workshop = "event-e-0001@riverside-pt.example", "event-e-0003@riverside-pt.example"
    moved = [(37, open_house, "REQUEST", 0, at(40, 17, 30)), (38, open_house, "REQUEST", 1, at(44, 17, 30))]
    cancelled = [(92, workshop, "REQUEST", 0, at(95, 18)), (93, workshop, "CANCEL", 1, at(95, 18))]
    assert copies[RUN_CLUB] == moved and copies[HARBOR] == cancelled
    assert copies[STAFF] == [*moved, (56, "event-e-0002@riverside-pt.example", "REQUEST", 0, at(58, 12)), *cancelled]


def _follow_ups_thread(mail: Mail) -> None:
    """Follow-ups 1 and 2 answer the letters before them: one conversation in the partner's mailbox."""
    letters = [sent for t in ("outreach_intro", "outreach_follow_up_1", "outreach_follow_up_2")
               for sent in mail.to(COLD, t)]
    assert [day for day, _, _ in letters] == [0, 7, 21]
    intro, first, second = (m for _, m, _ in letters)
    ids = [str(m["Message-ID"]) for m in (intro, first, second)]
    assert len(set(ids)) == 3
    assert str(first["In-Reply-To"]) == ids[0] and str(first["References"]).split() == ids[:1]
    assert str(second["In-Reply-To"]) == ids[1] and str(second["References"]).split() == ids[:2]
    assert str(first["Subject"]) == str(second["Subject"]) == f"Re: {intro['Subject']}"
    assert not str(intro["Subject"]).startswith("Re:") and intro["In-Reply-To"] is None


def _owner_digest(mail: Mail) -> None:
    """The owner's Monday digest holds the To do list as the run left it (day 21: the follow-up 2 that run sent,
    the consent waiting for its expiry) and, all 120 days, no patient's name, email or goal."""
    digests = {day: readable(m) for day, m, _ in mail.to(OWNER, "owner_digest")}
    assert list(digests) == list(range(0, DAYS, 7))
    assert "Referrals R-0004 (Harbor Pilates): Consent is Yes but Consent expires is empty" in digests[21]
    assert "Partners P-0001 (Cold Gym): No more emails: call Casey Cole at 555-0101" in digests[21]
    assert "Referrals R-0004" not in digests[28]  # the introduction went on day 22
    for day, text in digests.items():
        assert not [v for details in PATIENTS.values() for v in details if v and v in text], day


def _discharge_shares_what_share_allows(mail: Mail) -> None:
    """Each partner email holds what its Share allows, and the partner's Taking our patients; each patient
    email holds the procedure and the perk with its code."""
    partner_mail = {day: readable(m) for day, m, _ in mail.to(RUN_CLUB, "discharge_partner")}
    partner_mail |= {day: readable(m) for day, m, _ in mail.to(HARBOR, "discharge_partner")}
    introductions = {day: parts(m) for to in (RUN_CLUB, HARBOR) for day, m, _ in mail.to(to, "discharge_partner")}
    for part in (0, 1):  # the text part and the HTML part, each on its own
        shown = {day: {"first": PATIENTS[rid][0] in text, "last": PATIENTS[rid][1] in text,
                       "email": PATIENTS[rid][2] in text, "goal": PATIENTS[rid][3] in text}
                 for rid, day in (("R-0001", 8), ("R-0002", 9), ("R-0003", 10), ("R-0004", 22))
                 for text in [introductions[day][part]]}
        assert shown == {
            8: {"first": True, "last": False, "email": False, "goal": False},  # First name
            9: {"first": True, "last": True, "email": True, "goal": False},  # Name and contact
            10: {"first": True, "last": True, "email": True, "goal": True},  # Name, contact and goal
            22: {"first": True, "last": True, "email": True, "goal": False},  # Name and contact
        }, ("text", "html")[part]
    for day in (8, 9, 10):
        assert RUN_CLUB_PROCEDURE in partner_mail[day] and "R-000" in partner_mail[day]
    assert HARBOR_PROCEDURE in partner_mail[22]
    for rid, day in (("R-0001", 8), ("R-0002", 9), ("R-0003", 10), ("R-0004", 22)):  # nobody else's details
        text = partner_mail[day]
        assert not [v for other, details in PATIENTS.items() if other != rid for v in details if v and v in text]

    for rid in ("R-0001", "R-0002", "R-0003"):
        [(_, patient, _)] = mail.to(PATIENTS[rid][2], "discharge_patient")
        text = readable(patient)
        assert RUN_CLUB_PROCEDURE in text and RUN_CLUB_PERK in text and "RIVERSIDE20" in text, rid
    [(_, patient, _)] = mail.to(PATIENTS["R-0004"][2], "discharge_patient")
    assert HARBOR_PROCEDURE in readable(patient)

