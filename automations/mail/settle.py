"""Settling unknown-outcome sends from the mailbox: an email whose answer was lost is looked up by its Message-ID.

Found in the mailbox's sent mail (Gmail: `users.messages.list q=rfc822msgid:`; IMAP: `[email.imap]
sent_folder`), it was sent: the ledger records it so, and the run writes its status back. Not
found, it stays unknown for staff (`partnerloop status`, `resolve`); it is never sent again by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from automations.config import Settings
from automations.core import SendState
from automations.mail.ledger import FOUND_IN_MAILBOX, Ledger, SendRecord

FindSent = Callable[[Sequence[str]], set[str]]


def settle_unknown(settings: Settings, ledger: Ledger, now: datetime, *, find_sent: FindSent | None = None,
                   skip_jobs: Collection[str] = ()) -> list[SendRecord]:
    """The unknown-outcome sends found in the mailbox, now recorded as sent; the rest stay unknown.

    *skip_jobs*: jobs running elsewhere now, whose sends in hand are theirs to settle. MailError when
    the mailbox cannot be read.
    """
    unknown = [record for record in ledger.unknown() if record.message_id and record.key.job not in skip_jobs]
    finder = find_sent or sent_mail_finder(settings)
    if not unknown or finder is None:
        return []
    found = finder([record.message_id for record in unknown])
    settled = [record for record in unknown if record.message_id in found]
    for record in settled:
        ledger.settle(record.key, SendState.SENT, FOUND_IN_MAILBOX, now)
    return settled


def sent_mail_finder(settings: Settings) -> FindSent | None:
    """Where this configuration can look sent mail up: the Gmail API, the IMAP sent folder, or nowhere."""
    if settings.email.transport == "gmail":
        from automations.mail.gmail import GmailMailbox

        return GmailMailbox(settings.email).find_sent
    if settings.email.imap.host:
        from automations.mail.imap import find_sent

        return lambda message_ids: find_sent(settings, message_ids)
    return None
