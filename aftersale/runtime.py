"""Wiring: settings -> database, clock, definitions, channels and links, shared by the CLI,
the flows and the web app."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from aftersale.channels.base import Channel
from aftersale.channels.sandbox import SandboxChannel
from aftersale.clock import Clock, SystemClock
from aftersale.config import Settings
from aftersale.db.migrate import ensure_current
from aftersale.db.session import make_engine, session_factory
from aftersale.errors import ConfigError, Problem
from aftersale.journeys.definitions import Definitions, activate
from aftersale.links import Links, Signer

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    clock: Clock
    problems: list[Problem] = field(default_factory=list)

    def definitions(self) -> Definitions:
        """The journeys to run now (the last valid set if the files are invalid)."""
        with self.factory() as session, session.begin():
            definitions, self.problems = activate(
                session, self.settings.journeys_dir, self.settings.content_dir, self.clock,
                self.settings.default_locale)
        return definitions

    def channels(self) -> dict[str, Channel]:
        built: dict[str, Channel] = {}
        providers = {"email": self.settings.email_provider, "sms": self.settings.sms_provider,
                     "whatsapp": self.settings.whatsapp_provider}
        for name, provider in providers.items():
            if provider == "sandbox":
                built[name] = SandboxChannel(name, self.factory, self.clock,  # type: ignore[arg-type]
                                             self.settings.sandbox_dir)
            else:
                raise ConfigError(f"AFTERSALE_{name.upper()}_PROVIDER={provider} is not available "
                                  "in this version; use sandbox")
        return built

    def links(self) -> Links:
        key = self.settings.secret_key
        if key is None:
            # Only commands that never expose links to the outside reach this (demo, preview).
            log.debug("no AFTERSALE_SECRET_KEY: signing links with a throwaway key")
            return Links(str(self.settings.public_url), Signer(secrets.token_bytes(32)))
        return Links(str(self.settings.public_url), Signer(key.get_secret_value().encode()))

    def now(self) -> datetime:
        return self.clock.now()


def open_runtime(settings: Settings, clock: Clock | None = None, migrate: bool = True) -> Runtime:
    engine = make_engine(settings.database_url)
    if migrate:
        ensure_current(engine)
    return Runtime(settings, engine, session_factory(engine), clock or SystemClock())
