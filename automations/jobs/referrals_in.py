"""Inbound referrals: thank the partner, then close the loop (first visit, discharge) with consent.

`referral_thanks` carries no patient detail beyond what the partner sent (the first name);
`referral_update` and `referral_closed` go only with Consent = Yes and a Consent expires not yet
passed, and hold the first name and the dates of care, nothing more.
"""

from __future__ import annotations

from automations.jobs.common import day, done, plan_referrals, render_context
from automations.jobs.plan import Email, JobInput, Plan
from automations.model import Referral, shared_with_referrer

NOT_SENT = "Update not sent: "
CONSENT_STATUS = {
    "missing": NOT_SENT + "Consent is empty; with the patient's signed consent set Consent to Yes and fill in "
                          "Consent expires",
    "declined": NOT_SENT + "the patient declined (Consent is No); the partner gets only the thank-you",
    "revoked": NOT_SENT + "consent revoked; nothing more is shared with the partner",
    "no expiry": NOT_SENT + "Consent is Yes but Consent expires is empty; add the expiry date from the signed "
                            "authorization to send",
}


def plan_referrals_in(inp: JobInput) -> Plan:
    return plan_referrals(inp, "referrals_in", "In", _decide)


def _decide(inp: JobInput, r: Referral) -> tuple[list[Email], str | None]:
    today = inp.today
    partner = r.partner
    assert partner is not None
    if partner.do_not_email or not partner.email or inp.book.blocked(partner.email):
        if r.thanks_sent and r.loop_closed:
            return [], None
        return [], f"Not sent: {partner.business} cannot be emailed (no Email, Do not email, or opted out)"

    def email(step: str, template: str, label: str, column: str) -> Email:
        assert partner is not None and partner.email is not None
        return Email(job="referrals_in", row=r.ref, step=step, template=template, to_email=partner.email,
                     to_name=partner.contact_name, recipient="partner", label=label,
                     context=render_context(inp, template, partner=partner, referral=shared_with_referrer(r)),
                     on_sent={column: today}, sent_status=f"{label} sent {day(today)}")

    emails = []
    if not done(inp, r.thanks_sent, "referrals_in", r.ref, "thanks"):
        emails.append(email("thanks", "referral_thanks", "Thank-you", "Thanks sent"))
    wants_update = (r.first_visit is not None and r.first_visit <= today
                    and not done(inp, r.update_sent, "referrals_in", r.ref, "update"))
    wants_close = (r.discharge_date is not None and r.discharge_date <= today
                   and not done(inp, r.loop_closed, "referrals_in", r.ref, "closed"))
    if not (wants_update or wants_close):
        return emails, None
    gap = r.consent_gap(today)
    if gap == "expired" and r.consent_expires is not None:
        return emails, f"{NOT_SENT}consent expired {day(r.consent_expires)}; renew it and update Consent expires to send"
    if gap is not None:
        return emails, CONSENT_STATUS[gap]
    if wants_update:
        emails.append(email("update", "referral_update", "First-visit update", "Update sent"))
    if wants_close:
        emails.append(email("closed", "referral_closed", "Loop-closing note", "Loop closed"))
    return emails, None
