"""The discharge job: on discharge, introduce the patient to the partner and the partner to the patient.

Only Out referrals, only with Consent = Yes and a Consent expires not yet passed, only to a partner in
Agreement or Active. Decisions are read from a real xlsx sheet and checked on the plan and on the status
it writes; what Share allows is checked on what arrives at a loopback SMTP server.
"""

from __future__ import annotations

from datetime import datetime, time
from email.message import EmailMessage
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from automations.config import Settings
from automations.errors import SheetLayoutError
from automations.executor import run_jobs
from automations.jobs.plan import Plan
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import plan_for, world_for
from tests.support.sixty_days import d
from tests.support.smtp_server import SmtpServer, email_section

TZ = ZoneInfo("America/Chicago")
NOW = datetime.combine(d(10), time(9), TZ)
PROCEDURE = "Coach Leo phones within 2 days to book a first group run"
PERK = "two free group runs"
PARTNERS = [
    {"Partner ID": "P-0001", "Business": "Active Run Club", "Contact name": "Leo Martins", "Email": "run@club.example",
     "Stage": "Active", "Perk": PERK, "Taking our patients": PROCEDURE},
    {"Partner ID": "P-0002", "Business": "Prospect Gym", "Email": "gym@prospect.example", "Stage": "Prospect"},
]


def referral(**cells: Any) -> dict[str, Any]:
    """An Out referral to Active Run Club discharged on day 8 with consent until day 100; *cells* changed."""
    return {"Referral ID": "R-0001", "Direction": "Out", "Partner": "Active Run Club", "Patient first name": "Jordan",
            "Patient last name": "Blake", "Patient email": "jordan@mail.example", "Consent": "Yes",
            "Consent expires": d(100), "Goal": "Back to running 5k", "Discharge date": d(8), **cells}


def decide(workbook: Callable[..., Settings], **cells: Any) -> Plan:
    return plan_for(workbook(partners=PARTNERS, referrals=[referral(**cells)]), "discharge", NOW)


def status(plan: Plan) -> Any:
    return {w.row_id: w.values.get("Automation status") for w in plan.writes}.get("R-0001")


def test_on_discharge_with_consent_the_partner_and_the_patient_are_emailed(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook)
    assert [(e.step, e.template, e.recipient, e.to_email) for e in plan.emails] == [
        ("partner", "discharge_partner", "partner", "run@club.example"),
        ("patient", "discharge_patient", "patient", "jordan@mail.example")]
    assert [dict(e.on_sent) for e in plan.emails] == [{"Partner emailed": d(10)}, {"Patient emailed": d(10)}]
    assert [e.log_to for e in plan.emails] == ["run@club.example", "patient of R-0001"]  # no patient address logged


def test_without_a_patient_email_only_the_partner_is_emailed(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, **{"Patient email": ""})
    assert [e.step for e in plan.emails] == ["partner"]
    assert status(plan) == "No Patient email: the partner only"


def test_before_the_discharge_date_the_row_says_when(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, **{"Discharge date": d(12)})
    assert plan.emails == ()
    assert status(plan) == f"Introduction goes out on discharge, {d(12).isoformat()}"


def test_without_valid_consent_nobody_is_emailed_and_the_row_says_which_case(workbook: Callable[..., Settings]) -> None:
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "missing": ({"Consent": "", "Consent expires": ""},
                    "Waiting for consent: when the patient signs, set Consent to Yes and fill in Consent expires"),
        "declined": ({"Consent": "No", "Consent expires": ""},
                     "Not sent: the patient declined (Consent is No); nothing is shared and nobody is emailed"),
        "revoked": ({"Consent": "Revoked"},
                    "Not sent: consent revoked; nothing is shared with the partner and nobody is emailed"),
        "expired": ({"Consent expires": d(9)},
                    f"Not sent: consent expired {d(9).isoformat()}; renew it and update Consent expires to send"),
        "no expiry": ({"Consent expires": ""}, "Not sent: Consent is Yes but Consent expires is empty; add the "
                                               "expiry date from the signed authorization to send"),
    }
    for name, (cells, expected) in cases.items():
        plan = decide(workbook, **cells)
        assert plan.emails == (), name
        assert status(plan) == expected, name
    assert not status(decide(workbook, Consent="No")).startswith("Waiting")  # a patient who said no is not chased


def test_consent_that_expires_on_the_day_still_allows_the_introduction(workbook: Callable[..., Settings]) -> None:
    assert [e.step for e in decide(workbook, **{"Consent expires": d(10)}).emails] == ["partner", "patient"]


def test_before_discharge_a_consent_that_will_not_do_is_said_at_once(workbook: Callable[..., Settings]) -> None:
    no_expiry = decide(workbook, **{"Discharge date": d(12), "Consent expires": ""})
    assert status(no_expiry) == (f"Introduction goes out on discharge, {d(12).isoformat()}, once the consent allows "
                                 "it: add Consent expires from the signed authorization")
    declined = decide(workbook, **{"Discharge date": d(12), "Consent": "No", "Consent expires": ""})
    assert status(declined).startswith("Not sent: the patient declined")


def test_a_partner_not_yet_in_agreement_waits(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Partner="Prospect Gym")
    assert plan.emails == ()
    assert status(plan) == ("Waiting: Prospect Gym is at Stage Prospect; the introduction goes out once they are in "
                            "Agreement or Active")


def test_a_done_referral_is_left_alone(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, **{"Partner emailed": d(8), "Patient emailed": d(8)})
    assert plan.emails == () and plan.writes == ()


def test_in_referrals_are_not_this_jobs(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Direction="In")
    assert plan.emails == () and plan.writes == ()


def test_a_partner_whose_old_referral_procedure_still_holds_text_waits(
    workbook: Callable[..., Settings], staff_for: Callable[[Settings], Any],
) -> None:
    settings = workbook(partners=PARTNERS, referrals=[referral()])
    staff = staff_for(settings)
    grid = staff.grid("Partners")
    staff.replace("Partners", [[*grid[0], "Referral procedure"], *[[*row, "Leo calls them"] for row in grid[1:]]])
    plan = plan_for(settings, "discharge", NOW)
    assert plan.emails == ()
    assert status(plan) == ("Waiting: Active Run Club (P-0001) still has text in the old Referral procedure column on "
                            "Partners; move it into Taking our patients or Sending us clients (see that row's "
                            "Automation status)")


# -- what arrives: exactly what Share allows ----------------------------------------------------------------

def whole_text(message: EmailMessage) -> str:
    """Everything a recipient can read: the headers and every text part (plain and HTML), decoded, with
    runs of spaces and line breaks as one space (the text part is wrapped)."""
    parts = [str(value) for value in message.values()]
    parts += [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    return " ".join(" ".join(parts).split())


def deliver(workbook: Callable[..., Settings], smtp: SmtpServer, **cells: Any) -> dict[str, str]:
    """Run the discharge job once against the loopback server; what each recipient got, as whole text."""
    settings = workbook(partners=PARTNERS, referrals=[referral(**cells)], email=email_section(smtp))
    run_jobs(world_for(settings, lambda: NOW), ["discharge"])
    got: dict[str, str] = {}
    for message in smtp.messages:
        for recipient in message.recipients:
            got[recipient] = got.get(recipient, "") + whole_text(message.message)
    return got


SHARED = {  # Share -> which of (last name, patient email, goal) the partner may see
    "": (False, False, False),
    "First name": (False, False, False),
    "Name and contact": (True, True, False),
    "Name, contact and goal": (True, True, True),
}


@pytest.mark.parametrize("share", list(SHARED))
def test_the_partner_email_holds_exactly_what_share_allows(
    share: str, workbook: Callable[..., Settings], smtp: SmtpServer,
) -> None:
    got = deliver(workbook, smtp, Share=share)
    partner = got["run@club.example"]
    last_name, email, goal = SHARED[share]
    assert "Jordan" in partner
    assert ("Blake" in partner) is last_name
    assert ("jordan@mail.example" in partner) is email
    assert ("Back to running" in partner) is goal
    assert PROCEDURE in partner and PERK in partner  # what the clinic agreed the partner does
    assert "R-0001" in partner
    if not email:
        assert "Jordan will get in touch with you" in partner


@pytest.mark.parametrize("share", ["First name", "Name and contact", "Name, contact and goal"])
def test_the_patient_email_says_how_to_start_claim_the_perk_choose_freely_and_stop(
    share: str, workbook: Callable[..., Settings], smtp: SmtpServer,
) -> None:
    patient = deliver(workbook, smtp, Share=share)["jordan@mail.example"]
    assert f"How to start: {PROCEDURE}" in patient
    assert f"Your perk: {PERK}. To claim it, mention that Riverside Physical Therapy referred you" in patient
    assert "you are free to choose any provider you like" in patient
    assert 'reply "unsubscribe"' in patient and "mailto:partners@riverside-pt.example?subject=unsubscribe" in patient
    last_name, email, goal = SHARED[share]  # the patient is told exactly what the partner got
    assert ("we've shared only your first name with them" in patient) is not last_name
    assert ("Your name: Jordan Blake" in patient) is last_name
    assert ("Your email address: jordan@mail.example" in patient) is email
    assert ("Your goal: Back to running" in patient) is goal
    for clearance in ("ready to", "cleared", "fit to"):
        assert clearance not in patient.lower()


def test_without_a_procedure_the_emails_still_say_how_to_start(
    workbook: Callable[..., Settings], smtp: SmtpServer,
) -> None:
    settings = workbook(partners=[{**PARTNERS[0], "Taking our patients": "", "Perk": ""}],
                        referrals=[referral(Share="Name and contact")], email=email_section(smtp))
    run_jobs(world_for(settings, lambda: NOW), ["discharge"])
    by_recipient = {m.recipients[0]: whole_text(m.message) for m in smtp.messages}
    assert "How to start: get in touch with them using the details below." in by_recipient["jordan@mail.example"]
    assert "Your perk" not in by_recipient["jordan@mail.example"]
    assert "you can reach them at the email above" in by_recipient["run@club.example"]
    assert "How we agreed" not in by_recipient["run@club.example"]


def test_consent_yes_without_an_expiry_sends_nothing_to_anyone_and_the_row_says_what_to_add(
    workbook: Callable[..., Settings], smtp: SmtpServer,
) -> None:
    settings = workbook(partners=PARTNERS, referrals=[referral(**{"Consent expires": ""})], email=email_section(smtp))
    run_jobs(world_for(settings, lambda: NOW), ["discharge"])
    assert smtp.messages == []
    row = read_book(open_backend(settings), settings).referrals[0]
    assert row.status == ("Not sent: Consent is Yes but Consent expires is empty; add the expiry date from the "
                          "signed authorization to send")
    assert row.partner_emailed is None and row.patient_emailed is None


def test_a_sheet_without_the_share_column_sends_nothing_until_init_adds_it(
    workbook: Callable[..., Settings], smtp: SmtpServer, staff_for: Callable[[Settings], Any],
) -> None:
    from automations.check import init_sheet

    settings = workbook(partners=PARTNERS, referrals=[referral(Share="Name and contact")], email=email_section(smtp))
    staff = staff_for(settings)
    grid = staff.grid("Referrals")
    share = grid[0].index("Share")
    staff.replace("Referrals", [[v for i, v in enumerate(row) if i != share] for row in grid])  # a sheet made before
    with pytest.raises(SheetLayoutError, match=r"Referrals: column Share not found \(discharge decides by it\)"):
        run_jobs(world_for(settings, lambda: NOW), ["discharge"])
    assert smtp.messages == []
    init_sheet(open_backend(settings), settings)  # the column comes back blank: First name
    run_jobs(world_for(settings, lambda: NOW), ["discharge"])
    partner = next(whole_text(m.message) for m in smtp.messages if m.recipients == ["run@club.example"])
    assert "Jordan" in partner and "Blake" not in partner and "jordan@mail.example" not in partner


def test_the_partner_email_is_signed_by_the_owner_and_the_patient_email_by_the_clinic(
    workbook: Callable[..., Settings], smtp: SmtpServer,
) -> None:
    from dataclasses import replace

    from automations.config import StaffMember

    settings = workbook(partners=[{**PARTNERS[0], "Owner": "Ana Diaz"}], referrals=[referral()], email=email_section(smtp))
    ana = StaffMember(name="Ana Diaz", title="Partnerships lead", email="ana@riverside-pt.example", phone="(217) 555-0150")
    run_jobs(world_for(replace(settings, staff=(ana,)), lambda: NOW), ["discharge"])
    by_recipient = {m.recipients[0]: m.message for m in smtp.messages}
    partner, patient = by_recipient["run@club.example"], by_recipient["jordan@mail.example"]
    assert "ana@riverside-pt.example" in str(partner["Reply-To"]) and "Ana Diaz" in whole_text(partner)
    # The patient's reply ("unsubscribe") must reach the clinic's mailbox, which the replies job reads.
    assert "partners@riverside-pt.example" in str(patient["Reply-To"])
    assert "Ana Diaz" not in whole_text(patient) and "Your team at Riverside Physical Therapy" in whole_text(patient)
