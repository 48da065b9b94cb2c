"""The shared vocabulary of partnerloop: what jobs, the executor, the ledger and the CLI all speak.

Only names and small frozen records live here, and nothing is imported but the standard library,
so every layer can use them without pulling in another layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

STATUS = "Automation status"
"""The column on every tab with rows: a short sentence about the last thing the automation did."""

JOB_NAMES = ("outreach", "discharge", "referrals_in", "events", "scorecard", "dashboard", "digest", "replies")
"""Every job, in the order `run --all` runs them (the mailbox is read first whatever the order)."""

SENDING_JOBS = ("outreach", "discharge", "referrals_in", "events", "scorecard", "digest")
"""The jobs that send email: held outside [email] send_window."""


class Result(StrEnum):
    """What happened to one planned email in a run (the executor's outcome, shown in the summary)."""

    SENT = "sent"  # the mail server accepted it
    ALREADY = "already"  # delivered by an earlier run: nothing to do
    HELD = "held"  # may go out, but not now (send window, limit, stopping, server unavailable)
    REFUSED = "refused"  # the mail server refused the address; waits for staff to correct it
    UNKNOWN = "unknown"  # handed over, answer lost: never sent again automatically
    BLOCKED = "blocked"  # never to this address (Opt-outs, Do not email, bounced)
    ERROR = "error"  # could not be rendered or built: the row says why
    CHANGED = "changed"  # sent before for this ID when the row named someone else: staff decide
    DRY_RUN = "dry-run"  # would be sent (a dry run sends nothing)


class SendState(StrEnum):
    """The state of one (job, row, step) in the send ledger."""

    SENDING = "sending"  # claimed; its outcome is not recorded (unknown until settled)
    SENT = "sent"
    REFUSED = "refused"  # refused at this address; a changed address may be tried again
    FAILED = "failed"  # not delivered (temporary failure): may be claimed again
    RESEND = "resend"  # staff asked for it to go out again


@dataclass(frozen=True)
class SendKey:
    """Each email goes out at most once per (job, row, step)."""

    job: str
    row_id: str
    step: str

    def __str__(self) -> str:
        return f"{self.job} {self.row_id} {self.step}"


@dataclass(frozen=True)
class RunRecord:
    """The last run of a job, for job health (Dashboard, `status`)."""

    job: str
    started: datetime
    finished: datetime | None
    result: str
    sent: int
    summary: str


@dataclass(frozen=True)
class InboundMessage:
    """One message of the clinic's mailbox, reduced to what partnerloop decides from.

    `uid` orders messages within one read (`uidvalidity` names the numbering, for IMAP). A message
    that could not be read has `skipped` set (the reason, naming no content) and nothing else: the
    position moves past it, so it is logged once, not every run.
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


@dataclass(frozen=True)
class Inbox:
    """The clinic's mailbox as read at the start of a run: the new messages, oldest first, and the
    position after them (opaque text of the reader's; kept only once the replies job's effects are
    in the sheet, so a run that fails half-way reads the same messages again)."""

    messages: tuple[InboundMessage, ...] = ()
    position: str = ""


MAILBOX_POSITION = "imap"
"""The state-dir key under which the mailbox position is kept (named when IMAP was the only reader)."""


@dataclass(frozen=True)
class Invite:
    """The calendar invitation an email carries (iCalendar, RFC 5546): what the recipient's calendar shows.

    One UID per meeting or event; SEQUENCE counts the invites sent before it, so an update or a
    cancellation replaces the entry the recipient has. *start* and *end* carry the clinic's zone.
    """

    uid: str
    sequence: int
    method: str  # "REQUEST" (a new or moved meeting or event) or "CANCEL"
    start: datetime
    end: datetime
    summary: str
    location: str
    organizer: tuple[str, str]  # (name, address): who replies go to (the signer, else the clinic)
    sender: str  # the clinic's from address: SENT-BY when the organizer is someone else
    attendee: tuple[str, str]  # (name, address): the recipient
    moved_from: datetime | None = None  # an update: when it was before

    @property
    def cancelled(self) -> bool:
        return self.method == "CANCEL"

    @property
    def update(self) -> bool:
        return self.moved_from is not None and not self.cancelled
