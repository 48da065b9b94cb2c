"""Time as partnerloop sees it: always timezone-aware, in the clinic's zone, and passed in."""

from __future__ import annotations

from datetime import datetime
from typing import Callable
from zoneinfo import ZoneInfo

from automations.config import SendWindow

Clock = Callable[[], datetime]


def parse_now(text: str, tz: ZoneInfo, window: SendWindow) -> datetime:
    """`--now` as YYYY-MM-DDTHH:MM in clinic time, or a bare YYYY-MM-DD meaning when that day's send window opens."""
    try:
        if "T" in text or " " in text.strip():
            return datetime.fromisoformat(text.strip()).replace(tzinfo=tz)
        day = datetime.fromisoformat(text.strip()).date()
    except ValueError:
        raise ValueError(f"--now {text!r}: expected YYYY-MM-DDTHH:MM or YYYY-MM-DD (clinic time)") from None
    return datetime.combine(day, window.start, tz)
