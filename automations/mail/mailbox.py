"""The clinic's mailbox as the replies job's input, however it is reached: the Gmail API with
`[email] transport = "gmail"`, else IMAP when `[email.imap] host` is set. (Looking sent mail up, to
settle unknown outcomes, is `automations.mail.settle`.)
"""

from __future__ import annotations

from automations.config import Settings
from automations.core import Inbox


def configured(settings: Settings) -> bool:
    """True when partnerloop can read the clinic's mailbox."""
    return settings.email.transport == "gmail" or bool(settings.email.imap.host)


def read_inbox(settings: Settings, position: str | None) -> Inbox:
    """The new messages since *position* and the position after them (MailError when unreachable)."""
    if settings.email.transport == "gmail":
        from automations.mail import gmail

        return gmail.read_inbox(settings, position)
    from automations.mail import imap

    return imap.read_inbox(settings, position)
