"""Fuzzing a CRM's REST API with schemathesis: the core's endpoints and a plugin's.

schemathesis generates requests from ``/api/v1/openapi.json`` and checks that none makes
the server fail (5xx) and that every answer has a documented status and media type.  The
document is read once, when the test module is imported, from an application with the
plugins given; each test then points :class:`CurrentApp` at its application (a fresh
database, or one the module keeps with the ``module_crm`` fixture when it is slow to fill)::

    from crmkit.testing.fuzz import api_schema, check, fuzz_settings

    schema, current = api_schema([my_plugin], path_regex="my_entity")

    @schema.parametrize()
    @fuzz_settings()
    def test_my_api_under_fuzzing(case, crm_with_my_plugin, admin_token):
        with current.serving(create_app(crm_with_my_plugin)):
            check(case, admin_token)

A few examples per operation keep a suite fast; ``CRMKIT_FUZZ_EXAMPLES`` asks for a deeper
run (a few hundred found bugs the default did not).  schemathesis and hypothesis are
development dependencies: import this module from tests only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

#: Examples per operation (``CRMKIT_FUZZ_EXAMPLES``).
EXAMPLES = int(os.environ.get("CRMKIT_FUZZ_EXAMPLES", "8"))


class CurrentApp:
    """An ASGI app forwarding to the application of the running test."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    @contextlib.contextmanager
    def serving(self, app: Any) -> Iterator[Any]:
        """Forward to ``app`` while the block runs."""
        previous, self.app = self.app, app
        try:
            yield app
        finally:
            self.app = previous


def document_app(plugins: Sequence[Any] = ()) -> Any:
    """A web application on an empty in-memory database: enough to serve the document."""
    from crmkit import CRM, Config
    from crmkit.web.app import create_app

    config = Config.from_mapping(
        {"database.url": "sqlite:///:memory:", "secret_key": "only-for-the-document"},
        root=tempfile.gettempdir(),
        environ={},
    )
    return create_app(CRM(config, plugins=list(plugins), load_entry_points=False))


def api_schema(
    plugins: Sequence[Any] = (), *, path_regex: str | None = None
) -> tuple[Any, CurrentApp]:
    """The API's schemathesis schema (only the paths ``path_regex`` matches, if given) and
    the :class:`CurrentApp` its requests go to."""
    import schemathesis

    current = CurrentApp(document_app(plugins))
    config = schemathesis.Config()
    # the coverage phase sends dozens of boundary cases per operation whatever
    # max_examples says; property-based generation alone keeps the run bounded
    config.projects.default.phases.coverage.enabled = False
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", current, config=config)
    if path_regex is not None:
        schema = schema.include(path_regex=path_regex)
    return schema, current


def fuzz_settings(examples: int | None = None) -> Any:
    """hypothesis settings for a fuzzing test: bounded, repeatable, no deadline."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=examples or EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


def check(case: Any, secret: str) -> None:
    """Send ``case`` with the bearer token ``secret``; fail on a 5xx or an answer the
    document does not describe (status, media type)."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        status_code_conformance,
    )

    headers = {"Authorization": f"Bearer {secret}"}
    if case.headers:
        case.headers.pop("Authorization", None)
    response = case.call(headers=headers)
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance],
        headers=headers,
    )
