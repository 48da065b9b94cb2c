"""What a job decides: a Plan of emails and cell writes, made from rows, the time and the settings.

Jobs are pure functions `JobInput -> Plan`; the one executor performs every plan (ledger, send
window, limits, send, write-back, Log). A job imports neither gspread nor smtplib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Mapping

from automations.config import Settings
from automations.core import Inbox, Invite, RunRecord, SendKey
from automations.model import Book, RowRef
from automations.sheets.base import Dashboard, RowWrite


@dataclass(frozen=True)
class Email:
    """One email a job wants sent, and what its row says once it is."""

    job: str
    row: RowRef
    step: str  # with job and row ID, the ledger key: each step is sent at most once
    template: str
    to_email: str
    to_name: str
    recipient: str  # who, for statuses and the Log without personal data: "partner", "patient", "staff", "owner"
    label: str  # what it is, for statuses: "Intro", "Follow-up 1", "Partner introduction"
    context: Mapping[str, Any]
    on_sent: Mapping[str, Any] = field(default_factory=dict)  # cells written on the row when delivered
    sent_status: str = ""
    outreach: bool = False
    writes_back: bool = True  # False for an email that belongs to no sheet row (the owner's digest)
    answers: tuple[SendKey, ...] = ()  # the earlier letters of its conversation, oldest first: it replies to them
    invite: Invite | None = None  # the calendar invitation it carries (meetings and events)

    @property
    def key(self) -> SendKey:
        return SendKey(self.job, self.row.row_id, self.step)

    @property
    def log_to(self) -> str:
        """The Log's To cell: the address for partners and staff, never a patient's."""
        return f"patient of {self.row.row_id}" if self.recipient == "patient" else self.to_email


@dataclass(frozen=True)
class Plan:
    job: str
    emails: tuple[Email, ...] = ()
    writes: tuple[RowWrite, ...] = ()
    seen_stages: Mapping[str, str] = field(default_factory=dict)
    dashboard: Dashboard | None = None
    remember: Mapping[str, str] = field(default_factory=dict)  # values kept in the state dir (digest history)
    appends: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)  # tab key -> new rows
    replies: Mapping[str, date] = field(default_factory=dict)  # partner ID -> the day they replied
    bounces: Mapping[str, date] = field(default_factory=dict)  # address -> the day it bounced
    notes: tuple[str, ...] = ()  # what the run's summary says of the job (e.g. turned off in the config)


@dataclass(frozen=True)
class JobInput:
    """Everything a job may decide from; no I/O happens behind it."""

    book: Book
    now: datetime
    settings: Settings
    seen_stages: Mapping[str, str] = field(default_factory=dict)
    health: Mapping[str, RunRecord] = field(default_factory=dict)
    remembered: Mapping[str, str] = field(default_factory=dict)
    location: str = ""
    replied: Mapping[str, date] = field(default_factory=dict)  # partner ID -> the day they replied
    inbox: Inbox = field(default_factory=Inbox)  # the clinic's mailbox, read first when the replies job runs
    sent_messages: Mapping[str, SendKey] = field(default_factory=dict)  # Message-ID -> what it was
    delivered: frozenset[SendKey] = frozenset()  # what the ledger knows went out (the jobs run)
    resend: frozenset[SendKey] = frozenset()  # what staff asked to go out again (`resolve --resend`)
    unknown: Mapping[SendKey, datetime] = field(default_factory=dict)  # sends of unknown outcome -> claimed at

    @property
    def today(self) -> date:
        return self.now.date()


Job = Callable[[JobInput], Plan]
