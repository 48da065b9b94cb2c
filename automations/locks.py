"""One run of a job at a time, across processes (cron, the scheduler, a person at a terminal).

An exclusive, non-blocking `flock` on `<state dir>/locks/<job>.lock`; the kernel releases it when
the process dies, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from automations.errors import AlreadyRunning


class JobLock:
    def __init__(self, state_dir: Path, job: str) -> None:
        self.path = Path(state_dir) / "locks" / f"{job}.lock"
        self.job = job
        self.handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held open for as long as the lock is held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise AlreadyRunning(f"{self.job} is already running ({holder}); this run sent nothing") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now().astimezone():%Y-%m-%d %H:%M:%S}")
        handle.flush()
        self.handle = handle

    @staticmethod
    def running(state_dir: Path, job: str) -> bool:
        """True while another process holds *job*'s lock (a run of it is going on now)."""
        path = Path(state_dir) / "locks" / f"{job}.lock"
        if not path.exists():
            return False
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, *_: Any) -> None:
        self.release()
