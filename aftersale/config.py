"""Settings from the environment (prefix ``AFTERSALE_``) and ``.env``, validated once at start.

A missing or invalid setting stops the program with one line naming the variable; secrets are
``SecretStr`` so they never print in logs or reprs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aftersale.core.errors import ConfigError

if TYPE_CHECKING:
    from aftersale.core.sending_rules import FrequencyCap, QuietHours

PREFIX = "AFTERSALE_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    database_url: str = "sqlite:///aftersale.db"
    journeys_dir: Path = Path("journeys")
    content_dir: Path = Path("content")
    public_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8000")
    secret_key: SecretStr | None = None
    # The key before the last rotation: links it signed still verify; only SECRET_KEY signs.
    secret_key_previous: SecretStr | None = None
    api_token: SecretStr | None = None

    email_provider: Literal["sandbox", "sendgrid"] = "sandbox"
    sms_provider: Literal["sandbox", "twilio"] = "sandbox"
    whatsapp_provider: Literal["sandbox", "twilio"] = "sandbox"
    sandbox_dir: Path | None = None  # also write sandbox messages as files here when set

    email_from: str = "aftersale@example.com"
    unsubscribe_mailto: str | None = None  # also offered in List-Unsubscribe when set
    sendgrid_api_key: SecretStr | None = None
    sendgrid_base_url: AnyHttpUrl = AnyHttpUrl("https://api.sendgrid.com")
    sendgrid_webhook_public_key: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_base_url: AnyHttpUrl = AnyHttpUrl("https://api.twilio.com")
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_whatsapp_from: str | None = None
    shopify_webhook_secret: SecretStr | None = None
    # Verifies AfterShip's tracking webhooks (aftership-hmac-sha256); unset: /webhooks/aftership
    # answers 503, as the Shopify endpoint does without its secret.
    aftership_webhook_secret: SecretStr | None = None
    provider_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Our own pacing per provider account (SendGrid and Twilio enforce theirs with 429s).
    sendgrid_rate_per_second: float = Field(default=100.0, gt=0)
    twilio_rate_per_second: float = Field(default=10.0, gt=0)
    send_concurrency: int = Field(default=8, ge=1, le=128)
    # Processes sending at once when a backlog builds (the official clients cost a core at
    # about 800 messages/s); None: one per core. Small runs send in the flow's own process.
    send_processes: int | None = Field(default=None, ge=1, le=64)

    # Marketing rules, overridable per journey (transactional messages are exempt).
    quiet_hours: str = "21:00-09:00"
    frequency_cap: str = "1/24h"

    default_locale: str = "en"
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    claim_seconds: int = Field(default=300, ge=10)
    # Older trigger events update history but start no journey (imports of past orders).
    max_trigger_age_hours: int = Field(default=72, ge=1)

    # The team hears about detractors: an e-mail through the email channel and/or a JSON POST
    # (Slack-compatible "text" field). Neither set: alerts are only recorded.
    alert_email: str | None = None
    alert_webhook_url: AnyHttpUrl | None = None
    # Where /r/{code} sends the visitor (with ?ref=CODE).
    shop_url: AnyHttpUrl = AnyHttpUrl("https://shop.example.com")
    # A survey link or an SMS/WhatsApp answer is accepted this long after the question.
    survey_days: int = Field(default=30, ge=1, le=365)
    # Where messages send the customer to follow a parcel: "page", our tracking page
    # (GET /t/{token}; its visits count as clicks), or "carrier", the carrier's own page.
    tracking_link: Literal["page", "carrier"] = "page"
    # A tracking page link works this long after the later of the day it was sent and the
    # parcel's last news (its delivery, or its last carrier update while on its way).
    tracking_days: int = Field(default=30, ge=1, le=365)
    # Requests per second (and at once) one client address may make to /s/ and /t/ links, per
    # web process; more are answered 429. A person clicks a few times; a scanner hundreds.
    survey_rate_per_second: float = Field(default=2.0, gt=0)
    survey_rate_burst: int = Field(default=30, ge=1)
    # Parcels (aftersale.core.delivery_clock): the shop's country (ISO 3166 alpha-2) tells
    # domestic from international parcels; unset, every parcel is domestic. A parcel with no
    # carrier update for this many business days in its destination country is stalled
    # (journeys triggered by shipment.stalled may set their own ``stalled_after``).
    shop_country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    stalled_after_days: int = Field(default=3, ge=1, le=60)
    stalled_after_days_international: int = Field(default=5, ge=1, le=60)
    # Emit a Prefect event when new events reach the inbox, so process-events starts at once.
    # None: only when PREFECT_API_URL is set (a Prefect server is there to hear it).
    prefect_events: bool | None = None

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("use sqlite:///FILE or postgresql+psycopg://USER@HOST/DB")
        return value

    @field_validator("secret_key_previous", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # Emptied once a rotation is over: an empty key would verify links anyone can sign.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("shop_country", mode="before")
    @classmethod
    def _country(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("quiet_hours", "frequency_cap")
    @classmethod
    def _rule(cls, value: str, info: Any) -> str:
        from aftersale.core.sending_rules import parse_frequency_cap, parse_quiet_hours

        if value != "off":
            (parse_quiet_hours if info.field_name == "quiet_hours" else parse_frequency_cap)(value)
        return value

    def sending_rules(self) -> tuple[QuietHours | None, FrequencyCap | None]:
        from aftersale.core.sending_rules import parse_frequency_cap, parse_quiet_hours

        quiet = None if self.quiet_hours == "off" else parse_quiet_hours(self.quiet_hours)
        cap = None if self.frequency_cap == "off" else parse_frequency_cap(self.frequency_cap)
        return quiet, cap

    @model_validator(mode="after")
    def _provider_credentials(self) -> Settings:
        needs = {
            ("email_provider", "sendgrid"): ["sendgrid_api_key"],
            ("sms_provider", "twilio"): ["twilio_account_sid", "twilio_auth_token"],
            ("whatsapp_provider", "twilio"): ["twilio_account_sid", "twilio_auth_token",
                                              "twilio_whatsapp_from"],
        }
        for (field, value), required in needs.items():
            if getattr(self, field) == value:
                for name in required:
                    if not getattr(self, name):
                        raise ValueError(
                            f"{PREFIX}{name.upper()} is required when "
                            f"{PREFIX}{field.upper()}={value}"
                        )
        return self

    def require(self, *names: str) -> None:
        """Fail with one line naming the first missing setting a command needs."""
        for name in names:
            if not getattr(self, name):
                raise ConfigError(f"{PREFIX}{name.upper()} is required for this command; set it "
                                  "in the environment or in .env")


def load_settings(**overrides: Any) -> Settings:
    """Read settings; a problem becomes one ConfigError line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not field:
            raise ConfigError(message) from None
        raise ConfigError(f"{PREFIX}{field.upper()}: {message}") from None
