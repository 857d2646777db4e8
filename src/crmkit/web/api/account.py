"""The caller's account and their personal API tokens."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields
from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import NotFound
from crmkit.schemas.api import NewTokenSchema, TokenRequestSchema, TokenSchema
from crmkit.schemas.output import encoder_for, output_schema
from crmkit.web.api.auth import acting, caller_id, in_thread
from crmkit.web.api.operations import Operation, loaded_body, query_parameter
from crmkit.web.api.params import flag, parse_id
from crmkit.web.api.responses import JSONResponse


def _me_schema(crm: Any) -> type[Schema]:
    base = output_schema(crm.entities["user"])
    declared: dict[str, Any] = dict(base().fields)
    declared["roles"] = fields.List(fields.String(), dump_only=True)
    return Schema.from_dict(declared, name="Me")


def me(request: Request) -> Response:
    """Who the token acts as."""
    crm = request.app.state.crm
    entity = crm.entities["user"]
    with acting(request) as work:
        user = work.users.get(caller_id(request))
        data = dict(encoder_for(output_schema(entity), entity.model).record(user))
        data["roles"] = sorted(user.role_names)
    return JSONResponse(data)


def _owner(request: Request) -> int | None:
    raw = request.query_params.get("user_id")
    if raw is None:
        return None
    user_id = parse_id(raw)
    if user_id is None:
        raise NotFound("user", raw)
    return user_id


def list_tokens(request: Request) -> Response:
    """Your tokens (an admin may name another user)."""
    owner = _owner(request)
    include_revoked = flag(request.query_params, "include_revoked")
    with acting(request) as work:
        rows = work.api_tokens.list(user=owner, include_revoked=include_revoked)
        items = TokenSchema(many=True).dump(rows)
    return JSONResponse({"items": items})


async def create_token(request: Request) -> Response:
    """A new token; its secret is in this answer and never again.  It expires no later than
    the token of the request (without ``expires_at`` it takes that token's expiry)."""
    wanted = await loaded_body(request, TokenRequestSchema)
    caller_token = request.scope["crmkit.token"]

    def action(work: Any) -> Response:
        issued = work.api_tokens.create(
            wanted["name"],
            user=wanted.get("user_id"),
            expires_at=wanted.get("expires_at"),
            not_after=caller_token.expires_at,  # no token outlives the one that made it
        )
        data = TokenSchema().dump(issued.token)
        data["secret"] = issued.secret
        return JSONResponse(
            data,
            status_code=201,
            headers={"Location": f"/api/v1/tokens/{issued.token.id}", "Cache-Control": "no-store"},
        )

    return await in_thread(request, action)


async def revoke_token(request: Request) -> Response:
    """Revoke a token for good."""
    token_id = parse_id(request.path_params["id"])
    if token_id is None:
        raise NotFound("api_token", request.path_params["id"])

    def action(work: Any) -> Response:
        work.api_tokens.revoke(token_id)
        return Response(status_code=204)

    return await in_thread(request, action)


def _token_list_schema() -> Any:
    return Schema.from_dict(
        {"items": fields.List(fields.Nested(TokenSchema), required=True)}, name="TokenList"
    )


def operations(crm: Any) -> list[Operation]:
    """Account and token operations."""
    return [
        Operation(
            "GET",
            "/me",
            me,
            "me",
            "Who am I",
            "Account",
            responses={200: ("The user the token acts as, with their roles.", _me_schema(crm))},
        ),
        Operation(
            "GET",
            "/tokens",
            list_tokens,
            "list_tokens",
            "List personal API tokens",
            "Account",
            parameters=[
                query_parameter(
                    "user_id", "Another user's tokens (admins).", {"type": "integer", "minimum": 1}
                ),
                query_parameter("include_revoked", "Show revoked ones too.", {"type": "boolean"}),
            ],
            responses={200: ("Tokens, newest first (no secrets).", _token_list_schema())},
            errors=(403, 404),
        ),
        Operation(
            "POST",
            "/tokens",
            create_token,
            "create_token",
            "Create a personal API token",
            "Account",
            body=TokenRequestSchema,
            responses={
                201: (
                    "The token with its `secret` (shown this once). It expires no later than "
                    "the token of the request: without `expires_at` it takes that expiry.",
                    NewTokenSchema,
                )
            },
            errors=(403, 404, 422),
        ),
        Operation(
            "DELETE",
            "/tokens/{id:id}",
            revoke_token,
            "revoke_token",
            "Revoke a personal API token",
            "Account",
            responses={204: ("Revoked.", None)},
            errors=(404,),
        ),
    ]
