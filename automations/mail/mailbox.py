"""The clinic's mailbox, however it is reached: the Gmail API with `[email] transport = "gmail"`, else
IMAP when `[email.imap] host` is set. Two uses: the replies job's input (new messages since the kept
position) and settling sends whose outcome is unknown (is that Message-ID in the mailbox's sent mail?).
"""

from __future__ import annotations

from typing import Sequence

from automations.config import Settings
from automations.core import Inbox


def configured(settings: Settings) -> bool:
    """True when partnerloop can read the clinic's mailbox."""
    return settings.email.transport == "gmail" or bool(settings.email.imap.host)


def read_inbox(settings: Settings, position: str | None) -> Inbox:
    """The new messages since *position* and the position after them (MailError when unreachable)."""
    if settings.email.transport == "gmail":
        from automations.mail.gmail import GmailMailbox

        messages, after = GmailMailbox(settings.email).read_new(position)
        return Inbox(messages, after or position or "")
    from automations.mail import imap

    return imap.read_inbox(settings, position)


def find_sent(settings: Settings, message_ids: Sequence[str]) -> set[str]:
    """Which of *message_ids* the mailbox holds as sent (Gmail: anywhere in it; IMAP: `sent_folder`)."""
    if not message_ids or not configured(settings):
        return set()
    if settings.email.transport == "gmail":
        from automations.mail.gmail import GmailMailbox

        return GmailMailbox(settings.email).find_sent(message_ids)
    from automations.mail import imap

    return imap.find_sent(settings, message_ids)
