"""Turning a rendered email into a standards-clean message: headers, both parts, no injection.

Every header value passes through `one_line`, so a cell holding "\\r\\nBcc: x@y" can add neither a
header nor a recipient. Non-ASCII names and subjects are RFC 2047 encoded by the SMTP policy;
an address with a non-ASCII domain is sent in its IDNA (xn--) form, and one with a non-ASCII
local part needs a server offering SMTPUTF8 (the transport checks).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from email import headerregistry, policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, make_msgid

from automations.cells import checked_address, one_line
from automations.config import ClinicSettings
from automations.core import Invite
from automations.mail.render import Rendered

TEMPLATE_HEADER = "X-Partnerloop-Template"
INVITE_FILENAME = "invite.ics"


class _HeaderClasses(headerregistry.HeaderRegistry):
    """The standard header classes, each made once: the stock registry builds a new class for every
    header it is asked for, which was a tenth of the time spent building a message."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        if key not in self._made:
            self._made[key] = super().__getitem__(name)
        return self._made[key]


SMTP_POLICY = policy.SMTP.clone(header_factory=_HeaderClasses())


class WrittenMessage(EmailMessage):
    """A message build_message wrote out itself: the bytes to send, and the values transports and the
    ledger ask for, kept as written (reading them back from the headers costs more than writing them)."""

    wire: bytes = b""
    message_id: str = ""
    sender: str = ""
    recipient: str = ""
    template: str = ""


def message_id(message: EmailMessage) -> str:
    """The Message-ID header of an outgoing message."""
    return message.message_id if isinstance(message, WrittenMessage) else str(message["Message-ID"])


def build_message(
    rendered: Rendered,
    *,
    to_email: str,
    to_name: str,
    clinic: ClinicSettings,
    outreach: bool,
    now: datetime,
    references: Sequence[str] = (),
    signer: tuple[str, str] | None = None,
    invite: Invite | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) ready for any transport.

    *references*: the Message-IDs of the earlier letters it answers, oldest first (In-Reply-To is the
    last). *signer*: (name, address) of the staff member who signs it: replies go to them. *invite*:
    a calendar invitation, carried as a text/calendar alternative (what calendar clients act on) and
    as an invite.ics attachment (for the rest), inside multipart/mixed. Raises ValueError when
    *to_email* is not one valid address (the message names no address, so it is safe for logs) or
    when *now* has no time zone.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the send time must carry a time zone")
    sender = mailbox(clinic.name, clinic.from_email, "[clinic] from_email")
    if signer is not None and signer[1]:
        reply_to: Address | None = mailbox(signer[0], signer[1], "[[staff]] email")
    else:
        reply_to = mailbox(clinic.name, clinic.reply_to, "[clinic] reply_to") if clinic.reply_to else None
    recipient = mailbox(to_name, to_email)
    ics = None
    if invite is not None:
        from automations.mail.calendar import calendar_bytes  # icalendar loads only for a run that sends invites

        ics = calendar_bytes(invite, stamp=now)
    if all(a.addr_spec.isascii() for a in (sender, recipient, *([reply_to] if reply_to else []))):
        return _written(rendered, sender, reply_to, recipient, clinic, outreach, now, references,
                        (invite.method, ics) if invite is not None and ics is not None else None)
    # A non-ASCII mailbox name (SMTPUTF8): the email package writes it as such servers expect.
    message = EmailMessage(policy=SMTP_POLICY)
    message["Message-ID"] = make_msgid(domain=_ascii_domain(clinic.domain))
    message["Date"] = format_datetime(now)
    message["From"] = sender
    if reply_to is not None:
        message["Reply-To"] = reply_to
    message["To"] = recipient
    message["Subject"] = one_line(rendered.subject)
    if references:
        message["In-Reply-To"] = references[-1]
        message["References"] = " ".join(references)
    if outreach:
        message["List-Unsubscribe"] = f"<{unsubscribe_mailto(clinic)}>"
    message[TEMPLATE_HEADER] = one_line(rendered.template)
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if invite is not None and ics is not None:
        message.add_alternative(ics.decode("utf-8"), subtype="calendar", charset="utf-8", cte="base64",
                                params={"method": invite.method})
        message.add_attachment(ics, maintype="application", subtype="ics", filename=INVITE_FILENAME)
    return message


def _written(rendered: Rendered, sender: Address, reply_to: Address | None, recipient: Address,
             clinic: ClinicSettings, outreach: bool, now: datetime, references: Sequence[str],
             calendar: tuple[str, bytes] | None = None) -> EmailMessage:
    """The same message written out directly as RFC 5322 bytes (several times faster than building it
    header by header), its headers read back as an EmailMessage that keeps those bytes for the transport
    to send (the parts stay as written: parse `message_bytes` to read them)."""
    msgid = make_msgid(domain=_ascii_domain(clinic.domain))
    headers = [
        ("Message-ID", msgid),
        ("Date", format_datetime(now)),
        ("From", _address(sender)),
        *([("Reply-To", _address(reply_to))] if reply_to else []),
        ("To", _address(recipient)),
        ("Subject", _text_header("Subject", one_line(rendered.subject))),
        *([("In-Reply-To", references[-1]), ("References", _text_header("References", " ".join(references)))]
          if references else []),
        *([("List-Unsubscribe", f"<{unsubscribe_mailto(clinic)}>")] if outreach else []),
        (TEMPLATE_HEADER, _text_header(TEMPLATE_HEADER, one_line(rendered.template))),
        ("MIME-Version", "1.0"),
    ]
    boundary = "=====partnerloop-" + uuid.uuid4().hex + "=="
    lines = [f"{name}: {value}" for name, value in headers]
    if calendar is not None:  # the alternatives and the invite.ics attachment, side by side
        mixed = boundary.replace("partnerloop-", "partnerloop-mixed-")
        lines += [f'Content-Type: multipart/mixed; boundary="{mixed}"', "", f"--{mixed}"]
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    lines.append("")
    for subtype, body in (("plain", rendered.text), ("html", rendered.html)):
        lines += [f"--{boundary}", f'Content-Type: text/{subtype}; charset="utf-8"',
                  "Content-Transfer-Encoding: quoted-printable", "", _quoted_printable(body)]
    if calendar is not None:
        method, ics = calendar
        encoded = _base64(ics)
        lines += [f"--{boundary}", f'Content-Type: text/calendar; charset="utf-8"; method={method}',
                  "Content-Transfer-Encoding: base64", "", encoded]
    lines += [f"--{boundary}--", ""]
    if calendar is not None:
        lines[-1:] = [f"--{mixed}", f'Content-Type: application/ics; name="{INVITE_FILENAME}"',
                      f'Content-Disposition: attachment; filename="{INVITE_FILENAME}"',
                      "Content-Transfer-Encoding: base64", "", encoded, f"--{mixed}--", ""]
    wire = "\r\n".join(lines).encode("ascii")
    message = BytesParser(policy=SMTP_POLICY, _class=WrittenMessage).parsebytes(wire, headersonly=True)
    assert isinstance(message, WrittenMessage)
    message.wire, message.message_id, message.template = wire, msgid, one_line(rendered.template)
    message.sender, message.recipient = sender.addr_spec, recipient.addr_spec
    return message


def _address(address: Address) -> str:
    """A header address: the display name quoted or RFC 2047 encoded as needed, the address as validated."""
    return formataddr((address.display_name, address.addr_spec), charset="utf-8")


def _text_header(name: str, value: str) -> str:
    """An unstructured header value, RFC 2047 encoded when not ASCII, folded to lines under 78 characters."""
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=name).encode(linesep="\r\n")


def _quoted_printable(body: str) -> str:
    """A text part's body in quoted-printable (binascii's encoder, the same output as the email package's
    several times faster), lines ending CRLF, ending with a line break."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    text = text if text.endswith("\n") else text + "\n"
    return binascii.b2a_qp(text.replace("\n", "\r\n").encode("utf-8"), quotetabs=False, istext=True).decode("ascii")


def _base64(data: bytes) -> str:
    """A part's body in base64, lines of 76 characters ending CRLF."""
    return base64.encodebytes(data).decode("ascii").replace("\n", "\r\n").rstrip("\r\n")


def unsubscribe_mailto(clinic: ClinicSettings) -> str:
    """The opt-out address for outreach: a mail to the clinic's reply address with subject "unsubscribe"."""
    address = mailbox("", clinic.reply_to or clinic.from_email, "[clinic] reply_to")
    return f"mailto:{address.addr_spec}?subject=unsubscribe"


def mailbox(name: str, email: str, what: str = "the email address") -> Address:
    """A header address from cell text: the name on one line, the address validated and IDNA-encoded.

    ValueError names *what* was wrong, never the address itself (it may be a patient's).
    """
    raw = one_line(email)
    if not raw or raw != str(email).strip():
        raise ValueError(f"{what} is not one valid address")
    parts = _validated(raw)
    if parts is None:
        raise ValueError(f"{what} is not one valid address")
    return Address(display_name=one_line(name), username=parts[0], domain=parts[1])


def _validated(address: str) -> tuple[str, str] | None:
    """(local part, ASCII domain) of a valid address, else None; each address is checked once per process."""
    checked = checked_address(address)
    return (checked.local_part, checked.ascii_domain) if not checked.reason else None


def needs_smtputf8(address: str) -> bool:
    """True when the address cannot be written in ASCII (a non-ASCII local part)."""
    return not address.isascii()


def _ascii_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "localhost"
