"""Discharge to a partner: introduce a discharged patient to the partner, and the partner to the patient.

Only for Out referrals whose Discharge date has come, with Consent = Yes and unexpired, to a
partner in Agreement or Active. Without valid consent nobody is emailed and the row says why.
"""

from __future__ import annotations

from automations.jobs.common import day, done, plan_referrals, render_context
from automations.jobs.plan import Email, JobInput, Plan
from automations.model import Referral

READY_STAGES = ("Agreement", "Active")


def plan_discharge(inp: JobInput) -> Plan:
    return plan_referrals(inp, "discharge", "Out", _decide)


def _decide(inp: JobInput, r: Referral) -> tuple[list[Email], str | None]:
    today = inp.today
    partner_done = done(inp, r.partner_emailed, "discharge", r.ref, "partner")
    patient_done = done(inp, r.patient_emailed, "discharge", r.ref, "patient")
    if partner_done and (patient_done or not r.patient_email):
        return [], None  # done
    if r.discharge_date is None:
        return [], None if r.status else "Waiting for a Discharge date"
    if r.discharge_date > today:
        return [], f"Introduction goes out on discharge, {day(r.discharge_date)}"
    if r.consent == "Revoked":
        return [], "Not sent: consent revoked; nothing is shared with the partner"
    if r.consent != "Yes":
        return [], "Waiting for consent" + ("" if not r.consent else f" (Consent is {r.consent})")
    if r.consent_expires is not None and r.consent_expires < today:
        return [], f"Not sent: consent expired {day(r.consent_expires)}; renew it to send"
    partner = r.partner
    assert partner is not None  # an unknown partner is a row problem, handled above
    if partner.stage not in READY_STAGES:
        return [], (f"Waiting: {partner.business} is at Stage {partner.stage}; the introduction goes out "
                    "once they are in Agreement or Active")
    if partner.do_not_email or not partner.email or inp.book.blocked(partner.email):
        return [], f"Not sent: {partner.business} cannot be emailed (no Email, Do not email, or opted out)"
    emails: list[Email] = []
    context = render_context(inp, "discharge_partner", partner=partner, referral=r)
    if not partner_done:
        emails.append(Email(
            job="discharge", row=r.ref, step="partner", template="discharge_partner", to_email=partner.email,
            to_name=partner.contact_name, recipient="partner", label="Partner introduction", context=context,
            on_sent={"Partner emailed": today}, sent_status=f"Partner emailed {day(today)}"))
    if not r.patient_email:
        return emails, "No Patient email: the partner only" if emails else None
    if inp.book.blocked(r.patient_email):
        return emails, "Patient not emailed: the address is on Opt-outs"
    if not patient_done:
        emails.append(Email(
            job="discharge", row=r.ref, step="patient", template="discharge_patient", to_email=r.patient_email,
            to_name=" ".join(n for n in (r.patient_first_name, r.patient_last_name) if n), recipient="patient",
            label="Patient email",
            context=render_context(inp, "discharge_patient", partner=partner, referral=r, recipient="patient"),
            on_sent={"Patient emailed": today}, sent_status=f"Patient emailed {day(today)}"))
    return emails, None
