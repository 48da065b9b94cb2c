"""A config typo is refused, never run on the defaults; tab titles never collide; dates typed as text
follow `[sheet] date_order`."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from automations.check import init_sheet
from automations.config import DEFAULT_CONFIG, load_settings
from automations.errors import ConfigError
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import make_settings
from tests.support.configs import write_config


def refused(tmp_path: Path, **sections: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, **sections)
    return str(caught.value)


def test_misspelt_key_is_refused_with_the_nearest_known_name(tmp_path: Path) -> None:
    message = refused(tmp_path, email={"daily_limt": 50})
    assert message == f"{tmp_path / 'settings.toml'}: [email] daily_limt is not a known key; did you mean daily_limit?"


def test_misspelt_section_is_refused_with_the_nearest_known_section(tmp_path: Path) -> None:
    path = write_config(tmp_path / "settings.toml", outrech={"follow_up_days": [7, 14]})
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f"{path}: [outrech] is not a known section; did you mean [outreach]?"


def test_misspelt_key_in_a_sub_table_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, email={"imap": {"hostname": "imap.example.org"}})
    assert message.endswith("[email.imap] hostname is not a known key; did you mean host?")


def test_key_outside_any_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('daily_limit = 5\n[clinic]\nname = "Elm Street PT"\n')
    with pytest.raises(ConfigError, match=r"daily_limit \(outside any section\) is not a known key"):
        load_settings(path)


def test_every_key_the_reader_looks_up_is_known(tmp_path: Path) -> None:
    """The shipped config (every section, commented keys switched on) loads: the strictness knows them all."""
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    text = text.replace("# [email.imap]", "[email.imap]").replace("# [sheet.tabs]", "[sheet.tabs]")
    for key in ("host", "port", "security", "username", "password_env", "folder", "mark_read", "partners"):
        text = text.replace(f"\n# {key} = ", f"\n{key} = ")
    text = text.replace('[state]', '[templates]\ndir = "../templates"\n\n[state]')
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path)
    assert settings.email.imap.host == "imap.example.org"
    assert settings.sheet.tabs == {"partners": "Partners"}


@pytest.mark.parametrize(("title", "other"), [("Referrals", "referrals"), ("partners", "partners")])
def test_dashboard_may_not_take_another_tabs_title(tmp_path: Path, title: str, other: str) -> None:
    message = refused(tmp_path, sheet={"tabs": {"dashboard": title}})
    assert f"[sheet.tabs] dashboard = {title!r} is the title of the {other} tab" in message
    assert "two tabs may never share a name" in message


def test_two_renamed_tabs_may_not_share_a_title_ignoring_case(tmp_path: Path) -> None:
    message = refused(tmp_path, sheet={"tabs": {"events": "Clinic", "log": "CLINIC"}})
    assert "[sheet.tabs] events = 'Clinic' is also renamed to the log tab ('CLINIC')" in message


def test_renamed_tabs_with_distinct_titles_load(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sheet={"tabs": {"dashboard": "Overview", "partners": "Our partners"}})
    assert settings.sheet.title("dashboard") == "Overview"


def test_date_order_must_be_one_of_the_three(tmp_path: Path) -> None:
    assert make_settings(tmp_path).sheet.date_order == "MDY"
    assert make_settings(tmp_path, sheet={"date_order": "dmy"}).sheet.date_order == "DMY"
    assert "[sheet] date_order = 'DDMM': expected one of 'MDY', 'DMY', 'YMD'" in refused(
        tmp_path, sheet={"date_order": "DDMM"})


@pytest.mark.parametrize(("order", "expected"), [("MDY", date(2026, 3, 12)), ("DMY", date(2026, 12, 3)),
                                                 ("YMD", date(2026, 3, 12))])
def test_a_date_typed_as_text_follows_date_order(tmp_path: Path, order: str, expected: date) -> None:
    settings = make_settings(tmp_path, sheet={"date_order": order})
    referral = {"Referral ID": "R-0001", "Direction": "Out", "Partner": "P-0001", "Patient first name": "Ana",
                "Discharge date": "03/12/2026", "Consent": "Yes", "Consent expires": "2026-04-01"}
    init_sheet(open_backend(settings), settings,
               {"partners": [{"Partner ID": "P-0001", "Business": "Body Works"}], "referrals": [referral]})
    book = read_book(open_backend(settings), settings)
    assert book.referrals[0].discharge_date == expected
    assert book.referrals[0].consent_expires == date(2026, 4, 1)  # ISO reads the same in every order


def test_staff_and_scorecard_of_the_spec_are_known(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scorecard={"enabled": False})
    assert settings.scorecard_enabled is False and settings.staff == ()
    from automations.config import StaffMember, settings_from_dict

    raw = {"staff": [{"name": "Ana Diaz", "title": "Partnerships lead", "email": "ana@riverside-pt.example",
                      "phone": "(217) 555-0150"}, {"name": "Ben Ito"}]}
    settings = settings_from_dict(raw, tmp_path / "settings.toml")
    assert settings.staff == (StaffMember("Ana Diaz", "Partnerships lead", "ana@riverside-pt.example",
                                          "(217) 555-0150"), StaffMember("Ben Ito"))
    with pytest.raises(ConfigError, match=r"\[staff\] phon is not a known key; did you mean phone\?"):
        settings_from_dict({"staff": [{"name": "Ana", "phon": "1"}]}, tmp_path / "settings.toml")
    with pytest.raises(ConfigError, match=r"\[staff\] name = '': expected the person's name"):
        settings_from_dict({"staff": [{"title": "Lead"}]}, tmp_path / "settings.toml")
