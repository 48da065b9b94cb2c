"""Spreadsheet access: one interface (`Backend`), two backends (xlsx on disk, Google Sheets)."""

from __future__ import annotations

from typing import Any

from automations.config import Settings
from automations.sheets.base import Backend, Dashboard, DashboardBlock, RowWrite, SheetRow, Table, WriteReport

__all__ = ["Backend", "Dashboard", "DashboardBlock", "RowWrite", "SheetRow", "Table", "WriteReport", "open_backend"]


def open_backend(settings: Settings, **kwargs: Any) -> Backend:
    """The configured backend: the xlsx workbook at [sheet] path, or the Google Sheet at [sheet] key."""
    if settings.sheet.backend == "google":
        from automations.sheets.google import GoogleBackend

        return GoogleBackend(settings.sheet, **kwargs)
    from automations.sheets.xlsx import XlsxBackend

    return XlsxBackend(settings.sheet.path)
