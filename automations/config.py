"""Settings: `config/settings.toml` loaded into frozen dataclasses, validated once at start.

Every error names the file, the key and what is expected, e.g.
``config/settings.toml: [email] port = 'abc': expected a whole number from 1 to 65535``.
Relative paths in the file are resolved against the folder that holds the file.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from automations.core import JOB_NAMES, SENDING_JOBS
from automations.errors import ConfigError


def _shipped(name: str) -> Path:
    """A folder shipped with partnerloop: beside the package in a checkout, under share/ once installed."""
    checkout = Path(__file__).resolve().parent.parent / name
    installed = Path(sys.prefix) / "share" / "partnerloop" / name
    return checkout if checkout.exists() or not installed.exists() else installed


DEFAULT_CONFIG = _shipped("config") / "settings.toml"
DEFAULT_TEMPLATES = _shipped("templates")
GOOGLE_ENDPOINT = "https://sheets.googleapis.com"

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TAB_KEYS = ("partners", "referrals", "events", "optouts", "log", "dashboard")
DEFAULT_TAB_TITLES = {
    "partners": "Partners",
    "referrals": "Referrals",
    "events": "Events",
    "optouts": "Opt-outs",
    "log": "Log",
    "dashboard": "Dashboard",
}
DATE_ORDERS = ("MDY", "DMY", "YMD")


@dataclass(frozen=True)
class SendWindow:
    """Weekdays and clinic-local hours in which email may go out ("Mon-Fri 08:30-17:30")."""

    days: frozenset[int]
    start: time
    end: time
    text: str = "Mon-Fri 08:30-17:30"

    @classmethod
    def parse(cls, text: str) -> SendWindow:
        """Parse "Mon-Fri 08:30-17:30" or "Mon,Wed,Fri 09:00-12:00"; ValueError on anything else."""
        match = re.fullmatch(r"\s*([A-Za-z,\- ]+?)\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", text)
        if not match:
            raise ValueError("expected days and hours like \"Mon-Fri 08:30-17:30\"")
        days: set[int] = set()
        for part in match.group(1).replace(" ", "").split(","):
            first, _, last = part.partition("-")
            try:
                a = DAY_NAMES.index(first[:3].lower())
                b = DAY_NAMES.index(last[:3].lower()) if last else a
            except ValueError:
                raise ValueError(f"unknown day in {part!r}; use Mon, Tue, Wed, Thu, Fri, Sat, Sun") from None
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        start, end = (time.fromisoformat(t.zfill(5)) for t in match.group(2, 3))
        if start >= end:
            raise ValueError("the window must end after it starts")
        return cls(frozenset(days), start, end, text.strip())

    def contains(self, local: datetime) -> bool:
        """True when the clinic-local time *local* is inside the window."""
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def next_open(self, local: datetime) -> datetime:
        """The first clinic-local moment at or after *local* inside the window."""
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in self.days:
                continue
            if offset == 0 and local.time() >= self.end:
                continue
            return max(local, datetime.combine(day, self.start, local.tzinfo))
        raise ValueError("the send window has no days")


@dataclass(frozen=True)
class ClinicSettings:
    name: str
    address: str
    phone: str
    website: str
    logo_url: str
    from_email: str
    reply_to: str
    staff_email: str
    owner_email: str
    timezone: str
    referral_instructions: str = ""  # how partners send clients to us, where a partner's Sending us clients is blank

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def domain(self) -> str:
        """The clinic's mail domain, used for Message-IDs and the unsubscribe address."""
        return self.from_email.rpartition("@")[2] or "localhost"


@dataclass(frozen=True)
class SheetSettings:
    backend: str
    path: Path
    key: str
    credentials: Path | None
    api_endpoint: str
    tabs: Mapping[str, str]
    date_order: str = "MDY"  # how a date typed as text (03/12/2026) is read: MDY, DMY or YMD

    def title(self, tab_key: str) -> str:
        """The tab's title in this spreadsheet (renamed under [sheet.tabs] or the default)."""
        return self.tabs.get(tab_key, DEFAULT_TAB_TITLES[tab_key])

    @property
    def is_loopback(self) -> bool:
        return bool(re.match(r"https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/?$", self.api_endpoint))


@dataclass(frozen=True)
class ImapSettings:
    host: str = ""
    port: int = 993
    security: str = "ssl"
    username: str = ""
    password_env: str = ""
    folder: str = "INBOX"
    mark_read: bool = False
    sent_folder: str = "Sent"


# -- mail sign-in with OAuth (Gmail API, Google Workspace, Microsoft 365) ------------------------------
GMAIL_ENDPOINT = "https://gmail.googleapis.com"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
MAIL_AUTHS = ("password", "google", "microsoft")


@dataclass(frozen=True)
class GoogleMailSettings:
    """[email.google]: the service-account key (domain-wide delegation) and the mailbox it acts as."""

    credentials: Path | None = None
    user: str = ""
    api_endpoint: str = GMAIL_ENDPOINT


@dataclass(frozen=True)
class MicrosoftSettings:
    """[email.microsoft]: the Entra app that signs in to Exchange Online with the client-credentials flow."""

    tenant: str = ""
    client_id: str = ""
    client_secret_env: str = ""
    authority: str = MICROSOFT_AUTHORITY


def _mail_sign_in(reader: _Reader, source: Path, sheet: SheetSettings, clinic: ClinicSettings,
                  path_of: Callable[[str], Path]) -> tuple[str, GoogleMailSettings, MicrosoftSettings]:
    """`[email] auth`, `[email.google]` and `[email.microsoft]`, with their defaults filled in."""
    auth = reader.choice("email", "auth", "password", MAIL_AUTHS)
    google = _Reader({"email.google": reader.table("email", "google")}, source)
    credentials = google.text("email.google", "credentials", "")
    endpoint = google.text("email.google", "api_endpoint", GMAIL_ENDPOINT).rstrip("/")
    if not re.match(r"https?://[^/\s]+$", endpoint):
        google.fail("email.google", "api_endpoint", endpoint, "a base URL such as \"https://gmail.googleapis.com\"")
    google_settings = GoogleMailSettings(
        credentials=path_of(credentials) if credentials else sheet.credentials,
        user=google.email("email.google", "user", "") or clinic.from_email,
        api_endpoint=endpoint,
    )
    uses_google = auth == "google" or reader.text("email", "transport", "outbox").lower() == "gmail"
    if uses_google and google_settings.credentials is None:
        google.fail("email.google", "credentials", "", "the path of a service-account key file (JSON) with "
                    "domain-wide delegation (or set [sheet] credentials)")
    ms = _Reader({"email.microsoft": reader.table("email", "microsoft")}, source)
    authority = ms.text("email.microsoft", "authority", MICROSOFT_AUTHORITY).rstrip("/")
    if not re.match(r"https://[^/\s]+(/[^\s]*)?$", authority):
        ms.fail("email.microsoft", "authority", authority, "an https URL such as \"https://login.microsoftonline.com\"")
    microsoft = MicrosoftSettings(
        tenant=ms.text("email.microsoft", "tenant", ""),
        client_id=ms.text("email.microsoft", "client_id", ""),
        client_secret_env=ms.text("email.microsoft", "client_secret_env", ""),
        authority=authority,
    )
    if auth == "microsoft":
        for key in ("tenant", "client_id", "client_secret_env"):
            if not getattr(microsoft, key):
                ms.fail("email.microsoft", key, "", "a value: [email] auth = \"microsoft\" signs in with the app "
                        "registered in Microsoft Entra (see the README, Mail sign-in)")
    return auth, google_settings, microsoft


@dataclass(frozen=True)
class EmailSettings:
    transport: str
    outbox_dir: Path
    host: str
    port: int
    security: str
    username: str
    password_env: str
    timeout: float
    daily_limit: int
    per_minute: int
    send_window: SendWindow
    imap: ImapSettings = field(default_factory=ImapSettings)
    auth: str = "password"
    google: GoogleMailSettings = field(default_factory=GoogleMailSettings)
    microsoft: MicrosoftSettings = field(default_factory=MicrosoftSettings)

    def password(self) -> str:
        """The SMTP password from the environment variable named by password_env."""
        if not self.password_env:
            return ""
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(
                f"[email] password_env names {self.password_env}, but that environment variable is not set"
            )
        return value


@dataclass(frozen=True)
class StaffMember:
    """One `[[staff]]` entry: who looks after partners (the `Owner` column names them)."""

    name: str
    title: str = ""
    email: str = ""
    phone: str = ""


@dataclass(frozen=True)
class Settings:
    """Everything partnerloop reads from its configuration file."""

    source: Path
    clinic: ClinicSettings
    sheet: SheetSettings
    email: EmailSettings
    follow_up_days: tuple[int, ...]
    reminder_days: int
    schedule: Mapping[str, str]
    state_dir: Path
    templates_dir: Path
    staff: tuple[StaffMember, ...] = ()
    scorecard_enabled: bool = True


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: --config, then PARTNERLOOP_CONFIG, then ./config/settings.toml, then the shipped one."""
    if explicit:
        return Path(explicit)
    if os.environ.get("PARTNERLOOP_CONFIG"):
        return Path(os.environ["PARTNERLOOP_CONFIG"])
    local = Path.cwd() / "config" / "settings.toml"
    return local if local.exists() else DEFAULT_CONFIG


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the config file; raise ConfigError naming the file and key."""
    source = find_config(path)
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found; pass --config PATH or set PARTNERLOOP_CONFIG") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    return settings_from_dict(raw, source)


def settings_from_dict(raw: Mapping[str, Any], source: Path) -> Settings:
    """Validate a parsed config mapping (also used by tests and the demo).

    Every key the readers look up is recorded; a key or section in the file that no reader asked
    for is refused with the nearest known name, so a typo never runs silently on the defaults.
    """
    token = _LOOKED_UP.set(set())
    try:
        settings = _settings(raw, source)
        _refuse_unknown(raw, source, _LOOKED_UP.get() or set())
    finally:
        _LOOKED_UP.reset(token)
    return settings


def _settings(raw: Mapping[str, Any], source: Path) -> Settings:
    reader = _Reader(raw, source)
    base = source.resolve().parent

    def path_of(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(os.path.normpath(base / p))

    timezone = reader.text("clinic", "timezone", "America/New_York")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        reader.fail("clinic", "timezone", timezone, "an IANA time zone such as \"America/New_York\"")
    clinic = ClinicSettings(
        name=reader.text("clinic", "name", "Our Clinic"),
        address=reader.text("clinic", "address", ""),
        phone=reader.text("clinic", "phone", ""),
        website=reader.text("clinic", "website", ""),
        logo_url=reader.text("clinic", "logo_url", ""),
        from_email=reader.email("clinic", "from_email", "clinic@example.org"),
        reply_to=reader.email("clinic", "reply_to", ""),
        staff_email=reader.email("clinic", "staff_email", ""),
        owner_email=reader.email("clinic", "owner_email", ""),
        referral_instructions=reader.text("clinic", "referral_instructions", ""),
        timezone=timezone,
    )

    backend = reader.choice("sheet", "backend", "xlsx", ("xlsx", "google"))
    tabs = _tab_titles(reader)
    endpoint = reader.text("sheet", "api_endpoint", GOOGLE_ENDPOINT).rstrip("/")
    if not re.match(r"https?://[^/\s]+$", endpoint):
        reader.fail("sheet", "api_endpoint", endpoint, "a base URL such as \"https://sheets.googleapis.com\"")
    credentials = reader.text("sheet", "credentials", "")
    sheet = SheetSettings(
        backend=backend,
        path=path_of(reader.text("sheet", "path", "../var/partnerloop.xlsx")),
        key=reader.text("sheet", "key", ""),
        credentials=path_of(credentials) if credentials else None,
        api_endpoint=endpoint,
        tabs=tabs,
        date_order=reader.choice("sheet", "date_order", "MDY", DATE_ORDERS, upper=True),
    )
    if backend == "google":
        if not sheet.key:
            reader.fail("sheet", "key", "", "the spreadsheet key (the long ID in the sheet's URL)")
        if sheet.credentials is None and not sheet.is_loopback:
            reader.fail("sheet", "credentials", "", "the path of a service-account key file (JSON)")

    window_text = reader.text("email", "send_window", "Mon-Fri 08:30-17:30")
    try:
        window = SendWindow.parse(window_text)
    except ValueError as exc:
        reader.fail("email", "send_window", window_text, str(exc))
    imap = reader.table("email", "imap")
    imap_reader = _Reader({"email.imap": imap}, source)
    auth, google_mail, microsoft = _mail_sign_in(reader, source, sheet, clinic, path_of)
    email = EmailSettings(
        transport=reader.choice("email", "transport", "outbox", ("outbox", "smtp", "gmail")),
        outbox_dir=path_of(reader.text("email", "outbox_dir", "../var/outbox")),
        host=reader.text("email", "host", "localhost"),
        port=reader.integer("email", "port", 587, 1, 65535),
        security=reader.choice("email", "security", "starttls", ("ssl", "starttls", "none")),
        username=reader.text("email", "username", ""),
        password_env=reader.text("email", "password_env", ""),
        timeout=reader.number("email", "timeout", 30.0, 0.1, 600.0),
        daily_limit=reader.integer("email", "daily_limit", 200, 0, 100_000),
        per_minute=reader.integer("email", "per_minute", 0, 0, 10_000),
        send_window=window,
        imap=ImapSettings(
            host=imap_reader.text("email.imap", "host", ""),
            port=imap_reader.integer("email.imap", "port", 993, 1, 65535),
            security=imap_reader.choice("email.imap", "security", "ssl", ("ssl", "starttls", "none")),
            username=imap_reader.text("email.imap", "username", ""),
            password_env=imap_reader.text("email.imap", "password_env", ""),
            folder=imap_reader.text("email.imap", "folder", "INBOX"),
            mark_read=imap_reader.boolean("email.imap", "mark_read", False),
            sent_folder=imap_reader.text("email.imap", "sent_folder", "Sent"),
        ),
        auth=auth,
        google=google_mail,
        microsoft=microsoft,
    )

    follow_up = reader.get("outreach", "follow_up_days", [7, 14])
    if (
        not isinstance(follow_up, list)
        or len(follow_up) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 365 for d in follow_up)
    ):
        reader.fail("outreach", "follow_up_days", follow_up, "two whole numbers of days, e.g. [7, 14]")

    schedule = reader.table("schedule", None, free_keys=True)
    for job, line in schedule.items():
        if job not in JOB_NAMES:
            reader.fail("schedule", job, line, "a job name: " + ", ".join(JOB_NAMES))
        if not isinstance(line, str):
            reader.fail("schedule", job, line, "a schedule in words, e.g. \"weekdays at 09:30\"")
        _check_sends(job, line, parse_schedule_line(job, line, source), window, source)

    templates = reader.text("templates", "dir", "")
    return Settings(
        source=source,
        clinic=clinic,
        sheet=sheet,
        email=email,
        follow_up_days=tuple(follow_up),
        reminder_days=reader.integer("events", "reminder_days", 3, 0, 60),
        schedule=dict(schedule),
        state_dir=path_of(reader.text("state", "dir", "../var/state")),
        templates_dir=path_of(templates) if templates else DEFAULT_TEMPLATES,
        staff=_staff(reader),
        scorecard_enabled=reader.boolean("scorecard", "enabled", True),
    )


def _staff(reader: _Reader) -> tuple[StaffMember, ...]:
    """[[staff]]: one table per person, each with a name; title, email and phone optional."""
    _record("staff", "")
    entries = reader.raw.get("staff", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        reader.fail("staff", "", entries, "one [[staff]] table per person, with name, title, email and phone")
    people = []
    for entry in entries:
        for key in ("name", "title", "email", "phone"):
            _record("staff", key)
            if not isinstance(entry.get(key, ""), str):
                reader.fail("staff", key, entry.get(key), "text in quotes")
        name, email = entry.get("name", "").strip(), entry.get("email", "").strip()
        if not name:
            reader.fail("staff", "name", entry.get("name", ""), "the person's name (the Owner column names them)")
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            reader.fail("staff", "email", email, "an email address such as \"ana@clinic.example\"")
        people.append(StaffMember(name, entry.get("title", "").strip(), email, entry.get("phone", "").strip()))
    return tuple(people)


def _tab_titles(reader: _Reader) -> dict[str, str]:
    """[sheet.tabs]: known tab keys, and no two tabs (renamed or not) sharing a title, ignoring case."""
    tabs: dict[str, str] = {}
    for key, value in reader.table("sheet", "tabs", free_keys=True).items():
        if key not in TAB_KEYS:
            near = difflib.get_close_matches(key, TAB_KEYS, n=1)
            reader.fail("sheet.tabs", key, value, "one of " + ", ".join(TAB_KEYS)
                        + (f" (did you mean {near[0]}?)" if near else ""))
        if not isinstance(value, str) or not value.strip():
            reader.fail("sheet.tabs", key, value, "a tab title")
        tabs[key] = value.strip()
    titles = {key: tabs.get(key, DEFAULT_TAB_TITLES[key]) for key in TAB_KEYS}
    for key in tabs:
        for other in TAB_KEYS:
            if other != key and titles[other].casefold() == titles[key].casefold():
                renamed = "also renamed to" if other in tabs else "the title of"
                raise ConfigError(
                    f"{reader.source}: [sheet.tabs] {key} = {titles[key]!r} is {renamed} the {other} tab "
                    f"({titles[other]!r}); two tabs may never share a name, so choose another title"
                )
    return tabs


def _sections_and_keys(raw: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str, bool]]:
    """Every (section, key, is_table) in a parsed TOML file; top-level keys have section ""."""
    found: list[tuple[str, str, bool]] = []
    for key, value in raw.items():
        tables = [value] if isinstance(value, dict) else (
            value if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) else [])
        found.append((prefix, key, bool(tables)))
        for table in tables:
            found += _sections_and_keys(table, f"{prefix}.{key}" if prefix else key)
    return found


def _refuse_unknown(raw: Mapping[str, Any], source: Path, looked_up: set[tuple[str, str]]) -> None:
    """Raise ConfigError for the first key or section of *raw* that no reader looked up."""
    free = {section for section, key in looked_up if key == "*"}
    sections = {section for section, _ in looked_up}
    for section, key, is_table in _sections_and_keys(raw):
        if section in free or (section, key) in looked_up:
            continue
        name = f"{section}.{key}" if section else key
        if is_table:
            if name in sections:
                continue
            near = difflib.get_close_matches(name, sorted(s for s in sections if s and s.count(".") == name.count(".")), n=1)
            hint = f"; did you mean [{near[0]}]?" if near else ""
            raise ConfigError(f"{source}: [{name}] is not a known section{hint}")
        known = sorted(k for s, k in looked_up if s == section and k not in ("*", ""))
        near = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        where = f"[{section}] {key}" if section else f"{key} (outside any section)"
        raise ConfigError(f"{source}: {where} is not a known key{hint}")


SCHEDULE_FORMS = ('"every 30 minutes", "every hour", "every 2 hours", "every day at 08:45", "weekdays at 09:30", '
                  '"monday at 08:00" (also "every N seconds", for trials)')
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class ScheduleLine:
    """One [schedule] line, read: every *count* *unit*, or at *at* (HH:MM, clinic time) on *days*."""

    count: int = 0
    unit: str = ""  # seconds | minutes | hours; blank for a clock-time line
    days: tuple[str, ...] = ()  # weekday names, or ("day",) for every day
    at: str = ""


def parse_schedule_line(job: str, line: str, source: Path | str) -> ScheduleLine:
    """Read a [schedule] line in words; ConfigError naming the line and the accepted forms."""
    def refuse() -> NoReturn:
        raise ConfigError(f"{source}: [schedule] {job} = {line!r}: expected one of {SCHEDULE_FORMS}")

    words = " ".join(line.lower().replace(",", " ").split())
    every = re.fullmatch(r"every (\d+ )?(second|minute|hour)s?", words)
    at = re.fullmatch(r"(?:every )?(day|daily|weekdays?|monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
                      r" at (\d{1,2}:\d{2})", words)
    if every:
        count = int(every.group(1) or 1)
        if count < 1:
            refuse()
        return ScheduleLine(count=count, unit=every.group(2) + "s")
    if not at:
        refuse()
    day, clock = at.groups()
    hours, minutes = (int(x) for x in clock.split(":"))
    if hours > 23 or minutes > 59:
        refuse()
    days = {"day": ("day",), "daily": ("day",), "weekday": WEEKDAY_NAMES[:5],
            "weekdays": WEEKDAY_NAMES[:5]}.get(day, (day,))
    return ScheduleLine(days=days, at=f"{hours:02d}:{minutes:02d}")


def _check_sends(job: str, line: str, parsed: ScheduleLine, window: SendWindow, source: Path) -> None:
    """Refuse a clock-time line at which a job that sends email could never send (outside send_window)."""
    if job not in SENDING_JOBS or parsed.unit:
        return
    days = range(7) if parsed.days == ("day",) else [WEEKDAY_NAMES.index(d) for d in parsed.days]
    at = time.fromisoformat(parsed.at)
    if any(d in window.days and window.start <= at < window.end for d in days):
        return
    first_day = next((d for d in days if d in window.days), min(window.days, default=0))
    raise ConfigError(
        f"{source}: [schedule] {job} = {line!r} is outside [email] send_window ({window.text}), so {job} would "
        f"never send; pick a time inside it, e.g. {job} = \"{WEEKDAY_NAMES[first_day]} at {window.start:%H:%M}\"")


_LOOKED_UP: ContextVar[set[tuple[str, str]] | None] = ContextVar("partnerloop_config_keys", default=None)


def _record(section: str, key: str) -> None:
    """Note that a reader looked up [section] key ("" for the table itself, "*" for any key)."""
    looked_up = _LOOKED_UP.get()
    if looked_up is not None:
        looked_up.add((section, key))


class _Reader:
    """Typed access to the raw TOML with errors that name file, section and key.

    Every lookup, by any reader, is recorded for the current `settings_from_dict` call: what no
    reader asked for is an unknown key. Sections may be dotted ("email.imap").
    """

    def __init__(self, raw: Mapping[str, Any], source: Path) -> None:
        self.raw = raw
        self.source = source

    def _section(self, section: str) -> Any:
        """The table for a possibly dotted section name, or {} when the file has none."""
        if section in self.raw:
            return self.raw[section]
        table: Any = self.raw
        for part in section.split("."):
            table = table.get(part, {}) if isinstance(table, dict) else {}
        return table

    def fail(self, section: str, key: str, value: Any, expected: str) -> Any:
        where = f"[{section}] {key}" if key else f"[{section}]"
        raise ConfigError(f"{self.source}: {where} = {value!r}: expected {expected}")

    def table(self, section: str, key: str | None, free_keys: bool = False) -> dict[str, Any]:
        """A sub-table (``key``) of *section*, or the section itself; *free_keys*: the caller checks its keys."""
        name = f"{section}.{key}" if key else section
        _record(name, "")
        if key:
            _record(section, key)
        if free_keys:
            _record(name, "*")
        value = self._section(name)
        if not isinstance(value, dict):
            self.fail(section, key or "", value, "a table of keys")
        return dict(value)

    def get(self, section: str, key: str, default: Any) -> Any:
        _record(section, key)
        table = self._section(section)
        if not isinstance(table, dict):
            self.fail(section, "", table, "a table of keys")
        return table.get(key, default)

    def text(self, section: str, key: str, default: str) -> str:
        value = self.get(section, key, default)
        if not isinstance(value, str):
            self.fail(section, key, value, "text in quotes")
        return value.strip()

    def email(self, section: str, key: str, default: str) -> str:
        value = self.text(section, key, default)
        if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            self.fail(section, key, value, "an email address such as \"front.desk@clinic.example\"")
        return value

    def choice(self, section: str, key: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
        value = self.text(section, key, default)
        value = value.upper() if upper else value.lower()
        if value not in choices:
            self.fail(section, key, value, "one of " + ", ".join(repr(c) for c in choices))
        return value

    def integer(self, section: str, key: str, default: int, low: int, high: int) -> int:
        value = self.get(section, key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(section, key, value, f"a whole number from {low} to {high}")
        return int(value)

    def number(self, section: str, key: str, default: float, low: float, high: float) -> float:
        value = self.get(section, key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.fail(section, key, value, f"a number of seconds from {low:g} to {high:g}")
        return float(value)

    def boolean(self, section: str, key: str, default: bool) -> bool:
        value = self.get(section, key, default)
        if not isinstance(value, bool):
            self.fail(section, key, value, "true or false")
        return value
