"""Mail that comes back to the clinic, parsed: replies, auto-replies and bounces, as `InboundMessage`s.

Pure: no connection, no sheet. `automations.mail.imap` fetches the raw messages; the replies job
decides from what is parsed here. Also the IMAP reading position (`MailboxPosition`, `next_position`),
which the executor keeps only after the replies job's effects are in the sheet.
"""

from __future__ import annotations

import codecs
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.errors import MissingHeaderBodySeparatorDefect
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser, Parser
from email.utils import parsedate_to_datetime

from automations.config import ImapSettings
from automations.core import InboundMessage

FIRST_LINES = 5  # non-quoted body lines kept for deciding what a reply asks

_BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
_OUT_OF_OFFICE = re.compile(
    r"^\s*((re|aw|sv|antw)\s*:\s*)*(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|"
    r"auto[- ]?response|away from (the )?office|on vacation|vacation reply)\b",
    re.IGNORECASE,
)
_MSG_ID = re.compile(r"<[^<>\s]+>")
_ENCODED_WORD = re.compile(r"=\?([^?*\s]+)(?:\*[^?]*)?\?[qQbB]\?")
_QUOTE_STARTS = re.compile(
    r"^(-+\s*original message\s*-+|_{5,}|-- ?$|from:\s|sent:\s|-+\s*forwarded message\s*-+|begin forwarded message)",
    re.IGNORECASE,
)
_READ_HEADERS = frozenset({"from", "to", "cc", "subject", "message-id", "in-reply-to", "references", "date",
                           "delivered-to", "auto-submitted"})


@dataclass(frozen=True)
class MailboxPosition:
    """Where reading stopped: the highest UID read, valid only within its UIDVALIDITY and its mailbox."""

    uidvalidity: int
    uid: int
    mailbox: str = ""  # "username@host/folder": a position in another folder says nothing about this one

    def to_json(self) -> str:
        return json.dumps({"uidvalidity": self.uidvalidity, "uid": self.uid, "mailbox": self.mailbox})

    @classmethod
    def from_json(cls, text: str | None) -> MailboxPosition | None:
        """The position saved in the ledger, or None (never read, or unreadable: read from the start)."""
        if not text:
            return None
        try:
            value = json.loads(text)
            return cls(int(value["uidvalidity"]), int(value["uid"]), str(value.get("mailbox", "")))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def continues(self, mailbox: str, uidvalidity: int) -> bool:
        """True when reading *mailbox* at *uidvalidity* goes on from here (else: from the start)."""
        return self.uidvalidity == uidvalidity and self.mailbox in ("", mailbox)


def mailbox_name(imap: ImapSettings) -> str:
    """The mailbox a position belongs to, as saved with it."""
    return f"{imap.username}@{imap.host.lower()}/{imap.folder}"


def next_position(messages: Sequence[InboundMessage], mailbox: str, saved_json: str | None) -> str:
    """The position after *messages* read from *mailbox*; the saved one when nothing was read."""
    if not messages:
        return saved_json or ""
    uidvalidity = messages[-1].uidvalidity
    uid = max(m.uid for m in messages if m.uidvalidity == uidvalidity)
    saved = MailboxPosition.from_json(saved_json)
    if saved is not None and saved.continues(mailbox, uidvalidity):
        uid = max(uid, saved.uid)
    return MailboxPosition(uidvalidity, uid, mailbox).to_json()


class UnreadableMessage(ValueError):
    """A message partnerloop cannot read; the reason names no sender and no content."""



# -- reading one message (pure) ------------------------------------------------------------------------
def parse_message(raw: bytes, *, uid: int, uidvalidity: int, received: datetime | None = None) -> InboundMessage:
    """Read one raw message; UnreadableMessage for a malformed header, an unknown charset, or worse."""
    try:
        return _parse(raw, uid, uidvalidity, received)
    except UnreadableMessage:
        raise
    except LookupError:
        raise UnreadableMessage("unknown charset") from None
    except Exception as exc:  # the email package has many ways to fail on broken input
        raise UnreadableMessage(f"unreadable message ({type(exc).__name__})") from None


def _parse(raw: bytes, uid: int, uidvalidity: int, received: datetime | None) -> InboundMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    if any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in message.defects):
        raise UnreadableMessage("malformed header (a line in the header block is not a header)")
    for name, value in message.raw_items():
        if name.lower() in _READ_HEADERS:
            for charset in _ENCODED_WORD.findall(str(value)):
                _check_charset(charset)
    senders = _addresses(message, "From")
    if len(senders) != 1:
        raise UnreadableMessage("malformed header From (no single readable address)")
    from_address = senders[0]
    subject = " ".join(str(message.get("Subject", "")).split())
    bounce = _bounce_report(message, from_address)
    return InboundMessage(
        uid=uid,
        uidvalidity=uidvalidity,
        message_id=_one_id(message, "Message-ID"),
        in_reply_to=_one_id(message, "In-Reply-To"),
        references=_ids(message, "References"),
        from_address=from_address,
        subject=subject,
        first_lines=() if bounce is not None else _first_lines(message),
        auto_submitted=_is_automatic(message, subject),
        is_bounce=bounce is not None,
        bounced_recipients=bounce[0] if bounce else (),
        bounced_message_id=bounce[1] if bounce else "",
        to_addresses=tuple(dict.fromkeys(a for h in ("To", "Cc", "Delivered-To") for a in _addresses(message, h))),
        date=_date(message) or received,
    )


def _check_charset(charset: str) -> None:
    if charset.lower() in ("unknown-8bit",):
        return
    try:
        codecs.lookup(charset)
    except LookupError:
        raise UnreadableMessage(f"unknown charset {charset[:40]!r}") from None


def _addresses(message: Message, name: str) -> list[str]:
    """The addresses of one header, lower-cased; raises UnreadableMessage when one cannot be read."""
    found: list[str] = []
    for header in message.get_all(name) or []:
        for address in getattr(header, "addresses", ()):
            assert isinstance(address, Address)
            spec = address.addr_spec
            if not address.username or not address.domain or not spec.isprintable() or _has_surrogates(spec):
                raise UnreadableMessage(f"malformed header {name}")
            found.append(spec.lower())
    return found


def _has_surrogates(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _one_id(message: Message, name: str) -> str:
    ids = _ids(message, name)
    if ids:
        return ids[0]
    value = " ".join(str(message.get(name, "")).split())
    return value if value and " " not in value else ""


def _ids(message: Message, name: str) -> tuple[str, ...]:
    return tuple(_MSG_ID.findall(" ".join(str(v) for v in message.get_all(name) or [])))


def _date(message: Message) -> datetime | None:
    value = message.get("Date")
    if value is None:
        return None
    moment = getattr(value, "datetime", None)
    if moment is None:
        try:
            moment = parsedate_to_datetime(str(value))
        except (TypeError, ValueError, IndexError):
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _is_automatic(message: Message, subject: str) -> bool:
    """An out-of-office or other machine-sent message (RFC 3834 and the common vendor headers)."""
    auto = str(message.get("Auto-Submitted", "")).split(";")[0].strip().lower()
    if auto and auto != "no":
        return True
    if message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None:
        return True
    if str(message.get("Precedence", "")).strip().lower() in ("auto_reply", "bulk", "junk"):
        return True
    return bool(_OUT_OF_OFFICE.match(subject))


def _first_lines(message: EmailMessage) -> tuple[str, ...]:
    """The first few lines a person wrote: quoted text, the attribution line and the signature left out."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ()
    charset = body.get_content_charset()
    if charset:
        _check_charset(charset)
    text = body.get_content()
    if not isinstance(text, str):
        return ()
    if body.get_content_subtype() == "html":
        text = _html_text(text)
    lines: list[str] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if _QUOTE_STARTS.match(line) or re.search(r"\bwrote:$", line, re.IGNORECASE):
            break
        if not line or line.startswith(">"):
            continue
        lines.append(line)
        if len(lines) == FIRST_LINES:
            break
    return tuple(lines)


def _html_text(markup: str) -> str:
    """Rough text of an HTML body: quoted replies (blockquote, gmail_quote) and tags removed."""
    markup = re.split(r"<blockquote|<div[^>]+(gmail_quote|divRplyFwdMsg|OutlookMessageHeader)", markup,
                      maxsplit=1, flags=re.IGNORECASE)[0]
    markup = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr|h\d)>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]*>", " ", markup))


def _bounce_report(message: EmailMessage, from_address: str) -> tuple[tuple[str, ...], str] | None:
    """(recipients whose delivery failed, the bounced Message-ID) for a delivery-status notification, else None."""
    report = message.get_content_type() == "multipart/report" and \
        str(message.get_param("report-type", "")).lower() == "delivery-status"
    status_parts = [p for p in message.walk() if p.get_content_type() == "message/delivery-status"]
    daemon = from_address.split("@")[0] in _BOUNCE_SENDERS
    if not report and not (daemon and status_parts):
        return None
    recipients: list[str] = []
    for part in status_parts:
        blocks = part.get_payload()
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, Message):
                continue
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            action = str(block.get("Action", "failed")).strip().lower()
            if recipient and action == "failed":  # "delayed" is a warning, not a bounce
                address = recipient.split(";", 1)[-1].strip().strip("<>").lower()
                if "@" in address:
                    recipients.append(address)
    return tuple(dict.fromkeys(recipients)), _returned_message_id(message)


def _returned_message_id(message: EmailMessage) -> str:
    """The Message-ID of the returned email: from a message/rfc822 part or text/rfc822-headers."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            for returned in inner if isinstance(inner, list) else [inner]:
                if isinstance(returned, Message):
                    found = _one_id(returned, "Message-ID")
                    if found:
                        return found
        elif kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            text = payload.decode("ascii", "replace") if isinstance(payload, bytes) else str(part.get_payload())
            found = _one_id(Parser(policy=policy.default).parsestr(text, headersonly=True), "Message-ID")
            if found:
                return found
    return ""

