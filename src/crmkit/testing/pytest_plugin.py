"""pytest plugin of the crmkit test kit (entry point ``pytest11: crmkit``).

Fixtures:

* ``db_backend`` -- ``"sqlite"`` or ``"postgresql"``; every test using it (directly or
  through ``crm``/``make_crm``) runs once per backend.  Choose backends with
  ``--crmkit-db=sqlite`` or ``CRMKIT_TEST_DBS=sqlite,postgresql``.
* ``make_crm`` -- ``make_crm(plugins=[...], settings={...})``: a fresh application on the
  current backend, closed after the test.
* ``crm`` -- the core application alone.
* ``module_crm`` -- ``module_crm(build, plugins=[...], settings={...})``: an application
  and what ``build(crm)`` returned, made once per test module and backend (and made again
  if another test emptied the PostgreSQL schema meanwhile).  For tests that only read, or
  that hold whatever earlier tests left (API fuzzing): never for a test asserting exact
  contents.
* ``user_factory`` -- ``user_factory("agent")`` creates a user with that role.
* ``as_role`` -- ``with as_role("agent") as work:`` acts as a new user with that role.
* ``redis_url`` -- a reachable Redis (skipped, or failed under CI, when there is none).
* ``peers_dir`` -- ``../shared/peers`` (recorded traffic of outside services).

Markers: ``postgres_only``, ``sqlite_only``, ``slow``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crmkit import testing

BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--crmkit-db",
        default=os.environ.get("CRMKIT_TEST_DBS", ",".join(BACKENDS)),
        help="Comma-separated databases to run crmkit tests on (sqlite, postgresql).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres_only: run only against PostgreSQL")
    config.addinivalue_line("markers", "sqlite_only: run only against SQLite")
    config.addinivalue_line("markers", "slow: an end-to-end story (browser or processes)")


def _backends(config: pytest.Config) -> list[str]:
    chosen = [b.strip() for b in str(config.getoption("--crmkit-db")).split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown:
        raise pytest.UsageError(f"--crmkit-db: unknown database {unknown[0]!r}")
    return chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" not in metafunc.fixturenames:
        return
    backends = _backends(metafunc.config)
    if metafunc.definition.get_closest_marker("postgres_only"):
        backends = [b for b in backends if b == "postgresql"]
    if metafunc.definition.get_closest_marker("sqlite_only"):
        backends = [b for b in backends if b == "sqlite"]
    metafunc.parametrize("db_backend", backends, ids=backends, scope="function")


@pytest.fixture
def make_crm(db_backend: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory of fresh applications on the current backend."""
    created: list[Any] = []
    counter = itertools.count()

    def factory(plugins: Any = (), **kwargs: Any) -> Any:
        if db_backend == "postgresql":
            testing.require(
                testing.postgres_reachable(),
                f"PostgreSQL at {testing.postgres_url()} ({testing.postgres_error()})",
            )
        directory = kwargs.pop("directory", tmp_path / f"crm{next(counter)}")
        crm = testing.make_crm(plugins, db=db_backend, directory=directory, **kwargs)
        created.append(crm)
        return crm

    yield factory
    for crm in created:
        crm.close()


@pytest.fixture(scope="module")
def _module_crms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Any, Any]]:
    """The applications ``module_crm`` keeps for one module, closed after its last test."""
    kept: dict[Any, Any] = {}
    yield kept
    for crm, _built, _resets in kept.values():
        crm.close()


@pytest.fixture
def module_crm(
    db_backend: str, _module_crms: dict[Any, Any], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Any]:
    """``module_crm(build, plugins=[...], settings={...})`` -> ``(crm, build(crm))``, the same
    for every test of the module on this backend while the database is intact."""

    def get(build: Callable[[Any], Any], plugins: Any = (), **kwargs: Any) -> tuple[Any, Any]:
        key = (db_backend, build)
        if key in _module_crms:
            crm, built, resets = _module_crms[key]
            if db_backend != "postgresql" or resets == testing.postgres_resets():
                return crm, built
            del _module_crms[key]  # another test emptied the schema: build again
            crm.close()
        if db_backend == "postgresql":
            testing.require(
                testing.postgres_reachable(),
                f"PostgreSQL at {testing.postgres_url()} ({testing.postgres_error()})",
            )
        crm = testing.make_crm(
            plugins, db=db_backend, directory=tmp_path_factory.mktemp("crm"), **kwargs
        )
        try:
            built = build(crm)
        except BaseException:
            crm.close()
            raise
        _module_crms[key] = (crm, built, testing.postgres_resets())
        return crm, built

    return get


@pytest.fixture
def crm(make_crm: Callable[..., Any]) -> Any:
    """The core application alone, on a fresh database."""
    return make_crm()


@pytest.fixture
def user_factory(crm: Any) -> Callable[..., Any]:
    """``user_factory("agent", username=None)`` -> a new user holding the role(s)."""
    counter = itertools.count(1)

    def factory(*roles: str, username: str | None = None, **values: Any) -> Any:
        name = username or f"{'_'.join(roles) or 'user'}{next(counter)}"
        return testing.add_user(crm, name, roles or ("agent",), **values)

    return factory


@pytest.fixture
def as_role(crm: Any, user_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``with as_role("agent") as work:`` -> a unit of work acting as a new user of that role."""

    def enter(*roles: str) -> Any:
        return crm.acting_as(user_factory(*roles))

    return enter


@pytest.fixture
def redis_url() -> str:
    """The test Redis server's URL; skips (fails under CI) when it does not answer."""
    url = testing.redis_url()
    try:
        import redis  # type: ignore[import-not-found]

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
        reachable = True
    except Exception:  # not installed or not running: both mean unavailable
        reachable = False
    testing.require(reachable, f"Redis at {url}")
    return url


@pytest.fixture(scope="session")
def peers_dir(request: pytest.FixtureRequest) -> Path:
    """The folder of recorded peer traffic beside the project (``../shared/peers``)."""
    root = Path(str(request.config.rootpath))
    candidates = [Path(os.environ["CRMKIT_PEERS_DIR"])] if "CRMKIT_PEERS_DIR" in os.environ else []
    candidates += [parent / "shared" / "peers" for parent in (root.parent, *root.parents)]
    found = next((c for c in candidates if c.is_dir()), None)
    testing.require(found is not None, "recorded peer traffic (../shared/peers)")
    assert found is not None
    return found
