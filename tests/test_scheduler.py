"""`partnerloop schedule` and job locking, as real processes against the Sheets emulator and SMTP."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import schedule

from automations.config import Settings
from automations.errors import ConfigError, PartnerloopError
from automations.locks import JobLock
from automations.model import read_book
from automations.scheduler import Daemon, add_line
from automations.sheets import open_backend
from tests.conftest import REPO, google_settings, make_settings, seed_sheet
from tests.support.configs import config_for
from tests.support.smtp_server import SmtpServer, email_section


@pytest.mark.parametrize("line", ["weekdays at 09:30", "every 30 minutes", "every hour", "every day at 08:45",
                                  "monday at 08:00", "Every Monday at 8:00", "every 5 seconds", "daily at 17:00"])
def test_schedule_lines_in_words(line: str) -> None:
    scheduler = schedule.Scheduler()
    add_line(scheduler, "outreach", line, "America/Chicago", lambda: None)
    assert scheduler.get_jobs("outreach")


@pytest.mark.parametrize("line", ["at 9", "weekdays at 25:00", "every fortnight", "sometimes", "every 0 minutes"])
def test_a_bad_schedule_line_is_refused_naming_it_and_the_forms(tmp_path: Path, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, schedule={"outreach": line})
    message = str(caught.value)
    assert f"[schedule] outreach = {line!r}: expected one of" in message and '"weekdays at 09:30"' in message


def test_one_failing_job_never_stops_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(tmp_path, schedule={"outreach": "every hour", "discharge": "every hour",
                                                 "events": "every hour"})
    ran: list[str] = []

    class Report:
        def summary(self) -> list[str]:
            return ["sent 0 email(s)"]

    def run_job(job: str, stopping: Callable[[], bool]) -> Any:
        ran.append(job)
        if job == "discharge":
            raise PartnerloopError("cannot reach the spreadsheet")
        if job == "events":
            raise RuntimeError("a bug")
        return Report()

    daemon = Daemon(settings, run_job)
    daemon.scheduler.run_all()
    assert sorted(ran) == ["discharge", "events", "outreach"]
    assert "discharge: failed: cannot reach the spreadsheet" in caplog.text
    assert "events: failed with an unexpected error: RuntimeError" in caplog.text
    assert "outreach: sent 0 email(s)" in caplog.text


# -- real processes -----------------------------------------------------------------------------------

N = 30


def daemon_config(tmp_path: Path, settings: Settings, smtp: SmtpServer, schedule_line: str) -> Path:
    return config_for(tmp_path / "daemon.toml", settings, schedule={"outreach": schedule_line},
                      email=email_section(smtp, timeout=10, daily_limit=1000, send_window="Mon-Sun 00:00-23:59"))


def seed_prospects(settings: Settings, n: int) -> None:
    rows = [{"Partner ID": f"P-{i:04d}", "Business": f"Studio {i}", "Contact name": f"Coach {i}",
             "Email": f"coach{i}@studio{i}.example", "Stage": "Prospect"} for i in range(1, n + 1)]
    seed_sheet(settings, partners=rows)


def start(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "automations", "--config", str(config), *args],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=REPO)


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_sigterm_mid_run_then_restart_sends_each_email_once_and_loses_no_write_back(
    tmp_path: Path, emulator: Any, smtp: SmtpServer
) -> None:
    settings = google_settings(tmp_path, emulator)
    seed_prospects(settings, N)
    smtp.delay(0.15)  # a slow mail server, so SIGTERM lands mid-run
    config = daemon_config(tmp_path, settings, smtp, "every 1 second")
    log = tmp_path / "daemon.log"

    first = start(config, "schedule", log=log)
    wait_for(lambda: len(smtp.messages) >= 4)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0, log.read_text()
    delivered = len(smtp.messages)
    assert 4 <= delivered < N

    book = read_book(open_backend(settings), settings)
    sent = [p for p in book.partners if p.status.startswith("Intro sent")]
    held = [p for p in book.partners if p.status.startswith("Intro held: partnerloop was stopping")]
    assert len(sent) == delivered and len(held) == N - delivered  # every outcome written back
    log_tab = open_backend(settings).read(["Log"])["Log"]
    assert log_tab is not None and len(log_tab.rows) == delivered

    second = start(config, "schedule", log=log)
    wait_for(lambda: len(smtp.messages) >= N)
    time.sleep(1.5)  # another tick or two: nothing more may go out
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0, log.read_text()

    addresses = [r for m in smtp.messages for r in m.recipients]
    assert len(addresses) == N and len(set(addresses)) == N
    book = read_book(open_backend(settings), settings)
    assert all(p.status.startswith("Intro sent") and p.stage == "Contacted" for p in book.partners)
    log_tab = open_backend(settings).read(["Log"])["Log"]
    assert log_tab is not None and len(log_tab.rows) == N
    assert "stopping: the running job finishes its write-back" in log.read_text()
    for p in range(1, N + 1):  # no patient or partner address in the daemon's log lines
        assert f"coach{p}@" not in log.read_text()


def test_a_second_run_of_a_job_already_running_exits_2_and_sends_nothing(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = make_settings(tmp_path)
    seed_prospects(settings, 2)
    config = config_for(tmp_path / "run.toml", settings,
                        email={"transport": "smtp", "host": smtp.host, "port": smtp.port, "security": "none",
                               "send_window": "Mon-Sun 00:00-23:59"})
    with JobLock(settings.state_dir, "outreach"):
        result = subprocess.run([sys.executable, "-m", "automations", "--config", str(config), "run", "outreach"],
                                capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("partnerloop run: outreach is already running (pid ")
    assert not smtp.messages
