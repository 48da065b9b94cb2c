"""Copy rules every email keeps, read as its recipient reads it (a partner, a patient, the owner).

Each test renders the shipped templates with the realistic rows of test_mail_render and checks
one sentence-level rule: no internal note is ever quoted, no clearance wording, "we" when the team
signs and "I" when a person does, the patient greeted by the one greeting rule and told exactly what
was shared, links in the clinic's colour, an address that never breaks on a phone, and the owner's
digest naming dormant partners once and signed plainly.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from automations.mail.render import EMAIL_TEMPLATES, Renderer
from tests.test_mail_render import flat, realistic_context

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
KINDS = ("Personal trainer", "Massage therapist", "Fitness center", "Yoga/Pilates studio", "Dietitian",
         "Chiropractor", "Other", "")
PARTNER_TEMPLATES = tuple(name for name in EMAIL_TEMPLATES if name not in ("owner_digest", "discharge_patient"))
OWNER = SimpleNamespace(name="Ana Ruiz", title="Partnerships lead", email="ana.ruiz@riverside-pt.example",
                        phone="(217) 555-0150")
WHY = "Dana coaches post-rehab strength, the step after our discharge plans"
EVENT_NOTE = "Bring the spare mats from the storeroom"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def body_text(renderer: Renderer, template: str, context: dict[str, object]) -> str:
    rendered = renderer.render(template, context)
    return flat(rendered.text)


@pytest.mark.parametrize("template", EMAIL_TEMPLATES)
def test_no_email_quotes_why_partner_or_an_events_notes(renderer: Renderer, template: str) -> None:
    """Why partner and an event's Notes are staff writing to staff: never quoted to anyone."""
    context = realistic_context(template)
    if context.get("partner") is not None:
        context["partner"].why_partner = WHY
    if context.get("event") is not None:
        context["event"].notes = EVENT_NOTE
    rendered = renderer.render(template, context)
    for part in (rendered.subject, rendered.text, rendered.html):
        assert "post-rehab" not in part and "spare mats" not in part


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("template", EMAIL_TEMPLATES)
def test_no_email_says_a_patient_is_ready_cleared_or_fit(renderer: Renderer, template: str, kind: str) -> None:
    context = realistic_context(template)
    if context.get("partner") is not None:
        context["partner"].kind = kind
    text = body_text(renderer, template, context).lower()
    for clearance in ("ready to", "ready for", "cleared", "fit to", "fit for", "back to training"):
        assert not re.search(rf"\b{clearance}\b", text), (template, kind, clearance)


@pytest.mark.parametrize("template", PARTNER_TEMPLATES)
def test_a_letter_speaks_as_we_when_the_team_signs_and_as_i_when_a_person_does(renderer: Renderer,
                                                                                template: str) -> None:
    context = realistic_context(template)
    context["signer"] = None
    team = body_text(renderer, template, context)
    assert "The partnerships team at Riverside Physical Therapy" in team
    assert not re.search(r"\bI('d|'m| am| have| look)?\b", team.split("Warm regards")[0]), (template, team)
    context["signer"] = OWNER
    person = body_text(renderer, template, context)
    assert "Ana Ruiz, Partnerships lead" in person and "The partnerships team" not in person


def test_the_discharge_introduction_says_we_when_the_team_signs(renderer: Renderer) -> None:
    context = realistic_context("discharge_partner")
    context["signer"] = None
    assert "We'd like to introduce Jordan Whitfield" in body_text(renderer, "discharge_partner", context)
    context["signer"] = OWNER
    assert "I'd like to introduce Jordan Whitfield" in body_text(renderer, "discharge_partner", context)


def test_the_patient_is_greeted_by_the_greeting_rule_never_shouted_at(renderer: Renderer) -> None:
    context = realistic_context("discharge_patient")
    context["referral"].patient_first_name = "JORDAN"
    text = renderer.render("discharge_patient", context).text
    assert "Hi Jordan," in text and "JORDAN" not in text.split("\n\n", 2)[1]


@pytest.mark.parametrize("kind", KINDS)
def test_the_patient_hears_what_the_partner_offers_in_words_that_fit_its_kind(renderer: Renderer, kind: str) -> None:
    context = realistic_context("discharge_patient")
    context["partner"].kind = kind
    text = body_text(renderer, "discharge_patient", context)
    business = context["partner"].business
    sentence = text[text.index("we'd like to introduce you"):]
    sentence = sentence[:sentence.index(". ") + 1]
    assert business in sentence
    assert " a personal trainer" not in sentence and "local business" not in sentence  # no label that may not fit
    assert "(" not in sentence and "goal" not in sentence  # the goal is not pasted into the welcome


@pytest.mark.parametrize("share", ["First name", "Name and contact", "Name, contact and goal"])
def test_the_patient_is_told_exactly_what_the_partner_received(renderer: Renderer, share: str) -> None:
    patient = realistic_context("discharge_patient")
    patient["referral"].share = share
    text = body_text(renderer, "discharge_patient", patient)
    named, emailed, goal = share != "First name", share != "First name", share == "Name, contact and goal"
    assert ("only your first name" in text) is not named
    assert ("Your name: Jordan Whitfield" in text) is named
    assert ("Your email address: jordan.whitfield@mail.example" in text) is emailed
    assert ("Your goal: Back to running a 5k" in text) is goal


@pytest.mark.parametrize("template", EMAIL_TEMPLATES)
def test_every_link_is_in_the_clinics_colour(renderer: Renderer, template: str) -> None:
    context = realistic_context(template)
    if template == "owner_digest":
        context["digest"].sheet_link = "https://docs.google.com/spreadsheets/d/abc123"
    body = renderer.render(template, context).html.split("<body", 1)[1]
    links = re.findall(r"<a\b[^>]*>", body)
    assert links, template
    assert [a for a in links if "color:#2a7f62" not in a] == []


@pytest.mark.parametrize("signer", [None, OWNER], ids=["team", "owner"])
def test_the_welcome_says_who_to_contact_with_an_address_that_never_breaks(renderer: Renderer,
                                                                           signer: SimpleNamespace | None) -> None:
    context = realistic_context("partnership_welcome")
    context["signer"] = signer
    rendered = renderer.render("partnership_welcome", context)
    text = flat(rendered.text)
    address = signer.email if signer else "partners@riverside-pt.example"
    assert re.search(rf'<a href="mailto:{re.escape(address)}" style="[^"]*white-space:nowrap;[^"]*">', rendered.html)
    if signer:
        assert f"Who to contact: write to me at {address} or call me at (217) 555-0150." in text
    else:
        assert (f"Who to contact: write to {address} or call (217) 555-0142. This address reaches the person who "
                "looks after our partnerships.") in text
    assert "Our patients, to you: when a patient" in text and "Your clients, to us: " in text


def test_the_meeting_agenda_quotes_no_staff_note(renderer: Renderer) -> None:
    context = realistic_context("meeting_confirmation")
    context["partner"].why_partner = WHY
    text = body_text(renderer, "meeting_confirmation", context)
    assert "Goals and values: what each of us wants for our clients, and where we fit together." in text


def test_the_digest_names_dormant_partners_once_keeps_changes_on_one_line_and_is_signed_plainly(
    renderer: Renderer,
) -> None:
    context = realistic_context("owner_digest")
    context["digest"].kpis = [SimpleNamespace(label="Referrals in", value="1", previous="1", change="no change")]
    context["digest"].dormant = [{"business": "Lakeside Pilates", "last_referral": date(2026, 7, 14)},
                                 {"business": "Quiet Gym", "last_referral": None}]
    rendered = renderer.render("owner_digest", context)
    text = flat(rendered.text)
    assert text.count("Dormant partners") == 1
    assert "Dormant partners: 2 active partners with no referral either way in 90 days." in text
    assert "Lakeside Pilates: last referral July 14, 2026" in text and "Quiet Gym: no referral yet" in text
    assert re.search(r'<td style="[^"]*white-space:nowrap;[^"]*">no change</td>', rendered.html)
    assert "Sent by partnerloop for Riverside Physical Therapy" in text and "partnerloop, for" not in text
    context["digest"].dormant = []
    text = body_text(renderer, "owner_digest", context)
    assert "Dormant partners: none. Every active partner has referred or been referred to in the last 90 days." in text
