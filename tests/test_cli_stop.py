"""`partnerloop run` stopped by Ctrl-C or SIGTERM, and a run that cannot sign in: real processes, real SMTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from automations.config import Settings
from automations.mail.ledger import Ledger
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import REPO, make_settings, seed_sheet
from tests.support.configs import config_for
from tests.support.smtp_server import SmtpServer

N = 30


def seed_prospects(settings: Settings, n: int) -> None:
    seed_sheet(settings, [{"Partner ID": f"P-{i:04d}", "Business": f"Studio {i}", "Contact name": f"Coach {i}",
                           "Email": f"coach{i}@studio{i}.example", "Stage": "Prospect"} for i in range(1, n + 1)])


def smtp_config(tmp_path: Path, settings: Settings, smtp: SmtpServer, **email: object) -> Path:
    return config_for(tmp_path / "run.toml", settings,
                      email={"transport": "smtp", "host": smtp.host, "port": smtp.port, "security": "none",
                             "timeout": 10, "daily_limit": 1000, "send_window": "Mon-Sun 00:00-23:59", **email})


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def partnerloop(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "automations", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_run_finishes_the_email_in_hand_and_writes_back_everything_sent(
        tmp_path: Path, smtp: SmtpServer, sig: signal.Signals, status: int) -> None:
    settings = make_settings(tmp_path)
    seed_prospects(settings, N)
    smtp.delay(0.15)  # a slow mail server, so the signal lands mid-run
    run = partnerloop(smtp_config(tmp_path, settings, smtp), "run", "outreach")
    wait_for(lambda: len(smtp.messages) >= 3)
    run.send_signal(sig)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == status, output
    assert f"run: stopped by {sig.name}; what was not sent is held for the next run" in output
    delivered = {r for m in smtp.messages for r in m.recipients}
    assert 3 <= len(delivered) < N

    book = read_book(open_backend(settings), settings)
    sent = {p.email for p in book.partners if p.status.startswith("Intro sent")}
    held = [p for p in book.partners if p.status.startswith("Intro held: partnerloop was stopping")]
    assert sent == delivered and len(held) == N - len(delivered)
    log_tab = open_backend(settings).read(["Log"])["Log"]
    assert log_tab is not None and {log_tab.get(r, "To") for r in log_tab.rows} == delivered
    assert Ledger.in_state_dir(settings.state_dir).unknown() == []


def test_a_missing_password_claims_nothing_and_a_fixed_config_sends_everything(
        tmp_path: Path) -> None:
    with SmtpServer(auth=("partners", "s3cret")) as smtp:
        settings = make_settings(tmp_path)
        seed_prospects(settings, 3)
        config = smtp_config(tmp_path, settings, smtp, username="partners", password_env="PL_TEST_SMTP_PASSWORD")
        env = {k: v for k, v in os.environ.items() if k != "PL_TEST_SMTP_PASSWORD"}
        for attempt_env in (env, {**env, "PL_TEST_SMTP_PASSWORD": "wrong"}):
            run = subprocess.run([sys.executable, "-m", "automations", "--config", str(config), "run", "outreach"],
                                 capture_output=True, text=True, cwd=REPO, env={**attempt_env, "PYTHONPATH": str(REPO)})
            assert run.returncode == 2, run.stdout + run.stderr
            assert Ledger.in_state_dir(settings.state_dir).unknown() == []
            assert not smtp.messages
        status = subprocess.run([sys.executable, "-m", "automations", "--config", str(config), "status"],
                                capture_output=True, text=True, cwd=REPO, env={**env, "PYTHONPATH": str(REPO)})
        assert "No unknown-outcome emails to resolve." in status.stdout
        fixed = subprocess.run([sys.executable, "-m", "automations", "--config", str(config), "run", "outreach"],
                               capture_output=True, text=True, cwd=REPO,
                               env={**env, "PL_TEST_SMTP_PASSWORD": "s3cret", "PYTHONPATH": str(REPO)})
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert sorted(r for m in smtp.messages for r in m.recipients) == [f"coach{i}@studio{i}.example" for i in (1, 2, 3)]
