"""The replies job: what the clinic's mailbox says about the emails partnerloop sent.

A pure decision over the new messages the run read from the mailbox first (`JobInput.inbox`):

- a partner in the outreach sequence (Stage Prospect or Contacted) who replied: the reply is
  recorded (the outreach job then sends no more follow-ups) and the row says "Replied <date>:
  update Stage";
- a message asking to stop: the sender goes on Opt-outs and the row says "Opted out by email <date>";
- a bounce (delivery-status notification): the address is recorded as bouncing (the executor sends
  nothing more to it) and the row says so.

A message is matched to what it answers by In-Reply-To / References against the Message-IDs in
the send ledger, else by its sender's address against the partners' (and patients') Email.
Automatic replies are not replies; messages that match nothing change nothing. The mailbox
position after these messages goes into `Plan.remember`, which the executor keeps only after the
rest is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from automations.core import MAILBOX_POSITION, STATUS, InboundMessage, SendKey
from automations.jobs.plan import JobInput, Plan
from automations.model import Partner, Referral, RowRef
from automations.sheets.base import RowWrite

OUTREACH_STAGES = ("Prospect", "Contacted")
OPT_OUT_REASON = "Asked by email to unsubscribe"

# "stop" alone is too common in a friendly reply ("stop by on Tuesday") to count inside a sentence:
# it counts only as the whole subject or a whole line ("STOP", "Stop."); the others count anywhere.
_STOP_WORDS = re.compile(r"\b(unsubscribe|remove me|opt[- ]?out)\b", re.IGNORECASE)
_STOP_ALONE = re.compile(r"^\W*(please\W+)?stop(\W+(please|emailing|it|now))?\W*$", re.IGNORECASE)
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv|antw)\s*:\s*)+", re.IGNORECASE)
_MACHINE_SENDERS = ("mailer-daemon", "postmaster")

# What a row says, strongest first: an opt-out outranks a bounce, which outranks a reply.
_OPTED_OUT, _BOUNCING, _REPLIED = 3, 2, 1


@dataclass(frozen=True)
class _Who:
    """Whom a message is about: a partner, or the patient of a referral."""

    partner: Partner | None = None
    patient_of: Referral | None = None

    @property
    def address(self) -> str:
        email = self.partner.email if self.partner else self.patient_of.patient_email if self.patient_of else None
        return (email or "").lower()

    @property
    def ref(self) -> RowRef:
        row = self.partner or self.patient_of
        assert row is not None
        return row.ref

    @property
    def status(self) -> str:
        row = self.partner or self.patient_of
        return row.status if row is not None else ""


def plan_replies(inp: JobInput) -> Plan:
    """Replies, opt-outs and bounces from the new messages; see the module docstring."""
    messages = sorted(inp.inbox.messages, key=lambda m: m.uid)
    index = _Index(inp)
    statuses = _Statuses()
    replies: dict[str, date] = {}
    bounces: dict[str, date] = {}
    opt_outs: dict[str, date] = {}
    for message in messages:
        if message.skipped:
            continue  # logged when it was fetched; it only moves the position past it
        day = _day(message, inp)
        if message.is_bounce:
            for address in message.bounced_recipients:
                bounces[address] = min(day, bounces.get(address, day))
                for who in index.bounced(address, message.bounced_message_id):
                    statuses.add(who, _BOUNCING, bounces[address])
            continue
        sender = message.from_address
        if sender in index.clinic_addresses or sender.split("@")[0] in _MACHINE_SENDERS:
            continue  # the clinic's own mail, or a machine's that is not a delivery report
        about = index.about(message)
        if _unsubscribe_form(message, index.unsubscribe_address) or (
                about and not message.auto_submitted and _asks_to_stop(message)):
            opt_outs[sender] = min(day, opt_outs.get(sender, day))
            for who in about or index.by_address(sender):
                if who.address == sender:
                    statuses.add(who, _OPTED_OUT, opt_outs[sender])
                elif who.partner is not None and who.partner.stage in OUTREACH_STAGES:
                    # someone else asked to stop in the partner's thread: end the sequence, staff decide
                    replies[who.partner.id] = min(day, replies.get(who.partner.id, day))
            continue
        if message.auto_submitted:
            continue  # an out-of-office is not a reply: the sequence goes on
        for who in about:
            if who.partner is not None and who.partner.stage in OUTREACH_STAGES:
                replies[who.partner.id] = min(day, replies.get(who.partner.id, day))
    for partner_id in list(replies):
        partners = index.partners_by_id.get(partner_id, [])
        if any(p.email and p.email.lower() in opt_outs for p in partners):
            del replies[partner_id]  # they also asked to stop: Opt-outs says it all
            continue
        for partner in partners:
            statuses.add(_Who(partner=partner), _REPLIED, inp.replied.get(partner_id, replies[partner_id]))
    new_opt_outs = tuple({"Email": address, "Date": day, "Reason": OPT_OUT_REASON}
                         for address, day in opt_outs.items() if address not in inp.book.opted_out)
    return Plan(
        "replies",
        writes=tuple(statuses.writes()),
        appends={"optouts": new_opt_outs} if new_opt_outs else {},
        replies={pid: day for pid, day in replies.items() if pid not in inp.replied},
        bounces=bounces,
        remember={MAILBOX_POSITION: inp.inbox.position} if inp.inbox.position else {},
    )


class _Index:
    """The rows a message can be about, found by Message-ID (what it answers) or by address."""

    def __init__(self, inp: JobInput) -> None:
        clinic = inp.settings.clinic
        self.clinic_addresses = frozenset(a.lower() for a in (clinic.from_email, clinic.reply_to, clinic.staff_email,
                                                              clinic.owner_email) if a)
        self.unsubscribe_address = (clinic.reply_to or clinic.from_email).lower()
        self.sent = {_norm_id(mid): key for mid, key in inp.sent_messages.items()}
        self.partners_by_id: dict[str, list[Partner]] = {}
        self.partners_by_email: dict[str, list[Partner]] = {}
        for partner in inp.book.partners:
            self.partners_by_id.setdefault(partner.id, []).append(partner)
            if partner.email:
                self.partners_by_email.setdefault(partner.email.lower(), []).append(partner)
        self.referrals = {r.id: r for r in inp.book.referrals}
        self.patients_by_email: dict[str, list[Referral]] = {}
        for referral in inp.book.referrals:
            if referral.patient_email:
                self.patients_by_email.setdefault(referral.patient_email.lower(), []).append(referral)
        self.events = {e.id: e for e in inp.book.events}

    def about(self, message: InboundMessage) -> list[_Who]:
        """Whom the message answers: by its thread first, else by its sender's address."""
        for message_id in message.thread_ids:
            key = self.sent.get(_norm_id(message_id))
            if key is not None:
                found = self.sent_to(key)
                if found:
                    return found
        return self.by_address(message.from_address)

    def by_address(self, address: str) -> list[_Who]:
        return ([_Who(partner=p) for p in self.partners_by_email.get(address, [])]
                + [_Who(patient_of=r) for r in self.patients_by_email.get(address, [])])

    def sent_to(self, key: SendKey) -> list[_Who]:
        """Who received the email of this ledger key (a partner ID for outreach; a referral or event row else)."""
        if key.job == "outreach":
            return [_Who(partner=p) for p in self.partners_by_id.get(key.row_id, [])]
        if key.job in ("discharge", "referrals_in"):
            referral = self.referrals.get(key.row_id)
            if referral is None:
                return []
            if key.step == "patient":
                return [_Who(patient_of=referral)]
            return [_Who(partner=referral.partner)] if referral.partner else []
        if key.job == "events" and key.step == "partner":
            event = self.events.get(key.row_id)
            return [_Who(partner=event.partner)] if event is not None and event.partner else []
        return []  # the staff's or the owner's copy: no partner row to update

    def bounced(self, address: str, message_id: str) -> list[_Who]:
        """The rows that still hold a bounced address: the returned email's row first, else any row."""
        key = self.sent.get(_norm_id(message_id)) if message_id else None
        if key is not None:
            found = [w for w in self.sent_to(key) if w.address == address]
            if found:
                return found
        return self.by_address(address)  # staff may already have corrected the row: then nothing to say


class _Statuses:
    """One status per row: the strongest news, at its earliest date; none where the row says it already."""

    def __init__(self) -> None:
        self.rows: dict[RowRef, tuple[int, date, _Who]] = {}

    def add(self, who: _Who, rank: int, day: date) -> None:
        current = self.rows.get(who.ref)
        if current is None or rank > current[0] or (rank == current[0] and day < current[1]):
            self.rows[who.ref] = (rank, day, who)

    def writes(self) -> list[RowWrite]:
        out = []
        for ref, (rank, day, who) in self.rows.items():
            status = _status_text(rank, day, patient=who.patient_of is not None)
            if status != who.status:
                out.append(ref.write({STATUS: status}))
        return out


def _status_text(rank: int, day: date, patient: bool) -> str:
    when = day.isoformat()
    if rank == _OPTED_OUT:
        return f"Patient opted out by email {when}" if patient else f"Opted out by email {when}"
    if rank == _BOUNCING:
        return f"Patient email bouncing since {when}: correct it" if patient else \
            f"Email bouncing since {when}: correct the address"
    return f"Replied {when}: update Stage"


def _unsubscribe_form(message: InboundMessage, address: str) -> bool:
    """A message as the List-Unsubscribe header asks for it: to the clinic's address, subject "unsubscribe"."""
    return message.subject.strip().lower() == "unsubscribe" and address in message.to_addresses


def _asks_to_stop(message: InboundMessage) -> bool:
    subject = _SUBJECT_PREFIX.sub("", message.subject)
    texts = (subject, *message.first_lines)
    return any(_STOP_WORDS.search(t) or _STOP_ALONE.match(t) for t in texts if t)


def _day(message: InboundMessage, inp: JobInput) -> date:
    """The clinic-local day the message was written; never later than today (a sender's clock may be wrong)."""
    if message.date is None:
        return inp.today
    return min(message.date.astimezone(inp.settings.clinic.tz).date(), inp.today)


def _norm_id(message_id: str) -> str:
    return message_id.strip().strip("<>").strip().lower()
