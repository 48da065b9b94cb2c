"""What the bench scripts share: a loopback SMTP sink, a free port, a real `run --all` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

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
