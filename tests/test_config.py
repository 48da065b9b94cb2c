"""The config file: the shipped one loads; every bad value is refused naming file, key and form."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from automations.config import DEFAULT_CONFIG, SendWindow, load_settings
from automations.errors import ConfigError
from tests.conftest import make_settings


def test_shipped_config_runs_the_demo_backend_and_outbox() -> None:
    settings = load_settings(DEFAULT_CONFIG)
    assert settings.sheet.backend == "xlsx"
    assert settings.email.transport == "outbox"
    assert settings.follow_up_days == (7, 14)
    assert settings.reminder_days == 3
    assert settings.sheet.path.is_absolute()


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("email", {"port": "abc"}, "[email] port = 'abc': expected a whole number from 1 to 65535"),
        ("email", {"security": "tls"}, "[email] security = 'tls': expected one of 'ssl', 'starttls', 'none'"),
        ("email", {"send_window": "weekdays"}, "[email] send_window = 'weekdays'"),
        ("clinic", {"timezone": "Mars/Olympus"}, "[clinic] timezone = 'Mars/Olympus': expected an IANA time zone"),
        ("clinic", {"from_email": "not an address"}, "[clinic] from_email"),
        ("sheet", {"backend": "csv"}, "[sheet] backend = 'csv'"),
        ("sheet", {"backend": "google", "key": ""}, "[sheet] key"),
        ("sheet", {"backend": "google", "key": "abc"}, "[sheet] credentials"),
        ("outreach", {"follow_up_days": [7]}, "[outreach] follow_up_days = [7]: expected two whole numbers"),
        ("schedule", {"outreech": "weekdays at 09:30"}, "[schedule] outreech"),
    ],
)
def test_bad_values_are_refused_with_file_key_and_form(tmp_path: Path, section: str, values: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, **{section: values})
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "settings.toml"))
    assert expected in message


def test_unreadable_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[clinic\nname = 1")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="missing.toml: config file not found"):
        load_settings(tmp_path / "missing.toml")


def test_environment_variable_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clinic.toml"
    path.write_text('[clinic]\nname = "Elm Street PT"\n[sheet]\npath = "book.xlsx"\n')
    monkeypatch.setenv("PARTNERLOOP_CONFIG", str(path))
    settings = load_settings()
    assert settings.clinic.name == "Elm Street PT"
    assert settings.sheet.path == tmp_path / "book.xlsx"


def test_password_comes_only_from_the_named_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path, email={"password_env": "PL_TEST_SMTP_PW"})
    monkeypatch.delenv("PL_TEST_SMTP_PW", raising=False)
    with pytest.raises(ConfigError, match="PL_TEST_SMTP_PW"):
        settings.email.password()
    monkeypatch.setenv("PL_TEST_SMTP_PW", "s3cret")
    assert settings.email.password() == "s3cret"


def test_send_window_opens_on_weekdays_in_clinic_time() -> None:
    window = SendWindow.parse("Mon-Fri 08:30-17:30")
    tz = ZoneInfo("America/Chicago")
    friday_evening = datetime(2026, 11, 27, 18, 0, tzinfo=tz)
    assert not window.contains(friday_evening)
    assert window.next_open(friday_evening) == datetime(2026, 11, 30, 8, 30, tzinfo=tz)
    assert window.contains(datetime(2026, 11, 30, 8, 30, tzinfo=tz))
    assert window.next_open(datetime(2026, 11, 30, 7, 0, tzinfo=tz)) == datetime(2026, 11, 30, 8, 30, tzinfo=tz)
    assert SendWindow.parse("Sat,Sun 10:00-12:00").days == frozenset({5, 6})


def test_a_schedule_line_at_which_a_sending_job_could_never_send_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, schedule={"digest": "monday at 08:00"})  # the window opens at 08:30
    assert str(caught.value) == (
        f"{tmp_path / 'settings.toml'}: [schedule] digest = 'monday at 08:00' is outside [email] send_window "
        "(Mon-Fri 08:30-17:30), so digest would never send; pick a time inside it, e.g. digest = \"monday at 08:30\"")
    with pytest.raises(ConfigError, match="events would never send"):
        make_settings(tmp_path, schedule={"events": "saturday at 10:00"})
    settings = make_settings(tmp_path, schedule={"dashboard": "every day at 07:00", "events": "daily at 09:00",
                                                 "digest": "monday at 09:00", "discharge": "every 30 minutes"})
    assert settings.schedule["dashboard"] == "every day at 07:00"  # it sends nothing: any time will do
