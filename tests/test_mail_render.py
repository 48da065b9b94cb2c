"""Templates and rendering: every email renders from a realistic row, safely, with errors staff can act on."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automations.config import ClinicSettings, settings_from_dict
from automations.errors import ConfigError, PartnerloopError
from automations.jobs.scorecard import Line, Quarter, Scorecard
from automations.mail.render import (
    EMAIL_TEMPLATES,
    Renderer,
    RenderError,
    TemplateProblem,
    format_date,
    format_when,
    greeting,
    html_to_text,
    safe_url,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TODAY = date(2026, 11, 27)  # a Friday
OUTREACH = tuple(name for name in EMAIL_TEMPLATES if name.startswith("outreach_"))
PATIENT_FIRST = {"ascii": "Jordan", "non_ascii": "Zoë"}
PATIENT_LAST = {"ascii": "Whitfield", "non_ascii": "Müller-Quintana"}
GOAL = {"ascii": "Back to running a 5k", "non_ascii": "Wieder schmerzfrei Salsa tanzen"}
PATIENT_EMAIL = {"ascii": "jordan.whitfield@mail.example", "non_ascii": "zoë.müller@correo.example"}


def flat(text: str) -> str:
    """Text with line wrapping undone, for phrase checks."""
    return " ".join(text.split())


def clinic_settings(**overrides: str) -> ClinicSettings:
    raw = {
        "name": "Riverside Physical Therapy",
        "address": "120 Main Street, Springfield, IL 62701",
        "phone": "(217) 555-0142",
        "website": "https://riverside-pt.example",
        "logo_url": "https://riverside-pt.example/logo.png",
        "from_email": "partners@riverside-pt.example",
        "reply_to": "partners@riverside-pt.example",
        "staff_email": "frontdesk@riverside-pt.example",
        "owner_email": "owner@riverside-pt.example",
        "timezone": "America/Chicago",
        **overrides,
    }
    return settings_from_dict({"clinic": raw}, Path("test.toml")).clinic


def realistic_context(template: str, flavour: str = "ascii", clinic: ClinicSettings | None = None) -> dict[str, Any]:
    """The context the jobs fill for *template*: every key present, partner/referral/event/digest as needed."""
    non_ascii = flavour == "non_ascii"
    contact = "Zoë Müller" if non_ascii else "Dana Brooks"
    partner = SimpleNamespace(
        business="Café Ñandú Yoga" if non_ascii else "Northside Strength Co.",
        kind="Yoga/Pilates studio" if non_ascii else "Personal trainer",
        contact_name=contact,
        first_name=contact.split()[0],
        email="zoë@cafe-ñandú.example" if non_ascii else "dana@northside-strength.example",
        phone="(217) 555-0199",
        website="cafe-nandu.example" if non_ascii else "https://northside-strength.example",
        address="48 Elm Street, Springfield",
        introduced_by="José Peña" if non_ascii else "Maria Lopez",
        why_partner="Wir teilen das Ziel, dass Menschen sich schmerzfrei bewegen." if non_ascii
        else "Their small-group strength classes are a natural next step after knee rehab.",
        meeting_date=date(2026, 12, 3),
        meeting_at=datetime(2026, 12, 3, 10, 0),
        stage="Meeting",
        perk="une séance d'essai gratuite" if non_ascii else "a free intro class",
        taking_our_patients="Book a first class at northside-strength.example/book with code RIVERSIDE",
        sending_us_clients="Email us the client's first name; we call them within one working day.",
        logo_url="https://cafe-nandu.example/logo.png" if non_ascii else "",
    )
    referral = None
    if template == "discharge_patient":  # the patient's own row
        referral = SimpleNamespace(
            id="R-0042", direction="Out", share="Name, contact and goal", patient_first_name=PATIENT_FIRST[flavour],
            patient_last_name=PATIENT_LAST[flavour], patient_email=PATIENT_EMAIL[flavour], goal=GOAL[flavour],
            referred_on=date(2026, 10, 1), discharge_date=date(2026, 11, 26), first_visit=None, visits=9,
        )
    elif template == "discharge_partner":  # what the partner may know (model.SharedReferral), Share at its widest
        referral = SimpleNamespace(
            id="R-0042", direction="Out", share="Name, contact and goal", patient_first_name=PATIENT_FIRST[flavour],
            patient_last_name=PATIENT_LAST[flavour], patient_email=PATIENT_EMAIL[flavour], goal=GOAL[flavour],
            patient_name=f"{PATIENT_FIRST[flavour]} {PATIENT_LAST[flavour]}", referred_on=None, first_visit=None,
            discharge_date=None,
        )
    elif template.startswith("referral_"):  # to the partner who sent the client: the first name they sent
        referral = SimpleNamespace(
            id="R-0042", direction="In", share="First name", patient_first_name=PATIENT_FIRST[flavour],
            patient_last_name="", patient_email="", goal="", patient_name=PATIENT_FIRST[flavour],
            referred_on=date(2026, 10, 1), discharge_date=date(2026, 11, 26), first_visit=date(2026, 10, 8),
        )
    event = None
    if template == "event_reminder":
        event = SimpleNamespace(id="E-0007", name="Fête du dos: posture screening" if non_ascii else "Posture screening",
                                date=date(2026, 11, 30), kind="Screening", location="48 Elm Street",
                                notes="Bring two mats.")
    invite = None
    if template in ("meeting_confirmation", "meeting_cancellation", "event_reminder"):
        zone = ZoneInfo("America/Chicago")
        start = datetime(2026, 11, 30, 17, 30, tzinfo=zone) if event else datetime(2026, 12, 3, 10, 0, tzinfo=zone)
        invite = SimpleNamespace(start=start, end=start + timedelta(hours=1), sequence=0, moved_from=None,
                                 method="CANCEL" if template == "meeting_cancellation" else "REQUEST",
                                 cancelled=template == "meeting_cancellation", update=False)
    digest = None
    if template == "owner_digest":
        digest = SimpleNamespace(
            period="November 16 to 22, 2026",
            kpis=[
                {"label": "Active partners", "value": "12", "previous": "11", "change": "+1"},
                {"label": "Referrals out", "value": "7", "previous": "9", "change": "-2"},
                {"label": "Median days to first visit", "value": "4.5", "previous": "—", "change": "—"},
            ],
            dormant=[{"business": "Café Ñandú Yoga" if non_ascii else "Lakeside Pilates", "last_referral": date(2026, 7, 14)}],
            todo=[{"owner": "Dana", "items": [
                {"row": "Referrals R-0040", "partner": "Lakeside Pilates",
                 "action": "Fix the row: Patient email (value hidden) is not a valid address"}]}],
            sheet_link="https://docs.google.com/spreadsheets/d/abc123",
            sheet_words="",
        )
    scorecard = None
    if template == "partner_scorecard":
        lines = (Line("Patients we referred to you", 3, 1), Line("Our patients' first visits with you", 2, 1),
                 Line("Clients you referred to us", 1, 0), Line("Your clients' first visits with us", 1, 0),
                 Line("Events we held together", 1, 0))
        scorecard = Scorecard(Quarter(2026, 3), Quarter(2026, 2), Quarter(2026, 4), lines, total=8, previous_total=2,
                              referred_to_them=4)
    return {
        "clinic": clinic or clinic_settings(),
        "partner": None if template == "owner_digest" else partner,
        "referral": referral,
        "event": event,
        "digest": digest,
        "scorecard": scorecard,
        "outreach": template.startswith("outreach_"),
        "recipient": "partner",
        "unsubscribe_mailto": "mailto:partners@riverside-pt.example?subject=unsubscribe",
        "step": 1,
        "follow_up_days": [7, 14],
        "today": TODAY,
        "signer": None,
        "invite": invite,
        "scorecards": True,
    }


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


@pytest.fixture
def template_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped templates to break."""
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    return folder


# --- every template -----------------------------------------------------------------------


def test_every_email_named_in_the_spec_has_a_template(renderer: Renderer) -> None:
    assert renderer.names() == sorted(EMAIL_TEMPLATES)
    assert renderer.check_all() == tuple(sorted(EMAIL_TEMPLATES))


@pytest.mark.parametrize("flavour", ["ascii", "non_ascii"])
@pytest.mark.parametrize("template", EMAIL_TEMPLATES)
def test_every_template_renders_a_realistic_row(renderer: Renderer, template: str, flavour: str) -> None:
    context = realistic_context(template, flavour)
    rendered = renderer.render(template, context)

    assert rendered.template == template
    assert rendered.subject and "\n" not in rendered.subject and "\r" not in rendered.subject
    assert rendered.subject == " ".join(rendered.subject.split())
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>")
    for part in (rendered.text, rendered.html):
        assert "None" not in part
        assert "Riverside Physical Therapy" in part
    assert "<" not in rendered.text  # the text part holds no markup
    partner = context["partner"]
    if partner is not None:
        assert partner.business in flat(rendered.text) or f"Hi {partner.first_name}," in rendered.text


@pytest.mark.parametrize("flavour", ["ascii", "non_ascii"])
@pytest.mark.parametrize("template", EMAIL_TEMPLATES)
def test_no_subject_carries_patient_data(renderer: Renderer, template: str, flavour: str) -> None:
    subject = renderer.render(template, realistic_context(template, flavour)).subject.lower()
    for secret in (PATIENT_FIRST[flavour], PATIENT_LAST[flavour], GOAL[flavour], PATIENT_EMAIL[flavour]):
        assert secret.lower() not in subject


def test_subject_templates_never_mention_patient_fields() -> None:
    """Belt and braces: no subject block even refers to a referral (where patient data lives)."""
    for template in EMAIL_TEMPLATES:
        source = (TEMPLATES / f"{template}.html.j2").read_text(encoding="utf-8")
        subject_line = next(line for line in source.splitlines() if "{% block subject %}" in line)
        assert "referral." not in subject_line and "patient" not in subject_line, template


def test_templates_do_not_hard_code_the_clinic_name(renderer: Renderer) -> None:
    clinic = clinic_settings(name="Lakeview Physio & Rehab")
    for template in EMAIL_TEMPLATES:
        rendered = renderer.render(template, realistic_context(template, clinic=clinic))
        assert "Riverside" not in rendered.text + rendered.html + rendered.subject
        assert "Lakeview Physio & Rehab" in rendered.text
        assert "Lakeview Physio &amp; Rehab" in rendered.html


@pytest.mark.parametrize("template", OUTREACH)
def test_outreach_carries_postal_address_and_opt_out_in_both_parts(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(template, realistic_context(template))
    for part in (rendered.text, rendered.html):
        assert "120 Main Street, Springfield, IL 62701" in part
        assert "would rather not hear from us" in part
        assert "mailto:partners@riverside-pt.example?subject=unsubscribe" in part


# The patient's discharge email says how to stop further emails (SPEC §2), in its own words.
@pytest.mark.parametrize("template", [name for name in EMAIL_TEMPLATES if name not in (*OUTREACH, "discharge_patient")])
def test_other_emails_have_no_opt_out_sentence(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(template, realistic_context(template))
    assert "would rather not hear from us" not in rendered.text
    assert "unsubscribe" not in rendered.html


def test_outreach_without_a_postal_address_is_refused(renderer: Renderer) -> None:
    context = realistic_context("outreach_intro", clinic=clinic_settings(address=""))
    with pytest.raises(ConfigError, match=r"\[clinic\] address"):
        renderer.render("outreach_intro", context)


# --- what the emails say ------------------------------------------------------------------


def test_cold_intro_says_why_this_kind_of_partner_and_asks_for_a_meeting(renderer: Renderer) -> None:
    text = flat(renderer.render("outreach_intro", realistic_context("outreach_intro")).text)
    assert "Hi Dana," in text
    assert "the right next step for them is often a personal trainer" in text  # from Kind
    assert "a free intro class" in text
    assert "20-minute chat" in text
    assert "Maria Lopez" not in text  # a cold letter names no mutual connection


@pytest.mark.parametrize("template", OUTREACH)
def test_outreach_never_quotes_the_staff_note_why_partner(renderer: Renderer, template: str) -> None:
    """Why partner is written by staff about the partner ("Maya coaches post-rehab strength"): not to them."""
    context = realistic_context(template)
    context["partner"].why_partner = "Dana coaches post-rehab strength, the step after our discharge plans"
    rendered = renderer.render(template, context)
    assert "post-rehab" not in rendered.text + rendered.html


@pytest.mark.parametrize("kind", ["Personal trainer", "Massage therapist", "Fitness center", "Yoga/Pilates studio",
                                  "Dietitian", "Chiropractor", "Other", ""])
def test_cold_intro_has_a_reason_for_every_kind(renderer: Renderer, kind: str) -> None:
    context = realistic_context("outreach_intro")
    context["partner"].kind = kind
    text = flat(renderer.render("outreach_intro", context).text)
    reason = text.split("a local physical-therapy clinic. ", 1)[1].split(" That is why we are writing to", 1)[0]
    assert reason.startswith(("Many of our patients", "Some of our patients")) and reason.endswith(".")


def test_warm_intro_signed_by_the_team_says_hello_from_us(renderer: Renderer) -> None:
    text = flat(renderer.render("outreach_warm_intro", realistic_context("outreach_warm_intro")).text)
    assert "please say hello to Maria Lopez from us." in text and "for me" not in text


def test_warm_intro_names_the_mutual_connection(renderer: Renderer) -> None:
    rendered = renderer.render("outreach_warm_intro", realistic_context("outreach_warm_intro", "non_ascii"))
    assert "José Peña suggested" in flat(rendered.text)
    assert "José Peña" in rendered.subject


def test_second_follow_up_says_it_is_the_last_note(renderer: Renderer) -> None:
    first = flat(renderer.render("outreach_follow_up_1", realistic_context("outreach_follow_up_1")).text)
    last = flat(renderer.render("outreach_follow_up_2", realistic_context("outreach_follow_up_2")).text)
    assert "last note" not in first
    assert "our last note" in last
    assert len(last) < 1200 and len(first) < 1200  # brief


def test_meeting_confirmation_sets_the_agenda(renderer: Renderer) -> None:
    rendered = renderer.render("meeting_confirmation", realistic_context("meeting_confirmation"))
    assert "Thursday, December 3, 2026" in flat(rendered.text)
    assert "Thursday, December 3" in rendered.subject
    for topic in ("Goals and values", "referral procedure", "Logo use", "How we measure success"):
        assert topic in flat(rendered.text)


def test_partnership_welcome_sets_out_the_ground_rules(renderer: Renderer) -> None:
    text = flat(renderer.render("partnership_welcome", realistic_context("partnership_welcome")).text)
    for rule in ("Our patients, to you", "how to start with you, as we agreed: Book a first class at "
                 "northside-strength.example/book with code RIVERSIDE.", "Your clients, to us: Email us the "
                 "client's first name; we call them within one working day.", "Consent first", "agreed to in writing",
                 "Logos", "How we measure success", "Who to contact", "partners@riverside-pt.example"):
        assert rule in text


def test_partnership_welcome_falls_back_to_the_clinics_referral_instructions(renderer: Renderer) -> None:
    clinic = clinic_settings(referral_instructions="Ask them to call us at (217) 555-0142.")
    context = realistic_context("partnership_welcome", clinic=clinic)
    context["partner"].sending_us_clients = ""
    context["partner"].taking_our_patients = ""
    text = flat(renderer.render("partnership_welcome", context).text)
    assert "Your clients, to us: Ask them to call us at (217) 555-0142. We'll thank you" in text
    assert "Please reply to tell us how our patients should start with you" in text
    context["clinic"] = clinic_settings()  # no referral_instructions either: a plain default
    text = flat(renderer.render("partnership_welcome", context).text)
    assert "Your clients, to us: reply to this email with your client's first name, or ask them to call us at" in text


def test_discharge_partner_lists_what_the_patient_shares_and_the_agreed_procedure(renderer: Renderer) -> None:
    text = flat(renderer.render("discharge_partner", realistic_context("discharge_partner")).text)
    assert "- Name: Jordan Whitfield - Email: jordan.whitfield@mail.example - Goal: Back to running a 5k" in text
    assert "How we agreed you take our patients: Book a first class at northside-strength.example/book with code " \
           "RIVERSIDE." in text
    assert "a free intro class" in text and "R-0042" in text


def test_discharge_patient_explains_the_perk_and_how_to_redeem(renderer: Renderer) -> None:
    text = flat(renderer.render("discharge_patient", realistic_context("discharge_patient", "non_ascii")).text)
    assert "Hi Zoë," in text
    assert "une séance d'essai gratuite" in text
    assert "mention that Riverside Physical Therapy referred you" in text
    assert "(217) 555-0199" in text and "zoë@cafe-ñandú.example" in text


def test_referral_thanks_uses_only_what_the_partner_sent(renderer: Renderer) -> None:
    text = flat(renderer.render("referral_thanks", realistic_context("referral_thanks")).text)
    assert "Jordan" in text
    assert "Back to running" not in text and "Whitfield" not in text


def test_referral_update_and_closed_report_first_visit_and_end_of_care(renderer: Renderer) -> None:
    update = flat(renderer.render("referral_update", realistic_context("referral_update")).text)
    closed = flat(renderer.render("referral_closed", realistic_context("referral_closed")).text)
    assert "first visit on October 8, 2026" in update
    assert "finished their course of care with us as of November 26, 2026" in closed


def test_event_reminder_gives_when_where_and_days_left(renderer: Renderer) -> None:
    rendered = renderer.render("event_reminder", realistic_context("event_reminder"))
    assert rendered.subject == "Reminder: Posture screening on Monday, November 30 at 5:30 PM"
    assert "Posture screening, which we're hosting with Northside Strength Co., is in 3 days, on Monday, " \
           "November 30, 2026, 5:30 PM to 6:30 PM Central Time." in flat(rendered.text)
    assert "48 Elm Street" in flat(rendered.text)
    assert "A quick reminder" not in rendered.text and "Bring two mats" not in rendered.text  # Notes are internal


@pytest.mark.parametrize("kind", ["Open house", "Class", "Screening", "Social", "Talk"])
def test_event_reminder_reads_as_a_sentence_for_every_kind(renderer: Renderer, kind: str) -> None:
    context = realistic_context("event_reminder")
    context["event"].kind, context["event"].name = kind, f"Healthy Knees {kind}"
    text = flat(renderer.render("event_reminder", context).text)
    assert f"Healthy Knees {kind}, which we're hosting with Northside Strength Co., is in 3 days, on Monday" in text
    assert f"What: {kind}" in text


def test_the_time_is_said_in_words_with_the_weekday_and_the_zone() -> None:
    zone = ZoneInfo("America/Chicago")
    start = datetime(2026, 12, 3, 10, 0, tzinfo=zone)
    assert format_when(start, start + timedelta(hours=1)) == \
        "Thursday, December 3, 2026, 10:00 AM to 11:00 AM Central Time"
    assert format_when(start.replace(hour=14, minute=30), style="short") == "Thursday, December 3 at 2:30 PM"
    late = start.replace(hour=22)
    assert format_when(late, late + timedelta(hours=3)) == \
        "Thursday, December 3, 2026, 10:00 PM to Friday, December 4, 2026, 1:00 AM Central Time"
    berlin = datetime(2026, 7, 1, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert format_when(berlin, berlin + timedelta(minutes=45)).endswith("9:00 AM to 9:45 AM Central European Time")
    assert format_when(None) == ""


def test_a_moved_meeting_and_a_cancelled_one_say_so(renderer: Renderer) -> None:
    context = realistic_context("meeting_confirmation")
    zone = ZoneInfo("America/Chicago")
    context["invite"].moved_from, context["invite"].update = datetime(2026, 12, 2, 9, 0, tzinfo=zone), True
    moved = renderer.render("meeting_confirmation", context)
    assert moved.subject == ("New time for our meeting: Thursday, December 3 at 10:00 AM "
                             "(Riverside Physical Therapy and Northside Strength Co.)")  # one colon
    assert "We've moved our meeting from Wednesday, December 2 at 9:00 AM to Thursday, December 3, 2026, " \
           "10:00 AM to 11:00 AM Central Time." in flat(moved.text)
    cancelled = renderer.render("meeting_cancellation", realistic_context("meeting_cancellation"))
    assert cancelled.subject == ("Cancelled: our meeting on Thursday, December 3 at 10:00 AM "
                                 "(Riverside Physical Therapy and Northside Strength Co.)")
    assert "Our meeting on Thursday, December 3, 2026, 10:00 AM to 11:00 AM Central Time is cancelled." \
        in flat(cancelled.text)


def test_event_reminder_without_a_partner(renderer: Renderer) -> None:
    context = realistic_context("event_reminder")
    context["partner"] = None
    assert "Hello," in renderer.render("event_reminder", context).text


def test_owner_digest_lists_kpis_dormant_partners_and_the_to_do_by_owner(renderer: Renderer) -> None:
    rendered = renderer.render("owner_digest", realistic_context("owner_digest"))
    assert rendered.subject == "Partnership digest: November 16 to 22, 2026"
    lines = rendered.text.splitlines()
    header = next(line for line in lines if line.startswith("Measure"))
    assert header.split() == ["Measure", "This", "week", "Last", "week", "Change"]
    row = next(line for line in lines if line.startswith("Referrals out"))
    assert row.split()[-3:] == ["7", "9", "-2"]
    assert "Lakeside Pilates: last referral July 14, 2026" in flat(rendered.text)  # dates in words
    assert ("Dana - Referrals R-0040 (Lakeside Pilates): Fix the row: Patient email (value hidden) is not a valid "
            "address") in flat(rendered.text)
    assert '<a href="https://docs.google.com/spreadsheets/d/abc123" style="color:#2a7f62;">' in rendered.html
    assert "<table" in rendered.html


def test_owner_digest_for_a_workbook_says_where_to_look_in_words_never_a_server_path(renderer: Renderer) -> None:
    context = realistic_context("owner_digest")
    context["digest"].sheet_link = "/srv/partnerloop/partnerloop.xlsx"  # not a link: never shown
    context["digest"].sheet_words = "Open the Dashboard tab of the partnerships workbook (partnerloop.xlsx)."
    rendered = renderer.render("owner_digest", context)
    assert "Open the Dashboard tab of the partnerships workbook (partnerloop.xlsx)." in flat(rendered.text)
    assert "/srv" not in rendered.text and "/srv" not in rendered.html


def test_partner_logo_co_brands_partner_emails_but_not_outreach(renderer: Renderer) -> None:
    welcome = renderer.render("partnership_welcome", realistic_context("partnership_welcome", "non_ascii"))
    intro = renderer.render("outreach_intro", realistic_context("outreach_intro", "non_ascii"))
    assert 'src="https://riverside-pt.example/logo.png"' in welcome.html
    assert 'src="https://cafe-nandu.example/logo.png"' in welcome.html
    assert "https://cafe-nandu.example/logo.png" not in intro.html


# --- cells are data -----------------------------------------------------------------------


def test_markup_in_cells_is_escaped_in_html(renderer: Renderer) -> None:
    context = realistic_context("discharge_partner")
    context["partner"].business = "<script>alert(1)</script>"
    context["referral"].patient_first_name = "<b>Jo</b>"
    rendered = renderer.render("discharge_partner", context)
    assert "<script>" not in rendered.html and "<b>Jo</b>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<script>alert(1)</script>" in rendered.text  # the text part shows the cell as written


def test_line_breaks_in_cells_never_reach_the_subject(renderer: Renderer) -> None:
    context = realistic_context("outreach_intro")
    context["partner"].business = "Northside\r\nBcc: someone@example.org"
    subject = renderer.render("outreach_intro", context).subject
    assert "\r" not in subject and "\n" not in subject


def test_unsafe_links_in_cells_are_not_linked(renderer: Renderer) -> None:
    context = realistic_context("discharge_patient")
    context["partner"].website = "javascript:alert(1)"
    context["partner"].logo_url = "data:image/png;base64,AAAA"
    rendered = renderer.render("discharge_patient", context)
    assert "javascript:" not in rendered.html and "data:image" not in rendered.html


def test_empty_cells_print_as_nothing(renderer: Renderer) -> None:
    context = realistic_context("meeting_confirmation")
    context["partner"].meeting_date = None
    context["invite"] = None
    context["partner"].contact_name = ""
    rendered = renderer.render("meeting_confirmation", context)
    assert rendered.subject == "Our meeting: Riverside Physical Therapy and Northside Strength Co."
    assert "Hello Northside Strength Co. team," in flat(rendered.text)
    assert "None" not in rendered.text


# --- errors staff can act on --------------------------------------------------------------


def test_a_missing_value_is_a_render_error_naming_template_and_variable(renderer: Renderer) -> None:
    context = realistic_context("outreach_intro")
    del context["partner"].perk
    with pytest.raises(RenderError) as caught:
        renderer.render("outreach_intro", context)
    message = str(caught.value)
    assert "outreach_intro" in message and "partner.perk" in message
    assert "line " in message and "\n" not in message
    assert not isinstance(caught.value, PartnerloopError)  # a row's status, not a stop


def test_a_missing_top_level_key_is_a_render_error(renderer: Renderer) -> None:
    context = realistic_context("referral_thanks")
    del context["referral"]
    with pytest.raises(RenderError, match=r"referral_thanks.*no value for referral"):
        renderer.render("referral_thanks", context)


def test_a_missing_partner_is_named(renderer: Renderer) -> None:
    context = realistic_context("discharge_partner")
    context["partner"] = None
    with pytest.raises(RenderError, match=r"discharge_partner.*partner\.\w+ \(partner is empty\)"):
        renderer.render("discharge_partner", context)


def test_a_syntax_error_is_a_template_problem_naming_file_and_line(template_copy: Path) -> None:
    broken = template_copy / "outreach_intro.html.j2"
    lines = broken.read_text(encoding="utf-8").splitlines()
    lines[6] = lines[6] + " {{ partner.business }"  # line 7
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    renderer = Renderer(template_copy)
    with pytest.raises(TemplateProblem) as caught:
        renderer.render("outreach_intro", realistic_context("outreach_intro"))
    assert "outreach_intro.html.j2 line 7:" in str(caught.value)
    assert isinstance(caught.value, PartnerloopError)
    with pytest.raises(TemplateProblem, match=r"outreach_intro\.html\.j2 line 7"):
        renderer.check_all()


def test_a_broken_layout_is_named_when_any_email_renders(template_copy: Path) -> None:
    layout = template_copy / "layout.html.j2"
    layout.write_text(layout.read_text(encoding="utf-8").replace("{% endif %}", "{% endfi %}", 1), encoding="utf-8")
    with pytest.raises(TemplateProblem, match=r"layout\.html\.j2 line \d+"):
        Renderer(template_copy).render("referral_thanks", realistic_context("referral_thanks"))


def test_check_all_finds_a_misspelt_name(template_copy: Path) -> None:
    path = template_copy / "referral_closed.html.j2"
    source = path.read_text(encoding="utf-8")
    assert "partner.business" in source
    path.write_text(source.replace("partner.business", "partner.buisness"), encoding="utf-8")
    with pytest.raises(TemplateProblem, match=r"referral_closed.*partner\.buisness"):
        Renderer(template_copy).check_all()


def test_check_all_finds_a_missing_email_template(template_copy: Path) -> None:
    (template_copy / "referral_closed.html.j2").unlink()
    with pytest.raises(TemplateProblem, match="missing referral_closed.html.j2"):
        Renderer(template_copy).check_all()


def test_an_unknown_template_is_a_template_problem(renderer: Renderer) -> None:
    with pytest.raises(TemplateProblem, match="not found"):
        renderer.render("outreach_intro_typo", realistic_context("outreach_intro"))


def test_autoescaping_covers_the_template_extension(renderer: Renderer) -> None:
    assert renderer.env.autoescape is not False
    select = renderer.env.autoescape
    assert callable(select) and select("anything.html.j2") is True


# --- filters and the text part ------------------------------------------------------------


def test_date_filter() -> None:
    assert format_date(date(2026, 11, 27)) == "November 27, 2026"
    assert format_date(date(2026, 11, 27), "day") == "Friday, November 27"
    assert format_date(date(2026, 11, 27), "full") == "Friday, November 27, 2026"
    assert format_date(None) == ""
    assert format_date("next spring") == "next spring"


def test_safe_url() -> None:
    assert safe_url("https://a.example/x") == "https://a.example/x"
    assert safe_url("www.a.example") == "https://www.a.example"
    assert safe_url("mailto:a@b.example?subject=unsubscribe") == "mailto:a@b.example?subject=unsubscribe"
    for bad in ("javascript:alert(1)", "data:text/html,x", "/srv/file.xlsx", "", None, "http://a b"):
        assert safe_url(bad) == ""


def test_html_to_text_keeps_paragraphs_lists_links_and_tables() -> None:
    text = html_to_text(
        "<html><head><title>Subject</title><style>p{}</style></head><body>"
        "<p>Hello &amp; welcome,<br>friend</p><ul><li>one</li><li>two <a href='https://x.example'>site</a></li></ul>"
        "<ol><li>first</li><li>second</li></ol>"
        "<table><tr><th>Measure</th><th>Now</th></tr><tr><td>Referrals</td><td>12</td></tr></table>"
        "<p><img src='x.png' alt='Logo'> <a href='https://y.example'>https://y.example</a></p></body></html>"
    )
    assert text == (
        "Hello & welcome,\nfriend\n\n"
        "- one\n- two site (https://x.example)\n\n"
        "1. first\n2. second\n\n"
        "Measure    Now\n---------  ---\nReferrals   12\n\n"
        "Logo https://y.example\n"
    )


# --- greetings ------------------------------------------------------------------------------


@pytest.mark.parametrize(("contact", "business", "expected"), [
    ("Ana", "", "Hi Ana"),
    ("Dr. Ana Diaz", "", "Hi Ana"),  # first name when there is one, whatever the title
    ("Prof. Ana Diaz", "", "Hi Ana"),
    ("Mrs Ana Diaz", "", "Hi Ana"),
    ("Coach Leo", "", "Hi Leo"),
    ("Dr. Diaz", "", "Hi Dr. Diaz"),  # a title and a surname only: greeted so
    ("DR DIAZ", "", "Hi Dr. Diaz"),
    ("Ms. Okafor", "", "Hi Ms. Okafor"),
    ("ANA DIAZ", "", "Hi Ana"),  # capitals typed in the sheet are not shouted back
    ("ana diaz", "", "Hi Ana"),
    ("Ana M. Diaz", "", "Hi Ana"),  # a middle initial
    ("J. Robert Smith", "", "Hi Robert"),  # a first initial
    ("A. Diaz", "", "Hi A. Diaz"),  # initials only: as written
    ("Mary-Jane O'Brien", "", "Hi Mary-Jane"),
    ("MARY-JANE O'BRIEN", "", "Hi Mary-Jane"),
    ("Seán Ó Dónaill-Smyth", "", "Hi Seán"),
    ("DeShawn McKenzie", "", "Hi DeShawn"),  # mixed case is kept as written
    ("Zoë Müller", "", "Hi Zoë"),
    ("  Ana   Diaz ", "", "Hi Ana"),
    ("Diaz, Ana", "Body Works", "Hello Body Works team"),  # surname first, or two people: not guessed
    ("Ana, Tom", "", "Hello"),
    ("Ana Diaz, DPT", "", "Hi Ana"),  # letters after the name
    ("Tom Becker Jr.", "", "Hi Tom"),
    ("Ana & Tom Diaz", "", "Hi Ana and Tom"),
    ("Alex (front desk)", "", "Hi Alex"),
    ("", "Lotus Flow Yoga", "Hello Lotus Flow Yoga team"),  # blank: the business's team
    ("", "", "Hello"),
    (None, "", "Hello"),
    ("Lotus Flow Yoga", "Lotus Flow Yoga", "Hello Lotus Flow Yoga team"),  # the business in the contact cell
    ("Front desk", "Iron & Oak Gym", "Hello Iron & Oak Gym team"),
    ("info@ironoak.example", "Iron & Oak Gym", "Hello Iron & Oak Gym team"),
    ("Dr.", "", "Hello"),
    ("<img src=x onerror=alert(1)>", "Iron & Oak Gym", "Hello Iron & Oak Gym team"),  # not a name
])
def test_greeting_names_the_person_by_first_name(contact: str | None, business: str, expected: str) -> None:
    assert greeting(contact, business) == expected


@pytest.mark.parametrize("template", [name for name in EMAIL_TEMPLATES if name not in ("owner_digest",)])
def test_every_partner_letter_greets_by_the_greeting_rule(renderer: Renderer, template: str) -> None:
    context = realistic_context(template)
    context["partner"].contact_name = "DR. DANA M. BROOKS"
    context["partner"].first_name = "DR."  # what a naive first word would give
    text = renderer.render(template, context).text
    if template == "discharge_patient":
        return  # greets the patient (below)
    assert "Hi Dana," in text and "Dr." not in text.split("\n\n", 2)[1]


def test_the_patient_greeting_macro_follows_the_same_rule(template_copy: Path) -> None:
    (template_copy / "patient_note.html.j2").write_text(
        '{% extends "layout.html.j2" %}{% import "_macros.html.j2" as m %}{% block subject %}Hello{% endblock %}'
        "{% block body %}<p>{{ m.patient_greeting(referral) }}</p>{% endblock %}", encoding="utf-8")
    context = realistic_context("discharge_patient")
    context["referral"].patient_first_name = "JORDAN"
    assert "Hi Jordan," in Renderer(template_copy).render("patient_note", context).text
    context["referral"].patient_first_name = ""
    assert "Hello," in Renderer(template_copy).render("patient_note", context).text


def test_outreach_letters_greet_each_contact_cell_by_the_rule(workbook: Any) -> None:
    """Through the outreach job, as the prospects receive it: the salutation each Contact name gets."""
    from datetime import datetime
    from email import message_from_bytes, policy
    from zoneinfo import ZoneInfo

    from automations.executor import run_jobs
    from tests.conftest import world_for

    contacts = {"dr@one.example": "DR. ANA M. DIAZ", "two@two.example": "", "three@three.example": "Front desk"}
    settings = workbook(partners=[
        {"Partner ID": f"P-000{n}", "Business": f"Studio {n}", "Kind": "Fitness center", "Contact name": contact,
         "Email": address, "Stage": "Prospect", "Why partner": "Ana coaches post-rehab strength"}
        for n, (address, contact) in enumerate(contacts.items(), start=1)])
    run_jobs(world_for(settings, lambda: datetime(2026, 11, 27, 9, 0, tzinfo=ZoneInfo("America/Chicago"))),
             ["outreach"])
    texts = {}
    for path in settings.email.outbox_dir.glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        plain = message.get_body(("plain",))
        assert plain is not None
        texts[message["To"].addresses[0].addr_spec] = plain.get_content().replace("\r\n", "\n")
    assert "\nHi Ana,\n" in texts["dr@one.example"]
    assert "\nHello Studio 2 team,\n" in texts["two@two.example"]
    assert "\nHello Studio 3 team,\n" in texts["three@three.example"]
    assert not any("post-rehab" in text for text in texts.values())


# --- the consent emails, in every variant the jobs produce -----------------------------------------

CONSENT_TEMPLATES = ("discharge_partner", "discharge_patient", "partnership_welcome", "referral_thanks",
                     "referral_update", "referral_closed")
SHARE_LEVELS = ("First name", "Name and contact", "Name, contact and goal")


def _at_share(referral: Any, share: str) -> None:
    """The partner's view of *referral* at *share* (as model.shared_at_discharge makes it)."""
    referral.share = share
    if share == "First name":
        referral.patient_last_name, referral.patient_email = "", ""
        referral.patient_name = referral.patient_first_name
    if share != "Name, contact and goal":
        referral.goal = ""


@pytest.mark.parametrize("template", CONSENT_TEMPLATES)
@pytest.mark.parametrize("share", SHARE_LEVELS)
@pytest.mark.parametrize("procedure", ["set", "blank"])
@pytest.mark.parametrize("owner", ["set", "blank"])
def test_consent_emails_render_in_every_variant_without_clearance_wording(
    renderer: Renderer, template: str, share: str, procedure: str, owner: str,
) -> None:
    context = realistic_context(template)
    if procedure == "blank":
        context["partner"].taking_our_patients = context["partner"].sending_us_clients = ""
        context["partner"].perk = ""
    if owner == "set":
        context["signer"] = SimpleNamespace(name="Ana Ruiz", title="Partnerships lead", email="ana@clinic.example",
                                            phone="(217) 555-0150")
    if template == "discharge_partner":
        _at_share(context["referral"], share)
    elif template == "discharge_patient":
        context["referral"].share = share
    rendered = renderer.render(template, context)
    text = flat(rendered.text)
    assert "None" not in text and ": ." not in text and " ." not in text and ".." not in text
    for clearance in ("ready to", "cleared", "fit to", "fit for"):
        assert clearance not in text.lower(), clearance
    assert ("Ana Ruiz, Partnerships lead" in text) is (owner == "set" and template != "discharge_patient")
    if template == "discharge_partner":
        assert ("Whitfield" in text) is (share != "First name")
        assert ("jordan.whitfield@mail.example" in rendered.text + rendered.html) is (share != "First name")
        assert ("Back to running" in text) is (share == "Name, contact and goal")
        assert ("How we agreed you take our patients" in text) is (procedure == "set")
    if template == "discharge_patient":
        assert "free to choose any provider" in text and 'reply "unsubscribe"' in text
        assert "How to start: " in text
        assert ("Your perk: a free intro class. To claim it" in text) is (procedure == "set")


def test_with_the_first_name_only_the_partner_is_told_the_patient_will_get_in_touch(renderer: Renderer) -> None:
    """The agreed procedure may have the partner call; with no contact shared, the email says what happens instead."""
    context = realistic_context("discharge_partner")
    context["partner"].taking_our_patients = "Coach Leo phones within 2 days to book a first run"
    _at_share(context["referral"], "First name")
    text = flat(renderer.render("discharge_partner", context).text)
    assert ("How we agreed you take our patients: Coach Leo phones within 2 days to book a first run. This time we "
            "have no contact details we may pass on, so instead Jordan will get in touch with you") in text
    context = realistic_context("discharge_partner")
    context["partner"].taking_our_patients = "Coach Leo phones within 2 days to book a first run"
    assert "This time" not in flat(renderer.render("discharge_partner", context).text)  # the email is shared
