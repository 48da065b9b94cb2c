"""The one error family of partnerloop.

Lower layers wrap library errors into these and say *where* (file, tab, row ID,
host:port); the command line prints ``str(error)`` as one line and exits non-zero.
A bad row is never an exception: it becomes that row's Automation status.
"""

from __future__ import annotations


class PartnerloopError(Exception):
    """Something that stops a command; the message is one line a person can act on."""

    exit_code = 2


class ConfigError(PartnerloopError):
    """The configuration file is missing, unreadable or holds a bad value."""


class SheetError(PartnerloopError):
    """The spreadsheet cannot be opened, read or written."""


class SheetLayoutError(SheetError):
    """A tab or column the job needs is missing; `partnerloop init` fixes it."""


class MailError(PartnerloopError):
    """The mail server cannot be reached or refuses the whole session."""


class AlreadyRunning(PartnerloopError):
    """Another run of the same job holds its lock."""


class CellError(ValueError):
    """One cell cannot be read; the message names the column and what to do.

    Not a PartnerloopError: it becomes the row's status and never stops a command.
    """


def where(exc: BaseException) -> str:
    """An unexpected exception's type and innermost place, without its message (which may quote a cell)."""
    import traceback
    from pathlib import Path

    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    place = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{place}"
