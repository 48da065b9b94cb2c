"""The command line as staff use it: run, dry run, preview, status, resolve and the demo."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from automations.cli import main
from automations.config import load_settings
from automations.mail.ledger import Ledger, SendKey
from automations.mail.render import EMAIL_TEMPLATES
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import REPO
from tests.support.configs import write_config


def demo_config(tmp_path: Path) -> Path:
    config = write_config(tmp_path / "settings.toml", sheet={"path": tmp_path / "sheet.xlsx"},
                          email={"outbox_dir": tmp_path / "outbox"}, state={"dir": tmp_path / "state"})
    assert main(["--config", str(config), "init", "--demo", "--now", "2026-11-27"]) == 0
    return config


def test_dry_run_lists_what_would_be_sent_and_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    before = (tmp_path / "sheet.xlsx").read_bytes()
    capsys.readouterr()
    assert main(["--config", str(config), "run", "--all", "--dry-run", "--now", "2026-11-27"]) == 0
    out = capsys.readouterr().out
    assert "  would send: outreach P-0001 outreach_intro to maya@northside-strength.example" in out
    assert "  would send: discharge R-0001 discharge_patient to patient of R-0001" in out
    assert "jordan.blake@mail.example" not in out  # a patient's address is not printed
    line = next(x for x in out.splitlines() if x.startswith("  would write Partners P-0001: "))
    assert "Stage = Contacted" in line and "Automation status = Intro sent 2026-11-27" in line
    assert out.strip().splitlines()[-1].startswith("outreach, discharge, referrals_in, events")
    assert (tmp_path / "sheet.xlsx").read_bytes() == before
    assert not (tmp_path / "outbox").exists()


def test_run_summary_then_status_and_nothing_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    capsys.readouterr()
    assert main(["--config", str(config), "run", "outreach", "discharge", "--now", "2026-11-27T10:00"]) == 0
    first = capsys.readouterr().out.strip().splitlines()
    assert first[0] == "outreach, discharge: sent 12 email(s)"  # 6 outreach; 3 discharges, 2 emails each
    assert main(["--config", str(config), "run", "outreach", "discharge", "--now", "2026-11-27T10:30"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[0] == "outreach, discharge: sent 0 email(s)"
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 12
    assert main(["--config", str(config), "status"]) == 0
    status = capsys.readouterr().out
    assert "  outreach      " in status and " ok " in status
    assert "No unknown-outcome emails to resolve." in status


def test_held_outside_the_send_window_is_said_in_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    capsys.readouterr()
    assert main(["--config", str(config), "run", "outreach", "--now", "2026-11-28T10:00"]) == 0
    out = capsys.readouterr().out
    assert "held back 6 email(s) for the next run: outside the send window (Mon-Fri 08:30-17:30); goes out from " \
           "Mon 2026-11-30 08:30" in out


def test_preview_renders_a_rows_email_without_sending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    capsys.readouterr()
    assert main(["--config", str(config), "preview", "outreach", "--id", "P-0002", "--now", "2026-11-27"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("=== outreach P-0002 outreach_warm_intro (Warm intro)\nTo: Priya Raman <priya@lotusflow.example>")
    assert "Dr. Alan Reyes" in out
    assert not (tmp_path / "outbox").exists()


def test_resolve_settles_an_unknown_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    ledger = Ledger.in_state_dir(tmp_path / "state")
    from datetime import datetime

    ledger.claim(SendKey("discharge", "R-0001", "patient"), template="discharge_patient", to_address="x@y.example",
                 tab="Referrals", match=None, message_id="<m1@riverside-pt.example>",
                 now=datetime(2026, 11, 27, 16, 0, tzinfo=UTC),
                 writeback={"Patient emailed": datetime(2026, 11, 27).date()}, log_row=["t", "discharge"])
    assert main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "R-0001 discharge discharge_patient (since 2026-11-27 10:00): check with the recipient, then " \
           "`partnerloop resolve R-0001 --job discharge --sent` or `--resend`" in out
    assert main(["--config", str(config), "resolve", "R-0001", "--job", "discharge", "--sent"]) == 0
    assert "discharge R-0001 discharge_patient: marked as delivered" in capsys.readouterr().out
    assert main(["--config", str(config), "status"]) == 0
    assert "No unknown-outcome emails to resolve." in capsys.readouterr().out


def test_bad_now_and_unknown_job_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    assert main(["--config", str(config), "run", "outreach", "--now", "tomorrow"]) == 2
    assert capsys.readouterr().err.strip() == (
        "partnerloop run: --now 'tomorrow': expected YYYY-MM-DDTHH:MM or YYYY-MM-DD (clinic time)")
    assert main(["--config", str(config), "run", "outrech"]) == 2
    assert "unknown job 'outrech'; jobs are: outreach" in capsys.readouterr().err


def test_demo_in_a_fresh_directory_with_no_config_writes_every_template(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PARTNERLOOP_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-m", "automations", "demo"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"Workbook (open it in Excel or LibreOffice): {tmp_path / 'partnerloop-demo'}" in result.stdout
    assert "Dashboard (the owner's figures and chart): the Dashboard tab of partnerloop-demo.xlsx" in result.stdout
    templates = set()
    for path in (tmp_path / "partnerloop-demo" / "outbox").glob("*.eml"):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        templates.add(str(message["X-Partnerloop-Template"]))
        assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
    # A meeting cancellation needs a confirmation sent by an earlier run: one run of the demo cannot show it.
    assert templates == set(EMAIL_TEMPLATES) - {"meeting_cancellation"}


def test_run_replies_without_a_mailbox_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    capsys.readouterr()
    assert main(["--config", str(config), "run", "replies"]) == 2
    assert "[email.imap] host is not set: the replies job reads the clinic's mailbox" in capsys.readouterr().err
    assert main(["--config", str(config), "run", "--all", "--dry-run", "--now", "2026-11-27"]) == 0
    assert "replies" not in capsys.readouterr().out.strip().splitlines()[-1]


def test_demo_never_touches_a_folder_that_holds_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    var = tmp_path / "var"
    (var / "state").mkdir(parents=True)
    (var / "state" / "ledger.sqlite3").write_bytes(b"the real send history")
    assert main(["demo", "--dir", str(var)]) == 2
    assert f"partnerloop demo: {var} already holds something; the demo writes only into a new or empty folder" in \
        capsys.readouterr().err
    assert (var / "state" / "ledger.sqlite3").read_bytes() == b"the real send history"
    assert sorted(p.name for p in var.rglob("*")) == ["ledger.sqlite3", "state"]


def log_lines(tmp_path: Path) -> list[tuple[str, str, str]]:
    """The Log tab's (Row, Job, Template) lines, in order."""
    settings = load_settings(tmp_path / "settings.toml")
    log = open_backend(settings).read(["Log"])["Log"]
    assert log is not None
    return [(str(log.get(r, "Row")), str(log.get(r, "Job")), str(log.get(r, "Template"))) for r in log.rows]


def test_resend_works_for_every_kind_of_email_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    assert main(["--config", str(config), "run", "--all", "--now", "2026-11-27"]) == 0
    first = log_lines(tmp_path)
    where = {template: (row, job) for row, job, template in first}
    kinds = ["outreach_intro", "outreach_follow_up_1", "meeting_confirmation", "partnership_welcome",
             "discharge_partner", "referral_thanks", "referral_update", "event_reminder", "owner_digest"]
    assert set(kinds) <= set(where), sorted(where)
    for template in kinds:
        row, job = where[template]
        capsys.readouterr()
        assert main(["--config", str(config), "resolve", row, "--job", job, "--resend"]) == 0
        assert f"{job} {row} {template}: will be sent again on the next run" in capsys.readouterr().out
    asked = {(row, job) for row, job in where.values() if (row, job) in {where[t] for t in kinds}}
    assert main(["--config", str(config), "run", "--all", "--now", "2026-11-27T11:00"]) == 0
    again = log_lines(tmp_path)[len(first):]
    assert sorted(again) == sorted(line for line in first if line[:2] in asked)  # each once more, nothing else
    assert main(["--config", str(config), "run", "--all", "--now", "2026-11-27T12:00"]) == 0
    assert len(log_lines(tmp_path)) == len(first) + len(again)  # once, not on every run
    settings = load_settings(config)
    book = read_book(open_backend(settings), settings)
    [referral] = [r for r in book.referrals if r.id == where["discharge_partner"][0]]
    assert "Partner emailed 2026-11-27 (sent again, as staff asked)" in referral.status


def test_resolve_with_nothing_to_resolve_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    capsys.readouterr()
    assert main(["--config", str(config), "resolve", "R-0001", "--sent"]) == 0
    assert capsys.readouterr().out.strip() == ("resolve: nothing to resolve for R-0001: no email of it has an unknown "
                                               "outcome (`partnerloop status` lists those)")
    assert main(["--config", str(config), "resolve", "R-0001", "--resend"]) == 0
    assert capsys.readouterr().out.strip() == "resolve: nothing to resolve for R-0001: partnerloop has sent no email for it"


def test_templates_export_then_an_overlay_of_one_edited_template(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "my-templates"
    assert main(["templates", "export", str(mine)]) == 0
    assert f"templates export: 18 template file(s) copied to {mine}" in capsys.readouterr().out
    assert (mine / "outreach_intro.html.j2").read_text() == (REPO / "templates" / "outreach_intro.html.j2").read_text()
    (mine / "outreach_intro.html.j2").write_text((mine / "outreach_intro.html.j2").read_text().replace(
        "Would you be open to a 20-minute chat", "Could we buy you a coffee and talk for 20 minutes"))
    assert main(["templates", "export", str(mine)]) == 0  # again: what is there is kept
    assert "18 already there and kept as they are" in capsys.readouterr().out
    assert "buy you a coffee" in (mine / "outreach_intro.html.j2").read_text()
    for path in mine.iterdir():
        if path.name != "outreach_intro.html.j2":
            path.unlink()  # the clinic keeps only what it changed; the rest falls back to the shipped ones

    config = write_config(tmp_path / "settings.toml", sheet={"path": tmp_path / "sheet.xlsx"},
                          email={"outbox_dir": tmp_path / "outbox"}, state={"dir": tmp_path / "state"},
                          templates={"dir": str(mine)})
    assert main(["--config", str(config), "init", "--demo", "--now", "2026-11-27"]) == 0
    assert main(["--config", str(config), "check", "--now", "2026-11-27"]) in (0, 1)
    assert "Templates:" not in capsys.readouterr().out
    assert main(["--config", str(config), "run", "outreach", "--now", "2026-11-27"]) == 0
    bodies = {}
    for path in (tmp_path / "outbox").glob("*.eml"):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        bodies[str(message["X-Partnerloop-Template"])] = message.get_body(("plain",)).get_content()
    assert "Could we buy you a coffee and talk for 20 minutes" in bodies["outreach_intro"]
    assert "outreach_follow_up_1" in bodies and "coffee" not in bodies["outreach_follow_up_1"]  # shipped


def test_todo_prints_the_rows_that_need_a_person_grouped_by_owner(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config(tmp_path)
    assert main(["--config", str(config), "run", "--all", "--now", "2026-11-27T09:00"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "todo", "--now", "2026-11-27T09:05"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "To do: 4 row(s) need a person (2026-11-27); each row's Automation status says more.",
        "",
        "Alex Moreno (3)",
        "  Referrals R-0002 (Iron & Oak Gym), since 2026-11-25: Discharged 2026-11-25 without consent: ask the "
        "patient to sign for Iron & Oak Gym, or write No in Consent",
        "  Referrals R-0010 (Iron & Oak Gym), since 2026-11-17: Consent expired 2026-11-17, before the introduction "
        "to Iron & Oak Gym: renew it with the patient, or write No",
        "  Partners P-0004 (Summit Fitness Center), since 2026-11-27: No more emails: call Grace Liu at "
        "(217) 555-0104, no reply after the last follow-up (2026-11-27); then update Stage",
        "",
        "Nadia Brooks (1)",
        "  Referrals R-0009 (Still Water Massage), since 2026-11-26: Consent is Yes but Consent expires is empty: "
        "add the expiry date from the signed authorization, and the introduction to Still Water Massage goes out",
    ]
    assert "Morgan" not in out and "Hale" not in out  # R-0002's patient is not named

    from tests.conftest import Staff

    settings = load_settings(config)
    Staff(settings).edit("Partners", "P-0004", Stage="Meeting", Meeting_date="2026-11-26", Owner="")
    for row_id in ("R-0002", "R-0009", "R-0010"):
        Staff(settings).edit("Referrals", row_id, Consent="No")  # the patient said no: not chased
    assert main(["--config", str(config), "todo", "--now", "2026-11-27T09:10"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "To do: 1 row(s) need a person (2026-11-27); each row's Automation status says more.",
        "",
        "Unassigned (1)",
        "  Partners P-0004 (Summit Fitness Center), since 2026-11-26: The meeting on 2026-11-26 has passed: set "
        "Stage (Agreement, Declined) or the next Meeting date",
    ]
