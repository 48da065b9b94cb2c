"""The send ledger (SQLite under [state] dir): each email goes out at most once per (job, row, step).

A send is *claimed* (state `sending`) in its own committed transaction before the message is
handed to the transport, and its outcome recorded after. A claim left in `sending` means the run
stopped in between: the outcome is unknown, and the ledger never lets that key be sent again
until staff settle it with `partnerloop resolve`. Recipient addresses are stored only as hashes.

The ledger also keeps what each sent email must write back to its row and its Log line, until the
sheet has them, so a failed write-back is completed by the next run without sending again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from automations.core import RunRecord, SendKey, SendState
from automations.errors import PartnerloopError

SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (
    job TEXT NOT NULL, row_id TEXT NOT NULL, step TEXT NOT NULL,
    state TEXT NOT NULL,              -- sending | sent | refused | failed | resend
    attempt INTEGER NOT NULL DEFAULT 1,
    template TEXT NOT NULL, to_hash TEXT NOT NULL,
    tab TEXT NOT NULL, match TEXT,    -- where to write back (match: row content when it had no ID)
    message_id TEXT, result TEXT,
    claimed_at TEXT NOT NULL, settled_at TEXT,
    writeback TEXT, log_row TEXT,     -- JSON, kept until the sheet has them
    written_back INTEGER NOT NULL DEFAULT 0, logged INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, row_id, step)
);
CREATE INDEX IF NOT EXISTS sends_state ON sends(state, claimed_at);
CREATE TABLE IF NOT EXISTS deliveries (at TEXT NOT NULL, job TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries(at);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, job TEXT NOT NULL, started TEXT NOT NULL, finished TEXT,
    result TEXT, sent INTEGER NOT NULL DEFAULT 0, summary TEXT
);
CREATE TABLE IF NOT EXISTS seen_stages (partner_id TEXT PRIMARY KEY, stage TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replies (partner_id TEXT PRIMARY KEY, replied_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bounces (to_hash TEXT PRIMARY KEY, bounced_on TEXT NOT NULL);
"""


FOUND_IN_MAILBOX = "found in the clinic's sent mail"  # the result of a send settled from the mailbox
REBUILT_FROM_LOG = "on the Log tab (state dir rebuilt)"  # the result of a send recorded from the Log
IDS_KEY = "ids_seen"  # kv: the highest row ID number seen per prefix


class Claim(StrEnum):
    """The answer to a claim: only CLAIMED lets the email go (and only CLAIMED is true)."""

    CLAIMED = "claimed"
    TAKEN = "already sent, or its outcome is unknown"
    REFUSED_HERE = "refused at this address before"
    LIMIT = "daily limit reached"

    def __bool__(self) -> bool:
        return self is Claim.CLAIMED


def address_hash(address: str) -> str:
    """A recipient address as stored: enough to tell that it changed, nothing to read back."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SendRecord:
    key: SendKey
    state: SendState
    attempt: int
    template: str
    to_hash: str
    tab: str
    match: tuple[str, ...] | None
    message_id: str
    result: str
    claimed_at: datetime
    settled_at: datetime | None
    writeback: dict[str, Any]
    log_row: list[Any]
    written_back: bool
    logged: bool
    identity: str = ""  # whom the row was about when claimed (model.identity); "" when unknown


class Ledger:
    """The SQLite ledger; one per state directory, safe to share between processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(sends)")}
            if "identity" not in columns:  # a ledger made before rows carried their identity
                self.db.execute("ALTER TABLE sends ADD COLUMN identity TEXT NOT NULL DEFAULT ''")
        except sqlite3.Error as exc:
            raise PartnerloopError(f"{self.path}: cannot open the send ledger ({exc}); check [state] dir") from None
        self.db.row_factory = sqlite3.Row

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> Ledger:
        return cls(Path(state_dir) / "ledger.sqlite3")

    def close(self) -> None:
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # syncs the WAL: what was committed lazily is on disk
        self.db.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    # -- sends -----------------------------------------------------------------------------------
    def get(self, key: SendKey) -> SendRecord | None:
        row = self.db.execute("SELECT * FROM sends WHERE job=? AND row_id=? AND step=?",
                              (key.job, key.row_id, key.step)).fetchone()
        return _record(row) if row else None

    def claim(self, key: SendKey, *, template: str, to_address: str, tab: str, match: Sequence[str] | None,
              message_id: str, now: datetime, writeback: Mapping[str, Any], log_row: Sequence[Any],
              daily_limit: int | None = None, identity: str = "") -> Claim:
        """Record the intent to send, with what a delivery writes back and logs; durable before it returns.

        Anything but Claim.CLAIMED (falsy) means this key must not be sent now: already sent or
        outcome unknown, refused at this same address, or *daily_limit* sends in the 24 hours
        before *now* (decided inside the claim, so concurrent runs cannot overshoot it together).
        """
        to_hash = address_hash(to_address)
        self.db.execute("PRAGMA synchronous=FULL")  # this commit also makes the previous settle durable
        with self._tx():
            row = self.db.execute("SELECT state, to_hash, attempt FROM sends WHERE job=? AND row_id=? AND step=?",
                                  (key.job, key.row_id, key.step)).fetchone()
            if row is not None:
                state = row["state"]
                if state in (SendState.SENT, SendState.SENDING):
                    return Claim.TAKEN
                if state == SendState.REFUSED and row["to_hash"] == to_hash:
                    return Claim.REFUSED_HERE
            if daily_limit is not None and self.sent_since(now - timedelta(hours=24)) >= daily_limit:
                return Claim.LIMIT
            attempt = 1 if row is None else row["attempt"] + 1
            self.db.execute(
                "INSERT OR REPLACE INTO sends (job,row_id,step,state,attempt,template,to_hash,tab,match,message_id,"
                "result,claimed_at,settled_at,writeback,log_row,written_back,logged,identity) "
                "VALUES (?,?,?,'sending',?,?,?,?,?,?,'',?,NULL,?,?,0,0,?)",
                (key.job, key.row_id, key.step, attempt, template, to_hash, tab,
                 json.dumps(list(match)) if match is not None else None, message_id, _utc(now),
                 _dumps(dict(writeback)), _dumps(list(log_row)), identity))
        return Claim.CLAIMED

    def settle(self, key: SendKey, state: SendState, result: str, now: datetime,
               writeback: Mapping[str, Any] | None = None, log_result: str | None = None) -> None:
        """Record the outcome of a claimed send; *writeback* replaces the claimed one (e.g. a refusal status).

        A delivery also counts toward the daily limit.
        """
        assert state in (SendState.SENT, SendState.REFUSED, SendState.FAILED)
        # Committed without waiting for the disk: the next claim's commit (or close) makes it durable, so
        # one email costs one disk sync. A process that dies keeps it (it is in the WAL); only a power
        # cut before the next commit could lose it, and then the send reads as unknown, never as unsent.
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self._tx():
            row = self.db.execute("SELECT writeback, log_row FROM sends WHERE job=? AND row_id=? AND step=?",
                                  (key.job, key.row_id, key.step)).fetchone()
            cells = row["writeback"] if writeback is None else _dumps(dict(writeback))
            log_row = json.loads(row["log_row"] or "[]")
            if log_result is not None and log_row:
                log_row[-1] = log_result
            self.db.execute(
                "UPDATE sends SET state=?, result=?, settled_at=?, writeback=?, log_row=? "
                "WHERE job=? AND row_id=? AND step=?",
                (state, result[:300], now.isoformat(), cells, json.dumps(log_row), key.job, key.row_id, key.step))
            if state == SendState.SENT:
                self.db.execute("INSERT INTO deliveries (at, job) VALUES (?, ?)", (_utc(now), key.job))

    def settled_from_mailbox(self, last: int = 10) -> list[SendRecord]:
        """The latest unknown outcomes a run settled as sent because the clinic's sent mail held them."""
        return [_record(row) for row in self.db.execute(
            "SELECT * FROM sends WHERE state='sent' AND result=? ORDER BY settled_at DESC LIMIT ?",
            (FOUND_IN_MAILBOX, last))]

    def keys(self, state: SendState, jobs: Sequence[str]) -> frozenset[SendKey]:
        """The keys of *jobs* in *state*: what jobs may know of the ledger (delivered, or to go out again)."""
        marks = ",".join("?" * len(jobs))
        return frozenset(SendKey(r["job"], r["row_id"], r["step"]) for r in self.db.execute(
            f"SELECT job, row_id, step FROM sends WHERE state=? AND job IN ({marks})", (state, *jobs)))

    def unknown(self) -> list[SendRecord]:
        """Claims whose outcome was never recorded: the run stopped between handing over and recording."""
        return [_record(r) for r in self.db.execute("SELECT * FROM sends WHERE state='sending' ORDER BY claimed_at")]

    def resolve(self, row_id: str, job: str | None, *, sent: bool, now: datetime) -> list[SendRecord]:
        """Staff settle unknown (or ask to re-send delivered) emails of a row: --sent or --resend."""
        query = "SELECT * FROM sends WHERE row_id=?" + (" AND job=?" if job else "")
        params: tuple[str, ...] = (row_id, job) if job else (row_id,)
        records = [_record(r) for r in self.db.execute(query, params)]
        if sent:
            records = [r for r in records if r.state == SendState.SENDING]
        with self._tx():
            for r in records:
                if sent:
                    self.db.execute("INSERT INTO deliveries (at, job) VALUES (?, ?)", (_utc(r.claimed_at), r.key.job))
                new_state = SendState.SENT if sent else SendState.RESEND
                self.db.execute(
                    "UPDATE sends SET state=?, result=?, settled_at=?, written_back=?, logged=? "
                    "WHERE job=? AND row_id=? AND step=?",
                    (new_state, "confirmed by staff" if sent else "re-send requested by staff", now.isoformat(),
                     int(not sent), int(not sent), r.key.job, r.key.row_id, r.key.step))
        return records

    # -- write-back ------------------------------------------------------------------------------
    def pending_writebacks(self) -> list[SendRecord]:
        return [_record(r) for r in self.db.execute(
            "SELECT * FROM sends WHERE state IN ('sent','refused') AND (written_back=0 OR logged=0) ORDER BY settled_at")]

    def mark_written(self, keys: Sequence[SendKey]) -> None:
        with self._tx():
            self.db.executemany("UPDATE sends SET written_back=1 WHERE job=? AND row_id=? AND step=?",
                                [(k.job, k.row_id, k.step) for k in keys])

    def mark_logged(self, keys: Sequence[SendKey]) -> None:
        with self._tx():
            self.db.executemany("UPDATE sends SET logged=1 WHERE job=? AND row_id=? AND step=?",
                                [(k.job, k.row_id, k.step) for k in keys])

    # -- limits ----------------------------------------------------------------------------------
    def sent_since(self, since: datetime) -> int:
        """Deliveries recorded after *since* (the rolling daily limit counts these and open claims)."""
        done = self.db.execute("SELECT COUNT(*) FROM deliveries WHERE at > ?", (_utc(since),)).fetchone()[0]
        open_ = self.db.execute("SELECT COUNT(*) FROM sends WHERE state='sending' AND claimed_at > ?",
                                (_utc(since),)).fetchone()[0]
        return int(done) + int(open_)

    def sent_in_last_day(self, now: datetime) -> int:
        return self.sent_since(now - timedelta(hours=24))

    # -- row IDs ever seen, and the ledger rebuilt from the Log tab -------------------------------------
    def ids_seen(self) -> dict[str, int]:
        """ID prefix (P, R, E) -> the highest number any row ID had that the ledger has seen."""
        seen: dict[str, int] = json.loads(self.get_value(IDS_KEY) or "{}")
        for (row_id,) in self.db.execute("SELECT DISTINCT row_id FROM sends"):
            prefix, _, number = str(row_id).partition("-")
            if number.isdigit() and len(prefix) == 1:
                seen[prefix] = max(seen.get(prefix, 0), int(number))
        return seen

    def remember_ids(self, highest: Mapping[str, int]) -> None:
        """Keep the highest ID numbers a read saw (the sends' own IDs are counted by `ids_seen` anyway)."""
        kept: dict[str, int] = json.loads(self.get_value(IDS_KEY) or "{}")
        self.set_value(IDS_KEY, json.dumps({p: max(n, kept.get(p, 0)) for p, n in {**kept, **highest}.items()},
                                           sort_keys=True))

    def is_empty(self) -> bool:
        """True for a new (or lost and recreated) state dir: no send recorded at all."""
        return self.db.execute("SELECT 1 FROM sends LIMIT 1").fetchone() is None

    def rebuild(self, sent: Sequence[tuple[SendKey, str, str, str, datetime]]) -> int:
        """Record sends the Log tab shows (key, template, address or "", Message-ID, when) as delivered
        and written back, so a lost state dir re-sends nothing; returns how many were new."""
        added = 0
        with self._tx():
            for key, template, address, message_id, when in sent:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO sends (job,row_id,step,state,attempt,template,to_hash,tab,match,message_id,"
                    "result,claimed_at,settled_at,writeback,log_row,written_back,logged) "
                    "VALUES (?,?,?,'sent',1,?,?,'',NULL,?,?,?,?,'{}','[]',1,1)",
                    (key.job, key.row_id, key.step, template, address_hash(address) if address else "", message_id,
                     REBUILT_FROM_LOG, _utc(when), when.isoformat()))
                if cur.rowcount:
                    added += 1
                    self.db.execute("INSERT INTO deliveries (at, job) VALUES (?, ?)", (_utc(when), key.job))
        return added

    # -- outreach memory, job health ---------------------------------------------------------------
    def seen_stages(self) -> dict[str, str]:
        return {r["partner_id"]: r["stage"] for r in self.db.execute("SELECT * FROM seen_stages")}

    def remember_stages(self, stages: Mapping[str, str]) -> None:
        with self._tx():
            self.db.executemany("INSERT OR REPLACE INTO seen_stages VALUES (?, ?)", list(stages.items()))

    def start_run(self, job: str, now: datetime) -> int:
        with self._tx():
            cur = self.db.execute("INSERT INTO runs (job, started, result) VALUES (?, ?, 'running')",
                                  (job, now.isoformat()))
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, now: datetime, result: str, sent: int, summary: str) -> None:
        with self._tx():
            self.db.execute("UPDATE runs SET finished=?, result=?, sent=?, summary=? WHERE id=?",
                            (now.isoformat(), result, sent, summary[:500], run_id))

    def last_runs(self) -> dict[str, RunRecord]:
        rows = self.db.execute(
            "SELECT * FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY job) ORDER BY job").fetchall()
        return {r["job"]: RunRecord(r["job"], datetime.fromisoformat(r["started"]),
                                    datetime.fromisoformat(r["finished"]) if r["finished"] else None,
                                    r["result"] or "", r["sent"], r["summary"] or "") for r in rows}

    def get_value(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return row["value"] if row else None

    def set_value(self, key: str, value: str) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    # -- what the mailbox told us --------------------------------------------------------------------
    def message_keys(self) -> dict[str, SendKey]:
        """Message-ID of every email sent -> its ledger key: how a reply finds what it answers."""
        return {r["message_id"]: SendKey(r["job"], r["row_id"], r["step"])
                for r in self.db.execute("SELECT job, row_id, step, message_id FROM sends WHERE message_id != ''")}

    def record_replies(self, replies: Mapping[str, date]) -> None:
        with self._tx():
            self.db.executemany("INSERT OR IGNORE INTO replies VALUES (?, ?)",
                                [(pid, day.isoformat()) for pid, day in replies.items()])

    def replied(self) -> dict[str, date]:
        return {r["partner_id"]: date.fromisoformat(r["replied_on"]) for r in self.db.execute("SELECT * FROM replies")}

    def record_bounces(self, bounces: Mapping[str, date]) -> None:
        with self._tx():
            self.db.executemany("INSERT OR IGNORE INTO bounces VALUES (?, ?)",
                                [(address_hash(a), day.isoformat()) for a, day in bounces.items()])

    def bounced(self, address: str) -> date | None:
        row = self.db.execute("SELECT bounced_on FROM bounces WHERE to_hash=?", (address_hash(address),)).fetchone()
        return date.fromisoformat(row["bounced_on"]) if row else None

    def records(self) -> Iterator[SendRecord]:
        for row in self.db.execute("SELECT * FROM sends ORDER BY claimed_at"):
            yield _record(row)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT: one writer at a time across processes."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.db.execute("ROLLBACK" if kind else "COMMIT")


def _utc(moment: datetime) -> str:
    """Times are stored in UTC, so that text order is time order across DST and zones."""
    return moment.astimezone(UTC).isoformat()


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_encode)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    raise TypeError(type(value))


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "$date" in value:
            return date.fromisoformat(value["$date"])
        if "$datetime" in value:
            return datetime.fromisoformat(value["$datetime"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _record(row: sqlite3.Row) -> SendRecord:
    return SendRecord(
        key=SendKey(row["job"], row["row_id"], row["step"]), state=SendState(row["state"]), attempt=row["attempt"],
        template=row["template"], to_hash=row["to_hash"], tab=row["tab"],
        match=tuple(json.loads(row["match"])) if row["match"] else None, message_id=row["message_id"] or "",
        result=row["result"] or "", claimed_at=datetime.fromisoformat(row["claimed_at"]),
        settled_at=datetime.fromisoformat(row["settled_at"]) if row["settled_at"] else None,
        writeback=_decode(json.loads(row["writeback"])) if row["writeback"] else {},
        log_row=_decode(json.loads(row["log_row"])) if row["log_row"] else [],
        written_back=bool(row["written_back"]), logged=bool(row["logged"]), identity=row["identity"] or "",
    )
