"""Handing messages over: to an outbox folder of .eml files, or to an SMTP server.

One SMTP connection serves a whole run. When it drops before the server has the message, the
transport reconnects once and tries that message once more; when it drops after the message
was handed over but before the server answered, nobody can know whether it will be delivered,
so the transport raises OutcomeUnknown and never sends it again by itself.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automations.config import EmailSettings, Settings
from automations.errors import MailError
from automations.mail.handover import (
    AuthFailed,
    Managed,
    OutcomeUnknown,
    RecipientRefused,
    TemporaryFailure,
    Transport,
    envelope,
    message_bytes,
)
from automations.mail.message import TEMPLATE_HEADER, WrittenMessage, needs_smtputf8

__all__ = ["AuthFailed", "OutboxTransport", "OutcomeUnknown", "RecipientRefused", "SmtpTransport", "TemporaryFailure",
           "Transport", "envelope", "make_transport", "message_bytes"]

if TYPE_CHECKING:
    from automations.mail.oauth import TokenSource


# --- outbox -------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OutboxTransport(Managed):
    """Writes each message as an .eml file, readable only by its owner, named by the time it was written."""

    def __init__(self, directory: Path, clock: Callable[[], datetime] = _utc_now) -> None:
        self.directory = Path(directory)
        self.clock = clock
        self._sequence = itertools.count(1)

    def open(self) -> None:
        if not self.directory.is_dir():
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.directory.mkdir(mode=0o700)
            except FileExistsError:
                pass
            else:
                os.chmod(self.directory, 0o700)  # mkdir's mode is narrowed by the umask, never widened

    def send(self, message: EmailMessage) -> str:
        sender, recipient = envelope(message)
        self.open()
        data = message_bytes(message, utf8=needs_smtputf8(sender) or needs_smtputf8(recipient))
        written = message.template if isinstance(message, WrittenMessage) else message.get(TEMPLATE_HEADER, "")
        template = re.sub(r"[^A-Za-z0-9_-]", "", str(written)) or "email"
        stamp = self.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".writing-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o600)
            while True:
                name = f"{stamp}-{next(self._sequence):04d}-{template}.eml"
                try:
                    os.link(temporary, self.directory / name)  # fails rather than overwrite another run's file
                    break
                except FileExistsError:
                    continue
        finally:
            os.unlink(temporary)
        return name

    def close(self) -> None:
        pass


# --- SMTP ---------------------------------------------------------------------------------


class _Dropped(Exception):
    """The connection went away before the server had the message: safe to try once more."""


class SmtpTransport(Managed):
    """One SMTP connection for the whole run (ssl, starttls or none), opened on first use."""

    def __init__(
        self,
        settings: EmailSettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        password: str | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        self.settings = settings
        self.ssl_context = ssl_context
        self._password = password
        self._tokens = tokens  # for [email] auth = "google" or "microsoft"; made from the settings when None
        self._smtp: smtplib.SMTP | None = None
        self.where = f"{settings.host}:{settings.port}"

    def open(self) -> None:
        if self._smtp is None:
            self._smtp = self._connect()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    def send(self, message: EmailMessage) -> str:
        sender, recipient = envelope(message)
        international = needs_smtputf8(sender) or needs_smtputf8(recipient)
        reason = ""
        for _attempt in range(2):
            self.open()
            assert self._smtp is not None
            try:
                return self._transaction(self._smtp, sender, recipient, message, international)
            except _Dropped as exc:
                self._discard()
                reason = str(exc)
        raise TemporaryFailure(
            f"{self.where}: the connection failed again after reconnecting ({reason}); "
            "the message was not delivered and the next run will try again"
        )

    # One MAIL, RCPT, DATA exchange. Everything up to the last byte of the message is safe to
    # repeat on a new connection; once the final "." has left, the outcome belongs to the server.
    def _transaction(
        self, smtp: smtplib.SMTP, sender: str, recipient: str, message: EmailMessage, international: bool
    ) -> str:
        options: list[str] = []
        if international:
            if not smtp.has_extn("smtputf8"):
                raise RecipientRefused(
                    "the mail server cannot take a non-ASCII address (it does not offer SMTPUTF8)"
                )
            options.append("SMTPUTF8")
            if smtp.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
        data = message_bytes(message, utf8=international)

        code, reply = self._command(lambda: smtp.mail(sender, options))
        if code != 250:
            self._refused(smtp, code, reply, "MAIL", recipient)
        code, reply = self._command(lambda: smtp.rcpt(recipient))
        if code not in (250, 251):
            self._refused(smtp, code, reply, "RCPT", recipient)
        code, reply = self._command(lambda: smtp.docmd("DATA"))
        if code != 354:
            self._refused(smtp, code, reply, "DATA", recipient)
        try:
            smtp.send(_dot_stuffed(data))
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # sendall failed, so the closing "." never left: the server cannot have accepted it.
            raise _Dropped(_reason(exc)) from None
        try:
            code, reply = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._discard()
            raise OutcomeUnknown(
                f"{self.where}: no answer after the message was handed over ({_reason(exc)}); "
                "it may or may not be delivered, so it is not sent again automatically"
            ) from None
        if not 200 <= code <= 599:  # not an SMTP reply: the server may have taken the message, or not
            self._discard()
            raise OutcomeUnknown(
                f"{self.where}: the answer after the message was handed over is not an SMTP reply "
                f"({_text(reply, recipient)[:60]!r}); it may or may not be delivered, so it is not sent again "
                "automatically"
            )
        if code != 250:
            self._refused(smtp, code, reply, "end of DATA", recipient)
        return _one_line(f"{code} {_text(reply, recipient)}")[:200]

    def _command(self, call: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
        """Run one SMTP command; a lost connection becomes _Dropped (retried once on a new connection)."""
        try:
            return call()
        except smtplib.SMTPServerDisconnected as exc:
            raise _Dropped(_reason(exc)) from None
        except smtplib.SMTPException as exc:  # a protocol surprise, not a lost connection
            raise MailError(f"{self.where}: {_reason(exc)}") from None
        except OSError as exc:  # reset, broken pipe, timeout
            raise _Dropped(_reason(exc)) from None

    def _refused(self, smtp: smtplib.SMTP, code: int, reply: bytes, stage: str, recipient: str) -> None:
        """Turn a non-success reply into the right error; always raises."""
        text = f"{code} {_text(reply, recipient)}"
        if code == 421 or code < 0:
            # 421: the server is closing the connection; -1: an unreadable reply. Nothing was accepted.
            raise _Dropped(text)
        if stage != "end of DATA":
            self._reset(smtp)
        if 400 <= code < 500:
            raise TemporaryFailure(f"{self.where}: {text} (at {stage}); the next run will try again")
        if code == 530 or (stage == "MAIL" and code in (535, 538)):
            raise AuthFailed(
                f"{self.where}: {text}; the server wants a login: set [email] username and password_env"
            )
        if stage == "MAIL":
            raise MailError(f"{self.where} refused the sender: {text}; check [clinic] from_email")
        raise RecipientRefused(text, code)

    def _reset(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._discard()

    def _discard(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        password = self._password if self._password is not None else settings.password()
        context = self.ssl_context or ssl.create_default_context()
        smtp: smtplib.SMTP | None = None
        try:
            if settings.security == "ssl":
                smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
            else:
                smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
            smtp.ehlo()
            if settings.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise MailError(
                        f"{self.where} does not offer STARTTLS; check [email] security and port"
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.auth != "password":
                from automations.mail.oauth import smtp_sign_in, token_source

                smtp_sign_in(smtp, self._tokens or token_source(settings, mailbox=settings.username), self.where)
            elif settings.username:
                _login(smtp, settings.username, password)
            return smtp
        except smtplib.SMTPAuthenticationError as exc:
            self._abandon(smtp)
            raise AuthFailed(
                f"{self.where} refused the username or password ({exc.smtp_code} "
                f"{_text(exc.smtp_error, '')}); check [email] username and password_env"
            ) from None
        except smtplib.SMTPNotSupportedError:
            self._abandon(smtp)
            raise AuthFailed(
                f"{self.where} does not offer a login (AUTH); check [email] security, or leave username empty"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            self._abandon(smtp)
            raise MailError(f"{self.where}: the server's certificate is not trusted ({exc.verify_message})") from None
        except ssl.SSLError as exc:
            self._abandon(smtp)
            raise MailError(
                f"{self.where}: TLS failed ({exc.reason or exc}); check [email] security and port"
            ) from None
        except smtplib.SMTPResponseException as exc:
            self._abandon(smtp)
            text = f"{exc.smtp_code} {_text(exc.smtp_error, '')}"
            if 400 <= exc.smtp_code < 500:
                raise TemporaryFailure(f"{self.where}: {text}; the next run will try again") from None
            raise MailError(f"{self.where} refused the session: {text}") from None
        except MailError:
            self._abandon(smtp)
            raise
        except (smtplib.SMTPException, OSError) as exc:
            self._abandon(smtp)
            raise TemporaryFailure(
                f"{self.where}: cannot reach the mail server ({_reason(exc)}); the next run will try again"
            ) from None

    @staticmethod
    def _abandon(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            smtp.close()


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH with the best mechanism; a non-ASCII username or password goes as UTF-8 AUTH PLAIN (RFC 4616),
    which smtplib.login cannot send (it encodes credentials as ASCII)."""
    if (username + password).isascii():
        smtp.login(username, password)
        return
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    if "PLAIN" not in smtp.esmtp_features["auth"].upper().split():
        raise smtplib.SMTPAuthenticationError(
            504, b"a non-ASCII username or password needs AUTH PLAIN, which the server does not offer"
        )
    token = base64.b64encode(b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8"))
    code, reply = smtp.docmd("AUTH", "PLAIN " + token.decode("ascii"))
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def make_transport(settings: Settings, **overrides: Any) -> Transport:
    """The transport named by [email] transport; *overrides* go to its constructor (clock, ssl_context...)."""
    email = settings.email
    if email.transport == "outbox":
        directory = overrides.pop("directory", email.outbox_dir)
        return OutboxTransport(directory, **overrides)
    if email.transport == "gmail":
        from automations.mail.gmail import GmailTransport  # imports requests and google-auth only when used

        return GmailTransport(email, **overrides)
    return SmtpTransport(email, **overrides)


def _dot_stuffed(data: bytes) -> bytes:
    """DATA payload: CRLF line ends, leading dots doubled, ending in CRLF.CRLF (RFC 5321 §4.5.2)."""
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _text(reply: bytes | str, recipient: str) -> str:
    """A server reply as one line, with the recipient's address taken out (it may be a patient's)."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    text = _one_line(text)
    if recipient:
        text = re.sub(re.escape(recipient), "the recipient", text, flags=re.IGNORECASE)
    return text


def _reason(exc: BaseException) -> str:
    return _one_line(str(exc)) or type(exc).__name__


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
