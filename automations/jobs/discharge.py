"""Discharge to a partner: introduce a discharged patient to the partner, and the partner to the patient.

Only for Out referrals whose Discharge date has come, with Consent = Yes and a Consent expires not
yet passed, to a partner in Agreement or Active. Without that consent nobody is emailed and the row
says which case it is and what to do. The partner's email holds exactly what `Share` allows.
"""

from __future__ import annotations

from datetime import date

from automations.jobs.common import day, done, plan_referrals, render_context
from automations.jobs.plan import Email, JobInput, Plan
from automations.model import Referral, shared_at_discharge

READY_STAGES = ("Agreement", "Active")

WAITING_FOR_CONSENT = ("Waiting for consent: when the patient signs, set Consent to Yes and fill in "
                       "Consent expires")
DECLINED = "Not sent: the patient declined (Consent is No); nothing is shared and nobody is emailed"
REVOKED = "Not sent: consent revoked; nothing is shared with the partner and nobody is emailed"
NO_EXPIRY = ("Not sent: Consent is Yes but Consent expires is empty; add the expiry date from the signed "
             "authorization to send")


def consent_status(gap: str, expires: date | None) -> str:
    """The row's status for a consent that does not allow the introduction (see `Referral.consent_gap`)."""
    if gap == "expired" and expires is not None:
        return f"Not sent: consent expired {day(expires)}; renew it and update Consent expires to send"
    return {"missing": WAITING_FOR_CONSENT, "declined": DECLINED, "revoked": REVOKED}.get(gap, NO_EXPIRY)


def _gap_phrase(gap: str, r: Referral) -> str:
    if gap == "expired" and r.consent_expires is not None:
        return f"it expired {day(r.consent_expires)}; renew it and update Consent expires"
    if gap == "no expiry":
        return "add Consent expires from the signed authorization"
    return "set Consent to Yes and fill in Consent expires when the patient signs"


def plan_discharge(inp: JobInput) -> Plan:
    return plan_referrals(inp, "discharge", "Out", _decide)


def _decide(inp: JobInput, r: Referral) -> tuple[list[Email], str | None]:
    today = inp.today
    partner_done = done(inp, r.partner_emailed, "discharge", r.ref, "partner")
    patient_done = done(inp, r.patient_emailed, "discharge", r.ref, "patient")
    if partner_done and (patient_done or not r.patient_email):
        return [], None  # done
    gap = r.consent_gap(today)
    if r.discharge_date is None:
        return [], None if r.status else "Waiting for a Discharge date"
    if r.discharge_date > today:
        if gap in ("declined", "revoked"):
            return [], consent_status(gap, r.consent_expires)  # nothing will go: say so now, not at discharge
        when = f"Introduction goes out on discharge, {day(r.discharge_date)}"
        return [], when if gap is None else f"{when}, once the consent allows it: {_gap_phrase(gap, r)}"
    if gap is not None:
        return [], consent_status(gap, r.consent_expires)
    partner = r.partner
    assert partner is not None  # an unknown partner is a row problem, handled above
    if partner.stage not in READY_STAGES:
        return [], (f"Waiting: {partner.business} is at Stage {partner.stage}; the introduction goes out "
                    "once they are in Agreement or Active")
    if partner.old_procedure:
        return [], (f"Waiting: {partner.business} ({partner.ref.label}) still has text in the old Referral "
                    "procedure column on Partners; move it into Taking our patients or Sending us clients "
                    "(see that row's Automation status)")
    if partner.do_not_email or not partner.email or inp.book.blocked(partner.email):
        return [], f"Not sent: {partner.business} cannot be emailed (no Email, Do not email, or opted out)"
    emails: list[Email] = []
    if not partner_done:
        emails.append(Email(
            job="discharge", row=r.ref, step="partner", template="discharge_partner", to_email=partner.email,
            to_name=partner.contact_name, recipient="partner", label="Partner introduction",
            context=render_context(inp, "discharge_partner", partner=partner, referral=shared_at_discharge(r)),
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
            # Signed by the clinic's team, Reply-To the clinic: the patient's replies (an "unsubscribe" among
            # them) must reach the mailbox the replies job reads, not the partner's Owner.
            context={**render_context(inp, "discharge_patient", partner=partner, referral=r, recipient="patient"),
                     "signer": None},
            on_sent={"Patient emailed": today}, sent_status=f"Patient emailed {day(today)}"))
    return emails, None
