"""Fixtures the integration tests share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def cli_env(database_url: str, definitions_dirs: tuple[Path, Path]) -> dict[str, str]:
    """The environment a CLI subprocess gets: this test's database and definitions, and no
    AFTERSALE_ setting of the machine running the tests."""
    journeys, content = definitions_dirs
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSALE_")}
    env |= {"AFTERSALE_DATABASE_URL": database_url, "AFTERSALE_JOURNEYS_DIR": str(journeys),
            "AFTERSALE_CONTENT_DIR": str(content)}
    return env
