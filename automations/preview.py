"""`partnerloop preview JOB [--id ID]`: what a job would send now, rendered, without sending or writing.

A preview is the executor's dry run of one job (and one row): the same gate decides what is due,
so it shows exactly what `run` would send, and says when an email is held back for now.
"""

from __future__ import annotations

from typing import Any

from automations.core import Result
from automations.executor import run_jobs


def preview(world: Any, job: str, row_id: str | None = None) -> list[str]:
    """Each due email of *job* rendered as text: recipient, subject and the text part."""
    report = run_jobs(world, [job], dry_run=True, row_id=row_id)
    blocks = []
    for outcome in report.outcomes:
        email, rendered = outcome.email, outcome.rendered
        if rendered is None:
            continue  # sent already, outcome unknown, blocked, or not renderable: nothing to show
        held = [f"(held back now: {outcome.detail})"] if outcome.result == Result.HELD else []
        blocks.append("\n".join([
            f"=== {email.job} {email.row.row_id} {email.template} ({email.label})",
            f"To: {email.to_name} <{email.to_email}>",
            f"Subject: {rendered.subject}",
            *held,
            "",
            rendered.text.rstrip(),
            "",
        ]))
    return blocks
