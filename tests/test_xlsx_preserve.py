"""An xlsx save keeps what staff put on any tab: pictures, charts, comments, data validation,
conditional formatting and formulas, on a staff tab and on Partners, through a real `run --all`.

openpyxl drops pictures when Pillow is missing, so Pillow is one of partnerloop's dependencies.
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from openpyxl.chart import BarChart, Reference
from openpyxl.comments import Comment
from openpyxl.drawing.image import Image
from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import PatternFill
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.datavalidation import DataValidation
from PIL import Image as Picture

from automations.check import init_sheet
from automations.cli import main
from automations.model import read_book
from automations.sheets import open_backend
from tests.conftest import make_settings
from tests.support.configs import config_for

STAFF_TAB = "Budget"
RED = PatternFill("solid", fgColor="FFC7CE")


def png() -> io.BytesIO:
    buffer = io.BytesIO()
    Picture.new("RGB", (40, 20), (200, 30, 30)).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def decorate(workbook: Workbook, tab: str, column: str) -> None:
    """Put one of each kind of thing staff add on *tab*, in and beside *column* (a free column)."""
    sheet = workbook[tab]
    sheet[f"{column}1"] = "Score"
    sheet[f"{column}2"], sheet[f"{column}3"] = 4, 9
    sheet[f"{column}4"] = f"=SUM({column}2:{column}3)"
    sheet[f"{column}2"].comment = Comment("checked with the owner", "Alex")
    rule = DataValidation(type="whole", operator="between", formula1="0", formula2="10")
    rule.add(f"{column}2:{column}50")
    sheet.add_data_validation(rule)
    sheet.conditional_formatting.add(f"{column}2:{column}50", CellIsRule(operator="greaterThan", formula=["5"], fill=RED))
    picture = Image(png())
    picture.anchor = "Z2"
    sheet.add_image(picture)
    chart = BarChart()
    chart.title = "Scores"
    chart.add_data(Reference(sheet, min_col=sheet[f"{column}1"].column, min_row=1, max_row=3), titles_from_data=True)
    sheet.add_chart(chart, "Z10")


def assert_kept(workbook: Workbook, tab: str, column: str) -> None:
    sheet = workbook[tab]
    assert sheet[f"{column}4"].value == f"=SUM({column}2:{column}3)", "formula"
    assert sheet[f"{column}2"].comment is not None and sheet[f"{column}2"].comment.text == "checked with the owner"
    assert [(v.type, str(v.sqref)) for v in sheet.data_validations.dataValidation if v.type == "whole"] == [
        ("whole", f"{column}2:{column}50")], "data validation"
    rules = [(str(r.sqref), rule.operator) for r in sheet.conditional_formatting for rule in r.rules]
    assert (f"{column}2:{column}50", "greaterThan") in rules, "conditional formatting"
    assert len(sheet._images) == 1, "picture"  # type: ignore[attr-defined]
    assert [c.title is not None for c in sheet._charts] == [True], "chart"  # type: ignore[attr-defined]


def test_run_all_keeps_pictures_charts_comments_validation_formatting_and_formulas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(tmp_path)
    partners = [{"Partner ID": "P-0001", "Business": "Cold Gym", "Email": "cold@gym.example", "Stage": "Prospect"}]
    init_sheet(open_backend(settings), settings, {"partners": partners})
    workbook = openpyxl.load_workbook(settings.sheet.path)
    workbook.create_sheet(STAFF_TAB)
    decorate(workbook, STAFF_TAB, "B")
    decorate(workbook, "Partners", "AD")
    workbook.save(settings.sheet.path)

    config = config_for(tmp_path / "settings.toml", settings)
    assert main(["--config", str(config), "run", "--all", "--now", f"{date(2026, 11, 23).isoformat()}T09:00"]) == 0
    assert len(list(settings.email.outbox_dir.glob("*outreach*.eml"))) == 1
    assert read_book(open_backend(settings), settings).partners[0].status.startswith("Intro sent 2026-11-23")

    saved = openpyxl.load_workbook(settings.sheet.path)
    assert "Dashboard" in saved.sheetnames and "Log" in saved.sheetnames
    for tab, column in ((STAFF_TAB, "B"), ("Partners", "AD")):
        assert_kept(saved, tab, column)
