"""Security and privacy: cell text is data, consent gates patient details, and nothing secret is printed.

- What partnerloop writes to the sheet goes as RAW values: a cell starting with "=" stays text.
- Line breaks in cells add neither a header nor a recipient; HTML in cells arrives escaped.
- Without valid consent no patient name, goal or address reaches a partner, and nobody writes to the patient.
- Whatever the commands print (stdout and stderr, also under cron) holds no patient data and no password.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from automations.check import init_sheet
from automations.config import Settings
from automations.demo import demo_rows
from automations.executor import World, run_jobs
from automations.jobs import JOBS
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import REPO, google_settings, make_settings, seed_sheet, world_for
from tests.support.configs import config_for, write_config
from tests.support.smtp_server import SmtpServer, email_section

TZ = ZoneInfo("America/Chicago")
FRIDAY_10AM = datetime(2026, 11, 27, 10, 0, tzinfo=TZ)
ALL_JOBS = list(JOBS)
PASSWORD = "s3cret-demo-pass"
VALUES_WRITES = ("values.update", "values.batchUpdate", "values.append")


def smtp_email(server: SmtpServer) -> dict[str, Any]:
    return email_section(server)


def world(settings: Settings, now: datetime = FRIDAY_10AM, **kwargs: Any) -> World:
    return world_for(settings, lambda: now, backend=open_backend(settings, **kwargs), sleep=lambda s: None)


def everything_in(message: EmailMessage) -> str:
    """Every header and every decoded part of a message, as one text to search."""
    parts = [f"{k}: {v}" for k, v in message.items()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_content())
    return "\n".join(parts)


# -- formulas stay text ----------------------------------------------------------------------------------

FORMULA_EMAIL = "=2+3@studio.example"  # a valid address that a spreadsheet would take for a formula
FORMULA_BUSINESS = "=1+2"


def formula_rows() -> dict[str, list[dict[str, Any]]]:
    return {"partners": [
        {"Partner ID": "P-0001", "Business": "Equals Studio", "Contact name": "Eli Quinn", "Email": FORMULA_EMAIL,
         "Stage": "Prospect"},
        {"Partner ID": "P-0002", "Business": FORMULA_BUSINESS, "Email": "two@studio.example", "Stage": "Active"},
    ]}


def test_every_values_write_is_raw_and_a_cell_starting_with_equals_stays_text_on_google(
    tmp_path: Path, emulator: Any, smtp: SmtpServer
) -> None:
    settings = google_settings(tmp_path, emulator, email=smtp_email(smtp))
    key = settings.sheet.key
    since = len(emulator.requests)
    seed_sheet(settings, **formula_rows())
    run_jobs(world(settings, sleep=lambda s: None), ALL_JOBS)
    assert [m.recipients for m in smtp.messages] == [[FORMULA_EMAIL], ["owner@riverside-pt.example"]]

    requests = [r for r in emulator.requests[since:] if r.spreadsheet_id == key]
    writes = [r for r in requests if r.endpoint in VALUES_WRITES]
    assert {r.endpoint for r in writes} >= {"values.batchUpdate", "values.append"}
    for request in writes:
        option = request.query.get("valueInputOption") or (request.body or {}).get("valueInputOption")
        assert option == "RAW", (request.endpoint, option)
    for request in requests:
        if request.endpoint == "spreadsheets.batchUpdate":
            assert "formulaValue" not in repr(request.body)

    client = emulator.client().open_by_key(key)
    log = client.worksheet("Log").get_all_values(value_render_option="UNFORMATTED_VALUE")
    to = log[0].index("To")
    assert [row[to] for row in log[1:]] == [FORMULA_EMAIL, "owner@riverside-pt.example"]  # not a #ERROR! or 5
    dashboard = client.worksheet("Dashboard").get_all_values(value_render_option="UNFORMATTED_VALUE")
    header = next(row for row in dashboard if "Business" in row and "Partner ID" in row)  # the partners block
    [listed] = [row for row in dashboard if row[header.index("Partner ID")] == "P-0002"]
    assert listed[header.index("Business")] == FORMULA_BUSINESS  # not 3
    partners = client.worksheet("Partners").get_all_values(value_render_option="UNFORMATTED_VALUE")
    assert [row[1] for row in partners[1:]] == ["Equals Studio", FORMULA_BUSINESS]


def test_a_cell_starting_with_equals_stays_text_in_the_workbook(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = make_settings(tmp_path, email=smtp_email(smtp))
    seed_sheet(settings, **formula_rows())
    run_jobs(world(settings), ALL_JOBS)
    workbook = openpyxl.load_workbook(settings.sheet.path)
    log = workbook["Log"]
    header = [c.value for c in log[1]]
    cell = log.cell(2, header.index("To") + 1)
    assert (cell.value, cell.data_type) == (FORMULA_EMAIL, "s")
    texts = [c for row in workbook["Dashboard"].iter_rows() for c in row if c.value == FORMULA_BUSINESS]
    assert texts and all(c.data_type == "s" for c in texts)
    formulas = [f"{ws.title}!{c.coordinate}" for ws in workbook if ws.title != "Dashboard"
                for row in ws.iter_rows() for c in row if c.data_type == "f"]
    assert formulas == []


# -- headers and HTML --------------------------------------------------------------------------------------

INJECTIONS = ["\r\nBcc: x@evil.example", "\nBcc: x@evil.example", "\rBcc: x@evil.example",
              "\u2028Bcc: x@evil.example", "\x85Bcc: x@evil.example", "\r\n\r\n<html>x@evil.example"]


@pytest.mark.parametrize("backend", ["xlsx", "google"])
def test_line_breaks_in_names_add_no_header_and_no_recipient(
    tmp_path: Path, smtp: SmtpServer, request: pytest.FixtureRequest, backend: str
) -> None:
    if backend == "google":
        settings = google_settings(tmp_path, request.getfixturevalue("emulator"), email=smtp_email(smtp))
    else:
        settings = make_settings(tmp_path, email=smtp_email(smtp))
    partners = [{"Partner ID": f"P-{i:04d}", "Business": f"Gym {i}{evil}", "Contact name": f"Maya{evil}",
                 "Introduced by": f"Dr. Reyes{evil}" if i % 2 else "", "Email": f"coach{i}@studio{i}.example",
                 "Stage": "Prospect"} for i, evil in enumerate(INJECTIONS, start=1)]
    seed_sheet(settings, partners=partners)
    report = run_jobs(world(settings, sleep=lambda s: None), ["outreach"])
    assert report.count("sent") == len(INJECTIONS)
    assert sorted(r for m in smtp.messages for r in m.recipients) == sorted(p["Email"] for p in partners)
    for received in smtp.messages:
        message = received.message
        assert len(received.recipients) == 1
        assert message["Bcc"] is None and message["Cc"] is None
        assert len(message["To"].addresses) == 1
        headers = received.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        assert not re.search(r"(?im)^(bcc|cc|html)\b", headers)
        assert all(not line or line[0] in " \t" or re.match(r"[\w-]+:", line) for line in headers.split("\r\n"))
        assert message["To"].addresses[0].addr_spec == received.recipients[0]  # the name is only a name


def test_html_in_cells_arrives_escaped(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = make_settings(tmp_path, email=smtp_email(smtp))
    init_sheet(open_backend(settings), settings, {"partners": [
        {"Partner ID": "P-0001", "Business": "Gym <b>bold</b> & co", "Contact name": "<img src=x onerror=alert(1)>",
         "Email": "coach@gym.example", "Stage": "Prospect", "Perk": "<script>alert('xss')</script> & more",
         "Logo URL": "javascript:alert(1)"},
    ]})
    run_jobs(world(settings), ["outreach"])
    [received] = smtp.messages
    html_part, text_part = received.message.get_body(("html",)), received.message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html, text = html_part.get_content(), text_part.get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(" in html
    assert "<img src=x" not in html and "<b>bold</b>" not in html
    assert "javascript:" not in html
    assert "<script>alert('xss')</script>" in text  # the text part shows the cell as typed


# -- consent gates patient details --------------------------------------------------------------------------

# (first name, last name, goal, email) of patients whose consent does not allow sharing
OUT_WITHOUT_CONSENT = {
    "R-0001": ("No", None, ("Orsolya", "Ashgrove", "Swim the lake again", "orsolya@mail.example")),
    "R-0002": ("Revoked", None, ("Branwen", "Bellweather", "Carry groceries", "branwen@mail.example")),
    "R-0003": ("Yes", date(2026, 11, 1), ("Ximena", "Corriveau", "Ski season", "ximena@mail.example")),
    "R-0004": ("", None, ("Thaddeus", "Dunmore", "Garden without pain", "thaddeus@mail.example")),
    "R-0011": ("Yes", None, ("Wilhelmina", "Kettleby", "Row a regatta", "wilhelmina@mail.example")),  # no expiry
}
OUT_WITH_CONSENT = ("R-0005", ("Leopold", "Everhart", "Back to running 5k", "leopold@mail.example"))
CONSENT_UNTIL = date(2027, 6, 1)
IN_WITHOUT_CONSENT = {
    "R-0006": ("No", None, ("Marisol", "Fairweather", "Tennis serve", "")),
    "R-0007": ("Revoked", None, ("Evander", "Galloway", "Deadlift form", "")),
    "R-0008": ("Yes", date(2026, 10, 1), ("Ingrid", "Hollister", "Stairs at work", "")),
    "R-0009": ("", None, ("Cosimo", "Ivanhoe", "Play with grandkids", "")),
    "R-0012": ("Yes", None, ("Anselm", "Lockridge", "Climb the stairs at work", "")),  # no expiry
}
IN_WITH_CONSENT = ("R-0010", ("Philippa", "Jessamine", "Dance recital", ""))


def consent_rows() -> dict[str, list[dict[str, Any]]]:
    partners = [
        {"Partner ID": "P-0001", "Business": "Harbor Gym", "Contact name": "Dana Reyes", "Email": "dana@harbor.example",
         "Stage": "Active", "Perk": "a free month", "Taking our patients": "book an orientation", "Stage since": "2026-01-05"},
        {"Partner ID": "P-0002", "Business": "Lotus Yoga", "Contact name": "Priya Raman", "Email": "priya@lotus.example",
         "Stage": "Agreement", "Stage since": "2026-11-20"},
    ]
    referrals = []
    for direction, rows in (("Out", {**OUT_WITHOUT_CONSENT,
                                     OUT_WITH_CONSENT[0]: ("Yes", CONSENT_UNTIL, OUT_WITH_CONSENT[1])}),
                            ("In", {**IN_WITHOUT_CONSENT, IN_WITH_CONSENT[0]: ("Yes", CONSENT_UNTIL, IN_WITH_CONSENT[1])})):
        for row_id, (consent, expires, (first, last, goal, email)) in rows.items():
            referrals.append({"Referral ID": row_id, "Direction": direction, "Partner": "Harbor Gym",
                              "Patient first name": first, "Patient last name": last, "Patient email": email,
                              "Referred on": "2026-11-10", "Consent": consent, "Consent expires": expires,
                              "Share": "Name, contact and goal", "Goal": goal,  # Share at its widest
                              "Discharge date": "2026-11-26",
                              "First visit": "2026-11-20" if direction == "In" else None})
    events = [{"Event ID": "E-0001", "Event": "Healthy knees open house", "Date": "2026-11-29 10:00", "Partner": "Harbor Gym",
               "Kind": "Open house", "Location": "Clinic studio"}]
    return {"partners": partners, "referrals": [{k: v for k, v in r.items() if v is not None} for r in referrals],
            "events": events}


def test_without_valid_consent_no_patient_detail_reaches_anyone_in_any_job(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = make_settings(tmp_path, email=smtp_email(smtp))
    seed_sheet(settings, **consent_rows())
    for day in range(0, 8):  # a week of runs: every job gets its chance, the digest included
        run_jobs(world(settings, FRIDAY_10AM + timedelta(days=day)), ALL_JOBS)
    messages = [m.message for m in smtp.messages]
    templates = sorted(str(m["X-Partnerloop-Template"]) for m in messages)
    assert {"discharge_partner", "discharge_patient", "referral_thanks", "referral_update", "referral_closed",
            "event_reminder", "partnership_welcome", "owner_digest"} <= set(templates)

    for row_id, (_, _, (first, last, goal, email)) in {**OUT_WITHOUT_CONSENT, **IN_WITHOUT_CONSENT}.items():
        for message in messages:
            content = everything_in(message)
            for detail in (last, goal, email):
                if detail:
                    assert detail not in content, (row_id, detail, message["X-Partnerloop-Template"])
            if first in content:  # only the thank-you for an In referral: the name the partner sent us
                assert row_id in IN_WITHOUT_CONSENT and message["X-Partnerloop-Template"] == "referral_thanks", (
                    row_id, message["X-Partnerloop-Template"])
    recipients = {r for m in smtp.messages for r in m.recipients}
    assert not recipients & {p[3] for _, _, p in OUT_WITHOUT_CONSENT.values()}
    assert [str(m["X-Partnerloop-Template"]) for m in messages if "leopold@mail.example" in str(m["To"])] == [
        "discharge_patient"]

    # The consented rows do carry the details (so the searches above could have found them) ...
    partner_intro = next(m for m in messages if m["X-Partnerloop-Template"] == "discharge_partner")
    assert "Leopold" in everything_in(partner_intro) and "Back to running 5k" in everything_in(partner_intro)
    assert templates.count("referral_update") == templates.count("referral_closed") == 1
    assert templates.count("discharge_partner") == templates.count("discharge_patient") == 1
    # ... but never in a subject, and never to the owner.
    every_name = [p[i] for _, _, p in [*OUT_WITHOUT_CONSENT.values(), *IN_WITHOUT_CONSENT.values()] for i in (0, 1)]
    every_name += [*OUT_WITH_CONSENT[1][:3], *IN_WITH_CONSENT[1][:3]]
    for message in messages:
        assert not any(name in str(message["Subject"]) for name in every_name), message["Subject"]
        if message["X-Partnerloop-Template"] in ("owner_digest", "event_reminder", "partnership_welcome"):
            assert not any(name in everything_in(message) for name in every_name), message["X-Partnerloop-Template"]

    book = read_book(open_backend(settings), settings)
    status = {r.id: r.status for r in book.referrals}
    assert status["R-0001"] == "Not sent: the patient declined (Consent is No); nothing is shared and nobody is emailed"
    assert status["R-0002"] == "Not sent: consent revoked; nothing is shared with the partner and nobody is emailed"
    assert status["R-0003"] == "Not sent: consent expired 2026-11-01; renew it and update Consent expires to send"
    assert status["R-0004"].startswith("Waiting for consent")
    assert status["R-0011"].startswith("Not sent: Consent is Yes but Consent expires is empty")
    for row_id in IN_WITHOUT_CONSENT:
        assert "Update not sent: " in status[row_id]


# -- nothing secret or personal in what the commands print -----------------------------------------------


def patient_details(today: date) -> list[str]:
    """Every patient name and address of the demo rows (last names too plain to search for are left out)."""
    details: set[str] = set()
    for row in demo_rows(today)["referrals"]:
        for column in ("Patient first name", "Patient last name", "Patient email"):
            value = str(row.get(column) or "")
            if value and value not in ("Patient",):
                details.add(value)
        if row.get("Patient first name") and row.get("Patient last name"):
            details.add(f"{row['Patient first name']} {row['Patient last name']}")
    return sorted(details)


def leaked(output: str, details: list[str]) -> list[str]:
    return [d for d in details if re.search(rf"(?<![\w.@-]){re.escape(d)}(?![\w@-])", output)]


def partnerloop(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "automations", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=120)


def test_demo_and_an_smtp_run_print_no_patient_data_and_no_password(tmp_path: Path) -> None:
    env = {"PARTNERLOOP_SMTP_PASSWORD": PASSWORD, "PARTNERLOOP_CONFIG": ""}
    demo = partnerloop("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stderr
    assert "Demo run as at" in demo.stdout and list((tmp_path / "demo" / "outbox").glob("*.eml"))
    outputs = [demo.stdout + demo.stderr]

    with SmtpServer(auth=("clinic", PASSWORD)) as server:
        config = write_config(tmp_path / "smtp.toml", sheet={"path": "sheet.xlsx"}, state={"dir": "state"},
                              email={"transport": "smtp", "host": server.host, "port": server.port, "security": "none",
                                     "username": "clinic", "password_env": "PARTNERLOOP_SMTP_PASSWORD", "timeout": 10,
                                     "send_window": "Mon-Fri 08:30-17:30"})
        now = "2026-11-27T10:00"
        # the patient's address is refused, and the server's reply quotes it back
        server.refuse("jordan.blake@mail.example", 550, "5.1.1 <jordan.blake@mail.example>: unknown user")
        runs = [
            partnerloop("--config", str(config), "init", "--demo", "--now", now, cwd=tmp_path, env=env),
            partnerloop("--config", str(config), "check", "--now", now, cwd=tmp_path, env=env),
            partnerloop("--config", str(config), "run", "--all", "--dry-run", "--now", now, cwd=tmp_path, env=env),
            partnerloop("--config", str(config), "run", "--all", "--now", now, cwd=tmp_path, env=env),
            partnerloop("--config", str(config), "run", "--all", "--now", now, cwd=tmp_path, env=env),
            partnerloop("--config", str(config), "status", cwd=tmp_path, env=env),
        ]
        assert [r.returncode for r in runs] == [0, 0, 0, 0, 0, 0], [r.stderr for r in runs]
        assert server.logins and len(server.messages) >= 10
        assert "refused by the mail server: R-0001" in runs[3].stdout
        outputs += [r.stdout + r.stderr for r in runs]

        wrong = partnerloop("--config", str(config), "run", "--all", "--now", "2026-11-30T10:00", cwd=tmp_path,
                            env={"PARTNERLOOP_SMTP_PASSWORD": "s3cret-wrong-pass"})
        outputs.append(wrong.stdout + wrong.stderr)

    printed = "\n".join(outputs)
    details = patient_details(date(2026, 11, 27))
    assert "Jordan Blake" in details and "jordan.blake@mail.example" in details
    assert leaked(printed, details) == []
    assert PASSWORD not in printed and "s3cret-wrong-pass" not in printed
    assert "patient of R-0001" in printed  # the dry run names the patient's row, not the patient


def test_check_and_run_print_no_mistyped_patient_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    rows = demo_rows(FRIDAY_10AM.date())
    rows["referrals"][0]["Patient email"] = "jordan.blake@mail"  # a typo: not a valid address
    rows["referrals"][1]["Patient first name"] = "=Morgan"
    seed_sheet(settings, **rows)
    config = config_for(tmp_path / "check.toml", settings)
    check = partnerloop("--config", str(config), "check", "--now", "2026-11-27T10:00", cwd=tmp_path)
    dry = partnerloop("--config", str(config), "run", "--all", "--dry-run", "--now", "2026-11-27T10:00", cwd=tmp_path)
    preview = partnerloop("--config", str(config), "preview", "referrals_in", "--now", "2026-11-27T10:00", cwd=tmp_path)
    run = partnerloop("--config", str(config), "run", "--all", "--now", "2026-11-27T10:00", cwd=tmp_path)
    assert check.returncode == 1 and run.returncode == 0 and dry.returncode == 0, run.stderr + dry.stderr
    assert "Referrals R-0001" in check.stdout and "would send" in dry.stdout
    assert "=== referrals_in" in preview.stdout and "[Patient first name]" in preview.stdout
    printed = "".join(p.stdout + p.stderr for p in (check, dry, preview, run))
    assert "jordan.blake@mail" not in printed and "Morgan" not in printed
    patients = [r for r in rows["referrals"] if r.get("Direction") == "In"]
    for name in {str(r["Patient first name"]) for r in patients} - {"=Morgan"}:
        assert name not in preview.stdout, name
