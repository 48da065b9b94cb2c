"""partnerloop: a clinic's partnership programme, run from one shared spreadsheet."""

__version__ = "0.1.0"
