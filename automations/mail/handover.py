"""What every transport shares: the outcomes of handing a message over, and the message's envelope and bytes.

The executor acts on these outcomes the same way whichever transport raised them (SMTP, the Gmail
API, the outbox folder); see `automations.mail.transport` for what each one means on the wire.
"""

from __future__ import annotations

from email.message import EmailMessage
from types import TracebackType
from typing import Any, Protocol, Self

from automations.errors import MailError
from automations.mail.message import SMTP_POLICY, WrittenMessage


class RecipientRefused(ValueError):
    """The server permanently refused this recipient or message (5xx); the next message may go ahead."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class TemporaryFailure(MailError):
    """A 4xx reply or a lost connection, after one reconnect: the rest of the run waits for the next run."""


class AuthFailed(MailError):
    """The server refused the username or password, or wants a login that is not configured."""


class OutcomeUnknown(MailError):
    """The message was handed over but the server's answer never came: it may or may not arrive."""


class Transport(Protocol):
    """Where messages go. Use as a context manager: one open() and one close() per run."""

    def open(self) -> None: ...

    def send(self, message: EmailMessage) -> str:
        """Hand one message over; returns a short result ("250 OK ...", or the outbox file name)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Managed:
    """open() on entering a `with` block, close() on leaving it."""

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def envelope(message: EmailMessage) -> tuple[str, str]:
    """(sender, recipient) for SMTP: the From address and the single To address, nothing else."""
    if isinstance(message, WrittenMessage):
        return message.sender, message.recipient
    senders: tuple[Any, ...] = getattr(message["From"], "addresses", ())
    recipients: tuple[Any, ...] = getattr(message["To"], "addresses", ())
    if len(senders) != 1:
        raise ValueError("a message needs exactly one From address")
    if len(recipients) != 1 or message["Cc"] is not None or message["Bcc"] is not None:
        raise ValueError("a message goes to exactly one To address (no Cc or Bcc)")
    return str(senders[0].addr_spec), str(recipients[0].addr_spec)


def message_bytes(message: EmailMessage, *, utf8: bool = False) -> bytes:
    """The message as sent on the wire and stored in .eml files (CRLF line ends)."""
    if isinstance(message, WrittenMessage) and not utf8:
        return message.wire  # as build_message wrote it
    return message.as_bytes(policy=SMTP_POLICY.clone(utf8=utf8) if utf8 else SMTP_POLICY)
