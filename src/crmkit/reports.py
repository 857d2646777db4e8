"""Reports: named, access-checked queries that return a table and, optionally, a chart.

A plugin returns :class:`Report` objects from ``crmkit_register_reports``.  ``build`` runs
inside a unit of work (so every query it makes through the services is access-scoped) and
returns a :class:`ReportResult` that screens render and exports write to CSV/XLSX.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import io
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


@attrs.frozen
class Column:
    """A column of a report: key in each row, header, and how to format values."""

    key: str
    label: str
    #: text | number | money | date | percent (a fraction: 0.758 is 75.8 %) | duration (seconds)
    kind: str = "text"


@attrs.frozen
class ReportResult:
    """Rows (mappings keyed by column) plus an optional chart description for Chart.js."""

    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    chart: Mapping[str, Any] | None = None
    totals: Mapping[str, Any] | None = None


@attrs.frozen
class PeriodFields:
    """Which two of a report's parameters hold its period, and how it reads the end.

    ``end_inclusive`` is true when the end day is counted (finance's ``start``/``end``:
    ``end=2026-01-31`` is the whole of January) and false when the end is the first moment
    after the period (the core's ``since``/``until``: ``until=2026-02-01``).
    """

    start: str
    end: str
    end_inclusive: bool = False


#: The core's period, :data:`crmkit.pipeline.reports.PERIOD_PARAMS`: ``since``, and
#: ``until`` exclusive.  A report declaring both parameters has it unless it says otherwise.
SINCE_UNTIL = PeriodFields("since", "until")


def _default_period(report: Report) -> PeriodFields | None:
    params = report.params
    return SINCE_UNTIL if SINCE_UNTIL.start in params and SINCE_UNTIL.end in params else None


@attrs.frozen
class Report:
    """A report: ``build(work, params)`` computes it; ``roles`` limits who may run it.

    ``entity`` names the entity whose ``read`` permission (and scope) the report honours.
    ``period`` names the parameters of its period (:class:`PeriodFields`): its page offers
    the period shortcuts (:func:`period_shortcuts`) for them.  A report declaring ``since``
    and ``until`` has the core's (:data:`SINCE_UNTIL`) unless it gives another.
    """

    name: str
    label: str
    build: Callable[[UnitOfWork, Mapping[str, Any]], ReportResult]
    entity: str | None = None
    roles: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    description: str = ""
    params: Mapping[str, Any] = attrs.field(factory=dict)
    period: PeriodFields | None = attrs.field(
        default=attrs.Factory(_default_period, takes_self=True)
    )


# -- shares ---------------------------------------------------------------------------------

#: The places a share (a ``percent`` column's fraction) keeps: 0.7576, shown as 75,8 %.
SHARE_PLACES = Decimal("0.0001")


def share(part: Decimal | float | None, whole: Decimal | float | None) -> Decimal | None:
    """``part`` as a fraction of ``whole`` for a ``percent`` column: a :class:`Decimal` to
    four places, rounded half up, as a person checking the figure by hand rounds it
    (``0.0313`` for 1 of 32, ``0.7576`` for 2500 of 3300); ``None`` when there is no whole
    to share (nothing entered, no revenue, no plan).  Every report's share is this: the
    core's funnel, finance's margins and plans, denaq's conversion."""
    if not whole:
        return None
    fraction = _exact(part or 0) / _exact(whole)
    return fraction.quantize(SHARE_PLACES, rounding=ROUND_HALF_UP)


def _exact(value: Decimal | int | float) -> Decimal:
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


# -- periods --------------------------------------------------------------------------------


@attrs.frozen
class PeriodShortcut:
    """A period a report is often asked for: ``label`` (a message id: ``"This month"``),
    its first day and the first day after it."""

    label: str
    start: dt.date
    stop: dt.date

    def params(self, fields: PeriodFields) -> dict[str, str]:
        """The period as the report's parameters (ISO dates; an inclusive end is the
        period's last day, an exclusive one the day after)."""
        end = self.stop - dt.timedelta(days=1) if fields.end_inclusive else self.stop
        return {fields.start: self.start.isoformat(), fields.end: end.isoformat()}


#: The shortcuts' labels in the order they are offered (message ids of the core catalog).
PERIOD_SHORTCUTS = ("Today", "This week", "This month", "Last month", "This quarter", "This year")


def _month_start(year: int, month: int) -> dt.date:
    """The first day of a month counted past December or before January."""
    year, index = divmod(year * 12 + month - 1, 12)
    return dt.date(year, index + 1, 1)


def period_shortcuts(today: dt.date, first_weekday: int = 0) -> list[PeriodShortcut]:
    """Today, this week, this month, last month, this quarter and this year, for a reader
    whose day is ``today`` (in the deployment's time zone, where the reports read dates)
    and whose weeks start on ``first_weekday`` (0 Monday … 6 Sunday, Babel's
    ``Locale.first_week_day``: Monday in Russian, Sunday in American English)."""
    week = today - dt.timedelta(days=(today.weekday() - first_weekday) % 7)
    month = today.replace(day=1)
    quarter = _month_start(today.year, (today.month - 1) // 3 * 3 + 1)
    spans = (
        (today, today + dt.timedelta(days=1)),
        (week, week + dt.timedelta(days=7)),
        (month, _month_start(today.year, today.month + 1)),
        (_month_start(today.year, today.month - 1), month),
        (quarter, _month_start(quarter.year, quarter.month + 3)),
        (dt.date(today.year, 1, 1), dt.date(today.year + 1, 1, 1)),
    )
    return [
        PeriodShortcut(label, start, stop)
        for label, (start, stop) in zip(PERIOD_SHORTCUTS, spans, strict=True)
    ]


# -- export ---------------------------------------------------------------------------------
#
# Both formats write the columns in order with their labels as the header, then the rows,
# then a totals row for the columns that have a total.  In XLSX (openpyxl, imported only
# when used: install it, or a plugin that depends on it, to export XLSX), money and numbers
# are real numbers with a number format (``#,##0.00``), dates are dates, percents hold the
# report's fraction (``0.758``) with a percent format that shows ``75.8%``, so an accountant
# can add them up in a spreadsheet.  CSV is UTF-8 with a BOM (so spreadsheet programs read
# Cyrillic right), amounts are written exactly (``1500.00``) and percents as the fraction.

MONEY_FORMAT = "#,##0.00"
NUMBER_FORMAT = "#,##0.###"
PERCENT_FORMAT = "0.0%"  # the cell holds the fraction: 0.758 shows as 75.8%

#: How text starts when a spreadsheet program would read it as a formula: a client named
#: ``=HYPERLINK("http://…?"&A2)`` must not become a link that sends the sheet away.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as an exported CSV cell: text that would start a formula gets a ``'`` in
    front (which spreadsheets show as text); numbers, negative amounts included, dates and
    ``None`` are left as they are.  Every CSV export writes its cells through this."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def xlsx_cell(sheet: Any, value: Any) -> Any:
    """A value to append to an openpyxl ``sheet``: text as a string cell, never a formula
    (openpyxl makes one of any text starting with ``=``), each control character an XLSX
    file cannot hold written as a space; other values as they are.  Every XLSX export
    writes its cells through this."""
    if not isinstance(value, str):
        return value
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    # a control character (Word's line break \x0b, a stray \x01 from another system) is
    # no character an XLSX cell may hold: openpyxl would refuse the whole file
    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub(" ", value))
    cell.data_type = "s"
    return cell


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def _totals_row(result: ReportResult) -> dict[str, Any] | None:
    totals = result.totals or {}
    keys = [c.key for c in result.columns]
    row = {k: totals[k] for k in keys if k in totals}
    if not row:
        return None
    row.setdefault(keys[0], "Total")
    return row


def to_csv(result: ReportResult) -> bytes:
    """The report as CSV bytes (UTF-8 with BOM, comma-separated)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([csv_cell(c.label) for c in result.columns])
    for row in result.rows:
        writer.writerow([_cell_text(csv_cell(row.get(c.key))) for c in result.columns])
    totals = _totals_row(result)
    if totals:
        writer.writerow([_cell_text(csv_cell(totals.get(c.key))) for c in result.columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(result: ReportResult, title: str = "Report") -> bytes:
    """The report as an XLSX workbook (one sheet, typed cells, bold header and totals)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    sheet.title = title[:31] or "Report"
    sheet.append([xlsx_cell(sheet, c.label) for c in result.columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    rows = list(result.rows)
    totals = _totals_row(result)
    if totals:
        rows.append(totals)
    for row in rows:
        sheet.append([xlsx_cell(sheet, _xlsx_value(row.get(c.key))) for c in result.columns])
        for index, column in enumerate(result.columns, start=1):
            cell = sheet.cell(row=sheet.max_row, column=index)
            if column.kind == "money":
                cell.number_format = MONEY_FORMAT
            elif column.kind == "number":
                cell.number_format = NUMBER_FORMAT
            elif column.kind == "percent":
                cell.number_format = PERCENT_FORMAT
            elif column.kind == "date" and isinstance(cell.value, dt.date):
                cell.number_format = "yyyy-mm-dd"
    if totals:
        for cell in sheet[sheet.max_row]:
            cell.font = Font(bold=True)
    for index, column in enumerate(result.columns, start=1):
        width = max([len(column.label), *(len(_cell_text(r.get(column.key))) for r in rows)])
        sheet.column_dimensions[get_column_letter(index)].width = min(width + 2, 60)
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        # openpyxl writes Decimal as a number; keep it exact rather than via float
        return value
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return value


def export_formats() -> tuple[str, ...]:
    """The formats :func:`export` can write here (``xlsx`` needs openpyxl installed)."""
    return ("csv", "xlsx") if importlib.util.find_spec("openpyxl") else ("csv",)


def export(result: ReportResult, fmt: str, title: str = "Report") -> tuple[bytes, str, str]:
    """(content, media type, file extension) of a report in ``fmt`` (``csv`` or ``xlsx``)."""
    if fmt == "csv":
        return to_csv(result), "text/csv; charset=utf-8", "csv"
    if fmt == "xlsx":
        return (
            to_xlsx(result, title),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        )
    raise ValueError(f"unknown export format {fmt!r} (csv or xlsx)")
