"""The jobs over 60 simulated days, on both backends, delivering to a real loopback SMTP server."""

from __future__ import annotations

import logging
from datetime import datetime, time
from email.message import Message
from pathlib import Path
from typing import Any, Callable

import pytest

from automations.config import Settings
from automations.executor import run_jobs
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import Staff, google_settings, make_settings, seed_sheet, world_for
from tests.support.sixty_days import EXPECTED, ROW_JOBS, TZ, d, day0_rows, deliver_sixty_days, staff_actions
from tests.support.smtp_server import SmtpServer, email_section, parse_message


def sheet_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest, smtp: SmtpServer) -> Settings:
    email = email_section(smtp)
    if backend == "google":
        return google_settings(tmp_path, request.getfixturevalue("emulator"), email=email)
    return make_settings(tmp_path, email=email)


@pytest.mark.parametrize("backend", ["xlsx", "google"])
def test_sixty_days_deliver_exactly_the_expected_emails(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, smtp: SmtpServer,
    staff_for: Callable[[Settings], Staff], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = sheet_settings(backend, tmp_path, request, smtp)
    seed_sheet(settings, **day0_rows())

    def arrivals() -> list[tuple[str, str]]:
        return [(str(m.message["X-Partnerloop-Template"]), r) for m in smtp.messages for r in m.recipients]

    got = deliver_sixty_days(settings, staff_actions(staff_for(settings)), arrivals, ROW_JOBS)
    assert sorted(got) == EXPECTED

    book = read_book(open_backend(settings), settings)
    partners = {p.id: p for p in book.partners}
    assert partners["P-0001"].status == "Sequence stopped: the address is on Opt-outs"
    assert partners["P-0003"].status == "Not emailed: Do not email is Yes"
    assert partners["P-0002"].stage == "Agreement" and partners["P-0002"].stage_since == d(12)
    referrals = {r.id: r for r in book.referrals}
    assert referrals["R-0003"].status == "Not sent: consent revoked; nothing is shared with the partner and nobody is emailed"
    assert referrals["R-0002"].status.startswith("Waiting: Paused Gym is at Stage Paused")
    assert referrals["R-0001"].partner_emailed == d(8) and referrals["R-0001"].patient_emailed == d(8)
    assert referrals["R-0005"].loop_closed == d(30)
    assert referrals["R-0006"].status.startswith("Update not sent: the patient declined (Consent is No)")
    assert {e.id: e.reminder_sent for e in book.events} == {"E-0001": d(37), "E-0002": d(56)}

    # Patient data: never in a subject, never in log output, never to a partner without consent.
    patients = ["Jordan", "Blake", "jordan@mail.example", "Back to running", "Riley", "riley@mail.example",
                "Hike again", "Avery", "Quinn", "Doe", "Shoulder mobility", "Morgan", "Sam"]
    for message in smtp.messages:
        subject = str(message.message["Subject"])
        assert not any(p in subject for p in patients), subject
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("partnerloop"))
    assert "sent discharge R-0001 discharge_patient" in ours  # logs name row IDs
    for word in patients:
        assert word not in ours
    partner_mail = [parse_message(m.raw) for m in smtp.messages if "run@club.example" in m.recipients]
    bodies = "\n".join(_text(m) for m in partner_mail)
    assert "Riley" not in bodies and "Hike again" not in bodies  # consent revoked before discharge
    assert "Morgan" not in bodies  # the partner was Paused
    assert "Jordan" in bodies  # consent Yes: the partner is introduced


def _text(message: Message) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    return "\n".join(str(p.get_payload(decode=True), "utf-8") for p in parts if p.get_content_type() == "text/plain")


def test_every_job_makes_a_constant_number_of_sheets_calls(tmp_path: Path, emulator: Any) -> None:
    counts = {}
    for rows in (10, 5000):
        settings = google_settings(tmp_path / str(rows), emulator, email={"outbox_dir": str(tmp_path / f"out{rows}")})
        partners = [{"Partner ID": "P-0001", "Business": "Due Gym", "Email": "due@gym.example", "Stage": "Prospect"}]
        partners += [{"Partner ID": f"P-{i:05d}", "Business": f"Gym {i}", "Email": f"g{i}@gym.example",
                      "Stage": "Active", "Stage since": d(0)} for i in range(2, rows + 1)]
        referrals = [{"Referral ID": f"R-{i:05d}", "Direction": "In", "Partner": "Gym 2", "Patient first name": "A",
                      "Thanks sent": d(0), "Loop closed": d(0), "Referred on": d(0)} for i in range(1, rows + 1)]
        seed_sheet(settings, partners=partners, referrals=referrals)
        for job in [*ROW_JOBS, "all"]:
            emulator.reset_requests()
            now = datetime.combine(d(0), time(9, 0), TZ)
            run_jobs(world_for(settings, lambda: now), ROW_JOBS if job == "all" else [job])
            requests = [r for r in emulator.requests if settings.sheet.key in r.path]
            counts[(job, rows)] = len(requests)
            if job == "all":
                full_reads = [r for r in requests if r.path.endswith("values:batchGet") and len(r.ranges) == 4]
                assert len(full_reads) == 1  # run --all reads the sheet once (a write-back re-reads only its tabs)
    for job in [*ROW_JOBS, "all"]:
        assert counts[(job, 10)] == counts[(job, 5000)], (job, counts)
    assert counts[("all", 10)] <= 6
