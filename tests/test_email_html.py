"""Every email's HTML part reads on a phone: nothing wider than 600 px, every image described, real text.

Checked on every template with its sample row (`sample_context`) and on every email the demo
writes to its outbox; a deliberately bad template laid over the shipped ones (`[templates] dir`)
shows the checks find what they look for.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from email import message_from_bytes, policy
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from automations.demo import run_demo
from automations.mail.render import Rendered, Renderer, renderer_for, sample_context
from tests.conftest import make_settings

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TODAY = date(2026, 11, 27)
DEMO_MOMENT = datetime(2026, 11, 27, 8, 30, tzinfo=ZoneInfo("America/Chicago"))
WIDEST = 600  # px: the widest an email may be fixed to and still fit a phone once scaled
# A CSS width or min-width in px (max-width is what keeps emails narrow, so it is allowed).
CSS_WIDTH = re.compile(r"(?<![\w-])(min-width|width)\s*:\s*(\d+(?:\.\d+)?)px", re.I)
MEDIA_QUERY = re.compile(r"@media[^{]*", re.I)


class PhoneCheck(HTMLParser):
    """Reads one HTML part and lists what breaks on a phone, each as a sentence."""

    HIDDEN = frozenset({"head", "style", "title", "script"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.hidden = 0
        self.style: list[str] = []
        self.divs = 0
        self.content_at: int | None = None  # div depth of the layout's class="content" (the email's own part)
        self.text: list[str] = []  # visible text inside the layout's class="content"
        self.all_text: list[str] = []  # all visible text, for HTML without that marker
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag in self.HIDDEN:
            self.hidden += 1
        if tag == "div":
            self.divs += 1
            if "content" in attributes.get("class", "").split() and self.content_at is None:
                self.content_at = self.divs
        width = attributes.get("width", "").strip()
        if re.fullmatch(r"\d+(px)?", width) and int(width.removesuffix("px")) > WIDEST:
            self.problems.append(f'<{tag} width="{width}"> is wider than {WIDEST} px')
        self.check_css(attributes.get("style", ""), f"<{tag} style>")
        if tag == "img":
            self.images += 1
            if not attributes.get("alt", "").strip():
                self.problems.append(f"<img src=\"{attributes.get('src', '')}\"> has no alt text")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in self.HIDDEN or tag == "div":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
        if tag == "div":
            if self.content_at == self.divs:
                self.content_at = -1  # closed: later text is the footer
            self.divs = max(self.divs - 1, 0)

    def handle_data(self, data: str) -> None:
        if self.hidden:
            if self.lasttag == "style":
                self.style.append(data)
            return
        self.all_text.append(data)
        if self.content_at is not None and self.content_at > 0:
            self.text.append(data)

    def check_css(self, css: str, where: str) -> None:
        for prop, value in CSS_WIDTH.findall(MEDIA_QUERY.sub("", css)):
            if float(value) > WIDEST:
                self.problems.append(f"{where} sets {prop.lower()}: {value}px, wider than {WIDEST} px")

    def result(self) -> list[str]:
        self.check_css("".join(self.style), "<style>")
        own = self.text if self.content_at is not None else self.all_text  # no marker: the whole body
        if not " ".join("".join(own).split()):
            self.problems.append("the email's own text is empty" + (" apart from images" if self.images else ""))
        return self.problems


def phone_problems(rendered: Rendered) -> list[str]:
    """What in one rendered email breaks on a phone (nothing: an empty list)."""
    check = PhoneCheck()
    check.feed(rendered.html)
    check.close()
    problems = check.result()
    if not rendered.text.strip():
        problems.append("the text part is empty")
    return problems


@pytest.fixture(scope="module")
def demo_outbox(tmp_path_factory: pytest.TempPathFactory) -> list[Rendered]:
    """Every email the demo sends, read back from its .eml files."""
    base = tmp_path_factory.mktemp("demo-settings")
    settings, _, _ = run_demo(make_settings(base), tmp_path_factory.mktemp("demo") / "run", DEMO_MOMENT)
    emails = []
    for path in sorted(settings.email.outbox_dir.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        text, html = message.get_body(("plain",)), message.get_body(("html",))
        template = re.sub(r"^.*?-\d{4}-", "", path.stem)
        emails.append(Rendered(template, str(message["Subject"]), text.get_content() if text else "",
                               html.get_content() if html else ""))
    return emails


@pytest.mark.parametrize("template", Renderer(TEMPLATES).names())
def test_every_template_reads_on_a_phone(template: str) -> None:
    rendered = Renderer(TEMPLATES).render(template, sample_context(template, today=TODAY))
    assert phone_problems(rendered) == []


def test_every_email_the_demo_sends_reads_on_a_phone(demo_outbox: list[Rendered]) -> None:
    assert {email.template for email in demo_outbox} >= {"outreach_intro", "discharge_partner", "owner_digest"}
    for email in demo_outbox:
        assert email.html, email.template
        assert phone_problems(email) == [], email.template


BAD_TEMPLATE = """{% extends "layout.html.j2" %}
{% block subject %}Our new flyer{% endblock %}
{% block body %}
<table width="720"><tr><td style="min-width: 640px"><img src="https://clinic.example/flyer.png"></td></tr></table>
{% endblock %}
"""
BAD_STYLE = """<style>.wide { width: 900px; } @media (min-width: 700px) { .x { max-width: 700px; } }</style>"""


def test_a_bad_template_in_the_clinic_folder_is_caught(tmp_path: Path) -> None:
    own = tmp_path / "my-templates"
    own.mkdir()
    (own / "flyer.html.j2").write_text(BAD_TEMPLATE, encoding="utf-8")
    layout = (TEMPLATES / "layout.html.j2").read_text(encoding="utf-8").replace("</head>", BAD_STYLE + "</head>")
    (own / "layout.html.j2").write_text(layout, encoding="utf-8")
    renderer = renderer_for(make_settings(tmp_path, templates={"dir": str(own)}))
    assert "flyer" in renderer.names()

    problems = phone_problems(renderer.render("flyer", sample_context("flyer", today=TODAY)))

    assert problems == [
        '<table width="720"> is wider than 600 px',
        "<td style> sets min-width: 640px, wider than 600 px",
        '<img src="https://clinic.example/flyer.png"> has no alt text',
        "<style> sets width: 900px, wider than 600 px",  # the media query's min-width is a condition, not a width
        "the email's own text is empty apart from images",
    ]
    # The shipped templates under the same bad layout: only the style sheet is wrong.
    assert phone_problems(renderer.render("referral_thanks", sample_context("referral_thanks", today=TODAY))) == [
        "<style> sets width: 900px, wider than 600 px"]


def test_an_email_with_no_text_part_is_caught() -> None:
    rendered = Rendered("x", "Subject", "", "<html><body><p>Hello</p></body></html>")
    assert phone_problems(rendered) == ["the text part is empty"]


def test_an_image_only_email_without_the_layout_is_caught() -> None:
    rendered = Rendered("x", "Subject", "Flyer\n", '<html><body><img src="a.png" alt="Flyer" width="300"></body></html>')
    assert phone_problems(rendered) == ["the email's own text is empty apart from images"]
