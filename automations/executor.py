"""The one executor: performs every job's Plan. Idempotency, limits and the send window live here once.

A run reads its inputs first: the sheet (once), and the clinic's mailbox when the replies job is
among its jobs. It writes newly assigned row IDs (before any send, so every ledger key names a row
that has its ID), lets each job plan, and takes each planned email through five steps, one method
each (see docs/architecture.md):

  gate       may this email go now? If not, the one reason, as a typed Verdict
  claim      record the intent in the send ledger before anything leaves (at most once per key)
  hand over  give the message to the transport; what the server said, as a Verdict
  settle     record that outcome in the ledger, with what the row must say
  write back every changed cell in one request and the Log in one append, then tell the ledger

What the ledger knows was delivered but the sheet does not show yet is written back too, without
sending again. A dry run stops after the gate and renders instead of sending (`preview` is one).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from email.message import EmailMessage
from typing import Any, Callable, Iterable, Mapping, Sequence

from automations import cells
from automations.clock import Clock
from automations.config import Settings
from automations.core import (
    JOB_NAMES,
    MAILBOX_POSITION,
    SENDING_JOBS,
    STATUS,
    Inbox,
    Result,
    RunRecord,
    SendKey,
    SendState,
)
from automations.errors import MailError, PartnerloopError
from automations.jobs import JOBS
from automations.jobs.plan import Email, JobInput, Plan
from automations.locks import JobLock
from automations.mail.ledger import Claim, Ledger, SendRecord
from automations.mail.mailbox import configured
from automations.mail.message import build_message, message_id
from automations.mail.render import Rendered, RenderError, renderer_for
from automations.mail.settle import FindSent, settle_unknown
from automations.mail.transport import (
    OutcomeUnknown,
    RecipientRefused,
    TemporaryFailure,
    Transport,
    make_transport,
)
from automations.model import Book, read_book, require_layout, with_writes
from automations.rebuild import sends_on_log
from automations.schema import TABS
from automations.sheets.base import Backend, Conflict, RowWrite, SheetRow, Table
from automations.todo import TodoItem, todo_list

log = logging.getLogger("partnerloop")

AFTER_SENDS = ("digest", "dashboard")
"""The jobs that report the run: planned after the other jobs' emails, from the sheet as the run leaves it."""

Mailbox = Callable[[Settings, "str | None"], Inbox]
"""Reads the clinic's mailbox from a saved position (None: from the start): `mail.mailbox.read_inbox`."""


@dataclass(frozen=True)
class Verdict:
    """Why an email went, or did not go, in this run: the result and what its row says."""

    result: Result
    status: str = ""  # the row's Automation status from this step; blank: the row says it already
    detail: str = ""  # for the summary; the status when blank

    @property
    def reason(self) -> str:
        return self.detail or self.status


@dataclass
class Outcome:
    """What happened to one planned email, for the summary (and, in a dry run, what it would be)."""

    email: Email
    result: Result
    detail: str = ""
    rendered: Rendered | None = None  # dry run: the email as it would go out


@dataclass
class RunReport:
    """What a run did, for the command's summary and job health."""

    jobs: list[str]
    dry_run: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    attention: list[str] = field(default_factory=list)
    cells_written: int = 0
    lost: list[str] = field(default_factory=list)
    log_rows: int = 0
    fatal: str = ""
    writes: list[RowWrite] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what jobs without emails did (the mailbox)

    def count(self, result: str, job: str | None = None) -> int:
        """Emails of *result* (a Result, or its text), of one job or all."""
        return sum(1 for o in self.outcomes if o.result == result and (job is None or o.email.job == job))

    def summary(self) -> list[str]:
        """A few lines a person can act on: what was sent, held back and why, which rows need attention."""
        lines = []
        verb = "would send" if self.dry_run else "sent"
        sent = self.count(Result.DRY_RUN if self.dry_run else Result.SENT)
        lines.append(f"{', '.join(self.jobs)}: {verb} {sent} email(s)")
        lines += self.notes
        held = [o for o in self.outcomes if o.result == Result.HELD]
        if held:
            reasons = sorted({o.detail for o in held})
            lines.append(f"held back {len(held)} email(s) for the next run: {'; '.join(reasons)}")
        for result, words in ((Result.REFUSED, "refused by the mail server"), (Result.UNKNOWN, "outcome unknown"),
                              (Result.ERROR, "could not be written"), (Result.BLOCKED, "not sent: opted out"),
                              (Result.CHANGED, "not sent: the row's ID named someone else when it was sent")):
            rows = [o.email.row.row_id for o in self.outcomes if o.result == result]
            if rows:
                lines.append(f"{len(rows)} {words}: {', '.join(sorted(set(rows)))}")
        if self.attention:
            shown = ", ".join(self.attention[:12]) + (" …" if len(self.attention) > 12 else "")
            lines.append(f"{len(self.attention)} row(s) need attention (see their Automation status): {shown}")
        if self.lost:
            lines.append("not written back: " + "; ".join(self.lost[:5]))
        if self.fatal:
            lines.append(self.fatal)
        return lines


@dataclass
class World:
    """The outside world a run touches, passed in (tests give local, real ones)."""

    settings: Settings
    backend: Backend
    ledger: Ledger
    clock: Clock
    sleep: Callable[[float], None] = time.sleep
    transport_factory: Callable[[Settings], Transport] = make_transport
    progress: Callable[[str], None] = lambda line: None
    stop: Callable[[], bool] = lambda: False  # True once partnerloop is asked to stop: hold the rest, write back
    mailbox: Mailbox | None = None  # how the replies job's input is read (default: mail.mailbox.read_inbox)
    sent_lookup: FindSent | None = None  # where unknown outcomes are looked up (default: mail.settle.sent_mail_finder)


def run_jobs(world: World, jobs: Sequence[str], *, dry_run: bool = False, limit: int | None = None,
             lock: bool = True, row_id: str | None = None) -> RunReport:
    """Run *jobs* once over one read of the sheet (a dry run: only the emails of *row_id*, if given)."""
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        raise PartnerloopError(f"unknown job {unknown[0]!r}; jobs are: {', '.join(JOBS)}")

    locks = [JobLock(world.settings.state_dir, job) for job in jobs] if lock and not dry_run else []
    for held in locks:
        held.acquire()  # raises AlreadyRunning: nothing is read or sent
    try:
        return _Run(world, list(jobs), dry_run, limit, row_id).go()
    finally:
        for held in reversed(locks):
            held.release()


def todo_now(world: World) -> list[TodoItem]:
    """The To do list as at the world's clock: one read of the sheet, the ledger's replies and unknown-outcome
    sends; nothing is written or sent (`partnerloop todo`)."""
    book = read_book(world.backend, world.settings, ids_seen=world.ledger.ids_seen())
    return todo_list(book, world.clock().date(), replied=world.ledger.replied(), unknown=unknown_sends(world.ledger))


class _Run:
    def __init__(self, world: World, jobs: list[str], dry_run: bool, limit: int | None,
                 row_id: str | None = None) -> None:
        self.world = world
        self.settings = world.settings
        self.ledger = world.ledger
        self.jobs = jobs
        self.dry_run = dry_run
        self.limit = limit
        self.only_row = row_id if dry_run else None
        self.report = RunReport(jobs, dry_run)
        self.renderer = renderer_for(self.settings)
        self.transport: Transport | None = None
        self.stop_sending = ""  # once set, every further email is held with this reason
        self.last_send: float | None = None
        self.sent_this_run = 0
        self.writes: list[RowWrite] = []
        self.book: Book | None = None
        self.bounced_now: dict[str, date] = {}  # addresses the mailbox reported bouncing in this run
        self.settled_now: set[SendKey] = set()  # sends whose outcome this run recorded
        self.unwritten_ids: set[str] = set()  # rows whose new ID could not be written: not emailed this run
        self.resend: frozenset[SendKey] | None = None  # what staff asked to go out again
        self.planned: JobInput | None = None  # the input the jobs planned from (the mailbox's news included)

    def go(self) -> RunReport:
        now = self.world.clock()
        run_ids = {} if self.dry_run else {job: self.ledger.start_run(job, now) for job in self.jobs}
        try:
            job_input = self._read_inputs(now)
            try:
                plans = self._plan(job_input)
                self._send(plans)
                if any(job in self.jobs for job in AFTER_SENDS):
                    # The digest and the Dashboard report this run: planned once the other jobs' emails are
                    # settled, from the sheet as this run leaves it (applied in memory: no further read).
                    after = self._after_sends(self.planned or job_input, plans)
                    if "digest" in self.jobs:
                        plans.append(JOBS["digest"](after))
                        self._send(plans[-1:])
                    if "dashboard" in self.jobs:
                        plans.append(JOBS["dashboard"](replace(after, health=self._health(now, after))))
            finally:
                if self.transport is not None:
                    self.transport.close()
            self._write_back(plans)
        except PartnerloopError as exc:
            self._record_runs(run_ids, "failed", str(exc))
            raise
        except Exception as exc:  # a bug must still leave job health behind; the CLI reports it
            self._record_runs(run_ids, "failed", f"unexpected {type(exc).__name__}")
            raise
        self._record_runs(run_ids, "failed" if self.report.fatal else "ok", " / ".join(self.report.summary()))
        return self.report

    # -- the run's inputs and plans ------------------------------------------------------------------
    def _read_inputs(self, now: datetime) -> JobInput:
        """The sheet (IDs assigned and written first), then the mailbox when the replies job runs."""
        self.world.progress("reading the sheet")
        book = self.book = self._read_book()
        self.world.progress(f"read {len(book.partners)} partners, {len(book.referrals)} referrals, "
                            f"{len(book.events)} events")
        self._write_new_ids(book)
        self._settle_from_mailbox()
        inbox = self._read_mailbox()
        self.resend = self.ledger.keys(SendState.RESEND, self.jobs)
        return JobInput(book=book, now=now, settings=self.settings, seen_stages=self.ledger.seen_stages(),
                        health=self.ledger.last_runs(), remembered=remembered(self.ledger),
                        location=self.world.backend.location(), replied=self.ledger.replied(), inbox=inbox,
                        sent_messages=self.ledger.message_keys() if inbox.messages else {},
                        delivered=self.ledger.keys(SendState.SENT, self.jobs),
                        resend=self.resend, unknown=unknown_sends(self.ledger))

    def _read_book(self) -> Book:
        """The sheet, checked before anything is sent: every column the jobs decide by is there, the sheet
        can be written back to, and an empty ledger first learns from the Log tab what went out already."""
        book = read_book(self.world.backend, self.settings, ids_seen=self.ledger.ids_seen())
        require_layout(book, self.jobs)  # a tab lacking a column a job decides by: nothing is sent
        if self.dry_run:
            return book
        self.world.backend.ensure_writable()  # e.g. the workbook open in Excel: nothing is sent
        sending = set(self.jobs) & set(SENDING_JOBS)
        if sending and self.ledger.is_empty() and self._rebuild_ledger(book):
            book = read_book(self.world.backend, self.settings, ids_seen=self.ledger.ids_seen())
        return book

    def _rebuild_ledger(self, book: Book) -> int:
        """Record what the Log tab shows as sent in an empty ledger (a lost state dir); how many were added."""
        title = self.settings.sheet.title("log")
        log_tab = self.world.backend.read([title])[title]
        if log_tab is None or not log_tab.rows:
            return 0
        added = self.ledger.rebuild(sends_on_log(log_tab, book, self.settings))
        if added:
            self.report.notes.append(f"the send ledger was empty (a new or lost [state] dir): {added} email(s) the "
                                     "Log tab shows as sent are recorded, and none of them is sent again")
        return added

    def _write_new_ids(self, book: Book) -> None:
        """Write new row IDs first; a row whose ID could not be written is not emailed this run."""
        if self.dry_run:
            return
        self.ledger.remember_ids(book.ids_high)  # a deleted row's ID is never given to a new row
        if not book.new_ids:
            return
        report = self.world.backend.write(self._specs(), book.new_ids)
        self.report.lost += report.lost
        self.unwritten_ids = {row_id for _, row_id in report.lost_rows}

    def _settle_from_mailbox(self) -> None:
        """Sends whose outcome is unknown, looked up by Message-ID in the clinic's sent mail: found ones are
        settled as sent (and written back by this run); the rest stay for staff (`status`, the row)."""
        if self.dry_run or not self.ledger.unknown():
            return
        self.world.progress("looking up unknown-outcome emails in the mailbox")
        try:
            settled = settle_unknown(self.settings, self.ledger, self.world.clock(), find_sent=self.world.sent_lookup,
                                     skip_jobs=self._busy_jobs())
        except PartnerloopError as exc:
            self.report.notes.append(f"could not look up the unknown-outcome emails in the mailbox ({exc}); "
                                     "they stay unknown")
            return
        if settled:
            self.report.notes.append(f"{len(settled)} unknown-outcome email(s) found in the mailbox's sent mail, "
                                     f"now recorded as sent: {', '.join(sorted({r.key.row_id for r in settled}))}")

    def _busy_jobs(self) -> set[str]:
        """Jobs other than this run's that another process is running now (their sends are theirs to settle)."""
        return {job for job in JOB_NAMES if job not in self.jobs and JobLock.running(self.settings.state_dir, job)}

    def _read_mailbox(self) -> Inbox:
        """The new messages since the kept position; a dry run leaves the mailbox exactly as it was."""
        if "replies" not in self.jobs:
            return Inbox()
        self.world.progress("reading the mailbox")
        read = self.world.mailbox
        if read is None:
            from automations.mail.mailbox import read_inbox

            read = read_inbox
        settings = self.settings
        if self.dry_run:
            settings = replace(settings, email=replace(settings.email, imap=replace(settings.email.imap, mark_read=False)))
        return read(settings, self.ledger.get_value(MAILBOX_POSITION))

    def _send(self, plans: Sequence[Plan]) -> None:
        """Take each planned email through gate, claim, hand over and settle (the transport stays open)."""
        emails = [e for plan in plans for e in plan.emails if self.only_row in (None, e.row.row_id)]
        self.world.progress(f"{len(emails)} email(s) due")
        for n, email in enumerate(emails, start=1):
            self._one(email)
            if n == len(emails) or n % 25 == 0:
                self.world.progress(f"email {n} of {len(emails)}")

    def _after_sends(self, job_input: JobInput, plans: Sequence[Plan]) -> JobInput:
        """The jobs' input as this run leaves the sheet: every write of the run (what it sent, the Stages it
        moved, the statuses) applied in memory to the book it read."""
        assert self.book is not None
        merged, _, _ = self._merged(plans)
        book = with_writes(self.book, merged)
        return replace(job_input, book=book, unknown=unknown_sends(self.ledger))

    def _health(self, now: datetime, after: JobInput) -> dict[str, RunRecord]:
        """Job health with this run's jobs as they end it: finished, result and emails sent (a dry run: as it was)."""
        if self.dry_run:
            return dict(after.health)
        finished = self.world.clock()
        result = "failed" if self.report.fatal else "ok"
        summary = " / ".join(self.report.summary())
        return {**after.health, **{job: RunRecord(job, now, finished, result, self.report.count(Result.SENT, job), summary)
                                   for job in self.jobs}}

    def _plan(self, job_input: JobInput) -> list[Plan]:
        """Each job's plan (but those that report the run: AFTER_SENDS); the replies job's first, so what came
        back stops what goes out in this run."""
        plans = []
        if "replies" in self.jobs:
            replies = JOBS["replies"](job_input)
            plans.append(replies)
            new_optouts = {str(r.get("Email", "")).lower() for r in replies.appends.get("optouts", ())} - {""}
            book = replace(job_input.book, opted_out=job_input.book.opted_out | new_optouts)
            job_input = replace(job_input, book=book, replied={**job_input.replied, **replies.replies})
            self.bounced_now = dict(replies.bounces)
            self.report.notes.append(
                f"replies: {len(job_input.inbox.messages)} new message(s) in the mailbox; {len(replies.replies)} "
                f"partner repl{'y' if len(replies.replies) == 1 else 'ies'}, {len(new_optouts)} opt-out(s), "
                f"{len(replies.bounces)} bounce(s)")
        plans += [JOBS[job](job_input) for job in self.jobs if job != "replies" and job not in AFTER_SENDS]
        self.report.notes += [note for plan in plans for note in plan.notes]
        self.report.attention = sorted({f"{p.ref.tab} {p.ref.label}" for p in job_input.book.problems})
        self.book = job_input.book
        self.planned = job_input  # with what the mailbox brought in this run (replies, opt-outs)
        return plans

    # -- one email: gate, claim, hand over, settle ---------------------------------------------------
    def _one(self, email: Email) -> None:
        verdict = self._gate(email)
        if verdict is not None and not (self.dry_run and verdict.result == Result.HELD):
            return self._note(email, verdict)
        try:
            rendered, references = self._in_thread(email, self.renderer.render(email.template, email.context))
            message = build_message(rendered, to_email=email.to_email, to_name=email.to_name,
                                    clinic=self.settings.clinic, outreach=email.outreach, now=self.world.clock(),
                                    references=references, signer=_signer(email), invite=email.invite)
        except (RenderError, ValueError) as exc:
            return self._note(email, Verdict(Result.ERROR, f"Not sent: {exc}"))
        if self.dry_run:  # held or not, show what it would be
            return self._dry_run(email, verdict, rendered)
        verdict = self._connect(email) or self._claim(email, message)
        if verdict is None:
            verdict = self._hand_over(email, message)
            self._settle(email, verdict)
        self._note(email, verdict)

    def _in_thread(self, email: Email, rendered: Rendered) -> tuple[Rendered, tuple[str, ...]]:
        """A letter that answers earlier ones (a follow-up) goes in their conversation: "Re: " and the subject
        of the first, and their Message-IDs (In-Reply-To the last), so the partner sees them together."""
        earlier = [r for r in (self.ledger.get(key) for key in email.answers)
                   if r is not None and r.state == SendState.SENT and r.message_id]
        if not earlier:
            return rendered, ()
        subject = self.renderer.render(earlier[0].template, email.context).subject  # the conversation's own
        subject = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        return replace(rendered, subject=subject), tuple(r.message_id for r in earlier)

    def _gate(self, email: Email) -> Verdict | None:
        """May this email go now? None if so; else the one reason, strongest first."""
        assert self.book is not None
        if email.row.row_id in self.unwritten_ids:
            return Verdict(Result.HELD, detail="its new ID could not be written to the sheet")
        if self.book.blocked(email.to_email):
            return Verdict(Result.BLOCKED, f"Not sent: {email.to_email and 'the address'} is on Opt-outs or marked "
                           "Do not email")
        record = self.ledger.get(email.key)
        if record is not None and record.state == SendState.SENT:
            if record.identity and email.row.identity and record.identity != email.row.identity:
                return Verdict(Result.CHANGED, changed_status(email, record))
            return Verdict(Result.ALREADY)
        bounced = self.bounced_now.get(email.to_email.lower()) or self.ledger.bounced(email.to_email)
        if bounced is not None:
            return Verdict(Result.BLOCKED, f"Not sent: the {email.recipient}'s address bounced on "
                           f"{bounced.isoformat()}; correct it to send again")
        if record is not None and record.state == SendState.SENDING:
            return Verdict(Result.UNKNOWN, unknown_status(email, configured(self.settings)))
        if not self.stop_sending and self.world.stop():
            self.stop_sending = "partnerloop was stopping; goes out on the next run"
        reason = self.stop_sending or self._hold_reason(self.world.clock())
        if reason:
            return Verdict(Result.HELD, f"{email.label} held: {reason}", detail=reason)
        return None

    def _connect(self, email: Email) -> Verdict | None:
        """Open the transport (connect and sign in) before the first claim: a run that cannot send claims nothing."""
        if self.transport is not None:
            return None
        try:
            transport = self.world.transport_factory(self.settings)
            transport.open()
        except (PartnerloopError, OSError) as exc:  # unreachable, sign-in refused, password variable unset
            self.stop_sending = f"mail server unavailable ({exc}); retried on the next run"
            self.report.fatal = f"mail server: {exc}"
            return Verdict(Result.HELD, f"{email.label} held: {self.stop_sending}", detail=self.stop_sending)
        self.transport = transport
        return None

    def _claim(self, email: Email, message: EmailMessage) -> Verdict | None:
        """Record the intent to send before anything leaves; a Verdict when the ledger says no."""
        now = self.world.clock()
        log_row = [now.replace(tzinfo=None, microsecond=0), email.job, email.template, email.log_to,
                   email.row.row_id, message_id(message), "sent"]
        claimed = self.ledger.claim(email.key, template=email.template, to_address=email.to_email,
                                    tab=email.row.tab, match=email.row.match if not email.row.new else None,
                                    message_id=message_id(message), now=now,
                                    writeback={**email.on_sent, STATUS: self._sent_status(email)} if email.writes_back else {},
                                    log_row=log_row, daily_limit=self.settings.email.daily_limit,
                                    identity=email.row.identity)
        if claimed:
            return None
        if claimed == Claim.LIMIT:  # another run sent meanwhile
            reason = f"daily_limit {self.settings.email.daily_limit} reached in the last 24 hours"
            return Verdict(Result.HELD, f"{email.label} held: {reason}", detail=reason)
        record = self.ledger.get(email.key)  # refused at this very address before: wait for staff to correct it
        return Verdict(Result.REFUSED if claimed == Claim.REFUSED_HERE else Result.ALREADY,
                       detail=record.result if record else "")

    def _sent_status(self, email: Email) -> str:
        again = self.resend is not None and email.key in self.resend
        return f"{email.sent_status} (sent again, as staff asked)" if again else email.sent_status

    def _hand_over(self, email: Email, message: EmailMessage) -> Verdict:
        """Give the message to the transport (opened on first use); what the server said, as a Verdict."""
        self._pace()
        assert self.transport is not None, "_connect comes first"
        try:
            result = self.transport.send(message)
        except RecipientRefused as exc:
            return Verdict(Result.REFUSED, f"Not sent: the mail server refused the {email.recipient}'s address "
                           f"({exc}); correct it to retry", detail=str(exc))
        except OutcomeUnknown as exc:
            self.stop_sending = f"the mail server connection broke ({exc}); the rest waits for the next run"
            self.report.fatal = f"mail server: {exc}"
            return Verdict(Result.UNKNOWN, unknown_status(email, configured(self.settings)))
        except (TemporaryFailure, MailError, OSError) as exc:
            self.stop_sending = f"mail server unavailable ({exc}); retried on the next run"
            self.report.fatal = f"mail server: {exc}"
            return Verdict(Result.HELD, f"{email.label} held: {self.stop_sending}", detail=self.stop_sending)
        finally:
            self.last_send = self._monotonic()
        log.info("sent %s %s %s", email.job, email.row.row_id, email.template)
        return Verdict(Result.SENT, detail=result)

    def _settle(self, email: Email, verdict: Verdict) -> None:
        """Record the outcome of a claimed send; an unknown one stays claimed (`sending`) for good."""
        now = self.world.clock()
        key = email.key
        if verdict.result == Result.SENT:
            self.ledger.settle(key, SendState.SENT, verdict.detail, now)
            self.sent_this_run += 1
        elif verdict.result == Result.REFUSED:  # the row's status travels with the ledger's write-back
            self.ledger.settle(key, SendState.REFUSED, verdict.detail, now,
                               {STATUS: verdict.status} if email.writes_back else {},
                               log_result=f"refused: {verdict.detail}")
        elif verdict.result == Result.HELD:
            self.ledger.settle(key, SendState.FAILED, verdict.detail, now)
        if verdict.result in (Result.SENT, Result.REFUSED):
            self.settled_now.add(key)

    def _note(self, email: Email, verdict: Verdict, rendered: Rendered | None = None) -> None:
        """The outcome for the summary, and the row's new status unless the ledger carries it."""
        carried = verdict.result in (Result.SENT, Result.REFUSED)
        if verdict.status and email.writes_back and not carried:
            self.writes.append(email.row.write({STATUS: verdict.status}))
        self.report.outcomes.append(Outcome(email, verdict.result, verdict.reason, rendered))

    def _dry_run(self, email: Email, held: Verdict | None, rendered: Rendered) -> None:
        if held is not None:
            return self._note(email, held, rendered)
        self.sent_this_run += 1
        if email.writes_back:
            self.report.writes.append(email.row.write({**email.on_sent, STATUS: email.sent_status}))
        self._note(email, Verdict(Result.DRY_RUN, detail=rendered.subject), rendered)

    def _hold_reason(self, now: datetime) -> str:
        """Why nothing may go out at *now*: outside the send window, --limit, or the daily limit; blank if it may."""
        local = now.astimezone(self.settings.clinic.tz)
        window = self.settings.email.send_window
        if not window.contains(local):
            opens = window.next_open(local)
            return f"outside the send window ({window.text}); goes out from {opens:%a %Y-%m-%d %H:%M}"
        if self.limit is not None and self.sent_this_run >= self.limit:
            return f"--limit {self.limit} reached"
        limit = self.settings.email.daily_limit
        sent = self.ledger.sent_in_last_day(now) + (self.sent_this_run if self.dry_run else 0)
        if sent >= limit:
            return f"daily_limit {limit} reached in the last 24 hours"
        return ""

    def _pace(self) -> None:
        """Wait exactly as long as per_minute requires since the previous send."""
        per_minute = self.settings.email.per_minute
        if not per_minute or self.last_send is None:
            return
        wait = 60.0 / per_minute - (self._monotonic() - self.last_send)
        if wait > 0:
            self.world.sleep(wait)

    def _monotonic(self) -> float:
        return self.world.clock().timestamp()

    # -- write back ----------------------------------------------------------------------------------
    def _write_back(self, plans: Iterable[Plan]) -> None:
        """Every changed cell in one request, the Log in one append; then the ledger stops carrying them."""
        merged, fresh, carried = self._merged(plans)
        if self.dry_run:
            self.report.writes = merged
            return
        self.world.progress(f"writing {len(merged)} row(s) back")
        with self.world.backend.batch():  # the xlsx workbook is saved once, here, or not at all
            report = self.world.backend.write(self._specs(), self._as_read(merged))
            self._say_conflicts(report.conflicts)
            for plan in plans:
                for key, rows in plan.appends.items():
                    self._append_records(key, rows)
                if plan.dashboard is not None:
                    self.world.backend.write_dashboard(plan.dashboard)
            logged = self._append_log([r for r in (*fresh, *carried) if not r.logged and r.log_row])
        # Only now is the sheet known to hold it all: the ledger stops carrying it.
        self.report.cells_written += report.cells
        self.report.lost += report.lost
        self.report.writes = merged
        # A write-back whose row was not found (deleted, or its ID retyped meanwhile) stays pending.
        self.ledger.mark_written([r.key for r in (*fresh, *carried)
                                  if not r.written_back and (r.tab, r.key.row_id) not in report.lost_rows])
        self.ledger.mark_logged([r.key for r in logged])
        self._remember(plans)

    def _merged(self, plans: Iterable[Plan]) -> tuple[list[RowWrite], list[SendRecord], list[SendRecord]]:
        """One write per row of everything the run writes back, and the ledger's sent records it completes:
        those this run settled (fresh) and those an earlier run could not write back (carried)."""
        plan_writes = [w for plan in plans for w in plan.writes]
        if self.dry_run:
            return merge_writes([*plan_writes, *self.report.writes, *self.writes]), [], []
        pending = self.ledger.pending_writebacks()
        # What a run of another job going on now settles is that run's to write.
        busy = self._busy_jobs()
        fresh = [r for r in pending if r.key in self.settled_now]
        carried = [r for r in pending if r.key not in self.settled_now and r.key.job not in busy]
        # A carried status is stale where the jobs said something newer about the row this run.
        merged = merge_writes([*plan_writes, *self.writes, *_cells_of(fresh)], fallback=_cells_of(carried))
        return merged, fresh, carried

    def _as_read(self, writes: Sequence[RowWrite]) -> list[RowWrite]:
        """Each write with what its cells held when this run read the sheet: the backend writes a cell only
        while it still holds that (compare-and-set), so what staff typed meanwhile is never overwritten."""
        assert self.book is not None
        read: dict[tuple[str, str], tuple[Table, SheetRow]] = {}
        for key, table in self.book.tables.items():
            spec = TABS[key]
            if spec.id_column is None:
                continue
            ids = [cells.one_line(table.get(row, spec.id_column)) for row in table.rows]
            counts = Counter(ids)
            for row, row_id in zip(table.rows, ids, strict=True):
                if row_id and counts[row_id] == 1:  # a duplicated ID is written by content, not compared
                    read[(table.title, row_id)] = (table, row)
        out = []
        for write in writes:
            found = read.get((write.tab, write.row_id)) if write.match is None else None
            if found is None:
                out.append(write)
                continue
            table, row = found
            out.append(replace(write, expected={c: table.get(row, c) for c in write.values if table.has(c)}))
        return out

    def _say_conflicts(self, conflicts: Sequence[Conflict]) -> None:
        """Tell the rows whose cells staff changed during the run that those were left as staff wrote them."""
        by_row: dict[tuple[str, str], list[str]] = {}
        for conflict in conflicts:
            by_row.setdefault((conflict.tab, conflict.row_id), []).append(conflict.column)
            self.report.notes.append(str(conflict))
        notes = [RowWrite(tab, row_id, {STATUS: f"{', '.join(columns)} changed in the sheet during the run: "
                                                 "left as staff wrote it"})
                 for (tab, row_id), columns in by_row.items() if STATUS not in columns]
        if notes:
            self.world.backend.write(self._specs(), notes)

    def _append_log(self, records: Sequence[SendRecord]) -> list[SendRecord]:
        """The Log tab's line for each email sent or refused, in one append, skipping any line the Log
        already holds (by Message-ID: an interrupted or concurrent run may have appended it). Returns
        the records whose line the Log now has."""
        if not records:
            return []
        title = self.settings.sheet.title("log")
        table = self.world.backend.read([title])[title]  # inside the run's batch: the Log as it is now
        present = {str(table.get(row, "Message-ID")) for row in table.rows} if table is not None else set()
        missing = [r for r in records if r.message_id not in present]
        if missing:
            self.world.backend.append(title, [r.log_row for r in missing])
        self.report.log_rows = len(missing)
        return list(records)

    def _remember(self, plans: Iterable[Plan]) -> None:
        """What the plans asked the state dir to keep, once their effects are in the sheet."""
        for plan in plans:
            if plan.seen_stages:
                self.ledger.remember_stages(plan.seen_stages)
            self.ledger.record_replies(plan.replies)
            self.ledger.record_bounces(plan.bounces)
            for key, value in plan.remember.items():  # e.g. the mailbox position
                self.ledger.set_value(key, value)

    def _append_records(self, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows given by column name, in the order of the tab's header as staff arranged it."""
        if not rows:
            return
        title = self.settings.sheet.title(key)
        table = self.book.tables.get(key) if self.book is not None else None  # the header as read this run
        if table is None:
            raise PartnerloopError(f"{title}: tab is missing; run `partnerloop init` to add it")
        from automations.cells import normalise_header

        width = len(table.header)
        lines = []
        for record in rows:
            line: list[Any] = [None] * width
            for column, value in record.items():
                index = table.index.get(normalise_header(column))
                if index is not None:
                    line[index] = value
            lines.append(line)
        self.world.backend.append(title, lines)

    def _specs(self) -> dict[str, Any]:
        return {self.settings.sheet.title(key): spec for key, spec in TABS.items()}

    def _record_runs(self, run_ids: Mapping[str, int], result: str, summary: str) -> None:
        now = self.world.clock()
        for job, run_id in run_ids.items():
            self.ledger.finish_run(run_id, now, result, self.report.count(Result.SENT, job), summary)


def _signer(email: Email) -> tuple[str, str] | None:
    """(name, address) of the staff member who signs the email (the partner's Owner), for Reply-To."""
    signer = email.context.get("signer")
    return (signer.name, signer.email) if signer is not None and signer.email else None


def _cells_of(records: Sequence[SendRecord]) -> list[RowWrite]:
    """The cells sent emails must still write to their rows, as the ledger keeps them."""
    return [RowWrite(r.tab, r.key.row_id, r.writeback, r.match) for r in records if not r.written_back]


def unknown_sends(ledger: Ledger) -> dict[SendKey, datetime]:
    """The sends whose outcome is unknown (never repeated automatically), with when each was claimed."""
    return {record.key: record.claimed_at for record in ledger.unknown()}


def remembered(ledger: Ledger) -> dict[str, str]:
    """What jobs asked the state dir to keep for them (the digest's figures, the mailbox position)."""
    return {key: value for key in ("digest", MAILBOX_POSITION) if (value := ledger.get_value(key))}


def changed_status(email: Email, record: SendRecord) -> str:
    """The row's status when its ID had this email sent while the row named someone else."""
    when = (record.settled_at or record.claimed_at).date().isoformat()
    return (f"Not sent: {email.label} went on {when} to the row that had ID {email.row.row_id} then, which named "
            "someone else (the ID was reused or retyped). If this is a new row, clear its ID cell and a new ID is "
            f"given; to send it anyway: `partnerloop resolve {email.row.row_id} --job {email.job} --resend`")


def unknown_status(email: Email, mailbox: bool = False) -> str:
    """The row's status for a send whose outcome is unknown: never sent again until it is settled."""
    if mailbox:
        return (f"{email.label}: unknown whether it was delivered; partnerloop looks for it in the clinic's sent "
                "mail on each run. If it is not found, check with the "
                f"{email.recipient}, then run `partnerloop resolve {email.row.row_id} --job {email.job} --sent` "
                "or `--resend`")
    return (f"{email.label}: unknown whether it was delivered (the run stopped while sending). Check with the "
            f"{email.recipient}, then run `partnerloop resolve {email.row.row_id} --job {email.job} --sent` "
            "or `--resend`")


def merge_writes(writes: Sequence[RowWrite], fallback: Sequence[RowWrite] = ()) -> list[RowWrite]:
    """One write per row; statuses from several sources joined with '; ' in order, without repeats.

    A *fallback* write fills only the cells (and the status) that *writes* leave unsaid for its row.
    """
    merged: dict[tuple[str, str, Any], dict[str, Any]] = {}
    statuses: dict[tuple[str, str, Any], list[str]] = {}
    numbers: dict[tuple[str, str, Any], int | None] = {}
    for primary, group in ((True, writes), (False, fallback)):
        said = {key for key, values in statuses.items() if values}  # rows *writes* gave a status
        for write in group:
            key = (write.tab, write.row_id, write.match)
            cells = merged.setdefault(key, {})
            numbers.setdefault(key, write.number)
            for column, value in write.values.items():
                if column != STATUS:
                    cells[column] = value if primary else cells.get(column, value)
                elif value and value not in statuses.setdefault(key, []) and (primary or key not in said):
                    statuses[key].append(value)
    out = []
    for key, cells in merged.items():
        if statuses.get(key):
            cells[STATUS] = "; ".join(statuses[key])
        if cells:
            out.append(RowWrite(key[0], key[1], cells, key[2], numbers[key]))
    return out
