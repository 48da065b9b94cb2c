"""Reading typed values out of spreadsheet cells, with messages staff can act on.

Every parser takes the raw cell value (str, int, float, bool, date, datetime or None) and
returns a clean value, or raises CellError saying what is wrong and what to write instead.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from dateutil import parser as dateparser
from email_validator import EmailNotValidError, validate_email

from automations.errors import CellError

SERIAL_EPOCH = date(1899, 12, 30)  # day 0 of Google Sheets and Excel (1900 system) serial dates


def normalise_header(text: Any) -> str:
    """Header text as matched: case, spaces and a trailing `*` ignored ("Partner ID *" -> "partnerid")."""
    return _normalised(str(text or ""))


@functools.lru_cache(maxsize=4096)
def _normalised(text: str) -> str:
    return re.sub(r"\s+", "", text).rstrip("*").lower()  # asked for every cell read: computed once per text


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def text(value: Any) -> str:
    """A cell as one line of text (numbers without a trailing .0)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat(" ", "minutes")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def one_line(value: Any) -> str:
    """Cell text with line breaks folded to spaces: safe for headers and one-line statuses."""
    return re.sub(r"[\r\n\t\v\f\x85\u2028\u2029]+", " ", text(value)).strip()


DATE_ORDERS = {"MDY": (False, False), "DMY": (True, False), "YMD": (False, True)}  # dayfirst, yearfirst


def parse_date(value: Any, column: str, order: str = "MDY") -> date | None:
    """A date from a real date cell, a serial number, or typed text (11/27/2026, 2026-11-27, Nov 27 2026).

    *order* (`[sheet] date_order`: MDY, DMY or YMD) says how text like 03/12/2026 is read.
    """
    if is_blank(value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 1 <= value < 2958466:  # serial numbers up to 9999-12-31
            return SERIAL_EPOCH + timedelta(days=int(value))
        raise CellError(f"{column} {value!r} is not a date; write it like 2026-11-27")
    raw = str(value).strip()
    if raw.startswith("="):
        raise CellError(f"{column} holds a formula; type the date itself, like 2026-11-27")
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return parse_date(float(raw), column)
    dayfirst, yearfirst = DATE_ORDERS[order]
    try:
        # The clinic's order for 03/12/2026; ISO (2026-03-12) always reads year, month, day.
        parsed = dateparser.parse(raw, dayfirst=dayfirst and not re.match(r"\d{4}", raw),
                                  yearfirst=yearfirst or bool(re.match(r"\d{4}", raw)), fuzzy=False,
                                  default=datetime(2000, 1, 1))
    except (ValueError, OverflowError):
        raise CellError(f"{column} {raw[:40]!r} is not a date; write it like 2026-11-27") from None
    if not re.search(r"\d{4}", raw) and not re.search(r"\d{1,2}/\d{1,2}/\d{2}$", raw):
        raise CellError(f"{column} {raw[:40]!r} has no year; write it like 2026-11-27")
    return parsed.date()


MOMENT_EXAMPLE = "2026-12-03 10:00 or 12/3/2026 10:00 AM"


def parse_moment(value: Any, column: str, order: str = "MDY") -> date | datetime | None:
    """A date and time of day (naive: the clinic's wall clock), or a date alone when the cell gives no time.

    Reads a real date-time cell, a serial number with a fraction, or typed text (2026-12-03 10:00,
    12/3/2026 10:00 AM, Dec 3 2026 2pm) in the `[sheet] date_order`. Midnight counts as no time.
    """
    if is_blank(value):
        return None
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=None, second=0, microsecond=0)
        return moment.date() if moment.time() == time() else moment
    if isinstance(value, date):
        return value
    if isinstance(value, time):
        raise CellError(f"{column} {text(value)!r} has no date; write the date and time, like {MOMENT_EXAMPLE}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 1 <= value < 2958466:
            return parse_moment(_from_serial(float(value)), column, order)
        raise CellError(f"{column} {value!r} is not a date; write it like {MOMENT_EXAMPLE}")
    raw = str(value).strip()
    if raw.startswith("="):
        raise CellError(f"{column} holds a formula; type the date and time itself, like {MOMENT_EXAMPLE}")
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return parse_moment(float(raw), column, order)
    dayfirst, yearfirst = DATE_ORDERS[order]
    iso = bool(re.match(r"\d{4}", raw))
    try:
        parsed = dateparser.parse(raw, dayfirst=dayfirst and not iso, yearfirst=yearfirst or iso, fuzzy=False,
                                  default=datetime(2000, 1, 1))
    except (ValueError, OverflowError):
        raise CellError(f"{column} {raw[:40]!r} is not a date and time; write it like {MOMENT_EXAMPLE}") from None
    if not re.search(r"\d{4}", raw) and not re.search(r"\d{1,2}/\d{1,2}/\d{2}\b", raw):
        raise CellError(f"{column} {raw[:40]!r} has no year; write it like {MOMENT_EXAMPLE}")
    return parse_moment(parsed, column, order)


def parse_end(value: Any, column: str, order: str = "MDY") -> time | datetime | None:
    """When something ends: a time of day (19:00, 7pm, a time cell) or a date and time; None when blank."""
    if is_blank(value):
        return None
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
        return _from_serial(float(value)).time()  # a time cell read as a fraction of a day
    raw = text(value)
    if isinstance(value, str) and re.fullmatch(r"(?i)\s*\d{1,2}(:\d{2}){0,2}\s*([ap]\.?m\.?)?\s*", raw):
        try:
            return dateparser.parse(raw, default=datetime(2000, 1, 1)).time()
        except (ValueError, OverflowError):
            raise CellError(f"{column} {raw[:40]!r} is not a time; write it like 19:00 or 7:00 PM") from None
    try:
        moment = parse_moment(value, column, order)
    except CellError:
        raise CellError(f"{column} {raw[:40]!r} is not a time; write it like 19:00 or 7:00 PM, "
                        f"or a date and time like {MOMENT_EXAMPLE}") from None
    if not isinstance(moment, datetime):
        raise CellError(f"{column} {raw[:40]!r} has no time; write it like 19:00 or 7:00 PM")
    return moment


def _from_serial(value: float) -> datetime:
    """A spreadsheet serial number (days since 1899-12-30, the fraction the time of day), to the minute."""
    return datetime.combine(SERIAL_EPOCH, time()) + timedelta(minutes=round(value * 24 * 60))


def same_value(current: Any, expected: Any, order: str = "MDY") -> bool:
    """True when a cell still holds what was read, compared as the model reads it: text trimmed, dates as dates."""
    if is_blank(current) or is_blank(expected):
        return is_blank(current) and is_blank(expected)
    if isinstance(current, date) or isinstance(expected, date):
        return _moment(current, order) == _moment(expected, order)
    return one_line(current) == one_line(expected)


def _moment(value: Any, order: str) -> date | datetime | None:
    """A date-like cell as a date, or a date-time when it has a time of day; None when it is no date."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value < 2958466:
        value = datetime.combine(SERIAL_EPOCH, datetime.min.time()) + timedelta(days=float(value))
        value = value.replace(microsecond=0, second=0) if value.second < 30 else value
    if isinstance(value, datetime):
        value = value.replace(tzinfo=None, second=0, microsecond=0)
        return value.date() if value.time() == datetime.min.time() else value
    try:
        return parse_moment(value, "", order)
    except CellError:
        return None


def parse_email(value: Any, column: str) -> str | None:
    """A syntactically valid email address (no DNS look-up), normalised; None when blank."""
    if is_blank(value):
        return None
    raw = text(value)
    if "\n" in raw or "\r" in raw or "," in raw or ";" in raw:
        raise CellError(f"{column} must hold one address; put others on their own rows")
    checked = checked_address(raw)
    if checked.reason:
        raise CellError(f"{column} {raw[:60]!r} is not a valid address ({checked.reason})")
    return checked.normalized


@dataclass(frozen=True)
class CheckedAddress:
    """What validating one address text found: its normalised form and parts, or why it is not one."""

    normalized: str = ""
    local_part: str = ""
    ascii_domain: str = ""
    reason: str = ""


_ADDRESSES: dict[str, CheckedAddress] = {}


def checked_address(raw: str) -> CheckedAddress:
    """*raw* validated (syntax only, no DNS), once per process: the sheet's read and the message's build
    share the answer, and the normalised form is remembered as valid too (it is what the build is given)."""
    found = _ADDRESSES.get(raw)
    if found is None:
        try:
            valid = validate_email(raw, check_deliverability=False, allow_smtputf8=True)
            found = CheckedAddress(valid.normalized, valid.local_part, valid.ascii_domain or valid.domain)
        except EmailNotValidError as exc:
            found = CheckedAddress(reason=str(exc))
        if len(_ADDRESSES) > 65536:
            _ADDRESSES.clear()
        _ADDRESSES[raw] = found
        if found.normalized:
            _ADDRESSES.setdefault(found.normalized, found)
    return found


def parse_choice(value: Any, column: str, choices: tuple[str, ...]) -> str | None:
    """One of the column's listed choices, matched ignoring case and spaces; None when blank."""
    if is_blank(value):
        return None
    wanted = normalise_header(value)
    for choice in choices:
        if normalise_header(choice) == wanted:
            return choice
    listed = ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]
    return _refuse(f"{column} is {text(value)[:40]!r}; use {listed}")


def parse_flag(value: Any) -> bool:
    """A flag such as Do not email: anything but blank or No counts as Yes ("Yes - asked by phone")."""
    if is_blank(value) or value is False:
        return False
    return text(value).strip().lower() not in ("no", "n", "false", "0")


ADDRESS = re.compile(r"[^\s<>,;:\"'()\[\]]+@[^\s<>,;:\"'()\[\]?/]+")


def addresses_in(value: Any) -> list[str]:
    """Every address a cell names, in any form, lower-cased: "Name <a@b.c>", "mailto:a@b.c", lists, "a@b.c."."""
    found = (match.strip(".!?-_") for match in ADDRESS.findall(text(value).replace("%40", "@")))
    return list(dict.fromkeys(address.lower() for address in found if "@" in address.strip("@")))


def parse_int(value: Any, column: str) -> int | None:
    """A whole number (a count such as Visits); None when blank."""
    if is_blank(value):
        return None
    if isinstance(value, bool):
        raise CellError(f"{column} is {text(value)!r}; write a whole number")
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    raw = text(value)
    if re.fullmatch(r"\s*\d+\s*", raw):
        return int(raw)
    raise CellError(f"{column} is {raw[:40]!r}; write a whole number")


def _refuse(message: str) -> Any:
    raise CellError(message)
