"""`partnerloop preview JOB [--id ID]`: what a job would send now, rendered, without sending or writing.

A preview is the executor's dry run of one job (and one row): the same gate decides what is due,
so it shows exactly what `run` would send, and says when an email is held back for now. A patient's
details show as placeholders ("[Patient first name]"), as `check` hides patient cells: printed output
may end up in logs.
"""

from __future__ import annotations

import re
from typing import Any

from automations.core import Result
from automations.executor import run_jobs


def preview(world: Any, job: str, row_id: str | None = None) -> tuple[list[str], list[str]]:
    """Each due email of *job* rendered as text (recipient, subject and the text part), and what the run
    says of the job beside its emails (e.g. that the config turned it off)."""
    report = run_jobs(world, [job], dry_run=True, row_id=row_id)
    blocks = []
    for outcome in report.outcomes:
        email, rendered = outcome.email, outcome.rendered
        if rendered is None:
            continue  # sent already, outcome unknown, blocked, or not renderable: nothing to show
        held = [f"(held back now: {outcome.detail})"] if outcome.result == Result.HELD else []
        to = f"{email.to_name} <{email.to_email}>" if email.recipient != "patient" else f"the {email.log_to}"
        blocks.append(_without_patient("\n".join([
            f"=== {email.job} {email.row.row_id} {email.template} ({email.label})",
            f"To: {to}",
            f"Subject: {rendered.subject}",
            *held,
            "",
            rendered.text.rstrip(),
            "",
        ]), email.context.get("referral")))
    return blocks, report.notes


def _without_patient(text: str, referral: Any) -> str:
    """The preview with the patient's details as placeholders: printed output may end up in logs."""
    if referral is None:
        return text
    for column, value in (("Patient email", referral.patient_email), ("Goal", referral.goal),
                          ("Patient last name", referral.patient_last_name),
                          ("Patient first name", referral.patient_first_name)):
        if value:
            text = re.sub(rf"\b{re.escape(str(value))}\b", f"[{column}]", text)
    return text
