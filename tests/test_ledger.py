"""The send ledger on its own: one email's claim and settle through each window a run can stop in.

Every test drives `automations.mail.ledger.Ledger` directly over a real SQLite file in tmp_path;
the last one kills a real process between claim and settle. States are compared as plain strings.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automations.core import SendState
from automations.mail.ledger import Claim, Ledger, SendKey

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=TZ)
KEY = SendKey("outreach", "P-0001", "intro")
ADDRESS = "coach@studio.example"
WRITEBACK = {"Stage": "Contacted", "Automation status": "Intro sent 2026-11-27"}
LOG_ROW = ["2026-11-27 09:00", "outreach", "P-0001", "outreach_intro", "<1.intro@riverside-pt.example>", "sent"]


def claim(ledger: Ledger, key: SendKey = KEY, to_address: str = ADDRESS, now: datetime = NOW,
          daily_limit: int | None = None) -> Claim:
    """Claim *key* as the executor does before handing the message over."""
    return ledger.claim(key, template="outreach_intro", to_address=to_address, tab="Partners", match=None,
                        message_id=f"<{key.row_id}.{key.step}@riverside-pt.example>", now=now,
                        writeback=WRITEBACK, log_row=LOG_ROW, daily_limit=daily_limit)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite3"


@pytest.fixture
def ledger(path: Path) -> Ledger:
    return Ledger(path)


def state(ledger: Ledger, key: SendKey = KEY) -> Any:
    record = ledger.get(key)
    assert record is not None
    return record.state


# -- claimed, never settled: the run stopped between claim and hand-over, or hand-over and settle -------------
def test_a_claim_is_recorded_as_sending_before_anything_is_handed_over(ledger: Ledger) -> None:
    assert ledger.get(KEY) is None
    assert claim(ledger) == Claim.CLAIMED
    record = ledger.get(KEY)
    assert record is not None
    assert (record.state, record.attempt, record.template, record.tab) == ("sending", 1, "outreach_intro", "Partners")
    assert record.writeback == WRITEBACK and record.log_row == LOG_ROW
    assert record.claimed_at == NOW and record.settled_at is None


def test_a_claim_left_sending_is_never_claimed_again(ledger: Ledger) -> None:
    claim(ledger)
    assert not claim(ledger)
    assert not claim(ledger, now=NOW + timedelta(days=30))
    assert not claim(Ledger(ledger.path))  # nor by the next run
    assert state(ledger) == "sending"


def test_a_claim_left_sending_is_listed_as_unknown(ledger: Ledger) -> None:
    claim(ledger)
    claim(ledger, SendKey("outreach", "P-0002", "intro"), "other@studio.example", NOW + timedelta(minutes=1))
    ledger.settle(SendKey("outreach", "P-0002", "intro"), "sent", "250 OK", NOW + timedelta(minutes=1))
    assert [r.key for r in ledger.unknown()] == [KEY]


def test_a_claim_left_sending_counts_toward_the_daily_limit(ledger: Ledger) -> None:
    assert ledger.sent_since(NOW - timedelta(hours=24)) == 0
    claim(ledger)
    assert ledger.sent_since(NOW - timedelta(hours=24)) == 1
    assert ledger.sent_in_last_day(NOW + timedelta(hours=1)) == 1
    assert ledger.sent_in_last_day(NOW + timedelta(hours=25)) == 0  # a rolling 24 hours


def test_a_claim_left_sending_has_nothing_to_write_back(ledger: Ledger) -> None:
    claim(ledger)
    assert ledger.pending_writebacks() == []


# -- settled sent ------------------------------------------------------------------------------------
def test_a_sent_email_is_never_claimed_again(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle(KEY, "sent", "250 OK queued", NOW + timedelta(seconds=2))
    assert state(ledger) == "sent"
    assert not claim(ledger, now=NOW + timedelta(days=7))
    assert not claim(ledger, to_address="new@studio.example", now=NOW + timedelta(days=7))
    assert ledger.unknown() == []


def test_a_sent_email_counts_once_in_deliveries(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle(KEY, "sent", "250 OK queued", NOW + timedelta(seconds=2))
    assert ledger.sent_since(NOW - timedelta(hours=24)) == 1  # the delivery, no longer the open claim
    assert ledger.sent_since(NOW + timedelta(seconds=2)) == 0  # counted from when it was delivered


def test_a_sent_email_waits_for_both_its_row_write_and_its_log_line(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle(KEY, "sent", "250 OK queued", NOW + timedelta(seconds=2))
    [pending] = ledger.pending_writebacks()
    assert (pending.key, pending.writeback, pending.log_row) == (KEY, WRITEBACK, LOG_ROW)
    assert (pending.written_back, pending.logged) == (False, False)
    ledger.mark_written([KEY])
    [pending] = ledger.pending_writebacks()
    assert (pending.written_back, pending.logged) == (True, False)
    ledger.mark_logged([KEY])
    assert ledger.pending_writebacks() == []
    assert state(ledger) == "sent"


def test_the_log_line_is_kept_when_the_row_was_written_first_or_last(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle(KEY, "sent", "250 OK queued", NOW)
    ledger.mark_logged([KEY])
    assert [r.key for r in ledger.pending_writebacks()] == [KEY]
    ledger.mark_written([KEY])
    assert ledger.pending_writebacks() == []


# -- settled refused ---------------------------------------------------------------------------------
def refuse(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle(KEY, "refused", "550 5.1.1 mailbox unavailable", NOW + timedelta(seconds=2),
                  writeback={"Automation status": "Not sent: the server refused the address"},
                  log_result="refused")


def test_a_refused_address_is_not_claimed_again(ledger: Ledger) -> None:
    refuse(ledger)
    assert state(ledger) == "refused"
    assert not claim(ledger, now=NOW + timedelta(days=1))
    assert not claim(ledger, to_address="  Coach@Studio.example ", now=NOW + timedelta(days=1))  # same address


def test_a_refused_email_is_claimed_again_once_the_address_changes(ledger: Ledger) -> None:
    refuse(ledger)
    assert claim(ledger, to_address="coach@new-studio.example", now=NOW + timedelta(days=1)) == Claim.CLAIMED
    record = ledger.get(KEY)
    assert record is not None and (record.state, record.attempt) == ("sending", 2)


def test_a_refusal_writes_back_its_own_status_and_log_result_and_is_no_delivery(ledger: Ledger) -> None:
    refuse(ledger)
    [pending] = ledger.pending_writebacks()
    assert pending.writeback == {"Automation status": "Not sent: the server refused the address"}
    assert pending.log_row == [*LOG_ROW[:-1], "refused"]
    assert pending.result == "550 5.1.1 mailbox unavailable"
    assert ledger.sent_since(NOW - timedelta(hours=24)) == 0


# -- settled failed ----------------------------------------------------------------------------------
def test_a_failed_email_is_claimed_again_on_the_next_run(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle(KEY, "failed", "421 try again later", NOW + timedelta(seconds=2))
    assert state(ledger) == "failed"
    assert ledger.pending_writebacks() == [] and ledger.unknown() == []
    assert ledger.sent_since(NOW - timedelta(hours=24)) == 0
    assert claim(ledger, now=NOW + timedelta(hours=1)) == Claim.CLAIMED
    record = ledger.get(KEY)
    assert record is not None and (record.state, record.attempt) == ("sending", 2)


# -- staff resolve an unknown outcome --------------------------------------------------------------------
def test_resolving_as_sent_settles_the_claim_and_queues_its_write_back(ledger: Ledger) -> None:
    claim(ledger)
    [resolved] = ledger.resolve("P-0001", "outreach", sent=True, now=NOW + timedelta(days=1))
    assert resolved.key == KEY
    assert state(ledger) == "sent" and ledger.unknown() == []
    assert [r.key for r in ledger.pending_writebacks()] == [KEY]
    assert ledger.sent_since(NOW - timedelta(seconds=1)) == 1  # counted when it was claimed
    assert not claim(ledger, now=NOW + timedelta(days=2))


def test_resolving_as_sent_leaves_settled_emails_alone(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle(KEY, "failed", "421 try again later", NOW)
    assert ledger.resolve("P-0001", None, sent=True, now=NOW + timedelta(days=1)) == []
    assert state(ledger) == "failed"


def test_resolving_for_a_resend_lets_the_next_run_claim_it_again(ledger: Ledger) -> None:
    claim(ledger)
    [resolved] = ledger.resolve("P-0001", None, sent=False, now=NOW + timedelta(days=1))
    assert resolved.key == KEY
    assert state(ledger) == "resend"
    assert ledger.unknown() == [] and ledger.pending_writebacks() == []
    assert claim(ledger, now=NOW + timedelta(days=1, minutes=1)) == Claim.CLAIMED
    record = ledger.get(KEY)
    assert record is not None and (record.state, record.attempt) == ("sending", 2)


def test_a_resend_can_be_asked_for_an_email_already_sent(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle(KEY, "sent", "250 OK", NOW)
    ledger.resolve("P-0001", "outreach", sent=False, now=NOW + timedelta(days=1))
    assert state(ledger) == "resend"
    assert claim(ledger, now=NOW + timedelta(days=1)) == Claim.CLAIMED


def test_resolve_touches_only_the_named_row_and_job(ledger: Ledger) -> None:
    other_row, other_job = SendKey("outreach", "P-0002", "intro"), SendKey("events", "P-0001", "reminder")
    for key in (KEY, other_row, other_job):
        claim(ledger, key)
    ledger.resolve("P-0001", "outreach", sent=True, now=NOW)
    assert [state(ledger, k) for k in (KEY, other_row, other_job)] == ["sent", "sending", "sending"]


# -- two processes, one file ---------------------------------------------------------------------------
def test_two_ledgers_on_one_file_see_each_others_claims(path: Path) -> None:
    first, second = Ledger(path), Ledger(path)
    assert claim(first) == Claim.CLAIMED
    assert not claim(second)
    first.settle(KEY, "sent", "250 OK", NOW)
    assert [r.key for r in second.pending_writebacks()] == [KEY]


def test_two_ledgers_claiming_the_same_keys_at_once_each_key_is_won_exactly_once(path: Path) -> None:
    Ledger(path).close()  # create the schema first, as the first run would
    keys = [SendKey("outreach", f"P-{i:04d}", "intro") for i in range(40)]
    ready = threading.Barrier(2)
    wins: dict[str, list[SendKey]] = {"a": [], "b": []}

    def contender(name: str, order: list[SendKey]) -> None:
        ledger = Ledger(path)  # its own connection, as another process would have
        ready.wait()
        wins[name] = [k for k in order if claim(ledger, k)]
        ledger.close()

    threads = [threading.Thread(target=contender, args=("a", keys)),
               threading.Thread(target=contender, args=("b", keys[::-1]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(wins["a"] + wins["b"], key=str) == sorted(keys, key=str)  # every key won, none twice
    assert len(Ledger(path).unknown()) == len(keys)


# -- a real crash ------------------------------------------------------------------------------------
CLAIM_THEN_HANG = textwrap.dedent("""
    import sys, time
    from datetime import datetime
    from pathlib import Path
    from automations.mail.ledger import Ledger, SendKey

    ledger = Ledger(Path(sys.argv[1]))
    ok = ledger.claim(SendKey("outreach", "P-0001", "intro"), template="outreach_intro",
                      to_address="coach@studio.example", tab="Partners", match=None,
                      message_id="<P-0001.intro@riverside-pt.example>",
                      now=datetime.fromisoformat(sys.argv[2]), writeback={}, log_row=[])
    print("claimed" if ok else "refused", flush=True)
    time.sleep(600)  # handing over: killed here, settle never runs
""")


def test_a_process_killed_between_claim_and_settle_leaves_exactly_one_unknown_send(path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", CLAIM_THEN_HANG, str(path), NOW.isoformat()],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "claimed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    fresh = Ledger(path)
    [unknown] = fresh.unknown()
    assert (unknown.key, unknown.state, unknown.claimed_at) == (KEY, "sending", NOW)
    assert not claim(fresh, now=NOW + timedelta(days=1))


def test_recipient_addresses_are_stored_only_as_hashes(ledger: Ledger, path: Path) -> None:
    claim(ledger)
    ledger.settle(KEY, "refused", "550 no such user", NOW)
    ledger.close()
    stored = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())
    assert ADDRESS.encode() not in stored and b"coach@" not in stored


def test_a_refused_claim_says_why() -> None:
    assert [bool(c) for c in Claim] == [True, False, False, False]


def test_the_daily_limit_is_decided_inside_the_claim(ledger: Ledger, path: Path) -> None:
    keys = [SendKey("outreach", f"P-{i:04d}", "intro") for i in range(1, 5)]
    assert claim(ledger, keys[0], daily_limit=2) == Claim.CLAIMED  # an open claim counts: it may be delivered
    ledger.settle(keys[0], SendState.SENT, "250 OK", NOW)
    other = Ledger(path)  # another run, another job, at the same time
    assert claim(other, keys[1], daily_limit=2) == Claim.CLAIMED
    assert claim(ledger, keys[2], daily_limit=2) == Claim.LIMIT
    assert ledger.get(keys[2]) is None  # nothing recorded: it goes out on a later run
    assert claim(ledger, keys[2], now=NOW + timedelta(hours=24, seconds=1), daily_limit=2) == Claim.CLAIMED
    assert claim(ledger, keys[0], daily_limit=99) == Claim.TAKEN
