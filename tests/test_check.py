"""`partnerloop init` and `partnerloop check` as staff use them, through the real command line."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, Callable

import pytest

from automations.check import init_sheet
from automations.cli import main
from automations.config import Settings
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import Staff, google_settings, make_settings
from tests.support.configs import config_for, write_config

PARTNERS_HEADER = ["Partner ID", "Business", "Kind", "Contact name", "Email", "Stage", "Meeting date", "Do not email"]
REFERRALS_HEADER = ["Referral ID", "Direction", "Partner", "Patient first name", "Patient email", "Consent",
                    "Discharge date", "Visits"]

# Each bad row and the words its message must contain.
BAD_PARTNERS = [
    (["P-0002", "Bad Email Gym", "Other", "Ann", "ann@", "Prospect"], "Email 'ann@' is not a valid address"),
    (["P-0003", "Two Emails", "Other", "Bo", "a@x.example, b@x.example", "Prospect"], "Email must hold one address"),
    (["P-0004", "Bad Stage", "Other", "Cy", "cy@x.example", "Maybe later"], "Stage is 'Maybe later'; use Prospect"),
    (["P-0005", "Bad Kind", "Wizard", "Di", "di@x.example", "Prospect"], "Kind is 'Wizard'; use Personal trainer"),
    (["P-0006", "", "Other", "Ed", "ed@x.example", "Prospect"], "Business is empty; it is required"),
    (["P-0007", "Bad Meeting", "Other", "Fa", "fa@x.example", "Meeting", "next tuesday"], "Meeting date 'next tuesday' is not a date"),
    (["P-0001", "Duplicate ID Gym", "Other", "Hu", "hu@x.example", "Prospect"], "duplicate Partner ID P-0001, also on row 2"),
    (["P-0009", '=HYPERLINK("http://x","y")', "Other", "Io", "io@x.example", "Prospect"], "Business holds a formula"),
    (["P-0010", "No Year Gym", "Other", "Jo", "jo@x.example", "Meeting", "Nov 27"], "Meeting date 'Nov 27' has no year"),
    (["P-0011", "Newline Mail", "Other", "Ka", "ka@x.example\nBcc: z@z.example", "Prospect"], "Email must hold one address"),
]
BAD_REFERRALS = [
    (["R-0001", "Out", "Nobody Gym", "Pat", "pat@mail.example", "Yes", "2026-11-01"], "Partner 'Nobody Gym' is not a Business"),
    (["R-0002", "Sideways", "Good Gym", "Lee", "", "Yes"], "Direction is 'Sideways'; use Out or In"),
    (["R-0003", "Out", "Good Gym", "", "", "Yes"], "Patient first name is empty; it is required"),
    (["R-0004", "Out", "Good Gym", "Max", "max@", "Yes"], "Patient email 'max@' is not a valid address"),
    (["R-0005", "Out", "Good Gym", "Noa", "", "maybe"], "Consent is 'maybe'; use Yes, No or Revoked"),
    (["R-0006", "Out", "Good Gym", "Oli", "", "Yes", "31/31/2026"], "Discharge date '31/31/2026' is not a date"),
    (["R-0007", "In", "Good Gym", "Pia", "", "Yes", "", "three"], "Visits is 'three'; write a whole number"),
    (["R-0008", "", "Good Gym", "Quinn", "", "Yes"], "Direction is empty; it is required"),
    (["R-0009", "In", "", "Ray", "", "Yes"], "Partner is empty; it is required"),
    (["R-0010", "Out", "Good Gym", "Sol", "", "Yes", "=TODAY()"], "Discharge date holds a formula"),
    (["R-0011", "Out", "Good Gym", "Tam", "", "Yes", "2026-02-30"], "Discharge date '2026-02-30' is not a date"),
]


def write_bad_sheet(settings: Settings, staff: Staff) -> None:
    good_partner = ["P-0001", "Good Gym", "Fitness center", "Uma", "uma@goodgym.example", "Active"]
    staff.replace("Partners", [PARTNERS_HEADER, good_partner, *[row for row, _ in BAD_PARTNERS]])
    good_referral = ["R-0100", "Out", "Good Gym", "Val", "val@mail.example", "Yes", "2026-11-20"]
    staff.replace("Referrals", [REFERRALS_HEADER, good_referral, *[row for row, _ in BAD_REFERRALS]])
    init_sheet(open_backend(settings), settings)


@pytest.mark.parametrize("backend", ["xlsx", "google"])
def test_bad_rows_each_get_one_clear_message_and_a_status(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, staff_for: Callable[[Settings], Staff],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = google_settings(tmp_path, request.getfixturevalue("emulator")) if backend == "google" else make_settings(tmp_path)
    config = config_for(tmp_path / "settings.toml", settings)
    staff = staff_for(settings)
    write_bad_sheet(settings, staff)

    assert main(["--config", str(config), "check", "--now", "2026-11-27"]) == 1
    out = capsys.readouterr().out.splitlines()
    problems = [line for line in out if line.startswith(("Partners ", "Referrals "))]
    assert len(BAD_PARTNERS) + len(BAD_REFERRALS) >= 20
    book = read_book(open_backend(settings), settings)
    referral_status = {r.id: r.status for r in book.referrals}
    for row, words in BAD_PARTNERS:
        mine = [line for line in problems if line.startswith(f"Partners {row[0]}") and words in line]
        assert len(mine) == 1, (row[0], words, problems)
    for row, words in BAD_REFERRALS:  # patient rows: printed without their cells, the status has it all
        mine = [line for line in problems if line.startswith(f"Referrals {row[0]}: ")]
        assert len(mine) == 1 and mine[0].endswith("; see the row's Automation status"), (row[0], problems)
        assert words in referral_status[row[0]], (row[0], words, referral_status[row[0]])
    assert "Referrals R-0004: Patient email (value hidden) is not a valid address; see the row's Automation status" \
        in problems
    assert len(problems) == len(BAD_PARTNERS) + len(BAD_REFERRALS)
    assert "check: 21 problem(s)" in out[-1]

    by_id = {p.business: p.status for p in book.partners}
    assert by_id["Good Gym"] == ""
    assert by_id["Bad Stage"].startswith("Needs attention: Stage is 'Maybe later'")
    assert by_id['=HYPERLINK("http://x","y")'].startswith("Needs attention: Business holds a formula")
    duplicate = next(p for p in book.partners if p.business == "Duplicate ID Gym")
    assert duplicate.status.startswith("Needs attention: duplicate Partner ID")
    # The formula cell stays text on both backends.
    assert [r[1] for r in staff.grid("Partners") if r[0] == "P-0009"] == ['=HYPERLINK("http://x","y")']


def test_fixed_rows_get_their_problem_status_cleared(tmp_path: Path, staff_for: Callable[[Settings], Staff],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)
    config = config_for(tmp_path / "settings.toml", settings)
    staff = staff_for(settings)
    staff.replace("Partners", [PARTNERS_HEADER, ["P-0001", "Gym", "Other", "Ann", "ann@", "Prospect"]])
    init_sheet(open_backend(settings), settings)
    assert main(["--config", str(config), "check"]) == 1
    staff.edit("Partners", "P-0001", Email="ann@gym.example")
    assert main(["--config", str(config), "check"]) == 0
    assert read_book(open_backend(settings), settings).partners[0].status == "Checked: no problems"
    assert capsys.readouterr().out.splitlines()[-1] == "check: 1 row(s), no problems"


def test_missing_tab_in_a_new_sheet_names_it_and_init_as_the_fix(
    tmp_path: Path, staff_for: Callable[[Settings], Staff], capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(tmp_path)
    staff_for(settings).replace("Partners", [PARTNERS_HEADER])
    assert main(["--config", str(config_for(tmp_path / "settings.toml", settings)), "check"]) == 1
    assert "Referrals tab not found; run `partnerloop init` to add it" in capsys.readouterr().out.splitlines()


def test_missing_column_names_it_and_init_as_the_fix(tmp_path: Path, staff_for: Callable[[Settings], Staff],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)
    init_sheet(open_backend(settings), settings)
    staff = staff_for(settings)
    staff.replace("Partners", [["Partner ID", "Stage"], ["P-0001", "Prospect"]])
    assert main(["--config", str(config_for(tmp_path / "settings.toml", settings)), "check"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "Partners: column Business not found (outreach, discharge, referrals_in, events, scorecard, dashboard, " \
           "digest decide by it); add the column (`partnerloop init` adds it)" in out
    assert "Partners: column Outreach step not found (outreach decides by it); add the column " \
           "(`partnerloop init` adds it)" in out


def test_google_wrong_key_is_one_line_and_writes_nothing(tmp_path: Path, emulator: Any,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "g.toml", sheet={"backend": "google", "key": "no-such-sheet",
                                                      "api_endpoint": emulator.base_url})
    emulator.reset_requests()
    assert main(["--config", str(config), "check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["partnerloop check: spreadsheet key 'no-such-sheet' not found; check [sheet] key in the config"]
    assert all(r.method == "GET" for r in emulator.requests)


@pytest.mark.parametrize(("content", "words"), [
    (None, "key file {path} not found"),
    ("{not json", "{path} is not a service-account key file"),
    (json.dumps({"type": "service_account", "client_email": "x@y.example"}), "{path} is not a service-account key file"),
])
def test_google_missing_or_invalid_credentials_is_one_line(tmp_path: Path, content: str | None, words: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "service-account.json"
    if content is not None:
        key_file.write_text(content)
    config = write_config(tmp_path / "g.toml", sheet={"backend": "google", "key": "abc", "credentials": key_file})
    assert main(["--config", str(config), "check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words.format(path=key_file) in err[0]


def test_init_demo_then_check_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)
    config = config_for(tmp_path / "settings.toml", settings)
    assert main(["--config", str(config), "init", "--demo", "--now", "2026-11-27"]) == 0
    assert main(["--config", str(config), "check", "--now", "2026-11-27"]) == 0
    book = read_book(open_backend(settings), settings)
    assert len(book.partners) == 10 and book.referrals and book.events
    assert book.events[0].date == date(2026, 11, 30)


def test_a_broken_template_is_a_check_problem_naming_file_and_line(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from automations.config import DEFAULT_TEMPLATES

    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, templates)
    broken = templates / "referral_thanks.html.j2"
    broken.write_text(broken.read_text() + "\n{% if %}\n")
    settings = make_settings(tmp_path)
    config = config_for(tmp_path / "settings.toml", settings, templates={"dir": templates})
    init_sheet(open_backend(settings), settings)
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "Templates: " in out and "referral_thanks.html.j2 line" in out


OLD_PARTNERS = [["Partner ID", "Business", "Contact name", "Email", "Stage", "Perk", "Referral procedure", "Do not email"],
                ["P-0001", "Run Club", "Leo Martins", "leo@runclub.example", "Active", "two free runs",
                 "Coach Leo phones within 2 days", ""],
                ["P-0002", "Iron Gym", "Dana Cole", "dana@irongym.example", "Active", "",
                 "Dana emails us the client's first name", ""],
                ["P-0003", "Quiet Yoga", "Ann Lee", "ann@quietyoga.example", "Active", "", "", ""],
                ["P-0004", "New Studio", "Bo Park", "bo@newstudio.example", "Agreement", "",
                 "Bo emails us the client's first name", ""]]
OLD_REFERRALS = [["Referral ID", "Direction", "Partner", "Patient first name", "Patient last name", "Patient email",
                  "Consent", "Consent expires", "Goal", "Discharge date"],
                 ["R-0001", "Out", "Run Club", "Jordan", "Blake", "jordan@mail.example", "Yes", "2027-06-01",
                  "Back to running 5k", "2026-11-26"]]


def test_a_sheet_with_the_old_referral_procedure_column_is_migrated_by_staff_through_init_and_check(
    tmp_path: Path, staff_for: Callable[[Settings], Staff], capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(tmp_path)
    config = str(config_for(tmp_path / "settings.toml", settings))
    staff = staff_for(settings)
    staff.replace("Partners", OLD_PARTNERS)
    staff.replace("Referrals", OLD_REFERRALS)

    # Before init: the new columns are missing, and jobs that decide by them do nothing.
    assert main(["--config", config, "check", "--now", "2026-11-27"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "Partners: column Taking our patients not found (discharge decides by it); add the column " \
           "(`partnerloop init` adds it)" in out
    assert "Referrals: column Share not found (discharge decides by it); add the column (`partnerloop init` adds it)" \
        in out

    # init adds the two new columns (and Share) after the old ones; nothing is deleted or reordered.
    assert main(["--config", config, "init"]) == 0
    header = staff.grid("Partners")[0]
    assert header[:8] == OLD_PARTNERS[0]
    assert "Taking our patients" in header[8:] and "Sending us clients" in header[8:]
    assert [row[6] for row in staff.grid("Partners")[1:]] == [r[6] for r in OLD_PARTNERS[1:]]  # the text stays
    assert "Share" in staff.grid("Referrals")[0][len(OLD_REFERRALS[0]):]

    # check asks once, naming the tab, the rows with text, what to do, and that the column can go once empty.
    capsys.readouterr()
    assert main(["--config", config, "check", "--now", "2026-11-27"]) == 1
    out = capsys.readouterr().out.splitlines()
    asked = [line for line in out if "Referral procedure" in line]
    assert asked == [
        "Partners: the old column Referral procedure still holds text on P-0001, P-0002, P-0004. It meant two things, so "
        "nothing is guessed: move each text into Taking our patients (how a patient we introduce starts with that "
        "partner: a booking link or code, who calls whom) or Sending us clients (how the partner sends clients to "
        "us), then clear the cell. Once the column is empty, delete it. Until then these partners get no welcome "
        "or discharge email."]
    partners = {p.id: p for p in read_book(open_backend(settings), settings).partners}
    assert partners["P-0001"].status.startswith("Needs attention: Referral procedure is an old column and holds "
                                                "text here: move it into Taking our patients")
    assert partners["P-0003"].status == ""

    # Until staff move the text, no welcome or discharge email goes to those partners: the old text is never emailed.
    assert main(["--config", config, "run", "outreach", "discharge", "--now", "2026-11-27"]) == 0
    assert not list((tmp_path / "outbox").glob("*.eml"))
    referral = read_book(open_backend(settings), settings).referrals[0]
    assert referral.status.startswith("Waiting: Run Club (P-0001) still has text in the old Referral procedure column")

    staff.edit("Partners", "P-0001", Taking_our_patients="Coach Leo phones within 2 days", Referral_procedure="")
    staff.edit("Partners", "P-0002", Sending_us_clients="Dana emails us the client's first name",
               Referral_procedure="")
    staff.edit("Partners", "P-0004", Sending_us_clients="Bo emails us the client's first name", Referral_procedure="")
    capsys.readouterr()
    assert main(["--config", config, "check", "--now", "2026-11-27"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Partners: the old column Referral procedure is empty; delete it (partnerloop no longer reads it)" in out
    assert read_book(open_backend(settings), settings).partners[0].status == "Checked: no problems"

    assert main(["--config", config, "run", "outreach", "discharge", "--now", "2026-11-27"]) == 0
    sent = {p.name.rsplit("-", 1)[-1]: " ".join(p.read_text().split()) for p in (tmp_path / "outbox").glob("*.eml")}
    assert sorted(sent) == ["discharge_partner.eml", "discharge_patient.eml", "partnership_welcome.eml"]
    assert "Coach Leo phones within 2 days" in sent["discharge_partner.eml"]
    assert "Coach Leo phones within 2 days" in sent["discharge_patient.eml"]
    assert "Your clients, to us: Bo emails us the client's first name." in sent["partnership_welcome.eml"]


def test_a_clinical_goal_is_a_warning_on_the_row_that_does_not_fail_check(
    tmp_path: Path, staff_for: Callable[[Settings], Staff], capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(tmp_path)
    config = str(config_for(tmp_path / "settings.toml", settings))
    staff = staff_for(settings)
    staff.replace("Partners", [["Partner ID", "Business", "Email", "Stage"], ["P-0001", "Gym", "g@gym.example", "Active"]])
    staff.replace("Referrals", [
        ["Referral ID", "Direction", "Partner", "Patient first name", "Consent", "Consent expires", "Share", "Goal",
         "Partner emailed", "Automation status"],
        ["R-0001", "Out", "Gym", "Pat", "Yes", "2027-01-01", "Name, contact and goal", "Squat after ACL Post-Op rehab"],
        ["R-0002", "Out", "Gym", "Lee", "Yes", "2027-01-01", "", "Tear up the 5k"],  # "tear" as a whole word
        ["R-0003", "Out", "Gym", "Kim", "Yes", "2027-01-01", "", "Back to running 5k"],
        ["R-0004", "Out", "Gym", "Max", "Yes", "", "", "Hike again"],
        ["R-0005", "Out", "Gym", "Ida", "Yes", "2027-01-01", "", "Run after the fracture healed", "",
         "Partner emailed 2026-11-20"],
    ])
    init_sheet(open_backend(settings), settings)
    assert main(["--config", config, "check", "--now", "2026-11-27"]) == 0
    out = capsys.readouterr().out.splitlines()
    warnings = [line for line in out if line.startswith("warning: ")]
    assert warnings == [
        "warning: Referrals R-0001: Goal reads as clinical ((value hidden), (value hidden)): write what the patient "
        "wants to get back to, like Back to running 5k; Share lets the partner see it; see the row's Automation status",
        "warning: Referrals R-0002: Goal reads as clinical ((value hidden)): write what the patient wants to get back "
        "to, like Back to running 5k; see the row's Automation status",
        "warning: Referrals R-0004: Consent is Yes but Consent expires is empty: add the expiry date from the signed "
        "authorization; nothing is shared with the partner until then; see the row's Automation status",
        "warning: Referrals R-0005: Goal reads as clinical ((value hidden)): write what the patient wants to get back "
        "to, like Back to running 5k; see the row's Automation status",
    ]
    assert not any(word in "\n".join(out) for word in ("ACL", "Post-Op", "Squat", "Tear"))  # patient data not printed
    assert out[-1] == "check: 6 row(s), no problems; 4 warning(s) above (they do not fail the check)"
    statuses = {r.id: r.status for r in read_book(open_backend(settings), settings).referrals}
    assert statuses["R-0001"] == ("Warning: Goal reads as clinical ('post-op', 'acl'): write what the patient wants "
                                  "to get back to, like Back to running 5k; Share lets the partner see it")
    assert statuses["R-0003"] == ""
    assert statuses["R-0005"] == ("Partner emailed 2026-11-20 · Warning: Goal reads as clinical ('fracture'): write "
                                  "what the patient wants to get back to, like Back to running 5k")  # after the job's

    staff.edit("Referrals", "R-0001", Goal="Squat with the grandkids")
    staff.edit("Referrals", "R-0005", Goal="Run a 10k")
    assert main(["--config", config, "check", "--now", "2026-11-27"]) == 0
    statuses = {r.id: r.status for r in read_book(open_backend(settings), settings).referrals}
    assert statuses["R-0001"] == "Checked: no problems"
    assert statuses["R-0005"] == "Partner emailed 2026-11-20"  # the warning goes, what the job said stays
