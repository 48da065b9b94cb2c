"""Messages: the headers every email carries, both parts, and no way for a cell to add a header."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automations.config import ClinicSettings, settings_from_dict
from automations.mail.message import build_message, unsubscribe_mailto
from automations.mail.render import Rendered

NOW = datetime(2026, 11, 27, 9, 30, tzinfo=ZoneInfo("America/Chicago"))


def clinic_settings(**overrides: str) -> ClinicSettings:
    raw = {
        "name": "Riverside Physical Therapy",
        "address": "120 Main Street, Springfield, IL 62701",
        "from_email": "partners@riverside-pt.example",
        "reply_to": "hello@riverside-pt.example",
        "timezone": "America/Chicago",
        **overrides,
    }
    return settings_from_dict({"clinic": raw}, Path("test.toml")).clinic


RENDERED = Rendered(
    template="outreach_intro",
    subject="Café Ñandú Yoga and Riverside Physical Therapy",
    text="Hi Zoë,\n\nWe would love to work with Café Ñandú Yoga.\n",
    html="<!DOCTYPE html><html><body><p>Hi Zoë,</p><p>We would love to work with Café Ñandú Yoga.</p></body></html>",
)


def parse(message: EmailMessage) -> Any:
    """Round-trip through bytes, as a receiving mail client would."""
    return BytesParser(policy=policy.default).parsebytes(message.as_bytes())


def test_message_carries_every_header_and_both_parts() -> None:
    clinic = clinic_settings()
    message = build_message(RENDERED, to_email="zoe@cafe-nandu.example", to_name="Zoë Müller",
                            clinic=clinic, outreach=False, now=NOW)
    received = parse(message)

    assert received["From"] == "Riverside Physical Therapy <partners@riverside-pt.example>"
    assert received["Reply-To"].addresses[0].addr_spec == "hello@riverside-pt.example"
    assert received["To"] == "Zoë Müller <zoe@cafe-nandu.example>"
    assert received["Subject"] == "Café Ñandú Yoga and Riverside Physical Therapy"
    assert received["Message-ID"].endswith("@riverside-pt.example>")
    assert parsedate_to_datetime(received["Date"]) == NOW
    assert received["X-Partnerloop-Template"] == "outreach_intro"
    assert received["List-Unsubscribe"] is None
    assert received.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in received.iter_parts()] == ["text/plain", "text/html"]
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == RENDERED.text
    assert received.get_body(("html",)).get_content().replace("\r\n", "\n").rstrip("\n") == RENDERED.html


def test_non_ascii_names_and_subjects_travel_as_encoded_ascii() -> None:
    message = build_message(RENDERED, to_email="zoe@cafe-nandu.example", to_name="Zoë Müller",
                            clinic=clinic_settings(name="Clínica Río"), outreach=False, now=NOW)
    raw = message.as_bytes()
    assert raw.isascii()
    assert b"=?utf-8?" in raw
    received = parse(message)
    assert received["From"].addresses[0].display_name == "Clínica Río"


def test_outreach_has_a_mailto_list_unsubscribe_header() -> None:
    clinic = clinic_settings()
    message = build_message(RENDERED, to_email="dana@northside.example", to_name="Dana",
                            clinic=clinic, outreach=True, now=NOW)
    assert message["List-Unsubscribe"] == "<mailto:hello@riverside-pt.example?subject=unsubscribe>"
    assert message["List-Unsubscribe-Post"] is None
    assert unsubscribe_mailto(clinic) == "mailto:hello@riverside-pt.example?subject=unsubscribe"
    assert unsubscribe_mailto(clinic_settings(reply_to="")) == "mailto:partners@riverside-pt.example?subject=unsubscribe"


def test_a_line_break_in_a_name_adds_no_header() -> None:
    message = build_message(RENDERED, to_email="dana@northside.example", to_name="Dana\r\nBcc: someone@example.org",
                            clinic=clinic_settings(name="Riverside\nX-Evil: 1"), outreach=False, now=NOW)
    raw = message.as_bytes()
    assert b"\r\nBcc:" not in raw and b"\nBcc:" not in raw
    assert b"\r\nX-Evil:" not in raw
    received = parse(message)
    assert received["Bcc"] is None and received["X-Evil"] is None
    assert [a.addr_spec for a in received["To"].addresses] == ["dana@northside.example"]


def test_a_line_break_in_a_subject_adds_no_header() -> None:
    rendered = Rendered("outreach_intro", "Hello\r\nBcc: someone@example.org", "text\n", "<p>html</p>")
    received = parse(build_message(rendered, to_email="dana@northside.example", to_name="Dana",
                                   clinic=clinic_settings(), outreach=False, now=NOW))
    assert received["Bcc"] is None
    assert received["Subject"] == "Hello Bcc: someone@example.org"


@pytest.mark.parametrize("bad", ["dana@northside.example, someone@example.org", "dana@northside.example\r\nBcc: x@y.example",
                                 "not an address", "", "dana@northside.example>, <x@y.example"])
def test_anything_but_one_address_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError) as caught:
        build_message(RENDERED, to_email=bad, to_name="Dana", clinic=clinic_settings(), outreach=False, now=NOW)
    assert "not one valid address" in str(caught.value)
    assert "northside" not in str(caught.value)


def test_an_international_domain_is_sent_in_its_ascii_form() -> None:
    message = build_message(RENDERED, to_email="zoe@café-ñandú.example", to_name="Zoë",
                            clinic=clinic_settings(), outreach=False, now=NOW)
    assert message["To"].addresses[0].addr_spec == "zoe@xn--caf-and-dya7eve.example"
    assert message.as_bytes().isascii()


def test_a_non_ascii_mailbox_name_is_kept_for_smtputf8() -> None:
    message = build_message(RENDERED, to_email="zoë@cafe.example", to_name="Zoë",
                            clinic=clinic_settings(), outreach=False, now=NOW)
    assert message["To"].addresses[0].addr_spec == "zoë@cafe.example"


def test_the_send_time_must_carry_a_time_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        build_message(RENDERED, to_email="dana@northside.example", to_name="Dana", clinic=clinic_settings(),
                      outreach=False, now=datetime(2026, 11, 27, 9, 30))


def test_message_ids_are_unique() -> None:
    ids = {
        build_message(RENDERED, to_email="dana@northside.example", to_name="Dana", clinic=clinic_settings(),
                      outreach=False, now=datetime.now(UTC))["Message-ID"]
        for _ in range(50)
    }
    assert len(ids) == 50


@pytest.mark.parametrize("to_email", ["dana@northside.example", "zoë@cafe.example"])  # written out, and SMTPUTF8
def test_a_reply_names_the_letters_it_answers(to_email: str) -> None:
    earlier = ["<1.intro@riverside-pt.example>", "<2.follow@riverside-pt.example>"]
    message = build_message(RENDERED, to_email=to_email, to_name="Dana", clinic=clinic_settings(), outreach=True,
                            now=NOW, references=earlier)
    received = BytesParser(policy=policy.default).parsebytes(message.as_bytes(policy=policy.SMTPUTF8))
    assert received["In-Reply-To"] == "<2.follow@riverside-pt.example>"
    assert received["References"].split() == earlier


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_both_parts_arrive_exactly_as_written_whatever_the_text(text: str) -> None:
    """Quoted-printable as the receiving client decodes it: the text (line ends as LF) comes back, and
    no encoded line is longer than the 76 characters RFC 2045 allows."""
    rendered = Rendered(template="outreach_intro", subject="A subject", text=text, html=f"<p>{text}</p>")
    message = build_message(rendered, to_email="zoe@cafe-nandu.example", to_name="Zoë", clinic=clinic_settings(),
                            outreach=False, now=NOW)
    wire = message.as_bytes()
    assert all(len(line) <= 76 for line in wire.split(b"\r\n")[wire.split(b"\r\n").index(b""):])
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    received = parse(message)
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == expected.rstrip("\n")
