"""Render docs/dashboard.png: the demo workbook's Dashboard tab, as LibreOffice draws it.

Builds the demo exactly as `partnerloop demo` does (every job run once as at a fixed day: the
Dashboard it writes shows that run, its emails and its To do list), converts the workbook to PDF
with LibreOffice headless and keeps the first page (the Dashboard tab comes first), margins
cropped, as a PNG at 80 dpi.

Needs LibreOffice Calc and poppler-utils (`apt-get install libreoffice-calc poppler-utils`);
they are not part of partnerloop's dependencies or CI.

    python docs/render_dashboard.py [--out docs/dashboard.png] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
DEMO_DAY = datetime(2026, 11, 27, 8, 30, tzinfo=ZoneInfo("America/Chicago"))
DPI = 80


def build_workbook(directory: Path) -> Path:
    """The demo workbook after `partnerloop demo` ran every job once: its Dashboard is that run's."""
    from automations.config import load_settings
    from automations.demo import run_demo

    settings, _, _ = run_demo(load_settings(REPO / "config" / "settings.toml"), directory, DEMO_DAY)
    return settings.sheet.path


def render(workbook: Path, out: Path, work: Path) -> None:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None or shutil.which("pdftoppm") is None:
        raise SystemExit("render_dashboard: needs soffice (LibreOffice Calc) and pdftoppm (poppler-utils) on PATH")
    profile = (work / "lo-profile").as_uri()  # a throwaway LibreOffice profile: no first-run dialogs, no locks
    subprocess.run([soffice, f"-env:UserInstallation={profile}", "--headless", "--convert-to", "pdf",
                    "--outdir", str(work), str(workbook)], check=True, capture_output=True, timeout=300)
    pdf = work / (workbook.stem + ".pdf")
    page = ["pdftoppm", "-r", str(DPI), "-f", "1", "-l", "1", "-singlefile"]
    subprocess.run([*page, "-gray", str(pdf), str(work / "gray")], check=True, timeout=120)
    x, y, width, height = content_box((work / "gray.pgm").read_bytes())
    subprocess.run([*page, "-png", "-x", str(x), "-y", str(y), "-W", str(width), "-H", str(height), str(pdf),
                    str(work / "page")], check=True, timeout=120)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "page.png", out)


def content_box(pgm: bytes, margin: int = 16) -> tuple[int, int, int, int]:
    """x, y, width, height of what is printed on a binary PGM page (the page's margins cropped off)."""
    fields = pgm.split(maxsplit=4)  # P5, width, height, maxval, pixels
    width, height, pixels = int(fields[1]), int(fields[2]), fields[4]
    inked = [(i % width, i // width) for i, v in enumerate(pixels[:width * height]) if v < 235]
    if not inked:
        return 0, 0, width, height
    left, right = min(x for x, _ in inked), max(x for x, _ in inked)
    top, bottom = min(y for _, y in inked), max(y for _, y in inked)
    x, y = max(left - margin, 0), max(top - margin, 0)
    return x, y, min(right + margin, width) - x, min(bottom + margin, height) - y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    parser.add_argument("--keep", type=Path, help="build the demo here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        demo = args.keep or work / "demo"
        render(build_workbook(demo), args.out, work)
    print(f"{args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
