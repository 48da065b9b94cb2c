"""`partnerloop schedule`: run the jobs on the [schedule] lines until stopped (library `schedule`).

Lines are words in the clinic's time zone: "weekdays at 09:30", "every 30 minutes", "every hour",
"every day at 08:45", "monday at 08:00". One job's failure is logged and recorded in job health,
and the others go on; the job locks keep two runs of one job apart, also against a
`partnerloop run` started by cron. SIGTERM lets the running job hold its remaining emails, write
back, and then the daemon exits.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from functools import partial
from typing import Any, Callable

import schedule

from automations.config import Settings, parse_schedule_line
from automations.errors import AlreadyRunning, ConfigError, PartnerloopError, where

log = logging.getLogger("partnerloop.schedule")


def add_line(scheduler: schedule.Scheduler, job: str, line: str, timezone: str, action: Callable[[], Any],
             source: str = "config") -> None:
    """Register *action* for one [schedule] line; ConfigError naming the line and the accepted forms."""
    parsed = parse_schedule_line(job, line, source)
    if parsed.unit:
        getattr(scheduler.every(parsed.count), parsed.unit).do(action).tag(job)
        return
    for name in parsed.days:
        getattr(scheduler.every(), name).at(parsed.at, timezone).do(action).tag(job)


class Daemon:
    """The scheduling loop; `run_once` is what a scheduled tick does for one job."""

    def __init__(self, settings: Settings, run_job: Callable[[str, Callable[[], bool]], Any],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.run_job = run_job
        self.sleep = sleep
        self.stopping = threading.Event()
        self.scheduler = schedule.Scheduler()
        if not settings.schedule:
            raise ConfigError(f"{settings.source}: [schedule] has no lines; add e.g. outreach = \"weekdays at 09:30\"")
        for job, line in settings.schedule.items():
            add_line(self.scheduler, job, line, settings.clinic.timezone, partial(self.run_once, job),
                     str(settings.source))

    def run_once(self, job: str) -> None:
        if self.stopping.is_set():
            return
        try:
            report = self.run_job(job, self.stopping.is_set)
        except AlreadyRunning as exc:
            log.info("%s: skipped, %s", job, exc)
        except PartnerloopError as exc:
            log.error("%s: failed: %s", job, exc)
        except Exception as exc:  # a bug in one job never stops the others; job health records it
            # Where, not what: an exception's text may quote a cell, and logs carry no patient data.
            log.error("%s: failed with an unexpected error: %s", job, where(exc))
        else:
            for line in report.summary():
                log.info("%s: %s", job, line)

    def next_runs(self) -> list[str]:
        lines = []
        for job in self.settings.schedule:
            runs = [j.next_run for j in self.scheduler.get_jobs(job) if j.next_run]
            if runs:
                lines.append(f"{job} ({self.settings.schedule[job]}): next {min(runs):%a %Y-%m-%d %H:%M}")
        return lines

    def stop(self, *_: Any) -> None:
        if not self.stopping.is_set():
            log.info("stopping: the running job finishes its write-back, then partnerloop exits")
        self.stopping.set()

    def forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for line in self.next_runs():
            log.info("scheduled %s", line)
        while not self.stopping.is_set():
            self.scheduler.run_pending()
            idle = self.scheduler.idle_seconds
            self.stopping.wait(timeout=min(max(idle if idle is not None else 1.0, 0.05), 1.0))
        log.info("stopped")
