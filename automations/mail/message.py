"""Turning a rendered email into a standards-clean message: headers, both parts, no injection.

Every header value passes through `one_line`, so a cell holding "\\r\\nBcc: x@y" can add neither a
header nor a recipient. Non-ASCII names and subjects are RFC 2047 encoded by the SMTP policy;
an address with a non-ASCII domain is sent in its IDNA (xn--) form, and one with a non-ASCII
local part needs a server offering SMTPUTF8 (the transport checks).
"""

from __future__ import annotations

import functools
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from email_validator import EmailNotValidError, validate_email

from automations.cells import one_line
from automations.config import ClinicSettings
from automations.mail.render import Rendered

TEMPLATE_HEADER = "X-Partnerloop-Template"


def build_message(
    rendered: Rendered,
    *,
    to_email: str,
    to_name: str,
    clinic: ClinicSettings,
    outreach: bool,
    now: datetime,
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) ready for any transport.

    Raises ValueError when *to_email* is not one valid address (the message names no address,
    so it is safe for logs) or when *now* has no time zone.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the send time must carry a time zone")
    message = EmailMessage(policy=policy.SMTP)
    message["Message-ID"] = make_msgid(domain=_ascii_domain(clinic.domain))
    message["Date"] = format_datetime(now)
    message["From"] = mailbox(clinic.name, clinic.from_email, "[clinic] from_email")
    if clinic.reply_to:
        message["Reply-To"] = mailbox(clinic.name, clinic.reply_to, "[clinic] reply_to")
    message["To"] = mailbox(to_name, to_email)
    message["Subject"] = one_line(rendered.subject)
    if outreach:
        message["List-Unsubscribe"] = f"<{unsubscribe_mailto(clinic)}>"
    message[TEMPLATE_HEADER] = one_line(rendered.template)
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


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


@functools.lru_cache(maxsize=4096)
def _validated(address: str) -> tuple[str, str] | None:
    """(local part, ASCII domain) of a valid address, else None; each address is checked once per process."""
    try:
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return None
    return valid.local_part, valid.ascii_domain


def needs_smtputf8(address: str) -> bool:
    """True when the address cannot be written in ASCII (a non-ASCII local part)."""
    return not address.isascii()


def _ascii_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "localhost"
