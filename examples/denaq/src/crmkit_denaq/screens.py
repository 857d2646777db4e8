"""denaq's own screens: the lead creators' leads, the admin's distribution and statistics.

Everything else (cards, lists, the board, calendar, templates, users) is the core's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import ValidationFailed
from crmkit.model import Party
from crmkit.web import i18n
from crmkit.web.api.params import text_param
from crmkit.web.forms import id_list, optional_id
from crmkit.web.pages import form_data, redirect, render, work
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
                    "%(num)d firm handed over to %(agent)s",
                    "%(num)d firms handed over to %(agent)s",
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
                "%(num)d lead given to %(agent)s", "%(num)d leads given to %(agent)s", count
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
    pipeline's)."""
    charts = []
    query = request.query_params
    # every report's parameters as given: each report's form shows its own and carries the
    # others', so choosing the funnel's period keeps the weeks of the activity and back
    values = {key: query[key] for report in STATS for key in report.params if query.get(key)}
    locale = request.state.locale
    with work(request) as unit, i18n.activate(locale):
        for report in STATS:
            params = {key: values[key] for key in report.params if key in values}
            result = report.build(unit, params)
            # the core's period shortcuts of a report with a period, the others' values kept
            links = period_links(unit.crm, locale, report, values)
            charts.append((report, chart_json(result.chart), len(result.rows), links))
    return render(
        request,
        "denaq/stats.html",
        {"title": i18n.lazy("Statistics"), "charts": charts, "values": values},
    )
