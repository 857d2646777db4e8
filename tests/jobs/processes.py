"""Real deployments and real worker processes for the background-work tests.

A :class:`Deployment` is a directory with a ``crmkit.toml`` pointing at a private
PostgreSQL schema and a Redis queue (a fresh secret key, hence a private queue name),
exactly what ``crmkit worker`` processes on several machines would share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from crmkit import testing
from crmkit.app import CRM
from crmkit.config import Config
from crmkit.model import metadata

ROOT = Path(__file__).resolve().parents[2]


def installed_plugins() -> list[str]:
    """Names of the plugins installed as entry points (blocked in these deployments)."""
    from importlib.metadata import entry_points

    return sorted(e.name for e in entry_points(group="crmkit"))


class Deployment:
    """A deployment directory on PostgreSQL + Redis, and its application in this process."""

    def __init__(
        self, directory: Path, redis_url: str, settings: dict[str, Any], plugins: Sequence[str]
    ) -> None:
        self.directory = directory
        self.plugins = list(plugins)
        self.schema, self._drop = testing.new_postgres_schema("crmkit_w")
        options = quote(f"-csearch_path={self.schema}")
        self.database_url = f"{testing.postgres_url()}?options={options}"
        lines = [
            f'secret_key = "worker-test-{os.urandom(6).hex()}"',
            f'database.url = "{self.database_url}"',
            f'queue.url = "{redis_url}"',
            'security.argon2_profile = "CHEAPEST"',
            # `crmkit worker` would load every installed plugin; these tests name theirs
            f"plugins.block = {installed_plugins()!r}",
        ]
        for key, value in settings.items():
            lines.append(
                f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"'
            )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "crmkit.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        import importlib

        modules = [importlib.import_module(name) for name in self.plugins]
        self.crm = CRM(Config.load(directory, environ={}), plugins=modules, load_entry_points=False)
        metadata.create_all(self.crm.engine)
        self.crm.migrations.stamp()  # `crmkit worker` refuses a database not at the heads
        self.crm.sync_access()
        self.crm.queue.flush()
        self.workers: list[subprocess.Popen[bytes]] = []

    def environment(self) -> dict[str, str]:
        """The environment of a child process acting on this deployment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRMKIT_")}
        env["CRMKIT_CONFIG"] = str(self.directory)
        # without cached bytecode every worker compiles the whole stack before it starts
        # (seconds of CPU each); let the first child write the cache the others read
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    def start_worker(self, concurrency: int = 2) -> subprocess.Popen[bytes]:
        """A worker process: ``crmkit worker``, or the same with this deployment's test
        plugins loaded (they are not installed entry points)."""
        env = self.environment()
        env["PYTHONPATH"] = str(ROOT)
        if self.plugins:
            command = [sys.executable, "-m", "tests.jobs.worker_main", "-c", str(concurrency)]
            command += [arg for name in self.plugins for arg in ("--plugin", name)]
        else:
            command = [sys.executable, "-m", "crmkit.cli", "worker", "-c", str(concurrency)]
        log = open(self.directory / f"worker{len(self.workers)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        log.close()
        self.workers.append(process)
        return process

    def cli(self, *args: str) -> Any:
        """Run a ``crmkit`` command against this deployment (in this process: the workers
        are the separate processes that matter here); click's ``Result``."""
        from click.testing import CliRunner

        from crmkit.cli import _add_plugin_commands, cli

        arguments = ["--config", str(self.directory), *args]
        _add_plugin_commands(arguments)
        return CliRunner().invoke(cli, arguments, catch_exceptions=False)

    def logs(self) -> str:
        """Everything the workers printed (shown when a test fails)."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.directory.glob("worker*.log"))
        )

    def scalar(self, sql: str, **params: Any) -> Any:
        """One value from the deployment's database."""
        with self.crm.engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar()

    def close(self) -> None:
        """Stop every worker still running, drop the schema, forget the queue."""
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.crm.queue.flush()
        self.crm.close()
        self._drop()
