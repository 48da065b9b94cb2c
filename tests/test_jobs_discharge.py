"""The discharge job: on discharge, introduce the patient to the partner and the partner to the patient.

Only Out referrals, only with Consent = Yes and unexpired, only to a partner in Agreement or Active.
Decisions are read from a real xlsx sheet and checked on the plan and on the status it writes.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, Callable
from zoneinfo import ZoneInfo

from automations.config import Settings
from automations.jobs.plan import Plan
from tests.conftest import plan_for
from tests.support.sixty_days import d

TZ = ZoneInfo("America/Chicago")
NOW = datetime.combine(d(10), time(9), TZ)
PARTNERS = [
    {"Partner ID": "P-0001", "Business": "Active Run Club", "Contact name": "Leo Martins", "Email": "run@club.example",
     "Stage": "Active"},
    {"Partner ID": "P-0002", "Business": "Prospect Gym", "Email": "gym@prospect.example", "Stage": "Prospect"},
]


def referral(**cells: Any) -> dict[str, Any]:
    """An Out referral to Active Run Club discharged on day 8 with consent; *cells* changed."""
    return {"Referral ID": "R-0001", "Direction": "Out", "Partner": "Active Run Club", "Patient first name": "Jordan",
            "Patient email": "jordan@mail.example", "Consent": "Yes", "Goal": "Back to running 5k",
            "Discharge date": d(8), **cells}


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


def test_without_valid_consent_nobody_is_emailed_and_the_row_says_why(workbook: Callable[..., Settings]) -> None:
    assert status(decide(workbook, Consent="Revoked")) == "Not sent: consent revoked; nothing is shared with the partner"
    assert status(decide(workbook, Consent="")) == "Waiting for consent"
    assert status(decide(workbook, Consent="No")) == "Waiting for consent (Consent is No)"
    expired = decide(workbook, **{"Consent expires": d(9)})
    assert status(expired) == f"Not sent: consent expired {d(9).isoformat()}; renew it to send"
    for cells in ({"Consent": "Revoked"}, {"Consent": ""}, {"Consent": "No"}, {"Consent expires": d(9)}):
        assert decide(workbook, **cells).emails == ()


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
