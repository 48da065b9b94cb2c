"""The sheet as staff really edit it (issue 13): free text in flag cells, opt-outs in every form,
loose or ambiguous Partner references. Each scenario runs the real jobs on an xlsx workbook with the
outbox transport and asserts what was (not) sent and what the rows say."""

from __future__ import annotations

import email
from datetime import date, datetime, time, timedelta
from email.message import Message
from email.utils import getaddresses
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automations.check import init_sheet
from automations.cli import main
from automations.config import Settings
from automations.errors import SheetError
from automations.executor import World, run_jobs
from automations.mail.ledger import Ledger
from automations.model import Book, read_book
from automations.schema import PARTNERS
from automations.sheets import open_backend
from tests.conftest import Staff, make_settings
from tests.support.configs import config_for

TZ = ZoneInfo("America/Chicago")
TODAY = date(2026, 11, 23)  # a Monday
STAFF = "frontdesk@riverside-pt.example"


def d(days: int) -> date:
    return TODAY + timedelta(days=days)


def sheet(tmp_path: Path, partners: list[dict[str, Any]], referrals: list[dict[str, Any]] = (),  # type: ignore[assignment]
          events: list[dict[str, Any]] = (), optouts: list[dict[str, Any]] = ()) -> Settings:  # type: ignore[assignment]
    """An xlsx workbook holding these rows, and settings that send to an outbox folder."""
    settings = make_settings(tmp_path)
    init_sheet(open_backend(settings), settings, {"partners": partners, "referrals": list(referrals),
                                                  "events": list(events), "optouts": list(optouts)})
    return settings


def run(settings: Settings, *jobs: str) -> list[Message]:
    """Run *jobs* at 09:00 today; the emails that went out (parsed from the outbox)."""
    now = datetime.combine(TODAY, time(9, 0), TZ)
    world = World(settings=settings, backend=open_backend(settings), ledger=Ledger.in_state_dir(settings.state_dir),
                  clock=lambda: now)
    run_jobs(world, list(jobs))
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(settings.email.outbox_dir.glob("*.eml"))]


def recipients(messages: list[Message]) -> list[str]:
    return sorted(a.lower() for m in messages for _, a in getaddresses(m.get_all("To", [])))


def book_of(settings: Settings) -> Book:
    return read_book(open_backend(settings), settings)


def active(pid: str, business: str, address: str, **cells: Any) -> dict[str, Any]:
    return {"Partner ID": pid, "Business": business, "Contact name": "Leo Martins", "Email": address,
            "Stage": "Active", "Perk": "a free class", **cells}


def test_do_not_email_with_free_text_blocks_discharge_updates_and_reminders(tmp_path: Path) -> None:
    settings = sheet(
        tmp_path,
        partners=[active("P-0001", "Body Works", "coach@bodyworks.example",
                         **{"Do not email": "Yes - asked by phone 11/20"})],
        referrals=[
            {"Referral ID": "R-0001", "Direction": "Out", "Partner": "Body Works", "Patient first name": "Jordan",
             "Consent": "Yes", "Consent expires": d(200), "Discharge date": d(-1)},
            {"Referral ID": "R-0002", "Direction": "In", "Partner": "P-0001", "Patient first name": "Sam",
             "Consent": "Yes", "Referred on": d(-10), "Thanks sent": d(-9), "First visit": d(-2)},
        ],
        events=[{"Event ID": "E-0001", "Event": "Open house", "Date": datetime.combine(d(2), time(18)),
                 "Partner": "Body Works",
                 "Kind": "Open house"}],
    )
    sent = run(settings, "discharge", "referrals_in", "events")
    assert recipients(sent) == [STAFF]  # the staff reminder only
    book = book_of(settings)
    statuses = {row.id: row.status for row in book.rows()}
    assert statuses["R-0001"] == "Not sent: Body Works cannot be emailed (no Email, Do not email, or opted out)"
    assert statuses["R-0002"] == "Not sent: Body Works cannot be emailed (no Email, Do not email, or opted out)"
    assert statuses["E-0001"].startswith("Partner reminder not sent: Body Works cannot be emailed")
    assert not [p for p in book.problems if "Do not email" in p.message]  # a flag, not a problem


def test_do_not_email_no_and_blank_let_email_through(tmp_path: Path) -> None:
    settings = sheet(
        tmp_path,
        partners=[active("P-0001", "Body Works", "coach@bodyworks.example", **{"Do not email": "No"}),
                  active("P-0002", "Run Club", "run@club.example")],
        referrals=[{"Referral ID": f"R-000{n}", "Direction": "In", "Partner": pid, "Patient first name": "Sam",
                    "Referred on": d(-1)} for n, pid in ((1, "P-0001"), (2, "P-0002"))],
    )
    assert recipients(run(settings, "referrals_in")) == ["coach@bodyworks.example", "run@club.example"]


OPTED_OUT = {
    "Leo Martins <Coach@One.example>": ["coach@one.example"],
    "mailto:two@two.example": ["two@two.example"],
    "three@three.example, leo@three.example": ["three@three.example", "leo@three.example"],
    "four@four.example; amy@four.example": ["four@four.example", "amy@four.example"],
    "five@five.example.": ["five@five.example"],
    "<six@six.example>": ["six@six.example"],
    "SEVEN@Seven.Example": ["seven@seven.example"],
}


def test_an_opt_out_in_any_form_blocks_every_address_it_names(tmp_path: Path) -> None:
    addresses = [a for named in OPTED_OUT.values() for a in named] + ["open@eight.example"]
    partners = [{"Partner ID": f"P-{n:04d}", "Business": f"Gym {n}", "Email": address, "Stage": "Prospect"}
                for n, address in enumerate(addresses, start=1)]
    settings = sheet(tmp_path, partners=partners, optouts=[{"Email": cell, "Reason": "asked"} for cell in OPTED_OUT])
    assert recipients(run(settings, "outreach")) == ["open@eight.example"]
    book = book_of(settings)
    assert {p.status for p in book.partners if p.email != "open@eight.example"} == {
        "Not emailed: the address is on Opt-outs"}
    assert not [p for p in book.problems if p.ref.tab == "Opt-outs"]


def test_an_opt_out_cell_naming_no_address_is_a_problem_but_still_blocks_its_text(tmp_path: Path) -> None:
    settings = sheet(tmp_path, partners=[active("P-0001", "Body Works", "coach@bodyworks.example")],
                     optouts=[{"Email": "Leo from Body Works"}])
    book = book_of(settings)
    assert [(p.ref.tab, p.ref.number, p.message) for p in book.problems] == [
        ("Opt-outs", 2, "Email 'Leo from Body Works' names no address; write the address that asked to stop, "
                        "like name@example.com")]
    assert book.blocked("leo from body works") and not book.blocked("coach@bodyworks.example")


def discharged(rid: str, partner: str, first_name: str) -> dict[str, Any]:
    return {"Referral ID": rid, "Direction": "Out", "Partner": partner, "Patient first name": first_name,
            "Goal": "Back to running 5k", "Consent": "Yes", "Consent expires": d(200), "Discharge date": d(-1)}


def bodies_to(messages: list[Message], address: str) -> str:
    return "\n".join(str(part.get_payload(decode=True), "utf-8") for m in messages
                     if address in recipients([m]) for part in m.walk() if part.get_content_type() == "text/plain")


def test_a_partner_reference_goes_to_the_exact_business_not_a_look_alike(tmp_path: Path) -> None:
    settings = sheet(tmp_path, partners=[active("P-0001", "Body Works", "hello@body-works.example"),
                                         active("P-0002", "BodyWorks", "team@bodyworks.example")],
                     referrals=[discharged("R-0001", "BodyWorks", "Jordan")])
    sent = run(settings, "discharge")
    assert recipients(sent) == ["team@bodyworks.example"]
    assert "Jordan" in bodies_to(sent, "team@bodyworks.example")


@pytest.mark.parametrize("written", ["BodyWorks", "Body-Works", "body  works", "P0001"])
def test_a_loose_partner_reference_sends_nothing_and_names_the_row(tmp_path: Path, written: str) -> None:
    settings = sheet(tmp_path, partners=[active("P-0001", "Body Works", "hello@body-works.example")],
                     referrals=[discharged("R-0001", written, "Jordan")],
                     events=[{"Event ID": "E-0001", "Event": "Open house", "Date": datetime.combine(d(2), time(18)),
                              "Partner": written}])
    sent = run(settings, "discharge", "events")
    assert recipients(sent) == []
    statuses = {row.id: row.status for row in book_of(settings).rows()}
    for row_id in ("R-0001", "E-0001"):
        assert statuses[row_id] == (
            f"Needs attention: Partner {written!r} is not exactly a Business or Partner ID; did you mean "
            "P-0001 (Body Works)? Write the Business exactly as on Partners, or the Partner ID")


def test_trimmed_and_case_folded_references_still_match(tmp_path: Path) -> None:
    settings = sheet(tmp_path, partners=[active("P-0001", "Body Works", "hello@body-works.example")],
                     referrals=[discharged("R-0001", "  body works ", "Jordan"), discharged("R-0002", "p-0001", "Avery")])
    assert recipients(run(settings, "discharge")) == ["hello@body-works.example"] * 2


def test_two_rows_with_one_business_are_reported_and_a_reference_to_it_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = sheet(tmp_path, partners=[active("P-0003", "Anytime Fitness", "north@anytime.example"),
                                         active("P-0004", "Anytime Fitness", "south@anytime.example")],
                     referrals=[discharged("R-0001", "Anytime Fitness", "Jordan"),
                                discharged("R-0002", "P-0004", "Avery")])
    sent = run(settings, "discharge")
    assert recipients(sent) == ["south@anytime.example"]  # the Partner ID is exact
    assert "Jordan" not in bodies_to(sent, "south@anytime.example")
    book = book_of(settings)
    assert book.referrals[0].status == (
        "Needs attention: Partner 'Anytime Fitness' fits several rows on Partners (P-0003 (Anytime Fitness), "
        "P-0004 (Anytime Fitness)); write the Partner ID of the one you mean")

    config = config_for(tmp_path / "settings.toml", settings)
    assert main(["--config", str(config), "check", "--now", TODAY.isoformat()]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "Partners P-0003: Business 'Anytime Fitness' is also on P-0004; give each partner its own Business " \
           "name, or delete the duplicate row" in out
    assert "Partners P-0004: Business 'Anytime Fitness' is also on P-0003; give each partner its own Business " \
           "name, or delete the duplicate row" in out
    assert "Referrals R-0001: Partner (value hidden) fits several rows on Partners (P-0003 (Anytime Fitness), " \
           "P-0004 (Anytime Fitness)); write the Partner ID of the one you mean; see the row's Automation status" in out


# -- renamed and deleted columns and tabs -----------------------------------------------------------

def edit_workbook(settings: Settings, change: Any) -> None:
    """Change the workbook as staff would in Excel: *change* gets the openpyxl workbook, then it is saved."""
    import openpyxl

    workbook = openpyxl.load_workbook(settings.sheet.path)
    change(workbook)
    workbook.save(settings.sheet.path)


def delete_column(workbook: Any, tab: str, header: str) -> None:
    sheet = workbook[tab]
    column = next(c.column for c in sheet[1] if c.value == header)
    sheet.delete_cols(column)


def rename_column(workbook: Any, tab: str, header: str, new: str) -> None:
    next(c for c in workbook[tab][1] if c.value == header).value = new


def cli(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `partnerloop ARGS --now TODAY 09:00` on this sheet; the exit status and everything printed."""
    config = config_for(tmp_path / "settings.toml", settings)
    status = main(["--config", str(config), *args, "--now", f"{TODAY.isoformat()}T09:00"])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def prospects(tmp_path: Path) -> Settings:
    return sheet(tmp_path, partners=[
        {"Partner ID": "P-0001", "Business": "Run Club", "Email": "run@club.example", "Stage": "Active"},
        {"Partner ID": "P-0002", "Business": "Cold Gym", "Email": "cold@gym.example", "Stage": "Prospect"},
    ], referrals=[discharged("R-0001", "Run Club", "Jordan")])


def test_deleting_stage_then_running_outreach_sends_nothing_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = prospects(tmp_path)
    edit_workbook(settings, lambda wb: delete_column(wb, "Partners", "Stage"))
    status, out = cli(settings, tmp_path, capsys, "run", "outreach")
    line = ("Partners: column Stage not found (outreach decides by it); add the column "
            "(`partnerloop init` adds it)")
    assert status == 2 and line in out
    assert not list(settings.email.outbox_dir.glob("*.eml"))  # no "let's partner" to an Active partner

    status, out = cli(settings, tmp_path, capsys, "check")
    assert status == 1
    assert ("Partners: column Stage not found (outreach, discharge, scorecard, dashboard, digest decide by it); "
            "add the column (`partnerloop init` adds it)") in out.splitlines()


def test_renamed_email_header_asks_to_rename_it_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = prospects(tmp_path)
    edit_workbook(settings, lambda wb: rename_column(wb, "Partners", "Email", "E-mail"))
    status, out = cli(settings, tmp_path, capsys, "run", "--all")
    assert status == 2
    assert "Partners: column Email not found (outreach, discharge, referrals_in, events, scorecard decide by it); " \
           "is it 'E-mail'? Rename it back to Email" in out
    assert not list(settings.email.outbox_dir.glob("*.eml"))
    status, out = cli(settings, tmp_path, capsys, "check")
    assert status == 1 and "is it 'E-mail'? Rename it back to Email" in out
    assert "run `partnerloop init`" not in out


def test_renamed_referrals_tab_is_named_and_never_replaced_by_an_empty_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = prospects(tmp_path)
    edit_workbook(settings, lambda wb: setattr(wb["Referrals"], "title", "Referrals 2026"))
    line = ("Referrals tab not found (is it 'Referrals 2026'?); rename it back to Referrals, or set "
            "[sheet.tabs] referrals = \"Referrals 2026\"")
    status, out = cli(settings, tmp_path, capsys, "run", "discharge")
    assert status == 2 and line in out and "init" not in out
    status, out = cli(settings, tmp_path, capsys, "check")
    assert status == 1 and line in out.splitlines()
    import openpyxl

    assert "Referrals" not in openpyxl.load_workbook(settings.sheet.path).sheetnames
    assert not list(settings.email.outbox_dir.glob("*.eml"))


def test_layout_problems_name_tab_column_and_fix() -> None:
    from automations.model import layout_problems
    from automations.schema import OPTOUTS
    from automations.sheets.base import Table

    partners = Table.from_grid("Partners", [[c.name for c in PARTNERS.columns if c.name != "Consent"],
                                            ["P-0001", "Run Club"]])
    optouts = Table.from_grid("Opt-outs", [[c.name for c in OPTOUTS.columns]])
    titles = {"partners": "Partners", "referrals": "Referrals", "optouts": "Opt-outs"}
    assert layout_problems({"partners": partners, "referrals": None, "optouts": optouts}, titles,
                           ["discharge"], ["Partners", "Opt-outs", "Patients"]) == [
        "Referrals tab not found; rename it back, or set [sheet.tabs] referrals = \"<actual name>\""]
    empty = Table.from_grid("Partners", [[c.name for c in PARTNERS.columns]])
    assert layout_problems({"partners": empty, "referrals": None}, titles, ["discharge"]) == [
        "Referrals tab not found; run `partnerloop init` to add it"]
    assert layout_problems({"partners": partners}, titles, ["outreach"]) == []


# -- the executor and the sheet staff keep editing ------------------------------------------------------
def prospect(pid: str, address: str, **cells: Any) -> dict[str, Any]:
    return {"Partner ID": pid, "Business": f"Studio {pid}", "Contact name": "Ana Diaz", "Email": address,
            "Stage": "Prospect", **cells}


def run_at(settings: Settings, jobs: list[str], day: int = 0, **world: Any) -> Any:
    now = datetime.combine(d(day), time(9, 0), TZ)
    return run_jobs(World(settings=settings, backend=open_backend(settings),
                          ledger=Ledger.in_state_dir(settings.state_dir), clock=lambda: now, **world), jobs)


def sent(settings: Settings) -> list[tuple[str, str]]:
    """(recipient, template) of every email in the outbox."""
    out = []
    for path in sorted(settings.email.outbox_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        out += [(a.lower(), str(message["X-Partnerloop-Template"])) for _, a in getaddresses(message.get_all("To", []))]
    return sorted(out)


def test_a_workbook_open_elsewhere_holds_the_whole_run_and_staff_edits_survive(tmp_path: Path) -> None:
    settings = sheet(tmp_path, [prospect("P-0001", "one@studio.example"), prospect("P-0002", "two@studio.example")])
    lock = settings.sheet.path.with_name(f".~lock.{settings.sheet.path.name}#")
    lock.write_text("staff,desk-pc")
    with pytest.raises(SheetError, match="open in another program"):
        run_at(settings, ["outreach"])
    assert sent(settings) == [] and Ledger.in_state_dir(settings.state_dir).is_empty()
    Staff(settings).edit("Partners", "P-0002", Stage="Declined")  # staff, in LibreOffice, then close it
    lock.unlink()
    run_at(settings, ["outreach"])
    assert sent(settings) == [("one@studio.example", "outreach_intro")]
    assert {p.id: p.stage for p in book_of(settings).partners} == {"P-0001": "Contacted", "P-0002": "Declined"}


def test_a_new_row_never_takes_the_id_of_a_deleted_one(tmp_path: Path) -> None:
    settings = sheet(tmp_path, [active("P-0001", "Run Club", "run@club.example")],
                     referrals=[{"Referral ID": "R-0001", "Direction": "In", "Partner": "Run Club",
                                 "Patient first name": "Sam"},
                                {"Referral ID": "R-0002", "Direction": "In", "Partner": "Run Club",
                                 "Patient first name": "Kim"}])
    run_at(settings, ["referrals_in"])
    staff = Staff(settings)
    grid = staff.grid("Referrals")
    staff.replace("Referrals", [row for row in grid if row[0] != "R-0002"])  # staff delete Kim's row ...
    staff.add("Referrals", Direction="In", Partner="Run Club", Patient_first_name="Lee")  # ... and type Lee's
    run_at(settings, ["referrals_in"], day=1)
    lee = next(r for r in book_of(settings).referrals if r.patient_first_name == "Lee")
    assert lee.id == "R-0003" and lee.status.startswith("Thank-you sent")
    assert sent(settings).count(("run@club.example", "referral_thanks")) == 3


def test_a_write_back_whose_row_was_not_found_stays_pending_until_it_lands(tmp_path: Path) -> None:
    settings = sheet(tmp_path, [prospect("P-0001", "one@studio.example")])
    staff = Staff(settings)

    def retype_during_the_run(line: str) -> None:
        if line.startswith("writing"):
            staff.edit("Partners", "P-0001", Partner_ID="P-0100")

    report = run_at(settings, ["outreach"], progress=retype_during_the_run)
    assert any("P-0001: row not found" in line for line in report.lost)
    staff.edit("Partners", "P-0100", Partner_ID="P-0001")  # staff put it back
    run_at(settings, ["outreach"], day=1)
    [partner] = book_of(settings).partners
    assert partner.stage == "Contacted" and partner.status.startswith(f"Intro sent {d(0).isoformat()}")
    assert partner.next_follow_up == d(7)  # the follow-ups will come: the write-back landed
    assert sent(settings) == [("one@studio.example", "outreach_intro")]


def test_a_cell_staff_change_during_the_run_is_left_and_the_row_says_so(tmp_path: Path) -> None:
    settings = sheet(tmp_path, [prospect("P-0001", "one@studio.example")])
    staff = Staff(settings)

    def decline_during_the_run(line: str) -> None:
        if line.startswith("writing"):
            staff.edit("Partners", "P-0001", Stage="Declined")

    run_at(settings, ["outreach"], progress=decline_during_the_run)
    [partner] = book_of(settings).partners
    assert partner.stage == "Declined"
    assert partner.status == "Stage changed in the sheet during the run: left as staff wrote it"


def test_a_lost_state_dir_resends_nothing_the_log_shows(tmp_path: Path) -> None:
    partners = [prospect("P-0001", "one@studio.example"),
                active("P-0002", "Warm Yoga", "hello@warmyoga.example", Stage="Meeting",
                       **{"Meeting date": datetime.combine(d(3), time(10))}),
                active("P-0003", "Core Gym", "core@gym.example", Stage="Agreement")]
    settings = sheet(tmp_path, partners, events=[{"Event ID": "E-0001", "Event": "Open house", "Date": datetime.combine(d(2), time(18)),
                                                  "Partner": "Core Gym"}])
    run_at(settings, ["outreach", "events", "digest"])
    first = sent(settings)
    assert {t for _, t in first} == {"outreach_intro", "meeting_confirmation", "partnership_welcome",
                                     "event_reminder", "owner_digest"}
    import shutil

    shutil.rmtree(settings.state_dir)
    report = run_at(settings, ["outreach", "events", "digest"])
    assert sent(settings) == first
    assert any("Log tab shows as sent are recorded" in note for note in report.notes)


def test_an_id_retyped_onto_another_patient_is_never_silently_skipped(tmp_path: Path) -> None:
    settings = sheet(tmp_path, [active("P-0001", "Run Club", "run@club.example")],
                     referrals=[{"Referral ID": "R-0001", "Direction": "In", "Partner": "Run Club",
                                 "Patient first name": "Sam"}])
    run_at(settings, ["referrals_in"])
    staff = Staff(settings)
    grid = staff.grid("Referrals")
    staff.replace("Referrals", grid[:1])  # staff delete Sam's row, then type Lee's with the ID they remember
    staff.add("Referrals", Referral_ID="R-0001", Direction="In", Partner="Run Club", Patient_first_name="Lee")
    report = run_at(settings, ["referrals_in"], day=1)
    [lee] = book_of(settings).referrals
    assert lee.status.startswith("Not sent: Thank-you went on") and "named someone else" in lee.status
    assert "1 not sent: the row's ID named someone else when it was sent: R-0001" in report.summary()
    assert sent(settings) == [("run@club.example", "referral_thanks")]  # Sam's only, so far
    staff.edit("Referrals", "R-0001", Referral_ID="")  # as the status says: a new row gets a new ID
    run_at(settings, ["referrals_in"], day=2)
    [lee] = book_of(settings).referrals
    assert lee.id == "R-0002" and lee.status.startswith("Thank-you sent")
    assert sent(settings) == [("run@club.example", "referral_thanks")] * 2
