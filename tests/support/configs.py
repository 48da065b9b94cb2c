"""Config files for running the real `python -m automations --config FILE ...` in tests and benches.

`write_config` writes the test clinic (`CLINIC`) and any other sections given; `config_for` writes
a file equivalent to a `Settings` built by `tests.conftest.make_settings` or `google_settings`, so a
subprocess sees the same sheet, mail transport and state dir as the test itself. Both merge
overrides key by key into each section, e.g. ``clinic={"owner_email": ""}`` for a run with no
owner's digest, or ``email={"transport": "smtp", ...}``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from automations.config import DEFAULT_TEMPLATES, Settings

CLINIC: dict[str, str] = {
    "name": "Riverside Physical Therapy",
    "address": "120 Main Street, Springfield, IL 62701",
    "from_email": "partners@riverside-pt.example",
    "reply_to": "partners@riverside-pt.example",
    "staff_email": "frontdesk@riverside-pt.example",
    "owner_email": "owner@riverside-pt.example",
    "timezone": "America/Chicago",
}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_text(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML for *sections*: one table each, in order; a name like "email.imap" becomes ``[email.imap]``."""
    lines: list[str] = []
    for name, values in sections.items():
        lines.append("[" + ".".join(_key(part) for part in name.split(".")) + "]")
        lines += [f"{_key(key)} = {_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_config(path: Path, **sections: Mapping[str, Any]) -> Path:
    """Write a config file at *path*: `[clinic]` is CLINIC updated by *clinic*, then the other sections."""
    tables: dict[str, Mapping[str, Any]] = {"clinic": {**CLINIC, **sections.get("clinic", {})}}
    tables.update((name, values) for name, values in sections.items() if name != "clinic")
    path.write_text(toml_text(tables), encoding="utf-8")
    return path


def config_for(path: Path, settings: Settings, **sections: Mapping[str, Any]) -> Path:
    """Write a config file equivalent to *settings* (with the test clinic), *sections* merged over it."""
    sheet, email = settings.sheet, settings.email
    tables: dict[str, dict[str, Any]] = {"sheet": {"backend": sheet.backend, "path": sheet.path}}
    if sheet.backend == "google":
        tables["sheet"].update(key=sheet.key, api_endpoint=sheet.api_endpoint)
    if sheet.credentials is not None:
        tables["sheet"]["credentials"] = sheet.credentials
    if sheet.tabs:
        tables["sheet.tabs"] = dict(sheet.tabs)
    tables["email"] = {"transport": email.transport, "outbox_dir": email.outbox_dir, "host": email.host,
                       "port": email.port, "security": email.security, "timeout": email.timeout,
                       "daily_limit": email.daily_limit, "send_window": email.send_window.text}
    for key in ("username", "password_env", "per_minute"):
        if getattr(email, key):
            tables["email"][key] = getattr(email, key)
    if email.imap.host:
        imap = email.imap
        tables["email.imap"] = {"host": imap.host, "port": imap.port, "security": imap.security,
                                "username": imap.username, "password_env": imap.password_env,
                                "folder": imap.folder, "mark_read": imap.mark_read}
    tables["outreach"] = {"follow_up_days": list(settings.follow_up_days)}
    tables["events"] = {"reminder_days": settings.reminder_days}
    if settings.schedule:
        tables["schedule"] = dict(settings.schedule)
    tables["state"] = {"dir": settings.state_dir}
    if not settings.scorecard_enabled:
        tables["scorecard"] = {"enabled": False}
    if settings.templates_dir != DEFAULT_TEMPLATES:
        tables["templates"] = {"dir": settings.templates_dir}
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    return write_config(path, **tables)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        # A TOML basic string: JSON's escapes are TOML's; DEL is the one control JSON leaves bare.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")
