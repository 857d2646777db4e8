"""Server-sent events: the bell's unread count, reminder pop-ups, plugin messages.

One stream per open tab at ``/live``.  Messages come from the application's live hub
(:mod:`crmkit.live`), so a notification written by any process reaches the user's tabs in
every web process.  The stream checks that the session still holds before it sends a
notification, and otherwise at least every ``PING_SECONDS`` however busy it is: a blocked or
signed-out user's tabs are told to sign in again and the stream ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from crmkit.web import i18n
from crmkit.web.links import notification_text, notification_url

PING_SECONDS = 15.0


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def stream(request: Request) -> Response:
    """``text/event-stream`` of the signed-in user's live messages."""
    crm = request.app.state.crm
    actor = request.state.actor
    user_id = request.state.user.id
    token = request.state.session_token
    locale = request.state.locale

    def notification_event(notification_id: int | None) -> str:
        with crm.acting_as(actor) as unit:
            unread = unit.notifications.unread_count()
            latest = unit.notifications.latest(limit=20)
            found = next((n for n in latest if n.id == notification_id), None)
            wanted = [found.party_id] if found is not None and found.party_id else []
            clients = unit.parties.find_many(wanted)
        data: dict[str, Any] = {"unread": unread}
        if found is not None:
            with i18n.activate(locale):
                data.update(
                    id=found.id,
                    kind=found.kind,
                    kind_label=i18n.gettext(found.kind),
                    text=notification_text(found),
                    url=notification_url(found, clients),
                )
        return _event("notification", data)

    def still_signed_in() -> bool:
        with crm.system() as unit:
            return unit.signin.resume(token) is not None

    async def events() -> AsyncIterator[str]:
        clock = asyncio.get_running_loop().time
        checked = clock()
        async with crm.live.subscribe(user_id) as queue:
            yield "retry: 3000\n\n" + notification_event(None)
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), PING_SECONDS)
                except TimeoutError:
                    message = None
                kind = str(message.get("type", "message")) if message else None
                # on the clock whatever arrives (a busy stream never goes quiet), and before
                # every notification: a signed-out or blocked user is told nothing more
                if message is None or kind == "notification" or clock() - checked >= PING_SECONDS:
                    checked = clock()
                    if not still_signed_in():
                        yield _event("signed-out", {})
                        return
                if message is None:
                    yield ": ping\n\n"
                elif kind == "notification":
                    yield notification_event(message.get("id"))
                else:
                    yield _event(str(kind), message)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
