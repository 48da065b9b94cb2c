"""Cell parsing: what staff type becomes a clean value or a message saying what to write."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from automations import cells
from automations.errors import CellError


@pytest.mark.parametrize(
    "raw",
    [date(2026, 11, 27), datetime(2026, 11, 27, 9, 30), 46353, 46353.0, "46353", "11/27/2026", "2026-11-27",
     "Nov 27 2026", "November 27, 2026", "27 Nov 2026", " 2026-11-27 "],
)
def test_dates_in_every_form_staff_use(raw: object) -> None:
    assert cells.parse_date(raw, "Meeting date") == date(2026, 11, 27)


@pytest.mark.parametrize("raw", ["next tuesday", "31/31/2026", "Nov 27", "=TODAY()", -5, "soon"])
def test_unreadable_dates_name_the_column_and_the_form(raw: object) -> None:
    with pytest.raises(CellError, match=r"Meeting date .*2026-11-27"):
        cells.parse_date(raw, "Meeting date")


def test_blank_cells_are_none() -> None:
    assert cells.parse_date("  ", "Date") is None
    assert cells.parse_email(None, "Email") is None
    assert cells.parse_choice("", "Stage", ("Prospect",)) is None
    assert cells.parse_flag(None) is False


def test_email_addresses_are_validated_without_dns() -> None:
    assert cells.parse_email("Maya@Northside-Strength.example", "Email") == "Maya@northside-strength.example"
    assert cells.parse_email("zoë@café.example", "Email") == "zoë@café.example"
    for bad in ["maya@", "maya at gym.example", "a@b.example, c@d.example", "x@y.example\r\nBcc: z@w.example"]:
        with pytest.raises(CellError, match="Email"):
            cells.parse_email(bad, "Email")


def test_choices_match_ignoring_case_and_spaces_and_list_the_valid_ones() -> None:
    assert cells.parse_choice("yoga/pilates  studio", "Kind", ("Yoga/Pilates studio", "Other")) == "Yoga/Pilates studio"
    with pytest.raises(CellError, match="Consent is 'maybe'; use Yes, No or Revoked"):
        cells.parse_choice("maybe", "Consent", ("Yes", "No", "Revoked"))


def test_yes_column_and_whole_numbers() -> None:
    assert cells.parse_flag("Yes") is True
    assert cells.parse_flag("x") is True
    assert cells.parse_flag("perhaps") is True  # a flag holding anything but blank or No counts as Yes
    assert cells.parse_flag(" no ") is False
    assert cells.parse_int(3.0, "Visits") == 3
    with pytest.raises(CellError, match="whole number"):
        cells.parse_int("three", "Visits")


def test_headers_match_ignoring_case_spaces_and_a_trailing_star() -> None:
    assert cells.normalise_header(" Partner  ID *") == cells.normalise_header("partnerid")


def test_one_line_folds_line_breaks() -> None:
    assert cells.one_line("Anna\r\nBcc: x@y.example") == "Anna Bcc: x@y.example"
