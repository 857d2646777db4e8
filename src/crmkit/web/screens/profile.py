"""The user's own profile: name, language, time zone, password, calendar feed, sessions,
personal API tokens, and where notifications are forwarded (mail, Telegram...)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from starlette.requests import Request
from starlette.responses import Response

from crmkit.channels import AddressKind, Capability, Channel
from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.identity import contact_key
from crmkit.services.signin import SignInRefused
from crmkit.services.tokens import IssuedToken
from crmkit.web import i18n
from crmkit.web.pages import posted, redirect, render, work


def page(request: Request) -> Response:
    """Show (GET) or save (POST) the profile."""
    if request.method == "POST":
        user_id = request.state.user.id
        data = posted(request)
        timezone = str(data.get("timezone", "")).strip()
        if timezone and timezone not in zoneinfo.available_timezones():
            raise ValidationFailed({"timezone": [f"unknown time zone {timezone}"]})
        with work(request) as unit:
            unit.users.update(
                user_id,
                display_name=str(data.get("display_name", "")).strip(),
                email=str(data.get("email", "")).strip() or None,
                phone=str(data.get("phone", "")).strip() or None,
                locale=str(data.get("locale", "")) or None,
                timezone=timezone or None,
            )
        return redirect(request, "/profile", "Saved.")
    return _show(request)


def _show(request: Request, issued: IssuedToken | None = None) -> Response:
    """The profile page; ``issued``: a token just made, whose secret it shows this once."""
    user_id = request.state.user.id
    with request.app.state.crm.system() as unit:
        sessions = unit.signin.sessions_of(user_id)
    with work(request) as unit:
        user = unit.users.get(user_id)
        feed_since = unit.calendar_feeds.created_at()
        forwarding = {p.channel: p.address for p in unit.notifications.preferences()}
        api_tokens = unit.api_tokens.list()
    return render(
        request,
        "profile.html",
        {
            "title": i18n.lazy("Profile"),
            "profile": user,
            "sessions": sessions,
            "feed_since": feed_since,
            "feed_url": request.query_params.get("feed"),
            "forward_channels": _forward_channels(request),
            "forwarding": forwarding,
            "zones": sorted(z for z in zoneinfo.available_timezones() if "/" in z),
            "api_tokens": api_tokens,
            "issued": issued,
            "now": utcnow(),
        },
        # the page may carry a token's secret: no copy of it in any cache
        headers={"Cache-Control": "no-store"},
    )


def create_token(request: Request) -> Response:
    """Make a personal API token; the answer is the profile showing its secret this once.

    The page is rendered in the answer rather than after a redirect, so the secret is in
    no address (history, logs) and in no cookie.
    """
    data = posted(request)
    expires_at = _end_of_day(str(data.get("expires_on", "")).strip(), request.state.locale)
    with work(request) as unit:
        issued = unit.api_tokens.create(str(data.get("name", "")), expires_at=expires_at)
    return _show(request, issued)


def _end_of_day(text: str, locale: i18n.Locale) -> dt.datetime | None:
    """A ``date`` input as the moment its day ends in the user's zone (``None``: never)."""
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed({"expires_on": ["not a valid date"]}) from None
    if day < utcnow().astimezone(locale.zone).date():
        raise ValidationFailed({"expires_on": ["must be today or later"]})
    following = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=locale.zone)
    return following.astimezone(dt.UTC)


def revoke_token(request: Request) -> Response:
    """Revoke one of the user's own tokens (another's id is not found, even by an admin:
    administrators revoke others' tokens on the user's administration page)."""
    token_id = int(request.path_params["token_id"])
    with work(request) as unit:
        unit.api_tokens.revoke(token_id, owner_id=request.state.user.id)
    return redirect(request, "/profile", "Token revoked.")


def password(request: Request) -> Response:
    """Change the password (the current one is asked, throttled like a sign-in); other
    sessions end and the user's API tokens are revoked."""
    data = posted(request)
    user = request.state.user
    if data.get("new") != data.get("repeat"):
        raise ValidationFailed({"password": ["the two new passwords differ"]})
    address = request.client.host if request.client else None
    with work(request) as unit:
        try:
            unit.signin.check_password(user, str(data.get("current", "")), address=address)
        except SignInRefused as refused:
            wrong = refused.retry_after is None
            reason = "the current password is wrong" if wrong else refused.reason
            raise ValidationFailed({"password": [reason]}) from None
        unit.users.set_password(user.id, str(data.get("new", "")))
    # the epoch moved on: this browser signs in again with the new password
    return redirect(
        request, "/login", "Password changed and your API tokens revoked; sign in again."
    )


def renew_feed(request: Request) -> Response:
    """Make a new secret calendar feed address (the old one stops working)."""
    with work(request) as unit:
        token = unit.calendar_feeds.renew()
    base = request.app.state.crm.config["web.base_url"] or str(request.base_url).rstrip("/")
    return redirect(request, "/profile", "New feed address made.", feed=f"{base}/ical/{token}.ics")


def _forward_channels(request: Request) -> list[Channel]:
    """Channels that can send to a person: where a user may have notifications forwarded."""
    channels = request.app.state.crm.channels.values()
    return sorted((c for c in channels if c.can(Capability.SEND)), key=lambda c: c.name)


def forwarding(request: Request) -> Response:
    """Save where the user's notifications are forwarded; an empty address stops it."""
    data = posted(request)
    channels = _forward_channels(request)
    errors: dict[str, list[str]] = {}
    addresses: dict[str, str] = {}
    for channel in channels:
        address = str(data.get(f"forward_{channel.name}", "")).strip()
        if (
            address
            and channel.address_kind is AddressKind.EMAIL
            and not contact_key("email", address).valid  # the rule contact points follow
        ):
            errors[f"forward_{channel.name}"] = [f"{address!r} is not an email address"]
        addresses[channel.name] = address
    if errors:
        raise ValidationFailed(errors)
    with work(request) as unit:  # all channels or none
        kinds = {p.channel: list(p.kinds or []) for p in unit.notifications.preferences()}
        for name, address in addresses.items():  # the kinds chosen elsewhere are kept
            unit.notifications.set_preference(name, address or None, kinds=kinds.get(name))
    return redirect(request, "/profile", "Saved.")
