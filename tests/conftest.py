"""Shared fixtures: real databases (a SQLite file, and PostgreSQL when it answers), a runtime
on a simulated clock, and the repository's own journeys and content."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Prefect reads these at import: a private home, no telemetry, no logs shipped to a server.
_PREFECT_HOME = Path(os.environ.get("AFTERSALE_TEST_PREFECT_HOME", "/tmp/aftersale-test-prefect"))
os.environ.setdefault("PREFECT_HOME", str(_PREFECT_HOME))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
for _name in [n for n in os.environ if n.startswith("AFTERSALE_")]:
    if _name not in ("AFTERSALE_TEST_POSTGRES_URL", "AFTERSALE_TEST_PREFECT_HOME",
                     "AFTERSALE_TEST_REQUIRE_POSTGRES",
                     "AFTERSALE_FUZZ_EXAMPLES"):  # make fuzz: how many examples
        del os.environ[_name]  # the developer's own settings must not leak into tests

import pytest  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from aftersale.config import Settings  # noqa: E402
from aftersale.core.clock import SimulatedClock  # noqa: E402
from aftersale.pipeline.runtime import Runtime, open_runtime  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("AFTERSALE_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _postgres_answers() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


PG_PROBLEM = _postgres_answers()
if PG_PROBLEM and os.environ.get("AFTERSALE_TEST_REQUIRE_POSTGRES"):  # set by .ci/run
    pytest.exit(f"PostgreSQL at {PG_URL} does not answer ({PG_PROBLEM}), and "
                "AFTERSALE_TEST_REQUIRE_POSTGRES forbids running the tests without it", 3)
BACKENDS = ["sqlite"] if PG_PROBLEM else ["sqlite", "postgresql"]
# Tests of PostgreSQL-only behaviour follow the same rule as the database_url fixture, which
# leaves PostgreSQL out when it does not answer (the header and last line say so).
needs_postgres = pytest.mark.skipif(PG_PROBLEM is not None,
                                    reason=f"PostgreSQL does not answer: {PG_PROBLEM}")


def pytest_report_header(config: pytest.Config) -> str:
    if PG_PROBLEM:
        return (f"PostgreSQL at {PG_URL} did not answer ({PG_PROBLEM}): "
                "database tests run on SQLite only")
    return f"database tests run on SQLite and on PostgreSQL at {PG_URL}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(pytest_report_header(terminalreporter.config))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind: a fresh SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'aftersale.db'}"
        return
    with postgres_schema() as url:
        yield url


@contextmanager
def postgres_schema(base_url: str = PG_URL) -> Iterator[str]:
    """A private schema on the shared PostgreSQL server, dropped afterwards; the URL reaches
    it through ``base_url`` (which may be a proxy in front of the server)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def definitions_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the shipped journeys and content that a test may edit."""
    journeys, content = tmp_path / "journeys", tmp_path / "content"
    shutil.copytree(ROOT / "journeys", journeys)
    shutil.copytree(ROOT / "content", content)
    return journeys, content


@pytest.fixture
def settings(database_url: str, definitions_dirs: tuple[Path, Path]) -> Settings:
    return make_settings(database_url, definitions_dirs, batch_size=50)


def make_settings(database_url: str, definitions_dirs: tuple[Path, Path],
                  **extra: Any) -> Settings:
    """Settings for a test: its database, its copies of journeys and content, fixed secrets."""
    journeys, content = definitions_dirs
    # One sending process unless a test asks for more: helpers cost a second to start.
    return Settings(database_url=database_url, journeys_dir=journeys, content_dir=content,
                    secret_key="test-secret-key", api_token="test-token",
                    public_url="https://shop.example.com", _env_file=None,  # type: ignore[call-arg]
                    **{"send_processes": 1, **extra})


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = open_runtime(settings, SimulatedClock(START))
    yield runtime
    runtime.engine.dispose()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for the whole session (about 20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
