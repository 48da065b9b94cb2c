"""The referrals_in job: thank the partner for an inbound referral, then close the loop with consent.

The thank-you needs no consent; the first-visit update and the loop-closing note go only with
Consent = Yes and a Consent expires not yet passed. Decisions are read from a real xlsx sheet and
checked on the plan; what the partner reads is checked on what arrives at a loopback SMTP server.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, Callable
from zoneinfo import ZoneInfo

from automations.config import Settings
from automations.executor import run_jobs
from automations.jobs.plan import Plan
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import plan_for, world_for
from tests.support.sixty_days import d
from tests.support.smtp_server import SmtpServer, email_section

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
    plan = decide(workbook, Consent="Yes", **{"Consent expires": d(100), "Thanks sent": d(1), "First visit": d(5),
                                              "Discharge date": d(10)})
    assert steps(plan) == [("update", "referral_update", "run@club.example"),
                           ("closed", "referral_closed", "run@club.example")]
    assert [dict(e.on_sent) for e in plan.emails] == [{"Update sent": d(10)}, {"Loop closed": d(10)}]


def test_without_consent_no_update_goes_and_the_row_says_which_case(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Consent="No", **{"First visit": d(5)})
    assert steps(plan) == [("thanks", "referral_thanks", "run@club.example")]  # the thank-you still goes
    assert status(plan) == "Update not sent: the patient declined (Consent is No); the partner gets only the thank-you"
    seen = {"Thanks sent": d(1), "First visit": d(5), "Discharge date": d(9)}
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "expired": ({"Consent": "Yes", "Consent expires": d(9)},
                    f"Update not sent: consent expired {d(9).isoformat()}; renew it and update Consent expires to send"),
        "no expiry": ({"Consent": "Yes"}, "Update not sent: Consent is Yes but Consent expires is empty; add the "
                                          "expiry date from the signed authorization to send"),
        "revoked": ({"Consent": "Revoked"}, "Update not sent: consent revoked; nothing more is shared with the partner"),
        "missing": ({}, "Update not sent: Consent is empty; with the patient's signed consent set Consent to Yes and "
                        "fill in Consent expires"),
    }
    for name, (cells, expected) in cases.items():
        plan = decide(workbook, **seen, **cells)
        assert steps(plan) == [], name
        assert status(plan) == expected, name


def whole_text(message: Any) -> str:
    """The headers and every text part (plain and HTML) of a message as it arrived, spaces collapsed."""
    parts = [str(value) for value in message.values()]
    parts += [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    return " ".join(" ".join(parts).split())


def test_the_partner_hears_back_only_the_first_name_they_sent(
    workbook: Callable[..., Settings], smtp: SmtpServer,
) -> None:
    row = referral(**{"Patient last name": "Doe", "Patient email": "sam.doe@mail.example", "Goal": "Shoulder mobility",
                      "Share": "Name, contact and goal", "Consent": "Yes", "Consent expires": d(100),
                      "First visit": d(5), "Discharge date": d(10)})
    settings = workbook(partners=PARTNERS, referrals=[row], email=email_section(smtp))
    run_jobs(world_for(settings, lambda: NOW), ["referrals_in"])
    got = {str(m.message["X-Partnerloop-Template"]): whole_text(m.message) for m in smtp.messages}
    assert sorted(got) == ["referral_closed", "referral_thanks", "referral_update"]
    for template, text in got.items():
        assert "Sam" in text, template
        for detail in ("Doe", "sam.doe@mail.example", "Shoulder mobility"):  # even though Share would allow them
            assert detail not in text, (template, detail)
        for clearance in ("ready to", "cleared", "fit to"):
            assert clearance not in text.lower(), (template, clearance)
    assert "has finished their course of care with us as of" in got["referral_closed"]


def test_consent_yes_without_an_expiry_sends_only_the_thank_you(
    workbook: Callable[..., Settings], smtp: SmtpServer,
) -> None:
    settings = workbook(partners=PARTNERS, referrals=[referral(Consent="Yes", **{"First visit": d(5)})],
                        email=email_section(smtp))
    run_jobs(world_for(settings, lambda: NOW), ["referrals_in"])
    assert [str(m.message["X-Partnerloop-Template"]) for m in smtp.messages] == ["referral_thanks"]
    row = read_book(open_backend(settings), settings).referrals[0]
    assert row.update_sent is None and row.thanks_sent == d(10)
    assert "Consent expires is empty; add the expiry date from the signed authorization" in row.status


def test_a_first_visit_still_ahead_waits(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Consent="Yes", **{"Consent expires": d(100), "Thanks sent": d(1), "First visit": d(11)})
    assert plan.emails == () and plan.writes == ()


def test_a_partner_who_cannot_be_emailed_is_named_on_the_row(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Partner="Quiet Studio")
    assert plan.emails == ()
    assert status(plan) == "Not sent: Quiet Studio cannot be emailed (no Email, Do not email, or opted out)"


def test_out_referrals_are_not_this_jobs(workbook: Callable[..., Settings]) -> None:
    plan = decide(workbook, Direction="Out", Consent="Yes", **{"Discharge date": d(8)})
    assert plan.emails == () and plan.writes == ()
