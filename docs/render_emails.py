"""Render the email gallery: every kind of email the demo sends, as a phone and a desktop would show it.

Runs the demo (every job once, as at a fixed day) in a temporary folder, then, as staff would,
clears the demo meeting's Meeting date and runs the outreach job once more an hour later (which
sends the meeting's cancellation). Takes the HTML part of the first .eml of each template in its outbox, swaps the external logo images for local
placeholders (so nothing is fetched from the network), and screenshots each in headless Chromium
at 375 px (a phone) and 800 px wide into `docs/emails/<template>-375.png` and `-800.png`, the
page's empty bottom cropped. Writes `docs/emails/README.md`, an index of the pictures.

Needs Chromium (`apt-get install chromium`; not part of partnerloop's dependencies or CI) and
Pillow (installed with partnerloop).

    python docs/render_emails.py [--out docs/emails] [--chromium /usr/bin/chromium] [--keep DIR]
"""

from __future__ import annotations

import argparse
import email
import html
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
DEMO_DAY = datetime(2026, 11, 27, 8, 30, tzinfo=ZoneInfo("America/Chicago"))
WIDTHS = (375, 800)
WINDOW_HEIGHT = 3000  # tall enough for the longest email at 375 px; the empty rest is cropped
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND")
# Who each email is for, as the gallery index says it.
READERS = {
    "outreach_intro": "a prospect, cold (Introduced by blank)",
    "outreach_warm_intro": "a prospect a mutual connection named",
    "outreach_follow_up_1": "a prospect who has not answered",
    "outreach_follow_up_2": "a prospect, the last note",
    "meeting_confirmation": "a partner, Stage Meeting",
    "partnership_welcome": "a partner, Stage Agreement",
    "discharge_partner": "a partner receiving a discharged patient",
    "discharge_patient": "the discharged patient",
    "referral_thanks": "a partner who referred a client",
    "referral_update": "a partner, their client's first visit",
    "referral_closed": "a partner, their client's end of care",
    "event_reminder": "a partner, before a joint event",
    "partner_scorecard": "an Active partner, once a quarter",
    "meeting_cancellation": "a partner whose meeting is called off",
    "owner_digest": "the clinic's owner, weekly",
}


def demo_emails(directory: Path) -> dict[str, str]:
    """The HTML part of the first email of each template the demo sends, by template name."""
    from automations.config import load_settings
    from automations.demo import run_demo

    settings, _, _ = run_demo(load_settings(REPO / "config" / "settings.toml"), directory, DEMO_DAY)
    cancel_the_meeting(settings)
    found: dict[str, str] = {}
    for path in sorted(settings.email.outbox_dir.glob("*.eml")):
        template = re.sub(r"^.*?-\d{4}-", "", path.stem)
        if template in found:
            continue
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        part = message.get_body(("html",))
        if part is not None:
            found[template] = part.get_content()
    return found


def cancel_the_meeting(settings: Any) -> None:
    """Staff clear the demo meeting's Meeting date in the workbook; the outreach job then cancels it."""
    import openpyxl

    from automations.executor import World, run_jobs
    from automations.mail.ledger import Ledger
    from automations.sheets import open_backend

    path = settings.sheet.path
    book = openpyxl.load_workbook(path)
    sheet = book[settings.sheet.title("partners")]
    header = [cell.value for cell in sheet[1]]
    for row in sheet.iter_rows(min_row=2):
        if row[header.index("Stage")].value == "Meeting":
            row[header.index("Meeting date")].value = None
    book.save(path)
    ledger = Ledger.in_state_dir(settings.state_dir)
    try:
        world = World(settings=settings, backend=open_backend(settings), ledger=ledger,
                      clock=lambda: DEMO_DAY + timedelta(hours=1))
        run_jobs(world, ["outreach"])
    finally:
        ledger.close()


def offline(document: str, work: Path) -> str:
    """*document* with every external image replaced by a local placeholder that shows its alt text."""
    count = 0

    def placeholder(match: re.Match[str]) -> str:
        nonlocal count
        tag = match.group(0)
        alt = re.search(r'\balt="([^"]*)"', tag)
        label = html.unescape(alt.group(1)) if alt else "image"
        width = max(90, 9 * len(label) + 24)
        count += 1
        svg = work / f"placeholder-{count}.svg"
        svg.write_text(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="44" viewBox="0 0 {width} 44">'
            f'<rect x="0.5" y="0.5" width="{width - 1}" height="43" rx="6" fill="#e8f1ed" stroke="#2a7f62"/>'
            f'<text x="{width / 2}" y="27" text-anchor="middle" font-family="Arial" font-size="14" fill="#2a7f62">'
            f'{html.escape(label)} logo</text></svg>', encoding="utf-8")
        return re.sub(r'\bsrc="[^"]*"', f'src="{svg.as_uri()}"', tag)

    return re.sub(r"<img\b[^>]*>", placeholder, document)


def screenshot(chromium: str, page: Path, out: Path, width: int, work: Path) -> None:
    profile = work / f"profile-{out.stem}"  # a fresh profile each time: no state carried between shots
    raw = work / f"{out.stem}-raw.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={raw}",
                    f"--window-size={width},{WINDOW_HEIGHT}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    shrink(raw, out)


def shrink(raw: Path, out: Path) -> None:
    """Crop the empty page below the email and save as a small palette PNG."""
    from PIL import Image

    with Image.open(raw) as image:
        rgb = image.convert("RGB")
        background = rgb.getpixel((0, rgb.height - 1))
        bottom = rgb.height
        while bottom > 1 and all(rgb.getpixel((x, bottom - 1)) == background for x in range(0, rgb.width, 3)):
            bottom -= 1
        cropped = rgb.crop((0, 0, rgb.width, min(rgb.height, bottom + 24)))
        cropped.quantize(colors=64).save(out, optimize=True)


def write_index(out: Path, names: list[str]) -> None:
    lines = [
        "# Email gallery",
        "",
        "Every kind of email the demo (`partnerloop demo`) sends, and the cancellation of its meeting once staff "
        "clear the Meeting date, as a phone (375 px wide) and a desktop mail client (800 px) show it. Logos are drawn as placeholders. Made by `python docs/render_emails.py`; "
        "run it again after changing a template.",
        "",
        "| email | to | phone | desktop |",
        "|---|---|---|---|",
    ]
    for name in names:
        lines.append(f"| `{name}` | {READERS.get(name, '')} | [375 px]({name}-375.png) | [800 px]({name}-800.png) |")
    lines.append("")
    for name in names:
        lines += [f"## {name}", "", f'<img src="{name}-375.png" alt="{name} on a phone" width="300"> '
                  f'<img src="{name}-800.png" alt="{name} on a desktop" width="480">', ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "emails")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--keep", type=Path, help="keep the demo and the HTML pages in this (new) folder")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # this checkout's partnerloop, whatever is installed
    if not Path(args.chromium).exists():
        raise SystemExit(f"render_emails: Chromium not found at {args.chromium}; install it or pass --chromium")
    with tempfile.TemporaryDirectory(prefix="partnerloop-gallery-") as temporary:
        work = args.keep.resolve() if args.keep else Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        emails = demo_emails(work / "demo")
        args.out.mkdir(parents=True, exist_ok=True)
        for old in args.out.glob("*.png"):
            old.unlink()
        for name, document in sorted(emails.items()):
            page = work / f"{name}.html"
            page.write_text(offline(document, work), encoding="utf-8")
            for width in WIDTHS:
                screenshot(args.chromium, page, args.out / f"{name}-{width}.png", width, work)
            print(f"{name}: {name}-375.png, {name}-800.png")
        write_index(args.out, sorted(emails))
    print(f"{len(emails)} email(s) drawn in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
