"""What the bench scripts share: a loopback SMTP sink, a free port, a workbook of due intros, a real `run --all`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

REPO = Path(__file__).resolve().parent.parent


class Sink:
    """Accepts every message; counts messages, bytes and client connections, and when each arrived.

    `last` keeps the most recent message as received, so a bench can show what one message looked like.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages = 0
        self.bytes = 0
        self.last = b""
        self.arrivals: list[float] = []
        self.peers: set[str] = set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.messages += 1
            self.bytes += len(envelope.original_content or b"")
            self.last = envelope.original_content or b""
            self.arrivals.append(time.perf_counter())
            self.peers.add(str(session.peer))
        return "250 OK"


@contextlib.contextmanager
def running_sink() -> Iterator[tuple[Sink, int]]:
    """A Sink listening on 127.0.0.1 for the block, and its port."""
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_all(config: Path, now: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`partnerloop --config CONFIG run --all --now NOW` as a real process; its result and wall seconds."""
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "automations", "--config", str(config), "run", "--all", "--now", now],
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return run, time.perf_counter() - started


def prospect_rows(n: int) -> list[dict[str, str]]:
    """N Partners rows at stage Prospect with nobody introducing them: N outreach intros due."""
    return [{"Partner ID": f"P-{i:05d}", "Business": f"Studio {i}", "Contact name": f"Coach {i}",
             "Email": f"coach{i}@studio{i}.example", "Stage": "Prospect", "Why partner": "strength work after rehab"}
            for i in range(1, n + 1)]


def outreach_workbook(folder: Path, port: int, partners: list[dict[str, str]]) -> Path:
    """A config and xlsx workbook in *folder* holding *partners*, SMTP to 127.0.0.1:*port*; returns the config.

    The send window is always open and `daily_limit` above the row count, so every due email goes out.
    """
    sys.path.insert(0, str(REPO))
    from automations.check import init_sheet
    from automations.config import settings_from_dict
    from automations.sheets import open_backend
    from tests.support.configs import write_config

    folder.mkdir(parents=True, exist_ok=True)
    # No owner_email: the owner's digest would be one more message than the emails measured.
    config = write_config(folder / "settings.toml", clinic={"owner_email": ""},
                          sheet={"backend": "xlsx", "path": "bench.xlsx"},
                          email={"transport": "smtp", "host": "127.0.0.1", "port": port, "security": "none",
                                 "daily_limit": len(partners) + 10, "send_window": "Mon-Sun 00:00-23:59"},
                          state={"dir": "state"})
    settings = settings_from_dict({"sheet": {"backend": "xlsx", "path": "bench.xlsx"}}, config)
    init_sheet(open_backend(settings), settings, {"partners": partners})
    return config


def per_size_in_children(script: str, description: str, child: Callable[[int], dict[str, Any]],
                         argv: list[str] | None = None) -> list[dict[str, Any]] | None:
    """The `--rows N…` sizes each measured by *child* in a fresh process of *script* (so one size's memory and
    caches never favour the next); their results in order, or None when a child failed (its output printed).
    Run as a child itself (`--child N`), it prints *child*'s result as JSON and returns []."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return []
    results = []
    for n in args.rows:
        run = subprocess.run([sys.executable, script, "--child", str(n)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        if run.returncode != 0:
            print(run.stdout, run.stderr, file=sys.stderr)
            return None
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    return results

