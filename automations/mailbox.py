"""Reading the clinic's mailbox over IMAP: the new replies, auto-replies and bounces since the last run.

`fetch_new` reads the folder named by `[email.imap] folder` from the last position partnerloop
saw (a UID, valid within one UIDVALIDITY) and returns what it finds as `InboundMessage`s, which
know nothing of the sheet. It never stores that position: the replies job returns the new one in
its plan, and the executor keeps it only after the job's effects are in the sheet, so a run that
fails half-way reads the same messages again next time.

Nothing is deleted or moved. Messages are fetched with BODY.PEEK[] on a read-only EXAMINE, so
they stay unread, unless `mark_read = true`: then the folder is SELECTed and each message read
is flagged \\Seen as soon as it is read. Which messages are new is decided by the saved position
alone, never by \\Seen, so a run that fails after flagging still handles them next time.
A message that cannot be read (a malformed header, an unknown charset) is skipped with a log
line naming its UID, never its sender or content, and is left unread for staff.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import html
import imaplib
import json
import logging
import os
import re
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.errors import MissingHeaderBodySeparatorDefect
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser, Parser
from email.utils import parsedate_to_datetime
from typing import Any, Iterable, Sequence

from automations.config import ImapSettings, Settings
from automations.errors import ConfigError, MailError
from automations.mail.ledger import Ledger

log = logging.getLogger("partnerloop")

POSITION_KEY = "imap"  # the ledger kv key holding the last position read
FIRST_LINES = 5  # non-quoted body lines kept for deciding what a reply asks
BATCH = 500  # messages read per run at most; the rest follow on the next run
FETCH_CHUNK = 50  # messages per UID FETCH command
MAX_BYTES = 1_048_576  # the first megabyte of a message is plenty for headers, the reply and a bounce report

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


@dataclass(frozen=True)
class InboundMessage:
    """One message of the clinic's mailbox, reduced to what partnerloop decides from.

    Each carries its folder's `uidvalidity`, so the replies job can compute the new position from
    the messages alone. A message that could not be read has `skipped` set (the reason, naming no
    content) and nothing else: it only moves the position past it, so it is logged once, not every run.
    """

    uid: int
    uidvalidity: int
    message_id: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    from_address: str = ""  # lower-cased
    subject: str = ""
    first_lines: tuple[str, ...] = ()  # the first non-quoted lines of the text body
    auto_submitted: bool = False  # an out-of-office or other automatic message, not a person's reply
    is_bounce: bool = False  # a delivery-status notification
    bounced_recipients: tuple[str, ...] = ()  # lower-cased; only recipients whose delivery failed
    bounced_message_id: str = ""  # the Message-ID of the email that bounced, when the report returns it
    to_addresses: tuple[str, ...] = ()  # To, Cc and Delivered-To, lower-cased
    date: datetime | None = None  # the Date header, else when the server received it
    skipped: str = ""

    @classmethod
    def unreadable(cls, uid: int, uidvalidity: int, reason: str) -> InboundMessage:
        return cls(uid=uid, uidvalidity=uidvalidity, skipped=reason)

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """The Message-IDs this message answers, nearest first: In-Reply-To, then References newest first."""
        ids = ([self.in_reply_to] if self.in_reply_to else []) + list(reversed(self.references))
        return tuple(dict.fromkeys(ids))


class UnreadableMessage(ValueError):
    """A message partnerloop cannot read; the reason names no sender and no content."""


# -- reading the mailbox -------------------------------------------------------------------------------
def fetch_new(settings: Settings, ledger: Ledger, *, ssl_context: ssl.SSLContext | None = None,
              password: str | None = None, batch: int = BATCH) -> tuple[InboundMessage, ...]:
    """The messages after the position saved in the ledger, oldest first, at most *batch* of them.

    Without `[email.imap] host` there is no mailbox: a warning is logged and nothing is returned.

    When the folder's UIDVALIDITY is not the one saved, the server has renumbered the folder (it
    was recreated or rebuilt), so the saved UID means nothing any more: reading starts over from
    the first message; so it does when the settings name another folder, account or host. That is safe because the replies job changes nothing for a message it has
    already handled. Raises MailError (one line naming host:port) when the mailbox cannot be read.
    """
    imap_settings = settings.email.imap
    if not imap_settings.host:  # `run --all` and the demo include the replies job; without a mailbox it reads nothing
        log.warning("replies: no mailbox to read; set [email.imap] host, port, security, username and password_env "
                    "in %s", settings.source)
        return ()
    saved = MailboxPosition.from_json(ledger.get_value(POSITION_KEY))
    secret = password if password is not None else _password(imap_settings)
    with _Mailbox(imap_settings, secret, settings.email.timeout, ssl_context) as mailbox:
        uidvalidity = mailbox.open_folder(writable=imap_settings.mark_read)
        start = 1
        if saved is not None and saved.continues(mailbox_name(imap_settings), uidvalidity):
            start = saved.uid + 1
        elif saved is not None and saved.uidvalidity != uidvalidity:
            log.info("mailbox %s: UIDVALIDITY of %s changed (the server renumbered the folder); reading it again "
                     "from the start", mailbox.where, imap_settings.folder)
        elif saved is not None:
            log.info("mailbox %s: [email.imap] now names another mailbox; reading %s from the start",
                     mailbox.where, imap_settings.folder)
        uids = mailbox.uids_from(start)[:batch]
        messages = [message for chunk in _chunks(uids, FETCH_CHUNK)
                    for message in mailbox.fetch(chunk, uidvalidity)]
        if imap_settings.mark_read:
            mailbox.mark_seen([m.uid for m in messages if not m.skipped])
    return tuple(messages)


def _password(imap: ImapSettings) -> str:
    if not imap.password_env:
        return ""
    value = os.environ.get(imap.password_env)
    if value is None:
        raise ConfigError(f"[email.imap] password_env names {imap.password_env}, but that environment variable "
                          "is not set")
    return value


class _Mailbox:
    """One IMAP session on the configured folder; every failure becomes a MailError naming host:port."""

    def __init__(self, settings: ImapSettings, password: str, timeout: float,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.settings = settings
        self._password = password
        self.timeout = timeout
        self.context = ssl_context
        self.where = f"{settings.host}:{settings.port}"
        self.imap: imaplib.IMAP4 | None = None

    def __enter__(self) -> _Mailbox:
        self.imap = self._connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        imap, self.imap = self.imap, None
        if imap is None:
            return
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.logout()  # also closes the folder; with EXAMINE nothing is expunged or flagged

    def _connect(self) -> imaplib.IMAP4:
        s = self.settings
        context = self.context or ssl.create_default_context()
        imap: imaplib.IMAP4 | None = None
        try:
            if s.security == "ssl":
                imap = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=context, timeout=self.timeout)
            else:
                imap = imaplib.IMAP4(s.host, s.port, timeout=self.timeout)
                if s.security == "starttls":
                    if "STARTTLS" not in imap.capabilities:
                        raise MailError(f"IMAP {self.where} does not offer STARTTLS; check [email.imap] security "
                                        "and port")
                    imap.starttls(ssl_context=context)
        except MailError:
            _abandon(imap)
            raise
        except ssl.SSLCertVerificationError as exc:
            _abandon(imap)
            raise MailError(f"IMAP {self.where}: the server's certificate is not trusted ({exc.verify_message})") from None
        except ssl.SSLError as exc:
            _abandon(imap)
            raise MailError(f"IMAP {self.where}: TLS failed ({exc.reason or exc}); check [email.imap] security "
                            "and port") from None
        except (imaplib.IMAP4.error, OSError) as exc:
            _abandon(imap)
            raise MailError(f"IMAP {self.where}: cannot reach the mail server ({_reason(exc)}); the next run will "
                            "try again") from None
        if s.username:
            try:
                _login(imap, s.username, self._password)
            except imaplib.IMAP4.abort as exc:
                _abandon(imap)
                raise MailError(f"IMAP {self.where}: the connection broke while logging in ({_reason(exc)})") from None
            except imaplib.IMAP4.error:
                _abandon(imap)
                raise MailError(f"IMAP {self.where} refused the username or password; check [email.imap] "
                                "username and password_env") from None
            except OSError as exc:
                _abandon(imap)
                raise MailError(f"IMAP {self.where}: the connection broke while logging in ({_reason(exc)})") from None
        return imap

    def _call(self, what: str, call: Any) -> Any:
        """Run one command; a NO/BAD answer or a broken connection becomes a MailError naming *what*."""
        try:
            typ, data = call()
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailError(f"IMAP {self.where}: {what} failed ({_reason(exc)})") from None
        if typ != "OK":
            raise MailError(f"IMAP {self.where}: {what} failed ({_reason(data)})")
        return data

    def open_folder(self, writable: bool) -> int:
        """EXAMINE the folder (SELECT when messages are to be flagged); returns its UIDVALIDITY."""
        imap = self._session()
        folder = self.settings.folder
        self._call(f"opening folder {folder!r} (check [email.imap] folder)",
                   lambda: imap.select(_quote_folder(folder), readonly=not writable))
        value = _first(imap.response("UIDVALIDITY")[1])
        if value is None:  # not in the SELECT answer: ask for it
            data = self._call("STATUS UIDVALIDITY", lambda: imap.status(_quote_folder(folder), "(UIDVALIDITY)"))
            found = re.search(rb"UIDVALIDITY (\d+)", b" ".join(d for d in data if isinstance(d, bytes)))
            value = found.group(1) if found else None
        if value is None or not value.strip().isdigit():
            raise MailError(f"IMAP {self.where}: the server gave no UIDVALIDITY for folder {folder!r}")
        return int(value)

    def uids_from(self, start: int) -> list[int]:
        """UIDs at or above *start*, ascending (`n:*` also names the last message when n is past it: dropped)."""
        imap = self._session()
        data = self._call("UID SEARCH", lambda: imap.uid("SEARCH", "UID", f"{start}:*"))
        found = {int(n) for line in data if isinstance(line, bytes) for n in line.split() if n.isdigit()}
        return sorted(uid for uid in found if uid >= start)

    def fetch(self, uids: Sequence[int], uidvalidity: int) -> list[InboundMessage]:
        """Fetch and read *uids* without setting \\Seen (BODY.PEEK); unreadable ones come back skipped."""
        imap = self._session()
        wanted = ",".join(str(u) for u in uids)
        data = self._call("UID FETCH", lambda: imap.uid("FETCH", wanted, f"(UID INTERNALDATE BODY.PEEK[]<0.{MAX_BYTES}>)"))
        raw_by_uid: dict[int, tuple[bytes, datetime | None]] = {}
        for i, item in enumerate(data):
            if not isinstance(item, tuple) or len(item) < 2:
                continue  # the closing ")" of a response, or an unsolicited FLAGS update
            meta = item[0] if isinstance(item[0], bytes) else b""
            after = data[i + 1] if i + 1 < len(data) and isinstance(data[i + 1], bytes) else b""
            found = re.search(rb"UID (\d+)", meta) or re.search(rb"UID (\d+)", after)
            if found is None or not isinstance(item[1], bytes):
                continue
            received = imaplib.Internaldate2tuple(meta) if b"INTERNALDATE" in meta else None
            when = datetime(*received[:6], tzinfo=UTC) if received else None
            raw_by_uid[int(found.group(1))] = (item[1], when)
        messages = []
        for uid in uids:
            if uid not in raw_by_uid:
                continue  # expunged by another client since the search
            raw, received_at = raw_by_uid[uid]
            try:
                messages.append(parse_message(raw, uid=uid, uidvalidity=uidvalidity, received=received_at))
            except UnreadableMessage as exc:
                log.warning("mailbox %s: skipped message UID %d in %s: %s", self.where, uid,
                            self.settings.folder, exc)
                messages.append(InboundMessage.unreadable(uid, uidvalidity, str(exc)))
        return messages

    def mark_seen(self, uids: Sequence[int]) -> None:
        """Flag messages \\Seen (only with mark_read); nothing is ever deleted or moved."""
        imap = self._session()
        for chunk in _chunks(uids, 200):
            wanted = ",".join(str(u) for u in chunk)
            self._call("UID STORE \\Seen", lambda w=wanted: imap.uid("STORE", w, "+FLAGS.SILENT", r"(\Seen)"))

    def _session(self) -> imaplib.IMAP4:
        assert self.imap is not None, "use _Mailbox as a context manager"
        return self.imap


def _login(imap: imaplib.IMAP4, username: str, password: str) -> None:
    """LOGIN, or AUTHENTICATE PLAIN in UTF-8 for a non-ASCII username or password (imaplib sends ASCII only)."""
    if (username + password).isascii():
        imap.login(username, password)
        return
    token = b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8")
    imap.authenticate("PLAIN", lambda _challenge: token)


def _abandon(imap: imaplib.IMAP4 | None) -> None:
    if imap is not None:
        with contextlib.suppress(OSError):
            imap.shutdown()


def _reason(exc: Any) -> str:
    """A short one-line reason from an exception or a server answer."""
    if isinstance(exc, (list, tuple)):
        exc = b" ".join(x for x in exc if isinstance(x, bytes))
    if isinstance(exc, bytes):
        exc = exc.decode("utf-8", "replace")
    if isinstance(exc, socket.timeout):
        return "timed out"
    text = str(exc) or type(exc).__name__
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return " ".join(text.split())[:160]


def _first(values: Any) -> bytes | None:
    if not values:
        return None
    value = values[0]
    return value if isinstance(value, bytes) else None


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _quote_folder(name: str) -> str:
    """A folder name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 §5.1.3)."""
    encoded: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            chunk = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii").rstrip("=")
            encoded.append("&" + chunk.replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            encoded.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    text = "".join(encoded)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
