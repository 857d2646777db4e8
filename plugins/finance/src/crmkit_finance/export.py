"""Exporting a report to CSV or XLSX: the core's :mod:`crmkit.reports` export, which the
web UI's report screen and ``crmkit finance report --format`` both use (this plugin brings
openpyxl, so XLSX is always available with it)."""

from __future__ import annotations

from crmkit.reports import export, export_formats, to_csv, to_xlsx

__all__ = ["export", "export_formats", "to_csv", "to_xlsx"]
