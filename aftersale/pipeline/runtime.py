"""Wiring: settings -> database, clock, definitions, channels and links, shared by the CLI,
the flows and the web app."""

from __future__ import annotations

import gc
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from aftersale.channels.base import Channel, SingleSendChannel
from aftersale.channels.ratelimit import RateLimiter
from aftersale.channels.sandbox import SandboxChannel
from aftersale.config import Settings
from aftersale.core.clock import Clock, SystemClock
from aftersale.core.delivery_clock import StallDefaults
from aftersale.core.errors import ConfigError, Problem
from aftersale.core.links import Links, Signer
from aftersale.db.migrate import ensure_current
from aftersale.db.session import make_engine, session_factory
from aftersale.pipeline.definitions import Definitions, activate

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    clock: Clock
    problems: list[Problem] = field(default_factory=list)
    _channels: dict[str, Channel] | None = field(default=None, repr=False)

    def definitions(self) -> Definitions:
        """The journeys to run now (the last valid set if the files are invalid)."""
        with self.factory() as session, session.begin():
            definitions, self.problems = activate(
                session, self.settings.journeys_dir, self.settings.content_dir, self.clock,
                self.settings.default_locale)
        return with_settings(definitions, self.settings)

    def channels(self) -> dict[str, Channel]:
        """One channel per kind, built once: the provider clients keep their connections."""
        if self._channels is None:
            self._channels = build_channels(self.settings, self.factory, self.clock)
        return self._channels

    def links(self) -> Links:
        signer = link_signer(self.settings)
        page = self.settings.tracking_link == "page"
        if signer is not None:
            return Links(str(self.settings.public_url), signer, tracking_page=page)
        real = [p for p in (self.settings.email_provider, self.settings.sms_provider,
                            self.settings.whatsapp_provider) if p != "sandbox"]
        if real:
            # Links signed with a throwaway key would reach customers and never verify.
            raise ConfigError("AFTERSALE_SECRET_KEY is required to send through "
                              f"{', '.join(sorted(set(real)))}: it signs survey and unsubscribe links")
        log.debug("no AFTERSALE_SECRET_KEY: sandbox links are signed with a throwaway key")
        return Links(str(self.settings.public_url), Signer(secrets.token_bytes(32)),
                     tracking_page=page)

    def now(self) -> datetime:
        return self.clock.now()


def with_settings(definitions: Definitions, settings: Settings) -> Definitions:
    """What the definitions take from the settings: the shop's country (is a parcel
    international?) and the stall thresholds of journeys without their own."""
    definitions.shop_country = settings.shop_country
    definitions.stalled_after = stall_defaults(settings)
    return definitions


def stall_defaults(settings: Settings) -> StallDefaults:
    return StallDefaults(settings.stalled_after_days, settings.stalled_after_days_international)


def link_signer(settings: Settings) -> Signer | None:
    """What signs our links and checks them (with the previous key too, during a rotation);
    None without AFTERSALE_SECRET_KEY."""
    if settings.secret_key is None:
        return None
    previous = settings.secret_key_previous
    return Signer(settings.secret_key.get_secret_value().encode(),
                  None if previous is None else previous.get_secret_value().encode())


def build_channels(settings: Settings, factory: sessionmaker[Session], clock: Clock
                   ) -> dict[str, Channel]:
    timeout = settings.provider_timeout_seconds
    built: dict[str, Channel] = {}
    if settings.email_provider == "sendgrid":
        from aftersale.channels.sendgrid import SendGridEmailChannel

        built["email"] = SendGridEmailChannel(settings, timeout=timeout)
    if settings.sms_provider == "twilio":
        from aftersale.channels.twilio import TwilioSmsChannel

        built["sms"] = TwilioSmsChannel(settings, timeout=timeout)
    if settings.whatsapp_provider == "twilio":
        from aftersale.channels.twilio import TwilioWhatsAppChannel

        built["whatsapp"] = TwilioWhatsAppChannel(settings, timeout=timeout)
    rates = {"sendgrid": settings.sendgrid_rate_per_second,
             "twilio": settings.twilio_rate_per_second}
    limiters = {provider: RateLimiter(factory, provider, rate) for provider, rate in rates.items()}
    for channel in built.values():
        if isinstance(channel, SingleSendChannel):
            # One limiter per provider account: SMS and WhatsApp share Twilio's.
            channel.limiter = limiters[channel.provider]
            channel.concurrency = settings.send_concurrency
    for name in ("email", "sms", "whatsapp"):
        if name not in built:
            built[name] = SandboxChannel(name, factory, clock, settings.sandbox_dir)
    return built


def open_runtime(settings: Settings, clock: Clock | None = None, migrate: bool = True) -> Runtime:
    engine = make_engine(settings.database_url)
    if migrate:
        ensure_current(engine)
    _freeze_the_heap_once()
    return Runtime(settings, engine, session_factory(engine), clock or SystemClock())


_heap_frozen = False


def _freeze_the_heap_once() -> None:
    """Keep the cyclic garbage collector off what is loaded by now (SQLAlchemy, pydantic,
    Prefect: hundreds of thousands of objects that live as long as the process).

    A batch holds thousands of ORM objects long enough to reach the oldest generation, and
    every full collection they set off walked the whole heap again: a quarter of
    process-events' time. Frozen objects are never freed, so this runs once per process, after
    a collection, when what is alive is what the process is made of."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()
