"""The referrals_in job: thank the partner for an inbound referral, then close the loop with consent.

The thank-you needs no consent; the first-visit update and the loop-closing note go only with
Consent = Yes, unexpired. Decisions are read from a real xlsx sheet and checked on the plan.
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
    {"Partner ID": "P-0002", "Business": "Quiet Studio", "Email": "quiet@studio.example", "Stage": "Active",
     "Do not email": "Yes"},
]


def referral(**cells: Any) -> dict[str, Any]:
    """An In referral from Active Run Club on day 1; *cells* changed."""
    return {"Referral ID": "R-0001", "Direction": "In", "Partner": "Active Run Club", "Patient first name": "Sam",
            "Referred on": d(1), **cells}


def decide(workbook: Callable[..., Settings], **cells: Any) -> Plan:
    return plan_for(workbook(partners=PARTNERS, referrals=[referral(**cells)]), "referrals_in", NOW)


def steps(plan: Plan) -> list[tuple[str, str, str]]:
    return [(e.step, e.template, e.to_email) for e in plan.emails]


def status(plan: Plan) -> Any:
    return {w.row_id: w.values.get("Automation status") for w in plan.writes}.get("R-0001")


def test_a_new_inbound_referral_is_thanked_without_consent(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook)
    assert steps(plan) == [("thanks", "referral_thanks", "run@club.example")]
    assert dict(plan.emails[0].on_sent) == {"Thanks sent": d(10)}
    assert plan.emails[0].sent_status == f"Thank-you sent {d(10).isoformat()}"
    assert plan.writes == ()


def test_with_consent_the_first_visit_and_the_discharge_are_reported(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Consent="Yes", **{"Thanks sent": d(1), "First visit": d(5), "Discharge date": d(10)})
    assert steps(plan) == [("update", "referral_update", "run@club.example"),
                           ("closed", "referral_closed", "run@club.example")]
    assert [dict(e.on_sent) for e in plan.emails] == [{"Update sent": d(10)}, {"Loop closed": d(10)}]


def test_without_consent_no_update_goes_and_the_row_says_why(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Consent="No", **{"First visit": d(5)})
    assert steps(plan) == [("thanks", "referral_thanks", "run@club.example")]  # the thank-you still goes
    assert status(plan) == "Update not sent: Consent is No; updates to the partner need the patient's consent"
    expired = decide(workbook, Consent="Yes", **{"Consent expires": d(9), "Thanks sent": d(1), "First visit": d(5)})
    assert steps(expired) == []
    assert status(expired) == "Update not sent: consent expired; updates to the partner need the patient's consent"


def test_a_first_visit_still_ahead_waits(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Consent="Yes", **{"Thanks sent": d(1), "First visit": d(11)})
    assert plan.emails == () and plan.writes == ()


def test_a_partner_who_cannot_be_emailed_is_named_on_the_row(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Partner="Quiet Studio")
    assert plan.emails == ()
    assert status(plan) == "Not sent: Quiet Studio cannot be emailed (no Email, Do not email, or opted out)"


def test_out_referrals_are_not_this_jobs(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Direction="Out", Consent="Yes", **{"Discharge date": d(8)})
    assert plan.emails == () and plan.writes == ()
