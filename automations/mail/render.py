"""Rendering an email template into a subject, an HTML part and a text part from one source.

Each email is ``templates/<name>.html.j2``: it extends the shared co-branded layout and fills a
``subject`` block and a ``body`` block. Jinja2 runs with undefined variables as errors and HTML
autoescaping, so text from cells is data. The text part is derived from the rendered HTML, so
the two parts never drift apart.
"""

from __future__ import annotations

import functools
import html
import os
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any

import jinja2

from automations.errors import ConfigError, PartnerloopError

TEMPLATE_SUFFIX = ".html.j2"
LAYOUT = "layout" + TEMPLATE_SUFFIX

# Every email the jobs send (SPEC §2); `check_all` insists each one exists.
EMAIL_TEMPLATES = (
    "outreach_intro",
    "outreach_warm_intro",
    "outreach_follow_up_1",
    "outreach_follow_up_2",
    "meeting_confirmation",
    "meeting_cancellation",
    "partnership_welcome",
    "discharge_partner",
    "discharge_patient",
    "referral_thanks",
    "referral_update",
    "referral_closed",
    "event_reminder",
    "partner_scorecard",
    "owner_digest",
)

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class TemplateProblem(PartnerloopError):
    """A template file is missing or cannot be compiled; the message names the file and line."""


class RenderError(ValueError):
    """A value this row needs is missing; the executor turns the message into the row's status."""


@dataclass(frozen=True)
class Rendered:
    """One rendered email: the template it came from, its subject and both parts."""

    template: str
    subject: str
    text: str
    html: str


class Renderer:
    """Renders the email templates of one folder (the shipped `templates/` or a clinic's own), or of a
    clinic's folder laid over the shipped one (*shipped*): a template missing there is the shipped one."""

    def __init__(self, templates_dir: Path, shipped: Path | None = None) -> None:
        self.templates_dir = Path(templates_dir)
        self.folders = [self.templates_dir]
        if shipped is not None and Path(shipped).resolve() != self.templates_dir.resolve():
            self.folders.append(Path(shipped))
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(f) for f in self.folders], encoding="utf-8"),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm", "xml", "j2"), default_for_string=True, default=True
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_blank_none,
        )
        self.env.filters["date"] = format_date
        self.env.filters["when"] = format_when
        self.env.filters["safe_url"] = safe_url
        self.env.filters["display_url"] = display_url
        self.env.filters["greeting"] = greeting

    def names(self) -> list[str]:
        """The email templates in the folder(s) (layout and `_partials` excluded), sorted."""
        return sorted({
            path.name[: -len(TEMPLATE_SUFFIX)]
            for folder in self.folders if folder.is_dir()
            for path in folder.glob("*" + TEMPLATE_SUFFIX)
            if path.name != LAYOUT and not path.name.startswith("_")
        })

    def _path(self, file_name: str) -> Path:
        """The file a template name stands for: the clinic's own where it has one, else the shipped one."""
        found = next((folder / file_name for folder in self.folders if (folder / file_name).is_file()), None)
        return found or self.templates_dir / file_name

    def render(self, template_name: str, context: Mapping[str, Any]) -> Rendered:
        """Render one email; RenderError when the row lacks a value, TemplateProblem when the file is bad."""
        name = _email_name(template_name)
        values = dict(context)
        if values.get("outreach") and not _attribute(values.get("clinic"), "address"):
            raise ConfigError(
                "[clinic] address is empty, but outreach emails must carry the clinic's postal address"
            )
        template = self._template(name)
        try:
            body = template.render(values)
            subject_block = template.blocks.get("subject")
            if subject_block is None:
                raise TemplateProblem(f"{self._display(name + TEMPLATE_SUFFIX)}: has no {{% block subject %}}")
            try:
                subject = "".join(subject_block(template.new_context(values)))
            except Exception:  # handle_exception re-raises it, with template lines in the traceback
                self.env.handle_exception()
        except jinja2.UndefinedError as exc:
            raise RenderError(f"template {name}{self._place(name, exc)}: {self._missing(exc)}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise self._problem(exc) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateProblem(f"{self._display(str(exc.name or ''))}: template not found") from None
        except jinja2.TemplateError as exc:
            raise TemplateProblem(
                f"{self._display(name + TEMPLATE_SUFFIX)}{self._place(name, exc)}: {_one_line(exc)}"
            ) from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            # A cell of the wrong kind (text where a date belongs): this row's problem, not the file's.
            raise RenderError(f"template {name}{self._place(name, exc)}: {_one_line(exc)}") from None
        return Rendered(template=name, subject=_one_line(html.unescape(subject)), text=html_to_text(body), html=body)

    def check_all(self, clinic: Any = None, today: date | None = None) -> tuple[str, ...]:
        """Compile every template and trial-render each email with a sample row.

        Returns the email names checked; raises TemplateProblem for the first missing or broken
        file, or for a template that uses a name the rendering context does not have.
        """
        if not self.templates_dir.is_dir():
            raise TemplateProblem(f"{self._display('')}: the templates folder does not exist")
        for name in sorted({path.name for folder in self.folders for path in folder.glob("*.j2")}):
            try:
                self.env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                raise self._problem(exc) from None
        present = set(self.names())
        missing = [name for name in EMAIL_TEMPLATES if name not in present]
        if missing:
            raise TemplateProblem(
                f"{self._display('')}: missing {', '.join(n + TEMPLATE_SUFFIX for n in missing)}"
            )
        for name in self.names():
            try:
                self.render(name, sample_context(name, clinic, today=today or date(2026, 11, 27)))
            except RenderError as exc:
                raise TemplateProblem(
                    f"{self._display(name + TEMPLATE_SUFFIX)}: {exc} (not a name the jobs provide)"
                ) from None
        return tuple(self.names())

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(name + TEMPLATE_SUFFIX)
        except jinja2.TemplateSyntaxError as exc:
            raise self._problem(exc) from None
        except jinja2.TemplateNotFound:
            known = ", ".join(self.names()) or "none"
            raise TemplateProblem(
                f"{self._display(name + TEMPLATE_SUFFIX)}: template not found (available: {known})"
            ) from None

    def _problem(self, exc: jinja2.TemplateSyntaxError) -> TemplateProblem:
        file = self._display(exc.name or (Path(exc.filename).name if exc.filename else ""))
        return TemplateProblem(f"{file} line {exc.lineno}: {_one_line(exc.message or str(exc))}")

    def _locate(self, exc: BaseException) -> tuple[str, int] | None:
        """The innermost template file and line in the traceback (Jinja rewrites frames to template lines)."""
        found: tuple[str, int] | None = None
        tb: TracebackType | None = exc.__traceback__
        roots = {os.path.abspath(folder) for folder in self.folders}
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.endswith(".j2") and os.path.dirname(os.path.abspath(filename)) in roots:
                found = (os.path.basename(filename), tb.tb_lineno)
            tb = tb.tb_next
        return found

    def _place(self, name: str, exc: BaseException) -> str:
        """" line 7" in the email's own file, " (layout.html.j2 line 3)" elsewhere, "" when unknown."""
        where = self._locate(exc)
        if where is None:
            return ""
        if where[0] == name + TEMPLATE_SUFFIX:
            return f" line {where[1]}"
        return f" ({where[0]} line {where[1]})"

    def _missing(self, exc: jinja2.UndefinedError) -> str:
        """Jinja's "'dict object' has no attribute 'why_partner'" as "no value for partner.why_partner"."""
        message = _one_line(exc.message or str(exc))
        match = re.fullmatch(r"'(.*)' is undefined", message)
        if match:
            return f"no value for {match.group(1)}"
        match = re.fullmatch(r"'?(.*?)'? has no (?:attribute|element) '?(.*?)'?", message)
        if not match:
            return message
        owner, key = match.groups()
        where = self._locate(exc)
        if where is not None:
            try:
                line = self._path(where[0]).read_text(encoding="utf-8").splitlines()[where[1] - 1]
            except (OSError, IndexError, UnicodeDecodeError):
                line = ""
            dotted = re.search(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\." + re.escape(key) + r"\b", line)
            if dotted:
                parent = dotted.group(1)
                if owner == "None":
                    return f"no value for {parent}.{key} ({parent} is empty)"
                return f"no value for {parent}.{key}"
        return f"no value for {key!r}"

    def _display(self, file_name: str) -> str:
        """The template's path as staff would type it: relative to the working folder when inside it."""
        path = self._path(file_name) if file_name else self.templates_dir
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)


def renderer_for(settings: Any) -> Renderer:
    """The renderer a run uses: the clinic's `[templates] dir` laid over the shipped templates."""
    from automations.config import DEFAULT_TEMPLATES

    return Renderer(settings.templates_dir, shipped=DEFAULT_TEMPLATES)


# --- filters ------------------------------------------------------------------------------


def format_date(value: Any, style: str = "long") -> str:
    """A date for people: long "November 27, 2026", day "Friday, November 27", full with both; None -> ""."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        return str(value)
    month = MONTHS[value.month - 1]
    if style == "day":
        return f"{WEEKDAYS[value.weekday()]}, {month} {value.day}"
    if style == "full":
        return f"{WEEKDAYS[value.weekday()]}, {month} {value.day}, {value.year}"
    if style == "long":
        return f"{month} {value.day}, {value.year}"
    raise ValueError(f"date style {style!r}: use long, day or full")


def format_when(start: Any, end: Any = None, style: str = "full") -> str:
    """A meeting or event time for people, in the zone *start* carries.

    full: "Thursday, December 3, 2026, 10:00 AM to 11:00 AM Central Time" (`|when(invite.end)`);
    short, for subjects: "Thursday, December 3 at 10:00 AM" (`|when("short")`); time: "10:00 AM".
    """
    if isinstance(end, str):  # {{ invite.start|when("short") }}
        style, end = end, None
    if not isinstance(start, datetime):
        return format_date(start, "full") if style == "full" else format_date(start, "day")
    if style == "time":
        return _clock(start)
    if style == "short":
        return f"{format_date(start, 'day')} at {_clock(start)}"
    if style != "full":
        raise ValueError(f"when style {style!r}: use full, short or time")
    text = f"{format_date(start, 'full')}, {_clock(start)}"
    if isinstance(end, datetime):
        end = end.astimezone(start.tzinfo) if start.tzinfo is not None and end.tzinfo is not None else end
        text += f" to {_clock(end)}" if end.date() == start.date() else f" to {format_date(end, 'full')}, {_clock(end)}"
    zone = zone_name(start)
    return f"{text} {zone}" if zone else text


def _clock(moment: datetime) -> str:
    """10:00 AM, 2:30 PM."""
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def zone_name(moment: datetime) -> str:
    """The clinic's time zone as people say it ("Central Time", "Central European Time"), from the CLDR
    names Babel ships; the name for the date ("Hawaii-Aleutian Standard Time") where a zone has no
    plain generic one; "" for a time without a zone."""
    key = getattr(moment.tzinfo, "key", None)
    if not key:
        return ""
    generic = _generic_zone_name(key)
    return generic or _dated_zone_name(key, moment.replace(tzinfo=None).isoformat())


@functools.lru_cache(maxsize=64)
def _generic_zone_name(key: str) -> str:
    from zoneinfo import ZoneInfo

    from babel.dates import get_timezone_name  # loaded on first use: a run that sends no invite never needs it

    name = get_timezone_name(ZoneInfo(key), "long", zone_variant="generic", locale="en_US")
    return "" if "(" in name or "Unknown" in name else name


@functools.lru_cache(maxsize=64)
def _dated_zone_name(key: str, moment: str) -> str:
    from zoneinfo import ZoneInfo

    from babel.dates import get_timezone_name

    return get_timezone_name(datetime.fromisoformat(moment).replace(tzinfo=ZoneInfo(key)), "long", locale="en_US")


def safe_url(value: Any) -> str:
    """A link target safe to put in href/src: http(s) or mailto; a bare domain gets https://; else ""."""
    url = _one_line(value).strip()
    if not url or any(ch.isspace() for ch in url):
        return ""
    if re.match(r"(?i)https?://[^/\s]", url) or re.match(r"(?i)mailto:[^@\s]+@", url):
        return url
    if re.match(r"(?i)[a-z][a-z0-9+.-]*:", url):
        return ""  # javascript:, data:, file: and friends
    if re.match(r"(?i)(www\.)?[a-z0-9-]+(\.[a-z0-9-]+)+(/.*)?$", url):
        return "https://" + url
    return ""


def display_url(value: Any) -> str:
    """A URL as people write it: without the scheme and the trailing slash."""
    return re.sub(r"(?i)^(https?://|mailto:)", "", _one_line(value)).rstrip("/")


# --- greetings ----------------------------------------------------------------------------

# Words before a name that are not the name: "Dr. Ana Diaz", "Coach Leo", "Mrs Okafor".
_TITLES = frozenset({"dr", "doctor", "mr", "mrs", "ms", "miss", "mx", "prof", "professor", "coach", "sir", "dame"})
# Letters after a name that are not the name: "Ana Diaz, DPT", "Tom Becker Jr."
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "pt", "dpt", "md", "do", "phd", "rd", "rdn", "lmt", "cpt",
                       "dc", "ms", "ma", "msc", "bsc", "cscs", "ryt", "e-ryt"})
# A Contact name holding one of these words names a desk or a business, not a person.
_NOT_A_PERSON = frozenset({"team", "staff", "front", "desk", "reception", "office", "info", "admin", "manager",
                           "management", "studio", "gym", "fitness", "yoga", "pilates", "club", "center", "centre",
                           "clinic", "llc", "inc", "ltd", "co", "company", "group", "collective", "the"})


# One word of a person's name: letters, joined by apostrophes, hyphens or a full stop (Mary-Jane, O'Brien, J.).
_NAME_WORD = re.compile(r"[^\W\d_]+(?:['’.-][^\W\d_]*)*")


def greeting(name: Any, business: Any = "") -> str:
    """The salutation of a letter to *name* (a Contact name or a patient's first name), without the comma.

    One rule for every email: greet the person by first name ("Hi Ana"), whatever titles, initials
    or capitals the cell holds; with only a title and a surname, greet them so ("Hi Dr. Diaz"). A
    cell that names no person (blank, an email address, a business or a desk) greets the business's
    team ("Hello Lotus Flow Yoga team"), or, without a business, "Hello".
    """
    names = [first for person in _people(_one_line(name)) if (first := _greeting_name(person))]
    if names:
        return "Hi " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0])
    team = _one_line(business)
    return f"Hello {team} team" if team else "Hello"


def _people(cell: str) -> list[str]:
    """ "Ana & Tom Diaz" as ["Ana", "Tom Diaz"]; parenthesised notes ("Alex (front desk)") left out."""
    cell = re.sub(r"\([^)]*\)?", " ", cell)
    if "@" in cell or not re.search(r"[^\W\d_]", cell):
        return []
    return [part.strip() for part in re.split(r"\s*(?:&|\+|/|;|\band\b)\s*", cell, flags=re.I) if part.strip()]


def _greeting_name(person: str) -> str:
    """The name one person is greeted by: "Dr. Ana M. Diaz" -> "Ana", "DR. DIAZ" -> "Dr. Diaz", "" when none."""
    if "," in person:
        before, _, after = person.partition(",")
        after_words = [w.strip(".").lower() for w in after.split()]
        if after_words and not all(w in _SUFFIXES for w in after_words):
            return ""  # "Diaz, Ana" or "Ana, Tom": which is the first name is a guess, and a wrong one hurts
        person = before  # "Ana Diaz, DPT"
    words = [w for w in person.split() if w.strip(".'-")]
    if not words or any(w.strip(".").lower() in _NOT_A_PERSON for w in words):
        return ""
    while len(words) > 1 and words[-1].strip(".").lower() in _SUFFIXES:
        words.pop()
    titles: list[str] = []
    while words and words[0].strip(".").lower() in _TITLES:
        titles.append(words.pop(0))
    if not words:
        return ""
    title = titles[-1].strip(".") if titles and titles[-1].strip(".").lower() != "coach" else ""
    if not all(_NAME_WORD.fullmatch(w) for w in words):
        return ""
    if len(words) == 1:  # "Ana", "Coach Leo"; with a title the one word is a surname: "Dr. Diaz"
        return f"{_title_case(title)}. {_name_case(words[0])}" if title else _name_case(words[0])
    given = next((w for w in words[:-1] if not re.fullmatch(r"[^\W\d_]\.?", w)), None)  # skip initials
    if given is not None:
        return _name_case(given)
    return " ".join(([_title_case(title) + "."] if title else []) + [_name_case(w) for w in words])  # "A. Diaz"


def _title_case(word: str) -> str:
    return word[:1].upper() + word[1:].lower()


def _name_case(word: str) -> str:
    """A name as written, unless the cell shouts or whispers: "ANA" and "ana" -> "Ana", "o'BRIEN" -> "O'Brien"."""
    if word.isupper() or word.islower():
        return re.sub(r"[^\W\d_]+", lambda m: _title_case(m.group(0)), word)
    return word


# --- text part ----------------------------------------------------------------------------


def html_to_text(document: str, width: int = 76) -> str:
    """The plain-text form of a rendered email: paragraphs, "- " list items, aligned tables, links in ( )."""
    writer = _TextWriter()
    for match in _TOKENS.finditer(document):
        closing, tag, attributes, self_closing, data = match.groups()
        if data is not None:
            writer.handle_data(html.unescape(data))
        elif tag is not None:
            name = tag.lower()
            if closing:
                writer.handle_endtag(name)
                continue
            writer.handle_starttag(name, [(a.lower(), html.unescape(next((v for v in values if v), "")))
                                          for a, *values in _ATTRIBUTES.findall(attributes)])
            if self_closing:
                writer.handle_endtag(name)
    return writer.result(width)


# The restrained HTML of the email templates, read token by token (html.parser is several times slower):
# comments and declarations are skipped, a tag gives its name and attributes, the rest is text.
_TOKENS = re.compile(r"<!--.*?-->|<![^>]*>|<\?[^>]*>"
                     r"|<(/?)([A-Za-z][A-Za-z0-9]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>"
                     r"|([^<]+|<)", re.S)
_ATTRIBUTES = re.compile(r"""([A-Za-z_:][-A-Za-z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


class _TextWriter:
    """Collects blocks of text from restrained email HTML (p, div, br, ul/ol/li, a, img, table)."""

    BLOCKS = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "blockquote", "section",
                        "header", "footer", "table", "tr", "body", "center"})
    SKIP = frozenset({"head", "style", "script", "title", "template"})

    def __init__(self) -> None:
        self.blocks: list[tuple[str, str]] = []  # (kind: para | item | pre | end of list, text)
        self.inline: list[str] = []
        self.kind = "para"
        self.skip_depth = 0
        self.links: list[str] = []
        self.link_text_start: list[int] = []
        self.lists: list[list[int]] = []  # per open list: [next number] for ol, [] for ul
        self.table: list[list[str]] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip_depth += 1
            return
        if self.skip_depth:
            return
        attributes = dict(attrs)
        if self.table is not None:
            if tag == "tr":
                self.table.append([])
            elif tag in ("td", "th"):
                self.cell = []
            elif tag == "br" and self.cell is not None:
                self.cell.append(" ")
            elif tag == "img" and self.cell is not None:
                self.cell.append(attributes.get("alt") or "")
            return
        if tag == "table":
            self._flush()
            self.table = []
        elif tag in ("ul", "ol"):
            self._flush()
            self.lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            self._flush()
            self.kind = "item"
            depth = max(len(self.lists) - 1, 0)
            marker = "-"
            if self.lists and self.lists[-1]:
                marker = f"{self.lists[-1][0]}."
                self.lists[-1][0] += 1
            self.inline.append("  " * depth + marker + " ")
        elif tag in self.BLOCKS:
            self._flush()
        elif tag == "br":
            self.inline.append("\n")
        elif tag == "hr":
            self._flush()
            self.blocks.append(("para", "-" * 20))
        elif tag == "img":
            alt = attributes.get("alt") or ""
            if alt:
                self.inline.append(alt)
        elif tag == "a":
            self.links.append(attributes.get("href") or "")
            self.link_text_start.append(len(self.inline))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip_depth = max(self.skip_depth - 1, 0)
            return
        if self.skip_depth:
            return
        if self.table is not None:
            if tag in ("td", "th") and self.cell is not None:
                if not self.table:
                    self.table.append([])
                self.table[-1].append(_collapse("".join(self.cell)))
                self.cell = None
            elif tag == "table":
                self.blocks.append(("pre", _format_table(self.table)))
                self.table = None
            return
        if tag == "a" and self.links:
            href = self.links.pop()
            text = _collapse("".join(self.inline[self.link_text_start.pop():]))
            target = href[len("mailto:"):] if href.lower().startswith("mailto:") and "?" not in href else href
            if target and display_url(target) != display_url(text) and target != text:
                self.inline.append(f" ({target})")
        elif tag in ("ul", "ol"):
            self._flush()
            if self.lists:
                self.lists.pop()
            self.blocks.append(("end", ""))  # the next list starts after a blank line
        elif tag == "li" or tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        text = _SPACES.sub(" ", data)
        if self.cell is not None:
            self.cell.append(text)
        elif self.table is None:
            self.inline.append(text)

    def _flush(self) -> None:
        raw = "".join(self.inline)
        self.inline = []
        self.link_text_start = [0 for _ in self.link_text_start]
        lines = [_RUNS_OF_SPACES.sub(" ", line).strip() for line in raw.split("\n")]
        if self.kind == "item":
            # keep the indent before the list marker, which strip() removed
            indent = len(raw) - len(raw.lstrip(" "))
            lines[0] = " " * indent + lines[0]
        text = "\n".join(line for line in lines if line.strip())
        if text.strip():
            self.blocks.append((self.kind, text))
        self.kind = "para"

    def result(self, width: int) -> str:
        self._flush()
        parts: list[str] = []
        previous = ""
        for kind, text in self.blocks:
            if kind == "end":
                previous = kind
                continue
            if kind == "pre":
                rendered = text
            elif kind == "item":
                indent = len(text) - len(text.lstrip(" "))
                marker = text.lstrip(" ").split(" ", 1)[0]
                rendered = "\n".join(_filled(line, width, indent + len(marker) + 1) for line in text.split("\n"))
            else:
                rendered = "\n".join(_filled(line, width) for line in text.split("\n"))
            if parts:
                parts.append("\n" if kind == "item" and previous == "item" else "\n\n")
            parts.append(rendered)
            previous = kind
        return "".join(parts).strip("\n") + "\n"


_SPACES = re.compile(r"\s+")
_RUNS_OF_SPACES = re.compile(r" {2,}")


@functools.lru_cache(maxsize=2048)
def _filled(line: str, width: int, indent: int = 0) -> str:
    """One paragraph line wrapped to *width*. Most paragraphs of a template read the same in every email
    it renders (only those naming the partner differ), so each is wrapped once per run, not once per email."""
    return textwrap.fill(line, width, subsequent_indent=" " * indent, break_long_words=False, break_on_hyphens=False)


def _format_table(rows: list[list[str]]) -> str:
    """Rows as aligned columns; numbers (and "+2", "—") right-aligned."""
    rows = [row for row in rows if any(cell for cell in row)]
    if not rows:
        return ""
    columns = max(len(row) for row in rows)
    rows = [row + [""] * (columns - len(row)) for row in rows]
    widths = [max(len(row[c]) for row in rows) for c in range(columns)]
    lines = []
    for number, row in enumerate(rows):
        cells = []
        for c, cell in enumerate(row):
            numeric = number > 0 and c > 0 and bool(re.fullmatch(r"[-+−—$%.,\d\s]*\d?[%]?|—", cell))
            cells.append(cell.rjust(widths[c]) if numeric else cell.ljust(widths[c]))
        lines.append("  ".join(cells).rstrip())
        if number == 0 and len(rows) > 1:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- sample rows (for `check_all` and `preview` without a sheet) ---------------------------


def sample_context(template_name: str, clinic: Any = None, *, today: date) -> dict[str, Any]:
    """A complete, fictional rendering context for one template: every key the jobs provide."""
    name = _email_name(template_name)
    if clinic is None:
        clinic = SimpleNamespace(
            name="Sample Physical Therapy", address="1 Sample Street, Springfield", phone="(555) 010-0000",
            website="https://clinic.example", logo_url="https://clinic.example/logo.png",
            from_email="partners@clinic.example", reply_to="partners@clinic.example",
            staff_email="frontdesk@clinic.example",
            referral_instructions="Ask your client to call us and mention your business.",
        )
    partner = SimpleNamespace(
        business="Sample Strength Studio", kind="Personal trainer", contact_name="Sam Sample", stage="Meeting",
        first_name="Sam", email="sam@studio.example", phone="(555) 010-0001",
        website="https://studio.example", address="2 Sample Avenue, Springfield",
        introduced_by="Alex Example" if name == "outreach_warm_intro" else "",
        why_partner="We both help people get back to the activities they love.",
        meeting_date=today + timedelta(days=4), meeting_at=datetime.combine(today + timedelta(days=4), time(10)),
        perk="a free intro class",
        taking_our_patients="Book online at studio.example/book with code SAMPLE",
        sending_us_clients="Email us the client's first name; we call them within one working day.",
        logo_url="https://studio.example/logo.png",
    )
    referral = None
    if name == "discharge_patient":  # the patient's own row
        referral = SimpleNamespace(
            id="R-0001", direction="Out", share="Name, contact and goal", patient_first_name="Pat",
            patient_last_name="Sample", patient_email="pat@mail.example", goal="Back to running 5k",
            referred_on=today - timedelta(days=30), discharge_date=today - timedelta(days=1),
            first_visit=None, visits=8,
        )
    elif name.startswith(("discharge_", "referral_")):  # a partner's email: only what the patient shares
        referral = SimpleNamespace(  # the fields of model.SharedReferral
            id="R-0001", direction="Out" if name.startswith("discharge_") else "In", share="Name, contact and goal",
            patient_first_name="Pat", patient_last_name="Sample", patient_name="Pat Sample",
            patient_email="pat@mail.example", goal="Back to running 5k",
            referred_on=today - timedelta(days=30), discharge_date=today - timedelta(days=1),
            first_visit=today - timedelta(days=25),
        )
    event = None
    if name == "event_reminder":
        starts = datetime.combine(today + timedelta(days=3), time(17, 30))
        event = SimpleNamespace(id="E-0001", name="Posture screening day", date=starts.date(), starts=starts,
                                ends=starts + timedelta(hours=2), kind="Screening",
                                location="Sample Strength Studio", notes="Bring mats.")
    invite = None
    if name in ("meeting_confirmation", "meeting_cancellation", "event_reminder"):
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(getattr(clinic, "timezone", "") or "America/Chicago")
        start = event.starts if event is not None else partner.meeting_at
        end = event.ends if event is not None else start + timedelta(hours=1)
        invite = SimpleNamespace(start=start.replace(tzinfo=zone), end=end.replace(tzinfo=zone), sequence=0,
                                 method="CANCEL" if name == "meeting_cancellation" else "REQUEST",
                                 cancelled=name == "meeting_cancellation", update=False, moved_from=None,
                                 summary="Sample meeting", location="")
    digest = None
    if name == "owner_digest":
        digest = SimpleNamespace(
            period=f"{format_date(today - timedelta(days=7))} to {format_date(today - timedelta(days=1))}",
            kpis=[SimpleNamespace(label="Referrals out", value="4", previous="2", change="+2")],
            dormant=[SimpleNamespace(business="Sample Yoga", last_referral=date(2026, 7, 1))],
            attention=[SimpleNamespace(tab="Referrals", row="R-0002", status="Not sent: Email is not a valid address")],
            sheet_link="https://docs.google.com/spreadsheets/d/sample",
            sheet_words="",
            todo=[{"owner": "Alex", "items": [{"row": "P-0004", "partner": "Sample Strength Studio",
                                               "action": "no reply after the last follow-up: call Sam Sample"}]}],
            todo_count=1,
        )
    scorecard = None
    if name == "partner_scorecard":
        quarter = SimpleNamespace(label="2026-Q3", name="Q3 2026", months="July to September 2026")
        before = SimpleNamespace(label="2026-Q2", name="Q2 2026", months="April to June 2026")
        scorecard = SimpleNamespace(
            quarter=quarter, previous=before,
            current=SimpleNamespace(label="2026-Q4", name="Q4 2026", months="October to December 2026"),
            lines=[SimpleNamespace(label="Patients we referred to you", value=3, previous=1),
                   SimpleNamespace(label="Events we held together", value=1, previous=0)],
            total=4, previous_total=1, referred_to_them=4,
        )
    from_email = getattr(clinic, "reply_to", "") or getattr(clinic, "from_email", "")
    return {
        "clinic": clinic,
        "partner": None if name == "owner_digest" else partner,
        "referral": referral,
        "event": event,
        "digest": digest,
        "scorecard": scorecard,
        "outreach": name.startswith("outreach_"),
        "recipient": "owner" if name == "owner_digest" else "patient" if name == "discharge_patient" else "partner",
        "unsubscribe_mailto": f"mailto:{from_email}?subject=unsubscribe",
        "step": 1,
        "follow_up_days": [7, 14],
        "today": today,
        "invite": invite,
        "scorecards": True,
        "signer": None if name in ("owner_digest", "discharge_patient") else SimpleNamespace(
            name="Ana Sample", title="Partnerships lead", email="ana@clinic.example", phone="(555) 010-0002"),
    }


# --- helpers ------------------------------------------------------------------------------


def _email_name(template_name: str) -> str:
    name = template_name.removesuffix(TEMPLATE_SUFFIX)
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise TemplateProblem(f"{template_name!r} is not a template name; use e.g. outreach_intro")
    return name


def _blank_none(value: Any) -> Any:
    """Empty cells may arrive as None: print them as nothing rather than "None"."""
    return "" if value is None else value


def _attribute(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _one_line(value: Any) -> str:
    return re.sub(r"\s+", " ", str(value or "")).strip()


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
