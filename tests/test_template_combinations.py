"""Every template renders, with no value missing or left empty, for every combination the jobs produce.

The table below says how each value the jobs fill may vary. CROSSED values are combined in every
way with each other; each VARIED value is also tried on its own against the sample row
(`sample_context` in render.py). To cover a new cell, add a line: e.g.
`"partner.address": ("", "12 Elm Street")` or
`"referral.share": ("First name", "First name and goal", "Name and email")`. A key whose parent
is absent for a template (no `referral` in outreach letters) is not tried there.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from automations.mail.render import Renderer, sample_context

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TODAY = date(2026, 11, 27)
OWNER = SimpleNamespace(name="Ana Diaz", title="Partnerships lead", email="ana@clinic.example", phone="(555) 010-0002")
KINDS = ("Personal trainer", "Massage therapist", "Fitness center", "Yoga/Pilates studio", "Dietitian",
         "Chiropractor", "Other", "")

# Combined in every way with each other.
CROSSED: dict[str, tuple[Any, ...]] = {
    "signer": (None, OWNER),  # the partner's Owner is in [[staff]], or the team signs
    "clinic.logo_url": ("", "https://clinic.example/logo.png"),
    "partner.logo_url": ("", "https://studio.example/logo.png"),
    "partner.taking_our_patients": ("", "Book online at studio.example/book with code RIVERSIDE"),
}
# Each tried on its own.
VARIED: dict[str, tuple[Any, ...]] = {
    "partner.kind": KINDS,
    "partner.contact_name": ("", "Dr. Ana Diaz", "ANA DIAZ", "Front desk"),
    "partner.why_partner": ("", "Maya coaches post-rehab strength, the step after our discharge plans"),
    "partner.perk": ("", "a free intro class"),
    "partner.sending_us_clients": ("", "Email us the client's first name; we call them within one working day."),
    "partner.introduced_by": ("", "Dr. Alan Reyes"),
    "partner.website": ("", "studio.example"),
    "partner.phone": ("",),
    "partner.meeting_date": (None,),
    "clinic.phone": ("",),
    "clinic.website": ("",),
    "referral.goal": ("",),
    "referral.patient_first_name": ("JORDAN",),  # a required cell: never blank in a job's context
    "event.location": ("",),
    "event.notes": ("",),
}
# Who a template's copy is for, where a job sends it to more than one (events: partner and staff).
RECIPIENTS: dict[str, tuple[str, ...]] = {"event_reminder": ("partner", "staff")}
# Templates a job also sends with no partner (an event not linked to one).
WITHOUT_PARTNER = ("event_reminder",)

NAMES = Renderer(TEMPLATES).names()
CROSSED_CASES = [dict(zip(CROSSED, values, strict=True)) for values in itertools.product(*CROSSED.values())]
VARIED_CASES = [{key: value} for key, values in VARIED.items() for value in values]


def with_values(context: dict[str, Any], values: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of *context* with dotted *values* set; None when a key's parent is absent here."""
    context = copy.deepcopy(context)
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        if not parents:
            context[leaf] = value
            continue
        holder = context.get(parents[0])
        if holder is None:
            return None
        if dataclasses.is_dataclass(holder) and not isinstance(holder, type):
            context[parents[0]] = dataclasses.replace(holder, **{leaf: value})
        else:
            setattr(holder, leaf, value)
    return context


def rendered_ok(renderer: Renderer, template: str, context: dict[str, Any]) -> None:
    """Renders without a missing value, and nothing reads as a blank left in a sentence."""
    rendered = renderer.render(template, context)
    for part in (rendered.subject, rendered.text):
        assert "None" not in part
        flat = " ".join(part.split())
        assert not re.search(r"\s[,.;:!?)]|\(\s*\)|\s's\b|\ba\s+(?:like|who)\b", flat), (template, flat)
    # A colon leads into something: never a list item ("- Goal:") or a closing line that ends in one.
    items = [" ".join(item.split()) for item in re.split(r"\n(?=- )|\n\n", rendered.text) if item.strip()]
    assert [item for item in items if item.startswith("- ") and item.endswith(":")] == [], template
    assert not items[-1].endswith(":"), template
    assert rendered.text.strip() and rendered.subject.strip()


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


@pytest.mark.parametrize("values", CROSSED_CASES, ids=lambda v: "-".join(f"{k}={'set' if x else 'blank'}"
                                                                         for k, x in v.items()))
@pytest.mark.parametrize("template", NAMES)
def test_every_template_renders_every_crossed_combination(renderer: Renderer, template: str,
                                                          values: dict[str, Any]) -> None:
    for recipient in RECIPIENTS.get(template, (sample_context(template, today=TODAY)["recipient"],)):
        context = with_values(sample_context(template, today=TODAY), {**values, "recipient": recipient})
        if context is not None:
            rendered_ok(renderer, template, context)


@pytest.mark.parametrize("values", VARIED_CASES, ids=lambda v: "-".join(f"{k}={x!r}"[:40] for k, x in v.items()))
@pytest.mark.parametrize("template", NAMES)
def test_every_template_renders_each_varied_value(renderer: Renderer, template: str, values: dict[str, Any]) -> None:
    context = with_values(sample_context(template, today=TODAY), values)
    if context is None:
        return  # that row is not part of this email (no referral in an outreach letter)
    rendered_ok(renderer, template, context)


@pytest.mark.parametrize("template", WITHOUT_PARTNER)
def test_templates_sent_without_a_partner_render(renderer: Renderer, template: str) -> None:
    for recipient in RECIPIENTS.get(template, ("partner",)):
        rendered_ok(renderer, template, {**sample_context(template, today=TODAY), "partner": None,
                                         "recipient": recipient})


def test_the_table_covers_the_choices_the_jobs_make() -> None:
    """Owner set or not, logo or not, procedure set or blank: each crossed with the others."""
    assert len(CROSSED_CASES) == 2 ** len(CROSSED)
    assert {"signer", "clinic.logo_url", "partner.logo_url", "partner.taking_our_patients"} <= set(CROSSED)
    assert set(VARIED["partner.kind"]) == set(KINDS)
