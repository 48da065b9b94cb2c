"""The one executor: performs every job's Plan. Idempotency, limits and the send window live here once.

A run: take each job's lock; read the sheet once; write newly assigned row IDs (before any send,
so every ledger key names a row that has its ID); let each job plan; send each planned email
through the ledger (claim, hand over, settle) inside the send window and the daily limit; then
write every changed cell in one request and append the Log in one request. What the ledger knows
was delivered but the sheet does not show yet is written back too, without sending again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

from automations.clock import Clock
from automations.config import Settings
from automations.errors import MailError, PartnerloopError
from automations.jobs.plan import Email, JobInput, Plan
from automations.locks import JobLock
from automations.mail.ledger import Ledger, SendKey, SendRecord
from automations.mail.message import build_message
from automations.mail.render import Renderer, RenderError
from automations.mail.transport import (
    OutcomeUnknown,
    RecipientRefused,
    TemporaryFailure,
    Transport,
    make_transport,
)
from automations.model import Book, read_book, require_layout
from automations.schema import TABS
from automations.sheets.base import Backend, RowWrite

log = logging.getLogger("partnerloop")
STATUS = "Automation status"


@dataclass
class Outcome:
    """What happened to one planned email, for the summary."""

    email: Email
    result: str  # sent | already | held | refused | unknown | failed | blocked | error | dry-run
    detail: str = ""


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
        return sum(1 for o in self.outcomes if o.result == result and (job is None or o.email.job == job))

    def summary(self) -> list[str]:
        """A few lines a person can act on: what was sent, held back and why, which rows need attention."""
        lines = []
        verb = "would send" if self.dry_run else "sent"
        sent = self.count("dry-run" if self.dry_run else "sent")
        lines.append(f"{', '.join(self.jobs)}: {verb} {sent} email(s)")
        lines += self.notes
        held = [o for o in self.outcomes if o.result == "held"]
        if held:
            reasons = sorted({o.detail for o in held})
            lines.append(f"held back {len(held)} email(s) for the next run: {'; '.join(reasons)}")
        for result, words in (("refused", "refused by the mail server"), ("unknown", "outcome unknown"),
                              ("failed", "not delivered (will retry)"), ("error", "could not be written"),
                              ("blocked", "not sent: opted out")):
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
    mailbox: Callable[[Settings, Ledger], tuple[Any, ...]] | None = None  # new mailbox messages (replies job)


def run_jobs(world: World, jobs: Sequence[str], *, dry_run: bool = False, limit: int | None = None,
             lock: bool = True) -> RunReport:
    """Run *jobs* once over one read of the sheet; see the module docstring."""
    from automations.jobs import JOBS

    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        raise PartnerloopError(f"unknown job {unknown[0]!r}; jobs are: {', '.join(JOBS)}")

    locks = [JobLock(world.settings.state_dir, job) for job in jobs] if lock and not dry_run else []
    for held in locks:
        held.acquire()  # raises AlreadyRunning: nothing is read or sent
    try:
        return _Run(world, list(jobs), dry_run, limit).go()
    finally:
        for held in reversed(locks):
            held.release()


class _Run:
    def __init__(self, world: World, jobs: list[str], dry_run: bool, limit: int | None) -> None:
        self.world = world
        self.settings = world.settings
        self.ledger = world.ledger
        self.jobs = jobs
        self.dry_run = dry_run
        self.limit = limit
        self.report = RunReport(jobs, dry_run)
        self.renderer = Renderer(self.settings.templates_dir)
        self.transport: Transport | None = None
        self.stop_sending = ""  # once set, every further email is held with this reason
        self.last_send: float | None = None
        self.sent_this_run = 0
        self.writes: list[RowWrite] = []
        self.book: Book | None = None
        self.settled_now: set[SendKey] = set()  # sends whose outcome this run recorded

    def go(self) -> RunReport:
        from automations.jobs import JOBS

        now = self.world.clock()
        run_ids = {} if self.dry_run else {job: self.ledger.start_run(job, now) for job in self.jobs}
        try:
            self.world.progress("reading the sheet")
            book = self.book = read_book(self.world.backend, self.settings)
            require_layout(book, self.jobs)  # a tab lacking a column a job decides by: nothing is sent
            self.world.progress(f"read {len(book.partners)} partners, {len(book.referrals)} referrals, "
                                f"{len(book.events)} events")
            blocked_rows = self._assign_ids(book)
            job_input = JobInput(book=book, now=now, settings=self.settings, seen_stages=self.ledger.seen_stages(),
                                 health=self.ledger.last_runs(), remembered=remembered(self.ledger),
                                 location=self.world.backend.location(), replied=self.ledger.replied())
            plans = []
            if "replies" in self.jobs:  # first: what came back this run must already stop what goes out
                plans.append(self._plan_replies(job_input))
                job_input = replace(job_input, replied={**job_input.replied, **plans[0].replies})
            plans += [JOBS[job](job_input) for job in self.jobs if job != "replies"]
            self.report.attention = sorted({f"{p.ref.tab} {p.ref.label}" for p in book.problems})
            emails = [e for plan in plans for e in plan.emails if e.row.row_id not in blocked_rows]
            self.world.progress(f"{len(emails)} email(s) due")
            try:
                for n, email in enumerate(emails, start=1):
                    self._one(email, book)
                    if n == len(emails) or n % 25 == 0:
                        self.world.progress(f"email {n} of {len(emails)}")
            finally:
                if self.transport is not None:
                    self.transport.close()
            self._finish(plans)
        except PartnerloopError as exc:
            self._record_runs(run_ids, "failed", str(exc))
            raise
        except Exception as exc:  # a bug must still leave job health behind; the CLI reports it
            self._record_runs(run_ids, "failed", f"unexpected {type(exc).__name__}")
            raise
        self._record_runs(run_ids, "failed" if self.report.fatal else "ok", " / ".join(self.report.summary()))
        return self.report

    # -- before sending ------------------------------------------------------------------------------
    def _assign_ids(self, book: Book) -> set[str]:
        """Write new row IDs first; rows whose ID could not be written are not emailed this run."""
        if not book.new_ids or self.dry_run:
            return set()
        report = self.world.backend.write(self._specs(), book.new_ids)
        lost_ids = {row_id for _, row_id in report.lost_rows}
        self.report.lost += report.lost
        return lost_ids


    def _plan_replies(self, job_input: JobInput) -> Plan:
        """Read the mailbox and plan its effects; opt-outs and bounces take effect for this run's sends too."""
        from automations.jobs.replies import plan_replies

        self.world.progress("reading the mailbox")
        fetch = self.world.mailbox
        if fetch is None:
            from automations.mail.imap import fetch_new

            fetch = fetch_new
        settings = self.settings
        if self.dry_run:  # a dry run leaves the mailbox exactly as it was
            settings = replace(settings, email=replace(settings.email, imap=replace(settings.email.imap, mark_read=False)))
        inbox = tuple(fetch(settings, self.ledger))
        plan = plan_replies(replace(job_input, inbox=inbox,
                                    sent_messages=self.ledger.message_keys() if inbox else {}))
        book = job_input.book
        new_optouts = {str(r.get("Email", "")).lower() for r in plan.appends.get("optouts", ())} - {""}
        book.opted_out = book.opted_out | new_optouts
        if self.dry_run:
            book.opted_out |= {a.lower() for a in plan.bounces}
        else:
            self.ledger.record_bounces(plan.bounces)  # a fact from the mailbox: no email to it from now on
        self.report.notes.append(f"replies: {len(inbox)} new message(s) in the mailbox; {len(plan.replies)} "
                                 f"partner repl{'y' if len(plan.replies) == 1 else 'ies'}, {len(new_optouts)} "
                                 f"opt-out(s), {len(plan.bounces)} bounce(s)")
        return plan

    # -- one email -----------------------------------------------------------------------------------
    def _one(self, email: Email, book: Book) -> None:
        now = self.world.clock()
        if book.blocked(email.to_email):
            return self._status(email, "blocked", f"Not sent: {email.to_email and 'the address'} is on Opt-outs "
                                "or marked Do not email")
        record = self.ledger.get(email.key)
        if record is not None and record.state == "sent":
            return self._outcome(email, "already")
        bounced = self.ledger.bounced(email.to_email)
        if bounced is not None:
            return self._status(email, "blocked", f"Not sent: the {email.recipient}'s address bounced on "
                                f"{bounced.isoformat()}; correct it to send again")
        if record is not None and record.state == "sending":
            return self._status(email, "unknown", unknown_status(email))
        if not self.stop_sending and self.world.stop():
            self.stop_sending = "partnerloop was stopping; goes out on the next run"
        if self.stop_sending:
            return self._status(email, "held", f"{email.label} held: {self.stop_sending}", detail=self.stop_sending)
        reason = self._hold_reason(now)
        if reason:
            return self._status(email, "held", f"{email.label} held: {reason}", detail=reason)
        try:
            rendered = self.renderer.render(email.template, email.context)
            message = build_message(rendered, to_email=email.to_email, to_name=email.to_name,
                                    clinic=self.settings.clinic, outreach=email.outreach, now=now)
        except (RenderError, ValueError) as exc:
            return self._status(email, "error", f"Not sent: {exc}")
        if self.dry_run:
            self.sent_this_run += 1
            if email.writes_back:
                self.report.writes.append(email.row.write({**email.on_sent, STATUS: email.sent_status}))
            return self._outcome(email, "dry-run", rendered.subject)
        message_id = str(message["Message-ID"])
        log_row = [now.replace(tzinfo=None, microsecond=0), email.job, email.template, email.log_to,
                   email.row.row_id, message_id, "sent"]
        claimed = self.ledger.claim(email.key, template=email.template, to_address=email.to_email,
                                    tab=email.row.tab, match=email.row.match if not email.row.new else None,
                                    message_id=message_id, now=now,
                                    writeback={**email.on_sent, STATUS: email.sent_status} if email.writes_back else {},
                                    log_row=log_row)
        if not claimed:  # refused at this very address before: wait for staff to correct it
            record = self.ledger.get(email.key)
            return self._outcome(email, "refused", record.result if record else "")
        self._pace()
        try:
            if self.transport is None:
                self.transport = self.world.transport_factory(self.settings)
                self.transport.open()
            result = self.transport.send(message)
        except RecipientRefused as exc:
            status = f"Not sent: the mail server refused the {email.recipient}'s address ({exc}); correct it to retry"
            self.ledger.settle(email.key, "refused", str(exc), self.world.clock(),
                               {STATUS: status} if email.writes_back else {}, log_result=f"refused: {exc}")
            self.settled_now.add(email.key)
            return self._outcome(email, "refused", str(exc))
        except OutcomeUnknown as exc:
            self.stop_sending = f"the mail server connection broke ({exc}); the rest waits for the next run"
            self.report.fatal = f"mail server: {exc}"
            self._status(email, "unknown", unknown_status(email))
            return None
        except (TemporaryFailure, MailError, OSError) as exc:
            if self.ledger.get(email.key) is not None:
                self.ledger.settle(email.key, "failed", str(exc), self.world.clock())
            self.stop_sending = f"mail server unavailable ({exc}); retried on the next run"
            self.report.fatal = f"mail server: {exc}"
            return self._status(email, "held", f"{email.label} held: {self.stop_sending}", detail=self.stop_sending)
        finally:
            self.last_send = self._monotonic()
        self.ledger.settle(email.key, "sent", result, self.world.clock())
        self.settled_now.add(email.key)
        self.sent_this_run += 1
        log.info("sent %s %s %s", email.job, email.row.row_id, email.template)
        return self._outcome(email, "sent")

    def _hold_reason(self, now: datetime) -> str:
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

    def _status(self, email: Email, result: str, status: str, detail: str = "") -> None:
        if email.writes_back:
            self.writes.append(email.row.write({STATUS: status}))
        self._outcome(email, result, detail or status)

    def _outcome(self, email: Email, result: str, detail: str = "") -> None:
        self.report.outcomes.append(Outcome(email, result, detail))

    # -- after sending -------------------------------------------------------------------------------
    def _finish(self, plans: Iterable[Plan]) -> None:
        plan_writes = [w for plan in plans for w in plan.writes]
        if self.dry_run:
            self.report.writes = merge_writes([*plan_writes, *self.report.writes, *self.writes])
            return
        pending = self.ledger.pending_writebacks()
        # What this run delivered, and what an earlier run delivered but could not write back (carried).
        carried = [r for r in pending if r.key not in self.settled_now]
        fresh = [r for r in pending if r.key in self.settled_now]

        def cells_of(records: list[SendRecord]) -> list[RowWrite]:
            return [RowWrite(r.tab, r.key.row_id, r.writeback, r.match) for r in records if not r.written_back]

        # A carried status is stale where the jobs said something newer about the row this run.
        merged = merge_writes([*plan_writes, *self.writes, *cells_of(fresh)], fallback=cells_of(carried))
        to_log = [r for r in fresh if not r.logged and r.log_row] + self._unlogged(carried)
        self.world.progress(f"writing {len(merged)} row(s) back")
        with self.world.backend.batch():  # the xlsx workbook is saved once, here, or not at all
            report = self.world.backend.write(self._specs(), merged)
            for plan in plans:
                for key, rows in plan.appends.items():
                    self._append_records(key, rows)
                if plan.dashboard is not None:
                    self.world.backend.write_dashboard(plan.dashboard)
            if to_log:
                self.world.backend.append(self.settings.sheet.title("log"), [r.log_row for r in to_log])
        # Only now is the sheet known to hold it all: the ledger stops carrying it.
        self.report.cells_written += report.cells
        self.report.lost += report.lost
        self.ledger.mark_written([r.key for r in pending if not r.written_back])
        self.ledger.mark_logged([r.key for r in to_log])
        self.report.log_rows = len(to_log)
        for plan in plans:
            if plan.seen_stages:
                self.ledger.remember_stages(plan.seen_stages)
            self.ledger.record_replies(plan.replies)
            self.ledger.record_bounces(plan.bounces)
            for key, value in plan.remember.items():  # e.g. the mailbox position, once its effects are kept
                self.ledger.set_value(key, value)
        self.report.writes = merged

    def _unlogged(self, carried: list[SendRecord]) -> list[SendRecord]:
        """Carried Log lines minus those an interrupted run appended already (found by Message-ID)."""
        lines = [r for r in carried if not r.logged and r.log_row]
        if not lines:
            return []
        title = self.settings.sheet.title("log")
        table = self.world.backend.read([title])[title]
        present = {str(table.get(row, "Message-ID")) for row in table.rows} if table is not None else set()
        landed = [r for r in lines if r.message_id in present]
        self.ledger.mark_logged([r.key for r in landed])
        return [r for r in lines if r.message_id not in present]

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
            self.ledger.finish_run(run_id, now, result, self.report.count("sent", job), summary)


def remembered(ledger: Ledger) -> dict[str, str]:
    """What jobs asked the state dir to keep for them (the digest's figures, the mailbox position)."""
    return {key: value for key in ("digest", "imap") if (value := ledger.get_value(key))}


def unknown_status(email: Email) -> str:
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
