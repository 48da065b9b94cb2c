"""Signing in to SMTP and IMAP with OAuth (SASL XOAUTH2): google-auth and MSAL, unmodified, against local stand-ins.

Google: a service-account key whose token_uri is the local token server; the SMTP server (aiosmtpd)
and Dovecot (oauth2 passdb, introspection) accept only tokens that server issued. Microsoft: MSAL's
client-credentials flow against a local HTTPS authority.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automations.config import Settings
from automations.errors import ConfigError, MailError
from automations.executor import World, run_jobs
from automations.mail.imap import fetch_new, find_sent
from automations.mail.ledger import Ledger
from automations.mail.oauth import GOOGLE_MAIL, MicrosoftTokens
from automations.mail.transport import AuthFailed, SmtpTransport, make_transport
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import make_settings, seed_sheet, world_for
from tests.support.google_token_server import GoogleTokenServer, write_key
from tests.support.imap_server import ImapServer
from tests.support.microsoft_authority import MicrosoftAuthority
from tests.support.smtp_server import SmtpServer

USER = "partners@riverside-pt.example"
TZ = ZoneInfo("America/Chicago")
MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=TZ)
TUESDAY = datetime(2026, 11, 3, 10, 0, tzinfo=TZ)
PARTNERS = [
    {"Partner ID": "P-0001", "Business": "Threaded Gym", "Contact name": "Tess Reed", "Email": "tess@gym1.example",
     "Stage": "Prospect", "Why partner": "strength after rehab"},
    {"Partner ID": "P-0002", "Business": "Quiet Club", "Contact name": "Quinn Day", "Email": "quinn@club6.example",
     "Stage": "Prospect", "Why partner": "running club"},
]


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleTokenServer]:
    with GoogleTokenServer() as server:
        yield server


@pytest.fixture(scope="module")
def imap(google: GoogleTokenServer) -> Iterator[ImapServer]:
    with ImapServer(introspection_url=f"{google.url}/introspect") as server:
        yield server


@pytest.fixture
def smtp(google: GoogleTokenServer) -> Iterator[SmtpServer]:
    with SmtpServer(tokens=google.book) as server:
        yield server


@pytest.fixture
def key(google: GoogleTokenServer) -> dict[str, Any]:
    key = google.new_key()
    google.grant(key, USER, GOOGLE_MAIL)
    return key


def oauth_settings(tmp_path: Path, key: dict[str, Any], smtp: SmtpServer, imap: ImapServer | None = None) -> Settings:
    email: dict[str, Any] = {"transport": "smtp", "host": smtp.host, "port": smtp.port, "security": "none",
                             "timeout": 5, "auth": "google", "username": USER,
                             "google": {"credentials": str(write_key(tmp_path / "key.json", key))}}
    if imap is not None:
        email["imap"] = {"host": imap.host, "port": imap.port, "security": "none", "username": USER}
    return make_settings(tmp_path, email=email)


def letter(message_id: str = "<m1@riverside-pt.example>") -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = USER, "run@club.example", "Partnership", message_id
    m.set_content("Hello from the clinic")
    return m


def world(settings: Settings, now: datetime) -> World:
    return world_for(settings, lambda: now, sleep=lambda s: None)


# -- SMTP ---------------------------------------------------------------------------------------------------
def test_smtp_signs_in_with_a_delegated_google_token(tmp_path: Path, google: GoogleTokenServer, key: dict[str, Any],
                                                     smtp: SmtpServer) -> None:
    settings = oauth_settings(tmp_path, key, smtp)
    with make_transport(settings) as transport:
        transport.send(letter())
    assert smtp.logins == [USER]
    assert smtp.arrivals("<m1@riverside-pt.example>") == 1
    assert google.requests[-1]["sub"] == USER and google.requests[-1]["scope"] == GOOGLE_MAIL


def test_smtp_fetches_a_fresh_token_when_the_server_says_it_expired(
        tmp_path: Path, google: GoogleTokenServer, key: dict[str, Any], smtp: SmtpServer) -> None:
    settings = oauth_settings(tmp_path, key, smtp)
    from automations.mail.oauth import token_source

    tokens = token_source(settings.email, mailbox=USER)
    first = tokens.token()
    google.book.expire_all()  # the token in hand looks valid to google-auth but the server refuses it
    with SmtpTransport(settings.email, tokens=tokens) as transport:
        transport.send(letter())
    assert smtp.logins == [USER] and smtp.arrivals("<m1@riverside-pt.example>") == 1
    assert tokens.token() != first


def test_a_revoked_grant_stops_the_run_with_one_line_before_anything_is_claimed(
        tmp_path: Path, google: GoogleTokenServer, key: dict[str, Any], smtp: SmtpServer) -> None:
    settings = oauth_settings(tmp_path, key, smtp)
    seed_sheet(settings, partners=PARTNERS)
    google.ungrant(key, USER)
    report = run_jobs(world(settings, MONDAY), ["outreach"])
    assert report.fatal.startswith("mail server: Google Workspace does not let the service account")
    assert GOOGLE_MAIL in report.fatal and "Domain-wide delegation" in report.fatal and "\n" not in report.fatal
    assert smtp.messages == [] and smtp.connections <= 1
    ledger = Ledger.in_state_dir(settings.state_dir)
    assert [r for r in ledger.records() if r.state in ("sending", "sent")] == []
    google.grant(key, USER, GOOGLE_MAIL)  # once the administrator fixes it, the next run sends both
    assert run_jobs(world(settings, MONDAY), ["outreach"]).count("sent") == 2


def test_a_token_the_smtp_server_refuses_twice_names_what_to_check(
        tmp_path: Path, google: GoogleTokenServer, smtp: SmtpServer) -> None:
    key = google.new_key()
    google.grant(key, "someone.else@riverside-pt.example", GOOGLE_MAIL)
    settings = oauth_settings(tmp_path, key, smtp)
    from automations.mail.oauth import GoogleTokens

    tokens = GoogleTokens(settings.email.google, [GOOGLE_MAIL], mailbox="someone.else@riverside-pt.example")
    tokens.mailbox = USER  # a token for another mailbox than the one signing in
    with pytest.raises(AuthFailed, match=r"refused partners@riverside-pt.example's token: the service account "
                                         r"needs https://mail.google.com/"):
        SmtpTransport(settings.email, tokens=tokens).open()


# -- IMAP ---------------------------------------------------------------------------------------------------
def reply_to(original: EmailMessage, sender: str) -> EmailMessage:
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = sender, USER, f"Re: {original['Subject']}"
    reply["Date"] = format_datetime(TUESDAY)
    reply["Message-ID"] = "<answer-1@gym1.example>"
    reply["In-Reply-To"] = str(original["Message-ID"])
    reply.set_content("Yes, we would love to meet.")
    return reply


def test_sending_and_the_replies_job_over_xoauth2(tmp_path: Path, google: GoogleTokenServer, key: dict[str, Any],
                                                  smtp: SmtpServer, imap: ImapServer) -> None:
    settings = oauth_settings(tmp_path, key, smtp, imap)
    seed_sheet(settings, partners=PARTNERS)
    assert run_jobs(world(settings, MONDAY), ["outreach"]).count("sent") == 2
    intro = next(m.message for m in smtp.messages if m.recipients == ["tess@gym1.example"])
    imap.deliver(USER, reply_to(intro, "Tess Reed <tess@gym1.example>"))
    google.book.expire_all()  # a day later the tokens of Monday are long expired
    report = run_jobs(world(settings, TUESDAY), ["replies"])
    assert report.fatal == ""
    status = {p.id: p.status for p in read_book(open_backend(settings), settings).partners}
    assert status["P-0001"] == "Replied 2026-11-03: update Stage"
    assert status["P-0002"].startswith("Intro sent 2026-11-02")


def test_find_sent_looks_in_the_sent_folder(tmp_path: Path, key: dict[str, Any], smtp: SmtpServer,
                                            imap: ImapServer) -> None:
    settings = oauth_settings(tmp_path, key, smtp, imap)
    imap.deliver(USER, letter("<kept@riverside-pt.example>"), folder="Sent")
    imap.deliver(USER, letter("<inbox-only@riverside-pt.example>"))
    wanted = ["<kept@riverside-pt.example>", "<inbox-only@riverside-pt.example>", "<never@riverside-pt.example>"]
    assert find_sent(settings, wanted) == {"<kept@riverside-pt.example>"}


def test_imap_refuses_a_token_for_another_mailbox_with_one_line(tmp_path: Path, google: GoogleTokenServer,
                                                                smtp: SmtpServer, imap: ImapServer) -> None:
    key = google.new_key()
    google.grant(key, USER, "https://www.googleapis.com/auth/gmail.readonly")  # not the IMAP scope
    settings = oauth_settings(tmp_path, key, smtp, imap)
    with pytest.raises(AuthFailed) as refused:
        fetch_new(settings, None)
    assert "Domain-wide delegation" in str(refused.value) and GOOGLE_MAIL in str(refused.value)


# -- Microsoft 365 ------------------------------------------------------------------------------------------
@pytest.fixture
def microsoft(google: GoogleTokenServer) -> Iterator[MicrosoftAuthority]:
    with MicrosoftAuthority(google.book) as authority:
        yield authority


def microsoft_settings(tmp_path: Path, authority: MicrosoftAuthority, smtp: SmtpServer) -> Settings:
    return make_settings(tmp_path, email={
        "transport": "smtp", "host": smtp.host, "port": smtp.port, "security": "none", "timeout": 5,
        "auth": "microsoft", "username": USER,
        "microsoft": {"tenant": authority.tenant, "client_id": "11111111-2222-3333-4444-555555555555",
                      "client_secret_env": "PARTNERLOOP_MS_SECRET", "authority": authority.url}})


def msal_tokens(settings: Settings, authority: MicrosoftAuthority) -> MicrosoftTokens:
    return MicrosoftTokens(settings.email.microsoft, USER, http_client=authority.session())


def test_smtp_signs_in_with_msal_client_credentials(tmp_path: Path, microsoft: MicrosoftAuthority, smtp: SmtpServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERLOOP_MS_SECRET", "the-right-secret")
    settings = microsoft_settings(tmp_path, microsoft, smtp)
    microsoft.register(settings.email.microsoft.client_id, "the-right-secret", USER)
    tokens = msal_tokens(settings, microsoft)
    with SmtpTransport(settings.email, tokens=tokens) as transport:
        transport.send(letter())
        microsoft.book.expire_all()
        transport.close()
        transport.send(letter("<m2@riverside-pt.example>"))  # a new connection: the refused token is replaced
    assert smtp.logins == [USER, USER] and len(smtp.messages) == 2
    assert [r["scope"] for r in microsoft.token_requests] == ["https://outlook.office365.com/.default"] * 2
    assert microsoft.token_requests[0]["grant_type"] == "client_credentials"


def test_a_wrong_client_secret_is_one_line_naming_the_variable(tmp_path: Path, microsoft: MicrosoftAuthority,
                                                               smtp: SmtpServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERLOOP_MS_SECRET", "an-old-secret")
    settings = microsoft_settings(tmp_path, microsoft, smtp)
    microsoft.register(settings.email.microsoft.client_id, "the-right-secret", USER)
    with pytest.raises(AuthFailed) as refused:
        SmtpTransport(settings.email, tokens=msal_tokens(settings, microsoft)).open()
    assert str(refused.value) == ("Microsoft 365 refused the sign-in: the client secret in PARTNERLOOP_MS_SECRET is "
                                  "wrong: create a new client secret for the app and set PARTNERLOOP_MS_SECRET "
                                  "(AADSTS7000215)")
    assert "an-old-secret" not in str(refused.value) and smtp.messages == []


def test_an_app_without_the_mailbox_permission_is_told_about_exchange(
        tmp_path: Path, microsoft: MicrosoftAuthority, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERLOOP_MS_SECRET", "the-right-secret")
    settings = microsoft_settings(tmp_path, microsoft, smtp)
    microsoft.register(settings.email.microsoft.client_id, "the-right-secret")  # no Add-MailboxPermission yet
    with pytest.raises(AuthFailed, match=r"New-ServicePrincipal.*Add-MailboxPermission"):
        SmtpTransport(settings.email, tokens=msal_tokens(settings, microsoft)).open()


def test_microsoft_sign_in_needs_its_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[email.microsoft\] client_id = '': expected a value"):
        make_settings(tmp_path, email={"auth": "microsoft", "microsoft": {"tenant": "t", "client_secret_env": "X"}})


def test_dovecot_takes_only_live_tokens_and_an_expired_one_is_replaced(
        tmp_path: Path, google: GoogleTokenServer, key: dict[str, Any], smtp: SmtpServer, imap: ImapServer) -> None:
    import imaplib

    from automations.mail.oauth import token_source, xoauth2

    settings = oauth_settings(tmp_path, key, smtp, imap)
    tokens = token_source(settings.email, mailbox=USER)
    stale = tokens.token()
    google.book.expire_all()
    client = imaplib.IMAP4(imap.host, imap.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        client.authenticate("XOAUTH2", lambda challenge: xoauth2(USER, stale) if not challenge else b"")
    client.logout()
    imap.deliver(USER, letter("<waiting@riverside-pt.example>"))
    messages = fetch_new(settings, None, tokens=tokens)
    assert "<waiting@riverside-pt.example>" in [m.message_id for m in messages]
    assert tokens.token() != stale


def test_imap_with_microsoft_tokens_reads_the_mailbox(tmp_path: Path, microsoft: MicrosoftAuthority,
                                                      smtp: SmtpServer, imap: ImapServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERLOOP_MS_SECRET", "the-right-secret")
    settings = make_settings(tmp_path, email={
        "auth": "microsoft", "imap": {"host": imap.host, "port": imap.port, "security": "none", "username": USER},
        "microsoft": {"tenant": microsoft.tenant, "client_id": "app-1", "client_secret_env": "PARTNERLOOP_MS_SECRET",
                      "authority": microsoft.url}})
    microsoft.register("app-1", "the-right-secret", USER)
    imap.deliver(USER, letter("<for-the-app@riverside-pt.example>"))
    messages = fetch_new(settings, None, tokens=msal_tokens(settings, microsoft))
    assert "<for-the-app@riverside-pt.example>" in [m.message_id for m in messages]


def test_a_google_token_about_to_expire_is_replaced_before_it_is_used(tmp_path: Path) -> None:
    from automations.mail.oauth import GoogleTokens

    for lifetime, fetched in ((3600, 1), (120, 2)):  # google-auth renews a token with under ~4 minutes left
        with GoogleTokenServer(lifetime=lifetime) as google:
            key = google.new_key()
            google.grant(key, USER, GOOGLE_MAIL)
            settings = make_settings(tmp_path, email={"auth": "google", "google": {
                "credentials": str(write_key(tmp_path / "key.json", key))}})
            tokens = GoogleTokens(settings.email.google, [GOOGLE_MAIL])
            tokens.token()
            tokens.token()
            assert len(google.requests) == fetched


def test_google_mail_settings_default_to_the_sheet_key_and_the_clinic_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sheet={"credentials": "keys/sheet.json"}, email={"transport": "gmail"})
    google = settings.email.google
    assert google.credentials == tmp_path / "keys" / "sheet.json"
    assert google.user == "partners@riverside-pt.example"
    assert google.api_endpoint == "https://gmail.googleapis.com"
    assert settings.email.auth == "password" and settings.email.imap.sent_folder == "Sent"
    with pytest.raises(ConfigError, match=r"\[email.google\] api_endpoint = 'gmail': expected a base URL"):
        make_settings(tmp_path, email={"google": {"api_endpoint": "gmail"}})
    with pytest.raises(ConfigError, match=r"\[email\] auth = 'oauth': expected one of 'password', 'google'"):
        make_settings(tmp_path, email={"auth": "oauth"})
    with pytest.raises(ConfigError, match=r"\[email.google\] credentials = '': expected the path of a service-account"):
        make_settings(tmp_path, email={"transport": "gmail"})


def test_an_unknown_smtp_send_is_settled_from_the_imap_sent_folder(
        tmp_path: Path, google: GoogleTokenServer, key: dict[str, Any], smtp: SmtpServer, imap: ImapServer) -> None:
    from automations.mail.settle import settle_unknown

    reader = "sent-mail@riverside-pt.example"  # a mailbox of its own: no Sent folder yet
    google.grant(key, reader, GOOGLE_MAIL)
    settings = oauth_settings(tmp_path, key, smtp, imap)
    settings = replace(settings, email=replace(settings.email, imap=replace(settings.email.imap, username=reader)))
    seed_sheet(settings, partners=PARTNERS)
    smtp.drop_before_reply(1)
    report = run_jobs(world(settings, MONDAY), ["outreach"])
    assert "no answer after the message was handed over" in report.fatal
    ledger = Ledger.in_state_dir(settings.state_dir)
    [unknown] = ledger.unknown()
    with pytest.raises(MailError, match=r"opening folder 'Sent' \(check \[email.imap\] sent_folder\)"):
        settle_unknown(settings, ledger, MONDAY)
    imap.deliver(reader, letter("<other@riverside-pt.example>"), folder="Sent")
    assert settle_unknown(settings, ledger, MONDAY) == []  # not in the sent folder: stays unknown
    [arrived] = smtp.messages
    imap.deliver(reader, arrived.raw, folder="Sent")  # the provider keeps a copy of what it took
    assert [r.key for r in settle_unknown(settings, ledger, MONDAY)] == [unknown.key]
    assert ledger.unknown() == []
    run_jobs(world(settings, MONDAY), ["outreach"])
    assert smtp.arrivals(unknown.message_id) == 1
