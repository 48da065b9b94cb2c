"""The To do list (automations/todo.py): every row that needs a person, with its Owner and the one thing to do.

Pure: small Books parsed from grids laid out as the sheet's tabs, a fixed day, no I/O.
"""

from __future__ import annotations

from dataclasses import astuple
from datetime import datetime, timedelta

from automations.core import SendKey
from automations.todo import UNASSIGNED, TodoItem, by_owner, todo_list
from tests.test_metrics import TODAY, make_book, partner, referral

DAY = timedelta(days=1)


def kinds(items: list[TodoItem]) -> list[tuple[str, str]]:
    return [(i.kind, i.row) for i in items]


def test_a_contacted_partner_after_the_last_follow_up_is_to_be_called_by_its_owner() -> None:
    book = make_book([
        partner("P-1", "Contacted", outreach_step=3, last_emailed=TODAY - 2 * DAY, contact_name="Grace Liu",
                phone="(217) 555-0104", owner="Dana"),
        partner("P-2", "Contacted", outreach_step=2, last_emailed=TODAY - 2 * DAY, owner="Dana"),  # a follow-up is due
    ])
    (item,) = todo_list(book, TODAY)
    assert (item.kind, item.owner, item.where, item.partner, item.since) == (
        "call", "Dana", "Partners P-1", "Business P-1", TODAY - 2 * DAY)
    assert item.action.startswith("No more emails: call Grace Liu at (217) 555-0104")


def test_a_reply_asks_for_the_stage_to_be_updated_until_staff_move_the_partner_on() -> None:
    book = make_book([partner("P-1", "Contacted", outreach_step=1, stage_since=TODAY - 9 * DAY),
                      partner("P-2", "Contacted", outreach_step=1, stage_since=TODAY - DAY),
                      partner("P-3", "Meeting", meeting_date=TODAY + 5 * DAY)])
    replied = {"P-1": TODAY - 3 * DAY, "P-2": TODAY - 4 * DAY, "P-3": TODAY - 4 * DAY}
    (item,) = todo_list(book, TODAY, replied=replied)  # P-2's reply came before its Stage changed; P-3 moved on
    assert (item.kind, item.row, item.since) == ("replied", "P-1", TODAY - 3 * DAY)
    assert item.action == f"Business P-1 replied on {(TODAY - 3 * DAY).isoformat()}: read the reply, then update Stage"


def test_a_meeting_whose_date_has_passed_or_is_missing_needs_its_outcome() -> None:
    book = make_book([partner("P-1", "Meeting", meeting_date=TODAY - DAY),
                      partner("P-2", "Meeting", meeting_date=TODAY),  # today: not passed yet
                      partner("P-3", "Meeting")])
    items = todo_list(book, TODAY)
    assert kinds(items) == [("meeting", "P-1"), ("meeting", "P-3")]
    assert items[0].action.startswith(f"The meeting on {(TODAY - DAY).isoformat()} has passed: set Stage")
    assert "without a Meeting date" in items[1].action


def test_consent_missing_without_expiry_or_expired_at_discharge_is_asked_for_but_a_patients_no_is_not_chased() -> None:
    book = make_book([partner("P-1", "Active", owner="Sam")], [
        referral("R-1", "Out", discharge_date=TODAY - DAY),  # no consent yet
        referral("R-2", "Out", discharge_date=TODAY - DAY, consent="Yes", consent_expires=TODAY - 2 * DAY),
        referral("R-3", "Out", discharge_date=TODAY - DAY, consent="No"),  # the patient said no
        referral("R-4", "Out", discharge_date=TODAY - DAY, consent="Revoked"),
        referral("R-5", "Out", discharge_date=TODAY - DAY, consent="Yes", consent_expires=TODAY + 90 * DAY),
        referral("R-6", "Out", discharge_date=TODAY + DAY),  # not discharged yet
        referral("R-7", "Out", discharge_date=TODAY - 9 * DAY, partner_emailed=TODAY - 8 * DAY),  # introduced
        referral("R-8", "In", discharge_date=TODAY - DAY),  # an inbound referral: the clinic's own patient
        referral("R-9", "Out", discharge_date=TODAY - DAY, consent="Yes"),  # signed, but no expiry written
    ])
    items = todo_list(book, TODAY)
    assert [(i.kind, i.row, i.owner, i.partner) for i in items] == [
        ("consent", "R-1", "Sam", "Business P-1"), ("consent", "R-2", "Sam", "Business P-1"),
        ("consent", "R-9", "Sam", "Business P-1")]
    assert items[2].action.startswith("Consent is Yes but Consent expires is empty: add the expiry date")
    assert items[0].action.startswith(f"Discharged {(TODAY - DAY).isoformat()} without consent: ask the patient")
    assert items[1].action.startswith(f"Consent expired {(TODAY - 2 * DAY).isoformat()}")


def test_an_agreed_partner_with_no_referral_either_way_in_60_days_is_to_be_checked_in_with() -> None:
    book = make_book([
        partner("P-1", "Active", stage_since=TODAY - 300 * DAY),
        partner("P-2", "Active", stage_since=TODAY - 300 * DAY),
        partner("P-3", "Agreement", stage_since=TODAY - 10 * DAY),  # a new agreement gets its 60 days
        partner("P-4", "Agreement", stage_since=TODAY - 60 * DAY),
        partner("P-5", "Paused", stage_since=TODAY - 300 * DAY),
    ], [referral("R-1", "In", "P-1", referred_on=TODAY - 60 * DAY),
        referral("R-2", "Out", "P-2", referred_on=TODAY - 59 * DAY)])
    items = todo_list(book, TODAY)
    assert kinds(items) == [("quiet", "P-1"), ("quiet", "P-4")]
    assert "no referral either way since " + (TODAY - 60 * DAY).isoformat() in items[0].action
    assert items[1].since == TODAY - 60 * DAY


def test_an_unknown_outcome_send_says_how_to_resolve_it() -> None:
    book = make_book([partner("P-1", "Contacted", outreach_step=1, owner="Dana")],
                     [referral("R-1", "Out", "P-1", consent="Yes", consent_expires=TODAY + 90 * DAY,
                                       discharge_date=TODAY - DAY)])
    claimed = datetime(2026, 3, 14, 9, 30)
    unknown = {SendKey("outreach", "P-1", "intro"): claimed, SendKey("discharge", "R-1", "patient"): claimed,
               SendKey("digest", "digest-2026-W11", "2026-W11"): claimed}
    items = todo_list(book, TODAY, unknown=unknown)
    assert [(i.kind, i.where, i.owner) for i in items] == [
        ("unknown", "Partners P-1", "Dana"), ("unknown", "Referrals R-1", "Dana"),  # a referral: its partner's Owner
        ("unknown", "Dashboard digest-2026-W11", "")]
    assert items[0].action == ("Outreach email (intro): unknown whether it was delivered. Check with the recipient, "
                               "then run `partnerloop resolve P-1 --job outreach --sent` (it arrived) or `--resend`")
    assert items[0].since == claimed.date()


def test_a_data_problem_is_the_rows_one_thing_to_do_and_quotes_no_patient_cell() -> None:
    book = make_book([partner("P-1", "Contacted", email="tom@", outreach_step=3, owner="Dana")],
                     [referral("R-1", "Out", "P-1", patient_email="quentin.private@", discharge_date=TODAY - DAY),
                      referral("R-2", "In", "Nobody Gym")])
    items = todo_list(book, TODAY)
    assert kinds(items) == [("problem", "P-1"), ("problem", "R-1"), ("problem", "R-2")]  # not "call", not "consent"
    assert items[0].action.startswith("Fix the row: Email 'tom@' is not a valid address")
    assert items[1].action == "Fix the row: Patient email (value hidden) is not a valid address"
    assert items[2].owner == "" and items[2].who == UNASSIGNED  # no partner found: nobody owns it yet


def test_items_are_grouped_by_owner_named_owners_first_most_urgent_first() -> None:
    book = make_book([
        partner("P-1", "Meeting", meeting_date=TODAY - DAY, owner="sam"),
        partner("P-2", "Contacted", outreach_step=3),
        partner("P-3", "Meeting", meeting_date=TODAY - DAY, owner="  Alex   Kim "),
        partner("P-4", "Contacted", outreach_step=3, owner="Sam"),
    ], [referral("R-1", "Out", "P-4", discharge_date=TODAY - DAY)])
    items = todo_list(book, TODAY)
    assert [(i.who, i.kind, i.row) for i in items] == [
        ("Alex Kim", "meeting", "P-3"), ("Sam", "consent", "R-1"), ("sam", "meeting", "P-1"), ("Sam", "call", "P-4"),
        (UNASSIGNED, "call", "P-2")]
    assert [(owner, [i.row for i in mine]) for owner, mine in by_owner(items)] == [  # Sam and sam: one person
        ("Alex Kim", ["P-3"]), ("Sam", ["R-1", "P-1", "P-4"]), (UNASSIGNED, ["P-2"])]


def test_no_item_holds_a_patients_name_email_goal_or_notes() -> None:
    secrets = ("Quentin", "Marlowe", "quentin@mail.example", "Run a marathon", "knee surgery", "Yvette", "Okonkwo")
    book = make_book([partner("P-1", "Active", stage_since=TODAY - 200 * DAY, owner="Dana")], [
        referral("R-1", "Out", "P-1", patient_first_name="Quentin", patient_last_name="Marlowe",
                 patient_email="quentin@mail.example", goal="Run a marathon", notes="knee surgery",
                 discharge_date=TODAY - DAY),
        referral("R-2", "Out", "P-1", patient_first_name="Yvette", patient_last_name="Okonkwo",
                 patient_email="quentin@mail", goal="Run a marathon", discharge_date=TODAY - 70 * DAY,
                 consent="Maybe"),
    ])
    items = todo_list(book, TODAY, unknown={SendKey("discharge", "R-1", "patient"): datetime(2026, 3, 1, 9)})
    assert {i.kind for i in items} == {"unknown", "consent", "problem"}
    shown = " ".join(str(v) for i in items for v in astuple(i))
    assert [s for s in secrets if s in shown] == []


def test_nothing_to_do_is_an_empty_list() -> None:
    book = make_book([partner("P-1", "Prospect"), partner("P-2", "Active", stage_since=TODAY - DAY)])
    assert todo_list(book, TODAY) == []
