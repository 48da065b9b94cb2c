"""`partnerloop check --mail`: signs in, sends nothing, says what works or the one thing to fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from automations.cli import main
from automations.mail.oauth import GMAIL_READ, GMAIL_SEND, GOOGLE_MAIL
from tests.support.configs import write_config
from tests.support.gmail_emulator import GmailEmulator
from tests.support.google_token_server import GoogleTokenServer, write_key
from tests.support.imap_server import ImapServer
from tests.support.smtp_server import SmtpServer

USER = "partners@riverside-pt.example"


@pytest.fixture
def google() -> Iterator[tuple[GoogleTokenServer, GmailEmulator]]:
    with GoogleTokenServer() as tokens, GmailEmulator(tokens.book) as gmail:
        yield tokens, gmail


def gmail_config(tmp_path: Path, gmail: GmailEmulator, key: dict[str, Any]) -> Path:
    return write_config(tmp_path / "settings.toml", sheet={"path": tmp_path / "sheet.xlsx"},
                        state={"dir": tmp_path / "state"}, email={"transport": "gmail"},
                        **{"email.google": {"credentials": write_key(tmp_path / "key.json", key),
                                            "api_endpoint": gmail.url}})


def test_check_mail_says_what_it_can_do_over_gmail(tmp_path: Path, google: tuple[GoogleTokenServer, GmailEmulator],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    tokens, gmail = google
    key = tokens.new_key()
    tokens.grant(key, USER, GMAIL_SEND, GMAIL_READ)
    assert main(["--config", str(gmail_config(tmp_path, gmail, key)), "check", "--mail"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"can send as {USER} via Gmail API",
        f"can read the inbox of {USER} via Gmail API (replies, and settling unknown sends)",
        "check --mail: mail sign-in works; nothing was sent",
    ]
    assert gmail.sent(USER) == [] and "gmail.users.messages.send" not in gmail.calls
    assert gmail.violations == []


def test_check_mail_names_the_scope_missing_from_delegation_in_one_line(
        tmp_path: Path, google: tuple[GoogleTokenServer, GmailEmulator], capsys: pytest.CaptureFixture[str]) -> None:
    tokens, gmail = google
    key = tokens.new_key()
    tokens.grant(key, USER, GMAIL_SEND)  # the administrator forgot gmail.readonly
    assert main(["--config", str(gmail_config(tmp_path, gmail, key)), "check", "--mail"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"partnerloop check: Google Workspace does not let the service account {key['client_email']} "
                   f"(client ID {key['client_id']}) act as {USER} with scope(s) {GMAIL_READ}: an administrator adds "
                   f"them for client ID {key['client_id']} in Google Admin console > Security > Access and data "
                   "control > API controls > Domain-wide delegation\n")


def test_check_mail_names_the_gmail_api_switch(tmp_path: Path, google: tuple[GoogleTokenServer, GmailEmulator],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    tokens, gmail = google
    key = tokens.new_key()
    tokens.grant(key, USER, GMAIL_SEND, GMAIL_READ)
    gmail.fail_next("disabled", method="gmail.users.getProfile")
    assert main(["--config", str(gmail_config(tmp_path, gmail, key)), "check", "--mail"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the Gmail API is turned off" in err and "Gmail API > Enable" in err


def test_check_mail_over_smtp_and_imap_with_google_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with GoogleTokenServer() as tokens, SmtpServer(tokens=tokens.book) as smtp, \
            ImapServer(introspection_url=f"{tokens.url}/introspect") as imap:
        key = tokens.new_key()
        tokens.grant(key, USER, GOOGLE_MAIL)
        config = write_config(
            tmp_path / "settings.toml", sheet={"path": tmp_path / "sheet.xlsx"}, state={"dir": tmp_path / "state"},
            email={"transport": "smtp", "host": smtp.host, "port": smtp.port, "security": "none", "auth": "google",
                   "username": USER},
            **{"email.google": {"credentials": write_key(tmp_path / "key.json", key)},
               "email.imap": {"host": imap.host, "port": imap.port, "security": "none", "username": USER}})
        assert main(["--config", str(config), "check", "--mail"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"can send as {USER} via SMTP {smtp.host}:{smtp.port}, signed in as {USER} (Google Workspace token)",
            f"can read folder INBOX of {USER} at {imap.host}:{imap.port} (IMAP)",
            "check --mail: mail sign-in works; nothing was sent",
        ]
        assert smtp.messages == [] and smtp.logins == [USER]


def test_check_mail_with_microsoft_365(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.microsoft_authority import MicrosoftAuthority

    with MicrosoftAuthority() as authority, SmtpServer(tokens=authority.book) as smtp:
        client_id = "11111111-2222-3333-4444-555555555555"
        authority.register(client_id, "the-right-secret", USER)
        monkeypatch.setenv("PARTNERLOOP_MS_SECRET", "the-right-secret")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(authority.ca_file))  # how MSAL's own session trusts the local CA
        config = write_config(
            tmp_path / "settings.toml", sheet={"path": tmp_path / "sheet.xlsx"}, state={"dir": tmp_path / "state"},
            email={"transport": "smtp", "host": smtp.host, "port": smtp.port, "security": "none",
                   "auth": "microsoft", "username": USER},
            **{"email.microsoft": {"tenant": authority.tenant, "client_id": client_id,
                                   "client_secret_env": "PARTNERLOOP_MS_SECRET", "authority": authority.url}})
        assert main(["--config", str(config), "check", "--mail"]) == 0
        assert capsys.readouterr().out.splitlines()[0] == (
            f"can send as {USER} via SMTP {smtp.host}:{smtp.port}, signed in as {USER} (Microsoft 365 token)")
        authority.apps[client_id].mailboxes.clear()  # the mailbox permission was taken away
        assert main(["--config", str(config), "check", "--mail"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "New-ServicePrincipal" in err and "Add-MailboxPermission" in err
