"""Reading the clinic's mailbox over IMAP: the new replies, auto-replies and bounces since the last run.

`read_inbox` reads the folder named by `[email.imap] folder` from the last position partnerloop
saw (a UID, valid within one UIDVALIDITY) and returns what it finds as an `Inbox` of
`InboundMessage`s, which know nothing of the sheet, with the position after them. It never stores
that position: the executor keeps it only after the replies job's effects are in the sheet, so a
run that fails half-way reads the same messages again next time.

Nothing is deleted or moved. Messages are fetched with BODY.PEEK[] on a read-only EXAMINE, so
they stay unread, unless `mark_read = true`: then the folder is SELECTed and each message read
is flagged \\Seen as soon as it is read. Which messages are new is decided by the saved position
alone, never by \\Seen, so a run that fails after flagging still handles them next time.
A message that cannot be read (a malformed header, an unknown charset) is skipped with a log
line naming its UID, never its sender or content, and is left unread for staff.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import logging
import os
import re
import socket
import ssl
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from automations.config import ImapSettings, Settings
from automations.core import InboundMessage, Inbox
from automations.errors import ConfigError, MailError
from automations.mail.inbound import (
    MailboxPosition,
    UnreadableMessage,
    mailbox_name,
    next_position,
    parse_message,
)

if TYPE_CHECKING:
    from automations.mail.oauth import TokenSource

log = logging.getLogger("partnerloop")

BATCH = 500  # messages read per run at most; the rest follow on the next run
FETCH_CHUNK = 50  # messages per UID FETCH command
MAX_BYTES = 1_048_576  # the first megabyte of a message is plenty for headers, the reply and a bounce report



# -- reading the mailbox -------------------------------------------------------------------------------
def read_inbox(settings: Settings, position: str | None, **options: Any) -> Inbox:
    """The new messages after *position* (as kept in the state dir) and the position after them."""
    messages = fetch_new(settings, position, **options)
    return Inbox(messages, next_position(messages, mailbox_name(settings.email.imap), position))


def fetch_new(settings: Settings, position: str | None, *, ssl_context: ssl.SSLContext | None = None,
              password: str | None = None, batch: int = BATCH,
              tokens: TokenSource | None = None) -> tuple[InboundMessage, ...]:
    """The messages after *position* (a saved `MailboxPosition`), oldest first, at most *batch* of them.

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
    saved = MailboxPosition.from_json(position)
    with _session(settings, imap_settings, ssl_context, password, tokens) as mailbox:
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


def find_sent(settings: Settings, message_ids: Sequence[str], *, ssl_context: ssl.SSLContext | None = None,
              password: str | None = None, tokens: TokenSource | None = None) -> set[str]:
    """Which of these Message-IDs are in `[email.imap] sent_folder` (UID SEARCH HEADER Message-ID)."""
    imap_settings = settings.email.imap
    if not imap_settings.host or not message_ids:
        return set()
    sent = replace(imap_settings, folder=imap_settings.sent_folder)
    with _session(settings, sent, ssl_context, password, tokens) as mailbox:
        mailbox.open_folder(writable=False, key="sent_folder")
        found = {message_id for message_id in message_ids if mailbox.holds(message_id)}
    return found


def can_read(settings: Settings, *, ssl_context: ssl.SSLContext | None = None, password: str | None = None,
             tokens: TokenSource | None = None) -> str:
    """Sign in and open the folder without reading anything; what was possible, in words (MailError if not)."""
    imap_settings = settings.email.imap
    with _session(settings, imap_settings, ssl_context, password, tokens) as mailbox:
        mailbox.open_folder(writable=False)
    return f"can read folder {imap_settings.folder} of {imap_settings.username} at {mailbox.where} (IMAP)"


def _session(settings: Settings, imap: ImapSettings, ssl_context: ssl.SSLContext | None, password: str | None,
             tokens: TokenSource | None) -> _Mailbox:
    """An IMAP session on *imap*'s folder, signed in with the password or, with `[email] auth`, a token."""
    if settings.email.auth != "password":
        from automations.mail.oauth import token_source

        return _Mailbox(imap, "", settings.email.timeout, ssl_context,
                        tokens or token_source(settings.email, mailbox=imap.username))
    secret = password if password is not None else _password(imap)
    return _Mailbox(imap, secret, settings.email.timeout, ssl_context)


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
                 ssl_context: ssl.SSLContext | None, tokens: TokenSource | None = None) -> None:
        self.settings = settings
        self.tokens = tokens
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
        if self.tokens is not None:
            from automations.mail.oauth import imap_sign_in

            try:
                imap_sign_in(imap, self.tokens, self.where)
            except MailError:
                _abandon(imap)
                raise
            except (imaplib.IMAP4.abort, OSError) as exc:
                _abandon(imap)
                raise MailError(f"IMAP {self.where}: the connection broke while logging in ({_reason(exc)})") from None
        elif s.username:
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

    def open_folder(self, writable: bool, key: str = "folder") -> int:
        """EXAMINE the folder (SELECT when messages are to be flagged); returns its UIDVALIDITY.

        *key* is the setting that named the folder, for the error message."""
        imap = self._session()
        folder = self.settings.folder
        self._call(f"opening folder {folder!r} (check [email.imap] {key})",
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

    def holds(self, message_id: str) -> bool:
        """True when a message with this Message-ID is in the open folder (UID SEARCH HEADER Message-ID)."""
        imap = self._session()
        data = self._call("UID SEARCH HEADER Message-ID",
                          lambda: imap.uid("SEARCH", "HEADER", "Message-ID", _quoted(message_id)))
        return any(line.split() for line in data if isinstance(line, bytes))

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


def _quoted(text: str) -> str:
    """An IMAP quoted string (RFC 3501 §4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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

