"""Typed rows: the spreadsheet's tabs parsed into Partners, Referrals, Events and Opt-outs.

Parsing never raises for a bad cell: each row carries the problems found in it (one sentence
each, naming the column and what to write instead), and jobs skip rows with problems in the
cells they need. Rows are addressed by `RowRef` for write-back: by ID, or by their content when
the ID is missing (a new one is assigned) or duplicated.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Mapping, Sequence

from automations import cells
from automations.config import Settings
from automations.errors import CellError, SheetLayoutError
from automations.schema import (
    CLINICAL_WORDS,
    EVENTS,
    JOB_COLUMNS,
    LEGACY_PROCEDURE,
    PARTNERS,
    REFERRALS,
    SHARE_DEFAULT,
    SHARES,
    TABS,
    Column,
    TabSpec,
    base_columns,
)
from automations.sheets.base import Backend, RowWrite, SheetRow, Table, fingerprint, plan_cells

Day = date  # Event has a field named `date`; annotations inside it use this name
DEFAULT_LENGTH = timedelta(hours=1)  # a meeting, or an event without Ends


@dataclass(frozen=True)
class RowRef:
    """Where a row is, for messages and write-back: tab title, ID, row number when read, content."""

    tab: str
    row_id: str
    number: int
    match: tuple[str, ...] | None = None  # the row's content: how a row with a duplicate ID is found
    new: bool = False  # the ID was assigned by this read; it is written before anything else
    identity: str = ""  # who the row is about (see IDENTITY): an ID retyped onto another partner or patient shows

    @property
    def label(self) -> str:
        return self.row_id if self.match is None or self.new else f"{self.row_id or 'row'} (row {self.number})"

    def write(self, values: Mapping[str, Any]) -> RowWrite:
        """A write addressed by ID; by content only for a duplicate ID (new IDs are written first)."""
        return RowWrite(self.tab, self.row_id, dict(values), None if self.new else self.match, self.number)


class _Row:
    """What every row with an ID offers: its ID, from where the row is."""

    ref: RowRef

    @property
    def id(self) -> str:
        return self.ref.row_id


@dataclass(frozen=True)
class Partner(_Row):
    ref: RowRef
    business: str
    kind: str
    contact_name: str
    email: str | None
    email_text: str
    phone: str
    website: str
    address: str
    introduced_by: str
    why_partner: str
    stage: str
    meeting_date: date | None
    perk: str
    taking_our_patients: str  # how a patient we introduce starts with them: booking link or code, who calls whom
    sending_us_clients: str  # how they refer clients to us; blank: [clinic] referral_instructions
    logo_url: str
    do_not_email: bool
    scorecard: str  # Yes, No or "" (blank: Yes)
    owner: str
    notes: str
    outreach_step: int
    last_emailed: date | None
    next_follow_up: date | None
    stage_since: date | None
    status: str
    problems: tuple[str, ...] = ()
    meeting_at: datetime | None = None  # Meeting date with its time (the clinic's wall clock); None: no time given
    old_procedure: bool = False  # the old Referral procedure column holds text on this row (never read into an email)

    @property
    def first_name(self) -> str:
        return self.contact_name.split()[0] if self.contact_name.split() else ""


@dataclass(frozen=True)
class Referral(_Row):
    ref: RowRef
    direction: str
    partner_text: str
    partner: Partner | None
    patient_first_name: str
    patient_last_name: str
    patient_email: str | None
    referred_on: date | None
    consent: str
    consent_expires: date | None
    share: str  # one of SHARES: what the patient agreed the partner may know (blank reads as First name)
    goal: str
    discharge_date: date | None
    first_visit: date | None
    visits: int | None
    notes: str
    partner_emailed: date | None
    patient_emailed: date | None
    thanks_sent: date | None
    update_sent: date | None
    loop_closed: date | None
    status: str
    problems: tuple[str, ...] = ()

    def consent_gap(self, on: date) -> str | None:
        """Why the patient's consent does not allow sharing on day *on*, or None when it does.

        One of "missing" (Consent blank), "declined" (No), "revoked", "no expiry" (Yes without Consent
        expires: an authorization names its expiry) and "expired" (Consent expires before *on*).
        """
        if self.consent == "Yes":
            if self.consent_expires is None:
                return "no expiry"
            return "expired" if self.consent_expires < on else None
        return {"No": "declined", "Revoked": "revoked"}.get(self.consent, "missing")


@dataclass(frozen=True)
class SharedReferral:
    """A referral as a partner's email holds it: only what the patient agreed to share, never Notes.

    Partner templates get this instead of the row, so a template cannot print a detail the
    patient's `Share` does not allow: the cell is simply not there.
    """

    id: str
    direction: str
    share: str
    patient_first_name: str
    patient_last_name: str = ""
    patient_email: str = ""
    goal: str = ""
    referred_on: date | None = None  # to the partner who sent us the client: the day they did,
    first_visit: date | None = None  # when the client came in,
    discharge_date: date | None = None  # and when their course of care with us ended

    @property
    def patient_name(self) -> str:
        return " ".join(n for n in (self.patient_first_name, self.patient_last_name) if n)


def shared_at_discharge(r: Referral) -> SharedReferral:
    """What the partner we introduce a patient to may know: the first name, then contact, then goal, as Share says."""
    contact = r.share in SHARES[1:]
    return SharedReferral(id=r.id, direction=r.direction, share=r.share, patient_first_name=r.patient_first_name,
                          patient_last_name=r.patient_last_name if contact else "",
                          patient_email=(r.patient_email or "") if contact else "",
                          goal=r.goal if r.share == SHARES[2] else "")


def shared_with_referrer(r: Referral) -> SharedReferral:
    """What the partner who sent us the client hears back: the first name they sent, and when care began and ended."""
    return SharedReferral(id=r.id, direction=r.direction, share=SHARE_DEFAULT, patient_first_name=r.patient_first_name,
                          referred_on=r.referred_on, first_visit=r.first_visit, discharge_date=r.discharge_date)


def clinical_words(goal: str) -> list[str]:
    """The words of CLINICAL_WORDS that *goal* holds (whole words; case and hyphens ignored)."""
    text = f" {_words(goal)} "
    return [word for word in CLINICAL_WORDS if f" {_words(word)} " in text]


def _words(text: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


@dataclass(frozen=True)
class Event(_Row):
    ref: RowRef
    name: str
    date: Day | None
    partner_text: str
    partner: Partner | None
    kind: str
    location: str
    attendees: int | None
    new_patients: int | None
    notes: str
    reminder_sent: Day | None
    status: str
    problems: tuple[str, ...] = ()
    starts: datetime | None = None  # Date with its start time (the clinic's wall clock); None: no time given
    ends: datetime | None = None  # from Ends, else an hour after the start


@dataclass(frozen=True)
class Problem:
    """One data problem, printed by `check` as "Tab ROW-ID: message"."""

    ref: RowRef
    message: str

    def __str__(self) -> str:
        return f"{self.ref.tab} {self.ref.label}: {self.message}"

    def redacted(self) -> str:
        """The line without the cell values it quotes: safe to print where logs may keep it."""
        return f"{self.ref.tab} {self.ref.label}: {hide_values(self.message)}; see the row's Automation status"


def hide_values(message: str) -> str:
    """A sentence about a row of patient data without the cell values it quotes (printed output may be kept)."""
    hidden = re.sub(r"'[^']*'|\"[^\"]*\"", "(value hidden)", message)
    return re.sub(r"\s*\(There .*?\)|\s*\(The .*?\)", "", hidden)  # the address checker's detail


@dataclass
class Book:
    """Every row-holding tab of the spreadsheet, parsed; what jobs decide from."""

    partners: list[Partner] = field(default_factory=list)
    referrals: list[Referral] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    opted_out: frozenset[str] = frozenset()
    problems: list[Problem] = field(default_factory=list)
    new_ids: list[RowWrite] = field(default_factory=list)
    tables: dict[str, Table] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    date_order: str = "MDY"
    layout: list[str] = field(default_factory=list)  # missing tabs and columns (see layout_problems)
    ids_high: dict[str, int] = field(default_factory=dict)  # ID prefix -> highest number seen, new IDs included

    def blocked(self, address: str | None) -> bool:
        """True when nothing may be sent to *address* (opted out, or a partner marked Do not email)."""
        if not address:
            return True
        key = address.lower()
        return key in self.opted_out or any(p.do_not_email and p.email and p.email.lower() == key for p in self.partners)

    def rows(self) -> list[Partner | Referral | Event]:
        """Every row with an ID, tab by tab."""
        return [*self.partners, *self.referrals, *self.events]

    def problems_by_ref(self) -> dict[RowRef, list[str]]:
        grouped: dict[RowRef, list[str]] = {}
        for problem in self.problems:
            grouped.setdefault(problem.ref, []).append(problem.message)
        return grouped


READ_KEYS = ("partners", "referrals", "events", "optouts")


def read_book(backend: Backend, settings: Settings, keys: Sequence[str] = READ_KEYS, *,
              jobs: Sequence[str] = (), strict: bool = True, ids_seen: Mapping[str, int] | None = None) -> Book:
    """Read the tabs in one request and parse them; new row IDs go above *ids_seen* (prefix -> number).

    A missing tab or column (see `layout_problems`, for *jobs*) raises SheetLayoutError when
    *strict*; otherwise the lines are in `Book.layout` and a missing tab reads as empty (`check`).
    """
    titles = {key: settings.sheet.title(key) for key in keys}
    read = backend.read(list(titles.values()))
    tables = {key: read.get(title) for key, title in titles.items()}
    workbook_tabs = backend.tab_titles() if None in tables.values() else ()
    problems = layout_problems(tables, titles, jobs, workbook_tabs)
    if problems and strict:
        raise SheetLayoutError("; ".join(problems))
    book = parse_book({key: table for key, table in tables.items() if table is not None}, titles,
                      settings.sheet.date_order, ids_seen)
    book.layout = problems
    return book


def with_writes(book: Book, writes: Sequence[RowWrite]) -> Book:
    """The book as it reads once its new IDs and *writes* are in the sheet; pure (what a run leaves the
    sheet as, for the figures that report the run, without reading it again)."""
    tables = dict(book.tables)
    specs = {table.title: TABS[key] for key, table in tables.items()}
    for group in (book.new_ids, writes):  # new IDs first: later writes address those rows by them
        targets, _ = plan_cells({t.title: t for t in tables.values()}, specs, list(group))
        cells_by_tab: dict[str, dict[int, dict[int, Any]]] = {}
        for title, target in targets:
            cells_by_tab.setdefault(title, {}).setdefault(target.row, {})[target.col] = target.value
        for key, table in tables.items():
            changed = cells_by_tab.get(table.title)
            if changed:
                rows = [SheetRow(row.number, _with_cells(row.values, changed[row.number], len(table.header)))
                        if row.number in changed else row for row in table.rows]
                tables[key] = Table(table.title, table.header, rows, dict(table.index))
    after = parse_book(tables, book.titles, book.date_order, book.ids_high)
    after.opted_out = after.opted_out | book.opted_out  # addresses added by this run (the mailbox's opt-outs)
    after.layout = book.layout
    return after


def _with_cells(values: tuple[Any, ...], cells_at: Mapping[int, Any], width: int) -> tuple[Any, ...]:
    line = list(values) + [None] * (width - len(values))
    for col, value in cells_at.items():
        if col < len(line):
            line[col] = value
    return tuple(line)


def require_layout(book: Book, jobs: Sequence[str]) -> None:
    """Raise SheetLayoutError when a tab lacks a column one of *jobs* decides by: nothing is sent."""
    problems = layout_problems(book.tables, book.titles, jobs)
    if problems:
        raise SheetLayoutError("; ".join(problems))


def layout_problems(tables: Mapping[str, Table | None], titles: Mapping[str, str], jobs: Sequence[str] = (),
                    workbook_tabs: Sequence[str] = ()) -> list[str]:
    """One line per missing tab or column the read tabs and *jobs* need, each with its fix; pure.

    *tables* and *titles* are keyed by tab key; *workbook_tabs* lists every tab title in the
    spreadsheet (to name a renamed tab). A column is named by its near-match header when one exists.
    """
    problems: list[str] = []
    in_use = any(table is not None and table.rows for table in tables.values())
    for key, table in tables.items():
        title = titles.get(key, TABS[key].title)
        if table is None:
            problems.append(_missing_tab(key, title, in_use, [t for t in workbook_tabs if t not in titles.values()]))
            continue
        needed: dict[str, list[str]] = {name: [] for name in base_columns(TABS[key])}
        for job in jobs:
            for name in JOB_COLUMNS.get(job, {}).get(key, ()):
                needed.setdefault(name, []).append(job)
        problems += [_missing_column(table, TABS[key], name, by) for name, by in needed.items() if not table.has(name)]
    return problems


def _missing_tab(key: str, title: str, in_use: bool, others: Sequence[str]) -> str:
    near = difflib.get_close_matches(title.casefold(), [t.casefold() for t in others], n=1, cutoff=0.6)
    actual = next((t for t in others if near and t.casefold() == near[0]), None)
    if actual is not None:
        return (f"{title} tab not found (is it {actual!r}?); rename it back to {title}, or set "
                f"[sheet.tabs] {key} = \"{actual}\"")
    if in_use:
        return f"{title} tab not found; rename it back, or set [sheet.tabs] {key} = \"<actual name>\""
    return f"{title} tab not found; run `partnerloop init` to add it"


def _missing_column(table: Table, spec: TabSpec, name: str, jobs: Sequence[str]) -> str:
    why = f" ({', '.join(jobs)} decide{'s' if len(jobs) == 1 else ''} by it)" if jobs else ""
    known = {cells.normalise_header(c.name) for c in spec.columns}
    staff_headers = [h for h in table.header if h.strip() and cells.normalise_header(h) not in known]
    near = difflib.get_close_matches(_squashed(name), [_squashed(h) for h in staff_headers], n=1, cutoff=0.8)
    header = next((h for h in staff_headers if near and _squashed(h) == near[0]), None)
    if header is not None:
        return f"{table.title}: column {name} not found{why}; is it {header!r}? Rename it back to {name}"
    return f"{table.title}: column {name} not found{why}; add the column (`partnerloop init` adds it)"


def parse_book(tables: Mapping[str, Table], titles: Mapping[str, str], date_order: str = "MDY",
               ids_seen: Mapping[str, int] | None = None) -> Book:
    """Parse tables (keyed by tab key) into a Book; pure, no I/O.

    *date_order* reads dates typed as text; *ids_seen* (ID prefix -> the highest number ever seen,
    kept in the ledger) keeps a new row from being given the ID of a row deleted since.
    """
    book = Book(tables=dict(tables), titles=dict(titles), date_order=date_order, ids_high=dict(ids_seen or {}))
    if "optouts" in tables:
        book.opted_out = frozenset(_optouts(tables["optouts"], book))
    if "partners" in tables:
        parsed = _rows(tables["partners"], PARTNERS, book)
        _old_procedure(tables["partners"], parsed)
        book.partners = [_partner(r) for r in parsed]
        shared = _shared_business(parsed)
    index = PartnerIndex(book.partners)
    if "referrals" in tables:
        book.referrals = [_referral(r, index) for r in _rows(tables["referrals"], REFERRALS, book)]
    if "events" in tables:
        book.events = [_event(r, index) for r in _rows(tables["events"], EVENTS, book)]
    for row in book.rows():
        book.problems += [Problem(row.ref, message) for message in row.problems]
    if "partners" in tables:
        book.problems += shared
    return book


@dataclass
class _Parsed:
    ref: RowRef
    values: dict[str, Any]
    problems: list[str]


def _rows(table: Table, spec: TabSpec, book: Book) -> list[_Parsed]:
    assert spec.id_column is not None
    id_col = spec.id_column
    seen: dict[str, int] = {}
    numbers = [_id_number(cells.text(table.get(r, id_col)), spec.id_prefix) for r in table.rows]
    next_number = max([n for n in numbers if n is not None] + [book.ids_high.get(spec.id_prefix, 0)], default=0) + 1
    parsed = []
    for row in table.rows:
        row_id = cells.one_line(table.get(row, id_col))
        problems: list[str] = []
        match = None
        if not row_id:
            row_id = f"{spec.id_prefix}-{next_number:04d}"
            next_number += 1
            match = fingerprint(row.values)
            book.new_ids.append(RowWrite(table.title, row_id, {id_col: row_id}, match, row.number))
        elif row_id in seen:
            match = fingerprint(row.values)
            problems.append(f"duplicate {id_col} {row_id}, also on row {seen[row_id]}; give this row its own ID "
                            "or clear the cell to have one assigned")
        else:
            seen[row_id] = row.number
        ref = RowRef(table.title, row_id, row.number, match, new=match is not None and not problems,
                     identity=identity(table, row, spec))
        values = {c.name: _cell(table, row, c, problems, book.date_order) for c in spec.columns if c.name != id_col}
        parsed.append(_Parsed(ref, values, problems))
    book.ids_high[spec.id_prefix] = max(book.ids_high.get(spec.id_prefix, 0), next_number - 1)
    return parsed


IDENTITY = {"P": ("Business",), "R": ("Patient first name", "Patient last name"), "E": ("Event",)}
"""The cells that say whom a row is about, by ID prefix: another value under the same ID is another row
(a partner's Email may be corrected; its Business names it)."""


def identity(table: Table, row: SheetRow, spec: TabSpec) -> str:
    """A short hash of the row's identifying cells (no patient detail can be read back from it)."""
    parts = [cells.normalise_header(cells.one_line(table.get(row, c))) for c in IDENTITY.get(spec.id_prefix, ())]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16] if any(parts) else ""


def _id_number(row_id: str, prefix: str) -> int | None:
    found = re.fullmatch(rf"{re.escape(prefix)}-(\d+)", row_id.strip(), re.IGNORECASE)
    return int(found.group(1)) if found else None


def _cell(table: Table, row: SheetRow, column: Column, problems: list[str], date_order: str = "MDY") -> Any:
    raw = table.get(row, column.name)
    try:
        if column.required and cells.is_blank(raw):
            raise CellError(required_empty(column.name))
        if column.kind == "date":
            return cells.parse_date(raw, column.name, date_order)
        if column.kind == "datetime":
            return cells.parse_moment(raw, column.name, date_order)
        if column.kind == "end":
            return cells.parse_end(raw, column.name, date_order)
        if column.kind == "email":
            return cells.parse_email(raw, column.name)
        if column.kind == "choice":
            return cells.parse_choice(raw, column.name, column.choices) or ""
        if column.kind == "yes":
            return cells.parse_flag(raw)
        if column.kind == "int":
            return cells.parse_int(raw, column.name)
        value = cells.one_line(raw)
        if value.startswith("=") and not column.auto:
            raise CellError(f"{column.name} holds a formula {value[:30]!r}; partnerloop uses it only as text")
        return value
    except CellError as exc:
        if not column.auto:
            problems.append(str(exc))
        return {"date": None, "datetime": None, "end": None, "email": None, "yes": False,
                "int": None}.get(column.kind, cells.one_line(raw))


def _partner(p: _Parsed) -> Partner:
    v = p.values
    email_text = cells.one_line(v["Email"]) if v["Email"] else ""
    return Partner(
        ref=p.ref, business=v["Business"], kind=v["Kind"], contact_name=v["Contact name"],
        email=v["Email"], email_text=email_text, phone=v["Phone"], website=v["Website"], address=v["Address"],
        introduced_by=v["Introduced by"], why_partner=v["Why partner"], stage=v["Stage"] or "Prospect",
        meeting_date=_day(v["Meeting date"]), meeting_at=_timed(v["Meeting date"]), perk=v["Perk"],
        taking_our_patients=v["Taking our patients"], sending_us_clients=v["Sending us clients"],
        logo_url=v["Logo URL"], do_not_email=v["Do not email"], scorecard=v["Scorecard"],
        owner=v["Owner"], notes=v["Notes"],
        outreach_step=v["Outreach step"] or 0, last_emailed=v["Last emailed"], next_follow_up=v["Next follow-up"],
        stage_since=v["Stage since"], status=v["Automation status"], problems=tuple(p.problems),
        old_procedure=bool(v.get(LEGACY_PROCEDURE)),
    )


OLD_PROCEDURE_PROBLEM = (
    f"{LEGACY_PROCEDURE} is an old column and holds text here: move it into Taking our patients (how a patient "
    "we introduce starts with them: a booking link or code, who calls whom) or Sending us clients (how they send "
    "clients to us), then clear the cell; until then this partner gets no welcome or discharge email")


def _old_procedure(table: Table, partners: list[_Parsed]) -> None:
    """A Partners row whose old Referral procedure cell holds text: a problem until staff move it (nothing is guessed).

    Its text is never kept: only that it is there, so no email can ever print it.
    """
    if not table.has(LEGACY_PROCEDURE):
        return
    for row, parsed in zip(table.rows, partners, strict=True):
        if not cells.is_blank(table.get(row, LEGACY_PROCEDURE)):
            parsed.values[LEGACY_PROCEDURE] = True
            parsed.problems.append(OLD_PROCEDURE_PROBLEM)


def _shared_business(partners: list[_Parsed]) -> list[Problem]:
    """Two rows with one Business: both reported (by `check`), since a Partner cell naming it cannot tell
    them apart; each partner's own emails still go (two branches of one gym are two partners)."""
    rows: dict[str, list[_Parsed]] = {}
    for p in partners:
        if p.values["Business"]:
            rows.setdefault(p.values["Business"].strip().casefold(), []).append(p)
    return [Problem(p.ref, f"Business {p.values['Business'][:40]!r} is also on "
                           f"{', '.join(o.ref.label for o in same if o is not p)}; give each partner its own "
                           "Business name, or delete the duplicate row")
            for same in rows.values() if len(same) > 1 for p in same]


def _squashed(text: str) -> str:
    """Text with case, spaces and punctuation removed: "Body Works" and "BodyWorks" look alike."""
    return re.sub(r"[\W_]+", "", text.casefold())


class PartnerIndex:
    """Finds the partner a Referral or Event `Partner` cell names: exactly one Business or Partner ID."""

    def __init__(self, partners: Sequence[Partner]) -> None:
        self.exact: dict[str, list[Partner]] = {}
        self.loose: dict[str, list[Partner]] = {}
        for partner in partners:
            keys = {partner.id.strip().casefold(), partner.business.strip().casefold()} - {""}
            for key in keys:
                self.exact.setdefault(key, []).append(partner)
            for key in {_squashed(k) for k in keys} - {""}:
                self.loose.setdefault(key, []).append(partner)

    def resolve(self, text: str, problems: list[str], column: str) -> Partner | None:
        """The one partner *text* names exactly; otherwise None and a problem naming the candidate rows."""
        if not text:
            return None
        exact = self.exact.get(text.strip().casefold(), [])
        if len(exact) == 1:
            return exact[0]
        quoted = f"{column} {text[:40]!r}"
        if exact:
            problems.append(f"{quoted} fits several rows on Partners ({_labels(exact)}); write the Partner ID "
                            "of the one you mean")
        elif near := self.loose.get(_squashed(text), []):
            problems.append(f"{quoted} is not exactly a Business or Partner ID; did you mean "
                            f"{_labels(near)}? Write the Business exactly as on Partners, or the Partner ID")
        else:
            problems.append(f"{quoted} is not a Business or Partner ID on the Partners tab")
        return None


def _labels(partners: Sequence[Partner]) -> str:
    return ", ".join(f"{p.ref.label} ({p.business[:40]})" for p in partners)


def _referral(p: _Parsed, index: PartnerIndex) -> Referral:
    v = p.values
    partner = index.resolve(v["Partner"], p.problems, "Partner")
    if v["Consent expires"] and v["Consent"] != "Yes" and not v["Consent"]:
        p.problems.append("Consent expires is set but Consent is empty; write Yes, No or Revoked")
    return Referral(
        ref=p.ref, direction=v["Direction"], partner_text=v["Partner"], partner=partner,
        patient_first_name=v["Patient first name"], patient_last_name=v["Patient last name"],
        patient_email=v["Patient email"], referred_on=v["Referred on"], consent=v["Consent"],
        consent_expires=v["Consent expires"], share=v["Share"] or SHARE_DEFAULT, goal=v["Goal"],
        discharge_date=v["Discharge date"],
        first_visit=v["First visit"], visits=v["Visits"], notes=v["Notes"],
        partner_emailed=v["Partner emailed"], patient_emailed=v["Patient emailed"], thanks_sent=v["Thanks sent"],
        update_sent=v["Update sent"], loop_closed=v["Loop closed"], status=v["Automation status"],
        problems=tuple(p.problems),
    )


def _day(moment: date | None) -> date | None:
    """The day of a date or date-time cell."""
    return moment.date() if isinstance(moment, datetime) else moment


def _timed(moment: date | None) -> datetime | None:
    """The date-time of a cell that gave a time of day; None for a date alone."""
    return moment if isinstance(moment, datetime) else None


def required_empty(column: str) -> str:
    """The problem a blank required cell is."""
    return f"{column} is empty; it is required"


def _event(p: _Parsed, index: PartnerIndex) -> Event:
    v = p.values
    partner = index.resolve(v["Partner"], p.problems, "Partner")
    if v["Date"] is None and v["Reminder sent"] is not None:
        # The Date cleared after a reminder went: staff called the event off (the events job cancels the
        # invites it sent), not a row left half filled in.
        p.problems[:] = [m for m in p.problems if m != required_empty("Date")]
    starts = _timed(v["Date"])
    ends = None
    if starts is not None:
        end = v["Ends"]
        ends = datetime.combine(starts.date(), end) if isinstance(end, time) else end or starts + DEFAULT_LENGTH
        if ends <= starts:
            shown = f"{end:%H:%M}" if isinstance(end, time) else f"{ends:%Y-%m-%d %H:%M}"
            p.problems.append(f"Ends {shown} is not after the start ({starts:%Y-%m-%d %H:%M}); "
                              "write the time the event ends, like 19:00, or leave it blank for one hour")
            ends = None
    return Event(
        ref=p.ref, name=v["Event"], date=_day(v["Date"]), partner_text=v["Partner"], partner=partner, kind=v["Kind"],
        location=v["Location"], attendees=v["Attendees"], new_patients=v["New patients"], notes=v["Notes"],
        reminder_sent=v["Reminder sent"], status=v["Automation status"], problems=tuple(p.problems),
        starts=starts if ends is not None else None, ends=ends,
    )


def _optouts(table: Table, book: Book) -> set[str]:
    """Every address any Opt-outs cell names, in whatever form staff typed it."""
    addresses: set[str] = set()
    for row in table.rows:
        raw = table.get(row, "Email")
        named = cells.addresses_in(raw)
        addresses.update(named)
        if not named and not cells.is_blank(raw):
            # An unreadable opt-out still blocks what it plainly names: safer to send nothing.
            addresses.add(cells.text(raw).strip().lower())
            ref = RowRef(table.title, f"row {row.number}", row.number, fingerprint(row.values))
            book.problems.append(Problem(ref, f"Email {cells.text(raw)[:60]!r} names no address; "
                                              "write the address that asked to stop, like name@example.com"))
    return addresses
