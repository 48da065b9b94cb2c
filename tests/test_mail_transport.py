"""Transports, asserted on what really arrives at a loopback SMTP server (and in the outbox folder)."""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from automations.config import ClinicSettings, Settings, settings_from_dict
from automations.errors import MailError
from automations.mail.message import build_message
from automations.mail.render import Renderer, sample_context
from automations.mail.transport import (
    AuthFailed,
    OutboxTransport,
    OutcomeUnknown,
    RecipientRefused,
    SmtpTransport,
    TemporaryFailure,
    make_transport,
)
from tests.support.smtp_server import SmtpServer, email_settings_for, parse_message

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
NOW = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
USER, PASSWORD = "partners@riverside-pt.example", "s3cret-pässword"


def make_settings(tmp_path: Path, **email: Any) -> Settings:
    raw = {
        "clinic": {"name": "Riverside Physical Therapy", "address": "120 Main Street, Springfield, IL 62701",
                   "from_email": "partners@riverside-pt.example", "reply_to": "partners@riverside-pt.example",
                   "phone": "(217) 555-0142", "timezone": "America/Chicago"},
        "email": {"transport": "outbox", "outbox_dir": "outbox", **email},
    }
    return settings_from_dict(raw, tmp_path / "settings.toml")


@pytest.fixture
def clinic(tmp_path: Path) -> ClinicSettings:
    return make_settings(tmp_path).clinic


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def message_for(
    renderer: Renderer,
    clinic: ClinicSettings,
    to_email: str = "dana@northside-strength.example",
    to_name: str = "Dana Brooks",
    template: str = "outreach_intro",
    **partner: str,
) -> EmailMessage:
    context = sample_context(template, clinic, today=date(2026, 11, 27))
    for key, value in partner.items():
        setattr(context["partner"], key, value)
    rendered = renderer.render(template, context)
    return build_message(rendered, to_email=to_email, to_name=to_name, clinic=clinic,
                         outreach=template.startswith("outreach_"), now=NOW)


def text_of(message: Any, kind: str) -> str:
    return str(message.get_body((kind,)).get_content()).replace("\r\n", "\n")


# --- what arrives -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to_name", "business"),
    [("Dana Brooks", "Northside Strength Co."), ("Zoë Müller", "Café Ñandú Yoga")],
)
def test_the_server_receives_exactly_what_was_rendered(
    smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings, to_name: str, business: str
) -> None:
    context = sample_context("outreach_intro", clinic, today=date(2026, 11, 27))
    context["partner"].business = business
    rendered = renderer.render("outreach_intro", context)
    message = build_message(rendered, to_email="dana@northside-strength.example", to_name=to_name,
                            clinic=clinic, outreach=True, now=NOW)

    with SmtpTransport(email_settings_for(smtp)) as transport:
        result = transport.send(message)

    assert result.startswith("250")
    [arrived] = smtp.messages
    assert arrived.envelope_from == "partners@riverside-pt.example"
    assert arrived.recipients == ["dana@northside-strength.example"]
    got = arrived.message
    assert got["From"] == "Riverside Physical Therapy <partners@riverside-pt.example>"
    assert got["To"] == f"{to_name} <dana@northside-strength.example>"
    assert got["Subject"] == rendered.subject and business in got["Subject"]
    assert got["Message-ID"] == message["Message-ID"]
    assert got["List-Unsubscribe"] == "<mailto:partners@riverside-pt.example?subject=unsubscribe>"
    assert text_of(got, "plain") == rendered.text
    assert text_of(got, "html").rstrip("\n") == rendered.html
    assert business in text_of(got, "plain")


def test_one_connection_serves_the_whole_run(smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings) -> None:
    with SmtpTransport(email_settings_for(smtp)) as transport:
        for n in range(5):
            transport.send(message_for(renderer, clinic, to_email=f"partner{n}@example.org"))
    assert len(smtp.messages) == 5
    assert smtp.connections == 1


def test_a_bcc_in_a_name_adds_no_header_and_no_recipient(
    smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings
) -> None:
    message = message_for(renderer, clinic, to_name="Dana\r\nBcc: someone@example.org",
                          business="Northside\r\nBcc: someone@example.org")
    with SmtpTransport(email_settings_for(smtp)) as transport:
        transport.send(message)
    [arrived] = smtp.messages
    assert arrived.recipients == ["dana@northside-strength.example"]
    assert arrived.message["Bcc"] is None
    headers = arrived.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in headers
    assert [a.addr_spec for a in arrived.message["To"].addresses] == ["dana@northside-strength.example"]


def test_markup_in_a_cell_arrives_escaped(smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings) -> None:
    message = message_for(renderer, clinic, business="<script>alert(1)</script>")
    with SmtpTransport(email_settings_for(smtp)) as transport:
        transport.send(message)
    html = text_of(smtp.messages[0].message, "html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- refusals, drops and retries ----------------------------------------------------------


def test_a_refused_recipient_does_not_stop_the_others(
    smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings
) -> None:
    smtp.refuse("gone@example.org", 550, "5.1.1 <gone@example.org>: mailbox unavailable")
    messages = [message_for(renderer, clinic, to_email=address)
                for address in ("first@example.org", "gone@example.org", "third@example.org")]
    outcomes: list[str] = []
    with SmtpTransport(email_settings_for(smtp)) as transport:
        for message in messages:
            try:
                outcomes.append(transport.send(message))
            except RecipientRefused as refused:
                outcomes.append(f"refused: {refused}")
                assert refused.code == 550
    assert outcomes[1] == "refused: 550 5.1.1 <the recipient>: mailbox unavailable"  # no address in the reason
    assert [m.recipients for m in smtp.messages] == [["first@example.org"], ["third@example.org"]]
    assert smtp.connections == 1


def test_a_421_reconnects_once_and_delivers_once(smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings) -> None:
    message = message_for(renderer, clinic)
    smtp.fail_next(1, code=421)
    with SmtpTransport(email_settings_for(smtp)) as transport:
        assert transport.send(message).startswith("250")
    assert smtp.arrivals(message["Message-ID"]) == 1
    assert smtp.connections == 2


def test_a_second_421_after_reconnecting_is_a_temporary_failure(
    smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings
) -> None:
    message = message_for(renderer, clinic)
    smtp.fail_next(2, code=421)
    with SmtpTransport(email_settings_for(smtp)) as transport, pytest.raises(TemporaryFailure, match="not delivered"):
        transport.send(message)
    assert smtp.messages == []
    assert smtp.connections == 2  # one reconnect, no more


def test_a_4xx_reply_is_a_temporary_failure_without_retry(
    smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings
) -> None:
    smtp.fail_next(1, code=451)
    with SmtpTransport(email_settings_for(smtp)) as transport:
        with pytest.raises(TemporaryFailure, match="451"):
            transport.send(message_for(renderer, clinic))
        assert transport.send(message_for(renderer, clinic)).startswith("250")  # the connection is still good
    assert len(smtp.messages) == 1
    assert smtp.connections == 1


def test_a_connection_dropped_between_messages_is_reopened(
    smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings
) -> None:
    first, second, third = (message_for(renderer, clinic) for _ in range(3))
    smtp.drop_after(1)
    with SmtpTransport(email_settings_for(smtp)) as transport:
        for message in (first, second, third):
            transport.send(message)
    for message in (first, second, third):
        assert smtp.arrivals(message["Message-ID"]) == 1
    assert smtp.connections == 2


@pytest.mark.parametrize(("fault", "words"), [("drop_before_reply", "no answer after the message was handed over"),
                                                ("garble_reply", "is not an SMTP reply")])
def test_a_drop_or_a_garbled_answer_after_the_message_was_handed_over_is_never_retried(
    smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings, fault: str, words: str
) -> None:
    message, after = message_for(renderer, clinic), message_for(renderer, clinic)
    getattr(smtp, fault)(1)
    with SmtpTransport(email_settings_for(smtp)) as transport:
        with pytest.raises(OutcomeUnknown, match=f"{words}.*may or may not"):
            transport.send(message)
        transport.send(after)  # the run goes on over a new connection
    assert smtp.arrivals(message["Message-ID"]) == 1  # the server has it: a retry would double it
    assert smtp.arrivals(after["Message-ID"]) == 1


def test_a_server_slower_than_the_timeout_gives_outcome_unknown(
    smtp: SmtpServer, renderer: Renderer, clinic: ClinicSettings
) -> None:
    """The server already holds the whole message when it goes quiet, so it may still deliver it:
    that is OutcomeUnknown (staff decide), not TemporaryFailure (which would invite a re-send)."""
    message = message_for(renderer, clinic)
    smtp.delay(2.0)
    started = time.monotonic()
    with SmtpTransport(email_settings_for(smtp, timeout=0.5)) as transport, pytest.raises(OutcomeUnknown):
        transport.send(message)
    assert time.monotonic() - started < 1.8
    assert smtp.arrivals(message["Message-ID"]) == 1


def test_an_unreachable_server_is_a_temporary_failure_naming_host_and_port(
    renderer: Renderer, clinic: ClinicSettings
) -> None:
    server = SmtpServer().start()
    settings = email_settings_for(server)
    server.stop()
    with pytest.raises(TemporaryFailure, match=rf"127\.0\.0\.1:{settings.port}: cannot reach"):
        SmtpTransport(settings).open()


# --- TLS and login ------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_login(security: str, renderer: Renderer, clinic: ClinicSettings) -> None:
    with SmtpServer(security=security, auth=(USER, PASSWORD)) as server:
        settings = email_settings_for(server)
        with SmtpTransport(settings, ssl_context=server.client_ssl_context(), password=PASSWORD) as transport:
            transport.send(message_for(renderer, clinic))
        assert server.logins == [USER]
        assert len(server.messages) == 1


def test_the_password_comes_from_the_environment(
    renderer: Renderer, clinic: ClinicSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNERLOOP_TEST_SMTP_PASSWORD", PASSWORD)
    with SmtpServer(security="starttls", auth=(USER, PASSWORD)) as server:
        settings = email_settings_for(server, password_env="PARTNERLOOP_TEST_SMTP_PASSWORD")
        with SmtpTransport(settings, ssl_context=server.client_ssl_context()) as transport:
            transport.send(message_for(renderer, clinic))
        assert server.logins == [USER]


def test_a_wrong_password_is_auth_failed(renderer: Renderer, clinic: ClinicSettings) -> None:
    with SmtpServer(security="starttls", auth=(USER, PASSWORD)) as server:
        transport = SmtpTransport(email_settings_for(server), ssl_context=server.client_ssl_context(), password="nope")
        with pytest.raises(AuthFailed, match="username or password") as caught:
            transport.open()
        assert "nope" not in str(caught.value)
        assert server.messages == []


def test_a_server_wanting_a_login_that_is_not_configured_is_auth_failed(
    renderer: Renderer, clinic: ClinicSettings
) -> None:
    with (
        SmtpServer(security="none", auth=(USER, PASSWORD)) as server,
        SmtpTransport(email_settings_for(server, username="")) as transport,
        pytest.raises(AuthFailed, match="530"),
    ):
        transport.send(message_for(renderer, clinic))


def test_an_untrusted_certificate_is_refused(renderer: Renderer, clinic: ClinicSettings) -> None:
    with SmtpServer(security="ssl") as server:
        with pytest.raises(MailError, match="certificate") as caught:
            SmtpTransport(email_settings_for(server)).open()  # the system's trust store, not the test CA
        assert not isinstance(caught.value, TemporaryFailure)


def test_starttls_not_offered_is_a_config_problem(smtp: SmtpServer) -> None:
    with pytest.raises(MailError, match="does not offer STARTTLS"):
        SmtpTransport(email_settings_for(smtp, security="starttls")).open()


# --- international addresses -------------------------------------------------------------


def test_a_non_ascii_address_goes_with_smtputf8(renderer: Renderer, clinic: ClinicSettings) -> None:
    with SmtpServer(smtputf8=True) as server:
        with SmtpTransport(email_settings_for(server)) as transport:
            transport.send(message_for(renderer, clinic, to_email="zoë@café-ñandú.example", to_name="Zoë Müller"))
        [arrived] = server.messages
    assert arrived.recipients == ["zoë@xn--caf-and-dya7eve.example"]
    assert "SMTPUTF8" in arrived.mail_options
    assert arrived.message["To"].addresses[0].addr_spec == "zoë@xn--caf-and-dya7eve.example"
    assert arrived.message["To"].addresses[0].display_name == "Zoë Müller"


def test_a_non_ascii_address_without_smtputf8_is_refused_and_the_run_goes_on(
    renderer: Renderer, clinic: ClinicSettings
) -> None:
    with SmtpServer(smtputf8=False) as server:
        with SmtpTransport(email_settings_for(server)) as transport:
            with pytest.raises(RecipientRefused, match="cannot take a non-ASCII address"):
                transport.send(message_for(renderer, clinic, to_email="zoë@cafe.example"))
            transport.send(message_for(renderer, clinic, to_email="zoe@café-ñandú.example"))  # IDN domain: fine
        [arrived] = server.messages
    assert arrived.recipients == ["zoe@xn--caf-and-dya7eve.example"]
    assert "SMTPUTF8" not in arrived.mail_options
    assert arrived.raw.isascii()


# --- outbox -------------------------------------------------------------------------------


def test_outbox_writes_private_sortable_eml_files(tmp_path: Path, renderer: Renderer, clinic: ClinicSettings) -> None:
    ticks = iter(NOW + timedelta(milliseconds=n) for n in range(100))
    outbox = tmp_path / "var" / "outbox"
    templates = ["referral_update", "outreach_intro", "discharge_patient"]
    sent: list[EmailMessage] = []
    names: list[str] = []
    with OutboxTransport(outbox, clock=lambda: next(ticks)) as transport:
        for template in templates:
            message = message_for(renderer, clinic, template=template, to_email="zoë@cafe.example")
            sent.append(message)
            names.append(transport.send(message))

    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    assert sorted(os.listdir(outbox)) == names == sorted(names)
    assert names[0] == "20261127T153000.000000Z-0001-referral_update.eml"
    for name, message in zip(names, sent, strict=True):
        path = outbox / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        parsed = parse_message(path.read_bytes())
        assert parsed["Message-ID"] == message["Message-ID"]
        assert parsed["To"].addresses[0].addr_spec == "zoë@cafe.example"
        assert text_of(parsed, "plain") == text_of(message, "plain")
        assert "zo" not in name and "Pat" not in name  # no patient data in file names


def test_make_transport_follows_the_config(tmp_path: Path, smtp: SmtpServer) -> None:
    outbox = make_transport(make_settings(tmp_path))
    assert isinstance(outbox, OutboxTransport) and outbox.directory == tmp_path / "outbox"
    transport = make_transport(
        make_settings(tmp_path, transport="smtp", host=smtp.host, port=smtp.port, security="none"),
        password="",
    )
    assert isinstance(transport, SmtpTransport)
    with transport:
        pass
    assert smtp.connections == 1
