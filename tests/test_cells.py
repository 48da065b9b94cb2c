"""Cell parsing: what staff type becomes a clean value or a message saying what to write."""

from __future__ import annotations

from datetime import date, datetime, time

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


@pytest.mark.parametrize(
    "raw",
    [datetime(2026, 12, 3, 10, 0), 46359 + 10 / 24, "2026-12-03 10:00", "2026-12-03T10:00", "12/3/2026 10:00 AM",
     "Dec 3 2026 10am", "Thursday, December 3, 2026 10:00 AM", " 12/3/26 10:00 "],
)
def test_a_date_and_time_in_every_form_staff_use(raw: object) -> None:
    assert cells.parse_moment(raw, "Meeting date") == datetime(2026, 12, 3, 10, 0)


def test_a_date_and_time_typed_with_slashes_follows_the_date_order() -> None:
    assert cells.parse_moment("3/12/2026 2:30 PM", "Date", "DMY") == datetime(2026, 12, 3, 14, 30)
    assert cells.parse_moment("3/12/2026 2:30 PM", "Date", "MDY") == datetime(2026, 3, 12, 14, 30)


@pytest.mark.parametrize("raw", [date(2026, 12, 3), datetime(2026, 12, 3, 0, 0), 46359, "2026-12-03", "Dec 3 2026"])
def test_a_date_without_a_time_stays_a_date(raw: object) -> None:
    assert cells.parse_moment(raw, "Meeting date") == date(2026, 12, 3)


@pytest.mark.parametrize("raw, message", [("10:00", "has no year"), ("Dec 3 10:00", "has no year"),
                                          ("next tuesday", "is not a date and time"), (time(10), "has no date")])
def test_an_unreadable_date_and_time_says_how_to_write_it(raw: object, message: str) -> None:
    with pytest.raises(CellError, match=rf"Meeting date .*{message}.*2026-12-03 10:00"):
        cells.parse_moment(raw, "Meeting date")


@pytest.mark.parametrize("raw, expected", [
    ("19:00", time(19)), ("7pm", time(19)), ("7:30 PM", time(19, 30)), (time(19), time(19)), (0.75, time(18)),
    ("2026-12-04 01:00", datetime(2026, 12, 4, 1, 0)), (None, None)])
def test_an_end_is_a_time_or_a_date_and_time(raw: object, expected: object) -> None:
    assert cells.parse_end(raw, "Ends") == expected


@pytest.mark.parametrize("raw", ["soon", "2026-12-03", "25:00"])
def test_an_unreadable_end_says_how_to_write_it(raw: object) -> None:
    with pytest.raises(CellError, match=r"Ends .*19:00 or 7:00 PM"):
        cells.parse_end(raw, "Ends")


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
