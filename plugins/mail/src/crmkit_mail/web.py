"""The public unsubscribe page of mailings (``/mail/unsubscribe/<token>``).

GET shows a confirmation button (mail scanners that open links must not unsubscribe anyone);
POST records the opt-out, which is also what RFC 8058 one-click clients send.
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">
<h1>{title}</h1><p>{text}</p>{form}</body></html>"""


async def unsubscribe(request: Request) -> Response:
    """Confirm (GET) or record (POST) an unsubscription."""
    from crmkit_mail.campaigns import Campaigns, address_of_token

    crm = request.app.state.crm
    found = address_of_token(crm, request.path_params["token"])
    if found is None:
        body = PAGE.format(title="Ссылка недействительна / Invalid link", text="", form="")
        return HTMLResponse(body, status_code=404)
    address, campaign_id = found
    shown = html.escape(address)
    if request.method == "POST":
        with crm.system() as work:
            Campaigns(work).unsubscribe(address, campaign_id)
        text = f"{shown}: вы отписаны от рассылок. / You are unsubscribed from mailings."
        return HTMLResponse(PAGE.format(title="Готово / Done", text=text, form=""))
    form = (
        '<form method="post"><button type="submit" data-unsubscribe>'
        "Отписаться / Unsubscribe</button></form>"
    )
    text = f"Больше не присылать рассылки на {shown}? / No more mailings to {shown}?"
    return HTMLResponse(PAGE.format(title="Отписка / Unsubscribe", text=text, form=form))
