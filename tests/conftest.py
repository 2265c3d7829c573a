"""Shared fixtures: real databases (a SQLite file, and PostgreSQL when it answers), a runtime
on a simulated clock, and the repository's own journeys and content; and the fast tier
(``make test-fast``, AFTERSALE_TEST_FAST=1): SQLite only, nothing that starts a process, a
browser, a Prefect server or needs PostgreSQL."""

from __future__ import annotations

import os
import shutil
import sys
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
                     "AFTERSALE_TEST_REQUIRE_POSTGRES", "AFTERSALE_TEST_FAST",
                     "AFTERSALE_FUZZ_EXAMPLES"):  # make fuzz: how many examples
        del os.environ[_name]  # the developer's own settings must not leak into tests

import pytest  # noqa: E402
from sqlalchemy import Engine, create_engine, event, make_url, text  # noqa: E402

from aftersale.config import Settings  # noqa: E402
from aftersale.core.clock import SimulatedClock  # noqa: E402
from aftersale.db.migrate import upgrade  # noqa: E402
from aftersale.db.session import make_engine  # noqa: E402
from aftersale.pipeline.runtime import Runtime, open_runtime  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("AFTERSALE_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAST = os.environ.get("AFTERSALE_TEST_FAST") == "1"
# What the fast tier leaves out, and the fixture that puts a test in each group by itself.
SLOW_MARKERS = ("postgres", "prefect", "subprocess", "browser", "slow")
MARKER_OF_FIXTURE = {"prefect_server": "prefect", "cli_env": "subprocess"}


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


PG_PROBLEM = "the fast tier runs on SQLite only" if FAST else _postgres_answers()
if PG_PROBLEM and not FAST and os.environ.get("AFTERSALE_TEST_REQUIRE_POSTGRES"):  # set by .ci/run
    pytest.exit(f"PostgreSQL at {PG_URL} does not answer ({PG_PROBLEM}), and "
                "AFTERSALE_TEST_REQUIRE_POSTGRES forbids running the tests without it", 3)
BACKENDS = ["sqlite"] if PG_PROBLEM else ["sqlite", "postgresql"]
# Tests of PostgreSQL-only behaviour follow the same rule as the database_url fixture, which
# leaves PostgreSQL out when it does not answer (the header and last line say so):
# pytest_collection_modifyitems skips what carries the mark then.
needs_postgres = pytest.mark.postgres


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects on the marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by what it needs, from the fixtures it uses; the fast tier deselects
    the marked ones. Tests that start processes in their body carry ``subprocess`` by hand,
    and the fast tier refuses to start one (``_no_processes_in_the_fast_tier``)."""
    for item in items:
        for fixture, marker in MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
        # Chromium's fixture is tests/e2e's "browser"; test_survey_pages has an in-process one.
        if "browser" in getattr(item, "fixturenames", ()) and ROOT / "tests" / "e2e" in item.path.parents:
            item.add_marker("browser")
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgresql":
            item.add_marker("postgres")
        if PG_PROBLEM and not FAST and item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.skip(reason=f"PostgreSQL does not answer: {PG_PROBLEM}"))
    if FAST:
        slow = [i for i in items if any(i.get_closest_marker(m) for m in SLOW_MARKERS)]
        if slow:
            config.hook.pytest_deselected(items=slow)
            left_out = set(slow)
            items[:] = [i for i in items if i not in left_out]


def _no_processes_in_the_fast_tier(event_name: str, _args: tuple[Any, ...]) -> None:
    if event_name in ("subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.system"):
        raise RuntimeError(f"the fast tier starts no processes ({event_name}): mark the test "
                           "with @pytest.mark.subprocess")


def _refuse_spawn(*_args: Any, **_kwargs: Any) -> int:
    raise RuntimeError("the fast tier starts no processes (multiprocessing spawn): mark the "
                       "test with @pytest.mark.subprocess")


@pytest.fixture(scope="session", autouse=True)
def _fast_tier_guard() -> None:
    """In the process that runs the tests (not in pytest-xdist's controller, which starts
    the workers). An audit hook cannot be removed: it lives as long as this fast-tier
    process. The "spawn" start method bypasses the audited calls, hence its own guard."""
    if FAST:
        import multiprocessing.util

        sys.addaudithook(_no_processes_in_the_fast_tier)
        multiprocessing.util.spawnv_passfds = _refuse_spawn  # type: ignore[assignment]


def pytest_report_header(config: pytest.Config) -> str:
    if FAST:
        return (f"fast tier (AFTERSALE_TEST_FAST=1): SQLite only, without the tests marked "
                f"{', '.join(SLOW_MARKERS)}")
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
def migrated_database_url(database_url: str, request: pytest.FixtureRequest) -> str:
    """``database_url`` at the head revision: a copy of a template migrated once per session,
    as migrating takes longer than most tests (an empty database stays empty for the tests
    that ask for ``database_url`` alone, such as the migration and CLI ones)."""
    if database_url.startswith("sqlite"):
        template: Path = request.getfixturevalue("_sqlite_template")
        target = Path(make_url(database_url).database or "")
        assert not target.exists(), f"{target} was written before it was filled"
        shutil.copyfile(template, target)
        return database_url
    replay(request.getfixturevalue("_postgres_template"), database_url)
    return database_url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "aftersale.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:
        # Everything into the one file a copy takes (closing the last connection would too).
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


Statement = tuple[str, Any, bool, bool]  # SQL, parameters, executemany, without parameters


@pytest.fixture(scope="session")
def _postgres_template() -> list[Statement]:
    """What the migrations send to an empty PostgreSQL schema, in order. The statements name
    no schema (the search path places them), so sending them again to another empty schema
    builds the same tables, indexes, constraints, sequences and alembic_version row; schemas
    cannot be copied on the server as databases can."""
    sent: list[Statement] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        no_parameters = not parameters and context is not None and context.no_parameters
        sent.append((statement, parameters, executemany, no_parameters))

    with postgres_schema() as url:
        engine = make_engine(url)
        event.listen(engine, "before_cursor_execute", record)
        upgrade(engine)
        engine.dispose()
    return sent


def replay(statements: list[Statement], url: str) -> None:
    """Send ``statements`` to the empty schema ``url`` reaches, in one transaction."""
    engine: Engine = create_engine(url)
    with engine.begin() as connection:
        cursor = connection.connection.cursor()
        for statement, parameters, executemany, no_parameters in statements:
            if executemany:
                cursor.executemany(statement, parameters)
            elif no_parameters:
                cursor.execute(statement)
            else:
                cursor.execute(statement, parameters)
        cursor.close()
    engine.dispose()


@pytest.fixture
def settings(migrated_database_url: str, definitions_dirs: tuple[Path, Path]) -> Settings:
    return make_settings(migrated_database_url, definitions_dirs, batch_size=50)


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
