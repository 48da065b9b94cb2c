"""`partnerloop preview JOB [--id ID]`: render what a job would send now, without sending or writing."""

from __future__ import annotations

from typing import Any

from automations.errors import PartnerloopError
from automations.executor import remembered
from automations.jobs import JOBS
from automations.jobs.plan import JobInput
from automations.mail.render import Renderer
from automations.model import read_book


def preview(world: Any, job: str, row_id: str | None = None) -> list[str]:
    """Each due email of *job* rendered as text: recipient, subject and the text part."""
    if job not in JOBS:
        raise PartnerloopError(f"unknown job {job!r}; jobs are: {', '.join(JOBS)}")
    settings = world.settings
    book = read_book(world.backend, settings)
    inp = JobInput(book=book, now=world.clock(), settings=settings, seen_stages=world.ledger.seen_stages(),
                   health=world.ledger.last_runs(), location=world.backend.location(),
                   remembered=remembered(world.ledger), replied=world.ledger.replied())
    renderer = Renderer(settings.templates_dir)
    blocks = []
    for email in JOBS[job](inp).emails:
        if row_id and email.row.row_id != row_id:
            continue
        record = world.ledger.get(email.key)
        if record is not None and record.state in ("sent", "sending"):
            continue
        rendered = renderer.render(email.template, email.context)
        blocks.append("\n".join([
            f"=== {email.job} {email.row.row_id} {email.template} ({email.label})",
            f"To: {email.to_name} <{email.to_email}>",
            f"Subject: {rendered.subject}",
            "",
            rendered.text.rstrip(),
            "",
        ]))
    return blocks
