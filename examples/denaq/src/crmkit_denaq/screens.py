"""denaq's own screens: the lead creators' leads, the admin's distribution and statistics.

Everything else (cards, lists, the board, calendar, templates, users) is the core's.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from sqlalchemy import func
from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import ValidationFailed
from crmkit.model import Party
from crmkit.web import i18n
from crmkit.web.api.params import text_param
from crmkit.web.forms import id_list, optional_id
from crmkit.web.pages import error_text, form_data, redirect, render, work
from crmkit.web.screens import card
from crmkit.web.screens.reports import chart_json, period_links
from crmkit_denaq.distribution import distribution, summary
from crmkit_denaq.pipeline import NAME
from crmkit_denaq.stats import STATS

HERE = "/denaq/distribution"
#: Rows the distribution screen lists at most: waiting leads, and an agent's firms (the
#: headings give the whole counts; dealing in turn and handing over all work on every one).
POOL_SHOWN = 200
FIRMS_SHOWN = 500
#: Leads on one page of the lead creator's "waiting" list (the next pages follow).
LEADS_SHOWN = 100


def entered_by(unit: Any, user_id: int) -> int:
    """How many dealer records ``user_id`` entered, those given to agents since included.

    Only the number: the records an agent has are no longer the lead creator's to read, so
    this counts past their scope (the scoped count dropped as leads were handed out).
    """
    return int(
        unit.session.scalar(
            unit.parties.base_query()
            .with_only_columns(func.count())
            .where(Party.pipeline == NAME, Party.created_by_id == user_id)
        )
        or 0
    )


def new_lead(request: Request) -> Response:
    """The core's new client form as the lead creator's "New lead": titled so, with "Save
    and add another" for entering many leads in a row (back to an empty form, the saved
    lead named and linked in the flash)."""
    return card.new(
        request,
        title=i18n.lazy("New lead"),
        another=True,
        saved=i18n.lazy("Lead saved: %(name)s"),
    )


def leads(request: Request) -> Response:
    """A lead creator's leads: those still waiting for an agent, newest first, a page of
    ``LEADS_SHOWN`` at a time (the heading says how many there are), and how many they
    entered in all."""
    user_id = request.state.user.id
    after = request.query_params.get("after") or None
    mine = {"pipeline": NAME, "stage": "lead", "owner_id": user_id}
    with work(request) as unit:
        page = unit.parties.list(
            filters=mine, order=["-created_at"], after=after, limit=LEADS_SHOWN
        )
        waiting = list(page)
        whole = after is None and page.next_cursor is None
        total = len(waiting) if whole else unit.parties.count(filters=mine)
        entered = entered_by(unit, user_id)
    return render(
        request,
        "denaq/leads.html",
        {
            "title": i18n.lazy("My leads"),
            "waiting": waiting,
            "waiting_total": total,
            "next": page.next_cursor,
            "paged": after is not None,
            "entered": entered,
        },
    )


async def distribution_page(request: Request) -> Response:
    """Unassigned leads to agents (by hand, in bulk, round-robin); firms from agent to agent."""
    if request.method == "POST":
        return await _distribute(request)
    source = optional_id(request.query_params.get("from"), "from")
    found_at = text_param(request.query_params, "source")  # the pool narrowed to a source
    with work(request) as unit:
        service = distribution(unit)
        agents = service.agents()
        holders = service.holders()
        sources = service.sources()
        pool = service.unassigned(POOL_SHOWN, source=found_at)
        pool_total = len(pool) if len(pool) < POOL_SHOWN else service.waiting_count(found_at)
        users = {u.id: u for u in unit.users.list()}
        portfolio: list[Party] = []
        portfolio_total = 0
        if source is not None:
            # only the agents the screen offers: a lead creator's leads go through the pool
            service.require_holder(source, "from")
            firms = {"pipeline": NAME, "owner_id": source}
            portfolio = list(unit.parties.list(filters=firms, order=["name"], limit=FIRMS_SHOWN))
            portfolio_total = len(portfolio)
            if portfolio_total == FIRMS_SHOWN:
                portfolio_total = unit.parties.count(filters=firms)
        rows = summary(unit)
    return render(
        request,
        "denaq/distribution.html",
        {
            "title": i18n.lazy("Distribution"),
            "agents": agents,
            "holders": holders,
            "pool": pool,
            "pool_total": pool_total,
            "sources": sources,
            "found_at": found_at,
            "users": users,
            "summary": rows,
            "source": source,
            "portfolio": portfolio,
            "portfolio_total": portfolio_total,
            "pipeline": request.app.state.crm.pipeline(NAME),
        },
    )


async def _distribute(request: Request) -> Response:
    data = await form_data(request)
    action = data.get("action", "")
    # ids given but not ids are refused: an empty list would mean "every one"
    ids = id_list(data.get("ids"), "ids")
    found_at = text_param(data, "source")  # the pool's source, kept after dealing
    with work(request) as unit:
        service = distribution(unit)
        if action == "assign":
            agent = optional_id(data.get("agent_id"), "agent_id")
            if not ids:
                raise ValidationFailed({"ids": ["choose some leads first"]})
            if agent is None:
                raise ValidationFailed({"agent_id": ["choose an agent"]})
            dealt = service.assign(ids, agent)
        elif action == "round_robin":
            dealt = service.round_robin(ids or None, source=found_at)
        elif action == "reassign":
            source = optional_id(data.get("from_agent"), "from_agent")
            target = optional_id(data.get("to_agent"), "to_agent")
            if source is None or target is None:
                raise ValidationFailed({"to_agent": ["choose both agents"]})
            count = service.reassign(source, target, ids or None)
            # back to the giver's firms, unless a blocked giver now holds none to give
            still = source in {u.id for u in service.holders()}
            receiver = unit.users.get(target).label
            with i18n.activate(request.state.locale):
                text = i18n.ngettext(
                    # the name stands alone (in the nominative: names are not declined)
                    "%(num)d firm handed over → %(agent)s",
                    "%(num)d firms handed over → %(agent)s",
                    count,
                ) % {"num": count, "agent": receiver}
            return redirect(request, HERE, text, **({"from": source} if still else {}))
        else:
            raise ValidationFailed({"action": ["choose an action"]})
        # each agent named with the leads they were given (several when dealt in turn)
        names = {agent: unit.users.get(agent).label for agent in dealt.given}
    with i18n.activate(request.state.locale):
        parts = [
            i18n.ngettext(
                "%(num)d lead given → %(agent)s", "%(num)d leads given → %(agent)s", count
            )
            % {"num": count, "agent": names[agent]}
            for agent, count in sorted(dealt.given.items(), key=lambda item: names[item[0]])
        ]
        text = "; ".join(parts) if parts else i18n.gettext("No leads given")
        if dealt.taken:
            names = ", ".join(p.name for p in dealt.taken)
            text += ". " + i18n.gettext("Already taken: %(names)s") % {"names": names}
    kind = "error" if dealt.taken and not dealt.count else "ok"
    return redirect(request, HERE, text, kind=kind, **({"source": found_at} if found_at else {}))


def statistics(request: Request) -> Response:
    """denaq's reports on one page, as charts; each links to its table and downloads.
    A report with a period offers the core's period shortcuts (today, this month…).

    Each report reads the parameters it declares (the funnel's and the time in stage's
    ``since`` and ``until``, the activity's ``weeks``), as on its own page, and shows them
    in a form above its chart: anything else in the URL is no parameter of it
    (``owner_id=abc`` was a 500, ``pipeline=deals`` made the dealers' funnel another
    pipeline's).  A parameter a report refuses (``until=30.11.2026``) is said above that
    report's chart, naming the field, its form keeping what was typed; the other reports
    are drawn (a 422, the page kept).  A report whose figures are all zero (a period with
    no moves) says there is nothing for the period instead of a chart of empty bars."""
    charts = []
    query = request.query_params
    # every report's parameters as given: each report's form shows its own and carries the
    # others', so choosing the funnel's period keeps the weeks of the activity and back
    values = {key: query[key] for report in STATS for key in report.params if query.get(key)}
    locale = request.state.locale
    refused = False
    with work(request) as unit, i18n.activate(locale):
        for report in STATS:
            params = {key: values[key] for key in report.params if key in values}
            # the core's period shortcuts of a report with a period, the others' values kept
            links = period_links(unit.crm, locale, report, values)
            fields = [_field(key, values.get(key, "")) for key in report.params]
            try:
                result = report.build(unit, params)
            except ValidationFailed as error:
                refused = True
                charts.append((report, None, 0, links, fields, error_text(request, error)))
                continue
            shown = len(result.rows) if _has_figures(result.rows) else 0
            charts.append((report, chart_json(result.chart), shown, links, fields, None))
    return render(
        request,
        "denaq/stats.html",
        {
            "title": i18n.lazy("Statistics"),
            "charts": charts,
            "values": values,
        },
        status=422 if refused else 200,
    )


ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: The statistics' parameter fields: the period's days in the browser's date field (shown
#: in the reader's format, sent as ISO 8601), the activity's weeks as a number.
STAT_INPUTS = {
    "since": {"type": "date"},
    "until": {"type": "date"},
    "weeks": {"type": "number", "min": "1", "max": "52"},
}


def _field(key: str, value: str) -> dict[str, str]:
    """The form field of a report's parameter: its attributes and value.  A value a date
    field cannot hold (a refused ``30.11.2026``) is shown as typed, in a text field."""
    field = {"name": key, "value": value, **STAT_INPUTS.get(key, {"type": "text"})}
    if field["type"] == "date" and value and not ISO_DAY.fullmatch(value):
        field["type"] = "text"
    return field


def _has_figures(rows: list[dict[str, Any]]) -> bool:
    """Whether any number in ``rows`` is not zero (a funnel of a quiet period has a row
    for every stage, each of zeros)."""
    return any(
        isinstance(value, int | float | Decimal) and not isinstance(value, bool) and value
        for row in rows
        for value in row.values()
    )
