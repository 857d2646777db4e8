"""Reports: every registered report (``crmkit_register_reports``) as a table and a chart.

``/reports`` lists the reports the user may run: one of the report's ``roles`` (any role
when it names none) or the ``report`` permission on its ``entity`` (on ``*`` for a report
naming none; the admin role's ``* / *`` cell gives it), and ``read`` on the entity.  Others are
404, like a missing page.  ``/reports/<name>`` shows the parameter form (from
``Report.params``: ``"date"``, ``"number"``, a list of choices, or an entity name whose
records are offered; anything else is a text field), the table with its totals and the
Chart.js chart; ``/reports/<name>/export.csv`` and ``.xlsx`` download the same figures,
for users who may also ``export`` the entity.  All of it is in the reader's language:
labels, text cells and the chart's labels go through the catalogs (:func:`translated`,
:func:`chart_json`).
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote, urlencode

from babel import numbers, units
from starlette.requests import Request
from starlette.responses import Response

from crmkit.clock import utcnow
from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.i18n import StageLabel
from crmkit.reports import Column, Report, ReportResult, export, export_formats, period_shortcuts
from crmkit.web import i18n
from crmkit.web.concurrency import long_running
from crmkit.web.pages import NotFoundPage, actor_can, error_text, render, work

MONEY_PATTERN = "#,##0.00"
CHOICES_LIMIT = 200


def may_run(request: Request, report: Report) -> bool:
    """Whether the signed-in user may run ``report``: one of its roles or the ``report``
    permission (a power, never a role's name), then the entity's ``read``."""
    roles = request.state.actor.roles
    if (
        report.roles
        and not (set(report.roles) & roles)
        and not actor_can(request, report.entity or "*", "report")
    ):
        return False
    return report.entity is None or actor_can(request, report.entity, "read")


def may_export(request: Request, report: Report) -> bool:
    """Whether the user may also download it (``export`` on the report's entity)."""
    return may_run(request, report) and (
        report.entity is None or actor_can(request, report.entity, "export")
    )


def _report_or_404(request: Request) -> Report:
    report = request.app.state.crm.reports.get(request.path_params["name"])
    if report is None or not may_run(request, report):
        raise NotFoundPage()
    return report


def index(request: Request) -> Response:
    """The reports this user may run."""
    reports = [r for r in request.app.state.crm.reports.values() if may_run(request, r)]
    if not reports:
        raise NotFoundPage()
    return render(request, "reports.html", {"title": "Reports", "reports": reports})


def _params(report: Report, query: Any) -> dict[str, str]:
    return {key: query[key] for key in report.params if query.get(key)}


def _inputs(unit: Any, report: Report, values: dict[str, str]) -> list[dict[str, Any]]:
    """Form inputs for a report's parameters."""
    crm = unit.crm
    inputs = []
    for key, kind in report.params.items():
        entry: dict[str, Any] = {"name": key, "value": values.get(key, "")}
        if isinstance(kind, list | tuple):
            entry.update(kind="select", choices=[(str(c), str(c)) for c in kind], blank=False)
        elif kind in crm.entities:
            entity = crm.entities[kind]
            records = unit.records(kind).list(limit=CHOICES_LIMIT)
            choices = [(str(r.id), entity.title_of(r) or f"#{r.id}") for r in records]
            entry.update(kind="select", choices=choices, blank=True)
        else:
            entry.update(kind=kind if kind in ("date", "number") else "text")
        inputs.append(entry)
    return inputs


def period_links(
    crm: Any, locale: i18n.Locale, report: Report, values: dict[str, str]
) -> list[dict[str, Any]]:
    """The period shortcuts of ``report`` (``Report.period``) as links to its page: each a
    ``label`` (a message id: ``"This month"``), the ``query`` string that fills the period
    fields and keeps the other ``values`` as given, and whether it is the ``current`` one.

    The day is today in the deployment's time zone (``locale.timezone``), where the reports
    read their dates; the week starts on the reader's language's first day (Monday in
    Russian).  Empty for a report without a period.  The report page and every screen
    showing reports with their forms (denaq's statistics) offer these, through the
    ``period_shortcuts`` macro of ``report_period.html``.
    """
    fields = report.period
    if fields is None:
        return []
    today = utcnow().astimezone(crm.config.zone).date()
    links = []
    for shortcut in period_shortcuts(today, locale.first_weekday):
        period = shortcut.params(fields)
        query = {**values, **period}
        links.append(
            {
                "label": shortcut.label,
                "query": urlencode(query),
                "current": all(values.get(k) == v for k, v in period.items()),
            }
        )
    return links


def _cell(locale: i18n.Locale, value: Any, kind: str) -> str:
    if value is None or value == "":
        return ""
    if kind == "money" and isinstance(value, Decimal | int | float):
        return numbers.format_decimal(value, MONEY_PATTERN, locale=locale.language)
    if kind == "percent" and isinstance(value, Decimal | int | float):
        return percent(locale, value)
    if kind == "duration" and isinstance(value, Decimal | int | float):
        return duration(locale, value)
    if kind == "number" and isinstance(value, Decimal | int | float):
        return locale.number(value)
    if kind == "date":
        return locale.date(value)
    return _translated_text(value) if isinstance(value, str) else str(value)


def percent(locale: i18n.Locale, fraction: Decimal | float) -> str:
    """A report's fraction (``0.758``) as a percent in the reader's language, one decimal at
    most, rounded half up (``75,8 %`` in Russian, ``75.8%`` in English).

    The one way a ``percent`` value is shown: every report keeps a share as a fraction (1 is
    100 %), never as a number of percents, and this multiplies it by a hundred.
    """
    rounded = Decimal(str(fraction)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    return numbers.format_percent(rounded, locale=locale.language, decimal_quantization=False)


def duration(locale: i18n.Locale, seconds: Decimal | float) -> str:
    """A report's duration in seconds as days and hours in the reader's language
    (``34 дня 9 часов``); under a day, hours and minutes; under an hour, minutes."""
    total = max(round(float(seconds)), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        parts = [("duration-day", days), ("duration-hour", hours)]
    elif hours:
        parts = [("duration-hour", hours), ("duration-minute", minutes)]
    else:
        parts = [("duration-minute", minutes)]
    return " ".join(
        units.format_unit(amount, unit, length="long", locale=locale.language)
        for unit, amount in parts
        if amount or unit == parts[0][0]
    )


def _translated_text(value: Any) -> Any:
    """A report's text in the current language, as its table cells show it (other values
    as they are); a stage's title in its pipeline's context."""
    if isinstance(value, StageLabel):
        return i18n.pgettext(value.context, str(value))
    return i18n.gettext(value) if isinstance(value, str) else value


def chart_json(chart: Any) -> str | None:
    """The Chart.js configuration of a report's chart, as JSON, its labels translated.

    A chart given in the short form ``{"type", "labels", "datasets"}`` (the core's
    pipeline reports) is wrapped into ``{"type", "data": {...}}``; in a full configuration
    (a plugin's), the data's labels and each dataset's label are translated as the
    table's text cells are, the rest passes as it is.
    """
    if not chart:
        return None
    _ = i18n.gettext
    if "data" not in chart and "datasets" in chart:
        chart = {
            "type": chart.get("type", "bar"),
            "data": {
                "labels": [_translated_text(label) for label in chart.get("labels", [])],
                "datasets": [{**d, "label": _(str(d.get("label", "")))} for d in chart["datasets"]],
            },
            "options": chart.get("options", {}),
        }
    elif isinstance(chart.get("data"), dict):
        data = dict(chart["data"])
        if "labels" in data:
            data["labels"] = [_translated_text(label) for label in data["labels"]]
        if "datasets" in data:
            data["datasets"] = [
                {**d, "label": _translated_text(d["label"])} if "label" in d else d
                for d in data["datasets"]
            ]
        chart = {**chart, "data": data}
    return json.dumps(chart, default=lambda v: float(v) if isinstance(v, Decimal) else str(v))


def translated(result: ReportResult) -> ReportResult:
    """A report's figures as the reader reads them on its page (call it with the reader's
    language active): column labels, text cells and totals translated, numbers, amounts and
    dates as they are.  Exports write this, so a downloaded file says what the page says."""
    texts = {c.key for c in result.columns if c.kind != "date"}

    def row_of(row: Any) -> dict[str, Any]:
        return {k: _translated_text(v) if k in texts else v for k, v in row.items()}

    totals = row_of(result.totals) if result.totals else result.totals
    keys = [c.key for c in result.columns]
    if totals and keys and keys[0] not in totals and any(k in totals for k in keys):
        totals[keys[0]] = i18n.gettext("Total")  # the export's own label of the totals row
    return ReportResult(
        columns=[Column(c.key, i18n.gettext(c.label), c.kind) for c in result.columns],
        rows=[row_of(row) for row in result.rows],
        chart=result.chart,
        totals=totals,
    )


def report_page(request: Request) -> Response:
    """One report: its parameter form, table, totals and chart."""
    report = _report_or_404(request)
    values = _params(report, request.query_params)
    result = None
    error = None
    with work(request) as unit:
        try:
            # built for its reader: a report may label for them (crmkit.web.i18n.current());
            # the downloads build it with no reader, for figures a program reads as well
            with i18n.activate(request.state.locale):
                result = report.build(unit, values)
        except (ValidationFailed, PermissionDenied) as refused:
            error = error_text(request, refused)
        return _page(request, unit, report, values, result, error)


def _page(
    request: Request,
    unit: Any,
    report: Report,
    values: dict[str, str],
    result: ReportResult | None,
    error: str | None,
) -> Response:
    """The report's page: the form holding ``values``, then the figures of ``result``, or
    the reason ``error`` the report refused them above the form (a 422 when parameters
    were given: a report opened without its parameters says why next to the empty form)."""
    locale = request.state.locale
    inputs = _inputs(unit, report, values)
    shortcuts = period_links(unit.crm, locale, report, values)
    rows = []
    totals = None
    headers = []
    chart = None
    if result is not None:
        with i18n.activate(locale):
            # translated here: a label may hold a "%" that the template's _() would format
            headers = [
                (i18n.gettext(c.label), c.kind in ("money", "number", "percent", "duration"))
                for c in result.columns
            ]
            rows = [
                [_cell(locale, row.get(c.key), c.kind) for c in result.columns]
                for row in result.rows
            ]
            if result.totals:
                totals = [_cell(locale, result.totals.get(c.key), c.kind) for c in result.columns]
            chart = chart_json(result.chart)
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in values.items())
    return render(
        request,
        "report.html",
        {
            "title": report.label,
            "report": report,
            "inputs": inputs,
            "shortcuts": shortcuts,
            "result": result,
            "headers": headers,
            "rows": rows,
            "totals": totals,
            "chart": chart,
            "error": error,
            # nothing to download while the report refuses its parameters
            "formats": export_formats() if result and may_export(request, report) else (),
            # the shortcuts lead to the report's page also from a refused download's URL
            "page_path": ""
            if request.url.path == f"/reports/{report.name}"
            else f"/reports/{report.name}",
            "query": query,
        },
        status=422 if error is not None and values else 200,
    )


@long_running
def download(request: Request) -> Response:
    """The report as a CSV or XLSX file; parameters it refuses show its page (a 422)."""
    report = _report_or_404(request)
    fmt = request.path_params["format"]
    if fmt not in export_formats() or not may_export(request, report):
        raise NotFoundPage()
    values = _params(report, request.query_params)
    with work(request) as unit:
        try:
            result = report.build(unit, values)
        except (ValidationFailed, PermissionDenied) as refused:
            # the report's page (a 422), the reason above its form holding what was typed:
            # no error page whose only way on is the home screen
            return _page(request, unit, report, values, None, error_text(request, refused))
    with i18n.activate(request.state.locale):
        title = i18n.gettext(report.label)
        readable = translated(result)
    content, media_type, extension = export(readable, fmt, title)
    filename = f"{report.name}.{extension}"
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
