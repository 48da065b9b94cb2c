"""The tabs and columns of SPEC §1: names staff see, which are required, auto or a choice list."""

from __future__ import annotations

from dataclasses import dataclass

from automations import core

KINDS = ("Personal trainer", "Massage therapist", "Fitness center", "Yoga/Pilates studio",
         "Dietitian", "Chiropractor", "Other")
STAGES = ("Prospect", "Contacted", "Meeting", "Agreement", "Active", "Paused", "Declined")
DIRECTIONS = ("Out", "In")
CONSENTS = ("Yes", "No", "Revoked")
SHARES = ("First name", "Name and contact", "Name, contact and goal")  # what a partner may know; blank: the first
SHARE_DEFAULT = SHARES[0]
LEGACY_PROCEDURE = "Referral procedure"  # an old Partners column: its text belongs in one of the two below

# Words that make a Goal read as clinical (SPEC: Goal is short and non-clinical): `check` warns on a
# Goal holding one. Matched as whole words, ignoring case and hyphens ("Post-op" = "post op").
# README "Goal: the clinical word list" documents this list; keep the two in step.
CLINICAL_WORDS = (
    "surgery", "surgical", "operation", "post-op", "postop", "post-operative", "pre-op", "repair", "repaired",
    "reconstruction", "replacement", "arthroscopy", "fusion", "fracture", "fractured", "broken", "tear", "torn",
    "rupture", "ruptured", "dislocation", "dislocated", "sprain", "sprained", "diagnosis", "diagnosed",
    "syndrome", "disorder", "acl", "mcl", "meniscus", "rotator cuff", "herniated", "hernia", "slipped disc",
    "tendinitis", "tendonitis", "tendinopathy", "arthritis", "osteoarthritis", "osteoporosis", "sciatica",
    "stenosis", "scoliosis", "concussion", "whiplash", "plantar fasciitis",
)
EVENT_KINDS = ("Open house", "Class", "Screening", "Social", "Talk")
YES = ("Yes",)
SCORECARD = ("Yes", "No")  # blank means Yes: the quarterly scorecard goes to an Active partner


@dataclass(frozen=True)
class Column:
    """One column: its header text, what its cells hold, and who writes it."""

    name: str
    kind: str = "text"  # text | date | datetime | end | email | choice | yes | int | url | partner
    required: bool = False
    auto: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class TabSpec:
    """One tab: the key used in code and [sheet.tabs], its default title and columns."""

    key: str
    title: str
    columns: tuple[Column, ...]
    id_column: str | None = None
    id_prefix: str = ""

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


STATUS = Column(core.STATUS, auto=True)

PARTNERS = TabSpec(
    "partners", "Partners", id_column="Partner ID", id_prefix="P",
    columns=(
        Column("Partner ID"),
        Column("Business", required=True),
        Column("Kind", "choice", choices=KINDS),
        Column("Contact name"),
        Column("Email", "email"),
        Column("Phone"),
        Column("Website", "url"),
        Column("Address"),
        Column("Introduced by"),
        Column("Why partner"),
        Column("Stage", "choice", choices=STAGES),
        Column("Meeting date", "datetime"),
        Column("Perk"),
        Column("Taking our patients"),  # how a patient we introduce starts with them (booking link or code, who calls)
        Column("Sending us clients"),  # how they refer clients to us; blank: [clinic] referral_instructions
        Column("Logo URL", "url"),
        Column("Do not email", "yes", choices=YES),
        Column("Scorecard", "choice", choices=SCORECARD),
        Column("Owner"),
        Column("Notes"),
        Column("Outreach step", "int", auto=True),
        Column("Last emailed", "date", auto=True),
        Column("Next follow-up", "date", auto=True),
        Column("Stage since", "date", auto=True),
        STATUS,
    ),
)

REFERRALS = TabSpec(
    "referrals", "Referrals", id_column="Referral ID", id_prefix="R",
    columns=(
        Column("Referral ID"),
        Column("Direction", "choice", required=True, choices=DIRECTIONS),
        Column("Partner", "partner", required=True),
        Column("Patient first name", required=True),
        Column("Patient last name"),
        Column("Patient email", "email"),
        Column("Referred on", "date"),
        Column("Consent", "choice", choices=CONSENTS),
        Column("Consent expires", "date"),
        Column("Share", "choice", choices=SHARES),
        Column("Goal"),
        Column("Discharge date", "date"),
        Column("First visit", "date"),
        Column("Visits", "int"),
        Column("Notes"),
        Column("Partner emailed", "date", auto=True),
        Column("Patient emailed", "date", auto=True),
        Column("Thanks sent", "date", auto=True),
        Column("Update sent", "date", auto=True),
        Column("Loop closed", "date", auto=True),
        STATUS,
    ),
)

EVENTS = TabSpec(
    "events", "Events", id_column="Event ID", id_prefix="E",
    columns=(
        Column("Event ID"),
        Column("Event", required=True),
        Column("Date", "datetime", required=True),
        Column("Ends", "end"),
        Column("Partner", "partner"),
        Column("Kind", "choice", choices=EVENT_KINDS),
        Column("Location"),
        Column("Attendees", "int"),
        Column("New patients", "int"),
        Column("Notes"),
        Column("Reminder sent", "date", auto=True),
        STATUS,
    ),
)

OPTOUTS = TabSpec(
    "optouts", "Opt-outs",
    columns=(Column("Email", "email", required=True), Column("Date", "date"), Column("Reason"), STATUS),
)

LOG = TabSpec(
    "log", "Log",
    columns=(Column("Time", "datetime", auto=True),
             *(Column(n, auto=True) for n in ("Job", "Template", "To", "Row", "Message-ID", "Result"))),
)

DASHBOARD = TabSpec("dashboard", "Dashboard", columns=())

TABS: dict[str, TabSpec] = {t.key: t for t in (PARTNERS, REFERRALS, EVENTS, OPTOUTS, LOG, DASHBOARD)}

# The columns each job decides by, tab by tab (beyond every tab's ID, required and auto columns):
# a job never acts on a tab lacking one of them, since a missing column reads as blank everywhere.
_PARTNER_ADDRESS = ("Business", "Email", "Do not email")
_PROGRAMME = {"partners": ("Business", "Stage"),
              "referrals": ("Direction", "Partner", "Referred on", "Consent", "Discharge date", "First visit"),
              "events": ("Event", "Date", "Partner")}
JOB_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "outreach": {"partners": (*_PARTNER_ADDRESS, "Stage", "Introduced by", "Meeting date", "Outreach step",
                              "Last emailed", "Stage since"),
                 "optouts": ("Email",)},
    # Share decides what the partner is told: a sheet without it is refused (blank cells mean First name),
    # and so is one without Taking our patients, which both discharge emails state.
    "discharge": {"referrals": ("Direction", "Partner", "Consent", "Consent expires", "Share", "Discharge date",
                                "Patient email", "Partner emailed", "Patient emailed"),
                  "partners": (*_PARTNER_ADDRESS, "Stage", "Taking our patients"), "optouts": ("Email",)},
    "referrals_in": {"referrals": ("Direction", "Partner", "Consent", "Consent expires", "First visit",
                                   "Discharge date", "Thanks sent", "Update sent", "Loop closed"),
                     "partners": _PARTNER_ADDRESS, "optouts": ("Email",)},
    "events": {"events": ("Event", "Date", "Partner", "Reminder sent"), "partners": _PARTNER_ADDRESS,
               "optouts": ("Email",)},
    "dashboard": _PROGRAMME,
    "digest": _PROGRAMME,
    "replies": {"partners": ("Email",), "optouts": ("Email",)},
    # Scorecard is needed: on a sheet made before the column existed no partner could have said No yet,
    # so a missing column is not read as "blank = Yes". The counts need every column they count by.
    "scorecard": {"partners": (*_PARTNER_ADDRESS, "Stage", "Scorecard"), "optouts": ("Email",),
                  "referrals": ("Direction", "Partner", "Referred on", "Discharge date", "First visit"),
                  "events": ("Event", "Date", "Partner")},
}


def base_columns(spec: TabSpec) -> list[str]:
    """Columns every read of a tab needs: its ID, its required cells and what the automation writes."""
    return [c.name for c in spec.columns if c.required or c.auto or c.name == spec.id_column]
