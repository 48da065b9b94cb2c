"""The scorecard job: once a quarter, each Active partner gets the partnership's numbers, in counts.

Every test runs over a real sheet (an xlsx workbook in tmp_path, once the Sheets emulator) and
delivers to a real SMTP server on 127.0.0.1; it asserts what arrived there and what the sheet holds.
The expected figures are counted here from the rows the test made, by the rules the email states.
"""

from __future__ import annotations

import itertools
import re
import shutil
from dataclasses import replace
from datetime import date, datetime, time
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

import markupsafe
import openpyxl
import pytest

from automations.check import init_sheet
from automations.cli import main
from automations.config import Settings, StaffMember
from automations.errors import SheetLayoutError
from automations.executor import RunReport, run_jobs
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import Staff, google_settings, make_settings, plan_for, seed_sheet, world_for
from tests.support.configs import config_for
from tests.support.smtp_server import SmtpServer, email_section

TZ = ZoneInfo("America/Chicago")
Q2_START = date(2027, 4, 1)  # a Thursday: the first weekday of 2027-Q2, which reports Q1 2027 against Q4 2026
Q1 = (date(2027, 1, 1), date(2027, 3, 31))
Q4 = (date(2026, 10, 1), date(2026, 12, 31))

RUN = {"Partner ID": "P-0001", "Business": "Riverbend Running Club", "Contact name": "Leo Martins",
       "Email": "leo@riverbend.example", "Stage": "Active", "Owner": "Ana Reyes"}
GYM = {"Partner ID": "P-0002", "Business": "Iron & Oak Gym", "Contact name": "Dana Whitfield",
       "Email": "dana@ironoak.example", "Stage": "Active", "Scorecard": "Yes"}
PARTNERS = [
    RUN,
    GYM,
    {"Partner ID": "P-0003", "Business": "Quiet Studio", "Email": "quiet@studio.example", "Stage": "Active",
     "Scorecard": "No"},
    {"Partner ID": "P-0004", "Business": "Blue Line Boxing", "Email": "ray@boxing.example", "Stage": "Paused"},
    {"Partner ID": "P-0005", "Business": "Lotus Flow Yoga", "Email": "priya@lotus.example", "Stage": "Prospect",
     "Outreach step": 1, "Last emailed": date(2027, 3, 30), "Next follow-up": date(2027, 4, 6)},
    {"Partner ID": "P-0006", "Business": "Still Water Massage", "Email": "ken@stillwater.example", "Stage": "Active",
     "Do not email": "Yes"},
    {"Partner ID": "P-0007", "Business": "Green Plate Nutrition", "Stage": "Active"},
    {"Partner ID": "P-0008", "Business": "Harbor Massage", "Email": "tom@harbor.example", "Stage": "Active"},
    {"Partner ID": "P-0009", "Business": "Core Pilates Loft", "Email": "ines@corepilates.example", "Stage": "Active",
     "Scorecard": "maybe"},
]
OPTOUTS = [{"Email": "tom@harbor.example", "Date": date(2027, 2, 1), "Reason": "Asked by phone"}]
SENT_TO = {"leo@riverbend.example", "dana@ironoak.example"}
NAMES = itertools.cycle(("Zebulon Quartermain", "Philippa Marchetti", "Octavia Brightwater", "Ignatius Fairweather",
              "Rosalind Threlkeld", "Barnaby Vantongeren", "Henrietta Oyelaran", "Leopold Castellanos",
              "Marguerite Abernethy", "Cornelius Wolstenholme", "Evangeline Szymanski", "Thaddeus Okonkwo",
              "Wilhelmina Petrakis"))


def referral(rid: str, direction: str, partner: str, referred: date | None = None, *, discharge: date | None = None,
             visit: date | None = None) -> dict[str, Any]:
    first, last = next(NAMES).split()
    row = {"Referral ID": rid, "Direction": direction, "Partner": partner, "Patient first name": first,
           "Patient last name": last, "Patient email": f"{first.lower()}.{last.lower()}@mail.example",
           "Referred on": referred, "Consent": "Yes", "Consent expires": date(2028, 1, 1),
           "Goal": f"Back to dancing with {first}'s grandchildren", "Discharge date": discharge, "First visit": visit,
           "Partner emailed": discharge, "Patient emailed": discharge, "Thanks sent": referred, "Update sent": visit, "Loop closed": discharge}
    return {k: v for k, v in row.items() if v is not None}


REFERRALS = [
    referral("R-0001", "Out", "Riverbend Running Club", date(2027, 1, 10), discharge=date(2027, 1, 10),
             visit=date(2027, 1, 20)),
    referral("R-0002", "Out", "Riverbend Running Club", date(2027, 3, 30), visit=date(2027, 4, 1)),  # visit: Q2
    referral("R-0003", "Out", "Riverbend Running Club", discharge=date(2027, 2, 14)),  # dated by its discharge
    referral("R-0004", "Out", "Riverbend Running Club", date(2026, 12, 20), visit=date(2027, 1, 5)),
    referral("R-0005", "In", "Riverbend Running Club", date(2027, 2, 1), visit=date(2027, 2, 3)),
    referral("R-0006", "In", "Riverbend Running Club", date(2026, 11, 11), visit=date(2026, 11, 20)),
    referral("R-0007", "In", "Riverbend Running Club", visit=date(2027, 3, 1)),  # no Referred on: its visit counts
    referral("R-0008", "In", "Riverbend Running Club", date(2026, 9, 30)),  # Q3 2026: in neither quarter
    referral("R-0009", "Out", "Iron & Oak Gym", date(2027, 1, 15)),
    referral("R-0010", "In", "Iron & Oak Gym", date(2026, 10, 2), visit=date(2026, 10, 9)),
    referral("R-0011", "Out", "Quiet Studio", date(2027, 1, 20)),
    referral("R-0012", "In", "Riverbend Running Club", date(2027, 4, 1)),  # this quarter: not counted yet
    referral("R-0013", "Out", "P-0001", date(2026, 10, 15), visit=date(2026, 11, 1)),  # named by Partner ID
]
EVENTS = [
    {"Event ID": "E-0001", "Event": "Spring 5k warm-up", "Date": datetime(2027, 2, 20, 9), "Partner": "Riverbend Running Club",
     "Reminder sent": date(2027, 2, 17)},
    {"Event ID": "E-0002", "Event": "Winter gait clinic", "Date": datetime(2026, 12, 5, 10), "Partner": "Riverbend Running Club",
     "Reminder sent": date(2026, 12, 2)},
    {"Event ID": "E-0003", "Event": "Trail day", "Date": datetime(2026, 10, 10, 8), "Partner": "P-0001",
     "Reminder sent": date(2026, 10, 7)},
    {"Event ID": "E-0004", "Event": "Strength for seniors", "Date": datetime(2027, 3, 15, 11), "Partner": "Iron & Oak Gym",
     "Reminder sent": date(2027, 3, 12)},
    {"Event ID": "E-0005", "Event": "Open house", "Date": datetime(2027, 1, 30, 10), "Reminder sent": date(2027, 1, 27)},
    {"Event ID": "E-0006", "Event": "Spring run", "Date": datetime(2027, 4, 15, 9), "Partner": "Riverbend Running Club"},
]
LABELS = ("Patients we referred to you", "Our patients' first visits with you", "Clients you referred to us",
          "Your clients' first visits with us", "Events we held together")


def at(day: date, hour: int = 9, minute: int = 15) -> datetime:
    return datetime.combine(day, time(hour, minute), TZ)


def with_owner(settings: Settings) -> Settings:
    return replace(settings, staff=(StaffMember("Ana Reyes", "Partnerships lead", "ana@riverside-pt.example",
                                                "(217) 555-0177"),))


def sheet(tmp_path: Path, smtp: SmtpServer, **sections: Any) -> Settings:
    settings = with_owner(make_settings(tmp_path, email=email_section(smtp), **sections))
    seed_sheet(settings, PARTNERS, REFERRALS, EVENTS, optouts=OPTOUTS)
    return settings


def run(settings: Settings, moment: datetime, jobs: Sequence[str] = ("scorecard",)) -> RunReport:
    return run_jobs(world_for(settings, lambda: moment), list(jobs))


def statuses(settings: Settings) -> dict[str, str]:
    return {p.id: p.status for p in read_book(open_backend(settings), settings).partners}


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def html_of(message: EmailMessage) -> str:
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def by_recipient(smtp: SmtpServer) -> dict[str, list[EmailMessage]]:
    found: dict[str, list[EmailMessage]] = {}
    for received in smtp.messages:
        for address in received.recipients:
            found.setdefault(address, []).append(received.message)
    return found


# -- the figures, counted from the rows this file made -------------------------------------------------
def _in(day: Any, span: tuple[date, date]) -> bool:
    day = day.date() if isinstance(day, datetime) else day
    return isinstance(day, date) and span[0] <= day <= span[1]


def expected(partner: Mapping[str, Any], span: tuple[date, date]) -> tuple[int, ...]:
    """Referrals each way dated in the span (an Out one without Referred on by its Discharge date), first
    visits in the span, and the partner's events in it; a Partner cell names the Business or the ID."""
    names = {partner["Business"], partner["Partner ID"]}
    ours = [r for r in REFERRALS if r["Partner"] in names]
    out = [r for r in ours if r["Direction"] == "Out"]
    inbound = [r for r in ours if r["Direction"] == "In"]
    return (sum(_in(r.get("Referred on") or r.get("Discharge date"), span) for r in out),
            sum(_in(r.get("First visit"), span) for r in out),
            sum(_in(r.get("Referred on"), span) for r in inbound),
            sum(_in(r.get("First visit"), span) for r in inbound),
            sum(_in(e["Date"], span) for e in EVENTS if e.get("Partner") in names))


def table_in(text: str) -> dict[str, tuple[int, int]]:
    """The scorecard's table as the text part shows it: label -> (reported quarter, the one before)."""
    rows = {}
    for line in text.splitlines():
        found = re.fullmatch(r"(.+?)\s{2,}(\d+)\s+(\d+)", line.strip())
        if found:
            rows[found.group(1)] = (int(found.group(2)), int(found.group(3)))
    return rows


# -- the tests -----------------------------------------------------------------------------------------
def test_a_quarter_start_sends_one_scorecard_to_each_active_partner_that_has_not_said_no(
        tmp_path: Path, smtp: SmtpServer) -> None:
    settings = sheet(tmp_path, smtp)
    report = run(settings, at(Q2_START))
    assert report.count("sent") == 2
    assert sorted(r for m in smtp.messages for r in m.recipients) == sorted(SENT_TO)  # one each
    now = statuses(settings)
    assert now["P-0001"] == now["P-0002"] == "Quarterly scorecard sent 2027-04-01: Q1 2027 against Q4 2026"
    assert now["P-0003"] == now["P-0004"] == now["P-0005"] == ""  # No, Paused, Prospect: nothing, not even a note
    assert now["P-0006"] == "Quarterly scorecard (Q1 2027) not sent: Do not email is Yes"
    assert now["P-0007"] == "Quarterly scorecard (Q1 2027) not sent: no Email on the row"
    assert now["P-0008"] == "Quarterly scorecard (Q1 2027) not sent: the address is on Opt-outs"
    assert now["P-0009"] == "Needs attention: Scorecard is 'maybe'; use Yes or No"
    log = open_backend(settings).read(["Log"])["Log"]
    assert log is not None
    assert sorted((log.get(r, "Job"), log.get(r, "Template"), log.get(r, "Row")) for r in log.rows) == [
        ("scorecard", "partner_scorecard", "P-0001"), ("scorecard", "partner_scorecard", "P-0002")]


def test_the_email_reports_the_quarter_just_ended_against_the_one_before_and_says_so(
        tmp_path: Path, smtp: SmtpServer) -> None:
    settings = sheet(tmp_path, smtp)
    run(settings, at(Q2_START))
    [message] = by_recipient(smtp)["leo@riverbend.example"]
    text = " ".join(text_of(message).split())
    assert message["Subject"] == "Our partnership in Q1 2027: the numbers, from Riverside Physical Therapy"
    assert text.startswith("Riverside Physical Therapy") and "Hi Leo," in text
    assert ("Here is how our partnership went in the last full quarter, January to March 2027, next to the "
            "quarter before, October to December 2026. Q2 2027 is under way and not counted yet") in text
    assert "Between us Q1 2027 Q4 2026" in text
    assert "Thank you." in text and "talk the numbers over" in text
    assert "Ana Reyes, Partnerships lead" in text and "(217) 555-0177" in text  # signed by the partner's Owner
    assert message["Reply-To"] == "Ana Reyes <ana@riverside-pt.example>"
    assert "{{" not in text and "None" not in text
    [gym] = by_recipient(smtp)["dana@ironoak.example"]
    assert "The partnerships team at Riverside Physical Therapy" in text_of(gym)  # no Owner: the team signs


def test_the_figures_in_the_email_are_the_sheets_counts(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = sheet(tmp_path, smtp)
    run(settings, at(Q2_START))
    received = by_recipient(smtp)
    for partner in (RUN, GYM):
        [message] = received[str(partner["Email"])]
        table = table_in(text_of(message))
        assert list(table) == list(LABELS)
        assert tuple(v for v, _ in table.values()) == expected(partner, Q1)
        assert tuple(p for _, p in table.values()) == expected(partner, Q4)
        for label in LABELS:
            assert f">{markupsafe.escape(label)}<" in html_of(message)
    assert expected(RUN, Q1) != expected(RUN, Q4) and 0 not in expected(RUN, Q1)  # the counts can tell rows apart


def test_no_patient_name_or_detail_appears_anywhere_in_the_message(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = sheet(tmp_path, smtp)
    run(settings, at(Q2_START))
    assert len(smtp.messages) == 2
    for received in smtp.messages:
        whole = "\n".join([received.raw.decode("utf-8", "replace"), str(received.message["Subject"]),
                           text_of(received.message), html_of(received.message)])
        for row in REFERRALS:
            for column in ("Patient first name", "Patient last name", "Patient email", "Goal", "Referral ID"):
                assert str(row[column]) not in whole, (column, received.recipients)


def test_a_quiet_quarter_still_gets_its_scorecard_with_zeros_and_a_kind_word(
        tmp_path: Path, smtp: SmtpServer) -> None:
    settings = make_settings(tmp_path, email=email_section(smtp))
    seed_sheet(settings, [{"Partner ID": "P-0001", "Business": "New Leaf Pilates", "Email": "hello@newleaf.example",
                           "Stage": "Active"}])
    assert run(settings, at(Q2_START)).count("sent") == 1
    text = text_of(smtp.messages[0].message)
    assert set(table_in(text).values()) == {(0, 0)} and list(table_in(text)) == list(LABELS)
    flat = " ".join(text.split())
    assert "Hello New Leaf Pilates team," in flat  # no Contact name
    assert "There was nothing to count between us this time" in flat and "Thank you. Every client" not in flat
    assert "If a patient we sent you has started with you" not in flat  # we sent nobody


def test_reruns_in_the_quarter_send_nothing_more_and_the_next_quarter_sends_again(
        tmp_path: Path, smtp: SmtpServer) -> None:
    settings = sheet(tmp_path, smtp)
    run(settings, at(Q2_START))
    for moment in (at(Q2_START, 9, 16), at(Q2_START, 16), at(date(2027, 4, 2)), at(date(2027, 5, 17)),
                   at(date(2027, 6, 30), 17)):
        assert run(settings, moment).count("sent") == 0
    assert len(smtp.messages) == 2
    assert statuses(settings)["P-0001"] == "Quarterly scorecard sent 2027-04-01: Q1 2027 against Q4 2026"

    report = run(settings, at(date(2027, 7, 1)))  # 2027-Q3 begins (a Thursday)
    assert report.count("sent") == 2
    assert sorted(r for m in smtp.messages[2:] for r in m.recipients) == sorted(SENT_TO)
    [july] = [m for m in by_recipient(smtp)["leo@riverbend.example"] if "Q2 2027" in str(m["Subject"])]
    assert "Between us Q2 2027 Q1 2027" in " ".join(text_of(july).split())
    assert table_in(text_of(july))["Patients we referred to you"] == (0, expected(RUN, Q1)[0])
    assert run(settings, at(date(2027, 7, 2))).count("sent") == 0


def test_a_run_later_in_the_quarter_sends_what_has_not_gone(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = sheet(tmp_path, smtp)
    assert run(settings, at(date(2027, 5, 12))).count("sent") == 2  # the first run of the quarter, in May
    staff = Staff(settings)
    staff.edit("Partners", "P-0009", Scorecard="Yes")  # the cell is fixed
    staff.edit("Partners", "P-0007", Email="hello@greenplate.example")  # an address is added
    report = run(settings, at(date(2027, 5, 13)))
    assert sorted(r for m in smtp.messages[2:] for r in m.recipients) == [
        "hello@greenplate.example", "ines@corepilates.example"]
    assert report.count("sent") == 2
    assert statuses(settings)["P-0009"] == "Quarterly scorecard sent 2027-05-13: Q1 2027 against Q4 2026"


def test_nothing_is_due_before_the_first_weekday_of_a_quarter(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = sheet(tmp_path, smtp)
    saturday, monday = date(2028, 4, 1), date(2028, 4, 3)  # 2028-Q2 begins on a Saturday
    assert plan_for(settings, "scorecard", at(saturday)).emails == ()
    assert plan_for(settings, "scorecard", at(date(2028, 4, 2))).emails == ()
    due = plan_for(settings, "scorecard", at(monday)).emails
    assert sorted(e.to_email for e in due) == sorted(SENT_TO) and {e.step for e in due} == {"2028-Q2"}


def test_scorecard_enabled_false_sends_nothing_and_the_summary_says_so(
        tmp_path: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    settings = sheet(tmp_path, smtp)
    config = config_for(tmp_path / "off.toml", settings, scorecard={"enabled": False})
    assert main(["--config", str(config), "run", "scorecard", "--now", "2027-04-01T09:15"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["scorecard: sent 0 email(s)",
                       "scorecard: off ([scorecard] enabled = false in the config); no scorecards are sent"]
    assert smtp.messages == []
    assert statuses(settings)["P-0006"] == ""  # nobody's row is told anything either
    on = config_for(tmp_path / "on.toml", settings)
    assert main(["--config", str(on), "run", "scorecard", "--now", "2027-04-01T09:20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "scorecard: sent 2 email(s)" and not any("enabled = false" in line for line in out)


def test_a_sheet_without_the_scorecard_column_sends_no_scorecard_until_init_adds_it(
        tmp_path: Path, smtp: SmtpServer) -> None:
    settings = sheet(tmp_path, smtp)
    workbook = openpyxl.load_workbook(settings.sheet.path)
    partners = workbook["Partners"]
    header = [c.value for c in partners[1]]
    partners.delete_cols(header.index("Scorecard") + 1)  # a sheet made before the column existed
    workbook.save(settings.sheet.path)

    with pytest.raises(SheetLayoutError) as refused:
        run(settings, at(Q2_START))
    assert str(refused.value) == ("Partners: column Scorecard not found (scorecard decides by it); add the column "
                                  "(`partnerloop init` adds it)")
    others = run(settings, at(Q2_START), ["outreach", "referrals_in"])  # the other jobs still run on it
    assert others.fatal == "" and others.count("sent") == 1  # R-0007's thank-you, which had not gone
    assert [str(m.message["X-Partnerloop-Template"]) for m in smtp.messages] == ["referral_thanks"]

    assert init_sheet(open_backend(settings), settings) == ["Partners: added column(s) Scorecard"]
    assert run(settings, at(Q2_START, 10)).count("sent") == 4  # every cell is blank now: Yes
    assert sorted(r for m in smtp.messages[1:] for r in m.recipients) == sorted(
        {*SENT_TO, "ines@corepilates.example", "quiet@studio.example"})
    assert "Scorecard" in [c.value for c in openpyxl.load_workbook(settings.sheet.path)["Partners"][1]]


def test_a_lost_state_dir_does_not_send_the_quarters_scorecards_again(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = sheet(tmp_path, smtp)
    run(settings, at(Q2_START))
    shutil.rmtree(settings.state_dir)
    report = run(settings, at(date(2027, 4, 2)))
    assert report.count("sent") == 0 and len(smtp.messages) == 2
    assert any("the send ledger was empty" in note for note in report.notes)
    assert run(settings, at(date(2027, 7, 1))).count("sent") == 2  # the next quarter's still goes


def test_on_a_google_sheet_the_scorecard_goes_once_and_the_rows_say_so(
        tmp_path: Path, smtp: SmtpServer, emulator: Any, staff_for: Callable[[Settings], Staff]) -> None:
    settings = with_owner(google_settings(tmp_path, emulator, email=email_section(smtp)))
    seed_sheet(settings, PARTNERS, REFERRALS, EVENTS, optouts=OPTOUTS)
    assert run(settings, at(Q2_START)).count("sent") == 2
    assert run(settings, at(date(2027, 4, 5))).count("sent") == 0
    assert sorted(r for m in smtp.messages for r in m.recipients) == sorted(SENT_TO)
    grid = staff_for(settings).grid("Partners")
    column = grid[0].index("Automation status")
    rows = {row[0]: row[column] if column < len(row) else "" for row in grid[1:]}
    assert rows["P-0001"] == "Quarterly scorecard sent 2027-04-01: Q1 2027 against Q4 2026"
    assert rows["P-0006"] == "Quarterly scorecard (Q1 2027) not sent: Do not email is Yes"
    [message] = by_recipient(smtp)["dana@ironoak.example"]
    assert tuple(v for v, _ in table_in(text_of(message)).values()) == expected(GYM, Q1)


@pytest.mark.parametrize(("cell", "enabled", "promised"), [("", True, True), ("Yes", True, True),
                                                             ("No", True, False), ("", False, False)])
def test_the_welcome_promises_quarterly_numbers_only_to_a_partner_who_will_get_them(
        tmp_path: Path, smtp: SmtpServer, cell: str, enabled: bool, promised: bool) -> None:
    settings = replace(make_settings(tmp_path, email=email_section(smtp)), scorecard_enabled=enabled)
    seed_sheet(settings, partners=[{"Partner ID": "P-0001", "Business": "Harbor Gym", "Contact name": "Dana Park",
                                    "Email": "dana@harbor.example", "Stage": "Agreement", "Scorecard": cell}])
    run_jobs(world_for(settings, lambda: datetime(2026, 11, 27, 9, 0, tzinfo=ZoneInfo("America/Chicago"))),
             ["outreach"])
    (welcome,) = smtp.messages
    assert welcome.message["X-Partnerloop-Template"] == "partnership_welcome"
    text = " ".join(str(welcome.message.get_body(("plain",)).get_content()).split())  # type: ignore[union-attr]
    assert ("start of every quarter" in text) is promised
